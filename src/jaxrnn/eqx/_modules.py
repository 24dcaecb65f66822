"""``RNN``, ``LSTM``, ``GRU`` as ``eqx.Module``s: thin shells over the structured core.

A module holds its weights as the registry's parameter NamedTuples, one per layer
(``RNNParams``, ``LSTMParams`` or ``GRUParams``; a ``BiRNNParams(fwd, bwd)`` when
bidirectional), drawn by the cell's initialiser through :func:`jaxrnn.init_stack`.
Its call is unbatched, in equinox's manner: ``x: (T, D)``. It adds a batch axis of 1
and walks the layers with :func:`jaxrnn.rnn` / :func:`jaxrnn.lstm` / :func:`jaxrnn.gru`
through the core's ``_stack.structured_layer`` (the backward direction on
:func:`jaxrnn.reverse_within_lengths`), so every gradient is the core's hand BPTT (its one
``custom_vjp``). ``jax.vmap`` / ``eqx.filter_vmap`` over the call make batches.

**State.** The cell's own pytree, unbatched: ``h: (H,)``, or ``(h, c)`` for the LSTM
(equinox's ``LSTMCell`` order); a ``(fwd, bwd)`` pair per bidirectional layer; a tuple
of the layers' states when ``num_layers > 1``. The final state has the same structure.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

from .._checks import (
    check_activation,
    check_checkpoint,
    check_positive_int,
    check_truncation,
    is_concrete,
)
from .._stack import structured_layer

Array = jax.Array
State = Any  # see the module docstring

_DTYPES = tuple(np.dtype(d) for d in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64))


def _dtype(name: str, dtype: Any) -> np.dtype:
    """``dtype`` checked; None is equinox's default (float64 under ``jax_enable_x64``)."""
    if dtype is None:
        return np.dtype(jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in _DTYPES:
        raise TypeError(
            f"{name}: dtype must be None, float16, bfloat16, float32 or float64, got {dtype!r}"
        )
    if dt == np.float64 and not jax.config.read("jax_enable_x64"):
        raise TypeError(f"{name}: dtype float64 needs jax.config.update('jax_enable_x64', True)")
    return dt


def _check_key(name: str, key: Any) -> None:
    """A typed ``jax.random.key`` or a legacy ``uint32 (2,)`` ``PRNGKey``."""
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    legacy = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    if not (typed or legacy):
        raise TypeError(
            f"{name}: key must be a jax.random.key (or PRNGKey), got {type(key).__name__}"
        )


def _init_layers(name: str, kind: str, sizes: tuple[int, int, int], bidirectional, dtype, key):
    """The layers' parameters from the registry's initialiser (half precisions drawn in
    float32 and cast, as the initialisers ask)."""
    D, H, L = sizes
    if not isinstance(bidirectional, bool):
        raise TypeError(f"{name}: bidirectional must be a bool, got {bidirectional!r}")
    _check_key(name, key)
    dt = _dtype(name, dtype)
    draw = dt if dt.itemsize >= 4 else np.dtype(jnp.float32)
    layers = jaxrnn.init_stack(key, D, (H,) * L, bidirectional=bidirectional, dtype=draw, cell=kind)
    return jax.tree.map(lambda a: a.astype(dt), layers)


class _Recurrent(eqx.Module):
    """The shared body of :class:`RNN`, :class:`LSTM` and :class:`GRU` (see their docs)."""

    layers: tuple  # per layer: the cell's params NamedTuple, or BiRNNParams(fwd, bwd)
    input_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    num_layers: int = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    _cell = "rnn"  # the registry's name of the cell (a class constant, not a field)

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1,
                 bidirectional: bool = False, dtype: Any = None, key: Array):  # fmt: skip
        name = _name(self)
        self.input_size = check_positive_int(name, "input_size", input_size)
        self.hidden_size = check_positive_int(name, "hidden_size", hidden_size)
        self.num_layers = check_positive_int(name, "num_layers", num_layers)
        sizes = (self.input_size, self.hidden_size, self.num_layers)
        self.layers = _init_layers(name, self._cell, sizes, bidirectional, dtype, key)
        self.bidirectional = bidirectional
        self.activation = "tanh"

    def __call__(self, x: Array, state0: State | None = None, *, length: Array | int | None = None,
                 truncation: int | None = None, checkpoint: int | str | None = None,
                 ) -> tuple[Array, State]:  # fmt: skip
        """``x: (T, D)`` -> ``(h: (T, H_out), state_T)``, one sequence through the layers
        (the arguments and the state's structure: see the class docstring)."""
        name = _name(self)
        x = self._check_x(x)  # (T, D)
        lengths = _length(name, length, x.shape[0])  # (1,) or None
        truncation = check_truncation(name, truncation)
        checkpoint = check_checkpoint(name, checkpoint, x[None])
        states = self._batched_states(state0)  # per layer, (1, H) leaves
        opts = dict(activation=self.activation, truncation=truncation, checkpoint=checkpoint,
                    return_state=True)  # fmt: skip
        h, final = x[None], []  # (1, T, D)
        for p, s in zip(self.layers, states, strict=True):
            h, sT = structured_layer(h, s, p, lengths, opts)  # (1, T, H_out)
            final.append(sT)
        final = final[0] if self.num_layers == 1 else tuple(final)
        return h[0], jax.tree.map(lambda a: a[0], final)  # (T, H_out), unbatched state

    def _check_x(self, x: Any) -> Array:
        name = _name(self)
        try:
            x = jnp.asarray(x)
        except TypeError:
            raise TypeError(f"{name}: x must be an array (T, D), got {type(x).__name__}") from None
        if x.ndim == 3:
            raise ValueError(
                f"{name}: x must be one sequence (T, D) = (T, {self.input_size}), got {x.shape}: "
                "the module is unbatched, vmap it for a batch: jax.vmap(module)(x)"
            )
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{name}: x must have shape (T, D) = (T, {self.input_size}), got {x.shape}"
            )
        return x

    def _state_layout(self) -> str:
        """The expected state structure in words (for error messages)."""
        cell = "(h, c)" if self._cell == "lstm" else "h"
        layer = f"a (fwd, bwd) pair of {cell}" if self.bidirectional else cell
        if self.num_layers > 1:
            layer = f"a tuple of {self.num_layers} layer states, each {layer}"
        return f"{layer}, every array of shape ({self.hidden_size},)"

    def _zero_state(self) -> State:
        """The unbatched zero state, in the module's state structure."""
        dt = jax.tree.leaves(self.layers)[0].dtype
        h = jnp.zeros((self.hidden_size,), dt)
        cell = (h, h) if self._cell == "lstm" else h
        layer = (cell, cell) if self.bidirectional else cell
        return layer if self.num_layers == 1 else (layer,) * self.num_layers

    def _batched_states(self, state0: State | None) -> list:
        """``state0`` checked against the module's structure, with a batch axis of 1, as a
        list of one state per layer."""
        zero = self._zero_state()
        name = _name(self)
        if state0 is None:
            state0 = zero
        elif jax.tree.structure(state0) != jax.tree.structure(zero):
            raise ValueError(
                f"{name}: state0 must be {self._state_layout()} (tuples), got "
                f"{jax.tree.structure(state0)}"
            )
        for leaf in jax.tree.leaves(state0):
            if jnp.shape(leaf) != (self.hidden_size,):
                raise ValueError(
                    f"{name}: state0 must be {self._state_layout()}, got an array of shape "
                    f"{jnp.shape(leaf)}"
                )
        batched = jax.tree.map(lambda a: jnp.asarray(a)[None], state0)  # (1, H) leaves
        return [batched] if self.num_layers == 1 else list(batched)


def _name(module: _Recurrent) -> str:
    return f"jaxrnn.eqx.{type(module).__name__}"


def _length(name: str, length: Any, T: int) -> Array | None:
    """``length`` (a scalar int in ``[0, T]``; None: all T steps valid) as ``(1,)`` int32."""
    if length is None:
        return None
    arr = np.asarray(length) if is_concrete(length) else length
    if not hasattr(arr, "dtype") or not jnp.issubdtype(arr.dtype, jnp.integer) or arr.ndim:
        raise ValueError(
            f"{name}: length must be a scalar int, the sequence's number of valid steps "
            f"(vmap the module over per-sequence lengths), got {length!r}"
        )
    if isinstance(arr, np.ndarray) and not 0 <= int(arr) <= T:
        raise ValueError(f"{name}: length must lie in [0, T] = [0, {T}], got {int(arr)}")
    return jnp.reshape(jnp.asarray(arr, jnp.int32), (1,))


_CALL_DOC = """
    Call ``module(x, state0=None, *, length=None, truncation=None, checkpoint=None)``:

    Args:
      x: ``(T, D)``, one sequence (unbatched; ``jax.vmap`` the call for a batch).
      state0: the initial state (see below); None for zeros.
      length: optional scalar int in ``[0, T]``: steps ``t < length`` are valid; the state
        freezes after the last valid step and ``h`` is zero at the padded steps.
      truncation, checkpoint: as in :func:`jaxrnn.rnn` (truncated BPTT chunk length; the
        memory-bounded BPTT's segment length or ``"sqrt"``).

    Returns:
      ``(h, state_T)``: ``h: (T, H_out)`` the top layer's outputs (``H_out = 2H`` when
      bidirectional, ``[h_fwd | h_bwd]``), and the final state, structured as ``state0``:
      {state}, each ``(H,)``; a ``(fwd, bwd)`` pair per bidirectional layer; a tuple of
      the layers' states when ``num_layers > 1``.

    Fields:
      layers: one {params} per layer (a ``jaxrnn.BiRNNParams`` of two when bidirectional);
      input_size, hidden_size, num_layers, bidirectional, activation (static).
"""


class RNN(_Recurrent):
    """A vanilla RNN (MATH.md §1) over one sequence: ``h_t = f(x_t Wx + h_{t-1} Wh + b)``.

    ``RNN(input_size, hidden_size, *, num_layers=1, bidirectional=False, activation="tanh",
    dtype=None, key)``: weights by :func:`jaxrnn.init_rnn_params` (``dtype`` None: float64
    under ``jax_enable_x64``, else float32); ``activation``: one of
    :data:`jaxrnn.ACTIVATIONS`.
    """

    _cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1,
                 bidirectional: bool = False, activation: str = "tanh", dtype: Any = None,
                 key: Array):  # fmt: skip
        act = check_activation("jaxrnn.eqx.RNN", activation)
        super().__init__(input_size, hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional, dtype=dtype, key=key)  # fmt: skip
        self.activation = act


class LSTM(_Recurrent):
    """An LSTM (MATH.md §9) over one sequence, gates ``(i, f, o, g)`` in jaxrnn's layout.

    ``LSTM(input_size, hidden_size, *, num_layers=1, bidirectional=False, dtype=None, key)``:
    weights by :func:`jaxrnn.init_lstm_params`; the state is ``(h, c)`` as equinox's
    ``LSTMCell`` carries it (:func:`jaxrnn.convert._equinox.from_eqx_lstm_cell` reads one).
    """

    _cell = "lstm"


class GRU(_Recurrent):
    """A GRU (MATH.md §10, torch's and equinox's formulation) over one sequence.

    ``GRU(input_size, hidden_size, *, num_layers=1, bidirectional=False, dtype=None, key)``:
    weights by :func:`jaxrnn.init_gru_params`; the state is ``h``.
    """

    _cell = "gru"


RNN.__doc__ = f"{RNN.__doc__}{_CALL_DOC.format(state='``h``', params='``jaxrnn.RNNParams``')}"
LSTM.__doc__ = (
    f"{LSTM.__doc__}{_CALL_DOC.format(state='``(h, c)``', params='``jaxrnn.LSTMParams``')}"
)
GRU.__doc__ = f"{GRU.__doc__}{_CALL_DOC.format(state='``h``', params='``jaxrnn.GRUParams``')}"
