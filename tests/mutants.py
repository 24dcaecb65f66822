"""Wrong BPTTs the default oracle must reject (issue 10): numpy, one mistake each.

``MUTANTS`` maps a name to ``(forward, backward, quantity, diagnosis)``: the
quantity the report must name first, and a phrase the report must contain
(a regular expression: the named class of bug, or the localisation), or ``None``. Most mistakes only
show on problems the old oracle never drew: long sequences (truncation after
8, 16, 32, 63 steps, a clipped carried gradient), D > 3, H > 4, N > 1.
``LENGTH_MUTANTS`` are wrong in the ``lengths=`` mode only.
"""

from __future__ import annotations

import numpy as np


def forward(x, h0, Wx, Wh, b, lengths=None, *, bias_twice=False):
    """tanh RNN (MATH.md §1); with ``lengths`` the state freezes and h is 0 at padded steps."""
    N, T, _ = x.shape
    h, prev = np.zeros((N, T, h0.shape[1])), h0
    A = np.zeros_like(h)
    for t in range(T):
        A[:, t] = x[:, t] @ Wx + prev @ Wh + b * (2 if bias_twice else 1)
        new = np.tanh(A[:, t])
        if lengths is not None:
            valid = (t < np.asarray(lengths))[:, None]
            new, h_t = np.where(valid, new, prev), np.where(valid, new, 0.0)
        else:
            h_t = new
        h[:, t], prev = h_t, new
    mask = None if lengths is None else np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    return h, (x, h0, Wx, Wh, h, A, mask)


def backward(dh, cache, **bug):
    """The right BPTT (MATH.md §3, §5), or one of the mistakes named in ``bug``."""
    x, h0, Wx, Wh, h, A, mask = cache
    N, T, H = dh.shape
    dh_raw = dh
    if mask is not None and not bug.get("ignore_mask"):
        dh = dh * mask[:, :, None]
    hs = np.concatenate([h0[:, None], h], axis=1)  # hs[:, t] = h_{t-1}
    if mask is not None:  # a frozen state: h_{t-1} of a padded row is its last valid state
        for t in range(1, T + 1):
            hs[:, t] = np.where(mask[:, t - 1, None], hs[:, t], hs[:, t - 1])
    dx, dWx, dWh = np.zeros_like(x), np.zeros_like(Wx), np.zeros(Wh.shape, bug.get("dWh_dtype"))
    db, dnext = np.zeros(H), np.zeros_like(h0)
    for t in reversed(range(max(T - bug.get("only_last", T), 0), T)):
        up = dh[:, t] + dnext
        if bug.get("no_last_dh") and t == T - 1:
            up = dnext
        if bug.get("dh_from_next"):
            up = (dh[:, t + 1] if t + 1 < T else 0) + dnext
        h_t = np.tanh(A[:, t])
        fp = (
            1
            - (A[:, t] if bug.get("fprime_of_a") else hs[:, t] if bug.get("fprime_prev") else h_t)
            ** 2
        )
        if bug.get("carry_skips_fprime"):
            da = dh[:, t] * fp + dnext
        else:
            da = up * fp
        if mask is not None and not bug.get("ignore_mask"):
            da = da * mask[:, t, None]
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        h_prev = hs[:, t + 1] if bug.get("dWh_h_t") else hs[:, t]
        if bug.get("dWh_rows_rolled"):
            h_prev = np.roll(h_prev, 1, axis=0)
        dWh += (h_prev.T @ da).astype(dWh.dtype)
        db += da[0] * N if bug.get("db_row0") else da.sum(axis=0)
        carried = da @ (Wh if bug.get("Wh_untransposed") else Wh.T)
        if bug.get("batch_sum"):
            carried = np.broadcast_to(carried.sum(axis=0), carried.shape)
        if "clip" in bug:
            carried = np.clip(carried, -bug["clip"], bug["clip"])
        if mask is not None and not bug.get("ignore_mask") and not bug.get("dh0_leak"):
            carried = np.where(mask[:, t, None], carried, dnext)  # a padded step passes dnext on
        dnext = carried
        k = bug.get("truncate")
        if k and (T - t) % k == 0:  # keep only the k most recent steps of carried gradient
            dnext = np.zeros_like(dnext)
        if bug.get("chunks") and t > 0 and t % bug["chunks"] == 0:  # TBPTT chunks from the start
            dnext = np.zeros_like(dnext)
    if bug.get("dx_cols"):
        dx[:, :, bug["dx_cols"] :] = 0
    if bug.get("dWh_cols"):
        dWh[:, bug["dWh_cols"] :] = 0
    if bug.get("dx_reversed"):
        dx = dx[:, ::-1]
    if bug.get("nan_long") and T >= 64:
        dx[0, 0, 0] = np.nan
    if bug.get("dh0_leak") and mask is not None:
        dnext = dnext + (mask.sum(axis=1) == 0)[:, None] * dh_raw.sum(axis=1)
    scale = bug.get("scale", 1.0)
    return dx * scale, dnext * scale, dWx * scale, dWh.astype(np.float64) * scale, db * scale


def _mutant(quantity, diagnosis=None, fwd=forward, **bug):
    def wrong_backward(dh, cache):
        return backward(dh, cache, **bug)

    return fwd, wrong_backward, quantity, diagnosis


def _bias_twice(x, h0, Wx, Wh, b):
    return forward(x, h0, Wx, Wh, b, bias_twice=True)


MUTANTS = {
    "truncated_after_8": _mutant("dx", "stops after 8 steps", truncate=8),
    "truncated_after_16": _mutant("dx", "stops after 16 steps", truncate=16),
    "truncated_after_32": _mutant("dx", "stops after 32 steps", truncate=32),
    "truncated_after_63": _mutant("dx", "stops after 63 steps", truncate=63),
    "only_last_20_steps_visited": _mutant("dx", "only the last 20 steps", only_last=20),
    "tbptt_chunks_of_10_from_start": _mutant("dx", "cut at t = 10, 20", chunks=10),
    "clipped_carried_gradient": _mutant("dx", "in time: dx is right for the last", clip=0.1),
    "Wh_untransposed_in_carry": _mutant("dx", "Wh used untransposed", Wh_untransposed=True),
    "missing_dh_at_last_step": _mutant("dx", "upstream dh of the last step", no_last_dh=True),
    "off_by_one_upstream_dh": _mutant(
        "dx", "off by one in time|upstream dh of the last step", dh_from_next=True
    ),
    "off_by_one_dWh_uses_h_t": _mutant("dWh", "dWh uses h_t", dWh_h_t=True),
    "dx_reversed_in_time": _mutant("dx", "in time: dx is wrong", dx_reversed=True),
    "fprime_at_preactivation": _mutant("dx", "f' taken at the wrong point", fprime_of_a=True),
    "fprime_at_h_prev": _mutant("dx", "f' taken at the wrong point", fprime_prev=True),
    "carry_skips_fprime": _mutant("dx", None, carry_skips_fprime=True),
    "carried_gradient_summed_over_batch": _mutant("dx", "mixing across the batch", batch_sum=True),
    "db_from_row_0_times_N": _mutant("db", "mixing across the batch", db_row0=True),
    "dWh_with_rows_rolled": _mutant("dWh", "mixing across the batch", dWh_rows_rolled=True),
    "dx_only_first_3_input_columns": _mutant("dx", None, dx_cols=3),
    "dWh_only_first_4_hidden_units": _mutant("dWh", None, dWh_cols=4),
    "constant_scale_half": _mutant("dx", "half the right answer", scale=0.5),
    "dWh_accumulated_in_float32": _mutant("dWh", None, dWh_dtype=np.float32),
    "nan_for_long_sequences": _mutant("dx", "NaN", nan_long=True),
    "forward_adds_bias_twice": _mutant("h", None, fwd=_bias_twice),
}

LENGTH_MUTANTS = {
    "padding_not_masked_in_backward": _mutant("dx", "lengths", ignore_mask=True),
    "dh0_of_empty_rows_leaks": _mutant("dh0", "rows of length 0", dh0_leak=True),
}

# Module-level names for the command-line tests (`python -m jaxrnn.testing FILE:FUNCTION`).
truncated_after_16 = MUTANTS["truncated_after_16"][1]
