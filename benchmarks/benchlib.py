"""Shared machinery of the benchmarks: problems, candidates, interleaved timing, tables.

A *candidate* is a zero-argument callable that runs one forward (+ backward) pass
on a fixed problem and waits for the result (``block_until_ready`` /
``torch.cuda.synchronize``). Candidates of one table are timed round-robin in
the same process (:func:`interleave`), so a change of machine load hits all of
them alike; each ratio is the median over rounds of the paired ratio
``t_baseline / t_candidate`` of the same round.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import _threads_env  # noqa: F401  (first: the thread settings precede numpy, torch)
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import jaxrnn
from jaxrnn import reference

Run = Callable[[], object]  # one timed call; returns only after the work is done


class Problem(NamedTuple):
    """One random problem in float32: the five inputs of ``rnn`` and the upstream ``dh``."""

    x: np.ndarray  # (N, T, D)
    h0: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    b: np.ndarray  # (H,)
    g: np.ndarray  # (N, T, H)  dE/dh, the loss is vdot(h, g)


def make_problem(N: int, T: int, D: int, H: int, seed: int = 0) -> Problem:
    """Random float32 inputs with a contractive ``Wh`` (spectral radius ~0.9)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return Problem(
        rng.standard_normal((N, T, D)).astype(f32),
        (0.5 * rng.standard_normal((N, H))).astype(f32),
        (rng.standard_normal((D, H)) / np.sqrt(D)).astype(f32),
        (0.9 * rng.standard_normal((H, H)) / np.sqrt(H)).astype(f32),
        (0.1 * rng.standard_normal(H)).astype(f32),
        rng.standard_normal((N, T, H)).astype(f32),
    )


def flops(N: int, T: int, D: int, H: int, backward: bool) -> float:
    """Matmul flops of one pass: forward ``2NT(DH + HH)``.

    The backward pass adds ``2NTDH`` each for dx and dWx, ``2NTHH`` each for dWh
    and the recursion ``da @ Wh^T``.
    """
    fwd = 2.0 * N * T * (D * H + H * H)
    return fwd + (2.0 * N * T * (2 * D * H + 2 * H * H) if backward else 0.0)


# ----------------------------------------------------------------------------- JAX
def naive_loss(x, h0, Wx, Wh, b, g):
    """The baseline a JAX user writes: ``lax.scan``, input projection inside the loop, unroll=1."""
    return jnp.vdot(reference.scan_rnn(x, h0, Wx, Wh, b), g)


def hand_loss(x, h0, Wx, Wh, b, g):
    """The same loss through :func:`jaxrnn.rnn`, whose VJP is the hand-derived BPTT."""
    return jnp.vdot(jaxrnn.rnn(x, h0, Wx, Wh, b), g)


def grad_fn(loss: Callable) -> Callable:
    """``jit(grad)`` of ``loss`` with respect to ``(x, h0, Wx, Wh, b)``: all five gradients."""
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))


def jax_run(fn: Callable, *args) -> Run:
    """A timed call of a (jitted) JAX function on device-resident ``args``."""
    return lambda: jax.block_until_ready(fn(*args))


def hand_direct_run(p: Problem) -> Run:
    """``rnn_forward`` then ``rnn_backward``: the document's API, two dispatches per call."""
    x, h0, Wx, Wh, b, g = map(jnp.asarray, p)

    def run():
        _, cache = jaxrnn.rnn_forward(x, h0, Wx, Wh, b)
        return jax.block_until_ready(jaxrnn.rnn_backward(g, cache))

    return run


# ----------------------------------------------------------------------------- flax
def flax_version() -> str | None:
    try:
        import flax
    except ImportError:
        return None
    return flax.__version__


def flax_fns(p: Problem) -> tuple[Callable, Callable, tuple]:
    """``nn.RNN(nn.SimpleCell)`` with our weights: ``(forward, grad of vdot(h, g), args)``."""
    from flax import linen as nn

    H = p.Wh.shape[0]
    model = nn.RNN(nn.SimpleCell(features=H))
    params = {"params": {"cell": {"i": {"kernel": p.Wx, "bias": p.b}, "h": {"kernel": p.Wh}}}}
    params = jax.tree_util.tree_map(jnp.asarray, params)
    init = model.init(jax.random.key(0), jnp.asarray(p.x), initial_carry=jnp.asarray(p.h0))
    if jax.tree_util.tree_structure(init) != jax.tree_util.tree_structure(params):
        raise RuntimeError(f"unexpected flax parameter tree {jax.tree_util.tree_structure(init)}")

    def fwd(params, x, h0):
        return model.apply(params, x, initial_carry=h0)

    def loss(params, x, h0, g):
        return jnp.vdot(fwd(params, x, h0), g)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    return jax.jit(fwd), grad, (params, jnp.asarray(p.x), jnp.asarray(p.h0), jnp.asarray(p.g))


def flax_grads_as_ours(grads) -> tuple:
    """Reorders flax's ``(params, x, h0)`` gradients to ``(dx, dh0, dWx, dWh, db)``."""
    gp, dx, dh0 = grads
    cell = gp["params"]["cell"]
    return dx, dh0, cell["i"]["kernel"], cell["h"]["kernel"], cell["i"]["bias"]


# ----------------------------------------------------------------------------- torch
def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def torch_runs(p: Problem, device: str, threads: int) -> tuple[Run, Run, Callable[[], tuple]]:
    """``torch.nn.RNN`` (tanh, batch_first) with our weights: ``(fwd, fwd+bwd, grads)``.

    torch has two biases; ``b_ih = b`` and ``b_hh = 0`` give the same function.
    On CUDA ``nn.RNN`` runs cuDNN's fused RNN.
    """
    import torch

    torch.set_num_threads(threads)
    N, T, D = p.x.shape
    H = p.Wh.shape[0]
    dev = torch.device(device)
    net = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True).to(dev)
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(p.Wx.T.copy()))
        net.weight_hh_l0.copy_(torch.from_numpy(p.Wh.T.copy()))
        net.bias_ih_l0.copy_(torch.from_numpy(p.b))
        net.bias_hh_l0.zero_()
    x = torch.from_numpy(p.x).to(dev).requires_grad_()
    h0 = torch.from_numpy(p.h0).to(dev)[None].requires_grad_()
    g = torch.from_numpy(p.g).to(dev)
    leaves = [x, h0, *net.parameters()]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def fwd():
        with torch.no_grad():
            out = net(x, h0)[0]
        sync()
        return out

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        net(x, h0)[0].backward(g)
        sync()

    def grads():
        fwd_bwd()
        return tuple(
            t.detach().cpu().numpy()
            for t in (x.grad, h0.grad[0], net.weight_ih_l0.grad.T, net.weight_hh_l0.grad.T)
        ) + (net.bias_ih_l0.grad.detach().cpu().numpy(),)

    return fwd, fwd_bwd, grads


# ----------------------------------------------------------------------------- numpy
def numpy_runs(p: Problem) -> tuple[Run, Run]:
    """The document's algorithm (:mod:`jaxrnn.reference`): ``(fwd, fwd+bwd)``."""

    def fwd():
        return reference.rnn_forward(p.x, p.h0, p.Wx, p.Wh, p.b)

    def fwd_bwd():
        _, cache = reference.rnn_forward(p.x, p.h0, p.Wx, p.Wh, p.b)
        return reference.rnn_backward(p.g, cache)

    return fwd, fwd_bwd


# ----------------------------------------------------------------------------- timing
def interleave(
    runs: dict[str, Run], *, budget_s: float, min_reps: int, max_reps: int
) -> dict[str, list[float]]:
    """Times every run round-robin; returns per-run lists of seconds, one entry per round.

    One untimed warm-up call each first (compilation). The number of rounds is
    ``budget_s`` divided by the warm round's time, clipped to ``[min_reps, max_reps]``.
    In each round a run shorter than 50 ms gets one untimed call before its timed
    one: switching between libraries (torch's and XLA's thread pools waking up,
    caches refilled) costs up to a millisecond, which would otherwise be charged
    to whichever run comes next. Import ``_threads_env`` first, or torch's and
    OpenBLAS's spinning worker threads slow down whatever runs after them.
    """
    warm = {}
    for name, run in runs.items():
        run()  # compile / allocate
        t0 = time.perf_counter()
        run()
        warm[name] = time.perf_counter() - t0
    reps = int(min(max_reps, max(min_reps, budget_s / max(sum(warm.values()), 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            if warm[name] < 0.05:
                run()
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def paired_ratio(base: Sequence[float], cand: Sequence[float]) -> float:
    """Median over rounds of ``base / cand``: > 1 means the candidate is faster."""
    return statistics.median(b / c for b, c in zip(base, cand, strict=True))


def matmul_peak(n: int, reps: int) -> float:
    """GFLOP/s of a jitted ``(n, n) @ (n, n)`` float32 matmul on JAX's default device.

    The best of ``reps`` calls: a peak, which a busy machine can only lower.
    """
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t0)
    return 2.0 * n**3 / min(ts) / 1e9


def max_rel_err(got: Sequence, want: Sequence) -> float:
    """``max |a - b| / max(max |b|, 1)`` over the five gradients."""
    errs = []
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if b.size:
            errs.append(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1.0)))
    return max(errs, default=0.0)


def threads() -> int:
    """The CPU threads this process may use (JAX's intra-op pool uses all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def load() -> str:
    """``os.getloadavg()`` as text: the 1/5/15-minute load of the machine."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header() -> list[str]:
    """Lines describing machine, versions and load: printed before every results table."""
    dev = jax.devices()[0]
    lines = [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"machine: {cpu_model()}, {threads()} threads, {platform.system()} {platform.release()}",
        f"jax device: {dev.platform} ({dev.device_kind}), "
        f"default matmul precision: {jax.config.jax_default_matmul_precision or 'default'}",
        f"python {platform.python_version()}, jax {jax.__version__}, "
        f"jaxlib {jaxlib.__version__}, "
        f"numpy {np.__version__}, jaxrnn {jaxrnn.__version__}, "
        f"flax {flax_version() or 'not installed'}, torch {torch_version() or 'not installed'}",
        f"jaxrnn imported from: {os.path.dirname(jaxrnn.__file__)}",
        f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '(unset)')}; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')} (numpy); "
        f"torch threads = JAX threads = {threads()}",
        f"load average at start (1/5/15 min): {load()}",
        f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}",
    ]
    return lines


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def mib(n: int | float) -> str:
    return f"{n / 2**20:.2f}"
