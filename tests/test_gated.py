"""The correctness contract of MATH.md §7 for the gated cells (§9 LSTM, §10 GRU).

Every property runs for both cells through one adapter: a problem is
``(x, state0, params, dh)`` with ``state0 = (h0, c0)`` for the LSTM and ``h0`` for the
GRU, and gradients are ``(dx, dstate0, dparams)`` in those structures. Shapes come from
one fixed pool (T = 0 and N = 0 included), so each jitted function compiles at most
once per pool entry and dtype.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, assert_tree_close, bad, check_raises, rel_err
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import reference
from jaxrnn.testing import check_bptt

CELLS = ("lstm", "gru")
G = {"lstm": 4, "gru": 3}
# (N, T, D, H): the edges (N = 0, T = 0, all ones), D != H both ways, a long one
SHAPES = ((1, 1, 1, 1), (2, 0, 3, 2), (0, 3, 2, 3), (2, 5, 3, 2), (3, 8, 2, 4), (2, 12, 4, 3))
shapes = st.sampled_from(SHAPES)
seeds = st.integers(0, 2**32 - 1)
cells = st.sampled_from(CELLS)
dtypes = st.sampled_from((np.float32, np.float64))
# float32: hand BPTT and autodiff sum the same terms in different orders (weight gradients
# as one matmul over N*T rows vs per-step sums; σ and tanh rounding differ per gate), so
# they differ by rounding: measured worst case 5.0e-7 (LSTM) and 3.4e-7 (GRU) relative
# over the pool x 15 seeds (float64: 1.0e-15); the tolerance is helpers.TOL (float32
# 2e-5, float64 1e-10). A wrong term is off by O(1e-1).


def make(cell, shape, seed, dtype=np.float64):
    """``(x, state0, params, dh)`` numpy: weights Normal(0, 1/fan_in), biases Normal(0,
    0.5^2) (LSTM forget block + 1, so δc travels), states Normal(0, 0.5^2)."""
    N, T, D, H = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D))
    h0 = 0.5 * rng.standard_normal((N, H))
    Wx = rng.standard_normal((D, G[cell] * H)) / np.sqrt(D)
    Wh = rng.standard_normal((H, G[cell] * H)) / np.sqrt(H)
    if cell == "lstm":
        b = 0.5 * rng.standard_normal(4 * H) + np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)]
        s0, p = (h0, 0.5 * rng.standard_normal((N, H))), (Wx, Wh, b)
    else:
        s0, p = h0, (Wx, Wh, 0.5 * rng.standard_normal(3 * H), 0.5 * rng.standard_normal(3 * H))
    dh = rng.standard_normal((N, T, H))
    return jax.tree.map(lambda a: a.astype(dtype), (x, s0, p, dh))


def hand(cell, x, s0, p, dh, **opts):
    """``(h, (dx, dstate0, dparams))`` by ``*_forward`` then ``*_backward``."""
    if cell == "lstm":
        h, cache = jaxrnn.lstm_forward(x, s0[0], *p, c0=s0[1], **opts)
        dx, dh0, dWx, dWh, db, dc0 = jaxrnn.lstm_backward(dh, cache)
        return h, (dx, (dh0, dc0), (dWx, dWh, db))
    h, cache = jaxrnn.gru_forward(x, s0, *p, **opts)
    dx, dh0, *dp = jaxrnn.gru_backward(dh, cache)
    return h, (dx, dh0, tuple(dp))


def layer(cell, x, s0, p, **opts):
    """The custom_vjp function of ``cell``: ``h``."""
    if cell == "lstm":
        return jaxrnn.lstm(x, s0[0], *p, c0=s0[1], **opts)
    return jaxrnn.gru(x, s0, *p, **opts)


def scan(cell, x, s0, p, **opts):
    """The naive ``lax.scan`` of :mod:`jaxrnn.reference`: ``h``."""
    if cell == "lstm":
        return reference.scan_lstm(x, s0[0], *p, s0[1], **opts)
    return reference.scan_gru(x, s0, *p, **opts)


@partial(jax.jit, static_argnames=("cell", "truncation"))
def autodiff(cell, x, s0, p, dh, lengths=None, truncation=None, carry_weights=None):
    """The oracle: ``jax.vjp`` of the naive scan, ``(h, (dx, dstate0, dparams))``."""
    opts = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights)
    h, vjp = jax.vjp(lambda *a: scan(cell, *a, **opts), x, s0, p)
    return h, vjp(dh)


@partial(jax.jit, static_argnames=("cell", "truncation", "checkpoint"))
def via_custom_vjp(cell, x, s0, p, dh, lengths=None, truncation=None, checkpoint=None, xi=None):
    """``jax.grad`` of ``<dh, h>`` through the custom_vjp: ``(dx, dstate0, dparams)``."""
    opts = dict(lengths=lengths, truncation=truncation, checkpoint=checkpoint, carry_weights=xi)
    return jax.grad(lambda *a: (layer(cell, *a, **opts) * dh).sum(), argnums=(0, 1, 2))(x, s0, p)


@given(cells, shapes, seeds, dtypes)
def test_hand_equals_autodiff(cell, shape, seed, dtype):
    """(a) hand BPTT (forward then backward) == jax.vjp of the naive lax.scan."""
    x, s0, p, dh = make(cell, shape, seed, dtype)
    h, grads = hand(cell, x, s0, p, dh)
    h_ad, grads_ad = autodiff(cell, x, s0, p, dh)
    assert h.dtype == dtype and h.shape == dh.shape
    assert rel_err(h, h_ad) <= TOL[np.dtype(dtype)]
    assert_tree_close(grads, grads_ad, dtype, what=f"{cell} {shape}")
    for g, a in zip(jax.tree.leaves(grads), jax.tree.leaves((x, s0, p)), strict=True):
        assert g.shape == a.shape and g.dtype == a.dtype


@given(cells, shapes, seeds)
def test_grad_through_custom_vjp_equals_autodiff(cell, shape, seed):
    """(b) jax.grad through lstm/gru (custom_vjp -> hand BPTT) == autodiff, incl. dc0."""
    x, s0, p, dh = make(cell, shape, seed)
    _, grads_ad = autodiff(cell, x, s0, p, dh)
    assert_tree_close(via_custom_vjp(cell, x, s0, p, dh), grads_ad, what=cell)


def step_loop(cell, x, s0, p, dh):
    """The step functions in a Python loop: ``(h, (dx, dstate0, dparams))``."""
    T = x.shape[1]
    fwd = jaxrnn.lstm_step_forward if cell == "lstm" else jaxrnn.gru_step_forward
    state, hs, caches = tuple(s0) if cell == "lstm" else (s0,), [], []
    for t in range(T):
        *state, c = fwd(x[:, t], *state, *p)
        hs.append(state[0])
        caches.append(c)
    dstate = [jnp.zeros_like(s) for s in state]
    dx, dp = [None] * T, [jnp.zeros_like(a) for a in p]
    bwd = jaxrnn.lstm_step_backward if cell == "lstm" else jaxrnn.gru_step_backward
    for t in reversed(range(T)):
        dstate[0] = dstate[0] + dh[:, t]
        dx[t], *rest = bwd(*dstate, caches[t])
        dstate, dp_t = rest[: len(dstate)], rest[len(dstate) :]
        dp = [a + g for a, g in zip(dp, dp_t, strict=True)]
    dx = jnp.stack(dx, axis=1) if T else jnp.zeros_like(x)
    h = jnp.stack(hs, axis=1) if T else jnp.zeros_like(dh)
    return h, (dx, tuple(dstate) if cell == "lstm" else dstate[0], tuple(dp))


@settings(max_examples=10)
@given(cells, st.sampled_from(SHAPES[:5]), seeds)
def test_step_functions_compose_into_sequence(cell, shape, seed):
    """(c) the step functions in a loop == the sequence functions (§7.4)."""
    x, s0, p, dh = make(cell, shape, seed)
    h, grads = step_loop(cell, x, s0, p, dh)
    h_seq, grads_seq = hand(cell, x, s0, p, dh)
    assert rel_err(h, h_seq) <= 1e-12
    assert_tree_close(grads, grads_seq, what=cell)


@given(cells, shapes, seeds, dtypes)
def test_numpy_reference_matches(cell, shape, seed, dtype):
    """The numpy loops of jaxrnn.reference (a third oracle) == the JAX hand BPTT."""
    x, s0, p, dh = make(cell, shape, seed, dtype)
    h, grads = hand(cell, x, s0, p, dh)
    if cell == "lstm":
        h_np, cache = reference.lstm_forward(x, s0[0], *p, c0=s0[1])
        dx, dh0, dWx, dWh, db, dc0 = reference.lstm_backward(dh, cache)
        want = (dx, (dh0, dc0), (dWx, dWh, db))
    else:
        h_np, cache = reference.gru_forward(x, s0, *p)
        dx, dh0, *dp = reference.gru_backward(dh, cache)
        want = (dx, dh0, tuple(dp))
    assert rel_err(h, h_np) <= TOL[np.dtype(dtype)]
    assert_tree_close(grads, want, dtype, what=cell)


@settings(max_examples=4)
@given(cells, st.sampled_from(SHAPES[1:5]), seeds)
def test_jit_equals_eager(cell, shape, seed):
    """(d) the jit-compiled functions == the same code run op by op."""
    x, s0, p, dh = make(cell, shape, seed)
    h, grads = hand(cell, x, s0, p, dh)
    with jax.disable_jit():
        h_e, grads_e = hand(cell, x, s0, p, dh)
        grads_cv = via_custom_vjp(cell, x, s0, p, dh)
    assert rel_err(h, h_e) <= 1e-12
    assert_tree_close(grads_e, grads, what="eager")
    assert_tree_close(grads_cv, grads, what="eager custom_vjp")


@settings(max_examples=6)
@given(cells, st.sampled_from(((1, 3, 2, 3), (2, 0, 2, 3))), seeds, st.sampled_from((1, 3)))
def test_vmap_equals_loop(cell, shape, seed, B):
    """(e) vmap of the layer and of its gradient over an extra leading axis == a loop."""
    probs = [make(cell, shape, seed + i) for i in range(B)]
    x, s0, p, dh = jax.tree.map(lambda *a: np.stack(a), *probs)
    grad = partial(via_custom_vjp, cell)
    h_v = jax.vmap(lambda *a: layer(cell, *a))(x, s0, p)
    g_v = jax.vmap(grad)(x, s0, p, dh)
    for i, prob in enumerate(probs):
        assert rel_err(h_v[i], layer(cell, *prob[:3])) <= 1e-12
        row = jax.tree.map(lambda a, i=i: a[i], g_v)
        assert_tree_close(row, grad(*prob), what=f"row {i}")


@settings(max_examples=4)
@given(cells, st.sampled_from(((1, 2, 2, 2), (2, 5, 3, 2))), seeds)
def test_finite_differences(cell, shape, seed):
    """Central finite differences in float64 (jax.test_util.check_grads) on the hand path."""
    x, s0, p, dh = make(cell, shape, seed)
    check_grads(lambda *a: (layer(cell, *a) * dh).sum(), (x, s0, p), order=1, modes=("rev",),
                eps=1e-6, atol=1e-6, rtol=1e-6)  # fmt: skip


OPTIONS = st.sampled_from(
    (
        dict(lengths=True),
        dict(truncation=1),
        dict(truncation=3),
        dict(checkpoint=1),
        dict(checkpoint=3),  # T = 5, 8 not divisible by 3
        dict(checkpoint=20),  # k > T
        dict(lengths=True, truncation=2, checkpoint=3),
        dict(carry_weights=True, truncation=4),
    )
)


@settings(max_examples=24)
@given(cells, shapes, seeds, OPTIONS, st.data())
def test_options_hand_equals_autodiff(cell, shape, seed, options, data):
    """lengths (0 and T included), truncation, checkpoint (k = 1, k > T, T not divisible
    by k) and carry weights, alone and together: hand (both paths) == the masked /
    stop-gradient naive scan."""
    x, s0, p, dh = make(cell, shape, seed)
    N, T = shape[:2]
    opts = dict(options)
    if opts.pop("lengths", False):
        opts["lengths"] = data.draw(st.lists(st.sampled_from((0, T, T // 2)), min_size=N,
                                             max_size=N).map(lambda v: np.asarray(v, np.int32)))  # fmt: skip
    if opts.pop("carry_weights", False):
        opts["carry_weights"] = np.random.default_rng(seed).uniform(0, 2, T)
    k = opts.pop("checkpoint", None)
    ad = {**opts}
    h_ad, grads_ad = autodiff(cell, x, s0, p, dh, **ad)
    h, grads = hand(cell, x, s0, p, dh, checkpoint=k, **opts)
    assert rel_err(h, h_ad) <= 1e-12
    assert_tree_close(grads, grads_ad, what=f"{cell} {options}")
    xi = opts.pop("carry_weights", None)
    got = via_custom_vjp(cell, x, s0, p, dh, checkpoint=k, xi=xi, **opts)
    assert_tree_close(got, grads_ad, what=f"{cell} {options} custom_vjp")
    if "lengths" in opts:  # padding: h is zero and x gets no gradient
        pad = np.arange(T)[None, :] >= opts["lengths"][:, None]
        assert not np.any(np.asarray(h)[pad]) and not np.any(np.asarray(grads[0])[pad])


@pytest.mark.parametrize("cell", CELLS)
def test_truncation_changes_the_gradient_and_t_gives_full(cell):
    """A cut changes dx before it; truncation = T is the full BPTT."""
    x, s0, p, dh = make(cell, (2, 8, 3, 4), 0)
    _, full = hand(cell, x, s0, p, dh)
    _, same = hand(cell, x, s0, p, dh, truncation=8)
    _, cut = hand(cell, x, s0, p, dh, truncation=4)
    assert_tree_close(same, full)
    assert rel_err(cut[0][:, :4], full[0][:, :4]) > 1e-3
    assert rel_err(cut[0][:, 4:], full[0][:, 4:]) <= 1e-12


def test_lstm_without_c0_returns_five_gradients():
    """c0 = None means zeros and lstm_backward returns (dx, dh0, dWx, dWh, db)."""
    x, (h0, c0), p, dh = make("lstm", (2, 5, 3, 2), 1)
    h, cache = jaxrnn.lstm_forward(x, h0, *p)
    h_z, cache_z = jaxrnn.lstm_forward(x, h0, *p, c0=np.zeros_like(c0))
    got, want = jaxrnn.lstm_backward(dh, cache), jaxrnn.lstm_backward(dh, cache_z)
    assert len(got) == 5 and len(want) == 6 and not cache.has_c0 and cache_z.has_c0
    assert rel_err(h, h_z) == 0
    assert_tree_close(got, want[:5])
    g = jax.grad(lambda x: (jaxrnn.lstm(x, h0, *p) * dh).sum())(x)
    assert_tree_close(g, got[0])


@pytest.mark.parametrize("cell", CELLS)
def test_cache_is_a_pytree_across_separate_jits(cell):
    x, s0, p, dh = make(cell, (2, 5, 3, 2), 2)
    fwd, bwd = (
        (jaxrnn.lstm_forward, jaxrnn.lstm_backward)
        if cell == "lstm"
        else (jaxrnn.gru_forward, jaxrnn.gru_backward)
    )
    args = (x, s0[0], *p) if cell == "lstm" else (x, s0, *p)
    _, cache = jax.jit(lambda *a: fwd(*a, checkpoint=2))(*args)
    leaves, treedef = jax.tree_util.tree_flatten(cache)
    cache = jax.tree_util.tree_unflatten(treedef, leaves)
    got = jax.jit(bwd)(dh, cache)
    assert_tree_close(got, bwd(dh, fwd(*args)[1]))


def test_init_params():
    p = jaxrnn.init_lstm_params(jax.random.key(0), 3, 5)
    assert [a.shape for a in p] == [(3, 20), (5, 20), (20,)] and p.Wx.dtype == jnp.float32
    assert np.all(p.b[5:10] == 1.0) and not np.any(p.b[:5]) and not np.any(p.b[10:])
    for k in range(4):  # each gate's Wh block orthogonal
        blk = np.asarray(p.Wh[:, 5 * k : 5 * k + 5], np.float64)
        assert np.allclose(blk.T @ blk, np.eye(5), atol=1e-5)
    q = jaxrnn.init_gru_params(jax.random.key(0), 3, 5, dtype=jnp.float64)
    assert [a.shape for a in q] == [(3, 15), (5, 15), (15,), (15,)] and q.Wh.dtype == jnp.float64
    assert jaxrnn.init_lstm_params(jax.random.key(0), 2, 2, forget_bias=0.0).b.sum() == 0


# --- Bad inputs: one case per test id ------------------------------------------------------

_x, (_h, _c), (_Wx, _Wh, _b), _ = make("lstm", (2, 3, 4, 5), 0)
_gx, _gh, (_gWx, _gWh, _gbx, _gbh), _ = make("gru", (2, 3, 4, 5), 0)
BAD = [
    bad("lstm_Wx_cols", lambda: jaxrnn.lstm(_x, _h, _Wx[:, :-1], _Wh, _b), ValueError,
        r"lstm: Wx.shape\[1\] must equal 4H = 4 \* Wh.shape\[0\]. Expected 20, got 19 "
        r"\(Wx: \(4, 19\), Wh: \(5, 20\)\)"),
    bad("lstm_Wh_cols", lambda: jaxrnn.lstm_forward(_x, _h, _Wx, _Wh[:, :15], _b), ValueError,
        r"lstm_forward: Wh.shape\[1\] must equal 4H = 4 \* Wh.shape\[0\]. Expected 20, got 15"),
    bad("lstm_b", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b[:5]), ValueError,
        r"b.shape\[0\] must equal 4H = 4 \* Wh.shape\[0\]. Expected 20, got 5 \(b: \(5,\), "
        r"Wh: \(5, 20\)\)"),
    bad("lstm_x_D", lambda: jaxrnn.lstm(_x[..., :3], _h, _Wx, _Wh, _b), ValueError,
        r"x.shape\[-1\] must equal Wx.shape\[0\] \(input size D\). Expected 4, got 3 "
        r"\(x: \(2, 3, 3\), Wx: \(4, 20\)\)"),
    bad("lstm_x_rank", lambda: jaxrnn.lstm(_x[0], _h, _Wx, _Wh, _b), ValueError,
        r"x must be 3-D with shape \(N, T, D\), got 2-D shape \(3, 4\)"),
    bad("lstm_c0_H", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, c0=_c[:, :4]), ValueError,
        r"c0.shape\[-1\] must equal the hidden size H = Wh.shape\[0\]. Expected 5, got 4 "
        r"\(c0: \(2, 4\), Wh: \(5, 20\)\)"),
    bad("lstm_c0_N", lambda: jaxrnn.lstm_forward(_x, _h, _Wx, _Wh, _b, c0=_c[:1]), ValueError,
        r"c0.shape\[0\] must equal x.shape\[0\] \(batch size N\). Expected 2, got 1"),
    bad("lstm_h0_N", lambda: jaxrnn.lstm(_x, _h[:1], _Wx, _Wh, _b), ValueError,
        r"h0.shape\[0\] must equal x.shape\[0\] \(batch size N\)"),
    bad("lstm_dtype", lambda: jaxrnn.lstm(_x.astype(np.float32), _h, _Wx, _Wh, _b), TypeError,
        r"lstm: all arrays must share one float dtype, got x: float32, h0: float64"),
    bad("lstm_int", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, np.arange(20)), TypeError,
        r"b must have a floating dtype"),
    bad("lstm_lengths", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, lengths=[1, 4]), ValueError,
        r"lstm: lengths must lie in \[0, T\] = \[0, 3\], got min 1, max 4"),
    bad("lstm_truncation", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, truncation=0), ValueError,
        r"lstm: truncation must be None or a positive int"),
    bad("lstm_checkpoint", lambda: jaxrnn.lstm_forward(_x, _h, _Wx, _Wh, _b, checkpoint=-1),
        ValueError, r"lstm_forward: checkpoint must be None, a positive int"),
    bad("lstm_xi", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, carry_weights=np.ones(2)),
        ValueError, r"carry_weights must have shape \(T,\) = \(3,\)"),
    bad("lstm_dh", lambda: jaxrnn.lstm_backward(np.zeros((2, 3, 4)),
                                                jaxrnn.lstm_forward(_x, _h, _Wx, _Wh, _b)[1]),
        ValueError, r"lstm_backward: dh must have the shape of h. Expected \(2, 3, 5\), "
        r"got \(2, 3, 4\)"),
    bad("lstm_step_prev_c", lambda: jaxrnn.lstm_step_forward(_x[:, 0], _h, _c[:, :2], _Wx,
                                                             _Wh, _b),
        ValueError, r"lstm_step_forward: prev_c.shape\[-1\] must equal the hidden size H"),
    bad("lstm_step_dnext_c", lambda: jaxrnn.lstm_step_backward(
        _h, _h[:1], jaxrnn.lstm_step_forward(_x[:, 0], _h, _c, _Wx, _Wh, _b)[2]), ValueError,
        r"lstm_step_backward: dnext_c must have the shape of next_c. Expected \(2, 5\)"),
    bad("gru_Wx_cols", lambda: jaxrnn.gru(_gx, _gh, _gWx[:, :12], _gWh, _gbx, _gbh), ValueError,
        r"gru: Wx.shape\[1\] must equal 3H = 3 \* Wh.shape\[0\]. Expected 15, got 12 "
        r"\(Wx: \(4, 12\), Wh: \(5, 15\)\)"),
    bad("gru_Wh_square", lambda: jaxrnn.gru(_gx, _gh, _gWx, _gWh[:4], _gbx, _gbh), ValueError,
        r"gru: Wh.shape\[1\] must equal 3H = 3 \* Wh.shape\[0\]. Expected 12, got 15"),
    bad("gru_bh", lambda: jaxrnn.gru_forward(_gx, _gh, _gWx, _gWh, _gbx, _gbh[:-1]), ValueError,
        r"bh.shape\[0\] must equal 3H = 3 \* Wh.shape\[0\]. Expected 15, got 14 "
        r"\(bh: \(14,\), Wh: \(5, 15\)\)"),
    bad("gru_bx_rank", lambda: jaxrnn.gru(_gx, _gh, _gWx, _gWh, _gbx[None], _gbh), ValueError,
        r"bx must be 1-D with shape \(3H\), got 2-D shape \(1, 15\)"),
    bad("gru_h0_H", lambda: jaxrnn.gru(_gx, _gh[:, :3], _gWx, _gWh, _gbx, _gbh), ValueError,
        r"h0.shape\[-1\] must equal the hidden size H = Wh.shape\[0\]. Expected 5, got 3"),
    bad("gru_lengths_shape", lambda: jaxrnn.gru(_gx, _gh, _gWx, _gWh, _gbx, _gbh,
                                                lengths=[1, 2, 3]),
        ValueError, r"gru: lengths must have shape \(N,\) = \(2,\)"),
    bad("gru_none", lambda: jaxrnn.gru(_gx, None, _gWx, _gWh, _gbx, _gbh), TypeError,
        r"gru: h0 must be an array, got NoneType"),
    bad("gru_dh_dtype", lambda: jaxrnn.gru_backward(
        np.zeros((2, 3, 5), np.float32), jaxrnn.gru_forward(_gx, _gh, _gWx, _gWh, _gbx, _gbh)[1]),
        TypeError, r"gru_backward: dh must have the dtype of h. Expected float64, got float32"),
    bad("gru_step_x", lambda: jaxrnn.gru_step_forward(_gx, _gh, _gWx, _gWh, _gbx, _gbh),
        ValueError, r"gru_step_forward: x must be 2-D with shape \(N, D\)"),
    bad("init_lstm_H", lambda: jaxrnn.init_lstm_params(jax.random.key(0), 3, 0), ValueError,
        r"init_lstm_params: H must be a positive int, got 0"),
    bad("init_gru_dtype", lambda: jaxrnn.init_gru_params(jax.random.key(0), 3, 2, np.int32),
        TypeError, r"init_gru_params: dtype must be floating"),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)


# --- torch: the gate mapping ---------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_torch_single_layer_forward_and_gradients(cell):
    """torch nn.LSTM (gates i, f, g, o; b = b_ih + b_hh) / nn.GRU (same layout as ours) in
    float64: h and every gradient agree, which pins the gate mapping."""
    torch = pytest.importorskip("torch")
    x, s0, p, dh = make(cell, (3, 7, 4, 5), 3)
    H = 5
    perm = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H] if cell == "lstm" else np.arange(3 * H)
    net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(4, H, batch_first=True).double()
    Wx, Wh = p[0], p[1]
    bih, bhh = (p[2], np.zeros(4 * H)) if cell == "lstm" else (p[2], p[3])
    with torch.no_grad():
        for name, a in (("weight_ih_l0", Wx[:, perm].T), ("weight_hh_l0", Wh[:, perm].T),
                        ("bias_ih_l0", bih[perm]), ("bias_hh_l0", bhh[perm])):  # fmt: skip
            getattr(net, name).copy_(torch.from_numpy(np.ascontiguousarray(a)))
    xt = torch.from_numpy(x).requires_grad_()
    st0 = tuple(
        torch.from_numpy(s)[None].requires_grad_() for s in (s0 if cell == "lstm" else (s0,))
    )
    out = net(xt, st0 if cell == "lstm" else st0[0])[0]
    out.backward(torch.from_numpy(dh))
    h, (dx, ds0, dp) = hand(cell, x, s0, p, dh)
    assert rel_err(h, out.detach().numpy()) <= 1e-12
    assert rel_err(dx, xt.grad.numpy()) <= 1e-12
    assert_tree_close(
        ds0, tuple(s.grad[0].numpy() for s in st0) if cell == "lstm" else st0[0].grad[0].numpy()
    )
    inv = np.argsort(perm)
    assert rel_err(dp[0], net.weight_ih_l0.grad.numpy().T[:, inv]) <= 1e-12
    assert rel_err(dp[1], net.weight_hh_l0.grad.numpy().T[:, inv]) <= 1e-12
    assert rel_err(dp[2], net.bias_ih_l0.grad.numpy()[inv]) <= 1e-12
    if cell == "gru":
        assert rel_err(dp[3], net.bias_hh_l0.grad.numpy()) <= 1e-12


# --- jaxrnn.testing.check_bptt: the recipe, and wrong backward passes it rejects -----------

D_, H_ = 3, 5


def lstm_step(p, s, x_t):  # the reference step check_bptt differentiates
    h, c, _ = jaxrnn._lstm.step_math(x_t @ p[0] + p[2][None], s[0], s[1], p[1])
    return h, c


def gru_step(p, h, x_t):
    return jaxrnn._gru.step_math(x_t @ p[0] + p[2][None], h, p[1], p[3])[0]


def lstm_params(rng):  # a forget bias of +2: δc travels far enough that a dropped carry shows
    Wx = rng.standard_normal((D_, 4 * H_)) / np.sqrt(D_)
    Wh = rng.standard_normal((H_, 4 * H_)) / np.sqrt(H_)
    return Wx, Wh, np.r_[np.zeros(H_), 2 * np.ones(H_), np.zeros(2 * H_)]


def hand_pair(cell, mutant=None):
    """``(forward_fn, backward_fn)`` for check_bptt from the public API, or with the engine
    cell's backward step replaced by ``mutant`` (a wrong BPTT)."""
    from jaxrnn import _recurrence as rec

    Cell = jaxrnn._lstm.LSTM_CELL if cell == "lstm" else jaxrnn._gru.GRU_CELL

    def forward(x, s0, p):
        if cell == "lstm":
            return jaxrnn.lstm_forward(x, s0[0], *p, c0=s0[1])
        return jaxrnn.gru_forward(x, s0, *p)

    def backward(dh, cache):
        if mutant is not None:
            c = Cell._replace(step_backward=mutant)
            s0 = (cache.h0, cache.c0) if cell == "lstm" else cache.h0
            return rec.backward(c, cache.params, cache.x, s0, cache.saved, dh, rec.Options())
        if cell == "lstm":
            dx, dh0, dWx, dWh, db, dc0 = jaxrnn.lstm_backward(dh, cache)
            return dx, (dh0, dc0), (dWx, dWh, db)
        dx, dh0, *dp = jaxrnn.gru_backward(dh, cache)
        return dx, dh0, tuple(dp)

    return forward, backward


def lstm_no_forget_carry(Wh_T, b, prev, dstate, dh_t):
    (dh_prev, _), da = jaxrnn._lstm._step_backward(Wh_T, b, prev, dstate, dh_t)
    return (dh_prev, jnp.zeros_like(dh_prev)), da  # δc not carried through the forget gate


def lstm_forget_gate_ignored(Wh_T, b, prev, dstate, dh_t):
    (dh_prev, dc_prev), da = jaxrnn._lstm._step_backward(Wh_T, b, prev, dstate, dh_t)
    f = jnp.split(b.gates, 4, axis=1)[1]
    return (dh_prev, dc_prev / f), da  # δc_t passed on without ⊙ f


def gru_no_direct_path(Wh_T, b, prev, dnext, dh_t):
    dh_prev, dxw = jaxrnn._gru._step_backward(Wh_T, b, prev, dnext, dh_t)
    z = jnp.split(b.gates, 3, axis=1)[1]
    return dh_prev - (dh_t + dnext) * z, dxw  # the z ⊙ h_{t-1} path dropped


LSTM_OPTS = dict(params=lstm_params, state=(np.zeros(H_), np.zeros(H_)), input_size=D_,
                 output=lambda s: s[0], max_examples=3)  # fmt: skip
GRU_OPTS = dict(params=(np.zeros((D_, 3 * H_)), np.zeros((H_, 3 * H_)), np.zeros(3 * H_),
                        np.zeros(3 * H_)), state=np.zeros(H_), input_size=D_, max_examples=3)  # fmt: skip


@pytest.mark.parametrize(
    "cell,mutant",
    [("lstm", None), ("gru", None), ("lstm", lstm_no_forget_carry),
     ("lstm", lstm_forget_gate_ignored), ("gru", gru_no_direct_path)],
    ids=["lstm", "gru", "lstm_no_forget_carry", "lstm_forget_gate_ignored", "gru_no_z_path"],
)  # fmt: skip
def test_check_bptt_recipe(cell, mutant):
    """The documented recipe: check_bptt(step, forward_fn, backward_fn, ...) accepts the hand
    LSTM/GRU and rejects wrong backward passes (a report naming the first wrong quantity)."""
    step, opts = (lstm_step, LSTM_OPTS) if cell == "lstm" else (gru_step, GRU_OPTS)
    forward, backward = hand_pair(cell, mutant)
    if mutant is None:
        check_bptt(step, forward, backward, **opts)
    else:
        with pytest.raises(AssertionError, match=r"BPTT check FAILED: (dx|dstate0\S*) is wrong"):
            check_bptt(step, forward, backward, **opts)
