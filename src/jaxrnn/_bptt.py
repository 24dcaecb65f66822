"""The hand-derived backpropagation through time: the document's ``rnn_backward``.

No ``jax.grad``/``jax.vjp`` here: every line is an equation of MATH.md §3/§5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._checks import check_same_shape
from ._lengths import valid_mask
from ._scan import index_time, loop_time, scan_time, update_time
from ._types import RNNCache

Array = jax.Array


@jax.jit
def rnn_backward(dh: Array, cache: RNNCache) -> tuple[Array, Array, Array, Array, Array]:
    """Backpropagation through time for :func:`rnn_forward`, derived by hand.

    Implements MATH.md §3 (along time) as a reverse loop (``lax.fori_loop`` with static
    bounds, i.e. a ``lax.scan``, on batch-major arrays: no transposes), for t = T..1::

        da_t        = (dh_t + dnext_t) * f'(a_t)     # f' from the stored h_t
        dnext_{t-1} = da_t @ Wh^T                    # dnext_T = 0
        dh0         = dnext_0

    and MATH.md §5 after the recursion, as single matmuls over all N*T rows::

        dx  = da @ Wx^T
        dWx = sum_t x_t^T @ da_t
        dWh = sum_t h_{t-1}^T @ da_t
        db  = sum_t sum_n da_t

    With ``lengths`` in the cache, ``m_t = t < lengths`` masks the error term:
    ``da_t = m_t (dh_t + dnext_t) f'(a_t)``, so padded steps get zero ``dx`` and add
    nothing to the weight gradients (the upstream ``dh`` there is ignored: those
    outputs are constant zeros). No gradient arrives from the frozen state, which
    is not an output of the differentiated function.

    With ``truncation = k`` in the cache, the error stops at chunk boundaries:
    ``dnext_{t-1} = 0`` for t = k, 2k, ... (truncated BPTT: gradient flows at most
    back to the start of its chunk; the first chunk still reaches ``h0``). This is
    ``jax.grad`` of the forward pass with ``lax.stop_gradient`` on the carried state
    entering steps k, 2k, ...

    With ``carry_weights`` ``ξ`` in the cache (randomized truncation, Tallec &
    Ollivier 2017, as in d2l): ``dnext_{t-1} = ξ_t (δ_t @ Wh^T)``; this is
    ``jax.grad`` of the forward pass with the carried state entering step t
    replaced by ``sg(h) + ξ_t (h - sg(h))`` (same value, gradient scaled by ``ξ_t``).

    Args:
      dh: ``(N, T, H)`` upstream gradient of the loss with respect to every
        hidden state (the ``dE_t/dh_t`` of MATH.md §3).
      cache: the :class:`RNNCache` returned by :func:`rnn_forward`.

    Returns:
      ``(dx, dh0, dWx, dWh, db)`` with shapes ``(N, T, D)``, ``(N, H)``,
      ``(D, H)``, ``(H, H)``, ``(H,)``. For T = 0 all are zero.
    """
    check_same_shape("rnn_backward", "dh", dh, "the cached h", cache.h)
    if cache.lengths is not None or cache.truncation is not None or cache.carry_weights is not None:
        return _masked_backward(dh, cache)
    fprime = get_activation(cache.activation).deriv_from_output
    x, h0, Wx, Wh, h = cache.x, cache.h0, cache.Wx, cache.Wh, cache.h
    T = x.shape[1]
    Wh_T = Wh.T  # materialised once, outside the loop

    def step(t, carry):
        dnext, da = carry
        dh_t, h_t = index_time(dh, t), index_time(h, t)  # (N, H) rows of step t
        da_t = (dh_t + dnext) * fprime(h_t)  # §3: δ_t = (∂E_t/∂h_t + W^T δ_{t+1}) ⊙ f'(a_t)
        return da_t @ Wh_T, update_time(da, da_t, t)  # §3: W^T δ_t flows to t-1

    # Batch-major throughout: step t reads dh[:, t], h[:, t] and writes da[:, t] in place.
    dh0, da = loop_time(step, (jnp.zeros_like(h0), jnp.zeros_like(h)), T, reverse=True)
    dx, dWx, dWh, db = weight_grads(x, h0, h, da, Wx)  # §5; §3: dh0 = dnext_0
    return dx, dh0, dWx, dWh, db


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


def _masked_backward(dh: Array, cache: RNNCache) -> tuple[Array, Array, Array, Array, Array]:
    """:func:`rnn_backward` with lengths, truncation and/or carry weights.

    Each option adds its own term to the loop body (static branches), so only the
    options in the cache cost anything per step.
    """
    fprime = get_activation(cache.activation).deriv_from_output
    x, h0, Wx, Wh, h = cache.x, cache.h0, cache.Wx, cache.Wh, cache.h
    T = x.shape[1]
    Wh_T = Wh.T  # materialised once, outside the loop
    k, xi = cache.truncation, cache.carry_weights
    xs = {"dh": dh.swapaxes(0, 1), "h": h.swapaxes(0, 1)}  # time-major (T, N, H)
    if cache.lengths is not None:
        xs["m"] = valid_mask(cache.lengths, T).T[:, :, None]  # (T, N, 1): m_t = t < lengths
    if k is not None:
        t = jnp.arange(T)
        xs["cut"] = (t % k == 0) & (t > 0)  # (T,): t starts a chunk
    if xi is not None:
        xs["xi"] = xi  # (T,)

    def step(dnext, xs_t):
        da_t = (xs_t["dh"] + dnext) * fprime(xs_t["h"])  # §3: δ_t = (∂E_t/∂h_t + W^T δ_{t+1}) f'
        if "m" in xs_t:
            da_t = jnp.where(xs_t["m"], da_t, jnp.zeros_like(da_t))  # §3, masked: 0 at padding
        dprev = da_t @ Wh_T  # §3: W^T δ_t flows to t-1 ...
        if "xi" in xs_t:
            dprev = dprev * xs_t["xi"]  # ... scaled by ξ_t ...
        if "cut" in xs_t:
            dprev = jnp.where(
                xs_t["cut"], jnp.zeros_like(dprev), dprev
            )  # ... unless a chunk starts
        return dprev, da_t

    dh0, da_tm = scan_time(step, jnp.zeros_like(h0), xs, reverse=True)  # §3: dh0 = dnext_0
    dx, dWx, dWh, db = weight_grads(x, h0, h, da_tm.swapaxes(0, 1), Wx)  # §5 (dx 0 at padding)
    return dx, dh0, dWx, dWh, db
