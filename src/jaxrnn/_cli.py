"""The ``jaxrnn`` command line (also ``python -m jaxrnn``)."""

from __future__ import annotations

import argparse
import sys

from . import _demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrnn",
        description="The vanilla RNN and its hand-derived BPTT in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run forward + hand BPTT on random data and print the agreement with jax.grad",
        description=_demo.run.__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _demo.add_arguments(demo)
    demo.set_defaults(func=_demo.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no subcommand: the demo with its defaults
        args = parser.parse_args(["demo", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)
