"""jit at scale: generated code holds about what eager code holds, and compiling costs
work linear in the program's length (counted, not timed)."""
import ast
import os
import sys
import warnings

import numpy as np
import pytest
import scipy.special

import pullback
import pullback.numpy as pnp
import pullback.testing
from pullback.ir.codegen import compile_program
from pullback.ir.passes import optimize
from pullback.ir.program import Var
from pullback.ir.staging import stage
from helpers import benchmark_module, raises
from pullback.errors import InPlaceMutationError
from test_jit_fuzz import check_program, random_program


# The problems (and the memory measure) are the benchmark's: benchmarks/jit_scale.py.
PROBLEMS = benchmark_module("jit_scale")
rk4, rk4_loss, chain = PROBLEMS.rk4, PROBLEMS.rk4_loss, PROBLEMS.chain


def peak_bytes(fn, *args):
    return PROBLEMS.peak_bytes(fn, args)


def test_item1_jitted_code_holds_no_more_memory_than_eager_code():
    x = np.random.default_rng(0).uniform(-1.0, 1.0, 100_000)
    assert peak_bytes(pullback.jit(rk4), x) <= 1.1 * peak_bytes(rk4, x)
    gradient = pullback.grad(rk4_loss)
    assert peak_bytes(pullback.jit(gradient), x) <= peak_bytes(gradient, x)
    np.testing.assert_allclose(pullback.jit(gradient)(x), gradient(x), rtol=1e-12)


def test_item1_jitted_lstm_holds_no_more_memory_than_eager_code():
    """GradBench's LSTM on 32 characters: small arrays, so the peak is mostly Python's
    free lists, which NumPy's reductions filled with a dictionary per call when the
    generated code passed `keepdims=False` (2.7x eager's peak at 128 characters)."""
    args = PROBLEMS.lstm_data(characters=32)
    assert peak_bytes(pullback.jit(PROBLEMS.lstm), *args) <= 1.1 * peak_bytes(PROBLEMS.lstm, *args)


def held_at_return(source: str) -> set:
    """The local names a generated function still holds when it returns, its parameters
    and the names it returns left out."""
    function = ast.parse(source).body[0]
    held = set()
    for statement in function.body:
        if isinstance(statement, ast.Assign):
            held.update(n.id for t in statement.targets for n in ast.walk(t)
                        if isinstance(n, ast.Name))
        elif isinstance(statement, ast.Delete):
            held.difference_update(t.id for t in statement.targets)
        elif isinstance(statement, ast.Return):
            held.difference_update(n.id for n in ast.walk(statement) if isinstance(n, ast.Name))
    return held


def scattered(x):
    y = x * 2.0
    z = pullback.numpy.at(y)[1:].add(np.sin(x[:-1]))       # a scatter_add into y
    parts = np.split(z, 2)                                   # several results
    return np.sum(parts[0] ** 2) + np.sum(np.exp(parts[1]).T), z[::2]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "traceable"])
@pytest.mark.parametrize("f", [rk4, pullback.grad(rk4_loss), scattered,
                               pullback.grad(lambda x: scattered(x)[0])],
                         ids=["rk4", "grad rk4", "scatter", "grad scatter"])
def test_item1_generated_code_releases_every_intermediate(f, fast):
    x = np.linspace(0.1, 1.0, 6)
    program = optimize(stage(f, (x,)))
    generated = compile_program(program, fast=fast)
    assert held_at_return(generated.source) == set()
    got, expected = generated(x), pullback.tree.flatten(f(x))[0]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-13)


def work(thunk) -> int:
    """Work of running `thunk()`: Python function calls (and builtin calls) made, plus
    hashes and equality tests of IR variables (what a scan of a growing container of them
    does)."""
    count = [0]

    def counted(method):
        def wrapper(*args):
            count[0] += 1
            return method(*args)
        return wrapper

    def profiler(frame, event, arg):
        if event in ("call", "c_call"):
            count[0] += 1

    patch = {"__hash__": counted(object.__hash__), "__eq__": counted(object.__eq__)}
    for name, method in patch.items():
        setattr(Var, name, method)
    sys.setprofile(profiler)
    try:
        thunk()
    finally:
        sys.setprofile(None)
        for name in patch:
            delattr(Var, name)
    return count[0]


def compile_work(f, x) -> int:
    """Work of staging, optimising and generating and compiling both variants of f's program."""
    def compiling():
        program = optimize(stage(f, (x,)))
        for fast in (True, False):
            compile_program(program, fast=fast)
    return work(compiling)


def test_item2_compiling_costs_work_linear_in_the_program_length():
    """Doubling an elementwise chain (and its gradient) at most doubles the work of
    compiling its gradient: no step scans a structure that grows with the program."""
    x = np.linspace(0.1, 1.0, 10)
    compile_work(pullback.grad(chain(300)), x)          # warm caches
    short = compile_work(pullback.grad(chain(300)), x)
    long = compile_work(pullback.grad(chain(600)), x)
    assert long <= 2.1 * short, (short, long)


def test_item2_a_long_programs_first_call_is_interpreted_in_linear_work():
    """The first call of a long program stages and interprets it (no optimisation, no
    compile; `INTERPRETED_FIRST_CALL` equations or more), and doubling the program at most
    doubles its work; the next call compiles it."""
    x = np.linspace(0.1, 1.0, 10)
    steps = pullback.ir.jit.INTERPRETED_FIRST_CALL // 2
    counts = []
    for n in (steps, steps, 2 * steps):                 # the first warms caches
        jitted = pullback.jit(pullback.grad(chain(n)))
        counts.append(work(lambda: jitted(x)))
        entry = next(iter(jitted.cache.values()))
        assert len(entry.staged.equations) >= pullback.ir.jit.INTERPRETED_FIRST_CALL
        assert entry._program is None                   # nothing optimised yet
        first = jitted(x)
        assert entry._program is not None and hasattr(entry.fast, "source")    # compiled
        np.testing.assert_array_equal(jitted(x), first)
    assert counts[2] <= 2.1 * counts[1], counts


@pytest.mark.parametrize("seed", range(40))
def test_item2_interpreted_first_calls_agree_with_compiled_calls(seed, monkeypatch):
    """Every program interpreted on its first call (the tier of long programs): the first
    call and the compiled later ones agree to rounding, in dtypes too, and return arrays
    sharing no memory with the arguments or each other; then the fuzz test's checks (jit
    against eager, gradients, Hessians, vmap), each of whose jitted functions starts
    interpreted."""
    monkeypatch.setattr(pullback.ir.jit, "INTERPRETED_FIRST_CALL", 0)
    f, x, s = random_program(np.random.default_rng(seed))
    jitted = pullback.jit(f)
    with np.errstate(all="ignore"):
        first = jitted(x, s)
        assert next(iter(jitted.cache.values()))._program is None
        for later in (jitted(x, s), jitted(x, s)):
            for k, (a, b) in enumerate(zip(first, later)):
                assert np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype, k
                np.testing.assert_allclose(a, b, rtol=1e-6 if x.dtype == np.float32 else 1e-13,
                                           atol=1e-12, equal_nan=True)
        for k, a in enumerate(first):
            assert not np.shares_memory(a, x), k
            assert not any(np.shares_memory(a, other) for other in first[:k]), k
    check_program(f, x, s)


@pytest.mark.parametrize("n", [3, 2**70, -(2**64)], ids=str)
def test_item2_interpreted_first_calls_keep_python_arithmetic_on_python_scalars(n, monkeypatch):
    """Python scalars stay Python's (an int beyond int64 too, where NumPy overflows), as
    in eager mode and in the generated code."""
    monkeypatch.setattr(pullback.ir.jit, "INTERPRETED_FIRST_CALL", 0)

    def f(x, n):
        return x * 2.0, n * 2 - 1, abs(-n) // 3
    jitted, expected = pullback.jit(f), f(A, n)
    for _ in range(2):                                  # interpreted, then compiled
        got = jitted(A, n)
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1:] == expected[1:] and type(got[1]) is int


# ------------------------------------------------- pullback.numpy on plain arrays

PACKAGE = os.path.dirname(pullback.__file__)
A, B = np.linspace(0.1, 0.9, 8), np.linspace(0.2, 0.7, 8)
M = np.linspace(0.1, 0.9, 12).reshape(3, 4)
# The namespace functions with a fast path on plain arrays (generated: see
# pullback/numpy/_common.py), and the NumPy (or scipy.special) function each wraps.
FAST_PATHS = {f.__code__: (name, getattr(np, name, None) or getattr(scipy.special, name))
              for name, f in vars(pnp).items()
              if os.path.basename(getattr(getattr(f, "__code__", None), "co_filename", ""))
              .startswith("<fast path")}
# Calls for the functions that test_numpy_coverage's rows do not call (ufuncs get theirs below).
MORE_CALLS = {
    "all": (A > 0.5,), "any": (A > 0.5,), "amax": (M,), "amin": (M,), "angle": (A,),
    "argmax": (A,), "argmin": (A,), "argpartition": (A, 2), "argsort": (A,), "around": (A, 1),
    "astype": (A, np.float32), "copy": (A,), "empty_like": (A, None, "K", True, (0,)),
    "fix": (3 * A,), "imag": (A,), "iscomplexobj": (A,), "isrealobj": (A,), "ndim": (M,), "nonzero": (A > 0.5,), "real": (A,),
    "result_type": (A, np.float32), "roots": ([1.0, -3.0, 2.0],), "round": (A, 2), "searchsorted": (A, 0.5), "shape": (M,),
    "size": (M,)}


def _ufunc_arguments(ufunc):
    """Arguments of the ufunc's first loop that takes float64 (ldexp's exponent is an int),
    or else int64 (the bitwise ufuncs)."""
    kinds = next(t.split("->")[0] for first in "dl" for t in ufunc.types if t.startswith(first))
    return tuple(np.arange(len(A)) % 4 if kind in "il" else A for kind in kinds)


def plain_calls():
    """(label, pullback.numpy call, NumPy call, arguments): every row of
    test_numpy_coverage, then each fast path those rows miss."""
    from test_numpy_coverage import ROWS, Draw
    for row in ROWS:
        yield row.name, row.pnp_fn, row.np_fn, row.make(Draw(row.name, np.float64))
    for name, numpy_function in FAST_PATHS.values():
        args = MORE_CALLS.get(name) or (isinstance(numpy_function, np.ufunc) and
                                        numpy_function.signature is None     # not gufuncs
                                        and _ufunc_arguments(numpy_function))
        if args:
            yield name, getattr(pnp, name), numpy_function, args


def pullback_frames(thunk):
    """thunk()'s value, the fast paths it ran (code objects), and the names of the other
    pullback functions it ran, apart from the fast paths' helpers in _common.py."""
    fast, others = set(), set()

    def profiler(frame, event, arg):
        where = frame.f_code.co_filename
        if event == "call" and os.path.basename(where).startswith("<fast path"):
            fast.add(frame.f_code)
        elif event == "call" and where.startswith(PACKAGE) and not where.endswith("_common.py"):
            others.add(frame.f_code.co_name)
    sys.setprofile(profiler)
    try:
        value = thunk()
    finally:
        sys.setprofile(None)
    return value, fast, others


def assert_identical(got, expected, label):
    """Same type, structure, dtype, shape and values (NaN where NumPy has NaN)."""
    assert type(got) is type(expected), (label, type(got), type(expected))
    if isinstance(expected, (tuple, list)):
        assert len(got) == len(expected), label
        for g, e in zip(got, expected):
            assert_identical(g, e, label)
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert got.dtype == expected.dtype and got.shape == expected.shape, label
        np.testing.assert_array_equal(got, expected, strict=True, err_msg=label)
    else:
        assert got == expected or got != got and expected != expected, label


def assert_same_views(got, expected, args, label):
    """`got` shares memory with an argument where NumPy's `expected` does (views stay views,
    copies stay copies)."""
    if isinstance(expected, (tuple, list)):
        for g, e in zip(got, expected):
            assert_same_views(g, e, args, label)
    elif isinstance(expected, np.ndarray):
        arrays = [a for a in pullback.tree.flatten(list(args))[0] if isinstance(a, np.ndarray)]
        assert [np.shares_memory(got, a) for a in arrays] == \
            [np.shares_memory(expected, a) for a in arrays], label


def test_item4_every_namespace_function_on_plain_arrays_returns_what_numpy_returns():
    """The whole namespace: each call on plain arrays whose pullback.numpy functions all
    took their fast path (nothing of pullback in between) returns exactly NumPy's value,
    and every fast path is taken by some call. The only calls that run pullback's own
    functions call a pullback-only function or pass a Python function; their values are
    test_numpy_coverage's."""
    untaken = set(FAST_PATHS)
    for label, pullback_call, numpy_call, args in plain_calls():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")     # e.g. scipy's yn on a non-integer order
            got, fast, others = pullback_frames(lambda: pullback_call(*args))
            if not others:
                expected = numpy_call(*args)
                assert_identical(got, expected, label)
                assert_same_views(got, expected, args, label)
                untaken -= fast
            else:       # pullback-only functions (`at` indexes), or a Python function given
                assert others & {"logsumexp", "stop_gradient", "_index_template", "piecewise",
                                 "apply_along_axis"}, (label, others)
    # These two take a Python function, which may compute with traced values it closes
    # over: pullback's own run it, on plain arrays too.
    assert {FAST_PATHS[code][0] for code in untaken} == {"apply_along_axis", "piecewise"}



def test_issue12_traced_calls_reach_pullbacks_function_with_the_arguments_given():
    """A fast path given something traced calls pullback's function with exactly the
    arguments given (a NumPy ufunc's with a tracer first: the ufunc, whose dispatch reaches
    the tracer; test_engine counts its calls): for every fast path, every choice of the later
    positional parameters given, by position up to a point and then by keyword, and a
    tracer first, a list holding one first, or a plain array first and a tracer last, the
    call binds to the same arguments."""
    import inspect
    from pullback.core.engine import Tracer
    from pullback.numpy._common import numpy_when_untraced
    tracer = object.__new__(type("T", (Tracer,), {"__slots__": ()}))
    implementations = pullback.core.array_methods.pnp
    checked = 0
    for name, numpy_function in FAST_PATHS.values():
        own = inspect.signature(getattr(implementations, name))
        received = []

        def record(*args, **kwargs):
            received.append(own.bind(*args, **kwargs).arguments)
        record.__signature__ = own
        wrapper = numpy_when_untraced(numpy_function, record)
        code = wrapper.__code__                         # its own positional parameters
        names = [n for n in code.co_varnames[:code.co_argcount] if n in own.parameters]
        if isinstance(numpy_function, np.ufunc) or not names:
            continue
        for k in range(1, len(names) + 1):              # names[:k] by position
            for rest in range(1 << (len(names) - k)):   # a subset of the others by keyword
                given = {n: f"<{n}>" for j, n in enumerate(names[k:]) if rest >> j & 1}
                positional = [f"<{n}>" for n in names[1:k]]
                last = list(given)[-1] if given else k - 1
                for first, value in ((tracer, None), ([tracer], None), (A, tracer)):
                    args, keywords = [first, *positional], dict(given)
                    if value is not None and last == 0:
                        continue                        # nothing after the first to trace
                    if value is not None and type(last) is str:
                        keywords[last] = value
                    elif value is not None:
                        args[last] = value
                    try:
                        expected = own.bind(*args, **keywords)
                    except TypeError:                   # a required argument missing
                        continue
                    received.clear()
                    wrapper(*args, **keywords)
                    assert received == [expected.arguments], (name, args, keywords)
                    checked += 1
    for name, ufunc in FAST_PATHS.values():             # ufuncs: positional arguments only
        if not isinstance(ufunc, np.ufunc):
            continue
        calls = []
        wrapper = numpy_when_untraced(ufunc, lambda *args: calls.append(args))
        numpys = getattr(np, ufunc.__name__, None) is ufunc
        for args in ([[tracer]] + [A] * (ufunc.nin - 1), [A] * (ufunc.nin - 1) + [tracer],
                     [tracer] + [A] * (ufunc.nin - 1)):
            if args[0] is tracer and numpys:
                continue                # the ufunc itself: its dispatch reaches the tracer
            calls.clear()
            wrapper(*args)
            assert calls == [tuple(args)], name
            checked += 1
    assert checked > 5000, checked


# Bad arguments on plain arrays, for the fast paths (those ending in ndarray's methods and
# NumPy's reductions among them): the error NumPy raises.
BAD_CALLS = [("reshape", (M, (5, 3))), ("reshape", (M,)), ("transpose", (M, (0, 0))),
             ("swapaxes", (M, 0, 2)), ("sum", (M, 2)), ("sum", (M, (0, 0))), ("max", (A[:0],)),
             ("min", (M, 5)), ("mean", (M, 3)), ("prod", (M, "x")), ("take", (A, [9])),
             ("argmax", (M, 4)), ("cumsum", (M, 2)), ("diagonal", (A,)), ("trace", (A,)),
             ("repeat", (A, [1, 2])), ("squeeze", (M, 0)), ("concatenate", ([A, M],)),
             ("concatenate", ([],)), ("stack", ([A, B[:3]],)), ("matmul", (M, M)),
             ("dot", (M, M)), ("exp", (A, A, A)), ("add", (A, M)), ("where", (A > 0.5, A, M)),
             ("einsum", ("ij,jk", M, M)), ("var", (M, 2)), ("argsort", (M, 3))]


@pytest.mark.parametrize("name, args", BAD_CALLS, ids=[f"{n}{k}" for k, (n, _) in enumerate(BAD_CALLS)])
def test_item4_bad_arguments_on_plain_arrays_raise_what_numpy_raises(name, args):
    with pytest.raises(Exception) as expected:
        getattr(np, name)(*args)
    with pytest.raises(Exception) as got:
        getattr(pnp, name)(*args)
    assert type(got.value) is type(expected.value) and str(got.value) == str(expected.value)


def test_item4_traced_values_anywhere_in_the_arguments_take_pullbacks_path():
    x = np.linspace(0.1, 0.9, 3)
    for f in (lambda x: pnp.sum(pnp.concatenate([A[:2], x])), lambda x: pnp.sum(pnp.array([[x, x]])),
              lambda x: pnp.sum(pnp.where(A[:3] > 0.5, x, 1.0)), lambda x: pnp.dot(A[:3], x),
              lambda x: pnp.sum(pnp.clip(A[:3], 0.2, x[0])), lambda x: pnp.sum(pnp.exp(x))):
        pullback.testing.check_grads(f, (x,), order=1)


def test_item4_traced_values_given_by_keyword_or_with_options_take_pullbacks_path():
    """The generated signatures pass every way of giving a tracer on to pullback: by keyword
    (NumPy's positional-only parameters too), with options, with pullback's own keywords."""
    x, C = np.linspace(0.1, 0.9, 3), A[:3]
    for f in (lambda x: pnp.sum(a=x * x, axis=0), lambda x: pnp.sum(pnp.reshape(a=x, shape=(3, 1))),
              lambda x: pnp.sum(pnp.reshape(x, newshape=(3, 1))),
              lambda x: pnp.sum(pnp.where(C > 0.5, x=x, y=C)),
              lambda x: pnp.sum(pnp.clip(C, a_min=0.2, a_max=x)),
              lambda x: pnp.sum(pnp.clip(x, min=0.2)),
              lambda x: pnp.sum(pnp.concatenate([[C[:2]], [x[:2]]], axis=None)),
              lambda x: pnp.sum(pnp.stack([C, x], axis=1)), lambda x: pnp.mean(x, where=C > 0.3),
              lambda x: pnp.sum(pnp.choose([0, 1, 0], [x, C], mode="clip")),
              lambda x: pnp.sum(pnp.meshgrid(x, C, indexing="ij")[0])):
        pullback.testing.check_grads(f, (x,), order=1)
    with raises(InPlaceMutationError, "out="):
        pullback.grad(lambda x: pnp.sum(pnp.concatenate([C, x], out=np.empty(6))))(x)
    with raises(InPlaceMutationError, "out="):
        pullback.grad(lambda x: pnp.sum(pnp.exp(x, out=np.empty(3))))(x)
    with pytest.raises(TypeError):
        pullback.grad(lambda x: pnp.sum(x, foo=1))(x)
    with pytest.raises(TypeError, match="renamed `method`"):    # pullback's own keyword
        pullback.grad(lambda x: pnp.quantile(x, 0.5, interpolation="linear"))(x)


# ------------------------------------------------- the debts: cheapest's errors, show's comments

def _steps_of_sines(x):
    """A while_loop: reverse mode through it cannot be differentiated again under jit."""
    return np.sum(pullback.while_loop(lambda c: c[1] < 3, lambda c: (np.sin(c[0]), c[1] + 1),
                                      (x, 0))[0])


def test_issue16_cheapest_keeps_the_default_where_a_mode_cannot_stage_the_program():
    from pullback.errors import LoopTypeError
    from pullback.ir import cost
    from pullback.operators import hvp
    x, v = np.array([0.3, 0.6, 0.9]), np.array([1.0, -1.0, 0.5])
    reverse_over_reverse = lambda x: hvp(_steps_of_sines, x, v, "reverse-over-reverse")  # noqa: E731
    with pytest.raises(LoopTypeError):
        stage(reverse_over_reverse, (x,))
    assert cost.cheapest([lambda x: x * 2.0, reverse_over_reverse], (x,)) is None
    np.testing.assert_allclose(pullback.jit(lambda x: hvp(_steps_of_sines, x, v, "auto"))(x),
                               hvp(_steps_of_sines, x, v), rtol=1e-12)


def test_issue16_cheapest_lets_a_bug_through():
    from pullback.ir import cost

    def broken(x):
        raise KeyError("a bug while staging a candidate")
    with pytest.raises(KeyError, match="a bug while staging"):
        cost.cheapest([lambda x: x * 2.0, broken], (np.ones(3),))


def test_issue16_show_comments_name_the_true_line_or_no_line():
    """Equations made after the user's code returned (a seed, a cotangent sum, a Jacobian's
    assembly) or in a loop body derived while other code ran (here: an eager gradient
    first) quote no line of the caller; the replayed body's equations keep their own lines."""
    from readable_examples import energy, rk4_end
    from pullback.ir.readable import NO_LINE
    y = np.array([0.1, -0.2, 0.3])
    for f, args in [(pullback.grad(rk4_end), (y,)), (pullback.hessian(energy), (y,)),
                    (pullback.jacobian(pullback.grad(energy)), (y,))]:
        f(*args)                                     # derived programs cached from here
        text = pullback.show(f, *args)
        comments = [line.strip()[2:] for line in text.splitlines()
                    if line.strip().startswith("# ") and not line.startswith("# ")]
        assert comments and all(c == NO_LINE or c.removeprefix("derivative of ")
                                .startswith("readable_examples.py:") for c in comments), text
    assert "derivative of readable_examples.py:40  k1 = np.tanh(W @ y)" in \
        pullback.show(pullback.grad(rk4_end), y)
