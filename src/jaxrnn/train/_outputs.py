"""The files a run appends to: ``metrics.csv``, ``samples.txt``, and the plot ``loss.png``.

Exactly once: everything for steps up to a checkpoint's step reaches the disk
(flushed and fsync'ed) before that checkpoint is written. On resume from a
checkpoint at step S, both files are cut back to step S: rows and samples of
later steps (written before a crash, and redone now) and a torn last line go.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TextIO

import numpy as np

from . import _checkpoint
from ._checkpoint import os_error, temp_name, write_atomic

COLUMNS = ("step", "train_loss", "train_bpc", "val_bpc", "tokens_per_s", "elapsed_s")
HEADER = ",".join(COLUMNS)
_SAMPLE_HEAD = re.compile(rb"^=== step (\d+)[, ]", re.MULTILINE)


def _fmt(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return "" if math.isnan(v) else f"{v:.6g}"


def _line(row: dict) -> str:
    """One row as a CSV line (no newline)."""
    return ",".join(_fmt(row[k]) for k in COLUMNS)


def _parse_row(line: str) -> dict:
    """One CSV row as a dict; ValueError for a malformed (e.g. torn) row."""
    fields = line.split(",")
    if len(fields) != len(COLUMNS):
        raise ValueError(line)
    row = {k: float(v) if v else math.nan for k, v in zip(COLUMNS, fields, strict=True)}
    row["step"] = int(fields[0])
    return row


def _rows_through(path: Path, step: int) -> list[tuple[dict, str]]:
    """The complete rows of ``path`` up to ``step``, each with its line; stops at a torn one."""
    try:
        lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise os_error(path, e, "cannot read") from e
    if lines[0] != HEADER:
        return []
    kept = []
    for line in lines[1:-1]:  # lines[-1]: "" after the last newline, or a torn last line
        try:
            row = _parse_row(line)
        except ValueError:
            break
        if row["step"] > step:
            break
        kept.append((row, line))
    return kept


class MetricsLog:
    """The per-step metrics: kept in memory and appended to ``metrics.csv`` (if a path is given).

    ``rows[i]`` is a dict with the keys of :data:`COLUMNS`; ``val_bpc`` is NaN
    at steps without a validation evaluation. ``resume_at``: the step of the
    checkpoint the run continues from (-1: none); the file is cut back to it.
    """

    def __init__(self, path: str | os.PathLike | None, *, resume_at: int = -1):
        self.path = Path(path) if path is not None else None
        self.rows: list[dict] = []
        self._f: TextIO | None = None
        if self.path is None:
            return
        kept = _rows_through(self.path, resume_at)
        self.rows = [row for row, _ in kept]
        self._rewrite(self.path, [ln for _, ln in kept])

    def append(self, row: dict) -> None:
        """Adds one row (and writes it to the CSV)."""
        self.rows.append(row)
        if self._f is not None and self.path is not None:
            self._write(self._f, self.path, _line(row) + "\n")

    def set_last_val_bpc(self, val_bpc: float) -> None:
        """Sets the last row's ``val_bpc`` (an evaluation made after the row was written).

        The CSV is rewritten atomically (it keeps its old content on failure) and
        reopened for appending.
        """
        self.rows[-1] = {**self.rows[-1], "val_bpc": val_bpc}
        if self._f is not None and self.path is not None:  # a file is open only with a path
            self.close()
            self._rewrite(self.path, [_line(r) for r in self.rows])

    def _rewrite(self, path: Path, lines: list[str]) -> None:
        """Replaces the CSV by the header and ``lines`` (atomically); opens it for appending."""
        write_atomic(path, "".join(ln + "\n" for ln in [HEADER, *lines]).encode())
        try:
            self._f = open(path, "a", newline="")  # closed in close()
        except OSError as e:
            raise os_error(path, e) from e

    @staticmethod
    def _write(f: TextIO, path: Path, text: str) -> None:
        try:
            f.write(text)
        except OSError as e:
            raise os_error(path, e) from e

    def sync(self) -> None:
        """Flushes the CSV to the disk (before a checkpoint: its rows come first)."""
        if self._f is not None and self.path is not None:
            try:
                self._f.flush()
                _checkpoint._fsync(self._f.fileno())
            except OSError as e:
                raise os_error(self.path, e) from e

    def close(self) -> None:
        """Closes the CSV file (what the OS accepted stays: a failed flush is not retried)."""
        if self._f is not None and self.path is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError as e:
                raise os_error(self.path, e) from e

    def columns(self) -> dict[str, np.ndarray]:
        """The metrics as columns: ``{"step": (S,) int, "train_bpc": (S,) float, ...}``."""
        return {
            k: np.asarray([r[k] for r in self.rows], np.int64 if k == "step" else np.float64)
            for k in COLUMNS
        }


def append_sample(path: str | os.PathLike, step: int, val_bpc: float, text: str) -> None:
    """Appends one sample, headed by its step and validation bpc, to ``samples.txt``."""
    head = f"=== step {step}" + ("" if math.isnan(val_bpc) else f", val bpc {val_bpc:.3f}")
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{head} ===\n{text}\n\n")
            f.flush()
            _checkpoint._fsync(f.fileno())
    except OSError as e:
        raise os_error(path, e) from e


def cut_samples(path: Path, step: int) -> None:
    """Cuts ``samples.txt`` back to the samples of steps <= ``step`` (-1: none).

    A sample is ``=== step N ... ===``, its text, and a blank line; a torn one
    (a crash mid-write) is cut with the later ones.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        raise os_error(path, e, "cannot read") from e
    end = next((m.start() for m in _SAMPLE_HEAD.finditer(data) if int(m[1]) > step), len(data))
    if not data[:end].endswith(b"\n\n"):  # a torn header: keep the complete samples before it
        end = data.rfind(b"\n\n", 0, end) + 2 if b"\n\n" in data[:end] else 0
    if end != len(data):
        write_atomic(path, data[:end])


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
    tmp = Path(f"{temp_name(Path(path))}.png")  # savefig reads the format from the suffix
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise os_error(path, e) from e
