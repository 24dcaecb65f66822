"""Pytree comparisons for the layer, stack and model tests (tolerances from helpers.TOL)."""

from __future__ import annotations

import jax
import numpy as np
from helpers import TOL, rel_err


def tree_rel_err(got, want) -> float:
    """The worst :func:`helpers.rel_err` over matching leaves (structures must agree)."""
    g_leaves, g_def = jax.tree_util.tree_flatten(got)
    w_leaves, w_def = jax.tree_util.tree_flatten(want)
    assert g_def == w_def, f"structure mismatch: {g_def} vs {w_def}"
    return max((rel_err(g, w) for g, w in zip(g_leaves, w_leaves, strict=True)), default=0.0)


def assert_tree_close(got, want, dtype, what="", tol=None):
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    err = tree_rel_err(got, want)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"
    return err
