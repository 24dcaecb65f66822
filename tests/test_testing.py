"""jaxrnn.testing: the oracle accepts right implementations and rejects wrong ones."""

import functools
import math
import re
import subprocess
import sys
from pathlib import Path

import jax_rnn_impl
import lstm_numpy
import mutants
import numpy as np
import pytest
import wrong_impls
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import reference
from jaxrnn.testing import check_bptt, check_rnn_backward, check_rnn_step_backward
from jaxrnn.testing import strategies as rs
from jaxrnn.testing._cli import main

ACTS = list(jaxrnn.ACTIVATIONS)
FEW_SHAPES = st.sampled_from([rs.Shape(1, 1, 3, 1), rs.Shape(3, 5, 2, 4)])  # bounded jit compiles
D, H = 3, 5
LSTM = dict(
    params=(np.zeros((D, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)),
    state=(np.zeros(H), np.zeros(H)),
    input_size=D,
    output=lambda s: s[0],
)


@pytest.mark.parametrize("activation", ACTS)
def test_numpy_reference_passes(activation):
    """The document's numpy algorithm (jaxrnn.reference) passes for every activation."""
    check_rnn_backward(reference.rnn_forward, reference.rnn_backward, activation=activation)
    check_rnn_step_backward(
        reference.rnn_step_forward, reference.rnn_step_backward, activation=activation
    )


@pytest.mark.parametrize("activation", ACTS)
def test_jaxrnn_functions_pass(activation):
    """JAX implementations (jaxrnn's own, taking numpy inputs, returning jax arrays) pass."""
    check_rnn_backward(
        jaxrnn.rnn_forward, jaxrnn.rnn_backward, activation=activation, shapes=FEW_SHAPES
    )
    check_rnn_step_backward(
        jaxrnn.rnn_step_forward, jaxrnn.rnn_step_backward, activation=activation, shapes=FEW_SHAPES
    )


def test_plain_jax_implementation_passes_and_compiles_a_bounded_number_of_times():
    """A jitted lax.scan forward with a jax.vjp backward: at most one compile per pool shape."""
    jax_rnn_impl.SHAPES_SEEN.clear()
    check_rnn_backward(jax_rnn_impl.rnn_forward, jax_rnn_impl.rnn_backward)
    assert jax_rnn_impl.SHAPES_SEEN == set(rs.CHECK_POOL)


BUGS = {**wrong_impls.SEQUENCE_BUGS, **wrong_impls.STEP_BUGS}


def _shape_seed(message):
    m = re.search(r"shape=\((\d+), (\d+), (\d+), (\d+)\), seed=(\d+)", message)
    return tuple(map(int, m.groups()[:4])), int(m.group(5))


@pytest.mark.parametrize("name", list(BUGS))
def test_wrong_implementations_are_rejected(name):
    """Each plausible mistake fails with a report naming the quantity, shape, seed, error."""
    forward, backward, activation, quantity = BUGS[name]
    check = check_rnn_step_backward if name.startswith("step_") else check_rnn_backward
    with pytest.raises(AssertionError) as info:
        check(forward, backward, activation=activation)
    msg = str(info.value)
    assert re.search(rf"check FAILED \(activation='{activation}'\): {quantity} is wrong", msg), msg
    assert re.search(rf"\n  {quantity} +\(.*WRONG", msg), msg  # its row in the table
    assert re.search(r"shape: N=\d+, .*H=\d+ +seed: \d+", msg), msg
    assert "max error in" in msg or "returned shape" in msg
    shape, seed = _shape_seed(msg)  # the printed reproduction fails the same way
    with pytest.raises(AssertionError, match=rf": {quantity} is wrong"):
        check(forward, backward, activation=activation, shape=shape, seed=seed)


def test_report_recognises_patterns():
    fwd, bwd, _, _ = wrong_impls.SEQUENCE_BUGS["dWh_transposed"]
    with pytest.raises(AssertionError, match=r"WRONG: it equals the transpose"):
        check_rnn_backward(fwd, bwd, shape=(2, 3, 1, 2), seed=1)
    fwd, bwd, _, _ = wrong_impls.SEQUENCE_BUGS["db_not_summed_over_batch"]
    with pytest.raises(AssertionError, match=r"divided by N \(a mean over the batch"):
        check_rnn_backward(fwd, bwd, shape=(3, 2, 2, 2), seed=1)


def test_report_locates_a_truncation_in_time():
    """Truncation after 8 steps: shrunk to T = 12, right for the last 8 steps, named."""
    fwd, bwd, _, _ = mutants.MUTANTS["truncated_after_8"]
    with pytest.raises(AssertionError) as info:
        check_rnn_backward(fwd, bwd)
    msg = str(info.value)
    assert "shape: N=3, T=12, D=5, H=3" in msg, msg
    assert "dx is right for the last 8 of 12 steps (t = 4 ... 11)" in msg, msg
    assert "first wrong at t = 3 = T-9, counting back from the end" in msg, msg
    assert "looks like: truncated BPTT: the carried gradient stops after 8 steps" in msg, msg


def test_default_examples_reach_long_wide_batched_problems():
    """One default call: the 7 pool shapes (T = 64, D, H >= 16 with D != H, N = 4), then 30."""
    seen = []

    def recording_forward(x, h0, Wx, Wh, b):
        assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in (x, h0, Wx, Wh, b))
        seen.append(x.shape + h0.shape[-1:])
        return reference.rnn_forward(x, h0, Wx, Wh, b)

    check_rnn_backward(recording_forward, reference.rnn_backward)
    assert len(seen) == len(rs.CHECK_POOL) + 30 and set(seen) == set(rs.CHECK_POOL)
    N, T, D, H = (np.array(s) for s in zip(*seen, strict=True))
    assert ((T >= 64) & (D >= 16) & (H >= 16) & (D != H)).any() and N.max() >= 4
    assert (T == 1).any() and (N == 1).any() and (H == 1).any() and (D == H).any()


@pytest.mark.parametrize("T", [12, 24, 40, 64])
def test_long_range_draws_make_every_truncation_visible(T):
    """Cutting the carried gradient after any k < T steps moves dx by >= 1e4 x the tolerance."""
    shape = next(s for s in rs.CHECK_POOL if s.T == T)
    for seed in range(3):
        p = rs.make_check_problem(shape, seed)
        full = _dx(p, None)
        scale = max(np.abs(full).max(), 1)
        worst = min(np.abs(_dx(p, k) - full).max() / scale for k in range(1, T))
        assert worst > 1e4 * 1e-8, (shape, seed, worst)


def _dx(p, keep):
    """dx of the tanh RNN, each dh_t reaching back ``keep`` steps (None: all)."""
    _, (x, h0, Wx, Wh, h, A, _) = mutants.forward(*p.args)
    T = x.shape[1]
    dx = np.zeros_like(x)
    for s in range(T):
        d = p.dh[:, s]
        for t in range(s, -1 if keep is None else max(s - keep, -1), -1):
            da = d * (1 - h[:, t] ** 2)
            dx[:, t] += da @ Wx.T
            d = da @ Wh.T
    return dx


def test_lengths_mode_passes_right_implementations_and_draws_0_and_T():
    seen = []

    def fwd(x, h0, Wx, Wh, b, lengths):
        seen.append((x.shape[1], lengths.tolist()))
        return mutants.forward(x, h0, Wx, Wh, b, lengths)

    check_rnn_backward(fwd, mutants.backward, lengths=True, max_examples=10)
    assert any(0 in ls for _, ls in seen) and any(T in ls for T, ls in seen)
    check_rnn_backward(jaxrnn.rnn_forward, jaxrnn.rnn_backward, lengths=True, shapes=FEW_SHAPES)


@pytest.mark.parametrize("name", list(mutants.LENGTH_MUTANTS))
def test_lengths_mode_rejects_leaks_from_padding(name):
    fwd, bwd, quantity, diagnosis = mutants.LENGTH_MUTANTS[name]
    with pytest.raises(AssertionError, match=rf": {quantity} is wrong(.|\n)*{diagnosis}"):
        check_rnn_backward(fwd, bwd, lengths=True)


def test_padded_steps_must_be_exactly_zero():
    def tiny_leak(dh, cache):
        dx, *rest = mutants.backward(dh, cache)
        return (dx + 1e-12 * (dx == 0), *rest)

    with pytest.raises(AssertionError, match=r"dx +.*WRONG: nonzero at padded steps"):
        check_rnn_backward(mutants.forward, tiny_leak, lengths=True)


def test_activation_passed_only_when_accepted():
    """activation= goes to a function that takes it; a bound function is checked as bound."""
    relu_fwd = functools.partial(reference.rnn_forward, activation="relu")

    def no_kwarg(x, h0, Wx, Wh, b):
        return relu_fwd(x, h0, Wx, Wh, b)

    check_rnn_backward(no_kwarg, reference.rnn_backward, activation="relu", max_examples=5)
    with pytest.raises(AssertionError, match=r"activation='tanh'\): h is wrong"):
        check_rnn_backward(no_kwarg, reference.rnn_backward, max_examples=5)
    check_rnn_backward(
        lambda *a, **kw: reference.rnn_forward(*a, **kw),
        reference.rnn_backward,
        activation="sigmoid",
        max_examples=5,
    )


def test_user_exceptions_and_bad_returns_are_reported():
    def raises(dh, cache):
        raise ValueError("shapes (2,3) and (4,) not aligned")

    with pytest.raises(
        AssertionError,
        match=r"backward_fn raised ValueError: shapes \(2,3\).*\(at .*test_testing.py:\d+\)",
    ):
        check_rnn_backward(reference.rnn_forward, raises, max_examples=3)
    with pytest.raises(AssertionError, match=r"forward_fn must return \(h, cache\), got a ndarray"):
        check_rnn_backward(lambda *a: reference.rnn_forward(*a)[0], raises, max_examples=3)
    with pytest.raises(AssertionError, match=r"must return \(dx, dh0, dWx, dWh, db\), got a tuple"):
        check_rnn_backward(
            reference.rnn_forward, lambda dh, c: reference.rnn_backward(dh, c)[:4], max_examples=3
        )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_in_outputs_are_named(bad):
    def backward(dh, cache):
        dx, dh0, dWx, dWh, db = reference.rnn_backward(dh, cache)
        dWh = dWh.copy()
        dWh[0, 0] = bad
        return dx, dh0, dWx, dWh, db

    kind = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(AssertionError) as info:
        check_rnn_backward(reference.rnn_forward, backward)
    msg = str(info.value)
    assert f"dWh is wrong (it contains {kind} (1 of 1 entries))" in msg, msg
    assert re.search(rf"\n  dWh +\(1, 1\) +nan +WRONG: it contains {kind}", msg), msg


def test_float32_implementation_needs_a_looser_tol():
    def fwd32(x, h0, Wx, Wh, b):
        return reference.rnn_forward(*(a.astype(np.float32) for a in (x, h0, Wx, Wh, b)))

    def bwd32(dh, cache):
        return reference.rnn_backward(dh.astype(np.float32), cache)

    with pytest.raises(AssertionError, match=r"returned float32: compute in float64 or raise tol"):
        check_rnn_backward(fwd32, bwd32, max_examples=5)
    check_rnn_backward(fwd32, bwd32, max_examples=5, tol=1e-5)


def test_other_shapes_including_empty_and_beyond_the_bucket():
    big = st.sampled_from([rs.Shape(5, 70, 6, 33), rs.Shape(2, 0, 3, 2)])
    check_rnn_backward(reference.rnn_forward, reference.rnn_backward, shapes=big, max_examples=4)


@given(st.sampled_from(["tanh", "relu"]))
@settings(max_examples=2)
def test_usable_inside_a_users_given_test(activation):
    """Nested in a user's own hypothesis test, the oracle runs and still rejects."""
    check_rnn_backward(
        reference.rnn_forward, reference.rnn_backward, activation=activation, max_examples=3
    )
    fwd, bwd, _, _ = wrong_impls.SEQUENCE_BUGS["dh0_returns_zeros"]
    with pytest.raises(AssertionError, match="dh0 is wrong"):
        check_rnn_backward(fwd, bwd, activation=activation, max_examples=3)


def torch_rnn():
    torch = pytest.importorskip("torch", reason="torch is not installed")

    def forward(x, h0, Wx, Wh, b):
        leaves = [a.requires_grad_() for a in (x, h0, Wx, Wh, b)]
        h, hs = h0, []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ Wx + h @ Wh + b)
            hs.append(h)
        return torch.stack(hs, 1), (torch.stack(hs, 1), leaves)

    def backward(dh, cache):
        h, leaves = cache
        return torch.autograd.grad(h, leaves, dh)

    return forward, backward, torch.from_numpy


def test_torch_implementation_via_convert_inputs():
    forward, backward, convert = torch_rnn()
    check_rnn_backward(forward, backward, convert_inputs=convert, max_examples=5)


def test_check_bptt_accepts_a_numpy_lstm_and_locates_a_truncated_one():
    check_bptt(lstm_numpy.lstm_cell, lstm_numpy.lstm_forward, lstm_numpy.lstm_backward, **LSTM)
    cut = functools.partial(lstm_numpy.lstm_backward, keep=8)
    with pytest.raises(AssertionError) as info:
        check_bptt(lstm_numpy.lstm_cell, lstm_numpy.lstm_forward, cut, **LSTM)
    msg = str(info.value)
    assert "BPTT check FAILED: dx is wrong" in msg and "shape: N=3, T=12" in msg, msg
    assert "dx is right for the last 8 of 12 steps" in msg, msg
    assert re.search(r"\n  dstate0\[1\] +\(3, 5\) ", msg), msg  # pytree paths name the rows
    assert "reproduce: jaxrnn.testing.check_bptt(" in msg and "shape=(3, 12), seed=3" in msg


def test_check_bptt_names_a_wrong_parameter():
    def no_dWh(dh, cache):
        dx, ds0, (dWx, dWh, db) = lstm_numpy.lstm_backward(dh, cache)
        return dx, ds0, (dWx, 0 * dWh, db)

    with pytest.raises(AssertionError, match=r"dparams\[1\] is wrong(.|\n)*it is all zeros"):
        check_bptt(lstm_numpy.lstm_cell, lstm_numpy.lstm_forward, no_dWh, **LSTM)


# Returns whose containers differ from the reference's: (which function, how its output
# is changed, the report's first line). Named by structure, never as wrong shapes.
BAD_STRUCTURES = {
    "dparams-dict-for-tuple": (
        "backward", lambda dx, ds0, dp: (dx, ds0, dict(zip(("Wx", "Wh", "b"), dp, strict=True))),
        "backward_fn: dparams is a dict but params is a tuple: "
        "return dparams with the structure of params",
    ),
    "dparams-too-short": (
        "backward", lambda dx, ds0, dp: (dx, ds0, dp[:2]),
        "backward_fn: dparams has length 2 but params has length 3",
    ),
    "dparams-one-array": (
        "backward", lambda dx, ds0, dp: (dx, ds0, dp[0]),
        "backward_fn: dparams is an array but params is a tuple",
    ),
    "dparams-nested-dict": (
        "backward", lambda dx, ds0, dp: (dx, ds0, (dp[0], {"Wh": dp[1]}, dp[2])),
        "backward_fn: dparams[1] is a dict but params[1] is an array",
    ),
    "dstate0-h-only": (
        "backward", lambda dx, ds0, dp: (dx, ds0[:1], dp),
        "backward_fn: dstate0 has length 1 but state0 has length 2",
    ),
    "ys-dict": (
        "forward", lambda h, cache: ({"h": h}, cache),
        "forward_fn: ys is a dict but output(state) is an array",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_STRUCTURES))
def test_check_bptt_names_a_container_mismatch(name):
    which, change, message = BAD_STRUCTURES[name]
    fns = {"forward": lstm_numpy.lstm_forward, "backward": lstm_numpy.lstm_backward}
    real = fns[which]
    fns[which] = lambda *a: change(*real(*a))
    with pytest.raises(AssertionError) as info:
        check_bptt(lstm_numpy.lstm_cell, fns["forward"], fns["backward"], **LSTM)
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"BPTT check FAILED: {message}"), first
    assert "WRONG" not in str(info.value)  # no leaf was compared


def test_check_bptt_takes_lists_for_tuples_and_dicts_in_any_order():
    def forward(x, s0, p):
        return lstm_numpy.lstm_forward(x, s0, (p["Wx"], p["Wh"], p["b"]))

    def backward(dh, cache):
        dx, ds0, (dWx, dWh, db) = lstm_numpy.lstm_backward(dh, cache)
        return dx, list(ds0), {"b": db, "Wx": dWx, "Wh": dWh}

    def cell(p, s, x_t):
        return lstm_numpy.lstm_cell((p["Wx"], p["Wh"], p["b"]), s, x_t)

    params = dict(zip(("Wx", "Wh", "b"), LSTM["params"], strict=True))
    check_bptt(cell, forward, backward, max_examples=3, **{**LSTM, "params": params})


def test_check_bptt_with_a_params_function_and_the_whole_state_as_output():
    def params(rng):  # a forget-gate bias of +3: the gradient survives 64 steps
        Wx = rng.standard_normal((D, 4 * H)) / np.sqrt(D)
        Wh = rng.standard_normal((H, 4 * H)) / np.sqrt(H)
        return Wx, Wh, np.r_[np.zeros(H), 3 * np.ones(H), np.zeros(2 * H)]

    def forward(x, s0, p):  # returns (h, c) at every step
        h, (steps, _) = lstm_numpy.lstm_forward(x, s0, p)
        return (h, np.stack([s[-1] for s in steps], axis=1)), (steps, p)

    def backward(dys, cache):
        dh, dc = dys
        return lstm_numpy.lstm_backward(dh, cache, dc=dc)

    opts = {**LSTM, "params": params, "output": None}
    check_bptt(lstm_numpy.lstm_cell, forward, backward, max_examples=5, **opts)
    cut = functools.partial(lstm_numpy.lstm_backward, keep=32)
    with pytest.raises(AssertionError, match=r"dx is right for the last 32 of 40 steps"):
        check_bptt(lstm_numpy.lstm_cell, lstm_numpy.lstm_forward, cut, **{**LSTM, "params": params})


BAD_OPTIONS = {
    "tol_negative": ({"tol": -1.0}, ValueError, r"tol must be a positive finite float, got -1"),
    "tol_zero": ({"tol": 0.0}, ValueError, "tol must be a positive finite"),
    "tol_nan": ({"tol": math.nan}, ValueError, r"tol must be a positive finite float, got nan"),
    "tol_inf": ({"tol": math.inf}, ValueError, "tol must be a positive finite"),
    "tol_string": ({"tol": "1e-8"}, TypeError, "tol must be a positive finite"),
    "tol_bool": ({"tol": True}, TypeError, "tol must be a positive finite"),
    "max_examples_zero": ({"max_examples": 0}, ValueError, "max_examples must be a positive int"),
    "max_examples_float": ({"max_examples": 2.0}, ValueError, "max_examples must be a positive"),
    "max_examples_bool": ({"max_examples": True}, ValueError, "max_examples must be a positive"),
    "activation": ({"activation": "gelu"}, ValueError, r"unknown activation 'gelu'"),
    "shape": ({"shape": (1, 2)}, ValueError, r"shape must be \(N, T, D, H\)"),
    "derandomize": ({"derandomize": None}, TypeError, "derandomize must be True or False"),
}


@pytest.mark.parametrize("name", list(BAD_OPTIONS))
def test_bad_options_are_refused(name):
    kwargs, error, match = BAD_OPTIONS[name]
    with pytest.raises(error, match=match):
        check_rnn_backward(reference.rnn_forward, reference.rnn_backward, **kwargs)


@pytest.mark.parametrize("name", ["tol_negative", "tol_nan", "max_examples_zero"])
def test_bad_options_are_refused_by_check_bptt(name):
    kwargs, error, match = BAD_OPTIONS[name]
    with pytest.raises(error, match=match):
        check_bptt(
            lstm_numpy.lstm_cell,
            lstm_numpy.lstm_forward,
            lstm_numpy.lstm_backward,
            **LSTM,
            **kwargs,
        )


def test_argument_errors():
    with pytest.raises(TypeError, match=r"backward_fn must be callable"):
        check_rnn_backward(reference.rnn_forward, None)
    with pytest.raises(ValueError, match=r"input_size must be a positive int"):
        check_bptt(
            lstm_numpy.lstm_cell,
            lstm_numpy.lstm_forward,
            lstm_numpy.lstm_backward,
            **{**LSTM, "input_size": 0},
        )


def test_cli_in_process(capsys):
    ok = ["jaxrnn.reference:rnn_forward", "jaxrnn.reference:rnn_backward"]
    assert main([*ok, "--activation", "relu", "--max-examples", "5"]) == 0
    assert "PASS rnn_backward: jaxrnn.reference:rnn_backward (activation='relu'): 12 ex" in (
        capsys.readouterr().out
    )
    bad = ["wrong_impls:db_mean_forward", "wrong_impls:db_mean_backward"]
    assert main(bad) == 1
    out = capsys.readouterr().out
    assert "FAIL rnn_backward" in out and "db is wrong" in out
    assert re.search(r"reproduce: python -m jaxrnn.testing .* --shape \d+,\d+,\d+,\d+ --seed", out)
    step = ["jaxrnn.reference:rnn_step_forward", "jaxrnn.reference:rnn_step_backward"]
    assert main([*step, "--step", "--shape", "2,1,3,2", "--seed", "7"]) == 0
    assert "1 examples" in capsys.readouterr().out
    assert main(["nosuchmodule_xyz:f", "jaxrnn.reference:rnn_backward"]) == 2
    assert "cannot import 'nosuchmodule_xyz'" in capsys.readouterr().err
    assert main(["jaxrnn.reference:nope", "jaxrnn.reference:rnn_backward"]) == 2
    src = Path(wrong_impls.__file__)  # FILE.py:attr.path loads a file by its path
    assert main([f"{src}:reference.rnn_forward", f"{src}:reference.rnn_backward"]) == 0


def test_cli_lengths_truncation_and_bad_tol(capsys):
    src = Path(mutants.__file__)
    assert main([f"{src}:forward", f"{src}:backward", "--lengths", "--max-examples", "3"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main([f"{src}:forward", f"{src}:truncated_after_16", "--max-examples", "3"]) == 1
    out = capsys.readouterr().out
    assert "dx is right for the last 16 of 24 steps" in out and "stops after 16 steps" in out
    with pytest.raises(SystemExit) as info:
        main([f"{src}:forward", f"{src}:backward", "--tol", "nan"])
    assert info.value.code == 2 and "--tol must be a positive finite" in capsys.readouterr().err
    assert main([f"{src}:forward", f"{src}:backward", "--lengths", "--step"]) == 2


def test_cli_subprocess_python_m(tmp_path):
    """`python -m jaxrnn.testing file.py:fn ...` from a shell exits 1 with the report."""
    src = Path(wrong_impls.__file__)
    bad = [f"{src}:off_by_one_forward", f"{src}:off_by_one_backward", "--max-examples", "5"]
    run = subprocess.run(
        [sys.executable, "-m", "jaxrnn.testing", *bad], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL rnn_backward" in run.stdout and "dWh is wrong" in run.stdout
    assert "test_cli_subprocess" not in run.stderr  # no traceback, only the report


def test_public_strategies():
    @given(rs.check_shapes(), st.data())
    @settings(max_examples=10)
    def prop(shape, data):
        assert shape.T >= 1 and shape.N >= 1
        p = data.draw(rs.params(shape.D, shape.H))
        x = data.draw(rs.sequences(shape.N, shape.T, shape.D))
        assert isinstance(p, jaxrnn.RNNParams) and p.Wx.shape == (shape.D, shape.H)
        assert p.Wh.shape == (shape.H, shape.H) and p.b.shape == (shape.H,)
        assert x.shape == (shape.N, shape.T, shape.D) and x.dtype == np.float64

    prop()
    Q = rs.orthogonal(np.random.default_rng(0), 6)
    np.testing.assert_allclose(Q @ Q.T, np.eye(6), atol=1e-12)
