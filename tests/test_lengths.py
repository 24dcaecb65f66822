"""Variable-length sequences: masked scan and masked hand BPTT (MATH.md §3 with m_t = t < length).

Oracles: the document's numpy algorithm run on each sequence cut to its own
length (independent of any masking code), and jax.vjp of the masked naive scan.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    NAMES,
    TOL,
    assert_tree_close,
    autodiff_grads,
    bad,
    check_raises,
    custom_vjp_grads,
    rel_err,
)
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify

import jaxrnn
from jaxrnn import reference
from jaxrnn.testing import strategies as rs

# A small shape pool: every distinct (shape, activation, dtype) compiles once.
SHAPES = rs.shapes(N=(1, 3), T=(0, 1, 6), D=(2,), H=(1, 3))


@given(rs.problems(shape=SHAPES), st.data())
def test_lengths_equal_numpy_per_sequence(p, data):
    """Each row == the document's loop run on that row cut to its length; padding is inert."""
    N, T, D = p.x.shape
    lengths = data.draw(rs.lengths(N, T))
    h, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation, lengths=lengths)
    dx, dh0, dWx, dWh, db = jaxrnn.rnn_backward(jnp.asarray(p.dh), cache)
    hT = jaxrnn.final_state(h, p.h0, lengths)
    tol = TOL[np.dtype(p.x.dtype)]
    want_w = [np.zeros_like(a) for a in p.args[2:]]
    for n, L in enumerate(lengths):
        row = (p.x[n : n + 1, :L], p.h0[n : n + 1], *p.args[2:])
        h_ref, c_ref = reference.rnn_forward(*row, activation=p.activation)
        g_ref = reference.rnn_backward(p.dh[n : n + 1, :L], c_ref)
        assert rel_err(h[n, :L], h_ref[0]) <= tol
        assert not np.any(h[n, L:]) and not np.any(dx[n, L:])  # zero output, zero gradient
        assert rel_err(hT[n], h_ref[0, -1] if L else p.h0[n]) <= tol  # h0 for length 0
        assert rel_err(dx[n, :L], g_ref[0][0]) <= tol
        assert rel_err(dh0[n], g_ref[1][0]) <= tol
        want_w = [a + g for a, g in zip(want_w, g_ref[2:], strict=True)]
    assert_tree_close((dWx, dWh, db), want_w, p.x.dtype, names=NAMES[2:])


@given(rs.problems(shape=SHAPES), st.data())
def test_lengths_hand_equals_autodiff(p, data):
    """rnn_backward and jax.grad through rnn (custom_vjp) == jax.vjp of the masked naive scan."""
    N, T, _ = p.x.shape
    lengths = data.draw(rs.lengths(N, T))
    h, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation, lengths=lengths)
    kw = dict(activation=p.activation, lengths=lengths)
    h_ad, g_ad = autodiff_grads(p.dh, *p.args, **kw)
    assert rel_err(h, h_ad) <= TOL[np.dtype(p.x.dtype)]
    assert_tree_close(jaxrnn.rnn_backward(jnp.asarray(p.dh), cache), g_ad, p.x.dtype, names=NAMES)
    assert_tree_close(custom_vjp_grads(p.dh, *p.args, **kw), g_ad, p.x.dtype, names=NAMES)


@given(rs.problems(shape=SHAPES))
def test_full_lengths_equal_default_path(p):
    """lengths = T everywhere gives the unmasked results (to rounding)."""
    N, T, _ = p.x.shape
    full = np.full((N,), T, np.int32)
    h, c = jaxrnn.rnn_forward(*p.args, activation=p.activation)
    hm, cm = jaxrnn.rnn_forward(*p.args, activation=p.activation, lengths=full)
    assert rel_err(hm, h) <= TOL[np.dtype(p.x.dtype)]
    dh = jnp.asarray(p.dh)
    assert_tree_close(
        jaxrnn.rnn_backward(dh, cm), jaxrnn.rnn_backward(dh, c), p.x.dtype, names=NAMES
    )
    assert rel_err(jaxrnn.final_state(hm, p.h0, full), jaxrnn.final_state(h, p.h0)) <= 1e-6


def test_default_path_cache_has_no_lengths():
    """The default path keeps the core cache (6 leaves: x, h0, Wx, Wh, b, the stored h);
    lengths add exactly one leaf."""
    p = rs.make_problem(rs.Shape(2, 3, 2, 2), 0)
    _, c = jaxrnn.rnn_forward(*p.args)
    _, cm = jaxrnn.rnn_forward(*p.args, lengths=np.array([1, 3]))
    assert c.lengths is None and c.truncation is None
    assert len(jax.tree_util.tree_leaves(c)) == 6 and len(jax.tree_util.tree_leaves(cm)) == 7


def test_reverse_within_lengths():
    x = np.arange(2 * 4).reshape(2, 4, 1)
    lengths = np.array([3, 0])
    r = jaxrnn.reverse_within_lengths(x, lengths)
    np.testing.assert_array_equal(r[..., 0], [[2, 1, 0, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(jaxrnn.reverse_within_lengths(r, lengths), x)  # an involution
    np.testing.assert_array_equal(jaxrnn.reverse_within_lengths(x, None), x[:, ::-1])


X, H0 = np.ones((2, 3, 1)), np.zeros((2, 2))
W = (np.ones((1, 2)), np.eye(2), np.zeros(2))
BAD_LENGTHS = [
    (np.array([1, -1]), r"lengths must lie in \[0, T\] = \[0, 3\], got min -1, max 1"),
    (np.array([4, 0]), r"lengths must lie in \[0, T\] = \[0, 3\], got min 0, max 4"),
    (np.array([1, 2, 3]), r"lengths must have shape \(N,\) = \(2,\).*got \(3,\)"),
    (np.array([[1, 2]]), r"lengths must have shape \(N,\) = \(2,\).*got \(1, 2\)"),
    (np.array([1.0, 2.0]), r"lengths must have an integer dtype, got float64"),
    (np.array([True, False]), r"lengths must have an integer dtype, got bool"),
    ("ab", r"lengths must be an integer array, got str"),
]


@pytest.mark.parametrize("fn", [jaxrnn.rnn_forward, jaxrnn.rnn], ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "lengths,match",
    BAD_LENGTHS,
    ids=["negative", "above-T", "too-long", "2-D", "float", "bool", "str"],
)
def test_bad_lengths(fn, lengths, match):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: {match}"):
        fn(X, H0, *W, lengths=lengths)


def test_lengths_under_jit_check_shape_and_dtype_only():
    """Under jit only shape/dtype are checked: a length above T acts as T; a float still fails."""
    f = jax.jit(lambda x, lengths: jaxrnn.rnn(x, H0, *W, lengths=lengths))
    np.testing.assert_array_equal(f(X, np.array([9, 3])), f(X, np.array([3, 3])))
    with pytest.raises(ValueError, match=r"lengths must have an integer dtype"):
        f(X, np.array([1.0, 2.0]))


def test_out_of_range_lengths_under_jit_are_clipped_in_a_bidirectional_stack():
    """Traced lengths outside [0, T] act as clipped to it (no NaN, no wrap) in stack_forward."""
    layer = jaxrnn.init_stack(jax.random.PRNGKey(0), 1, [2], bidirectional=True, dtype=jnp.float64)
    bi = jax.jit(
        lambda lengths: jaxrnn.stack_forward(X, (np.zeros((2, 4)),), layer, lengths=lengths)
    )
    for got, want in zip(bi(np.array([9, -1]))[:2], bi(np.array([3, 0]))[:2], strict=True):
        assert jax.tree.all(jax.tree.map(np.array_equal, got, want))  # clipped, no NaN


def test_check_lengths_under_checkify():
    """checkify opts in to the value check under jit: check_lengths reports the range."""

    def checked(x, lengths):
        jaxrnn.check_lengths(lengths, x.shape[1])
        return jaxrnn.rnn(x, H0, *W, lengths=lengths)

    g = jax.jit(checkify.checkify(checked))
    err, _ = g(X, np.array([1, 3]))
    assert err.get() is None
    err, _ = g(X, np.array([1, 4]))
    assert "lengths must lie in [0, T] = [0, 3], got min 1, max 4" in err.get()


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int64])
def test_narrow_integer_lengths_do_not_wrap(dtype):
    """Lengths of any integer dtype mean the same: no wrap-around of arange(T) or clip(., 0, T)."""
    T = 200 if dtype == np.int8 else 300
    p = rs.make_problem(rs.Shape(2, T, 2, 2), 4, "tanh")
    lengths = np.array([5, 0], dtype)
    want = np.array([5, 0], np.int32)
    h = jaxrnn.rnn(*p.args, lengths=lengths)
    assert np.array_equal(h, jaxrnn.rnn(*p.args, lengths=want))
    assert int((np.abs(np.asarray(h)).sum(-1) > 0).sum()) == 5  # 5 valid steps, then zeros
    assert int(jaxrnn.valid_mask(lengths, T).sum()) == 5
    rev = jaxrnn.reverse_within_lengths(jnp.arange(T)[None].repeat(2, 0), lengths)
    assert list(rev[0, :7]) == [4, 3, 2, 1, 0, 5, 6]
    np.testing.assert_array_equal(
        jaxrnn.final_state(h, p.h0, lengths), jaxrnn.final_state(h, p.h0, want)
    )


HS = jnp.zeros((2, 3, 4))
BAD_HELPER_ARGS = [
    bad(
        "check_lengths-negative",
        lambda: jaxrnn.check_lengths(np.array([-2]), 3),
        ValueError,
        r"check_lengths: lengths must lie in \[0, T\] = \[0, 3\]",
    ),
    bad(
        "final_state-lengths-shape",
        lambda: jaxrnn.final_state(HS, HS[:, 0], [1, 2, 3]),
        ValueError,
        r"final_state: lengths must have shape \(N,\) = \(2,\)",
    ),
    bad(
        "valid_mask-float-lengths",
        lambda: jaxrnn.valid_mask(np.array([1.0, 2.0]), 3),
        ValueError,
        r"valid_mask: lengths must have an integer dtype",
    ),
    bad(
        "reverse_within_lengths-above-T",
        lambda: jaxrnn.reverse_within_lengths(HS, np.array([1, 4])),
        ValueError,
        r"reverse_within_lengths: lengths must lie in \[0, T\]",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_HELPER_ARGS)
def test_length_helpers_validate(call, exc, match):
    check_raises(call, exc, match)
