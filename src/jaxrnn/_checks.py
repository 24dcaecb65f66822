"""Trace-time argument checks with messages that name the argument and both shapes.

Every public function validates its inputs here, before any ``lax`` call, so a
user sees a ``ValueError``/``TypeError`` that says what is wrong instead of an
XLA shape error. All checks look at static shapes and dtypes only, so they run
once per trace under ``jax.jit`` and cost nothing at run time.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, TypeGuard, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.core import Tracer
from jax.typing import ArrayLike

Array = jax.Array
FLOATS = "float16, bfloat16, float32 or float64"  # what the functions accept (README: errors)


def float_arrays(fn: str, **named: object) -> tuple[Array, ...]:
    """Converts each argument to a JAX array and checks they share one float dtype.

    Raises:
      TypeError: an argument is not floating point, or two arguments differ in dtype.
    """
    arrays = {}
    for name, value in named.items():
        if value is None or isinstance(value, (str, bytes)):
            raise TypeError(f"{fn}: {name} must be an array, got {type(value).__name__}")
        try:
            arr = jnp.asarray(value)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{fn}: {name} must be an array, got {type(value).__name__}") from e
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{fn}: {name} must have a floating dtype ({FLOATS}), got {arr.dtype}")
        arrays[name] = arr
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"{fn}: all arrays must share one float dtype, got {listing}")
    return tuple(arrays.values())


def check_rank(fn: str, name: str, arr: Array, layout: str) -> None:
    """Checks ``arr.ndim == len(layout.split(','))``; ``layout`` like ``"N, T, D"``."""
    ndim = len(layout.split(","))
    if arr.ndim != ndim:
        raise ValueError(
            f"{fn}: {name} must be {ndim}-D with shape ({layout}), got {arr.ndim}-D shape "
            f"{tuple(arr.shape)}"
        )


def check_dim(fn: str, what: str, expected: int, got: int, **shapes: tuple[int, ...]) -> None:
    """Checks one dimension; ``what`` reads like ``"x.shape[-1] must equal Wx.shape[0] (D)"``."""
    if expected != got:
        listing = ", ".join(f"{n}: {tuple(s)}" for n, s in shapes.items())
        raise ValueError(f"{fn}: {what}. Expected {expected}, got {got} ({listing})")


def check_weights(fn: str, Wx: Array, Wh: Array, b: Array) -> tuple[int, int]:
    """Checks ``Wx: (D, H)``, ``Wh: (H, H)``, ``b: (H,)`` and returns ``(D, H)``."""
    check_rank(fn, "Wx", Wx, "D, H")
    check_rank(fn, "Wh", Wh, "H, H")
    check_rank(fn, "b", b, "H")
    H = Wh.shape[0]
    check_dim(fn, "Wh must be square (H, H)", H, Wh.shape[1], Wh=Wh.shape)
    check_dim(
        fn,
        "Wx.shape[1] must equal the hidden size H = Wh.shape[0]",
        H,
        Wx.shape[1],
        Wx=Wx.shape,
        Wh=Wh.shape,
    )
    check_dim(fn, "b.shape[0] must equal the hidden size H", H, b.shape[0], b=b.shape, Wh=Wh.shape)
    return Wx.shape[0], H


def check_rnn_args(
    fn: str, x: object, h: object, Wx: object, Wh: object, b: object, *, x_layout: str, h_name: str
) -> tuple[Array, Array, Array, Array, Array]:
    """Validates ``x: (N, [T,] D)``, ``h: (N, H)`` (named ``h_name``) and the weights.

    Shared by the step (``x_layout="N, D"``, ``h_name="prev_h"``) and sequence
    (``"N, T, D"``, ``"h0"``) functions. Returns the arguments as JAX arrays of
    one float dtype.
    """
    x, h, Wx, Wh, b = float_arrays(fn, **{"x": x, h_name: h, "Wx": Wx, "Wh": Wh, "b": b})
    D, H = check_weights(fn, Wx, Wh, b)
    check_rank(fn, "x", x, x_layout)
    check_rank(fn, h_name, h, "N, H")
    check_dim(fn, "x.shape[-1] must equal Wx.shape[0] (input size D)", D, x.shape[-1],
              x=x.shape, Wx=Wx.shape)  # fmt: skip
    check_dim(fn, f"{h_name}.shape[-1] must equal the hidden size H", H, h.shape[-1],
              **{h_name: h.shape}, Wh=Wh.shape)  # fmt: skip
    check_dim(fn, f"{h_name}.shape[0] must equal x.shape[0] (batch size N)", x.shape[0],
              h.shape[0], x=x.shape, **{h_name: h.shape})  # fmt: skip
    return x, h, Wx, Wh, b


@runtime_checkable
class Shaped(Protocol):
    """Anything with a ``shape`` and a ``dtype``: a jax or numpy array, a ShapeDtypeStruct."""

    @property
    def shape(self) -> tuple[Any, ...]: ...

    @property
    def dtype(self) -> Any: ...


class _Cache(Protocol):
    @property
    def kind(self) -> str: ...


def check_same_shape(fn: str, name: str, arr: object, ref_name: str, ref: Shaped) -> Array:
    """Checks ``arr.shape == ref.shape`` and ``arr.dtype == ref.dtype`` (upstream gradients).

    Returns ``arr`` as a JAX array.
    """
    if not isinstance(arr, Shaped):
        raise TypeError(
            f"{fn}: {name} must be an array of shape {tuple(ref.shape)}, got {type(arr).__name__}"
        )
    if tuple(arr.shape) != tuple(ref.shape):
        raise ValueError(
            f"{fn}: {name} must have the shape of {ref_name}. Expected {tuple(ref.shape)}, "
            f"got {tuple(arr.shape)}"
        )
    if arr.dtype != ref.dtype:
        raise TypeError(
            f"{fn}: {name} must have the dtype of {ref_name}. Expected {ref.dtype}, got {arr.dtype}"
        )
    return jnp.asarray(arr)


def check_dh(fn: str, dh: object, x: Array, H: int, ref_name: str = "h") -> Array:
    """Checks the upstream gradient ``dh: (N, T, H)`` of a sequence with input ``x: (N, T, D)``."""
    ref = jax.ShapeDtypeStruct((*x.shape[:2], H), x.dtype)
    return check_same_shape(fn, "dh", dh, ref_name, ref)


def is_concrete(x: object) -> bool:
    """True when ``x`` holds values (not a tracer), so value checks are possible."""
    return not isinstance(x, Tracer)


def is_int(value: object) -> TypeGuard[int | np.integer]:
    """A Python or numpy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_positive_int(fn: str, name: str, value: object, what: str = "") -> int:
    """Checks a positive Python or numpy int and returns it as a Python ``int``."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{fn}: {name} must be a positive int{what}, got {value!r}")
    return int(value)


def check_float_dtype(fn: str, dtype: npt.DTypeLike) -> np.dtype:
    """Checks an initialiser's dtype: float32 or float64 (float64 needs ``jax_enable_x64``).

    The functions run in float16 and bfloat16 too, but an orthogonal initialisation is
    drawn in float32 or float64: initialise there and cast.
    """
    what = "float32 or float64 (for float16/bfloat16, initialise in float32 and cast)"
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{fn}: dtype must be {what}, got {dtype!r}") from e
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{fn}: dtype must be {what}, got {dt}")
    return dt


def check_truncation(fn: str, truncation: object) -> int | None:
    """Checks ``truncation`` is ``None`` or a positive int (a static chunk length)."""
    if truncation is not None and (not is_int(truncation) or truncation < 1):
        raise ValueError(
            f"{fn}: truncation must be None or a positive int (chunk length k), got {truncation!r}"
        )
    return None if truncation is None else int(truncation)


def check_checkpoint(fn: str, checkpoint: object, x: ArrayLike) -> int | None:
    """Checks ``checkpoint``: None, a positive int k, or ``"sqrt"`` (``k = ceil(sqrt(T))``,
    T from ``x: (N, T, ...)``). Returns the segment length k as an int, or None."""
    if checkpoint is None:
        return None
    shape = jnp.shape(x)
    T = shape[1] if len(shape) > 1 else 1
    if not is_int(T):  # a symbolic dimension (jax.export with shape polymorphism)
        raise ValueError(
            f"{fn}: checkpoint needs a static sequence length T to lay out its segments, "
            f"got the symbolic T = {T}; export with a concrete T, or use checkpoint=None"
        )
    if isinstance(checkpoint, str) and checkpoint == "sqrt":
        return max(1, math.isqrt(max(T - 1, 0)) + 1) if T > 1 else 1
    if not is_int(checkpoint) or checkpoint < 1:
        raise ValueError(
            f"{fn}: checkpoint must be None, a positive int (segment length k) or 'sqrt', "
            f"got {checkpoint!r}"
        )
    return int(checkpoint)


def _lengths_values(fn: str, lengths: object) -> np.ndarray:
    """Concrete ``lengths`` as a numpy integer array (no JAX op: nothing is staged)."""
    try:
        arr = np.asarray(lengths)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind in "USOV":  # strings, objects: not an array of numbers at all
        raise ValueError(f"{fn}: lengths must be an integer array, got {type(lengths).__name__}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{fn}: lengths must have an integer dtype, got {arr.dtype}")
    return arr


def check_lengths(fn: str, lengths: object, N: int | None, T: int) -> Array:
    """Checks ``lengths: (N,)`` integer; when its values are concrete, ``0 <= lengths <= T``.

    ``N=None`` accepts any 1-D shape. Returns the lengths as an int32 array. Concrete
    values are read with numpy before any conversion, so int64 values beyond int32
    never wrap and a concrete array captured inside ``jax.jit`` is still checked.
    Traced values get the shape and dtype check only (see :func:`jaxrnn.check_lengths`
    for an opt-in ``checkify`` check).

    Raises:
      ValueError: ``lengths`` is not an integer array of shape ``(N,)`` or a value is
        outside ``[0, T]``.
    """
    arr = lengths if isinstance(lengths, Tracer) else _lengths_values(fn, lengths)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"{fn}: lengths must have an integer dtype, got {arr.dtype}")
    if (arr.ndim != 1) if N is None else (tuple(arr.shape) != (N,)):
        raise ValueError(
            f"{fn}: lengths must have shape (N,) = ({'N' if N is None else N},), one length "
            f"per sequence, got {tuple(arr.shape)}"
        )
    if isinstance(arr, np.ndarray) and arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > T:
            raise ValueError(f"{fn}: lengths must lie in [0, T] = [0, {T}], got min {lo}, max {hi}")
    # int32 whatever came in: narrower integers would wrap in arange(T) and clip(·, 0, T)
    return jnp.asarray(arr).astype(jnp.int32)


def check_lengths_eagerly(fn: str, x: ArrayLike, lengths: Array | None) -> Array | None:
    """Checks ``lengths`` against ``x: (N, T, D)`` (values too) before entering ``jit``."""
    if lengths is None:
        return None
    shape = jnp.shape(x)
    if len(shape) != 3:
        return lengths  # the shape check of x reports it
    return check_lengths(fn, lengths, shape[0], shape[1])


def check_carry_weights(fn: str, w: object, T: int, dtype) -> Array:
    """Checks ``carry_weights: (T,)`` and casts it to the float ``dtype`` of the other arrays."""
    arr = jnp.asarray(w)
    if tuple(arr.shape) != (T,):
        raise ValueError(
            f"{fn}: carry_weights must have shape (T,) = ({T},), one factor per step, "
            f"got {tuple(arr.shape)}"
        )
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{fn}: carry_weights must be real numbers, got {arr.dtype}")
    return arr.astype(dtype)


def check_activation(fn: str, activation: object) -> str:
    """Checks an activation name (a str naming one of ``jaxrnn.ACTIVATIONS``)."""
    from ._activations import get_activation

    if not isinstance(activation, str):
        raise ValueError(
            f"{fn}: activation must be a name (str) such as 'tanh', got {activation!r}"
        )
    return get_activation(activation).name


def check_eager(fn: str, x: ArrayLike, activation: object, lengths, truncation, checkpoint):
    """The checks before ``jit`` of a sequence function: what ``jit`` hashes (activation,
    truncation, checkpoint) and what only concrete values show (lengths, strings).

    Returns ``(lengths, truncation, checkpoint)`` checked (lengths as int32).
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{fn}: x must be an array, got {type(x).__name__}")
    if activation is not None:  # the gated cells have none
        check_activation(fn, activation)
    truncation = check_truncation(fn, truncation)
    checkpoint = check_checkpoint(fn, checkpoint, x)
    return check_lengths_eagerly(fn, x, lengths), truncation, checkpoint


def check_gated_weights(fn: str, Wx: Array, Wh: Array, biases: dict, G: int) -> tuple[int, int]:
    """Checks a gated cell's ``Wx: (D, G*H)``, ``Wh: (H, G*H)`` and each bias ``(G*H,)``.

    ``G`` is the number of gates (4 for the LSTM, 3 for the GRU); ``biases`` maps
    each bias's name to its array. Returns ``(D, H)``.
    """
    gh = f"{G}H"
    check_rank(fn, "Wx", Wx, f"D, {gh}")
    check_rank(fn, "Wh", Wh, f"H, {gh}")
    H = Wh.shape[0]
    check_dim(fn, f"Wh.shape[1] must equal {gh} = {G} * Wh.shape[0]", G * H, Wh.shape[1],
              Wh=Wh.shape)  # fmt: skip
    check_dim(fn, f"Wx.shape[1] must equal {gh} = {G} * Wh.shape[0]", G * H, Wx.shape[1],
              Wx=Wx.shape, Wh=Wh.shape)  # fmt: skip
    for name, b in biases.items():
        check_rank(fn, name, b, gh)
        check_dim(fn, f"{name}.shape[0] must equal {gh} = {G} * Wh.shape[0]", G * H, b.shape[0],
                  **{name: b.shape}, Wh=Wh.shape)  # fmt: skip
    return Wx.shape[0], H


def check_gated_args(
    fn: str, x: object, states: dict, weights: dict, G: int, *, x_layout: str
) -> tuple[Array, ...]:
    """Validates a gated cell's ``x: (N, [T,] D)``, each state ``(N, H)`` and its weights.

    ``states`` maps names (``"h0"``, ``"c0"``, ``"prev_h"``, ...) to arrays;
    ``weights`` maps ``"Wx"``, ``"Wh"`` and the bias names to arrays. Returns
    ``x``, the states and the weights, in that order, as arrays of one float dtype.
    """
    arrays = float_arrays(fn, x=x, **states, **weights)
    x, rest = arrays[0], arrays[1:]
    st, (Wx, Wh, *bs) = rest[: len(states)], rest[len(states) :]
    D, H = check_gated_weights(fn, Wx, Wh, dict(zip(list(weights)[2:], bs, strict=True)), G)
    check_rank(fn, "x", x, x_layout)
    check_dim(fn, "x.shape[-1] must equal Wx.shape[0] (input size D)", D, x.shape[-1],
              x=x.shape, Wx=Wx.shape)  # fmt: skip
    for name, s in zip(states, st, strict=True):
        check_rank(fn, name, s, "N, H")
        check_dim(fn, f"{name}.shape[-1] must equal the hidden size H = Wh.shape[0]", H,
                  s.shape[-1], **{name: s.shape}, Wh=Wh.shape)  # fmt: skip
        check_dim(fn, f"{name}.shape[0] must equal x.shape[0] (batch size N)", x.shape[0],
                  s.shape[0], x=x.shape, **{name: s.shape})  # fmt: skip
    return arrays


def check_cell_args(
    fn: str, gates: int, x: object, states: dict, weights: dict, *, x_layout: str
) -> tuple[Array, ...]:
    """Validates any cell's ``x: (N, [T,] D)``, its states ``(N, H)`` and its weights.

    ``gates`` is the cell's G (the vanilla RNN's 1: ``Wx: (D, H)``, ``Wh: (H, H)``;
    LSTM 4, GRU 3: ``Wx: (D, G*H)``, ``Wh: (H, G*H)``); ``states`` maps names (``"h0"``,
    ``"c0"``, ``"prev_h"``, ...) to arrays and ``weights`` the parameter names to
    arrays. Returns ``x``, the states and the weights, in that order, as arrays of one
    float dtype.
    """
    if gates == 1:
        ((h_name, h),) = states.items()
        return check_rnn_args(fn, x, h, *weights.values(), x_layout=x_layout, h_name=h_name)
    return check_gated_args(fn, x, states, weights, gates, x_layout=x_layout)


def check_state_parts(fn: str, names: tuple[str, ...], state0: object) -> tuple:
    """A cell's state pytree as the tuple of its parts, named ``names`` (``("h0",)`` or
    ``("h0", "c0")``): a bare array is the first part alone (the rest default to zeros),
    a tuple or list must hold every part."""
    if not isinstance(state0, (tuple, list)):
        return (state0,)
    if len(names) == 1 or len(state0) != len(names):
        want = (
            f"the array {names[0]} (N, H)"
            if len(names) == 1
            else f"{names[0]} or the pair ({', '.join(names)}), each (N, H)"
        )
        raise TypeError(
            f"{fn}: state0 must be {want}, got a {type(state0).__name__} of {len(state0)}"
        )
    return tuple(state0)


def check_fixed_activation(fn: str, cell: str, takes_activation: bool, activation: str) -> None:
    """Only the vanilla RNN takes an activation; a gated cell keeps ``"tanh"``."""
    if not takes_activation and activation != "tanh":
        raise ValueError(
            f"{fn}: the {cell.upper()}'s gates use sigmoid and tanh; activation applies "
            f"to the vanilla RNN only and must stay 'tanh' here, got {activation!r}"
        )


def check_cache(fn: str, cell: str, cache: object, cls: type[_Cache], made_by: str) -> None:
    """``cache`` is a ``cls`` made by ``{cell}_{made_by}`` (``TypeError`` naming what it is)."""
    if not isinstance(cache, cls):
        raise TypeError(f"{fn}: cache must be a {cls.__name__}, got {type(cache).__name__}")
    if cache.kind != cell:
        raise TypeError(
            f"{fn}: cache comes from {cache.kind}_{made_by} (the {cache.kind.upper()}), "
            f"not from {cell}_{made_by}"
        )


def check_sequence_options(fn: str, x: Array, lengths, carry_weights) -> tuple:
    """The trace-time checks of a sequence's options against the checked ``x: (N, T, D)``:
    the lengths' shape and dtype (their values were checked before ``jit``) and the
    carry weights. Returns ``(lengths, carry_weights)`` checked."""
    N, T = x.shape[:2]
    if lengths is not None:
        lengths = check_lengths(fn, lengths, N, T)
    if carry_weights is not None:
        carry_weights = check_carry_weights(fn, carry_weights, T, x.dtype)
    return lengths, carry_weights


def int_array(fn: str, name: str, value: object, layout: str, shape=None) -> Array:
    """``value`` as an integer JAX array of rank ``len(layout)`` (and ``shape`` if given)."""
    try:
        arr = jnp.asarray(value)
    except TypeError as e:
        raise TypeError(f"{fn}: {name} must be an integer array, got {type(value).__name__}") from e
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{fn}: {name} must have an integer dtype, got {arr.dtype}")
    check_rank(fn, name, arr, layout)
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(
            f"{fn}: {name} must have shape ({layout}) = {tuple(shape)}, got {tuple(arr.shape)}"
        )
    return arr


def check_ids(fn: str, name: str, ids: Array, bound: int, what: str, where=None) -> None:
    """When concrete, checks ``0 <= ids < bound`` (``jnp`` indexing would clamp silently).

    ``where`` (optional, same shape): only entries where it is nonzero are checked.
    """
    if not (is_concrete(ids) and (where is None or is_concrete(where))):
        return
    values = np.asarray(ids)
    if where is not None:
        values = values[np.asarray(where) != 0]
    if values.size:
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= bound:
            raise ValueError(
                f"{fn}: {name} must lie in [0, {bound}) ({what}), got min {lo}, max {hi}"
            )


def loss_weights(fn: str, mask: object, N: int, T: int, dtype) -> Array:
    """``mask`` as ``(N, T)`` weights of ``dtype`` (all ones when None)."""
    if mask is None:
        return jnp.ones((N, T), dtype)
    m = jnp.asarray(mask)
    check_rank(fn, "mask", m, "N, T")
    if tuple(m.shape) != (N, T):
        raise ValueError(f"{fn}: mask must have shape (N, T) = {(N, T)}, got {tuple(m.shape)}")
    return m.astype(dtype)
