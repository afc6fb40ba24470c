"""Special functions (scipy.special and numpy.sinc): one line per primitive, the ufunc it
computes and its partial derivatives beside it (see `families.elementwise`).

Derivatives are the closed forms of the DLMF, written with primitives so that they
differentiate again: Bessel functions step their order (d/dx J_v = (J_{v-1} - J_{v+1}) / 2),
incomplete gamma and beta functions differentiate in x by their integrands. Where a
derivative has no closed form (in the order v of a Bessel function, in the parameters a
and b of the incomplete functions, in the exponent of zeta) the partial is
`no_closed_form`: differentiating with respect to that argument raises a clear error.

Complex arguments, where SciPy takes them and the function is holomorphic with a
holomorphic derivative (erf, erfc, erfcx, dawsn, ndtr, log_ndtr, exp1, expi, spence, xlogy,
xlog1py, and jv, iv, kv, kve, yv in z), keep their real rules (`analytic`, JAX's
convention); the others (ive, which scales by exp(-|Re z|); gamma, loggamma, rgamma and
digamma, whose higher derivatives need a complex polygamma SciPy lacks) refuse them.

`sinc` and `exprel` ((e^u - 1) / u) have removable singularities at 0; each is one
primitive with an `order` parameter, the derivative of that order, computed from the
moments m_k(u) = int_0^1 t^k e^(u t) dt (a series near 0, a recursion elsewhere): exact at
0 at every order, where a formula with `where` would give wrong higher derivatives.
Two partials are 0 * inf or 0 / 0 where the function is smooth, and take another formula
there whose own derivatives are right: rgamma's below 1/2, around gamma's poles (the
reflection formula), spence's within 0.1 of 1 (its Taylor polynomial).
"""
import math

import numpy as np
from . import scipy_special as sp

from ..core.numbers import complex_error
from ..errors import UnsupportedFunctionError
from .elementwise import (OPEN_UNIT, analytic, POSITIVE, REALS, UNIT, cos, digamma, exp, gammaln,
                          log, log1p, logarithm_for, maximum, reciprocal, remainder, rint, sign,
                          sin, square, trunc, where, xdivy, xlogy)
from .families import constant, elementwise, for_reading

SQRT_PI, SQRT_2PI = math.sqrt(math.pi), math.sqrt(2.0 * math.pi)
ORDERS = ("int", 0, 3)              # a test domain: integer orders 0..3 (not differentiated)


class no_closed_form:
    """A partial derivative that pullback does not have: calling it raises a clear error
    (it is called only when that argument is differentiated)."""

    def __init__(self, function: str, argument: str):
        self.function, self.argument = function, argument

    def __call__(self):
        raise UnsupportedFunctionError(
            f"the derivative of `{self.function}` with respect to its argument "
            f"`{self.argument}` has no closed form that pullback implements. Pass "
            f"`{self.argument}` as a constant (differentiate the other arguments only), or "
            "give the function your own rule with pullback.custom_jvp / custom_vjp.")


def unary(name, ufunc, partial, domain=REALS, **facts):
    return elementwise(name, ufunc, partial, domain=(domain,), **facts)


# ------------------------------------------------------------- gamma and beta

gamma = unary("gamma", sp.gamma, lambda x, out: out * digamma(x), POSITIVE)
loggamma = unary("loggamma", sp.loggamma, lambda x: digamma(x), POSITIVE)


def _rgamma_partial(x, out):
    """d/dx 1/gamma(x) = -digamma(x) / gamma(x), for x >= 1/2. Below, a product of a small
    and a large factor near gamma's poles (0, -1, -2, ...; 0 * inf at them) whose derivative
    cancels terms of size 1/(x + n): rgamma'' at 1e-16 was 0 for 1.1544, at -1 + 1e-9 205.48
    for 0.8456. There it is the reflection 1/gamma(x) = gamma(1 - x) sin(pi x) / pi
    differentiated, (-1)^n gamma(1 - x) (cos(pi r) - digamma(1 - x) sin(pi r) / pi) with
    x = n + r, n an integer, |r| <= 1/2 (sin(pi x) itself loses digits near integers).
    Each branch reads a safe input where it is not taken."""
    low = x < 0.5
    reflected = where(low, x, 0.0)
    n = rint(reflected)
    r = math.pi * (reflected - n)
    scale = (1.0 - 2.0 * remainder(n, 2.0)) * gamma(1.0 - reflected)     # (-1)^n
    below = scale * (cos(r) - digamma(1.0 - reflected) * sin(r) / math.pi)
    return where(low, below, -out * digamma(where(low, 1.0, x)))


rgamma = unary("rgamma", sp.rgamma, _rgamma_partial, POSITIVE)
gammasgn = constant("gammasgn", sp.gammasgn)
beta = elementwise("beta", sp.beta, lambda x, y, out: out * (digamma(x) - digamma(x + y)),
                   lambda x, y, out: out * (digamma(y) - digamma(x + y)),
                   domain=(POSITIVE, POSITIVE), commutative=True)
betaln = elementwise("betaln", sp.betaln, lambda x, y: digamma(x) - digamma(x + y),
                     lambda x, y: digamma(y) - digamma(x + y), domain=(POSITIVE, POSITIVE),
                     commutative=True)
# Regularized incomplete functions: in x, the integrand over the normalizer.
gammainc = elementwise("gammainc", sp.gammainc, no_closed_form("scipy.special.gammainc", "a"),
                       lambda x, y: exp(xlogy(x - 1.0, y) - y - gammaln(x)),
                       domain=(POSITIVE, POSITIVE))
gammaincc = elementwise("gammaincc", sp.gammaincc,
                        no_closed_form("scipy.special.gammaincc", "a"),
                        lambda x, y: -exp(xlogy(x - 1.0, y) - y - gammaln(x)),
                        domain=(POSITIVE, POSITIVE))
betainc = elementwise(
    "betainc", sp.betainc, no_closed_form("scipy.special.betainc", "a"),
    no_closed_form("scipy.special.betainc", "b"),
    lambda x, y, z: exp(xlogy(x - 1.0, z) + xlog1py(y - 1.0, -z)
                        - gammaln(x) - gammaln(y) + gammaln(x + y)),
    domain=(POSITIVE, POSITIVE, OPEN_UNIT))

# ------------------------------------------------------ error function family

erfinv = unary("erfinv", sp.erfinv, lambda out: (0.5 * SQRT_PI, exp(square(out))), UNIT)
erfcinv = unary("erfcinv", sp.erfcinv, lambda out: (-0.5 * SQRT_PI, exp(square(out))),
                (0.1, 1.9))
def _erfcx_partial(x, out):
    """erfcx'(x) = 2 x erfcx(x) - 2/sqrt(pi): its two terms near 1.128 cancel for large x
    (at x = 1e8 nothing was left, at 1e5 four digits of the second derivative), so there
    the difference's asymptotic series, -(1 - 3/(2x^2) + 15/(4x^4) - ...) / (sqrt(pi) x^2):
    within 1e-14 from x = 50 in float64, 1e-8 from x = 10 in narrower floats (read at a
    safe point where not taken)."""
    exact = 2.0 * x * out - 2.0 / SQRT_PI
    dtype = np.dtype(x.dtype)
    if dtype.kind == "c":
        return exact
    start = 50.0 if dtype.itemsize >= 8 else 10.0
    far = x > start
    u = reciprocal(square(where(far, x, start)))
    series = -(u / SQRT_PI) * (1.0 + u * (-1.5 + u * (3.75 + u * (-13.125 + u * 59.0625))))
    return where(far, series, exact)


erfcx = analytic("erfcx", sp.erfcx, _erfcx_partial)
# log_ndtr'(x) = phi(x) / Phi(x) written as sqrt(2/pi) / erfcx(-x/sqrt(2)): as
# exp(-x^2/2 - log(2 pi)/2 - log_ndtr(x)) two terms of size x^2/2 cancelled for x << 0
# (1.0069e7 for 1e7 at x = -1e7; the second derivative -6367 for -1 at x = -1e5).
log_ndtr = analytic("log_ndtr", sp.log_ndtr,
                    lambda x: math.sqrt(2.0 / math.pi) / erfcx(x * -math.sqrt(0.5)), (-3.0, 3.0))
ndtri = unary("ndtri", sp.ndtri, lambda out: (SQRT_2PI, exp(0.5 * square(out))), OPEN_UNIT)
# (2k+1)!!/2^k, k < 10: 1, 1.5, 3.75, 13.125, ... (exact in binary)
DAWSN_SERIES = [math.prod([(2 * j + 1) / 2 for j in range(1, k + 1)], start=1.0)
                for k in range(10)]


def _dawsn_partial(x, out):
    """dawsn'(x) = 1 - 2 x dawsn(x): its terms cancel for large |x| (dawsn ~ 1/(2x)): the
    second derivative was 12% off at x = 7236, 8.3e-13 for 1e-15 at 1e5 (float32: the first
    1.3% off at 300). Beyond a cutoff, the difference's asymptotic series
    -(u/2) sum_k (2k+1)!!/2^k u^k in u = 1/x^2, ten terms: within rounding from |x| = 15 in
    float64, where the formula's second derivative is 1e-11 off, within 3e-6 from 5 in
    narrower floats (the formula's: 8e-5); for complex values the formula (read at a safe
    point where not taken)."""
    exact = 1.0 - 2.0 * x * out
    dtype = np.dtype(x.dtype)
    if dtype.kind == "c":
        return exact
    start = 15.0 if dtype.itemsize >= 8 else 5.0
    far = abs(x) > start
    u = reciprocal(square(where(far, x, start)))
    series = DAWSN_SERIES[-1]
    for c in DAWSN_SERIES[-2::-1]:
        series = series * u + c
    return where(far, -0.5 * u * series, exact)


dawsn = analytic("dawsn", sp.dawsn, _dawsn_partial)

# ---------------------------------------------------- logarithms and entropy

xlog1py = elementwise("xlog1py", sp.xlog1py,
                      lambda x, y: logarithm_for(x, y, np.log1p, log1p),
                      lambda x, y: xdivy(x, y + 1.0), domain=(REALS, (-0.5, 2.0)),
                      complex_rules=True)
entr = unary("entr", sp.entr, lambda x: -log(x) - 1.0, POSITIVE)
# (log x - log y, not log(x / y), which under- or overflows: -inf at (1e-300, 1e300), for
# -1380.55 in rel_entr, -1381.55 in kl_div)
rel_entr = elementwise("rel_entr", sp.rel_entr, lambda x, y: log(x) - log(y) + 1.0,
                       lambda x, y: -x / y, domain=(POSITIVE, POSITIVE))
kl_div = elementwise("kl_div", sp.kl_div, lambda x, y: log(x) - log(y),
                     lambda x, y: 1.0 - x / y, domain=(POSITIVE, POSITIVE))

# ------------------------------------------------------------------ Bessel
# Modified: d/dx I_v = (I_{v-1} + I_{v+1}) / 2, d/dx K_v = -(K_{v-1} + K_{v+1}) / 2; the
# exponentially scaled ones (ive = iv e^-|x|, kve = kv e^x) add the scale's derivative.

i0 = unary("i0", sp.i0, lambda x: i1(x))
i0e = unary("i0e", sp.i0e, lambda x, out: i1e(x) - sign(x) * out)
i1 = unary("i1", sp.i1, lambda x: 0.5 * (i0(x) + iv(2.0, x)))


def _i1e_partial(x, out):
    """i1e' = (i0e + ive(2, x)) / 2 - sign(x) i1e (I1' = (I0 + I2) / 2). For |x| >= 1 by the
    recurrence ive(2, x) = i0e(x) - 2 i1e(x) / x: SciPy's ive(2, x) is NaN from x ~ 5e9,
    where i0e and i1e are not; but near 0 that quotient's derivative cancels two terms of
    size 1/(2x) (i1e'' at 1e-16 was +2 or +1.5 for -1, at 1e-10 -0.9999952 for -1 + 2e-10).
    Each branch reads a safe input where it is not taken."""
    near = abs(x) < 1.0
    return where(near, 0.5 * (i0e(x) + ive(2.0, where(near, x, 0.0))),
                 i0e(x) - out / where(near, 1.0, x)) - sign(x) * out


i1e = unary("i1e", sp.i1e, _i1e_partial)
iv = elementwise("iv", sp.iv, no_closed_form("scipy.special.iv", "v"),
                 lambda x, y: 0.5 * (iv(x - 1.0, y) + iv(x + 1.0, y)), domain=(ORDERS, REALS),
                 complex_rules=True)
ive = elementwise("ive", sp.ive, no_closed_form("scipy.special.ive", "v"),
                  lambda x, y, out: 0.5 * (ive(x - 1.0, y) + ive(x + 1.0, y)) - sign(y) * out,
                  domain=(ORDERS, REALS))
kv = elementwise("kv", sp.kv, no_closed_form("scipy.special.kv", "v"),
                 lambda x, y: -0.5 * (kv(x - 1.0, y) + kv(x + 1.0, y)), domain=(ORDERS, POSITIVE),
                 complex_rules=True)
kve = elementwise("kve", sp.kve, no_closed_form("scipy.special.kve", "v"),
                  lambda x, y, out: out - 0.5 * (kve(x - 1.0, y) + kve(x + 1.0, y)),
                  domain=(ORDERS, POSITIVE), complex_rules=True)
# Of the first and second kinds: d/dx J_v = (J_{v-1} - J_{v+1}) / 2, the same for Y_v.
j0 = unary("j0", sp.j0, lambda x: -j1(x))
j1 = unary("j1", sp.j1, lambda x: 0.5 * (j0(x) - jv(2.0, x)))
jv = elementwise("jv", sp.jv, no_closed_form("scipy.special.jv", "v"),
                 lambda x, y: 0.5 * (jv(x - 1.0, y) - jv(x + 1.0, y)), domain=(ORDERS, REALS),
                 complex_rules=True)
y0 = unary("y0", sp.y0, lambda x: -y1(x), POSITIVE)
y1 = unary("y1", sp.y1, lambda x: 0.5 * (y0(x) - yv(2.0, x)), POSITIVE)
# yn and expn truncate a non-integer order toward zero (SciPy casts it to an int, with a
# warning): their rules truncate it first, so n - 1 and n + 1 are the neighbours of that int.
yn = elementwise("yn", sp.yn, 0, lambda x, y: 0.5 * (yn(trunc(x) - 1, y) - yn(trunc(x) + 1, y)),
                 domain=(ORDERS, POSITIVE))
yv = elementwise("yv", sp.yv, no_closed_form("scipy.special.yv", "v"),
                 lambda x, y: 0.5 * (yv(x - 1.0, y) - yv(x + 1.0, y)), domain=(ORDERS, POSITIVE),
                 complex_rules=True)

# ------------------------------------------------ zeta, integrals, dilogarithm
# zeta(x, q) = sum_k (k + q)^-x (Hurwitz; Riemann's without q): d/dq = -x zeta(x + 1, q).

zeta_statements = for_reading(lambda targets, args, code:
                              [f"{targets[0]} = sp.zeta({', '.join(args)})"])
hurwitz_zeta = elementwise("hurwitz_zeta", sp._ufuncs._zeta,
                           no_closed_form("scipy.special.zeta", "x"),
                           lambda x, y: -x * hurwitz_zeta(x + 1.0, y),
                           domain=(("int", 2, 4), POSITIVE), emit_statements=zeta_statements)
riemann_zeta = unary("riemann_zeta", sp._ufuncs._riemann_zeta,
                     no_closed_form("scipy.special.zeta", "x"), emit_statements=zeta_statements)


def _spence_partial(x):
    """spence'(x) = log(x) / (1 - x): 0 / 0 at x = 1, where spence is smooth, and its
    derivatives lose digits near 1 (the quotient rule's terms cancel). Within 0.1 of 1 it is
    the Taylor polynomial -sum_{k <= 16} (1 - x)^k / (k + 1), accurate to rounding there and
    in its first derivatives. Each branch reads a safe input where it is not taken."""
    near_one = abs(1.0 - x) < 0.1
    u = 1.0 - where(near_one, x, 1.0)
    taylor = 1.0 / 17.0
    for k in range(15, -1, -1):
        taylor = taylor * u + 1.0 / (k + 1)
    away = where(near_one, 2.0, x)
    return where(near_one, -taylor, log(away) / (1.0 - away))


spence = analytic("spence", sp.spence, _spence_partial, (0.2, 0.8))
exp1 = analytic("exp1", sp.exp1, lambda x: -exp(-x) / x, POSITIVE)
expi = analytic("expi", sp.expi, lambda x: exp(x) / x, POSITIVE)
# E_n' = -E_{n-1} for n >= 1; E_0(x) = e^-x / x.
expn = elementwise("expn", sp.expn, 0,
                   lambda x, y, out: where(trunc(x) == 0, -out * (1.0 + reciprocal(y)),
                                           -expn(maximum(trunc(x) - 1, 0), y)),
                   domain=(ORDERS, POSITIVE))

# ------------------------------------------------------------------- Box-Cox
# boxcox(x, lmbda) = (x^lmbda - 1) / lmbda = L m_0(lmbda L), L = log(x) (log1p for boxcox1p),
# so d/dlmbda = L^2 m_1(lmbda L): exact at lmbda = 0 too (m_k: see below).

boxcox = elementwise("boxcox", sp.boxcox, lambda x, y: exp((y - 1.0) * log(x)),
                     lambda x, y: square(log(x)) * exprel(y * log(x), order=1),
                     domain=(POSITIVE, REALS))
boxcox1p = elementwise("boxcox1p", sp.boxcox1p, lambda x, y: exp((y - 1.0) * log1p(x)),
                       lambda x, y: square(log1p(x)) * exprel(y * log1p(x), order=1),
                       domain=(POSITIVE, REALS))

# ------------------------------------------ removable singularities at zero


def exp_moment(u, k):
    """m_k(u) = int_0^1 t^k e^(u t) dt for real or complex u (NumPy, double precision): the
    power series below |u| = 1, the recursion m_k = (e^u - k m_{k-1}) / u above it."""
    u = np.asarray(u)
    u = u.astype(np.result_type(u.dtype, np.float64))
    small = np.abs(u) < 1.0
    with np.errstate(all="ignore"):
        inner = np.where(small, u, 0.0)
        term = np.ones_like(inner)                       # u^m / m!
        series = term / (k + 1)
        for m in range(1, 20):                           # 1 / 20! < 1e-18
            term = term * inner / m
            series = series + term / (m + k + 1)
        outer = np.where(small, 1.0, u)
        moment = np.expm1(outer) / outer
        for j in range(1, k + 1):
            moment = (np.exp(outer) - j * moment) / outer
    return np.where(small, series, moment)


def _float_dtype(x, name):
    """x's floating dtype (float64 for integers); complex x is refused: these impls compute
    real functions of real arguments (their casts would drop an imaginary part)."""
    dtype = np.asarray(x).dtype
    if dtype.kind == "c":
        raise complex_error(f"{name} of complex values")
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _exprel(x, order):
    dtype = _float_dtype(x, "exprel")
    out = exp_moment(x, order).astype(dtype)
    return out if out.ndim else out[()]           # a scalar for a scalar, as SciPy's


def _sinc(x, order):
    # sinc^(k)(x) = pi^k int_0^1 t^k cos(pi x t + k pi / 2) dt = pi^k Re(i^k m_k(i pi x)).
    dtype = _float_dtype(x, "sinc")
    moment = exp_moment(1j * math.pi * np.asarray(x, np.float64), order)
    return (math.pi ** order * (1j ** order * moment).real).astype(dtype)


def _moment_statements(function: str):
    """For reading: order 0 as SciPy's or NumPy's function, a derivative as the impl's
    moment m_k (`exp_moment`) in NumPy statements."""
    @for_reading
    def emit(targets, args, code, order):
        (out,), (x,) = targets, args
        cast = _cast(code.equation.outputs[0].aval.dtype)
        if order == 0:
            return [f"{out} = {function}({x}){cast}"]
        u, small, inner, term, series, outer, moment, m = (code.fresh(hint) for hint in (
            "u", "small", "inner", "term", "series", "outer", "moment", "m"))
        pi = "np.pi" if order == 1 else f"np.pi ** {order}"
        lines = [f"{u} = 1j * np.pi * {x}" if function == "np.sinc" else
                 f"{u} = np.asarray({x}, np.float64)",
                 f"# the moment int_0^1 t^{order} e^(u t) dt: a series where |u| < 1",
                 f"{small} = np.abs({u}) < 1.0",
                 f"{inner} = np.where({small}, {u}, 0.0)",
                 f"{term} = np.ones_like({inner})",
                 f"{series} = {term} / {order + 1}",
                 f"for {m} in range(1, 20):",
                 f"    {term} = {term} * {inner} / {m}",
                 f"    {series} = {series} + {term} / ({m} + {order + 1})",
                 f"{outer} = np.where({small}, 1.0, {u})",
                 f"{moment} = np.expm1({outer}) / {outer}"]
        lines += [f"{moment} = (np.exp({outer}) - {j} * {moment}) / {outer}"
                  for j in range(1, order + 1)]
        moment_value = f"np.where({small}, {series}, {moment})"
        if function == "np.sinc":
            return lines + [f"{out} = ({pi} * ({1j ** order!r} * {moment_value}).real){cast}"]
        return lines + [f"{out} = {moment_value}{cast}"]
    return emit


def _cast(dtype) -> str:
    return "" if np.dtype(dtype) == np.float64 else f".astype(np.{np.dtype(dtype).name})"


# The derivative of order `order` of (e^x - 1) / x and of sin(pi x) / (pi x).
exprel = unary("exprel", None, lambda x, order: exprel(x, order=order + 1), impl=_exprel,
               emit_statements=_moment_statements("sp.exprel"))
sinc = unary("sinc", None, lambda x, order: sinc(x, order=order + 1), impl=_sinc,
             emit_statements=_moment_statements("np.sinc"))
