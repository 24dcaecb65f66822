"""Pytrees shared by the core: parameters and the caches passed from forward to backward.

The caches are pytrees whose leaves are arrays and whose activation name is
static metadata, so ``rnn_forward`` and ``rnn_backward`` can be jit-compiled
separately and the cache passed between them (or returned from a jitted
function, stored, and fed back later).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax

Array = jax.Array


class RNNParams(NamedTuple):
    """The three weights of one vanilla RNN layer (MATH.md §1, row-major).

    ``a_t = x_t @ Wx + h_{t-1} @ Wh + b``.
    """

    Wx: Array  # (D, H)   the document's U^T
    Wh: Array  # (H, H)   the document's W^T
    b: Array  # (H,)


@dataclasses.dataclass(frozen=True)
class StepCache:
    """What ``rnn_step_backward`` needs from one ``rnn_step_forward`` call.

    The document's cache ``(x, Wx, Wh, prev_h, next_h)`` plus the activation.
    """

    x: Array  # (N, D)
    prev_h: Array  # (N, H)
    Wx: Array  # (D, H)
    Wh: Array  # (H, H)
    next_h: Array  # (N, H)  h_t = f(a_t); f'(a_t) is computed from it
    activation: str = "tanh"  # static


@dataclasses.dataclass(frozen=True)
class RNNCache:
    """What ``rnn_backward`` needs from ``rnn_forward``: the inputs and the hidden states.

    No per-step copies of the weights: each weight is stored once. ``lengths``
    (variable-length sequences) and ``truncation`` (truncated BPTT) are ``None``
    on the default path, where they add no leaves and no work.

    With ``checkpoint = k`` (memory-bounded BPTT, MATH.md §8) ``h`` is ``None`` and
    ``boundaries`` holds the ``ceil(T/k)`` states entering each segment of k steps,
    ``(ceil(T/k), N, H)``; the backward pass recomputes each segment from them,
    which needs ``b`` too.
    """

    x: Array  # (N, T, D)
    h0: Array  # (N, H)
    Wx: Array  # (D, H)
    Wh: Array  # (H, H)
    h: Array  # (N, T, H)  all hidden states h_1..h_T (zero at padded steps)
    activation: str = "tanh"  # static
    lengths: Array | None = None  # (N,) int valid lengths; None: every step is valid
    truncation: int | None = None  # static: BPTT cut every `truncation` steps; None: full
    carry_weights: Array | None = None  # (T,) ξ_t scaling the gradient from step t to t-1
    checkpoint: int | None = None  # static: segment length k of the memory-bounded BPTT
    boundaries: Array | None = None  # (ceil(T/k), N, H) segment-start states (checkpoint)
    b: Array | None = None  # (H,) only with checkpoint: the recomputation needs it


for _cls, _data in (
    (StepCache, ["x", "prev_h", "Wx", "Wh", "next_h"]),
    (RNNCache, ["x", "h0", "Wx", "Wh", "h", "lengths", "carry_weights", "boundaries", "b"]),
):
    _meta = ["activation", "truncation", "checkpoint"] if _cls is RNNCache else ["activation"]
    jax.tree_util.register_dataclass(_cls, data_fields=_data, meta_fields=_meta)


class ModelParams(NamedTuple):
    """All weights of the model, a pytree (``jax.tree.map`` applies an optimizer step)."""

    embed: Array  # (vocab, E)  word embedding
    layers: tuple  # layer l: RNNParams(Wx (in_l, H_l), Wh, b) or BiRNNParams(fwd, bwd)
    V: Array  # (H_top, K)  hidden-to-output (H_top = 2 H_L when bidirectional)
    c: Array  # (K,)
