"""scipy.special, differentiable: every function of pullback.scipy.special against SciPy.

Each row is checked like those of test_numpy_coverage: SciPy's value, then grad and jvp
against finite differences to second order, SciPy's own ufunc on traced values (through
`__array_ufunc__`) and the pullback.scipy.special function alike, in float64 and float32.
Inputs lie inside each function's domain.
"""
import numpy as np
import pytest
import scipy.special as sp

import pullback
from helpers import raises
from pullback.errors import UnsupportedFunctionError
from pullback.operators import HESSIAN_MODES
from pullback.scipy import special
from test_numpy_coverage import (Draw, check_row_float32, check_row_grads, check_value,
                                 grad_cases, pair)


def ufunc(name, make):
    """A row for the scipy.special ufunc `name`, through SciPy and through pullback."""
    return pair(name, getattr(sp, name), getattr(special, name), make)


def of_x(name, *constants, make=lambda d: (d.pos(3, 4),)):
    """A row differentiating only the last argument (the others: constants, e.g. orders)."""
    return pair(f"{name}{constants}", lambda x: getattr(sp, name)(*constants, x),
                lambda x: getattr(special, name)(*constants, x), make)


pos = lambda d: (d.pos(3, 4),)                       # noqa: E731
real = lambda d: (d.u(3, 4, lo=-2, hi=2),)           # noqa: E731
two_pos = lambda d: (d.pos(3, 4), d.pos(4))          # noqa: E731

ROWS = [
    ufunc("gamma", pos), ufunc("loggamma", pos), ufunc("rgamma", pos),
    ufunc("gammaln", pos), ufunc("digamma", pos), ufunc("psi", pos),
    ufunc("beta", two_pos), ufunc("betaln", two_pos),
    of_x("gammainc", 1.5), of_x("gammaincc", 0.7),
    of_x("betainc", 2.0, 1.5, make=lambda d: (d.u(3, 4, lo=0.1, hi=0.9),)),
    ufunc("erfinv", lambda d: (d.u(3, 4, lo=-0.9, hi=0.9),)),
    ufunc("erfcinv", lambda d: (d.u(3, 4, lo=0.1, hi=1.9),)),
    ufunc("erfcx", real), ufunc("ndtri", lambda d: (d.u(3, 4, lo=0.05, hi=0.95),)),
    ufunc("log_ndtr", real), ufunc("dawsn", real),
    ufunc("xlog1py", lambda d: (d.u(3, 4), d.u(4, lo=-0.5, hi=2.0))),
    ufunc("xlogy", lambda d: (d.u(3, 4), d.pos(4))),
    ufunc("entr", pos), ufunc("rel_entr", two_pos), ufunc("kl_div", two_pos),
    ufunc("i0", real), ufunc("i0e", lambda d: (d.away(3, 4),)), ufunc("i1", real),
    ufunc("i1e", lambda d: (d.away(3, 4),)),
    of_x("iv", 1.5), of_x("iv", 2, make=real), of_x("ive", 2, make=lambda d: (d.away(3, 4),)),
    of_x("kv", 0.5), of_x("kve", 2.5),
    ufunc("j0", real), ufunc("j1", real), of_x("jv", 2.5), of_x("jv", 1, make=real),
    ufunc("y0", pos), ufunc("y1", pos), of_x("yn", 2), of_x("yv", 1.5),
    of_x("zeta", 3.0), ufunc("spence", lambda d: (d.u(3, 4, lo=0.2, hi=3.0),)),
    ufunc("exp1", pos), ufunc("expi", pos), of_x("expn", 0), of_x("expn", 3),
    ufunc("exprel", real), ufunc("boxcox", lambda d: (d.pos(3, 4), d.u(4))),
    pair("boxcox(lmbda=0)", lambda l: sp.boxcox(np.array([0.5, 2.0]), l),
         lambda l: special.boxcox(np.array([0.5, 2.0]), l), lambda d: (np.zeros((), d.dtype),)),
    ufunc("boxcox1p", lambda d: (d.pos(3, 4), d.u(4))),
    ufunc("expit", real), ufunc("logit", lambda d: (d.u(3, 4, lo=0.05, hi=0.95),)),
    ufunc("erf", real), ufunc("erfc", real), ufunc("ndtr", real),
    ufunc("expm1", real), ufunc("log1p", pos), ufunc("cbrt", pos), ufunc("exp2", real),
    ufunc("softplus", real),
    pair("polygamma", lambda x: sp.polygamma(2, x), lambda x: special.polygamma(2, x), pos,
         dispatch=False),
    pair("polygamma-orders", lambda x: sp.polygamma([[0], [1], [3]], x),
         lambda x: special.polygamma([[0], [1], [3]], x), lambda d: (d.pos(4),), dispatch=False),
    pair("multigammaln", lambda a: sp.multigammaln(a, 3), lambda a: special.multigammaln(a, 3),
         lambda d: (d.u(3, lo=1.5, hi=3.0),), dispatch=False),
    pair("softmax", sp.softmax, special.softmax, lambda d: (d.u(3, 4),),
         dispatch=False),
    pair("softmax-axis", lambda x: sp.softmax(x, axis=0), lambda x: special.softmax(x, axis=0),
         lambda d: (d.u(3, 4),), dispatch=False),
    pair("log_softmax", lambda x: sp.log_softmax(x, axis=-1),
         lambda x: special.log_softmax(x, axis=-1), lambda d: (d.u(3, 4),), dispatch=False),
    pair("logsumexp", lambda x: sp.logsumexp(x, axis=1), lambda x: special.logsumexp(x, axis=1),
         lambda d: (d.u(3, 4),), dispatch=False),
    pair("logsumexp-all", sp.logsumexp, special.logsumexp, lambda d: (d.u(3, 4),),
         dispatch=False),
    pair("logsumexp-b", lambda x, b: sp.logsumexp(x, axis=0, b=b),
         lambda x, b: special.logsumexp(x, axis=0, b=b), lambda d: (d.u(3, 4), d.pos(3, 4)),
         dispatch=False),
    pair("logsumexp-keepdims", lambda x: sp.logsumexp(x, axis=(0, 2), keepdims=True),
         lambda x: special.logsumexp(x, axis=(0, 2), keepdims=True),
         lambda d: (d.u(2, 3, 4),), dispatch=False),
    pair("logsumexp-return_sign", lambda x, b: sp.logsumexp(x, axis=1, b=b, return_sign=True),
         lambda x, b: special.logsumexp(x, axis=1, b=b, return_sign=True),
         lambda d: (d.u(3, 4), np.array([-3.0, 0.5, 1.0, 0.25], d.dtype)), dispatch=False),
    ufunc("gammasgn", lambda d: (d.u(3, 4, lo=-2.8, hi=2.8),)),
]
BY_NAME = {row.name: row for row in ROWS}
assert len(BY_NAME) == len(ROWS)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_value(name):
    check_value(BY_NAME[name], rtol=1e-11)


@pytest.mark.parametrize("name, impl", grad_cases(ROWS))
def test_grads(name, impl):
    check_row_grads(BY_NAME[name], impl)


@pytest.mark.parametrize("name, impl", grad_cases(ROWS))
def test_grads_float32(name, impl):
    check_row_float32(BY_NAME[name], impl)


@pytest.mark.parametrize("name", ["gamma", "iv(1.5,)", "boxcox(lmbda=0)", "softmax"])
def test_hessian_modes_agree(name):
    row = BY_NAME[name]
    args = row.make(Draw(name, np.float64))
    weights = np.random.default_rng(0).uniform(0.5, 1.5, np.shape(row.np_fn(*args)))

    def f(x):
        return np.sum(row.pnp_fn(x) * weights)
    hessians = [pullback.hessian(f, mode=mode)(args[0]) for mode in HESSIAN_MODES]
    for h in hessians[1:]:
        np.testing.assert_allclose(h, hessians[0], rtol=1e-10, atol=1e-12)


SAMPLE = ["gamma", "iv(1.5,)", "betainc(2.0, 1.5)", "logsumexp-b", "softmax-axis", "expn(3,)",
          "polygamma-orders"]


@pytest.mark.parametrize("name", SAMPLE)
def test_vmap_and_jit_match_eager(name):
    row = BY_NAME[name]
    args = row.make(Draw(name, np.float64))
    examples = [[x * (1.0 + 0.05 * k) for x in args] for k in range(3)]
    stacked = [np.stack(xs) for xs in zip(*examples)]
    batched = pullback.vmap(row.pnp_fn)(*stacked)
    np.testing.assert_allclose(batched, np.stack([row.np_fn(*xs) for xs in examples]),
                               rtol=1e-12)

    def loss(*a):
        return np.sum(row.pnp_fn(*a) ** 2)
    np.testing.assert_allclose(pullback.jit(loss)(*args), loss(*args), rtol=1e-13)
    np.testing.assert_allclose(pullback.jit(pullback.grad(loss))(*args),
                               pullback.grad(loss)(*args), rtol=1e-11)


def test_boxcox_is_exact_at_lambda_zero_to_third_order():
    """d^k/dl^k boxcox(x, l) at l = 0 is log(x)^(k+1) / (k+1)."""
    x = np.array([0.5, 2.0, 3.0])
    f = lambda l: np.sum(sp.boxcox(x, l))                   # noqa: E731
    log = np.log(x)
    assert np.isclose(pullback.grad(f)(0.0), np.sum(log ** 2) / 2, rtol=1e-14)
    assert np.isclose(pullback.hessian(f)(0.0), np.sum(log ** 3) / 3, rtol=1e-14)
    assert np.isclose(pullback.grad(pullback.grad(pullback.grad(f)))(0.0),
                      np.sum(log ** 4) / 4, rtol=1e-14)


@pytest.mark.parametrize("fn, shift", [(sp.xlogy, 0.0), (sp.xlog1py, 1.0)])
def test_xlogy_and_xlog1py_are_flat_in_y_where_x_is_zero(fn, shift):
    """xlogy(0, y) = xlog1py(0, y) = 0 for every y: their y-derivatives there are 0, also
    where y + shift is 0 (x / y would be 0 / 0), to second order, in every mode; the mixed
    second derivative stays 1 / (y + shift) (inf at the pole), the Hessian symmetric."""
    x = np.array([0.0, 0.0, 2.0])
    y = np.array([0.0, 3.0, 1.5]) - shift
    u = y + shift

    def f(y):
        return np.sum(fn(x, y))
    with np.errstate(divide="ignore"):
        exact = np.array([0.0, 0.0, x[2] / u[2]])
        np.testing.assert_allclose(pullback.grad(f)(y), exact, rtol=1e-14)
        np.testing.assert_allclose(pullback.forward_grad(f)(y), exact, rtol=1e-14)
        for mode in HESSIAN_MODES:
            np.testing.assert_allclose(pullback.hessian(f, mode=mode)(y),
                                       np.diag(-x / np.where(x == 0, 1.0, u) ** 2), rtol=1e-14)
            for xk, uk in zip(x, u):
                h = pullback.hessian(lambda v: fn(v[0], v[1]), mode=mode)(
                    np.array([xk, uk - shift]))
                np.testing.assert_allclose(h, [[0.0, 1 / uk], [1 / uk, -xk / uk ** 2
                                                              if xk else 0.0]], rtol=1e-14)


def test_xdivy_is_zero_where_x_is_and_its_derivatives_are_x_over_y_s():
    """xdivy(x, y): x / y, and 0 where x is 0 (whatever y); derivatives 1 / y and
    -x / y^2 (0 where x is)."""
    from pullback.primitives.elementwise import xdivy
    x = np.array([0.0, 0.0, 0.0, 0.0, 3.0, -2.0])
    y = np.array([0.0, np.inf, np.nan, 2.0, 0.5, 4.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(xdivy(x, y), [0.0, 0.0, 0.0, 0.0, 6.0, -0.5])
        assert xdivy(0.0, 0.0) == 0.0 and type(xdivy(0.0, 0.0)) is np.float64
        gx, gy = pullback.grad(lambda x, y: np.sum(xdivy(x, y)), argnums=(0, 1))(x[3:], y[3:])
    np.testing.assert_allclose(gx, 1 / y[3:], rtol=1e-15)
    np.testing.assert_allclose(gy, [0.0, -12.0, 0.125], rtol=1e-15)


def test_sinc_is_exact_at_zero_to_fourth_order():
    """sinc(x) = 1 - (pi x)^2 / 6 + (pi x)^4 / 120 - ...: its derivatives at 0."""
    d = pullback.grad
    exact = [0.0, -np.pi ** 2 / 3, 0.0, np.pi ** 4 / 5]
    got = [d(np.sinc)(0.0), d(d(np.sinc))(0.0), d(d(d(np.sinc)))(0.0),
           d(d(d(d(np.sinc))))(0.0)]
    np.testing.assert_allclose(got, exact, rtol=1e-13, atol=1e-15)


def test_gammainc_in_its_parameter_raises_a_clear_error():
    with raises(UnsupportedFunctionError, "scipy.special.gammainc", "`a`"):
        pullback.grad(lambda a: sp.gammainc(a, 1.5))(2.0)
    with raises(UnsupportedFunctionError, "scipy.special.zeta", "`x`"):
        pullback.grad(lambda x: special.zeta(x))(2.5)


# ------------------------------------- issue 10 §1: complex values, where SciPy takes them

Z = np.array([0.6 + 0.4j, 1.3 - 0.7j, 0.9 + 1.1j])     # off the branch cuts (negative axis)
ORDER = np.array([0.0, 1.0, 2.5])
# name -> function of the complex argument. Holomorphic: the
# real rule holds in complex arithmetic (JAX's convention, core/numbers.py).
COMPLEX_SPECIAL = {
    "erf": sp.erf, "erfc": sp.erfc, "erfcx": sp.erfcx, "dawsn": sp.dawsn,
    "ndtr": sp.ndtr, "log_ndtr": sp.log_ndtr, "exp1": sp.exp1,
    "expi": sp.expi, "spence": sp.spence,
    "xlogy": lambda z: sp.xlogy(z, z + 1.0), "xlog1py": lambda z: sp.xlog1py(z, z),
    "jv": lambda z: sp.jv(ORDER, z), "iv": lambda z: sp.iv(ORDER, z),
    "kv": lambda z: sp.kv(ORDER, z), "kve": lambda z: sp.kve(ORDER, z),
    "yv": lambda z: sp.yv(ORDER, z),
}


@pytest.mark.parametrize("name", sorted(COMPLEX_SPECIAL))
def test_issue10_complex_special_functions_are_holomorphic(name):
    """SciPy's functions that take complex values and are holomorphic there: values equal
    SciPy's, derivatives match finite differences along real and imaginary directions, in
    both modes, to second order (holomorphic gradients multiply by f'(z))."""
    f = COMPLEX_SPECIAL[name]
    np.testing.assert_allclose(pullback.jvp(f, (Z,), (Z,))[0], f(Z), rtol=1e-14)
    pullback.check_grads(f, (Z,), order=2)
    pullback.check_grads(f, (Z.astype(np.complex64),), order=1)


def test_issue10_complex_special_functions_without_a_complex_rule_raise():
    """Where the derivative is not holomorphic (ive scales by exp(-|Re z|)) or has no second
    derivative for complex values (gamma, loggamma, rgamma and digamma: SciPy's polygamma
    takes no complex values), a complex derivative raises ComplexValueError rather than
    answering wrong."""
    from pullback.errors import ComplexValueError

    def loss(f):
        return lambda x: np.sum(np.abs(f(Z * x)) ** 2)
    for derivative in (pullback.grad(loss(lambda z: sp.ive(ORDER, z))),
                       pullback.grad(loss(sp.digamma)), pullback.grad(loss(sp.gamma))):
        with raises(ComplexValueError, "complex values"):
            derivative(np.ones(3))


def test_issue10_yn_and_expn_derivatives_truncate_a_non_integer_order():
    """SciPy truncates a non-integer order of yn and expn to an int (with a warning); their
    derivatives in x did the n - 1 and n + 1 steps before truncating, which gave wrong
    values for orders in (0, 1) (expn(0.3, x)' was -E_0 instead of E_0's derivative)."""
    n = np.array([0.3, 0.5, 1.7, 2.2])
    x = np.array([0.6, 1.1, 2.0, 1.5])
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        for f in (lambda x: sp.expn(n, x), lambda x: sp.yn(n, x)):
            pullback.check_grads(f, (x,), order=2)


def _scipy_unary_ufuncs():
    from pullback.numpy._elementwise import UFUNCS, _is_scipy_unary
    return sorted(f.__name__ for f in UFUNCS if _is_scipy_unary(f)
                  and not f.__name__.startswith("_"))


@pytest.mark.parametrize("name", _scipy_unary_ufuncs())
def test_scipy_unary_ufuncs_on_tracers_compute_in_scipys_dtype(name):
    """A SciPy ufunc of one argument computes in its loops' dtype (float16 in float32 or
    float64), and most have no loop for complex values: on a tracer, through NumPy code
    (`sp.erf(x)`), pullback.scipy.special or pullback.numpy (`pnp.erf(x)`), in every mode,
    derivatives are those of the converted input (NumPy code's float16 partial derivatives
    were evaluated in float16 before the cast: 5e-4 off for entr; pnp.exprel stayed
    float16), and a complex value a ComplexValueError (a bare TypeError from SciPy's loop
    under vmap and jit)."""
    from pullback.errors import ComplexValueError
    import pullback.numpy as pnp
    ufunc = getattr(sp, name)
    x = np.array([0.3, 0.6, 0.9], np.float16)
    wide = ufunc.resolve_dtypes((np.dtype(np.float16), None))[0]
    namesakes = [getattr(special, name)]            # and pnp's, where not NumPy's namesake
    namesakes += [getattr(pnp, name)] if getattr(np, name, None) is None else []
    for f in (ufunc, *namesakes):
        value, tangent = pullback.pushforward(f, (x,), (np.ones_like(x),))
        expected = pullback.pushforward(ufunc, (x.astype(wide),), (np.ones(3, wide),))
        for got, want in zip((value, tangent), expected):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        gradient = pullback.grad(lambda x: np.sum(f(x)))(x)
        assert gradient.dtype == np.float16
        np.testing.assert_array_equal(gradient, pullback.grad(lambda x: np.sum(ufunc(x)))(
            x.astype(wide)).astype(np.float16))
    try:
        ufunc.resolve_dtypes((np.dtype(np.complex128), None))
        return                                  # SciPy computes complex values
    except TypeError:
        pass
    z = np.array([0.5 + 0.1j, 1.0 + 0.0j])
    for f in (ufunc, *namesakes):
        for call in (lambda: pullback.pushforward(f, (z,), (z,)), lambda: pullback.vmap(f)(z),
                     lambda: pullback.jit(f)(z)):
            with raises(ComplexValueError, "real values only"):
                call()
