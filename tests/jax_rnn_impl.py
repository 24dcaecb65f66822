"""A plain JAX user implementation: a jitted lax.scan forward and a jax.vjp backward."""

import jax
import jax.numpy as jnp

SHAPES_SEEN: set = set()  # (N, T, D, H) of every call: each new one costs a compile


@jax.jit
def _scan_forward(x, h0, Wx, Wh, b):
    def step(h, x_t):
        h = jnp.tanh(x_t @ Wx + h @ Wh + b[None])
        return h, h

    _, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))  # (T, N, H)
    return jnp.swapaxes(hs, 0, 1)


def rnn_forward(x, h0, Wx, Wh, b):
    SHAPES_SEEN.add(x.shape + h0.shape[-1:])
    return jax.vjp(_scan_forward, x, h0, Wx, Wh, b)  # (h, the vjp function as cache)


def rnn_backward(dh, vjp):
    return vjp(dh)
