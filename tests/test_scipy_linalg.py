"""scipy.linalg, differentiable: every function of pullback.scipy.linalg against SciPy.

Each row is a function written once against a namespace `m` (`scipy.linalg`, the
reference, or `pullback.scipy.linalg`) with well-conditioned inputs: values and dtypes
equal SciPy's (also computed under both modes), derivatives match finite differences to
second order in float64 and float32. Rows that read one triangle (cholesky, eigh,
solve with assume_a='sym', solve_triangular) get non-symmetric inputs on purpose: the
derivative must be that of exactly the function SciPy computes. A sample of rows is also
checked under vmap, jit, and for agreement of the four Hessian modes. Last, the error
SciPy's own functions raise on traced values (they convert them with np.asarray): it
names the function and its differentiable stand-in.
"""
import importlib
import re

import numpy as np
import pytest
import scipy
import scipy.linalg as sl
import scipy.special as sp
import scipy.stats as st

import pullback
from helpers import raises
from pullback.core.array_methods import stand_in_hint
from pullback.errors import ArrayConversionError, ComplexValueError, UnsupportedFunctionError
from pullback.operators import HESSIAN_MODES
from pullback.scipy import linalg as pl
from pullback.scipy import special as ps
from pullback.tree import flatten
from test_linalg import Draw, Row


def upper_spd(d, *shape):
    """SPD in the upper triangle, arbitrary below it (what SciPy's default reads)."""
    return np.swapaxes(d.lower_spd(*shape), -1, -2)


def near_identity(d, *shape):
    """Eigenvalues near 1 (real parts in (0.4, 1.6)): real logm and sqrtm."""
    return d.normal(*shape) * 0.2 + np.eye(shape[-1], dtype=d.dtype)


def tridiagonal_friendly(d, *shape):
    """Invertible in its diagonal and in its tridiagonal part (dominant diagonal)."""
    return d.normal(*shape) * 0.3 + 3.0 * np.eye(shape[-1], dtype=d.dtype)


def signed(result):
    """eigh's (w, v) with each eigenvector's first entry positive: LAPACK drivers differ in
    the (arbitrary) signs they choose."""
    w, v = result
    return w, v * np.sign(v[..., :1, :])


ROWS = [
    # ---------------------------------------------------------- triangular solves
    Row("solve_triangular", lambda m, a, b: m.solve_triangular(a, b),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve_triangular/lower-vector", lambda m, a, b: m.solve_triangular(a, b, lower=True),
        lambda d: (d.invertible(3, 3), d.normal(3))),
    Row("solve_triangular/trans=T", lambda m, a, b: m.solve_triangular(a, b, trans="T"),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve_triangular/trans=2-lower", lambda m, a, b: m.solve_triangular(
        a, b, trans=2, lower=True), lambda d: (d.invertible(3, 3), d.normal(3, 1))),
    Row("solve_triangular/unit_diagonal", lambda m, a, b: m.solve_triangular(
        a, b, lower=True, unit_diagonal=True), lambda d: (d.normal(3, 3), d.normal(3, 2))),
    Row("solve_triangular/batched", lambda m, a, b: m.solve_triangular(a, b, trans=1),
        lambda d: (d.invertible(2, 3, 3), d.normal(2, 3, 2))),
    # ------------------------------------------------------------------ Cholesky
    Row("cholesky", lambda m, a: m.cholesky(a), lambda d: (upper_spd(d, 3, 3),)),
    Row("cholesky/lower", lambda m, a: m.cholesky(a, lower=True),
        lambda d: (d.lower_spd(3, 3),)),
    Row("cholesky/batched", lambda m, a: m.cholesky(a), lambda d: (upper_spd(d, 2, 3, 3),)),
    Row("cho_factor", lambda m, a: m.cho_factor(a)[0], lambda d: (upper_spd(d, 3, 3),)),
    Row("cho_factor/lower", lambda m, a: m.cho_factor(a, lower=True)[0],
        lambda d: (d.lower_spd(3, 3),)),
    Row("cho_solve", lambda m, a, b: m.cho_solve(m.cho_factor(a), b),
        lambda d: (upper_spd(d, 3, 3), d.normal(3, 2))),
    Row("cho_solve/lower-vector", lambda m, a, b: m.cho_solve(m.cho_factor(a, lower=True), b),
        lambda d: (d.lower_spd(3, 3), d.normal(3))),
    # ------------------------------------------------------------------------ LU
    Row("lu_factor", lambda m, a: m.lu_factor(a)[0], lambda d: (d.normal(4, 4),)),
    Row("lu_factor/batched", lambda m, a: m.lu_factor(a)[0], lambda d: (d.normal(2, 3, 3),)),
    Row("lu_solve", lambda m, a, b: m.lu_solve(m.lu_factor(a), b),
        lambda d: (d.normal(4, 4), d.normal(4, 2))),
    Row("lu_solve/trans=1-vector", lambda m, a, b: m.lu_solve(m.lu_factor(a), b, trans=1),
        lambda d: (d.normal(4, 4), d.normal(4))),
    Row("lu", lambda m, a: tuple(m.lu(a)), lambda d: (d.normal(4, 4),)),
    Row("lu/permute_l", lambda m, a: tuple(m.lu(a, permute_l=True)), lambda d: (d.normal(4, 4),)),
    Row("lu/batched", lambda m, a: tuple(m.lu(a)), lambda d: (d.normal(2, 3, 3),)),
    Row("lu_factor/tall", lambda m, a: m.lu_factor(a)[0], lambda d: (d.normal(5, 3),)),
    Row("lu_factor/wide-batched", lambda m, a: m.lu_factor(a)[0], lambda d: (d.normal(2, 3, 5),)),
    Row("lu/tall", lambda m, a: tuple(m.lu(a)), lambda d: (d.normal(4, 2),)),
    Row("lu/p_indices", lambda m, a: tuple(m.lu(a, p_indices=True)), lambda d: (d.normal(4, 4),)),
    Row("lu/wide-permute_l", lambda m, a: tuple(m.lu(a, permute_l=True)),
        lambda d: (d.normal(2, 4),)),
    # --------------------------------------------------------- solve, inv, det
    Row("solve", lambda m, a, b: m.solve(a, b), lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/vector", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(3, 3), d.normal(3))),
    Row("solve/batched", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(2, 3, 3), d.normal(2, 3, 2))),
    Row("solve/transposed", lambda m, a, b: m.solve(a, b, transposed=True),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/gen", lambda m, a, b: m.solve(a, b, assume_a="gen"),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/sym", lambda m, a, b: m.solve(a, b, assume_a="sym"),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/sym-lower", lambda m, a, b: m.solve(a, b, assume_a="sym", lower=True),
        lambda d: (d.invertible(3, 3), d.normal(3))),
    Row("solve/pos", lambda m, a, b: m.solve(a, b, assume_a="pos"),
        lambda d: (upper_spd(d, 3, 3), d.normal(3, 2))),
    Row("solve/positive-definite-lower", lambda m, a, b: m.solve(
        a, b, assume_a="positive definite", lower=True),
        lambda d: (d.lower_spd(3, 3), d.normal(3, 2))),
    Row("solve/diagonal", lambda m, a, b: m.solve(a, b, assume_a="diagonal"),
        lambda d: (tridiagonal_friendly(d, 3, 3), d.normal(3, 2))),
    Row("solve/tridiagonal", lambda m, a, b: m.solve(a, b, assume_a="tridiagonal"),
        lambda d: (tridiagonal_friendly(d, 4, 4), d.normal(4, 2))),
    Row("solve/tridiagonal-transposed", lambda m, a, b: m.solve(
        a, b, assume_a="tridiagonal", transposed=True),
        lambda d: (tridiagonal_friendly(d, 4, 4), d.normal(4))),
    Row("solve/banded", lambda m, a, b: m.solve(a, b, assume_a="banded"),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/upper-triangular", lambda m, a, b: m.solve(a, b, assume_a="upper triangular"),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/lower-triangular-transposed", lambda m, a, b: m.solve(
        a, b, assume_a="lower triangular", transposed=True),
        lambda d: (d.invertible(3, 3), d.normal(3))),
    Row("inv", lambda m, a: m.inv(a), lambda d: (d.invertible(3, 3),)),
    Row("inv/batched", lambda m, a: m.inv(a), lambda d: (d.invertible(2, 3, 3),)),
    Row("inv/sym-lower", lambda m, a: m.inv(a, assume_a="sym", lower=True),
        lambda d: (d.invertible(3, 3),)),
    Row("inv/pos", lambda m, a: m.inv(a, assume_a="pos"), lambda d: (upper_spd(d, 3, 3),)),
    Row("inv/upper-triangular", lambda m, a: m.inv(a, assume_a="upper triangular"),
        lambda d: (d.invertible(3, 3),)),
    Row("inv/diagonal", lambda m, a: m.inv(a, assume_a="diagonal"),   # SciPy: diagonal a only
        lambda d: (np.diag(np.diag(tridiagonal_friendly(d, 3, 3))),)),
    Row("det", lambda m, a: m.det(a), lambda d: (d.normal(3, 3),)),
    Row("det/batched", lambda m, a: m.det(a), lambda d: (d.normal(2, 3, 3),)),
    # ------------------------------------------------------------ eigh, svd, qr
    Row("eigh", lambda m, a: signed(m.eigh(a)), lambda d: (d.normal(3, 3),)),
    Row("eigh/upper", lambda m, a: signed(m.eigh(a, lower=False)), lambda d: (d.normal(3, 3),)),
    Row("eigh/eigvals_only", lambda m, a: m.eigh(a, eigvals_only=True),
        lambda d: (d.normal(2, 3, 3),)),
    Row("eigh/subset_by_index", lambda m, a: signed(m.eigh(a, subset_by_index=[1, 2])),
        lambda d: (d.normal(4, 4),)),
    Row("eigh/generalized", lambda m, a, b: signed(m.eigh(a, b)),
        lambda d: (d.normal(3, 3), d.lower_spd(3, 3))),
    Row("eigh/generalized-upper", lambda m, a, b: signed(m.eigh(a, b, lower=False)),
        lambda d: (d.normal(3, 3), upper_spd(d, 3, 3))),
    Row("eigh/generalized-type2", lambda m, a, b: signed(m.eigh(a, b, type=2)),
        lambda d: (d.normal(3, 3), d.lower_spd(3, 3))),
    Row("eigh/generalized-type3-values", lambda m, a, b: m.eigh(a, b, type=3, eigvals_only=True),
        lambda d: (d.normal(3, 3), d.lower_spd(3, 3))),
    Row("svd", lambda m, a: tuple(m.svd(a)), lambda d: (d.normal(3, 3),)),
    Row("svd/tall-reduced", lambda m, a: tuple(m.svd(a, full_matrices=False)),
        lambda d: (d.normal(4, 3),)),
    Row("svd/values", lambda m, a: m.svd(a, compute_uv=False), lambda d: (d.normal(2, 3, 4),)),
    Row("qr", lambda m, a: tuple(m.qr(a)), lambda d: (d.normal(3, 3),)),
    Row("qr/economic", lambda m, a: tuple(m.qr(a, mode="economic")), lambda d: (d.normal(4, 3),)),
    Row("qr/r", lambda m, a: m.qr(a, mode="r"), lambda d: (d.normal(4, 3),)),
    Row("qr/pivoting", lambda m, a: m.qr(a, pivoting=True), lambda d: (d.normal(3, 3),)),
    Row("qr/pivoting-economic-batched", lambda m, a: m.qr(a, mode="economic", pivoting=True),
        lambda d: (d.normal(2, 4, 3),)),
    Row("qr/pivoting-r", lambda m, a: m.qr(a, mode="r", pivoting=True),
        lambda d: (d.normal(4, 3),)),
    Row("polar", lambda m, a: tuple(m.polar(a)), lambda d: (d.normal(3, 3),)),
    Row("polar/left-wide", lambda m, a: tuple(m.polar(a, side="left")),
        lambda d: (d.normal(2, 3),)),
    Row("polar/right-tall", lambda m, a: tuple(m.polar(a)), lambda d: (d.normal(4, 2),)),
    Row("polar/left-square-batched", lambda m, a: tuple(m.polar(a, side="left")),
        lambda d: (d.normal(2, 3, 3),)),
    Row("polar/right-wide", lambda m, a: tuple(m.polar(a)), lambda d: (d.normal(2, 3),)),
    Row("polar/orthogonal", lambda m, a: tuple(m.polar(a)),          # repeated singular values
        lambda d: (np.linalg.qr(d.normal(3, 3))[0],)),
    # -------------------------------------------------------- matrix functions
    Row("expm", lambda m, a: m.expm(a), lambda d: (d.normal(3, 3),)),
    Row("expm/batched", lambda m, a: m.expm(a), lambda d: (d.normal(2, 3, 3),)),
    Row("expm_frechet", lambda m, a, e: tuple(m.expm_frechet(a, e)),
        lambda d: (d.normal(3, 3), d.normal(3, 3))),
    Row("expm_frechet/derivative-only", lambda m, a, e: m.expm_frechet(a, e, compute_expm=False),
        lambda d: (d.normal(3, 3), d.normal(3, 3))),
    Row("sqrtm", lambda m, a: m.sqrtm(a), lambda d: (near_identity(d, 3, 3),)),
    Row("sqrtm/spd", lambda m, a: m.sqrtm(a), lambda d: (d.spd(3, 3),)),
    Row("logm", lambda m, a: m.logm(a), lambda d: (near_identity(d, 3, 3),)),
    Row("logm/spd", lambda m, a: m.logm(a), lambda d: (d.spd(3, 3),)),
    Row("solve_sylvester", lambda m, a, b, q: m.solve_sylvester(a, b, q),
        lambda d: (d.invertible(3, 3), d.invertible(2, 2), d.normal(3, 2))),
    # -------------------------------------------------------- special matrices
    Row("block_diag", lambda m, a, v, s: m.block_diag(a, v, s, np.ones((1, 2))),
        lambda d: (d.normal(2, 2), d.normal(3), d.normal())),
    Row("toeplitz", lambda m, c: m.toeplitz(c), lambda d: (d.normal(3),)),
    Row("toeplitz/c-r", lambda m, c, r: m.toeplitz(c, r), lambda d: (d.normal(3), d.normal(4))),
    Row("toeplitz/batched", lambda m, c, r: m.toeplitz(c, r),
        lambda d: (d.normal(2, 3), d.normal(2))),
    Row("circulant", lambda m, c: m.circulant(c), lambda d: (d.normal(4),)),
    Row("hankel", lambda m, c: m.hankel(c), lambda d: (d.normal(3),)),
    Row("hankel/c-r", lambda m, c, r: m.hankel(c, r), lambda d: (d.normal(3), d.normal(2))),
]
BY_NAME = {row.name: row for row in ROWS}
assert len(BY_NAME) == len(ROWS)
DTYPES = [np.float64, np.float32]


def _inputs(row, dtype):
    return row.args(Draw(row.name, dtype))


def _assert_tree_close(got, expected, tol):
    got, _ = flatten(got)
    expected, _ = flatten(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.asarray(g).dtype == np.asarray(e).dtype, (np.asarray(g).dtype, e.dtype)
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(BY_NAME))
def test_values_equal_scipy(name, dtype):
    row = BY_NAME[name]
    args = _inputs(row, dtype)
    with np.errstate(all="ignore"):
        expected = row.fn(sl, *args)
    tol = 1e-10 if dtype == np.float64 else 2e-4

    def f(*a):
        return row.fn(pl, *a)
    _assert_tree_close(f(*args), expected, tol)
    _assert_tree_close(pullback.pullback(f, *args)[0], expected, tol)
    _assert_tree_close(pullback.pushforward(f, tuple(args), tuple(map(np.ones_like, args)))[0],
                       expected, tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(BY_NAME))
def test_grads(name, dtype):
    row = BY_NAME[name]
    pullback.check_grads(lambda *args: row.fn(pl, *args), _inputs(row, dtype), order=2,
                         modes=("forward", "reverse"))


SAMPLE = ["solve_triangular/batched", "cho_solve", "lu_solve", "lu/tall", "solve/sym",
          "eigh/generalized", "expm", "logm", "sqrtm", "solve_sylvester", "polar",
          "toeplitz/c-r", "block_diag"]


@pytest.mark.parametrize("name", SAMPLE)
def test_vmap_matches_a_loop(name):
    row = BY_NAME[name]
    examples = [[x * (1.0 + 0.05 * k) for x in _inputs(row, np.float64)] for k in range(3)]
    stacked = [np.stack(xs) for xs in zip(*examples)]
    got, _ = flatten(pullback.vmap(lambda *args: row.fn(pl, *args))(*stacked))
    expected = [np.stack(outs) for outs in zip(*(flatten(row.fn(sl, *xs))[0]
                                                 for xs in examples))]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-10)


def _weighted_sum(row):
    """A scalar function of the row's first argument (the others fixed)."""
    args = _inputs(row, np.float64)
    outs = flatten(row.fn(sl, *args))[0]
    weights = [np.random.default_rng(3).uniform(0.5, 1.5, np.shape(o)) for o in outs]

    def f(x):
        values = flatten(row.fn(pl, x, *args[1:]))[0]
        return sum(np.sum(v * w) for v, w in zip(values, weights)
                   if np.asarray(w).dtype.kind == "f")
    return f, args[0]


@pytest.mark.parametrize("name", SAMPLE)
def test_jit_matches_eager(name):
    f, x = _weighted_sum(BY_NAME[name])
    np.testing.assert_allclose(pullback.jit(f)(x), f(x), rtol=1e-12)
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(x), pullback.grad(f)(x),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["solve_triangular", "lu_solve", "lu_factor/tall",
                                  "eigh/generalized", "expm",
                                  "logm", "sqrtm", "solve_sylvester"])
def test_hessian_modes_agree(name):
    f, x = _weighted_sum(BY_NAME[name])
    hessians = [pullback.hessian(f, mode=mode)(x) for mode in HESSIAN_MODES]
    for h in hessians[1:]:
        np.testing.assert_allclose(h, hessians[0], rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------- specifics


def test_unread_triangle_has_zero_gradient():
    """Functions reading one triangle are differentiated as functions of that triangle."""
    d = Draw("triangle", np.float64)
    a, spd, b = d.invertible(3, 3), upper_spd(d, 3, 3), d.normal(3, 2)
    lower = np.tril(np.ones((3, 3), bool), -1)
    for f, x, unread in [
            (lambda a: pl.solve_triangular(a, b, lower=True), a, lower.T),
            (lambda a: pl.solve_triangular(a, b), a, lower),
            (lambda a: pl.solve(a, b, assume_a="sym"), a, lower),
            (lambda a: pl.solve(a, b, assume_a="pos", lower=True), spd.T, lower.T),
            (lambda a: pl.inv(a, assume_a="pos"), spd, lower),
            (lambda a: pl.cholesky(a), spd, lower),
            (lambda a: pl.cho_factor(a, lower=True)[0], spd.T, np.zeros((3, 3), bool)),
            (lambda a: pl.eigh(a)[1], a, lower.T),
            (lambda a: pl.eigh(a, lower=False)[1], a, lower),
            (lambda a: pl.solve_triangular(a, b, unit_diagonal=True), a,
             lower | np.eye(3, dtype=bool))]:
        g = pullback.grad(lambda x: np.sum(f(x) ** 3))(x)
        assert np.all(g[unread] == 0)
        assert np.all(g[~unread] != 0)


def test_lu_pivots_and_indices_equal_scipy():
    a = Draw("lu-pivots", np.float64).normal(2, 5, 5)
    lu, piv = pl.lu_factor(a)
    expected_lu, expected_piv = sl.lu_factor(a)
    np.testing.assert_array_equal(piv, expected_piv)
    np.testing.assert_allclose(lu, expected_lu, rtol=1e-12)
    for x in (a[0], a[0, :, :3], a[0, :3]):
        p, l, u = pl.lu(x, p_indices=True)
        expected = sl.lu(x, p_indices=True)[0]
        np.testing.assert_array_equal(p, expected)
        assert p.dtype == expected.dtype
        np.testing.assert_allclose(l[p] @ u, x, rtol=1e-12)


def test_expm_frechet_is_the_derivative_of_expm():
    d = Draw("frechet", np.float64)
    a, e = d.normal(3, 3), d.normal(3, 3)
    _, tangent = pullback.jvp(pl.expm, (a,), (e,))
    np.testing.assert_allclose(tangent, sl.expm_frechet(a, e, compute_expm=False), rtol=1e-12)
    np.testing.assert_allclose(pl.expm_frechet(a, e)[1], tangent, rtol=1e-13)


def test_unsupported_cases_say_why():
    d = Draw("unsupported", np.float64)
    tall, wide = d.normal(4, 3), d.normal(3, 4)
    cases = [
        (lambda: pl.qr(tall), "mode='full' for a non-square 4x3"),
        (lambda: pl.qr(wide, mode="economic"), r"wide 3x4 matrix"),
        (lambda: pl.qr(d.normal(3, 3), mode="raw"), "mode='raw'"),
        (lambda: pl.svd(tall), "full_matrices=True for a non-square 4x3"),
        (lambda: pl.eigh(d.normal(3, 3), subset_by_value=(0, 1)), "subset_by_index"),
    ]
    for call, message in cases:
        with raises(UnsupportedFunctionError, message):
            call()
    with raises(UnsupportedFunctionError, "subset_by_value"):
        pullback.grad(lambda a: np.sum(pl.eigh(a, subset_by_value=(0, 1))[0]))(d.normal(3, 3))


def test_complex_values_are_refused():
    with raises(ComplexValueError, "scipy.linalg.expm of a complex matrix"):
        pl.expm(np.eye(2) * 1j)
    with raises(ComplexValueError, "scipy.linalg.logm", "negative real eigenvalue"):
        pullback.grad(lambda a: np.sum(pl.logm(a)))(-np.eye(2))
    with raises(ComplexValueError, "scipy.linalg.sqrtm", "negative real eigenvalue"):
        pullback.grad(lambda a: np.sum(pl.sqrtm(a)))(np.diag([1.0, -2.0]))


def test_argument_errors_match_scipy():
    with pytest.raises(ValueError, match="not a recognized matrix structure"):
        pl.solve(np.eye(2), np.ones(2), assume_a="bogus")
    with pytest.raises(ValueError, match="trans"):
        pl.solve_triangular(np.eye(2), np.ones(2), trans=3)
    with pytest.raises(ValueError, match="square"):
        pl.inv(np.ones((2, 3)))
    with pytest.raises(ValueError, match="side"):
        pl.polar(np.eye(2), side="up")
    with pytest.raises(ValueError, match="dimension greater than 2"):
        pl.block_diag(np.ones((2, 2, 2)))


def test_integer_input_becomes_float64():
    a = np.array([[3, 1], [1, 2]])
    for name in ("inv", "det", "cholesky", "expm", "sqrtm"):
        got, expected = getattr(pl, name)(a), getattr(sl, name)(a)
        assert got.dtype == expected.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_array_equal(pl.toeplitz([1, 2, 3]), sl.toeplitz([1, 2, 3]))
    np.testing.assert_array_equal(pl.block_diag(), sl.block_diag())


# ------------------------------------ issue 10, section 3: SciPy converting a tracer

def _resolves(dotted):
    """Whether `dotted` ("pullback.scipy.linalg.solve") names an existing object."""
    module, *attributes = dotted.split(".")
    obj = importlib.import_module(module)
    for attribute in attributes:
        if not hasattr(obj, attribute):
            return False
        obj = getattr(obj, attribute)
    return True


def _suggested(message):
    return re.findall(r"`(pullback(?:\.\w+)+)`", message)


@pytest.mark.parametrize("call, function, stand_in", [
    (lambda x: sp.logsumexp(x), "scipy.special.logsumexp", "pullback.scipy.special.logsumexp"),
    (lambda x: sp.softmax(x), "scipy.special.softmax", "pullback.scipy.special.softmax"),
    (lambda x: sl.solve(x, np.ones(3)), "scipy.linalg.solve", "pullback.scipy.linalg.solve"),
    (lambda x: sl.eigh(x)[0], "scipy.linalg.eigh", "pullback.scipy.linalg.eigh"),  # decorated
    (lambda x: sl.toeplitz(x[0]), "scipy.linalg.toeplitz", "pullback.scipy.linalg.toeplitz"),
    (lambda x: sl.expm(x), "scipy.linalg.expm", "pullback.scipy.linalg.expm"),
    (lambda x: sl.schur(x)[0], "scipy.linalg.schur", "no differentiable version"),
    (lambda x: st.norm.logpdf(x), "scipy.stats.norm.logpdf", "no differentiable version"),
], ids=["logsumexp", "softmax", "solve", "eigh", "toeplitz", "expm", "schur", "norm.logpdf"])
def test_issue10_conversion_error_names_the_scipy_function_and_what_to_call(call, function,
                                                                            stand_in):
    x = Draw("conversion", np.float64).spd(3, 3)
    with raises(ArrayConversionError, f"`{function}`", stand_in) as info:
        pullback.grad(lambda x: np.sum(call(x)))(x)
    assert all(_resolves(name) for name in _suggested(str(info.value)))


def test_issue10_every_suggested_stand_in_exists():
    """For every public function of scipy.linalg and scipy.special (and a sample of
    scipy.stats), each name the hint suggests exists; each of pullback.scipy's functions is
    suggested for its SciPy namesake."""
    functions = [f"scipy.{module}.{name}" for module in ("linalg", "special", "stats")
                 for name in dir(getattr(scipy, module)) if not name.startswith("_")
                 and callable(getattr(getattr(scipy, module), name))]
    assert len(functions) > 300
    for function in functions:
        assert all(_resolves(name) for name in _suggested(stand_in_hint(function))), function
    for module in (pl, ps):
        for name in module.__all__:
            library = module.__name__.replace("pullback.", "")
            assert f"`{module.__name__}.{name}`" in stand_in_hint(f"{library}.{name}")
    with raises(ArrayConversionError) as info:
        pullback.grad(lambda x: np.sum(np.asarray(x)))(np.ones(2))
    assert all(_resolves(name) for name in _suggested(str(info.value)))
