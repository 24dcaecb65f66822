"""Release engineering (issue 20): the wheel holds every file and runs outside the checkout.

The wheel is built from this checkout with ``python -m build`` and installed into a
fresh venv in a temporary directory. The venv borrows the dependencies (jax, numpy,
hypothesis) from the site-packages directories they are installed in, through a
``.pth`` line: a directory added that way has its own ``.pth`` files ignored, so an
editable install of jaxrnn there (``/work/main/src`` on ``sys.path``) stays invisible,
and the venv's own site-packages, holding the wheel, comes first. ``PYTHONPATH`` is
cleared and the commands run from the temporary directory, so nothing of the source
tree is importable: every check below asserts that ``jaxrnn`` was loaded from the venv.

The one version source is ``src/jaxrnn/_version.py``: the wheel's name and metadata,
``jaxrnn.__version__`` and CHANGELOG.md's latest release heading must all agree with it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "jaxrnn"
BUILD_TIMEOUT_S = 300  # an isolated build fetches hatchling once (from pip's cache after)
RUN_TIMEOUT_S = 180  # jaxrnn demo compiles a few dozen programs: ~30 s on 2 cores

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("build") is None,
    reason="needs the `build` package (pip install 'jaxrnn[release]')",
)


def source_version() -> str:
    """The version written in ``src/jaxrnn/_version.py`` (read, not imported)."""
    text = (SRC / "_version.py").read_text()
    found = re.findall(r'^__version__ = "([^"]+)"$', text, flags=re.MULTILINE)
    assert len(found) == 1, f"_version.py must assign __version__ once, found {found}"
    return found[0]


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float):
    """Run ``cmd``; fail the test with its output if it exits non-zero."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``python -m build`` makes from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        cwd=out, timeout=BUILD_TIMEOUT_S)  # fmt: skip
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def in_source_tree(path: str | Path) -> bool:
    """Whether ``path`` lies in the checkout outside any installed site-packages (CI's
    venv lives in the checkout's ``.venv``: its site-packages is an install, not source)."""
    resolved = Path(path).resolve()
    return resolved.is_relative_to(ROOT) and "site-packages" not in resolved.parts


def dependency_dirs() -> list[str]:
    """The site-packages directories holding the dependencies the commands import."""
    dirs = []
    for name in ("jax", "jaxlib", "numpy", "hypothesis"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        path = str(Path(spec.origin).parents[1])  # .../site-packages/<name>/__init__.py
        assert not in_source_tree(path), f"{name} comes from the checkout: {path}"
        if path not in dirs:
            dirs.append(path)
    return dirs


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv outside the checkout with the wheel installed: ``(its bin dir, env)``."""
    home = tmp_path_factory.mktemp("venv")
    assert not home.is_relative_to(ROOT), f"the venv must lie outside the checkout: {home}"
    run([sys.executable, "-m", "venv", "--without-pip", str(home / "venv")], cwd=home, timeout=120)
    python = home / "venv" / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)], cwd=home, timeout=120)  # fmt: skip
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                  cwd=home, timeout=60).stdout.strip()  # fmt: skip
    Path(purelib, "_jaxrnn_test_deps.pth").write_text("\n".join(dependency_dirs()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["JAX_PLATFORMS"] = "cpu"
    return python.parent, env


def in_venv(venv, *args: str) -> subprocess.CompletedProcess:
    bindir, env = venv
    return run(list(args), cwd=bindir.parents[1], env=env, timeout=RUN_TIMEOUT_S)


def test_the_wheel_holds_every_file_of_the_package(wheel):
    in_tree = {
        str(p.relative_to(SRC.parent))
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {n for n in zf.namelist() if n.startswith("jaxrnn/")}
    assert in_tree - in_wheel == set(), "files the wheel forgot"
    assert in_wheel - in_tree == set(), "files in the wheel that the tree lacks"
    assert "jaxrnn/py.typed" in in_wheel


def test_one_version_source(wheel):
    version = source_version()
    assert wheel.name.startswith(f"jaxrnn-{version}-"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"jaxrnn-{version}.dist-info/METADATA").decode()
    assert f"\nVersion: {version}\n" in metadata
    import jaxrnn

    assert jaxrnn.__version__ == version
    releases = re.findall(r"^## \[(\d[^\]]*)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == version, f"CHANGELOG.md's latest release: {releases[:1]}"


def test_import_jaxrnn_from_the_venv(venv):
    out = in_venv(venv, "python", "-c",
                  "import sys, jaxrnn; print(jaxrnn.__file__); print(jaxrnn.__version__);"
                  "print(len(jaxrnn.__path__)); print('\\n'.join(sys.path))").stdout  # fmt: skip
    file, version, n_paths, *path = out.splitlines()
    bindir, _ = venv
    assert Path(file).is_relative_to(bindir.parent), f"jaxrnn loaded from {file}"
    assert version == source_version()
    assert n_paths == "1", "jaxrnn must be one regular package, not merged with another copy"
    assert not [p for p in path if p and in_source_tree(p)], path


def test_jaxrnn_demo_from_the_venv(venv):
    bindir, _ = venv
    out = in_venv(venv, str(bindir / "jaxrnn"), "demo").stdout
    assert "OK: hand-derived BPTT == jax.grad" in out, out


def test_testing_cli_help_from_the_venv(venv):
    out = in_venv(venv, "python", "-m", "jaxrnn.testing", "--help").stdout
    assert out.startswith("usage:") and "jaxrnn.testing" in out, out
