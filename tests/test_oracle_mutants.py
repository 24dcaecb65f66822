"""The oracle proven (issue 10): every wrong BPTT of tests/mutants.py is rejected by a
default check with the right quantity named, and right implementations (numpy, JAX,
torch, a numpy LSTM) pass over >= 300 fresh examples."""

import functools
import re

import jax_rnn_impl
import lstm_numpy
import mutants
import numpy as np
import pytest
from test_testing import LSTM, torch_rnn

from jaxrnn import reference
from jaxrnn.testing import check_bptt, check_rnn_backward
from jaxrnn.testing import strategies as rs

ALL = {**mutants.MUTANTS, **mutants.LENGTH_MUTANTS}


def test_the_suite_has_at_least_20_distinct_wrong_bptts():
    """Distinct: no two mutants return the same gradients on the pool's problems."""
    signatures = set()
    for forward, backward, _, _ in mutants.MUTANTS.values():
        out = []
        for shape in rs.CHECK_POOL:
            p = rs.make_check_problem(shape, 0)
            h, cache = forward(*p.args)
            out += [
                np.round(np.nan_to_num(np.ravel(a), nan=7.0), 8)
                for a in (h, *backward(p.dh, cache))
            ]
        signatures.add(np.concatenate(out).tobytes())
    assert len(mutants.MUTANTS) >= 20 and len(signatures) == len(mutants.MUTANTS)


@pytest.mark.parametrize("name", list(ALL))
def test_default_check_rejects(name):
    forward, backward, quantity, diagnosis = ALL[name]
    lengths = name in mutants.LENGTH_MUTANTS
    with pytest.raises(AssertionError) as info:
        check_rnn_backward(forward, backward, lengths=lengths)
    msg = str(info.value)
    assert re.search(rf"check FAILED \(activation='tanh'\): {quantity} is wrong", msg), msg
    assert diagnosis is None or re.search(diagnosis, msg), msg
    m = re.search(r"shape=\((\d+), (\d+), (\d+), (\d+)\), seed=(\d+)", msg)
    shape, seed = tuple(map(int, m.groups()[:4])), int(m.group(5))
    with pytest.raises(AssertionError, match=rf": {quantity} is wrong"):
        check_rnn_backward(forward, backward, lengths=lengths, shape=shape, seed=seed)


def counting(fn, counter):
    @functools.wraps(fn)  # keeps the signature: activation= is passed only if fn takes it
    def wrapped(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    return wrapped


def test_no_false_positives_over_300_fresh_examples():
    """derandomize=False: fresh shapes and seeds on every run; all must pass."""
    n = []
    for activation in ("tanh", "relu", "sigmoid", "identity"):
        check_rnn_backward(
            counting(reference.rnn_forward, n), reference.rnn_backward, activation=activation,
            derandomize=False, max_examples=40,
        )  # fmt: skip
    check_rnn_backward(
        counting(mutants.forward, n), mutants.backward, lengths=True, derandomize=False,
        max_examples=30,
    )  # fmt: skip
    check_rnn_backward(
        counting(jax_rnn_impl.rnn_forward, n), jax_rnn_impl.rnn_backward, derandomize=False,
        max_examples=40,
    )  # fmt: skip
    check_bptt(
        lstm_numpy.lstm_cell, counting(lstm_numpy.lstm_forward, n), lstm_numpy.lstm_backward,
        derandomize=False, max_examples=30, **LSTM,
    )  # fmt: skip
    assert len(n) >= 300, len(n)


def test_no_false_positives_torch():
    forward, backward, convert = torch_rnn()
    n = []
    check_rnn_backward(
        counting(forward, n), backward, convert_inputs=convert, derandomize=False, max_examples=30
    )
    assert len(n) >= 37
