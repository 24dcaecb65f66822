"""The document's algorithm in plain numpy: an independent oracle for the JAX code.

A line-by-line port of the numpy code in the original derivation
(``rnn_step_forward``, ``rnn_step_backward``, ``rnn_forward``,
``rnn_backward``), extended to the four activations of MATH.md §3 and to
T = 0. ``rnn_backward`` here is the document's own algorithm: a Python loop
from t = T-1 down to 0 that calls ``rnn_step_backward`` and accumulates the
weight gradients step by step, unlike :func:`jaxrnn.rnn_backward`, which
computes them after the recursion as single matmuls (MATH.md §5). These
use numpy only, so agreement between the two is evidence for both.

:func:`scan_rnn` is the second oracle: the forward pass as a JAX user would
write it (``lax.scan``, input projection inside the loop, no ``custom_vjp``),
for ``jax.grad`` to differentiate by autodiff.

The numpy functions take and return ``numpy.ndarray``; shapes as in MATH.md §1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._activations import get_activation

_F = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "identity": lambda a: a,
}
_DF = {  # f'(a) from h = f(a), MATH.md §3
    "tanh": lambda h: 1 - h**2,
    "relu": lambda h: (h > 0).astype(h.dtype),
    "sigmoid": lambda h: h * (1 - h),
    "identity": lambda h: np.ones_like(h),
}


def _activation(name: str) -> str:
    if name not in _F:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(map(repr, _F))}")
    return name


def rnn_step_forward(x, prev_h, Wx, Wh, b, activation="tanh"):
    """``next_h = f(x @ Wx + prev_h @ Wh + b)``; x: (N, D), prev_h: (N, H) -> (N, H), cache."""
    next_h = _F[_activation(activation)](x.dot(Wx) + prev_h.dot(Wh) + b)
    return next_h, (x, Wx, Wh, prev_h, next_h, activation)


def rnn_step_backward(dnext_h, cache):
    """The document's step backward; returns ``(dx, dprev_h, dWx, dWh, db)``."""
    x, Wx, Wh, prev_h, next_h, activation = cache
    da = dnext_h * _DF[activation](next_h)  # (N, H)
    dx = da.dot(Wx.T)  # (N, D)
    dprev_h = da.dot(Wh.T)  # (N, H)
    dWx = x.T.dot(da)  # (D, H)
    dWh = prev_h.T.dot(da)  # (H, H)
    db = np.sum(da, axis=0)  # (H,)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b, activation="tanh"):
    """The document's loop over time; x: (N, T, D), h0: (N, H) -> h: (N, T, H), cache."""
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=np.result_type(x, h0, Wx, Wh, b))
    h_interm = h0
    steps = []
    for t in range(T):
        h[:, t, :], step_cache = rnn_step_forward(x[:, t, :], h_interm, Wx, Wh, b, activation)
        h_interm = h[:, t, :]
        steps.append(step_cache)
    return h, (x, h0, Wx, Wh, steps)


def rnn_backward(dh, cache):
    """The document's BPTT loop; dh: (N, T, H) -> (dx, dh0, dWx, dWh, db)."""
    x, h0, Wx, Wh, steps = cache
    N, T, H = dh.shape
    D = Wx.shape[0]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros((D, H), dtype=dh.dtype)
    dWh = np.zeros((H, H), dtype=dh.dtype)
    db = np.zeros((H,), dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(
            dh[:, t, :] + dprev_h, steps[t]
        )
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def scan_rnn(
    x, h0, Wx, Wh, b, activation="tanh", *, lengths=None, truncation=None, carry_weights=None
):
    """Naive JAX forward, for autodiff: ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)`` (MATH.md §1).

    x: (N, T, D), h0: (N, H) -> h: (N, T, H). No validation, no custom_vjp:
    ``jax.grad`` of a loss of this function is plain reverse-mode autodiff.

    ``lengths`` (N,): step t of row n is valid when ``t < lengths[n]``; the
    carried state freezes after the last valid step and the output is zero at
    padded steps. ``truncation`` k: ``lax.stop_gradient`` on the carried state
    entering steps t = k, 2k, ... (the definition of truncated BPTT that
    :func:`jaxrnn.rnn_backward` is tested against); forward values are unchanged.
    ``carry_weights`` ξ (T,): the state entering step t becomes
    ``sg(h) + ξ_t (h - sg(h))``, which scales the gradient through it by ξ_t.
    """
    f = get_activation(activation).fn
    N, T = x.shape[:2]
    t = jnp.arange(T)
    cut = (t % truncation == 0) & (t > 0) if truncation else jnp.zeros((T,), dtype=bool)
    if lengths is None:
        m = jnp.ones((T, N, 1), dtype=bool)
    else:
        lengths = jnp.asarray(lengths).astype(jnp.int32)  # narrow ints would wrap in arange(T)
        m = (jnp.arange(T, dtype=jnp.int32)[:, None] < lengths[None, :])[:, :, None]

    xi = jnp.ones((T,), x.dtype) if carry_weights is None else carry_weights

    def step(h_prev, xs):
        x_t, m_t, cut_t, xi_t = xs
        if carry_weights is not None:
            sg = jax.lax.stop_gradient(h_prev)
            h_prev = sg + xi_t * (h_prev - sg)
        if truncation:
            h_prev = jnp.where(cut_t, jax.lax.stop_gradient(h_prev), h_prev)
        h_t = f(x_t @ Wx + h_prev @ Wh + b[None])
        if lengths is None:
            return h_t, h_t
        return jnp.where(m_t, h_t, h_prev), jnp.where(m_t, h_t, jnp.zeros_like(h_t))

    if T == 0:
        return jnp.zeros((N, 0, Wh.shape[0]), dtype=x.dtype)
    _, h = jax.lax.scan(step, h0, (x.swapaxes(0, 1), m, cut, xi))  # (T, N, H)
    return h.swapaxes(0, 1)
