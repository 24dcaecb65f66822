"""The documentation: the site builds strictly, every code block runs, the pages render.

Code blocks (README.md, every page under docs/ and the repository files they include):

- ```` ```python ```` runs in a fresh interpreter (jax's defaults, not this suite's float64)
  whose working directory is a temporary folder shared by the blocks of one document, in
  document order;
- ```` ```python title="NAME.py" ```` writes NAME.py into that folder instead of running it,
  so that later blocks (``import NAME``, ``jaxrnn check NAME:...``) can use it;
- ```` ```bash ```` runs each command line (comments and blank lines aside) in that
  folder; ```` ```console ```` runs each line that starts with ``$ `` (the other lines are
  output). Every command must exit 0;
- any other fence (no language, ``text``, ...) is output or a listing and is not run;
- a line ``<!-- skip-test: REASON -->`` right before a fence skips that block, with REASON;
  a block whose code equals an earlier block's (a page repeating the README) runs once;
- a line ``<!-- include: PATH -->`` (docs/hooks.py) stands for the repository file PATH,
  here as on the site; included Markdown files are checked as documents of their own.

The subprocesses see this checkout's ``src`` first on ``PYTHONPATH``, so they test the
working tree, as the rest of the suite does.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)
FENCE = re.compile(
    r"(?:^<!-- skip-test: (?P<skip>.+?) -->\n)?^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)
API_MODULES = (
    "jaxrnn", "jaxrnn.model", "jaxrnn.diagnostics", "jaxrnn.reference", "jaxrnn.testing",
    "jaxrnn.testing.strategies", "jaxrnn.convert", "jaxrnn.train", "jaxrnn.nnx", "jaxrnn.eqx",
)  # fmt: skip
BLOCK_TIMEOUT_S = 240
NOTEBOOKS = ("01_derivation", "02_gradient_flow", "03_training")


def documents() -> list[Path]:
    """README.md, every page of docs/ and every repository file a page includes."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "notebooks" not in p.parts)
    included = {ROOT / m for p in pages for m in INCLUDE.findall(p.read_text()) if m[-3:] == ".md"}
    return [ROOT / "README.md", *pages, *sorted(included)]


def expand(text: str) -> str:
    """The page as the site shows it: ``<!-- include: PATH -->`` lines replaced by the file."""
    return INCLUDE.sub(lambda m: (ROOT / m.group(1)).read_text().rstrip("\n"), text)


def code_blocks() -> list:
    """One pytest param per fenced block: (document, index, info string, body, skip)."""
    params, seen = [], {}
    for doc in documents():
        name = doc.relative_to(ROOT).as_posix()
        for i, m in enumerate(FENCE.finditer(expand(doc.read_text()))):
            lang = m["info"].split()[0] if m["info"].strip() else ""
            if lang not in ("python", "bash", "console"):
                continue  # output or a listing
            block_id = f"{name}#{i}"
            skip = m["skip"] or (
                f"the same code as {seen[m['body']]}, which runs"
                if m["body"] in seen and "title=" not in m["info"]
                else None
            )
            seen.setdefault(m["body"], block_id)
            marks = [pytest.mark.skip(reason=skip)] if skip else []
            params.append(pytest.param(name, m["info"], m["body"], id=block_id, marks=marks))
    return params


def env() -> dict[str, str]:
    """This checkout's src first on PYTHONPATH; this interpreter's bin (jaxrnn, python) on PATH."""
    path = os.environ.get("PYTHONPATH", "")
    src = str(ROOT / "src")
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PYTHONPATH": src + (os.pathsep + path if path else ""),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


def imported_modules(code: str) -> set[str]:
    """The top-level packages a block imports (``import a, b.c as d`` / ``from e import f``)."""
    names = set()
    for line in code.splitlines():
        if m := re.match(r"\s*import\s+(.+)", line):
            names |= {part.split()[0].split(".")[0] for part in m.group(1).split(",")}
        elif m := re.match(r"\s*from\s+(\w+)", line):
            names.add(m.group(1))
    return names


def commands(lang: str, body: str) -> list[str]:
    lines = body.splitlines()
    if lang == "console":
        return [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """One working folder per document, shared by its blocks."""
    return functools.cache(lambda doc: tmp_path_factory.mktemp(re.sub(r"\W", "_", doc)))


@pytest.mark.parametrize(("doc", "info", "body"), code_blocks())
def test_code_block_runs(doc, info, body, workdirs):
    cwd = workdirs(doc)
    title = re.search(r'title="([^"]+)"', info)
    lang = info.split()[0]
    if title:
        (cwd / title.group(1)).write_text(body)
        return
    missing = sorted(n for n in imported_modules(body) if importlib.util.find_spec(n) is None)
    if lang == "python" and missing:
        pytest.skip(f"needs {', '.join(missing)}, which is not installed")
    runs = [[sys.executable, "-c", body]] if lang == "python" else [
        ["bash", "-c", cmd] for cmd in commands(lang, body)
    ]  # fmt: skip
    for argv in runs:
        out = subprocess.run(
            argv, cwd=cwd, env=env(), capture_output=True, text=True,
            timeout=BLOCK_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert out.returncode == 0, f"{argv[-1][:200]}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or the names a module defines or re-exports from jaxrnn."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
    out = []
    for name in names:
        obj = getattr(module, name)
        origin = getattr(obj, "__module__", None)
        if isinstance(obj, types.ModuleType) or (
            isinstance(origin, str) and not origin.startswith("jaxrnn")
        ):
            continue
        out.append(name)
    return out


def api_directives() -> dict[str, list[str]]:
    """API page -> the objects its ``::: name`` directives render, in order."""
    return {
        p.stem: re.findall(r"^::: (\S+)$", p.read_text(), re.M)
        for p in sorted((DOCS / "api").glob("*.md"))
    }


def resolve(qualname: str):
    module, _, name = qualname.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module_name", API_MODULES)
def test_every_public_name_has_an_api_entry(module_name):
    pytest.importorskip("flax.nnx", reason="jaxrnn.nnx needs flax")
    pytest.importorskip("equinox", reason="jaxrnn.eqx needs equinox")
    pytest.importorskip("optax", reason="jaxrnn.train needs optax")
    module = importlib.import_module(module_name)
    documented = [q for qs in api_directives().values() for q in qs]
    objects = [resolve(q) for q in documented]
    missing = [
        n for n in public_names(module)
        if f"{module_name}.{n}" not in documented
        and not any(getattr(module, n) is o for o in objects if callable(o))
    ]  # fmt: skip
    assert not missing, f"{module_name}: no API entry for {missing}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` into a temporary folder; any warning fails it."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
        pytest.importorskip(module, reason='the site needs pip install ".[docs]"')
    pytest.importorskip("mathjax", reason='MathJax comes from pip install ".[docs]"')
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT, env={**env(), "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "WARNING" not in log, log[-5000:]
    return out


def test_site_builds_strictly_with_every_page(site):
    for page in ("derivation", "performance", "changelog", "training", "check-your-bptt"):
        assert (site / page / "index.html").is_file(), page
    for nb in NOTEBOOKS:
        assert (site / "notebooks" / nb / "index.html").is_file(), nb
    assert (site / "assets" / "mathjax" / "tex-chtml.js").is_file()


def test_api_pages_have_a_heading_per_directive(site):
    for page, names in api_directives().items():
        html = (site / "api" / page / "index.html").read_text()
        missing = [n for n in names if f'id="{n}"' not in html]
        assert not missing, f"api/{page}: not rendered: {missing}"


def chromium() -> str | None:
    return next(
        (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
        None,
    )


def _as_fds_3_and_4(read_end: int, write_end: int) -> None:
    """In the child: the DevTools pipe's ends as fds 3 (commands) and 4 (replies)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (read_end, write_end)]
    for fd, target in zip(high, (3, 4), strict=True):
        os.dup2(fd, target)  # inheritable, so it survives exec


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe (fds 3 and 4): stdlib only."""

    def __init__(self, binary: str, profile: Path):
        child_in, self._to = os.pipe()
        self._from, child_out = os.pipe()
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=functools.partial(_as_fds_3_and_4, child_in, child_out),
        )  # fmt: skip
        os.close(child_in), os.close(child_out)
        self._buffer, self._id = b"", 0
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page, flatten=True)["sessionId"]

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from, 1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def evaluate(self, url: str, script: str):
        """Loads url, waits for MathJax (if the page has it), returns ``script``'s value."""
        self.send("Page.navigate", self.session, url=url)
        wait = (
            "new Promise(r => { const go = () => (window.MathJax && MathJax.startup"
            " ? MathJax.startup.promise : Promise.resolve()).then(r);"
            " document.readyState === 'complete' ? go() : addEventListener('load', go); })"
        )
        self.send("Runtime.evaluate", self.session, expression=wait, awaitPromise=True)
        result = self.send(
            "Runtime.evaluate", self.session, expression=script, returnByValue=True,
            awaitPromise=True,
        )  # fmt: skip
        return result["result"]["value"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browse(site, tmp_path_factory):
    """(path, script) -> the script's value on the built site, served over local HTTP."""
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    yield lambda path, script: browser.evaluate(base + path, script)
    browser.close()
    server.shutdown()


PAGE_MATH = """({
  text: (() => {  // the prose: code and program output may hold "$$" legitimately
    const body = document.body.cloneNode(true);
    body.querySelectorAll("pre, code, script, style").forEach(e => e.remove());
    return body.textContent;
  })(),
  display: document.querySelectorAll('mjx-container[display="true"]').length,
  math: document.querySelectorAll("mjx-container").length,
  errors: [...document.querySelectorAll("mjx-merror")].map(e => e.getAttribute("data-mjx-error")),
})"""
MATH_PAGES = ["derivation/", "index.html"] + [f"notebooks/{nb}/" for nb in NOTEBOOKS]


@pytest.mark.parametrize("page", MATH_PAGES)
def test_equations_render(browse, page):
    got = browse(page, PAGE_MATH)
    raw = [s for s in ("$$", "\\(", "\\[") if s in got["text"]]
    assert not raw, f"{page}: raw TeX {raw} left in the page text"
    assert not got["errors"], f"{page}: TeX errors {got['errors']}"
    if page == "derivation/":  # every tagged equation of MATH.md, typeset as a display
        assert got["display"] == (ROOT / "MATH.md").read_text().count("\\tag{"), got["display"]
    elif page.startswith("notebooks/01"):
        assert got["math"] > 0, f"{page}: no equation rendered"


def test_api_pages_list_their_functions(browse):
    for page, names in api_directives().items():
        script = f"{json.dumps(names)}.filter(n => !document.getElementById(n))"
        missing = browse(f"api/{page}/", script)
        assert not missing, f"api/{page}: missing {missing}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_figures_load(browse, notebook):
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    figures = sum(
        any(k.startswith("image/") for k in out.get("data", {}))
        for cell in cells
        for out in cell.get("outputs", [])
    )
    widths = browse(
        f"notebooks/{notebook}/",
        "[...document.querySelectorAll('.jp-OutputArea img')].map(i => i.complete && i.naturalWidth)",
    )
    assert len(widths) == figures and all(w is not False and w > 0 for w in widths), widths
