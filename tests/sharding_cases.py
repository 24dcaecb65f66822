"""The sharded runs behind tests/test_sharding.py, in one process with 2 forced CPU devices.

jax fixes its device count when its backend starts, and the rest of the suite runs
on one device, so ``test_sharding.py`` runs this script once, as
``python tests/sharding_cases.py``: it forces 2 CPU devices, runs every case of
:data:`CASES` in each of :data:`MODES` and prints one JSON object, case id ->
``{"err": relative error against the unsharded run}`` or ``{"error": "what raised"}``.

A case is a public differentiable function of jaxrnn with its options, run on a
batch of N = 4 rows split in 2 shards of 2; its outputs are the function's values
and gradients, float64. The modes:

- ``shard_map-auto`` / ``shard_map-explicit``: inside ``jax.shard_map`` over a mesh
  ``("b",)`` of Auto / Explicit axes, batch inputs ``P("b")`` and weights ``P()``; the
  case combines its per-shard results as a user would (a ``psum`` of the hand
  BPTT's per-shard weight gradients, a ``pmean`` of per-shard mean losses;
  ``jax.grad`` already sums the gradients of replicated weights);
- ``jit-explicit``: ``jax.jit`` with the batch inputs placed ``P("b")`` on a mesh of
  Explicit axes (``jax.make_mesh``'s default), under ``jax.set_mesh``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import model

FLAG = "--xla_force_host_platform_device_count=2"
# XLA's CPU backend without its LLVM optimisations and new fusion emitters: the same
# values, a quarter of the compile time (measured), which is what this run's time is
# made of (about 70 small programs)
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
MODES = ("shard_map-auto", "shard_map-explicit", "jit-explicit")
N, T, D, H, V = 4, 4, 3, 4, 6  # N rows in 2 shards; V: the model's vocabulary


class Case(NamedTuple):
    """``fn(*args) -> dict of outputs``; ``batched[i]``: args[i] is split on its axis 0;
    ``combine[name]``: how shard_map puts output ``name`` together: ``"batch"`` (per-row,
    ``P("b")``), ``"psum"``, ``"pmean"`` (then ``P()``), ``"same"`` (already whole, ``P()``)
    or ``"summed-mean"`` (``jax.grad`` of a per-shard mean loss, which jax sums over the
    shards, divided by their count)."""

    fn: Callable
    args: tuple
    batched: tuple
    combine: dict


STRUCTURED = {"rnn": jaxrnn.rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}
INIT = {"rnn": jaxrnn.init_rnn_params, "lstm": jaxrnn.init_lstm_params,
        "gru": jaxrnn.init_gru_params}  # fmt: skip
VARIANTS = {  # the structured form's options, several per case (compiles are the cost)
    "lengths-truncation-xi-state": {
        "lengths": True, "truncation": 2, "carry_weights": True, "return_state": True,
    },
    "checkpoint-lengths-state": {"checkpoint": 2, "lengths": True, "return_state": True},
}  # fmt: skip


def _data(key: int = 0) -> dict:
    k = jax.random.split(jax.random.key(key), 8)
    normal = lambda i, shape: jax.random.normal(k[i], shape, jnp.float64)  # noqa: E731
    return {
        "x": normal(0, (N, T, D)), "h0": normal(1, (N, H)), "c0": normal(2, (N, H)),
        "r": normal(3, (N, T, H)), "rs": normal(4, (N, H)),
        "lengths": jnp.array([4, 2, 0, 3], jnp.int32), "xi": 0.5 + jax.random.uniform(k[5], (T,)),
        "tokens": jax.random.randint(k[6], (N, T), 0, V), "targets": jax.random.randint(k[7], (N, T), 0, V),
    }  # fmt: skip


def structured_case(cell: str, variant: str) -> Case:
    """``jaxrnn.rnn``/``lstm``/``gru`` with ``variant``'s options: ``h`` (and the final
    state) and ``jax.grad`` of a loss of both in ``x``, the state and the weights."""
    d, opts = _data(), dict(VARIANTS[variant])
    p = INIT[cell](jax.random.key(1), D, H, jnp.float64)
    s0 = (d["h0"], d["c0"]) if cell == "lstm" else d["h0"]
    lengths = d["lengths"] if opts.pop("lengths", False) else None
    xi = d["xi"] if opts.pop("carry_weights", False) else None

    def run(x, s0, p, lengths, xi):
        return STRUCTURED[cell](x, s0, *p, lengths=lengths, carry_weights=xi, **opts)

    def loss(x, s0, p, lengths, xi, r, rs):
        out = run(x, s0, p, lengths, xi)
        h, sT = out if opts.get("return_state") else (out, None)
        last = 0.0 if sT is None else sum((s * rs).sum() for s in jax.tree.leaves(sT))
        return (h * r).sum() + last

    def fn(x, s0, p, lengths, xi, r, rs):
        gx, gs, gp = jax.grad(loss, argnums=(0, 1, 2))(x, s0, p, lengths, xi, r, rs)
        return {"out": run(x, s0, p, lengths, xi), "dx": gx, "dstate0": gs, "dparams": gp}

    combine = {"out": "batch", "dx": "batch", "dstate0": "batch", "dparams": "same"}
    args = (d["x"], s0, p, lengths, xi, d["r"], d["rs"])
    return Case(fn, args, (True, True, False, True, False, True, True), combine)


CLASSIC = {
    "rnn": (jaxrnn.rnn_forward, jaxrnn.rnn_backward),
    "lstm": (jaxrnn.lstm_forward, jaxrnn.lstm_backward),
    "gru": (jaxrnn.gru_forward, jaxrnn.gru_backward),
}


def classic_case(cell: str, options: dict) -> Case:
    """``rnn_forward``/``rnn_backward`` (and the LSTM's, GRU's) with lengths and
    ``options``: ``h`` and the hand BPTT's gradients (per-shard weight sums, psummed)."""
    d = _data()
    p = INIT[cell](jax.random.key(1), D, H, jnp.float64)
    forward, backward = CLASSIC[cell]

    def fn(x, h0, p, lengths, dh):
        h, cache = forward(x, h0, *p, lengths=lengths, **options)
        dx, dh0, *dp = backward(dh, cache)
        return {"h": h, "dx": dx, "dh0": dh0, "dparams": tuple(dp)}

    combine = {"h": "batch", "dx": "batch", "dh0": "batch", "dparams": "psum"}
    args = (d["x"], d["h0"], p, d["lengths"], d["r"])
    return Case(fn, args, (True, True, False, True, True), combine)


def steps_case() -> Case:
    """``rnn_step_forward``/``rnn_step_backward``, the LSTM's and the GRU's, on one step:
    the next states and the hand gradients (per-shard weight sums, psummed)."""
    d = _data()
    ps = {c: INIT[c](jax.random.key(1), D, H, jnp.float64) for c in STRUCTURED}
    prev = (d["h0"], d["c0"])  # the LSTM's (prev_h, prev_c); the RNN, GRU take prev_h

    def step(cell, x, prev, p, dnext):
        prev, dnext = (prev, dnext) if cell == "lstm" else (prev[:1], dnext[:1])
        *nxt, cache = getattr(jaxrnn, f"{cell}_step_forward")(x, *prev, *p)
        dx, *rest = getattr(jaxrnn, f"{cell}_step_backward")(*dnext, cache)
        return {"next": tuple(nxt), "dx": dx, "dprev": tuple(rest[: len(prev)]),
                "dparams": tuple(rest[len(prev) :])}  # fmt: skip

    def fn(x, prev, ps, dnext):
        out = {c: step(c, x, prev, ps[c], dnext) for c in STRUCTURED}
        return {k: {c: out[c][k] for c in out} for k in ("next", "dx", "dprev", "dparams")}

    combine = {"next": "batch", "dx": "batch", "dprev": "batch", "dparams": "psum"}
    args = (d["x"][:, 0], prev, ps, (d["rs"], d["h0"]))
    return Case(fn, args, (True, True, False, True), combine)


def stack_case(cell: str, bidirectional: bool) -> Case:
    """``stack_forward``/``stack_backward``: two layers, the top output, final states and
    the hand gradients (bidirectional with lengths, or with truncation)."""
    d = _data()
    layers = jaxrnn.init_stack(jax.random.key(2), D, (H, 3), bidirectional=bidirectional,
                               dtype=jnp.float64, cell=cell)  # fmt: skip
    lengths = d["lengths"] if bidirectional else None
    truncation = None if bidirectional else 2
    widths = [(2 if cell == "lstm" else 1) * (2 if bidirectional else 1) * h for h in (H, 3)]
    h0 = tuple(jnp.full((N, w), 0.1, jnp.float64) for w in widths)  # (N, S_l)
    dh = jax.random.normal(jax.random.key(3), (N, T, 6 if bidirectional else 3), jnp.float64)

    def fn(x, h0, layers, lengths, dh):
        h, hT, cache = jaxrnn.stack_forward(x, h0, layers, lengths=lengths, truncation=truncation)
        dx, dh0, dlayers = jaxrnn.stack_backward(dh, cache)
        return {"h": h, "hT": hT, "dx": dx, "dh0": dh0, "dlayers": dlayers}

    combine = {"h": "batch", "hT": "batch", "dx": "batch", "dh0": "batch", "dlayers": "psum"}
    return Case(fn, (d["x"], h0, layers, lengths, dh), (True, True, False, True, True), combine)


MODEL_VARIANTS = {  # cell, bidirectional, keyword options; one layer (the stack has two)
    "lstm-lengths-truncation": ("lstm", False, {"truncation": 2, "lengths": True}),
    "rnn-checkpoint-lengths": ("rnn", False, {"checkpoint": 2, "lengths": True}),
    "gru-bidirectional-lengths": ("gru", True, {"lengths": True}),
    "lstm-checkpoint": ("lstm", False, {"checkpoint": 2}),
    "rnn-lengths-truncation": ("rnn", False, {"truncation": 2, "lengths": True}),
}
MODEL_CASES = {  # how (loss_and_grads, or model.loss's grad path) -> variants
    "loss_and_grads": ("lstm-lengths-truncation", "rnn-checkpoint-lengths"),
    "hand": ("gru-bidirectional-lengths", "lstm-checkpoint"),
    "autodiff": ("rnn-lengths-truncation",),
}


def model_case(how: str, variant: str) -> Case:
    """``model.loss_and_grads``, or ``jax.value_and_grad`` of ``model.loss`` (hand BPTT, or
    ``grad="autodiff"``): the loss, the gradients and the final states."""
    d = _data()
    cell, bi, opts = MODEL_VARIANTS[variant]
    opts = dict(opts)
    params = model.init(jax.random.key(4), V, (H,), embed_size=D, bidirectional=bi,
                        dtype=jnp.float64, cell=cell)  # fmt: skip
    lengths = d["lengths"] if opts.pop("lengths", False) else None

    def fn(params, tokens, targets, lengths):
        if how == "loss_and_grads":
            loss, grads, hT = model.loss_and_grads(params, tokens, targets, lengths=lengths, **opts)
            return {"loss": loss, "grads": grads, "hT": hT}
        f = lambda p: model.loss(p, tokens, targets, lengths=lengths, grad=how, **opts)  # noqa: E731
        (loss, hT), grads = jax.value_and_grad(f, has_aux=True)(params)
        return {"loss": loss, "grads": grads, "hT": hT}

    combine = {"loss": "pmean", "grads": "pmean", "hT": "batch"}
    if how != "loss_and_grads":  # jax.grad of the per-shard loss: whole, then averaged
        combine["grads"] = "summed-mean"
    args = (params, d["tokens"], d["targets"], lengths)
    return Case(fn, args, (False, True, True, True), combine)


CLASSIC_OPTIONS = {"rnn": {"checkpoint": 2}, "lstm": {"truncation": 2}, "gru": {}}


def _cases() -> dict[str, Callable[[], Case]]:
    cases = {}
    for cell in STRUCTURED:
        for variant in VARIANTS:
            cases[f"{cell}-{variant}"] = lambda c=cell, v=variant: structured_case(c, v)
        name = "-".join((f"{cell}_forward", "lengths", *CLASSIC_OPTIONS[cell]))
        cases[name] = lambda c=cell: classic_case(c, CLASSIC_OPTIONS[c])
    cases["steps"] = steps_case
    cases["stack-lstm-truncation"] = lambda: stack_case("lstm", False)
    cases["stack-gru-bidirectional-lengths"] = lambda: stack_case("gru", True)
    for how, variants in MODEL_CASES.items():
        name = "model.loss_and_grads" if how == "loss_and_grads" else f"model.loss-{how}"
        for v in variants:
            cases[f"{name}-{v}"] = lambda h=how, v=v: model_case(h, v)
    return cases


CASE_BUILDERS = _cases()
CASES = tuple(f"{name}[{mode}]" for name in CASE_BUILDERS for mode in MODES)


# --- running -----------------------------------------------------------------------------


def rel_err(got: Any, want: Any) -> float:
    """The worst ``max|a - b| / max(max|b|, 1)`` over the leaves (structures must agree)."""
    g, gdef = jax.tree.flatten(got)
    w, wdef = jax.tree.flatten(want)
    if gdef != wdef:
        raise AssertionError(f"structure {gdef} vs {wdef}")
    errs = [0.0]
    for a, b in zip(g, w, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise AssertionError(f"shape {a.shape} vs {b.shape}")
        if a.size:
            errs.append(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0)))
    return max(errs)


def _specs(case: Case, P) -> tuple:
    return tuple(P("b") if b else P() for b in case.batched)


def _place(case: Case, mesh, P) -> tuple:
    sharding = lambda b: jax.sharding.NamedSharding(mesh, P("b") if b else P())  # noqa: E731
    return tuple(
        jax.device_put(a, sharding(b)) if a is not None else None
        for a, b in zip(case.args, case.batched, strict=True)
    )


def run_shard_map(case: Case, mesh, P) -> dict:
    """The case inside ``shard_map`` over ``mesh``, per-shard results combined."""
    n = mesh.shape["b"]

    def local(*args):
        out = case.fn(*args)
        ops = {"psum": lambda a: jax.lax.psum(a, "b"), "pmean": lambda a: jax.lax.pmean(a, "b"),
               "summed-mean": lambda a: a / n}  # fmt: skip
        return {k: jax.tree.map(ops[c], out[k]) if c in ops else out[k]
                for k, c in case.combine.items()}  # fmt: skip

    out_specs = {k: P("b") if c == "batch" else P() for k, c in case.combine.items()}
    f = jax.shard_map(local, mesh=mesh, in_specs=_specs(case, P), out_specs=out_specs)
    return jax.jit(f)(*_place(case, mesh, P))


def run_jit_explicit(case: Case, mesh, P) -> dict:
    """The case under ``jax.jit`` with its batch inputs placed ``P("b")``."""
    with jax.set_mesh(mesh):
        return jax.jit(case.fn)(*_place(case, mesh, P))


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2, f"needs XLA_FLAGS={FLAG} (got {jax.devices()})"
    from jax.sharding import AxisType
    from jax.sharding import PartitionSpec as P

    meshes = {kind: jax.make_mesh((2,), ("b",), axis_types=(getattr(AxisType, kind),))
              for kind in ("Auto", "Explicit")}  # fmt: skip
    runners = {
        "shard_map-auto": lambda c: run_shard_map(c, meshes["Auto"], P),
        "shard_map-explicit": lambda c: run_shard_map(c, meshes["Explicit"], P),
        "jit-explicit": lambda c: run_jit_explicit(c, meshes["Explicit"], P),
    }
    only = sys.argv[1:]
    results = {}
    for name, build in CASE_BUILDERS.items():
        if only and not any(o in name for o in only):
            continue
        case = build()
        want = jax.jit(case.fn)(*case.args)  # unsharded, one device
        for mode, run in runners.items():
            try:
                results[f"{name}[{mode}]"] = {"err": rel_err(run(case), want)}
            except Exception as e:  # reported per case: the test names the one that failed
                results[f"{name}[{mode}]"] = {"error": f"{type(e).__name__}: {e}"[:2000]}
    print(json.dumps(results))


if __name__ == "__main__":
    flags = os.environ.get("XLA_FLAGS", "")  # read when jax's backend starts
    os.environ["XLA_FLAGS"] = " ".join(
        [flags, *(f for f in (FLAG, FAST_COMPILE) if f not in flags)]
    )
    main()
