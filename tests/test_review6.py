"""Sixth correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet in the newest fast paths (the reverse tracer's own
operators, in-place cotangent sums, jit's snapshot) and the families reviewed least (sparse
plans, loops, vmap, linear algebra, custom rules). Each test is named after the defect it
pins down."""
import dataclasses
import types

import numpy as np
import pytest

import pullback
from helpers import raises
from pullback import cond, fori_loop, scan, switch, while_loop
from pullback.errors import CustomRuleError


# ------------------------------------ loops


_PARAMETERS = None     # a global array that a loop body reads

_LOOPS = {
    "fori_loop": lambda x, step: fori_loop(0, 2, lambda i, c: step(c), x),
    "scan": lambda x, step: scan(lambda c, t: (step(c), c), x, None, length=2)[0],
    "while_loop": lambda x, step: while_loop(lambda v: v[1] < 2,
                                             lambda v: (step(v[0]), v[1] + 1), (x, 0))[0],
    "cond": lambda x, step: cond(True, step, lambda c: c, x),
    "switch": lambda x, step: switch(1, [lambda c: c, step], x),
    "checkpoint": lambda x, step: pullback.checkpoint(step)(x),
}


@pytest.mark.parametrize("size", [2, 10_000])         # (kept whole, kept as a digest)
@pytest.mark.parametrize("loop", sorted(_LOOPS))
def test_item1_a_loop_body_reading_an_array_written_into_since_is_staged_again(loop, size,
                                                                              monkeypatch):
    """A body's program was cached by the identity of the arrays it reads, but Python code
    in the body may read their values while it is staged (`W[0]` is then a constant of the
    program): after the user wrote into the array, fori_loop, scan, while_loop, cond and
    switch kept computing with the old value, their results and gradients silently stale
    (4.0 for 9.0). Arrays are now compared by content before a program is reused, and a body
    reading an unchanged array is still staged once."""
    global _PARAMETERS
    _PARAMETERS = parameters = np.full(size, 2.0)   # updated in place between calls

    def step(c):
        return c * _PARAMETERS[0]

    def f(x):
        return np.sum(_LOOPS[loop](x, step))
    x = np.array([1.0, 0.5])
    power = 1 if loop in ("cond", "switch", "checkpoint") else 2
    for a in (2.0, 3.0, 2.0):
        parameters[0] = a
        np.testing.assert_allclose(f(x), 1.5 * a ** power)
        np.testing.assert_allclose(pullback.grad(f)(x), [a ** power] * 2)
        np.testing.assert_allclose(pullback.jacfwd(f)(x), [a ** power] * 2)
    from pullback.loops import bodies
    stagings = []
    original = bodies._stage_function
    monkeypatch.setattr(bodies, "_stage_function",
                        lambda *args: stagings.append(args) or original(*args))
    for _ in range(2):
        f(x)
    assert len(stagings) <= (2 if loop == "checkpoint" else 1)   # (checkpoint: at each call)


class _Slots:
    __slots__ = ("rate",)

    def __init__(self, rate):
        self.rate = rate


@dataclasses.dataclass(slots=True)
class _SlotsData:
    rate: float


class _Hyper:
    rate = 2.0


class _Model:
    """A user's class whose method reads a module global."""
    def scaled(self, c):
        return c * _RATE


_RATE = 2.0
_SETTINGS = types.ModuleType("pullback_test_settings")
_SETTINGS.rate = 2.0


def _holder(kind):
    """(a step reading a number held so, a function setting that number)."""
    holders = {"slots": _Slots, "dataclass slots": _SlotsData,
               "namespace": lambda rate: types.SimpleNamespace(rate=rate),
               "class attribute": lambda rate: _Hyper, "module attribute": lambda rate: _SETTINGS}
    if kind in holders:
        holder = holders[kind](2.0)
        return (lambda c: c * holder.rate), (lambda a: setattr(holder, "rate", a))
    return _Model().scaled, (lambda a: globals().__setitem__("_RATE", a))


@pytest.mark.parametrize("kind", ["slots", "dataclass slots", "namespace", "class attribute",
                                  "module attribute", "method reading a global"])
@pytest.mark.parametrize("loop", sorted(_LOOPS))
def test_a_loop_body_reading_a_number_through_an_object_sees_its_new_value(loop, kind):
    """A body's cache key held an object without a `__dict__` (`__slots__`, a dataclass
    with slots), a class and a module by identity: after `cfg.rate = 3.0` (or
    `Hyper.rate`, `settings.RATE`) scan and fori_loop kept the number the program was
    staged with, their values and gradients stale (2.625 for 12.0), and a sparse plan
    reading a matrix so gave wrong entries. Slots are read as attributes are, and the
    user's modules and classes by the attributes the code names."""
    step, set_rate = _holder(kind)

    def f(x):
        return np.sum(_LOOPS[loop](x, step))
    x = np.array([1.0, 0.5])
    power = 1 if loop in ("cond", "switch", "checkpoint") else 2
    try:
        for a in (2.0, 3.0, 2.0):
            set_rate(a)
            np.testing.assert_allclose(f(x), 1.5 * a ** power)
            np.testing.assert_allclose(pullback.grad(f)(x), [a ** power] * 2)
            np.testing.assert_allclose(pullback.jacfwd(f)(x), [a ** power] * 2)
    finally:
        set_rate(2.0)


def test_item1_a_while_loop_predicate_reading_an_array_written_into_since_is_staged_again():
    """The same for a predicate: `v[1] < steps[0]` kept the first number of steps."""
    steps = np.array([3])

    def f(x):
        return while_loop(lambda v: v[1] < steps[0], lambda v: (v[0] * 2.0, v[1] + 1), (x, 0))[0]
    for n in (3, 5, 3):
        steps[0] = n
        assert f(1.0) == 2.0 ** n and pullback.grad(f)(1.0) == 2.0 ** n


# ------------------------------------ custom rules


def test_item2_custom_vjp_rule_with_a_constant_cotangent_term_is_refused_in_forward_mode():
    """A bwd rule that is not linear in the cotangent (here ct cos(x) + 1) gave jacrev
    cos(x) + 1 in every entry but jacfwd diag(cos(x)): forward mode transposes bwd at zero
    cotangents, where the constant is invisible. bwd's results there are now checked (where
    known), as a custom_jvp rule's tangents are in reverse mode."""
    @pullback.custom_vjp
    def affine(a):
        return np.sin(a)
    affine.defvjp(lambda a: (np.sin(a), np.cos(a)), lambda c, ct: (ct * c + 1.0,))
    x = np.array([0.5, 1.0])
    with raises(CustomRuleError, "nonzero cotangents for zero output cotangents"):
        pullback.jacfwd(affine)(x)
    with raises(CustomRuleError, "linear in the output cotangents"):
        pullback.pushforward(affine, (x,), (x,))

    @pullback.custom_vjp
    def linear(a):
        return np.sin(a)
    linear.defvjp(lambda a: (np.sin(a), np.cos(a)), lambda c, ct: (ct * c,))
    np.testing.assert_allclose(pullback.jacfwd(linear)(x), np.diag(np.cos(x)))


# ------------------------------------ NumPy's functions


def _numpy_unary_ufuncs():
    from pullback.numpy._elementwise import UFUNCS
    return sorted((u for u in UFUNCS if isinstance(u, np.ufunc) and u.nin == 1 and u.nout == 1
                   and getattr(np, u.__name__, None) is u),
                  key=lambda u: u.__name__)


@pytest.mark.parametrize("ufunc", _numpy_unary_ufuncs(), ids=lambda u: u.__name__)
def test_item3_ufuncs_take_the_dtypes_numpys_take_and_compute_in_its_dtype(ufunc):
    """np.fabs, np.deg2rad (np.radians) and np.rad2deg (np.degrees) of complex values, which
    NumPy refuses (no complex loop), returned |z| and z * pi / 180 on traced values; under
    jit they kept integer and boolean inputs in their dtype (fabs of int8: int8, NumPy's
    float16), and np.positive accepted booleans. Every NumPy ufunc of one input now takes
    and gives what NumPy's does."""
    for dtype in (np.int8, np.uint16, np.bool_, np.int64, np.float32, np.complex128):
        x = np.array([1, 2, 0]).astype(dtype)
        try:
            with np.errstate(all="ignore"):
                expected = ufunc(x)
        except TypeError:
            with pytest.raises(TypeError):
                pullback.jit(ufunc)(x)
            if dtype == np.complex128:
                with pytest.raises(TypeError):
                    pullback.grad(lambda z: np.sum(np.abs(ufunc(z))), holomorphic=False)(x)
            continue
        with np.errstate(all="ignore"):
            got = pullback.jit(ufunc)(x)
        assert got.dtype == expected.dtype, (dtype, got.dtype, expected.dtype)
        np.testing.assert_allclose(got, expected, rtol=1e-3, equal_nan=True)


_CONTRACTIONS = [(np.vecdot, (3,), ()), (np.vecdot, (), (3,)), (np.vecdot, (3,), (1,)),
                 (np.vecdot, (2, 3), (2,)), (np.matvec, (3,), (3,)), (np.matvec, (2, 3), ()),
                 (np.matvec, (2, 3), (2,)), (np.vecmat, (), (3, 2)), (np.vecmat, (3,), (2, 3)),
                 (np.vecmat, (3,), (3,))]


@pytest.mark.parametrize("function, shape_a, shape_b", _CONTRACTIONS)
def test_item4_vecdot_matvec_and_vecmat_check_their_core_dimensions(function, shape_a, shape_b):
    """np.vecdot of a vector and a scalar, or of vectors of lengths 3 and 1, which NumPy
    refuses (its core dimensions are never broadcast), returned a dot product with the
    scalar broadcast; np.matvec and np.vecmat of a scalar raised a bare IndexError from
    inside pullback. They now raise NumPy's ValueError, in every mode."""
    a, b = np.full(shape_a, 0.5), np.full(shape_b, 2.0)
    with pytest.raises(ValueError):
        function(a, b)
    for transformed in (lambda a, b: pullback.pullback(lambda t: function(t, b), a)[0],
                        lambda a, b: pullback.pullback(lambda t: function(a, t), b)[0],
                        pullback.jit(function)):
        with pytest.raises(ValueError, match="core"):
            transformed(a, b)


def test_item4_vecdot_contracts_each_operands_own_axis_in_its_dtype():
    a, b = np.arange(6.0).reshape(2, 3), np.array([[1.0], [2.0]])
    np.testing.assert_allclose(pullback.jit(lambda p, q: np.vecdot(p, q, axis=0))(a, b),
                               np.vecdot(a, b, axis=0))
    pullback.testing.check_grads(lambda p, q: np.vecdot(p, q, axis=0), (a, b), order=2)
    for dtype in (np.int8, np.bool_):
        v = np.array([1, 1, 0], dtype)
        for function in (np.vecdot, np.vdot, np.correlate):
            assert pullback.jit(function)(v, v).dtype == function(v, v).dtype


@pytest.mark.parametrize("reduction", [np.sum, np.prod, np.cumsum, np.cumprod, np.mean, np.nansum,
                                       np.nanprod], ids=lambda f: f.__name__)
def test_item5_reductions_accumulate_in_the_integer_dtype_asked_for(reduction):
    """`np.sum(x, dtype=np.int8)` of traced values returned an int64 sum (200 where NumPy's
    int8 sum wraps around to -56), and np.mean(x, dtype=np.int64) a float; they now give
    NumPy's values and dtypes, under every transformation."""
    x = np.array([0.5, 0.7, 100.9, 100.2, 49.0])
    for dtype in (np.int8, np.uint8, np.int64, np.bool_, np.float32):
        expected = reduction(x, dtype=dtype)
        for got in (pullback.pullback(lambda t: reduction(t, dtype=dtype), x)[0],
                    pullback.jit(lambda t: reduction(t, dtype=dtype))(x),
                    pullback.jit(lambda t: reduction(t, dtype=dtype))(x.astype(np.int8))):
            if got is not expected:
                assert np.asarray(got).dtype == np.asarray(expected).dtype
        np.testing.assert_array_equal(pullback.pullback(lambda t: reduction(t, dtype=dtype),
                                                        x)[0], expected)
        np.testing.assert_array_equal(pullback.jit(lambda t: reduction(t, dtype=dtype))(
            x.astype(np.int8)), reduction(x.astype(np.int8), dtype=dtype))


# ------------------------------------ sparse plans


def _sparse_plans(x, a, closure):
    """A Jacobian plan in each mode and a Hessian plan (each with its dense counterpart) of
    functions of x and the matrix a, given as an argument or read from their closure."""
    from pullback import sparse
    jacobian, hessian = (lambda x, a: a @ np.sin(x)), (lambda x, a: np.sum(np.sin(a @ x) ** 2))
    if closure:
        jacobian, hessian = ((lambda g: lambda x: g(x, a))(g) for g in (jacobian, hessian))
    args = () if closure else (a,)
    return [(sparse.prepare_jacobian(jacobian, x, *args, mode=mode), pullback.jacfwd(jacobian))
            for mode in ("forward", "reverse")] + [(sparse.prepare_hessian(hessian, x, *args),
                                                    pullback.hessian(hessian))]


@pytest.mark.parametrize("closure", [False, True], ids=["argument", "closure"])
def test_item7_a_sparse_plan_whose_constants_gained_nonzeros_refuses(closure):
    """A plan's pattern detected from f(x, a) skips the products of a's zeros; `plan(x, a2)`
    (the documented way to pass new arguments, as scipy.optimize does) with a2 nonzero where
    a was zero, or a call after the user wrote such nonzeros into an array f reads, silently
    returned the Jacobian or Hessian without those entries (off by 0.8 and 1.95 here: the
    missed nonzeros shared their compressed entries with the diagonal). Such a call now
    checks a random product too and raises PatternError; values with the same zeros, or
    more of them, cost nothing more and stay exact."""
    from pullback.errors import PatternError
    x, a = np.linspace(0.1, 1.0, 6), np.eye(6)
    for plan, dense in _sparse_plans(x, a, closure):
        for values in (2.0 * np.eye(6), np.diag(np.arange(6.0)), np.eye(6) + np.eye(6, k=3)):
            a[...] = values                     # (read through the closure, or passed)
            args = () if closure else (a,)
            if values[0, 3]:
                with raises(PatternError, "They changed, and the pattern no longer holds"):
                    plan(x, *args)
            else:
                np.testing.assert_allclose(plan(x, *args).toarray(),
                                           dense(x, *args).reshape(6, 6), atol=1e-12)
        a[...] = np.eye(6)


def test_a_sparse_plan_reading_a_matrix_through_a_slots_object_refuses_its_new_nonzeros():
    """f read `m.C` through an object with `__slots__`, which the plan's state kept by
    identity: after `m.C = C2`, C2 nonzero where C was zero, the Hessian plan returned
    H[0, 1] = 4 for 2 and no H[0, 3] (the new entry shares its compressed slot), silently.
    Slots are now read as attributes are: the call checks a random product and raises."""
    from pullback import sparse
    from pullback.errors import PatternError
    n = 12
    m = _Slots(np.eye(n) + np.eye(n, k=1) + np.eye(n, k=-1))
    f = lambda x: np.sum(x * (m.rate @ x)) + np.sum(x ** 4)    # noqa: E731
    x = np.linspace(-1.0, 1.0, n) + 0.3
    plan = sparse.prepare_hessian(f, x)
    np.testing.assert_allclose(plan(x).toarray(), pullback.hessian(f)(x), atol=1e-12)
    wider = m.rate.copy()
    wider[0, 3] = wider[3, 0] = 1.0
    m.rate = wider
    with raises(PatternError, "They changed, and the pattern no longer holds"):
        plan(x)


# ------------------------------------ minimize


def test_item6_newton_callables_refuses_an_unknown_mode_when_made():
    """An unknown mode was accepted and raised only at SciPy's first Hessian-vector product,
    deep inside scipy.optimize.minimize; it is now refused at once."""
    with raises(pullback.errors.ModeError, "newton_callables: unknown mode 'bogus'"):
        pullback.newton_callables(lambda x: np.sum(x ** 2), mode="bogus")
