"""Benchmark: ``jax.vmap`` over the unbatched ``jaxrnn.eqx`` modules against the batched
functional core (``jaxrnn.rnn`` / ``lstm`` / ``gru`` on ``(N, T, D)``).

For each cell and shape, times ``jit(grad)`` of the loss ``vdot(h, g)`` with respect to
the weights and ``x``, on the same weights (the module's own), float32,
``block_until_ready`` after every call, interleaved round-robin in one process
(``benchlib.interleave``). Candidates:

- ``core``: ``jax.jit(jax.grad)`` of ``jaxrnn.<cell>(x, h0, *params)`` on the batch;
- ``jit(grad(vmap(module)))``: ``jax.jit(jax.grad)`` of ``jax.vmap(module)(x, state0)``
  (the module rebuilt from the differentiated params inside), i.e. vmap's cost alone;
- ``filter_jit(filter_grad(vmap(module)))``: the equinox idiom, gradient with respect to
  the module itself: vmap's cost plus ``eqx.filter_jit``'s per-call dispatch.

Reported: the median time per call, and the median paired ratio ``t_core / t`` (> 1: faster
than the core), and the largest relative difference of the gradients from the core's.

Usage::

    python benchmarks/eqx_vmap.py            # three shapes, all three cells
    python benchmarks/eqx_vmap.py --quick    # one small shape, seconds
"""

from __future__ import annotations

import argparse
import statistics

import _threads_env  # noqa: F401  (first: the thread settings precede numpy, torch)
import benchlib as bl
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
import jaxrnn.eqx as jeqx

SHAPES = ((8, 32, 16, 32), (32, 128, 64, 128), (64, 256, 128, 256))  # N, T, D, H
MODULES = {"rnn": jeqx.RNN, "lstm": jeqx.LSTM, "gru": jeqx.GRU}


def problem(cell: str, N: int, T: int, D: int, H: int, seed: int = 0) -> tuple:
    """A float32 module and ``(x (N, T, D), state0 (the cell's pytree, batched), g)``."""
    m = MODULES[cell](D, H, dtype=jnp.float32, key=jax.random.key(seed))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((N, T, D)), jnp.float32)
    h0 = jnp.asarray(0.5 * rng.standard_normal((N, H)), jnp.float32)
    state0 = (h0, jnp.zeros_like(h0)) if cell == "lstm" else h0
    g = jnp.asarray(rng.standard_normal((N, T, H)), jnp.float32)
    return m, x, state0, g


def candidates(cell: str, m, x, state0, g) -> tuple[dict, dict]:
    """``({name: run}, {name: (dparams, dx)})``: the timed calls and their gradients."""
    p = m.layers[0]

    def core(p, x):
        return jnp.vdot(getattr(jaxrnn, cell)(x, state0, *p), g)

    def vmapped(p, x):
        module = eqx.tree_at(lambda m: m.layers, m, (p,))
        return jnp.vdot(jax.vmap(module)(x, state0)[0], g)

    def module_loss(m, x):
        return jnp.vdot(jax.vmap(m)(x, state0)[0], g)

    core_grad = jax.jit(jax.grad(core, (0, 1)))
    vmap_grad = jax.jit(jax.grad(vmapped, (0, 1)))
    eqx_grad = eqx.filter_jit(eqx.filter_grad(lambda mx: module_loss(*mx)))
    runs = {
        "core": bl.jax_run(core_grad, p, x),
        "jit(grad(vmap(module)))": bl.jax_run(vmap_grad, p, x),
        "filter_jit(filter_grad(vmap(module)))": bl.jax_run(eqx_grad, (m, x)),
    }
    gm, gx = eqx_grad((m, x))
    grads = {
        "core": core_grad(p, x),
        "jit(grad(vmap(module)))": vmap_grad(p, x),
        "filter_jit(filter_grad(vmap(module)))": (gm.layers[0], gx),
    }
    return runs, grads


def rows(cell: str, shape: tuple, budget_s: float) -> list[list[object]]:
    runs, grads = candidates(cell, *problem(cell, *shape))
    times = bl.interleave(runs, budget_s=budget_s, min_reps=5, max_reps=200)
    base, want = times["core"], jax.tree.leaves(grads["core"])
    out = []
    for name, ts in times.items():
        err = bl.max_rel_err(jax.tree.leaves(grads[name]), want)
        out.append([cell.upper(), ",".join(map(str, shape)), name, len(ts),
                    bl.ms(statistics.median(ts)), f"{bl.paired_ratio(base, ts):.2f}",
                    f"{err:.1e}"])  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape, short budget")
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per table")
    a = ap.parse_args()
    shapes = SHAPES[:1] if a.quick else SHAPES
    print("\n".join(bl.header()) + f"\nequinox {eqx.__version__}")
    print("\njit(grad) of vdot(h, g) in the weights and x, float32; time: median per call;")
    print("x core: median paired ratio t_core / t (> 1: faster than the batched core);")
    print("max rel err: of the gradients against the core's\n")
    head = ["cell", "N,T,D,H", "candidate", "rounds", "ms", "x core", "max rel err"]
    table = [r for c in a.cells.split(",") for s in shapes
             for r in rows(c, s, 1.0 if a.quick else a.budget)]  # fmt: skip
    print(bl.table(head, table))
    print(f"\nload average at end (1/5/15 min): {bl.load()}")


if __name__ == "__main__":
    main()
