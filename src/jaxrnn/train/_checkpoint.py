"""Training checkpoints: everything a bit-exact resume needs, written atomically.

A checkpoint is one ``.npz`` file holding the leaves of the parameters, the
optax state and the hidden-state carry (in ``jax.tree_util`` order), the step,
the data position ``(epoch, chunk)`` and the RNG key. It is written to a
temporary file in the same directory, flushed and fsync'ed, then moved over
the old checkpoint with ``os.replace`` (atomic on POSIX and Windows): a
process killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ._config import RunDirError

CHECKPOINT = "checkpoint.npz"
_TREES = ("params", "opt_state", "carry")
_fsync = os.fsync  # module-level so a test can simulate a kill between write and rename


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match the run's model."""


class TrainState(NamedTuple):
    """The complete state of a training run between two steps."""

    params: Any  # ModelParams
    opt_state: Any  # optax state
    carry: Any  # tuple of (B, H_l) hidden states carried into the next chunk
    step: int  # steps done
    epoch: int  # data position: the epoch ...
    chunk: int  # ... and the chunk within it that the next step trains on
    key: Any  # (2,) uint32 jax.random key for the samples written during training


def temp_name(path: Path) -> Path:
    """A temporary file next to ``path`` that no other writer uses: pid and random bytes."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def os_error(path: str | os.PathLike, e: OSError, doing: str = "cannot write") -> RunDirError:
    """One line naming ``path`` and the OS's reason, e.g. ``runs/a/x: cannot write: Disk full``."""
    return RunDirError(f"{path}: {doing}: {e.strerror or e}")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file in the same directory and a rename.

    The temporary file has a name of its own (pid and random bytes) and only this
    call removes it, on failure: a killed process leaves it behind, another
    writer never deletes it (the run directory's lock holder cleans up, see
    ``_rundir.claim``). An OSError (disk full, read-only, ...) becomes a
    :class:`RunDirError` naming ``path``; ``path`` keeps its previous content.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            _fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise os_error(path, e) from e
        raise


def save_checkpoint(path: str | os.PathLike, state: TrainState) -> None:
    """Saves ``state`` atomically to ``path`` (an ``.npz`` file)."""
    arrays: dict[str, np.ndarray] = {}
    for name in _TREES:
        for i, leaf in enumerate(jax.tree_util.tree_leaves(getattr(state, name))):
            arrays[f"{name}/{i:04d}"] = np.asarray(leaf)
    for name in ("step", "epoch", "chunk"):
        arrays[name] = np.asarray(getattr(state, name), np.int64)
    arrays["key"] = np.asarray(state.key)
    buf = io.BytesIO()
    # numpy's stub lets **arrays bind savez's allow_pickle; the keys are "name/0000" paths
    np.savez(buf, **arrays)  # pyright: ignore[reportArgumentType]
    write_atomic(path, buf.getvalue())


def _unflatten(name: str, template: Any, files: dict[str, np.ndarray], path) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(template)
    stored = sorted(k for k in files if k.startswith(name + "/"))
    if len(stored) != len(leaves):
        raise CheckpointError(
            f"{path}: {name} has {len(stored)} arrays, the model expects {len(leaves)}; "
            "was it written by a run with a different configuration?"
        )
    out = []
    for k, want in zip(stored, leaves, strict=True):
        got = files[k]
        if got.shape != np.shape(want):
            raise CheckpointError(
                f"{path}: {k} has shape {got.shape}, the model expects {np.shape(want)}"
            )
        out.append(got)
    return jax.tree_util.tree_unflatten(treedef, out)


def _read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: corrupt or incomplete checkpoint ({e})") from e
    missing = [k for k in ("step", "epoch", "chunk", "key") if k not in files]
    if missing:
        raise CheckpointError(f"{path}: corrupt checkpoint, missing {', '.join(missing)}")
    return files


def load_params(path: str | os.PathLike, template: Any) -> tuple[Any, int]:
    """Loads only the parameters (structure of ``template``) and the step: for sampling."""
    files = _read(path)
    return _unflatten("params", template, files, path), int(files["step"])


def load_checkpoint(path: str | os.PathLike, template: TrainState) -> TrainState:
    """Loads a checkpoint into the structure of ``template`` (a freshly initialised state).

    Arrays come back as numpy arrays with their stored dtypes (bit-exact).
    Raises :class:`CheckpointError` for a missing, corrupt or mismatched file.
    """
    files = _read(path)
    trees = {name: _unflatten(name, getattr(template, name), files, path) for name in _TREES}
    return TrainState(
        **trees,
        step=int(files["step"]),
        epoch=int(files["epoch"]),
        chunk=int(files["chunk"]),
        key=files["key"],
    )
