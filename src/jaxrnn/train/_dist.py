"""Multi-process training on ``jax.distributed``: joining the run, the global batch, agreement.

One run is N processes (one per host, or per GPU, or N on 127.0.0.1), each with its
own devices. After :func:`initialize`, ``jax.devices()`` lists the devices of all of
them; the training step is jitted over one 1-D ``("batch",)`` mesh of those devices
(``_step.shardings``), so XLA averages the gradients with its own collectives
(gloo on CPU, NCCL on GPU, ICI on TPU). Every process runs the same program on
its part of the global batch (:func:`put_rows`: ``jax.make_array_from_process_local_data``)
and holds a copy of the replicated parameters. Process 0 alone writes the run
directory; whatever decides the control flow (Ctrl-C, what to evaluate) is agreed
on through :mod:`jax.experimental.multihost_utils`, so no process waits in a
collective that another skips. With one process every function here is the
single-process path.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

import jax
import numpy as np

from ._config import ConfigError

DEFAULT_TIMEOUT = 60  # seconds: reaching the coordinator at start; noticing a dead process


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> ``(host, port)``; ConfigError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--coordinator must be HOST:PORT with 0 < PORT < 65536, got {text!r}")
    return host.strip("[]"), int(port)


def _retry(probe, timeout: float, failure: str) -> None:
    """Calls ``probe()`` until it returns without OSError; ConfigError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe()
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(f"{failure} after {timeout:g} s ({e.strerror or e})") from None
            time.sleep(0.2)


def _bind(port: int) -> None:
    """Binds and frees ``port`` on every interface, where process 0's service will listen."""
    family, host = (socket.AF_INET6, "::") if socket.has_dualstack_ipv6() else (socket.AF_INET, "")
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))


def _connect(host: str, port: int) -> None:
    socket.create_connection((host, port), timeout=1.0).close()


def _wait_for_port(coordinator: str, process_id: int, timeout: float) -> None:
    """Process 0: waits until the port is free; the others: until process 0 listens on it.

    (``jax.distributed`` aborts, or crashes, the whole process when its service cannot
    bind or its client cannot connect: these probes turn both into an error message.)
    """
    host, port = parse_address(coordinator)
    if process_id == 0:
        _retry(lambda: _bind(port), timeout, f"--coordinator {coordinator}: the port is in use")
    else:
        what = f"--coordinator {coordinator}: unreachable (is process 0 running, the port open?)"
        _retry(lambda: _connect(host, port), timeout, what)


def initialize(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    auto: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Joins the run: ``jax.distributed.initialize`` with a bounded wait; ConfigError on failure.

    Args:
      coordinator: ``HOST:PORT`` of process 0 (which listens there), or None with ``auto``.
      num_processes, process_id: N and this process's rank ``0 <= I < N``.
      auto: ``jax.distributed.initialize()`` without coordinator arguments: the
        cluster's own detection (SLURM, Cloud TPU, Open MPI, ...).
      timeout: seconds to wait for the coordinator (and for every process to join),
        and the heartbeat timeout after which a silent process counts as dead.
    """
    kw: dict[str, Any] = dict(
        initialization_timeout=int(timeout), heartbeat_timeout_seconds=int(timeout)
    )
    if not auto:
        assert coordinator is not None and process_id is not None, "_commands._join checks"
        _wait_for_port(coordinator, process_id, timeout)
        kw.update(coordinator_address=coordinator, num_processes=num_processes)
        kw.update(process_id=process_id)
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError) as e:  # e.g. auto: no cluster detected
        where = "cluster auto-detection" if auto else f"--coordinator {coordinator}"
        raise ConfigError(f"{where}: cannot start the distributed run: {e}") from None


def is_writer() -> bool:
    """Whether this process writes the run directory (process 0)."""
    return jax.process_index() == 0


def local_rows(sharding, batch: int) -> slice:
    """The rows of a ``(batch, ...)`` array that this process's devices hold under ``sharding``."""
    if sharding is None or jax.process_count() == 1:
        return slice(0, batch)
    idx = sharding.addressable_devices_indices_map((batch,)).values()
    starts = sorted({i[0].indices(batch)[:2] for i in idx})
    lo, hi = starts[0][0], starts[-1][1]
    if hi - lo != sum(b - a for a, b in starts):
        raise ConfigError("this process's devices do not hold one contiguous block of the batch")
    return slice(lo, hi)


def put_rows(tree: Any, sharding, batch: int) -> Any:
    """This process's rows ``(B_local, ...)`` of each leaf -> global ``(batch, ...)`` arrays."""
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), (batch, *np.shape(x)[1:])
        ),
        tree,
    )


def put_replicated(tree: Any, sharding) -> Any:
    """The same host values on every process -> arrays replicated on all devices."""
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
    )


def to_host(tree: Any) -> Any:
    """Global arrays -> numpy, the whole arrays on every process (multi-process: a collective)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (every process must call this)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag], np.int32))))


def from_writer(value: float) -> float:
    """Process 0's ``value``, bit for bit, on every process (every process must call this)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    words = np.asarray([value], np.float64).view(np.int32)  # exact without jax_enable_x64
    return float(np.asarray(multihost_utils.broadcast_one_to_all(words)).view(np.float64)[0])


def local_copy(tree: Any) -> Any:
    """Replicated global arrays -> this process's copies (for work on one process: sampling)."""
    if jax.process_count() == 1:
        return tree
    return jax.tree_util.tree_map(lambda x: x.addressable_data(0), tree)


def _digest(value: object) -> np.ndarray:
    """Four int32 words of the SHA-256 of ``repr(value)``."""
    return np.frombuffer(hashlib.sha256(repr(value).encode()).digest()[:16], np.int32)


def check_same(fields: dict[str, object], failure: Exception | None) -> None:
    """Checks at start that every process passed its own checks and has the same ``fields``.

    Every process calls this once (collectives: first whether each passed and how many
    fields it has, then the fields' digests, so every collective has one shape on all
    processes). Raises ``failure`` on the process that failed, and on the others a
    ConfigError naming the process that failed or the first field that differs from
    process 0's (the run then exits 2 everywhere).
    """
    if jax.process_count() == 1:
        if failure is not None:
            raise failure
        return
    from jax.experimental import multihost_utils

    status = np.asarray([failure is not None, len(fields)], np.int32)
    every = multihost_utils.process_allgather(status)  # (P, 2)
    if failure is not None:
        raise failure
    bad = np.flatnonzero(every[:, 0])
    if len(bad):
        raise ConfigError(f"process {bad[0]} failed its start checks (see its error)")
    if np.any(every[:, 1] != len(fields)):
        raise ConfigError("the processes run different versions of jaxrnn")
    names = list(fields)
    mine = np.stack([_digest((n, fields[n])) for n in names])  # (F, 4)
    every = multihost_utils.process_allgather(mine)  # (P, F, 4)
    for k, name in enumerate(names):
        differ = [p for p in range(len(every)) if not np.array_equal(every[p, k], every[0, k])]
        if differ:
            raise ConfigError(
                f"the processes disagree on {name}: process {differ[0]}'s differs from "
                f"process 0's; this process ({jax.process_index()}) has {fields[name]!r}"
            )
