"""The naive scans: each cell's forward pass as a JAX user would write it (``lax.scan``,
the input projection inside the loop, no ``custom_vjp``), for ``jax.grad`` to
differentiate by plain autodiff.

They are the model's ``grad="autodiff"`` path and the oracle the hand-derived BPTT is
tested against (:mod:`jaxrnn.reference` re-exports them). Their signatures are the
structured form's (:func:`jaxrnn.rnn`, :func:`jaxrnn.lstm`, :func:`jaxrnn.gru`): the state
is the cell's own pytree, ``return_state=True`` adds the final state. No validation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._activations import get_activation

Array = jax.Array


def scan_cell(step, x, state0, out, lengths=None, truncation=None, carry_weights=None):
    """The naive ``lax.scan`` of any cell, ``state_t = step(state_{t-1}, x_t)``, output
    ``out(state_t)``, with the options of :func:`scan_rnn` (lengths freeze the state
    and zero the output; truncation and ξ act on the carried state through
    ``stop_gradient``). Returns ``(outputs (N, T, H), final state)``."""
    N, T = x.shape[:2]
    t = jnp.arange(T)
    cut = (t % truncation == 0) & (t > 0) if truncation else jnp.zeros((T,), dtype=bool)
    if lengths is None:
        m = jnp.ones((T, N, 1), dtype=bool)
    else:
        lengths = jnp.asarray(lengths).astype(jnp.int32)
        m = (jnp.arange(T, dtype=jnp.int32)[:, None] < lengths[None, :])[:, :, None]
    xi = jnp.ones((T,), x.dtype) if carry_weights is None else carry_weights

    def body(s, xs):
        x_t, m_t, cut_t, xi_t = xs
        sg = jax.lax.stop_gradient(s)
        if carry_weights is not None:
            s = jax.tree.map(lambda a, b: b + xi_t * (a - b), s, sg)
        if truncation:
            s = jax.tree.map(lambda a, b: jnp.where(cut_t, b, a), s, sg)
        new = step(s, x_t)
        y = out(new)
        if lengths is None:
            return new, y
        return jax.tree.map(lambda a, b: jnp.where(m_t, a, b), new, s), jnp.where(
            m_t, y, jnp.zeros_like(y)
        )

    if T == 0:
        return jnp.zeros((N, 0, out(state0).shape[-1]), dtype=x.dtype), state0
    sT, h = jax.lax.scan(body, state0, (x.swapaxes(0, 1), m, cut, xi))  # (T, N, H)
    return h.swapaxes(0, 1), sT


def _rnn_step(Wx, Wh, b, activation="tanh"):
    f = get_activation(activation).fn
    return lambda h_prev, x_t: f(x_t @ Wx + h_prev @ Wh + b[None])  # §1


def _lstm_step(Wx, Wh, b, activation="tanh"):
    def step(s, x_t):
        h, c = s
        i, f, o, g = jnp.split(x_t @ Wx + h @ Wh + b[None], 4, axis=-1)  # §9
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    return step


def _gru_step(Wx, Wh, bx, bh, activation="tanh"):
    def step(h, x_t):
        xr, xz, xn = jnp.split(x_t @ Wx + bx[None], 3, axis=-1)  # §10
        hr, hz, hn = jnp.split(h @ Wh + bh[None], 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1 - z) * n + z * h

    return step


def _scan(step, x, state0, out, options, return_state):
    h, sT = scan_cell(step, x, state0, out, **options)
    return (h, sT) if return_state else h


def scan_rnn(
    x, state0, Wx, Wh, b, activation="tanh", *, lengths=None, truncation=None,
    carry_weights=None, return_state=False,
):  # fmt: skip
    """Naive JAX forward, for autodiff: ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)`` (MATH.md §1).

    x: (N, T, D), state0 = h0: (N, H) -> h: (N, T, H) (and ``h_T`` with
    ``return_state``). No validation, no custom_vjp: ``jax.grad`` of a loss of this
    function is plain reverse-mode autodiff.

    ``lengths`` (N,): step t of row n is valid when ``t < lengths[n]``; the
    carried state freezes after the last valid step and the output is zero at
    padded steps. ``truncation`` k: ``lax.stop_gradient`` on the carried state
    entering steps t = k, 2k, ... (the definition of truncated BPTT that
    :func:`jaxrnn.rnn_backward` is tested against); forward values are unchanged.
    ``carry_weights`` ξ (T,): the state entering step t becomes
    ``sg(h) + ξ_t (h - sg(h))``, which scales the gradient through it by ξ_t.
    """
    options = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights)
    return _scan(_rnn_step(Wx, Wh, b, activation), x, state0, lambda h: h, options, return_state)


def scan_lstm(
    x, state0, Wx, Wh, b, *, activation="tanh", lengths=None, truncation=None,
    carry_weights=None, return_state=False,
):  # fmt: skip
    """Naive JAX LSTM forward for autodiff (§9): ``state0`` is ``(h0, c0)`` or ``h0`` alone
    (``c0 = 0``); options as in :func:`scan_rnn` (truncation and ξ act on ``(h, c)``);
    ``return_state`` adds ``(h_T, c_T)``. ``activation`` must be ``"tanh"``."""
    if not isinstance(state0, (tuple, list)):
        state0 = (state0, jnp.zeros_like(state0))
    options = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights)
    step = _lstm_step(Wx, Wh, b, activation)
    return _scan(step, x, tuple(state0), lambda s: s[0], options, return_state)


def scan_gru(
    x, state0, Wx, Wh, bx, bh, *, activation="tanh", lengths=None, truncation=None,
    carry_weights=None, return_state=False,
):  # fmt: skip
    """Naive JAX GRU forward for autodiff (§10, torch's formulation); options as in
    :func:`scan_rnn`. ``activation`` must be ``"tanh"``."""
    options = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights)
    step = _gru_step(Wx, Wh, bx, bh, activation)
    return _scan(step, x, state0, lambda h: h, options, return_state)


_STEPS = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}


def scan_layer(kind: str, activation: str, x, state0, p, **options):
    """``(h, final state)`` of one layer by the naive scan of the cell called ``kind``,
    the state as the cell's pytree: the model's autodiff path."""
    out = (lambda s: s[0]) if kind == "lstm" else (lambda h: h)
    return scan_cell(_STEPS[kind](*p, activation), x, state0, out, **options)
