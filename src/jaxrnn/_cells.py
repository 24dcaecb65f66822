"""The registry of cell facts: every fact about a cell that code outside its math needs.

One :class:`CellKind` per cell (vanilla RNN, LSTM, GRU), in :data:`KINDS`: its name, its
parameter type, its gate count, its engine :class:`~jaxrnn._recurrence.Cell`, its
initialiser, its state's layout and the torch module it converts to. The public
functions (``_classic.py``, ``_layer.py``), the stack, the model, the training CLI and
the converters all read these facts here; none restates them.

**State.** A cell's state is its own pytree: ``h: (N, H)`` for the RNN and GRU, the
pair ``(h, c)`` for the LSTM (torch's and equinox's order). Only a stack of layers and
the model, which carry one array per layer, lay it out as one ``(N, S)`` array
(:meth:`CellKind.join`: ``[h | c]`` for the LSTM, ``S = 2H``); :meth:`CellKind.split`
undoes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _gru, _lstm, _rnn
from ._recurrence import Cell

Array = jax.Array


class CellKind(NamedTuple):
    """The facts about one cell (see the module docstring)."""

    name: str  # "rnn", "lstm", "gru": the cell= option of init, model.init and jaxrnn train
    params: type  # RNNParams, LSTMParams, GRUParams
    gates: int  # G: blocks of H columns in Wx, Wh and each bias (RNN 1, LSTM 4, GRU 3)
    cell: Callable[[str], Cell]  # activation -> the engine Cell (gated cells take "tanh" only)
    init: Callable  # (key, D, H, dtype) -> params
    state: tuple[str, ...]  # the state's parts: ("h",) or ("h", "c")
    torch: str  # the torch module with this cell's state dict
    torch_gates: tuple[int, ...]  # block j of jaxrnn's gates is torch's block torch_gates[j]

    @property
    def activations(self) -> bool:
        """Whether the cell takes an activation (only the vanilla RNN; gates are fixed)."""
        return self.name == "rnn"

    def state_size(self, p: Any) -> int:
        """S, the width of the state as one array: H per part of the state."""
        return len(self.state) * p.Wh.shape[0]

    def split(self, s: Array) -> Any:
        """``(N, S)`` (a stack's one array per layer) -> the cell's state pytree."""
        if len(self.state) == 1:
            return s
        H = s.shape[-1] // len(self.state)
        return tuple(s[..., i * H : (i + 1) * H] for i in range(len(self.state)))

    def join(self, state: Any) -> Array:
        """The cell's state pytree -> ``(N, S)``: ``h``, or ``[h | c]`` for the LSTM."""
        return state if len(self.state) == 1 else jnp.concatenate(state, axis=-1)

    def h(self, state: Any) -> Array:
        """The hidden-state part ``h`` of a state pytree (the output the layer emits)."""
        return state if len(self.state) == 1 else state[0]


KINDS: tuple[CellKind, ...] = (
    CellKind(
        "rnn", _rnn.RNNParams, 1, _rnn.rnn_cell, _rnn.init_rnn_params, ("h",), "nn.RNN", (0,),
    ),
    CellKind(  # CS231n's (i, f, o, g); torch's nn.LSTM has (i, f, g, o)
        "lstm", _lstm.LSTMParams, 4, lambda act: _lstm.LSTM_CELL, _lstm.init_lstm_params,
        ("h", "c"), "nn.LSTM", (0, 1, 3, 2),
    ),
    CellKind(  # torch's formulation, torch's (r, z, n)
        "gru", _gru.GRUParams, 3, lambda act: _gru.GRU_CELL, _gru.init_gru_params,
        ("h",), "nn.GRU", (0, 1, 2),
    ),
)  # fmt: skip
CELLS: tuple[str, ...] = tuple(k.name for k in KINDS)
PARAMS_TYPES: tuple[type[_rnn.RNNParams | _lstm.LSTMParams | _gru.GRUParams], ...] = tuple(
    k.params for k in KINDS
)
_BY_TYPE = {k.params: k for k in KINDS}
_BY_NAME = {k.name: k for k in KINDS}


def kind_of(p: Any) -> CellKind:
    """The :class:`CellKind` of a layer's parameters (``TypeError`` for anything else)."""
    try:
        return _BY_TYPE[type(p)]
    except KeyError:
        names = ", ".join(t.__name__ for t in PARAMS_TYPES)
        raise TypeError(
            f"a layer must be one of {names} (or a BiRNNParams of two), got {type(p).__name__}"
        ) from None


def kind_named(name: str, fn: str = "cell") -> CellKind:
    """The :class:`CellKind` called ``name`` (``ValueError`` naming the choices)."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"{fn}: cell must be one of {CELLS}, got {name!r}") from None
