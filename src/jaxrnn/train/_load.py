"""Reading back a run directory written by ``jaxrnn train``: for sampling and inspection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .. import model
from . import _rundir as rd
from ._checkpoint import CHECKPOINT, CheckpointError, load_params
from ._config import ConfigError, RunDirError, TrainConfig
from ._data import Vocab


class Run(NamedTuple):
    """A trained run: its configuration, vocabulary and latest parameters."""

    config: TrainConfig
    vocab: Vocab
    params: Any  # ModelParams, numpy leaves
    step: int  # steps the parameters were trained for
    path: Path


def load_run(run_dir: str | os.PathLike) -> Run:
    """Loads ``config.json``, ``vocab.json`` and the parameters of ``checkpoint.npz``.

    Needs only jax (not optax). Raises :class:`CheckpointError` with a clear
    message if the directory is not a run or its checkpoint is missing or corrupt,
    and :class:`RunDirError` (a ``ValueError`` too) naming a corrupt
    ``config.json`` or ``vocab.json``.
    """
    path = Path(run_dir)
    for name in (rd.CONFIG, rd.VOCAB, CHECKPOINT):
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is not a jaxrnn run directory (no {name})")
    saved = rd.read_config(path, marker=False)
    try:
        config = TrainConfig.from_dict(saved["config"]).validate()
    except (TypeError, ConfigError) as e:
        raise RunDirError(f'{path / rd.CONFIG}: corrupt "config" ({e})') from e
    vocab = rd.read_vocab(path)
    template = jax.eval_shape(
        lambda k: model.init(
            k, vocab.size, [config.hidden] * config.layers, dtype=jnp.float32, cell=config.cell
        ),
        jax.random.PRNGKey(0),
    )
    params, step = load_params(path / CHECKPOINT, template)
    return Run(config, vocab, params, step, path)
