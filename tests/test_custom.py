"""custom_vjp and custom_jvp: user rules serve every mode, every order, vmap; their errors.

Two kinds of function, each with both kinds of rule:

- softplus, numerically stable, where plain differentiation of the stable formula
  goes wrong at the kink of its max/abs (and the naive formula overflows);
- the Gaussian integral F(x) = int_0^x exp(-t^2) dt computed by scipy.integrate.quad
  on Python floats, which pullback cannot trace, with the rule F' = exp(-x^2)
  written with NumPy operations. Closed form: sqrt(pi)/2 erf(x).

Then, per item of the issue: staging custom calls without made-up values and reverse
mode running fwd only (13); custom rules around SciPy in every composition with jit,
vmap and second derivatives (14); keyword and static arguments (20).

The autouse fixture in conftest.py checks the trace stack is empty after each test.
"""
import functools
import io

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.optimize
import scipy.special

from helpers import raises
from pullback import (check_grads, custom_jvp, custom_vjp, errors, grad, hessian, hvp, jacfwd,
                      jacrev, jit, make_hvp, make_ir, pullback as vjp, pushforward, show, vmap)
from pullback.core.engine import Tracer
from pullback.ir.program import typecheck
from pullback.operators import HESSIAN_MODES

rng = np.random.default_rng(3)


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=tol, atol=tol)


# ------------------------------------------------------------------ the functions


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def stable_softplus(x):
    """log(1 + e^x) without overflow; its kink terms make plain derivatives wrong at 0."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


@custom_jvp
def softplus_jvp(x):
    return stable_softplus(x)


@softplus_jvp.defjvp
def _softplus_jvp_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus_jvp(x), t * sigmoid(x)


@custom_vjp
def softplus_vjp(x):
    return stable_softplus(x)


softplus_vjp.defvjp(lambda x: (softplus_vjp(x), sigmoid(x)), lambda s, ct: (ct * s,))


def _quad_gauss(x):
    """int_0^x exp(-t^2) dt elementwise, by quadrature on Python floats (not traceable)."""
    values = [scipy.integrate.quad(lambda t: np.exp(-t * t), 0.0, float(v), epsabs=1e-13,
                                   epsrel=1e-13)[0] for v in np.ravel(x)]
    return np.array(values, dtype=np.asarray(x).dtype).reshape(np.shape(x))


@custom_vjp
def gauss_vjp(x):
    return _quad_gauss(x)


gauss_vjp.defvjp(lambda x: (gauss_vjp(x), x), lambda x, ct: (ct * np.exp(-x * x),))


@custom_jvp
def gauss_jvp(x):
    return _quad_gauss(x)


@gauss_jvp.defjvp
def _gauss_jvp_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return gauss_jvp(x), np.exp(-x * x) * t


# (name, function, closed form of f, f', f'')
FUNCTIONS = [
    ("softplus_jvp", softplus_jvp, lambda x: np.logaddexp(0.0, x), sigmoid,
     lambda x: sigmoid(x) * (1 - sigmoid(x))),
    ("softplus_vjp", softplus_vjp, lambda x: np.logaddexp(0.0, x), sigmoid,
     lambda x: sigmoid(x) * (1 - sigmoid(x))),
    ("gauss_jvp", gauss_jvp, lambda x: np.sqrt(np.pi) / 2 * scipy.special.erf(x),
     lambda x: np.exp(-x * x), lambda x: -2 * x * np.exp(-x * x)),
    ("gauss_vjp", gauss_vjp, lambda x: np.sqrt(np.pi) / 2 * scipy.special.erf(x),
     lambda x: np.exp(-x * x), lambda x: -2 * x * np.exp(-x * x)),
]
IDS = [row[0] for row in FUNCTIONS]
parametrize = pytest.mark.parametrize("name, F, f0, f1, f2", FUNCTIONS, ids=IDS)

X = np.array([-1.3, 0.0, 0.4, 2.1])


def g_of(F):
    """A scalar function mixing F with products, so its Hessian has off-diagonal terms."""
    return lambda x: np.sum(F(x) * x) + F(x[0]) * x[1] ** 2


def g_hessian(f0, f1, f2, x):
    """The Hessian of g_of(F) from the closed forms of F, F', F''."""
    h = np.diag(f2(x) * x + 2 * f1(x))
    h[0, 0] += f2(x[0]) * x[1] ** 2
    h[1, 1] += 2 * f0(x[0])
    h[0, 1] += 2 * f1(x[0]) * x[1]
    h[1, 0] += 2 * f1(x[0]) * x[1]
    return h


# ------------------------------------------------------------------ values and first order


@parametrize
def test_values_and_first_derivatives_match_the_closed_form(name, F, f0, f1, f2):
    close(F(X), f0(X))
    close(F(0.7), f0(0.7))
    close(grad(lambda x: np.sum(F(x)))(X), f1(X))
    close(grad(F)(0.7), f1(0.7))
    close(jacfwd(F)(X), np.diag(f1(X)))
    close(jacrev(F)(X), np.diag(f1(X)))
    v = rng.standard_normal(X.shape)
    out, tangent = pushforward(F, (X,), (v,))
    close(out, f0(X))
    close(tangent, f1(X) * v)
    out, back = vjp(F, X)
    close(back(v)[0], f1(X) * v)


@parametrize
def test_second_derivatives_match_the_closed_form(name, F, f0, f1, f2):
    for s in (-1.3, 0.0, 0.4, 2.1):
        close(grad(grad(F))(s), f2(s))
    close(jacfwd(grad(lambda x: np.sum(F(x))))(X), np.diag(f2(X)))
    close(jacrev(jacfwd(F))(X), np.einsum("ij,jk->ijk", np.eye(4), np.diag(f2(X))))
    out, t = pushforward(lambda s: pushforward(F, (s,), (np.ones_like(s),))[1], (X,),
                         (np.ones_like(X),))
    close(t, f2(X))


@parametrize
def test_check_grads_to_third_order(name, F, f0, f1, f2):
    check_grads(F, (X,), order=3, eps=1e-4, tol=1e-6)
    check_grads(g_of(F), (X,), order=2, eps=1e-4, tol=1e-6)


def test_the_custom_rule_is_what_makes_softplus_stable():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    naive = lambda x: np.log1p(np.exp(x))      # noqa: E731
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(naive(x)[-1])
        assert np.isnan(grad(naive)(1000.0))
    assert grad(grad(stable_softplus))(0.0) == 0.0     # the kinks of max and abs at 0
    for F in (softplus_jvp, softplus_vjp):
        close(F(x), np.logaddexp(0.0, x))
        close(grad(lambda x: np.sum(F(x)))(x), [0.0, sigmoid(-30.0), 0.5, sigmoid(30.0), 1.0])
        close(grad(grad(F))(0.0), 0.25)
        close(grad(grad(F))(1000.0), 0.0)


@custom_jvp
def safe_norm(x):
    return np.sqrt(np.sum(x ** 2))


@safe_norm.defjvp
def _safe_norm_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    n = safe_norm(x)
    nonzero = n > 0
    return n, np.sum(x * t) / np.where(nonzero, n, 1.0) * nonzero


def test_safe_norm_has_a_zero_gradient_at_the_origin():
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.all(np.isnan(grad(lambda x: np.sqrt(np.sum(x ** 2)))(np.zeros(3))))
    close(grad(safe_norm)(np.zeros(3)), np.zeros(3))
    x = np.array([3.0, -4.0, 0.0])
    close(safe_norm(x), 5.0)
    close(grad(safe_norm)(x), x / 5.0)
    close(jacfwd(safe_norm)(x), x / 5.0)
    close(hessian(safe_norm)(x), (np.eye(3) - np.outer(x, x) / 25.0) / 5.0)
    close(vmap(grad(safe_norm))(np.stack([x, np.zeros(3)])), [x / 5.0, np.zeros(3)])


# ------------------------------------------------------------------ second order, every mode


@parametrize
def test_four_hessian_modes_agree_with_the_closed_form(name, F, f0, f1, f2):
    want = g_hessian(f0, f1, f2, X)
    for mode in HESSIAN_MODES:
        close(hessian(g_of(F), mode=mode)(X), want, 1e-11)


@parametrize
def test_hvp_and_make_hvp_in_every_mode(name, F, f0, f1, f2):
    want = g_hessian(f0, f1, f2, X)
    vs = rng.standard_normal((3, 4))
    for mode in HESSIAN_MODES:
        for v in vs:
            close(hvp(g_of(F), X, v, mode=mode), want @ v, 1e-11)
        op = make_hvp(g_of(F), X, mode=mode)
        close(op.value, g_of(lambda x: f0(x))(X), 1e-11)
        close(op.grad, grad(g_of(F))(X), 1e-11)
        close(op(vs[0]), want @ vs[0], 1e-11)
        close(op.matmat(vs.T), want @ vs.T, 1e-11)


def test_forward_mode_through_custom_vjp_uses_the_transposed_rule():
    @custom_vjp
    def straight_through(x):
        return np.round(x)

    straight_through.defvjp(lambda x: (straight_through(x), None), lambda _, ct: (ct,))
    x = np.array([0.2, 1.7, -2.4])
    close(straight_through(x), np.round(x))
    close(grad(lambda x: np.sum(straight_through(x) * x))(x), np.round(x) + x)
    close(jacfwd(straight_through)(x), np.eye(3))
    close(pushforward(straight_through, (x,), (np.arange(3.0),))[1], np.arange(3.0))
    for F in (softplus_vjp, gauss_vjp):
        check_grads(F, (X,), order=2, modes=("forward",), eps=1e-4, tol=1e-6)


def test_reverse_mode_through_custom_jvp_uses_the_transposed_rule():
    @custom_jvp
    def scaled_copy(x, y):
        return 2.0 * x + np.sum(y)

    @scaled_copy.defjvp
    def _(primals, tangents):
        (x, y), (tx, ty) = primals, tangents
        return scaled_copy(x, y), 3.0 * tx + np.sum(ty)   # deliberately not the true derivative

    x, y = np.array([1.0, 2.0]), np.array([5.0, 6.0, 7.0])
    out, back = vjp(scaled_copy, x, y)
    ct_x, ct_y = back(np.array([1.0, 10.0]))
    close(ct_x, [3.0, 30.0])
    close(ct_y, np.full(3, 11.0))
    close(jacrev(scaled_copy, argnums=(0, 1))(x, y)[0], 3.0 * np.eye(2))
    close(grad(lambda y: np.sum(scaled_copy(x, y)))(y), np.full(3, 2.0))
    for F in (softplus_jvp, gauss_jvp):
        check_grads(F, (X,), order=2, modes=("reverse",), eps=1e-4, tol=1e-6)


# ------------------------------------------------------------------ vmap


XS = np.array([[-1.3, 0.0, 0.4, 2.1], [0.5, -0.2, 1.0, -2.0], [0.1, 0.3, -0.6, 0.9]])


@parametrize
def test_vmap_of_a_custom_function_and_of_its_gradient(name, F, f0, f1, f2):
    close(vmap(F)(XS), f0(XS))
    close(vmap(F, in_axes=1, out_axes=1)(XS.T), f0(XS.T))
    close(vmap(grad(F))(XS[0]), f1(XS[0]))
    close(vmap(grad(g_of(F)))(XS), np.stack([grad(g_of(F))(x) for x in XS]), 1e-11)
    close(vmap(jacfwd(F))(XS), np.stack([np.diag(f1(x)) for x in XS]))
    close(vmap(jacrev(F))(XS), np.stack([np.diag(f1(x)) for x in XS]))


@parametrize
def test_grad_of_a_function_using_vmap_of_a_custom_function(name, F, f0, f1, f2):
    close(grad(lambda xs: np.sum(vmap(F)(xs)))(XS), f1(XS))
    close(grad(lambda xs: np.sum(vmap(g_of(F), in_axes=1)(xs)))(XS.T),
          np.stack([grad(g_of(F))(x) for x in XS]).T, 1e-11)
    close(jacfwd(lambda xs: vmap(F)(xs))(XS[:, :2]).reshape(6, 6), np.diag(f1(XS[:, :2]).ravel()))


@parametrize
def test_hessians_under_vmap_and_of_vmap(name, F, f0, f1, f2):
    want = np.stack([g_hessian(f0, f1, f2, x) for x in XS])
    close(vmap(hessian(g_of(F)))(XS), want, 1e-11)
    total = lambda xs: np.sum(vmap(g_of(F))(xs))    # noqa: E731  block diagonal Hessian
    h = hessian(total, mode="reverse-over-forward")(XS)
    for i in range(3):
        close(h[i, :, i, :], want[i], 1e-11)


def test_vmap_with_a_shared_argument_sums_its_cotangent():
    @custom_vjp
    def scaled_softplus(x, beta):
        return stable_softplus(beta * x) / beta

    def fwd(x, beta):
        return scaled_softplus(x, beta), (x, beta)

    def bwd(res, ct):
        x, beta = res
        s = sigmoid(beta * x)
        return ct * s, np.sum(ct * (x * s / beta - np.logaddexp(0.0, beta * x) / beta ** 2))

    scaled_softplus.defvjp(fwd, bwd)
    xs, beta = rng.standard_normal((5, 3)), np.float64(1.7)
    f = lambda x, b: np.sum(scaled_softplus(x, b) * x)   # noqa: E731
    got = grad(lambda b: np.sum(vmap(f, in_axes=(0, None))(xs, b)))(beta)
    close(got, sum(grad(f, argnums=1)(x, beta) for x in xs))
    got = vmap(grad(f, argnums=(0, 1)), in_axes=(0, None))(xs, beta)
    close(got[0], np.stack([grad(f)(x, beta) for x in xs]))
    close(got[1], np.stack([grad(f, argnums=1)(x, beta) for x in xs]))
    check_grads(lambda b: vmap(f, in_axes=(0, None))(xs, b), (beta,), order=2)


def test_untraceable_code_under_vmap_runs_example_by_example():
    calls = []

    @custom_vjp
    def counted(x):
        calls.append(np.shape(x))
        return _quad_gauss(x)

    counted.defvjp(lambda x: (counted(x), x), lambda x, ct: (ct * np.exp(-x * x),))
    close(vmap(counted, in_axes=1)(XS.T), gauss_vjp(XS))
    assert calls[-3:] == [(4,), (4,), (4,)]            # one call per example, in order
    with pytest.raises(errors.BatchError, match="empty batch"):
        vmap(counted)(np.zeros((0, 4)))


def test_custom_jvp_under_vmap_with_batched_and_shared_arguments():
    @custom_jvp
    def weighted(x, w):
        return _quad_gauss(x) * w

    @weighted.defjvp
    def _(primals, tangents):
        (x, w), (tx, tw) = primals, tangents
        return weighted(x, w), np.exp(-x * x) * tx * w + gauss_jvp(x) * tw

    xs, w = rng.standard_normal((4, 2)), np.array([2.0, -1.0])
    erf = lambda x: np.sqrt(np.pi) / 2 * scipy.special.erf(x)   # noqa: E731
    close(vmap(weighted, in_axes=(0, None))(xs, w), erf(xs) * w)
    close(grad(lambda w: np.sum(vmap(weighted, in_axes=(0, None))(xs, w)))(w), erf(xs).sum(0))
    _, t = pushforward(lambda xs, w: vmap(weighted, in_axes=(0, None))(xs, w), (xs, w),
                       (np.ones_like(xs), np.ones_like(w)))
    close(t, np.exp(-xs * xs) * w + erf(xs))


# ------------------------------------------------------------------ pytrees and dtypes


@custom_vjp
def affine_stats(p, x):
    """{"y": w x + b, "sq": sum(x^2)} for p = {"w": w, "b": b}: pytrees in and out."""
    return {"y": p["w"] * x + p["b"], "sq": np.sum(x ** 2)}


def _affine_fwd(p, x):
    return affine_stats(p, x), (p["w"], x)


def _affine_bwd(res, ct):
    w, x = res
    return {"w": ct["y"] * x, "b": ct["y"]}, ct["y"] * w + 2 * ct["sq"] * x


affine_stats.defvjp(_affine_fwd, _affine_bwd)


@custom_jvp
def polar(pair):
    """(r, theta) of pair = (x, y): a tuple in and out."""
    x, y = pair
    return np.hypot(x, y), np.arctan2(y, x)


@polar.defjvp
def _polar_jvp(primals, tangents):
    ((x, y),), ((tx, ty),) = primals, tangents
    r, theta = polar((x, y))
    return (r, theta), ((x * tx + y * ty) / r, (x * ty - y * tx) / r ** 2)


def test_pytree_inputs_and_outputs_of_custom_vjp():
    p = {"w": rng.standard_normal(3), "b": rng.standard_normal(3)}
    x = rng.standard_normal(3)
    out = affine_stats(p, x)
    assert set(out) == {"y", "sq"}
    close(out["y"], p["w"] * x + p["b"])

    def loss(p, x):
        o = affine_stats(p, x)
        return np.sum(o["y"] ** 2) + 3.0 * o["sq"]

    gp, gx = grad(loss, argnums=(0, 1))(p, x)
    y = p["w"] * x + p["b"]
    close(gp["w"], 2 * y * x)
    close(gp["b"], 2 * y)
    close(gx, 2 * y * p["w"] + 6 * x)
    check_grads(loss, (p, x), order=2)
    h = hessian(loss, argnums=1, mode="forward-over-forward")(p, x)
    close(h, 2 * np.diag(p["w"] ** 2) + 6 * np.eye(3))


def test_pytree_inputs_and_outputs_of_custom_jvp():
    x, y = np.array([3.0, 0.0]), np.array([4.0, 2.0])
    r, theta = polar((x, y))
    close(r, [5.0, 2.0])
    close(theta, np.arctan2(y, x))
    gx, gy = grad(lambda pair: np.sum(polar(pair)[0]) + np.sum(polar(pair)[1]))((x, y))
    close(gx, x / r - y / r ** 2)
    close(gy, y / r + x / r ** 2)
    check_grads(lambda x, y: polar((x, y)), (x, y), order=2)
    rs, thetas = vmap(polar)((np.stack([x, y]), np.stack([y, x])))
    close(rs, np.hypot(np.stack([x, y]), np.stack([y, x])))


def test_none_stands_for_zeros_of_a_whole_argument_or_subtree():
    @custom_vjp
    def only_w(p, x):
        return p["w"] * x + p["b"]

    only_w.defvjp(lambda p, x: (only_w(p, x), x), lambda x, ct: ({"w": ct * x, "b": None}, None))
    p, x = {"w": np.array([2.0]), "b": np.array([1.0])}, np.array([3.0])
    gp, gx = grad(lambda p, x: np.sum(only_w(p, x)), argnums=(0, 1))(p, x)
    close(gp["w"], x)
    close(gp["b"], 0.0)
    close(gx, 0.0)

    @custom_jvp
    def two(x):
        return x, 2.0 * x

    two.defjvp(lambda p, t: (two(*p), (t[0], None)))
    close(pushforward(two, (x,), (np.ones(1),))[1][1], 0.0)


@parametrize
def test_float32_stays_float32(name, F, f0, f1, f2):
    x = X.astype(np.float32)
    assert F(x).dtype == np.float32
    assert grad(lambda x: np.sum(F(x)))(x).dtype == np.float32
    assert pushforward(F, (x,), (np.ones_like(x),))[1].dtype == np.float32
    for mode in HESSIAN_MODES:
        h = hessian(g_of(F), mode=mode)(x)
        assert h.dtype == np.float32
        close(h, g_hessian(f0, f1, f2, X), 1e-4)
    assert vmap(grad(g_of(F)))(XS.astype(np.float32)).dtype == np.float32
    check_grads(F, (x,), order=2, eps=1e-3)


# ------------------------------------------------------------------ errors


def test_error_when_the_rule_was_never_defined():
    @custom_vjp
    def no_vjp(x):
        return x

    @custom_jvp
    def no_jvp(x):
        return x

    with raises(errors.CustomRuleError, "`no_vjp` is a custom_vjp function without a rule", "no_vjp.defvjp(fwd, bwd)"):
        no_vjp(1.0)
    with raises(errors.CustomRuleError, "`no_jvp` is a custom_jvp function without a rule", "@no_jvp.defjvp"):
        grad(no_jvp)(1.0)
    assert issubclass(errors.CustomRuleError, TypeError)


def _vjp_with(fwd, bwd):
    @custom_vjp
    def doubled(x):
        return 2.0 * x
    return doubled.defvjp(fwd, bwd)


def test_error_when_fwd_does_not_return_a_pair():
    f = _vjp_with(lambda x: 2.0 * x, lambda r, ct: (2.0 * ct,))
    with raises(errors.CustomRuleError, "the fwd rule of `doubled` must return (output, residuals)"):
        grad(f)(1.0)
    f = _vjp_with(lambda x: [2.0 * x, None], lambda r, ct: (2.0 * ct,))
    with raises(errors.CustomRuleError, "must return (output, residuals)"):
        jacfwd(f)(np.ones(2))


def test_error_when_bwd_returns_the_wrong_number_of_cotangents():
    f = _vjp_with(lambda x: (2.0 * x, None), lambda r, ct: 2.0 * ct)
    with raises(errors.CustomRuleError, "the bwd rule of `doubled` must return a tuple with one cotangent per argument (1)",
                "got ndarray"):
        grad(lambda x: np.sum(f(x)))(np.ones(2))
    f = _vjp_with(lambda x: (2.0 * x, None), lambda r, ct: (2.0 * ct, ct))
    with raises(errors.CustomRuleError, "one cotangent per argument (1)", "tuple of length 2"):
        grad(f)(1.0)
    g = custom_vjp(lambda x, y: x * y)
    g.defvjp(lambda x, y: (x * y, (x, y)), lambda r, ct: [ct * r[1], ct * r[0]])
    with raises(errors.CustomRuleError, "one cotangent per argument (2)", "got list"):
        grad(g)(1.0, 2.0)


def test_error_when_a_cotangent_has_the_wrong_shape_dtype_or_structure():
    f = _vjp_with(lambda x: (2.0 * x, None), lambda r, ct: (np.ones(3),))
    with raises(errors.CustomRuleError, "in the rule of `doubled`", "cotangent leaf 0 has shape (3,)", "shape (2,)"):
        grad(lambda x: np.sum(f(x)))(np.ones(2))
    f = _vjp_with(lambda x: (2.0 * x, None), lambda r, ct: ((2.0 * ct).astype(np.float32),))
    with raises(errors.CustomRuleError, "cotangent leaf 0", "float32", "float64", "astype(float64)"):
        grad(lambda x: np.sum(f(x)))(np.ones(2))
    f = _vjp_with(lambda x: (2.0 * x, None), lambda r, ct: ("two",))
    with raises(errors.CustomRuleError, "cotangent leaf 0 is a str"):
        grad(lambda x: np.sum(f(x)))(np.ones(2))
    g = custom_vjp(lambda p: p["a"] * p["b"])
    g.defvjp(lambda p: (g(p), p), lambda p, ct: ((ct * p["b"], ct * p["a"]),))
    with raises(errors.CustomRuleError, "the cotangent tuple returned by bwd", "has structure ((*, *),)",
                "({'a': *, 'b': *},) was expected"):
        grad(g)({"a": 1.0, "b": 2.0})
    # Under vmap and in forward mode the same checks apply.
    f = _vjp_with(lambda x: (2.0 * x, None), lambda r, ct: (np.ones(3),))
    with raises(errors.CustomRuleError, "cotangent leaf 0 has shape (3,)"):
        vmap(grad(lambda x: np.sum(f(x))))(np.ones((4, 2)))
    with raises(errors.CustomRuleError, "cotangent leaf 0 has shape (3,)"):
        pushforward(f, (np.ones(2),), (np.ones(2),))


def test_error_when_jvp_returns_the_wrong_tangent():
    def jvp_with(rule):
        f = custom_jvp(lambda x: (2.0 * x, np.sum(x)))
        f.defjvp(rule)
        return f

    f = jvp_with(lambda p, t: [(2.0 * p[0], np.sum(p[0])), (2.0 * t[0], np.sum(t[0]))])
    with raises(errors.CustomRuleError, "the jvp rule of `<lambda>` must return (output, tangent_of_output)"):
        pushforward(f, (np.ones(2),), (np.ones(2),))
    g = custom_jvp(np.sin)
    g.defjvp(lambda p, t: np.sin(p[0]))
    with raises(errors.CustomRuleError, "the jvp rule of `sin` must return (output, tangent_of_output)"):
        grad(g)(1.0)
    f = jvp_with(lambda p, t: ((2.0 * p[0], np.sum(p[0])), 2.0 * t[0]))
    with raises(errors.CustomRuleError, "the tangent returned by jvp", "has structure *", "(*, *) was expected"):
        pushforward(f, (np.ones(2),), (np.ones(2),))
    f = jvp_with(lambda p, t: ((2.0 * p[0], np.sum(p[0])), (2.0 * t[0], t[0])))
    with raises(errors.CustomRuleError, "in the rule of `<lambda>`", "tangent leaf 1 has shape (2,)", "shape ()"):
        grad(lambda x: f(x)[1])(np.ones(2))
    f = jvp_with(lambda p, t: ((2.0 * p[0], np.sum(p[0])),
                               (2.0 * t[0].astype(np.float32), np.sum(t[0]))))
    with raises(errors.CustomRuleError, "tangent leaf 0", "float32", "astype(float64)"):
        jacfwd(lambda x: f(x)[0])(np.ones(2))
    with raises(errors.CustomRuleError, "tangent leaf 0", "float32"):
        vmap(jacrev(lambda x: f(x)[0]))(np.ones((3, 2)))


def _scaled_by(s, kind):
    """x -> s x as a custom function closing over s (its rule knows s only through the closure)."""
    if kind == "vjp":
        f = custom_vjp(lambda x: x * s)
        return f.defvjp(lambda x: (f(x), None), lambda _, ct: (ct * s,))
    f = custom_jvp(lambda x: x * s)
    f.defjvp(lambda p, t: (f(*p), t[0] * s))
    return f


@pytest.mark.parametrize("kind", ["vjp", "jvp"])
def test_closing_over_a_value_of_an_outer_transformation_is_fine(kind):
    # s is a constant to the inner grad; the outer grad differentiates through the rule.
    close(grad(lambda s: grad(lambda x: _scaled_by(s, kind)(x))(2.0))(3.0), 1.0)
    close(grad(lambda s: np.sum(_scaled_by(s, kind)(np.ones(2))))(3.0), 2.0)
    close(vmap(lambda s: _scaled_by(s, kind)(np.ones(2)))(np.array([1.0, 2.0])),
          [[1.0, 1.0], [2.0, 2.0]])
    xs = np.array([1.0, 2.0])
    close(vmap(lambda s: grad(lambda x: _scaled_by(s, kind)(x))(2.0))(xs), xs)
    close(grad(lambda s: np.sum(vmap(_scaled_by(s, kind))(xs)))(3.0), 3.0)


@pytest.mark.parametrize("kind", ["vjp", "jvp"])
def test_error_when_closing_over_a_value_of_the_same_or_a_nested_transformation(kind):
    fragments = ("uses a value traced by the transformation of its arguments",
                 "closure", "as an argument")
    # Without the check these gave wrong derivatives ([0, 0] here) or leaked tracers.
    with raises(errors.CustomRuleError, *fragments):
        vmap(lambda x: grad(lambda s: _scaled_by(s, kind)(x))(3.0))(np.array([1.0, 2.0]))
    with raises(errors.CustomRuleError, *fragments):
        grad(lambda x: grad(lambda s: _scaled_by(s, kind)(x))(3.0))(2.0)
    with raises(errors.CustomRuleError, *fragments):
        grad(lambda s: _scaled_by(s, kind)(s))(3.0)
    with raises(errors.CustomRuleError, *fragments):
        pushforward(lambda s: _scaled_by(s, kind)(s), (3.0,), (1.0,))
    with raises(errors.CustomRuleError, *fragments):
        vmap(lambda s: _scaled_by(s, kind)(s * np.ones(2)))(np.array([1.0, 2.0]))
    with raises(errors.CustomRuleError, *fragments):
        jacfwd(lambda s: _scaled_by(s[0], kind)(s))(np.array([1.0, 2.0]))


# ------------------------------------------------------------------ item 13: staging custom calls


def _cholesky_vjp(seen):
    """A custom_vjp around np.linalg.cholesky (fine on real inputs, an error on zeros), with
    the reverse rule of Murray (2016); `seen` records what its function and rules receive."""
    @custom_vjp
    def cholesky(a):
        seen.append(a)
        return np.linalg.cholesky(a)

    def fwd(a):
        seen.append(a)
        factor = np.linalg.cholesky(a)
        return factor, factor

    def bwd(factor, ct):
        seen.append(factor)
        p = np.tril(factor.T @ ct)
        p = p - 0.5 * np.diag(np.diag(p))
        inverse = np.linalg.inv(factor)
        s = inverse.T @ p @ inverse
        return (0.5 * (s + s.T),)

    return cholesky.defvjp(fwd, bwd)


def test_item13_custom_rules_under_jit_never_run_on_made_up_values():
    seen = []
    cholesky = _cholesky_vjp(seen)
    x = rng.standard_normal((3, 3))
    spd = x @ x.T + 3.0 * np.eye(3)

    def loss(x):
        return np.sum(cholesky(x @ x.T + 3.0 * np.eye(3)) ** 2)

    check_grads(loss, (x,), order=2)
    value, gradient = loss(x), grad(loss)(x)
    seen.clear()
    close(jit(loss)(x), value)
    close(jit(grad(loss))(x), gradient)
    close(grad(jit(loss))(x), gradient)
    close(jit(vmap(grad(loss)))(np.stack([x, 2 * x])), np.stack([gradient, grad(loss)(2 * x)]))
    assert "custom_vjp_call" in str(make_ir(loss)(x))
    show(grad(loss), x, file=io.StringIO())
    # Whatever the function and its rules saw concretely was a real value (their types were
    # learned by tracing them).
    real = [spd, 4 * x @ x.T + 3.0 * np.eye(3)]
    real += [np.linalg.cholesky(a) for a in real]
    assert all(isinstance(a, Tracer) or any(np.allclose(a, r) for r in real) for a in seen)


def _solve_cubic(a):
    """y with y**3 + y = a, elementwise, by scipy.optimize.brentq on Python floats (not
    traceable)."""
    a = np.asarray(a)
    roots = [scipy.optimize.brentq(lambda y: y ** 3 + y - v, -abs(v) - 1.0, abs(v) + 1.0,
                                   xtol=1e-15, rtol=1e-15) for v in np.ravel(a)]
    return np.array(roots, dtype=a.dtype).reshape(a.shape)


def test_item13_untraceable_code_under_jit_runs_on_the_values_of_the_example():
    seen = []

    @custom_jvp
    def cubic_root(a):
        seen.append(a)
        return _solve_cubic(a)

    @cubic_root.defjvp
    def _(primals, tangents):
        (a,), (t,) = primals, tangents
        y = cubic_root(a)
        return y, t / (3.0 * y * y + 1.0)

    def f(x):
        return np.sum(cubic_root(np.sin(x) * 2.0) * x)     # its input is computed first

    x = rng.standard_normal(4)
    jitted = jit(f)
    close(jitted(x), f(x))
    assert all(isinstance(a, Tracer) or np.allclose(a, np.sin(x) * 2.0) for a in seen)
    close(jitted(2 * x), f(2 * x))
    assert "custom_jvp_call" in str(make_ir(f)(x))
    close(jit(grad(f))(x), grad(f)(x))
    # Without values (an empty batch has no first example) the types cannot be learned.
    with raises(errors.ConcretizationError, "`cubic_root` cannot be traced", "none are known here"):
        vmap(jit(cubic_root))(np.zeros((0, 4)))


def test_item13_reverse_mode_runs_fwd_only():
    calls = []

    @custom_vjp
    def sine(x):
        calls.append("fun")
        return np.sin(x)

    def fwd(x):
        calls.append("fwd")
        return np.sin(x), np.cos(x)

    def bwd(cos, ct):
        calls.append("bwd")
        return (ct * cos,)

    sine.defvjp(fwd, bwd)
    x = np.array([0.1, 0.7])

    def counted(run):
        calls.clear()
        run()
        return list(calls)

    assert counted(lambda: sine(x)) == ["fun"]
    # (the first call at these types also stages fun, abstractly, to check fwd's output
    # against it)
    assert counted(lambda: grad(lambda x: np.sum(sine(x)))(x)) == ["fwd", "fun", "bwd"]
    assert counted(lambda: grad(lambda x: np.sum(sine(x)))(x)) == ["fwd", "bwd"]
    _, back = vjp(sine, x)
    assert counted(lambda: (back(x), back(x))) == ["bwd", "bwd"]
    # (the first call checks once that bwd is linear: one more call of it)
    assert counted(lambda: pushforward(sine, (x,), (x,))) == ["fwd", "bwd", "bwd"]
    assert counted(lambda: pushforward(sine, (x,), (x,))) == ["fwd", "bwd"]
    jitted = jit(grad(lambda x: np.sum(sine(x))))
    jitted(x)                                            # staging traces fwd and bwd
    assert counted(lambda: close(jitted(x), np.cos(x))) == ["fwd", "bwd"]

    @custom_jvp
    def cosine(x):
        calls.append("fun")
        return np.cos(x)

    @cosine.defjvp
    def _(primals, tangents):
        calls.append("jvp")
        return np.cos(primals[0]), -np.sin(primals[0]) * tangents[0]

    assert counted(lambda: pushforward(cosine, (x,), (x,))) == ["jvp", "fun"]   # (checked)
    assert counted(lambda: pushforward(cosine, (x,), (x,))) == ["jvp"]
    # Reverse mode takes the values from the rule too (at zero tangents), as forward mode
    # does, then transposes its tangent map (the first time checking that it is linear):
    assert counted(lambda: grad(lambda x: np.sum(cosine(x)))(x)) == ["jvp", "jvp", "jvp"]
    assert counted(lambda: grad(lambda x: np.sum(cosine(x)))(x)) == ["jvp", "jvp"]


def test_item13_results_of_rules_under_jit_are_arrays_or_numbers():
    f = _vjp_with(lambda x: (2.0 * x, object()), lambda r, ct: (2.0 * ct,))
    close(grad(f)(1.5), 2.0)                             # eagerly any residual works
    with raises(errors.CustomRuleError, "`doubled_fwd` returned a object (result leaf 1)",
                "must be arrays or numbers"):
        jit(grad(f))(1.5)
    # Strings are kept beside the call (tests/test_review3.py):
    close(jit(grad(_vjp_with(lambda x: (2.0 * x, "two"), lambda r, ct: (2.0 * ct,))))(1.5), 2.0)
    # A number stays weakly typed, as eagerly: float32 stays float32.
    g = _vjp_with(lambda x: (2.0 * x, 2.0), lambda r, ct: (r * ct,))
    x32 = np.ones(3, np.float32)
    loss = lambda x: np.sum(g(x))                        # noqa: E731
    assert grad(loss)(x32).dtype == jit(grad(loss))(x32).dtype == np.float32
    typecheck(make_ir(grad(loss))(x32))


@pytest.mark.parametrize("kind", ["vjp", "jvp"])
def test_item13_staging_a_rule_that_uses_a_staged_value_it_does_not_take(kind):
    def f(s, x):
        return grad(lambda x: _scaled_by(s, kind)(x))(x)

    # The staged call could not see `s` when it runs: make_ir says so, jit runs f unstaged.
    with raises(errors.PullbackError, "cannot be staged", "Pass that value as an argument"):
        make_ir(f)(3.0, 2.0)
    close(jit(f)(3.0, 2.0), 3.0)
    close(jit(f)(5.0, 2.0), 5.0)


# ------------------------------------------------------------------ item 14: every composition


def _cubic_derivatives(a):
    """y(a), y'(a), y''(a) for y**3 + y = a."""
    y = _solve_cubic(a)
    d1 = 1.0 / (3.0 * y * y + 1.0)
    return y, d1, -6.0 * y * d1 ** 3


@custom_vjp
def cubic_vjp(a):
    return _solve_cubic(a)


def _cubic_fwd(a):
    y = _solve_cubic(a)              # SciPy in the rule too: reverse mode calls it on values
    return y, y


cubic_vjp.defvjp(_cubic_fwd, lambda y, ct: (ct / (3.0 * y * y + 1.0),))


@custom_jvp
def cubic_jvp(a):
    return _solve_cubic(a)


@cubic_jvp.defjvp
def _cubic_jvp_rule(primals, tangents):
    (a,), (t,) = primals, tangents
    y = _solve_cubic(a)
    return y, t / (3.0 * y * y + 1.0)


def _cubic_form(k):
    return lambda a: _cubic_derivatives(a)[k]


# (name, function, its closed forms f, f', f'', whether its rules differentiate again).
# The rules of the cubic root call SciPy on the primal values: first derivatives only.
COMPOSED = [row + (True,) for row in FUNCTIONS] + [
    (name, F, _cubic_form(0), _cubic_form(1), _cubic_form(2), False)
    for name, F in (("cubic_vjp", cubic_vjp), ("cubic_jvp", cubic_jvp))]


def g_gradient(f0, f1, x):
    """The gradient of g_of(F) from the closed forms of F and F'."""
    gradient = f1(x) * x + f0(x)
    gradient[0] += f1(x[0]) * x[1] ** 2
    gradient[1] += 2 * f0(x[0]) * x[1]
    return gradient


@pytest.mark.parametrize("name, F, f0, f1, f2, second_order", COMPOSED,
                         ids=[row[0] for row in COMPOSED])
def test_item14_custom_rules_around_untraceable_code_in_every_composition(
        name, F, f0, f1, f2, second_order):
    g = g_of(F)
    value, gradient = g(X), grad(g)(X)
    close(value, g_of(f0)(X), 1e-11)
    close(gradient, g_gradient(f0, f1, X), 1e-11)
    check_grads(g, (X,), order=2 if second_order else 1, eps=1e-4, tol=1e-6)
    per_example = np.stack([grad(g)(x) for x in XS])
    jacobian = np.diag(f1(X))
    first_order = {
        "jit(g)": (lambda: jit(g)(X), value),
        "jit(grad(g))": (lambda: jit(grad(g))(X), gradient),
        "grad(jit(g))": (lambda: grad(jit(g))(X), gradient),
        "vmap(grad(g))": (lambda: vmap(grad(g))(XS), per_example),
        "jit(vmap(grad(g)))": (lambda: jit(vmap(grad(g)))(XS), per_example),
        "vmap(jit(grad(g)))": (lambda: vmap(jit(grad(g)))(XS), per_example),
        "jacfwd(F)": (lambda: jacfwd(F)(X), jacobian),
        "jacrev(F)": (lambda: jacrev(F)(X), jacobian),
        "jit(jacfwd(F))": (lambda: jit(jacfwd(F))(X), jacobian),
        "jit(jacrev(F))": (lambda: jit(jacrev(F))(X), jacobian),
        "vmap(jacfwd(F))": (lambda: vmap(jacfwd(F))(XS), np.stack([np.diag(f1(x)) for x in XS])),
    }
    for composition, (run, want) in first_order.items():
        close(run(), want, 1e-11)
    if not second_order:
        return
    hessian_ = g_hessian(f0, f1, f2, X)
    v = rng.standard_normal(X.shape)
    for mode in HESSIAN_MODES:
        close(hessian(g, mode=mode)(X), hessian_, 1e-11)
        close(jit(hessian(g, mode=mode))(X), hessian_, 1e-11)
        close(hvp(g, X, v, mode=mode), hessian_ @ v, 1e-11)
        close(jit(lambda x, v: hvp(g, x, v, mode=mode))(X, v), hessian_ @ v, 1e-11)
    close(vmap(hessian(g))(XS), np.stack([g_hessian(f0, f1, f2, x) for x in XS]), 1e-11)


def test_item14_expm_with_a_scipy_reverse_rule():
    @custom_vjp
    def expm(a):
        return scipy.linalg.expm(a)

    def bwd(a, ct):      # <ct, d expm(a)[e]> = <expm_frechet(a.T, ct), e>
        return (scipy.linalg.expm_frechet(a.T, ct, compute_expm=False),)

    expm.defvjp(lambda a: (scipy.linalg.expm(a), a), bwd)
    weights = rng.standard_normal((3, 3))
    loss = lambda a: np.sum(expm(a) * weights)          # noqa: E731
    a = 0.5 * rng.standard_normal((3, 3))
    gradient = grad(loss)(a)
    check_grads(loss, (a,), order=1, modes=("reverse",), eps=1e-5, tol=1e-7)
    close(jit(grad(loss))(a), gradient)
    close(grad(jit(loss))(a), gradient)
    batch = np.stack([a, -a, 0.5 * a])
    close(vmap(grad(loss))(batch), np.stack([grad(loss)(b) for b in batch]))
    close(jit(vmap(grad(loss)))(batch), np.stack([grad(loss)(b) for b in batch]))


# ------------------------------------------------------------------ item 20: keywords, static args


@custom_vjp
def scaled_vjp(x, scale=2.0):
    return x * scale


scaled_vjp.defvjp(lambda x, scale: (x * scale, (x, scale)),
                  lambda res, ct: (ct * res[1], np.sum(ct * res[0])))


@custom_jvp
def scaled_jvp(x, scale=2.0):
    return x * scale


@scaled_jvp.defjvp
def _scaled_jvp_rule(primals, tangents):
    (x, scale), (tx, tscale) = primals, tangents
    return x * scale, tx * scale + x * tscale


@pytest.mark.parametrize("F", [scaled_vjp, scaled_jvp], ids=["vjp", "jvp"])
def test_item20_keyword_arguments_are_resolved_to_positions(F):
    x = np.array([1.0, -2.0])
    for out in (F(x), F(x, 2.0), F(x, scale=2.0), F(scale=2.0, x=x)):
        close(out, 2.0 * x)
    close(grad(lambda x: np.sum(F(x=x, scale=3.0)))(x), [3.0, 3.0])
    close(grad(lambda s: np.sum(F(x, scale=s)))(3.0), -1.0)
    close(grad(lambda x: np.sum(F(x)))(x), [2.0, 2.0])     # the default is an argument too
    close(jit(lambda x: F(x, scale=3.0))(x), 3.0 * x)
    close(jit(grad(lambda s: np.sum(F(scale=s, x=x))))(3.0), -1.0)
    close(vmap(lambda x: F(x=x, scale=3.0))(np.stack([x, x])), np.stack([3.0 * x] * 2))
    check_grads(lambda x, s: F(x=x, scale=s), (x, 3.0), order=2)
    with raises(errors.CustomRuleError, "called with arguments that do not match its signature",
                "bogus"):
        F(x, bogus=1.0)

    @custom_vjp
    def keyword_only(x, *, power):
        return x ** power

    keyword_only.defvjp(lambda x, *, power: (x, x), lambda x, ct: (ct,))
    with raises(errors.CustomRuleError, "keyword argument(s) power", "keyword-only", "positional"):
        keyword_only(x, power=2)


class Activation:
    """A static configuration: a function and its derivative."""

    def __init__(self, fn, derivative):
        self.fn, self.derivative = fn, derivative


TANH = Activation(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2)


@functools.partial(custom_vjp, nondiff_argnums=(0, 2))
def activate_vjp(activation, x, sharpness):
    return activation.fn(sharpness * x)


activate_vjp.defvjp(lambda activation, x, sharpness: (activate_vjp(activation, x, sharpness), x),
                    lambda activation, sharpness, x, ct: (
                        ct * sharpness * activation.derivative(sharpness * x),))


@custom_jvp(nondiff_argnums=(0, 2))
def activate_jvp(activation, x, sharpness):
    return activation.fn(sharpness * x)


@activate_jvp.defjvp
def _activate_jvp_rule(activation, sharpness, primals, tangents):
    (x,), (t,) = primals, tangents
    return (activate_jvp(activation, x, sharpness),
            sharpness * activation.derivative(sharpness * x) * t)


@pytest.mark.parametrize("F", [activate_vjp, activate_jvp], ids=["vjp", "jvp"])
def test_item20_nondiff_argnums_pass_static_values_to_the_rules(F):
    x = np.array([0.3, -0.2, 0.5])
    want = 3.0 * (1.0 - np.tanh(3.0 * x) ** 2)
    close(F(TANH, x, 3), np.tanh(3.0 * x))
    close(F(TANH, sharpness=3, x=x), np.tanh(3.0 * x))
    g = lambda x: np.sum(F(TANH, x, 3) * x)       # noqa: E731
    close(grad(lambda x: np.sum(F(TANH, x, 3)))(x), want)
    close(jacfwd(lambda x: F(TANH, x, 3))(x), np.diag(want))
    close(jit(grad(lambda x: np.sum(F(TANH, x, 3))))(x), want)
    close(vmap(grad(lambda x: np.sum(F(TANH, x, 3))))(np.stack([x, x])), np.stack([want] * 2))
    check_grads(lambda x: F(TANH, x, 3), (x,), order=2)
    for mode in HESSIAN_MODES:
        close(hessian(g, mode=mode)(x), hessian(lambda x: np.sum(np.tanh(3.0 * x) * x))(x))
    close(jit(hessian(g))(x), hessian(lambda x: np.sum(np.tanh(3.0 * x) * x))(x))


def test_item20_custom_rule_decorators_with_arguments():
    def add_noise(rng_fn, x):
        return x + 0.0 * rng_fn()

    for make in (lambda f: custom_vjp(f, nondiff_argnums=(0,)),
                 custom_vjp(nondiff_argnums=(0,)),
                 functools.partial(custom_vjp, nondiff_argnums=(0,))):
        f = make(add_noise)
        assert isinstance(f, custom_vjp) and f.__name__ == "add_noise"
        f.defvjp(lambda rng_fn, x: (x, None), lambda rng_fn, _, ct: (3.0 * ct,))
        close(grad(f, argnums=1)(rng.random, 1.0), 3.0)
    for make in (lambda f: custom_jvp(f, nondiff_argnums=(0,)),
                 custom_jvp(nondiff_argnums=(0,)),
                 functools.partial(custom_jvp, nondiff_argnums=(0,))):
        f = make(add_noise)
        assert isinstance(f, custom_jvp) and f.__name__ == "add_noise"
        f.defjvp(lambda rng_fn, primals, tangents: (primals[0], 3.0 * tangents[0]))
        close(grad(f, argnums=1)(rng.random, 1.0), 3.0)


def test_item20_errors_for_static_arguments():
    @custom_vjp
    def apply(fn, x):
        return fn(x)

    apply.defvjp(lambda fn, x: (fn(x), x), lambda x, ct: (None, 2.0 * x * ct))
    with raises(errors.CustomRuleError, "argument 0 of `apply` is (or contains) a ufunc",
                "list it in nondiff_argnums", "nondiff_argnums=(0,)"):
        apply(np.square, 2.0)
    with raises(errors.CustomRuleError, "argument 1 of `apply` is (or contains) a str"):
        apply(2.0, {"a": np.ones(2), "b": "text"})
    with raises(errors.CustomRuleError, "argument 2 of `activate_vjp` is listed in nondiff_argnums",
                "traced array", "pass arrays as ordinary arguments"):
        grad(lambda s: np.sum(activate_vjp(TANH, np.ones(2), s)))(3.0)
    def wrong(f, x):
        return f(x)

    wrong = custom_jvp(wrong, nondiff_argnums=3)
    wrong.defjvp(lambda f, primals, tangents: (f(*primals), tangents[0]))
    with raises(errors.CustomRuleError, "nondiff_argnums of `wrong` contains 3",
                "called with 2 argument(s)"):
        wrong(np.sin, 1.0)
    f = custom_vjp(lambda f, x: f(x), nondiff_argnums=(0,))
    f.defvjp(lambda f, x: (f(x), x), lambda f, x, ct: (ct, ct))
    with raises(errors.CustomRuleError, "one cotangent per argument not in nondiff_argnums (1)",
                "tuple of length 2"):
        grad(f, argnums=1)(np.sin, 1.0)
