"""Sparse Jacobians and Hessians: colouring, compressed evaluation, decompression to scipy.sparse.

>>> import numpy as np, pullback
>>> f = lambda x: np.sum((x[1:] - x[:-1] ** 2) ** 2)
>>> tridiagonal = np.eye(5, dtype=bool) | np.eye(5, k=1, dtype=bool)    # a triangle is enough
>>> plan = pullback.sparse.prepare_hessian(f, np.ones(5), pattern=tridiagonal)
>>> plan.colours, plan.nnz
(3, 13)
>>> plan(np.zeros(5)).toarray()[:2]
array([[0., 0., 0., 0., 0.],
       [0., 2., 0., 0., 0.]])

Patterns are detected from the program by default (global: valid at every x), or given
with `pattern=`:

>>> pullback.sparse.sparse_hessian(f, np.zeros(5)).nnz
13
"""
from .colouring import ORDERS, ColouringError, column_colouring, row_colouring, star_colouring
from .compressed import (HessianPlan, JacobianPlan, prepare_hessian, prepare_jacobian,
                         sparse_hessian, sparse_jacobian)
from .detection import hessian_sparsity, jacobian_sparsity, sparsity_listing

__all__ = [
    "sparse_jacobian", "sparse_hessian", "prepare_jacobian", "prepare_hessian",
    "jacobian_sparsity", "hessian_sparsity", "sparsity_listing",
    "JacobianPlan", "HessianPlan", "column_colouring", "row_colouring", "star_colouring",
    "ORDERS", "ColouringError",
]
