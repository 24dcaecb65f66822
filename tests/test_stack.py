"""Stacked and bidirectional RNNs: the hand backward down the layers (MATH.md §4) == autodiff."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close, bad, check_raises, random_layers
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import BiRNNParams, RNNParams
from jaxrnn.reference import scan_rnn
from jaxrnn.testing import strategies as rs

N, D = 2, 2
HIDDEN = (3, 2, 4)
ACTS = {1: ("tanh",), 2: ("relu", "sigmoid"), 3: ("sigmoid", "identity", "tanh")}


def naive_rnn(x, h0, p, act, lengths, k):
    """The oracle's forward (reference.scan_rnn, masked), truncation k given as the 0/1
    carry weights that stop the gradient at t = k, 2k, ...: k stays traced (one compile)."""
    t = jnp.arange(x.shape[1])
    xi = jnp.where((t % k == 0) & (t > 0), 0.0, 1.0).astype(x.dtype)
    return scan_rnn(x, h0, *p, act, lengths=lengths, carry_weights=xi)


def reverse_np(x, lengths):
    """Per-sequence reversal of the first lengths[n] steps, by a Python loop over rows."""
    rows = [jnp.concatenate([x[n, :L][::-1], x[n, L:]]) for n, L in enumerate(lengths)]
    return jnp.stack(rows)


@partial(jax.jit, static_argnames="acts")
def stack_oracle(dh, x, h0, layers, lengths, k, acts):
    def forward(x, h0, layers):
        h = x
        for p, s, act in zip(layers, h0, acts, strict=True):
            if isinstance(p, BiRNNParams):
                H = p.fwd.Wh.shape[0]
                hf = naive_rnn(h, s[:, :H], p.fwd, act, lengths, k)
                idx = jnp.where(
                    jnp.arange(h.shape[1])[None] < lengths[:, None],
                    lengths[:, None] - 1 - jnp.arange(h.shape[1])[None],
                    jnp.arange(h.shape[1])[None],
                )
                rev = lambda a, idx=idx: jnp.take_along_axis(a, idx[:, :, None], axis=1)  # noqa: E731
                hb = naive_rnn(rev(h), s[:, H:], p.bwd, act, lengths, k)
                h = jnp.concatenate([hf, rev(hb)], axis=-1)
            else:
                h = naive_rnn(h, s, p, act, lengths, k)
        return h

    h, vjp = jax.vjp(forward, x, h0, layers)
    return h, vjp(dh)


@given(
    st.sampled_from((1, 2, 3)),
    st.booleans(),
    st.sampled_from((0, 5)),
    st.sampled_from((None, 1, 2, 5)),
    st.integers(0, 2**31 - 1),
    st.data(),
)
def test_stack_hand_equals_autodiff(L, bi, T, k, seed, data):
    """float64, L = 1..3, bidirectional on/off, lengths on/off, truncation 1, 2, T, none."""
    lengths = data.draw(st.one_of(st.none(), rs.lengths(N, T)))
    rng = np.random.default_rng(seed)
    layers = random_layers(rng, D, HIDDEN[:L], bi)
    x = rng.standard_normal((N, T, D))
    h0 = tuple(rng.standard_normal((N, 2 * H if bi else H)) for H in HIDDEN[:L])
    H_top = (2 if bi else 1) * HIDDEN[L - 1]
    dh = rng.standard_normal((N, T, H_top))
    acts = ACTS[L]
    h, hT, cache = jaxrnn.stack_forward(
        x, h0, layers, activations=acts, lengths=lengths, truncation=k
    )
    grads = jaxrnn.stack_backward(jnp.asarray(dh), cache)
    full = np.full((N,), T) if lengths is None else lengths.astype(np.int64)
    h_ad, grads_ad = stack_oracle(dh, x, h0, layers, full, T + 1 if k is None else k, acts)
    assert h.shape == (N, T, H_top)
    assert_tree_close(h, h_ad, np.float64, "h")
    assert_tree_close(grads, grads_ad, np.float64, "(dx, dh0, dlayers)")
    if lengths is not None and T:
        assert not np.any(np.asarray(h)[np.arange(T)[None] >= lengths[:, None]])


def test_stack_float32():
    """float32 against the float64 oracle; tolerance as for the core (helpers.TOL)."""
    rng = np.random.default_rng(0)
    lengths = np.array([5, 2])
    layers = random_layers(rng, D, HIDDEN[:2], True)
    x, dh = rng.standard_normal((N, 5, D)), rng.standard_normal((N, 5, 4))
    h0 = tuple(rng.standard_normal((N, 2 * H)) for H in HIDDEN[:2])
    f32 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), t)  # noqa: E731
    h, _, cache = jaxrnn.stack_forward(*f32((x, h0, layers)), activations=ACTS[2], lengths=lengths)
    grads = jaxrnn.stack_backward(f32(dh), cache)
    assert h.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    h64, g64 = stack_oracle(dh, x, h0, layers, lengths.astype(np.int64), 6, ACTS[2])
    assert_tree_close(h, h64, np.float32, "h")
    assert_tree_close(grads, g64, np.float32, "grads")


def test_bidirectional_reverse_starts_at_last_valid_step():
    """The backward direction's first step reads x[len-1], not padding: padding values are inert,
    and the backward half at t = 0 equals a plain RNN run over the valid steps reversed."""
    rng = np.random.default_rng(3)
    T, lengths = 6, np.array([4, 6])
    layer = random_layers(rng, D, HIDDEN[:1], True)
    x = rng.standard_normal((N, T, D))
    x_pad = np.where((np.arange(T)[None] < lengths[:, None])[..., None], x, 1e3)
    h0 = (np.zeros((N, 6)),)
    h, hT, _ = jaxrnn.stack_forward(x, h0, layer, lengths=lengths)
    h_pad, _, _ = jaxrnn.stack_forward(x_pad, h0, layer, lengths=lengths)
    np.testing.assert_array_equal(h, h_pad)
    want = jaxrnn.rnn_forward(reverse_np(x, lengths), np.zeros((N, 3)), *layer[0].bwd)[0]
    for n, L in enumerate(lengths):
        np.testing.assert_allclose(h[n, 0, 3:], want[n, L - 1], rtol=1e-12)  # h_bwd at t = 0
        np.testing.assert_allclose(hT[0][n, 3:], want[n, L - 1], rtol=1e-12)


def test_init_stack():
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), 5, [4, 3], bidirectional=True)
    assert isinstance(layers[0], BiRNNParams) and isinstance(layers[1].fwd, RNNParams)
    assert layers[0].fwd.Wx.shape == (5, 4) and layers[1].bwd.Wx.shape == (8, 3)


BI = random_layers(np.random.default_rng(0), 5, (4, 3), True)  # as init_stack(5, [4, 3], bi)
XB, H0B = np.zeros((1, 2, 5)), (np.zeros((1, 8)), np.zeros((1, 6)))
BAD_STACK = [
    bad(
        "init_stack-hidden-zero",
        lambda: jaxrnn.init_stack(jax.random.PRNGKey(0), 5, [4, 0]),
        ValueError,
        r"hidden_sizes\[1\] must be a positive int, got 0",
    ),
    bad(
        "init_stack-hidden-empty",
        lambda: jaxrnn.init_stack(jax.random.PRNGKey(0), 5, []),
        ValueError,
        r"hidden_sizes must be a non-empty sequence",
    ),
    bad(
        "stack_forward-too-many-activations",
        lambda: jaxrnn.stack_forward(XB, H0B, BI, activations=("tanh",) * 3),
        ValueError,
        r"activations must be one name or one per layer: expected 2, got 3",
    ),
    bad(
        "stack_forward-unknown-activation",
        lambda: jaxrnn.stack_forward(XB, H0B, BI, activations=("tanh", "gelu")),
        ValueError,
        r"unknown activation 'gelu'",
    ),
    bad(
        "stack_forward-h0-count",
        lambda: jaxrnn.stack_forward(XB, H0B[:1], BI),
        ValueError,
        r"stack_forward: h0 must hold one state per layer",
    ),
    bad(
        "stack_forward-h0-shape",
        lambda: jaxrnn.stack_forward(XB, (np.zeros((1, 4)), H0B[1]), BI),
        ValueError,
        r"stack_forward: h0\[0\] must have shape \(N, H_0\) = \(1, 8\)",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_STACK)
def test_bad_stack_input(call, exc, match):
    check_raises(call, exc, match)
