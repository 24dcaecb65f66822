"""Elementwise activations f and their derivatives f' written in terms of the output.

MATH.md §3: the backward pass never recomputes the pre-activation ``a``; it
evaluates f'(a) from the stored output h = f(a):

    tanh:     f' = 1 - h^2
    relu:     f' = (h > 0)
    sigmoid:  f' = h (1 - h)
    identity: f' = 1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Activation(NamedTuple):
    """An activation ``f`` and its derivative expressed through ``h = f(a)``."""

    name: str
    fn: Callable[[Array], Array]  # a -> h = f(a)
    deriv_from_output: Callable[[Array], Array]  # h -> f'(a)


def _relu_deriv(h: Array) -> Array:
    return (h > 0).astype(h.dtype)


def _identity_deriv(h: Array) -> Array:
    return jnp.ones_like(h)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", jnp.tanh, lambda h: 1 - h * h),
    "relu": Activation("relu", jax.nn.relu, _relu_deriv),
    "sigmoid": Activation("sigmoid", jax.nn.sigmoid, lambda h: h * (1 - h)),
    "identity": Activation("identity", lambda a: a, _identity_deriv),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name.

    Args:
      name: one of ``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"identity"``.

    Returns:
      The :class:`Activation` (``fn`` and ``deriv_from_output``).

    Raises:
      ValueError: the name is unknown; the message lists the choices.
    """
    if isinstance(name, str) and name in ACTIVATIONS:
        return ACTIVATIONS[name]
    choices = ", ".join(repr(k) for k in ACTIVATIONS)
    raise ValueError(f"unknown activation {name!r}; choose one of {choices}")
