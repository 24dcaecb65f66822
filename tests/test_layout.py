"""The package's layers (issues 12 and 17): the core never loads the app or interop.

The core is every module at the top of ``src/jaxrnn/``, the command line included;
``jaxrnn.train`` (the training app, optax), ``jaxrnn.convert`` (torch/flax interop),
``jaxrnn.testing`` (the oracle, hypothesis) and the framework layers ``jaxrnn.nnx``
(flax) and ``jaxrnn.eqx`` (equinox) are subpackages above it, loaded lazily by ``jaxrnn.__getattr__``. One rule, no
exemption: a top-level module imports neither subpackage (nor optax, torch, flax) at
import time, and never their private modules; only inside a function may it import a
subpackage's public names (the command line dispatching ``jaxrnn train``). Also: no
function in ``src/`` is over 50 lines, docstrings aside.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "jaxrnn"
CORE = sorted(SRC.glob("*.py"))
LAYERS_ABOVE = (
    "jaxrnn.train", "jaxrnn.convert", "jaxrnn.testing", "jaxrnn.nnx", "jaxrnn.eqx"
)  # fmt: skip
HEAVY_DEPS = ("optax", "torch", "flax", "equinox")
MAX_FUNCTION_LINES = 50


def imported_modules(path: Path, *, top_level: bool = False) -> list[tuple[int, str]]:
    """Every module an import statement in ``path`` (a top-level jaxrnn module) names,
    absolute: ``from . import train`` -> jaxrnn, jaxrnn.train. ``top_level``: only the
    statements run at import time (outside functions)."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to the jaxrnn package (level 1) or above it
                base = "jaxrnn" if node.level == 1 else "." * node.level
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            found.append((node.lineno, mod))
            found += [(node.lineno, f"{mod}.{alias.name}") for alias in node.names]
    return found


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_core_is_found():
    names = {p.name for p in CORE}
    assert {"__init__.py", "model.py", "reference.py", "_cli.py"} <= names, names


def is_private_of_layer_above(name: str) -> bool:
    """``jaxrnn.train._loop``, ``jaxrnn.convert._torch.x``: a private module of a subpackage."""
    return any(is_under(name, pkg) and name[len(pkg) + 1 :].startswith("_") for pkg in LAYERS_ABOVE)


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_never_loads_train_or_convert(path):
    at_import = [
        f"{path.name}:{line}: imports {name} at import time"
        for line, name in imported_modules(path, top_level=True)
        if any(is_under(name, pkg) for pkg in LAYERS_ABOVE + HEAVY_DEPS)
    ]
    private = [
        f"{path.name}:{line}: imports the private {name}"
        for line, name in imported_modules(path)
        if is_private_of_layer_above(name) or any(is_under(name, p) for p in HEAVY_DEPS)
    ]
    assert not at_import + private, "the core reaches above it:\n" + "\n".join(at_import + private)


def test_the_private_module_rule_catches_each_spelling():
    assert is_private_of_layer_above("jaxrnn.train._loop")
    assert is_private_of_layer_above("jaxrnn.convert._torch.x")
    assert not is_private_of_layer_above("jaxrnn.train")
    assert not is_private_of_layer_above("jaxrnn.train.TrainConfig")


def test_the_import_scan_sees_relative_and_absolute_imports(tmp_path):
    """The checker itself: each spelling of an import of jaxrnn.train is caught."""
    f = tmp_path / "m.py"
    f.write_text(
        "from . import train\nfrom .convert._torch import x\nimport jaxrnn.train._loop\n"
        "from jaxrnn import convert\ndef g():\n    from .train import train\n"
    )
    names = [n for _, n in imported_modules(f) if any(is_under(n, p) for p in LAYERS_ABOVE)]
    assert names == [
        "jaxrnn.train",
        "jaxrnn.convert._torch",
        "jaxrnn.convert._torch.x",
        "jaxrnn.train._loop",
        "jaxrnn.convert",
        "jaxrnn.train",
        "jaxrnn.train.train",
    ]


PROBE = """
import json, sys
import jaxrnn
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heavy} or
                m.startswith({above}))
resolved = [
    callable(jaxrnn.train.TrainConfig),
    callable(jaxrnn.train.train),
    callable(jaxrnn.convert.from_torch_state_dict),
]
print(json.dumps({{"loaded": loaded, "resolved": resolved}}))
"""


def test_import_jaxrnn_loads_neither_layer_above_nor_its_dependencies():
    """``import jaxrnn`` in a fresh interpreter: no subpackage above the core, optax,
    torch, flax or equinox in sys.modules; jaxrnn.train.{TrainConfig, train} and
    jaxrnn.convert.from_torch_state_dict still resolve (lazily) afterwards."""
    code = PROBE.format(heavy=set(HEAVY_DEPS), above=LAYERS_ABOVE)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"import jaxrnn loaded {result['loaded']}"
    assert result["resolved"] == [True, True, True]


def long_functions(path: Path) -> list[str]:
    """``file:line qualname (n lines)`` for each function over the limit, docstring excluded."""
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    n = child.end_lineno - child.lineno + 1
                    doc = child.body[0] if child.body else None
                    if (
                        isinstance(doc, ast.Expr)
                        and isinstance(doc.value, ast.Constant)
                        and isinstance(doc.value.value, str)
                    ):
                        n -= doc.end_lineno - doc.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        rel = path.relative_to(SRC.parent) if path.is_relative_to(SRC) else path
                        out.append(f"{rel}:{child.lineno} {name} ({n} lines)")
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def test_the_length_check_counts_code_not_docstrings(tmp_path):
    f = tmp_path / "m.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    doc = '    """Doc.\n\n    More doc.\n    """\n'
    f.write_text(f"def ok():\n{doc}{body}\n\ndef long():\n{body}\n    y = 1\n    z = 2\n")
    assert [s.split(" ", 1)[1] for s in long_functions(f)] == ["long (52 lines)"]


def test_no_function_in_src_is_over_50_lines():
    offenders = [s for p in sorted(SRC.rglob("*.py")) for s in long_functions(p)]
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)
