"""Training a character-level language model with the hand-derived BPTT and optax.

One step (stateful truncated BPTT, MATH.md §3-§6): take the next chunk of
``seq_len`` characters of every stream, compute the loss and its gradients
from the hidden state the previous chunk ended in (``--grad hand``:
:func:`jaxrnn.model.loss_and_grads`; ``--grad autodiff``: ``jax.grad`` of the
plain ``lax.scan`` model), clip by global norm and apply Adam (optax), and
carry the final hidden state into the next chunk. The carry is an input to
the step, so no gradient flows into the previous chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import model
from . import _dist as dist
from . import _outputs as out
from . import _rundir as rd
from ._checkpoint import CHECKPOINT, TrainState, load_checkpoint, save_checkpoint
from ._config import ConfigError, RunDirError, TrainConfig, check_resume, flag_name
from ._data import (
    Batcher,
    Corpus,
    CorpusError,
    Vocab,
    check_length,
    load_corpus,
    split,
    unigram_entropy,
    val_chunks,
)
from ._sample import sample
from ._step import LN2, evaluate, optimizer_and_step, put, shardings


class MissingExtraError(ImportError):
    """optax, tqdm, matplotlib or filelock (the ``train`` extra) is not installed."""


class DivergedError(FloatingPointError):
    """The loss, a gradient or a parameter became inf or NaN: training stopped.

    ``step`` is the step that diverged. The run's checkpoint (if it has a
    directory) holds the last finite state, the one after step ``step - 1``.
    """

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def require_extra() -> tuple[Any, Any]:
    """Imports and returns ``(optax, tqdm)``, or raises :class:`MissingExtraError`."""
    try:
        optax = importlib.import_module("optax")
        tqdm = importlib.import_module("tqdm").tqdm
        importlib.import_module("matplotlib")
        importlib.import_module("filelock")
    except ImportError as e:
        raise MissingExtraError(
            f"training needs optax, tqdm, matplotlib and filelock ({e.name} is missing): "
            "pip install 'jaxrnn[train]'"
        ) from e
    return optax, tqdm


class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    params: Any  # ModelParams after the last step
    vocab: Vocab
    metrics: dict[
        str, np.ndarray
    ]  # columns: step, train_loss, train_bpc, val_bpc (NaN = none), ...
    config: TrainConfig
    run_dir: Path | None
    step: int  # steps done
    val_bpc: float  # validation bits/char after the last step
    unigram_bpc: float  # entropy of the training split's character frequencies
    elapsed_s: float  # wall time of this call's training loop
    tokens_per_s: float  # training throughput after the first (compiling) step
    interrupted: bool  # stopped by Ctrl-C (KeyboardInterrupt); a checkpoint was written


@contextlib.contextmanager
def _stop_on_sigint():
    """Yields a list that becomes non-empty at the first Ctrl-C; a second one interrupts.

    (In a multi-process run a second one does nothing: the processes agree on the step
    to stop after, see :func:`_loop`; ``--local-processes`` kills them at a second one.)
    """
    stop: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals only reach the main thread; KeyboardInterrupt still works
        return

    def handler(signum, frame):
        if stop and jax.process_count() == 1:  # several: every process must stop at one step
            raise KeyboardInterrupt
        stop.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old)


class _Run(NamedTuple):
    """What the steps of one :func:`train` call share; built by :func:`_setup`."""

    config: TrainConfig
    run_dir: Path | None  # None: nothing written (no --out, or not process 0)
    vocab: Vocab
    batcher: Batcher
    val: list  # validation chunks on the device(s)
    zeros: Any  # the zero hidden state, (B, H_l) per layer
    unigram: float
    repl: Any  # shardings (None on one device)
    data_sh: Any
    rows: slice  # this process's streams of the global batch (all in a single process)
    update: Any  # the jitted step of _step.optimizer_and_step
    sizes: dict  # the "data" entry of config.json
    log: out.MetricsLog | None = None


def _log(run: _Run) -> out.MetricsLog:
    """The run's metrics log (set by :func:`train` before the first step)."""
    assert run.log is not None, "the metrics log is opened before the first step"
    return run.log


class _Clock:
    """Elapsed time and throughput (tokens/s), timed from the end of the first (compiling) step."""

    def __init__(self, tokens_per_step: int, start: int):
        self.tokens, self.start = tokens_per_step, start
        self.t0 = time.perf_counter()
        self.t_first = self.t_last = math.nan
        self.step_last, self.tok_s = start, math.nan

    def tick(self, step: int, last: bool) -> float:
        """Call after each step; updates ``tok_s`` about every second; returns the elapsed time."""
        now = time.perf_counter()
        if self.step_last == self.start:
            self.t_first = self.t_last = now
            self.step_last = step
        elif now - self.t_last > 1.0 or last:
            self.tok_s = (step - self.step_last) * self.tokens / (now - self.t_last)
            self.t_last, self.step_last = now, step
        return now - self.t0

    def overall(self, step: int) -> float:
        """Tokens/s over all steps but the first of this call (``tok_s`` if there were < 2)."""
        if step <= self.start + 1:
            return self.tok_s
        return (step - self.start - 1) * self.tokens / (time.perf_counter() - self.t_first)


def train(config: TrainConfig, *, progress: bool | None = None) -> TrainResult:
    """Trains (or, with ``config.resume``, continues) a character-level RNN language model.

    Writes the run directory ``config.out`` (if not None; see ``_rundir.py`` for
    what it may be) and returns the parameters and the metrics. In a multi-process
    run (after ``jax.distributed.initialize``; see ``_dist.py``) every process calls
    this with the same ``config``: the global batch is split over all devices of
    all processes, and process 0 alone writes ``config.out``. Ctrl-C (SIGINT),
    from the first moment on, stops training after the current step, writes a
    checkpoint and returns with ``interrupted=True``. The run directory is
    locked for the whole call.

    Args:
      config: a :class:`TrainConfig`.
      progress: show a tqdm progress bar on stderr; default: when stderr is a
        terminal and ``config.quiet`` is false.

    Returns:
      :class:`TrainResult`.

    Raises:
      CorpusError: unusable ``config.text``.
      MissingExtraError: optax, tqdm, matplotlib or filelock missing.
      ConfigError, CheckpointError: bad options or run directory (RunDirError,
        a ConfigError: a directory that is not jaxrnn's, in use, or unwritable).
      DivergedError: the loss or the gradients became inf or NaN.
      KeyboardInterrupt: Ctrl-C before the run directory was written.
    """
    _, tqdm = require_extra()
    config = _checked(config)
    with _stop_on_sigint() as stop, contextlib.ExitStack() as stack:
        corpus, vocab = _start(config, stack)
        run, ts, done = _setup(config, corpus, vocab)
        if dist.any_process(bool(stop)):  # Ctrl-C while loading: nothing is written yet
            raise KeyboardInterrupt
        run = run._replace(log=_write_run_dir(run, corpus, done))
        stack.callback(_log(run).close)
        if done < 0:
            _write_sample(run, ts, math.nan)
        show = (not config.quiet and sys.stderr.isatty()) if progress is None else progress
        show = show and dist.is_writer()
        bar = tqdm(
            total=config.steps,
            initial=ts.step,
            disable=not show,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        stack.callback(bar.close)
        ts, clock, interrupted = _loop(run, ts, stop, bar)
        _checkpoint(run, ts)  # ts is always a consistent state: it is replaced by one assignment
        val_bpc = _final_val_bpc(run, ts)
        return TrainResult(
            jax.device_get(dist.local_copy(ts.params)),
            run.vocab,
            _log(run).columns(),
            config,
            run.run_dir,
            ts.step,
            val_bpc,
            run.unigram,
            time.perf_counter() - clock.t0,
            clock.overall(ts.step),
            interrupted,
        )


def _checked(config: TrainConfig) -> TrainConfig:
    """Validates ``config``; resolves ``text`` to an absolute path (it is saved in the run)."""
    config.validate()
    if config.resume and config.out is None:
        raise ConfigError("--resume needs --out DIR, the run to continue")
    if config.text is not None:
        config = dataclasses.replace(config, text=str(Path(config.text).resolve()))
    return config


def _resume_checks(config: TrainConfig) -> dict | None:
    """Checks ``config.out`` (reading only); returns a resumed run's ``config.json``, else None.

    A resumed run must keep every option that defines the model and the data.
    """
    if config.out is None or not (config.resume or dist.is_writer()):
        return None  # a new run's directory is process 0's to check and write
    saved = rd.check_out(Path(config.out), config.resume, probe_lock=dist.is_writer())
    if saved is not None:
        try:
            old = TrainConfig.from_dict(saved["config"])
        except TypeError as e:
            raise RunDirError(f'{Path(config.out) / rd.CONFIG}: corrupt "config" ({e})') from e
        check_resume(config, old)
    return saved


def _start(config: TrainConfig, stack: contextlib.ExitStack) -> tuple[Corpus, Vocab]:
    """The checks before anything is written; the corpus and the vocabulary.

    Process 0 (the only one in a single-process run) also claims the run directory
    (its lock is released by ``stack``). In a multi-process run every process then
    checks that all passed and agree on the run (:func:`dist.check_same`).
    """
    corpus = vocab = failure = None
    try:
        corpus = _corpus(config, _resume_checks(config))
        run_dir = Path(config.out) if config.out is not None else None
        if config.resume and (_out_dir(config) / CHECKPOINT).exists():
            vocab = rd.read_vocab(_out_dir(config))
        else:
            vocab = Vocab.from_text(corpus.text)
        if run_dir is not None and dist.is_writer():
            stack.enter_context(rd.claim(run_dir, config.resume))
    except (ConfigError, CorpusError) as e:
        failure = e
    ident: dict[str, object] = {}
    if failure is None:
        assert corpus is not None and vocab is not None, "both are set unless the try failed"
        ident = _identity(config, corpus, vocab)
    dist.check_same(ident, failure)
    assert corpus is not None and vocab is not None, "check_same raises the failure"
    return corpus, vocab


def _out_dir(config: TrainConfig) -> Path:
    """The run directory of a resumed run (:func:`_checked`: ``--resume`` needs ``--out``)."""
    assert config.out is not None, "--resume without --out: _checked rejects it"
    return Path(config.out)


def _identity(config: TrainConfig, corpus: Corpus, vocab: Vocab) -> dict[str, object]:
    """What every process of a run must agree on: the options but where to read and
    write and how to show it, the text (SHA-256), the vocabulary, and the checkpoint."""
    ident = {
        flag_name(f.name): getattr(config, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in ("text", "out", "quiet")
    }
    ckpt = _out_dir(config) / CHECKPOINT if config.resume else None
    if ckpt is not None and not ckpt.exists():
        ckpt = None  # a resumed run that saved no checkpoint yet
    return {
        **ident,
        "the text (SHA-256)": corpus.source["sha256"],
        "the vocabulary": "".join(vocab.chars),
        "the checkpoint (SHA-256)": _sha256(ckpt) if ckpt is not None else None,
    }


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise rd.os_error(path, e, "cannot read") from e


def _corpus(config: TrainConfig, saved: dict | None) -> Corpus:
    """The training text, checked before anything is written: long enough for the batches,
    for a resumed run the same text (by SHA-256) as before; and the batch fits the devices.
    """
    corpus = load_corpus(config.text)
    check_length(len(corpus.text), config.batch, config.seq_len)
    shardings(config.batch)
    if saved is not None and corpus.source["sha256"] != saved["corpus"].get("sha256"):
        raise ConfigError(f"--resume: the text differs from the one the run in {config.out} used")
    return corpus


def _setup(config: TrainConfig, corpus: Corpus, vocab: Vocab) -> tuple[_Run, TrainState, int]:
    """Data, model, optimizer and the state to start from (the checkpoint's, if any).

    Returns ``(run, state, done)``: ``done`` is the checkpoint's step, -1 without one.
    """
    run_dir = Path(config.out) if config.out is not None else None
    resumed = config.resume and run_dir is not None and (run_dir / CHECKPOINT).exists()
    train_ids, val_ids = split(vocab.encode(corpus.text), config.batch, config.seq_len)
    repl, data_sh = shardings(config.batch)
    rows = dist.local_rows(data_sh, config.batch)
    val = val_chunks(val_ids, config.batch, config.seq_len, config.val_chars)
    val = _put_rows(val, data_sh, rows, config.batch)
    opt, update = optimizer_and_step(
        config.lr, config.clip, config.grad, repl, data_sh, config.bptt_checkpoint
    )
    k_init, k_sample = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model.init(
        k_init, vocab.size, [config.hidden] * config.layers, dtype=jnp.float32, cell=config.cell
    )
    zeros = model.init_state(params, config.batch)
    ts = TrainState(params, opt.init(params), zeros, 0, 0, 0, k_sample)
    if resumed and run_dir:
        ts = load_checkpoint(run_dir / CHECKPOINT, ts)
    unigram = unigram_entropy(train_ids, vocab.size)
    sizes = {
        "vocab_size": vocab.size,
        "train_chars": len(train_ids),
        "val_chars": len(val_ids),
        "val_chars_evaluated": len(val) * config.batch * config.seq_len,
        "unigram_bpc": unigram,
        "devices": jax.device_count(),
    }
    if jax.process_count() > 1:
        sizes["processes"] = jax.process_count()
    batcher = Batcher(train_ids, config.batch, config.seq_len, config.seed, rows)
    writes = run_dir if dist.is_writer() else None
    zeros = _put_rows(zeros, data_sh, rows, config.batch)
    run = _Run(
        config, writes, vocab, batcher, val, zeros, unigram, repl, data_sh, rows, update, sizes
    )
    ts = ts._replace(
        params=put(ts.params, repl),
        opt_state=put(ts.opt_state, repl),
        carry=_put_rows(ts.carry, data_sh, rows, config.batch),
        key=jnp.asarray(ts.key),
    )
    return run, ts, ts.step if resumed else -1


def _put_rows(tree, data_sh, rows: slice, batch: int):
    """Global ``(batch, ...)`` host arrays -> batch-sharded arrays, from this process's rows."""
    return put(jax.tree_util.tree_map(lambda x: np.asarray(x)[rows], tree), data_sh, batch)


def _write_run_dir(run: _Run, corpus: Corpus, done: int) -> out.MetricsLog:
    """Writes ``config.json`` (first: it marks the directory as a run) and ``vocab.json``,
    and cuts ``metrics.csv`` and ``samples.txt`` back to step ``done`` (-1: empties them).
    """
    if run.run_dir is None:
        return out.MetricsLog(None)
    saved = {"config": run.config.to_dict(), "corpus": corpus.source, "data": run.sizes}
    rd.write_json(run.run_dir / rd.CONFIG, {rd.MARKER: rd.FORMAT, **saved})
    if done < 0:
        run.vocab.save(run.run_dir / rd.VOCAB)
    out.cut_samples(run.run_dir / rd.SAMPLES, done)
    return out.MetricsLog(run.run_dir / rd.METRICS, resume_at=done)


def _loop(run: _Run, ts: TrainState, stop: list, bar) -> tuple[TrainState, _Clock, bool]:
    """Steps until ``config.steps`` or a Ctrl-C, writing metrics, samples and checkpoints.

    Returns ``(state, clock, interrupted)``.
    """
    cfg = run.config
    clock, val_bpc = _Clock(cfg.batch * cfg.seq_len, ts.step), math.nan
    try:
        while ts.step < cfg.steps and not dist.any_process(bool(stop)):
            ts, loss = _step(run, ts)
            step, last = ts.step, ts.step == cfg.steps
            elapsed, v = clock.tick(step, last), math.nan
            if step % cfg.eval_every == 0 or last:
                v = val_bpc = evaluate(ts.params, run.val, run.zeros)
            _log(run).append(
                {
                    "step": step,
                    "train_loss": loss,
                    "train_bpc": loss / LN2,
                    "val_bpc": v,
                    "tokens_per_s": clock.tok_s,
                    "elapsed_s": elapsed,
                }
            )
            if cfg.sample_every and (step % cfg.sample_every == 0 or last):
                _write_sample(run, ts, v if v == v else evaluate(ts.params, run.val, run.zeros))
            if step % cfg.checkpoint_every == 0 and not last:
                _checkpoint(run, ts)
            vs = "-" if math.isnan(val_bpc) else f"{val_bpc:.3f}"
            tok = "-" if math.isnan(clock.tok_s) else f"{clock.tok_s:,.0f}"
            bar.set_postfix_str(
                f"loss {loss / LN2:.3f} bpc, val {vs} bpc, {tok} tok/s", refresh=False
            )
            bar.update(1)
    except KeyboardInterrupt:  # a second Ctrl-C, or not in the main thread
        stop.append(signal.SIGINT)
    return ts, clock, ts.step < cfg.steps


def _final_val_bpc(run: _Run, ts: TrainState) -> float:
    """The validation bpc after step ``ts.step``, as recorded in that step's metrics row.

    The loop evaluates every ``eval_every`` steps and at ``config.steps``; a run
    stopped in between (Ctrl-C), or resumed with no step left, may end on a row
    without one: it is evaluated now and recorded in that row (metrics.csv and
    loss.png rewritten), so that the number reported is the one on the disk.
    Without a row (no step ever ran) it is evaluated and recorded nowhere.
    """
    rows = _log(run).rows
    last = rows[-1] if rows and rows[-1]["step"] == ts.step else None
    recorded = dist.from_writer(last["val_bpc"] if last is not None else math.nan)
    if not math.isnan(recorded):  # process 0's rows decide: only it read metrics.csv
        return recorded
    val_bpc = evaluate(ts.params, run.val, run.zeros)
    if last is not None:
        _log(run).set_last_val_bpc(val_bpc)
        if run.run_dir is not None:
            out.plot_metrics(run.run_dir / rd.PLOT, _log(run).columns(), run.unigram)
    return val_bpc


def _step(run: _Run, ts: TrainState) -> tuple[TrainState, float]:
    """One optimizer step; the loss in nats per character.

    Raises :class:`DivergedError` if the step is not finite, after checkpointing
    ``ts`` (the last finite state).
    """
    tokens, targets = put(run.batcher.get(ts.epoch, ts.chunk), run.data_sh, run.config.batch)
    params, opt_state, carry, loss, finite = run.update(
        ts.params, ts.opt_state, ts.carry, tokens, targets
    )
    loss = float(loss) / run.config.seq_len
    if not bool(finite):
        _checkpoint(run, ts)
        cfg, step = run.config, ts.step + 1
        saved = (
            f"; the checkpoint in {run.run_dir} is the last finite state (step {ts.step}): "
            f"continue it with --out {run.run_dir} --resume --lr ..."
            if run.run_dir is not None
            else ""
        )
        raise DivergedError(
            f"step {step}: training diverged, the loss ({loss:g}) or a gradient is not finite. "
            f"Use a lower --lr (now {cfg.lr:g}) or --clip (now {cfg.clip:g}){saved}",
            step,
        )
    epoch, chunk = run.batcher.advance(ts.epoch, ts.chunk)
    if epoch != ts.epoch:  # a new epoch starts the streams on new text
        carry = run.zeros
    return TrainState(params, opt_state, carry, ts.step + 1, epoch, chunk, ts.key), loss


def _write_sample(run: _Run, ts: TrainState, val_bpc: float) -> None:
    if run.run_dir is not None and run.config.sample_every:
        key = jax.random.fold_in(ts.key, ts.step)  # the same on resume
        params = dist.local_copy(ts.params)
        text = sample(params, run.vocab, length=run.config.sample_length, key=key)
        out.append_sample(run.run_dir / rd.SAMPLES, ts.step, val_bpc, text)


def _checkpoint(run: _Run, ts: TrainState) -> None:
    """Saves ``ts``, after the metrics and samples up to its step are on the disk.

    Every process calls this (gathering the batch-sharded carry is a collective).
    """
    if jax.process_count() > 1:
        trees = {k: getattr(ts, k) for k in ("params", "opt_state", "carry")}
        ts = ts._replace(**dist.to_host(trees))
    if run.run_dir is not None:
        _log(run).sync()
        save_checkpoint(run.run_dir / CHECKPOINT, ts)
        out.plot_metrics(run.run_dir / rd.PLOT, _log(run).columns(), run.unigram)
