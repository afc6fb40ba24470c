"""Sparsity detection from the program: patterns contain every nonzero at any point, are exact
on problems with known patterns, and refuse programs that depend on the values."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings

import pullback
from helpers import benchmark_module, raises
from pullback import errors
from pullback.core.primitive import REGISTRY
from pullback.sparse import hessian_sparsity, jacobian_sparsity, sparsity_listing
from test_primitives import SETTINGS, TABLE, _differentiable_positions, case_strategy

problems = benchmark_module("sparse_problems")

rng = np.random.default_rng(3)


def _contains(pattern, matrix):
    """Whether every nonzero of `matrix` is in the boolean `pattern`."""
    return not np.any((np.asarray(matrix) != 0) & ~pattern.toarray())


def _flat_outputs(prim, args, params, position, shape):
    """f(x): the primitive with argument `position` replaced by x (flat), its floating
    outputs (complex ones as real and imaginary parts) flattened into one vector."""
    def f(x):
        full = list(args)
        full[position] = x.reshape(shape)
        out = prim(*full, **params)
        outs = out if prim.multiple_results else [out]
        outs = [part for o in outs for part in (
            (pullback.numpy.real(o), pullback.numpy.imag(o)) if np.dtype(o.dtype).kind == "c"
            else (o,)) if np.dtype(part.dtype).kind == "f"]
        return pullback.numpy.concatenate([pullback.numpy.ravel(o) for o in outs])
    return f


@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items()
                                         if p.differentiable and n in TABLE))
def test_detected_patterns_contain_every_nonzero_of_every_primitive(name):
    prim = REGISTRY[name]

    @settings(SETTINGS, max_examples=4)
    @given(case_strategy(prim, np.float64))
    def run(case):
        args, params = case
        for position in _differentiable_positions(args, prim):   # those with a derivative
            if np.ndim(args[position]) == 0 and not isinstance(args[position], np.ndarray):
                continue
            arg = np.asarray(args[position])
            f = _flat_outputs(prim, args, params, position, arg.shape)
            x = arg.reshape(-1)
            with np.errstate(all="ignore"):
                pattern = jacobian_sparsity(f, x)
                for point in (x, x * (1 + 0.01 * rng.standard_normal(x.shape))):
                    assert _contains(pattern, pullback.jacobian(f)(point)), (name, position)
                weights = rng.standard_normal(np.size(f(x)))
                loss = lambda x: pullback.numpy.sum(weights * f(x))          # noqa: E731
                h_pattern = hessian_sparsity(loss, x)
                assert _contains(h_pattern, pullback.hessian(loss)(x)), (name, position)
    run()


def _same(detected, known):
    return np.array_equal(detected.toarray().astype(bool),
                          np.asarray(known.toarray() if hasattr(known, "toarray") else known,
                                     bool))


@pytest.mark.parametrize("name, n", [("rosenbrock", 1000), ("arwhead", 1000),
                                     ("broydn7d", 200)])
def test_hessian_patterns_of_known_problems_are_exact(name, n):
    f = getattr(problems, name)(np)
    detected = hessian_sparsity(f, problems.start(name, n))
    assert _same(detected, getattr(problems, f"{name}_pattern")(n))


def test_jacobian_patterns_of_stencils_are_exact():
    for N in (5, 16):
        f = problems.brusselator(np, N)
        assert _same(jacobian_sparsity(f, problems.start("brusselator", N)),
                     problems.brusselator_pattern(N))
    N = 12

    def laplacian(x):                      # 5-point stencil with zero (Dirichlet) boundary
        u = np.pad(x.reshape(N, N), 1)
        return (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * u[1:-1, 1:-1])
    assert _same(jacobian_sparsity(laplacian, np.ones(N * N)),
                 problems.five_point_laplacian_pattern(N))
    tridiagonal = jacobian_sparsity(lambda x: x[:-2] - 2 * x[1:-1] + x[2:], np.ones(6))
    assert tridiagonal.toarray().sum() == 12


def test_patterns_are_global_both_branches_of_a_where_count():
    f = lambda x: np.where(x > 0, x * x[::-1], np.sin(x))                  # noqa: E731
    pattern = jacobian_sparsity(f, -np.ones(4)).toarray()     # x > 0 nowhere at this x ...
    assert pattern[0, 3] and pattern[0, 0]                    # ... still: x[::-1] counts


def test_constants_zeros_are_skipped_and_indexed_updates_are_tight():
    A = np.diag(np.arange(1.0, 5.0)) + np.diag(np.ones(3), 1)
    assert _same(jacobian_sparsity(lambda x: A @ x, np.ones(4)), A != 0)
    boundary = jacobian_sparsity(lambda u: pullback.numpy.at(np.sin(u))[0].set(0.0),
                                 np.ones(3)).toarray()
    assert not boundary[0].any() and boundary[1, 1] and boundary[2, 2]


def test_a_program_that_depends_on_the_values_is_refused_with_the_fix():
    def f(x):
        return x * 2 if x[0] > 0 else x
    with raises(errors.PatternError, "np.where", "pattern="):
        jacobian_sparsity(f, np.ones(3))
    with raises(errors.PatternError, "np.where"):
        pullback.sparse.sparse_jacobian(f, np.ones(3))


def test_the_listing_names_primitives_without_an_exact_rule():
    text = sparsity_listing(lambda x: np.linalg.solve(np.eye(3) + np.outer(x, x), x), np.ones(3))
    assert "solve" in text and "no exact sparsity rule" in text
    assert sparsity_listing(np.sin, np.ones(3)) == "every equation has an exact sparsity rule"


def test_sparse_derivatives_detect_their_pattern_by_default():
    f = problems.rosenbrock(np)
    x = problems.start("rosenbrock", 50)
    np.testing.assert_allclose(pullback.sparse.sparse_hessian(f, x).toarray(),
                               pullback.hessian(f)(x), rtol=1e-12, atol=1e-12)
    g = problems.brusselator(np, 6)
    y = problems.start("brusselator", 6)
    np.testing.assert_allclose(pullback.sparse.sparse_jacobian(g, y).toarray(),
                               pullback.jacobian(g)(y).reshape(y.size, y.size),
                               rtol=1e-12, atol=1e-12)
    plan = pullback.sparse.prepare_hessian(f, x)
    assert plan.colours == 3


def test_spy_draws_the_pattern_coloured_by_product(monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    plan = pullback.sparse.prepare_hessian(problems.rosenbrock(np), problems.start("rosenbrock", 30))
    ax = plan.spy()
    assert ax.get_title() == f"{plan.nnz:,} nonzeros, 3 colours"
    (points,) = ax.collections
    assert len(points.get_offsets()) == plan.nnz
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)     # as if not installed
    with raises(errors.PullbackError, "pullback[plot]"):
        plan.spy()
