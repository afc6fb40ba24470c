"""Seventh correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet in the leftovers of the earlier reviews (SciPy's dtypes,
statistics in a given dtype, quantiles in float32, matrix functions at singular matrices).
Each test is named after the defect it pins down."""
import warnings

import numpy as np
import pytest
import scipy.special

import pullback
from helpers import raises
from pullback.errors import ComplexValueError, UnsupportedFunctionError
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
