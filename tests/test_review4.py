"""Fourth correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet in the areas earlier reviews touched least (loops in
every mode, jit called by other transformations, nested vmap, the fused tier, operators).
Each test is named after the defect it pins down."""
import numpy as np
import pytest

import pullback
from helpers import raises
from pullback import checkpoint, cond, fori_loop, scan, switch, while_loop
from pullback.errors import LoopTypeError

HESSIAN_MODES = pullback.operators.HESSIAN_MODES


# ------------------------------------ loops


def _scanned(x):
    c, ys = scan(lambda c, t: (np.sin(c) * t + c[::-1], c * t), x, np.linspace(0.5, 1.5, 4))
    return np.sum(c ** 2) + np.sum(ys)


def _fori(x):
    return np.sum(fori_loop(0, 3, lambda i, c: np.cos(c) * (i + 1.0) + c[::-1], x) ** 2)


def _while(x):
    return np.sum(while_loop(lambda v: v[1] < 3, lambda v: (np.sin(v[0]) + x, v[1] + 1),
                             (x, 0))[0] ** 2)


def _branch(x):
    return np.sum(cond(np.sum(x) > 0, lambda a: np.sin(a) * a, np.cos, x)
                  + switch(1, [np.sin, np.exp], x))


def _checkpointed(x):
    return np.sum(checkpoint(lambda a: np.sin(a) * a[::-1])(x) ** 2)


LOOPS = [_scanned, _fori, _while, _branch, _checkpointed]


@pytest.mark.parametrize("f", LOOPS, ids=lambda f: f.__name__)
def test_transformations_of_jit_of_a_loop_bind_the_loop_on_their_tracers(f):
    """jit's traceable code (run when another transformation calls the jitted function:
    grad(jit(f)), vmap(jit(f)), jit(jit(f))) wrote every loop as Python statements, storing
    the ys into rows of np.empty and branching on the predicate: on tracers an
    ArrayAssignmentError (or a conversion error) where eager mode worked."""
    x = np.array([0.3, -0.4, 0.5])
    xs = np.stack([x, 1.5 * x])
    jitted = pullback.jit(f)
    np.testing.assert_allclose(pullback.grad(jitted)(x), pullback.grad(f)(x))
    np.testing.assert_allclose(pullback.vmap(jitted)(xs), [f(x) for x in xs])
    np.testing.assert_allclose(pullback.vmap(pullback.jit(pullback.grad(f)))(xs),
                               [pullback.grad(f)(x) for x in xs])
    np.testing.assert_allclose(pullback.hessian(jitted, mode="forward-over-forward")(x),
                               pullback.hessian(f)(x))
    np.testing.assert_allclose(pullback.jit(jitted)(x), f(x))


def test_nested_vmap_of_a_while_loop_batches_the_predicate_over_the_carries_it_reads():
    """A while_loop under two vmaps, the predicate batched by the outer one through a carry
    the inner one left shared: the predicate stayed staged for the unbatched carry, so the
    mask broadcast against the carry's own axis: a bare broadcasting ValueError, or where
    the sizes matched (vmap of forward_grad, the basis as long as x) silently wrong
    gradients (off by up to 80)."""
    def f(x, s):
        return while_loop(lambda v: np.sum(v) < 20.0, lambda v: v * 1.3 + s, x)

    xs, ss = np.array([[1.0, 2.0], [3.0, 4.0], [0.1, 0.1]]), np.array([0.1, 0.2])
    expected = [[f(x, s) for s in ss] for x in xs]
    np.testing.assert_allclose(
        pullback.vmap(pullback.vmap(f, in_axes=(None, 0)), in_axes=(0, None))(xs, ss), expected)
    np.testing.assert_allclose(
        pullback.vmap(pullback.vmap(f, in_axes=(0, None)), in_axes=(None, 0))(xs, ss),
        np.swapaxes(expected, 0, 1))

    def g(x):
        return np.sum(while_loop(lambda v: np.sum(v) < 20.0, lambda v: v * 1.3 + x * 0.1, x) ** 2)

    xs = np.array([[0.8, 1.2, 1.0], [0.9, 1.3, 1.1], [0.6, 0.8, 0.7]])   # 6, 6 and 8 steps
    for gradient in (pullback.forward_grad(g), pullback.grad(g)):
        np.testing.assert_allclose(pullback.vmap(gradient)(xs), [gradient(x) for x in xs])
    for mode in ("reverse-over-forward", "forward-over-forward"):
        hessian = pullback.hessian(g, mode=mode)
        np.testing.assert_allclose(pullback.vmap(hessian)(xs), [hessian(x) for x in xs])


@pytest.mark.parametrize("mode", ["forward-over-reverse", "reverse-over-reverse"])
def test_vmap_of_a_second_derivative_through_a_while_loops_reversal_refuses_masked_examples(
        mode):
    """vmap of hessian (or hvp) over examples whose while_loop stops after different
    numbers of steps (6, 6, 8): differentiating the reversal again ran the unmasked body
    for the longest example's number of steps on every example, so the Hessians of the
    shorter ones were silently wrong (off by 54); now a LoopTypeError names the modes
    that work. An unbatched predicate (every example the same number of steps) is fine."""
    def g(x):
        return np.sum(while_loop(lambda v: np.sum(v) < 20.0, lambda v: v * 1.3 + x * 0.1, x) ** 2)

    xs = np.array([[0.8, 1.2, 1.0], [0.9, 1.3, 1.1], [0.6, 0.8, 0.7]])
    with raises(LoopTypeError, "under vmap", "reverse-over-forward"):
        pullback.vmap(pullback.hessian(g, mode=mode))(xs)
    with raises(LoopTypeError, "under vmap", "reverse-over-forward"):
        pullback.vmap(lambda x: pullback.hvp(g, x, np.ones(3), mode=mode))(xs)

    def h(x):
        return np.sum(while_loop(lambda v: v[1] < 4, lambda v: (v[0] * np.sin(v[0]) + x, v[1] + 1),
                                 (x, 0))[0] ** 2)

    hessian = pullback.hessian(h, mode=mode)
    np.testing.assert_allclose(pullback.vmap(hessian)(xs), [hessian(x) for x in xs])



def test_jit_of_reverse_mode_through_a_while_loop_inside_a_scan_runs():
    """The tapes a while_loop's reverse mode keeps (one per step of the scan around it,
    object arrays) were allocated in generated code as `np.empty(3, np.object)`, a name
    NumPy 2 removed: AttributeError from jit(grad(f)) where grad(f) worked."""
    def f(x):
        def outer(c, t):
            v, _ = while_loop(lambda s: s[1] < 3, lambda s: (np.sin(s[0]) * t + c, s[1] + 1),
                              (c, 0))
            return v * 0.5, v
        c, ys = scan(outer, x, x)
        return np.sum(c) + np.sum(ys ** 2)

    x = np.array([0.6, 0.9, 1.2])
    jitted = pullback.jit(pullback.grad(f))
    for _ in range(2):                       # interpreted, then compiled
        np.testing.assert_allclose(jitted(x), pullback.grad(f)(x))
    hessian = pullback.hessian(f, mode="reverse-over-forward")
    np.testing.assert_allclose(pullback.jit(hessian)(x), hessian(x))
    pullback.testing.check_grads(f, (x,), order=1)
    for dtype in (object, "M8[ns]", "U3", bool, np.float32, np.complex64, np.intc):
        text = pullback.primitives.families.source(np.dtype(dtype))
        assert eval(text, {"np": np}) == np.dtype(dtype)



@pytest.mark.parametrize("mode", HESSIAN_MODES)
def test_hessian_vector_products_of_a_while_loop_batched_over_the_vectors(mode):
    """vmap of hvp over vectors at one x (make_hvp's matmat, sparse_hessian's compressed
    products): the reversal of the loop got batched cotangents of carries its programs kept
    shared, and the generated code failed writing a (7, 6) result into a (6,) buffer."""
    def f(t):
        return np.sum(while_loop(lambda v: v[1] < 3, lambda v: (np.roll(v[0], 1) * v[0],
                                                                v[1] + 1), (t, 0))[0] ** 2)

    x = np.linspace(0.3, 1.2, 6)
    vs = np.random.default_rng(0).standard_normal((7, 6))
    expected = vs @ pullback.hessian(f, mode="reverse-over-forward")(x)
    np.testing.assert_allclose(pullback.vmap(lambda v: pullback.hvp(f, x, v, mode=mode))(vs),
                               expected, rtol=1e-10)
    np.testing.assert_allclose(pullback.make_hvp(f, x, mode=mode).matmat(vs.T), expected.T,
                               rtol=1e-10)
    np.testing.assert_allclose(pullback.sparse.sparse_hessian(f, x).toarray(),
                               pullback.hessian(f)(x), rtol=1e-10)


# ------------------------------------ Jacobians of integer and boolean outputs

JACOBIANS = [pullback.jacfwd, pullback.jacrev, pullback.jacobian,
             lambda f: pullback.jacobian(f, mode="forward"),
             lambda f: pullback.jit(pullback.jacfwd(f)), lambda f: pullback.jit(pullback.jacrev(f))]


@pytest.mark.parametrize("jacobian", JACOBIANS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("f", [lambda t: t > 1, lambda t: np.floor(t).astype(np.int32),
                               lambda t: (t > 1)[:0], np.argmax, lambda t: np.sum(t) > 1,
                               lambda t: (2 * t, (t > 1).astype(np.int64))])
def test_jacobians_of_integer_and_boolean_outputs_are_zeros_of_the_inputs_dtype(f, dtype,
                                                                                jacobian):
    """jacfwd of an integer or boolean output gave integer or boolean zeros (the tangents'
    dtype), where jacrev gave zeros of the input's dtype."""
    x = np.array([0.5, 1.5, 2.5], dtype)
    for block, out in zip(pullback.tree.flatten(jacobian(f)(x))[0],
                          pullback.tree.flatten(f(x))[0]):
        assert block.dtype == dtype and block.shape == np.shape(out) + x.shape
        if np.dtype(out.dtype).kind in "biu":
            assert not np.any(block)


# ------------------------------------ bitwise operators


BITWISE = {"and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b,
           "reflected and": lambda a, b: 6 & a, "invert": lambda a, b: ~a,
           "shifts": lambda a, b: (a << 2) + (a >> 1) + (1 << b),
           "ufuncs": lambda a, b: np.bitwise_and(a, b) + np.bitwise_or(a, 1)
           + np.bitwise_xor(a, b) + np.invert(b) + np.left_shift(a, 1) + np.right_shift(b, 1),
           "booleans": lambda a, b: ((a > 1) & (b < 3)) | ~(a == b) ^ (a > 2)}


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint8])
@pytest.mark.parametrize("transform", [pullback.jit, pullback.vmap,
                                       lambda f: pullback.jit(pullback.vmap(f))])
@pytest.mark.parametrize("name", sorted(BITWISE))
def test_bitwise_operators_of_traced_integers_are_numpys_not_logical(name, transform, dtype):
    """`&`, `|`, `^` and `~` of a traced integer array were the logical operations
    (np.arange(4) & 3 gave [False, True, True, True], ~x gave booleans), silently; `<<`, `>>`
    and the bitwise ufuncs were unsupported."""
    f = BITWISE[name]
    a, b = np.arange(5, dtype=dtype), np.array([3, 1, 0, 2, 3], dtype)
    expected = f(a, b)
    got = transform(f)(a, b)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("call, fragments", [
    (lambda: scan(lambda c, t: (c, None), 1.0, length=-1), ("length is -1", "at least 0")),
    (lambda: scan(lambda c, t: (c, None), 1.0, length=2.5), ("length is 2.5", "not an integer")),
    (lambda: scan(lambda c, t: (c, None), 1.0, np.ones(3), length=np.float64(3)),
     ("not an integer",)),
    (lambda: scan(3, 1.0, np.ones(3)), ("scan's body is 3", "not a function")),
    (lambda: fori_loop(0, 3, None, 1.0), ("fori_loop's body is None",)),
    (lambda: while_loop(lambda v: v < 1, "step", 0.0), ("while_loop's body_fun",)),
    (lambda: cond(True, np.sin, 1.0, 0.5), ("cond's false_fn is 1.0",)),
    (lambda: switch(0, [np.sin, 3], 0.5), ("switch's branch 1 is 3",)),
    (lambda: checkpoint(3)(1.0), ("checkpoint's function is 3",))])
def test_loops_refuse_lengths_and_functions_they_cannot_run(call, fragments):
    """scan(..., length=-1) returned its initial carry and length=2.5 ran 2 steps, silently
    (range() refuses both); a body, branch or function that is not callable ended in a bare
    TypeError ("'int' object is not callable") from inside the staging."""
    with raises(LoopTypeError, *fragments):
        call()


# ------------------------------------ jit


def test_jit_stages_again_for_static_values_that_are_equal_but_of_another_type_or_sign():
    """Static arguments keyed jit's cache by equality alone: after n=2, n=2.0 (or
    np.float32(2)) reused the program staged for the int (x + n stayed int64), True and 1
    shared a program, and -0.0 reused 0.0's (copysign(1, z) gave 1.0 for -0.0); a NaN
    never found its own entry and staged again at every call."""
    f = pullback.jit(lambda x, n: x + n, static_argnums=1)
    x = np.arange(2)
    for n in (2, 2.0, np.float32(2.0), True, 1, np.int8(1), 2):
        expected = x + n
        got = f(x, n)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    g = pullback.jit(lambda x, z=0.0: x * 0 + np.copysign(1.0, z), static_argnames="z")
    assert g(np.ones(1), z=0.0)[0] == 1.0 and g(np.ones(1), z=-0.0)[0] == -1.0
    assert g(np.ones(1), z=(-0.0, 1)[0])[0] == -1.0
    h = pullback.jit(lambda x, z: x + z, static_argnums=1)
    for _ in range(3):
        h(np.ones(1), float("nan"))
    assert len(h.cache) == 1


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("make", [lambda: np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False]),
                                  lambda: np.matrix([[1.0, 2.0], [3.0, 4.0]])],
                         ids=["masked", "matrix"])
@pytest.mark.parametrize("transform", [lambda f: f, pullback.grad], ids=["f", "grad"])
def test_jit_refuses_masked_arrays_and_matrices_as_eager_transformations_do(make, transform):
    """grad refuses a masked array or np.matrix (their operations are not plain arrays'),
    but jit staged them as plain arrays: jit(grad(f)) of a masked array gave the masked
    element a gradient of 2.0 without a word."""
    def f(x):
        return np.sum(x * x)

    x = make()
    jitted = pullback.jit(transform(f))
    for _ in range(2):
        with raises(pullback.errors.UnsupportedFunctionError, "jit(f)", type(x).__name__,
                    "np.asarray(x)"):
            jitted(x)


# ------------------------------------ operators


def test_hvp_operator_of_a_python_number_is_a_linear_operator():
    """make_hvp(f, 2.0).as_linear_operator() read the dtype of the Python float x: a bare
    AttributeError ('float' object has no attribute 'dtype') where op(v) worked."""
    op = pullback.make_hvp(lambda t: t ** 3, 2.0)
    np.testing.assert_allclose(op.as_linear_operator() @ np.ones(1), [12.0])
    op = pullback.make_hvp(lambda p: np.sum(p[0] ** 3 * p[1]), (2.0, np.ones(2)))
    linear = op.as_linear_operator()
    np.testing.assert_allclose(linear @ np.eye(3), [[24, 12, 12], [12, 0, 0], [12, 0, 0]])


# ------------------------------------ derivatives handed back are arrays of their own


def _pushforward_two(a, b):
    return pullback.pushforward(lambda x: (x + 1, x + 2), (a,), (b,))[1] + (b,)


def _pushforward_view(a, b):
    return pullback.pushforward(lambda x: (x[1:] + 1, x[1:] * 1), (a,), (b,))[1] + (b,)


def _pullback_two(a, b):
    back = pullback.pullback(lambda x, y: (x + y) * 2, a, b)[1]
    ct = np.ones(3)
    return back(ct) + (ct,)


def _pullback_identity(a, b):
    ct = np.ones(3)
    return pullback.pullback(lambda x, y: (x + 0, y * 1), a, b)[1]((ct, ct)) + (ct,)


def _hvp_identity(a, b):
    return pullback.hvp(lambda x: 0.5 * np.sum(x * x), a, b), b


@pytest.mark.parametrize("results", [_pushforward_two, _pushforward_view, _pullback_two,
                                     _pullback_identity, _hvp_identity])
def test_derivatives_are_arrays_of_their_own_never_an_input_or_each_other(results):
    """A tangent passed on unchanged (x + 1) was returned as the caller's own array, and one
    array served two outputs or two arguments: a write into one changed the others."""
    arrays = results(np.arange(3.0), np.full(3, 0.5))
    for i, r in enumerate(arrays):
        for other in arrays[:i]:
            assert not np.may_share_memory(r, other)
