"""Test configuration: float64, strict promotion, hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE; CI=true selects "ci"):
- "dev": 20 examples per property, for quick local runs;
- "ci": 30 examples per property, derandomized so CI is reproducible (each new
  shape costs a jit compile, so the example count is what CI time is made of);
- "thorough": 500 examples, for a long local soak.
All use deadline=None: the first example of each new shape includes jit compile time.
"""

import os

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("ci", max_examples=30, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
