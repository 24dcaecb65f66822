"""The sequence forward pass as a ``jax.lax.scan`` over time: the document's ``rnn_forward``."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._checks import (
    check_carry_weights,
    check_lengths,
    check_rnn_args,
    check_truncation,
)
from ._lengths import valid_mask
from ._types import RNNCache

Array = jax.Array


def check_sequence_args(
    fn: str, x: object, h0: object, Wx: object, Wh: object, b: object
) -> tuple[Array, Array, Array, Array, Array]:
    """Validates ``x: (N, T, D)``, ``h0: (N, H)``, ``Wx: (D, H)``, ``Wh: (H, H)``, ``b: (H,)``.

    Returns the arguments as JAX arrays of one float dtype.
    """
    return check_rnn_args(fn, x, h0, Wx, Wh, b, x_layout="N, T, D", h_name="h0")


def scan_time(step, init, xs, *, reverse: bool = False):
    """``jax.lax.scan`` over the leading (time) axis that also handles T = 0.

    ``lax.scan`` cannot run a zero-length loop eagerly (under
    ``jax.disable_jit``); for T = 0 the carry is returned unchanged and the
    stacked outputs are empty arrays of the shapes ``step`` would produce.
    """
    T = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if T:
        return jax.lax.scan(step, init, xs, reverse=reverse)
    x_spec = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
    _, y_spec = jax.eval_shape(step, init, x_spec)
    return init, jax.tree_util.tree_map(lambda s: jnp.zeros((0, *s.shape), s.dtype), y_spec)


def loop_time(step, init, T: int, *, reverse: bool = False):
    """``for t in range(T)`` (or reversed): ``carry = step(t, carry)``; returns the carry.

    A ``lax.fori_loop`` with static bounds (which JAX lowers to a ``lax.scan``)
    whose index is the step's time ``t``, so the body can read and write slice
    ``[:, t]`` of batch-major ``(N, T, ...)`` arrays in place: no time-major
    transposed copies. T = 0 returns ``init`` (``disable_jit`` cannot run a
    zero-length loop).
    """
    if T == 0:
        return init
    if reverse:
        return jax.lax.fori_loop(0, T, lambda i, carry: step(T - 1 - i, carry), init)
    return jax.lax.fori_loop(0, T, step, init)


def index_time(a: Array, t) -> Array:
    """``a[:, t]`` of a batch-major ``(N, T, ...)`` array, for a traced ``t``."""
    return jax.lax.dynamic_index_in_dim(a, t, axis=1, keepdims=False, allow_negative_indices=False)


def update_time(a: Array, a_t: Array, t) -> Array:
    """``a.at[:, t].set(a_t)`` for a traced ``t`` (in place inside a loop)."""
    return jax.lax.dynamic_update_index_in_dim(a, a_t, t, axis=1, allow_negative_indices=False)


def scan_hidden(x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, activation: str) -> Array:
    """The recurrence of MATH.md §1 over all steps; returns ``h: (N, T, H)``.

    The input projection ``x @ Wx + b`` is one ``(N*T, D) @ (D, H)`` matmul on
    the rows as stored (no transpose) outside the loop; the loop then overwrites
    that buffer in place, step t reading ``[:, t]`` and writing ``h_t`` there, so
    the forward pass holds one ``(N, T, H)`` buffer. Only ``h_{t-1} @ Wh`` and
    ``f`` run inside the loop.
    """
    f = get_activation(activation).fn
    N, T, D = x.shape
    H = Wh.shape[0]
    xw = (x.reshape(N * T, D) @ Wx + b[None]).reshape(N, T, H)  # §1: x_t @ Wx + b for every t

    def step(t, carry):
        h_prev, h = carry  # h[:, :t] = h_1..h_t-1 (done), h[:, t:] = x Wx + b (to do)
        h_t = f(index_time(h, t) + h_prev @ Wh)  # §1: h_t = f(a_t), a_t = x_t Wx + h_{t-1} Wh + b
        return h_t, update_time(h, h_t, t)

    _, h = loop_time(step, (h0, xw), T)
    return h  # (N, T, H)


def scan_hidden_masked(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, activation: str, lengths: Array
) -> Array:
    """:func:`scan_hidden` for variable lengths; returns ``h: (N, T, H)``, zero at padding.

    With ``m_t = t < lengths`` (per sequence): the carried state is
    ``c_t = m_t ? f(a_t) : c_{t-1}`` (frozen after the last valid step) and the
    output ``h_t = m_t ? f(a_t) : 0``.
    """
    f = get_activation(activation).fn
    N, T, D = x.shape
    H = Wh.shape[0]
    x_tm = x.swapaxes(0, 1).reshape(T * N, D)  # (T*N, D), time-major rows
    xw = (x_tm @ Wx + b[None]).reshape(T, N, H)  # §1: x_t @ Wx + b for every t
    m = valid_mask(lengths, T).T[:, :, None]  # (T, N, 1)

    def step(h_prev, xs):
        xw_t, m_t = xs
        h_t = f(xw_t + h_prev @ Wh)  # §1: h_t = f(a_t)
        return jnp.where(m_t, h_t, h_prev), jnp.where(m_t, h_t, jnp.zeros_like(h_t))

    _, h_tm = scan_time(step, h0, (xw, m))  # (T, N, H)
    return h_tm.swapaxes(0, 1)  # (N, T, H)


def check_lengths_eagerly(fn: str, x: object, lengths: object) -> None:
    """Value-checks concrete ``lengths`` against ``x: (N, T, D)`` before entering ``jit``."""
    shape = jnp.shape(x)
    if len(shape) == 3:
        check_lengths(fn, lengths, shape[0], shape[1])


def check_call(fn: str, x, h0, Wx, Wh, b, lengths, carry_weights, activation: str) -> tuple:
    """The trace-time checks shared by :func:`rnn_forward` and :func:`jaxrnn.rnn`: the
    arrays (shapes, dtypes), the activation, the lengths and the carry weights
    (``truncation`` is checked before ``jit``, which hashes it as a static argument).
    Returns ``(x, h0, Wx, Wh, b, lengths, carry_weights)`` as checked arrays."""
    get_activation(activation)
    x, h0, Wx, Wh, b = check_sequence_args(fn, x, h0, Wx, Wh, b)
    N, T = x.shape[:2]
    if lengths is not None:
        lengths = check_lengths(fn, lengths, N, T)  # values too, when concrete
    if carry_weights is not None:
        carry_weights = check_carry_weights(fn, carry_weights, T, x.dtype)
    return x, h0, Wx, Wh, b, lengths, carry_weights


def hidden_states(x, h0, Wx, Wh, b, activation: str, lengths) -> Array:
    """``h: (N, T, H)`` by the plain loop, or the masked scan when ``lengths`` is given."""
    if lengths is None:
        return scan_hidden(x, h0, Wx, Wh, b, activation)  # the default path
    return scan_hidden_masked(x, h0, Wx, Wh, b, activation, lengths)


@partial(jax.jit, static_argnames=("activation", "truncation"))
def _rnn_forward(x, h0, Wx, Wh, b, lengths, carry_weights, *, activation, truncation):
    args = check_call("rnn_forward", x, h0, Wx, Wh, b, lengths, carry_weights, activation)
    x, h0, Wx, Wh, b, lengths, carry_weights = args
    h = hidden_states(x, h0, Wx, Wh, b, activation, lengths)
    return h, RNNCache(x, h0, Wx, Wh, h, activation, lengths, truncation, carry_weights)


def rnn_forward(
    x: Array,
    h0: Array,
    Wx: Array,
    Wh: Array,
    b: Array,
    *,
    activation: str = "tanh",
    lengths: Array | None = None,
    truncation: int | None = None,
    carry_weights: Array | None = None,
) -> tuple[Array, RNNCache]:
    """Runs the RNN over a whole sequence with ``jax.lax.scan``.

    Implements MATH.md §1 for t = 1..T::

        a_t = x_t @ Wx + h_{t-1} @ Wh + b
        h_t = f(a_t)

    Args:
      x: ``(N, T, D)`` inputs; T = 0 and N = 0 are allowed.
      h0: ``(N, H)`` initial hidden state.
      Wx: ``(D, H)`` input-to-hidden weights (the document's ``U^T``).
      Wh: ``(H, H)`` hidden-to-hidden weights (the document's ``W^T``).
      b: ``(H,)`` bias.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.
      lengths: optional ``(N,)`` integers in ``[0, T]``: step t of sequence n is
        valid when ``t < lengths[n]``. The state freezes after the last valid step
        and ``h`` is zero at padded steps; :func:`jaxrnn.final_state` gives each
        sequence's last valid state (``h0`` for length 0). Concrete values outside
        ``[0, T]`` raise ``ValueError``; under ``jax.jit`` see :func:`jaxrnn.check_lengths`.
      truncation: optional chunk length k >= 1 for truncated BPTT. The forward
        values do not change; it is stored in the cache and makes
        :func:`rnn_backward` stop the gradient at t = k, 2k, ... (MATH.md §3).
      carry_weights: optional ``(T,)`` factors ``ξ_t`` on the gradient that flows
        from step t back to step t-1 (randomized truncation, Tallec & Ollivier 2017;
        see :func:`jaxrnn.randomized_truncation`). Forward values do not change.
        Zeros act as cuts; combined with ``truncation``, both apply.

    Returns:
      ``(h, cache)``: ``h`` ``(N, T, H)`` holds ``h_1..h_T``; ``cache`` is an
      :class:`RNNCache` pytree (inputs and hidden states) for :func:`rnn_backward`.
      Both paths are jit-compiled (``activation`` and ``truncation`` are static).
    """
    check_truncation("rnn_forward", truncation)  # before jit hashes it as a static argument
    if lengths is not None:  # concrete length values are checked before jit traces them
        check_lengths_eagerly("rnn_forward", x, lengths)
    return _rnn_forward(
        x, h0, Wx, Wh, b, lengths, carry_weights, activation=activation, truncation=truncation
    )
