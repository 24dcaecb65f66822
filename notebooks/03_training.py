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
# # Training a character-level RNN with the hand-derived BPTT
#
# The full model of MATH.md: characters → word embedding → vanilla tanh RNN →
# `scores = h V + c` → softmax cross-entropy (§6). Its gradients come from the
# hand-derived chain (`jaxrnn.model.loss_and_grads`: §6 → §3/§4/§5 → the
# embedding), an [optax](https://github.com/google-deepmind/optax) Adam step
# applies them. `jaxrnn.train` runs the loop behind `jaxrnn train`: the text is cut
# into `batch` parallel streams read `seq_len` characters at a time, and the hidden
# state is carried from one chunk to the next (truncated BPTT in chunks).
#
# To show that the hand-derived gradients *are* the gradients, we train the same
# model twice from the same initialisation and batches: once with the hand BPTT and
# once with `jax.grad` of a plain `lax.scan` (`grad="autodiff"`), and compare the
# loss curves. The model is tiny (one layer, $H = 64$) and trains for 300 steps, so
# the notebook runs in well under a minute on a laptop CPU.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxrnn import model
from jaxrnn import train as jt

plt.rcParams.update({"figure.dpi": 72, "axes.grid": True, "grid.alpha": 0.3})

# %% [markdown]
# ## The data
#
# Without a `text` file, `jaxrnn.train` uses the Python standard library's own
# source code as its corpus: always available, and structured enough for a small
# model to pick up indentation, keywords and names.

# %%
corpus = jt.load_corpus()
vocab = jt.Vocab.from_text(corpus.text)
print(f"{len(corpus.text):,} characters, {vocab.size} distinct")
print(corpus.text[1000:1300])

# %% [markdown]
# ## One batch: hand-derived gradients vs `jax.grad`
#
# Before training, one check on a real batch (float32, as in training):
# `model.loss_and_grads` (hand-derived) against `jax.value_and_grad` of
# `model.loss(..., grad="autodiff")`.

# %%
HIDDEN, SEQ_LEN, BATCH = 64, 32, 16
params0 = model.init(jax.random.PRNGKey(0), vocab.size, [HIDDEN])  # an untrained model
ids = vocab.encode(corpus.text[: BATCH * (SEQ_LEN + 1)]).reshape(BATCH, SEQ_LEN + 1)
tokens, targets = jnp.asarray(ids[:, :-1]), jnp.asarray(ids[:, 1:])  # predict the next char

loss_hand, grads_hand, _ = model.loss_and_grads(params0, tokens, targets)
(loss_auto, _), grads_auto = jax.value_and_grad(
    lambda p: model.loss(p, tokens, targets, grad="autodiff"), has_aux=True
)(params0)
diffs = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), grads_hand, grads_auto)
nats_to_bpc = 1 / (SEQ_LEN * np.log(2))  # the loss is summed over the T = SEQ_LEN steps
print(
    f"loss: hand {float(loss_hand) * nats_to_bpc:.6f} bpc, autodiff {float(loss_auto) * nats_to_bpc:.6f} bpc"
)
print(f"(uniform guessing among {vocab.size} characters: {np.log2(vocab.size):.2f} bpc)")
print(f"max |hand - autodiff| over all gradients: {max(jax.tree_util.tree_leaves(diffs)):.1e}")
print(
    f"largest gradient entry:                   {max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads_auto)):.1e}"
)
assert max(jax.tree_util.tree_leaves(diffs)) < 1e-4

# %% [markdown]
# ## Samples before training
#
# The untrained model scores about as badly as guessing uniformly among the
# characters (or worse), and its samples are noise:

# %%
print(jt.sample(params0, vocab, prime="def ", length=200, temperature=0.8, seed=1))

# %% [markdown]
# ## Training twice: hand-derived BPTT and autodiff
#
# Same seed, so the same initialisation and the same batches. Adam, learning rate
# $3 \cdot 10^{-3}$, gradients clipped to global norm 1. The loss is reported in
# bits per character (bpc); the *unigram* line is what a model that ignores the
# context entirely would score (the entropy of the character frequencies).

# %%
STEPS = 300
runs = {}
for grad in ("hand", "autodiff"):
    config = jt.TrainConfig(
        hidden=HIDDEN,
        layers=1,
        seq_len=SEQ_LEN,
        batch=BATCH,
        steps=STEPS,
        lr=3e-3,
        grad=grad,
        seed=0,
        eval_every=50,
        val_chars=8192,
        out=None,  # library use: no run directory
        quiet=True,
    )
    runs[grad] = jt.train(config, progress=False)
    r = runs[grad]
    print(f"{grad:>8}: {r.step} steps in {r.elapsed_s:.1f}s, validation {r.val_bpc:.3f} bpc")

# %%
m_hand, m_auto = runs["hand"].metrics, runs["autodiff"].metrics
diff = np.abs(m_hand["train_bpc"] - m_auto["train_bpc"])
print(f"max |hand - autodiff| of the training loss over {STEPS} steps: {diff.max():.1e} bpc")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
ax1.plot(m_hand["step"], m_hand["train_bpc"], lw=2.5, alpha=0.6, label="train, hand-derived BPTT")
ax1.plot(m_auto["step"], m_auto["train_bpc"], lw=1, ls="--", color="k", label="train, autodiff")
val = ~np.isnan(m_hand["val_bpc"])
ax1.plot(
    m_hand["step"][val],
    m_hand["val_bpc"][val],
    "o",
    ms=8,
    color="tab:red",
    label="validation, hand",
)
ax1.plot(
    m_auto["step"][val], m_auto["val_bpc"][val], "x", ms=8, color="k", label="validation, autodiff"
)
ax1.axhline(runs["hand"].unigram_bpc, color="gray", ls=":", label="unigram baseline")
ax1.set(
    title="Loss curves: hand-derived vs autodiff gradients",
    xlabel="step",
    ylabel="bits per character",
)
ax1.legend()
same = diff == 0
ax2.semilogy(m_hand["step"][~same], diff[~same], ".", color="tab:purple", label="|hand − autodiff|")
loss_nats = np.float32(np.median(m_hand["train_bpc"]) / nats_to_bpc)  # a typical float32 loss
ax2.axhline(
    np.spacing(loss_nats) * nats_to_bpc, color="gray", ls="--", label="one float32 step of the loss"
)
ax2.set(
    title=f"|hand − autodiff| per step ({same.sum()} of {STEPS} exactly 0)",
    xlabel="step",
    ylabel="absolute difference (bpc)",
    ylim=(1e-9, 1),
)
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The two curves lie on top of each other. They are not always bit-identical: in float32
# the hand BPTT and autodiff add the same terms in different orders (the weight
# gradients as one matrix product over all $N \cdot T$ rows vs step-by-step
# accumulation), which changes the last bits, and 300 Adam steps carry those
# differences along. They stay within a few float32 rounding steps of the loss
# (dashed line), some seven orders of magnitude below the loss itself.
#
# ## Samples after training
#
# 300 steps on a 64-unit RNN: far from good Python, but the model has learnt
# indentation, common keywords and the shape of identifiers. Lower temperatures
# sample more conservatively.

# %%
trained = runs["hand"].params
for temperature in (0.8, 0.5):
    print(f"--- temperature {temperature} ---")
    print(jt.sample(trained, vocab, prime="def ", length=300, temperature=temperature, seed=1))

# %% [markdown]
# ## The same model as a Flax NNX module
#
# A researcher who writes models as [Flax NNX](https://flax.readthedocs.io) modules
# swaps flax's `nnx.RNN(nnx.SimpleCell(...))` for `jaxrnn.nnx.RNN` and keeps the rest:
# `nnx.Embed`, `nnx.Linear`, an `nnx.Optimizer` over optax, `nnx.value_and_grad`
# under `nnx.jit`. The gradient of the recurrent layer is then the hand-derived BPTT.
# Below, the character model (embedding → tanh RNN → affine → softmax) is written
# once as an NNX module and trained twice from the same weights on the same
# batches (random windows of the corpus, each from a zero state): with
# `jaxrnn.nnx.RNN`, and with flax's own `nnx.RNN`, whose weights are copied from
# jaxrnn's by `jaxrnn.convert.to_nnx_rnn`.

# %%
import optax
from flax import nnx

import jaxrnn.nnx
from jaxrnn import convert


class CharModel(nnx.Module):
    def __init__(self, vocab_size, hidden, rngs, flax_rnn=False):
        self.embed = nnx.Embed(vocab_size, hidden, rngs=rngs)
        self.rnn = jaxrnn.nnx.RNN(hidden, hidden, rngs=rngs)  # tanh, as above
        if flax_rnn:  # flax's own layer, with the same weights
            cell = nnx.SimpleCell(hidden, hidden, rngs=nnx.Rngs(1))  # overwritten:
            self.rnn = convert.to_nnx_rnn(self.rnn.params(), nnx.RNN(cell))
        self.out = nnx.Linear(hidden, vocab_size, rngs=rngs)

    def __call__(self, tokens):  # (N, T) -> scores (N, T, K)
        return self.out(self.rnn(self.embed(tokens)))


def loss_fn(m, tokens, targets):  # mean over the batch, summed over time, as model.loss
    logp = jax.nn.log_softmax(m(tokens))
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1).sum() / tokens.shape[0]


@nnx.jit
def train_step(m, optimizer, tokens, targets):
    loss, grads = nnx.value_and_grad(loss_fn)(m, tokens, targets)
    optimizer.update(m, grads)
    return loss


data = vocab.encode(corpus.text)
starts = np.random.default_rng(0).integers(0, len(data) - SEQ_LEN - 1, (STEPS, BATCH))
windows = data[starts[..., None] + np.arange(SEQ_LEN + 1)]  # (STEPS, BATCH, SEQ_LEN + 1)
tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
nnx_runs = {}
for name, flax_rnn in (("jaxrnn.nnx.RNN", False), ("flax nnx.RNN", True)):
    m = CharModel(vocab.size, HIDDEN, nnx.Rngs(0), flax_rnn=flax_rnn)
    optimizer = nnx.Optimizer(m, tx, wrt=nnx.Param)
    train_step(m, optimizer, jnp.asarray(windows[0, :, :-1]), jnp.asarray(windows[0, :, 1:]))
    m = CharModel(vocab.size, HIDDEN, nnx.Rngs(0), flax_rnn=flax_rnn)  # again, after the compile
    optimizer = nnx.Optimizer(m, tx, wrt=nnx.Param)
    losses = [train_step(m, optimizer, jnp.asarray(w[:, :-1]), jnp.asarray(w[:, 1:]))
              for w in windows]  # fmt: skip
    nnx_runs[name] = losses = np.asarray(losses) * nats_to_bpc
    print(f"{name:>15}: {STEPS} steps, last 50 steps {losses[-50:].mean():.3f} bpc")

l_ours, l_flax = nnx_runs.values()
print(
    f"max |jaxrnn - flax| of the training loss over {STEPS} steps: {np.abs(l_ours - l_flax).max():.1e} bpc"
)
assert np.abs(l_ours - l_flax).max() < 1e-4 and l_ours[-50:].mean() < l_ours[:10].mean() - 1

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, losses in nnx_runs.items():
    ax.plot(losses, label=name, lw=1, ls="-" if "jaxrnn" in name else "--")
ax.set(xlabel="step", ylabel="training loss (bpc)", title="the char model as an NNX module")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Same weights, same batches, the same loss curve: the two layers compute the same
# function, and their gradients differ only by float32 rounding, so 300 Adam steps
# stay together. The speed of the two training steps is measured by
# `benchmarks/modules.py` (jaxrnn's is faster than `nnx.RNN`'s at every benchmark
# shape; see `benchmarks/RESULTS.md`), not here.
