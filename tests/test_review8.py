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


# ------------------------------------ custom rules at second order

_MODES = ("reverse-over-reverse", "forward-over-reverse", "reverse-over-forward",
          "forward-over-forward")


def test_a_custom_jvp_rule_is_differentiated_as_code_in_every_mode():
    """Forward mode took a custom_jvp function's output from the rule, reverse mode from
    the function bound again one level down, so an outer derivative differentiated the
    rule's code in one and applied the rule again in the other: the Hessians of a
    straight-through `round` (rule `(np.round(x), t)`) were 2I over reverse mode and 0 over
    forward mode, of a rule `(np.sin(x), 2 cos(x) t)` 3.64 and 2.69. Every mode now
    takes the output from the rule."""
    @pullback.custom_jvp
    def straight_through(x):
        return np.round(x)
    straight_through.defjvp(lambda p, t: (np.round(p[0]), t[0]))

    @pullback.custom_jvp
    def doubled_slope(x):
        return np.sin(x)
    doubled_slope.defjvp(lambda p, t: (np.sin(p[0]), 2.0 * np.cos(p[0]) * t[0]))

    x = np.array([0.3, 1.7])
    for f, expected in ((lambda x: np.sum(straight_through(x) ** 2), np.zeros((2, 2))),
                        (lambda x: np.sum(doubled_slope(x) * x),      # (2 x cos x + sin x)'
                         np.diag(3.0 * np.cos(x) - 2.0 * x * np.sin(x)))):
        np.testing.assert_allclose(pullback.grad(f)(x), pullback.jacfwd(f)(x), rtol=1e-14)
        for mode in _MODES:
            np.testing.assert_allclose(pullback.hessian(f, mode=mode)(x), expected, atol=1e-14)
            np.testing.assert_allclose(pullback.jit(pullback.hessian(f, mode=mode))(x),
                                       expected, atol=1e-14)
            np.testing.assert_allclose(pullback.hvp(f, x, np.ones(2), mode=mode),
                                       expected @ np.ones(2), atol=1e-14)


def test_a_custom_jvp_rule_calling_its_function_applies_at_second_order():
    """The documented way to have the rule at second order: its output is the function
    itself, whose rule an outer derivative applies again. With a slope of 2, the gradient
    of sum(g(x)^2) is 4 g(x) and its Hessian 8I, in every mode."""
    @pullback.custom_jvp
    def straight_through(x):
        return np.round(x)
    straight_through.defjvp(lambda p, t: (straight_through(p[0]), 2.0 * t[0]))
    x = np.array([0.3, 1.7])
    f = lambda x: np.sum(straight_through(x) ** 2)           # noqa: E731
    for mode in _MODES:
        np.testing.assert_allclose(pullback.hessian(f, mode=mode)(x), 8.0 * np.eye(2))


# ------------------------------------ statistics


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nanstd_over_one_valid_element_has_zero_derivatives(dtype):
    """`np.std` over one element is identically 0 with zero derivatives (README); `nanstd`
    over a slice holding one value besides NaNs gave a NaN gradient (sqrt's slope at 0)."""
    x = np.array([[0.7, np.nan, 0.2], [np.nan, 1.0, np.nan]], dtype)
    for axis in (None, 0, 1):
        weights = np.arange(1.0, 1.0 + np.size(np.nanstd(x, axis=axis)))

        def f(z):
            return np.sum(np.nanstd(z, axis=axis) * weights)
        value = pullback.jit(lambda z: np.nanstd(z, axis=axis))(x)
        np.testing.assert_allclose(value, np.nanstd(x, axis=axis), rtol=1e-6)
        assert value.dtype == dtype
        gradient = pullback.grad(f)(x)
        assert np.all(np.isfinite(gradient)) and gradient.dtype == dtype
        np.testing.assert_allclose(pullback.jacfwd(f)(x), gradient, rtol=1e-5)
        np.testing.assert_allclose(pullback.jit(pullback.grad(f))(x), gradient, rtol=1e-5)
    pullback.testing.check_grads(lambda z: np.nanstd(z, axis=1), (x.astype(np.float64),),
                                 order=2)


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_logsumexp_and_softmax_of_complex_values_are_scipys(name):
    """SciPy's logsumexp, softmax and log_softmax take complex values (holomorphic); on
    traced ones pullback raised ComplexValueError naming `sign`, which it computed for
    the unused `return_sign`. The sum is shifted by the largest real part, as it must be
    for large values (1000 + 1j)."""
    import scipy.special
    from pullback.scipy import special
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    ours, scipys = getattr(special, name), getattr(scipy.special, name)
    for axis in (None, 1):
        value, tangent = pullback.pushforward(lambda a: ours(a, axis=axis), (z,), (np.ones_like(z),))
        np.testing.assert_allclose(value, scipys(z, axis=axis), rtol=1e-13)
        step = 1e-6                         # holomorphic: the derivative along any direction
        expected = (scipys(z + step, axis=axis) - scipys(z - step, axis=axis)) / (2 * step)
        np.testing.assert_allclose(tangent, expected, rtol=1e-8, atol=1e-9)
    large = np.array([1000 + 1j, 1000 - 2j])
    np.testing.assert_allclose(pullback.jit(ours)(large), scipys(large), rtol=1e-12)
    if name == "logsumexp":
        with pytest.raises(pullback.errors.ComplexValueError, match="return_sign"):
            pullback.pushforward(lambda a: ours(a, return_sign=True), (z,), (z,))


# ------------------------------------ the boundary


def test_a_matrix_or_masked_cotangent_or_tangent_is_refused():
    """`back(np.matrix(ct))` computed the sweep's `ct * cos(x)` as a matrix product (2.91
    for 0.995) and a masked cotangent kept its masked slot raw, silently: such arrays are
    refused as cotangents and tangents, as they are as inputs."""
    x = np.array([[0.1, 0.2], [0.3, 0.4]])
    _, back = pullback.vjp(np.sin, x)
    for value in (np.matrix(x), np.ma.masked_array(x, [[0, 1], [0, 0]])):
        with pytest.raises(pullback.errors.CotangentError, match=type(value).__name__):
            back(value)
        with pytest.raises(pullback.errors.TangentError, match=type(value).__name__):
            pullback.jvp(np.sin, (x,), (value,))


def test_a_complex_number_for_a_real_scalar_cotangent_or_tangent_is_refused():
    """`back(2j)` for a real 0-d output gave zeros (NumPy dropped the imaginary part with a
    warning), and a tangent 1j of a real scalar gave 0.0; a complex 0-d array was refused."""
    _, back = pullback.vjp(lambda x: np.sum(x ** 2), np.array([1.0, 2.0]))
    with pytest.raises(pullback.errors.CotangentError, match="complex number"):
        back(2j)
    with pytest.raises(pullback.errors.TangentError, match="complex number"):
        pullback.jvp(lambda s: s ** 2, (3.0,), (1j,))
    np.testing.assert_allclose(back(2.0)[0], [4.0, 8.0])
    _, back = pullback.vjp(lambda z: np.sum(z ** 2), np.array([1.0 + 1j]))
    np.testing.assert_allclose(back(2j)[0], [4j - 4.0])     # complex output: kept


# ------------------------------------ jit's results


def test_jit_returns_a_result_that_is_not_an_array_as_it_is():
    """A string in a result (an aux's tag) came back from jit as a 0-d NumPy array (`np.copy`
    of the constant), a NumPy scalar as a 0-d array; eagerly they are themselves. Constant
    arrays are still copied: writing into a result changes no later one."""
    x = np.linspace(0.1, 1.2, 4)

    def f(a):
        return np.sum(a ** 2), {"tag": "run-1", "scale": np.float64(3.0), "grid": np.arange(3.0),
                                "none": None, "n": 3}
    jitted = pullback.jit(pullback.grad(f, has_aux=True))
    for _ in range(3):                       # staged, compiled, and with the fused tier
        gradient, aux = jitted(x)
        assert aux["tag"] == "run-1" and type(aux["tag"]) is str
        assert type(aux["scale"]) is np.float64 and aux["none"] is None and aux["n"] == 3
        np.testing.assert_array_equal(aux["grid"], np.arange(3.0))
        aux["grid"][0] = 9.0
    np.testing.assert_allclose(gradient, 2 * x)


# ------------------------------------ Dask


def test_jit_on_dask_adds_a_cotangent_into_a_folded_numpy_constant():
    """jit(grad(f)) of `sum(x[::2] * W) + sum(x[1::2] ** 2)` folds x[::2]'s cotangent into a
    NumPy constant and adds x[1::2]'s, a Dask array, into it: `scatter_add` wrote a Dask
    array into a NumPy copy and raised ArrayLibraryError where eager grad works."""
    da = pytest.importorskip("dask.array")
    W = np.linspace(-1.0, 1.0, 6)

    def f(x):
        return np.sum(x[::2] * W) + np.sum(x[1::2] ** 2)
    x = np.arange(1.0, 12.0)
    gradient = pullback.jit(pullback.grad(f))(da.from_array(x, chunks=4))
    assert isinstance(gradient, da.Array)
    np.testing.assert_allclose(gradient.compute(), pullback.grad(f)(x))


def test_a_dask_array_of_unknown_shape_is_refused_by_name():
    """After a boolean index a Dask array's chunk sizes are NaN: grad, jvp and jit raised
    a bare ValueError or TypeError from deep inside."""
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.linspace(0.1, 1.3, 7), chunks=3)
    unknown = x[x > 0.5]

    def f(z):
        return np.sum(np.sin(z) * z)
    for run in (lambda: pullback.grad(f)(unknown), lambda: pullback.jvp(np.sin, (unknown,), (x,)),
                lambda: pullback.vjp(np.sin, unknown)):
        with pytest.raises(pullback.errors.NonDifferentiableInputError,
                           match=r"unknown shape \(nan,\).*compute_chunk_sizes"):
            run()
    with pytest.raises(pullback.errors.ArrayLibraryError, match="compute_chunk_sizes"):
        pullback.jit(pullback.grad(f))(unknown)
    unknown.compute_chunk_sizes()
    np.testing.assert_allclose(pullback.grad(f)(unknown).compute(),
                               pullback.grad(f)(unknown.compute()))


@pytest.mark.parametrize("jacobian", ["jacfwd", "jacrev"])
def test_a_jacobian_of_dask_arrays_in_chunks_of_rows(jacobian):
    """`jacfwd(f, chunk_size=2)` of a Dask array made its seeds by assigning ones at two
    index arrays, which Dask refuses (a bare NotImplementedError); the seeds are shifted
    identities, made without assignment, equal for every chunk size and pytree."""
    da = pytest.importorskip("dask.array")
    x = np.linspace(0.1, 1.3, 7)
    for chunk_size in (1, 2, 3, 7):
        J = getattr(pullback, jacobian)(np.sin, chunk_size=chunk_size)(da.from_array(x, chunks=3))
        assert isinstance(J, da.Array)
        np.testing.assert_allclose(J.compute(), np.diag(np.cos(x)))
    tree = {"a": np.linspace(0.1, 1.0, 3), "b": np.linspace(0.2, 2.0, 4).reshape(2, 2)}

    def g(d):
        return np.concatenate([np.sin(d["a"]), np.ravel(d["b"] ** 2)])
    whole = pullback.jacfwd(g)(tree)
    for chunk_size in (1, 2, 5, 7):
        parts = getattr(pullback, jacobian)(g, chunk_size=chunk_size)(tree)
        for key in whole:
            np.testing.assert_allclose(parts[key], whole[key], rtol=1e-14)


# ------------------------------------ Jacobians' structured basis


def test_a_jacobian_applies_shared_factors_as_the_function_does_at_extreme_scales():
    """jacfwd's basis keeps a batch times factors it shares apart and multiplied the factors
    together first: `(W @ x) * 1e200 * 1e200` with W ~ 1e-250 gave an infinite Jacobian
    (1e200 * 1e200 overflows; the function's own order stays near 1e150), its underflowing
    twin zeros, and the Hessians of a loss built on it inf or NaN in every mode. Factors
    are combined only where that stays in range; each Jacobian equals the loop of
    pushforwards (jacfwd) or of pullbacks (jacrev) it batches."""
    x = np.array([1.0, 2.0])
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    for scale, factor in ((1e-250, 1e200), (1e250, 1e-200)):
        W = matrix * scale

        def f(x):
            return (W @ x) * factor * factor
        with np.errstate(all="ignore"):
            pushed = np.stack([pullback.pushforward(f, (x,), (e,))[1] for e in np.eye(2)], 1)
            pulled = np.stack([pullback.vjp(f, x)[1](e)[0] for e in np.eye(2)])
            np.testing.assert_allclose(pushed, matrix * (scale * factor * factor), rtol=1e-14)
            np.testing.assert_array_equal(pullback.jacfwd(f)(x), pushed)
            # (reverse mode's sweep multiplies the factors first itself: inf or 0 there)
            np.testing.assert_array_equal(pullback.jacrev(f)(x), pulled)
    W = matrix * 1e-250

    def loss(x):                        # 1e-300 |W' x|^2 with W' = W 1e400: Hessian 2e-300 W'^T W'
        return np.sum(((W @ x) * 1e200 * 1e200) ** 2) * 1e-300
    for mode in _MODES:
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(pullback.hessian(loss, mode=mode)(x),
                                       2.0 * matrix.T @ matrix, rtol=1e-12)


def test_hvp_of_a_complex_output_says_what_to_use_instead():
    """hvp of a complex-valued f raised grad's advice, `pass holomorphic=True`, which hvp
    does not take (a bare TypeError when followed); the message names what does."""
    def f(z):
        return np.sum(np.exp(z) * z ** 2)
    z = np.array([0.3 + 0.4j, -0.5 + 0.2j])
    with pytest.raises(pullback.errors.HolomorphicError,
                       match=r"hessian\(f, holomorphic=True\)\(z\) @ v"):
        pullback.hvp(f, z, np.ones(2, complex))
    expected = pullback.hessian(f, holomorphic=True)(z) @ np.ones(2)
    step = 1e-6                                  # f'' along 1, holomorphic: any direction
    gradient = pullback.grad(f, holomorphic=True)
    np.testing.assert_allclose(expected, (gradient(z + step) - gradient(z - step)) / (2 * step),
                               rtol=1e-8)


# ------------------------------------ threads


def test_staging_while_another_thread_draws_from_numpys_global_state_says_so():
    """A draw by another thread from np.random's global state while jit staged a function
    that draws nothing read as the function's: a StagedRandomnessError naming no line, on
    every call. Whose draw it was cannot be told (NumPy's draws are invisible to Python's
    hooks), so the error now says that another thread draws, and what to do; with no other
    thread drawing, the same function stages."""
    import threading
    stop, started = threading.Event(), threading.Event()

    def drawer():
        started.set()
        while not stop.is_set():
            np.random.rand(10)
    thread = threading.Thread(target=drawer)
    thread.start()
    started.wait()
    try:
        with pytest.raises(pullback.errors.StagedRandomnessError,
                           match="another thread draws from it.*default_rng"):
            for n in range(2, 12):                 # (a draw lands within one staging, surely)
                pullback.jit(lambda x: np.sum(np.sin(x) ** 2))(np.linspace(0.0, 1.0, n))
    finally:
        stop.set()
        thread.join()
    x = np.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(pullback.jit(lambda x: np.sum(np.sin(x) ** 2))(x),
                               np.sum(np.sin(x) ** 2))


def test_jacobian_auto_gives_one_dtype_whichever_mode_the_shapes_choose():
    """jacfwd's blocks have the output's dtype and jacrev's the input's (as JAX's), so for
    a float32 input and a float64 output `jacobian` (mode "auto") gave float32 for two
    outputs and float64 for nine; its blocks now have the promotion of both."""
    W = np.array([0.5, -1.0, 2.0])
    x = np.float32([0.3, -0.8, 1.1])
    for f in (lambda x: np.sin(x)[:2] * W[:2], lambda x: np.outer(np.sin(x), W).ravel()):
        J = pullback.jacobian(f)(x)
        assert J.dtype == np.float64
        np.testing.assert_allclose(J, pullback.jacfwd(f)(x), rtol=1e-6)
    tree = {"a": np.float32([0.3, 0.4]), "b": np.array([1.0])}
    J = pullback.jacobian(lambda t: np.concatenate([np.sin(t["a"]), t["b"] ** 2]))(tree)
    assert J["a"].dtype == J["b"].dtype == np.float64
    assert pullback.jacobian(np.sin)(x).dtype == np.float32


# ------------------------------------ derivative rules far out


def _mills_series(y, terms=10):
    """For y >> 1: (s, 1 - s) of s = sum (-1)^k (2k-1)!! / y^(2k), summed stably, where
    Phi(-y) = phi(y) s / y."""
    term, tail = 1.0, 0.0
    for k in range(1, terms):
        term *= -(2 * k - 1) / (y * y)
        tail += term
    return 1.0 + tail, -tail


@pytest.mark.parametrize("x", [-30.0, -1e3, -1e5, -1e7])
def test_log_ndtr_derivatives_far_below_zero(x):
    """log_ndtr'(x) was exp(-x^2/2 - log(2 pi)/2 - log_ndtr(x)), whose terms of size x^2/2
    cancel: 1.0069e7 for 1e7 at x = -1e7, and the second derivative -6367 for -1 at
    -1e5 (-1.0059 at -30 in float32). Now sqrt(2/pi) / erfcx(-x/sqrt(2)), erfcx's own
    derivative by its asymptotic series far out: every mode within rounding."""
    from pullback.scipy import special
    s, one_minus_s = _mills_series(-x)
    first = -x / s                                     # phi(x) / Phi(x)
    second = -first * -x * one_minus_s / s            # -d1 (x + d1), x + d1 = -x (1 - s) / s
    np.testing.assert_allclose(pullback.grad(special.log_ndtr)(x), first, rtol=1e-14)
    for mode in _MODES:
        np.testing.assert_allclose(pullback.hessian(special.log_ndtr, mode=mode)(x), second,
                                   rtol=1e-10)
    x32 = np.float32(x)
    if -x <= 1e3:
        np.testing.assert_allclose(pullback.grad(special.log_ndtr)(x32), first, rtol=1e-6)
        np.testing.assert_allclose(pullback.hessian(special.log_ndtr)(x32), second, rtol=1e-5)


@pytest.mark.parametrize("x", [60.0, 1e3, 1e5, 1e8])
def test_erfcx_derivatives_far_out(x):
    """erfcx'(x) = 2 x erfcx(x) - 2/sqrt(pi) cancels for large x: 0 at 1e8 for -5.6e-17,
    the second derivative 1.78e-11 for 1.13e-15 at 1e5."""
    from pullback.scipy import special
    u = 1.0 / (x * x)                            # the derivatives' series in 1/x^2
    first = -(u / np.sqrt(np.pi)) * (1 - 1.5 * u + 3.75 * u ** 2 - 13.125 * u ** 3)
    second = (2 * u / (x * np.sqrt(np.pi))) * (1 - 3 * u + 11.25 * u ** 2 - 52.5 * u ** 3)
    np.testing.assert_allclose(pullback.grad(special.erfcx)(x), first, rtol=1e-12)
    for mode in _MODES:
        np.testing.assert_allclose(pullback.hessian(special.erfcx, mode=mode)(x), second,
                                   rtol=1e-10)


def test_arctan_arcsinh_arctan2_and_rel_entr_derivatives_at_extreme_magnitudes():
    """Sums of squares overflowed or underflowed inside the rules: arcsinh'(1e160) and
    arctan'(1e155) were 0 (1e-160, 1e-310), arctan''(1e100) 0 for -2e-300, arctan2's
    gradient 0 at (1e200, 1e200) and inf at (1e-200, 1e-200); rel_entr's x-derivative
    log(x / y) + 1 was -inf at (1e-300, 1e300) for -1380.55."""
    from pullback.scipy import special
    for x, expected in ((1e160, 1e-160), (1e300, 1e-300), (-1e200, 1e-200), (3.0, 10 ** -0.5)):
        np.testing.assert_allclose(pullback.grad(np.arcsinh)(x), expected, rtol=1e-14)
    np.testing.assert_allclose(pullback.grad(np.arcsinh)(np.float32(1e20)), 1e-20, rtol=1e-6)
    for x in (1e155, 1e100, -1e80, 3.0, 0.5):
        np.testing.assert_allclose(pullback.grad(np.arctan)(x), 1 / (1 + x * x) if abs(x) < 1e150
                                   else 1 / x / x, rtol=1e-14)
        for mode in _MODES:
            if abs(x) < 1e150:
                np.testing.assert_allclose(pullback.hessian(np.arctan, mode=mode)(x),
                                           -2 * x / (1 + x * x) ** 2 if abs(x) < 10
                                           else -2 / x / x / x, rtol=1e-13)
    for x, y in ((1e200, 1e200), (1e-200, 1e-200), (3.0, 4.0)):
        h = np.hypot(x, y)
        np.testing.assert_allclose(pullback.grad(lambda v: np.arctan2(v[0], v[1]))(
            np.array([x, y])), [y / h / h, -x / h / h], rtol=1e-14)
    np.testing.assert_allclose(pullback.grad(special.rel_entr)(1e-300, 1e300),
                               np.log(1e-300) - np.log(1e300) + 1.0, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_expm1_and_expit_slopes_where_their_values_round_to_a_constant(dtype):
    """expm1'(x) was out + 1 and expit'(x) out (1 - out): once expm1 rounds to -1 (x << 0)
    or expit to 1 (x >> 0) they were 0 (4e-18 at x = -40 and 40), and near there off by
    1e-4 relatively (expm1'(-30): 9.3592e-14 for 9.3576e-14; float32 expit'(10))."""
    import scipy.special
    from pullback.scipy import special
    for x in (-40.0, -30.0, -20.0, -1.0, 0.5):
        x = dtype(x)
        np.testing.assert_allclose(pullback.grad(np.expm1)(x), np.exp(x), rtol=1e-6)
        np.testing.assert_allclose(pullback.hessian(np.expm1)(x), np.exp(x), rtol=1e-6)
        p = np.float64(-x)                             # expit at -x: large where x << 0
        up, down = scipy.special.expit(p), scipy.special.expit(-p)
        slope = up * down                              # expit' = expit(p) expit(-p), no rounding
        np.testing.assert_allclose(pullback.grad(special.expit)(-x), slope, rtol=1e-6)
        for mode in _MODES:
            np.testing.assert_allclose(pullback.hessian(special.expit, mode=mode)(-x),
                                       slope * (down - up), rtol=1e-5)


def test_i1e_slope_is_finite_where_scipys_ive_of_order_two_is_nan():
    """i1e' read SciPy's ive(2, x), NaN from x ~ 5e9 where i0e and i1e are finite: the
    slope (and i0e's second derivative) were NaN. Now by the recurrence ive(2, x) =
    i0e(x) - 2 i1e(x) / x (the difference loses about x * 1e-16 relatively far out)."""
    from pullback.scipy import special
    for x in (1e10, -1e10, 5e9):
        true = -0.5 / abs(x) * special.i1e(abs(x))     # (even; 1 + O(1/x) from the series)
        np.testing.assert_allclose(pullback.grad(special.i1e)(x), true, rtol=1e-5)
        assert np.isfinite(pullback.hessian(special.i0e)(x))
    for x in (0.3, -2.0, 40.0):
        step = 1e-6 * max(1.0, abs(x))
        np.testing.assert_allclose(
            pullback.grad(special.i1e)(x),
            (special.i1e(x + step) - special.i1e(x - step)) / (2 * step), rtol=1e-8)
    assert pullback.grad(special.i1e)(0.0) == 0.5
    np.testing.assert_allclose(pullback.grad(special.i1e)(1e-300), 0.5, rtol=1e-15)


def test_logaddexp_second_derivatives_where_one_argument_dominates():
    """logaddexp's partials exp(x - out) have the derivative p (1 - p), 0 once p rounds to
    1: its Hessian was 0 for 4e-18 at (40, 0) (logaddexp2's 0.2% off at (40, 0), 35% in
    float32 at (20, 0)). The partials are expit(x - y) (logaddexp2: of ln2 (x - y))."""
    import scipy.special
    for f, scale in ((np.logaddexp, 1.0), (np.logaddexp2, np.log(2.0))):
        for point in ([40.0, 0.0], [1000.0, 1040.0], [0.5, -0.25]):
            d = scale * (point[0] - point[1])
            curvature = scale * scipy.special.expit(d) * scipy.special.expit(-d)
            expected = curvature * np.array([[1.0, -1.0], [-1.0, 1.0]])
            for mode in _MODES:
                np.testing.assert_allclose(
                    pullback.hessian(lambda v: f(v[0], v[1]), mode=mode)(np.array(point)),
                    expected, rtol=1e-12)
    # an infinite argument: the slope toward it is 1 (exp(inf - inf) gave NaN)
    np.testing.assert_array_equal(
        pullback.grad(lambda v: np.logaddexp(v[0], v[1]))(np.array([np.inf, 3.0])), [1.0, 0.0])
