"""``python -m jaxrnn.testing FORWARD BACKWARD``: the oracle as a command.

Prints one PASS line per activation, or the failure report, and exits 0 when
every check passed, 1 when one failed, 2 when the functions cannot be loaded.
``add_arguments`` and ``run`` have the shape of ``jaxrnn._demo`` so the
``jaxrnn`` command can mount them as a ``check`` subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxrnn import ACTIVATIONS

from . import _oracle
from ._check import DEFAULT_MAX_EXAMPLES, DEFAULT_TOL, run_check


def load(spec: str) -> Callable[..., Any]:
    """Imports ``"pkg.module:function"`` (or ``"path/to/file.py:function"``, or
    ``"module:Class.method"``) and returns the callable.

    Raises:
      ValueError: the spec has no ``:``, or the module or attribute is missing.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:FUNCTION (e.g. mypkg.rnn:rnn_forward), got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, so local modules import
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or mod_spec.loader is None or not path.is_file():
                raise ImportError(f"no file {module_name}")
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} (from {spec!r}): {e}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec!r} is a {type(obj).__name__}, not a function")
    return obj


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the check's arguments to ``parser``."""
    parser.add_argument("forward", help="MODULE:FUNCTION of your forward pass")
    parser.add_argument("backward", help="MODULE:FUNCTION of your backward pass")
    parser.add_argument(
        "--activation",
        default="tanh",
        choices=[*ACTIVATIONS, "all"],
        help="the activation your forward pass implements; 'all' checks each in turn",
    )
    parser.add_argument(
        "--step",
        action="store_true",
        help="check single-step functions (x: (N, D), prev_h: (N, H)) instead of sequences",
    )
    parser.add_argument(
        "--lengths",
        action="store_true",
        help="the forward takes lengths= (N,) as jaxrnn.rnn_forward does; 0 and T are drawn",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        help="hypothesis examples after the sweep of the 7 pool shapes",
    )
    parser.add_argument("--tol", type=float, default=DEFAULT_TOL, help="relative tolerance")
    parser.add_argument(
        "--shape", help="N,T,D,H: check this one problem (with --seed) instead of hypothesis"
    )
    parser.add_argument("--seed", type=int, default=0, help="the problem's seed, with --shape")
    parser.add_argument(
        "--random", action="store_true", help="draw fresh examples instead of the same each run"
    )


def run(args: argparse.Namespace) -> int:
    """Checks ``args.forward`` / ``args.backward``; prints a report; returns the exit code.

    Checks the sequence functions (``forward(x, h0, Wx, Wh, b) -> (h, cache)``,
    ``backward(dh, cache) -> (dx, dh0, dWx, dWh, db)``) against jaxrnn's hand
    BPTT and jax.grad in float64, or with --step the single-step functions.
    """
    try:
        forward, backward = load(args.forward), load(args.backward)
        shape = None
        if args.shape is not None:
            shape = tuple(int(n) for n in args.shape.split(","))
            if len(shape) != 4:
                raise ValueError(f"--shape must be N,T,D,H, got {args.shape!r}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.step and args.lengths:
        print("error: --lengths is for sequence checks, not --step", file=sys.stderr)
        return 2
    kind = _oracle.STEP if args.step else _oracle.LENGTHS if args.lengths else _oracle.SEQUENCE
    failed = 0
    for activation in ACTIVATIONS if args.activation == "all" else [args.activation]:
        repro = (
            f"{getattr(args, 'prog', 'python -m jaxrnn.testing')} {args.forward} {args.backward}"
            f" --activation {activation}"
            + (" --step" if args.step else "")
            + (" --lengths" if args.lengths else "")
            + (f" --tol {args.tol:g}" if args.tol != DEFAULT_TOL else "")
        )
        try:
            stats = run_check(
                kind, forward, backward, activation=activation, max_examples=args.max_examples,
                tol=args.tol, shapes=None, derandomize=not args.random, shape=shape,
                seed=args.seed, pass_activation=None, convert_inputs=None,
                repro=repro + " --shape {shape} --seed {seed}",
            )  # fmt: skip
        except AssertionError as e:
            failed += 1
            print(f"FAIL {kind.title}: {args.backward} (activation={activation!r})")
            print(str(e))
            continue
        worst = max(stats.max_rel_err.values())
        detail = ", ".join(f"{n} {e:.1e}" for n, e in stats.max_rel_err.items())
        print(
            f"PASS {kind.title}: {args.backward} (activation={activation!r}): "
            f"{stats.examples} examples, max relative error {worst:.1e} ({detail})"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None, prog: str = "python -m jaxrnn.testing") -> int:
    """Entry point of ``python -m jaxrnn.testing`` (and of ``jaxrnn check``, with its ``prog``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check your RNN forward/backward against jaxrnn's hand BPTT and jax.grad.",
        epilog="Exit status: 0 all checks passed, 1 a check failed, 2 bad arguments.",
    )
    add_arguments(parser)
    parser.set_defaults(prog=prog)  # for the reproduction line
    args = parser.parse_args(argv)
    if args.max_examples < 1:
        parser.error("--max-examples must be >= 1")
    if not (math.isfinite(args.tol) and args.tol > 0):
        parser.error(f"--tol must be a positive finite number, got {args.tol!r}")
    return run(args)
