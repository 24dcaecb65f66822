"""Forward mode (MATH.md §11): the tangent recurrence of every cell against ``jax.jvp`` of
the naive scans, forward-mode transformations (``jvp``, ``jacfwd``, ``linearize``,
``hessian``) through ``jaxrnn.rnn``/``lstm``/``gru``, a bidirectional layer and
``model.loss``, and the mechanism: which hand rule runs in each mode.

Problems come from ``test_cells``' pool and factory (the same shapes, T = 0 and N = 0
included), so each jitted function compiles at most once per pool entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_close, bad, check_raises, random_model, spy_on_backward
from hypothesis import given
from hypothesis import strategies as st
from test_cells import LAYER, SCAN, Problem, examples, make, problems

import jaxrnn
import jaxrnn._primitive as primitive
import jaxrnn.testing
from jaxrnn import model
from jaxrnn._primitive import FORWARD_MODE

CELLS = jaxrnn.CELLS
JVP = {"rnn": jaxrnn.rnn_jvp, "lstm": jaxrnn.lstm_jvp, "gru": jaxrnn.gru_jvp}
needs_hijax = pytest.mark.skipif(not FORWARD_MODE, reason="jax without hijax: reverse mode only")
OPTIONS = st.sampled_from(
    (
        dict(),
        dict(lengths=True),
        dict(truncation=2),
        dict(carry_weights=True),
        dict(lengths=True, truncation=3, checkpoint=2),
        dict(lengths=True, carry_weights=True),
    )
)


def draw_options(data, q: Problem, options: dict) -> dict:
    """Concrete options for ``q``: lengths among 0, T // 2 and T; ξ uniform on [0, 2]."""
    N, T = q.x.shape[:2]
    opts = dict(options)
    if opts.pop("lengths", False):
        values = st.lists(st.sampled_from((0, T, T // 2)), min_size=N, max_size=N)
        opts["lengths"] = np.asarray(data.draw(values), np.int32)
    if opts.pop("carry_weights", False):
        opts["carry_weights"] = np.random.default_rng(T).uniform(0, 2, T)
    return opts


def tangents_of(q: Problem, seed: int):
    """Random tangents of ``(x, state0, *params)``, each with its primal's shape."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(a.dtype), (q.x, q.s0, *q.p))


def scan_jvp(q: Problem, tangents, **opts):
    """The oracle: ``jax.jvp`` of the naive scan (autodiff, no hand rule)."""
    opts.pop("checkpoint", None)

    def f(x, s0, *p):
        return SCAN[q.cell](x, s0, *p, activation=q.act, return_state=True, **opts)

    return jax.jvp(f, (q.x, q.s0, *q.p), tangents)


@examples(10)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), options=OPTIONS)
def test_tangent_recurrence_equals_jvp_of_scan(cell, data, options):
    """``*_jvp`` (§11, one engine loop) == ``jax.jvp`` of the naive scan, outputs and final
    state, with lengths (0 and T included), truncation, ξ and checkpoint."""
    q = data.draw(problems(cell))
    opts = draw_options(data, q, options)
    t = tangents_of(q, data.draw(st.integers(0, 2**16)))
    got = JVP[cell]((q.x, q.s0, *q.p), t, activation=q.act, return_state=True, **opts)
    assert_tree_close(got, scan_jvp(q, t, **opts), what=f"{cell} {options}", tol=1e-12)


@needs_hijax
@examples(4)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), with_lengths=st.booleans())
def test_jacfwd_through_layer_equals_jacrev(cell, data, with_lengths):
    """``jax.jacfwd`` (the tangent recurrence) == ``jax.jacrev`` (the hand BPTT) of the
    layer's outputs and final state in every input, and both == the scan's Jacobian."""
    q = data.draw(problems(cell, shapes=((1, 1, 1, 1), (2, 0, 3, 2), (2, 5, 3, 2))))
    opts = draw_options(data, q, dict(lengths=with_lengths))

    def f(fn):
        return lambda x, s0, p: fn(x, s0, *p, activation=q.act, return_state=True, **opts)

    fwd = jax.jacfwd(f(LAYER[cell]), argnums=(0, 1, 2))(*q.args)
    rev = jax.jacrev(f(LAYER[cell]), argnums=(0, 1, 2))(*q.args)
    want = jax.jacrev(f(SCAN[cell]), argnums=(0, 1, 2))(*q.args)
    assert_tree_close(fwd, rev, what=f"{cell} jacfwd vs jacrev", tol=1e-12)
    assert_tree_close(fwd, want, what=f"{cell} jacfwd vs scan", tol=1e-12)


def scalar_loss(cell, fn, q: Problem, lengths=None):
    """A loss of the outputs and the final state's ``h``, as a function of the weights."""

    def loss(p):
        h, sT = fn(q.x, q.s0, *p, activation=q.act, lengths=lengths, return_state=True)
        return jnp.sum(jnp.sin(h) * q.dh) + jnp.sum(jax.tree.leaves(sT)[0] ** 2)

    return loss


@needs_hijax
@pytest.mark.parametrize("cell", CELLS)
def test_linearize_and_hessian_equal_the_scan(cell):
    """``jax.linearize`` and ``jax.hessian`` (forward over the hand BPTT) of a loss through
    the layer == the same of the naive scan, with lengths."""
    q = make(cell, (2, 5, 3, 2), seed=3)
    lengths = np.array([5, 2], np.int32)
    ours, ref = (scalar_loss(cell, fn, q, lengths) for fn in (LAYER[cell], SCAN[cell]))
    v = jax.tree.map(np.ones_like, q.p)
    assert_tree_close(jax.linearize(ours, q.p)[1](v), jax.linearize(ref, q.p)[1](v), tol=1e-12)
    assert_tree_close(jax.hessian(ours)(q.p), jax.hessian(ref)(q.p), what="hessian", tol=1e-12)


@needs_hijax
def test_forward_mode_through_a_bidirectional_layer_and_the_model_loss():
    """``jax.jvp`` through a bidirectional structured layer and through
    ``model.loss(grad="hand")`` == the same through the naive scans."""
    rng = np.random.default_rng(0)
    params = random_model(rng, vocab=5, hidden_sizes=(3, 2), K=4, bidirectional=True)
    tokens, targets = rng.integers(0, 5, (2, 6)), rng.integers(0, 4, (2, 6))
    lengths = np.array([6, 3], np.int32)
    v = jax.tree.map(lambda a: rng.standard_normal(a.shape), params)

    def loss(grad):
        return lambda p: model.loss(p, tokens, targets, lengths=lengths, grad=grad)[0]

    got, want = (jax.jvp(loss(g), (params,), (v,)) for g in ("hand", "autodiff"))
    assert_tree_close(got, want, what="model.loss jvp", tol=1e-12)
    layer = params.layers[0]  # BiRNNParams: the dot-product test <J v, u> == <v, J^T u>
    x, s0 = rng.standard_normal((2, 6, 3)), (np.zeros((2, 3)), np.zeros((2, 3)))

    def f(p):
        return jaxrnn._stack.structured_layer(x, s0, p, lengths, dict(return_state=True))

    vl = jax.tree.map(lambda a: rng.standard_normal(a.shape), layer)
    out, jv = jax.jvp(f, (layer,), (vl,))  # the tangent recurrence, both directions
    u = jax.tree.map(lambda a: rng.standard_normal(a.shape), out)
    (jtu,) = jax.vjp(f, layer)[1](u)  # the hand BPTT

    def dot(a, b):
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return sum(float(jnp.vdot(p, q)) for p, q in pairs)

    assert abs(dot(jv, u) - dot(vl, jtu)) <= 1e-12 * max(1.0, abs(dot(jv, u)))


def spy_on_tangent(monkeypatch) -> list:
    """Counts the runs of the tangent recurrence behind the layers (``_primitive``'s
    ``tangent_forward``) at run time, as :func:`helpers.spy_on_backward` does for BPTT."""
    real, calls = primitive.tangent_forward, []

    def spy(kind, *args, **kw):
        jax.debug.callback(lambda: calls.append(kind.name))
        return real(kind, *args, **kw)

    monkeypatch.setattr(primitive, "tangent_forward", spy)
    jax.clear_caches()
    return calls


MODES = {  # the transformation and the rule that must run: "bptt", "tangent" or both
    "grad": (lambda f, p: jax.grad(f)(p), {"bptt"}),
    "jacrev": (lambda f, p: jax.jacrev(f)(p), {"bptt"}),
    "jvp": (lambda f, p: jax.jvp(f, (p,), (p,)), {"tangent"}),
    "jacfwd": (lambda f, p: jax.jacfwd(f)(p), {"tangent"}),
    "linearize": (lambda f, p: jax.linearize(f, p)[1](p), {"tangent"}),
    "hessian": (lambda f, p: jax.hessian(f)(p), {"bptt"}),  # forward over the hand BPTT
    "jit(grad)": (lambda f, p: jax.jit(jax.grad(f))(p), {"bptt"}),
}


@needs_hijax
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", CELLS)
def test_which_rule_runs_in_each_mode(monkeypatch, cell, mode):
    """Reverse mode runs the hand BPTT and never the tangent recurrence; forward mode runs
    the tangent recurrence and never the BPTT; ``jax.hessian`` (forward over reverse) runs
    the BPTT, its forward derivative taken by jax."""
    q = make(cell, (2, 4, 3, 2), seed=1)
    bptt, tangent = spy_on_backward(monkeypatch), spy_on_tangent(monkeypatch)
    transform, expected = MODES[mode]
    jax.block_until_ready(transform(scalar_loss(cell, LAYER[cell], q), q.p))
    ran = {name for name, calls in (("bptt", bptt), ("tangent", tangent)) if calls}
    assert ran == expected, f"{cell} {mode}: ran {ran or 'nothing'}, expected {expected}"


def _q():
    return make("rnn", (2, 3, 2, 2), seed=0)


def _t(**change):
    q = _q()
    t = list(tangents_of(q, 0))
    for i, v in change.items():
        t[int(i[1:])] = v
    return tuple(t)


BAD = [
    bad("tangents-not-a-tuple", lambda: jaxrnn.rnn_jvp((_q().x, _q().s0, *_q().p), _q().x),
        TypeError, r"rnn_jvp: tangents must be a tuple \(x, state0, Wx, Wh, b\)"),
    bad("primals-too-short", lambda: jaxrnn.rnn_jvp((_q().x, _q().s0), _t()), TypeError,
        r"rnn_jvp: primals must be a tuple .*got 2"),
    bad("tangent-x-shape", lambda: jaxrnn.rnn_jvp((_q().x, _q().s0, *_q().p),
                                                  _t(a0=np.zeros((2, 2, 2)))),
        ValueError, r"rnn_jvp: each tangent must have its primal's shape.*\(2, 3, 2\)"),
    bad("tangent-dtype", lambda: jaxrnn.rnn_jvp((_q().x, _q().s0, *_q().p),
                                                _t(a2=np.zeros((2, 2), np.float32))),
        TypeError, r"rnn_jvp: all arrays must share one float dtype"),
    bad("lstm-activation", lambda: jaxrnn.lstm_jvp(
        (make("lstm", (1, 1, 1, 1), 0).x, make("lstm", (1, 1, 1, 1), 0).s0,
         *make("lstm", (1, 1, 1, 1), 0).p), tangents_of(make("lstm", (1, 1, 1, 1), 0), 0),
        activation="relu"), ValueError, r"lstm_jvp"),
    bad("lengths-out-of-range", lambda: jaxrnn.rnn_jvp((_q().x, _q().s0, *_q().p), _t(),
                                                       lengths=np.array([4, 1])),
        ValueError, r"rnn_jvp: lengths"),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)


# --- jaxrnn.testing.check_jvp: a user's forward mode against jax.jvp ------------------------


def _rnn_cell(p, h, x_t):
    return jnp.tanh(x_t @ p[0] + h @ p[1] + p[2][None])


def _jvp_by_jaxrnn(x, h0, p, dx, dh0, dp):
    return jaxrnn.rnn_jvp((x, h0, *p), (dx, dh0, *dp))


def _jvp_forgetting_dWh_from_t3(x, h0, p, dx, dh0, dp):
    """A wrong tangent recurrence: the ``h_{t-1} Ẇh`` term is lost from step 3 on."""
    h, dh = _jvp_by_jaxrnn(x, h0, p, dx, dh0, dp)
    _, dh_wrong = _jvp_by_jaxrnn(x, h0, p, dx, dh0, (dp[0], 0 * dp[1], dp[2]))
    late = (jnp.arange(x.shape[1]) >= 3)[None, :, None]
    return h, jnp.where(late, dh_wrong, dh)


JVP_CHECK = dict(params=(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros(3)), state=np.zeros(3),
                 input_size=2, max_examples=3)  # fmt: skip


def test_check_jvp_passes_the_tangent_recurrence():
    jaxrnn.testing.check_jvp(_rnn_cell, _jvp_by_jaxrnn, **JVP_CHECK)


def test_check_jvp_names_the_first_wrong_step():
    with pytest.raises(AssertionError, match=r"dy is right for the first 3 of \d+ steps"):
        jaxrnn.testing.check_jvp(_rnn_cell, _jvp_forgetting_dWh_from_t3, **JVP_CHECK)


def test_without_hijax_the_layer_keeps_its_custom_vjp(monkeypatch):
    """Where jax lacks hijax (``FORWARD_MODE`` False, e.g. jax 0.4.30) reverse mode is the
    same hand BPTT, ``jax.jvp`` raises jax's custom_vjp error, ``rnn_jvp`` still works."""
    monkeypatch.setattr(jaxrnn._layer, "FORWARD_MODE", False)
    jax.clear_caches()
    q = make("rnn", (2, 4, 3, 2), seed=2)
    loss, ref = scalar_loss("rnn", jaxrnn.rnn, q), scalar_loss("rnn", SCAN["rnn"], q)
    assert_tree_close(jax.grad(loss)(q.p), jax.grad(ref)(q.p), what="custom_vjp grad")
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(loss, (q.p,), (q.p,))
    t = tangents_of(q, 0)
    got = jaxrnn.rnn_jvp((q.x, q.s0, *q.p), t, activation=q.act, return_state=True)
    assert_tree_close(got, scan_jvp(q, t), what="rnn_jvp", tol=1e-12)
    jax.clear_caches()
