"""Sparse Jacobians and Hessians (pullback.sparse): equal to the dense ones, plans reused at new
points, SciPy integration, and the errors."""

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg

import pullback
from helpers import benchmark_module, raises
from pullback.errors import ModeError, NonDifferentiableInputError, NonScalarOutputError
from pullback.errors import (ChunkSizeError, OrderError, PatternError, PlanMismatchError,
                             SparseStructureError)
from pullback.sparse import prepare_hessian, prepare_jacobian, sparse_hessian, sparse_jacobian

problems = benchmark_module("sparse_problems")

HESSIAN_PROBLEMS = [(problems.rosenbrock, problems.rosenbrock_pattern, "rosenbrock"),
                    (problems.arwhead, problems.arwhead_pattern, "arwhead"),
                    (problems.broydn7d, problems.broydn7d_pattern, "broydn7d")]


def assert_close(sparse, dense, rtol=1e-12):
    """Equal up to rounding (the compressed and dense passes sum in different orders)."""
    assert scipy.sparse.issparse(sparse) and sparse.format == "csr"
    np.testing.assert_allclose(sparse.toarray(), dense, rtol=0,
                               atol=rtol * max(1.0, np.abs(dense).max(initial=0.0)))


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_brusselator_jacobian_equals_the_dense_one(mode, chunk_size):
    N = 4
    f, x = problems.brusselator(np, N), problems.start("brusselator", N)
    jacobian = sparse_jacobian(f, x, pattern=problems.brusselator_pattern(N), mode=mode,
                               chunk_size=chunk_size)
    assert_close(jacobian, pullback.jacobian(f)(x).reshape(2 * N * N, 2 * N * N))


def _random_sparse_function(m, n, density, seed):
    """f(x) = (A o P) tanh(x) + (B o P) x^2 for a random pattern P: its Jacobian's pattern is P."""
    rng = np.random.default_rng(seed)
    pattern = rng.random((m, n)) < density
    a, b = (np.where(pattern, rng.normal(size=(m, n)), 0.0) for _ in range(2))
    return (lambda x: a @ np.tanh(x.ravel()) + b @ x.ravel() ** 2), pattern


@pytest.mark.parametrize("m, n, density", [(7, 5, 0.3), (5, 9, 0.2), (1, 6, 0.5), (6, 1, 0.5),
                                           (8, 8, 1.0), (4, 6, 0.0)])
@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_random_sparse_jacobians_equal_the_dense_ones(m, n, density, mode):
    f, pattern = _random_sparse_function(m, n, density, seed=m * n)
    x = np.random.default_rng(1).normal(size=n)
    assert_close(sparse_jacobian(f, x, pattern=pattern, mode=mode), pullback.jacobian(f)(x))
    # x of any shape: its elements in C order are the columns
    if n == 6:
        X = x.reshape(2, 3)
        dense = pullback.jacobian(f)(X).reshape(m, n)
        assert_close(sparse_jacobian(f, X, pattern=pattern, mode=mode), dense)


@pytest.mark.parametrize("problem, pattern, name", HESSIAN_PROBLEMS)
@pytest.mark.parametrize("n", [2, 12])
def test_benchmark_hessians_equal_the_dense_ones(problem, pattern, name, n):
    f, x = problem(np), problems.start(name, n)
    hessian = sparse_hessian(f, x, pattern=pattern(n))
    assert_close(hessian, pullback.hessian(f)(x))
    assert (hessian != hessian.T).nnz == 0                    # exactly symmetric


@pytest.mark.parametrize("seed", range(4))
def test_random_sparse_hessians_equal_the_dense_ones(seed):
    """f = sum over a random symmetric pattern's pairs of w sin(x_i x_j), plus sum c x^3."""
    rng = np.random.default_rng(seed)
    n = 9
    upper = np.triu(rng.random((n, n)) < 0.25, 1)
    rows, cols = np.nonzero(upper)
    w, c = rng.normal(size=rows.size), rng.normal(size=n)

    def f(x):
        return np.sum(w * np.sin(x[rows] * x[cols])) + np.sum(c * x ** 3)
    x = rng.normal(size=n)
    pattern = upper | np.eye(n, dtype=bool)                 # one triangle is enough
    assert_close(sparse_hessian(f, x, pattern=pattern), pullback.hessian(f)(x))


def test_plans_are_reused_at_new_points_and_report_their_colouring():
    n = 30
    f = problems.rosenbrock(np)
    plan = prepare_hessian(f, problems.start("rosenbrock", n),
                           pattern=problems.rosenbrock_pattern(n))
    assert (plan.colours, plan.nnz, plan.shape, plan.mode) == (3, 3 * n - 2, (n, n),
                                                               "reverse-over-forward")
    assert plan.density == pytest.approx((3 * n - 2) / n ** 2)
    assert plan.order in pullback.sparse.ORDERS and plan.colouring.shape == (n,)
    assert "colours=3" in repr(plan)
    for seed in range(3):
        x = problems.start("rosenbrock", n, seed=seed + 10)
        assert_close(plan(x), pullback.hessian(f)(x))

    N = 3
    g = problems.brusselator(np, N)
    jacobian_plan = prepare_jacobian(g, problems.start("brusselator", N),
                                     pattern=problems.brusselator_pattern(N))
    assert jacobian_plan.mode in ("forward", "reverse") and jacobian_plan.colours >= 6
    for seed in range(2):
        x = problems.start("brusselator", N, seed=seed + 5)
        assert_close(jacobian_plan(x), pullback.jacobian(g)(x).reshape(18, 18))


def test_auto_mode_takes_the_side_with_fewer_colours():
    dense_last_row = np.eye(8, dtype=bool)
    dense_last_row[-1] = True                    # 8 column colours, 2 row colours
    f = lambda x: np.concatenate([x[:-1] ** 2, np.sum(x ** 3)[None]])  # noqa: E731
    plan = prepare_jacobian(f, np.ones(8), pattern=dense_last_row)
    assert (plan.mode, plan.colours) == ("reverse", 2)
    assert_close(plan(np.arange(8.0)), pullback.jacobian(f)(np.arange(8.0)))
    g = lambda x: x ** 2 + x[0]                  # noqa: E731  (a dense first column)
    plan = prepare_jacobian(g, np.ones(8), pattern=dense_last_row[::-1, ::-1].T)
    assert (plan.mode, plan.colours) == ("forward", 2)
    assert_close(plan(np.arange(8.0)), pullback.jacobian(g)(np.arange(8.0)))


def test_float32_gives_float32_and_scalars_and_empty_inputs_work():
    f = problems.rosenbrock(np)
    x = problems.start("rosenbrock", 6).astype(np.float32)
    hessian = sparse_hessian(f, x, pattern=problems.rosenbrock_pattern(6))
    assert hessian.dtype == np.float32
    np.testing.assert_allclose(hessian.toarray(), pullback.hessian(f)(x.astype(float)), rtol=1e-5)
    jacobian = sparse_jacobian(np.sin, x, pattern=np.eye(6, dtype=bool), mode="reverse")
    assert jacobian.dtype == np.float32
    assert sparse_hessian(lambda t: t ** 3, 2.0, pattern=[[True]]).toarray() == [[12.0]]
    empty = sparse_jacobian(lambda t: np.sum(t) * np.ones(2), np.zeros(0),
                            pattern=np.zeros((2, 0), bool))
    assert empty.shape == (2, 0) and empty.nnz == 0


def test_zero_derivatives_inside_the_pattern_are_stored_and_a_constant_function_works():
    jacobian = sparse_jacobian(lambda x: x * 0.0 + 1.0, np.ones(3), pattern=np.eye(3, dtype=bool))
    assert jacobian.nnz == 3 and not jacobian.toarray().any()
    constant = sparse_jacobian(lambda x: np.ones(2), np.ones(3), pattern=np.zeros((2, 3), bool))
    assert constant.nnz == 0


def test_hessian_plan_drives_scipy_trust_constr_with_extra_arguments():
    """SciPy calls hess(x, *args) and takes the CSR result as it is."""
    def f(x, scale):
        return scale * np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    n, x0 = 12, np.zeros(12)
    plan = prepare_hessian(f, x0, 2.0, pattern=problems.rosenbrock_pattern(n))
    result = scipy.optimize.minimize(pullback.value_and_grad(f), x0, args=(2.0,), jac=True,
                                     hess=plan, method="trust-constr",
                                     options={"gtol": 1e-10, "xtol": 1e-12})
    np.testing.assert_allclose(result.x, np.ones(n), atol=1e-6)
    assert result.nhev > 1


def test_jacobian_goes_into_scipy_sparse_solvers():
    N = 3
    f, x = problems.brusselator(np, N), problems.start("brusselator", N)
    jacobian = sparse_jacobian(f, x, pattern=problems.brusselator_pattern(N))
    b = np.arange(2.0 * N * N)
    np.testing.assert_allclose(scipy.sparse.linalg.spsolve(jacobian.tocsc(), b),
                               np.linalg.solve(jacobian.toarray(), b), rtol=1e-10)


def test_pattern_missing_a_nonzero_is_refused():
    """A pattern without a nonzero the function has: a PatternError, never wrong values.
    A nonzero alone in its compressed entry is caught at every call; one sharing its entry
    with a nonzero of the pattern, by the random product checked when the plan is prepared."""
    f = problems.rosenbrock(np)
    x = problems.start("rosenbrock", 6)
    off_diagonal = problems.rosenbrock_pattern(6).toarray() & ~np.eye(6, dtype=bool)
    with raises(PatternError, "row", "does not contain", "every structural nonzero"):
        sparse_hessian(f, x, pattern=off_diagonal)
    reverse_pairs = lambda t: t[::-1] * t               # noqa: E731  (J = diagonal + antidiagonal)
    for mode in ("forward", "reverse"):
        with raises(PatternError, "misses nonzeros", "random vector", "every structural"):
            sparse_jacobian(reverse_pairs, np.arange(1.0, 5.0), pattern=np.eye(4), mode=mode)
    # Prepared where the missing entries vanish, a plan still refuses them later when they
    # are alone in their compressed entries:
    f = lambda t: np.array([1.0, 1.0]) * (t[0] * t[1])          # noqa: E731
    plan = prepare_jacobian(f, np.zeros(2), pattern=[[1, 1], [0, 0]], mode="forward")
    with raises(PatternError, "element 1 of f(x), with respect to one of x's elements [0]"):
        plan(np.ones(2))
    g = lambda t: np.stack([t[0] ** 2, t[0] * t[1]])            # noqa: E731
    plan = prepare_jacobian(g, np.zeros(2), pattern=[[1, 0], [1, 0]], mode="reverse")
    with raises(PatternError, "one of the elements [1] of f(x), with respect to element 1 of x"):
        plan(np.ones(2))


def test_errors_say_what_was_wrong():
    f = problems.rosenbrock(np)
    x = np.ones(4)
    plan = prepare_hessian(f, x, pattern=problems.rosenbrock_pattern(4))
    with raises(PlanMismatchError, "shape (4,)", "shape (5,)", "prepare another plan"):
        plan(np.ones(5))
    with raises(PlanMismatchError, "dtype float64", "dtype float32", ".astype"):
        plan(np.ones(4, np.float32))
    with raises(PlanMismatchError, "a list"):
        plan([1.0, 1.0, 1.0, 1.0])
    with raises(NonScalarOutputError, "scalar output", "sparse_jacobian"):
        sparse_hessian(np.sin, x, pattern=np.eye(4))
    with raises(PatternError, "shape (3, 3)", "shape (4, 4)"):
        sparse_hessian(f, x, pattern=np.eye(3))
    with raises(PatternError, "shape (4, 3)", "shape (4, 4)", "one row per element of f(x)"):
        sparse_jacobian(np.sin, x, pattern=np.ones((4, 3), bool))
    with raises(PatternError, "2-D"):
        sparse_jacobian(np.sin, x, pattern=np.ones(4, bool))
    with raises(ModeError, "unknown mode 'backward'"):
        sparse_jacobian(np.sin, x, pattern=np.eye(4), mode="backward")
    with raises(OrderError, "unknown vertex order"):
        sparse_jacobian(np.sin, x, pattern=np.eye(4), order="random")
    for chunk_size in (0, -1, 1.5, True):
        with raises(ChunkSizeError, f"chunk_size={chunk_size!r}", "positive int"):
            sparse_hessian(f, x, pattern=problems.rosenbrock_pattern(4), chunk_size=chunk_size)
    with raises(SparseStructureError, "one NumPy array", "concatenate"):
        sparse_jacobian(np.sin, (x, x), pattern=np.eye(4))
    with raises(SparseStructureError, "f returned a tuple"):
        sparse_jacobian(lambda t: (t, t), x, pattern=np.eye(4))
    with raises(NonDifferentiableInputError, "dtype int64"):
        sparse_jacobian(np.sin, np.arange(4), pattern=np.eye(4))
    jacobian_plan = prepare_jacobian(lambda t, k: t[:k], x, 4, pattern=np.eye(4), mode="reverse")
    with raises(PlanMismatchError, "3 elements", "4 rows"):
        jacobian_plan(x, 3)
    jacobian_plan = prepare_jacobian(lambda t, k: t[:k], x, 4, pattern=np.eye(4), mode="forward")
    with raises(PlanMismatchError, "3 elements", "4 rows"):
        jacobian_plan(x, 3)


def test_pullback_sparse_exports_the_api():
    assert pullback.sparse.sparse_hessian is sparse_hessian and "sparse" in pullback.__all__
    for name in pullback.sparse.__all__:
        assert getattr(pullback.sparse, name) is not None
    assert {"column_colouring", "row_colouring", "star_colouring", "prepare_jacobian",
            "prepare_hessian", "sparse_jacobian"} <= set(pullback.sparse.__all__)
