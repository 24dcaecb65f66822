"""Exact real-time recurrent learning (RTRL, Williams & Zipser 1989; MATH.md §11).

The tangent recurrence of ``_tangent.py`` carried for every weight direction at once:
the sensitivities ``J_t = ∂s_t/∂θ`` (per sequence, ``(N, P, H)`` per state part for P
weights) move forward with the state, and the gradient of the summed loss is
accumulated online, ``g += ∂E_t/∂h_t · ∂h_t/∂θ``: nothing of the past is kept, so
memory does not grow with T, at O(P·H·G·H) = O(H⁴) work per step. Any cell: each
direction runs the cell's own §11 step (``jax.vmap`` over the P one-hot directions).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _recurrence as rec
from ._cells import CellKind, kind_named
from ._checks import check_eager, check_fixed_activation, check_state_parts
from ._layer import check_layer_args
from ._rnn import project
from ._tangent import _STEP_TANGENTS

Array = jax.Array
tree_map = jax.tree_util.tree_map


class RTRLState(NamedTuple):
    """What RTRL carries from step to step (nothing else survives a step)."""

    state: Any  # the cell's state pytree, each part (N, H)
    sens: Any  # ∂state/∂θ: the state's pytree, each part (N, P, H)
    grad: Array  # (N, P): each sequence's ∂(Σ_{t' <= t} E_t')/∂θ so far, θ raveled
    loss: Array  # (N,): each sequence's Σ_{t' <= t} E_t' so far


def rtrl_init(state0: Any, P: int) -> RTRLState:
    """The carry before step 1: ``state0``, zero sensitivities (θ does not reach ``s_0``),
    zero gradient and loss."""
    N = jax.tree_util.tree_leaves(state0)[0].shape[0]
    dtype = jax.tree_util.tree_leaves(state0)[0].dtype
    sens = tree_map(lambda s: jnp.zeros((N, P, s.shape[-1]), s.dtype), state0)
    return RTRLState(state0, sens, jnp.zeros((N, P), dtype), jnp.zeros((N,), dtype))


def weight_directions(p: Any) -> Any:
    """The P one-hot directions of the weights, ``params``' pytree with a leading ``(P,)``."""
    flat, unravel = ravel_pytree(p)
    return jax.vmap(unravel)(jnp.eye(flat.size, dtype=flat.dtype))


def rtrl_step(kind: CellKind, act: str, loss_step: Callable, p: Any, basis: Any,
              carry: RTRLState, x_t: Array, y_t: Any, valid: Array | None = None
              ) -> RTRLState:  # fmt: skip
    """One step of RTRL: ``s_t``, ``J_t`` (§11 for every direction), ``E_t`` and its
    gradient ``∂E_t/∂h_t · J_t^h`` added to the running sums.

    ``x_t: (N, D)``; ``y_t``: the step's targets (leading axis N); ``loss_step(h, y)``
    the loss of one sequence's ``h: (H,)``; ``basis``: :func:`weight_directions`;
    ``valid: (N,)`` bool or None (a padded step leaves the carry unchanged).
    """
    cell, step_tangent = kind.cell(act), _STEP_TANGENTS[kind.name](act)
    xw_t = tree_map(lambda a: a[:, 0], cell.project(p, x_t[:, None]))  # §1: x_t Wx + b
    new_s, out_t = cell.step(p, xw_t, carry.state)

    def direction(dp, ds):  # §11 for one direction of θ
        dxw = project(dp.Wx, dp[2], x_t[:, None])[:, 0]  # x_t Ẇx + ḃ (ẋ = 0)
        return step_tangent(p, dp, out_t, carry.state, ds, dxw)

    ds_in = tree_map(lambda J: jnp.moveaxis(J, 1, 0), carry.sens)  # (P, N, H)
    new_ds, dh = jax.vmap(direction)(basis, ds_in)  # (P, N, H) per part
    h = kind.h(new_s)
    E, dE = jax.vmap(jax.value_and_grad(loss_step))(h, y_t)  # (N,), (N, H)
    grad = carry.grad + jnp.einsum("nh,pnh->np", dE, dh)  # §11: ∂E_t/∂h_t · ∂h_t/∂θ
    sens = tree_map(lambda J: jnp.moveaxis(J, 0, 1), new_ds)  # (N, P, H)
    new = RTRLState(new_s, sens, grad, carry.loss + E)
    return new if valid is None else rec._select(valid, new, carry)


def rtrl_sequence(kind: CellKind, act: str, loss_step: Callable, x: Array, state0: Any,
                  p: Any, y: Any, lengths: Array | None = None) -> tuple[Array, Any]:  # fmt: skip
    """``(Σ E, ∂ΣE/∂θ)`` over a whole sequence by :func:`rtrl_step`, one step at a time in
    the engine's loop (:func:`~jaxrnn._recurrence.loop_time`); nothing per step is stored."""
    N, T = x.shape[:2]
    flat, unravel = ravel_pytree(p)
    basis = weight_directions(p)  # built once, outside the loop

    def body(t, carry):
        y_t = tree_map(lambda a: rec.index_time(a, t), y)
        valid = None if lengths is None else t < lengths
        x_t = rec.index_time(x, t)
        return rtrl_step(kind, act, loss_step, p, basis, carry, x_t, y_t, valid)

    carry = rec.loop_time(body, rtrl_init(state0, flat.size), T)
    return carry.loss.sum(), unravel(carry.grad.sum(axis=0))


@partial(jax.jit, static_argnames=("kind_name", "act", "loss_step"))
def _rtrl_jit(x, parts, weights, y, lengths, *, kind_name, act, loss_step):
    kind = kind_named(kind_name)
    x, s, p, lengths, _ = check_layer_args("rtrl", kind, x, parts, weights, lengths)
    return rtrl_sequence(kind, act, loss_step, x, s, p, y, lengths)


def rtrl(
    cell: str, loss_step: Callable, x: Array, state0: Any, params: Any, targets: Any, *,
    activation: str = "tanh", lengths: Array | None = None,
) -> tuple[Array, Any]:  # fmt: skip
    """The loss summed over time and its exact gradient by RTRL, online (MATH.md §11).

    ``E = Σ_n Σ_{t < lengths[n]} loss_step(h_{n,t}, targets_{n,t})``; the gradient in the
    weights equals BPTT's (``jax.grad`` through :func:`jaxrnn.rnn` / ``lstm`` / ``gru``),
    computed forward: the sensitivities ``∂s_t/∂θ`` are carried step to step and
    ``∂E_t/∂h_t · ∂h_t/∂θ`` summed as the sequence is read, so memory is independent of
    T: ``N·P·S`` for the sensitivities (P weights, ``S = H``, or ``2H`` for the LSTM),
    ``O(P²)`` for the one-hot directions, at O(H⁴) work per step (BPTT: O(H²) per step and
    O(N·H·T) memory).

    Args:
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      loss_step: ``loss_step(h, y) -> scalar``, the loss of one sequence at one step,
        ``h: (H,)`` (hashable: a module-level function; it is a static argument of jit).
      x: ``(N, T, D)``. state0: the cell's state pytree (as for :func:`jaxrnn.rnn`).
      params: ``RNNParams``, ``LSTMParams`` or ``GRUParams`` (or their tuple of arrays).
      targets: a pytree of ``(N, T, ...)`` arrays; step t's slice is ``loss_step``'s ``y``.
      activation: the RNN's activation (the gated cells take ``"tanh"`` only).
      lengths: optional ``(N,)`` valid lengths; padded steps add nothing.

    Returns:
      ``(E, grads)``: the scalar summed loss and its gradient, ``params``' structure.
    """
    kind = kind_named(cell, "rtrl")
    lengths, _, _ = check_eager("rtrl", x, activation, lengths, None, None)
    check_fixed_activation("rtrl", kind.name, kind.activations, activation)
    if not callable(loss_step):
        raise TypeError(f"rtrl: loss_step must be a function (h, y) -> scalar, got {loss_step!r}")
    parts = check_state_parts("rtrl", tuple(f"{n}0" for n in kind.state), state0)
    E, grads = _rtrl_jit(x, parts, tuple(params), targets, lengths, kind_name=kind.name,
                         act=activation, loss_step=loss_step)  # fmt: skip
    return E, kind.params(*grads)
