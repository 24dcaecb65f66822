"""The dtypes the functions accept (issue 17): float16 and bfloat16 run and keep their
dtype, within the errors the README states; anything else is refused by a message
that lists what is accepted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import rel_err

import jaxrnn

N, T, D, H = 4, 16, 8, 16
INIT = {
    "rnn": jaxrnn.init_rnn_params,
    "lstm": jaxrnn.init_lstm_params,
    "gru": jaxrnn.init_gru_params,
}
# README, "API": measured worst of 5 seeds 2.5e-3 (float16) and 1.7e-2 (bfloat16), relative
# to the largest gradient; the bounds leave 4x headroom (a wrong gradient is off by O(1)).
HALF_TOL = {jnp.float16: 1e-2, jnp.bfloat16: 7e-2}


def grads(cell, dtype, seed=0):
    p = INIT[cell](jax.random.PRNGKey(seed), D, H, jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(seed + 100), (N, T, D), jnp.float64)
    g = jax.random.normal(jax.random.PRNGKey(seed + 200), (N, T, H), jnp.float64)
    f = getattr(jaxrnn, cell)

    def loss(x, h0, p):
        h = f(x, h0, *p)
        assert h.dtype == dtype  # outputs keep the input dtype
        return jnp.sum(h.astype(jnp.float64) * g)

    args = jax.tree.map(lambda a: a.astype(dtype), (x, jnp.zeros((N, H)), p))
    return jax.grad(loss, argnums=(0, 1, 2))(*args)


@pytest.mark.parametrize("cell", jaxrnn.CELLS)
@pytest.mark.parametrize("dtype", list(HALF_TOL), ids=lambda d: jnp.dtype(d).name)
def test_half_precision_runs_within_the_documented_error(cell, dtype):
    want, got = grads(cell, jnp.float64), grads(cell, dtype)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == dtype
        assert rel_err(np.asarray(a.astype(jnp.float64)), b) < HALF_TOL[dtype]


@pytest.mark.parametrize("cell", jaxrnn.CELLS)
def test_a_non_float_dtype_is_refused_naming_what_is_accepted(cell):
    p = INIT[cell](jax.random.PRNGKey(0), D, H)
    x = np.zeros((N, T, D), np.int32)
    with pytest.raises(TypeError, match=r"float16, bfloat16, float32 or float64\), got int32"):
        getattr(jaxrnn, cell)(x, jnp.zeros((N, H)), *p)
