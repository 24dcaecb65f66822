"""Sampling text from a character-level model, one character at a time, with a temperature."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .. import model
from ._config import SEED_LIMIT, check_int
from ._data import Vocab

Array = jax.Array


@partial(jax.jit, static_argnames=("activations",))
def _feed(params, tokens: Array, state, activations: str):
    """Runs the prime ``tokens: (P,)`` through the model; returns the state after them."""

    def body(state, tok):
        _, state = model.predict_step(params, tok[None], state, activations=activations)
        return state, None

    state, _ = jax.lax.scan(body, state, tokens)
    return state


@partial(jax.jit, static_argnames=("length", "greedy", "activations"))
def _generate(
    params,
    first: Array,
    state,
    key: Array,
    inv_temperature: Array,
    *,
    length: int,
    greedy: bool,
    activations: str,
) -> Array:
    """``length`` tokens, each drawn from ``softmax(scores / temperature)`` of the previous."""

    def body(carry, k):
        tok, state = carry
        scores, state = model.predict_step(params, tok, state, activations=activations)  # (1, K)
        if greedy:
            nxt = jnp.argmax(scores, axis=-1)
        else:
            nxt = jax.random.categorical(k, scores * inv_temperature.astype(scores.dtype), axis=-1)
        nxt = nxt.astype(tok.dtype)
        return (nxt, state), nxt[0]

    _, toks = jax.lax.scan(body, (first, state), jax.random.split(key, length))
    return toks  # (length,)


def sample(
    params,
    vocab: Vocab,
    *,
    prime: str = "",
    length: int = 500,
    temperature: float = 0.8,
    seed: int = 0,
    key: Array | None = None,
    activations: str = "tanh",
) -> str:
    """Generates text: ``prime`` followed by ``length`` sampled characters.

    Each character ``y`` is drawn from ``softmax(scores / temperature)``, where
    ``scores`` are the model's output for the previous character and the hidden
    state after everything before it (MATH.md §6). ``temperature -> 0`` makes
    sampling greedy (``temperature == 0`` is exactly ``argmax``); 1 samples from
    the model's distribution; above 1 flattens it. With an empty prime the
    model starts from a newline (or the first vocabulary character if the
    corpus has no newline), which is not included in the output.

    Args:
      params: ``ModelParams`` of a model trained on ``vocab``.
      vocab: the run's :class:`Vocab`.
      prime: text to condition on (every character must be in ``vocab``).
      length: number of characters to generate (>= 0).
      temperature: >= 0.
      seed: seeds the sampling, ``0 <= seed < 2**32``; the same seed gives the same text.
      key: a ``jax.random`` key to use instead of ``seed``.
      activations: the model's activation.

    Returns:
      ``prime + generated``, a ``str`` of ``len(prime) + length`` characters.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ValueError(f"sample: length must be an int >= 0, got {length!r}")
    temperature = float(temperature)
    if not temperature >= 0:  # also rejects NaN
        raise ValueError(f"sample: temperature must be >= 0, got {temperature}")
    if key is None:
        check_int(seed, "sample: seed", 0, SEED_LIMIT)
    ids = vocab.encode(prime)  # ValueError names characters outside the vocabulary
    if length == 0:
        return prime
    if len(ids):
        first, context = ids[-1:], ids[:-1]
    else:
        first = vocab.encode("\n" if "\n" in vocab.chars else vocab.chars[0])
        context = ids
    state = model.init_state(params, 1)
    if len(context):
        state = _feed(params, jnp.asarray(context), state, activations)
    key = jax.random.PRNGKey(seed) if key is None else key
    greedy = temperature == 0.0
    inv_t = jnp.asarray(0.0 if greedy else 1.0 / temperature, jnp.float32)
    toks = _generate(
        params,
        jnp.asarray(first),
        state,
        key,
        inv_t,
        length=length,
        greedy=greedy,
        activations=activations,
    )
    return prime + vocab.decode(jax.device_get(toks))
