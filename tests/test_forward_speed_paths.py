"""Issue 12, section 3, forward mode's per-operation cost: a forward tracer computes a unary
ufunc (`np.sin(x)`) and an operator with a constant (`x * 1.01`, `1.0 - x`) itself, without
binding the primitive. Each gives exactly what the primitive's jvp rule gives (values,
tangents, dtypes, errors), for every such ufunc and kind of constant, and nested modes give
what binding the primitive gives."""

import numpy as np
import pytest

import pullback
from pullback import grad, pushforward
from pullback.core.arrays import ZERO_D
from pullback.core.engine import trace_stack
from pullback.core.primitive import REGISTRY, ZERO
from pullback.errors import ComplexValueError, EscapedTracerError

from helpers import raises

UFUNC_PRIMITIVES = pullback.numpy.UFUNC_PRIMITIVES
UNARY_UFUNCS = {ufunc.__name__ + ("" if getattr(np, ufunc.__name__, None) is ufunc else " (scipy)"):
                ufunc for ufunc, prim in UFUNC_PRIMITIVES.items()
                if isinstance(ufunc, np.ufunc) and ufunc.nin == 1 and prim.input_rules is not None}
OPERATORS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
CONSTANTS = {"float": 1.5, "float 0": 0.0, "int": 2, "float64 scalar": np.float64(0.75),
             "float32 scalar": np.float32(1.25), "complex": 0.5 + 0.25j,
             "array": np.array([[0.5, 1.5], [1.25, 0.75], [2.0, 1.0]]),
             "broadcast array": np.array([0.5, 1.5]), "larger array": np.full((4, 3, 2), 1.25)}
SHAPES = [(3, 2), ()]


def _operand(prim, shape, dtype, rng):
    domain = prim.domain[0]
    return rng.uniform(*domain, shape).astype(dtype)


def _outcome(compute):
    """The arrays `compute()` gives (values, dtypes), or the class of the error it raises."""
    try:
        with np.errstate(all="ignore"):
            return [np.asarray(v) for v in compute()]
    except Exception as error:          # noqa: BLE001  compared, not hidden
        assert trace_stack() == []
        return type(error)


def _assert_identical(got, expected, where):
    if isinstance(got, type) or isinstance(expected, type):
        assert got == expected, where
        return
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)


def _nested(f, x, t):
    """Forward over forward, reverse over forward and forward over reverse of `f` at x."""
    def tangent_sum(y):
        return np.sum(pushforward(f, (y,), (t,))[1])

    def value_sum(y):
        return np.sum(f(y))
    return [pushforward(tangent_sum, (x,), (t,))[1], grad(tangent_sum)(x),
            pushforward(grad(value_sum), (x,), (t,))[1]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", UNARY_UFUNCS)
def test_issue12_forward_ufuncs_computed_by_the_tracer_match_the_jvp_rule(name, dtype):
    # The tracer's own `np.sin(x)` (its rules as data, the partial derivative applied without
    # the scale's frame) against the jvp rule, on arrays and 0-d, bit for bit; nested modes
    # against binding the primitive.
    ufunc = UNARY_UFUNCS[name]
    prim = UFUNC_PRIMITIVES[ufunc]
    rng = np.random.default_rng(11)
    for shape in SHAPES:
        x, t = (_operand(prim, shape, dtype, rng) for _ in range(2))
        got = _outcome(lambda: pushforward(ufunc, (x,), (t,)))
        expected = _outcome(lambda: prim.jvp((x,), (t,)))
        _assert_identical(got, expected, f"{name} of {shape}")
        _assert_identical(_outcome(lambda: _nested(ufunc, x, t)),
                          _outcome(lambda: _nested(prim, x, t)), f"nested {name} of {shape}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("symbol", OPERATORS)
def test_issue12_forward_operators_computed_by_the_tracer_match_the_jvp_rule(symbol, dtype):
    # `x op c` and `c op x` of a constant c (weakly typed numbers, kept as 0-d float64 arrays
    # where that computes the same bits; NumPy scalars promoting float32; complex numbers;
    # arrays broadcasting either way) against the jvp rule, bit for bit; nested modes
    # against binding the primitive.
    ufunc = OPERATORS[symbol]
    prim = UFUNC_PRIMITIVES[ufunc]
    apply = eval(f"lambda a, b: a {symbol} b")
    rng = np.random.default_rng(12)
    for shape in SHAPES:
        x, t = (rng.uniform(0.5, 2.0, shape).astype(dtype) for _ in range(2))
        for kind, c in CONSTANTS.items():
            for side, fast, bound, primals, tangents in [
                    ("x op c", lambda x: apply(x, c), lambda x: prim(x, c), (x, c), (t, ZERO)),
                    ("c op x", lambda x: apply(c, x), lambda x: prim(c, x), (c, x), (ZERO, t))]:
                where = f"{side}, {kind} c, {np.dtype(dtype)} x of {shape}"
                got = _outcome(lambda: pushforward(fast, (x,), (t,)))
                expected = _outcome(lambda: prim.jvp(primals, tangents))
                _assert_identical(got, expected, where)
                if dtype is not np.complex128:
                    _assert_identical(_outcome(lambda: _nested(fast, x, t)),
                                      _outcome(lambda: _nested(bound, x, t)), "nested " + where)


def test_issue12_forward_operators_of_two_tracers_match_the_jvp_rule():
    # `x * y` of two tracers of the trace binds the primitive (its rules as data); of tracers
    # of two levels, the inner one's constant is the outer tracer
    x, y, t, s = (np.linspace(0.5, 1.5, 3) * k for k in (1.0, 2.0, 3.0, 4.0))
    for symbol, ufunc in OPERATORS.items():
        prim = UFUNC_PRIMITIVES[ufunc]
        apply = eval(f"lambda a, b: a {symbol} b")
        got = pushforward(apply, (x, y), (t, s))
        expected = prim.jvp((x, y), (t, s))
        _assert_identical(got, expected, symbol)
        inner = pushforward(lambda a: pushforward(lambda b: apply(a, b), (y,), (s,))[1], (x,),
                            (t,))
        bound = pushforward(lambda a: pushforward(lambda b: prim(a, b), (y,), (s,))[1], (x,),
                            (t,))
        _assert_identical(inner, bound, "nested " + symbol)


def test_issue12_forward_float_constants_computed_with_0_d_arrays_give_the_same_bits():
    # x * c with c a Python float is computed with the cached 0-d float64 array (a ufunc
    # takes it faster): every correctly rounded operator gives the bits of the number
    rng = np.random.default_rng(13)
    x, t = rng.uniform(-3, 3, 50), rng.uniform(-3, 3, 50)
    for c in [1.01, -0.3, 1e-300, 1e300, np.inf, np.nan, 0.1 + 0.2]:
        for symbol in "+-*/":
            prim = UFUNC_PRIMITIVES[OPERATORS[symbol]]
            cases = [(eval(f"lambda x: x {symbol} c", {"c": c}), (x, c), (t, ZERO)),
                     (eval(f"lambda x: c {symbol} x", {"c": c}), (c, x), (ZERO, t))]
            for f, primals, tangents in cases:
                with np.errstate(all="ignore"):
                    got, expected = pushforward(f, (x,), (t,)), prim.jvp(primals, tangents)
                _assert_identical(list(got), list(expected), f"{symbol} {c}")
    assert all(v.flags.writeable is False for v in ZERO_D.values())


@pytest.mark.parametrize("fast", [lambda x: np.sin(x), lambda x: x * 1.01, lambda x: 1.0 - x,
                                  lambda x: x ** 2.0, lambda x: np.add(x, 0.5)],
                         ids=["sin", "x * c", "c - x", "x ** c", "np.add(x, c)"])
def test_issue12_forward_fast_paths_refuse_an_escaped_tracer(fast):
    kept = []

    def f(x):
        kept.append(x)
        return np.sum(x)
    pushforward(f, (np.ones(2),), (np.ones(2),))
    with raises(EscapedTracerError, "outside the transformation"):
        fast(kept[0])


REAL_RULES = [name for name, ufunc in UNARY_UFUNCS.items()
              if not UFUNC_PRIMITIVES[ufunc].complex_rules]


@pytest.mark.parametrize("name", REAL_RULES)
def test_issue12_forward_ufuncs_with_real_rules_keep_refusing_complex_values(name):
    # a ufunc whose rules hold for real values only is not computed by the tracer: its
    # primitive refuses complex values, with a clean trace stack
    z = np.array([1.0 + 2.0j])
    assert REAL_RULES
    with raises(ComplexValueError, UFUNC_PRIMITIVES[UNARY_UFUNCS[name]].name):
        pushforward(UNARY_UFUNCS[name], (z,), (z,))


UNARY_PRIMITIVES = [p for p in REGISTRY.values()
                    if p.input_rules is not None and len(p.input_rules) == 1]
LARGE = (1 << 15) + 8        # float64 elements: above cotangents.LARGE_TEMPORARY's bytes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("primitive", UNARY_PRIMITIVES, ids=lambda p: p.name)
def test_issue12_forward_binds_of_one_input_give_what_the_jvp_rule_gives(primitive, dtype):
    # a bound elementwise primitive applies its partial derivative's sweep form to a NumPy
    # tangent without its scale's frame: the jvp rule's values, dtypes and errors, on small
    # arrays, 0-d and large ones (whose product the scale writes into its temporary)
    rng = np.random.default_rng(14)
    for shape in [(3, 2), (), (LARGE,)]:
        x, t = (_operand(primitive, shape, dtype, rng) for _ in range(2))
        got = _outcome(lambda: pushforward(primitive, (x,), (t,)))
        _assert_identical(got, _outcome(lambda: primitive.jvp((x,), (t,))), f"{shape}")
        ufunc = next((u for u, p in UFUNC_PRIMITIVES.items() if p is primitive
                      and isinstance(u, np.ufunc)), None)
        if ufunc is not None:
            got = _outcome(lambda: pushforward(ufunc, (x,), (t,)))
            _assert_identical(got, _outcome(lambda: primitive.jvp((x,), (t,))), f"ufunc {shape}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("symbol", OPERATORS)
def test_issue12_forward_operators_on_numpy_scalars_match_the_jvp_rule(symbol, dtype):
    # `v[0] op c` (a NumPy scalar, computed with Python's operator where it gives NumPy's
    # bits) and `np.sin(v[0])` against the jvp rule on the scalar
    prim = UFUNC_PRIMITIVES[OPERATORS[symbol]]
    apply = eval(f"lambda a, b: a {symbol} b")
    x, t = np.array([1.25, 0.5], dtype), np.array([0.75, 2.0], dtype)
    for kind, c in CONSTANTS.items():
        for side, f, primals, tangents in [
                ("x op c", lambda v: apply(v[0], c), (x[0], c), (t[0], ZERO)),
                ("c op x", lambda v: apply(c, v[0]), (c, x[0]), (ZERO, t[0]))]:
            got = _outcome(lambda: pushforward(f, (x,), (t,)))
            _assert_identical(got, _outcome(lambda: prim.jvp(primals, tangents)),
                              f"{side}, {kind} c")
    got = _outcome(lambda: pushforward(lambda v: np.sin(v[0]), (x,), (t,)))
    _assert_identical(got, _outcome(lambda: UFUNC_PRIMITIVES[np.sin].jvp((x[0],), (t[0],))),
                      "sin")
