"""One recurrent layer of any cell: its cache, its forward and backward plumbing, the
library's one ``custom_vjp``, and the structured public functions ``rnn``, ``lstm``, ``gru``.

Everything here is written once, over the registry (``_cells.py``): a cell module
holds only its math. The classic functions (``_classic.py``), the stack and the
model (``_stack.py``, ``_model.py``) run their layers through :func:`forward_layer`,
:func:`backward_layer` and :func:`run_layer`, with the cell's own state pytree
(``h``, or ``(h, c)`` for the LSTM).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from . import _recurrence as rec
from ._cells import CellKind, kind_named
from ._checks import (
    check_cell_args,
    check_eager,
    check_fixed_activation,
    check_sequence_options,
    check_state_parts,
)
from ._primitive import FORWARD_MODE, layer_primitive

Array = jax.Array
State = Any  # the cell's state pytree: h (N, H), or (h, c) for the LSTM


@dataclasses.dataclass(frozen=True)
class LayerCache:
    """What a layer's backward pass needs from its forward pass, for every cell.

    Returned by :func:`jaxrnn.rnn_forward`, :func:`jaxrnn.lstm_forward` and
    :func:`jaxrnn.gru_forward` (and held per layer by a :class:`jaxrnn.StackCache`). A
    pytree: arrays are leaves, the cell and the static options are metadata, so a
    cache can leave one ``jit`` and enter another.
    """

    x: Array  # (N, T, D)
    state0: State  # h0 (N, H), or (h0, c0) for the LSTM
    params: Any  # RNNParams, LSTMParams or GRUParams
    saved: Any  # the engine's every-step buffers, or with checkpoint the segment-start states
    lengths: Array | None  # (N,) int valid lengths; None: every step is valid
    carry_weights: Array | None  # (T,) ξ_t scaling the error passed from step t to t-1
    kind: str = "rnn"  # static: the cell's name in the registry
    activation: str = "tanh"  # static
    truncation: int | None = None  # static: BPTT cut every `truncation` steps
    checkpoint: int | None = None  # static: segment length k of the memory-bounded BPTT (§8)


@dataclasses.dataclass(frozen=True)
class StepCache:
    """What a classic step backward (``rnn_step_backward``, ...) needs from its forward
    step, for every cell: the input, the previous state, the weights and what the
    cell's step stored (``h_t`` for the RNN; the gates and states for the LSTM, GRU)."""

    x: Array  # (N, D)
    state: State  # prev_h (N, H), or (prev_h, prev_c)
    params: Any
    saved: Any  # the step's stored slice of the engine's buffers
    kind: str = "rnn"  # static
    activation: str = "tanh"  # static


jax.tree_util.register_dataclass(
    LayerCache,
    data_fields=["x", "state0", "params", "saved", "lengths", "carry_weights"],
    meta_fields=["kind", "activation", "truncation", "checkpoint"],
)
jax.tree_util.register_dataclass(
    StepCache, data_fields=["x", "state", "params", "saved"], meta_fields=["kind", "activation"]
)


def forward_layer(kind: CellKind, act: str, x, s, p, lengths=None, xi=None, truncation=None,
                  checkpoint=None) -> tuple[Array, State, LayerCache]:  # fmt: skip
    """``(h, final state, LayerCache)`` of one layer on checked arguments (§1)."""
    opts = rec.Options(lengths, truncation, xi, checkpoint)
    stateT, h, saved = rec.forward(kind.cell(act), p, x, s, opts)
    cache = LayerCache(x, s, p, saved, lengths, xi, kind.name, act, truncation, checkpoint)
    return h, stateT, cache


def backward_layer(dh: Array, c: LayerCache, dstateT: State | None = None) -> tuple:
    """``(dx, dstate0, dparams)``: the engine's BPTT for one layer (§3, §5, §9, §10).

    ``dstateT``: the error arriving in the final state (from a later time segment,
    or a loss of the final state); None means zero.
    """
    cell = kind_named(c.kind).cell(c.activation)
    opts = rec.Options(c.lengths, c.truncation, c.carry_weights, c.checkpoint)
    return rec.backward(cell, c.params, c.x, c.state0, c.saved, dh, opts, dstateT)


def run_layer(kind_name, act, truncation, checkpoint, x, s, p, lengths, xi) -> tuple[Array, Any]:
    """``(h, final state)`` of one layer, differentiated by the hand-derived BPTT.

    :func:`jaxrnn.rnn`, :func:`jaxrnn.lstm`, :func:`jaxrnn.gru` and the model's
    ``loss(grad="hand")`` all run through it. The final state (the cell's pytree) is
    differentiable too: its error enters the backward loop at T. Where jax has hijax,
    a primitive whose reverse rule is the same hand BPTT and whose forward rule is the
    tangent recurrence (``_primitive.py``, MATH.md §11); elsewhere the ``custom_vjp``.

    Sharded inputs are typed alike first (``_recurrence.align``): inside ``shard_map``
    replicated weights are cast to vary with a batch-sharded ``x``, and autodiff
    transposes that cast into the ``psum`` of their gradients, as for any JAX function.
    """
    x, s, p, opts = rec.align(x, s, p, rec.Options(lengths, None, xi))
    args = (x, s, p, opts.lengths, opts.carry_weights)
    if FORWARD_MODE:
        return layer_primitive(kind_name, act, truncation, checkpoint, *args)
    return run_layer_vjp(kind_name, act, truncation, checkpoint, *args)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def run_layer_vjp(kind_name, act, truncation, checkpoint, x, s, p, lengths, xi):
    """:func:`run_layer` as a ``custom_vjp`` (reverse mode only): jax without hijax."""
    cell = kind_named(kind_name).cell(act)
    stateT, h, _ = rec.forward(cell, p, x, s, rec.Options(lengths))
    return h, stateT


def _run_fwd(kind_name, act, truncation, checkpoint, x, s, p, lengths, xi):
    kind = kind_named(kind_name)
    h, sT, cache = forward_layer(kind, act, x, s, p, lengths, xi, truncation, checkpoint)
    return (h, sT), cache  # residuals: inputs, weights and the engine's saved buffers


def _run_bwd(kind_name, act, truncation, checkpoint, cache, cts):
    dh, dsT = cts
    dx, ds0, dp = backward_layer(dh, cache, dsT)  # §3, §5
    return dx, ds0, dp, None, None  # lengths and ξ get no cotangent


run_layer_vjp.defvjp(_run_fwd, _run_bwd)


def state_parts(fn: str, kind: CellKind, state0: Any) -> tuple:
    """The parts of a state pytree, in the cell's order: ``(h0,)`` or ``(h0, c0)``; an
    LSTM given a bare ``h0`` gives ``(h0,)`` (``c0`` then defaults to zeros)."""
    return check_state_parts(fn, tuple(f"{n}0" for n in kind.state), state0)


def check_layer_args(fn: str, kind: CellKind, x, parts: tuple, weights, lengths=None, xi=None,
                     *, step: bool = False) -> tuple:  # fmt: skip
    """The trace-time checks of any cell's arguments: ``(x, state, params, lengths, xi)``
    with the state as the cell's pytree (a missing ``c0`` as zeros). ``parts`` are named
    ``h0``, ``c0`` (a sequence) or ``prev_h``, ``prev_c`` (a ``step``)."""
    names = [f"prev_{n}" if step else f"{n}0" for n in kind.state]
    states = dict(zip(names, parts, strict=False))
    named = dict(zip(kind.params._fields, weights, strict=True))
    layout = "N, D" if step else "N, T, D"
    arrays = check_cell_args(fn, kind.gates, x, states, named, x_layout=layout)
    x, given, w = arrays[0], list(arrays[1 : 1 + len(states)]), arrays[1 + len(states) :]
    given += [jnp.zeros_like(given[0])] * (len(kind.state) - len(given))
    state = given[0] if len(kind.state) == 1 else tuple(given)
    if not step:
        lengths, xi = check_sequence_options(fn, x, lengths, xi)
    return x, state, kind.params(*w), lengths, xi


def check_activation_for(fn: str, kind: CellKind, activation: str) -> None:
    """A gated cell's nonlinearities are fixed: only the default ``"tanh"`` is accepted."""
    check_fixed_activation(fn, kind.name, kind.activations, activation)


@partial(jax.jit, static_argnames=("fn", "kind_name", "act", "truncation", "checkpoint"))
def _layer_jit(x, parts, weights, lengths, xi, *, fn, kind_name, act, truncation, checkpoint):
    kind = kind_named(kind_name)
    x, s, p, lengths, xi = check_layer_args(fn, kind, x, parts, weights, lengths, xi)
    return run_layer(kind_name, act, truncation, checkpoint, x, s, p, lengths, xi)


def layer(kind_name: str, x, state0, weights, options: dict, return_state: bool):
    """The structured functions' one body: checks, then :func:`run_layer` under ``jit``."""
    fn, kind = kind_name, kind_named(kind_name)
    act = options["activation"]
    lengths, truncation, checkpoint = check_eager(
        fn, x, act, options["lengths"], options["truncation"], options["checkpoint"]
    )
    check_activation_for(fn, kind, act)
    parts = state_parts(fn, kind, state0)
    h, stateT = _layer_jit(x, parts, tuple(weights), lengths, options["carry_weights"], fn=fn,
                           kind_name=kind_name, act=act, truncation=truncation,
                           checkpoint=checkpoint)  # fmt: skip
    return (h, stateT) if return_state else h


def rnn(
    x: Array, state0: Array, Wx: Array, Wh: Array, b: Array, *, activation: str = "tanh",
    lengths: Array | None = None, truncation: int | None = None,
    carry_weights: Array | None = None, checkpoint: int | str | None = None,
    return_state: bool = False,
) -> Array | tuple[Array, Array]:  # fmt: skip
    """The vanilla RNN's hidden states, differentiable by the hand-derived BPTT.

    Forward: MATH.md §1 for t = 1..T, one engine loop (a ``lax.scan``)::

        a_t = x_t @ Wx + h_{t-1} @ Wh + b;   h_t = f(a_t)

    Backward: the library's one ``jax.custom_vjp``, whose rule is the BPTT of
    :func:`jaxrnn.rnn_backward` (MATH.md §3, §5), so ``jax.grad`` of any loss of the
    outputs *and of the final state* runs the hand-derived recursion instead of
    autodiff. Composes with ``jax.jit``, ``jax.grad``, ``jax.value_and_grad``,
    ``jax.vmap``, ``jax.hessian``, and in forward mode (``jax.jvp``, ``jax.jacfwd``,
    ``jax.linearize``) by the tangent recurrence of MATH.md §11 (README: forward mode).

    Args:
      x: ``(N, T, D)`` inputs; T = 0 and N = 0 are allowed.
      state0: ``h0``, ``(N, H)``: the initial hidden state.
      Wx: ``(D, H)`` (the document's ``U^T``); Wh: ``(H, H)`` (its ``W^T``); b: ``(H,)``.
      activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"`` (the
        LSTM and GRU take the same keyword and accept only ``"tanh"``).
      lengths: optional ``(N,)`` integers in ``[0, T]``: step t of sequence n is valid
        when ``t < lengths[n]``. The state freezes after the last valid step and ``h``
        is zero at padded steps, which receive zero gradient. Concrete values outside
        ``[0, T]`` raise ``ValueError``; under ``jax.jit`` see :func:`jaxrnn.check_lengths`.
      truncation: optional chunk length k >= 1: the backward rule stops the error at
        t = k, 2k, ... (truncated BPTT, MATH.md §3). Forward values do not change.
      carry_weights: optional ``(T,)`` factors ``ξ_t`` on the error passed from step t
        back to step t-1 (randomized truncation, :func:`jaxrnn.randomized_truncation`).
      checkpoint: optional memory-bounded BPTT (MATH.md §8): a segment length k >= 1 or
        ``"sqrt"`` (``k = ceil(sqrt(T))``). The forward keeps only the state entering
        each segment and the backward recomputes one segment at a time: the same
        gradients, about ``N*H*(T/k + k)`` stored instead of ``N*H*T``. Needs a static T.
      return_state: also return the final state.

    Returns:
      ``h``: ``(N, T, H)``, the hidden states ``h_1..h_T``; with ``return_state=True``
      the pair ``(h, h_T)``, ``h_T: (N, H)`` each sequence's state after its last valid
      step (``h0`` for length 0), differentiable.
    """
    options = dict(activation=activation, lengths=lengths, truncation=truncation,
                   carry_weights=carry_weights, checkpoint=checkpoint)  # fmt: skip
    return layer("rnn", x, state0, (Wx, Wh, b), options, return_state)


def lstm(
    x: Array, state0: Array | tuple[Array, Array], Wx: Array, Wh: Array, b: Array, *,
    activation: str = "tanh", lengths: Array | None = None, truncation: int | None = None,
    carry_weights: Array | None = None, checkpoint: int | str | None = None,
    return_state: bool = False,
) -> Array | tuple[Array, tuple[Array, Array]]:  # fmt: skip
    """The LSTM's outputs (MATH.md §9), differentiable by the hand-derived BPTT.

    Forward, for t = 1..T, gates ``(i, f, o, g)`` in blocks of H columns::

        a_t = x_t @ Wx + h_{t-1} @ Wh + b
        c_t = σ(a_f) ⊙ c_{t-1} + σ(a_i) ⊙ tanh(a_g);   h_t = σ(a_o) ⊙ tanh(c_t)

    Backward: the library's one ``custom_vjp``, whose rule is the §9 BPTT of
    :func:`jaxrnn.lstm_backward`; differentiable in ``x``, ``h0``, ``c0`` and the
    weights, through the outputs and the final state ``(h_T, c_T)``.

    Args:
      x: ``(N, T, D)``.
      state0: ``(h0, c0)``, each ``(N, H)`` (torch's and equinox's order), or ``h0``
        alone for ``c0 = 0`` (as in CS231n).
      Wx: ``(D, 4H)``; Wh: ``(H, 4H)``; b: ``(4H,)``.
      activation, lengths, truncation, carry_weights, checkpoint, return_state: as in
        :func:`jaxrnn.rnn` (``activation`` must stay ``"tanh"``; the state ``(h, c)``
        freezes at padding; truncation and ``ξ_t`` act on the error of both parts).

    Returns:
      ``h: (N, T, H)``; with ``return_state=True`` the pair ``(h, (h_T, c_T))``, each
      ``(N, H)``, the state after each sequence's last valid step.
    """
    options = dict(activation=activation, lengths=lengths, truncation=truncation,
                   carry_weights=carry_weights, checkpoint=checkpoint)  # fmt: skip
    return layer("lstm", x, state0, (Wx, Wh, b), options, return_state)


def gru(
    x: Array, state0: Array, Wx: Array, Wh: Array, bx: Array, bh: Array, *,
    activation: str = "tanh", lengths: Array | None = None, truncation: int | None = None,
    carry_weights: Array | None = None, checkpoint: int | str | None = None,
    return_state: bool = False,
) -> Array | tuple[Array, Array]:  # fmt: skip
    """The GRU's outputs (MATH.md §10, torch's formulation), differentiable by the
    hand-derived BPTT.

    Forward, for t = 1..T, gates ``(r, z, n)`` in blocks of H columns::

        r = σ(x_t Wx_r + bx_r + h_{t-1} Wh_r + bh_r);  z = σ(... the z blocks ...)
        n = tanh(x_t Wx_n + bx_n + r ⊙ (h_{t-1} Wh_n + bh_n));  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

    Backward: the library's one ``custom_vjp``, whose rule is the §10 BPTT of
    :func:`jaxrnn.gru_backward`.

    Args:
      x: ``(N, T, D)``.
      state0: ``h0``, ``(N, H)``.
      Wx: ``(D, 3H)``; Wh: ``(H, 3H)``; bx, bh: ``(3H,)``.
      activation, lengths, truncation, carry_weights, checkpoint, return_state: as in
        :func:`jaxrnn.rnn` (``activation`` must stay ``"tanh"``).

    Returns:
      ``h: (N, T, H)``; with ``return_state=True`` the pair ``(h, h_T)``.
    """
    options = dict(activation=activation, lengths=lengths, truncation=truncation,
                   carry_weights=carry_weights, checkpoint=checkpoint)  # fmt: skip
    return layer("gru", x, state0, (Wx, Wh, bx, bh), options, return_state)
