"""Linear-algebra primitives: factorizations, solves, inverses and matrix functions (expm,
logm, sqrtm) of stacked matrices.

Every primitive works on stacks of matrices: the last two axes are the matrix,
leading axes are a batch, as in `numpy.linalg`. Inputs are floating point (the numpy
namespace converts integers) and results keep the input dtype. Complex matrices reach
the rules of the primitives with `complex_rules` (inv, solve, triangular_solve, det,
slogdet, cholesky, eigh, eig, svd, svdvals, qr, pinv: written with conjugate transposes where the
functions are, core/numbers.py); the others refuse them.

The rules are closed-form matrix derivatives (Giles 2008, "Collected matrix
derivative results"; Murray 2016 for Cholesky; Townsend 2016 for the SVD),
written only with primitives -- matmul, where, elementwise arithmetic and the
primitives of this file -- so that they differentiate again. Constants (identity
matrices, triangle masks) are NumPy arrays of the input's dtype.

Routines that read one triangle of their input, as LAPACK does (`cholesky` the
lower one; `eigh` the lower one, or the upper one with lower=False) are
differentiated as functions of exactly that triangle: the matrix they see is
`tril(a) + tril(a, -1).T`, so a perturbation of the other triangle has no
effect, and derivatives agree with finite differences even at non-symmetric
points.

Batching moves the batch axis to the front (NumPy maps over leading axes); the
two-operand solves broadcast their stacks like matmul, so batched operands are
padded to a common rank first.

Derivatives assume what makes them exist: invertible matrices for `inv`,
`solve` and `slogdet` (whose derivatives are NaN at a singular matrix, where
log|det| is -inf), positive definite ones for `cholesky`, distinct eigenvalues
for `eigh` and `eig` (whose eigenvectors also need a strictly largest component), distinct non-zero singular values for `svd`, full column rank for
`qr`, and a locally constant rank for `pinv`; for `lu_factor`, pivots that do not
change and an invertible leading block; for `sylvester`, no eigenvalue of a is one of -b;
for `sqrtm` and `logm`, no eigenvalue on the closed negative real axis (where their
results are complex, which is refused; sqrtm's derivatives are NaN where its result is
singular). `det` and `adjugate` are
polynomials: det's first and second derivatives are exact at every matrix,
singular ones included; beyond second order, see the adjugate's section. The
`domain` of each primitive names, per array input, the kind of matrix to test it
at: "invertible", "spd", "symmetric", "triangular", "tall" (m >= n), "matrix",
"square" (any rank, zero included), "nonsymmetric" (distinct eigenvalues, complex ones
among them), "distinct" (distinct singular values, the
smallest possibly zero) or "pivots" (LAPACK's row interchanges).
"""
import numpy as np
import scipy.linalg

from ..core import arrays
from ..core.arrays import dtype_of, shape_of
from ..core.indexing import Slice
from ..core.numbers import complex_error
from ..core.primitive import ZERO, Primitive, ShapeDtype
from .contraction import adjoint, matmul, swap_last
from .elementwise import (absolute, conjugate, equal, imag, less_equal, not_equal, real,
                          sign, where)
from .families import (batch_elementwise, batch_stacked, constant, eager_call, for_reading,
                       unbroadcast)
from . import reductions
from .reductions import argmax, product_of_others, sum
from .structural import concatenate, convert, getitem, reshape, stop_gradient

# ------------------------------------------------------------------ helpers


def _eye(x, n=None):
    """The identity matrix matching x's last axis (or of size n), in x's dtype (a constant)."""
    return arrays.eye(shape_of(x)[-1] if n is None else n, dtype_of(x), like=x)


def _diagonal(x):
    """The diagonals of a stack of square matrices, shape (..., n)."""
    return sum(x * _eye(x), axis=(len(shape_of(x)) - 1,), keepdims=False)


def _diagonal_matrix(v):
    """Stack of diagonal matrices with diagonals v (..., n)."""
    return reshape(v, shape=shape_of(v) + (1,)) * _eye(v)


def _trace(x):
    n = len(shape_of(x))
    return sum(x * _eye(x), axis=(n - 2, n - 1), keepdims=False)


def _per_matrix(x):
    """A value per matrix (...) reshaped to broadcast against the matrices (..., 1, 1)."""
    return reshape(x, shape=shape_of(x) + (1, 1))


def _as_row(v):
    """v (..., k) as a stack of 1 x k rows: multiplying by it scales columns."""
    return reshape(v, shape=shape_of(v)[:-1] + (1, shape_of(v)[-1]))


def _as_column(v):
    return reshape(v, shape=shape_of(v) + (1,))


def _lower_weights(x):
    """tril(ones) with a halved diagonal: `x * w` is the lower triangle, diagonal halved."""
    n = shape_of(x)[-1]
    return arrays.tri(n, dtype=dtype_of(x), like=x) - 0.5 * arrays.eye(n, dtype_of(x), like=x)


def _symmetric_from_lower(x):
    """tril(x) + tril(x, -1)^H: the symmetric (Hermitian) matrix that a lower-triangle
    routine reads."""
    half = x * _lower_weights(x)
    return half + _herm(half)


def _symmetric_from_lower_transpose(ct):
    """The adjoint of `_symmetric_from_lower` under Re(tr(a^H b))."""
    return (ct + _herm(ct)) * _lower_weights(ct)


# Rules of functions of Hermitian matrices (cholesky, eigh) are written with conjugate
# transposes `_herm`, as the functions are; their pullbacks are adjoints under
# Re(tr(a^H b)), which `_conjugated` turns into the transposes under Re(tr(a^T b)) that
# pullbacks are (core/numbers.py). For real values both are the transpose.

def _conj(x):
    return conjugate(x) if x is not ZERO and _is_complex(x) else x


def _herm(x):
    """The conjugate transpose of a stack of matrices."""
    return _conj(swap_last(x))


def _conjugated(pullback):
    """ct -> conj(pullback(conj(ct))), for cotangents and results that are tuples."""
    def conjugated(ct):
        ct = tuple(map(_conj, ct)) if isinstance(ct, (tuple, list)) else _conj(ct)
        return tuple(map(_conj, pullback(ct)))
    return conjugated


def _lower_solve_herm(l, b):
    """l^-H b for a lower triangular l (triangular_solve transposes without conjugating)."""
    return _conj(triangular_solve(l, _conj(b), lower=True, trans=1))


def _reciprocal_gaps(w):
    """F[..., i, j] = 1 / (w_j - w_i) off the diagonal, 0 on it (the eigenvector kernel).
    A gap within the values' rounding (8 n eps max |w|) is a tie: its reciprocal is inf,
    so the derivatives dividing by it are NaN, as at an exact tie (the vectors are not
    unique there). LAPACK's tied values differ by about eps: 1 / gap was then 1e16, and
    Hessians finite and wrong (0.5 off for sum(eigvalsh(a) ** 2) at a = Q diag(1, 1, 2) Q^T)."""
    n = shape_of(w)[-1]
    off = ~arrays.eye(n, bool, like=w)
    gaps = _as_row(w) - _as_column(w)
    if n == 0:
        return gaps
    tolerance = 8 * n * np.finfo(dtype_of(w)).eps * reductions.max(
        absolute(stop_gradient(w)), axis=(len(shape_of(w)) - 1,), keepdims=True)
    apart = less_equal(_as_row(tolerance), absolute(gaps))
    return where(off, 1.0 / where(off, where(apart, gaps, 0.0), 1.0), 0.0)


def _batch(*xs):
    return np.broadcast_shapes(*(shape_of(x)[:-2] for x in xs))


def _same_shape(a, **params):
    return ShapeDtype(shape_of(a), dtype_of(a))


# ---------------------------------------------------------------------- inv


def _inv_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    out = inv(a)
    return out, -matmul(out, matmul(t, out))


def _inv_vjp(wrt, out, a):
    out_t = adjoint(out)

    def pullback(ct):
        return (-matmul(out_t, matmul(ct, out_t)),)
    return pullback


inv = Primitive("inv", np.linalg.inv, shape=_same_shape, jvp=_inv_jvp, vjp=_inv_vjp,
                batch=lambda v, d: batch_stacked(inv, v, d),
                family="linalg", fresh_output=True, domain=("invertible",),
                emit_statements=eager_call("np.linalg.inv"),
                complex_rules=True)

# -------------------------------------------------------------------- solve
# a (..., n, n), b (..., n, k): x = a^-1 b, batch axes broadcast.


def _solve_shape(a, b):
    if shape_of(a)[-1] != shape_of(b)[-2]:
        raise ValueError(f"solve: a matrix of shape {shape_of(a)[-2:]} and right-hand sides of "
                         f"shape {shape_of(b)[-2:]} differ in their number of rows.")
    return ShapeDtype(_batch(a, b) + shape_of(b)[-2:], np.result_type(dtype_of(a), dtype_of(b)))


def _solve_jvp(primals, tangents):
    (a, b), (t_a, t_b) = primals, tangents
    x = solve(a, b)
    if t_a is ZERO:
        return x, solve(a, t_b)
    rhs = -matmul(t_a, x) if t_b is ZERO else t_b - matmul(t_a, x)
    return x, solve(a, rhs)


def _solve_vjp(wrt, out, a, b):
    def pullback(ct):
        ct_b = solve(adjoint(a), ct)
        return (unbroadcast(-matmul(ct_b, adjoint(out)), a) if wrt[0] else ZERO,
                unbroadcast(ct_b, b) if wrt[1] else ZERO)
    return pullback


def _solve_batch(values, dims):
    """A batch of right-hand sides of one (unbatched) matrix is one solve with their columns
    side by side: one factorisation, and a 2-d solve where a stack of matrices is all the
    library has (Dask's solve takes 2-d arrays only: the Hessian of a function using solve)."""
    (a, b), (a_dim, b_dim) = values, dims
    if a_dim is not None or b_dim is None:
        return batch_elementwise(solve, values, dims)
    b = arrays.moveaxis(b, b_dim, len(shape_of(b)) - 3)         # (..., size, n, k)
    b = arrays.moveaxis(b, len(shape_of(b)) - 2, len(shape_of(b)) - 3)   # (..., n, size, k)
    *lead, n, size, k = shape_of(b)
    x = solve(a, reshape(b, shape=(*lead, n, size * k)))
    x = reshape(x, shape=shape_of(x)[:-1] + (size, k))
    return arrays.moveaxis(x, len(shape_of(x)) - 2, 0), 0


def _solve_impl(a, b):
    """np.linalg.solve, with a NumPy operand beside another library's array first made an
    array of that library (the result belongs to it, by NumPy's mixing rule; Dask's solve
    accepts only Dask operands)."""
    base = arrays.foreign_array(a) if arrays.foreign_array(b) is None else arrays.foreign_array(b)
    if base is not None:
        a, b = (x if arrays.foreign_array(x) is not None else np.asarray(x, like=base)
                for x in (a, b))
        if len(a.shape) > 2 or len(b.shape) > 2:
            try:
                return np.linalg.solve(a, b)
            except np.linalg.LinAlgError:
                raise
            except ValueError:        # a library solving 2-d arrays only (Dask)
                return _solve_each(a, b)
    return np.linalg.solve(a, b)


def _solve_each(a, b):
    """A stack of solves one matrix at a time, stacked again: for a library whose solve
    takes 2-d arrays only (Dask's)."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
    x = np.stack([np.linalg.solve(a[i], b[i]) for i in range(a.shape[0])])
    return x.reshape(batch + x.shape[1:])


solve = Primitive("solve", _solve_impl, shape=_solve_shape, jvp=_solve_jvp,
                  vjp=_solve_vjp, batch=_solve_batch,
                  family="linalg", fresh_output=True, domain=("invertible", "matrix"),
                  emit_statements=eager_call("np.linalg.solve"),
                  complex_rules=True)

# --------------------------------------------------------- triangular_solve
# scipy.linalg.solve_triangular: solves op(T) x = b, where T is the lower (or
# upper) triangle of a -- the other triangle is never read -- and op(T) is T or
# T.T (trans=0 or 1).


def _triangular_solve_impl(a, b, lower, trans):
    """solve_triangular looped over the broadcast batch axes (SciPy < 1.15 does not batch).
    NaN and Inf propagate as in NumPy's solvers (SciPy's finiteness check would raise inside
    a derivative whose value is NaN, e.g. qr's at a rank-deficient matrix)."""
    batch = _batch(a, b)
    if not batch:
        return scipy.linalg.solve_triangular(a, b, trans=trans, lower=lower, check_finite=False)
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty_like(b, dtype=np.result_type(a.dtype, b.dtype))
    for i in np.ndindex(batch):
        out[i] = scipy.linalg.solve_triangular(a[i], b[i], trans=trans, lower=lower,
                                               check_finite=False)
    return out


def _triangle_mask(a, lower):
    """The lower (or upper) triangle of a's matrices, diagonal included, as a mask."""
    mask = arrays.tri(shape_of(a)[-1], like=a)
    return mask if lower else mask.T


def _op(x, trans):
    return swap_last(x) if trans else x


def _triangular_solve_jvp(primals, tangents, lower, trans):
    (a, b), (t_a, t_b) = primals, tangents
    x = triangular_solve(a, b, lower=lower, trans=trans)
    if t_a is ZERO:
        return x, triangular_solve(a, t_b, lower=lower, trans=trans)
    t_triangle = where(_triangle_mask(a, lower), t_a, 0.0)
    product = matmul(_op(t_triangle, trans), x)
    rhs = -product if t_b is ZERO else t_b - product
    return x, triangular_solve(a, rhs, lower=lower, trans=trans)


def _triangular_solve_vjp(wrt, out, a, b, lower, trans):
    def pullback(ct):
        ct_b = triangular_solve(a, ct, lower=lower, trans=1 - trans)
        ct_a = ZERO
        if wrt[0]:
            ct_op = matmul(out, adjoint(ct_b)) if trans else matmul(ct_b, adjoint(out))
            ct_a = unbroadcast(where(_triangle_mask(a, lower), -ct_op, 0.0), a)
        return ct_a, unbroadcast(ct_b, b) if wrt[1] else ZERO
    return pullback


triangular_solve = Primitive(
    "triangular_solve", _triangular_solve_impl,
    shape=lambda a, b, lower, trans: _solve_shape(a, b),
    jvp=_triangular_solve_jvp, vjp=_triangular_solve_vjp,
    batch=lambda v, d, **p: batch_elementwise(triangular_solve, v, d, **p),
    family="linalg", fresh_output=True, domain=("triangular", "matrix"),
    emit_statements=eager_call("scipy.linalg.solve_triangular"),
    complex_rules=True)

# ------------------------------------------------------ adjugate, det, slogdet
# The adjugate adj(a) (the transposed cofactor matrix: adj(a) a = det(a) I) is a
# polynomial in a, equal to det(a) a^-1 where a is invertible. From the SVD
# a = u diag(s) v^H, adj(a) = c v diag(pi) u^H with c = det(u) det(v^H) (+-1 for real a,
# of modulus 1 for complex a) and pi_i = prod_{j != i} s_j: exclusive products, exact
# with zero singular values. Its derivative, with w = u^H da v and
# pi_ij = prod_{m not in {i, j}} s_m:
#   d adj(a) = c v D(w) u^H,  D_ii = sum_{k != i} pi_ik w_kk,  D_ji = -pi_ij w_ji (j != i).
# D is its own transpose (pi is symmetric), so the pullback of adj_bar (no conjugation,
# core/numbers.py) is c conj(u) D(v^T adj_bar conj(u)) v^T.
# Both hold for every SVD of every a (as the limits of those of a + eps u v^T, which is
# invertible for small eps > 0 and has the same singular vectors), so det's first and
# second derivatives are exact everywhere: d det(a) = tr(adj(a) da), and the pullback
# of det_bar is det_bar adj(a)^T. Beyond second order the adjugate's rules are
# differentiated through the SVD, whose derivative exists where the singular values
# are distinct (one of them may be zero): there the result is exact; where they are not
# (the identity, the zero matrix of size >= 2) it is NaN, not a silently wrong number.


def _svd_parts(a):
    """(c, u, s, v): a = u diag(s) v^H, c = det(u) det(v^H) per matrix (for a real a, +-1:
    a constant)."""
    u, s, vh = svd(a)
    c = det(u) * det(vh)
    return _per_matrix(c if _is_complex(a) else sign(c)), u, s, _herm(vh)


def _products_of_others(s):
    """pi_i = prod_{j != i} s_j along the last axis (no division: exact with zeros)."""
    return product_of_others(s, (len(shape_of(s)) - 1,))


def _adjugate_impl(a):
    u, s, vh = np.linalg.svd(a)
    c = np.sign(np.linalg.det(u) * np.linalg.det(vh))[..., None, None]   # (z / |z| if complex)
    v_pi = np.conj(np.swapaxes(vh, -1, -2)) * _products_of_others(s)[..., None, :]
    return c * np.matmul(v_pi, np.conj(np.swapaxes(u, -1, -2)))


def _adjugate_derivative(a, t, transposed=False):
    """d adj(a) applied to t, or (transposed=True) its adjoint, the pullback, applied to t."""
    c, u, s, v = _svd_parts(a)
    left, right = (_conj(u), _conj(v)) if transposed else (v, u)
    w = matmul(_herm(right), matmul(t, left))
    distinct = ~arrays.eye(shape_of(s)[-1], bool, like=s)
    # pi_ij off the diagonal: the products of the others in rows that exclude s_i.
    pairs = where(distinct, _products_of_others(where(distinct, _as_row(s), 1.0)), 0.0)
    d = _diagonal_matrix(sum(pairs * _as_row(_diagonal(w)), axis=(len(shape_of(w)) - 1,),
                             keepdims=False)) - pairs * w
    return c * matmul(left, matmul(d, _herm(right)))


def _adjugate_vjp(wrt, out, a):
    def pullback(ct):
        return (_adjugate_derivative(a, ct, transposed=True),)
    return pullback


@for_reading
def _adjugate_statements(targets, args, code):
    """The impl's formula, c v diag(pi) u^H, in NumPy statements."""
    (adj,), (a,) = targets, args
    return [f"{adj}_u, {adj}_s, {adj}_vh = np.linalg.svd({a})",
            f"{adj}_others = np.prod(np.where(np.eye({adj}_s.shape[-1], dtype=bool), 1.0, "
            f"{adj}_s[..., None, :]), axis=-1)  # products of the other singular values",
            f"{adj}_sign = np.sign(np.linalg.det({adj}_u) * np.linalg.det({adj}_vh))",
            f"{adj} = {adj}_sign[..., None, None] * (np.swapaxes({adj}_vh, -1, -2).conj() * "
            f"{adj}_others[..., None, :]) @ np.swapaxes({adj}_u, -1, -2).conj()"]


adjugate = Primitive("adjugate", _adjugate_impl, shape=_same_shape,
                     jvp=lambda p, t: (adjugate(*p), _adjugate_derivative(p[0], t[0])),
                     vjp=_adjugate_vjp, batch=lambda v, d: batch_stacked(adjugate, v, d),
                     family="linalg", domain=("distinct",), emit_statements=_adjugate_statements,
                     complex_rules=True)


def _cofactors(a):
    """adj(a)^T, so that d det(a) = sum(cofactors * da): exact at every matrix, singular
    ones too, real or complex."""
    return adjoint(adjugate(a))


def _is_complex(x):
    return dtype_of(x).kind == "c"


def _det_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    return det(a), sum(_cofactors(a) * t, axis=(len(shape_of(a)) - 2, len(shape_of(a)) - 1),
                       keepdims=False)


def _det_vjp(wrt, out, a):
    def pullback(ct):
        return (_per_matrix(ct) * _cofactors(a),)
    return pullback


det = Primitive("det", np.linalg.det,
                shape=lambda a: ShapeDtype(shape_of(a)[:-2], dtype_of(a)),
                jvp=_det_jvp, vjp=_det_vjp, batch=lambda v, d: batch_stacked(det, v, d),
                family="linalg", fresh_output=True, domain=("square",),
                emit_statements=eager_call("np.linalg.det"),
                complex_rules=True)

# d log|det a| = tr(a^-1 da); the cotangent of a is (cotangent of log|det|) a^-T. Where a
# is singular (sign 0) log|det a| is -inf and has no derivative: every order is NaN there.
# For complex a, with g = tr(a^-1 da): d log|det a| = Re(g) and d sign = i Im(g) sign; the
# transpose (core/numbers.py) pulls back (ct_sign, ct_logabsdet) to
# (ct_logabsdet - i Re(i sign ct_sign)) a^-T.


def _invertible_stand_in(a, det_sign):
    """(b, exists): b is a, or where det_sign is 0 the identity (a + (I - a), with a's
    derivative); exists is 1, or NaN where det_sign is 0, per matrix: multiplying by it
    makes every derivative there NaN instead of the stand-in's finite one."""
    singular = equal(det_sign, 0.0)
    b = a + where(_per_matrix(singular), _eye(a) - stop_gradient(a), 0.0)
    real = _real_dtype(a)
    return b, where(singular, arrays.full((), np.nan, real, like=a), arrays.ones((), real, like=a))


def _real_dtype(a):
    return np.finfo(dtype_of(a)).dtype


def _slogdet_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    out = slogdet(a)
    b, exists = _invertible_stand_in(a, out[0])
    g = _trace(solve(b, t)) * exists
    if not _is_complex(a):
        return out, (ZERO, g)
    return out, (1j * imag(g) * out[0], real(g))


def _slogdet_vjp(wrt, out, a):
    def pullback(ct):
        ct_sign, ct_logabsdet = ct      # for real a the sign is piecewise constant
        if not _is_complex(a) or ct_sign is ZERO:
            if ct_logabsdet is ZERO:
                return (ZERO,)
            h = ct_logabsdet
        else:
            h = (0.0 if ct_logabsdet is ZERO else ct_logabsdet) \
                - 1j * real(1j * out[0] * ct_sign)
        b, exists = _invertible_stand_in(a, out[0])
        return (_per_matrix(h * exists) * adjoint(inv(b)),)
    return pullback


slogdet = Primitive(
    "slogdet", lambda a: tuple(np.linalg.slogdet(a)),
    shape=lambda a: (ShapeDtype(shape_of(a)[:-2], dtype_of(a)),
                     ShapeDtype(shape_of(a)[:-2], _real_dtype(a))),
    jvp=_slogdet_jvp, vjp=_slogdet_vjp, batch=lambda v, d: batch_stacked(slogdet, v, d),
    multiple_results=True, family="linalg", fresh_output=True, domain=("invertible",),
    emit_statements=eager_call("np.linalg.slogdet"),
    complex_rules=True)

# ----------------------------------------------------------------- cholesky
# l = chol(s), s = tril(a) + tril(a, -1).T.  With phi(m) = lower triangle of m
# with its diagonal halved: dl = l phi(l^-1 ds l^-T) (Murray 2016), and the
# pullback of l_bar is s_bar = l^-T phi(l^T l_bar) l^-1.


def _cholesky_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    l = cholesky(a)
    left = triangular_solve(l, _symmetric_from_lower(t), lower=True, trans=0)      # l^-1 ds
    middle = _herm(triangular_solve(l, _herm(left), lower=True, trans=0))      # .. l^-H
    return l, matmul(l, middle * _lower_weights(a))


def _cholesky_vjp(wrt, out, a):
    def pullback(ct):
        phi = matmul(_herm(out), ct) * _lower_weights(a)
        left = _lower_solve_herm(out, phi)                                       # l^-H phi
        s_bar = _herm(_lower_solve_herm(out, _herm(left)))                       # .. l^-1
        return (_symmetric_from_lower_transpose(s_bar),)
    return _conjugated(pullback)


cholesky = Primitive("cholesky", np.linalg.cholesky, shape=_same_shape, jvp=_cholesky_jvp,
                     vjp=_cholesky_vjp, batch=lambda v, d: batch_stacked(cholesky, v, d),
                     family="linalg", fresh_output=True, domain=("spd",),
                     emit_statements=eager_call("np.linalg.cholesky"),
                     complex_rules=True)

# --------------------------------------------------------------------- eigh
# s = tril(a) + tril(a, -1).T = v diag(w) v^T (lower=False: the same of a.T, as
# NumPy's UPLO='U').  With m = v^T ds v and F_ij = 1 / (w_j - w_i):
# dw = diag(m), dv = v (F * m).
# Complex eigenvectors are unique up to a phase each. The tangent above keeps
# diag(v^H dv) = 0; NumPy's (LAPACK's) make row r of v real instead (r = 0 for UPLO='L',
# -1 for 'U'), as probed once below: dv + i v diag(theta) keeps row r real with
# theta = -Im(dv[r]) / v[r] (NaN where v[r] has a zero: no phase is fixed there).


def _phase_row_is_real():
    """Whether this LAPACK makes the first (UPLO='L') and last ('U') rows of complex
    eigenvectors real; if not, their derivatives are refused rather than guessed."""
    a = np.array([[2.0, 1 - 1j, 0.5j], [1 + 1j, 3.0, 1.0], [-0.5j, 1.0, 1.0]])
    return all(np.all(np.linalg.eigh(a, UPLO=uplo)[1][row].imag == 0)
               for uplo, row in (("L", 0), ("U", -1)))


PHASE_ROW_IS_REAL = _phase_row_is_real()


def _phase_row(v, lower):
    """(one-hot column e of row r, v[r] as a real row (..., 1, n))."""
    e = arrays.zeros((shape_of(v)[-1], 1), _real_dtype(v), like=v)
    e[0 if lower else -1] = 1.0
    if not PHASE_ROW_IS_REAL:
        raise complex_error("derivatives of complex eigenvectors from eigh (this LAPACK's phase "
                            "convention is not the one pullback knows; phase-invariant "
                            "functions such as v diag(f(w)) v^H can use eigvalsh)")
    return e, _as_row(real(sum(v * e, axis=(len(shape_of(v)) - 2,), keepdims=False)))


def _over_phase_row(value, row):
    """value / row, the phase term of a vector whose entry in the real row is `row`; 0 where
    that entry is 0 (a block-diagonal matrix's vectors): LAPACK's convention fixes no phase
    there, and 0 / 0 made every derivative NaN, of phase-invariant functions too."""
    nonzero = not_equal(row, 0.0)
    return where(nonzero, value / where(nonzero, row, 1.0), 0.0)


def _eigh_jvp(primals, tangents, lower):
    (a,), (t,) = primals, tangents
    w, v = eigh(a, lower=lower)
    ds = _symmetric_from_lower(t if lower else _herm(t))
    m = matmul(_herm(v), matmul(ds, v))
    dw, dv = _diagonal(m), matmul(v, _reciprocal_gaps(w) * m)
    if _is_complex(m):                  # w is real; row r of v stays real
        e, row = _phase_row(v, lower)
        dw = real(dw)
        dv = dv - 1j * v * _over_phase_row(
            _as_row(imag(sum(dv * e, axis=(len(shape_of(v)) - 2,), keepdims=False))), row)
    return (w, v), (dw, dv)


def _eigh_vjp(wrt, out, a, lower):
    w, v = out

    def pullback(ct):
        ct_w, ct_v = ct
        if ct_v is not ZERO and _is_complex(v):       # the transpose of the phase term
            e, row = _phase_row(v, lower)
            g = sum(ct_v * v, axis=(len(shape_of(v)) - 2,), keepdims=False)
            ct_v = ct_v - 1j * e * _over_phase_row(_as_row(imag(g)), row)
        return _conjugated(hermitian_pullback)((ct_w, ct_v))

    def hermitian_pullback(ct):
        ct_w, ct_v = ct
        inner = ZERO if ct_w is ZERO else _diagonal_matrix(ct_w)
        if ct_v is not ZERO:
            term = _reciprocal_gaps(w) * matmul(_herm(v), ct_v)
            inner = term if inner is ZERO else inner + term
        ct_a = _symmetric_from_lower_transpose(matmul(v, matmul(inner, _herm(v))))
        return (ct_a if lower else _herm(ct_a),)
    return pullback


eigh = Primitive(
    "eigh", lambda a, lower: tuple(np.linalg.eigh(a, UPLO="L" if lower else "U")),
    shape=lambda a, lower: (ShapeDtype(shape_of(a)[:-1], _real_dtype(a)), _same_shape(a)),
    jvp=_eigh_jvp, vjp=_eigh_vjp, batch=lambda v, d, **p: batch_stacked(eigh, v, d, **p),
    multiple_results=True, family="linalg", fresh_output=True, domain=("symmetric",),
    emit_statements=eager_call("np.linalg.eigh", lower=lambda lower: {"UPLO": '"L"' if lower else '"U"'}),
    complex_rules=True)

# ---------------------------------------------------------------------- eig
# a v = v diag(w) for a general square a (real or complex); w and v are always complex, of
# the input's precision (NumPy returns real ones for a real a whose eigenvalues are all real).
# With m = v^-1 da v and F_ij = 1 / (w_j - w_i) (Giles 2008):
#   dw = diag(m),  dv0 = v (F * m),
# a tangent with diag(v^-1 dv0) = 0. Eigenvectors are unique up to a complex scale each;
# NumPy's (LAPACK's geev) have unit norm and their largest component (by modulus, the first
# of ties) real, as probed once below. dv = dv0 + v diag(c) keeps both:
#   Re(c_k) = -Re(v_k^H dv0_k),  Im(c_k) = -Im(dv0[j_k, k]) / v[j_k, k]   (j_k the largest).
# Derivatives assume distinct eigenvalues and a strictly largest component per eigenvector.


def _largest_component_is_real():
    """Whether this LAPACK's eigenvectors have unit norm and their largest component real
    (for complex input, and for real input with complex eigenvalues); if not, eigenvector
    derivatives are refused rather than guessed."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 5))
    for v in (np.linalg.eig(a)[1], np.linalg.eig(a + 1j * rng.standard_normal((5, 5)))[1]):
        largest = v[np.argmax(np.abs(v), axis=0), np.arange(5)]
        if not (np.all(largest.imag == 0) and np.allclose(np.linalg.norm(v, axis=0), 1.0)):
            return False
    return True


LARGEST_COMPONENT_IS_REAL = _largest_component_is_real()


def _complex_dtype(a):
    return np.result_type(dtype_of(a), np.complex64)


def _eig_impl(a):
    dtype = _complex_dtype(a)
    return tuple(x.astype(dtype, copy=False) for x in np.linalg.eig(a))


def _gauge(v):
    """(one-hot mask of each eigenvector's largest component, that component as a real row)."""
    if not LARGEST_COMPONENT_IS_REAL:
        raise complex_error("derivatives of eigenvectors from eig (this LAPACK's normalisation "
                            "is not the one pullback knows; eigvals has derivatives)")
    rows = len(shape_of(v)) - 2
    if shape_of(v)[-2] == 0:                      # 0 x 0: no components to pick
        return arrays.zeros(shape_of(v), bool, like=v), _as_row(real(sum(
            v, axis=(rows,), keepdims=False)))
    magnitude = stop_gradient(real(v * conjugate(v)))
    largest = argmax(magnitude, axis=rows)
    mask = equal(_as_column(arrays.arange(shape_of(v)[-2], like=v)), _as_row(largest))
    return mask, _as_row(real(sum(where(mask, v, 0.0), axis=(rows,), keepdims=False)))


def _eig_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    w, v = eig(a)
    m = solve(v, matmul(t, v))
    dv = matmul(v, _reciprocal_gaps(w) * m)
    rows = (len(shape_of(v)) - 2,)
    mask, largest = _gauge(v)
    c = (-real(sum(conjugate(v) * dv, axis=rows, keepdims=False))
         - 1j * imag(sum(where(mask, dv, 0.0), axis=rows, keepdims=False)) / largest[..., 0, :])
    return (w, v), (_diagonal(m), dv + v * _as_row(c))


def _eig_vjp(wrt, out, a):
    w, v = out

    def pullback(ct):
        ct_w, ct_v = ct
        inner = ZERO if ct_w is ZERO else _diagonal_matrix(ct_w)
        if ct_v is not ZERO:            # the transpose of the gauge term, then of dv0
            mask, largest = _gauge(v)
            g = _as_row(sum(ct_v * v, axis=(len(shape_of(v)) - 2,), keepdims=False))
            ct_v = ct_v - conjugate(v) * real(g) - 1j * where(mask, imag(g) / largest, 0.0)
            term = _reciprocal_gaps(w) * matmul(swap_last(v), ct_v)
            inner = term if inner is ZERO else inner + term
        ct_a = solve(swap_last(v), matmul(inner, swap_last(v)))
        return (ct_a if _is_complex(a) else real(ct_a),)
    return pullback


@for_reading
def _eig_statements(targets, args, code):
    w, v = targets
    return [f"{w}, {v} = (x.astype(np.result_type(x, np.complex64)) "
            f"for x in np.linalg.eig({args[0]}))"]


eig = Primitive(
    "eig", _eig_impl,
    shape=lambda a: (ShapeDtype(shape_of(a)[:-1], _complex_dtype(a)),
                     ShapeDtype(shape_of(a), _complex_dtype(a))),
    jvp=_eig_jvp, vjp=_eig_vjp, batch=lambda v, d: batch_stacked(eig, v, d),
    multiple_results=True, family="linalg", fresh_output=True, domain=("nonsymmetric",),
    emit_statements=_eig_statements, complex_rules=True)

# ---------------------------------------------------------------------- svd
# The reduced SVD a = u diag(s) vh, a (..., m, n), k = min(m, n); v = vh^H.
# With dp = u^H da v and F_ij = 1 / (s_j^2 - s_i^2) (Townsend 2016):
#   ds = Re(diag(dp))
#   du = u (F * (dp S + S dp^H)) + (I - u u^H) da v S^-1
#   dv = v (F * (S dp + dp^H S)) + (I - v v^H) da^H u S^-1
# The projector terms vanish when u (or v) is square. For complex a, u_k and v_k are unique
# up to one phase each pair: du gets u diag(i Im(dp_kk) / s_k) (the phase difference the
# tangent fixes), and both get i diag(phi) so that the row LAPACK makes real stays real
# (row 0 of v when m >= n, of u when m < n; probed once below): phi_k = -Im(dx[0, k]) / x[0, k].
# The pullback is the adjoint of this map under Re(tr(a^H b)), conjugated (`_conjugated`).


def _svd_phase_row():
    """Whether this LAPACK makes row 0 of v (m >= n) and of u (m < n) real (to rounding: a
    wide matrix is factored through its transpose) for complex input; if not, complex
    singular-vector derivatives are refused rather than guessed."""
    rng = np.random.default_rng(0)
    for shape in ((4, 4), (5, 3), (3, 5)):
        u, _, vh = np.linalg.svd(rng.standard_normal(shape) + 1j * rng.standard_normal(shape),
                                 full_matrices=False)
        if not np.all(abs((vh[:, 0] if shape[0] >= shape[1] else u[0]).imag) < 1e-13):
            return False
    return True


SVD_PHASE_ROW_IS_REAL = _svd_phase_row()


def _row0(x):
    """Row 0 of a stack of matrices, shape (..., k)."""
    e = arrays.zeros((shape_of(x)[-2], 1), _real_dtype(x), like=x)
    e[0] = 1.0
    return sum(x * e, axis=(len(shape_of(x)) - 2,), keepdims=False)


def _svd_phase_row_x(u, v, m, n):
    if not SVD_PHASE_ROW_IS_REAL:
        raise complex_error("derivatives of complex singular vectors (this LAPACK's phase "
                            "convention is not the one pullback knows; svdvals has derivatives)")
    return v if m >= n else u


def _svd_shape(a):
    *batch, m, n = shape_of(a)
    k, dtype = min(m, n), dtype_of(a)
    return (ShapeDtype((*batch, m, k), dtype), ShapeDtype((*batch, k), _real_dtype(a)),
            ShapeDtype((*batch, k, n), dtype))


def _svd_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    u, s, vh = svd(a)
    m, n = shape_of(a)[-2:]
    v = _herm(vh)
    t_v = matmul(t, v)
    dp = matmul(_herm(u), t_v)
    dp_h = _herm(dp)
    s_row, s_col = _as_row(s), _as_column(s)
    gaps = _reciprocal_gaps(s * s)
    du = matmul(u, gaps * (dp * s_row + s_col * dp_h))
    dv = matmul(v, gaps * (s_col * dp + dp_h * s_row))
    if m > n:
        du = du + (t_v - matmul(u, dp)) / s_row
    if n > m:
        dv = dv + (matmul(_herm(t), u) - matmul(v, dp_h)) / s_row
    ds = _diagonal(dp)
    if _is_complex(a):
        ds = real(ds)
        du = du + 1j * u * _as_row(imag(_diagonal(dp)) / s)
        x = _svd_phase_row_x(u, v, m, n)
        phi = _as_row(_over_phase_row(-imag(_row0(dv if x is v else du)), real(_row0(x))))
        du, dv = du + 1j * u * phi, dv + 1j * v * phi
    return (u, s, vh), (du, ds, _herm(dv))


def _svd_vjp(wrt, out, a):
    u, s, vh = out
    m, n = shape_of(a)[-2:]

    def hermitian_pullback(ct):
        ct_u, ct_s, ct_vh = ct
        s_row, s_col = _as_row(s), _as_column(s)
        inner = ZERO if ct_s is ZERO else _diagonal_matrix(ct_s)
        extra = ZERO                    # the projector terms, already (..., m, n)
        if _is_complex(u) and (ct_u is not ZERO or ct_vh is not ZERO):
            # the phase term: its cotangent reaches row 0 of the one that stays real
            g = 0.0
            if ct_u is not ZERO:
                g = g + imag(_diagonal(matmul(_herm(u), ct_u)))
            if ct_vh is not ZERO:
                g = g - imag(_diagonal(matmul(ct_vh, _herm(vh))))
            x = _svd_phase_row_x(u, _herm(vh), m, n)
            e = arrays.zeros((shape_of(x)[-2], 1), _real_dtype(x), like=x)
            e[0] = 1.0
            if m >= n:
                fix = 1j * _as_column(_over_phase_row(g, real(_row0(x)))) * swap_last(e)
                ct_vh = fix if ct_vh is ZERO else ct_vh + fix
            else:
                fix = -1j * e * _as_row(_over_phase_row(g, real(_row0(x))))
                ct_u = fix if ct_u is ZERO else ct_u + fix
        if ct_u is not ZERO:
            ut_ct = matmul(_herm(u), ct_u)
            j = _reciprocal_gaps(s * s) * ut_ct
            term = (j + _herm(j)) * s_row
            if _is_complex(u):
                term = term + 1j * _diagonal_matrix(imag(_diagonal(ut_ct)) / s)
            inner = term if inner is ZERO else inner + term
            if m > n:
                extra = matmul((ct_u - matmul(u, ut_ct)) / s_row, vh)
        if ct_vh is not ZERO:
            ct_vh_v = matmul(ct_vh, _herm(vh))
            j = _reciprocal_gaps(s * s) * _herm(ct_vh_v)
            term = s_col * (j + _herm(j))
            inner = term if inner is ZERO else inner + term
            if n > m:
                term = matmul(u / s_row, ct_vh - matmul(ct_vh_v, vh))
                extra = term if extra is ZERO else extra + term
        ct_a = matmul(u, matmul(inner, vh))
        return (ct_a if extra is ZERO else ct_a + extra,)
    return _conjugated(hermitian_pullback)


svd = Primitive("svd", lambda a: tuple(np.linalg.svd(a, full_matrices=False)),
                shape=_svd_shape, jvp=_svd_jvp, vjp=_svd_vjp, multiple_results=True,
                batch=lambda v, d: batch_stacked(svd, v, d),
                family="linalg", fresh_output=True, domain=("matrix",),
                emit_statements=eager_call("np.linalg.svd", full_matrices="False"),
                complex_rules=True)


# For complex a: ds = Re(diag(u^H da v)), whose transpose (core/numbers.py) takes ct to
# conj(u) diag(ct) conj(vh) (phase-free: no gauge term).


def _svdvals_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    u, s, vh = svd(a)
    ds = sum(_conj(u) * matmul(t, _herm(vh)), axis=(len(shape_of(a)) - 2,), keepdims=False)
    return s, real(ds) if _is_complex(ds) else ds


def _svdvals_vjp(wrt, out, a):
    u, _, vh = svd(a)      # the impl computes no singular vectors: the rule needs them

    def pullback(ct):
        return (matmul(_conj(u) * _as_row(ct), _conj(vh)),)
    return pullback


svdvals = Primitive("svdvals", lambda a: np.linalg.svd(a, compute_uv=False),
                    shape=lambda a: _svd_shape(a)[1], jvp=_svdvals_jvp, vjp=_svdvals_vjp,
                    batch=lambda v, d: batch_stacked(svdvals, v, d),
                    family="linalg", fresh_output=True, domain=("matrix",),
                    emit_statements=eager_call("np.linalg.svd", compute_uv="False"),
                    complex_rules=True)

# ----------------------------------------------------------------------- qr
# The reduced QR a = q r of a (..., m, n), m >= n.  With c = q^T da r^-1 and
# omega = tril(c, -1) - tril(c, -1)^T (q^T dq, antisymmetric):
#   dq = q omega + (I - q q^T) da r^-1,   dr = (c - omega) r.
# For complex a (r has a real diagonal, as LAPACK makes it): the conjugate transposes, and
# omega gains the diagonal i Im(diag(c)) that keeps diag(dr) real; in the pullback
# (adjoint under Re(tr(a^H b)), conjugated into a transpose) g gains i Im(diag(b)).


def _strictly_lower(x):
    rows, cols = shape_of(x)[-2:]
    return where(arrays.tri(rows, cols, k=-1, like=x), x, 0.0)


def _right_solve_upper(x, r, trans):
    """x r^-1 (trans=0) or x r^-H (trans=1), for upper triangular r."""
    flip = swap_last if trans == 0 else _herm
    return flip(triangular_solve(r, flip(x), lower=False, trans=1 - trans))


def _imaginary_diagonal(x):
    """i Im(diag(x)) as a diagonal matrix (ZERO for real x)."""
    return _diagonal_matrix(1j * imag(_diagonal(x))) if _is_complex(x) else ZERO


def _full_rank(r):
    """1, or NaN per matrix (..., 1, 1) where r's diagonal says a is rank-deficient to working
    precision (some |r_ii| <= n eps max_j |r_jj|). There q and r have no derivative, and solving
    with r's rounding noise would give a finite, wrong one; NaN says so, as slogdet's does."""
    n = shape_of(r)[-1]
    size = absolute(_diagonal(stop_gradient(r)))
    real_dtype = _real_dtype(r)
    if n == 0:
        return arrays.ones((), real_dtype, like=r)
    last = (len(shape_of(size)) - 1,)
    tolerance = reductions.max(size, axis=last, keepdims=True) * (n * np.finfo(real_dtype).eps)
    deficient = reductions.any(less_equal(size, tolerance), axis=last, keepdims=False)
    return _per_matrix(where(deficient, arrays.full((), np.nan, real_dtype, like=r),
                             arrays.ones((), real_dtype, like=r)))


def _qr_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    q, r = qr(a)
    t_rinv = _right_solve_upper(t, r, 0)
    c = matmul(_herm(q), t_rinv)
    low = _strictly_lower(c)
    omega = low - _herm(low)
    if _is_complex(c):
        omega = omega + _imaginary_diagonal(c)
    exists = _full_rank(r)
    return (q, r), ((matmul(q, omega - c) + t_rinv) * exists, matmul(c - omega, r) * exists)


def _qr_vjp(wrt, out, a):
    q, r = out

    def pullback(ct):
        ct_q, ct_r = ct
        b = ZERO if ct_q is ZERO else matmul(_herm(q), ct_q)      # q^H q_bar - r_bar r^H
        if ct_r is not ZERO:
            r_term = matmul(ct_r, _herm(r))
            b = -r_term if b is ZERO else b - r_term
        g = _strictly_lower(b - _herm(b)) - b
        if _is_complex(b):
            g = g + _imaginary_diagonal(b)
        d_bar = matmul(q, g) if ct_q is ZERO else ct_q + matmul(q, g)
        return (_right_solve_upper(d_bar, r, 1) * _full_rank(r),)
    return _conjugated(pullback)


def _qr_shape(a):
    *batch, m, n = shape_of(a)
    return ShapeDtype((*batch, m, n), dtype_of(a)), ShapeDtype((*batch, n, n), dtype_of(a))


qr = Primitive("qr", lambda a: tuple(np.linalg.qr(a, mode="reduced")), shape=_qr_shape,
               jvp=_qr_jvp, vjp=_qr_vjp, batch=lambda v, d: batch_stacked(qr, v, d),
               multiple_results=True, family="linalg", fresh_output=True, domain=("tall",),
               emit_statements=eager_call("np.linalg.qr"),
               complex_rules=True)

# QR with column pivoting (scipy.linalg.qr(pivoting=True)): a[:, perm] = q r, the columns
# chosen by their norms -- a piecewise constant choice, so perm has no derivative and
# q, r are the qr of the permuted columns.
qr_pivots = constant(
    "qr_pivots", lambda a: scipy.linalg.qr(a, mode="r", pivoting=True)[1].astype(np.int32),
    lambda a: ShapeDtype(shape_of(a)[:-2] + shape_of(a)[-1:], np.dtype(np.int32)),
    batch=lambda v, d: batch_stacked(qr_pivots, v, d), domain=("tall",), family="linalg",
    fresh_output=True, emit_statements=for_reading(lambda targets, args, code: [
        f"{targets[0]} = scipy.linalg.qr({args[0]}, mode=\"r\", pivoting=True)[1]"
        ".astype(np.int32)"]))

# --------------------------------------------------------------------- pinv
# x = a^+ (a of constant rank):
#   dx = -x da x + x x^H da^H (I - a x) + (I - x a) da^H x^H x.
# The last two terms conjugate da, so for complex a the pullback of each is the conjugate
# of its real form (core/numbers.py): ct -> conj((I - a x) ct^T x x^H), conj(x^H x ct^T (I - x a)).


def _pinv_jvp(primals, tangents, rcond):
    (a,), (t,) = primals, tangents
    x = pinv(a, rcond=rcond)
    x_h, t_h = _herm(x), _herm(t)
    left = _eye(a, shape_of(a)[-2]) - matmul(a, x)          # I - a x  (m x m)
    right = _eye(a) - matmul(x, a)                          # I - x a  (n x n)
    return x, (-matmul(x, matmul(t, x))
               + matmul(matmul(x, x_h), matmul(t_h, left))
               + matmul(right, matmul(t_h, matmul(x_h, x))))


def _pinv_vjp(wrt, out, a, rcond):
    x, x_t = out, adjoint(out)
    x_h = _herm(x)
    left = _eye(a, shape_of(a)[-2]) - matmul(a, x)
    right = _eye(a) - matmul(x, a)

    def pullback(ct):
        ct_t = adjoint(ct)
        return (-matmul(x_t, matmul(ct, x_t))
                + _conj(matmul(matmul(left, ct_t), matmul(x, x_h))
                        + matmul(matmul(x_h, x), matmul(ct_t, right))),)
    return pullback


pinv = Primitive(
    "pinv", lambda a, rcond: np.linalg.pinv(a, rcond=rcond),
    shape=lambda a, rcond: ShapeDtype(shape_of(a)[:-2] + shape_of(a)[-2:][::-1], dtype_of(a)),
    jvp=_pinv_jvp, vjp=_pinv_vjp, batch=lambda v, d, **p: batch_stacked(pinv, v, d, **p),
    family="linalg", fresh_output=True, domain=("matrix",),
    emit_statements=eager_call("np.linalg.pinv"), complex_rules=True)

# --------------------------------------------------------------------- LU
# scipy.linalg.lu_factor of an m x n matrix, k = min(m, n): lu holds L (m x k, unit lower
# trapezoidal, below the diagonal) and U (k x n, upper trapezoidal), piv LAPACK's row
# interchanges: a[perm] = L U, perm from piv. With the permutation constant and b = P a
# split at k -- tall: rows b1 = L1 U, b2 = L2 U; wide: columns b1 = L U1, b2 = L U2 --
# the square part gives F = L1^-1 db1 U1^-1, dL1 = L1 tril(F, -1), dU1 = triu(F) U1, and
# the rest a triangular solve: dL2 = (db2 - L2 dU) U^-1 (tall), dU2 = L^-1 (db2 - dL U2)
# (wide). The pullback transposes each step.


def _permutation_impl(piv, rows):
    """perm with a[perm] = L U for a of `rows` rows, from LAPACK's interchanges (row i
    swapped with row piv[i])."""
    perm = np.array(np.broadcast_to(np.arange(rows), piv.shape[:-1] + (rows,)))
    for i in range(piv.shape[-1]):
        j = piv[..., i:i + 1].astype(np.intp)
        here, there = perm[..., i:i + 1].copy(), np.take_along_axis(perm, j, -1)
        perm[..., i:i + 1] = there
        np.put_along_axis(perm, j, here, -1)
    return perm


@for_reading
def _permutation_statements(targets, args, code, rows):
    """The impl's swaps: `perm[[i, j]] = perm[[j, i]]` for each interchange (i, j)."""
    (perm,), (piv,) = targets, args
    i, j = code.fresh("i"), code.fresh("j")
    if len(code.equation.inputs[0].aval.shape) == 1:
        return [f"{perm} = np.arange({rows})", f"for {i}, {j} in enumerate({piv}):",
                f"    {perm}[[{i}, {j}]] = {perm}[[{j}, {i}]]"]
    here, there = code.fresh("here"), code.fresh("there")
    return [f"{perm} = np.array(np.broadcast_to(np.arange({rows}), {piv}.shape[:-1] + ({rows},)))",
            f"for {i} in range({piv}.shape[-1]):  # swap {i} and {piv}[..., {i}] in each row",
            f"    {j} = {piv}[..., {i}:{i} + 1].astype(np.intp)",
            f"    {here} = {perm}[..., {i}:{i} + 1].copy()",
            f"    {there} = np.take_along_axis({perm}, {j}, -1)",
            f"    {perm}[..., {i}:{i} + 1] = {there}",
            f"    np.put_along_axis({perm}, {j}, {here}, -1)"]


pivots_to_permutation = constant(
    "pivots_to_permutation", _permutation_impl,
    lambda piv, rows: ShapeDtype(shape_of(piv)[:-1] + (rows,), np.dtype(np.intp)),
    batch=lambda v, d, **p: batch_stacked(pivots_to_permutation, v, d, **p),
    domain=("pivots",), family="linalg", fresh_output=True,
    emit_statements=_permutation_statements)


def permutation_matrix(perm, dtype):
    """P with (P x)[i] = x[perm[i]]: one-hot rows (a constant), as a stack of matrices."""
    n = shape_of(perm)[-1]
    rows = reshape(perm, shape=shape_of(perm) + (1,))
    return convert(equal(rows, arrays.arange(n, like=perm)), dtype=np.dtype(dtype))


def _block(x, rows=(None, None), cols=(None, None)):
    """x[..., rows[0]:rows[1], cols[0]:cols[1]]."""
    return getitem(x, index=(Ellipsis, Slice(*rows, None), Slice(*cols, None)))


def _upper_part(x):
    rows, cols = shape_of(x)[-2:]
    return where(arrays.tri(rows, cols, k=-1, like=x), 0.0, x)


def lu_parts(lu):
    """(L, U) of a packed factorization (the unit diagonal of L is a constant)."""
    m, n = shape_of(lu)[-2:]
    k = min(m, n)
    l = _block(_strictly_lower(lu), cols=(0, k)) + arrays.eye(m, dtype_of(lu), like=lu,
                                                                   m=k)
    return l, _block(_upper_part(lu), rows=(0, k))


def _lu_square(l1, u1, db1):
    """(dL1, dU1) of the square LU l1 u1 in the direction db1."""
    f = _right_solve_upper(triangular_solve(l1, db1, lower=True, trans=0), u1, 0)
    return matmul(l1, _strictly_lower(f)), matmul(_upper_part(f), u1)


def _lu_square_transpose(l1, u1, ct_l1, ct_u1):
    """The pullback of `_lu_square`: db1_bar from (dL1_bar, dU1_bar)."""
    inner = (_strictly_lower(matmul(adjoint(l1), ct_l1))
             + _upper_part(matmul(ct_u1, adjoint(u1))))
    return _right_solve_upper(triangular_solve(l1, inner, lower=True, trans=1), u1, 1)


def _lu_factor_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    lu, piv = lu_factor(a)
    m, n = shape_of(a)[-2:]
    k = min(m, n)
    l, u = lu_parts(lu)
    perm = pivots_to_permutation(piv, rows=m)
    db = matmul(permutation_matrix(perm, dtype_of(a)), t)
    l1, u1 = _block(l, rows=(0, k)), _block(u, cols=(0, k))
    d_l1, d_u1 = _lu_square(l1, u1, _block(db, rows=(0, k), cols=(0, k)))
    d_lu = d_l1 + d_u1
    last = len(shape_of(a)) - 1
    if m > n:      # dL2 = (db2 - L2 dU) U^-1 below
        d_l2 = _right_solve_upper(_block(db, rows=(k, None)) - matmul(_block(l, rows=(k, None)),
                                                                        d_u1), u1, 0)
        d_lu = concatenate(d_lu, d_l2, axis=last - 1)
    elif n > m:    # dU2 = L^-1 (db2 - dL U2) to the right
        d_u2 = triangular_solve(l1, _block(db, cols=(k, None)) - matmul(
            d_l1, _block(u, cols=(k, None))), lower=True, trans=0)
        d_lu = concatenate(d_lu, d_u2, axis=last)
    return (lu, piv), (d_lu, ZERO)


def _lu_factor_vjp(wrt, out, a):
    lu, piv = out
    m, n = shape_of(a)[-2:]
    k = min(m, n)
    last = len(shape_of(a)) - 1

    def pullback(ct):
        ct_lu = ct[0]
        if ct_lu is ZERO:
            return (ZERO,)
        l, u = lu_parts(lu)
        l1, u1 = _block(l, rows=(0, k)), _block(u, cols=(0, k))
        ct_l1 = ct_u1 = _block(ct_lu, rows=(0, k), cols=(0, k))
        if m > n:
            ct_b2 = _right_solve_upper(_block(ct_lu, rows=(k, None)), u1, 1)   # G2 U^-T
            ct_u1 = ct_u1 - matmul(adjoint(_block(l, rows=(k, None))), ct_b2)
        elif n > m:
            ct_b2 = triangular_solve(l1, _block(ct_lu, cols=(k, None)), lower=True, trans=1)
            ct_l1 = ct_l1 - matmul(ct_b2, adjoint(_block(u, cols=(k, None))))
        ct_b = _lu_square_transpose(l1, u1, ct_l1, ct_u1)
        if m != n:
            ct_b = concatenate(ct_b, ct_b2, axis=last - 1 if m > n else last)
        p = permutation_matrix(pivots_to_permutation(piv, rows=m), dtype_of(a))
        return (matmul(adjoint(p), ct_b),)
    return pullback


def _lu_factor_impl(a):
    lu, piv = scipy.linalg.lu_factor(a)
    return lu.astype(a.dtype, copy=False), piv


lu_factor = Primitive(
    "lu_factor", _lu_factor_impl,
    shape=lambda a: (_same_shape(a), ShapeDtype(shape_of(a)[:-2] + (min(shape_of(a)[-2:]),),
                                                np.dtype(np.int32))),
    jvp=_lu_factor_jvp, vjp=_lu_factor_vjp, batch=lambda v, d: batch_stacked(lu_factor, v, d),
    multiple_results=True, family="linalg", fresh_output=True, domain=("matrix",),
    emit_statements=eager_call("scipy.linalg.lu_factor"))

# ------------------------------------------------------------ Sylvester, sqrtm
# x = sylvester(a, b, q) solves a x + x b = q. Differentiating, a dx + dx b = dq - da x - x db;
# the adjoint of q -> x is q -> sylvester(a^T, b^T, q), so the pullback of x_bar is
# y = sylvester(a^T, b^T, x_bar): q_bar = y, a_bar = -y x^T, b_bar = -x^T y.
# sqrtm: x x = a, so x dx + dx x = da: dx = sylvester(x, x, da).


def _sylvester_jvp(primals, tangents):
    (a, b, q), (t_a, t_b, t_q) = primals, tangents
    x = sylvester(a, b, q)
    rhs = ZERO if t_q is ZERO else t_q
    for term in (ZERO if t_a is ZERO else matmul(t_a, x), ZERO if t_b is ZERO else matmul(x, t_b)):
        if term is not ZERO:
            rhs = -term if rhs is ZERO else rhs - term
    return x, sylvester(a, b, rhs)


def _sylvester_vjp(wrt, out, a, b, q):
    def pullback(ct):
        y = sylvester(adjoint(a), adjoint(b), ct)
        return (unbroadcast(-matmul(y, adjoint(out)), a) if wrt[0] else ZERO,
                unbroadcast(-matmul(adjoint(out), y), b) if wrt[1] else ZERO,
                unbroadcast(y, q) if wrt[2] else ZERO)
    return pullback


def _sylvester_impl(a, b, q):
    dtype = np.result_type(a.dtype, b.dtype, q.dtype)
    return scipy.linalg.solve_sylvester(a, b, q).astype(dtype, copy=False)


sylvester = Primitive(
    "sylvester", _sylvester_impl,
    shape=lambda a, b, q: ShapeDtype(_batch(a, b, q) + shape_of(q)[-2:],
                                     np.result_type(dtype_of(a), dtype_of(b), dtype_of(q))),
    jvp=_sylvester_jvp, vjp=_sylvester_vjp,
    batch=lambda v, d: batch_elementwise(sylvester, v, d),
    family="linalg", fresh_output=True, domain=("spd", "spd", "matrix"),
    emit_statements=eager_call("scipy.linalg.solve_sylvester"))


def _real_result(function, name, dtype=None):
    """`function` of a real matrix (computed in `dtype` if given), refusing a complex
    result (negative real eigenvalues: the real matrix has no real principal logarithm or
    square root)."""
    def impl(a):
        out = function(a if dtype is None else a.astype(dtype))
        if np.iscomplexobj(out):
            raise complex_error(f"scipy.linalg.{name} of a real matrix with a negative real "
                                "eigenvalue (its principal value is complex)")
        return out.astype(a.dtype, copy=False)
    return impl


def _root_exists(x):
    """1, or NaN per matrix where the square root x is singular (an exactly zero pivot,
    a singular a): sqrtm's derivative is unbounded there, where the Sylvester solve gives
    a large finite number (4.5e15 for a = diag(0, 1))."""
    return _per_matrix(_invertible_stand_in(x, slogdet(x)[0])[1])


def _sqrtm_vjp(wrt, out, a):
    def pullback(ct):
        out_t = adjoint(out)
        return (sylvester(out_t, out_t, ct) * _root_exists(out),)
    return pullback


def _sqrtm_jvp(primals, tangents):
    x = sqrtm(primals[0])
    return x, sylvester(x, x, tangents[0]) * _root_exists(x)


sqrtm = Primitive("sqrtm", _real_result(scipy.linalg.sqrtm, "sqrtm"), shape=_same_shape,
                  jvp=_sqrtm_jvp, vjp=_sqrtm_vjp, batch=lambda v, d: batch_stacked(sqrtm, v, d),
                  family="linalg", fresh_output=True, domain=("spd",),
                  emit_statements=eager_call("scipy.linalg.sqrtm"))

# ---------------------------------------------------------- expm and logm
# For a matrix function f with a real power series (exp, log), the Frechet derivative
# L_f(a, e) is the upper right block of f([[a, e], [0, a]]) (Higham 2008, "Functions of
# Matrices", 3.2), and its adjoint is L_f(a^T, .). So both rules are f of a matrix twice
# the size: written with the primitive itself, they differentiate again.


def _block_upper(a, e):
    """[[a, e], [0, a]] for stacks of n x n matrices (e: a's batch shape)."""
    last = len(shape_of(a)) - 1
    zero = arrays.zeros(shape_of(a), dtype_of(a), like=a)
    return concatenate(concatenate(a, e, axis=last), concatenate(zero, a, axis=last),
                       axis=last - 1)


def frechet(prim, a, e):
    """L_f(a, e), the derivative of the matrix function `prim` at a in the direction e."""
    n = shape_of(a)[-1]
    return getitem(prim(_block_upper(a, e)),
                   index=(Ellipsis, Slice(None, n, None), Slice(n, None, None)))


def _matrix_function(name, impl, domain):
    def jvp(primals, tangents):
        return prim(primals[0]), frechet(prim, primals[0], tangents[0])

    def vjp(wrt, out, a):
        def pullback(ct):
            return (frechet(prim, adjoint(a), ct),)
        return pullback

    prim = Primitive(name, impl, shape=_same_shape, jvp=jvp, vjp=vjp,
                     batch=lambda v, d: batch_stacked(prim, v, d), family="linalg",
                     fresh_output=True, domain=(domain,),
                     emit_statements=eager_call(f"scipy.linalg.{name}"))
    return prim


expm = _matrix_function("expm", lambda a: scipy.linalg.expm(a).astype(a.dtype, copy=False),
                        "square")
logm = _matrix_function("logm", _real_result(scipy.linalg.logm, "logm", np.float64), "spd")
