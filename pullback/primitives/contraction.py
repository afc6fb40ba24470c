"""Contractions: matmul (batched, broadcasting; NumPy's 1-d operands too, which staged
programs hold as matrices between reshapes) and einsum.

Both are multilinear: the jvp is the sum over operands of the contraction with
that operand replaced by its tangent; each operand's cotangent is a contraction
of the output cotangent with the other operands.
"""
import string

import numpy as np

from ..core import arrays
from ..core.arrays import dtype_of, moveaxis, shape_of
from ..core.primitive import ZERO, Primitive, ShapeDtype
from .families import batch_elementwise, unbroadcast
from .structural import convert, reshape, transpose
from ..transforms.cotangents import dense


def multilinear_jvp(prim):
    """The jvp of a primitive linear in each operand separately."""
    def jvp(primals, tangents, **params):
        out = prim(*primals, **params)
        tangent_out = ZERO
        for i, t in enumerate(tangents):
            if t is ZERO:
                continue
            term = prim(*primals[:i], t, *primals[i + 1:], **params)
            tangent_out = term if tangent_out is ZERO else tangent_out + term
        return out, tangent_out
    return jvp


# ---------------------------------------------------------------------- matmul

def swap_last(x):
    """x with its last two axes exchanged (the matrix transpose of a stack)."""
    n = len(shape_of(x))
    return transpose(x, axes=tuple(range(n - 2)) + (n - 1, n - 2))


def adjoint(x):
    """The adjoint of a stack of matrices under the pairing cotangents use (core/numbers.py:
    Re(sum(a * b)), no conjugation), as rules apply it where they transpose a linear map:
    the transpose, for complex values too."""
    return swap_last(x)


def _matmul_shape(a, b):
    """NumPy's: a 1-d `a` is a row, a 1-d `b` a column, and that axis is dropped from the
    product."""
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    ma = (1,) + sa if len(sa) == 1 else sa
    mb = sb + (1,) if len(sb) == 1 else sb
    if ma[-1] != mb[-2]:              # NumPy's error: staged, the program would be ill-typed
        raise ValueError(f"matmul: the operands' contracted axes differ: {sa[-1]} (the last "
                         f"of {sa}) and {mb[-2]} (the "
                         f"{'only' if len(sb) == 1 else 'second-to-last'} of {sb}).")
    shape = np.broadcast_shapes(ma[:-2], mb[:-2]) + sa[-2:-1] + sb[-1:] * (len(sb) > 1)
    return ShapeDtype(shape, np.result_type(dtype_of(a), dtype_of(b)))


def _matmul_impl(a, b):
    """`a @ b`; over a contraction of length 1 (an outer product: the cotangent of a matrix
    times a vector is one) by `np.einsum`: the same products (zeros signed as matmul's)
    without a BLAS call, which takes about twice as long for them, or NumPy 2's broadcasting
    `a * b`, which buffers the column and takes as long as BLAS (256 x 256: 36 µs against
    71 µs)."""
    if a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == 1 and b.shape[-2] == 1:
        return np.einsum("...ij,...jk->...ik", a, b)
    return np.matmul(a, b)


def _as_matrices(a, b):
    """(a, b) as the matrices NumPy's rule makes of them (`_matmul_shape`), by reshapes."""
    sa, sb = shape_of(a), shape_of(b)
    return (reshape(a, shape=(1,) + sa) if len(sa) == 1 else a,
            reshape(b, shape=sb + (1,)) if len(sb) == 1 else b)


def _as_product(product, vector_a, vector_b):
    """The product of `_as_matrices(a, b)` as `a @ b`'s: without the axis that a 1-d
    operand's matrix added."""
    s = shape_of(product)
    return reshape(product, shape=s[:-2] + s[-2:-1] * (not vector_a) + s[-1:] * (not vector_b))


def _matrix_form(a, b):
    """`a @ b` with a 1-d operand as the product of matrices between reshapes: how staged
    programs hold it (the `staged_form` slot); None where both are matrices already."""
    vector_a, vector_b = len(shape_of(a)) == 1, len(shape_of(b)) == 1
    if not (vector_a or vector_b):
        return None
    return _as_product(matmul(*_as_matrices(a, b)), vector_a, vector_b)


def _matmul_vjp(wrt, out, a, b):
    def pullback(ct):
        return _matmul_transposed(ct, a, b, wrt)
    return pullback


def _matmul_transposed(ct, a, b, wrt):
    """The cotangents of `a @ b`'s operands (ZERO where `wrt` says not) from the output's `ct`."""
    # NumPy matrices of one dtype (eager reverse mode's common case): the products of the
    # transposed views directly, as `_matmul_impl` computes them, with no binds, reshapes
    # or fitting (their shapes and dtypes are the operands' already).
    if type(ct) is np.ndarray and type(a) is np.ndarray and type(b) is np.ndarray \
            and a.ndim == 2 and b.ndim == 2 and ct.dtype == a.dtype and a.dtype == b.dtype:
        return (_matmul_impl(ct, b.T) if wrt[0] else ZERO,
                _matmul_impl(a.T, ct) if wrt[1] else ZERO)
    ranks = len(shape_of(a)), len(shape_of(b))
    if ranks == (2, 1) and not wrt[0]:    # a constant matrix times a vector: A^T ct
        return ZERO, _fitted(matmul(adjoint(a), ct), b, b)
    if ranks == (1, 2) and not wrt[1]:    # a vector times a constant matrix: B ct
        return _fitted(matmul(b, ct), a, a), ZERO
    ma, mb = _as_matrices(a, b)
    if ma is not a or mb is not b:        # ct as the product of the matrices
        s = shape_of(ct) + (1,) * (mb is not b)
        ct = reshape(ct, shape=s[:-1] + (1,) + s[-1:] if ma is not a else s)
    return (_fitted(matmul(ct, adjoint(mb)), ma, a) if wrt[0] else ZERO,
            _fitted(matmul(adjoint(ma), ct), mb, b) if wrt[1] else ZERO)


def _matmul_cotangent(position):
    """The cotangent of matmul's input `position` from the output's, for reverse mode's
    record as data (`input_cotangents`): `_matmul_transposed`'s, on a dense cotangent."""
    wrt = (position == 0, position == 1)

    def rule(ct, residuals, params):
        return _matmul_transposed(dense(ct), residuals[0], residuals[1], wrt)[position]
    return rule


def _fitted(ct, matrix, x):
    """The cotangent `ct` of `matrix`, x as a matrix, as x's: the stack summed and the
    dtype cast where they differ (`unbroadcast`), and reshaped where x is 1-d."""
    if not (ct.shape == matrix.shape and ct.dtype == matrix.dtype):
        ct = unbroadcast(ct, matrix)
    return ct if matrix is x else reshape(ct, shape=shape_of(x))


def _matmul_batch(values, dims):
    """A batch against one shared matrix becomes ONE matrix product (a single GEMM)
    instead of a stack of small ones; other cases pad batched operands to a common
    rank, like a broadcasting elementwise op (matmul broadcasts its stack axes so).
    A 1-d operand (per example) is made a matrix first and its axis dropped after."""
    (a, b), (da, db) = values, dims
    vector_a = len(shape_of(a)) - (da is not None) == 1
    vector_b = len(shape_of(b)) - (db is not None) == 1
    if vector_a or vector_b:
        if vector_a:                                  # (k,) -> (1, k), (B, k) -> (B, 1, k)
            if da is not None:
                a, da = moveaxis(a, da, 0), 0
            a = reshape(a, shape=shape_of(a)[:-1] + (1,) + shape_of(a)[-1:])
        if vector_b:                                  # (k,) -> (k, 1), (B, k) -> (B, k, 1)
            if db is not None:
                b, db = moveaxis(b, db, 0), 0
            b = reshape(b, shape=shape_of(b) + (1,))
        out, dim = _matmul_batch((a, b), (da, db))
        return _as_product(moveaxis(out, dim, 0), vector_a, vector_b), 0
    if da is not None and db is None and len(shape_of(b)) == 2:
        a = moveaxis(a, da, 0)                        # (B, ..., n, k) @ (k, m)
        lead = a.shape[:-1]
        return matmul(a.reshape((-1, a.shape[-1])), b).reshape(lead + (b.shape[-1],)), 0
    if da is None and db is not None and len(shape_of(a)) == 2 and len(shape_of(b)) == 3:
        b = moveaxis(b, db, 0)                        # (n, k) @ (B, k, m)
        size, k, m = b.shape
        wide = b.transpose((1, 0, 2)).reshape((k, size * m))
        return matmul(a, wide).reshape((a.shape[0], size, m)).transpose((1, 0, 2)), 0
    return batch_elementwise(matmul, values, dims)


def _matmul_emit(args, out=None):
    """`a @ b`, or NumPy's matmul ufunc writing into the buffer `out`."""
    a, b = args
    return f"{a} @ {b}" if out is None else f"np.matmul({a}, {b}, out={out})"


matmul = Primitive("matmul", _matmul_impl, shape=_matmul_shape,
                   jvp=lambda p, t: multilinear_jvp(matmul)(p, t), vjp=_matmul_vjp,
                   batch=_matmul_batch, staged_form=_matrix_form,
                   emit=_matmul_emit, family="contraction",
                   fresh_output=True, sparsity="matmul", complex_rules=True,
                   input_cotangents=((_matmul_cotangent(0), (True, True, False)),
                                     (_matmul_cotangent(1), (True, True, False))))

# ---------------------------------------------------------------------- einsum


def _parse(spec):
    inputs, output = spec.split("->")
    return inputs.split(","), output


def _einsum_shape(*operands, spec):
    inputs, output = _parse(spec)
    sizes = {}
    for sub, x in zip(inputs, operands):
        sizes.update(zip(sub, shape_of(x)))
    return ShapeDtype(tuple(sizes[c] for c in output),
                      np.result_type(*(dtype_of(x) for x in operands)))


def _einsum_operand_cotangent(ct, operands, i, spec):
    """The cotangent of operand i: contract ct with the other operands.

    Letters repeated in operand i (diagonals) are tied back with identity
    matrices; letters only operand i has (summed out) are broadcast with ones.
    """
    inputs, output = _parse(spec)
    target = inputs[i]
    subs = [output] + inputs[:i] + inputs[i + 1:]
    args = [ct] + list(operands[:i] + operands[i + 1:])
    dtype = dtype_of(operands[i])
    sizes = dict(zip(target, shape_of(operands[i])))
    fresh = iter(c for c in string.ascii_letters if c not in spec)
    result, seen = "", set()
    for c in target:
        if c in seen:                       # a repeated letter: tie it with an identity
            d = next(fresh)
            subs.append(c + d)
            args.append(arrays.eye(sizes[c], dtype, like=operands[i]))
            c = d
        seen.add(c)
        result += c
    available = set("".join(subs))
    for c in dict.fromkeys(result):
        if c not in available:              # summed out in the forward pass: broadcast back
            subs.append(c)
            args.append(arrays.ones(sizes[c], dtype, like=operands[i]))
    ct_i = einsum(*args, spec=",".join(subs) + "->" + result)
    return ct_i if dtype_of(ct_i) == dtype else convert(ct_i, dtype=dtype)


def _einsum_vjp(wrt, out, *operands, spec):
    def pullback(ct):
        return tuple(_einsum_operand_cotangent(ct, operands, i, spec) if w else ZERO
                     for i, w in enumerate(wrt))
    return pullback


def _einsum_batch(values, dims, spec):
    """A fresh letter for the batch axis, leading every batched operand and the output."""
    letter = next(c for c in string.ascii_letters if c not in spec)
    inputs, output = _parse(spec)
    operands = [v if d is None else moveaxis(v, d, 0) for v, d in zip(values, dims)]
    inputs = [s if d is None else letter + s for s, d in zip(inputs, dims)]
    return einsum(*operands, spec=",".join(inputs) + "->" + letter + output), 0


einsum = Primitive("einsum", lambda *ops, spec: np.einsum(spec, *ops, optimize=len(ops) > 1),
                   shape=_einsum_shape, jvp=lambda p, t, spec: multilinear_jvp(einsum)(p, t, spec=spec),
                   vjp=_einsum_vjp, batch=_einsum_batch, sparsity="einsum", family="contraction",
                   complex_rules=True,
                   emit=lambda args, spec: f"np.einsum({spec!r}, {', '.join(args)}"
                                           f"{', optimize=True' if len(args) > 1 else ''})")
