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

from . import _rundir as rd
from .. import model
from ._checkpoint import CHECKPOINT, TrainState, load_checkpoint, save_checkpoint
from ._config import ConfigError, TrainConfig, check_resume
from ._data import Batcher, Vocab, load_corpus, split, unigram_entropy, val_chunks
from ._sample import sample
from ._step import LN2, evaluate, optimizer_and_step, put, shardings


class MissingExtraError(ImportError):
    """optax, tqdm or matplotlib (the ``train`` extra) is not installed."""


def require_extra() -> tuple[Any, Any]:
    """Imports and returns ``(optax, tqdm)``, or raises :class:`MissingExtraError`."""
    try:
        optax = importlib.import_module("optax")
        tqdm = importlib.import_module("tqdm").tqdm
        importlib.import_module("matplotlib")
    except ImportError as e:
        raise MissingExtraError(
            f"training needs optax, tqdm and matplotlib ({e.name} is missing): "
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
    """Yields a list that becomes non-empty at the first Ctrl-C; a second one interrupts."""
    stop: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals only reach the main thread; KeyboardInterrupt still works
        return

    def handler(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old)


def train(config: TrainConfig, *, progress: bool | None = None) -> TrainResult:
    """Trains (or, with ``config.resume``, continues) a character-level RNN language model.

    Writes the run directory ``config.out`` (if not None; see ``_rundir.py``)
    and returns the parameters and the metrics. Ctrl-C (SIGINT) stops training
    after the current step, writes a checkpoint and returns with
    ``interrupted=True``.

    Args:
      config: a :class:`TrainConfig`.
      progress: show a tqdm progress bar on stderr; default: when stderr is a
        terminal and ``config.quiet`` is false.

    Returns:
      :class:`TrainResult`.

    Raises:
      CorpusError: unusable ``config.text``.
      MissingExtraError: optax, tqdm or matplotlib missing.
      ConfigError, CheckpointError: bad options or run directory.
    """
    _, tqdm = require_extra()
    config.validate()
    run_dir = Path(config.out) if config.out is not None else None
    saved = None
    if config.resume:
        if run_dir is None or not (run_dir / rd.CONFIG).is_file():
            raise ConfigError(f"--resume: no run to resume at {config.out} (no {rd.CONFIG})")
        saved = rd.read_json(run_dir / rd.CONFIG)
        check_resume(config, TrainConfig.from_dict(saved["config"]))
    if config.text is not None:
        config = dataclasses.replace(config, text=str(Path(config.text).resolve()))

    corpus = load_corpus(config.text)
    if saved is not None and corpus.source["sha256"] != saved["corpus"]["sha256"]:
        raise ConfigError(f"--resume: the text differs from the one the run in {run_dir} used")
    vocab = Vocab.load(run_dir / rd.VOCAB) if saved else Vocab.from_text(corpus.text)
    ids = vocab.encode(corpus.text)
    train_ids, val_ids = split(ids, config.batch, config.seq_len)
    batcher = Batcher(train_ids, config.batch, config.seq_len, config.seed)
    unigram = unigram_entropy(train_ids, vocab.size)
    repl, data_sh = shardings(config.batch)
    val = put(val_chunks(val_ids, config.batch, config.seq_len, config.val_chars), data_sh)

    k_init, k_sample = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model.init(k_init, vocab.size, [config.hidden] * config.layers, dtype=jnp.float32)
    opt, update = optimizer_and_step(config.lr, config.clip, config.grad, repl, data_sh)
    zeros = model.init_state(params, config.batch)
    ts = TrainState(params, opt.init(params), zeros, 0, 0, 0, k_sample)
    if saved is not None:
        ts = load_checkpoint(run_dir / CHECKPOINT, ts)
    elif run_dir is not None:
        if (run_dir / CHECKPOINT).exists():
            raise ConfigError(
                f"{run_dir} already holds a run: continue it with --resume, or choose another --out"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / rd.SAMPLES).unlink(missing_ok=True)
        vocab.save(run_dir / rd.VOCAB)
    if run_dir is not None:
        data = {
            "vocab_size": vocab.size,
            "train_chars": len(train_ids),
            "val_chars": len(val_ids),
            "val_chars_evaluated": len(val) * config.batch * config.seq_len,
            "unigram_bpc": unigram,
            "devices": jax.device_count(),
        }
        rd.write_json(
            run_dir / rd.CONFIG, {"config": config.to_dict(), "corpus": corpus.source, "data": data}
        )
    log = rd.MetricsLog(
        run_dir / rd.METRICS if run_dir else None, resume_at=ts.step if saved else None
    )
    ts = ts._replace(
        params=put(ts.params, repl),
        opt_state=put(ts.opt_state, repl),
        carry=put(ts.carry, data_sh),
        key=jnp.asarray(ts.key),
    )
    zeros = put(zeros, data_sh)

    def write_sample(ts: TrainState, val_bpc: float) -> None:
        if run_dir is not None and config.sample_every:
            text = sample(
                ts.params,
                vocab,
                length=config.sample_length,
                key=jax.random.fold_in(ts.key, ts.step),
            )  # the same on resume
            rd.append_sample(run_dir / rd.SAMPLES, ts.step, val_bpc, text)

    def checkpoint(ts: TrainState) -> None:
        if run_dir is not None:
            save_checkpoint(run_dir / CHECKPOINT, ts)
            log.flush()
            rd.plot_metrics(run_dir / rd.PLOT, log.columns(), unigram)

    if ts.step == 0:
        write_sample(ts, math.nan)
    show = (not config.quiet and sys.stderr.isatty()) if progress is None else progress
    bar = tqdm(
        total=config.steps,
        initial=ts.step,
        disable=not show,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )
    tok_per_step = config.batch * config.seq_len
    val_bpc, tok_s, interrupted = math.nan, math.nan, False
    t0 = t_first = time.perf_counter()
    t_last, step_last = t0, ts.step
    start = ts.step
    try:
        with _stop_on_sigint() as stop:
            while ts.step < config.steps and not stop:
                tokens, targets = put(batcher.get(ts.epoch, ts.chunk), data_sh)
                params, opt_state, carry, loss = update(
                    ts.params, ts.opt_state, ts.carry, tokens, targets
                )
                epoch, chunk = batcher.advance(ts.epoch, ts.chunk)
                if epoch != ts.epoch:  # a new epoch starts the streams on new text
                    carry = zeros
                ts = TrainState(params, opt_state, carry, ts.step + 1, epoch, chunk, ts.key)
                step, loss = ts.step, float(loss) / config.seq_len  # nats per character
                now = time.perf_counter()
                if step_last == start:  # time from the end of the first (compiling) step
                    t_last, step_last, t_first = now, step, now
                elif now - t_last > 1.0 or step == config.steps:
                    tok_s = (step - step_last) * tok_per_step / (now - t_last)
                    t_last, step_last = now, step
                v = math.nan
                if step % config.eval_every == 0 or step == config.steps:
                    v = val_bpc = evaluate(ts.params, val, zeros)
                log.append(
                    {
                        "step": step,
                        "train_loss": loss,
                        "train_bpc": loss / LN2,
                        "val_bpc": v,
                        "tokens_per_s": tok_s,
                        "elapsed_s": now - t0,
                    }
                )
                if config.sample_every and (
                    step % config.sample_every == 0 or step == config.steps
                ):
                    write_sample(ts, v if v == v else evaluate(ts.params, val, zeros))
                if step % config.checkpoint_every == 0 and step < config.steps:
                    checkpoint(ts)
                vs = "-" if math.isnan(val_bpc) else f"{val_bpc:.3f}"
                ts_ = "-" if math.isnan(tok_s) else f"{tok_s:,.0f}"
                bar.set_postfix_str(
                    f"loss {loss / LN2:.3f} bpc, val {vs} bpc, {ts_} tok/s", refresh=False
                )
                bar.update(1)
            interrupted = bool(stop)
    except KeyboardInterrupt:  # a second Ctrl-C, or not in the main thread
        interrupted = True
    finally:
        bar.close()
        log.flush()
    t_end = time.perf_counter()
    elapsed = t_end - t0
    tok_s = (
        (ts.step - start - 1) * tok_per_step / (t_end - t_first) if ts.step > start + 1 else tok_s
    )
    checkpoint(ts)  # ts is always a consistent state: it is replaced by one assignment
    log.close()
    if interrupted or val_bpc != val_bpc:
        val_bpc = evaluate(ts.params, val, zeros)
    return TrainResult(
        jax.device_get(ts.params),
        vocab,
        log.columns(),
        config,
        run_dir,
        ts.step,
        val_bpc,
        unigram,
        elapsed,
        tok_s,
        interrupted,
    )
