"""The data pipeline of `jaxrnn train`: corpus, vocabulary, batches, checkpoint files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn.train._checkpoint import (
    CheckpointError,
    TrainState,
    load_checkpoint,
    save_checkpoint,
    write_atomic,
)
from jaxrnn.train._config import RunDirError
from jaxrnn.train._data import (
    Batcher,
    CorpusError,
    Vocab,
    default_corpus,
    min_chars,
    read_text_file,
    split,
    unigram_entropy,
    val_chunks,
)


def test_default_corpus_is_deterministic_and_capped():
    a, b = default_corpus(max_chars=50_000), default_corpus(max_chars=50_000)
    assert a == b
    assert len(a.text) == a.source["chars"] == 50_000
    assert a.source["files"] == sorted(a.source["files"]) and a.source["files"]
    assert all(name.endswith(".py") for name in a.source["files"])
    assert default_corpus(max_chars=1000).text == a.text[:1000]  # a prefix, same order


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"abc\x00def" * 100, "binary"),
        (b"caf\xe9 latin-1 text" * 100, "not UTF-8"),
        (b" \n\t\n" * 100, "only whitespace"),
    ],
)
def test_read_text_file_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        read_text_file(path)


def test_read_text_file_rejects_a_directory(tmp_path):
    with pytest.raises(CorpusError, match="directory"):
        read_text_file(tmp_path)


def test_read_text_file_reads_utf8(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo wörld ✓\n" * 10, encoding="utf-8")
    corpus = read_text_file(path)
    assert corpus.text == "héllo wörld ✓\n" * 10
    assert corpus.source["kind"] == "file" and corpus.source["chars"] == 140


def test_vocab_roundtrip(tmp_path):
    v = Vocab.from_text("hello, wörld\n")
    assert v.chars == sorted(set("hello, wörld\n"))
    ids = v.encode("world hello")
    assert ids.dtype == np.int32 and v.decode(ids) == "world hello"
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == v
    with pytest.raises(ValueError, match="not in the vocabulary: 'XZ'"):
        v.encode("hello XZ")


def test_unigram_entropy():
    assert unigram_entropy(np.array([0, 1, 2, 3] * 5), 4) == pytest.approx(2.0)
    assert unigram_entropy(np.array([2, 2, 2]), 4) == 0.0
    assert unigram_entropy(np.array([0, 0, 0, 1]), 2) == pytest.approx(0.811278, abs=1e-6)


def test_split_too_short_is_a_clear_error():
    n = min_chars(4, 16)
    train, val = split(np.arange(n), 4, 16)
    assert len(train) + len(val) == n and len(val) >= 4 * 17 and len(train) >= 4 * 17
    np.testing.assert_array_equal(np.concatenate([train, val]), np.arange(n))
    with pytest.raises(CorpusError, match=f"too short: {n - 1} characters, need at least {n}"):
        split(np.arange(n - 1), 4, 16)


def test_batches_are_contiguous_chunks_of_streams():
    ids = np.arange(1000)
    b = Batcher(ids, batch=4, seq_len=10, seed=0)
    S = 250
    assert b.offset(0) == 0 and b.chunks_in(0) == (S - 1) // 10
    tokens = []
    pos = (0, 0)
    for _ in range(b.chunks_in(0)):
        x, y = b.get(*pos)
        assert x.shape == y.shape == (4, 10)
        np.testing.assert_array_equal(y, x + 1)  # targets = the next character
        tokens.append(x)
        pos = b.advance(*pos)
    assert pos == (1, 0)  # the epoch wrapped
    # chunk i+1 of each stream starts where chunk i ended: the hidden state carries over
    np.testing.assert_array_equal(np.concatenate(tokens, axis=1), ids[:1000].reshape(4, S)[:, :240])
    offsets = {b.offset(e) for e in range(1, 20)}
    assert offsets <= set(range(10)) and len(offsets) > 1  # epochs start at varying offsets
    x, _ = b.get(1, 0)
    np.testing.assert_array_equal(x[:, 0], np.arange(4) * S + b.offset(1))


def test_val_chunks_cover_streams_in_order():
    chunks = val_chunks(np.arange(400), batch=2, seq_len=8, max_chars=10_000)
    assert len(chunks) == (200 - 1) // 8
    xs = np.concatenate([x for x, _ in chunks], axis=1)
    np.testing.assert_array_equal(xs, np.arange(400).reshape(2, 200)[:, : xs.shape[1]])
    assert len(val_chunks(np.arange(400), batch=2, seq_len=8, max_chars=40)) == 2


def _state(seed: int) -> TrainState:
    r = np.random.default_rng(seed)
    params = {"W": r.standard_normal((3, 4)).astype(np.float32), "b": np.zeros(4, np.float32)}
    opt = (np.int32(seed), {"mu": r.standard_normal(4).astype(np.float32)})
    carry = (r.standard_normal((2, 4)).astype(np.float32),)
    return TrainState(params, opt, carry, 10 + seed, 1, 7, np.array([0, seed], np.uint32))


def _assert_state_equal(a: TrainState, b: TrainState) -> None:
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_roundtrip_is_bit_exact(tmp_path):
    state = _state(1)
    state = state._replace(params={k: jnp.asarray(v) for k, v in state.params.items()})
    save_checkpoint(tmp_path / "c.npz", state)
    back = load_checkpoint(tmp_path / "c.npz", _state(0))
    _assert_state_equal(back, state)
    assert (back.step, back.epoch, back.chunk) == (11, 1, 7)
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.npz", _state(0))
    save_checkpoint(tmp_path / "c.npz", _state(1))
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "c.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "c.npz", _state(0))
    save_checkpoint(tmp_path / "c.npz", _state(1))
    other = _state(0)._replace(carry=(np.zeros((2, 5), np.float32),))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "c.npz", other)


def test_atomic_checkpoint_survives_a_kill_mid_write(tmp_path):
    """A process SIGKILLed halfway through writing a checkpoint leaves the old one intact."""
    save_checkpoint(tmp_path / "c.npz", _state(1))
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        from jaxrnn.train import _checkpoint
        from test_data import _state

        def killed_mid_write(fd):  # half the bytes reached the disk, then the process dies
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)

        _checkpoint._fsync = killed_mid_write
        _checkpoint.save_checkpoint({str(tmp_path / "c.npz")!r}, _state(2))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert any(name.startswith(".c.npz.tmp-") for name in os.listdir(tmp_path))  # the torn file
    _assert_state_equal(load_checkpoint(tmp_path / "c.npz", _state(0)), _state(1))
    save_checkpoint(tmp_path / "c.npz", _state(3))  # the next save works ...
    _assert_state_equal(load_checkpoint(tmp_path / "c.npz", _state(0)), _state(3))
    # ... and leaves the other writer's temporary file alone (the run's lock holder cleans up)
    assert sorted(os.listdir(tmp_path))[1:] == ["c.npz"]


def test_write_atomic_cleans_up_after_an_error(tmp_path, monkeypatch):
    from jaxrnn.train import _checkpoint

    write_atomic(tmp_path / "f", b"old")

    def fail(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_checkpoint, "_fsync", fail)
    with pytest.raises(RunDirError, match=f"^{tmp_path / 'f'}: cannot write: No space left"):
        write_atomic(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_temporary_files_have_names_of_their_own(tmp_path):
    """Two writers of one file never share (or delete) a temporary file."""
    from jaxrnn.train._checkpoint import temp_name

    names = {temp_name(tmp_path / "checkpoint.npz") for _ in range(100)}
    assert len(names) == 100
    assert all(n.name.startswith(f".checkpoint.npz.tmp-{os.getpid()}-") for n in names)
    stale = tmp_path / ".checkpoint.npz.tmp-1-abcd"  # another (live or dead) writer's file
    stale.write_bytes(b"x")
    write_atomic(tmp_path / "checkpoint.npz", b"new")
    assert stale.read_bytes() == b"x"


def test_vocab_load_names_a_corrupt_file(tmp_path):
    Vocab(list("ab")).save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == Vocab(list("ab"))
    for bad in (b"{", b'{"x": 1}', b'{"chars": 5}', b"\xff\xfe", b'{"chars": ["ab"]}'):
        (tmp_path / "v.json").write_bytes(bad)
        with pytest.raises(ValueError, match=f"^{tmp_path / 'v.json'}: corrupt vocabulary"):
            Vocab.load(tmp_path / "v.json")
