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
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._bptt import rnn_backward
from ._lengths import final_state, reverse_within_lengths
from ._params import init_params
from ._scan import rnn_forward
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
    if isinstance(hidden_sizes, int) or not len(hidden_sizes):
        raise ValueError(
            f"init: hidden_sizes must be a non-empty sequence of ints, got {hidden_sizes!r}"
        )
    for i, H in enumerate(hidden_sizes):
        if not isinstance(H, int) or isinstance(H, bool) or H < 1:
            raise ValueError(f"init: hidden_sizes[{i}] must be a positive int, got {H!r}")


def layer_activations(activations: str | Sequence[str], L: int) -> tuple[str, ...]:
    """One activation name per layer from a name or a sequence of L names."""
    acts = (activations,) * L if isinstance(activations, str) else tuple(activations)
    if len(acts) != L:
        raise ValueError(
            f"activations must be one name or one per layer: expected {L}, "
            f"got {len(acts)} ({acts!r})"
        )
    for a in acts:
        get_activation(a)
    return acts


def zero_states(layers: Sequence[LayerParams], N: int) -> tuple[Array, ...]:
    """``(N, H_l)`` (``(N, 2 H_l)`` bidirectional) zeros per layer, of the weights' dtype."""
    return tuple(jnp.zeros((N, layer_size(p)), _dtype(p)) for p in layers)


def _dtype(p: LayerParams):
    return (p.fwd if isinstance(p, BiRNNParams) else p).Wh.dtype


def check_states(fn: str, h0: Sequence[Array], layers: Sequence[LayerParams], N: int) -> tuple:
    """Checks one ``(N, H_l)`` state per layer (``(N, 2 H_l)`` bidirectional)."""
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
    acts = layer_activations(activations, len(layers))
    h0 = check_states("stack_forward", h0, layers, jnp.shape(x)[0])
    h, hT, caches = x, [], []
    for p, s, act in zip(layers, h0, acts, strict=True):
        kw = dict(
            activation=act, lengths=lengths, truncation=truncation, carry_weights=carry_weights
        )
        if isinstance(p, BiRNNParams):
            H = p.fwd.Wh.shape[0]
            hf, cf = rnn_forward(h, s[:, :H], *p.fwd, **kw)  # (N, T, H)
            hb, cb = rnn_forward(reverse_within_lengths(h, lengths), s[:, H:], *p.bwd, **kw)
            hT.append(
                jnp.concatenate(
                    [final_state(hf, cf.h0, lengths), final_state(hb, cb.h0, lengths)], axis=-1
                )
            )
            h = jnp.concatenate([hf, reverse_within_lengths(hb, lengths)], axis=-1)  # (N, T, 2H)
            caches.append((cf, cb))
        else:
            h, c = rnn_forward(h, s, *p, **kw)
            hT.append(final_state(h, c.h0, lengths))
            caches.append(c)
    return h, tuple(hT), StackCache(tuple(caches), lengths)


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
    lengths = cache.lengths
    dh0s, dlayers = [], []
    for c in reversed(cache.layers):
        if isinstance(c, RNNCache):
            dh, dh0, *g = rnn_backward(dh, c)  # §4: dx of this layer -> dh of the one below
            dh0s.append(dh0)
            dlayers.append(RNNParams(*g))
        else:
            cf, cb = c
            H = cf.h0.shape[-1]
            dxf, dh0f, *gf = rnn_backward(dh[..., :H], cf)
            dxb, dh0b, *gb = rnn_backward(reverse_within_lengths(dh[..., H:], lengths), cb)
            dh = dxf + reverse_within_lengths(dxb, lengths)  # §4: both directions read x
            dh0s.append(jnp.concatenate([dh0f, dh0b], axis=-1))
            dlayers.append(BiRNNParams(RNNParams(*gf), RNNParams(*gb)))
    return dh, tuple(reversed(dh0s)), tuple(reversed(dlayers))
