"""Test configuration: float64, strict promotion, hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE; CI=true selects "ci"):
- "dev": 25 examples per property, for quick local runs;
- "ci": 60 examples per property, derandomized so CI is reproducible;
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
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=60, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
