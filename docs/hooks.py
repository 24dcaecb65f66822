"""mkdocs hooks: include repository files into pages, and serve MathJax from the site.

- A line ``<!-- include: PATH -->`` in a page is replaced by the repository file PATH
  (relative to the repository root), so MATH.md, CHANGELOG.md and benchmarks/RESULTS.md
  have one source. Relative links in the included file are resolved from that file's
  folder: to the page that renders their target (``INCLUDED``), to a repository file the
  site carries (``ASSETS``), or else to plain code text naming the file, which is not
  part of the site.
- The docstrings' Sphinx roles (``:func:`jaxrnn.rnn```, ``:class:`RNNParams```), which
  mkdocstrings shows as written, become code: a link to the API entry where one documents
  that name (by full name, or by last component where that is unambiguous).
- MathJax 3 (``tex-chtml.js`` and its fonts) comes from the ``django-static-mathjax``
  package (the ``docs`` extra) and is served under ``assets/mathjax/``: the site works
  without a CDN.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
INCLUDED = {
    "MATH.md": "derivation.md",
    "CHANGELOG.md": "changelog.md",
    "benchmarks/RESULTS.md": "performance.md",
    "README.md": "index.md",
}
ASSETS = ("benchmarks/memory_vs_T.png",)
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)
LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)\)")
ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):<code>~?([\w.]+)(\(\))?</code>")


def _api_entries() -> dict[str, str]:
    """Every ``::: name`` of the API pages, by full and by unambiguous short name -> URL."""
    entries: dict[str, str] = {}
    short: dict[str, set[str]] = {}
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for name in re.findall(r"^::: (\S+)$", page.read_text(encoding="utf-8"), re.M):
            entries[name] = f"api/{page.stem}/#{name}"
            short.setdefault(name.rpartition(".")[2], set()).add(entries[name])
    entries.update({k: next(iter(v)) for k, v in short.items() if len(v) == 1})
    return entries


def _mathjax_files(config) -> list[File]:
    import mathjax  # django-static-mathjax: MathJax 3.2 as package data, no dependencies

    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    paths = [es5 / "tex-chtml.js", *sorted((es5 / "output/chtml/fonts/woff-v2").glob("*"))]
    return [
        File.generated(
            config, "assets/mathjax/" + p.relative_to(es5).as_posix(), abs_src_path=str(p)
        )
        for p in paths
    ]


def on_files(files: Files, config) -> Files:
    for f in _mathjax_files(config):
        files.append(f)
    for path in ASSETS:
        files.append(File.generated(config, path, abs_src_path=str(ROOT / path)))
    return files


def _rewrite_link(match: re.Match, source: str, page: str) -> str:
    label, target = match.groups()
    if re.match(r"[a-z]+:|#|/", target):
        return match.group(0)
    path, _, anchor = target.partition("#")
    repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    site_path = INCLUDED.get(repo_path, repo_path if repo_path in ASSETS else None)
    if site_path is None:
        return f"{label[1:-1]} (`{repo_path}`)" if label != f"[{path}]" else f"`{repo_path}`"
    rel = posixpath.relpath(site_path, posixpath.dirname(page))
    return f"{label}({rel}{'#' + anchor if anchor else ''})"


def _include(match: re.Match, page: str) -> str:
    source = match.group(1)
    text = (ROOT / source).read_text(encoding="utf-8")
    if not source.endswith(".md"):  # code, shown as it is (inside a fence)
        return text.rstrip("\n")
    return LINK.sub(lambda m: _rewrite_link(m, source, page), text)


def on_page_content(html: str, page, config, files) -> str:
    entries = _api_entries()
    depth = page.url.count("/")  # directory URLs: "api/cells/" is two levels down

    def code(match: re.Match) -> str:
        name = match.group(1)
        target = entries.get(name) or entries.get(name.rpartition(".")[2])
        text = f"<code>{name}{match.group(2) or ''}</code>"
        return f'<a href="{"../" * depth}{target}">{text}</a>' if target else text

    return ROLE.sub(code, html)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return INCLUDE.sub(lambda m: _include(m, page.file.src_uri), markdown)
