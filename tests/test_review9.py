"""Ninth correctness review: bad input across the public API (casts that keep a derivative
they should drop, rules whose outputs are not the function's, errors replaced or bare).
Each test is named after the defect it pins down."""
import warnings

import numpy as np
import pytest

import pullback
import pullback.numpy as pnp
from pullback import errors
from pullback.core import engine

MODES = ["reverse-over-reverse", "forward-over-reverse", "reverse-over-forward",
         "forward-over-forward"]


def _finite_differences(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


# ------------------------------------ casts


@pytest.mark.parametrize("method", ["set", "add", "min", "max", "multiply"])
@pytest.mark.parametrize("dtype", [int, bool])
def test_at_updates_into_an_integer_array_carry_no_derivative(method, dtype):
    """`at(y)[i].set(v)` into an integer array wrote int(v), as NumPy does, but passed v's
    derivative through the cast: `sum(at(zeros(3, int))[0].set(x0) * x)` had gradient 2 (and
    2.5 in forward mode) for finite differences' 1. The update is cast to the array's dtype
    first, which cuts the derivative (as `astype` does)."""
    x = np.array([1.5, 2.5, 3.5])
    start = np.array([1, 0, 1], dtype=dtype)

    def f(x):
        y = getattr(pnp.at(start)[0], method)(x[0] if method != "multiply" else x[0] * 0 + 2)
        return np.sum(y * x)
    expected = _finite_differences(f, x)
    np.testing.assert_allclose(pullback.grad(f)(x), expected, atol=1e-6)
    np.testing.assert_allclose(pullback.jacfwd(f)(x), expected, atol=1e-6)
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(x), expected, atol=1e-6)
    for mode in MODES:
        np.testing.assert_array_equal(pullback.hessian(f, mode=mode)(x), np.zeros((3, 3)))


def test_at_update_of_traced_integer_values_into_themselves():
    """`at(x.astype(int))[0].set(x1)`: gradient (2, 3, 3) for (2, 2, 3), jacfwd (2, 3.5, 3)."""
    def f(x):
        return np.sum(pnp.at(x.astype(int))[0].set(x[1]) * x)
    x = np.array([1.5, 2.5, 3.5])
    expected = _finite_differences(f, x)
    np.testing.assert_allclose(pullback.grad(f)(x), expected, atol=1e-6)
    np.testing.assert_allclose(pullback.jacfwd(f)(x), expected, atol=1e-6)


def test_at_update_keeps_a_float32_arrays_dtype_and_derivative():
    y = np.zeros(3, np.float32)

    def f(x):
        return pnp.at(y)[1].set(x[0] * 2.0)
    out, back = pullback.vjp(f, np.array([1.0, 2.0]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(back(np.ones(3, np.float32))[0], [2.0, 0.0])


@pytest.mark.parametrize("dtype", [object, str, "datetime64[s]", "S3"])
def test_astype_to_objects_strings_or_dates_is_refused(dtype):
    """`x.astype(object) ** 3` had gradient 0 (for 3x**2) and jvp 0: every dtype outside
    floats went through stop_gradient. Casts to objects, text and dates are refused (ints
    and bools still cut the derivative, as documented)."""
    x = np.array([1.0, 2.0])
    with pytest.raises(errors.ArrayConversionError, match="astype"):
        pullback.grad(lambda x: np.sum(x.astype(dtype) ** 3))(x)
    with pytest.raises(errors.ArrayConversionError, match="astype"):
        pullback.jit(pullback.grad(lambda x: np.sum(x.astype(dtype))))(x)
    np.testing.assert_array_equal(pullback.grad(lambda x: np.sum(x.astype(int) * x))(x), [1, 2])


# ------------------------------------ custom rules


def test_custom_vjp_fwd_output_must_be_the_functions():
    """A fwd returning `sin(x)[:1]` for `sin(x)` made `value_and_grad` return 0.841 for 1.751
    (and a float32 one a float32 output): reverse mode never runs the function, so nothing
    compared them. The rule's output is checked against the function's staged types."""
    for wrong in (lambda x: np.sin(x)[:1], lambda x: np.sin(x).astype(np.float32),
                  lambda x: (np.sin(x), np.sin(x))):
        @pullback.custom_vjp
        def f(x):
            return np.sin(x)
        f.defvjp(lambda x, wrong=wrong: (wrong(x), x), lambda x, ct: (ct * np.cos(x),))
        x = np.array([1.0, 2.0])
        for run in (lambda: pullback.grad(lambda x: np.sum(f(x)))(x),
                    lambda: pullback.pushforward(f, (x,), (x,)),
                    lambda: pullback.jit(pullback.grad(lambda x: np.sum(f(x))))(x)):
            with pytest.raises(errors.CustomRuleError, match="function's own"):
                run()


def test_custom_jvp_rule_output_must_be_the_functions():
    """A jvp rule returning `sin(x)[:1], t[:1]` gave grad (1, 0) for cos(x)."""
    @pullback.custom_jvp
    def k(x):
        return np.sin(x)

    @k.defjvp
    def _(primals, tangents):
        return np.sin(primals[0])[:1], tangents[0][:1]
    x = np.array([1.0, 2.0])
    with pytest.raises(errors.CustomRuleError, match="function's own"):
        pullback.grad(lambda x: np.sum(k(x)))(x)
    with pytest.raises(errors.CustomRuleError, match="function's own"):
        pullback.pushforward(k, (x,), (x,))


def test_custom_rule_output_check_leaves_good_rules_and_static_arguments_alone():
    @pullback.custom_vjp
    def power(x, n):
        return x ** n
    power.defvjp(lambda x, n: (x ** n, (x, n)),
                 lambda res, ct: (ct * res[1] * res[0] ** (res[1] - 1), None))
    x = np.array([1.5, 2.0])
    for n in (2.0, 3.0):
        np.testing.assert_allclose(pullback.grad(lambda x: np.sum(power(x, n)))(x), n * x ** (n - 1))

    scaled = pullback.custom_vjp(lambda x, k: np.tile(x, k), nondiff_argnums=(1,))
    scaled.defvjp(lambda x, k: (np.tile(x, k), None),
                  lambda k, res, ct: (ct.reshape(k, -1).sum(0),))
    for k in (1, 3):                 # the static argument changes the output's shape
        np.testing.assert_allclose(pullback.grad(lambda x: np.sum(scaled(x, k) ** 2))(x),
                                   2 * k * x)


# ------------------------------------ errors


def test_the_users_own_error_is_not_replaced_by_a_handled_assignment_error():
    """f caught the refusal of `out[0] = x[0]` and later raised its own ValueError: grad and
    pushforward raised the stale ArrayAssignmentError instead (the user's only as its
    cause). It is swapped only for NumPy's error that the refusal caused."""
    def f(x):
        out = np.zeros(2)
        try:
            out[0] = x[0]
        except ValueError:
            pass
        raise ValueError("user: input rejected")
    x = np.array([1.0, 2.0])
    for run in (lambda: pullback.grad(lambda x: np.sum(f(x)))(x),
                lambda: pullback.pushforward(f, (x,), (x,))):
        with pytest.raises(ValueError, match="user: input rejected") as caught:
            run()
        assert not isinstance(caught.value, errors.PullbackError)
    assert not engine._state.stack

    def g(x):                           # unhandled: still our error, naming the line
        out = np.zeros(2)
        out[0] = x[0]
        return np.sum(out)
    with pytest.raises(errors.ArrayAssignmentError):
        pullback.grad(g)(x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("output", [0, True, "a"])
def test_hvp_of_a_non_float_output_is_refused_in_every_mode(mode, output):
    """hvp's -over-forward modes (the default among them) returned zeros for a function
    returning a Python int, bool or str, where the others and grad raised."""
    with pytest.raises(errors.NonScalarOutputError):
        pullback.hvp(lambda x: output, np.ones(2), np.ones(2), mode=mode)


def test_hvp_checks_x_before_the_vector():
    """hvp(f, int array, float v) blamed the vector and advised casting it to int64."""
    with pytest.raises(errors.NonDifferentiableInputError, match="primal"):
        pullback.hvp(lambda x: np.sum(x), np.arange(2), np.ones(2))


def test_hvp_linear_operator_keeps_the_imaginary_part_of_a_complex_vector():
    """`make_hvp(...).as_linear_operator().matvec(1j * v)` cast the vector to float64 (a
    ComplexWarning) and returned 0 for 1j H v."""
    x = np.array([1.0, 2.0, 3.0])
    operator = pullback.make_hvp(lambda x: np.sum(x ** 3), x).as_linear_operator()
    H = np.diag(6 * x)
    v = np.array([1j, 2.0 - 1j, 0.5j])
    V = np.stack([v, np.arange(3.0) + 2j], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(operator.matvec(v), H @ v)
        np.testing.assert_allclose(operator @ V, H @ V)
        np.testing.assert_allclose(operator.rmatvec(v), H @ v)


def test_jit_static_argnums_of_numpy_integers_or_wrong_types():
    """`static_argnums=np.int64(1)` raised a bare TypeError ('not iterable'); so did None,
    1.0 and `static_argnames=1`, before jit's own check."""
    def f(x, n):
        return x * n
    np.testing.assert_array_equal(pullback.jit(f, static_argnums=np.int64(1))(np.ones(2), 3),
                                  [3.0, 3.0])
    for bad in ({"static_argnums": None}, {"static_argnums": 1.0}, {"static_argnames": 1}):
        with pytest.raises(errors.StaticArgumentError):
            pullback.jit(f, **bad)
    with pytest.raises(errors.CustomRuleError, match="nondiff_argnums"):
        pullback.custom_vjp(f, nondiff_argnums=1.0)(np.ones(2), 3)


@pytest.mark.parametrize("call, error", [
    (lambda x: x.resize(3), errors.InPlaceMutationError),
    (lambda x: x.setflags(write=False), errors.InPlaceMutationError),
    (lambda x: x.tobytes(), errors.ArrayConversionError),
    (lambda x: x.byteswap(), errors.ArrayConversionError),
])
def test_tracer_methods_that_change_or_expose_memory_are_refused(call, error):
    """`x.resize`, `x.setflags`, `x.tobytes`, `x.byteswap` on a tracer raised a bare
    AttributeError."""
    with pytest.raises(error):
        pullback.grad(lambda x: np.sum(call(x)))(np.ones(2))


# ------------------------------------ linear algebra


def _complex_finite_differences(f, z, h=1e-6):
    """The gradient in pullback's convention for a real f of complex z: df/dx - i df/dy."""
    g = np.zeros(z.shape, complex)
    for i in range(z.size):
        e = np.zeros(z.shape)
        e.flat[i] = h
        g.flat[i] = ((f(z + e) - f(z - e)) - 1j * (f(z + 1j * e) - f(z - 1j * e))) / (2 * h)
    return g


@pytest.mark.parametrize("mode", MODES)
def test_second_derivatives_at_rounded_ties_of_eigenvalues_are_nan(mode):
    """At a = Q diag(1, 1, 2) Q^T LAPACK's tied eigenvalues differ by about 1e-16, so 1/gap
    was 1e16 and the Hessians of sum(eigvalsh(a) ** 2) and of sum(svdvals(a) ** 2) finite
    and wrong (0.5 and 0.29 off, the modes disagreeing) where the README promises NaN."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    a = q @ np.diag([1.0, 1.0, 2.0]) @ q.T
    assert np.ptp(np.linalg.eigvalsh(a)[:2]) != 0            # a rounded tie, not an exact one
    with np.errstate(all="ignore"):
        for f in (lambda a: np.sum(np.linalg.eigvalsh(a) ** 2),
                  lambda a: np.sum(np.linalg.svd(a, compute_uv=False) ** 2)):
            assert np.isnan(pullback.hessian(f, mode=mode)(a)).any()
            assert np.isnan(pullback.jit(pullback.hessian(f, mode=mode))(a)).any()
    well_apart = q @ np.diag([1.0, 1.5, 2.0]) @ q.T     # distinct: sum(s ** 2)'' = 2I
    H = pullback.hessian(lambda a: np.sum(np.linalg.svd(a, compute_uv=False) ** 2),
                         mode=mode)(well_apart)
    np.testing.assert_allclose(H.reshape(9, 9), 2 * np.eye(9), atol=1e-9)


def test_complex_eigenvectors_with_a_zero_in_the_real_row_have_derivatives():
    """LAPACK keeps row 0 of complex eigenvectors (and singular vectors) real; the phase term
    divided by that entry, so where it is 0 (any block-diagonal Hermitian matrix) every
    derivative was NaN, of phase-invariant functions too. The term is 0 there."""
    h = np.array([[2.0, 0, 0], [0, 3.0, 1 - 1j], [0, 1 + 1j, 5.0]])
    c = np.array([0.3, 1 - 0.5j, 0.7j])

    def projections(z):
        return np.sum(np.array([1.0, 2.0, 3.0]) * np.abs(np.linalg.eigh(z)[1].conj().T @ c) ** 2)
    np.testing.assert_allclose(pullback.grad(projections)(h),
                               _complex_finite_differences(projections, h), atol=1e-7)
    z = np.array([[2.0, 0, 0], [0, 1 + 1j, 0.5], [0, 0.2j, 3 - 1j]])

    def phase_free(z):
        u, _, vh = np.linalg.svd(z)
        return np.sum(np.arange(9.0).reshape(3, 3) * np.real(u @ vh))
    np.testing.assert_allclose(pullback.grad(phase_free)(z),
                               _complex_finite_differences(phase_free, z), atol=1e-7)
    np.testing.assert_allclose(pullback.jit(pullback.grad(phase_free))(z),
                               _complex_finite_differences(phase_free, z), atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_holomorphic_check_accepts_a_zero_derivative_computed_with_rounding(mode):
    """trace(inv(z) @ z @ z) is trace(z): its Hessian is 0, computed as rounding noise,
    which the complex-linearity check measured against its own size and refused
    (HolomorphicError in every eager mode; jit gave 1e-16)."""
    rng = np.random.default_rng(6)
    z = rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3)) + 3 * np.eye(3)

    def g(z):
        return np.trace(np.linalg.inv(z) @ z @ z)
    assert np.abs(pullback.hessian(g, holomorphic=True, mode=mode)(z)).max() < 1e-12
    jacobian = pullback.jacobian(lambda z: np.linalg.inv(z) @ z, holomorphic=True)(z)
    assert np.abs(jacobian).max() < 1e-12
    with pytest.raises(errors.HolomorphicError):                # still refuses conj
        pullback.hessian(lambda z: np.sum(z * np.conj(z) * z), holomorphic=True,
                         mode=mode)(z)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_complex_det_is_differentiable_at_singular_matrices(n):
    """det's cofactors for complex matrices were det(a) inv(a)^T: at a singular matrix the
    backward pass raised a bare LinAlgError, where NumPy's det and the real path (the
    adjugate from the SVD) work. The adjugate now takes complex matrices."""
    rng = np.random.default_rng(n)
    z = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    z[-1] = z[0] * (0.5 - 0.3j) if n > 1 else 0.0
    assert abs(np.linalg.det(z)) < 1e-12
    v = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    for f in (lambda z: np.real(np.linalg.det(z)), lambda z: np.imag(np.linalg.det(z @ z)),
              lambda z: np.abs(np.linalg.det(z + 0.1)) ** 2):
        np.testing.assert_allclose(pullback.grad(f)(z), _complex_finite_differences(f, z),
                                   atol=1e-7)
        second = (pullback.grad(f)(z + 1e-6 * v) - pullback.grad(f)(z - 1e-6 * v)) / 2e-6
        for mode in MODES:
            np.testing.assert_allclose(pullback.hvp(f, z, v, mode=mode), second, atol=1e-6)
    if n == 2:
        np.testing.assert_allclose(pullback.grad(lambda z: np.real(np.linalg.det(z)))(
            np.array([[1 + 1j, 2], [1 + 1j, 2]])), [[2, -1 - 1j], [-2, 1 + 1j]], atol=1e-12)


@pytest.mark.parametrize("shape", [(0, 0), (3, 0)])
def test_norms_of_empty_matrices_are_numpys(shape):
    """`norm(E, 2)` of an empty matrix raised a bare ValueError (NumPy: 0.0, the largest of
    no singular values); the largest column and row sums likewise. The smallest still
    raise NumPy's error, as NumPy's do; `cond` raises NumPy's LinAlgError (was IndexError)."""
    e = np.zeros(shape)
    for order in (2, "nuc", "fro", 1, np.inf, None):
        assert pullback.jit(lambda a: np.linalg.norm(a, order))(e) == np.linalg.norm(e, order)
        with np.errstate(divide="ignore"):                     # (sqrt's slope at 0)
            assert pullback.grad(lambda a: np.linalg.norm(a, order))(e).shape == shape
    with pytest.raises(ValueError):
        pullback.grad(lambda a: np.linalg.norm(a, -2))(e)
    with pytest.raises(np.linalg.LinAlgError, match="empty"):
        pullback.grad(lambda a: np.linalg.cond(a))(e)


def test_eigenvector_derivatives_of_an_empty_matrix():
    """The pullback of `eig`'s vectors at a 0 x 0 matrix raised 'argmax of an empty
    sequence' (and eigh's, once gaps had a tolerance, a reduction without identity)."""
    e = np.zeros((0, 0))
    for f in (lambda a: np.sum(np.abs(np.linalg.eig(a)[1])),
              lambda a: np.sum(np.linalg.eigh(a)[1])):
        assert pullback.grad(f)(e).shape == (0, 0)
        assert pullback.jacfwd(f)(e).shape == (0, 0)


def test_vmap_refuses_boolean_axes():
    """`vmap(np.sum, in_axes=True)` batched along axis 1 (True is an int to Python), where
    `argnums=True` is refused."""
    for axes in ({"in_axes": True}, {"out_axes": False}, {"in_axes": (np.True_,)}):
        with pytest.raises(errors.BatchError, match="axis"):
            pullback.vmap(np.sum, **axes)(np.ones((3, 2)))


# ------------------------------------ numerical functions


@pytest.mark.parametrize("dtype, top", [(np.float32, 100.0), (np.float64, 1000.0)])
def test_logsumexp_with_a_traced_b_that_masks_a_large_term(dtype, top):
    """`logsumexp(a, b=w)` with w traced and 0 where a lies far above the other terms: the
    masked term's exp overflowed and inf * 0 made the value and every derivative NaN
    (float32 from a gap of 89; SciPy's value 1.862). Its exp is clamped below overflow."""
    import pullback.scipy.special as special
    import scipy.special
    a = np.array([top, 0.0, 1.0], dtype)
    b = np.array([0.0, 1.0, 2.0], dtype)
    value, gradient = pullback.value_and_grad(lambda w: special.logsumexp(a, b=w))(b)
    assert value.dtype == dtype
    np.testing.assert_allclose(value, scipy.special.logsumexp(a, b=b), rtol=1e-6)
    expected = np.exp(a[1:]) / np.sum(b * np.exp(np.where(b != 0, a, 0)))
    np.testing.assert_allclose(gradient[1:], expected, rtol=1e-6)
    assert gradient[0] > 1e30                          # exp(a0 - shift) / total: huge
    np.testing.assert_allclose(pullback.jit(pullback.grad(
        lambda w: special.logsumexp(a, b=w)))(b)[1:], expected, rtol=1e-6)


def test_interp_with_a_repeated_end_knot_has_finite_reverse_gradients():
    """A jump at the end of a table (xp = [0, 0, 1, 2]) put a zero-width interval's infinite
    slope in the untaken branch: reverse mode's gradients were NaN for points outside the
    table (d/dx [nan, 0.5, 0] for [0, 0.5, 0]; d/dfp [nan, nan, .5, 1])."""
    xp, fp = np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.0, 1.0, 1.5, 3.0])
    x = np.array([-1.0, 0.5, 2.5])
    np.testing.assert_array_equal(pullback.grad(lambda x: np.sum(np.interp(x, xp, fp)))(x),
                                  [0.0, 0.5, 0.0])
    np.testing.assert_array_equal(pullback.grad(lambda f: np.sum(np.interp(x, xp, f)))(fp),
                                  [1.0, 0.5, 0.5, 1.0])
    for mode in MODES:
        np.testing.assert_array_equal(pullback.hessian(
            lambda x: np.sum(np.interp(x, xp, fp)), mode=mode)(x), np.zeros((3, 3)))
    last = np.array([0.0, 1.0, 1.0])
    np.testing.assert_array_equal(pullback.grad(lambda x: np.sum(np.interp(
        x, last, [0.0, 1.0, 5.0])))(np.array([-1.0, 0.5, 2.0])), [0.0, 1.0, 0.0])


def test_interp_values_with_infinite_or_nan_table_values_are_numpys():
    """fp = [1, inf, 2] gave [nan, inf, nan, 2] for NumPy's [1, inf, inf, 2] (inf * 0 at a
    knot); NumPy takes a knot's own value there, and the line from the other end where
    the first is NaN."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = rng.integers(1, 6)
        xp = np.sort(rng.integers(0, 4, n).astype(float))
        fp = rng.choice([0.0, 1.0, -2.0, np.inf, -np.inf, np.nan, 3.5], n)
        x = rng.choice([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 3.5, 4.0], 5)
        with np.errstate(invalid="ignore"):
            got = pullback.vjp(lambda x: np.interp(x, xp, fp), x)[0]
        np.testing.assert_array_equal(got, np.interp(x, xp, fp))


def test_gradient_keeps_float32_with_float64_or_integer_spacings():
    """np.gradient of float32 values with float64 or integer spacings was float64 (NumPy
    writes into an array like f: float32)."""
    f = np.array([1.0, 2.0, 4.0, 7.0, 11.0], np.float32)
    for spacing in (np.array([0.0, 1.0, 1.5, 3.0, 4.0]), np.arange(5), np.float64(0.5)):
        expected = np.gradient(f, spacing)
        assert pullback.vjp(lambda f: np.gradient(f, spacing), f)[0].dtype == expected.dtype
        assert pullback.jit(lambda f: np.gradient(f, spacing))(f).dtype == expected.dtype


@pytest.mark.parametrize("a_dtype, w_dtype", [(np.float64, np.int64), (np.float64, np.float32),
                                              (np.float32, bool), (np.int64, np.float32)])
def test_average_with_weights_in_numpys_dtypes(a_dtype, w_dtype):
    """`np.average(a, weights=w, returned=True)` summed the weights in w's dtype (int64,
    float32) and a float32 a with boolean weights averaged in float64."""
    a = np.array([[1.0, 2.0, 4.0], [3.0, 5.0, 6.0]]).astype(a_dtype)
    w = np.array([1, 0, 2]).astype(w_dtype)
    average, total = np.average(a, axis=1, weights=w, returned=True)
    got = pullback.jit(lambda a: np.average(a, axis=1, weights=w, returned=True))(a)
    assert (got[0].dtype, got[1].dtype) == (average.dtype, total.dtype)
    np.testing.assert_allclose(got[0], average, rtol=1e-6)
    if a_dtype != np.int64:
        assert pullback.vjp(lambda a: np.average(a, axis=1, weights=w), a)[0].dtype == \
            average.dtype


@pytest.mark.parametrize("options", [{"axes": (0, 0)}, {"axes": (1, -1)}, {"s": (-1, 3), "axes": (0, 1)},
                                     {"axes": (0, 1, 0), "s": (2, -1, 5)}, {"axes": ()}])
def test_fftn_takes_numpys_repeated_axes_whole_axis_lengths_and_no_axes(options):
    """fftn refused repeated axes and s = -1 with a bare ValueError (NumPy transforms an axis
    named twice twice, and -1 is the whole axis), and `axes=()` made x complex."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    expected = np.fft.fftn(x, **options)
    got = pullback.jit(lambda x: np.fft.fftn(x, **options))(x)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, atol=1e-9)
    pullback.testing.check_grads(lambda x: np.sum(np.abs(np.fft.fftn(x, **options)) ** 2),
                                 (x,), order=2)


# ------------------------------------ complex values


def _complex_derivative(f, w, h=1e-6):
    """f'(w) of a holomorphic f of one complex number, by central differences."""
    return (f(w + h) - f(w - h)) / (2 * h)


def test_complex_power_of_a_negative_real_base_in_the_exponent():
    """d/dw (-2) ** w is (-2) ** w log(-2 + 0j); the rule took the real log: NaN in every
    mode (jvp, holomorphic grad, jit, vmap), and for a traced negative base too."""
    w = np.array([0.3 + 0.2j])
    for base in (-2.0, np.array([-2.0]), np.float64(-2.0)):
        expected = _complex_derivative(lambda w: base ** w, w)
        np.testing.assert_allclose(pullback.jacfwd(lambda w: base ** w, holomorphic=True)(w)[0],
                                   expected, rtol=1e-8)
        np.testing.assert_allclose(pullback.jit(pullback.grad(
            lambda w: np.sum(base ** w), holomorphic=True))(w), expected, rtol=1e-8)
    x, y = np.array([-2.0, 1.5]), np.array([0.3 + 0.2j, 0.7 - 0.4j])

    def loss(y):
        return np.sum(np.abs(np.power(x, y)) ** 2)
    got = pullback.grad(loss)(y)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _complex_finite_differences(loss, y), atol=1e-6)


@pytest.mark.parametrize("name", ["xlogy", "xlog1py"])
def test_xlogy_of_complex_x_and_a_real_y_outside_the_real_logs_domain(name):
    """d/dx xlogy(x, -2) for complex x is log(-2 + 0j) = 0.69 + 3.14j (SciPy's value is
    finite); the partial took the real log of y: NaN in every mode."""
    import scipy.special
    function = getattr(scipy.special, name)
    w = np.array([0.3 + 0.2j])
    expected = _complex_derivative(lambda w: function(w, -2.0), w)
    np.testing.assert_allclose(pullback.jacfwd(lambda w: function(w, -2.0),
                                               holomorphic=True)(w)[0], expected, rtol=1e-8)
    np.testing.assert_allclose(pullback.jacrev(lambda w: function(w, np.array([-2.0])),
                                               holomorphic=True)(w)[0], expected, rtol=1e-8)
    real = np.array([0.5])
    np.testing.assert_allclose(pullback.grad(lambda x: np.sum(function(x, 3.0)))(real),
                               np.log(3.0) if name == "xlogy" else np.log1p(3.0))


def test_sparse_jacobian_of_complex_outputs_keeps_the_imaginary_part():
    """mode="auto" chose reverse mode for a complex f of a real x and returned Re(J) (2.2
    off); reverse mode's pullback of a real input keeps only the real part. Complex outputs
    take forward mode; mode="reverse" is refused, as jacrev refuses them."""
    import pullback.sparse
    x = np.linspace(0.5, 1.5, 4)

    def f(x):
        return np.exp(1j * np.sum(x)) * np.ones(2) + 0j * x[:2]
    expected = pullback.jacfwd(f)(x)
    np.testing.assert_allclose(pullback.sparse.sparse_jacobian(f, x).toarray(), expected)
    np.testing.assert_allclose(pullback.sparse.prepare_jacobian(f, x)(x).toarray(), expected)
    with pytest.raises(errors.HolomorphicError):
        pullback.sparse.sparse_jacobian(f, x, mode="reverse")


# ------------------------------------ indexing


def test_at_set_drops_leading_unit_axes_of_the_values_as_assignment_does():
    """`x[1:3, ::2] = v` takes v of shape (1, 1, 3) (NumPy drops leading axes of length
    one); `at(x)[1:3, ::2].set(v)` had the right eager value but every reverse mode raised
    a bare ValueError (a reshape), and jit even for the value (a broadcast)."""
    x = np.arange(12.0).reshape(3, 4)
    v = np.array([[[10.0, 20.0]]])

    def f(x, v):
        return pnp.at(x)[1:3, ::2].set(v * x[0, :2])
    expected = x.copy()
    expected[1:3, ::2] = v * x[0, :2]
    np.testing.assert_array_equal(f(x, v), expected)
    np.testing.assert_array_equal(pullback.jit(f)(x, v), expected)
    loss = lambda x, v: np.sum(f(x, v) ** 2)            # noqa: E731
    pullback.testing.check_grads(loss, (x, v), order=2)
    with pytest.raises(ValueError):                     # a non-unit extra axis: NumPy's error
        pnp.at(x)[1:3, ::2].set(np.ones((2, 1, 2)))


def test_at_update_of_a_numpy_scalar():
    """`at(x[0])[()].add(v)` (x[0] of a traced vector is a NumPy scalar underneath) raised a
    bare TypeError ('does not support item assignment'), and `at(1.5)[...]` an
    AttributeError."""
    x = np.array([1.5, 2.0])
    f = lambda x: pnp.at(x[0])[()].add(3.0 * x[1]) * 2.0 * x[0] + x[1]   # noqa: E731
    for gradient in (pullback.grad(f)(x), pullback.jacfwd(f)(x),
                     pullback.jit(pullback.grad(f))(x)):
        np.testing.assert_allclose(gradient, _finite_differences(f, x), rtol=1e-6)
    assert pnp.at(np.float64(1.5))[()].set(3.0) == 3.0
    assert pnp.at(1.5)[...].add(3.0) == 4.5


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_tril_and_triu_of_a_vector_are_numpys_square_results(name):
    """NumPy's tril/triu of a vector broadcast it to (n, n); a traced vector raised a bare
    ValueError (two dimensions unpacked from one)."""
    v = np.array([1.0, 2.0, 3.0])
    function = getattr(np, name)
    np.testing.assert_array_equal(pullback.jit(lambda v: function(v, 1))(v), function(v, 1))
    jacobian = pullback.jacrev(lambda v: function(v, 1))(v)
    np.testing.assert_array_equal(jacobian, pullback.jacfwd(lambda v: function(v, 1))(v))
    np.testing.assert_array_equal(jacobian.sum(axis=(0, 1)), function(np.ones(3), 1).sum(0))


# ------------------------------------ second round: operators, jit, the Array API


def test_hvp_linear_operator_at_complex_x_is_refused():
    """At complex z, v -> H v of a real f is only real-linear: the LinearOperator gave
    L(1j v) = -1.5j where 1j L(v) = 2.5j, and gmres failed to converge without an error.
    hessian refuses that case; as_linear_operator now too."""
    z = np.array([1.0 + 0.5j, -0.3j, 2.0])
    operator = pullback.make_hvp(lambda z: np.sum(np.abs(z) ** 2 + 0.25 * np.real(z ** 2)), z)
    with pytest.raises(errors.HolomorphicError):
        operator.as_linear_operator()


@pytest.mark.parametrize("offset", [1e8, 1e9, 1e12])
def test_holomorphic_check_is_not_loosened_by_a_large_output(offset):
    """z conj(z) + 1e9 passed the holomorphic check in jacfwd (diag [2, 1]) while jacrev gave
    [2-2j, 1+0.4j]: the tolerance's floor for rounding noise scaled with |f| / |z| by half
    the precision's digits; it is 1000 eps of that now."""
    z = np.array([1.0 + 0.5j, 0.2 - 0.1j])
    for run in (lambda: pullback.jacfwd(lambda z: z * np.conj(z) + offset, holomorphic=True)(z),
                lambda: pullback.jacrev(lambda z: z * np.conj(z) + offset, holomorphic=True)(z),
                lambda: pullback.grad(lambda z: np.sum(z * np.conj(z)) + offset,
                                      holomorphic=True)(z)):
        with pytest.raises(errors.HolomorphicError):
            run()


def test_jit_snapshot_copies_memmaps_subclasses_and_read_only_owners(tmp_path):
    """A closed-over np.memmap (any ndarray subclass) was not copied at staging, and a
    read-only array owning its memory counted as frozen though its owner can set it
    writeable again: after `W *= 2` the program mixed the folded exp(W) of the old W with
    the new W (-58.59 for the copy's -54.59 or eager's -2838)."""
    x = np.array([0.3, -1.0, 0.5])
    memmap = np.memmap(tmp_path / "w.dat", dtype=np.float64, mode="w+", shape=(3, 3))
    memmap[:] = np.arange(9.0).reshape(3, 3) / 4
    owner = np.arange(9.0).reshape(3, 3) / 4
    owner.flags.writeable = False
    for W in (memmap, owner):
        def f(x):
            return np.sum(np.exp(W) @ x) + np.sum(W @ x)
        jitted = pullback.jit(f)
        before = jitted(x)
        jitted(x)
        W.flags.writeable = True
        W *= 2
        np.testing.assert_allclose(jitted(x), before, rtol=1e-12)
        jitted_grad = pullback.jit(pullback.grad(f))
        gradient = jitted_grad(x)
        W *= 2
        np.testing.assert_allclose(jitted_grad(x), gradient, rtol=1e-12)


def test_random_draws_are_refused_under_nested_transformations():
    """A generator read as self.rng was refused by jit(grad(m.loss)) but frozen into the
    program by jit(hessian(m.loss)) in every mode, jit(jacfwd(grad(...))) and jit of grad of
    a grad (the same mask on every call): the walk for random sources was depth-first and
    pullback's own wrappers used up its depth; a generator on the class was not seen."""
    class Dropout:
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def loss(self, x):
            return np.sum(np.sin(x) * (self.rng.random(x.shape) > 0.5))

    class OnTheClass:
        rng = np.random.default_rng(1)

        def f(self, x):
            return x * self.rng.standard_normal(3)
    m, x = Dropout(), np.ones(3)
    transformed = [pullback.grad(m.loss), pullback.jacfwd(pullback.grad(m.loss)),
                   lambda x: pullback.grad(lambda y: np.sum(pullback.grad(m.loss)(y)))(x)]
    transformed += [pullback.hessian(m.loss, mode=mode) for mode in MODES]
    for f in transformed + [OnTheClass().f]:
        with pytest.raises(errors.StagedRandomnessError):
            pullback.jit(f)(x)


def test_static_dataclass_arguments_are_keyed_by_their_fields_types():
    """`Cfg(100)` and `Cfg(100.0)` are equal, so jit reused the int program: int8
    [100, -56, 44] for float64 [100, 200, 300]. (The signs of zeros from `x * -0.0` are the
    passes' documented liberty, not the key's.)"""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        scale: float

    f = pullback.jit(lambda x, cfg: x * cfg.scale, static_argnums=1)
    x = np.array([1, 2, 3], np.int8)
    for cfg in (Cfg(100), Cfg(100.0), Cfg(2), Cfg(2.5)):
        expected = x * cfg.scale
        got = f(x, cfg)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_libraries_reading_a_tracers_strides_get_the_conversion_error():
    """scipy.linalg.circulant (and toeplitz with SCIPY_ARRAY_API=1) read `x.strides` for
    as_strided: a bare AttributeError. Tracers answer with the error naming pullback's
    namesake (an AttributeError too: hasattr(x, "strides") stays False)."""
    import scipy.linalg
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(errors.ArrayConversionError, match="circulant"):
        pullback.jacobian(scipy.linalg.circulant)(x)

    def has_strides(x):
        assert not hasattr(x, "strides")
        return x
    pullback.grad(lambda x: np.sum(has_strides(x)))(x)


def test_scipy_special_sinc_is_numpys():
    """With SCIPY_ARRAY_API=1 SciPy looks up sinc in the namespace's `special`
    (pullback.scipy.special), which lacked it: an ArrayConversionError."""
    import pullback.scipy.special as special
    x = np.array([0.0, 0.3, 1.5])
    np.testing.assert_allclose(pullback.jacfwd(lambda x: special.sinc(x))(x),
                               pullback.jacfwd(np.sinc)(x))


@pytest.mark.parametrize("mode", MODES)
def test_holomorphic_hessian_of_a_non_holomorphic_function_is_refused_in_every_mode(mode):
    """hessian(sum(conj(z) ** 2), holomorphic=True) raised in the -over-forward modes but
    returned 2I in the -over-reverse ones: the inner gradient's check saw tracers and was
    skipped, and the outer one checked only the derivative of the computed gradient."""
    z = np.array([1.0 + 2.0j, -0.5 + 0.25j])
    with pytest.raises(errors.HolomorphicError):
        pullback.hessian(lambda z: np.sum(np.conj(z) ** 2), holomorphic=True, mode=mode)(z)
    np.testing.assert_allclose(pullback.hessian(lambda z: np.sum(z ** 3), holomorphic=True,
                                                mode=mode)(z), np.diag(6 * z))


def test_repeated_argnums_get_the_promoted_dtypes_in_every_mode():
    """With argnums=(0, 1, 0) the Hessian's mixed block was float64 in the reverse-over
    modes and float32 in the forward-over ones (the promotion counted distinct arguments and
    gave up on the repeats); jacobian(auto) with argnums=(0, 0) float32 where argnums=0
    gives float64."""
    a, b = np.array([1.0, 2.0], np.float32), np.array([0.5, 1.5])
    f = lambda a, b: np.sum(a ** 3) * np.sum(b)     # noqa: E731
    for mode in MODES:
        h = pullback.hessian(f, argnums=(0, 1, 0), mode=mode)(a, b)
        assert h[0][1].dtype == h[1][0].dtype == np.float64
    g = lambda a: a.astype(np.float64) ** 2         # noqa: E731
    assert [block.dtype for block in pullback.jacobian(g, argnums=(0, 0))(a)] == \
        [pullback.jacobian(g)(a).dtype] * 2


# ------------------------------------ third round: sparse plans


def test_sparse_plan_checks_again_when_index_arguments_or_derived_constants_change():
    """A prepared plan re-checked a random product only where an argument or a closure array
    gained a nonzero; index arrays, shifts, numbers and constants derived from them place
    the detected pattern's entries too: `x[idx] ** 2` prepared at idx = 1..5 and called at
    5..9 returned its nonzeros in the old columns (3.0 off), `np.maximum(W, 0) @ x` and
    `(W - 1) @ x` likewise (0.5, 2.0). Any change now checks; the pattern is refused."""
    import pullback.sparse as sparse
    x = np.linspace(0.5, 1.5, 10)
    plan = sparse.prepare_jacobian(lambda x, idx: x[idx] ** 2, x, np.arange(1, 6))
    np.testing.assert_allclose(plan(x, np.arange(1, 6)).toarray(),
                               pullback.jacfwd(lambda x: x[np.arange(1, 6)] ** 2)(x))
    with pytest.raises(errors.PatternError, match="They changed"):
        plan(x, np.arange(5, 10))
    W = -np.ones((3, 10))
    W[:, 0] = 1.0
    relu_plan = sparse.prepare_jacobian(lambda x, W: np.maximum(W, 0) @ x, x, W)
    with pytest.raises(errors.PatternError):
        relu_plan(x, -W)
    shift = [1]
    rolled = sparse.prepare_jacobian(lambda x: x * np.roll(x, shift[0]), x)
    shift[0] = 3
    with pytest.raises(errors.PatternError):
        rolled(x)
    number = {"c": 0.0}
    identity, B = np.eye(10), np.ones((10, 10))
    scaled = sparse.prepare_jacobian(lambda x: (identity + number["c"] * B) @ x, x)
    number["c"] = 1.0
    with pytest.raises(errors.PatternError):
        scaled(x)


def test_sparse_check_of_a_random_product_at_a_non_finite_entry():
    """One non-finite entry made the random-product bound NaN for every row (a detected,
    correct pattern refused: '... is -0.568, but the entries give -0.568') or inf (the check
    off: a given pattern missing J[2, 3] accepted, J[2, 2] 6 for 4). Rows whose own entries
    are not finite are skipped, the rest checked as before."""
    import pullback.sparse as sparse
    with np.errstate(all="ignore"):
        hessian = sparse.sparse_hessian(lambda y: np.sum(np.sqrt(y) * y[0]),
                                        np.array([0.0, 1.0, 2.0])).toarray()
        np.testing.assert_allclose(hessian[1:, :], [[0.5, 0, 0], [0.5 ** 1.5, 0, 0]])

        def g(y):
            return np.concatenate([np.sqrt(y[:1]), y[1:2] * 2, y[2:3] * 3 + y[3:4] * y[2:3],
                                   y[3:4]])
        with pytest.raises(errors.PatternError):
            sparse.sparse_jacobian(g, np.array([0.0, 1.0, 2.0, 1.0]),
                                   pattern=np.eye(4, dtype=bool), mode="forward")


# ------------------------------------ third round: loops


def test_loop_bodies_see_numbers_held_in_other_containers_and_function_attributes():
    """A loop body reading a number through a list subclass, a deque, an array.array or an
    attribute of a function was cached by the container's identity: after the number went
    from 2 to 3, fori_loop gave 4 (grad 4) for 9 (grad 9)."""
    import array
    import collections

    class Numbers(list):
        pass

    def step(i, c):
        return c * step.scale
    holders = {"list subclass": Numbers([2.0]), "deque": collections.deque([2.0]),
               "array": array.array("d", [2.0])}
    for name, holder in holders.items():
        def f(x, holder=holder):
            return pullback.fori_loop(0, 2, lambda i, c: c * holder[0], x)
        for k in (2.0, 3.0):
            holder[0] = k
            value, gradient = pullback.value_and_grad(f)(1.0)
            assert (value, gradient) == (k * k, k * k), name
    for k in (2.0, 3.0):
        step.scale = k
        assert pullback.value_and_grad(lambda x: pullback.fori_loop(0, 2, step, x))(1.0) == \
            (k * k, k * k)


def test_loops_take_partial_bodies_with_keywords():
    """`scan(functools.partial(step, scale=2.0), ...)` (and fori_loop, cond, checkpoint)
    raised a bare IndexError naming the body."""
    import functools

    def step(c, x, scale):
        return c * scale + x, c

    carry, ys = pullback.scan(functools.partial(step, scale=2.0), 1.0, np.array([0.0, 0.0, 0.0]))
    assert carry == 8.0 and list(ys) == [1.0, 2.0, 4.0]
    assert pullback.fori_loop(0, 3, functools.partial(lambda i, c, s: c * s, s=2.0), 1.0) == 8.0


# ------------------------------------ third round: aliasing


def test_values_handed_back_are_not_the_callers_input_arrays():
    """np.copy(x), x.astype(x.dtype), x.flatten() of a traced x are x itself inside f (traced
    values are immutable); handed back as an output or aux, they were the caller's own
    array: a grad aux snapshot followed a later in-place optimiser step, writing into a
    jvp's primal output (f = x.astype(float64)) or vmap(np.copy)'s result wrote into x."""
    x = np.array([1.0, 2.0, 3.0])
    g, snapshot = pullback.grad(lambda x: (np.sum(x ** 2), np.copy(x)), has_aux=True)(x)
    x -= 0.1 * g
    np.testing.assert_array_equal(snapshot, [1.0, 2.0, 3.0])
    x = np.array([1.0, 2.0, 3.0])
    y, _ = pullback.jvp(lambda x: x.astype(np.float64), (x,), (np.ones(3),))
    y[0] = 99.0
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    x = np.arange(6.0).reshape(3, 2)
    pullback.vmap(lambda r: r.copy())(x)[:] = 0.0
    np.testing.assert_array_equal(x.ravel(), np.arange(6.0))
    x = np.array([1.0, 2.0])
    for operator in (pullback.hessian, pullback.jacfwd, pullback.jacrev):
        _, aux = operator(lambda x: (np.sum(x ** 3), x.flatten()), has_aux=True)(x)
        aux[:] = -1.0
        np.testing.assert_array_equal(x, [1.0, 2.0])
