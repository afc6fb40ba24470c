"""Second order: Hessians in four modes, HVPs, make_hvp, batched and chunked Jacobians."""
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg

import pullback
from pullback import (grad, hessian, hvp, jacfwd, jacrev, make_hvp, newton_callables,
                      pushforward)
from pullback.operators import HESSIAN_MODES

rng = np.random.default_rng(1)


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def logistic(w, X=rng.standard_normal((20, 4)), y=rng.integers(0, 2, 20)):
    z = X @ w
    return np.sum(np.logaddexp(0.0, z) - y * z) + 0.1 * np.sum(w ** 2)


def mixed(x):
    return np.sum(np.sin(x) * np.cumprod(x)) + np.prod(x[:2]) ** 2 + np.log1p(x @ x)


def matrix_input(a):
    return np.sum(np.tanh(a @ a.T)) + np.linalg.slogdet(a @ a.T + np.eye(3))[1]


def scalar_input(s):
    return np.sin(s) * s ** 3


def pytree_input(params):
    return np.sum(params["w"] ** 2 * params["b"][0]) + np.exp(params["b"]).sum()


SCALAR_FUNCTIONS = [
    ("rosenbrock", rosenbrock, lambda: rng.uniform(-1, 1, 5)),
    ("logistic", logistic, lambda: rng.standard_normal(4)),
    ("mixed", mixed, lambda: rng.uniform(0.5, 1.5, 4)),
    ("matrix", matrix_input, lambda: rng.standard_normal((3, 2))),
    ("scalar", scalar_input, lambda: np.float64(0.7)),
]


def flat_hessian(h, x):
    n = np.size(x)
    return np.reshape(h, (n, n))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, f, make_x", SCALAR_FUNCTIONS, ids=[r[0] for r in SCALAR_FUNCTIONS])
def test_four_hessian_modes_agree_with_each_other_and_finite_differences(name, f, make_x, dtype):
    x = np.asarray(make_x(), dtype)
    hessians = {mode: hessian(f, mode=mode)(x) for mode in HESSIAN_MODES}
    tol = 1e-9 if dtype == np.float64 else 2e-3
    reference = hessians["forward-over-reverse"]
    assert reference.shape == x.shape + x.shape and reference.dtype == dtype
    for mode, h in hessians.items():
        np.testing.assert_allclose(h, reference, rtol=tol, atol=tol * (1 + np.abs(reference).max()),
                                   err_msg=mode)
    flat = flat_hessian(reference, x)
    np.testing.assert_allclose(flat, flat.T, rtol=tol, atol=tol * (1 + np.abs(flat).max()))
    # Central differences of the gradient, in float64.
    x64, eps = x.astype(np.float64), 1e-6
    g = grad(f)
    columns = [(g(x64 + eps * e.reshape(x.shape)) - g(x64 - eps * e.reshape(x.shape))) / (2 * eps)
               for e in np.eye(x.size)]
    fd = np.stack([np.ravel(c) for c in columns], axis=1)
    np.testing.assert_allclose(flat, fd, rtol=1e-4 if dtype == np.float64 else 3e-3,
                               atol=1e-4 * (1 + np.abs(fd).max()))


@pytest.mark.parametrize("name, f, make_x", SCALAR_FUNCTIONS, ids=[r[0] for r in SCALAR_FUNCTIONS])
def test_hvp_in_every_mode_equals_hessian_times_v(name, f, make_x):
    x = np.asarray(make_x())
    h = flat_hessian(hessian(f)(x), x)
    for _ in range(2):
        v = rng.standard_normal(np.shape(x))
        expected = (h @ np.ravel(v)).reshape(np.shape(x))
        for mode in HESSIAN_MODES:
            np.testing.assert_allclose(hvp(f, x, v, mode), expected, rtol=1e-10,
                                       atol=1e-10 * (1 + np.abs(expected).max()), err_msg=mode)


@pytest.mark.parametrize("mode", HESSIAN_MODES)
@pytest.mark.parametrize("name, f, make_x", SCALAR_FUNCTIONS[:4], ids=[r[0] for r in SCALAR_FUNCTIONS[:4]])
def test_make_hvp_equals_hvp_for_several_vectors(name, f, make_x, mode):
    x = make_x()
    op = make_hvp(f, x, mode)
    value, gradient = pullback.value_and_grad(f)(x)
    assert op.value == pytest.approx(value) and np.allclose(op.grad, gradient)
    vs = [rng.standard_normal(x.shape) for _ in range(3)]
    for v in vs:
        np.testing.assert_allclose(op(v), hvp(f, x, v), rtol=1e-10, atol=1e-9)
    stacked = np.stack(vs, axis=-1)
    np.testing.assert_allclose(op.matmat(stacked), np.stack([hvp(f, x, v) for v in vs], -1),
                               rtol=1e-10, atol=1e-9)
    linop = op.as_linear_operator()
    n = x.size
    np.testing.assert_allclose(linop @ np.eye(n), flat_hessian(hessian(f)(x), x), rtol=1e-10,
                               atol=1e-9)


def test_hessian_of_pytree_input_is_nested_by_blocks():
    params = {"w": rng.standard_normal((2, 3)), "b": rng.standard_normal(2)}
    for mode in HESSIAN_MODES:
        h = hessian(pytree_input, mode=mode)(params)
        assert h["w"]["w"].shape == (2, 3, 2, 3) and h["w"]["b"].shape == (2, 3, 2)
        assert h["b"]["w"].shape == (2, 2, 3) and h["b"]["b"].shape == (2, 2)
        np.testing.assert_allclose(h["w"]["b"], np.moveaxis(h["b"]["w"], 0, -1))
        np.testing.assert_allclose(h["w"]["b"][..., 0], 2 * params["w"])


def test_hessian_with_argnums():
    f = lambda x, y: np.sum(x ** 2 * y) + np.sum(y ** 3)     # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    h = hessian(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(h[0][0], np.diag(2 * y))
    np.testing.assert_allclose(h[0][1], np.diag(2 * x))
    np.testing.assert_allclose(h[1][1], np.diag(6 * y))
    np.testing.assert_allclose(hessian(f, argnums=1)(x, y), np.diag(6 * y))


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 6, 7, 100])
def test_jacfwd_equals_jacrev_across_chunk_sizes(chunk):
    # 6 inputs and 7 outputs: chunks of 5 and 6 straddle the boundary.
    f = lambda x: np.concatenate([np.sin(x) * x[0], [np.sum(x ** 3)]])   # noqa: E731
    x = rng.standard_normal(6)
    reference = jacfwd(f)(x)
    np.testing.assert_allclose(jacfwd(f, chunk_size=chunk)(x), reference, rtol=1e-13)
    np.testing.assert_allclose(jacrev(f, chunk_size=chunk)(x), reference, rtol=1e-13)
    np.testing.assert_allclose(hessian(lambda x: np.sum(f(x) ** 2), chunk_size=chunk)(x),
                               hessian(lambda x: np.sum(f(x) ** 2))(x), rtol=1e-12)


def test_jacobians_with_pytree_outputs_and_chunks():
    f = lambda d: {"a": d["x"] * d["y"], "b": [np.sum(d["x"])]}    # noqa: E731
    d = {"x": rng.standard_normal(3), "y": rng.standard_normal(3)}
    for chunk in (None, 2):
        fwd, rev = jacfwd(f, chunk_size=chunk)(d), jacrev(f, chunk_size=chunk)(d)
        for out_key in ("a",):
            for in_key in ("x", "y"):
                np.testing.assert_allclose(fwd[out_key][in_key], rev[out_key][in_key])
        np.testing.assert_allclose(fwd["b"][0]["x"], np.ones(3))      # scalar output leaf
        np.testing.assert_allclose(rev["b"][0]["x"], np.ones(3))


# --------------------------------------------------- perturbation confusion, order 2 and 3

def d_forward(f):
    return lambda x: pushforward(f, (x,), (1.0,))[1]


def test_confusion_second_order_forward_over_forward():
    # d/dx [x * d/dy (x * y)]|_{y=1} = d/dx x^2 = 2x; confusing the tags gives something else.
    f = lambda x: x * d_forward(lambda y: x * y)(1.0)    # noqa: E731
    assert d_forward(f)(3.0) == pytest.approx(6.0)
    assert d_forward(d_forward(f))(3.0) == pytest.approx(2.0)
    assert grad(grad(f))(3.0) == pytest.approx(2.0)


def test_confusion_third_order():
    # g(x) = x^2 * d/dy[x y^2]|_{y=x} = x^2 * 2 x^2 = 2 x^4; g''' = 48 x.
    g = lambda x: x ** 2 * d_forward(lambda y: x * y ** 2)(x)    # noqa: E731
    for d3 in (d_forward(d_forward(d_forward(g))), grad(grad(grad(g))),
               d_forward(grad(d_forward(g)))):
        assert d3(1.5) == pytest.approx(72.0)


def test_hessian_of_function_with_inner_derivative():
    # f(x) = sum(x * grad(h)(x)) with h = sum(x^3)/3: f = sum(x^3), H = diag(6x).
    f = lambda x: np.sum(x * grad(lambda z: np.sum(z ** 3) / 3.0)(x))    # noqa: E731
    x = np.array([1.0, 2.0, 0.5])
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(hessian(f, mode=mode)(x), np.diag(6 * x), err_msg=mode)


# --------------------------------------------------------------------- SciPy

def test_newton_cg_with_make_hvp_converges_on_rosenbrock_100():
    x0 = np.tile([-1.2, 1.0], 50)
    result = scipy.optimize.minimize(x0=x0, method="Newton-CG", options={"xtol": 1e-10},
                                     **newton_callables(rosenbrock))
    assert result.success
    np.testing.assert_allclose(result.x, np.ones(100), atol=1e-6)


@pytest.mark.parametrize("method", ["trust-krylov", "trust-ncg"])
def test_trust_region_methods(method):
    result = scipy.optimize.minimize(x0=np.zeros(20), method=method, **newton_callables(rosenbrock))
    np.testing.assert_allclose(result.x, np.ones(20), atol=1e-6)


def test_conjugate_gradients_with_the_linear_operator():
    x = rng.standard_normal(4)
    op = make_hvp(logistic, x)          # positive definite (L2-regularised logistic loss)
    b = rng.standard_normal(4)
    solution, info = scipy.sparse.linalg.cg(op.as_linear_operator(), b, rtol=1e-12)
    assert info == 0
    np.testing.assert_allclose(hessian(logistic)(x) @ solution, b, atol=1e-8)


def test_float32_hvp_and_operator_keep_dtype():
    x = rng.standard_normal(4).astype(np.float32)
    v = np.ones(4, np.float32)
    for mode in HESSIAN_MODES:
        assert hvp(logistic, x, v, mode).dtype == np.float32
    assert make_hvp(logistic, x)(v).dtype == np.float32


def test_bad_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="forward-over-reverse"):
        hessian(rosenbrock, mode="sideways")(np.ones(3))
    with pytest.raises(pullback.errors.NonScalarOutputError):
        hessian(np.sin, mode="forward-over-forward")(np.ones(3))


def _rosenbrock_hessian(x):
    a, b, i = x[:-1], x[1:], np.arange(np.size(x) - 1)
    h = np.zeros((np.size(x), np.size(x)))
    h[i, i] = 1200.0 * a * a - 400.0 * b + 2.0
    h[i + 1, i + 1] += 200.0
    h[i, i + 1] = h[i + 1, i] = -400.0 * a
    return h


@pytest.mark.parametrize("mode", HESSIAN_MODES)
def test_issue12_dense_hessian_does_no_work_per_basis_vector_and_position(mode):
    # The identity basis stays one-hot through the batched pass (primitives/basis.py): the
    # only n x n array computed is the result (one scatter into zeros; views aside).
    n = 60
    x = rng.uniform(-1.0, 1.0, n)
    program = pullback.make_ir(hessian(rosenbrock, mode=mode))(x)
    computed = [eq.primitive.name for eq in program.equations if eq.primitive.fresh_output
                and any(np.prod(v.aval.shape) >= n * n for v in eq.outputs)]
    if mode in ("forward-over-reverse", "reverse-over-reverse"):
        assert computed == ["embed"], computed
    np.testing.assert_allclose(pullback.jit(hessian(rosenbrock, mode=mode))(x),
                               _rosenbrock_hessian(x), rtol=1e-12, atol=1e-9)


def test_issue12_a_jacobian_through_a_matrix_product_gathers_the_matrix():
    # jacrev through `W @ x` pulled the one-hot basis back through a product over its
    # zeros (an n x n x m matrix product, after a scatter into zeros): each basis
    # vector's row is the matrix's column times its coefficient, gathered. Here the
    # basis meets V (both sides, a 1-d and a column product) as one-hot values, and W as
    # the dense rows that made: one product of matrices is left, the Jacobian's own.
    n, m = 40, 30
    W, V = rng.standard_normal((n, m)), rng.standard_normal((m, n))
    x = rng.standard_normal(m)

    def layers(x):                      # 1-d and column products, on both sides
        h = np.tanh(W @ x) * x[:n - 10].sum()
        return np.concatenate([(h @ V.T) * 2.0, (V @ h.reshape(n, 1))[:, 0] ** 2])
    for jac in (jacrev, jacfwd):
        program = pullback.make_ir(jac(layers))(x)
        products = [eq for eq in program.equations if eq.primitive.name == "matmul"
                    and all(len(v.aval.shape) == 2 and min(v.aval.shape) > 1 for v in eq.inputs)]
        if jac is jacrev:
            assert len(products) == 1
        expected = jacfwd(layers)(x) if jac is jacrev else jacrev(layers)(x)
        np.testing.assert_allclose(jac(layers)(x), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pullback.jit(jac(layers))(x), expected, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("name, f, make_x", SCALAR_FUNCTIONS, ids=[r[0] for r in SCALAR_FUNCTIONS])
def test_issue12_the_mode_jit_picks_agrees_with_every_mode(name, f, make_x):
    x = np.asarray(make_x(), np.float64)
    v = rng.standard_normal(np.shape(x))
    picked = pullback.jit(hessian(f, mode="auto"))(x)
    picked_hvp = pullback.jit(lambda x, v: hvp(f, x, v, "auto"))(x, v)
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(picked, hessian(f, mode=mode)(x), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(picked_hvp, hvp(f, x, v, mode), rtol=1e-10, atol=1e-10)


def test_issue12_jit_picks_the_mode_whose_optimised_program_costs_least(monkeypatch):
    from pullback.ir import cost
    from pullback.ir.passes import optimize
    from pullback.ir.staging import stage
    cheap, dear = (lambda x: x * 2.0), (lambda x: np.sin(np.exp(x) * np.cos(x)) + x @ x)
    x = rng.standard_normal(50)
    assert cost.program_cost(optimize(stage(dear, (x,)))) > \
        cost.program_cost(optimize(stage(cheap, (x,))))
    assert cost.cheapest([dear, cheap], (x,)) == 1
    assert cost.cheapest([cheap, dear], (x,)) == 0
    chosen = []

    def spy(candidates, args):
        chosen.append(cost.program_cost(optimize(stage(candidates[0], args))))
        return 0
    monkeypatch.setattr(cost, "cheapest", spy)
    pullback.jit(hessian(rosenbrock, mode="auto"))(x)   # under jit: candidates compared
    hessian(rosenbrock, mode="auto")(x)                 # eagerly: the eager default
    pullback.jit(hessian(rosenbrock))(x)                # the default mode: no candidates
    assert len(chosen) == 1


def test_issue12_a_function_reading_values_staged_outside_keeps_the_default_mode():
    # Its candidates cannot be staged on their own (they read y, staged by the outer jit).
    x, y = np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.5, 2.0])
    h = pullback.jit(lambda x, y: hessian(lambda x: np.sum(x ** 3 * y), mode="auto")(x))(x, y)
    np.testing.assert_allclose(h, np.diag(6.0 * x * y))


def _kmeans_cost(points, centroids):
    """GradBench's k-means cost: each point's smallest squared distance to a centroid."""
    distances = (np.sum(points ** 2, axis=1)[None, :] + np.sum(centroids ** 2, axis=1)[:, None]
                 - 2.0 * (centroids @ points.T))
    return np.sum(np.min(distances, axis=0))


def _newton_direction(points, centroids):
    gradient = grad(lambda c: _kmeans_cost(points, c))
    g, h = pushforward(gradient, (centroids,), (np.ones_like(centroids),))
    return g / h


def test_issue12_kmeans_newton_step_makes_few_passes_over_the_distances():
    # The min's pullback counts its booleans and scales them once (no weights array, no
    # float copy of the booleans); the factors 2 of the distances go to the small sides
    # of the matrix products. Result: the centroid minus the mean of its points.
    points = rng.random((300, 3))
    centroids = points[-7:].copy()
    program = pullback.make_ir(_newton_direction, optimized=True)(points, centroids)
    big = [eq.primitive.name for eq in program.equations
           if eq.primitive.fresh_output and eq.primitive.sparsity not in ("matmul", "reduce")
           and any(np.prod(v.aval.shape) == 300 * 7 for v in eq.outputs)]
    assert len(big) <= 4, big                # before: 7
    nearest = np.argmin(((points[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    means = np.array([points[nearest == j].mean(0) for j in range(7)])
    np.testing.assert_allclose(pullback.jit(_newton_direction)(points, centroids),
                               centroids - means, rtol=1e-10, atol=1e-12)
