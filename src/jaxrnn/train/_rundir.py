"""The run directory: what may be trained into, its lock, and its ``config.json``.

Layout of ``runs/NAME/``::

    config.json     the TrainConfig, the corpus source and sizes, and the marker
                    ``"jaxrnn_run": 1`` that identifies a directory jaxrnn train wrote
    vocab.json      the characters, in id order
    checkpoint.npz  the latest checkpoint (see _checkpoint.py)
    metrics.csv     one row per step: train bpc, validation bpc where evaluated
    loss.png        train and validation curves (bits per character)
    samples.txt     text sampled from the model at intervals
    .jaxrnn.lock    held (flock, via the ``filelock`` package) for the whole run
    .jaxrnn.pid     the pid of the process that holds the lock

Rules for ``--out`` (:func:`check_out`, :func:`claim`): a new run goes only into
a directory that does not exist or is empty; ``--resume`` only into a directory
whose ``config.json`` carries the marker. Anything else is refused before a
byte is written, and one process at a time holds a run directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ._checkpoint import CHECKPOINT, os_error, write_atomic
from ._config import RunDirError
from ._data import Vocab

CONFIG = "config.json"
VOCAB = "vocab.json"
METRICS = "metrics.csv"
PLOT = "loss.png"
SAMPLES = "samples.txt"
LOCK = ".jaxrnn.lock"
PID = ".jaxrnn.pid"
MARKER = "jaxrnn_run"  # config.json[MARKER] == FORMAT: a directory jaxrnn train wrote
FORMAT = 1
FILES = (CONFIG, VOCAB, CHECKPOINT, METRICS, PLOT, SAMPLES, PID)


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> dict:
    """Reads a JSON object; :class:`RunDirError` names a missing, unreadable or corrupt file."""
    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise os_error(path, e, "cannot read") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise RunDirError(f"{path}: corrupt, not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise RunDirError(f"{path}: corrupt, expected a JSON object, got {type(obj).__name__}")
    return obj


def read_config(run_dir: str | os.PathLike, *, marker: bool = True) -> dict:
    """The ``config.json`` of a run: ``{"config": {...}, "corpus": {...}, ...}``.

    ``marker=True`` (training into it) also requires ``"jaxrnn_run"``; sampling
    reads runs written before the marker existed.
    """
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunDirError(f"no run at {run_dir} (no {CONFIG})")
    saved = read_json(path)
    if marker and saved.get(MARKER) != FORMAT:
        raise RunDirError(
            f'{path} was not written by jaxrnn train (no "{MARKER}": {FORMAT}); '
            f"refusing to write into {run_dir}"
        )
    if not isinstance(saved.get("config"), dict):
        raise RunDirError(f'{path}: no "config" object: not a config.json jaxrnn train wrote')
    if marker and not isinstance(saved.get("corpus"), dict):
        raise RunDirError(f'{path}: no "corpus" object: not a config.json jaxrnn train wrote')
    return saved


def read_vocab(run_dir: Path) -> Vocab:
    """The run's ``vocab.json``; :class:`RunDirError` names a missing or corrupt file."""
    try:
        return Vocab.load(run_dir / VOCAB)
    except ValueError as e:
        raise RunDirError(str(e)) from e


def _ours(name: str) -> bool:
    """The lock, the pid file, or a temporary file of ours (left by a killed process)."""
    if name in (LOCK, PID):
        return True
    return name.startswith(".") and name[1:].split(".tmp-")[0] in FILES and ".tmp-" in name


def _listing(names: list[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more


def _is_run(run_dir: Path) -> bool:
    try:
        read_config(run_dir)
    except RunDirError:
        return False
    return True


def check_out(run_dir: Path, resume: bool, *, probe_lock: bool = True) -> dict | None:
    """Checks ``--out`` against the rules above, reading only; returns the saved config.

    Returns ``config.json`` for ``resume`` (None for a new run). Raises
    :class:`RunDirError` naming the directory and what is in it, or the pid of
    the process that holds it (``probe_lock``: tried and let go at once).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir}: is a file, not a directory")
    try:
        found = os.listdir(run_dir) if run_dir.exists() else []
    except OSError as e:
        raise os_error(run_dir, e, "cannot list") from e
    if probe_lock and LOCK in found:
        _lock(run_dir).release()
    names = [n for n in found if not _ours(n)]
    if resume:
        return read_config(run_dir)
    if names and CONFIG in names and _is_run(run_dir):
        raise RunDirError(
            f"--out {run_dir} already holds a run: continue it with --resume, "
            "or choose another --out"
        )
    if names:
        raise RunDirError(
            f"--out {run_dir} is not empty and holds no jaxrnn run ({_listing(names)}); "
            "train into a new or empty directory"
        )
    return None


def _lock(run_dir: Path):
    """Takes the run directory's lock without waiting; returns the held lock."""
    from filelock import FileLock, Timeout  # the train extra; needed only to write a run

    lock = FileLock(str(run_dir / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = f" (pid {int((run_dir / PID).read_text())})"
        except (OSError, ValueError):
            holder = ""
        raise RunDirError(
            f"--out {run_dir} is in use by another jaxrnn train{holder}; "
            "wait for it to finish, or choose another --out"
        ) from None
    except OSError as e:
        raise os_error(run_dir / LOCK, e, "cannot lock") from e
    return lock


@contextlib.contextmanager
def claim(run_dir: Path, resume: bool):
    """Creates ``run_dir`` and holds its lock for the block; checks the rules again under it.

    While the lock is held no other jaxrnn process writes here, so temporary files
    left by killed processes are removed.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(run_dir, e, "cannot create the directory") from e
    lock = _lock(run_dir)
    try:
        check_out(run_dir, resume, probe_lock=False)  # another process may have written it
        write_atomic(run_dir / PID, f"{os.getpid()}\n".encode())
        for name in os.listdir(run_dir):
            if _ours(name) and ".tmp-" in name:
                (run_dir / name).unlink(missing_ok=True)
        yield run_dir
    finally:
        lock.release()
