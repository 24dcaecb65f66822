"""Bad inputs raise ValueError/TypeError at trace time, naming the argument and the shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("override,match", BAD_SHAPES)
def test_bad_shapes(fn, override, match):
    with pytest.raises(ValueError, match=match):
        call(fn, **override)


@pytest.mark.parametrize("fn", SEQUENCE_FNS, ids=lambda f: f.__name__)
def test_bad_shapes_under_jit_and_grad(fn):
    """The same message at trace time inside jit and grad, not an XLA error."""
    with pytest.raises(ValueError, match=r"x.shape\[-1\] must equal Wx.shape\[0\]"):
        jax.jit(lambda x: call(fn, x=x))(X[:, :, :3])
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


def test_step_forward_errors():
    with pytest.raises(
        ValueError, match=r"x.shape\[-1\] must equal Wx.shape\[0\].*Expected 4, got 3"
    ):
        jaxrnn.rnn_step_forward(X[:, 0, :3], H0, WX, WH, B)
    with pytest.raises(ValueError, match=r"prev_h.shape\[0\] must equal x.shape\[0\]"):
        jaxrnn.rnn_step_forward(X[:, 0], H0[:1], WX, WH, B)
    with pytest.raises(ValueError, match=r"x must be 2-D with shape \(N, D\)"):
        jaxrnn.rnn_step_forward(X, H0, WX, WH, B)
    with pytest.raises(ValueError, match=r"unknown activation"):
        jaxrnn.rnn_step_forward(X[:, 0], H0, WX, WH, B, activation="Tanh")


def test_backward_errors():
    h, cache = jaxrnn.rnn_forward(X, H0, WX, WH, B)
    with pytest.raises(
        ValueError,
        match=r"dh must have the shape of the cached h. Expected \(2, 3, 5\), got \(2, 2, 5\)",
    ):
        jaxrnn.rnn_backward(h[:, :2], cache)
    with pytest.raises(TypeError, match=r"dh must have the dtype.*float64, got float32"):
        jaxrnn.rnn_backward(h.astype(jnp.float32), cache)
    next_h, step_cache = jaxrnn.rnn_step_forward(X[:, 0], H0, WX, WH, B)
    with pytest.raises(ValueError, match=r"dnext_h must have the shape of next_h"):
        jaxrnn.rnn_step_backward(next_h[:1], step_cache)


def test_init_params_errors():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"H must be a positive int, got 0"):
        jaxrnn.init_params(key, 3, 0)
    with pytest.raises(TypeError, match=r"dtype must be floating"):
        jaxrnn.init_params(key, 3, 2, jnp.int32)


def test_none_argument():
    with pytest.raises(TypeError, match=r"h0 must be an array, got None"):
        call(jaxrnn.rnn_forward, h0=None)
