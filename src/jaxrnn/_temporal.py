"""The layers around the recurrence: word embedding, temporal affine (the document's V),
and the temporal softmax loss, each with a hand-derived backward pass (MATH.md §6).

Seed-style pairs: ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache)``.
No ``jax.grad``/``jax.vjp`` here.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from ._checks import (
    check_dim,
    check_ids,
    check_rank,
    check_same_shape,
    float_arrays,
    int_array,
    is_concrete,
    loss_weights,
)
from ._sharding import add_rows, contract, take_rows

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class EmbedCache:
    """What :func:`word_embedding_backward` needs: the tokens and the vocabulary size."""

    tokens: Array  # (N, T) int
    vocab_size: int  # static: V, the number of rows of W_embed


@dataclasses.dataclass(frozen=True)
class AffineCache:
    """What :func:`temporal_affine_backward` needs: the input and the weight."""

    h: Array  # (N, T, H)
    V: Array  # (H, K)


jax.tree_util.register_dataclass(EmbedCache, data_fields=["tokens"], meta_fields=["vocab_size"])
jax.tree_util.register_dataclass(AffineCache, data_fields=["h", "V"], meta_fields=[])


def check_ids_in_range(ids: Array, bound: int, where: Array | None = None) -> Array:
    """Checks ``0 <= ids < bound`` (where ``where != 0``), also under ``jit`` with ``checkify``.

    Concrete values raise ``ValueError`` at once (as every function taking token or
    target ids does). Under ``jax.jit`` the library does not check values: an
    out-of-range *token* is clamped by JAX's indexing, and an out-of-range counted
    *target* makes the loss and gradients NaN (``loss`` and ``loss_and_grads``
    alike). To check traced ids, call this inside the jitted function and wrap it
    in ``jax.experimental.checkify.checkify`` (as with :func:`jaxrnn.check_lengths`).

    Args:
      ids: integer array, e.g. ``(N, T)`` tokens or targets.
      bound: the exclusive upper bound (vocabulary size or K).
      where: optional array of ``ids``' shape; only entries where it is nonzero count.

    Returns:
      ``ids`` as a JAX array.
    """
    if is_concrete(ids) and (where is None or is_concrete(where)):
        check_ids("check_ids_in_range", "ids", ids, bound, "the bound", where=where)
        return jnp.asarray(ids)
    arr = jnp.asarray(ids)
    counted = jnp.ones(arr.shape, bool) if where is None else jnp.asarray(where) != 0
    ok = ~counted | ((arr >= 0) & (arr < bound))
    big = jnp.iinfo(arr.dtype)
    lo = jnp.where(counted, arr, big.max).min(initial=big.max)  # over the counted ids only
    hi = jnp.where(counted, arr, big.min).max(initial=big.min)
    checkify.check(jnp.all(ok), f"ids must lie in [0, {bound}), got min {{lo}}, max {{hi}}",
                   lo=lo, hi=hi)  # fmt: skip
    return arr


def word_embedding_forward(tokens: Array, W_embed: Array) -> tuple[Array, EmbedCache]:
    """Looks up the embedding of every token: ``out[n, t] = W_embed[tokens[n, t]]``.

    Args:
      tokens: ``(N, T)`` integers in ``[0, V)``.
      W_embed: ``(V, E)`` embedding matrix.

    Returns:
      ``(out, cache)``: ``out`` ``(N, T, E)`` and an :class:`EmbedCache`.
    """
    tokens, W_embed = _embedding_args("word_embedding_forward", tokens, W_embed)
    return word_embedding_forward_unchecked(tokens, W_embed)


def _embedding_args(fn: str, tokens: object, W_embed: object) -> tuple[Array, Array]:
    (W_embed,) = float_arrays(fn, W_embed=W_embed)
    check_rank(fn, "W_embed", W_embed, "V, E")
    tokens = int_array(fn, "tokens", tokens, "N, T")
    check_ids(fn, "tokens", tokens, W_embed.shape[0], "the vocabulary size W_embed.shape[0]")
    return tokens, W_embed


@jax.jit
def word_embedding_forward_unchecked(tokens: Array, W_embed: Array) -> tuple[Array, EmbedCache]:
    return take_rows(W_embed, tokens), EmbedCache(tokens, W_embed.shape[0])  # (N, T, E)


@jax.jit
def word_embedding_backward(dout: Array, cache: EmbedCache) -> Array:
    """The gradient of the embedding matrix: a scatter-add of ``dout`` into the used rows.

    ``dW_embed[v] = sum_{(n, t): tokens[n, t] = v} dout[n, t]``: a token that occurs
    several times accumulates all its gradients; unused rows get zero.

    Args:
      dout: ``(N, T, E)`` upstream gradient.
      cache: the :class:`EmbedCache` from :func:`word_embedding_forward`.

    Returns:
      ``dW_embed``: ``(V, E)``.
    """
    N, T = cache.tokens.shape
    check_rank("word_embedding_backward", "dout", dout, "N, T, E")
    if tuple(dout.shape[:2]) != (N, T):
        raise ValueError(
            f"word_embedding_backward: dout.shape[:2] must equal tokens.shape (N, T). "
            f"Expected {(N, T)}, got {tuple(dout.shape[:2])} (dout: {tuple(dout.shape)})"
        )
    E = dout.shape[-1]
    dW = jnp.zeros((cache.vocab_size, E), dout.dtype)
    return add_rows(dW, cache.tokens.reshape(N * T), dout.reshape(N * T, E))  # scatter-add


@jax.jit
def temporal_affine_forward(h: Array, V: Array, c: Array) -> tuple[Array, AffineCache]:
    """The output layer at every step: ``scores_t = h_t @ V + c`` (MATH.md §6).

    One ``(N*T, H) @ (H, K)`` matmul over all rows.

    Args:
      h: ``(N, T, H)`` hidden states.
      V: ``(H, K)`` hidden-to-output weights (the document's ``V^T``).
      c: ``(K,)`` output bias.

    Returns:
      ``(scores, cache)``: ``scores`` ``(N, T, K)`` and an :class:`AffineCache`.
    """
    fn = "temporal_affine_forward"
    h, V, c = float_arrays(fn, h=h, V=V, c=c)
    check_rank(fn, "h", h, "N, T, H")
    check_rank(fn, "V", V, "H, K")
    check_rank(fn, "c", c, "K")
    check_dim(
        fn, "h.shape[-1] must equal V.shape[0] (H)", V.shape[0], h.shape[-1], h=h.shape, V=V.shape
    )
    check_dim(
        fn, "c.shape[0] must equal V.shape[1] (K)", V.shape[1], c.shape[0], c=c.shape, V=V.shape
    )
    N, T, H = h.shape
    K = V.shape[1]
    scores = (h.reshape(N * T, H) @ V + c[None]).reshape(N, T, K)  # §6: scores_t = h_t V + c
    return scores, AffineCache(h, V)


@jax.jit
def temporal_affine_backward(dscores: Array, cache: AffineCache) -> tuple[Array, Array, Array]:
    """Gradients of :func:`temporal_affine_forward` (MATH.md §6)::

        dh_t = dscores_t @ V^T,   dV = sum_t h_t^T @ dscores_t,   dc = sum_{n,t} dscores_t

    Args:
      dscores: ``(N, T, K)`` upstream gradient.
      cache: the :class:`AffineCache`.

    Returns:
      ``(dh, dV, dc)`` with shapes ``(N, T, H)``, ``(H, K)``, ``(K,)``.
    """
    h, V = cache.h, cache.V
    N, T, H = h.shape
    K = V.shape[1]
    expected = jax.ShapeDtypeStruct((N, T, K), h.dtype)
    check_same_shape("temporal_affine_backward", "dscores", dscores, "the scores", expected)
    ds = dscores.reshape(N * T, K)
    dh = (ds @ V.T).reshape(N, T, H)  # §6: dh_t = dscores_t V^T
    dV = contract(h.reshape(N * T, H).T, ds, V)  # §6: dV = Σ_t h_t^T dscores_t
    dc = ds.sum(axis=0)  # §6: dc = Σ dscores
    return dh, dV, dc


def temporal_softmax_loss(
    scores: Array, y: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """Softmax cross-entropy summed over time, averaged over the batch, and its gradient.

    MATH.md §6, with ``mask`` (1 = counts, 0 = ignored)::

        E       = -(1/N) sum_{n,t} mask[n,t] log softmax(scores[n,t])[y[n,t]]
        dscores = (softmax(scores) - onehot(y)) * mask / N

    Normalisation: divided by the batch size N only (not by the number of valid
    steps), as in the document's code base; masked positions contribute nothing
    (and their ``y`` may be any integer). ``log softmax`` is computed as
    ``s - max(s) - log(sum(exp(s - max(s))))`` (log-sum-exp), so huge scores do
    not overflow. For N = 0 the loss is 0.

    Args:
      scores: ``(N, T, K)`` unnormalised log-probabilities.
      y: ``(N, T)`` integer targets in ``[0, K)`` (concrete values outside raise).
      mask: optional ``(N, T)`` bool or float weights; None means all ones.

    Returns:
      ``(loss, dscores)``: a scalar and ``(N, T, K)``, of the dtype of ``scores``.
    """
    scores, y, w = _loss_args("temporal_softmax_loss", scores, y, mask)
    return temporal_softmax_loss_unchecked(scores, y, w)


def _loss_args(fn: str, scores: object, y: object, mask: object) -> tuple[Array, Array, Array]:
    (scores,) = float_arrays(fn, scores=scores)
    check_rank(fn, "scores", scores, "N, T, K")
    N, T, K = scores.shape
    y = int_array(fn, "y", y, "N, T", shape=(N, T))
    w = loss_weights(fn, mask, N, T, scores.dtype)  # (N, T)
    check_ids(fn, "y (where mask != 0)", y, K, "scores.shape[-1] = K", where=w)
    return scores, y, w


@jax.jit
def temporal_softmax_loss_unchecked(scores: Array, y: Array, w: Array) -> tuple[Array, Array]:
    N, T, K = scores.shape
    shifted = scores - scores.max(axis=-1, keepdims=True)  # log-sum-exp shift
    logp = shifted - jnp.log(jnp.exp(shifted).sum(axis=-1, keepdims=True))  # log softmax
    onehot = jax.nn.one_hot(y, K, dtype=scores.dtype)  # (N, T, K); zero row if y out of range
    inv_n = jnp.asarray(1 / max(N, 1), scores.dtype)
    loss = -(w * (logp * onehot).sum(axis=-1)).sum() * inv_n  # §6: E
    dscores = (jnp.exp(logp) - onehot) * (w * inv_n)[:, :, None]  # §6: (softmax - onehot) m / N
    # A counted target outside [0, K) (only possible unchecked, under jit) makes the loss and
    # its gradient NaN, as jnp.take_along_axis does on the autodiff path: never a finite
    # wrong number.
    bad = ((y < 0) | (y >= K)) & (w != 0)  # (N, T)
    nan = jnp.asarray(jnp.nan, scores.dtype)
    return jnp.where(bad.any(), nan, loss), jnp.where(bad[:, :, None], nan, dscores)
