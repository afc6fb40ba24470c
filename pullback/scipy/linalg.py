"""pullback.scipy.linalg: scipy.linalg's functions with SciPy's signatures, differentiable.

SciPy's own functions convert their inputs with `np.asarray` (which a traced value
refuses); these take traced values. Factorizations and solves compose the primitives of
pullback/primitives/linalg.py (`solve`, `triangular_solve`, `cholesky`, `lu_factor`,
`eigh`, `svd`, `qr`); `expm`, `logm`, `sqrtm` and `solve_sylvester` are primitives of
their own. Like SciPy's LAPACK routines, functions that read one triangle of a matrix
(cholesky, cho_factor, eigh, solve with assume_a='sym'/'pos', solve_triangular) are
differentiated as functions of exactly that triangle. Matrices are real (complex ones
are refused); stacks of matrices (leading batch axes) work as in SciPy.

Where a derivative does not exist or is not unique, the function says so instead of
returning a wrong one: the extra columns of a full QR or SVD of a non-square matrix,
eigh's `subset_by_value` (its output's
length depends on the values).

>>> import numpy as np, pullback
>>> from pullback.scipy import linalg
>>> float(pullback.grad(lambda t: linalg.expm(t * np.eye(2))[0, 0])(0.0))
1.0
"""
from functools import lru_cache

import numpy as _np
import scipy.linalg as _sl

from ..core.numbers import complex_error
from ..errors import unsupported
from ..numpy._shape import (argsort, broadcast_to, concatenate, flip, operand, pad_constant,
                            reshape, take, take_along_axis, tril, triu)
from ..numpy.linalg import svd_factors
from ..primitives import linalg as L
from ..primitives.contraction import matmul, swap_last
from ..primitives.elementwise import conjugate, where
from ..primitives.structural import convert

__all__ = ["solve_triangular", "cholesky", "cho_factor", "cho_solve", "lu_factor", "lu_solve",
           "lu", "solve", "inv", "det", "eigh", "svd", "qr", "polar", "expm", "expm_frechet",
           "sqrtm", "logm", "solve_sylvester", "block_diag", "toeplitz", "circulant", "hankel"]

# ------------------------------------------------------------------ helpers


def _array(a):
    """a as an array or tracer (Python scalars become arrays)."""
    x = operand(a)
    return x if hasattr(x, "dtype") else _np.asarray(x)


def _real(a, name):
    """a as a real floating-point array or tracer (integers become float64, as in SciPy)."""
    x = _array(a)
    kind = _np.dtype(x.dtype).kind
    if kind == "c":
        raise complex_error(f"scipy.linalg.{name} of a complex matrix")
    return convert(x, dtype=_np.dtype(_np.float64)) if kind in "biu" else x


def _matrix(a, name, square=True):
    """a checked to be a (stack of) matrices, square if asked, as SciPy checks it."""
    x = _real(a, name)
    if x.ndim < 2:
        raise ValueError(f"scipy.linalg.{name}: expected at least a 2-D array, got {x.ndim}-D")
    if square and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"scipy.linalg.{name}: expected square matrix, got shape {x.shape}")
    return x


@lru_cache(maxsize=None)
def _scipy_dtype(name, dtype, arity=1):
    """The dtype scipy.linalg.<name> returns for matrices of `dtype` (float32 -> float64 for
    det and expm_frechet)."""
    out = getattr(_sl, name)(*[_np.eye(2, dtype=dtype)] * arity)
    return (out[0] if isinstance(out, tuple) else out).dtype


def _as_scipy(name, result, dtype, arity=1):
    """`result` in the dtype SciPy's `name` returns for inputs of `dtype`."""
    target = _scipy_dtype(name, _np.dtype(dtype), arity)
    return result if result.dtype == target else convert(result, dtype=target)


def _columns(solve, b):
    """solve(b) for b a stack of matrices, or a vector (b.ndim == 1) as one column."""
    if b.ndim != 1:
        return solve(b)
    out = solve(reshape(b, (b.shape[0], 1)))
    return reshape(out, out.shape[:-1])


def _symmetric(x, lower):
    """The symmetric matrix a routine reading the lower (or upper) triangle of x sees."""
    return tril(x) + swap_last(tril(x, -1)) if lower else triu(x) + swap_last(triu(x, 1))


def _unit_diagonal(x):
    """x with its diagonal replaced by ones (constants): what unit_diagonal=True reads."""
    return where(_np.eye(x.shape[-1], dtype=bool), 1.0, x)


def _triangular(a, b, lower, trans, name):
    return _columns(lambda b: L.triangular_solve(a, b, lower=lower, trans=trans),
                    _real(b, name))


# ---------------------------------------------------- triangular and Cholesky


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                     check_finite=True):
    """`scipy.linalg.solve_triangular`: op(T) x = b, T the lower or upper triangle of `a`
    (the other one is never read), op(T) = T (trans=0, 'N') or T^T (1, 2, 'T', 'C')."""
    trans = {0: 0, "N": 0, 1: 1, "T": 1, 2: 1, "C": 1}.get(trans)
    if trans is None:
        raise ValueError("trans must be 0, 1, 2, 'N', 'T' or 'C'")
    x = _matrix(a, "solve_triangular")
    return _triangular(_unit_diagonal(x) if unit_diagonal else x, b, lower, trans,
                       "solve_triangular")


def cholesky(a, lower=False, overwrite_a=False, check_finite=True):
    """`scipy.linalg.cholesky`: reads the upper (lower=True: lower) triangle of `a`."""
    x = _matrix(a, "cholesky")
    return L.cholesky(x) if lower else swap_last(L.cholesky(swap_last(x)))


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """`scipy.linalg.cho_factor`: (c, lower), the factor in one triangle of c and a's own
    entries in the other (as LAPACK leaves them)."""
    x = _matrix(a, "cho_factor")
    factor = cholesky(x, lower=lower)
    return factor + (triu(x, 1) if lower else tril(x, -1)), lower


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    """`scipy.linalg.cho_solve`: solves a x = b from a's `cho_factor` (two triangular solves)."""
    c, lower = c_and_lower
    c = _matrix(c, "cho_solve")
    first = (0, 1) if lower else (1, 0)        # L then L^T, or U^T then U
    return _columns(lambda b: L.triangular_solve(
        c, L.triangular_solve(c, b, lower=lower, trans=first[0]), lower=lower,
        trans=first[1]), _real(b, "cho_solve"))


# ------------------------------------------------------------------------ LU


def lu_factor(a, overwrite_a=False, check_finite=True):
    """`scipy.linalg.lu_factor`: (lu, piv), piv without derivative."""
    return tuple(L.lu_factor(_matrix(a, "lu_factor", square=False)))


def lu_solve(lu_and_piv, b, trans=0, overwrite_b=False, check_finite=True):
    """`scipy.linalg.lu_solve`: solves a x = b (trans=1 or 2: a^T x = b) from `lu_factor`."""
    lu, piv = lu_and_piv
    lu = _matrix(lu, "lu_solve")
    if trans not in (0, 1, 2):
        raise ValueError("trans must be 0, 1 or 2")
    p = L.permutation_matrix(L.pivots_to_permutation(operand(piv), rows=lu.shape[-1]),
                             lu.dtype)
    unit = _unit_diagonal(lu)

    def solve(b):
        if trans == 0:                   # L U x = P b
            return L.triangular_solve(lu, L.triangular_solve(unit, matmul(p, b), lower=True,
                                                             trans=0), lower=False, trans=0)
        y = L.triangular_solve(unit, L.triangular_solve(lu, b, lower=False, trans=1),
                               lower=True, trans=1)
        return matmul(swap_last(p), y)   # U^T L^T P x = b
    return _columns(solve, _real(b, "lu_solve"))


def lu(a, permute_l=False, overwrite_a=False, check_finite=True, p_indices=False):
    """`scipy.linalg.lu`: (p, l, u) with a = p l u; (p l, u) with permute_l=True; p as row
    indices with p_indices=True."""
    packed, piv = lu_factor(a)
    perm = L.pivots_to_permutation(piv, rows=packed.shape[-2])
    p = swap_last(L.permutation_matrix(perm, packed.dtype))        # a = p l u
    lower, upper = L.lu_parts(packed)
    if permute_l:
        return matmul(p, lower), upper
    indices = convert(argsort(perm, axis=-1), dtype=_np.dtype(_np.int32)) if p_indices else p
    return indices, lower, upper


# -------------------------------------------------------- solve, inv, det

_STRUCTURES = {None: "general", "general": "general", "gen": "general", "banded": "general",
               "diagonal": "diagonal", "tridiagonal": "tridiagonal",
               "sym": "symmetric", "symmetric": "symmetric", "her": "symmetric",
               "hermitian": "symmetric", "pos": "symmetric", "positive definite": "symmetric",
               "upper triangular": "upper", "lower triangular": "lower"}


def _structured(x, assume_a, lower):
    """The matrix SciPy's solver for `assume_a` reads from x (None and 'banded' detect the
    structure from the values, which leaves the function a^-1 b: the general case)."""
    structure = _STRUCTURES.get(assume_a) if isinstance(assume_a, (str, type(None))) else None
    if structure is None:
        raise ValueError(f"{assume_a} is not a recognized matrix structure")
    n = x.shape[-1]
    if structure == "symmetric":
        return _symmetric(x, lower), structure
    if structure in ("diagonal", "tridiagonal", "upper", "lower"):
        rows, cols = _np.indices((n, n))
        mask = {"diagonal": rows == cols, "tridiagonal": abs(rows - cols) <= 1,
                "upper": rows <= cols, "lower": rows >= cols}[structure]
        return where(mask, x, 0.0), structure
    return x, structure


def solve(a, b, lower=False, overwrite_a=False, overwrite_b=False, check_finite=True,
          assume_a=None, transposed=False):
    """`scipy.linalg.solve`: a x = b (transposed=True: a^T x = b), reading what the solver
    for `assume_a` reads ('sym' and 'pos': the upper triangle, or the lower with lower=True;
    'diagonal', 'tridiagonal', triangular: those entries)."""
    x, structure = _structured(_matrix(a, "solve"), assume_a, lower)
    if structure in ("upper", "lower"):
        return _triangular(x, b, structure == "lower", int(bool(transposed)), "solve")
    x = swap_last(x) if transposed else x
    return _columns(lambda b: L.solve(x, b), _real(b, "solve"))


def inv(a, overwrite_a=False, check_finite=True, *, assume_a=None, lower=False):
    """`scipy.linalg.inv`, reading what the routine for `assume_a` reads (as `solve`)."""
    if assume_a in ("tridiagonal", "banded", "positive definite", "symmetric", "hermitian"):
        raise ValueError(f"{assume_a} is not a recognized matrix structure")
    x = _matrix(a, "inv")
    return _as_scipy("inv", L.inv(_structured(x, assume_a, lower)[0]), x.dtype)


def det(a, overwrite_a=False, check_finite=True):
    """`scipy.linalg.det` (float64 for float32 input, as SciPy), differentiable at every
    matrix, singular ones included."""
    x = _matrix(a, "det")
    return _as_scipy("det", L.det(x), x.dtype)


# ----------------------------------------------------------- decompositions


def eigh(a, b=None, *, lower=True, eigvals_only=False, overwrite_a=False, overwrite_b=False,
         type=1, check_finite=True, subset_by_index=None, subset_by_value=None, driver=None):
    """`scipy.linalg.eigh`: (w, v) of the symmetric matrix in a's lower (lower=False: upper)
    triangle; with `b`, the generalized problem of `type` 1 (a v = w b v), 2 (a b v = w v)
    or 3 (b a v = w v) through b's Cholesky factor, as LAPACK reduces it.
    `subset_by_index=(lo, hi)` keeps eigenvalues lo..hi (inclusive). The eigenvectors'
    signs are arbitrary; they may differ from those SciPy's LAPACK driver picks."""
    if subset_by_value is not None:
        raise unsupported("scipy.linalg.eigh", "subset_by_value: how many eigenvalues it "
                          "returns depends on their values; use subset_by_index")
    x = _matrix(a, "eigh")
    if b is None:
        w, v = L.eigh(x, lower=lower)
    else:
        if type not in (1, 2, 3):
            raise ValueError(f"type must be 1, 2 or 3, got {type!r}")
        factor = L.cholesky(_symmetric(_matrix(b, "eigh"), lower))      # b = f f^T
        s = _symmetric(x, lower)
        if type == 1:                    # f^-1 s f^-T
            left = L.triangular_solve(factor, s, lower=True, trans=0)
            c = swap_last(L.triangular_solve(factor, swap_last(left), lower=True, trans=0))
        else:                            # f^T s f
            c = matmul(swap_last(factor), matmul(s, factor))
        w, y = L.eigh(c, lower=True)
        v = matmul(factor, y) if type == 3 else L.triangular_solve(factor, y, lower=True,
                                                                   trans=1)
    if subset_by_index is not None:
        lo, hi = (int(i) for i in subset_by_index)
        n = x.shape[-1]
        if not 0 <= lo <= hi < n:
            raise ValueError(f"subset_by_index must satisfy 0 <= lo <= hi < {n}, "
                             f"got {subset_by_index}")
        w, v = w[..., lo:hi + 1], v[..., lo:hi + 1]
    return w if eigvals_only else (w, v)


def svd(a, full_matrices=True, compute_uv=True, overwrite_a=False, check_finite=True,
        lapack_driver="gesdd"):
    """`scipy.linalg.svd`: (U, s, Vh), or s with compute_uv=False. full_matrices=True is
    supported for square matrices (where it is the reduced SVD)."""
    x = _matrix(a, "svd", square=False)
    if not compute_uv:
        return L.svdvals(x)
    return tuple(svd_factors(x, full_matrices, "scipy.linalg.svd"))


def qr(a, overwrite_a=False, lwork=None, mode="full", pivoting=False, check_finite=True):
    """`scipy.linalg.qr` of tall or square matrices: (Q, R) in modes 'full' (square only:
    a tall matrix's extra columns of Q are not unique) and 'economic'; (R,) in mode 'r';
    with pivoting=True also the column permutation P (a[:, P] = Q R, no derivative)."""
    if mode not in ("full", "r", "economic", "raw"):
        raise ValueError("Mode argument should be one of ['full', 'r', 'economic', 'raw']")
    x = _matrix(a, "qr", square=False)
    m, n = x.shape[-2:]
    if mode == "raw":
        raise unsupported("scipy.linalg.qr", "mode='raw'")
    if m < n:
        raise unsupported("scipy.linalg.qr", f"a wide {m}x{n} matrix (m < n): only tall or "
                          "square matrices are supported; factor the transpose instead")
    if mode == "full" and m != n:
        raise unsupported("scipy.linalg.qr", f"mode='full' for a non-square {m}x{n} matrix: "
                          "the extra columns of Q are not unique; use mode='economic'")
    if pivoting:                         # a[:, perm] = q r, perm without derivative
        perm = L.qr_pivots(x)
        x = take_along_axis(x, reshape(perm, perm.shape[:-1] + (1, n)), axis=-1)
    q, r = L.qr(x)
    if mode == "r":                      # R of the full factorization: zero rows below
        r = pad_constant(r, [(0, 0)] * (r.ndim - 2) + [(0, m - n), (0, 0)])
    result = (r,) if mode == "r" else (q, r)
    return result + (perm,) if pivoting else result


def polar(a, side="right"):
    """`scipy.linalg.polar`: (u, p) with a = u p (side='right') or a = p u ('left').

    Where p is invertible (full rank, tall or square a for 'right', wide or square for
    'left') p is sqrtm(a^T a) (or sqrtm(a a^T)) and u = a p^-1: differentiable at repeated
    singular values too (an orthogonal a); otherwise both come from the SVD, as SciPy
    computes them.
    """
    if side not in ("right", "left"):
        raise ValueError("`side` must be either 'right' or 'left'")
    x = _matrix(a, "polar", square=False)
    m, n = x.shape[-2:]
    if (m >= n) if side == "right" else (m <= n):
        if side == "left":
            u, p = polar(swap_last(x))
            return swap_last(u), p
        p = L.sqrtm(matmul(swap_last(x), x))
        return swap_last(L.solve(p, swap_last(x))), p
    w, s, vh = L.svd(x)
    u = matmul(w, vh)
    if side == "right":
        return u, matmul(swap_last(vh) * s[..., None, :], vh)
    return u, matmul(w * s[..., None, :], swap_last(w))


# ---------------------------------------------------------- matrix functions


def expm(A):
    """`scipy.linalg.expm`, with its Frechet derivative (expm of a block matrix) as rule."""
    x = _matrix(A, "expm")
    return _as_scipy("expm", L.expm(x), x.dtype)


def expm_frechet(A, E, method=None, compute_expm=True, check_finite=True):
    """`scipy.linalg.expm_frechet`: (expm(A), L(A, E)), or L(A, E) alone, the derivative of
    expm at A in the direction E (the upper right block of expm([[A, E], [0, A]]))."""
    if method not in (None, "SPS", "blockEnlarge"):
        raise ValueError(f"Unknown implementation {method}")
    a, e = _matrix(A, "expm_frechet"), _matrix(E, "expm_frechet")
    if a.shape != e.shape:
        raise ValueError("expected A and E to be the same shape")
    derivative = _as_scipy("expm_frechet", L.frechet(L.expm, a, e), a.dtype, arity=2)
    if not compute_expm:
        return derivative
    return _as_scipy("expm_frechet", L.expm(a), a.dtype, arity=2), derivative


def sqrtm(A):
    """`scipy.linalg.sqrtm` of matrices with a real principal square root (no negative
    real eigenvalues); its derivative solves a Sylvester equation."""
    x = _matrix(A, "sqrtm")
    return _as_scipy("sqrtm", L.sqrtm(x), x.dtype)


def logm(A):
    """`scipy.linalg.logm` of matrices with a real principal logarithm (no negative real
    eigenvalues); computed in float64, as SciPy does."""
    x = _matrix(A, "logm")
    if x.dtype != _np.float64:
        x = convert(x, dtype=_np.dtype(_np.float64))
    return L.logm(x)


def solve_sylvester(a, b, q):
    """`scipy.linalg.solve_sylvester`: x with a x + x b = q."""
    return L.sylvester(_matrix(a, "solve_sylvester"), _matrix(b, "solve_sylvester"),
                       _matrix(q, "solve_sylvester", square=False))


# --------------------------------------------------------- special matrices


def block_diag(*arrs):
    """`scipy.linalg.block_diag`: the arrays (scalars and vectors as 1-row matrices) on the
    diagonal of a matrix of zeros."""
    blocks = []
    for i, a in enumerate(arrs):
        x = _array(a)
        if x.ndim > 2:
            raise ValueError("arguments in the following positions have dimension greater "
                             f"than 2: [{i}]")
        blocks.append(reshape(x, (1, -1)) if x.ndim < 2 else x)
    if not blocks:
        return _np.empty((1, 0))
    total = sum(x.shape[1] for x in blocks)
    rows, before = [], 0
    for x in blocks:
        rows.append(pad_constant(x, [(0, 0), (before, total - before - x.shape[1])]))
        before += x.shape[1]
    return concatenate(rows, axis=0)


def _vectors(c, r=None):
    """c and r as vectors (or stacks of them, batch axes broadcast)."""
    c = _array(c)
    c = reshape(c, (1,)) if c.ndim == 0 else c
    if r is None:
        return c, None
    r = _array(r)
    r = reshape(r, (1,)) if r.ndim == 0 else r
    batch = _np.broadcast_shapes(c.shape[:-1], r.shape[:-1])
    return broadcast_to(c, batch + c.shape[-1:]), broadcast_to(r, batch + r.shape[-1:])


def toeplitz(c, r=None):
    """`scipy.linalg.toeplitz`: first column c, first row r (r[0] ignored; default
    conj(c): a Hermitian matrix for complex c, as SciPy's)."""
    c, r = _vectors(c, r)
    if r is None:
        r = conjugate(c) if _np.dtype(c.dtype).kind == "c" else c
    m, n = c.shape[-1], r.shape[-1]
    values = concatenate([flip(c, axis=-1), r[..., 1:]], axis=-1)
    return take(values, m - 1 + _np.subtract.outer(_np.arange(n), _np.arange(m)).T, axis=-1)


def circulant(c):
    """`scipy.linalg.circulant`: the matrix whose columns are c rolled down by 0, 1, ..."""
    c, _ = _vectors(c)
    n = c.shape[-1]
    return take(c, _np.subtract.outer(_np.arange(n), _np.arange(n)) % n, axis=-1)


def hankel(c, r=None):
    """`scipy.linalg.hankel`: first column c, last row r (r[0] ignored; default zeros)."""
    c, r = _vectors(c, _np.zeros(_array(c).shape[-1:] or (1,), _array(c).dtype)
                    if r is None else r)
    m, n = c.shape[-1], r.shape[-1]
    values = concatenate([c, r[..., 1:]], axis=-1)
    return take(values, _np.add.outer(_np.arange(m), _np.arange(n)), axis=-1)
