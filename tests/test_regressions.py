"""Regression tests for the results an adversarial review found wrong (one section per item).

Each test is named after the item it pins down; where a whole class of inputs could fail,
the test sweeps the class.
"""
import copy
import warnings

import numpy as np
import pytest

import pullback
from helpers import raises
from pullback import errors, grad, hessian, jacobian, jit, pushforward, vmap
from pullback.operators import HESSIAN_MODES
from pullback.testing import check_grads

rng = np.random.default_rng(8)


# ---------------------------------------------------------------- 3. copy.deepcopy

def _snapshot_simulation(x, copier):
    """A simulation that snapshots its state with `copier` (as users do with deepcopy)."""
    state = {"position": x, "history": [x * 2.0]}
    snapshots = []
    for _ in range(3):
        snapshots.append(copier(state))
        state = {"position": np.sin(state["position"]), "history": state["history"] + [x]}
    return np.sum(snapshots[-1]["position"] ** 2) + np.sum(snapshots[1]["history"][0] * x)


@pytest.mark.parametrize("copier", [copy.deepcopy, copy.copy], ids=["deepcopy", "copy"])
def test_item3_copies_of_traced_values_keep_their_derivative(copier):
    x = rng.uniform(-1, 1, 3)
    identity = lambda state: state      # noqa: E731  (the reference: no copy at all)
    expected = grad(lambda x: _snapshot_simulation(x, identity))(x)
    np.testing.assert_allclose(grad(lambda x: _snapshot_simulation(x, copier))(x), expected)
    np.testing.assert_allclose(jit(grad(lambda x: _snapshot_simulation(x, copier)))(x), expected)
    np.testing.assert_allclose(
        hessian(lambda x: _snapshot_simulation(x, copier))(x),
        hessian(lambda x: _snapshot_simulation(x, identity))(x))
    v = rng.standard_normal(3)
    out, tangent = pushforward(lambda x: copier(x) * 3.0, (x,), (v,))
    assert type(out) is np.ndarray and type(tangent) is np.ndarray
    np.testing.assert_allclose(tangent, 3.0 * v)
    batch = rng.standard_normal((4, 3))
    np.testing.assert_allclose(vmap(lambda x: copier(x)[1:] * 2.0)(batch), batch[:, 1:] * 2.0)


# ------------------------------------------------------------- 5. repeated argnums

def _two_argument_loss(x, y):
    return np.sum(np.sin(x) * y ** 2)


@pytest.mark.parametrize("argnums", [(0, 0), (1, 0, 1), [0, 1, 0]])
def test_item5_repeated_argnums_give_each_requested_derivative(argnums):
    x, y = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
    single = {i: grad(_two_argument_loss, argnums=i)(x, y) for i in (0, 1)}
    for operator in (grad, lambda f, argnums: jacobian(f, argnums=argnums, mode="forward"),
                     lambda f, argnums: jacobian(f, argnums=argnums, mode="reverse")):
        result = operator(_two_argument_loss, argnums=argnums)(x, y)
        assert isinstance(result, tuple) and len(result) == len(argnums)
        for r, i in zip(result, argnums):
            np.testing.assert_allclose(r, single[i])
    blocks = hessian(_two_argument_loss, argnums=argnums)(x, y)
    for row, i in zip(blocks, argnums):
        for block, j in zip(row, argnums):
            np.testing.assert_allclose(block, hessian(_two_argument_loss, argnums=(i, j))(x, y)[0][1])


@pytest.mark.parametrize("argnums", [1.0, "0", True, (0, 1.0), None])
def test_item20_argnums_that_are_not_ints_are_refused_clearly(argnums):
    with raises(errors.ArgnumsError, "int"):
        grad(_two_argument_loss, argnums=argnums)(np.ones(2), np.ones(2))


# ------------------------------------- 4. back and make_hvp never read modified arrays

def test_item4_modifying_outputs_and_inputs_after_pullback_changes_nothing():
    x = rng.uniform(0.5, 1.5, 4)
    expected = pullback.pullback(lambda x: np.exp(x) * np.sin(x), x)[1](np.ones(4))[0]
    for modify in ("output", "input", "both"):
        x_mine = x.copy()
        y, back = pullback.pullback(lambda x: np.exp(x) * np.sin(x), x_mine)
        if modify in ("output", "both"):
            y -= 10.0                       # e.g. y - target, computed in place
        if modify in ("input", "both"):
            x_mine *= -3.0
        np.testing.assert_array_equal(back(np.ones(4))[0], expected)
    # Pytrees of arrays, and outputs that are the inputs themselves.
    tree = {"a": x.copy(), "b": [x.copy()]}
    out, back = pullback.pullback(lambda t: (t["a"], t["b"][0] ** 2), tree)
    assert not np.shares_memory(out[0], tree["a"])
    tree["a"][:] = 0.0
    tree["b"][0][:] = 0.0
    out[1][:] = 0.0
    (cts,) = back((np.ones(4), np.ones(4)))
    np.testing.assert_array_equal(cts["a"], np.ones(4))
    np.testing.assert_array_equal(cts["b"][0], 2.0 * x)


def test_item4_make_hvp_keeps_its_own_copy_of_x():
    x = rng.uniform(-1, 1, 3)
    f = lambda x: np.sum(np.sin(x) * x ** 3)        # noqa: E731
    v = rng.standard_normal(3)
    expected = hessian(f)(x) @ v
    x_mine = x.copy()
    op = pullback.make_hvp(f, x_mine)
    x_mine[:] = 7.0
    np.testing.assert_allclose(op(v), expected)
    np.testing.assert_allclose(op.grad, grad(f)(x))


# ------------------- 11. complex values differentiate (issue 10); masked arrays, np.matrix are refused

COMPLEX_ENTRIES = {
    "x * 1j": lambda x: x * 1j,
    "1j + x": lambda x: 1j + x,
    "complex array * x": lambda x: np.full(3, 1 + 2j) * x,
    "complex matrix @ x": lambda x: np.eye(3) * (1 - 1j) @ x,
    "einsum": lambda x: np.einsum("ij,j->i", np.eye(3) * 1j, x),
    "where": lambda x: np.where(x > 0, x, np.zeros(3, complex)),
    "concatenate": lambda x: np.concatenate([x, np.ones(1, complex)]),
    "power": lambda x: (x + 2.0) ** (0.5 + 1j),
    "divide": lambda x: 1j / (x + 2.0),
}


@pytest.mark.parametrize("entry", COMPLEX_ENTRIES.values(), ids=COMPLEX_ENTRIES.keys())
def test_item11_a_complex_constant_meeting_a_derivative_differentiates(entry):
    x = rng.uniform(0.5, 1.5, 3)
    loss = lambda x: np.sum(np.abs(entry(x)) ** 2)       # noqa: E731  (a real-valued loss)
    check_grads(loss, (x,), order=2)
    check_grads(entry, (x,), order=2)
    np.testing.assert_allclose(jit(grad(loss))(x), grad(loss)(x))
    np.testing.assert_allclose(jacobian(entry)(x), jacobian(entry, mode="forward")(x))
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(hessian(loss, mode=mode)(x), hessian(loss)(x), atol=1e-10)


def test_item11_real_imag_and_conj_of_traced_values():
    x = rng.uniform(-1, 1, 3)
    f = lambda x: np.sum(x.real * np.real(x) + np.conj(x) + x.conjugate() + x.imag + np.imag(x))  # noqa: E731
    np.testing.assert_allclose(grad(f)(x), 2 * x + 2)
    np.testing.assert_allclose(vmap(lambda x: x.imag + x.real)(np.ones((2, 3))), np.ones((2, 3)))
    for part in (lambda z: z.real, lambda z: z.imag, np.conj, np.real, np.imag):
        np.testing.assert_array_equal(vmap(lambda x: part(x * 1j))(np.ones((2, 3))),
                                      part(np.ones((2, 3)) * 1j))
        np.testing.assert_array_equal(jit(lambda x: part(x * 1j))(np.ones(3)),
                                      part(np.ones(3) * 1j))
    z = np.array([1 + 2j])
    assert pullback.numpy.real(z) == 1 and pullback.numpy.imag(z) == 2     # NumPy's own


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)      # np.matrix's own warning
    A_MATRIX = np.matrix([[1.0, 2.0]])


@pytest.mark.parametrize("refused", [np.ma.array([1.0, 2.0], mask=[0, 1]), A_MATRIX],
                         ids=["masked", "matrix"])
def test_item11_masked_arrays_and_matrices_are_refused(refused, tmp_path):
    name = type(refused).__name__
    with raises(errors.NonDifferentiableInputError, name, "np.asarray"):
        grad(lambda x: np.sum(x))(refused)
    with raises(errors.NonDifferentiableInputError, name):
        pushforward(lambda x: x, (refused,), (refused,))
    constant = np.asarray(refused).reshape(-1)
    refused_constant = refused.reshape(-1) if name == "MaskedArray" else refused
    for use in (lambda x: x * refused_constant, lambda x: np.multiply(x, refused_constant),
                lambda x: x @ refused_constant.T if name == "matrix" else x - refused_constant):
        with raises(errors.UnsupportedFunctionError, name):
            grad(lambda x: np.sum(use(x)))(np.ones(constant.size))
    # Other ndarray subclasses (memmap) behave as arrays and stay accepted.
    memmap = np.memmap(tmp_path / "data", dtype=float, mode="w+", shape=(constant.size,))
    memmap[:] = 3.0
    np.testing.assert_array_equal(grad(lambda x: np.sum(x * memmap))(np.ones(constant.size)),
                                  np.full(constant.size, 3.0))


# ------------------------- 18, 19 and np.array: errors that quote the statement and its fix

def _store_element(x):
    y = np.zeros(3)
    y[1] = x[1] ** 2
    return np.sum(y)


def _store_slice(x):
    y = np.zeros(3)
    y[1:] = x[1:] ** 2
    return np.sum(y)


def _store_at_traced_index(x):
    y = np.zeros(3)
    y[np.argmax(x)] = 1.0
    return np.sum(y * x)


TRANSFORMS = {
    "grad": lambda f, x: grad(f)(x),
    "pushforward": lambda f, x: pushforward(f, (x,), (x,)),
    "vmap": lambda f, x: vmap(f)(np.stack([x, x])),
    "jit": lambda f, x: jit(f)(x),
    "jit(grad)": lambda f, x: jit(grad(f))(x),
}


# Eagerly, argmax of a differentiated value is a concrete index: storing at it works.
CASES = [(f, name) for f in (_store_element, _store_slice) for name in TRANSFORMS] + [
    (_store_at_traced_index, name) for name in ("vmap", "jit", "jit(grad)")]


@pytest.mark.parametrize("f, transform", CASES, ids=[f"{f.__name__}-{t}" for f, t in CASES])
def test_item18_storing_a_traced_value_into_a_numpy_array_says_to_use_at(f, transform):
    transform = TRANSFORMS[transform]
    with raises(errors.ArrayAssignmentError, "test_regressions.py", "y[", "pullback.numpy.at"):
        transform(f, rng.uniform(-1, 1, 3))


def test_item18_the_suggested_functional_update_works():
    x = rng.uniform(-1, 1, 3)
    np.testing.assert_allclose(grad(_store_at_traced_index)(x), np.eye(3)[np.argmax(x)])
    fixed = lambda x: np.sum(pullback.numpy.at(np.zeros(3))[1].set(x[1] ** 2))   # noqa: E731
    np.testing.assert_allclose(grad(fixed)(x), [0.0, 2 * x[1], 0.0])
    np.testing.assert_allclose(jit(grad(fixed))(x), [0.0, 2 * x[1], 0.0])


def _one_hot(labels):
    return np.eye(3)[labels]


@pytest.mark.parametrize("transform", [lambda f, y: jit(f)(y), lambda f, y: vmap(f)(y)],
                         ids=["jit", "vmap"])
def test_item19_indexing_a_numpy_constant_by_a_traced_index_says_what_to_write(transform):
    labels = np.array([0, 2, 1])
    with raises(errors.ArrayConversionError, "np.eye(3)[labels]",
                "pullback.numpy.take(table, index, axis=0)"):
        transform(_one_hot, labels)
    fixed = lambda labels: pullback.numpy.take(np.eye(3), labels, axis=0)  # noqa: E731 (the fix)
    np.testing.assert_array_equal(transform(fixed, labels), np.eye(3)[labels])


def _oscillator(state, k=4.0):
    position, velocity = state[0], state[1]
    return np.array([velocity, -k * position])


def test_item20_np_array_of_traced_values_shows_the_one_line_fix():
    state = np.array([1.0, 0.5])
    with raises(errors.ArrayConversionError, "np.array([velocity, -k * position])",
                "pullback.numpy.array([...])", "np.stack"):
        jacobian(_oscillator)(state)
    fixed = lambda s: pullback.numpy.array([s[1], -4.0 * s[0]])    # noqa: E731
    np.testing.assert_allclose(jacobian(fixed)(state), [[0.0, 1.0], [-4.0, 0.0]])


# ------------------------------------------------------- 20. errors that name the mistake

def _loss_printing(x, spec):
    loss = np.sum(x ** 2)
    _loss_printing.printed = format(loss, spec)
    return loss


def test_item20_formatting_a_traced_value():
    x = np.array([1.0, 2.0])
    for spec, text in ((".3f", "5.000"), ("", "5.0"), ("e", "5.000000e+00")):
        np.testing.assert_allclose(grad(_loss_printing)(x, spec), 2 * x)
        assert _loss_printing.printed == text
        pushforward(lambda x: _loss_printing(x, spec), (x,), (x,))
        assert _loss_printing.printed == text
    with raises(errors.ConcretizationError, "format", "staged", "test_regressions.py"):
        jit(_loss_printing, static_argnums=1)(x, ".3f")
    with raises(errors.ConcretizationError, "format", "vmap batch"):
        vmap(lambda x: _loss_printing(x, ".3f"))(np.ones((2, 2)))
    jit(_loss_printing, static_argnums=1)(x, "")       # no spec: prints the tracer itself
    assert "Tracer" in _loss_printing.printed


def test_item20_array_attributes_and_methods_of_traced_values():
    x = rng.uniform(0.5, 1.5, 4)
    assert grad(lambda x: np.sum(x) * x.itemsize)(x)[0] == 8.0
    assert grad(lambda x: np.sum(x.astype(np.float32)) * x.nbytes)(x)[0] == 32.0
    np.testing.assert_allclose(grad(lambda x: np.sum(x.view() ** 2))(x), 2 * x)
    np.testing.assert_allclose(grad(lambda x: np.sum(x[(x > 1.0).nonzero()]))(x), x > 1.0)
    np.testing.assert_allclose(grad(lambda x: np.sum(x[np.nonzero(x > 1.0)]))(x), x > 1.0)
    np.testing.assert_allclose(grad(lambda x: np.sum(x[x.nonzero()]))(x), np.ones(4))
    np.testing.assert_allclose(grad(lambda x: round(np.sum(x)) * np.sum(x))(x),
                               np.full(4, round(np.sum(x))))
    np.testing.assert_allclose(grad(lambda x: round(np.sum(x), 1) * 2.0)(x), np.zeros(4))
    np.testing.assert_allclose(grad(lambda x: x.flat[1] * len(x.flat))(x), [0.0, 4.0, 0.0, 0.0])
    with raises(errors.InPlaceMutationError, "x.flat[i] = v", "at(x.ravel())"):
        grad(lambda x: x.flat.__setitem__(0, 1.0))(x)
    with raises(errors.UnsupportedFunctionError, "x.view(dtype)", "astype"):
        grad(lambda x: np.sum(x.view(np.int64)))(x)
    with raises(errors.ConcretizationError, "np.nonzero", "staged"):
        jit(lambda x: x[x.nonzero()])(x)
    with raises(errors.ConcretizationError, "np.nonzero", "vmap batch"):
        vmap(lambda x: np.nonzero(x))(np.ones((2, 2)))


def test_item20_dicts_with_keys_of_mixed_types_are_pytrees():
    tree = {1: 2.0, "a": np.array([1.0, 3.0]), (0, 1): 4.0}
    gradient = grad(lambda d: d[1] * np.sum(d["a"]) + d[(0, 1)] ** 2)(tree)
    assert set(gradient) == set(tree)
    np.testing.assert_allclose(gradient[1], 4.0)
    np.testing.assert_allclose(gradient["a"], [2.0, 2.0])
    np.testing.assert_allclose(gradient[(0, 1)], 8.0)
    np.testing.assert_allclose(jit(lambda d: d[1] * d["a"])(tree), 2.0 * tree["a"])
    np.testing.assert_allclose(vmap(lambda d: d[1] * d["a"])(
        {1: np.ones(2), "a": np.ones((2, 2))}), np.ones((2, 2)))


@pytest.mark.parametrize("constant", [3, True, np.int32(2), np.array(7)])
def test_item20_grad_of_an_integer_output_says_it_does_not_depend_on_the_input(constant):
    with raises(errors.NonScalarOutputError, "does not depend", "float"):
        grad(lambda x: constant)(np.ones(2))
    np.testing.assert_array_equal(grad(lambda x: 3.0)(np.ones(2)), np.zeros(2))


@pytest.mark.parametrize("operator", ["hessian", "hvp", "make_hvp", "jacobian"])
def test_item20_mode_typos_list_the_modes(operator):
    x = np.ones(2)
    call = {"hessian": lambda: hessian(np.sum, mode="fwd-over-rev")(x),
            "hvp": lambda: pullback.hvp(np.sum, x, x, mode="forward-reverse"),
            "make_hvp": lambda: pullback.make_hvp(np.sum, x, mode="reverse-forward"),
            "jacobian": lambda: jacobian(np.sin, mode="rev")(x)}[operator]
    with raises(errors.ModeError, "unknown mode", "did you mean", "'reverse"):
        call()
    assert issubclass(errors.ModeError, ValueError)


def test_item20_a_wrong_vector_for_an_hvp_is_named_as_the_vector():
    f = lambda x: np.sum(x ** 3)        # noqa: E731
    with raises(errors.TangentError, "vector has shape (3,)", "x has shape (2,)"):
        pullback.make_hvp(f, np.ones(2))(np.ones(3))
    with raises(errors.TangentError, "vector has shape (3,)", "x has shape (2,)"):
        pullback.hvp(f, np.ones(2), np.ones(3))
    with raises(errors.TangentError, "vector", "structure"):
        pullback.make_hvp(lambda t: f(t[0]), (np.ones(2),))(np.ones(2))


def test_item20_keyword_arguments_to_vmap_are_batched_along_axis_0():
    xs, scales = rng.standard_normal((3, 2)), rng.standard_normal(3)
    f = lambda x, scale: x * scale       # noqa: E731
    np.testing.assert_allclose(vmap(f)(xs, scale=scales), xs * scales[:, None])
    np.testing.assert_allclose(vmap(f, in_axes=(0,))(xs, scale=scales), xs * scales[:, None])
    with raises(errors.BatchError, "keyword argument 'scale'", "axis 0", "in_axes"):
        vmap(f)(xs, scale=2.0)


# ------------------------------------------------------------- also expected by users

HESSIAN_MODE_NAMES = ("forward-over-reverse", "reverse-over-forward", "reverse-over-reverse",
                      "forward-over-forward")


@pytest.mark.parametrize("mode", HESSIAN_MODE_NAMES)
def test_hessian_with_aux(mode):
    x = rng.uniform(-1, 1, 3)
    f = lambda x: (np.sum(np.sin(x) * x ** 2), {"norm": np.sum(x ** 2), "label": "run"})  # noqa
    h, aux = hessian(f, mode=mode, has_aux=True)(x)
    np.testing.assert_allclose(h, hessian(lambda x: f(x)[0])(x))
    assert aux["label"] == "run"
    np.testing.assert_allclose(aux["norm"], np.sum(x ** 2))
    assert not isinstance(aux["norm"], pullback.core.engine.Tracer)


def test_ordered_dicts_keep_their_order_and_namedtuples_their_type():
    from collections import OrderedDict, namedtuple
    state = OrderedDict([("weight", np.array([1.0, 2.0])), ("bias", np.array(0.5))])
    gradient = grad(lambda s: np.sum(s["weight"] ** 2) * s["bias"])(state)
    assert type(gradient) is OrderedDict and list(gradient) == ["weight", "bias"]
    np.testing.assert_allclose(gradient["weight"], [1.0, 2.0])
    np.testing.assert_allclose(gradient["bias"], 5.0)
    assert list(jit(lambda s: s)(state)) == ["weight", "bias"]
    Params = namedtuple("Params", "a b")
    gradient = grad(lambda p: p.a * p.b)(Params(2.0, 3.0))
    assert type(gradient) is Params and gradient == (3.0, 2.0)


@pytest.mark.parametrize("method", ["Newton-CG", "trust-krylov", "trust-ncg"])
def test_newton_callables_accept_minimize_args(method):
    import scipy.optimize
    target = np.array([1.0, -2.0, 0.5])
    f = lambda x, target, weight: weight * np.sum((x - target) ** 4 + (x - target) ** 2)  # noqa
    result = scipy.optimize.minimize(x0=np.zeros(3), args=(target, 2.0), method=method,
                                     **pullback.newton_callables(f))
    np.testing.assert_allclose(result.x, target, atol=1e-5)
    # The recording of Hessian-vector products never outlives a change of the arguments.
    callables = pullback.newton_callables(f)
    p = np.ones(3)
    first = callables["hessp"](np.zeros(3), p, target, 2.0)
    target[:] = 5.0                                 # modified in place between two runs
    callables["fun"](np.zeros(3), target, 2.0)
    np.testing.assert_allclose(callables["hessp"](np.zeros(3), p, target, 2.0),
                               hessian(f)(np.zeros(3), target, 2.0) @ p)
    assert not np.allclose(first, callables["hessp"](np.zeros(3), p, target, 2.0))


def test_item11_python_complex_scalars_stay_weakly_typed_where_no_derivative_is_taken():
    x = np.ones(2, np.float32)
    for transformed in (jit(lambda x: x * 1j), jit(lambda x: 1j + x),
                        lambda x: vmap(lambda v: v * 1j)(x[None])[0]):
        result = transformed(x)
        assert result.dtype == np.complex64
        np.testing.assert_array_equal(result, x * 1j if result.real.max() == 0 else 1j + x)


@pytest.mark.parametrize("chunk_size", [-1, 0, 1.5, True, "2"])
def test_a_chunk_size_that_is_not_a_positive_int_is_refused(chunk_size):
    # chunk_size=-1 gave an all-zero Jacobian, silently.
    for operator in (pullback.jacfwd, pullback.jacrev, jacobian, hessian):
        with raises(errors.ChunkSizeError, "positive int"):
            operator(np.sin if operator is not hessian else np.sum, chunk_size=chunk_size)(
                np.ones(3))
