"""Forward mode by hand: the tangent recurrence of every cell (MATH.md §11).

The tangent of §1 pushed forward in time: given tangents of the inputs, the initial
state and the weights, each step maps ``(state, ṡtate)`` to the next pair. It runs in
the engine's one forward loop (:func:`jaxrnn._recurrence.forward_window`) as a cell
over dual numbers, :func:`tangent_cell`: the state is ``(s, ṡ)``, the buffers hold the
projected input and its tangent, and each step writes ``h_t`` and ``ḣ_t``. The options
are its static terms: ``lengths`` freeze ``(s, ṡ)`` and zero ``(h, ḣ)`` at padding as
for the primal; a truncation cut and a carry weight ``ξ_t`` act on the tangent entering
step t (the transpose of what they do to the error in §3), carried in a buffer slot
present only when used. ``checkpoint`` changes nothing in forward mode: nothing is
stored for a later pass.
"""

from __future__ import annotations

from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp

from . import _recurrence as rec
from ._activations import get_activation
from ._cells import CellKind
from ._rnn import project

Array = jax.Array
tree_map = jax.tree_util.tree_map


def rnn_step_tangent(act: str):
    """§11 for the vanilla RNN: ``ḣ_t = f'(a_t) ⊙ (ẋw_t + ḣ_{t-1} Wh + h_{t-1} Ẇh)``."""
    fprime = get_activation(act).deriv_from_output

    def step(p, dp, out_t, h_prev, dh_prev, dxw_t):
        da = dxw_t + dh_prev @ p.Wh + h_prev @ dp.Wh  # §11: ȧ_t
        dh = fprime(out_t) * da  # §11: ḣ_t = f'(a_t) ⊙ ȧ_t, f' from h_t
        return dh, dh

    return step


def lstm_step_tangent(p, dp, out_t, state_prev, dstate_prev, dxw_t):
    """§11 for the LSTM: gate tangents, then ``ċ_t`` and ``ḣ_t`` (torch's state order)."""
    (h_prev, c_prev), (dh_prev, dc_prev) = state_prev, dstate_prev
    da = dxw_t + dh_prev @ p.Wh + h_prev @ dp.Wh  # §11: ȧ_t, (N, 4H)
    i, f, o, g = jnp.split(out_t.gates, 4, axis=1)
    dai, daf, dao, dag = jnp.split(da, 4, axis=1)
    di, df, do = dai * i * (1 - i), daf * f * (1 - f), dao * o * (1 - o)  # §11: σ' ȧ
    dg = dag * (1 - g * g)  # §11: tanh' ȧ
    dc = df * c_prev + f * dc_prev + di * g + i * dg  # §11: ċ_t
    tc = jnp.tanh(out_t.c)
    dh = do * tc + o * (1 - tc * tc) * dc  # §11: ḣ_t
    return (dh, dc), dh


def gru_step_tangent(p, dp, out_t, h_prev, dh_prev, dxw_t):
    """§11 for the GRU: ``ṙ, ż, ṅ`` from ``ẋw_t`` and ``ḣw_t``, then ``ḣ_t``."""
    H = h_prev.shape[-1]
    dhw = dh_prev @ p.Wh + h_prev @ dp.Wh + dp.bh[None]  # §11: ḣw_t, (N, 3H)
    r, z, n = jnp.split(out_t.gates, 3, axis=1)
    dr = (dxw_t[:, :H] + dhw[:, :H]) * r * (1 - r)  # §11: ṙ
    dz = (dxw_t[:, H : 2 * H] + dhw[:, H : 2 * H]) * z * (1 - z)  # §11: ż
    dn = (dxw_t[:, 2 * H :] + dr * out_t.hn + r * dhw[:, 2 * H :]) * (1 - n * n)  # §11: ṅ
    dh = (1 - z) * dn + dz * (h_prev - n) + z * dh_prev  # §11: ḣ_t
    return dh, dh


_STEP_TANGENTS = {
    "rnn": rnn_step_tangent,
    "lstm": lambda act: lstm_step_tangent,
    "gru": lambda act: gru_step_tangent,
}


class DualSlots(NamedTuple):
    """The tangent cell's buffers (``(N, T, ...)``, or one step's ``(N, ...)``)."""

    primal: Any  # the cell's own buffers
    dxw: Array  # (N, T, G*H): ẋ_t Wx + x_t Ẇx + ḃ, the projected input's tangent
    dh: Array  # (N, T, H): ḣ_t, written by step t
    xi: Array | None  # (N, T, 1): ξ_t on the tangent entering step t (0 at a cut); None: 1


def _forward_only(*args: Any, **kwargs: Any) -> NoReturn:
    """The backward-only fields of :func:`tangent_cell`, which nothing calls."""
    raise TypeError("the tangent cell is forward-only: it has no backward loop")


def tangent_cell(kind: CellKind, act: str) -> rec.Cell:
    """The §11 recurrence as a forward-only :class:`~jaxrnn._recurrence.Cell` over duals.

    Params ``(p, ṗ)``, state ``(s, ṡ)``, buffers :class:`DualSlots`. Only ``step`` and
    ``output`` are used (by :func:`~jaxrnn._recurrence.forward_window`): the tangent
    recurrence has no backward loop of its own, its transpose is the hand BPTT.
    """
    cell, step_tangent = kind.cell(act), _STEP_TANGENTS[kind.name](act)

    def step(pp, buf_t: DualSlots, state):
        (p, dp), (s, ds) = pp, state
        if buf_t.xi is not None:  # §11: ξ_t (0 at a truncation cut) on ṡ_{t-1}
            ds = tree_map(lambda d: d * buf_t.xi, ds)
        new_s, out_t = cell.step(p, buf_t.primal, s)  # §1 (§9, §10)
        new_ds, dh = step_tangent(p, dp, out_t, s, ds, buf_t.dxw)  # §11
        return (new_s, new_ds), DualSlots(out_t, buf_t.dxw, dh, buf_t.xi)

    def output(buf: DualSlots):
        return cell.output(buf.primal), buf.dh

    return rec.Cell(project=_forward_only, step=step, output=output,
                    backward_params=_forward_only, step_backward=_forward_only,
                    initial_buf=_forward_only, zero_dbuf=_forward_only,
                    param_grads=_forward_only)  # fmt: skip


def _tangent_weights(xi, truncation, N: int, T: int, dtype) -> Array | None:
    """``(N, T, 1)`` factors on the tangent entering step t, or None when all are 1."""
    if xi is None and truncation is None:
        return None
    w = jnp.ones((T,), dtype) if xi is None else xi.astype(dtype)
    if truncation is not None:
        t = jnp.arange(T)
        w = jnp.where((t % truncation == 0) & (t > 0), jnp.zeros_like(w), w)
    return jnp.broadcast_to(w[None, :, None], (N, T, 1))


def tangent_forward(kind: CellKind, act: str, x, s, p, dx, ds, dp, lengths=None, xi=None,
                    truncation=None) -> tuple[tuple[Array, Any], tuple[Array, Any]]:  # fmt: skip
    """``((h, s_T), (ḣ, ṡ_T))`` of one layer on checked arguments: §1 and §11 in one loop.

    ``x: (N, T, D)``, ``s``/``ds`` the state pytree and its tangent, ``p``/``dp`` the
    params and their tangents (same pytrees). The projection's tangent is one matmul
    outside the loop, like the projection itself.
    """
    N, T = x.shape[:2]
    bias = p[2]  # b (RNN, LSTM) or bx (GRU): the bias inside the projection
    dxw = project(dp.Wx, dp[2], x) + project(p.Wx, jnp.zeros_like(bias), dx)  # §11: ẋw
    w = _tangent_weights(xi, truncation, N, T, x.dtype)
    buf = DualSlots(kind.cell(act).project(p, x), dxw, jnp.zeros((N, T, p.Wh.shape[0]), x.dtype), w)
    cell = tangent_cell(kind, act)
    (sT, dsT), buf = rec.forward_window(cell, (p, dp), buf, (s, ds), rec.Options(lengths))
    if w is not None and lengths is not None:  # §11: ξ_t also acts on the frozen ṡ
        pad = jnp.arange(T, dtype=lengths.dtype)[None, :] >= lengths[:, None]  # (N, T) padded steps
        tail = jnp.prod(jnp.where(pad, w[..., 0], jnp.ones_like(w[..., 0])), axis=1)  # (N,)
        dsT = tree_map(lambda d: d * tail[:, None], dsT)
    h, dh = cell.output(buf)
    return (h, sT), (dh, dsT)
