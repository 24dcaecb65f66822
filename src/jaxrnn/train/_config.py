"""``TrainConfig``: every option of ``jaxrnn train``, with the defaults of the command line."""

from __future__ import annotations

import dataclasses

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


class ConfigError(ValueError):
    """An invalid option, or a run directory that does not fit the options."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Configuration of a training run (the options of ``jaxrnn train``).

    Attributes:
      text: a UTF-8 text file to train on; None: the default corpus (the
        Python standard library's own source, see ``_data.default_corpus``).
      hidden: hidden size H of every layer.
      layers: number of stacked RNN layers.
      seq_len: characters per chunk (the truncated-BPTT length T).
      batch: number of parallel streams N (divisible by the device count).
      steps: total number of optimizer steps (including those before a resume).
      lr: Adam learning rate.
      clip: maximum global gradient norm (``optax.clip_by_global_norm``).
      grad: ``"hand"`` (hand-derived BPTT) or ``"autodiff"`` (``jax.grad``).
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
    seq_len: int = 64
    batch: int = 32
    steps: int = 2000
    lr: float = 3e-3
    clip: float = 1.0
    grad: str = "hand"
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
        positive = (
            "hidden",
            "layers",
            "seq_len",
            "batch",
            "checkpoint_every",
            "eval_every",
            "val_chars",
        )
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {v!r}")
        for name in ("steps", "sample_every", "sample_length", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{_flag(name)} must be an integer >= 0, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr!r}")
        if not self.clip > 0:
            raise ConfigError(f"--clip must be > 0, got {self.clip!r}")
        if self.grad not in GRADS:
            raise ConfigError(f"--grad must be one of {', '.join(GRADS)}, got {self.grad!r}")
        return self

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_resume(config: TrainConfig, saved: TrainConfig) -> None:
    """Raises :class:`ConfigError` if ``config`` changes an option a resumed run must keep."""
    diff = [
        f"{_flag(f.name)} {getattr(saved, f.name)!r} -> {getattr(config, f.name)!r}"
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
