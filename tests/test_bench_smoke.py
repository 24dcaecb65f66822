"""Smoke test of benchmarks/bench.py: it runs end to end and prints its tables.

It asserts nothing about speed (CI machines are noisy): only that every
section is produced and that the implementations agree on the gradients.
The benchmark runs in a subprocess, so this file's float64 test configuration
(conftest.py) does not leak into it: the benchmark is float32.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_bench_smoke_runs_and_prints_tables(tmp_path: Path) -> None:
    out = tmp_path / "smoke.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--no-torch", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    assert report.strip() in proc.stdout  # the same tables on stdout and in --out
    for needle in (
        "jax device: cpu",
        "large-matmul peak:",
        "| hand: jax.grad(rnn) |",
        "| hand: rnn_forward+rnn_backward |",
        "| baseline: jax.grad(naive scan) |",
        "| numpy (document's loops) |",
        "forward only",
        "XLA compile s",
        "### targets",
        "### scaling with T",
        "### scaling with H",
    ):
        assert needle in report, f"missing {needle!r} in:\n{report}"
    # Every implementation's gradients agree with the autodiff baseline (float32).
    errs = re.findall(r"\| ([0-9.]+e[-+][0-9]+) \|$", report, flags=re.M)
    assert errs and max(float(e) for e in errs) < 1e-4, report
