# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Gradient flow: vanishing and exploding gradients, measured
#
# BPTT sends the error of the loss at step $T$ back to step $k$ through the product
# of one Jacobian per step (MATH.md §3). For the hidden states, in `jaxrnn`'s
# row-major convention $h_t = f(x_t W_x + h_{t-1} W_h + b)$,
#
# $$J_t = \frac{\partial h_t}{\partial h_{t-1}} = \operatorname{diag}\big(f'(a_t)\big)\, W_h^\top,
#   \qquad
#   \frac{\partial h_T}{\partial h_k} = J_T\, J_{T-1} \cdots J_{k+1}.$$
#
# A product of $T-k$ matrices tends to shrink or grow geometrically in $T-k$: that
# is the vanishing / exploding gradient problem. This notebook measures
# $\lVert \partial h_T / \partial h_k \rVert_2$ against the span $T-k$ with
# `jaxrnn.diagnostics`, which computes the products from the hand-derived
# quantities (the stored $h_t$ and $f'$ written through them) and is tested
# against `jax.jacobian`:
#
# | function | returns |
# |---|---|
# | `jacobian_norms(x, h0, Wx, Wh, b, activation=...)` | $\lVert \partial h_T/\partial h_k \rVert_2$ for $k = 0..T$, shape `(N, T+1)` |
# | `jacobian_singular_values(...)` | all singular values of $\partial h_T/\partial h_k$, `(N, T+1, H)` |
# | `step_jacobian_norms(...)` | $\lVert J_t \rVert_2$ for $t = 1..T$, `(N, T)` |
# | `jacobian_products(...)`, `step_jacobians(...)` | the matrices themselves |
# | `truncated_gradients(dh, ..., truncation=k)` | weight gradients of BPTT truncated to $k$ steps |

# %%
import jax

jax.config.update("jax_enable_x64", True)  # norms below 1e-38 or above 1e38 need float64

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxrnn
from jaxrnn import diagnostics

plt.rcParams.update({"figure.dpi": 72, "axes.grid": True, "grid.alpha": 0.3})

# %% [markdown]
# ## The setup
#
# $N = 8$ random input sequences of $T = 60$ steps, hidden size $H = 32$. The
# recurrent matrix is one random Gaussian matrix rescaled to a chosen **spectral
# radius** $\rho = \max_i |\lambda_i(W_h)|$. The spectral radius sets the long-run
# growth rate of matrix powers ($\lVert W_h^n \rVert^{1/n} \to \rho$), whereas the
# spectral norm bounds a single step; for a random (non-normal) matrix the two
# differ:

# %%
N, T, D, H = 8, 60, 4, 32
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((N, T, D)))  # unit-scale inputs
h0 = jnp.zeros((N, H))
Wx = jnp.asarray(rng.standard_normal((D, H)) / np.sqrt(D))
b = jnp.zeros(H)
W_unit = rng.standard_normal((H, H)) / np.sqrt(H)
W_unit /= np.max(np.abs(np.linalg.eigvals(W_unit)))  # spectral radius exactly 1


def Wh(rho):
    return jnp.asarray(rho * W_unit)


print(f"spectral radius 1.00, spectral norm {np.linalg.norm(W_unit, 2):.2f}")

span = T - np.arange(T + 1)  # T - k for k = 0..T
RHOS = (0.8, 1.0, 1.2, 3.0)
ACTS = ("tanh", "relu", "identity")
colors = dict(zip(RHOS, plt.cm.viridis(np.linspace(0, 0.85, len(RHOS))), strict=True))

# %% [markdown]
# ## 1. The linear RNN: exactly $\rho^{T-k}$
#
# With $f$ = identity, $f' = 1$ and $\partial h_T / \partial h_k = (W_h^\top)^{T-k}$
# does not depend on the data. Its norm follows $\rho^{T-k}$ (dashed), up to a
# constant from the non-normality of $W_h$: below 1 it vanishes, above 1 it explodes,
# at exactly 1 it stays put.

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
for rho in RHOS:
    norms = diagnostics.jacobian_norms(x, h0, Wx, Wh(rho), b, activation="identity")
    ax.semilogy(span, norms[0], color=colors[rho], label=f"ρ = {rho}")
    ax.semilogy(span, float(rho) ** span, color=colors[rho], ls="--", lw=1)
ax.set(
    title="Linear RNN: ‖∂h_T/∂h_k‖₂ (solid) vs ρ^(T−k) (dashed)",
    xlabel="span T − k (steps)",
    ylabel="‖∂h_T/∂h_k‖₂",
)
ax.legend()
plt.show()

# %% [markdown]
# ## 2. tanh vs relu vs identity
#
# The nonlinearity multiplies every step by $\operatorname{diag}(f')$. For tanh,
# $0 < f' \le 1$, and $f' \to 0$ when a unit saturates; for relu, $f' \in \{0, 1\}$
# switches off the inactive units. Both therefore shrink the product compared to
# the linear RNN with the same $W_h$. Lines are the median over the 8 sequences,
# bands the range.

# %%
norms = {
    (act, rho): np.asarray(diagnostics.jacobian_norms(x, h0, Wx, Wh(rho), b, activation=act))
    for act in ACTS
    for rho in RHOS
}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
for ax, act in zip(axes, ACTS, strict=True):
    for rho in RHOS:
        n = norms[act, rho]  # (N, T+1)
        ax.semilogy(span, np.median(n, axis=0), color=colors[rho], label=f"ρ = {rho}")
        ax.fill_between(span, n.min(axis=0), n.max(axis=0), color=colors[rho], alpha=0.15)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(title=f"f = {act}", xlabel="span T − k (steps)")
axes[0].set_ylabel("‖∂h_T/∂h_k‖₂")
axes[0].legend(loc="lower left")
fig.suptitle("How far back does the gradient reach? (log scale)")
fig.tight_layout()
plt.show()

# %% [markdown]
# One number per curve: the **effective gain per step**
# $g = \big(\lVert \partial h_T/\partial h_0 \rVert_2\big)^{1/T}$ (the slope of the
# log-lines above). The gradient over a span of $n$ steps scales like $g^n$;
# $g < 1$ vanishes, $g > 1$ explodes. Sweeping $\rho$:

# %%
rho_grid = np.linspace(0.25, 4.0, 16)
gain = {
    act: [
        np.median(diagnostics.jacobian_norms(x, h0, Wx, Wh(r), b, activation=act)[:, 0]) ** (1 / T)
        for r in rho_grid
    ]
    for act in ACTS
}
fig, ax = plt.subplots(figsize=(6, 3.6))
for act in ACTS:
    ax.plot(rho_grid, gain[act], marker="o", ms=3, label=act)
ax.axhline(1.0, color="gray", lw=0.8)
ax.axvline(1.0, color="gray", lw=0.8, ls=":")
ax.set(
    title="Effective gain per step vs spectral radius",
    xlabel="spectral radius ρ of W_h",
    ylabel="(‖∂h_T/∂h_0‖₂)^(1/T)",
)
ax.legend()
plt.show()
for act in ACTS:
    crossing = rho_grid[np.argmax(np.asarray(gain[act]) > 1)]
    print(f"{act:>8}: gradients stop vanishing at about ρ ≈ {crossing:.2f}")

# %% [markdown]
# The linear RNN's gain is $\rho$ itself. tanh and relu need a much larger $W_h$
# before gradients stop vanishing: at $\rho = 1$ they already vanish, because
# $f'$ takes its share at every step.
#
# ## 3. Where tanh loses the gradient: saturation
#
# $\lVert J_t \rVert_2 = \lVert \operatorname{diag}(f'(a_t)) W_h^\top \rVert_2 \le \max_i f'(a_t)_i\, \lVert W_h \rVert_2$.
# A larger $W_h$ drives the pre-activations $a_t$ further out, where tanh is flat:
# the mean $f' = 1 - h_t^2$ drops, and the per-step norm falls far below the
# $\lVert W_h \rVert_2$ that the linear RNN would have (dotted lines).

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.6))
steps = np.arange(1, T + 1)
for rho in RHOS:
    step_norms = diagnostics.step_jacobian_norms(x, h0, Wx, Wh(rho), b, activation="tanh")
    h, _ = jaxrnn.rnn_forward(x, h0, Wx, Wh(rho), b, activation="tanh")
    ax1.semilogy(steps, np.median(step_norms, axis=0), color=colors[rho], label=f"ρ = {rho}")
    ax1.axhline(rho * np.linalg.norm(W_unit, 2), color=colors[rho], ls=":", lw=1)
    ax2.plot(
        steps, np.mean(1 - np.asarray(h) ** 2, axis=(0, 2)), color=colors[rho], label=f"ρ = {rho}"
    )
ax1.set(
    title="tanh: per-step Jacobian norm (dotted: ‖W_h‖₂)", xlabel="step t", ylabel="‖J_t‖₂ (median)"
)
ax2.set(
    title="tanh: mean derivative f'(a_t) = 1 − h_t²", xlabel="step t", ylabel="mean f'", ylim=(0, 1)
)
ax2.legend(loc="upper right", ncol=4)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The singular values: the gradient lives in few directions
#
# The norm is the largest singular value of $\partial h_T / \partial h_k$. The others
# say in how many directions $h_k$ still influences $h_T$. Over long spans the
# spectrum spreads over many decades: even when the top direction survives, the
# Jacobian is effectively low-rank, so $h_T$ "remembers" only a few directions of
# the distant past. (Values more than ~16 decades below the largest are float64
# rounding noise: that is the floor the smallest ones hit.)

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
for ax, (act, rho) in zip(axes, (("identity", 1.0), ("tanh", 1.0), ("tanh", 3.0)), strict=True):
    sv = np.asarray(diagnostics.jacobian_singular_values(x, h0, Wx, Wh(rho), b, activation=act))[0]
    ax.semilogy(span, sv, color="tab:blue", lw=0.7, alpha=0.5)  # all H singular values
    ax.semilogy(span, sv[:, 0], color="k", lw=1.5, label="largest (the norm)")
    ax.set(title=f"f = {act}, ρ = {rho}", xlabel="span T − k (steps)")
axes[0].set_ylabel("singular values of ∂h_T/∂h_k")
axes[0].set_ylim(1e-30, 1e8)
axes[0].legend(loc="lower left")
fig.suptitle(f"All {H} singular values of the Jacobian product (one sequence)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Truncated BPTT: what the cut throws away
#
# Truncation stops the backward recursion after $k$ steps. Two forms:
#
# * **per term** (Williams & Peng's BPTT($k$), `diagnostics.truncated_gradients`):
#   the loss at every step $t$ reaches back exactly $k$ steps, to $t-k+1$;
# * **in chunks** (what training loops do, `jaxrnn.rnn_forward(..., truncation=k)` +
#   `jaxrnn.rnn_backward`): the error stops at $t = k, 2k, \dots$, so a loss term
#   reaches back between 1 and $k$ steps depending on where it sits in its chunk.
#
# Both drop exactly the terms carried by the products $\partial h_t / \partial h_j$
# over spans longer than the cut. Below: the relative error of the truncated
# $\partial E/\partial W_h$ against full BPTT, for a loss with an error term at every
# step (random $\partial E_t/\partial h_t$).

# %%
dh = jnp.asarray(rng.standard_normal((N, T, H)))  # ∂E_t/∂h_t at every step
ks = (1, 2, 4, 8, 16, 32, T)


def rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


trunc_err = {}
for act in ("tanh", "identity"):
    for rho in (0.8, 1.0, 1.2):
        full = jaxrnn.rnn_backward(
            dh, jaxrnn.rnn_forward(x, h0, Wx, Wh(rho), b, activation=act)[1]
        )[3]
        per_term, chunked = [], []
        for k in ks:
            g = diagnostics.truncated_gradients(
                dh, x, h0, Wx, Wh(rho), b, truncation=k, activation=act
            )
            per_term.append(rel(g[2], full))
            _, cache = jaxrnn.rnn_forward(x, h0, Wx, Wh(rho), b, activation=act, truncation=k)
            chunked.append(rel(jaxrnn.rnn_backward(dh, cache)[3], full))
        trunc_err[act, rho] = (per_term, chunked)

fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
for ax, act in zip(axes, ("tanh", "identity"), strict=True):
    for rho in (0.8, 1.0, 1.2):
        per_term, chunked = trunc_err[act, rho]
        ax.loglog(
            ks[:-1], per_term[:-1], marker="o", color=colors[rho], label=f"per term, ρ = {rho}"
        )
        ax.loglog(
            ks[:-1],
            chunked[:-1],
            marker="s",
            ls="--",
            color=colors[rho],
            label=f"chunks, ρ = {rho}",
        )
    ax.set(title=f"f = {act}", xlabel="truncation length k (steps)")
axes[0].set_ylabel("‖dW_h(k) − dW_h‖ / ‖dW_h‖")
axes[0].set_ylim(1e-12, 2)
axes[1].legend(fontsize=8, loc="lower left")
fig.suptitle("Truncated BPTT: relative error of the recurrent weight gradient")
fig.tight_layout()
plt.show()
for (act, rho), (per_term, chunked) in trunc_err.items():
    assert per_term[-1] < 1e-12 and chunked[-1] < 1e-12  # k = T is full BPTT
    print(
        f"{act:>8} ρ = {rho}: error at k = 8: per term {per_term[3]:.1e}, chunks {chunked[3]:.1e}"
    )

# %% [markdown]
# Reading the plot:
#
# * When gradients vanish (tanh here, even at $\rho = 1.2$), per-term truncation
#   loses almost nothing once $k$ exceeds a few times the decay length: the error
#   falls like the Jacobian norms of section 2. The cut is cheap, and it also shows
#   what the full gradient could *not* learn: dependencies longer than that.
# * When they do not vanish (the linear RNN at $\rho \ge 1$), long spans carry a
#   large share of the gradient and any truncation biases it.
# * Chunked truncation converges much more slowly, like a power of $k$ rather than
#   geometrically: the first steps of every chunk always keep only a short history,
#   however long the chunks are.
