"""Vectorisable float64 exp, expm1, log, log1p, tanh, sinh, cosh, arctan, logaddexp, expit.

Numba compiles `np.exp(x)` in a loop to one call of the C library per element, which no
loop vectoriser can widen; NumPy's own SIMD loops for these in float64 are AVX-512 code,
so on an AVX2 host (an AMD EPYC here) both run about 5-35 ns per element where JAX's and
torch's vectorised ones run 1-3, and these 2-4 (logaddexp 10). These are written without
calls or branches LLVM cannot turn into selects, and read and write a float's bits through
two intrinsics (`float_bits`, `from_bits`), so a loop of them runs four elements per
instruction. A loop of these is bound by its chain of dependent operations over the
operations the CPU holds in flight, so both the chain and the count matter: polynomial
steps are fused multiply-adds (`muladd`) where the CPU has them, the long ones in
Estrin's order; a choice of two operands that feeds one division is a select (`choose`),
not a branch; the odd ones (tanh, sinh, arctan) are computed on |x| and given x's sign
by copysign, and NaN passes every step (`_at_most`) rather than being chosen at the end
(every choice costs instructions in every iteration). Each is within 1 ulp (exp, log) or
2 ulp (the others) of NumPy's value (arctan: 1 of the C library's; expit: 4 of SciPy's,
measured near x = -36.8, where an ulp of exp is 1.6 of expit's and 1 + e**-x rounds;
logaddexp: 4 ulp of its larger operand plus 4 of its log1p term), with NumPy's results at
zeros, infinities, NaN, overflow and underflow (tests/test_vector_math.py). Generated
kernels call them as `vm.exp(x)`; the fused tier's probe (`numpy_saving`) still leaves a
kind to NumPy where NumPy's own loop measures faster.

`complex_log` is the kernels' complex log, log2 and log10 (not vectorised: it calls
atan2): Numba's own is log(abs(z)), which loses the real part near |z| = 1; this one is
within 2 ulp of NumPy's (the C library's clog) in each part, and 4 ulp scaled for log10.

The methods are the classic ones: exp reduces x = k ln2 + r (ln2 in two parts, k by
adding 1.5 * 2**52), evaluates exp(r) by fdlibm's rational form of Remez coefficients,
and scales by 2**k in two steps (so results near overflow and subnormal ones need no
branch); tanh is x + x^3 P(x^2) / Q(x^2) (Cephes' coefficients) below 0.625 in
magnitude, else 1 - 2 / (exp(2|x|) + 1) with x's sign (one division for both); log
writes x = 2**k (1 + f) with 1 + f within a factor sqrt(2) of 1 and evaluates log(1 + f)
by fdlibm's series in s = f / (2 + f); log1p is log(1 + x) plus the first-order
correction for 1 + x's rounding; expm1 and sinh below 1 in magnitude are their Taylor
series (to x**20 / 20!), cosh and sinh beyond it e**|x| / 2 plus or minus 1 / (2
e**|x|), the halving done in exp's scale so that they stay finite as far as NumPy's do;
arctan is fdlibm's, |x| moved near 0 by atan(c) for c in 0.5, 1, 1.5, inf and an odd
polynomial; logaddexp and expit are NumPy's and SciPy's formulas on these.

>>> import numpy as np
>>> bool(np.exp(1.5) - exp(1.5) <= np.spacing(np.exp(1.5)))
True
"""
import math

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def float_bits(typingctx, x):
    """The bits of float64 x as an int64 (no conversion: a register move)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def from_bits(typingctx, i):
    """The float64 whose bits are int64 i."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


def _llvm_call(name):
    """codegen of a call of LLVM's float64 intrinsic `name` of three operands."""
    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(double, [double] * 3), name)
        return builder.call(function, args)
    return codegen


@intrinsic
def muladd(typingctx, a, b, c):
    """a * b + c for float64 values, one fused multiply-add where the CPU has one (LLVM's
    fmuladd: rounded once, else twice): a polynomial's steps, half the
    instructions, no less accurate. Only where written: the kernels' own arithmetic is
    never contracted (NumPy rounds each operation)."""
    return types.float64(types.float64, types.float64, types.float64), \
        _llvm_call("llvm.fmuladd.f64")



@intrinsic
def choose(typingctx, condition, a, b):
    """a if condition else b for float64 a and b, as one select: a conditional
    expression is a branch, and where two of them on one condition feed one division
    LLVM may merge them and compute the division on both sides."""
    def codegen(context, builder, signature, args):
        return builder.select(*args)
    return types.float64(types.boolean, types.float64, types.float64), codegen


LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e+00
SHIFTER = 6755399441055744.0             # 1.5 * 2**52: adding it rounds to an integer
EXP_P = (1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05,
         -1.65339022054652515390e-06, 4.13813679705723846039e-08)
TANH_P = (-9.64399179425052238628e-01, -9.92877231001918586564e+01, -1.61468768441708447952e+03)
TANH_Q = (1.12811678491632931402e+02, 2.23548839060100448583e+03, 4.84406305325125486048e+03)
INFINITY, NAN = float("inf"), float("nan")
_JIT = dict(inline="always", error_model="numpy")


@numba.njit(**_JIT)
def _reduced(a):
    """a = k ln2 + r, |r| <= ln2 / 2 (up to rounding), for a float64 a in [-746, 711]:
    (hi, lo) with r = hi - lo (ln2 in two parts; k LN2_HI is exact, so its fused
    multiply-add is too), r, fdlibm's c = r - r**2 P(r**2) (so that
    exp(r) = (2 + 2r - c) / (2 - c)), and the integer k. P is evaluated in Estrin's
    order, and k by a fused multiply-add: the shortest chain of dependent operations,
    which is what limits a loop of these."""
    shifted = muladd(a, INV_LN2, SHIFTER)
    k = shifted - SHIFTER
    hi = muladd(-k, LN2_HI, a)
    lo = k * LN2_LO
    r = hi - lo
    r2 = r * r
    r4 = r2 * r2
    p1, p2, p3, p4, p5 = EXP_P
    c = r - r2 * muladd(r4, muladd(r4, p5, muladd(r2, p4, p3)), muladd(r2, p2, p1))
    return hi, lo, r, c, float_bits(shifted) - float_bits(SHIFTER)


@numba.njit(**_JIT)
def _power_of_two(k):
    """2.0**k for an integer k in [-1022, 1023]."""
    return from_bits((k + 1023) << 52)


@numba.njit(**_JIT)
def _at_most(x, limit):
    """min(x, limit) that NaN passes (Python's min drops it): a NaN argument then flows
    through every step after it, and no NaN test is needed at the end."""
    return choose(x > limit, limit, x)


@numba.njit(**_JIT)
def _exp_times(a, factor):
    """e**a times `factor` (1 or 1/2: exact on 2**k) for a float64 a in [-746, 711],
    by fdlibm's careful form of exp(r), finite wherever the result is: 2**k is applied
    as two factors, each a normal float."""
    hi, lo, r, c, k = _reduced(a)
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    half = k >> 1                 # in this order: y * 2**1024 may be finite
    return y * (_power_of_two(half) * factor) * _power_of_two(k - half)


@numba.njit(**_JIT)
def exp(x):
    """e**x for a float64 x (beyond [-746, 710] it is 0 or inf anyway: x is clamped there
    by choices that NaN passes, and every step after them)."""
    return _exp_times(choose(x < -746.0, -746.0, _at_most(x, 710.0)), 1.0)


@numba.njit(**_JIT)
def tanh(x):
    """tanh(x) for a float64 x, computed on |x| and given x's sign (so -0.0 stays -0.0),
    by one division whose operands |x| chooses: below 0.625 |x| + |x|^3 P / Q, else
    1 - 2 / (exp(2|x|) + 1) with exp(2|x|) as _reduced's fraction times 2**k, so
    2 / (exp(2|x|) + 1) = 2 (2 - c) / (2**k (2 + 2r - c) + 2 - c). Beyond |x| = 20 tanh
    rounds to +-1, so 2|x| is capped at 40 (NaN passes the cap and every step after it)
    and 2**k is one normal float."""
    magnitude = abs(x)
    z = x * x
    p0, p1, p2 = TANH_P
    q0, q1, q2 = TANH_Q
    small = magnitude < 0.625
    _, _, r, c, k = _reduced(_at_most(magnitude + magnitude, 40.0))
    below = 2.0 - c
    numerator = choose(small, magnitude * z * muladd(muladd(p0, z, p1), z, p2), 2.0 * below)
    quotient = numerator / choose(small, muladd(muladd(z + q0, z, q1), z, q2),
                                  muladd(2.0 + 2.0 * r - c, _power_of_two(k), below))
    return math.copysign(choose(small, magnitude + quotient, 1.0 - quotient), x)


INV_FACTORIALS = tuple(1.0 / math.factorial(n) for n in range(2, 21))   # 1/2! ... 1/20!


@numba.njit(**_JIT)
def expm1(x):
    """e**x - 1 for a float64 x: its Taylor series to x**20 / 20! for |x| <= 1 (the
    digits of small x kept), exp(x) - 1 beyond (where it loses at most a bit)."""
    (c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19,
     c20) = INV_FACTORIALS
    x2 = x * x
    x4 = x2 * x2
    x8 = x4 * x4                                    # Estrin's order: a short chain
    p = muladd(x8, muladd(x8, muladd(x2, c20, muladd(c19, x, c18)), muladd(
        x4, muladd(x2, muladd(c17, x, c16), muladd(c15, x, c14)),
        muladd(x2, muladd(c13, x, c12), muladd(c11, x, c10)))), muladd(
        x4, muladd(x2, muladd(c9, x, c8), muladd(c7, x, c6)),
        muladd(x2, muladd(c5, x, c4), muladd(c3, x, c2))))
    if x == 0.0:
        return x                                    # expm1(-0.0) is -0.0
    return x + x2 * p if abs(x) <= 1.0 else exp(x) - 1.0


@numba.njit(**_JIT)
def cosh(x):
    """cosh(x) for a float64 x: e**|x| / 2 + 1 / (2 e**|x|)."""
    magnitude = abs(x)
    half = _exp_times(_at_most(magnitude, 711.0), 0.5)   # e**|x| / 2
    return half + 0.25 / half                       # NaN passed every step


@numba.njit(**_JIT)
def sinh(x):
    """sinh(x) for a float64 x, computed on |x| and given x's sign (so -0.0 stays -0.0):
    its odd Taylor series to x**19 / 19! below 1, else e**|x| / 2 - 1 / (2 e**|x|)
    (NaN passes every step)."""
    c3, c5, c7, c9, c11, c13, c15, c17, c19 = INV_FACTORIALS[1::2]
    magnitude = abs(x)
    z = x * x
    z2 = z * z
    z4 = z2 * z2                                    # Estrin's order: a short chain
    p = muladd(z4, muladd(z4, c19, muladd(z2, muladd(c17, z, c15), muladd(c13, z, c11))),
               muladd(z2, muladd(c9, z, c7), muladd(c5, z, c3)))
    half = _exp_times(_at_most(magnitude, 711.0), 0.5)   # e**|x| / 2
    return math.copysign(choose(magnitude < 1.0, magnitude + magnitude * z * p,
                                half - 0.25 / half), x)


LOG_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
          2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
          1.479819860511658591e-01)
SQRT_HALF_BITS = 0x3FE6A09E00000000      # the high word of sqrt(2)/2: 1 + f starts there
ONE_BITS = 0x3FF0000000000000
MANTISSA = 0x000FFFFFFFFFFFFF
TINY = 2.2250738585072014e-308           # the smallest normal float64
TWO_54 = 18014398509481984.0


@numba.njit(**_JIT)
def log(x):
    """The natural logarithm of a float64 x."""
    subnormal = x < TINY
    scaled = x * TWO_54 if subnormal else x
    bits = float_bits(scaled) + (ONE_BITS - SQRT_HALF_BITS)
    k = (bits >> 52) - 1023 - (54 if subnormal else 0)
    f = from_bits((bits & MANTISSA) + SQRT_HALF_BITS) - 1.0   # x = 2**k (1 + f)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    g1, g2, g3, g4, g5, g6, g7 = LOG_LG
    r = z * muladd(w, muladd(w, muladd(w, g7, g5), g3), g1) + w * muladd(
        w, muladd(w, g6, g4), g2)
    half_square = 0.5 * f * f
    dk = float(k)
    value = dk * LN2_HI - ((half_square - (s * (half_square + r) + dk * LN2_LO)) - f)
    if x > 0.0 and x < INFINITY:
        return value
    if x == 0.0:
        return -INFINITY
    return x if x == INFINITY else NAN      # NaN, or a negative x


@numba.njit(**_JIT)
def log1p(x):
    """log(1 + x) for a float64 x, digits kept for small x: log(u) of u = 1 + x, plus
    the first-order correction for the rounding of u."""
    u = 1.0 + x
    correction = (x - (u - 1.0)) / u
    value = log(u) + correction
    if u == 1.0:
        return x                            # x so small that log1p(x) rounds to x
    return value if u < INFINITY and u > 0.0 else log(u)


LN2 = 0.6931471805599453


@numba.njit(**_JIT)
def logaddexp(x, y):
    """log(e**x + e**y) for float64 x and y, NumPy's way: the larger plus
    log1p(exp(-|x - y|)); x + log 2 where they are equal (infinities of one sign)."""
    difference = x - y
    larger = x if difference > 0.0 else y
    value = larger + log1p(exp(-abs(difference)))
    if x == y:
        return x + LN2
    return value if difference == difference else difference


ATAN_HI = (4.63647609000806093515e-01, 7.85398163397448278999e-01, 9.82793723247329054082e-01,
           1.57079632679489655800e+00)        # atan(0.5), atan(1), atan(1.5), pi / 2, high parts
ATAN_LO = (2.26987774529616870924e-17, 3.06161699786838301793e-17, 1.39033110312309984516e-17,
           6.12323399573676603587e-17)        # and their low parts
ATAN_T = (3.33333333333329318027e-01, -1.99999999998764832476e-01, 1.42857142725034663711e-01,
          -1.11111104054623557880e-01, 9.09088713343650656196e-02, -7.69187620504482999495e-02,
          6.66107313738753120669e-02, -5.83357013379057348645e-02, 4.97687799461593236017e-02,
          -3.65315727442169155270e-02, 1.62858201153657823623e-02)


@numba.njit(**_JIT)
def arctan(x):
    """arctan(x) for a float64 x, fdlibm's way: |x| is moved near 0 by atan(|x|) =
    atan(c) + atan((|x| - c) / (1 + c |x|)) for c = 0.5, 1, 1.5 or inf (by |x|: below
    0.4375 no move), one division whose operands |x| chooses, then an odd polynomial;
    computed on |x| and given x's sign (so -0.0 stays -0.0; NaN passes every step)."""
    a = abs(x)
    near = a < 0.6875
    below = a < 1.1875
    above = a < 2.4375
    small = a < 0.4375
    numerator = (a if small else 2.0 * a - 1.0) if near else \
        ((a - 1.0) if below else (a - 1.5) if above else -1.0)
    denominator = (1.0 if small else 2.0 + a) if near else \
        ((a + 1.0) if below else muladd(1.5, a, 1.0) if above else a)
    hi0, hi1, hi2, hi3 = ATAN_HI
    lo0, lo1, lo2, lo3 = ATAN_LO
    hi = (hi0 if near else hi1) if below else (hi2 if above else hi3)
    lo = (lo0 if near else lo1) if below else (lo2 if above else lo3)
    t = numerator / denominator
    z = t * t
    w = z * z
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10 = ATAN_T
    s1 = z * muladd(w, muladd(w, muladd(w, muladd(w, muladd(w, t10, t8), t6), t4), t2), t0)
    s2 = w * muladd(w, muladd(w, muladd(w, muladd(w, t9, t7), t5), t3), t1)
    return math.copysign(choose(small, a - a * (s1 + s2), hi - ((t * (s1 + s2) - lo) - t)), x)


@numba.njit(**_JIT)
def expit(x):
    """scipy.special.expit(x) = 1 / (1 + e**-x) for a float64 x, SciPy's formula: within
    4 ulp of SciPy's (near x = -36.8 an ulp of exp, which is 1 from the C library's, is 1.6
    of expit's, and 1 + e**-x rounds)."""
    return 1.0 / (1.0 + exp(-x))


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c for float64 values rounded once, always (LLVM's fma: the C library's
    where the CPU has no fused multiply-add): x * x - fma(x, x, -(x * x)) is exact."""
    return types.float64(types.float64, types.float64, types.float64), _llvm_call("llvm.fma.f64")


@numba.njit(**_JIT)
def _two_sum(a, b):
    """(s, e): s = a + b rounded and e its rounding error, s + e = a + b exactly."""
    s = a + b
    b_part = s - a
    return s, (a - (s - b_part)) + (b - b_part)


@numba.njit(**_JIT)
def complex_log(z, scale):
    """NumPy's log of a complex128 z (the C library's clog), both parts times `scale`
    (NumPy's log10 and log2 are clog's parts times log10(e) and log2(e)): arg z by
    atan2; log|z| by log(hypot) (0 for log(1 + 1e-8j), whose real part is 5e-17: no
    digits of log|z| are left near |z| = 1), except where the larger part x is in [0.5, 2):
    there log1p(x**2 + y**2 - 1) / 2, the squares split exactly by fused multiply-adds and
    all parts added by two-sums (where they cancel, their high parts' sum is exact), as
    glibc does; and beyond hypot's range log x + log1p((y / x)**2) / 2. Infinities, NaN
    and zeros take the hypot path, which has C99's values for them."""
    x, y = abs(z.real), abs(z.imag)
    if y > x:
        x, y = y, x
    square_x, square_y = x * x, y * y
    if 0.5 <= x < 2.0 and y < 1.0 and square_x + square_y >= 0.5:
        high, e = _two_sum(square_x, -1.0)
        high, f = _two_sum(high, square_y)
        low, g = _two_sum(fma(x, x, -square_x), fma(y, y, -square_y))
        high, h = _two_sum(high, low)
        magnitude = 0.5 * math.log1p(high + (((e + f) + g) + h))
    elif 0.0 < x < 1e-300 or 1e300 < x < INFINITY:
        magnitude = math.log(x) + 0.5 * math.log1p((y / x) * (y / x))
    else:
        magnitude = math.log(math.hypot(x, y))
    return complex(magnitude * scale, math.atan2(z.imag, z.real) * scale)
