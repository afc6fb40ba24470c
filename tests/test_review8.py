"""Eighth correctness review: NumPy functions whose options reorder or retype their results
(np.gradient's axes, np.pad's constant) and custom rules under second order. Each test is
named after the defect it pins down."""
import numpy as np
import pytest

import pullback


# ------------------------------------ NumPy functions


@pytest.mark.parametrize("axis", [(1, 0), (-1, 0), [2, 0, 1], (0, 2)])
def test_gradient_gives_one_result_per_axis_in_the_order_given(axis):
    """`np.gradient(z, 0.5, 2.0, axis=(1, 0))` on a traced z sorted the axes: the results came
    back swapped and each spacing was applied to the other axis (1716 for NumPy's 2904, the
    gradient off by up to 9). The results and spacings follow the order given."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5))
    spacings = [0.5, 2.0, 3.0][:len(axis)]

    def f(z):
        return np.gradient(z, *spacings, axis=axis)
    for got, expected in zip(pullback.vjp(f, x)[0], f(x)):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    weights = [rng.standard_normal(x.shape) for _ in axis]

    def loss(z):
        return sum(np.sum(w * g) for w, g in zip(weights, f(z)))
    pullback.testing.check_grads(loss, (x,), order=1)
    with pytest.raises(ValueError, match="repeated axis"):
        pullback.grad(lambda z: np.sum(np.gradient(z, axis=(1, 1))[0]))(x)


def test_pad_with_a_complex_constant_pads_with_it():
    """`np.pad(z, 1, constant_values=1 + 1j)` of a traced complex z raised a bare TypeError
    (`float()` of the constant); NumPy pads with the complex number."""
    z = np.array([1 + 2j, 3 - 1j])

    def f(a):
        return np.pad(a, 1, constant_values=1 + 1j)
    value, tangent = pullback.pushforward(f, (z,), (np.ones_like(z),))
    np.testing.assert_array_equal(value, f(z))
    np.testing.assert_array_equal(tangent, [0, 1, 1, 0])
    np.testing.assert_array_equal(pullback.jit(f)(z), f(z))
