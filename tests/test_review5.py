"""Fifth correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet at non-smooth and boundary points, in scipy.special and
scipy.linalg, with complex numbers and in float32. Each test is named after the defect it
pins down."""
import functools
import warnings

import numpy as np
import pytest

import pullback
from helpers import raises
from pullback.core.primitive import REGISTRY
from pullback.errors import CustomRuleError
from pullback.operators import HESSIAN_MODES
from pullback.primitives.special import no_closed_form
from test_review2 import PARAMETERS

# Points where functions and their rules are often special: zeros, integers (gamma's poles,
# removable singularities at 1), tiny and large magnitudes.
SPECIAL_POINTS = np.array([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -5.0, 1e-8, -1e-8,
                           30.0, -30.0, 0.25, 1.5, -1.5, 0.75, 0.999, 10.0])


def _smooth_differences(f, x):
    """Central first and second differences of f at x, and where f is smooth there (finite,
    the one-sided slopes agree at two step sizes)."""
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    f0, right, left = f(x), f(x + h), f(x - h)
    slopes = [((f(x + k * h) - f0) / (k * h), (f0 - f(x - k * h)) / (k * h)) for k in (1, 10)]
    close = [np.isclose(a, b, rtol=1e-3, atol=1e-6) for a, b in
             (slopes[0], slopes[1], (slopes[0][0], slopes[1][0]))]
    smooth = np.isfinite(f0) & np.isfinite(right) & np.isfinite(left)
    for agree in close:
        smooth &= agree
    wide = 1e-3 * np.maximum(1.0, np.abs(x))
    second = (f(x + wide) - 2 * f0 + f(x - wide)) / wide ** 2
    one_sided = [(f(x + 2 * s) - 2 * f(x + s) + f0) / wide ** 2 for s in (wide, -wide)]
    smooth_twice = smooth & np.isfinite(second)
    for again in one_sided:
        smooth_twice &= np.isclose(second, again, rtol=1e-2, atol=1e-4)
    return (slopes[0][0] + slopes[0][1]) / 2, smooth, second, smooth_twice


ONE_ARGUMENT = sorted(name for name, p in REGISTRY.items()
                      if p.family == "elementwise" and p.differentiable and p.domain
                      and len(p.domain) == 1 and not isinstance(p.domain[0][0], str)
                      and not isinstance((p.partials or (None,))[0], no_closed_form))


@pytest.mark.parametrize("name", ONE_ARGUMENT)
def test_one_argument_primitives_have_finite_differences_derivatives_where_they_are_smooth(name):
    """Every one-argument elementwise primitive, at the special points where its function is
    smooth: its first and second derivatives (forward, reverse, and the Hessian's diagonal)
    are the finite differences'. rgamma's was -rgamma(x) digamma(x), 0 * inf = NaN at
    gamma's poles 0, -1, -2, ... (1/gamma is entire: the derivative there is (-1)^n n!);
    spence's log(x) / (1 - x) was 0 / 0 = NaN at x = 1, where spence is smooth (-1)."""
    prim = functools.partial(REGISTRY[name], **PARAMETERS.get(name, {}))
    x = SPECIAL_POINTS.copy()
    with np.errstate(all="ignore"):
        first, smooth, second, smooth_twice = _smooth_differences(
            lambda t: np.asarray(prim(t), dtype=np.float64), x)
        forward = np.diagonal(pullback.jacfwd(prim)(x))
        reverse = np.diagonal(pullback.jacrev(prim)(x))
        hessian = np.diagonal(pullback.hessian(lambda t: np.sum(prim(t)))(x))
    for got in (forward, reverse):
        wrong = smooth & ~np.isclose(got, first, rtol=1e-4, atol=1e-6)
        assert not wrong.any(), (x[wrong], got[wrong], first[wrong])
    wrong = smooth_twice & ~np.isclose(hessian, second, rtol=1e-3, atol=1e-4)
    assert not wrong.any(), (x[wrong], hessian[wrong], second[wrong])


def test_rgamma_derivatives_at_gammas_poles_in_every_mode():
    """1/gamma at 0, -1, -2, -5: the derivatives (-1)^n n!, and the second ones (from a
    polynomial fit of SciPy's values) in every Hessian mode and under jit."""
    from pullback.scipy import special
    x = np.array([0.0, -1.0, -2.0, -5.0])
    f = lambda t: np.sum(special.rgamma(t))
    expected = np.array([1.0, -1.0, 2.0, -120.0])
    for gradient in (pullback.grad(f), pullback.jit(pullback.grad(f)),
                     lambda t: np.sum(pullback.jacfwd(special.rgamma)(t), axis=0)):
        np.testing.assert_allclose(gradient(x), expected, rtol=1e-12)
    second = np.array([1.1544313298030657, 0.8455686701969343, -3.691137340393931,
                       409.46824042366])
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(np.diagonal(pullback.hessian(f, mode=mode)(x)), second,
                                   rtol=1e-9)
    np.testing.assert_allclose(np.diagonal(pullback.jit(pullback.hessian(f))(x)), second,
                               rtol=1e-9)


def test_spence_derivatives_at_one_and_near_it_also_for_complex_values():
    """spence'(1) = -1, spence''(1) = 1/2, spence'''(1) = -2/3 (log(x) / (1 - x) =
    -sum (1 - x)^k / (k + 1)); near 1 the second derivative keeps its digits (the quotient
    rule's terms cancel there); complex values near 1 follow the same series."""
    from pullback.scipy import special
    f = lambda t: special.spence(t)
    d1 = pullback.jacfwd(f)
    d2 = lambda t: np.diagonal(pullback.jacrev(lambda s: np.diagonal(d1(s)))(t))
    d3 = lambda t: np.diagonal(pullback.jacfwd(d2)(t))
    x = np.array([1.0])
    assert np.diagonal(d1(x))[0] == -1.0
    assert d2(x)[0] == pytest.approx(0.5, rel=1e-14)
    assert d3(x)[0] == pytest.approx(-2 / 3, rel=1e-14)
    near = np.array([1.0 + 1e-6])
    u = 1.0 - near
    assert d2(near)[0] == pytest.approx(0.5 + 2 * u[0] / 3, rel=1e-12)
    z = np.array([1.0 + 0.0j, 1.02 - 0.05j, 0.5 + 0.3j])
    g = pullback.grad(lambda t: np.sum(np.real(special.spence(t))))(z)
    with np.errstate(all="ignore"):
        expected = np.where(z == 1.0, -1.0, np.log(z) / (1.0 - z))
    np.testing.assert_allclose(g, expected, rtol=1e-13)
    pullback.testing.check_grads(f, (np.array([1.0, 0.7, 1.3, 1.001]),), order=3)


@pytest.mark.parametrize("weights", [None, "fweights", "aweights"])
def test_cov_with_no_degrees_of_freedom_left_is_numpys_inf_when_traced(weights):
    """np.cov divides by max(N - ddof, 0) (inf where ddof >= N, with a RuntimeWarning);
    traced, it divided by N - ddof: cov([1, 2, 3, 4], ddof=5) was -5 under grad and jit
    (NumPy: inf) and its gradient the finite [3, 1, -1, -3] of that wrong value."""
    x = np.arange(1.0, 5.0)
    kwargs = {} if weights is None else {weights: np.array([1, 1, 2, 1])}
    f = lambda a: np.cov(a, ddof=6, **kwargs)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.cov(x, ddof=6, **kwargs) == np.inf
        value, back = pullback.vjp(f, x)
        assert value == np.inf
        assert pullback.jit(f)(x) == np.inf
        assert not np.isfinite(back(1.0)).any()
        assert not np.isfinite(pullback.jacfwd(f)(x)).any()
    if weights is None:
        with pytest.warns(RuntimeWarning, match="Degrees of freedom"), np.errstate(all="ignore"):
            pullback.grad(f)(x)


QUANTILE_METHODS = ["linear", "midpoint", "averaged_inverted_cdf", "hazen", "weibull",
                    "median_unbiased", "normal_unbiased", "interpolated_inverted_cdf",
                    "nearest", "lower", "higher", "inverted_cdf", "closest_observation"]
WITH_INFINITIES = [np.array([1.0, 2.0, np.inf]), np.array([-np.inf, 1.0, 2.0, np.inf]),
                   np.array([np.inf, np.inf, 1.0]), np.array([-np.inf, -np.inf, 0.0]),
                   np.array([1.0, np.nan, 2.0, np.inf])]


def _traced_values(f, x):
    """f(x) under reverse mode, forward mode and jit."""
    return [pullback.vjp(f, x)[0], pullback.jvp(f, (x,), (np.ones_like(x),))[0],
            pullback.jit(f)(x)]


@pytest.mark.parametrize("x", WITH_INFINITIES, ids=str)
def test_medians_and_quantiles_of_infinite_values_are_numpys_when_traced(x):
    """Traced, a median or quantile interpolated as lower + (upper - lower) * weight: the
    median of [1, 2, inf] was NaN (2 + inf * 0; NumPy 2), of [1, inf, inf] NaN (NumPy inf),
    nanmedian([1, nan, 2, inf]) NaN (NumPy 2), quantile 0.25 of [-inf, -2, -1] NaN (NumPy
    -inf, lerping from the nearer neighbour). Every method, at every q, and the medians."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        functions = [np.median, np.nanmedian, lambda a: np.median(-a)] + [
            functools.partial(quantile, q=q, method=method)
            for quantile in (np.quantile, np.nanquantile) for method in QUANTILE_METHODS
            for q in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)]
        for f in functions:
            expected = f(x)
            for got in _traced_values(f, x):
                np.testing.assert_array_equal(got, expected)


def test_nanvar_without_degrees_of_freedom_is_nan_and_inf_minus_inf_stays_nan():
    """np.nanvar is NaN where the degrees of freedom are <= 0 (np.var: inf); traced it
    divided by them: nanvar([1, 2, 3], ddof=4) was -2 (a negative variance), with ddof=3 inf.
    And NaN-ignoring replaced NaNs of x - mean, so inf - inf = NaN counted as 0:
    nanvar([1, inf, 2]) was inf (NumPy NaN). Now NaN, with NaN derivatives."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for x, ddof in [(np.array([1.0, 2.0, 3.0]), 4), (np.array([1.0, 2.0, 3.0]), 3),
                        (np.array([1.0, np.nan, 2.0, 3.0]), 3), (np.array([1.0, np.inf, 2.0]), 0)]:
            for f in (functools.partial(np.nanvar, ddof=ddof),
                      functools.partial(np.nanstd, ddof=ddof)):
                expected = f(x)
                assert np.isnan(expected)
                for got in _traced_values(f, x):
                    assert np.isnan(got), (x, ddof, got)
            assert np.isnan(pullback.grad(functools.partial(np.nanvar, ddof=ddof))(x)[0])
        x = np.array([1.0, np.nan, 2.0, 3.0], np.float32)
        for got in _traced_values(functools.partial(np.nanvar, ddof=2), x):
            assert got == np.nanvar(x, ddof=2) and got.dtype == np.float32


def test_hessian_blocks_of_mixed_precision_inputs_have_one_dtype_in_every_mode():
    """H[i][j] for a float32 x_i and a float64 x_j had the row's dtype with an outer forward
    pass and the column's with an outer reverse one: the float32 x and float64 y block was
    float32 in forward-over-reverse, float64 in reverse-over-reverse (and the other way round
    for H[1][0]), so `mode="auto"` under jit picked a dtype by cost. Now NumPy's promotion of
    the two inputs' dtypes, in every mode, eagerly and under jit, for pytrees too."""
    x, y = np.array([1.0, 2.0], np.float32), np.array([0.5, 1.5, 2.5])
    f = lambda a, b: np.sum(np.sin(a)) * np.sum(b ** 2) + np.sum(a ** 2)
    expected = [[np.float32, np.float64], [np.float64, np.float64]]
    for mode in HESSIAN_MODES + ("auto",):
        for hessian in (pullback.hessian(f, argnums=(0, 1), mode=mode),
                        pullback.jit(pullback.hessian(f, argnums=(0, 1), mode=mode))):
            h = hessian(x, y)
            assert [[block.dtype for block in row] for row in h] == expected, mode
        tree = pullback.hessian(lambda d: f(d["a"], d["b"]), mode=mode)({"a": x, "b": y})
        assert tree["a"]["b"].dtype == tree["b"]["a"].dtype == np.float64
        assert tree["a"]["a"].dtype == np.float32
    h, aux = pullback.hessian(lambda a, b: (f(a, b), "aux"), argnums=(0, 1), has_aux=True,
                              mode="forward-over-reverse")(x, y)
    assert h[0][1].dtype == np.float64 and aux == "aux"


# Functions at their ties and kinks, with the derivative README's "Singular points" states.
AT_KINKS = [
    ("max", lambda x: np.max(x, keepdims=True), [1.0, 1.0, 0.5], [[0.5, 0.5, 0.0]]),
    ("maximum", lambda x: np.maximum(x[:1], x[1:2]), [1.0, 1.0, 0.5], [[0.5, 0.5, 0.0]]),
    ("minimum", lambda x: np.minimum(x[:1], x[1:2]), [1.0, 1.0, 0.5], [[0.5, 0.5, 0.0]]),
    ("fmax", lambda x: np.fmax(x[:1], x[1:2]), [1.0, 1.0, 0.5], [[0.5, 0.5, 0.0]]),
    ("relu", lambda x: np.maximum(x, 0.0), [0.0, 2.0], [[0.5, 0.0], [0.0, 1.0]]),
    ("clip", lambda x: np.clip(x, 0.0, 1.0), [0.0, 1.0], [[0.5, 0.0], [0.0, 0.5]]),
    ("abs", np.abs, [0.0, -2.0], [[0.0, 0.0], [0.0, -1.0]]),
    ("sign", np.sign, [0.0, 2.0], [[0.0, 0.0], [0.0, 0.0]]),
    ("floor", np.floor, [1.0, 1.5], [[0.0, 0.0], [0.0, 0.0]]),
    ("round", np.round, [0.5, 2.5], [[0.0, 0.0], [0.0, 0.0]]),
    ("sort", np.sort, [1.0, 1.0, 0.5], [[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]),
    ("median", lambda x: np.median(x, keepdims=True), [1.0, 1.0, 0.5], [[1.0, 0.0, 0.0]]),
    ("argmax", lambda x: x[np.argmax(x)][None], [1.0, 1.0, 0.5], [[1.0, 0.0, 0.0]]),
    ("interp", lambda x: np.interp(x, [0.0, 1.0, 2.0], [0.0, 1.0, 3.0]), [1.0, 0.0, 2.0],
     [[2.0, 0, 0], [0, 1.0, 0], [0, 0, 0.0]]),
    ("where", lambda x: np.where(x >= 1.0, 2 * x, 3 * x), [1.0, 0.0], [[2.0, 0.0], [0.0, 3.0]]),
    ("select", lambda x: np.select([x < 1, x >= 1], [x ** 2, 3 * x]), [1.0, 0.5],
     [[3.0, 0.0], [0.0, 1.0]]),
    ("norm 1", lambda x: np.linalg.norm(x, 1, keepdims=True), [0.0, -1.0], [[0.0, -1.0]]),
    ("cumprod", np.cumprod, [2.0, 0.0, 3.0], [[1.0, 0, 0], [0, 2.0, 0], [0, 6.0, 0]]),
    ("prod", lambda x: np.prod(x, keepdims=True), [2.0, 0.0, 0.0], [[0.0, 0.0, 0.0]]),
]


@pytest.mark.parametrize("name, f, x, expected", AT_KINKS, ids=[c[0] for c in AT_KINKS])
def test_every_mode_follows_the_documented_convention_at_ties_and_kinks(name, f, x, expected):
    """At ties and kinks each mode could pick its own one-sided derivative; all follow
    README's conventions: jacfwd, jacrev, under jit and vmap, and (for a scalar made from
    f) the four Hessian modes, hvp and their vmap agree."""
    x = np.array(x)
    jacobians = [pullback.jacfwd(f)(x), pullback.jacrev(f)(x), pullback.jit(pullback.jacfwd(f))(x),
                 pullback.jit(pullback.jacrev(f))(x), pullback.vmap(pullback.jacrev(f))(x[None])[0]]
    for jacobian in jacobians:
        np.testing.assert_array_equal(jacobian, np.array(expected, dtype=float))
    scalar = lambda t: np.sum(np.arange(1.0, 1 + np.size(f(x))) * (f(t) ** 2 + f(t)))
    hessians = [pullback.hessian(scalar, mode=mode)(x) for mode in HESSIAN_MODES]
    hessians.append(pullback.jit(pullback.hessian(scalar))(x))
    hessians.append(pullback.vmap(pullback.hessian(scalar))(x[None])[0])
    for hessian in hessians[1:]:
        np.testing.assert_allclose(hessian, hessians[0], rtol=1e-12)
    v = np.linspace(0.5, 1.5, x.size)
    np.testing.assert_allclose(pullback.hvp(scalar, x, v), hessians[0] @ v, rtol=1e-12)


def test_custom_jvp_rule_with_a_constant_tangent_term_is_refused_in_reverse_mode():
    """A jvp rule whose tangents are not linear in the input tangents (here cos(x) t + 1)
    gave jacfwd cos(x) + 1 in every entry but jacrev diag(cos(x)): reverse mode transposes
    the map at zero tangents, where the constant is invisible. Its tangents at zero are now
    checked (where known), and a rule with a NaN there (0 times an infinite partial) still
    runs."""
    @pullback.custom_jvp
    def affine(a):
        return np.sin(a)
    affine.defjvp(lambda p, t: (np.sin(p[0]), np.cos(p[0]) * t[0] + 1.0))
    x = np.array([0.5, 1.0])
    with raises(CustomRuleError, "nonzero tangents for zero input tangents"):
        pullback.jacrev(affine)(x)
    with raises(CustomRuleError, "linear in the input tangents"):
        pullback.jit(pullback.grad(lambda a: np.sum(affine(a))))(x)

    @pullback.custom_jvp
    def root(a):
        return np.sqrt(a)
    root.defjvp(lambda p, t: (np.sqrt(p[0]), t[0] / (2 * np.sqrt(p[0]))))
    with np.errstate(all="ignore"):
        gradient = pullback.grad(lambda a: np.sum(root(a)))(np.array([0.0, 4.0]))
    assert gradient[1] == 0.25
