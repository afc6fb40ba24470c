"""Reverse mode's lazy cotangents: concrete cotangents kept symbolic instead of materialised.

Two kinds, for the two transposes primitives declare (`Primitive.transpose_kind`):

- `Scaled`: a number times an array, or one number everywhere ("uniform": the transpose
  of a sum). Elementwise pullbacks (`Primitive.scaled_cotangents`) multiply it by their
  derivatives without a pass over the data where IEEE arithmetic allows;
- `Embedded`: values at an index of an array of zeros ("embedding": the transpose of
  indexing), added into the sweep's accumulator in place.

The sweep (reverse.py) adds a lazy cotangent into a buffer it owns (`add_into`) and
materialises it (`dense()`, always a fresh array) for a pullback that does not take it.
They are made from concrete arrays only, never from tracers. On another library's
arrays (Dask, CuPy) they keep `like`, the array they are the cotangent of, and
materialise in its library and layout; a gradient's seed there (and any number given as
a cotangent) is that number, as on NumPy (`known_scale`), any other lazy (Dask) cotangent
of a sum a symbolic 0-d scale: multiplications by numbers are then 0-d operations, not
passes over every chunk.
"""
import math

import numpy as np

from ..core.arrays import (FLOAT64, WRITABLE_TYPES, add_at, broadcast_scalar, empty, foreign_array, full,
                           known_scalar, known_value, ones, pad_widths, padded_embedding,
                           without_new_axes, writable_in_place, zeros)
from ..core.engine import Tracer
from ..core.indexing import basic_index, index_tuple
from ..core.numbers import cast
from ..core.primitive import ZERO


class LazyCotangent:
    """A concrete cotangent not yet materialised (see the module docstring)."""
    __slots__ = ()

    def dense(self):
        raise NotImplementedError  # abstract: every concrete kind overrides it

    def add_into(self, buffer):
        raise NotImplementedError  # abstract: every concrete kind overrides it


def dense(ct):
    """A cotangent as an array: lazy ones materialised, anything else as it is."""
    return ct.dense() if isinstance(ct, LazyCotangent) else ct


def unbroadcast_to(ct, shape, dtype):
    """The cotangent `ct` of a broadcast value summed down to `shape` (undoing the
    broadcasting) and cast to `dtype` (None: a weakly typed Python scalar's, no cast).
    Written with array methods, which are primitives on tracers and NumPy on arrays; a lazy
    cotangent that needs either is materialised first.

    >>> unbroadcast_to(np.ones((2, 3)), (3,), np.dtype(np.float64))
    array([2., 2., 2.])
    """
    ct_shape = ct.shape
    if ct_shape == shape and (dtype is None or ct.dtype == dtype):
        return ct                            # the common case: it fits already
    if isinstance(ct, LazyCotangent):
        ct = ct.dense()
    if ct_shape != shape:
        lead = len(ct_shape) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and ct_shape[lead + i] != 1)
        if axes:
            ct = ct.sum(axis=axes)
        if ct.shape != shape:
            ct = ct.reshape(shape)
    if dtype is not None and ct.dtype != dtype:
        ct = cast(ct, dtype)
    return ct


def lazy_pullback(primitive, pullback, values, params):
    """`pullback` of a primitive with a declared `transpose_kind`, returning the lazy
    cotangent of its transpose where the cotangent is concrete."""
    x = values[0]
    like = None if type(x) is np.ndarray else foreign_array(x)     # None: NumPy's
    if primitive.transpose_kind == "uniform":
        def uniform_pullback(ct):
            uniform = uniform_cotangent(ct, x.shape, like)
            if uniform is not None:
                return (uniform,)
            if _foreign(ct) and ct.size == 1:      # a number made an array, or a lazy scale
                scale = known_value(ct)
                scale = ct.reshape(()) if scale is None else scale
                return (Scaled(scale, None, x.shape, ct.dtype, ct if like is None else like),)
            return pullback(dense(ct))
        return uniform_pullback
    arrays, index = values[1:], params["index"]              # "embedding"
    if arrays and any(isinstance(a, Tracer) for a in arrays):
        return lambda ct: pullback(dense(ct))
    rest = (ZERO,) * len(arrays)
    padded = like is not None and not arrays and pad_widths(index_tuple(index, ()),
                                                            x.shape) is not None

    def embedding_pullback(ct):
        if type(ct) in WRITABLE_TYPES or isinstance(ct, (LazyCotangent, np.generic)) \
                or (padded and _foreign(ct)):
            return (Embedded(ct, arrays, index, x.shape, like),) + rest
        return pullback(ct)
    return embedding_pullback


def uniform_cotangent(ct, shape, like=None):
    """The NumPy cotangent `ct` of one value spread over `shape` (the transpose of a sum),
    where it is one, else None: lazily (`Scaled`), or on NumPy over a small shape as an
    array (a pass over it costs less than the lazy value's frames in the pullbacks after)."""
    if isinstance(ct, (np.ndarray, np.generic)) and ct.size == 1:
        uniform = Scaled(ct.item(), None, shape, ct.dtype, like)
        small = like is None and math.prod(shape) * ct.dtype.itemsize < SMALL_DENSE
        return uniform.dense() if small else uniform
    return None


def known_scale(ct):
    """A cotangent `arrays.known_scalar` made (another library's 0-d array of a known number:
    a gradient's seed) as `Scaled` of that number, which the numbers of elementwise rules
    fold into as they do into NumPy's 0-d arrays; any other cotangent as it is."""
    value = None if type(ct) is np.ndarray else known_value(ct)
    return ct if value is None else Scaled(value, None, (), ct.dtype, ct)


def _foreign(x) -> bool:
    """Whether x is itself another library's array (not a tracer wrapping one)."""
    return not isinstance(x, Tracer) and foreign_array(x) is not None


# ------------------------------------------------------------------ scaling

_NORMAL_RANGE = {}      # dtype -> (smallest, largest) normal magnitude, as Python floats


def normal_factor(c, dtype):
    """c if it is a usable scale factor for `dtype`: finite, nonzero and normal there (so
    that scaling by it rounds, but never overflows, underflows or makes a NaN); else None."""
    bounds = _NORMAL_RANGE.get(dtype)
    if bounds is None:
        info = np.finfo(dtype)
        bounds = _NORMAL_RANGE[dtype] = (float(info.tiny), float(info.max))
    try:
        magnitude = abs(complex(c))
    except OverflowError:
        return None
    return c if bounds[0] <= magnitude <= bounds[1] else None


def may_fold(first, second) -> bool:
    """Whether scaling by `first` then by `second` may become one scaling by their product:
    when both magnify (|s| >= 1) or both shrink (|s| <= 1), an intermediate result
    overflows (or underflows) exactly when the folded one does, to rounding; a magnifying
    and a shrinking factor may cancel out what the intermediate did (1e200 * 1e200 * 0.0
    is NaN, 1e200 * (1e200 * 0.0) is 0)."""
    return abs(first) == 1 or abs(second) == 1 or (abs(first) > 1) == (abs(second) > 1)



# From this size on a product is written into a temporary partial derivative rather than a
# new array (NumPy elides its own large temporaries from the same size on): one large
# array fewer per reverse-mode step (peak memory, page faults, a cache's worth of traffic).
LARGE_TEMPORARY = 1 << 18
SMALL_DENSE = 1 << 12        # bytes: a uniform cotangent this small is made an array

_NUMBERS = (int, float, complex, np.generic)     # a scale whose value is known


class Scaled(LazyCotangent):
    """`scale * array`, or the value `scale` everywhere when `array` is None (the transpose of a sum).

    The elementwise pullbacks multiply it by their derivatives without a pass over the
    data where IEEE arithmetic allows, so the result is what the unfolded program gives
    (Inf and NaN included), to rounding. A uniform value is a scalar of `dtype`, which a
    Python number multiplies exactly as it would multiply every element. An array's
    pending scale folds a Python number in when `may_fold` allows and the product is a
    `normal_factor`, else the scale is applied first. An array of the same shape, dtype
    and library multiplies `array` (one pass, none if the cotangent is uniform) once
    nothing is pending. Anything else materialises it first (exact NumPy semantics).

    `like` (None on NumPy) is the other library's array it is the cotangent of: dense
    values are made in its library and layout. There the scale may be a lazy 0-d array
    ("symbolic"), whose value is unknown: it folds in numbers only while uniform (exact:
    a 0-d product), and is applied before anything else once there is an array.
    """
    __slots__ = ("scale", "array", "shape", "dtype", "like")
    __array_ufunc__ = None               # never silently converted by NumPy

    def __init__(self, scale, array, shape, dtype, like=None):
        if array is None and dtype != FLOAT64 and isinstance(scale, _NUMBERS):
            scale = dtype.type(scale)     # (a Python float is a float64 already)
        self.scale, self.array, self.shape, self.dtype = scale, array, shape, dtype
        self.like = like

    def _symbolic(self) -> bool:
        return not isinstance(self.scale, _NUMBERS)

    def __mul__(self, other):
        if type(other) in (int, float):                  # weakly typed: keeps the dtype
            if self.array is None:
                return Scaled(self.scale * other, None, self.shape, self.dtype, self.like)
            if self._symbolic():
                return Scaled(other, self.dense(), self.shape, self.dtype, self.like)
            scale = (complex if self.dtype.kind == "c" else float)(self.scale) * other
            if may_fold(self.scale, other) and normal_factor(scale, self.dtype) is not None:
                return Scaled(scale, self.array, self.shape, self.dtype, self.like)
            return Scaled(other, self.dense(), self.shape, self.dtype, self.like)
        # `Scaled(scale, array * other)` for an array of the same shape, dtype and library,
        # with no scale pending before it.
        if (type(other) in WRITABLE_TYPES if self.like is None else type(other) is type(self.like)) \
                and other.shape == self.shape and other.dtype == self.dtype \
                and (self.array is None or self._unit()):
            array = other if self.array is None else self.array * other
            return Scaled(self.scale, array, self.shape, self.dtype, self.like)
        return self._operand() * other

    def __neg__(self):
        return Scaled(-self.scale, self.array, self.shape, self.dtype, self.like)

    def relaid(self, shape, method, argument):
        """The same values laid out in `shape` by the array method `method` ("reshape",
        "transpose") with `argument`, still lazy (reshape's and transpose's transposes)."""
        array = None if self.array is None else getattr(self.array, method)(argument)
        return Scaled(self.scale, array, tuple(shape), self.dtype, self.like)

    def dense(self):
        if self.like is not None:
            operand = self._operand()
            return operand.copy() if operand is self.array else operand   # (Dask: no pass)
        out = empty(self.shape, self.dtype, like=self.array)     # an array even when 0-d
        if self.array is None:
            out.fill(self.scale)
            return out
        return np.multiply(self.array, self.scale, out=out)

    def _unit(self) -> bool:
        return not self._symbolic() and self.scale == 1

    def _operand(self):
        # What it stands for, as an operand of arithmetic that makes a new array: shared
        # and read-only where that saves a pass (a staged program keeps a view, not a copy).
        if self.array is None:
            if self.like is None:
                return broadcast_scalar(self.scale, self.shape, self.dtype)
            if self._symbolic():
                return ones(self.shape, self.dtype, like=self.like) * self.scale
            if self.shape == ():         # a known number still, to the sum it reaches
                return known_scalar(self.scale, self.dtype, like=self.like)
            return full(self.shape, self.scale, self.dtype, like=self.like)
        return self.array if self._unit() else self.array * self.scale

    def add_into(self, buffer):
        if self.like is not None or type(buffer) not in WRITABLE_TYPES:    # a new array
            if self.array is not None and not self._symbolic() and self.scale == -1:
                return buffer - self.array
            return buffer + self._operand()
        scale, array = self.scale, self.array
        if array is None:
            return np.add(buffer, scale, out=buffer)
        if scale == 1:
            return np.add(buffer, array, out=buffer)
        if scale == -1:
            return np.subtract(buffer, array, out=buffer)
        return np.add(buffer, array * scale, out=buffer)


class Embedded(LazyCotangent):
    """`embed(values, *arrays, index, shape)`, not yet materialised (see LazyCotangent).

    `values` is an array or itself lazy (a `Scaled` cotangent of the indexed part);
    `like` as for `Scaled`: another library's values are padded, laid out like it.
    """
    __slots__ = ("values", "arrays", "index", "shape", "dtype", "like")

    def __init__(self, values, arrays, index, shape, like=None):
        self.values, self.arrays, self.index, self.shape = values, arrays, index, shape
        self.dtype, self.like = values.dtype, like

    def dense(self):
        values = self.values
        if self.like is not None and not self.arrays:
            padded = padded_embedding(dense(values), index_tuple(self.index, ()),
                                      self.shape, self.like)
            if padded is not None:
                return padded
        like = self.like
        if like is None and type(values) is not np.ndarray and not isinstance(values, np.generic):
            like = values
        return self.add_into(zeros(self.shape, values.dtype, like=like))

    def add_into(self, buffer):
        values = self.values
        if self.like is None and not self.arrays and type(buffer) is np.ndarray:
            idx = basic_index(self.index)
            if isinstance(values, LazyCotangent):
                part = buffer[idx]
                if writable_in_place(part):      # a view of buffer
                    values.add_into(part)        # in place, never materialised
                    return buffer
                values = values.dense()          # (one element: x[i] of a vector)
            if type(values) is np.ndarray or isinstance(values, np.generic):
                buffer[idx] += values            # NumPy's own: in place, at any index
                return buffer
        idx = index_tuple(self.index, self.arrays)
        if isinstance(values, LazyCotangent):
            if not self.arrays and writable_in_place(buffer[idx]):   # a view of buffer
                values.add_into(buffer[idx])     # in place, never materialised
                return buffer
            values = values.dense()
        padded = None if self.arrays else padded_embedding(values, idx, self.shape,
                                                           self.like)
        if padded is not None:
            return buffer + padded
        if self.arrays:
            return add_at(buffer, idx, values)    # repeated indices accumulate
        else:
            values, idx = without_new_axes(values, idx, self.shape)     # (Dask's assignment)
            buffer[idx] += values
        return buffer
