"""The classic functions, with exactly the seed's and CS231n's signatures: a step forward
and backward and a sequence forward and backward per cell, passing a cache between them.

``rnn_step_forward`` / ``rnn_step_backward`` / ``rnn_forward`` / ``rnn_backward`` are
the seed's (MATH.md §1-§5); ``lstm_*`` are CS231n's (§9), ``gru_*`` the same shape for
the GRU (§10). Whatever options are given, each returns what its documented signature
says. Every one of them is a line over one generic body written once here, for every
cell, from the registry: :func:`step_forward`, :func:`step_backward`,
:func:`sequence_forward`, :func:`sequence_backward`; the caches are the one
:class:`~jaxrnn._layer.StepCache` and :class:`~jaxrnn._layer.LayerCache` types. What
goes beyond the classic signatures (an LSTM's ``c0``, the final state, its gradient)
is the structured form :func:`jaxrnn.rnn` / :func:`jaxrnn.lstm` / :func:`jaxrnn.gru`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ._cells import CellKind, kind_named
from ._checks import check_activation, check_cache, check_dh, check_eager, check_same_shape
from ._layer import LayerCache, StepCache, backward_layer, check_layer_args, forward_layer

Array = jax.Array
tree_map = jax.tree_util.tree_map


def _parts(kind: CellKind, state) -> tuple:
    """A state pytree as the tuple of its parts: ``(h,)`` or ``(h, c)``."""
    return (state,) if len(kind.state) == 1 else tuple(state)


@partial(jax.jit, static_argnames=("fn", "kind_name", "activation"))
def _step_forward(x, prev: tuple, weights, *, fn: str, kind_name: str, activation: str):
    kind = kind_named(kind_name)
    x, s, p, _, _ = check_layer_args(fn, kind, x, prev, weights, step=True)
    cell = kind.cell(activation)
    buf_t = tree_map(lambda a: a[:, 0], cell.project(p, x[:, None]))  # §1: x_t Wx + b
    s_next, saved = cell.step(p, buf_t, s)  # §1 (§9, §10)
    return (*_parts(kind, s_next), StepCache(x, s, p, saved, kind_name, activation))


def step_forward(fn: str, kind_name: str, x, prev: tuple, weights, activation="tanh") -> tuple:
    """One step of any cell: ``(*next state parts, StepCache)``."""
    activation = check_activation(fn, activation)
    return _step_forward(x, tuple(prev), tuple(weights), fn=fn, kind_name=kind_name,
                         activation=activation)  # fmt: skip


@partial(jax.jit, static_argnames=("fn",))
def _step_backward(dnext: tuple, cache: StepCache, *, fn: str):
    kind = kind_named(cache.kind)
    refs = _parts(kind, cache.state)
    dnext = tuple(
        check_same_shape(fn, f"dnext_{n}", d, f"next_{n}", ref)
        for n, d, ref in zip(kind.state, dnext, refs, strict=True)
    )
    cell, p = kind.cell(cache.activation), cache.params
    dstate = dnext[0] if len(dnext) == 1 else dnext
    dprev, dbuf = cell.step_backward(
        cell.backward_params(p), cache.saved, cell.initial_buf(cache.state), dstate,
        jnp.zeros_like(dnext[0]),
    )  # §3: δ_t and the error passed to t-1  # fmt: skip
    saved = tree_map(lambda a: a[:, None], cache.saved)  # a sequence of one step
    dx, dp = cell.param_grads(p, cache.x[:, None], cache.state, saved, dbuf[:, None])  # §5
    return (dx[:, 0], *_parts(kind, dprev), *dp)


def step_backward(fn: str, kind_name: str, dnext: tuple, cache: StepCache) -> tuple:
    """One step backward of any cell: ``(dx, *dprev state parts, *dparams)``."""
    check_cache(fn, kind_name, cache, StepCache, "step_forward")
    return _step_backward(tuple(dnext), cache, fn=fn)


@partial(jax.jit, static_argnames=("fn", "kind_name", "act", "truncation", "checkpoint"))
def _sequence_forward(x, h0, weights, lengths, xi, *, fn, kind_name, act, truncation,
                      checkpoint):  # fmt: skip
    kind = kind_named(kind_name)
    x, s, p, lengths, xi = check_layer_args(fn, kind, x, (h0,), weights, lengths, xi)
    h, _, cache = forward_layer(kind, act, x, s, p, lengths, xi, truncation, checkpoint)  # §1
    return h, cache


def sequence_forward(fn: str, kind_name: str, x, h0, weights, options: dict) -> tuple:
    """A whole sequence of any cell from ``h0`` (an LSTM's ``c0 = 0``): ``(h, LayerCache)``."""
    act = options.get("activation", "tanh")
    lengths, truncation, checkpoint = check_eager(
        fn, x, act, options["lengths"], options["truncation"], options["checkpoint"]
    )
    return _sequence_forward(x, h0, tuple(weights), lengths, options["carry_weights"], fn=fn,
                             kind_name=kind_name, act=act, truncation=truncation,
                             checkpoint=checkpoint)  # fmt: skip


@partial(jax.jit, static_argnames=("fn", "ref_name"))
def _sequence_backward(dh, cache: LayerCache, *, fn: str, ref_name: str):
    kind = kind_named(cache.kind)
    dh = check_dh(fn, dh, cache.x, kind.h(cache.state0).shape[-1], ref_name)
    dx, ds0, dp = backward_layer(dh, cache)  # §3, §5 (§9, §10)
    return (dx, kind.h(ds0), *dp)


def sequence_backward(fn: str, kind_name: str, dh, cache: LayerCache, ref_name="h") -> tuple:
    """BPTT of any cell from its cache: ``(dx, dh0, *dparams)``."""
    check_cache(fn, kind_name, cache, LayerCache, "forward")
    return _sequence_backward(dh, cache, fn=fn, ref_name=ref_name)


def rnn_step_forward(
    x: Array, prev_h: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh"
) -> tuple[Array, StepCache]:
    """One step forward: ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)``.

    Implements MATH.md §1: ``a_t = x_t @ Wx + h_{t-1} @ Wh + b`` and ``h_t = f(a_t)``.

    Args:
      x: ``(N, D)`` input at this step.
      prev_h: ``(N, H)`` hidden state of the previous step, ``h_{t-1}``.
      Wx: ``(D, H)`` input-to-hidden weights (the document's ``U^T``).
      Wh: ``(H, H)`` hidden-to-hidden weights (the document's ``W^T``).
      b: ``(H,)`` bias.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.

    Returns:
      ``(next_h, cache)``: ``next_h`` ``(N, H)`` and the :class:`jaxrnn.StepCache` for
      :func:`rnn_step_backward`.
    """
    return step_forward("rnn_step_forward", "rnn", x, (prev_h,), (Wx, Wh, b), activation)


def rnn_step_backward(dnext_h: Array, cache: StepCache) -> tuple[Array, Array, Array, Array, Array]:
    """One step backward: the gradients of ``h_t = f(x_t @ Wx + h_{t-1} @ Wh + b)``.

    Implements MATH.md §3 and §5 for a single step::

        da      = dnext_h * f'(a_t)       # §3, f' from the stored h_t
        dx      = da @ Wx^T               # §5
        dprev_h = da @ Wh^T               # §3
        dWx     = x^T @ da                # §5
        dWh     = prev_h^T @ da           # §5
        db      = sum_n da                # §5

    Args:
      dnext_h: ``(N, H)`` gradient of the loss with respect to ``next_h``.
      cache: the :class:`jaxrnn.StepCache` returned by :func:`rnn_step_forward`.

    Returns:
      ``(dx, dprev_h, dWx, dWh, db)`` with shapes ``(N, D)``, ``(N, H)``,
      ``(D, H)``, ``(H, H)``, ``(H,)``.
    """
    return step_backward("rnn_step_backward", "rnn", (dnext_h,), cache)


def rnn_forward(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh",
    lengths: Array | None = None, truncation: int | None = None,
    carry_weights: Array | None = None, checkpoint: int | str | None = None,
) -> tuple[Array, LayerCache]:  # fmt: skip
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
      :class:`jaxrnn.LayerCache` pytree (inputs and hidden states, or segment-start states
      with ``checkpoint``) for :func:`rnn_backward`. Jit-compiled (``activation``,
      ``truncation`` and ``checkpoint`` are static).
    """
    options = dict(activation=activation, lengths=lengths, truncation=truncation,
                   carry_weights=carry_weights, checkpoint=checkpoint)  # fmt: skip
    return sequence_forward("rnn_forward", "rnn", x, h0, (Wx, Wh, b), options)


def rnn_backward(dh: Array, cache: LayerCache) -> tuple[Array, Array, Array, Array, Array]:
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
      cache: the :class:`jaxrnn.LayerCache` returned by :func:`rnn_forward`.

    Returns:
      ``(dx, dh0, dWx, dWh, db)`` with shapes ``(N, T, D)``, ``(N, H)``,
      ``(D, H)``, ``(H, H)``, ``(H,)``. For T = 0 all are zero.
    """
    return sequence_backward("rnn_backward", "rnn", dh, cache, "the cached h")


def lstm_step_forward(
    x: Array, prev_h: Array, prev_c: Array, Wx: Array, Wh: Array, b: Array
) -> tuple[Array, Array, StepCache]:
    """One LSTM step (MATH.md §9)::

        a = x @ Wx + prev_h @ Wh + b;  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
        next_c = f * prev_c + i * g;   next_h = o * tanh(next_c)

    Args:
      x: ``(N, D)``; prev_h, prev_c: ``(N, H)``; Wx: ``(D, 4H)``; Wh: ``(H, 4H)``;
        b: ``(4H,)``, gate blocks in the order ``(i, f, o, g)``.

    Returns:
      ``(next_h, next_c, cache)``: ``(N, H)``, ``(N, H)`` and an :class:`jaxrnn.StepCache`.
    """
    return step_forward("lstm_step_forward", "lstm", x, (prev_h, prev_c), (Wx, Wh, b))


def lstm_step_backward(
    dnext_h: Array, dnext_c: Array, cache: StepCache
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """One LSTM step backward (MATH.md §9): δc = dnext_c + dnext_h ⊙ o ⊙ tanh'(c), the
    gates' δ from it, ``dprev_h = δ Wh^T``, ``dprev_c = δc ⊙ f``, and the weight gradients.

    Args:
      dnext_h, dnext_c: ``(N, H)`` gradients of the loss with respect to ``next_h``, ``next_c``.
      cache: the :class:`jaxrnn.StepCache` of :func:`lstm_step_forward`.

    Returns:
      ``(dx, dprev_h, dprev_c, dWx, dWh, db)``: ``(N, D)``, ``(N, H)``, ``(N, H)``,
      ``(D, 4H)``, ``(H, 4H)``, ``(4H,)``.
    """
    return step_backward("lstm_step_backward", "lstm", (dnext_h, dnext_c), cache)


def lstm_forward(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, *, lengths: Array | None = None,
    truncation: int | None = None, carry_weights: Array | None = None,
    checkpoint: int | str | None = None,
) -> tuple[Array, LayerCache]:  # fmt: skip
    """Runs the LSTM over a sequence (MATH.md §9), one engine loop over t = 1..T::

        a_t = x_t @ Wx + h_{t-1} @ Wh + b      gates (i, f, o, g) in blocks of H
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ tanh(c_t)

    Args:
      x: ``(N, T, D)``; h0: ``(N, H)``; Wx: ``(D, 4H)``; Wh: ``(H, 4H)``; b: ``(4H,)``.
        The initial cell state is ``c0 = 0``, as in CS231n; for a given ``c0`` (and its
        gradient, and the final state) use :func:`jaxrnn.lstm` with ``(h0, c0)``.
      lengths, truncation, carry_weights, checkpoint: as in :func:`jaxrnn.rnn_forward`
        (the state ``(h, c)`` freezes at padding, where ``h`` is zero; truncation and
        ξ_t act on the error of both ``h`` and ``c``).

    Returns:
      ``(h, cache)``: ``h`` ``(N, T, H)`` and the :class:`jaxrnn.LayerCache` for
      :func:`lstm_backward`. Jit-compiled (``truncation``, ``checkpoint`` static).
    """
    options = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights,
                   checkpoint=checkpoint)  # fmt: skip
    return sequence_forward("lstm_forward", "lstm", x, h0, (Wx, Wh, b), options)


def lstm_backward(dh: Array, cache: LayerCache) -> tuple[Array, Array, Array, Array, Array]:
    """BPTT for :func:`lstm_forward`, derived by hand (MATH.md §9), for t = T..1::

        δc_t = δc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o_t ⊙ (1 - tanh²c_t)   dh_t: upstream + δ_{t+1} Wh^T
        δ_t  = [δc ⊙ g ⊙ i(1-i), δc ⊙ c_{t-1} ⊙ f(1-f), dh ⊙ tanh c ⊙ o(1-o), δc ⊙ i ⊙ (1-g²)]

    then ``dx = δ Wx^T``, ``dWx = Σ_t x_t^T δ_t``, ``dWh = Σ_t h_{t-1}^T δ_t``,
    ``db = Σ_t Σ_n δ_t`` as single matmuls over all N*T rows.

    Args:
      dh: ``(N, T, H)`` upstream gradient of every ``h_t``.
      cache: the :class:`jaxrnn.LayerCache` of :func:`lstm_forward`.

    Returns:
      ``(dx, dh0, dWx, dWh, db)``: ``(N, T, D)``, ``(N, H)``, ``(D, 4H)``, ``(H, 4H)``,
      ``(4H,)``: always these five, CS231n's signature (``dc0`` is the structured
      form's: ``jax.grad`` through :func:`jaxrnn.lstm` with ``(h0, c0)``).
    """
    return sequence_backward("lstm_backward", "lstm", dh, cache)


def gru_step_forward(
    x: Array, prev_h: Array, Wx: Array, Wh: Array, bx: Array, bh: Array
) -> tuple[Array, StepCache]:
    """One GRU step (MATH.md §10, torch's ``nn.GRUCell``)::

        r = σ(x Wx_r + bx_r + prev_h Wh_r + bh_r);  z = σ(x Wx_z + bx_z + prev_h Wh_z + bh_z)
        n = tanh(x Wx_n + bx_n + r ⊙ (prev_h Wh_n + bh_n));  next_h = (1 - z) ⊙ n + z ⊙ prev_h

    Args:
      x: ``(N, D)``; prev_h: ``(N, H)``; Wx: ``(D, 3H)``; Wh: ``(H, 3H)``;
        bx, bh: ``(3H,)``, gate blocks in the order ``(r, z, n)``.

    Returns:
      ``(next_h, cache)``: ``(N, H)`` and a :class:`jaxrnn.StepCache`.
    """
    return step_forward("gru_step_forward", "gru", x, (prev_h,), (Wx, Wh, bx, bh))


def gru_step_backward(
    dnext_h: Array, cache: StepCache
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """One GRU step backward (MATH.md §10).

    Args:
      dnext_h: ``(N, H)`` gradient of the loss with respect to ``next_h``.
      cache: the :class:`jaxrnn.StepCache` of :func:`gru_step_forward`.

    Returns:
      ``(dx, dprev_h, dWx, dWh, dbx, dbh)``: ``(N, D)``, ``(N, H)``, ``(D, 3H)``,
      ``(H, 3H)``, ``(3H,)``, ``(3H,)``.
    """
    return step_backward("gru_step_backward", "gru", (dnext_h,), cache)


def gru_forward(
    x: Array, h0: Array, Wx: Array, Wh: Array, bx: Array, bh: Array, *,
    lengths: Array | None = None, truncation: int | None = None,
    carry_weights: Array | None = None, checkpoint: int | str | None = None,
) -> tuple[Array, LayerCache]:  # fmt: skip
    """Runs the GRU over a sequence (MATH.md §10), one engine loop over t = 1..T
    (the step of :func:`gru_step_forward`).

    Args:
      x: ``(N, T, D)``; h0: ``(N, H)``; Wx: ``(D, 3H)``; Wh: ``(H, 3H)``; bx, bh: ``(3H,)``.
      lengths, truncation, checkpoint, carry_weights: as in :func:`jaxrnn.rnn_forward`.

    Returns:
      ``(h, cache)``: ``h`` ``(N, T, H)`` and the :class:`jaxrnn.LayerCache` for
      :func:`gru_backward`. Jit-compiled (``truncation``, ``checkpoint`` static).
    """
    options = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights,
                   checkpoint=checkpoint)  # fmt: skip
    return sequence_forward("gru_forward", "gru", x, h0, (Wx, Wh, bx, bh), options)


def gru_backward(dh: Array, cache: LayerCache) -> tuple[Array, Array, Array, Array, Array, Array]:
    """BPTT for :func:`gru_forward`, derived by hand (MATH.md §10), for t = T..1::

        dh_t = upstream + dh_{t+1 → t};   δn = dh ⊙ (1 - z) ⊙ (1 - n²)
        δz = dh ⊙ (h_{t-1} - n) ⊙ z(1 - z);   δr = δn ⊙ hn ⊙ r(1 - r)
        δx_t = [δr, δz, δn];  δh_t = [δr, δz, δn ⊙ r];  dh_{t → t-1} = dh ⊙ z + δh_t Wh^T

    then ``dx = δx Wx^T``, ``dWx = Σ_t x_t^T δx_t``, ``dWh = Σ_t h_{t-1}^T δh_t``,
    ``dbx = Σ δx``, ``dbh = Σ δh`` as single matmuls over all N*T rows.

    Returns:
      ``(dx, dh0, dWx, dWh, dbx, dbh)``: ``(N, T, D)``, ``(N, H)``, ``(D, 3H)``,
      ``(H, 3H)``, ``(3H,)``, ``(3H,)``.
    """
    return sequence_backward("gru_backward", "gru", dh, cache)
