"""`xp.linalg` of pullback's Array API namespace: pullback.numpy.linalg, whose NumPy 2
functions already have the standard's signatures, plus the few that differ."""
import numpy as np

from ..core.engine import Tracer
from ..numpy import linalg as L
from ..numpy.linalg import (cholesky, cross, det, diagonal, eigh, eigvalsh, inv, matmul,
                            matrix_norm, matrix_transpose, outer, slogdet, solve, svdvals,
                            tensordot, trace, vecdot, vector_norm)

__all__ = ["cholesky", "cross", "det", "diagonal", "eigh", "eigvalsh", "inv", "matmul",
           "matrix_norm", "matrix_power", "matrix_rank", "matrix_transpose", "outer", "pinv",
           "qr", "slogdet", "solve", "svd", "svdvals", "tensordot", "trace", "vecdot",
           "vector_norm"]


def matrix_power(x, n, /):
    return L.matrix_power(x, n)


def matrix_rank(x, /, *, rtol=None):
    """The number of singular values above the tolerance: an integer, so only of known values."""
    if isinstance(x, Tracer):
        x = x._known_value("matrix_rank")
    return np.linalg.matrix_rank(x, rtol=rtol)


def pinv(x, /, *, rtol=None):
    return L.pinv(x, rtol=rtol) if rtol is not None else L.pinv(x)


def qr(x, /, *, mode="reduced"):
    return L.qr(x, mode=mode)


def svd(x, /, *, full_matrices=True):
    return L.svd(x, full_matrices=full_matrices)
