"""``check_rnn_backward`` / ``check_rnn_step_backward``: the RNN oracle, driven by hypothesis."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

import jaxrnn

from . import _oracle
from ._compare import Failure, scale_of, x64
from ._locate import rnn_diagnosis
from ._report import DEFAULT_TOL, largest, python_repro, report
from ._runner import drive, validate
from .strategies import CHECK_POOL, Problem, Shape, oracle_shapes

DEFAULT_MAX_EXAMPLES = 30


class Stats(NamedTuple):
    """What a passing check saw: the number of examples and the worst error per quantity."""

    examples: int
    max_rel_err: dict[str, float]


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """True when ``fn`` has a parameter called ``name`` or takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY)
        for p in params
    )


def accepts_activation(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` has a parameter named ``activation`` or takes ``**kwargs``."""
    return accepts(fn, "activation")


def run_check(
    kind: _oracle.Kind,
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
    *,
    activation: str,
    max_examples: int,
    tol: float,
    shapes: st.SearchStrategy[Shape] | None,
    derandomize: bool,
    shape: tuple[int, int, int, int] | None,
    seed: int | None,
    pass_activation: bool | None,
    convert_inputs: Callable[[np.ndarray], Any] | None,
    repro: str | None = None,
) -> Stats:
    """Runs the check; returns :class:`Stats` or raises ``AssertionError`` with a report.

    ``repro``: a template for the report's reproduction line, with ``{shape}``
    (``N,T,D,H``) and ``{seed}`` fields; by default a Python call.
    """
    __tracebackhide__ = True
    _validate(forward_fn, backward_fn, activation, max_examples, tol, derandomize, shapes)
    if pass_activation is None:
        pass_activation = accepts_activation(forward_fn)
    user = _User(
        kind, forward_fn, backward_fn, {"activation": activation} if pass_activation else {},
        tol, convert_inputs if convert_inputs is not None else (lambda a: a),
    )  # fmt: skip
    single = None if shape is None else (_shape(shape, kind), 0 if seed is None else int(seed))

    def one(shape_: Shape, seed_: int):
        ex = _oracle.make_example(kind, shape_, seed_, activation)
        try:
            return _run(user, ex, shape_, seed_)
        except Failure as f:
            f.problem = ex  # for the diagnosis of the reported failure
            raise

    seen, failure, failed = drive(
        one, pool=None if shapes is not None else _pool(kind), strategy=_strategy(kind, shapes),
        max_examples=max_examples, derandomize=derandomize, single=single,
    )  # fmt: skip
    if failure is not None:
        raise AssertionError(_failure_text(user, failure, failed, activation, repro)) from None
    worst = {
        n: max((rows[i].rel_err for rows in seen if i < len(rows)), default=0.0)
        for i, n in enumerate(kind.names)
    }
    return Stats(len(seen), worst)


class _User(NamedTuple):
    """The code under test and how one check calls it."""

    kind: _oracle.Kind
    forward_fn: Callable[..., Any]
    backward_fn: Callable[..., Any]
    kwargs: dict[str, Any]  # {"activation": ...} or {}
    tol: float
    convert: Callable[[np.ndarray], Any]


def _run(u: _User, ex: _oracle.Example, shape: Shape, seed: int):
    """The user's code on one example: the rows, or :class:`Failure`."""
    return _oracle.run_example(
        u.kind, u.forward_fn, u.backward_fn, ex, shape, seed, u.kwargs, u.tol, u.convert
    )


def _validate(forward_fn, backward_fn, activation, max_examples, tol, derandomize, shapes):
    """``ValueError``/``TypeError`` for arguments :func:`run_check` cannot run with."""
    jaxrnn.get_activation(activation)  # ValueError naming the choices
    for label, fn in (("forward_fn", forward_fn), ("backward_fn", backward_fn)):
        if not callable(fn):
            raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    validate(max_examples, tol, derandomize)
    if shapes is not None and not isinstance(shapes, st.SearchStrategy):
        raise TypeError(f"shapes must be a hypothesis strategy of Shape, got {shapes!r}")


def _failure_text(u: _User, failure: Failure, failed, activation: str, repro: str | None) -> str:
    """The report of a failed check: the diagnosis, the reproduction, the largest errors."""
    if failure.rows and hasattr(failure, "problem"):
        failure.notes = _diagnose(u, failure)
    if repro is None:
        repro = python_repro(u.kind, u.forward_fn, u.backward_fn, activation, failure, u.tol)
    else:  # a template: "... --shape {shape} --seed {seed}"
        repro = repro.format(shape=",".join(map(str, failure.shape)), seed=failure.seed)
    return report(u.kind.title, failure, activation, u.tol, repro) + largest(failure, failed)


def _pool(kind: _oracle.Kind) -> list[Shape]:
    if not kind.step:
        return list(CHECK_POOL)
    return list(dict.fromkeys(s._replace(T=1) for s in CHECK_POOL))


def _strategy(kind: _oracle.Kind, shapes: st.SearchStrategy[Shape] | None) -> st.SearchStrategy:
    strategy = shapes if shapes is not None else oracle_shapes()
    if kind.step:  # one step: T plays no part
        strategy = strategy.map(lambda s: s._replace(T=1))
    return strategy


def _shape(shape: tuple[int, ...], kind: _oracle.Kind) -> Shape:
    if len(shape) != 4 or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise ValueError(f"shape must be (N, T, D, H) of non-negative ints, got {shape!r}")
    s = Shape(*(int(n) for n in shape))
    return s._replace(T=1) if kind.step else s


def _diagnose(u: _User, f: Failure) -> list[str]:
    """The report's extra lines: the first wrong step, a named bug, batch mixing."""
    ex: _oracle.Example = f.problem
    lines = []
    if not u.kind.step and not u.kind.lengths:
        lines = rnn_diagnosis(f, ex.problem, u.tol)
    if u.kind.lengths:
        lines += _lengths_notes(f, ex)
    if ex.problem.x.shape[0] > 1 and not any(ln.startswith("looks like") for ln in lines):
        with x64():
            mixing = _batch_mixing(u, f, ex)
        lines += [mixing] if mixing else []
    return lines


def _lengths_notes(f: Failure, ex: _oracle.Example) -> list[str]:
    lengths = ex.lengths
    assert lengths is not None, "called for a check with lengths only"
    notes = [f"lengths: {lengths.tolist()}"]
    dh0, want = f.got.get("dh0"), f.want.get("dh0")
    if dh0 is not None and want is not None and dh0.shape == want.shape:
        wrong = np.abs(dh0 - want).max(axis=1) > 1e-8 * scale_of(want)
        if wrong.any() and np.all(lengths[wrong] == 0):
            notes.append("dh0 is wrong only in rows of length 0 (there dh0 must be 0)")
    return notes


def _batch_mixing(u: _User, f: Failure, ex: _oracle.Example) -> str:
    """Runs the user's code on each row alone; names mixing if a row's answer changes."""
    p: Problem = ex.problem
    for n in range(p.x.shape[0]):
        rows = slice(n, n + 1)
        sub = p._replace(x=p.x[rows], h0=p.h0[rows], dh=p.dh[rows])
        lengths = None if ex.lengths is None else ex.lengths[rows]
        one = _oracle.example_of(u.kind, sub, lengths)
        try:
            _run(u, one, Shape(1, *f.shape[1:]), f.seed)
        except Failure:
            continue  # this row alone is wrong too: not a batch effect
        return (
            f"mixing across the batch: row {n} computed alone (N = 1) is right, "
            f"but wrong inside the batch of N = {p.x.shape[0]}"
        )
    return ""


def check_rnn_backward(
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
    *,
    activation: str = "tanh",
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    tol: float = DEFAULT_TOL,
    shapes: st.SearchStrategy[Shape] | None = None,
    derandomize: bool = True,
    shape: tuple[int, int, int, int] | None = None,
    seed: int | None = None,
    lengths: bool = False,
    pass_activation: bool | None = None,
    convert_inputs: Callable[[np.ndarray], Any] | None = None,
) -> None:
    """Checks a user's RNN forward pass and hand-written BPTT against jaxrnn.

    The functions must have the document's signatures (MATH.md §1, §3, §5)::

        forward_fn(x, h0, Wx, Wh, b) -> (h, cache)      # h_t = f(x_t Wx + h_{t-1} Wh + b)
        backward_fn(dh, cache) -> (dx, dh0, dWx, dWh, db)

    with ``x: (N, T, D)``, ``h0: (N, H)``, ``Wx: (D, H)``, ``Wh: (H, H)``,
    ``b: (H,)``, ``h`` and ``dh: (N, T, H)``; each gradient has the shape of
    what it differentiates. The inputs are numpy float64 arrays (fresh copies);
    the outputs may be numpy or JAX arrays (or torch tensors). ``h`` and every
    gradient are compared, in float64, with :func:`jaxrnn.rnn_forward`, the
    hand BPTT :func:`jaxrnn.rnn_backward` and ``jax.grad`` of a plain
    ``lax.scan`` forward. ``cache`` is opaque: it only goes back to ``backward_fn``.

    What is drawn: every call first runs each of the 7 shapes of
    :data:`~jaxrnn.testing.strategies.CHECK_POOL` once, smallest first, from
    ``(1, 1, 1, 1)`` to ``(4, 64, 16, 24)`` (N up to 4, T up to 64, D and H up to
    24 with D != H), then ``max_examples`` shapes and seeds drawn by hypothesis
    from the same pool. Sequences of 8 steps or more carry their gradient over
    the whole sequence (orthogonal ``Wh`` at spectral radius 1, tanh out of
    saturation: see :func:`~jaxrnn.testing.strategies.make_check_problem` for
    the numbers), so a BPTT cut after any k < T steps is off by at least 3.5e-4
    relative (35,000 times the tolerance) in the weakest case measured. A jitted
    JAX implementation compiles at most 7 times.

    Args:
      forward_fn, backward_fn: the implementation under test (numpy or JAX).
      activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"identity"``: the
        ``f`` that ``forward_fn`` implements. It is passed as
        ``forward_fn(..., activation=activation)`` only if ``forward_fn`` has a
        parameter named ``activation`` (or ``**kwargs``); otherwise bind it
        yourself (``functools.partial``) and name it here.
      max_examples: hypothesis examples after the sweep (default 30).
      tol: the largest accepted relative error ``max|got - want| / max(max|want|, 1)``,
        a positive finite float. The default 1e-8 suits float64; a float32
        implementation needs ~1e-5.
      shapes: a strategy of :class:`~jaxrnn.testing.strategies.Shape` to draw
        from instead of the pool (no sweep then), e.g.
        ``strategies.shapes(T=(0, 1, 5))`` to include empty sequences.
      derandomize: draw the same examples on every run (default) or fresh ones.
      shape, seed: check exactly this one problem ``(N, T, D, H)`` and seed
        instead: the reproduction a failure report prints.
      lengths: the forward takes ``lengths=`` ``(N,)`` int32 as
        :func:`jaxrnn.rnn_forward` does (``h`` zero and the state frozen from
        step ``lengths[n]`` on). Lengths 0 and T are always drawn; ``dx`` must be
        exactly zero at padded steps, and ``dh0`` zero for rows of length 0.
      pass_activation: force (True) or suppress (False) the ``activation=`` keyword.
      convert_inputs: applied to each numpy input before the call (e.g.
        ``torch.from_numpy`` for a torch implementation).

    Returns:
      None when every example agrees.

    Raises:
      AssertionError: a report naming the first wrong quantity (in the order
        ``h, dx, dh0, dWx, dWh, db``), the shrunk shape and seed that reproduce
        it, the error of every quantity, where in time ``dx`` (and ``δ`` when
        ``D >= H``) first departs counting back from the end, the class of bug
        when it is recognised, and a one-line reproduction. NaN or inf in an
        output is named as such; an exception raised by the user's code is
        reported with its file and line.
      ValueError: a bad option (``tol`` not positive and finite, ``max_examples``
        not a positive int, an unknown activation, a bad ``shape``).
    """
    __tracebackhide__ = True
    run_check(
        _oracle.LENGTHS if lengths else _oracle.SEQUENCE, forward_fn, backward_fn,
        activation=activation, max_examples=max_examples, tol=tol, shapes=shapes,
        derandomize=derandomize, shape=shape, seed=seed, pass_activation=pass_activation,
        convert_inputs=convert_inputs,
    )  # fmt: skip


def check_rnn_step_backward(
    step_forward_fn: Callable[..., Any],
    step_backward_fn: Callable[..., Any],
    *,
    activation: str = "tanh",
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    tol: float = DEFAULT_TOL,
    shapes: st.SearchStrategy[Shape] | None = None,
    derandomize: bool = True,
    shape: tuple[int, int, int, int] | None = None,
    seed: int | None = None,
    pass_activation: bool | None = None,
    convert_inputs: Callable[[np.ndarray], Any] | None = None,
) -> None:
    """Checks a user's single-step forward/backward against jaxrnn (MATH.md §1, §3, §5).

    The signatures are the document's::

        step_forward_fn(x, prev_h, Wx, Wh, b) -> (next_h, cache)
        step_backward_fn(dnext_h, cache) -> (dx, dprev_h, dWx, dWh, db)

    with ``x: (N, D)``, ``prev_h`` and ``dnext_h: (N, H)``. The reference is
    :func:`jaxrnn.rnn_step_forward` / :func:`jaxrnn.rnn_step_backward` and
    ``jax.grad`` of one step. Arguments as in :func:`check_rnn_backward`
    (``shape`` is ``(N, T, D, H)`` there too; T is ignored).

    Raises:
      AssertionError: a report naming the first wrong quantity (in the order
        ``next_h, dx, dprev_h, dWx, dWh, db``), the shape, seed and errors.
    """
    __tracebackhide__ = True
    run_check(
        _oracle.STEP, step_forward_fn, step_backward_fn, activation=activation,
        max_examples=max_examples, tol=tol, shapes=shapes, derandomize=derandomize,
        shape=shape, seed=seed, pass_activation=pass_activation, convert_inputs=convert_inputs,
    )  # fmt: skip
