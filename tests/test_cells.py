"""The correctness contract of MATH.md §7 for every cell: the vanilla RNN (§1-§5), the
LSTM (§9) and the GRU (§10).

Every property runs for the three cells through one adapter: a problem is
``(x, state0, params, dh)`` with ``state0 = h0`` for the RNN and GRU and ``(h0, c0)`` for
the LSTM, and gradients are ``(dx, dstate0, dparams)`` in those structures. The classic
functions (``*_forward``/``*_backward``) start the LSTM from ``c0 = 0`` and return
``dh0`` only (:func:`classic_part` cuts an oracle's gradients down to that); the
structured form (``jaxrnn.rnn``/``lstm``/``gru``) takes the whole state, returns the
final state and differentiates both. The oracles: ``jax.vjp`` of the naive ``lax.scan``
(``jaxrnn.reference.scan_*``), central finite differences, the numpy loops of
``jaxrnn.reference``, and torch. Shapes come from one fixed pool (T = 0 and N = 0
included), so each jitted function compiles at most once per pool entry, dtype and
activation (the RNN's four; the gated cells take ``"tanh"`` only).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import lstm_numpy
import numpy as np
import pytest
from helpers import TOL, assert_tree_close, bad, check_raises, rel_err
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import _recurrence as rec
from jaxrnn import reference
from jaxrnn._cells import KINDS
from jaxrnn._layer import forward_layer
from jaxrnn.testing import check_bptt
from jaxrnn.testing import strategies as rs

CELLS = jaxrnn.CELLS
KIND = {k.name: k for k in KINDS}
CLASSIC = {c: (getattr(jaxrnn, f"{c}_forward"), getattr(jaxrnn, f"{c}_backward")) for c in CELLS}
STEP = {c: (getattr(jaxrnn, f"{c}_step_forward"), getattr(jaxrnn, f"{c}_step_backward"))
        for c in CELLS}  # fmt: skip
LAYER = {"rnn": jaxrnn.rnn, "lstm": jaxrnn.lstm, "gru": jaxrnn.gru}
SCAN = {"rnn": reference.scan_rnn, "lstm": reference.scan_lstm, "gru": reference.scan_gru}
# (N, T, D, H): the edges (N = 0, T = 0, all ones), D != H both ways, a long one
SHAPES = ((1, 1, 1, 1), (2, 0, 3, 2), (0, 3, 2, 3), (2, 5, 3, 2), (3, 8, 2, 4), (2, 12, 4, 3))
BOTH = (np.float32, np.float64)
# float32: hand BPTT and autodiff sum the same terms in different orders (weight gradients
# as one matmul over N*T rows vs per-step sums; σ and tanh rounding differ per gate), so
# they differ by rounding: measured worst case 5.0e-7 (LSTM) and 3.4e-7 (GRU) relative
# over the pool x 15 seeds (float64: 1.0e-15); the tolerance is helpers.TOL (float32
# 2e-5, float64 1e-10). A wrong term is off by O(1e-1).


def examples(n: int) -> settings:
    """``n`` examples per property under the ``ci`` profile (30), scaled with the profile
    in use (``dev`` 20, ``thorough`` 500), so a soak runs every property longer."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 30))


class Problem(NamedTuple):
    """One problem of one cell; ``s0`` is the cell's state pytree, ``p`` its weights."""

    cell: str
    act: str
    x: np.ndarray  # (N, T, D)
    s0: Any  # h0 (N, H), or (h0, c0)
    p: tuple  # (Wx, Wh, b) or (Wx, Wh, bx, bh)
    dh: np.ndarray  # (N, T, H) upstream gradient of h
    dsT: Any  # upstream gradient of the final state, the structure of s0

    @property
    def args(self) -> tuple:
        return self.x, self.s0, self.p


def make(cell, shape, seed, dtype=np.float64, act="tanh", c0=True) -> Problem:
    """A :class:`Problem` from ``shape`` and ``seed``. The RNN: ``rs.make_problem``'s draws
    (weights Normal(0, 1/fan_in), b Normal(0, 0.1^2), h0 Normal(0, 0.5^2)); gated cells:
    the same weights, biases Normal(0, 0.5^2) (LSTM forget block + 1, so δc travels),
    states Normal(0, 0.5^2). ``c0=False``: the LSTM's c0 is zero (the classic start)."""
    N, T, D, H = shape
    if cell == "rnn":
        q = rs.make_problem(rs.Shape(*shape), seed, act, dtype)
        s0, p, dh = q.h0, (q.Wx, q.Wh, q.b), q.dh
        x, dsT = q.x, np.random.default_rng(seed + 1).standard_normal((N, H))
    else:
        rng = np.random.default_rng(seed)
        G = KIND[cell].gates
        x = rng.standard_normal((N, T, D))
        h0 = 0.5 * rng.standard_normal((N, H))
        Wx = rng.standard_normal((D, G * H)) / np.sqrt(D)
        Wh = rng.standard_normal((H, G * H)) / np.sqrt(H)
        if cell == "lstm":
            b = 0.5 * rng.standard_normal(4 * H) + np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)]
            c = 0.5 * rng.standard_normal((N, H))
            s0, p = (h0, c), (Wx, Wh, b)
        else:
            s0, p = h0, (Wx, Wh, 0.5 * rng.standard_normal(3 * H), 0.5 * rng.standard_normal(3 * H))
        dh = rng.standard_normal((N, T, H))
        dsT = jax.tree.map(lambda a: rng.standard_normal(a.shape), s0)
    x, s0, p, dh, dsT = jax.tree.map(lambda a: np.asarray(a, dtype), (x, s0, p, dh, dsT))
    q = Problem(cell, act, x, s0, p, dh, dsT)
    return q if c0 else zero_c0(q)


def zero_c0(q: Problem) -> Problem:
    """``q`` with the LSTM's ``c0`` zero: where the classic functions start."""
    return q._replace(s0=(q.s0[0], np.zeros_like(q.s0[1]))) if q.cell == "lstm" else q


def acts(cell):
    """The activations a cell takes: the RNN's four, the gated cells' "tanh"."""
    return rs.activations if cell == "rnn" else st.just("tanh")


def problems(cell, shapes=SHAPES, dtypes=(np.float64,), c0=True):
    """A strategy of :class:`Problem` of ``cell``: a pool shape, a seed, a dtype and (the
    RNN only) an activation."""
    return st.builds(make, st.just(cell), st.sampled_from(shapes), rs.seeds,
                     st.sampled_from(dtypes), acts(cell), st.just(c0))  # fmt: skip


def h_part(cell, state):
    """The ``h`` part of a state pytree (or of its gradient)."""
    return KIND[cell].h(state)


def classic_part(cell, grads):
    """``(dx, dstate0, dparams)`` -> ``(dx, dh0, dparams)``: what the classic functions give."""
    dx, ds0, dp = grads
    return dx, h_part(cell, ds0), dp


def act_kw(cell, act):
    return dict(activation=act) if cell == "rnn" else {}


def classic(q: Problem, **opts):
    """``(h, (dx, dh0, dparams))`` by ``*_forward`` then ``*_backward`` from ``h0`` (the
    LSTM's ``c0`` must be zero: the classic functions start there)."""
    fwd, bwd = CLASSIC[q.cell]
    h, cache = fwd(q.x, h_part(q.cell, q.s0), *q.p, **act_kw(q.cell, q.act), **opts)
    dx, dh0, *dp = bwd(q.dh, cache)
    return h, (dx, dh0, tuple(dp))


def _dot(a, b):
    """``<a, b>`` summed over every leaf of two pytrees of one structure."""
    return sum((u * v).sum() for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@partial(jax.jit, static_argnames=("cell", "act", "truncation"))
def autodiff(cell, act, x, s0, p, dh, dsT=None, lengths=None, truncation=None,
             carry_weights=None):  # fmt: skip
    """The oracle: ``jax.vjp`` of the naive scan (``return_state=True``) for the cotangents
    ``dh`` of ``h`` and ``dsT`` of the final state (None: zero). Returns
    ``(h, state_T, (dx, dstate0, dparams))``."""
    opts = dict(lengths=lengths, truncation=truncation, carry_weights=carry_weights)

    def f(x, s0, p):
        return SCAN[cell](x, s0, *p, activation=act, return_state=True, **opts)

    (h, sT), vjp = jax.vjp(f, x, s0, p)
    dsT = jax.tree.map(jnp.zeros_like, sT) if dsT is None else dsT
    return h, sT, vjp((dh, dsT))


@partial(jax.jit, static_argnames=("cell", "act", "truncation", "checkpoint"))
def structured(cell, act, x, s0, p, dh, dsT=None, lengths=None, truncation=None,
               checkpoint=None, carry_weights=None):  # fmt: skip
    """``jax.grad`` of ``<dh, h> + <dsT, state_T>`` through ``jaxrnn.<cell>`` (the custom_vjp,
    i.e. the hand BPTT); ``dsT=None``: of ``<dh, h>`` with ``return_state=False``.
    Returns ``(h, state_T or None, (dx, dstate0, dparams))``."""
    kw = dict(activation=act, lengths=lengths, truncation=truncation, checkpoint=checkpoint,
              carry_weights=carry_weights)  # fmt: skip

    def loss(x, s0, p):
        if dsT is None:
            h = LAYER[cell](x, s0, *p, **kw)
            return (h * dh).sum(), (h, None)
        h, sT = LAYER[cell](x, s0, *p, return_state=True, **kw)
        return (h * dh).sum() + _dot(sT, dsT), (h, sT)

    grads, (h, sT) = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(x, s0, p)
    return h, sT, grads


def run(fn, q: Problem, final=False, **opts):
    """``fn`` (:func:`autodiff` or :func:`structured`) on ``q``, with the loss of the
    final state when ``final``."""
    return fn(q.cell, q.act, *q.args, q.dh, q.dsT if final else None, **opts)


# --- (a)-(e): hand == autodiff, step functions, numpy, jit, vmap, finite differences ------


@examples(30)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_hand_equals_autodiff(cell, data):
    """(a) hand BPTT (the classic forward then backward) == jax.vjp of the naive lax.scan."""
    q = data.draw(problems(cell, dtypes=BOTH, c0=False))
    h, grads = classic(q)
    h_ad, _, grads_ad = run(autodiff, q)
    assert h.dtype == q.x.dtype and h.shape == q.dh.shape
    assert rel_err(h, h_ad) <= TOL[h.dtype]
    assert_tree_close(grads, classic_part(cell, grads_ad), q.x.dtype, what=cell)
    inputs = (q.x, h_part(cell, q.s0), q.p)
    for g, a in zip(jax.tree.leaves(grads), jax.tree.leaves(inputs), strict=True):
        assert g.shape == a.shape and g.dtype == a.dtype


@examples(30)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_grad_through_custom_vjp_equals_autodiff(cell, data):
    """(b) jax.grad through rnn/lstm/gru (custom_vjp -> hand BPTT) == autodiff, incl. dc0."""
    q = data.draw(problems(cell, dtypes=BOTH))
    h, _, grads = run(structured, q)
    h_ad, _, grads_ad = run(autodiff, q)
    assert rel_err(h, h_ad) <= TOL[h.dtype]
    assert_tree_close(grads, grads_ad, q.x.dtype, what=cell)


@examples(12)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), with_lengths=st.booleans())
def test_return_state_and_its_gradient_equal_the_scan(cell, data, with_lengths):
    """return_state=True: ``h`` and the final state (``h_T``, or ``(h_T, c_T)``; the last
    valid step's under lengths) == the naive scan's, and jax.grad of a loss of ``h`` and of
    the final state == autodiff of the scan in x, state0 (h0 and c0) and every weight."""
    q = data.draw(problems(cell))
    N, T = q.x.shape[:2]
    lengths = data.draw(rs.lengths(N, T)) if with_lengths else None
    h, sT, grads = run(structured, q, final=True, lengths=lengths)
    h_ad, sT_ad, grads_ad = run(autodiff, q, final=True, lengths=lengths)
    assert jax.tree.structure(sT) == jax.tree.structure(q.s0)
    assert_tree_close((h, sT), (h_ad, sT_ad), what=f"{cell} forward", tol=1e-12)
    assert_tree_close(grads, grads_ad, what=f"{cell} gradients", tol=1e-12)
    if lengths is not None:  # the state after each row's last valid step (h0 for length 0)
        hT, rows, valid = np.asarray(h_part(cell, sT)), np.arange(N), lengths > 0
        last = np.asarray(h)[rows[valid], lengths[valid] - 1]
        assert rel_err(hT[valid], last) <= 1e-15
        assert rel_err(hT[~valid], h_part(cell, q.s0)[~valid]) == 0


def step_loop(q: Problem):
    """The step functions in a Python loop from ``q.s0``: ``(h, (dx, dstate0, dparams))``."""
    fwd, bwd = STEP[q.cell]
    T = q.x.shape[1]
    state, hs, caches = list(jax.tree.leaves(q.s0)), [], []
    for t in range(T):
        *state, c = fwd(q.x[:, t], *state, *q.p, **act_kw(q.cell, q.act))
        hs.append(state[0])
        caches.append(c)
    dstate = [jnp.zeros_like(s) for s in state]
    dx, dp = [None] * T, [jnp.zeros_like(a) for a in q.p]
    for t in reversed(range(T)):
        dstate[0] = dstate[0] + q.dh[:, t]
        dx[t], *rest = bwd(*dstate, caches[t])
        dstate, dp_t = rest[: len(dstate)], rest[len(dstate) :]
        dp = [a + g for a, g in zip(dp, dp_t, strict=True)]
    dx = jnp.stack(dx, axis=1) if T else jnp.zeros_like(q.x)
    h = jnp.stack(hs, axis=1) if T else jnp.zeros_like(q.dh)
    ds0 = jax.tree.unflatten(jax.tree.structure(q.s0), dstate)
    return h, (dx, ds0, tuple(dp))


@examples(8)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), form=st.sampled_from(("classic", "structured")))
def test_step_functions_compose_into_sequence(cell, data, form):
    """(c) the step functions in a loop == the sequence functions (§7.4): the classic ones
    (the LSTM from c0 = 0), or the structured form from any state (dc0 included)."""
    q = data.draw(problems(cell, SHAPES[:5], c0=form == "structured"))
    h, grads = step_loop(q)
    if form == "classic":
        h_seq, grads_seq = classic(q)
        grads = classic_part(cell, grads)
    else:
        h_seq, _, grads_seq = run(structured, q)
    assert rel_err(h, h_seq) <= 1e-12
    assert_tree_close(grads, grads_seq, what=f"{cell} {form}")


def numpy_reference(q: Problem):
    """``(h, (dx, dstate0, dparams))`` by the numpy loops of :mod:`jaxrnn.reference` (whose
    LSTM backward gives no dc0: that one comes from the numpy LSTM of ``lstm_numpy``)."""
    x, s0, p, dh = q.x, q.s0, q.p, q.dh
    if q.cell == "rnn":
        h, cache = reference.rnn_forward(x, s0, *p, activation=q.act)
        dx, ds0, *dp = reference.rnn_backward(dh, cache)
    elif q.cell == "gru":
        h, cache = reference.gru_forward(x, s0, *p)
        dx, ds0, *dp = reference.gru_backward(dh, cache)
    else:
        h, cache = reference.lstm_forward(x, s0[0], *p, c0=s0[1])
        dx, dh0, *dp = reference.lstm_backward(dh, cache)
        dc0 = np.zeros_like(s0[1])  # T = 0 (lstm_numpy needs a step)
        if x.shape[1]:
            _, (_, dc0), _ = lstm_numpy.lstm_backward(dh, lstm_numpy.lstm_forward(x, s0, p)[1])
        ds0 = (dh0, dc0)
    return h, (dx, ds0, tuple(dp))


@examples(30)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), form=st.sampled_from(("classic", "structured")))
def test_numpy_reference_matches(cell, data, form):
    """The numpy loops of jaxrnn.reference (a third oracle) == the JAX hand BPTT, by the
    classic functions (the LSTM from c0 = 0) or the structured form (any c0)."""
    q = data.draw(problems(cell, dtypes=BOTH, c0=form == "structured"))
    h_np, want = numpy_reference(q)
    if form == "classic":
        h, grads = classic(q)
        want = classic_part(cell, want)
    else:
        h, _, grads = run(structured, q)
    assert rel_err(h, h_np) <= TOL[h.dtype]
    assert_tree_close(grads, want, q.x.dtype, what=f"{cell} {form}")


@examples(4)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_jit_equals_eager(cell, data):
    """(d) the jit-compiled functions == the same code run op by op."""
    q = data.draw(problems(cell, SHAPES[1:5], c0=False))
    h, grads = classic(q)
    with jax.disable_jit():
        h_e, grads_e = classic(q)
        _, _, grads_cv = run(structured, q)
    assert rel_err(h, h_e) <= 1e-12
    assert_tree_close(grads_e, grads, what="eager")
    assert_tree_close(classic_part(cell, grads_cv), grads, what="eager custom_vjp")


@examples(6)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), shape=st.sampled_from(((1, 3, 2, 3), (2, 0, 2, 3))), seed=rs.seeds,
       B=st.sampled_from((1, 3)))  # fmt: skip
def test_vmap_equals_loop(cell, data, shape, seed, B):
    """(e) vmap of the layer and of its gradient (of h and the final state) over an extra
    leading axis == a loop."""
    act = data.draw(acts(cell))
    qs = [make(cell, shape, seed + i, act=act) for i in range(B)]
    x, s0, p, dh, dsT = jax.tree.map(lambda *a: np.stack(a), *[q[2:] for q in qs])
    grad = partial(structured, cell, act)
    h_v = jax.vmap(lambda x, s0, p: LAYER[cell](x, s0, *p, activation=act))(x, s0, p)
    out_v = jax.vmap(grad)(x, s0, p, dh, dsT)
    for i, q in enumerate(qs):
        assert rel_err(h_v[i], LAYER[cell](q.x, q.s0, *q.p, activation=act)) <= 1e-12
        row = jax.tree.map(lambda a, i=i: a[i], out_v)
        assert_tree_close(row, grad(*q.args, q.dh, q.dsT), what=f"row {i}")


@examples(6)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_finite_differences(cell, data):
    """Central finite differences in float64 (jax.test_util.check_grads) on the hand path,
    of a loss of the outputs and of the final state."""
    q = data.draw(problems(cell, ((1, 2, 2, 2), (2, 5, 3, 2), (2, 1, 3, 4))))

    def loss(x, s0, p):
        h, sT = LAYER[cell](x, s0, *p, activation=q.act, return_state=True)
        return (h * q.dh).sum() + _dot(sT, q.dsT)

    check_grads(loss, q.args, order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


# --- Options: lengths, truncation, carry weights, checkpoint -------------------------------

OPTIONS = st.sampled_from(
    (
        dict(lengths=True),
        dict(truncation=1),
        dict(truncation=3),
        dict(checkpoint=1),
        dict(checkpoint=3),  # T = 5, 8 not divisible by 3
        dict(checkpoint=20),  # k > T
        dict(lengths=True, truncation=2, checkpoint=3),
        dict(carry_weights=True, truncation=4),
    )
)


@examples(12)
@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data(), options=OPTIONS)
def test_options_hand_equals_autodiff(cell, data, options):
    """lengths (0 and T included), truncation, checkpoint (k = 1, k > T, T not divisible
    by k) and carry weights, alone and together: hand (both paths; the structured one with
    a loss of the final state too) == the masked / stop-gradient naive scan."""
    q = data.draw(problems(cell))
    N, T = q.x.shape[:2]
    opts = dict(options)
    if opts.pop("lengths", False):
        opts["lengths"] = data.draw(st.lists(st.sampled_from((0, T, T // 2)), min_size=N,
                                             max_size=N).map(lambda v: np.asarray(v, np.int32)))  # fmt: skip
    if opts.pop("carry_weights", False):
        opts["carry_weights"] = np.random.default_rng(T).uniform(0, 2, T)
    k = opts.pop("checkpoint", None)
    q0 = zero_c0(q)._replace(dsT=jax.tree.map(np.zeros_like, q.dsT))  # the classic case
    h_ad, _, grads_ad = run(autodiff, q0, final=True, **opts)  # one compile for both calls
    h, grads = classic(q0, checkpoint=k, **opts)
    assert rel_err(h, h_ad) <= 1e-12
    assert_tree_close(grads, classic_part(cell, grads_ad), what=f"{cell} {options}")
    h_ad, sT_ad, grads_ad = run(autodiff, q, final=True, **opts)
    h_s, sT, got = run(structured, q, final=True, checkpoint=k, **opts)
    assert_tree_close((h_s, sT), (h_ad, sT_ad), what=f"{cell} {options} forward", tol=1e-12)
    assert_tree_close(got, grads_ad, what=f"{cell} {options} custom_vjp")
    if "lengths" in opts:  # padding: h is zero and x gets no gradient
        pad = np.arange(T)[None, :] >= opts["lengths"][:, None]
        assert not np.any(np.asarray(h)[pad]) and not np.any(np.asarray(grads[0])[pad])


@pytest.mark.parametrize("cell", CELLS)
def test_truncation_changes_the_gradient_and_t_gives_full(cell):
    """A cut changes dx before it; truncation = T is the full BPTT."""
    q = make(cell, (2, 8, 3, 4), 0, c0=False)
    _, full = classic(q)
    _, same = classic(q, truncation=8)
    _, cut = classic(q, truncation=4)
    assert_tree_close(same, full)
    assert rel_err(cut[0][:, :4], full[0][:, :4]) > 1e-3
    assert rel_err(cut[0][:, 4:], full[0][:, 4:]) <= 1e-12


# --- The state: a bare h0 for the LSTM, T = 0 -------------------------------------------------


@examples(8)
@given(data=st.data(), with_lengths=st.booleans())
def test_lstm_bare_h0_is_h0_and_zero_c0(data, with_lengths):
    """lstm(x, h0) == lstm(x, (h0, zeros)): outputs, final state and gradients (x, h0,
    weights); the classic lstm_forward caches that state and lstm_backward returns the
    same five gradients; the naive scan agrees."""
    q = data.draw(problems("lstm", c0=False))
    x, (h0, zeros), p = q.args
    N, T = x.shape[:2]
    lengths = data.draw(rs.lengths(N, T)) if with_lengths else None
    pair = (h0, zeros)
    h, sT, g_bare = structured("lstm", "tanh", x, h0, p, q.dh, q.dsT, lengths=lengths)
    h_pair, sT_pair, g_pair = structured("lstm", "tanh", x, pair, p, q.dh, q.dsT, lengths=lengths)
    assert_tree_close((h, sT), (h_pair, sT_pair), tol=0)
    assert_tree_close(g_bare, classic_part("lstm", g_pair), tol=1e-12)
    ad_bare = autodiff("lstm", "tanh", x, h0, p, q.dh, q.dsT, lengths=lengths)
    h_ad, sT_ad, g_ad = autodiff("lstm", "tanh", x, pair, p, q.dh, q.dsT, lengths=lengths)
    assert_tree_close(ad_bare, (h_ad, sT_ad, classic_part("lstm", g_ad)), tol=1e-12)
    h_c, cache = jaxrnn.lstm_forward(x, h0, *p, lengths=lengths)
    assert_tree_close((h_c, cache.state0), (h_pair, pair), tol=0)
    got = jaxrnn.lstm_backward(q.dh, cache)
    assert len(got) == 5
    _, _, want = structured("lstm", "tanh", x, pair, p, q.dh, lengths=lengths)
    dx, dh0, (dWx, dWh, db) = classic_part("lstm", want)
    assert_tree_close(got, (dx, dh0, dWx, dWh, db))


@pytest.mark.parametrize(
    "cell,act", [("rnn", a) for a in jaxrnn.ACTIVATIONS] + [("lstm", "tanh"), ("gru", "tanh")]
)
def test_value_and_grad_and_zero_length(cell, act):
    """value_and_grad composes; T = 0 gives an empty output, the initial state as the final
    state, and zero weight gradients (§7.3)."""
    q = make(cell, (2, 0, 3, 4), 0, act=act)

    def loss(x, s0, p):
        return LAYER[cell](x, s0, *p, activation=act).sum() + h_part(cell, s0).sum()

    val, (dx, ds0, dp) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(*q.args)
    assert LAYER[cell](*q.args[:2], *q.p, activation=act).shape == (2, 0, 4)
    assert float(val) == pytest.approx(float(h_part(cell, q.s0).sum()))
    assert dx.shape == q.x.shape
    assert np.all(h_part(cell, ds0) == 1.0)  # d(sum h0)/dh0 only: nothing from the output
    assert all(not np.any(g) for g in jax.tree.leaves(ds0)[1:])  # dc0
    for g, a in zip(dp, q.p, strict=True):
        assert g.shape == a.shape and not np.any(g)
    _, sT, (_, ds0, dp) = run(structured, q, final=True)
    assert_tree_close(sT, q.s0, tol=0)  # the final state of no step is the initial one
    assert_tree_close(ds0, q.dsT, tol=0)  # and its error goes straight to state0
    assert not any(np.any(g) for g in dp)


# --- dtype, the caches, the parameters ------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_float32_keeps_dtype_and_matches_float64(cell):
    """float32 inputs give float32 outputs that agree with float64 to float32 precision."""
    q64 = make(cell, (3, 8, 3, 4), 1, c0=False)
    q32 = make(cell, (3, 8, 3, 4), 1, np.float32, c0=False)
    h64, g64 = classic(q64)
    h32, g32 = classic(q32)
    assert h32.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(g32))
    assert rel_err(h32, h64) <= 1e-6
    assert_tree_close(g32, g64, np.float32)


@pytest.mark.parametrize("checkpoint", [None, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_cache_is_a_pytree_across_separate_jits(cell, checkpoint):
    """The cache leaves jit, can be stored (numpy leaves), and feeds a separately compiled
    backward; without checkpoint it holds x, the state and the weights once and the
    per-step buffers ``(N, T, <= G*H)``: no per-step weight copies."""
    act = "sigmoid" if cell == "rnn" else "tanh"
    q = make(cell, (2, 4, 3, 2), 2, act=act, c0=False)
    fwd, bwd = CLASSIC[cell]
    h0 = h_part(cell, q.s0)
    fwd_jit = jax.jit(lambda *a: fwd(*a, checkpoint=checkpoint, **act_kw(cell, act)))
    h, cache = fwd_jit(q.x, h0, *q.p)
    leaves, treedef = jax.tree_util.tree_flatten(cache)
    inputs = jax.tree.leaves((q.x, q.s0, q.p))
    if checkpoint is None:
        saved = jax.tree.leaves(cache.saved)
        assert len(leaves) == len(inputs) + len(saved)
        GH = KIND[cell].gates * 2  # H = 2
        assert all(a.shape[:2] == (2, 4) and a.ndim == 3 and a.shape[2] <= GH for a in saved)
        if cell == "rnn":  # exactly x, h0, Wx, Wh, b and h
            assert sum(leaf.size for leaf in leaves) == sum(a.size for a in inputs) + h.size
    rebuilt = jax.tree_util.tree_unflatten(treedef, [np.asarray(leaf) for leaf in leaves])
    assert (rebuilt.kind, rebuilt.activation, rebuilt.checkpoint) == (cell, act, checkpoint)
    _, _, want = run(autodiff, q)
    got = jax.jit(bwd)(jnp.asarray(q.dh), rebuilt)
    dx, dh0, *dp = got
    assert_tree_close((dx, dh0, tuple(dp)), classic_part(cell, want))


@pytest.mark.parametrize("act,fprime", [("tanh", 0.75), ("sigmoid", 0.25), ("relu", 1.0),
                                        ("identity", 1.0)])  # fmt: skip
def test_rnn_backward_uses_stored_output_not_forward(act, fprime):
    """The RNN's f' comes from the cached h (MATH.md §3): with the saved h replaced by 0.5,
    db is exactly f'(a) at h = 0.5 (tanh 1 - h^2, sigmoid h(1 - h), relu and identity 1)."""
    q = make("rnn", (1, 1, 1, 1), 3, act=act)
    h, cache = jaxrnn.rnn_forward(*q.args[:2], *q.p, activation=act)
    fake = dataclasses.replace(cache, saved=jnp.full_like(cache.saved, 0.5))
    db = jaxrnn.rnn_backward(jnp.ones_like(h), fake)[4]
    assert float(db[0]) == pytest.approx(fprime)


@pytest.mark.parametrize("cell", CELLS)
def test_init_params(cell):
    """Shapes, dtype (float32 unless asked), determinism, each gate's Wh block orthogonal,
    biases zero (the LSTM's forget block: forget_bias, 1 by default)."""
    kind, H = KIND[cell], 5
    GH = kind.gates * H
    init = getattr(jaxrnn, f"init_{cell}_params")
    p = init(jax.random.key(0), 3, H, jnp.float64)
    assert isinstance(p, kind.params)
    assert [a.shape for a in p] == [(3, GH), (H, GH)] + [(GH,)] * (len(p) - 2)
    assert all(a.dtype == jnp.float64 for a in p)
    assert init(jax.random.key(0), 3, H).Wx.dtype == jnp.float32
    again = init(jax.random.key(0), 3, H, jnp.float64)
    assert all(np.array_equal(a, b) for a, b in zip(p, again, strict=True))
    for k in range(kind.gates):
        blk = np.asarray(p.Wh[:, H * k : H * (k + 1)])
        np.testing.assert_allclose(blk.T @ blk, np.eye(H), atol=1e-12)
    biases = np.concatenate([np.asarray(b) for b in p[2:]])
    if cell == "lstm":
        assert np.all(p.b[H : 2 * H] == 1.0) and not np.any(p.b[:H]) and not np.any(p.b[2 * H :])
        assert init(jax.random.key(0), 2, 2, forget_bias=0.0).b.sum() == 0
    else:
        assert not np.any(biases)
    if cell == "rnn":  # init_params is the same function; a legacy uint32 key works too
        assert jaxrnn.init_params is jaxrnn.init_rnn_params
        legacy = jaxrnn.init_params(jax.random.PRNGKey(0), 3, H, jnp.float64)
        assert all(np.array_equal(a, b) for a, b in zip(p, legacy, strict=True))


# --- The classic signatures: fixed arity whatever the options ------------------------------

ARITY = {"rnn": (5, 2, 5), "lstm": (5, 3, 6), "gru": (6, 2, 6)}  # backward, step fwd, step bwd
ARITY_OPTIONS = {
    "none": {},
    "lengths": dict(lengths=[1, 3]),
    "truncation": dict(truncation=2),
    "checkpoint": dict(checkpoint="sqrt"),
    "carry_weights": dict(carry_weights=np.full(3, 0.5)),
    "all": dict(lengths=[0, 2], truncation=1, checkpoint=2, carry_weights=np.ones(3)),
}


@pytest.mark.parametrize("options", list(ARITY_OPTIONS))
@pytest.mark.parametrize("cell", CELLS)
def test_classic_arity_is_fixed(cell, options):
    """*_forward returns (h, cache) and *_backward its documented gradients (always five
    for the LSTM: no dc0), shaped like their inputs, whatever options are given."""
    q = make(cell, (2, 3, 4, 5), 0, c0=False)
    fwd, bwd = CLASSIC[cell]
    h0 = h_part(cell, q.s0)
    out = fwd(q.x, h0, *q.p, **ARITY_OPTIONS[options])
    assert len(out) == 2 and isinstance(out[1], jaxrnn.LayerCache)
    grads = bwd(q.dh, out[1])
    assert len(grads) == ARITY[cell][0]
    assert [g.shape for g in grads] == [a.shape for a in (q.x, h0, *q.p)]


@pytest.mark.parametrize("cell", CELLS)
def test_step_arity_is_fixed(cell):
    """*_step_forward returns (next state parts..., StepCache), *_step_backward
    (dx, dprev state parts..., dparams...), shaped like their inputs."""
    q = make(cell, (2, 3, 4, 5), 0)
    fwd, bwd = STEP[cell]
    state = jax.tree.leaves(q.s0)
    out = fwd(q.x[:, 0], *state, *q.p)
    assert len(out) == ARITY[cell][1] and isinstance(out[-1], jaxrnn.StepCache)
    grads = bwd(*state, out[-1])
    assert len(grads) == ARITY[cell][2]
    assert [g.shape for g in grads] == [a.shape for a in (q.x[:, 0], *state, *q.p)]


# --- Bad inputs: one case per test id ------------------------------------------------------

_x, (_h, _c), (_Wx, _Wh, _b), *_ = make("lstm", (2, 3, 4, 5), 0)[2:]
_gx, _gh, (_gWx, _gWh, _gbx, _gbh), *_ = make("gru", (2, 3, 4, 5), 0)[2:]
_rx, _rh, _rp, *_ = make("rnn", (2, 3, 4, 5), 0)[2:]
_ARGS = {"rnn": (_rx, _rh, *_rp), "lstm": (_x, _h, _Wx, _Wh, _b),
         "gru": (_gx, _gh, _gWx, _gWh, _gbx, _gbh)}  # fmt: skip


def _other_cache(fn, made_by, step=False):
    """``fn`` (a backward) fed the cache of the cell ``made_by``."""
    args = _ARGS[made_by]
    if step:
        fwd, bwd = STEP[made_by][0], getattr(jaxrnn, f"{fn}_step_backward")
        out = fwd(args[0][:, 0], *args[1:2], *([_c] if made_by == "lstm" else []), *args[2:])
        dnext = [_h] * (2 if fn == "lstm" else 1)
        return lambda: bwd(*dnext, out[-1])
    cache = CLASSIC[made_by][0](*args)[1]
    return lambda: CLASSIC[fn][1](np.zeros((2, 3, 5)), cache)


WRONG_CACHE = [
    bad(f"{fn}{'_step' if step else ''}_backward_given_{made_by}_cache",
        lambda fn=fn, made_by=made_by, step=step: _other_cache(fn, made_by, step)(), TypeError,
        rf"{fn}_{'step_' if step else ''}backward: cache comes from "
        rf"{made_by}_{'step_' if step else ''}forward \(the {made_by.upper()}\), not from "
        rf"{fn}_{'step_' if step else ''}forward")
    for step in (False, True) for fn in CELLS for made_by in CELLS if made_by != fn
]  # fmt: skip

BAD = WRONG_CACHE + [
    bad("rnn_backward_given_step_cache", lambda: jaxrnn.rnn_backward(
        np.zeros((2, 3, 5)), jaxrnn.rnn_step_forward(_rx[:, 0], _rh, *_rp)[1]), TypeError,
        r"rnn_backward: cache must be a LayerCache, got StepCache"),
    bad("gru_step_backward_given_layer_cache", lambda: jaxrnn.gru_step_backward(
        _gh, jaxrnn.gru_forward(*_ARGS["gru"])[1]), TypeError,
        r"gru_step_backward: cache must be a StepCache, got LayerCache"),
    bad("rnn_state_tuple", lambda: jaxrnn.rnn(_rx, (_rh,), *_rp), TypeError,
        r"rnn: state0 must be the array h0 \(N, H\), got a tuple of 1"),
    bad("gru_state_pair", lambda: jaxrnn.gru(_gx, (_gh, _gh), _gWx, _gWh, _gbx, _gbh), TypeError,
        r"gru: state0 must be the array h0 \(N, H\), got a tuple of 2"),
    bad("lstm_state_triple", lambda: jaxrnn.lstm(_x, (_h, _c, _c), _Wx, _Wh, _b), TypeError,
        r"lstm: state0 must be h0 or the pair \(h0, c0\), each \(N, H\), got a tuple of 3"),
    bad("lstm_state_single", lambda: jaxrnn.lstm(_x, [_h], _Wx, _Wh, _b), TypeError,
        r"lstm: state0 must be h0 or the pair \(h0, c0\), each \(N, H\), got a list of 1"),
    bad("lstm_activation", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, activation="relu"),
        ValueError, r"lstm: the LSTM's gates use sigmoid and tanh; activation applies to the "
        r"vanilla RNN only and must stay 'tanh' here, got 'relu'"),
    bad("gru_activation", lambda: jaxrnn.gru(*_ARGS["gru"], activation="identity"), ValueError,
        r"gru: the GRU's gates use sigmoid and tanh; .* got 'identity'"),
    bad("lstm_Wx_cols", lambda: jaxrnn.lstm(_x, _h, _Wx[:, :-1], _Wh, _b), ValueError,
        r"lstm: Wx.shape\[1\] must equal 4H = 4 \* Wh.shape\[0\]. Expected 20, got 19 "
        r"\(Wx: \(4, 19\), Wh: \(5, 20\)\)"),
    bad("lstm_Wh_cols", lambda: jaxrnn.lstm_forward(_x, _h, _Wx, _Wh[:, :15], _b), ValueError,
        r"lstm_forward: Wh.shape\[1\] must equal 4H = 4 \* Wh.shape\[0\]. Expected 20, got 15"),
    bad("lstm_b", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b[:5]), ValueError,
        r"b.shape\[0\] must equal 4H = 4 \* Wh.shape\[0\]. Expected 20, got 5 \(b: \(5,\), "
        r"Wh: \(5, 20\)\)"),
    bad("lstm_x_D", lambda: jaxrnn.lstm(_x[..., :3], _h, _Wx, _Wh, _b), ValueError,
        r"x.shape\[-1\] must equal Wx.shape\[0\] \(input size D\). Expected 4, got 3 "
        r"\(x: \(2, 3, 3\), Wx: \(4, 20\)\)"),
    bad("lstm_x_rank", lambda: jaxrnn.lstm(_x[0], _h, _Wx, _Wh, _b), ValueError,
        r"x must be 3-D with shape \(N, T, D\), got 2-D shape \(3, 4\)"),
    bad("lstm_c0_H", lambda: jaxrnn.lstm(_x, (_h, _c[:, :4]), _Wx, _Wh, _b), ValueError,
        r"c0.shape\[-1\] must equal the hidden size H = Wh.shape\[0\]. Expected 5, got 4 "
        r"\(c0: \(2, 4\), Wh: \(5, 20\)\)"),
    bad("lstm_c0_N", lambda: jaxrnn.lstm(_x, (_h, _c[:1]), _Wx, _Wh, _b), ValueError,
        r"lstm: c0.shape\[0\] must equal x.shape\[0\] \(batch size N\). Expected 2, got 1"),
    bad("lstm_h0_N", lambda: jaxrnn.lstm(_x, _h[:1], _Wx, _Wh, _b), ValueError,
        r"h0.shape\[0\] must equal x.shape\[0\] \(batch size N\)"),
    bad("lstm_dtype", lambda: jaxrnn.lstm(_x.astype(np.float32), _h, _Wx, _Wh, _b), TypeError,
        r"lstm: all arrays must share one float dtype, got x: float32, h0: float64"),
    bad("lstm_int", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, np.arange(20)), TypeError,
        r"b must have a floating dtype"),
    bad("lstm_lengths", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, lengths=[1, 4]), ValueError,
        r"lstm: lengths must lie in \[0, T\] = \[0, 3\], got min 1, max 4"),
    bad("lstm_truncation", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, truncation=0), ValueError,
        r"lstm: truncation must be None or a positive int"),
    bad("lstm_checkpoint", lambda: jaxrnn.lstm_forward(_x, _h, _Wx, _Wh, _b, checkpoint=-1),
        ValueError, r"lstm_forward: checkpoint must be None, a positive int"),
    bad("lstm_xi", lambda: jaxrnn.lstm(_x, _h, _Wx, _Wh, _b, carry_weights=np.ones(2)),
        ValueError, r"carry_weights must have shape \(T,\) = \(3,\)"),
    bad("lstm_dh", lambda: jaxrnn.lstm_backward(np.zeros((2, 3, 4)),
                                                jaxrnn.lstm_forward(_x, _h, _Wx, _Wh, _b)[1]),
        ValueError, r"lstm_backward: dh must have the shape of h. Expected \(2, 3, 5\), "
        r"got \(2, 3, 4\)"),
    bad("lstm_step_prev_c", lambda: jaxrnn.lstm_step_forward(_x[:, 0], _h, _c[:, :2], _Wx,
                                                             _Wh, _b),
        ValueError, r"lstm_step_forward: prev_c.shape\[-1\] must equal the hidden size H"),
    bad("lstm_step_dnext_c", lambda: jaxrnn.lstm_step_backward(
        _h, _h[:1], jaxrnn.lstm_step_forward(_x[:, 0], _h, _c, _Wx, _Wh, _b)[2]), ValueError,
        r"lstm_step_backward: dnext_c must have the shape of next_c. Expected \(2, 5\)"),
    bad("gru_Wx_cols", lambda: jaxrnn.gru(_gx, _gh, _gWx[:, :12], _gWh, _gbx, _gbh), ValueError,
        r"gru: Wx.shape\[1\] must equal 3H = 3 \* Wh.shape\[0\]. Expected 15, got 12 "
        r"\(Wx: \(4, 12\), Wh: \(5, 15\)\)"),
    bad("gru_Wh_square", lambda: jaxrnn.gru(_gx, _gh, _gWx, _gWh[:4], _gbx, _gbh), ValueError,
        r"gru: Wh.shape\[1\] must equal 3H = 3 \* Wh.shape\[0\]. Expected 12, got 15"),
    bad("gru_bh", lambda: jaxrnn.gru_forward(_gx, _gh, _gWx, _gWh, _gbx, _gbh[:-1]), ValueError,
        r"bh.shape\[0\] must equal 3H = 3 \* Wh.shape\[0\]. Expected 15, got 14 "
        r"\(bh: \(14,\), Wh: \(5, 15\)\)"),
    bad("gru_bx_rank", lambda: jaxrnn.gru(_gx, _gh, _gWx, _gWh, _gbx[None], _gbh), ValueError,
        r"bx must be 1-D with shape \(3H\), got 2-D shape \(1, 15\)"),
    bad("gru_h0_H", lambda: jaxrnn.gru(_gx, _gh[:, :3], _gWx, _gWh, _gbx, _gbh), ValueError,
        r"h0.shape\[-1\] must equal the hidden size H = Wh.shape\[0\]. Expected 5, got 3"),
    bad("gru_lengths_shape", lambda: jaxrnn.gru(_gx, _gh, _gWx, _gWh, _gbx, _gbh,
                                                lengths=[1, 2, 3]),
        ValueError, r"gru: lengths must have shape \(N,\) = \(2,\)"),
    bad("gru_none", lambda: jaxrnn.gru(_gx, None, _gWx, _gWh, _gbx, _gbh), TypeError,
        r"gru: h0 must be an array, got NoneType"),
    bad("gru_dh_dtype", lambda: jaxrnn.gru_backward(
        np.zeros((2, 3, 5), np.float32), jaxrnn.gru_forward(_gx, _gh, _gWx, _gWh, _gbx, _gbh)[1]),
        TypeError, r"gru_backward: dh must have the dtype of h. Expected float64, got float32"),
    bad("gru_step_x", lambda: jaxrnn.gru_step_forward(_gx, _gh, _gWx, _gWh, _gbx, _gbh),
        ValueError, r"gru_step_forward: x must be 2-D with shape \(N, D\)"),
    bad("init_params_H", lambda: jaxrnn.init_params(jax.random.key(0), 3, 0), ValueError,
        r"init_rnn_params: H must be a positive int, got 0"),
    bad("init_lstm_H", lambda: jaxrnn.init_lstm_params(jax.random.key(0), 3, 0), ValueError,
        r"init_lstm_params: H must be a positive int, got 0"),
    bad("init_gru_dtype", lambda: jaxrnn.init_gru_params(jax.random.key(0), 3, 2, np.int32),
        TypeError, r"init_gru_params: dtype must be float32 or float64"),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_inputs(call, exc, match):
    check_raises(call, exc, match)


# --- torch: the gate mapping ---------------------------------------------------------------


@pytest.mark.parametrize("cell,act", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"),
                                      ("gru", "tanh")])  # fmt: skip
def test_torch_single_layer_forward_and_gradients(cell, act):
    """torch nn.RNN (b = b_ih + b_hh), nn.LSTM (gates i, f, g, o; b = b_ih + b_hh) and
    nn.GRU (same layout as ours) in float64: h, the final state and every gradient agree,
    which pins the gate mapping."""
    torch = pytest.importorskip("torch")
    q = make(cell, (3, 7, 4, 5), 3, act=act)
    H, G = 5, KIND[cell].gates
    perm = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H] if cell == "lstm" else np.arange(G * H)
    if cell == "rnn":
        net = torch.nn.RNN(4, H, nonlinearity=act, batch_first=True)
    else:
        net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(4, H, batch_first=True)
    net = net.double()
    Wx, Wh = q.p[0], q.p[1]
    bih, bhh = (q.p[2], q.p[3]) if cell == "gru" else (q.p[2], np.zeros(G * H))
    with torch.no_grad():
        for name, a in (("weight_ih_l0", Wx[:, perm].T), ("weight_hh_l0", Wh[:, perm].T),
                        ("bias_ih_l0", bih[perm]), ("bias_hh_l0", bhh[perm])):  # fmt: skip
            getattr(net, name).copy_(torch.from_numpy(np.ascontiguousarray(a)))
    xt = torch.from_numpy(q.x).requires_grad_()
    st0 = [torch.from_numpy(s)[None].requires_grad_() for s in jax.tree.leaves(q.s0)]
    out, stT = net(xt, tuple(st0) if cell == "lstm" else st0[0])
    stT = stT if cell == "lstm" else (stT,)
    dsT = [torch.from_numpy(d)[None] for d in jax.tree.leaves(q.dsT)]
    torch.autograd.backward([out, *stT], [torch.from_numpy(q.dh), *dsT])
    h, sT, (dx, ds0, dp) = run(structured, q, final=True)
    assert rel_err(h, out.detach().numpy()) <= 1e-12
    assert_tree_close(jax.tree.leaves(sT), [s[0].detach().numpy() for s in stT], tol=1e-12)
    assert rel_err(dx, xt.grad.numpy()) <= 1e-12
    assert_tree_close(jax.tree.leaves(ds0), [s.grad[0].numpy() for s in st0], tol=1e-12)
    inv = np.argsort(perm)
    assert rel_err(dp[0], net.weight_ih_l0.grad.numpy().T[:, inv]) <= 1e-12
    assert rel_err(dp[1], net.weight_hh_l0.grad.numpy().T[:, inv]) <= 1e-12
    assert rel_err(dp[2], net.bias_ih_l0.grad.numpy()[inv]) <= 1e-12
    if cell == "gru":
        assert rel_err(dp[3], net.bias_hh_l0.grad.numpy()) <= 1e-12


# --- jaxrnn.testing.check_bptt: the recipe, and wrong backward passes it rejects -----------
# (gated cells: the RNN's oracle is check_rnn_backward, tested with its mutants elsewhere)

D_, H_ = 3, 5


def lstm_step(p, s, x_t):  # the reference step check_bptt differentiates
    h, c, _ = jaxrnn._lstm.step_math(x_t @ p[0] + p[2][None], s[0], s[1], p[1])
    return h, c


def gru_step(p, h, x_t):
    return jaxrnn._gru.step_math(x_t @ p[0] + p[2][None], h, p[1], p[3])[0]


def lstm_params(rng):  # a forget bias of +2: δc travels far enough that a dropped carry shows
    Wx = rng.standard_normal((D_, 4 * H_)) / np.sqrt(D_)
    Wh = rng.standard_normal((H_, 4 * H_)) / np.sqrt(H_)
    return Wx, Wh, np.r_[np.zeros(H_), 2 * np.ones(H_), np.zeros(2 * H_)]


def hand_pair(cell, mutant=None):
    """``(forward_fn, backward_fn)`` for check_bptt: ``jax.vjp`` of the structured form
    (whose rule is the hand BPTT, from any state), or the engine with the cell's backward
    step replaced by ``mutant`` (a wrong BPTT)."""
    kind = KIND[cell]
    if mutant is None:
        return (lambda x, s0, p: jax.vjp(lambda *a: LAYER[cell](a[0], a[1], *a[2]), x, s0, p),
                lambda dh, vjp: vjp(dh))  # fmt: skip

    @jax.jit
    def forward(x, s0, p):
        h, _, cache = forward_layer(kind, "tanh", x, s0, kind.params(*p))
        return h, cache

    @jax.jit
    def backward(dh, c):
        wrong = kind.cell("tanh")._replace(step_backward=mutant)
        dx, ds0, dp = rec.backward(wrong, c.params, c.x, c.state0, c.saved, dh, rec.Options())
        return dx, ds0, tuple(dp)

    return forward, backward


def lstm_no_forget_carry(Wh_T, b, prev, dstate, dh_t):
    (dh_prev, _), da = jaxrnn._lstm._step_backward(Wh_T, b, prev, dstate, dh_t)
    return (dh_prev, jnp.zeros_like(dh_prev)), da  # δc not carried through the forget gate


def lstm_forget_gate_ignored(Wh_T, b, prev, dstate, dh_t):
    (dh_prev, dc_prev), da = jaxrnn._lstm._step_backward(Wh_T, b, prev, dstate, dh_t)
    f = jnp.split(b.gates, 4, axis=1)[1]
    return (dh_prev, dc_prev / f), da  # δc_t passed on without ⊙ f


def gru_no_direct_path(Wh_T, b, prev, dnext, dh_t):
    dh_prev, dxw = jaxrnn._gru._step_backward(Wh_T, b, prev, dnext, dh_t)
    z = jnp.split(b.gates, 3, axis=1)[1]
    return dh_prev - (dh_t + dnext) * z, dxw  # the z ⊙ h_{t-1} path dropped


LSTM_OPTS = dict(params=lstm_params, state=(np.zeros(H_), np.zeros(H_)), input_size=D_,
                 output=lambda s: s[0], max_examples=3)  # fmt: skip
GRU_OPTS = dict(params=(np.zeros((D_, 3 * H_)), np.zeros((H_, 3 * H_)), np.zeros(3 * H_),
                        np.zeros(3 * H_)), state=np.zeros(H_), input_size=D_, max_examples=3)  # fmt: skip


@pytest.mark.parametrize(
    "cell,mutant",
    [("lstm", None), ("gru", None), ("lstm", lstm_no_forget_carry),
     ("lstm", lstm_forget_gate_ignored), ("gru", gru_no_direct_path)],
    ids=["lstm", "gru", "lstm_no_forget_carry", "lstm_forget_gate_ignored", "gru_no_z_path"],
)  # fmt: skip
def test_check_bptt_recipe(cell, mutant):
    """The documented recipe: check_bptt(step, forward_fn, backward_fn, ...) accepts the hand
    LSTM/GRU and rejects wrong backward passes (a report naming the first wrong quantity)."""
    step, opts = (lstm_step, LSTM_OPTS) if cell == "lstm" else (gru_step, GRU_OPTS)
    forward, backward = hand_pair(cell, mutant)
    if mutant is None:
        check_bptt(step, forward, backward, **opts)
    else:
        with pytest.raises(AssertionError, match=r"BPTT check FAILED: (dx|dstate0\S*) is wrong"):
            check_bptt(step, forward, backward, **opts)
