"""flax linen ``nn.RNN`` / ``nn.Bidirectional`` / ``nn.Sequential`` trees to and from
jaxrnn layers, each cell a ``SimpleCell``, ``LSTMCell`` / ``OptimizedLSTMCell`` or
``GRUCell`` (the cells' mappings are in ``_flax_cells``).

The cell is read from the params type going out (:class:`RNNParams`,
:class:`LSTMParams`, :class:`GRUParams`) and from the dense names coming in
(``i``/``h``, ``ii``..``ho``, ``ir``..``hn``). flax itself is never imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from .. import BiRNNParams, GRUParams, LSTMParams
from ._flax_cells import (
    from_flax_gru_cell,
    from_flax_lstm_cell,
    from_flax_simple_cell,
    get,
    to_flax_gru_cell,
    to_flax_lstm_cell,
    to_flax_simple_cell,
    unwrap,
)
from ._validate import Cell, Layer, as_stack, is_layer

_NNX_ONLY = {"dense_i", "dense_h", "if_"}  # names in flax NNX cells' trees, never in linen's
_OTHER_FLAVOUR = (
    "flax linen parameter trees; flax NNX modules (nnx.RNN, nnx.Bidirectional, a list of "
    "them) go to jaxrnn.convert.from_nnx_rnn, an NNX cell or its nnx.State to from_nnx_cell"
)


def _is_nnx(tree: Any) -> bool:
    """A flax NNX module or ``nnx.State`` (by its type, flax not imported), or a tree with
    the names only NNX cells use."""
    if type(tree).__module__.startswith("flax.nnx"):
        return True
    return isinstance(tree, Mapping) and any(k in _NNX_ONLY or _is_nnx(v) for k, v in tree.items())


def _refuse_nnx(tree: Any, fn: str) -> None:
    """An NNX object or a non-dict gets a message naming both flavours and the right function."""
    if _is_nnx(tree):
        raise TypeError(
            f"{fn}: this is a flax NNX {type(tree).__name__}; {fn} reads {_OTHER_FLAVOUR}"
        )
    if not isinstance(tree, Mapping):
        raise TypeError(f"{fn}: expected a flax linen parameter dict, got {type(tree).__name__}; "
                        f"{fn} reads {_OTHER_FLAVOUR}")  # fmt: skip


def _cell_to_flax(p: Cell, residual: bool) -> dict[str, Any]:
    if isinstance(p, LSTMParams):
        return to_flax_lstm_cell(p)
    if isinstance(p, GRUParams):
        return to_flax_gru_cell(p)
    return to_flax_simple_cell(p, residual=residual)


def _cell_from_flax(tree: Mapping[str, Any], residual: bool, fn: str) -> Cell:
    """The cell from its dense names: ``i`` SimpleCell, ``ii`` LSTM, ``ir`` GRU."""
    names = set(tree) if isinstance(tree, Mapping) else set()
    if "i" in names:
        return from_flax_simple_cell(tree, residual=residual)
    if "ii" in names:
        return from_flax_lstm_cell(tree)
    if "ir" in names:
        return from_flax_gru_cell(tree)
    if {"if", "in", "hf", "hn"} <= names:
        raise ValueError(
            f"{fn}: this is a flax MGUCell (denses {sorted(names)}): its one forget gate "
            "has no jaxrnn equivalent (jaxrnn has the RNN, LSTM and GRU)"
        )
    raise KeyError(
        f"{fn}: a cell needs 'i' (SimpleCell), 'ii' (LSTMCell) or 'ir' (GRUCell), "
        f"got {sorted(names)}; {fn} reads {_OTHER_FLAVOUR}"
    )


def to_flax_rnn(
    layers: Layer | Sequence[Layer], *, bidirectional: bool | None = None, residual: bool = False
) -> dict[str, Any]:
    """The parameter tree of flax ``nn.RNN`` modules with jaxrnn's weights.

    - one cell's params -> ``{"cell": cell}`` for ``nn.RNN(cell)``: an
      :class:`RNNParams` for ``SimpleCell``, :class:`LSTMParams` for ``LSTMCell``
      or ``OptimizedLSTMCell``, :class:`GRUParams` for ``GRUCell``;
    - a :class:`BiRNNParams` (or a ``(fwd, bwd)`` tuple with ``bidirectional=True``)
      -> ``{"forward_rnn": {"cell": ...}, "backward_rnn": {"cell": ...}}`` for
      ``nn.Bidirectional(nn.RNN(...), nn.RNN(...))``;
    - a tuple of layers -> ``{"layers_0": ..., "layers_1": ...}`` for an
      ``nn.Sequential`` of those modules (cells and sizes may differ per layer).

    Each cell as in :func:`to_flax_simple_cell` (``residual`` applies to these),
    :func:`to_flax_lstm_cell` or :func:`to_flax_gru_cell`.
    """
    single = is_layer(layers, bidirectional)
    stack = as_stack(layers, bidirectional, "to_flax_rnn")

    def module(dirs) -> dict[str, Any]:
        cells = [{"cell": _cell_to_flax(p, residual)} for p in dirs]
        if len(cells) == 1:
            return cells[0]
        return dict(zip(("forward_rnn", "backward_rnn"), cells, strict=True))

    if single:
        return module(stack[0])
    return {f"layers_{k}": module(dirs) for k, dirs in enumerate(stack)}


def from_flax_rnn(tree: Mapping[str, Any], *, residual: bool = False) -> Layer | tuple[Layer, ...]:
    """jaxrnn weights from an ``nn.RNN`` / ``nn.Bidirectional`` / ``nn.Sequential`` tree.

    The inverse of :func:`to_flax_rnn`; the structure is read from the keys:
    ``cell`` -> one cell's params (:class:`RNNParams`, :class:`LSTMParams` or
    :class:`GRUParams`, by the cell's dense names); ``forward_rnn``/``backward_rnn``
    -> :class:`BiRNNParams`; ``layers_0..`` -> a tuple of layers. ``{"params": ...}``
    is also accepted.

    Raises:
      TypeError: a flax NNX module or ``nnx.State`` (read those with
        :func:`from_nnx_rnn` / :func:`from_nnx_cell`), or not a dict.
      KeyError: none of those keys, or a cell of none of those kinds (the message
        names both flax flavours).
      ValueError: a flax ``MGUCell`` (no jaxrnn equivalent), or the cell's errors.
    """
    fn = "from_flax_rnn"
    _refuse_nnx(tree, fn)
    tree = unwrap(tree, fn)
    if "cell" in tree:
        return _cell_from_flax(tree["cell"], residual, fn)
    if "forward_rnn" in tree or "backward_rnn" in tree:
        dirs = [
            _cell_from_flax(get(tree, f"{d}/cell", fn), residual, fn)
            for d in ("forward_rnn", "backward_rnn")
        ]
        as_stack(BiRNNParams(*dirs), True, fn)  # one cell in both directions
        return BiRNNParams(*dirs)
    n = sum(f"layers_{k}" in tree for k in range(len(tree)))
    if n == 0:
        raise KeyError(
            f"{fn}: expected 'cell', 'forward_rnn' or 'layers_0', got {sorted(tree)}; "
            f"{fn} reads {_OTHER_FLAVOUR}"
        )
    layers = tuple(
        cast(Layer, from_flax_rnn(get(tree, f"layers_{k}", fn), residual=residual))  # one layer
        for k in range(n)
    )
    as_stack(layers, None, fn)  # each layer reads the previous one's output
    return layers
