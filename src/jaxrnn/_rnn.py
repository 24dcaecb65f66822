"""``rnn``: the forward scan with the hand-derived BPTT as its ``jax.custom_vjp``."""

from __future__ import annotations

from functools import partial

import jax

from ._bptt import rnn_backward
from ._checks import check_truncation
from ._scan import check_call, check_lengths_eagerly, hidden_states
from ._types import RNNCache

Array = jax.Array


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _rnn(activation, truncation, x, h0, Wx, Wh, b, lengths, carry_weights):
    return hidden_states(x, h0, Wx, Wh, b, activation, lengths)


def _rnn_fwd(activation, truncation, x, h0, Wx, Wh, b, lengths, carry_weights):
    h = hidden_states(x, h0, Wx, Wh, b, activation, lengths)
    # residuals: the inputs and h only (and the options rnn_backward reads)
    return h, RNNCache(x, h0, Wx, Wh, h, activation, lengths, truncation, carry_weights)


def _rnn_bwd(activation, truncation, cache, dh):
    # MATH.md §3, §5: (dx, dh0, dWx, dWh, db); lengths (integers) and carry_weights
    # (a backward-only factor) get no cotangent
    return (*rnn_backward(dh, cache), None, None)


_rnn.defvjp(_rnn_fwd, _rnn_bwd)


@partial(jax.jit, static_argnames=("activation", "truncation"))
def _rnn_jit(x, h0, Wx, Wh, b, lengths, carry_weights, *, activation, truncation):
    args = check_call("rnn", x, h0, Wx, Wh, b, lengths, carry_weights, activation)
    return _rnn(activation, truncation, *args)


def rnn(
    x: Array,
    h0: Array,
    Wx: Array,
    Wh: Array,
    b: Array,
    *,
    activation: str = "tanh",
    lengths: Array | None = None,
    truncation: int | None = None,
    carry_weights: Array | None = None,
) -> Array:
    """The RNN's hidden states, differentiable by the hand-derived BPTT.

    Forward: MATH.md §1 (``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)``) by ``lax.scan``.
    Backward: a ``jax.custom_vjp`` whose rule is :func:`rnn_backward`
    (MATH.md §3, §5), so ``jax.grad`` of any loss of ``rnn(...)`` runs the
    hand-derived recursion instead of autodiff. Composes with ``jax.jit``,
    ``jax.grad``, ``jax.value_and_grad`` and ``jax.vmap``.

    Args:
      x: ``(N, T, D)`` inputs.
      h0: ``(N, H)`` initial hidden state.
      Wx: ``(D, H)``; Wh: ``(H, H)``; b: ``(H,)``.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.
      lengths: optional ``(N,)`` valid lengths, as in :func:`rnn_forward` (``h`` is
        zero at padded steps, which receive zero gradient).
      truncation: optional chunk length k: the backward rule stops the gradient at
        t = k, 2k, ... (truncated BPTT, see :func:`rnn_backward`).
      carry_weights: optional ``(T,)`` factors on the gradient from step t to t-1
        (randomized truncation, see :func:`rnn_forward`).

    Returns:
      ``h``: ``(N, T, H)``, the hidden states ``h_1..h_T``.
    """
    check_truncation("rnn", truncation)  # before jit hashes it as a static argument
    if lengths is not None:  # concrete length values are checked before jit traces them
        check_lengths_eagerly("rnn", x, lengths)
    return _rnn_jit(
        x, h0, Wx, Wh, b, lengths, carry_weights, activation=activation, truncation=truncation
    )
