"""flax linen cell parameter trees to and from jaxrnn weights: ``SimpleCell``,
``LSTMCell`` / ``OptimizedLSTMCell`` (one tree for both) and ``GRUCell``.

flax's ``Dense`` kernels are ``(in, out)`` like jaxrnn's, so nothing is transposed;
flax keeps one dense per gate where jaxrnn keeps one block of H columns per gate.

- ``SimpleCell``: ``h' = f(Dense_i(x) + Dense_h(h))``, bias on ``i`` only: MATH.md §1
  with ``Wx = i/kernel``, ``Wh = h/kernel``, ``b = i/bias``. ``residual=True`` adds
  ``h`` before ``f``: ``Wh = h/kernel + I``.
- ``LSTMCell``: ``i, f, o = σ(ii(x) + hi(h)), ...; g = tanh(ig(x) + hg(h))``,
  ``c' = f c + i g``, ``h' = o tanh(c')``: MATH.md §9 exactly, the bias on the ``h*``
  denses only. jaxrnn's blocks ``(i, f, o, g)`` are ``i{gate}/kernel`` (Wx),
  ``h{gate}/kernel`` (Wh), ``h{gate}/bias`` (b). flax's carry is ``(c, h)``.
- ``GRUCell``: ``r = σ(ir(x) + hr(h))``, ``z = σ(iz(x) + hz(h))``,
  ``n = tanh(in(x) + r ⊙ hn(h))``, ``h' = (1 - z) n + z h``: torch's GRU (MATH.md §10)
  with no bias on ``hr``, ``hz``. So ``bx = [ir, iz, in]/bias``, ``bh = [0, 0, hn/bias]``,
  and going to flax ``bh``'s r and z blocks (which only appear summed with ``bx``'s)
  fold into ``ir/bias``, ``iz/bias``: the functions are equal, the split of those
  two biases is not kept.

The flax cells' ``gate_fn`` and ``activation_fn`` are not in the parameters: these
mappings hold for the defaults (sigmoid, tanh), the only ones jaxrnn's LSTM and GRU
compute. flax itself is never imported: the trees are dicts of jax arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import GRUParams, LSTMParams, RNNParams
from ._validate import check_layer, np_array, one_dtype

LSTM_GATES = ("i", "f", "o", "g")  # jaxrnn's column blocks (CS231n's order)
GRU_GATES = ("r", "z", "n")  # jaxrnn's and torch's


def unwrap(tree: Any, fn: str) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping):
        raise TypeError(f"{fn}: expected a flax parameter dict, got {type(tree).__name__}")
    return tree["params"] if set(tree) == {"params"} else tree  # accept {"params": ...}


def get(tree: Mapping[str, Any], path: str, fn: str) -> Any:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            have = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise KeyError(f"{fn}: missing key {path!r} (have {have})")
        node = node[part]
    return node


def _read(tree: Mapping[str, Any], shapes: dict[str, str], fn: str) -> dict[str, np.ndarray]:
    """The arrays at ``shapes``' paths, checked: one dtype, and ``"D,H"``-style shapes
    with D from the first ``i*`` kernel and H from the first ``h*`` kernel."""
    arrays = {path: np_array(get(tree, path, fn), f"{fn}: {path}") for path in shapes}
    one_dtype(arrays, fn)
    kernels = [p for p in shapes if p.endswith("kernel")]
    i, h = (arrays[next(p for p in kernels if p[0] == d)] for d in "ih")
    dims = {"D": i.shape[0] if i.ndim else 0, "H": h.shape[-1] if h.ndim else 0}
    for path, template in shapes.items():
        want = tuple(dims[n] for n in template.split(","))
        if arrays[path].shape != want:
            raise ValueError(
                f"{fn}: {path} has shape {arrays[path].shape}, expected ({template}) = {want}"
            )
    return arrays


def _refuse_biases(tree: Mapping[str, Any], denses: list[str], cell: str, fn: str) -> None:
    for d in denses:
        if isinstance(tree.get(d), Mapping) and "bias" in tree[d]:
            raise ValueError(f"{fn}: '{d}/bias' is not supported: {cell}'s {d} has no bias")


def to_flax_simple_cell(params: RNNParams, *, residual: bool = False) -> dict[str, Any]:
    """The parameter tree of a flax linen ``SimpleCell`` with jaxrnn's weights.

    ``{"i": {"kernel": Wx (D, H), "bias": b (H,)}, "h": {"kernel": Wh (H, H)}}``:
    flax kernels are ``(in, out)`` like jaxrnn's, so nothing is transposed
    (MATH.md §1). ``residual=True`` targets ``SimpleCell(residual=True)``, which
    adds ``h_{t-1}`` before ``f``: then ``h/kernel = Wh - I``.

    Returns:
      The tree to pass as ``cell.apply({"params": tree}, h, x)``; jax arrays.
    """
    Wx, Wh, b = check_layer(params, "to_flax_simple_cell", (RNNParams,))
    if residual:
        Wh = Wh - np.eye(Wh.shape[0], dtype=Wh.dtype)
    return {
        "i": {"kernel": jnp.asarray(Wx), "bias": jnp.asarray(b)},
        "h": {"kernel": jnp.asarray(Wh)},
    }


def from_flax_simple_cell(tree: Mapping[str, Any], *, residual: bool = False) -> RNNParams:
    """jaxrnn weights from a flax ``SimpleCell`` tree (``{"params": ...}`` also accepted).

    ``Wx = i/kernel``, ``Wh = h/kernel`` (``+ I`` with ``residual=True``), ``b = i/bias``.

    Raises:
      KeyError: ``i/kernel``, ``i/bias`` or ``h/kernel`` is missing.
      ValueError: ``h`` has a bias (jaxrnn has one bias per layer) or shapes disagree.
    """
    fn = "from_flax_simple_cell"
    tree = unwrap(tree, fn)
    Wx, b, Wh = (np_array(get(tree, k, fn), k) for k in ("i/kernel", "i/bias", "h/kernel"))
    _refuse_biases(tree, ["h"], "SimpleCell", fn)
    if residual:
        Wh = Wh + np.eye(Wh.shape[0], dtype=Wh.dtype)
    params = RNNParams(jnp.asarray(Wx), jnp.asarray(Wh), jnp.asarray(b))
    check_layer(params, fn)
    return params


def to_flax_lstm_cell(params: LSTMParams) -> dict[str, Any]:
    """The parameter tree of a flax linen ``LSTMCell`` or ``OptimizedLSTMCell``.

    For each gate ``q`` of ``(i, f, o, g)`` (jaxrnn's blocks of H columns, §9):
    ``{"iq": {"kernel": Wx_q (D, H)}, "hq": {"kernel": Wh_q (H, H), "bias": b_q (H,)}}``.
    The cell's carry is ``(c, h)``; its ``gate_fn``/``activation_fn`` must be the
    defaults (sigmoid, tanh).
    """
    p = check_layer(params, "to_flax_lstm_cell", (LSTMParams,))
    Wx, Wh, b = (np.split(a, 4, axis=-1) for a in p)
    tree: dict[str, Any] = {}
    for q, wx, wh, bq in zip(LSTM_GATES, Wx, Wh, b, strict=True):
        tree[f"i{q}"] = {"kernel": jnp.asarray(wx)}
        tree[f"h{q}"] = {"kernel": jnp.asarray(wh), "bias": jnp.asarray(bq)}
    return tree


def from_flax_lstm_cell(tree: Mapping[str, Any]) -> LSTMParams:
    """jaxrnn weights from a flax ``LSTMCell`` / ``OptimizedLSTMCell`` tree (§9).

    ``Wx = [ii, if, io, ig]/kernel``, ``Wh = [hi, hf, ho, hg]/kernel``,
    ``b = [hi, hf, ho, hg]/bias``: flax's ``(i, f, g, o)`` denses in CS231n's order.

    Raises:
      KeyError: a dense's kernel or bias is missing (the message names it).
      ValueError: a shape disagrees (named), or an ``i*`` dense has a bias.
      TypeError: the arrays differ in dtype (named).
    """
    fn = "from_flax_lstm_cell"
    tree = unwrap(tree, fn)
    shapes = {f"i{q}/kernel": "D,H" for q in LSTM_GATES}
    shapes.update({f"h{q}/kernel": "H,H" for q in LSTM_GATES})
    shapes.update({f"h{q}/bias": "H" for q in LSTM_GATES})
    a = _read(tree, shapes, fn)
    _refuse_biases(tree, [f"i{q}" for q in LSTM_GATES], "LSTMCell", fn)
    Wx, Wh, b = (
        np.concatenate([a[f"{d}{q}/{n}"] for q in LSTM_GATES], axis=-1)
        for d, n in (("i", "kernel"), ("h", "kernel"), ("h", "bias"))
    )
    return LSTMParams(jnp.asarray(Wx), jnp.asarray(Wh), jnp.asarray(b))


def to_flax_gru_cell(params: GRUParams) -> dict[str, Any]:
    """The parameter tree of a flax linen ``GRUCell`` (MATH.md §10).

    ``i{r,z,n}/kernel = Wx`` blocks, ``h{r,z,n}/kernel = Wh`` blocks,
    ``ir/bias = bx_r + bh_r``, ``iz/bias = bx_z + bh_z``, ``in/bias = bx_n``,
    ``hn/bias = bh_n``: flax has no bias on ``hr``, ``hz``, and there ``bh`` only
    adds to ``bx``, so the sum carries over exactly.
    """
    p = check_layer(params, "to_flax_gru_cell", (GRUParams,))
    (xr, xz, xn), (hr, hz, hn), (br, bz, bn), (cr, cz, cn) = (np.split(a, 3, axis=-1) for a in p)
    tree = {
        "ir": {"kernel": xr, "bias": br + cr},
        "iz": {"kernel": xz, "bias": bz + cz},
        "in": {"kernel": xn, "bias": bn},
        "hr": {"kernel": hr},
        "hz": {"kernel": hz},
        "hn": {"kernel": hn, "bias": cn},
    }
    return {d: {k: jnp.asarray(v) for k, v in dense.items()} for d, dense in tree.items()}


def from_flax_gru_cell(tree: Mapping[str, Any]) -> GRUParams:
    """jaxrnn weights from a flax ``GRUCell`` tree (§10).

    ``Wx = [ir, iz, in]/kernel``, ``Wh = [hr, hz, hn]/kernel``,
    ``bx = [ir, iz, in]/bias``, ``bh = [0, 0, hn/bias]``.

    Raises:
      KeyError: a dense's kernel or bias is missing (the message names it).
      ValueError: a shape disagrees (named), or ``hr``/``hz`` has a bias.
      TypeError: the arrays differ in dtype (named).
    """
    fn = "from_flax_gru_cell"
    tree = unwrap(tree, fn)
    shapes = {f"i{q}/kernel": "D,H" for q in GRU_GATES}
    shapes.update({f"h{q}/kernel": "H,H" for q in GRU_GATES})
    shapes.update({f"i{q}/bias": "H" for q in GRU_GATES} | {"hn/bias": "H"})
    a = _read(tree, shapes, fn)
    _refuse_biases(tree, ["hr", "hz"], "GRUCell", fn)
    Wx, Wh, bx = (
        np.concatenate([a[f"{d}{q}/{n}"] for q in GRU_GATES], axis=-1)
        for d, n in (("i", "kernel"), ("h", "kernel"), ("i", "bias"))
    )
    zeros = np.zeros_like(a["hn/bias"])
    bh = np.concatenate([zeros, zeros, a["hn/bias"]])
    return GRUParams(*(jnp.asarray(v) for v in (Wx, Wh, bx, bh)))
