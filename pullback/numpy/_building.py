"""Building and rearranging arrays with NumPy's signatures: linspace, logspace, geomspace,
meshgrid, append, insert, delete, pad (every mode), select, piecewise, choose, compress,
extract, dstack, block, rot90, hsplit/vsplit/dsplit, resize, rollaxis, diagflat, unstack,
apply_along_axis.

Where NumPy's function only moves elements, it is run on the elements' ids (`arange`) and
the result read back with one gather (`_gather_like`): the same placement as NumPy's by
construction, and a derivative that is a gather's.
"""
import builtins
import math

import numpy as np

from ..core.engine import Tracer
from ..errors import unsupported
from ..primitives import elementwise as E
from ._common import ndim, normalize_axis
from ._elementwise import power
from ._reductions import max, mean, min
from ._shape import (array_operand, astype, at, atleast_3d, broadcast_arrays, broadcast_to,
                     concatenate, diag, flip, getitem, moveaxis, operand, pad_constant, ravel,
                     reshape, shape, slice_along, split, stack, take, take_along_axis, transpose)
from ._statistics import median


def _gather_like(x, numpy_function, *args, **kwargs):
    """`numpy_function(x, ...)` for a function that only moves or repeats elements: applied
    to the ids of x's elements, then those elements gathered."""
    ids = numpy_function(np.arange(math.prod(shape(x))).reshape(shape(x)), *args, **kwargs)
    return getitem(ravel(x), ids)


def _known(value, what):
    """The value of an argument that decides shapes or placement (a mask, an index)."""
    return value._known_value(what) if isinstance(value, Tracer) else np.asarray(value)


# ------------------------------------------------------------------- ranges


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *,
             device=None):
    """`np.linspace`, differentiable in the (possibly array) end points.

    >>> import numpy as np, pullback
    >>> pullback.grad(lambda b: np.sum(np.linspace(0.0, b, 5)))(2.0)
    np.float64(2.5)
    """
    num = _integer(num, "num")
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    start, stop = array_operand(start), array_operand(stop)
    result_dtype = np.result_type(start.dtype, stop.dtype, float(num))
    start, stop = astype(start, result_dtype), astype(stop, result_dtype)
    div = num - 1 if endpoint else num
    lead = np.broadcast_shapes(shape(start), shape(stop))
    ramp = np.arange(num, dtype=result_dtype).reshape((-1,) + (1,) * len(lead))
    step = (stop - start) / div if div > 0 else np.nan
    if div > 0:
        y = ramp * step + start
        if endpoint and num > 1:
            y = concatenate([slice_along(y, 0, None, -1),
                             reshape(broadcast_to(stop, lead), (1,) + lead)])
    else:
        y = ramp * (stop - start) + start
    y = moveaxis(y, 0, axis) if lead else y
    if dtype is not None:
        y = astype(E.floor(y) if np.dtype(dtype).kind in "iu" else y, dtype)
    return (y, step) if retstep else y


def _integer(value, name):
    try:
        return int(value.__index__())
    except (AttributeError, TypeError):
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    """`np.logspace`: base ** linspace(start, stop)."""
    y = linspace(start, stop, num, endpoint, axis=axis)
    base = operand(base)
    if ndim(base):
        base = reshape(base, shape(base)[:axis] + (1,) + shape(base)[axis:])
    result = power(base, y)
    return result if dtype is None else astype(result, dtype)


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """`np.geomspace` for end points of one sign (a geometric sequence through zero or
    between signs would be complex)."""
    start, stop = array_operand(start), array_operand(stop)
    working = np.result_type(start.dtype, stop.dtype, float(num), np.float64)    # as NumPy
    start, stop = astype(start, working), astype(stop, working)
    if not isinstance(start, Tracer) and not isinstance(stop, Tracer) and (
            np.any(start == 0) or np.any(stop == 0)):
        raise ValueError("Geometric sequence cannot include zero")
    sign = E.sign(start)
    first, last = start / sign, stop / sign
    result = logspace(E.log10(first), E.log10(last), num, endpoint, 10.0, axis=0)
    if num:
        parts = [reshape(broadcast_to(first, shape(result)[1:]), (1,) + shape(result)[1:])]
        if num > 1:
            parts.append(slice_along(result, 0, 1, -1 if endpoint else None))
            if endpoint:
                parts.append(reshape(broadcast_to(last, shape(result)[1:]),
                                     (1,) + shape(result)[1:]))
        result = concatenate(parts)
    result = result * sign
    result = moveaxis(result, 0, axis) if ndim(result) > 1 else result
    return result if dtype is None else astype(result, dtype)


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    """`np.meshgrid`."""
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    n = len(xi)
    grids = []
    for i, x in enumerate(xi):
        axis = {0: 1, 1: 0}.get(i, i) if indexing == "xy" and n > 1 else i
        grids.append(reshape(array_operand(x), tuple(-1 if j == axis else 1 for j in range(n))))
    return tuple(broadcast_arrays(*grids) if not sparse else grids)


# --------------------------------------------------------- adding, removing


def append(arr, values, axis=None):
    """`np.append`."""
    x, v = array_operand(arr), array_operand(values)
    if axis is None:
        return concatenate([ravel(x), ravel(v)])
    return concatenate([x, v], axis)


def insert(arr, obj, values, axis=None):
    """`np.insert`: NumPy places the ids of the elements of `arr` and `values` (positive and
    negative), and both are gathered to where it put them."""
    x, v = array_operand(arr), array_operand(values)
    if isinstance(obj, Tracer):
        obj = _known(obj, "the positions given to np.insert")
    v = astype(v, x.dtype)                   # NumPy casts the values to arr's dtype
    own = np.arange(math.prod(shape(x))).reshape(shape(x))
    new = -1 - np.arange(math.prod(shape(v))).reshape(shape(v))
    ids = np.insert(own, obj, new, axis)
    from_values = ids < 0
    if not from_values.any():
        return getitem(ravel(x), ids)
    return E.where(from_values, getitem(ravel(v), np.where(from_values, -1 - ids, 0)),
                   getitem(ravel(x), np.where(from_values, 0, ids)))


def delete(arr, obj, axis=None):
    """`np.delete`."""
    if isinstance(obj, Tracer):
        obj = _known(obj, "the positions given to np.delete")
    return _gather_like(array_operand(arr), np.delete, obj, axis)


def resize(a, new_shape):
    """`np.resize`: the elements repeated in order to fill the new shape."""
    x = array_operand(a)
    if math.prod(shape(x)) == 0:
        return np.zeros(new_shape, x.dtype)
    return _gather_like(x, np.resize, new_shape)


# ------------------------------------------------------------------ padding

_GATHER_MODES = ("edge", "reflect", "symmetric", "wrap")


def _pairs(value, n, name):
    """A pad parameter as n (before, after) pairs; traced scalars stay traced."""
    if isinstance(value, Tracer) and ndim(value) == 0:
        return [(value, value)] * n
    if isinstance(value, Tracer):
        raise unsupported("pad", f"a traced {name} must be a scalar")
    return np.broadcast_to(np.asarray(value), (n, 2)).tolist()


def pad(array, pad_width, mode="constant", **kwargs):
    """`np.pad` in every named mode of NumPy ('empty' pads with zeros; a function as the
    mode and reflect_type='odd' are refused). Constants and ramp end values may be traced.

    >>> import numpy as np, pullback
    >>> pullback.grad(lambda x: np.sum(np.pad(x, 2, mode="reflect")))(np.array([1.0, 2.0, 3.0]))
    array([2., 3., 2.])
    """
    x = array_operand(array)
    n = ndim(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.intp), (n, 2)).tolist()
    if np.any(np.asarray(widths) < 0):
        raise ValueError("index can't contain negative values")
    if callable(mode):
        raise unsupported("pad", "a function as the mode")
    allowed = {"constant": {"constant_values"}, "edge": set(), "empty": set(),
               "linear_ramp": {"end_values"}, "maximum": {"stat_length"},
               "mean": {"stat_length"}, "median": {"stat_length"}, "minimum": {"stat_length"},
               "reflect": {"reflect_type"}, "symmetric": {"reflect_type"}, "wrap": set()}
    if mode not in allowed:
        raise ValueError(f"mode '{mode}' is not supported")
    unknown = set(kwargs) - allowed[mode]
    if unknown:
        raise ValueError(f"unsupported keyword arguments for mode '{mode}': {unknown}")
    if n == 0:                                     # NumPy: a 0-d array has nothing to pad
        return x
    if mode in _GATHER_MODES:
        if kwargs.get("reflect_type", "even") != "even":
            raise unsupported("pad", "reflect_type='odd'")
        return _gather_like(x, np.pad, widths, mode)
    if mode == "empty":
        mode, kwargs = "constant", {}
    value = kwargs.get("constant_values", 0)
    if mode == "constant" and not isinstance(value, Tracer) and np.ndim(value) == 0:
        return pad_constant(x, widths, value)
    if mode == "constant":
        pairs = _pairs(value, n, "constant_values")
    elif mode == "linear_ramp":
        pairs = _pairs(kwargs.get("end_values", 0), n, "end_values")
    else:
        length = kwargs.get("stat_length")
        pairs = _pairs([[s, s] for s in shape(x)] if length is None else length, n,
                       "stat_length")
    for axis, ((before, after), pair) in enumerate(zip(widths, pairs)):
        if before or after:
            x = concatenate(_pad_blocks(x, axis, before, after, mode, pair), axis)
    return x


def _pad_blocks(x, axis, before, after, mode, pair):
    """[left block, x, right block] along `axis` for the computed pad modes."""
    def block_shape(width):
        s = list(shape(x))
        s[axis] = width
        return tuple(s)
    size = shape(x)[axis]
    if mode == "constant":
        left, right = (broadcast_to(astype(array_operand(v), x.dtype), block_shape(w))
                       for v, w in zip(pair, (before, after)))
    elif mode == "linear_ramp":
        left = _ramp(pair[0], x, 0, before, axis)
        right = flip(_ramp(pair[1], x, size - 1, after, axis), axis)
    else:
        if size == 0:
            raise ValueError("can't extend empty axis using modes other than 'constant' "
                             "or 'empty'")
        if 0 in pair:
            raise ValueError("stat_length of 0 yields no value for padding")
        stat = {"maximum": max, "minimum": min, "mean": mean, "median": median}[mode]
        lengths = [builtins.min(int(k), size) for k in pair]
        left = stat(slice_along(x, axis, 0, lengths[0]), axis=axis, keepdims=True)
        right = stat(slice_along(x, axis, size - lengths[1], size), axis=axis, keepdims=True)
        if mode in ("mean", "median") and np.dtype(x.dtype).kind in "iu":
            left, right = (astype(E.rint(v), x.dtype) for v in (left, right))
        left, right = broadcast_to(left, block_shape(before)), broadcast_to(right,
                                                                         block_shape(after))
    return [left, x, right]


def _ramp(end, x, index, width, axis):
    """NumPy's linear ramp from `end` towards x's edge element `index` along `axis`."""
    edge = getitem(x, (slice(None),) * axis + (index,))
    return linspace(astype(array_operand(end), x.dtype), edge, width, endpoint=False,
                    dtype=x.dtype, axis=axis)


# ------------------------------------------------------------------ choosing


def select(condlist, choicelist, default=0):
    """`np.select`: the first choice whose condition holds, elementwise."""
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    if len(condlist) == 0:
        raise ValueError("select with an empty condition list is not possible")
    conditions = [array_operand(c) for c in condlist]
    choices = [array_operand(c) for c in list(choicelist) + [default]]
    if builtins.any(c.dtype != np.bool_ for c in conditions):
        raise TypeError("invalid entry in condlist: should be boolean ndarray")
    result = choices[-1]
    for condition, choice in reversed(list(zip(conditions, choices))):
        result = E.where(condition, choice, result)
    target = np.broadcast_shapes(*(shape(c) for c in conditions + choices))
    dtype = np.result_type(*(c if type(c) in (int, float, complex) else array_operand(c).dtype
                             for c in list(choicelist) + [default]))   # numbers: weak types
    return astype(broadcast_to(result, target), dtype)


def piecewise(x, condlist, funclist, *args, **kw):
    """`np.piecewise`: each function applied to the elements its condition selects, as NumPy
    does (so a function is never evaluated outside its piece). The conditions' values must
    be known (not under `jit` or across a `vmap` batch: use `np.where` there)."""
    x = array_operand(x)
    what = "a condition of np.piecewise"
    condlist = [_known(c, what) for c in condlist] if isinstance(condlist, (list, tuple)) \
        else _known(condlist, what)
    if np.isscalar(condlist) or np.ndim(condlist) == 0 or (
            not isinstance(condlist[0], (list, np.ndarray)) and ndim(x) != 0):
        condlist = [condlist]
    conditions = [np.broadcast_to(np.asarray(c, bool), shape(x)) for c in condlist]
    if len(funclist) == len(conditions) + 1:
        conditions.append(~np.any(conditions, axis=0))
    elif len(funclist) != len(conditions):
        raise ValueError(f"with {len(conditions)} condition(s), either {len(conditions)} or "
                         f"{len(conditions) + 1} functions are expected")
    y = np.zeros(shape(x), x.dtype)
    for condition, fn in zip(conditions, funclist):
        if not condition.any():
            continue
        values = fn(getitem(x, condition), *args, **kw) if callable(fn) else fn
        y = at(y)[condition].set(values)
    return y


def choose(a, choices, mode="raise"):
    """`np.choose`: choices[a[i]][i], elementwise (a may be traced)."""
    index = array_operand(a)
    options = broadcast_arrays(*[array_operand(c) for c in choices], index)
    options, index = options[:-1], options[-1]
    k = len(options)
    if mode == "raise":
        known = index if not isinstance(index, Tracer) else None
        if known is not None and (np.any(known < 0) or np.any(known >= k)):
            raise ValueError("invalid entry in choice array")
    elif mode == "wrap":
        index = E.remainder(index, k)
    elif mode == "clip":
        index = E.minimum(E.maximum(index, 0), k - 1)
    else:
        raise ValueError(f"clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})")
    stacked = stack(options)
    return take_along_axis(stacked, reshape(index, (1,) + shape(index)), 0)[0]


def compress(condition, a, axis=None):
    """`np.compress`: the slices along `axis` where the condition (known values) holds."""
    mask = np.asarray(_known(condition, "the condition of np.compress"), bool)
    if mask.ndim != 1:
        raise ValueError("condition must be a 1-d array")
    x = array_operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    if mask.size > shape(x)[normalize_axis(axis, ndim(x))] and mask[shape(x)[axis]:].any():
        raise IndexError("index out of bounds for the compressed axis")
    return take(x, np.flatnonzero(mask), axis)


def extract(condition, arr):
    """`np.extract`: the elements where the condition (known values) holds, flattened."""
    mask = np.asarray(_known(condition, "the condition of np.extract"), bool)
    return take(ravel(array_operand(arr)), np.flatnonzero(mask.ravel()))


# ------------------------------------------------------- stacking, splitting


def dstack(tup):
    """`np.dstack`."""
    xs = atleast_3d(*tup)
    return concatenate(xs if isinstance(xs, tuple) else [xs], 2)


def block(arrays):
    """`np.block`: nested lists of arrays joined along the last axes (innermost list last)."""
    def depth(item):
        if isinstance(item, tuple):
            raise TypeError("arrays is a tuple. Only lists can be used to arrange blocks, "
                            "and np.block does not allow implicit conversion from tuple to "
                            "ndarray.")
        if not isinstance(item, list):
            return 0, ndim(array_operand(item))
        if not item:
            raise ValueError("List at arrays cannot be empty")
        inner = [depth(i) for i in item]
        if len({d for d, _ in inner}) != 1:
            raise ValueError("List depths are mismatched.")
        return inner[0][0] + 1, builtins.max(r for _, r in inner)
    levels, leaf_rank = depth(arrays)
    rank = builtins.max(levels, leaf_rank)

    def build(item, level):
        if not isinstance(item, list):
            x = array_operand(item)
            return reshape(x, (1,) * (rank - ndim(x)) + shape(x))
        return concatenate([build(i, level + 1) for i in item], rank - (levels - level))
    return build(arrays, 0)


def rot90(m, k=1, axes=(0, 1)):
    """`np.rot90`: flips and a transpose."""
    x = array_operand(m)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    first, second = (normalize_axis(a, ndim(x)) for a in axes)
    if first == second:
        raise ValueError("Axes must be different.")
    k %= 4
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, first), second)
    order = list(range(ndim(x)))
    order[first], order[second] = order[second], order[first]
    return transpose(flip(x, second), order) if k == 1 else flip(transpose(x, order), second)


def _split_along(name, axis, at_least):
    def fn(ary, indices_or_sections):
        x = array_operand(ary)
        if ndim(x) < at_least:
            raise ValueError(f"{name} only works on arrays of {at_least} or more dimensions")
        return split(x, indices_or_sections, axis if name != "hsplit" or ndim(x) > 1 else 0)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}`."
    return fn


hsplit = _split_along("hsplit", 1, 1)
vsplit = _split_along("vsplit", 0, 2)
dsplit = _split_along("dsplit", 2, 3)


def rollaxis(a, axis, start=0):
    """`np.rollaxis`."""
    x = array_operand(a)
    n = ndim(x)
    axis = normalize_axis(axis, n)
    if not -n <= start <= n:
        raise np.exceptions.AxisError(f"start arg requires {-n} <= start < {n + 1}")
    start = start + n if start < 0 else start
    if axis < start:
        start -= 1
    if axis == start:
        return x
    order = [i for i in range(n) if i != axis]
    order.insert(start, axis)
    return transpose(x, order)


def diagflat(v, k=0):
    """`np.diagflat`."""
    return diag(ravel(array_operand(v)), k)


def unstack(x, /, *, axis=0):
    """`np.unstack`: the slices along `axis`, as a tuple."""
    x = array_operand(x)
    if ndim(x) == 0:
        raise ValueError("Input array must be at least 1-d.")
    moved = moveaxis(x, normalize_axis(axis, ndim(x)), 0)
    return tuple(moved[i] for i in range(shape(moved)[0]))


def apply_along_axis(func1d, axis, arr, *args, **kwargs):
    """`np.apply_along_axis`: func1d on every 1-D slice along `axis` (a Python loop), the
    results stacked where the axis was."""
    x = array_operand(arr)
    axis = normalize_axis(axis, ndim(x))
    moved = moveaxis(x, axis, -1)
    outer = shape(moved)[:-1]
    if math.prod(outer) == 0:
        raise ValueError("Cannot apply_along_axis when any iteration dimensions are 0")
    results = [array_operand(func1d(moved[index], *args, **kwargs)) for index in np.ndindex(outer)]
    inner = shape(results[0])
    stacked = reshape(stack(results), outer + inner)
    order = list(range(len(outer)))
    order[axis:axis] = range(len(outer), len(outer) + len(inner))
    return transpose(stacked, order)
