"""`jaxrnn.train`: short runs of a tiny model (tens of steps, hidden 16, seq-len 16, batch 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrnn import model
from jaxrnn.train import TrainConfig, load_run, sample, train
from jaxrnn.train._data import default_corpus

TINY = dict(
    hidden=16,
    layers=2,
    seq_len=16,
    batch=4,
    lr=1e-2,
    eval_every=10,
    sample_every=0,
    val_chars=1024,
    quiet=True,
)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """6,000 characters of Python source (the default corpus' first files).

    With batch 4 and seq-len 16 an epoch is 84 steps, so a 90-step run crosses
    an epoch boundary. All tests share these shapes, so they share compiled code.
    """
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(default_corpus(max_chars=6_000).text, encoding="utf-8")
    return str(path)


def config(text, **kw) -> TrainConfig:
    return TrainConfig(text=text, **{**TINY, **kw})


@pytest.fixture(scope="module")
def trained(text):
    return train(config(text, steps=60))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_loss_decreases(trained):
    m = trained.metrics
    assert list(m["step"]) == list(range(1, 61)) and trained.step == 60
    first, last = m["train_bpc"][:10].mean(), m["train_bpc"][-10:].mean()
    assert first > 5.5  # ~ log2(vocab size): the untrained model guesses uniformly
    assert last < first - 1.5 and last < trained.unigram_bpc  # beyond character frequencies
    val = m["val_bpc"][~np.isnan(m["val_bpc"])]
    assert len(val) == 6 and trained.val_bpc == val[-1]
    assert val[-1] < val[0] - 0.5  # the held-out loss falls too


def test_hand_and_autodiff_give_the_same_losses(text, trained):
    auto = train(config(text, steps=60, grad="autodiff"))
    np.testing.assert_allclose(auto.metrics["train_loss"], trained.metrics["train_loss"], rtol=2e-5)
    for a, h in zip(leaves(auto.params), leaves(trained.params), strict=True):
        np.testing.assert_allclose(a, h, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("k", [5, "sqrt"])  # seq-len 16: segments 5, 5, 5, 1; sqrt: 4 x 4
def test_bptt_checkpoint_gives_the_same_losses(text, trained, k):
    """--bptt-checkpoint (memory-bounded BPTT): the run of the full store, to float32 rounding."""
    run = train(config(text, steps=60, bptt_checkpoint=k))
    np.testing.assert_allclose(run.metrics["train_loss"], trained.metrics["train_loss"], rtol=2e-5)
    for a, h in zip(leaves(run.params), leaves(trained.params), strict=True):
        np.testing.assert_allclose(a, h, rtol=1e-3, atol=1e-4)


def test_bptt_checkpoint_option(capsys):
    """Validated (positive int or 'sqrt', hand gradients only) and shown by --help apart
    from --checkpoint-every."""
    from jaxrnn._cli import main
    from jaxrnn.train import ConfigError

    for value in (4, "sqrt", None):
        assert TrainConfig(bptt_checkpoint=value).validate().bptt_checkpoint == value
    bad = {0: "integer, got 0", "half": "integer or 'sqrt', got 'half'",
           True: "integer or 'sqrt', got True", 1.5: "integer or 'sqrt', got 1.5"}  # fmt: skip
    for value, match in bad.items():
        with pytest.raises(ConfigError, match=f"--bptt-checkpoint must be a positive {match}"):
            TrainConfig(bptt_checkpoint=value).validate()
    with pytest.raises(ConfigError, match="--bptt-checkpoint needs --grad hand"):
        TrainConfig(bptt_checkpoint="sqrt", grad="autodiff").validate()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--bptt-checkpoint K|sqrt memory-bounded BPTT over each chunk" in out
    assert "which saves files (default: off, every step stored)" in out


def test_train_is_the_plain_stateful_tbptt_loop(text, trained):
    """train() == a direct loop: chunks in order, the hidden state carried, clip + Adam."""
    import optax

    from jaxrnn.train._data import Vocab, split

    corpus = Path(text).read_text(encoding="utf-8")
    vocab = Vocab.from_text(corpus)
    train_ids, _ = split(vocab.encode(corpus), 4, 16)
    streams = train_ids[: len(train_ids) // 4 * 4].reshape(4, -1)  # (N, S)
    params = model.init(jax.random.split(jax.random.PRNGKey(0))[0], vocab.size, [16, 16])
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt_state, h = opt.init(params), model.init_state(params, 4)
    losses = []
    for i in range(60):  # all in the first epoch (84 chunks)
        chunk = streams[:, 16 * i : 16 * i + 17]
        loss, grads, h = model.loss_and_grads(params, chunk[:, :-1], chunk[:, 1:], h0=h)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss) / 16)
    np.testing.assert_allclose(trained.metrics["train_loss"], losses, rtol=1e-5)
    for a, b in zip(leaves(trained.params), leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_resume_is_bit_exact(text, tmp_path):
    """2k steps in one run == k steps, then --resume for k more (crossing an epoch at 84)."""
    kw = dict(checkpoint_every=20, sample_every=30)
    full = train(config(text, steps=90, out=str(tmp_path / "full"), **kw))
    first = train(config(text, steps=45, out=str(tmp_path / "split"), **kw))
    assert first.step == 45 and not first.interrupted
    rest = train(config(text, steps=90, out=str(tmp_path / "split"), resume=True, **kw))
    assert rest.step == 90
    for a, b in zip(leaves(full.params), leaves(rest.params), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(rest.metrics["step"], np.arange(1, 91))
    assert np.array_equal(rest.metrics["train_loss"][45:], full.metrics["train_loss"][45:])
    a, b = _npz(tmp_path / "full/checkpoint.npz"), _npz(tmp_path / "split/checkpoint.npz")
    assert a.keys() == b.keys()  # params, optimizer state, carry, step, data position, key
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert a["step"] == 90 and a["epoch"] == 1  # the run crossed into the second epoch
    csv = [
        np.genfromtxt(tmp_path / d / "metrics.csv", delimiter=",", names=True)
        for d in ("full", "split")
    ]
    for col in ("step", "train_loss"):  # not the timings
        np.testing.assert_array_equal(csv[0][col], csv[1][col])
    both = ~np.isnan(csv[0]["val_bpc"]) & ~np.isnan(csv[1]["val_bpc"])  # the split run
    assert both.sum() == 9  # also evaluated at step 45, where it stopped
    np.testing.assert_array_equal(csv[0]["val_bpc"][both], csv[1]["val_bpc"][both])
    # the run directory has everything the issue asks for
    files = sorted(os.listdir(tmp_path / "split"))
    assert files == [
        ".jaxrnn.lock",  # the run's lock (held only while it runs) and its holder's pid
        ".jaxrnn.pid",
        "checkpoint.npz",
        "config.json",
        "loss.png",
        "metrics.csv",
        "samples.txt",
        "vocab.json",
    ]
    cfg = json.loads((tmp_path / "split/config.json").read_text())
    assert cfg["config"]["hidden"] == 16 and cfg["corpus"]["kind"] == "file"
    assert cfg["data"]["unigram_bpc"] == pytest.approx(rest.unigram_bpc)
    heads = [
        ln
        for ln in (tmp_path / "split/samples.txt").read_text().splitlines()
        if ln.startswith("=== step")
    ]
    assert [int(h.split()[2].rstrip(",")) for h in heads] == [0, 30, 45, 60, 90]


def test_resume_refuses_changed_model_or_text(text, tmp_path):
    train(config(text, steps=5, out=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="--hidden 16 -> 32"):
        train(config(text, steps=10, out=str(tmp_path / "r"), resume=True, hidden=32))
    other = tmp_path / "other.txt"
    other.write_text(Path(text).read_text(encoding="utf-8")[::-1], encoding="utf-8")
    with pytest.raises(ValueError, match="text differs"):
        train(config(str(other), steps=10, out=str(tmp_path / "r"), resume=True))
    with pytest.raises(ValueError, match="already holds a run"):
        train(config(text, steps=5, out=str(tmp_path / "r")))


def test_load_run_and_sampling(trained, text, tmp_path):
    r = train(config(text, steps=3, out=str(tmp_path / "r")))
    run = load_run(tmp_path / "r")
    assert run.step == 3 and run.vocab == r.vocab and run.config.hidden == 16
    for a, b in zip(leaves(run.params), leaves(r.params), strict=True):
        assert np.array_equal(a, b)

    params, vocab = trained.params, trained.vocab
    s = sample(params, vocab, prime="def ", length=80, seed=3)
    assert len(s) == 84 and s.startswith("def ")
    assert sample(params, vocab, prime="def ", length=80, seed=3) == s  # deterministic
    assert sample(params, vocab, prime="def ", length=80, seed=4) != s
    assert sample(params, vocab, length=0, prime="ab") == "ab"
    with pytest.raises(ValueError, match="temperature"):
        sample(params, vocab, temperature=-1.0)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sample(params, vocab, prime="\u2603")


def test_temperature(trained):
    params, vocab = trained.params, trained.vocab
    # temperature 0 is argmax: check against a step-by-step greedy loop over predict_step
    greedy = sample(params, vocab, prime="import ", length=30, temperature=0.0, seed=1)
    assert sample(params, vocab, prime="import ", length=30, temperature=0.0, seed=2) == greedy
    state = model.init_state(params, 1)
    ids = list(vocab.encode("import "))
    for t in range(len(ids) + 29):
        scores, state = model.predict_step(params, np.asarray(ids[t : t + 1]), state)
        if t >= len(ids) - 1:
            ids.append(int(np.argmax(scores[0])))
    assert greedy == vocab.decode(ids)

    def entropy(s):  # bits per character of the sample's character frequencies
        p = np.unique(list(s), return_counts=True)[1] / len(s)
        return -(p * np.log2(p)).sum()

    cold = sample(params, vocab, length=1500, temperature=0.3, seed=0)
    hot = sample(params, vocab, length=1500, temperature=2.0, seed=0)
    assert entropy(cold) + 1.0 < entropy(hot)


MULTI = """
import dataclasses, json, sys
import jax
from jaxrnn.train import TrainConfig, train
cfg = TrainConfig(**json.loads(sys.argv[1]))
r = train(cfg)
out = {"devices": jax.device_count(), "loss": r.metrics["train_loss"].tolist(), "val": r.val_bpc}
try:
    train(dataclasses.replace(cfg, batch=3))
except ValueError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def test_multi_device_matches_single_device(text):
    """The batch sharded over 2 (forced host) devices gives the losses of 1 device."""
    cfg = config(text, steps=20)
    one = train(cfg)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-c", MULTI, json.dumps(cfg.to_dict())],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    two = json.loads(proc.stdout.strip().splitlines()[-1])
    assert two["devices"] == 2
    np.testing.assert_allclose(two["loss"], one.metrics["train_loss"], rtol=1e-5)
    assert two["val"] == pytest.approx(one.val_bpc, rel=1e-5)
    assert "--batch 3 is not divisible by the 2 visible devices" in two["error"]
