"""Weight converters between jaxrnn and torch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

jaxrnn multiplies row vectors, ``x_t @ Wx`` (MATH.md §1, §9, §10); torch multiplies
by the transpose, ``x_t W_ih^T``, so every weight is transposed:

- ``nn.RNN``: ``Wx = weight_ih.T``, ``Wh = weight_hh.T``, ``b = bias_ih + bias_hh``
  (torch's two biases only ever appear as a sum; exported as ``bias_ih = b``,
  ``bias_hh = 0``). ``nonlinearity`` is tanh or relu.
- ``nn.LSTM``: as ``nn.RNN``, but torch stacks the gate blocks as ``(i, f, g, o)``
  and jaxrnn as CS231n's ``(i, f, o, g)``: the last two blocks of H swap, in the
  weights and in the bias. Both biases are summed into ``b``.
- ``nn.GRU``: jaxrnn's GRU *is* torch's formulation (MATH.md §10, gates
  ``(r, z, n)``): ``bx = bias_ih``, ``bh = bias_hh``, kept apart because the
  n gate's ``bh`` sits inside ``r ⊙ (h Wh_n + bh_n)``.

The backward direction of a bidirectional layer carries the suffix ``_reverse``.
The cell is read from ``weight_hh_l0``'s shape: ``(H, H)``, ``(4H, H)`` or ``(3H, H)``.
torch is never imported: state dicts go out as numpy arrays, and anything with
``__array__`` or ``.detach()`` (a tensor) comes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from .. import BiRNNParams, GRUParams
from ._validate import KINDS, Cell, Layer, as_stack, check_layer, np_array, one_dtype

_BY_GATES = {k.gates: cls for cls, k in KINDS.items()}  # 1, 4, 3 -> the params type
_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def torch_gate_order(a: npt.ArrayLike, gates: int) -> np.ndarray:
    """Reorders the gate blocks along axis 0 between torch's order and jaxrnn's (the
    registry's ``torch_gates``): the LSTM's ``(i, f, g, o) <-> (i, f, o, g)``.

    Its own inverse (the only reordering is a swap); other cells are returned as they are.
    """
    perm = KINDS[_BY_GATES[gates]].torch_gates
    if perm == tuple(range(gates)):
        return np.asarray(a)
    blocks = np.split(np.asarray(a), gates, axis=0)
    return np.concatenate([blocks[j] for j in perm], axis=0)


def _one_kind(stack: list[tuple[Cell, ...]], fn: str) -> int:
    kinds = {type(dirs[0]) for dirs in stack}
    if len(kinds) > 1:
        got = ", ".join(f"layer {k} {type(d[0]).__name__}" for k, d in enumerate(stack))
        raise TypeError(f"{fn}: a torch model has one cell for all layers, got {got}")
    sizes = {(len(dirs), dirs[0].Wh.shape[0]) for dirs in stack}
    if len(sizes) > 1:
        raise ValueError(
            f"{fn}: torch.{KINDS[kinds.pop()].torch} needs one hidden size and one direction "
            f"count for all layers, got (directions, H) = {sorted(sizes)}"
        )
    return KINDS[kinds.pop()].gates


def to_torch_state_dict(
    layers: Layer | Sequence[Layer],
    *,
    bidirectional: bool | None = None,
    prefix: str = "",
    bias: bool = True,
) -> dict[str, np.ndarray]:
    """Builds the ``state_dict`` of a ``torch.nn.RNN``, ``nn.LSTM`` or ``nn.GRU``.

    ``weight_ih_l{k} = Wx.T`` ``(gH, D_k)``, ``weight_hh_l{k} = Wh.T`` ``(gH, H)``, with
    the LSTM's gate blocks reordered to torch's ``(i, f, g, o)``; RNN and LSTM:
    ``bias_ih_l{k} = b``, ``bias_hh_l{k} = 0`` (MATH.md §1, §9: torch's two biases only
    appear as a sum); GRU: ``bias_ih_l{k} = bx``, ``bias_hh_l{k} = bh`` (§10).
    ``_reverse`` keys hold the backward direction.

    Args:
      layers: one layer or a tuple of layers (layer 0 first): :class:`RNNParams`,
        :class:`LSTMParams` or :class:`GRUParams`, or :class:`BiRNNParams` of them
        for ``bidirectional=True`` models. torch needs every layer of one cell,
        one hidden size H and one direction count.
      bidirectional: None reads it from the layers; True also accepts plain
        ``(fwd, bwd)`` tuples.
      prefix: prepended to every key (e.g. ``"rnn."`` inside a larger model).
      bias: the torch model's ``bias`` setting. ``False`` writes no bias keys (what a
        ``bias=False`` model's ``load_state_dict`` expects), and refuses layers whose
        biases are not all zero: such a model cannot hold them.

    Returns:
      A dict of contiguous, writable numpy arrays; load with
      ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    fn = "to_torch_state_dict"
    stack = as_stack(layers, bidirectional, fn)
    g = _one_kind(stack, fn)
    out = {}
    for k, dirs in enumerate(stack):
        for p, suffix in zip(dirs, ("", "_reverse")[: len(dirs)], strict=True):
            if isinstance(p, GRUParams):
                b_ih, b_hh = p.bx, p.bh
            else:
                b_ih, b_hh = torch_gate_order(p.b, g), np.zeros_like(p.b)
            arrays = (torch_gate_order(p.Wx.T, g), torch_gate_order(p.Wh.T, g), b_ih, b_hh)
            if not bias:
                _refuse_biases(p, f"layer {k}{suffix}", fn)
                arrays = arrays[:2]
            for name, a in zip(_NAMES, arrays, strict=False):
                out[f"{prefix}{name}_l{k}{suffix}"] = np.array(a, order="C")  # a writable copy
    return out


def _refuse_biases(p: Cell, where: str, fn: str) -> None:
    """With ``bias=False``, every bias must be zero: the torch model has none to hold it."""
    for name, b in zip(p._fields[2:], p[2:], strict=True):
        if np.any(np.asarray(b) != 0):
            raise ValueError(
                f"{fn}: bias=False writes no biases, but {where} has a non-zero {name} "
                f"(max |{name}| = {float(np.max(np.abs(b))):.3g}); a torch model built with "
                "bias=False cannot hold it: pass bias=True"
            )


def _infer_gates(W_hh: np.ndarray, key: str) -> int:
    """1, 4 or 3 gate blocks from ``weight_hh_l0``'s shape ``(gH, H)``."""
    if W_hh.ndim == 2 and W_hh.shape[1] > 0 and W_hh.shape[0] % W_hh.shape[1] == 0:
        g = W_hh.shape[0] // W_hh.shape[1]
        if g in _BY_GATES:
            return g
    raise ValueError(
        f"from_torch_state_dict: layer 0: inconsistent hidden size: {key} has shape "
        f"{W_hh.shape}, expected (H, H) (nn.RNN), (4H, H) (nn.LSTM) or (3H, H) (nn.GRU)"
    )


def _check_torch_shapes(w: dict[str, np.ndarray], gates: int, H: int, where: str) -> None:
    """Each key against the torch shape of this cell: ``(gH, D)``, ``(gH, H)``, ``(gH,)``."""
    gH, cell = gates * H, KINDS[_BY_GATES[gates]].torch
    W_ih, W_hh, *biases = w
    want = {W_ih: (gH, w[W_ih].shape[-1]), W_hh: (gH, H), **{b: (gH,) for b in biases}}
    for key, shape in want.items():
        if w[key].shape != shape or (key == W_ih and w[key].ndim != 2):
            raise ValueError(
                f"from_torch_state_dict: {where}: inconsistent hidden size: {key} has shape "
                f"{w[key].shape}, expected {shape} for a torch.{cell} with H={H}"
            )


def _torch_layer(w: dict[str, np.ndarray], gates: int, dtype) -> Cell:
    """One direction of one layer from ``weight_ih, weight_hh[, bias_ih, bias_hh]``."""
    W_ih, W_hh, *biases = (torch_gate_order(a, gates) for a in w.values())
    if not biases:  # bias=False
        biases = [np.zeros(W_hh.shape[:1], dtype)] * 2
    cls = _BY_GATES[gates]
    b = tuple(biases) if cls is GRUParams else (biases[0] + biases[1],)
    return cls(*(jnp.asarray(a) for a in (W_ih.T, W_hh.T, *b)))


def _read_layer(state_dict, keys, k: int, suffix: str, ctx: tuple) -> Cell:
    gates, H, has_bias, prefix, used = ctx
    names = [f"{n}_l{k}{suffix}" for n in _NAMES][: 4 if has_bias else 2]
    for name in names:
        if name not in keys:
            raise KeyError(f"from_torch_state_dict: missing key {prefix}{name}")
        used.add(name)
    w = {prefix + n: np_array(state_dict[keys[n]], prefix + n) for n in names}
    one_dtype(w, "from_torch_state_dict")
    _check_torch_shapes(w, gates, H, f"layer {k}{suffix}")
    p = _torch_layer(w, gates, next(iter(w.values())).dtype)
    return check_layer(p, f"from_torch_state_dict: layer {k}{suffix}")


def _refuse_projections(keys: Mapping[str, str], prefix: str) -> None:
    hr = sorted(prefix + k for k in keys if k.startswith("weight_hr_l"))
    if hr:
        raise ValueError(
            f"from_torch_state_dict: {hr[0]} is the projection of nn.LSTM(proj_size > 0), "
            "h_t = W_hr (o ⊙ tanh c_t); jaxrnn's LSTM has no projection (MATH.md §9)"
        )


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    *,
    num_layers: int | None = None,
    bidirectional: bool | None = None,
    prefix: str = "",
) -> tuple[Layer, ...]:
    """Reads jaxrnn weights from a ``torch.nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` ``state_dict``.

    The cell is read from ``weight_hh_l0``: ``(H, H)`` -> :class:`RNNParams`,
    ``(4H, H)`` -> :class:`LSTMParams`, ``(3H, H)`` -> :class:`GRUParams`.
    ``Wx = weight_ih_l{k}.T``, ``Wh = weight_hh_l{k}.T``; RNN ``b = bias_ih + bias_hh``
    (§1); LSTM the same with torch's gate blocks ``(i, f, g, o)`` reordered to
    ``(i, f, o, g)`` (§9); GRU ``bx = bias_ih``, ``bh = bias_hh`` (§10). Without bias
    keys (``bias=False``) the biases are zero.

    Args:
      state_dict: name -> tensor or array (torch tensors are detached and copied).
      num_layers, bidirectional: the torch model's settings; ``None`` infers them
        from the keys, a value checks that every key it implies is present.
      prefix: the keys' common prefix (e.g. ``"rnn."`` for a submodule).

    Returns:
      A tuple with one entry per layer: the cell's params of jax arrays, or a
      :class:`BiRNNParams` of them for a bidirectional model (``_reverse`` is ``bwd``).

    Raises:
      KeyError: a weight the model must have is missing; the message names it.
      ValueError: a weight has the wrong shape for the cell, keys are left over, or
        the dict is an ``nn.LSTM(proj_size > 0)``'s.
      TypeError: weights of one layer or of the stack differ in dtype.
    """
    keys = {k[len(prefix) :]: k for k in state_dict if k.startswith(prefix)}
    if num_layers is None:
        num_layers = sum(f"weight_ih_l{k}" in keys for k in range(len(keys) + 1))
    if bidirectional is None:
        bidirectional = "weight_ih_l0_reverse" in keys
    if num_layers < 1 or "weight_hh_l0" not in keys:
        found = [k[: -len("weight_ih_l0")] for k in state_dict if k.endswith("weight_ih_l0")]
        hint = f" (the keys have prefix={found[0]!r})" if found and num_layers < 1 else ""
        name = "weight_ih_l0" if num_layers < 1 else "weight_hh_l0"
        raise KeyError(f"from_torch_state_dict: missing key {prefix}{name}{hint}")
    _refuse_projections(keys, prefix)
    W_hh = np_array(state_dict[keys["weight_hh_l0"]], prefix + "weight_hh_l0")
    gates = _infer_gates(W_hh, prefix + "weight_hh_l0")
    has_bias = "bias_ih_l0" in keys or "bias_hh_l0" in keys
    used: set[str] = set()
    ctx = (gates, W_hh.shape[1], has_bias, prefix, used)
    layers = []
    for k in range(num_layers):
        dirs = [
            _read_layer(state_dict, keys, k, s, ctx) for s in ("", "_reverse")[: 1 + bidirectional]
        ]
        layers.append(BiRNNParams(*dirs) if bidirectional else dirs[0])
    extra = sorted(prefix + n for n in set(keys) - used)
    if extra:
        raise ValueError(
            f"from_torch_state_dict: unexpected keys {extra} for num_layers={num_layers}, "
            f"bidirectional={bidirectional} (pass prefix= for a submodule's keys)"
        )
    as_stack(tuple(layers), bidirectional, "from_torch_state_dict")  # layer sizes agree
    return tuple(layers)
