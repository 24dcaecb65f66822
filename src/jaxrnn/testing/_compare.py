"""Comparing what a user's code returned with the reference: rows, failures, user calls."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np


class Row(NamedTuple):
    """One compared quantity of one example."""

    name: str
    shape: tuple[int, ...]  # the expected shape
    rel_err: float  # max over the references of max|got - want| / max(max|want|, 1)
    abs_err: float
    ok: bool
    note: str  # a shape mismatch, NaN, a dtype or a pattern found in the error


class Failure(Exception):
    """Raised inside the hypothesis loop; turned into an ``AssertionError`` report.

    ``got`` and ``want`` map each compared name to the user's array and the
    reference's (float64 numpy), for localisation; ``notes`` are diagnosis lines
    added after shrinking.
    """

    def __init__(self, what: str, shape: tuple[int, ...], seed: int, rows=(), got=None, want=None):
        super().__init__(what)
        self.what, self.shape, self.seed, self.rows = what, tuple(shape), seed, tuple(rows)
        self.got, self.want = dict(got or {}), dict(want or {})
        self.notes: list[str] = []
        self.problem: Any = None  # the failing example, set by the driver that catches it


def to_float_array(value: Any) -> np.ndarray:
    """numpy/JAX arrays, torch tensors (detached) and nested lists to a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def scale_of(want: np.ndarray) -> float:
    """The denominator of the relative error: ``max(max|want|, 1)``."""
    return max(float(np.max(np.abs(want))), 1.0) if want.size else 1.0


def _factor(got: np.ndarray, want: np.ndarray, N: int, T: int) -> str:
    """Names ``got = c * want`` for a constant c != 1 (c = 0, -1, 1/N, 1/T, ...)."""
    ww = float(np.sum(want * want))
    if ww == 0.0:
        return ""
    if not np.any(got):
        return "it is all zeros"
    c = float(np.sum(got * want)) / ww
    if np.max(np.abs(got - c * want)) > 1e-9 * scale_of(want) or abs(c - 1) < 1e-6:
        return ""
    named = {-1.0: "the wrong sign", 2.0: "twice the right answer", 0.5: "half the right answer"}
    for value, text in named.items():
        if abs(c - value) < 1e-9:
            return f"it has {text}" if value == -1.0 else f"it is {text}"
    if N > 1 and abs(c - 1 / N) < 1e-9:
        return "it is the right answer divided by N (a mean over the batch instead of a sum)"
    if T > 1 and abs(c - 1 / T) < 1e-9:
        return "it is the right answer divided by T (a mean over time instead of a sum)"
    if np.count_nonzero(want) < 2:  # one number is a multiple of any other
        return ""
    return f"it is {c:.6g} times the right answer (a constant scale factor)"


def _pattern(got: np.ndarray, want: np.ndarray, N: int, T: int) -> str:
    """Names a recognisable mistake: a transpose or a constant factor (sign, 1/N, ...)."""
    if not np.any(want):
        return ""
    tol = 1e-9 * scale_of(want)
    square = want.ndim == 2 and want.shape[0] == want.shape[1] and want.shape[0] > 1
    if square and np.max(np.abs(got - want.T)) <= tol:
        return "it equals the transpose of the right answer"
    return _factor(got, want, N, T)


def compare(got: Any, wants: list[np.ndarray], name: str, tol: float, N: int = 1, T: int = 1):
    """Compares one returned quantity with every reference; returns ``(Row, array or None)``."""
    want = wants[0]
    try:
        arr = to_float_array(got)
        g = arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        return Row(name, want.shape, np.inf, np.inf, False, f"not an array ({e})"), None
    if g.shape != want.shape:
        note = f"returned shape {g.shape}, expected {want.shape}"
        return Row(name, want.shape, np.inf, np.inf, False, note), None
    if g.size == 0:
        return Row(name, g.shape, 0.0, 0.0, True, ""), g
    bad = ~np.isfinite(g)
    if bad.any():
        kinds = " and ".join(k for k, m in (("NaN", np.isnan(g)), ("inf", np.isinf(g))) if m.any())
        note = f"it contains {kinds} ({int(bad.sum())} of {g.size} entries)"
        return Row(name, g.shape, np.nan, np.nan, False, note), g
    errs = [float(np.max(np.abs(g - w))) for w in wants]
    rel = max(e / scale_of(w) for e, w in zip(errs, wants, strict=True))
    ok = bool(rel <= tol)
    note = "" if ok else _pattern(g, want, N, T)
    if not ok and arr.dtype != np.float64 and np.issubdtype(arr.dtype, np.floating):
        note = f"{note}; " if note else ""
        note += f"returned {arr.dtype}: compute in float64 or raise tol"
    return Row(name, g.shape, float(rel), float(max(errs)), ok, note), g


def call_user(label: str, fn: Callable[..., Any], args, kwargs, shape, seed) -> Any:
    """Calls the user's ``fn``; an exception becomes a :class:`Failure` naming file and line."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # the user's code: report it with the shape, seed and line
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f" (at {frame.filename}:{frame.lineno})"
        raise Failure(f"{label} raised {type(e).__name__}: {e}{where}", shape, seed) from e


def unpack(label: str, out: Any, n: int, what: str, shape, seed) -> tuple:
    """``out`` as a tuple of ``n`` items, or a :class:`Failure` saying what came back."""
    if not isinstance(out, (tuple, list)) or len(out) != n:
        got = f"a {type(out).__name__}" + (
            f" of length {len(out)}" if hasattr(out, "__len__") else ""
        )
        raise Failure(f"{label} must return {what}, got {got}", shape, seed)
    return tuple(out)


def first_failure(rows, got, want, shape, seed) -> None:
    """Raises a :class:`Failure` naming the first wrong row, if any."""
    bad = [r for r in rows if not r.ok]
    if bad:
        what = f"{bad[0].name} is wrong"
        if "NaN" in bad[0].note or "inf" in bad[0].note:
            what += f" ({bad[0].note})"
        raise Failure(what, shape, seed, rows, got, want)


def x64() -> contextlib.AbstractContextManager:
    """A context in which JAX computes in float64 (``jax.enable_x64``, or its old home)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.7
        from jax.experimental import enable_x64 as enable  # pyright: ignore[reportAttributeAccessIssue]
    return enable(True)
