"""Memory-bounded BPTT (``checkpoint=k|"sqrt"``, MATH.md §8): the same loss and gradients as
the full store, a cache without the per-step states, and the refusals.

Shapes come from small pools (the ``*_POOL`` tuples and ``@example`` rows), so the number of
jit compilations is bounded whatever hypothesis draws: every property costs at most one
compile per pool entry, and the values (weights, lengths, carry weights, tokens) are free.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    NAMES,
    assert_tree_close,
    bad,
    check_raises,
    random_model,
    random_rnn_params,
)
from hypothesis import example, given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import model

EXACT = 1e-12  # float64: the segments sum the same terms as the full store, only regrouped
N, D, H = 3, 4, 5  # D != H, so an (N, T, H) array cannot hide as x
# Pools: few shapes (each a compile), any values. The @example rows add the edge cases a pool
# leaves out, so they run whatever hypothesis draws: T = 0, lengths 0 and T, each option alone.
T_POOL = (7, 12)
K_POOL = (1, 5, "sqrt")  # k = 1; 5 divides neither 7 nor 12; sqrt: 3 at T = 7, 4 at T = 12
# (lengths, truncation, carry weights): none, each option alone, all together
O_NONE, O_LENGTHS, O_TRUNC_XI, O_ALL = (
    (False, None, False), (True, None, False), (False, 2, True), (True, 3, True)
)  # fmt: skip
OPTS_POOL = (O_NONE, O_ALL)
VOCAB, K_OUT, E = 7, 6, 3


def segments(T: int, k) -> int:
    """ceil(T / k) with ``"sqrt"`` read as ``ceil(sqrt(T))`` (at least 1)."""
    k = max(1, math.ceil(math.sqrt(T))) if k == "sqrt" else k
    return -(-T // k)


# --- One layer -------------------------------------------------------------------------------


class _Fixed:
    """``data`` for the ``@example`` rows: seed 0, lengths 0, T and in between."""

    def __init__(self, T):
        self.values = [0, [0, T, T // 2]]

    def draw(self, strategy, label=None):
        return self.values.pop(0)


def draw_rnn(data, T, opts, dtype=np.float64):
    """A random problem for a layer of pool shape: inputs, weights, dh, lengths, ξ."""
    has_lengths, truncation, has_xi = opts
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.standard_normal((N, T, D)).astype(dtype)
    h0 = rng.standard_normal((N, H)).astype(dtype)
    p = random_rnn_params(rng, D, H, dtype)
    dh = (rng.standard_normal((N, T, H)) * 3).astype(dtype)  # large upstream errors
    lengths = None
    if has_lengths:  # hypothesis favours the ends: 0 and T appear often
        lengths = np.asarray(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)))
    xi = rng.uniform(0, 2, T).astype(dtype) if has_xi else None
    kw = dict(lengths=lengths, truncation=truncation, carry_weights=xi)
    return (dh, x, h0, *p), kw


@partial(jax.jit, static_argnames=("truncation", "checkpoint"))
def grad_through_rnn(dh, x, h0, Wx, Wh, b, lengths, xi, *, truncation, checkpoint):
    """``h`` and ``jax.grad`` of ``<dh, rnn(...)>`` w.r.t. the five inputs (custom_vjp path)."""
    kw = dict(lengths=lengths, truncation=truncation, carry_weights=xi, checkpoint=checkpoint)

    def loss(*a):
        h = jaxrnn.rnn(*a, **kw)
        return jnp.vdot(h, dh), h

    grads, h = jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True)(x, h0, Wx, Wh, b)
    return h, grads


def via_grad(args, kw, checkpoint):
    return grad_through_rnn(*args, kw["lengths"], kw["carry_weights"],
                            truncation=kw["truncation"], checkpoint=checkpoint)  # fmt: skip


def via_cache(args, kw, checkpoint):
    dh, *inputs = args
    h, cache = jaxrnn.rnn_forward(*inputs, checkpoint=checkpoint, **kw)
    return h, jaxrnn.rnn_backward(dh, cache), cache


@given(st.sampled_from(T_POOL), st.sampled_from(K_POOL), st.sampled_from(OPTS_POOL), st.data())
@example(T=12, k=5, opts=O_ALL, data=None)  # T % k != 0 with every option
@example(T=7, k=20, opts=O_LENGTHS, data=None)  # k > T
@example(T=12, k=1, opts=O_TRUNC_XI, data=None)  # k = 1: a boundary before every step
@example(T=0, k="sqrt", opts=O_LENGTHS, data=None)  # T = 0
@example(T=1, k="sqrt", opts=O_ALL, data=None)  # T = 1
def test_rnn_grad_with_checkpoint_equals_full_store(T, k, opts, data):
    """float64: ``jax.grad`` through ``rnn(checkpoint=k)`` == the full store to 1e-12."""
    data = data or _Fixed(T)
    args, kw = draw_rnn(data, T, opts)
    h, grads = via_grad(args, kw, k)
    h_full, grads_full = via_grad(args, kw, None)
    assert_tree_close(h, h_full, what=f"h, T={T} k={k}", tol=EXACT)
    assert_tree_close(grads, grads_full, what=f"T={T} k={k} {opts}", names=NAMES, tol=EXACT)


@given(st.sampled_from((5, "sqrt")), st.sampled_from(OPTS_POOL), st.data())
@example(k=1, opts=O_TRUNC_XI, data=None)
@example(k=20, opts=O_LENGTHS, data=None)
def test_rnn_forward_backward_with_checkpoint_equals_full_store(k, opts, data):
    """float64: ``rnn_backward`` of a checkpointed ``rnn_forward`` cache == the full store
    (T = 12), and the cache keeps only the segment starts."""
    T = 12
    data = data or _Fixed(T)
    args, kw = draw_rnn(data, T, opts)
    h, grads, cache = via_cache(args, kw, k)
    h_full, grads_full, _ = via_cache(args, kw, None)
    assert_tree_close(h, h_full, what=f"h, T={T} k={k}", tol=EXACT)
    assert_tree_close(grads, grads_full, what=f"T={T} k={k} {opts}", names=NAMES, tol=EXACT)
    assert_no_per_step_state(cache, T, k)


def assert_no_per_step_state(cache, T, k):
    """The checkpointed cache: ``saved`` holds ``ceil(T/k)`` boundaries, no (N, T, H) leaf at all."""
    assert cache.checkpoint is not None
    assert cache.saved.shape == (segments(T, k), N, H)
    shapes = [tuple(a.shape) for a in jax.tree_util.tree_leaves(cache)]
    assert (N, T, H) not in shapes, shapes


@pytest.mark.parametrize(("T", "k"), [(0, 1), (0, "sqrt"), (1, "sqrt"), (7, 20), (12, 5),
                                      (100, "sqrt"), (101, 10), (64, 1)])  # fmt: skip
def test_checkpointed_cache_holds_only_segment_starts(T, k):
    rng = np.random.default_rng(T)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    _, cache = jaxrnn.rnn_forward(x, h0, *random_rnn_params(rng, D, H), checkpoint=k)
    assert_no_per_step_state(cache, T, k)
    _, full = jaxrnn.rnn_forward(x, h0, *random_rnn_params(rng, D, H))
    assert full.saved.shape == (N, T, H) and full.checkpoint is None  # the default: full store


def test_float32_within_documented_tolerance():
    """float32: checkpoint vs full store within helpers.TOL[float32] (2e-5), layer and model,
    at T = 50 (rounding accumulates along the recursion) with k = ceil(sqrt(50)) = 8."""
    T, k = 50, "sqrt"
    data = _Fixed(T)
    args, kw = draw_rnn(data, T, O_ALL, np.float32)
    kw["lengths"] = np.array([0, T, 31])
    h, grads = via_grad(args, kw, k)
    h_full, grads_full = via_grad(args, kw, None)
    assert_tree_close(h, h_full, np.float32, "h")
    assert_tree_close(grads, grads_full, np.float32, f"k={k}", names=NAMES)
    params, tokens, targets, h0 = draw_model(np.random.default_rng(1), (4, 3), T)
    params = jax.tree_util.tree_map(lambda a: a.astype(np.float32), params)
    h0 = tuple(s.astype(np.float32) for s in h0)
    kw = dict(h0=h0, lengths=np.array([0, T, 17]))
    got = model.loss_and_grads(params, tokens, targets, checkpoint=k, **kw)
    want = model.loss_and_grads(params, tokens, targets, **kw)
    assert_tree_close(got, want, np.float32, f"model, k={k}")


def test_jit_grad_and_vmap_with_checkpoint():
    """``checkpoint`` under an outer ``jax.jit(jax.grad(...))`` and under ``jax.vmap``."""
    rng = np.random.default_rng(0)
    T, B = 9, 2
    x, h0 = rng.standard_normal((B, N, T, D)), rng.standard_normal((B, N, H))
    p = random_rnn_params(rng, D, H)
    dh = rng.standard_normal((B, N, T, H))

    def loss(x, h0, Wx, Wh, b, dh, k):
        return jnp.vdot(jaxrnn.rnn(x, h0, Wx, Wh, b, checkpoint=k), dh)

    g = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)), static_argnums=6)
    assert_tree_close(g(x[0], h0[0], *p, dh[0], 4), g(x[0], h0[0], *p, dh[0], None), tol=EXACT)
    per_batch = jax.vmap(jax.grad(loss, argnums=(0, 1, 2, 3, 4)), (0, 0, None, None, None, 0, None))
    got = per_batch(x, h0, *p, dh, "sqrt")
    want = per_batch(x, h0, *p, dh, None)
    assert_tree_close(got, want, tol=EXACT, what="vmap")
    assert got[0].shape == (B, N, T, D) and got[2].shape == (B, D, H)


# --- The whole model -------------------------------------------------------------------------


def draw_model(rng, hidden, T, cell="rnn"):
    """float64 params (numpy draws for the RNN, ``model.init`` for a gated cell), tokens,
    targets and a random initial state per layer."""
    if cell == "rnn":
        params = random_model(rng, VOCAB, hidden, K_OUT, embed_size=E)
    else:
        key = jax.random.PRNGKey(rng.integers(2**31))
        params = model.init(key, VOCAB, hidden, K_OUT, embed_size=E, dtype=np.float64, cell=cell)
    tokens = rng.integers(0, VOCAB, (N, T))
    targets = rng.integers(0, K_OUT, (N, T))
    h0 = tuple(rng.standard_normal(s.shape) for s in model.init_state(params, N))
    return params, tokens, targets, h0


def draw_model_case(data, hidden, T, opts, cell="rnn"):
    has_lengths, truncation, has_xi = opts
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    params, tokens, targets, h0 = draw_model(rng, hidden, T, cell)
    lengths = None
    if has_lengths:
        lengths = np.asarray(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)))
    kw = dict(
        h0=h0,
        lengths=lengths,
        mask=rng.random((N, T)) < 0.8,  # some targets not counted
        truncation=truncation,
        carry_weights=rng.uniform(0, 2, T) if has_xi else None,
        # per-layer activations for RNN layers; a gated layer keeps its own sigmoid/tanh
        activations=("tanh", "relu", "sigmoid")[: len(hidden)] if cell == "rnn" else "tanh",
    )
    return params, tokens, targets, kw


# (cell, hidden sizes, T, k, options): a model compiles slowly (seconds), so whole
# configurations form the pool; each is also an @example, so every one runs whatever
# hypothesis draws.
MODEL_CASES = (
    ("rnn", (3, 5, 4), 12, 5, O_ALL),  # 3 layers, T % k != 0, lengths + truncation + ξ
    ("rnn", (4, 3), 7, 20, O_LENGTHS),  # k > T
    ("rnn", (5,), 7, 1, O_TRUNC_XI),  # k = 1
    ("rnn", (4, 3), 0, "sqrt", O_ALL),  # T = 0
    ("rnn", (5,), 12, "sqrt", O_NONE),  # the default path, k = 4 dividing T
    ("lstm", (4, 3), 12, 5, O_ALL),  # gated cells: the state carried across segments is a
    ("gru", (5, 4), 7, "sqrt", O_ALL),  # pytree (LSTM: [h | c])
)


def _model_examples(test):
    for case in MODEL_CASES:
        test = example(case=case, data=None)(test)
    return test


@given(st.sampled_from(MODEL_CASES), st.data())
@_model_examples
def test_model_loss_and_grads_with_checkpoint_equals_full_store(case, data):
    """float64: ``model.loss_and_grads(checkpoint=k)`` == the full store to 1e-12: the loss,
    every gradient and every layer's final state, 1-3 layers, masks, lengths (0 and T),
    truncation and carry weights; LSTM and GRU layers too."""
    cell, hidden, T, k, opts = case
    data = data or _Fixed(T)
    params, tokens, targets, kw = draw_model_case(data, hidden, T, opts, cell)
    got = model.loss_and_grads(params, tokens, targets, checkpoint=k, **kw)
    want = model.loss_and_grads(params, tokens, targets, **kw)
    assert_tree_close(got, want, what=f"{cell} L={len(hidden)} T={T} k={k} {opts}", tol=EXACT)


@partial(jax.jit, static_argnames=("activations", "truncation", "checkpoint"))
def loss_value_and_grad(
    params, h0, tokens, targets, mask, lengths, xi, *, activations, truncation, checkpoint
):
    def f(params, h0):
        kw = dict(h0=h0, mask=mask, lengths=lengths, carry_weights=xi, activations=activations)
        return model.loss(params, tokens, targets, truncation=truncation, checkpoint=checkpoint,
                          **kw)  # fmt: skip

    return jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, h0)


@given(st.sampled_from((5, "sqrt")), st.data())
@example(k=5, data=None)
@example(k="sqrt", data=None)
def test_model_loss_with_checkpoint_under_value_and_grad(k, data):
    """float64: ``jax.value_and_grad(model.loss(checkpoint=k))`` in ``params`` and ``h0`` ==
    the full-store ``model.loss`` (hand custom_vjp) to 1e-12, and its params gradients
    == ``loss_and_grads``'s (2 layers, T = 12, every option)."""
    hidden, T, opts = (4, 3), 12, O_ALL
    data = data or _Fixed(T)
    params, tokens, targets, kw = draw_model_case(data, hidden, T, opts)
    h0 = kw.pop("h0")
    arrays = (kw.pop("mask"), kw.pop("lengths"), kw.pop("carry_weights"))
    (loss, hT), grads = loss_value_and_grad(params, h0, tokens, targets, *arrays,
                                            checkpoint=k, **kw)  # fmt: skip
    want = loss_value_and_grad(params, h0, tokens, targets, *arrays, checkpoint=None, **kw)
    assert_tree_close(((loss, hT), grads), want, what=f"T={T} k={k} {opts}", tol=EXACT)
    mask, lengths, xi = arrays
    hand = model.loss_and_grads(params, tokens, targets, h0=h0, mask=mask, lengths=lengths,
                                carry_weights=xi, **kw)  # fmt: skip
    assert_tree_close((loss, grads[0], hT), hand, what="vs loss_and_grads", tol=EXACT)


# --- Refusals --------------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
_X, _H0 = _RNG.standard_normal((N, 4, D)), _RNG.standard_normal((N, H))
_P = random_rnn_params(_RNG, D, H)
_PARAMS, _TOKENS, _TARGETS, _ = draw_model(_RNG, (4,), 4)
_BI = random_model(_RNG, VOCAB, (4,), K_OUT, embed_size=E, bidirectional=True)
_CALLS = {
    "rnn": lambda k: jaxrnn.rnn(_X, _H0, *_P, checkpoint=k),
    "rnn_forward": lambda k: jaxrnn.rnn_forward(_X, _H0, *_P, checkpoint=k),
    "loss_and_grads": lambda k: model.loss_and_grads(_PARAMS, _TOKENS, _TARGETS, checkpoint=k),
    "loss": lambda k: model.loss(_PARAMS, _TOKENS, _TARGETS, checkpoint=k),
}
_MSG = r"checkpoint must be None, a positive int \(segment length k\) or 'sqrt', got "
BAD = (
    [
        bad(f"{fn}-{value!r}", partial(call, value), ValueError, f"{fn}: {_MSG}{value!r}")
        for fn, call in _CALLS.items()
        for value in (0, -1, 1.5, "half", True)
    ]
    + [
        bad(
            f"bidirectional-{fn}",
            partial(getattr(model, fn), _BI, _TOKENS, _TARGETS, checkpoint=2),
            ValueError,
            f"{fn}: checkpoint segments the model in time, which a bidirectional layer",
        )
        for fn in ("loss_and_grads", "loss")
    ]
    + [
        bad(
            "loss-autodiff",
            lambda: model.loss(_PARAMS, _TOKENS, _TARGETS, checkpoint="sqrt", grad="autodiff"),
            ValueError,
            "loss: checkpoint needs grad='hand', got grad='autodiff'",
        )
    ]
)


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_checkpoint(call, exc, match):
    check_raises(call, exc, match)


# --- What it is for: memory -------------------------------------------------------------------


def temp_bytes(f, *args) -> int:
    """XLA's compiled temp-buffer size of ``f(*args)``."""
    return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_checkpoint_bounds_the_model_compiled_memory():
    """At T = 1024 the compiled training step of a 2-layer model needs a small fraction of
    the full store's temp memory (XLA's memory analysis: compiled, not run). One layer's
    ``h`` is an (N, T, H) output either way; what it keeps is asserted above."""
    rng = np.random.default_rng(0)
    T, n, h = 1024, 4, 32
    params = random_model(rng, VOCAB, (h, h), K_OUT, embed_size=E)
    tokens, targets = rng.integers(0, VOCAB, (n, T)), rng.integers(0, K_OUT, (n, T))

    def step(k):
        return lambda params: model.loss_and_grads(params, tokens, targets, checkpoint=k)[:2]

    full, sqrt = (temp_bytes(step(k), params) for k in (None, "sqrt"))
    assert sqrt < 0.1 * full, (sqrt, full)
