"""The GRU (torch's formulation, MATH.md §10) as a :class:`~jaxrnn._recurrence.Cell` of
the engine, and its public functions: ``gru_step_forward`` / ``gru_step_backward``,
``gru_forward`` / ``gru_backward`` and ``gru``, whose ``custom_vjp`` is the hand-derived
BPTT. The step's equations are written once (:func:`step_math`, :func:`step_backward_math`).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _recurrence as rec
from ._checks import (
    check_dh,
    check_eager,
    check_gated_args,
    check_gated_call,
    check_same_shape,
)
from ._layer import Kind, register, run_layer
from ._params import gate_weights

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
    N, T, D = x.shape
    H = p.Wh.shape[0]
    xw = (x.reshape(N * T, D) @ p.Wx + p.bx[None]).reshape(N, T, 3 * H)  # §10: x_t Wx + bx
    zeros = jnp.zeros((N, T, H), xw.dtype)
    return GRUSlots(xw, zeros, zeros)


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
    dWx, dbx = x.reshape(N * T, D).T @ dxw, dxw.sum(axis=0)  # §10: Σ_t x_t^T δx_t, Σ δx_t
    dWh, dbh = h_prev.T @ dhw, dhw.sum(axis=0)  # §10: Σ_t h_{t-1}^T δh_t, Σ δh_t
    return dx, GRUParams(dWx, dWh, dbx, dbh)


def _initial_buf(h0: Array) -> GRUSlots:
    N, H = h0.shape
    return GRUSlots(jnp.zeros((N, 3 * H), h0.dtype), jnp.zeros_like(h0), h0)


GRU_CELL = rec.Cell(
    project=_project,
    step=_step,
    output=lambda buf: buf.h,
    backward_params=lambda p: p.Wh.T,  # (3H, H), materialised once
    step_backward=_step_backward,
    initial_buf=_initial_buf,
    zero_dbuf=lambda buf: jnp.zeros_like(buf.gates),
    param_grads=_param_grads,
    needs_prev=True,  # δz_t needs h_{t-1}
)


@dataclasses.dataclass(frozen=True)
class GRUStepCache:
    """What :func:`gru_step_backward` needs from one :func:`gru_step_forward` call."""

    x: Array  # (N, D)
    prev_h: Array  # (N, H)
    Wx: Array  # (D, 3H)
    Wh: Array  # (H, 3H)
    gates: Array  # (N, 3H) r, z, n
    hn: Array  # (N, H) prev_h Wh_n + bh_n


@dataclasses.dataclass(frozen=True)
class GRUCache:
    """What :func:`gru_backward` needs from :func:`gru_forward`: ``saved`` is
    :class:`GRUSlots` ``(gates, hn, h)`` of every step (each ``(N, T, ·)``), or with
    ``checkpoint = k`` the states entering each segment, ``(ceil(T/k), N, H)``."""

    x: Array  # (N, T, D)
    h0: Array  # (N, H)
    params: GRUParams
    saved: object
    lengths: Array | None = None  # (N,) int
    carry_weights: Array | None = None  # (T,) ξ_t
    truncation: int | None = None  # static
    checkpoint: int | None = None  # static


jax.tree_util.register_dataclass(
    GRUStepCache, data_fields=["x", "prev_h", "Wx", "Wh", "gates", "hn"], meta_fields=[]
)
jax.tree_util.register_dataclass(
    GRUCache, data_fields=["x", "h0", "params", "saved", "lengths", "carry_weights"],
    meta_fields=["truncation", "checkpoint"],
)  # fmt: skip


@jax.jit
def gru_step_forward(x, prev_h, Wx, Wh, bx, bh) -> tuple[Array, GRUStepCache]:
    """One GRU step (MATH.md §10, torch's ``nn.GRUCell``)::

        r = σ(x Wx_r + bx_r + prev_h Wh_r + bh_r);  z = σ(x Wx_z + bx_z + prev_h Wh_z + bh_z)
        n = tanh(x Wx_n + bx_n + r ⊙ (prev_h Wh_n + bh_n));  next_h = (1 - z) ⊙ n + z ⊙ prev_h

    Args:
      x: ``(N, D)``; prev_h: ``(N, H)``; Wx: ``(D, 3H)``; Wh: ``(H, 3H)``;
        bx, bh: ``(3H,)``, gate blocks in the order ``(r, z, n)``.

    Returns:
      ``(next_h, cache)``: ``(N, H)`` and a :class:`GRUStepCache`.
    """
    weights = dict(Wx=Wx, Wh=Wh, bx=bx, bh=bh)
    args = check_gated_args("gru_step_forward", x, {"prev_h": prev_h}, weights, 3, x_layout="N, D")
    x, prev_h, Wx, Wh, bx, bh = args
    next_h, gates, hn = step_math(x @ Wx + bx[None], prev_h, Wh, bh)  # §10
    return next_h, GRUStepCache(x, prev_h, Wx, Wh, gates, hn)


@jax.jit
def gru_step_backward(dnext_h, cache: GRUStepCache):
    """One GRU step backward (MATH.md §10).

    Args:
      dnext_h: ``(N, H)`` gradient of the loss with respect to ``next_h``.
      cache: the :class:`GRUStepCache` of :func:`gru_step_forward`.

    Returns:
      ``(dx, dprev_h, dWx, dWh, dbx, dbh)``: ``(N, D)``, ``(N, H)``, ``(D, 3H)``,
      ``(H, 3H)``, ``(3H,)``, ``(3H,)``.
    """
    dnext_h = check_same_shape("gru_step_backward", "dnext_h", dnext_h, "next_h", cache.prev_h)
    c = cache
    dprev_h, dxw, dhw = step_backward_math(c.Wh.T, c.gates, c.hn, c.prev_h, dnext_h)  # §10
    dWx, dWh = c.x.T @ dxw, c.prev_h.T @ dhw  # §10
    return dxw @ c.Wx.T, dprev_h, dWx, dWh, dxw.sum(axis=0), dhw.sum(axis=0)


def forward_cache(x, h0, p: GRUParams, lengths, xi, truncation, checkpoint):
    """``(h, GRUCache)`` on checked arguments (the engine's forward loop)."""
    opts = rec.Options(lengths, truncation, xi, checkpoint)
    _, h, saved = rec.forward(GRU_CELL, p, x, h0, opts)
    return h, GRUCache(x, h0, p, saved, lengths, xi, truncation, checkpoint)


def backward_from_cache(dh, cache: GRUCache):
    """``(dx, dh0, GRUParams of gradients)`` by the engine's backward loop (§10)."""
    c = cache
    opts = rec.Options(c.lengths, c.truncation, c.carry_weights, c.checkpoint)
    return rec.backward(GRU_CELL, c.params, c.x, c.h0, c.saved, dh, opts)


def _checked(fn, x, h0, Wx, Wh, bx, bh, lengths, xi):
    weights = dict(Wx=Wx, Wh=Wh, bx=bx, bh=bh)
    x, h0, Wx, Wh, bx, bh, lengths, xi = check_gated_call(
        fn, x, {"h0": h0}, weights, 3, lengths, xi
    )
    return x, h0, GRUParams(Wx, Wh, bx, bh), lengths, xi


@partial(jax.jit, static_argnames=("truncation", "checkpoint"))
def _gru_forward(x, h0, Wx, Wh, bx, bh, lengths, xi, *, truncation, checkpoint):
    args = _checked("gru_forward", x, h0, Wx, Wh, bx, bh, lengths, xi)
    return forward_cache(*args, truncation, checkpoint)


def gru_forward(
    x, h0, Wx, Wh, bx, bh, *, lengths=None, truncation=None, checkpoint=None,
    carry_weights=None,
) -> tuple[Array, GRUCache]:  # fmt: skip
    """Runs the GRU over a sequence (MATH.md §10), one engine loop over t = 1..T
    (the step of :func:`gru_step_forward`).

    Args:
      x: ``(N, T, D)``; h0: ``(N, H)``; Wx: ``(D, 3H)``; Wh: ``(H, 3H)``; bx, bh: ``(3H,)``.
      lengths, truncation, checkpoint, carry_weights: as in :func:`jaxrnn.rnn_forward`.

    Returns:
      ``(h, cache)``: ``h`` ``(N, T, H)`` and the :class:`GRUCache` for
      :func:`gru_backward`. Jit-compiled (``truncation``, ``checkpoint`` static).
    """
    lengths, truncation, checkpoint = check_eager(
        "gru_forward", x, None, lengths, truncation, checkpoint
    )
    return _gru_forward(x, h0, Wx, Wh, bx, bh, lengths, carry_weights,
                        truncation=truncation, checkpoint=checkpoint)  # fmt: skip


@jax.jit
def gru_backward(dh, cache: GRUCache) -> tuple[Array, ...]:
    """BPTT for :func:`gru_forward`, derived by hand (MATH.md §10), for t = T..1::

        dh_t = upstream + dh_{t+1 → t};   δn = dh ⊙ (1 - z) ⊙ (1 - n²)
        δz = dh ⊙ (h_{t-1} - n) ⊙ z(1 - z);   δr = δn ⊙ hn ⊙ r(1 - r)
        δx_t = [δr, δz, δn];  δh_t = [δr, δz, δn ⊙ r];  dh_{t → t-1} = dh ⊙ z + δh_t Wh^T

    then ``dx = δx Wx^T``, ``dWx = Σ_t x_t^T δx_t``, ``dWh = Σ_t h_{t-1}^T δh_t``,
    ``dbx = Σ δx``, ``dbh = Σ δh`` as single matmuls over all N*T rows.

    Returns:
      ``(dx, dh0, dWx, dWh, dbx, dbh)``: ``(N, T, D)``, ``(N, H)``, ``(D, 3H)``,
      ``(H, 3H)``, ``(3H,)``, ``(3H,)``.
    """
    dh = check_dh("gru_backward", dh, cache.x, cache.h0.shape[-1])
    dx, dh0, g = backward_from_cache(dh, cache)
    return dx, dh0, *g


def gru_unchecked(x, h0, p: GRUParams, lengths=None, truncation=None, xi=None, checkpoint=None):
    """:func:`gru` on checked arguments: the library's one ``custom_vjp``
    (``_layer.run_layer``), whose rule is the §10 BPTT."""
    return run_layer("gru", "tanh", truncation, checkpoint, x, h0, p, lengths, xi)[0]


@partial(jax.jit, static_argnames=("truncation", "checkpoint"))
def _gru_jit(x, h0, Wx, Wh, bx, bh, lengths, xi, *, truncation, checkpoint):
    x, h0, p, lengths, xi = _checked("gru", x, h0, Wx, Wh, bx, bh, lengths, xi)
    return gru_unchecked(x, h0, p, lengths, truncation, xi, checkpoint)


def gru(
    x, h0, Wx, Wh, bx, bh, *, lengths=None, truncation=None, checkpoint=None,
    carry_weights=None,
) -> Array:  # fmt: skip
    """The GRU's outputs ``h: (N, T, H)`` (MATH.md §10), differentiable by the hand BPTT:
    a ``jax.custom_vjp`` whose rule is :func:`gru_backward`. Arguments as in
    :func:`gru_forward`. Composes with ``jit``, ``grad`` and ``vmap``."""
    lengths, truncation, checkpoint = check_eager("gru", x, None, lengths, truncation, checkpoint)
    return _gru_jit(x, h0, Wx, Wh, bx, bh, lengths, carry_weights,
                    truncation=truncation, checkpoint=checkpoint)  # fmt: skip


def init_gru_params(key, D: int, H: int, dtype=jnp.float32) -> GRUParams:
    """``GRUParams`` with ``Wx ~ Normal(0, 1/D)``, each gate's ``(H, H)`` block of ``Wh``
    random orthogonal (as :func:`jaxrnn.init_params` for ``Wh``), both biases zero."""
    Wx, Wh = gate_weights("init_gru_params", key, D, H, 3, dtype)
    zeros = jnp.zeros((Wh.shape[1],), Wx.dtype)
    return GRUParams(Wx, Wh, zeros, zeros)


def _check_layer(fn: str, x, h0, p: GRUParams):
    x, h0, p, _, _ = _checked(fn, x, h0, *p, None, None)
    return x, h0, p


register(
    GRUParams,
    Kind(
        "gru",
        lambda activation: GRU_CELL,
        lambda s: s,
        lambda s: s,
        lambda p: p.Wh.shape[0],
        _check_layer,
    ),
)
