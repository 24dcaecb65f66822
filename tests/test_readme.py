"""The README's NNX before/after block runs as written, in both versions (issue 18)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BEFORE = "        # before: self.rnn = nnx.RNN(nnx.LSTMCell(8, 32, rngs=rngs))\n"
AFTER = "        self.rnn = jaxrnn.nnx.LSTM(8, 32, rngs=rngs)          # after: the hand BPTT\n"


def nnx_block() -> str:
    text = README.read_text()
    match = re.search(r"<!-- nnx-before-after -->\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its NNX before/after block"
    return match.group(1)


@pytest.mark.parametrize("version", ["after", "before"])
def test_the_nnx_before_after_block_trains(version):
    pytest.importorskip("flax.nnx", reason="needs flax (pip install jaxrnn[flax])")
    code = nnx_block()
    assert BEFORE in code and AFTER in code, "the block's before/after lines changed"
    if version == "before":  # flax's own nnx.RNN, as the user had it
        code = code.replace(AFTER, "").replace("# before: ", "")
    # a fresh interpreter: jax's defaults, as a reader runs it (not this suite's float64
    # and strict promotion)
    code += "print(type(model.rnn).__module__, float(loss))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    module, loss = out.stdout.split()[-2:]
    assert module.startswith("jaxrnn" if version == "after" else "flax"), module
    assert 0 <= float(loss) < float("inf")
