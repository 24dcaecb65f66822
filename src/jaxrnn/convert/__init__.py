"""Weight converters to and from torch ``nn.RNN`` and flax linen ``SimpleCell`` / ``nn.RNN``.

| jaxrnn       | ``torch.nn.RNN``                | flax ``SimpleCell`` |
|--------------|---------------------------------|---------------------|
| ``Wx (D,H)`` | ``weight_ih_l{k}.T``            | ``i/kernel``        |
| ``Wh (H,H)`` | ``weight_hh_l{k}.T``            | ``h/kernel``        |
| ``b (H,)``   | ``bias_ih_l{k} + bias_hh_l{k}`` | ``i/bias``          |

Layers as :func:`jaxrnn.stack_forward` takes them: :class:`~jaxrnn.RNNParams`
per layer, :class:`~jaxrnn.BiRNNParams` ``(fwd, bwd)`` per bidirectional layer
(torch's ``_reverse`` weights are ``bwd``), a tuple of layers for a stack.
Neither torch nor flax is imported: torch state dicts are built as numpy
arrays, flax trees as jax arrays.
"""

from ._flax import from_flax_rnn as from_flax_rnn
from ._flax import from_flax_simple_cell as from_flax_simple_cell
from ._flax import to_flax_rnn as to_flax_rnn
from ._flax import to_flax_simple_cell as to_flax_simple_cell
from ._torch import from_torch_state_dict as from_torch_state_dict
from ._torch import to_torch_state_dict as to_torch_state_dict

__all__ = [
    "from_flax_rnn",
    "from_flax_simple_cell",
    "from_torch_state_dict",
    "to_flax_rnn",
    "to_flax_simple_cell",
    "to_torch_state_dict",
]
