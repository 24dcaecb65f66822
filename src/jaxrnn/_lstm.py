"""The LSTM (CS231n layout, MATH.md §9) as a :class:`~jaxrnn._recurrence.Cell` of the
engine, and its public functions: ``lstm_step_forward`` / ``lstm_step_backward``,
``lstm_forward`` / ``lstm_backward`` and ``lstm``, whose ``custom_vjp`` is the
hand-derived BPTT. The step's equations are written once (:func:`step_math`,
:func:`step_backward_math`); the engine's two loops run them with every option.
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


def gate_grads(x, h0, h, da, Wx):
    """§9's weight gradients as single matmuls over all N*T rows: ``(dx, dWx, dWh, db)``."""
    N, T, D = x.shape
    H = h0.shape[-1]
    da = da.reshape(N * T, 4 * H)
    h_prev = jnp.concatenate([h0[:, None], h], axis=1)[:, :T].reshape(N * T, H)
    dx = (da @ Wx.T).reshape(N, T, D)  # §9: dx_t = δ_t Wx^T
    return dx, x.reshape(N * T, D).T @ da, h_prev.T @ da, da.sum(axis=0)  # §9: Σ_t


def _project(p: LSTMParams, x: Array) -> LSTMSlots:
    N, T, D = x.shape
    H = p.Wh.shape[0]
    xw = (x.reshape(N * T, D) @ p.Wx + p.b[None]).reshape(N, T, 4 * H)  # §9: x_t Wx + b
    zeros = jnp.zeros((N, T, H), xw.dtype)
    return LSTMSlots(xw, zeros, zeros)


def _step(p: LSTMParams, buf_t: LSTMSlots, state):
    h, c, gates = step_math(buf_t.gates, *state, p.Wh)
    return (h, c), LSTMSlots(gates, c, h)


def _step_backward(Wh_T, buf_t: LSTMSlots, prev: LSTMSlots, dstate, dh_t):
    dh_next, dc_next = dstate
    dh_prev, dc_prev, da = step_backward_math(
        Wh_T, buf_t.gates, buf_t.c, prev.c, dh_t + dh_next, dc_next
    )
    return (dh_prev, dc_prev), da


def _param_grads(p: LSTMParams, x, state0, buf: LSTMSlots, da):
    dx, dWx, dWh, db = gate_grads(x, state0[0], buf.h, da, p.Wx)
    return dx, LSTMParams(dWx, dWh, db)


LSTM_CELL = rec.Cell(
    project=_project,
    step=_step,
    output=lambda buf: buf.h,
    backward_params=lambda p: p.Wh.T,  # (4H, H), materialised once
    step_backward=_step_backward,
    initial_buf=lambda s: LSTMSlots(
        jnp.zeros((s[0].shape[0], 4 * s[0].shape[1]), s[0].dtype), s[1], s[0]
    ),
    zero_dbuf=lambda buf: jnp.zeros_like(buf.gates),
    param_grads=_param_grads,
    needs_prev=True,  # δf_t needs c_{t-1}
)


@dataclasses.dataclass(frozen=True)
class LSTMStepCache:
    """What :func:`lstm_step_backward` needs from one :func:`lstm_step_forward` call."""

    x: Array  # (N, D)
    prev_h: Array  # (N, H)
    prev_c: Array  # (N, H)
    Wx: Array  # (D, 4H)
    Wh: Array  # (H, 4H)
    gates: Array  # (N, 4H) σ(i), σ(f), σ(o), tanh(g)
    next_c: Array  # (N, H)


@dataclasses.dataclass(frozen=True)
class LSTMCache:
    """What :func:`lstm_backward` needs from :func:`lstm_forward`.

    ``saved`` is :class:`LSTMSlots` ``(gates, c, h)`` of every step (each ``(N, T, ·)``),
    or with ``checkpoint = k`` the states ``(h, c)`` entering each segment of k steps,
    ``(ceil(T/k), N, H)`` each. ``c0`` is the initial cell state (zeros when none was
    given); ``has_c0`` (static) records whether it was given, which makes
    :func:`lstm_backward` return ``dc0`` as a sixth gradient.
    """

    x: Array  # (N, T, D)
    h0: Array  # (N, H)
    c0: Array  # (N, H)
    params: LSTMParams
    saved: object
    lengths: Array | None = None  # (N,) int
    carry_weights: Array | None = None  # (T,) ξ_t
    truncation: int | None = None  # static
    checkpoint: int | None = None  # static
    has_c0: bool = False  # static


jax.tree_util.register_dataclass(
    LSTMStepCache, data_fields=["x", "prev_h", "prev_c", "Wx", "Wh", "gates", "next_c"],
    meta_fields=[],
)  # fmt: skip
jax.tree_util.register_dataclass(
    LSTMCache, data_fields=["x", "h0", "c0", "params", "saved", "lengths", "carry_weights"],
    meta_fields=["truncation", "checkpoint", "has_c0"],
)  # fmt: skip


@jax.jit
def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) -> tuple[Array, Array, LSTMStepCache]:
    """One LSTM step (MATH.md §9)::

        a = x @ Wx + prev_h @ Wh + b;  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
        next_c = f * prev_c + i * g;   next_h = o * tanh(next_c)

    Args:
      x: ``(N, D)``; prev_h, prev_c: ``(N, H)``; Wx: ``(D, 4H)``; Wh: ``(H, 4H)``;
        b: ``(4H,)``, gate blocks in the order ``(i, f, o, g)``.

    Returns:
      ``(next_h, next_c, cache)``: ``(N, H)``, ``(N, H)`` and an :class:`LSTMStepCache`.
    """
    states = {"prev_h": prev_h, "prev_c": prev_c}
    args = check_gated_args("lstm_step_forward", x, states, dict(Wx=Wx, Wh=Wh, b=b), 4,
                            x_layout="N, D")  # fmt: skip
    x, prev_h, prev_c, Wx, Wh, b = args
    next_h, next_c, gates = step_math(x @ Wx + b[None], prev_h, prev_c, Wh)  # §9
    return next_h, next_c, LSTMStepCache(x, prev_h, prev_c, Wx, Wh, gates, next_c)


@jax.jit
def lstm_step_backward(dnext_h, dnext_c, cache: LSTMStepCache):
    """One LSTM step backward (MATH.md §9): δc = dnext_c + dnext_h ⊙ o ⊙ tanh'(c), the
    gates' δ from it, ``dprev_h = δ Wh^T``, ``dprev_c = δc ⊙ f``, and the weight gradients.

    Args:
      dnext_h, dnext_c: ``(N, H)`` gradients of the loss with respect to ``next_h``, ``next_c``.
      cache: the :class:`LSTMStepCache` of :func:`lstm_step_forward`.

    Returns:
      ``(dx, dprev_h, dprev_c, dWx, dWh, db)``: ``(N, D)``, ``(N, H)``, ``(N, H)``,
      ``(D, 4H)``, ``(H, 4H)``, ``(4H,)``.
    """
    fn = "lstm_step_backward"
    dnext_h = check_same_shape(fn, "dnext_h", dnext_h, "next_h", cache.next_c)
    dnext_c = check_same_shape(fn, "dnext_c", dnext_c, "next_c", cache.next_c)
    dprev_h, dprev_c, da = step_backward_math(
        cache.Wh.T, cache.gates, cache.next_c, cache.prev_c, dnext_h, dnext_c
    )  # §9
    dWx, dWh, db = cache.x.T @ da, cache.prev_h.T @ da, da.sum(axis=0)  # §9
    return da @ cache.Wx.T, dprev_h, dprev_c, dWx, dWh, db


def forward_cache(x, h0, c0, p: LSTMParams, lengths, xi, truncation, checkpoint, has_c0):
    """``(h, LSTMCache)`` on checked arguments (the engine's forward loop)."""
    opts = rec.Options(lengths, truncation, xi, checkpoint)
    _, h, saved = rec.forward(LSTM_CELL, p, x, (h0, c0), opts)
    cache = LSTMCache(x, h0, c0, p, saved, lengths, xi, truncation, checkpoint, has_c0)
    return h, cache


def backward_from_cache(dh, cache: LSTMCache):
    """``(dx, dh0, dc0, LSTMParams of gradients)`` by the engine's backward loop (§9)."""
    c = cache
    opts = rec.Options(c.lengths, c.truncation, c.carry_weights, c.checkpoint)
    dx, (dh0, dc0), g = rec.backward(LSTM_CELL, c.params, c.x, (c.h0, c.c0), c.saved, dh, opts)
    return dx, dh0, dc0, g


def _checked(fn, x, h0, c0, Wx, Wh, b, lengths, xi):
    states = {"h0": h0} if c0 is None else {"h0": h0, "c0": c0}
    args = check_gated_call(fn, x, states, dict(Wx=Wx, Wh=Wh, b=b), 4, lengths, xi)
    x, h0, *rest = args
    c0 = jnp.zeros_like(h0) if c0 is None else rest.pop(0)
    Wx, Wh, b, lengths, xi = rest
    return x, h0, c0, LSTMParams(Wx, Wh, b), lengths, xi


@partial(jax.jit, static_argnames=("truncation", "checkpoint"))
def _lstm_forward(x, h0, c0, Wx, Wh, b, lengths, xi, *, truncation, checkpoint):
    args = _checked("lstm_forward", x, h0, c0, Wx, Wh, b, lengths, xi)
    return forward_cache(*args, truncation, checkpoint, c0 is not None)


def lstm_forward(
    x, h0, Wx, Wh, b, *, c0=None, lengths=None, truncation=None, checkpoint=None,
    carry_weights=None,
) -> tuple[Array, LSTMCache]:  # fmt: skip
    """Runs the LSTM over a sequence (MATH.md §9), one engine loop over t = 1..T::

        a_t = x_t @ Wx + h_{t-1} @ Wh + b      gates (i, f, o, g) in blocks of H
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ tanh(c_t)

    Args:
      x: ``(N, T, D)``; h0: ``(N, H)``; Wx: ``(D, 4H)``; Wh: ``(H, 4H)``; b: ``(4H,)``.
      c0: optional ``(N, H)`` initial cell state; None means zeros (as in CS231n).
      lengths, truncation, checkpoint, carry_weights: as in :func:`jaxrnn.rnn_forward`
        (the state ``(h, c)`` freezes at padding, where ``h`` is zero; truncation and
        ξ_t act on the error of both ``h`` and ``c``).

    Returns:
      ``(h, cache)``: ``h`` ``(N, T, H)`` and the :class:`LSTMCache` for
      :func:`lstm_backward`. Jit-compiled (``truncation``, ``checkpoint`` static).
    """
    lengths, truncation, checkpoint = check_eager(
        "lstm_forward", x, None, lengths, truncation, checkpoint
    )
    return _lstm_forward(x, h0, c0, Wx, Wh, b, lengths, carry_weights,
                         truncation=truncation, checkpoint=checkpoint)  # fmt: skip


@jax.jit
def lstm_backward(dh, cache: LSTMCache) -> tuple[Array, ...]:
    """BPTT for :func:`lstm_forward`, derived by hand (MATH.md §9), for t = T..1::

        δc_t = δc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o_t ⊙ (1 - tanh²c_t)   dh_t: upstream + δ_{t+1} Wh^T
        δ_t  = [δc ⊙ g ⊙ i(1-i), δc ⊙ c_{t-1} ⊙ f(1-f), dh ⊙ tanh c ⊙ o(1-o), δc ⊙ i ⊙ (1-g²)]

    then ``dx = δ Wx^T``, ``dWx = Σ_t x_t^T δ_t``, ``dWh = Σ_t h_{t-1}^T δ_t``,
    ``db = Σ_t Σ_n δ_t`` as single matmuls over all N*T rows.

    Args:
      dh: ``(N, T, H)`` upstream gradient of every ``h_t``.
      cache: the :class:`LSTMCache` of :func:`lstm_forward`.

    Returns:
      ``(dx, dh0, dWx, dWh, db)``: ``(N, T, D)``, ``(N, H)``, ``(D, 4H)``, ``(H, 4H)``,
      ``(4H,)``; when ``lstm_forward`` was given ``c0`` (``cache.has_c0``), a 6-tuple
      with ``dc0`` ``(N, H)`` appended: ``(dx, dh0, dWx, dWh, db, dc0)``.
    """
    dh = check_dh("lstm_backward", dh, cache.x, cache.h0.shape[-1])
    dx, dh0, dc0, g = backward_from_cache(dh, cache)
    return (dx, dh0, *g, dc0) if cache.has_c0 else (dx, dh0, *g)


def lstm_unchecked(x, h0, c0, p: LSTMParams, lengths=None, truncation=None, xi=None,
                   checkpoint=None) -> Array:  # fmt: skip
    """:func:`lstm` on checked arguments: the library's one ``custom_vjp``
    (``_layer.run_layer``) on the state ``[h0 | c0]``; its rule is the §9 BPTT."""
    s = jnp.concatenate([h0, c0], axis=-1)  # (N, 2H): gradients reach h0 and c0 through it
    return run_layer("lstm", "tanh", truncation, checkpoint, x, s, p, lengths, xi)[0]


@partial(jax.jit, static_argnames=("truncation", "checkpoint"))
def _lstm_jit(x, h0, c0, Wx, Wh, b, lengths, xi, *, truncation, checkpoint):
    x, h0, c0, p, lengths, xi = _checked("lstm", x, h0, c0, Wx, Wh, b, lengths, xi)
    return lstm_unchecked(x, h0, c0, p, lengths, truncation, xi, checkpoint)


def lstm(
    x, h0, Wx, Wh, b, *, c0=None, lengths=None, truncation=None, checkpoint=None,
    carry_weights=None,
) -> Array:  # fmt: skip
    """The LSTM's outputs ``h: (N, T, H)`` (MATH.md §9), differentiable by the hand BPTT.

    A ``jax.custom_vjp`` whose rule is :func:`lstm_backward`; differentiable in ``x``,
    ``h0``, ``c0`` (when given), ``Wx``, ``Wh`` and ``b``. Arguments as in
    :func:`lstm_forward`. Composes with ``jit``, ``grad`` and ``vmap``.

    The final cell state ``c_T`` is not returned (nor is it in ``h``); to carry
    ``(h, c)`` from one chunk into the next, run the layer through
    :func:`jaxrnn.stack_forward` ``(x, ([h0 | c0],), (LSTMParams(Wx, Wh, b),))``,
    whose final state is ``[h_T | c_T]`` (frozen at each sequence's last valid step).
    """
    lengths, truncation, checkpoint = check_eager("lstm", x, None, lengths, truncation, checkpoint)
    return _lstm_jit(x, h0, c0, Wx, Wh, b, lengths, carry_weights,
                     truncation=truncation, checkpoint=checkpoint)  # fmt: skip


def init_lstm_params(key, D: int, H: int, dtype=jnp.float32, forget_bias: float = 1.0):
    """``LSTMParams`` with ``Wx ~ Normal(0, 1/D)``, each gate's ``(H, H)`` block of ``Wh``
    random orthogonal, ``b`` zero except the forget gate's block, ``forget_bias``.

    Forget bias 1.0 (Gers et al. 2000; Jozefowicz et al. 2015, who found it closes most
    of the LSTM's gap to the best architectures they searched): ``σ(1) ≈ 0.73``, so at
    initialisation ``c`` keeps most of itself each step and δc (MATH.md §9) reaches
    further back through the forget gate than with ``σ(0) = 0.5``.
    """
    Wx, Wh = gate_weights("init_lstm_params", key, D, H, 4, dtype)
    H = Wh.shape[0]
    b = jnp.zeros((4 * H,), Wx.dtype).at[H : 2 * H].set(forget_bias)
    return LSTMParams(Wx, Wh, b)


def _split(s: Array) -> tuple[Array, Array]:
    H = s.shape[-1] // 2
    return s[..., :H], s[..., H:]


def _check_layer(fn: str, x, s, p: LSTMParams):
    h0, c0 = _split(s)
    x, h0, c0, p, _, _ = _checked(fn, x, h0, c0, *p, None, None)
    return x, jnp.concatenate([h0, c0], axis=-1), p


register(
    LSTMParams,
    Kind(
        "lstm",
        lambda activation: LSTM_CELL,
        _split,
        lambda st: jnp.concatenate(st, axis=-1),
        lambda p: 2 * p.Wh.shape[0],
        _check_layer,
    ),
)
