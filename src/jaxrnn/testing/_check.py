"""``check_rnn_backward`` / ``check_rnn_step_backward``: hypothesis drives the oracle."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from .._activations import get_activation
from . import _oracle
from ._report import DEFAULT_TOL, largest, python_repro, report
from .strategies import Shape, check_shapes, seeds

DEFAULT_MAX_EXAMPLES = 30


class Stats(NamedTuple):
    """What a passing check saw: the number of examples and the worst error per quantity."""

    examples: int
    max_rel_err: dict[str, float]


def accepts_activation(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` has a parameter named ``activation`` or takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "activation" and p.kind is not p.POSITIONAL_ONLY)
        for p in params
    )


def run_check(
    kind: _oracle._Kind,
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
    get_activation(activation)  # ValueError naming the choices
    for label, fn in (("forward_fn", forward_fn), ("backward_fn", backward_fn)):
        if not callable(fn):
            raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    if not (isinstance(max_examples, int) and max_examples >= 1):
        raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
    if shapes is not None and not isinstance(shapes, st.SearchStrategy):
        raise TypeError(f"shapes must be a hypothesis strategy of Shape, got {shapes!r}")
    if pass_activation is None:
        pass_activation = accepts_activation(forward_fn)
    kwargs = {"activation": activation} if pass_activation else {}
    convert = convert_inputs if convert_inputs is not None else (lambda a: a)
    seen: list[tuple[_oracle.Row, ...]] = []
    failed: list[_oracle.Failure] = []  # every failing example hypothesis tried

    def one(shape_: Shape, seed_: int) -> None:
        try:
            rows = _oracle.run_example(
                kind, forward_fn, backward_fn, shape_, seed_, activation, kwargs, tol, convert
            )
        except _oracle.Failure as f:
            failed.append(f)
            raise
        seen.append(rows)

    try:
        with _oracle.x64():
            if shape is not None:
                one(_shape(shape, kind), 0 if seed is None else int(seed))
            else:
                strategy = shapes if shapes is not None else check_shapes()
                if kind.step:  # one step: T plays no part
                    strategy = strategy.map(lambda s: s._replace(T=1))
                _given(strategy, seeds)(_settings(max_examples, derandomize)(one))()
    except Exception as e:
        failure = _find_failure(e)
        if failure is None:
            raise
        if repro is None:
            repro = python_repro(kind, forward_fn, backward_fn, activation, failure, tol)
        else:  # a template: "... --shape {shape} --seed {seed}"
            repro = repro.format(shape=",".join(map(str, failure.shape)), seed=failure.seed)
        text = report(kind, failure, activation, tol, repro) + largest(kind, failure, failed)
        raise AssertionError(text) from None
    worst = {
        n: max((rows[i].rel_err for rows in seen if i < len(rows)), default=0.0)
        for i, n in enumerate(kind.names)
    }
    return Stats(len(seen), worst)


def _given(*strategies: st.SearchStrategy) -> Callable[[Callable[..., None]], Callable[[], None]]:
    """``hypothesis.given``, also when called inside a user's own ``@given`` test.

    ``given`` refuses to decorate inside a running hypothesis test (the
    ``nested_given`` health check of the *outer* settings, which the oracle
    cannot set). Nesting is what the user asked for here, so the decorator is
    applied with hypothesis's build context cleared; the inner test then runs
    normally, inside the outer one. Falls back to plain ``given`` if the
    private context variable moves.
    """

    def decorate(fn):
        try:
            from hypothesis.control import _current_build_context
        except ImportError:  # pragma: no cover - a future hypothesis
            return given(*strategies)(fn)
        with _current_build_context.with_value(None):
            return given(*strategies)(fn)

    return decorate


def _settings(max_examples: int, derandomize: bool) -> settings:
    """Explicit settings, independent of the caller's profile and of an enclosing ``@given``."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )


def _shape(shape: tuple[int, ...], kind: _oracle._Kind) -> Shape:
    if len(shape) != 4 or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise ValueError(f"shape must be (N, T, D, H) of non-negative ints, got {shape!r}")
    s = Shape(*(int(n) for n in shape))
    return s._replace(T=1) if kind.step else s


def _find_failure(e: BaseException) -> _oracle.Failure | None:
    """The oracle's failure inside whatever hypothesis raised (it may wrap it in a group)."""
    if isinstance(e, _oracle.Failure):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = _find_failure(inner)
        if found is not None:
            return found
    return None


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
    pass_activation: bool | None = None,
    convert_inputs: Callable[[np.ndarray], Any] | None = None,
) -> None:
    """Checks a user's RNN forward pass and hand-written BPTT against jaxrnn.

    The functions must have the document's signatures (MATH.md §1, §3, §5)::

        forward_fn(x, h0, Wx, Wh, b) -> (h, cache)      # h_t = f(x_t Wx + h_{t-1} Wh + b)
        backward_fn(dh, cache) -> (dx, dh0, dWx, dWh, db)

    with ``x: (N, T, D)``, ``h0: (N, H)``, ``Wx: (D, H)``, ``Wh: (H, H)``,
    ``b: (H,)``, ``h`` and ``dh: (N, T, H)``; each gradient has the shape of
    what it differentiates. Hypothesis draws shapes (T = 1, N = 1, H = 1 and
    D != H included) and seeds; the inputs are numpy float64 arrays (fresh
    copies), the outputs may be numpy or JAX arrays (or torch tensors). ``h``
    and every gradient are compared, in float64, with :func:`jaxrnn.rnn_forward`,
    the hand BPTT :func:`jaxrnn.rnn_backward` and ``jax.grad`` of a plain
    ``lax.scan`` forward. ``cache`` is opaque: it only goes back to ``backward_fn``.

    Args:
      forward_fn, backward_fn: the implementation under test (numpy or JAX).
      activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"identity"``: the
        ``f`` that ``forward_fn`` implements. It is passed as
        ``forward_fn(..., activation=activation)`` only if ``forward_fn`` has a
        parameter named ``activation`` (or ``**kwargs``); otherwise bind it
        yourself (``functools.partial``) and name it here.
      max_examples: hypothesis examples (default 30: a call takes seconds).
      tol: the largest accepted relative error ``max|got - want| / max(max|want|, 1)``.
        The default 1e-8 suits float64; a float32 implementation needs ~1e-5.
      shapes: a strategy of :class:`~jaxrnn.testing.strategies.Shape` to draw
        from instead of :func:`~jaxrnn.testing.strategies.check_shapes` (e.g.
        ``strategies.shapes(T=(0, 1, 5))`` to include empty sequences).
      derandomize: draw the same examples on every run (default) or fresh ones.
      shape, seed: check exactly this one problem ``(N, T, D, H)`` and seed
        instead of running hypothesis: the reproduction a failure report prints.
      pass_activation: force (True) or suppress (False) the ``activation=`` keyword.
      convert_inputs: applied to each numpy input before the call (e.g.
        ``torch.from_numpy`` for a torch implementation).

    Returns:
      None when every example agrees.

    Raises:
      AssertionError: a report naming the first wrong quantity (in the order
        ``h, dx, dh0, dWx, dWh, db``), the shrunk shape and seed that reproduce
        it, the max error of every quantity and a one-line reproduction. An
        exception raised by the user's code is reported the same way.
    """
    __tracebackhide__ = True
    run_check(
        _oracle.SEQUENCE, forward_fn, backward_fn, activation=activation,
        max_examples=max_examples, tol=tol, shapes=shapes, derandomize=derandomize,
        shape=shape, seed=seed, pass_activation=pass_activation, convert_inputs=convert_inputs,
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
