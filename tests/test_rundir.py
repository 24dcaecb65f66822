"""The run directory: what `jaxrnn train` may write into, and every bad input it must refuse.

Tiny runs (hidden 8, one layer, seq-len 8, batch 2) on a 3,000-character text.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import model
from jaxrnn._cli import main
from jaxrnn.train import (
    ConfigError,
    DivergedError,
    RunDirError,
    TrainConfig,
    Vocab,
    _checkpoint,
    _loop,
    sample,
    train,
)
from jaxrnn.train._data import default_corpus

TINY = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "2", "--quiet"]
OURS = (".jaxrnn.lock", ".jaxrnn.pid")  # the lock and its holder's pid: jaxrnn's own bookkeeping


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_text(default_corpus(max_chars=3000).text, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory, text):
    """A finished 3-step run directory (copy it before changing it)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--text", text, *TINY, "--steps", "3", "--out", str(out)]) == 0
    return out


def _code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse: exit 2 with the usage
        return e.code


def _snapshot(root: Path) -> dict:
    return {
        p: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name not in OURS
    }


def _read_only_fs(monkeypatch):
    def mkdir(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


def _copy_run(run, tmp_path, edit=None):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    if edit:
        name, data = edit
        (dst / name).write_bytes(data)
    return dst


# Each case: (what to set up in tmp_path -> argv, a piece of the one-line message).
# "T" is replaced by the tiny training options, "RUN" by a copy of a finished run.
BAD = {
    "out-is-a-file": (lambda d: ["--out", _file(d / "f")], "--out {d}/f: is a file"),
    "out-under-proc": (lambda d: ["--out", "/proc/jaxrnn-test/run"], "/proc/jaxrnn-test/run: "),
    "out-on-read-only-fs": ("rofs", "Read-only file system"),
    "out-foreign-dir": ("foreign", "holds no jaxrnn run (config.json, samples.txt)"),
    "out-holds-a-run": ("run", "already holds a run: continue it with --resume"),
    "resume-foreign-dir": ("foreign-resume", 'was not written by jaxrnn train (no "jaxrnn_run"'),
    "resume-missing-dir": (lambda d: ["--out", d / "nope", "--resume"], "no run at"),
    "resume-corrupt-config": (("config.json", b'{"config": '), "config.json: corrupt, not valid"),
    "resume-config-no-config-key": (("config.json", b'{"jaxrnn_run": 1}'), 'no "config" object'),
    "resume-config-not-an-object": (("config.json", b"[1, 2]"), "expected a JSON object"),
    "resume-corrupt-vocab": (("vocab.json", b"\xff{"), "vocab.json: corrupt vocabulary"),
    "lr-inf": (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    "lr-nan": (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    "lr-zero": (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    "lr-negative": (["--lr", "-0.1"], "--lr must be a finite number > 0"),
    "clip-zero": (["--clip", "0"], "--clip must be a number > 0"),
    "hidden-zero": (["--hidden", "0"], "--hidden must be a positive integer"),
    "bptt-checkpoint-zero": (["--bptt-checkpoint", "0"], "--bptt-checkpoint must be a positive"),
    "bptt-checkpoint-half": (["--bptt-checkpoint", "half"], "or 'sqrt', got 'half'"),
    "bptt-checkpoint-autodiff": (
        ["--bptt-checkpoint", "sqrt", "--grad", "autodiff"],
        "--bptt-checkpoint needs --grad hand (the hand-derived BPTT), got --grad autodiff",
    ),
    "seed-20-digits": (["--seed", "99999999999999999999"], "seed must be an integer in [0, 4294"),
    "seed-2**32+1": (["--seed", "4294967297"], "seed must be an integer in [0, 4294967296)"),
    "seed-negative": (["--seed", "-1"], "seed must be an integer in [0, 4294967296)"),
    "seed-1e20": (["--seed", "1e20"], "seed must be an integer in [0, 4294967296), got '1e20'"),
    "sample-seed-1e20": ("sample --seed 1e20", "got '1e20'"),
    "sample-seed-20-digits": ("sample --seed 99999999999999999999", "must be an integer in [0,"),
    "sample-corrupt-config": ("sample config.json", "config.json: corrupt, not valid JSON"),
    "sample-config-no-config-key": ("sample config.json {}", 'config.json: no "config" object'),
    "sample-corrupt-vocab": ("sample vocab.json", "vocab.json: corrupt vocabulary"),
    "sample-bad-config-values": ("sample config.json hidden", 'config.json: corrupt "config"'),
    "demo-negative-N": ("demo --N -1", "--N must be >= 0, got -1"),
    "demo-zero-H": ("demo --H 0", "--H must be >= 1, got 0"),
    "demo-seed-2**32": ("demo --seed 4294967296", "seed must be an integer in [0, 4294967296)"),
}


def _argv(case, tmp_path, text, run, monkeypatch) -> list[str]:
    setup, _ = BAD[case]
    train_ = ["train", "--text", text, *TINY, "--steps", "2"]
    if isinstance(setup, list):
        return [*train_, *setup, "--out", str(tmp_path / "new")]
    if callable(setup):
        return [*train_, *map(str, setup(tmp_path))]
    if isinstance(setup, tuple):  # a copy of a run with one file replaced, resumed
        return ["train", "--out", str(_copy_run(run, tmp_path, setup)), "--resume", "--quiet"]
    if setup == "rofs":
        _read_only_fs(monkeypatch)
        return [*train_, "--out", str(tmp_path / "new")]
    if setup.startswith("foreign"):
        (tmp_path / "p").mkdir()
        (tmp_path / "p/config.json").write_text('{"my": 1}')
        (tmp_path / "p/samples.txt").write_text("keep\n")
        return [*train_, "--out", str(tmp_path / "p"), *(["--resume"] if "resume" in setup else [])]
    if setup == "run":
        return [*train_, "--out", str(_copy_run(run, tmp_path))]
    words = setup.split()
    if words[0] == "demo":
        return words
    if words[1].startswith("--"):  # sample with a bad option
        return ["sample", "--run", str(run), *words[1:]]
    content = {"config.json": b"{", "vocab.json": b'{"chars": 3}'}[words[1]]
    if words[2:] == ["{}"]:
        content = b"{}"
    elif words[2:] == ["hidden"]:
        saved = json.loads((run / "config.json").read_text())
        saved["config"]["hidden"] = "eight"
        content = json.dumps(saved).encode()
    return ["sample", "--run", str(_copy_run(run, tmp_path, (words[1], content)))]


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_without_a_traceback_or_a_write(
    case, tmp_path, text, run, monkeypatch, capsys
):
    argv = _argv(case, tmp_path, text, run, monkeypatch)
    before = _snapshot(tmp_path)
    assert _code(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = BAD[case][1].format(d=tmp_path)
    assert message in err.strip().splitlines()[-1], err  # the message is the last line
    assert _snapshot(tmp_path) == before  # no file that existed was touched
    assert not (tmp_path / "new").exists()  # nor a new run directory made


def test_train_into_a_new_or_empty_dir_and_resume_only_a_run(text, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--text", text, *TINY, "--steps", "2", "--out", str(empty)]) == 0
    saved = json.loads((empty / "config.json").read_text())
    assert saved["jaxrnn_run"] == 1  # the marker that makes it resumable
    assert main(["train", "--out", str(empty), "--resume", "--steps", "3", "--quiet"]) == 0
    assert _lock_is_free(empty)  # released at the end of the run


def _lock_is_free(run_dir) -> bool:
    from filelock import FileLock

    lock = FileLock(str(run_dir / ".jaxrnn.lock"), timeout=0)
    lock.acquire()
    lock.release()
    return True


HOLD = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0)
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin
"""


def test_a_locked_run_dir_is_refused_with_the_holders_pid(text, run, tmp_path):
    dst = _copy_run(run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(dst / ".jaxrnn.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"  # as if another training held it
        (dst / ".jaxrnn.pid").write_text(f"{holder.pid}\n")
        before = _snapshot(tmp_path)
        for extra in (["--resume", "--steps", "5"], ["--text", text, *TINY]):
            match = rf"--out {dst} is in use by another jaxrnn train \(pid {holder.pid}\)"
            with pytest.raises(RunDirError, match=match):
                train(_config(text, dst, extra))
        assert _snapshot(tmp_path) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def _config(text, out, extra) -> TrainConfig:
    if "--resume" in extra:
        saved = json.loads((out / "config.json").read_text())["config"]
        return TrainConfig(**{**saved, "steps": 5, "resume": True, "out": str(out)})
    return TrainConfig(text=text, hidden=8, layers=1, seq_len=8, batch=2, steps=2, out=str(out))


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(text, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the second checkpoint: exit 2, one line, step 2's checkpoint intact."""
    if not sys.platform.startswith("linux"):
        pytest.skip("finds the file behind a descriptor in /proc/self/fd")
    out = tmp_path / "run"
    real = _checkpoint._fsync

    def full_at_second_checkpoint(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".checkpoint.npz.tmp-" in name and (out / "checkpoint.npz").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(_checkpoint, "_fsync", full_at_second_checkpoint)
    argv = ["train", "--text", text, *TINY, "--out", str(out), "--steps", "6"]
    assert main([*argv, "--checkpoint-every", "2"]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"jaxrnn train: error: {out}/checkpoint.npz: cannot write: No space left on device\n"
    )
    with np.load(out / "checkpoint.npz") as z:
        assert int(z["step"]) == 2
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
    monkeypatch.setattr(_checkpoint, "_fsync", real)  # space again: the run continues
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    rows = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(rows["step"], np.arange(1, 7))


def test_divergence_stops_with_exit_3_and_keeps_the_last_finite_checkpoint(text, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--text", text, *TINY, "--out", str(out), "--steps", "20"]
    assert main([*argv, "--lr", "1e38", "--checkpoint-every", "1"]) == 3
    err = capsys.readouterr().err
    assert "step 2: training diverged" in err and "--lr" in err and "--clip" in err
    assert "Traceback" not in err and err.count("\n") == 1
    with np.load(out / "checkpoint.npz") as z:
        assert int(z["step"]) == 1
        assert all(np.isfinite(z[k]).all() for k in z.files)
    rows = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True, ndmin=1)
    assert list(rows["step"]) == [1]
    cfg = TrainConfig(text=text, hidden=8, layers=1, seq_len=8, batch=2, steps=20, lr=1e38)
    with pytest.raises(DivergedError, match="step 2") as e:
        train(cfg)
    assert e.value.step == 2


def test_sigint_is_handled_before_anything_compiles(text, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the sampler or the step compiles: no KeyboardInterrupt inside XLA, exit 130."""
    handlers = []
    real_sample, real_step = _loop.sample, _loop.optimizer_and_step

    def sample(*a, **k):
        handlers.append(signal.getsignal(signal.SIGINT))
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C "during compilation"
        return real_sample(*a, **k)

    def optimizer_and_step(*a, **k):
        handlers.append(signal.getsignal(signal.SIGINT))
        return real_step(*a, **k)

    monkeypatch.setattr(_loop, "sample", sample)
    monkeypatch.setattr(_loop, "optimizer_and_step", optimizer_and_step)
    out = tmp_path / "run"
    argv = ["train", "--text", text, *TINY, "--out", str(out), "--steps", "50"]
    assert main(argv) == 130
    assert len(handlers) == 2 and signal.default_int_handler not in handlers
    assert "interrupted; checkpoint saved" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_resume_cuts_outputs_written_after_the_checkpoint(text, tmp_path, monkeypatch):
    """A crash after step 12's outputs but before its checkpoint (the one on disk is step 8),
    with a torn last line in metrics.csv and samples.txt: resuming gives the files of an
    uninterrupted run (no "=== step 9" twice, no bogus row)."""
    kw = dict(checkpoint_every=4, sample_every=3, eval_every=2, sample_length=20)
    cfg = TrainConfig(text=text, hidden=8, layers=1, seq_len=8, batch=2, quiet=True, **kw)
    full = tmp_path / "full"
    train(TrainConfig(**{**cfg.__dict__, "steps": 14, "out": str(full)}))
    crashed = tmp_path / "crashed"
    saves = {}
    real = _loop.save_checkpoint

    def save(path, ts):
        real(path, ts)
        saves[ts.step] = Path(path).read_bytes()

    monkeypatch.setattr(_loop, "save_checkpoint", save)
    train(TrainConfig(**{**cfg.__dict__, "steps": 14, "out": str(crashed)}))
    (crashed / "checkpoint.npz").write_bytes(saves[8])  # steps 9..14 were never checkpointed
    with open(crashed / "metrics.csv", "a") as f:
        f.write("15,4.1")  # torn
    with open(crashed / "samples.txt", "a") as f:
        f.write("=== st")  # torn
    train(TrainConfig(**{**cfg.__dict__, "steps": 14, "out": str(crashed), "resume": True}))
    _assert_same_run(full, crashed)


def _assert_same_run(a: Path, b: Path) -> None:
    """metrics.csv equal but for the timing columns; samples, vocab, checkpoint bit-exact."""
    rows = [(d / "metrics.csv").read_text().splitlines() for d in (a, b)]
    assert [r.split(",")[:4] for r in rows[0]] == [r.split(",")[:4] for r in rows[1]]
    for name in ("samples.txt", "vocab.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    with np.load(a / "checkpoint.npz") as za, np.load(b / "checkpoint.npz") as zb:
        assert za.files == zb.files
        for k in za.files:
            assert za[k].dtype == zb[k].dtype and np.array_equal(za[k], zb[k]), k


def test_seeds_out_of_range_are_refused_by_the_library():
    for seed in (-1, 2**32, 2**32 + 1, 2**64, 1.0):
        with pytest.raises(ConfigError, match=r"--seed must be an integer in \[0, 4294967296\)"):
            TrainConfig(seed=seed).validate()
    TrainConfig(seed=2**32 - 1).validate()
    params = model.init(jax.random.PRNGKey(0), 3, [4], dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"sample: seed must be an integer in \[0, 4294967296\)"):
        sample(params, Vocab(list("abc")), length=3, seed=2**32)
    assert len(sample(params, Vocab(list("abc")), length=3, seed=2**32 - 1)) == 3
