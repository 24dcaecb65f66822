"""Stacked and bidirectional layers with the hand-derived backward pass down the layers (§4).

Layer l's hidden sequence is layer l+1's input; going back, the ``dx`` that
layer l+1's BPTT returns is layer l's upstream ``dh`` for all t at once. A
bidirectional layer runs a forward layer and a time-reversed one (each sequence
reversed within its valid length) and concatenates their outputs on the
feature axis. A layer is an RNN, LSTM or GRU: the cell is inferred from the
parameters' type (``_layer.kind_of``); a layer's state is one ``(N, S)`` array
(``[h | c]`` for the LSTM).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._cells import kind_named
from ._cells import kind_of as kind_of
from ._checks import (
    check_activation,
    check_carry_weights,
    check_lengths_eagerly,
    check_positive_int,
    check_same_shape,
    check_truncation,
)
from ._layer import (
    LayerCache,
    backward_layer,
    check_activation_for,
    check_layer_args,
    forward_layer,
    gru,
    lstm,
    rnn,
    state_parts,
)
from ._lengths import reverse, reverse_within_lengths

Array = jax.Array


class BiRNNParams(NamedTuple):
    """One bidirectional layer: a forward-in-time layer and a backward-in-time one.

    Both read the same input ``(N, T, D)`` and are of one cell (RNN, LSTM or GRU
    parameters); the layer outputs ``(N, T, 2H)`` ``= [h_fwd | h_bwd]`` and its
    state is ``[state_fwd | state_bwd]``, ``(N, 2S)``.
    """

    fwd: Any  # RNNParams | LSTMParams | GRUParams
    bwd: Any  # the same type, run on the time-reversed input


LayerParams = Any  # RNNParams, LSTMParams, GRUParams, or a BiRNNParams of two


@dataclasses.dataclass(frozen=True)
class StackCache:
    """What :func:`stack_backward` needs: one cache per layer and the lengths.

    A unidirectional layer's cache is a ``LayerCache``; a bidirectional layer's is
    a pair ``(forward cache, backward cache)``.
    """

    layers: tuple  # tuple[LayerCache | tuple[LayerCache, LayerCache], ...]
    lengths: Array | None  # (N,) or None


jax.tree_util.register_dataclass(StackCache, data_fields=["layers", "lengths"], meta_fields=[])


def layer_size(p: LayerParams) -> int:
    """The output width of a layer: H (``Wh.shape[0]`` for every cell), 2H bidirectional."""
    if isinstance(p, BiRNNParams):
        return 2 * p.fwd.Wh.shape[0]
    return p.Wh.shape[0]


def state_size(p: LayerParams) -> int:
    """The width S of a layer's state array: H (RNN, GRU) or 2H (LSTM ``[h | c]``), twice
    that when bidirectional."""
    if isinstance(p, BiRNNParams):
        return 2 * kind_of(p.fwd).state_size(p.fwd)
    return kind_of(p).state_size(p)


def init_stack(
    key: Array,
    input_size: int,
    hidden_sizes: Sequence[int],
    *,
    bidirectional: bool = False,
    dtype=jnp.float32,
    cell: str = "rnn",
) -> tuple[LayerParams, ...]:
    """Parameters of an L-layer stack, layer l ``Wx: (in_l, G_l)`` with ``in_1 = input_size``.

    ``in_{l+1} = H_l`` (or ``2 H_l`` when bidirectional). ``cell``: ``"rnn"`` (each
    layer as :func:`jaxrnn.init_rnn_params`), ``"lstm"`` (:func:`jaxrnn.init_lstm_params`)
    or ``"gru"`` (:func:`jaxrnn.init_gru_params`).
    """
    check_hidden_sizes(hidden_sizes)
    check_positive_int("init_stack", "input_size", input_size)
    init = kind_named(cell, "init_stack").init
    layers, d = [], input_size
    for H, k in zip(hidden_sizes, jax.random.split(key, len(hidden_sizes)), strict=True):
        if bidirectional:
            kf, kb = jax.random.split(k)
            layers.append(BiRNNParams(init(kf, d, H, dtype), init(kb, d, H, dtype)))
        else:
            layers.append(init(k, d, H, dtype))
        d = layer_size(layers[-1])
    return tuple(layers)


def check_hidden_sizes(hidden_sizes: Sequence[int]) -> None:
    """Checks a non-empty sequence of positive ints."""
    if not isinstance(hidden_sizes, Sequence) or isinstance(hidden_sizes, str) or not hidden_sizes:
        raise ValueError(
            f"init: hidden_sizes must be a non-empty sequence of ints, got {hidden_sizes!r}"
        )
    for i, H in enumerate(hidden_sizes):
        check_positive_int("init", f"hidden_sizes[{i}]", H)


def layer_activations(
    fn: str, activations: str | Sequence[str], layers: Sequence[LayerParams]
) -> tuple[str, ...]:
    """One checked activation name per layer from a name or a sequence of L names (a
    gated layer's must be ``"tanh"``)."""
    L = len(layers)
    if isinstance(activations, str):
        activations = (activations,) * L
    if not isinstance(activations, Sequence):
        raise ValueError(f"activations must be one name or one per layer, got {activations!r}")
    if len(activations) != L:
        raise ValueError(
            f"activations must be one name or one per layer: expected {L}, "
            f"got {len(activations)} ({tuple(activations)!r})"
        )
    acts = tuple(check_activation("activations", a) for a in activations)
    for i, (p, act) in enumerate(zip(layers, acts, strict=True)):
        kind = kind_of(p.fwd if isinstance(p, BiRNNParams) else p)
        check_activation_for(f"{fn} (layer {i})", kind, act)
    return acts


def zero_states(layers: Sequence[LayerParams], N: int) -> tuple[Array, ...]:
    """``(N, S_l)`` zeros per layer (see :func:`state_size`), of the weights' dtype."""
    return tuple(jnp.zeros((N, state_size(p)), _dtype(p)) for p in layers)


def _dtype(p: LayerParams):
    return (p.fwd if isinstance(p, BiRNNParams) else p).Wh.dtype


def _check_bidirectional(fn: str, i: int, p: LayerParams) -> None:
    """A bidirectional layer's two directions: one cell type, one hidden size."""
    if not isinstance(p, BiRNNParams):
        return
    f, b = p.fwd, p.bwd
    if type(f) is not type(b) or f.Wh.shape != b.Wh.shape:
        raise ValueError(
            f"{fn}: layers[{i}] is bidirectional, so fwd and bwd must be the same cell with "
            f"the same sizes, got {type(f).__name__} Wh {tuple(f.Wh.shape)} and "
            f"{type(b).__name__} Wh {tuple(b.Wh.shape)}"
        )


def check_layers(fn: str, layers: Sequence[LayerParams]) -> None:
    """Every layer is a registered cell's params, or a BiRNNParams of two of one kind."""
    for i, p in enumerate(layers):
        kind_of(p.fwd if isinstance(p, BiRNNParams) else p)  # TypeError naming the type
        _check_bidirectional(fn, i, p)


def check_states(fn: str, h0: Sequence[Array], layers: Sequence[LayerParams], N: int) -> tuple:
    """Checks one ``(N, S_l)`` state per layer (:func:`state_size`: H, 2H for an LSTM's
    ``[h | c]``, doubled when bidirectional)."""
    if not isinstance(h0, Sequence):
        raise ValueError(
            f"{fn}: h0 must be a sequence of {len(layers)} states (N, H_l), one per layer, "
            f"got {type(h0).__name__} (model functions take h0=None for zeros)"
        )
    h0 = tuple(h0)
    check_layers(fn, layers)
    if len(h0) != len(layers):
        raise ValueError(
            f"{fn}: h0 must hold one state per layer: expected {len(layers)}, got {len(h0)}"
        )
    for i, (h, p) in enumerate(zip(h0, layers, strict=True)):
        want = (N, state_size(p))
        if tuple(jnp.shape(h)) != want:
            lstm = kind_of(p.fwd if isinstance(p, BiRNNParams) else p).name == "lstm"
            raise ValueError(
                f"{fn}: h0[{i}] must have shape (N, H_{i}) = {want}"
                f"{' (an LSTM layer carries [h | c])' if lstm else ''}, got {tuple(jnp.shape(h))}"
            )
    for i, (h, p) in enumerate(zip(h0, layers, strict=True)):  # shapes first, then dtypes
        if jnp.result_type(h) != _dtype(p):
            raise TypeError(
                f"{fn}: h0[{i}] must have the weights' dtype {_dtype(p)}, got {jnp.result_type(h)}"
            )
    return h0


def check_layer(fn: str, i: int, x, s, p, act: str):
    """Trace-time checks of layer ``i`` (shapes, dtypes, activation) whose state is one
    ``(N, S)`` array: ``(kind, x, state pytree, p)``."""
    kind = kind_of(p)
    where = f"{fn} (layer {i})"
    check_activation_for(where, kind, act)  # checked before jit too (layer_activations)
    parts = state_parts(where, kind, kind.split(s))
    x, state, p, _, _ = check_layer_args(where, kind, x, parts, p)
    return kind, x, state, p


def walk(
    x: Array, h0: Sequence[Array], layers: Sequence[LayerParams], run, lengths
) -> tuple[Array, tuple[Array, ...], tuple]:
    """The layer walk (MATH.md §1, §4): layer l's output is layer l+1's input.

    ``run(x, s, p, l) -> (h, final state, extra)`` runs one direction of layer ``l``
    on ``x: (N, T, D_l)`` from state ``s: (N, S)``. A bidirectional layer runs it
    forward and on the input reversed within the lengths, and outputs
    ``[h_fwd | h_bwd]``. Returns the top output, each layer's final state (its
    state after the last valid step) and the extras per layer (a pair for a
    bidirectional layer). Used by :func:`stack_forward` (extras are caches) and by
    the model's differentiable loss.
    """
    h, hT, extras = x, [], []
    for i, (p, s) in enumerate(zip(layers, h0, strict=True)):
        if isinstance(p, BiRNNParams):
            S = state_size(p) // 2
            hf, sf, ef = run(h, s[:, :S], p.fwd, i)  # (N, T, H)
            hb, sb, eb = run(reverse(h, lengths), s[:, S:], p.bwd, i)  # in reversed time
            hT.append(jnp.concatenate([sf, sb], axis=-1))
            h = jnp.concatenate([hf, reverse(hb, lengths)], axis=-1)  # (N, T, 2H)
            extras.append((ef, eb))
        else:
            h, sT, e = run(h, s, p, i)
            hT.append(sT)
            extras.append(e)
    return h, tuple(hT), tuple(extras)


def structured_layer(x: Array, state0: Any, p: LayerParams, lengths, options: dict):
    """One layer of the structured form (:func:`jaxrnn.rnn` / ``lstm`` / ``gru``), one or two
    directions: ``(h, state_T)``; the framework layers (``jaxrnn.nnx``, ``jaxrnn.eqx``)
    stack these.

    ``p``: a cell's params (``state0``: the cell's pytree) or a :class:`BiRNNParams`
    (``state0``: a ``(fwd, bwd)`` pair); ``h: (N, T, H)``, or ``(N, T, 2H) = [h_fwd |
    h_bwd]`` with the backward direction run on ``x`` reversed within the lengths (§4, as
    :func:`walk`). ``options``: the structured functions' keywords (``return_state=True``).
    """
    run = {"rnn": rnn, "lstm": lstm, "gru": gru}
    if not isinstance(p, BiRNNParams):
        return run[kind_of(p).name](x, state0, *p, lengths=lengths, **options)
    f = run[kind_of(p.fwd).name]
    hf, sf = f(x, state0[0], *p.fwd, lengths=lengths, **options)  # checks the lengths first
    xb = reverse_within_lengths(x, lengths)
    hb, sb = f(xb, state0[1], *p.bwd, lengths=lengths, **options)
    return jnp.concatenate([hf, reverse_within_lengths(hb, lengths)], axis=-1), (sf, sb)


def stack_forward(
    x: Array,
    h0: Sequence[Array],
    layers: Sequence[LayerParams],
    *,
    activations: str | Sequence[str] = "tanh",
    lengths: Array | None = None,
    truncation: int | None = None,
    carry_weights: Array | None = None,
) -> tuple[Array, tuple[Array, ...], StackCache]:
    """Runs L recurrent layers, layer l's hidden sequence being layer l+1's input (§1, §4).

    Args:
      x: ``(N, T, D)`` input of the first layer.
      h0: one initial state per layer, ``(N, S_l)``: ``H_l`` for an RNN or GRU layer,
        ``2 H_l`` for an LSTM layer's ``[h | c]``; doubled when bidirectional.
      layers: :class:`jaxrnn.RNNParams`, :class:`jaxrnn.LSTMParams`,
        :class:`jaxrnn.GRUParams`, or a :class:`BiRNNParams` of two of one kind, per
        layer (the cell is inferred from the type).
      activations: one name for all layers or one per layer (RNN layers only: a gated
        layer must keep the default ``"tanh"``).
      lengths: optional ``(N,)`` valid lengths, as in :func:`jaxrnn.rnn_forward`.
      truncation: optional truncated-BPTT chunk length, applied in every layer
        (a bidirectional layer's backward RNN counts its chunks in reversed time).
      carry_weights: optional ``(T,)`` randomized-truncation factors (see
        :func:`jaxrnn.randomized_truncation`), used by every layer and direction
        (the backward RNN indexes them by its own, reversed, step count).

    Returns:
      ``(h, hT, cache)``: the top layer's ``(N, T, H_L)`` output, the tuple of each
      layer's final state (each sequence's last valid state) and a :class:`StackCache`.
    """
    fn = "stack_forward"
    check_layers(fn, layers)
    acts = layer_activations(fn, activations, layers)
    truncation = check_truncation(fn, truncation)
    h0 = check_states(fn, h0, layers, jnp.shape(x)[0])
    lengths = check_lengths_eagerly(fn, x, lengths)
    if carry_weights is not None and jnp.ndim(x) == 3:  # else the shape check of x reports it
        carry_weights = check_carry_weights(fn, carry_weights, jnp.shape(x)[1], jnp.result_type(x))
    return _stack_forward(x, h0, tuple(layers), lengths, carry_weights, acts, truncation)


@partial(jax.jit, static_argnums=(5, 6))
def _stack_forward(x, h0, layers, lengths, carry_weights, acts, truncation):
    return stack_forward_unchecked(x, h0, layers, lengths, carry_weights, acts, truncation)


def stack_forward_unchecked(x, h0, layers, lengths, xi, acts, truncation):
    """:func:`stack_forward` inside ``jit`` (``xi`` already checked by the caller); each
    layer's arrays checked at trace time."""

    def run(x, s, p, i):
        kind, x, s, p = check_layer("stack_forward", i, x, s, p, acts[i])
        h, sT, cache = forward_layer(kind, acts[i], x, s, p, lengths, xi, truncation)  # §1
        return h, kind.join(sT), cache

    h, hT, caches = walk(x, h0, layers, run, lengths)
    return h, hT, StackCache(caches, lengths)


@jax.jit
def stack_backward(
    dh: Array, cache: StackCache
) -> tuple[Array, tuple[Array, ...], tuple[LayerParams, ...]]:
    """Hand-derived backward pass of :func:`stack_forward`: BPTT in each layer, top to bottom.

    MATH.md §4: ``delta^{l-1} = (U^l)^T delta^l * f'^{l-1}``. In code, layer l's
    :func:`jaxrnn.rnn_backward` (§3, §5) returns ``dx``, which is the upstream
    ``dh`` of layer l-1 for every t; layer l-1's backward then applies its own f'.
    A bidirectional layer splits ``dh = [dh_fwd | dh_bwd]``, reverses ``dh_bwd``
    within the lengths (the reversal is its own transpose), runs both BPTTs and
    sums ``dx = dx_fwd + reverse(dx_bwd)``.

    Args:
      dh: ``(N, T, H_L)`` upstream gradient of the top layer's output.
      cache: the :class:`StackCache` from :func:`stack_forward`.

    Returns:
      ``(dx, dh0, dlayers)``: ``(N, T, D)``, one ``dh0`` per layer, and per-layer
      gradients with the structure of ``layers``.
    """
    top = cache.layers[-1]
    N, T = (top if isinstance(top, LayerCache) else top[0]).x.shape[:2]
    H = sum(c.params.Wh.shape[0] for c in (top if isinstance(top, tuple) else (top,)))
    ref = jax.ShapeDtypeStruct((N, T, H), (top if isinstance(top, LayerCache) else top[0]).x.dtype)
    dh = check_same_shape("stack_backward", "dh", dh, "the top layer's output", ref)
    return stack_backward_unchecked(dh, cache)


def stack_backward_unchecked(
    dh: Array, cache: StackCache, dhT: Sequence[Array] | None = None
) -> tuple:
    """:func:`stack_backward` on checked arguments; ``dhT`` (optional, unidirectional
    layers): the error arriving in each layer's final state from a later time segment."""
    lengths = cache.lengths
    dh0s, dlayers = [], []
    L = len(cache.layers)
    for i, c in zip(reversed(range(L)), reversed(cache.layers), strict=True):
        if isinstance(c, LayerCache):
            kind = kind_named(c.kind)
            dnext = None if dhT is None else kind.split(dhT[i])
            dh, dh0, g = backward_layer(dh, c, dnext)  # §4: dx of this layer -> dh below
            dh0s.append(kind.join(dh0))
            dlayers.append(g)
        else:
            cf, cb = c
            kind, H = kind_named(cf.kind), cf.params.Wh.shape[0]
            dxf, dh0f, gf = backward_layer(dh[..., :H], cf)
            dxb, dh0b, gb = backward_layer(reverse(dh[..., H:], lengths), cb)
            dh = dxf + reverse(dxb, lengths)  # §4: both directions read x
            dh0s.append(jnp.concatenate([kind.join(dh0f), kind.join(dh0b)], axis=-1))
            dlayers.append(BiRNNParams(gf, gb))
    return dh, tuple(reversed(dh0s)), tuple(reversed(dlayers))
