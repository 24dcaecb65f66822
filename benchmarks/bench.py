"""Benchmark: the hand-derived BPTT against autodiff, flax, torch and the document's numpy loop.

Times, side by side in one process and interleaved round-robin, forward +
backward of all five gradients ``(dx, dh0, dWx, dWh, db)`` of the loss
``vdot(h, g)`` (so ``dh = g``), and the forward pass alone:

- ``hand: jax.grad(rnn)``: ``jit(grad)`` through :func:`jaxrnn.rnn` (custom_vjp);
- ``hand: rnn_forward+rnn_backward``: the two jitted functions called directly;
- ``baseline: jax.grad(naive scan)``: ``jit(grad)`` of :func:`jaxrnn.reference.scan_rnn`
  (``lax.scan``, input projection inside the loop, unroll=1), what a JAX user writes;
- ``flax nn.RNN(SimpleCell)``: ``jit(grad)`` of flax's RNN with the same weights;
- ``torch nn.RNN``: eager forward + ``backward`` (cuDNN on CUDA), same threads as JAX;
- ``numpy (document)``: :mod:`jaxrnn.reference`, the document's loops.

Then the first-call cost (trace+lower, XLA compile) and XLA's memory analysis
of the compiled forward+backward, and the scaling with T and H (``scaling.py``).

Usage::

    python benchmarks/bench.py                 # full run (~5 min on 2 cores)
    python benchmarks/bench.py --quick         # < 1 min, asserts nothing about speed
    python benchmarks/bench.py --out RESULTS_RUN.md
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple

import _threads_env  # noqa: F401  (first: the thread settings precede numpy, torch)
import benchlib as bl
import jax
import scaling

import jaxrnn

Shape = tuple[int, int, int, int]  # N, T, D, H

# Issue 5: speedup of jax.grad through jaxrnn.rnn over the naive autodiff baseline.
TARGETS: dict[Shape, float] = {
    (8, 64, 32, 64): 2.5,
    (32, 256, 128, 256): 1.8,
    (64, 512, 256, 512): 1.15,
}
BASE = "baseline: jax.grad(naive scan)"
HAND = "hand: jax.grad(rnn)"


class Mode(NamedTuple):
    shapes: tuple[Shape, ...]
    budget_s: float  # timed seconds per table (rounds = budget / one round)
    min_reps: int
    max_reps: int
    peak_n: int  # size of the square matmul that measures the peak
    scaling: scaling.Grid


MODES = {
    "full": Mode(tuple(TARGETS), 30.0, 7, 41, 2048, scaling.FULL),
    "quick": Mode(((8, 64, 32, 64), (16, 128, 64, 128)), 2.0, 3, 21, 1024, scaling.QUICK),
    "smoke": Mode(((2, 5, 3, 4),), 0.05, 2, 3, 128, scaling.SMOKE),
}


def section_shape(
    shape: Shape, mode: Mode, peak: float, opts: argparse.Namespace
) -> tuple[list[str], dict]:
    """The tables of one shape: fwd+bwd, forward only, compile and memory."""
    N, T, D, H = shape
    p = bl.make_problem(N, T, D, H)
    args = tuple(jax.device_put(a) for a in p)  # x, h0, Wx, Wh, b, g
    out = [f"### N={N}, T={T}, D={D}, H={H}", ""]
    notes: list[str] = []

    hand_grad, naive_grad = bl.grad_fn(bl.hand_loss), bl.grad_fn(bl.naive_loss)

    # First call: trace+lower and XLA compile, and the compiled program's memory.
    rows = []
    for name, fn in ((HAND, hand_grad), (BASE, naive_grad)):
        t0 = time.perf_counter()
        lowered = fn.lower(*args)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        m = compiled.memory_analysis()
        total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
        total -= m.alias_size_in_bytes
        rows.append(
            [name, f"{t1 - t0:.3f}", f"{t2 - t1:.3f}", bl.mib(m.temp_size_in_bytes), bl.mib(total)]
        )
    compile_table = bl.table(
        ["fwd+bwd program", "trace+lower s", "XLA compile s", "temp MiB", "args+out+temp MiB"], rows
    )

    grad_runs: dict[str, bl.Run] = {HAND: bl.jax_run(hand_grad, *args)}
    grad_runs["hand: rnn_forward+rnn_backward"] = bl.hand_direct_run(p)
    grad_runs[BASE] = bl.jax_run(naive_grad, *args)
    fwd_runs: dict[str, bl.Run] = {"hand: rnn": bl.jax_run(jaxrnn.rnn, *args[:5])}
    fwd_runs["baseline: naive scan"] = bl.jax_run(jax.jit(jaxrnn.reference.scan_rnn), *args[:5])
    check = {HAND: lambda: hand_grad(*args)}
    check["hand: rnn_forward+rnn_backward"] = lambda: jaxrnn.rnn_backward(
        args[5], jaxrnn.rnn_forward(*args[:5])[1]
    )

    if opts.flax and bl.flax_version():
        f_fwd, f_grad, f_args = bl.flax_fns(p)
        grad_runs["flax nn.RNN(SimpleCell)"] = bl.jax_run(f_grad, *f_args)
        fwd_runs["flax nn.RNN(SimpleCell)"] = bl.jax_run(f_fwd, *f_args[:3])
        check["flax nn.RNN(SimpleCell)"] = lambda: bl.flax_grads_as_ours(f_grad(*f_args))
    elif opts.flax:
        notes.append("flax not installed: skipped (`pip install flax`).")
    if opts.torch and bl.torch_version():
        import torch

        device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
        t_fwd, t_fwd_bwd, t_grads = bl.torch_runs(p, device, bl.threads())
        label = f"torch nn.RNN ({'cuDNN' if device == 'cuda' else 'cpu'})"
        grad_runs[label], fwd_runs[label], check[label] = t_fwd_bwd, t_fwd, t_grads
    elif opts.torch:
        notes.append("torch not installed: skipped (`pip install torch`, CPU wheel).")
    if opts.numpy:
        n_fwd, n_fwd_bwd = bl.numpy_runs(p)
        label = "numpy (document's loops)"
        grad_runs[label], fwd_runs[label], check[label] = n_fwd_bwd, n_fwd, n_fwd_bwd

    want = naive_grad(*args)
    errs = {name: bl.max_rel_err(fn(), want) for name, fn in check.items()}
    errs[BASE] = 0.0

    results = {}
    for title, runs, fl in (
        ("forward + backward (all five gradients)", grad_runs, bl.flops(N, T, D, H, True)),
        ("forward only", fwd_runs, bl.flops(N, T, D, H, False)),
    ):
        base = BASE if BASE in runs else "baseline: naive scan"
        times = bl.interleave(
            runs, budget_s=mode.budget_s, min_reps=mode.min_reps, max_reps=mode.max_reps
        )
        rows = []
        for name, ts in times.items():
            med = sorted(ts)[len(ts) // 2]
            gflops = fl / med / 1e9
            rows.append(
                [
                    name,
                    bl.ms(med),
                    f"{bl.paired_ratio(times[base], ts):.2f}x",
                    f"{gflops:.1f}",
                    f"{100 * gflops / peak:.0f}%",
                    f"{errs[name]:.1e}" if title.startswith("forward +") else "",
                ]
            )
        head = ["implementation", "median ms", "speedup vs baseline", "GFLOP/s", "% of peak"]
        head.append("max rel err of grads vs baseline" if title.startswith("forward +") else "")
        out += [f"{title}, {len(next(iter(times.values())))} interleaved rounds:", ""]
        out += [bl.table(head, rows), ""]
        if title.startswith("forward +"):
            results = times
    # Head to head: only the two programs the targets compare, in the rotation. Other
    # libraries' thread pools and cache footprints slow whatever runs after them (the
    # small shape is hit hardest), so the targets are judged on this pair alone.
    pair = {HAND: grad_runs[HAND], BASE: grad_runs[BASE]}
    h2h = bl.interleave(
        pair, budget_s=mode.budget_s, min_reps=mode.min_reps, max_reps=mode.max_reps
    )
    results["head to head"] = bl.paired_ratio(h2h[BASE], h2h[HAND])
    out += [
        f"head to head (only these two in the rotation, {len(h2h[HAND])} rounds): "
        f"{HAND} {bl.ms(sorted(h2h[HAND])[len(h2h[HAND]) // 2])} ms, "
        f"{BASE} {bl.ms(sorted(h2h[BASE])[len(h2h[BASE]) // 2])} ms: "
        f"speedup {results['head to head']:.2f}x",
        "",
    ]
    out += ["first call and memory (XLA `compiled.memory_analysis()`):", "", compile_table, ""]
    out += [f"*{n}*" for n in notes]
    out += [f"load average after this shape: {bl.load()}", ""]
    return out, results


def targets_table(all_times: dict[Shape, dict]) -> str:
    """Targets of issue 5 against the measured paired speedups.

    The status is judged on the head-to-head rotation (hand and baseline only); the
    all-library rotation's speedup is shown beside it.
    """
    rows = []
    for shape, times in all_times.items():
        hand = times["head to head"]
        target = TARGETS.get(shape)
        row = [",".join(map(str, shape)), f">= {target}x" if target else "-", f"{hand:.2f}x"]
        row.append(("met" if hand >= target else "MISSED") if target else "-")
        row.append(f"{bl.paired_ratio(times[BASE], times[HAND]):.2f}x")
        for other in ("torch", "flax"):
            name = next((n for n in times if n.startswith(other)), None)
            if name is None:
                row.append("not run")
                continue
            vs_base = bl.paired_ratio(times[BASE], times[name])
            vs_hand = bl.paired_ratio(times[name], times[HAND])  # > 1: hand is faster
            row.append(f"{vs_base:.2f}x; hand {vs_hand:.2f}x faster")
        rows.append(row)
    head = ["N,T,D,H", "target", "hand speedup (head to head)", "status"]
    head += ["hand speedup (all-library rotation)", "torch vs baseline", "flax vs baseline"]
    return bl.table(head, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small shapes, < 1 minute")
    group.add_argument("--smoke", action="store_true", help="tiny shapes, seconds (tests)")
    parser.add_argument("--out", help="also write the markdown report to this file")
    parser.add_argument(
        "--shapes",
        nargs="+",
        metavar="N,T,D,H",
        help="shapes instead of the mode's, e.g. 8,64,32,64",
    )
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument("--no-flax", dest="flax", action="store_false")
    parser.add_argument("--no-numpy", dest="numpy", action="store_false")
    parser.add_argument("--no-scaling", dest="scaling", action="store_false")
    opts = parser.parse_args(argv)
    name = "smoke" if opts.smoke else "quick" if opts.quick else "full"
    mode = MODES[name]
    if opts.shapes:
        mode = mode._replace(shapes=tuple(tuple(map(int, s.split(","))) for s in opts.shapes))
    t_start = time.perf_counter()
    lines = [f"## jaxrnn benchmark ({name} mode)", "", "```", *bl.header(), "```", ""]
    print("\n".join(lines), flush=True)

    peak_n = mode.peak_n if jax.default_backend() == "cpu" else max(mode.peak_n, 8192)
    peak = bl.matmul_peak(peak_n, reps=10)
    lines.append(f"large-matmul peak: {peak:.1f} GFLOP/s (float32 {peak_n}^2 matmul, best of 10)\n")
    print(lines[-1], flush=True)

    all_times = {}
    for shape in mode.shapes:
        part, all_times[shape] = section_shape(shape, mode, peak, opts)
        lines += part
        print("\n".join(part), flush=True)
    part = ["### targets (speedup = median over rounds of t_baseline / t_impl)", ""]
    part += [targets_table(all_times), ""]
    if opts.scaling:
        part += scaling.report(mode.scaling, mode.min_reps, mode.max_reps)
    part += [f"load average at end: {bl.load()}; wall time {time.perf_counter() - t_start:.0f} s"]
    lines += part
    print("\n".join(part), flush=True)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
