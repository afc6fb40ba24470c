"""Third correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet in the areas earlier reviews touched least (sparse plans,
custom rules under transformations, linear-algebra wrappers at degenerate inputs, dtypes,
statistics). Each test is named after the defect it pins down."""
import numpy as np
import pytest

import pullback
import pullback.testing
from helpers import raises
from pullback import sparse
from pullback.errors import (CustomRuleError, InPlaceMutationError, NonDifferentiableInputError,
                             PatternError)


# ------------------------------------ sparse plans


def test_sparse_plan_with_a_given_pattern_refuses_nonzeros_that_appear_at_a_later_x():
    """A pattern given by the caller may hold at the x a plan was prepared at and not at a
    later one. The missing nonzeros (column 1 of x * x[1]) share their compressed entries
    with the diagonal, so the plan's check of its empty entries could not see them and it
    returned the diagonal plus a column, off by up to 5.0; each call now checks a random
    product too."""
    def f(x):
        return np.where(x[0] > 0, x * x[1], x)

    for mode in ("forward", "reverse"):
        plan = sparse.prepare_jacobian(f, np.array([-1.0, 2, 3, 4, 5]),
                                       pattern=np.eye(5, dtype=bool), mode=mode)
        assert plan.checks_every_call
        np.testing.assert_array_equal(plan(np.array([-2.0, 1, 1, 1, 1])).toarray(), np.eye(5))
        with raises(PatternError, "misses nonzeros", "random vector"):
            plan(np.array([1.0, 2, 3, 4, 5]))

    def h(x):
        return np.sum(np.where(x[0] > 0, x ** 2 * x[1], x ** 2))

    plan = sparse.prepare_hessian(h, np.array([-1.0, 2, 3, 4]), pattern=np.eye(4, dtype=bool))
    with raises(PatternError, "misses nonzeros", "random vector"):
        plan(np.array([1.0, 2, 3, 4]))
    # A detected pattern holds at every x: no product beyond the colours.
    assert not sparse.prepare_hessian(h, np.array([-1.0, 2, 3, 4])).checks_every_call



def test_sparse_jacobian_at_a_singular_point_says_so_instead_of_blaming_the_pattern():
    """sqrt(x) * x[0] at x[0] = 0: a zero tangent times sqrt's infinite derivative is NaN in
    a compressed product, in an entry the (detected, correct) pattern leaves empty. The
    error said the "given pattern" missed a nonzero (nan) and asked for another pattern."""
    x = np.array([0.0, 1.0, 2.0, 3.0])
    with np.errstate(all="ignore"), raises(PatternError, "not finite at this x", "densely"):
        sparse.sparse_jacobian(lambda t: np.sqrt(t) * t[0], x)

@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("dtype", [np.int64, bool])
def test_sparse_jacobian_of_an_integer_or_boolean_output_is_zero_as_the_dense_one(mode, dtype):
    """Forward mode's compressed products of an integer output were integers, and the
    pattern check stopped on a bare ValueError from np.finfo ("not inexact")."""
    def f(x):
        return (x > 1).astype(dtype)

    x = np.arange(3.0)
    matrix = sparse.sparse_jacobian(f, x, mode=mode, pattern=np.eye(3, dtype=bool))
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix.toarray(), pullback.jacobian(f)(x))


@pytest.mark.parametrize("function", [sparse.sparse_jacobian, sparse.sparse_hessian])
def test_sparse_matrices_refuse_float16_inputs_clearly(function):
    """scipy.sparse holds no float16 matrix: the decompression raised scipy's ValueError."""
    with raises(NonDifferentiableInputError, "float16", "astype(np.float32)"):
        function(lambda x: np.sum(x ** 3), np.ones(3, np.float16))


def test_jacrev_of_a_boolean_output_is_zero_not_a_cotangent_error():
    """The one-hot basis of a boolean output was made of integers (True * 1), which the
    output's pullback refused as a cotangent of the wrong dtype, naming a cast the user
    never wrote; an integer output already gave zeros."""
    x = np.arange(3.0)
    for f in (lambda t: t > 1, lambda t: np.stack([t > 1, t < 1])):
        jacobian = pullback.jacrev(f)(x)
        np.testing.assert_array_equal(jacobian, np.zeros(np.shape(f(x)) + x.shape))
        assert jacobian.dtype == np.float64


# ------------------------------------ custom rules


def _scaled_sine(kind):
    """x, s -> s sin(x) with a custom rule whose residuals are its own arguments."""
    if kind == "vjp":
        f = pullback.custom_vjp(lambda x, s: s * np.sin(x))
        return f.defvjp(lambda x, s: (f(x, s), (x, s)),
                        lambda res, g: (g * res[1] * np.cos(res[0]), np.sum(g * np.sin(res[0]))))
    f = pullback.custom_jvp(lambda x, s: s * np.sin(x))
    f.defjvp(lambda p, t: (f(*p), t[1] * np.sin(p[0]) + p[1] * np.cos(p[0]) * t[0]))
    return f


@pytest.mark.parametrize("kind", ["vjp", "jvp"])
@pytest.mark.parametrize("mode", pullback.operators.HESSIAN_MODES)
def test_custom_rule_returning_an_argument_traced_by_an_outer_transformation_is_no_closure(
        kind, mode):
    """A Hessian in x of a custom function of (x, s), with s traced by an outer
    transformation (jit's staging, or a grad in s): the rule, run by the inner
    transformations before the outer one reached the call, returned s (an argument) and
    was refused as a closure over a traced value, though eager hessian(L)(x, s) worked."""
    f = _scaled_sine(kind)

    def loss(x, s):
        return np.sum(f(x, s) ** 2)

    x, s = np.array([0.3, 0.7]), np.array(1.5)
    expected = np.diag(2 * s ** 2 * np.cos(2 * x))              # of s^2 sin(x)^2
    hessian = pullback.hessian(loss, mode=mode)
    np.testing.assert_allclose(hessian(x, s), expected)
    np.testing.assert_allclose(pullback.jit(hessian)(x, s), expected)
    np.testing.assert_allclose(pullback.jit(hessian)(x, 1.5), expected)
    np.testing.assert_allclose(pullback.grad(lambda s: np.sum(hessian(x, s)))(s),
                               np.sum(4 * s * np.cos(2 * x)))


# ------------------------------------ indexing


@pytest.mark.parametrize("shape, index", [
    ((3,), (np.array([True, False]),)),
    ((2, 3), (slice(None), np.array([True, False]))),
    ((2, 3), (Ellipsis, np.array([True, False]))),
    ((2, 3), (None, np.array([True, False, True]))),
    ((2, 3), (np.array([[True, False], [False, True]]),)),
])
def test_a_boolean_mask_of_the_wrong_shape_raises_as_in_numpy(shape, index):
    """A mask shorter than its axis became integer indices into part of it: x[[True,
    False]] of three elements gave x[[0]] (and its derivative) in every mode where NumPy
    raises IndexError."""
    x = np.arange(float(np.prod(shape))).reshape(shape)
    with pytest.raises(IndexError):
        x[index]
    for run in (pullback.jit(lambda t: t[index]), pullback.grad(lambda t: np.sum(t[index])),
                lambda t: pullback.numpy.at(t)[index].set(0.0)):
        with pytest.raises(IndexError, match="boolean index did not match"):
            run(x)


def test_a_boolean_mask_of_the_right_shape_still_indexes_as_numpy():
    x = np.arange(6.0).reshape(2, 3)
    for index in [(np.array([True, False]),), (Ellipsis, np.array([True, False, True])),
                  (None, np.array([False, True]), slice(1, None)),
                  (np.array([True, True]), np.array([True, False, True])),
                  (x > 2,)]:
        np.testing.assert_array_equal(pullback.jit(lambda t: t[index])(x), x[index])


# ------------------------------------ augmented assignment


def _aliased(x):
    y = x * 1.0
    z = y                       # NumPy: z is y, so z sees the += below
    y += 1.0
    return np.sum(z * z)


def _broadcasting(x):
    y = x * 1.0
    y += np.ones((2,) + np.shape(x))   # NumPy: y cannot grow in place
    return np.sum(y)


def _narrowing(x):
    y = x.astype(np.float32)
    y += x                      # NumPy: y stays float32
    return y


@pytest.mark.parametrize("transform", [
    pullback.grad, pullback.jit, pullback.hessian,
    lambda f: lambda x: pullback.vmap(f)(np.stack([x, x]))])
def test_augmented_assignment_to_a_traced_array_with_another_name_is_refused(transform):
    """`z = y; y += 1` changes z too in NumPy; a traced y was rebound to y + 1 and z kept
    the old values: the gradient of sum(z * z) at [1, 2, 3] was [2, 4, 6], NumPy's
    function has [4, 6, 8]."""
    x = np.arange(1.0, 4.0)
    assert _aliased(x.copy()) == 29.0
    with raises(InPlaceMutationError, "several names refer to (y, z)", "copy"):
        transform(_aliased)(x)


def test_augmented_assignment_keeps_shape_and_dtype_as_in_numpy():
    """A traced `y += v` broadcast y to a new shape (jit gave 18.0 where NumPy raises) and
    promoted float32 to float64 (NumPy keeps float32); a cast NumPy refuses was made."""
    x = np.arange(1.0, 4.0)
    with pytest.raises(ValueError, match="non-broadcastable output operand"):
        _broadcasting(x)
    with pytest.raises(ValueError, match="non-broadcastable output operand with shape"):
        pullback.jit(_broadcasting)(x)
    for result in (pullback.jit(_narrowing)(x), pullback.jvp(_narrowing, (x,), (x,))[1],
                   pullback.jacfwd(_narrowing)(x)):
        assert result.dtype == np.float32
    np.testing.assert_array_equal(pullback.jit(_narrowing)(x), _narrowing(x))

    def to_bool(t):
        y = t > 1
        y += 1.5
        return y
    with raises(InPlaceMutationError, "same_kind"):
        pullback.jit(to_bool)(x)


def test_augmented_assignment_without_another_name_differentiates_as_before():
    def accumulate(x):
        acc = 0.0 * x
        for i in range(3):
            acc += x ** i
        acc -= 1.0
        acc *= 2.0
        acc /= 3.0
        acc **= 2
        acc @= np.eye(3)
        return np.sum(acc)

    x = np.arange(1.0, 4.0)
    pullback.testing.check_grads(accumulate, (x,), order=2)
    np.testing.assert_allclose(pullback.jit(pullback.grad(accumulate))(x),
                               pullback.grad(accumulate)(x))


def _sine_with_a_string_residual(tag=lambda x: "cos"):
    """sin, whose fwd rule passes bwd a string (which derivative to use) among its
    residuals; `tag(x)` makes the string."""
    f = pullback.custom_vjp(lambda x: np.sin(x))

    def bwd(residuals, ct):
        x, which = residuals
        assert which == "cos", which
        return (ct * np.cos(x),)
    return f.defvjp(lambda x: (np.sin(x), (x, tag(x))), bwd)


def test_custom_vjp_string_residuals_work_under_jit_grad_as_under_jit_hessian():
    """Known leftover: jit(grad(f)) refused a string residual (the outputs of fwd's staged
    call must be arrays) that eager mode, vmap and jit(hessian(f)) accepted. Strings are
    now kept beside the call and given back to bwd."""
    f = _sine_with_a_string_residual()

    def loss(x):
        return np.sum(f(x) ** 2)

    x = np.array([0.3, 0.7])
    gradient = 2 * np.sin(x) * np.cos(x)
    np.testing.assert_allclose(pullback.grad(loss)(x), gradient)
    jitted = pullback.jit(pullback.grad(loss))
    for y in (x, 2 * x):
        np.testing.assert_allclose(jitted(y), 2 * np.sin(y) * np.cos(y))
    np.testing.assert_allclose(pullback.jit(pullback.value_and_grad(loss))(x)[1], gradient)
    np.testing.assert_allclose(pullback.jit(pullback.hessian(loss))(x),
                               pullback.hessian(loss)(x))
    np.testing.assert_allclose(pullback.vmap(pullback.grad(loss))(np.stack([x, 2 * x]))[1],
                               2 * np.sin(2 * x) * np.cos(2 * x))


def test_custom_vjp_residuals_that_vary_per_run_or_are_objects_are_refused_under_vmap():
    """A string residual that differs between the runs of fwd (example by example under
    vmap) could not be matched to its run by bwd: refused. An object residual under vmap
    reached bwd as an object array and failed inside the user's bwd (AttributeError)."""
    def per_example(x):
        return "cos" if float(np.asarray(x)[0]) < 1 else "other"   # untraceable: per example

    f = _sine_with_a_string_residual(per_example)
    batch = np.array([[0.3, 0.7], [1.3, 1.7]])
    with raises(CustomRuleError, "string residuals that differ between its runs"):
        pullback.vmap(pullback.grad(lambda x: np.sum(f(x))))(batch)

    class Box:
        def __init__(self, value):
            self.value = value

    g = pullback.custom_vjp(lambda x: np.sin(x))
    g.defvjp(lambda x: (np.sin(np.asarray(x)), Box(np.cos(np.asarray(x)))),
             lambda box, ct: (ct * box.value,))
    np.testing.assert_allclose(pullback.grad(lambda x: np.sum(g(x)))(batch[0]), np.cos(batch[0]))
    with raises(CustomRuleError, "neither an array nor a number nor a string", "vmap"):
        pullback.vmap(pullback.grad(lambda x: np.sum(g(x))))(batch)
    with raises(CustomRuleError, "returned a Box", "must be arrays or numbers"):
        pullback.jit(pullback.grad(lambda x: np.sum(g(x))))(batch[0])


@pytest.mark.parametrize("index", [True, False, np.True_, (np.False_, 1)])
def test_a_boolean_scalar_index_is_refused_clearly(index):
    """x[True] (a new axis in NumPy) stopped on NumPy's ValueError from inside pullback's
    indexing ("Calling nonzero on 0d arrays is not allowed")."""
    from pullback.errors import UnsupportedFunctionError
    x = np.ones((2, 3))
    with raises(UnsupportedFunctionError, "boolean scalar index", "x[None]"):
        pullback.jit(lambda t: t[index])(x)


def _assigned_shape(x):
    y = x * 1.0
    y.shape = (3, 1)            # NumPy: y becomes a column, so y * arange(3) is 3 x 3
    return np.sum(y * np.arange(3.0))


def _assigned_dtype(x):
    y = x * 1.0
    y.dtype = np.float32        # NumPy: the same bytes read as twice as many float32s
    return np.sum(y)


def _assigned_real(x):
    y = x * (1.0 + 1.0j)
    y.real = 0.0
    return np.sum(np.abs(y))


@pytest.mark.parametrize("transform", [
    pullback.grad, pullback.jit, pullback.hessian, pullback.jacfwd,
    lambda f: lambda x: pullback.vmap(f)(np.stack([x, x]))])
@pytest.mark.parametrize("f, name", [(_assigned_shape, "shape"), (_assigned_dtype, "dtype"),
                                     (_assigned_real, "real")])
def test_assigning_shape_dtype_or_real_of_a_traced_array_is_refused(transform, f, name):
    """`y.shape = (3, 1)` changed a tracer's shape but not its value: jacfwd of
    sum(y * arange(3)) was [0, 1, 2] where NumPy's function has [3, 3, 3]; `y.dtype = t`
    gave the gradient [1, 1, 1] of a sum NumPy reads over reinterpreted bytes; jit and vmap
    raised a bare AttributeError."""
    x = np.arange(1.0, 4.0)
    with raises(InPlaceMutationError, f"`x.{name} = ...`", "in place"):
        transform(f)(x)
