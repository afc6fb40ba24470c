"""pullback.array_api: the Python Array API standard (2024.12) for traced values.

A tracer's `__array_namespace__()` returns this module, so library code written against the
standard runs on tracers and is differentiated as it runs: SciPy with `SCIPY_ARRAY_API=1`
(`scipy.special.logsumexp`, `softmax`, ...), scikit-learn with
`sklearn.set_config(array_api_dispatch=True)`. Every function is a thin adapter of
pullback.numpy (the standard's names and keyword arguments onto NumPy's), so derivatives,
jit and vmap come from there; on plain NumPy arrays the functions give NumPy's results.

SciPy looks for its special functions' array-API versions in `xp.special` (the
anticipated 'special' extension): that is pullback.scipy.special here.

Arrays live on the CPU (`device="cpu"`). Creation functions return plain NumPy arrays (they
have no derivative). Not covered: `from_dlpack` of tracers and `unique_*` of traced values
(data-dependent shapes: they work on plain arrays). In-place writes `x[i] = v` stay refused
on tracers, except those of array-api-extra's `at` helper, which SciPy and scikit-learn use
for functional updates (`tracer_setitem` in core/array_methods.py says why that is safe).

>>> import numpy as np, pullback
>>> def f(x):
...     xp = x.__array_namespace__()
...     return xp.sum(xp.exp(x))
>>> pullback.grad(f)(np.zeros(2))
array([1., 1.])
"""
import math
import sys
from typing import NamedTuple

import numpy as np

from .. import numpy as pnp
from ..scipy import special
from ..core import array_methods
from ..core.engine import Tracer
from ..errors import unsupported
from . import fft, linalg
from ._common import check_device, dtype_of

__array_api_version__ = "2024.12"

# ------------------------------------------------------------------ constants and dtypes
e, inf, nan, pi, newaxis = math.e, math.inf, math.nan, math.pi, None

bool = np.dtype(np.bool_)          # noqa: A001 (the standard's name)
int8, int16, int32, int64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
uint8, uint16, uint32, uint64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32,
                                                       np.uint64))
float32, float64 = np.dtype(np.float32), np.dtype(np.float64)
complex64, complex128 = np.dtype(np.complex64), np.dtype(np.complex128)
_DTYPES = {"bool": bool, "int8": int8, "int16": int16, "int32": int32, "int64": int64,
           "uint8": uint8, "uint16": uint16, "uint32": uint32, "uint64": uint64,
           "float32": float32, "float64": float64, "complex64": complex64,
           "complex128": complex128}


class _Info:
    """What `__array_namespace_info__()` returns: this namespace's capabilities and dtypes."""

    def capabilities(self):
        return {"boolean indexing": False, "data-dependent shapes": False,
                "max dimensions": 64}

    def default_device(self):
        return "cpu"

    def devices(self):
        return ["cpu"]

    def default_dtypes(self, *, device=None):
        check_device(device)
        return {"real floating": float64, "complex floating": complex128,
                "integral": int64, "indexing": int64}

    def dtypes(self, *, device=None, kind=None):
        check_device(device)
        return {name: dtype for name, dtype in _DTYPES.items()
                if kind is None or np.isdtype(dtype, kind)}


def __array_namespace_info__():
    """The inspection object of the standard (devices, default dtypes, capabilities)."""
    return _Info()


# --------------------------------------------------------------------- creation


def asarray(obj, /, *, dtype=None, device=None, copy=None):
    """`xp.asarray`: tracers (and nested lists of them) stay traced; anything else becomes
    a NumPy array. `copy=True` of a tracer gives a new tracer object with the same value."""
    check_device(device)
    x = pnp.asarray(obj, dtype=dtype)
    if isinstance(x, Tracer):
        return array_methods.fresh_tracer(x) if copy and x is obj else x
    if copy is False and not (isinstance(obj, np.ndarray) and np.shares_memory(x, obj)):
        raise ValueError("asarray(copy=False) would need a copy")
    return np.array(x, copy=True) if copy else x


def arange(start, /, stop=None, step=1, *, dtype=None, device=None):
    check_device(device)
    return np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(
        start, dtype=dtype)


def empty(shape, *, dtype=None, device=None):
    check_device(device)
    return np.empty(shape, dtype=dtype)


def zeros(shape, *, dtype=None, device=None):
    check_device(device)
    return np.zeros(shape, dtype=dtype)


def ones(shape, *, dtype=None, device=None):
    check_device(device)
    return np.ones(shape, dtype=dtype)


def full(shape, fill_value, *, dtype=None, device=None):
    check_device(device)
    if isinstance(fill_value, Tracer):
        return pnp.broadcast_to(astype(fill_value, dtype) if dtype else fill_value, shape)
    return np.full(shape, fill_value, dtype=dtype)


def eye(n_rows, n_cols=None, /, *, k=0, dtype=None, device=None):
    check_device(device)
    return np.eye(n_rows, n_cols, k=k, dtype=dtype)


def linspace(start, stop, /, num, *, dtype=None, device=None, endpoint=True):
    check_device(device)
    return pnp.linspace(start, stop, num, endpoint=endpoint, dtype=dtype)


def _like(function):
    def like(x, /, *, dtype=None, device=None):
        check_device(device)
        return function(x, dtype=dtype)
    like.__name__ = function.__name__
    like.__doc__ = f"`xp.{function.__name__}` (a constant)."
    return like


empty_like, zeros_like, ones_like = (_like(f) for f in (pnp.empty_like, pnp.zeros_like,
                                                         pnp.ones_like))


def full_like(x, /, fill_value, *, dtype=None, device=None):
    check_device(device)
    return pnp.full_like(x, fill_value, dtype=dtype)


def meshgrid(*arrays, indexing="xy"):
    return tuple(pnp.meshgrid(*arrays, indexing=indexing))


def tril(x, /, *, k=0):
    return pnp.tril(x, k)


def triu(x, /, *, k=0):
    return pnp.triu(x, k)


def from_dlpack(x, /, *, device=None, copy=None):
    check_device(device)
    if isinstance(x, Tracer):
        raise unsupported("from_dlpack", "a traced value has no buffer to share; use asarray")
    return np.from_dlpack(x, copy=copy)


# ------------------------------------------------------------------- data types


def astype(x, dtype, /, *, copy=True, device=None):
    check_device(device)
    result = pnp.astype(x, dtype)
    if not copy or result is not x:
        return result
    return array_methods.fresh_tracer(x) if isinstance(x, Tracer) else np.array(x, copy=True)


def can_cast(from_, to, /):
    return np.can_cast(dtype_of(from_), to)


def finfo(type, /):      # noqa: A002 (the standard's name)
    return np.finfo(dtype_of(type))


def iinfo(type, /):      # noqa: A002
    return np.iinfo(dtype_of(type))


def isdtype(dtype, kind):
    """Whether `dtype` is of `kind` (a dtype, a kind name such as "real floating", or a tuple)."""
    return np.isdtype(np.dtype(dtype), kind)


def result_type(*arrays_and_dtypes):
    return np.result_type(*(x if isinstance(x, (int, float, complex)) else dtype_of(x)
                             for x in arrays_and_dtypes))


# ------------------------------------------------------------------ elementwise
# The standard's name -> NumPy's, where they differ.
_RENAMED = {"acos": "arccos", "acosh": "arccosh", "asin": "arcsin", "asinh": "arcsinh",
            "atan": "arctan", "atan2": "arctan2", "atanh": "arctanh", "pow": "power",
            "bitwise_invert": "invert", "bitwise_left_shift": "left_shift",
            "bitwise_right_shift": "right_shift"}
_ELEMENTWISE = """abs acos acosh add asin asinh atan atan2 atanh bitwise_and bitwise_invert
bitwise_left_shift bitwise_or bitwise_right_shift bitwise_xor conj copysign cos cosh divide
equal exp expm1 floor_divide greater greater_equal hypot imag isfinite isinf isnan less
less_equal log log1p log2 log10 logaddexp logical_and logical_not logical_or logical_xor
maximum minimum multiply negative nextafter not_equal positive pow real reciprocal remainder
sign signbit sin sinh square sqrt subtract tan tanh""".split()


def _elementwise(name):
    function = getattr(pnp, _RENAMED.get(name, name))

    def elementwise(*args):
        return function(*args)
    elementwise.__name__ = name
    elementwise.__doc__ = f"`xp.{name}`: `pullback.numpy.{function.__name__}`."
    return elementwise


globals().update({name: _elementwise(name) for name in _ELEMENTWISE})


def _rounding(name):
    function = getattr(pnp, name)

    def rounding(x, /):
        # The standard keeps integers as they are (NumPy < 2.3 would make them float).
        return x if np.isdtype(dtype_of(x), ("integral", "bool")) else function(x)
    rounding.__name__ = name
    return rounding


ceil, floor, trunc = (_rounding(name) for name in ("ceil", "floor", "trunc"))


def round(x, /):         # noqa: A001
    return x if np.isdtype(dtype_of(x), "integral") else pnp.round(x)


def clip(x, /, min=None, max=None):     # noqa: A002
    if min is None and max is None:
        return x
    return pnp.astype(pnp.clip(x, min, max), dtype_of(x))


# --------------------------------------------------------------- indexing, products


def take(x, indices, /, *, axis=None):
    return pnp.take(x, indices, axis=axis)


def take_along_axis(x, indices, /, *, axis=-1):
    return pnp.take_along_axis(x, indices, axis)


def matmul(x1, x2, /):
    return pnp.matmul(x1, x2)


def matrix_transpose(x, /):
    return pnp.swapaxes(x, -1, -2)


def tensordot(x1, x2, /, *, axes=2):
    return pnp.tensordot(x1, x2, axes=axes)


def vecdot(x1, x2, /, *, axis=-1):
    return pnp.vecdot(x1, x2, axis=axis)


# ----------------------------------------------------------------- manipulation


def broadcast_arrays(*arrays):
    return tuple(pnp.broadcast_arrays(*arrays))


def broadcast_to(x, /, shape):
    return pnp.broadcast_to(x, shape)


def concat(arrays, /, *, axis=0):
    return pnp.concatenate(arrays, axis=axis)


def expand_dims(x, /, axis=0):
    return pnp.expand_dims(x, axis)


def flip(x, /, *, axis=None):
    return pnp.flip(x, axis)


def moveaxis(x, source, destination, /):
    return pnp.moveaxis(x, source, destination)


def permute_dims(x, /, axes):
    return pnp.transpose(x, axes)


def repeat(x, repeats, /, *, axis=None):
    return pnp.repeat(x, repeats, axis)


def reshape(x, /, shape, *, copy=None):
    if copy is False and math.prod(shape) != math.prod(pnp.shape(x)):
        raise ValueError("reshape(copy=False): the sizes differ")
    return pnp.reshape(x, shape)


def roll(x, /, shift, *, axis=None):
    return pnp.roll(x, shift, axis)


def squeeze(x, /, axis):
    return pnp.squeeze(x, axis)


def stack(arrays, /, *, axis=0):
    return pnp.stack(arrays, axis=axis)


def tile(x, repetitions, /):
    return pnp.tile(x, repetitions)


def unstack(x, /, *, axis=0):
    return tuple(pnp.unstack(x, axis=axis))


# ------------------------------------------------------------- searching, sorting


def argmax(x, /, *, axis=None, keepdims=False):
    return pnp.argmax(x, axis=axis, keepdims=keepdims)


def argmin(x, /, *, axis=None, keepdims=False):
    return pnp.argmin(x, axis=axis, keepdims=keepdims)


def count_nonzero(x, /, *, axis=None, keepdims=False):
    return pnp.sum(pnp.not_equal(x, 0), axis=axis, keepdims=keepdims)


def nonzero(x, /):
    return tuple(pnp.nonzero(x))


def searchsorted(x1, x2, /, *, side="left", sorter=None):
    return pnp.searchsorted(x1, x2, side=side, sorter=sorter)


def where(condition, x1, x2, /):
    return pnp.where(condition, x1, x2)


def argsort(x, /, *, axis=-1, descending=False, stable=True):
    if not descending:
        return pnp.argsort(x, axis=axis, kind="stable")
    # Largest first, ties in their original order: sort the reversed array, then reverse.
    n = pnp.shape(x)[axis]
    return (n - 1) - pnp.flip(pnp.argsort(pnp.flip(x, axis), axis=axis, kind="stable"), axis)


def sort(x, /, *, axis=-1, descending=False, stable=True):
    result = pnp.sort(x, axis=axis, kind="stable")
    return pnp.flip(result, axis) if descending else result


# ------------------------------------------------------------------ statistics


def _reduction(name):
    function = getattr(pnp, name)

    def reduction(x, /, *, axis=None, keepdims=False):
        return function(x, axis=axis, keepdims=keepdims)
    reduction.__name__ = name
    reduction.__doc__ = f"`xp.{name}`: `pullback.numpy.{name}`."
    return reduction


max, min, mean, all, any = (_reduction(name) for name in ("max", "min", "mean", "all", "any"))


def sum(x, /, *, axis=None, dtype=None, keepdims=False):      # noqa: A001
    return pnp.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)


def prod(x, /, *, axis=None, dtype=None, keepdims=False):
    return pnp.prod(x, axis=axis, dtype=dtype, keepdims=keepdims)


def std(x, /, *, axis=None, correction=0.0, keepdims=False):
    return pnp.std(x, axis=axis, ddof=correction, keepdims=keepdims)


def var(x, /, *, axis=None, correction=0.0, keepdims=False):
    return pnp.var(x, axis=axis, ddof=correction, keepdims=keepdims)


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):
    return pnp.cumulative_sum(x, axis=axis, dtype=dtype, include_initial=include_initial)


def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial=False):
    return pnp.cumulative_prod(x, axis=axis, dtype=dtype, include_initial=include_initial)


def diff(x, /, *, axis=-1, n=1, prepend=None, append=None):
    options = {k: v for k, v in (("prepend", prepend), ("append", append)) if v is not None}
    return pnp.diff(x, n=n, axis=axis, **options)


# ------------------------------------------------------------------------ sets


class UniqueAllResult(NamedTuple):
    values: object
    indices: object
    inverse_indices: object
    counts: object


class UniqueCountsResult(NamedTuple):
    values: object
    counts: object


class UniqueInverseResult(NamedTuple):
    values: object
    inverse_indices: object


def _unique(x, name):
    if isinstance(x, Tracer):
        raise unsupported(f"unique_{name}", "of traced values: the number of unique values "
                          "depends on the values (a data-dependent shape)")
    return getattr(np, f"unique_{name}")(x)


def unique_all(x, /):
    return UniqueAllResult(*_unique(x, "all"))


def unique_counts(x, /):
    return UniqueCountsResult(*_unique(x, "counts"))


def unique_inverse(x, /):
    return UniqueInverseResult(*_unique(x, "inverse"))


def unique_values(x, /):
    return np.unique(x) if not isinstance(x, Tracer) else _unique(x, "values")


array_methods.use_array_namespace(sys.modules[__name__])
