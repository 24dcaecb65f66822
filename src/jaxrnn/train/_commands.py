"""The ``jaxrnn train`` and ``jaxrnn sample`` subcommands: their options and what they run.

``jaxrnn._cli`` builds the top-level parser and calls :func:`add_commands`; this
module needs only what ``jaxrnn.train`` imports (no optax or matplotlib until
:func:`run_train` starts training). Exit codes: 0 success; 1 a missing optional
dependency; 2 bad usage or input (a run directory that cannot be used, OS errors
such as a full disk); 3 training diverged; 4 another process of a multi-process run
failed (see ``_dist.py``); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

import jax
import numpy as np

from . import _dist as dist
from . import _launch
from . import _rundir as rd
from ._checkpoint import CheckpointError
from ._config import (
    CELLS,
    GRADS,
    ConfigError,
    TrainConfig,
    check_int,
    check_number,
    parse_bptt_checkpoint,
    parse_seed,
    resume_config,
)
from ._data import CorpusError
from ._load import load_run
from ._loop import DivergedError, MissingExtraError, TrainResult, train
from ._sample import sample

_D = TrainConfig()
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PEER = 4  # multi-process: another process of the run failed
SEED_HELP = "random seed, an integer with 0 <= seed < 2**32"

TRAIN_HELP = """Trains a character-level RNN language model with the hand-derived BPTT
(stateful truncated BPTT over chunks of --seq-len characters, Adam with global-norm
clipping from optax). Without --text it trains on the Python standard library's own
source, read from this installation (no download). Writes config.json, vocab.json,
checkpoint.npz, metrics.csv, loss.png and samples.txt to --out, which must be a
new or empty directory (or, with --resume, a run directory jaxrnn wrote); the
directory is locked while the run lasts. Ctrl-C writes a checkpoint and exits
with code 130; continue with --out DIR --resume. A loss or gradient that becomes
inf or NaN stops the run with exit code 3, the last finite state checkpointed."""

SAMPLE_HELP = """Samples text from a run directory written by `jaxrnn train`."""


# The options of `jaxrnn train`: (flag, add_argument keywords). Defaults are None so that
# --resume can tell given options from defaults; the help shows the effective default.
def _opt(flag: str, help: str, **kw) -> tuple[str, dict]:
    """One ``jaxrnn train`` option; the help ends with the TrainConfig default when it has one."""
    default = getattr(_D, flag[2:].replace("-", "_"), None)
    shown = kw.pop("shown", None) or (f"{default:g}" if isinstance(default, float) else default)
    return flag, dict(help=f"{help} (default: {shown})", **kw)


TRAIN_OPTIONS = [
    _opt("--text", "UTF-8 text file to train on", metavar="FILE",
         shown="the Python standard library's .py files, up to 2,000,000 characters"),
    _opt("--hidden", "hidden size of every layer", type=int),
    _opt("--layers", "number of stacked layers", type=int),
    _opt("--cell", "recurrent cell: vanilla RNN (tanh), LSTM or GRU", choices=CELLS),
    _opt("--seq-len", "characters per chunk, the truncated-BPTT length", type=int),
    _opt("--batch", "parallel streams per step; a multiple of the device count", type=int),
    _opt("--steps", "total optimizer steps, counting those before a resume", type=int),
    _opt("--lr", "Adam learning rate, finite and > 0", type=float),
    _opt("--clip", "max global gradient norm", type=float),
    _opt("--grad", "gradients: the hand-derived BPTT or jax.grad autodiff", choices=GRADS),
    _opt("--bptt-checkpoint",
         "memory-bounded BPTT over each chunk: store the hidden states only every K steps "
         "and recompute the rest going back (sqrt: K = ceil(sqrt(--seq-len))); the same "
         "gradients in memory growing like sqrt(--seq-len), for a long --seq-len; needs "
         "--grad hand; unrelated to --checkpoint-every, which saves files",
         type=parse_bptt_checkpoint, metavar="K|sqrt", shown="off, every step stored"),
    _opt("--seed", SEED_HELP, type=parse_seed),
    _opt("--out", "run directory: new or empty, or a run to --resume", metavar="DIR",
         shown="runs/YYYYmmdd-HHMMSS"),
    _opt("--resume", "continue the run in --out from its checkpoint, bit-exactly",
         action="store_true", shown="off"),
    _opt("--checkpoint-every", "steps between checkpoints; one is also written at exit",
         type=int, metavar="N"),
    _opt("--eval-every", "steps between validation evaluations", type=int, metavar="N"),
    _opt("--sample-every", "steps between samples written to samples.txt; 0: none",
         type=int, metavar="N"),
    _opt("--quiet", "no progress bar", action="store_true",
         shown="off; the bar is also off when stderr is not a terminal"),
]  # fmt: skip

DIST_HELP = """One run on several processes (hosts, GPUs, or 127.0.0.1) with jax.distributed:
--batch streams are split over the devices of all processes, gradients are averaged by
the compiled step, and process 0 alone writes --out (every process reads it on
--resume). Every process is started with the same options; they check at start that
they agree (exit 2 naming the option that differs). A process that dies makes the
others exit non-zero within --distributed-timeout seconds (at once if they are in the
step); exit code 4: another process of the run failed."""

DIST_OPTIONS = [
    ("--coordinator", dict(metavar="HOST:PORT",
        help="address of process 0, which listens on PORT; every process gives the same "
             "(default: none, a single process)")),
    ("--num-processes", dict(type=int, metavar="N",
        help="number of processes of the run (default: none)")),
    ("--process-id", dict(type=int, metavar="I",
        help="this process's rank, 0 <= I < N; rank 0 writes --out (default: none)")),
    ("--distributed", dict(choices=("auto",),
        help="auto: jax.distributed.initialize() detects the cluster "
             "(SLURM, Cloud TPU, Open MPI, ...) (default: off)")),
    ("--local-processes", dict(type=int, metavar="N",
        help="launch N processes of one run on 127.0.0.1 (a free port); Ctrl-C goes to "
             "all, and if one fails, all are stopped (default: off)")),
    ("--distributed-timeout", dict(type=float, metavar="SECONDS", default=dist.DEFAULT_TIMEOUT,
        help="wait at most this long for the coordinator's port at start (else exit 2), and "
             f"count a silent process as dead after it (default: {dist.DEFAULT_TIMEOUT})")),
]  # fmt: skip


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds the ``train`` and ``sample`` subcommands (``func``: :func:`run_train`, ...)."""
    p = sub.add_parser(
        "train",
        help="train a character-level language model (the main job)",
        description=TRAIN_HELP,
    )
    for flag, kw in TRAIN_OPTIONS:
        p.add_argument(flag, **kw)
    group = p.add_argument_group("several processes or hosts", DIST_HELP)
    for flag, kw in DIST_OPTIONS:
        group.add_argument(flag, **kw)
    p.set_defaults(func=run_train)
    p = sub.add_parser("sample", help="sample text from a trained run", description=SAMPLE_HELP)
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (required)")
    p.add_argument("--prime", default="", help="text to start from (default: empty)")
    p.add_argument("--length", type=int, default=500, help="characters to generate (default: 500)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="softmax temperature; 0 = greedy (default: 0.8)",
    )
    p.add_argument("--seed", type=parse_seed, default=0, help=f"{SEED_HELP} (default: 0)")
    p.set_defaults(func=run_sample)


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"jaxrnn {command}: error: {message}", file=sys.stderr)
    return code


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the command line; with --resume, the saved one with the given options."""
    given = {  # the options given on the command line (None: not given; flags: only if set)
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None and getattr(args, f.name) is not False
    }
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out DIR, the run to continue")
        config = resume_config(rd.read_config(args.out)["config"], **given)
    else:
        given.setdefault("out", time.strftime("runs/%Y%m%d-%H%M%S"))
        config = TrainConfig(**given)
    return config.validate()


def run_train(args: argparse.Namespace) -> int:
    """``jaxrnn train``: trains, prints a summary line; returns the exit code."""
    try:
        if args.local_processes is not None:
            return _launch.launch(_worker_argv(args), args.local_processes)
        _join(args)
    except ConfigError as e:
        return _fail("train", str(e))
    if jax.process_count() == 1:
        return _train(args, "train")
    name = f"train [process {jax.process_index()}/{jax.process_count()}]"
    try:
        return _train(args, name)
    except Exception as e:  # a collective broke (a JaxRuntimeError or ValueError): a peer died
        what = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        _fail(name, f"stopped, another process of the run failed or this one did: {what}")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_PEER)  # not sys.exit: jax.distributed's shutdown would wait for the dead


_JOIN = ("coordinator", "num_processes", "process_id")


def _join(args: argparse.Namespace) -> None:
    """Checks the multi-process options and joins the run (``_dist.initialize``), if any."""
    given = [
        f for f in ("coordinator", "num_processes", "process_id") if getattr(args, f) is not None
    ]
    flags = ", ".join("--" + f.replace("_", "-") for f in given)
    check_number(args.distributed_timeout, "--distributed-timeout", finite=True)
    if args.distributed == "auto":
        if given:
            raise ConfigError(f"--distributed auto detects the cluster: drop {flags}")
    elif not given:
        return
    elif len(given) < 3:
        raise ConfigError(
            "--coordinator, --num-processes and --process-id go together; got " + flags
        )
    else:
        n = check_int(args.num_processes, "--num-processes", 1)
        check_int(args.process_id, "--process-id", 0, n)
    timeout = math.ceil(args.distributed_timeout)
    auto = args.distributed == "auto"
    dist.initialize(
        args.coordinator, args.num_processes, args.process_id, auto=auto, timeout=timeout
    )
    _launch.watch_parent()


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The options of a ``--local-processes`` worker: the given ones, and one --out for all."""
    check_int(args.local_processes, "--local-processes", 1)
    if any(getattr(args, f) is not None for f in _JOIN) or args.distributed is not None:
        raise ConfigError(
            "--local-processes starts its own processes: drop --coordinator, --num-processes, "
            "--process-id and --distributed"
        )
    check_number(args.distributed_timeout, "--distributed-timeout", finite=True)
    argv = []
    for flag, _ in TRAIN_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value is not False:
            argv += [flag] if value is True else [flag, str(value)]
    if args.out is None:
        argv += ["--out", time.strftime("runs/%Y%m%d-%H%M%S")]
    return [*argv, "--distributed-timeout", repr(args.distributed_timeout)]


def _train(args: argparse.Namespace, name: str) -> int:
    """Runs the training of ``args`` in this process; returns the exit code."""
    writer = dist.is_writer()
    try:
        config = _train_config(args)
        if not config.quiet and writer:
            what = config.text or "the Python standard library's source"
            doing = "resuming" if config.resume else "training on"
            print(f"jaxrnn train: {doing} {what} -> {config.out}", flush=True)
        result = train(config)
    except KeyboardInterrupt:  # before the first step (loading, compiling): nothing to save
        print(f"jaxrnn {name}: interrupted before training started", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MissingExtraError as e:
        return _fail(name, str(e), EXIT_FAILURE)
    except DivergedError as e:
        return _fail(name, str(e), EXIT_DIVERGED)
    except (CorpusError, CheckpointError, ConfigError) as e:
        return _fail(name, str(e))
    except OSError as e:  # every write names its path; this is the last line of defence
        return _fail(name, f"{e.filename or args.out}: {e.strerror or e}")
    if writer:
        print(summary(result))
    if result.interrupted:
        if writer:
            print(
                f"jaxrnn train: interrupted; checkpoint saved. Continue with: "
                f"jaxrnn train --out {result.run_dir} --resume",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    return EXIT_OK


def summary(result: TrainResult) -> str:
    """The last line of ``jaxrnn train``; its bpc numbers are those of ``result.metrics``.

    The validation bpc is the one recorded at the last step (``-`` when no step ran);
    the throughput is left out when it was not measured (fewer than 2 steps this call).
    """
    m, step = result.metrics, result.step
    n = min(len(m["train_bpc"]), 100)
    train_bpc = f"{np.mean(m['train_bpc'][-n:]):.3f} bpc (mean of the last {n} steps)" if n else "-"
    at_step = len(m["step"]) > 0 and m["step"][-1] == step and not math.isnan(m["val_bpc"][-1])
    val_bpc = f"{m['val_bpc'][-1]:.3f} bpc" if at_step else "-"
    speed = f", {result.tokens_per_s:,.0f} tokens/s" if math.isfinite(result.tokens_per_s) else ""
    return (
        f"jaxrnn train: step {step}/{result.config.steps}: train {train_bpc}, "
        f"validation {val_bpc} (unigram entropy {result.unigram_bpc:.3f}), "
        f"{result.elapsed_s:.0f}s{speed}; run: {result.run_dir}"
    )


def run_sample(args: argparse.Namespace) -> int:
    """``jaxrnn sample``: prints a sample of a run directory; returns the exit code."""
    try:
        run = load_run(args.run)
        text = sample(
            run.params,
            run.vocab,
            prime=args.prime,
            length=args.length,
            temperature=args.temperature,
            seed=args.seed,
        )
    except (CheckpointError, ValueError) as e:  # RunDirError is a ValueError
        return _fail("sample", str(e))
    except OSError as e:
        return _fail("sample", f"{e.filename or args.run}: {e.strerror or e}")
    sys.stdout.write(text + "\n")
    return EXIT_OK
