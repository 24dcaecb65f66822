"""jaxrnn.testing: the oracle accepts right implementations and rejects wrong ones."""

import functools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wrong_impls
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import reference
from jaxrnn.testing import check_rnn_backward, check_rnn_step_backward
from jaxrnn.testing import strategies as rs
from jaxrnn.testing._cli import main

ACTS = list(jaxrnn.ACTIVATIONS)
FEW_SHAPES = st.sampled_from([rs.Shape(1, 1, 3, 1), rs.Shape(3, 5, 2, 4)])  # bounded jit compiles


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
    # The printed reproduction fails the same way on that one problem.
    shape, seed = _shape_seed(msg)
    with pytest.raises(AssertionError, match=rf": {quantity} is wrong"):
        check(forward, backward, activation=activation, shape=shape, seed=seed)


def test_report_recognises_patterns():
    fwd, bwd, _, _ = wrong_impls.SEQUENCE_BUGS["dWh_transposed"]
    with pytest.raises(AssertionError, match=r"WRONG: it equals the transpose"):
        check_rnn_backward(fwd, bwd, shape=(2, 3, 1, 2), seed=1)
    fwd, bwd, _, _ = wrong_impls.SEQUENCE_BUGS["db_not_summed_over_batch"]
    with pytest.raises(AssertionError, match=r"divided by N \(a mean over the batch"):
        check_rnn_backward(fwd, bwd, shape=(3, 2, 2, 2), seed=1)


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


def test_float32_implementation_needs_a_looser_tol():
    def fwd32(x, h0, Wx, Wh, b):
        h, cache = reference.rnn_forward(*(a.astype(np.float32) for a in (x, h0, Wx, Wh, b)))
        return h, cache

    def bwd32(dh, cache):
        return reference.rnn_backward(dh.astype(np.float32), cache)

    with pytest.raises(AssertionError, match=r"returned float32: compute in float64 or raise tol"):
        check_rnn_backward(fwd32, bwd32, max_examples=5)
    check_rnn_backward(fwd32, bwd32, max_examples=5, tol=1e-5)


def test_other_shapes_including_empty_and_beyond_the_bucket():
    big = st.sampled_from([rs.Shape(5, 9, 6, 5), rs.Shape(2, 0, 3, 2)])
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


def test_torch_implementation_via_convert_inputs():
    """A torch autograd implementation, inputs converted by torch.from_numpy."""
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

    check_rnn_backward(forward, backward, convert_inputs=torch.from_numpy, max_examples=5)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'"):
        check_rnn_backward(reference.rnn_forward, reference.rnn_backward, activation="gelu")
    with pytest.raises(TypeError, match=r"backward_fn must be callable"):
        check_rnn_backward(reference.rnn_forward, None)
    with pytest.raises(ValueError, match=r"shape must be \(N, T, D, H\)"):
        check_rnn_backward(reference.rnn_forward, reference.rnn_backward, shape=(1, 2))


def test_cli_in_process(capsys):
    ok = ["jaxrnn.reference:rnn_forward", "jaxrnn.reference:rnn_backward"]
    assert main([*ok, "--activation", "relu", "--max-examples", "5"]) == 0
    assert "PASS rnn_backward: jaxrnn.reference:rnn_backward (activation='relu'): 5 ex" in (
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


def test_default_examples_cover_the_edge_shapes():
    """One default call sees T = 1, N = 1, H = 1, D != H and D == H, and T > 1, N > 1."""
    seen = []

    def recording_forward(x, h0, Wx, Wh, b):
        assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in (x, h0, Wx, Wh, b))
        seen.append(x.shape + h0.shape[-1:])
        return reference.rnn_forward(x, h0, Wx, Wh, b)

    check_rnn_backward(recording_forward, reference.rnn_backward)
    N, T, D, H = (np.array(s) for s in zip(*seen, strict=True))
    assert len(seen) == 30
    assert (
        (T == 1).any() and (N == 1).any() and (H == 1).any() and (D != H).any() and (D == H).any()
    )
    assert (T > 1).any() and (N > 1).any() and (H > 1).any()
