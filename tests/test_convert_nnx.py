"""jaxrnn.convert and flax NNX: ``from_nnx_cell`` / ``to_nnx_cell`` for ``SimpleCell``,
``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``; ``from_nnx_rnn`` / ``to_nnx_rnn`` for
``nnx.RNN`` / ``nnx.Bidirectional`` stacks; ``from_flax_rnn``'s message for NNX input (issue 18).

Round trips are exact (tolerance 0; ``residual=True`` adds and subtracts I, so 1e-15).
flax's own initialisation, read by ``from_nnx_rnn``, computes flax's outputs in
:class:`jaxrnn.nnx` modules (their gradients are tested in ``test_nnx.py``). Every
weight is float64 and every bias non-zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close, bad, check_raises

from jaxrnn import BiRNNParams, GRUParams, LSTMParams, RNNParams
from jaxrnn import convert as cv

nnx = pytest.importorskip("flax.nnx")
import jaxrnn.nnx as jnnx  # noqa: E402

N, T, D, H = 2, 5, 4, 3
F64 = jnp.float64
PARAMS = {"SimpleCell": RNNParams, "LSTMCell": LSTMParams, "OptimizedLSTMCell": LSTMParams,
          "GRUCell": GRUParams}  # fmt: skip
GATES = {RNNParams: 1, LSTMParams: 4, GRUParams: 3}


def abstract_cell(name, d_in=D, dtype=F64, **kw):
    """A flax NNX cell built by ``nnx.eval_shape``: shapes only, nothing drawn (cheap)."""
    cls = getattr(nnx, name)
    return nnx.eval_shape(lambda: cls(d_in, H, param_dtype=dtype, dtype=dtype,
                                      rngs=nnx.Rngs(0), **kw))  # fmt: skip


def random_params(name, d_in=D, seed=0, b_hn=0.0, dtype=np.float64):
    """Random jaxrnn weights for the cell ``name``; a GRU's ``bh`` r, z blocks non-zero,
    its n block ``b_hn``."""
    rng, cls = np.random.default_rng(seed), PARAMS[name]
    G = GATES[cls]
    p = [rng.standard_normal((d_in, G * H)), rng.standard_normal((H, G * H))]
    p += [rng.standard_normal(G * H) for _ in cls._fields[2:]]
    if cls is GRUParams:
        p[3][2 * H :] = b_hn
    return cls(*(a.astype(dtype) for a in p))


def filled_cell(name, d_in=D, seed=0, **kw):
    return cv.to_nnx_cell(random_params(name, d_in, seed), abstract_cell(name, d_in, **kw))


def state_of(cell):
    return nnx.to_pure_dict(nnx.state(cell, nnx.Param))


@pytest.mark.parametrize("name", list(PARAMS))
def test_cell_round_trips_are_exact(name):
    """jaxrnn -> NNX -> jaxrnn and NNX -> jaxrnn -> NNX give back the same numbers; the cell,
    its nnx.State and a pure dict of it read alike."""
    p = random_params(name)
    cell = cv.to_nnx_cell(p, abstract_cell(name))
    back = cv.from_nnx_cell(cell)
    if name == "GRUCell":  # bh's r, z blocks act only as bx's: they come back inside bx
        p = p._replace(bx=p.bx + np.r_[p.bh[: 2 * H], np.zeros(H)], bh=np.zeros(3 * H))
    assert_tree_close(back, p, tol=0)
    assert_tree_close(cv.from_nnx_cell(nnx.state(cell)), p, tol=0)
    assert_tree_close(cv.from_nnx_cell(state_of(cell)), p, tol=0)
    again = cv.to_nnx_cell(back, abstract_cell(name))
    assert_tree_close(state_of(again), state_of(cell), tol=0)


def test_residual_simple_cell():
    """``SimpleCell(residual=True)`` holds ``Wh - I``: read from the module's flag, or from a
    state with ``residual=True``; round trip to 1e-15."""
    p = random_params("SimpleCell")
    cell = cv.to_nnx_cell(p, abstract_cell("SimpleCell", residual=True))
    np.testing.assert_array_equal(cell.dense_h.kernel.get_value(), p.Wh - np.eye(H))
    assert_tree_close(cv.from_nnx_cell(cell), p, tol=1e-15)
    assert_tree_close(cv.from_nnx_cell(nnx.state(cell), residual=True), p, tol=1e-15)


def test_stack_round_trips_are_exact():
    """A list (or nnx.Sequential) of an nnx.Bidirectional and an nnx.RNN reads as
    ``(BiRNNParams, LSTMParams)`` and writes back exactly; one module reads as one layer."""
    fwd, bwd, top = filled_cell("LSTMCell", seed=1), filled_cell("LSTMCell", seed=2), None
    top = filled_cell("OptimizedLSTMCell", d_in=2 * H, seed=3)
    stack = [nnx.Bidirectional(nnx.RNN(fwd), nnx.RNN(bwd)), nnx.RNN(top)]
    layers = cv.from_nnx_rnn(stack)
    want = (BiRNNParams(cv.from_nnx_cell(fwd), cv.from_nnx_cell(bwd)), cv.from_nnx_cell(top))
    assert_tree_close(layers, want, tol=0)
    assert_tree_close(cv.from_nnx_rnn(nnx.Sequential(*stack)), want, tol=0)
    assert_tree_close(cv.from_nnx_rnn(stack[0]), want[0], tol=0)
    blank = [nnx.Bidirectional(nnx.RNN(abstract_cell("LSTMCell")),
                               nnx.RNN(abstract_cell("LSTMCell"))),
             nnx.RNN(abstract_cell("OptimizedLSTMCell", d_in=2 * H))]  # fmt: skip
    assert cv.to_nnx_rnn(layers, blank) is blank
    assert_tree_close([state_of(m) for m in blank], [state_of(m) for m in stack], tol=0)


@pytest.mark.parametrize("name", list(PARAMS))
def test_flax_initialised_cells_compute_flax_outputs(name):
    """flax's own initialisation (non-zero biases), read by from_nnx_rnn, gives a
    jaxrnn.nnx module flax's outputs (forward; gradients are test_nnx.py's)."""
    rngs = nnx.Rngs(0)
    cls = getattr(nnx, name)
    cell = cls(D, H, param_dtype=F64, dtype=F64, bias_init=nnx.initializers.normal(1.0), rngs=rngs)
    rnn = nnx.RNN(cell)
    module = {RNNParams: jnnx.RNN, LSTMParams: jnnx.LSTM, GRUParams: jnnx.GRU}[PARAMS[name]]
    m = module.from_params(cv.from_nnx_rnn(rnn))
    x = jax.random.normal(jax.random.key(1), (N, T, D), F64)
    assert_tree_close(m(x), rnn(x), tol=1e-12)


# --- Bad inputs -----------------------------------------------------------------------------


def nnx_state(name, **changes):
    """A filled cell's pure-dict state with ``changes`` (path -> array, or None to drop)."""
    tree = state_of(filled_cell(name))
    for path, value in changes.items():
        dense, leaf = path.split("/")
        if value is None:
            del tree[dense][leaf]
        else:
            tree[dense][leaf] = value
    return tree


def gru_stack_with_b_hn():
    layers = (random_params("GRUCell"), BiRNNParams(random_params("GRUCell", H),
                                                   random_params("GRUCell", H, b_hn=0.5)))  # fmt: skip
    cells = [abstract_cell("GRUCell")] + [abstract_cell("GRUCell", H) for _ in range(2)]
    return layers, [nnx.RNN(cells[0]), nnx.Bidirectional(nnx.RNN(cells[1]), nnx.RNN(cells[2]))]


def _rnn(name="LSTMCell", d_in=D, seed=0):
    return nnx.RNN(filled_cell(name, d_in, seed))


BOTH = r"reads flax linen parameter trees; flax NNX modules .* go to jaxrnn.convert.from_nnx_rnn"
BAD = [
    bad("to_cell_wrong_params", lambda: cv.to_nnx_cell(random_params("LSTMCell"),
                                                       abstract_cell("SimpleCell")),
        TypeError, r"to_nnx_cell: an nnx.SimpleCell takes RNNParams, got LSTMParams"),
    bad("to_cell_nonzero_b_hn", lambda: cv.to_nnx_cell(random_params("GRUCell", b_hn=0.25),
                                                       abstract_cell("GRUCell")),
        ValueError, r"to_nnx_cell: nnx.GRUCell has no b_hn \(flax#5594.*max \|b_hn\| = 0.25"),
    bad("to_cell_shape", lambda: cv.to_nnx_cell(random_params("GRUCell", d_in=H),
                                                abstract_cell("GRUCell")),
        ValueError, r"nnx.GRUCell \(in_features=4, hidden_features=3\) has dense_i/kernel "
                    r"\(4, 9\) float64, the weights give \(3, 9\) float64"),
    bad("to_cell_dtype", lambda: cv.to_nnx_cell(random_params("LSTMCell", dtype=np.float32),
                                                abstract_cell("OptimizedLSTMCell")),
        ValueError, r"has dense_i/kernel \(4, 12\) float64, the weights give \(4, 12\) float32"),
    bad("to_cell_bad_weights", lambda: cv.to_nnx_cell(RNNParams(np.ones((D, H)), np.ones((H, 2))
                                                                , np.ones(H)),
                                                      abstract_cell("SimpleCell")),
        ValueError, r"to_nnx_cell: inconsistent hidden size"),
    bad("to_cell_not_a_cell", lambda: cv.to_nnx_cell(random_params("SimpleCell"),
                                                     nnx.Linear(D, H, rngs=nnx.Rngs(0))),
        TypeError, r"expected a flax nnx.SimpleCell / LSTMCell / OptimizedLSTMCell / GRUCell, "
                   r"got Linear"),
    bad("to_cell_given_rnn", lambda: cv.to_nnx_cell(random_params("LSTMCell"), _rnn()),
        TypeError, r"got RNN \(this is an nnx.RNN: use from_nnx_rnn / to_nnx_rnn\)"),
    bad("from_cell_jaxrnn_module", lambda: cv.from_nnx_cell(jnnx.GRU(D, H, rngs=nnx.Rngs(0))),
        TypeError, r"got GRU \(a jaxrnn.nnx module's weights are module.params\(\)"),
    bad("from_cell_linen_tree", lambda: cv.from_nnx_cell(cv.to_flax_lstm_cell(
        random_params("LSTMCell"))), KeyError,
        r"not a flax NNX cell's parameters.*a flax linen tree goes to from_flax_rnn"),
    bad("from_cell_missing", lambda: cv.from_nnx_cell(nnx_state("LSTMCell", **{"hi/bias": None})),
        KeyError, r"from_nnx_cell: the LSTMCell has no 'hi/bias'"),
    bad("from_cell_unknown_width", lambda: cv.from_nnx_cell(
        nnx_state("SimpleCell", **{"dense_h/kernel": np.ones((H, 2 * H))})), ValueError,
        r"dense_h/kernel has shape \(3, 6\): \(H, H\) for a SimpleCell, \(H, 3H\) for a GRUCell"),
    bad("from_cell_shape", lambda: cv.from_nnx_cell(
        nnx_state("OptimizedLSTMCell", **{"dense_i/kernel": np.ones((D, 3 * H))})), ValueError,
        r"the OptimizedLSTMCell's dense_i/kernel has shape \(4, 9\), expected \(D,4H\) = "
        r"\(4, 12\)"),
    bad("from_cell_bias_shape", lambda: cv.from_nnx_cell(
        nnx_state("GRUCell", **{"dense_i/bias": np.ones(H)})), ValueError,
        r"the GRUCell's dense_i/bias has shape \(3,\), expected \(3H\) = \(9,\)"),
    bad("from_cell_mixed_dtype", lambda: cv.from_nnx_cell(
        nnx_state("GRUCell", **{"dense_i/bias": np.ones(3 * H, np.float32)})), TypeError,
        r"share one dtype, got .*dense_i/bias float32"),
    bad("from_cell_int", lambda: cv.from_nnx_cell(
        nnx_state("SimpleCell", **{"dense_i/bias": np.ones(H, np.int32)})), TypeError,
        r"dense_i/bias must be a floating-point array"),
    bad("from_cell_gate_fn", lambda: cv.from_nnx_cell(abstract_cell("LSTMCell",
                                                                    gate_fn=nnx.relu)),
        ValueError, r"jaxrnn's LSTM uses sigmoid gates and tanh; this LSTMCell has gate_fn="),
    bad("from_cell_residual_mismatch", lambda: cv.from_nnx_cell(
        filled_cell("SimpleCell", residual=True), residual=False), ValueError,
        r"residual=False, but the cell has residual=True"),
    bad("from_cell_residual_gru", lambda: cv.from_nnx_cell(nnx_state("GRUCell"), residual=True),
        ValueError, r"residual=True applies to a SimpleCell, got a GRUCell"),
    bad("from_cell_int_arg", lambda: cv.from_nnx_cell(42), TypeError,
        r"expected a flax NNX cell or its nnx.State, got int"),
    bad("from_rnn_linen_dict", lambda: cv.from_nnx_rnn({"cell": {}}), TypeError,
        r"from_nnx_rnn: expected an nnx.RNN.* got dict \(a flax linen tree goes to from_flax_rnn"),
    bad("from_rnn_state", lambda: cv.from_nnx_rnn(nnx.state(_rnn())), TypeError,
        r"got State \(read a cell's nnx.State with from_nnx_cell, or pass the modules\)"),
    bad("from_rnn_mixed_cells", lambda: cv.from_nnx_rnn(
        nnx.Bidirectional(_rnn("LSTMCell"), _rnn("GRUCell"))), TypeError,
        r"from_nnx_rnn: layer 0 mixes cells: fwd is LSTMParams, bwd is GRUParams"),
    bad("from_rnn_widths", lambda: cv.from_nnx_rnn([_rnn(), _rnn()]), ValueError,
        r"layer 1 has Wx \(4, 12\), but layer 0 outputs 3 features"),
    bad("from_rnn_cell_error_names_layer", lambda: cv.from_nnx_rnn(
        [_rnn(), nnx.RNN(abstract_cell("GRUCell", H, gate_fn=nnx.relu))]), ValueError,
        r"from_nnx_rnn: layer 1: jaxrnn's GRU uses sigmoid gates"),
    bad("to_rnn_count", lambda: cv.to_nnx_rnn((random_params("LSTMCell"),
                                               random_params("LSTMCell", H)), [_rnn()]),
        ValueError, r"to_nnx_rnn: 2 layer\(s\) of weights for 1 module\(s\)"),
    bad("to_rnn_directions", lambda: cv.to_nnx_rnn(
        BiRNNParams(random_params("LSTMCell"), random_params("LSTMCell")), _rnn()), TypeError,
        r"to_nnx_rnn: layer 0 is BiRNNParams, but its module is an nnx.RNN"),
    bad("to_rnn_b_hn_located", lambda: cv.to_nnx_rnn(*gru_stack_with_b_hn()), ValueError,
        r"to_nnx_rnn: layer 1 bwd: nnx.GRUCell has no b_hn"),
    bad("flax_rnn_given_nnx_state", lambda: cv.from_flax_rnn(nnx.state(_rnn())), TypeError,
        r"from_flax_rnn: this is a flax NNX State; from_flax_rnn " + BOTH),
    bad("flax_rnn_given_nnx_module", lambda: cv.from_flax_rnn(_rnn()), TypeError,
        r"this is a flax NNX RNN; from_flax_rnn " + BOTH),
    bad("flax_rnn_given_nnx_dict", lambda: cv.from_flax_rnn(state_of(_rnn())), TypeError,
        r"this is a flax NNX dict; from_flax_rnn " + BOTH),
    bad("flax_rnn_given_nnx_lstm_dict", lambda: cv.from_flax_rnn(
        {"cell": state_of(filled_cell("LSTMCell"))}), TypeError, r"this is a flax NNX dict"),
    bad("flax_rnn_unknown_cell", lambda: cv.from_flax_rnn({"cell": {"w": {}}}), KeyError,
        r"a cell needs 'i' \(SimpleCell\), 'ii' \(LSTMCell\) or 'ir' \(GRUCell\), got \['w'\]; "
        r"from_flax_rnn " + BOTH),
    bad("flax_rnn_unknown_tree", lambda: cv.from_flax_rnn({"foo": {}}), KeyError,
        r"expected 'cell', 'forward_rnn' or 'layers_0', got \['foo'\]; from_flax_rnn " + BOTH),
    bad("flax_rnn_not_a_dict", lambda: cv.from_flax_rnn(42), TypeError,
        r"expected a flax linen parameter dict, got int; from_flax_rnn " + BOTH),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)
