"""Order statistics, NaN-ignoring reductions and moments with NumPy's signatures: median,
percentile, quantile (every method NumPy has), the nan-reductions, cov, corrcoef, bincount.

Order statistics gather from the sorted values (`sort` is a gather by a constant
permutation) and interpolate between neighbours; the nan-reductions replace NaNs by the
reduction's identity with `where`. All are composites: their derivatives are exact
wherever NumPy's function is smooth (ties in a sort share no derivative: one of the tied
elements gets it).
"""
import builtins

import math
import warnings

import numpy as np

from ..core.engine import Tracer
from ..errors import unsupported
from ..primitives import elementwise as E
from ..primitives.structural import stop_gradient
from ._common import ndim, normalize_axes, normalize_axis, refuse, refuse_complex_values
from ._reductions import cumprod, cumsum, max, mean, min, prod, sum
from ._shape import (argsort, as_floating, astype, at, broadcast_to, concatenate, getitem,
                     operand, reshape, shape, take_along_axis, transpose)

# ------------------------------------------------------------------ quantiles

# method -> (alpha, beta) of Hyndman and Fan's continuous definitions (NumPy's table).
_CONTINUOUS = {"linear": (1.0, 1.0), "interpolated_inverted_cdf": (0.0, 1.0),
               "hazen": (0.5, 0.5), "weibull": (0.0, 0.0), "median_unbiased": (1 / 3, 1 / 3),
               "normal_unbiased": (3 / 8, 3 / 8)}
_DISCRETE = ("inverted_cdf", "averaged_inverted_cdf", "closest_observation", "lower", "higher",
             "nearest", "midpoint")


def _positions(n, q, method):
    """NumPy's (lower index, upper index, weight of the upper) for quantile q of n sorted
    values (n may be an array of counts): the quantile is lower + weight (upper - lower)."""
    if method == "linear":
        virtual = (n - 1) * q
    elif method in _CONTINUOUS:
        alpha, beta = _CONTINUOUS[method]
        virtual = n * q + (alpha + q * (1 - alpha - beta)) - 1
    elif method in ("lower", "higher", "nearest", "midpoint"):
        scaled = (n - 1) * q
        low, high = E.floor(scaled), E.ceil(scaled)
        if method == "midpoint":
            return low, low + 1.0, E.where(low == high, 0.0, 0.5)    # NumPy lerps to the next
        index = {"lower": low, "higher": high, "nearest": E.rint(scaled)}[method]
        return index, index, 0.0
    elif method in ("inverted_cdf", "closest_observation"):
        shift = 1.0 if method == "inverted_cdf" else 1.5
        virtual = n * q - shift
        low = E.floor(virtual)
        at_boundary = (virtual == low) if method == "inverted_cdf" else (
            (virtual == low) & (E.remainder(low, 2.0) == 1.0))
        index = E.maximum(E.where(at_boundary, low, low + 1.0), 0.0)
        return index, index, 0.0
    elif method == "averaged_inverted_cdf":
        virtual = n * q - 1
        low = E.floor(virtual)
        return low, low + 1.0, E.where(virtual == low, 0.5, 1.0)
    else:
        raise ValueError(f"'{method}' is not a valid method. Use one of: "
                         f"{sorted(list(_CONTINUOUS) + list(_DISCRETE))}")
    low = E.floor(virtual)
    return low, low + 1.0, virtual - low


def _quantile(x, q, axis, method, keepdims, ignore_nan, name, weights=None):
    """Quantiles q (in [0, 1]) of x along `axis`; the result has q's shape in front."""
    x = as_floating(x)
    refuse_complex_values(name, x)
    q = operand(q)
    # A Python number is weakly typed: NumPy finds its positions in float64 and interpolates
    # in x's precision; an array q's positions and weights are in its dtype.
    weight_dtype = None if hasattr(q, "shape") else x.dtype
    if weight_dtype is not None:
        q = np.asarray(q, np.float64)
    if not isinstance(q, Tracer) and not np.all((0 <= np.asarray(q)) & (np.asarray(q) <= 1)):
        raise ValueError("Quantiles must be in the range [0, 1]")
    n_dims = ndim(x)
    axes = normalize_axes(axis, n_dims) if n_dims else ()
    kept = [i for i in range(n_dims) if i not in axes]
    rest = tuple(shape(x)[i] for i in kept)

    length = math.prod(shape(x)[i] for i in axes)

    def slices(v):                       # the reduced axes last, flattened into one
        return reshape(transpose(v, kept + list(axes)), rest + (length,))
    values = slices(x)
    if length == 0:                      # NumPy: NaN for medians and nan-quantiles, else an error
        if name not in ("median", "nanmedian") and not name.startswith("nan"):
            raise IndexError(f"{name} of an empty array: there is no value to take (NumPy "
                             "raises an IndexError too)")
        result = np.full(shape(q) + rest, np.nan, x.dtype)
    else:
        if weights is not None:
            weights = slices(_weights_like(weights, x, axis))
        result = _from_sorted(values, q, rest, method, ignore_nan, weights,
                              median=name in ("median", "nanmedian"),
                              weight_dtype=weight_dtype or q.dtype)
    if keepdims:
        result = reshape(result, shape(result)[:ndim(q)] + tuple(
            1 if i in axes else d for i, d in enumerate(shape(x))))
    return result


def _interpolate(lower, upper, weight, median, dtype):
    """Between neighbouring sorted values as NumPy: its median is the middle value or the
    mean of the middle two, its quantiles lerp from the nearer neighbour (so that
    infinities give NumPy's values: the median of [1, 2, inf] is 2, not 2 + inf * 0), with
    the weight and its complement rounded to `dtype` (both, as NumPy, from weight)."""
    if median:
        return E.where(weight == 0.0, lower, (lower + upper) * 0.5)
    difference = upper - lower
    return E.where(weight >= 0.5, upper - difference * astype(1.0 - weight, dtype),
                   lower + difference * astype(weight, dtype))


def _from_sorted(values, q, rest, method, ignore_nan, weights, median, weight_dtype):
    """The quantiles q of each row of `values` (shape rest + (n,)), shape q.shape + rest,
    interpolated with weights in `weight_dtype`."""
    n = shape(values)[-1]
    order = argsort(stop_gradient(values), axis=-1)       # NaNs last
    ordered = take_along_axis(values, order, -1)
    q_ = reshape(q, shape(q) + (1,) * len(rest))           # q's axes in front of the others
    grids = tuple(reshape(np.arange(d), (-1,) + (1,) * (len(rest) - i - 1))
                  for i, d in enumerate(rest))
    missing = E.isnan(stop_gradient(ordered))
    if weights is not None:
        index = _weighted_index(take_along_axis(weights, order, -1), q_, n)
        result = getitem(ordered, grids + (index,))
    else:
        count = astype(n - sum(astype(missing, np.intp), axis=-1), np.result_type(
            q.dtype, np.float16)) if ignore_nan else n
        low, high, weight = _positions(count, q_, method)
        last = count - 1
        low = E.minimum(E.maximum(low, 0.0), last)
        high = E.minimum(E.maximum(high, 0.0), last)
        lower = getitem(ordered, grids + (astype(low, np.intp),))
        upper = getitem(ordered, grids + (astype(high, np.intp),))
        result = _interpolate(lower, upper, weight, median, weight_dtype) \
            if method in _CONTINUOUS or method in ("midpoint", "averaged_inverted_cdf") else lower
    if not ignore_nan:                                # a NaN anywhere in a slice: NaN
        result = E.where(getitem(missing, (Ellipsis, -1)), np.nan, result)
    return result


def _weights_like(weights, x, axis):
    """NumPy's quantile weights, checked and broadcast to x's shape (no derivative: the
    weighted quantile is piecewise constant in them)."""
    w = stop_gradient(operand(weights))
    if not isinstance(w, Tracer) and np.any(np.asarray(w) < 0):
        raise ValueError("Weights must be non-negative.")
    if shape(w) == shape(x):
        return w
    if axis is None:
        raise TypeError("Axis must be specified when shapes of a and weights differ.")
    if isinstance(axis, (tuple, list)):
        raise TypeError("a 1-D weights array needs a single integer axis")
    axis = normalize_axis(axis, ndim(x))
    if shape(w) != (shape(x)[axis],):
        raise ValueError("Shape of weights must be consistent with shape of a along "
                         "specified axis.")
    return broadcast_to(reshape(w, tuple(-1 if i == axis else 1 for i in range(ndim(x)))),
                        shape(x))


def _weighted_index(w, q, n):
    """NumPy's weighted inverted-CDF position: the first sorted value whose cumulative
    weight reaches q (leading zero weights are skipped)."""
    cdf = cumsum(w, axis=-1, dtype=np.float64)
    total = cdf[..., -1:]
    if not isinstance(total, Tracer) and not np.all(np.isfinite(total) & (total > 0)):
        raise ValueError("Weights included NaN, inf or were all zero.")
    cdf = cdf / total
    if np.dtype(q.dtype).kind == "f":
        cdf = astype(cdf, q.dtype)
    cdf = E.where(cdf == 0, -1.0, cdf)
    below = astype(cdf < reshape(q, shape(q) + (1,)), np.intp)
    return E.minimum(sum(below, axis=-1), n - 1)


def _q_check(name, out, method, weights, interpolation, ignore_nan=False):
    refuse(name, out=out)
    if weights is not None and ignore_nan:
        raise unsupported(name, "weights= (supported by quantile and percentile)")
    if weights is not None and method != "inverted_cdf":
        raise ValueError("Only method 'inverted_cdf' supports weights")
    if interpolation is not None:
        raise TypeError(f"{name}: `interpolation` was renamed `method` in NumPy 1.22")


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, *, weights=None, interpolation=None):
    """`np.quantile` with every method of NumPy, and weights (method 'inverted_cdf');
    differentiable in a and (for the continuous methods) in q.

    >>> import numpy as np, pullback
    >>> pullback.grad(lambda x: np.quantile(x, 0.25))(np.array([3.0, 1.0, 2.0]))
    array([0. , 0.5, 0.5])
    """
    _q_check("quantile", out, method, weights, interpolation)
    return _quantile(a, q, axis, method, keepdims, False, "quantile", weights)


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None, interpolation=None):
    """`np.percentile`: `quantile` at q / 100."""
    _q_check("percentile", out, method, weights, interpolation)
    return _quantile(a, operand(q) / 100.0, axis, method, keepdims, False, "percentile",
                     weights)


def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """`np.median`: the middle value, or the mean of the two middle ones."""
    refuse("median", out=out)
    return _quantile(a, 0.5, axis, "linear", keepdims, False, "median")


def nanquantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
                keepdims=False, *, weights=None, interpolation=None):
    """`np.nanquantile`: quantiles of the values that are not NaN (NaN for a slice of
    NaNs only)."""
    _q_check("nanquantile", out, method, weights, interpolation, ignore_nan=True)
    return _quantile(a, q, axis, method, keepdims, True, "nanquantile")


def nanpercentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
                  keepdims=False, *, weights=None, interpolation=None):
    """`np.nanpercentile`."""
    _q_check("nanpercentile", out, method, weights, interpolation, ignore_nan=True)
    return _quantile(a, operand(q) / 100.0, axis, method, keepdims, True, "nanpercentile")


def nanmedian(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """`np.nanmedian`."""
    refuse("nanmedian", out=out)
    return _quantile(a, 0.5, axis, "linear", keepdims, True, "nanmedian")


# ---------------------------------------------------------- NaN-ignoring reductions


def _without_nan(a, fill):
    """a with its NaNs replaced by `fill` (integers and booleans hold none: unchanged)."""
    x = operand(a)
    if np.dtype(getattr(x, "dtype", type(x))).kind not in "fc":
        return x
    return E.where(E.isnan(stop_gradient(x)), fill, x)


def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """`np.nansum`: NaNs count as zero."""
    return sum(_without_nan(a, 0.0), axis, dtype, out, keepdims, initial, where)


def nanprod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """`np.nanprod`: NaNs count as one."""
    return prod(_without_nan(a, 1.0), axis, dtype, out, keepdims, initial, where)


def nancumsum(a, axis=None, dtype=None, out=None):
    """`np.nancumsum`."""
    return cumsum(_without_nan(a, 0.0), axis, dtype, out)


def nancumprod(a, axis=None, dtype=None, out=None):
    """`np.nancumprod`."""
    return cumprod(_without_nan(a, 1.0), axis, dtype, out)


def _valid_count(x, axis, keepdims):
    return sum(astype(~E.isnan(stop_gradient(x)), x.dtype), axis, keepdims=keepdims)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    """`np.nanmean`: the mean of the values that are not NaN."""
    refuse("nanmean", out=out, where=where)
    x = as_floating(a, dtype)
    return sum(_without_nan(x, 0.0), axis, keepdims=keepdims) / _valid_count(x, axis, keepdims)


def nanvar(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
           mean=None, correction=None):
    """`np.nanvar`."""
    refuse("nanvar", out=out, where=where, mean=mean)
    if correction is not None:
        ddof = correction
    x = as_floating(a, dtype)
    refuse_complex_values("nanvar", x)
    # The NaNs of x (not of x - mean: inf - inf stays NaN, as in NumPy) count as 0; NaN, and
    # a NaN derivative, where no degree of freedom is left (NumPy's nanvar; var gives inf).
    centred = E.where(E.isnan(stop_gradient(x)), 0.0, x - nanmean(x, axis, keepdims=True))
    freedom = _valid_count(x, axis, keepdims) - ddof
    return sum(E.square(centred), axis, keepdims=keepdims) / E.where(freedom > 0, freedom, np.nan)


def nanstd(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
           mean=None, correction=None):
    """`np.nanstd`: over one element that is not NaN nanvar's value, as `std`'s over one
    element (identically 0, with zero derivatives; sqrt's infinite slope at 0 gave NaN)."""
    variance = nanvar(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                      correction=correction)
    single = _valid_count(as_floating(a, dtype), axis, keepdims) == 1
    return E.where(single, variance, E.sqrt(E.where(single, 1.0, variance)))


def _nan_extremum(reduce, name, fill):
    def fn(a, axis=None, out=None, keepdims=False, initial=None, where=None):
        refuse(name, out=out, where=where)
        x = operand(a)
        result = reduce(_without_nan(x, fill), axis, keepdims=keepdims, initial=initial)
        if initial is not None or np.dtype(getattr(x, "dtype", type(x))).kind not in "fc":
            return result
        all_nan = _valid_count(astype(x, np.float64), axis, keepdims) == 0
        return E.where(all_nan, np.nan, result)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}`: NaNs ignored (NaN for a slice of NaNs only)."
    return fn


nanmax = _nan_extremum(max, "nanmax", -np.inf)
nanmin = _nan_extremum(min, "nanmin", np.inf)


# -------------------------------------------------------------------- moments


def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None):
    """`np.cov`, with frequency and analytic weights (which may be traced too); float64
    unless `dtype` says otherwise, as in NumPy."""
    refuse_complex_values("cov", operand(m), None if y is None else operand(y))
    x = astype(operand(m), dtype or np.float64)
    if ndim(x) > 2:
        raise ValueError("m has more than 2 dimensions")
    if not rowvar and ndim(x) == 2:
        x = transpose(x)
    x = reshape(x, (1, -1)) if ndim(x) < 2 else x
    if y is not None:
        other = astype(operand(y), dtype or np.float64)
        if ndim(other) > 2:
            raise ValueError("y has more than 2 dimensions")
        other = reshape(other, (1, -1)) if ndim(other) < 2 else other
        if not rowvar and shape(other)[0] != 1:
            other = transpose(other)
        x = concatenate([x, other], axis=0)
    if ddof is None:
        ddof = 0 if bias else 1
    weights = None
    for w, kind in ((fweights, "fweights"), (aweights, "aweights")):
        if w is None:
            continue
        w = operand(w)
        if ndim(w) != 1 or shape(w)[0] != shape(x)[1]:
            raise RuntimeError(f"incompatible numbers of samples and {kind}")
        weights = w if weights is None else weights * w
    if weights is None:
        total = float(shape(x)[1])
        average = mean(x, axis=1, keepdims=True)
        factor = total - ddof
    else:
        total = sum(weights)
        average = sum(x * weights, axis=1, keepdims=True) / total
        factor = total - (ddof if aweights is None else
                          ddof * sum(weights * operand(aweights)) / total)
    # NumPy divides by 0 where the degrees of freedom are <= 0 (so the result is inf), with
    # a warning when it sees them; a traced factor has derivative 0 there.
    if weights is None and factor <= 0:
        warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=2)
    factor = builtins.max(factor, 0.0) if weights is None else E.maximum(factor, 0.0)
    centred = x - average
    scaled = centred if weights is None else centred * weights
    result = (centred @ transpose(scaled)) / factor
    return reshape(result, ()) if shape(result) == (1, 1) else result


def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    """`np.corrcoef`: the covariance normalised by the standard deviations (clipped to
    [-1, 1] like NumPy's; derivative zero where the clip is active)."""
    c = cov(x, y, rowvar, dtype=dtype)
    if ndim(c) == 0:
        return c / c
    d = E.sqrt(getitem(c, (np.arange(shape(c)[0]),) * 2))
    c = c / reshape(d, (-1, 1)) / reshape(d, (1, -1))
    return E.minimum(E.maximum(c, -1.0), 1.0)


# --------------------------------------------------------------------- counting


def bincount(x, /, weights=None, minlength=0):
    """`np.bincount`: counts (no derivative) or sums of `weights` per value of the integer
    array x, whose values must be known (the length of the result depends on them)."""
    if isinstance(x, Tracer):
        x = x._known_value("np.bincount")
    x = np.asarray(x)
    if weights is None:
        return np.bincount(x, minlength=minlength)
    w = operand(weights)
    length = builtins.max(int(minlength), int(x.max()) + 1 if x.size else 0)
    dtype = np.result_type(getattr(w, "dtype", np.float64), np.float64)
    return at(np.zeros(length, dtype))[x].add(astype(w, dtype))
