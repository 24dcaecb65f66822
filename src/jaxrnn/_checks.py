"""Trace-time argument checks with messages that name the argument and both shapes.

Every public function validates its inputs here, before any ``lax`` call, so a
user sees a ``ValueError``/``TypeError`` that says what is wrong instead of an
XLA shape error. All checks look at static shapes and dtypes only, so they run
once per trace under ``jax.jit`` and cost nothing at run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def float_arrays(fn: str, **named: object) -> tuple[Array, ...]:
    """Converts each argument to a JAX array and checks they share one float dtype.

    Raises:
      TypeError: an argument is not floating point, or two arguments differ in dtype.
    """
    arrays = {}
    for name, value in named.items():
        if value is None:
            raise TypeError(f"{fn}: {name} must be an array, got None")
        try:
            arr = jnp.asarray(value)
        except TypeError as e:
            raise TypeError(f"{fn}: {name} must be an array, got {type(value).__name__}") from e
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(
                f"{fn}: {name} must have a floating dtype (float32 or float64), got {arr.dtype}"
            )
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


def check_same_shape(fn: str, name: str, arr: Array, ref_name: str, ref: Array) -> None:
    """Checks ``arr.shape == ref.shape`` and ``arr.dtype == ref.dtype`` (upstream gradients)."""
    if tuple(arr.shape) != tuple(ref.shape):
        raise ValueError(
            f"{fn}: {name} must have the shape of {ref_name}. Expected {tuple(ref.shape)}, "
            f"got {tuple(arr.shape)}"
        )
    if arr.dtype != ref.dtype:
        raise TypeError(
            f"{fn}: {name} must have the dtype of {ref_name}. Expected {ref.dtype}, got {arr.dtype}"
        )


def is_concrete(x: object) -> bool:
    """True when ``x`` holds values (not a tracer), so value checks are possible."""
    return not isinstance(x, jax.core.Tracer)


def check_lengths(fn: str, lengths: object, N: int | None, T: int) -> Array:
    """Checks ``lengths: (N,)`` integer; when its values are concrete, ``0 <= lengths <= T``.

    ``N=None`` accepts any 1-D shape. Returns the lengths as an int32 array.

    Under ``jax.jit`` the values are tracers and only the shape and dtype are
    checked here (see :func:`jaxrnn.check_lengths` for an opt-in ``checkify`` check).

    Raises:
      ValueError: ``lengths`` is not an integer array of shape ``(N,)`` or a value is
        outside ``[0, T]``.
    """
    try:
        arr = jnp.asarray(lengths)
    except TypeError as e:
        raise ValueError(
            f"{fn}: lengths must be an integer array, got {type(lengths).__name__}"
        ) from e
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"{fn}: lengths must have an integer dtype, got {arr.dtype}")
    if (arr.ndim != 1) if N is None else (tuple(arr.shape) != (N,)):
        raise ValueError(
            f"{fn}: lengths must have shape (N,) = ({'N' if N is None else N},), one length "
            f"per sequence, got {tuple(arr.shape)}"
        )
    if is_concrete(arr) and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > T:
            raise ValueError(f"{fn}: lengths must lie in [0, T] = [0, {T}], got min {lo}, max {hi}")
    # int32 whatever came in: narrower integers would wrap in arange(T) and clip(·, 0, T)
    return arr.astype(jnp.int32)


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


def check_truncation(fn: str, truncation: object) -> None:
    """Checks ``truncation`` is ``None`` or a positive Python int (a static chunk length)."""
    if truncation is None:
        return
    if not isinstance(truncation, int) or isinstance(truncation, bool) or truncation < 1:
        raise ValueError(
            f"{fn}: truncation must be None or a positive int (chunk length k), got {truncation!r}"
        )
