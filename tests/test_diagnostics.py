"""jaxrnn.diagnostics: the hand-derived Jacobian products of MATH.md §3 == jax.jacobian."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, bad, check_raises, rel_err
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import diagnostics as dg
from jaxrnn.reference import scan_rnn
from jaxrnn.testing import strategies as rs

f64 = st.just(np.float64)


def _perturbed_h_T(eps, x, h0, Wx, Wh, b, activation):
    """One sequence's h_T when every h_k (k = 0..T) is shifted by eps[k]: eps (T+1, H) -> (H,).

    ∂h_T/∂eps[k] = ∂h_T/∂h_k, so one jax.jacobian gives the whole product chain.
    """
    f = jaxrnn.get_activation(activation).fn

    def step(h_prev, x_eps):  # plain autodiff scan: h_t = f(x_t Wx + (h_{t-1} + eps_{t-1}) Wh + b)
        x_t, eps_prev = x_eps
        return f(x_t @ Wx + (h_prev + eps_prev) @ Wh + b), None

    h_T, _ = jax.lax.scan(step, h0, (x, eps[:-1]))
    return h_T + eps[-1]


@partial(jax.jit, static_argnames="activation")
def autodiff_products(x, h0, Wx, Wh, b, activation):
    """∂h_T/∂h_k for k = 0..T by jax.jacobian, per sequence: (N, T+1, H, H)."""
    N, T, _ = x.shape
    eps = jnp.zeros((T + 1, h0.shape[-1]), x.dtype)
    jac = jax.jacobian(_perturbed_h_T)  # (H, T+1, H) per sequence
    J = jax.vmap(lambda x_n, h0_n: jac(eps, x_n, h0_n, Wx, Wh, b, activation))(x, h0)
    return J.transpose(0, 2, 1, 3)  # (N, H, T+1, H) -> (N, T+1, H, H)


@partial(jax.jit, static_argnames="activation")
def autodiff_step_jacobians(x, h0, Wx, Wh, b, activation):
    """∂h_t/∂h_{t-1} by jax.jacobian of rnn_step_forward, for t = 1..T: (N, T, H, H)."""
    N, T, D = x.shape
    H = h0.shape[-1]
    h = scan_rnn(x, h0, Wx, Wh, b, activation)
    h_prev = jnp.concatenate([h0[:, None], h[:, :-1]], axis=1)  # h_{t-1}, (N, T, H)

    def step(h_prev_t, x_t):  # one row: (H,), (D,) -> (H,)
        h_t, _ = jaxrnn.rnn_step_forward(
            x_t[None], h_prev_t[None], Wx, Wh, b, activation=activation
        )
        return h_t[0]

    J = jax.vmap(jax.jacobian(step))(h_prev.reshape(N * T, H), x.reshape(N * T, D))
    return J.reshape(N, T, H, H)


# jit compiles once per (shape, activation): small pools keep these property tests fast while
# still covering N = 0, T = 0, H = 1 and every activation.
SMALL = rs.shapes(N=(0, 1, 3), T=(0, 1, 6), D=(2,), H=(1, 3))
HEAVY = settings(max_examples=20)  # each example compiles an autodiff oracle


@HEAVY
@given(rs.problems(shape=SMALL, dtype=f64))
def test_jacobian_products_norms_and_singular_values_equal_jax_jacobian(p):
    """∂h_T/∂h_k = Π diag(f') Wh^T (MATH.md §3) == jax.jacobian, to 1e-10; norms and SVD too."""
    N, T, _ = p.x.shape
    H = p.Wh.shape[0]
    want = np.asarray(autodiff_products(*p.args, p.activation))  # (N, T+1, H, H)
    P = dg.jacobian_products(*p.args, activation=p.activation)
    assert P.shape == (N, T + 1, H, H) and P.dtype == p.x.dtype
    np.testing.assert_array_equal(P[:, T], np.broadcast_to(np.eye(H), (N, H, H)))
    assert rel_err(P, want) <= 1e-10, rel_err(P, want)
    sv = dg.jacobian_singular_values(*p.args, activation=p.activation)
    norms = dg.jacobian_norms(*p.args, activation=p.activation)
    assert sv.shape == (N, T + 1, H) and norms.shape == (N, T + 1)
    assert rel_err(sv, np.linalg.svd(want, compute_uv=False)) <= 1e-10
    assert rel_err(norms, np.linalg.norm(want, ord=2, axis=(-2, -1))) <= 1e-10
    assert np.all(np.diff(np.asarray(sv), axis=-1) <= 0)  # descending
    np.testing.assert_allclose(norms[:, T], 1.0, rtol=1e-12)


@HEAVY
@given(rs.problems(shape=rs.shapes(N=(1, 3), T=(1, 6), D=(2,), H=(1, 3))))
def test_step_jacobians_and_their_norms_equal_jax_jacobian(p):
    """J_t = diag(f'(a_t)) Wh^T == jax.jacobian of rnn_step_forward; ||P_k|| <= Π ||J_t||."""
    N, T, _ = p.x.shape
    J = dg.step_jacobians(*p.args, activation=p.activation)
    assert J.shape == (N, T, *p.Wh.shape) and J.dtype == p.x.dtype
    want = np.asarray(autodiff_step_jacobians(*p.args, p.activation))
    assert rel_err(J, want) <= TOL[J.dtype]
    step = np.asarray(dg.step_jacobian_norms(*p.args, activation=p.activation), np.float64)
    assert step.shape == (N, T)
    assert (
        rel_err(step, np.linalg.norm(want.astype(np.float64), ord=2, axis=(-2, -1))) <= TOL[J.dtype]
    )
    # submultiplicativity: ||J_T ... J_{k+1}|| <= Π_{t=k+1}^T ||J_t||, k = 0..T
    norms = np.asarray(dg.jacobian_norms(*p.args, activation=p.activation), np.float64)
    bound = np.concatenate([np.cumprod(step[:, ::-1], axis=1)[:, ::-1], np.ones((N, 1))], axis=1)
    assert np.all(norms <= bound * (1 + 10 * TOL[J.dtype]) + 1e-30)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.5])
def test_identity_activation_with_scaled_orthogonal_weights_gives_rho_to_the_span(rho):
    """f = identity, Wh = ρ Q (Q orthogonal): ∂h_T/∂h_k = (ρ Q^T)^(T-k), every singular value ρ^(T-k)."""
    N, T, D, H = 2, 12, 3, 5
    key = jax.random.PRNGKey(0)
    Q = jax.nn.initializers.orthogonal()(key, (H, H), jnp.float64)
    p = rs.make_problem(rs.Shape(N, T, D, H), 0, "identity")
    sv = dg.jacobian_singular_values(p.x, p.h0, p.Wx, rho * Q, p.b, activation="identity")
    span = T - np.arange(T + 1)  # T - k for k = 0..T
    want = np.broadcast_to((rho**span)[None, :, None], sv.shape)
    np.testing.assert_allclose(sv, want, rtol=1e-12)
    P = dg.jacobian_products(p.x, p.h0, p.Wx, rho * Q, p.b, activation="identity")
    np.testing.assert_allclose(
        P[0, T - 3], np.linalg.matrix_power(rho * np.asarray(Q).T, 3), atol=1e-12
    )


def test_float32_and_empty_sequences():
    """dtypes are preserved; T = 0 gives the identity and empty per-step results."""
    p = rs.make_problem(rs.Shape(3, 0, 2, 4), 1, "tanh", dtype=np.float32)
    P = dg.jacobian_products(*p.args)
    assert P.shape == (3, 1, 4, 4) and P.dtype == jnp.float32
    np.testing.assert_array_equal(P[:, 0], np.broadcast_to(np.eye(4, dtype=np.float32), (3, 4, 4)))
    assert dg.step_jacobians(*p.args).shape == (3, 0, 4, 4)
    assert dg.step_jacobian_norms(*p.args).shape == (3, 0)
    np.testing.assert_array_equal(dg.jacobian_norms(*p.args), np.ones((3, 1), np.float32))
    dx, dWx, dWh, db = dg.truncated_gradients(p.dh, *p.args, truncation=2)
    assert dx.shape == (3, 0, 2) and dx.dtype == jnp.float32
    for g, w in ((dWx, p.Wx), (dWh, p.Wh), (db, p.b)):
        assert g.shape == w.shape and g.dtype == jnp.float32
        np.testing.assert_array_equal(g, np.zeros_like(w))


@partial(jax.jit, static_argnames=("activation", "k"))
def truncated_oracle(dh, x, h0, Wx, Wh, b, activation, k):
    """jax.grad of Σ_t <dh_t, h_t^(k)>, h_t^(k) recomputed from stop_gradient(h_{max(t-k, 0)}).

    For every t at once (vmap): a k-step window j = t-k+1..t run by a plain
    scan; steps with j < 1 are skipped, so early windows start at h_0.
    """
    f = jaxrnn.get_activation(activation).fn
    T = x.shape[1]

    def surrogate(x, Wx, Wh, b):
        hs = jnp.concatenate([h0[:, None], scan_rnn(x, h0, Wx, Wh, b, activation)], axis=1)

        def window(t):  # h_t recomputed through its last k steps: (N, H)
            def step(h, i):
                j = t - k + 1 + i  # the step run now, 1-based
                x_j = jnp.take(x, jnp.clip(j - 1, 0, T - 1), axis=1)  # (N, D)
                return jnp.where(j >= 1, f(x_j @ Wx + h @ Wh + b[None]), h), None

            start = jax.lax.stop_gradient(jnp.take(hs, jnp.maximum(t - k, 0), axis=1))
            return jax.lax.scan(step, start, jnp.arange(k))[0]

        h_trunc = jax.vmap(window, out_axes=1)(jnp.arange(1, T + 1))  # (N, T, H)
        return jnp.sum(dh * h_trunc)

    return jax.grad(surrogate, argnums=(0, 1, 2, 3))(x, Wx, Wh, b)


@HEAVY
@given(
    rs.problems(shape=rs.shapes(N=(1, 3), T=(1, 6), D=(2,), H=(1, 3)), dtype=f64),
    st.sampled_from((1, 2, 5)),
)
def test_truncated_gradients_equal_autodiff_with_stop_gradient(p, k):
    """Per-term truncated BPTT(k) == jax.grad of the loss with h_{t-k} made a constant."""
    got = dg.truncated_gradients(p.dh, *p.args, truncation=k, activation=p.activation)
    want = truncated_oracle(*(jnp.asarray(a) for a in (p.dh, *p.args)), p.activation, k)
    for name, g, w in zip(("dx", "dWx", "dWh", "db"), got, want, strict=True):
        assert g.shape == w.shape
        assert rel_err(g, w) <= 1e-10, f"{name}: {rel_err(g, w):.2e}"


@HEAVY
@given(rs.problems(shape=SMALL), st.integers(0, 3))
def test_truncation_at_least_T_is_full_bptt(p, extra):
    """truncation >= T leaves nothing out: == jaxrnn.rnn_backward (dx, dWx, dWh, db)."""
    T = p.x.shape[1]
    got = dg.truncated_gradients(
        p.dh, *p.args, truncation=max(T + extra, 1), activation=p.activation
    )
    dx, _, dWx, dWh, db = jaxrnn.rnn_backward(
        jnp.asarray(p.dh), jaxrnn.rnn_forward(*p.args, activation=p.activation)[1]
    )
    for g, w in zip(got, (dx, dWx, dWh, db), strict=True):
        assert g.dtype == w.dtype
        assert rel_err(g, w) <= TOL[g.dtype]


def test_truncation_one_keeps_only_the_immediate_step():
    """k = 1: δ_t = dh_t * f'(a_t), no recursion through Wh."""
    p = rs.make_problem(rs.Shape(2, 6, 3, 4), 3, "tanh")
    h, _ = jaxrnn.rnn_forward(*p.args)
    da = p.dh * (1 - np.asarray(h) ** 2)  # (N, T, H)
    h_prev = np.concatenate([p.h0[:, None], np.asarray(h)[:, :-1]], axis=1)
    _, dWx, dWh, db = dg.truncated_gradients(p.dh, *p.args, truncation=1)
    np.testing.assert_allclose(dWh, np.einsum("nti,ntj->ij", h_prev, da), rtol=1e-12)
    np.testing.assert_allclose(dWx, np.einsum("nti,ntj->ij", p.x, da), rtol=1e-12)
    np.testing.assert_allclose(db, da.sum(axis=(0, 1)), rtol=1e-12)


def test_truncated_error_shrinks_with_k_when_gradients_vanish():
    """With contracting Jacobians (small Wh) the truncated gradient converges to the full one."""
    p = rs.make_problem(rs.Shape(4, 30, 3, 6), 5, "tanh", scale=0.5)
    full = dg.truncated_gradients(p.dh, *p.args, truncation=30)[2]
    errs = [
        rel_err(dg.truncated_gradients(p.dh, *p.args, truncation=k)[2], full) for k in (1, 4, 16)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6, errs


@pytest.mark.parametrize("k", [0, -1, 1.5, True, None], ids=repr)
def test_truncation_must_be_a_positive_int(k):
    p = rs.make_problem(rs.Shape(1, 3, 2, 2), 0)
    with pytest.raises(ValueError, match="truncation must be a positive int"):
        dg.truncated_gradients(p.dh, *p.args, truncation=k)


PE = rs.make_problem(rs.Shape(2, 3, 2, 4), 0)
BAD_DIAGNOSTICS = [
    bad(
        "jacobian_products-Wh-not-square",
        lambda: dg.jacobian_products(PE.x, PE.h0, PE.Wx, PE.Wh[:, :3], PE.b),
        ValueError,
        r"jacobian_products: .*Wh must be square",
    ),
    bad(
        "truncated_gradients-dh-shape",
        lambda: dg.truncated_gradients(PE.dh[:, :2], *PE.args, truncation=2),
        ValueError,
        r"truncated_gradients: dh must have the shape",
    ),
    bad(
        "jacobian_norms-unknown-activation",
        lambda: dg.jacobian_norms(*PE.args, activation="softplus"),
        ValueError,
        "unknown activation",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_DIAGNOSTICS)
def test_argument_errors_name_the_function_and_shapes(call, exc, match):
    check_raises(call, exc, match)
