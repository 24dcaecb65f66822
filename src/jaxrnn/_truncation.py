"""Randomized truncation of BPTT (Tallec & Ollivier 2017, "Unbiasing truncated
backpropagation through time"; d2l §9.7 "randomized truncation").

Regular truncation zeroes the gradient that flows from step t back to step t-1
at t = k, 2k, ... (``truncation=k``). Randomized truncation multiplies it by a
random ``ξ_t`` with ``E[ξ_t] = 1``::

    ξ_t = 0 with probability 1 - p,   1/p with probability p

so a chain of gradient through steps k..t survives with probability p^(t-k)
and is reweighted by p^-(t-k): the gradient estimate is unbiased (its expectation
is the full BPTT gradient) while most long chains are cut. Pass the vector as
``carry_weights=`` to :func:`jaxrnn.rnn_forward`, :func:`jaxrnn.rnn`,
:func:`jaxrnn.stack_forward` or :func:`jaxrnn.model.loss_and_grads`; draw a fresh
one with a new key for every minibatch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def randomized_truncation(key: Array, T: int, p: float, dtype=jnp.float32) -> Array:
    """Draws the ``(T,)`` factors ``ξ_t``: ``1/p`` with probability ``p``, else 0.

    Args:
      key: a ``jax.random`` key.
      T: number of time steps.
      p: the probability that the gradient crosses a step, ``0 < p <= 1``
        (``p = 1`` gives all ones: full BPTT).
      dtype: float dtype of the result.

    Returns:
      ``(T,)`` array of ``dtype`` with ``E[ξ_t] = 1``.
    """
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
        raise ValueError(f"randomized_truncation: p must be a number in (0, 1], got {p!r}")
    keep = jax.random.bernoulli(key, p, (T,))
    return jnp.where(keep, jnp.asarray(1 / p, dtype), jnp.asarray(0, dtype))
