"""``jaxrnn demo``: forward + hand BPTT on random data, checked against jax.grad and numpy."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from . import ACTIVATIONS, rnn, rnn_backward, rnn_forward
from .reference import rnn_backward as np_rnn_backward
from .reference import rnn_forward as np_rnn_forward
from .reference import scan_rnn

MIN_SIZE = {"N": 0, "T": 0, "D": 1, "H": 1}

NAMES = ("dx", "dh0", "dWx", "dWh", "db")


def add_arguments(parser: argparse.ArgumentParser, seed_type: Callable[[str], int] = int) -> None:
    """The demo's options; ``seed_type`` parses (and range-checks) ``--seed``."""
    parser.add_argument("--N", type=int, default=8, help="batch size (default: 8)")
    parser.add_argument("--T", type=int, default=32, help="sequence length (default: 32)")
    parser.add_argument("--D", type=int, default=16, help="input size (default: 16)")
    parser.add_argument("--H", type=int, default=32, help="hidden size (default: 32)")
    parser.add_argument(
        "--seed", type=seed_type, default=0, help="random seed, 0 <= seed < 2**32 (default: 0)"
    )


def _max_rel_err(got, want) -> float:
    errs = [
        float(jnp.max(jnp.abs(g - w)) / jnp.maximum(jnp.max(jnp.abs(w)), 1.0))
        for g, w in zip(got, want, strict=True)
        if w.size
    ]
    return max(errs, default=0.0)


def _errors(base: list, dh_np: np.ndarray, activation: str, dtype) -> list[float]:
    """Worst relative errors: hand BPTT vs jax.grad, vs the numpy document; custom_vjp vs grad."""
    args_ = [jnp.asarray(a, dtype) for a in base]
    dh = jnp.asarray(dh_np, dtype)
    _, cache = rnn_forward(*args_, activation=activation)
    hand = rnn_backward(dh, cache)
    _, vjp = jax.vjp(lambda *a: scan_rnn(*a, activation=activation), *args_)
    auto = vjp(dh)
    _, np_cache = np_rnn_forward(*[np.asarray(a) for a in args_], activation=activation)
    ref = np_rnn_backward(np.asarray(dh), np_cache)
    cvjp = jax.grad(
        lambda *a: jnp.sum(cast(jax.Array, rnn(*a, activation=activation)) * dh),  # no return_state
        argnums=(0, 1, 2, 3, 4),
    )(*args_)
    return [_max_rel_err(hand, o) for o in (auto, ref)] + [_max_rel_err(cvjp, auto)]


def run(args: argparse.Namespace) -> int:
    """Prints, per activation and dtype, the worst relative error of the hand BPTT.

    Exit code 0 when it agrees, 1 when it does not, 2 for a bad size.
    """
    for name, lo in MIN_SIZE.items():
        if getattr(args, name) < lo:
            print(
                f"jaxrnn demo: error: --{name} must be >= {lo}, got {getattr(args, name)}",
                file=sys.stderr,
            )
            return 2
    jax.config.update("jax_enable_x64", True)
    N, T, D, H = args.N, args.T, args.D, args.H
    rng = np.random.default_rng(args.seed)
    base = [
        rng.standard_normal((N, T, D)),
        rng.standard_normal((N, H)) * 0.5,
        rng.standard_normal((D, H)) / np.sqrt(D),
        rng.standard_normal((H, H)) / np.sqrt(H),
        rng.standard_normal(H) * 0.1,
    ]
    dh_np = rng.standard_normal((N, T, H))
    print(f"jaxrnn demo: N={N} T={T} D={D} H={H}, backend={jax.default_backend()}")
    print("max relative error of the hand-derived BPTT (rnn_backward) against:")
    print(f"{'activation':<10} {'dtype':<8} {'jax.grad':>10} {'numpy doc':>10} {'custom_vjp':>10}")
    t0 = time.perf_counter()
    worst = {np.float32: 0.0, np.float64: 0.0}
    for activation in ACTIVATIONS:
        for dtype in (np.float32, np.float64):
            errs = _errors(base, dh_np, activation, dtype)
            worst[dtype] = max(worst[dtype], *errs)
            e1, e2, e3 = errs
            print(f"{activation:<10} {np.dtype(dtype).name:<8} {e1:10.2e} {e2:10.2e} {e3:10.2e}")
    print(
        f"worst: float64 {worst[np.float64]:.2e}, float32 {worst[np.float32]:.2e} "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    ok = worst[np.float64] <= 1e-10 and worst[np.float32] <= 1e-4
    print(
        "OK: hand-derived BPTT == jax.grad == the document's numpy algorithm"
        if ok
        else "MISMATCH: the hand-derived gradients disagree with the oracles"
    )
    return 0 if ok else 1
