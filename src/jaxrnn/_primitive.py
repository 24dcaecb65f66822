"""One recurrent layer as a JAX primitive with a hand rule in each mode of autodiff.

``jax.custom_vjp`` gives reverse mode a hand rule and rules forward mode out;
``jax.custom_jvp`` would derive reverse mode by transposing the tangent recurrence
with autodiff instead of running the hand BPTT, and ``jax.custom_derivatives.linear_call``
(a linear function with a custom transpose) has no batching rule and breaks on symbolic
zero tangents in jax 0.10. ``jax.experimental.hijax.VJPHiPrimitive`` takes both rules:

- ``vjp_fwd``/``vjp_bwd_retval``: the engine's forward storing its buffers, then the
  hand BPTT (``_layer.backward_layer``, MATH.md §3, §5, §9, §10): what ``jax.grad``,
  ``jax.vjp`` and ``jax.jacrev`` run, exactly as under the ``custom_vjp``;
- ``jvp`` and ``lin``/``linearized``: the tangent recurrence (§11, ``_tangent.py``):
  what ``jax.jvp``, ``jax.jacfwd`` and ``jax.linearize`` run;
- ``batch_dim_rule``: ``jax.vmap`` of all of the above, mapped by jax.

hijax is experimental: :data:`FORWARD_MODE` is False where the installed jax lacks it
(older than 0.8), and the layer then keeps its ``custom_vjp`` (``_layer.py``).
"""

from __future__ import annotations

from typing import Any

import jax

from . import _recurrence as rec
from ._cells import kind_named
from ._tangent import tangent_forward

try:
    from jax.experimental.hijax import VJPHiPrimitive, Zero, instantiate_zeros

    FORWARD_MODE = all(
        hasattr(VJPHiPrimitive, m) for m in ("jvp", "lin", "linearized", "vjp_bwd_retval")
    )
except ImportError:  # jax without hijax: reverse mode only (the custom_vjp)
    VJPHiPrimitive, Zero, instantiate_zeros, FORWARD_MODE = object, None, None, False

tree_map = jax.tree_util.tree_map


def _dense(tree: Any) -> Any:
    """``tree`` with each symbolic ``Zero`` (an input or output not differentiated) as zeros."""
    zero, instantiate = Zero, instantiate_zeros
    assert zero is not None and instantiate is not None, "LayerPrimitive runs only with hijax"
    return tree_map(instantiate, tree, is_leaf=lambda a: isinstance(a, zero))


class LayerPrimitive(VJPHiPrimitive):  # type: ignore[misc, valid-type]
    """``(h, final state)`` of one layer from ``(x, state0, params, lengths, ξ)``, with the
    hand BPTT as its reverse rule and the tangent recurrence as its forward rule."""

    def __init__(self, kind_name: str, act: str, truncation, checkpoint, args: tuple):
        x, s = args[0], args[1]
        N, T = x.shape[:2]
        H = kind_named(kind_name).h(s).shape[-1]
        self.in_avals = tree_map(jax.typeof, args)
        self.out_aval = (jax.typeof(x).update(shape=(N, T, H)), tree_map(jax.typeof, s))
        self.params = dict(kind_name=kind_name, act=act, truncation=truncation,
                           checkpoint=checkpoint)  # fmt: skip
        super().__init__()

    def _cell(self):
        return kind_named(self.kind_name).cell(self.act)

    def expand(self, x, s, p, lengths, xi):
        stateT, h, _ = rec.forward(self._cell(), p, x, s, rec.Options(lengths))  # §1
        return h, stateT

    def vjp_fwd(self, nzs_in, x, s, p, lengths, xi):
        from . import _layer  # the hand BPTT's plumbing (imports this module)

        kind = kind_named(self.kind_name)
        h, sT, cache = _layer.forward_layer(
            kind, self.act, x, s, p, lengths, xi, self.truncation, self.checkpoint
        )
        return (h, sT), cache  # residuals: inputs, weights and the engine's saved buffers

    def vjp_bwd_retval(self, cache, cts):
        from . import _layer

        dh, dsT = _dense(cts)
        dx, ds0, dp = _layer.backward_layer(dh, cache, dsT)  # §3, §5
        return dx, ds0, dp, None, None  # lengths and ξ get no cotangent

    def _tangents(self, primals, tangents):
        x, s, p, lengths, xi = primals
        dx, ds, dp = _dense(tuple(tangents[:3]))
        kind = kind_named(self.kind_name)
        return tangent_forward(kind, self.act, x, s, p, dx, ds, dp, lengths, xi, self.truncation)

    def jvp(self, primals, tangents):
        return self._tangents(primals, tangents)  # §1 and §11 in one loop

    def lin(self, nzs_in, *primals):
        return self.expand(*primals), primals  # residuals: the inputs (§11 recomputes §1)

    def linearized(self, primals, *tangents):
        return self._tangents(primals, tangents)[1]

    def batch_dim_rule(self, axis_data, in_dims):
        return tree_map(lambda _: 0, self.out_aval)  # jax maps the rules, output axis 0


def layer_primitive(kind_name: str, act: str, truncation, checkpoint, *args) -> tuple[Any, Any]:
    """``(h, final state)`` through :class:`LayerPrimitive`; ``args = (x, s, p, lengths, ξ)``."""
    return LayerPrimitive(kind_name, act, truncation, checkpoint, args)(*args)
