"""Weight converters to and from torch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dicts,
flax linen ``SimpleCell`` / ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell`` (alone or
in ``nn.RNN``, ``nn.Bidirectional``, ``nn.Sequential``) and the flax NNX cells of those
names (modules or their ``nnx.State``; alone or in ``nnx.RNN``, ``nnx.Bidirectional``,
a list of them): ``from_flax_*`` read linen trees, ``from_nnx_*`` NNX modules.

**Gate order.** jaxrnn's LSTM stacks its gate blocks as CS231n does, ``(i, f, o, g)``;
torch's ``nn.LSTM`` stacks them ``(i, f, g, o)``. The converters swap the last two
blocks of H in the weights and the bias; the GRU's ``(r, z, n)`` is the same in
jaxrnn, torch and flax.

jaxrnn multiplies row vectors (``x_t @ Wx``), torch by the transpose, so torch
weights are transposed; flax kernels are ``(in, out)`` like jaxrnn's.

| jaxrnn              | torch (``_l{k}``; bwd: ``_reverse``) | flax linen cell                    |
|---------------------|--------------------------------------|------------------------------------|
| RNN ``Wx (D,H)``    | ``weight_ih.T``                      | SimpleCell ``i/kernel``            |
| RNN ``Wh (H,H)``    | ``weight_hh.T``                      | ``h/kernel`` (``+ I`` if residual) |
| RNN ``b (H,)``      | ``bias_ih + bias_hh``                | ``i/bias``                         |
| LSTM ``Wx (D,4H)``  | ``weight_ih.T``, ifgo -> ifog        | LSTMCell ``[ii,if,io,ig]/kernel``  |
| LSTM ``Wh (H,4H)``  | ``weight_hh.T``, ifgo -> ifog        | ``[hi,hf,ho,hg]/kernel``           |
| LSTM ``b (4H,)``    | ``bias_ih + bias_hh``, ifgo -> ifog  | ``[hi,hf,ho,hg]/bias``             |
| GRU ``Wx (D,3H)``   | ``weight_ih.T``                      | GRUCell ``[ir,iz,in]/kernel``      |
| GRU ``Wh (H,3H)``   | ``weight_hh.T``                      | ``[hr,hz,hn]/kernel``              |
| GRU ``bx (3H,)``    | ``bias_ih``                          | ``[ir,iz,in]/bias``                |
| GRU ``bh (3H,)``    | ``bias_hh``                          | ``[0, 0, hn/bias]``                |

flax NNX cells hold the linen cell's numbers under other paths (``dense_i``/``dense_h``
for ``SimpleCell``; one ``(D, 4H)`` / ``(D, 3H)`` dense per side for ``OptimizedLSTMCell``
and ``GRUCell``, flax's blocks ``(i, f, g, o)`` / ``(r, z, n)``; ``if_`` for ``LSTMCell``'s
``if``), mapped onto the linen table above (``_nnx.PATHS``). ``nnx.GRUCell`` has no
``hn/bias`` (flax#5594): read, jaxrnn's ``bh`` is zero; a non-zero ``bh`` n block is
refused going to it.

Exports write torch's summed biases as ``bias_ih = b``, ``bias_hh = 0``; a GRU's
``bh`` r and z blocks go into flax's ``ir``/``iz`` biases (the only place they act).

Layers as :func:`jaxrnn.stack_forward` takes them: :class:`~jaxrnn.RNNParams`,
:class:`~jaxrnn.LSTMParams` or :class:`~jaxrnn.GRUParams` per layer,
:class:`~jaxrnn.BiRNNParams` ``(fwd, bwd)`` per bidirectional layer (torch's
``_reverse`` weights are ``bwd``), a tuple of layers for a stack.
:func:`from_torch_hidden` / :func:`to_torch_hidden` convert torch's ``hx``
(``h_0`` or ``(h_0, c_0)``) to and from stack_forward's per-layer states (an LSTM
layer's is ``[h | c]``; flax's LSTM carry is ``(c, h)``). Only the default
nonlinearities of flax's LSTMCell/GRUCell (sigmoid, tanh) map; a flax ``MGUCell``
and torch's ``nn.LSTM(proj_size > 0)`` have no jaxrnn equivalent and are refused.
Neither torch nor flax is imported by ``import jaxrnn.convert``: torch state dicts are
built as numpy arrays, flax linen trees as jax arrays; the NNX functions import flax
and the equinox ones (``to_eqx_lstm_cell``, ``from_eqx_gru_cell``, ...: equinox's
``LSTMCell``/``GRUCell``, gate rows in torch's order) import equinox when called.
"""

from ._equinox import from_eqx_gru_cell as from_eqx_gru_cell
from ._equinox import from_eqx_lstm_cell as from_eqx_lstm_cell
from ._equinox import to_eqx_gru_cell as to_eqx_gru_cell
from ._equinox import to_eqx_lstm_cell as to_eqx_lstm_cell
from ._flax import from_flax_rnn as from_flax_rnn
from ._flax import to_flax_rnn as to_flax_rnn
from ._flax_cells import from_flax_gru_cell as from_flax_gru_cell
from ._flax_cells import from_flax_lstm_cell as from_flax_lstm_cell
from ._flax_cells import from_flax_simple_cell as from_flax_simple_cell
from ._flax_cells import to_flax_gru_cell as to_flax_gru_cell
from ._flax_cells import to_flax_lstm_cell as to_flax_lstm_cell
from ._flax_cells import to_flax_simple_cell as to_flax_simple_cell
from ._nnx import from_nnx_cell as from_nnx_cell
from ._nnx import from_nnx_rnn as from_nnx_rnn
from ._nnx import to_nnx_cell as to_nnx_cell
from ._nnx import to_nnx_rnn as to_nnx_rnn
from ._states import from_torch_hidden as from_torch_hidden
from ._states import to_torch_hidden as to_torch_hidden
from ._torch import from_torch_state_dict as from_torch_state_dict
from ._torch import to_torch_state_dict as to_torch_state_dict

__all__ = [
    "from_eqx_gru_cell",
    "from_eqx_lstm_cell",
    "to_eqx_gru_cell",
    "to_eqx_lstm_cell",
    "from_flax_gru_cell",
    "from_flax_lstm_cell",
    "from_flax_rnn",
    "from_flax_simple_cell",
    "from_nnx_cell",
    "from_nnx_rnn",
    "from_torch_hidden",
    "from_torch_state_dict",
    "to_flax_gru_cell",
    "to_flax_lstm_cell",
    "to_flax_rnn",
    "to_flax_simple_cell",
    "to_nnx_cell",
    "to_nnx_rnn",
    "to_torch_hidden",
    "to_torch_state_dict",
]
