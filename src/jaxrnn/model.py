"""The full model (embedding -> stacked/bidirectional RNN -> affine -> softmax loss).

``jaxrnn.model.init``, ``init_state``, ``loss_and_grads`` (hand-derived chain),
``loss`` (for ``jax.value_and_grad``) and ``predict_step``; see MATH.md §3–§6.
"""

from ._model import ModelParams as ModelParams
from ._model import init as init
from ._model import init_state as init_state
from ._model import loss as loss
from ._model import loss_and_grads as loss_and_grads
from ._model import predict_step as predict_step
from ._stack import BiRNNParams as BiRNNParams
from ._temporal import check_ids_in_range as check_ids_in_range
