"""``check_bptt``: the oracle for any recurrent cell, against ``jax.vjp`` of a ``lax.scan``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._compare import Failure, call_user, compare, first_failure, to_float_array, unpack
from ._locate import locate
from ._report import DEFAULT_TOL, report
from ._runner import drive, validate
from .strategies import st

# (N, T) smallest first; the reference pads every one to (4, 64): it compiles once.
BPTT_POOL = ((1, 1), (2, 2), (1, 5), (3, 12), (4, 24), (2, 40), (4, 64))
_FLOORS = (4, 64)


class Shape2(NamedTuple):
    """Batch N and time T of a generic problem (D and the state come from the user)."""

    N: int
    T: int


@functools.lru_cache(maxsize=32)
def _reference(cell: Callable, output: Callable) -> Callable:
    """Jitted ``(params, state0, x, dys) -> (ys, dx, dstate0, dparams)`` by ``jax.vjp``."""

    def run(params, state0, x):
        def step(s, x_t):
            s = cell(params, s, x_t)
            return s, output(s)

        _, ys = jax.lax.scan(step, state0, jnp.swapaxes(x, 0, 1))  # time-major
        return jax.tree.map(lambda y: jnp.swapaxes(y, 0, 1), ys)  # (N, T, ...)

    @jax.jit
    def reference(params, state0, x, dys):
        ys, vjp = jax.vjp(run, params, state0, x)
        dparams, dstate0, dx = vjp(dys)
        return ys, dx, dstate0, dparams

    return reference


def _draw(template: Any, rng: np.random.Generator, batch: int | None = None) -> Any:
    """Fresh values with the template's shapes: Normal(0, 1/fan_in) matrices, else N(0, 0.5^2)."""

    def one(leaf):
        shape = np.shape(leaf)
        if batch is not None:
            return rng.standard_normal((batch, *shape)) * 0.5
        std = 1 / np.sqrt(shape[0]) if len(shape) >= 2 else 0.5
        return rng.standard_normal(shape) * std

    return jax.tree.map(one, template)


def _names(prefix: str, tree: Any) -> list[str]:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return [prefix] if paths == [""] else [prefix + p for p in paths]


def check_bptt(
    cell: Callable[[Any, Any, Any], Any],
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
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
    convert_inputs: Callable[[np.ndarray], Any] | None = None,
) -> None:
    """Checks a hand-written forward/BPTT of any recurrent cell against ``jax.vjp``.

    The reference is ``jax.vjp`` of a ``lax.scan`` over ``cell``, in float64::

        state_t = cell(params, state_{t-1}, x_t)        # your single step, pure JAX
        y_t     = output(state_t)                        # default: the whole state

    and the functions under test have the signatures::

        forward_fn(x, state0, params) -> (ys, cache)
        backward_fn(dys, cache) -> (dx, dstate0, dparams)

    with ``x: (N, T, input_size)``, ``state0`` a pytree of ``(N, ...)`` arrays
    (e.g. ``(h0, c0)`` for an LSTM), ``ys`` the pytree of ``y_t`` stacked on
    axis 1 (``(N, T, ...)`` leaves), ``params`` any pytree; each gradient has
    the structure and shapes of what it differentiates. Inputs are numpy
    float64 arrays; outputs may be numpy, JAX or torch.

    Each call runs the (N, T) shapes of ``BPTT_POOL`` once, smallest first, up
    to (4, 64), then ``max_examples`` drawn by hypothesis from the same pool,
    shrinking a failure to the smallest. Values: ``x`` standard normal,
    ``state0`` Normal(0, 0.5^2), every matrix leaf of ``params``
    Normal(0, 1/fan_in) (fan_in = its first axis), other leaves Normal(0, 0.5^2),
    ``dys`` standard normal. How far a gradient travels back depends on your cell
    and these draws; pass ``params`` as a function to draw your own (e.g. an
    LSTM forget-gate bias of +3, so that a cut after 32 steps shows).

    Args:
      cell: ``cell(params, state, x_t) -> new_state``, pure JAX, batched over N.
      forward_fn, backward_fn: the implementation under test.
      params: a pytree of arrays whose shapes the draws copy, or a function
        ``rng -> params`` (``numpy.random.Generator``).
      state: a pytree of one row's state arrays (e.g. ``(np.zeros(H), np.zeros(H))``),
        or a function ``(rng, N) -> state0``.
      input_size: D, the last axis of ``x``.
      output: ``state -> y``: what ``forward_fn`` returns per step (e.g.
        ``lambda s: s[0]``, the LSTM's h). Default: the whole state.
      max_examples, tol, derandomize, convert_inputs: as in
        :func:`check_rnn_backward`.
      shape, seed: check exactly this ``(N, T)`` and seed (the reproduction).

    Raises:
      AssertionError: a report naming the first wrong quantity (``y...``,
        ``dx``, ``dstate0...``, ``dparams...`` in that order, pytree paths
        included), the shrunk shape and seed, the error of every quantity,
        where in time ``dx`` first departs counting back from the end, and a
        one-line reproduction. A return whose containers differ from the
        reference's (a dict of gradients for a tuple of params) is named as such;
        lists, tuples and NamedTuples of the same length stand for one another.
    """
    __tracebackhide__ = True
    validate(max_examples, tol, derandomize)
    for label, fn in (("cell", cell), ("forward_fn", forward_fn), ("backward_fn", backward_fn)):
        if not callable(fn):
            raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size!r}")
    out_fn = output if output is not None else _identity
    setup = _Setup(
        cell, out_fn, _reference(cell, out_fn), params, state, input_size, forward_fn,
        backward_fn, tol, convert_inputs if convert_inputs is not None else (lambda a: a),
    )  # fmt: skip
    one = functools.partial(_one, setup)
    seen, failure = drive_pool(one, shape, seed, max_examples, derandomize)
    if failure is not None:
        raise AssertionError(_failure_text(failure, tol)) from None


def drive_pool(one, shape, seed, max_examples: int, derandomize: bool) -> tuple[Any, Any]:
    """``(examples seen, first failure or None)`` of ``one`` over the ``(N, T)`` pool, or
    over the one ``shape`` (with ``seed``) when given; shared by check_bptt and check_jvp."""
    single = None
    if shape is not None:
        if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
            raise ValueError(f"shape must be (N, T) of positive ints, got {shape!r}")
        single = (Shape2(*map(int, shape)), 0 if seed is None else int(seed))
    seen, failure, _ = drive(
        one,
        pool=[Shape2(*s) for s in BPTT_POOL],
        strategy=st.sampled_from(BPTT_POOL),
        max_examples=max_examples,
        derandomize=derandomize,
        single=single,
    )
    return seen, failure


def _failure_text(failure: Failure, tol: float) -> str:
    """The report of a failed :func:`check_bptt`: where in time ``dx`` departs, a reproduction."""
    hit = (
        locate("dx", failure.got.get("dx"), failure.want["dx"], tol)
        if "dx" in failure.want
        else None
    )
    failure.notes = [] if hit is None else [f"in time: {hit[1]}"]
    repro = (
        f"jaxrnn.testing.check_bptt(cell, forward_fn, backward_fn, ..., "
        f"shape={tuple(failure.shape)}, seed={failure.seed})"
    )
    return report("BPTT", failure, None, tol, repro)


class _Setup(NamedTuple):
    """What every example of one :func:`check_bptt` call shares."""

    cell: Callable
    output: Callable
    reference: Callable  # _reference(cell, output)
    params: Any
    state: Any
    input_size: int
    forward_fn: Callable
    backward_fn: Callable
    tol: float
    convert: Callable


def _problem(c: _Setup, s: Shape2, seed: int) -> tuple:
    """``(params, state0, x, dys)`` of one example, numpy float64."""
    rng = np.random.default_rng(seed)
    p = c.params(rng) if callable(c.params) else _draw(c.params, rng)
    s0 = c.state(rng, s.N) if callable(c.state) else _draw(c.state, rng, batch=s.N)
    x = rng.standard_normal((s.N, s.T, c.input_size))
    y1 = jax.eval_shape(lambda: c.output(c.cell(p, s0, x[:, 0])))
    dys = jax.tree.map(lambda y: rng.standard_normal((s.N, s.T, *y.shape[1:])), y1)
    return jax.tree.map(np.asarray, (p, s0, x, dys))


def _expected(reference: Callable, p, s0, x, dys, N: int, T: int) -> tuple:
    """``(ys, dx, dstate0, dparams)`` of the reference, run padded to at least (4, 64)."""
    Np, Tp = (max(f, 1 << max(n - 1, 0).bit_length()) for n, f in zip((N, T), _FLOORS, strict=True))

    def pad(a, n_time):  # rows (and steps) repeat the last real one: finite, and dys = 0
        widths = [(0, Np - N)] + [(0, Tp - T)] * n_time + [(0, 0)] * (a.ndim - 1 - n_time)
        return np.pad(
            a, widths, mode="edge" if N and T else "constant"
        )  # edge needs a row to repeat

    dys_p = jax.tree.map(
        lambda a: np.pad(a, [(0, Np - N), (0, Tp - T)] + [(0, 0)] * (a.ndim - 2), mode="constant"),
        dys,
    )
    ys, dx, ds0, dp = reference(p, jax.tree.map(lambda a: pad(a, 0), s0), pad(x, 1), dys_p)
    ys = jax.tree.map(lambda a: np.asarray(a)[:N, :T], ys)
    ds0 = jax.tree.map(lambda a: np.asarray(a)[:N], ds0)
    return ys, np.asarray(dx)[:N, :T], ds0, jax.tree.map(np.asarray, dp)


def _one(c: _Setup, s, seed: int) -> tuple:
    """One example: the user's forward, then (if ``ys`` is right) backward; rows or ``Failure``."""
    s = Shape2(*s)
    p, s0, x, dys = _problem(c, s, seed)
    ys, dx, ds0, dp = _expected(c.reference, p, s0, x, dys, s.N, s.T)
    args = [jax.tree.map(lambda a: c.convert(a.copy()), t) for t in (x, s0, p)]
    out = call_user("forward_fn", c.forward_fn, args, {}, s, seed)
    got_ys, cache = unpack("forward_fn", out, 2, "(ys, cache)", s, seed)
    rows, got, want = _compare_tree(got_ys, ys, ("ys", "y", "output(state)"), c.tol, s, seed)
    if all(r.ok for r in rows):
        more, got_b, want_b = _backward_rows(c, cache, dys, (dx, ds0, dp), s, seed)
        rows, got, want = rows + more, got | got_b, want | want_b
    first_failure(rows, got, want, s, seed)
    return tuple(rows)


def _backward_rows(c: _Setup, cache, dys, expected: tuple, s: Shape2, seed: int) -> tuple:
    """``(rows, got, want)`` of ``dx``, ``dstate0...``, ``dparams...`` from the user's backward."""
    dx, ds0, dp = expected
    dys_u = jax.tree.map(lambda a: c.convert(a.copy()), dys)
    grads = call_user("backward_fn", c.backward_fn, [dys_u, cache], {}, s, seed)
    gx, gs0, gp = unpack("backward_fn", grads, 3, "(dx, dstate0, dparams)", s, seed)
    want = {"dx": dx}
    r, got_dx = compare(gx, [dx], "dx", c.tol, s.N, s.T)
    rows, got = [r], {"dx": got_dx}
    for tree, ref, of in ((gs0, ds0, "state0"), (gp, dp, "params")):
        more, g, w = _compare_tree(tree, ref, ("d" + of, "d" + of, of), c.tol, s, seed)
        rows, got, want = rows + more, got | g, want | w
    return rows, got, want


def _identity(state: Any) -> Any:
    return state


def _compare_tree(tree, ref, names: tuple[str, str, str], tol, s: Shape2, seed: int) -> tuple:
    """``(rows, got, want)`` for each leaf of the user's pytree ``tree`` against ``ref``'s.

    ``names``: what ``tree`` is (``"ys"``, ``"dparams"``), the prefix of its rows'
    names and what ``ref`` has the structure of (``"params"``). The containers
    are compared first (lists, tuples and NamedTuples stand for one another),
    then each array, in ``ref``'s order.
    """
    what, prefix, of = names
    mismatch = _structure_mismatch(tree, ref, what, of)
    if mismatch is not None:
        label = "forward_fn" if what == "ys" else "backward_fn"
        raise Failure(f"{label}: {mismatch}: return {what} with the structure of {of}", s, seed)
    want = dict(zip(_names(prefix, ref), jax.tree.leaves(ref), strict=True))
    rows, got = [], {}
    leaves = jax.tree.leaves(tree, is_leaf=_is_tensor)
    for leaf, (name, w) in zip(leaves, want.items(), strict=True):
        r, got[name] = compare(to_float_array(leaf), [w], name, tol, s.N, s.T)
        rows.append(r)
    return rows, got, want


def _is_tensor(a: Any) -> bool:
    return hasattr(a, "detach")  # a torch tensor: one array


def _kind(node: Any) -> str:
    """What a pytree node is, for a report: "an array", "None", "a dict", "a tuple", ..."""
    if node is None:
        return "None"
    container = isinstance(node, (list, tuple, dict))
    if not container and (_is_tensor(node) or jax.tree_util.all_leaves([node])):
        return "an array"
    return f"a {'NamedTuple ' if hasattr(node, '_fields') else ''}{type(node).__name__}"


def _structure_mismatch(got: Any, ref: Any, what: str, of: str) -> str | None:
    """Where the user's pytree ``got`` (called ``what``) and ``ref`` (``of``) differ, or None.

    E.g. "dparams is a dict but params is a tuple", "dstate0[1] has length 1 but
    state0[1] has length 2"; the paths are those of the rows' names.
    """
    got_kind, ref_kind = _kind(got), _kind(ref)
    if "an array" in (got_kind, ref_kind) or "None" in (got_kind, ref_kind):
        return None if got_kind == ref_kind else f"{what} is {got_kind} but {of} is {ref_kind}"
    seqs = isinstance(got, (list, tuple)) and isinstance(ref, (list, tuple))
    if seqs and len(got) != len(ref):
        return f"{what} has length {len(got)} but {of} has length {len(ref)}"
    if isinstance(got, dict) and isinstance(ref, dict) and set(got) != set(ref):
        mine, theirs = (", ".join(sorted(map(repr, d))) for d in (got, ref))
        return f"{what} has the keys {mine} but {of} has {theirs}"
    keys, ref_kids, ref_def = _children(ref)
    _, got_kids, got_def = _children(got)
    if not seqs and got_def != ref_def:
        return f"{what} is {got_kind} but {of} is {ref_kind}"
    for key, g, r in zip(keys, got_kids, ref_kids, strict=True):
        found = _structure_mismatch(g, r, what + key, of + key)
        if found is not None:
            return found
    return None


def _children(node: Any) -> tuple[list[str], list, Any]:
    """One level of a pytree node: its children's keys (``"[0]"``, ``"['W']"``), the
    children, and the one-level structure."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda a: a is not node)
    return [jax.tree_util.keystr(p) for p, _ in flat], [a for _, a in flat], treedef
