"""IR passes: each fires on targeted programs and keeps results, dtypes and shapes;
optimize() on staged derivative programs preserves them, typechecks and is idempotent."""
from dataclasses import replace

import numpy as np
import pytest

import pullback
from pullback.core.primitive import ShapeDtype
from pullback.ir import passes
from pullback.ir.codegen import compile_program
from pullback.ir.jit import make_ir
from pullback.ir.passes import (PASSES, eliminate_common_subexpressions, eliminate_dead_code,
                                fold_constants, optimize, simplify)
from pullback.ir.program import Equation, Literal, Program, Var, evaluate, typecheck
from pullback.operators import HESSIAN_MODES
from pullback.primitives import contraction as C
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


def test_uniform_constants_become_literals_when_the_type_is_unchanged():
    b = Builder()
    x, x32, s = b.input(), b.input(dtype=np.float32), b.input(())
    splat, splat32 = b.const(np.full(3, 100.0)), b.const(np.full(3, 0.5, np.float32))
    outs = [b(E.multiply, splat, x),                                 # -> 100.0 * x
            b(E.subtract, x32, splat32),                             # -> x32 - 0.5, float32
            b(E.power, x, b.const(np.float64(2.0))),                 # a 0-d one -> x ** 2.0
            b(E.multiply, splat, x32),                               # float64 result: kept
            b(E.add, splat, s),                                      # it gives the shape: kept
            b(E.add, x, b.const(np.array([1.0, 1.0, 2.0]))),         # not uniform: kept
            b(E.multiply, x, b.const(np.array([0.0, -0.0, 0.0]))),   # zeros of two signs: kept
            b(E.add, x, b.const(np.full(3, np.inf)))]                # not finite: kept
    p = b.program(*outs)
    q = simplified(p)
    literals = [[x.value for x in eq.inputs if type(x) is Literal] for eq in q.equations]
    assert literals == [[100.0], [0.5], [2.0], [], [], [], [], []]
    assert all(type(v) is float for v in literals[0] + literals[1] + literals[2])
    assert [v.aval for v in q.outvars] == [v.aval for v in p.outvars]
    assert_same_results(p, q, rtol=0)


def _written(program):
    """Each output as (primitive, operands), operands a literal's value or 'x'."""
    producers = {eq.outputs[0]: eq for eq in program.equations}
    return [(producers[v].primitive.name,
             [x.value if type(x) is Literal else "x" for x in producers[v].inputs])
            for v in program.outvars]


def test_literal_scale_factors_gather():
    b = Builder()
    x, x32 = b.input(), b.input(dtype=np.float32)
    outs = [b(E.multiply, 3.0, b(E.multiply, x, 2.0)),          # -> 6.0 * x
            b(E.multiply, b(E.divide, x, 3.0), 0.5),             # -> (0.5 / 3) * x
            b(E.multiply, 2.0, b(E.negative, x)),                # -> -2.0 * x (exact)
            b(E.negative, b(E.multiply, 2.5, x)),                # -> -2.5 * x (exact)
            b(E.negative, b(E.divide, x, 3.0)),                  # -> x / -3.0 (exact)
            b(E.divide, b(E.multiply, 6.0, x32), 0.5),           # -> 12.0 * x32
            b(E.divide, b(E.divide, x, 3.0), 5.0),               # -> x / 15.0
            b(E.divide, b(E.negative, x), 3.0),                  # -> x / -3.0 (exact)
            b(E.divide, x, 8.0),                                 # -> x * 0.125 (exact)
            b(E.divide, x, 3.0),                                 # kept: 1/3 is inexact
            b(E.multiply, 1e200, b(E.multiply, 1e200, x)),       # kept: 1e400 overflows
            b(E.multiply, 1e30, b(E.multiply, 1e30, x32)),       # kept: 1e60 overflows float32
            b(E.multiply, 1e-200, b(E.multiply, 1e-200, x)),     # kept: 1e-400 underflows
            b(E.multiply, 0.5, b(E.multiply, 4.0, x)),           # kept: 4x may overflow alone
            b(E.multiply, 4.0, b(E.divide, x, 3.0))]             # kept: one grows, one shrinks
    p = b.program(*outs)
    q = simplified(p)
    assert _written(q) == [
        ("multiply", [6.0, "x"]), ("multiply", [0.5 / 3.0, "x"]), ("multiply", [-2.0, "x"]),
        ("multiply", [-2.5, "x"]), ("divide", ["x", -3.0]), ("multiply", [12.0, "x"]),
        ("divide", ["x", 15.0]), ("divide", ["x", -3.0]), ("multiply", ["x", 0.125]),
        ("divide", ["x", 3.0]), ("multiply", [1e200, "x"]), ("multiply", [1e30, "x"]),
        ("multiply", [1e-200, "x"]), ("multiply", [0.5, "x"]), ("multiply", [4.0, "x"])]
    assert len(q.equations) == 15 + 5                     # the five kept inner products
    assert [v.aval for v in q.outvars] == [v.aval for v in p.outvars]
    with np.errstate(over="ignore"):
        assert_same_results(p, q, rtol=1e-6)       # reassociation: (c*k) * x for c * (k * x)
    special = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-310])
    with np.errstate(all="ignore"):
        before = evaluate(p, special, special.astype(np.float32))
        after = evaluate(q, special, special.astype(np.float32))
    for i in (2, 3, 4, 7, 8):              # the exact ones: Inf, NaN, signed zeros, subnormals
        np.testing.assert_array_equal(after[i], before[i])
        numbers = ~np.isnan(before[i])      # (a NaN's sign bit is not specified by IEEE)
        assert np.array_equal(np.signbit(after[i][numbers]), np.signbit(before[i][numbers]))


def test_item4_scaled_copies_added_and_powers_of_two_fold_into_one_scale():
    """What reverse mode writes for 0.5 * sum(d * d) (`e = 0.5 * d; f = e + e`) is d."""
    b = Builder()
    x, x32 = b.input(), b.input(dtype=np.float32)
    half, third = b(E.multiply, 0.5, x), b(E.multiply, x32, 1 / 3)
    outs = [b(E.add, half, half),                                # -> x
            b(E.add, third, third),                              # -> (2/3) * x32
            b(E.multiply, 4.0, b(E.multiply, 0.125, x)),         # -> 0.5 * x (powers of two)
            b(E.multiply, 0.125, b(E.multiply, 4.0, x))]         # kept: 4x may overflow alone
    p = b.program(*outs)
    q = optimize(p)
    assert q.outvars[0] is p.invars[0]
    q_rest = replace(q, outvars=q.outvars[1:])
    assert _written(q_rest) == [("multiply", [2 / 3, "x"]), ("multiply", [0.5, "x"]),
                               ("multiply", [0.125, "x"])]
    special = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1.0, 1e300])
    with np.errstate(all="ignore"):
        before = evaluate(p, special, special.astype(np.float32))
        after = evaluate(q, special, special.astype(np.float32))
    for a, c in zip(before, after):
        np.testing.assert_array_equal(c, a)


def test_negations_move_out_of_products_and_quotients_to_cancel():
    b = Builder()
    x, y, z = b.input(), b.input(), b.input()
    twice = b(E.negative, z)                                 # read twice: stays where it is
    outs = [b(E.multiply, b(E.negative, x), b(E.negative, y)),          # -> x * y
            b(E.subtract, b(E.multiply, b(E.negative, x), y), z),       # -> -(x * y + z)
            b(E.add, b(E.divide, b(E.negative, x), y), z),              # -> z - x / y
            b(E.subtract, z, b(E.divide, y, b(E.negative, x))),         # -> z + y / x
            b(E.multiply, twice, y), b(E.multiply, twice, x)]
    p = b.program(*outs)
    q = optimize(p)
    typecheck(q)
    assert names(q).count("negative") == 2             # -(x * y + z), and the shared -z
    assert names(q).count("divide") == 2 and names(q).count("multiply") == 3
    assert [_written(q)[i][0] for i in range(4)] == ["multiply", "negative", "subtract", "add"]
    assert_same_results(p, q, rtol=0)
    special = np.array([np.inf, -np.inf, np.nan, 1.0, 2.0, -3.0])
    with np.errstate(all="ignore"):
        before = evaluate(p, special, special[::-1].copy(), special[[2, 0, 1, 5, 4, 3]])
        after = evaluate(q, special, special[::-1].copy(), special[[2, 0, 1, 5, 4, 3]])
    for a, c in zip(before, after):
        np.testing.assert_array_equal(c, a)


def test_embeds_at_the_same_index_are_added_before_embedding():
    b = Builder()
    u, v, v32 = b.input((2,)), b.input((2,)), b.input((2,), np.float32)
    i = b.input((2,), np.int64)
    half, at = (S.Slice(1, None, 2),), (S.ArrayIndex(0),)

    def embed(values, *arrays, index=half):
        return b(S.embed, values, *arrays, index=index, shape=(4,))
    outs = [b(E.add, embed(u), embed(v)), b(E.add, embed(u, i, index=at), embed(v, i, index=at)),
            # float32 values: the sum is float64, embed(u + v32) too, but embed(v32) is not
            b(E.add, embed(u), embed(v32))]
    p = b.program(*outs)
    q = simplified(p)
    assert names(q) == ["add", "embed", "add", "embed", "embed", "embed", "add"]
    args = [rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2).astype(np.float32),
            np.array([3, 3])]
    assert_same_results(p, q, args, rtol=1e-15)     # index 3 twice: accumulated in another order
    assert_same_results(p, q, args[:3] + [np.array([0, 2])], rtol=0)


def test_adding_an_embed_at_a_basic_index_becomes_a_scatter_add_done_in_place():
    b = Builder()
    u, v, x, x32 = b.input((2,)), b.input((2,)), b.input((4,)), b.input((4,), np.float32)
    row, i = b.input((2, 4)), b.input((2,), np.int64)
    half, front = (S.Slice(1, None, 2),), (S.Slice(None, 2, None),)
    two = b(E.add, b(S.embed, b(E.sin, u), index=half, shape=(4,)),
            b(S.embed, v, index=front, shape=(4,)))
    outs = [b(E.add, two, b(S.embed, v, index=(S.Slice(2, None, None),), shape=(4,))),
            b(E.add, x, b(S.embed, v, index=half, shape=(4,))),
            b(E.add, b(S.embed, v, index=front, shape=(4,)), x),
            b(E.add, row, b(S.embed, v, index=front, shape=(4,))),          # broadcast: kept
            b(E.add, x, b(S.embed, v, i, index=(S.ArrayIndex(0),), shape=(4,))),  # arrays: kept
            b(E.add, x32, b(S.embed, v, index=half, shape=(4,)))]           # float64 sum: kept
    p = b.program(*outs)
    q = simplified(p)
    assert names(q).count("scatter_add") == 4 and names(q).count("add") == 3
    args = [rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 4),
            rng.uniform(-1, 1, 4).astype(np.float32), rng.uniform(-1, 1, (2, 4)), np.array([1, 1])]
    assert_same_results(p, q, args, rtol=0)
    # In the fast code the chain embed -> scatter_add -> scatter_add adds in place; the
    # scatters into the input x add into a copy of it (no call of the primitive); the
    # traceable code calls the primitive.
    fast, traceable = compile_program(q, fast=True), compile_program(q, fast=False)
    assert fast.source.count("] += ") == 4 and "] += " not in traceable.source
    assert fast.source.count(".copy()") == 2 and "scatter_add" not in fast.source
    copies = [np.copy(a) for a in args]
    for fn in (fast, traceable):
        for got, expected in zip(fn(*args), evaluate(q, *args)):
            np.testing.assert_array_equal(got, expected)
        for a, c in zip(args, copies):
            np.testing.assert_array_equal(a, c)          # inputs untouched


def test_a_scatter_add_whose_operand_is_read_again_or_viewed_copies_it():
    b = Builder()
    u, v = b.input((2,)), b.input((2,))
    e1 = b(S.embed, u, index=(S.Slice(None, 2, None),), shape=(4,))
    e2 = b(S.embed, u, index=(S.Slice(None, 2, None),), shape=(4,))
    e3 = b(S.embed, u, index=(S.Slice(None, 2, None),), shape=(4,))
    later = b(S.scatter_add, e1, v, index=(S.Slice(2, None, None),))
    viewed = b(S.reshape, e2, shape=(2, 2))
    p = b.program(later, e1, b(S.scatter_add, e2, v, index=(S.Slice(2, None, None),)), viewed,
                  b(S.scatter_add, e3, v, index=(S.Slice(2, None, None),)))
    fast = compile_program(p, fast=True)
    assert fast.source.count("] += ") == 3           # into e3 (read once), copies of e1, e2
    assert fast.source.count(".copy()") == 2
    args = random_args(p)
    for got, expected in zip(fast(*args), evaluate(p, *args)):
        np.testing.assert_array_equal(got, expected)


def test_scatter_adds_filling_an_embed_piece_by_piece_become_one_concatenate():
    # The gradient of a flat parameter vector sliced into weights: every piece of the
    # leading axis placed once, so no zeros need writing or adding to.
    def chain(b, shape, pieces):
        (index, values), *rest = pieces
        x = b(S.embed, values, index=index, shape=shape)
        for index, values in rest:
            x = b(S.scatter_add, x, values, index=index)
        return x
    b = Builder()
    w, s, r = b.input((3, 2)), b.input((2,)), b.input((2, 2))
    head, tail, last = (S.Slice(None, 3, None),), (S.Slice(3, 5, None),), (5,)
    outs = [chain(b, (6, 2), [(last, s), (head, w), (tail, r)]),          # any order
            chain(b, (6, 2), [(head, w), (tail, r)]),                     # row 5 stays zero
            chain(b, (6, 2), [((S.Slice(2, 4, None),), r), (head, w), ((-1,), s)]),  # overlap
            chain(b, (4, 2), [((S.Slice(None, None, 2),), r), ((S.Slice(1, None, 2),), r)])]
    p = b.program(*outs)
    q = optimize(p)
    assert names(q).count("concatenate") == 1 and names(q).count("embed") == 3
    args = random_args(p)
    assert_same_results(p, q, args, rtol=0)
    expected = np.concatenate([args[0], args[2], args[1][None]])
    np.testing.assert_array_equal(compile_program(q)(*args)[0], expected)
    # A piece read elsewhere is not written into: the chain stays.
    b = Builder()
    u, v = b.input((2,)), b.input((2,))
    first = b(S.embed, u, index=(S.Slice(None, 2, None),), shape=(4,))
    p = b.program(b(S.scatter_add, first, v, index=(S.Slice(2, None, None),)), first)
    assert "concatenate" not in names(optimize(p))


def test_a_matrix_product_over_a_single_term_is_an_elementwise_product():
    b = Builder()
    col, row, stack, m, n = (b.input((3, 1)), b.input((1, 4)), b.input((5, 1, 4)),
                             b.input((3, 2)), b.input((2, 4)))
    outs = [b(C.matmul, col, row), b(C.matmul, col, stack),      # (3, 4), (5, 3, 4) outer products
            b(C.matmul, m, n)]                                    # a real contraction: kept
    p = b.program(*outs)
    q = simplified(p)
    assert names(q) == ["multiply", "multiply", "matmul"]
    assert [v.aval for v in q.outvars] == [v.aval for v in p.outvars]
    assert_same_results(p, q, rtol=0)


def test_an_embed_of_every_element_is_a_reshape():
    b = Builder()
    u, col = b.input((3,)), b.input((3, 1))
    column = (S.Slice(None, None, None), 0)
    whole = b(S.embed, b(E.sin, u), index=column, shape=(3, 1))
    outs = [b(E.multiply, whole, col),                                      # -> reshape
            b(E.multiply, b(S.embed, u, index=column, shape=(3, 1)), col),  # an input: kept
            b(S.embed, b(E.cos, u), index=column, shape=(3, 1)),            # an output: kept
            b(E.multiply, b(S.embed, b(E.sin, u), index=(S.Slice(None, None, -1), 0),
                            shape=(3, 1)), col)]                            # reversed: kept
    p = b.program(*outs)
    q = simplified(p)
    assert names(q).count("reshape") == 1 and names(q).count("embed") == 3
    assert_same_results(p, q, rtol=0)


def test_fast_code_squares_in_place_and_parenthesises_negative_literals():
    b = Builder()
    x = b.input()
    a = b(E.sin, x)
    c = b(E.power, a, 2)                     # a dead afterwards: np.square(a, out=a)
    d = b(E.power, -2.0, c)                  # c read again: (-2.0) ** c, not -(2.0 ** c)
    p = b.program(b(E.add, d, c))
    fast = compile_program(p, fast=True)
    assert "np.square(" in fast.source and "(-2.0) ** " in fast.source
    args = [np.array([0.5, 1.0, 1.5])]
    for fn in (fast, compile_program(p, fast=False)):
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(fn(*args)[0], evaluate(p, *args)[0])


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


def test_rosenbrock_gradient_and_hvp_programs_are_as_short_as_hand_written_numpy():
    x, v = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    for f, args, most in ((pullback.grad(rosenbrock), (x,), 13),
                          (lambda x, v: pullback.hvp(rosenbrock, x, v, "forward-over-reverse"),
                           (x, v), 19)):
        q = optimize(make_ir(f)(*args))
        assert len(q.equations) <= most and not q.consts          # 100.0 is a literal
        assert names(q).count("embed") == 1 and names(q).count("scatter_add") == 1
        assert "negative" not in names(q)
        fast = compile_program(q)
        assert "] += " in fast.source                       # the scatter adds in place
        np.testing.assert_allclose(fast(*args)[0], f(*args), rtol=1e-12)


@pytest.mark.parametrize("n", [4, 100])
def test_passes_shrink_the_extended_rosenbrock_hessian_by_at_least_30_percent(n, capsys):
    p = make_ir(pullback.hessian(extended_rosenbrock, mode="forward-over-reverse"))(np.zeros(n))
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


def test_issue12_power_of_two_factors_move_to_the_smallest_side_of_a_matrix_product():
    rng = np.random.default_rng(5)
    a, b, small = rng.standard_normal((60, 40)), rng.standard_normal((40, 3)), \
        rng.standard_normal((5, 40))

    def f(a, b, small):
        return ((-2.0 * a) @ b,                 # -> a @ (-2.0 * b): 120 products, not 2,400
                0.5 * (small @ a.T),            # -> (0.5 * small) @ a.T: 200, not 300
                3.0 * (small @ a.T))            # not a power of two: stays
    program = optimize(pullback.ir.staging.stage(f, (a, b, small)))
    products = [eq for eq in program.equations if eq.primitive is E.multiply]
    assert sorted(np.prod(eq.outputs[0].aval.shape) for eq in products) == [120, 200, 300]
    for got, expected in zip(compile_program(program)(a, b, small), f(a, b, small)):
        np.testing.assert_array_equal(got, expected)        # exact: powers of two


@pytest.mark.parametrize("pays", [True, False])
def test_item2_products_sharing_a_large_matrix_read_it_once(pays, monkeypatch):
    """`A @ b1` and `A @ b2` (or `b1 @ A`, `b2 @ A`) with small b's become one product of
    the b's side by side where that measures faster (`merging_pays`, here given): the
    logistic HVP multiplies the data by the point and the direction in one pass over it.
    Not merged: a second operand computed from the first product, or operands about as
    large as the matrix. Values equal eager mode's."""
    monkeypatch.setattr(pullback.ir.passes, "merging_pays", lambda *args: pays)
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((200, 30)), rng.uniform(size=200) < 0.5
    w, v, rows = rng.standard_normal(30), rng.standard_normal(30), rng.standard_normal((2, 200))
    columns = rng.standard_normal((30, 2))

    def logistic(w):
        z = X @ w
        return np.sum(np.log1p(np.exp(z)) - y * z) + 0.05 * np.sum(w * w)

    def both_sides(A, columns, rows):
        first = A @ columns[:, :1]
        return (first, rows[:1] @ A, A @ columns[:, 1:], rows[1:] @ A,   # two merges
                A @ np.tanh(first)[:30],                 # needs the first product
                A @ A.T)                                 # as large as A: no merge
    cases = [(lambda w, v: pullback.hvp(logistic, w, v), (w, v), 2 if pays else 3),
             (both_sides, (X, columns, rows), 4 if pays else 6)]
    for f, args, products in cases:
        program = optimize(pullback.ir.staging.stage(f, args))
        assert [eq.primitive for eq in program.equations].count(C.matmul) == products
        for got, expected in zip(compile_program(program)(*args), pullback.tree.flatten(f(*args))[0]):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_split_products_undoes_a_merge_for_the_fused_tier(monkeypatch):
    """`split_products` gives back the products `merge_products` joined (the fused tier's
    loops read a matrix once for all of them), in the merged product's place, with the
    same values; not where the matrix has another dtype or the operand more columns than
    asked, nor where something else reads the merged product, nor for a stack of
    matrices or pieces of another dtype than the matrix (the products' dtypes would
    differ from the slices')."""
    passes = pullback.ir.passes
    monkeypatch.setattr(passes, "merging_pays", lambda *args: True)
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((200, 30)), rng.uniform(size=200) < 0.5
    w, v, columns = rng.standard_normal(30), rng.standard_normal(30), rng.standard_normal((30, 3))

    def logistic(w):
        z = X @ w
        return np.sum(np.log1p(np.exp(z)) - y * z)

    def pieces(A, columns):                   # a piece of two columns and one of one
        return A @ columns[:, :2], np.tanh(A @ columns[:, 2])
    cases = [(lambda w, v: pullback.hvp(logistic, w, v), (w, v), 2, 3),
             (pieces, (X, columns), 1, 2),
             (pieces, (X.astype(np.float32), columns.astype(np.float32)), 1, 1)]
    for f, args, merged_products, products in cases:
        merged = optimize(pullback.ir.staging.stage(f, args))
        assert [eq.primitive for eq in merged.equations].count(C.matmul) == merged_products
        assert passes.split_products(merged, 1) is merged
        program = passes.split_products(merged, 4)
        typecheck(program)
        primitives = [eq.primitive for eq in program.equations]
        assert primitives.count(C.matmul) == products
        assert (S.concatenate in primitives) == (products == merged_products)
        for got, expected in zip(compile_program(program)(*args),
                                 pullback.tree.flatten(f(*args))[0]):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    merged = optimize(pullback.ir.staging.stage(pieces, (X, columns)))
    (product,) = [eq.outputs[0] for eq in merged.equations if eq.primitive is C.matmul]
    both = Program(merged.invars, merged.constvars, merged.consts, merged.equations + [
        Equation(R.sum, [product], {"axis": None, "keepdims": False},
                 [Var(ShapeDtype((), np.float64))], None)], merged.outvars)
    assert passes.split_products(both, 4) is both
    b1, b2 = rng.standard_normal((5, 1)), rng.standard_normal((5, 2))
    stacked, complex_piece = rng.standard_normal((2, 3, 5)), b1 + 1j

    def written(A, b1, b2):                   # the user's own concatenate
        p = A @ np.concatenate([b1, b2], axis=1)
        return p[:, 0:1], p[:, 1:3]
    for args in [(stacked, b1, b2), (X[:, :5], complex_piece, b2)]:
        program = optimize(pullback.ir.staging.stage(written, args))
        assert passes.split_products(program, 4) is program     # a stack of matrices; dtypes


@pytest.mark.parametrize("pays", [True, False])
def test_a_transposed_constant_read_by_narrow_products_is_copied_where_that_pays(
        pays, monkeypatch):
    """The `X.T` a gradient reads (a transposed view of the data) becomes a C-ordered copy,
    on a cache line, where `transposed_copy_pays` (here given) says so; one that a wide
    product reads stays a view. Values equal eager mode's."""
    passes = pullback.ir.passes
    monkeypatch.setattr(passes, "transposed_copy_pays", lambda *args: pays)
    rng = np.random.default_rng(7)
    X, W, y = rng.standard_normal((200, 30)), rng.standard_normal((200, 20)), rng.uniform(size=200)

    def loss(w):
        z = X @ w
        return np.sum(np.log1p(np.exp(z)) - y * z) + np.sum(np.tanh(W @ np.outer(w[:20], w[:5])))
    w = rng.standard_normal(30)
    program = optimize(pullback.ir.staging.stage(pullback.grad(loss), (w,)))
    transposed = [c for c in program.consts if c.ndim == 2 and c.shape[0] < c.shape[1]]
    layouts = {c.shape: (c.flags.c_contiguous, c.ctypes.data % 64) for c in transposed}
    assert layouts[(30, 200)] == ((True, 0) if pays else (False, X.ctypes.data % 64))
    assert not layouts[(20, 200)][0]                   # W.T @ (200 x 5): not narrow
    np.testing.assert_allclose(compile_program(program)(w)[0], pullback.grad(loss)(w),
                               rtol=1e-12, atol=1e-12)


def test_a_transposed_copy_is_measured_once_per_shape(monkeypatch):
    passes = pullback.ir.passes
    monkeypatch.setattr(passes, "_copies_measured", {})
    timed = []
    real = passes._best_time
    monkeypatch.setattr(passes, "_best_time", lambda call: timed.append(call) or real(call))
    first = passes.transposed_copy_pays((30, 200), np.float64)
    assert type(first) is bool and len(timed) == 2
    assert passes.transposed_copy_pays((30, 200), np.dtype(np.float64)) is first
    assert len(timed) == 2
    rows = -(-passes.COPY_MEASURED_BYTES // 80)
    assert passes.transposed_copy_pays((10, rows), np.float64) is False
    assert passes.transposed_copy_pays((10, 20), np.int64) is False and len(timed) == 2


def test_item12_merging_products_is_measured_once_per_shape(monkeypatch):
    """`merging_pays` times the merged product against the separate ones once per
    process and set of shapes (a bool, cached), and merges a matrix of
    MERGE_UNMEASURED_BYTES or more without timing anything."""
    passes = pullback.ir.passes
    monkeypatch.setattr(passes, "_merges_measured", {})
    timed = []
    real = passes._best_time
    monkeypatch.setattr(passes, "_best_time", lambda call: timed.append(call) or real(call))

    def operand(*shape):
        return Var(ShapeDtype(shape, np.dtype(np.float64)))
    for side, matrix, others in ((0, operand(300, 40), [operand(40, 1), operand(40, 2)]),
                                 (1, operand(300, 40), [operand(1, 300), operand(1, 300)])):
        first = passes.merging_pays(matrix, others, side)
        assert type(first) is bool and len(timed) == 2
        assert passes.merging_pays(operand(300, 40), others, side) is first and len(timed) == 2
        timed.clear()
    rows = -(-passes.MERGE_UNMEASURED_BYTES // 80)
    assert passes.merging_pays(operand(rows, 10), [operand(10, 1)] * 2, 0) is True
    assert timed == []


def test_item12_a_unit_slice_made_a_vector_is_one_index(monkeypatch):
    """x[:, k:k+1] reshaped to drop its unit axes is x[:, k] (each column of the logistic
    HVP's merged product was two NumPy calls: 1-2 µs of its ~40). Not rewritten: a
    reshape keeping or moving a unit axis or merging axes, an index with an integer or an
    implicit trailing slice."""
    b = Builder()
    d, r = b.input((6, 2)), b.input((4, 1, 3))
    column = b(S.reshape, b(S.getitem, d, index=(S.Slice(None, None, None), S.Slice(1, 2, None))),
               shape=(6,))
    middle = b(S.reshape, b(S.getitem, r, index=(S.Slice(1, 3, None), S.Slice(None, None, None),
                                                   S.Slice(-1, None, None))), shape=(2,))
    kept = b(S.reshape, b(S.getitem, d, index=(S.Slice(None, None, None), S.Slice(0, 1, None))),
             shape=(1, 6))
    merged = b(S.reshape, b(S.getitem, d, index=(S.Slice(0, 3, None), S.Slice(None, None, None))),
               shape=(6,))
    whole = b(S.getitem, d, index=(S.Slice(None, None, None), S.Slice(0, 1, None)))
    also_read = b(S.reshape, whole, shape=(6,))
    implicit = b(S.reshape, b(S.getitem, d, index=(S.Slice(2, 3, None),)), shape=(2,))
    integer = b(S.reshape, b(S.getitem, r, index=(0, S.Slice(None, None, None),
                                                   S.Slice(0, 1, None))), shape=())
    p = b.program(column, middle, kept, merged, whole, also_read, implicit, integer)
    q = simplified(p)
    by_output = {eq.outputs[0]: eq for eq in q.equations}
    assert by_output[q.outvars[0]].params["index"] == (S.Slice(None, None, None), 1)
    assert by_output[q.outvars[1]].params["index"] == (S.Slice(1, 3, None), 0, 2)
    assert by_output[q.outvars[5]].primitive is S.getitem
    for k in (2, 3, 6, 7):
        assert by_output[q.outvars[k]].primitive is S.reshape
    assert_same_results(p, q, rtol=0)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 8))
    # The merge of X @ w and X @ v is measured (it lost on a busy machine: no columns to
    # slice); here it is given.
    monkeypatch.setattr(passes, "merging_pays", lambda *args: True)
    program = optimize(pullback.ir.staging.stage(
        lambda w, v: pullback.hvp(lambda w: np.sum(np.log1p(np.exp(X @ w))), w, v),
        (rng.standard_normal(8), rng.standard_normal(8))))
    columns = [eq.params["index"] for eq in program.equations if eq.primitive is S.getitem]
    assert columns == [(S.Slice(None, None, None), 0), (S.Slice(None, None, None), 1)]
