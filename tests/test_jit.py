"""Staging, jit and show: agreement with eager mode in every nesting, readable output, errors."""
import warnings

import numpy as np
import pytest

import pullback
from pullback import errors, grad, hessian, hvp, jacfwd, jacrev, jit, make_ir, show, vmap
from pullback.ir.jit import RestagingWarning
from pullback.ir.program import typecheck
from pullback.operators import HESSIAN_MODES

from helpers import assert_matches_golden, raises

rng = np.random.default_rng(7)


def rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return np.sum(100.0 * (even - odd ** 2) ** 2 + (1.0 - odd) ** 2)


def mlp(params, data=rng.standard_normal((8, 3)), target=rng.standard_normal(8)):
    w1, w2 = params[:12].reshape(3, 4), params[12:]
    return np.mean((np.tanh(data @ w1) @ w2 - target) ** 2)


def mixed(x):
    return np.sum(np.where(x > 0, np.sin(x), x ** 2) * np.cumsum(x)) + np.linalg.norm(x)


FUNCTIONS = [(rosenbrock, lambda: rng.uniform(-1, 1, 6)), (mlp, lambda: rng.standard_normal(16)),
             (mixed, lambda: rng.uniform(-1, 1, 5))]


def derivatives(f, x, v):
    """Every derivative the library computes, as (name, thunk) pairs."""
    out = [("f", lambda: f(x)), ("grad", lambda: grad(f)(x)),
           ("jacrev", lambda: jacrev(grad(f))(x)), ("jacfwd", lambda: jacfwd(grad(f))(x))]
    out += [(f"hessian {m}", lambda m=m: hessian(f, mode=m)(x)) for m in HESSIAN_MODES]
    out += [(f"hvp {m}", lambda m=m: hvp(f, x, v, m)) for m in HESSIAN_MODES]
    return out


@pytest.mark.parametrize("f, make_x", FUNCTIONS, ids=[f.__name__ for f, _ in FUNCTIONS])
def test_jit_of_every_derivative_equals_eager(f, make_x):
    x, v = make_x(), rng.standard_normal(make_x().shape)
    jitted = {
        "f": jit(f), "grad": jit(grad(f)), "jacrev": jit(jacrev(grad(f))),
        "jacfwd": jit(jacfwd(grad(f))),
        **{f"hessian {m}": jit(hessian(f, mode=m)) for m in HESSIAN_MODES},
        **{f"hvp {m}": jit(lambda x, v, m=m: hvp(f, x, v, m)) for m in HESSIAN_MODES}}
    for name, eager in derivatives(f, x, v):
        expected = eager()
        args = (x, v) if name.startswith("hvp") else (x,)
        for _ in range(2):                      # the second call runs from the cache
            got = jitted[name](*args)
            np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("f, make_x", FUNCTIONS, ids=[f.__name__ for f, _ in FUNCTIONS])
def test_jit_at_every_nesting_position(f, make_x):
    x, v = make_x(), rng.standard_normal(make_x().shape)
    expected_hessian = hessian(f)(x)
    nestings = {
        "jit(jacfwd(grad))": jit(jacfwd(grad(f))),
        "jacfwd(jit(grad))": jacfwd(jit(grad(f))),
        "jacfwd(grad(jit))": jacfwd(grad(jit(f))),
        "jit(jacfwd(jit(grad(jit))))": jit(jacfwd(jit(grad(jit(f))))),
        "jacrev(jit(grad))": jacrev(jit(grad(f))),
        "jit(jit(hessian))": jit(jit(hessian(f))),
    }
    for name, fn in nestings.items():
        np.testing.assert_allclose(fn(x), expected_hessian, rtol=1e-10, atol=1e-10, err_msg=name)
    expected_hvp = hvp(f, x, v)
    for name, value in {
        "pushforward(jit(grad))": pullback.pushforward(jit(grad(f)), (x,), (v,))[1],
        "jit(pushforward(grad))": jit(lambda x, v: pullback.pushforward(grad(f), (x,), (v,))[1])(x, v),
        "pullback(jit(grad))": pullback.pullback(jit(grad(f)), x)[1](v)[0],
    }.items():
        np.testing.assert_allclose(value, expected_hvp, rtol=1e-10, atol=1e-10, err_msg=name)
    xs = np.stack([x, x * 0.5])
    per_example = np.stack([grad(f)(x), grad(f)(x * 0.5)])
    for name, fn in {"vmap(jit(grad))": vmap(jit(grad(f))), "jit(vmap(grad))": jit(vmap(grad(f))),
                     "vmap(grad(jit))": vmap(grad(jit(f)))}.items():
        np.testing.assert_allclose(fn(xs), per_example, rtol=1e-11, atol=1e-11, err_msg=name)


def test_jitted_programs_typecheck_and_shrink():
    x = rng.uniform(-1, 1, 6)
    for f, args in ((grad(rosenbrock), (x,)), (hessian(rosenbrock), (x,)),
                    (vmap(grad(rosenbrock)), (np.stack([x, x]),))):
        raw, optimized = make_ir(f)(*args), make_ir(f, optimized=True)(*args)
        typecheck(raw)
        typecheck(optimized)
        assert len(optimized.equations) < len(raw.equations)      # AD leaves dead code


def test_signature_cache_and_new_shapes():
    f = jit(lambda x: np.sum(x ** 2))
    f(np.ones(3))
    f(np.zeros(3))
    assert len(f.cache) == 1
    assert f(np.ones(4)) == 4.0 and len(f.cache) == 2                  # a new shape stages again
    assert f(np.ones(3, np.float32)).dtype == np.float32 and len(f.cache) == 3


def test_python_scalars_keep_numpy_promotion_rules():
    f = jit(lambda x, s: x * s)
    out = f(np.ones(2, np.float32), 2.5)
    assert out.dtype == np.float32                # a Python float is weakly typed, as in NumPy
    assert f(np.ones(2, np.float32), np.float64(2.5)).dtype == np.float64


def test_static_arguments():
    def power_sum(x, n, *, mode):
        return np.sum(x ** n) if mode == "sum" else np.prod(x ** n)
    f = jit(power_sum, static_argnums=1, static_argnames="mode")
    x = np.array([1.0, 2.0])
    assert f(x, 2, mode="sum") == 5.0 and f(x, 3, mode="prod") == 8.0
    assert len(f.cache) == 2
    np.testing.assert_allclose(grad(f)(x, 2, mode="sum"), 2 * x)


def test_unhashable_static_argument_is_a_clear_error():
    f = jit(lambda x, shape: x.reshape(shape), static_argnums=1)
    with pytest.raises(errors.StaticArgumentError, match="hashable"):
        f(np.ones(4), [2, 2])
    assert f(np.ones(4), (2, 2)).shape == (2, 2)


def test_restaging_every_call_warns():
    f = jit(lambda x: x * 2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 12):
            f(np.ones(n))
    assert any(issubclass(w.category, RestagingWarning) for w in caught)


@pytest.mark.parametrize("body, fragment", [
    (lambda x: 1.0 if x[0] > 0 else 2.0, "bool()"),
    (lambda x: float(x[0]), "float()"),
    (lambda x: int(x[0]), "int()"),
    (lambda x: [1.0, 2.0][x[0].astype(int)], "index"),
])
def test_control_flow_on_staged_values_names_the_line(body, fragment):
    with pytest.raises(errors.ConcretizationError) as info:
        jit(body)(np.array([1.0, 2.0]))
    message = str(info.value)
    assert fragment in message and "test_jit.py:" in message
    assert "np.where" in message and "static_argnums" in message


def test_closure_over_an_outer_tracer_runs_eagerly():
    # jit inside grad, closing over grad's tracer: the result must still be right.
    g = grad(lambda x: jit(lambda y: x * y)(3.0))(2.0)
    assert g == 3.0


# ------------------------------------------------------------------------ show

def square_sum(x):
    return np.sum(x * x)


def sin_cube(x, y):
    return np.sin(x) * y ** 3


@pytest.mark.parametrize("name, fn, args", [
    ("square_sum_grad", grad(square_sum), (np.ones(3),)),
    ("sin_cube_grad", grad(sin_cube, argnums=(0, 1)), (0.5, 2.0)),
])
def test_show_golden(name, fn, args, capsys):
    text = show(fn, *args)
    assert capsys.readouterr().out.strip() == text.strip()
    assert_matches_golden(name, text)


def test_show_names_tangents_and_cotangents():
    text = show(lambda x, v: pullback.pushforward(grad(square_sum), (x,), (v,))[1],
                np.ones(2), np.ones(2))
    assert "return x_bar_dot" in text                       # the tangent of the cotangent
    text = show(grad(square_sum), np.ones(2))
    assert "return grad_x" in text and "derivative of test_jit.py" in text


# ------------------------------------------------------------- call overhead

def test_calls_with_plain_arrays_skip_flattening(monkeypatch):
    import importlib
    f = jit(lambda x, y: x * y + 1.0)
    a, b = np.ones(3), np.arange(3.0)
    first = f(a, b)
    assert f(a, 2.0).shape == (3,) and len(f.cache) == 2

    def no_flattening(tree):
        raise AssertionError("flattened")
    monkeypatch.setattr(importlib.import_module("pullback.ir.jit"), "flatten", no_flattening)
    np.testing.assert_array_equal(f(a, b), first)        # straight to the cached entry
    np.testing.assert_array_equal(f(np.zeros(3), b), np.ones(3))
    for call in (lambda: f(a, 2.0), lambda: f(a, y=b), lambda: f(a.astype(np.float32), b)):
        with pytest.raises(AssertionError, match="flattened"):
            call()                                       # scalars, keywords, new types
    monkeypatch.undo()
    assert f(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32
    assert len(f.cache) == 3


def test_a_one_array_call_repeating_the_last_finds_its_entry_without_the_key():
    """A call of one plain ndarray of the last call's shape and dtype reuses that call's
    entry; any other shape or dtype (an equal dtype that is another object included)
    looks its entry up, or stages: alternating calls give each signature's values."""
    f = jit(lambda x: x * 2 + x.shape[0])
    inputs = [np.arange(3.0), np.arange(3.0, dtype=np.float32), np.arange(4.0),
              np.frombuffer(np.arange(3.0).tobytes(), dtype=np.dtype("<f8")).copy(),
              np.arange(3, dtype=np.int64), np.arange(3.0)[None], np.arange(3.0)]
    for x in inputs * 2:
        got = f(x)
        expected = x * 2 + x.shape[0]
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert len(f.cache) == 5


# ------------------------------------------------------------------- aliasing

@pullback.custom_vjp
def transpose_view(x):
    return x.T                 # a view of its input, as a custom rule's body may return


transpose_view.defvjp(lambda x: (transpose_view(x), None), lambda _, ct: (ct.T,))


@pytest.mark.parametrize("view", [
    lambda a: np.einsum("ij->ji", a), lambda a: np.einsum("ii->i", a)[:, None],
    lambda a: np.einsum("ij", a), transpose_view],
    ids=["einsum transpose", "einsum diagonal", "einsum implicit", "custom_vjp view"])
def test_item2_jit_never_writes_into_a_viewed_buffer(view):
    def f(x):
        a = np.exp(x)
        b = view(a)            # may be a view of a's buffer
        c = np.sin(a)          # a is not read afterwards: its buffer could be reused
        return b + c.T

    def loss(x):
        return np.sum(f(x) ** 2)
    x = rng.standard_normal((3, 3))
    np.testing.assert_allclose(jit(f)(x), f(x), rtol=1e-14)
    np.testing.assert_allclose(jit(grad(loss))(x), grad(loss)(x), rtol=1e-12)


WEIGHTS = rng.standard_normal((3, 3))


@pytest.mark.parametrize("f", [
    lambda x: (x * 2, x * 2),
    lambda x: (x * 2, (x * 2).reshape(-1)),
    lambda x: (np.exp(x), np.exp(x).T, np.exp(x)[1:], np.exp(x)[0]),
    lambda x: [x, x.T, x[:, 0], x.reshape(9), x],
    lambda x: {"a": np.sin(x), "b": np.einsum("ij->ji", np.sin(x)), "c": np.sin(x)[None]},
    lambda x: (WEIGHTS, WEIGHTS.T, x * 0 + WEIGHTS),
    lambda x: (np.broadcast_to(np.sum(x), (2, 2)), np.sum(x).reshape(1)),
    lambda x: (pullback.stop_gradient(x), np.transpose(pullback.stop_gradient(x * 2)), x * 2),
    lambda x: pullback.value_and_grad(lambda y: np.sum(y * WEIGHTS))(x) + (WEIGHTS,),
], ids=["duplicates", "reshape", "views of an output", "views of the input", "einsum view",
        "constants", "broadcasts", "stop_gradient", "value_and_grad"])
def test_item6_jit_returns_independent_arrays(f):
    x = rng.standard_normal((3, 3))
    expected = pullback.tree.flatten(f(x))[0]
    jitted = jit(f)
    for _ in range(2):                   # the second call runs from the cache
        outs = pullback.tree.flatten(jitted(x))[0]
        for k, out in enumerate(outs):
            np.testing.assert_allclose(out, expected[k], rtol=1e-14)
            assert not np.shares_memory(out, x), k
            assert not any(np.shares_memory(out, c) for c in (WEIGHTS,)), k
            assert not any(np.shares_memory(out, other) for other in outs[:k]), k
        for out in outs:                 # the caller owns them: writing changes nothing else
            if isinstance(out, np.ndarray) and out.flags.writeable:
                out[...] = 0.0


# ---------------------------------------------------------- non-finite values

NON_FINITE = {"inf": (np.inf, "np.inf"), "-inf": (-np.inf, "(-np.inf)"), "nan": (np.nan, "np.nan")}
NON_FINITE_USES = {     # value v in a literal operand, or in a parameter (pad's constant)
    "literal where": lambda x, v: np.where(x > 0, x, v),
    "literal clip": lambda x, v: np.clip(x, -1.0, v),
    "literal fmax": lambda x, v: np.fmax(x, v) * 2.0,
    "literal max initial": lambda x, v: np.max(x, initial=v),
    "literal power": lambda x, v: np.abs(x) ** v,
    "literal numpy scalar": lambda x, v: x * np.float64(v),
    "parameter pad": lambda x, v: np.pad(x, 1, constant_values=v) + 1.0,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", sorted(NON_FINITE))
@pytest.mark.parametrize("use", sorted(NON_FINITE_USES))
def test_item12_non_finite_values_in_generated_code(use, value, dtype):
    import io
    v, text = NON_FINITE[value]
    x = np.array([0.5, -2.0, 0.0, 3.0], dtype)

    def f(x):
        return NON_FINITE_USES[use](x, v)
    with np.errstate(all="ignore"):
        expected, got = f(x), jit(f)(x)
        traced = pullback.pushforward(jit(f), (x,), (x,))[0]        # the traceable variant
    for result in (got, traced):
        assert np.asarray(result).dtype == np.asarray(expected).dtype
        np.testing.assert_array_equal(result, expected)                    # NaN-aware
    shown = show(f, x, file=io.StringIO())       # the printed source, as generated
    assert text in shown and "_param" not in shown


def test_item12_logsumexp_of_a_masked_array_under_jit():
    import pullback.numpy as pnp
    x, mask = rng.standard_normal(5), np.array([True, False, True, True, False])
    f = lambda x: pnp.logsumexp(np.where(mask, x, -np.inf))          # noqa: E731
    np.testing.assert_allclose(jit(f)(x), f(x), rtol=1e-14)
    np.testing.assert_allclose(jit(grad(f))(x), grad(f)(x), rtol=1e-14)


# ---------------------------------------------------------- arguments of jit


BIG_INT_OPS = {"add": lambda x, n: x + n, "rsub": lambda x, n: n - x, "mul": lambda x, n: 3 * (x * n),
               "div": lambda x, n: x / n, "power": lambda x, n: np.abs(x) ** n,
               "less": lambda x, n: x < n, "where": lambda x, n: np.where(x > 0, x, n),
               "sum": lambda x, n: np.sum(x * n), "int only": lambda x, n: n * 2 - 1}


def _outcome(thunk):
    """(value, dtype) of a result, or the type of the exception it raised."""
    try:
        with np.errstate(all="ignore"):
            out = thunk()
    except Exception as e:                  # noqa: BLE001 -- compared with eager's
        assert not isinstance(e, (AttributeError, errors.PullbackError)), e
        return type(e)
    return repr(out), np.asarray(out).dtype


@pytest.mark.parametrize("n", [2**70, -(2**70), 2**63, 2**64 - 1], ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.uint64])
@pytest.mark.parametrize("op", sorted(BIG_INT_OPS))
def test_item20a_python_ints_beyond_int64_behave_as_in_eager_numpy(op, dtype, n):
    f, x = BIG_INT_OPS[op], np.array([1, 2, 3], dtype)
    expected = _outcome(lambda: f(x, n))
    assert _outcome(lambda: jit(f)(x, n)) == expected                      # an argument
    assert _outcome(lambda: jit(lambda x: f(x, n))(x)) == expected         # a constant


def test_item20a_scalar_arguments_are_typed_as_numpy_types_them():
    # Python scalars are weak (NumPy 2), NumPy scalars -- np.float64, a float subclass, too --
    # are not: the staged types, hence the program's casts, are those of eager mode.
    x = np.ones(2, np.float32)
    scalars = (2.5, np.float64(2.5), np.float32(2.5), 2, True, np.int64(2))
    cases = [(lambda x, s: (x * s).astype(np.float32), s) for s in scalars] + [
        (lambda x, s: x * s, s) for s in scalars + (1j, np.complex128(1j))]
    for f, s in cases:
        expected, got = f(x, s), jit(f)(x, s)
        assert got.dtype == expected.dtype, (s, got.dtype, expected.dtype)
        np.testing.assert_array_equal(got, expected)


def _reshaped(x, shape):
    return x.reshape(shape)


@pytest.mark.parametrize("how", [dict(static_argnums=1), dict(static_argnums=-1),
                                 dict(static_argnames="shape"), dict(static_argnames=("shape",))],
                         ids=["argnums", "negative argnums", "argnames", "argnames tuple"])
def test_item20b_static_arguments_by_position_or_by_keyword(how):
    f, x = jit(_reshaped, **how), np.arange(6.0)
    assert f(x, (2, 3)).shape == (2, 3)                # positionally
    assert f(x, shape=(3, 2)).shape == (3, 2)          # by keyword
    assert f(x=x, shape=(6, 1)).shape == (6, 1)
    np.testing.assert_array_equal(grad(lambda x: np.sum(f(x, shape=(2, 3)) ** 2))(x), 2 * x)


def test_item20c_static_arguments_that_name_no_parameter_are_refused():
    with raises(errors.StaticArgumentError, "static_argnums=3", "no argument 3", "(x, shape)"):
        jit(_reshaped, static_argnums=3)
    with raises(errors.StaticArgumentError, "no argument -3"):
        jit(_reshaped, static_argnums=(0, -3))
    with raises(errors.StaticArgumentError, "no parameter 'shp'", "(x, shape)"):
        jit(_reshaped, static_argnames="shp")
    with raises(errors.StaticArgumentError, "ints", "strings"):
        jit(_reshaped, static_argnums="shape")
    with raises(errors.StaticArgumentError, "argument 3", "2 positional"):
        jit(max, static_argnums=3)(np.ones(2), np.zeros(2))    # no signature: at the call
    assert jit(lambda *a: a[0] * len(a[1]), static_argnums=1)(np.ones(2), "ab")[0] == 2.0


class Config:
    scale = 2.0


class Model:
    def __init__(self):
        self.w = np.arange(3.0)

    def loss(self, x):
        return np.sum(self.w * x)


@pytest.mark.parametrize("call, fragments", [
    (lambda: jit(lambda x, cfg: x * cfg.scale)(np.ones(2), Config()),
     ["argument 1 (cfg) is a Config", "static_argnums=(1,)", 'static_argnames=("cfg",)',
      "hashable", "stages again"]),
    (lambda: jit(lambda x, cfg: x * cfg.scale)(np.ones(2), cfg=Config()),
     ["keyword argument 'cfg' is a Config", 'static_argnames=("cfg",)']),
    (lambda: jit(Model.loss)(Model(), np.ones(3)),
     ["argument 0 (self) is a Model", "static_argnums=(0,)"]),
    (lambda: jit(lambda p: p["w"] * 2.0)({"w": np.ones(2), "name": "layer"}),
     ["argument 0 (p), at ['name'], is a str"]),
    (lambda: jit(lambda x, labels: x)(np.ones(2), np.array(["a", "b"])),
     ["argument 1 (labels) is an array of dtype <U1"]),
    (lambda: make_ir(lambda x, cfg: x * cfg.scale)(np.ones(2), Config()),
     ["make_ir/show: argument 1 (cfg) is a Config", "make_ir(lambda x: f(x, cfg))"]),
], ids=["positional", "keyword", "method", "pytree leaf", "string array", "make_ir"])
def test_item15_non_array_arguments_must_be_static(call, fragments):
    with raises(errors.StaticArgumentError, *fragments):
        call()


def test_item15_the_suggested_fix_works():
    x = np.ones(3)
    assert np.all(jit(lambda x, cfg: x * cfg.scale, static_argnums=1)(x, Config()) == 2.0)
    assert jit(Model.loss, static_argnames="self")(Model(), x) == 3.0
    assert np.all(jit(lambda x, nothing: x)(x, None) == x)      # None: an empty pytree


# ----------------------------------------------------------------- randomness

GLOBAL_RNG = np.random.default_rng(0)


def dropout_loss(x):
    mask = np.random.rand(*x.shape) > 0.5              # draws from NumPy's global state
    return np.sum((x * mask) ** 2)


def noisy_loss(x):
    return np.sum((x + GLOBAL_RNG.normal(size=x.shape)) ** 2)


def closure_loss(rng):
    def loss(x):
        return np.sum(x * rng.random(x.shape))
    return loss


class NoisyModel:
    def __init__(self):
        self.rng = np.random.RandomState(1)

    def loss(self, x):
        return np.sum(x * self.rng.randn(*x.shape))


def python_random_loss(x):
    import random
    return np.sum(x * random.uniform(0.5, 1.5))


def _helper_draw(x):
    return x * np.random.standard_normal()


@pytest.mark.parametrize("call, fragments", [
    (lambda x: jit(grad(dropout_loss))(x),
     ["NumPy's global random state", "mask = np.random.rand(*x.shape) > 0.5"]),
    (lambda x: jit(noisy_loss)(x), ["`GLOBAL_RNG` (a numpy.Generator)", "GLOBAL_RNG.normal("]),
    (lambda x: jit(closure_loss(np.random.default_rng(2)))(x),
     ["`rng` (a numpy.Generator)", "rng.random(x.shape)"]),
    (lambda x: jit(NoisyModel.loss, static_argnums=0)(NoisyModel(), x),
     ["`rng` (a numpy.RandomState)", "self.rng.randn("]),
    (lambda x: make_ir(python_random_loss)(x),
     ["Python's random module", "random.uniform(0.5, 1.5)"]),
    (lambda x: show(lambda x: np.sum(_helper_draw(x)), x),
     ["NumPy's global random state", "np.random.standard_normal()"]),
], ids=["np.random.rand", "global generator", "closure generator", "static model",
        "python random", "helper under show"])
def test_item9_random_draws_while_staging_are_refused(call, fragments):
    with raises(errors.StagedRandomnessError, *fragments, "test_jit.py:", "the same ones on "
                "every call", "pass them as an argument", "without jit"):
        call(np.ones(3))


def test_item9_staging_that_draws_nothing_is_unaffected():
    x = np.ones(3)
    lazy = {}

    def draw_once(x):               # draws on its first call only: eager mode freezes it too
        if "mask" not in lazy:
            lazy["mask"] = np.random.rand(3)
        return x * lazy["mask"]
    np.testing.assert_array_equal(jit(draw_once)(x), lazy["mask"])
    seeded = jit(lambda x: x * np.random.default_rng(0).random())     # same numbers each call
    np.testing.assert_array_equal(seeded(x), x * np.random.default_rng(0).random())
    masks = [np.random.rand(3) > 0.5 for _ in range(3)]               # drawn outside: fine
    f = jit(grad(lambda x, mask: np.sum((x * mask) ** 2)))
    for mask in masks:
        np.testing.assert_array_equal(f(x, mask), 2 * x * mask)


def test_item9_under_a_debugger_the_error_names_the_function():
    import sys
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: None)       # a tracer the check leaves alone
    try:
        with raises(errors.StagedRandomnessError, "NumPy's global random state",
                    "in the function staged", "test_jit.py:"):
            jit(dropout_loss)(np.ones(3))
        assert sys.gettrace() is not None
    finally:
        sys.settrace(previous)


def test_einsum_with_a_size_zero_axis_under_tracing():
    # Found by the fuzz: a size-0 axis was "broadcast" to 1 while tracing einsum.
    for spec, shapes in (("...->...", [(2, 0)]), ("ij,j->i", [(2, 1), (0,)]),
                         ("ij,jk->ik", [(2, 0), (0, 3)])):
        operands = [np.ones(s) for s in shapes]

        def f(*ops):
            return np.einsum(spec, *ops)
        np.testing.assert_array_equal(jit(f)(*operands), f(*operands))
        assert make_ir(f)(*operands).outvars[0].aval.shape == f(*operands).shape


@pytest.mark.parametrize("f, s", [
    (lambda x, lr: (x * (lr * 0.5)).astype(np.float64), 0.1),
    (lambda x, s: np.clip(x, -abs(s), abs(s) + 0.1), 2),
    (lambda x, s: x * (s // 2) - s % 3 + (s > 1), 7),
    (lambda x, s: x ** (s / 2), 3),
    (lambda x, s: x * -s * (s != 0.0), 2.5),
    (lambda x, s: (x * s).astype(np.float64), 2.5),
    (lambda x, s: x * np.abs(s), 2),                 # a NumPy function: strongly typed result
], ids=["float", "abs int", "int operators", "division", "negation", "argument", "np.abs"])
def test_python_arithmetic_on_python_scalar_arguments_stays_weakly_typed(f, s):
    # Found by the fuzz: `abs(s) + 0.1` of a Python-number argument was staged as a NumPy
    # scalar, so float32 results became float64 (or the reverse, after a dropped cast).
    x = np.array([0.5, 1.5, 2.5], np.float32)
    expected = f(x, s)
    for jitted in (jit(f), jit(jit(f))):
        got = jitted(x, s)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    loss = lambda x, s: np.sum(f(x, s))                      # noqa: E731
    np.testing.assert_allclose(jit(grad(loss))(x, s), grad(loss)(x, s), rtol=1e-6)
    assert jit(grad(loss))(x, s).dtype == np.float32


@pytest.mark.parametrize("transform", ["f", "grad", "hessian"])
def test_a_write_into_a_closure_array_after_staging_is_seen_by_none_of_the_program(transform):
    """jit folded exp(W) once but read W itself when called: after `W *= 2` the gradient
    mixed the old exp(W) with the new W, neither the old answer nor the new one."""
    rng = np.random.default_rng(0)
    W, x = rng.standard_normal((3, 3)), rng.standard_normal(3)

    def f(x):
        return np.sum(np.tanh(np.exp(W) @ x) * (W @ x))
    g = {"f": f, "grad": grad(f), "hessian": hessian(f)}[transform]
    jitted = jit(g)
    before = [jitted(x) for _ in range(3)][-1]
    np.testing.assert_allclose(before, g(x), rtol=1e-12)
    W *= 2.0
    np.testing.assert_array_equal(jitted(x), before)     # the snapshot, every part of it
    assert not np.allclose(g(x), before)                 # eagerly, the new W


def test_item12_jit_snapshot_keeps_a_transposed_constant_a_view_of_one_copy(monkeypatch):
    """The gradient of `X @ w` reads X and X.T as constants: the snapshot copied X.T into
    a C-ordered array of its own, so the program streamed twice X's memory through its two
    matrix-vector products (the logistic gradient 10-15 µs slower than hand NumPy, with
    OpenBLAS's SkylakeX kernels). Whether a C-ordered copy pays is measured by a pass
    (`passes.contiguous_transposes`, tests/test_passes.py), here told it does not."""
    monkeypatch.setattr(pullback.ir.passes, "transposed_copy_pays", lambda *args: False)
    rng = np.random.default_rng(2)
    X, y, w = rng.standard_normal((50, 8)), rng.standard_normal(50), rng.standard_normal(8)

    def f(w):
        return np.sum(np.log1p(np.exp(X @ w)) - y * (X @ w))
    jitted = jit(grad(f))
    before = jitted(w)
    np.testing.assert_allclose(before, grad(f)(w), rtol=1e-12)
    matrices = [c for c in next(iter(jitted.cache.values())).program.consts
                if isinstance(c, np.ndarray) and c.ndim == 2]
    assert sorted(c.shape for c in matrices) == [(8, 50), (50, 8)]
    X_copy, XT_copy = sorted(matrices, key=lambda c: c.shape, reverse=True)
    assert np.shares_memory(X_copy, XT_copy) and XT_copy.flags.f_contiguous
    assert not np.shares_memory(X_copy, X)
    X *= 2.0
    np.testing.assert_array_equal(jitted(w), before)


def test_item12_snapshot_copies_every_view_with_its_layout():
    """Views of one array spanned by a constant are rebuilt on one copy with their own
    offsets and strides (reversed, strided, reinterpreted, empty); a view of part of an
    array is copied alone; arrays over read-only memory (bytes) and other values are kept
    as they are, a read-only array owning its memory is copied (its owner may set it
    writeable again)."""
    from pullback.ir.jit import _snapshot
    for X in (np.arange(24.0).reshape(4, 6), np.asfortranarray(np.arange(24.0).reshape(4, 6))):
        part_of = np.arange(5.0)
        views = [X, X.T, X[::-1], X[:, ::-2], X[1], X.T[2:], X.ravel(order="K")[::-1],
                 X.view(np.int64), X[0:0], part_of[::2]]
        frozen = np.frombuffer(bytes(24), np.float64)
        read_only = np.ones(3)
        read_only.flags.writeable = False

        class Staged:
            consts = views + [read_only, frozen, 3.0]
        copies = _snapshot(Staged()).consts
        for view, copy in zip(views, copies):
            assert copy.shape == view.shape and copy.dtype == view.dtype
            np.testing.assert_array_equal(copy, view)
            assert not np.shares_memory(copy, X) and not np.shares_memory(copy, part_of)
        assert all(c.strides == v.strides and np.shares_memory(c, copies[0])
                   for v, c in zip(views[1:8], copies[1:8]))
        assert copies[-2] is frozen and copies[-1] == 3.0
        assert copies[-3] is not read_only and not np.shares_memory(copies[-3], read_only)


def test_a_read_only_view_of_a_writeable_array_is_copied_too():
    """The snapshot kept read-only arrays as they were, also read-only views of a writeable
    array (`np.broadcast_to(w, shape)`): after a write into w the program mixed the old
    exp(W), folded once, with the new W read when called (neither answer). A view reading
    at least the array's bytes (a broadcast) is rebuilt on a copy of the array, strides
    and all; a read-only view of part of it copied alone."""
    from pullback.ir.jit import _snapshot
    w, whole = np.array([1.0, 2.0]), np.arange(1.0, 7.0)
    part = whole[1:3]
    part.flags.writeable = False
    views, owners = [np.broadcast_to(w, (3, 2)), part], [w, whole]

    class Staged:
        consts = views
    copies = _snapshot(Staged()).consts
    for view, copy in zip(views, copies):
        np.testing.assert_array_equal(copy, view)
        assert not np.shares_memory(copy, view)
    assert copies[0].strides == (0, 8) and not copies[0].flags.writeable
    for W, owner in zip(views, owners):
        def f(x):
            return np.sum(x * W) + np.sum(x * np.exp(W))
        x = np.ones(W.shape)
        for g in (f, grad(f)):
            jitted = jit(g)
            before = jitted(x)
            np.testing.assert_allclose(before, g(x), rtol=1e-12)
            owner *= 3.0
            np.testing.assert_array_equal(jitted(x), before)
            assert not np.allclose(g(x), before)


def test_a_long_program_interpreted_on_its_first_call_reads_the_snapshot_too():
    from pullback.ir.jit import INTERPRETED_FIRST_CALL
    rng = np.random.default_rng(1)
    W, x = rng.standard_normal(4), rng.standard_normal(4)

    def f(x):
        for _ in range(400):
            x = np.sin(x) * np.exp(W)
        return np.sum(x)
    assert len(make_ir(grad(f), optimized=False)(x).equations) >= INTERPRETED_FIRST_CALL
    jitted = jit(grad(f))
    first = jitted(x)                    # staged and interpreted
    np.testing.assert_allclose(first, grad(f)(x), rtol=1e-10)
    W += 1.0
    np.testing.assert_array_equal(jitted(x), first)      # optimised and compiled: the snapshot
    assert not np.allclose(grad(f)(x), first)


# ------------------------------------------------------------------ scratch buffers (issue 12)

def _entry(jitted):
    """The generated function of a jitted function's only cache entry, and its pools."""
    fast = next(iter(jitted.cache.values())).fast
    pools = [value for name, value in fast.__globals__.items() if name.startswith("scratch")]
    return fast, [buffer for pool in pools for list_ in pool for buffer in list_]


def test_item12_large_intermediates_reuse_their_buffers_from_call_to_call():
    """The MLP's HVP allocated and freed its 256 x 256 intermediates at every call, and
    glibc handed the memory back to the system each time: ~530 page faults per call, a
    third of its time. Products, ufuncs and their in-place successors now write into
    buffers kept from the last call; results stay equal to eager mode's, and no result
    shares memory with a kept buffer."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((200, 100))

    def f(x):
        h = np.tanh(W @ x)                        # 200 x 100: 160 KB
        return np.sum(h * h @ x.T)
    jitted = jit(grad(f))
    xs = [rng.standard_normal((100, 100)) for _ in range(3)]
    results = [jitted(x) for x in xs]
    fast, kept = _entry(jitted)
    assert ".pop()" in fast.source and kept
    again = [jitted(x) for x in xs]
    assert [id(b) for b in _entry(jitted)[1]] == [id(b) for b in kept]     # the same buffers
    for x, first, second in zip(xs, results, again):
        expected = grad(f)(x)
        np.testing.assert_allclose(first, expected, rtol=1e-12)
        np.testing.assert_array_equal(second, first)
        assert not any(np.shares_memory(first, b) for b in kept)


def test_item12_a_kept_buffer_never_reaches_a_result_even_through_a_view():
    """A product whose transpose (a view) is returned, or viewed by a value returned
    through a reshape, is not written into a kept buffer (the next call would overwrite
    the caller's result); one viewed only inside the program is, and goes back to its
    pool after the last view is released."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((200, 100))

    def escapes(x):
        y = W @ x
        return y.T, (np.sin(y) * 2.0).reshape(-1)

    def viewed_inside(x):
        y = W @ x
        return np.sum(y.T @ W), (y.T[:3] * 3.0)
    for f, kept_any in ((escapes, False), (viewed_inside, True)):
        jitted = jit(f)
        x1, x2 = rng.standard_normal((100, 100)), rng.standard_normal((100, 100))
        first = jitted(x1)
        snapshot = [np.copy(a) for a in first]
        jitted(x2)
        jitted(x2)
        for got, value, expected in zip(first, snapshot, f(x1)):
            np.testing.assert_array_equal(got, value)        # not overwritten by later calls
            np.testing.assert_allclose(got, expected, rtol=1e-12)
        fast, kept = _entry(jitted)
        assert bool(kept) == kept_any
        outs = jitted(x1)
        assert not any(np.shares_memory(o, b) for o in outs for b in kept)


def test_item12_small_intermediates_and_results_are_not_kept():
    """Below SCRATCH_BYTES (malloc reuses small blocks without faults) and for results, the
    generated code allocates as before."""
    rng = np.random.default_rng(9)
    W = rng.standard_normal((20, 10))
    jitted = jit(grad(lambda x: np.sum(np.tanh(W @ x))))
    jitted(rng.standard_normal(10))
    fast, kept = _entry(jitted)
    assert ".pop()" not in fast.source and not kept
    big = jit(lambda x: np.tanh(x @ x) * 2.0)                 # every large value a result
    big(rng.standard_normal((100, 100)))
    fast, kept = _entry(big)
    assert ".pop()" not in fast.source


def test_item12_code_compiled_for_one_run_keeps_no_buffers():
    """Only jit's functions (called again and again) keep buffers: a loop's body compiled
    for one eager run of a checkpointed step (one per step) would hold its intermediates
    after the step (test_loops' memory bound of a Python loop over checkpointed steps)."""
    from pullback.ir.codegen import compile_program
    from pullback.ir.staging import stage
    W = np.random.default_rng(12).standard_normal((200, 100))
    program = pullback.ir.passes.optimize(stage(lambda x: np.sum(np.tanh(W @ x) @ x.T),
                                                (np.ones((100, 100)),)))
    assert ".pop()" in compile_program(program, keeps=True).source
    assert ".pop()" not in compile_program(program).source


def test_item12_calls_in_several_threads_take_their_own_buffers():
    import threading
    rng = np.random.default_rng(10)
    W = rng.standard_normal((200, 100))

    def f(x):
        return np.sum(np.tanh(W @ x) @ x.T)
    jitted = jit(grad(f))
    xs = [rng.standard_normal((100, 100)) for _ in range(4)]
    expected = [grad(f)(x) for x in xs]
    jitted(xs[0])
    errors_seen = []

    def work(k):
        for _ in range(30):
            if not np.allclose(jitted(xs[k]), expected[k], rtol=1e-12, atol=0):
                errors_seen.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors_seen


def test_item12_jit_copies_constants_to_start_on_a_cache_line():
    """A large array from malloc starts 16 bytes past a page boundary; OpenBLAS's
    matrix-vector products over the logistic problem's 1000 x 100 constant ran 18 µs
    there and 14 µs on a cache line."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((1000, 100))
    parts = rng.standard_normal(300)[::3]
    jitted = jit(grad(lambda w: np.sum(np.log1p(np.exp(X @ w))) + np.sum(parts * w)))
    jitted(rng.standard_normal(100))
    consts = [c for c in next(iter(jitted.cache.values())).program.consts
              if isinstance(c, np.ndarray) and c.size > 1]
    assert consts and all(c.ctypes.data % 64 == 0 for c in consts)


def test_a_jvp_along_ones_stages_no_array_of_the_broadcast_shape():
    """A jvp along `ones_like(c)` of a cost broadcasting c against data (GradBench's
    k-means Newton step) carries a concrete tangent broadcast to (points, centroids, d);
    its products by numbers (`power`'s 2) and negations are computed on the tangent's
    distinct elements (`arrays.on_distinct`), so the program holds no writable constant of
    that shape (it held two copies of 61 MB at k-means' size) and the values are eager
    mode's."""
    rng = np.random.default_rng(5)
    points, centroids = rng.standard_normal((300, 4)), rng.standard_normal((20, 4))

    def cost(c):
        return np.sum(np.min(np.sum((points[:, None, :] - c[None, :, :]) ** 2, axis=2), axis=1))

    def negated(c):
        return np.sum(np.exp(-(points[:, None, :] - c[None, :, :])) * 3.0)

    for f in (cost, negated):
        def step(c):
            g, h = pullback.pushforward(grad(f), (c,), (np.ones_like(c),))
            return g / h
        program = make_ir(step)(centroids)
        assert not [c.shape for c in program.consts
                    if isinstance(c, np.ndarray) and c.flags.writeable and c.size > points.size]
        np.testing.assert_array_equal(jit(step)(centroids), step(centroids))
    t = np.broadcast_to(np.arange(3, dtype=np.float32) / 7, (5, 1, 3))
    for number in (0.1, np.float64(3.0), 2):
        product = pullback.core.arrays.on_distinct(np.multiply, t, number)
        assert product.strides[:2] == (0, 0) and product.dtype == (t * number).dtype
        np.testing.assert_array_equal(product, t * number)
    _, tangent = pullback.pushforward(lambda x: np.ldexp(x, 3), (np.ones((4, 3)),),
                                      (np.broadcast_to(np.arange(3.0), (4, 3)),))
    assert tangent.flags.writeable                # handed back as an array of its own
