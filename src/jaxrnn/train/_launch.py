"""``jaxrnn train --local-processes N``: N worker processes of one run on 127.0.0.1.

Like ``torchrun --standalone``: the launcher picks a free port, starts worker ``I``
as ``jaxrnn train ... --coordinator 127.0.0.1:PORT --num-processes N --process-id I``,
and waits. Each worker runs in a session of its own (a terminal's Ctrl-C reaches
the launcher only):

- Ctrl-C: forwarded to every worker (they agree on a step, checkpoint and exit
  130); a second Ctrl-C kills them (the last checkpoint stays).
- A worker that exits non-zero (but 130 after a Ctrl-C) or dies: the others are
  killed, and the launcher exits with that worker's code (128 + N for signal N).
- SIGTERM or SIGHUP to the launcher: the workers are killed, exit 128 + the signal.
- The launcher killed outright (SIGKILL): each worker notices within
  :data:`WATCH_S` seconds that its parent is gone and exits (:func:`watch_parent`).

Every worker is reaped before the launcher returns: no orphans, no zombies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

PARENT_ENV = "JAXRNN_LAUNCHER_PID"  # set in a worker's environment: the launcher's pid
WATCH_S = 0.5  # how often a worker checks that its launcher is alive
EXIT_ORPHANED = 4


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watch_parent() -> None:
    """In a worker started by :func:`launch`: exit when the launcher is gone.

    A daemon thread compares ``os.getppid()`` with the launcher's pid every
    :data:`WATCH_S` seconds; a worker whose launcher died is re-parented, and exits
    at once with code 4 (``os._exit``: no shutdown barrier to wait at).
    """
    parent = os.environ.get(PARENT_ENV)
    if parent is None:
        return

    def watch():
        while os.getppid() == int(parent):
            time.sleep(WATCH_S)
        print("jaxrnn train: the launcher is gone; exiting", file=sys.stderr, flush=True)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="jaxrnn-watch-launcher", daemon=True).start()


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # -N: killed by signal N


def _kill(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)  # its session's group: the worker and its children


def _wait(procs: list[subprocess.Popen], interrupts: list[int]) -> int:
    """Waits for the workers; returns the exit code (see the module docstring)."""
    while True:
        codes = [p.poll() for p in procs]
        for i, rc in enumerate(codes):
            if rc not in (None, 0) and not (interrupts and _code(rc) == 130):
                if None in codes:
                    print(
                        f"jaxrnn train: worker {i} exited with code {_code(rc)}; "
                        "stopping the others",
                        file=sys.stderr,
                        flush=True,
                    )
                return _code(rc)
        done = [rc for rc in codes if rc is not None]
        if len(done) == len(codes):
            return max(_code(rc) for rc in done)  # 0, or 130 after a Ctrl-C
        time.sleep(0.05)


def launch(worker_argv: list[str], n: int) -> int:
    """Runs ``jaxrnn train *worker_argv`` as ``n`` processes of one run; returns the exit code.

    Args:
      worker_argv: the options of every worker (without the distributed ones).
      n: the number of processes, >= 1.
    """
    port = free_port()
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    procs: list[subprocess.Popen] = []
    interrupts: list[int] = []

    def on_signal(signum, frame):
        if signum == signal.SIGINT and not interrupts:
            interrupts.append(signum)
            _kill(procs, signal.SIGINT)
            return
        raise SystemExit(128 + signum)  # a second Ctrl-C, SIGTERM, SIGHUP: kill them all

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in handled}
    try:
        for i in range(n):
            dist = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n)]
            cmd = [sys.executable, "-m", "jaxrnn", "train", *worker_argv, *dist]
            procs.append(
                subprocess.Popen([*cmd, "--process-id", str(i)], env=env, start_new_session=True)
            )
        return _wait(procs, interrupts)
    except SystemExit as e:  # raised here only by on_signal, with an int
        assert isinstance(e.code, int), f"unexpected SystemExit({e.code!r})"
        return e.code
    finally:
        _kill(procs, signal.SIGKILL)
        for p in procs:
            p.wait()
        for s, h in old.items():
            signal.signal(s, h)
