"""Weight converters between jaxrnn and torch ``nn.RNN`` (flax: ``_convert_flax``).

jaxrnn's layer is ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)`` (MATH.md §1, row-major).
torch ``nn.RNN`` computes ``h_t = f(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, so
``weight_ih_l{k} = Wx.T``, ``weight_hh_l{k} = Wh.T``, ``bias_ih_l{k} + bias_hh_l{k} = b``
(exported as ``bias_ih = b``, ``bias_hh = 0``); the backward direction of a
bidirectional layer carries the suffix ``_reverse``. ``nonlinearity`` is tanh or relu.

Layers, as :func:`jaxrnn.stack_forward` takes them: one layer is an
:class:`RNNParams`, a bidirectional one a :class:`BiRNNParams` ``(fwd, bwd)`` (a
plain ``(fwd, bwd)`` tuple is accepted with ``bidirectional=True``), and a stack
a tuple of layers, layer 0 first. torch is never imported: state dicts go out as
numpy arrays, and anything with ``__array__`` or ``.detach()`` (a tensor) comes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import BiRNNParams, RNNParams

Layer = RNNParams | BiRNNParams


def _np(value: Any, where: str) -> np.ndarray:
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


def _one_dtype(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raises TypeError naming the arrays if they do not share one dtype."""
    if len({a.dtype for a in arrays.values()}) > 1:
        got = ", ".join(f"{k} {a.dtype}" for k, a in arrays.items())
        raise TypeError(
            f"{where}: the weights must share one dtype, got {got}; cast them to one first"
        )


def _check_layer(p: Any, where: str) -> RNNParams:
    """Checks ``Wx: (D, H)``, ``Wh: (H, H)``, ``b: (H,)`` and returns numpy RNNParams."""
    if not isinstance(p, RNNParams):
        raise TypeError(f"{where} must be an RNNParams(Wx, Wh, b), got {type(p).__name__}")
    Wx, Wh, b = (_np(a, f"{where}.{n}") for a, n in zip(p, RNNParams._fields, strict=True))
    _one_dtype({"Wx": Wx, "Wh": Wh, "b": b}, where)
    if Wx.ndim != 2 or Wh.ndim != 2 or b.ndim != 1:
        raise ValueError(
            f"{where}: expected Wx (D, H), Wh (H, H), b (H,), got shapes "
            f"{Wx.shape}, {Wh.shape}, {b.shape}"
        )
    H = Wh.shape[0]
    if Wh.shape != (H, H) or Wx.shape[1] != H or b.shape != (H,):
        raise ValueError(
            f"{where}: inconsistent hidden size: Wx {Wx.shape}, Wh {Wh.shape}, b {b.shape}"
        )
    return RNNParams(Wx, Wh, b)


def _is_pair(x: Any) -> bool:
    return (
        isinstance(x, Sequence)
        and not isinstance(x, RNNParams)
        and len(x) == 2
        and all(isinstance(p, RNNParams) for p in x)
    )


def as_stack(layers: Any, bidirectional: bool | None, fn: str) -> list[tuple[RNNParams, ...]]:
    """Normalises one layer or a stack to a list of ``(fwd,)`` or ``(fwd, bwd)`` tuples.

    ``bidirectional``: None takes each layer as it is (BiRNNParams is bidirectional);
    True also reads plain ``(fwd, bwd)`` tuples as layers and requires every layer
    bidirectional; False requires every layer to be an RNNParams. Checks that layer
    k > 0 reads the previous layer's output (H or 2H features).
    """
    if isinstance(layers, (RNNParams, BiRNNParams)) or (bidirectional and _is_pair(layers)):
        layers = (layers,)
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise TypeError(f"{fn}: layers must be an RNNParams, a BiRNNParams or a tuple of layers")
    stack = []
    for k, layer in enumerate(layers):
        bi = isinstance(layer, BiRNNParams) or (bool(bidirectional) and _is_pair(layer))
        if bidirectional is not None and bi != bidirectional:
            want = "a BiRNNParams(fwd, bwd)" if bidirectional else "an RNNParams"
            raise TypeError(
                f"{fn}: bidirectional={bidirectional} needs {want} for layer {k}, "
                f"got {type(layer).__name__}"
            )
        dirs = zip(layer, ("fwd", "bwd"), strict=True) if bi else [(layer, "")]
        stack.append(tuple(_check_layer(p, f"{fn}: layer {k} {d}".rstrip()) for p, d in dirs))
    _one_dtype(
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
                    f"{width} features: Wx must be ({width}, H)"
                )
    return stack


def to_torch_state_dict(
    layers: Layer | Sequence[Layer], *, bidirectional: bool | None = None, prefix: str = ""
) -> dict[str, np.ndarray]:
    """Builds the ``state_dict`` of a ``torch.nn.RNN`` from jaxrnn weights.

    ``weight_ih_l{k} = Wx.T`` ``(H, D_k)``, ``weight_hh_l{k} = Wh.T`` ``(H, H)``,
    ``bias_ih_l{k} = b``, ``bias_hh_l{k} = 0`` ``(H,)`` (MATH.md §1: torch's two
    biases only ever appear as a sum); ``_reverse`` keys for the backward direction.

    Args:
      layers: one layer or a tuple of layers (layer 0 first): :class:`RNNParams`,
        or :class:`BiRNNParams` for ``bidirectional=True`` models. torch needs
        every layer of one kind and one hidden size H.
      bidirectional: None reads it from the layers; True also accepts plain
        ``(fwd, bwd)`` tuples.
      prefix: prepended to every key (e.g. ``"rnn."`` inside a larger model).

    Returns:
      A dict of contiguous numpy arrays; load with
      ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    fn = "to_torch_state_dict"
    stack = as_stack(layers, bidirectional, fn)
    kinds = {(len(dirs), dirs[0].Wh.shape[0]) for dirs in stack}
    if len(kinds) > 1:
        raise ValueError(
            f"{fn}: torch.nn.RNN needs one hidden size and one direction count for all "
            f"layers, got (directions, H) = {sorted(kinds)}"
        )
    out = {}
    for k, dirs in enumerate(stack):
        for p, suffix in zip(dirs, ("", "_reverse")[: len(dirs)], strict=True):
            out[f"{prefix}weight_ih_l{k}{suffix}"] = np.ascontiguousarray(p.Wx.T)
            out[f"{prefix}weight_hh_l{k}{suffix}"] = np.ascontiguousarray(p.Wh.T)
            out[f"{prefix}bias_ih_l{k}{suffix}"] = np.array(p.b)
            out[f"{prefix}bias_hh_l{k}{suffix}"] = np.zeros_like(p.b)
    return out


def _torch_layer(state_dict, keys: dict, names: list[str], prefix: str) -> RNNParams:
    """One direction of one layer: ``names`` = weight_ih, weight_hh[, bias_ih, bias_hh] keys."""
    w = {prefix + n: _np(state_dict[keys[n]], prefix + n) for n in names}
    _one_dtype(w, "from_torch_state_dict")
    W_ih, W_hh, *biases = w.values()
    H = W_hh.shape[-1] if W_hh.ndim == 2 else 0
    for gates, kind in ((4, "LSTM"), (3, "GRU")):
        if H and W_hh.shape == (gates * H, H):
            raise ValueError(
                f"from_torch_state_dict: {prefix}{names[1]} has shape {W_hh.shape}, "
                f"({gates}H, H) with H={H}: this is a torch.nn.{kind} state dict; jaxrnn "
                "converts torch.nn.RNN (the vanilla RNN) only"
            )
    b = biases[0] + biases[1] if biases else np.zeros(W_hh.shape[:1], W_hh.dtype)
    return RNNParams(*(jnp.asarray(a) for a in (W_ih.T, W_hh.T, b)))


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    *,
    num_layers: int | None = None,
    bidirectional: bool | None = None,
    prefix: str = "",
) -> tuple[Layer, ...]:
    """Reads jaxrnn weights from the ``state_dict`` of a ``torch.nn.RNN``.

    ``Wx = weight_ih_l{k}.T``, ``Wh = weight_hh_l{k}.T``, ``b = bias_ih_l{k} + bias_hh_l{k}``
    (MATH.md §1); without bias keys (``bias=False``) ``b = 0``.

    Args:
      state_dict: name -> tensor or array (torch tensors are detached and copied).
      num_layers, bidirectional: the torch model's settings; ``None`` infers them
        from the keys, a value checks that every key it implies is present.
      prefix: the keys' common prefix (e.g. ``"rnn."`` for a submodule).

    Returns:
      A tuple with one entry per layer: an :class:`RNNParams` of jax arrays, or
      a :class:`BiRNNParams` of them for a bidirectional model (the
      ``_reverse`` weights are ``bwd``).

    Raises:
      KeyError: a weight the model must have is missing; the message names it.
      ValueError: a weight has the wrong shape, or keys are left over.
    """
    keys = {k[len(prefix) :]: k for k in state_dict if k.startswith(prefix)}
    if num_layers is None:
        num_layers = sum(f"weight_ih_l{k}" in keys for k in range(len(keys) + 1))
    if bidirectional is None:
        bidirectional = "weight_ih_l0_reverse" in keys
    if num_layers < 1:
        found = [k[: -len("weight_ih_l0")] for k in state_dict if k.endswith("weight_ih_l0")]
        hint = f" (the keys have prefix={found[0]!r})" if found else ""
        raise KeyError(f"from_torch_state_dict: missing key {prefix}weight_ih_l0{hint}")
    has_bias = "bias_ih_l0" in keys or "bias_hh_l0" in keys
    used, layers = set(), []
    for k in range(num_layers):
        dirs = []
        for suffix in ("", "_reverse") if bidirectional else ("",):
            names = [f"{n}_l{k}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            for name in names if has_bias else names[:2]:
                if name not in keys:
                    raise KeyError(f"from_torch_state_dict: missing key {prefix}{name}")
                used.add(name)
            p = _torch_layer(state_dict, keys, names if has_bias else names[:2], prefix)
            _check_layer(p, f"from_torch_state_dict: layer {k}{suffix}")
            dirs.append(p)
        layers.append(BiRNNParams(*dirs) if bidirectional else dirs[0])
    extra = sorted(prefix + n for n in set(keys) - used)
    if extra:
        raise ValueError(
            f"from_torch_state_dict: unexpected keys {extra} for num_layers={num_layers}, "
            f"bidirectional={bidirectional} (pass prefix= for a submodule's keys)"
        )
    as_stack(tuple(layers), bidirectional, "from_torch_state_dict")  # layer sizes agree
    return tuple(layers)
