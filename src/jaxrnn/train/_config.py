"""``TrainConfig``: every option of ``jaxrnn train``, with the defaults of the command line."""

from __future__ import annotations

import dataclasses
import math

from .. import CELLS  # the registry's cell names: ("rnn", "lstm", "gru")

# Options a resumed run may change; all others define the model, the data or the
# batches and must equal the saved run's for the continuation to be bit-exact.
# (``text`` may be respelled, e.g. from another directory: train() checks that the
# corpus itself, by SHA-256, is unchanged.)
RESUMABLE = frozenset(
    {
        "text",
        "steps",
        "lr",
        "clip",
        "grad",
        "bptt_checkpoint",
        "out",
        "resume",
        "checkpoint_every",
        "eval_every",
        "sample_every",
        "sample_length",
        "quiet",
    }
)
GRADS = ("hand", "autodiff")
SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32: jax.random.PRNGKey's uint32 range, no wrap
_POSITIVE = ("hidden", "layers", "seq_len", "batch", "checkpoint_every", "eval_every", "val_chars")


class ConfigError(ValueError):
    """An invalid option, or a run directory that does not fit the options."""


class RunDirError(ConfigError):
    """A run directory that cannot be used: not jaxrnn's, in use, unreadable or unwritable."""


def check_int(value, flag: str, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an int with ``lo <= value`` (and ``< hi``); else ConfigError."""
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value:
        if hi is None or value < hi:
            return value
    if hi is not None:
        want = f"an integer in [{lo}, {hi})"
    else:
        want = "a positive integer" if lo == 1 else f"an integer >= {lo}"
    raise ConfigError(f"{flag} must be {want}, got {value!r}")


def parse_seed(text: str) -> int:
    """An argparse ``type``: a decimal seed in ``[0, 2**32)``, or ArgumentTypeError."""
    import argparse

    try:
        value = int(text, 10)
    except ValueError:
        value = text  # reported as not an integer below
    try:
        return check_int(value, "seed", 0, SEED_LIMIT)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_number(value, flag: str, *, finite: bool) -> None:
    """Raises ConfigError unless ``value`` is a number > 0 (and finite, with ``finite``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok or (finite and not math.isfinite(value)):
        want = "a finite number > 0" if finite else "a number > 0"
        raise ConfigError(f"{flag} must be {want}, got {value!r}")


def parse_bptt_checkpoint(text: str) -> int | str:
    """An argparse ``type``: a decimal int, else the text as given (``validate`` judges it)."""
    try:
        return int(text, 10)
    except ValueError:
        return text


def _check_bptt_checkpoint(value, grad: str) -> None:
    if value is None:
        return
    if value != "sqrt" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"--bptt-checkpoint must be a positive integer or 'sqrt', got {value!r}")
    if value != "sqrt":
        check_int(value, "--bptt-checkpoint", 1)
    if grad != "hand":
        raise ConfigError(
            f"--bptt-checkpoint needs --grad hand (the hand-derived BPTT), got --grad {grad}"
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Configuration of a training run (the options of ``jaxrnn train``).

    Attributes:
      text: a UTF-8 text file to train on; None: the default corpus (the
        Python standard library's own source, see ``_data.default_corpus``).
      hidden: hidden size H of every layer.
      layers: number of stacked recurrent layers.
      cell: ``"rnn"`` (the vanilla RNN, tanh; the default), ``"lstm"`` or ``"gru"``.
      seq_len: characters per chunk (the truncated-BPTT length T).
      batch: number of parallel streams N (divisible by the device count).
      steps: total number of optimizer steps (including those before a resume).
      lr: Adam learning rate.
      clip: maximum global gradient norm (``optax.clip_by_global_norm``).
      grad: ``"hand"`` (hand-derived BPTT) or ``"autodiff"`` (``jax.grad``).
      bptt_checkpoint: memory-bounded BPTT over each chunk (``checkpoint=`` of
        :func:`jaxrnn.model.loss_and_grads`, MATH.md §8): a segment length k or
        ``"sqrt"``; None stores every step. The same gradients in memory growing like
        ``sqrt(seq_len)``; ``grad="hand"`` only. (Not ``checkpoint_every``: files.)
      seed: seeds the initialisation, the epoch offsets and the samples.
      out: run directory; None writes nothing (library use).
      resume: continue the run in ``out`` from its checkpoint.
      checkpoint_every: steps between checkpoints (one is also written at exit).
      eval_every: steps between validation evaluations.
      sample_every: steps between samples written to ``samples.txt`` (0: none).
      sample_length: characters per sample.
      val_chars: at most this many held-out characters are evaluated.
      quiet: no progress bar.
    """

    text: str | None = None
    hidden: int = 256
    layers: int = 2
    cell: str = "rnn"
    seq_len: int = 64
    batch: int = 32
    steps: int = 2000
    lr: float = 3e-3
    clip: float = 1.0
    grad: str = "hand"
    bptt_checkpoint: int | str | None = None
    seed: int = 0
    out: str | None = None
    resume: bool = False
    checkpoint_every: int = 200
    eval_every: int = 100
    sample_every: int = 500
    sample_length: int = 300
    val_chars: int = 65536
    quiet: bool = False

    def validate(self) -> TrainConfig:
        """Raises :class:`ConfigError` naming the first invalid option; returns ``self``."""
        for name in _POSITIVE:
            check_int(getattr(self, name), flag_name(name), 1)
        for name in ("steps", "sample_every", "sample_length"):
            check_int(getattr(self, name), flag_name(name), 0)
        check_int(self.seed, "--seed", 0, SEED_LIMIT)
        check_number(self.lr, "--lr", finite=True)
        check_number(self.clip, "--clip", finite=False)  # inf: no clipping
        if self.cell not in CELLS:
            raise ConfigError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.grad not in GRADS:
            raise ConfigError(f"--grad must be one of {', '.join(GRADS)}, got {self.grad!r}")
        _check_bptt_checkpoint(self.bptt_checkpoint, self.grad)
        return self

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def flag_name(name: str) -> str:
    """The command-line flag of a TrainConfig field: ``seq_len`` -> ``--seq-len``."""
    return "--" + name.replace("_", "-")


def check_resume(config: TrainConfig, saved: TrainConfig) -> None:
    """Raises :class:`ConfigError` if ``config`` changes an option a resumed run must keep."""
    diff = [
        f"{flag_name(f.name)} {getattr(saved, f.name)!r} -> {getattr(config, f.name)!r}"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE and getattr(config, f.name) != getattr(saved, f.name)
    ]
    if diff:
        raise ConfigError(
            "--resume: these options differ from the saved run and cannot change: "
            + "; ".join(diff)
        )


def resume_config(saved: dict, **overrides) -> TrainConfig:
    """The saved run's config with ``overrides`` (None values are ignored) and ``resume=True``."""
    kw = {k: v for k, v in overrides.items() if v is not None and k != "resume"}
    return dataclasses.replace(TrainConfig.from_dict(saved), **kw, resume=True)
