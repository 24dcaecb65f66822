"""Exact RTRL (MATH.md §11, ``jaxrnn.rtrl``): the online gradient of the summed loss equals
BPTT's (``jax.grad`` through ``jaxrnn.rnn``/``lstm``/``gru``, the hand rule) for every cell,
with and without lengths, over ``test_cells``' shape pool (T = 0 and N = 0 included)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close, bad, check_raises
from hypothesis import given
from hypothesis import strategies as st
from test_cells import LAYER, Problem, examples, make, problems

import jaxrnn

CELLS = jaxrnn.CELLS
SHAPES = ((1, 1, 1, 1), (2, 0, 3, 2), (0, 3, 2, 3), (2, 5, 3, 2), (3, 8, 2, 4))


def squared_error(h, y):
    """One sequence's loss at one step, ``h, y: (H,)``."""
    return jnp.sum((h - y) ** 2)


def log_cosh(h, y):
    """A second loss with a different shape of error term."""
    return jnp.sum(jnp.log(jnp.cosh(h * y + 0.3)))


def bptt(q: Problem, loss_step, y, lengths):
    """``(E, ∂E/∂θ)`` by ``jax.grad`` through the layer (the hand BPTT), E summed over the
    valid steps as ``rtrl`` defines it."""
    N, T = q.x.shape[:2]
    valid = np.ones((N, T)) if lengths is None else np.arange(T)[None] < lengths[:, None]

    def loss(p):
        h = LAYER[q.cell](q.x, q.s0, *p, activation=q.act, lengths=lengths)
        per_step = jax.vmap(jax.vmap(loss_step))(h, y)  # (N, T)
        return jnp.sum(jnp.where(valid, per_step, jnp.zeros_like(per_step)))

    return jax.value_and_grad(loss)(q.p)


@examples(12)
@pytest.mark.parametrize("cell", CELLS)
@given(
    data=st.data(), with_lengths=st.booleans(), loss_step=st.sampled_from((squared_error, log_cosh))
)
def test_rtrl_gradient_equals_bptt(cell, data, with_lengths, loss_step):
    """RTRL's summed loss and gradient == BPTT's (relative 1e-12), lengths 0 .. T."""
    q = data.draw(problems(cell, shapes=SHAPES))
    N, T, H = *q.x.shape[:2], q.p[1].shape[0]
    y = np.random.default_rng(T + N).standard_normal((N, T, H))
    lengths = None
    if with_lengths:
        values = st.lists(st.sampled_from((0, T, T // 2)), min_size=N, max_size=N)
        lengths = np.asarray(data.draw(values), np.int32)
    E, grads = jaxrnn.rtrl(cell, loss_step, q.x, q.s0, q.p, y, activation=q.act, lengths=lengths)
    E_bptt, grads_bptt = bptt(q, loss_step, y, lengths)
    assert_tree_close((E, tuple(grads)), (E_bptt, tuple(grads_bptt)), what=cell, tol=1e-12)


def test_rtrl_returns_the_cells_params_type():
    q = make("gru", (2, 3, 2, 2), seed=0)
    y = np.zeros((2, 3, 2))
    _, grads = jaxrnn.rtrl("gru", squared_error, q.x, q.s0, q.p, y)
    assert isinstance(grads, jaxrnn.GRUParams)


def _q():
    return make("rnn", (2, 3, 2, 2), seed=0)


BAD = [
    bad("unknown-cell", lambda: jaxrnn.rtrl("tcn", squared_error, _q().x, _q().s0, _q().p,
                                            np.zeros((2, 3, 2))), ValueError,
        r"rtrl: cell must be one of"),
    bad("loss-not-callable", lambda: jaxrnn.rtrl("rnn", 3.0, _q().x, _q().s0, _q().p,
                                                 np.zeros((2, 3, 2))), TypeError,
        r"rtrl: loss_step must be a function"),
    bad("gated-activation", lambda: jaxrnn.rtrl("lstm", squared_error, _q().x, _q().s0,
                                                _q().p, np.zeros((2, 3, 2)),
                                                activation="relu"), ValueError, r"rtrl"),
    bad("lengths-out-of-range", lambda: jaxrnn.rtrl("rnn", squared_error, _q().x, _q().s0,
                                                    _q().p, np.zeros((2, 3, 2)),
                                                    lengths=np.array([4, 0])), ValueError,
        r"rtrl: lengths"),
    bad("x-rank", lambda: jaxrnn.rtrl("rnn", squared_error, _q().x[0], _q().s0, _q().p,
                                      np.zeros((2, 3, 2))), ValueError, r"rtrl: x must be 3-D"),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)
