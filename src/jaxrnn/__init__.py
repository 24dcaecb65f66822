"""jaxrnn: the vanilla RNN, the LSTM and the GRU with hand-derived BPTT in JAX.

See MATH.md for the equations each function implements. Two forms, the same for
every cell:

- the classic functions, with the seed's and CS231n's signatures:
  ``rnn_step_forward``/``rnn_step_backward``/``rnn_forward``/``rnn_backward`` and the
  same four for ``lstm_*`` and ``gru_*``, passing a cache between forward and backward;
- the structured form, ``rnn``/``lstm``/``gru``: the state as the cell's own pytree,
  ``return_state=True`` for the final state, ``jax.grad`` running the hand BPTT.
"""

from . import diagnostics as diagnostics
from . import model as model
from . import reference as reference
from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import get_activation as get_activation
from ._cells import CELLS as CELLS
from ._classic import gru_backward as gru_backward
from ._classic import gru_forward as gru_forward
from ._classic import gru_step_backward as gru_step_backward
from ._classic import gru_step_forward as gru_step_forward
from ._classic import lstm_backward as lstm_backward
from ._classic import lstm_forward as lstm_forward
from ._classic import lstm_step_backward as lstm_step_backward
from ._classic import lstm_step_forward as lstm_step_forward
from ._classic import rnn_backward as rnn_backward
from ._classic import rnn_forward as rnn_forward
from ._classic import rnn_step_backward as rnn_step_backward
from ._classic import rnn_step_forward as rnn_step_forward
from ._gru import GRUParams as GRUParams
from ._gru import init_gru_params as init_gru_params
from ._jvp import gru_jvp as gru_jvp
from ._jvp import lstm_jvp as lstm_jvp
from ._jvp import rnn_jvp as rnn_jvp
from ._layer import LayerCache as LayerCache
from ._layer import StepCache as StepCache
from ._layer import gru as gru
from ._layer import lstm as lstm
from ._layer import rnn as rnn
from ._lengths import check_lengths as check_lengths
from ._lengths import final_state as final_state
from ._lengths import reverse_within_lengths as reverse_within_lengths
from ._lengths import valid_mask as valid_mask
from ._lstm import LSTMParams as LSTMParams
from ._lstm import init_lstm_params as init_lstm_params
from ._rnn import RNNParams as RNNParams
from ._rnn import init_rnn_params as init_rnn_params
from ._rtrl import rtrl as rtrl
from ._stack import BiRNNParams as BiRNNParams
from ._stack import StackCache as StackCache
from ._stack import init_stack as init_stack
from ._stack import stack_backward as stack_backward
from ._stack import stack_forward as stack_forward
from ._temporal import temporal_affine_backward as temporal_affine_backward
from ._temporal import temporal_affine_forward as temporal_affine_forward
from ._temporal import temporal_softmax_loss as temporal_softmax_loss
from ._temporal import word_embedding_backward as word_embedding_backward
from ._temporal import word_embedding_forward as word_embedding_forward
from ._truncation import randomized_truncation as randomized_truncation
from ._version import __version__ as __version__

init_params = init_rnn_params  # the name before 0.2 (see CHANGELOG.md)


def __getattr__(name: str):
    # The app (``jaxrnn.train``), interop (``jaxrnn.convert``) and framework layers
    # (``jaxrnn.nnx``, ``jaxrnn.eqx``) are loaded on first use, so ``import jaxrnn`` (the
    # core) never imports them or their dependencies.
    if name in ("convert", "train", "nnx", "eqx"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
