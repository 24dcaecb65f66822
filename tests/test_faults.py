"""Fault injection: `jaxrnn train` killed with SIGKILL at random moments, and two runs on one --out.

Every process is a real `jaxrnn train` (a tiny model: hidden 8, one layer, seq-len 8,
batch 2). The persistent compilation cache, filled by an uninterrupted run first, makes the
restarts cheap; it changes no result (the same executables).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_rundir import _assert_same_run

from jaxrnn.train._data import default_corpus

STEPS = 40
OPTIONS = [
    *("--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "2", "--quiet"),
    *("--steps", str(STEPS), "--checkpoint-every", "6", "--eval-every", "4"),
    *("--sample-every", "5", "--lr", "1e-2"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax-cache")
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_text(default_corpus(max_chars=3000).text, encoding="utf-8")
    return str(path)


def _train(text, out: Path, env, resume=False, extra=()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jaxrnn", "train", "--text", text, "--out", str(out), *OPTIONS]
    cmd += list(extra)
    return subprocess.Popen(
        cmd + (["--resume"] if resume else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _rows(out: Path) -> int:
    try:
        return (out / "metrics.csv").read_bytes().count(b"\n") - 1
    except FileNotFoundError:
        return -1


def _kill_when(proc, out: Path, moment) -> None:
    """SIGKILL ``proc`` after ``moment`` seconds (float) or once metrics.csv has that many rows."""
    deadline = time.monotonic() + 240
    if isinstance(moment, float):
        deadline = time.monotonic() + moment
    while proc.poll() is None and time.monotonic() < deadline:
        if isinstance(moment, int) and _rows(out) >= moment:
            time.sleep(random.uniform(0, 0.03))  # somewhere in the steps after that row
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def test_killed_at_random_moments_then_resumed_equals_an_uninterrupted_run(text, env, tmp_path):
    """kill -9 at startup and mid-training (also mid-checkpoint), --resume each time: the
    run directory ends equal to an uninterrupted run's (timing columns aside)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # The reference first: it fills the compilation cache, so that no process killed below
    # is writing a cache entry (a torn entry would crash the next process, not jaxrnn's fault)
    full = _train(text, tmp_path / "full", env)
    _, err = full.communicate(timeout=300)
    assert full.returncode == 0, err
    out = tmp_path / "killed"
    moments = [rng.uniform(0.0, 3.0), *sorted(rng.sample(range(1, STEPS), 3))]
    for moment in moments:
        resume = (out / "config.json").exists()  # killed before config.json: start afresh
        proc = _train(text, out, env, resume=resume)
        _kill_when(proc, out, moment)
        assert proc.returncode in (0, -signal.SIGKILL), (seed, proc.returncode)
    last = _train(text, out, env, resume=(out / "config.json").exists())
    _, err = last.communicate(timeout=300)
    assert last.returncode == 0, (seed, err)
    _assert_same_run(tmp_path / "full", out)
    assert not [n for n in os.listdir(out) if ".tmp-" in n], seed  # the temp files cleaned up


def test_two_runs_on_one_out(text, env, tmp_path):
    """The second process is refused (exit 2, the directory and the holder's pid); the first
    runs on unharmed until Ctrl-C: every step's row and sample once, its checkpoint loadable."""
    out = tmp_path / "run"
    first = _train(text, out, env, extra=["--steps", "1000000"])
    try:
        deadline = time.monotonic() + 240
        while _rows(out) < 1:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        for resume in (False, True):
            second = _train(text, out, env, resume=resume)
            _, err = second.communicate(timeout=300)
            assert second.returncode == 2, err
            assert f"--out {out} is in use by another jaxrnn train (pid {first.pid})" in err
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 130, err
    with np.load(out / "checkpoint.npz") as z:
        step = int(z["step"])
    rows = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(rows["step"], np.arange(1, step + 1))
    heads = [ln for ln in (out / "samples.txt").read_text().splitlines() if ln.startswith("===")]
    want = [0, *range(5, step + 1, 5)]
    assert [int(h.split()[2].rstrip(",")) for h in heads] == want
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
