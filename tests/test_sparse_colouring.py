"""Colourings of sparsity patterns (pullback.sparse.colouring): validity checked independently
of the module's own reads, exact recovery of random matrices, known colour counts, speed."""
import itertools
import os

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings, strategies as st

from helpers import benchmark_module, raises
from pullback.errors import OrderError, PatternError
from pullback.sparse import ORDERS, ColouringError, column_colouring, row_colouring, star_colouring
from pullback.sparse.colouring import (as_pattern, column_reads, coordinates, row_reads,
                                       star_reads, symmetric_pattern)

problems = benchmark_module("sparse_problems")

ALL_ORDERS = ("best",) + ORDERS


@st.composite
def patterns(draw, square=False):
    """Random boolean patterns: any density from empty to dense, shapes from 1 x 1 (1 x N and
    N x 1 included) to 12 x 12, so that empty rows and columns occur too."""
    m = draw(st.integers(1, 12))
    n = m if square else draw(st.integers(1, 12))
    density = draw(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    return rng.random((m, n)) < density


def _random_values(pattern, seed, symmetric=False):
    """A random matrix with exactly this pattern (no zero inside it)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.5, 2.0, pattern.shape) * rng.choice([-1.0, 1.0], pattern.shape)
    if symmetric:
        values = np.triu(values) + np.triu(values, 1).T
    return np.where(pattern, values, 0.0)


def _seed_matrix(colours):
    """S with S[j, colour[j]] = 1."""
    seeds = np.zeros((colours.size, colours.max(initial=-1) + 1))
    seeds[np.arange(colours.size), colours] = 1.0
    return seeds


def _vertex_orders(n, seed):
    return list(ALL_ORDERS) + [list(np.random.default_rng(seed).permutation(n))]


@settings(max_examples=60, deadline=None)
@given(patterns(), st.integers(0, 1000))
def test_column_and_row_colourings_are_valid_and_recover_every_nonzero(dense, seed):
    matrix = _random_values(dense, seed)
    canonical = as_pattern(dense)
    rows, cols = coordinates(canonical)
    for order in _vertex_orders(dense.shape[1], seed):
        colours = column_colouring(dense, order)
        for row in dense:                   # columns sharing a row differ
            assert len(set(colours[row])) == row.sum()
        compressed = (matrix @ _seed_matrix(colours)).T          # (k, m): J s_c per colour
        recovered = compressed.ravel()[column_reads(canonical, colours)]
        np.testing.assert_array_equal(recovered, matrix[rows, cols])
    for order in _vertex_orders(dense.shape[0], seed):
        colours = row_colouring(dense, order)
        for column in dense.T:
            assert len(set(colours[column])) == column.sum()
        compressed = _seed_matrix(colours).T @ matrix            # (k, n): s_c^T J
        recovered = compressed.ravel()[row_reads(canonical, colours)]
        np.testing.assert_array_equal(recovered, matrix[rows, cols])


def _assert_star_colouring(dense, colours):
    """Neighbours differ and no path on four vertices has two colours (brute force)."""
    adjacency = (dense | dense.T) & ~np.eye(len(dense), dtype=bool)
    neighbours = [np.flatnonzero(row) for row in adjacency]
    for b, c in zip(*np.nonzero(adjacency)):
        assert colours[b] != colours[c]
        for a in neighbours[b]:
            for d in neighbours[c]:
                if len({a, b, c, d}) == 4:
                    assert not (colours[a] == colours[c] and colours[b] == colours[d]), \
                        f"path {a}-{b}-{c}-{d} has two colours: {colours}"


def _assert_star_recovers(dense, colours, seed):
    matrix = _random_values(dense | dense.T, seed, symmetric=True)
    canonical = symmetric_pattern(dense)
    rows, cols = coordinates(canonical)
    compressed = (matrix @ _seed_matrix(colours)).T              # (k, n): H s_c per colour
    reads, touched = star_reads(canonical, colours)
    np.testing.assert_array_equal(compressed.ravel()[reads], matrix[rows, cols])
    untouched = np.ones(compressed.size, bool)
    untouched[touched] = False
    assert not compressed.ravel()[untouched].any()


@settings(max_examples=60, deadline=None)
@given(patterns(square=True), st.integers(0, 1000), st.booleans())
def test_star_colourings_are_valid_and_recover_every_nonzero(dense, seed, with_diagonal):
    dense = dense | np.eye(len(dense), dtype=bool) if with_diagonal else dense
    for order in _vertex_orders(len(dense), seed):
        colours = star_colouring(dense, order)
        _assert_star_colouring(dense, colours)
        _assert_star_recovers(dense, colours, seed)


def test_star_colouring_of_a_path_of_four_vertices_in_every_order():
    """The issue's named case: the path u - v - w - x coloured in the order u, w, x, v (a
    distance-based star colouring that checks only paths ending at the new vertex gives it
    two colours), and every other order."""
    u, v, w, x = range(4)
    path = np.zeros((4, 4), bool)
    for a, b in ((u, v), (v, w), (w, x)):
        path[a, b] = True
    named = star_colouring(path, [u, w, x, v])
    _assert_star_colouring(path, named)
    assert named.max() + 1 == 3
    for order in itertools.permutations(range(4)):
        colours = star_colouring(path | np.eye(4, dtype=bool), list(order))
        _assert_star_colouring(path, colours)
        _assert_star_recovers(path | np.eye(4, dtype=bool), colours, 0)


def test_colouring_check_refuses_colourings_that_lose_a_nonzero():
    """The check run at colouring time catches a bad colouring instead of decompressing
    wrong values: a two-coloured path on four vertices, and columns sharing a row."""
    path = symmetric_pattern(np.eye(4, k=1, dtype=bool) | np.eye(4, dtype=bool))
    with pytest.raises(ColouringError, match="bug in pullback.sparse"):
        star_reads(path, np.array([0, 1, 0, 1]))
    with pytest.raises(ColouringError, match="invalid column colouring"):
        column_reads(as_pattern(np.ones((1, 2), bool)), np.array([0, 0]))
    with pytest.raises(ColouringError, match="invalid row colouring"):
        row_reads(as_pattern(np.ones((2, 1), bool)), np.array([0, 0]))


@pytest.mark.parametrize("n", [10, 1_000])
def test_known_star_colour_counts(n):
    assert star_colouring(problems.arwhead_pattern(n)).max() + 1 == 2
    assert star_colouring(problems.banded_pattern(n, 1)).max() + 1 == 3
    assert star_colouring(problems.rosenbrock_pattern(n)).max() + 1 == 3
    assert star_colouring(problems.broydn7d_pattern(n)).max() + 1 == 7      # as measured


def test_known_jacobian_colour_counts():
    """The 5-point Laplacian needs 5 column colours (its rows have 5 nonzeros), which the
    saturation-degree order reaches; the Brusselator's rows have 6 nonzeros."""
    laplacian = problems.five_point_laplacian_pattern(20)
    assert column_colouring(laplacian).max() + 1 == 5
    assert column_colouring(laplacian, "saturation-degree").max() + 1 == 5
    assert row_colouring(laplacian).max() + 1 == 5
    assert column_colouring(problems.brusselator_pattern(32)).max() + 1 == 8   # as measured


def test_colouring_10000_variables_keeps_the_known_colour_counts():
    """Large patterns keep their optimal counts (the time it takes is measured in
    benchmarks/sparse.py, not here)."""
    for pattern, count in ((problems.rosenbrock_pattern(10_000), 3),
                           (problems.arwhead_pattern(10_000), 2)):
        assert star_colouring(pattern).max() + 1 == count


def test_patterns_accept_booleans_numbers_and_sparse_matrices():
    dense = np.array([[0.0, 2.0], [np.nan, 0.0]])          # nonzero (NaN too) is structural
    expected = np.array([[False, True], [True, False]])
    np.testing.assert_array_equal(as_pattern(dense).toarray(), expected)
    stored_zero = scipy.sparse.csr_matrix((np.array([1.0, 0.0]), (np.array([0, 1]),
                                                                   np.array([1, 0]))), (2, 2))
    assert as_pattern(stored_zero).nnz == 1                 # an explicitly stored zero is not
    assert as_pattern(scipy.sparse.coo_array(expected)).nnz == 2
    np.testing.assert_array_equal(symmetric_pattern(np.triu(np.ones((3, 3)))).toarray(),
                                  np.ones((3, 3), bool))


def test_bad_patterns_and_orders_are_refused():
    with raises(PatternError, "2-D"):
        column_colouring(np.ones(3, bool))
    with raises(PatternError, "dtype"):
        column_colouring(np.array([["a"]]))
    with raises(PatternError, "square"):
        star_colouring(np.ones((2, 3), bool))
    with raises(OrderError, "unknown vertex order 'largest'", "'smallest-last'"):
        column_colouring(np.eye(3), "largest")
    with raises(OrderError, "permutation of the 3 vertices"):
        star_colouring(np.eye(3), [0, 0, 1])
