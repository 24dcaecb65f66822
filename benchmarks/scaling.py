"""Scaling of the hand BPTT against autodiff: time vs T (should be linear) and vs H, and memory.

For every point, ``jit(grad)`` through :func:`jaxrnn.rnn` and through the naive
``lax.scan`` baseline are timed interleaved, and XLA's memory analysis of both
compiled forward+backward programs is reported (``temp``: scratch buffers,
including the residuals kept for the backward pass).

Usage::

    python benchmarks/scaling.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import _threads_env  # noqa: F401  (first: the thread settings precede numpy, torch)
import benchlib as bl
import jax
import numpy as np


class Grid(NamedTuple):
    N: int
    D: int
    Ts: tuple[int, ...]  # sweep of T at H = H_fixed
    H_fixed: int
    Hs: tuple[int, ...]  # sweep of H at T = T_fixed
    T_fixed: int
    budget_s: float  # timed seconds per point


FULL = Grid(16, 64, (32, 64, 128, 256, 512, 1024), 128, (32, 64, 128, 256, 512), 128, 3.0)
QUICK = Grid(8, 32, (32, 64, 128), 64, (32, 64, 128), 64, 0.5)
SMOKE = Grid(2, 3, (4, 8), 4, (8,), 4, 0.02)


def point(N: int, T: int, D: int, H: int, budget_s: float, min_reps: int, max_reps: int) -> dict:
    """Interleaved medians and compiled temp bytes of hand and naive ``jit(grad)`` at one shape."""
    p = bl.make_problem(N, T, D, H)
    args = tuple(jax.device_put(a) for a in p)
    runs, temp = {}, {}
    for name, loss in (("hand", bl.hand_loss), ("naive", bl.naive_loss)):
        f = bl.grad_fn(loss)
        temp[name] = f.lower(*args).compile().memory_analysis().temp_size_in_bytes
        runs[name] = bl.jax_run(f, *args)
    times = bl.interleave(runs, budget_s=budget_s, min_reps=min_reps, max_reps=max_reps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"med": med, "ratio": bl.paired_ratio(times["naive"], times["hand"]), "temp": temp}


def _rows(var: str, values, res) -> list[list[str]]:
    rows = []
    for v, r in zip(values, res, strict=True):
        per = [f"{1e6 * r['med'][k] / v:.1f}" if var == "T" else "" for k in ("hand", "naive")]
        rows.append(
            [
                str(v),
                bl.ms(r["med"]["hand"]),
                bl.ms(r["med"]["naive"]),
                f"{r['ratio']:.2f}x",
                *([p for p in per] if var == "T" else []),
                bl.mib(r["temp"]["hand"]),
                bl.mib(r["temp"]["naive"]),
            ]
        )
    return rows


def _linear_fit(xs, ys) -> tuple[float, float, float]:
    """Least squares ``y = a + b x``; returns ``(a, b, R^2)``."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    r2 = 1 - float(resid @ resid) / max(float(((y - y.mean()) ** 2).sum()), 1e-30)
    return float(a), float(b), r2


def report(g: Grid, min_reps: int, max_reps: int) -> list[str]:
    """Markdown lines: the T sweep with a linear fit, the H sweep, memory of both."""
    out = [f"### scaling with T (N={g.N}, D={g.D}, H={g.H_fixed}), forward+backward", ""]
    res_T = [point(g.N, T, g.D, g.H_fixed, g.budget_s, min_reps, max_reps) for T in g.Ts]
    head = ["T", "hand ms", "naive ms", "speedup", "hand us/step", "naive us/step"]
    head += ["hand temp MiB", "naive temp MiB"]
    out += [bl.table(head, _rows("T", g.Ts, res_T)), ""]
    for k in ("hand", "naive"):
        a, b, r2 = _linear_fit(g.Ts, [r["med"][k] for r in res_T])
        out.append(
            f"- {k}: t = {1e3 * a:.3f} ms + {1e6 * b:.2f} us * T, R^2 = {r2:.4f}; "
            f"t(T={g.Ts[-1]}) / t(T={g.Ts[0]}) = {res_T[-1]['med'][k] / res_T[0]['med'][k]:.1f} "
            f"(T ratio {g.Ts[-1] / g.Ts[0]:.0f})"
        )
    out += ["", f"### scaling with H (N={g.N}, T={g.T_fixed}, D={g.D}), forward+backward", ""]
    res_H = [point(g.N, g.T_fixed, g.D, H, g.budget_s, min_reps, max_reps) for H in g.Hs]
    head = ["H", "hand ms", "naive ms", "speedup", "hand temp MiB", "naive temp MiB"]
    out += [bl.table(head, _rows("H", g.Hs, res_H)), ""]
    worse = [
        f"{var}={v}"
        for var, vals, res in (("T", g.Ts, res_T), ("H", g.Hs, res_H))
        for v, r in zip(vals, res, strict=True)
        if r["temp"]["hand"] > r["temp"]["naive"]
    ]
    out.append(
        "memory: the hand program's temp buffers are <= autodiff's at every point."
        if not worse
        else f"memory: the hand program needs MORE temp memory than autodiff at {', '.join(worse)}."
    )
    out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true")
    group.add_argument("--smoke", action="store_true")
    opts = parser.parse_args(argv)
    grid = SMOKE if opts.smoke else QUICK if opts.quick else FULL
    print("\n".join(["```", *bl.header(), "```", ""]))
    print("\n".join(report(grid, 2 if opts.smoke else 3, 41)))
    print(f"load average at end: {bl.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
