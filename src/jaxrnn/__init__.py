"""jaxrnn: the vanilla RNN and its hand-derived BPTT in JAX.

See MATH.md for the equations each function implements.
"""

from importlib.metadata import PackageNotFoundError, version

from . import diagnostics as diagnostics
from . import reference as reference
from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import get_activation as get_activation
from ._bptt import rnn_backward as rnn_backward
from ._cell import rnn_step_backward as rnn_step_backward
from ._cell import rnn_step_forward as rnn_step_forward
from ._params import init_params as init_params
from ._rnn import rnn as rnn
from ._scan import rnn_forward as rnn_forward
from ._types import RNNCache as RNNCache
from ._types import RNNParams as RNNParams
from ._types import StepCache as StepCache

try:
    __version__ = version("jaxrnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
