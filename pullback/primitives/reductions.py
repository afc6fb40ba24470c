"""Reductions and scans along axes: sum, max, min, prod, cumsum, cumprod, arg-reductions,
and the integer-valued orderings (argsort, argpartition, searchsorted).

`axis` is always a tuple of non-negative ints (the numpy namespace normalises it)
for reductions, a single non-negative int for scans.
"""
import functools
import math

import numpy as np

from ..core import arrays
from ..core.arrays import dtype_of, shape_of
from ..core.indexing import Slice
from ..core.primitive import Primitive, ShapeDtype
from ..transforms.cotangents import dense, uniform_cotangent
from .elementwise import equal, where
from .families import (array_dtype, batch_along_axis, batch_by_loop, batch_reduction,
                       call_emitter, constant, derivatives_from, linear)
from .structural import broadcast_to, concatenate, convert, getitem, reshape, transpose


def reduced_shape(shape, axis, keepdims):
    if keepdims:
        return tuple(1 if i in axis else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axis)


def _reduction_shape(x, axis, keepdims):
    return ShapeDtype(reduced_shape(shape_of(x), axis, keepdims), array_dtype(x))


@functools.cache
def accumulated_dtype(dtype):
    """The dtype of NumPy's sums and products of `dtype`: booleans and integers narrower
    than the platform's are accumulated (so counted) in its integer."""
    return np.sum(np.zeros(0, dtype)).dtype


def _accumulation_shape(x, axis, keepdims):
    return ShapeDtype(reduced_shape(shape_of(x), axis, keepdims), accumulated_dtype(array_dtype(x)))


def keep_dims(y, x, axis, keepdims):
    """Reshape a reduction's result y (or its cotangent) to the keepdims shape of x."""
    if keepdims:
        return y
    return reshape(y, shape=reduced_shape(shape_of(x), axis, True))


def _sum_transpose(ct, x, axis, keepdims):
    if arrays.foreign_array(x) is not None:
        # Multiplied by ones laid out like x: broadcasting alone would make one chunk of x's
        # whole size on Dask (computed on one worker, then split and sent to all the others)
        return keep_dims(ct, x, axis, keepdims) * arrays.ones(shape_of(x), dtype_of(x), like=x)
    return _spread(ct, shape_of(x), axis, keepdims)


def _spread(ct, shape, axis, keepdims):
    """The cotangent of a sum over `axis` of an operand of `shape`: ct broadcast back."""
    if not keepdims:
        ct = reshape(ct, shape=reduced_shape(shape, axis, True))
    return broadcast_to(ct, shape=shape)


def _sum_cotangent(ct, shape, params):
    """sum's transpose for reverse mode's record of a sum of a NumPy array as data (no
    closure per bind): one known value lazily (`uniform_cotangent`), others spread."""
    uniform = uniform_cotangent(ct, shape)
    return _spread(dense(ct), shape, **params) if uniform is None else uniform


def _sum(x, axis, keepdims):
    # On a NumPy array, what np.sum calls (its Python layers skipped: eager mode binds sums a lot)
    if type(x) is np.ndarray:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return np.sum(x, axis=axis, keepdims=keepdims)


sum = linear("sum", _sum,
             shape=_accumulation_shape, transpose=_sum_transpose, family="reduction",
             fresh_output=True, transpose_kind="uniform", sparsity="reduce",
             batch=lambda values, dims, **params: batch_reduction(sum, values, dims, **params),
             emit=call_emitter("np.sum"), scalar_reduction=lambda dtype: ("0", "{} + {}"),
             cotangent_rule=_sum_cotangent)

# ------------------------------------------------------------------ max / min


def _extremum_hits(x, out, axis, keepdims):
    """Where the extremum is attained (booleans, a constant): ties share the derivative."""
    return equal(x, keep_dims(out, x, axis, keepdims))


def _count(hits, x, axis, keepdims):
    return convert(sum(hits, axis=axis, keepdims=keepdims), dtype=dtype_of(x))


def _extremum_scalar(name):
    """max/min in a fused loop: NumPy's ufunc on scalars (NaN propagates), for reals."""
    identity = "-np.inf" if name == "max" else "np.inf"
    combine = f"np.{name}imum({{}}, {{}})"
    return lambda dtype: (identity, combine) if dtype.kind == "f" else None


def _extremum(name, impl):
    # Ties split the derivative equally (as JAX does). The weights are never formed: the
    # booleans are counted, and multiply the cotangent divided by the count (one pass
    # over x's shape, where hits / count then ct * weights took three).
    def jvp(primals, tangents, axis, keepdims):
        (x,), (t,) = primals, tangents
        out = prim(x, axis=axis, keepdims=keepdims)
        hits = _extremum_hits(x, out, axis, keepdims)
        return out, sum(t * hits, axis=axis, keepdims=keepdims) / _count(hits, x, axis,
                                                                         keepdims)

    def vjp(wrt, out, x, axis, keepdims):
        def pullback(ct):
            hits = _extremum_hits(x, out, axis, keepdims)
            return (hits * (keep_dims(ct, x, axis, keepdims) / _count(hits, x, axis, True)),)
        return pullback

    prim = Primitive(name, lambda x, axis, keepdims: impl(x, axis=axis, keepdims=keepdims),
                     shape=_reduction_shape, jvp=jvp, vjp=vjp, family="reduction",
                     fresh_output=True, sparsity="reduce",
                     batch=lambda values, dims, **params: batch_reduction(prim, values, dims,
                                                                          **params),
                     emit=call_emitter(f"np.{name}"), scalar_reduction=_extremum_scalar(name))
    return prim


max = _extremum("max", np.max)
min = _extremum("min", np.min)

# ----------------------------------------------------------------------- prod


def _flip_last(x):
    return getitem(x, index=(Ellipsis, Slice(None, None, -1)))


def _exclusive_cumprod_last(y):
    """[1, y0, y0*y1, ...] along the last axis: products strictly before each element."""
    ones = arrays.ones(shape_of(y)[:-1] + (1,), dtype_of(y), like=y)
    head = getitem(y, index=(Ellipsis, Slice(None, -1, None)))
    return concatenate(ones, cumprod(head, axis=len(shape_of(y)) - 1), axis=len(shape_of(y)) - 1)


def _permute(x, perm):
    return x if perm == tuple(range(len(perm))) else transpose(x, axes=perm)


def _inverse(perm):
    return tuple(np.argsort(perm).tolist())


def product_of_others(x, axis):
    """For every element, the product of the other elements in its reduction group.

    Exclusive cumulative products from both ends: exact with zeros (no division).
    """
    if math.prod(shape_of(x)) == 0:           # an empty group (np.prod of it is 1)
        return arrays.zeros(shape_of(x), dtype_of(x), like=x)
    ndim = len(shape_of(x))
    perm = tuple(i for i in range(ndim) if i not in axis) + tuple(axis)
    moved = _permute(x, perm)
    lead = shape_of(moved)[:ndim - len(axis)]
    y = reshape(moved, shape=lead + (math.prod(shape_of(moved)[len(lead):]),))
    others = _exclusive_cumprod_last(y) * _flip_last(_exclusive_cumprod_last(_flip_last(y)))
    return _permute(reshape(others, shape=shape_of(moved)), _inverse(perm))


def _prod_jvp(primals, tangents, axis, keepdims):
    (x,), (t,) = primals, tangents
    return prod(x, axis=axis, keepdims=keepdims), sum(t * product_of_others(x, axis), axis=axis,
                                                      keepdims=keepdims)


def _prod_vjp(wrt, out, x, axis, keepdims):
    def pullback(ct):
        return (keep_dims(ct, x, axis, keepdims) * product_of_others(x, axis),)
    return pullback


prod = Primitive("prod", lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
                 shape=_accumulation_shape, jvp=_prod_jvp, vjp=_prod_vjp, family="reduction",
                 sparsity="reduce", complex_rules=True,
                 fresh_output=True,
                 batch=lambda values, dims, **params: batch_reduction(prod, values, dims, **params),
                 emit=call_emitter("np.prod"), scalar_reduction=lambda dtype: ("1", "{} * {}"))

# ---------------------------------------------------------------------- scans


def _scan_shape(x, axis):
    return ShapeDtype(shape_of(x), accumulated_dtype(array_dtype(x)))


def _flip(x, axis):
    return getitem(x, index=(Slice(None, None, None),) * axis + (Slice(None, None, -1),))


cumsum = linear("cumsum", lambda x, axis: np.cumsum(x, axis=axis), shape=_scan_shape,
                transpose=lambda ct, x, axis: _flip(cumsum(_flip(ct, axis), axis=axis), axis),
                batch=lambda values, dims, axis: batch_along_axis(cumsum, values, dims, axis),
                emit=call_emitter("np.cumsum"), family="reduction", fresh_output=True,
                sparsity="scan")


def _cumprod_by_prod(x, axis):
    """cumprod as products of masked copies: out[k] = prod_j (x[j] if j <= k else 1).

    Its derivative is exact with zeros; it costs O(n^2) along `axis`, which is paid
    only when cumprod is differentiated.
    """
    ndim = len(shape_of(x))
    perm = tuple(i for i in range(ndim) if i != axis) + (axis,)
    y = _permute(x, perm)
    n = shape_of(y)[-1]
    rows = broadcast_to(reshape(y, shape=shape_of(y)[:-1] + (1, n)), shape=shape_of(y) + (n,))
    out = prod(where(arrays.tri(n, like=x), rows, 1.0), axis=(ndim,), keepdims=False)
    return _permute(out, _inverse(perm))


cumprod = Primitive("cumprod", lambda x, axis: np.cumprod(x, axis=axis), shape=_scan_shape,
                    **derivatives_from(_cumprod_by_prod, "cumprod"), family="reduction",
                    sparsity="scan", complex_rules=True,
                    fresh_output=True,
                    batch=lambda values, dims, axis: batch_along_axis(cumprod, values, dims, axis),
                    emit=call_emitter("np.cumprod"))

# -------------------------------------------------------- integer-valued results


def _arg_shape(x, axis):
    shape = shape_of(x)
    return ShapeDtype(tuple(n for i, n in enumerate(shape) if i != axis), np.dtype(np.intp))


def _along_axis(name, impl, shape, **fixed):
    prim = constant(name, impl, shape, family="reduction", fresh_output=True,
                    batch=lambda values, dims, axis, **params: batch_along_axis(
                        prim, values, dims, axis, **params),
                    emit=call_emitter(f"np.{name}", **fixed))
    return prim


def _logical(name, impl):
    prim = constant(name, lambda x, axis, keepdims: impl(x, axis=axis, keepdims=keepdims),
                    lambda x, axis, keepdims: ShapeDtype(
                        reduced_shape(shape_of(x), axis, keepdims), np.dtype(bool)),
                    family="reduction", fresh_output=True,
                    batch=lambda values, dims, **params: batch_reduction(prim, values, dims,
                                                                         **params),
                    emit=call_emitter(f"np.{name}"))
    return prim


argmax = _along_axis("argmax", lambda x, axis: np.argmax(x, axis=axis), _arg_shape)
argmin = _along_axis("argmin", lambda x, axis: np.argmin(x, axis=axis), _arg_shape)
argsort = _along_axis("argsort", lambda x, axis: np.argsort(x, axis=axis, kind="stable"),
                      lambda x, axis: ShapeDtype(shape_of(x), np.dtype(np.intp)), kind="stable")
argpartition = _along_axis(
    "argpartition", lambda x, kth, axis: np.argpartition(x, kth, axis=axis),
    lambda x, kth, axis: ShapeDtype(shape_of(x), np.dtype(np.intp)))


def _searchsorted_batch(values, dims, side):
    if dims[0] is not None:              # a batch of sorted arrays: one search each
        return batch_by_loop(searchsorted, values, dims, side=side)
    return searchsorted(values[0], values[1], side=side), dims[1]


searchsorted = constant(
    "searchsorted", lambda a, v, side: np.searchsorted(a, v, side=side),
    lambda a, v, side: ShapeDtype(shape_of(v), np.dtype(np.intp)), family="reduction",
    fresh_output=True, batch=_searchsorted_batch, emit=call_emitter("np.searchsorted"))
any = _logical("any", np.any)
all = _logical("all", np.all)
