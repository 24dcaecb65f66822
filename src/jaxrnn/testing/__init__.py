"""Testing utilities: a correctness oracle for hand-written RNN gradients, and the
hypothesis strategies of jaxrnn's own tests (requires ``hypothesis``).

- :func:`check_rnn_backward` / :func:`check_rnn_step_backward`: check your own
  forward pass and BPTT (numpy or JAX) against jaxrnn's hand BPTT and ``jax.grad``;
  they raise ``AssertionError`` with a report, so they work inside a pytest test.
- :func:`check_bptt`: the same for any recurrent cell (an LSTM, a GRU): your
  hand forward/backward against ``jax.vjp`` of a ``lax.scan`` over your cell.
- :func:`check_jvp`: a hand-written forward mode (tangent recurrence, RTRL along one
  direction) of any cell against ``jax.jvp``, naming the first wrong step.
- ``python -m jaxrnn.testing module:forward module:backward``: the same check as a
  command that prints a pass/fail report (:func:`main`, also ``jaxrnn check``).
- :mod:`jaxrnn.testing.strategies`: shapes, problems, parameters, sequences, lengths.
"""

from . import strategies as strategies
from ._check import check_rnn_backward as check_rnn_backward
from ._check import check_rnn_step_backward as check_rnn_step_backward
from ._cli import main as main
from ._forward import check_jvp as check_jvp
from ._generic import check_bptt as check_bptt
