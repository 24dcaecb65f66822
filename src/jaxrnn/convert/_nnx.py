"""flax NNX cells and ``nnx.RNN`` / ``nnx.Bidirectional`` stacks to and from jaxrnn layers.

An NNX cell holds the same numbers as the linen cell of its name under other paths;
:data:`PATHS` maps each NNX path to the linen paths whose blocks it concatenates on
its last axis, and the linen mappings of ``_flax_cells`` (MATH.md §1, §9, §10) do
the rest, in both directions:

| NNX cell            | NNX path                    | linen paths (blocks)                 |
|---------------------|-----------------------------|--------------------------------------|
| ``SimpleCell``      | ``dense_i/kernel``, ``/bias`` | ``i/kernel``, ``i/bias``           |
|                     | ``dense_h/kernel``          | ``h/kernel``                         |
| ``LSTMCell``        | ``ii``, ``if_``, ``ig``, ``io``, ``h*`` | the same (``if_`` is ``if``) |
| ``OptimizedLSTMCell`` | ``dense_i/kernel (D, 4H)`` | ``[ii, if, ig, io]/kernel``         |
|                     | ``dense_h/kernel``, ``/bias`` | ``[hi, hf, hg, ho]/kernel``, ``/bias`` |
| ``GRUCell``         | ``dense_i/kernel (D, 3H)``, ``/bias`` | ``[ir, iz, in]/kernel``, ``/bias`` |
|                     | ``dense_h/kernel (H, 3H)``  | ``[hr, hz, hn]/kernel``              |

**GRU.** ``nnx.GRUCell`` has no ``b_hn`` (flax#5594): it computes
``n = tanh(x W_in + b_in + r ⊙ (h W_hn))``. Reading one gives jaxrnn's ``bh = 0``
(its r, z blocks fold into ``bx`` anyway); writing refuses a non-zero ``bh`` n block,
which that cell cannot hold.

Cells are read from the module or from its ``nnx.State`` (``nnx.state(cell)``, or a
gradient from ``nnx.grad``: it maps like the weights) and written into the module in
place. Only the weights convert: flax's ``gate_fn`` / ``activation_fn`` must be the
defaults for the LSTM and GRU; a ``SimpleCell``'s activation is the caller's to pass
to :func:`jaxrnn.rnn` (``residual=True`` is read from the cell). flax is imported
inside these functions only, never by ``import jaxrnn.convert``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import BiRNNParams, GRUParams, LSTMParams, RNNParams
from ._flax_cells import (
    from_flax_gru_cell,
    from_flax_lstm_cell,
    from_flax_simple_cell,
    to_flax_gru_cell,
    to_flax_lstm_cell,
    to_flax_simple_cell,
)
from ._validate import Cell, Layer, as_stack, check_layer, np_array, one_dtype


def _blocks(prefix: str, gates: str, leaf: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{q}/{leaf}" for q in gates)


# NNX path -> (its shape, the linen paths whose blocks it concatenates on the last axis)
PATHS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "SimpleCell": {
        "dense_i/kernel": ("D,H", ("i/kernel",)),
        "dense_i/bias": ("H", ("i/bias",)),
        "dense_h/kernel": ("H,H", ("h/kernel",)),
    },
    "LSTMCell": {
        **{f"i{q}/kernel": ("D,H", (f"i{q.rstrip('_')}/kernel",)) for q in ("i", "f_", "g", "o")},
        **{f"h{q}/kernel": ("H,H", (f"h{q}/kernel",)) for q in "ifgo"},
        **{f"h{q}/bias": ("H", (f"h{q}/bias",)) for q in "ifgo"},
    },
    "OptimizedLSTMCell": {  # flax's blocks (i, f, g, o)
        "dense_i/kernel": ("D,4H", _blocks("i", "ifgo", "kernel")),
        "dense_h/kernel": ("H,4H", _blocks("h", "ifgo", "kernel")),
        "dense_h/bias": ("4H", _blocks("h", "ifgo", "bias")),
    },
    "GRUCell": {  # no hn/bias: b_hn is missing (flax#5594)
        "dense_i/kernel": ("D,3H", _blocks("i", "rzn", "kernel")),
        "dense_i/bias": ("3H", _blocks("i", "rzn", "bias")),
        "dense_h/kernel": ("H,3H", _blocks("h", "rzn", "kernel")),
    },
}
PARAMS = {"SimpleCell": RNNParams, "LSTMCell": LSTMParams, "OptimizedLSTMCell": LSTMParams,
          "GRUCell": GRUParams}  # fmt: skip
_CELLS = " / ".join(PATHS)
_DIRECTIONS = {1: ("",), 2: ("fwd", "bwd")}  # the names of a layer's directions in messages
_LINEN_HINT = "a flax linen tree goes to from_flax_rnn or from_flax_*_cell"


def _nnx():
    from flax import nnx  # only here: import jaxrnn.convert never loads flax

    return nnx


def _flat(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """``"dense_i/kernel" -> array`` from an ``nnx.State`` or a nested dict (only its
    ``nnx.Param`` variables: an rng stream kept by a cell is not a weight)."""
    nnx, out = _nnx(), {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, path + "/"))
        elif isinstance(value, nnx.Variable):
            if isinstance(value, nnx.Param):
                out[path] = value.get_value()
        else:
            out[path] = value
    return out


def _detect(flat: dict[str, Any], fn: str) -> str:
    """The NNX cell whose ``nnx.State`` this is, from its paths (and ``dense_h``'s width)."""
    tops = {p.split("/")[0] for p in flat}
    if "if_" in tops:
        return "LSTMCell"
    if {"dense_i", "dense_h"} <= tops:
        if "dense_h/bias" in flat:
            return "OptimizedLSTMCell"
        shape = np.shape(flat.get("dense_h/kernel", ()))
        ratio = shape[1] // shape[0] if len(shape) == 2 and shape[0] else 0
        if ratio in (1, 3):
            return "SimpleCell" if ratio == 1 else "GRUCell"
        raise ValueError(
            f"{fn}: dense_h/kernel has shape {shape}: (H, H) for a SimpleCell, (H, 3H) for a "
            "GRUCell"
        )
    flavour = f"; {_LINEN_HINT}" if tops & {"i", "ii", "ir", "if"} else ""
    raise KeyError(
        f"{fn}: not a flax NNX cell's parameters: expected dense_i/dense_h (SimpleCell, "
        f"OptimizedLSTMCell, GRUCell) or ii, if_, ig, io, hi, ... (LSTMCell), got "
        f"{sorted(tops)}{flavour}"
    )


def _read(flat: dict[str, Any], name: str, fn: str) -> dict[str, np.ndarray]:
    """The cell's arrays at its NNX paths, checked: present, floating, one dtype, and the
    shapes of :data:`PATHS` with D from ``dense_i``/``i*`` and H from ``dense_h``/``h*``."""
    spec = PATHS[name]
    missing = [p for p in spec if p not in flat]
    if missing:
        raise KeyError(f"{fn}: the {name} has no {missing[0]!r} (got {sorted(flat)})")
    arrays = {p: np_array(flat[p], f"{fn}: {p}") for p in spec}
    one_dtype(arrays, fn)
    kernels = [p for p in spec if p.endswith("kernel")]
    dims = {}
    for d, side in (("D", "i"), ("H", "h")):  # the first input and hidden kernels
        a = arrays[next(p for p in kernels if _side(p) == side)]
        dims[d] = a.shape[0] if a.ndim == 2 else -1
    for path, (template, _) in spec.items():
        want = tuple(int(t[:-1] or 1) * dims["H"] if t.endswith("H") else dims[t]
                     for t in template.split(","))  # fmt: skip
        if arrays[path].shape != want:
            raise ValueError(
                f"{fn}: the {name}'s {path} has shape {arrays[path].shape}, expected "
                f"({template}) = {want}"
            )
    return arrays


def _side(path: str) -> str:
    """``"i"`` for an input dense (``dense_i``, ``ii``, ``if_``...), ``"h"`` for a hidden one."""
    dense = path.split("/")[0]
    return dense[-1] if dense.startswith("dense_") else dense[0]


def _to_linen(name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The linen tree of the same cell (a GRU's ``hn/bias``, which NNX lacks, as zeros)."""
    tree: dict[str, Any] = {}
    for path, (_, linen) in PATHS[name].items():
        for lp, block in zip(linen, np.split(arrays[path], len(linen), axis=-1), strict=True):
            dense, leaf = lp.split("/")
            tree.setdefault(dense, {})[leaf] = block
    if name == "GRUCell":
        tree["hn"]["bias"] = np.zeros_like(arrays["dense_i/bias"][: tree["hn"]["kernel"].shape[1]])
    return tree


def _at(tree: Mapping, path: str) -> Any:
    dense, leaf = path.split("/")
    return tree[dense][leaf]


def _from_linen(name: str, tree: dict[str, Any]) -> dict[str, np.ndarray]:
    """The NNX arrays from the linen tree of the same cell: :func:`_to_linen` undone."""
    return {
        path: np.concatenate([np.asarray(_at(tree, lp)) for lp in linen], axis=-1)
        for path, (_, linen) in PATHS[name].items()
    }


def _cell_name(cell: Any, fn: str) -> str:
    """The NNX cell class of a module (``TypeError`` naming what to use instead)."""
    nnx = _nnx()
    for name in PATHS:
        if isinstance(cell, getattr(nnx, name)):
            return name
    if isinstance(cell, (nnx.RNN, nnx.Bidirectional)):
        hint = f"this is an nnx.{type(cell).__name__}: use from_nnx_rnn / to_nnx_rnn"
    elif type(cell).__module__.startswith("jaxrnn.nnx"):
        hint = "a jaxrnn.nnx module's weights are module.params() / module.load_params()"
    elif type(cell).__module__.startswith("flax.linen"):
        hint = _LINEN_HINT
    else:
        hint = "the cells of flax.nnx that map to jaxrnn's RNN, LSTM and GRU"
    raise TypeError(f"{fn}: expected a flax nnx.{_CELLS}, got {type(cell).__name__} ({hint})")


def _check_nonlinearities(cell: Any, name: str, fn: str) -> None:
    nnx = _nnx()
    if name != "SimpleCell" and (cell.gate_fn is not nnx.sigmoid
                                 or cell.activation_fn is not nnx.tanh):  # fmt: skip
        raise ValueError(
            f"{fn}: jaxrnn's {'GRU' if name == 'GRUCell' else 'LSTM'} uses sigmoid gates and "
            f"tanh; this {name} has gate_fn={cell.gate_fn!r}, activation_fn={cell.activation_fn!r}"
        )


def _linen_reader(name: str, residual: bool):
    if name == "SimpleCell":
        return lambda tree: from_flax_simple_cell(tree, residual=residual)
    return from_flax_gru_cell if name == "GRUCell" else from_flax_lstm_cell


def _read_cell(cell: Any, residual: bool | None, fn: str) -> Cell:
    nnx = _nnx()
    if isinstance(cell, nnx.Module):
        name = _cell_name(cell, fn)
        _check_nonlinearities(cell, name, fn)
        own = bool(getattr(cell, "residual", False))
        if residual is not None and residual != own:
            raise ValueError(f"{fn}: residual={residual}, but the cell has residual={own}")
        residual, flat = own, _flat(nnx.state(cell, nnx.Param))
    elif isinstance(cell, Mapping):
        flat = _flat(cell["params"] if set(cell) == {"params"} else cell)
        name = _detect(flat, fn)
    else:
        raise TypeError(
            f"{fn}: expected a flax NNX cell or its nnx.State, got {type(cell).__name__}"
        )
    if residual and name != "SimpleCell":
        raise ValueError(f"{fn}: residual=True applies to a SimpleCell, got a {name}")
    return _linen_reader(name, bool(residual))(_to_linen(name, _read(flat, name, fn)))


def from_nnx_cell(cell: Any, *, residual: bool | None = None) -> Cell:
    """jaxrnn weights from a flax NNX ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell`` or
    ``GRUCell``, or from its ``nnx.State`` (the cell is then read from the paths).

    As the linen cell of the same name (:func:`from_flax_simple_cell`, ...), through
    :data:`PATHS`: ``RNNParams(Wx (D, H), Wh (H, H), b (H,))``,
    ``LSTMParams(Wx (D, 4H), Wh (H, 4H), b (4H,))`` (flax's ``(i, f, g, o)`` in jaxrnn's
    ``(i, f, o, g)``), ``GRUParams(Wx (D, 3H), Wh (H, 3H), bx (3H,), bh (3H,) = 0)``.
    Gradients (an ``nnx.State`` from ``nnx.grad``) map the same way.

    Args:
      cell: the module, or ``nnx.state(cell)`` (a nested dict of arrays too).
      residual: a state's ``SimpleCell(residual=True)`` (``Wh = dense_h/kernel + I``);
        None reads a module's own flag (False for a state).

    Raises:
      TypeError: another module (the message names the right function), mixed dtypes.
      KeyError: a path is missing, or the tree is no NNX cell's.
      ValueError: a shape disagrees; non-default LSTM/GRU nonlinearities.
    """
    return _read_cell(cell, residual, "from_nnx_cell")


def _nnx_arrays(params: Cell, name: str, residual: bool, where: str) -> dict[str, np.ndarray]:
    """The NNX arrays of ``params`` for the cell ``name`` (a GRU's ``bh`` n block must be 0)."""
    if name == "SimpleCell":
        assert isinstance(params, RNNParams), name  # the name is read from the params' kind
        tree = to_flax_simple_cell(params, residual=residual)
    elif name == "GRUCell":
        assert isinstance(params, GRUParams), name
        tree = to_flax_gru_cell(params)
        b_hn = np.asarray(tree["hn"]["bias"])
        if np.any(b_hn != 0):
            raise ValueError(
                f"{where}: nnx.GRUCell has no b_hn (flax#5594: n = tanh(x W_in + b_in + "
                f"r * (h W_hn)), no hidden bias), but bh's n block is non-zero (max |b_hn| = "
                f"{np.max(np.abs(b_hn)):.3g}); write it to a linen GRUCell (to_flax_gru_cell) "
                "or torch instead, or keep bh[2H:] at zero"
            )
    else:
        assert isinstance(params, LSTMParams), name
        tree = to_flax_lstm_cell(params)
    return _from_linen(name, tree)


def _write_cell(params: Any, cell: Any, where: str) -> None:
    nnx = _nnx()
    name = _cell_name(cell, where)
    _check_nonlinearities(cell, name, where)
    if not isinstance(params, PARAMS[name]):
        raise TypeError(
            f"{where}: an nnx.{name} takes {PARAMS[name].__name__}, got {type(params).__name__}"
        )
    params = check_layer(params, where)
    arrays = _nnx_arrays(params, name, bool(getattr(cell, "residual", False)), where)
    have = _flat(nnx.state(cell, nnx.Param))  # arrays (or shapes, under nnx.eval_shape)
    for path, a in arrays.items():
        old = have[path]
        if (a.shape, a.dtype) != (tuple(old.shape), np.dtype(old.dtype)):
            raise ValueError(
                f"{where}: the nnx.{name} (in_features={cell.in_features}, hidden_features="
                f"{cell.hidden_features}) has {path} {old.shape} {old.dtype}, the weights give "
                f"{a.shape} {a.dtype}"
            )
    for path, a in arrays.items():
        dense, leaf = path.split("/")
        getattr(getattr(cell, dense), leaf).set_value(jnp.asarray(a))


def to_nnx_cell(params: Cell, cell: Any) -> Any:
    """Writes jaxrnn weights into a flax NNX cell, in place; returns the cell.

    The inverse of :func:`from_nnx_cell`: :class:`RNNParams` into a ``SimpleCell`` (with
    ``residual=True``, ``dense_h/kernel = Wh - I``), :class:`LSTMParams` into an
    ``LSTMCell`` or ``OptimizedLSTMCell``, :class:`GRUParams` into a ``GRUCell``
    (``bx + bh`` on the r, z blocks; ``bh``'s n block must be zero: the cell has no
    ``b_hn``, flax#5594). The cell's sizes and ``param_dtype`` must be the weights'.

    Raises:
      TypeError: a module that is none of those cells, or weights of another cell.
      ValueError: a non-zero ``b_hn`` for a GRUCell, shapes or dtype not the cell's.
    """
    _write_cell(params, cell, "to_nnx_cell")
    return cell


def _units(rnn: Any, fn: str) -> tuple[list[tuple[Any, ...]], bool]:
    """``([cells of layer 0], ...), single``: the cells of each layer's directions."""
    nnx = _nnx()
    if isinstance(rnn, nnx.RNN):
        return [(rnn.cell,)], True
    if isinstance(rnn, nnx.Bidirectional):
        dirs = (rnn.forward_rnn, rnn.backward_rnn)
        if not all(isinstance(d, nnx.RNN) for d in dirs):
            got = ", ".join(type(d).__name__ for d in dirs)
            raise TypeError(f"{fn}: an nnx.Bidirectional of two nnx.RNN is expected, got {got}")
        return [tuple(d.cell for d in dirs if isinstance(d, nnx.RNN))], True  # all are
    seq = list(rnn.layers) if isinstance(rnn, nnx.Sequential) else rnn
    if isinstance(seq, (Sequence, nnx.List)) and not isinstance(seq, (str, Mapping)) and seq:
        if all(isinstance(m, (nnx.RNN, nnx.Bidirectional)) for m in seq):
            return [_units(m, fn)[0][0] for m in seq], False
    if isinstance(rnn, nnx.State):
        hint = "read a cell's nnx.State with from_nnx_cell, or pass the modules"
    else:
        hint = _LINEN_HINT if isinstance(rnn, Mapping) else "flax NNX modules only"
    raise TypeError(
        f"{fn}: expected an nnx.RNN, an nnx.Bidirectional, or a list or nnx.Sequential of "
        f"them, got {type(rnn).__name__} ({hint})"
    )


def from_nnx_rnn(rnn: Any) -> Layer | tuple[Layer, ...]:
    """jaxrnn layers from flax NNX ``nnx.RNN`` / ``nnx.Bidirectional`` modules.

    An ``nnx.RNN(cell)`` gives the cell's params (:func:`from_nnx_cell`); an
    ``nnx.Bidirectional(nnx.RNN, nnx.RNN)`` a :class:`BiRNNParams` (``backward_rnn`` is
    ``bwd``); a list (or ``nnx.Sequential``) of those a tuple of layers, as
    :func:`jaxrnn.stack_forward` and :meth:`jaxrnn.nnx.LSTM.load_params` take them. Only
    the weights: ``time_major``, ``reverse`` and a non-default ``merge_fn`` are not read.

    Raises:
      TypeError: anything else (a linen tree is pointed to :func:`from_flax_rnn`), or the
        directions of a layer of different cells.
      ValueError: a layer does not read the previous layer's output width; the cells'
        errors (:func:`from_nnx_cell`).
    """
    fn = "from_nnx_rnn"
    units, single = _units(rnn, fn)
    layers = []
    for k, cells in enumerate(units):
        dirs = [_read_cell(c, None, f"{fn}: layer {k} {d}".rstrip())
                for c, d in zip(cells, _DIRECTIONS[len(cells)], strict=True)]  # fmt: skip
        layers.append(BiRNNParams(*dirs) if len(dirs) == 2 else dirs[0])
    as_stack(layers, None, fn)  # one cell per layer, each reading the previous one's output
    return layers[0] if single else tuple(layers)


def to_nnx_rnn(layers: Layer | Sequence[Layer], rnn: Any) -> Any:
    """Writes jaxrnn layers into flax NNX ``nnx.RNN`` / ``nnx.Bidirectional`` modules (or a
    list / ``nnx.Sequential`` of them), in place; returns ``rnn``. The inverse of
    :func:`from_nnx_rnn`; each cell as in :func:`to_nnx_cell`.

    Raises:
      TypeError: not such modules, or a layer's directions are not the module's.
      ValueError: the layer counts differ; the cells' errors (:func:`to_nnx_cell`).
    """
    fn = "to_nnx_rnn"
    stack = as_stack(layers, None, fn)
    units, _ = _units(rnn, fn)
    if len(stack) != len(units):
        raise ValueError(f"{fn}: {len(stack)} layer(s) of weights for {len(units)} module(s)")
    for k, (dirs, cells) in enumerate(zip(stack, units, strict=True)):
        if len(dirs) != len(cells):
            have = ("an nnx.RNN", "an nnx.Bidirectional")[len(cells) - 1]
            want = ("one direction", "BiRNNParams")[len(dirs) - 1]
            raise TypeError(f"{fn}: layer {k} is {want}, but its module is {have}")
        for p, c, d in zip(dirs, cells, _DIRECTIONS[len(dirs)], strict=True):
            _write_cell(p, c, f"{fn}: layer {k} {d}".rstrip())
    return rnn
