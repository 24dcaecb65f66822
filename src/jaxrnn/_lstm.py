"""The LSTM's math (CS231n layout, MATH.md §9): its parameters, its step and the step's
backward, the engine :class:`~jaxrnn._recurrence.Cell` that runs them, and its initialiser.

Nothing here checks arguments or builds caches: the public functions (``_classic.py``,
``_layer.py``) do that once, for every cell, from the registry (``_cells.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _recurrence as rec
from ._rnn import init_weights, project, weight_grads
from ._sharding import zeros

Array = jax.Array


class LSTMParams(NamedTuple):
    """One LSTM layer: ``a_t = x_t @ Wx + h_{t-1} @ Wh + b``, gates ``(i, f, o, g)`` in
    blocks of H columns (CS231n's order; torch's ``nn.LSTM`` uses ``(i, f, g, o)``)."""

    Wx: Array  # (D, 4H)
    Wh: Array  # (H, 4H)
    b: Array  # (4H,)


class LSTMSlots(NamedTuple):
    """What the forward loop stores per step (``(N, T, ...)``, or one step's ``(N, ...)``)."""

    gates: Array  # (N, T, 4H): x_t Wx + b before step t; σ(i), σ(f), σ(o), tanh(g) after
    c: Array  # (N, T, H) cell states c_t
    h: Array  # (N, T, H) outputs h_t


def step_math(xw_t: Array, h_prev: Array, c_prev: Array, Wh: Array):
    """``(h_t, c_t, gates)`` from the projected input ``xw_t = x_t Wx + b`` (§9)."""
    H = h_prev.shape[-1]
    a = xw_t + h_prev @ Wh  # §9: a_t = x_t Wx + h_{t-1} Wh + b, (N, 4H)
    gates = jnp.concatenate([jax.nn.sigmoid(a[:, : 3 * H]), jnp.tanh(a[:, 3 * H :])], axis=1)
    i, f, o, g = jnp.split(gates, 4, axis=1)
    c = f * c_prev + i * g  # §9: c_t = f ⊙ c_{t-1} + i ⊙ g
    return o * jnp.tanh(c), c, gates  # §9: h_t = o ⊙ tanh(c_t)


def step_backward_math(Wh_T, gates, c, c_prev, dh, dc_next):
    """``(δ_t Wh^T, δc_t ⊙ f, δ_t)`` with ``dh`` all error reaching ``h_t`` (§9)."""
    i, f, o, g = jnp.split(gates, 4, axis=1)
    tc = jnp.tanh(c)
    dc = dc_next + dh * o * (1 - tc * tc)  # §9: δc_t = δc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o ⊙ tanh'
    da = jnp.concatenate(  # §9: δ_t of the four gates' pre-activations, (N, 4H)
        [
            dc * g * i * (1 - i),
            dc * c_prev * f * (1 - f),
            dh * tc * o * (1 - o),
            dc * i * (1 - g * g),
        ],
        axis=1,
    )
    return da @ Wh_T, dc * f, da  # §9: δh to t-1 through Wh, δc through the forget gate


def _project(p: LSTMParams, x: Array) -> LSTMSlots:
    xw = project(p.Wx, p.b, x)  # §9: x_t Wx + b, (N, T, 4H)
    z = zeros(xw, (*x.shape[:2], p.Wh.shape[0]))  # (N, T, H), typed like xw
    return LSTMSlots(xw, z, z)


def _step(p: LSTMParams, buf_t: LSTMSlots, state):
    prev_h, prev_c = state
    h, c, gates = step_math(buf_t.gates, prev_h, prev_c, p.Wh)
    return (h, c), LSTMSlots(gates, c, h)


def _step_backward(Wh_T, buf_t: LSTMSlots, prev: LSTMSlots, dstate, dh_t):
    dh_next, dc_next = dstate
    dh_prev, dc_prev, da = step_backward_math(
        Wh_T, buf_t.gates, buf_t.c, prev.c, dh_t + dh_next, dc_next
    )
    return (dh_prev, dc_prev), da


def _param_grads(p: LSTMParams, x, state0, buf: LSTMSlots, da):
    dx, dWx, dWh, db = weight_grads(x, state0[0], buf.h, da, p.Wx, p.Wh)  # §9, as §5
    return dx, LSTMParams(dWx, dWh, db)


def _initial_buf(s) -> LSTMSlots:
    h0, c0 = s
    return LSTMSlots(zeros(h0, (h0.shape[0], 4 * h0.shape[1])), c0, h0)


# needs_prev: δf_t needs c_{t-1}
LSTM_CELL = rec.gated_cell(_project, _step, _step_backward, _initial_buf, _param_grads)


def init_lstm_params(
    key: Array, D: int, H: int, dtype=jnp.float32, forget_bias: float = 1.0
) -> LSTMParams:
    """``LSTMParams`` with ``Wx ~ Normal(0, 1/D)``, each gate's ``(H, H)`` block of ``Wh``
    random orthogonal, ``b`` zero except the forget gate's block, ``forget_bias``.

    Forget bias 1.0 (Gers et al. 2000; Jozefowicz et al. 2015, who found it closes most
    of the LSTM's gap to the best architectures they searched): ``σ(1) ≈ 0.73``, so at
    initialisation ``c`` keeps most of itself each step and δc (MATH.md §9) reaches
    further back through the forget gate than with ``σ(0) = 0.5``.
    """
    Wx, Wh = init_weights("init_lstm_params", key, D, H, 4, dtype)
    H = Wh.shape[0]
    b = jnp.zeros((4 * H,), Wx.dtype).at[H : 2 * H].set(forget_bias)
    return LSTMParams(Wx, Wh, b)
