"""Issue 12, section 3, nested eager AD (GradBench's saddle and particle problems): the fast
paths that cut the fixed cost of a derivative call and the per-operation cost on small
values give exactly what the general paths give, in every mode, with the same errors."""

import numpy as np
import pytest

import pullback
import pullback.numpy as pnp
from pullback import grad, jit, pushforward, vjp, vmap
from pullback.core.arrays import SCALAR_OPERATORS
from pullback.core.engine import trace_stack
from pullback.core.indexing import Slice
from pullback.core.primitive import REGISTRY, ZERO
from pullback.errors import CotangentError, EscapedTracerError, PullbackError
from pullback.ir.jit import readable_source
from pullback.primitives.elementwise import power
from pullback.primitives.structural import getitem
from pullback.testing import check_grads

from helpers import python_calls, raises

X = np.array([0.5, -2.0])
F64 = np.float64(1.5)

# Each operation written the way user code writes it (the fast path) and through
# pullback.numpy's function (the general path).
OPERATIONS = {
    "x[i]": (lambda x: x[1], lambda x: pnp.getitem(x, 1)),
    "-x": (lambda x: -x, lambda x: pnp.negative(x)),
    "float64 - x": (lambda x: F64 - x, lambda x: pnp.subtract(F64, x)),
    "x * float64": (lambda x: x * F64, lambda x: pnp.multiply(x, F64)),
    "ndarray - x": (lambda x: X - x, lambda x: pnp.subtract(X, x)),
    "x * x": (lambda x: x * x, lambda x: pnp.multiply(x, x)),
    "x[0] / x[1]": (lambda x: x[0] / x[1], lambda x: pnp.divide(pnp.getitem(x, 0),
                                                                  pnp.getitem(x, 1))),
    "x[0] - x[1]": (lambda x: x[0] - x[1], lambda x: pnp.subtract(pnp.getitem(x, 0),
                                                                    pnp.getitem(x, 1))),
    "x + x": (lambda x: x + x, lambda x: pnp.add(x, x)),
    "(x * x) ** x": (lambda x: (x * x) ** x, lambda x: pnp.power(pnp.multiply(x, x), x)),
    "x ** 3.0": (lambda x: x ** 3.0, lambda x: pnp.power(x, 3.0)),
    "x[1:]": (lambda x: x[1:], lambda x: pnp.getitem(x, slice(1, None))),
    "x[0] < x[1]": (lambda x: np.where(x[0] < x[1], x, 2.0 * x),
                    lambda x: pnp.where(pnp.less(pnp.getitem(x, 0), pnp.getitem(x, 1)), x,
                                        pnp.multiply(2.0, x))),
}
MODES = {
    "grad": lambda f: grad(lambda x: pnp.sum(f(x) ** 2))(X),
    "pushforward": lambda f: pushforward(f, (X,), (np.array([1.0, 3.0]),))[1],
    "grad of grad": lambda f: grad(lambda x: pnp.sum(grad(lambda y: pnp.sum(f(y) * x))(x)))(X),
    "pushforward of grad": lambda f: pushforward(grad(lambda x: pnp.sum(f(x) ** 3)), (X,),
                                                 (np.array([1.0, 0.0]),))[1],
    "grad of pushforward": lambda f: grad(lambda x: pnp.sum(pushforward(
        f, (x,), (np.array([0.0, 1.0]),))[1] * x))(X),
    "vmap": lambda f: vmap(f)(np.stack([X, 2 * X])),
    "jit of grad": lambda f: jit(grad(lambda x: pnp.sum(f(x) ** 2)))(X),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_item_nested12_fast_paths_give_what_the_general_paths_give(operation, mode):
    fast, general = OPERATIONS[operation]
    np.testing.assert_array_equal(MODES[mode](fast), MODES[mode](general))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_item_nested12_fast_paths_have_correct_derivatives_to_second_order(operation):
    fast, _ = OPERATIONS[operation]
    check_grads(fast, (X,), order=2)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("transformation", ["grad", "pushforward"])
def test_item_nested12_fast_paths_refuse_an_escaped_tracer(operation, transformation):
    fast, _ = OPERATIONS[operation]
    kept = []

    def f(x):
        kept.append(x)
        return pnp.sum(x)
    if transformation == "grad":
        grad(f)(X)
    else:
        pushforward(f, (X,), (X,))
    with raises(EscapedTracerError, "outside the transformation"):
        fast(kept[0])


def test_item_nested12_two_tangent_bind_refuses_complex_values_without_complex_rules():
    z = np.array([1.0 + 2.0j])
    with raises(PullbackError, "arctan2"):
        pushforward(lambda z: np.arctan2(z, z), (z,), (z,))


BINARY = [p for p in REGISTRY.values() if p.input_rules is not None and len(p.input_rules) == 2]
TANGENTS = {"x": (True, False), "y": (False, True), "both": (True, True)}


def _jvp_rule_or_error(primitive, primals, tangents):
    try:
        return primitive.jvp(primals, tangents)
    except Exception as error:        # ldexp of float exponents, say: NumPy's TypeError
        return type(error)


@pytest.mark.parametrize("which", TANGENTS)
@pytest.mark.parametrize("primitive", BINARY, ids=lambda p: p.name)
def test_item_nested12_forward_binds_of_two_inputs_give_what_the_jvp_rule_gives(primitive, which):
    # forward mode applies the input rules as data (partial derivatives 1 and -1 without a
    # call); the primitive's jvp rule is the reference, values, dtypes and errors alike
    rng = np.random.default_rng(0)
    x, y, tx, ty = (rng.uniform(0.5, 1.5, 3) for _ in range(4))
    with_x, with_y = TANGENTS[which]
    names = [n for n, w in (("x", with_x), ("y", with_y)) if w]

    def f(*traced):
        values = dict(zip(names, traced))
        return primitive(values.get("x", x), values.get("y", y))
    primals = tuple(v for v, w in ((x, with_x), (y, with_y)) if w)
    tangents = tuple(t for t, w in ((tx, with_x), (ty, with_y)) if w)
    expected = _jvp_rule_or_error(primitive, (x, y), (tx if with_x else ZERO,
                                                      ty if with_y else ZERO))
    if isinstance(expected, type):
        with pytest.raises(expected):
            pushforward(f, primals, tangents)
        assert trace_stack() == []
        return
    out, tangent = pushforward(f, primals, tangents)
    for got, want in ((out, expected[0]), (tangent, expected[1])):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


INDICES = [0, -1, slice(1, None), slice(None, None, -2), (Ellipsis, None), (1, None)]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_item_nested12_forward_indexing_gives_what_the_jvp_rule_gives(index):
    # x[index] on a forward tracer of NumPy values indexes primal and tangent with the
    # primitive's impl; its jvp rule (binding getitem twice) is the reference
    x, t = np.arange(3.0), np.array([1.0, -2.0, 0.5])
    out, tangent = pushforward(lambda x: x[index], (x,), (t,))
    entries = index if isinstance(index, tuple) else (index,)
    template = tuple(Slice(e.start, e.stop, e.step) if isinstance(e, slice) else e
                     for e in entries)
    want_out, want_tangent = getitem.jvp((x,), (t,), index=template)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(tangent, want_tangent)


def _product(y):
    d = y * np.sin(y)           # a bind of two inputs, both with tangents
    return np.sum(d * y)


def test_item_nested12_two_tangent_bind_names_staged_tangents():
    source = readable_source(lambda x, v: pushforward(_product, (x,), (v,)), X, X)[0]
    assert "    d_dot = " in source


def test_item_nested12_seeds_of_scalar_outputs_still_checked():
    # the cotangent of a NumPy scalar or of a tracer's value takes matching's fast path only
    # when its shape and dtype match
    out, back = vjp(lambda x: x[0] * x[1], X)
    assert back(2.0)[0].tolist() == [-4.0, 1.0]
    with raises(CotangentError, "shape (2,)"):
        back(np.ones(2))
    with raises(CotangentError, "dtype float32"):
        back(np.ones((), np.float32))

    def inner_back(x):
        out, back = vjp(lambda y: y[0] * x[1], x)
        return back(np.ones(3))
    with raises(CotangentError, "shape (3,)"):
        grad(lambda x: pnp.sum(inner_back(x)[0]))(X)


def test_item_nested12_grad_of_a_lower_level_output_is_seeded_as_before():
    # inner grad's output is an outer tracer: seeded with a NumPy 1 of its dtype
    for dtype in (np.float64, np.float32):
        x = X.astype(dtype)
        h = grad(lambda x: grad(lambda y: pnp.sum(y * y * x))(x)[0])(x)
        assert h.dtype == dtype
        np.testing.assert_allclose(h, [4 * x[0], 0.0], rtol=1e-6)


# ------------------------------------------------------------- the cost, in Python calls

def cost(p1, p2):
    """GradBench's saddle function."""
    return (p1[0] ** 2 + p1[1] ** 2) - (p2[0] ** 2 + p2[1] ** 2)


P1, P2, E = np.array([1.0, 1.0]), np.array([0.5, 2.0]), np.array([1.0, 0.0])

# Python calls of one derivative of the saddle function of 2-vectors, alone and nested in
# every combination of modes. Before the first pass: 148, 87, 264, 190, 253, 179; after it
# 132, 71, 224, 157, 216, 149; after the second (forward mode, fixed costs) 101, 40, 176,
# 113, 151, 88; before the third 71, 34, 134, 95, 115, 76, after it (grad of one array
# without pytrees, Python's operators on NumPy's scalars) 61, 33, 103, 74, 103, 74 (the
# limits leave a little room).
SADDLE_CALLS = {
    "grad": (lambda: grad(lambda p2: cost(P1, p2))(P2), 65),
    "pushforward": (lambda: pushforward(lambda p2: cost(P1, p2), (P2,), (E,)), 36),
    "rr": (lambda: grad(lambda p1: grad(lambda p2: cost(p1, p2))(P2)[0])(P1), 108),
    "rf": (lambda: grad(lambda p1: pushforward(lambda p2: cost(p1, p2), (P2,), (E,))[1])(P1),
           78),
    "fr": (lambda: pushforward(lambda p1: grad(lambda p2: cost(p1, p2))(P2)[0], (P1,), (E,)),
           108),
    "ff": (lambda: pushforward(lambda p1: pushforward(lambda p2: cost(p1, p2), (P2,), (E,))[1],
                               (P1,), (E,)), 79),
}


@pytest.mark.parametrize("mode", SADDLE_CALLS)
def test_item_nested12_saddle_derivatives_make_few_python_calls(mode):
    derivative, most = SADDLE_CALLS[mode]
    derivative()                                     # first-call work (caches) not counted
    calls = python_calls(derivative)
    assert calls <= most, f"{mode}: {calls} Python calls"


# ------------------------------------------- Python's operators on NumPy's real scalars

SCALAR_PRIMITIVES = [p for p in REGISTRY.values() if p.python_operator in SCALAR_OPERATORS]
SPECIAL_VALUES = [0.0, -0.0, 1.0, -2.5, 3.0, 1e308, 5e-324, np.inf, -np.inf, np.nan]
# (the traced operand's type, the other's): NumPy's scalars with Python's numbers and each other
SCALAR_TYPES = [(np.float64, np.float64), (np.float32, np.float32), (np.float64, float),
                (np.float32, float), (np.float64, int), (np.float32, np.float64)]


def _traced_outputs(primitive, args, traced):
    """primitive's output on `args` with the scalar `traced` names (x: the first, y: the
    second, both) traced, by forward and by reverse mode (v[0] of a vector: a NumPy scalar)."""
    positions = {"x": [0], "y": [1], "both": [0, 1]}[traced]
    v = np.array([args[k] for k in positions], dtype=type(args[positions[0]]))

    def f(v):
        given = list(args)
        for i, k in enumerate(positions):
            given[k] = v[i]
        return primitive(*given)
    with np.errstate(all="ignore"):
        return [pushforward(f, (v,), (np.ones_like(v),))[0], vjp(f, v)[0]]


def _outcome(function, *args):
    """function(*args) with NumPy's floating-point errors raised: the value or the error class."""
    try:
        with np.errstate(all="raise"):
            return function(*args)
    except Exception as error:          # noqa: BLE001  compared, not hidden
        return type(error)


@pytest.mark.parametrize("types", SCALAR_TYPES, ids=lambda t: f"{t[0].__name__}-{t[1].__name__}")
@pytest.mark.parametrize("primitive", SCALAR_PRIMITIVES, ids=lambda p: p.name)
def test_item_nested12_scalar_operators_compute_what_the_ufuncs_compute(primitive, types):
    # forward and reverse mode apply Python's operator to NumPy's real scalars: the value
    # and its type are the ufunc's, bit for bit, and so is the error (errstate raise)
    operator = SCALAR_OPERATORS[primitive.python_operator]
    unary = primitive.python_operator.count("{}") == 1
    pairs = [(a, None) for a in SPECIAL_VALUES] if unary else \
        [(a, b) for a in SPECIAL_VALUES for b in SPECIAL_VALUES
         if types[1] is not int or np.isfinite(b)]
    with np.errstate(over="ignore"):
        for a, b in pairs:
            x = types[0](a)
            if unary:
                cases = [((x,), "x")]
            else:
                y = types[1](b)
                cases = [((x, y), "x"), ((y, x), "y")] + \
                    ([((x, y), "both")] if types[0] is types[1] else [])
            for args, traced in cases:
                error = _outcome(primitive.impl, *args)
                if isinstance(error, type):
                    assert _outcome(operator, *args) is error, (primitive.name, args)
                with np.errstate(all="ignore"):
                    want = primitive.impl(*args)
                for got in _traced_outputs(primitive, args, traced):
                    assert type(got) is type(want), (primitive.name, args, traced, type(got))
                    np.testing.assert_array_equal(got, want)
                    assert np.signbit(got) == np.signbit(want), (primitive.name, args, traced)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_item_nested12_a_real_scalar_squared_is_what_np_power_computes(dtype):
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):                 # (float32: some are inf)
        values = np.concatenate([rng.uniform(-10, 10, 2000), rng.lognormal(0, 30, 2000),
                                 SPECIAL_VALUES]).astype(dtype)
    for exponent in (2, 2.0):
        with np.errstate(all="ignore"):
            got = [power.impl(v, exponent) for v in values]
            want = [np.power(v, exponent) for v in values]
        assert all(type(g) is type(w) for g, w in zip(got, want))
        np.testing.assert_array_equal(np.array(got), np.array(want))


# ---------------------------------------------------- grad of one array, without pytrees

def _outer_constant(x):
    # an output of an outer trace's value: a constant to the inner grad
    return grad(lambda y: pnp.sum(y) * 0.0 + pnp.sum(x * x))(x)


GRAD_FUNCTIONS = {
    "float64": (lambda x: cost(x, x[::-1] * 0.5), X),
    "float32": (lambda x: pnp.sum(x * x), X.astype(np.float32)),
    "complex input": (lambda z: pnp.sum(pnp.abs(z) ** 2), X * (1 + 2j)),
    "Python float output": (lambda x: 3.0, X),
    "NumPy scalar output": (lambda x: np.float64(3.0), X),
    "0-d array output": (lambda x: np.array(3.0), X),
    "output of an outer trace": (lambda x: grad(lambda y: pnp.sum(x * x))(x)[0], X),
    "nested": (lambda x: grad(lambda y: cost(x, y))(x)[1] ** 2, X),
    "zero-size": (lambda x: pnp.sum(x), np.zeros(0)),
}


@pytest.mark.parametrize("case", GRAD_FUNCTIONS)
def test_item_nested12_grad_of_one_array_gives_what_the_general_path_gives(case):
    f, x = GRAD_FUNCTIONS[case]
    fast = grad(f)(x)
    general = grad(f, argnums=(0,))(x)[0]            # through value_and_grad's pytrees
    assert type(fast) is type(general) and fast.dtype == general.dtype
    np.testing.assert_array_equal(fast, general)
    # and in a trace of an outer transformation, the argument a tracer
    outer = grad(lambda x: pnp.real(pnp.sum(grad(f)(x) * x)))(x)
    np.testing.assert_array_equal(
        outer, grad(lambda x: pnp.real(pnp.sum(grad(f, argnums=(0,))(x)[0] * x)))(x))


BAD_OUTPUTS = {
    "vector": lambda x: x * 2.0,
    "integer": lambda x: np.int64(3),
    "complex": lambda x: pnp.sum(x) * 1j,
    "tuple": lambda x: (pnp.sum(x), pnp.sum(x)),
    "None": lambda x: None,
    "boolean": lambda x: pnp.sum(x) > 0.0,
}


@pytest.mark.parametrize("case", BAD_OUTPUTS)
def test_item_nested12_grad_of_one_array_refuses_what_the_general_path_refuses(case):
    f = BAD_OUTPUTS[case]
    with pytest.raises(PullbackError) as general:
        grad(f, argnums=(0,))(X)
    with raises(type(general.value), str(general.value)):
        grad(f)(X)
