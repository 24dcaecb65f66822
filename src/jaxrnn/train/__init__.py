"""Training and sampling a character-level RNN language model (needs ``jaxrnn[train]``).

The library behind ``jaxrnn train`` and ``jaxrnn sample``::

    from jaxrnn import train as jt

    # ~15 s on 2 CPU cores: the default corpus, a small model, nothing written (out=None)
    result = jt.train(jt.TrainConfig(hidden=64, layers=1, seq_len=32, batch=16, steps=300))
    result.metrics["val_bpc"]                  # validation bits/char (NaN where not evaluated)
    print(jt.sample(result.params, result.vocab, prime="def ", length=200))

    run = jt.load_run("runs/NAME")             # a run directory written by `jaxrnn train`
    print(jt.sample(run.params, run.vocab, temperature=0.5))

Importing this module needs only jax; optax, tqdm, matplotlib and filelock
are imported when :func:`train` runs. :func:`add_commands` adds the ``train`` and
``sample`` subcommands to the ``jaxrnn`` command line.
"""

from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import TrainState as TrainState
from ._commands import add_commands as add_commands
from ._config import ConfigError as ConfigError
from ._config import RunDirError as RunDirError
from ._config import TrainConfig as TrainConfig
from ._config import parse_seed as parse_seed
from ._data import Corpus as Corpus
from ._data import CorpusError as CorpusError
from ._data import Vocab as Vocab
from ._data import default_corpus as default_corpus
from ._data import load_corpus as load_corpus
from ._data import unigram_entropy as unigram_entropy
from ._load import Run as Run
from ._load import load_run as load_run
from ._loop import DivergedError as DivergedError
from ._loop import MissingExtraError as MissingExtraError
from ._loop import TrainResult as TrainResult
from ._loop import train as train
from ._sample import sample as sample
