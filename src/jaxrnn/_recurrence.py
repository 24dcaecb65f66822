"""The recurrence engine: one forward loop and one backward loop over time.

Every recurrent computation in jaxrnn (a layer's forward pass, its hand-derived
BPTT, and the layers and options built on them) runs through the two loops
here. Both are batch-major and update in place: step t reads and writes slice
``[:, t]`` of ``(N, T, ...)`` buffers inside a ``lax.fori_loop`` with static
bounds (which JAX lowers to a ``lax.scan``), so no time-major copy is ever made.

**The cell.** What a recurrence computes per step is a :class:`Cell`, a
NamedTuple of pure functions; the loops know nothing else about it:

- ``project(params, x) -> buf``: the input projection of every step at once,
  one ``(N*T, D) @ (D, G)`` matmul outside the loop, as a pytree of
  ``(N, T, ...)`` buffers;
- ``step(params, buf_t, state) -> (state, buf_t)``: one step forward (MATH.md
  §1). It reads step t's slice of the buffers (its projected input) and
  returns the slice to store in its place: what its backward step needs (for
  the vanilla RNN, ``h_t`` overwrites ``x_t Wx + b``);
- ``output(buf) -> h``: the ``(N, T, H)`` output held in the filled buffers;
- ``backward_params(params)``: what every backward step reads, prepared once
  outside the loop (e.g. ``Wh^T`` materialised);
- ``step_backward(bparams, buf_t, prev_buf_t, dstate, dh_t) -> (dprev_state, dbuf_t)``:
  one step of BPTT (§3): the error ``dstate`` arriving from t+1 plus the output's
  own ``dh_t`` give the step's δ (stored as ``dbuf_t``) and the error passed to
  t-1. ``prev_buf_t`` is step t-1's stored slice (the initial state's at t = 0),
  read only if ``needs_prev`` (a gated cell needs ``c_{t-1}``; the RNN does not);
- ``initial_buf(state0) -> buf_t``: the initial state laid out as a stored slice;
- ``zero_dbuf(buf) -> dbuf``: zeroed ``(N, T, ...)`` buffers for the δ of every step;
- ``param_grads(params, x, state0, buf, dbuf) -> (dx, dparams)``: §5 after the
  recursion, as single matmuls over all N*T rows.

A gated cell (LSTM, GRU) is another ``Cell`` with pytree states and buffers;
the loops, the options and the layer walk of ``_stack.py`` stay as they are.

**The options** are static terms of the same loop body (``Options``), each
present only when used, so the default path pays for nothing:

- ``lengths`` (N,): ``m_t = t < lengths``; forward: the state freezes and the
  stored slice is zero where ``m_t`` is false; backward: δ is zero there and the
  error passes through the frozen state unchanged;
- ``truncation`` k (static): the error passed from t to t-1 is zero at
  t = k, 2k, ... (§3, truncated BPTT);
- ``carry_weights`` ξ (T,): that error is scaled by ξ_t (randomized truncation).

**Windows and segments.** Both loops run over a window of steps that starts
from a given state (forward) or with a given error arriving from after it
(backward). The full-store BPTT is one window, the whole sequence. A
memory-bounded BPTT (MATH.md §8) keeps only the state entering each segment of
k steps (:func:`loop_segments` walks them) and, going back segment by segment,
re-runs :func:`forward_window` on one segment and then :func:`backward_window`
on it with the error carried in from the segment after: the same two loops,
called per segment. :func:`window_options` restates the options in the
segment's own time (lengths shifted, truncation cuts and ξ as the segment's
carry weights), so a segment is an ordinary sequence to every caller; the
model's whole-network checkpointing (``_segmented.py``) segments all layers at once
the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _sharding as sh
from ._compat import NO_NEGATIVE_INDICES

Array = jax.Array
tree_map = jax.tree_util.tree_map


class Cell(NamedTuple):
    """The per-step math of one recurrence (see the module docstring)."""

    project: Callable
    step: Callable
    output: Callable
    backward_params: Callable
    step_backward: Callable
    initial_buf: Callable
    zero_dbuf: Callable
    param_grads: Callable
    needs_prev: bool = False


def gated_cell(project, step, step_backward, initial_buf, param_grads) -> Cell:
    """The :class:`Cell` of a gated cell (LSTM, GRU), whose buffers are a NamedTuple of
    slots with ``gates`` (the projected input before step t, the gate values after it,
    ``(N, T, G*H)``) and ``h`` (the outputs): δ is stored per gate, ``Wh^T`` is
    materialised once, and the backward step reads step t-1's slots."""
    return Cell(
        project=project,
        step=step,
        output=lambda buf: buf.h,
        backward_params=lambda p: p.Wh.T,  # (G*H, H), materialised once
        step_backward=step_backward,
        initial_buf=initial_buf,
        zero_dbuf=lambda buf: jnp.zeros_like(buf.gates),
        param_grads=param_grads,
        needs_prev=True,
    )


class Options(NamedTuple):
    """The optional terms of the loops; ``None`` means absent (no cost)."""

    lengths: Array | None = None  # (N,) int32
    truncation: int | None = None  # static chunk length k
    carry_weights: Array | None = None  # (T_total,) ξ_t
    checkpoint: int | None = None  # static segment length: store only segment-start states


def index_time(a: Array, t) -> Array:
    """``a[:, t]`` of a batch-major ``(N, T, ...)`` array, for a traced ``t``."""
    return jax.lax.dynamic_index_in_dim(a, t, axis=1, keepdims=False, **NO_NEGATIVE_INDICES)


def update_time(a: Array, a_t: Array, t) -> Array:
    """``a.at[:, t].set(a_t)`` for a traced ``t`` (in place inside a loop)."""
    return jax.lax.dynamic_update_index_in_dim(a, a_t, t, axis=1, **NO_NEGATIVE_INDICES)


def loop_time(step: Callable, init: Any, T: int, *, reverse: bool = False) -> Any:
    """``for t in range(T)`` (or reversed): ``carry = step(t, carry)``; returns the carry.

    A ``lax.fori_loop`` with static bounds; T = 0 returns ``init`` (``disable_jit``
    cannot run a zero-length loop).
    """
    if T == 0:
        return init
    if reverse:
        return jax.lax.fori_loop(0, T, lambda i, carry: step(T - 1 - i, carry), init)
    return jax.lax.fori_loop(0, T, step, init)


def _select(m: Array, a: Any, b: Any) -> Any:
    """``where(m, a, b)`` leafwise, ``m`` broadcast over each leaf's trailing axes."""
    return tree_map(lambda u, v: jnp.where(m.reshape(m.shape + (1,) * (u.ndim - 1)), u, v), a, b)


def _valid(opts: Options, t) -> Array | None:
    """``m_t = t < lengths``: ``(N,)`` bool, or None without lengths."""
    return None if opts.lengths is None else t < opts.lengths


def forward_window(cell: Cell, params: Any, buf: Any, state: Any, opts: Options) -> tuple[Any, Any]:
    """The forward recurrence over one window; returns ``(final state, filled buf)``.

    ``buf`` holds the window's projected inputs (``cell.project``); step t
    overwrites its slice with what the cell stores.
    """
    T = jax.tree_util.tree_leaves(buf)[0].shape[1]

    def body(t, carry):
        state, buf = carry
        new_state, buf_t = cell.step(params, tree_map(lambda a: index_time(a, t), buf), state)
        m = _valid(opts, t)
        if m is not None:  # frozen state, zero output at padding
            new_state = _select(m, new_state, state)
            buf_t = _select(m, buf_t, tree_map(jnp.zeros_like, buf_t))
        return new_state, tree_map(lambda a, a_t: update_time(a, a_t, t), buf, buf_t)

    return loop_time(body, (state, buf), T)


def backward_window(
    cell: Cell,
    bparams: Any,
    buf: Any,
    first_prev: Any,
    dh: Array,
    dstate: Any,
    opts: Options,
) -> tuple[Any, Any]:
    """BPTT over one window (§3); returns ``(error into the window's initial state, δ buf)``.

    Args:
      buf: the window's filled buffers (from :func:`forward_window`).
      first_prev: the stored slice standing for the step before the window (``cell.initial_buf``
        of the window's initial state), read by cells with ``needs_prev``.
      dh: ``(N, T, H)`` upstream gradient of the window's outputs.
      dstate: the error arriving from the step after the window (zeros at the end).
    """
    T = dh.shape[1]
    k, xi = opts.truncation, opts.carry_weights

    def body(t, carry):
        dnext, dbuf = carry
        buf_t = tree_map(lambda a: index_time(a, t), buf)
        prev = None
        if cell.needs_prev:
            prev_t = tree_map(lambda a: index_time(a, jnp.maximum(t - 1, 0)), buf)
            prev = tree_map(lambda a, b: jnp.where(t == 0, a, b), first_prev, prev_t)
        dprev, dbuf_t = cell.step_backward(bparams, buf_t, prev, dnext, index_time(dh, t))
        m = _valid(opts, t)
        if m is not None:  # §3 masked: δ = 0 at padding, the error passes the frozen state
            dbuf_t = _select(m, dbuf_t, tree_map(jnp.zeros_like, dbuf_t))
            dprev = _select(m, dprev, dnext)
        if xi is not None:  # §3: the error from t to t-1 scaled by ξ_t
            xi_t = xi[t]
            dprev = tree_map(lambda d: d * xi_t, dprev)
        if k is not None:  # §3: ... and cut where a chunk starts
            cut = (t % k == 0) & (t > 0)
            dprev = tree_map(lambda d: jnp.where(cut, jnp.zeros_like(d), d), dprev)
        return dprev, tree_map(lambda a, a_t: update_time(a, a_t, t), dbuf, dbuf_t)

    return loop_time(body, (dstate, cell.zero_dbuf(buf)), T, reverse=True)


def zeros_state(state: Any) -> Any:
    """Zeros with the structure of ``state`` (the error arriving after the last step)."""
    return tree_map(jnp.zeros_like, state)


def align(x: Array, state: Any, params: Any, opts: Options) -> tuple[Array, Any, Any, Options]:
    """The engine's inputs typed alike where they are sharded (``_sharding.py``): ``state``
    (leaves ``(N, ...)``) laid out along ``x``'s batch axis, and every array varying over
    the ``shard_map`` axes that any of them varies over; the identity otherwise."""
    lengths, xi = opts.lengths, opts.carry_weights
    x, state, params, lengths, xi = sh.align(x, state, params, lengths, xi)
    return x, state, params, opts._replace(lengths=lengths, carry_weights=xi)


def forward(cell: Cell, params: Any, x: Array, state0: Any, opts: Options) -> tuple[Any, Any, Any]:
    """The whole sequence ``x: (N, T, D)``: ``(final state, h, saved)``.

    ``h: (N, T, H)`` is the output; ``saved`` is what :func:`backward` needs besides
    ``x`` and ``state0``: every step's buffer (full store), or with
    ``opts.checkpoint = k`` only the state entering each segment of k steps.
    """
    x, state0, params, opts = align(x, state0, params, opts)
    if opts.checkpoint is not None:
        return forward_segments(cell, params, x, state0, opts)
    stateT, buf = forward_window(cell, params, cell.project(params, x), state0, opts)
    return stateT, cell.output(buf), buf


def backward(
    cell: Cell,
    params: Any,
    x: Array,
    state0: Any,
    saved: Any,
    dh: Array,
    opts: Options,
    dstate: Any = None,
) -> tuple[Array, Any, Any]:
    """BPTT (§3, then §5) from :func:`forward`'s ``saved``: ``(dx, dstate0, dparams)``.

    ``dstate``: the error arriving in the final state from after the sequence (a
    later segment of the whole model, §8); zeros when None.
    """
    dstate = zeros_state(state0) if dstate is None else dstate
    states = (state0, dstate, dh)  # leaves (N, ...): laid out along x's batch axis
    x, (state0, dstate, dh), (params, saved), opts = align(x, states, (params, saved), opts)
    if opts.checkpoint is not None:
        return backward_segments(cell, params, x, state0, saved, dh, opts, dstate)
    bparams = cell.backward_params(params)
    first_prev = cell.initial_buf(state0)
    dstate0, dbuf = backward_window(cell, bparams, saved, first_prev, dh, dstate, opts)
    dx, dparams = cell.param_grads(params, x, state0, saved, dbuf)
    return dx, dstate0, dparams


def time_slice(a: Array, t0, size: int) -> Array:
    """``a[:, t0:t0+size]`` for a traced ``t0``."""
    return jax.lax.dynamic_slice_in_dim(a, t0, size, axis=1)


def put_time(a: Array, piece: Array, t0) -> Array:
    """``a.at[:, t0:t0+piece.shape[1]].set(piece)`` for a traced ``t0``."""
    return jax.lax.dynamic_update_slice_in_dim(a, piece, t0, axis=1)


def loop_segments(T: int, k: int, run: Callable, carry: Any, *, reverse: bool = False) -> Any:
    """``carry = run(i, t0, size, carry)`` for the segments of k steps covering T steps.

    Segment i starts at ``t0 = i*k``; ``T // k`` full segments run in a
    ``lax.fori_loop`` (traced ``i``, ``t0``), then a last one of ``T % k`` steps
    (static) if T is not a multiple of k; with ``reverse`` the last comes first.
    """
    S, r = divmod(T, k)

    def full(c):
        return loop_time(lambda i, c: run(i, i * k, k, c), c, S, reverse=reverse)

    def last(c):
        return run(S, S * k, r, c) if r else c

    return full(last(carry)) if reverse else last(full(carry))


def window_options(opts: Options, t0, size: int, dtype) -> Options:
    """``opts`` for the steps ``[t0, t0 + size)``, in the window's own time ``0..size-1``.

    ``t < lengths - t0`` is the window's mask; a truncation cut at a global step
    ``t0 + t = jk`` becomes a zero carry weight there, and ξ is sliced, so the
    window is an ordinary sequence (same δ, step for step).
    """
    lengths = None if opts.lengths is None else jnp.clip(opts.lengths - t0, 0, size)
    if opts.truncation is None and opts.carry_weights is None:
        return Options(lengths)
    t = t0 + jnp.arange(size)
    xi = jnp.ones((size,), dtype)
    if opts.carry_weights is not None:
        xi = jax.lax.dynamic_slice_in_dim(opts.carry_weights, t0, size)
    if opts.truncation is not None:
        cut = (t % opts.truncation == 0) & (t > 0)
        xi = jnp.where(cut, jnp.zeros_like(xi), xi)
    return Options(lengths, None, xi)


def forward_segments(
    cell: Cell, params: Any, x: Array, state0: Any, opts: Options
) -> tuple[Any, Array, Any]:
    """:func:`forward` with ``opts.checkpoint = k``: ``(final state, h, boundaries)``.

    ``boundaries`` stacks the state entering each segment (leading axis: segment),
    ``ceil(T / k)`` states in all; no per-step buffer outlives its segment.
    """
    N, T = x.shape[:2]
    k = opts.checkpoint
    assert k is not None, "forward_segments needs opts.checkpoint"
    out = jax.eval_shape(lambda xs: cell.output(cell.project(params, xs)), x[:, : min(T, 1)])
    n_seg = -(-T // k)
    bounds = tree_map(lambda s: sh.zeros(s, (n_seg, *s.shape)), state0)

    def run(i, t0, size, carry):
        state, h, bounds = carry
        bounds = tree_map(lambda B, s: B.at[i].set(s), bounds, state)  # §8: keep s_j only
        buf = cell.project(params, time_slice(x, t0, size))
        wopts = window_options(opts, t0, size, x.dtype)
        state, buf = forward_window(cell, params, buf, state, wopts)
        return state, put_time(h, cell.output(buf), t0), bounds

    h = sh.zeros(x, (N, T, *out.shape[2:]), out.dtype)
    return loop_segments(T, k, run, (state0, h, bounds))


def backward_segments(
    cell: Cell,
    params: Any,
    x: Array,
    state0: Any,
    bounds: Any,
    dh: Array,
    opts: Options,
    dstate: Any,
) -> tuple[Array, Any, Any]:
    """:func:`backward` from segment boundaries: ``(dx, dstate0, dparams)``.

    Last segment first: recompute the segment's forward from its stored initial
    state (:func:`forward_window`), run its BPTT with the error carried in from the
    segment after it (:func:`backward_window`), then its part of §5 (``dx`` rows
    and the weight-gradient sums), so only one segment's buffers exist at a time.
    """
    bparams = cell.backward_params(params)

    def run(i, t0, size, carry):
        dstate, dx, dparams = carry
        state_in = tree_map(lambda B: B[i], bounds)
        xs, wopts = time_slice(x, t0, size), window_options(opts, t0, size, x.dtype)
        _, buf = forward_window(cell, params, cell.project(params, xs), state_in, wopts)  # §8
        first_prev = cell.initial_buf(state_in)
        dhs = time_slice(dh, t0, size)
        dstate, dbuf = backward_window(cell, bparams, buf, first_prev, dhs, dstate, wopts)  # §8
        dxs, dp = cell.param_grads(params, xs, state_in, buf, dbuf)  # §5 on this segment
        return dstate, put_time(dx, dxs, t0), tree_map(jnp.add, dparams, dp)

    k = opts.checkpoint
    assert k is not None, "backward_segments needs opts.checkpoint"
    carry = (dstate, jnp.zeros_like(x), tree_map(jnp.zeros_like, params))
    dstate0, dx, dparams = loop_segments(x.shape[1], k, run, carry, reverse=True)
    return dx, dstate0, dparams
