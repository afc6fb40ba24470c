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

from ..core import array_api as _array_api
from . import linalg
from ._common import SCALARS as OPERAND_TYPES, ndim
from ._contraction import dot, einsum, inner, kron, matmul, outer, tensordot, trace, vdot
from ._elementwise import *  # noqa: F401,F403  (ufunc wrappers, generated)
from ._elementwise import (UFUNC_PRIMITIVES, UFUNCS, abs, apply_ufunc, around, astype, clip, conj, conjugate,
                           deg2rad, degrees, digamma, fabs, float_power, imag, mod, positive, psi,
                           rad2deg, radians, real, round, true_divide, where)
from ._reductions import (all, amax, amin, any, argmax, argmin, average, cumprod, cumsum,
                          logsumexp, max, mean, min, prod, ptp, std, sum, var)
from ._shape import (array, array_split, argsort, asarray, at, atleast_1d, atleast_2d,
                     atleast_3d, broadcast_arrays, broadcast_to, column_stack, concatenate, copy,
                     diag, diagonal, empty_like, expand_dims, flip, fliplr, flipud, full_like,
                     getitem, hstack, moveaxis, nonzero, ones_like, pad, ravel, repeat, reshape, roll,
                     shape, size, sort, split, squeeze, stack, swapaxes, take, take_along_axis,
                     tile, transpose, tril, triu, vstack, zeros_like)
from ..primitives.structural import stop_gradient


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
    # NB: scipy.special.logsumexp converts its input with np.asarray (no dispatch protocol
    # reaches it), so on a traced value it raises ArrayConversionError: use this one.
    return table


DISPATCH = _dispatch_table()
_array_api.use_namespace(__import__(__name__, fromlist=["*"]))


def __getattr__(name):
    # NumPy's own constants, dtypes and creation functions (pi, float32, arange, eye, ...).
    try:
        return getattr(_np, name)
    except AttributeError:
        raise AttributeError(f"module 'pullback.numpy' has no attribute {name!r}") from None
