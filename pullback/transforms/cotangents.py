"""Reverse mode's lazy cotangents: concrete cotangents kept symbolic instead of materialised.

Two kinds, for the two transposes primitives declare (`Primitive.transpose_kind`):

- `Scaled`: a number times an array, or one number everywhere ("uniform": the transpose
  of a sum). Elementwise pullbacks (`Primitive.scaled_cotangents`) multiply it by their
  derivatives without a pass over the data where IEEE arithmetic allows;
- `Embedded`: values at an index of an array of zeros ("embedding": the transpose of
  indexing), added into the sweep's accumulator in place.

The sweep (reverse.py) adds a lazy cotangent into a buffer it owns (`add_into`) and
materialises it (`dense()`, always a fresh array) for a pullback that does not take it.
They are made from concrete arrays only, never from tracers.
"""
import numpy as np

from ..core.arrays import (WRITABLE_TYPES, broadcast_scalar, empty, padded_embedding,
                           writable_in_place, zeros)
from ..core.engine import Tracer
from ..core.indexing import index_tuple
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


def lazy_pullback(primitive, pullback, values, params):
    """`pullback` of a primitive with a declared `transpose_kind`, returning the lazy
    cotangent of its transpose where the cotangent is concrete."""
    x = values[0]
    if primitive.transpose_kind == "uniform":
        def uniform_pullback(ct):
            if isinstance(ct, (np.ndarray, np.generic)) and ct.size == 1:
                return (Scaled(ct.item(), None, x.shape, ct.dtype),)
            return pullback(dense(ct))
        return uniform_pullback
    arrays, index = values[1:], params["index"]              # "embedding"
    if arrays and any(isinstance(a, Tracer) for a in arrays):
        return lambda ct: pullback(dense(ct))
    rest = (ZERO,) * len(arrays)

    def embedding_pullback(ct):
        if type(ct) in WRITABLE_TYPES or isinstance(ct, LazyCotangent):
            return (Embedded(ct, arrays, index, x.shape),) + rest
        return pullback(ct)
    return embedding_pullback


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


_FLOAT64 = np.dtype(np.float64)


class Scaled(LazyCotangent):
    """`scale * array`, or the value `scale` everywhere when `array` is None (the transpose of a sum).

    The elementwise pullbacks multiply it by their derivatives without a pass over the
    data where IEEE arithmetic allows, so the result is what the unfolded program gives
    (Inf and NaN included), to rounding. A uniform value is a scalar of `dtype`, which a
    Python number multiplies exactly as it would multiply every element. An array's
    pending scale folds a Python number in when `may_fold` allows and the product is a
    `normal_factor`, else the scale is applied first. An array of the same shape and dtype
    multiplies `array` (one pass, none if the cotangent is uniform) once nothing is
    pending. Anything else materialises it first (exact NumPy semantics).
    """
    __slots__ = ("scale", "array", "shape", "dtype")
    __array_ufunc__ = None               # never silently converted by NumPy

    def __init__(self, scale, array, shape, dtype):
        if array is None and dtype != _FLOAT64:   # (a Python float is a float64 already)
            scale = dtype.type(scale)
        self.scale, self.array, self.shape, self.dtype = scale, array, shape, dtype

    def __mul__(self, other):
        if type(other) in (int, float):                  # weakly typed: keeps the dtype
            if self.array is None:
                return Scaled(self.scale * other, None, self.shape, self.dtype)
            scale = (complex if self.dtype.kind == "c" else float)(self.scale) * other
            if may_fold(self.scale, other) and normal_factor(scale, self.dtype) is not None:
                return Scaled(scale, self.array, self.shape, self.dtype)
            return Scaled(other, self.dense(), self.shape, self.dtype)
        if type(other) in WRITABLE_TYPES and other.shape == self.shape \
                and other.dtype == self.dtype and (self.array is None or self.scale == 1):
            array = other if self.array is None else self.array * other
            return Scaled(self.scale, array, self.shape, self.dtype)
        return self._operand() * other

    def __neg__(self):
        return Scaled(-self.scale, self.array, self.shape, self.dtype)

    def dense(self):
        out = empty(self.shape, self.dtype, like=self.array)     # an array even when 0-d
        if self.array is None:
            out.fill(self.scale)
            return out
        return np.multiply(self.array, self.scale, out=out)

    def _operand(self):
        # What it stands for, as an operand of arithmetic that makes a new array: shared
        # and read-only where that saves a pass (a staged program keeps a view, not a copy).
        if self.array is None:
            return broadcast_scalar(self.scale, self.shape, self.dtype)
        return self.array if self.scale == 1 else self.array * self.scale

    def add_into(self, buffer):
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

    `values` is an array or itself lazy (a `Scaled` cotangent of the indexed part).
    """
    __slots__ = ("values", "arrays", "index", "shape")

    def __init__(self, values, arrays, index, shape):
        self.values, self.arrays, self.index, self.shape = values, arrays, index, shape

    def dense(self):
        return self.add_into(zeros(self.shape, self.values.dtype, like=self.values))

    def add_into(self, buffer):
        idx = index_tuple(self.index, self.arrays)
        values = self.values
        if isinstance(values, LazyCotangent):
            if not self.arrays and writable_in_place(buffer[idx]):   # a view of buffer
                values.add_into(buffer[idx])     # in place, never materialised
                return buffer
            values = values.dense()
        padded = None if self.arrays else padded_embedding(values, idx, self.shape)
        if padded is not None:
            return buffer + padded
        if self.arrays:
            np.add.at(buffer, idx, values)       # repeated indices accumulate
        else:
            buffer[idx] += values
        return buffer
