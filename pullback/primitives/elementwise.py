"""Elementwise primitives: one line per primitive, the ufunc it computes and its partial
derivatives beside it.

Partial derivatives are data (see `families.elementwise`): plain numbers, or functions
whose parameter names say what they read -- `x` and `y` (the inputs), `out` (the output)
-- written with primitives, so that they differentiate again. A function may return a
number or a pair `(number, array)` for their product. Constants are Python floats, which
NumPy treats as weakly typed: float32 stays float32.
"""
import cmath
import math
import re

import numpy as np
from . import scipy_special as sp

from ..core.arrays import FLOAT64, REAL_SCALARS, dtype_of, shape_of, zero_d
from ..core.primitive import ZERO, Primitive, ShapeDtype
from ..transforms.cotangents import LARGE_TEMPORARY
from .families import (array_dtype, batch_elementwise, call_emitter, constant, elementwise,
                       elementwise_shape, float_ufunc_scalar, for_reading, linear,
                       real_ufunc_scalar, ufunc_emitter, ufunc_scalar, unbroadcast, unfused,
                       vectorised_scalar)

POSITIVE, UNIT, OPEN_UNIT = (0.2, 3.0), (-0.9, 0.9), (0.05, 0.95)
REALS = (-2.0, 2.0)
BINARY, LOGICAL = (REALS, REALS), ("bool", "bool")
LN2, LN10 = math.log(2.0), math.log(10.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def unary(name, ufunc, partial, domain=REALS, **facts):
    return elementwise(name, ufunc, partial, domain=(domain,), **facts)


def analytic(name, ufunc, partial, domain=REALS, **facts):
    """A holomorphic unary primitive: its partial derivative holds for complex values too."""
    return unary(name, ufunc, partial, domain, complex_rules=True, **facts)


# ----------------------------------------------------------------- unary math

negative = analytic("negative", np.negative, -1, operator="-{}")
absolute = unary("absolute", np.absolute, lambda x: _absolute_partial(x), operator="abs({})",
                 complex_rules=True)
sqrt = analytic("sqrt", np.sqrt, lambda out: 0.5 / out, POSITIVE)
cbrt = unary("cbrt", np.cbrt, lambda out: 1.0 / (3.0 * square(out)), POSITIVE,
             aliases=(sp.cbrt,))
square = analytic("square", np.square, lambda x: (2.0, x))
reciprocal = analytic("reciprocal", np.reciprocal, lambda out: -square(out), POSITIVE,
                      emit_scalar=float_ufunc_scalar(np.reciprocal))
# Numba's complex exp and exp2 are NaN + NaN j where e**Re(z) overflows (NumPy's, the C
# library's: inf + inf j, or finite and infinite parts), its complex expm1 is exp(z) - 1
# (no digits left for small z), its complex tanh NaN for a large real part, its complex
# power NaN at base 0, and its complex trigonometric and hyperbolic functions and their
# inverses follow other rules than NumPy's at infinite and NaN parts (arccosh(inf j) =
# inf + nan j, NumPy's inf + pi/2 j; arctan(1 + nan j) = pi/2 + nan j, NumPy's nan + nan
# j): complex values stay NumPy's.
exp = analytic("exp", np.exp, lambda out: out,
              emit_scalar=vectorised_scalar(np.exp, real_ufunc_scalar(np.exp)))
exp2 = analytic("exp2", np.exp2, lambda out: (LN2, out), aliases=(sp.exp2,),
                emit_scalar=real_ufunc_scalar(np.exp2))
# (exp(x), not out + 1: expm1 rounds to -1 for x << 0, 0 for 4e-18 at x = -40)
expm1 = analytic("expm1", np.expm1, lambda x: exp(x), aliases=(sp.expm1,),
                 emit_scalar=vectorised_scalar(np.expm1, real_ufunc_scalar(np.expm1)))


def _log_scalar(ufunc, scale):
    """emit_scalar rule of log, log2 or log10: NumPy's ufunc on real operands; on complex
    ones ir/vector_math's `complex_log` (NumPy's, the C library's, values: Numba's complex
    log is log(abs(z)), no digits of the real part left near |z| = 1) times `scale`, the
    way NumPy scales it for log2 and log10, each part separately."""
    real = ufunc_scalar(ufunc)

    def emit_scalar(args, dtypes):
        if dtypes[0].kind != "c":
            return real(args, dtypes)
        z = args[0] if dtypes[0] == np.complex128 else f"np.complex128({args[0]})"
        return f"vm.complex_log({z}, {scale!r})"
    return emit_scalar


# NumPy's log2(e) and log10(e) (NPY_LOG2E, NPY_LOG10E), as it scales a complex logarithm
LOG2E, LOG10E = 1.4426950408889634, 0.4342944819032518
log = analytic("log", np.log, lambda x: reciprocal(x), POSITIVE,
              emit_scalar=vectorised_scalar(np.log, _log_scalar(np.log, 1.0)))
log2 = analytic("log2", np.log2, lambda x: 1.0 / (x * LN2), POSITIVE,
                emit_scalar=_log_scalar(np.log2, LOG2E))
log10 = analytic("log10", np.log10, lambda x: 1.0 / (x * LN10), POSITIVE,
                 emit_scalar=_log_scalar(np.log10, LOG10E))
log1p = analytic("log1p", np.log1p, lambda x: reciprocal(x + 1.0), POSITIVE,
                 aliases=(sp.log1p,),
                 emit_scalar=vectorised_scalar(np.log1p, ufunc_scalar(np.log1p)))
sin = analytic("sin", np.sin, lambda x: cos(x),
               emit_scalar=real_ufunc_scalar(np.sin))
cos = analytic("cos", np.cos, lambda x: -sin(x),
               emit_scalar=real_ufunc_scalar(np.cos))
tan = analytic("tan", np.tan, lambda out: square(out) + 1.0, UNIT,
               emit_scalar=real_ufunc_scalar(np.tan))
arcsin = analytic("arcsin", np.arcsin, lambda x: 1.0 / sqrt(_one_minus_square(x)), UNIT,
                  emit_scalar=real_ufunc_scalar(np.arcsin))
arccos = analytic("arccos", np.arccos, lambda x: -1.0 / sqrt(_one_minus_square(x)), UNIT,
                  emit_scalar=real_ufunc_scalar(np.arccos))
def _arctan_partial(x):
    """1 / (1 + x^2), as u^2 / (1 + u^2) with u = 1/x where |x| > 1 on the real line: x^2
    overflowed beyond 1e154 (0 for 1e-310) and the second derivative underflowed from
    1e100 (its square of the first)."""
    if np.dtype(x.dtype).kind == "c":
        return reciprocal(square(x) + 1.0)
    far = absolute(x) > 1.0                      # (each branch read at a safe point elsewhere)
    u = square(reciprocal(where(far, x, 1.0)))
    return where(far, u / (1.0 + u), reciprocal(square(where(far, 0.0, x)) + 1.0))


arctan = analytic("arctan", np.arctan, _arctan_partial,
                  emit_scalar=vectorised_scalar(np.arctan, real_ufunc_scalar(np.arctan)))
sinh = analytic("sinh", np.sinh, lambda x: cosh(x),
                emit_scalar=vectorised_scalar(np.sinh, real_ufunc_scalar(np.sinh)))
cosh = analytic("cosh", np.cosh, lambda x: sinh(x),
                emit_scalar=vectorised_scalar(np.cosh, real_ufunc_scalar(np.cosh)))
tanh = analytic("tanh", np.tanh, lambda out: _one_minus_square(out),
                emit_scalar=vectorised_scalar(np.tanh, real_ufunc_scalar(np.tanh)))
# (on the real line 1 / hypot(x, 1): x^2 + 1 overflowed beyond 1e154, the slope 0 for 1e-160)
arcsinh = analytic("arcsinh", np.arcsinh,
                   lambda x: 1.0 / sqrt(square(x) + 1.0) if np.dtype(x.dtype).kind == "c"
                   else reciprocal(hypot(x, 1.0)), emit_scalar=real_ufunc_scalar(np.arcsinh))
# arccosh's partial as a quotient, not 1 / (sqrt(x - 1) * sqrt(x + 1)): at x = 1 the
# product's pullback multiplies an infinite cotangent by sqrt(x - 1) = 0, so the reverse
# modes' second derivative was NaN where the forward modes' is -inf.
arccosh = analytic("arccosh", np.arccosh, lambda x: 1.0 / sqrt(x - 1.0) / sqrt(x + 1.0),
                   (1.2, 3.0), emit_scalar=real_ufunc_scalar(np.arccosh))
arctanh = analytic("arctanh", np.arctanh, lambda x: reciprocal(_one_minus_square(x)), UNIT,
                   emit_scalar=real_ufunc_scalar(np.arctanh))


def _one_minus_square(x):
    """1 - x * x (tanh's partial derivative at its output; arcsin's, arccos's, arctanh's
    radicand): the primitives on tracers; on a large NumPy array written into the square's
    own buffer, one array where `1.0 - np.square(x)` makes two (NumPy reuses a temporary only
    as an operator's left operand), the same values (on a small one the operators' calls
    cost less than `out=`'s, and a float64 one takes 1 as a 0-d array, `zero_d`)."""
    if type(x) is np.ndarray and x.dtype.kind in "fc":
        d = np.square(x)
        if x.nbytes >= LARGE_TEMPORARY:
            return np.subtract(1.0, d, out=d)
        return (_ONE if x.dtype is FLOAT64 else 1.0) - d
    return 1.0 - square(x)


_ONE = zero_d(1.0)


def _absolute_partial(x):
    # For complex z, |z| is real-valued: its gradient conj(z) / |z| (0 at 0), whose real
    # part of the product with a tangent is the pushforward (core/numbers.py).
    if getattr(x, "dtype", None) is None or x.dtype.kind != "c":
        return sign(x)
    return conjugate(x) / where(x == 0, 1.0, absolute(x))


# ------------------------------------------ complex parts: linear, real coefficients

def _part_shape(x):
    return ShapeDtype(shape_of(x), np.finfo(array_dtype(x)).dtype)


# conj's transpose is conj; real's embeds its cotangent into the complex numbers, imag's
# multiplies that by -i (the transposes under Re(sum(a * b)), as JAX has them).
conjugate = linear("conjugate", np.conjugate, shape=elementwise_shape(np.conjugate),
                   transpose=lambda ct, x: conjugate(ct),
                   batch=lambda values, dims: (conjugate(values[0]), dims[0]),
                   emit=ufunc_emitter(np.conjugate), family="elementwise", fresh_output=True,
                   sparsity="same", domain=(REALS,))
real = linear("real", np.real, shape=_part_shape, transpose=lambda ct, x: ct.astype(x.dtype),
              batch=lambda values, dims: (real(values[0]), dims[0]),
              emit=call_emitter("np.real"), family="elementwise", sparsity="same",
              domain=(REALS,))
imag = linear("imag", np.imag, shape=_part_shape,
              transpose=lambda ct, x: ct.astype(x.dtype) * -1j if x.dtype.kind == "c" else ZERO,
              batch=lambda values, dims: (imag(values[0]), dims[0]),
              emit=call_emitter("np.imag"), family="elementwise", sparsity="same",
              domain=(REALS,))

# ------------------------------------------------------- scipy.special (unary)

# (out * expit(-x), not out * (1 - out): expit rounds to 1 for large x, 0 for 4e-18 at 40)
expit = unary("expit", sp.expit, lambda x, out: out * expit(-x),
              emit_scalar=vectorised_scalar(sp.expit, unfused))
# 1 / (x (1 - x)) as a sum: the product's pullback would multiply an infinite cotangent
# by x = 0 (NaN in the reverse modes' second derivative, -inf in the forward modes').
logit = unary("logit", sp.logit, lambda x: reciprocal(x) + reciprocal(1.0 - x), OPEN_UNIT)
erf = analytic("erf", sp.erf, lambda x: (2.0 / math.sqrt(math.pi), exp(-square(x))))
erfc = analytic("erfc", sp.erfc, lambda x: (-2.0 / math.sqrt(math.pi), exp(-square(x))))
gammaln = unary("gammaln", sp.gammaln, lambda x: digamma(x), POSITIVE)
digamma = unary("digamma", sp.digamma, lambda x: polygamma(x, n=1), POSITIVE)


def _polygamma(x, n):
    # scipy.special.polygamma computes in float64; keep the input's precision like a ufunc.
    dtype = x.dtype if getattr(x, "dtype", np.dtype(float)).kind == "f" else np.float64
    return sp.polygamma(n, x).astype(dtype)


@for_reading
def _polygamma_statements(targets, args, code, n):
    dtype = code.equation.outputs[0].aval.dtype
    cast = "" if dtype == np.float64 else f".astype(np.{dtype.name})"
    return [f"{targets[0]} = sp.polygamma({n}, {args[0]}){cast}"]


polygamma = unary("polygamma", None, lambda x, n: polygamma(x, n=n + 1), POSITIVE,
                  impl=_polygamma, emit_statements=_polygamma_statements)
ndtr = analytic("ndtr", sp.ndtr, lambda x: exp(-0.5 * square(x) - HALF_LOG_2PI), (-3.0, 3.0))

# ------------------------------------------------------------- binary math


def _power(x, y):
    # A float array's `**` takes NumPy's fast paths (exponent 2 is a square, 0.5 a sqrt),
    # which np.power does not: 2.5x faster for x ** 2. (For bool arrays `**` would change
    # the result dtype, so only floats take it.) A real NumPy scalar squared is x * x, what
    # np.power computes, in a tenth of its time (not its `**`: the C library's pow).
    if type(x) is np.ndarray and x.dtype.kind == "f":
        return x ** y
    if type(x) in REAL_SCALARS and type(y) in (int, float) and y == 2:
        return x * x
    return np.power(x, y)


def _power_dx(x, y):
    # Exact at x == 0 for integer exponents, at every order: a number exponent steps down
    # to the exact constants 1 and 0 (no 0 * x ** -1); an array one never evaluates
    # x ** -1 where y == 0, so that no Inf (or, differentiated, NaN) reaches the where.
    if isinstance(y, (int, float)):
        return 0 if y == 0 else 1 if y == 1 else (y, x) if y == 2 else (y, x ** (y - 1))
    zero = y == 0
    return where(zero, 0, y * x ** where(zero, 1, y - 1))


def _power_dy(x, out):
    # d/dy x**y = x**y log x, taken as 0 at x == 0 (where x**y is constant 0 for y > 0);
    # NaN for a negative number x, where x**y is real only at integers y. A complex power
    # of a real x takes the complex log (log(-2) = 0.69 + 3.14j; the real one was NaN).
    complex_power = np.dtype(dtype_of(out) or np.result_type(out)).kind == "c"
    if isinstance(x, (int, float)):
        if x == 0:
            return out * 0.0
        return out * (cmath.log(x) if complex_power else math.log(x) if x > 0 else math.nan)
    x = where(x == 0, 1.0, x)
    if complex_power and np.dtype(dtype_of(x)).kind != "c":
        x = x + 0j
    return out * log(x)


_power_source = ufunc_emitter(np.power)
_power_scalar_source = ufunc_scalar(np.power)


def _power_scalar(args, dtypes):
    # A small integer exponent as Python's int: Numba multiplies (as NumPy's fast paths
    # do for x ** 2) instead of calling pow, ten times slower. An exponent 0.5 is NumPy's
    # sqrt (its power takes that path: -0.0 stays -0.0 and -inf gives NaN, where pow
    # gives 0.0 and inf). Literals arrive cast to their dtype, e.g. `np.float64(2.0)`.
    # Integer powers stay NumPy's (it refuses negative exponents), complex ones too.
    if any(d.kind != "f" for d in dtypes):
        return None
    exponent = re.fullmatch(r"np\.\w+\((-?\d+)(\.0)?\)", args[1])
    if exponent and abs(int(exponent[1])) <= 4:
        power = int(exponent[1])
        # a negative one as a division: Numba's x ** -1 raises ZeroDivisionError at 0.0
        return f"{args[0]} ** {power}" if power >= 0 else f"(1.0 / {args[0]} ** {-power})"
    if re.fullmatch(r"np\.\w+\(0\.5\)", args[1]):
        return f"np.sqrt({args[0]})"
    return _power_scalar_source(args, dtypes)


def _power_emit(args, out=None):
    # `x ** 2` written into a buffer: what NumPy's fast path for it computes, np.square.
    if out is not None and args[1] in ("2", "2.0"):
        return f"np.square({args[0]}, out={out})"
    return _power_source(args, out)


add = elementwise("add", np.add, 1, 1, operator="{} + {}", commutative=True, domain=BINARY,
                  complex_rules=True)
subtract = elementwise("subtract", np.subtract, 1, -1, operator="{} - {}", domain=BINARY,
                       complex_rules=True)
multiply = elementwise("multiply", np.multiply, lambda y: y, lambda x: x, operator="{} * {}",
                       commutative=True, domain=BINARY, complex_rules=True,
                       zero_preserving=(0, 1))


def _one_over(y):
    # A Python number divisor 0 (x / 0.0) has NumPy's 1 / 0 (+-inf, complex inf + nan j)
    # as its partial, not Python's ZeroDivisionError; a Python number stays one (weakly
    # typed: float32 derivatives stay float32).
    if type(y) in (int, float, complex) and y == 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(1.0, y).item()
    return 1.0 / y


divide = elementwise("divide", np.divide, _one_over, lambda y, out: -out / y,
                     operator="{} / {}", domain=(REALS, (0.5, 2.0)), complex_rules=True,
                     zero_preserving=(0,))


def _xdivy(x, y):
    zero = np.equal(x, 0)
    result = np.where(zero, 0.0, np.divide(x, np.where(zero, 1.0, y)))
    return result if result.ndim else result[()]


def _xdivy_scalar(args, dtypes):
    if any(d.kind == "c" for d in dtypes):
        return None
    x, y = args
    return f"(0.0 if {x} == 0 else {x} / {y})"


# x / y, and 0 where x is 0 (any y: the limit along x = 0 where y is 0): the y-derivative
# of xlogy and xlog1py, which are 0 wherever x is. Its own y-derivative -x / y^2 is written
# with it, so it is 0 where x is, at every order; its x-derivative 1 / y is inf at y = 0.
xdivy = elementwise("xdivy", None, _one_over, lambda x, y: -xdivy(xdivy(x, y), y),
                    impl=_xdivy, emit_scalar=_xdivy_scalar, domain=(REALS, (0.5, 2.0)),
                    complex_rules=True, zero_preserving=(0,),
                    emit_statements=for_reading(lambda targets, args, code: [
                        f"{targets[0]} = np.where({args[0]} == 0, 0.0, {args[0]} / np.where("
                        f"{args[0]} == 0, 1.0, {args[1]}))"]))


power = elementwise("power", np.power, _power_dx, _power_dy, impl=_power, emit=_power_emit,
                    operator="{} ** {}", emit_scalar=_power_scalar,
                    domain=((0.5, 2.0), REALS), complex_rules=True)


def _extremum_scalar(ufunc, beats):
    """emit_scalar rule of maximum (`beats` ">") or minimum ("<"): on floats NumPy's
    choice, x where x beats y or is NaN, else y (so maximum(-0.0, 0.0) is 0.0 and
    maximum(0.0, -0.0) is -0.0; Numba's chooses x at ties), NaN from either operand."""
    otherwise = ufunc_scalar(ufunc)

    def emit_scalar(args, dtypes):
        if any(d.kind != "f" for d in dtypes):
            return otherwise(args, dtypes)
        x, y = args
        return f"({x} if {x} {beats} {y} or {x} != {x} else {y})"
    return emit_scalar


# maximum/minimum split the derivative equally at ties (the mean of the one-sided ones).
maximum = elementwise("maximum", np.maximum, lambda x, y: 0.5 + 0.5 * sign(x - y),
                      lambda x, y: 0.5 - 0.5 * sign(x - y), commutative=True, domain=BINARY,
                      emit_scalar=_extremum_scalar(np.maximum, ">"))
minimum = elementwise("minimum", np.minimum, lambda x, y: 0.5 - 0.5 * sign(x - y),
                      lambda x, y: 0.5 + 0.5 * sign(x - y), commutative=True, domain=BINARY,
                      emit_scalar=_extremum_scalar(np.minimum, "<"))
# fmax/fmin ignore NaN: the derivative goes to the argument that is not NaN.
fmax = elementwise("fmax", np.fmax, lambda x, y: _fmax_dx(x, y),
                   lambda x, y: 1.0 - _fmax_dx(x, y), commutative=True, domain=BINARY)
fmin = elementwise("fmin", np.fmin, lambda x, y: _fmax_dx(y, x),
                   lambda x, y: 1.0 - _fmax_dx(y, x), commutative=True, domain=BINARY)
# arctan2(x, y) is the angle of the point (y, x). Products, not square(): either argument
# may be a Python scalar, which must stay weakly typed (square(2.0) is a float64 NumPy
# scalar and would promote float32 derivatives).
def _over_squared_norm(a, x, y):
    """a / (x^2 + y^2) as (a / h) / h with h = hypot(x, y): the sum of squares overflowed
    (arctan2's slopes 0 at 1e200) or underflowed (inf at 1e-200, a NaN in the Hessian)."""
    h = hypot(x, y)
    return a / h / h


arctan2 = elementwise("arctan2", np.arctan2, lambda x, y: _over_squared_norm(y, x, y),
                      lambda x, y: _over_squared_norm(-x, x, y), domain=BINARY)
hypot = elementwise("hypot", np.hypot, lambda x, out: x / out, lambda y, out: y / out,
                    commutative=True, domain=BINARY)
# (expit(x - y), not exp(x - out): its derivative expit' has no 1 - p cancelling to 0
# where one argument dominates, 0 for 4e-18 at (40, 0); and logaddexp(inf, y)'s is 1)
logaddexp = elementwise("logaddexp", np.logaddexp, lambda x, y: expit(x - y),
                        lambda x, y: expit(y - x), commutative=True, domain=BINARY,
                        emit_scalar=vectorised_scalar(np.logaddexp, ufunc_scalar(np.logaddexp)))
logaddexp2 = elementwise("logaddexp2", np.logaddexp2, lambda x, y: expit(LN2 * (x - y)),
                         lambda x, y: expit(LN2 * (y - x)), commutative=True, domain=BINARY)


_remainder_source = ufunc_scalar(np.remainder)


def _remainder_scalar(args, dtypes):
    # Floats as NumPy's divmod has them: fmod moved into the divisor's sign, a zero given
    # the divisor's sign (1.0 % -1.0 is -0.0; Numba's np.remainder gives 0.0).
    if any(d.kind != "f" for d in dtypes):
        return _remainder_source(args, dtypes)
    x, y = args
    mod = f"np.fmod({x}, {y})"
    return f"(np.copysign(0.0, {y}) if {mod} == 0 else {mod} + {y} if ({mod} < 0) != " \
           f"({y} < 0) else {mod})"

remainder = elementwise("remainder", np.remainder, 1, lambda x, y: -floor_divide(x, y),
                        operator="{} % {}", emit_scalar=_remainder_scalar,
                        domain=((2.3, 2.5), (1.05, 1.1)))
fmod = elementwise("fmod", np.fmod, 1, lambda x, y: -trunc(x / y),
                   domain=((2.3, 2.5), (1.05, 1.1)), emit_scalar=float_ufunc_scalar(np.fmod))
# copysign(x, y) = |x| with y's sign bit: d/dx = sign(x) * copysign(1, y), d/dy = 0.
copysign = elementwise("copysign", np.copysign, lambda x, y: sign(x) * copysign(1.0, y), 0,
                       domain=BINARY)
# nextafter(x, y) = x plus or minus one unit in the last place, a step in x: d/dx = 1.
nextafter = elementwise("nextafter", np.nextafter, 1, 0, domain=BINARY)
# heaviside(x, h): a step (zero derivative in x) whose value at x == 0 is h.
heaviside = elementwise("heaviside", np.heaviside, 0, lambda x: where(x == 0, 1.0, 0.0),
                        domain=BINARY, emit_scalar=lambda args, dtypes: _heaviside_scalar(*args))


def _heaviside_scalar(x, h):
    # Numba lacks np.heaviside: NaN for NaN, 0 below zero, h at zero, 1 above.
    return f"(np.nan if {x} != {x} else 0.0 if {x} < 0 else {h} if {x} == 0 else 1.0)"
# ldexp(x, i) = x 2^i for integers i; fused for i of 32 bits at most (Numba truncates a
# wider one, NumPy clamps it).
_ldexp_source = ufunc_scalar(np.ldexp)
ldexp = elementwise("ldexp", np.ldexp, lambda y: ldexp(1.0, y), 0,
                    domain=(REALS, ("int", -2, 2)),
                    emit_scalar=lambda args, dtypes: None if dtypes[1].itemsize > 4
                    else _ldexp_source(args, dtypes))
# xlogy(0, y) is 0 for every y: its y-derivative there is 0, also at y = 0 (xdivy).
def logarithm_for(x, y, ufunc, primitive):
    """ufunc(y) (log or log1p) as the partial in x of x * ufunc(y): complex where x is (the
    real log of a negative y is NaN, the complex one is not: log(-2) = 0.69 + 3.14j)."""
    complex_x = np.dtype(dtype_of(x) or np.result_type(x)).kind == "c"
    if isinstance(y, (int, float)):
        return complex(ufunc(complex(y))) if complex_x else float(ufunc(y))
    if complex_x and np.dtype(dtype_of(y)).kind != "c":
        y = y + 0j
    return primitive(y)


xlogy = elementwise("xlogy", sp.xlogy, lambda x, y: logarithm_for(x, y, np.log, log),
                    lambda x, y: xdivy(x, y), domain=(REALS, POSITIVE), complex_rules=True)


def _fmax_dx(x, y):
    tie_split = 0.5 + 0.5 * sign(x - y)
    return where(isnan(y), 1.0, where(isnan(x), 0.0, tie_split))


# ------------------------------------------------- zero-derivative functions

def _sign_scalar(args, dtypes):
    # NumPy's sign of -0.0 is 0.0 (Numba's np.sign gives -0.0 back; adding 0.0 makes it
    # 0.0 and changes nothing else), of an unsigned integer 0 or 1 (Numba's reads it as
    # signed: sign(2**32 - 3) gave 2**32 - 1).
    kind, (x,) = dtypes[0].kind, args
    if kind == "f":
        return f"(np.sign({x}) + np.{dtypes[0].name}(0.0))"
    return None if kind == "c" else f"(1 if {x} > 0 else 0)" if kind == "u" else f"np.sign({x})"


# sign of complex values is z / |z|, not constant: pullback.numpy.sign answers np.sign.
sign = constant("sign", lambda x: np.sign(x), emit=call_emitter("np.sign"), fresh_output=True,
                emit_scalar=_sign_scalar)
floor = constant("floor", np.floor)
ceil = constant("ceil", np.ceil)
trunc = constant("trunc", np.trunc)
rint = constant("rint", np.rint)
around = constant("around", lambda x, decimals: np.round(x, decimals),
                  emit=call_emitter("np.round"))
# Not fused: Numba's floor_divide of floats is floor(x / y), which differs from NumPy's
# divmod at infinities (inf // 1 is nan in NumPy, 1 // -inf is -1).
floor_divide = constant("floor_divide", np.floor_divide, domain=((2.3, 2.5), (1.05, 1.1)),
                        operator="{} // {}", emit_scalar=unfused)
frexp_exponent = constant("frexp_exponent", lambda x: np.frexp(x)[1],
                          lambda x: ShapeDtype(shape_of(x), np.dtype(np.intc)), fresh_output=True,
                          emit_statements=for_reading(lambda targets, args, code: [
                              f"{targets[0]} = np.frexp({args[0]})[1]"]))
isnan = constant("isnan", np.isnan)
signbit = constant("signbit", np.signbit)
isinf = constant("isinf", np.isinf)
isfinite = constant("isfinite", np.isfinite)
logical_not = constant("logical_not", np.logical_not, domain=("bool",))
logical_and = constant("logical_and", np.logical_and, domain=LOGICAL, commutative=True)
logical_or = constant("logical_or", np.logical_or, domain=LOGICAL, commutative=True)
logical_xor = constant("logical_xor", np.logical_xor, domain=LOGICAL, commutative=True)
# Bitwise operations of integers and booleans (`&`, `|`, `^`, `~`, `<<`, `>>` of arrays;
# on booleans the first four are the logical operations).
BITS = ("int", -8, 8)
bitwise_and = constant("bitwise_and", np.bitwise_and, domain=(BITS, BITS), commutative=True)
bitwise_or = constant("bitwise_or", np.bitwise_or, domain=(BITS, BITS), commutative=True)
bitwise_xor = constant("bitwise_xor", np.bitwise_xor, domain=(BITS, BITS), commutative=True)
invert = constant("invert", np.invert, domain=(BITS,))
# (not fused: Numba's shifts by the integers' width or more are undefined, NumPy's 0 or -1)
left_shift = constant("left_shift", np.left_shift, domain=(BITS, ("int", 0, 3)),
                      emit_scalar=unfused)
right_shift = constant("right_shift", np.right_shift, domain=(BITS, ("int", 0, 3)),
                       emit_scalar=unfused)
less = constant("less", np.less, domain=BINARY, operator="{} < {}")
less_equal = constant("less_equal", np.less_equal, domain=BINARY, operator="{} <= {}")
greater = constant("greater", np.greater, domain=BINARY, operator="{} > {}")
greater_equal = constant("greater_equal", np.greater_equal, domain=BINARY,
                         operator="{} >= {}")
equal = constant("equal", np.equal, domain=BINARY, commutative=True, operator="{} == {}")
not_equal = constant("not_equal", np.not_equal, domain=BINARY, commutative=True,
                     operator="{} != {}")

# ------------------------------------------------------------------ selection

def _where_jvp(primals, tangents):
    condition, x, y = primals
    _, t_x, t_y = tangents
    out = where(condition, x, y)
    t = where(condition, 0.0 if t_x is ZERO else t_x, 0.0 if t_y is ZERO else t_y)
    if t.shape != out.shape:
        t = np.broadcast_to(t, out.shape)              # a primitive on tracers
    if t.dtype != out.dtype:             # a float32 tangent of a float64 output (mixed operands)
        t = t.astype(out.dtype)
    return out, t


def _where_vjp(wrt, out, condition, x, y):
    def pullback(ct):
        return (ZERO,
                unbroadcast(where(condition, ct, 0.0), x) if wrt[1] else ZERO,
                unbroadcast(where(condition, 0.0, ct), y) if wrt[2] else ZERO)
    return pullback


where = Primitive("where", np.where, shape=elementwise_shape(np.where), jvp=_where_jvp,
                  vjp=_where_vjp, batch=lambda values, dims: batch_elementwise(where, values, dims),
                  emit=call_emitter("np.where"),
                  family="elementwise", domain=("bool", REALS, REALS), fresh_output=True,
                  sparsity="select", complex_rules=True,
                  emit_scalar=lambda args, dtypes: f"({args[1]} if {args[0]} else {args[2]})")
