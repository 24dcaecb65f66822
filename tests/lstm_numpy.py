"""A hand-written numpy LSTM forward and BPTT (CS231n layout), for ``check_bptt``.

Gates in the order i, f, o, g of ``a = x_t Wx + h_{t-1} Wh + b`` (``Wx: (D, 4H)``,
``Wh: (H, 4H)``, ``b: (4H,)``); the state is ``(h, c)``.
"""

import jax
import jax.numpy as jnp
import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_cell(params, state, x_t):
    """The reference step for check_bptt, in JAX: (h, c) -> (h', c')."""
    Wx, Wh, b = params
    h, c = state
    a = x_t @ Wx + h @ Wh + b[None]
    i, f, o, g = jnp.split(a, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def lstm_forward(x, state0, params):
    """x: (N, T, D), state0 = (h0, c0): (N, H) each -> (h: (N, T, H), cache)."""
    Wx, Wh, b = params
    h, c = state0
    H = h.shape[1]
    steps, hs = [], []
    for t in range(x.shape[1]):
        a = x[:, t] @ Wx + h @ Wh + b
        i, f, o = (sigmoid(a[:, k * H : (k + 1) * H]) for k in range(3))
        g = np.tanh(a[:, 3 * H :])
        c_next = f * c + i * g
        h_next = o * np.tanh(c_next)
        steps.append((x[:, t], h, c, i, f, o, g, c_next))
        h, c = h_next, c_next
        hs.append(h)
    return np.stack(hs, axis=1), (steps, params)


def lstm_backward(dh, cache, *, keep=None, dc=None):
    """dh: (N, T, H) -> (dx, (dh0, dc0), (dWx, dWh, db)).

    ``dc`` (N, T, H): an upstream gradient of c too (when c is an output);
    ``keep``: the carried gradient is zeroed ``keep`` steps from the end (a mutant).
    """
    steps, (Wx, Wh, b) = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        if keep is not None and T - 1 - t == keep:
            dh_next, dc_next = np.zeros_like(dh_next), np.zeros_like(dc_next)
        x_t, h_prev, c_prev, i, f, o, g, c = steps[t]  # c: c_t
        dh_t = dh[:, t] + dh_next
        tc = np.tanh(c)
        dc_t = dc_next + dh_t * o * (1 - tc**2) + (0 if dc is None else dc[:, t])
        da = np.concatenate(
            [
                dc_t * g * i * (1 - i),
                dc_t * c_prev * f * (1 - f),
                dh_t * tc * o * (1 - o),
                dc_t * i * (1 - g**2),
            ],
            axis=1,
        )
        dx[:, t] = da @ Wx.T
        dWx += x_t.T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        dh_next, dc_next = da @ Wh.T, dc_t * f
    return dx, (dh_next, dc_next), (dWx, dWh, db)
