"""Benchmark: one NNX training step of ``jaxrnn.nnx.RNN/LSTM/GRU`` against flax's
``nnx.RNN(<cell>)`` with the same weights.

A training step is ``nnx.value_and_grad`` of the mean squared error of the outputs
``h: (N, T, H)`` against a fixed random target, then an optax Adam update through
``nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)``, all under one ``nnx.jit``;
``block_until_ready`` on the loss after every step. float32, zero initial carry.

- ``jaxrnn``: :class:`jaxrnn.nnx.RNN` / ``LSTM`` / ``GRU`` (hand-derived BPTT);
- ``flax``: ``nnx.RNN(nnx.SimpleCell)`` (tanh) for the RNN, ``nnx.RNN(nnx.OptimizedLSTMCell)``
  and ``nnx.RNN(nnx.LSTMCell)`` for the LSTM (both timed, in the same rounds), and
  ``nnx.RNN(nnx.GRUCell)`` for the GRU (jaxrnn's ``bh`` n block zeroed: the flax cell has
  no ``b_hn``, flax#5594).

jaxrnn's drawn weights are written into the flax cell with
:func:`jaxrnn.convert.to_nnx_rnn` and read back with ``from_nnx_rnn`` (checked equal);
the first step's loss of every flax model must agree with jaxrnn's to ``LOSS_RTOL``, and
so must the second (after one Adam update with each side's own gradients) for the RNN and
LSTM. Not for the GRU: flax's ``GRUCell`` holds one bias for the r, z blocks where jaxrnn
trains two (``bx``, ``bh``; their sum enters the cell) plus ``bh``'s n block, so Adam moves
the same function's parameters differently and the second losses differ (reported).

Candidates are timed round-robin in one process (``benchlib.interleave``, a warm-up call
excluding compilation); the speed-up is the median over rounds of the paired ratio
``t_flax / t_jaxrnn`` (> 1: jaxrnn faster). Shapes: those of ``bench.py`` (issue 5).

Usage::

    python benchmarks/modules.py            # the three bench.py shapes, rnn/lstm/gru
    python benchmarks/modules.py --quick    # one small shape, seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import _threads_env  # noqa: F401  (first: the thread settings precede numpy, torch)
import bench
import benchlib as bl
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxrnn
import jaxrnn.nnx
from jaxrnn.convert import from_nnx_rnn, to_nnx_rnn

SHAPES = tuple(bench.TARGETS)  # N, T, D, H
QUICK_SHAPE = (8, 32, 16, 32)
LOSS_RTOL = 1e-5
MODULES = {"rnn": jaxrnn.nnx.RNN, "lstm": jaxrnn.nnx.LSTM, "gru": jaxrnn.nnx.GRU}
FLAX_CELLS = {"rnn": ("SimpleCell",), "lstm": ("OptimizedLSTMCell", "LSTMCell"),
              "gru": ("GRUCell",)}  # fmt: skip


@nnx.jit
def train_step(model, optimizer, x, y):
    """One Adam step on ``mean((model(x) - y)^2)``; returns the loss before the update."""

    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def models(cell: str, D: int, H: int, seed: int = 0) -> dict[str, nnx.Module]:
    """``{name: module}``: jaxrnn's, then flax's with the same weights (to_nnx_rnn)."""
    ours = MODULES[cell](D, H, dtype=jnp.float32, rngs=nnx.Rngs(seed))
    (params,) = ours.params()
    if cell == "gru":  # nnx.GRUCell has no b_hn: zero jaxrnn's bh n block, in both
        params = params._replace(bh=params.bh.at[2 * H :].set(0.0))
        ours.load_params(params)
    out: dict[str, nnx.Module] = {"jaxrnn": ours}
    for name in FLAX_CELLS[cell]:
        flax_rnn = nnx.RNN(getattr(nnx, name)(D, H, param_dtype=jnp.float32, rngs=nnx.Rngs(1)))
        to_nnx_rnn(params, flax_rnn)
        back = from_nnx_rnn(flax_rnn)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
        out[f"flax {name}"] = flax_rnn
    return out


def step_runs(cell: str, shape: tuple, seed: int = 0) -> tuple[dict[str, bl.Run], dict]:
    """``({name: timed train step}, {name: [losses]})``: each run records the losses of
    its first two calls (``benchlib.interleave``'s compile and warm-up calls, untimed)."""
    N, T, D, H = shape
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((N, T, D)).astype(np.float32))
    y = jnp.asarray((0.5 * rng.standard_normal((N, T, H))).astype(np.float32))
    runs, losses = {}, {}
    for name, model in models(cell, D, H, seed).items():
        opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        seen = losses[name] = []

        def run(model=model, opt=opt, seen=seen):
            loss = jax.block_until_ready(train_step(model, opt, x, y))
            if len(seen) < 2:
                seen.append(float(loss))
            return loss

        runs[name] = run
    return runs, losses


def table_rows(cell: str, shape: tuple, budget_s: float, min_reps: int) -> list[list]:
    runs, losses = step_runs(cell, shape)
    times = bl.interleave(runs, budget_s=budget_s, min_reps=min_reps, max_reps=50)
    ref = losses["jaxrnn"]
    rel = {name: [abs(g - r) / abs(r) for g, r in zip(got, ref, strict=True)]
           for name, got in losses.items()}  # fmt: skip
    for name, (first, second) in rel.items():
        # The GRU's second step may differ: jaxrnn trains bx and bh, flax one bias (see top)
        if first > LOSS_RTOL or (cell != "gru" and second > LOSS_RTOL):
            raise AssertionError(
                f"{cell} {shape}: {name} losses {losses[name]} disagree with jaxrnn's {ref} "
                f"(rel. {first:.2e}, {second:.2e} > {LOSS_RTOL})"
            )
    base = times.pop("jaxrnn")
    rows = []
    for name, ts in times.items():
        rows.append([
            cell, name.removeprefix("flax "), ",".join(map(str, shape)), len(base),
            bl.ms(statistics.median(base)), bl.ms(statistics.median(ts)),
            f"{bl.paired_ratio(ts, base):.2f}x", f"{rel[name][0]:.1e}", f"{rel[name][1]:.1e}",
        ])  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"one small shape {QUICK_SHAPE}")
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--budget", type=float, default=None,
                    help="timed seconds per table (default 6, --quick 1)")  # fmt: skip
    a = ap.parse_args()
    shapes = (QUICK_SHAPE,) if a.quick else SHAPES
    budget = a.budget if a.budget is not None else (1.0 if a.quick else 6.0)
    t0 = time.perf_counter()
    print("\n".join(["```", *bl.header(), f"optax {optax.__version__}", "```"]), flush=True)
    print(
        "\nOne nnx.jit training step (value_and_grad of the MSE + Adam via nnx.Optimizer), "
        "float32; median ms per step; speed-up = median paired flax/jaxrnn (> 1: jaxrnn "
        "faster); loss rel. diff: flax's against jaxrnn's, at the first step and the second "
        "(after one Adam update).\n"
    )
    head = ["cell", "flax cell", "N,T,D,H", "rounds", "jaxrnn ms", "flax ms", "speed-up",
            "loss rel. diff step 1", "step 2"]  # fmt: skip
    rows = []
    for shape in shapes:
        for cell in a.cells.split(","):
            rows += table_rows(cell, shape, budget, 3 if a.quick else 5)
            print(f"  done {cell} {shape} at {time.perf_counter() - t0:.0f} s, load "
                  f"{bl.load()}", flush=True)  # fmt: skip
    print("\n" + bl.table(head, rows))
    total = time.perf_counter() - t0
    print(f"\nload average at end (1/5/15 min): {bl.load()}; total {total:.0f} s")


if __name__ == "__main__":
    main()
