"""The document's algorithm in plain numpy: an independent oracle for the JAX code.

A line-by-line port of the numpy code in the original derivation
(``rnn_step_forward``, ``rnn_step_backward``, ``rnn_forward``,
``rnn_backward``), extended to the four activations of MATH.md §3 and to
T = 0. ``rnn_backward`` here is the document's own algorithm: a Python loop
from t = T-1 down to 0 that calls ``rnn_step_backward`` and accumulates the
weight gradients step by step, unlike :func:`jaxrnn.rnn_backward`, which
computes them after the recursion as single matmuls (MATH.md §5). These
use numpy only, so agreement between the two is evidence for both.

:func:`scan_rnn`, :func:`scan_lstm` and :func:`scan_gru` (from ``_scan.py``, where
the model's autodiff path imports them too) are the second oracle: the forward pass
as a JAX user would write it (``lax.scan``, input projection inside the loop, no
``custom_vjp``), for ``jax.grad`` to differentiate by autodiff.

The numpy functions take and return ``numpy.ndarray``; shapes as in MATH.md §1.
"""

from __future__ import annotations

import numpy as np

from ._scan import scan_cell as scan_cell
from ._scan import scan_gru as scan_gru
from ._scan import scan_layer as scan_layer
from ._scan import scan_lstm as scan_lstm
from ._scan import scan_rnn as scan_rnn

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


# --- The gated cells (MATH.md §9, §10): the same loop style, one step function each ---------


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step (§9), gates (i, f, o, g); returns ``(next_h, next_c, cache)``."""
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b  # (N, 4H)
    i, f, o = (_sigmoid(a[:, k * H : (k + 1) * H]) for k in range(3))
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """The LSTM step backward (§9); returns ``(dx, dprev_h, dprev_c, dWx, dWh, db)``."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc**2)  # δc_t
    da = np.concatenate(
        [dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * tc * o * (1 - o),
         dc * i * (1 - g**2)],
        axis=1,
    )  # fmt: skip
    return da.dot(Wx.T), da.dot(Wh.T), dc * f, x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b, c0=None):
    """The loop over time; x: (N, T, D), h0 (and c0, zeros if None): (N, H) -> h, cache.

    ``c0`` extends CS231n's signature (the oracle's only extension); the cache also
    keeps the final ``(h_T, c_T)`` as ``cache[-1]``."""
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=np.result_type(x, h0, Wx, Wh, b))
    prev_h, prev_c = h0, (np.zeros_like(h0) if c0 is None else c0)
    steps = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        steps.append(step_cache)
    return h, (x, h0, Wx, Wh, steps, (prev_h, prev_c))


def lstm_backward(dh, cache):
    """BPTT loop; CS231n's ``(dx, dh0, dWx, dWh, db)``, always five."""
    x, h0, Wx, Wh, steps, _ = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[1], dh.dtype)
    dprev_h, dprev_c = np.zeros((N, H), dh.dtype), np.zeros((N, H), dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t] + dprev_h, dprev_c, steps[t]
        )
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def gru_step_forward(x, prev_h, Wx, Wh, bx, bh):
    """One GRU step (§10, torch's formulation), gates (r, z, n); returns ``(next_h, cache)``."""
    H = prev_h.shape[1]
    xw, hw = x.dot(Wx) + bx, prev_h.dot(Wh) + bh  # (N, 3H) each
    r = _sigmoid(xw[:, :H] + hw[:, :H])
    z = _sigmoid(xw[:, H : 2 * H] + hw[:, H : 2 * H])
    n = np.tanh(xw[:, 2 * H :] + r * hw[:, 2 * H :])
    next_h = (1 - z) * n + z * prev_h
    return next_h, (x, prev_h, Wx, Wh, r, z, n, hw[:, 2 * H :])


def gru_step_backward(dnext_h, cache):
    """The GRU step backward (§10); returns ``(dx, dprev_h, dWx, dWh, dbx, dbh)``."""
    x, prev_h, Wx, Wh, r, z, n, hn = cache
    dan = dnext_h * (1 - z) * (1 - n**2)
    dar = dan * hn * r * (1 - r)
    daz = dnext_h * (prev_h - n) * z * (1 - z)
    dxw = np.concatenate([dar, daz, dan], axis=1)  # error of x Wx + bx
    dhw = np.concatenate([dar, daz, dan * r], axis=1)  # error of h Wh + bh
    dprev_h = dnext_h * z + dhw.dot(Wh.T)
    return dxw.dot(Wx.T), dprev_h, x.T.dot(dxw), prev_h.T.dot(dhw), dxw.sum(0), dhw.sum(0)


def gru_forward(x, h0, Wx, Wh, bx, bh):
    """The loop over time; x: (N, T, D), h0: (N, H) -> h: (N, T, H), cache."""
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=np.result_type(x, h0, Wx, Wh, bx, bh))
    prev_h, steps = h0, []
    for t in range(T):
        prev_h, step_cache = gru_step_forward(x[:, t], prev_h, Wx, Wh, bx, bh)
        h[:, t] = prev_h
        steps.append(step_cache)
    return h, (x, h0, Wx, Wh, steps)


def gru_backward(dh, cache):
    """BPTT loop; returns ``(dx, dh0, dWx, dWh, dbx, dbh)``."""
    x, h0, Wx, Wh, steps = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0]), dtype=dh.dtype)
    grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(3 * H, dh.dtype),
             np.zeros(3 * H, dh.dtype)]  # fmt: skip
    dprev_h = np.zeros((N, H), dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dprev_h, *g_t = gru_step_backward(dh[:, t] + dprev_h, steps[t])
        grads = [a + g for a, g in zip(grads, g_t, strict=True)]
    return (dx, dprev_h, *grads)
