"""Benchmark: exact RTRL (``jaxrnn.rtrl``, MATH.md §11) against BPTT (``jax.grad`` through
``jaxrnn.rnn``, the hand rule) for the gradient of a summed per-step loss.

Memory is XLA's compiled memory analysis (``temp_size_in_bytes`` of the jitted loss and
gradient: what the program allocates besides its inputs and outputs), compiled, not run.
Time is the median of interleaved rounds (``benchlib.interleave``), float32,
``block_until_ready``, reported per time step. Both compute the same gradient (the
largest relative difference is printed).

Sections:

- (a) per step vs H (D = H/2, N = 4, T = 128): time and memory of each;
- (b) memory and time vs T at one H: RTRL's memory stays flat, BPTT's grows with T;
  plotted to ``benchmarks/rtrl_vs_bptt.png``.

Usage::

    python benchmarks/rtrl.py            # ~2 min on 2 cores
    python benchmarks/rtrl.py --quick    # small shapes, ~30 s
    python benchmarks/rtrl.py --out FILE.md
"""

from __future__ import annotations

import argparse
import os

import _threads_env  # noqa: F401  (first: the thread settings precede numpy)
import benchlib as bl
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

FULL = {"Hs": (8, 16, 32), "T": 128, "H_sweep": 16, "Ts": (64, 256, 1024, 4096), "budget": 6.0}
QUICK = {"Hs": (8, 16), "T": 64, "H_sweep": 8, "Ts": (32, 128, 512), "budget": 1.0}
N = 4
HERE = os.path.dirname(os.path.abspath(__file__))


def squared_error(h, y):
    """One sequence's loss at one step, ``h, y: (H,)``."""
    return jnp.sum((h - y) ** 2)


def problem(T: int, H: int, seed: int = 0):
    """``(params, x, h0, y)`` of one RNN layer, float32, D = max(H // 2, 1)."""
    D = max(H // 2, 1)
    k = jax.random.split(jax.random.key(seed), 3)
    p = jaxrnn.init_rnn_params(k[0], D, H)
    x = jax.random.normal(k[1], (N, T, D))
    y = jax.random.normal(k[2], (N, T, H))
    return p, x, jnp.zeros((N, H)), y


def rtrl_fn(p, x, h0, y):
    return jaxrnn.rtrl("rnn", squared_error, x, h0, p, y)


def bptt_fn(p, x, h0, y):
    def loss(p):
        h = jaxrnn.rnn(x, h0, *p)
        return jnp.sum(jax.vmap(jax.vmap(squared_error))(h, y))

    return jax.value_and_grad(loss)(p)


def measure(T: int, H: int, budget: float) -> dict:
    """Per-step time (s) and compiled temp memory (bytes) of RTRL and BPTT at (T, H)."""
    args = problem(T, H)
    out = {}
    fns = {"rtrl": jax.jit(rtrl_fn), "bptt": jax.jit(bptt_fn)}
    for name, fn in fns.items():
        out[name + "_mem"] = fn.lower(*args).compile().memory_analysis().temp_size_in_bytes
    runs = {name: (lambda fn=fn: jax.block_until_ready(fn(*args))) for name, fn in fns.items()}
    times = bl.interleave(runs, budget_s=budget, min_reps=3, max_reps=50)
    for name in fns:
        out[name + "_step"] = float(np.median(times[name])) / T
    got, want = fns["rtrl"](*args)[1], fns["bptt"](*args)[1]
    out["err"] = bl.max_rel_err(jax.tree.leaves(got), jax.tree.leaves(want))
    return out


def plot(Ts, rows: list[dict], H: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, style in (("rtrl", "o-"), ("bptt", "s--")):
        a.loglog(Ts, [r[name + "_mem"] / 2**20 for r in rows], style, label=name.upper())
        b.loglog(Ts, [r[name + "_step"] * 1e6 for r in rows], style, label=name.upper())
    a.set(xlabel="T", ylabel="compiled temp memory (MiB)", title=f"memory, N={N}, H={H}")
    b.set(xlabel="T", ylabel="time per step (µs)", title="time per step")
    for ax in (a, b):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="also write the report (markdown) here")
    ap.add_argument("--png", default=os.path.join(HERE, "rtrl_vs_bptt.png"))
    a = ap.parse_args()
    cfg = QUICK if a.quick else FULL
    lines = bl.header()
    head = ["H", "D", "P", "RTRL µs/step", "BPTT µs/step", "RTRL MiB", "BPTT MiB", "max rel diff"]
    rows = []
    for H in cfg["Hs"]:
        r = measure(cfg["T"], H, cfg["budget"])
        P = max(H // 2, 1) * H + H * H + H
        rows.append([H, max(H // 2, 1), P, f"{r['rtrl_step'] * 1e6:.1f}",
                     f"{r['bptt_step'] * 1e6:.1f}", bl.mib(r["rtrl_mem"]),
                     bl.mib(r["bptt_mem"]), f"{r['err']:.1e}"])  # fmt: skip
    lines += ["", f"### (a) per step vs H (N={N}, T={cfg['T']}, float32)", bl.table(head, rows)]
    H, sweep = cfg["H_sweep"], []
    for T in cfg["Ts"]:
        sweep.append(measure(T, H, cfg["budget"]))
    head = ["T", "RTRL µs/step", "BPTT µs/step", "RTRL MiB", "BPTT MiB"]
    rows = [
        [T, f"{r['rtrl_step'] * 1e6:.1f}", f"{r['bptt_step'] * 1e6:.1f}"]
        + [bl.mib(r["rtrl_mem"]), bl.mib(r["bptt_mem"])]
        for T, r in zip(cfg["Ts"], sweep, strict=True)
    ]
    lines += ["", f"### (b) vs T (N={N}, H={H}, D={max(H // 2, 1)})", bl.table(head, rows)]
    plot(cfg["Ts"], sweep, H, a.png)
    lines.append(f"\nplot: {os.path.relpath(a.png, os.path.dirname(HERE))}")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
