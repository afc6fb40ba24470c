"""The fused tier of jit (pullback/ir/fused.py): Numba loops for elementwise chains and the
reductions consuming them, equal to the NumPy code on the whole primitive registry."""
import os
import re
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import pullback
from pullback.core.primitive import REGISTRY
from pullback.ir import fused
from pullback.ir.codegen import compile_program
from pullback.ir import passes
from pullback.ir.passes import optimize
from pullback.ir.staging import stage
from pullback.primitives import elementwise
from pullback.primitives.contraction import matmul
from pullback.primitives.structural import concatenate

pytest.importorskip("numba", reason="the fused tier needs Numba: pip install 'pullback[fast]'")
from test_primitives import (SETTINGS, TABLE, _differentiable_positions,  # noqa: E402
                             case_strategy, jax_like_ones)

TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5,
             np.dtype(np.complex128): 1e-10, np.dtype(np.complex64): 2e-5}


@pytest.fixture(autouse=True)
def synchronous_tier(monkeypatch):
    """The tier on (the suite's conftest turns it off elsewhere), compiling on the first
    call in the calling thread."""
    monkeypatch.setenv("PULLBACK_FUSED", "1")
    monkeypatch.setattr(fused, "AFTER_CALLS", 1)
    monkeypatch.setattr(fused, "BACKGROUND", False)


def _assert_close(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g, e = np.asarray(g), np.asarray(e)
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, e.dtype, g.shape, e.shape)
        tolerance = TOLERANCE.get(e.dtype, 0)
        np.testing.assert_allclose(g, e, rtol=tolerance, atol=tolerance, equal_nan=True)


def _fusible(program):
    return any(fused._map_element(eq) for eq in program.equations)


def _check_fused(fn, args):
    """fn staged, optimised and run by the fused tier (every group fused, even one
    equation): equal to eager; every group of a fusible program compiles."""
    with np.errstate(all="ignore"):
        expected = pullback.tree.flatten(fn(*args))[0]
        program = optimize(stage(fn, tuple(args)))
        compiled = fused.compile_fused(program, "f", [np.copy(a) for a in args], min_size=1,
                                       measure=False)
        if _fusible(program):
            assert compiled is not None and len(compiled.kernels) == len(
                [e for e in fused.fuse(program, 1).equations
                 if type(e.primitive) is fused.FusedKernel]), compiled and compiled.source
        if compiled is not None:
            _assert_close(compiled(*[np.copy(a) for a in args]), expected)
        # groups fused around every other elementwise equation kept as a NumPy call
        keys = list(dict.fromkeys(fused.probe_key(e) for e in program.equations
                                  if fused._map_element(e)))
        around = fused.compile_fused(program, "f", [np.copy(a) for a in args], min_size=1,
                                     measure=False, leave=dict.fromkeys(keys[::2], 1.0))
        if around is not None:
            _assert_close(around(*[np.copy(a) for a in args]), expected)


@pytest.mark.parametrize("name", TABLE)
def test_fused_tier_matches_eager_on_every_primitive(name):
    """For each primitive: the primitive, its pushforward and its pullback, staged as one
    program, fused and compiled, equal eager mode (float64;
    float32 for the elementwise family). (One program, one example per dtype: Numba
    compiles each kernel for a fraction of a second.)"""
    prim = REGISTRY[name]
    dtypes = [np.float64] + ([np.float32] if prim.family == "elementwise" else [])
    for dtype in dtypes:
        @settings(SETTINGS, max_examples=1)
        @given(case_strategy(prim, dtype))
        def run(case):
            args, params = case
            positions = _differentiable_positions(args, prim)

            def all_three(*a):
                outs = [prim(*a, **params)]
                if prim.differentiable and positions:
                    def rebuilt(d):
                        d = iter(d)
                        return [next(d) if i in positions else x for i, x in enumerate(a)]
                    diff = [a[i] for i in positions]
                    outs.append(pullback.pushforward(lambda *d: prim(*rebuilt(d), **params),
                                                     tuple(diff),
                                                     tuple(x * 0.5 + 0.25 for x in diff))[1])
                    out, back = pullback.pullback(lambda *d: prim(*rebuilt(d), **params), *diff)
                    outs.append(back(jax_like_ones(out)))
                return outs
            _check_fused(all_three, args)
        run()


def test_a_matrix_of_vector_math_calls_runs_as_flat_chunks_of_rows():
    """A 2-D loop of vector_math calls runs as a flat function over chunks of rows (row
    operands tiled; 37 rows of 300 in chunks of 13, the last shorter) on C-ordered
    arrays, and as the nested loops on others: the same bits either way, NumPy's values
    to within vector_math's ulps. A column operand keeps the nested loops alone."""
    rng = np.random.default_rng(3)
    g, b, r, s = (rng.standard_normal((37, 300)), rng.standard_normal(300),
                  rng.standard_normal((1, 300)), rng.standard_normal(()))

    def f(g, b, r, s):
        return np.tanh(g + b) * r - np.exp(g * s) * 0.5
    args = (g, b, r, s)
    program = optimize(stage(f, args))
    compiled = fused.compile_fused(program, "f", [np.copy(a) for a in args], min_size=1,
                                   measure=False)
    (kernel,) = compiled.kernels
    assert "kernel_rows(m, f0[s:s + m], t0, t1, a3, g0[s:s + m])" in kernel.source
    flat = compiled(*args)[0]
    nested = compiled(np.asfortranarray(g), b, r, s)[0]
    np.testing.assert_array_equal(flat, nested)
    np.testing.assert_allclose(flat, f(*args), rtol=1e-14, atol=1e-15)
    column = optimize(stage(lambda g, c: np.tanh(g + c), (g, b[:37, None])))
    (kernel,) = fused.compile_fused(column, "f", [g, b[:37, None]], min_size=1,
                                    measure=False).kernels
    assert "kernel_rows" not in kernel.source


COMPLEX_ELEMENTWISE = sorted(n for n in TABLE if REGISTRY[n].family == "elementwise"
                             and REGISTRY[n].emit_scalar and REGISTRY[n].complex_rules
                             and REGISTRY[n].partials)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_fused_tier_on_complex_values(dtype):
    """Holomorphic elementwise primitives on complex values, and their pullbacks."""
    rng = np.random.default_rng(0)
    z = (rng.uniform(0.3, 0.9, (2, 3)) + 1j * rng.uniform(-0.5, 0.5, (2, 3))).astype(dtype)
    for name in COMPLEX_ELEMENTWISE:
        prim = REGISTRY[name]
        args = [z + 0.1 * k for k in range(len(prim.partials))]
        _check_fused(lambda *a: prim(*a) * 2.0 + a[0], args)
        def vjp_of(*a):
            out, back = pullback.pullback(prim, *a)
            return back(jax_like_ones(out))
        _check_fused(vjp_of, args)


def test_fused_tier_keeps_nan_and_inf():
    """NaN and Inf arise and propagate as in NumPy: log(0), 0 / 0, Inf - Inf, max of NaN."""
    x = np.array([0.0, -1.0, np.inf, -np.inf, np.nan, 2.0, 1e308, -0.0])

    def f(x):
        y = np.log(x) * x + x / x - (x * np.inf) + np.sqrt(x)
        return y, np.sum(y), np.max(np.exp(x) * 2.0), np.min(x * 1.0 - 1.0)
    with np.errstate(all="ignore"):
        _check_fused(f, [x])
        _check_fused(lambda x: np.where(x > 0, x * 2.0, -x) ** 2, [x])


def test_fused_groups_cover_broadcasting_and_partial_reductions():
    """One loop over (3, 4) reading a row, a column and a 0-d value; reductions along one
    axis (with and without keepdims), both axes, and float32 accumulation."""
    rng = np.random.default_rng(1)
    for dtype in (np.float64, np.float32):
        a, row, column = (rng.normal(size=s).astype(dtype) for s in ((3, 4), (4,), (3, 1)))
        c = np.asarray(1.5, dtype)

        def f(a, row, column, c):
            y = np.tanh(a * row + column) * c
            return (y, np.sum(y, axis=0), np.sum(y * y, axis=1, keepdims=True), np.sum(y),
                    np.max(y, axis=1), np.prod(y + 1.0, axis=0))
        _check_fused(f, [a, row, column, c])
        _check_fused(pullback.grad(lambda a: np.sum(np.sin(a) * a ** 2)), [a])


def test_embed_and_scatter_add_fuse_into_the_loop_of_their_values():
    """Rosenbrock's gradient and HVP become one loop each (the cotangents of x[1:] and
    x[:-1] added into one array); 2-D slices with steps and integers, and a scatter into
    an array computed before the loop, agree with eager mode."""
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    x, v = np.linspace(-1.0, 1.0, 9), np.cos(np.arange(9.0))
    for fn, args in ((pullback.grad(rosen), [x]),
                     (lambda x, v: pullback.hvp(rosen, x, v), [x, v])):
        program = fused.fuse(optimize(stage(fn, tuple(args))))
        assert [type(eq.primitive) for eq in program.equations].count(fused.FusedKernel) == 1
        assert program.equations[-1].outputs == program.outvars
        _check_fused(fn, args)
    a = np.arange(20.0).reshape(4, 5) / 7.0

    def strided(a):
        return np.sum(np.sin(a[::2, 1:4]) * a[1::2, :3] + np.cos(a[3, ::-2]))
    _check_fused(pullback.grad(strided), [a])
    _check_fused(lambda a: pullback.numpy.at(a * 2.0)[1:, ::2].add(np.exp(a[:3, 2:]) * 3.0), [a])


def test_a_group_numba_cannot_compile_falls_back_to_numpy(monkeypatch):
    """A kernel that fails to compile leaves its group to the NumPy code, with the same
    values; the other groups stay fused."""
    monkeypatch.setattr(elementwise.sin, "emit_scalar",
                        lambda args, dtypes: f"np.no_such_function({args[0]})")
    x = np.linspace(0.0, 1.0, 5)

    def f(x):
        y = np.sin(x * 2.0) + 1.0            # a group holding sin: refused
        return np.sum(y @ np.ones((5, 5)) * 3.0 - 1.0)    # after the matmul: fused
    program = optimize(stage(f, (x,)))
    compiled = fused.compile_fused(program, "f", [x], measure=False)
    assert len(compiled.kernels) == 1 and "np.sin" in compiled.source
    assert np.allclose(compiled(x)[0], f(x), rtol=1e-12)


def test_jit_switches_to_the_fused_tier_after_its_first_calls(monkeypatch):
    """The first calls run the NumPy code; the call AFTER_CALLS starts compiling in a
    thread, after which calls run the kernels; values agree throughout."""
    monkeypatch.setattr(fused, "AFTER_CALLS", 2)
    monkeypatch.setattr(fused, "BACKGROUND", True)
    monkeypatch.setattr(fused, "_faster", lambda *args: True)
    f = pullback.jit(pullback.grad(lambda x: np.sum(np.tanh(x) ** 2 * x)))
    x = np.linspace(-1.0, 1.0, 7)
    expected = pullback.grad(lambda x: np.sum(np.tanh(x) ** 2 * x))(x)
    entry = next(iter(f.cache.values())) if f(x) is not None else None
    assert not hasattr(entry.fast, "kernels")
    np.testing.assert_allclose(f(x), expected, rtol=1e-12)
    for thread in threading.enumerate():
        if thread.name.startswith("pullback fuse"):
            thread.join()
    assert entry.fast.kernels
    np.testing.assert_allclose(f(x), expected, rtol=1e-12)


def test_a_group_keeps_its_numpy_code_where_that_measures_faster(monkeypatch):
    """Each kernel is timed against its group's NumPy code on the arguments of the call
    that compiles it; the slower one is dropped."""
    def work():
        return sum(range(20000))
    assert not fused._faster(work, lambda: None, [])
    assert fused._faster(lambda: None, lambda: work(), [])


def test_fusing_measures_the_work_of_its_own_thread(monkeypatch):
    """The thread that fuses a program times its kernels against their NumPy code beside
    the caller's thread (and while other programs compiled): on the clock, a call that
    waited for the GIL or a CPU measured up to a hundred times its cost, and NumPy's tanh
    (1,000 µs) was kept where the MLP's kernel takes 190. Waiting costs no CPU time; and
    programs fuse one at a time."""
    assert fused._best_times(lambda: time.sleep(2e-3))[0] < 1e-3
    active, overlapped = [], []

    def compile_fused(program, name, args):
        active.append(name)
        overlapped.append(len(active) > 1)
        time.sleep(0.05)
        active.remove(name)
    monkeypatch.setattr(fused, "compile_fused", compile_fused)
    monkeypatch.setattr(fused, "BACKGROUND", True)
    installed = []

    def numpy_code(x):
        return x
    for name in ("f", "g", "h"):
        fused.tier(None, name, numpy_code, installed.append)(np.ones(2))
    for thread in threading.enumerate():
        if thread.name.startswith("pullback fuse"):
            thread.join()
    assert overlapped == [False] * 3 and installed == [numpy_code] * 3
    monkeypatch.setattr(fused, "_faster", lambda kernel, numpy_code, values: False)
    program = optimize(stage(lambda x: np.sum(np.sin(x) * 2.0), (np.ones(3),)))
    assert fused.compile_fused(program, "f", [np.ones(3)]) is None


def test_item12_numpy_keeps_the_elementwise_equations_it_runs_faster(monkeypatch):
    """Numba's loops call the C library's exp and tanh, 6 to 10 times slower per element
    than NumPy's SIMD ufuncs, so a group holding exp lost to its NumPy code as a whole
    (the logistic gradient's sigmoid ran as five NumPy calls) or won with exp inside
    (its HVP: 12 µs where NumPy's exp and a loop of the rest take 7). An equation of a
    kind the probe finds faster in NumPy, on enough elements that the time saved pays for
    splitting its group, stays a NumPy call (each kind probed once in a process), and the
    rest of the group fuses around it, with the same values, NaN and Inf included (exp
    overflowing to inf: 1 / (inf + 1) * inf is NaN in both). On a few elements (the tanh
    of 6 parameters here, the 100-operation chain on 10) it stays in the loop."""
    probed = []

    def numpy_saving(eq, values):           # seconds per element: 6 ns, 2 µs at 333
        probed.append(fused.probe_key(eq))
        return 6e-9 if eq.primitive in (elementwise.exp, elementwise.tanh) else 0.0
    monkeypatch.setattr(fused, "_savings", {})
    monkeypatch.setattr(fused, "numpy_saving", numpy_saving)
    monkeypatch.setattr(fused, "_faster", lambda *args: True)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((400, 6)), (rng.uniform(size=400) < 0.5) * 1.0

    def loss(w):
        z = X @ w
        return np.sum(np.log1p(np.exp(z)) - y * z) + np.sum(np.tanh(w) ** 2)
    for f, args in ((pullback.grad(loss), [rng.standard_normal(6)]),
                    (pullback.grad(loss), [np.full(6, 300.0)]),
                    (lambda w, v: pullback.hvp(loss, w, v), [rng.standard_normal(6)] * 2)):
        program = optimize(stage(f, tuple(args)))
        with np.errstate(all="ignore"):
            expected = compile_program(program, "f")(*args)
            compiled = fused.compile_fused(program, "f", [np.copy(a) for a in args])
            got = compiled(*args)
        fused_kinds = {eq.primitive for kernel in compiled.kernels for eq in kernel.group}
        code = [line for line in compiled.source.splitlines() if "#" not in line]
        assert elementwise.exp not in fused_kinds and any("np.exp(" in line for line in code)
        assert elementwise.tanh in fused_kinds and not any("np.tanh(" in line for line in code)
        assert elementwise.reciprocal in fused_kinds       # the sigmoid's rest, fused
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-12, equal_nan=True)
        assert np.isnan(got[0]).any() == (args[0][0] == 300.0)   # overflow: NaN, as NumPy's
    assert len(probed) == len(set(probed))                  # once per kind
    assert {"exp", "tanh", "add"} <= {key[0].name for key in probed}


def test_item12_the_probe_times_each_kind_of_elementwise_equation_as_it_runs():
    """`numpy_saving` compiles a loop of the equation's scalar rule (array operands,
    literals, weakly typed Python scalars, float32, integers, booleans, three operands)
    and gives the seconds per element NumPy saves; 0 where the loop cannot compile."""
    x = np.linspace(0.5, 2.0, 12)

    def f(x, k):
        a = np.exp(x) + 1.0
        b = np.power(x.astype(np.float32), 3) * np.float32(2.0)
        c = np.arange(12) * 3 + (x > 1.0)
        d = np.where(x > 1.0, a, x * k)
        return a, b, c, d
    program = optimize(stage(f, (x, 2.0)))
    env = dict(zip(program.invars, (x, 2.0)))
    env.update(zip(program.constvars, program.consts))
    kinds = 0
    for eq in program.equations:
        values = [v.value if type(v) is fused.Literal else env[v] for v in eq.inputs]
        if fused._map_element(eq):
            assert 0.0 <= fused.numpy_saving(eq, values) < 1e-6
            kinds += 1
        env.update(zip(eq.outputs, fused.evaluate(fused._alone(eq), *map(env.get,
                                                                          fused._read(eq)))))
    assert kinds >= 6
    eq = next(eq for eq in program.equations if eq.primitive is elementwise.exp)
    broken = type("Broken", (), {"emit_scalar": staticmethod(lambda args, dtypes: "np.nope(1)"),
                                 "impl": staticmethod(np.exp), "numpy_functions": ()})()
    assert fused.numpy_saving(fused.Equation(broken, eq.inputs, {}, eq.outputs, None),
                              [x]) == 0.0


def test_without_numba_jit_runs_the_numpy_code(monkeypatch):
    monkeypatch.setattr(fused, "_numba_installed", lambda: False)
    f = pullback.jit(lambda x: np.sum(np.sin(x) * 2.0))
    x = np.ones(3)
    for _ in range(3):
        assert f(x) == np.sum(np.sin(x) * 2.0)
    assert not hasattr(next(iter(f.cache.values())).fast, "kernels")


SCRIPT = """
import sys, numpy as np, pullback
f = pullback.jit(pullback.grad(lambda x: np.sum(np.cos(x) * x)))
x = np.linspace(0.0, 1.0, 4)
f(x)
print("numba imported after the first call:", "numba" in sys.modules)
from pullback.ir import fused
from pullback.ir.codegen import compile_program
fused.BACKGROUND = False
fused._faster = lambda *args: True          # fused, however the timings fall
for _ in range(3):
    g = f(x)
kernel = next(iter(f.cache.values())).fast.kernels[0].function
print("cache hits:", sum(kernel.stats.cache_hits.values()))
print(repr(g.tolist()))
"""


def test_first_call_never_imports_numba_and_kernels_are_cached_on_disk(tmp_path):
    """A fresh process: the first call runs without Numba; the kernels compiled in one
    process are loaded from the disk cache by the next."""
    env = dict(os.environ, PULLBACK_CACHE=str(tmp_path), PULLBACK_FUSED="1")
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                           text=True, check=True).stdout.splitlines() for _ in range(2)]
    for lines in runs:
        assert lines[0] == "numba imported after the first call: False"
    assert runs[0][1] == "cache hits: 0" and runs[1][1] != "cache hits: 0"
    assert runs[0][2] == runs[1][2]
    assert list((tmp_path / "fused").glob("fused_*.py"))


def test_show_prints_the_fused_kernels(capsys):
    text = pullback.show(pullback.grad(lambda x: np.sum(np.exp(x) * x)), np.ones(3),
                         fused=True)
    assert "@numba.njit" in text and "for i0 in range(n0):" in text and "np.exp(" in text
    assert ".function(3, x, " in text          # its output, made by the caller, last


def _reads_what_it_writes(source):
    """Whether a kernel line reads an element of the array it writes (`z[i] = z[i] + v`)."""
    for line in source.splitlines():
        target, _, value = line.strip().partition(" = ")
        if "[" in target and target.split("[")[0] + "[" in value:
            return True
    return False


def test_item1_unit_step_stores_loop_over_their_output_without_reading_it():
    """Cotangents of slices of step one (x[1:], x[:-1], a[1:, 2], ...) are added into
    their output by loops over that output, piece by piece, that never read the array
    they write (a dependence through memory keeps LLVM from vectorising a loop); values
    equal eager mode's, signed zeros the NumPy code's. A chain with more pieces than
    MAX_SEGMENTS, or a step other than one, adds into zeros in the main loop instead."""
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def plane(a):
        return np.sum(np.sin(a[1:, :]) * a[:-1, :]) + np.sum(np.cos(a[2, 1:4]) * a[0, :3])

    def signed(x, w):
        return np.sum(np.sin(x[:-1]) * w[:-1]) + np.sum(np.cos(x[2:]) * w[2:])

    def kept(x, c):                 # y is an output too: the store loop reads it back
        y = np.cos(x[1:]) * x[:-1]
        return y, pullback.numpy.at(c)[1:].add(y * 3.0)

    def many(x):
        return sum(np.sum(np.sin(x[k:len(x) - 12 + k]) * (k + 1.0)) for k in range(12))
    x, v = np.linspace(-1.0, 1.0, 30), np.cos(np.arange(30.0))
    w = np.where(np.arange(30) % 3 == 0, -0.0, v)
    w[5] = np.nan
    a = np.arange(20.0).reshape(4, 5) / 7.0
    cases = [(pullback.grad(rosen), [x], True), (lambda x, v: pullback.hvp(rosen, x, v), [x, v], True),
             (pullback.grad(plane), [a], True), (pullback.grad(signed), [x, w], True),
             (lambda a: pullback.numpy.at(a @ a.T)[1:, :3].add(np.exp(a[:3, 2:]) * 3.0), [a], True),
             (pullback.value_and_grad(rosen), [x], True), (kept, [x, v], True),
             (pullback.grad(many), [x], False)]
    for fn, args, gathered in cases:
        program = fused.fuse(optimize(stage(fn, tuple(args))), 1)
        sources = [eq.primitive.source for eq in program.equations
                   if type(eq.primitive) is fused.FusedKernel]
        assert sources and any(_reads_what_it_writes(s) for s in sources) is not gathered
        _check_fused(fn, args)
        program = optimize(stage(fn, tuple(args)))
        compiled = fused.compile_fused(program, "f", args, min_size=1, measure=False)
        for got, expected in zip(compiled(*args), compile_program(program, "f")(*args)):
            assert np.array_equal(np.signbit(got), np.signbit(expected)
                                  | np.isnan(expected) & np.signbit(got))


def _carries(source):
    """Whether a kernel carries a stored value from one element to the next (`z0c1 = ...`)."""
    return re.search(r"^ +z\d+c\d+ = ", source, re.M) is not None


def test_issue12_a_value_stored_one_step_further_is_carried_to_the_next_element():
    """Where two stores of a chain read one position apart along the last dimension (the
    cotangents of x[1:] and x[:-1]), the further value is computed once per element,
    beside the nearer one's (sharing its work), and carried to the next element instead
    of computed again at the shifted position; values are the NumPy code's bit for bit
    (NaN where NumPy's is, signed zeros). Stores two apart, or apart along another
    dimension, compute each value where it is stored."""
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def three(x):                       # three stores: one carried, one computed
        return np.sum(np.sin(x[2:]) * x[1:-1] * np.cos(x[:-2]))

    def columns(a):                     # Rosenbrock along each row
        return np.sum(100.0 * (a[:, 1:] - a[:, :-1] ** 2) ** 2 + (1.0 - a[:, :-1]) ** 2)

    def rows(a):                        # apart along dimension 0: not carried
        return np.sum(np.sin(a[1:, :]) * a[:-1, :])

    def two_apart(x):
        return np.sum(np.sin(x[:-2]) * np.cos(x[2:]))
    x, v = np.linspace(-1.0, 1.0, 40), np.cos(np.arange(40.0))
    x[7], v[11], x[20] = np.nan, -0.0, -0.0
    a = np.arange(35.0).reshape(5, 7) / 9.0
    a[3, 4] = np.inf
    cases = [(pullback.grad(rosen), [x], True),
             (lambda x, v: pullback.hvp(rosen, x, v), [x, v], True),
             (pullback.grad(three), [x], True), (pullback.grad(columns), [a], True),
             (pullback.grad(rows), [a], False), (pullback.grad(two_apart), [x], False)]
    with np.errstate(all="ignore"):
        for fn, args, carried in cases:
            program = optimize(stage(fn, tuple(args)))
            compiled = fused.compile_fused(program, "f", args, min_size=1, measure=False)
            assert any(_carries(k.source) for k in compiled.kernels) is carried
            for got, expected in zip(compiled(*args), compile_program(program, "f")(*args)):
                np.testing.assert_array_equal(got, expected)
                numbers = ~np.isnan(expected)        # a NaN's sign is not NumPy's either
                assert np.array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers])


def test_item3_a_failed_numba_import_is_reported_once_and_jit_runs_the_numpy_code(monkeypatch):
    """Numba installed but failing to import (here: blocked in sys.modules): one
    FusedTierWarning naming the import error for the process, not a silent fallback per
    group; every jitted function keeps its NumPy code and values."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setattr(fused, "_imported", [])
    monkeypatch.setattr(fused, "_installed", [True])         # found on the path
    x = np.linspace(0.0, 1.0, 5)
    functions = [pullback.jit(lambda x: np.sum(np.sin(x) * 2.0 + x)),
                 pullback.jit(pullback.grad(lambda x: np.sum(np.cos(x) * x)))]
    with pytest.warns(fused.FusedTierWarning, match="import numba` failed with ModuleNotFoundError: import of numba halted") \
            as caught:
        for f in functions:
            for _ in range(3):
                f(x)
    assert len(caught) == 1
    for f in functions:
        assert not hasattr(next(iter(f.cache.values())).fast, "kernels")
    np.testing.assert_allclose(functions[1](x), np.cos(x) - x * np.sin(x), rtol=1e-12)


def test_item12_kernels_write_their_large_outputs_into_buffers_kept_between_calls(monkeypatch):
    """A kernel takes the arrays of SCRATCH_BYTES or more it writes whole (loop outputs,
    stores computed over their output) as arguments, which the generated code passes
    from its pools (kept from the last call: no page faults) or allocates (results).
    With every array that large (the threshold at one byte), kernels of loops,
    broadcasting, reductions, stores and NaN agree with eager mode call after call."""
    from pullback.ir import codegen
    monkeypatch.setattr(codegen, "SCRATCH_BYTES", (1, 1 << 24))

    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def chain(a, row):
        y = np.tanh(a * row) * 2.0
        return np.sum(y @ a.T * y[:, :3].sum()), y * 0.5

    def nan_making(x):
        y = np.log(x) * x + x / x
        return np.sum((y * 3.0) @ np.ones((8, 2))), np.exp(y) + 1.0
    rng = np.random.default_rng(3)
    cases = [(lambda x, v: pullback.hvp(rosen, x, v), lambda: [rng.normal(size=9),
                                                             rng.normal(size=9)]),
             (chain, lambda: [rng.normal(size=(3, 4)), rng.normal(size=4)]),
             (nan_making, lambda: [np.array([0.0, -1.0, np.inf, -np.inf, np.nan, 2.0, 1e308,
                                             -0.0]) * rng.uniform(0.5, 2.0)])]
    with np.errstate(all="ignore"):
        for fn, draw in cases:
            first = draw()
            program = optimize(stage(fn, tuple(first)))
            compiled = fused.compile_fused(program, "f", first, min_size=1, measure=False)
            assert any(k.given_outputs for k in compiled.kernels)
            for args in (first, draw(), draw()):
                _assert_close(compiled(*[np.copy(a) for a in args]),
                              pullback.tree.flatten(fn(*args))[0])


def test_item12_the_mlp_kernels_run_in_kept_buffers():
    """At the default threshold: the MLP's 256 x 256 kernel outputs are given buffers,
    the intermediates' taken from pools, and the HVP agrees with eager mode."""
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((256, 32)), rng.standard_normal((256, 1))

    def mlp(p):
        w1, b1 = p[:8192].reshape(32, 256), p[8192:8448]
        w2, b2 = p[8448:8704].reshape(256, 1), p[8704]
        return np.mean((np.tanh(X @ w1 + b1) @ w2 + b2 - Y) ** 2)
    p, v = rng.standard_normal(8705) * 0.1, rng.standard_normal(8705)
    program = optimize(stage(lambda p, v: pullback.hvp(mlp, p, v), (p, v)))
    compiled = fused.compile_fused(program, "f", [p, v], measure=False)
    assert any(k.given_outputs for k in compiled.kernels) and ".pop()" in compiled.source
    for _ in range(2):
        np.testing.assert_allclose(compiled(p, v)[0], pullback.hvp(mlp, p, v), rtol=1e-10)


def _thin_kernels(compiled):
    return [k for k in compiled.kernels if any(e.primitive is matmul for e in k.group)]


@pytest.mark.parametrize("merged", [False, True])
def test_issue12_products_by_one_matrix_run_as_one_pass_over_its_rows(monkeypatch, merged):
    """An HVP's products of the data by the point and the direction (`A @ w`, `A @ v`,
    or the product by both side by side where `merge_products` found that faster, split
    back: `split_products`), or a product by a matrix of few columns, run as one kernel
    that reads each row of A once (`thin_products`): BLAS's values within rounding, NaN
    and inf kept, vectors read and written as vectors (a merged operand's columns, strided
    in memory, made the loop scalar: 3 times BLAS's time; a matrix operand's columns are
    copied contiguous for the same reason), a column that something else reads too kept
    for it."""
    monkeypatch.setattr(passes, "merging_pays", lambda *args: merged)
    rng = np.random.default_rng(1)
    A = rng.standard_normal((61, 20))         # 15 blocks of four rows and one row alone
    A[3, 4], A[7, 1], A[60, 2] = np.nan, np.inf, -np.inf
    w, v = rng.standard_normal((2, 20))
    B = rng.standard_normal((20, 3))

    def hvp_like(A, w, v):
        z, t = A @ w, A @ v                  # (as a jvp stages them: one after the other)
        return np.sum(np.tanh(z) * t), t

    def shared_column(A, w, v):
        c = w.reshape(20, 1)
        return A @ c, A @ v, c * 2.0

    for f, args, n_products in [(hvp_like, (A, w, v), 2), (shared_column, (A, w, v), 2),
                                (lambda A, B: np.tanh(A @ B), (A, B), 1),
                                (lambda A, w, v: (A @ w, A @ v), (np.asfortranarray(A), w, v), 2),
                                (hvp_like, (np.tile(A, (200, 1)), w, v), 2)]:
        program = optimize(stage(f, args))
        with np.errstate(all="ignore"):
            compiled = fused.compile_fused(program, "f", list(args), measure=False)
            expected = pullback.tree.flatten(f(*args))[0]
            got = compiled(*args)
        (kernel,) = _thin_kernels(compiled)
        assert sum(e.primitive is matmul for e in kernel.group) == n_products
        assert "concatenate" not in compiled.source
        assert list(kernel.given_outputs) == list(range(n_products)) and not kernel.returned
        assert "x3 = a0[i0 + 3, j]" in kernel.source and 'fastmath={"reassoc", "contract"}' in kernel.source
        assert not re.search(r"a\d\[j, \d\]", kernel.source)      # columns read contiguous
        _assert_close(got, expected)
    merged_program = optimize(stage(hvp_like, (A, w, v)))
    assert merged == any(e.primitive is concatenate for e in merged_program.equations)
    assert "s1_3 += x3 * c" in _thin_kernels(fused.compile_fused(
        merged_program, "f", [A, w, v], measure=False))[0].source


def test_issue12_products_stay_blas_calls_where_one_pass_does_not_apply():
    """Products by a float32 matrix, of more than THIN_COLUMNS columns in all, or with the
    shared matrix on the right (`w @ A`: BLAS reads A along its rows either way), are
    left to BLAS."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((60, 20))
    w, v = rng.standard_normal((2, 20))
    cases = [(lambda A, w, v: (A @ w, A @ v), (A.astype(np.float32), w.astype(np.float32),
                                              v.astype(np.float32))),
             (lambda A, B: A @ B, (A, rng.standard_normal((20, fused.THIN_COLUMNS + 1)))),
             (lambda A, w, v: (w @ A.T, v @ A.T), (A, w, v))]
    for f, args in cases:
        program = optimize(stage(f, args))
        assert fused.thin_products(program) is program


def test_issue12_the_logistic_hvp_reads_its_data_once_for_both_products():
    """jit's fused tier computes `X @ w` and `X @ v` of a logistic loss's HVP in one
    kernel where it measures faster than the generated code's two matrix-vector products
    (as on an AMD EPYC with OpenBLAS's Haswell kernels: 25 µs against 33); its values
    are the NumPy code's within rounding either way."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((400, 50)), rng.random(400) < 0.5
    w, v = rng.standard_normal((2, 50)) * 0.1

    def loss(w):
        z = X @ w
        return np.sum(np.logaddexp(0.0, z) - y * z)
    f = pullback.jit(lambda w, v: pullback.hvp(loss, w, v))
    numpy_code = f(w, v)
    program = next(iter(f.cache.values())).program
    assert fused.thin_products(program) is not program
    np.testing.assert_allclose(f(w, v), numpy_code, rtol=1e-12)
    np.testing.assert_allclose(f(w, v), pullback.hvp(loss, w, v), rtol=1e-12)


def test_issue12_a_failure_of_the_tier_is_reported_once_and_the_numpy_code_runs(monkeypatch):
    """An error fusing a program (not a kernel Numba cannot compile, which falls back
    quietly) warns once per process, naming it, and jit keeps the NumPy code's values."""
    def broken(*args, **kwargs):
        raise KeyError("a bug")
    monkeypatch.setattr(fused, "compile_fused", broken)
    monkeypatch.setattr(fused, "_failures_reported", [])
    f = pullback.jit(lambda x: np.sum(np.sin(x) * 2.0))
    x = np.linspace(0.0, 1.0, 5)
    with pytest.warns(fused.FusedTierWarning, match="failed on jit.*KeyError: 'a bug'"):
        value = f(x)
    assert value == np.sum(np.sin(x) * 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = pullback.jit(lambda x: np.sum(np.cos(x) * 2.0))
        assert g(x) == np.sum(np.cos(x) * 2.0)
        assert not hasattr(next(iter(g.cache.values())).fast, "kernels")


def _fused_values(fn, args):
    """fn's outputs computed by the fused tier, every group fused (checked: one kernel at
    least), and by NumPy."""
    with np.errstate(all="ignore"):
        program = optimize(stage(fn, tuple(args)))
        compiled = fused.compile_fused(program, "f", [np.copy(a) for a in args], min_size=1,
                                       measure=False)
        assert compiled is not None and compiled.kernels
        return compiled(*[np.copy(a) for a in args]), pullback.tree.flatten(fn(*args))[0]


def _assert_same(got, expected):
    """Equal values, dtypes, NaN and signs of zero."""
    for g, e in zip(got, expected):
        g, e = np.asarray(g), np.asarray(e)
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(np.signbit(g.real), np.signbit(e.real))


def test_float32_with_integer_operands_computes_in_numpys_dtype():
    """NumPy computes float32 (complex64) with int32, int64 or uint32 operands in double
    precision; the kernels computed them in single (Numba's typing of np.multiply(float32,
    int32)) and cast the rounded result: 2**24 + 1 came out 2**24. Every operand is now
    converted to the dtype of NumPy's loop first, and a float64 kernel has no conversions."""
    a = np.array([1.0, 1.5, -3.25, 0.1], np.float32)
    k = np.array([2**24 + 1, 3, -7, 2**24 + 3], np.int32)
    for ints in (k, k.astype(np.int64), np.abs(k).astype(np.uint32)):
        def f(a, k):
            return ((a * k + a) * 2.0 - a, a / k, np.maximum(a, k), a % k, k == a * 16777216.0,
                    (a > 0) & (k < a), np.where(a > 0, a, k), a.astype(np.complex64) * k)
        _assert_same(*_fused_values(f, [a, ints]))
    x = np.linspace(0.5, 2.0, 8)
    (kernel,) = fused.compile_fused(optimize(stage(lambda x, y: (x * y + 1.0) ** 2 - x, (x, x))),
                                    "f", [x, x], min_size=1, measure=False).kernels
    assert "np.float64(a" not in kernel.source, kernel.source


def test_complex_log_keeps_the_real_part_near_the_unit_circle():
    """A kernel's complex log, log10 and log2 were Numba's log(abs(z)): log(1 + 1e-8j)'s
    real part 0 (NumPy 5e-17), 8e-9 relative error at 1 + 1e-5j; now within a few ulp of
    NumPy's, with its values at zeros, infinities and NaN. Complex exp and exp2 (Numba's
    NaN + NaN j where NumPy's overflow to inf + nan j) stay NumPy calls."""
    rng = np.random.default_rng(0)
    near = (1 + rng.standard_normal(500) * np.logspace(-17, -1, 500)) * np.exp(
        1j * rng.uniform(-np.pi, np.pi, 500))
    special_values = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-300, 1e300, 5e-324]
    z = np.concatenate([near, [1 + 1e-5j, 1 + 1e-8j, 0.999999 + 0.001j, 1e-9 + 1j],
                        [complex(a, b) for a in special_values for b in special_values]])
    for dtype, ulps in ((np.complex128, 4), (np.complex64, 2)):
        with np.errstate(over="ignore"):
            values = z.astype(dtype)
        got, expected = _fused_values(lambda z: (np.log(z) * 2.0, np.log10(z) * 2.0,
                                                 np.log2(z) * 2.0), [values])
        for g, e in zip(got, expected):
            for part in (np.real, np.imag):
                g_part, e_part = part(g), part(e)
                np.testing.assert_array_equal(np.isnan(g_part), np.isnan(e_part))
                finite = np.isfinite(e_part) & (e_part != 0)
                np.testing.assert_array_equal(g_part[~finite & ~np.isnan(e_part)],
                                              e_part[~finite & ~np.isnan(e_part)])
                assert (np.abs(g_part[finite] - e_part[finite])
                        <= ulps * np.spacing(np.abs(e_part[finite]))).all()
    big = np.array([709.9 + 1.4j, 710.2 + 1.5j, 1e300 + 0j, 1.6777216e7 + 0j, -800 + 1e300j])
    with np.errstate(over="ignore"):
        small = big.astype(np.complex64)
    for values in (big, small):
        _assert_same(*_fused_values(lambda z: (np.exp(z) + z, np.exp2(z) + z), [values]))


def test_power_one_half_is_numpys_sqrt():
    """`x ** 0.5` in a kernel called C's pow: -inf gave inf and -0.0 gave 0.0, where
    NumPy's power takes sqrt (NaN, -0.0); other exponents keep pow's values, and `x ** -1`
    at 0.0 is inf (Numba's raised ZeroDivisionError, and the group kept its NumPy code)."""
    x = np.array([-np.inf, -0.0, 0.0, 4.0, -1.0, np.inf, np.nan, 5e-324])
    for dtype in (np.float64, np.float32):
        _assert_same(*_fused_values(lambda x: (x ** 0.5 * 1.0, x ** -0.5 * 1.0, x ** 1.5 * 1.0,
                                               x ** 2 * 1.0, x ** -1 * 1.0), [x.astype(dtype)]))


def test_signed_zeros_of_maximum_minimum_sign_and_remainder_are_numpys():
    """maximum(-0.0, 0.0), minimum(0.0, -0.0), sign(-0.0), 1.0 % -1.0 and 0.0 % -inf
    had the other sign of zero than NumPy's in a kernel; NaN still wins maximum and
    minimum from either side."""
    x = np.array([-0.0, 0.0, -0.0, 1.0, 0.0, np.nan, 1.0, -np.inf, 3.0])
    y = np.array([0.0, -0.0, 1.0, -1.0, -np.inf, 1.0, np.nan, 2.0, 0.0])
    for dtype in (np.float64, np.float32):
        _assert_same(*_fused_values(lambda x, y: (np.maximum(x, y) * 1.0, np.minimum(x, y) * 1.0,
                                                  np.sign(x) * 1.0, (x % y) * 1.0),
                                    [x.astype(dtype), y.astype(dtype)]))


def test_integer_fmod_and_the_sign_of_unsigned_integers_are_numpys():
    """Numba's fmod of integers is not C's (fmod(-7, 3) gave 0, NumPy's -1: it stays a
    NumPy call), and its sign read unsigned integers as signed (sign(2**32 - 3) gave
    2**32 - 1)."""
    k = np.array([-7, 7, -8, 0, 100], np.int64)
    u = np.array([2**32 - 3, 0, 1, 7, 2**31], np.uint32)
    _assert_same(*_fused_values(lambda k, u: (np.fmod(k, 3) * 2, np.sign(u) * 2), [k, u]))


def test_integer_shifts_reciprocals_and_wide_ldexp_exponents_are_numpys():
    """Numba's shifts by the width or more are undefined (NumPy's: 0, or -1 for a negative
    number shifted right), its reciprocal of an unsigned 0 is 2**n - 1 (NumPy's 0), and it
    truncates an int64 exponent of ldexp (NumPy clamps it): those stay NumPy calls."""
    k = np.array([1, -8, 3, 5, -1], np.int64)
    by = np.array([70, 70, 64, 1, 63], np.int64)
    u = np.array([0, 1, 2, 3, 0], np.uint8)
    x = np.array([1.0, 0.5, -2.0, 3.0, 1e-300])
    e = np.array([2**40, -2**40, 3, 2**33 + 1, -2**35], np.int64)
    _assert_same(*_fused_values(lambda k, by, u, x, e: (
        (k << by) * 2, (k >> by) * 2, np.reciprocal(u) * 2, np.ldexp(x, e) * 2.0,
        x * 3.0), [k, by, u, x, e]))


_FORK_WHILE_IMPORTING = """
import multiprocessing, sys
import numpy as np, pullback
assert "numba" not in sys.modules
jitted = pullback.jit(pullback.grad(lambda x: np.sum(np.tanh(x) ** 2)))
x = np.linspace(-1.0, 1.0, 1000)
for _ in range(3):
    jitted(x)                    # the third call imports Numba in a thread, then builds

def child():
    import numba                 # hung when the fork came during the parent's import
    h = pullback.jit(pullback.grad(lambda x: np.sum(np.sin(x) * x)))
    for _ in range(4):
        assert np.allclose(h(x), np.sin(x) + x * np.cos(x))
    for thread in __import__("threading").enumerate():
        if thread.name.startswith("pullback fuse"):
            thread.join(60)      # the child's own build ends (its locks are its own)
    assert hasattr(next(iter(h.cache.values())).fast, "kernels")

process = multiprocessing.get_context("fork").Process(target=child, daemon=True)
process.start()
process.join(60)
sys.exit(3 if process.is_alive() else process.exitcode)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or not fused._numba_installed(),
                    reason="needs fork and Numba")
def test_a_process_forked_while_the_tier_imports_numba_imports_and_fuses_it(tmp_path):
    """The tier's thread imports Numba at a program's third call; a process forked then
    inherited Numba's module locks held by that thread, and its own `import numba` hung
    (and a fork during a build left the child's builds waiting on the parent's lock for
    good). A fork now waits for the import, and the child's locks are its own."""
    run = subprocess.run([sys.executable, "-c", _FORK_WHILE_IMPORTING], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PULLBACK_CACHE": str(tmp_path),
                              "PULLBACK_FUSED": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
