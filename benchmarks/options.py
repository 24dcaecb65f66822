"""Benchmark: what the options (lengths, truncation) cost on the hand-derived path.

For each shape, times ``jit(grad)`` of ``vdot(h, g)`` with respect to all five
inputs, interleaved round-robin, and reports the median per-round speedup of
the hand BPTT (:func:`jaxrnn.rnn`, custom_vjp) over the naive autodiff scan
(:func:`jaxrnn.reference.scan_rnn` with the same options: a masked ``lax.scan``
with ``stop_gradient`` at the cuts), for:

- ``default``: no options;
- ``lengths``: random lengths in ``[T/2, T]`` (one sequence at T);
- ``lengths+truncation``: the same lengths, ``truncation=32``;

and, on the hand path, each option's time relative to the default path.

Usage::

    python benchmarks/options.py            # the issue's shapes (~3 min on 2 cores)
    python benchmarks/options.py --quick    # small shapes, < 30 s
"""

from __future__ import annotations

import argparse

import _threads_env  # noqa: F401  (first: the thread settings precede numpy)
import benchlib as bl
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import reference

SHAPES = {"full": ((8, 64, 32, 64), (32, 256, 128, 256), (64, 512, 256, 512)),
          "quick": ((8, 64, 32, 64), (16, 128, 64, 128))}  # fmt: skip
OPTIONS = {
    "default": lambda L: {},
    "lengths": lambda L: {"lengths": L},
    "lengths+truncation": lambda L: {"lengths": L, "truncation": 32},
    "truncation": lambda L: {"truncation": 32},
}


def runs_for(p: bl.Problem, option: str) -> dict[str, bl.Run]:
    """The hand and the naive ``jit(grad)`` with one option set, on device-resident inputs."""
    x, h0, Wx, Wh, b, g = map(jnp.asarray, p)
    N, T = x.shape[:2]
    rng = np.random.default_rng(1)
    L = jnp.asarray(np.r_[T, rng.integers(T // 2, T + 1, N - 1)].astype(np.int32))
    kw = OPTIONS[option](L)

    def hand(x, h0, Wx, Wh, b):
        return jnp.vdot(jaxrnn.rnn(x, h0, Wx, Wh, b, **kw), g)

    def naive(x, h0, Wx, Wh, b):
        return jnp.vdot(reference.scan_rnn(x, h0, Wx, Wh, b, **kw), g)

    args = (x, h0, Wx, Wh, b)
    return {
        f"hand {option}": bl.jax_run(bl.grad_fn(hand), *args),
        f"naive {option}": bl.jax_run(bl.grad_fn(naive), *args),
    }


def shape_rows(shape, budget_s: float) -> list[list[object]]:
    p = bl.make_problem(*shape)
    runs: dict[str, bl.Run] = {}
    for option in OPTIONS:
        runs.update(runs_for(p, option))
    times = bl.interleave(runs, budget_s=budget_s, min_reps=5, max_reps=200)
    med = {name: float(np.median(t)) for name, t in times.items()}
    rows = []
    for option in OPTIONS:
        hand, naive = times[f"hand {option}"], times[f"naive {option}"]
        rows.append([
            ", ".join(map(str, shape)), option, bl.ms(med[f"hand {option}"]),
            bl.ms(med[f"naive {option}"]), f"{bl.paired_ratio(naive, hand):.2f}x",
            f"{bl.paired_ratio(times['hand default'], hand) ** -1:.2f}x",
        ])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, short budget")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    print("\n".join(bl.header()))
    print(f"jax {jax.__version__}; float32; jit(grad) of vdot(h, g) w.r.t. x, h0, Wx, Wh, b\n")
    head = [
        "N, T, D, H",
        "option",
        "hand (ms)",
        "naive autodiff (ms)",
        "speedup",
        "hand vs default",
    ]
    rows = []
    for shape in SHAPES[mode]:
        rows += shape_rows(shape, budget_s=4.0 if args.quick else 25.0)
    print(bl.table(head, rows))
    print("\nspeedup: median over rounds of naive/hand; hand vs default: hand time with the")
    print("option over hand time without it (1.00x = the option costs nothing).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
