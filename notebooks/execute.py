"""Rebuild the executed notebooks from their text twins.

    python notebooks/execute.py                 # all notebooks
    python notebooks/execute.py 02_gradient_flow

For each ``NN_name.py`` (jupytext percent format, the file to edit) this reads
the cells with jupytext, executes them with nbclient on the ``python3`` kernel of
the running interpreter, and writes ``NN_name.ipynb`` with its outputs and
figures (paired: ``jupytext --sync`` works from either file). Prints the
execution time of each notebook. Needs ``pip install "jaxrnn[notebooks]"``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 300


def execute(py_path: Path) -> float:
    """Executes the twin ``py_path`` and writes the paired ``.ipynb``; returns seconds."""
    nb = jupytext.read(py_path)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    t0 = time.perf_counter()
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,  # no per-cell timestamps: keeps the .ipynb diffs quiet
        resources={"metadata": {"path": str(HERE)}},
    ).execute()
    seconds = time.perf_counter() - t0
    nbformat.write(nb, py_path.with_suffix(".ipynb"))
    return seconds


def main(names: list[str]) -> int:
    paths = [HERE / f"{n.removesuffix('.py')}.py" for n in names] or sorted(HERE.glob("[0-9]*.py"))
    for path in paths:
        seconds = execute(path)
        size = path.with_suffix(".ipynb").stat().st_size
        print(f"{path.stem}: executed in {seconds:.1f}s, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
