"""Sparse Jacobians and Hessians: colouring of sparsity patterns (compressed evaluation next)."""
from .colouring import (ORDERS, ColouringError, OrderError, PatternError, column_colouring,
                        row_colouring, star_colouring)

__all__ = ["column_colouring", "row_colouring", "star_colouring", "ORDERS", "PatternError",
           "OrderError", "ColouringError"]
