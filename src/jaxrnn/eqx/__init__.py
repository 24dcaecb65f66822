"""Equinox modules over jaxrnn's core: ``RNN``, ``LSTM``, ``GRU`` (``eqx.Module``s).

Thin shells: each holds its weights as the registry's parameter NamedTuples and calls
:func:`jaxrnn.rnn`, :func:`jaxrnn.lstm` or :func:`jaxrnn.gru`, so ``eqx.filter_grad``
runs the hand-derived BPTT. Equinox's conventions: a ``key`` to construct, an
unbatched call ``module(x)`` on ``x: (T, D)`` returning ``(h, state_T)``, and
``jax.vmap`` / ``eqx.filter_vmap`` for batches::

    lstm = jaxrnn.eqx.LSTM(16, 32, num_layers=2, key=jax.random.key(0))
    h, ((h1, c1), (h2, c2)) = lstm(x)                       # x: (T, 16), h: (T, 32)
    hs, states = jax.vmap(lstm)(xs)                         # xs: (N, T, 16)
    grads = eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(xs)[0]))(lstm)

Needs equinox (``pip install jaxrnn[equinox]``); ``import jaxrnn`` never loads it.
Converters to and from ``eqx.nn.LSTMCell`` / ``eqx.nn.GRUCell`` weights live in
:mod:`jaxrnn.convert`.
"""

from ._modules import GRU as GRU
from ._modules import LSTM as LSTM
from ._modules import RNN as RNN

__all__ = ["GRU", "LSTM", "RNN"]
