"""The notebooks in notebooks/ run top to bottom, and their committed files are in order.

Each committed ``.ipynb`` is executed in memory (never rewritten) with nbclient
on the ``python3`` kernel, i.e. the ipykernel of the interpreter running pytest
(jupyter_client starts kernelspecs whose argv is ``python`` with
``sys.executable``). Any cell error fails the test, as does a notebook slower
than ``JAXRNN_NOTEBOOK_TIMEOUT`` seconds (default 120 s: the issue's budget on
2 CI cores). Needs the ``notebooks`` extra; skipped with a reason without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebooks extra (nbformat)")
jupytext = pytest.importorskip("jupytext", reason="needs the notebooks extra (jupytext)")
nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra (nbclient)")
pytest.importorskip("ipykernel", reason="needs the notebooks extra (ipykernel)")
pytest.importorskip("matplotlib", reason="needs the notebooks extra (matplotlib)")
pytest.importorskip("optax", reason="needs the notebooks extra (optax)")

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_derivation", "02_gradient_flow", "03_training")
TIMEOUT_S = float(os.environ.get("JAXRNN_NOTEBOOK_TIMEOUT", "120"))
MAX_IPYNB_BYTES = 1_000_000  # outputs and figures are committed; keep them small


def _code_sources(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


def _read(name: str):
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    if not path.exists():
        pytest.fail(f"{path} is missing (run: python notebooks/execute.py {name})")
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_executed_and_paired(name):
    """The .ipynb carries its outputs, is small, and its code matches the jupytext twin."""
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    nb = _read(name)
    assert path.stat().st_size <= MAX_IPYNB_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    assert "py:percent" in nb.metadata.get("jupytext", {}).get("formats", ""), "not paired"
    code = [c for c in nb.cells if c.cell_type == "code"]
    unexecuted = [i for i, c in enumerate(code) if c.execution_count is None and c.source.strip()]
    assert not unexecuted, f"{path.name}: code cells {unexecuted} were not executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with an error output"
    twin = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    assert _code_sources(nb) == _code_sources(twin), (
        f"{name}.ipynb and {name}.py differ: run `jupytext --sync notebooks/{name}.py`"
    )


@pytest.mark.parametrize("name", ("02_gradient_flow", "03_training"))
def test_committed_notebook_has_figures(name):
    images = [
        o
        for c in _read(name).cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, f"{name}.ipynb has no committed figures"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name):
    """Executes a copy of the committed notebook; a cell error or timeout fails."""
    nb = _read(name)  # in memory: the committed file is not touched
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT_S,  # per cell; the whole notebook is checked below
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - t0
    assert seconds <= TIMEOUT_S, f"{name} took {seconds:.0f}s > {TIMEOUT_S:.0f}s"
