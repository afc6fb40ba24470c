"""Ninth correctness review: derivative rules that cancelled at ordinary inputs (dawsn far
out, rgamma near 0 and the negative integers, i1e near 0) or overflowed (kl_div's log of a
ratio). Each test is named after the defect it pins down; references are closed forms or
series computed independently in NumPy and SciPy, compared with first and second derivatives
in every Hessian mode, eagerly and under jit, in float64 and float32."""
import math

import numpy as np
import pytest
import scipy.special as ss

import pullback
from pullback.scipy import special

MODES = ("reverse-over-reverse", "forward-over-reverse", "reverse-over-forward",
         "forward-over-forward")


def _check(function, x, first, second, rtol, atol=0.0):
    """function's first and second derivatives at the points x (one array) against
    references, by grad and by the diagonal of the Hessian of its sum in every mode, eager
    and jitted, each of x's dtype."""
    def loss(z):
        return np.sum(function(z))
    gradients = [pullback.grad(loss)(x), pullback.jit(pullback.grad(loss))(x)]
    hessians = [h(x) for mode in MODES for h in (pullback.hessian(loss, mode=mode),
                                                 pullback.jit(pullback.hessian(loss, mode=mode)))]
    for got in gradients:
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, first, rtol=rtol, atol=atol)
    for got in hessians:
        assert got.dtype == x.dtype
        np.testing.assert_allclose(np.diagonal(got), second, rtol=rtol, atol=atol)


# ------------------------------------ dawsn far out


def _dawsn_reference(x):
    """dawsn' and dawsn'' in float64: for |x| >= 5 from D's asymptotic series
    D(x) = sum_k a_k x^-(2k+1), a_k = (2k-1)!! / 2^(k+1), differentiated term by term and
    cut at its smallest term (error ~ e^-x^2); nearer 0 from 1 - 2 x D (no cancellation
    to speak of there)."""
    x = np.asarray(x, np.float64)
    first, second = np.empty_like(x), np.empty_like(x)
    for i, t in enumerate(x):
        d = ss.dawsn(t)
        if abs(t) < 5.0:
            first[i] = 1.0 - 2.0 * t * d
            second[i] = -2.0 * d - 2.0 * t * first[i]
            continue
        term, d1, d2 = 0.5 / t, 0.0, 0.0              # a_k x^-(2k+1)
        for k in range(200):
            d1 -= (2 * k + 1) * term / t
            d2 += (2 * k + 1) * (2 * k + 2) * term / (t * t)
            ratio = (2 * k + 1) / (2.0 * t * t)
            if ratio >= 1.0 or abs(term) < 1e-20 * abs(0.5 / t):    # smallest, or negligible
                break
            term *= ratio
        first[i], second[i] = d1, d2
    return first, second


def test_dawsn_derivatives_do_not_cancel_far_out():
    """dawsn'(x) = 1 - 2 x dawsn(x) cancels for large |x| (dawsn ~ 1/(2x)): dawsn'' was 12% off
    at x = 7236 (2.953e-12 for 2.639e-12), 8.27e-13 for 1.0e-15 at 1e5, dawsn' 1.00000008
    times its value at 1e5 and 0 at 1e8 (for -5e-17); in float32 dawsn' -5.4836e-6 for
    -5.5556e-6 and dawsn'' -4.3e-5 for 3.70e-8 at 300. Beyond |x| = 15 (5 in float32) the
    derivative's asymptotic series: within rounding, and continuous across the cutoff."""
    far = np.array([15.001, 20.0, 100.0, 1e3, 7236.0, -7236.0, 1e5, 1e8])
    near = np.array([0.5, -3.0, 10.0, 14.999, -14.999])
    for points, rtol in ((far, 1e-14), (near, 2e-11)):
        _check(special.dawsn, points, *_dawsn_reference(points), rtol=rtol)
    far32 = np.array([5.001, 7.0, 20.0, 300.0, -300.0, 1e4], np.float32)
    near32 = np.array([0.5, -3.0, 4.999, -4.999], np.float32)
    for points, rtol in ((far32, 2e-5), (near32, 3e-4)):
        _check(special.dawsn, points, *_dawsn_reference(points), rtol=rtol)


def test_dawsn_keeps_its_formula_for_complex_values():
    """dawsn is holomorphic: complex values keep dawsn' = 1 - 2 z dawsn(z), also far out."""
    z = np.array([3.0 + 1.0j, 30.0 + 2.0j, 40.0 + 0.0j, 0.5 - 0.2j])
    d = ss.dawsn(z)
    first = 1.0 - 2.0 * z * d
    gradient = pullback.jacfwd(special.dawsn, holomorphic=True)(z)
    np.testing.assert_allclose(np.diagonal(gradient), first, rtol=1e-13)
    second = pullback.hessian(lambda w: np.sum(special.dawsn(w)), holomorphic=True)(z)
    np.testing.assert_allclose(np.diagonal(second), -2.0 * d - 2.0 * z * first, rtol=1e-12)


# ------------------------------------ rgamma near its zeros


def _rgamma_reference(x):
    """rgamma' and rgamma'' in float64. For x >= 1/2 the closed forms -psi / gamma and
    (psi^2 - psi_1) / gamma; below, 1/gamma(x) = P(x) / gamma(x + n + 1) with
    P(x) = x (x + 1) ... (x + n), n the nearest integer to -x (at least 0), differentiated by
    the product rule: 1/gamma near 1, P's products of factors, nothing cancels."""
    x = np.asarray(x, np.float64)
    first, second = np.empty_like(x), np.empty_like(x)
    for i, t in enumerate(x):
        if t >= 0.5:
            psi, psi1, r = ss.digamma(t), ss.polygamma(1, t), ss.rgamma(t)
            first[i], second[i] = -psi * r, (psi * psi - psi1) * r
            continue
        n = max(0, int(round(-t)))
        factors = [t + j for j in range(n + 1)]

        def product(skip):
            return math.prod(f for j, f in enumerate(factors) if j not in skip)
        p = product(())
        p1 = sum(product((j,)) for j in range(n + 1))
        p2 = sum(product((j, k)) for j in range(n + 1) for k in range(n + 1) if j != k)
        y = t + n + 1
        psi, psi1, r = ss.digamma(y), ss.polygamma(1, y), ss.rgamma(y)
        r1, r2 = -psi * r, (psi * psi - psi1) * r
        first[i], second[i] = p1 * r + p * r1, p2 * r + 2.0 * p1 * r1 + p * r2
    return first, second


def test_rgamma_derivatives_near_its_zeros():
    """rgamma's partial -rgamma(x) digamma(x) is a small times a large factor near 0 and the
    negative integers, and its derivative cancels terms of size 1/(x + n): rgamma'' at 1e-16
    was 0 for 1.1544 (1.154541 at 1e-12), at -1 + 1e-9 205.48 for 0.8456, at -5 + 1.15e-14
    1.5e14 for 409.47 and rgamma' -119.13 for -120; in float32 rgamma'' at 2.3e-8 was 0. Below
    1/2 it is the reflection's derivative, sin(pi x) from x's distance to the nearest integer:
    within rounding, continuous at 1/2."""
    points = np.array([1e-8, 1e-12, 1e-16, -1e-16, 0.0, -1.0 + 1e-9, -3.0 + 1e-10,
                       -5.0 + 1.15e-14, -5.0, -0.3, -2.5, -7.7, 0.45, 0.49999, 0.50001, 1.7, 3.2])
    _check(special.rgamma, points, *_rgamma_reference(points), rtol=1e-13)
    points32 = np.array([2.3e-8, 1e-3, -1.0 + 1e-4, -3.0 + 2e-6, -5.0, -0.3, -2.5, 0.45, 0.49,
                         0.51, 1.7, 3.2], np.float32)
    _check(special.rgamma, points32, *_rgamma_reference(points32), rtol=1e-5)


# ------------------------------------ i1e and i0e near 0


def _bessel_scaled(x):
    return [ss.ive(v, x) for v in range(4)]


def test_i1e_second_derivative_near_zero():
    """i1e's partial i0e - i1e / x - sign(x) i1e: the quotient rule cancels two terms of size
    1/(2x) near 0, so i1e'' was +2 (reverse over reverse) or +1.5 (forward over reverse) for
    -1 at x = 1e-16, -0.9999952 for -0.9999999998 at 1e-10, 0 for +1 at -4.16e-8 in float32.
    Below |x| = 1 the partial is (i0e + ive(2, x)) / 2 - sign(x) i1e: within rounding, and
    continuous at |x| = 1. References: I1' = (I0 + I2) / 2, I1'' = (3 I1 + I3) / 4."""
    def reference(x):
        x64 = np.asarray(x, np.float64)
        s = np.sign(x64)
        e0, e1, e2, e3 = _bessel_scaled(x64)
        first = 0.5 * (e0 + e2) - s * e1
        return first, 1.75 * e1 + 0.25 * e3 - s * (e0 + e2)
    points = np.array([1e-8, 1e-10, 1e-12, 1e-16, -1e-16, -0.3, 0.999, 1.001, -0.999, -1.001,
                       2.5, -7.0])
    _check(special.i1e, points, *reference(points), rtol=1e-13, atol=1e-15)
    points32 = np.array([-4.16e-8, 1e-4, 0.3, 0.999, 1.001, -2.5], np.float32)
    _check(special.i1e, points32, *reference(points32), rtol=1e-5, atol=1e-7)


def test_i0e_second_and_third_derivatives_near_zero():
    """i0e' = i1e - sign(x) i0e differentiates i1e's partial: i0e'' is right near 0 (x != 0,
    i0e has a kink there), and i0e''' was wrong with i1e'' (+1 for -2.5 at 1e-16, -2.49976 at
    1e-12). References: I0'' = (I0 + I2) / 2, I0''' = (3 I1 + I3) / 4, times e^-|x| by
    Leibniz's rule."""
    def reference(x):
        x64 = np.asarray(x, np.float64)
        s = np.sign(x64)
        e0, e1, e2, e3 = _bessel_scaled(x64)
        first = e1 - s * e0
        second = 1.5 * e0 + 0.5 * e2 - 2.0 * s * e1
        third = 0.75 * e1 + 0.25 * e3 - 1.5 * s * (e0 + e2) + 3.0 * e1 - s * e0
        return first, second, third
    points = np.array([1e-8, 1e-12, 1e-16, -1e-16, -0.3, 0.999, 1.001, -2.5])
    first, second, third = reference(points)
    _check(special.i0e, points, first, second, rtol=1e-13, atol=1e-15)
    thirds = [pullback.grad(pullback.grad(pullback.grad(special.i0e)))(x) for x in points]
    np.testing.assert_allclose(thirds, third, rtol=1e-13, atol=1e-15)
    jitted = pullback.jit(pullback.jacfwd(pullback.jacfwd(pullback.grad(special.i0e))))
    np.testing.assert_allclose([jitted(x) for x in points], third, rtol=1e-13, atol=1e-15)
    points32 = np.array([-4.16e-8, 1e-4, 0.3, 0.999, 1.001, -2.5], np.float32)
    _check(special.i0e, points32, *reference(points32)[:2], rtol=1e-5, atol=1e-7)


# ------------------------------------ kl_div at extreme ratios


def test_kl_div_x_derivative_at_extreme_ratios():
    """kl_div's x-derivative log(x / y) overflowed or underflowed with the ratio: -inf at
    (1e-300, 1e300) for -1381.55 (float32: -inf at (1e-30, 1e30) for -138.16). Now
    log(x) - log(y), as rel_entr's; the Hessian [[1/x, -1/y], [-1/y, x/y^2]]."""
    def f(x, y):
        return special.kl_div(x, y)
    for x, y, dtype, rtol in ((1e-300, 1e300, np.float64, 1e-14),
                              (1e300, 1e-300, np.float64, 1e-14), (2.0, 3.0, np.float64, 1e-14),
                              (1e-30, 1e30, np.float32, 1e-6), (2.0, 3.0, np.float32, 1e-6)):
        x, y = dtype(x), dtype(y)
        expected = np.log(np.float64(x)) - np.log(np.float64(y))
        for gradient in (pullback.grad(f)(x, y), pullback.jit(pullback.grad(f))(x, y)):
            assert gradient.dtype == dtype
            np.testing.assert_allclose(gradient, expected, rtol=rtol)
        if x > y:
            continue                                 # x / y overflows: the y-derivative is -inf
        hessian = np.array([[1 / x, -1 / y], [-1 / y, x / y / y]])      # (in x's dtype)
        for mode in MODES:
            for h in (pullback.hessian(f, argnums=(0, 1), mode=mode),
                      pullback.jit(pullback.hessian(f, argnums=(0, 1), mode=mode))):
                np.testing.assert_allclose(np.array(h(x, y)), hessian, rtol=rtol)


# ------------------------------------ finite differences at ordinary points


@pytest.mark.parametrize("name, low, high", [("dawsn", -30.0, 30.0), ("rgamma", -6.0, 4.0),
                                             ("i1e", -3.0, 3.0), ("i0e", -3.0, 3.0),
                                             ("kl_div", 0.1, 5.0)])
def test_changed_rules_agree_with_finite_differences(name, low, high):
    """The rules changed here against finite differences to second order at random
    ordinary points on both sides of their cutoffs."""
    rng = np.random.default_rng(9)
    args = [rng.uniform(low, high, 12) for _ in range(2 if name == "kl_div" else 1)]
    pullback.testing.check_grads(getattr(special, name), args, order=2)
