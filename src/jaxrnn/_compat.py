"""What differs between the jax versions jaxrnn supports (``jax>=0.4.30``).

Each name here is the newer jax's spelling where it exists and the same behaviour
spelled for older jax otherwise; ``tests/test_release.py`` documents the floor and
``.ci/run`` tests it.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax

# ``allow_negative_indices=False`` (jax >= 0.5.3) tells ``dynamic_index_in_dim`` and
# ``dynamic_update_index_in_dim`` that the index is never negative, sparing the select
# that wraps it. Older jax lacks the keyword; the loops' indices are in [0, T) anyway.
NO_NEGATIVE_INDICES: dict[str, Any] = (
    {"allow_negative_indices": False}
    if "allow_negative_indices" in inspect.signature(jax.lax.dynamic_index_in_dim).parameters
    else {}
)
