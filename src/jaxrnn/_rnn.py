"""``rnn``: the forward scan with the hand-derived BPTT as its ``jax.custom_vjp``."""

from __future__ import annotations

from functools import partial

import jax

from ._activations import get_activation
from ._bptt import rnn_backward
from ._scan import check_sequence_args, scan_hidden
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


@partial(jax.jit, static_argnames=("activation",))
def rnn(x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh") -> Array:
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

    Returns:
      ``h``: ``(N, T, H)``, the hidden states ``h_1..h_T``.
    """
    get_activation(activation)
    x, h0, Wx, Wh, b = check_sequence_args("rnn", x, h0, Wx, Wh, b)
    return _rnn(activation, x, h0, Wx, Wh, b)
