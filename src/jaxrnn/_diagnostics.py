"""Gradient-flow diagnostics: the products of Jacobians of MATH.md §3, measured.

Everything here is computed from the hand-derived quantities (the stored
hidden states and ``f'`` written through them), never by ``jax.jacobian``;
the tests check each function against autodiff.

Row-major convention (MATH.md §1): ``h_t = f(h_{t-1} @ Wh + x_t @ Wx + b)``,
so the Jacobian of one step, as the matrix ``J[i, j] = ∂h_t[i] / ∂h_{t-1}[j]``, is

    J_t = ∂h_t/∂h_{t-1} = diag(f'(a_t)) Wh^T          (= diag(f') W in column form)

and the Jacobian across a span of steps is their product (MATH.md §3)

    ∂h_T/∂h_k = J_T J_{T-1} ... J_{k+1}.

Row ``i`` of ``∂h_T/∂h_k`` is the gradient of ``h_T[i]`` with respect to ``h_k``:
the product is the BPTT recursion ``dnext = (dh * f') @ Wh^T`` run with H
cotangents at once, which is how it is computed below.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from . import _recurrence as rec
from ._activations import get_activation
from ._checks import check_positive_int, check_rnn_args, check_same_shape
from ._rnn import RNNParams, rnn_cell, weight_grads

Array = jax.Array


def scan_time(step, init, xs, *, reverse: bool = False):
    """``lax.scan`` over the leading (time) axis; T = 0 returns empty outputs.

    (``lax.scan`` cannot run a zero-length loop under ``jax.disable_jit``.) Used for
    the Jacobian recursions here, which are not the BPTT of the engine.
    """
    T = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if T:
        return jax.lax.scan(step, init, xs, reverse=reverse)
    x_spec = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
    _, y_spec = jax.eval_shape(step, init, x_spec)
    return init, jax.tree_util.tree_map(lambda s: jnp.zeros((0, *s.shape), s.dtype), y_spec)


def _forward(fn, x, h0, Wx, Wh, b, activation):
    """Validated forward pass: ``((x, h0, Wx, Wh, b), h, f'(a))``, h and f' ``(N, T, H)``."""
    act = get_activation(activation)
    args = check_rnn_args(fn, x, h0, Wx, Wh, b, x_layout="N, T, D", h_name="h0")
    x, h0, *p = args
    _, h, _ = rec.forward(rnn_cell(activation), RNNParams(*p), x, h0, rec.Options())  # §1
    return args, h, act.deriv_from_output(h)  # f'(a_t) from the stored h_t, MATH.md §3


@partial(jax.jit, static_argnames=("activation",))
def step_jacobians(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> Array:
    """The Jacobian of every step, ``J_t = ∂h_t/∂h_{t-1} = diag(f'(a_t)) Wh^T``.

    MATH.md §3: ``d net_t / d net_{t-1} = W diag(f'(net_{t-1}))``; for the hidden
    states (row-major) the same factors give ``J_t[i, j] = f'(a_t)[i] Wh[j, i]``.

    Args:
      x: ``(N, T, D)`` inputs.
      h0: ``(N, H)`` initial hidden state.
      Wx: ``(D, H)``; Wh: ``(H, H)``; b: ``(H,)``.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.

    Returns:
      ``(N, T, H, H)``: entry ``[n, t-1]`` is ``J_t`` of sequence ``n``, t = 1..T.
    """
    (_, _, _, Wh, _), _, fprime = _forward("step_jacobians", x, h0, Wx, Wh, b, activation)
    return fprime[..., :, None] * Wh.T[None, None]  # (N, T, H, 1) * (1, 1, H, H): diag(f') Wh^T


@partial(jax.jit, static_argnames=("activation",))
def jacobian_products(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> Array:
    """``∂h_T/∂h_k = J_T ... J_{k+1}`` for every k = 0..T (MATH.md §3).

    Computed backwards in time like BPTT, with the identity as the upstream
    gradient of ``h_T``::

        P_T     = I
        P_{k-1} = P_k J_k = (P_k * f'(a_k)) @ Wh^T

    Args:
      x: ``(N, T, D)`` inputs; T = 0 is allowed (the result is the identity).
      h0: ``(N, H)`` initial hidden state (``h_0``).
      Wx: ``(D, H)``; Wh: ``(H, H)``; b: ``(H,)``.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.

    Returns:
      ``(N, T+1, H, H)``: entry ``[n, k]`` is ``∂h_T/∂h_k`` of sequence ``n``
      (``[i, j] = ∂h_T[i]/∂h_k[j]``); ``[:, T]`` is the identity. The span is
      ``T - k`` steps. Entries overflow to ``inf`` when gradients explode past
      the dtype's range.
    """
    (_, _, _, Wh, _), _, fprime = _forward("jacobian_products", x, h0, Wx, Wh, b, activation)
    N, T, H = fprime.shape
    Wh_T = Wh.T
    eye = jnp.broadcast_to(jnp.eye(H, dtype=Wh.dtype), (N, H, H))

    def step(P, fprime_k):  # P = ∂h_T/∂h_k, fprime_k = f'(a_k): (N, H)
        P = (P * fprime_k[:, None, :]) @ Wh_T  # §3: P_{k-1} = P_k diag(f'(a_k)) Wh^T
        return P, P

    _, P_tm = scan_time(step, eye, fprime.swapaxes(0, 1), reverse=True)  # (T, N, H, H)
    return jnp.concatenate([P_tm.swapaxes(0, 1), eye[:, None]], axis=1)  # k = 0..T-1, then T


@partial(jax.jit, static_argnames=("activation",))
def jacobian_singular_values(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> Array:
    """The singular values of ``∂h_T/∂h_k`` for every k = 0..T, largest first.

    Their spread shows how many directions of ``h_k`` still influence ``h_T``:
    over long spans all but a few collapse (MATH.md §3).

    Args:
      x, h0, Wx, Wh, b, activation: as in :func:`step_jacobians`.

    Returns:
      ``(N, T+1, H)``: ``[n, k]`` holds the singular values of ``∂h_T/∂h_k``
      in descending order.
    """
    P = jacobian_products(x, h0, Wx, Wh, b, activation=activation)
    return jnp.linalg.svd(P, compute_uv=False)  # (N, T+1, H)


@partial(jax.jit, static_argnames=("activation",))
def jacobian_norms(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> Array:
    """The spectral norm ``||∂h_T/∂h_k||_2`` for every k = 0..T.

    The quantity MATH.md §3 says to plot against the span ``T - k``: it decays
    geometrically when the step Jacobians contract (vanishing gradients) and
    grows geometrically when they expand (exploding gradients).

    Args:
      x, h0, Wx, Wh, b, activation: as in :func:`step_jacobians`.

    Returns:
      ``(N, T+1)``: ``[n, k] = ||∂h_T/∂h_k||_2`` (``[:, T]`` is 1). Plot
      against ``T - k``, e.g. ``norms[:, ::-1]`` is indexed by the span.
    """
    return jacobian_singular_values(x, h0, Wx, Wh, b, activation=activation)[..., 0]


@partial(jax.jit, static_argnames=("activation",))
def step_jacobian_norms(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> Array:
    """The spectral norm ``||J_t||_2 = ||diag(f'(a_t)) Wh^T||_2`` of every step.

    ``||∂h_T/∂h_k||_2 <= prod_{t=k+1}^{T} ||J_t||_2``: steps with norm below 1
    (e.g. saturated tanh units, ``f' ~ 0``) shrink every gradient passing them.

    Args:
      x, h0, Wx, Wh, b, activation: as in :func:`step_jacobians`.

    Returns:
      ``(N, T)``: ``[n, t-1] = ||J_t||_2`` for t = 1..T.
    """
    J = step_jacobians(x, h0, Wx, Wh, b, activation=activation)
    return jnp.linalg.svd(J, compute_uv=False)[..., 0]  # (N, T)


@partial(jax.jit, static_argnames=("truncation", "activation"))
def truncated_gradients(
    dh: Array,
    x: Array,
    h0: Array,
    Wx: Array,
    Wh: Array,
    b: Array,
    *,
    truncation: int,
    activation: str = "tanh",
) -> tuple[Array, Array, Array, Array]:
    """Gradients when each loss term backpropagates through at most ``truncation`` steps.

    Truncated BPTT in the per-term form (Williams and Peng's BPTT(k)): the
    error of the loss at step t, ``dh_t``, runs the recursion of MATH.md §3
    through ``a_t, a_{t-1}, ..., a_{t-k+1}`` only (k = ``truncation``), as if
    ``h_{t-k}`` were a constant. The truncated error term at step j is the sum
    of the in-flight errors of the sources ``t = j .. j+k-1``::

        δ_j^{(t)}     = (dh_t if t = j else δ_{j+1}^{(t)} @ Wh^T) * f'(a_j)
        δ_j^{trunc}   = sum_{t=j}^{j+k-1} δ_j^{(t)}

    and the weight gradients are the sums of MATH.md §5 over ``δ^{trunc}``.
    With ``truncation >= T`` this is exactly full BPTT (:func:`jaxrnn.rnn_backward`).
    The gap to the full gradient is the part of the gradient carried by spans
    longer than k, i.e. by the products ``∂h_t/∂h_j`` with ``t - j >= k``.

    Args:
      dh: ``(N, T, H)`` upstream gradient ``dE_t/dh_t`` for every step.
      x: ``(N, T, D)`` inputs.
      h0: ``(N, H)`` initial hidden state.
      Wx: ``(D, H)``; Wh: ``(H, H)``; b: ``(H,)``.
      truncation: k >= 1, the number of steps each loss term reaches back (static).
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.

    Returns:
      ``(dx, dWx, dWh, db)`` with shapes ``(N, T, D)``, ``(D, H)``, ``(H, H)``,
      ``(H,)``. (No ``dh0``: under truncation ``h0`` is a constant like the
      truncated states.)
    """
    truncation = check_positive_int("truncated_gradients", "truncation", truncation, " (k >= 1)")
    (x, h0, Wx, Wh, b), h, fprime = _forward("truncated_gradients", x, h0, Wx, Wh, b, activation)
    dh = check_same_shape("truncated_gradients", "dh", dh, "the hidden states h", h)
    N, T = x.shape[:2]
    H = h0.shape[-1]
    k = max(min(truncation, T), 1)  # windows longer than the sequence change nothing
    Wh_T = Wh.T

    def step(pending, dh_fp_j):  # pending: (k-1, N, H), errors of sources j+1..j+k-1
        dh_j, fprime_j = dh_fp_j
        incoming = jnp.concatenate([dh_j[None], pending], axis=0)  # (k, N, H), ages 0..k-1
        da_all = incoming * fprime_j[None]  # §3: δ_j^{(t)} = (...) ⊙ f'(a_j)
        return da_all[:-1] @ Wh_T, da_all.sum(axis=0)  # §3: pass to j-1; the oldest stops here

    pending0 = jnp.zeros((k - 1, N, H), h0.dtype)
    _, da_tm = scan_time(
        step, pending0, (dh.swapaxes(0, 1), fprime.swapaxes(0, 1)), reverse=True
    )  # (T, N, H)
    return weight_grads(x, h0, h, da_tm.swapaxes(0, 1), Wx, Wh)  # §5 with δ^{trunc}
