"""The whole model segmented in time: exact gradients in memory independent of T (MATH.md §8).

Checkpointing one layer does not bound a model's memory: each layer's input is
the layer below's output and the scores are ``(N, T, K)``. Here the whole
unidirectional model is cut into time segments of k steps. A first sweep keeps
only every layer's state entering each segment. Going back, each segment
recomputes embedding -> layers -> scores -> loss from its stored states, then
backpropagates through that segment, carrying the error of every layer's state
(δ, §3) into the segment before. Each segment is an ordinary batch for the same
layer walk (``_stack.stack_forward_unchecked`` / ``stack_backward_unchecked``) and the same engine
loops, with the options restated in its own time (``_recurrence.window_options``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from . import _sharding as sh
from . import _temporal as tl
from ._recurrence import Options, loop_segments, time_slice, window_options
from ._stack import stack_backward_unchecked, stack_forward_unchecked

Array = jax.Array


def _segment_forward(params, states, batch, t0, size, acts):
    """Embedding and layers over steps ``[t0, t0 + size)`` from ``states``."""
    tokens, targets, w, opts = batch
    wopts = window_options(opts, t0, size, params.V.dtype)
    x, ec = tl.word_embedding_forward_unchecked(
        time_slice(tokens, t0, size), params.embed
    )  # (N, k, E)
    layers = params.layers
    h, hT, sc = stack_forward_unchecked(
        x, states, layers, wopts.lengths, wopts.carry_weights, acts, None
    )
    return h, hT, sc, ec, time_slice(targets, t0, size), time_slice(w, t0, size)


def _segment_grads(params, states, dstates, batch, t0, size, acts):
    """One segment's loss and gradients, and the error entering its initial states."""
    h, _, sc, ec, targets, w = _segment_forward(params, states, batch, t0, size, acts)
    scores, ac = tl.temporal_affine_forward(h, params.V, params.c)  # §6
    loss, dscores = tl.temporal_softmax_loss_unchecked(
        scores, targets, w
    )  # §6, this segment's terms
    dh, dV, dc = tl.temporal_affine_backward(dscores, ac)  # §6
    dx, dstates, dlayers = stack_backward_unchecked(
        dh, sc, dstates
    )  # §4, §3; §8: δ^l from t0 + size
    grads = params._replace(embed=tl.word_embedding_backward(dx, ec), layers=dlayers, V=dV, c=dc)
    return loss, grads, dstates


def segmented_loss_and_grads(params, tokens, targets, h0, w, lengths, xi, acts, truncation, k):
    """``(loss, grads, hT, dh0)`` of the model, segment by segment (k steps each).

    Equal to the full-store chain (``_model._loss_and_grads``) to rounding; the
    only arrays of length T kept across segments are the inputs and the
    ``ceil(T/k)`` segment-start states of every layer.
    """
    T = tokens.shape[1]
    tokens, h0, params, targets, w, lengths, xi = sh.align(
        tokens, tuple(h0), params, targets, w, lengths, xi
    )  # sharded inputs: the carries below typed alike
    batch = (tokens, targets, w, Options(lengths, truncation, xi))
    n_seg = -(-T // k)

    def forward(i, t0, size, carry):
        states, bounds = carry
        bounds = tuple(B.at[i].set(s) for B, s in zip(bounds, states, strict=True))  # §8
        return _segment_forward(params, states, batch, t0, size, acts)[1], bounds

    bounds = tuple(sh.zeros(s, (n_seg, *s.shape)) for s in h0)
    hT, bounds = loop_segments(T, k, forward, (tuple(h0), bounds))

    def backward(i, t0, size, carry):
        dstates, grads, loss = carry
        states = tuple(B[i] for B in bounds)
        seg_loss, g, dstates = _segment_grads(params, states, dstates, batch, t0, size, acts)
        return dstates, jax.tree_util.tree_map(jnp.add, grads, g), loss + seg_loss

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = (tuple(jnp.zeros_like(s) for s in h0), zeros, sh.zeros(params.V, ()))
    dh0, grads, loss = loop_segments(T, k, backward, carry, reverse=True)
    return loss, grads, hT, dh0


def segmented_loss(
    params, h0, tokens, targets, w, lengths, xi, acts, truncation, k
) -> tuple[Array, tuple[Array, ...]]:
    """The loss of :func:`segmented_loss_and_grads` as a function ``jax.grad`` can
    differentiate (in ``params`` and ``h0``): ``(loss, hT)``.

    Sharded inputs are typed alike before the ``custom_vjp`` (as ``_layer.run_layer``
    does), so under ``shard_map`` the weights' gradients are summed over the batch."""
    tokens, h0, params = sh.align(tokens, tuple(h0), params, targets, w, lengths, xi)[:3]
    return _segmented_loss(params, h0, tokens, targets, w, lengths, xi, acts, truncation, k)


@partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _segmented_loss(params, h0, tokens, targets, w, lengths, xi, acts, truncation, k):
    loss, _, hT, _ = segmented_loss_and_grads(
        params, tokens, targets, h0, w, lengths, xi, acts, truncation, k
    )
    return loss, hT


def _segmented_fwd(params, h0, tokens, targets, w, lengths, xi, acts, truncation, k):
    loss, grads, hT, dh0 = segmented_loss_and_grads(
        params, tokens, targets, h0, w, lengths, xi, acts, truncation, k
    )
    return (loss, hT), (grads, dh0)


def _segmented_bwd(acts, truncation, k, res, cts):
    grads, dh0 = res
    g = cts[0]  # hT is an auxiliary output: no gradient flows through it (stop_gradient)
    scale = partial(jax.tree_util.tree_map, lambda a: a * g)
    return scale(grads), scale(dh0), None, None, None, None, None


_segmented_loss.defvjp(_segmented_fwd, _segmented_bwd)
