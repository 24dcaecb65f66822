"""The correctness oracle: checks a user's RNN forward/backward against jaxrnn.

For each example (a shape and a seed drawn by hypothesis) the user's functions
get numpy float64 inputs; every output and gradient they return is compared
with jaxrnn's hand BPTT (:func:`jaxrnn.rnn_backward`, MATH.md §3, §5) and with
``jax.grad`` of the naive ``lax.scan`` forward (:func:`jaxrnn.reference.scan_rnn`),
all in float64. Hypothesis shrinks a failure to a small shape and seed, which
the report names together with a one-line reproduction.

The oracle side is compiled once per activation, not once per shape: each
problem is zero-padded to a fixed bucket (:func:`_bucket`) before it reaches
jaxrnn, and the results are sliced back. The padding is exact (MATH.md §3):
padded batch rows and time steps get ``dh = 0``, so their ``da`` is 0 and they
add nothing to any gradient; padded input columns have ``x = 0`` and zero ``Wx``
rows; padded hidden units have zero rows of ``Wh``, so they never feed back
into the real units, and ``dh = 0`` for them.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np

from .._activations import get_activation
from .._bptt import rnn_backward
from .._cell import rnn_step_backward, rnn_step_forward
from .._scan import rnn_forward
from ..reference import scan_rnn
from .strategies import Problem, Shape, make_problem

Array = jax.Array
SEQUENCE_NAMES = ("h", "dx", "dh0", "dWx", "dWh", "db")
STEP_NAMES = ("next_h", "dx", "dprev_h", "dWx", "dWh", "db")


@partial(jax.jit, static_argnames="activation")
def _sequence_oracle(x, h0, Wx, Wh, b, dh, activation):
    """``h`` by ``rnn_forward``, grads by the hand BPTT and by ``jax.grad`` of ``scan_rnn``."""
    h, cache = rnn_forward(x, h0, Wx, Wh, b, activation=activation)
    hand = rnn_backward(dh, cache)  # MATH.md §3, §5

    def loss(*args):
        return (scan_rnn(*args, activation) * dh).sum()

    return h, hand, jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, h0, Wx, Wh, b)


@partial(jax.jit, static_argnames="activation")
def _step_oracle(x, prev_h, Wx, Wh, b, dnext_h, activation):
    """``next_h`` by ``rnn_step_forward``, grads by ``rnn_step_backward`` and by ``jax.grad``."""
    next_h, cache = rnn_step_forward(x, prev_h, Wx, Wh, b, activation=activation)
    hand = rnn_step_backward(dnext_h, cache)
    f = get_activation(activation).fn

    def loss(x, prev_h, Wx, Wh, b):
        return (f(x @ Wx + prev_h @ Wh + b[None]) * dnext_h).sum()  # §1, one step

    return next_h, hand, jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, prev_h, Wx, Wh, b)


def _bucket(n: int, floor: int) -> int:
    """The padded size of a dimension: ``floor``, or the next power of two above it."""
    return max(floor, 1 << max(n - 1, 0).bit_length())


def _pad(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.pad(a, [(0, s - d) for d, s in zip(a.shape, shape, strict=True)])


class _Kind(NamedTuple):
    """What is being checked: the sequence functions or the single-step functions."""

    title: str  # names the function under test in reports
    names: tuple[str, ...]  # output, then (dx, d<state>, dWx, dWh, db)
    step: bool


SEQUENCE = _Kind("rnn_backward", SEQUENCE_NAMES, step=False)
STEP = _Kind("rnn_step_backward", STEP_NAMES, step=True)


def problem_arrays(kind: _Kind, p: Problem) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The forward inputs and the upstream gradient of a problem, as the user gets them.

    Sequence: ``(x (N, T, D), h0 (N, H), Wx, Wh, b)`` and ``dh (N, T, H)``.
    Step: ``(x (N, D), prev_h (N, H), Wx, Wh, b)`` and ``dnext_h (N, H)``, the first step.
    """
    if kind.step:
        return (p.x[:, 0], p.h0, p.Wx, p.Wh, p.b), p.dh[:, 0]
    return p.args, p.dh


def expected(kind: _Kind, p: Problem) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """jaxrnn's answers for a problem: ``(by hand BPTT, by jax.grad)``, each a list of
    six numpy arrays in the order of ``kind.names`` (the forward output first)."""
    N, T, D, H = p.x.shape + p.h0.shape[-1:]
    Np, Tp, Dp, Hp = _bucket(N, 4), _bucket(T, 8), _bucket(D, 4), _bucket(H, 4)
    args = (
        _pad(p.x, (Np, Tp, Dp)),
        _pad(p.h0, (Np, Hp)),
        _pad(p.Wx, (Dp, Hp)),
        _pad(p.Wh, (Hp, Hp)),
        _pad(p.b, (Hp,)),
        _pad(p.dh, (Np, Tp, Hp)),
    )
    if kind.step:
        x, h0, Wx, Wh, b, dh = args
        out, hand, auto = _step_oracle(x[:, 0], h0, Wx, Wh, b, dh[:, 0], p.activation)
        crop = [(N, H), (N, D), (N, H), (D, H), (H, H), (H,)]
    else:
        out, hand, auto = _sequence_oracle(*args, p.activation)
        crop = [(N, T, H), (N, T, D), (N, H), (D, H), (H, H), (H,)]

    def cut(arrays):
        return [
            np.asarray(a)[tuple(slice(0, n) for n in c)] for a, c in zip(arrays, crop, strict=True)
        ]

    return cut([out, *hand]), cut([out, *auto])


class Row(NamedTuple):
    """One compared quantity of one example."""

    name: str
    shape: tuple[int, ...]  # the expected shape
    rel_err: float  # max over both oracles of max|got - want| / max(max|want|, 1)
    abs_err: float
    ok: bool
    note: str  # a shape mismatch, a dtype or a pattern found in the error


class Failure(Exception):
    """Raised inside the hypothesis loop; turned into an ``AssertionError`` report."""

    def __init__(self, what: str, shape: Shape, seed: int, rows: tuple[Row, ...] = ()):
        super().__init__(what)
        self.what, self.shape, self.seed, self.rows = what, shape, seed, rows


def to_float_array(value: Any) -> np.ndarray:
    """numpy/JAX arrays, torch tensors (detached) and nested lists to a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _diagnose(got: np.ndarray, want: np.ndarray, N: int) -> str:
    """Names a recognisable mistake: a transpose, zeros, a flipped sign, a mean over N."""
    if not np.any(want):
        return ""

    def near(a, b):
        return a.shape == b.shape and np.max(np.abs(a - b)) <= 1e-8 * max(np.max(np.abs(b)), 1)

    if want.ndim == 2 and want.shape[0] == want.shape[1] and near(got, want.T):
        return "it equals the transpose of the right answer"
    if not np.any(got):
        return "it is all zeros"
    if near(got, -want):
        return "it has the wrong sign"
    if N > 1 and near(got, want / N):
        return "it is the right answer divided by N (a mean over the batch instead of a sum)"
    return ""


def compare(
    kind: _Kind, got: Any, want_hand: np.ndarray, want_auto: np.ndarray, name: str, N: int, tol
) -> Row:
    """Compares one returned quantity with both oracles."""
    try:
        arr = to_float_array(got)
        g = arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        return Row(name, want_hand.shape, np.inf, np.inf, False, f"not an array ({e})")
    if g.shape != want_hand.shape:
        note = f"returned shape {g.shape}, expected {want_hand.shape}"
        return Row(name, want_hand.shape, np.inf, np.inf, False, note)
    if g.size == 0:
        return Row(name, g.shape, 0.0, 0.0, True, "")
    errs = [np.max(np.abs(g - w)) for w in (want_hand, want_auto)]
    rel = max(
        e / max(np.max(np.abs(w)), 1.0) for e, w in zip(errs, (want_hand, want_auto), strict=True)
    )
    ok = bool(rel <= tol)  # False for NaN
    note = "" if ok else _diagnose(g, want_hand, N)
    if not ok and arr.dtype != np.float64 and np.issubdtype(arr.dtype, np.floating):
        note = f"{note}; " if note else ""
        note += f"returned {arr.dtype}: compute in float64 or raise tol"
    return Row(name, g.shape, float(rel), float(max(errs)), ok, note)


def run_example(
    kind: _Kind,
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
    shape: Shape,
    seed: int,
    activation: str,
    forward_kwargs: dict[str, str],
    tol: float,
    convert: Callable[[np.ndarray], Any],
) -> tuple[Row, ...]:
    """Runs the user's functions on one problem; returns the rows or raises :class:`Failure`."""
    p = make_problem(shape, seed, activation)
    inputs, upstream = problem_arrays(kind, p)
    hand, auto = expected(kind, p)
    fwd = "step_forward_fn" if kind.step else "forward_fn"
    bwd = "step_backward_fn" if kind.step else "backward_fn"

    def call(label, fn, *args, **kwargs):
        try:
            return fn(*(convert(a.copy()) for a in args), **kwargs)
        except Exception as e:  # the user's code: report it with the shape, seed and line
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f" (at {frame.filename}:{frame.lineno})"
            raise Failure(f"{label} raised {type(e).__name__}: {e}{where}", shape, seed) from e

    def unpack(label, out, n, what):
        if not isinstance(out, (tuple, list)) or len(out) != n:
            got = f"a {type(out).__name__}" + (
                f" of length {len(out)}" if hasattr(out, "__len__") else ""
            )
            raise Failure(f"{label} must return {what}, got {got}", shape, seed)
        return out

    h, cache = unpack(fwd, call(fwd, forward_fn, *inputs, **forward_kwargs), 2, "(h, cache)")
    rows = [compare(kind, h, hand[0], auto[0], kind.names[0], shape.N, tol)]
    if rows[0].ok:  # a wrong forward pass makes every gradient wrong: report it alone
        grads = call(bwd, lambda d: backward_fn(d, cache), upstream)
        grads = unpack(bwd, grads, 5, f"({', '.join(kind.names[1:])})")
        rows += [
            compare(kind, g, w_h, w_a, n, shape.N, tol)
            for g, w_h, w_a, n in zip(grads, hand[1:], auto[1:], kind.names[1:], strict=True)
        ]
    bad = [r for r in rows if not r.ok]
    if bad:
        raise Failure(f"{bad[0].name} is wrong", shape, seed, tuple(rows))
    return tuple(rows)


def x64() -> contextlib.AbstractContextManager:
    """A context in which JAX computes in float64 (``jax.enable_x64``, or its old home)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.7
        from jax.experimental import enable_x64 as enable
    return enable(True)
