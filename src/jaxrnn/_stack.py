"""Stacked and bidirectional RNNs with the hand-derived backward pass down the layers (MATH.md §4).

Layer l's hidden sequence is layer l+1's input; going back, the ``dx`` that
layer l+1's BPTT returns is layer l's upstream ``dh`` for all t at once. A
bidirectional layer runs a forward RNN and a time-reversed one (each sequence
reversed within its valid length) and concatenates their outputs on the
feature axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._checks import (
    check_activation,
    check_carry_weights,
    check_lengths_eagerly,
    check_positive_int,
    check_rnn_args,
    check_same_shape,
    check_truncation,
)
from ._lengths import last_state, reverse
from ._params import init_params
from ._rnn import backward_from_cache, hidden_states
from ._types import RNNCache, RNNParams

Array = jax.Array


class BiRNNParams(NamedTuple):
    """One bidirectional layer: a forward-in-time RNN and a backward-in-time RNN.

    Both read the same input ``(N, T, D)``; the layer outputs ``(N, T, 2H)``
    ``= [h_fwd | h_bwd]`` and its state is ``(N, 2H)`` laid out the same way.
    """

    fwd: RNNParams  # Wx (D, H), Wh (H, H), b (H,)
    bwd: RNNParams  # Wx (D, H), Wh (H, H), b (H,), run on the time-reversed input


LayerParams = RNNParams | BiRNNParams


@dataclasses.dataclass(frozen=True)
class StackCache:
    """What :func:`stack_backward` needs: one cache per layer and the lengths.

    A unidirectional layer's cache is an :class:`RNNCache`; a bidirectional
    layer's is a pair ``(forward cache, backward cache)``.
    """

    layers: tuple  # tuple[RNNCache | tuple[RNNCache, RNNCache], ...]
    lengths: Array | None  # (N,) or None


jax.tree_util.register_dataclass(StackCache, data_fields=["layers", "lengths"], meta_fields=[])


def layer_size(p: LayerParams) -> int:
    """The output (and state) width of a layer: H, or 2H when bidirectional."""
    if isinstance(p, BiRNNParams):
        return 2 * p.fwd.Wh.shape[0]
    return p.Wh.shape[0]


def init_stack(
    key: Array,
    input_size: int,
    hidden_sizes: Sequence[int],
    *,
    bidirectional: bool = False,
    dtype=jnp.float32,
) -> tuple[LayerParams, ...]:
    """Parameters of an L-layer stack, layer l ``Wx: (in_l, H_l)`` with ``in_1 = input_size``.

    ``in_{l+1} = H_l`` (or ``2 H_l`` when bidirectional). Each RNN as :func:`jaxrnn.init_params`.
    """
    check_hidden_sizes(hidden_sizes)
    check_positive_int("init_stack", "input_size", input_size)
    layers, d = [], input_size
    for H, k in zip(hidden_sizes, jax.random.split(key, len(hidden_sizes)), strict=True):
        if bidirectional:
            kf, kb = jax.random.split(k)
            layers.append(BiRNNParams(init_params(kf, d, H, dtype), init_params(kb, d, H, dtype)))
        else:
            layers.append(init_params(k, d, H, dtype))
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


def layer_activations(activations: str | Sequence[str], L: int) -> tuple[str, ...]:
    """One activation name per layer from a name or a sequence of L names."""
    if isinstance(activations, str):
        activations = (activations,) * L
    if not isinstance(activations, Sequence):
        raise ValueError(f"activations must be one name or one per layer, got {activations!r}")
    if len(activations) != L:
        raise ValueError(
            f"activations must be one name or one per layer: expected {L}, "
            f"got {len(activations)} ({tuple(activations)!r})"
        )
    return tuple(check_activation("activations", a) for a in activations)


def zero_states(layers: Sequence[LayerParams], N: int) -> tuple[Array, ...]:
    """``(N, H_l)`` (``(N, 2 H_l)`` bidirectional) zeros per layer, of the weights' dtype."""
    return tuple(jnp.zeros((N, layer_size(p)), _dtype(p)) for p in layers)


def _dtype(p: LayerParams):
    return (p.fwd if isinstance(p, BiRNNParams) else p).Wh.dtype


def check_states(fn: str, h0: Sequence[Array], layers: Sequence[LayerParams], N: int) -> tuple:
    """Checks one ``(N, H_l)`` state per layer (``(N, 2 H_l)`` bidirectional)."""
    if not isinstance(h0, Sequence):
        raise ValueError(
            f"{fn}: h0 must be a sequence of {len(layers)} states (N, H_l), one per layer, "
            f"got {type(h0).__name__} (model functions take h0=None for zeros)"
        )
    h0 = tuple(h0)
    if len(h0) != len(layers):
        raise ValueError(
            f"{fn}: h0 must hold one state per layer: expected {len(layers)}, got {len(h0)}"
        )
    for i, (h, p) in enumerate(zip(h0, layers, strict=True)):
        want = (N, layer_size(p))
        if tuple(jnp.shape(h)) != want:
            raise ValueError(
                f"{fn}: h0[{i}] must have shape (N, H_{i}) = {want}, got {tuple(jnp.shape(h))}"
            )
    return h0


def walk(
    x: Array, h0: Sequence[Array], layers: Sequence[LayerParams], run, lengths
) -> tuple[Array, tuple[Array, ...], tuple]:
    """The layer walk (MATH.md §1, §4): layer l's output is layer l+1's input.

    ``run(x, h0, p, l) -> (h, extra)`` runs one direction of layer ``l`` on
    ``x: (N, T, D_l)``. A bidirectional layer runs it forward and on the input
    reversed within the lengths, and outputs ``[h_fwd | h_bwd]``. Returns the top
    output, each layer's final state (last valid state) and the extras per layer
    (a pair for a bidirectional layer). Used by :func:`stack_forward` (extras are
    caches) and by the model's differentiable loss (extras are ``None``).
    """
    h, hT, extras = x, [], []
    for i, (p, s) in enumerate(zip(layers, h0, strict=True)):
        if isinstance(p, BiRNNParams):
            H = p.fwd.Wh.shape[0]
            sf, sb = s[:, :H], s[:, H:]
            hf, ef = run(h, sf, p.fwd, i)  # (N, T, H)
            hb, eb = run(reverse(h, lengths), sb, p.bwd, i)  # in reversed time
            hT.append(
                jnp.concatenate([last_state(hf, sf, lengths), last_state(hb, sb, lengths)], -1)
            )
            h = jnp.concatenate([hf, reverse(hb, lengths)], axis=-1)  # (N, T, 2H)
            extras.append((ef, eb))
        else:
            h, e = run(h, s, p, i)
            hT.append(last_state(h, s, lengths))
            extras.append(e)
    return h, tuple(hT), tuple(extras)


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
    """Runs L RNN layers, layer l's hidden sequence being layer l+1's input (MATH.md §1, §4).

    Args:
      x: ``(N, T, D)`` input of the first layer.
      h0: one initial state per layer, ``(N, H_l)`` (``(N, 2 H_l)`` bidirectional).
      layers: :class:`jaxrnn.RNNParams` or :class:`BiRNNParams` per layer.
      activations: one name for all layers or one per layer.
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
    acts = layer_activations(activations, len(layers))
    truncation = check_truncation(fn, truncation)
    h0 = check_states(fn, h0, layers, jnp.shape(x)[0])
    lengths = check_lengths_eagerly(fn, x, lengths)
    return _stack_forward(x, h0, tuple(layers), lengths, carry_weights, acts, truncation)


@partial(jax.jit, static_argnums=(5, 6))
def _stack_forward(x, h0, layers, lengths, carry_weights, acts, truncation):
    return forward_layers(x, h0, layers, lengths, carry_weights, acts, truncation)


def forward_layers(x, h0, layers, lengths, xi, acts, truncation):
    """:func:`stack_forward` inside ``jit``: each layer's arrays checked (trace time only)."""
    if xi is not None:
        xi = check_carry_weights("stack_forward", xi, jnp.shape(x)[1], jnp.result_type(x))

    def run(x, h0, p, i):
        fn = f"stack_forward (layer {i})"
        x, h0, Wx, Wh, b = check_rnn_args(fn, x, h0, *p, x_layout="N, T, D", h_name="h0")
        h = hidden_states(x, h0, Wx, Wh, b, acts[i], lengths)  # §1
        return h, RNNCache(x, h0, Wx, Wh, h, acts[i], lengths, truncation, xi)

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
    top_h = top.h if isinstance(top, RNNCache) else jnp.concatenate([top[0].h, top[1].h], -1)
    dh = check_same_shape("stack_backward", "dh", dh, "the top layer's output", top_h)
    return backward_layers(dh, cache)


def backward_layers(dh: Array, cache: StackCache, dhT: Sequence[Array] | None = None) -> tuple:
    """:func:`stack_backward` on checked arguments; ``dhT`` (optional, unidirectional
    layers): the error arriving in each layer's final state from a later time segment."""
    lengths = cache.lengths
    dh0s, dlayers = [], []
    L = len(cache.layers)
    for i, c in zip(reversed(range(L)), reversed(cache.layers), strict=True):
        if isinstance(c, RNNCache):
            dnext = None if dhT is None else dhT[i]
            dh, dh0, *g = backward_from_cache(dh, c, dnext)  # §4: dx of this layer -> dh below
            dh0s.append(dh0)
            dlayers.append(RNNParams(*g))
        else:
            cf, cb = c
            H = cf.h0.shape[-1]
            dxf, dh0f, *gf = backward_from_cache(dh[..., :H], cf)
            dxb, dh0b, *gb = backward_from_cache(reverse(dh[..., H:], lengths), cb)
            dh = dxf + reverse(dxb, lengths)  # §4: both directions read x
            dh0s.append(jnp.concatenate([dh0f, dh0b], axis=-1))
            dlayers.append(BiRNNParams(RNNParams(*gf), RNNParams(*gb)))
    return dh, tuple(reversed(dh0s)), tuple(reversed(dlayers))
