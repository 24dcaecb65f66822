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
from jaxrnn import BiRNNParams, RNNParams
from jaxrnn import convert as cv
from jaxrnn.testing import strategies as rs

N, T, D, H = 3, 5, 4, 3
F64 = jnp.float64
TOL = 1e-10  # float64 on both sides; measured ~1e-15


def make_layers(L, bidirectional, seed=0, D=D, H=H):
    """A stack of random layers; layer k > 0 takes the previous output (H or 2H features)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if bidirectional else 1
    layers = []
    for k in range(L):
        d_in = D if k == 0 else dirs * H
        ps = [
            RNNParams(*(rng.standard_normal(s) / np.sqrt(s[0]) for s in ((d_in, H), (H, H), (H,))))
            for _ in range(dirs)
        ]
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


@pytest.mark.parametrize("kind, gates", [("LSTM", 4), ("GRU", 3)])
def test_torch_lstm_and_gru_state_dicts_are_named(kind, gates):
    torch = pytest.importorskip("torch")
    sd = getattr(torch.nn, kind)(3, 5).state_dict()
    with pytest.raises(
        ValueError, match=rf"weight_hh_l0 has shape \({5 * gates}, 5\).*torch\.nn\.{kind} state"
    ):
        cv.from_torch_state_dict(sd)


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
