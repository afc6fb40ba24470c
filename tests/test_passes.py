"""IR passes: each fires on targeted programs and keeps results, dtypes and shapes;
optimize() on staged derivative programs preserves them, typechecks and is idempotent."""
import numpy as np
import pytest

import pullback
from pullback.core.primitive import ShapeDtype
from pullback.ir import passes
from pullback.ir.jit import make_ir
from pullback.ir.passes import (PASSES, eliminate_common_subexpressions, eliminate_dead_code,
                                fold_constants, optimize, simplify)
from pullback.ir.program import Equation, Literal, Program, Var, evaluate, typecheck
from pullback.operators import HESSIAN_MODES
from pullback.primitives import elementwise as E
from pullback.primitives import reductions as R
from pullback.primitives import structural as S
from pullback.primitives.linalg import inv

rng = np.random.default_rng(0)


class Builder:
    """Write a program equation by equation: `b(prim, x, 2.0, axis=...)` appends one."""

    def __init__(self):
        self.invars, self.constvars, self.consts, self.equations = [], [], [], []

    def input(self, shape=(3,), dtype=np.float64, weak=False):
        var = Var(ShapeDtype(tuple(shape), np.dtype(dtype)), weak=weak)
        self.invars.append(var)
        return var

    def const(self, value):
        var = Var(ShapeDtype(np.shape(value), np.asarray(value).dtype))
        self.constvars.append(var)
        self.consts.append(value)
        return var

    def __call__(self, primitive, *inputs, **params):
        inputs = [x if type(x) is Var else Literal(x) for x in inputs]
        aval = primitive.shape(*[x.value if type(x) is Literal else
                                 (x.aval.dtype.type(1).item() if x.weak else x.aval)
                                 for x in inputs], **params)
        out = Var(ShapeDtype(tuple(aval.shape), np.dtype(aval.dtype)))
        self.equations.append(Equation(primitive, inputs, params, [out]))
        return out

    def program(self, *outs):
        return Program(self.invars, self.constvars, self.consts, self.equations, list(outs))


def random_args(program):
    return [v.aval.dtype.type(rng.uniform(0.5, 1.5)).item() if v.weak else
            rng.uniform(-1.5, 1.5, v.aval.shape).astype(v.aval.dtype) for v in program.invars]


def assert_same_results(before, after, args=None, rtol=1e-12):
    args = random_args(before) if args is None else args
    with np.errstate(invalid="ignore"):
        results = zip(evaluate(before, *args), evaluate(after, *args))
    for a, b in results:
        assert np.shape(a) == np.shape(b) and np.result_type(a) == np.result_type(b)
        scale = np.max(np.abs(a[np.isfinite(a)]), initial=0)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * (1 + scale), equal_nan=True)


def applied(pass_, program):
    """Run a pass, checking it typechecks and leaves its input untouched."""
    text = str(program)
    result = pass_(program)
    typecheck(result)
    assert str(program) == text
    return result


def simplified(program):
    return applied(eliminate_dead_code, applied(simplify, program))


def names(program):
    return [eq.primitive.name for eq in program.equations]


# ---------------------------------------------------------------- dead code

def test_dead_code_elimination_drops_unused_equations_and_constants():
    b = Builder()
    x, c, unused = b.input(), b.const(np.arange(3.0)), b.const(np.ones(3))
    kept = b(E.multiply, b(E.sin, x), c)
    b(E.cos, b(E.add, x, unused))
    p = b.program(kept)
    q = applied(eliminate_dead_code, p)
    assert (len(p.equations), len(p.consts)) == (4, 2)
    assert names(q) == ["sin", "multiply"] and q.constvars == [c]
    assert_same_results(p, q)


# ---------------------------------------------------- common subexpressions

def test_cse_reuses_equal_equations_commuted_operands_and_equal_constants():
    b = Builder()
    x = b.input((2, 3))
    c1, c2 = b.const(np.arange(3.0)), b.const(np.arange(3.0))
    s1, s2 = b(E.sin, x), b(E.sin, x)
    m1, m2 = b(E.multiply, 2.0, s1), b(E.multiply, s2, 2.0)
    r1, r2 = b(R.sum, x, axis=(0,), keepdims=False), b(R.sum, x, axis=(0,), keepdims=False)
    r3 = b(R.sum, x, axis=(1,), keepdims=False)
    k1, k2 = b(E.add, r1, c1), b(E.add, c2, r2)
    p = b.program(b(E.add, m1, m2), k1, k2, r3)
    q = applied(eliminate_dead_code, applied(eliminate_common_subexpressions, p))
    assert len(p.equations) == 10 and len(q.equations) == 6 and len(q.consts) == 1
    assert q.outvars[1] is q.outvars[2]
    assert_same_results(p, q)


def test_cse_keeps_apart_what_differs_in_type_sign_or_identity():
    b = Builder()
    x = b.input()
    outs = [b(E.add, x, 0.0), b(E.add, x, -0.0), b(E.add, x, 0), b(E.add, x, False)]
    p = b.program(*outs)
    assert len(applied(eliminate_common_subexpressions, p).equations) == 4
    freeze = passes._freeze
    assert freeze((1, 2.0)) != freeze((1.0, 2.0)) != freeze((True, 2.0))
    assert freeze(np.dtype("float32")) == freeze(np.dtype(np.float32)) != freeze(np.float32)
    assert freeze(lambda: 0) != freeze(lambda: 0) and freeze(len) == freeze(len)
    assert freeze({"index": (S.Slice(0, None, 2),)}) == freeze({"index": (S.Slice(0, None, 2),)})


# ---------------------------------------------------------- constant folding

def test_fold_constants_evaluates_constant_equations_once_keeping_array_types():
    b = Builder()
    x = b.input(dtype=np.float32)
    c = b.const(np.arange(3.0))
    total = b(R.sum, b(E.exp, c), axis=(0,), keepdims=False)      # float64 0-d
    literal_only = b(E.multiply, 2.0, 3.0)
    p = b.program(b(E.add, x, total), b(E.multiply, x, literal_only))
    q = applied(fold_constants, p)
    assert names(q) == ["add", "multiply"]
    assert q.outvars[0].aval.dtype == np.float64           # float32 + strong float64 0-d
    assert all(hasattr(v, "dtype") for v in q.consts)      # NumPy values, not Python scalars
    assert_same_results(p, q)


def test_fold_constants_leaves_large_results_and_failing_equations(monkeypatch):
    b = Builder()
    singular = b.const(np.zeros((2, 2)))
    failing = b(inv, singular)
    big = b(E.exp, b.const(np.ones(8)))
    p = b.program(failing, big)
    monkeypatch.setattr(passes, "MAX_FOLD_SIZE", 4)
    assert names(applied(fold_constants, p)) == ["inv", "exp"]


# -------------------------------------------------- algebraic simplification

def test_multiplication_by_one_and_addition_of_zero_are_removed_when_types_agree():
    b = Builder()
    x, x32, row = b.input(), b.input(dtype=np.float32), b.input((2, 3))
    ones, zeros = b.const(np.ones(3)), b.const(np.zeros((2, 3)))
    outs = [b(E.multiply, x, 1.0), b(E.multiply, 1, x), b(E.multiply, x, ones),
            b(E.add, x32, 0.0), b(E.add, 0, x32), b(E.subtract, x, 0.0), b(E.add, zeros, row),
            b(E.add, x, zeros),                     # x broadcast to the zeros' shape (2, 3)
            b(E.add, x32, b.const(np.zeros(3))),    # float32 + float64 zeros is float64: kept
            b(E.multiply, x32, ones)]               # likewise
    p = b.program(*outs)
    q = simplified(p)
    assert names(q) == ["broadcast_to", "add", "multiply"]
    assert q.outvars[:3] == [x] * 3 and q.outvars[3:5] == [x32] * 2 and q.outvars[6] is row
    assert q.outvars[7].aval.shape == (2, 3)
    assert_same_results(p, q)


def test_multiplication_by_zero_folds_only_for_finite_operands():
    b = Builder()
    x, n = b.input(), b.input(dtype=np.int64)
    mask = b(S.convert, b(E.less, x, 0.0), dtype=np.dtype(np.float64))
    outs = [b(E.multiply, x, 0.0), b(E.multiply, b.const(np.zeros(3)), x),
            b(E.multiply, n, 0), b(E.multiply, mask, 0.0)]
    p = b.program(*outs)
    q = simplified(p)
    assert names(q) == ["multiply", "multiply"]        # x * 0 stays: inf * 0 is NaN
    x_value = np.array([np.inf, np.nan, 1.0])
    with np.errstate(invalid="ignore"):
        out = evaluate(q, x_value, np.arange(3))
    assert np.isnan(out[0][:2]).all() and np.isnan(out[1][:2]).all()
    assert_same_results(p, q, [x_value, np.arange(3)])


def test_negations_cancel_and_fold_into_add_and_subtract():
    b = Builder()
    x, y = b.input(), b.input()
    outs = [b(E.negative, b(E.negative, x)), b(E.add, x, b(E.negative, y)),
            b(E.add, b(E.negative, x), y), b(E.subtract, x, b(E.negative, y)),
            b(E.subtract, 0.0, y)]
    p = b.program(*outs)
    q = simplified(p)
    assert names(q) == ["subtract", "subtract", "add", "negative"] and q.outvars[0] is x
    assert_same_results(p, q, rtol=0)


def test_weakly_typed_operands_are_not_substituted():
    b = Builder()
    x32, s = b.input(dtype=np.float32), b.input((), weak=True)
    outs = [b(E.add, x32, b(E.negative, s)),                    # float64 here, float32 if folded
            b(E.negative, b(E.negative, s)),                    # float64 array, s a Python float
            b(E.less, x32, b(S.broadcast_to, s, shape=(3,)))]   # compares in float64
    p = b.program(*outs)
    assert len(simplified(p).equations) == len(p.equations)


def test_transposes_reshapes_broadcasts_and_conversions_collapse():
    b = Builder()
    x, v = b.input((2, 3, 4)), b.input((3,))
    back = b(S.transpose, b(S.transpose, x, axes=(1, 2, 0)), axes=(2, 0, 1))
    composed = b(S.transpose, b(S.transpose, x, axes=(1, 0, 2)), axes=(0, 2, 1))
    reshaped = b(S.reshape, b(S.reshape, x, shape=(6, 4)), shape=(4, 6))
    same = b(S.reshape, b(S.transpose, x, axes=(0, 1, 2)), shape=(2, 3, 4))
    broadcast = b(S.broadcast_to, b(S.broadcast_to, v, shape=(4, 3)), shape=(2, 4, 3))
    unchanged = b(S.convert, b(S.broadcast_to, v, shape=(3,)), dtype=np.dtype(np.float64))
    widened = b(S.convert, v, dtype=np.dtype(np.float32))
    whole = b(S.getitem, x, index=(S.Slice(0, 2, None), Ellipsis))
    flipped = b(S.getitem, v, index=(S.Slice(None, None, -1),))
    p = b.program(back, composed, reshaped, same, broadcast, unchanged, widened, whole, flipped)
    q = simplified(p)
    assert names(q) == ["transpose", "reshape", "broadcast_to", "convert", "getitem"]
    assert q.outvars[0] is x and q.outvars[3] is x and q.outvars[5] is v and q.outvars[7] is x
    assert q.equations[0].params == {"axes": (1, 2, 0)}
    assert_same_results(p, q, rtol=0)


def test_broadcast_feeding_an_elementwise_primitive_is_read_directly():
    b = Builder()
    x, s, col = b.input((2, 3)), b.input(()), b.input((2, 1))
    outs = [b(E.multiply, x, b(S.broadcast_to, s, shape=(2, 3))),
            b(E.where, b(E.greater, x, 0.0), b(S.broadcast_to, col, shape=(2, 3)), x),
            b(E.add, b(S.broadcast_to, s, shape=(2, 3)), b(S.broadcast_to, s, shape=(2, 3)))]
    p = b.program(*outs)
    q = simplified(p)
    # The last add keeps one broadcast: reading s twice would give a 0-d result.
    assert names(q).count("broadcast_to") == 1 and len(q.equations) == 5
    assert_same_results(p, q, rtol=0)


def test_sum_of_a_broadcast_becomes_a_multiplication_or_a_smaller_sum():
    b = Builder()
    s, v, col = b.input(()), b.input((3,)), b.input((2, 1))
    s32, n = b.input((), np.float32), b.input((3,), np.int64)
    outs = [b(R.sum, b(S.broadcast_to, s, shape=(5,)), axis=(0,), keepdims=False),
            b(R.sum, b(S.broadcast_to, v, shape=(4, 3)), axis=(0, 1), keepdims=False),
            b(R.sum, b(S.broadcast_to, v, shape=(4, 3)), axis=(0,), keepdims=True),
            b(R.sum, b(S.broadcast_to, col, shape=(2, 6)), axis=(1,), keepdims=False),
            b(R.sum, b(S.broadcast_to, s32, shape=(7, 2)), axis=(0, 1), keepdims=False),
            b(R.sum, b(S.broadcast_to, n, shape=(2, 3)), axis=(0,), keepdims=False)]
    p = b.program(*outs)
    q = simplified(p)
    assert names(q) == ["multiply", "sum", "multiply", "multiply", "broadcast_to", "multiply",
                        "reshape", "multiply", "broadcast_to", "sum"]
    assert [v.aval for v in q.outvars] == [v.aval for v in p.outvars]
    assert_same_results(p, q, rtol=1e-6)          # reassociation: n * v for v + ... + v


# --------------------------------------------------- staged derivative programs

def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def extended_rosenbrock(x):
    return np.sum(100 * (x[1::2] - x[0::2] ** 2) ** 2 + (1 - x[0::2]) ** 2)


W1, W2 = rng.standard_normal((4, 5)), rng.standard_normal(5)


def mlp(x):
    return np.sum(np.tanh(np.tanh(x @ W1.astype(x.dtype)) * W2.astype(x.dtype)) ** 2)


X, Y = rng.standard_normal((6, 4)), rng.integers(0, 2, 6)


def logistic(w):
    z = X.astype(w.dtype) @ w
    return np.sum(np.logaddexp(0.0, z) - Y * z) + 0.1 * np.sum(w ** 2)


def indexing(x):
    y = np.concatenate([x[::2] ** 2, np.sin(x[1:3]), x[[0, 3, 3]]])
    return np.sum(y * np.cumsum(y))


def contraction(x):
    a = np.reshape(x, (2, 2))
    return np.einsum("ij,jk,ki->", a, a.T, a) + np.sum(np.where(x > 0, x ** 3, -x))


FUNCTIONS = [rosenbrock, mlp, logistic, indexing, contraction]
TRANSFORMS = {
    "grad": lambda f: pullback.grad(f),
    **{mode: (lambda m: lambda f: pullback.hessian(f, mode=m))(mode) for mode in HESSIAN_MODES},
    "hvp": lambda f: lambda x, v: pullback.hvp(f, x, v),
    "vmap-grad": lambda f: pullback.vmap(pullback.grad(f)),
}


def arguments(transform, dtype):
    x = rng.uniform(-1, 1, 4).astype(dtype)
    if transform == "hvp":
        return x, rng.uniform(-1, 1, 4).astype(dtype)
    return (rng.uniform(-1, 1, (3, 4)).astype(dtype),) if transform == "vmap-grad" else (x,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("f", FUNCTIONS, ids=[f.__name__ for f in FUNCTIONS])
def test_optimize_preserves_staged_derivative_programs(f, transform, dtype):
    args = arguments(transform, dtype)
    p = make_ir(TRANSFORMS[transform](f))(*args)
    text = str(p)
    q = optimize(p)
    assert str(p) == text
    typecheck(q)
    assert len(q.equations) <= len(p.equations)
    assert str(optimize(q)) == str(q), "optimize is not idempotent"
    fresh = arguments(transform, dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_same_results(p, q, fresh, rtol)
    for pass_ in PASSES:
        assert_same_results(p, applied(pass_, p), fresh, rtol)
    expected = TRANSFORMS[transform](f)(*fresh)
    assert evaluate(q, *fresh)[0].dtype == np.asarray(expected).dtype == dtype


@pytest.mark.parametrize("n", [4, 100])
def test_passes_shrink_the_extended_rosenbrock_hessian_by_at_least_30_percent(n, capsys):
    p = make_ir(pullback.hessian(extended_rosenbrock))(np.zeros(n))
    q = optimize(p)
    before, after = len(p.equations), len(q.equations)
    with capsys.disabled():
        print(f"\nextended Rosenbrock Hessian (forward-over-reverse), n={n}: "
              f"{before} equations before, {after} after "
              f"{', '.join(p.__name__ for p in PASSES)}")
    assert after <= 0.7 * before
    x = rng.uniform(-1, 1, n)
    assert_same_results(p, q, [x])
    np.testing.assert_allclose(evaluate(q, x)[0], pullback.hessian(extended_rosenbrock)(x),
                               rtol=1e-12)
