"""Equinox ``eqx.nn.LSTMCell`` / ``eqx.nn.GRUCell`` weights to and from jaxrnn's.

Equinox multiplies column vectors (``weight_ih @ x``), jaxrnn row vectors
(``x_t @ Wx``), so weights are transposed; equinox stacks gate rows in torch's order,
so the registry's ``torch_gates`` maps the blocks.

- ``LSTMCell``: rows ``(i, f, g, o)``, one ``bias (4H,)`` added to both products:
  MATH.md §9 exactly, ``Wx = weight_ih.T``, ``Wh = weight_hh.T``, ``b = bias``, the
  blocks in CS231n's ``(i, f, o, g)``. The state is ``(h, c)`` on both sides.
- ``GRUCell``: rows ``(r, z, n)``; ``bias (3H,)`` is added to the input product and
  ``bias_n (H,)`` to the n block of the hidden product, inside ``r ⊙ (...)``: torch's
  GRU (MATH.md §10) with ``bx = bias``, ``bh = [0, 0, bias_n]``. jaxrnn's ``bh_r``,
  ``bh_z`` have no place in equinox: an export refuses them when non-zero (they only
  ever add to ``bx_r``, ``bx_z``: fold them there for the same function).
- ``use_bias=False``: equinox has no bias at all; import reads zeros, export refuses
  non-zero biases.

Equinox is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from .. import GRUParams, LSTMParams
from .._cells import kind_named
from ._validate import check_layer, np_array, one_dtype

if TYPE_CHECKING:
    import equinox as eqx

# jaxrnn's gate block j is equinox's block _ORDER[kind][j] (equinox's rows are torch's).
_ORDER = {k: kind_named(k).torch_gates for k in ("lstm", "gru")}


def _blocks(a: npt.ArrayLike, order: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """``a``'s last axis as len(order) blocks, block j taken from block ``order[j]``."""
    parts = np.split(a, len(order), axis=-1)
    return np.concatenate([parts[i] for i in order], axis=-1)


def _cell_class(name: str) -> type:
    import equinox as eqx

    return getattr(eqx.nn, name)


def _read_cell(cell: Any, name: str, fn: str) -> dict[str, np.ndarray | None]:
    """An equinox cell's arrays as numpy, transposed to jaxrnn's ``(in, gH)``, in its own
    gate order; a missing bias (``use_bias=False``) as None."""
    if not isinstance(cell, _cell_class(name)):
        raise TypeError(f"{fn}: expected an equinox eqx.nn.{name}, got {type(cell).__name__}")
    fields = ("weight_ih", "weight_hh", "bias", "bias_n")[: 4 if name == "GRUCell" else 3]
    arrays = {
        f: None if getattr(cell, f) is None else np_array(getattr(cell, f), f"{fn}: {f}")
        for f in fields
    }
    one_dtype({f: a for f, a in arrays.items() if a is not None}, fn)
    for f in ("weight_ih", "weight_hh"):
        w = arrays[f]
        if w is None or w.ndim != 2:
            raise ValueError(
                f"{fn}: {f} must be 2-D (gH, in), got shape {None if w is None else w.shape}"
            )
        arrays[f] = w.T
    return arrays


def _refuse(fn: str, what: str, value: npt.ArrayLike, why: str) -> None:
    if np.any(value != 0):
        raise ValueError(f"{fn}: {what} is non-zero, but {why}")


def _build(name: str, arrays: Mapping[str, np.ndarray | jax.Array], use_bias: bool) -> Any:
    """An equinox cell of ``name`` holding ``arrays`` (equinox's layout), built without
    drawing its random initialisation."""
    import equinox as eqx

    D, H = arrays["weight_ih"].shape[1], arrays["weight_hh"].shape[1]
    dt = arrays["weight_ih"].dtype
    make = _cell_class(name)
    cell = eqx.filter_eval_shape(make, D, H, use_bias, dt, key=jax.random.key(0))
    names = [n for n in arrays if use_bias or not n.startswith("bias")]
    return eqx.tree_at(
        lambda c: [getattr(c, n) for n in names], cell, [jnp.asarray(arrays[n]) for n in names]
    )


def to_eqx_lstm_cell(params: LSTMParams, *, use_bias: bool = True) -> eqx.nn.LSTMCell:
    """An ``eqx.nn.LSTMCell`` computing jaxrnn's LSTM step (MATH.md §9).

    ``weight_ih = Wx.T``, ``weight_hh = Wh.T``, ``bias = b``: ``(4H, D)``, ``(4H, H)``,
    ``(4H,)``, jaxrnn's ``(i, f, o, g)`` blocks as equinox's ``(i, f, g, o)`` rows.
    ``use_bias=False`` builds a cell without bias (refused if ``b`` is non-zero).

    Raises:
      TypeError: ``params`` is not an ``LSTMParams``, or its arrays differ in dtype.
      ValueError: inconsistent shapes, or a non-zero ``b`` with ``use_bias=False``.
    """
    fn = "to_eqx_lstm_cell"
    Wx, Wh, b = check_layer(params, fn, (LSTMParams,))
    if not use_bias:
        _refuse(fn, "b", b, "an LSTMCell(use_bias=False) has no bias")
    order = np.argsort(_ORDER["lstm"])  # equinox's block k is jaxrnn's block order[k]
    Wx, Wh, b = (_blocks(a, order) for a in (Wx, Wh, b))
    return _build("LSTMCell", {"weight_ih": Wx.T, "weight_hh": Wh.T, "bias": b}, use_bias)


def from_eqx_lstm_cell(cell: eqx.nn.LSTMCell) -> LSTMParams:
    """jaxrnn's ``LSTMParams`` from an ``eqx.nn.LSTMCell`` (MATH.md §9).

    ``Wx = weight_ih.T (D, 4H)``, ``Wh = weight_hh.T (H, 4H)``, ``b = bias (4H,)``
    (zeros for ``use_bias=False``), equinox's ``(i, f, g, o)`` rows as jaxrnn's
    ``(i, f, o, g)`` blocks.

    Raises:
      TypeError: ``cell`` is not an ``eqx.nn.LSTMCell``, or its arrays differ in dtype.
      ValueError: inconsistent shapes.
    """
    fn = "from_eqx_lstm_cell"
    a = _read_cell(cell, "LSTMCell", fn)
    Wx, Wh = a["weight_ih"], a["weight_hh"]
    assert Wx is not None and Wh is not None  # _read_cell reads both weights or raises
    b = np.zeros_like(Wh[0]) if a["bias"] is None else a["bias"]
    p = LSTMParams(*(_blocks(v, _ORDER["lstm"]) for v in (Wx, Wh, b)))  # pyright: ignore[reportArgumentType]  # numpy arrays in a params NamedTuple
    return LSTMParams(*(jnp.asarray(v) for v in check_layer(p, fn)))


def to_eqx_gru_cell(params: GRUParams, *, use_bias: bool = True) -> eqx.nn.GRUCell:
    """An ``eqx.nn.GRUCell`` computing jaxrnn's GRU step (MATH.md §10).

    ``weight_ih = Wx.T (3H, D)``, ``weight_hh = Wh.T (3H, H)``, ``bias = bx (3H,)``,
    ``bias_n = bh[2H:] (H,)``; the gates are ``(r, z, n)`` on both sides.

    Raises:
      TypeError: ``params`` is not a ``GRUParams``, or its arrays differ in dtype.
      ValueError: inconsistent shapes; ``bh[:2H]`` (the r and z blocks) non-zero, which
        equinox has no parameter for; any non-zero bias with ``use_bias=False``.
    """
    fn = "to_eqx_gru_cell"
    Wx, Wh, bx, bh = check_layer(params, fn, (GRUParams,))
    H = Wh.shape[0]
    _refuse(fn, "bh[:2H] (the r and z blocks of the hidden bias)", bh[: 2 * H],
            "equinox's GRUCell has a hidden bias on the n gate only (bias_n); bh_r and bh_z "
            "only ever add to bx_r and bx_z: fold them there (bx[:2H] += bh[:2H], then "
            "zero them) for the same function")  # fmt: skip
    if not use_bias:
        for what, v in (("bx", bx), ("bh", bh)):
            _refuse(fn, what, v, "a GRUCell(use_bias=False) has no bias")
    arrays = {"weight_ih": Wx.T, "weight_hh": Wh.T, "bias": bx, "bias_n": bh[2 * H :]}
    return _build("GRUCell", arrays, use_bias)


def from_eqx_gru_cell(cell: eqx.nn.GRUCell) -> GRUParams:
    """jaxrnn's ``GRUParams`` from an ``eqx.nn.GRUCell`` (MATH.md §10).

    ``Wx = weight_ih.T (D, 3H)``, ``Wh = weight_hh.T (H, 3H)``, ``bx = bias (3H,)``,
    ``bh = [0, 0, bias_n] (3H,)``: equinox's ``bias_n`` is the n block of torch's
    ``bias_hh``, its r and z blocks are zero. ``use_bias=False``: ``bx = bh = 0``.

    Raises:
      TypeError: ``cell`` is not an ``eqx.nn.GRUCell``, or its arrays differ in dtype.
      ValueError: inconsistent shapes.
    """
    fn = "from_eqx_gru_cell"
    a = _read_cell(cell, "GRUCell", fn)
    Wx, Wh = a["weight_ih"], a["weight_hh"]
    assert Wx is not None and Wh is not None  # _read_cell reads both weights or raises
    zeros = np.zeros_like(Wh[0])  # (3H,)
    H = zeros.shape[0] // 3
    bx = zeros if a["bias"] is None else a["bias"]
    if a["bias_n"] is not None and a["bias_n"].shape != (H,):
        raise ValueError(f"{fn}: bias_n must have shape (H,) = ({H},), got {a['bias_n'].shape}")
    bh = zeros if a["bias_n"] is None else np.concatenate([zeros[: 2 * H], a["bias_n"]])
    p = GRUParams(Wx, Wh, bx, bh)  # pyright: ignore[reportArgumentType]  # numpy arrays in a params NamedTuple
    return GRUParams(*(jnp.asarray(v) for v in check_layer(p, fn)))
