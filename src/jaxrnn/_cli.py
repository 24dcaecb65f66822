"""The ``jaxrnn`` command line (also ``python -m jaxrnn``).

Subcommands: ``train`` (the main job), ``sample``, ``demo`` and ``check``. Without a
subcommand, ``jaxrnn`` prints its help. ``train`` and ``sample`` live in
:mod:`jaxrnn.train` (:func:`jaxrnn.train.add_commands`); this module builds the
top-level parser and dispatches. Exit codes: 0 success; 1 failure (a missing
optional dependency, a failed ``check`` or ``demo``); 2 bad usage or input,
including a run directory that cannot be used and OS errors such as a full disk
(argparse convention); 3 training diverged (a non-finite loss or gradient); 130
interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from . import _demo

EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxrnn`` argument parser with its subcommands."""
    from . import train  # the layer above the core (no optax until training starts)

    parser = argparse.ArgumentParser(
        prog="jaxrnn",
        description="The vanilla RNN and its hand-derived BPTT in JAX. "
        "Main job: `jaxrnn train` (a character-level language model).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_commands(sub)
    demo = sub.add_parser(
        "demo",
        help="run forward + hand BPTT on random data and print the agreement with jax.grad",
        description=_demo.run.__doc__,
    )
    _demo.add_arguments(demo, seed_type=train.parse_seed)
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
        from .testing import main as check_main
    except ImportError as e:  # hypothesis is an optional dependency
        message = f"{e}; install it with: pip install 'jaxrnn[testing]'"
        print(f"jaxrnn check: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    return check_main(args.argv, prog="jaxrnn check")


def main(argv: list[str] | None = None) -> int:
    """Runs the ``jaxrnn`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)
