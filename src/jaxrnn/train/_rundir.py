"""The run directory: config, vocabulary, metrics CSV, loss plot and samples.

Layout of ``runs/NAME/``::

    config.json     the TrainConfig, the corpus source and sizes
    vocab.json      the characters, in id order
    checkpoint.npz  the latest checkpoint (see _checkpoint.py)
    metrics.csv     one row per step: train bpc, validation bpc where evaluated
    loss.png        train and validation curves (bits per character)
    samples.txt     text sampled from the model at intervals
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from ._checkpoint import write_atomic

CONFIG = "config.json"
VOCAB = "vocab.json"
METRICS = "metrics.csv"
PLOT = "loss.png"
SAMPLES = "samples.txt"
COLUMNS = ("step", "train_loss", "train_bpc", "val_bpc", "tokens_per_s", "elapsed_s")


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> dict:
    """Reads a JSON object."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _fmt(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return "" if math.isnan(v) else f"{v:.6g}"


class MetricsLog:
    """The per-step metrics: kept in memory and appended to ``metrics.csv`` (if a path is given).

    ``rows[i]`` is a dict with the keys of :data:`COLUMNS`; ``val_bpc`` is NaN
    at steps without a validation evaluation.
    """

    def __init__(self, path: str | os.PathLike | None, *, resume_at: int | None = None):
        self.path = Path(path) if path is not None else None
        self.rows: list[dict] = []
        if self.path is not None and resume_at is not None and self.path.exists():
            # rows after the checkpoint (a kill between checkpoints) are dropped: they are redone
            with open(self.path, newline="") as f:
                for r in csv.DictReader(f):
                    row = {k: float(r[k]) if r[k] else math.nan for k in COLUMNS}
                    row["step"] = int(row["step"])
                    if row["step"] <= resume_at:
                        self.rows.append(row)
        if self.path is not None:
            body = "".join(",".join(_fmt(r[k]) for k in COLUMNS) + "\n" for r in self.rows)
            write_atomic(self.path, (",".join(COLUMNS) + "\n" + body).encode())
            self._f = open(self.path, "a", newline="")  # closed in close()
        else:
            self._f = None

    def append(self, row: dict) -> None:
        """Adds one row (and writes it to the CSV)."""
        self.rows.append(row)
        if self._f is not None:
            self._f.write(",".join(_fmt(row[k]) for k in COLUMNS) + "\n")

    def flush(self) -> None:
        """Flushes the CSV file."""
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        """Closes the CSV file."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def columns(self) -> dict[str, np.ndarray]:
        """The metrics as columns: ``{"step": (S,) int, "train_bpc": (S,) float, ...}``."""
        return {
            k: np.asarray([r[k] for r in self.rows], np.int64 if k == "step" else np.float64)
            for k in COLUMNS
        }


def plot_metrics(path: str | os.PathLike, cols: dict[str, np.ndarray], unigram_bpc: float) -> None:
    """Writes ``loss.png``: train bpc per step, validation bpc, and the unigram entropy line."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in notebooks

    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.add_subplot()
    step, train, val = cols["step"], cols["train_bpc"], cols["val_bpc"]
    if len(step):
        ax.plot(step, train, lw=0.6, alpha=0.35, color="C0")
        w = max(1, min(50, len(train) // 20))  # moving average for a readable curve
        if len(train) >= w:
            smooth = np.convolve(train, np.ones(w) / w, mode="valid")
            ax.plot(step[w - 1 :], smooth, color="C0", label=f"train (mean of {w} steps)")
        ok = ~np.isnan(val)
        ax.plot(step[ok], val[ok], "o-", ms=3, color="C1", label="validation")
    ax.axhline(unigram_bpc, ls="--", color="gray", lw=1, label=f"unigram {unigram_bpc:.2f}")
    ax.set_title("jaxrnn train: bits per character (lower is better)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    os.replace(tmp, path)


def append_sample(path: str | os.PathLike, step: int, val_bpc: float, text: str) -> None:
    """Appends one sample, headed by its step and validation bpc, to ``samples.txt``."""
    head = f"=== step {step}" + ("" if math.isnan(val_bpc) else f", val bpc {val_bpc:.3f}")
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{head} ===\n{text}\n\n")
