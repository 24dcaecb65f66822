"""The tangent recurrence as public functions, ``rnn_jvp``, ``lstm_jvp``, ``gru_jvp``
(MATH.md §11): what ``jax.jvp`` of :func:`jaxrnn.rnn` (``lstm``, ``gru``) computes, by hand,
in the engine's one forward loop. Checks once here, then :func:`_tangent.tangent_forward`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax

from ._cells import kind_named
from ._checks import check_eager
from ._layer import check_activation_for, check_layer_args, state_parts
from ._tangent import tangent_forward

Array = jax.Array


def _check_tangents(fn: str, primals: tuple, tangents: tuple) -> None:
    """Each tangent has its primal's pytree structure, shape and dtype."""
    p_leaves, p_def = jax.tree_util.tree_flatten(primals)
    t_leaves, t_def = jax.tree_util.tree_flatten(tangents)
    if p_def != t_def:
        raise ValueError(f"{fn}: tangents must have the primals' structure {p_def}, got {t_def}")
    names = ("x", "state0", "weights")
    for a, t in zip(p_leaves, t_leaves, strict=True):
        if t.shape != a.shape or t.dtype != a.dtype:
            raise ValueError(
                f"{fn}: each tangent must have its primal's shape and dtype ({', '.join(names)} "
                f"in order): expected {tuple(a.shape)} {a.dtype}, got {tuple(t.shape)} {t.dtype}"
            )


@partial(jax.jit, static_argnames=("fn", "kind_name", "act", "truncation"))
def _jvp_jit(primals, tangents, lengths, xi, *, fn, kind_name, act, truncation):
    kind = kind_named(kind_name)
    checked = [
        check_layer_args(fn, kind, a[0], state_parts(fn, kind, a[1]), a[2:], lengths, xi)
        for a in (primals, tangents)
    ]
    (x, s, p, lengths, xi), (dx, ds, dp, _, _) = checked
    _check_tangents(fn, (x, s, p), (dx, ds, dp))
    return tangent_forward(kind, act, x, s, p, dx, ds, dp, lengths, xi, truncation)


def layer_jvp(kind_name: str, primals, tangents, options: dict, return_state: bool):
    """The ``*_jvp`` functions' one body: checks, then :func:`tangent_forward` under jit."""
    fn, kind = f"{kind_name}_jvp", kind_named(kind_name)
    names = ("x", "state0", *kind.params._fields)
    for what, args in (("primals", primals), ("tangents", tangents)):
        if not isinstance(args, (tuple, list)) or len(args) != len(names):
            got = len(args) if isinstance(args, (tuple, list)) else type(args).__name__
            raise TypeError(f"{fn}: {what} must be a tuple ({', '.join(names)}), got {got}")
    act = options["activation"]
    lengths, truncation, _ = check_eager(
        fn, primals[0], act, options["lengths"], options["truncation"], options["checkpoint"]
    )
    check_activation_for(fn, kind, act)
    (h, sT), (dh, dsT) = _jvp_jit(tuple(primals), tuple(tangents), lengths,
                                  options["carry_weights"], fn=fn, kind_name=kind_name,
                                  act=act, truncation=truncation)  # fmt: skip
    return ((h, sT), (dh, dsT)) if return_state else (h, dh)


def _options(activation, lengths, truncation, carry_weights, checkpoint) -> dict:
    return dict(activation=activation, lengths=lengths, truncation=truncation,
                carry_weights=carry_weights, checkpoint=checkpoint)  # fmt: skip


def rnn_jvp(
    primals: tuple, tangents: tuple, *, activation: str = "tanh", lengths: Array | None = None,
    truncation: int | None = None, carry_weights: Array | None = None,
    checkpoint: int | str | None = None, return_state: bool = False,
) -> tuple[Any, Any]:  # fmt: skip
    """The vanilla RNN's forward-mode derivative by the hand-derived tangent recurrence.

    MATH.md §11, one engine loop running §1 and its tangent side by side::

        ȧ_t = ẋ_t Wx + x_t Ẇx + ḃ + ḣ_{t-1} Wh + h_{t-1} Ẇh;   ḣ_t = f'(a_t) ⊙ ȧ_t

    Equal to ``jax.jvp(partial(jaxrnn.rnn, **options), primals, tangents)``.

    Args:
      primals: ``(x, h0, Wx, Wh, b)`` as for :func:`jaxrnn.rnn`: ``x: (N, T, D)``,
        ``h0: (N, H)``, ``Wx: (D, H)``, ``Wh: (H, H)``, ``b: (H,)``.
      tangents: the same tuple of tangents, each with its primal's shape and dtype.
      activation, lengths, truncation, carry_weights, return_state: as in :func:`jaxrnn.rnn`;
        a truncation cut zeroes and ``ξ_t`` scales the tangent of the state entering step
        t (the transpose of their action on the error in §3). ``checkpoint`` is accepted
        and changes nothing: forward mode stores nothing for a later pass.

    Returns:
      ``(h, ḣ)``, each ``(N, T, H)``; with ``return_state=True``
      ``((h, h_T), (ḣ, ḣ_T))``.
    """
    options = _options(activation, lengths, truncation, carry_weights, checkpoint)
    return layer_jvp("rnn", primals, tangents, options, return_state)


def lstm_jvp(
    primals: tuple, tangents: tuple, *, activation: str = "tanh", lengths: Array | None = None,
    truncation: int | None = None, carry_weights: Array | None = None,
    checkpoint: int | str | None = None, return_state: bool = False,
) -> tuple[Any, Any]:  # fmt: skip
    """The LSTM's forward-mode derivative by the hand-derived tangent recurrence (§11)::

        ċ_t = ḟ ⊙ c_{t-1} + f ⊙ ċ_{t-1} + i̇ ⊙ g + i ⊙ ġ
        ḣ_t = ȯ ⊙ tanh(c_t) + o ⊙ tanh'(c_t) ⊙ ċ_t

    with each gate's tangent its activation's derivative times ``ȧ_t`` (as for the RNN).
    Equal to ``jax.jvp`` of :func:`jaxrnn.lstm`.

    Args:
      primals: ``(x, state0, Wx, Wh, b)``; ``state0`` is ``(h0, c0)`` or ``h0``, each
        ``(N, H)``; ``Wx: (D, 4H)``, ``Wh: (H, 4H)``, ``b: (4H,)``.
      tangents: the same tuple of tangents (``state0``'s tangent in the same form).
      activation, lengths, truncation, carry_weights, checkpoint, return_state: as in
        :func:`rnn_jvp`.

    Returns:
      ``(h, ḣ)``, each ``(N, T, H)``; with ``return_state=True``
      ``((h, (h_T, c_T)), (ḣ, (ḣ_T, ċ_T)))``.
    """
    options = _options(activation, lengths, truncation, carry_weights, checkpoint)
    return layer_jvp("lstm", primals, tangents, options, return_state)


def gru_jvp(
    primals: tuple, tangents: tuple, *, activation: str = "tanh", lengths: Array | None = None,
    truncation: int | None = None, carry_weights: Array | None = None,
    checkpoint: int | str | None = None, return_state: bool = False,
) -> tuple[Any, Any]:  # fmt: skip
    """The GRU's forward-mode derivative by the hand-derived tangent recurrence (§11)::

        ṅ = tanh'(·) ⊙ (ẋw_n + ṙ ⊙ hw_n + r ⊙ ḣw_n)
        ḣ_t = (1 - z) ⊙ ṅ + ż ⊙ (h_{t-1} - n) + z ⊙ ḣ_{t-1}

    Equal to ``jax.jvp`` of :func:`jaxrnn.gru`.

    Args:
      primals: ``(x, h0, Wx, Wh, bx, bh)``: ``x: (N, T, D)``, ``h0: (N, H)``,
        ``Wx: (D, 3H)``, ``Wh: (H, 3H)``, ``bx, bh: (3H,)``.
      tangents: the same tuple of tangents.
      activation, lengths, truncation, carry_weights, checkpoint, return_state: as in
        :func:`rnn_jvp`.

    Returns:
      ``(h, ḣ)``, each ``(N, T, H)``; with ``return_state=True`` ``((h, h_T), (ḣ, ḣ_T))``.
    """
    options = _options(activation, lengths, truncation, carry_weights, checkpoint)
    return layer_jvp("gru", primals, tangents, options, return_state)
