"""Array helpers for every layer, and the one place where the library creates arrays.

`shape_of`, `dtype_of` and `moveaxis` work on arrays, tracers, abstract values and
Python scalars alike. Every array a rule, transformation or operator creates (zeros,
ones, identity matrices, triangles, masks, index ranges, basis vectors) comes from
the functions below, each given an operand it is made `like`: today they all make
NumPy arrays, and another array library (CuPy, Dask) becomes a change of this module
alone. Abstract probes that only compute shapes are NumPy's, whatever the operands.
"""
import numpy as np


def shape_of(x) -> tuple:
    """Shape of an array, tracer, abstract value or Python scalar."""
    return getattr(x, "shape", ())


def dtype_of(x):
    """dtype of an array, tracer or abstract value; None for a (weakly typed) Python scalar."""
    return getattr(x, "dtype", None)


def moveaxis(x, source: int, destination: int):
    """x with axis `source` moved to `destination` (array methods: arrays or tracers)."""
    if source == destination:
        return x
    order = [i for i in range(len(x.shape)) if i != source]
    order.insert(destination, source)
    return x.transpose(order)


# ------------------------------------------------------------- capabilities
# What fast paths need of an array, asked here rather than by testing for NumPy's type.

# The types of the arrays whose memory the library may write into (sums of cotangents
# accumulated in place): hot paths test `type(x) in WRITABLE_TYPES` inline.
WRITABLE_TYPES = frozenset({np.ndarray})


def writable_in_place(x) -> bool:
    """Whether x is an array whose memory the library may write into."""
    return type(x) in WRITABLE_TYPES


def runs_generated_code(x) -> bool:
    """Whether x is an array the generated NumPy code of `jit` runs on as it is."""
    return type(x) is np.ndarray


# ------------------------------------------------------------------ creation
# `like` names the operand whose array library the result belongs to (NumPy, for now).

def zeros(shape, dtype, like=None):
    return np.zeros(shape, dtype)


def empty(shape, dtype, like=None):
    return np.empty(shape, dtype)


def ones(shape, dtype, like=None):
    return np.ones(shape, dtype)


def full(shape, value, dtype, like=None):
    return np.full(shape, value, dtype)


def eye(n: int, dtype, like=None, m: int | None = None):
    return np.eye(n, m, dtype=dtype)


def tri(n: int, m: int | None = None, k: int = 0, dtype=bool, like=None):
    """Ones at and below the k-th diagonal (np.tri)."""
    return np.tri(n, m, k, dtype=dtype)


def arange(n: int, like=None):
    return np.arange(n)


def zeros_like_value(x):
    """Zeros of x's shape and dtype (a constant: never traced)."""
    return zeros(shape_of(x), dtype_of(x), like=x)


def broadcast_scalar(value, shape, dtype, like=None):
    """`value` as a read-only array of `shape` and `dtype` without a pass over memory."""
    return np.broadcast_to(np.asarray(value, dtype), shape)
