"""Variable-length sequences: the validity mask, per-sequence reversal, final states.

A batch of sequences of different lengths is stored padded to a common T; the
``(N,)`` integer ``lengths`` says how many leading steps of each row are real.
Step t of sequence n is valid when ``t < lengths[n]``. The RNN functions that
take ``lengths=`` freeze the hidden state after the last valid step, write
zeros at padded steps and send no gradient into the padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from ._checks import check_lengths as _check_lengths
from ._checks import is_concrete

Array = jax.Array


def valid_mask(lengths: Array, T: int) -> Array:
    """``mask[n, t] = t < lengths[n]``: ``(N, T)`` bool from ``(N,)`` integer lengths."""
    return mask(_check_lengths("valid_mask", lengths, None, T), T)


def mask(lengths: Array, T: int) -> Array:
    """:func:`valid_mask` for checked ``(N,)`` int32 lengths (internal: no checks)."""
    return jnp.arange(T, dtype=jnp.int32)[None, :] < lengths[:, None]


def reverse_within_lengths(x: Array, lengths: Array | None) -> Array:
    """Reverses each sequence's valid steps in time, leaving its padding in place.

    ``out[n, t] = x[n, lengths[n] - 1 - t]`` for ``t < lengths[n]`` and ``x[n, t]``
    otherwise (a plain ``x[:, ::-1]`` when ``lengths`` is None). The map is a
    permutation of the time axis that is its own inverse, so it also undoes itself
    and is its own transpose (the backward pass of a reversal is the same reversal).

    Args:
      x: ``(N, T, ...)``.
      lengths: ``(N,)`` integers in ``[0, T]``, or None.

    Returns:
      ``(N, T, ...)``, the same dtype as ``x``.
    """
    if lengths is None:
        return jnp.flip(x, axis=1)
    return reverse(x, _check_lengths("reverse_within_lengths", lengths, *x.shape[:2]))


def reverse(x: Array, lengths: Array | None) -> Array:
    """:func:`reverse_within_lengths` for checked int32 lengths (internal: no checks)."""
    if lengths is None:
        return jnp.flip(x, axis=1)
    N, T = x.shape[:2]
    lengths = jnp.clip(lengths, 0, T)  # unchecked traced values act as clipped (see check_lengths)
    t = jnp.arange(T, dtype=jnp.int32)[None, :]  # (1, T)
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (N, T)
    idx = idx.reshape(N, T, *([1] * (x.ndim - 2)))
    return jnp.take_along_axis(x, idx, axis=1)


def final_state(h: Array, h0: Array, lengths: Array | None = None) -> Array:
    """The hidden state after each sequence's last valid step: ``h_{len}`` (``h0`` for length 0).

    Args:
      h: ``(N, T, H)`` hidden states from :func:`jaxrnn.rnn_forward` or :func:`jaxrnn.rnn`.
      h0: ``(N, H)`` the initial state passed to that call.
      lengths: ``(N,)`` the lengths passed to that call, or None (every sequence has T steps).

    Returns:
      ``(N, H)``: ``h[n, lengths[n] - 1]``, or ``h0[n]`` where ``lengths[n] == 0``
      (``h[:, T-1]``, or ``h0`` when T = 0, without lengths). This is the ``h0`` to
      pass to the next call when a long sequence is processed chunk by chunk. (For an
      LSTM the state also holds ``c``, which ``h`` does not show: use the final states
      that :func:`jaxrnn.stack_forward` returns, ``[h | c]``.)
    """
    if lengths is not None:
        lengths = _check_lengths("final_state", lengths, *h.shape[:2])
    return last_state(h, h0, lengths)


def last_state(h: Array, h0: Array, lengths: Array | None) -> Array:
    """:func:`final_state` for checked int32 lengths (internal: no checks)."""
    T = h.shape[1]
    if lengths is None:
        return h[:, T - 1] if T else h0
    if not T:
        return h0
    idx = jnp.clip(lengths - 1, 0, T - 1)[:, None, None]  # (N, 1, 1)
    last = jnp.take_along_axis(h, idx, axis=1)[:, 0]  # (N, H)
    return jnp.where((lengths > 0)[:, None], last, h0)


def check_lengths(lengths: Array, T: int) -> Array:
    """Checks ``0 <= lengths <= T``, also under ``jax.jit`` when wrapped in ``checkify``.

    With concrete values this raises ``ValueError`` at once, like every function
    that takes ``lengths=``. Under ``jax.jit`` the values are unknown at trace
    time and the library itself does not check them: a negative length then acts
    as 0 and a length above T as T (the mask is ``t < length``). To check traced
    values, call this inside the function and wrap it with ``checkify``::

        from jax.experimental import checkify

        def f(x, lengths):
            jaxrnn.check_lengths(lengths, x.shape[1])
            return jaxrnn.rnn(x, h0, Wx, Wh, b, lengths=lengths)

        err, h = jax.jit(checkify.checkify(f))(x, lengths)
        err.throw()  # ValueError-like JaxRuntimeError naming the bad lengths

    (Calling it on traced values without ``checkify.checkify`` is an error.)

    Args:
      lengths: ``(N,)`` integers.
      T: the padded sequence length.

    Returns:
      ``lengths`` as a JAX array.
    """
    if is_concrete(lengths):
        return _check_lengths("check_lengths", lengths, None, T)  # values read with numpy
    arr = _check_lengths("check_lengths", lengths, None, T)  # shape and dtype of a tracer
    if arr.size:
        checkify.check(
            jnp.all((arr >= 0) & (arr <= T)),
            f"lengths must lie in [0, T] = [0, {T}], got min {{lo}}, max {{hi}}",
            lo=arr.min(),
            hi=arr.max(),
        )
    return arr
