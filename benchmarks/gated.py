"""Benchmark: ``jax.grad`` through the hand-derived LSTM/GRU BPTT against autodiff of a
naive ``lax.scan`` LSTM/GRU (and torch's CPU ``nn.LSTM``/``nn.GRU`` when installed).

For each cell and shape, times forward + backward of all gradients of the loss
``vdot(h, g)``, interleaved round-robin in one process (``benchlib.interleave``), and
reports the median time of each candidate and the median paired speed-up over the
naive scan (> 1: faster). float32, ``block_until_ready`` after every call.

- ``hand: jax.grad(lstm)``: ``jit(grad)`` through :func:`jaxrnn.lstm` (custom_vjp);
- ``naive: jax.grad(scan)``: ``jit(grad)`` of :func:`jaxrnn.reference.scan_lstm`
  (input projection inside the loop, unroll=1), what a JAX user writes;
- ``torch nn.LSTM``: eager forward + ``backward`` with the same threads.

Usage::

    python benchmarks/gated.py            # 32,256,128,256 and 64,512,256,512
    python benchmarks/gated.py --quick    # one small shape, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics

import _threads_env  # noqa: F401  (first: the thread settings precede numpy, torch)
import benchlib as bl
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import reference

SHAPES = ((32, 256, 128, 256), (64, 512, 256, 512))
GATES = {"lstm": 4, "gru": 3}


def problem(cell: str, N: int, T: int, D: int, H: int, seed: int = 0) -> tuple:
    """float32 ``(x, h0, *weights, g)`` for ``cell`` (weights Normal(0, 1/fan_in))."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    f32 = np.float32
    x = rng.standard_normal((N, T, D)).astype(f32)
    h0 = (0.5 * rng.standard_normal((N, H))).astype(f32)
    Wx = (rng.standard_normal((D, G * H)) / np.sqrt(D)).astype(f32)
    Wh = (rng.standard_normal((H, G * H)) / np.sqrt(H)).astype(f32)
    biases = [(0.1 * rng.standard_normal(G * H)).astype(f32) for _ in range(1 if G == 4 else 2)]
    g = rng.standard_normal((N, T, H)).astype(f32)
    return (x, h0, Wx, Wh, *biases, g)


def jax_runs(cell: str, args: tuple) -> dict:
    """``{name: run}`` for the hand custom_vjp and the naive scan, all weights' gradients."""
    hand, naive = {"lstm": (jaxrnn.lstm, reference.scan_lstm),
                   "gru": (jaxrnn.gru, reference.scan_gru)}[cell]  # fmt: skip
    *inputs, g = map(jnp.asarray, args)
    argnums = tuple(range(len(inputs)))

    def grad_of(f):
        return jax.jit(jax.grad(lambda *a: jnp.vdot(f(*a[:-1]), a[-1]), argnums=argnums))

    return {
        f"hand: jax.grad({cell})": bl.jax_run(grad_of(hand), *inputs, g),
        "naive: jax.grad(scan)": bl.jax_run(grad_of(naive), *inputs, g),
    }


def torch_run(cell: str, args: tuple, threads: int):
    """torch's ``nn.LSTM``/``nn.GRU`` forward + backward with the same function, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    x, h0, Wx, Wh, *bs, g = args
    N, T, D = x.shape
    H = h0.shape[1]
    net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(D, H, batch_first=True)
    perm = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H] if cell == "lstm" else np.arange(3 * H)
    with torch.no_grad():  # CS231n (i, f, o, g) -> torch (i, f, g, o)
        net.weight_ih_l0.copy_(torch.from_numpy(Wx[:, perm].T.copy()))
        net.weight_hh_l0.copy_(torch.from_numpy(Wh[:, perm].T.copy()))
        net.bias_ih_l0.copy_(torch.from_numpy(bs[0][perm].copy()))
        net.bias_hh_l0.copy_(torch.from_numpy(bs[-1][perm].copy() if cell == "gru" else 0 * bs[0]))
    xt = torch.from_numpy(x).requires_grad_()
    state = torch.from_numpy(h0)[None].requires_grad_()
    state = (state, torch.zeros_like(state).requires_grad_()) if cell == "lstm" else state
    gt = torch.from_numpy(g)

    def run():
        for t in net.parameters():
            t.grad = None
        net(xt, state)[0].backward(gt)

    return run


def table(cell: str, shape: tuple, budget_s: float, threads: int) -> list[str]:
    args = problem(cell, *shape)
    runs = jax_runs(cell, args)
    t = torch_run(cell, args, threads)
    if t is not None:
        runs[f"torch nn.{cell.upper()}"] = t
    times = bl.interleave(runs, budget_s=budget_s, min_reps=5, max_reps=50)
    base = times["naive: jax.grad(scan)"]
    lines = [f"\n{cell.upper()} N,T,D,H = {','.join(map(str, shape))}  ({len(base)} rounds)"]
    for name, ts in times.items():
        speed = bl.paired_ratio(base, ts)
        lines.append(f"  {name:<24} {1e3 * statistics.median(ts):9.2f} ms   x{speed:5.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per table")
    a = ap.parse_args()
    shapes = ((8, 32, 16, 32),) if a.quick else SHAPES
    threads = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"jax {jax.__version__}, {threads} cores, load average {load:.2f} at start")
    print("median time per jit(grad) call; x = median paired speed-up over the naive scan")
    for cell in a.cells.split(","):
        for shape in shapes:
            print("\n".join(table(cell, shape, 2.0 if a.quick else a.budget, threads)), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.2f} at end")


if __name__ == "__main__":
    main()
