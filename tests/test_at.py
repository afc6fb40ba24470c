"""Functional indexed updates `pullback.numpy.at(x)[index]`: values equal NumPy's, under
every transformation.

Each update is compared with its NumPy counterpart (assignment, `np.add.at`, ...) applied
example by example, over index kinds (integers, slices, index arrays with repeats, mixed,
Ellipsis, None) and update ranks (Python scalars, 0-d, broadcast, full).
"""
import itertools

import numpy as np
import pytest

import pullback
import pullback.numpy as pnp
from helpers import raises
from pullback import errors, grad, hessian, jacobian, vmap
from pullback.operators import HESSIAN_MODES

rng = np.random.default_rng(11)

SHAPE = (3, 4, 2)                        # one example
INDEXES = {
    "int": 1,
    "slice": (slice(None), slice(1, 3)),
    "array": [2, 0],
    "repeated_array": [1, 1, 0, 1],
    "int_and_array": (1, [0, 3, 0]),
    "nonadjacent_arrays": ([0, 2, 2], slice(None), [1, 0, 1]),
    "ellipsis": (Ellipsis, 1),
    "ellipsis_and_array": (Ellipsis, [1, 0]),
    "none": (None, 1, slice(None, None, -1)),
}


def _region(index):
    return np.zeros(SHAPE)[index].shape


def _numpy_update(method, x, index, u):
    x = np.array(x, copy=True)
    if method == "set":
        x[index] = u
    else:
        np.add.at(x, index, u)
    return x


UPDATE_RANKS = {
    "python": lambda region: 2.5,
    "0d": lambda region: np.array(-1.5),
    "lower": lambda region: rng.standard_normal(region[-1:]),
    "full": lambda region: rng.standard_normal(region),
}


@pytest.mark.parametrize("method", ["set", "add"])
@pytest.mark.parametrize("rank", sorted(UPDATE_RANKS))
@pytest.mark.parametrize("index_kind", sorted(INDEXES))
def test_item1_vmap_of_an_indexed_update_matches_a_loop(index_kind, rank, method):
    index = INDEXES[index_kind]
    u = UPDATE_RANKS[rank](_region(index))
    batch = 3
    f = lambda x, u: getattr(pnp.at(x)[index], method)(u)          # noqa: E731
    for x_axis, u_axis in itertools.product([None, 0, -1], [None, 0, -1]):
        if (x_axis is None and u_axis is None) or (u_axis is not None and rank == "python"):
            continue
        xs = rng.standard_normal((batch,) + SHAPE)
        x_arg = xs[0] if x_axis is None else np.moveaxis(xs, 0, x_axis)
        us = np.stack([np.asarray(u) * (k + 1.0) for k in range(batch)])
        u_arg = u if u_axis is None else np.moveaxis(us, 0, u_axis)
        got = vmap(f, in_axes=(x_axis, u_axis))(x_arg, u_arg)
        expected = np.stack([_numpy_update(method, xs[0] if x_axis is None else xs[k], index,
                                           u if u_axis is None else us[k])
                             for k in range(batch)])
        np.testing.assert_array_equal(got, expected, err_msg=f"in_axes={(x_axis, u_axis)}")


def _with_boundary_condition(u):
    u = pnp.at(u)[0].set(0.0)            # u(0) = 0, written as boundary conditions are
    u = pnp.at(u)[-1].set(1.0)
    return np.sum(u[1:] * u[:-1] ** 2)


def test_item1_derivatives_of_a_boundary_condition_set():
    u = np.array([0.3, -0.7, 1.1, 0.4])
    h = np.zeros((4, 4))                 # the Hessian of sum(v[1:] * v[:-1]**2), v fixed at ends
    v = np.array([0.0, -0.7, 1.1, 1.0])
    for i in (1, 2):
        h[i, i] = 2.0 * v[i + 1]
    h[1, 2] = h[2, 1] = 2.0 * v[1]
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(hessian(_with_boundary_condition, mode=mode)(u), h, atol=1e-14)
    np.testing.assert_array_equal(jacobian(lambda u: pnp.at(u)[0].set(0.0))(u),
                                  np.diag([0.0, 1.0, 1.0, 1.0]))
    us = np.stack([u, 2.0 * u])
    np.testing.assert_allclose(vmap(grad(_with_boundary_condition))(us),
                               np.stack([grad(_with_boundary_condition)(w) for w in us]))
    pullback.check_grads(_with_boundary_condition, (u,), order=2)


EMPTY_INDEXES = {"list": [], "tuple_entry": (slice(None), ()), "two_lists": ([], []),
                 "nested": [[]], "after_ellipsis": (Ellipsis, []), "with_int": (0, []),
                 "second_axis": (slice(None), [])}


@pytest.mark.parametrize("kind", sorted(EMPTY_INDEXES))
def test_item17_an_empty_index_list_selects_nothing_in_every_indexing_path(kind):
    index = EMPTY_INDEXES[kind]
    x = rng.standard_normal((2, 3))
    xs = np.stack([x, 2.0 * x])
    region = x[index].shape
    np.testing.assert_array_equal(pnp.getitem(x, index), x[index])
    np.testing.assert_array_equal(pullback.jit(lambda x: x[index])(x), x[index])
    np.testing.assert_array_equal(vmap(lambda x: x[index])(xs), np.stack([v[index] for v in xs]))
    np.testing.assert_array_equal(grad(lambda x: np.sum(x[index]) + np.sum(x * x))(x), 2.0 * x)
    for method in ("set", "add"):
        def update(x, v):
            return getattr(pnp.at(x)[index], method)(v)
        v = np.ones(region)
        for values in (v, 1.5):
            np.testing.assert_array_equal(update(x, values), x)
            np.testing.assert_array_equal(pullback.jit(update)(x, values), x)
            np.testing.assert_array_equal(vmap(update, in_axes=(0, None))(xs, values), xs)
        g_x, g_v = grad(lambda x, v: np.sum(update(x, v) ** 2), argnums=(0, 1))(x, v)
        np.testing.assert_array_equal(g_x, 2.0 * x)
        assert g_v.shape == region
        np.testing.assert_array_equal(hessian(lambda x: np.sum(update(x, v) ** 2))(x),
                                      2.0 * np.eye(6).reshape(2, 3, 2, 3))


@pytest.mark.parametrize("axis", [0, 1, None])
def test_item17_take_of_no_indices(axis):
    x = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(pnp.take(x, [], axis=axis), np.take(x, [], axis=axis))
    np.testing.assert_array_equal(vmap(lambda x: pnp.take(x, [], axis=axis))(np.stack([x, x])),
                                  np.stack([np.take(x, [], axis=axis)] * 2))
    np.testing.assert_array_equal(grad(lambda x: np.sum(pnp.take(x, [], axis=axis)))(x),
                                  np.zeros_like(x))


# ------------------------------------------------------ multiply, min and max

COMBINING = {"multiply": np.multiply, "min": np.minimum, "max": np.maximum}


def _numpy_combined(method, x, index, u):
    x = np.array(x, copy=True)
    COMBINING[method].at(x, index, u)
    return x


@pytest.mark.parametrize("method", sorted(COMBINING))
@pytest.mark.parametrize("rank", sorted(UPDATE_RANKS))
@pytest.mark.parametrize("index_kind", sorted(INDEXES))
def test_multiply_min_max_equal_numpys_ufunc_at_eagerly_under_vmap_and_jit(index_kind, rank,
                                                                             method):
    index = INDEXES[index_kind]
    u = UPDATE_RANKS[rank](_region(index))
    f = lambda x, u: getattr(pnp.at(x)[index], method)(u)          # noqa: E731
    xs = rng.standard_normal((3,) + SHAPE)
    np.testing.assert_array_equal(f(xs[0], u), _numpy_combined(method, xs[0], index, u))
    np.testing.assert_array_equal(pullback.jit(f)(xs[0], u),
                                  _numpy_combined(method, xs[0], index, u))
    us = np.stack([np.asarray(u) * (k - 1.0) for k in range(3)])
    for in_axes in [(0, None), (None, 0), (0, 0), (-1, 0)]:
        if rank == "python" and in_axes[1] is not None:
            continue
        x_arg = xs if in_axes[0] != -1 else np.moveaxis(xs, 0, -1)
        got = vmap(f, in_axes=in_axes)(xs[0] if in_axes[0] is None else x_arg,
                                       u if in_axes[1] is None else us)
        expected = np.stack([_numpy_combined(method, xs[0] if in_axes[0] is None else xs[k],
                                             index, u if in_axes[1] is None else us[k])
                             for k in range(3)])
        np.testing.assert_array_equal(got, expected, err_msg=str(in_axes))


@pytest.mark.parametrize("method", sorted(COMBINING))
@pytest.mark.parametrize("index_kind", sorted(INDEXES))
def test_multiply_min_max_are_differentiable_in_both_arguments(index_kind, method):
    index = INDEXES[index_kind]
    x = rng.uniform(-2.0, 2.0, SHAPE)
    u = rng.uniform(-2.0, 2.0, _region(index))              # no ties: min and max are smooth
    f = lambda x, u: getattr(pnp.at(x)[index], method)(u)          # noqa: E731
    pullback.check_grads(f, (x, u), order=2)
    loss = lambda x, u: np.sum(np.sin(f(x, u)) * x)                # noqa: E731
    reference = hessian(loss, argnums=(0, 1), mode="forward-over-forward")(x, u)
    for mode in HESSIAN_MODES:
        h = hessian(loss, argnums=(0, 1), mode=mode)(x, u)
        for i, j in itertools.product(range(2), range(2)):
            np.testing.assert_allclose(h[i][j], reference[i][j], atol=1e-12, err_msg=mode)
    xs, us = np.stack([x, -x]), np.stack([u, 2.0 * u])
    got = vmap(grad(loss, argnums=(0, 1)))(xs, us)
    for k in range(2):
        for g, e in zip(got, grad(loss, argnums=(0, 1))(xs[k], us[k])):
            np.testing.assert_allclose(g[k], e, atol=1e-12)


def test_min_and_max_split_the_derivative_equally_among_ties():
    x = np.array([1.0, 5.0, 2.0])
    for method in ("min", "max"):
        f = lambda x, u: np.sum(getattr(pnp.at(x)[[0, 0, 2]], method)(u))    # noqa: E731
        g_x, g_u = grad(f, argnums=(0, 1))(x, np.array([1.0, 1.0, 2.0]))
        np.testing.assert_allclose(g_x, [1 / 3, 1.0, 1 / 2])
        np.testing.assert_allclose(g_u, [1 / 3, 1 / 3, 1 / 2])
        g_x, g_u = grad(lambda x, u: np.sum(getattr(pnp.at(x)[1:], method)(u)),
                        argnums=(0, 1))(x, np.array([5.0, 0.0]))
        np.testing.assert_allclose(g_x, [1.0, 0.5, method == "max"])
        np.testing.assert_allclose(g_u, [0.5, method == "min"])


def test_multiply_at_repeated_indices_is_exact_with_zeros():
    x = np.array([0.0, 3.0])
    u = np.array([2.0, 0.0, 5.0])
    f = lambda x, u: np.sum(pnp.at(x)[[0, 0, 1]].multiply(u))      # x0 u0 u1 + x1 u2 # noqa
    g_x, g_u = grad(f, argnums=(0, 1))(x, u)
    np.testing.assert_array_equal(g_x, [0.0, 5.0])
    np.testing.assert_array_equal(g_u, [0.0, 0.0, 3.0])
    h = hessian(f, argnums=1)(x, u)
    np.testing.assert_array_equal(h, np.zeros((3, 3)))
    np.testing.assert_array_equal(hessian(f, argnums=0)(x, u), np.zeros((2, 2)))


def test_multiply_min_max_refuse_traced_index_arrays():
    x, u = np.ones(4), np.array([2.0, 3.0])
    for method in sorted(COMBINING):
        f = lambda x, i, u: getattr(pnp.at(x)[i], method)(u)       # noqa: E731
        with raises(errors.ConcretizationError, f".{method}(values)", "traced",
                    "static argument of jit"):
            pullback.jit(f)(x, np.array([0, 0]), u)
        with raises(errors.ConcretizationError, "closes over"):
            vmap(f, in_axes=(None, 0, None))(x, np.array([[0, 1], [1, 1]]), u)
        np.testing.assert_array_equal(                             # a constant index is fine
            pullback.jit(lambda x, u: f(x, np.array([0, 0]), u))(x, u),
            _numpy_combined(method, x, np.array([0, 0]), u))
