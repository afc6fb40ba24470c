"""Issue 12 section 3, the eager MLP rows: the passes over large arrays that eager reverse mode
saves (matmul's pullback on NumPy matrices, cotangents summed into a pullback's fresh array,
1 - x * x in one buffer), each with the derivatives unchanged."""
import tracemalloc

import numpy as np
import pytest

import pullback
from helpers import benchmark_module
from pullback.primitives import contraction as C
from pullback.primitives import elementwise as E
from pullback.primitives.families import _on_arrays
from pullback.transforms.reverse import _Accumulator

RNG = np.random.default_rng(12)


@pytest.mark.parametrize("wrt", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("dtypes", [("float64", "float64"), ("float32", "float32"),
                                    ("complex128", "complex128"), ("float32", "float64")])
def test_item12_matmul_pullback_on_arrays_matches_the_transposed_products(wrt, dtypes):
    a = RNG.standard_normal((5, 3)).astype(dtypes[0])
    b = RNG.standard_normal((3, 4)).astype(dtypes[1])
    out = a @ b
    ct = RNG.standard_normal(out.shape).astype(out.dtype)
    ct_a, ct_b = C.matmul.vjp(list(wrt), out, a, b)(ct)
    for ct_x, x, expected, w in ((ct_a, a, ct @ b.T, wrt[0]), (ct_b, b, a.T @ ct, wrt[1])):
        if not w:
            assert ct_x is C.ZERO
            continue
        assert ct_x.shape == x.shape and ct_x.dtype == x.dtype     # fitted to the operand
        np.testing.assert_allclose(ct_x, expected.astype(x.dtype), rtol=1e-6)


def test_item12_matmul_pullback_outer_product_on_arrays():
    # A (n, 1) @ (1, m) product's cotangent of a column: the outer product without BLAS.
    h, w = RNG.standard_normal((6, 5)), RNG.standard_normal((5, 1))
    ct = RNG.standard_normal((6, 1))
    ct_h, ct_w = C.matmul.vjp([True, True], h @ w, h, w)(ct)
    np.testing.assert_allclose(ct_h, ct * w.T)
    np.testing.assert_allclose(ct_w, h.T @ ct)


def test_item12_a_fresh_cotangent_is_summed_into_in_place():
    accumulator = _Accumulator([None])
    fresh = np.ones(4)
    accumulator.cotangents[0] = fresh
    del fresh                                # the list's slot is its only reference
    buffer = accumulator.cotangents[0]
    buffer_id = id(buffer)
    del buffer
    accumulator.add(0, np.full(4, 2.0))
    assert id(accumulator.cotangents[0]) == buffer_id           # no copy
    np.testing.assert_array_equal(accumulator.cotangents[0], np.full(4, 3.0))


def _summed_into(first):
    """What `_Accumulator.add` makes of `first` (its slot's value) plus twos."""
    accumulator = _Accumulator([None])
    accumulator.cotangents[0] = first
    accumulator.add(0, np.full(first.shape, 2.0))
    return accumulator.cotangents[0]


def test_item12_a_shared_cotangent_is_copied_before_summing():
    # An array something else refers to (a seed, a residual, another cotangent), a view
    # (its base may be read elsewhere) or a read-only array keeps its values.
    kept = np.ones(4)
    assert _summed_into(kept) is not kept
    np.testing.assert_array_equal(kept, np.ones(4))
    base = np.ones(6)
    np.testing.assert_array_equal(_summed_into(base[:4]), np.full(4, 3.0))
    np.testing.assert_array_equal(base, np.ones(6))
    read_only = np.ones(4)
    read_only.flags.writeable = False
    np.testing.assert_array_equal(_summed_into(read_only), np.full(4, 3.0))
    np.testing.assert_array_equal(read_only, np.ones(4))


def test_item12_cotangents_shared_between_inputs_stay_apart():
    # bwd hands one fresh array to both inputs; x's cotangent then gets a second term, which
    # must not reach y's.
    shared = {}

    @pullback.custom_vjp
    def h(x, y):
        return x * y

    def bwd(res, ct):
        g = np.full(np.shape(ct), 5.0)
        shared["g"] = g.copy()
        return g, g
    h.defvjp(lambda x, y: (x * y, None), bwd)
    x, y = RNG.standard_normal(3), RNG.standard_normal(3)
    gx, gy = pullback.grad(lambda x, y: np.sum(np.sin(x)) + np.sum(h(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, np.cos(x) + 5.0)
    np.testing.assert_array_equal(gy, shared["g"])


def test_item12_a_seed_passed_on_unchanged_is_never_written_into():
    x, seed = RNG.standard_normal(4), RNG.standard_normal(4)
    kept = seed.copy()
    out, back = pullback.pullback(lambda x: x + x * 1.0, x)
    np.testing.assert_allclose(back(seed)[0], 2.0 * kept)
    np.testing.assert_array_equal(seed, kept)


@pytest.mark.parametrize("x", [np.linspace(-0.9, 0.9, 7), np.linspace(-0.9, 0.9, 7, dtype=np.float32),
                               np.array(0.5), np.array([0.3 + 0.2j, -0.1j]), 0.25,
                               np.arange(3), np.linspace(-0.9, 0.9, 1 << 15),
                               np.linspace(-0.9, 0.9, 1 << 16, dtype=np.float32)], ids=str)
def test_item12_one_minus_square_is_numpys_value(x):
    # (small arrays by the operators, large ones written into the square's buffer)
    expected = 1.0 - np.square(x)
    got = E._one_minus_square(x)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_array_equal(got, expected)


def test_item12_tanh_partial_makes_one_large_array():
    # On a large array tanh's partial derivative (1 - out * out) is one array: the square's.
    out = np.tanh(RNG.standard_normal((256, 256)))
    partial = _on_arrays(E.tanh.partials[0])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        d = partial(out)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * out.nbytes
    np.testing.assert_array_equal(d, 1.0 - out * out)


def test_item12_mlp_gradient_and_hvp_unchanged():
    # The benchmark's MLP: the gradient against the hand-written one, the HVP in every mode
    # against the default.
    so, eager = benchmark_module("second_order"), benchmark_module("eager")
    d = so.data()
    _, mlp, _, _ = so.functions(np, dict(M=np, **d))
    p, v = d["mlp_p"], d["mlp_v"]
    np.testing.assert_allclose(pullback.grad(mlp)(p),
                               eager.mlp_grad_numpy(p, d["mlp_X"], d["mlp_Y"]), rtol=1e-10,
                               atol=1e-13)
    hv = pullback.hvp(mlp, p, v)
    for mode in ("forward-over-reverse", "reverse-over-reverse"):
        np.testing.assert_allclose(pullback.hvp(mlp, p, v, mode=mode), hv, rtol=1e-9,
                                   atol=1e-12)


@pytest.mark.parametrize("shapes", [((6, 1), (1, 5)), ((3, 4, 1), (1, 5)), ((4, 1), (2, 1, 5)),
                                    ((2, 1, 4, 1), (3, 1, 5))])
@pytest.mark.parametrize("dtypes", [("float64", "float64"), ("float32", "float64"),
                                    ("complex64", "float32"), ("int64", "bool")])
def test_item12_outer_products_are_numpys_matmul(shapes, dtypes):
    # A contraction of length 1 (an outer product) is computed without BLAS: matmul's values,
    # shape, dtype and signed zeros.
    a = (RNG.standard_normal(shapes[0]) * 3).astype(dtypes[0])
    b = (RNG.standard_normal(shapes[1]) * 3).astype(dtypes[1])
    a.flat[0] = -0.0 if a.dtype.kind in "fc" else a.flat[0]
    got, expected = C.matmul(a, b), np.matmul(a, b)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got.real), np.signbit(expected.real))
