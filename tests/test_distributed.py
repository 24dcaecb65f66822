"""`jaxrnn train` on several processes (jax.distributed, gloo over 127.0.0.1).

Every process is a real `jaxrnn train` with a tiny model (hidden 8, one layer, seq-len 8,
batch 4), bounded by a timeout and killed in a ``finally``. Equality with one process is
to float32 round-off: metrics.csv (which holds 6 significant digits) to one unit in its
last digit, the final parameters to a relative 1e-5 (measured: 4e-7 on a 2-core CPU,
jax 0.10.2). A multi-process run resumed after a kill -9 equals an uninterrupted
multi-process run bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_rundir import _assert_same_run

from jaxrnn._cli import main
from jaxrnn.train._data import default_corpus
from jaxrnn.train._launch import free_port

STEPS = 24
TIMEOUT = 150  # seconds: the limit of every subprocess
DEAD_S = 10  # --distributed-timeout of the runs below: the bound on noticing a dead process
OPTIONS = [
    *("--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "4", "--quiet"),
    *("--steps", str(STEPS), "--checkpoint-every", "8", "--eval-every", "4"),
    *("--sample-every", "12", "--lr", "1e-2", "--distributed-timeout", str(DEAD_S)),
]
PARAMS_RTOL = 1e-5

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process groups, /proc")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax-cache")
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_text(default_corpus(max_chars=4000).text, encoding="utf-8")
    return str(path)


@contextlib.contextmanager
def _processes():
    """A list to put Popen objects in; every one is killed and reaped at the end."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)  # its own session: children too
            p.communicate()


def _start(procs: list, text, out: Path, env, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jaxrnn", "train", "--text", text, "--out", str(out)]
    p = subprocess.Popen(
        [*cmd, *OPTIONS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    procs.append(p)
    return p


def _finish(p: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Waits for ``p`` (killed after ``timeout``); returns ``(exit code, stderr)``."""
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
        pytest.fail(f"no exit within {timeout} s: {err[-2000:]}")
    return p.returncode, err


def _run(text, out: Path, env, *extra) -> tuple[int, str]:
    with _processes() as procs:
        return _finish(_start(procs, text, out, env, *extra))


def _workers(procs, text, out, env, n, *extra) -> list[subprocess.Popen]:
    """``n`` processes of one run, started by hand (as on n hosts)."""
    join = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", str(n)]
    return [_start(procs, text, out, env, *join, "--process-id", str(i), *extra) for i in range(n)]


def _rows(out: Path) -> int:
    try:
        return (out / "metrics.csv").read_bytes().count(b"\n") - 1
    except FileNotFoundError:
        return -1


def _wait_rows(out: Path, n: int, procs) -> None:
    deadline = time.monotonic() + TIMEOUT
    while _rows(out) < n:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, f"fewer than {n} rows in {out}"
        time.sleep(0.01)


def _metrics(out: Path) -> np.ndarray:
    return np.genfromtxt(out / "metrics.csv", delimiter=",", skip_header=1, usecols=(0, 1, 2, 3))


def _assert_equal_to_round_off(one: Path, many: Path) -> None:
    """metrics.csv to one unit in its 6th significant digit; parameters to PARAMS_RTOL."""
    a, b = _metrics(one), _metrics(many)
    assert a.shape == b.shape == (STEPS, 4)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    unit = 10.0 ** (np.floor(np.log10(np.abs(a[ok]))) - 5)  # the last printed digit
    assert np.all(np.abs(a[ok] - b[ok]) <= unit * 1.0001), np.max(np.abs(a[ok] - b[ok]) / unit)
    with np.load(one / "checkpoint.npz") as za, np.load(many / "checkpoint.npz") as zb:
        assert za.files == zb.files
        for k in za.files:
            if za[k].dtype.kind == "f":
                scale = max(float(np.max(np.abs(za[k]))), np.finfo(np.float32).tiny)
                assert np.max(np.abs(za[k] - zb[k])) <= PARAMS_RTOL * scale, k
            else:
                np.testing.assert_array_equal(za[k], zb[k], err_msg=k)
    heads = [[ln for ln in (d / "samples.txt").read_text().splitlines() if ln.startswith("===")]
             for d in (one, many)]  # fmt: skip
    assert [h.split(",")[0] for h in heads[0]] == [h.split(",")[0] for h in heads[1]]


@pytest.fixture(scope="module")
def single(text, env, tmp_path_factory):
    """The reference: one process, one device (and it fills the compilation cache)."""
    out = tmp_path_factory.mktemp("single") / "run"
    rc, err = _run(text, out, env)
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def two(text, env, tmp_path_factory):
    """2 processes x 1 CPU device, through the --local-processes launcher."""
    out = tmp_path_factory.mktemp("two") / "run"
    rc, err = _run(text, out, env, "--local-processes", "2")
    assert rc == 0, err
    return out


def test_two_processes_equal_one(single, two):
    _assert_equal_to_round_off(single, two)
    assert '"processes": 2' in (two / "config.json").read_text()


def test_two_processes_of_two_devices_equal_one(single, text, env, tmp_path):
    env = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    with _processes() as procs:  # started by hand, as on two hosts
        codes = [_finish(p) for p in _workers(procs, text, tmp_path / "run", env, 2)]
    assert [rc for rc, _ in codes] == [0, 0], codes
    _assert_equal_to_round_off(single, tmp_path / "run")
    assert '"devices": 4' in (tmp_path / "run" / "config.json").read_text()


@pytest.mark.parametrize("victim", [0, 1], ids=["coordinator", "worker"])
def test_kill_one_worker_the_other_exits_then_resume_continues_exactly(
    victim, two, text, env, tmp_path
):
    """kill -9 of one process after a checkpoint: the other exits non-zero within DEAD_S.
    Process 0 killed (maybe mid-write): --resume (the launcher) ends equal, bit for bit,
    to the uninterrupted 2-process run."""
    out = tmp_path / "run"
    with _processes() as procs:
        workers = _workers(procs, text, out, env, 2)
        _wait_rows(out, 10, workers)  # the checkpoint of step 8 is on the disk
        workers[victim].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        rc, err = _finish(workers[1 - victim], timeout=DEAD_S + 20)
        elapsed = time.monotonic() - t0
    assert rc != 0, err
    assert elapsed < DEAD_S + 5, (elapsed, err[-2000:])
    if victim == 1:
        return  # resuming after either kill is the same: from process 0's last checkpoint
    rc, err = _run(text, out, env, "--local-processes", "2", "--resume")
    assert rc == 0, err
    _assert_same_run(two, out)
    assert not [n for n in os.listdir(out) if ".tmp-" in n]


@pytest.mark.parametrize(
    "extra, errors",
    [
        (["--hidden", "9"], ["the processes disagree on --hidden"] * 2),
        (["--text", "missing.txt"], ["process 1 failed its start checks", "no such file"]),
    ],
    ids=["hidden", "one-fails"],
)
def test_a_config_mismatch_stops_every_process_with_exit_2(extra, errors, text, env, tmp_path):
    """Process 1 differs (an option), or fails its own checks: both exit 2, nothing written."""
    join = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    with _processes() as procs:
        p0 = _start(procs, text, tmp_path / "run", env, *join, "--process-id", "0")
        p1 = _start(procs, text, tmp_path / "run", env, *join, "--process-id", "1", *extra)
        codes = [_finish(p) for p in (p0, p1)]
    for i, ((rc, err), error) in enumerate(zip(codes, errors, strict=True)):
        assert rc == 2, err
        assert f"[process {i}/2]: error: " in err and error in err, err
    assert not list((tmp_path / "run").glob("*.json"))  # nothing written


def test_the_coordinator_port_in_use_exits_2(text, env, tmp_path):
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        join = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0"]
        t0 = time.monotonic()
        rc, err = _run(text, tmp_path / "run", env, *join, "--distributed-timeout", "2")
    assert rc == 2, err
    assert f"--coordinator 127.0.0.1:{port}: the port is in use after 2 s" in err
    assert 2 <= time.monotonic() - t0 < 30


def test_an_unreachable_coordinator_exits_2_after_the_timeout(text, env, tmp_path):
    join = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    t0 = time.monotonic()
    rc, err = _run(
        text, tmp_path / "run", env, *join, "--process-id", "1", *("--distributed-timeout", "2")
    )
    assert rc == 2, err
    assert "the port open?) after 2 s" in err
    assert 2 <= time.monotonic() - t0 < 30


def test_distributed_auto_without_a_cluster_exits_2(text, env, tmp_path):
    rc, err = _run(text, tmp_path / "run", env, "--distributed", "auto")
    assert rc == 2, err
    assert "cluster auto-detection: cannot start the distributed run" in err


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie whose parent is gone


def _wait_gone(pids: list[int], within: float) -> None:
    deadline = time.monotonic() + within
    while not all(_gone(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if not _gone(p)]
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("kill", ["a worker", "the launcher", "ctrl-c"])
def test_the_launcher_leaves_no_process_behind(kill, text, env, tmp_path):
    """A worker killed: the launcher stops the other and exits non-zero. The launcher
    killed: the workers exit within a second. Ctrl-C: all stop at one step, exit 130,
    every row up to the checkpoint's step written once (--resume is tested above)."""
    out = tmp_path / "run"
    with _processes() as procs:
        launcher = _start(procs, text, out, env, "--local-processes", "2", "--steps", "100000")
        _wait_rows(out, 3, [launcher])
        workers = _children(launcher.pid)
        assert len(workers) == 2, workers
        if kill == "a worker":
            os.kill(workers[1], signal.SIGKILL)
            rc, err = _finish(launcher, timeout=DEAD_S + 20)
            assert rc not in (0, None), err
        elif kill == "the launcher":
            launcher.send_signal(signal.SIGKILL)
            _finish(launcher)
        else:
            launcher.send_signal(signal.SIGINT)
            rc, err = _finish(launcher)
            assert rc == 130, err
        _wait_gone(workers, within=5)
    if kill == "ctrl-c":
        with np.load(out / "checkpoint.npz") as z:
            step = int(z["step"])
        np.testing.assert_array_equal(_metrics(out)[:, 0], np.arange(1, step + 1))


def test_help_states_the_timeout(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help = " ".join(capsys.readouterr().out.split())
    for flag in ("--coordinator HOST:PORT", "--num-processes N", "--process-id I",
                 "--distributed {auto}", "--local-processes N", "--distributed-timeout SECONDS"):  # fmt: skip
        assert flag in help
    assert "count a silent process as dead after it (default: 60)" in help


JOIN = ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--coordinator", "127.0.0.1:1"], "--coordinator, --num-processes and --process-id go"),
        (["--num-processes", "2", "--process-id", "0"], "go together; got --num-processes"),
        (["--coordinator", "h", *JOIN[2:]], "--coordinator must be HOST:PORT"),
        (["--coordinator", "h:0", *JOIN[2:]], "--coordinator must be HOST:PORT"),
        ([*JOIN[:2], "--num-processes", "0", "--process-id", "0"],
         "--num-processes must be a positive integer"),
        ([*JOIN[:4], "--process-id", "2"], r"--process-id must be an integer in \[0, 2\)"),
        ([*JOIN[:4], "--process-id", "-1"], r"--process-id must be an integer in \[0, 2\)"),
        (["--distributed", "auto", "--process-id", "0"], "auto detects the cluster: drop"),
        ([*JOIN, "--distributed-timeout", "0"], "--distributed-timeout must be a finite"),
        ([*JOIN, "--distributed-timeout", "inf"], "--distributed-timeout must be a finite"),
        (["--local-processes", "0"], "--local-processes must be a positive integer"),
        (["--local-processes", "2", *JOIN], "--local-processes starts its own processes"),
        (["--local-processes", "2", "--distributed", "auto"], "starts its own processes"),
    ],  # fmt: skip
    ids=["coordinator-alone", "no-coordinator", "no-port", "port-0", "num-processes-0",
         "process-id-too-big", "process-id-negative", "auto-with-process-id", "timeout-0",
         "timeout-inf", "local-processes-0", "local-and-coordinator", "local-and-auto"],
)  # fmt: skip
def test_bad_multi_process_options_exit_2(argv, match, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxrnn train: error: ")
    assert re.search(match, err), err
