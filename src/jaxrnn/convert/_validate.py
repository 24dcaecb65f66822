"""The converters' one boundary check: arrays in, layer kinds, shapes, dtypes, stacks.

A layer is an :class:`~jaxrnn.RNNParams`, :class:`~jaxrnn.LSTMParams` or
:class:`~jaxrnn.GRUParams` (``gates`` = 1, 4, 3 blocks of H columns), or a
:class:`~jaxrnn.BiRNNParams` of two of one kind; a stack is a tuple of layers.
Everything is read with numpy: nothing here is staged under ``jit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np

from .. import BiRNNParams, GRUParams, LSTMParams, RNNParams
from .._cells import KINDS as _KINDS
from .._cells import PARAMS_TYPES, CellKind

Cell = RNNParams | LSTMParams | GRUParams
P = TypeVar("P", bound=Cell)  # one cell's params type, kept by check_layer
Layer = Cell | BiRNNParams

# The registry's facts by parameter type: the torch module (``.torch``) and the gate
# count (``.gates``) of each cell.
KINDS: dict[type, CellKind] = {k.params: k for k in _KINDS}
CELLS = PARAMS_TYPES


def np_array(value: Any, where: str) -> np.ndarray:
    """``value`` as a numpy floating-point array; a torch tensor is detached and copied.

    bfloat16 tensors (which numpy cannot hold) come back as ``jnp.bfloat16``
    arrays, exactly, by way of float32.
    """
    if hasattr(value, "detach"):  # a torch tensor, possibly requiring grad or on a GPU
        t = value.detach().cpu()
        try:
            if str(t.dtype) == "torch.bfloat16":
                value = t.float().numpy().astype(jnp.bfloat16)
            else:
                value = t.numpy()
        except (TypeError, RuntimeError) as e:  # a dtype numpy has no equivalent for
            raise TypeError(f"{where}: cannot convert a tensor of dtype {t.dtype} ({e})") from None
    arr = np.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{where} must be a floating-point array, got dtype {arr.dtype}")
    return arr


def one_dtype(arrays: Mapping[str, np.ndarray | jax.Array], where: str) -> None:
    """Raises TypeError naming the arrays if they do not share one dtype."""
    if len({a.dtype for a in arrays.values()}) > 1:
        got = ", ".join(f"{k} {a.dtype}" for k, a in arrays.items())
        raise TypeError(
            f"{where}: the weights must share one dtype, got {got}; cast them to one first"
        )


def _gh(p: Cell) -> str:
    g = KINDS[type(p)].gates
    return "H" if g == 1 else f"{g}H"


def _expected(p: Cell) -> str:
    gh = _gh(p)
    biases = ", ".join(f"{n} ({gh},)" for n in p._fields[2:])
    return f"Wx (D, {gh}), Wh (H, {gh}), {biases}"


@overload
def check_layer(p: P, where: str, kinds: tuple[type, ...] = CELLS) -> P: ...
@overload
def check_layer(p: object, where: str, kinds: tuple[type, ...] = CELLS) -> Cell: ...
def check_layer(p: Any, where: str, kinds: tuple[type, ...] = CELLS) -> Cell:
    """Checks one direction's shapes and dtype; returns the same NamedTuple of numpy arrays.

    ``Wx (D, gH)``, ``Wh (H, gH)`` and each bias ``(gH,)``, with g gate blocks
    (:data:`KINDS`); ``kinds`` limits the accepted types.
    """
    if not isinstance(p, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{where} must be an {names}, got {type(p).__name__}")
    arrays = [np_array(a, f"{where}.{n}") for a, n in zip(p, p._fields, strict=True)]
    one_dtype(dict(zip(p._fields, arrays, strict=True)), where)
    Wx, Wh, *biases = arrays
    got = ", ".join(str(a.shape) for a in arrays)
    if Wx.ndim != 2 or Wh.ndim != 2 or any(b.ndim != 1 for b in biases):
        raise ValueError(f"{where}: expected {_expected(p)}, got shapes {got}")
    H, gH = Wh.shape[0], KINDS[type(p)].gates * Wh.shape[0]
    if Wh.shape != (H, gH) or Wx.shape[1] != gH or any(b.shape != (gH,) for b in biases):
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(p._fields, arrays, strict=True))
        raise ValueError(f"{where}: inconsistent hidden size: {shapes} (expected {_expected(p)})")
    return type(p)(*arrays)  # pyright: ignore[reportArgumentType]  # numpy arrays in a params NamedTuple


def is_pair(x: Any) -> bool:
    """A plain ``(fwd, bwd)`` sequence of two cells (read as bidirectional on request)."""
    return (
        isinstance(x, Sequence)
        and not isinstance(x, CELLS)
        and len(x) == 2
        and all(isinstance(p, CELLS) for p in x)
    )


def is_layer(x: Any, bidirectional: bool | None) -> bool:
    return isinstance(x, (*CELLS, BiRNNParams)) or bool(bidirectional and is_pair(x))


def _directions(layer: Any, k: int, bidirectional: bool | None, fn: str) -> tuple[Cell, ...]:
    bi = isinstance(layer, BiRNNParams) or (bool(bidirectional) and is_pair(layer))
    if bidirectional is not None and bi != bidirectional:
        want = "a BiRNNParams(fwd, bwd)"
        if not bidirectional:  # then the layer is a BiRNNParams: name its cell
            name = type(layer.fwd).__name__
            want = f"{'a' if name.startswith('G') else 'an'} {name}"
        raise TypeError(
            f"{fn}: bidirectional={bidirectional} needs {want} for layer {k}, "
            f"got {type(layer).__name__}"
        )
    dirs = zip(layer, ("fwd", "bwd"), strict=True) if bi else [(layer, "")]
    out = tuple(check_layer(p, f"{fn}: layer {k} {d}".rstrip()) for p, d in dirs)
    if len({type(p) for p in out}) > 1:
        raise TypeError(
            f"{fn}: layer {k} mixes cells: fwd is {type(out[0]).__name__}, "
            f"bwd is {type(out[1]).__name__}"
        )
    return out


def as_stack(layers: Any, bidirectional: bool | None, fn: str) -> list[tuple[Cell, ...]]:
    """Normalises one layer or a stack to a list of ``(fwd,)`` or ``(fwd, bwd)`` tuples.

    ``bidirectional``: None takes each layer as it is (BiRNNParams is bidirectional);
    True also reads plain ``(fwd, bwd)`` tuples as layers and requires every layer
    bidirectional; False requires every layer to be one direction. Checks that the
    weights share one dtype and that layer k > 0 reads the previous layer's output
    (H or 2H features).
    """
    if is_layer(layers, bidirectional):
        layers = (layers,)
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise TypeError(
            f"{fn}: layers must be an RNNParams, LSTMParams, GRUParams, a BiRNNParams "
            "or a tuple of layers"
        )
    stack = [_directions(layer, k, bidirectional, fn) for k, layer in enumerate(layers)]
    one_dtype(
        {
            f"layer {k} {d}".rstrip(): p.Wh
            for k, dirs in enumerate(stack)
            for p, d in zip(dirs, ("fwd", "bwd") if len(dirs) == 2 else ("",), strict=True)
        },
        fn,
    )
    for k in range(1, len(stack)):
        width = sum(p.Wh.shape[0] for p in stack[k - 1])  # the previous layer's output
        for p in stack[k]:
            if p.Wx.shape[0] != width:
                raise ValueError(
                    f"{fn}: layer {k} has Wx {p.Wx.shape}, but layer {k - 1} outputs "
                    f"{width} features: Wx must be ({width}, {_gh(p)})"
                )
    return stack
