"""Embedding, temporal affine and temporal softmax loss: hand backward == jax.vjp (MATH.md §6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, assert_tree_close, bad, check_raises, rel_err
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn.testing import strategies as rs

dtypes = rs.dtypes
NT = st.sampled_from(((0, 3), (1, 1), (2, 5), (3, 4), (2, 0)))  # (N, T), small pool
VE = st.sampled_from(((1, 1), (4, 3), (7, 2)))  # (vocab V, width E or K)


@jax.jit
def embed_oracle(tokens, W, dout):
    out, vjp = jax.vjp(lambda W: W[tokens], W)
    return out, vjp(dout)[0]


@given(NT, VE, rs.seeds, dtypes)
def test_word_embedding(nt, ve, seed, dtype):
    """Forward == indexing; backward == autodiff and numpy's np.add.at (repeats accumulate)."""
    (N, T), (V, E) = nt, ve
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, min(V, 2), (N, T))  # few distinct ids: many repeats
    W = rng.standard_normal((V, E)).astype(dtype)
    dout = rng.standard_normal((N, T, E)).astype(dtype)
    out, cache = jaxrnn.word_embedding_forward(tokens, W)
    dW = jaxrnn.word_embedding_backward(jnp.asarray(dout), cache)
    out_ad, dW_ad = embed_oracle(tokens, W, dout)
    want = np.zeros((V, E), np.float64)
    np.add.at(want, tokens.reshape(-1), dout.reshape(-1, E))
    assert out.shape == (N, T, E) and out.dtype == dtype and dW.dtype == dtype
    assert rel_err(out, out_ad) == 0.0
    assert rel_err(dW, dW_ad) <= TOL[np.dtype(dtype)]
    assert rel_err(dW, want) <= TOL[np.dtype(dtype)]


def test_embedding_repeated_tokens_accumulate():
    W = np.zeros((3, 2))
    _, cache = jaxrnn.word_embedding_forward(np.array([[1, 1, 2], [1, 0, 2]]), W)
    dW = jaxrnn.word_embedding_backward(jnp.ones((2, 3, 2)), cache)
    np.testing.assert_array_equal(dW, [[1, 1], [3, 3], [2, 2]])


@jax.jit
def affine_oracle(h, V, c, dscores):
    f = lambda h, V, c: jnp.einsum("nth,hk->ntk", h, V) + c  # noqa: E731 (independent form)
    out, vjp = jax.vjp(f, h, V, c)
    return out, vjp(dscores)


@given(NT, VE, st.sampled_from((1, 3)), rs.seeds, dtypes)
def test_temporal_affine(nt, ve, H, seed, dtype):
    (N, T), (_, K) = nt, ve
    rng = np.random.default_rng(seed)
    h, V, c, ds = (
        rng.standard_normal(s).astype(dtype) for s in ((N, T, H), (H, K), (K,), (N, T, K))
    )
    scores, cache = jaxrnn.temporal_affine_forward(h, V, c)
    grads = jaxrnn.temporal_affine_backward(jnp.asarray(ds), cache)
    with jax.numpy_rank_promotion("allow"):
        scores_ad, grads_ad = affine_oracle(h, V, c, ds)
    assert scores.shape == (N, T, K) and scores.dtype == dtype
    assert rel_err(scores, scores_ad) <= TOL[np.dtype(dtype)]
    assert_tree_close(grads, grads_ad, dtype, "temporal_affine_backward")


def softmax_oracle_loss(scores, y, w):
    """MATH.md §6 with jax.nn.log_softmax, differentiated by autodiff."""
    logp = jax.nn.log_softmax(scores, axis=-1)
    picked = jnp.take_along_axis(logp, y[:, :, None], axis=-1)[:, :, 0]
    return -(w * picked).sum() / max(scores.shape[0], 1)


softmax_oracle = jax.jit(jax.value_and_grad(softmax_oracle_loss))

masks = st.sampled_from(("none", "bool", "zeros", "float"))


@given(NT, VE, masks, rs.seeds, dtypes, st.sampled_from((1.0, 1e4)))
def test_temporal_softmax_loss(nt, ve, mask_kind, seed, dtype, scale):
    """loss and dscores == autodiff; masked positions contribute nothing; huge scores are finite."""
    (N, T), (_, K) = nt, ve
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((N, T, K)) * scale).astype(dtype)
    y = rng.integers(0, K, (N, T))
    mask = {
        "none": None,
        "bool": rng.random((N, T)) < 0.5,
        "zeros": np.zeros((N, T), bool),
        "float": rng.random((N, T)).astype(dtype),
    }[mask_kind]
    w = np.ones((N, T), dtype) if mask is None else np.asarray(mask, dtype)
    if mask is not None:
        y = np.where(w != 0, y, 10**6)  # targets at masked positions may be anything
    loss, ds = jaxrnn.temporal_softmax_loss(scores, y, mask)
    loss_ad, ds_ad = softmax_oracle(scores, np.where(w != 0, y, 0), w)
    assert loss.shape == () and loss.dtype == dtype and ds.dtype == dtype
    assert np.isfinite(float(loss)) and np.all(np.isfinite(ds))
    tol = TOL[np.dtype(dtype)]
    assert abs(float(loss) - float(loss_ad)) <= tol * max(abs(float(loss_ad)), 1.0) * scale
    assert rel_err(ds, ds_ad) <= tol
    assert not np.any(np.asarray(ds)[w == 0])  # §6: masked positions get zero gradient
    if mask_kind == "zeros":
        assert float(loss) == 0.0


def test_softmax_loss_normalisation():
    """Mean over the batch N, sum over time: two identical rows give the one-row loss."""
    s = np.log(np.array([[[1.0, 3.0], [1.0, 1.0]]]))  # (1, 2, 2): p(y=1) = 3/4, then 1/2
    y = np.array([[1, 0]])
    loss1, _ = jaxrnn.temporal_softmax_loss(s, y)
    loss2, _ = jaxrnn.temporal_softmax_loss(np.concatenate([s, s]), np.concatenate([y, y]))
    assert float(loss1) == pytest.approx(-np.log(0.75) - np.log(0.5), rel=1e-14)
    assert float(loss2) == pytest.approx(float(loss1), rel=1e-14)


W4 = np.zeros((4, 2))  # vocab 4, width 2
HA, VA, CA = np.zeros((2, 3, 4)), np.zeros((4, 5)), np.zeros(5)
S5 = np.zeros((2, 3, 5))  # scores, K = 5


def _embed_cache(tokens, W=W4):
    return jaxrnn.word_embedding_forward(tokens, W)[1]


BAD_LAYER_INPUTS = [
    bad(
        "embedding-token-above-vocab",
        lambda: jaxrnn.word_embedding_forward(np.array([[0, 4]]), W4),
        ValueError,
        r"tokens must lie in \[0, 4\).*got min 0, max 4",
    ),
    bad(
        "embedding-token-negative",
        lambda: jaxrnn.word_embedding_forward(np.array([[-1, 0]]), W4),
        ValueError,
        r"tokens must lie in \[0, 4\).*got min -1",
    ),
    bad(
        "embedding-float-tokens",
        lambda: jaxrnn.word_embedding_forward(np.zeros((1, 2)), W4),
        TypeError,
        r"tokens must have an integer dtype, got float64",
    ),
    bad(
        "embedding-1d-tokens",
        lambda: jaxrnn.word_embedding_forward(np.array([0, 1]), W4),
        ValueError,
        r"tokens must be 2-D with shape \(N, T\), got 1-D",
    ),
    bad(
        "embedding_backward-dout-T",
        lambda: jaxrnn.word_embedding_backward(jnp.zeros((1, 3, 2)), _embed_cache([[0, 1]])),
        ValueError,
        r"dout.shape\[:2\] must equal tokens.shape",
    ),
    bad(
        "embedding_backward-dout-transposed",
        lambda: jaxrnn.word_embedding_backward(
            jnp.ones((3, 2, 5)), _embed_cache(np.array([[0, 1, 2], [2, 1, 0]]), jnp.ones((3, 5)))
        ),
        ValueError,
        r"dout.shape\[:2\] must equal tokens.shape.*Expected \(2, 3\), got \(3, 2\)",
    ),
    bad(
        "affine-h-vs-V",
        lambda: jaxrnn.temporal_affine_forward(HA[..., :3], VA, CA),
        ValueError,
        r"h.shape\[-1\] must equal V.shape\[0\].*Expected 4, got 3",
    ),
    bad(
        "affine-c-vs-V",
        lambda: jaxrnn.temporal_affine_forward(HA, VA, CA[:4]),
        ValueError,
        r"c.shape\[0\] must equal V.shape\[1\].*Expected 5, got 4",
    ),
    bad(
        "affine-mixed-dtypes",
        lambda: jaxrnn.temporal_affine_forward(HA, VA.astype(np.float32), CA),
        TypeError,
        r"one float dtype",
    ),
    bad(
        "affine_backward-dscores-shape",
        lambda: jaxrnn.temporal_affine_backward(
            jnp.zeros((2, 3, 4)), jaxrnn.temporal_affine_forward(HA, VA, CA)[1]
        ),
        ValueError,
        r"dscores must have the shape of the scores",
    ),
    bad(
        "softmax-target-out-of-range",
        lambda: jaxrnn.temporal_softmax_loss(S5, np.full((2, 3), 5)),
        ValueError,
        r"y \(where mask != 0\) must lie in \[0, 5\).*max 5",
    ),
    bad(
        "softmax-y-shape",
        lambda: jaxrnn.temporal_softmax_loss(S5, np.zeros((3, 2), int)),
        ValueError,
        r"y must have shape \(N, T\) = \(2, 3\), got \(3, 2\)",
    ),
    bad(
        "softmax-mask-shape",
        lambda: jaxrnn.temporal_softmax_loss(S5, np.zeros((2, 3), int), np.ones((2, 2))),
        ValueError,
        r"mask must have shape \(N, T\) = \(2, 3\), got \(2, 2\)",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_LAYER_INPUTS)
def test_layer_bad_inputs(call, exc, match):
    check_raises(call, exc, match)
