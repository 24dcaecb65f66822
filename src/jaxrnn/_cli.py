"""The ``jaxrnn`` command line (also ``python -m jaxrnn``).

Subcommands: ``train`` (the main job), ``sample``, ``demo`` and ``check``. Without a
subcommand, ``jaxrnn`` prints its help. Exit codes: 0 success; 1 failure (a
missing optional dependency, a failed ``check`` or ``demo``); 2 bad usage or
input, including a run directory that cannot be used and OS errors such as a
full disk (argparse convention); 3 training diverged (a non-finite loss or
gradient); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from . import _demo
from .train._config import CELLS, GRADS, TrainConfig, parse_bptt_checkpoint, parse_seed

_D = TrainConfig()
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
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


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a character-level language model (the main job)",
        description=TRAIN_HELP,
    )
    for flag, kw in TRAIN_OPTIONS:
        p.add_argument(flag, **kw)
    p.set_defaults(func=_train)


def _add_sample(sub) -> None:
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
    p.set_defaults(func=_sample)


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxrnn`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="jaxrnn",
        description="The vanilla RNN and its hand-derived BPTT in JAX. "
        "Main job: `jaxrnn train` (a character-level language model).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_sample(sub)
    demo = sub.add_parser(
        "demo",
        help="run forward + hand BPTT on random data and print the agreement with jax.grad",
        description=_demo.run.__doc__,
    )
    _demo.add_arguments(demo, seed_type=parse_seed)
    demo.set_defaults(func=_demo.run)
    check = sub.add_parser(  # options are parsed by jaxrnn.testing's own parser
        "check",
        add_help=False,
        prefix_chars="\0",
        help="check your own forward/backward against jaxrnn's hand BPTT "
        "(`jaxrnn check --help`; needs hypothesis)",
    )
    check.add_argument("argv", nargs=argparse.REMAINDER)
    check.set_defaults(func=_check)
    return parser


def _check(args: argparse.Namespace) -> int:
    try:
        from .testing._cli import main as check_main
    except ImportError as e:  # hypothesis is an optional dependency
        return _fail("check", f"{e}; install it with: pip install 'jaxrnn[testing]'", EXIT_FAILURE)
    return check_main(args.argv, prog="jaxrnn check")


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"jaxrnn {command}: error: {message}", file=sys.stderr)
    return code


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the command line; with --resume, the saved one with the given options."""
    from .train import _rundir as rd
    from .train._config import ConfigError, resume_config

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


def _train(args: argparse.Namespace) -> int:
    from .train._checkpoint import CheckpointError
    from .train._config import ConfigError
    from .train._data import CorpusError
    from .train._loop import DivergedError, MissingExtraError, train

    try:
        config = _train_config(args)
        if not config.quiet:
            what = config.text or "the Python standard library's source"
            doing = "resuming" if config.resume else "training on"
            print(f"jaxrnn train: {doing} {what} -> {config.out}", flush=True)
        result = train(config)
    except KeyboardInterrupt:  # before the first step (loading, compiling): nothing to save
        print("jaxrnn train: interrupted before training started", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MissingExtraError as e:
        return _fail("train", str(e), EXIT_FAILURE)
    except DivergedError as e:
        return _fail("train", str(e), EXIT_DIVERGED)
    except (CorpusError, CheckpointError, ConfigError) as e:
        return _fail("train", str(e))
    except OSError as e:  # every write names its path; this is the last line of defence
        return _fail("train", f"{e.filename or args.out}: {e.strerror or e}")
    _report(result, config)
    if result.interrupted:
        print(
            f"jaxrnn train: interrupted; checkpoint saved. Continue with: "
            f"jaxrnn train --out {result.run_dir} --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def _report(result, config: TrainConfig) -> None:
    m = result.metrics
    n = min(len(m["train_bpc"]), 100)
    train_bpc = f"{np.mean(m['train_bpc'][-n:]):.3f} bpc (mean of the last {n} steps)" if n else "-"
    print(
        f"jaxrnn train: step {result.step}/{config.steps}: train {train_bpc}, "
        f"validation {result.val_bpc:.3f} bpc (unigram entropy {result.unigram_bpc:.3f}), "
        f"{result.elapsed_s:.0f}s, {result.tokens_per_s:,.0f} tokens/s; run: {result.run_dir}"
    )


def _sample(args: argparse.Namespace) -> int:
    from .train._checkpoint import CheckpointError
    from .train._load import load_run
    from .train._sample import sample

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


def main(argv: list[str] | None = None) -> int:
    """Runs the ``jaxrnn`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)
