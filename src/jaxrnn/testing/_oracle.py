"""The RNN oracle: checks a user's RNN forward/backward on one problem against jaxrnn.

For each example (a shape and a seed) the user's functions get numpy float64
inputs; every output and gradient they return is compared with jaxrnn's hand
BPTT (:func:`jaxrnn.rnn_backward`, MATH.md §3, §5) and with ``jax.grad`` of the
naive ``lax.scan`` forward (:func:`jaxrnn.reference.scan_rnn`), in float64.

The reference is compiled once per activation, not once per shape: each problem
is zero-padded to one bucket (:func:`_bucket`: ``N <= 4, T <= 64, D, H <= 32``
cover every default shape) and the results are sliced back. The padding is
exact (MATH.md §3): padded rows and steps get ``dh = 0`` (and length 0), so
their ``da`` is 0 and they add nothing to any gradient; padded input columns
have ``x = 0`` and zero ``Wx`` rows; padded hidden units have zero rows of
``Wh``, so they never feed back into the real units, and ``dh = 0`` for them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np

import jaxrnn
from jaxrnn.reference import scan_rnn

from ._compare import call_user, compare, first_failure, unpack
from .strategies import Problem, Shape, make_check_problem

SEQUENCE_NAMES = ("h", "dx", "dh0", "dWx", "dWh", "db")
STEP_NAMES = ("next_h", "dx", "dprev_h", "dWx", "dWh", "db")
_FLOORS = (4, 64, 32, 32)  # the one bucket of the default shapes: N, T, D, H


@partial(jax.jit, static_argnames="activation")
def _sequence_oracle(x, h0, Wx, Wh, b, dh, lengths, activation):
    """``h`` by ``rnn_forward``, grads by the hand BPTT and by ``jax.grad`` of ``scan_rnn``."""
    h, cache = jaxrnn.rnn_forward(x, h0, Wx, Wh, b, activation=activation, lengths=lengths)
    hand = jaxrnn.rnn_backward(dh, cache)  # MATH.md §3, §5

    def loss(*args):
        return (scan_rnn(*args, activation=activation, lengths=lengths) * dh).sum()

    return h, hand, jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, h0, Wx, Wh, b)


@partial(jax.jit, static_argnames="activation")
def _step_oracle(x, prev_h, Wx, Wh, b, dnext_h, activation):
    """``next_h`` by ``rnn_step_forward``, grads by ``rnn_step_backward`` and by ``jax.grad``."""
    next_h, cache = jaxrnn.rnn_step_forward(x, prev_h, Wx, Wh, b, activation=activation)
    hand = jaxrnn.rnn_step_backward(dnext_h, cache)
    f = jaxrnn.get_activation(activation).fn

    def loss(x, prev_h, Wx, Wh, b):
        return (f(x @ Wx + prev_h @ Wh + b[None]) * dnext_h).sum()  # §1, one step

    return next_h, hand, jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, prev_h, Wx, Wh, b)


def _bucket(n: int, floor: int) -> int:
    """The padded size of a dimension: ``floor``, or the next power of two above it."""
    return max(floor, 1 << max(n - 1, 0).bit_length())


def _pad(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.pad(a, [(0, s - d) for d, s in zip(a.shape, shape, strict=True)])


class Kind(NamedTuple):
    """What is being checked: the sequence functions or the single-step functions."""

    title: str  # names the function under test in reports
    names: tuple[str, ...]  # output, then (dx, d<state>, dWx, dWh, db)
    step: bool
    lengths: bool = False  # the forward takes lengths= (sequence only)


SEQUENCE = Kind("rnn_backward", SEQUENCE_NAMES, step=False)
LENGTHS = Kind("rnn_backward", SEQUENCE_NAMES, step=False, lengths=True)
STEP = Kind("rnn_step_backward", STEP_NAMES, step=True)


def draw_lengths(N: int, T: int, seed: int) -> np.ndarray:
    """Lengths ``(N,)`` int32 in ``[0, T]``: row 0 has T, row 1 has 0, the rest anything.

    With N = 1 the seed picks T, 0 or a length in between.
    """
    rng = np.random.default_rng([seed, 7])
    lengths = rng.integers(0, T + 1, size=N)
    if N == 1:
        lengths[0] = (T, 0, lengths[0])[seed % 3]
    else:
        lengths[:2] = (T, 0)
    return lengths.astype(np.int32)


class Example(NamedTuple):
    """One problem as the user gets it, and jaxrnn's answers for it."""

    problem: Problem
    inputs: tuple[np.ndarray, ...]  # forward_fn's positional arguments
    upstream: np.ndarray  # backward_fn's first argument
    lengths: np.ndarray | None
    hand: list[np.ndarray]  # jaxrnn's answers in the order of kind.names (by hand BPTT)
    auto: list[np.ndarray]  # ... and by jax.grad of lax.scan


def make_example(kind: Kind, shape: Shape, seed: int, activation: str) -> Example:
    """The problem of ``shape`` and ``seed`` (:func:`make_check_problem`) and its answers."""
    p = make_check_problem(shape, seed, activation)
    lengths = draw_lengths(shape.N, shape.T, seed) if kind.lengths else None
    return example_of(kind, p, lengths)


def example_of(kind: Kind, p: Problem, lengths: np.ndarray | None) -> Example:
    """:class:`Example` of a given problem (also used for a single row of one)."""
    N, T, D, H = p.x.shape + p.h0.shape[-1:]
    Np, Tp, Dp, Hp = (_bucket(n, f) for n, f in zip((N, T, D, H), _FLOORS, strict=True))
    x, h0 = _pad(p.x, (Np, Tp, Dp)), _pad(p.h0, (Np, Hp))
    Wx, Wh, b = _pad(p.Wx, (Dp, Hp)), _pad(p.Wh, (Hp, Hp)), _pad(p.b, (Hp,))
    dh = _pad(p.dh, (Np, Tp, Hp))
    if kind.step:
        out, hand, auto = _step_oracle(x[:, 0], h0, Wx, Wh, b, dh[:, 0], p.activation)
        crop = [(N, H), (N, D), (N, H), (D, H), (H, H), (H,)]
        inputs, upstream = (p.x[:, 0], p.h0, p.Wx, p.Wh, p.b), p.dh[:, 0]
    else:
        lp = None if lengths is None else _pad(lengths, (Np,))  # padded rows: length 0
        out, hand, auto = _sequence_oracle(x, h0, Wx, Wh, b, dh, lp, p.activation)
        crop = [(N, T, H), (N, T, D), (N, H), (D, H), (H, H), (H,)]
        inputs, upstream = p.args, p.dh

    def cut(arrays):
        return [
            np.asarray(a)[tuple(slice(0, n) for n in c)] for a, c in zip(arrays, crop, strict=True)
        ]

    return Example(p, inputs, upstream, lengths, cut([out, *hand]), cut([out, *auto]))


def run_example(
    kind: Kind,
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
    ex: Example,
    shape: Shape,
    seed: int,
    forward_kwargs: dict[str, Any],
    tol: float,
    convert: Callable[[np.ndarray], Any],
) -> tuple:
    """Runs the user's functions on one example; returns the rows or raises :class:`Failure`."""
    fwd = "step_forward_fn" if kind.step else "forward_fn"
    bwd = "step_backward_fn" if kind.step else "backward_fn"
    kwargs = dict(forward_kwargs)
    if ex.lengths is not None:
        kwargs["lengths"] = convert(ex.lengths.copy())
    args = [convert(a.copy()) for a in ex.inputs]
    out = call_user(fwd, forward_fn, args, kwargs, shape, seed)
    h, cache = unpack(fwd, out, 2, "(h, cache)", shape, seed)
    T = 1 if kind.step else shape.T
    row, g = compare(h, [ex.hand[0], ex.auto[0]], kind.names[0], tol, shape.N, T)
    rows, got = [row], {kind.names[0]: g}
    if row.ok:  # a wrong forward pass makes every gradient wrong: report it alone
        grads = call_user(bwd, backward_fn, [convert(ex.upstream.copy()), cache], {}, shape, seed)
        grads = unpack(bwd, grads, 5, f"({', '.join(kind.names[1:])})", shape, seed)
        for i, (q, name) in enumerate(zip(grads, kind.names[1:], strict=True), start=1):
            row, g = compare(q, [ex.hand[i], ex.auto[i]], name, tol, shape.N, T)
            if row.ok and g is not None and ex.lengths is not None and name == "dx":
                row = _padded_steps_zero(row, g, ex.lengths)
            rows.append(row)
            got[name] = g
    want = dict(zip(kind.names, ex.hand, strict=True))
    first_failure(rows, got, want, shape, seed)
    return tuple(rows)


def _padded_steps_zero(row, dx: np.ndarray, lengths: np.ndarray):
    """``dx`` must be exactly 0 at padded steps ``t >= lengths[n]``, not merely small."""
    pad = np.arange(dx.shape[1])[None, :] >= lengths[:, None]  # (N, T)
    leak = dx[pad]
    if leak.size and np.any(leak != 0):
        note = (
            f"nonzero at padded steps t >= lengths[n] (max |dx| there {np.max(np.abs(leak)):.3g})"
        )
        return row._replace(ok=False, note=note)
    return row
