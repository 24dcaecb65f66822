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
# # The vanilla RNN and backpropagation through time, derived and checked
#
# This notebook walks through [MATH.md](../MATH.md), the specification of `jaxrnn`:
# the forward pass, the error term $\delta$, its two directions of flow (along time
# and down the layers), the weight gradients as sums over time, and the output layer
# with its loss. **Every equation is followed by a cell that evaluates it by hand on
# a tiny example and compares it with `jax.grad` or `jax.jacobian`.**
#
# Each check prints the relative error $\max|\text{hand} - \text{autodiff}| / \max(\max|\text{autodiff}|, 1)$
# and fails the notebook if it exceeds $10^{-10}$. Everything runs in float64, so
# equal results differ by rounding only ($\sim 10^{-16}$).
#
# Notation: the document's column vectors ($x_t$, $s_t$, $\mathrm{net}_t$, weights
# $U$, $W$, $V$) for the derivation; `jaxrnn`'s row-major batches
# (`x: (N, T, D)`, `Wx = U^T`, `Wh = W^T`) where we check the library.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # float64: the checks are to 1e-10

import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import diagnostics

CHECKS = {}


def check(name, got, want, tol=1e-10):
    """Prints and records the relative error of `got` against `want`; fails above `tol`."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(
        np.max(np.abs(got - want), initial=0.0) / max(np.max(np.abs(want), initial=0.0), 1.0)
    )
    CHECKS[name] = err
    print(f"{name:<58} relative error {err:.1e}")
    assert err <= tol, f"{name}: {err:.2e} > {tol:.0e}"


# %% [markdown]
# ## A tiny example
#
# One sequence of $T = 6$ steps, input size $D = 3$, hidden size $H = 4$, $K = 5$
# output classes, $f = \tanh$.

# %%
T, D, H, K = 6, 3, 4, 5
rng = np.random.default_rng(0)
U = jnp.asarray(rng.standard_normal((H, D)) / np.sqrt(D))  # input -> hidden
W = jnp.asarray(rng.standard_normal((H, H)) / np.sqrt(H))  # hidden -> hidden
b = jnp.asarray(rng.standard_normal(H) * 0.1)
V = jnp.asarray(rng.standard_normal((K, H)) / np.sqrt(H))  # hidden -> output
c = jnp.asarray(rng.standard_normal(K) * 0.1)
xs = jnp.asarray(rng.standard_normal((T, D)))  # x_1 .. x_T
s0 = jnp.asarray(rng.standard_normal(H) * 0.5)  # s_0
ys = jnp.asarray(rng.integers(0, K, T))  # a target class per step
f = jnp.tanh

# %% [markdown]
# ## 1. The model
#
# $$\mathrm{net}_t = U x_t + W s_{t-1} + b, \qquad s_t = f(\mathrm{net}_t), \qquad o_t = g(V s_t + c), \qquad E = \sum_t E_t(o_t, y_t)$$
#
# with $g$ the softmax and $E_t = -\log o_t[y_t]$. The forward pass below is a plain
# loop over time. It takes an extra argument `eps` that is added to every
# $\mathrm{net}_t$: at `eps = 0` it changes nothing, but $\partial E / \partial \varepsilon_t = \partial E / \partial \mathrm{net}_t$,
# so `jax.grad` with respect to `eps` hands us the error terms $\delta_t$ by autodiff.


# %%
def forward(U, W, b, xs, s0, eps=None):
    """Column-form forward pass of one sequence: (net_1..net_T, s_1..s_T), each (T, H)."""
    s, nets, states = s0, [], []
    for t in range(xs.shape[0]):
        net = U @ xs[t] + W @ s + b  # §1: net_t = U x_t + W s_{t-1} + b
        if eps is not None:
            net = net + eps[t]
        s = f(net)  # §1: s_t = f(net_t)
        nets.append(net)
        states.append(s)
    return jnp.stack(nets), jnp.stack(states)


def step_losses(states, V, c, ys):
    """E_t = -log softmax(V s_t + c)[y_t] for every t: (T,)."""
    logp = jax.nn.log_softmax(states @ V.T + c, axis=-1)  # o_t = g(V s_t + c), in logs
    return -jnp.take_along_axis(logp, ys[:, None], axis=-1)[:, 0]


def E(U, W, b, V, c, s0, eps=None):
    return step_losses(forward(U, W, b, xs, s0, eps)[1], V, c, ys).sum()  # E = Σ_t E_t


nets, states = forward(U, W, b, xs, s0)
print("E =", float(E(U, W, b, V, c, s0)))

# %% [markdown]
# `jaxrnn` computes the same states in row-major batched form,
# $h_t = f(x_t W_x + h_{t-1} W_h + b)$ with $W_x = U^\top$, $W_h = W^\top$ and a
# batch axis in front, by `lax.scan`:

# %%
h, _ = jaxrnn.rnn_forward(xs[None], s0[None], U.T, W.T, b)  # (N=1, T, H)
check("§1 forward: jaxrnn.rnn_forward == the column-form loop", h[0], states)

# %% [markdown]
# ## 2. The error term
#
# $$\delta_t = \frac{\partial E}{\partial \mathrm{net}_t}$$
#
# (in code `da_t`). Backpropagation has three steps: a forward pass that stores what
# the backward pass needs, the error terms $\delta$, then the weight gradients from
# the $\delta$s. Here are the $\delta$s by autodiff, via the `eps` trick:

# %%
zeros = jnp.zeros((T, H))
delta_ad = jax.grad(lambda eps: E(U, W, b, V, c, s0, eps))(zeros)  # (T, H): δ_1..δ_T
print(np.round(np.asarray(delta_ad), 4))

# %% [markdown]
# ## 3. Direction one: along time
#
# ### One step
#
# $\mathrm{net}_t$ depends on $\mathrm{net}_{t-1}$ through $s_{t-1} = f(\mathrm{net}_{t-1})$ and $W$:
#
# $$\frac{\partial\, \mathrm{net}_t}{\partial\, \mathrm{net}_{t-1}} = W \operatorname{diag}\big(f'(\mathrm{net}_{t-1})\big)$$

# %%
t = 3  # any step; python index t is the document's t+1
one_step = lambda net_prev: U @ xs[t] + W @ f(net_prev) + b  # noqa: E731
fprime = 1 - states**2  # tanh' from the stored outputs (below)
check(
    "§3 d net_t / d net_{t-1} = W diag(f'(net_{t-1}))",
    W @ jnp.diag(fprime[t - 1]),
    jax.jacobian(one_step)(nets[t - 1]),
)

# %% [markdown]
# ### $f'$ from the stored output
#
# The backward pass never recomputes $\mathrm{net}_t$: it evaluates $f'$ from
# $s_t = f(\mathrm{net}_t)$, which the forward pass stored anyway:
#
# | $f$ | $f'(\mathrm{net})$ in terms of $s = f(\mathrm{net})$ |
# |---|---|
# | tanh | $1 - s^2$ |
# | relu | $[s > 0]$ |
# | sigmoid | $s(1 - s)$ |
# | identity | $1$ |

# %%
a = jnp.asarray(rng.standard_normal(50))  # pre-activations (nonzero, so relu' is defined)
for name, act in jaxrnn.ACTIVATIONS.items():
    check(
        f"§3 f' from f's output: {name}",
        act.deriv_from_output(act.fn(a)),
        jax.vmap(jax.grad(act.fn))(a),
    )

# %% [markdown]
# ### Across many steps: the product of Jacobians
#
# Chaining the one-step relation, the part of the error that the loss at step $t$
# sends back to an earlier step $k$ is
#
# $$\delta_k^\top = \delta_t^\top \prod_{i=k}^{t-1} W \operatorname{diag}\big(f'(\mathrm{net}_i)\big)
#   = \delta_t^\top\, W \operatorname{diag}(f'(\mathrm{net}_{t-1}))\, W \operatorname{diag}(f'(\mathrm{net}_{t-2})) \cdots W \operatorname{diag}(f'(\mathrm{net}_k))$$
#
# (here $\delta$ is $\partial E_t / \partial \mathrm{net}$ for the single loss term
# $E_t$). We check it for the last step's loss $E_T$ and every $k$:


# %%
def E_last(eps):  # only the loss term at the last step, E_T
    return step_losses(forward(U, W, b, xs, s0, eps)[1], V, c, ys)[-1]


delta_T_ad = jax.grad(E_last)(zeros)  # (T, H): ∂E_T/∂net_k for every k
delta_k = delta_T_ad[T - 1]  # δ_T of E_T
for k in reversed(range(T - 1)):
    delta_k = delta_k @ (W @ jnp.diag(fprime[k]))  # one more factor W diag(f'(net_k))
    check(f"§3 δ_k = δ_T Π W diag(f'), span T-k = {T - 1 - k}", delta_k, delta_T_ad[k])

# %% [markdown]
# The same factors give the Jacobian between hidden states,
#
# $$\frac{\partial s_t}{\partial s_k} = \prod_{i=k+1}^{t} \operatorname{diag}\big(f'(\mathrm{net}_i)\big) W
#   = \operatorname{diag}(f'(\mathrm{net}_t))\, W \cdots \operatorname{diag}(f'(\mathrm{net}_{k+1}))\, W ,$$
#
# whose norm against the span $t - k$ decides whether gradients vanish or explode
# (the next notebook). We check the explicit product against `jax.jacobian` of
# $s_T$ with respect to $s_k$ (the forward pass restarted from $s_k$), and against
# `jaxrnn.diagnostics.jacobian_products`, which computes it backwards in time like BPTT.


# %%
def s_T_from(s_k, k):  # s_T as a function of s_k: the loop restarted at step k
    return forward(U, W, b, xs[k:], s_k)[1][-1] if k < T else s_k


all_states = jnp.concatenate([s0[None], states])  # s_0 .. s_T
P_lib = diagnostics.jacobian_products(xs[None], s0[None], U.T, W.T, b)[0]  # (T+1, H, H)
P = jnp.eye(H)  # ∂s_T/∂s_T
for k in reversed(range(T)):  # python k is the document's k; the factor is for step k+1
    P = P @ jnp.diag(fprime[k]) @ W  # append diag(f'(net_{k+1})) W on the right
    J_ad = jax.jacobian(s_T_from)(all_states[k], k)
    check(f"§3 ∂s_T/∂s_k = Π diag(f') W vs jax.jacobian, T-k = {T - k}", P, J_ad)
    check(f"   jaxrnn.diagnostics.jacobian_products, T-k = {T - k}", P_lib[k], J_ad)

# %% [markdown]
# ### The recursion the code runs
#
# Summed over all loss terms, the products collapse into one backward sweep. With
# $\mathrm{dnext}_t$ the error arriving from step $t+1$ (zero at the last step):
#
# $$dh_t = \frac{\partial E_t}{\partial s_t} + \mathrm{dnext}_t, \qquad
#   \delta_t = dh_t \odot f'(\mathrm{net}_t), \qquad
#   \mathrm{dnext}_{t-1} = W^\top \delta_t, \qquad
#   \frac{\partial E}{\partial s_0} = \mathrm{dnext}_0 .$$
#
# The upstream $\partial E_t / \partial s_t$ comes from the loss (§6 gives it in
# closed form; here we take it from `jax.grad` of the loss as a function of the states).

# %%
dE_ds = jax.grad(lambda S: step_losses(S, V, c, ys).sum())(states)  # (T, H): ∂E_t/∂s_t
dnext = jnp.zeros(H)
delta_hand = [None] * T
for t in reversed(range(T)):
    dh_t = dE_ds[t] + dnext  # §3: dh_t = ∂E_t/∂s_t + dnext_t
    delta_hand[t] = dh_t * fprime[t]  # §3: δ_t = dh_t ⊙ f'(net_t)
    dnext = W.T @ delta_hand[t]  # §3: dnext_{t-1} = W^T δ_t
delta_hand = jnp.stack(delta_hand)
check("§3 BPTT recursion: δ_t for every t vs jax.grad", delta_hand, delta_ad)
check(
    "§3 BPTT recursion: dE/ds_0 = dnext_0 vs jax.grad",
    dnext,
    jax.grad(E, argnums=5)(U, W, b, V, c, s0),
)

# %% [markdown]
# ## 4. Direction two: down the layers
#
# Stack a second layer on the first: layer 2's input is layer 1's hidden state,
#
# $$\mathrm{net}^2_t = U^2 s^1_t + W^2 s^2_{t-1} + b^2 .$$
#
# The error reaching layer 1 from above is ordinary backpropagation,
#
# $$\delta^{1}_t = (U^2)^\top \delta^2_t \odot f'(\mathrm{net}^1_t) \qquad (\text{plus, along time, } (W^1)^\top \delta^1_{t+1} \odot f'(\mathrm{net}^1_t)).$$
#
# We take $\delta^1$ and $\delta^2$ by autodiff (an `eps` on each layer's $\mathrm{net}$)
# and check that the two directions together give $\delta^1$ exactly.

# %%
H2 = 3
U2 = jnp.asarray(rng.standard_normal((H2, H)) / np.sqrt(H))
W2 = jnp.asarray(rng.standard_normal((H2, H2)) / np.sqrt(H2))
b2 = jnp.asarray(rng.standard_normal(H2) * 0.1)
V2 = jnp.asarray(rng.standard_normal((K, H2)) / np.sqrt(H2))
s0_2 = jnp.zeros(H2)


def E2(eps1, eps2):  # the two-layer network, loss on the top layer only
    _, s1 = forward(U, W, b, xs, s0, eps1)
    _, s2 = forward(U2, W2, b2, s1, s0_2, eps2)  # layer 2 reads s^1_t as its input
    return step_losses(s2, V2, c, ys).sum()


delta1_ad, delta2_ad = jax.grad(E2, argnums=(0, 1))(zeros, jnp.zeros((T, H2)))
from_above = delta2_ad @ U2  # row t: (U^2)^T δ^2_t
from_later = jnp.concatenate([delta1_ad[1:] @ W, jnp.zeros((1, H))])  # row t: (W^1)^T δ^1_{t+1}
check(
    "§4 δ^1_t = ((U^2)^T δ^2_t + (W^1)^T δ^1_{t+1}) ⊙ f'(net^1_t)",
    (from_above + from_later) * fprime,
    delta1_ad,
)

# %% [markdown]
# In code this is one line: the `dx` that layer 2's `rnn_backward` returns *is* the
# upstream `dh` of layer 1, for all $t$ at once. `jaxrnn.stack_forward` /
# `jaxrnn.stack_backward` do exactly that; we compare their weight gradients with
# `jax.grad` of the same two-layer loss (row-major, batch of 2 sequences).

# %%
N = 2
x_b = jnp.asarray(rng.standard_normal((N, T, D)))
y_b = jnp.asarray(rng.integers(0, K, (N, T)))
layers = (jaxrnn.RNNParams(U.T, W.T, b), jaxrnn.RNNParams(U2.T, W2.T, b2))
h0s = (jnp.zeros((N, H)), jnp.zeros((N, H2)))


def stack_loss(layers):
    h_top, _, _ = jaxrnn.stack_forward(x_b, h0s, layers)
    return jaxrnn.temporal_softmax_loss(h_top @ V2.T + c, y_b)[0]


h_top, _, cache = jaxrnn.stack_forward(x_b, h0s, layers)
scores, affine_cache = jaxrnn.temporal_affine_forward(h_top, V2.T, c)
_, dscores = jaxrnn.temporal_softmax_loss(scores, y_b)
dh_top, _, _ = jaxrnn.temporal_affine_backward(dscores, affine_cache)
_, _, dlayers = jaxrnn.stack_backward(dh_top, cache)  # §4: dx of layer 2 -> dh of layer 1
dlayers_ad = jax.grad(stack_loss)(layers)  # autodiff of the same forward pass
for layer, (g, g_ad) in enumerate(zip(dlayers, dlayers_ad, strict=True)):
    for name, a_, b_ in zip(("dWx", "dWh", "db"), g, g_ad, strict=True):
        check(f"§4 stack_backward layer {layer + 1} {name} vs jax.grad", a_, b_)

# %% [markdown]
# (`jax.grad` through `jaxrnn.stack_forward` differentiates the `lax.scan` forward
# pass by plain autodiff: `rnn_forward` has no custom gradient. The hand-derived
# `stack_backward` agrees with it.)
#
# ## 5. Weight gradients: sums over time
#
# Every weight is shared by all steps, so its gradient is a sum over $t$ of the
# per-step terms:
#
# $$\frac{\partial E}{\partial W} = \sum_t \delta_t\, s_{t-1}^\top, \qquad
#   \frac{\partial E}{\partial U} = \sum_t \delta_t\, x_t^\top, \qquad
#   \frac{\partial E}{\partial b} = \sum_t \delta_t, \qquad
#   \frac{\partial E}{\partial x_t} = U^\top \delta_t .$$

# %%
s_prev = all_states[:-1]  # s_0 .. s_{T-1}
dU_ad, dW_ad, db_ad = jax.grad(E, argnums=(0, 1, 2))(U, W, b, V, c, s0)
check(
    "§5 dE/dW = Σ_t δ_t s_{t-1}^T",
    sum(jnp.outer(delta_hand[t], s_prev[t]) for t in range(T)),
    dW_ad,
)
check("§5 dE/dU = Σ_t δ_t x_t^T", sum(jnp.outer(delta_hand[t], xs[t]) for t in range(T)), dU_ad)
check("§5 dE/db = Σ_t δ_t", delta_hand.sum(axis=0), db_ad)
dxs_ad = jax.grad(lambda xs_: step_losses(forward(U, W, b, xs_, s0)[1], V, c, ys).sum())(xs)
check("§5 dE/dx_t = U^T δ_t", delta_hand @ U, dxs_ad)

# %% [markdown]
# The sums need not be loops: stacking $\delta_t$ for all $t$ (and all $N$
# sequences of a batch) as rows turns each into **one** matrix product over
# $N \cdot T$ rows, e.g. `dWh = h_prev.T @ da` with `h_prev, da: (N*T, H)`. That is
# what `jaxrnn.rnn_backward` does after its backward scan. It takes the upstream
# `dh` ($\partial E_t / \partial h_t$ for every $t$) and returns
# `(dx, dh0, dWx, dWh, db)`; note the transposes ($W_h = W^\top$):

# %%
_, rnn_cache = jaxrnn.rnn_forward(xs[None], s0[None], U.T, W.T, b)
dx, dh0, dWx, dWh, db_ = jaxrnn.rnn_backward(dE_ds[None], rnn_cache)
check("§5 jaxrnn.rnn_backward dWh == (dE/dW)^T", dWh, dW_ad.T)
check("§5 jaxrnn.rnn_backward dWx == (dE/dU)^T", dWx, dU_ad.T)
check("§5 jaxrnn.rnn_backward db", db_, db_ad)
check("§5 jaxrnn.rnn_backward dx", dx[0], dxs_ad)
check("§5 jaxrnn.rnn_backward dh0", dh0[0], jax.grad(E, argnums=5)(U, W, b, V, c, s0))

# %% [markdown]
# ## 6. Output layer and loss
#
# Row-major and batched, with a mask that switches individual steps off (padding):
#
# $$\text{scores}_t = h_t V + c, \qquad
#   E = -\frac{1}{N} \sum_{n,t} m_{n,t} \log \operatorname{softmax}(\text{scores}_{n,t})[y_{n,t}]$$
#
# $$d\text{scores} = \big(\operatorname{softmax}(\text{scores}) - \operatorname{onehot}(y)\big) \odot \frac{m}{N}, \qquad
#   dV = \sum_t h_t^\top d\text{scores}_t, \qquad dc = \sum_{n,t} d\text{scores}_{n,t}, \qquad
#   dh_t = d\text{scores}_t V^\top$$
#
# (`V` here is `(H, K)`, the document's $V^\top$.) The loss is averaged over the
# batch $N$ and summed over time, as in the document's code.

# %%
h_b = jnp.asarray(rng.standard_normal((N, T, H)))
V_r, c_r = V.T, c  # row-major output weights: (H, K), (K,)
mask = jnp.asarray(rng.random((N, T)) < 0.7, jnp.float64)  # some steps switched off


def loss_from_scores(scores):  # E = -(1/N) Σ m log softmax(scores)[y]
    logp = jax.nn.log_softmax(scores, axis=-1)
    return -(mask * jnp.take_along_axis(logp, y_b[..., None], axis=-1)[..., 0]).sum() / N


def output_loss(h_b, V_r, c_r):
    return loss_from_scores(h_b @ V_r + c_r)  # scores_t = h_t V + c


scores = h_b @ V_r + c_r
dscores = (jax.nn.softmax(scores, axis=-1) - jax.nn.one_hot(y_b, K)) * (mask / N)[..., None]
dh_ad, dV_ad, dc_ad = jax.grad(output_loss, argnums=(0, 1, 2))(h_b, V_r, c_r)
check("§6 dscores = (softmax - onehot) m / N", dscores, jax.grad(loss_from_scores)(scores))
check("§6 dV = Σ_t h_t^T dscores_t", jnp.einsum("nth,ntk->hk", h_b, dscores), dV_ad)
check("§6 dc = Σ dscores", dscores.sum(axis=(0, 1)), dc_ad)
check("§6 dh_t = dscores_t V^T", dscores @ V_r.T, dh_ad)
loss_lib, dscores_lib = jaxrnn.temporal_softmax_loss(scores, y_b, mask)
check("§6 jaxrnn.temporal_softmax_loss: E", loss_lib, output_loss(h_b, V_r, c_r))
check("§6 jaxrnn.temporal_softmax_loss: dscores", dscores_lib, dscores)

# %% [markdown]
# ## Everything together
#
# The full chain, by hand: loss → `dscores` (§6) → `dh` (§6) → BPTT through the RNN
# (§3) → weight gradients (§5). Against `jax.grad` of the whole forward pass written
# as plain autodiff (`jaxrnn.reference.scan_rnn`, a `lax.scan` without custom
# gradients):

# %%
h0_b = jnp.asarray(rng.standard_normal((N, H)) * 0.5)
params = (U.T, W.T, b, V_r, c_r)


def full_loss(Wx, Wh, b, V_r, c_r):
    h_ = jaxrnn.reference.scan_rnn(x_b, h0_b, Wx, Wh, b)
    return output_loss(h_, V_r, c_r)


h_f, cache_f = jaxrnn.rnn_forward(x_b, h0_b, U.T, W.T, b)
scores_f, aff = jaxrnn.temporal_affine_forward(h_f, V_r, c_r)
_, ds = jaxrnn.temporal_softmax_loss(scores_f, y_b, mask)  # §6
dh_f, dV_f, dc_f = jaxrnn.temporal_affine_backward(ds, aff)  # §6
_, _, dWx_f, dWh_f, db_f = jaxrnn.rnn_backward(dh_f, cache_f)  # §3, §5
grads_ad = jax.grad(full_loss, argnums=(0, 1, 2, 3, 4))(*params)
for name, g, g_ad in zip(
    ("dWx", "dWh", "db", "dV", "dc"), (dWx_f, dWh_f, db_f, dV_f, dc_f), grads_ad, strict=True
):
    check(f"full chain by hand vs jax.grad: {name}", g, g_ad)

# %% [markdown]
# ## Finally: finite differences
#
# `jax.grad` is itself code. The contract (MATH.md §7) also asks for agreement with
# central differences, $\big(E(\theta + \epsilon v) - E(\theta - \epsilon v)\big) / 2\epsilon \approx \langle \nabla E, v \rangle$,
# to $10^{-6}$. We check the hand-derived gradient along random directions $v$.

# %%
hand = (dWx_f, dWh_f, db_f, dV_f, dc_f)
eps_fd = 1e-5
for i in range(3):
    v = [jnp.asarray(rng.standard_normal(p.shape)) for p in params]
    plus = full_loss(*[p + eps_fd * d for p, d in zip(params, v, strict=True)])
    minus = full_loss(*[p - eps_fd * d for p, d in zip(params, v, strict=True)])
    fd = (plus - minus) / (2 * eps_fd)
    directional = sum(jnp.vdot(g, d) for g, d in zip(hand, v, strict=True))
    check(f"§7 central differences, random direction {i + 1}", directional, fd, tol=1e-6)

# %% [markdown]
# ## Summary

# %%
worst = max(CHECKS.values())
print(f"{len(CHECKS)} checks, worst relative error {worst:.1e}")
assert worst <= 1e-6
