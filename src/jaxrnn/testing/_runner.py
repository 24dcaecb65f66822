"""How every check draws its examples: a sweep of the shape pool, then hypothesis.

1. The sweep runs each shape of the pool once, smallest first (so the first
   failure is already the smallest failing shape, and every default check sees
   the long and wide shapes).
2. Hypothesis then draws ``max_examples`` (shape, seed) pairs from the same
   pool and shrinks any failure to the smallest shape and seed.

Shapes come from the pool only, so a jitted implementation compiles at most
once per pool shape.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from ._compare import Failure, x64

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def validate(max_examples: Any, tol: Any, derandomize: Any) -> None:
    """``ValueError``/``TypeError`` for options a check cannot run with."""
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)):
        raise TypeError(f"tol must be a positive finite float, got {tol!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive finite float, got {tol!r}")
    if not isinstance(derandomize, bool):
        raise TypeError(f"derandomize must be True or False, got {derandomize!r}")


def drive(
    one: Callable[[Any, int], Any],
    *,
    pool: Sequence[Any] | None,
    strategy: st.SearchStrategy,
    max_examples: int,
    derandomize: bool,
    single: tuple[Any, int] | None = None,
) -> tuple[list[Any], Failure | None, list[Failure]]:
    """Runs ``one(shape, seed)`` over the sweep and hypothesis, or on ``single`` alone.

    Returns ``(results of passing examples, the reported failure or None, every
    failure seen)``. ``one`` raises :class:`Failure` for a wrong answer.
    """
    seen: list[Any] = []
    failed: list[Failure] = []

    def run(shape, seed):
        try:
            seen.append(one(shape, seed))
        except Failure as f:
            failed.append(f)
            raise

    try:
        with x64():
            if single is not None:
                run(*single)
            else:
                for i, shape in enumerate(pool or ()):
                    run(shape, i if derandomize else secrets.randbits(32))
                _given(strategy, seeds)(_settings(max_examples, derandomize)(run))()
    except Exception as e:
        failure = find_failure(e)
        if failure is None:
            raise
        return seen, failure, failed
    return seen, None, failed


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
        # hypothesis' HealthCheckMeta.__iter__ is typed as yielding the metaclass
        suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )


def find_failure(e: BaseException) -> Failure | None:
    """The oracle's failure inside whatever hypothesis raised (it may wrap it in a group)."""
    if isinstance(e, Failure):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = find_failure(inner)
        if found is not None:
            return found
    return None
