"""Helpers shared by the numpy namespace: argument normalisation in NumPy's terms, and
the fast path that hands calls with nothing traced to NumPy itself."""
import functools
import inspect
import math
import numbers

import numpy as np

from ..core.engine import Tracer
from ..core.numbers import complex_error
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


# Argument types that hold no traced value: numbers, plain arrays, dtypes and the like.
# (Subclasses of ndarray are not among them: masked arrays and np.matrix are refused.)
UNTRACED = frozenset({np.ndarray, bool, int, float, complex, str, type(None), type(Ellipsis),
                      slice, type, *np.sctypeDict.values(),
                      *(type(np.dtype(t)) for t in set(np.sctypeDict.values()))})
_UFUNC_KEYWORDS = frozenset({"out", "where", "casting", "order", "dtype", "subok", "signature"})


def refuse_complex_values(name, *values):
    """Raise `ComplexValueError` if a value is complex: `np.<name>` is written for real
    values, and its result for complex ones would differ from NumPy's."""
    for v in values:
        if v is not None and np.dtype(getattr(v, "dtype", type(v))).kind == "c":
            raise complex_error(f"np.{name} of complex values")


def untraced(values) -> bool:
    """Whether `values` (and the lists and tuples among them) hold only `UNTRACED` ones."""
    for a in values:
        kind = type(a)
        if kind not in UNTRACED and not ((kind is list or kind is tuple) and untraced(a)):
            return False
    return True


def numpy_when_untraced(numpy_function, fn):
    """`fn`, which calls `numpy_function` itself (no pullback layer: its speed) when no
    argument is traced and NumPy takes the call as it is given (as many positional
    arguments, only its keywords); otherwise `fn` answers.

    >>> import numpy as np
    >>> exp = numpy_when_untraced(np.exp, lambda x: "pullback's")
    >>> exp([0.0, 0.0]), exp(range(2))
    (array([1., 1.]), "pullback's")
    """
    if isinstance(numpy_function, np.ufunc):
        positional, keywords = numpy_function.nin, _UFUNC_KEYWORDS
    else:
        try:
            parameters = inspect.signature(numpy_function).parameters.values()
        except (TypeError, ValueError):     # no signature to check calls against: no fast path
            return fn
        kinds = [p.kind for p in parameters]
        positional = math.inf if inspect.Parameter.VAR_POSITIONAL in kinds else sum(
            k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for k in kinds)
        keywords = frozenset(p.name for p in parameters if p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if len(args) <= positional:
            for a in args:      # `untraced(args)`, its first two levels inlined: the hot path
                kind = type(a)
                if kind in UNTRACED:
                    continue
                if kind is list or kind is tuple:
                    for b in a:
                        if type(b) not in UNTRACED and not untraced((b,)):
                            break
                    else:
                        continue
                break
            else:
                if not kwargs:
                    return numpy_function(*args)
                if kwargs.keys() <= keywords and untraced(kwargs.values()):
                    return numpy_function(*args, **kwargs)
        return fn(*args, **kwargs)
    return call


