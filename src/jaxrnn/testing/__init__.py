"""Testing utilities: hypothesis strategies for RNN problems (requires ``hypothesis``)."""

from . import strategies as strategies
