"""Reverse mode's economies change no result: lazy cotangents, in-place sums, pruned residuals.

The reverse sweep keeps some cotangents symbolic (`Scaled`: a number times an array, or
a uniform value from a sum; `Embedded`: the transpose of indexing), sums others in place
in buffers it owns, and elementwise pullbacks keep only the residuals they read. None of
that may change a result or its dtype, alias an input, or leak a read-only view to the
user: random programs of elementwise arithmetic, constants, indexing and fan-out check it
against forward mode, which never takes those paths.
"""
import inspect

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given, settings, strategies as st

import pullback.numpy as pnp
from pullback import grad, hessian, jacfwd, jit, jvp, pullback as vjp
from pullback.core.primitive import REGISTRY, ShapeDtype
from pullback.transforms.cotangents import Scaled
from pullback.primitives.families import _reads, unbroadcast
from pullback.primitives.special import no_closed_form

N = 6
PERMUTATION = np.array([5, 0, 0, 3, 2, 2])          # repeated indices accumulate

UNARY = {
    "sin": np.sin, "tanh": np.tanh, "neg": lambda v: -v, "scale": lambda v: 3.0 * v,
    "halve": lambda v: v / 2.0, "square": lambda v: v ** 2, "one_minus": lambda v: 1.0 - v,
    "reverse": lambda v: v[::-1], "gather": lambda v: v[PERMUTATION],
    "first_times": lambda v: v[0] * v,                               # an integer index
    "shift": lambda v: pnp.concatenate([v[1:] - v[:-1] ** 2, v[:1]]),
    "rows": lambda v: (v.reshape(2, 3) * np.array([[1.0], [-2.0]])).reshape(N),
}
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b}
REDUCE = {
    "sum": np.sum, "mean": np.mean, "sum_tail": lambda v: np.sum(v[2:]),
    "scaled_sum": lambda v: v.sum() * -0.5, "sum_2d": lambda v: np.sum(v.reshape(3, 2)),
}

steps = st.lists(st.one_of(
    st.tuples(st.sampled_from(sorted(UNARY)), st.integers(0, 100)),
    st.tuples(st.sampled_from(sorted(BINARY)), st.integers(0, 100), st.integers(0, 100))),
    min_size=1, max_size=8)


def program(plan, reduce):
    """A scalar function: each step applies an op to earlier values (fan-out included)."""
    def f(x):
        values = [x]
        for op, *picks in plan:
            operands = [values[p % len(values)] for p in picks]
            values.append((UNARY | BINARY)[op](*operands))
        return REDUCE[reduce](values[-1]) + 0.25 * REDUCE[reduce](values[len(values) // 2])
    return f


@settings(max_examples=150, deadline=None)
@given(plan=steps, reduce=st.sampled_from(sorted(REDUCE)),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_gradients_of_random_programs_equal_forward_mode(plan, reduce, dtype):
    f = program(plan, reduce)
    x = np.linspace(-0.9, 0.8, N).astype(dtype)
    g = grad(f)(x)
    expected = jacfwd(f)(x)
    assert g.dtype == dtype and g.shape == x.shape
    assert g.flags.writeable and not np.shares_memory(g, x)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(g, expected, rtol=tolerance, atol=tolerance)


@settings(max_examples=40, deadline=None)
@given(plan=steps, reduce=st.sampled_from(sorted(REDUCE)))
def test_hessians_of_random_programs_agree_across_modes(plan, reduce):
    # Inner reverse sweeps with concrete seeds meet tracers of the outer transformation.
    f = program(plan, reduce)
    x = np.linspace(-0.9, 0.8, N)
    reference = hessian(f, mode="forward-over-forward")(x)
    for mode in ("forward-over-reverse", "reverse-over-reverse", "reverse-over-forward"):
        np.testing.assert_allclose(hessian(f, mode=mode)(x), reference, rtol=1e-10, atol=1e-10)


def test_a_concrete_indexed_cotangent_meets_a_traced_one():
    # x[1:] sums with a constant cotangent while x ** 3 gives an outer tracer: they add.
    f = lambda x: np.sum(x[1:]) + np.sum(x ** 3)
    x = np.arange(1.0, 5.0)
    gradient, curvature = jvp(grad(f), (x,), (np.ones(4),))
    np.testing.assert_allclose(gradient, [3.0, 13.0, 28.0, 49.0])
    np.testing.assert_allclose(curvature, 6.0 * x)


def test_gradients_are_fresh_writable_arrays_not_views_of_constants():
    c = np.array([1.0, 2.0, 3.0])
    for f in (np.sum, lambda x: np.sum(x * c), lambda x: np.sum((x + 0.0).reshape(3, 1))):
        g = grad(f)(np.zeros(3))
        assert g.flags.writeable and not np.shares_memory(g, c)


def test_back_gives_the_same_result_each_time_it_is_called():
    # Summing in place must never write into a residual or an earlier result.
    def f(x):
        y = x ** 2
        return y * 3.0, y[::-1] - x
    x = np.array([0.5, -1.0, 2.0])
    out, back = vjp(f, x)
    cts = (np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 4.0]))
    first = back(cts)[0].copy()
    np.testing.assert_array_equal(back(cts)[0], first)
    np.testing.assert_allclose(first, 6.0 * x * cts[0] + 2.0 * x * cts[1][::-1] - cts[1])


def test_scaled_folds_numbers_and_multiplies_arrays_like_numpy():
    a = np.array([1.0, -2.0, 3.0], np.float32)
    uniform = Scaled(2.0, None, (3,), np.dtype(np.float32))
    product = -(uniform * a) * 1.5                      # no pass: scale -3, array a
    assert product.array is a and product.scale == -3.0
    assert product.dense().dtype == np.float32
    np.testing.assert_array_equal(product.dense(), -3.0 * a)
    np.testing.assert_array_equal(product.add_into(np.ones(3, np.float32)), 1.0 - 3.0 * a)
    shrunk = product * 0.25              # a magnifying and a shrinking factor: applied in turn
    assert shrunk.scale == 0.25
    np.testing.assert_array_equal(shrunk.array, -3.0 * a)
    np.testing.assert_array_equal(uniform.dense(), [2.0, 2.0, 2.0])
    # Anything else is NumPy arithmetic on what it stands for (promotion included).
    assert (uniform * np.float64(2.0)).dtype == np.float64
    np.testing.assert_array_equal(uniform * np.ones((2, 3), np.float32), np.full((2, 3), 2.0))
    with pytest.raises(TypeError):
        np.add(uniform, a)                              # never silently converted


def test_zero_dimensional_inputs_and_constants():
    x = np.array(1.5)
    assert grad(lambda x: np.sum(x * x) + np.mean(x ** 2))(x) == 6.0
    assert grad(lambda r: np.sum(r * np.array(2.0)) + np.sum(r))(x) == 3.0
    g = grad(lambda x: np.sum(x * x))(np.array(1.5, np.float32))
    assert g.dtype == np.float32 and g == 3.0


def test_gradient_keeps_the_input_dtype_when_a_ufunc_computes_wider():
    x = np.array([0.5, 0.25], np.float16)              # scipy's erf has no float16 loop
    assert sp.erf(x).dtype != np.float16
    assert grad(lambda x: np.sum(sp.erf(x)))(x).dtype == np.float16


def test_a_cotangent_passed_through_unchanged_is_copied():
    v = np.array([1.0, 2.0])
    for f in (lambda x: x + 0.0, lambda x: x, lambda x: (x + 0.0).reshape(2, 1)):
        out, back = vjp(f, np.zeros(2))
        (ct,) = back(v.reshape(np.shape(out)))
        assert not np.shares_memory(ct, v)


def test_issue12_a_cotangent_that_views_a_seed_owning_its_memory_is_copied():
    # The leaves' check skips the memory search only for two distinct arrays that each own
    # their memory; a view of a seed (even one that owns its memory) is still copied.
    for f, primal, seed in [(lambda x: x.reshape(2), np.zeros((2, 1)), np.array([1.0, 2.0])),
                            (lambda x: x.T, np.zeros((2, 1)), np.array([[1.0, 2.0]])),
                            (lambda x: x, np.zeros(1), np.array([3.0]))]:
        (ct,) = vjp(f, primal)[1](seed)
        assert seed.base is None and not np.shares_memory(ct, seed)
        np.testing.assert_array_equal(ct, seed.reshape(primal.shape))


def test_a_seed_check_ignores_seeds_of_an_outer_transformation():
    # One output's cotangent is traced by the outer grad, the other's is concrete.
    def g(c):
        out, back = vjp(lambda x, y: (x * 2.0, y + 0.0), np.ones(2), np.ones(2))
        ct_x, ct_y = back((c, np.ones(2)))
        return np.sum(ct_x) + np.sum(ct_y)
    np.testing.assert_array_equal(grad(g)(np.ones(2)), [2.0, 2.0])


def test_partial_derivatives_declare_what_they_read_by_their_parameter_names():
    binary = ("x", "y", "out")
    assert _reads(lambda y, out: -out / y, binary) == (False, True, True)
    assert _reads(lambda x, n: x, ("x", "out")) == (True, False)      # n: a parameter
    assert _reads(-1, binary) == (False, False, False)
    for prim in REGISTRY.values():
        for partial in prim.partials or ():
            if callable(partial) and not isinstance(partial, no_closed_form):   # (raises)
                names = set(inspect.signature(partial).parameters)
                assert names & {"x", "y", "z", "out"}, (prim.name, names)   # reads a residual


def test_unbroadcast_materialises_a_lazy_cotangent_before_casting():
    ct = unbroadcast(Scaled(2.0, None, (3,), np.dtype(np.float32)),
                     ShapeDtype((3,), np.dtype(np.float64)))
    assert type(ct) is np.ndarray and ct.dtype == np.float64
    np.testing.assert_array_equal(ct, [2.0, 2.0, 2.0])


# ------------------------------------------ folding constant factors keeps IEEE results

SIGNS = st.sampled_from([1.0, -1.0])
POWERS_OF_TWO = st.builds(lambda sign, k: sign * 2.0 ** k, SIGNS, st.integers(-1074, 1023))
FACTORS = st.one_of(POWERS_OF_TWO, st.builds(lambda sign, e, m: sign * m * 10.0 ** e, SIGNS,
                                             st.integers(-320, 307), st.floats(1.0, 9.99)))


def chain_steps(factors):
    """Constant multiplications, divisions and negations, and products with constant arrays."""
    return st.lists(st.one_of(
        st.tuples(st.sampled_from(["mul", "div"]), factors), st.just(("neg",)),
        st.tuples(st.just("array"), st.lists(factors, min_size=3, max_size=3))),
        min_size=1, max_size=8)


def _forward_chain(chain, dtype):
    def f(x):
        for op, *arg in chain:
            if op == "neg":
                x = -x
            elif op == "array":
                x = x * np.array(arg[0], dtype)
            else:
                x = x * arg[0] if op == "mul" else x / arg[0]
        return np.sum(x)
    return f


def _transposed_chain(chain, dtype):
    """The gradient as the unfolded program computes it: the rules' factors one by one."""
    ct = np.ones(3, dtype)
    for op, *arg in reversed(chain):
        if op == "neg":
            ct = -ct
        elif op == "array":
            ct = ct * np.array(arg[0], dtype)
        else:
            ct = ct * (arg[0] if op == "mul" else 1.0 / arg[0])
    return ct


def _assert_same_bits(got, expected):
    assert got.dtype == expected.dtype
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan], expected[~nan])
    np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(expected[~nan]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(chain=chain_steps(POWERS_OF_TWO), dtype=st.sampled_from([np.float32, np.float64]))
def test_item8_folded_factors_give_the_unfolded_programs_result_bit_for_bit(chain, dtype):
    # Powers of two multiply exactly until they overflow or underflow, so any difference
    # is an Inf, NaN or zero that folding made or lost.
    x = np.array([0.0, 1.0, -3.0], dtype)
    with np.errstate(all="ignore"):
        expected = _transposed_chain(chain, dtype)
        _assert_same_bits(grad(_forward_chain(chain, dtype))(x), expected)
        _assert_same_bits(jit(grad(_forward_chain(chain, dtype)))(x), expected)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(chain=chain_steps(FACTORS), dtype=st.sampled_from([np.float32, np.float64]))
def test_item8_folded_factors_change_rounding_only(chain, dtype):
    x = np.array([0.0, 1.0, -3.0], dtype)
    with np.errstate(all="ignore"):
        expected = _transposed_chain(chain, dtype)
        got = grad(_forward_chain(chain, dtype))(x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected) & (np.abs(expected) >= np.finfo(dtype).tiny)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5 if dtype == np.float32
                               else 1e-13)


def test_item8_overflow_is_not_folded_away():
    g = grad(lambda a: np.sum((a * 1e200 * 1e200) ** 2))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(g(np.array([0.0, 1.0])), [0.0, np.inf])
