"""The full model: the hand-derived chain (loss_and_grads) == jax.grad of the same forward
pass, via plain autodiff and via the custom_vjp; finite differences; sampling; bad inputs."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close, bad, check_raises, random_model
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import BiRNNParams, RNNParams, model

N, T, VOCAB, K = 2, 5, 6, 4
HIDDEN = (3, 2, 4)
ACTS = {1: "tanh", 2: ("relu", "sigmoid"), 3: ("sigmoid", "identity", "tanh")}


@partial(jax.jit, static_argnames=("activations", "truncation", "grad"))
def value_and_grad(
    params, tokens, targets, h0, mask, lengths, activations, truncation, grad, xi=None
):
    f = jax.value_and_grad(model.loss, has_aux=True)
    kw = dict(activations=activations, truncation=truncation, grad=grad, carry_weights=xi)
    return f(params, tokens, targets, h0=h0, mask=mask, lengths=lengths, **kw)


def batch(seed, bi, L, dtype=np.float64):
    rng = np.random.default_rng(seed)
    tokens, targets = rng.integers(0, VOCAB, (N, T)), rng.integers(0, K, (N, T))
    h0 = tuple(rng.standard_normal((N, (2 if bi else 1) * H)).astype(dtype) for H in HIDDEN[:L])
    return rng, tokens, targets, h0


def random_params(rng, L, bi):
    """float64 ModelParams drawn with numpy (no jax.random: nothing to compile per config)."""
    return random_model(rng, VOCAB, HIDDEN[:L], K, embed_size=3, bidirectional=bi)


# (layers, bidirectional, truncation): every layer count, both directions, truncation
# 1, 2, T (= none in effect) and None; a fixed list keeps the number of compilations at 6.
CONFIGS = [
    (1, False, None),
    (1, True, 2),
    (2, False, 2),
    (2, True, None),
    (3, False, 1),
    (3, True, T),
]


@given(st.sampled_from(CONFIGS), st.integers(0, 2**31 - 1), st.data())
def test_loss_and_grads_equal_autodiff(config, seed, data):
    """float64: hand chain == jax.value_and_grad(model.loss, grad="autodiff") <= 1e-10,
    with random masks and lengths (all zero, full, mixed)."""
    L, bi, k = config
    rng, tokens, targets, h0 = batch(seed, bi, L)
    params = random_params(rng, L, bi)
    lengths = data.draw(st.sampled_from(([0, 0], [T, T], [3, T], [1, 4])))
    lengths = np.asarray(lengths, np.int64)
    mask = rng.random((N, T)) < 0.7
    kw = dict(activations=ACTS[L], truncation=k)
    loss, grads, hT = model.loss_and_grads(
        params, tokens, targets, h0=h0, mask=mask, lengths=lengths, **kw
    )
    (loss_ad, hT_ad), grads_ad = value_and_grad(
        params, tokens, targets, h0, mask, lengths, grad="autodiff", **kw
    )
    assert abs(float(loss) - float(loss_ad)) <= 1e-10 * max(1.0, abs(float(loss_ad)))
    assert_tree_close(grads, grads_ad, np.float64, "grads")
    assert_tree_close(hT, hT_ad, np.float64, "hT")
    if not lengths.any() or not mask.any():
        assert float(loss) == 0.0 and not any(np.any(g) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "L,bi,k,lengths",
    [(2, False, None, None), (1, True, 3, [2, 5]), (3, False, 1, [5, 0])],
)
def test_custom_vjp_path_equals_hand(L, bi, k, lengths):
    """jax.value_and_grad(model.loss, grad="hand") (through jaxrnn.rnn) == loss_and_grads."""
    rng, tokens, targets, h0 = batch(L, bi, L)
    params = random_params(rng, L, bi)
    lengths = None if lengths is None else np.asarray(lengths, np.int64)
    kw = dict(activations=ACTS[L], truncation=k)
    loss, grads, hT = model.loss_and_grads(params, tokens, targets, h0=h0, lengths=lengths, **kw)
    (loss_h, hT_h), grads_h = value_and_grad(
        params, tokens, targets, h0, None, lengths, grad="hand", **kw
    )
    assert float(loss_h) == pytest.approx(float(loss), rel=1e-12)
    assert_tree_close(grads_h, grads, np.float64, "custom_vjp grads")
    assert_tree_close(hT_h, hT, np.float64, "hT")


@pytest.mark.parametrize("bi", [False, True])
def test_randomized_truncation_model(bi):
    """carry_weights (randomized truncation) in every layer: hand == autodiff == custom_vjp."""
    rng, tokens, targets, h0 = batch(11, bi, 2)
    params = random_params(rng, 2, bi)
    xi = jaxrnn.randomized_truncation(jax.random.PRNGKey(bi), T, 0.5, jnp.float64)
    lengths = np.array([5, 3])
    loss, grads, _ = model.loss_and_grads(
        params, tokens, targets, h0=h0, lengths=lengths, activations=ACTS[2], carry_weights=xi
    )
    for grad in ("autodiff", "hand"):
        (loss_ad, _), grads_ad = value_and_grad(
            params, tokens, targets, h0, None, lengths, ACTS[2], None, grad, xi
        )
        assert float(loss_ad) == pytest.approx(float(loss), rel=1e-12)
        assert_tree_close(grads, grads_ad, np.float64, grad)


def test_float32_model():
    """float32 hand chain vs the float64 one: documented tolerance helpers.TOL[float32] = 2e-5."""
    _, tokens, targets, _ = batch(0, False, 2)
    p64 = model.init(jax.random.PRNGKey(0), VOCAB, [8, 8], K, dtype=jnp.float64)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p64)
    loss32, g32, hT32 = model.loss_and_grads(p32, tokens, targets, truncation=2)
    loss64, g64, _ = model.loss_and_grads(p64, tokens, targets, truncation=2)
    assert loss32.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(g32))
    assert abs(float(loss32) - float(loss64)) <= 2e-5 * abs(float(loss64))
    assert_tree_close(g32, g64, np.float32, "float32 grads")
    (_, _), g_ad32 = value_and_grad(p32, tokens, targets, None, None, None, "tanh", 2, "autodiff")
    assert_tree_close(g32, g_ad32, np.float32, "float32 hand vs autodiff")


def shifted(params, v, s):
    return jax.tree.map(lambda a, d: a + s * d, params, v)


@pytest.mark.parametrize("bi", [False, True])
def test_finite_differences(bi):
    """Central differences in float64 along random directions: (E(p+eps v) - E(p-eps v)) / 2eps
    == <grads, v> to 1e-6 relative (MATH.md §7.2)."""
    rng, tokens, targets, h0 = batch(7, bi, 2)
    params = model.init(
        jax.random.PRNGKey(7), VOCAB, HIDDEN[:2], K, bidirectional=bi, dtype=jnp.float64
    )
    kw = dict(
        h0=h0,
        mask=rng.random((N, T)) < 0.8,
        lengths=np.array([5, 3]),
        activations=("tanh", "sigmoid"),
    )
    _, grads, _ = model.loss_and_grads(params, tokens, targets, **kw)
    leaves, treedef = jax.tree.flatten(params)
    eps = 1e-6
    for _ in range(3):
        v = treedef.unflatten([rng.standard_normal(a.shape) for a in leaves])
        up, _, _ = model.loss_and_grads(shifted(params, v, eps), tokens, targets, **kw)
        down, _, _ = model.loss_and_grads(shifted(params, v, -eps), tokens, targets, **kw)
        fd = (float(up) - float(down)) / (2 * eps)
        an = sum(
            float(jnp.vdot(g, d))
            for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(v), strict=True)
        )
        assert abs(fd - an) <= 1e-6 * max(abs(an), 1.0), (fd, an)


def test_predict_step_composes_into_loss():
    """Stepping predict_step over the sequence reproduces the loss and the final state."""
    _, tokens, targets, h0 = batch(1, False, 2)
    params = model.init(jax.random.PRNGKey(1), VOCAB, [3, 2], K, dtype=jnp.float64)
    loss, _, hT = model.loss_and_grads(params, tokens, targets, h0=h0, activations=("relu", "tanh"))
    state, total = h0, 0.0
    for t in range(T):
        scores, state = model.predict_step(
            params, tokens[:, t], state, activations=("relu", "tanh")
        )
        logp = jax.nn.log_softmax(scores, axis=-1)
        total -= float(jnp.take_along_axis(logp, targets[:, t, None], axis=-1).sum()) / N
    assert total == pytest.approx(float(loss), rel=1e-12)
    assert_tree_close(state, hT, what="final state", tol=1e-12)


def test_init_and_init_state():
    p = model.init(jax.random.PRNGKey(0), 7, [5, 4])
    assert isinstance(p, model.ModelParams) and isinstance(p.layers[1], RNNParams)
    assert (
        p.embed.shape == (7, 5)
        and p.layers[0].Wx.shape == (5, 5)
        and p.layers[1].Wx.shape == (5, 4)
    )
    assert p.V.shape == (4, 7) and p.c.shape == (7,) and p.embed.dtype == jnp.float32
    assert [s.shape for s in model.init_state(p, 3)] == [(3, 5), (3, 4)]
    b = model.init(jax.random.PRNGKey(0), 7, [5, 4], 2, embed_size=3, bidirectional=True)
    assert isinstance(b.layers[0], BiRNNParams) and b.layers[1].fwd.Wx.shape == (10, 4)
    assert b.embed.shape == (7, 3) and b.V.shape == (8, 2)
    assert [s.shape for s in model.init_state(b, 1)] == [(1, 10), (1, 8)]


P = model.init(jax.random.PRNGKey(0), 5, [3, 2], 4)  # vocab 5, K = 4, two layers
P_BI = model.init(jax.random.PRNGKey(0), 5, [3], bidirectional=True)
TOK, TGT = np.zeros((2, 3), int), np.zeros((2, 3), int)
BAD_MODEL = [
    bad(
        "loss_and_grads-token-out-of-range",
        lambda: model.loss_and_grads(P, TOK + 5, TGT),
        ValueError,
        r"loss_and_grads: tokens must lie in \[0, 5\).*max 5",
    ),
    bad(
        "loss-target-out-of-range",
        lambda: model.loss(P, TOK, TGT - 1),
        ValueError,
        r"loss: targets \(where counted\) must lie in \[0, 4\)",
    ),
    bad(
        "loss_and_grads-targets-shape",
        lambda: model.loss_and_grads(P, TOK, TGT[:, :2]),
        ValueError,
        r"targets must have shape \(N, T\) = \(2, 3\), got \(2, 2\)",
    ),
    bad(
        "loss_and_grads-h0-count",
        lambda: model.loss_and_grads(P, TOK, TGT, h0=(np.zeros((2, 3), np.float32),)),
        ValueError,
        r"h0 must hold one state per layer: expected 2, got 1",
    ),
    bad(
        "loss_and_grads-h0-shape",
        lambda: model.loss_and_grads(P, TOK, TGT, h0=(np.zeros((2, 3)), np.zeros((2, 3)))),
        ValueError,
        r"h0\[1\] must have shape \(N, H_1\) = \(2, 2\), got \(2, 3\)",
    ),
    bad(
        "loss_and_grads-lengths-above-T",
        lambda: model.loss_and_grads(P, TOK, TGT, lengths=np.array([0, 4])),
        ValueError,
        r"lengths must lie in \[0, T\] = \[0, 3\], got min 0, max 4",
    ),
    bad(
        "loss-truncation-zero",
        lambda: model.loss(P, TOK, TGT, truncation=0),
        ValueError,
        r"truncation must be None or a positive int",
    ),
    bad(
        "loss-grad-unknown",
        lambda: model.loss(P, TOK, TGT, grad="fd"),
        ValueError,
        r"grad must be 'hand' or 'autodiff', got 'fd'",
    ),
    bad(
        "loss_and_grads-too-many-activations",
        lambda: model.loss_and_grads(P, TOK, TGT, activations=("tanh",) * 3),
        ValueError,
        r"activations must be one name or one per layer: expected 2, got 3",
    ),
    bad(
        "predict_step-token-out-of-range",
        lambda: model.predict_step(P, np.array([9, 0]), model.init_state(P, 2)),
        ValueError,
        r"predict_step: tokens must lie in \[0, 5\)",
    ),
    bad(
        "predict_step-bidirectional",
        lambda: model.predict_step(P_BI, np.array([0]), model.init_state(P_BI, 1)),
        ValueError,
        r"predict_step: a bidirectional model.*cannot step",
    ),
    bad(
        "init-embed_size-zero",
        lambda: model.init(jax.random.PRNGKey(0), 5, [3], embed_size=0),
        ValueError,
        r"init: embed_size must be a positive int, got 0",
    ),
    bad(
        "init-hidden_sizes-int",
        lambda: model.init(jax.random.PRNGKey(0), 5, 8),
        ValueError,
        r"hidden_sizes must be a non-empty sequence of ints, got 8",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_MODEL)
def test_model_bad_inputs(call, exc, match):
    check_raises(call, exc, match)


def test_masked_targets_are_not_checked():
    """A target out of range where mask == 0 is padding, not an error."""
    loss, _, _ = model.loss_and_grads(P, TOK, TGT - 1, mask=np.zeros((2, 3)))
    assert float(loss) == 0.0


@pytest.mark.parametrize("grad", ["hand", "autodiff"])
def test_masked_out_of_range_targets_are_ignored_by_every_path(grad):
    """Padding targets such as -100 or K at masked positions: same finite loss on every path."""
    p = model.init(jax.random.PRNGKey(1), 5, [3], 4, dtype=jnp.float64)
    tok = np.array([[1, 2, 3], [4, 0, 1]])
    tgt = np.array([[0, 1, -100], [2, 4, 4]])  # -100 and K=4 only where not counted
    lengths = np.array([2, 1])
    want, grads, _ = model.loss_and_grads(p, tok, tgt, lengths=lengths)
    (got, _), g2 = jax.value_and_grad(model.loss, has_aux=True)(
        p, tok, tgt, lengths=lengths, grad=grad
    )
    assert np.isfinite(float(want)) and float(got) == pytest.approx(float(want), rel=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
