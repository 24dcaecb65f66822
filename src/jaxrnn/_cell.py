"""One time step of the vanilla RNN: the document's ``rnn_step_forward`` / ``rnn_step_backward``.

The step's equations are written once, in :func:`step_math` and
:func:`step_backward_math`; the public step functions and the RNN's
:class:`~jaxrnn._recurrence.Cell` (what the engine's loops run) both call them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._checks import check_rnn_args, check_same_shape
from ._recurrence import Cell
from ._types import RNNParams, StepCache

Array = jax.Array


def step_math(f, xw_t: Array, h_prev: Array, Wh: Array) -> Array:
    """``h_t = f(a_t)`` with ``a_t = (x_t Wx + b) + h_{t-1} Wh``; ``xw_t``: the projected input."""
    return f(xw_t + h_prev @ Wh)  # §1: h_t = f(a_t), a_t = x_t Wx + h_{t-1} Wh + b


def step_backward_math(fprime, h_t: Array, dh_t: Array, Wh_T: Array) -> tuple[Array, Array]:
    """``(δ_t @ Wh^T, δ_t)``, ``δ_t = dh_t ⊙ f'(a_t)``, with ``dh_t`` all error reaching ``h_t``."""
    da = dh_t * fprime(h_t)  # §3: δ_t = (∂E_t/∂h_t + W^T δ_{t+1}) ⊙ f'(a_t), f' from h_t
    return da @ Wh_T, da  # §3: W^T δ_t flows to t-1


def weight_grads(
    x: Array, h0: Array, h: Array, da: Array, Wx: Array
) -> tuple[Array, Array, Array, Array]:
    """MATH.md §5 after the recursion, as single matmuls over all N*T rows.

    Args:
      x: ``(N, T, D)``; h0: ``(N, H)``; h: ``(N, T, H)``; da: ``(N, T, H)`` the δ_t of
        every step (batch-major, rows aligned with x and h); Wx: ``(D, H)``.

    Returns:
      ``(dx, dWx, dWh, db)``: ``(N, T, D)``, ``(D, H)``, ``(H, H)``, ``(H,)``.
    """
    N, T, D = x.shape
    H = h0.shape[-1]
    da = da.reshape(N * T, H)  # (N*T, H)
    # h_{t-1} for every row; where da is zero (padding) its row adds nothing
    h_prev = jnp.concatenate([h0[:, None], h], axis=1)[:, :T].reshape(N * T, H)
    dx = (da @ Wx.T).reshape(N, T, D)  # §5: dx_t = δ_t @ Wx^T
    dWx = x.reshape(N * T, D).T @ da  # §5: dWx = Σ_t x_t^T δ_t
    dWh = h_prev.T @ da  # §5: dWh = Σ_t h_{t-1}^T δ_t
    db = da.sum(axis=0)  # §5: db = Σ_t Σ_n δ_t
    return dx, dWx, dWh, db


def rnn_cell(activation: str) -> Cell:
    """The vanilla RNN as a :class:`Cell` of the engine; params :class:`RNNParams`.

    State ``h: (N, H)``; the buffer is ``(N, T, H)``: ``x_t Wx + b`` before step t,
    ``h_t`` after it (the only thing its backward step needs: f' from the output).
    """
    act = get_activation(activation)

    def project(p: RNNParams, x: Array) -> Array:
        N, T, D = x.shape
        H = p.Wh.shape[0]
        return (x.reshape(N * T, D) @ p.Wx + p.b[None]).reshape(N, T, H)  # §1: x_t Wx + b

    def step(p: RNNParams, xw_t: Array, h_prev: Array) -> tuple[Array, Array]:
        h_t = step_math(act.fn, xw_t, h_prev, p.Wh)
        return h_t, h_t

    def step_backward(Wh_T, h_t, _prev, dnext, dh_t):
        return step_backward_math(act.deriv_from_output, h_t, dh_t + dnext, Wh_T)

    def param_grads(p: RNNParams, x, h0, h, da):
        dx, dWx, dWh, db = weight_grads(x, h0, h, da, p.Wx)  # §5
        return dx, RNNParams(dWx, dWh, db)

    return Cell(
        project=project,
        step=step,
        output=lambda h: h,
        backward_params=lambda p: p.Wh.T,  # materialised once, outside the loop
        step_backward=step_backward,
        initial_buf=lambda h0: h0,
        zero_dbuf=jnp.zeros_like,
        param_grads=param_grads,
    )


@partial(jax.jit, static_argnames=("activation",))
def rnn_step_forward(
    x: Array, prev_h: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> tuple[Array, StepCache]:
    """One step forward: ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)``.

    Implements MATH.md §1: ``a_t = x_t @ Wx + h_{t-1} @ Wh + b`` and ``h_t = f(a_t)``.

    Args:
      x: ``(N, D)`` input at this step.
      prev_h: ``(N, H)`` hidden state of the previous step, ``h_{t-1}``.
      Wx: ``(D, H)`` input-to-hidden weights (the document's ``U^T``).
      Wh: ``(H, H)`` hidden-to-hidden weights (the document's ``W^T``).
      b: ``(H,)`` bias.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.

    Returns:
      ``(next_h, cache)``: ``next_h`` ``(N, H)`` and the :class:`StepCache` for
      :func:`rnn_step_backward`.
    """
    fn = "rnn_step_forward"
    act = get_activation(activation)
    x, prev_h, Wx, Wh, b = check_rnn_args(
        fn, x, prev_h, Wx, Wh, b, x_layout="N, D", h_name="prev_h"
    )
    next_h = step_math(act.fn, x @ Wx + b[None], prev_h, Wh)  # §1
    return next_h, StepCache(x, prev_h, Wx, Wh, next_h, act.name)


@jax.jit
def rnn_step_backward(dnext_h: Array, cache: StepCache) -> tuple[Array, Array, Array, Array, Array]:
    """One step backward: the gradients of ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)``.

    Implements MATH.md §3 and §5 for a single step::

        da      = dnext_h * f'(a_t)       # §3, f' from the stored h_t
        dx      = da @ Wx^T               # §5
        dprev_h = da @ Wh^T               # §3
        dWx     = x^T @ da                # §5
        dWh     = prev_h^T @ da           # §5
        db      = sum_n da                # §5

    Args:
      dnext_h: ``(N, H)`` gradient of the loss with respect to ``next_h``.
      cache: the :class:`StepCache` returned by :func:`rnn_step_forward`.

    Returns:
      ``(dx, dprev_h, dWx, dWh, db)`` with shapes ``(N, D)``, ``(N, H)``,
      ``(D, H)``, ``(H, H)``, ``(H,)``.
    """
    check_same_shape("rnn_step_backward", "dnext_h", dnext_h, "next_h", cache.next_h)
    fprime = get_activation(cache.activation).deriv_from_output
    dprev_h, da = step_backward_math(fprime, cache.next_h, dnext_h, cache.Wh.T)  # §3
    dx = da @ cache.Wx.T  # §5: dx_t = δ_t @ Wx^T
    dWx = cache.x.T @ da  # §5: dWx = x_t^T @ δ_t
    dWh = cache.prev_h.T @ da  # §5: dWh = h_{t-1}^T @ δ_t
    db = da.sum(axis=0)  # §5: db = Σ_n δ_t
    return dx, dprev_h, dWx, dWh, db
