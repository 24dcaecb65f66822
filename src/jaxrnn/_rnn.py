"""The vanilla RNN layer: the document's ``rnn_forward`` / ``rnn_backward``, and ``rnn``,
the forward pass whose ``jax.custom_vjp`` is the hand-derived BPTT.

All three run the engine's two loops (``_recurrence``) with the RNN cell
(``_cell.rnn_cell``); arguments are validated once here, at the public boundary.
"""

from __future__ import annotations

from functools import partial

import jax

from . import _recurrence as rec
from ._cell import rnn_cell
from ._checks import check_call, check_dh, check_eager, check_rnn_args
from ._layer import Kind, register, run_layer
from ._types import RNNCache, RNNParams

Array = jax.Array


def hidden_states(x, h0, Wx, Wh, b, activation: str, lengths) -> Array:
    """``h: (N, T, H)`` by the engine's forward loop (§1); arguments already checked."""
    cell = rnn_cell(activation)
    _, h, _ = rec.forward(cell, RNNParams(Wx, Wh, b), x, h0, rec.Options(lengths))
    return h


def forward_cache(x, h0, Wx, Wh, b, lengths, xi, activation, truncation, checkpoint):
    """``(h, RNNCache)`` on checked arguments: every ``h_t`` stored, or with
    ``checkpoint = k`` only the segment-start states (§8)."""
    opts = rec.Options(lengths, truncation, xi, checkpoint)
    _, h, saved = rec.forward(rnn_cell(activation), RNNParams(Wx, Wh, b), x, h0, opts)
    if checkpoint is None:
        return h, RNNCache(x, h0, Wx, Wh, h, activation, lengths, truncation, xi)
    return h, RNNCache(
        x, h0, Wx, Wh, None, activation, lengths, truncation, xi, checkpoint, saved, b
    )


def backward_from_cache(
    dh: Array, cache: RNNCache, dhT: Array | None = None
) -> tuple[Array, Array, Array, Array, Array]:
    """:func:`rnn_backward` without the argument check: ``(dx, dh0, dWx, dWh, db)``.

    ``dhT``: optional error arriving in the final (carried) state from after the
    sequence, e.g. from the next time segment of a checkpointed model (§8).
    """
    cell = rnn_cell(cache.activation)
    params = RNNParams(cache.Wx, cache.Wh, cache.b)  # b: None on the full-store path
    opts = rec.Options(cache.lengths, cache.truncation, cache.carry_weights, cache.checkpoint)
    saved = cache.h if cache.checkpoint is None else cache.boundaries
    dx, dh0, g = rec.backward(cell, params, cache.x, cache.h0, saved, dh, opts, dhT)
    return dx, dh0, g.Wx, g.Wh, g.b


@partial(jax.jit, static_argnames=("activation", "truncation", "checkpoint"))
def _rnn_forward(x, h0, Wx, Wh, b, lengths, carry_weights, *, activation, truncation, checkpoint):
    args = check_call("rnn_forward", x, h0, Wx, Wh, b, lengths, carry_weights, activation)
    return forward_cache(*args, activation, truncation, checkpoint)


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
    checkpoint: int | str | None = None,
) -> tuple[Array, RNNCache]:
    """Runs the RNN over a whole sequence (a static-bound loop, i.e. a ``lax.scan``).

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
      checkpoint: optional memory-bounded BPTT (MATH.md §8): a segment length
        k >= 1, or ``"sqrt"`` for ``k = ceil(sqrt(T))``. The cache then keeps only
        the state entering each segment, and :func:`rnn_backward` recomputes one
        segment's forward pass at a time; the gradients are the same.

    Returns:
      ``(h, cache)``: ``h`` ``(N, T, H)`` holds ``h_1..h_T``; ``cache`` is an
      :class:`RNNCache` pytree (inputs and hidden states, or segment-start states
      with ``checkpoint``) for :func:`rnn_backward`. Jit-compiled (``activation``,
      ``truncation`` and ``checkpoint`` are static).
    """
    lengths, truncation, checkpoint = check_eager(
        "rnn_forward", x, activation, lengths, truncation, checkpoint
    )
    return _rnn_forward(
        x, h0, Wx, Wh, b, lengths, carry_weights,
        activation=activation, truncation=truncation, checkpoint=checkpoint,
    )  # fmt: skip


@jax.jit
def rnn_backward(dh: Array, cache: RNNCache) -> tuple[Array, Array, Array, Array, Array]:
    """Backpropagation through time for :func:`rnn_forward`, derived by hand.

    Implements MATH.md §3 (along time) as the engine's reverse loop on batch-major
    arrays (no transposes), for t = T..1::

        da_t        = (dh_t + dnext_t) * f'(a_t)     # f' from the stored h_t
        dnext_{t-1} = da_t @ Wh^T                    # dnext_T = 0
        dh0         = dnext_0

    and MATH.md §5 after the recursion, as single matmuls over all N*T rows::

        dx  = da @ Wx^T
        dWx = sum_t x_t^T @ da_t
        dWh = sum_t h_{t-1}^T @ da_t
        db  = sum_t sum_n da_t

    With ``lengths`` in the cache, ``m_t = t < lengths`` masks the error term:
    ``da_t = m_t (dh_t + dnext_t) f'(a_t)``, so padded steps get zero ``dx`` and add
    nothing to the weight gradients (the upstream ``dh`` there is ignored: those
    outputs are constant zeros), and the error passes the frozen state unchanged.

    With ``truncation = k`` in the cache, the error stops at chunk boundaries:
    ``dnext_{t-1} = 0`` for t = k, 2k, ... (truncated BPTT: gradient flows at most
    back to the start of its chunk; the first chunk still reaches ``h0``). This is
    ``jax.grad`` of the forward pass with ``lax.stop_gradient`` on the carried state
    entering steps k, 2k, ...

    With ``carry_weights`` ``ξ`` in the cache (randomized truncation, Tallec &
    Ollivier 2017, as in d2l): ``dnext_{t-1} = ξ_t (δ_t @ Wh^T)``; this is
    ``jax.grad`` of the forward pass with the carried state entering step t
    replaced by ``sg(h) + ξ_t (h - sg(h))`` (same value, gradient scaled by ``ξ_t``).

    Args:
      dh: ``(N, T, H)`` upstream gradient of the loss with respect to every
        hidden state (the ``dE_t/dh_t`` of MATH.md §3).
      cache: the :class:`RNNCache` returned by :func:`rnn_forward`.

    Returns:
      ``(dx, dh0, dWx, dWh, db)`` with shapes ``(N, T, D)``, ``(N, H)``,
      ``(D, H)``, ``(H, H)``, ``(H,)``. For T = 0 all are zero.
    """
    dh = check_dh("rnn_backward", dh, cache.x, cache.Wh.shape[0], "the cached h")
    return backward_from_cache(dh, cache)


@partial(jax.jit, static_argnames=("activation", "truncation", "checkpoint"))
def _rnn_jit(x, h0, Wx, Wh, b, lengths, carry_weights, *, activation, truncation, checkpoint):
    x, h0, Wx, Wh, b, lengths, xi = check_call(
        "rnn", x, h0, Wx, Wh, b, lengths, carry_weights, activation
    )
    p = RNNParams(Wx, Wh, b)
    return run_layer("rnn", activation, truncation, checkpoint, x, h0, p, lengths, xi)[0]


def rnn(
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
    checkpoint: int | str | None = None,
) -> Array:
    """The RNN's hidden states, differentiable by the hand-derived BPTT.

    Forward: MATH.md §1 (``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)``) by ``lax.scan``.
    Backward: a ``jax.custom_vjp`` whose rule is the BPTT of :func:`rnn_backward`
    (MATH.md §3, §5; the library's one ``custom_vjp``, ``_layer.run_layer``), so
    ``jax.grad`` of any loss of ``rnn(...)`` runs the hand-derived recursion instead
    of autodiff. Composes with ``jax.jit``,
    ``jax.grad``, ``jax.value_and_grad`` and ``jax.vmap``.

    Args:
      x: ``(N, T, D)`` inputs.
      h0: ``(N, H)`` initial hidden state.
      Wx: ``(D, H)``; Wh: ``(H, H)``; b: ``(H,)``.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.
      lengths: optional ``(N,)`` valid lengths, as in :func:`rnn_forward` (``h`` is
        zero at padded steps, which receive zero gradient).
      truncation: optional chunk length k: the backward rule stops the gradient at
        t = k, 2k, ... (truncated BPTT, see :func:`rnn_backward`).
      carry_weights: optional ``(T,)`` factors on the gradient from step t to t-1
        (randomized truncation, see :func:`rnn_forward`).
      checkpoint: optional segment length k or ``"sqrt"``: the forward pass keeps
        only the state entering each segment for the backward rule, which
        recomputes one segment at a time (memory-bounded BPTT, MATH.md §8; same
        gradients, about ``N*H*(T/k + k)`` stored instead of ``N*H*T``).

    Returns:
      ``h``: ``(N, T, H)``, the hidden states ``h_1..h_T``.
    """
    lengths, truncation, checkpoint = check_eager(
        "rnn", x, activation, lengths, truncation, checkpoint
    )
    return _rnn_jit(
        x, h0, Wx, Wh, b, lengths, carry_weights,
        activation=activation, truncation=truncation, checkpoint=checkpoint,
    )  # fmt: skip


def _check_layer(fn: str, x, h0, p: RNNParams):
    x, h0, Wx, Wh, b = check_rnn_args(fn, x, h0, *p, x_layout="N, T, D", h_name="h0")
    return x, h0, RNNParams(Wx, Wh, b)


register(
    RNNParams,
    Kind("rnn", rnn_cell, lambda s: s, lambda s: s, lambda p: p.Wh.shape[0], _check_layer),
)
