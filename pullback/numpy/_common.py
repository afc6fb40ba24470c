"""Helpers shared by the numpy namespace: argument normalisation in NumPy's terms."""
import numbers

import numpy as np

from ..core.engine import Tracer
from ..errors import InPlaceMutationError, unsupported

# What primitives take as it is, besides plain ndarrays (`type(x) is np.ndarray`).
SCALARS = (int, float, complex, bool, np.generic, Tracer)


def ndim(a) -> int:
    """`np.ndim`."""
    s = getattr(a, "shape", None)
    return len(s) if s is not None else np.ndim(a)


def normalize_axis(axis, n: int) -> int:
    """One axis in [0, n), from NumPy's possibly negative form."""
    if isinstance(axis, Tracer) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -n <= axis < n:
        raise np.exceptions.AxisError(axis, n)
    return int(axis) % n if n else 0


def normalize_axes(axis, n: int) -> tuple:
    """A sorted tuple of axes in [0, n); `None` means all of them."""
    if axis is None:
        return tuple(range(n))
    if isinstance(axis, (tuple, list)):
        axes = tuple(sorted(normalize_axis(a, n) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in {axis!r}")
        return axes
    return (normalize_axis(axis, n),)


def refuse_out(name, out):
    if out is not None:
        raise InPlaceMutationError(
            f"`{name}(..., out=...)` writes into an existing array in place, which pullback "
            "cannot differentiate. Drop `out=` and use the returned array.")


def refuse(name, **given):
    """Reject NumPy keyword options that pullback does not implement (when set)."""
    for key, value in given.items():
        if key == "out":
            refuse_out(name, value)
        elif value is not None and value is not np._NoValue:
            raise unsupported(f"{name}", f"the option {key}={value!r} is not supported")
