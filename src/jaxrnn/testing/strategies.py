"""Hypothesis strategies for RNN problems: shapes, parameters, sequences.

jaxrnn's own property tests draw from these; they are public so users can
build their own properties. Shapes come from small bounded pools on purpose:
``jax.jit`` compiles once per distinct shape, so a bounded pool keeps a
hypothesis run from spending its time in the compiler. Array values are not
drawn element by element: a drawn integer seeds numpy, which keeps examples
fast while hypothesis still controls (and shrinks, and replays) the seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

from .._activations import ACTIVATIONS
from .._types import RNNParams

N_POOL = (0, 1, 2, 3)  # batch sizes
T_POOL = (0, 1, 2, 5, 8)  # sequence lengths
D_POOL = (1, 2, 3)  # input sizes
H_POOL = (1, 2, 4)  # hidden sizes

activations = st.sampled_from(tuple(ACTIVATIONS))
dtypes = st.sampled_from((np.float32, np.float64))
seeds = st.integers(min_value=0, max_value=2**32 - 1)


class Shape(NamedTuple):
    """Problem dimensions: batch N, time T, input D, hidden H."""

    N: int
    T: int
    D: int
    H: int


@st.composite
def shapes(
    draw,
    N=N_POOL,
    T=T_POOL,
    D=D_POOL,
    H=H_POOL,
) -> Shape:
    """A :class:`Shape` with each dimension drawn from its pool (a tuple of ints)."""
    return Shape(*(draw(st.sampled_from(tuple(pool))) for pool in (N, T, D, H)))


class Problem(NamedTuple):
    """One RNN problem: inputs, weights and an upstream gradient, all numpy arrays."""

    x: np.ndarray  # (N, T, D)
    h0: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    b: np.ndarray  # (H,)
    dh: np.ndarray  # (N, T, H) upstream gradient dE/dh
    activation: str
    seed: int

    @property
    def args(self) -> tuple[np.ndarray, ...]:
        """``(x, h0, Wx, Wh, b)``, the document's argument order."""
        return self.x, self.h0, self.Wx, self.Wh, self.b


def make_problem(
    shape: Shape, seed: int, activation: str = "tanh", dtype=np.float64, scale: float = 1.0
) -> Problem:
    """Builds a :class:`Problem` deterministically from ``shape`` and ``seed``.

    Weights are ``Normal(0, scale^2 / fan_in)``, so hidden states stay O(1) and
    the gradients are well conditioned for every activation.
    """
    N, T, D, H = shape
    rng = np.random.default_rng(seed)

    def normal(*s, std=1.0):
        return (rng.standard_normal(s) * std).astype(dtype)

    return Problem(
        x=normal(N, T, D),
        h0=normal(N, H, std=0.5),
        Wx=normal(D, H, std=scale / np.sqrt(D)),
        Wh=normal(H, H, std=scale / np.sqrt(H)),
        b=normal(H, std=0.1),
        dh=normal(N, T, H),
        activation=activation,
        seed=seed,
    )


@st.composite
def problems(draw, shape=None, activation=None, dtype=None) -> Problem:
    """A random :class:`Problem`; pass a strategy for any part to constrain it."""
    return make_problem(
        draw(shape if shape is not None else shapes()),
        draw(seeds),
        draw(activation if activation is not None else activations),
        draw(dtype if dtype is not None else dtypes),
    )


@st.composite
def lengths(draw, N: int, T: int) -> np.ndarray:
    """Valid sequence lengths ``(N,)`` int32 in ``[0, T]``, often hitting 0 and T exactly."""
    edge = st.sampled_from((0, T))
    return np.asarray([draw(st.one_of(edge, st.integers(0, T))) for _ in range(N)], dtype=np.int32)


# Pools of the oracle (jaxrnn.testing.check_rnn_backward): every sequence has T >= 1
# and every batch N >= 1, so a user's implementation need not handle empty arrays;
# they still cover T = 1, N = 1, H = 1 and both D == H and D != H.
CHECK_N_POOL = (1, 2, 3)
CHECK_T_POOL = (1, 2, 3, 5, 8)
CHECK_D_POOL = (1, 2, 3)
CHECK_H_POOL = (1, 2, 4)


def check_shapes() -> st.SearchStrategy[Shape]:
    """The oracle's default shapes: :func:`shapes` over the ``CHECK_*_POOL`` pools."""
    return shapes(N=CHECK_N_POOL, T=CHECK_T_POOL, D=CHECK_D_POOL, H=CHECK_H_POOL)


def _normal(seed: int, shape: tuple[int, ...], std: float, dtype) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * std).astype(dtype)


@st.composite
def params(draw, D: int, H: int, dtype=np.float64, scale: float = 1.0) -> RNNParams:
    """Random ``RNNParams(Wx (D, H), Wh (H, H), b (H,))`` of numpy arrays.

    Same distribution as :func:`make_problem`: ``Normal(0, scale^2 / fan_in)``
    weights and a small bias, drawn from one hypothesis-controlled seed.
    """
    seed = draw(seeds)
    Wx = _normal(seed, (D, H), scale / np.sqrt(D), dtype)
    Wh = _normal(seed + 1, (H, H), scale / np.sqrt(H), dtype)
    return RNNParams(Wx, Wh, _normal(seed + 2, (H,), 0.1, dtype))


@st.composite
def sequences(draw, N: int, T: int, D: int, dtype=np.float64) -> np.ndarray:
    """A random standard-normal input sequence ``x: (N, T, D)`` (numpy)."""
    return _normal(draw(seeds), (N, T, D), 1.0, dtype)
