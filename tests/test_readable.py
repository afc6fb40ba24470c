"""What `show` prints is plain NumPy that runs on its own (issue 14).

For every primitive in the registry (the cases of test_primitives.py) and every kind of
derivative, the printed source is executed in a fresh namespace holding only NumPy,
SciPy and the constants (arrays) `show` passes in, and its result equals pullback's.
"""
import re

import numpy as np
import pytest
from hypothesis import given, settings

import pullback
from pullback.core.primitive import REGISTRY
from pullback.ir.jit import readable_source
from pullback.ir.readable import NAMESPACE, basis_source, constant_source
from pullback.operators import DEFAULT_HESSIAN_MODE, HESSIAN_MODES
from readable_examples import (clipped_energy, cubes, energy, mlp_loss, rk4_end, rk4_step,
                               rosenbrock, softplus_loss)
from test_primitives import SETTINGS, TABLE, _differentiable_positions, case_strategy
from helpers import assert_matches_golden


def run_printed(text: str, arguments: dict, *args):
    """Execute printed source in a namespace of NumPy and SciPy only; call its function."""
    namespace = {}
    exec(NAMESPACE + text, namespace)                     # noqa: S102  (the code under test)
    name = re.findall(r"^def (\w+)\(", text, re.MULTILINE)[-1]
    return namespace[name](*args, **arguments)


def assert_runs_alone(fn, args, result_names=None):
    """The source `show` prints for fn at args runs alone and computes fn(*args)."""
    with np.errstate(all="ignore"):
        expected = pullback.tree.flatten(fn(*args))[0]
        text, arguments = readable_source(fn, *args, result_names=result_names)
        assert not re.search(r"_p\(|Slice|ShapeDtype|\bconst(_\d+)?\b|\bdata\b", text), text
        assert all(type(value) is np.ndarray for value in arguments.values()), text
        got = run_printed(text, arguments, *[np.copy(a) for a in args])
    got = [got] if len(expected) == 1 else list(got)
    assert len(got) == len(expected), text
    for g, e in zip(got, expected):
        tolerance = 1e-5 if np.asarray(e).dtype == np.float32 else 1e-9
        assert np.shape(g) == np.shape(e), text
        np.testing.assert_allclose(g, e, rtol=tolerance, atol=tolerance, equal_nan=True,
                                   err_msg=text)
    return text


# Reverse mode through while_loop cannot be staged again (its trip count is known only when
# the program runs: LoopTypeError says so): its second derivatives print in the modes with
# forward mode inside.
INNER_FORWARD = {"while_loop": "reverse-over-forward"}


def derivative_kinds(prim, args, params):
    """(kind, function of the differentiable arguments): the primitive itself, and for a
    differentiable one its grad, jvp, vjp, Hessian, Jacobian and HVP in every mode."""
    positions = _differentiable_positions(args, prim)

    def full(diff):
        values = list(args)
        for i, a in zip(positions, diff):
            values[i] = a
        return values

    def outputs(*diff):
        out = prim(*full(diff), **params)
        return list(out) if prim.multiple_results else [out]

    def scalar(*diff):
        return sum(np.sum(np.real(o) * 1.0) for o in outputs(*diff))     # rfft: complex

    def first(x, *rest):
        return scalar(x, *rest)

    diff = [args[i] for i in positions]
    kinds = {"value": lambda *d: outputs(*d)}
    if not prim.differentiable or not positions:
        return kinds, diff
    tangents = tuple(np.full_like(a, 0.5) + 0.25 * a for a in diff)
    cotangents = [np.ones_like(o) * 0.75 if np.issubdtype(o.dtype, np.inexact)
                  else np.zeros_like(o) for o in outputs(*diff)]     # integer outputs: pivots
    v = np.full_like(diff[0], 0.3) - 0.5 * diff[0]
    kinds.update({
        "grad": pullback.grad(scalar, argnums=tuple(range(len(diff)))),
        "jvp": lambda *d: pullback.pushforward(outputs, tuple(d), tangents)[1],
        "vjp": lambda *d: pullback.pullback(outputs, *d)[1](cotangents),
        "hessian": pullback.hessian(first, mode=INNER_FORWARD.get(prim.name,
                                                                  DEFAULT_HESSIAN_MODE)),
        "jacobian": pullback.jacobian(lambda x, *rest: outputs(x, *rest)[0]),
    })
    # one HVP mode per primitive, in turn: every mode is printed across the registry
    mode = HESSIAN_MODES[sorted(REGISTRY).index(prim.name) % len(HESSIAN_MODES)]
    mode = "forward-over-forward" if prim.name in INNER_FORWARD else mode
    kinds[f"hvp {mode}"] = lambda x, *rest: pullback.hvp(lambda x: first(x, *rest), x, v,
                                                         mode=mode)
    return kinds, diff


# float32 for a sample: constants and casts print with their dtype (while_record and
# while_reversal hold a tape of recorded values: they are printed through while_loop)
CASES = [(name, np.float64) for name in TABLE] + [
    (name, np.float32) for name in ("add", "getitem", "embed", "scatter_add", "matmul", "sum",
                                    "polygamma", "pad", "solve")]


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{np.dtype(d).name}" for n, d in CASES])
def test_item2_every_printed_program_runs_alone(name, dtype):
    prim = REGISTRY[name]

    @settings(SETTINGS, max_examples=1)
    @given(case_strategy(prim, dtype))
    def run(case):
        args, params = case
        kinds, diff = derivative_kinds(prim, args, params)
        for kind, fn in kinds.items():
            if kind == "value" and not diff:
                fn, diff_args = (lambda *a: prim(*a, **params)), args
            else:
                diff_args = diff
            try:
                assert_runs_alone(fn, diff_args)
            except AssertionError as error:
                raise AssertionError(f"{name} {kind}: {error}") from None
    run()


def test_item1_stencil_gradient_and_hessian_print_as_numpy(tmp_path):
    path = tmp_path / "energy.py"
    path.write_text("import numpy as np\n\n\ndef energy(x):\n    d = x[1:] - x[:-1]\n"
                    "    return 0.5 * np.sum(d * d) + np.sum(np.cos(x))\n")
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    energy, x = namespace["energy"], np.array([1.0, 2.0, 3.0])
    grad_text = assert_runs_alone(pullback.grad(energy), [x], ["grad_x"])
    assert "    d = a - b" in grad_text and re.search(r"\w+ = np.pad\(e, \(0, 1\)\)", grad_text)
    assert "grad_x[1:] += " in grad_text and "return grad_x" in grad_text
    hessian_text = assert_runs_alone(pullback.hessian(energy), [x], ["hessian"])
    assert "hessian = np.zeros((3, 3))" in hessian_text and "return hessian" in hessian_text


@pytest.mark.parametrize("value, text", [
    (np.eye(3), "np.eye(3)"), (-2.0 * np.eye(2), "-2.0 * np.eye(2)"),
    (np.arange(4), "np.arange(4)"), (np.arange(3.0), "np.arange(3.0)"),
    (np.zeros(3), "np.zeros(3)"), (np.ones((2, 2)), "np.ones((2, 2))"),
    (np.full(3, 2.5, np.float32), "np.full(3, 2.5, np.float32)"),
    (np.array([1.0, np.nan]), "np.array([1.0, np.nan])"), (np.float64(2.0), "np.float64(2.0)"),
    (np.linspace(0.0, 1.0, 100), None)])
def test_item1_constants_print_inline_when_short_and_exact(value, text):
    assert constant_source(value) == text


def test_item1_large_constants_are_arguments_named_with_their_type():
    data = np.random.default_rng(0).standard_normal((20, 3))

    def loss(w):
        return np.sum((data @ w) ** 2)

    text, arguments = readable_source(pullback.grad(loss), np.ones(3))
    assert "def loss(w, *, data):" in text and "# data: float64[20,3]" in text
    assert arguments["data"] is data


def test_item4_constants_are_named_by_role():
    """The user's own arrays keep the user's names (a global, a closure variable, a
    default), others are `data_0`, `data_1` ...; (rows of) an identity basis is `basis`,
    computed in the function."""
    rng = np.random.default_rng(1)
    weights, bias = rng.standard_normal((20, 3)), rng.standard_normal(20)

    def loss(w, scale=rng.standard_normal(20)):
        return np.sum(np.tanh(weights @ w + bias) * scale) + np.sum(np.cos(bias) * np.sin(weights @ w))
    text, arguments = readable_source(pullback.grad(loss), np.ones(3))
    assert "def loss(w, *, weights, bias, scale, data_0):" in text, text
    assert arguments["weights"] is weights and arguments["bias"] is bias
    assert "# data_0: float64[20]" in text and "data_1" not in text
    # The one-hot basis of jacobians leaves no basis constant to pass in; a dense identity
    # basis (Dask's seeds) would print as one computed line.
    text = assert_runs_alone(pullback.hessian(lambda a: np.sum(np.sin(a))), [np.ones((2, 3))])
    assert "def f(a):" in text
    assert basis_source(np.eye(6).reshape(6, 2, 3)) == "np.eye(6).reshape(6, 2, 3)"
    assert basis_source(-2.0 * np.eye(3, 4, 1)) == "-2.0 * np.eye(3, 4, 1)"


def _functions(text: str) -> int:
    """How many functions printed source defines (comments, which quote lines, aside)."""
    return sum(line.lstrip().startswith("def ") for line in text.splitlines())


def _halved_until_small(x):
    return np.sum(pullback.while_loop(lambda c: np.sum(c * c) > 1.0, lambda c: c * 0.5, x))


def _squares_of_sums(x):
    _, ys = pullback.scan(lambda c, xi: (c + xi, (c + xi) ** 2), 0.0, x)
    return np.sum(ys)


@pytest.mark.parametrize("checkpoints", ["all", "carry", 3])
def test_item1_loops_print_as_python_for_loops(checkpoints):
    """A fori_loop's gradient prints as `for` loops with the body inline, ys in rows of an
    array allocated once; a checkpointed reversal as the loops giving its value."""
    def rk4(y):
        return np.sum(pullback.fori_loop(0, 6, lambda i, y: rk4_step(i, y), y,
                                         checkpoints=checkpoints))     # (not rk4_end's body)
    text = assert_runs_alone(pullback.grad(rk4), [np.array([0.1, 0.2, 0.3])])
    assert _functions(text) == 1 and "    for i in range(6):\n" in text
    assert re.search(r"for i_\d+ in range\(5, -1, -1\):", text) and "np.empty((6, 3))" in text
    assert "def rk4(y, *, W):" in text
    if checkpoints == 3:
        assert "binomial schedule (3 snapshots" in text


def test_item1_scans_whiles_and_branches_print_as_python():
    x = np.array([0.7, -1.2, 2.0])
    text = assert_runs_alone(pullback.grad(_squares_of_sums), [x])
    assert "np.empty(3)" in text and "for i in range(3):" in text and _functions(text) == 1
    text = assert_runs_alone(pullback.grad(_halved_until_small), [4.0 * x])
    assert ".append(" in text and "in reversed(" in text
    assert re.search(r"\n    while .*:\n", text) and _functions(text) == 1
    for kind in (pullback.grad, pullback.hessian):
        text = assert_runs_alone(kind(clipped_energy), [x])
        assert "    if " in text and "    else:" in text and _functions(text) == 1


def test_item1_a_custom_rule_prints_its_functions_inline():
    @pullback.custom_vjp
    def softsign(x):
        return x / (1.0 + np.abs(x))

    def fwd(x):
        return softsign(x), x

    def bwd(x, ct):
        return (ct / (1.0 + np.abs(x)) ** 2,)
    softsign.defvjp(fwd, bwd)
    text = assert_runs_alone(pullback.grad(lambda x: np.sum(softsign(x))), [np.array([0.5, -2.0])])
    assert re.search(r"= abs\(\w+\)\n", text) and _functions(text) == 1


def test_item2_one_statement_slot_writes_for_jit_and_show():
    """Statements come from one slot, `emit_statements`, for generated code (where rules
    that only write for reading give None) and for `show`."""
    assert not any(hasattr(prim, "emit_eager") for prim in REGISTRY.values())
    from pullback.ir.codegen import compile_program
    program = pullback.make_ir(pullback.grad(_squares_of_sums), optimized=True)(np.ones(3))
    generated = compile_program(program, "f").source
    printed = readable_source(pullback.grad(_squares_of_sums), np.ones(3))[0]
    for text in (generated, printed):
        assert "np.empty(3)" in text and "range(2, -1, -1):" in text
    assert "def body_reverse(" in generated and "def " not in printed.partition("\n")[2]


@pytest.mark.parametrize("index, widths", [
    ((slice(1, None),), "(1, 0)"), ((slice(None, -1), slice(2, 4)), "((0, 1), (2, 0))"),
    ((slice(1, -1), slice(1, -1)), "1"), ((slice(None, None, 2),), None)])
def test_item3_slice_embeds_print_as_np_pad(index, widths):
    """A slice of step 1 placed into zeros (getitem's transpose) prints as np.pad; a step
    of 2 as zeros and an assignment."""
    x = np.arange(1.0, 13.0).reshape(3, 4) if len(index) == 2 else np.arange(1.0, 5.0)

    def f(x):
        return np.sum(np.sin(x[index]))
    text = assert_runs_alone(pullback.grad(f), [x])
    if widths is None:
        assert "np.pad" not in text and re.search(r"= np.zeros\(4\)\n.*\[::2\] = ", text)
    else:
        assert re.search(rf"= np\.pad\(\w+, {re.escape(widths)}\)\n", text), text


def test_item5_constant_additions_merge_where_exact():
    """(z + c1) + c2 -> z + (c1 + c2) where one of c1, c2 is a zero at each element: bit for
    bit the same (signs of zeros, infinities and NaN included); not where both are
    nonzero somewhere (two roundings, not one)."""
    from pullback.ir.passes import optimize
    from pullback.ir.program import evaluate
    rng = np.random.default_rng(3)
    z = rng.standard_normal(4000) * 10.0 ** rng.integers(-20, 20, 4000)
    z[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-320]
    picks = rng.integers(0, 3, 4000)
    c1 = np.where(picks == 0, z * -1.0, np.where(picks == 1, -0.0, 0.0))
    c1[::7] = rng.standard_normal(len(c1[::7]))
    c2 = np.where(c1 == 0, rng.standard_normal(4000), np.where(picks == 2, -0.0, 0.0))

    for first, second, merged in ((c1, c2, True), (c1, c2 + (c1 != 0), False)):
        def f(x):
            return (x + first) + second
        program = pullback.make_ir(f)(z)
        optimized = optimize(program)
        adds = [eq for eq in optimized.equations if eq.primitive.name == "add"]
        assert len(adds) == (1 if merged else 2)
        with np.errstate(invalid="ignore"):           # inf + -inf
            got, want = evaluate(optimized, z)[0], evaluate(program, z)[0]
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64)) or not merged


def _hvp_of(f, v, *rest):
    def hvp(x):
        return pullback.hvp(lambda x: f(x, *rest), x, v)
    hvp.__name__ = f"{f.__name__}_hvp"
    return hvp


X3, W2 = np.array([1.0, 2.0, 3.0]), np.array([0.5, -0.3])
POINTS = np.array([[1.0, 2.0], [0.5, -1.0], [0.1, 0.2]])
GOLDEN_CASES = {
    "energy_grad": (pullback.grad(energy), (X3,), None),
    "energy_hessian": (pullback.hessian(energy), (X3,), None),
    "energy_hvp": (_hvp_of(energy, np.array([1.0, 0.0, 0.0])), (X3,), ["hvp"]),
    "rosenbrock_grad": (pullback.grad(rosenbrock), (np.array([-1.2, 1.0, 0.5]),), None),
    "softplus_loss_grad": (pullback.grad(softplus_loss), (W2, POINTS), None),
    "softplus_loss_hvp": (_hvp_of(softplus_loss, np.array([1.0, 0.0]), POINTS), (W2,), ["hvp"]),
    "mlp_loss_grad": (pullback.grad(mlp_loss), (np.linspace(-0.5, 0.5, 15),), None),
    "rk4_end_grad": (pullback.grad(rk4_end), (np.array([0.1, 0.2, 0.3]),), None),
    "clipped_energy_grad": (pullback.grad(clipped_energy), (X3,), None),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_item5_golden_readable_programs(name):
    """Reviewed by hand once; PULLBACK_UPDATE_GOLDEN=1 rewrites them (review the diff)."""
    fn, args, result_names = GOLDEN_CASES[name]
    text = assert_runs_alone(fn, list(args), result_names)
    assert_matches_golden(name, text)


def test_item3_names_say_what_values_are():
    x = np.array([0.5, 1.0, 2.0])
    grad_text = assert_runs_alone(pullback.grad(cubes), [x])
    assert "    d = np.sin(x)" in grad_text and "    s = " in grad_text
    assert "    d_bar = " in grad_text and "return grad_x" in grad_text
    jvp_text = assert_runs_alone(lambda x, v: pullback.pushforward(cubes, (x,), (v,)), [x, x])
    for fragment in ("    d_dot = ", "    s_dot = ", "return [out, out_dot]"):
        assert fragment in jvp_text
    assert "return hessian" in assert_runs_alone(pullback.hessian(cubes), [x])
    assert "return jacobian" in assert_runs_alone(pullback.jacobian(np.sin), [x])
    # a gradient with respect to a pytree, or with aux, keeps the cotangents' own names
    assert "return grad_x" not in readable_source(pullback.grad(
        lambda x: cubes(x["a"])), {"a": x})[0]
