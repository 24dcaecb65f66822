"""The GRU's math (torch's formulation, MATH.md §10): its parameters, its step and the
step's backward, the engine :class:`~jaxrnn._recurrence.Cell` that runs them, and its
initialiser.

Nothing here checks arguments or builds caches: the public functions (``_classic.py``,
``_layer.py``) do that once, for every cell, from the registry (``_cells.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _recurrence as rec
from ._rnn import init_weights, project
from ._sharding import contract, zeros

Array = jax.Array


class GRUParams(NamedTuple):
    """One GRU layer, gates ``(r, z, n)`` in blocks of H columns (torch's order), so
    ``Wx = weight_ih.T``, ``Wh = weight_hh.T``, ``bx = bias_ih``, ``bh = bias_hh``."""

    Wx: Array  # (D, 3H)
    Wh: Array  # (H, 3H)
    bx: Array  # (3H,)
    bh: Array  # (3H,)


class GRUSlots(NamedTuple):
    """What the forward loop stores per step (``(N, T, ...)``, or one step's ``(N, ...)``)."""

    gates: Array  # (N, T, 3H): x_t Wx + bx before step t; r, z, n after
    hn: Array  # (N, T, H) h_{t-1} Wh_n + bh_n, the term r gates
    h: Array  # (N, T, H) outputs h_t


def step_math(xw_t: Array, h_prev: Array, Wh: Array, bh: Array):
    """``(h_t, gates, hn)`` from the projected input ``xw_t = x_t Wx + bx`` (§10)."""
    H = h_prev.shape[-1]
    hw = h_prev @ Wh + bh[None]  # §10: h_{t-1} Wh + bh, (N, 3H)
    rz = jax.nn.sigmoid(xw_t[:, : 2 * H] + hw[:, : 2 * H])  # §10: r, z
    hn = hw[:, 2 * H :]
    n = jnp.tanh(xw_t[:, 2 * H :] + rz[:, :H] * hn)  # §10: n = tanh(x Wx_n + bx_n + r ⊙ hn)
    z = rz[:, H:]
    h = (1 - z) * n + z * h_prev  # §10: h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    return h, jnp.concatenate([rz, n], axis=1), hn


def step_backward_math(Wh_T, gates, hn, h_prev, dh):
    """``(dh_{t-1}, δx_t, δh_t)`` with ``dh`` all error reaching ``h_t`` (§10): δx is the
    error of ``x_t Wx + bx``, δh that of ``h_{t-1} Wh + bh`` (they differ in the n block)."""
    r, z, n = jnp.split(gates, 3, axis=1)
    dan = dh * (1 - z) * (1 - n * n)  # §10: δn
    dar = dan * hn * r * (1 - r)  # §10: δr
    daz = dh * (h_prev - n) * z * (1 - z)  # §10: δz
    dxw = jnp.concatenate([dar, daz, dan], axis=1)
    dhw = jnp.concatenate([dar, daz, dan * r], axis=1)
    return dh * z + dhw @ Wh_T, dxw, dhw  # §10: through z directly, and through Wh


def _project(p: GRUParams, x: Array) -> GRUSlots:
    xw = project(p.Wx, p.bx, x)  # §10: x_t Wx + bx, (N, T, 3H)
    z = zeros(xw, (*x.shape[:2], p.Wh.shape[0]))  # (N, T, H), typed like xw
    return GRUSlots(xw, z, z)


def _step(p: GRUParams, buf_t: GRUSlots, h_prev):
    h, gates, hn = step_math(buf_t.gates, h_prev, p.Wh, p.bh)
    return h, GRUSlots(gates, hn, h)


def _step_backward(Wh_T, buf_t: GRUSlots, prev: GRUSlots, dnext, dh_t):
    dh_prev, dxw, _ = step_backward_math(Wh_T, buf_t.gates, buf_t.hn, prev.h, dh_t + dnext)
    return dh_prev, dxw


def _param_grads(p: GRUParams, x, h0, buf: GRUSlots, dxw):
    """§10's weight gradients as single matmuls over all N*T rows."""
    N, T, D = x.shape
    H = h0.shape[-1]
    r = buf.gates[:, :, :H]
    dhw = jnp.concatenate([dxw[:, :, : 2 * H], dxw[:, :, 2 * H :] * r], axis=2)  # §10: δh
    dxw, dhw = dxw.reshape(N * T, 3 * H), dhw.reshape(N * T, 3 * H)
    h_prev = jnp.concatenate([h0[:, None], buf.h], axis=1)[:, :T].reshape(N * T, H)
    dx = (dxw @ p.Wx.T).reshape(N, T, D)  # §10: dx_t = δx_t Wx^T
    dWx, dbx = contract(x.reshape(N * T, D).T, dxw, p.Wx), dxw.sum(axis=0)  # §10: Σ x_t^T δx_t
    dWh, dbh = contract(h_prev.T, dhw, p.Wh), dhw.sum(axis=0)  # §10: Σ_t h_{t-1}^T δh_t
    return dx, GRUParams(dWx, dWh, dbx, dbh)


def _initial_buf(h0: Array) -> GRUSlots:
    N, H = h0.shape
    return GRUSlots(zeros(h0, (N, 3 * H)), jnp.zeros_like(h0), h0)


# needs_prev: δz_t needs h_{t-1}
GRU_CELL = rec.gated_cell(_project, _step, _step_backward, _initial_buf, _param_grads)


def init_gru_params(key: Array, D: int, H: int, dtype=jnp.float32) -> GRUParams:
    """``GRUParams`` with ``Wx ~ Normal(0, 1/D)``, each gate's ``(H, H)`` block of ``Wh``
    random orthogonal (as :func:`jaxrnn.init_rnn_params` for ``Wh``), both biases zero."""
    Wx, Wh = init_weights("init_gru_params", key, D, H, 3, dtype)
    zeros = jnp.zeros((Wh.shape[1],), Wx.dtype)
    return GRUParams(Wx, Wh, zeros, zeros)
