"""flax NNX modules over jaxrnn's core: ``RNN``, ``LSTM``, ``GRU`` (``nnx.Module``s).

Thin shells: each holds its weights as ``nnx.Param``s named after jaxrnn's parameters
(``layers[l].fwd.Wx``, ``.Wh``, ``.b``; ``.bwd`` when bidirectional; the GRU's ``bx``,
``bh``), initialised by the registry's initialisers from ``rngs.params()``, and calls
:func:`jaxrnn.rnn`, :func:`jaxrnn.lstm` or :func:`jaxrnn.gru`, so ``nnx.grad`` runs the
hand-derived BPTT. NNX's conventions: ``rngs`` to construct, a call like ``nnx.RNN``'s
on batch-major ``x: (N, T, D)``::

    lstm = jaxrnn.nnx.LSTM(16, 32, num_layers=2, rngs=nnx.Rngs(0))
    h = lstm(x)                                             # x: (N, T, 16), h: (N, T, 32)
    ((h1, c1), (h2, c2)), h = lstm(x, seq_lengths=lengths, return_carry=True)
    grads = nnx.grad(lambda m: jnp.sum(m(x)))(lstm)         # an nnx.State of Params

The carry is jaxrnn's: ``h``, or ``(h, c)`` for the LSTM, where flax's ``LSTMCell``
carries ``(c, h)``; a ``(fwd, bwd)`` pair per bidirectional layer (as
``nnx.Bidirectional``); a tuple per layer when ``num_layers > 1``. ``module.params()``
gives the weights as jaxrnn layers and ``module.load_params(layers)`` writes them, e.g.
from flax's own cells through :func:`jaxrnn.convert.from_nnx_rnn`.

Needs flax (``pip install jaxrnn[flax]``); ``import jaxrnn`` never loads it.
"""

from ._modules import GRU as GRU
from ._modules import LSTM as LSTM
from ._modules import RNN as RNN
from ._modules import Layer as Layer
from ._modules import Weights as Weights

__all__ = ["GRU", "LSTM", "Layer", "RNN", "Weights"]
