"""LSTM and GRU layers through the one layer walk: stacks, bidirectional, the model,
sampling steps and whole-model checkpointing, each against plain autodiff (float64).

The cell is inferred from the parameters' type; an LSTM layer's state is ``[h | c]``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import model, reference

CELLS = ("rnn", "lstm", "gru")
V = 7  # vocabulary (and K)
SHAPES = ((2, 5), (3, 9), (1, 0))  # (N, T), a bounded pool: one compile per shape and option


def _batch(seed, N, T, with_lengths):
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, V, (N, T)))
    targets = jnp.asarray(rng.integers(0, V, (N, T)))
    lengths = jnp.asarray(np.r_[T, rng.integers(0, T + 1, N - 1)]) if with_lengths else None
    return tokens, targets, lengths


def _params(cell, bidirectional, seed):
    p = model.init(jax.random.PRNGKey(seed), V, (4, 3), cell=cell, dtype=jnp.float64,
                   bidirectional=bidirectional)  # fmt: skip
    b = jax.tree.map(lambda a: a + 0.1, p)  # nonzero biases and states exercise every term
    return b


@settings(max_examples=12)  # each new (cell, shape, option) compiles three programs
@given(
    cell=st.sampled_from(CELLS),
    bidirectional=st.booleans(),
    shape=st.sampled_from(SHAPES),
    options=st.sampled_from(["none", "lengths", "lengths+truncation"]),
    seed=st.integers(0, 3),
)
def test_model_hand_equals_autodiff(cell, bidirectional, shape, options, seed):
    N, T = shape
    tokens, targets, lengths = _batch(seed, N, T, options != "none")
    p = _params(cell, bidirectional, seed)
    h0 = tuple(0.3 * jnp.ones_like(s) for s in model.init_state(p, N))
    kw = dict(h0=h0, lengths=lengths, truncation=2 if "truncation" in options else None)
    loss, grads, hT = model.loss_and_grads(p, tokens, targets, **kw)
    for grad in ("hand", "autodiff"):
        (l2, hT2), g2 = jax.value_and_grad(model.loss, has_aux=True)(
            p, tokens, targets, grad=grad, **kw
        )
        assert_tree_close((loss, grads, hT), (l2, g2, hT2), what=f"{cell} {grad}")


@pytest.mark.parametrize("cell", CELLS)
def test_stack_backward_equals_vjp_of_the_naive_scans(cell):
    N, T = 3, 6
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((N, T, 2)))
    layers = jaxrnn.init_stack(jax.random.PRNGKey(1), 2, (4, 3), cell=cell, dtype=jnp.float64,
                               bidirectional=True)  # fmt: skip
    lengths = jnp.asarray([6, 0, 4])
    zeros = model.init_state(model.ModelParams(None, layers, None, None), N)  # (N, S_l) each
    h0 = tuple(s + 0.2 for s in zeros)
    h, hT, cache = jaxrnn.stack_forward(x, h0, layers, lengths=lengths)
    dh = jnp.asarray(rng.standard_normal(h.shape))
    got = jaxrnn.stack_backward(dh, cache)

    def state(s):  # one direction's (N, S) array as the cell's pytree: h, or (h, c)
        return (s[:, : s.shape[-1] // 2], s[:, s.shape[-1] // 2 :]) if cell == "lstm" else s

    def naive(x, h0, layers):  # bidirectional layers of naive scans, for autodiff
        for s, p in zip(h0, layers, strict=True):
            S = s.shape[-1] // 2
            hf, _ = reference.scan_layer(cell, "tanh", x, state(s[:, :S]), p.fwd, lengths=lengths)
            xr = jaxrnn.reverse_within_lengths(x, lengths)
            hb, _ = reference.scan_layer(cell, "tanh", xr, state(s[:, S:]), p.bwd, lengths=lengths)
            x = jnp.concatenate([hf, jaxrnn.reverse_within_lengths(hb, lengths)], axis=-1)
        return x

    h_ref, vjp = jax.vjp(naive, x, h0, layers)
    assert_tree_close(h, h_ref, what="h")
    assert_tree_close(got, vjp(dh), what=f"{cell} stack")


@pytest.mark.parametrize("cell", CELLS)
def test_predict_step_walks_the_same_states_as_the_sequence(cell):
    p = _params(cell, False, 0)
    tokens, targets, _ = _batch(0, 2, 5, False)
    _, _, hT = model.loss_and_grads(p, tokens, targets)
    state = model.init_state(p, 2)
    for t in range(5):
        scores, state = model.predict_step(p, tokens[:, t], state)
    assert_tree_close(state, hT, what=f"{cell} predict_step")


@pytest.mark.parametrize("cell", ("lstm", "gru"))
@pytest.mark.parametrize("k", [1, 4, "sqrt"])
def test_checkpointed_model_equals_full_store(cell, k):
    p = _params(cell, False, 1)
    tokens, targets, lengths = _batch(1, 3, 9, True)
    full = model.loss_and_grads(p, tokens, targets, lengths=lengths, truncation=3)
    seg = model.loss_and_grads(p, tokens, targets, lengths=lengths, truncation=3, checkpoint=k)
    assert_tree_close(seg, full, what=f"{cell} checkpoint={k}")


def test_a_layer_of_another_type_is_refused():
    p = model.init(jax.random.PRNGKey(0), V, (4,))
    bad = p._replace(layers=({"Wx": 1},))
    with pytest.raises(TypeError, match=r"a layer must be one of .*LSTMParams.* got dict"):
        model.loss_and_grads(bad, jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2), jnp.int32))


def test_lstm_state_shape_message_says_h_and_c():
    p = model.init(jax.random.PRNGKey(0), V, (4,), cell="lstm")
    with pytest.raises(
        ValueError, match=r"h0\[0\] must have shape \(N, H_0\) = \(1, 8\) \(an LSTM"
    ):
        model.loss_and_grads(p, jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2), jnp.int32),
                             h0=(jnp.zeros((1, 4)),))  # fmt: skip
