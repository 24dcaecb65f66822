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

from jaxrnn import ACTIVATIONS, RNNParams

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


# Small pools (T <= 8, N <= 3, D <= 3, H <= 4) for jaxrnn's own property tests. They
# are *not* the oracle's draws any more: bugs that need a long sequence, a wide
# layer or a large batch pass unseen there (see ``CHECK_POOL``).
CHECK_N_POOL = (1, 2, 3)
CHECK_T_POOL = (1, 2, 3, 5, 8)
CHECK_D_POOL = (1, 2, 3)
CHECK_H_POOL = (1, 2, 4)


def check_shapes() -> st.SearchStrategy[Shape]:
    """Small shapes: :func:`shapes` over the ``CHECK_*_POOL`` pools (T, N >= 1)."""
    return shapes(N=CHECK_N_POOL, T=CHECK_T_POOL, D=CHECK_D_POOL, H=CHECK_H_POOL)


# The oracle's shapes, smallest first (hypothesis shrinks towards the front). Each
# entry is the smallest that exposes one class of bug: N > 1 and D != H (1); H > 4
# (2); D > 3 and T > 9, i.e. a gradient cut after 8 steps (3); N = 4, T > 17 (4);
# T > 33, wide with D > H (5); long and wide with D < H (6). A fixed list of whole
# shapes, not independent pools, so a jitted implementation compiles at most 7 times.
CHECK_POOL = (
    Shape(1, 1, 1, 1),
    Shape(2, 2, 3, 2),
    Shape(1, 5, 2, 5),
    Shape(3, 12, 5, 3),
    Shape(4, 24, 4, 8),
    Shape(2, 40, 20, 12),
    Shape(4, 64, 16, 24),
)
LONG_RANGE_MIN_T = 8  # from this length on, problems are drawn in the long-range regime


def oracle_shapes() -> st.SearchStrategy[Shape]:
    """The oracle's default shapes: one of :data:`CHECK_POOL`, shrinking to the first."""
    return st.sampled_from(CHECK_POOL)


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random ``(n, n)`` orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


# Per activation, a gain g and a pre-activation c with g * f'(c) = 1: with Wh = g Q
# (Q orthogonal) and the state near h* = f(c), the Jacobian W diag(f') of MATH.md §3
# is orthogonal, so the gradient keeps its norm however far back it travels.
_FIXED_POINT = {
    "tanh": (1.0, 0.0),
    "sigmoid": (4.0, 0.0),
    "relu": (1.0, 3.0),
    "identity": (1.0, 0.0),
}
_F = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "identity": lambda a: a,
}


def make_check_problem(shape: Shape, seed: int, activation: str = "tanh") -> Problem:
    """The oracle's problem for ``shape`` and ``seed`` (float64, deterministic).

    Short sequences (``T < 8``) are :func:`make_problem`'s: ``Normal(0, 1/fan_in)``
    weights that drive the activation into saturation and ReLU units dead, which
    separates every wrong f'. Longer ones are drawn so that the gradient survives
    the whole sequence (MATH.md §3): ``Wh = g Q`` with ``Q`` orthogonal and
    ``g f'(c) = 1`` (tanh and identity: g = 1, c = 0; sigmoid: g = 4, c = 0; relu:
    g = 1, c = 3), ``b = c - h* Wh`` so that ``h* = f(c)`` is a fixed point,
    ``h0 = h* + Normal(0, 0.2/g)``, and an input drive ``x_t Wx`` of standard
    deviation ``0.4 / sqrt(T)`` per unit. The pre-activation then walks around c
    with standard deviation ``sqrt(0.2^2 + 0.4^2) = 0.45`` at the last step, so
    tanh stays out of saturation (``f' >= 0.7`` typically) and ``||W diag(f')||``
    stays near 1 over all T steps. ``dh`` is standard normal.

    Why a cut gradient cannot pass: a BPTT that stops the carried gradient after
    k < T steps loses at least the path from ``dh_{T-1}`` to ``x_0``, T - 1
    Jacobians long (k = T - 1 is the weakest cut); with the draws above that path
    keeps most of its norm. Measured over 200 seeds with tanh and k = T - 1, the
    smallest change of ``dx`` relative to ``max(max|dx|, 1)`` is 8.3e-4 for
    ``(3, 12, 5, 3)``, 8.1e-4 for ``(4, 24, 4, 8)``, 7.6e-4 for ``(2, 40, 20, 12)``
    and 3.5e-4 for ``(4, 64, 16, 24)``: 35,000 to 83,000 times the default
    tolerance 1e-8, and a cut after fewer steps loses more. With
    :func:`make_problem`'s ``Normal(0, 1/fan_in)`` weights the same cut changes
    ``dx`` by at most 4.8e-9 (T = 12) down to 1e-17 (T = 64), below the
    tolerance: that is how a BPTT truncated after 8 steps used to pass.
    """
    N, T, D, H = shape
    if T < LONG_RANGE_MIN_T:
        return make_problem(shape, seed, activation)
    gain, c = _FIXED_POINT[activation]
    rng = np.random.default_rng(seed)
    h_star = float(_F[activation](c))
    drive = 0.4 / np.sqrt(T)
    Wh = gain * orthogonal(rng, H)
    return Problem(
        x=rng.standard_normal((N, T, D)),
        h0=h_star + rng.standard_normal((N, H)) * (0.2 / gain),
        Wx=rng.standard_normal((D, H)) * (drive / np.sqrt(D)),
        Wh=Wh,
        b=c - h_star * Wh.sum(axis=0) + rng.standard_normal(H) * drive,
        dh=rng.standard_normal((N, T, H)),
        activation=activation,
        seed=seed,
    )


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
    b = _normal(seed + 2, (H,), 0.1, dtype)
    return RNNParams(Wx, Wh, b)  # pyright: ignore[reportArgumentType]  # numpy arrays in a params NamedTuple


@st.composite
def sequences(draw, N: int, T: int, D: int, dtype=np.float64) -> np.ndarray:
    """A random standard-normal input sequence ``x: (N, T, D)`` (numpy)."""
    return _normal(draw(seeds), (N, T, D), 1.0, dtype)
