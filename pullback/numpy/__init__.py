"""pullback.numpy: NumPy's functions, differentiable.

Use it explicitly (`import pullback.numpy as pnp`) or not at all: plain `numpy`
calls on traced values are routed here through NumPy's `__array_function__` and
`__array_ufunc__` protocols. Names that pullback does not redefine (constants such
as `pi` or `float32`, creation functions such as `arange` or `eye`) are NumPy's own.

>>> import numpy as np, pullback
>>> pullback.grad(lambda x: np.sum(np.sin(x) ** 2))(np.zeros(2))
array([0., 0.])
"""
import numpy as _np

from ..core import array_methods as _array_methods
from ..errors import InPlaceMutationError, unsupported
from ..primitives.structural import getitem as GETITEM_PRIMITIVE, stop_gradient
from ..primitives.structural import reshape as RESHAPE_PRIMITIVE
from ..primitives.contraction import matmul as MATMUL_PRIMITIVE
from . import fft, linalg
from ._building import (append, apply_along_axis, block, choose, compress, delete, diagflat,
                        dsplit, dstack, extract, geomspace, hsplit, insert, linspace, logspace,
                        meshgrid, pad, piecewise, resize, rollaxis, rot90, select, unstack,
                        vsplit)
from ._calculus import (convolve, correlate, cross, cumulative_prod, cumulative_sum, diff,
                        ediff1d, gradient, interp, trapezoid, unwrap)
from ._common import SCALARS as OPERAND_TYPES, ndim, numpy_when_untraced, refuse_out
from ._contraction import (dot, einsum, inner, kron, matmul, matrix_transpose, matvec, outer,
                           tensordot, trace, vdot, vecdot, vecmat)
from ._elementwise import *  # noqa: F401,F403  (ufunc wrappers, generated)
from ._elementwise import (UFUNC_PRIMITIVES, UFUNCS, abs, around, clip, conj, conjugate,
                           deg2rad, degrees, digamma, fabs, float_power, imag, mod, positive, psi,
                           rad2deg, radians, real, round, true_divide, where)
from ._polynomial import (polyadd, polyder, polyfit, polyint, polymul, polysub, polyval, roots,
                          vander)
from ._reductions import (all, amax, amin, any, argmax, argmin, average, cumprod, cumsum,
                          logsumexp, max, mean, min, prod, ptp, std, sum, var)
from ._statistics import (bincount, corrcoef, cov, median, nancumprod, nancumsum, nanmax,
                          nanmean, nanmedian, nanmin, nanpercentile, nanprod, nanquantile,
                          nanstd, nansum, nanvar, percentile, quantile)
from ._shape import (argpartition, array, array_split, argsort, asarray, astype, at, atleast_1d,
                     atleast_2d, atleast_3d, broadcast_arrays, broadcast_to, column_stack,
                     concatenate, copy, diag, diagonal, empty_like, expand_dims, flip, fliplr,
                     flipud, full_like, getitem, hstack, iscomplexobj, isrealobj, moveaxis,
                     nonzero, ones_like, operand, partition, ravel, repeat, reshape,
                     result_type, roll, searchsorted, shape, size, sort,
                     split, squeeze, stack, swapaxes, take, take_along_axis, tile, transpose,
                     tril, triu, vstack, zeros_like)


# ------------------------------------------------------------- ufunc methods

_REDUCE = {_np.add: sum, _np.multiply: prod, _np.maximum: max, _np.minimum: min}
_ACCUMULATE = {_np.add: cumsum, _np.multiply: cumprod}


def apply_ufunc(ufunc, method, inputs, kwargs):
    """Answer NumPy's `__array_ufunc__` protocol for tracers (NumPy passes `out` only
    when it is given)."""
    if method == "__call__" and "out" not in kwargs:
        fn = UFUNCS.get(ufunc)
        if fn is None:
            raise unsupported(f"the ufunc {ufunc.__name__}")
        return fn(*inputs, **kwargs)
    name = f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__
    refuse_out(f"np.{name}", kwargs.get("out"))
    if method == "at":
        raise InPlaceMutationError(
            f"`np.{name}` writes into an array in place, which pullback cannot differentiate. "
            "Use the functional update `pullback.numpy.at(x)[index].add(v)` (or `.set`, "
            "`.multiply`, `.min`, `.max`).")
    if method == "reduce" and ufunc in _REDUCE:
        kwargs.setdefault("axis", 0)
        return _REDUCE[ufunc](*inputs, **kwargs)
    if method == "accumulate" and ufunc in _ACCUMULATE:
        kwargs.setdefault("axis", 0)
        return _ACCUMULATE[ufunc](*inputs, **kwargs)
    if method == "outer" and ufunc in UFUNCS and not kwargs:
        a, b = map(operand, inputs)
        a = reshape(a, a.shape + (1,) * len(getattr(b, "shape", ())))
        return UFUNCS[ufunc](a, b)
    raise unsupported(f"the ufunc method {name}")



def _dispatch_table():
    """NumPy/SciPy function -> its pullback.numpy implementation (for __array_function__)."""
    table = {}
    here = globals()
    for name, fn in list(here.items()):
        original = getattr(_np, name, None)
        if callable(fn) and original is not None and not isinstance(original, _np.ufunc) \
                and not isinstance(original, type) and callable(original):
            table[original] = fn
    for name in linalg.__all__:
        table[getattr(_np.linalg, name)] = getattr(linalg, name)
    for name in fft.__all__:
        table[getattr(_np.fft, name)] = getattr(fft, name)
    # NB: scipy.special.logsumexp converts its input with np.asarray (no dispatch protocol
    # reaches it), so on a traced value it raises ArrayConversionError: use this one.
    return table


def _numpy_when_untraced():
    """Each function with a NumPy (or scipy.special ufunc) counterpart calls it directly
    when nothing is traced: plain NumPy code through this namespace runs at NumPy's speed.
    (DISPATCH, the protocols and tracer methods keep the implementations: returned, by
    name.)"""
    implementations = {}
    scipy_ufuncs = {}
    for ufunc, fn in UFUNCS.items():
        if not hasattr(_np, ufunc.__name__):       # the wrapper, and a composite it wraps
            scipy_ufuncs[fn] = scipy_ufuncs[fn.__wrapped__] = ufunc
    here = globals()
    for name, fn in list(here.items()):
        if name.startswith("_") or not callable(fn) or isinstance(fn, type) \
                or not getattr(fn, "__module__", "").startswith(__name__):
            continue
        original = getattr(_np, name, None) or scipy_ufuncs.get(fn)
        if callable(original) and not isinstance(original, type):
            here[name] = numpy_when_untraced(original, fn)
            implementations[name] = fn
    return implementations


DISPATCH = _dispatch_table()
_array_methods.use_namespace(__import__(__name__, fromlist=["*"]), _numpy_when_untraced())


def __getattr__(name):
    # NumPy's own constants, dtypes and creation functions (pi, float32, arange, eye, ...).
    try:
        return getattr(_np, name)
    except AttributeError:
        raise AttributeError(f"module 'pullback.numpy' has no attribute {name!r}") from None
