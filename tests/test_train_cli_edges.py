"""Edges of `jaxrnn train`'s summary line: runs of 0 or 1 step, and a run stopped by Ctrl-C.

Every number of the summary is one metrics.csv holds; no ``nan``. Tiny runs (hidden 8,
one layer, seq-len 8, batch 2: the shapes of test_rundir.py) on a 3,000-character text.
"""

from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest

from jaxrnn._cli import main
from jaxrnn.train import TrainConfig, _loop, train
from jaxrnn.train._data import default_corpus

TINY = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "2", "--quiet"]
SUMMARY = re.compile(
    r"jaxrnn train: step (\d+)/(\d+): train (.+), validation (\S+)(?: bpc)? "
    r"\(unigram entropy [\d.]+\), \d+s(?:, ([\d,]+) tokens/s)?; run: "
)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_text(default_corpus(max_chars=3000).text, encoding="utf-8")
    return str(path)


def _summary(out: str) -> re.Match:
    line = out.strip().splitlines()[-1]
    match = SUMMARY.match(line)
    assert match is not None and "nan" not in line, line
    return match


def _metrics(run) -> np.ndarray:
    return np.genfromtxt(run / "metrics.csv", delimiter=",", names=True, ndmin=1)


@pytest.mark.parametrize(
    "steps, bpc, speed",
    [(0, False, False), (1, True, False), (3, True, True)],
    ids=["no-step", "one-step", "three-steps"],
)
def test_throughput_is_shown_only_when_measured(text, tmp_path, capsys, steps, bpc, speed):
    """The first step compiles: tokens/s needs a second one; with no step, no bpc either."""
    run = tmp_path / "run"
    assert main(["train", "--text", text, *TINY, "--steps", str(steps), "--out", str(run)]) == 0
    match = _summary(capsys.readouterr().out)
    assert match[1] == match[2] == str(steps)
    assert (match[3] != "-") is bpc and (match[4] != "-") is bpc
    assert (match[5] is not None) is speed
    rows = _metrics(run)
    assert len(rows) == steps
    if steps:
        assert f"{rows['val_bpc'][-1]:.3f}" == match[4]


def _interrupt_after(monkeypatch, step: int) -> None:
    """Ctrl-C (a real SIGINT to this process) right after step ``step``."""
    real = _loop._step

    def ctrl_c_after(run, ts):
        ts, loss = real(run, ts)
        if ts.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return ts, loss

    monkeypatch.setattr(_loop, "_step", ctrl_c_after)


def test_ctrl_c_records_the_validation_the_summary_reports(text, tmp_path, capsys, monkeypatch):
    """Stopped at step 7 (evaluations every 5): the summary's validation bpc is the one
    metrics.csv holds for step 7, the last row, where the checkpoint is."""
    run = tmp_path / "run"
    _interrupt_after(monkeypatch, 7)
    argv = ["train", "--text", text, *TINY, "--steps", "50", "--eval-every", "5"]
    assert main([*argv, "--out", str(run)]) == 130
    match = _summary(capsys.readouterr().out)
    rows = _metrics(run)
    assert match[1] == "7" and list(rows["step"]) == list(range(1, 8))
    assert np.isfinite(rows["val_bpc"][[4, 6]]).all()  # step 5 (in the loop) and 7 (at the stop)
    assert f"{rows['val_bpc'][-1]:.3f}" == match[4]
    monkeypatch.undo()
    # resuming with no step left evaluates nothing new: the same number again
    assert main(["train", "--out", str(run), "--resume", "--steps", "7", "--quiet"]) == 0
    assert _summary(capsys.readouterr().out)[4] == match[4]
    np.testing.assert_array_equal(_metrics(run)["val_bpc"], rows["val_bpc"])


def test_interrupted_train_returns_the_recorded_validation(text, monkeypatch):
    """The library: ``TrainResult.val_bpc`` is the metrics' last value (nothing written)."""
    _interrupt_after(monkeypatch, 3)
    cfg = TrainConfig(text=text, hidden=8, layers=1, seq_len=8, batch=2, steps=50, quiet=True)
    result = train(cfg)
    assert result.interrupted and result.step == 3
    assert list(result.metrics["step"]) == [1, 2, 3]
    assert result.metrics["val_bpc"][-1] == result.val_bpc
