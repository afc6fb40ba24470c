"""Second correctness review: derivatives a scientist can trust, in every mode (forward,
reverse, the four Hessian modes, jit, vmap) and at the awkward points (singular points of a
derivative, empty axes, one-element statistics, Python zeros, complex infinities).

Items A-E were left open by the first review (tests/test_review.py); the numbered items
are new defects."""
import warnings

import numpy as np
import pytest

import pullback
from helpers import raises
from pullback.core.primitive import REGISTRY
from pullback.errors import LoopTypeError
from pullback.operators import HESSIAN_MODES
from test_review import _elementwise_with_scalar_rules, _fused_outputs, _grid


def _same(got, expected):
    """Equal values (NaN equal to NaN, rounding aside), shapes and dtypes."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)


def _all_modes(f, x):
    """f's gradient eagerly (reverse and forward), under jit, and its Hessian in every mode."""
    with np.errstate(all="ignore"):
        gradients = {"grad": pullback.grad(f)(x), "jacfwd": pullback.jacfwd(f)(x),
                     "jit grad": pullback.jit(pullback.grad(f))(x)}
        hessians = {mode: pullback.hessian(f, mode=mode)(x) for mode in HESSIAN_MODES}
    return gradients, hessians


# ------------------------------------ A: np.where's untaken branch in reverse mode


def _sqrt_where(x):
    return np.sum(np.where(x > 0, np.sqrt(x), 0.0))


def _sqrt_double_where(x):
    return np.sum(np.where(x > 0, np.sqrt(np.where(x > 0, x, 1.0)), 0.0))


def test_itemA_untaken_where_branch_is_nan_in_reverse_mode_and_the_double_where_agrees():
    """Documented (README, "Singular points"), as in JAX: reverse mode multiplies where's
    zero cotangent of the untaken branch by sqrt's derivative there (inf at 0, NaN below),
    so the gradient of where(x > 0, sqrt(x), 0) is NaN at x <= 0 where forward mode's zero
    tangent is selected away. No rule can tell that zero from a real one without a
    test per element in every pullback. A safe input to the untaken branch (the "double
    where") gives the derivative of the taken branch in every mode."""
    x = np.array([-1.0, 0.0, 4.0])
    gradients, _ = _all_modes(_sqrt_where, x)
    _same(gradients["jacfwd"], np.array([0.0, 0.0, 0.25]))
    _same(gradients["grad"], np.array([np.nan, np.nan, 0.25]))
    gradients, hessians = _all_modes(_sqrt_double_where, x)
    for g in gradients.values():
        _same(g, np.array([0.0, 0.0, 0.25]))
    for h in hessians.values():
        _same(h, np.diag([0.0, 0.0, -0.25 / 8.0]))


def test_itemA_a_zero_tangent_times_a_partial_that_is_not_finite_is_nan_in_forward_mode():
    """The same class, documented: along x alone at a negative x, x ** y's forward-mode
    derivative is 1 * dx + 0 * dy with dy = x ** y log x = NaN; reverse mode pulls back to
    x and y apart, and so do jacfwd and jacrev (one basis vector per column)."""
    def f(v):
        return v[0] ** v[1]
    v = np.array([-1.5, 2.0])
    with np.errstate(all="ignore"):
        assert np.isnan(pullback.jvp(f, (v,), (np.array([1.0, 0.0]),))[1])
        expected = np.array([2.0 * v[0], np.nan])
        _same(pullback.grad(f)(v), expected)
        _same(pullback.jacfwd(f)(v), expected)
        _same(pullback.jacrev(f)(v), expected)


# --------------------------- B: the four Hessian modes at singular points of a derivative

SPECIAL_POINTS = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 1e-300, np.inf, -np.inf,
                           np.nan])
PARAMETERS = {"sinc": {"order": 0}, "exprel": {"order": 0}, "polygamma": {"n": 1}}


def _unary_differentiable():
    return sorted(name for name, p in REGISTRY.items()
                  if p.family == "elementwise" and p.differentiable and p.domain
                  and len(p.domain) == 1 and not isinstance(p.domain[0], str)
                  and not isinstance(p.domain[0][0], str) and name != "riemann_zeta")


@pytest.mark.parametrize("name", _unary_differentiable())
def test_itemB_hessian_modes_agree_at_singular_points_of_every_unary_primitive(name):
    """arccosh at 1 and logit at 0 and 1: the reverse modes gave NaN where the forward modes
    gave -inf (a partial written as a product 1 / (a * b) with a = 0: its pullback
    multiplies the infinite cotangent by a). Written as quotients and sums, every mode
    gives the one-sided limit. (riemann_zeta has no derivative rule.)"""
    prim, params = REGISTRY[name], PARAMETERS.get(name, {})

    def f(x):
        return np.sum(prim(x, **params))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first, *others = [np.diag(pullback.hessian(f, mode=mode)(SPECIAL_POINTS))
                          for mode in HESSIAN_MODES]
    for other in others:
        _same(other, first)


def test_itemB_arccosh_and_logit_second_derivatives_are_the_one_sided_limits():
    h = pullback.hessian(lambda x: np.sum(np.arccosh(x)), mode="reverse-over-reverse")
    with np.errstate(all="ignore"):
        assert np.diag(h(np.array([1.0])))[0] == -np.inf
        h = pullback.hessian(lambda x: np.sum(REGISTRY["logit"](x)), mode="reverse-over-reverse")
        _same(np.diag(h(np.array([0.0, 1.0]))), np.array([-np.inf, np.inf]))
    pullback.testing.check_grads(np.arccosh, (np.array([1.5, 3.0, 1.001]),), order=2)
    pullback.testing.check_grads(REGISTRY["logit"], (np.array([0.3, 0.5, 0.02, 0.97]),),
                                 order=2)


def _binary_differentiable():
    return sorted(name for name, p in REGISTRY.items()
                  if p.family == "elementwise" and p.differentiable and p.domain
                  and len(p.domain) == 2 and not any(isinstance(d, str) or isinstance(d[0], str)
                                                     for d in p.domain))


@pytest.mark.parametrize("name", _binary_differentiable())
def test_itemB_hessian_modes_of_two_argument_primitives_differ_only_between_non_finite_values(
        name):
    """At a pole or singular point of a two-argument function one Hessian mode may give
    +-inf where another gives NaN (README, "Singular points"), never a finite number where
    another gives a different one; the exception is the documented x ** y at x <= 0 (and at
    infinities), where a zero tangent or cotangent meets the partial in y, x ** y log x
    (NaN for x < 0, taken as 0 at x == 0 while its own derivatives are not): one mode's
    finite value is another's NaN."""
    prim = REGISTRY[name]
    points = [0.0, 1.0, -1.0, 2.0, 0.5, np.inf]
    grid = np.array([(a, b) for a in points for b in points])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hessians = []
        for mode in HESSIAN_MODES:
            try:
                hessians.append(pullback.vmap(pullback.hessian(
                    lambda v: prim(v[0], v[1]), mode=mode))(grid))
            except pullback.errors.UnsupportedFunctionError:     # no derivative in one argument
                return
    first = hessians[0]
    for other in hessians[1:]:
        same = (other == first) | (np.isnan(other) & np.isnan(first)) \
            | np.isclose(other, first, rtol=1e-9, atol=1e-12)
        both_non_finite = ~np.isfinite(other) & ~np.isfinite(first)
        allowed = same | both_non_finite
        if name == "power":            # log x in the partial in y: x <= 0, x or y infinite
            allowed |= ((grid[:, 0] <= 0) | ~np.isfinite(grid).all(axis=1))[:, None, None]
        wrong = np.flatnonzero(~allowed.all(axis=(1, 2)))
        assert not wrong.size, [(grid[i], first[i], other[i]) for i in wrong[:3]]


# ------------------------------- C: the fused tier at complex infinities and NaN


@pytest.mark.parametrize("name", _elementwise_with_scalar_rules(True))
def test_itemC_fused_tier_gives_numpys_values_at_complex_infinities_and_nan(name):
    """Numba's complex trigonometric and hyperbolic functions and their inverses follow
    other rules than NumPy's where a part is infinite or NaN (arccosh(inf j) = inf + nan j,
    NumPy's inf + pi/2 j; arctan(1 + nan j) = pi/2 + nan j, NumPy's nan + nan j; cos(inf +
    inf j) = -inf + inf j, NumPy's inf + nan j): those keep NumPy's code for complex
    operands. Every fused complex primitive now matches NumPy part by part."""
    pytest.importorskip("numba")
    prim = REGISTRY[name]
    parts = [0.0, 1.0, -1.0, np.inf, -np.inf, np.nan]
    values = np.array([complex(a, b) for a in parts for b in parts])
    args = _grid(values if len(prim.domain) == 1 else values[::3], len(prim.domain))
    with np.errstate(all="ignore"):
        expected = np.asarray(prim(*args))
        got = _fused_outputs(lambda *a: prim(*a), args)
    if got is None:
        return                                   # nothing fused: NumPy's own code
    got = np.asarray(got[0])
    for part in (np.real, np.imag):
        e, g = part(expected), part(got)
        same = (e == g) | (np.isnan(e) & np.isnan(g)) | np.isclose(e, g, rtol=1e-12, atol=0)
        wrong = np.flatnonzero(~same)
        assert not wrong.size, [(tuple(a[i] for a in args), expected[i], got[i])
                                for i in wrong[:3]]


# ------------------------------------------------ D: std of one element


@pytest.mark.parametrize("name", ["std", "nanstd"])
@pytest.mark.parametrize("shape, axis", [((1,), None), ((3, 1), 1), ((1, 2), 0),
                                         ((1, 1), (0, 1))])
def test_itemD_std_of_one_element_has_zero_derivatives_in_every_mode(name, shape, axis):
    """std over one element is identically 0, but its derivative was sqrt's at 0 (inf)
    times var's (0): NaN in every mode. Over more elements that are all equal, std is not
    differentiable (a cone, as |x - y| / 2) and stays NaN, as in JAX."""
    std = getattr(np, name)

    def f(x):
        return np.sum(std(x, axis=axis) * 3.0)
    x = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)
    _same(pullback.jit(lambda x: std(x, axis=axis))(x), std(x, axis=axis))
    gradients, hessians = _all_modes(f, x)
    for g in gradients.values():
        _same(g, np.zeros(shape))
    for h in hessians.values():
        _same(h, np.zeros(shape * 2))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _same(pullback.jit(lambda x: std(x, axis=axis, ddof=1))(x), std(x, axis=axis, ddof=1))


# ------------------------------------ E: nanquantile of an empty axis with a list q


@pytest.mark.parametrize("keepdims", [False, True])
def test_itemE_nanquantile_of_an_empty_axis_keeps_qs_axis(keepdims):
    """NumPy's nanquantile of an empty array returns nanmean's answer, dropping q's axis
    (shape (3,) for q of shape (2,) over a (3, 0) array), unlike its own answer for an
    all-NaN axis, (2, 3): NumPy's inconsistency. pullback gives the all-NaN answer's NaNs,
    whose shape every q gives, and a derivative of that shape."""
    def f(x):
        return np.nanquantile(x, [0.2, 0.5], axis=1, keepdims=keepdims)
    x = np.zeros((3, 0))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = f(np.full((3, 2), np.nan))
        _same(pullback.jit(f)(x), expected)
        assert pullback.jacobian(f)(x).shape == expected.shape + x.shape


# ------------------------- 1: while_loop's reversal under vmap (silently wrong)


def _while_power(x, y0):
    """y0 * x ** 2 by a while_loop of two steps whose body reads x."""
    return pullback.while_loop(lambda c: c[1] < 2, lambda c: (c[0] * x, c[1] + 1), (y0, 0))[0]


def test_item1_while_loop_reversal_under_vmap_gives_each_example_its_cotangent():
    """vmap over s of grad_x sum(y0 x^2) with y0 = x s: the body's x is shared by the
    examples but its cotangent is each example's; the batched reversal summed it over the
    batch and gave every example the sum (no error, wrong numbers), and so did vmap of a
    reverse-over-forward hvp (sparse_hessian then raised PatternError)."""
    x, s = np.array([0.5, 2.0]), np.array([1.0, 2.0, -0.5])

    def h(x, s):
        return np.sum(_while_power(x, x * s))
    expected = np.array([3.0 * si * x ** 2 for si in s])
    _same(pullback.vmap(lambda si: pullback.grad(h)(x, si))(s), expected)
    _same(pullback.jit(pullback.vmap(lambda si: pullback.grad(h)(x, si)))(s), expected)
    _same(pullback.vmap(lambda si: pullback.jacrev(h)(x, si))(s), expected)

    def f(x):
        return np.sum(_while_power(x[::-1], x))
    basis = np.eye(2)
    hessian = pullback.hessian(f)(x)
    cross = 2.0 * (x[0] + x[1])                  # f = x0 x1^2 + x1 x0^2
    _same(hessian, np.array([[2.0 * x[1], cross], [cross, 2.0 * x[0]]]))
    _same(pullback.vmap(lambda v: pullback.hvp(f, x, v, mode="reverse-over-forward"))(basis),
          hessian)
    _same(pullback.sparse.sparse_hessian(f, x).toarray(), hessian)


def test_item1_while_loop_reversal_under_vmap_and_jit_that_it_cannot_batch_raises():
    """Where the shared value meets a carry the loop keeps shared (a tangent batched over
    one primal loop) and the tape is staged, the reversal cannot run example by example:
    a clear error instead of the sum over the batch."""
    x = np.array([0.5, 2.0])

    def f(x):
        return np.sum(_while_power(x[::-1], x))
    hvps = pullback.jit(pullback.vmap(
        lambda v: pullback.hvp(f, x, v, mode="reverse-over-forward")))
    with raises(LoopTypeError, "while_loop under vmap", "differentiate eagerly"):
        hvps(np.eye(2))


# ------------------------------------------- 2: division by a Python zero


@pytest.mark.parametrize("zero", [0.0, -0.0, 0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_item2_division_by_a_python_zero_differentiates_as_numpy(zero, dtype):
    """`x / 0.0` on a traced x raised Python's ZeroDivisionError from divide's partial
    (1.0 / y computed in Python); it is NumPy's 1 / 0 = +-inf, in the input's dtype."""
    x = np.array([0.5, -1.0, 0.0], dtype)
    inf = np.full(3, np.copysign(np.inf, zero), dtype)
    with np.errstate(all="ignore"):
        _same(pullback.grad(lambda x: np.sum(x / zero))(x), inf)
        _same(pullback.jit(pullback.grad(lambda x: np.sum(x / zero)))(x), inf)
        _same(pullback.jvp(lambda x: x / zero, (x,), (np.ones(3, dtype),))[1], inf)
        _same(pullback.jit(lambda x: x / zero)(x), x / zero)


# ----------------------------------------------- 3: prod over an empty axis


@pytest.mark.parametrize("index, axis", [((slice(0, 0),), 0), ((slice(None), slice(0, 0)), 1),
                                         ((slice(0, 0),), None), ((slice(0, 0),), 1)])
def test_item3_prod_over_an_empty_axis_differentiates(index, axis):
    """np.prod over an empty axis is 1 (a constant): its derivative raised a reshape
    ValueError from deep inside the product-of-the-others rule."""
    def f(x):
        return np.prod(x[index], axis=axis)
    x = np.arange(1.0, 7.0).reshape(2, 3)
    _same(pullback.jit(f)(x), f(x))
    out = np.shape(f(x))
    _same(pullback.jacfwd(f)(x), np.zeros(out + x.shape))
    _same(pullback.jacrev(f)(x), np.zeros(out + x.shape))
    _same(pullback.hessian(lambda x: np.sum(f(x)))(x), np.zeros(x.shape * 2))


# ------------------------------- 4: custom_vjp residuals that are not arrays


def test_item4_custom_vjp_residuals_that_are_python_numbers_work_in_every_mode():
    """A fwd rule returning a Python number among its residuals broke
    reverse-over-reverse Hessians, under jit too, with a bare AttributeError ('float' object
    has no attribute 'shape'): the residuals are outputs of the call's primitive, which the
    outer reverse trace wraps (transforms/reverse.py): a number stays a constant now, weakly
    typed: float32 stays float32."""
    @pullback.custom_vjp
    def scale(x, n):
        return x * n

    def fwd(x, n):
        return x * n, (3.0, None)

    def bwd(residuals, ct):
        return ct * residuals[0], None
    scale.defvjp(fwd, bwd)

    def f(x):
        return np.sum(scale(x, 3.0) ** 2)
    x = np.array([0.3, -1.2, 2.0], np.float32)
    expected = np.diag(np.full(3, 18.0, np.float32))
    for mode in HESSIAN_MODES:
        _same(pullback.hessian(f, mode=mode)(x), expected)
        _same(pullback.jit(pullback.hessian(f, mode=mode))(x), expected)
    _same(pullback.vmap(pullback.hessian(f))(np.stack([x, -x])), np.stack([expected] * 2))
    _same(pullback.grad(f)(x), (18.0 * x).astype(np.float32))


# ---------------------------- 5: shape rules that accepted ill-typed programs

ILL_TYPED = {
    "matmul": lambda x: x @ np.ones(5),
    "matmul_2d": lambda x: x.reshape(3, 1) @ np.ones((2, 4)),
    "dot": lambda x: np.dot(x, np.ones((5, 2))),
    "concatenate": lambda x: np.concatenate([x.reshape(1, 3), np.ones((1, 4))]),
    "stack": lambda x: np.stack([x, np.ones(4)]),
    "broadcast_to": lambda x: np.broadcast_to(x, (2, 4)),
    "transpose": lambda x: np.transpose(x.reshape(3, 1), (0, 0)),
    "solve": lambda x: np.linalg.solve(np.eye(4), x),
    "at_set": lambda x: pullback.numpy.at(x)[:2].set(np.ones(3)),
    "at_add": lambda x: pullback.numpy.at(x)[:2].add(np.ones(3)),
}


@pytest.mark.parametrize("name", ILL_TYPED)
def test_item5_staging_refuses_operands_numpy_refuses(name):
    """make_ir (so show, sparsity detection and the first call of a long program) staged
    these as well-typed programs (x @ W with mismatched inner sizes had type float64[]),
    where NumPy, jit's generated code and every derivative raise ValueError: the shape
    rules of matmul, concatenate, broadcast_to, transpose, solve and the scatters now check
    what NumPy checks."""
    f, x = ILL_TYPED[name], np.ones(3)
    for run in (lambda: f(x), lambda: pullback.make_ir(f)(x), lambda: pullback.jit(f)(x),
                lambda: pullback.grad(lambda x: np.sum(f(x)))(x)):
        with pytest.raises(ValueError):
            run()
    pullback.make_ir(lambda x: x @ np.ones((3, 2)))(x)             # the same shapes, right


# ------------------------------------------ 6: checkpoint's keyword arguments


def test_item6_checkpointed_functions_take_keyword_arguments_and_differentiate_them():
    """`checkpoint(f)(x, s=3.0)` raised Python's TypeError naming f ("<lambda>() got an
    unexpected keyword argument 's'", though f takes s): the wrapper took positional
    arguments only. Keyword arguments are inputs of the one-step scan now."""
    x = np.array([0.3, -0.7, 1.1])
    g = pullback.checkpoint(lambda y, s=2.0: np.sin(y) * s)
    _same(pullback.grad(lambda x: np.sum(g(x, s=3.0)))(x), 3.0 * np.cos(x))
    _same(pullback.grad(lambda s: np.sum(g(x, s=s)))(3.0), np.sum(np.sin(x)))
    _same(pullback.jit(pullback.grad(lambda x: np.sum(g(x, s=x[0]))))(x),
          pullback.grad(lambda x: np.sum(np.sin(x) * x[0]))(x))


# ---------------------------------------------------- 7: fori_loop's bounds


@pytest.mark.parametrize("lower, upper", [(0, 2.5), (0.0, 3), (0, np.float64(3.0))])
def test_item7_fori_loop_refuses_bounds_that_are_not_integers(lower, upper):
    """fori_loop(0, 2.5, ...) ran 2 steps without a word (int() dropped the fraction);
    range() and JAX's fori_loop refuse a float bound."""
    with raises(LoopTypeError, "not an integer"):
        pullback.fori_loop(lower, upper, lambda i, x: x * 2.0, 1.0)
    assert pullback.fori_loop(np.int32(0), np.array(3), lambda i, x: x * 2.0, 1.0) == 8.0


# ------------------------------------- 8: np.average's weights over several axes


@pytest.mark.parametrize("axis, weights_shape", [((0, 1), (2, 3)), ((2, 0), (2, 2)),
                                                 (-1, (2,)), ((1,), (3,))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_item8_average_takes_weights_over_an_axis_tuple_as_numpy(axis, weights_shape,
                                                                  keepdims):
    """NumPy 2 takes weights shaped as a's `axis` (a tuple too, in its order); pullback
    refused any weights that were not 1-d with NumPy 1's TypeError."""
    x = np.arange(1.0, 13.0).reshape(2, 3, 2) ** 1.3
    w = np.arange(1.0, 1.0 + np.prod(weights_shape)).reshape(weights_shape)

    def f(x, w):
        return np.average(x, axis=axis, weights=w, keepdims=keepdims)
    _same(pullback.jit(f)(x, w), f(x, w))
    pullback.testing.check_grads(f, (x, w), order=2)
    with pytest.raises(ValueError, match="consistent"):
        pullback.jit(f)(x, np.ones((1,) + weights_shape[1:]))
