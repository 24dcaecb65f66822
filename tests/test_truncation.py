"""Truncated BPTT: the hand rule == jax.grad with lax.stop_gradient at t = k, 2k, ...;
== the document's algorithm run chunk by chunk; and stateful chunked training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    NAMES,
    assert_tree_close,
    autodiff_grads,
    bad,
    check_raises,
    custom_vjp_grads,
)
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import model, reference
from jaxrnn.testing import strategies as rs

SHAPES = rs.shapes(N=(1, 3), T=(0, 1, 6), D=(2,), H=(1, 3))


def truncations(T):
    """1, T (no cut), in between, and beyond T."""
    return st.sampled_from(sorted({1, 2, max(T, 1), T + 3}))


@given(rs.problems(shape=SHAPES), st.data())
def test_truncated_hand_equals_stop_gradient_autodiff(p, data):
    N, T, _ = p.x.shape
    k = data.draw(truncations(T))
    lengths = data.draw(st.one_of(st.none(), rs.lengths(N, T)))
    kw = dict(activation=p.activation, truncation=k, lengths=lengths)
    h, cache = jaxrnn.rnn_forward(*p.args, **kw)
    h_ad, g_ad = autodiff_grads(p.dh, *p.args, **kw)
    assert_tree_close(h, h_ad, p.x.dtype, "h")
    assert_tree_close(jaxrnn.rnn_backward(jnp.asarray(p.dh), cache), g_ad, p.x.dtype, names=NAMES)
    grads = custom_vjp_grads(p.dh, *p.args, **kw)
    assert_tree_close(grads, g_ad, p.x.dtype, "custom_vjp", names=NAMES)


@given(rs.problems(shape=SHAPES, dtype=st.just(np.float64)), st.data())
def test_truncated_equals_numpy_chunks(p, data):
    """The document's numpy BPTT run separately on each chunk of k steps, state carried."""
    N, T, _ = p.x.shape
    k = data.draw(truncations(T))
    _, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation, truncation=k)
    got = jaxrnn.rnn_backward(jnp.asarray(p.dh), cache)
    dx, dws, dh0, h_carry = [], [np.zeros_like(a) for a in p.args[2:]], None, p.h0
    for s in range(0, T, k):
        h, c = reference.rnn_forward(p.x[:, s : s + k], h_carry, *p.args[2:], p.activation)
        dx_c, dh0_c, *dw = reference.rnn_backward(p.dh[:, s : s + k], c)
        dx.append(dx_c)
        dws = [a + g for a, g in zip(dws, dw, strict=True)]
        dh0 = dh0_c if s == 0 else dh0
        h_carry = h[:, -1]
    want = (np.concatenate(dx, 1) if T else np.zeros_like(p.x), dh0 if T else 0 * p.h0, *dws)
    assert_tree_close(got, want, np.float64, names=NAMES)


def test_truncation_changes_gradient_and_t_gives_full():
    """k = T (or more) is full BPTT; k < T differs (a test that can fail)."""
    p = rs.make_problem(rs.Shape(2, 6, 2, 3), 4, "tanh")
    dh = jnp.asarray(p.dh)
    full = jaxrnn.rnn_backward(dh, jaxrnn.rnn_forward(*p.args)[1])
    for k in (6, 9):
        cut_k = jaxrnn.rnn_backward(dh, jaxrnn.rnn_forward(*p.args, truncation=k)[1])
        assert_tree_close(cut_k, full, np.float64, f"k={k}", names=NAMES)
    cut = jaxrnn.rnn_backward(dh, jaxrnn.rnn_forward(*p.args, truncation=2)[1])
    assert np.max(np.abs(cut[3] - full[3])) > 1e-3  # dWh loses the cross-chunk terms
    assert np.array_equal(cut[0][:, 4:], full[0][:, 4:])  # the last chunk is untouched


@pytest.mark.parametrize("fn", [jaxrnn.rnn_forward, jaxrnn.rnn], ids=lambda f: f.__name__)
@pytest.mark.parametrize("k", [0, -1, 2.0, True, "2"], ids=repr)
def test_bad_truncation(fn, k):
    p = rs.make_problem(rs.Shape(1, 2, 1, 1), 0)
    with pytest.raises(
        ValueError, match=rf"{fn.__name__}: truncation must be None or a positive int"
    ):
        fn(*p.args, truncation=k)


@pytest.mark.parametrize("k", [1, 3])
def test_stateful_chunks_equal_truncated_full_sequence(k):
    """min-char-rnn / d2l style: chunks of k steps, hT carried as the next h0 (no gradient
    across calls). Losses and gradients sum to the full sequence's with truncation=k."""
    rng = np.random.default_rng(k)
    N, T, V = 2, 6, 5
    params = model.init(jax.random.PRNGKey(k), V, [4, 3], dtype=jnp.float64)
    tokens, targets = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    want_loss, want_grads, want_hT = model.loss_and_grads(params, tokens, targets, truncation=k)
    state, total, grads = model.init_state(params, N), 0.0, None
    for s in range(0, T, k):
        loss, g, state = model.loss_and_grads(
            params, tokens[:, s : s + k], targets[:, s : s + k], h0=state
        )
        total = total + loss
        grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
    assert float(total) == pytest.approx(float(want_loss), rel=1e-12)
    assert_tree_close(grads, want_grads, np.float64, "chunked grads")
    assert_tree_close(state, want_hT, np.float64, "final state")
    _, full_grads, _ = model.loss_and_grads(params, tokens, targets)
    assert np.max(np.abs(full_grads.layers[0].Wh - want_grads.layers[0].Wh)) > 1e-6


@given(rs.problems(shape=SHAPES), st.data())
def test_carry_weights_hand_equals_autodiff(p, data):
    """Randomized truncation: hand rule with factors ξ_t (zeros included) == autodiff."""
    N, T, _ = p.x.shape
    k = data.draw(st.sampled_from((None, 2)))
    lengths = data.draw(st.one_of(st.none(), rs.lengths(N, T)))
    xi = np.random.default_rng(p.seed).choice([0.0, 0.5, 2.0], T).astype(p.x.dtype)
    kw = dict(activation=p.activation, truncation=k, lengths=lengths, carry_weights=xi)
    _, cache = jaxrnn.rnn_forward(*p.args, **kw)
    _, g_ad = autodiff_grads(p.dh, *p.args, **kw)
    assert_tree_close(jaxrnn.rnn_backward(jnp.asarray(p.dh), cache), g_ad, p.x.dtype, names=NAMES)
    grads = custom_vjp_grads(p.dh, *p.args, **kw)
    assert_tree_close(grads, g_ad, p.x.dtype, "custom_vjp", names=NAMES)


def test_carry_weights_special_cases_and_unbiasedness():
    """ξ = 1 is full BPTT; ξ = the 0/1 cut pattern is truncation=k; the gradient is affine in
    each ξ_t, so E[grad(ξ)] = grad(E[ξ]) = grad(1): randomized truncation is unbiased."""
    p = rs.make_problem(rs.Shape(2, 6, 2, 3), 5, "tanh")
    dh = jnp.asarray(p.dh)

    def grads(**kw):
        return jaxrnn.rnn_backward(dh, jaxrnn.rnn_forward(*p.args, **kw)[1])

    full = grads()
    assert_tree_close(grads(carry_weights=np.ones(6)), full, names=NAMES)
    cut = np.array([1.0, 1, 0, 1, 0, 1])  # zero at t = 2, 4
    assert_tree_close(grads(carry_weights=cut), grads(truncation=2), names=NAMES)
    xi = np.array([1.0, 2, 0, 0.5, 2, 0])
    for t in range(6):
        lo, hi, mid = xi.copy(), xi.copy(), xi.copy()
        lo[t], hi[t], mid[t] = 0.0, 3.0, 0.75  # mid = 0.25 hi + 0.75 lo
        mixed = [
            0.25 * a + 0.75 * b
            for a, b in zip(grads(carry_weights=hi), grads(carry_weights=lo), strict=True)
        ]
        assert_tree_close(grads(carry_weights=mid), mixed, what=f"t={t}", names=NAMES)


def test_randomized_truncation_draws_unbiased_weights():
    """ξ_t ∈ {0, 1/p} with mean 1; p = 1 is all ones (full BPTT)."""
    key = jax.random.PRNGKey(0)
    xi = jaxrnn.randomized_truncation(key, 4000, 0.25, jnp.float64)
    assert set(np.unique(xi).tolist()) == {0.0, 4.0} and abs(float(xi.mean()) - 1) < 0.1
    assert np.all(jaxrnn.randomized_truncation(key, 5, 1.0) == 1)


BAD_CARRY = [
    bad(
        "randomized_truncation-p-zero",
        lambda: jaxrnn.randomized_truncation(jax.random.PRNGKey(0), 5, 0),
        ValueError,
        r"p must be a number in \(0, 1\], got 0",
    ),
    bad(
        "rnn_forward-carry_weights-shape",
        lambda: jaxrnn.rnn_forward(
            *rs.make_problem(rs.Shape(2, 6, 2, 3), 5).args, carry_weights=np.ones(5)
        ),
        ValueError,
        r"carry_weights must have shape \(T,\) = \(6,\).*got \(5,\)",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_CARRY)
def test_bad_carry_weights(call, exc, match):
    check_raises(call, exc, match)
