"""pullback.numpy.linalg: differentiable `numpy.linalg` functions.

The factorizations, solves and inverses are primitives (pullback.primitives.linalg);
`norm`, `matrix_power`, `lstsq`, `cond`, `multi_dot`, the tensor solves and the NumPy 2
functions (`vector_norm`, `matrix_norm`, `vecdot`, ...) are composites and need no rules
of their own. Functions take stacks of matrices (leading batch axes) where NumPy's do,
convert integer input to float64 as NumPy does, and take complex input where their rules
hold (COMPLEX_FUNCTIONS; the others refuse it with `ComplexValueError`). Results that
NumPy returns as named tuples come back as named tuples with the same fields.

Where a derivative does not exist or is not unique, the function says so instead
of returning a silently wrong one: `svd(full_matrices=True)` of a non-square
matrix (the extra singular vectors are arbitrary), `qr` of a wide matrix or in
'complete' mode. `eig` and `eigvals` return complex results for every input, as JAX's do.
"""
import builtins
import functools
import math
import operator
from typing import Any, NamedTuple

import numpy as np

from ..core.engine import Tracer
from ..core.numbers import complex_error
from ..errors import unsupported
from ..primitives import linalg as L
from ..primitives.contraction import swap_last
from ..primitives.elementwise import equal, where
from ..primitives.structural import convert, reshape, stop_gradient
from . import _calculus, _contraction
from ._common import ndim, normalize_axes, normalize_axis, refuse
from ._elementwise import absolute, conjugate, imag, not_equal, real, sign, sqrt, square
from ._reductions import max, min, sum
from ._shape import argsort, flip, moveaxis, operand, take_along_axis, tril
from ._shape import diagonal as _diagonal, transpose as _transpose   # linalg has its own

__all__ = [
    # solving and inverting
    "inv", "solve", "pinv", "matrix_power", "lstsq", "tensorsolve", "tensorinv",
    # products
    "multi_dot", "matmul", "outer", "cross", "tensordot", "vecdot", "matrix_transpose",
    "trace", "diagonal",
    # determinants
    "det", "slogdet",
    # factorizations
    "cholesky", "eigh", "eigvalsh", "svd", "svdvals", "qr", "eig", "eigvals",
    # norms
    "norm", "vector_norm", "matrix_norm", "cond",
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


class LstsqResult(NamedTuple):
    solution: Any
    residuals: Any
    rank: Any
    singular_values: Any


# ------------------------------------------------------------------ helpers


# The functions whose primitives and composites hold for complex matrices.
COMPLEX_FUNCTIONS = ("inv", "solve", "matrix_power", "det", "slogdet", "cholesky", "eigh",
                     "eigvalsh", "eig", "eigvals", "svdvals", "norm", "vector_norm",
                     "matrix_norm", "qr", "pinv", "svd")


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
    """tril(a, -1) + tril(a, -1)^H + Re(diag(a)): the symmetric (Hermitian) matrix that
    routines reading the lower triangle see (LAPACK ignores a diagonal's imaginary part)."""
    half = tril(a, -1) + 0.5 * (a * np.eye(a.shape[-1], dtype=a.dtype))
    upper = swap_last(half)
    return half + (conjugate(upper) if np.dtype(a.dtype).kind == "c" else upper)


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


def lstsq(a, b, rcond=None):
    """`np.linalg.lstsq`: (solution, residuals, rank, singular values), differentiable where
    the rank of `a` is locally constant.

    The solution is `pinv(a) @ b`; the rank (an integer, with no derivative) and whether
    residuals are returned depend on the values of `a`, which must therefore be known (not
    under `jit` or across a `vmap` batch: use `np.linalg.pinv(a) @ b` there).
    """
    x = _matrices(a, "lstsq", square=False)
    if ndim(x) != 2:
        raise np.linalg.LinAlgError(f"{ndim(x)}-dimensional array given. Array must be "
                                    "two-dimensional")
    rhs = _floating(b, "lstsq")
    m, n = x.shape
    if rhs.shape[0] != m:
        raise np.linalg.LinAlgError("Incompatible dimensions")
    if rcond is None:                    # NumPy computes in float64, whatever the input
        rcond = np.finfo(np.float64).eps * builtins.max(m, n)
    if isinstance(rcond, Tracer) or np.ndim(rcond) != 0:
        raise unsupported("numpy.linalg.lstsq", "rcond must be a constant scalar")
    known = x._known_value(
        "the rank in numpy.linalg.lstsq (for the solution alone, `np.linalg.pinv(a) @ b` needs no "
        "known values)") if isinstance(x, Tracer) else x
    known_s = np.linalg.svd(known, compute_uv=False)
    rank = int(np.sum(known_s > rcond * known_s[0])) if known_s.size else 0
    solution = matmul(L.pinv(x, rcond=float(rcond)), rhs)
    if ndim(rhs) == 1:
        solution = reshape(solution, shape=(n,))
    if rank == n and m > n:
        misfit = rhs - matmul(x, solution)
        residuals = sum(misfit * misfit, axis=0)
        residuals = reshape(residuals, shape=(1,)) if ndim(rhs) == 1 else residuals
    else:
        residuals = np.empty((0,), x.dtype)
    s = L.svdvals(x) if builtins.min(m, n) else np.empty((0,), x.dtype)
    return LstsqResult(solution, residuals, np.int32(rank), s)


def tensorsolve(a, b, axes=None):
    """`np.linalg.tensorsolve`: x with tensordot(a, x, x.ndim) == b, through `solve`."""
    x, rhs = _floating(a, "tensorsolve"), _floating(b, "tensorsolve")
    if axes is not None:
        order = [i for i in range(ndim(x)) if i not in normalize_axes(axes, ndim(x))]
        x = _transpose(x, order + [normalize_axis(k, ndim(x)) for k in axes])
    unknowns = x.shape[ndim(rhs):]
    size = math.prod(unknowns)
    if math.prod(x.shape) != size * size:
        raise np.linalg.LinAlgError("Input arrays must satisfy the requirement "
                                    "prod(a.shape[b.ndim:]) == prod(a.shape[:b.ndim])")
    flat = solve(reshape(x, shape=(size, size)), reshape(rhs, shape=(size,)))
    return reshape(flat, shape=unknowns)


def tensorinv(a, ind=2):
    """`np.linalg.tensorinv`: the inverse of `a` read as a matrix (its first `ind` axes
    the rows)."""
    x = _floating(a, "tensorinv")
    if ind <= 0:
        raise ValueError("Invalid ind argument.")
    rows, cols = x.shape[:ind], x.shape[ind:]
    inverse = inv(reshape(x, shape=(math.prod(rows), math.prod(cols))))
    return reshape(inverse, shape=cols + rows)


# ----------------------------------------------------------------- products


def multi_dot(arrays, *, out=None):
    """`np.linalg.multi_dot`: the chained product (a 1-D first or last array is a row or a
    column vector), multiplied left to right."""
    refuse("multi_dot", out=out)
    arrays = [operand(x) for x in arrays]
    if len(arrays) < 2:
        raise ValueError("Expecting at least two arrays.")
    for i, x in enumerate(arrays):
        if ndim(x) != 2 and not (ndim(x) == 1 and i in (0, len(arrays) - 1)):
            raise np.linalg.LinAlgError(f"{ndim(x)}-dimensional array given. Array must be "
                                        "two-dimensional")
    return functools.reduce(_contraction.matmul, arrays)


def matmul(x1, x2, /):
    """`np.linalg.matmul` (NumPy 2): the same as `np.matmul` (used throughout this module)."""
    return _contraction.matmul(x1, x2)


def outer(x1, x2, /):
    """`np.linalg.outer` (NumPy 2): the outer product of two vectors."""
    a, b = operand(x1), operand(x2)
    if ndim(a) != 1 or ndim(b) != 1:
        raise ValueError(f"Input arrays must be one-dimensional, but they are {ndim(a)=} and "
                         f"{ndim(b)=}.")
    return _contraction.outer(a, b)


def cross(x1, x2, /, *, axis=-1):
    """`np.linalg.cross` (NumPy 2): cross products of 3-vectors."""
    a, b = operand(x1), operand(x2)
    if a.shape[axis] != 3 or b.shape[axis] != 3:
        raise ValueError("Both input arrays must be (arrays of) 3-dimensional vectors, but "
                         f"they are {a.shape[axis]} and {b.shape[axis]} dimensional instead.")
    return _calculus.cross(a, b, axis=axis)


def tensordot(x1, x2, /, *, axes=2):
    """`np.linalg.tensordot` (NumPy 2)."""
    return _contraction.tensordot(x1, x2, axes)


def vecdot(x1, x2, /, *, axis=-1):
    """`np.linalg.vecdot` (NumPy 2)."""
    return _contraction.vecdot(x1, x2, axis=axis)


def matrix_transpose(x, /):
    """`np.linalg.matrix_transpose` (NumPy 2)."""
    return _contraction.matrix_transpose(x)


def trace(x, /, *, offset=0, dtype=None):
    """`np.linalg.trace` (NumPy 2): traces of the matrices on the last two axes."""
    return _contraction.trace(x, offset, -2, -1, dtype)


def diagonal(x, /, *, offset=0):
    """`np.linalg.diagonal` (NumPy 2): diagonals of the matrices on the last two axes."""
    return _diagonal(x, offset, -2, -1)


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
    return SVDResult(*svd_factors(x, full_matrices, "numpy.linalg.svd"))


def svd_factors(x, full_matrices: bool, name: str):
    """(u, s, vh) of stacked matrices x for `name` (NumPy's or SciPy's svd): with
    `full_matrices=True` only for square ones, where it is the reduced SVD.

    >>> [f.shape for f in svd_factors(np.eye(2), True, "numpy.linalg.svd")]
    [(2, 2), (2,), (2, 2)]
    """
    if full_matrices and x.shape[-1] != x.shape[-2]:
        raise unsupported(
            name, f"full_matrices=True for a non-square {x.shape[-2]}x{x.shape[-1]} matrix: "
            "the extra singular vectors are not unique, so they have no derivative; pass "
            "full_matrices=False")
    return L.svd(x)


def _hermitian_svd(x, compute_uv):
    """NumPy's SVD of a symmetric matrix: eigenvalues by magnitude, signs moved into Vh."""
    w, v = L.eigh(x, lower=True)
    order = flip(argsort(absolute(w), axis=-1), axis=-1)
    s = take_along_axis(absolute(w), order, axis=-1)
    if not compute_uv:
        return s
    u = take_along_axis(v, order[..., None, :], axis=-1)
    signs = take_along_axis(sign(w), order, axis=-1)
    vh = swap_last(u * signs[..., None, :])
    return SVDResult(u, s, conjugate(vh) if np.dtype(vh.dtype).kind == "c" else vh)


class EigResult(NamedTuple):
    eigenvalues: Any
    eigenvectors: Any


def eig(a):
    """`np.linalg.eig` of a general square matrix, real or complex, with distinct
    eigenvalues. Results are always complex (NumPy returns real ones for a real matrix whose
    eigenvalues happen to be real: a type that depends on the values could not be staged);
    eigenvectors are NumPy's, of unit norm with their largest component real, and their
    derivatives keep that normalisation.

    >>> import pullback, numpy as np
    >>> a = np.array([[0.0, -2.0], [1.0, 0.0]])
    >>> pullback.grad(lambda a: np.linalg.eig(a)[0].imag.max())(a).round(4)
    array([[ 0.    , -0.3536],
           [ 0.7071,  0.    ]])
    """
    return EigResult(*L.eig(_matrices(a, "eig")))


def eigvals(a):
    """`np.linalg.eigvals` (through `eig`: its rule needs the eigenvectors); complex, as `eig`."""
    return L.eig(_matrices(a, "eigvals"))[0]


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
    # (the largest of none is 0, as NumPy's: of an empty matrix; the smallest raises)
    largest = functools.partial(max, initial=0.0) if 0 in (x.shape[row], x.shape[col]) \
        else max
    if ord in (2, -2, "nuc"):
        s = L.svdvals(moveaxis(x, (row, col), (-2, -1)))
        result = {2: largest, -2: min, "nuc": sum}[ord](s, axis=-1)
    elif ord in (1, -1):                 # largest / smallest column sum
        reduce = largest if ord == 1 else min
        result = reduce(sum(absolute(x), axis=row), axis=col - (col > row))
    elif ord in (np.inf, -np.inf):       # largest / smallest row sum
        reduce = largest if ord == np.inf else min
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


def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
    """`np.linalg.vector_norm` (NumPy 2): the norm of vectors along `axis` (all axes,
    flattened, when None; several axes are flattened together)."""
    x = _floating(x, "vector_norm")
    axes = normalize_axes(axis, ndim(x))
    kept = [i for i in range(ndim(x)) if i not in axes]
    flat = reshape(_transpose(x, kept + list(axes)), shape=tuple(x.shape[i] for i in kept) + (
        math.prod(x.shape[i] for i in axes),))
    result = _vector_norm(flat, ord, -1, False)
    if keepdims:
        result = reshape(result, shape=tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return result


def matrix_norm(x, /, *, keepdims=False, ord="fro"):
    """`np.linalg.matrix_norm` (NumPy 2): norms of the matrices on the last two axes."""
    return norm(x, ord, (-2, -1), keepdims)


def cond(x, p=None):
    """`np.linalg.cond`: the condition number in the norm `p` (through the singular values
    for None, 2, -2; through norms of x and its inverse otherwise). As NumPy's, inf for a
    singular matrix (an exactly zero pivot; 'nuc' raises, as NumPy's SVD of the NaN inverse
    does), with infinite or NaN derivatives there: it is the inverse of the identity in its
    place, times inf."""
    if 0 in np.shape(x)[-2:]:
        raise np.linalg.LinAlgError("cond is not defined on empty arrays")
    if p in (None, 2, -2):
        s = L.svdvals(_matrices(x, "cond", square=False))
        largest, smallest = s[..., 0], s[..., -1]
        return smallest / largest if p == -2 else largest / smallest
    x = _matrices(x, "cond")
    if p == "nuc":
        return norm(x, p, (-2, -1)) * norm(inv(x), p, (-2, -1))
    singular = equal(stop_gradient(L.slogdet(x)[0]), 0)
    identity = np.eye(x.shape[-1], dtype=x.dtype)
    stand_in = x + where(singular[..., None, None], identity - stop_gradient(x), 0)
    real = np.finfo(x.dtype).dtype
    infinite = where(singular, np.asarray(np.inf, real), np.asarray(1, real))
    return norm(x, p, (-2, -1)) * norm(inv(stand_in), p, (-2, -1)) * infinite
