"""Parameter initialisation for one RNN layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._checks import check_float_dtype, check_positive_int
from ._types import RNNParams

Array = jax.Array


def init_params(key: jax.Array, D: int, H: int, dtype: jnp.dtype = jnp.float32) -> RNNParams:
    """Initialises ``RNNParams(Wx, Wh, b)`` for ``a_t = x_t @ Wx + h_{t-1} @ Wh + b``.

    - ``Wx: (D, H)`` ~ Normal(0, 1/D) (LeCun normal: keeps ``x_t @ Wx`` at unit
      scale for unit-scale inputs);
    - ``Wh: (H, H)`` random orthogonal (all singular values 1, so the product of
      Jacobians of MATH.md §3 neither shrinks nor grows through ``Wh`` alone at
      initialisation);
    - ``b: (H,)`` zeros.

    Args:
      key: a ``jax.random`` key.
      D: input size (>= 1).
      H: hidden size (>= 1).
      dtype: a floating dtype (float32 by default; float64 needs ``jax_enable_x64``).

    Returns:
      :class:`RNNParams` with arrays of ``dtype``.
    """
    D = check_positive_int("init_params", "D", D)
    H = check_positive_int("init_params", "H", H)
    dtype = check_float_dtype("init_params", dtype)
    kx, kh = jax.random.split(key)
    Wx = jax.random.normal(kx, (D, H), dtype) / jnp.sqrt(jnp.asarray(D, dtype))
    Wh = jax.nn.initializers.orthogonal()(kh, (H, H), dtype)
    return RNNParams(Wx, Wh, jnp.zeros((H,), dtype))


def gate_weights(fn: str, key: Array, D: int, H: int, G: int, dtype) -> tuple[Array, Array]:
    """``Wx: (D, G*H) ~ Normal(0, 1/D)`` and ``Wh: (H, G*H)``, each gate's ``(H, H)`` block
    random orthogonal: the weights of a gated cell with G gates (LSTM 4, GRU 3)."""
    D = check_positive_int(fn, "D", D)
    H = check_positive_int(fn, "H", H)
    dtype = check_float_dtype(fn, dtype)
    kx, kh = jax.random.split(key)
    Wx = jax.random.normal(kx, (D, G * H), dtype) / jnp.sqrt(jnp.asarray(D, dtype))
    orth = jax.nn.initializers.orthogonal()
    Wh = jnp.concatenate([orth(k, (H, H), dtype) for k in jax.random.split(kh, G)], axis=1)
    return Wx, Wh
