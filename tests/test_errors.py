"""Every error class: raised on the bad input, with a message that says what to do.

The autouse fixture in conftest.py checks that the trace stack is empty after each test.
"""
import numpy as np
import pytest
import scipy.special

from helpers import raises
from pullback import errors, grad, pullback as vjp, pushforward

x2 = np.array([1.0, 2.0])


def test_grad_of_non_scalar_output():
    with raises(errors.NonScalarOutputError, "shape (2,)", "jacobian", "pullback", "sum()"):
        grad(lambda x: x ** 2)(x2)
    with raises(errors.NonScalarOutputError, "shape (1,)"):
        grad(lambda x: x[:1])(x2)
    assert issubclass(errors.NonScalarOutputError, TypeError)


@pytest.mark.parametrize("cotangent, fragments", [
    (np.ones(3), ["shape (3,)", "shape (2,)"]),
    (np.ones(2, np.float32), ["float32", "float64", "astype"]),
    ((np.ones(2), np.ones(2)), ["structure"]),
    ("one", ["str"]),
])
def test_cotangent_mismatch(cotangent, fragments):
    out, back = vjp(lambda x: x * 2.0, x2)
    with raises(errors.CotangentError, *fragments):
        back(cotangent)


@pytest.mark.parametrize("primals, tangents, fragments", [
    ((x2,), (np.ones(3),), ["shape (3,)", "primal"]),
    ((x2,), (np.ones(2, np.float32),), ["float32"]),
    ((x2,), ((np.ones(2), np.ones(2)),), ["structure"]),
    (x2, np.ones(2), ["tuples"]),
])
def test_tangent_mismatch(primals, tangents, fragments):
    with raises(errors.TangentError, *fragments):
        pushforward(np.sin, primals, tangents)


@pytest.mark.parametrize("value, fragment", [
    (np.array([1, 2]), "integer"), (np.array([True]), "boolean"), (3, "integer"),
    ("text", "str"),
])
def test_differentiating_with_respect_to_non_float_inputs(value, fragment):
    with raises(errors.NonDifferentiableInputError, fragment):
        grad(lambda x: np.sum(x * 1.0))(value)
    with raises(errors.NonDifferentiableInputError, fragment):
        pushforward(lambda x: x, (value,), (value,))


def test_unsupported_function_names_itself_and_points_to_custom_rules():
    with raises(errors.UnsupportedFunctionError, "histogram", "custom_jvp"):
        grad(lambda x: np.sum(np.histogram(x)[1]))(x2)
    with raises(errors.UnsupportedFunctionError, "hyp2f1"):
        grad(lambda x: np.sum(scipy.special.hyp2f1(1.0, 2.0, 3.0, x)))(x2)
    with raises(errors.UnsupportedFunctionError, "reflect_type='odd'"):
        grad(lambda x: np.sum(np.pad(x, 1, mode="reflect", reflect_type="odd")))(x2)


@pytest.mark.parametrize("body, fragment", [
    (lambda x: x.__setitem__(0, 1.0), "at(x)[index].set"),
    (lambda x: np.add(x, 1.0, out=np.zeros(2)), "out="),
    (lambda x: np.add.at(x, [0], 1.0), "add.at"),
    (lambda x: np.exp(x, out=np.zeros(2)), "in place"),
    (lambda x: x.sort(), "np.sort"),
])
def test_in_place_writes_are_refused(body, fragment):
    with raises(errors.InPlaceMutationError, fragment):
        grad(lambda x: np.sum(body(x)))(x2)


@pytest.mark.parametrize("convert, fragment", [
    (float, "float()"), (int, "int()"), (lambda v: v.item(), ".item()"),
    (lambda v: [0, 1][v], "index"),
])
def test_python_number_conversion_of_traced_value(convert, fragment):
    with raises(errors.ConcretizationError, fragment, "stop_gradient"):
        grad(lambda x: convert(x) * x)(2.0)


@pytest.mark.parametrize("convert", [np.asarray, np.array])
def test_plain_numpy_array_conversion_of_traced_value(convert):
    with raises(errors.ArrayConversionError, "pullback.numpy", "np.stack"):
        grad(lambda x: np.sum(convert(x)))(x2)


def test_argnums_out_of_range():
    with raises(errors.ArgnumsError, "argument 3", "2 positional"):
        grad(lambda a, b: a * b, argnums=3)(1.0, 2.0)


def test_has_aux_without_a_pair():
    with raises(errors.AuxOutputError, "pair"):
        grad(lambda x: x * 2.0, has_aux=True)(1.0)


def test_errors_inside_nested_transformations_leave_no_trace():
    with raises(errors.NonScalarOutputError):
        pushforward(lambda x: grad(lambda y: y * x)(np.ones(2)), (1.0,), (1.0,))
    with raises(errors.ConcretizationError):
        grad(lambda x: grad(lambda y: float(y) * x)(1.0))(1.0)


def test_every_error_class_is_a_pullback_error_with_a_builtin_base():
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.PullbackError) \
                and cls is not errors.PullbackError:
            assert len(cls.__mro__) > 3, f"{name} should also derive from a builtin exception"
            assert cls.__doc__
