"""jaxrnn.eqx (``RNN``, ``LSTM``, ``GRU`` as ``eqx.Module``s) and the converters to and from
``eqx.nn.LSTMCell`` / ``eqx.nn.GRUCell`` (issue 18).

The oracle is equinox's own documented loop: a ``lax.scan`` of its cells (a plain cell
function for the vanilla RNN, which equinox lacks), masked under a length, the second
direction on the sequence reversed within its length. The module must match its outputs,
final states and every gradient to 1e-12 in float64, and its gradient must be the core's
hand BPTT (a spy on the custom_vjp's backward).
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close, bad, check_raises, layer_call_name, spy_on_backward

import jaxrnn
from jaxrnn import BiRNNParams, GRUParams, LSTMParams

eqx = pytest.importorskip("equinox")
import jaxrnn.eqx as jeqx  # noqa: E402
from jaxrnn.convert._equinox import (  # noqa: E402
    from_eqx_gru_cell,
    from_eqx_lstm_cell,
    to_eqx_gru_cell,
    to_eqx_lstm_cell,
)

T, D, H = 6, 3, 4  # D != H
TOL = 1e-12
MODULES = {"rnn": jeqx.RNN, "lstm": jeqx.LSTM, "gru": jeqx.GRU}
EQX_CELLS = {"lstm": ("LSTMCell", from_eqx_lstm_cell), "gru": ("GRUCell", from_eqx_gru_cell)}


# --- The oracle: equinox's loop -------------------------------------------------------------


def hidden(s):
    return s[0] if isinstance(s, tuple) else s


def masked_scan(step, w, x, s0, length):
    """``s_t = step(w, x_t, s_{t-1})`` for t < length, then frozen; ``h_t`` zero at padding."""
    L = x.shape[0] if length is None else length

    def body(s, xt_t):
        xt, t = xt_t
        new = jax.tree.map(lambda n, o: jnp.where(t < L, n, o), step(w, xt, s), s)
        return new, jnp.where(t < L, hidden(new), 0.0)

    sT, h = jax.lax.scan(body, s0, (x, jnp.arange(x.shape[0])))
    return h, sT


def reverse(x, length):
    """``x[length - 1 - t]`` for t < length, padding in place (written apart from jaxrnn's)."""
    t = jnp.arange(x.shape[0])
    L = x.shape[0] if length is None else length
    return x[jnp.where(t < L, L - 1 - t, t)]


def oracle(step, ws, x, state0, length, bidirectional):
    """The stack in equinox's manner: ``ws`` per layer (a (fwd, bwd) pair when bidirectional),
    ``state0`` as the module takes it. Returns ``(h, state_T)``."""
    multi = len(ws) > 1
    h, final = x, []
    for w, s in zip(ws, state0 if multi else (state0,), strict=True):
        if bidirectional:
            hf, sf = masked_scan(step, w[0], h, s[0], length)
            hb, sb = masked_scan(step, w[1], reverse(h, length), s[1], length)
            h = jnp.concatenate([hf, reverse(hb, length)], axis=-1)
            final.append((sf, sb))
        else:
            h, sT = masked_scan(step, w, h, s, length)
            final.append(sT)
    return h, tuple(final) if multi else final[0]


def eqx_step(cell, xt, s):
    return cell(xt, s)


def rnn_step(activation):
    f = jaxrnn.ACTIVATIONS[activation].fn
    return lambda p, xt, h: f(xt @ p.Wx + h @ p.Wh + p.b)  # MATH.md §1, as a plain function


def random_cells(cell, num_layers, bidirectional, key):
    """Equinox cells per layer (pairs when bidirectional) with non-zero biases everywhere."""
    name, _ = EQX_CELLS[cell]
    out, d = [], D
    for k in jax.random.split(key, num_layers):
        kf, kb = jax.random.split(k)
        make = lambda k: getattr(eqx.nn, name)(d, H, key=k)  # noqa: B023, E731
        out.append((make(kf), make(kb)) if bidirectional else make(kf))
        d = 2 * H if bidirectional else H
    return tuple(out)


def case(cell, num_layers, bidirectional, seed=0):
    """``(module, step, ws)``: the module and the oracle's weights holding the same function."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    kw = {"activation": "sigmoid"} if cell == "rnn" else {}
    m = MODULES[cell](D, H, num_layers=num_layers, bidirectional=bidirectional, key=k1, **kw)
    if cell == "rnn":
        return m, rnn_step("sigmoid"), m.layers
    ws = random_cells(cell, num_layers, bidirectional, k2)
    conv = EQX_CELLS[cell][1]
    layers = tuple(BiRNNParams(conv(w[0]), conv(w[1])) if bidirectional else conv(w) for w in ws)
    return eqx.tree_at(lambda m: m.layers, m, layers), eqx_step, ws


def inputs(m, seed=1):
    """Random ``x (T, D)``, ``state0`` in the module's structure, and the loss's weights."""
    rng = np.random.default_rng(seed)
    zero = m._zero_state()

    def draw(shape):
        return jnp.asarray(rng.standard_normal(shape))

    state0 = jax.tree.map(lambda z: 0.5 * draw(z.shape), zero)
    gs = jax.tree.map(lambda z: draw(z.shape), zero)
    H_out = 2 * H if m.bidirectional else H
    return draw((T, D)), state0, draw((T, H_out)), gs


def loss_of(run, gh, gs):
    """``vdot(h, gh) + Σ vdot(state_T, gs)``, with ``(h, state_T)`` as aux."""

    def loss(args):
        h, sT = run(*args)
        terms = jax.tree.leaves(jax.tree.map(jnp.vdot, sT, gs))
        return jnp.vdot(h, gh) + sum(terms), (h, sT)

    return eqx.filter_jit(eqx.filter_value_and_grad(loss, has_aux=True))


def as_jaxrnn_grads(cell, g):
    """Gradients of equinox cells in jaxrnn's layout: through the converter (linear), except
    the GRU's ``bh_r``, ``bh_z``, which equinox lacks; they enter where ``bx_r``, ``bx_z`` do."""
    p = EQX_CELLS[cell][1](g)
    if cell == "gru":
        p = p._replace(bh=jnp.concatenate([p.bx[: 2 * H], p.bh[2 * H :]]))
    return p


# --- The module against the oracle ----------------------------------------------------------

# (cell, num_layers, bidirectional, length). The LSTM, whose state is a pair, takes a pairwise
# design (every two factors' values meet once); the RNN and GRU take a length and a
# bidirectional layer once each, and two layers. Each case compiles two programs.
CASES = {
    "lstm-1": ("lstm", 1, False, None),
    "lstm-1bi-length4": ("lstm", 1, True, 4),
    "lstm-2-length4": ("lstm", 2, False, 4),
    "lstm-2bi": ("lstm", 2, True, None),
    "gru-1bi-length4": ("gru", 1, True, 4),
    "gru-2": ("gru", 2, False, None),
    "rnn-1bi-length4": ("rnn", 1, True, 4),
    "rnn-2": ("rnn", 2, False, None),
}


@pytest.mark.parametrize("cell,num_layers,bidirectional,length", CASES.values(), ids=CASES)
def test_module_matches_equinox_scan(cell, num_layers, bidirectional, length):
    """Outputs, final states and the gradients in x, state0 and every weight equal the oracle's
    to 1e-12 (float64)."""
    m, step, ws = case(cell, num_layers, bidirectional)
    x, s0, gh, gs = inputs(m)
    (_, (h, sT)), (gm, gx, gs0) = loss_of(lambda m, x, s: m(x, s, length=length), gh, gs)(
        (m, x, s0)
    )
    run = lambda ws, x, s: oracle(step, ws, x, s, length, bidirectional)  # noqa: E731
    (_, (h_o, sT_o)), (gw, gx_o, gs0_o) = loss_of(run, gh, gs)((ws, x, s0))
    if cell != "rnn":
        gw = jax.tree.map(
            lambda c: as_jaxrnn_grads(cell, c), gw, is_leaf=lambda c: isinstance(c, eqx.Module)
        )
        gw = tuple(BiRNNParams(*w) if bidirectional else w for w in gw)
    worst = max(
        assert_tree_close(h, h_o, what="h", tol=TOL),
        assert_tree_close(sT, sT_o, what="state_T", tol=TOL),
        assert_tree_close((gx, gs0), (gx_o, gs0_o), what="dx, dstate0", tol=TOL),
        assert_tree_close(gm.layers, gw, what="dweights", tol=TOL),
    )
    print(f"max rel err {worst:.2e}")
    if length is not None:  # the padding: zero outputs, and the state is the one at `length`
        assert not np.any(np.asarray(h[length:]))


# --- vmap over the unbatched call against the batched core ----------------------------------


def vmapped(m, xs, s0s, lengths):
    return jax.vmap(lambda x, s, n: m(x, s, length=n))(xs, s0s, lengths)


def batch(m, seed=2, N=3):
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.standard_normal((N, T, D)))
    s0s = jax.tree.map(lambda z: jnp.asarray(rng.standard_normal((N, *z.shape))), m._zero_state())
    return xs, s0s, jnp.array([T, 0, 3])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_vmap_equals_the_batched_core(cell):
    """``jax.vmap`` of the unbatched call (per-example lengths, one of them 0) equals
    ``jaxrnn.<cell>`` on the batch: outputs, final states and ``jax.grad`` of every input."""
    m = MODULES[cell](D, H, key=jax.random.key(3))
    xs, s0s, lengths = batch(m)
    p = m.layers[0]

    def core(p, xs, s0s):
        return getattr(jaxrnn, cell)(xs, s0s, *p, lengths=lengths, return_state=True)

    def via_module(p, xs, s0s):
        return vmapped(eqx.tree_at(lambda m: m.layers, m, (p,)), xs, s0s, lengths)

    def value_and_grads(f):  # ((loss, (h, state_T)), grads in p, xs, s0s)
        def loss(*a):
            out = f(*a)
            return sum(jnp.sum(v**2) for v in jax.tree.leaves(out)), out

        return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(p, xs, s0s)

    assert_tree_close(value_and_grads(via_module), value_and_grads(core), tol=TOL)


@pytest.mark.parametrize("cell", ["lstm"])
def test_vmapped_bidirectional_stack_equals_stack_forward(cell):
    """Two bidirectional layers under ``eqx.filter_vmap`` equal :func:`jaxrnn.stack_forward`
    (whose states are ``[h | c]`` per direction, fwd then bwd)."""
    m = MODULES[cell](D, H, num_layers=2, bidirectional=True, key=jax.random.key(4))
    xs, s0s, lengths = batch(m)
    h, sT = eqx.filter_vmap(lambda x, s, n: m(x, s, length=n))(xs, s0s, lengths)
    join = lambda s: jnp.concatenate(jax.tree.leaves(s), axis=-1)  # noqa: E731
    h_s, sT_s, _ = jaxrnn.stack_forward(xs, [join(s) for s in s0s], m.layers, lengths=lengths)
    assert_tree_close((h, [join(s) for s in sT]), (h_s, list(sT_s)), what="stack", tol=TOL)


# --- The gradient is the hand BPTT ----------------------------------------------------------


@pytest.mark.parametrize("cell,bidirectional", [("rnn", False), ("lstm", True), ("gru", False)])
def test_filter_grad_runs_the_hand_bptt(cell, bidirectional, monkeypatch):
    """Under ``eqx.filter_jit(eqx.filter_grad)`` of a vmapped call, the core's custom_vjp
    backward runs once per direction, and its result is the gradient: scaled by 2 there,
    the module's weight gradients double. The forward jaxpr holds the layer call."""
    m = MODULES[cell](D, H, bidirectional=bidirectional, key=jax.random.key(5))
    xs, s0s, lengths = batch(m)

    def loss(m):
        return jnp.sum(vmapped(m, xs, s0s, lengths)[0] ** 2)

    jaxpr = eqx.filter_make_jaxpr(lambda m: vmapped(m, xs, s0s, lengths))(m)[0]
    assert layer_call_name() in str(jaxpr)
    g1 = eqx.filter_jit(eqx.filter_grad(loss))(m)
    calls = spy_on_backward(monkeypatch, factor=2.0)
    g2 = eqx.filter_jit(eqx.filter_grad(loss))(m)
    jax.effects_barrier()
    assert calls == [cell] * (1 + bidirectional), calls  # once per direction
    assert_tree_close(g2.layers, jax.tree.map(lambda a: 2 * a, g1.layers), tol=TOL)


# --- Converters -----------------------------------------------------------------------------

CONVERTERS = {"lstm": (to_eqx_lstm_cell, from_eqx_lstm_cell),
              "gru": (to_eqx_gru_cell, from_eqx_gru_cell)}  # fmt: skip


def assert_same_module(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b), (a, b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_converter_round_trips_are_exact(cell, use_bias):
    """equinox -> jaxrnn -> equinox and jaxrnn -> equinox -> jaxrnn give back the same arrays,
    bit for bit; a cell without bias reads as zeros and writes back without bias."""
    to_eqx, from_eqx = CONVERTERS[cell]
    c = getattr(eqx.nn, EQX_CELLS[cell][0])(D, H, use_bias=use_bias, key=jax.random.key(6))
    p = from_eqx(c)
    assert_same_module(to_eqx(p, use_bias=use_bias), c)
    assert_same_module(from_eqx(to_eqx(p, use_bias=use_bias)), p)
    if not use_bias:
        assert not any(np.any(np.asarray(b)) for b in p[2:])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_exported_cell_computes_the_core_layer(cell):
    """A scan of the exported equinox cell equals ``jaxrnn.<cell>`` with the same weights
    (the gate order and bias mapping of the export)."""
    rng = np.random.default_rng(7)
    p = jaxrnn.init_lstm_params if cell == "lstm" else jaxrnn.init_gru_params
    p = p(jax.random.key(7), D, H, jnp.float64)
    G = 4 if cell == "lstm" else 3
    biases = [jnp.asarray(rng.standard_normal(G * H)) for _ in p[2:]]
    if cell == "gru":  # equinox has no bh_r, bh_z
        biases[1] = biases[1].at[: 2 * H].set(0.0)
    p = p._replace(**dict(zip(p._fields[2:], biases, strict=True)))
    c = CONVERTERS[cell][0](p)
    x = jnp.asarray(rng.standard_normal((T, D)))
    s0 = jax.tree.map(jnp.asarray, (rng.standard_normal(H), rng.standard_normal(H)))
    s0 = s0 if cell == "lstm" else s0[0]
    want = masked_scan(eqx_step, c, x, s0, None)
    batched = jax.tree.map(lambda a: a[None], s0)
    h, sT = getattr(jaxrnn, cell)(x[None], batched, *p, return_state=True)
    assert_tree_close((h[0], jax.tree.map(lambda a: a[0], sT)), want, tol=TOL)


def test_dtypes_follow_equinox():
    """dtype=None is float64 under x64 (equinox's default); half precisions are drawn in
    float32 and cast; the converters keep the dtype."""
    key = jax.random.key(8)
    assert jeqx.GRU(D, H, key=key).layers[0].Wx.dtype == jnp.float64
    m = jeqx.LSTM(D, H, dtype=jnp.bfloat16, key=key)
    assert {a.dtype for a in jax.tree.leaves(m)} == {jnp.dtype(jnp.bfloat16)}
    c = to_eqx_lstm_cell(jeqx.LSTM(D, H, dtype=jnp.float32, key=key).layers[0])
    assert c.weight_ih.dtype == jnp.float32


def test_import_jaxrnn_does_not_import_equinox():
    code = (
        "import sys, jaxrnn, jaxrnn.convert._equinox\n"
        "assert 'equinox' not in sys.modules, 'equinox loaded'\n"
        "import jaxrnn.eqx\nassert 'equinox' in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# --- Bad inputs -----------------------------------------------------------------------------

KEY = jax.random.key(9)


def lstm(**kw):
    return jeqx.LSTM(D, H, key=KEY, **kw)


def gru_params(bh_rz=0.0):
    p = jaxrnn.init_gru_params(KEY, D, H, jnp.float64)
    return p._replace(bx=p.bx + 0.1, bh=p.bh.at[0].set(bh_rz))


X = jnp.ones((T, D))
# fmt: off
BAD = [
    bad("input_size_0", lambda: jeqx.LSTM(0, H, key=KEY), ValueError, "input_size must be a pos"),
    bad("hidden_size_float", lambda: jeqx.GRU(D, 2.0, key=KEY), ValueError, "hidden_size"),
    bad("num_layers_0", lambda: lstm(num_layers=0), ValueError, "num_layers must be a positive"),
    bad("bidirectional_str", lambda: lstm(bidirectional="yes"), TypeError, "must be a bool"),
    bad("dtype_int", lambda: lstm(dtype=jnp.int32), TypeError, "dtype must be None, float16"),
    bad("key_int", lambda: jeqx.LSTM(D, H, key=0), TypeError, "key must be a jax.random.key"),
    bad("activation_unknown", lambda: jeqx.RNN(D, H, activation="softplus", key=KEY),
        ValueError, "softplus"),
    bad("lstm_activation", lambda: jeqx.LSTM(D, H, activation="relu", key=KEY), TypeError,
        "activation"),
    bad("x_1d", lambda: lstm()(jnp.ones(D)), ValueError, r"x must have shape \(T, D\) = \(T, 3\)"),
    bad("x_batched", lambda: lstm()(jnp.ones((2, T, D))), ValueError, "unbatched, vmap it"),
    bad("x_wrong_D", lambda: lstm()(jnp.ones((T, D + 1))), ValueError, r"got \(6, 4\)"),
    bad("x_str", lambda: lstm()("abc"), TypeError, "x must be an array"),
    bad("length_vector", lambda: lstm()(X, length=jnp.array([2])), ValueError, "scalar int"),
    bad("length_float", lambda: lstm()(X, length=2.0), ValueError, "scalar int"),
    bad("length_over_T", lambda: lstm()(X, length=T + 1), ValueError, r"\[0, T\] = \[0, 6\]"),
    bad("length_negative", lambda: lstm()(X, length=-1), ValueError, r"got -1"),
    bad("state_bare_h_for_lstm", lambda: lstm()(X, jnp.zeros(H)), ValueError, r"\(h, c\)"),
    bad("state_wrong_size", lambda: lstm()(X, (jnp.zeros(H), jnp.zeros(H + 1))), ValueError,
        r"shape \(5,\)"),
    bad("state_batched", lambda: jeqx.GRU(D, H, key=KEY)(X, jnp.zeros((1, H))), ValueError,
        r"every array of shape \(4,\)"),
    bad("state_one_layer_of_two", lambda: lstm(num_layers=2)(X, (jnp.zeros(H), jnp.zeros(H))),
        ValueError, "a tuple of 2 layer states"),
    bad("state_dtype", lambda: lstm()(X, (jnp.zeros(H, jnp.float32),) * 2), TypeError, "dtype"),
    bad("truncation_0", lambda: lstm()(X, truncation=0), ValueError, "LSTM: truncation"),
    bad("checkpoint_cube", lambda: lstm()(X, checkpoint="cube"), ValueError, "LSTM: checkpoint"),
    bad("to_gru_bh_rz", lambda: to_eqx_gru_cell(gru_params(1.0)), ValueError,
        "bias on the n gate only"),
    bad("to_gru_no_bias", lambda: to_eqx_gru_cell(gru_params(), use_bias=False), ValueError,
        r"bx is non-zero, but a GRUCell\(use_bias=False\) has no bias"),
    bad("to_lstm_no_bias", lambda: to_eqx_lstm_cell(lstm().layers[0], use_bias=False),
        ValueError, r"b is non-zero, but an LSTMCell\(use_bias=False\)"),
    bad("to_lstm_given_gru", lambda: to_eqx_lstm_cell(gru_params()), TypeError, "LSTMParams"),
    bad("from_lstm_given_gru", lambda: from_eqx_lstm_cell(eqx.nn.GRUCell(D, H, key=KEY)),
        TypeError, "expected an equinox eqx.nn.LSTMCell, got GRUCell"),
    bad("from_gru_given_params", lambda: from_eqx_gru_cell(gru_params()), TypeError,
        "eqx.nn.GRUCell"),
    bad("from_gru_bad_bias_n", lambda: from_eqx_gru_cell(
        eqx.tree_at(lambda c: c.bias_n, eqx.nn.GRUCell(D, H, key=KEY), jnp.zeros(H + 1))),
        ValueError, r"bias_n must have shape \(H,\) = \(4,\)"),
]
# fmt: on


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)


def test_lstm_params_type_is_the_registrys():
    """The fields hold the registry's NamedTuples (what the functional core takes)."""
    assert isinstance(jeqx.LSTM(D, H, key=KEY).layers[0], LSTMParams)
    assert isinstance(jeqx.GRU(D, H, bidirectional=True, key=KEY).layers[0].bwd, GRUParams)
