"""pullback.numpy.linalg: differentiable `numpy.linalg` functions.

The factorizations, solves and inverses are primitives (pullback.primitives.linalg);
`norm` and `matrix_power` are composites and need no rules of their own. Every
function takes stacks of matrices (leading batch axes) like NumPy, converts
integer input to float64 as NumPy does, and refuses complex input. Results that
NumPy returns as named tuples come back as named tuples with the same fields.

Where a derivative does not exist or is not unique, the function says so instead
of returning a silently wrong one: `svd(full_matrices=True)` of a non-square
matrix (the extra singular vectors are arbitrary), `qr` of a wide matrix or in
'complete' mode.
"""
import builtins
import operator
from typing import Any, NamedTuple

import numpy as np

from ..core.engine import Tracer
from ..core.numbers import complex_error
from ..errors import unsupported
from ..primitives import linalg as L
from ..primitives.contraction import matmul, swap_last
from ..primitives.structural import convert, reshape
from ._common import ndim, normalize_axis
from ._elementwise import absolute, imag, not_equal, real, sign, sqrt, square
from ._reductions import max, min, sum
from ._shape import argsort, flip, moveaxis, operand, take_along_axis, tril

__all__ = [
    # solving and inverting
    "inv", "solve", "pinv", "matrix_power",
    # determinants
    "det", "slogdet",
    # factorizations
    "cholesky", "eigh", "eigvalsh", "svd", "svdvals", "qr",
    # norms
    "norm",
]


class SlogdetResult(NamedTuple):
    sign: Any
    logabsdet: Any


class EighResult(NamedTuple):
    eigenvalues: Any
    eigenvectors: Any


class SVDResult(NamedTuple):
    U: Any
    S: Any
    Vh: Any


class QRResult(NamedTuple):
    Q: Any
    R: Any


# ------------------------------------------------------------------ helpers


# The functions whose primitives and composites hold for complex matrices.
COMPLEX_FUNCTIONS = ("inv", "solve", "matrix_power", "det", "slogdet", "cholesky", "eigh",
                     "eigvalsh", "svdvals", "norm", "qr")


def _real(a, name):
    """a as an array or tracer, refusing complex values unless `name` is one of the
    COMPLEX_FUNCTIONS."""
    x = operand(a)
    if not hasattr(x, "dtype"):          # a Python scalar
        x = np.asarray(x)
    if np.dtype(x.dtype).kind == "c" and name not in COMPLEX_FUNCTIONS:
        raise complex_error(f"numpy.linalg.{name} of a complex matrix")
    return x


def _floating(a, name):
    """a as a floating-point array or tracer (integers become float64, as in NumPy)."""
    x = _real(a, name)
    return convert(x, dtype=np.dtype(np.float64)) if np.dtype(x.dtype).kind in "biu" else x


def _matrices(a, name, square=True, floating=True):
    """a checked to be a (stack of) matrices, square if asked, as NumPy's linalg checks it."""
    x = _floating(a, name) if floating else _real(a, name)
    if ndim(x) < 2:
        raise np.linalg.LinAlgError(f"{ndim(x)}-dimensional array given. Array must be at "
                                    "least two-dimensional")
    if square and x.shape[-1] != x.shape[-2]:
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")
    return x


def _lower_symmetric(a):
    """tril(a) + tril(a, -1).T: the matrix that routines reading the lower triangle see."""
    return tril(a) + swap_last(tril(a, -1))


# --------------------------------------------------- solving and inverting


def inv(a):
    """`np.linalg.inv`."""
    return L.inv(_matrices(a, "inv"))


def solve(a, b):
    """`np.linalg.solve` (NumPy 2 semantics: b is a vector only when b.ndim == 1)."""
    x, rhs = _matrices(a, "solve"), _floating(b, "solve")
    if ndim(rhs) != 1:
        return L.solve(x, rhs)
    out = L.solve(x, reshape(rhs, shape=(rhs.shape[0], 1)))
    return reshape(out, shape=out.shape[:-1])


def pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    """`np.linalg.pinv`, differentiable where the rank of `a` is locally constant.

    With `hermitian=True` only the lower triangle of `a` is read, as in NumPy.
    """
    x = _matrices(a, "pinv", square=hermitian)
    if rcond is None:
        if rtol is np._NoValue:
            rcond = 1e-15
        elif rtol is None:
            rcond = builtins.max(x.shape[-2:]) * np.finfo(x.dtype).eps
        else:
            rcond = rtol
    elif rtol is not np._NoValue:
        raise ValueError("`rtol` and `rcond` can't be both set.")
    if isinstance(rcond, Tracer) or np.ndim(rcond) != 0:
        raise unsupported("numpy.linalg.pinv", "rcond/rtol must be a constant scalar")
    return L.pinv(_lower_symmetric(x) if hermitian else x, rcond=float(rcond))


def matrix_power(a, n):
    """`np.linalg.matrix_power` by repeated squaring; n < 0 inverts first, n == 0 is I."""
    x = _matrices(a, "matrix_power", floating=False)     # integer powers stay integer
    try:
        n = operator.index(n)
    except TypeError as e:
        raise TypeError("exponent must be an integer") from e
    if n == 0:                           # a constant: no derivative flows through it
        return np.broadcast_to(np.eye(x.shape[-1], dtype=x.dtype), x.shape).copy()
    if n < 0:
        x, n = inv(x), -n
    result, square = None, x
    while True:
        n, bit = divmod(n, 2)
        if bit:
            result = square if result is None else matmul(result, square)
        if n == 0:
            return result
        square = matmul(square, square)


# ------------------------------------------------------------ determinants


def det(a):
    """`np.linalg.det`, differentiable at every matrix (its gradient is the transposed
    adjugate, which singular matrices have too)."""
    return L.det(_matrices(a, "det"))


def slogdet(a):
    """`np.linalg.slogdet`: (sign, logabsdet); the sign has zero derivative, and logabsdet's
    derivatives are NaN at a singular matrix (sign 0), where it is -inf."""
    return SlogdetResult(*L.slogdet(_matrices(a, "slogdet")))


# ---------------------------------------------------------- factorizations


def cholesky(a, /, *, upper=False):
    """`np.linalg.cholesky`: reads only the lower (upper=True: upper) triangle of `a`."""
    x = _matrices(a, "cholesky")
    return swap_last(L.cholesky(swap_last(x))) if upper else L.cholesky(x)


def _eigh(a, UPLO, name):
    x = _matrices(a, name)
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return L.eigh(x, lower=UPLO == "L")


def eigh(a, UPLO="L"):
    """`np.linalg.eigh`: reads only the lower (UPLO='U': upper) triangle of `a`."""
    return EighResult(*_eigh(a, UPLO, "eigh"))


def eigvalsh(a, UPLO="L"):
    """`np.linalg.eigvalsh` (through `eigh`: the eigenvectors carry its derivative)."""
    return _eigh(a, UPLO, "eigvalsh")[0]


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """`np.linalg.svd`.

    `full_matrices=True` is supported for square matrices only (where it is the
    reduced SVD); with `hermitian=True` the SVD is built from `eigh` as NumPy does.
    """
    x = _matrices(a, "svd", square=hermitian)
    if hermitian:
        return _hermitian_svd(x, compute_uv)
    if not compute_uv:
        return L.svdvals(x)
    if full_matrices and x.shape[-1] != x.shape[-2]:
        raise unsupported(
            "numpy.linalg.svd", f"full_matrices=True for a non-square {x.shape[-2]}x"
            f"{x.shape[-1]} matrix: the extra singular vectors are not unique, so they have no "
            "derivative; pass full_matrices=False")
    return SVDResult(*L.svd(x))


def _hermitian_svd(x, compute_uv):
    """NumPy's SVD of a symmetric matrix: eigenvalues by magnitude, signs moved into Vh."""
    w, v = L.eigh(x, lower=True)
    order = flip(argsort(absolute(w), axis=-1), axis=-1)
    s = take_along_axis(absolute(w), order, axis=-1)
    if not compute_uv:
        return s
    u = take_along_axis(v, order[..., None, :], axis=-1)
    signs = take_along_axis(sign(w), order, axis=-1)
    return SVDResult(u, s, swap_last(u * signs[..., None, :]))


def svdvals(x, /):
    """`np.linalg.svdvals`: the singular values, largest first."""
    return L.svdvals(_matrices(x, "svdvals", square=False))


def qr(a, mode="reduced"):
    """`np.linalg.qr` of tall or square matrices (m >= n).

    Modes 'reduced' and 'r', and 'complete' for square matrices (where it equals 'reduced').
    """
    x = _matrices(a, "qr", square=False)
    m, n = x.shape[-2:]
    if mode not in ("reduced", "complete", "r", "raw"):
        raise ValueError(f"Unrecognized mode '{mode}'")
    if mode == "raw" or (mode == "complete" and m != n):
        raise unsupported("numpy.linalg.qr", f"mode={mode!r}" + (
            f" for a non-square {m}x{n} matrix: the extra columns of Q are not unique"
            if mode == "complete" else "") + "; use mode='reduced'")
    if m < n:
        raise unsupported("numpy.linalg.qr", f"a wide {m}x{n} matrix (m < n): only tall or "
                          "square matrices are supported; factor the transpose instead")
    q, r = L.qr(x)
    return r if mode == "r" else QRResult(q, r)


# ------------------------------------------------------------------ norms


def norm(x, ord=None, axis=None, keepdims=False):
    """`np.linalg.norm`, as a composite of reductions and (for 2, -2, 'nuc') `svdvals`.

    Like `sqrt` and `abs`, the norms have no derivative where they are not smooth
    (the 2-norm at zero, max/min-based orders at ties, singular values at crossings).
    """
    x = _floating(x, "norm")
    nd = ndim(x)
    if axis is None:
        if ord is None or (ord in ("f", "fro") and nd == 2) or (ord == 2 and nd == 1):
            flat = reshape(x, shape=(x.size,))
            result = sqrt(sum(_squared(flat)))
            return reshape(result, shape=(1,) * nd) if keepdims else result
        axis = tuple(range(nd))
    elif not isinstance(axis, tuple):
        try:
            axis = (operator.index(axis),)
        except TypeError as e:
            raise TypeError("'axis' must be None, an integer or a tuple of integers") from e
    if len(axis) == 1:
        return _vector_norm(x, ord, axis, keepdims)
    if len(axis) == 2:
        return _matrix_norm(x, ord, axis, keepdims)
    raise ValueError("Improper number of dimensions to norm.")


def _squared(x):
    """|x| ** 2, elementwise (real for complex x)."""
    if np.dtype(x.dtype).kind == "c":
        return square(real(x)) + square(imag(x))
    return x * x


def _vector_norm(x, ord, axis, keepdims):
    if ord == np.inf:
        return max(absolute(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return min(absolute(x), axis=axis, keepdims=keepdims)
    if ord == 0:                         # a count: its derivative is zero
        return sum(convert(not_equal(x, 0), dtype=np.finfo(x.dtype).dtype), axis=axis,
                   keepdims=keepdims)
    if ord == 1:
        return sum(absolute(x), axis=axis, keepdims=keepdims)
    if ord is None or ord == 2:
        return sqrt(sum(_squared(x), axis=axis, keepdims=keepdims))
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    return sum(absolute(x) ** ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)


def _matrix_norm(x, ord, axis, keepdims):
    nd = ndim(x)
    row, col = (normalize_axis(a, nd) for a in axis)
    if row == col:
        raise ValueError("Duplicate axes given.")
    if ord in (2, -2, "nuc"):
        s = L.svdvals(moveaxis(x, (row, col), (-2, -1)))
        result = {2: max, -2: min, "nuc": sum}[ord](s, axis=-1)
    elif ord in (1, -1):                 # largest / smallest column sum
        reduce = max if ord == 1 else min
        result = reduce(sum(absolute(x), axis=row), axis=col - (col > row))
    elif ord in (np.inf, -np.inf):       # largest / smallest row sum
        reduce = max if ord == np.inf else min
        result = reduce(sum(absolute(x), axis=col), axis=row - (row > col))
    elif ord in (None, "fro", "f"):
        result = sqrt(sum(_squared(x), axis=(row, col)))
    else:
        raise ValueError("Invalid norm order for matrices.")
    if keepdims:
        shape = list(x.shape)
        shape[row] = shape[col] = 1
        result = reshape(result, shape=tuple(shape))
    return result
