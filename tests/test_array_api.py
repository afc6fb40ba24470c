"""Issue 10 §3: tracers implement `__array_namespace__`; pullback.array_api follows the Array
API standard (2024.12), checked against array-api-strict (the reference implementation):
the same calls on the same data give the same values, dtypes and shapes, on traced values
and on plain arrays. SciPy (SCIPY_ARRAY_API=1) and scikit-learn (array_api_dispatch=True)
then run their array-API code paths on tracers: tests/array_api_consumers.py, run in a
subprocess because SciPy reads the variable when it is imported."""
import math
import os
import subprocess
import sys

import array_api_strict
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pullback
from helpers import raises
from pullback.errors import InPlaceMutationError, UnsupportedFunctionError

xp = pullback.array_api
array_api_strict.set_array_api_strict_flags(api_version="2024.12")

RNG = np.random.default_rng(10)
F64 = RNG.uniform(-0.9, 0.9, (3, 4))            # inside every domain below (acos, atanh, ...)
POS = RNG.uniform(1.1, 2.0, (3, 4))             # acosh, log of values > 1
F32 = F64.astype(np.float32)
VEC = RNG.uniform(-1.0, 1.0, (4,))
MAT = RNG.standard_normal((3, 3)) + 3.0 * np.eye(3)
SPD = MAT @ MAT.T
C128 = F64 + 1j * RNG.uniform(-0.9, 0.9, (3, 4))
INTS = np.array([[3, -1, 2, 2], [0, 5, -4, 1], [2, 2, 7, -3]], dtype=np.int64)
BOOLS = F64 > 0

UNARY = """abs acos asin asinh atan atanh ceil conj cos cosh exp expm1 floor isfinite isinf
isnan log1p negative positive real round sign signbit sin sinh square tan tanh trunc
logical_not""".split()
POSITIVE_UNARY = "acosh log log2 log10 sqrt reciprocal".split()
BINARY = """add atan2 copysign divide equal floor_divide greater greater_equal hypot less
less_equal logaddexp maximum minimum multiply nextafter not_equal pow remainder subtract
logical_and logical_or logical_xor""".split()
INTEGER = """bitwise_and bitwise_or bitwise_xor bitwise_left_shift bitwise_right_shift""".split()


def _case(name, call, *data):
    return pytest.param(call, data, id=name)


CASES = (
    [_case(n, lambda xp, x, n=n: getattr(xp, n)(x), F64) for n in UNARY if n != "logical_not"]
    + [_case(f"{n}-float32", lambda xp, x, n=n: getattr(xp, n)(x), F32) for n in UNARY[:12]]
    + [_case("logical_not", lambda xp, b: xp.logical_not(b), BOOLS)]
    + [_case(n, lambda xp, x, n=n: getattr(xp, n)(x), POS) for n in POSITIVE_UNARY]
    + [_case(n, lambda xp, x, y, n=n: getattr(xp, n)(x, y), *((POS, F64) if n == "pow" else (
        F64, POS))) for n in BINARY if not n.startswith("logical")]
    + [_case(n, lambda xp, x, y, n=n: getattr(xp, n)(x, y), BOOLS, ~BOOLS)
       for n in BINARY if n.startswith("logical")]
    + [_case(n, lambda xp, x, n=n: getattr(xp, n)(x, xp.asarray(1)), INTS) for n in INTEGER]
    + [_case("bitwise_invert", lambda xp, x: xp.bitwise_invert(x), INTS)]
    + [_case(f"{n}-complex", lambda xp, z, n=n: getattr(xp, n)(z), C128)
       for n in ("abs", "conj", "real", "imag", "exp", "sign", "sqrt", "log", "square")]
    + [_case("pow-scalar", lambda xp, x: xp.pow(x, 2.0), F32),
       _case("add-scalar-float32", lambda xp, x: xp.add(x, 1.5), F32),
       _case("clip", lambda xp, x: xp.clip(x, min=-0.5, max=0.5), F64),
       _case("clip-float32", lambda xp, x: xp.clip(x, max=0.1), F32),
       _case("where", lambda xp, b, x, y: xp.where(b, x, y), BOOLS, F64, POS),
       # creation (constants) and conversion
       _case("asarray-copy", lambda xp, x: xp.asarray(x, copy=True), F64),
       _case("asarray-dtype", lambda xp, x: xp.asarray(x, dtype=xp.float32), F64),
       _case("astype", lambda xp, x: xp.astype(x, xp.float32), F64),
       _case("astype-complex", lambda xp, x: xp.astype(x, xp.complex128), F64),
       _case("astype-int", lambda xp, x: xp.astype(x, xp.int32), F64 * 10),
       _case("arange", lambda xp: xp.arange(1, 10, 2, dtype=xp.float32)),
       _case("linspace", lambda xp: xp.linspace(0.0, 1.0, 5, endpoint=False)),
       _case("zeros", lambda xp: xp.zeros((2, 3), dtype=xp.int32)),
       _case("ones", lambda xp: xp.ones((2,))),
       _case("full", lambda xp: xp.full((2, 2), 1.5, dtype=xp.float32)),
       _case("eye", lambda xp: xp.eye(3, 4, k=1)),
       _case("zeros_like", lambda xp, x: xp.zeros_like(x), F32),
       _case("ones_like", lambda xp, x: xp.ones_like(x, dtype=xp.int64), F64),
       _case("full_like", lambda xp, x: xp.full_like(x, 2.0), F64),
       _case("empty_like-shape", lambda xp, x: xp.empty_like(x).shape, F64),
       _case("tril", lambda xp, x: xp.tril(x, k=-1), F64),
       _case("triu", lambda xp, x: xp.triu(x), F64),
       _case("meshgrid", lambda xp, x, y: xp.meshgrid(x, y, indexing="ij"), VEC, VEC[:3]),
       # data types
       _case("result_type", lambda xp, x, y: _name(xp.result_type(x, y, xp.float32)), F32, VEC),
       _case("result_type-scalar", lambda xp, x: _name(xp.result_type(x, 1.0)), F32),
       _case("can_cast", lambda xp, x: xp.can_cast(x.dtype, xp.float32), F64),
       _case("isdtype", lambda xp, x: [xp.isdtype(x.dtype, k) for k in (
           "real floating", "complex floating", "numeric", "integral", ("bool", "integral"),
           xp.float64)], F64),
       _case("finfo", lambda xp, x: (xp.finfo(x.dtype).eps, xp.finfo(x.dtype).bits), F32),
       _case("iinfo", lambda xp: xp.iinfo(xp.int16).max),
       # indexing, products
       _case("take", lambda xp, x: xp.take(x, xp.asarray([2, 0]), axis=1), F64),
       _case("take_along_axis", lambda xp, x: xp.take_along_axis(
           x, xp.argsort(x, axis=1), axis=1), F64),
       _case("matmul", lambda xp, a, b: xp.matmul(a, b), F64.T, F64),
       _case("matrix_transpose", lambda xp, a: xp.matrix_transpose(a), F64),
       _case("tensordot", lambda xp, a, b: xp.tensordot(a, b, axes=1), F64, F64.T),
       _case("vecdot", lambda xp, a, b: xp.vecdot(a, b), F64, POS),
       _case("vecdot-complex", lambda xp, a, b: xp.vecdot(a, b, axis=-2), C128, C128),
       # manipulation
       _case("broadcast_arrays", lambda xp, a, b: xp.broadcast_arrays(a, b), F64, VEC),
       _case("broadcast_to", lambda xp, a: xp.broadcast_to(a, (2, 4)), VEC),
       _case("concat", lambda xp, a, b: xp.concat([a, b], axis=1), F64, POS),
       _case("concat-none", lambda xp, a, b: xp.concat((a, b), axis=None), F64, VEC),
       _case("expand_dims", lambda xp, a: xp.expand_dims(a, axis=-1), F64),
       _case("flip", lambda xp, a: xp.flip(a, axis=(0, 1)), F64),
       _case("moveaxis", lambda xp, a: xp.moveaxis(a, 0, -1), F64),
       _case("permute_dims", lambda xp, a: xp.permute_dims(a, (1, 0)), F64),
       _case("repeat", lambda xp, a: xp.repeat(a, 2, axis=0), F64),
       _case("reshape", lambda xp, a: xp.reshape(a, (2, -1)), F64),
       _case("roll", lambda xp, a: xp.roll(a, 1, axis=1), F64),
       _case("roll-flat", lambda xp, a: xp.roll(a, -2), F64),
       _case("squeeze", lambda xp, a: xp.squeeze(a, axis=0), F64[None]),
       _case("stack", lambda xp, a, b: xp.stack([a, b], axis=-1), F64, POS),
       _case("tile", lambda xp, a: xp.tile(a, (2, 1)), F64),
       _case("unstack", lambda xp, a: xp.unstack(a, axis=1), F64),
       # searching, sorting
       _case("argmax", lambda xp, a: xp.argmax(a, axis=1, keepdims=True), F64),
       _case("argmin", lambda xp, a: xp.argmin(a), F64),
       _case("count_nonzero", lambda xp, a: xp.count_nonzero(a, axis=0), BOOLS),
       _case("nonzero", lambda xp, a: xp.nonzero(a), BOOLS),
       _case("searchsorted", lambda xp, a, v: xp.searchsorted(a, v, side="right"),
             np.sort(VEC), F64),
       _case("sort", lambda xp, a: xp.sort(a, axis=0), F64),
       _case("sort-descending", lambda xp, a: xp.sort(a, descending=True), F64),
       _case("argsort", lambda xp, a: xp.argsort(a), INTS),
       _case("argsort-descending-ties", lambda xp, a: xp.argsort(a, axis=1, descending=True),
             INTS),
       # statistics
       _case("sum", lambda xp, a: xp.sum(a, axis=1), F64),
       _case("sum-float32-keepdims", lambda xp, a: xp.sum(a, axis=(0, 1), keepdims=True), F32),
       _case("sum-int32", lambda xp, a: xp.sum(a), INTS.astype(np.int32)),
       _case("prod", lambda xp, a: xp.prod(a, axis=0, dtype=xp.float64), F32),
       _case("max", lambda xp, a: xp.max(a, axis=0), F64),
       _case("min", lambda xp, a: xp.min(a, keepdims=True), F64),
       _case("mean", lambda xp, a: xp.mean(a, axis=-1), F32),
       _case("std", lambda xp, a: xp.std(a, axis=0, correction=1), F64),
       _case("var", lambda xp, a: xp.var(a, correction=0.5, keepdims=True), F64),
       _case("cumulative_sum", lambda xp, a: xp.cumulative_sum(a, axis=1,
                                                                include_initial=True), F64),
       _case("cumulative_prod", lambda xp, a: xp.cumulative_prod(a), VEC),
       _case("all", lambda xp, a: xp.all(a, axis=1), BOOLS),
       _case("any", lambda xp, a: xp.any(a), BOOLS),
       _case("diff", lambda xp, a: xp.diff(a, axis=0, n=2), F64),
       _case("diff-prepend", lambda xp, a, p: xp.diff(a, prepend=p), F64, F64[:, :1]),
       # sets, of plain arrays
       _case("unique_values", lambda xp, a: xp.unique_values(a), INTS),
       _case("unique_counts", lambda xp, a: tuple(xp.unique_counts(a)), INTS),
       _case("unique_inverse", lambda xp, a: tuple(xp.unique_inverse(a)), INTS),
       # linalg and fft extensions
       _case("linalg.cholesky", lambda xp, a: xp.linalg.cholesky(a, upper=True), SPD),
       _case("linalg.cross", lambda xp, a, b: xp.linalg.cross(a, b), F64[:, :3], POS[:, :3]),
       _case("linalg.det", lambda xp, a: xp.linalg.det(a), MAT),
       _case("linalg.diagonal", lambda xp, a: xp.linalg.diagonal(a, offset=1), F64),
       _case("linalg.eigvalsh", lambda xp, a: xp.linalg.eigvalsh(a), SPD),
       _case("linalg.eigh", lambda xp, a: tuple(xp.linalg.eigh(a)), SPD),
       _case("linalg.svd", lambda xp, a: tuple(xp.linalg.svd(a, full_matrices=False)), F64),
       _case("linalg.inv", lambda xp, a: xp.linalg.inv(a), MAT),
       _case("linalg.matmul", lambda xp, a, b: xp.linalg.matmul(a, b), MAT, MAT),
       _case("linalg.matrix_norm", lambda xp, a: xp.linalg.matrix_norm(a, ord="fro"), F64),
       _case("linalg.matrix_norm-nuc", lambda xp, a: xp.linalg.matrix_norm(a, ord="nuc"), MAT),
       _case("linalg.matrix_power", lambda xp, a: xp.linalg.matrix_power(a, 3), MAT),
       _case("linalg.matrix_rank", lambda xp, a: xp.linalg.matrix_rank(a), MAT),
       _case("linalg.matrix_transpose", lambda xp, a: xp.linalg.matrix_transpose(a), F64),
       _case("linalg.outer", lambda xp, a, b: xp.linalg.outer(a, b), VEC, VEC),
       _case("linalg.pinv", lambda xp, a: xp.linalg.pinv(a), F64),
       _case("linalg.qr", lambda xp, a: tuple(xp.linalg.qr(a, mode="complete")), MAT),
       _case("linalg.slogdet", lambda xp, a: tuple(xp.linalg.slogdet(a)), MAT),
       _case("linalg.solve", lambda xp, a, b: xp.linalg.solve(a, b), MAT, F64),
       _case("linalg.svdvals", lambda xp, a: xp.linalg.svdvals(a), F64),
       _case("linalg.tensordot", lambda xp, a, b: xp.linalg.tensordot(a, b, axes=2), F64, POS),
       _case("linalg.trace", lambda xp, a: xp.linalg.trace(a, offset=-1), MAT),
       _case("linalg.vecdot", lambda xp, a, b: xp.linalg.vecdot(a, b, axis=-2), F64, POS),
       _case("linalg.vector_norm", lambda xp, a: xp.linalg.vector_norm(
           a, axis=1, keepdims=True, ord=3), F64),
       _case("linalg.vector_norm-inf", lambda xp, a: xp.linalg.vector_norm(a, ord=math.inf),
             F64),
       _case("fft.fft", lambda xp, z: xp.fft.fft(z, n=6, axis=0, norm="ortho"), C128),
       _case("fft.ifft", lambda xp, z: xp.fft.ifft(z), C128),
       _case("fft.fftn", lambda xp, z: xp.fft.fftn(z, s=(2, 4), axes=(0, 1)), C128),
       _case("fft.ifftn", lambda xp, z: xp.fft.ifftn(z, axes=(0,), norm="forward"), C128),
       _case("fft.rfft", lambda xp, x: xp.fft.rfft(x), F64),
       _case("fft.irfft", lambda xp, z: xp.fft.irfft(z, n=6), C128),
       _case("fft.rfftn", lambda xp, x: xp.fft.rfftn(x), F64),
       _case("fft.irfftn", lambda xp, z: xp.fft.irfftn(z, s=(3, 6), axes=(0, 1)), C128),
       _case("fft.hfft", lambda xp, z: xp.fft.hfft(z), C128),
       _case("fft.ihfft", lambda xp, x: xp.fft.ihfft(x), F64),
       _case("fft.fftfreq", lambda xp: xp.fft.fftfreq(5, d=0.5)),
       _case("fft.rfftfreq", lambda xp: xp.fft.rfftfreq(6, dtype=xp.float32)),
       _case("fft.fftshift", lambda xp, x: xp.fft.fftshift(x, axes=1), F64),
       _case("fft.ifftshift", lambda xp, x: xp.fft.ifftshift(x), F64)])


def _name(dtype):
    """A dtype's name, whichever library's dtype object it is."""
    return str(dtype).rsplit(".", 1)[-1]


def _leaves(result):
    if isinstance(result, (tuple, list)):
        return [leaf for part in result for leaf in _leaves(part)]
    return [result]


def _compare(ours, reference):
    ours, reference = _leaves(ours), _leaves(reference)
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference):
        if isinstance(theirs, (bool, int, float, str)):
            assert mine == theirs
            continue
        theirs = np.asarray(theirs)
        mine = np.asarray(mine)
        assert mine.shape == theirs.shape
        assert mine.dtype == theirs.dtype, (mine.dtype, theirs.dtype)
        np.testing.assert_allclose(mine, theirs, rtol=2e-6 if mine.dtype in (
            np.float32, np.complex64) else 1e-12, atol=1e-12)


def _traced(call, data):
    """call(xp, *data) with every floating-point array traced (inside a pushforward)."""
    floating = [i for i, d in enumerate(data) if np.asarray(d).dtype.kind in "fc"]

    def f(*traced):
        full = list(data)
        for i, t in zip(floating, traced):
            full[i] = t
        for t in traced:
            assert t.__array_namespace__() is xp
        return call(xp, *full)
    if not floating:
        return call(xp, *data)
    primals = tuple(data[i] for i in floating)
    return pullback.jvp(f, primals, primals)[0]


@pytest.mark.parametrize("call, data", CASES)
def test_issue10_namespace_agrees_with_array_api_strict(call, data):
    """The same call on the same data: the same values, dtypes and shapes as the reference,
    on traced values and on plain NumPy arrays."""
    reference = call(array_api_strict, *(array_api_strict.asarray(d) for d in data))
    _compare(_traced(call, data), reference)
    _compare(call(xp, *data), reference)


def test_issue10_namespace_covers_the_standard():
    """Every function and constant of array-api-strict's 2024.12 namespace (and its linalg
    and fft extensions) is in ours, and the table above calls every function."""
    public = {n for n in dir(array_api_strict) if not n.startswith("_")}
    strict_only = {"ArrayAPIStrictFlags", "Device", "ModuleType", "get_array_api_strict_flags",
                   "set_array_api_strict_flags", "reset_array_api_strict_flags",
                   "broadcast_shapes", "isin"}       # the last two are 2025.12 functions
    assert public - strict_only - set(dir(xp)) == set()
    for ext in ("linalg", "fft"):
        names = set(getattr(array_api_strict, ext).__all__)
        assert names - set(dir(getattr(xp, ext))) == set(), ext
        assert names == {p.id.split("-")[0][len(ext) + 1:] for p in CASES
                         if p.id.startswith(ext + ".")}, ext
    called = {p.id.split("-")[0] for p in CASES}
    functions = {n for n in public - strict_only if callable(getattr(array_api_strict, n))
                 and not isinstance(getattr(array_api_strict, n), type)
                 and n not in ("from_dlpack", "empty", "full_like", "unique_all")}
    dtypes = {n for n in functions if n in xp._DTYPES}
    assert functions - dtypes - called - {"asarray", "astype", "empty_like"} == set()


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       axis=st.integers(-3, 2), keepdims=st.booleans(), seed=st.integers(0, 2**16))
def test_issue10_reductions_agree_with_strict_on_shapes_and_axes(shape, axis, keepdims, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, shape)
    axis = axis % len(shape)
    calls = [lambda xp, x, name=name: getattr(xp, name)(x, axis=axis, keepdims=keepdims)
             for name in ("sum", "prod", "mean", "max", "min", "std", "var")]
    calls.append(lambda xp, x: xp.cumulative_sum(x, axis=axis))
    with np.errstate(all="ignore"):   # std of one element: an infinite tangent, not compared
        for call in calls:
            _compare(_traced(call, (x,)), call(array_api_strict, array_api_strict.asarray(x)))


def test_issue10_derivatives_through_the_namespace():
    """Functions written against the standard differentiate to second order."""
    def f(x):
        ns = x.__array_namespace__()
        centred = x - ns.mean(x, axis=0, keepdims=True)
        return (ns.sum(ns.tanh(centred) ** 2)
                + ns.linalg.vector_norm(ns.cumulative_sum(x, axis=1)))
    pullback.check_grads(f, (F64,), order=2)
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(F64), pullback.grad(f)(F64))


def test_issue10_namespace_inspection_and_devices():
    x = pullback.jvp(lambda x: (x.__array_namespace__(api_version="2024.12"), x.device,
                                x.to_device("cpu").shape), (VEC,), (VEC,))[0]
    assert x == (xp, "cpu", (4,))
    info = xp.__array_namespace_info__()
    assert info.default_device() == "cpu" and info.devices() == ["cpu"]
    assert info.default_dtypes()["real floating"] == xp.float64
    assert set(info.dtypes(kind="real floating").values()) == {xp.float32, xp.float64}
    assert info.capabilities()["data-dependent shapes"] is False
    assert xp.__array_api_version__ == "2024.12"
    with pytest.raises(ValueError, match="api_version='2099.12'"):
        pullback.grad(lambda x: x.__array_namespace__(api_version="2099.12"))(VEC)
    with raises(UnsupportedFunctionError, "device='gpu'"):
        xp.zeros(3, device="gpu")
    with raises(UnsupportedFunctionError, "unique_values", "of traced values"):
        pullback.grad(lambda x: xp.sum(xp.unique_values(x)))(VEC)


def test_issue10_asarray_copy_of_a_tracer_is_a_new_object_with_the_same_derivative():
    def f(x):
        y = xp.asarray(x, copy=True)
        assert y is not x and xp.asarray(x) is x
        return xp.sum(y * x)
    np.testing.assert_allclose(pullback.grad(f)(VEC), 2 * VEC)


def test_issue10_array_api_extra_at_updates_a_tracer_and_other_writes_stay_refused():
    """array-api-extra's `at` (SciPy's and scikit-learn's functional update) writes into a
    tracer: the tracer object is rebound to the update, value and derivative; the same write
    in user code still raises, since it could be read through a NumPy view."""
    from scipy._lib import array_api_extra as xpx

    def f(x):
        y = xpx.at(x * 1.0, 0).set(5.0)                      # an index
        y = xpx.at(y, y > 0.5).set(0.0)                      # a mask, one value: a where
        y = xpx.at(y, slice(1, 3)).add(x[:2] ** 2)             # (copy=True: the consumers)
        return xp.sum(y * xp.exp(x))
    x = np.array([0.3, -0.2, 0.9, 0.1])
    expected = pullback.grad(lambda x: np.sum(
        pullback.numpy.at(pullback.numpy.where(
            np.arange(4) == 0, 0.0, np.where(x > 0.5, 0.0, x)))[1:3].add(x[:2] ** 2)
        * np.exp(x)))(x)
    np.testing.assert_allclose(pullback.grad(f)(x), expected, rtol=1e-12)
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(x), expected, rtol=1e-12)
    pullback.check_grads(f, (x,), order=2)

    def user_code(x):
        y = x * 1.0
        y[0] = 5.0
        return y
    with raises(InPlaceMutationError, "in-place assignment"):
        pullback.grad(lambda x: np.sum(user_code(x)))(x)


def test_issue10_conversion_error_says_how_to_turn_array_api_dispatch_on():
    from pullback.errors import ArrayConversionError
    import scipy.special
    if os.environ.get("SCIPY_ARRAY_API"):
        pytest.skip("SciPy was imported with SCIPY_ARRAY_API set: logsumexp would not convert")
    with raises(ArrayConversionError, "scipy.special.logsumexp", "SCIPY_ARRAY_API=1",
                "sklearn.set_config(array_api_dispatch=True)"):
        pullback.grad(lambda x: scipy.special.logsumexp(x))(VEC)


CONSUMERS = os.path.join(os.path.dirname(__file__), "array_api_consumers.py")


@pytest.mark.parametrize("example", ["logsumexp", "softmax", "log_softmax", "special_ufunc",
                                     "sklearn_euclidean_distances", "sklearn_polynomial_kernel",
                                     "sklearn_direct_write_refused"])
def test_issue10_scipy_and_sklearn_array_api_code_runs_on_tracers(example):
    """SciPy's and scikit-learn's own array-API code, differentiated: gradients and second
    derivatives against finite differences, jit and vmap, in a process that imports SciPy
    with SCIPY_ARRAY_API=1 (tests/array_api_consumers.py)."""
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    done = subprocess.run([sys.executable, CONSUMERS, example], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"{example}: ok")
