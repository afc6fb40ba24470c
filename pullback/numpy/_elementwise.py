"""Elementwise functions with NumPy's signatures: ufunc wrappers generated from the
primitives (NumPy's and scipy.special's), plus composites (clip, round, deg2rad,
float_power, frexp, modf, divmod, nan_to_num, ...)."""
import math

import numpy as np
from ..primitives import scipy_special as sp

from ..core.engine import Tracer
from ..errors import ComplexValueError, unsupported
from ..primitives import REGISTRY
from ..primitives import elementwise as P
from ..primitives import special as S
from ..primitives.structural import stop_gradient
from ._common import refuse
from ._shape import astype, operand

# ufunc -> the primitive that answers for it, from the registry. Every entry becomes a
# function of this namespace named like the ufunc.
UFUNC_PRIMITIVES = {f: prim for prim in REGISTRY.values() for f in prim.numpy_functions
                    if isinstance(f, np.ufunc)}


_SCIPY_COMPLEX_FIX = ("NumPy's function of that name (np.exp2, np.cbrt, ...) where it has one "
                      "for complex values, or the real and imaginary parts (np.real, np.imag)")


def _is_scipy_unary(ufunc):
    return ufunc.nin == 1 and getattr(np, ufunc.__name__, None) is not ufunc


def _ufunc_wrapper(ufunc, prim):
    name = ufunc.__name__
    # A SciPy ufunc of one argument computes in its own loops' dtype (float64 for float16
    # and small integers, none for complex values of exp2), which may not be NumPy's.
    scipy_unary = _is_scipy_unary(ufunc)

    def fn(*args, out=None, **kwargs):
        if out is not None or kwargs:
            refuse(name, out=out, **kwargs)
        if len(args) != ufunc.nin:
            raise TypeError(f"{name} takes {ufunc.nin} argument(s), got {len(args)}")
        if scipy_unary:
            return prim(_as_numpy_computes(args[0], ufunc, _SCIPY_COMPLEX_FIX))
        return prim(*map(operand, args))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Differentiable ufunc `{name}` (same signature as NumPy's or SciPy's)."
    fn.__wrapped__ = prim
    return fn


UFUNCS = {ufunc: _ufunc_wrapper(ufunc, prim) for ufunc, prim in UFUNC_PRIMITIVES.items()}
# SciPy's ufuncs of one argument compute in their own loops' dtypes (float16 in float32 or
# float64) and have no loops for complex values of most: tracers' fast paths (which read
# UFUNC_PRIMITIVES) leave them to their wrappers, which convert, or refuse complex values
# with a ComplexValueError.
for _ufunc in [f for f in UFUNC_PRIMITIVES if _is_scipy_unary(f)]:
    del UFUNC_PRIMITIVES[_ufunc]
globals().update({f.__name__: f for f in UFUNCS.values()})
globals().update({f.__name__: fn for f, fn in UFUNCS.items()        # NumPy's own win the
                  if getattr(np, f.__name__, None) is f})          # names SciPy's share
psi = digamma = UFUNCS[sp.digamma]
abs = absolute            # noqa: F821 (defined by the update above)
true_divide = divide      # noqa: F821
mod = remainder           # noqa: F821


def positive(x):
    """`np.positive`: x itself."""
    return _as_numpy_computes(x, np.positive)


def _as_numpy_computes(x, ufunc, instead="split the values into their real and imaginary "
                                          "parts (np.real, np.imag)"):
    """x in the dtype NumPy's (or SciPy's) `ufunc` computes in (a float where its loops are
    floating point), refused where it has no loop for it (complex values of fabs, booleans
    of positive), with NumPy's TypeError or, for complex values, a ComplexValueError."""
    x = operand(x)
    dtype = np.dtype(getattr(x, "dtype", type(x)))
    try:
        computed = ufunc.resolve_dtypes((dtype, None))[0]
    except TypeError:
        if dtype.kind != "c":
            raise
        library, owner = ("NumPy", "np") if getattr(np, ufunc.__name__, None) is ufunc \
            else ("SciPy", "scipy.special")
        raise ComplexValueError(f"{owner}.{ufunc.__name__} takes real values only, as in "
                                f"{library} (it has no loop for complex values): {instead}.") \
            from None
    return x if computed == dtype else astype(x, computed)


def fabs(x):
    """`np.fabs`: |x| of real values."""
    return absolute(_as_numpy_computes(x, np.fabs, "np.abs gives the modulus"))  # noqa: F821


def deg2rad(x):
    """`np.deg2rad`."""
    return _as_numpy_computes(x, np.deg2rad, "multiply by np.pi / 180") * (math.pi / 180.0)


def rad2deg(x):
    """`np.rad2deg`."""
    return _as_numpy_computes(x, np.rad2deg, "multiply by 180 / np.pi") * (180.0 / math.pi)


radians, degrees = deg2rad, rad2deg


def float_power(x, y):
    """`np.float_power`: power computed in float64 (complex128 for complex values)."""
    x, y = operand(x), operand(y)
    wide = np.complex128 if _is_complex(x) or _is_complex(y) else np.float64
    return P.power(astype(x, wide), astype(y, wide))


def clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    """`np.clip` (bounds also as `min=`, `max=`); derivative 1 strictly inside, 0 outside."""
    refuse("clip", out=out, **kwargs)
    if min is not None or max is not None:
        if a_min is not None or a_max is not None:
            raise ValueError("clip: give the bounds either as a_min/a_max or as min/max")
        a_min, a_max = min, max
    x = operand(a)
    if a_min is not None:
        x = P.maximum(x, operand(a_min))
    if a_max is not None:
        x = P.minimum(x, operand(a_max))
    return x


def round(a, decimals=0, out=None):
    """`np.round` (zero derivative)."""
    refuse("round", out=out)
    return P.around(operand(a), decimals=decimals)


around = round


def where(condition, x=None, y=None):
    """`np.where(condition, x, y)`; the one-argument form is `np.nonzero` (eager only)."""
    if x is None and y is None:
        return np.nonzero(condition)
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    return P.where(operand(condition), operand(x), operand(y))


def _is_complex(x):
    return np.dtype(getattr(x, "dtype", type(x))).kind == "c"


def conjugate(x):
    """`np.conjugate`: the complex conjugate (x itself for real values; booleans become
    int8, as in NumPy)."""
    x = operand(x)
    return P.conjugate(x) if _is_complex(x) else _as_numpy_computes(x, np.conjugate)


def _conjugated(x):
    """The complex conjugate of complex values, real ones as they are (of their own dtype:
    NumPy's vdot, vecdot and correlate of booleans are boolean)."""
    x = operand(x)
    return P.conjugate(x) if _is_complex(x) else x


def real(val):
    """`np.real`: the real part (x itself for real values)."""
    x = operand(val)
    return P.real(x) if _is_complex(x) else x


def imag(val):
    """`np.imag`: the imaginary part (constant zeros for real values)."""
    x = operand(val)
    if _is_complex(x):
        return P.imag(x)
    return np.zeros(np.shape(x) if not isinstance(x, Tracer) else x.shape,
                    getattr(x, "dtype", np.float64))


def angle(z, deg=False):
    """`np.angle`: the argument of complex values (0 or pi for real ones), in radians or
    degrees.

    >>> float(angle(1j))
    1.5707963267948966
    """
    x = operand(z)
    if not _is_complex(x):
        # 0 or pi: piecewise constant (arctan2's derivative at 0 would be NaN), in the
        # dtype NumPy gives it (float16 for int8, float64 for bool ...).
        dtype = np.angle(np.zeros((), getattr(x, "dtype", None) or np.asarray(x).dtype)).dtype
        x = stop_gradient(astype(x, np.result_type(dtype, np.complex64)))
        out = astype(P.arctan2(P.imag(x), P.real(x)), dtype)
    else:
        out = P.arctan2(P.imag(x), P.real(x))
    return out * (180.0 / math.pi) if deg else out


def sign(x):
    """`np.sign`; for complex values z / |z| (0 at 0), which is not constant: its derivative
    is that of the quotient."""
    x = operand(x)
    if not (_is_complex(x) and isinstance(x, Tracer)):
        return P.sign(x)
    size = P.absolute(x)
    return P.where(size == 0, 0.0, x / P.where(size == 0, 1.0, size))


def sinc(x):
    """`np.sinc`: sin(pi x) / (pi x), with exact derivatives of every order at 0 too."""
    return S.sinc(operand(x), order=0)


def exprel(x):
    """`scipy.special.exprel`: (e^x - 1) / x, with exact derivatives of every order at 0 too
    (computed in SciPy's dtype: float64 for float16)."""
    return S.exprel(_as_numpy_computes(x, sp.exprel), order=0)


def frexp(x):
    """`np.frexp`: (mantissa, exponent) with x = mantissa * 2**exponent; the mantissa's
    derivative is 2**-exponent, the integer exponent has none."""
    x = operand(x)
    exponent = P.frexp_exponent(x)
    return P.ldexp(x, -exponent), exponent


def modf(x):
    """`np.modf`: (fractional part, integral part), both with x's sign."""
    x = operand(x)
    finite = P.where(P.isinf(x), 0.0, x)        # inf has fraction 0 (with inf's sign)
    return P.copysign(finite - P.trunc(finite), x), P.trunc(x)


def divmod(x1, x2):
    """`np.divmod`: (x1 // x2, x1 % x2)."""
    x, y = operand(x1), operand(x2)
    return P.floor_divide(x, y), P.remainder(x, y)


def fix(x, out=None):
    """`np.fix`: rounding towards zero (zero derivative)."""
    refuse("fix", out=out)
    return P.trunc(operand(x))


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """`np.nan_to_num`: NaN and infinities replaced (by default by 0 and the largest finite
    numbers); derivative 1 at finite values, 0 at the replaced ones."""
    x = operand(x)
    dtype = np.dtype(getattr(x, "dtype", np.float64))
    if dtype.kind not in "fc":
        return x
    if dtype.kind == "c":       # as NumPy: the real and imaginary parts separately
        def replaced(part):
            return nan_to_num(part, nan=nan, posinf=posinf, neginf=neginf)
        return replaced(P.real(x)) + 1j * replaced(P.imag(x))
    largest = float(np.finfo(dtype).max)
    x = P.where(P.isnan(x), operand(nan), x)
    x = P.where(P.isinf(x) & (x > 0), largest if posinf is None else operand(posinf), x)
    return P.where(P.isinf(x) & (x < 0), -largest if neginf is None else operand(neginf), x)


conj = conjugate

# Ufuncs answered by the composites above (`np.matmul` is added by _contraction).
UFUNCS.update({ufunc: _ufunc_wrapper(ufunc, fn) for ufunc, fn in {
    np.positive: positive, np.fabs: fabs, np.conjugate: conjugate, np.sign: sign,
    np.deg2rad: deg2rad, np.radians: deg2rad, np.rad2deg: rad2deg, np.degrees: rad2deg,
    np.float_power: float_power, np.frexp: frexp, np.modf: modf, np.divmod: divmod,
    sp.exprel: exprel}.items()})
