"""flax linen ``SimpleCell`` / ``nn.RNN`` parameter trees to and from jaxrnn weights.

flax's ``SimpleCell`` computes ``h_t = f(Dense_i(x_t) + Dense_h(h_{t-1}))`` with
``(in, out)`` kernels and a bias on ``i`` only, which is MATH.md §1 with
``Wx = i/kernel``, ``Wh = h/kernel``, ``b = i/bias``: nothing is transposed. With
``residual=True`` the cell adds ``h_{t-1}`` before ``f``, i.e. ``Wh = h/kernel + I``.
flax itself is never imported: the trees are dicts of jax arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import BiRNNParams, RNNParams
from ._torch import Layer, _check_layer, _is_pair, _np, as_stack


def _unwrap(tree: Any, fn: str) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping):
        raise TypeError(f"{fn}: expected a flax parameter dict, got {type(tree).__name__}")
    return tree["params"] if set(tree) == {"params"} else tree  # accept {"params": ...}


def _get(tree: Mapping[str, Any], path: str, fn: str) -> Any:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"{fn}: missing key {path!r} (have {sorted(node)})")
        node = node[part]
    return node


def to_flax_simple_cell(params: RNNParams, *, residual: bool = False) -> dict[str, Any]:
    """The parameter tree of a flax linen ``SimpleCell`` with jaxrnn's weights.

    ``{"i": {"kernel": Wx (D, H), "bias": b (H,)}, "h": {"kernel": Wh (H, H)}}``:
    flax kernels are ``(in, out)`` like jaxrnn's, so nothing is transposed
    (MATH.md §1). ``residual=True`` targets ``SimpleCell(residual=True)``, which
    adds ``h_{t-1}`` before ``f``: then ``h/kernel = Wh - I``.

    Returns:
      The tree to pass as ``cell.apply({"params": tree}, h, x)``; jax arrays.
    """
    Wx, Wh, b = _check_layer(params, "to_flax_simple_cell")
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
    tree = _unwrap(tree, fn)
    Wx, b, Wh = (_np(_get(tree, k, fn), k) for k in ("i/kernel", "i/bias", "h/kernel"))
    if "bias" in _get(tree, "h", fn):
        raise ValueError(f"{fn}: 'h/bias' is not supported: SimpleCell's h has no bias")
    if residual:
        Wh = Wh + np.eye(Wh.shape[0], dtype=Wh.dtype)
    params = RNNParams(jnp.asarray(Wx), jnp.asarray(Wh), jnp.asarray(b))
    _check_layer(params, fn)
    return params


def to_flax_rnn(
    layers: Layer | Sequence[Layer], *, bidirectional: bool | None = None, residual: bool = False
) -> dict[str, Any]:
    """The parameter tree of flax ``nn.RNN(SimpleCell)`` modules with jaxrnn's weights.

    - an :class:`RNNParams` -> ``{"cell": cell}`` for ``nn.RNN(nn.SimpleCell(H))``;
    - a :class:`BiRNNParams` (or a ``(fwd, bwd)`` tuple with ``bidirectional=True``)
      -> ``{"forward_rnn": {"cell": ...}, "backward_rnn": {"cell": ...}}`` for
      ``nn.Bidirectional(nn.RNN(...), nn.RNN(...))``;
    - a tuple of layers -> ``{"layers_0": ..., "layers_1": ...}`` for an
      ``nn.Sequential`` of those modules (kinds and sizes may differ per layer).

    Each cell as in :func:`to_flax_simple_cell` (MATH.md §1).
    """
    single = isinstance(layers, (RNNParams, BiRNNParams)) or (bidirectional and _is_pair(layers))
    stack = as_stack(layers, bidirectional, "to_flax_rnn")

    def module(dirs):
        cells = [{"cell": to_flax_simple_cell(p, residual=residual)} for p in dirs]
        if len(cells) == 1:
            return cells[0]
        return dict(zip(("forward_rnn", "backward_rnn"), cells, strict=True))

    if single:
        return module(stack[0])
    return {f"layers_{k}": module(dirs) for k, dirs in enumerate(stack)}


def from_flax_rnn(tree: Mapping[str, Any], *, residual: bool = False) -> Layer | tuple[Layer, ...]:
    """jaxrnn weights from an ``nn.RNN`` / ``nn.Bidirectional`` / ``nn.Sequential`` tree.

    The inverse of :func:`to_flax_rnn`; the structure is read from the keys:
    ``cell`` -> :class:`RNNParams`; ``forward_rnn``/``backward_rnn`` ->
    :class:`BiRNNParams`; ``layers_0..`` -> a tuple of layers. ``{"params": ...}``
    is also accepted.

    Raises:
      KeyError: none of those keys, or a cell without ``i/kernel``, ``i/bias``, ``h/kernel``.
    """
    fn = "from_flax_rnn"
    tree = _unwrap(tree, fn)
    if "cell" in tree:
        return from_flax_simple_cell(tree["cell"], residual=residual)
    if "forward_rnn" in tree or "backward_rnn" in tree:
        return BiRNNParams(
            *(
                from_flax_simple_cell(_get(tree, f"{d}/cell", fn), residual=residual)
                for d in ("forward_rnn", "backward_rnn")
            )
        )
    n = sum(f"layers_{k}" in tree for k in range(len(tree)))
    if n == 0:
        raise KeyError(f"{fn}: expected 'cell', 'forward_rnn' or 'layers_0', got {sorted(tree)}")
    layers = tuple(
        from_flax_rnn(_get(tree, f"layers_{k}", fn), residual=residual) for k in range(n)
    )
    as_stack(layers, None, fn)  # each layer reads the previous one's output
    return layers
