"""Where and how a BPTT went wrong: the first wrong step, and a named class of bug.

:func:`locate` walks a per-step gradient (``dx_t``, time on axis 1) back from
the last step and finds the first step that departs from the reference.
:func:`rnn_diagnosis` adds, for the vanilla RNN, the error term ``δ_t``
inferred from ``dx_t = δ_t Wx^T`` (when ``D >= H``) and compares the user's
gradients with those of known wrong BPTTs, computed here in numpy from the
same problem: truncation after k steps, ``Wh`` untransposed, a missing
upstream ``dh`` at the last step, off-by-one in time, the carried gradient
mixed across the batch, f' at the wrong point. A constant scale factor is
named by the comparison itself (:mod:`._compare`).
"""

from __future__ import annotations

import numpy as np

from ._compare import Failure, scale_of
from .strategies import Problem

_DF = {  # f'(a) as a function of h = f(a), MATH.md §3
    "tanh": lambda h: 1 - h**2,
    "relu": lambda h: (h > 0).astype(np.float64),
    "sigmoid": lambda h: h * (1 - h),
    "identity": np.ones_like,
}
_F = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "identity": lambda a: a,
}


def wrong_steps(got: np.ndarray | None, want: np.ndarray, tol: float) -> np.ndarray | None:
    """``(T,)`` booleans, step t wrong, for per-step arrays ``(N, T, ...)``; None if unusable.

    The error of step t is ``max|got_t - want_t| / max(max|want|, 1)``; NaN counts as wrong.
    """
    if got is None or got.shape != want.shape or want.ndim < 2 or want.shape[1] == 0:
        return None
    T = want.shape[1]
    err = np.abs(got - want).reshape(got.shape[0], T, -1).max(axis=(0, 2)) / scale_of(want)
    return ~(err <= tol)


def locate(
    name: str, got: np.ndarray | None, want: np.ndarray, tol: float
) -> tuple[int, str] | None:
    """``(number of right steps at the end, a sentence)`` for a per-step gradient, or None.

    ``got`` and ``want`` are ``(N, T, ...)``; the error of step t is
    ``max|got_t - want_t| / max(max|want|, 1)`` (the scale of the whole array).
    """
    bad = wrong_steps(got, want, tol)
    if bad is None:
        return None
    T = bad.size
    if not bad.any():
        return T, f"{name} is right at every step"
    right = int(np.argmax(bad[::-1]))  # right steps at the end, before the first wrong one
    t = T - 1 - right
    if right == 0:
        where = f"{name} is wrong already at the last step t = T-1 = {T - 1}"
    else:
        where = (
            f"{name} is right for the last {right} of {T} steps (t = {t + 1} ... {T - 1}) "
            f"and first wrong at t = {t} = T-{right + 1}, counting back from the end"
        )
    return right, f"{where} (wrong at {int(bad.sum())} of {T} steps)"


def model_bptt(p: Problem, **bug) -> dict[str, np.ndarray]:
    """The document's BPTT in numpy (MATH.md §3, §5), with one optional known bug.

    ``bug``: ``window=k`` (each ``dh_t`` reaches back k steps), ``reset_end=k``
    (carry zeroed every k steps from the end), ``only_last=k`` (the loop visits
    only the last k steps), ``reset_start=k`` (cut at t = k,
    2k, ...), ``untransposed=True`` (``da @ Wh``), ``drop_last=True`` (no
    ``dh[:, T-1]``), ``dh_shift=±1``, ``dWh_shift=1`` (``h_t`` for ``h_{t-1}``),
    ``dx_shift=±1``, ``fprime="a" | "prev"``, ``batch_sum=True`` (carried
    gradient summed over the batch). Returns ``dx, dh0, dWx, dWh, db, delta``.
    """
    x, h0, Wx, Wh, b, dh = p.x, p.h0, p.Wx, p.Wh, p.b, p.dh
    N, T, _ = x.shape
    f, df = _F[p.activation], _DF[p.activation]
    a, h, prev = np.zeros(dh.shape), np.zeros(dh.shape), h0
    for t in range(T):  # §1
        a[:, t] = x[:, t] @ Wx + prev @ Wh + b
        h[:, t] = prev = f(a[:, t])
    hp = np.concatenate([h0[:, None], h[:, :-1]], axis=1)  # h_{t-1}
    if bug.get("drop_last"):
        dh = dh.copy()
        dh[:, -1] = 0
    if bug.get("dh_shift"):
        dh = _shift(dh, bug["dh_shift"])
    fp = {"a": df(a), "prev": df(hp)}.get(bug.get("fprime", ""), df(h))
    W = Wh if bug.get("untransposed") else Wh.T
    if bug.get("window"):
        da, dh0 = _windowed(dh, fp, W, h0, bug["window"])
    else:
        da, dh0 = _carried(dh, fp, W, h0, bug)
    h_w = h if bug.get("dWh_shift") else hp
    dx = da @ Wx.T
    if bug.get("dx_shift"):
        dx = _shift(dx, bug["dx_shift"])
    return {  # §5
        "dx": dx,
        "dh0": dh0,
        "dWx": np.einsum("ntd,nth->dh", x, da),
        "dWh": np.einsum("ntg,nth->gh", h_w, da),
        "db": da.sum(axis=(0, 1)),
        "delta": da,
    }


def _windowed(dh, fp, W, h0, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(da, dh0)`` when each ``dh_t`` reaches back only k steps (a sliding-window cut)."""
    da, dh0 = np.zeros(dh.shape), np.zeros_like(h0)
    T = dh.shape[1]
    for s in range(T):
        d = dh[:, s]
        for t in range(s, max(s - k, -1), -1):
            da[:, t] += d * fp[:, t]
            d = (d * fp[:, t]) @ W
        if s < k:
            dh0 += d
    return da, dh0


def _carried(dh, fp, W, h0, bug: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(da, dh0)`` of the document's loop (§3), with the carry bugs of :func:`model_bptt`."""
    da, dnext = np.zeros(dh.shape), np.zeros_like(h0)
    T = dh.shape[1]
    for t in reversed(range(T)):
        if bug.get("reset_end") and t < T - 1 and (T - 1 - t) % bug["reset_end"] == 0:
            dnext = np.zeros_like(dnext)
        if bug.get("only_last") and t < T - bug["only_last"]:
            continue  # steps before the last k are never visited: da = 0
        da[:, t] = (dh[:, t] + dnext) * fp[:, t]  # §3
        dnext = da[:, t] @ W
        if bug.get("batch_sum"):
            dnext = np.broadcast_to(dnext.sum(axis=0), dnext.shape)
        if bug.get("reset_start") and t > 0 and t % bug["reset_start"] == 0:
            dnext = np.zeros_like(dnext)
    return da, dnext


def _shift(a: np.ndarray, by: int) -> np.ndarray:
    """``out[:, t] = a[:, t + by]`` along time, zero where that is outside."""
    out = np.zeros_like(a)
    if by > 0:
        out[:, :-by] = a[:, by:]
    else:
        out[:, -by:] = a[:, :by]
    return out


def _bugs(T: int, right: int | None) -> list[tuple[str, dict]]:
    """The known wrong BPTTs to compare with, given how many last steps of dx were right."""
    out: list[tuple[str, dict]] = []
    if right is not None and 0 < right < T:
        k = right
        stops = f"truncated BPTT: the carried gradient stops after {k} step{'s' * (k > 1)}"
        out += [
            (f"{stops} (each dh_t reaches back {k} steps)", {"window": k}),
            (f"{stops} (zeroed every {k} steps from the end)", {"reset_end": k}),
            (
                f"only the last {k} steps are backpropagated, the earlier ones get 0",
                {"only_last": k},
            ),
        ]
        for c in range(1, T):  # a cut at t = c, 2c, ...: the last one at T - right
            if (T - 1) // c * c == T - right:
                cut = f"truncated BPTT: the carried gradient is cut at t = {c}, {2 * c}, ..."
                out.append((f"{cut} (chunks of {c} from the start)", {"reset_start": c}))
    untransposed = "Wh used untransposed: the carried gradient is da @ Wh, not da @ Wh.T"
    return out + [
        (untransposed, {"untransposed": True}),
        ("the upstream dh of the last step t = T-1 is missing", {"drop_last": True}),
        ("off by one in time: step t uses the upstream dh[:, t+1]", {"dh_shift": 1}),
        ("off by one in time: step t uses the upstream dh[:, t-1]", {"dh_shift": -1}),
        ("off by one in time: dWh uses h_t instead of h_{t-1}", {"dWh_shift": 1}),
        ("off by one in time: dx_t is stored at t-1", {"dx_shift": 1}),
        ("off by one in time: dx_t is stored at t+1", {"dx_shift": -1}),
        ("f' taken at the wrong point: at the pre-activation a_t, not h_t", {"fprime": "a"}),
        ("f' taken at the wrong point: at h_{t-1}, not h_t", {"fprime": "prev"}),
        ("mixing across the batch: the carried gradient is summed over rows", {"batch_sum": True}),
    ]


_GRADS = ("dx", "dh0", "dWx", "dWh", "db")


def rnn_diagnosis(f: Failure, p: Problem, tol: float) -> list[str]:
    """Lines for the report of a sequence check (no lengths): where in time, and which bug."""
    lines = []
    right = None
    hit = locate("dx", f.got.get("dx"), f.want["dx"], tol) if "dx" in f.want else None
    if hit is not None:
        right, text = hit
        lines.append(f"in time: {text}")
    bad = [r.name for r in f.rows if not r.ok]
    if not bad or bad[0] == "h" or any(f.got.get(n) is None for n in _GRADS):
        return lines
    N, T, D = p.x.shape
    H = p.h0.shape[1]
    good = model_bptt(p)
    if D >= H and np.linalg.matrix_rank(p.Wx) == H:  # δ_t = dx_t pinv(Wx^T)
        delta = f.got["dx"] @ np.linalg.pinv(p.Wx.T)
        hit = locate("δ_t (inferred from dx_t, D >= H)", delta, good["delta"], max(tol, 1e-9))
        if hit is not None and hit[0] < T and hit[0] != right:
            lines.append(f"in time: {hit[1]}")
    first = bad[0]
    ok = [r.name for r in f.rows if r.ok and r.name in _GRADS]
    best = None
    for text, bug in _bugs(T, right if right is not None and right < T else None):
        cand = model_bptt(p, **bug)
        if not _close(cand[first], f.got[first], f.want[first], tol):
            continue
        if not all(_same(cand[n], f.got[n], f.want[n], tol) for n in ok):
            continue  # the bug would also break a quantity that is right
        every = all(_same(cand[n], f.got[n], f.want[n], tol) for n in _GRADS)
        if every:
            best = f"looks like: {text} (this explains every gradient)"
            break
        best = best or f"looks like: {text} (this explains {first})"
    if best:
        lines.append(best)
    return lines


def _same(cand: np.ndarray, got: np.ndarray, want: np.ndarray, tol: float) -> bool:
    s = scale_of(want)
    return float(np.max(np.abs(cand - got), initial=0.0)) <= max(100 * tol, 1e-9) * s


def _close(cand: np.ndarray, got: np.ndarray, want: np.ndarray, tol: float) -> bool:
    """The user's ``got`` equals the candidate, and the candidate is not the right answer."""
    wrong = float(np.max(np.abs(cand - want), initial=0.0)) > tol * scale_of(want)
    return wrong and _same(cand, got, want, tol)
