"""Benchmark: memory-bounded BPTT (``checkpoint="sqrt"``, issue 13) against the full store,
naive autodiff and the ``jax.checkpoint`` recipe, for one layer and for the training step.

Memory is XLA's compiled memory analysis (``jax.jit(f).lower(...).compile()
.memory_analysis().temp_size_in_bytes``, compiled, not run) and, for one layer, what
the forward pass keeps for the backward pass (the bytes of ``jax.vjp``'s residuals,
inputs included). Time is the median of interleaved rounds (``benchlib.interleave``),
float32, ``block_until_ready``; ratios are medians of paired per-round ratios.

Sections:

- (a) one layer, N,T,D,H = 8,8192,16,256: ``jax.grad`` of ``vdot(h, g)`` through
  ``jaxrnn.rnn`` (full store, ``checkpoint="sqrt"``), of the naive scan
  (``reference.scan_rnn``) and of the ``jax.checkpoint`` recipe (a scan over chunks,
  each chunk's inner scan under ``jax.checkpoint``);
- (b) the training step ``model.loss_and_grads`` at N = 8, T = 16384, vocab 101,
  hidden (128, 128): full store vs ``"sqrt"``, without and with lengths;
- (c) memory against T for (a)'s four candidates: ``benchmarks/memory_vs_T.png``;
- (d) one training step (``loss_and_grads`` + an Adam update) of the default model
  (2 layers, hidden 256, vocab 101) on one sequence of T = 1,000,000 tokens, each case
  in a fresh subprocess: wall time and peak resident memory (``VmHWM``); the full
  store only if XLA's estimate fits in ``--max-gib`` (else the estimate is reported).

Usage::

    python benchmarks/memory.py                  # everything, ~6-9 min on 2 cores
    python benchmarks/memory.py --quick          # small shapes, ~1 min
    python benchmarks/memory.py --out FILE.md    # also save the printed report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import _threads_env  # noqa: F401  (first: the thread settings precede numpy)
import benchlib as bl
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import model, reference

FULL = {"layer": (8, 8192, 16, 256), "model": (8, 16384, 101, (128, 128)), "long_T": 1_000_000,
        "sweep": (512, 1024, 2048, 4096, 8192, 16384), "budget": 25.0}  # fmt: skip
QUICK = {"layer": (8, 1024, 16, 64), "model": (8, 2048, 101, (64, 64)), "long_T": 50_000,
         "sweep": (256, 512, 1024, 2048), "budget": 4.0}  # fmt: skip
HERE = os.path.dirname(os.path.abspath(__file__))


def sqrt_k(T: int) -> int:
    return math.isqrt(T - 1) + 1  # ceil(sqrt(T)), the segment length of "sqrt"


def recipe_k(T: int) -> int:
    """The ``jax.checkpoint`` recipe's chunk: the largest divisor of T up to ceil(sqrt(T))
    (a scan over equal chunks needs one)."""
    return max(d for d in range(1, sqrt_k(T) + 1) if T % d == 0)


def remat_scan_rnn(x, h0, Wx, Wh, b, *, k):
    """The generic JAX recipe: ``lax.scan`` over T/k chunks whose inner scan of k steps is
    wrapped in ``jax.checkpoint``, so autodiff keeps one state per chunk and recomputes the
    chunk's steps in the backward pass. x: (N, T, D) -> h: (N, T, H)."""
    N, T, D = x.shape
    xs = x.reshape(N, T // k, k, D).transpose(1, 2, 0, 3)  # (T/k, k, N, D) time-major

    @jax.checkpoint
    def chunk(h, xc):
        def step(h, x_t):
            h = jnp.tanh(x_t @ Wx + h @ Wh + b)
            return h, h

        return jax.lax.scan(step, h, xc)

    _, hs = jax.lax.scan(chunk, h0, xs)  # (T/k, k, N, H)
    return hs.reshape(T, N, -1).transpose(1, 0, 2)


LAYERS = {  # name: h = layer(x, h0, Wx, Wh, b) at T steps
    "full store": lambda T: jaxrnn.rnn,
    "sqrt": lambda T: lambda *a: jaxrnn.rnn(*a, checkpoint="sqrt"),
    "autodiff": lambda T: reference.scan_rnn,
    "autodiff + jax.checkpoint": lambda T: lambda *a: remat_scan_rnn(*a, k=recipe_k(T)),
}
WHAT = {
    "full store": "jaxrnn.rnn (hand BPTT, every step stored)",
    "sqrt": "jaxrnn.rnn(checkpoint='sqrt')",
    "autodiff": "jax.grad of reference.scan_rnn",
    "autodiff + jax.checkpoint": "jax.grad of a scan over jax.checkpoint'ed chunks",
}


def layer_grad(name: str, T: int):
    """``jax.grad`` of ``vdot(h, g)`` w.r.t. ``(x, h0, Wx, Wh, b)`` for one candidate."""
    layer = LAYERS[name](T)
    return jax.grad(lambda x, h0, Wx, Wh, b, g: jnp.vdot(layer(x, h0, Wx, Wh, b), g),
                    argnums=(0, 1, 2, 3, 4))  # fmt: skip


def temp_bytes(f, *args) -> int:
    """XLA's temp buffers of the compiled ``f(*args)`` (compiled, not run)."""
    return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


def residual_bytes(f, *args) -> int:
    """Bytes of what ``jax.vjp(f)`` keeps for the backward pass (distinct arrays)."""
    _, vjp = jax.vjp(f, *args)
    leaves = {id(a): a for a in jax.tree_util.tree_leaves(vjp) if hasattr(a, "nbytes")}
    return sum(int(a.nbytes) for a in leaves.values())


def layer_memory(T: int, N: int, D: int, H: int) -> dict:
    """``{name: (temp bytes of jit(grad), bytes kept from forward to backward)}`` at one T."""
    args = tuple(map(jnp.asarray, bl.make_problem(N, T, D, H)))
    return {
        n: (temp_bytes(layer_grad(n, T), *args), residual_bytes(LAYERS[n](T), *args[:5]))
        for n in LAYERS
    }


def section_layer(cfg, lines: list[str]) -> dict:
    N, T, D, H = cfg["layer"]
    lines.append(f"\n### (a) One layer: N,T,D,H = {N},{T},{D},{H}, float32\n")
    p = bl.make_problem(N, T, D, H)
    args = tuple(map(jnp.asarray, p))
    grads = {n: jax.jit(layer_grad(n, T)) for n in LAYERS}
    mem = layer_memory(T, N, D, H)
    ref = jax.block_until_ready(grads["full store"](*args))
    errs = {n: bl.max_rel_err(g(*args), ref) for n, g in grads.items()}
    times = bl.interleave({n: bl.jax_run(g, *args) for n, g in grads.items()},
                          budget_s=cfg["budget"], min_reps=5, max_reps=15)  # fmt: skip
    base_t, base_m = times["full store"], mem["full store"]
    rows = []
    for n in grads:
        t, (tmp, res) = times[n], mem[n]
        rows.append([f"{n}: {WHAT[n]}", bl.mib(tmp), f"{tmp / base_m[0]:.1%}", bl.mib(res),
                     f"{res / base_m[1]:.1%}", bl.ms(np.median(t)),
                     f"{1 / bl.paired_ratio(base_t, t):.2f}x", f"{errs[n]:.1e}"])  # fmt: skip
    lines.append(bl.table(["candidate", "temp MiB (jit grad)", "vs full", "kept fwd->bwd MiB",
                           "vs full", "time ms (median)", "time vs full", "max rel err"],
                          rows))  # fmt: skip
    lines.append(
        f"\n(rounds: {len(base_t)}; sqrt: segments of {sqrt_k(T)} steps; the recipe: "
        f"chunks of {recipe_k(T)}, the largest divisor of T <= ceil(sqrt(T)); kept = "
        "bytes of the residuals of jax.vjp(layer), x and the weights included)"
    )
    for n in ("sqrt", "autodiff + jax.checkpoint"):
        m_ratio, t_ratio = mem[n][1] / base_m[1], 1 / bl.paired_ratio(base_t, times[n])
        lines.append(
            f"- {n}: keeps {m_ratio:.1%} of the full store (target for sqrt <= 10%: "
            f"{'met' if m_ratio <= 0.10 else 'MISSED'}), time {t_ratio:.2f}x "
            f"(target for sqrt <= 1.4x: {'met' if t_ratio <= 1.4 else 'MISSED'})"
        )
    return {"mem": mem, "times": times}


def section_model(cfg, lines: list[str]) -> dict:
    N, T, V, hidden = cfg["model"]
    lines.append(f"\n### (b) Training step: model.loss_and_grads, N={N}, T={T}, vocab {V}, "
                 f"hidden {hidden}, float32\n")  # fmt: skip
    rng = np.random.default_rng(0)
    params = model.init(jax.random.PRNGKey(0), V, hidden)
    tokens = jnp.asarray(rng.integers(0, V, (N, T)))
    targets = jnp.asarray(rng.integers(0, V, (N, T)))
    lengths = jnp.asarray(rng.integers(T // 2, T + 1, N).astype(np.int32))
    cases = {}
    for with_lengths in (False, True):
        for ck in (None, "sqrt"):
            kw = dict(lengths=lengths if with_lengths else None, checkpoint=ck)
            name = f"{'sqrt' if ck else 'full store'}{', lengths' if with_lengths else ''}"
            cases[name] = lambda p, kw=kw: model.loss_and_grads(p, tokens, targets, **kw)[:2]
    auto = jax.value_and_grad(lambda p: model.loss(p, tokens, targets, grad="autodiff")[0])
    mem = {n: temp_bytes(f, params) for n, f in cases.items()}
    mem_auto = temp_bytes(auto, params)
    fns = {n: jax.jit(f) for n, f in cases.items()}
    leaves = {n: jax.tree_util.tree_leaves(f(params)) for n, f in fns.items()}
    err = {n: bl.max_rel_err(leaves[n], leaves[n.replace("sqrt", "full store")]) for n in fns}
    times = bl.interleave({n: bl.jax_run(f, params) for n, f in fns.items()},
                          budget_s=2 * cfg["budget"], min_reps=5, max_reps=15)  # fmt: skip
    rows, verdicts = [], []
    for n in fns:
        base = n.replace("sqrt", "full store")
        m_ratio, t_ratio = mem[n] / mem[base], 1 / bl.paired_ratio(times[base], times[n])
        rows.append([n, bl.mib(mem[n]), f"{m_ratio:.1%}", bl.ms(np.median(times[n])),
                     f"{t_ratio:.2f}x", f"{err[n]:.1e}"])  # fmt: skip
        if n.startswith("sqrt"):
            ok_m, ok_t = ("met" if ok else "MISSED" for ok in (m_ratio <= 0.05, t_ratio <= 1.4))
            verdicts.append(f"{n}: memory {m_ratio:.1%} of the full store (target <= 5%: {ok_m}), "
                            f"time {t_ratio:.2f}x (target <= 1.4x: {ok_t})")  # fmt: skip
    rows.append(["autodiff (model.loss, grad='autodiff')", bl.mib(mem_auto),
                 f"{mem_auto / mem['full store']:.1%}", "-", "-", "-"])  # fmt: skip
    lines.append(bl.table(["case", "temp MiB", "vs full store", "time ms (median)",
                           "time vs full store", "max rel err vs full"], rows))  # fmt: skip
    lines.append(f"\n(rounds: {len(times['sqrt'])}; sqrt = segments of {sqrt_k(T)} steps; "
                 f"lengths drawn in [{T // 2}, {T}])\n")  # fmt: skip
    lines += [f"- {v}" for v in verdicts]
    return {"mem": mem, "mem_autodiff": mem_auto, "times": times}


def section_sweep(cfg, lines: list[str], png: str) -> None:
    N, _, D, H = cfg["layer"]
    lines.append(f"\n### (c) Memory against T (one layer, N,D,H = {N},{D},{H})\n")
    data = {T: layer_memory(T, N, D, H) for T in cfg["sweep"]}
    names = short = list(LAYERS)
    head = ["T"] + [f"{s}: temp / kept MiB" for s in short]
    rows = [[T] + [f"{bl.mib(d[n][0])} / {bl.mib(d[n][1])}" for n in names]
            for T, d in data.items()]  # fmt: skip
    lines.append(bl.table(head, rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    Ts = list(data)
    titles = ("temp memory of jit(grad) (XLA)", "kept between forward and backward")
    for i, (ax, what) in enumerate(zip(axes, titles, strict=True)):
        for n, s in zip(names, short, strict=True):
            ax.loglog(Ts, [data[T][n][i] / 2**20 for T in Ts], "o-", label=s)
        ax.set_xlabel("T (steps)")
        ax.set_ylabel("MiB")
        ax.set_title(what)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"one tanh RNN layer, N,D,H = {N},{D},{H}, float32")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    lines.append(f"\nplot: {os.path.relpath(png, os.path.dirname(HERE))}")


# ----------------------------------------------------------------------------- (d) long run
def long_step(T: int, checkpoint, run: bool) -> dict:
    """One training step of the default model on one sequence of T tokens (in this process)."""
    import optax

    V = 101
    params = model.init(jax.random.PRNGKey(0), V, (256, 256))  # the train app's default
    opt = optax.adam(3e-3)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, V, (1, T)))
    targets = jnp.asarray(rng.integers(0, V, (1, T)))

    def step(params, opt_state, tokens, targets):  # the data as arguments, not HLO constants
        loss, grads, _ = model.loss_and_grads(params, tokens, targets, checkpoint=checkpoint)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = opt.init(params)
    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(params, state, tokens, targets).compile()
    out = {"compile_s": time.perf_counter() - t0,
           "temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
           "maxrss_compiled_bytes": _maxrss()}  # fmt: skip
    if run:
        t0 = time.perf_counter()
        _, _, loss = jax.block_until_ready(compiled(params, state, tokens, targets))
        out.update(step_s=time.perf_counter() - t0, loss_per_token=float(loss) / T)
    out["maxrss_bytes"] = _maxrss()
    return out


def _maxrss() -> int:
    """Peak resident memory of this process so far, in bytes: ``VmHWM`` of /proc/self/status.

    Not ``getrusage``'s ``ru_maxrss`` where /proc exists: Linux carries ``ru_maxrss``
    over ``fork`` + ``exec``, so a fresh subprocess of this (large) script would report
    at least the parent's peak (measured: 1.49 GiB for every case).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def subprocess_case(T: int, checkpoint, run: bool, timeout: float) -> dict:
    argv = [sys.executable, __file__, "--long-case", json.dumps([T, checkpoint, run])]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


def section_long(cfg, lines: list[str], max_gib: float) -> dict:
    T = cfg["long_T"]
    lines.append(f"\n### (d) Long run: one training step (loss_and_grads + Adam) of the default "
                 f"model (2 layers, hidden 256, vocab 101), N = 1, T = {T:,}\n")  # fmt: skip
    res = {"sqrt": subprocess_case(T, "sqrt", True, 900)}
    est = subprocess_case(T, None, False, 900)  # the full store: compile only, its estimate
    fits = "error" not in est and est["temp_bytes"] < max_gib * 2**30
    res["full store"] = subprocess_case(T, None, True, 900) if fits else est
    rows = []
    for n, r in res.items():
        if "error" in r:
            rows.append([n, "-", "-", "-", "-", "-", r["error"]])
            continue
        ran = "step_s" in r
        rows.append([n, f"{r['temp_bytes'] / 2**30:.2f}",
                     f"{r['maxrss_compiled_bytes'] / 2**30:.2f}",
                     f"{r['maxrss_bytes'] / 2**30:.2f}" if ran else "not run",
                     f"{r['step_s']:.1f}" if ran else "-", f"{r['compile_s']:.1f}",
                     f"loss/token {r['loss_per_token']:.4f}" if ran else
                     f"not run: estimate > {max_gib:g} GiB"])  # fmt: skip
    lines.append(bl.table(["case", "XLA temp GiB", "peak RSS GiB before the step (inputs, "
                           "compiled)", "peak RSS GiB after the step", "step s", "compile s",
                           "note"], rows))  # fmt: skip
    lines.append(f"\n(sqrt = segments of {sqrt_k(T)} steps; each case in a fresh process; RSS "
                 "includes Python, JAX and the compiled program)")  # fmt: skip
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes (about a minute)")
    ap.add_argument("--out", metavar="FILE", help="also write the report here")
    ap.add_argument("--json", metavar="FILE", help="raw numbers as JSON")
    ap.add_argument("--no-long", action="store_true", help="skip (d), the long run")
    ap.add_argument(
        "--max-gib",
        type=float,
        default=16.0,
        help="run the long full store only if XLA's estimate is below (default 16)",
    )
    ap.add_argument("--png", default=os.path.join(HERE, "memory_vs_T.png"))
    ap.add_argument("--long-case", help=argparse.SUPPRESS)  # internal: one (d) subprocess
    args = ap.parse_args(argv)
    if args.long_case:
        print(json.dumps(long_step(*json.loads(args.long_case))))
        return 0
    cfg = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    lines = [f"## jaxrnn memory benchmark ({'quick' if args.quick else 'full'} mode)", ""]
    lines += [f"- {h}" for h in bl.header()]
    raw = {"layer": section_layer(cfg, lines), "model": section_model(cfg, lines)}
    print("\n".join(lines), flush=True)
    n_printed = len(lines)
    section_sweep(cfg, lines, args.png)
    if not args.no_long:
        raw["long"] = section_long(cfg, lines, args.max_gib)
    lines.append(f"\nload average at end (1/5/15 min): {bl.load()}; "
                 f"total {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    print("\n".join(lines[n_printed:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
