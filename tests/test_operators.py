"""Derivative operators: pullback vs Jacobian, jacfwd vs jacrev, pytrees, argnums, has_aux, dtypes."""
import numpy as np
import pytest

import pullback
from pullback import (grad, jacfwd, jacobian, jacrev, pullback as vjp, pushforward,
                      stop_gradient, value_and_grad)
from pullback.transforms.forward import JVPTracer
from pullback.transforms.reverse import ReverseTracer

rng = np.random.default_rng(0)


def vector_fn(x):
    return np.stack([np.sin(x[0]) * x[1], x[1] ** 3, np.exp(x[0] - x[2]), np.sum(x ** 2)])


def matrix_fn(a):
    return np.tanh(a @ a.T) + a[:, :1]


FUNCTIONS = [(vector_fn, (3,)), (matrix_fn, (3, 2)), (lambda x: np.cumsum(x) * x[::-1], (4,))]


@pytest.mark.parametrize("f, shape", FUNCTIONS)
def test_pullback_with_random_cotangents_is_transposed_jacobian(f, shape):
    x = rng.standard_normal(shape)
    out, back = vjp(f, x)
    jac = jacobian(f)(x)
    for _ in range(3):
        ct = rng.standard_normal(np.shape(out))
        expected = np.tensordot(ct, jac, axes=ct.ndim)
        np.testing.assert_allclose(back(ct)[0], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("f, shape", FUNCTIONS)
def test_pushforward_is_jacobian_times_tangent(f, shape):
    x, v = rng.standard_normal(shape), rng.standard_normal(shape)
    jac = jacobian(f)(x)
    _, tangent = pushforward(f, (x,), (v,))
    np.testing.assert_allclose(tangent, np.tensordot(jac, v, axes=v.ndim), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("f, shape", FUNCTIONS)
def test_jacfwd_equals_jacrev(f, shape):
    x = rng.standard_normal(shape)
    fwd, rev = jacfwd(f)(x), jacrev(f)(x)
    assert fwd.shape == rev.shape == np.shape(f(x)) + shape
    np.testing.assert_allclose(fwd, rev, rtol=1e-12, atol=1e-12)


def test_jacobian_modes_agree_and_auto_picks_by_size():
    x = rng.standard_normal(3)
    results = [jacobian(vector_fn, mode=m)(x) for m in ("auto", "forward", "reverse")]
    for r in results[1:]:
        np.testing.assert_allclose(results[0], r)
    with pytest.raises(ValueError):
        jacobian(vector_fn, mode="sideways")
    # auto: forward mode for fewer inputs than outputs, reverse mode otherwise.
    for n_in, n_out, picked in ((2, 5, JVPTracer), (5, 2, ReverseTracer), (3, 3, ReverseTracer)):
        seen = []

        def f(x, n_out=n_out):
            seen.append(type(x))
            return np.sin(np.sum(x)) * np.ones(n_out)
        jacobian(f)(np.ones(n_in))
        assert picked in seen and ({JVPTracer, ReverseTracer} - {picked}).isdisjoint(seen)


def test_pytrees_in_and_out():
    def f(params, data):
        w, b = params["w"], params["b"]
        y = np.tanh(data @ w + b)
        return {"loss": np.sum(y ** 2), "pred": [y, y.mean()]}

    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    data = rng.standard_normal((4, 3))
    loss = lambda p: f(p, data)["loss"]
    g = grad(loss)(params)
    assert set(g) == {"w", "b"} and g["w"].shape == (3, 2) and g["b"].shape == (2,)
    pullback.check_grads(loss, (params,), order=2)
    jac = jacobian(lambda p: f(p, data))(params)
    assert jac["pred"][0]["w"].shape == (4, 2, 3, 2)
    assert jac["pred"][1]["b"].shape == (2,)
    np.testing.assert_allclose(jac["loss"]["w"], g["w"])
    out, back = vjp(lambda p: f(p, data), params)
    ct = {"loss": 1.0, "pred": [np.zeros((4, 2)), 0.0]}
    np.testing.assert_allclose(back(ct)[0]["b"], g["b"])


def test_argnums_tuple_and_has_aux():
    def f(x, y, z):
        return np.sum(x * y ** 2) + z, {"note": "aux", "y": y}

    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    (gx, gz), aux = grad(f, argnums=(0, 2), has_aux=True)(x, y, 5.0)
    np.testing.assert_allclose(gx, y ** 2)
    assert gz == 1.0
    assert aux["note"] == "aux" and isinstance(aux["y"], np.ndarray)
    (value, aux), gy = value_and_grad(f, argnums=1, has_aux=True)(x, y, 5.0)
    assert value == pytest.approx(np.sum(x * y ** 2) + 5.0)
    np.testing.assert_allclose(gy, 2 * x * y)
    jac, aux = jacobian(lambda x: (x ** 2, x.sum()), has_aux=True)(x)
    np.testing.assert_allclose(jac, np.diag(2 * x))
    out, tangent, aux = pushforward(lambda x: (x ** 2, "a"), (x,), (np.ones(2),), has_aux=True)
    assert aux == "a"
    out, back, aux = vjp(lambda x: (x ** 2, x * 3), x, has_aux=True)
    assert not isinstance(aux, pullback.core.engine.Tracer)
    np.testing.assert_allclose(aux, 3 * x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivatives_keep_the_input_dtype(dtype):
    x = np.array([0.5, 1.5], dtype=dtype)
    f = lambda x: np.sum(np.log1p(x ** 2) * 2.0 + np.sqrt(x))
    assert grad(f)(x).dtype == dtype
    assert jacfwd(lambda x: x * 3.0)(x).dtype == dtype
    assert jacrev(lambda x: x * 3.0)(x).dtype == dtype
    assert pushforward(f, (x,), (np.ones(2, dtype),))[1].dtype == dtype
    assert grad(grad(lambda s: s ** 3 * 2.0))(dtype(1.5)).dtype == dtype


def test_python_scalars_default_to_float64():
    g = grad(lambda x: x ** 2)(3.0)
    assert g.dtype == np.float64 and g == 6.0


def test_results_are_never_tracers():
    g = grad(lambda x: np.sum(x ** 2))(np.ones(2))
    out, back = vjp(lambda x: x * 2, np.ones(2))
    for value in (g, out, back(np.ones(2))[0], jacobian(np.sin)(np.ones(2))):
        assert isinstance(value, (np.ndarray, np.generic))


def test_stop_gradient_cuts_the_derivative():
    assert grad(lambda x: x * stop_gradient(x))(3.0) == 3.0
    tree = {"a": np.array([1.0, 2.0]), "b": [3.0]}
    stopped = stop_gradient(tree)
    np.testing.assert_array_equal(stopped["a"], tree["a"])
    assert stopped["b"][0] == 3.0
    gradient = grad(lambda t: np.sum(t["a"] * stop_gradient(t)["a"]) * stop_gradient(t)["b"][0])(
        tree)
    np.testing.assert_array_equal(gradient["a"], 3.0 * tree["a"])
    assert gradient["b"][0] == 0.0


def test_output_independent_of_input_has_zero_derivative():
    assert grad(lambda x: 4.0)(1.0) == 0.0
    np.testing.assert_array_equal(jacobian(lambda x: np.ones(3))(np.ones(2)), np.zeros((3, 2)))
    _, tangent = pushforward(lambda x: np.ones(3), (np.ones(2),), (np.ones(2),))
    np.testing.assert_array_equal(tangent, np.zeros(3))


def test_check_grads_catches_a_wrong_rule():
    @pullback.custom_jvp
    def wrong_square(x):
        return np.square(x)

    @wrong_square.defjvp
    def wrong_square_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return wrong_square(x), 3.0 * x * t              # should be 2 x t
    for mode in ("forward", "reverse"):                  # reverse mode transposes the rule
        with pytest.raises(AssertionError):
            pullback.check_grads(wrong_square, (np.array([1.0, 2.0]),), order=1, modes=(mode,))
    pullback.check_grads(np.square, (np.array([1.0, 2.0]),), order=2)
