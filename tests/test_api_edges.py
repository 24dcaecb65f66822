"""Library API edges found by outside trials: each test failed on the code before the fix.

Concrete values captured inside ``jit``, silent wrap-around of int64 lengths, NaN
instead of a finite wrong loss, and a jaxrnn message (naming the argument) instead
of a raw framework error.
"""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxrnn
from jaxrnn import model

N, T, D, H = 3, 5, 2, 4


@pytest.fixture(scope="module")
def problem():
    k = jax.random.PRNGKey(0)
    x = jax.random.normal(k, (N, T, D))
    h0 = jnp.zeros((N, H))
    return x, h0, jaxrnn.init_params(k, D, H, jnp.float64)


def test_concrete_lengths_captured_inside_jit(problem):
    x, h0, p = problem
    lj = jnp.array([5, 2, 0])

    def loss(x):
        return jaxrnn.final_state(jaxrnn.rnn(x, h0, *p, lengths=lj), h0, lj).sum()

    got = jax.jit(jax.grad(loss))(x)
    assert np.allclose(got, jax.grad(loss)(x), rtol=0, atol=1e-12)


def test_concrete_bad_lengths_captured_inside_jit_still_raise(problem):
    x, h0, p = problem
    bad = jnp.array([6, 2, 0])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\]"):
        jax.jit(lambda x: jaxrnn.rnn(x, h0, *p, lengths=bad))(x)


def test_concrete_tokens_captured_inside_jit():
    p = model.init(jax.random.PRNGKey(0), 7, (4,), dtype=jnp.float64)
    tok, tgt = jnp.array([[1, 2], [3, 4]]), jnp.array([[2, 3], [4, 5]])
    got = jax.jit(lambda p: model.loss_and_grads(p, tok, tgt)[0])(p)
    assert np.isclose(got, model.loss_and_grads(p, tok, tgt)[0])
    bad = tgt + 3  # 8 >= K = 7, a concrete array captured by the jitted function
    with pytest.raises(ValueError, match="targets"):
        jax.jit(lambda p: model.loss_and_grads(p, tok, bad)[0])(p)


def test_int64_lengths_beyond_int32_do_not_wrap(problem):
    x, h0, p = problem
    with pytest.raises(ValueError, match="4294967302"):
        jaxrnn.rnn(x, h0, *p, lengths=np.array([2**32 + 6, 1, 1], np.int64))


@pytest.mark.parametrize("fn", ["loss", "loss_and_grads"])
def test_out_of_range_target_under_jit_is_nan_on_both_paths(fn):
    p = model.init(jax.random.PRNGKey(0), 7, (5,), dtype=jnp.float64)
    tok = jnp.zeros((2, 3), jnp.int32)
    tgt = jnp.array([[1, 2, 9], [0, 0, 0]])  # 9 >= K = 7, unchecked under jit
    value = jax.jit(lambda t: getattr(model, fn)(p, tok, t)[0])(tgt)
    assert np.isnan(value)
    masked = jnp.array([[1, 1, 0], [1, 1, 1]])  # the bad target not counted: finite
    assert np.isfinite(jax.jit(lambda t: getattr(model, fn)(p, tok, t, mask=masked)[0])(tgt))


def test_checkify_check_of_ids():
    tgt = jnp.array([[1, 2, 9], [0, 0, 0]])
    err, _ = jax.jit(checkify.checkify(lambda t: model.check_ids_in_range(t, 7)))(tgt)
    assert "ids must lie in [0, 7)" in err.get()
    err, _ = jax.jit(checkify.checkify(lambda t: model.check_ids_in_range(t, 10)))(tgt)
    assert err.get() is None
    with pytest.raises(ValueError, match=r"max 9"):
        model.check_ids_in_range(np.asarray(tgt), 7)


BAD = {
    "x-string": (lambda x, h0, p: jaxrnn.rnn("abc", h0, *p), TypeError, "rnn: x must be an array"),
    "x-string-forward": (
        lambda x, h0, p: jaxrnn.rnn_forward("abc", h0, *p),
        TypeError,
        "rnn_forward: x must be an array",
    ),
    "activation-list": (
        lambda x, h0, p: jaxrnn.rnn(x, h0, *p, activation=["tanh"]),
        ValueError,
        "rnn: activation must be a name",
    ),
    "stack-h0-None": (
        lambda x, h0, p: jaxrnn.stack_forward(x, None, (p,)),
        ValueError,
        "stack_forward: h0 must be a sequence",
    ),
    "dh-list": (
        lambda x, h0, p: jaxrnn.rnn_backward(
            np.ones((N, T, H)).tolist(), jaxrnn.rnn_forward(x, h0, *p)[1]
        ),
        TypeError,
        "rnn_backward: dh must be an array",
    ),
    "init-float16": (
        lambda x, h0, p: jaxrnn.init_params(jax.random.PRNGKey(0), D, H, jnp.float16),
        TypeError,
        r"init_rnn_params: dtype must be float32 or float64 \(for float16/bfloat16, "
        r"initialise in float32 and cast\), got float16",
    ),
    "checkpoint-zero": (
        lambda x, h0, p: jaxrnn.rnn(x, h0, *p, checkpoint=0),
        ValueError,
        "rnn: checkpoint must be None, a positive int",
    ),
    "checkpoint-word": (
        lambda x, h0, p: jaxrnn.rnn_forward(x, h0, *p, checkpoint="half"),
        ValueError,
        "rnn_forward: checkpoint must be",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_gets_a_jaxrnn_message(problem, case):
    call, exc, match = BAD[case]
    with pytest.raises(exc, match=match):
        call(*problem)


def test_numpy_int_truncation_is_accepted(problem):
    x, h0, p = problem
    a = jaxrnn.rnn(x, h0, *p, truncation=np.int64(2))
    assert np.array_equal(a, jaxrnn.rnn(x, h0, *p, truncation=2))
    dWh = jax.grad(lambda W: jaxrnn.rnn(x, h0, p.Wx, W, p.b, truncation=np.int64(2)).sum())
    assert np.allclose(
        dWh(p.Wh), jax.grad(lambda W: jaxrnn.rnn(x, h0, p.Wx, W, p.b, truncation=2).sum())(p.Wh)
    )


def test_shard_map_recipe_matches_one_device():
    """README recipe: inside shard_map, cast replicated weights to varying, psum grads."""
    script = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax, jax.numpy as jnp, jaxrnn
        from jax.sharding import NamedSharding, PartitionSpec as P
        k = jax.random.PRNGKey(0)
        x, h0 = jax.random.normal(k, (4, 5, 3)), jnp.zeros((4, 6))
        p = jaxrnn.init_params(k, 3, 6)
        mesh = jax.make_mesh((2,), ("b",))
        def grads(p, x, h0):
            p = jax.tree.map(lambda a: jax.lax.pcast(a, "b", to="varying"), p)
            g = jax.grad(lambda p: (jaxrnn.rnn(x, h0, *p) ** 2).sum())(p)
            return jax.tree.map(lambda a: jax.lax.psum(a, "b"), g)
        f = jax.jit(jax.shard_map(grads, mesh=mesh, in_specs=(P(), P("b"), P("b")), out_specs=P()))
        put = lambda a: jax.device_put(a, NamedSharding(mesh, P("b")))
        g = f(p, put(x), put(h0))
        ref = jax.grad(lambda p: (jaxrnn.rnn(x, h0, *p) ** 2).sum())(p)
        print(max(float(abs(a - b).max()) for a, b in zip(g, ref)))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


# --- found by the independent review of the engine wave (each failed before its fix) ---
T7 = 7


@pytest.fixture(scope="module")
def small_model():
    return model.init(jax.random.PRNGKey(0), 7, (4, 3), dtype=jnp.float32)


REVIEW = {
    "xi-length-checkpoint": (
        lambda p, tok: model.loss_and_grads(p, tok, tok, carry_weights=jnp.ones(5), checkpoint=3),
        ValueError,
        r"loss_and_grads: carry_weights must have shape \(T,\) = \(7,\)",
    ),
    "xi-length-loss": (
        lambda p, tok: model.loss(p, tok, tok, carry_weights=jnp.ones(9)),
        ValueError,
        r"loss: carry_weights must have shape \(T,\) = \(7,\)",
    ),
    "h0-dtype": (
        lambda p, tok: model.loss(p, tok, tok, h0=(jnp.zeros((2, 4)), jnp.zeros((2, 3)))),
        TypeError,
        r"loss: h0\[0\] must have the weights' dtype float32, got float64",
    ),
    "V-shape": (
        lambda p, tok: model.loss(p._replace(V=jnp.zeros((5, 7), jnp.float32)), tok, tok),
        ValueError,
        r"loss: V.shape\[0\] must equal the top layer's output size. Expected 3, got 5",
    ),
    "layer-input-size-loss": (
        lambda p, tok: model.loss(
            p._replace(layers=(p.layers[0], jaxrnn.init_params(jax.random.PRNGKey(1), 5, 3))),
            tok,
            tok,
        ),
        ValueError,
        r"loss \(layer 1\): x.shape\[-1\] must equal Wx.shape\[0\]",
    ),
    "gated-activation": (
        lambda p, tok: model.loss_and_grads(
            model.init(jax.random.PRNGKey(0), 7, (4,), cell="lstm"), tok, tok, activations="relu"
        ),
        ValueError,
        r"loss_and_grads \(layer 0\): the LSTM's gates use sigmoid and tanh; activation "
        r"applies to the vanilla RNN only and must stay 'tanh' here, got 'relu'",
    ),
    "bidirectional-mixed-cells": (
        lambda p, tok: jaxrnn.stack_forward(
            jnp.zeros((2, 3, 3)),
            (jnp.zeros((2, 12)),),
            (
                jaxrnn.BiRNNParams(
                    jaxrnn.init_lstm_params(jax.random.PRNGKey(0), 3, 4),
                    jaxrnn.init_gru_params(jax.random.PRNGKey(1), 3, 4),
                ),
            ),
        ),
        ValueError,
        "fwd and bwd must be the same cell",
    ),
}


@pytest.mark.parametrize("case", list(REVIEW), ids=list(REVIEW))
def test_review_finding_is_refused_with_a_message(small_model, case):
    call, exc, match = REVIEW[case]
    tok = jnp.zeros((2, T7), jnp.int32)
    with pytest.raises(exc, match=match):
        call(small_model, tok)


def test_checkify_ids_reports_min_and_max_of_the_counted_ids():
    f = jax.jit(checkify.checkify(lambda t, w: model.check_ids_in_range(t, 3, where=w)))
    assert "got min 4, max 7" in f(jnp.array([5, 7, 4]), jnp.array([1, 1, 1]))[0].get()
    assert "got min 1, max 9" in f(jnp.array([1, 9, -100]), jnp.array([1, 1, 0]))[0].get()
    assert f(jnp.array([1, 2, -100]), jnp.array([1, 1, 0]))[0].get() is None
