"""The correctness contract of MATH.md §7 for the core API, over random problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import NAMES, TOL, assert_tree_close, autodiff_grads, custom_vjp_grads, rel_err
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import reference
from jaxrnn.testing import strategies as rs

f64 = st.just(np.float64)


@given(rs.problems())
def test_rnn_backward_equals_autodiff(p):
    """(a) hand BPTT == jax.vjp of the plain lax.scan forward."""
    h, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation)
    h_ad, grads_ad = autodiff_grads(p.dh, *p.args, activation=p.activation)
    assert h.dtype == p.x.dtype
    assert rel_err(h, h_ad) <= TOL[h.dtype]
    grads = jaxrnn.rnn_backward(jnp.asarray(p.dh), cache)
    for g, a in zip(grads, p.args[:2] + p.args[2:], strict=True):
        assert g.shape == a.shape and g.dtype == a.dtype
    assert_tree_close(grads, grads_ad, p.x.dtype, names=NAMES)


@given(rs.problems())
def test_grad_through_custom_vjp_equals_autodiff(p):
    """(b) jax.grad through jaxrnn.rnn (custom_vjp -> hand BPTT) == autodiff."""
    _, grads_ad = autodiff_grads(p.dh, *p.args, activation=p.activation)
    assert_tree_close(
        custom_vjp_grads(p.dh, *p.args, activation=p.activation), grads_ad, p.x.dtype, names=NAMES
    )


@given(rs.problems(dtype=f64))
def test_step_functions_compose_into_sequence(p):
    """(c) rnn_step_forward/backward in a Python loop == rnn_forward/backward (§7.4)."""
    x, h0, Wx, Wh, b = p.args
    N, T, _ = x.shape
    hs, caches, h_t = [], [], h0
    for t in range(T):
        h_t, c = jaxrnn.rnn_step_forward(x[:, t], h_t, Wx, Wh, b, activation=p.activation)
        hs.append(h_t)
        caches.append(c)
    h, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation)
    if T:
        assert rel_err(jnp.stack(hs, axis=1), h) <= 1e-12
    dx, dnext = [None] * T, jnp.zeros_like(h0)
    dW = [jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros_like(b)]
    for t in reversed(range(T)):
        dx[t], dnext, *dW_t = jaxrnn.rnn_step_backward(p.dh[:, t] + dnext, caches[t])
        dW = [a + g for a, g in zip(dW, dW_t, strict=True)]
    dx = jnp.stack(dx, axis=1) if T else jnp.zeros_like(x)
    assert_tree_close(
        (dx, dnext, *dW), jaxrnn.rnn_backward(jnp.asarray(p.dh), cache), np.float64, names=NAMES
    )


@given(rs.problems())
def test_numpy_reference_matches(p):
    """The document's numpy algorithm (third oracle) == the JAX hand BPTT."""
    h, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation)
    h_np, cache_np = reference.rnn_forward(*p.args, activation=p.activation)
    assert rel_err(h, h_np) <= TOL[h.dtype]
    got = jaxrnn.rnn_backward(jnp.asarray(p.dh), cache)
    assert_tree_close(got, reference.rnn_backward(p.dh, cache_np), p.x.dtype, names=NAMES)


@given(rs.problems(dtype=f64))
def test_jit_equals_eager(p):
    """(d) the jit-compiled functions == the same code run op by op."""
    h, cache = jaxrnn.rnn_forward(*p.args, activation=p.activation)
    grads = jaxrnn.rnn_backward(jnp.asarray(p.dh), cache)
    with jax.disable_jit():
        h_e, cache_e = jaxrnn.rnn_forward(*p.args, activation=p.activation)
        grads_e = jaxrnn.rnn_backward(jnp.asarray(p.dh), cache_e)
        grads_cv = custom_vjp_grads(p.dh, *p.args, activation=p.activation)
    assert rel_err(h, h_e) <= 1e-12
    assert_tree_close(grads_e, grads, np.float64, names=NAMES)
    assert_tree_close(grads_cv, grads, np.float64, names=NAMES)


@given(
    rs.shapes(N=(1, 2), T=(0, 3), D=(2,), H=(3,)),
    rs.seeds,
    rs.activations,
    st.sampled_from((1, 3)),
)
def test_vmap_equals_loop(shape, seed, activation, B):
    """(e) vmap of rnn and of its gradient over an extra leading axis == a loop."""
    ps = [rs.make_problem(shape, seed + i, activation) for i in range(B)]
    stacked = [np.stack(a) for a in zip(*(p.args + (p.dh,) for p in ps), strict=True)]
    *args, dh = stacked

    def loss(x, h0, Wx, Wh, b, dh):
        return (jaxrnn.rnn(x, h0, Wx, Wh, b, activation=activation) * dh).sum()

    grad = jax.grad(loss, argnums=(0, 1, 2, 3, 4))
    h_v = jax.vmap(lambda *a: jaxrnn.rnn(*a, activation=activation))(*args)
    g_v = jax.jit(jax.vmap(grad))(*args, dh)
    for i, p in enumerate(ps):
        assert rel_err(h_v[i], jaxrnn.rnn(*p.args, activation=activation)) <= 1e-12
        assert_tree_close([g[i] for g in g_v], grad(*p.args, p.dh), np.float64, names=NAMES)


@given(rs.problems(shape=rs.shapes(N=(1, 2), T=(1, 2, 5), D=(2, 3), H=(2, 4)), dtype=f64))
def test_finite_differences(p):
    """Central finite differences in float64 (jax.test_util.check_grads) on the hand path."""

    def loss(*a):
        return (jaxrnn.rnn(*a, activation=p.activation) * p.dh).sum()

    check_grads(loss, p.args, order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("activation", list(jaxrnn.ACTIVATIONS))
def test_value_and_grad_and_zero_length(activation):
    """value_and_grad composes; T = 0 gives an empty output and zero gradients (§7.3)."""
    p = rs.make_problem(rs.Shape(2, 0, 3, 4), 0, activation)

    def loss(*a):
        return jaxrnn.rnn(*a, activation=activation).sum() + a[1].sum()

    val, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))(*p.args)
    assert jaxrnn.rnn(*p.args, activation=activation).shape == (2, 0, 4)
    assert float(val) == pytest.approx(float(p.h0.sum()))
    for name, g, a in zip(NAMES, grads, p.args, strict=True):
        assert g.shape == a.shape, name
    assert np.all(grads[1] == 1.0)  # d(sum h0)/dh0 only: nothing flows from the empty output
    for g in grads[2:]:
        assert not np.any(g)


def test_float32_keeps_dtype_and_matches_float64():
    """float32 inputs give float32 outputs that agree with float64 to float32 precision."""
    p = rs.make_problem(rs.Shape(3, 8, 3, 4), 1, "tanh", np.float64)
    h64, c64 = jaxrnn.rnn_forward(*p.args)
    args32 = [a.astype(np.float32) for a in p.args]
    h32, c32 = jaxrnn.rnn_forward(*args32)
    g32 = jaxrnn.rnn_backward(jnp.asarray(p.dh, jnp.float32), c32)
    assert h32.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in g32)
    assert rel_err(h32, h64) <= 1e-6
    assert_tree_close(g32, jaxrnn.rnn_backward(jnp.asarray(p.dh), c64), np.float32, names=NAMES)


def test_cache_is_a_pytree_across_separate_jits():
    """The cache leaves jit, can be stored, and feeds a separately compiled backward."""
    p = rs.make_problem(rs.Shape(2, 4, 3, 2), 2, "sigmoid")
    fwd = jax.jit(lambda *a: jaxrnn.rnn_forward(*a, activation="sigmoid"))
    h, cache = fwd(*p.args)
    leaves, treedef = jax.tree_util.tree_flatten(cache)
    assert len(leaves) == 5  # x, h0, Wx, Wh, h: no per-step weight copies
    assert sum(leaf.size for leaf in leaves) == sum(a.size for a in p.args[:4]) + h.size
    rebuilt = jax.tree_util.tree_unflatten(treedef, [np.asarray(leaf) for leaf in leaves])
    assert rebuilt.activation == "sigmoid"
    _, want = autodiff_grads(p.dh, *p.args, activation="sigmoid")
    assert_tree_close(
        jax.jit(jaxrnn.rnn_backward)(jnp.asarray(p.dh), rebuilt), want, np.float64, names=NAMES
    )


def test_backward_uses_stored_output_not_forward():
    """f' comes from the cached h: corrupting cache.h changes the gradient accordingly."""
    p = rs.make_problem(rs.Shape(1, 1, 1, 1), 3, "tanh")
    _, cache = jaxrnn.rnn_forward(*p.args)
    fake = jaxrnn.RNNCache(cache.x, cache.h0, cache.Wx, cache.Wh, jnp.full_like(cache.h, 0.5))
    _, _, _, _, db = jaxrnn.rnn_backward(jnp.ones_like(cache.h), fake)
    assert float(db[0]) == pytest.approx(1 - 0.5**2)  # §3: tanh' = 1 - h^2


def test_init_params():
    p = jaxrnn.init_params(jax.random.PRNGKey(0), 3, 5, jnp.float64)
    assert isinstance(p, jaxrnn.RNNParams)
    assert p.Wx.shape == (3, 5) and p.Wh.shape == (5, 5) and p.b.shape == (5,)
    assert all(a.dtype == jnp.float64 for a in p)
    np.testing.assert_allclose(p.Wh @ p.Wh.T, np.eye(5), atol=1e-12)  # orthogonal
    assert not np.any(p.b)
    again = jaxrnn.init_params(jax.random.PRNGKey(0), 3, 5, jnp.float64)
    assert all(np.array_equal(a, b) for a, b in zip(p, again, strict=True))
    assert jaxrnn.init_params(jax.random.PRNGKey(0), 3, 5).Wx.dtype == jnp.float32
