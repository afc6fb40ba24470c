"""Differences, sums and products of sequences with NumPy's signatures: diff, gradient,
trapezoid, cumulative_sum, interp, convolve, correlate, cross, unwrap.

All are composites of slicing, concatenation, elementwise arithmetic, reductions and
`searchsorted` (a zero-derivative primitive): their derivatives are exact.
"""
import builtins
import math
import numbers

import numpy as np

from ..core.engine import Tracer
from ..errors import unsupported
from ..primitives import elementwise as E
from ..primitives import reductions as R
from ..primitives.structural import stop_gradient
from ._common import ndim, normalize_axes, normalize_axis, refuse, refuse_complex_values
from ._elementwise import _conjugated
from ._reductions import cumprod, cumsum, sum
from ._shape import (as_floating, astype, broadcast_to, concatenate, flip, getitem, moveaxis,
                     operand, pad_constant, ravel, reshape, shape, slice_along, stack)


# ----------------------------------------------------------------- differences


def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    """`np.diff`: the n-th discrete difference along `axis`.

    >>> import numpy as np, pullback
    >>> pullback.grad(lambda x: np.sum(np.diff(x) ** 2))(np.array([0.0, 1.0, 3.0]))
    array([-2., -2.,  4.])
    """
    if n < 0:
        raise ValueError(f"order must be non-negative but got {n!r}")
    x = operand(a)
    if ndim(x) == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = normalize_axis(axis, ndim(x))
    edges = []
    for value in (prepend, append):
        if value is np._NoValue:
            edges.append(None)
            continue
        value = operand(value)
        if ndim(value) == 0:
            edge_shape = list(shape(x))
            edge_shape[axis] = 1
            value = broadcast_to(value, tuple(edge_shape))
        edges.append(value)
    if edges[0] is not None or edges[1] is not None:
        x = concatenate([e for e in (edges[0], x, edges[1]) if e is not None], axis)
    difference = E.not_equal if np.dtype(x.dtype) == np.bool_ else E.subtract
    for _ in range(n):
        x = difference(slice_along(x, axis, 1, None), slice_along(x, axis, None, -1))
    return x


def ediff1d(ary, to_end=None, to_begin=None):
    """`np.ediff1d`: differences of the flattened array, with optional ends."""
    parts = [diff(ravel(ary))]
    dtype = parts[0].dtype
    if to_begin is not None:
        parts.insert(0, astype(ravel(operand(to_begin)), dtype))
    if to_end is not None:
        parts.append(astype(ravel(operand(to_end)), dtype))
    return concatenate(parts) if len(parts) > 1 else parts[0]


def _along(values, axis, n):
    """A 1-D array of coefficients shaped to broadcast along `axis` of an n-d array."""
    return reshape(values, tuple(-1 if i == axis else 1 for i in range(n)))


def _spacing(spacing, size):
    """NumPy's spacing argument of `gradient` for one axis: a scalar step, or the
    differences of a 1-D array of coordinates (a step if they are known to be uniform)."""
    spacing = operand(spacing)
    if ndim(spacing) == 0:
        return spacing
    if ndim(spacing) != 1:
        raise ValueError("distances must be either scalars or 1d")
    if shape(spacing)[0] != size:
        raise ValueError("when 1d, distances must match the length of the corresponding "
                         "dimension")
    steps = diff(as_floating(spacing))
    if not isinstance(steps, Tracer) and np.all(steps == steps[0]):
        return steps[0]
    return steps


def gradient(f, *varargs, axis=None, edge_order=1):
    """`np.gradient`: second-order central differences inside, first- or second-order
    one-sided differences at the ends; spacings are scalars or coordinate arrays (both may
    be traced).

    >>> import numpy as np
    >>> import pullback.numpy as pnp
    >>> pnp.gradient(np.array([1.0, 2.0, 4.0, 7.0]))
    array([1. , 1.5, 2.5, 3. ])
    """
    x = as_floating(f)
    n = ndim(x)
    axes = normalize_axes(axis, n)
    if isinstance(axis, (tuple, list)):          # one result per axis, in the order given
        axes = tuple(normalize_axis(a, n) for a in axis)
    if len(varargs) == 0:
        spacings = [1.0] * len(axes)
    elif len(varargs) == 1 and ndim(operand(varargs[0])) == 0:
        spacings = [varargs[0]] * len(axes)
    elif len(varargs) == len(axes):
        spacings = list(varargs)
    else:
        raise TypeError("invalid number of arguments")
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    results = []
    for ax, spacing in zip(axes, spacings):
        size = shape(x)[ax]
        if size < edge_order + 1:
            raise ValueError("Shape of array too small to calculate a numerical gradient, "
                             "at least (edge_order + 1) elements are required.")
        h = _spacing(spacing, size)
        results.append(_gradient_along(x, ax, h, edge_order, n))
    return tuple(results) if len(results) > 1 else results[0]


def _gradient_along(x, ax, h, edge_order, n):
    def part(start, stop):
        return slice_along(x, ax, start, stop)
    uniform = ndim(h) == 0
    if uniform:
        inner = (part(2, None) - part(None, -2)) / (2.0 * h)
    else:
        h1, h2 = (_along(v, ax, n) for v in (h[:-1], h[1:]))
        inner = (-h2 / (h1 * (h1 + h2)) * part(None, -2) + (h2 - h1) / (h1 * h2) * part(1, -1)
                 + h1 / (h2 * (h1 + h2)) * part(2, None))
    if edge_order == 1:
        first_h, last_h = (h, h) if uniform else (h[0], h[-1])
        first = (part(1, 2) - part(0, 1)) / first_h
        last = (part(-1, None) - part(-2, -1)) / last_h
    elif uniform:
        first = (-1.5 * part(0, 1) + 2.0 * part(1, 2) - 0.5 * part(2, 3)) / h
        last = (0.5 * part(-3, -2) - 2.0 * part(-2, -1) + 1.5 * part(-1, None)) / h
    else:
        h1, h2 = h[0], h[1]
        first = (-(2.0 * h1 + h2) / (h1 * (h1 + h2)) * part(0, 1)
                 + (h1 + h2) / (h1 * h2) * part(1, 2) - h1 / (h2 * (h1 + h2)) * part(2, 3))
        h1, h2 = h[-2], h[-1]
        last = (h2 / (h1 * (h1 + h2)) * part(-3, -2) - (h2 + h1) / (h1 * h2) * part(-2, -1)
                + (2.0 * h2 + h1) / (h2 * (h1 + h2)) * part(-1, None))
    # (in x's dtype, as NumPy's, which writes into an array like x: float64 spacings of
    # float32 values made float64 results)
    return astype(concatenate([first, inner, last], ax), x.dtype)


def trapezoid(y, x=None, dx=1.0, axis=-1):
    """`np.trapezoid`: the integral of y by the trapezoidal rule (x may be traced too)."""
    y = as_floating(y)
    axis = normalize_axis(axis, ndim(y))
    if x is None:
        d = operand(dx)
    else:
        x = operand(x)
        d = diff(x, axis=-1 if ndim(x) == 1 else axis)
        if ndim(x) == 1:
            d = _along(d, axis, ndim(y))
    heights = slice_along(y, axis, 1, None) + slice_along(y, axis, None, -1)
    return sum(d * heights / 2.0, axis=axis)


def _cumulative(scan, name, identity):
    def fn(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
        refuse(name, out=out)
        x = operand(x)
        if axis is None:
            if ndim(x) > 1:
                raise ValueError("axis must be specified for multi-dimensional arrays")
            x, axis = (reshape(x, (1,)) if ndim(x) == 0 else x), 0
        axis = normalize_axis(axis, ndim(x))
        result = scan(x, axis=axis, dtype=dtype)
        if include_initial:
            edge_shape = list(shape(result))
            edge_shape[axis] = 1
            start = np.full(edge_shape, identity, getattr(result, "dtype", None))
            result = concatenate([start, result], axis)
        return result
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`np.{name}` (NumPy 2's array-API scan, with `include_initial`)."
    return fn


cumulative_sum = _cumulative(cumsum, "cumulative_sum", 0)
cumulative_prod = _cumulative(cumprod, "cumulative_prod", 1)


# -------------------------------------------------------------- interpolation


def interp(x, xp, fp, left=None, right=None, period=None):
    """`np.interp`: piecewise-linear interpolation, differentiable in x, xp and fp alike.

    >>> import numpy as np, pullback
    >>> pullback.grad(lambda x: np.interp(x, [0.0, 1.0, 3.0], [0.0, 2.0, 3.0]))(2.0)
    np.float64(0.5)
    """
    x, xp, fp = (operand(v) for v in (x, xp, fp))
    refuse_complex_values("interp", x, xp, fp, left, right)
    x, xp, fp = (astype(v, np.float64) for v in (x, xp, fp))
    if ndim(xp) != 1 or ndim(fp) != 1:
        raise ValueError("object too deep for desired array" if builtins.max(ndim(xp), ndim(fp)) > 1
                         else "object of too small depth for desired array")
    if shape(xp)[0] != shape(fp)[0]:
        raise ValueError("fp and xp are not of the same length.")
    if shape(xp)[0] == 0:
        raise ValueError("array of sample points is empty")
    if period is not None:
        if period == 0:
            raise ValueError("period must be a non-zero value")
        period = builtins.abs(period)
        x = E.remainder(x, period)
        xp = E.remainder(xp, period)
        order = R.argsort(stop_gradient(xp), axis=0)
        xp, fp = getitem(xp, order), getitem(fp, order)
        xp = concatenate([xp[-1:] - period, xp, xp[0:1] + period])
        fp = concatenate([fp[-1:], fp, fp[0:1]])
        left = right = None
    n = shape(xp)[0]
    if n == 1:
        inside = fp[0]
    else:
        j = R.searchsorted(stop_gradient(xp), stop_gradient(x), side="right") - 1
        j = E.minimum(E.maximum(j, 0), n - 2)
        x0, x1 = getitem(xp, j), getitem(xp, j + 1)
        y0, y1 = getitem(fp, j), getitem(fp, j + 1)
        # (a repeated end knot's zero width only ever divides in an untaken branch: 1
        # instead, whose slope, infinite, made reverse mode's gradients NaN there)
        width = x1 - x0
        slope = (y1 - y0) / E.where(width == 0, 1.0, width)
        line = slope * (x - x0) + y0
        # NumPy's where that is NaN (an infinite value at an end): at a knot the knot's
        # value, else the line from the other end, then (both ends equal) that value
        other = E.where(x == x0, y0, slope * (x - x1) + y1)
        other = E.where(E.logical_and(E.isnan(other), y0 == y1), y0, other)
        inside = E.where(x == x1, y1, E.where(E.isnan(line), other, line))
    below = fp[0] if left is None else operand(left)
    above = fp[-1] if right is None else operand(right)
    return E.where(x < xp[0], below, E.where(x > xp[-1], above, inside))


# ------------------------------------------------------------------ convolution


# Sliding windows are gathered in blocks of taps of at most this many elements.
WINDOW_ELEMENTS = 2 ** 20


def _convolve_mode(n, m, mode):
    """The range of rows of the full convolution (length n + m - 1, n >= m) a mode keeps."""
    if mode in ("full", "f"):
        return 0, n + m - 1
    if mode in ("same", "s"):
        return (m - 1) // 2, (m - 1) // 2 + n
    if mode in ("valid", "v"):
        return m - 1, n
    raise ValueError(f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})")


def convolve(a, v, mode="full"):
    """`np.convolve` of two 1-D sequences (modes 'full', 'same', 'valid'), differentiable in
    both: the matrix of sliding windows of the longer one (zero-padded) times the reversed
    shorter one, gathered in blocks of at most WINDOW_ELEMENTS numbers."""
    a, v = operand(a), operand(v)
    if ndim(a) != 1 or ndim(v) != 1:
        raise ValueError("object too deep for desired array" if ndim(a) > 1 or ndim(v) > 1
                         else "convolve: inputs must be one-dimensional")
    if shape(a)[0] == 0:
        raise ValueError("a cannot be empty")
    if shape(v)[0] == 0:
        raise ValueError("v cannot be empty")
    if shape(v)[0] > shape(a)[0]:
        a, v = v, a
    n, m = shape(a)[0], shape(v)[0]
    start, stop = _convolve_mode(n, m, mode)
    padded, kernel = pad_constant(a, (m - 1, m - 1)), flip(v)
    rows = np.arange(start, stop)[:, None]          # window k starts at padded[k]
    block = builtins.max(1, WINDOW_ELEMENTS // builtins.max(stop - start, 1))
    result = None
    for first in range(0, m, block):
        taps = np.arange(first, builtins.min(first + block, m))
        part = getitem(padded, rows + taps) @ kernel[first:first + block]
        result = part if result is None else result + part
    return result


def correlate(a, v, mode="valid"):
    """`np.correlate` of two 1-D sequences: c[k] = sum_n a[n + k] conj(v[n])."""
    return _correlate(operand(a), _conjugated(v), mode)


def _correlate(a, w, mode):
    """c[k] = sum_n a[n + k] w[n]."""
    if ndim(a) == 1 and ndim(w) == 1 and 0 < shape(a)[0] < shape(w)[0]:
        return flip(_correlate(w, a, mode))      # NumPy swaps and reverses, as here
    return convolve(a, flip(w) if ndim(w) == 1 else w, mode)


# --------------------------------------------------------------------- products


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """`np.cross` of 2- and 3-vectors along the given axes."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = operand(a), operand(b)
    a = moveaxis(a, normalize_axis(axisa, ndim(a)), -1)
    b = moveaxis(b, normalize_axis(axisb, ndim(b)), -1)
    if shape(a)[-1] not in (2, 3) or shape(b)[-1] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n"
                         "(dimension must be 2 or 3)")
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    z = a0 * b1 - a1 * b0
    if shape(a)[-1] == 2 and shape(b)[-1] == 2:
        return z
    a2 = a[..., 2] if shape(a)[-1] == 3 else None
    b2 = b[..., 2] if shape(b)[-1] == 3 else None
    if a2 is None:
        x, y = a1 * b2, -(a0 * b2)
    elif b2 is None:
        x, y = -(a2 * b1), a2 * b0
    else:
        x, y = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2
    x, y, z = (broadcast_to(c, np.broadcast_shapes(shape(x), shape(y), shape(z)))
               for c in (x, y, z))
    return stack([x, y, z], axis=normalize_axis(axisc, ndim(x) + 1))


def unwrap(p, discont=None, axis=-1, *, period=2 * math.pi):
    """`np.unwrap`: p plus the multiples of `period` that remove jumps larger than
    `discont`; the correction is piecewise constant, so the derivative is the identity."""
    p = as_floating(p)
    axis = normalize_axis(axis, ndim(p))
    if not isinstance(period, numbers.Real) or isinstance(period, Tracer):
        raise unsupported("unwrap", "period must be a constant number")
    half = period / 2
    discont = half if discont is None else builtins.max(discont, half)
    jumps = stop_gradient(diff(p, axis=axis))
    wrapped = E.remainder(jumps + half, period) - half
    wrapped = E.where((wrapped == -half) & (jumps > 0), half, wrapped)
    correction = E.where(E.absolute(jumps) < discont, 0.0, wrapped - jumps)
    widths = [(0, 0)] * ndim(p)
    widths[axis] = (1, 0)
    return p + pad_constant(cumsum(correction, axis=axis), widths)
