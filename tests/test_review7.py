"""Seventh correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet in the leftovers of the earlier reviews (SciPy's dtypes,
statistics in a given dtype, quantiles in float32, matrix functions at singular matrices).
Each test is named after the defect it pins down."""
import io
import warnings

import numpy as np
import pytest
import scipy.special

import pullback
from helpers import raises
from pullback.errors import ComplexValueError, UnsupportedFunctionError, ZeroWeightsError
from pullback.scipy import special

# Every ufunc of pullback.scipy.special, by name, as SciPy has it.
_SCIPY_UFUNCS = sorted(name for name in dir(special) if not name.startswith("_")
                       and isinstance(getattr(scipy.special, name, None), np.ufunc))
_NARROW_INPUTS = [np.array([1.0, 0.5, 2.0], np.float16), np.array([1.0, 0.5, 2.0], np.float32),
                  np.array([1, 0, 2], np.int8), np.array([1, 0, 2], np.uint8),
                  np.array([1, 0, 2], np.int64), np.array([True, False, True])]


# ------------------------------------ scipy.special


@pytest.mark.parametrize("name", _SCIPY_UFUNCS)
def test_item1_scipy_special_ufuncs_compute_in_scipys_dtype(name):
    """SciPy's expm1, log1p, cbrt, exp2 and exprel compute float16, booleans and small
    integers in float64; pullback computed them in NumPy's dtype (float16) wherever they
    shared NumPy's primitive, eagerly, under jit and in every tracer's fast path. Every
    ufunc of the namespace, given the same dtype in every argument, is SciPy's dtype."""
    ufunc = getattr(scipy.special, name)
    if ufunc.nout != 1:
        return
    for x in _NARROW_INPUTS:
        args = (x,) * ufunc.nin
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                expected = ufunc(*args).dtype
            except TypeError:
                continue
            results = {"namespace": getattr(special, name)(*args),
                       "jit": pullback.jit(lambda *a: ufunc(*a))(*args),
                       "vmap": pullback.vmap(lambda *a: ufunc(*a))(*args)}
            if x.dtype.kind == "f" and ufunc.nin == 1:
                results["jvp"] = pullback.jvp(ufunc, (x,), (x,))[0]
                results["reverse"] = pullback.vjp(ufunc, x)[0]
        for how, result in results.items():
            assert result.dtype == expected, (name, x.dtype, how, result.dtype, expected)


def test_item1_numpy_names_stay_numpys_and_python_numbers_convert():
    """pullback.numpy.expm1 (log1p, cbrt, exp2) is NumPy's, float16 in float16, though SciPy's
    ufuncs of those names share its primitive; pullback.numpy's astype of a Python number
    to float64 returned the number itself (np.dtype(None) is float64), so SciPy's expm1 of
    True was float16; exprel of a number was a 0-d array."""
    import pullback.numpy as pnp
    half = np.float16(1.0)
    for name in ("expm1", "log1p", "cbrt", "exp2"):
        for result in (getattr(pnp, name)(half), pullback.jit(getattr(pnp, name))(half),
                       pullback.jvp(getattr(pnp, name), (half,), (half,))[0]):
            assert result.dtype == np.float16, name
        assert getattr(special, name)(True).dtype == getattr(scipy.special, name)(True).dtype
    assert type(special.exprel(2.5)) is type(scipy.special.exprel(2.5)) is np.float64


def test_item1_scipy_exp2_refuses_complex_values_as_scipy_does():
    """scipy.special.exp2 and cbrt have no loop for complex values (NumPy's exp2 has):
    pullback's computed 2**z."""
    z = np.array([1.0 + 1.0j])
    for fn in (special.exp2, special.cbrt, lambda v: pullback.jit(scipy.special.exp2)(v)):
        with raises(ComplexValueError, "scipy.special", "no loop for complex values"):
            fn(z)


# ------------------------------------ statistics


@pytest.mark.parametrize("fn", [np.var, np.std])
def test_item2_var_and_std_in_a_complex_dtype_are_numpys_and_integer_dtypes_refused(fn):
    """np.var(x, dtype=complex) is the real variance as a complex number; traced, it was a
    float. An integer dtype truncates NumPy's mean and squares on the way: traced, pullback
    gave the float variance (2.92 where NumPy's is 3); it is refused now."""
    x = np.array([[0.7, 1.9, -2.6], [3.3, 4.8, 5.1]])
    for axis in (None, 0, 1):
        for dtype in (np.complex64, np.complex128):
            expected = fn(x, axis=axis, dtype=dtype, ddof=1)
            got = pullback.jit(lambda a: fn(a, axis=axis, dtype=dtype, ddof=1))(x)
            assert got.dtype == expected.dtype
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    grad = pullback.grad(lambda a: fn(a, dtype=np.complex128).real)(x)
    np.testing.assert_allclose(grad, pullback.grad(fn)(x), rtol=1e-12)
    for dtype in (np.int64, np.int32, np.bool_):
        with raises(UnsupportedFunctionError, f"dtype={np.dtype(dtype)}", "floating dtype"):
            pullback.jit(lambda a: fn(a, dtype=dtype))(x)


_QUANTILE_METHODS = ["linear", "interpolated_inverted_cdf", "hazen", "weibull", "median_unbiased",
                     "normal_unbiased", "inverted_cdf", "averaged_inverted_cdf",
                     "closest_observation", "lower", "higher", "nearest", "midpoint"]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_item3_traced_quantiles_in_float32_and_float16_are_numpys_to_the_bit(dtype):
    """NumPy finds a Python q's positions in float64 and rounds the weight and its
    complement to x's precision; traced, pullback found them in x's precision (quantile 0.33
    of float32 values 1 ulp off) and the midpoint method's weight was a float64 (a float32
    input's quantile came back as a float64)."""
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(dtype)
    x[1, 2] = np.nan
    for q in (0.33, 0.77, np.array([0.2, 0.9], np.float32), np.array([0.4], np.float64)):
        for method in _QUANTILE_METHODS:
            for fn in (np.quantile, np.nanquantile):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = fn(x, q, axis=1, method=method)
                    got = pullback.jit(lambda a: fn(a, q, axis=1, method=method))(x)
                assert got.dtype == expected.dtype, (q, method, fn)
                np.testing.assert_array_equal(got, expected, err_msg=f"{q} {method} {fn}")


# ------------------------------------ custom rules

_NON_LINEAR = {"square": lambda c, t: c * t + t ** 2, "abs": lambda c, t: c * np.abs(t),
               "sign": lambda c, t: c * t * np.sign(t), "relu": lambda c, t: c * np.maximum(t, 0)}


@pytest.mark.parametrize("term", sorted(_NON_LINEAR))
def test_item4_custom_rules_not_linear_in_their_tangents_or_cotangents_are_refused(term):
    """The other mode transposes a rule at zero, where only its linear part shows: a jvp
    rule cos(x) t + t**2 gave jacfwd cos(x) + 1 but jacrev cos(x), and cos(x) |t| gave
    jacrev zero, silently; the same for a bwd rule under forward mode. Both now refuse a
    rule whose <c, L(t)> and <L^T c, t> disagree at random t and c."""
    nonlinear = _NON_LINEAR[term]

    @pullback.custom_jvp
    def by_jvp(a):
        return np.sin(a)
    by_jvp.defjvp(lambda p, t: (np.sin(p[0]), nonlinear(np.cos(p[0]), t[0])))

    @pullback.custom_vjp
    def by_vjp(a):
        return np.sin(a)
    by_vjp.defvjp(lambda a: (np.sin(a), np.cos(a)), lambda r, ct: (nonlinear(r, ct),))

    x = np.array([0.5, 1.0, 2.0])
    for run in (lambda: pullback.jacrev(by_jvp)(x), lambda: pullback.grad(
            lambda a: np.sum(by_jvp(a)))(x), lambda: pullback.jit(pullback.grad(
                lambda a: np.sum(by_jvp(a))))(x)):
        with raises(pullback.errors.CustomRuleError, "not linear in the input tangents"):
            run()
    for run in (lambda: pullback.jacfwd(by_vjp)(x),
                lambda: pullback.jvp(by_vjp, (x,), (np.ones(3),))):
        with raises(pullback.errors.CustomRuleError, "not linear in the output cotangents"):
            run()


def test_item4_linear_rules_pass_the_check_complex_and_float32_ones_too():
    """Real-linear maps of complex values (conj(t)) and float32 rules are linear under the
    check (its inner products take real parts; its tolerance is the precision's)."""
    @pullback.custom_jvp
    def conjugated(z):
        return np.conj(z) * 2.0
    conjugated.defjvp(lambda p, t: (np.conj(p[0]) * 2.0, np.conj(t[0]) * 2.0))
    z = np.array([1.0 + 2.0j, -0.5j])
    np.testing.assert_allclose(pullback.vjp(conjugated, z)[1](np.ones(2, complex))[0],
                               pullback.vjp(lambda v: np.conj(v) * 2.0, z)[1](
                                   np.ones(2, complex))[0])

    @pullback.custom_vjp
    def scaled(a):
        return np.float32(3.0) * a
    scaled.defvjp(lambda a: (np.float32(3.0) * a, None), lambda r, ct: (np.float32(3.0) * ct,))
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    assert np.array_equal(pullback.jacfwd(scaled)(x), 3.0 * np.eye(50, dtype=np.float32))


# ------------------------------------ holomorphic=True

_NOT_HOLOMORPHIC = {"conj": np.conj, "abs squared": lambda z: z * np.conj(z),
                    "real part": lambda z: np.real(z) + 0j, "modulus": lambda z: np.abs(z) * z}


@pytest.mark.parametrize("name", sorted(_NOT_HOLOMORPHIC))
def test_item5_holomorphic_true_of_a_function_that_is_not_is_refused(name):
    """holomorphic=True is a promise that f'(z) exists; it was not checked, so jacrev of
    z conj(z) gave 2 - 4j where jacfwd gave 2, and conj's Jacobian came back as the
    identity. grad, jacrev and jacfwd (so jacobian and hessian too) now check that the
    derivative is complex-linear at random directions."""
    f = _NOT_HOLOMORPHIC[name]
    z = np.array([1.0 + 2.0j, 0.5 - 1.0j])
    for run in (lambda: pullback.jacrev(f, holomorphic=True)(z),
                lambda: pullback.jacfwd(f, holomorphic=True)(z),
                lambda: pullback.grad(lambda v: np.sum(f(v)), holomorphic=True)(z)):
        with raises(pullback.errors.HolomorphicError, "not holomorphic", "complex-linear"):
            run()


def test_item5_holomorphic_functions_pass_the_check_in_every_operator():
    """Holomorphic functions (complex64 too) keep f'(z) in every operator."""
    for dtype in (np.complex128, np.complex64):
        z = np.array([1.0 + 2.0j, 0.5 - 1.0j], dtype)
        f = lambda v: v ** 3 * np.exp(v) + np.log(v)       # noqa: E731
        expected = np.diag(3 * z ** 2 * np.exp(z) + z ** 3 * np.exp(z) + 1 / z)
        rtol = 1e-5 if dtype == np.complex64 else 1e-12
        for jacobian in (pullback.jacrev, pullback.jacfwd):
            np.testing.assert_allclose(jacobian(f, holomorphic=True)(z), expected, rtol=rtol)
        np.testing.assert_allclose(pullback.grad(lambda v: np.sum(f(v)), holomorphic=True)(z),
                                   np.diag(expected), rtol=rtol)


# ------------------------------------ jit's Python operators


def test_item6_jit_of_numpy_functions_with_a_python_complex_constant_is_numpys():
    """Generated code wrote np.divide(1+2j, a) as `(1+2j) / a`, whose Python complex
    answers a NumPy float64 scalar itself: ZeroDivisionError at a = 0.0 where NumPy gives
    inf (and Python's complex power raised where NumPy gives NaN). A Python complex
    literal now keeps the NumPy function, in jit and in `show`'s printed programs."""
    functions = [lambda a: np.divide(1 + 2j, a), lambda a: np.power(0j, a - 1.0),
                 lambda a: np.true_divide(-1j, a) * a, lambda a: (1 + 2j) * a + 1j]
    for a in (np.float64(0.0), np.array(0.0), np.float32(0.0), np.array([0.0, 2.0])):
        for f in functions:
            with np.errstate(all="ignore"):
                expected, got = f(a), pullback.jit(f)(a)
            np.testing.assert_array_equal(got, expected)
            assert np.asarray(got).dtype == np.asarray(expected).dtype
    printed = pullback.show(functions[0], np.float64(1.0), file=io.StringIO())
    assert "np.divide((1+2j), a)" in printed


# ------------------------------------ linear algebra


@pytest.mark.parametrize("p", ["fro", 1, -1, np.inf, -np.inf])
def test_item7_traced_cond_of_a_singular_matrix_is_numpys_inf(p):
    """np.linalg.cond in a norm other than 2 inverts the matrix; NumPy's is inf for a
    singular one, traced pullback's raised LinAlgError (jit, grad). Now inf, its derivatives
    there NaN or infinite, and the regular matrices of the same stack as before."""
    stack = np.array([[[1.0, 2.0], [2.0, 4.0]], [[2.0, 1.0], [0.5, 3.0]]])
    expected = np.linalg.cond(stack, p)
    np.testing.assert_allclose(pullback.jit(lambda a: np.linalg.cond(a, p))(stack), expected)
    with np.errstate(all="ignore"):
        gradient = pullback.grad(lambda a: np.sum(np.linalg.cond(a, p)))(stack)
    assert not np.isfinite(gradient[0]).any()
    pullback.testing.check_grads(lambda a: np.linalg.cond(a, p), (stack[1],), order=2)


@pytest.mark.parametrize("matrix", [np.diag([0.0, 1.0]), np.zeros((2, 2)), np.ones((2, 2))])
def test_item8_sqrtm_derivatives_at_a_singular_matrix_are_nan_not_large_numbers(matrix):
    """sqrtm's derivative solves the Sylvester equation x dx + dx x = da, singular where
    x is: the solve returned 4.5e15 at diag(0, 1) (the true slope of sqrt(a00) is
    infinite), in grad, jacfwd and jit. It is NaN now, and unchanged at regular matrices."""
    from pullback.scipy import linalg
    f = lambda a: np.sum(linalg.sqrtm(a))                   # noqa: E731
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for gradient in (pullback.grad(f)(matrix), pullback.jacfwd(f)(matrix),
                         pullback.jit(pullback.grad(f))(matrix)):
            assert np.isnan(gradient).all()
    pullback.testing.check_grads(linalg.sqrtm, (np.array([[4.0, 1.0], [1.0, 3.0]]),), order=2)


# ------------------------------------ statistics with constant weights


def test_item9_average_with_constant_weights_summing_to_zero_raises_as_numpy():
    """np.average with weights summing to zero raises ZeroDivisionError; differentiated
    with respect to the values (the weights constant, so known), pullback gave NaN. Traced
    weights, whose sum is not known, still give non-finite values."""
    x, w = np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 0.0])
    for run in (lambda: pullback.grad(lambda a: np.average(a, weights=w))(x),
                lambda: pullback.jacfwd(lambda a: np.average(a, weights=w))(x),
                lambda: pullback.jit(lambda a: np.average(a, weights=w))(x)):
        with raises(ZeroWeightsError, "Weights sum to zero"):
            run()
    with np.errstate(all="ignore"):
        assert not np.isfinite(pullback.grad(lambda v: np.average(x, weights=v))(w)).any()


# ------------------------------------ loops


def test_item10_fori_loop_says_why_a_float32_carry_times_its_index_became_float64():
    """fori_loop's index is an int64 array, so a float32 carry times it is float64 (a plain
    Python loop's int keeps float32): the loop refused the carry without saying why. The
    message now names the index and the fix, which works in every mode."""
    x = np.ones(2, np.float32)
    with raises(pullback.errors.LoopTypeError, "fori_loop's index i", "i.astype(x.dtype)"):
        pullback.fori_loop(0, 3, lambda i, c: c * i + c, x)

    def fixed(a):
        return np.sum(pullback.fori_loop(0, 3, lambda i, c: c * i.astype(c.dtype) + c, a))
    assert fixed(x).dtype == pullback.jit(fixed)(x).dtype == np.float32
    assert pullback.grad(fixed)(x).dtype == np.float32


# ------------------------------------ jit inside other transformations


def test_item11_jit_of_a_permutation_runs_under_an_outer_transformation():
    """jacfwd(np.sort) is a constant identity indexed by the traced argsort (`eye[:, c]`);
    jit's traceable code, which an outer jit, jacfwd or vmap runs on tracers, wrote it as
    NumPy indexing, which cannot take a traced index: jit(jacfwd(jit(hessian(f)))) of a
    function with a sort raised ArrayConversionError. Such an equation binds its primitive."""
    x = np.array([0.3, 0.7, 1.1])

    def f(v):
        return np.sum(np.sort(v) ** 3 * np.arange(3))
    expected = pullback.jacfwd(pullback.hessian(f))(x)
    np.testing.assert_allclose(pullback.jit(pullback.jacfwd(pullback.jit(pullback.hessian(f))))(x),
                               expected)
    inner = pullback.jit(pullback.jacfwd(np.sort))
    batch = np.stack([x, x[::-1]])
    np.testing.assert_array_equal(pullback.jit(pullback.vmap(inner))(batch),
                                  pullback.vmap(pullback.jacfwd(np.sort))(batch))
    assert not pullback.jit(pullback.jacfwd(inner))(x).any()
