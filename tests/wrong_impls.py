"""Plausible wrong RNN implementations in numpy that the oracle must reject.

Each is the document's algorithm (jaxrnn.reference) with one mistake students
make. ``SEQUENCE_BUGS`` maps a name to ``(forward, backward, activation, the
quantity the report must name first)``; ``STEP_BUGS`` the same for one step.
"""

from __future__ import annotations

import numpy as np

from jaxrnn import reference

F = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "identity": lambda a: a,
}
DF = {  # f' from the output h (MATH.md §3)
    "tanh": lambda h: 1 - h**2,
    "relu": lambda h: (h > 0).astype(h.dtype),
    "sigmoid": lambda h: h * (1 - h),
    "identity": np.ones_like,
}


def make_impl(
    *,
    fprime=None,
    carry=True,
    db_reduce=np.sum,
    dWh_fn=None,
    h_prev_shift=0,
    zero_dh0=False,
    dprev_W=lambda Wh: Wh.T,
    skip_h0=False,
):
    """The reference algorithm with switches for each mistake.

    fprime(h, a): the derivative used in da (default: the right one from h);
    carry: add dprev_h from step t+1 to dh[:, t];
    db_reduce: how da is reduced over the batch for db;
    dWh_fn(h_prev, da): the dWh term (default h_prev.T @ da);
    h_prev_shift: 1 uses h_t instead of h_{t-1} in dWh (an off-by-one);
    zero_dh0: return zeros for dh0;
    dprev_W(Wh): the matrix that carries da to t-1 (default Wh.T);
    skip_h0: the forward pass starts from zeros instead of h0.
    """

    def forward(x, h0, Wx, Wh, b, activation="tanh"):
        N, T, _ = x.shape
        f = F[activation]
        h_prev = np.zeros_like(h0) if skip_h0 else h0
        hs, As = [], []
        for t in range(T):
            a = x[:, t] @ Wx + h_prev @ Wh + b  # §1
            h_prev = f(a)
            hs.append(h_prev)
            As.append(a)
        h = np.stack(hs, axis=1)
        return h, (x, h0, Wx, Wh, h, np.stack(As, axis=1), activation)

    def backward(dh, cache):
        x, h0, Wx, Wh, h, A, activation = cache
        N, T, H = dh.shape
        h_all = np.concatenate([h0[:, None], h], axis=1)  # h_all[:, t] = h_{t-1}
        dx, dWx = np.zeros_like(x), np.zeros_like(Wx)
        dWh, db, dnext = np.zeros_like(Wh), np.zeros_like(Wh[0]), np.zeros_like(h0)
        for t in reversed(range(T)):
            up = dh[:, t] + (dnext if carry else 0)  # §3
            d = fprime(h[:, t], A[:, t]) if fprime else DF[activation](h[:, t])
            da = up * d
            dx[:, t] = da @ Wx.T  # §5
            dWx += x[:, t].T @ da
            h_prev = h_all[:, t + h_prev_shift]
            dWh += dWh_fn(h_prev, da) if dWh_fn else h_prev.T @ da
            db += db_reduce(da, axis=0)
            dnext = da @ dprev_W(Wh)
        return dx, np.zeros_like(h0) if zero_dh0 else dnext, dWx, dWh, db

    return forward, backward


SEQUENCE_BUGS = {
    "forgets_to_carry_dprev_h": (*make_impl(carry=False), "tanh", "dx"),
    "preactivation_in_fprime": (*make_impl(fprime=lambda h, a: 1 - a**2), "tanh", "dx"),
    "db_not_summed_over_batch": (*make_impl(db_reduce=np.mean), "tanh", "db"),
    "dWh_transposed": (*make_impl(dWh_fn=lambda hp, da: da.T @ hp), "tanh", "dWh"),
    "off_by_one_h_prev_in_dWh": (*make_impl(h_prev_shift=1), "tanh", "dWh"),
    "tanh_prime_is_1_minus_h": (*make_impl(fprime=lambda h, a: 1 - h), "tanh", "dx"),
    "dh0_returns_zeros": (*make_impl(zero_dh0=True), "tanh", "dh0"),
    "dprev_h_with_Wh_not_transposed": (*make_impl(dprev_W=lambda Wh: Wh), "sigmoid", "dx"),
    "forward_ignores_h0": (*make_impl(skip_h0=True), "tanh", "h"),
}


def step_with(**wrong):
    """reference.rnn_step_backward with one term replaced: ``name=fn(cache, da)``."""

    def backward(dnext_h, cache):
        x, Wx, Wh, prev_h, next_h, activation = cache
        da = dnext_h * wrong.get("fprime", lambda h: DF[activation](h))(next_h)
        grads = {
            "dx": da @ Wx.T,
            "dprev_h": da @ Wh.T,
            "dWx": x.T @ da,
            "dWh": prev_h.T @ da,
            "db": da.sum(axis=0),
        }
        for name, fn in wrong.items():
            if name != "fprime":
                grads[name] = fn(cache, da)
        return tuple(grads.values())

    return reference.rnn_step_forward, backward


STEP_BUGS = {
    "step_dprev_h_with_Wh": (*step_with(dprev_h=lambda c, da: da @ c[2]), "tanh", "dprev_h"),
    "step_db_mean": (*step_with(db=lambda c, da: da.mean(axis=0)), "tanh", "db"),
    "step_tanh_prime_1_minus_h": (*step_with(fprime=lambda h: 1 - h), "tanh", "dx"),
    "step_dWx_transposed_shape": (*step_with(dWx=lambda c, da: da.T @ c[0]), "tanh", "dWx"),
}

# Module-level names for the command-line tests (`python -m jaxrnn.testing MODULE:FUNCTION`).
db_mean_forward, db_mean_backward = make_impl(db_reduce=np.mean)
off_by_one_forward, off_by_one_backward = make_impl(h_prev_shift=1)
