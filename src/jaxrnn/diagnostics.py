"""Gradient-flow diagnostics: vanishing and exploding gradients, measured (MATH.md §3).

- :func:`step_jacobians`: ``J_t = ∂h_t/∂h_{t-1} = diag(f'(a_t)) Wh^T`` for every step;
- :func:`step_jacobian_norms`: ``||J_t||_2`` for every step;
- :func:`jacobian_products`: ``∂h_T/∂h_k = J_T ... J_{k+1}`` for every k;
- :func:`jacobian_norms`: ``||∂h_T/∂h_k||_2`` for every k, the quantity to plot against ``T - k``;
- :func:`jacobian_singular_values`: all singular values of ``∂h_T/∂h_k``;
- :func:`truncated_gradients`: the weight gradients when every loss term
  backpropagates through at most k steps (truncated BPTT).
"""

from ._diagnostics import jacobian_norms as jacobian_norms
from ._diagnostics import jacobian_products as jacobian_products
from ._diagnostics import jacobian_singular_values as jacobian_singular_values
from ._diagnostics import step_jacobian_norms as step_jacobian_norms
from ._diagnostics import step_jacobians as step_jacobians
from ._diagnostics import truncated_gradients as truncated_gradients

__all__ = [
    "jacobian_norms",
    "jacobian_products",
    "jacobian_singular_values",
    "step_jacobian_norms",
    "step_jacobians",
    "truncated_gradients",
]
