"""The tests' shared helpers: one tolerance table, one tree comparison, one autodiff oracle,
one custom_vjp path, one random-layer factory, one bad-input table format, and one spy
on the hand BPTT (the framework layers' proof that their gradients run it).

Every test file imports from here; nothing here is tested code (public jaxrnn names,
and ``_layer.backward_layer`` for the spy).
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import pytest

import jaxrnn
import jaxrnn._layer as layer
from jaxrnn import BiRNNParams, RNNParams, model
from jaxrnn.reference import scan_rnn

NAMES = ("dx", "dh0", "dWx", "dWh", "db")  # the order of rnn_backward's gradients

# Relative error max|a - b| / max(max|b|, 1). float64: the contract of MATH.md §7.
# float32: hand BPTT and autodiff sum the same terms in different orders (weight
# gradients as one matmul over N*T rows vs per-step accumulation), so they differ by
# rounding: a few ulps (eps32 = 1.2e-7) times the accumulation length (<= N*T = 24
# rows, T = 8 recursion steps) on O(1) values. Measured worst case ~1e-6; 2e-5 leaves
# headroom without hiding a real error (a wrong gradient is off by O(1)).
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}


def rel_err(a, b) -> float:
    """max|a - b| / max(max|b|, 1) in float64; shapes must agree; 0 for empty arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0))


def assert_tree_close(got, want, dtype=np.float64, what="", *, names=None, tol=None) -> float:
    """Every leaf of ``got`` within ``tol`` (default ``TOL[dtype]``) of ``want``'s, by rel_err.

    The pytree structures must agree. ``names`` labels the items of two flat sequences
    (e.g. ``NAMES`` for rnn_backward's five gradients; lists and tuples then compare
    alike). A failure lists every leaf over tolerance by its name or tree path.
    Returns the worst error.
    """
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    if names is not None:
        got = dict(zip(names, got, strict=True))
        want = dict(zip(names, want, strict=True))
    g_leaves, g_def = jax.tree_util.tree_flatten_with_path(got)
    w_leaves, w_def = jax.tree_util.tree_flatten(want)
    assert g_def == w_def, f"{what}: structure {g_def} vs {w_def}"
    errs = {
        jax.tree_util.keystr(path): rel_err(g, w)
        for (path, g), w in zip(g_leaves, w_leaves, strict=True)
    }
    bad = {k: e for k, e in errs.items() if not e <= tol}
    assert not bad, f"{what}: relative error > {tol:.0e} at " + ", ".join(
        f"{k or 'value'} {e:.3e}" for k, e in bad.items()
    )
    return max(errs.values(), default=0.0)


# --- The autodiff oracle and the custom_vjp path -------------------------------------------


@partial(jax.jit, static_argnames=("activation", "truncation"))
def autodiff_grads(
    dh, x, h0, Wx, Wh, b, *, activation, lengths=None, truncation=None, carry_weights=None
):
    """The oracle: jax.vjp of the naive lax.scan forward :func:`jaxrnn.reference.scan_rnn`
    (no custom_vjp) with its options: lengths (masked steps), truncation k (stop_gradient on
    the state entering t = k, 2k, ...), carry_weights ξ (gradient through that state times ξ_t).

    Returns ``(h, (dx, dh0, dWx, dWh, db))``.
    """
    f = partial(
        scan_rnn,
        activation=activation,
        lengths=lengths,
        truncation=truncation,
        carry_weights=carry_weights,
    )
    h, vjp = jax.vjp(f, x, h0, Wx, Wh, b)
    return h, vjp(dh)


@partial(jax.jit, static_argnames=("activation", "truncation"))
def custom_vjp_grads(
    dh, x, h0, Wx, Wh, b, *, activation, lengths=None, truncation=None, carry_weights=None
):
    """jax.grad of <dh, rnn(...)> through :func:`jaxrnn.rnn`, i.e. the hand BPTT via
    custom_vjp, with the same options as :func:`autodiff_grads`: (dx, dh0, dWx, dWh, db)."""
    kw = dict(
        activation=activation, lengths=lengths, truncation=truncation, carry_weights=carry_weights
    )

    def loss(*a):
        return (jaxrnn.rnn(*a, **kw) * dh).sum()

    return jax.grad(loss, argnums=(0, 1, 2, 3, 4))(x, h0, Wx, Wh, b)


# --- Random parameters (numpy only: nothing to compile per configuration) -------------------


def random_rnn_params(rng, D, H, dtype=np.float64) -> RNNParams:
    """RNNParams with Wx, Wh ~ Normal(0, 1/fan_in) and b ~ Normal(0, 0.01)."""
    return RNNParams(
        (rng.standard_normal((D, H)) / np.sqrt(D)).astype(dtype),
        (rng.standard_normal((H, H)) / np.sqrt(H)).astype(dtype),
        (rng.standard_normal(H) * 0.1).astype(dtype),
    )


def random_layers(rng, D, hidden_sizes, bidirectional=False, dtype=np.float64) -> tuple:
    """A stack as :func:`jaxrnn.init_stack` lays it out (RNNParams or BiRNNParams per layer,
    a bidirectional layer feeding 2H features up), with random numpy weights."""
    layers = []
    for H in hidden_sizes:
        if bidirectional:
            fwd = random_rnn_params(rng, D, H, dtype)
            layers.append(BiRNNParams(fwd, random_rnn_params(rng, D, H, dtype)))
        else:
            layers.append(random_rnn_params(rng, D, H, dtype))
        D = (2 if bidirectional else 1) * H
    return tuple(layers)


def random_model(rng, vocab, hidden_sizes, K, embed_size=3, bidirectional=False):
    """float64 ModelParams: embedding (vocab, E), a random stack, readout (D_top, K), c (K,)."""
    embed = rng.standard_normal((vocab, embed_size))
    layers = random_layers(rng, embed_size, hidden_sizes, bidirectional)
    d = (2 if bidirectional else 1) * hidden_sizes[-1]
    V = rng.standard_normal((d, K)) / np.sqrt(d)
    return model.ModelParams(embed, layers, V, rng.standard_normal(K) * 0.1)


# --- Bad-input tables ----------------------------------------------------------------------


def bad(id, call, exc, match):
    """One row of a bad-input table: ``call()`` must raise ``exc`` with a message matching
    the regex ``match``. Used as ``@pytest.mark.parametrize("call,exc,match", TABLE)``."""
    return pytest.param(call, exc, match, id=id)


def check_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def spy_on_backward(monkeypatch, factor=1.0):
    """Counts the runs of the core's hand BPTT (``_layer.backward_layer``, which the
    ``custom_vjp``'s backward rule calls) at run time, by a callback in the compiled program,
    and scales the weight gradients it returns by ``factor``."""
    real, calls = layer.backward_layer, []

    def spy(dh, cache, dstateT=None):
        jax.debug.callback(lambda: calls.append(cache.kind))
        dx, ds0, dp = real(dh, cache, dstateT)
        return dx, ds0, jax.tree.map(lambda a: factor * a, dp)

    monkeypatch.setattr(layer, "backward_layer", spy)
    jax.clear_caches()  # a cached trace would not call the backward again
    return calls


def layer_call_name() -> str:
    """The jaxpr name of a jaxrnn layer: the hijax primitive where jax has hijax
    (forward mode by hand), else the ``custom_vjp`` call (``jaxrnn._primitive``)."""
    from jaxrnn._primitive import FORWARD_MODE

    return "call_hi_primitive" if FORWARD_MODE else "custom_vjp_call"
