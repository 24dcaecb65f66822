"""Sharded inputs (issue 19): every public differentiable function under ``jax.shard_map``
(Auto and Explicit mesh axes) and under ``jax.jit`` with batch-sharded inputs on an
Explicit mesh, equal to the unsharded run (float64, 1e-12).

The sharded runs need 2 devices, and jax fixes its device count at start-up (this
suite runs on one), so ``sharding_cases.py`` runs them all in one subprocess with 2
forced CPU devices and reports per case; each case is then its own test here, so a
failure names the function, its options and the mode. The unsharded programs must not
change: the last tests check that nothing sharding-related is staged without a mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax.extend.core import jaxprs_in_params
from sharding_cases import CASES, FAST_COMPILE, FLAG

import jaxrnn
from jaxrnn import model

TOL = 1e-12  # relative, float64 (helpers.rel_err's measure)
TIMEOUT_S = 600  # the whole subprocess; about 30 s on an idle 2-core machine
NEEDS = ("shard_map", "set_mesh", "typeof")  # jax >= 0.7 (the declared floor is 0.4.30)

pytestmark = pytest.mark.skipif(
    not all(hasattr(jax, n) for n in NEEDS) or not hasattr(jax.sharding, "AxisType"),
    reason=f"sharding types need jax.{', jax.'.join(NEEDS)} (jax {jax.__version__})",
)


@pytest.fixture(scope="module")
def results() -> dict:
    """Every case's result, from one run of ``sharding_cases.py`` on 2 CPU devices."""
    script = Path(__file__).with_name("sharding_cases.py")
    env = dict(os.environ, XLA_FLAGS=f"{FLAG} {FAST_COMPILE}")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(jaxrnn.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    try:
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env,
            timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"sharding_cases.py ran past {TIMEOUT_S} s")
    assert proc.returncode == 0, f"sharding_cases.py failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_case_ran(results):
    assert sorted(results) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_sharded_equals_unsharded(results, case):
    got = results[case]
    assert "error" not in got, got.get("error")
    assert got["err"] <= TOL, f"{case}: relative error {got['err']:.3e} > {TOL:.0e}"


# --- without a mesh nothing changes --------------------------------------------------------

SHARDING_PRIMITIVES = ("pcast", "pvary", "reshard", "sharding_constraint", "psum")


def _primitives(jaxpr) -> set[str]:
    found = set()
    for eqn in jaxpr.eqns:
        found.add(eqn.primitive.name)
        for sub in jaxprs_in_params(eqn.params):
            found |= _primitives(sub)
    return found


def _grad_programs():
    k = jax.random.split(jax.random.key(0), 4)
    x, h0 = jax.random.normal(k[0], (3, 4, 2)), jax.random.normal(k[1], (3, 5))
    lengths = jnp.array([4, 1, 0])
    for cell in ("rnn", "lstm", "gru"):
        p = getattr(jaxrnn, f"init_{cell}_params")(k[2], 2, 5, jnp.float64)
        f = getattr(jaxrnn, cell)
        for opts in ({}, {"lengths": lengths, "checkpoint": 2}):
            loss = lambda p, f=f, opts=opts: (f(x, h0, *p, **opts) ** 2).sum()  # noqa: E731
            yield f"{cell}{sorted(opts)}", jax.grad(loss), (p,)
    params = model.init(k[3], 5, (4,), cell="lstm", dtype=jnp.float64)
    tokens = jax.random.randint(k[0], (3, 4), 0, 5)
    yield "model.loss_and_grads", lambda p: model.loss_and_grads(p, tokens, tokens), (params,)
    ck = lambda p: model.loss_and_grads(p, tokens, tokens, checkpoint=2)  # noqa: E731
    yield "model.loss_and_grads checkpoint", ck, (params,)
    yield "model.loss", jax.grad(lambda p: model.loss(p, tokens, tokens)[0]), (params,)


@pytest.mark.parametrize("name, fn, args", [pytest.param(*p, id=p[0]) for p in _grad_programs()])
def test_unsharded_programs_stage_no_sharding(name, fn, args):
    """Without a mesh the sharding helpers are identities: no cast, reshard or collective
    reaches the program (its compiled HLO is the one before sharded inputs worked)."""
    found = _primitives(jax.make_jaxpr(fn)(*args).jaxpr) & set(SHARDING_PRIMITIVES)
    assert not found, f"{name}: {found}"
