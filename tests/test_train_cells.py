"""`jaxrnn train --cell lstm|gru`: the training app with the gated cells (tiny runs)."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrnn import GRUParams, LSTMParams
from jaxrnn.train import ConfigError, TrainConfig, load_run, sample, train
from jaxrnn.train._data import default_corpus

TINY = dict(hidden=8, layers=2, seq_len=8, batch=4, lr=1e-2, eval_every=10, sample_every=0,
            val_chars=512, quiet=True)  # fmt: skip
PARAMS = {"lstm": LSTMParams, "gru": GRUParams}


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(default_corpus(max_chars=3_000).text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cell_trains_resumes_and_samples(text, tmp_path, cell):
    out = tmp_path / cell
    r = train(TrainConfig(text=text, cell=cell, steps=20, out=str(out), **TINY))
    assert all(isinstance(p, PARAMS[cell]) for p in r.params.layers)
    assert r.metrics["train_loss"][-1] < r.metrics["train_loss"][0]  # it learns
    auto = train(TrainConfig(text=text, cell=cell, steps=20, grad="autodiff", **TINY))
    np.testing.assert_allclose(auto.metrics["train_loss"], r.metrics["train_loss"], rtol=2e-5)
    run = load_run(out)
    assert run.config.cell == cell
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(r.params), strict=True):
        assert np.array_equal(a, b)
    s = sample(run.params, run.vocab, prime="de", length=20, seed=0)
    assert len(s) == 22 and s.startswith("de")


def test_unknown_cell_is_refused():
    with pytest.raises(ConfigError, match="--cell must be one of rnn, lstm, gru"):
        TrainConfig(cell="transformer").validate()
    p = subprocess.run([sys.executable, "-m", "jaxrnn", "train", "--cell", "foo"],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2 and "invalid choice: 'foo'" in p.stderr and "Traceback" not in p.stderr
