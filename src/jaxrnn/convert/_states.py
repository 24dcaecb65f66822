"""torch's ``hx`` (``h_0`` or ``(h_0, c_0)``, ``(L * dirs, N, H)``) to and from the
per-layer states of :func:`jaxrnn.stack_forward`.

jaxrnn keeps one ``(N, S)`` array per layer: ``h`` (RNN, GRU), ``[h | c]`` (LSTM),
``[state_fwd | state_bwd]`` when bidirectional. torch keeps ``h`` (and the LSTM's
``c``) of every layer and direction on a leading axis, layer 0's forward direction
first. Only shapes are read from ``layers``, so both functions work under ``jit``
and ``grad`` (they are concatenations and slices).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from .. import BiRNNParams, LSTMParams
from ._validate import CELLS, Layer, is_layer


def _layout(layers: Any, fn: str) -> tuple[list[int], bool, int]:
    """``(directions per layer, is LSTM, H)`` of a torch-shaped stack (one cell, one H)."""
    if is_layer(layers, None):
        layers = (layers,)
    dirs = [p if isinstance(p, BiRNNParams) else (p,) for p in layers]
    cells = [c for d in dirs for c in d]
    if not cells or not all(isinstance(c, CELLS) for c in cells):
        raise TypeError(f"{fn}: layers must be a layer or a tuple of layers")
    lstm = {isinstance(c, LSTMParams) for c in cells}
    sizes = {c.Wh.shape[0] for c in cells}
    if len(lstm) > 1 or len(sizes) > 1:
        raise ValueError(f"{fn}: torch's hx needs one cell and one hidden size for all layers")
    return [len(d) for d in dirs], lstm.pop(), sizes.pop()


def _check_hx(a: Any, name: str, rows: int, H: int, fn: str) -> jnp.ndarray:
    shape = jnp.shape(a)
    if len(shape) < 2 or shape[0] != rows or shape[-1] != H:
        raise ValueError(
            f"{fn}: {name} must be ({rows}, N, {H}) (L * directions, N, H), got {shape}"
        )
    return jnp.asarray(a)


def from_torch_hidden(hx: Any, layers: Layer | Sequence[Layer]) -> tuple[jnp.ndarray, ...]:
    """The initial states for :func:`jaxrnn.stack_forward` from torch's ``hx``.

    Args:
      hx: ``h_0`` ``(L * dirs, N, H)``, or ``(h_0, c_0)`` for an LSTM (as torch takes it).
      layers: the stack (e.g. from :func:`from_torch_state_dict`).

    Returns:
      One ``(N, S)`` array per layer: ``h``, or ``[h | c]`` for the LSTM, directions
      concatenated ``[fwd | bwd]``.
    """
    fn = "from_torch_hidden"
    dirs, lstm, H = _layout(layers, fn)
    if lstm != (isinstance(hx, tuple) and len(hx) == 2):
        want = "a tuple (h_0, c_0)" if lstm else "one array h_0"
        raise TypeError(f"{fn}: torch's hx is {want} for these layers, got {type(hx).__name__}")
    parts = [
        _check_hx(a, n, sum(dirs), H, fn)
        for a, n in zip(hx if lstm else (hx,), ("h_0", "c_0")[: 1 + lstm], strict=True)
    ]
    states, i = [], 0
    for d in dirs:
        states.append(jnp.concatenate([a[j] for j in range(i, i + d) for a in parts], axis=-1))
        i += d
    return tuple(states)


def to_torch_hidden(states: Sequence[Any], layers: Layer | Sequence[Layer]) -> Any:
    """torch's ``h_n`` (or ``(h_n, c_n)`` for an LSTM) from per-layer final states.

    Args:
      states: one ``(N, S)`` array per layer, as :func:`jaxrnn.stack_forward`
        returns them.
      layers: the stack.

    Returns:
      ``h_n`` ``(L * dirs, N, H)``, or ``(h_n, c_n)`` for an LSTM.
    """
    fn = "to_torch_hidden"
    dirs, lstm, H = _layout(layers, fn)
    if len(states) != len(dirs):
        raise ValueError(f"{fn}: {len(dirs)} layers but {len(states)} states")
    per = 2 * H if lstm else H
    h, c = [], []
    for k, (s, d) in enumerate(zip(states, dirs, strict=True)):
        if jnp.shape(s)[-1] != d * per:
            raise ValueError(f"{fn}: states[{k}] must have {d * per} features, got {jnp.shape(s)}")
        for j in range(d):
            h.append(s[..., j * per : j * per + H])
            c.append(s[..., j * per + H : (j + 1) * per])
    h_n = jnp.stack(h)
    return (h_n, jnp.stack(c)) if lstm else h_n
