"""Accelerator readiness, checked from a CPU machine (issue 12, item 8).

``jax.export`` lowers each gradient path for cpu, cuda, rocm and tpu without
the device. A path fails if it does not lower, or if its StableHLO module holds
a host callback or a custom call that would keep it off an accelerator (only
the sharding markers jax itself emits are allowed).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import model

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
N, T, D, H, VOCAB = 2, 6, 3, 4, 5
F32, I32 = jnp.float32, jnp.int32
ALLOWED_CUSTOM_CALLS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape"}
FORBIDDEN = re.compile(r"callback|xla_python|host", re.IGNORECASE)


def spec(shape, dtype=F32):
    return jax.ShapeDtypeStruct(shape, dtype)


def specs(tree):
    """The ShapeDtypeStruct of every leaf of a pytree of arrays."""
    return jax.tree.map(lambda a: spec(a.shape, a.dtype), tree)


RNN_ARGS = (spec((N, T, D)), spec((N, H)), spec((D, H)), spec((H, H)), spec((H,)))


def rnn_grad(**options):
    """jax.grad of a loss of jaxrnn.rnn (custom_vjp -> hand BPTT) in every argument."""

    def f(x, h0, Wx, Wh, b, *lengths):
        def loss(*a):
            return jnp.sum(jaxrnn.rnn(*a, lengths=lengths[0] if lengths else None, **options) ** 2)

        return jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, h0, Wx, Wh, b)

    return f


def stack_round_trip(x, h0, layers, dh, lengths):
    """stack_forward + stack_backward, bidirectional, with lengths."""
    _, _, cache = jaxrnn.stack_forward(x, h0, layers, lengths=lengths, truncation=2)
    return jaxrnn.stack_backward(dh, cache)


def model_grads(params, tokens, targets, lengths):
    """The hand chain of model.loss_and_grads."""
    return model.loss_and_grads(params, tokens, targets, lengths=lengths, truncation=3)


def cases():
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), D, [H, 2], bidirectional=True, dtype=F32)
    params = model.init(jax.random.PRNGKey(0), VOCAB, [H, 3], dtype=F32)
    tokens = spec((N, T), I32)
    return {
        "grad-rnn": (rnn_grad(), RNN_ARGS),
        "grad-rnn-lengths": (rnn_grad(), (*RNN_ARGS, spec((N,), I32))),
        "grad-rnn-truncation": (rnn_grad(truncation=2), RNN_ARGS),
        "grad-rnn-lengths-truncation": (rnn_grad(truncation=4), (*RNN_ARGS, spec((N,), I32))),
        "stack-forward-backward-lengths": (
            stack_round_trip,
            (
                spec((N, T, D)),
                (spec((N, 2 * H)), spec((N, 4))),
                specs(layers),
                spec((N, T, 4)),
                spec((N,), I32),
            ),
        ),  # fmt: skip
        "model-loss_and_grads": (model_grads, (specs(params), tokens, tokens, spec((N,), I32))),
    }


CASES = cases()


def strip_locations(text: str) -> str:
    """The module without its debug locations (file names and test names, e.g. "..._host_...")."""
    lines = (line for line in text.splitlines() if not line.startswith("#loc"))
    return "\n".join(re.sub(r"\s+loc\(.*\)\s*$", "", line) for line in lines)


def accelerator_problems(exp) -> list[str]:
    """Custom calls outside the allowlist, and host/callback mentions, in the exported module."""
    text = strip_locations(exp.mlir_module())
    targets = set(re.findall(r"custom_call\s*@([\w.$-]+)", text))
    targets |= set(re.findall(r'call_target_name\s*=\s*"([^"]+)"', text))
    found = [f"custom call {t}" for t in sorted(targets - ALLOWED_CUSTOM_CALLS)]
    found += [f"mentions {m}" for m in sorted({m.lower() for m in FORBIDDEN.findall(text)})]
    if exp.ordered_effects or exp.unordered_effects:
        found.append(f"effects {exp.ordered_effects} {exp.unordered_effects}")
    return found


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name", list(CASES))
def test_lowers_for_accelerators_without_host_calls(name, platform):
    f, args = CASES[name]
    exp = jax.export.export(jax.jit(f), platforms=(platform,))(*args)
    assert exp.platforms == (platform,)
    assert not accelerator_problems(exp), f"{name} on {platform}: {accelerator_problems(exp)}"


def test_a_host_callback_does_not_lower():
    """jax.export itself refuses a host callback (so the lowering step above fails on one)."""

    def f(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    with pytest.raises(Exception, match="(?i)callback"):
        jax.export.export(jax.jit(f), platforms=("cpu",))(spec((3,)))


def test_a_foreign_custom_call_is_reported():
    """A custom call jax would refuse, exported with that safety check off, is caught here."""

    def f(x):
        return jax.ffi.ffi_call("my_host_kernel", jax.ShapeDtypeStruct(x.shape, x.dtype))(x)

    off = [jax.export.DisabledSafetyCheck.custom_call("my_host_kernel")]
    exp = jax.export.export(jax.jit(f), platforms=("cuda",), disabled_checks=off)(spec((3,)))
    assert accelerator_problems(exp) == ["custom call my_host_kernel", "mentions host"]


@pytest.mark.parametrize("cell", jaxrnn.CELLS)
@pytest.mark.parametrize("checkpoint", [4, "sqrt"])
def test_checkpoint_with_a_symbolic_T_says_it_needs_a_static_T(cell, checkpoint):
    """Outside trial (issue 17): ``jax.export`` of ``jax.grad`` through a layer with
    ``checkpoint=`` and a symbolic T raised a raw ``InconclusiveDimensionOperation``."""
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    weights = (spec((D, G * H)), spec((H, G * H))) + (spec((G * H,)),) * (2 if cell == "gru" else 1)
    f = getattr(jaxrnn, cell)

    def loss(x, h0, *p):
        return f(x, h0, *p, checkpoint=checkpoint).sum()

    (t,) = jax.export.symbolic_shape("t")
    args = (spec((N, t, D)), spec((N, H)), *weights)
    with pytest.raises(ValueError, match=rf"{cell}: checkpoint needs a static sequence length T"):
        jax.export.export(jax.jit(jax.grad(loss, argnums=(0, 1))))(*args)
    jax.export.export(jax.jit(jax.grad(lambda x, h0, *p: f(x, h0, *p).sum())))(*args)  # no k: fine
