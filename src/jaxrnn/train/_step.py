"""The jitted training step, the validation loss, and sharding the batch over devices.

With more than one device (of this process, or of all the processes of a
``jax.distributed`` run: see ``_dist.py``), a 1-D mesh ``("batch",)`` over all of them
shards every batch-shaped array (tokens, targets, the hidden-state carry) along
its first axis and replicates the parameters and the optimizer state; XLA
inserts the cross-device reductions (the loss is a mean over the batch).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import model
from . import _dist
from ._config import ConfigError

LN2 = math.log(2.0)


def shardings(batch: int):
    """``(replicated, batch-sharded)`` NamedShardings over a 1-D 'batch' mesh, or Nones.

    The mesh holds ``jax.devices()``: every device of every process of the run.
    """
    devices = jax.devices()
    if len(devices) == 1:
        return None, None
    if batch % len(devices):
        raise ConfigError(
            f"--batch {batch} is not divisible by the {len(devices)} visible devices; "
            f"use a multiple of {len(devices)}"
        )
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
    P = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(mesh, P()), jax.sharding.NamedSharding(mesh, P("batch"))


def put(tree, sharding, batch: int | None = None):
    """Moves a pytree to the device(s): with ``sharding``, or as plain device arrays.

    In a multi-process run (``jax.process_count() > 1``) the leaves are this
    process's part: with ``batch``, its rows ``(B_local, ...)`` of global
    ``(batch, ...)`` arrays (``_dist.local_rows``); without, the whole value, the same
    on every process (replicated).
    """
    if sharding is None:
        return jax.tree_util.tree_map(jnp.asarray, tree)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    if batch is None:
        return _dist.put_replicated(tree, sharding)
    return _dist.put_rows(tree, sharding, batch)


@functools.lru_cache(maxsize=16)  # the same settings reuse one compiled step (notebooks, tests)
def optimizer_and_step(lr: float, clip: float, grad: str, repl, data_sh, checkpoint=None):
    """The optax optimizer (Adam after ``clip_by_global_norm``) and the jitted update.

    The update maps ``(params, opt_state, carry, tokens, targets)`` to
    ``(params, opt_state, carry, loss, finite)``: the gradients of the chunk's loss from
    the carried state (``grad="hand"``: :func:`jaxrnn.model.loss_and_grads`;
    ``"autodiff"``: ``jax.value_and_grad`` of ``model.loss(..., grad="autodiff")``),
    one optimizer step, and each layer's final state as the next carry;
    ``finite`` is False if the loss, a gradient or a new parameter is inf or NaN.
    ``repl``/``data_sh``: the shardings of :func:`shardings` (None on one device).
    ``checkpoint``: ``None``, a segment length k or ``"sqrt"``, passed to
    :func:`jaxrnn.model.loss_and_grads` (memory-bounded BPTT; ``grad="hand"`` only).
    """
    import optax

    opt = optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr))
    auto = jax.value_and_grad(functools.partial(model.loss, grad="autodiff"), has_aux=True)

    def step(params, opt_state, carry, tokens, targets):
        if grad == "hand":
            loss, grads, carry = model.loss_and_grads(
                params, tokens, targets, h0=carry, checkpoint=checkpoint
            )
        else:
            (loss, carry), grads = auto(params, tokens, targets, h0=carry)
        # optax relies on numpy's implicit promotion (e.g. ``b1 ** count`` with an int
        # count): allow it here even when a caller runs JAX in strict mode
        with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return params, opt_state, carry, loss, _all_finite((loss, grads, params))

    if repl is None:
        return opt, jax.jit(step)
    return opt, jax.jit(step, out_shardings=(repl, repl, data_sh, repl, repl))


def _all_finite(tree) -> jax.Array:
    """A scalar bool: every element of every leaf of ``tree`` is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


@jax.jit
def _eval_chunk(params, carry, tokens, targets):
    return model.loss(params, tokens, targets, h0=carry)  # (loss, carry): forward only


def evaluate(params, chunks, carry) -> float:
    """Validation bits per character: the chunks read in order, the hidden state carried."""
    total = 0.0
    for tokens, targets in chunks:
        loss, carry = _eval_chunk(params, carry, tokens, targets)
        total += float(loss)  # mean over N, summed over T
    return total / (len(chunks) * chunks[0][0].shape[1]) / LN2
