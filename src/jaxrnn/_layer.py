"""One recurrent layer of any cell: the kinds registry, the layer cache and the one ``custom_vjp``.

Each cell module registers its parameter type here (:func:`register`): the
vanilla RNN (``RNNParams``), the LSTM (``LSTMParams``) and the GRU
(``GRUParams``). Everything above a single layer — the stack and bidirectional
walk, the model, ``jax.grad`` through :func:`jaxrnn.rnn`, :func:`jaxrnn.lstm`,
:func:`jaxrnn.gru` — then handles every cell the same way: the engine's
forward and backward loops (``_recurrence``) with the registered
:class:`~jaxrnn._recurrence.Cell`.

A layer's state in a stack is one array ``(N, S)``: ``h`` for the RNN and GRU
(``S = H``), ``[h | c]`` for the LSTM (``S = 2H``), so stacks, ``h0``/``hT``
and stateful training carry one array per layer whatever the cell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax

from . import _recurrence as rec

Array = jax.Array


class Kind(NamedTuple):
    """How the layer code handles one cell."""

    name: str  # "rnn", "lstm", "gru"
    cell: Callable[[str], rec.Cell]  # activation -> the engine Cell (gated cells ignore it)
    split: Callable[[Array], Any]  # (N, S) state array -> the cell's state pytree
    join: Callable[[Any], Array]  # the cell's state pytree -> (N, S)
    state_size: Callable[[Any], int]  # params -> S
    check: Callable  # (fn, x, state, params) -> (x, state, params), trace-time shape checks


_KINDS: dict[type, Kind] = {}


def register(params_type: type, kind: Kind) -> None:
    """Makes ``params_type`` a layer of every stack, model and ``custom_vjp`` here."""
    _KINDS[params_type] = kind


def kind_of(p: Any) -> Kind:
    """The :class:`Kind` of a layer's parameters (``TypeError`` for anything else)."""
    try:
        return _KINDS[type(p)]
    except KeyError:
        names = ", ".join(t.__name__ for t in _KINDS)
        raise TypeError(
            f"a layer must be one of {names} (or a BiRNNParams of two), got {type(p).__name__}"
        ) from None


def kind_named(name: str) -> Kind:
    return next(k for k in _KINDS.values() if k.name == name)


@dataclasses.dataclass(frozen=True)
class LayerCache:
    """What one layer's backward pass needs: its input, initial state, weights and
    the engine's ``saved`` (every step's buffer, or segment-start states)."""

    x: Array  # (N, T, D)
    state0: Array  # (N, S)
    params: Any
    saved: Any
    lengths: Array | None
    carry_weights: Array | None
    kind: str = "rnn"  # static
    activation: str = "tanh"  # static
    truncation: int | None = None  # static
    checkpoint: int | None = None  # static


jax.tree_util.register_dataclass(
    LayerCache,
    data_fields=["x", "state0", "params", "saved", "lengths", "carry_weights"],
    meta_fields=["kind", "activation", "truncation", "checkpoint"],
)


def forward_layer(kind: Kind, act: str, x, s, p, lengths, xi, truncation, checkpoint=None):
    """``(h, final state (N, S), LayerCache)`` of one layer on checked arguments (§1)."""
    opts = rec.Options(lengths, truncation, xi, checkpoint)
    stateT, h, saved = rec.forward(kind.cell(act), p, x, kind.split(s), opts)
    cache = LayerCache(x, s, p, saved, lengths, xi, kind.name, act, truncation, checkpoint)
    return h, kind.join(stateT), cache


def backward_layer(dh: Array, c: LayerCache, dstateT: Array | None = None):
    """``(dx, dstate0 (N, S), dparams)``: the engine's BPTT for one layer (§3, §5).

    ``dstateT``: the error arriving in the final state (from a later time segment,
    or a loss of the final state); None means zero.
    """
    kind = kind_named(c.kind)
    opts = rec.Options(c.lengths, c.truncation, c.carry_weights, c.checkpoint)
    dstate = None if dstateT is None else kind.split(dstateT)
    cell = kind.cell(c.activation)
    dx, ds0, dp = rec.backward(cell, c.params, c.x, kind.split(c.state0), c.saved, dh, opts, dstate)
    return dx, kind.join(ds0), dp


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def run_layer(kind_name, act, truncation, checkpoint, x, s, p, lengths, xi):
    """``(h, final state)`` of one layer, differentiated by the hand-derived BPTT.

    The one ``custom_vjp`` of the library: :func:`jaxrnn.rnn`, :func:`jaxrnn.lstm`,
    :func:`jaxrnn.gru` and the model's ``loss(grad="hand")`` all run through it. The
    final state is differentiable too (its error enters the backward loop at T).
    """
    kind = kind_named(kind_name)
    stateT, h, _ = rec.forward(kind.cell(act), p, x, kind.split(s), rec.Options(lengths))
    return h, kind.join(stateT)


def _run_fwd(kind_name, act, truncation, checkpoint, x, s, p, lengths, xi):
    kind = kind_named(kind_name)
    h, sT, cache = forward_layer(kind, act, x, s, p, lengths, xi, truncation, checkpoint)
    return (h, sT), cache  # residuals: inputs, weights and the engine's saved buffers


def _run_bwd(kind_name, act, truncation, checkpoint, cache, cts):
    dh, dsT = cts
    dx, ds0, dp = backward_layer(dh, cache, dsT)  # §3, §5
    return dx, ds0, dp, None, None  # lengths and ξ get no cotangent


run_layer.defvjp(_run_fwd, _run_bwd)
