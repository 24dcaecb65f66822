"""Bad inputs raise ValueError/TypeError at trace time, naming the argument and the shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import bad, check_raises

import jaxrnn

N, T, D, H = 2, 3, 4, 5
rng = np.random.default_rng(0)
X = rng.standard_normal((N, T, D))
H0 = rng.standard_normal((N, H))
WX = rng.standard_normal((D, H))
WH = rng.standard_normal((H, H))
B = rng.standard_normal(H)
GOOD = dict(x=X, h0=H0, Wx=WX, Wh=WH, b=B)


def call(fn, **override):
    args = {**GOOD, **override}
    return fn(args["x"], args["h0"], args["Wx"], args["Wh"], args["b"])


SEQUENCE_FNS = [jaxrnn.rnn_forward, jaxrnn.rnn]

BAD_SHAPES = [
    # (override, regex the message must match)
    (dict(x=X[0]), r"x must be 3-D with shape \(N, T, D\), got 2-D shape \(3, 4\)"),
    (dict(h0=H0[0]), r"h0 must be 2-D with shape \(N, H\), got 1-D shape \(5,\)"),
    (dict(Wx=WX[0]), r"Wx must be 2-D"),
    (dict(Wh=WH[None]), r"Wh must be 2-D"),
    (dict(b=B[None]), r"b must be 1-D"),
    (
        dict(x=X[:, :, :3]),
        r"x.shape\[-1\] must equal Wx.shape\[0\].*Expected 4, got 3.*x: \(2, 3, 3\), Wx: \(4, 5\)",
    ),
    (dict(h0=H0[:1]), r"h0.shape\[0\] must equal x.shape\[0\].*Expected 2, got 1.*h0: \(1, 5\)"),
    (
        dict(h0=H0[:, :4]),
        r"h0.shape\[-1\] must equal the hidden size H.*Expected 5, got 4.*h0: \(2, 4\)",
    ),
    (dict(Wh=WH[:, :4]), r"Wh must be square.*Expected 5, got 4.*Wh: \(5, 4\)"),
    (
        dict(Wx=WX[:, :4]),
        r"Wx.shape\[1\] must equal the hidden size.*Expected 5, got 4.*Wx: \(4, 4\)",
    ),
    (dict(b=B[:4]), r"b.shape\[0\] must equal the hidden size H.*Expected 5, got 4.*b: \(4,\)"),
]


BAD_SHAPE_IDS = [
    "x-2d", "h0-1d", "Wx-1d", "Wh-3d", "b-2d", "x-D-vs-Wx", "h0-N-vs-x", "h0-H", "Wh-not-square",
    "Wx-H", "b-H",
]  # fmt: skip


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("override,match", BAD_SHAPES, ids=BAD_SHAPE_IDS)
def test_bad_shapes(fn, override, match):
    with pytest.raises(ValueError, match=match):
        call(fn, **override)


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
def test_bad_shapes_under_jit(fn):
    """The same message at trace time inside jit, not an XLA error."""
    with pytest.raises(ValueError, match=r"x.shape\[-1\] must equal Wx.shape\[0\]"):
        jax.jit(lambda x: call(fn, x=x))(X[:, :, :3])


def test_bad_shapes_under_grad():
    """The same message at trace time inside jax.grad through rnn (the custom_vjp)."""
    with pytest.raises(ValueError, match=r"b.shape\[0\] must equal"):
        jax.grad(lambda b: jnp.sum(call(jaxrnn.rnn, b=b)))(B[:4])


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", ["x", "h0", "Wx", "Wh", "b"])
def test_integer_dtype(fn, name):
    with pytest.raises(TypeError, match=rf"{name} must have a floating dtype.*int"):
        call(fn, **{name: GOOD[name].astype(np.int32)})


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
def test_mixed_float_dtypes(fn):
    with pytest.raises(TypeError, match=r"one float dtype.*Wh: float32"):
        call(fn, Wh=WH.astype(np.float32))


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
def test_unknown_activation_lists_choices(fn):
    with pytest.raises(
        ValueError, match=r"unknown activation 'gelu'.*'tanh', 'relu', 'sigmoid', 'identity'"
    ):
        fn(X, H0, WX, WH, B, activation="gelu")


def _step_cache():
    return jaxrnn.rnn_step_forward(X[:, 0], H0, WX, WH, B)


def _cache():
    return jaxrnn.rnn_forward(X, H0, WX, WH, B)


BAD_OTHER = [
    bad(
        "step_forward-x-Wx-mismatch",
        lambda: jaxrnn.rnn_step_forward(X[:, 0, :3], H0, WX, WH, B),
        ValueError,
        r"x.shape\[-1\] must equal Wx.shape\[0\].*Expected 4, got 3",
    ),
    bad(
        "step_forward-prev_h-batch",
        lambda: jaxrnn.rnn_step_forward(X[:, 0], H0[:1], WX, WH, B),
        ValueError,
        r"prev_h.shape\[0\] must equal x.shape\[0\]",
    ),
    bad(
        "step_forward-x-3d",
        lambda: jaxrnn.rnn_step_forward(X, H0, WX, WH, B),
        ValueError,
        r"x must be 2-D with shape \(N, D\)",
    ),
    bad(
        "step_forward-activation-case",
        lambda: jaxrnn.rnn_step_forward(X[:, 0], H0, WX, WH, B, activation="Tanh"),
        ValueError,
        r"unknown activation",
    ),
    bad(
        "backward-dh-shape",
        lambda: jaxrnn.rnn_backward(_cache()[0][:, :2], _cache()[1]),
        ValueError,
        r"dh must have the shape of the cached h. Expected \(2, 3, 5\), got \(2, 2, 5\)",
    ),
    bad(
        "backward-dh-dtype",
        lambda: jaxrnn.rnn_backward(_cache()[0].astype(jnp.float32), _cache()[1]),
        TypeError,
        r"dh must have the dtype.*float64, got float32",
    ),
    bad(
        "step_backward-dnext_h-shape",
        lambda: jaxrnn.rnn_step_backward(_step_cache()[0][:1], _step_cache()[1]),
        ValueError,
        r"dnext_h must have the shape of next_h",
    ),
    bad(
        "init_params-H-zero",
        lambda: jaxrnn.init_params(jax.random.PRNGKey(0), 3, 0),
        ValueError,
        r"H must be a positive int, got 0",
    ),
    bad(
        "init_params-int-dtype",
        lambda: jaxrnn.init_params(jax.random.PRNGKey(0), 3, 2, jnp.int32),
        TypeError,
        r"init_rnn_params: dtype must be float32 or float64",
    ),
    bad(
        "rnn_forward-h0-None",
        lambda: call(jaxrnn.rnn_forward, h0=None),
        TypeError,
        r"h0 must be an array, got None",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD_OTHER)
def test_bad_input(call, exc, match):
    check_raises(call, exc, match)
