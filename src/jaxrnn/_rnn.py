"""The vanilla RNN's math (MATH.md §1, §3, §5): its parameters, its step and the step's
backward, the engine :class:`~jaxrnn._recurrence.Cell` that runs them, and its initialiser.

Nothing here checks arguments or builds caches: the public functions (``_classic.py``,
``_layer.py``) do that once, for every cell, from the registry (``_cells.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._checks import check_float_dtype, check_positive_int
from ._recurrence import Cell
from ._sharding import contract

Array = jax.Array


class RNNParams(NamedTuple):
    """The three weights of one vanilla RNN layer (MATH.md §1, row-major).

    ``a_t = x_t @ Wx + h_{t-1} @ Wh + b``.
    """

    Wx: Array  # (D, H)   the document's U^T
    Wh: Array  # (H, H)   the document's W^T
    b: Array  # (H,)


def step_math(f, xw_t: Array, h_prev: Array, Wh: Array) -> Array:
    """``h_t = f(a_t)`` with ``a_t = (x_t Wx + b) + h_{t-1} Wh``; ``xw_t``: the projected input."""
    return f(xw_t + h_prev @ Wh)  # §1: h_t = f(a_t), a_t = x_t Wx + h_{t-1} Wh + b


def step_backward_math(fprime, h_t: Array, dh_t: Array, Wh_T: Array) -> tuple[Array, Array]:
    """``(δ_t @ Wh^T, δ_t)``, ``δ_t = dh_t ⊙ f'(a_t)``, with ``dh_t`` all error reaching ``h_t``."""
    da = dh_t * fprime(h_t)  # §3: δ_t = (∂E_t/∂h_t + W^T δ_{t+1}) ⊙ f'(a_t), f' from h_t
    return da @ Wh_T, da  # §3: W^T δ_t flows to t-1


def weight_grads(
    x: Array, h0: Array, h: Array, da: Array, Wx: Array, Wh: Array
) -> tuple[Array, Array, Array, Array]:
    """MATH.md §5 after the recursion, as single matmuls over all N*T rows.

    Shared by every cell (the LSTM's and GRU's gates are G blocks of columns of ``da``).

    Args:
      x: ``(N, T, D)``; h0: ``(N, H)``; h: ``(N, T, H)``; da: ``(N, T, G*H)`` the δ_t of
        every step (batch-major, rows aligned with x and h); Wx: ``(D, G*H)``; Wh:
        ``(H, G*H)`` (read for its sharding only: each gradient takes its weight's).

    Returns:
      ``(dx, dWx, dWh, db)``: ``(N, T, D)``, ``(D, G*H)``, ``(H, G*H)``, ``(G*H,)``.
    """
    N, T, D = x.shape
    H, GH = h0.shape[-1], da.shape[-1]
    da = da.reshape(N * T, GH)  # (N*T, G*H)
    # h_{t-1} for every row; where da is zero (padding) its row adds nothing
    h_prev = jnp.concatenate([h0[:, None], h], axis=1)[:, :T].reshape(N * T, H)
    dx = (da @ Wx.T).reshape(N, T, D)  # §5: dx_t = δ_t @ Wx^T
    dWx = contract(x.reshape(N * T, D).T, da, Wx)  # §5: dWx = Σ_t x_t^T δ_t
    dWh = contract(h_prev.T, da, Wh)  # §5: dWh = Σ_t h_{t-1}^T δ_t
    db = da.sum(axis=0)  # §5: db = Σ_t Σ_n δ_t
    return dx, dWx, dWh, db


def project(Wx: Array, b: Array, x: Array) -> Array:
    """``x_t Wx + b`` for every step at once: ``(N, T, D) -> (N, T, G*H)``, one matmul."""
    N, T, D = x.shape
    return (x.reshape(N * T, D) @ Wx + b[None]).reshape(N, T, Wx.shape[1])


def rnn_cell(activation: str) -> Cell:
    """The vanilla RNN as a :class:`Cell` of the engine; params :class:`RNNParams`.

    State ``h: (N, H)``; the buffer is ``(N, T, H)``: ``x_t Wx + b`` before step t,
    ``h_t`` after it (the only thing its backward step needs: f' from the output).
    """
    act = get_activation(activation)

    def step(p: RNNParams, xw_t: Array, h_prev: Array) -> tuple[Array, Array]:
        h_t = step_math(act.fn, xw_t, h_prev, p.Wh)
        return h_t, h_t

    def step_backward(Wh_T, h_t, _prev, dnext, dh_t):
        return step_backward_math(act.deriv_from_output, h_t, dh_t + dnext, Wh_T)

    def param_grads(p: RNNParams, x, h0, h, da):
        dx, dWx, dWh, db = weight_grads(x, h0, h, da, p.Wx, p.Wh)  # §5
        return dx, RNNParams(dWx, dWh, db)

    return Cell(
        project=lambda p, x: project(p.Wx, p.b, x),  # §1: x_t Wx + b
        step=step,
        output=lambda h: h,
        backward_params=lambda p: p.Wh.T,  # materialised once, outside the loop
        step_backward=step_backward,
        initial_buf=lambda h0: h0,
        zero_dbuf=jnp.zeros_like,
        param_grads=param_grads,
    )


def init_weights(fn: str, key: Array, D: int, H: int, G: int, dtype) -> tuple[Array, Array]:
    """``Wx: (D, G*H) ~ Normal(0, 1/D)`` and ``Wh: (H, G*H)``, each gate's ``(H, H)`` block
    random orthogonal: the weights of a cell with G gate blocks (RNN 1, GRU 3, LSTM 4)."""
    D = check_positive_int(fn, "D", D)
    H = check_positive_int(fn, "H", H)
    dtype = check_float_dtype(fn, dtype)
    kx, kh = jax.random.split(key)
    Wx = jax.random.normal(kx, (D, G * H), dtype) / jnp.sqrt(jnp.asarray(D, dtype))
    orth = jax.nn.initializers.orthogonal()
    keys = [kh] if G == 1 else jax.random.split(kh, G)
    return Wx, jnp.concatenate([orth(k, (H, H), dtype) for k in keys], axis=1)


def init_rnn_params(key: Array, D: int, H: int, dtype=jnp.float32) -> RNNParams:
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
      :class:`RNNParams` with arrays of ``dtype``. ``init_params`` is the same function.
    """
    Wx, Wh = init_weights("init_rnn_params", key, D, H, 1, dtype)
    return RNNParams(Wx, Wh, jnp.zeros((Wh.shape[0],), Wx.dtype))
