"""Correctness review: NumPy's values and dtypes, and derivatives checked against finite
differences, on the awkward inputs users pass (integer and boolean operands, empty
reductions, ties and kinks), in every path: eager, jit, the fused tier and vmap."""
import warnings

import numpy as np
import pytest

import pullback
from pullback.core.primitive import REGISTRY
from pullback.ir import fused

FLOAT_AND_WIDER = (np.float16, np.float32, np.float64, np.complex64, np.complex128)
NARROW = (np.bool_, np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64)


def _same(got, expected):
    """Equal values (NaN equal to NaN), shapes and dtypes."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def _fused_outputs(fn, args):
    """fn's outputs from the fused tier, every group fused (even one equation); None when
    nothing fuses."""
    from pullback.ir.passes import optimize
    from pullback.ir.staging import stage
    with np.errstate(all="ignore"):
        program = optimize(stage(fn, tuple(args)))
        compiled = fused.compile_fused(program, "f", [np.copy(a) for a in args], min_size=1,
                                       measure=False)
        return None if compiled is None else compiled(*[np.copy(a) for a in args])


def _fused(fn, *args):
    """fn's (one) output from the fused tier, which must fuse something."""
    outputs = _fused_outputs(fn, args)
    assert outputs is not None, "nothing fused"
    return outputs[0]


# ------------------------------------------------ sums and products of narrow dtypes


@pytest.mark.parametrize("name", ["sum", "prod", "cumsum", "cumprod"])
@pytest.mark.parametrize("dtype", NARROW + FLOAT_AND_WIDER)
def test_accumulating_primitives_type_their_result_as_numpy_does(name, dtype):
    """np.sum/prod/cumsum/cumprod of booleans and narrow integers accumulate in the
    platform integer: the shape rule said bool (int8 ...), which the fused tier then
    accumulated in, counting True + True as True and wrapping int8 sums."""
    prim = REGISTRY[name]
    x = np.array([[1, 0, 1], [1, 1, 0]]).astype(dtype)
    params = {"axis": 1} if name.startswith("cum") else {"axis": (1,), "keepdims": False}
    out = prim.impl(x, **params)
    assert prim.shape(x, **params).dtype == out.dtype


def test_jit_counts_booleans_in_the_fused_tier():
    pytest.importorskip("numba")

    def count(x):
        return np.sum(x > 0.5) * x[0]

    def small_integers(x):
        return np.sum((x > 0.5).astype(np.int8)) * x
    x = np.ones(300)
    _same(_fused(count, x), count(x))
    _same(_fused(small_integers, x), small_integers(x))


def test_fused_max_splits_the_derivative_among_ties():
    """The tie count of max's derivative is a sum of booleans: fused, it was 1 per tie."""
    pytest.importorskip("numba")
    x = np.array([0.0, 1.0, -1.0, 2.0, 2.0])
    for f in (np.max, lambda x: np.ptp(x), lambda x: np.linalg.norm(x, np.inf),
              lambda x: np.sum(np.max(np.stack([x, x]), axis=0))):
        _same(_fused(pullback.grad(f), x), pullback.grad(f)(x))


# ---------------------------------------------------------------- NaN reductions


@pytest.mark.parametrize("name", ["nansum", "nanprod", "nancumsum", "nancumprod", "nanmax",
                                  "nanmin"])
@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int64, np.float32])
def test_nan_reductions_keep_numpys_dtype_for_integers_and_booleans(name, dtype):
    """Replacing NaN by a float fill promoted integers and booleans to float64."""
    f = getattr(np, name)
    x = np.array([3, 0, 1]).astype(dtype)
    _same(pullback.jit(f)(x), f(x))


# ------------------------------------------------------------- empty reductions


@pytest.mark.parametrize("name", ["max", "min", "nanmax", "nanmin"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, True), (1, False)])
def test_max_and_min_with_initial_of_an_empty_array_give_initial(name, axis, keepdims):
    """NumPy answers `initial` where nothing is reduced; pullback raised NumPy's error."""
    def f(x):
        return getattr(np, name)(x, axis=axis, keepdims=keepdims, initial=1.5)
    for dtype in (np.float64, np.float32):
        x = np.zeros((0, 3), dtype)
        _same(pullback.jit(f)(x), f(x))
        assert pullback.jacobian(f)(x).shape == np.shape(f(x)) + x.shape


# ------------------------------------------------ Python scalars as jit arguments

SCALAR_FUNCTIONS = {
    "reshape": lambda x: np.reshape(x, (1, 1)), "ravel": np.ravel, "index": lambda x: x[None],
    "atleast_2d": np.atleast_2d, "expand_dims": lambda x: np.expand_dims(x, 0),
    "broadcast_to": lambda x: np.broadcast_to(x, (2,)), "stack": lambda x: np.stack([x, x]),
    "sum": np.sum, "prod": np.prod, "max": np.max, "cumsum": np.cumsum, "cumprod": np.cumprod,
    "real": np.real, "imag": np.imag, "abs": np.abs, "norm": np.linalg.norm, "mean": np.mean,
    "var": np.var, "median": np.median, "angle": np.angle,
    "sum_as_float32": lambda x: np.sum(x, dtype=np.float32),
    "linspace": lambda x: np.linspace(0, x, 3),
}


@pytest.mark.parametrize("name", SCALAR_FUNCTIONS)
@pytest.mark.parametrize("scalar", [True, 3, 2.5, -1.5 + 2j], ids=type)
def test_jit_of_a_python_scalar_argument_gives_numpys_value_and_dtype(name, scalar):
    """A Python scalar argument is staged weakly typed, and shape rules see it as a Python
    scalar: reshaping, indexing or reducing one was typed float64 (so np.linalg.norm of
    -1.5+2j took the real path and returned 1.5-2j), and a conversion of one was written
    `x.astype(...)` (AttributeError: 'int' object has no attribute 'astype')."""
    f = SCALAR_FUNCTIONS[name]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            expected = f(scalar)
    except (TypeError, ValueError):
        return
    if name in ("real", "imag") and isinstance(scalar, bool):
        expected = np.asarray(expected, bool)          # NumPy's np.real(True) is True.real, 1
    jitted = pullback.jit(f)
    for _ in range(2):                                  # staged, then the generated code
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
                got = jitted(scalar)
        except pullback.PullbackError:                  # (complex values some refuse)
            assert np.iscomplexobj(scalar)
            return
        _same(got, expected)


def test_show_prints_a_conversion_of_a_python_scalar_as_numpy_that_runs():
    from pullback.ir.jit import readable_source

    def mean(x):
        return np.mean(x)
    source, arguments = readable_source(mean, 3)
    namespace = {"np": np}
    exec(source, namespace)                                   # noqa: S102 (printed code)
    _same(namespace["mean"](3, **arguments), np.mean(3))


# ---------------------------------------------------------------------- angle


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int64, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("deg", [False, True])
def test_angle_of_real_values(dtype, deg):
    """np.angle of a real traced value called np.result_type on the tracer
    (UnsupportedFunctionError); it is 0 or pi, NumPy's dtype, with a zero derivative
    (also at 0, where arctan2's is NaN)."""
    x = np.array([1, 0, -1, 2]).astype(dtype)
    _same(pullback.jit(lambda x: np.angle(x, deg=deg))(x), np.angle(x, deg=deg))
    if dtype in (np.float32, np.float64):
        x = np.array([-1.0, 0.0, -0.0, 2.0], dtype)
        _same(pullback.jacobian(lambda x: np.angle(x, deg=deg))(x), np.zeros((4, 4), dtype))


# ------------------------------------------------------------------------ svd


@pytest.mark.parametrize("svd, name", [(np.linalg.svd, "numpy.linalg.svd"),
                                       (pullback.scipy.linalg.svd, "scipy.linalg.svd")])
def test_svd_full_matrices_is_refused_for_non_square_matrices_by_numpy_and_scipy_alike(svd, name):
    """One check (numpy/linalg.py's svd_factors) serves both namespaces; square matrices
    pass (their full SVD is the reduced one)."""
    from helpers import raises
    with raises(pullback.errors.UnsupportedFunctionError, name, "full_matrices=False"):
        pullback.grad(lambda a: np.sum(svd(a)[0]))(np.ones((3, 2)))
    a = np.array([[2.0, 1.0], [0.5, 3.0]])
    pullback.testing.check_grads(lambda a: svd(a)[1], (a,), order=2)


# ----------------------------------------------------------------- logsumexp


def test_logsumexp_ignores_terms_whose_weight_b_is_zero_also_in_its_shift():
    """The shift was the largest x, also where b == 0: exp of the others underflowed and
    logsumexp([1000, 1, 2], b=[0, 1, 2]) was -inf (SciPy: 2.862)."""
    import scipy.special
    x, b = np.array([1000.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])

    def f(x):
        return pullback.scipy.special.logsumexp(x, b=b)
    _same(pullback.jit(f)(x), scipy.special.logsumexp(x, b=b))
    _same(pullback.grad(f)(x), np.array([0.0, np.e, 2.0 * np.e ** 2]) / (np.e + 2.0 * np.e ** 2))
    # a traced b keeps its derivative where it is zero: exp(x_i - logsumexp)
    x = np.array([3.0, 1.0, 2.0])
    pullback.testing.check_grads(lambda x, b: pullback.scipy.special.logsumexp(x, b=b),
                                 (x, b), order=2)


@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 3), 0), ((0, 3), 1), ((2, 0), -1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logsumexp_of_an_empty_sum_is_minus_infinity(shape, axis, dtype):
    """SciPy answers -inf (log 0); pullback raised NumPy's ValueError from max."""
    import scipy.special

    def f(x):
        return pullback.scipy.special.logsumexp(x, axis=axis)
    x = np.zeros(shape, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        _same(pullback.jit(f)(x), scipy.special.logsumexp(x, axis=axis))
        assert pullback.jacobian(f)(x).shape == np.shape(f(x)) + shape


# --------------------------------------------- the fused tier at special values


def _elementwise_with_scalar_rules(complex_values):
    return sorted(name for name, p in REGISTRY.items()
                  if p.family == "elementwise" and p.emit_scalar is not None and p.domain
                  and not any(isinstance(d, str) or isinstance(d[0], str) for d in p.domain)
                  and (p.complex_rules or not complex_values))


def _value_and_derivatives(prim):
    def run(*args):
        out = prim(*args)
        if not prim.differentiable:
            return [out]
        tangents = tuple(np.full_like(x, 0.5) for x in args)
        _, tangent = pullback.pushforward(lambda *a: prim(*a), args, tangents)
        _, back = pullback.pullback(lambda *a: prim(*a), *args)
        return [out, tangent, *back(np.full_like(out, 1.5))]
    return run


def _grid(values, arity):
    grid = np.meshgrid(*[values] * arity, indexing="ij")
    return tuple(np.ascontiguousarray(g.ravel()) for g in grid)


def _assert_fused_equals_eager(fn, args, rtol, finite_only=False):
    with np.errstate(all="ignore"):
        expected = pullback.tree.flatten(fn(*args))[0]
    got = _fused_outputs(fn, args)
    for e, g in zip(expected, got or ()):
        e, g = np.asarray(e), np.asarray(g)
        same = (e == g) | (np.isnan(e) & np.isnan(g)) | np.isclose(e, g, rtol=rtol, atol=0)
        if finite_only:
            same |= ~np.isfinite(e)
        wrong = np.flatnonzero(~same)
        assert not wrong.size, [(tuple(a[i] for a in args), e[i], g[i]) for i in wrong[:3]]


@pytest.mark.parametrize("name", _elementwise_with_scalar_rules(False))
def test_fused_tier_matches_numpy_at_zeros_infinities_and_nan(name):
    """Values and first derivatives of every fusable elementwise primitive, on all pairs of
    0, -0, +-1, 2, 0.5, nan, +-inf, a subnormal: Numba's floor_divide of floats was
    floor(x / y) (inf // 1 gave inf, NumPy nan; 1 // -inf gave -0, NumPy -1, and so did the
    derivative of remainder in y)."""
    pytest.importorskip("numba")
    prim = REGISTRY[name]
    special = np.array([0.0, -0.0, 1.0, -1.0, 2.0, 0.5, np.nan, np.inf, -np.inf, 1e-310])
    _assert_fused_equals_eager(_value_and_derivatives(prim), _grid(special, len(prim.domain)),
                               rtol=1e-12)


@pytest.mark.parametrize("name", _elementwise_with_scalar_rules(True))
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_fused_tier_matches_numpy_on_complex_values_of_every_magnitude(name, dtype):
    """Numba's complex expm1 is exp(z) - 1 (expm1(1e-12) gave 1.00009e-12, in complex64 0),
    its complex tanh NaN for |Re z| > 355 (complex64: > 44), its complex power NaN at base
    0 (0 ** (2 + 1j) is 0): those stay NumPy's. (Where NumPy's result is not finite, C99's
    rules for complex infinities differ in the signs and NaNs they give: not compared.)"""
    pytest.importorskip("numba")
    prim = REGISTRY[name]
    radii = np.array([1e-12, 1e-8, 1e-4, 0.3, 1.0, 5.0, 50.0, 400.0])
    angles = np.exp(1j * np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False))
    values = np.outer(radii, angles).ravel()
    values = np.append(values if len(prim.domain) == 1 else values[::5], 0j).astype(dtype)
    rtol = 1e-12 if dtype == np.complex128 else 1e-5
    _assert_fused_equals_eager(lambda *a: prim(*a), _grid(values, len(prim.domain)), rtol,
                               finite_only=True)


# ------------------------------------------------------------- empty quantiles


QUANTILES = {
    "quantile": lambda x, axis, k: np.quantile(x, 0.4, axis=axis, method="lower", keepdims=k),
    "percentile": lambda x, axis, k: np.percentile(x, [40.0, 50.0], axis=axis, keepdims=k),
    "median": lambda x, axis, k: np.median(x, axis=axis, keepdims=k),
    "nanpercentile": lambda x, axis, k: np.nanpercentile(x, 30.0, axis=axis, keepdims=k),
    "nanquantile": lambda x, axis, k: np.nanquantile(x, 0.3, axis=axis, keepdims=k),
    "nanmedian": lambda x, axis, k: np.nanmedian(x, axis=axis, keepdims=k),
}


@pytest.mark.parametrize("name", QUANTILES)
@pytest.mark.parametrize("shape, axis", [((3, 1, 0), -2), ((0, 2), 1), ((3, 0, 1), (0,)),
                                         ((3, 0), 0), ((3, 0), 1), ((0, 3), None)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_quantiles_of_arrays_with_an_empty_axis_are_numpys(name, shape, axis, keepdims):
    """An empty axis that is not reduced gives an empty result (pullback raised IndexError:
    the reduced axes were flattened with reshape(..., -1), which an empty array leaves 0);
    an empty reduced axis gives NaN for medians and the nan-quantiles (nanpercentile
    raised), and NumPy's IndexError for quantile and percentile."""
    def f(x):
        return QUANTILES[name](x, axis, keepdims)
    x = np.zeros(shape)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            expected = f(x)
        except IndexError:
            with pytest.raises(IndexError):
                pullback.jit(f)(x)
            return
        _same(pullback.jit(f)(x), expected)
        assert pullback.jacobian(f)(x).shape == np.shape(expected) + shape


def test_reshape_refuses_an_ambiguous_minus_one_beside_a_zero_as_numpy_does():
    """np.reshape(zeros((3, 0)), (0, -1)) raises: any length fits; pullback chose 0."""
    for shape in [(0, -1), (-1, 0)]:
        with pytest.raises(ValueError):
            np.reshape(np.zeros((3, 0)), shape)
        with pytest.raises(ValueError):
            pullback.jit(lambda x: np.reshape(x, shape))(np.zeros((3, 0)))
    _same(pullback.jit(lambda x: np.reshape(x, (2, -1)))(np.zeros((2, 0, 3))), np.zeros((2, 0)))


# ------------------------------------------------- Python numbers as array operands


@pytest.mark.parametrize("name, f", [
    ("dot", lambda x: np.dot(x, 2.0)), ("dot_left", lambda x: np.dot(2.0, x)),
    ("inner", lambda x: np.inner(x, 2.0)), ("outer", lambda x: np.outer(x, 2.0)),
    ("outer_left", lambda x: np.outer(2.0, x)), ("ravel", lambda x: np.ravel(2.0) * x),
    ("reshape", lambda x: np.reshape(3.0, (1, 1)) * x)])
def test_python_numbers_in_array_functions_are_numpys_arrays_of_them(name, f):
    """np.dot(x32, 2.0) is float64 in NumPy (its operands become arrays, strongly typed):
    pullback gave float32; np.outer(x, 2.0) and np.reshape(3.0, ...) raised AttributeError
    ('float' object has no attribute 'shape')."""
    x = np.array([1.0, 2.0], np.float32)
    _same(pullback.jit(f)(x), f(x))
    _same(pullback.pullback(f, x)[0], f(x))
    pullback.testing.check_grads(f, (x.astype(np.float64),), order=1)


def test_roots_of_float32_coefficients_are_complex64():
    """The companion matrix was built with a float64 identity: complex128 roots."""
    p = np.array([1.0, -3.0, 2.0], np.float32)
    roots = pullback.pullback(np.roots, p)[0]
    assert roots.dtype == np.complex64
    np.testing.assert_allclose(np.sort_complex(roots), np.sort_complex(np.roots(p)), rtol=1e-6)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap", "symmetric", "mean",
                                  "maximum", "linear_ramp", "empty"])
def test_pad_of_a_zero_dimensional_value_returns_it(mode):
    """NumPy pads nothing in a 0-d array; pullback raised NumPy's broadcasting ValueError
    (found by tests/test_jit_fuzz.py's seed 97 in a longer run)."""
    def f(x):
        return np.pad(np.sum(x ** 2), 1, mode=mode)
    x = np.array([1.0, 2.0])
    _same(pullback.jit(f)(x), f(x))
    _same(pullback.grad(f)(x), 2.0 * x)


def test_toeplitz_of_a_complex_column_alone_is_hermitian_as_scipys():
    """scipy.linalg.toeplitz(c) takes r = conj(c); pullback took r = c (a wrong matrix
    for complex c)."""
    import scipy.linalg
    for c in (np.array([1 + 1j, 2 + 0.5j, 3 - 1j]), np.array([1.0, 2.0, 3.0])):
        _same(pullback.jit(pullback.scipy.linalg.toeplitz)(c), scipy.linalg.toeplitz(c))
        pullback.testing.check_grads(pullback.scipy.linalg.toeplitz, (c,), order=2)


def test_dtype_queries_work_on_traced_values():
    """np.iscomplexobj, np.isrealobj and np.result_type read only dtypes; on traced values
    they raised UnsupportedFunctionError (np.result_type also broke np.angle of real values)."""
    def f(z):
        wide = z.astype(np.result_type(z, np.complex64))
        return np.sum(np.abs(wide) ** 2) if np.iscomplexobj(wide) and not np.isrealobj(z) \
            else np.sum(z.real ** 2)
    for z in (np.array([1.0 + 2.0j, -0.5j]), np.array([1.0, 2.0], np.float32)):
        _same(pullback.jit(f)(z), f(z))
        _same(pullback.grad(f)(z), 2.0 * np.conj(z) if np.iscomplexobj(z) else 2.0 * z)
    assert pullback.jit(lambda x: x.astype(np.result_type(x, 1.0)))(
        np.ones(2, np.float32)).dtype == np.float32          # a Python number stays weak
