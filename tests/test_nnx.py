"""jaxrnn.nnx (``RNN``, ``LSTM``, ``GRU`` as flax NNX modules; issue 18).

The oracle is flax itself: ``nnx.RNN(cell)`` per layer, ``nnx.Bidirectional`` for a
bidirectional layer, a list of them for a stack, with ``SimpleCell``, ``LSTMCell``,
``OptimizedLSTMCell`` and ``GRUCell``. Given the same weights (through
:func:`jaxrnn.convert.from_nnx_rnn`), the module must match flax's outputs, final carries
(flax's semantics under ``seq_lengths``) and every gradient to 1e-12 in float64, and its
gradient must be the core's hand BPTT (a spy on the custom_vjp's backward).
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
from jaxrnn import BiRNNParams, GRUParams
from jaxrnn import convert as cv

nnx = pytest.importorskip("flax.nnx")
import jaxrnn.nnx as jnnx  # noqa: E402

N, T, D, H = 3, 6, 4, 5  # D != H; one shape for every equality case (one compile each)
F64 = jnp.float64
TOL = 1e-12
LENGTHS = np.array([6, 3, 1])  # a full sequence, a ragged one, one step (flax's carry: >= 1)
MODULES = {"simple": jnnx.RNN, "lstm": jnnx.LSTM, "optimized": jnnx.LSTM, "gru": jnnx.GRU}
FLAX_CELLS = {"simple": "SimpleCell", "lstm": "LSTMCell", "optimized": "OptimizedLSTMCell",
              "gru": "GRUCell"}  # fmt: skip
ERR: dict[str, float] = {}  # the worst error per check, printed by test_report_errors


# --- The oracle: flax's own nnx.RNN / nnx.Bidirectional stack ------------------------------


def random_layers(cell, num_layers, bidirectional, seed=0):
    """Random float64 jaxrnn layers, every bias non-zero (the defaults' zeros hide bias bugs)
    except the GRU's ``bh`` n block, which flax's GRUCell lacks (flax#5594)."""
    rng, kind = np.random.default_rng(seed), jaxrnn._cells.kind_named(MODULES[cell].kind)
    G, layers, d = kind.gates, [], D

    def one(d):
        p = [rng.standard_normal((d, G * H)) / np.sqrt(d), rng.standard_normal((H, G * H)) / 2]
        p += [rng.standard_normal(G * H) / 2 for _ in kind.params._fields[2:]]
        if cell == "gru":
            p[3][2 * H :] = 0.0
        return kind.params(*p)

    for _ in range(num_layers):
        layers.append(BiRNNParams(one(d), one(d)) if bidirectional else one(d))
        d = (1 + bidirectional) * H
    return tuple(layers)


def flax_stack(cell, layers, activation="tanh"):
    """flax's stack holding ``layers`` (written by :func:`jaxrnn.convert.to_nnx_rnn`): its
    cells built abstract (``nnx.eval_shape``: nothing drawn), then filled."""
    cls = getattr(nnx, FLAX_CELLS[cell])
    kw = {"activation_fn": getattr(nnx, activation)} if cell == "simple" else {}

    def rnn(p):
        d_in = p.Wx.shape[0]
        return nnx.RNN(nnx.eval_shape(lambda: cls(d_in, H, param_dtype=F64, dtype=F64,
                                                  rngs=nnx.Rngs(0), **kw)))  # fmt: skip

    stack = nnx.List(
        nnx.Bidirectional(rnn(p.fwd), rnn(p.bwd)) if isinstance(p, BiRNNParams) else rnn(p)
        for p in layers
    )
    cv.to_nnx_rnn(layers, list(stack))
    return stack


def flax_order(cell, carry, bidirectional):
    """A layer's carry in flax's order from jaxrnn's: the LSTM's (h, c) is flax's (c, h)."""
    swap = (lambda s: s[::-1]) if cell in ("lstm", "optimized") else (lambda s: s)
    return tuple(swap(s) for s in carry) if bidirectional else swap(carry)


def run_flax(stack, x, carry, lengths, cell, bidirectional):
    """``(carry, h)`` of flax's stack, the carry as the module returns it (jaxrnn's order)."""
    carries, finals = carry if len(stack) > 1 else (carry,), []
    for layer, c in zip(stack, carries, strict=True):
        c0 = flax_order(cell, c, bidirectional)
        cT, x = layer(x, initial_carry=c0, seq_lengths=lengths, return_carry=True)
        finals.append(flax_order(cell, cT, bidirectional))  # the swap is its own inverse
    return (finals[0] if len(stack) == 1 else tuple(finals)), x


def random_like(tree, seed):
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(tree))))
    return jax.tree.map(lambda a: jax.random.normal(next(keys), a.shape, a.dtype), tree)


def random_carry(cell, num_layers, bidirectional, seed):
    """A random initial carry in the module's structure (the cell's state, per direction,
    per layer)."""
    h = jnp.zeros((N, H), F64)
    state = (h, h) if cell in ("lstm", "optimized") else h
    layer = (state, state) if bidirectional else state
    return random_like(layer if num_layers == 1 else (layer,) * num_layers, seed)


def valid(lengths):
    """``(N, T, 1)`` float64 ones at valid steps (flax's outputs at padding are its own)."""
    return (np.arange(T) < lengths[:, None])[..., None].astype(np.float64)


def evaluate(run, model, x, carry, weights, mask):
    """``((carry_T, h), (dmodel, dx, dcarry))`` under one ``nnx.jit``: the outputs, and the
    gradients of a loss of the outputs at valid steps and of every part of the final carry."""
    w_h, w_c = weights

    def loss(model, x, carry):
        cT, h = run(model, x, carry)
        terms = jax.tree.map(lambda a, w: jnp.sum(a * w), cT, w_c)
        return jnp.sum(h * w_h * mask) + sum(jax.tree.leaves(terms)), (cT, h)

    grad = nnx.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
    (_, out), grads = nnx.jit(grad)(model, x, carry)
    return out, grads


def as_layers(grads, stack):
    """flax's parameter gradients (an nnx.State) as jaxrnn layers: they map like the weights,
    each cell's by :func:`jaxrnn.convert.from_nnx_cell`."""
    layers = []
    for k, layer in enumerate(stack):
        if isinstance(layer, nnx.Bidirectional):
            dirs = (grads[k][d]["cell"] for d in ("forward_rnn", "backward_rnn"))
            layers.append(BiRNNParams(*(cv.from_nnx_cell(g) for g in dirs)))
        else:
            layers.append(cv.from_nnx_cell(grads[k]["cell"]))
    return tuple(layers)


def without_b_hn(layers):
    """GRU layers with ``bh = 0``, checking first that its r, z blocks got ``bx``'s gradient
    (they act only as ``bx``'s do); flax's GRUCell has no b_hn to compare (flax#5594)."""

    def strip(p):
        np.testing.assert_array_equal(p.bh[: 2 * H], p.bx[: 2 * H])
        return p._replace(bh=jnp.zeros_like(p.bh))

    return jax.tree.map(strip, layers, is_leaf=lambda p: isinstance(p, GRUParams))


def record(name, err):
    ERR[name] = max(ERR.get(name, 0.0), err)


# Every cell as 1 layer, and as 2 bidirectional layers under ragged lengths; two mixes. The
# 1-layer RNN runs relu (flax's SimpleCell(activation_fn=nnx.relu)), the others tanh.
CASES = [(c, 1, False, False) for c in MODULES] + [(c, 2, True, True) for c in MODULES] + [
    ("lstm", 2, False, True), ("gru", 1, True, False),
]  # fmt: skip


@pytest.mark.parametrize(
    "cell,num_layers,bidirectional,ragged", CASES,
    ids=[f"{c}-{n}{'bi' * b}-{'ragged' if r else 'full'}" for c, n, b, r in CASES],
)  # fmt: skip
def test_module_matches_flax(cell, num_layers, bidirectional, ragged):
    """Outputs (at valid steps), final carries (flax's: after the last valid step) and the
    gradients of weights, inputs and initial carries equal flax's nnx.RNN stack to 1e-12."""
    act = "relu" if cell == "simple" and num_layers == 1 else "tanh"
    layers = random_layers(cell, num_layers, bidirectional)
    stack, m = flax_stack(cell, layers, act), MODULES[cell].from_params(layers, activation=act)
    x = jax.random.normal(jax.random.key(1), (N, T, D), F64)
    c0 = random_carry(cell, num_layers, bidirectional, seed=2)
    seq = jnp.asarray(LENGTHS) if ragged else None
    mask = valid(LENGTHS) if ragged else np.ones((N, T, 1))
    weights = random_like((jnp.zeros((N, T, m.out_features), F64), c0), seed=3)

    def ours(m, x, c):
        return m(x, initial_carry=c, seq_lengths=seq, return_carry=True)

    def theirs(s, x, c):
        return run_flax(s, x, c, seq, cell, bidirectional)

    (cT, h), (g_m, g_x, g_c) = evaluate(ours, m, x, c0, weights, mask)
    (fT, fh), (f_m, f_x, f_c) = evaluate(theirs, stack, x, c0, weights, mask)
    record("output", assert_tree_close(h * mask, fh * mask, tol=TOL, what="h"))
    record("carry", assert_tree_close(cT, fT, tol=TOL, what="carry"))
    record("dx, dcarry0", assert_tree_close((g_x, g_c), (f_x, f_c), tol=TOL, what="dx, dc0"))
    ours_p = nnx.merge(nnx.graphdef(m), g_m).params()
    ours_p = without_b_hn(ours_p) if cell == "gru" else ours_p
    record("dweights", assert_tree_close(ours_p, as_layers(f_m, stack), tol=TOL, what="dW"))


def test_length_zero_carry_differs_from_flax_as_documented():
    """For a length of 0 the module returns the initial carry (jaxrnn's state freezes); flax's
    nnx.RNN returns the carry after all T steps of padding (its last carry)."""
    layers = random_layers("gru", 1, False)
    stack, m = flax_stack("gru", layers), jnnx.GRU.from_params(layers)
    x = jax.random.normal(jax.random.key(1), (N, T, D), F64)
    c0 = jax.random.normal(jax.random.key(2), (N, H), F64)
    lengths = jnp.array([6, 0, 2])
    cT, _ = m(x, initial_carry=c0, seq_lengths=lengths, return_carry=True)
    fT, _ = stack[0](x, initial_carry=c0, seq_lengths=lengths, return_carry=True)
    full, _ = stack[0](x, initial_carry=c0, return_carry=True)
    np.testing.assert_array_equal(cT[1], c0[1])
    assert_tree_close(fT[1], full[1], tol=TOL)  # flax: the last carry
    assert_tree_close(cT[np.array([0, 2])], fT[np.array([0, 2])], tol=TOL)


def test_report_errors():
    """The worst errors measured above (``pytest -s`` shows them)."""
    print({k: f"{v:.1e}" for k, v in ERR.items()})
    assert all(v <= TOL for v in ERR.values())


# --- NNX transforms; the gradient is the hand BPTT ------------------------------------------


def test_nnx_grad_runs_the_hand_bptt(monkeypatch):
    """Under ``nnx.jit(nnx.grad)`` the core's custom_vjp backward runs once per layer and
    direction, and its result is the gradient: scaled by 2 there, the module's weight
    gradients double. The forward's jaxpr holds the layer call."""
    m = jnnx.LSTM(D, H, num_layers=2, bidirectional=True, dtype=F64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (N, T, D), F64)
    lengths = jnp.asarray(LENGTHS)

    def loss(m):
        return jnp.sum(m(x, seq_lengths=lengths) ** 2)

    graphdef, state = nnx.split(m)
    assert layer_call_name() in str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(x))(state))
    g1 = nnx.jit(nnx.grad(loss))(m)
    calls = spy_on_backward(monkeypatch, factor=2.0)
    g2 = nnx.jit(nnx.grad(loss))(m)
    jax.effects_barrier()
    assert calls == ["lstm"] * 4, calls  # 2 layers x 2 directions
    assert_tree_close(g2, jax.tree.map(lambda a: 2 * a, g1), tol=TOL)


def test_transforms_compose():
    """nnx.jit, nnx.value_and_grad, nnx.split / merge / state and nnx.vmap (over inputs and
    over an ensemble of modules) give the eager call's values."""
    m = jnnx.LSTM(D, H, dtype=F64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (N, T, D), F64)
    h = m(x)
    assert h.shape == (N, T, H)
    graphdef, state = nnx.split(m)
    assert_tree_close(nnx.merge(graphdef, state)(x), h, tol=0)
    assert set(nnx.to_pure_dict(nnx.state(m, nnx.Param))["layers"][0]["fwd"]) == {"Wx", "Wh", "b"}

    @nnx.jit
    def run(m, x):
        value, grads = nnx.value_and_grad(lambda m: jnp.sum(m(x) ** 2))(m)
        xs = jnp.stack([x, 2 * x])  # (2, N, T, D)
        return value, grads, m(x), nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(m, xs)

    value, grads, h_jit, hs = run(m, x)
    assert_tree_close((value, h_jit), (jnp.sum(h**2), h), tol=TOL)
    assert grads["layers"][0]["fwd"]["Wx"].shape == (D, 4 * H)
    assert_tree_close(hs, jnp.stack([h, m(2 * x)]), tol=TOL)

    @nnx.vmap(in_axes=0)
    def ensemble(key):
        return jnnx.GRU(D, H, dtype=F64, rngs=nnx.Rngs(params=key))

    keys = jax.random.split(jax.random.key(0), 2)
    hs = nnx.jit(nnx.vmap(lambda m, x: m(x), in_axes=(0, None)))(ensemble(keys), x)
    assert_tree_close(hs[1], jnnx.GRU(D, H, dtype=F64, rngs=nnx.Rngs(params=keys[1]))(x), tol=TOL)


def test_truncation_and_checkpoint_reach_the_core():
    """``checkpoint`` keeps the gradients; ``truncation`` gives :func:`jaxrnn.gru`'s."""
    m = jnnx.GRU(D, H, dtype=F64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (N, T, D), F64)

    def grad(**kw):
        return nnx.grad(lambda m: jnp.sum(m(x, **kw) ** 2))(m)

    assert_tree_close(grad(checkpoint=2), grad(), tol=TOL)
    p = m.params()[0]
    want = jax.grad(lambda p: jnp.sum(jaxrnn.gru(x, jnp.zeros((N, H)), *p, truncation=2) ** 2))(p)
    got = nnx.merge(nnx.graphdef(m), grad(truncation=2)).params()[0]
    assert_tree_close(got, want, tol=TOL)


def test_init_follows_the_registry():
    """Weights drawn by jaxrnn's initialisers (the LSTM's forget bias 1, orthogonal Wh
    blocks), in the asked dtype; float16 and bfloat16 drawn in float32 and cast."""
    m = jnnx.LSTM(D, H, bidirectional=True, rngs=nnx.Rngs(0))
    p = m.params()[0].fwd
    assert p.Wx.dtype == jnp.float32 and p.Wx.shape == (D, 4 * H)
    np.testing.assert_array_equal(p.b[H : 2 * H], 1.0)
    wh = np.asarray(p.Wh[:, :H], np.float64)
    np.testing.assert_allclose(wh.T @ wh, np.eye(H), atol=1e-5)
    assert jnnx.GRU(D, H, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)).params()[0].Wh.dtype == jnp.bfloat16
    assert m.out_features == 2 * H


def test_import_jaxrnn_does_not_import_flax():
    code = (
        "import sys, jaxrnn, jaxrnn.convert\n"
        "assert 'flax' not in sys.modules, 'flax loaded'\n"
        "import jaxrnn.nnx\nassert 'flax' in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# --- Bad inputs -----------------------------------------------------------------------------


def lstm(**kw):
    return jnnx.LSTM(D, H, **{"dtype": F64, "rngs": nnx.Rngs(0), **kw})


_x = np.zeros((N, T, D))
BAD = [
    bad("in_features_zero", lambda: jnnx.LSTM(0, H, rngs=nnx.Rngs(0)), ValueError,
        r"LSTM: in_features must be a positive int, got 0"),
    bad("hidden_features_str", lambda: jnnx.GRU(D, "5", rngs=nnx.Rngs(0)), ValueError,
        r"GRU: hidden_features must be a positive int, got '5'"),
    bad("num_layers_zero", lambda: lstm(num_layers=0), ValueError,
        r"LSTM: num_layers must be a positive int, got 0"),
    bad("bidirectional_str", lambda: lstm(bidirectional="yes"), TypeError,
        r"LSTM: bidirectional must be a bool, got 'yes'"),
    bad("dtype_int", lambda: lstm(dtype=jnp.int32), TypeError,
        r"LSTM: dtype must be float16, bfloat16, float32 or float64, got"),
    bad("activation_unknown", lambda: jnnx.RNN(D, H, activation="swish", rngs=nnx.Rngs(0)),
        ValueError, r"swish"),
    bad("lstm_takes_no_activation", lambda: lstm(activation="relu"), TypeError,
        r"unexpected keyword argument 'activation'"),
    bad("rngs_missing", lambda: jnnx.RNN(D, H, rngs=None), TypeError,
        r"RNN: rngs must be an nnx.Rngs, got NoneType"),
    bad("x_rank", lambda: lstm()(np.zeros((T, D))), ValueError,
        r"LSTM: x must be \(N, T, in_features\) = \(N, T, 4\), batch-major .*got shape \(6, 4\)"),
    bad("x_features", lambda: lstm()(np.zeros((N, T, H))), ValueError,
        r"x must be \(N, T, in_features\) = \(N, T, 4\).*got shape \(3, 6, 5\)"),
    bad("x_dtype", lambda: lstm()(np.zeros((N, T, D), np.int32)), TypeError,
        r"LSTM: x must have a floating dtype, got int32"),
    bad("carry_per_layer", lambda: lstm(num_layers=2)(_x, initial_carry=np.zeros((N, H))),
        ValueError, r"LSTM: initial_carry must hold one carry per layer \(2\)"),
    bad("carry_bidirectional", lambda: lstm(bidirectional=True)(_x, initial_carry=np.zeros((N, H))),
        ValueError, r"LSTM: layer 0 is bidirectional: its carry is \(fwd, bwd\)"),
    bad("carry_shape", lambda: lstm()(_x, initial_carry=(np.zeros((N, D)), np.zeros((N, H)))),
        ValueError, r"lstm: h0.shape\[-1\] must equal the hidden size H"),
    bad("seq_lengths_range", lambda: lstm()(_x, seq_lengths=np.array([1, 2, 9])), ValueError,
        r"lstm: lengths must lie in \[0, T\] = \[0, 6\], got min 1, max 9"),
    bad("load_count", lambda: lstm().load_params(()), ValueError,
        r"LSTM.load_params: expected 1 layer\(s\), got 0"),
    bad("load_cell", lambda: lstm().load_params(jnnx.GRU(D, H, rngs=nnx.Rngs(0)).params()),
        TypeError, r"LSTM.load_params: layer 0 must be a LSTMParams, got GRUParams"),
    bad("load_directions", lambda: lstm(bidirectional=True).load_params(lstm().params()),
        TypeError, r"layer 0 must be a BiRNNParams of LSTMParams, got LSTMParams"),
    bad("load_shape", lambda: lstm().load_params(jnnx.LSTM(H, H, dtype=F64,
                                                           rngs=nnx.Rngs(0)).params()),
        ValueError, r"LSTM.load_params: layer 0.Wx must be \(4, 20\) float64, got \(5, 20\)"),
    bad("load_dtype", lambda: lstm().load_params(jnnx.LSTM(D, H, rngs=nnx.Rngs(0)).params()),
        ValueError, r"layer 0.Wx must be \(4, 20\) float64, got \(4, 20\) float32"),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)


def test_inputs_are_computed_in_the_module_dtype():
    """A float64 input (or carry) to a float32 module is cast to float32, as flax's own
    layers compute in their dtype; the core alone would refuse the mixed dtypes."""
    m = jnnx.LSTM(3, 4, rngs=nnx.Rngs(0))  # float32 weights
    x = np.random.default_rng(0).standard_normal((2, 5, 3))  # float64
    carry = (np.zeros((2, 4)), np.zeros((2, 4)))
    (hT, cT), h = m(x, initial_carry=carry, return_carry=True)
    assert h.dtype == hT.dtype == cT.dtype == jnp.float32
    assert_tree_close(h, m(x.astype(np.float32)), np.float32)
