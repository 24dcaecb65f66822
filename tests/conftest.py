"""Test configuration: float64, strict promotion, hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE; CI=true selects "ci"):
- "dev": 20 examples per property, for quick local runs;
- "ci": 30 examples per property, derandomized so CI is reproducible (each new
  shape costs a jit compile, so the example count is what CI time is made of);
- "thorough": 500 examples, for a long local soak;
- "floor": 5 examples, derandomized: the core and oracle tests under the lowest jax
  declared (``.ci/run``), where the point is what breaks, not the search.
All use deadline=None: the first example of each new shape includes jit compile time.
"""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("ci", max_examples=30, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.register_profile("floor", max_examples=5, derandomize=True, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drop jax's compiled programs after each test module.

    One pytest process compiles thousands of programs; XLA:CPU keeps each one's code in
    its own memory mappings, and a whole run then nears Linux's default limit of 65,530
    mappings per process (``vm.max_map_count``), past which the next compile segfaults
    inside XLA. Most jitted functions belong to one test module; the library's shared
    ones recompile once per module at most, a few seconds in all.
    """
    yield
    jax.clear_caches()
