"""The failure report: the first wrong quantity, shape, seed, errors, where in time, a repro."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._compare import Failure

DEFAULT_TOL = 1e-8


def _name(fn: Callable[..., Any], default: str) -> str:
    qual = getattr(fn, "__qualname__", None)
    mod = getattr(fn, "__module__", None)
    if qual is None or "<" in qual:
        return default
    return f"{mod}.{qual}" if mod and mod not in ("__main__", "builtins") else qual


def _dims(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return f"N={shape[0]}, T={shape[1]}"
    N, T, D, H = shape
    return f"N={N}, T={T}, D={D}, H={H}"


def report(title: str, f: Failure, activation: str | None, tol: float, repro: str) -> str:
    """The text of a failed check: the first wrong quantity, shape, seed, errors, a repro."""
    act = "" if activation is None else f" (activation={activation!r})"
    dims = _dims(f.shape)
    if title.startswith("rnn_step"):
        dims = dims.replace(f"T={f.shape[1]}, ", "")
    lines = [f"{title} check FAILED{act}: {f.what}", f"  shape: {dims}    seed: {f.seed}"]
    bad = [r for r in f.rows if not r.ok]
    if bad:
        r = bad[0]
        if np.isfinite(r.abs_err):
            lines.append(
                f"  max error in {r.name}: {r.abs_err:.3g} absolute, {r.rel_err:.3g} relative"
                f" (tolerance {tol:g}, relative to max(max|expected|, 1))"
            )
        width = max(9, *(len(r.name) for r in f.rows))
        lines.append(f"  {'quantity':<{width}} {'expected shape':<16} rel. error   verdict")
        for r in f.rows:
            err = f"{r.rel_err:.2e}" if np.isfinite(r.rel_err) or np.isnan(r.rel_err) else "-"
            verdict = "ok" if r.ok else "WRONG" + (f": {r.note}" if r.note else "")
            lines.append(f"  {r.name:<{width}} {str(r.shape):<16} {err:<12} {verdict}")
        if len(f.rows) == 1:
            lines.append("  (the backward pass was not run: the forward output is already wrong)")
    lines += [f"  {note}" for note in f.notes]
    lines.append(f"  reproduce: {repro}")
    return "\n".join(lines)


def largest(shrunk: Failure, failed: list[Failure]) -> str:
    """A line naming the largest error among the failing examples, if above the shrunk one's."""

    def worst(f):
        errs = [(r.rel_err, r.name) for r in f.rows if not r.ok and np.isfinite(r.rel_err)]
        return max(errs, default=(0.0, ""))

    big = max(failed, key=lambda f: worst(f)[0], default=None)
    if big is None or worst(big)[0] <= 10 * worst(shrunk)[0]:
        return ""
    err, name = worst(big)
    at = f"shape={tuple(big.shape)}, seed={big.seed}"
    return f"\n  largest error seen: {err:.3g} relative, in {name}, at {at}"


def python_repro(kind, forward_fn, backward_fn, activation, f: Failure, tol: float) -> str:
    fn = "check_rnn_step_backward" if kind.step else "check_rnn_backward"
    extra = "" if tol == DEFAULT_TOL else f", tol={tol:g}"
    extra += ", lengths=True" if kind.lengths else ""
    return (
        f"jaxrnn.testing.{fn}({_name(forward_fn, 'forward_fn')}, "
        f"{_name(backward_fn, 'backward_fn')}, activation={activation!r}, "
        f"shape={tuple(f.shape)}, seed={f.seed}{extra})"
    )
