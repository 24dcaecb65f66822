"""jaxrnn.convert: round trips, and equality with torch.nn.RNN and flax SimpleCell/nn.RNN."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import rel_err
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import BiRNNParams, GRUParams, LSTMParams, RNNParams
from jaxrnn import convert as cv
from jaxrnn.testing import strategies as rs

N, T, D, H = 3, 5, 4, 3
F64 = jnp.float64
TOL = 1e-10  # float64 on both sides; measured ~1e-15


CELLS = {"rnn": (RNNParams, 1), "lstm": (LSTMParams, 4), "gru": (GRUParams, 3)}


def make_layers(L, bidirectional, seed=0, D=D, H=H, cell="rnn"):
    """A stack of random layers; layer k > 0 takes the previous output (H or 2H features).

    Every weight and bias is random and nonzero (the GRU's ``bh`` in all three blocks).
    """
    rng = np.random.default_rng(seed)
    cls, g = CELLS[cell]
    dirs = 2 if bidirectional else 1
    layers = []
    for k in range(L):
        d_in = D if k == 0 else dirs * H
        shapes = ((d_in, g * H), (H, g * H), (g * H,)) + ((g * H,),) * (cls is GRUParams)
        ps = [cls(*(rng.standard_normal(s) / np.sqrt(s[0]) for s in shapes)) for _ in range(dirs)]
        layers.append(BiRNNParams(*ps) if bidirectional else ps[0])
    return tuple(layers)


def jax_stack(x, h0s, layers, activation):
    """jaxrnn.rnn layer by layer (MATH.md §4); a BiRNNParams' bwd runs on reversed time.

    h0s: (number of directions over all layers, N, H), in torch's order.
    """
    out, i = x, 0
    for layer in layers:
        outs = []
        for d, p in enumerate(layer if isinstance(layer, BiRNNParams) else (layer,)):
            inp = out if d == 0 else out[:, ::-1]
            h = jaxrnn.rnn(inp, h0s[i], *p, activation=activation)
            outs.append(h if d == 0 else h[:, ::-1])
            i += 1
        out = jnp.concatenate(outs, axis=-1)
    return out


def assert_tree_close(a, b, tol=TOL):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert rel_err(x, y) <= tol


@given(rs.check_shapes(), st.data(), st.booleans())
def test_torch_round_trip(shape, data, bidirectional):
    L = data.draw(st.integers(1, 3))
    layers = make_layers(L, bidirectional, data.draw(rs.seeds), shape.D, shape.H)
    sd = cv.to_torch_state_dict(layers, bidirectional=bidirectional, prefix="rnn.")
    n_keys = 4 * L * (2 if bidirectional else 1)
    assert len(sd) == n_keys and all(k.startswith("rnn.weight_") or "bias" in k for k in sd)
    assert sd["rnn.weight_ih_l0"].shape == (shape.H, shape.D)
    back = cv.from_torch_state_dict({**sd, "fc.weight": np.ones(2)}, prefix="rnn.")
    assert_tree_close(back, layers, tol=0)
    assert len(back) == L


@given(rs.problems(dtype=st.just(np.float64)), st.booleans())
def test_flax_round_trip(p, residual):
    params = RNNParams(p.Wx, p.Wh, p.b)
    tree = cv.to_flax_simple_cell(params, residual=residual)
    assert tree["i"]["kernel"].shape == p.Wx.shape and set(tree["h"]) == {"kernel"}
    assert_tree_close(cv.from_flax_simple_cell({"params": tree}, residual=residual), params, 1e-15)
    pair = BiRNNParams(params, RNNParams(p.Wx + 1, p.Wh, p.b))
    D, H = p.Wx.shape
    stacks = [
        (make_layers(3, False, p.seed, D, H), False),
        (make_layers(2, True, p.seed, D, H), True),
    ]
    mixed = (pair, RNNParams(np.ones((2 * H, 2)), np.eye(2), np.zeros(2)))  # flax allows it
    plain_pair = (tuple(pair), True)  # a plain (fwd, bwd) tuple when bidirectional=True
    cases = [(params, None), (pair, None), plain_pair, ((params,), False), (mixed, None), *stacks]
    for layers, bi in cases:
        back = cv.from_flax_rnn(
            cv.to_flax_rnn(layers, bidirectional=bi, residual=residual), residual=residual
        )
        assert_tree_close(back, layers, 1e-15)
        assert type(back) is type(layers) or isinstance(back, BiRNNParams)


TORCH_CASES = [(1, False, "tanh"), (2, False, "relu"), (2, True, "tanh"), (1, True, "relu")]


@pytest.mark.parametrize("L,bidirectional,activation", TORCH_CASES)
def test_against_torch(L, bidirectional, activation):
    """Forward outputs and every gradient equal torch.nn.RNN's (float64, autograd)."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torch.manual_seed(0)
    model = torch.nn.RNN(
        D, H, L, nonlinearity=activation, batch_first=True, bidirectional=bidirectional,
        dtype=torch.float64,
    )  # fmt: skip
    layers = cv.from_torch_state_dict(model.state_dict())  # torch's init, both biases nonzero
    assert len(layers) == L
    rng = np.random.default_rng(1)
    dirs = 2 if bidirectional else 1
    x, h0s, dh = (rng.standard_normal(s) for s in ((N, T, D), (L * dirs, N, H), (N, T, dirs * H)))

    xt, h0t = (torch.tensor(a, requires_grad=True) for a in (x, h0s))
    out_t, _ = model(xt, h0t)
    (out_t * torch.from_numpy(dh)).sum().backward()

    def loss(x, h0s, layers):
        return (jax_stack(x, h0s, layers, activation) * dh).sum()

    out = jax_stack(x, h0s, layers, activation)
    dx, dh0s, dlayers = jax.grad(loss, argnums=(0, 1, 2))(x, h0s, layers)
    errs = [rel_err(out, out_t.detach()), rel_err(dx, xt.grad), rel_err(dh0s, h0t.grad)]
    named = dict(model.named_parameters())
    for k, layer in enumerate(dlayers):
        for g, suffix in zip(layer if bidirectional else (layer,), ("", "_reverse"), strict=False):
            grad = {
                n: named[f"{n}_l{k}{suffix}"].grad.numpy()
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            }
            errs += [rel_err(g.Wx, grad["weight_ih"].T), rel_err(g.Wh, grad["weight_hh"].T)]
            errs += [
                rel_err(g.b, grad["bias_ih"]),
                rel_err(g.b, grad["bias_hh"]),
            ]  # b = sum of both
    assert max(errs) <= TOL, errs

    # jaxrnn -> torch: the exported state dict reproduces jaxrnn's output in torch.
    sd = cv.to_torch_state_dict(layers, bidirectional=bidirectional)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    with torch.no_grad():
        assert rel_err(model(torch.from_numpy(x), torch.from_numpy(h0s))[0], out) <= TOL


FLAX_ACTS = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "identity": None}


@pytest.mark.parametrize(
    "activation,residual", [(a, False) for a in FLAX_ACTS] + [("tanh", True), ("relu", True)]
)
def test_against_flax_simple_cell(activation, residual):
    """nn.RNN(SimpleCell): forward and gradients equal jaxrnn.rnn's with the converted tree."""
    nn = pytest.importorskip("flax.linen", reason="flax is not installed")
    fn = getattr(nn, FLAX_ACTS[activation]) if FLAX_ACTS[activation] else (lambda a: a)
    rnn = nn.RNN(nn.SimpleCell(H, activation_fn=fn, residual=residual, param_dtype=jnp.float64))
    p = rs.make_problem(rs.Shape(N, T, D, H), 2, activation)
    params = RNNParams(p.Wx, p.Wh, p.b)
    tree = cv.to_flax_rnn(params, residual=residual)
    init = rnn.init(jax.random.PRNGKey(0), p.x)["params"]
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(tree)

    def flax_loss(x, h0, tree):
        return (rnn.apply({"params": tree}, x, initial_carry=h0) * p.dh).sum()

    def jax_loss(x, h0, params):
        return (jaxrnn.rnn(x, h0, *params, activation=activation) * p.dh).sum()

    out_f = rnn.apply({"params": tree}, p.x, initial_carry=p.h0)
    assert rel_err(out_f, jaxrnn.rnn(*p.args, activation=activation)) <= TOL
    dx, dh0, dtree = jax.jit(jax.grad(flax_loss, argnums=(0, 1, 2)))(p.x, p.h0, tree)
    want = jax.jit(jax.grad(jax_loss, argnums=(0, 1, 2)))(p.x, p.h0, params)
    # d/d(h/kernel) = dWh also with residual (Wh = h/kernel + I): read the grads without +I.
    assert_tree_close((dx, dh0, cv.from_flax_rnn(dtree)), want)
    # flax's own init round-trips through jaxrnn.
    assert_tree_close(
        cv.to_flax_rnn(cv.from_flax_rnn(init, residual=residual), residual=residual), init, 1e-15
    )


def test_against_flax_bidirectional_and_sequential():
    nn = pytest.importorskip("flax.linen", reason="flax is not installed")

    def bi():
        return nn.Bidirectional(
            nn.RNN(nn.SimpleCell(H, param_dtype=F64)), nn.RNN(nn.SimpleCell(H, param_dtype=F64))
        )

    H2 = 2  # a unidirectional layer of another size on top: flax allows mixed stacks
    model = nn.Sequential([bi(), bi(), nn.RNN(nn.SimpleCell(H2, param_dtype=F64))])
    top = make_layers(1, False, seed=6, D=2 * H, H=H2)
    layers = make_layers(2, True, seed=3) + top
    tree = cv.to_flax_rnn(layers)
    assert set(tree) == {"layers_0", "layers_1", "layers_2"}
    x = np.random.default_rng(4).standard_normal((N, T, D))
    dh = np.random.default_rng(5).standard_normal((N, T, H2))
    h0s = [np.zeros((N, H))] * 4 + [np.zeros((N, H2))]  # nn.Sequential passes no carries

    def flax_loss(x, tree):
        return (model.apply({"params": tree}, x) * dh).sum()

    def jax_loss(x, layers):
        return (jax_stack(x, h0s, layers, "tanh") * dh).sum()

    out_f = jax.jit(model.apply)({"params": tree}, x)
    assert rel_err(out_f, jax.jit(jax_stack, static_argnums=3)(x, h0s, layers, "tanh")) <= TOL
    dx_f, dtree = jax.jit(jax.grad(flax_loss, argnums=(0, 1)))(x, tree)
    dx, dlayers = jax.jit(jax.grad(jax_loss, argnums=(0, 1)))(x, layers)
    assert_tree_close((dx_f, cv.from_flax_rnn(dtree)), (dx, dlayers))


def test_torch_state_dict_errors():
    sd = cv.to_torch_state_dict(make_layers(2, False), prefix="rnn.")
    with pytest.raises(KeyError, match=r"missing key rnn.weight_hh_l1"):
        cv.from_torch_state_dict(
            {k: v for k, v in sd.items() if k != "rnn.weight_hh_l1"}, prefix="rnn."
        )
    with pytest.raises(KeyError, match=r"missing key rnn.bias_hh_l1"):
        cv.from_torch_state_dict(
            {k: v for k, v in sd.items() if k != "rnn.bias_hh_l1"}, prefix="rnn."
        )
    with pytest.raises(KeyError, match=r"missing key weight_ih_l0_reverse"):
        cv.from_torch_state_dict(cv.to_torch_state_dict(make_layers(1, False)), bidirectional=True)
    with pytest.raises(KeyError, match=r"missing key weight_ih_l0 \(the keys have prefix='rnn.'\)"):
        cv.from_torch_state_dict(sd)  # forgot the prefix
    with pytest.raises(ValueError, match=r"unexpected keys \['fc.weight'\].*pass prefix="):
        cv.from_torch_state_dict(
            {**cv.to_torch_state_dict(make_layers(1, False)), "fc.weight": 1.0}
        )
    with pytest.raises(ValueError, match=r"unexpected keys \['rnn.bias_hh_l1'"):
        cv.from_torch_state_dict(sd, num_layers=1, prefix="rnn.")
    bad = {**sd, "rnn.weight_hh_l0": np.ones((3, 2))}
    with pytest.raises(ValueError, match=r"layer 0: inconsistent hidden size"):
        cv.from_torch_state_dict(bad, prefix="rnn.")
    no_bias = {k: v for k, v in sd.items() if "bias" not in k}  # nn.RNN(bias=False)
    assert not np.any(cv.from_torch_state_dict(no_bias, prefix="rnn.")[1].b)
    with pytest.raises(TypeError, match=r"weight_ih_l0 must be a floating-point"):
        cv.from_torch_state_dict({**sd, "rnn.weight_ih_l0": np.ones((3, 4), int)}, prefix="rnn.")


def test_layer_errors():
    one = make_layers(1, False)[0]
    with pytest.raises(
        TypeError,
        match=r"bidirectional=True needs a BiRNNParams\(fwd, bwd\) for layer 0, got RNNParams",
    ):
        cv.to_torch_state_dict(one, bidirectional=True)
    with pytest.raises(TypeError, match=r"bidirectional=True needs a BiRNNParams.* layer 0"):
        cv.to_torch_state_dict((one, one, one), bidirectional=True)
    with pytest.raises(
        TypeError, match=r"bidirectional=False needs an RNNParams for layer 0, got BiRNNParams"
    ):
        cv.to_torch_state_dict(BiRNNParams(one, one), bidirectional=False)
    with pytest.raises(
        ValueError, match=r"layer 1 has Wx \(4, 3\), but layer 0 outputs 6 features"
    ):
        cv.to_torch_state_dict(((one, one), (one, one)), bidirectional=True)
    with pytest.raises(
        ValueError, match=r"one hidden size and one direction count.*\(1, 3\), \(2, 3\)"
    ):
        cv.to_torch_state_dict(make_layers(1, True) + make_layers(1, False, D=2 * H))
    with pytest.raises(ValueError, match=r"inconsistent hidden size"):
        cv.to_flax_simple_cell(RNNParams(one.Wx, one.Wh[:2], one.b))
    with pytest.raises(KeyError, match=r"missing key 'h/kernel'"):
        cv.from_flax_simple_cell({"i": {"kernel": one.Wx, "bias": one.b}})
    tree = cv.to_flax_simple_cell(one)
    with pytest.raises(ValueError, match=r"'h/bias' is not supported"):
        cv.from_flax_simple_cell({**tree, "h": {**tree["h"], "bias": one.b}})
    with pytest.raises(KeyError, match=r"expected 'cell', 'forward_rnn' or 'layers_0'"):
        cv.from_flax_rnn({"foo": tree})


def test_torch_weights_run_in_stack_forward():
    """The converted layers feed jaxrnn.stack_forward directly (BiRNNParams per bi layer)."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not hasattr(jaxrnn, "stack_forward"):
        pytest.skip("this jaxrnn has no stack_forward")
    torch.manual_seed(1)
    model = torch.nn.RNN(D, H, 2, batch_first=True, bidirectional=True, dtype=torch.float64)
    layers = cv.from_torch_state_dict(model.state_dict())
    assert all(isinstance(p, BiRNNParams) for p in layers)
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((4, N, H))
    h0_layers = [np.concatenate([h0[2 * k], h0[2 * k + 1]], axis=-1) for k in range(2)]  # (N, 2H)
    h, _, _ = jaxrnn.stack_forward(x, h0_layers, layers)
    with torch.no_grad():
        out, _ = model(torch.from_numpy(x), torch.from_numpy(h0))
    assert rel_err(h, out) <= TOL


def test_convert_imports_neither_torch_nor_flax():
    code = "import sys, jaxrnn.convert; assert not {'torch', 'flax', 'jaxrnn.testing', 'hypothesis'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_bfloat16_weights_convert_exactly():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.RNN(3, 4, num_layers=2).to(torch.bfloat16)
    layers = cv.from_torch_state_dict(net.state_dict())
    for k, p in enumerate(layers):
        assert all(a.dtype == jnp.bfloat16 for a in p)
        want = getattr(net, f"weight_hh_l{k}").detach().float().numpy().T
        np.testing.assert_array_equal(np.asarray(p.Wh, np.float32), want)


MIXED = {
    "torch-weight": (
        lambda sd: {**sd, "weight_hh_l0": sd["weight_hh_l0"].astype(np.float64)},
        r"weight_ih_l0 float32, weight_hh_l0 float64",
    ),
    "torch-bias": (
        lambda sd: {**sd, "bias_hh_l0": sd["bias_hh_l0"].astype(np.float64)},
        r"bias_ih_l0 float32, bias_hh_l0 float64",
    ),
    "torch-layers": (
        lambda sd: {k: v.astype(np.float64) if "l1" in k else v for k, v in sd.items()},
        r"layer 0 float32, layer 1 float64",
    ),
}


@pytest.mark.parametrize("case", list(MIXED))
def test_mixed_dtype_weights_are_refused_by_name(case):
    edit, message = MIXED[case]
    sd = {k: v.astype(np.float32) for k, v in cv.to_torch_state_dict(make_layers(2, False)).items()}
    with pytest.raises(TypeError, match=rf"must share one dtype, got .*{message}"):
        cv.from_torch_state_dict(edit(sd))


def test_mixed_dtype_flax_cell_is_refused_by_name():
    one = make_layers(1, False)[0]
    tree = cv.to_flax_simple_cell(RNNParams(*(np.asarray(a, np.float32) for a in one)))
    tree["i"]["bias"] = np.asarray(tree["i"]["bias"], np.float64)
    with pytest.raises(TypeError, match=r"Wx float32, Wh float32, b float64"):
        cv.from_flax_simple_cell(tree)


# --- LSTM and GRU (issue 14): torch nn.LSTM / nn.GRU and flax LSTMCell / GRUCell ---------

GATED_TOL = 1e-12  # float64 on both sides; measured <= 7.2e-16 (torch and flax, all cases)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("L,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_torch_gated_round_trip(cell, L, bidirectional):
    """jaxrnn -> torch -> jaxrnn is exact; keys, shapes and the gate order are torch's."""
    layers = make_layers(L, bidirectional, seed=L, D=4, H=3, cell=cell)
    sd = cv.to_torch_state_dict(layers, prefix="m.")
    g = CELLS[cell][1]
    assert len(sd) == 4 * L * (1 + bidirectional)
    assert sd["m.weight_ih_l0"].shape == (g * 3, 4) and sd["m.weight_hh_l0"].shape == (g * 3, 3)
    p = layers[0].fwd if bidirectional else layers[0]
    if cell == "lstm":  # torch (i, f, g, o) rows = jaxrnn (i, f, o, g) columns, reordered
        want = np.concatenate([p.Wx[:, :6], p.Wx[:, 9:], p.Wx[:, 6:9]], axis=1).T
        np.testing.assert_array_equal(sd["m.weight_ih_l0"], want)
        assert not np.any(sd["m.bias_hh_l0"])
    else:  # the same blocks, bx and bh kept apart
        np.testing.assert_array_equal(sd["m.bias_hh_l0"], p.bh)
    back = cv.from_torch_state_dict(sd, prefix="m.")
    assert all(type(q) is type(r) for q, r in zip(back, layers, strict=True))
    assert_tree_close(back, layers, tol=0)


def torch_model(cell, L, bidirectional, seed):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torch.manual_seed(seed)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    return torch, module(
        D, H, L, batch_first=True, bidirectional=bidirectional, dtype=torch.float64
    )


def torch_problem(cell, L, bidirectional, seed=1):
    """x, hx (h_0 or (h_0, c_0)), and the loss's weights dh (outputs), dhx (final hx)."""
    rng = np.random.default_rng(seed)
    rows = L * (1 + bidirectional)
    n_hx = 2 if cell == "lstm" else 1
    x, dh = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, (1 + bidirectional) * H))
    hx = tuple(rng.standard_normal((rows, N, H)) for _ in range(n_hx))
    dhx = tuple(rng.standard_normal((rows, N, H)) for _ in range(n_hx))
    return x, hx if n_hx == 2 else hx[0], dh, dhx if n_hx == 2 else dhx[0]


def tree_err(a, b):
    """The largest rel_err over matching leaves of two pytrees."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(rel_err(x, np.asarray(y)) for x, y in pairs)


def dot(a, b):
    """Σ a ⊙ b over matching pytrees (arrays, or tuples of them)."""
    return sum((x * y).sum() for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def jax_torch_like(x, hx, layers):
    """jaxrnn.stack_forward with torch's hx in and out: ``(output, final hx)``."""
    h, hT, _ = jaxrnn.stack_forward(x, cv.from_torch_hidden(hx, layers), layers)
    return h, cv.to_torch_hidden(hT, layers)


@jax.jit
def jax_torch_grads(x, hx, layers, dh, dhx):
    def loss(x, hx, layers):
        h, hx_n = jax_torch_like(x, hx, layers)
        return dot(h, dh) + dot(hx_n, dhx), (h, hx_n)

    return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(x, hx, layers)


GATED_TORCH = [("lstm", 1, False), ("lstm", 2, True), ("gru", 1, True), ("gru", 2, False)]


@pytest.mark.parametrize("cell,L,bidirectional", GATED_TORCH)
def test_against_torch_lstm_gru(cell, L, bidirectional):
    """torch -> jaxrnn: outputs, final (h, c) and every gradient equal torch's autograd."""
    torch, model = torch_model(cell, L, bidirectional, seed=L)
    layers = cv.from_torch_state_dict(model.state_dict())  # torch's init: both biases nonzero
    assert all(isinstance(p.fwd if bidirectional else p, CELLS[cell][0]) for p in layers)
    x, hx, dh, dhx = torch_problem(cell, L, bidirectional)
    xt = torch.tensor(x, requires_grad=True)
    hxt = jax.tree.map(lambda a: torch.tensor(a, requires_grad=True), hx)
    out_t, hx_n_t = model(xt, hxt)
    (dot(out_t, torch.from_numpy(dh)) + dot(hx_n_t, jax.tree.map(torch.from_numpy, dhx))).backward()

    (dx, dhx0, dlayers), (out, hx_n) = jax_torch_grads(x, hx, layers, dh, dhx)
    errs = {
        "out": rel_err(out, out_t.detach()),
        "hx_n": tree_err(hx_n, jax.tree.map(lambda t: t.detach(), hx_n_t)),
        "dx": rel_err(dx, xt.grad),
        "dhx": tree_err(dhx0, jax.tree.map(lambda t: t.grad, hxt)),
    }
    # The gradients map like the weights (a linear map): export them as a state dict.
    want = cv.to_torch_state_dict(dlayers)
    for name, param in model.named_parameters():
        key = name if cell == "gru" else name.replace("bias_hh", "bias_ih")  # b = Σ of both
        errs[name] = rel_err(want[key], param.grad)
    assert max(errs.values()) <= GATED_TOL, errs


@pytest.mark.parametrize("cell,L,bidirectional", GATED_TORCH)
def test_jaxrnn_lstm_gru_run_in_torch(cell, L, bidirectional):
    """jaxrnn -> torch: random jaxrnn weights (GRU bh nonzero in every block), exported,
    give torch the outputs and final states of jaxrnn.stack_forward."""
    torch, model = torch_model(cell, L, bidirectional, seed=0)
    layers = make_layers(L, bidirectional, seed=7, cell=cell)
    sd = cv.to_torch_state_dict(layers)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x, hx, _, _ = torch_problem(cell, L, bidirectional, seed=2)
    with torch.no_grad():
        out_t, hx_n_t = model(torch.from_numpy(x), jax.tree.map(torch.from_numpy, hx))
    out, hx_n = jax.jit(jax_torch_like)(x, hx, layers)
    errs = [rel_err(out, out_t), tree_err(hx_n, hx_n_t)]
    assert max(errs) <= GATED_TOL, errs
    assert_tree_close(cv.from_torch_state_dict(sd), layers, tol=0)  # and back, exactly


def flax_cell(name, features):
    nn = pytest.importorskip("flax.linen", reason="flax is not installed")
    return getattr(nn, name)(features, param_dtype=F64)


@pytest.mark.parametrize("name", ["LSTMCell", "OptimizedLSTMCell", "GRUCell"])
def test_flax_gated_cell_init_runs_in_jaxrnn(name):
    """flax -> jaxrnn: flax's own init (tree layout, GRU biases) read by from_flax_rnn gives
    jaxrnn the outputs and final carry of nn.RNN(cell); flax -> jaxrnn -> flax is exact."""
    nn = pytest.importorskip("flax.linen", reason="flax is not installed")
    lstm = name != "GRUCell"
    rnn = nn.RNN(flax_cell(name, H), return_carry=True)
    rng = np.random.default_rng(4)
    x, h0, c0 = rng.standard_normal((N, T, D)), *rng.standard_normal((2, N, H))
    init = rnn.init(jax.random.PRNGKey(0), x)["params"]
    init = jax.tree.map(lambda a: a + rng.standard_normal(a.shape), init)  # nonzero biases
    params = cv.from_flax_rnn(init)
    assert isinstance(params, LSTMParams if lstm else GRUParams)
    (carry_T, out_f) = rnn.apply({"params": init}, x, initial_carry=(c0, h0) if lstm else h0)
    s0 = np.concatenate([h0, c0], axis=-1) if lstm else h0  # jaxrnn's [h | c]; flax's (c, h)
    h, (sT,), _ = jaxrnn.stack_forward(x, [s0], (params,))
    want_T = (sT[:, H:], sT[:, :H]) if lstm else sT
    errs = [rel_err(out_f, h), tree_err(carry_T, want_T)]
    assert max(errs) <= GATED_TOL, errs
    assert jax.tree.structure(cv.to_flax_rnn(params)) == jax.tree.structure(init)
    assert_tree_close(cv.to_flax_rnn(params), init, tol=0)


def flax_view(grads):
    """jaxrnn gradients as flax sees them: flax has no bias on hr, hz, so the GRU's
    ``bh`` r and z blocks (whose gradient is ``bx``'s) read back as zero."""

    def view(p):
        return (
            p._replace(bh=p.bh.at[: 2 * (p.bh.shape[0] // 3)].set(0))
            if isinstance(p, GRUParams)
            else p
        )

    return jax.tree.map(view, grads, is_leaf=lambda p: isinstance(p, GRUParams))


@pytest.mark.parametrize("cells", [("LSTMCell", "GRUCell"), ("GRUCell", "OptimizedLSTMCell")])
def test_against_flax_gated_stack(cells):
    """A bidirectional layer with carries, then a unidirectional one of another cell and
    size: outputs, every final carry and all gradients equal jaxrnn.stack_forward's."""
    nn = pytest.importorskip("flax.linen", reason="flax is not installed")
    H2 = 2
    bi = nn.Bidirectional(
        nn.RNN(flax_cell(cells[0], H)), nn.RNN(flax_cell(cells[0], H)), return_carry=True
    )
    top = nn.RNN(flax_cell(cells[1], H2), return_carry=True)
    kinds = ["gru" if c == "GRUCell" else "lstm" for c in cells]
    layers = make_layers(1, True, seed=5, cell=kinds[0]) + make_layers(
        1, False, 6, 2 * H, H2, kinds[1]
    )
    tree = cv.to_flax_rnn(layers)
    rng = np.random.default_rng(8)
    x, dh = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H2))
    s0 = [
        rng.standard_normal((N, jaxrnn_width(k, h) * d))
        for k, h, d in ((kinds[0], H, 2), (kinds[1], H2, 1))
    ]
    ds = [rng.standard_normal(a.shape) for a in s0]

    def flax_loss(x, s0, tree):
        c_bi, y = bi.apply(
            {"params": tree["layers_0"]}, x, initial_carry=to_carries(s0[0], kinds[0], 2)
        )
        c_top, h = top.apply(
            {"params": tree["layers_1"]}, y, initial_carry=to_carries(s0[1], kinds[1], 1)[0]
        )
        sT = [from_carries(c_bi, kinds[0]), from_carries((c_top,), kinds[1])]
        return dot(h, dh) + dot(sT, ds), (h, sT)

    def jax_loss(x, s0, layers):
        h, sT, _ = jaxrnn.stack_forward(x, s0, layers)
        return dot(h, dh) + dot(list(sT), ds), (h, list(sT))

    g_f, aux_f = jax.jit(jax.grad(flax_loss, argnums=(0, 1, 2), has_aux=True))(x, s0, tree)
    g_j, aux_j = jax.jit(jax.grad(jax_loss, argnums=(0, 1, 2), has_aux=True))(x, s0, layers)
    got = cv.from_flax_rnn(g_f[2])  # the gradients map like the weights
    errs = {
        "outputs, final states": tree_err(aux_f, aux_j),
        "dx, ds0": tree_err(g_f[:2], g_j[:2]),
        "dlayers": tree_err(got, flax_view(g_j[2])),
    }
    assert max(errs.values()) <= GATED_TOL, errs


def jaxrnn_width(kind, h):
    return 2 * h if kind == "lstm" else h


def to_carries(s, kind, dirs):
    """A jaxrnn state ``[h|c]`` (per direction) as flax carries ``(c, h)`` per direction."""
    parts = jnp.split(s, dirs, axis=-1)
    return tuple(tuple(jnp.split(p, 2, axis=-1)[::-1]) if kind == "lstm" else p for p in parts)


def from_carries(carries, kind):
    return jnp.concatenate(
        [jnp.concatenate(c[::-1], -1) if kind == "lstm" else c for c in carries], -1
    )


def _unswap_lstm_gates(sd):  # torch would read jaxrnn's (i, f, o, g) blocks as (i, f, g, o)
    return {k: np.concatenate([v[:6], v[9:], v[6:9]]) if "_l0" in k else v for k, v in sd.items()}


def _sum_gru_biases(sd):  # bh summed into bx, as for the RNN and LSTM: wrong for n's bh
    return {
        **sd,
        "bias_ih_l0": sd["bias_ih_l0"] + sd["bias_hh_l0"],
        "bias_hh_l0": 0 * sd["bias_hh_l0"],
    }


@pytest.mark.parametrize(
    "cell,wrong",
    [("lstm", _unswap_lstm_gates), ("gru", _sum_gru_biases)],
    ids=["lstm-gate-order", "gru-summed-biases"],
)
def test_torch_comparison_rejects_a_wrong_mapping(cell, wrong):
    """The torch check is sharp: each plausible wrong mapping moves the outputs far past 1e-12."""
    torch, model = torch_model(cell, 1, False, seed=0)
    layers = make_layers(1, False, seed=7, cell=cell)
    model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in wrong(cv.to_torch_state_dict(layers)).items()}
    )
    x, hx, _, _ = torch_problem(cell, 1, False, seed=2)
    with torch.no_grad():
        out_t, _ = model(torch.from_numpy(x), jax.tree.map(torch.from_numpy, hx))
    assert rel_err(jax_torch_like(x, hx, layers)[0], out_t) > 1e-3


def _gated_sd(cell="lstm", L=2, bidirectional=False):
    return cv.to_torch_state_dict(make_layers(L, bidirectional, cell=cell))


def _drop(sd, key):
    return {k: v for k, v in sd.items() if k != key}


TORCH_GATED_ERRORS = {
    "missing-weight": (
        lambda: _drop(_gated_sd(), "weight_hh_l1"),
        KeyError,
        r"missing key weight_hh_l1'",
    ),
    "missing-bias": (
        lambda: _drop(_gated_sd("gru"), "bias_hh_l0"),
        KeyError,
        r"missing key bias_hh_l0'",
    ),
    "missing-reverse": (
        lambda: _drop(_gated_sd("gru", 1, True), "weight_hh_l0_reverse"),
        KeyError,
        r"missing key weight_hh_l0_reverse",
    ),
    "no-gate-count": (
        lambda: {**_gated_sd(), "weight_hh_l0": np.ones((2 * H, H))},
        ValueError,
        r"layer 0: inconsistent hidden size: weight_hh_l0 has shape \(6, 3\), expected \(H, H\) "
        r"\(nn.RNN\), \(4H, H\) \(nn.LSTM\) or \(3H, H\) \(nn.GRU\)",
    ),
    "gru-layer-in-lstm": (
        lambda: {**_gated_sd(), "weight_hh_l1": np.ones((3 * H, H))},
        ValueError,
        r"layer 1: inconsistent hidden size: weight_hh_l1 has shape \(9, 3\), expected \(12, 3\) "
        r"for a torch.nn.LSTM with H=3",
    ),
    "bias-shape": (
        lambda: {**_gated_sd("gru"), "bias_ih_l1": np.ones(2 * H)},
        ValueError,
        r"layer 1: .*bias_ih_l1 has shape \(6,\), expected \(9,\) for a torch.nn.GRU",
    ),
    "weight-ih-rows": (
        lambda: {**_gated_sd(), "weight_ih_l0": np.ones((3 * H, D))},
        ValueError,
        r"weight_ih_l0 has shape \(9, 4\), expected \(12, 4\)",
    ),
    "layer-width": (
        lambda: {**_gated_sd(), "weight_ih_l1": np.ones((4 * H, 5))},
        ValueError,
        r"layer 1 has Wx \(5, 12\), but layer 0 outputs 3 features: Wx must be \(3, 4H\)",
    ),
    "mixed-dtype": (
        lambda: {**_gated_sd(), "weight_hh_l0": _gated_sd()["weight_hh_l0"].astype(np.float32)},
        TypeError,
        r"share one dtype, got weight_ih_l0 float64, weight_hh_l0 float32",
    ),
    "proj-size": (
        lambda: {**_gated_sd(), "weight_hr_l0": np.ones((2, H))},
        ValueError,
        r"weight_hr_l0 is the projection of nn.LSTM\(proj_size > 0\)",
    ),
}


@pytest.mark.parametrize("case", list(TORCH_GATED_ERRORS))
def test_torch_gated_state_dict_errors(case):
    make, error, message = TORCH_GATED_ERRORS[case]
    with pytest.raises(error, match=message):
        cv.from_torch_state_dict(make())


def _lstm(**kw):
    return make_layers(1, False, cell="lstm")[0]._replace(**kw)


def _gru(**kw):
    return make_layers(1, False, cell="gru")[0]._replace(**kw)


def _stack(*cells):
    return tuple(
        make_layers(1, False, D=D if k == 0 else H, cell=c)[0] for k, c in enumerate(cells)
    )


LAYER_GATED_ERRORS = {
    "lstm-Wh-gates": (
        lambda: cv.to_torch_state_dict(_lstm(Wh=np.ones((H, 3 * H)))),
        ValueError,
        r"layer 0: inconsistent hidden size: Wx \(4, 12\), Wh \(3, 9\), b \(12,\) "
        r"\(expected Wx \(D, 4H\), Wh \(H, 4H\), b \(4H,\)\)",
    ),
    "gru-bh-shape": (
        lambda: cv.to_flax_gru_cell(_gru(bh=np.ones(H))),
        ValueError,
        r"inconsistent hidden size: .*bh \(3,\) \(expected .*bx \(3H,\), bh \(3H,\)\)",
    ),
    "gru-mixed-dtype": (
        lambda: cv.to_flax_gru_cell(_gru(bh=np.ones(3 * H, np.float32))),
        TypeError,
        r"Wx float64, Wh float64, bx float64, bh float32",
    ),
    "mixed-cells-for-torch": (
        lambda: cv.to_torch_state_dict(_stack("lstm", "gru")),
        TypeError,
        r"one cell for all layers, got layer 0 LSTMParams, layer 1 GRUParams",
    ),
    "bi-mixed-cells": (
        lambda: cv.to_flax_rnn(BiRNNParams(_lstm(), make_layers(1, False, D=D, cell="gru")[0])),
        TypeError,
        r"layer 0 mixes cells: fwd is LSTMParams, bwd is GRUParams",
    ),
    "bidirectional-false": (
        lambda: cv.to_torch_state_dict(BiRNNParams(_gru(), _gru()), bidirectional=False),
        TypeError,
        r"bidirectional=False needs a GRUParams for layer 0, got BiRNNParams",
    ),
    "cell-kind": (
        lambda: cv.to_flax_lstm_cell(_gru()),
        TypeError,
        r"to_flax_lstm_cell must be an LSTMParams, got GRUParams",
    ),
    "hx-not-a-pair": (
        lambda: cv.from_torch_hidden(np.zeros((1, N, H)), _lstm()),
        TypeError,
        r"torch's hx is a tuple \(h_0, c_0\) for these layers, got ndarray",
    ),
    "hx-rows": (
        lambda: cv.from_torch_hidden(np.zeros((1, N, H)), _stack("gru", "gru")),
        ValueError,
        r"h_0 must be \(2, N, 3\) \(L \* directions, N, H\), got \(1, 3, 3\)",
    ),
    "states-width": (
        lambda: cv.to_torch_hidden([np.zeros((N, H))], _lstm()),
        ValueError,
        r"states\[0\] must have 6 features, got \(3, 3\)",
    ),
}


@pytest.mark.parametrize("case", list(LAYER_GATED_ERRORS))
def test_gated_layer_errors(case):
    call, error, message = LAYER_GATED_ERRORS[case]
    with pytest.raises(error, match=message):
        call()


def _lstm_tree(**edit):
    tree = cv.to_flax_lstm_cell(_lstm())
    return {**tree, **edit}


def _gru_tree(**edit):
    tree = cv.to_flax_gru_cell(_gru())
    return {**tree, **edit}


FLAX_GATED_ERRORS = {
    "lstm-missing-bias": (
        lambda: cv.from_flax_lstm_cell(_lstm_tree(hg={"kernel": np.ones((H, H))})),
        KeyError,
        r"from_flax_lstm_cell: missing key 'hg/bias' \(have \['kernel'\]\)",
    ),
    "lstm-kernel-shape": (
        lambda: cv.from_flax_lstm_cell(_lstm_tree(**{"if": {"kernel": np.ones((D, 2))}})),
        ValueError,
        r"if/kernel has shape \(4, 2\), expected \(D,H\) = \(4, 3\)",
    ),
    "lstm-input-bias": (
        lambda: cv.from_flax_lstm_cell(
            _lstm_tree(ii={"kernel": np.ones((D, H)), "bias": np.ones(H)})
        ),
        ValueError,
        r"'ii/bias' is not supported: LSTMCell's ii has no bias",
    ),
    "gru-recurrent-bias": (
        lambda: cv.from_flax_gru_cell(
            _gru_tree(hz={"kernel": np.ones((H, H)), "bias": np.ones(H)})
        ),
        ValueError,
        r"'hz/bias' is not supported: GRUCell's hz has no bias",
    ),
    "gru-mixed-dtype": (
        lambda: cv.from_flax_gru_cell(
            _gru_tree(**{"in": {"kernel": np.ones((D, H)), "bias": np.ones(H, np.float32)}})
        ),
        TypeError,
        r"share one dtype, got .*in/kernel float64, .*in/bias float32",
    ),
    "mgu-cell": (
        lambda: cv.from_flax_rnn({"cell": {k: {} for k in ("if", "in", "hf", "hn")}}),
        ValueError,
        r"this is a flax MGUCell .* no jaxrnn equivalent",
    ),
    "unknown-cell": (
        lambda: cv.from_flax_rnn({"cell": {"w": {}}}),
        KeyError,
        r"a cell needs 'i' \(SimpleCell\), 'ii' \(LSTMCell\) or 'ir' \(GRUCell\), got \['w'\]",
    ),
    "bi-mixed-cells": (
        lambda: cv.from_flax_rnn(
            {"forward_rnn": {"cell": _lstm_tree()}, "backward_rnn": {"cell": _gru_tree()}}
        ),
        TypeError,
        r"layer 0 mixes cells: fwd is LSTMParams, bwd is GRUParams",
    ),
}


@pytest.mark.parametrize("case", list(FLAX_GATED_ERRORS))
def test_flax_gated_errors(case):
    call, error, message = FLAX_GATED_ERRORS[case]
    with pytest.raises(error, match=message):
        call()


def test_gru_to_flax_folds_bh_r_z_into_the_input_biases():
    """GRU -> flax -> GRU keeps the function, not the split: bh's r, z blocks move to bx."""
    p = _gru()
    back = cv.from_flax_gru_cell(cv.to_flax_gru_cell(p))
    np.testing.assert_array_equal(back.bx[: 2 * H], p.bx[: 2 * H] + p.bh[: 2 * H])
    np.testing.assert_array_equal(back.bh, np.concatenate([np.zeros(2 * H), p.bh[2 * H :]]))
    assert_tree_close((back.Wx, back.Wh, back.bx[2 * H :]), (p.Wx, p.Wh, p.bx[2 * H :]), tol=0)


def test_torch_hidden_round_trip():
    layers = make_layers(2, True, cell="lstm")
    h, c = np.random.default_rng(0).standard_normal((2, 4, N, H))
    states = cv.from_torch_hidden((h, c), layers)
    assert [s.shape for s in states] == [(N, 4 * H)] * 2  # [h_f | c_f | h_b | c_b]
    np.testing.assert_array_equal(states[1][:, 2 * H : 3 * H], h[3])
    np.testing.assert_array_equal(states[1][:, 3 * H :], c[3])
    assert_tree_close(cv.to_torch_hidden(states, layers), (h, c), tol=0)


@pytest.mark.parametrize("module", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_bias_false_torch_models_round_trip_exactly(module, bidirectional):
    """Outside trial (issue 18): a ``bias=False`` model could not load its own round trip
    (``Unexpected key(s) bias_ih_l0``); ``bias=False`` writes no bias keys."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torch.manual_seed(0)
    make = getattr(torch.nn, module)
    kw = dict(num_layers=2, bidirectional=bidirectional, bias=False, batch_first=True)
    m, m2 = make(4, 3, **kw).double(), make(4, 3, **kw).double()
    sd = cv.to_torch_state_dict(cv.from_torch_state_dict(m.state_dict()), bias=False)
    assert not any("bias" in k for k in sd)
    m2.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})  # strict: same keys
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bias_false_refuses_a_non_zero_bias(cell):
    init = {"rnn": jaxrnn.init_rnn_params, "lstm": jaxrnn.init_lstm_params}.get(
        cell, jaxrnn.init_gru_params
    )
    p = init(jax.random.PRNGKey(0), 4, 3, jnp.float64)
    p = p._replace(**{p._fields[-1]: p[-1].at[0].set(0.5)})  # one non-zero bias entry
    with pytest.raises(
        ValueError,
        match=rf"bias=False writes no biases, but layer 0 has a non-zero {p._fields[-1]}",
    ):
        cv.to_torch_state_dict(p, bias=False)
    zero = p._replace(**{n: jnp.zeros_like(a) for n, a in zip(p._fields[2:], p[2:], strict=True)})
    assert set(cv.to_torch_state_dict(zero, bias=False)) == {"weight_ih_l0", "weight_hh_l0"}
