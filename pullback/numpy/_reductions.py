"""Reductions and scans with NumPy's signatures (sum, mean, var, logsumexp, ...).

Only sum, max, min, prod, cumsum and cumprod are primitives; the rest are
composites and need no derivative rules of their own.
"""
import math

import numpy as np

from ..primitives import elementwise as E
from ..core.arrays import dtype_of
from ..core.engine import Tracer
from ..core.numbers import complex_error
from ..errors import ZeroWeightsError, unsupported
from ..primitives import reductions as R
from ..primitives.structural import stop_gradient
from ._common import ndim, normalize_axes, normalize_axis, refuse
from ._shape import (astype, broadcast_to, expand_dims, operand, ravel, reshape, squeeze,
                     transpose)


def _prepare(name, a, axis, dtype=None, out=None, where_mask=None, fill=0.0):
    refuse(name, out=out)
    x = operand(a)
    if dtype is not None:
        x = astype(x, dtype)
    if where_mask is not None and where_mask is not True:
        x = E.where(operand(where_mask), x, fill)
    return x, normalize_axes(axis, ndim(x))


def _in_dtype(result, dtype):
    """A sum's or product's `result` in the `dtype` NumPy accumulates in: the primitives
    promote small integers (an int8 sum is an int64), and a cast of their result wraps
    around as NumPy's int8 sum does (sums and products agree modulo 2**8)."""
    if dtype is None or result.dtype == np.dtype(dtype):
        return result
    return astype(result, dtype)


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """`np.sum`."""
    if axis is None and dtype is None and out is None and where is None \
            and isinstance(a, Tracer):       # np.sum(x) of a traced x: nothing to prepare
        x, axes = a, tuple(range(len(a.shape)))
    else:
        x, axes = _prepare("sum", a, axis, dtype, out, where)
    result = _in_dtype(R.sum(x, axis=axes, keepdims=bool(keepdims)), dtype)
    return result if initial is None else result + initial


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """`np.prod` (its derivative is exact when some factors are zero)."""
    x, axes = _prepare("prod", a, axis, dtype, out, where, fill=1.0)
    result = _in_dtype(R.prod(x, axis=axes, keepdims=bool(keepdims)), dtype)
    return result if initial is None else result * initial


def _extremum(prim, name):
    def fn(a, axis=None, out=None, keepdims=False, initial=None, where=None):
        refuse(name, where=where)
        x, axes = _prepare(name, a, axis, out=out)
        if initial is not None and _count(x, axes) == 0:
            # Nothing to reduce: NumPy's answer is `initial`, a constant, at NumPy's shape.
            return getattr(np, name)(np.zeros(np.shape(x), x.dtype), axis=axes,
                                     keepdims=bool(keepdims), initial=initial)
        result = prim(x, axis=axes, keepdims=bool(keepdims))
        if initial is not None:
            result = (E.maximum if prim is R.max else E.minimum)(result, initial)
        return result
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}` (ties share the derivative equally)."
    return fn


max = amax = _extremum(R.max, "max")
min = amin = _extremum(R.min, "min")


def ptp(a, axis=None, out=None, keepdims=False):
    """`np.ptp`: max - min."""
    return max(a, axis, out, keepdims) - min(a, axis, out, keepdims)


def _count(x, axes):
    shape = getattr(x, "shape", ())
    return math.prod(shape[i] for i in axes)


def _inverse(count):
    # A Python float keeps float32 float32; NumPy's x/0 is inf (and 0/0 nan) here too.
    return 1.0 / count if count > 0 else math.inf


def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    """`np.mean`."""
    if axis is None and dtype is None and out is None and isinstance(a, Tracer):
        x, axes = a, tuple(range(len(a.shape)))     # np.mean(x) of a traced x
    else:
        x, axes = _prepare("mean", a, axis, dtype, out)
    if where is not None:
        mask = operand(where)
        return sum(x, axis, keepdims=keepdims, where=mask) / sum(
            np.broadcast_to(mask, x.shape).astype(x.dtype), axis, keepdims=keepdims)
    if getattr(x, "dtype", np.dtype(float)).kind in "iub":
        if dtype is not None:              # NumPy's: the sum in dtype, divided, truncated
            total = _in_dtype(R.sum(x, axis=axes, keepdims=bool(keepdims)), dtype)
            return astype(total / _count(x, axes), dtype)
        x = astype(x, np.float64)
    return R.sum(x, axis=axes, keepdims=bool(keepdims)) * _inverse(_count(x, axes))


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """`np.average`, with optional weights."""
    x = operand(a)
    if weights is None:
        result, total = mean(x, axis, keepdims=keepdims), None
        if returned:
            count = np.asarray(_count(x, normalize_axes(axis, ndim(x))), dtype=result.dtype)
            total = np.broadcast_to(count, result.shape)
    else:
        w = operand(weights)
        if ndim(w) != ndim(x):          # NumPy's rule: w's axes are a's `axis`, in order
            if axis is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            axes = [normalize_axis(ax, ndim(x)) for ax in
                    (axis if isinstance(axis, (tuple, list)) else (axis,))]
            if tuple(np.shape(w)) != tuple(np.shape(x)[ax] for ax in axes):
                raise ValueError("Shape of weights must be consistent with shape of a along "
                                 "specified axis.")
            w = transpose(w, tuple(np.argsort(axes).tolist()))
            w = reshape(w, tuple(n if ax in axes else 1 for ax, n in enumerate(np.shape(x))))
        # NumPy's dtype: a's and w's (and float64 for an integer or boolean a), both sums in it
        a_dtype, w_dtype = (np.asarray(v).dtype if dtype_of(v) is None else dtype_of(v)
                            for v in (x, w))
        dtype = np.result_type(a_dtype, w_dtype, *("f8",) * (a_dtype.kind in "iub"))
        w = astype(w, dtype)
        weighted = astype(x, dtype) * w
        total = sum(broadcast_to(w, weighted.shape), axis, keepdims=keepdims)
        if not isinstance(total, Tracer) and np.any(total == 0):    # (traced weights: NaN)
            raise ZeroWeightsError("Weights sum to zero, can't be normalized (np.average): give "
                                   "weights with a nonzero sum along the averaged axes.")
        result = sum(weighted, axis, keepdims=keepdims) / total
    return (result, total) if returned else result


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
        mean=None, correction=None):
    """`np.var` (with ddof / correction)."""
    refuse("var", where=where, mean=mean)
    if dtype is not None and np.dtype(dtype).kind not in "fc":     # NumPy truncates the mean
        raise unsupported(f"np.var or np.std with dtype={np.dtype(dtype)}", "give a floating "
                          "dtype and convert the result with .astype")
    if dtype is not None and np.dtype(dtype).kind == "c" \
            and np.dtype(getattr(operand(a), "dtype", float)).kind != "c":
        real = np.finfo(dtype).dtype                       # NumPy: the real variance, as complex
        return astype(var(a, axis, real, out, ddof, keepdims, correction=correction), dtype)
    x, axes = _prepare("var", a, axis, dtype, out)
    if correction is not None:
        ddof = correction
    if getattr(x, "dtype", np.dtype(float)).kind in "iub":
        x = astype(x, np.float64)
    centred = x - R.sum(x, axis=axes, keepdims=True) * _inverse(_count(x, axes))
    squares = E.square(E.real(centred)) + E.square(E.imag(centred)) \
        if np.dtype(getattr(centred, "dtype", float)).kind == "c" else E.square(centred)  # |c|^2
    return R.sum(squares, axis=axes, keepdims=bool(keepdims)) * _inverse(
        _count(x, axes) - ddof)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
        mean=None, correction=None):
    """`np.std`. Over one element it is var's value (0, or NaN as NumPy's): identically
    zero, with exact zero derivatives, where sqrt's infinite slope at 0 would give 0 * inf."""
    variance = var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                   correction=correction)
    x = operand(a)
    if _count(x, normalize_axes(axis, ndim(x))) == 1:
        return variance
    return E.sqrt(variance)


def _scan(prim, name):
    def fn(a, axis=None, dtype=None, out=None):
        refuse(name, out=out)
        x = operand(a)
        if dtype is not None:
            x = astype(x, dtype)
        if axis is None:
            x, axis = ravel(x), 0
        return _in_dtype(prim(x, axis=normalize_axis(axis, ndim(x))), dtype)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}`."
    return fn


cumsum = _scan(R.cumsum, "cumsum")
cumprod = _scan(R.cumprod, "cumprod")


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """`scipy.special.logsumexp`: log(sum(b * exp(a))), computed stably."""
    x = operand(a)
    shifted_by = stop_gradient(x)
    if np.dtype(shifted_by.dtype).kind == "c":            # shifted by the largest real part
        if return_sign:
            raise complex_error("logsumexp's sign (return_sign=True) of complex values")
        shifted_by = E.real(shifted_by)
    if b is not None:
        # As SciPy: terms with b == 0 count for nothing, also in the shift (the largest x
        # may be one of them); a constant b masks them out of the terms too (no overflow).
        b = operand(b)
        counted = E.not_equal(stop_gradient(b), 0)
        shifted_by = E.where(counted, shifted_by, -np.inf)
        if not isinstance(b, Tracer):
            x = E.where(counted, x, -np.inf)
    axes = normalize_axes(axis, ndim(shifted_by))
    count = _count(shifted_by, axes)
    if count == 0:                                       # an empty sum: log(0) = -inf
        shift = 0.0
    else:
        shift = R.max(shifted_by, axis=axes, keepdims=True)
        shift = E.where(E.isfinite(shift), shift, 0.0)
    exponent = x - shift
    if isinstance(b, Tracer) and np.dtype(exponent.dtype).kind == "f":
        # A term a traced b counts as 0 may lie far above the shift: its exp clamped below
        # overflow (inf * 0 was NaN: the value and every derivative), its b-derivative
        # exp(a - shift) / total then as large as the dtype holds.
        limit = float(np.log(np.finfo(exponent.dtype).max) - np.log(count))
        exponent = E.where(counted, exponent, E.minimum(exponent, limit))
    terms = E.exp(exponent)
    if b is not None:
        terms = terms * b
    total = R.sum(terms, axis=axes, keepdims=True)
    if not return_sign:
        out = E.log(total) + shift
        return out if keepdims else squeeze(out, axes)
    sign = E.sign(total)
    out = E.log(E.absolute(total)) + shift
    return (out, sign) if keepdims else (squeeze(out, axes), squeeze(sign, axes))


def _arg(prim, name):
    def fn(a, axis=None, out=None, *, keepdims=False):
        refuse(name, out=out)
        x = operand(a)
        if axis is None:
            x, axis = ravel(x), 0
        axis = normalize_axis(axis, ndim(x))
        result = prim(x, axis=axis)
        if keepdims:
            result = expand_dims(result, axis)
        return result
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}` (integer result, no derivative)."
    return fn


argmax = _arg(R.argmax, "argmax")
argmin = _arg(R.argmin, "argmin")


def _logical(prim, name):
    def fn(a, axis=None, out=None, keepdims=False, *, where=None):
        x, axes = _prepare(name, a, axis, out=out)
        refuse(name, where=where)
        return prim(x, axis=axes, keepdims=bool(keepdims))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}`."
    return fn


any = _logical(R.any, "any")
all = _logical(R.all, "all")
