"""Shared comparison helpers and tolerances for the tests."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np

import jaxrnn
from jaxrnn.reference import scan_rnn

NAMES = ("dx", "dh0", "dWx", "dWh", "db")

# Relative error max|a - b| / max(max|b|, 1). float64: the contract of MATH.md §7.
# float32: hand BPTT and autodiff sum the same terms in different orders (weight
# gradients as one matmul over N*T rows vs per-step accumulation), so they differ by
# rounding: a few ulps (eps32 = 1.2e-7) times the accumulation length (<= N*T = 24
# rows, T = 8 recursion steps) on O(1) values. Measured worst case ~1e-6; 2e-5 leaves
# headroom without hiding a real error (a wrong gradient is off by O(1)).
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0))


def assert_close(got, want, dtype, names=NAMES, what=""):
    tol = TOL[np.dtype(dtype)]
    for name, g, w in zip(names, got, want, strict=True):
        err = rel_err(g, w)
        assert err <= tol, f"{what}{name}: relative error {err:.3e} > {tol:.0e}"


@partial(jax.jit, static_argnames="activation")
def autodiff_grads(dh, x, h0, Wx, Wh, b, activation):
    """jax.vjp of the naive lax.scan forward (no custom_vjp): the autodiff oracle."""
    h, vjp = jax.vjp(lambda *a: scan_rnn(*a, activation), x, h0, Wx, Wh, b)
    return h, vjp(dh)


@partial(jax.jit, static_argnames="activation")
def custom_vjp_grads(dh, x, h0, Wx, Wh, b, activation):
    """jax.grad through jaxrnn.rnn, i.e. the hand BPTT via custom_vjp."""

    def loss(*a):
        return (jaxrnn.rnn(*a, activation=activation) * dh).sum()

    return jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, h0, Wx, Wh, b)
