"""Sharded inputs: the engine's own arrays typed like the caller's.

JAX types an array by more than its shape and dtype. Inside ``jax.shard_map`` a
value *varies* over the manual mesh axes its shards differ on (``{V:b}``); under
``jax.jit`` on a mesh with ``Explicit`` axes (``jax.make_mesh``'s default) its
type carries its sharding (``float64[4@b,6,5]``). The engine creates arrays of
its own (zero buffers, zero carries, accumulators) and contracts over the batch
axis (MATH.md §5's weight gradients); each must be typed to fit:

- :func:`vary_like` makes a pytree vary over every manual axis some input varies
  over (``jax.lax.pcast(..., to="varying")``). At the public boundary, before
  the ``custom_vjp``, this makes the weights vary with the batch, so autodiff
  transposes the cast into the ``psum`` over the batch shards of the weight
  gradient, as it does for a plain ``lax.scan``.
- :func:`zeros` gives zeros of a new shape with a reference array's varying axes
  and explicit sharding, the engine's one way to create a buffer or carry.
- :func:`contract` is ``a @ b`` whose result takes a reference's explicit
  sharding: a weight gradient summed over a batch-sharded axis lands replicated
  like the weight (the all-reduce is XLA's).
- :func:`batch_like` reshards a state along the batch axis of the inputs.

Every helper is the identity (or the plain op) where nothing is sharded, so the
unsharded compiled programs do not change, and on a jax without these types
(older than ``jax.typeof``/``jax.lax.pcast``) the engine runs as before.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

_typeof = getattr(jax, "typeof", None)
_pcast = getattr(jax.lax, "pcast", None)
_pvary = getattr(jax.lax, "pvary", None)  # its name in jax 0.6 to 0.8
_reshard = getattr(jax.sharding, "reshard", None)


def varying_axes(a: Any) -> frozenset:
    """The manual mesh axes ``a`` varies over inside ``shard_map`` (empty elsewhere)."""
    if _typeof is None:
        return frozenset()
    aval = _typeof(a)
    vma = getattr(aval, "vma", None)  # jax 0.6 to 0.9
    if vma is None:
        vma = getattr(getattr(aval, "manual_axis_type", None), "varying", frozenset())
    return frozenset(vma)


def _vary(a: Array, axes: frozenset) -> Array:
    missing = tuple(sorted(axes - varying_axes(a), key=str))
    if not missing:
        return a
    if _pcast is not None:
        return _pcast(a, missing, to="varying")
    assert _pvary is not None, "a value varies over manual axes: this jax has pcast or pvary"
    return _pvary(a, missing)


def vary_like(tree: Any, *refs: Any) -> Any:
    """``tree`` with every leaf varying over all manual axes that a leaf of ``tree``
    or ``refs`` varies over: the one type a loop carry or a ``custom_vjp`` argument
    can have when a batch-sharded input meets replicated weights."""
    axes = frozenset().union(*map(varying_axes, jax.tree_util.tree_leaves((tree, refs))))
    if not axes:
        return tree
    return jax.tree_util.tree_map(lambda a: _vary(a, axes), tree)


def explicit_sharding(a: Any) -> Any:
    """``a``'s sharding when its type carries one (a mesh with ``Explicit`` axes), else None."""
    if _typeof is None:
        return None
    sharding = getattr(_typeof(a), "sharding", None)
    if not getattr(getattr(sharding, "mesh", None), "explicit_axes", ()):
        return None
    return sharding


def _with_spec(sharding: Any, spec: tuple) -> Any:
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))


def zeros(like: Array, shape: tuple[int, ...], dtype: Any = None) -> Array:
    """Zeros of ``shape`` typed like ``like``: its dtype (unless ``dtype``), the manual
    axes it varies over, and its explicit sharding, axis for axis from the right
    (``like: (N, H)`` gives ``(S, N, H)`` the spec ``(None, *like's)``; the sizes of
    axes may differ, e.g. ``(N, T, 4H)`` -> ``(N, T, H)``, which must be unsharded)."""
    sharding = explicit_sharding(like)
    if sharding is None:
        return jnp.zeros_like(like, dtype, shape)
    spec = tuple(sharding.spec) + (None,) * (like.ndim - len(sharding.spec))
    spec = ((None,) * len(shape) + spec)[-len(shape) :] if shape else ()
    return jnp.zeros_like(like, dtype, shape, out_sharding=_with_spec(sharding, spec))


def _layout(like: Array, *operands: Array) -> Any:
    """``like``'s spec (replicated if it carries none) on the mesh of the first explicitly
    sharded operand, or None when no operand is explicitly sharded."""
    operand = next(filter(None, map(explicit_sharding, operands)), None)
    if operand is None:
        return None
    own = explicit_sharding(like)
    spec = tuple(own.spec) if own is not None else ()
    return _with_spec(operand, spec + (None,) * (like.ndim - len(spec)))


def contract(a: Array, b: Array, like: Array) -> Array:
    """``a @ b`` laid out as ``like`` (the weight whose gradient it is; replicated if
    ``like`` carries no sharding) when ``a`` or ``b`` is explicitly sharded: their sum
    over a batch-sharded axis is otherwise ambiguous to JAX."""
    sharding = _layout(like, a, b)
    if sharding is None:
        return a @ b
    return jnp.matmul(a, b, out_sharding=sharding)


def add_rows(table: Array, ids: Array, rows: Array) -> Array:
    """``table.at[ids].add(rows)`` (an embedding's gradient, MATH.md §6's scatter-add) laid
    out as ``table`` when ``ids`` or ``rows`` are explicitly sharded."""
    sharding = _layout(table, ids, rows)
    if sharding is None:
        return table.at[ids].add(rows)
    return table.at[ids].add(rows, out_sharding=sharding)


def take_rows(table: Array, ids: Array) -> Array:
    """``table[ids]`` (an embedding lookup, ``(V, E)`` by ``(N, T)`` -> ``(N, T, E)``) laid
    out along ``ids``' explicit sharding, which JAX will not guess for a replicated table."""
    sharding = explicit_sharding(ids)
    if sharding is None:
        return table[ids]
    spec = tuple(sharding.spec) + (None,) * (ids.ndim - len(sharding.spec) + table.ndim - 1)
    return table.at[ids].get(out_sharding=_with_spec(sharding, spec))


def batch_like(state: Any, x: Array) -> Any:
    """``state`` (leaves ``(N, ...)``) resharded along ``x``'s batch axis ``N`` where
    their explicit shardings differ there; the identity otherwise."""
    sharding, reshard = explicit_sharding(x), _reshard
    if sharding is None or reshard is None:
        return state
    batch = tuple(sharding.spec)[0] if len(sharding.spec) else None

    def one(s):
        own = explicit_sharding(s)
        spec = tuple(own.spec) if own is not None else ()
        spec += (None,) * (s.ndim - len(spec))
        if not s.ndim or spec[0] == batch:
            return s
        return reshard(s, _with_spec(sharding, (batch, *spec[1:])))

    return jax.tree_util.tree_map(one, state)


def align(x: Array, state: Any, *rest: Any) -> tuple:
    """``(x, state, *rest)`` typed alike: ``state`` resharded along ``x``'s batch axis
    (:func:`batch_like`), then every leaf varying over the manual axes that any leaf
    varies over (:func:`vary_like`); ``None`` entries stay ``None``."""
    return vary_like((x, batch_like(state, x), *rest))
