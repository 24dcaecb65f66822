"""``RNN``, ``LSTM``, ``GRU`` as flax NNX modules: thin shells over the structured core.

A module holds one :class:`Weights` per layer and direction, whose ``nnx.Param``s are
named after jaxrnn's parameters (``Wx``, ``Wh``, ``b``; the GRU's ``bx``, ``bh``) and
drawn by the registry's initialiser from ``rngs.params()``. Its call walks the layers
through the core's ``_stack.structured_layer``: :func:`jaxrnn.rnn` / :func:`jaxrnn.lstm` /
:func:`jaxrnn.gru` (``return_state=True``), the backward direction on
:func:`jaxrnn.reverse_within_lengths` and its output reversed back; so ``nnx.grad``
runs the core's hand BPTT (its one ``custom_vjp``). No maths lives here.

**Carry.** jaxrnn's convention, the cell's own pytree: ``h: (N, H)`` for the RNN and
GRU, ``(h, c)`` for the LSTM; a ``(fwd, bwd)`` pair per bidirectional layer (as
``nnx.Bidirectional``); a tuple of the layers' carries when ``num_layers > 1``. flax's
``LSTMCell`` / ``OptimizedLSTMCell`` carry is ``(c, h)``: swap the pair
(``flax_carry = carry[::-1]``) going either way; the RNN's and GRU's ``h`` is flax's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import BiRNNParams
from .._cells import PARAMS_TYPES, kind_named, kind_of
from .._checks import check_activation, check_positive_int
from .._layer import check_activation_for
from .._stack import structured_layer

Array = jax.Array
Carry = Any  # see the module docstring

_DTYPES = tuple(np.dtype(d) for d in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64))


def _check_dtype(fn: str, dtype: Any) -> np.dtype:
    """The parameters' dtype: float16, bfloat16, float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in _DTYPES:
        raise TypeError(f"{fn}: dtype must be float16, bfloat16, float32 or float64, got {dtype!r}")
    return dt


class Weights(nnx.Module):
    """One direction of one layer: its jaxrnn parameters as ``nnx.Param``s.

    ``Wx: (D, G*H)``, ``Wh: (H, G*H)`` and ``b: (G*H,)`` (the GRU: ``bx``, ``bh``), G the
    cell's gate count (RNN 1, LSTM 4, GRU 3), laid out as :func:`jaxrnn.rnn` /
    :func:`jaxrnn.lstm` / :func:`jaxrnn.gru` take them.
    """

    def __init__(self, params: Any):
        self.cell = kind_of(params).name  # the registry's name: "rnn", "lstm" or "gru"
        for name, value in zip(params._fields, params, strict=True):
            setattr(self, name, nnx.Param(jnp.asarray(value)))

    def params(self) -> Any:
        """The weights as the registry's NamedTuple (``RNNParams``, ...)."""
        p = kind_named(self.cell).params
        return p(*(getattr(self, name).get_value() for name in p._fields))

    def load(self, params: Any) -> None:
        """Writes ``params`` (checked by the caller) into the ``nnx.Param``s."""
        for name, value in zip(params._fields, params, strict=True):
            getattr(self, name).set_value(jnp.asarray(value))


class Layer(nnx.Module):
    """One layer: the ``fwd`` direction's :class:`Weights` and, when bidirectional, the
    ``bwd`` one's (None otherwise)."""

    def __init__(self, fwd: Weights, bwd: Weights | None = None):
        self.fwd = fwd
        self.bwd = bwd

    def params(self) -> Any:
        """The cell's params, or a :class:`jaxrnn.BiRNNParams` when bidirectional."""
        if self.bwd is None:
            return self.fwd.params()
        return BiRNNParams(self.fwd.params(), self.bwd.params())

    def __call__(self, x: Array, carry: Carry, lengths, options: dict) -> tuple[Array, Carry]:
        """``(h, carry_T)`` of the layer on ``x: (N, T, D)``: ``h: (N, T, H)`` or
        ``(N, T, 2H)`` ``= [h_fwd | h_bwd]`` (MATH.md §4)."""
        return structured_layer(x, carry, self.params(), lengths, options)


class _Recurrent(nnx.Module):
    """The shared body of :class:`RNN`, :class:`LSTM` and :class:`GRU` (see their docs)."""

    kind: ClassVar[str]  # the registry's cell name

    def _build(self, in_features, hidden_features, num_layers, bidirectional, dtype,
               activation, rngs) -> None:  # fmt: skip
        fn = type(self).__name__
        self.in_features = check_positive_int(fn, "in_features", in_features)
        self.hidden_features = check_positive_int(fn, "hidden_features", hidden_features)
        self.num_layers = check_positive_int(fn, "num_layers", num_layers)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"{fn}: bidirectional must be a bool, got {bidirectional!r}")
        self.bidirectional = bool(bidirectional)
        self.activation = check_activation(fn, activation)
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{fn}: rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        dt = _check_dtype(fn, dtype)
        draw = dt if dt.itemsize >= 4 else np.dtype(jnp.float32)  # initialisers draw f32/f64
        init, H, d, layers = kind_named(self.kind).init, self.hidden_features, in_features, []
        for _ in range(self.num_layers):
            dirs = [init(rngs.params(), d, H, draw) for _ in range(1 + self.bidirectional)]
            layers.append(Layer(*(Weights(jax.tree.map(lambda a: a.astype(dt), p)) for p in dirs)))
            d = len(dirs) * H
        self.layers = nnx.List(layers)

    @property
    def out_features(self) -> int:
        """The output width: ``hidden_features``, twice that when bidirectional."""
        return (1 + self.bidirectional) * self.hidden_features

    def params(self) -> tuple:
        """The weights as jaxrnn layers, as :func:`jaxrnn.stack_forward` and the
        converters take them: per layer the cell's params or a :class:`jaxrnn.BiRNNParams`."""
        return tuple(layer.params() for layer in self.layers)

    @classmethod
    def from_params(cls, layers: Any, *, activation: str = "tanh") -> _Recurrent:
        """A module holding jaxrnn layers (a layer, or a tuple as :meth:`params` returns
        them: e.g. from :func:`jaxrnn.convert.from_nnx_rnn` or ``from_torch_state_dict``),
        its sizes, depth, directions and dtype read from them; nothing is drawn.

        ``activation``: the RNN's (the LSTM and GRU keep ``"tanh"``).
        """
        fn = f"{cls.__name__}.from_params"
        single = isinstance(layers, (*PARAMS_TYPES, BiRNNParams))
        if not (single or (isinstance(layers, Sequence) and len(layers) > 0)):
            raise TypeError(f"{fn}: expected a layer or a tuple of layers, got {layers!r}")
        first = layers if single else layers[0]
        fwd = first.fwd if isinstance(first, BiRNNParams) else first
        if not isinstance(fwd, PARAMS_TYPES) or kind_of(fwd).name != cls.kind:
            want = kind_named(cls.kind).params.__name__
            raise TypeError(f"{fn}: expected {want} layers, got {type(fwd).__name__}")
        L = 1 if single else len(layers)
        sizes: dict[str, Any] = dict(num_layers=L, bidirectional=isinstance(first, BiRNNParams),
                     dtype=jnp.result_type(fwd.Wx))  # fmt: skip
        if cls.kind == "rnn":
            sizes["activation"] = activation
        else:
            check_activation_for(fn, kind_named(cls.kind), activation)
        make = cast("Callable[..., _Recurrent]", cls)  # RNN, LSTM or GRU: not the base's __init__
        shape = nnx.eval_shape(lambda: make(fwd.Wx.shape[0], fwd.Wh.shape[0], **sizes,
                                            rngs=nnx.Rngs(0)))  # fmt: skip
        shape.load_params(layers)
        return shape

    def load_params(self, layers: Any) -> None:
        """Writes jaxrnn layers (a layer, or a tuple of ``num_layers``, as :meth:`params`
        returns them; e.g. from :func:`jaxrnn.convert.from_nnx_rnn`) into the module's
        ``nnx.Param``s. Their cell, directions, shapes and dtype must be the module's."""
        fn = f"{type(self).__name__}.load_params"
        if isinstance(layers, (*PARAMS_TYPES, BiRNNParams)):
            layers = (layers,)
        if not isinstance(layers, Sequence) or len(layers) != self.num_layers:
            n = len(layers) if isinstance(layers, Sequence) else type(layers).__name__
            raise ValueError(f"{fn}: expected {self.num_layers} layer(s), got {n}")
        for i, (new, old) in enumerate(zip(layers, self.params(), strict=True)):
            _check_like(f"{fn}: layer {i}", new, old)
        for layer, new in zip(self.layers, layers, strict=True):
            directions = (layer.fwd,) if layer.bwd is None else (layer.fwd, layer.bwd)
            for w, p in zip(directions, (new,) if layer.bwd is None else new, strict=True):
                w.load(p)

    def _carries(self, x: Array, initial_carry: Carry) -> list:
        """One initial carry per layer: ``initial_carry`` checked, or zeros."""
        fn = type(self).__name__
        if initial_carry is None:
            kind, dt = kind_named(self.kind), self.layers[0].fwd.Wh.get_value().dtype
            zeros = jnp.zeros((x.shape[0], self.hidden_features), dt)
            state = zeros if len(kind.state) == 1 else (zeros,) * len(kind.state)
            return [(state, state) if self.bidirectional else state] * self.num_layers
        carries = [initial_carry] if self.num_layers == 1 else initial_carry
        if not isinstance(carries, (tuple, list)) or len(carries) != self.num_layers:
            raise ValueError(
                f"{fn}: initial_carry must hold one carry per layer ({self.num_layers}), got "
                f"{type(initial_carry).__name__}"
            )
        for i, c in enumerate(carries):
            if self.bidirectional and not (isinstance(c, (tuple, list)) and len(c) == 2):
                raise ValueError(f"{fn}: layer {i} is bidirectional: its carry is (fwd, bwd)")
        return list(carries)

    def __call__(
        self,
        x: Array,
        *,
        initial_carry: Carry | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool = False,
        truncation: int | None = None,
        checkpoint: int | str | None = None,
    ) -> Array | tuple[Carry, Array]:
        """Runs the layers over ``x``, as ``nnx.RNN`` (batch-major) or a stack of them.

        Args:
          x: ``(N, T, in_features)``, batch-major (``nnx.vmap`` for more batch axes); cast
            to the module's ``dtype`` (the computation's, as in flax's layers).
          initial_carry: the carry (module docstring); None for zeros; cast likewise.
          seq_lengths: optional ``(N,)`` integers in ``[0, T]``: step t of sequence n is
            valid when ``t < seq_lengths[n]``; the backward direction reads each
            sequence reversed within its length.
          return_carry: also return the final carry, as ``nnx.RNN``: ``(carry, h)``.
          truncation, checkpoint: as in :func:`jaxrnn.rnn` (truncated BPTT; the
            memory-bounded BPTT of MATH.md §8), per layer and direction.

        Returns:
          ``h: (N, T, out_features)``, the top layer's outputs, zero at padded steps (flax's
          ``nnx.RNN`` outputs whatever its cell computes there); with ``return_carry=True``
          ``(carry, h)``, the carry each sequence's state after its last valid step. flax's
          agrees for ``seq_lengths >= 1``; for a length of 0 jaxrnn returns the initial
          carry, flax the carry after all T (padding) steps.
        """
        x = self._check_x(x)
        dtype = self.layers[0].fwd.Wh.get_value().dtype  # computed in the module's dtype,
        x = x.astype(dtype)  # as flax's own layers do (jaxrnn's core refuses mixed dtypes)
        if initial_carry is not None:
            initial_carry = jax.tree.map(lambda a: jnp.asarray(a).astype(dtype), initial_carry)
        carries = self._carries(x, initial_carry)
        options = dict(activation=self.activation, truncation=truncation, checkpoint=checkpoint,
                       return_state=True)  # fmt: skip
        h, finals = x, []
        for layer, carry in zip(self.layers, carries, strict=True):
            h, final = layer(h, carry, seq_lengths, options)
            finals.append(final)
        carry = finals[0] if self.num_layers == 1 else tuple(finals)
        return (carry, h) if return_carry else h

    def _check_x(self, x: Any) -> Array:
        fn = type(self).__name__
        shape = tuple(jnp.shape(x))
        if len(shape) != 3 or shape[-1] != self.in_features:
            raise ValueError(
                f"{fn}: x must be (N, T, in_features) = (N, T, {self.in_features}), batch-major "
                f"(nnx.vmap for more batch axes), got shape {shape}"
            )
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{fn}: x must have a floating dtype, got {x.dtype}")
        return x


def _check_like(where: str, new: Any, old: Any) -> None:
    """``new`` is a layer of ``old``'s cell, directions, shapes and dtype."""
    if type(new) is not type(old) or (
        isinstance(old, BiRNNParams) and {type(p) for p in new} != {type(old.fwd)}
    ):
        want = type(old.fwd if isinstance(old, BiRNNParams) else old).__name__
        want = f"BiRNNParams of {want}" if isinstance(old, BiRNNParams) else want
        raise TypeError(f"{where} must be a {want}, got {type(new).__name__}")
    leaves = jax.tree_util.tree_flatten_with_path(new)[0]
    for (path, a), b in zip(leaves, jax.tree.leaves(old), strict=True):
        got, want = (tuple(jnp.shape(a)), jnp.result_type(a)), (b.shape, b.dtype)
        if got != want:
            raise ValueError(
                f"{where}{jax.tree_util.keystr(path)} must be {want[0]} {want[1]}, got "
                f"{got[0]} {got[1]}"
            )


class RNN(_Recurrent):
    """The vanilla RNN (MATH.md §1, :func:`jaxrnn.rnn`) as an NNX module, L layers deep.

    ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)`` per layer and direction; gradients by the
    hand-derived BPTT. Call as ``nnx.RNN``: ``module(x: (N, T, D)) -> h: (N, T, H_out)``,
    or ``(carry, h)`` with ``return_carry=True`` (see :meth:`__call__`).

    Args:
      in_features: D; hidden_features: H (``H_out = 2H`` when bidirectional).
      num_layers: layer l+1 reads layer l's outputs.
      bidirectional: each layer also runs over time reversed within the lengths.
      dtype: the parameters' dtype (float16, bfloat16, float32 or float64).
      activation: f, ``"tanh"`` (flax's ``SimpleCell``), ``"relu"``, ``"sigmoid"`` or
        ``"identity"``.
      rngs: ``nnx.Rngs``; each direction of each layer draws ``rngs.params()`` for
        :func:`jaxrnn.init_rnn_params`.
    """

    kind = "rnn"

    def __init__(self, in_features: int, hidden_features: int, *, num_layers: int = 1,
                 bidirectional: bool = False, dtype: Any = jnp.float32,
                 activation: str = "tanh", rngs: nnx.Rngs):  # fmt: skip
        self._build(in_features, hidden_features, num_layers, bidirectional, dtype, activation,
                    rngs)  # fmt: skip


class LSTM(_Recurrent):
    """The LSTM (MATH.md §9, :func:`jaxrnn.lstm`; flax's ``LSTMCell`` maths) as an NNX
    module, L layers deep; gradients by the hand-derived BPTT.

    Gates ``(i, f, o, g)`` in blocks of H columns of ``Wx: (D, 4H)``, ``Wh: (H, 4H)``,
    ``b: (4H,)``. The carry is ``(h, c)`` per direction: flax's is ``(c, h)``.

    Args:
      in_features, hidden_features, num_layers, bidirectional, dtype: as :class:`RNN`.
      rngs: ``nnx.Rngs``; each direction draws ``rngs.params()`` for
        :func:`jaxrnn.init_lstm_params` (forget-gate bias 1).
    """

    kind = "lstm"

    def __init__(self, in_features: int, hidden_features: int, *, num_layers: int = 1,
                 bidirectional: bool = False, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):  # fmt: skip
        self._build(in_features, hidden_features, num_layers, bidirectional, dtype, "tanh", rngs)


class GRU(_Recurrent):
    """The GRU (MATH.md §10, :func:`jaxrnn.gru`; torch's formulation) as an NNX module, L
    layers deep; gradients by the hand-derived BPTT.

    Gates ``(r, z, n)`` in blocks of H columns of ``Wx: (D, 3H)``, ``Wh: (H, 3H)``,
    ``bx, bh: (3H,)``; ``n = tanh(x Wx_n + bx_n + r ⊙ (h Wh_n + bh_n))``. flax's
    ``nnx.GRUCell`` is this cell with ``bh = 0`` (it has no ``b_hn``, flax#5594).

    Args:
      in_features, hidden_features, num_layers, bidirectional, dtype: as :class:`RNN`.
      rngs: ``nnx.Rngs``; each direction draws ``rngs.params()`` for
        :func:`jaxrnn.init_gru_params`.
    """

    kind = "gru"

    def __init__(self, in_features: int, hidden_features: int, *, num_layers: int = 1,
                 bidirectional: bool = False, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):  # fmt: skip
        self._build(in_features, hidden_features, num_layers, bidirectional, dtype, "tanh", rngs)
