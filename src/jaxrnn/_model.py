"""The document's full network: embedding -> L recurrent layers (RNN, LSTM or GRU, optionally
bidirectional) -> temporal affine -> softmax loss.

``loss_and_grads`` is the hand-derived chain (MATH.md §6 -> §4 -> §3/§5 (§9, §10) -> the
embedding's scatter-add); ``loss`` is the same forward pass for ``jax.value_and_grad``,
either through the library's one ``custom_vjp`` (``_layer.run_layer``, hand BPTT) or
through the naive scans of ``_scan.py`` (plain autodiff; the oracle's scans).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from ._cells import kind_named
from ._checks import (
    check_carry_weights,
    check_checkpoint,
    check_dim,
    check_float_dtype,
    check_ids,
    check_lengths,
    check_positive_int,
    check_rank,
    check_truncation,
    float_arrays,
    int_array,
    is_concrete,
    loss_weights,
)
from ._layer import forward_layer, run_layer
from ._lengths import mask as length_mask
from ._scan import scan_layer
from ._segmented import segmented_loss, segmented_loss_and_grads
from ._sharding import align, take_rows
from ._stack import (
    BiRNNParams,
    check_hidden_sizes,
    check_layer,
    check_layers,
    check_states,
    init_stack,
    layer_activations,
    layer_size,
    stack_backward_unchecked,
    stack_forward_unchecked,
    walk,
    zero_states,
)
from ._temporal import (
    _embedding_args,
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss_unchecked,
    word_embedding_backward,
    word_embedding_forward_unchecked,
)

Array = jax.Array


class ModelParams(NamedTuple):
    """All weights of the model, a pytree (``jax.tree.map`` applies an optimizer step)."""

    embed: Array  # (vocab, E)  word embedding
    layers: tuple  # per layer: RNNParams, LSTMParams, GRUParams, or a BiRNNParams of two
    V: Array  # (H_top, K)  hidden-to-output (H_top = 2 H_L when bidirectional)
    c: Array  # (K,)


def init(
    key: Array,
    vocab_size: int,
    hidden_sizes: Sequence[int],
    output_size: int | None = None,
    *,
    embed_size: int | None = None,
    bidirectional: bool = False,
    dtype=jnp.float32,
    cell: str = "rnn",
) -> ModelParams:
    """Initialises :class:`ModelParams`.

    ``embed ~ Normal(0, 1)`` of shape ``(vocab_size, E)`` with ``E = embed_size``
    (default ``hidden_sizes[0]``); the recurrent layers as :func:`jaxrnn.init_rnn_params`
    (or :func:`jaxrnn.init_lstm_params` / :func:`jaxrnn.init_gru_params`, see ``cell``)
    (``Wx ~ N(0, 1/in_l)``, ``Wh`` orthogonal, ``b = 0``); ``V ~ N(0, 1/H_top)``,
    ``c = 0``.

    Args:
      key: a ``jax.random`` key.
      vocab_size: number of input tokens.
      hidden_sizes: ``H_1..H_L`` (L >= 1).
      output_size: K, the number of classes (default ``vocab_size``).
      embed_size: E (default ``hidden_sizes[0]``).
      bidirectional: every layer a :class:`BiRNNParams` (not for :func:`predict_step`).
      cell: ``"rnn"`` (default), ``"lstm"`` or ``"gru"``: the recurrent layers' cell
        (:func:`jaxrnn.init_lstm_params`: forget-gate bias 1; :func:`jaxrnn.init_gru_params`).
      dtype: float32 (default) or float64.
    """
    check_hidden_sizes(hidden_sizes)
    K = vocab_size if output_size is None else output_size
    E = hidden_sizes[0] if embed_size is None else embed_size
    for name, v in (("vocab_size", vocab_size), ("output_size", K), ("embed_size", E)):
        check_positive_int("init", name, v)
    check_float_dtype("init", dtype)
    kind_named(cell, "init")
    hs = tuple(hidden_sizes)
    return _init(key, vocab_size, hs, K, E, bidirectional, jnp.dtype(dtype), cell)


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _init(key, vocab_size, hidden_sizes, K, E, bidirectional, dtype, cell) -> ModelParams:
    ke, kl, kv = jax.random.split(key, 3)
    layers = init_stack(kl, E, hidden_sizes, bidirectional=bidirectional, dtype=dtype, cell=cell)
    H_top = layer_size(layers[-1])
    V = jax.random.normal(kv, (H_top, K), dtype) / jnp.sqrt(jnp.asarray(H_top, dtype))
    return ModelParams(
        jax.random.normal(ke, (vocab_size, E), dtype), layers, V, jnp.zeros((K,), dtype)
    )


def init_state(params: ModelParams, N: int) -> tuple[Array, ...]:
    """Zero initial states, one ``(N, S_l)`` per layer: ``S = H`` (RNN, GRU), ``2H`` for an
    LSTM's ``[h | c]``, doubled when bidirectional.

    The carry of stateful chunked training: pass it as ``h0``, then pass each
    call's returned ``hT`` as the next call's ``h0``.
    """
    return zero_states(params.layers, N)


def check_output_layer(fn: str, params: ModelParams) -> None:
    """``V: (H_top, K)`` and ``c: (K,)`` against the top layer (trace-time shapes)."""
    H_top = layer_size(params.layers[-1])
    V, c = float_arrays(fn, V=params.V, c=params.c)
    check_rank(fn, "V", V, "H_top, K")
    check_dim(fn, "V.shape[0] must equal the top layer's output size", H_top, V.shape[0],
              V=V.shape)  # fmt: skip
    check_dim(fn, "c.shape must be (K,) with K = V.shape[1]", V.shape[1], c.shape[0] if c.ndim
              else -1, V=V.shape, c=c.shape)  # fmt: skip


def _check_batch(fn: str, params: ModelParams, tokens, targets, h0, mask, lengths):
    """Validates a batch (shapes always, token/target/length values when concrete)."""
    tokens, _ = _embedding_args(fn, tokens, params.embed)
    N, T = tokens.shape
    check_layers(fn, params.layers)
    check_output_layer(fn, params)
    targets = int_array(fn, "targets", targets, "N, T", shape=(N, T))
    if lengths is not None:
        lengths = check_lengths(fn, lengths, N, T)
    w = loss_weights(fn, mask, N, T, params.V.dtype)
    if lengths is not None:
        w = w * length_mask(lengths, T).astype(w.dtype)
    if all(is_concrete(a) for a in (mask, lengths, targets)):  # numpy only: nothing staged
        counted = np.ones((N, T), bool) if mask is None else np.asarray(mask) != 0
        if lengths is not None:
            counted &= np.arange(T)[None, :] < np.asarray(lengths)[:, None]
        check_ids(fn, "targets (where counted)", targets, params.V.shape[1], "K", where=counted)
    h0 = zero_states(params.layers, N) if h0 is None else check_states(fn, h0, params.layers, N)
    return tokens, targets, h0, w, lengths


def loss_and_grads(
    params: ModelParams,
    tokens: Array,
    targets: Array,
    *,
    h0: Sequence[Array] | None = None,
    mask: Array | None = None,
    lengths: Array | None = None,
    activations: str | Sequence[str] = "tanh",
    truncation: int | None = None,
    carry_weights: Array | None = None,
    checkpoint: int | str | None = None,
) -> tuple[Array, ModelParams, tuple[Array, ...]]:
    """The loss and its gradients by the hand-derived chain, jit-compiled.

    Forward: embedding -> :func:`stack_forward` (§1) -> ``scores = h V + c`` ->
    ``E = -(1/N) sum_{n,t} w[n,t] log softmax(scores)[y]`` (§6), with
    ``w = mask * (t < lengths)``. Backward, by hand: ``dscores`` (§6) ->
    ``dh = dscores V^T``, ``dV``, ``dc`` (§6) -> BPTT in each layer, ``dx`` of
    layer l+1 as ``dh`` of layer l (§3, §4, §5) -> scatter-add into ``embed``.

    Args:
      params: :class:`ModelParams`.
      tokens: ``(N, T)`` input token ids in ``[0, vocab)``.
      targets: ``(N, T)`` target ids in ``[0, K)`` (ignored where the weight is 0).
      h0: one initial state per layer (default zeros, see :func:`init_state`).
      mask: optional ``(N, T)`` loss weights (bool or float).
      lengths: optional ``(N,)`` valid lengths in ``[0, T]``; padded steps are
        frozen in every layer and excluded from the loss.
      activations: one name for all layers or one per layer (RNN layers; a gated layer
        keeps ``"tanh"``).
      truncation: optional truncated-BPTT chunk length k (gradient stops at t = k, 2k, ...;
        a bidirectional layer's backward RNN counts its chunks in reversed time).
      carry_weights: optional ``(T,)`` randomized-truncation factors ``ξ_t`` on the
        gradient from step t to t-1 in every layer (:func:`jaxrnn.randomized_truncation`).
      checkpoint: optional memory-bounded BPTT of the whole model (MATH.md §8): a
        segment length k or ``"sqrt"`` (``ceil(sqrt(T))``). Only every layer's state
        at segment starts is kept; each segment's embedding, layers, scores and
        loss are recomputed going back, and the error of each layer's state is
        carried across segment boundaries. Same loss and gradients (to rounding);
        peak memory ``O(N (L H + K) k + N L H T / k)``. Unidirectional models only
        (a bidirectional layer reads the whole sequence backwards: ``ValueError``).

    Token, target and length values are checked when concrete (``ValueError``), also
    when captured as constants by an outer ``jax.jit``. Traced values are not: an
    out-of-range token is clamped by JAX's indexing, an out-of-range counted target
    makes the loss and gradients NaN (here and in :func:`loss` alike), lengths act as
    clipped to ``[0, T]``; :func:`check_ids_in_range` and :func:`jaxrnn.check_lengths`
    check traced values under ``checkify``.

    Returns:
      ``(loss, grads, hT)``: scalar, :class:`ModelParams` of gradients, and each
      layer's final state (its last valid state), to pass as the next ``h0``.
    """
    args = _prepare("loss_and_grads", params, tokens, targets, h0, mask, lengths, carry_weights,
                    activations, truncation, checkpoint)  # fmt: skip
    if checkpoint is not None:
        return _segmented_loss_and_grads(*args)
    return _loss_and_grads(*args[:-1])


def _prepare(fn, params, tokens, targets, h0, mask, lengths, xi, activations, truncation, ck):
    """The checks of :func:`loss_and_grads` and :func:`loss`, once, before ``jit``."""
    truncation = check_truncation(fn, truncation)
    tokens, targets, h0, w, lengths = _check_batch(fn, params, tokens, targets, h0, mask, lengths)
    acts = layer_activations(fn, activations, params.layers)
    ck = check_checkpoint(fn, ck, tokens)
    if ck is not None and any(isinstance(p, BiRNNParams) for p in params.layers):
        raise ValueError(
            f"{fn}: checkpoint segments the model in time, which a bidirectional layer "
            "(reading the whole sequence backwards) cannot be; use checkpoint=None"
        )
    if xi is not None:
        xi = check_carry_weights(fn, xi, tokens.shape[1], params.V.dtype)
    return params, tokens, targets, h0, w, lengths, xi, acts, truncation, ck


@partial(jax.jit, static_argnums=(7, 8, 9))
def _segmented_loss_and_grads(params, tokens, targets, h0, w, lengths, xi, acts, truncation, k):
    loss, grads, hT, _ = segmented_loss_and_grads(
        params, tokens, targets, h0, w, lengths, xi, acts, truncation, k
    )
    return loss, grads, hT


@partial(jax.jit, static_argnums=(7, 8))
def _loss_and_grads(params, tokens, targets, h0, w, lengths, carry_weights, acts, truncation):
    x, ec = word_embedding_forward_unchecked(tokens, params.embed)  # (N, T, E)
    h, hT, sc = stack_forward_unchecked(
        x, h0, params.layers, lengths, carry_weights, acts, truncation
    )
    scores, ac = temporal_affine_forward(h, params.V, params.c)  # §6: (N, T, K)
    loss, dscores = temporal_softmax_loss_unchecked(scores, targets, w)  # §6
    dh, dV, dc = temporal_affine_backward(dscores, ac)  # §6: dh_t = dscores_t V^T
    dx, _, dlayers = stack_backward_unchecked(dh, sc)  # §4, §3, §5
    dembed = word_embedding_backward(dx, ec)  # scatter-add
    return loss, ModelParams(dembed, dlayers, dV, dc), hT


def loss(
    params: ModelParams,
    tokens: Array,
    targets: Array,
    *,
    h0: Sequence[Array] | None = None,
    mask: Array | None = None,
    lengths: Array | None = None,
    activations: str | Sequence[str] = "tanh",
    truncation: int | None = None,
    carry_weights: Array | None = None,
    checkpoint: int | str | None = None,
    grad: str = "hand",
) -> tuple[Array, tuple[Array, ...]]:
    """The model's loss as a differentiable function: ``jax.value_and_grad(loss, has_aux=True)``.

    The same forward pass and normalisation as :func:`loss_and_grads`, written
    with ``jnp`` ops so JAX differentiates it. ``grad`` picks the sequence layer:

    - ``"hand"``: each layer through the library's one ``custom_vjp`` (the one behind
      :func:`jaxrnn.rnn`, :func:`jaxrnn.lstm`, :func:`jaxrnn.gru`), which runs the
      hand-derived BPTT (the embedding, affine and loss are differentiated by autodiff);
    - ``"autodiff"``: the naive scans of ``_scan.py`` (``scan_layer``, the oracle's too), plain
      reverse-mode autodiff (truncation as ``lax.stop_gradient`` on the carried state at
      t = k, 2k, ...).

    With ``checkpoint`` (``grad="hand"`` only) the whole model is segmented in time
    as in :func:`loss_and_grads`, behind a ``custom_vjp`` in ``params`` and ``h0``.

    Args:
      As :func:`loss_and_grads`, plus ``grad``.

    Returns:
      ``(loss, hT)``: the scalar loss and each layer's final state (auxiliary output).
    """
    fn = "loss"
    if grad not in ("hand", "autodiff"):
        raise ValueError(f"{fn}: grad must be 'hand' or 'autodiff', got {grad!r}")
    if checkpoint is not None and grad != "hand":
        raise ValueError(f"{fn}: checkpoint needs grad='hand', got grad={grad!r}")
    args = _prepare(fn, params, tokens, targets, h0, mask, lengths, carry_weights,
                    activations, truncation, checkpoint)  # fmt: skip
    if checkpoint is not None:
        params, tokens, targets, h0, w, lengths, xi, acts, truncation, k = args
        return _segmented_loss(params, h0, tokens, targets, w, lengths, xi, acts, truncation, k)
    return _loss(*args[:-1], grad)


@partial(jax.jit, static_argnums=(7, 8, 9))
def _segmented_loss(params, h0, tokens, targets, w, lengths, xi, acts, truncation, k):
    # cast: jax's custom_vjp, applied through functools.partial, loses the return type
    loss, hT = cast(
        "tuple[Array, tuple[Array, ...]]",
        segmented_loss(params, h0, tokens, targets, w, lengths, xi, acts, truncation, k),
    )
    return loss, tuple(jax.lax.stop_gradient(s) for s in hT)


def _sequence_fn(grad: str, acts, lengths, truncation, xi):
    """One layer direction for the walk, ``(h, final state, None)``: the library's
    ``custom_vjp`` (hand BPTT) or the naive scan of ``_scan.py`` (autodiff)."""

    def hand(x, s, p, i):
        kind, x, s, p = check_layer("loss", i, x, s, p, acts[i])
        out = run_layer(kind.name, acts[i], truncation, None, x, s, p, lengths, xi)
        h, sT = cast("tuple[Array, Any]", out)  # custom_vjp via partial loses the type
        return h, kind.join(sT), None

    def autodiff(x, s, p, i):
        kind, x, s, p = check_layer("loss", i, x, s, p, acts[i])
        kw = dict(lengths=lengths, truncation=truncation, carry_weights=xi)
        h, sT = scan_layer(kind.name, acts[i], x, s, p, **kw)
        return h, kind.join(sT), None

    return hand if grad == "hand" else autodiff


@partial(jax.jit, static_argnums=(7, 8, 9))
def _loss(params, tokens, targets, h0, w, lengths, xi, acts, truncation, grad):
    run = _sequence_fn(grad, acts, lengths, truncation, xi)
    h0 = align(tokens, tuple(h0))[1]  # sharded tokens: the states along their batch axis
    h, hT, _ = walk(take_rows(params.embed, tokens), h0, params.layers, run, lengths)  # §1, §4
    N, T, Hs = h.shape
    K = params.V.shape[1]
    scores = (h.reshape(N * T, Hs) @ params.V + params.c[None]).reshape(N, T, K)
    logp = jax.nn.log_softmax(scores, axis=-1)
    targets = jnp.where(w != 0, targets, 0)  # masked-out targets may be anything (e.g. -100)
    picked = jnp.take_along_axis(logp, targets[:, :, None], axis=-1)[:, :, 0]  # (N, T)
    inv_n = jnp.asarray(1 / max(N, 1), logp.dtype)
    return -(w * picked).sum() * inv_n, tuple(jax.lax.stop_gradient(s) for s in hT)


def predict_step(
    params: ModelParams,
    tokens: Array,
    state: Sequence[Array],
    *,
    activations: str | Sequence[str] = "tanh",
) -> tuple[Array, tuple[Array, ...]]:
    """One step of the model, for sampling: ``scores_t`` from ``tokens_t`` and the state.

    Args:
      params: unidirectional :class:`ModelParams`.
      tokens: ``(N,)`` token ids.
      state: one ``(N, S_l)`` state per layer (from :func:`init_state` or ``hT``; an LSTM
        layer's is ``[h | c]``, ``(N, 2 H_l)``).
      activations: one name for all layers or one per layer (RNN layers; a gated layer
        keeps ``"tanh"``).

    Returns:
      ``(scores, new_state)``: ``(N, K)`` unnormalised log-probabilities and the
      new states.
    """
    fn = "predict_step"
    if any(isinstance(p, BiRNNParams) for p in params.layers):
        raise ValueError(f"{fn}: a bidirectional model reads the whole sequence; it cannot step")
    check_layers(fn, params.layers)
    acts = layer_activations(fn, activations, params.layers)
    tok = int_array(fn, "tokens", tokens, "N")
    check_ids(fn, "tokens", tok, params.embed.shape[0], "the vocabulary size")
    state = check_states(fn, state, params.layers, tok.shape[0])
    return _predict_step(params, tok, state, acts)


@partial(jax.jit, static_argnums=(3,))
def _predict_step(params, tokens, state, acts):
    x, new = take_rows(params.embed, tokens)[:, None], []  # (N, 1, E): a one-step sequence
    for i, (p, s, act) in enumerate(zip(params.layers, state, acts, strict=True)):
        kind, x, s, p = check_layer("predict_step", i, x, s, p, act)
        x, s, _ = forward_layer(kind, act, x, s, p)  # §1
        new.append(kind.join(s))
    return x[:, 0] @ params.V + params.c[None], tuple(new)  # §6: (N, K)
