"""One time step of the vanilla RNN: the document's ``rnn_step_forward`` / ``rnn_step_backward``."""

from __future__ import annotations

from functools import partial

import jax

from ._activations import get_activation
from ._checks import check_rnn_args, check_same_shape
from ._types import StepCache

Array = jax.Array


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
    next_h = act.fn(x @ Wx + prev_h @ Wh + b[None])  # §1: h_t = f(a_t)
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
    act = get_activation(cache.activation)
    da = dnext_h * act.deriv_from_output(cache.next_h)  # §3: δ_t = ∂E/∂h_t ⊙ f'(a_t)
    dx = da @ cache.Wx.T  # §5: dx_t = δ_t @ Wx^T
    dprev_h = da @ cache.Wh.T  # §3: passes δ_t to t-1
    dWx = cache.x.T @ da  # §5: dWx = x_t^T @ δ_t
    dWh = cache.prev_h.T @ da  # §5: dWh = h_{t-1}^T @ δ_t
    db = da.sum(axis=0)  # §5: db = Σ_n δ_t
    return dx, dprev_h, dWx, dWh, db
