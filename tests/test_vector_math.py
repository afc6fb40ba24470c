"""ir/vector_math: the fused tier's vectorisable float64 functions (exp, expm1, log, log1p,
tanh, sinh, cosh, arctan, logaddexp, expit) against NumPy's, SciPy's and the C library's."""
import importlib
import math
import re

import numpy as np
import pytest
from scipy import special

import pullback as pb
from pullback.ir import fused

numba = pytest.importorskip("numba")
vm = importlib.import_module("pullback.ir.vector_math")      # imports numba


def _loop_of(function):
    """A Numba loop applying `function` to each element of x, into out."""
    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = function(x[i])
    return loop


def _c_library_atan(x):
    """The C library's atan (Python's math.atan): NumPy's own SIMD arctan, on an AVX-512
    host, may be a few ulp from it."""
    return np.array([math.atan(v) for v in np.ravel(x)]).reshape(np.shape(x))


REFERENCES = {"exp": (np.exp, 1), "tanh": (np.tanh, 2), "log": (np.log, 1),   # ulp bound
              "log1p": (np.log1p, 2), "expit": (special.expit, 4), "expm1": (np.expm1, 2),
              "sinh": (np.sinh, 2), "cosh": (np.cosh, 2), "arctan": (_c_library_atan, 1)}
LOOPS = {name: (_loop_of(getattr(vm, name)), reference, bound)
         for name, (reference, bound) in REFERENCES.items()}
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 5e-324, -5e-324, 1e-300,
                    -1e-300, 2.2250738585072014e-308, 1e-8, -1e-8, 0.625, -0.625,
                    np.nextafter(0.625, 0), 22.0, -22.0, 709.78, 709.79, 710.0, -708.3,
                    -708.4, -720.0, -745.1, -745.2, -746.0, 1e308, -1e308, 1.0, -1.0,
                    np.nextafter(1.0, 0), np.nextafter(1.0, 2), np.nextafter(-1.0, 0),
                    np.nextafter(-1.0, -2), 1.1e-16, -1.1e-16, 2.2e-16, 0.7071067811865476,
                    1.7976931348623157e308])


def _run(name, x):
    loop, _, _ = LOOPS[name]
    out = np.full_like(x, 7.0)
    loop(x, out)
    return out


def _ulps(got, want):
    """Errors in units of the last place of NumPy's value (its finite, nonzero ones)."""
    finite = np.isfinite(want) & (want != 0)
    return np.abs(got[finite] - want[finite]) / np.spacing(np.abs(want[finite]))


@pytest.mark.parametrize("name", sorted(LOOPS))
@pytest.mark.parametrize("scale", [1e-9, 0.3, 0.7, 3.0, 30.0, 300.0, 700.0])
def test_within_its_ulp_bound_of_numpy_at_random_points(name, scale):
    x = np.random.default_rng(int(scale * 1e3) % 2**32).uniform(-scale, scale, 200_000)
    if name in ("log", "log1p"):               # also positive numbers of every exponent
        x = np.concatenate([x, np.exp(x / scale * 700.0), -1.0 + np.abs(x) / scale])
    _, reference, bound = LOOPS[name]
    got = _run(name, x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        want = reference(x)
    assert _ulps(got, want).max() <= bound
    assert np.array_equal(got[~np.isfinite(want)], want[~np.isfinite(want)], equal_nan=True)
    assert np.array_equal(got[want == 0], want[want == 0])


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_numpys_values_at_zeros_infinities_nan_overflow_and_underflow(name):
    _, reference, bound = LOOPS[name]
    got = _run(name, SPECIAL)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        want = reference(SPECIAL)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    exact = np.isinf(want) | (want == 0) | (np.abs(want) == 1)
    assert np.array_equal(got[exact], want[exact])
    assert np.array_equal(np.signbit(got[exact]), np.signbit(want[exact]))
    assert _ulps(got, want).max() <= bound


def test_exp_near_the_ends_of_its_range_and_subnormal_results():
    x = np.concatenate([np.linspace(709.0, 709.8, 20_001), np.linspace(-745.2, -700.0, 20_001)])
    with np.errstate(over="ignore"):
        want = np.exp(x)
    got = _run("exp", x)
    normal = np.abs(want) >= np.finfo(float).tiny
    assert _ulps(got[normal], want[normal]).max() <= 1
    # a subnormal result has fewer digits: within one of its last place
    assert np.abs(got[~normal] - want[~normal]).max() <= 5e-324
    assert np.array_equal(np.isinf(got), np.isinf(want))


def test_log_of_subnormal_numbers_and_powers_of_two():
    x = np.concatenate([np.ldexp(1.0, np.arange(-1074, 1024)),
                        np.random.default_rng(3).uniform(0, 2.2250738585072014e-308, 10_000)])
    assert _ulps(_run("log", x), np.log(x)).max() <= 1


@pytest.mark.parametrize("ufunc", [np.exp, np.tanh, np.log, np.log1p, special.expit,
                                   np.expm1, np.sinh, np.cosh, np.arctan])
def test_the_fused_tier_calls_it_on_float64_only(ufunc):
    """Kernels of a float64 exp or tanh call vm; float32 and complex ones keep NumPy's
    function (its float32 loops, and complex rules vm has none of)."""
    for dtype, expected in ((np.float64, True), (np.float32, False), (np.complex128, False)):
        if dtype is np.complex128 and ufunc is special.expit:
            continue                                    # SciPy has no complex expit
        x = np.linspace(0.1, 0.9, 4096).astype(dtype)
        program = pb.make_ir(lambda x: ufunc(x) * 2.0 + 1.0, optimized=True)(x)
        source = fused.fused_source(program, min_size=1)
        assert (f"vm.{ufunc.__name__}(" in source) is expected, source
        if expected:
            assert "from pullback.ir import vector_math as vm  # " in source


@pytest.mark.parametrize("name, value", [
    ("exp", np.exp), ("tanh", np.tanh), ("log", np.log), ("log1p", np.log1p),
    ("logaddexp", lambda x: np.logaddexp(x, 1.0 - x)), ("expit", special.expit),
    ("expm1", np.expm1), ("sinh", np.sinh), ("cosh", np.cosh), ("arctan", np.arctan)])
def test_jit_fused_with_vm_matches_numpy_and_differentiates(name, value, monkeypatch):
    """The fused tier compiles the gradient's kernel calling vm (every group fused) and
    gives eager's gradient within rounding."""
    monkeypatch.setenv("PULLBACK_FUSED", "1")
    monkeypatch.setattr(fused, "AFTER_CALLS", 1)
    monkeypatch.setattr(fused, "BACKGROUND", False)
    x = np.random.default_rng(5).uniform(0.01, 3, 5000)

    def f(x):
        return np.sum(value(x) * x)
    program = pb.make_ir(pb.grad(f), optimized=True)(x)
    compiled = fused.compile_fused(program, "g", [x.copy()], min_size=1, measure=False)
    assert any(f"vm.{name}(" in kernel.source for kernel in compiled.kernels)
    np.testing.assert_allclose(compiled(x.copy())[0], pb.grad(f)(x), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_a_loop_of_them_is_vectorised(name):
    """The point of these functions: LLVM widens their loop (vector types in the
    optimised IR) and no element calls the C library's exp, tanh, log or log1p, as a
    loop of Numba's `np.exp` does (checked here too, so that the test can fail)."""
    loop, _, _ = LOOPS[name]
    _run(name, np.ones(4))
    _numpy_exp_loop(np.ones(4), np.ones(4))
    ir = loop.inspect_llvm(loop.signatures[0])
    assert "x double>" in ir
    assert not LIBRARY_CALL.search(ir)
    assert LIBRARY_CALL.search(_numpy_exp_loop.inspect_llvm(_numpy_exp_loop.signatures[0]))


LIBRARY_CALL = re.compile(
    r"call [^\n]*@(llvm\.)?(exp|tanh|log|log1p|logaddexp|expit|expm1|sinh|cosh|atan|arctan)\b")


_numpy_exp_loop = _loop_of(numba.njit(lambda x: np.exp(x)))



@numba.njit(error_model="numpy")
def _logaddexp_pairs(x, y, out):
    for i in range(x.shape[0]):
        out[i] = vm.logaddexp(x[i], y[i])


@pytest.mark.parametrize("scale", [1e-3, 1.0, 10.0, 100.0, 1000.0])
def test_logaddexp_within_rounding_of_numpys(scale):
    """Within 4 ulp of the larger operand plus 4 of the log1p term (the errors of
    NumPy's formula, the same: where the two cancel, neither has digits left)."""
    rng = np.random.default_rng(int(scale * 1000))
    x, y = rng.uniform(-scale, scale, (2, 200_000))
    y[::7] = x[::7] + 1e-8 * rng.standard_normal(x[::7].shape)
    got = np.empty_like(x)
    _logaddexp_pairs(x, y, got)
    term = np.log1p(np.exp(-np.abs(x - y)))
    allowed = 4 * (np.spacing(np.maximum(np.abs(x), np.abs(y))) + np.spacing(term))
    assert np.all(np.abs(got - np.logaddexp(x, y)) <= allowed)


def test_logaddexp_numpys_values_at_zeros_infinities_nan_and_extremes():
    values = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1e308, 1e308, 5e-324, 710.0]
    x, y = (a.ravel() for a in np.meshgrid(values, values))
    got = np.empty_like(x)
    _logaddexp_pairs(x, y, got)
    with np.errstate(all="ignore"):
        want = np.logaddexp(x, y)
    assert np.array_equal(got, want, equal_nan=True)


def test_the_fused_tier_calls_logaddexp_on_two_float64_operands():
    for dtype, expected in ((np.float64, True), (np.float32, False)):
        x = np.linspace(-3, 3, 4096).astype(dtype)
        program = pb.make_ir(lambda x: np.logaddexp(x, x[::-1]) * 2.0, optimized=True)(x)
        assert ("vm.logaddexp(" in fused.fused_source(program, min_size=1)) is expected


def test_a_loop_of_logaddexp_is_vectorised():
    _logaddexp_pairs(np.ones(4), np.ones(4), np.ones(4))
    ir = _logaddexp_pairs.inspect_llvm(_logaddexp_pairs.signatures[0])
    assert "x double>" in ir and not LIBRARY_CALL.search(ir)


@numba.njit(error_model="numpy")
def _muladds(a, b, c, out):
    for i in range(a.shape[0]):
        out[i] = vm.muladd(a[i], b[i], c[i])


def test_muladd_rounds_once_or_twice_and_kernels_round_every_operation(monkeypatch):
    """`muladd(a, b, c)` is a * b + c rounded once (a fused multiply-add, where the CPU
    has one) or twice, nothing else; a fused kernel's own `x * y + z` rounds twice, as
    NumPy does (the kernels are never contracted)."""
    from fractions import Fraction
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 500))
    c = -a * b                              # a * b + c rounded twice: 0; once: its error
    out = np.empty(500)
    _muladds(a, b, c, out)
    once = np.array([float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)])
    assert np.all((out == once) | (out == a * b + c))
    assert np.any(once != 0.0)
    monkeypatch.setenv("PULLBACK_FUSED", "1")
    monkeypatch.setattr(fused, "AFTER_CALLS", 1)
    monkeypatch.setattr(fused, "BACKGROUND", False)
    monkeypatch.setattr(fused, "_faster", lambda *args: True)
    f = pb.jit(lambda x, y, z: np.tanh(x * y + z) + x * y + z)
    f(a, b, c)
    assert next(iter(f.cache.values())).fast.kernels
    np.testing.assert_array_equal(f(a, b, c) - np.tanh(a * b + c), a * b + c)


def test_arctan_at_and_beside_the_points_where_its_reduction_changes():
    """vm.arctan moves |x| near 0 differently below and above 0.4375, 0.6875, 1.1875 and
    2.4375: within 1 ulp of the C library's on both sides of each, and at huge and tiny
    |x|."""
    points = np.array([0.4375, 0.6875, 1.1875, 2.4375, 2.0 ** 66, 2.0 ** -27, 1.0])
    x = np.concatenate([points, np.nextafter(points, 0), np.nextafter(points, np.inf)])
    x = np.concatenate([x, -x, np.linspace(0.43, 2.45, 100_001)])
    assert _ulps(_run("arctan", x), _c_library_atan(x)).max() <= 1
    # fdlibm's atan rounds as the C library's in about 94% of points: a wrong low part of
    # atan(c) (each under half an ulp) stays within 1 ulp but drops that to 86%
    x = np.random.default_rng(1).uniform(-3, 3, 400_000)
    assert np.mean(_run("arctan", x) == _c_library_atan(x)) > 0.9


def test_expit_is_within_its_documented_bound_near_minus_37():
    """Near x = -36.86, where e**-x passes 2**53 and 1 + e**-x rounds, an ulp of exp is
    1.6 of expit's: expit was 4 ulp from SciPy's there, past the 3 documented."""
    x = np.array([-36.857482321895276, -36.750143091850035, -36.8473666856343])
    assert _ulps(_run("expit", x), special.expit(x)).max() <= REFERENCES["expit"][1]
