"""``check_jvp``: the oracle for a hand-written forward mode (a tangent recurrence, or an
RTRL's sensitivities applied to one direction) of any recurrent cell, against ``jax.jvp``
of a ``lax.scan`` (MATH.md §11). A wrong tangent departs at some step and stays wrong
after it: the report names the first wrong step, counting from the start."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._compare import Failure, call_user, first_failure, unpack
from ._generic import Shape2, _compare_tree, _draw, _identity, drive_pool
from ._locate import wrong_steps
from ._report import DEFAULT_TOL, report
from ._runner import validate


@functools.lru_cache(maxsize=32)
def _reference(cell: Callable, output: Callable) -> Callable:
    """Jitted ``(params, state0, x, tangents) -> (ys, ẏs)`` by ``jax.jvp`` of the scan."""

    def run(params, state0, x):
        def step(s, x_t):
            s = cell(params, s, x_t)
            return s, output(s)

        _, ys = jax.lax.scan(step, state0, jnp.swapaxes(x, 0, 1))  # time-major
        return jax.tree.map(lambda y: jnp.swapaxes(y, 0, 1), ys)  # (N, T, ...)

    return jax.jit(lambda primals, tangents: jax.jvp(run, primals, tangents))


def locate_forward(name: str, got: np.ndarray | None, want: np.ndarray, tol: float) -> str | None:
    """The first step at which a per-step tangent ``(N, T, ...)`` departs, as a sentence."""
    bad = wrong_steps(got, want, tol)
    if bad is None or not bad.any():
        return None
    T = bad.size
    t = int(np.argmax(bad))
    right = f"right for the first {t} of {T} steps (t = 0 ... {t - 1}) and " if t else ""
    return f"{name} is {right}first wrong at t = {t} (wrong at {int(bad.sum())} of {T} steps)"


def check_jvp(
    cell: Callable[[Any, Any, Any], Any],
    jvp_fn: Callable[..., Any],
    *,
    params: Any,
    state: Any,
    input_size: int,
    output: Callable[[Any], Any] | None = None,
    max_examples: int = 30,
    tol: float = DEFAULT_TOL,
    derandomize: bool = True,
    shape: tuple[int, int] | None = None,
    seed: int | None = None,
) -> None:
    """Checks a hand-written forward mode of any recurrent cell against ``jax.jvp``.

    The reference is ``jax.jvp`` of a ``lax.scan`` over ``cell`` in float64 (as in
    :func:`check_bptt`), and the function under test has the signature::

        jvp_fn(x, state0, params, dx, dstate0, dparams) -> (ys, dys)

    ``x, dx: (N, T, input_size)``, ``state0``/``dstate0`` pytrees of ``(N, ...)`` arrays,
    ``params``/``dparams`` any pytree; ``ys`` the outputs ``y_t = output(state_t)``
    stacked on axis 1 and ``dys`` their tangents, same structure. An RTRL
    implementation is checked through it by contracting its sensitivities with
    ``dparams`` (and ``dstate0``, ``dx``). Shapes, draws and the hypothesis sweep are
    :func:`check_bptt`'s; tangents are drawn like their primals.

    Raises:
      AssertionError: a report naming the first wrong quantity (``y...``, then
        ``dy...``), the shrunk shape and seed, every quantity's error, the first step at
        which the tangent departs (counting from the start) and a reproduction.
    """
    __tracebackhide__ = True
    validate(max_examples, tol, derandomize)
    for label, fn in (("cell", cell), ("jvp_fn", jvp_fn)):
        if not callable(fn):
            raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size!r}")
    out_fn = output if output is not None else _identity
    setup = (cell, out_fn, _reference(cell, out_fn), params, state, input_size, jvp_fn, tol)
    _, failure = drive_pool(functools.partial(_one, setup), shape, seed, max_examples, derandomize)
    if failure is not None:
        raise AssertionError(_failure_text(failure, tol)) from None


def _failure_text(failure: Failure, tol: float) -> str:
    """The report: where in time the first wrong tangent departs, and a reproduction."""
    failure.notes = []
    for name, want in failure.want.items():
        hit = locate_forward(name, failure.got.get(name), want, tol) if name[:2] == "dy" else None
        if hit is not None:
            failure.notes = [f"in time: {hit}"]
            break
    repro = (
        f"jaxrnn.testing.check_jvp(cell, jvp_fn, ..., shape={tuple(failure.shape)}, "
        f"seed={failure.seed})"
    )
    return report("forward-mode", failure, None, tol, repro)


def _one(setup: tuple, s, seed: int) -> tuple:
    """One example: the user's ``(ys, dys)`` against the reference's; rows or ``Failure``."""
    cell, output, reference, params, state, D, jvp_fn, tol = setup
    s = Shape2(*s)
    rng = np.random.default_rng(seed)
    p = params(rng) if callable(params) else _draw(params, rng)
    s0 = state(rng, s.N) if callable(state) else _draw(state, rng, batch=s.N)
    x = rng.standard_normal((s.N, s.T, D))
    dx, ds0, dp = jax.tree.map(lambda a: rng.standard_normal(np.shape(a)), (x, s0, p))
    ys, dys = jax.tree.map(np.asarray, reference((p, s0, x), (dp, ds0, dx)))
    args = [x.copy(), s0, p, dx, ds0, dp]
    out = call_user("jvp_fn", jvp_fn, args, {}, s, seed)
    got_ys, got_dys = unpack("jvp_fn", out, 2, "(ys, dys)", s, seed)
    rows, got, want = _compare_tree(got_ys, ys, ("ys", "y", "output(state)"), tol, s, seed)
    if all(r.ok for r in rows):
        more, g, w = _compare_tree(got_dys, dys, ("dys", "dy", "output(state)"), tol, s, seed)
        rows, got, want = rows + more, got | g, want | w
    first_failure(rows, got, want, s, seed)
    return tuple(rows)
