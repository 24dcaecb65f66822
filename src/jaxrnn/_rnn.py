"""``rnn``: the forward scan with the hand-derived BPTT as its ``jax.custom_vjp``."""

from __future__ import annotations

from functools import partial

import jax

from ._activations import get_activation
from ._bptt import rnn_backward
from ._checks import check_carry_weights, check_lengths, check_truncation
from ._scan import check_lengths_eagerly, check_sequence_args, scan_hidden, scan_hidden_masked
from ._types import RNNCache

Array = jax.Array


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn(activation: str, x: Array, h0: Array, Wx: Array, Wh: Array, b: Array) -> Array:
    return scan_hidden(x, h0, Wx, Wh, b, activation)


def _rnn_fwd(activation, x, h0, Wx, Wh, b):
    h = scan_hidden(x, h0, Wx, Wh, b, activation)
    return h, RNNCache(x, h0, Wx, Wh, h, activation)  # residuals: inputs and h only


def _rnn_bwd(activation, cache, dh):
    return rnn_backward(dh, cache)  # (dx, dh0, dWx, dWh, db): MATH.md §3, §5


_rnn.defvjp(_rnn_fwd, _rnn_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _rnn_general(activation, truncation, x, h0, Wx, Wh, b, lengths, carry_weights):
    if lengths is None:
        return scan_hidden(x, h0, Wx, Wh, b, activation)
    return scan_hidden_masked(x, h0, Wx, Wh, b, activation, lengths)


def _rnn_general_fwd(activation, truncation, x, h0, Wx, Wh, b, lengths, carry_weights):
    h = _rnn_general(activation, truncation, x, h0, Wx, Wh, b, lengths, carry_weights)
    return h, RNNCache(x, h0, Wx, Wh, h, activation, lengths, truncation, carry_weights)


def _rnn_general_bwd(activation, truncation, cache, dh):
    # lengths (integers) and carry_weights (a backward-only factor) get no cotangent
    return (*rnn_backward(dh, cache), None, None)


_rnn_general.defvjp(_rnn_general_fwd, _rnn_general_bwd)


@partial(jax.jit, static_argnames=("activation",))
def _rnn_jit(x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str) -> Array:
    get_activation(activation)
    x, h0, Wx, Wh, b = check_sequence_args("rnn", x, h0, Wx, Wh, b)
    return _rnn(activation, x, h0, Wx, Wh, b)


@partial(jax.jit, static_argnames=("activation", "truncation"))
def _rnn_general_jit(x, h0, Wx, Wh, b, lengths, carry_weights, *, activation, truncation):
    get_activation(activation)
    x, h0, Wx, Wh, b = check_sequence_args("rnn", x, h0, Wx, Wh, b)
    if lengths is not None:
        lengths = check_lengths("rnn", lengths, x.shape[0], x.shape[1])
    if carry_weights is not None:
        carry_weights = check_carry_weights("rnn", carry_weights, x.shape[1], x.dtype)
    return _rnn_general(activation, truncation, x, h0, Wx, Wh, b, lengths, carry_weights)


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
    if lengths is None and truncation is None and carry_weights is None:  # the default path
        return _rnn_jit(x, h0, Wx, Wh, b, activation=activation)
    check_truncation("rnn", truncation)
    if lengths is not None:
        check_lengths_eagerly("rnn", x, lengths)
    return _rnn_general_jit(
        x, h0, Wx, Wh, b, lengths, carry_weights, activation=activation, truncation=truncation
    )
