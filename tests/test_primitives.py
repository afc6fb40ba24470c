"""Table-driven checks over the primitive registry.

Every primitive has a row in CASES: a Hypothesis strategy drawing its arguments
(shapes including 0-d, broadcasting and size-1 axes; values inside its domain)
and its static parameters. For each primitive and dtype: the shape rule agrees
with the implementation, and derivatives pass `check_grads` to second order in
forward and reverse mode (zero-derivative primitives: outputs are never traced).
"""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import pullback
from helpers import raises
from pullback.core.primitive import REGISTRY, ZERO
from pullback.errors import UnsupportedFunctionError
from pullback.primitives.special import no_closed_form
from pullback.transforms.cotangents import dense
from pullback.operators import HESSIAN_MODES
from pullback.core.indexing import ArrayIndex, Slice

DTYPES = [np.float64, np.float32]
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def values(draw, shape, dtype, domain=(-2.0, 2.0)):
    """Uniform values inside `domain`, from a generator seeded by Hypothesis.

    Each call draws a fresh seed *and* advances a per-example counter, so two
    arguments of one case never share their values (ties would sit on kinks).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng([seed, next(_calls)])
    lo, hi = domain
    return rng.uniform(lo, hi, size=shape).astype(dtype)


_calls = itertools.count()


small_shapes = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
nonscalar_shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)


@st.composite
def elementwise_case(draw, prim, dtype):
    shapes = draw(mutually_broadcastable_shapes(num_shapes=len(prim.domain), max_dims=3,
                                                max_side=3)).input_shapes
    args = []
    for shape, domain in zip(shapes, prim.domain):
        if domain == "bool":
            args.append(values(draw, shape, np.float64) > 0)
        elif domain[0] == "int":            # ("int", lo, hi): orders, never differentiated
            lo, hi = domain[1:]
            args.append(np.floor(values(draw, shape, np.float64, (lo, hi + 1))).astype(int))
        else:
            args.append(values(draw, shape, dtype, domain))
    params = {"polygamma": lambda: {"n": draw(st.integers(1, 2))},
              "exprel": lambda: {"order": draw(st.integers(0, 2))},
              "sinc": lambda: {"order": draw(st.integers(0, 2))},
              "around": lambda: {"decimals": draw(st.integers(0, 2))}}.get(prim.name, dict)()
    return args, params


@st.composite
def reduction_case(draw, prim, dtype, domain=(-2.0, 2.0)):
    shape = draw(small_shapes)
    x = values(draw, shape, dtype, domain)
    axes = draw(st.sets(st.integers(0, len(shape) - 1))) if shape else set()
    return [x], {"axis": tuple(sorted(axes)), "keepdims": draw(st.booleans())}


@st.composite
def scan_case(draw, prim, dtype):
    shape = draw(nonscalar_shapes)
    x = values(draw, shape, dtype, (0.5, 1.5) if prim.name == "cumprod" else (-2.0, 2.0))
    if prim.name == "cumprod" and draw(st.booleans()):
        x.flat[0] = 0.0          # the derivative must stay exact with zeros
    return [x], {"axis": draw(st.integers(0, len(shape) - 1))}


@st.composite
def prod_case(draw, prim, dtype):
    args, params = draw(reduction_case(prim, dtype))
    x = args[0]
    if x.size and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = 0.0
    return args, params


@st.composite
def reshape_case(draw, prim, dtype):
    shape = draw(small_shapes)
    x = values(draw, shape, dtype)
    target = draw(st.sampled_from([shape[::-1], (int(np.prod(shape)),), (1,) + shape, ()
                                   if x.size == 1 else shape]))
    return [x], {"shape": tuple(target)}


@st.composite
def transpose_case(draw, prim, dtype):
    shape = draw(small_shapes)
    return [values(draw, shape, dtype)], {"axes": tuple(draw(st.permutations(range(len(shape)))))}


@st.composite
def broadcast_case(draw, prim, dtype):
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    shape = shapes.input_shapes[0]
    return [values(draw, shape, dtype)], {"shape": shapes.result_shape}


@st.composite
def convert_case(draw, prim, dtype):
    target = np.float32 if dtype == np.float64 else np.float64
    return [values(draw, draw(small_shapes), dtype)], {"dtype": np.dtype(target)}


@st.composite
def unary_identity_case(draw, prim, dtype):
    return [values(draw, draw(small_shapes), dtype)], {}


@st.composite
def index_case(draw, shape):
    """A getitem template over `shape` mixing slices, integers, None and index arrays."""
    template, arrays = [], []
    length = draw(st.integers(1, 4))           # index arrays broadcast together
    for n in shape:
        kind = draw(st.sampled_from(["slice", "int", "array", "full"]))
        if kind == "slice":
            start, stop = draw(st.integers(-n, n)), draw(st.integers(-n, n))
            template.append(Slice(start, stop, draw(st.sampled_from([1, -1, 2]))))
        elif kind == "int":
            template.append(draw(st.integers(-n, n - 1)))
        elif kind == "array":
            template.append(ArrayIndex(len(arrays)))
            arrays.append(np.array(draw(st.lists(st.integers(0, n - 1), min_size=length,
                                                  max_size=length))))
        else:
            template.append(Slice(None, None, None))
        if draw(st.booleans()) and len(template) < 2:
            template.append(None)
    return tuple(template), arrays


@st.composite
def getitem_case(draw, prim, dtype):
    shape = draw(nonscalar_shapes)
    template, arrays = draw(index_case(shape))
    return [values(draw, shape, dtype), *arrays], {"index": template}


def _indexed_shape(shape, template, arrays):
    from pullback.core.indexing import index_tuple
    return np.zeros(shape)[index_tuple(template, arrays)].shape


@st.composite
def embed_case(draw, prim, dtype):
    shape = draw(nonscalar_shapes)
    template, arrays = draw(index_case(shape))
    v = values(draw, _indexed_shape(shape, template, arrays), dtype)
    return [v, *arrays], {"index": template, "shape": shape}


@st.composite
def scatter_case(draw, prim, dtype):
    shape = draw(nonscalar_shapes)
    template, arrays = draw(index_case(shape))
    if prim.name == "scatter_set" and arrays:   # repeated indices make `set` ambiguous
        keep = np.unique(np.stack(arrays), axis=1, return_index=True)[1]
        arrays = [a[np.sort(keep)] for a in arrays]
    v = values(draw, _indexed_shape(shape, template, arrays), dtype)
    return [values(draw, shape, dtype), v, *arrays], {"index": template}


@st.composite
def concatenate_case(draw, prim, dtype):
    shape = draw(nonscalar_shapes)
    axis = draw(st.integers(0, len(shape) - 1))
    xs = []
    for _ in range(draw(st.integers(1, 3))):
        s = list(shape)
        s[axis] = draw(st.integers(1, 3))
        xs.append(values(draw, tuple(s), dtype))
    return xs, {"axis": axis}


@st.composite
def pad_case(draw, prim, dtype):
    shape = draw(small_shapes)
    widths = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in shape)
    return [values(draw, shape, dtype)], {"pad_width": widths,
                                          "constant_value": draw(st.sampled_from([0.0, 1.5]))}


@st.composite
def matmul_case(draw, prim, dtype):
    """Stacks of matrices, and NumPy's 1-d operands (a row on the left, a column on the
    right), which the primitive takes as they are."""
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=2))
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    vector_a, vector_b = draw(st.booleans()), draw(st.booleans())
    return [values(draw, (k,) if vector_a else shapes.input_shapes[0] + (n, k), dtype),
            values(draw, (k,) if vector_b else shapes.input_shapes[1] + (k, m), dtype)], {}


EINSUM_SPECS = {"ij,jk->ik": [(2, 3), (3, 2)], "ii->": [(3, 3)], "ii->i": [(3, 3)],
                "ij->": [(2, 3)], "ij->j": [(2, 3)], "i,i->": [(3,), (3,)],
                "ij,jk,kl->il": [(2, 3), (3, 2), (2, 2)], "bij,bjk->bik": [(2, 2, 3), (2, 3, 1)],
                "i,j->ij": [(2,), (3,)], "iij->ij": [(2, 2, 3)]}


@st.composite
def einsum_case(draw, prim, dtype):
    spec = draw(st.sampled_from(sorted(EINSUM_SPECS)))
    return [values(draw, s, dtype) for s in EINSUM_SPECS[spec]], {"spec": spec}


@st.composite
def arg_case(draw, prim, dtype):
    shape = draw(nonscalar_shapes)
    return [values(draw, shape, dtype)], {"axis": draw(st.integers(0, len(shape) - 1))}


@st.composite
def argpartition_case(draw, prim, dtype):
    args, params = draw(arg_case(prim, dtype))
    n = args[0].shape[params["axis"]]
    kth = draw(st.sets(st.integers(0, n - 1), min_size=1))
    return args, {**params, "kth": tuple(sorted(kth))}


@st.composite
def searchsorted_case(draw, prim, dtype):
    sorted_values = np.sort(values(draw, (draw(st.integers(1, 4)),), dtype))
    return [sorted_values, values(draw, draw(small_shapes), dtype)], {
        "side": draw(st.sampled_from(["left", "right"]))}


@st.composite
def logical_reduction_case(draw, prim, dtype):
    args, params = draw(reduction_case(prim, dtype))
    return [args[0] > 0], params


def _matrix(draw, kind, stack, n, dtype, m=None):
    """A well-conditioned matrix (stack) of the given kind, exact in float32."""
    rng = np.random.default_rng([draw(st.integers(0, 2**32 - 1)), next(_calls)])
    m = n if m is None else m
    a = rng.uniform(-1.0, 1.0, stack + (m, n))
    if kind in ("invertible", "triangular"):
        a = a + 2.0 * n * np.eye(n)
    elif kind == "spd":
        a = a @ np.swapaxes(a, -1, -2) + n * np.eye(n)
    elif kind == "symmetric":      # distinct eigenvalues: a spread-out diagonal dominates
        a = a + np.diag(3.0 * np.arange(n))
    elif kind in ("square", "distinct"):  # any rank; or distinct singular values, 0 allowed
        u, _ = np.linalg.qr(rng.standard_normal(stack + (n, n)))
        v, _ = np.linalg.qr(rng.standard_normal(stack + (n, n)))
        if kind == "square":
            s = rng.uniform(0.5, 2.0, stack + (n,)) * (np.arange(n) < draw(st.integers(0, n)))
        else:
            s = np.arange(n) + draw(st.sampled_from([0.0, 1.0]))
        a = u @ (s[..., None] * v)
    elif kind == "nonsymmetric":   # p diag(w) p^-1: eigenvalues 1 +- 1.5i, 3, ... (distinct)
        p = np.eye(n) + 0.3 * a
        w = np.diag(np.arange(1.0, n + 1.0))
        if n >= 2:
            w[:2, :2] = [[1.0, -1.5], [1.5, 1.0]]
        a = p @ w @ np.linalg.inv(p)
    elif kind in ("matrix", "tall"):     # distinct singular values 1, 2, 3, ...
        u, _ = np.linalg.qr(rng.standard_normal(stack + (m, m)))
        v, _ = np.linalg.qr(rng.standard_normal(stack + (n, n)))
        k = min(m, n)
        s = np.zeros(stack + (m, n))
        s[..., np.arange(k), np.arange(k)] = 1.0 + np.arange(k)
        a = u @ s @ v
    return a.astype(dtype)


@st.composite
def linalg_case(draw, prim, dtype):
    stack = draw(st.sampled_from([(), (2,)]))
    n = draw(st.integers(1, 3))
    kinds = prim.domain
    m = n + draw(st.integers(0, 1)) if kinds[0] == "tall" else (
        draw(st.integers(1, 3)) if prim.name in ("svd", "svdvals", "pinv", "lu_factor") else None)
    args = [_matrix(draw, kinds[0], stack, n, dtype, m)]
    if len(kinds) > 1:
        args.append(_matrix(draw, "matrix", draw(st.sampled_from([(), stack])), draw(
            st.integers(1, 2)), dtype, n))
    params = {"triangular_solve": lambda: {"lower": draw(st.booleans()),
                                           "trans": draw(st.integers(0, 1))},
              "eigh": lambda: {"lower": draw(st.booleans())},
              "pinv": lambda: {"rcond": 1e-15}}.get(prim.name, dict)()
    return args, params


@st.composite
def sylvester_case(draw, prim, dtype):
    """a x + x b = q with a, b positive definite (no eigenvalue of a is one of -b's)."""
    stack = draw(st.sampled_from([(), (2,)]))
    n, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return [_matrix(draw, "spd", stack, n, dtype), _matrix(draw, "spd", stack, k, dtype),
            _matrix(draw, "matrix", draw(st.sampled_from([(), stack])), k, dtype, n)], {}


@st.composite
def pivots_case(draw, prim, dtype):
    """LAPACK row interchanges of k steps on m >= k rows: row i swapped with piv[i] >= i."""
    k = draw(st.integers(1, 4))
    m = k + draw(st.integers(0, 2))
    stack = draw(st.sampled_from([(), (2,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    piv = np.arange(k) + rng.integers(0, m - np.arange(k), stack + (k,))
    return [piv.astype(np.int32)], {"rows": m}


def _custom_fun(x, y):
    return [x * np.sin(y), np.exp(x)]


def _custom_fwd(x, y):
    return _custom_fun(x, y) + [x, y]


def _custom_bwd(x, y, ct0, ct1):
    return [ct0 * np.sin(y) + ct1 * np.exp(x), ct0 * x * np.cos(y)]


def _custom_jvp_rule(x, y, tx, ty):
    return _custom_fun(x, y) + [tx * np.sin(y) + x * np.cos(y) * ty, np.exp(x) * tx]


@st.composite
def custom_case(draw, prim, dtype):
    """A two-input, two-output function with a hand-written rule of the primitive's kind
    (flat: lists of arrays in and out), or for rule_call such a rule itself."""
    shape = draw(small_shapes)
    args = [values(draw, shape, dtype), values(draw, shape, dtype)]
    if prim.name == "custom_vjp_call":
        return args, {"fun": _custom_fun, "fwd": _custom_fwd, "bwd": _custom_bwd,
                      "out_count": lambda: 2}
    if prim.name == "rule_call":
        return args, {"rule": _custom_fwd}
    return args, {"fun": _custom_fun, "jvp": _custom_jvp_rule}


FFT_NORMS = ("backward", "ortho", "forward")


@st.composite
def fft_case(draw, prim, dtype):
    """fft of complex values over some axes; rfft of real values, irfft to a length n whose
    n // 2 + 1 frequencies the input holds (axes negative, as the primitives take them)."""
    shape = draw(nonscalar_shapes)
    rank, norm = len(shape), draw(st.sampled_from(FFT_NORMS))
    if prim.name == "rfft":
        return [values(draw, shape, dtype)], {"axis": draw(st.integers(-rank, -1)), "norm": norm}
    x = (values(draw, shape, dtype) + 1j * values(draw, shape, dtype)).astype(
        np.result_type(dtype, np.complex64))
    if prim.name == "irfft":
        axis = draw(st.integers(-rank, -1))
        m = shape[axis]
        n = draw(st.sampled_from([2 * m - 1] + ([2 * m - 2] if m > 1 else [])))
        return [x], {"axis": axis, "n": n, "norm": norm}
    axes = tuple(sorted(draw(st.sets(st.integers(-rank, -1), min_size=1))))
    return [x], {"axes": axes, "inverse": draw(st.booleans()), "norm": norm}


def _loop_body(a, h, x):
    return [np.sin(h) * a + x, h * x]


@st.composite
def loop_case(draw, prim, dtype):
    """A loop of `_loop_body` (a const, a carry, an x) of 0 to 3 steps, under a drawn
    checkpointing policy."""
    from pullback.core.primitive import ShapeDtype
    from pullback.loops.bodies import stage_flat
    shape, length = draw(small_shapes), draw(st.integers(0, 3))
    aval = ShapeDtype(shape, np.dtype(dtype))
    body = stage_flat(_loop_body, [aval, aval, aval], "body")
    args = [values(draw, shape, dtype), values(draw, shape, dtype),
            values(draw, (length,) + shape, dtype)]
    params = {"body": body, "n_consts": 1, "n_carry": 1, "length": length,
              "reverse": draw(st.booleans()),
              "checkpoints": draw(st.sampled_from(["all", "carry", 1, 2]))}
    return args, params


def _while_cond(limit, h, k):
    return [k < limit]


def _while_body(a, h, k):
    return [np.sin(h) * a + 0.5, k + 1]


@st.composite
def while_case(draw, prim, dtype):
    """A while loop of `_while_body` running a drawn number of steps (0 to 3)."""
    from pullback.core.primitive import ShapeDtype
    from pullback.loops.bodies import stage_flat
    shape = draw(small_shapes)
    aval, count = ShapeDtype(shape, np.dtype(dtype)), ShapeDtype((), np.dtype(np.int64))
    cond = stage_flat(_while_cond, [count, aval, count], "cond")
    body = stage_flat(_while_body, [aval, aval, count], "body")
    args = [np.int64(draw(st.integers(0, 3))), values(draw, shape, dtype),
            values(draw, shape, dtype), np.int64(0)]
    params = {"cond": cond, "body": body, "n_cond": 1, "n_body": 1}
    return args, {**params, "checkpoints": draw(st.sampled_from(["auto", "all", 1]))}


def _branch_sin(a, x):
    return [np.sin(x) * a, x * 2]


def _branch_square(a, x):
    return [x * x + a, x - 1]


@st.composite
def switch_case(draw, prim, dtype):
    """A switch between two branches (each with a const) at a drawn index (-1 to 2)."""
    from pullback.core.primitive import ShapeDtype
    from pullback.loops.bodies import stage_flat
    shape = draw(small_shapes)
    aval = ShapeDtype(shape, np.dtype(dtype))
    branches = tuple(stage_flat(fn, [aval, aval], fn.__name__) for fn in (_branch_sin,
                                                                         _branch_square))
    args = [np.int64(draw(st.integers(-1, 2)))] + [values(draw, shape, dtype) for _ in range(3)]
    return args, {"branches": branches, "n_consts": (1, 1)}


CASES = {
    "switch": switch_case, "loop": loop_case, "while_loop": while_case,
    "sum": reduction_case, "max": reduction_case, "min": reduction_case, "prod": prod_case,
    "cumsum": scan_case, "cumprod": scan_case, "reshape": reshape_case,
    "transpose": transpose_case, "broadcast_to": broadcast_case, "convert": convert_case,
    "stop_gradient": unary_identity_case, "getitem": getitem_case, "embed": embed_case,
    "scatter_add": scatter_case, "scatter_set": scatter_case, "concatenate": concatenate_case,
    "pad": pad_case, "matmul": matmul_case, "einsum": einsum_case, "argmax": arg_case,
    "argmin": arg_case, "argsort": arg_case, "argpartition": argpartition_case,
    "searchsorted": searchsorted_case, "any": logical_reduction_case,
    "all": logical_reduction_case, "custom_vjp_call": custom_case,
    "custom_jvp_call": custom_case, "rule_call": custom_case, "sylvester": sylvester_case,
    "pivots_to_permutation": pivots_case, "fft": fft_case, "rfft": fft_case, "irfft": fft_case,
}


# The reverse mode of while_loop and the recording of a checkpointed loop: a tape and the
# values it was recorded from go together, so independent random inputs do not apply;
# tests/test_loops.py tests them through while_loop and scan in every mode, vmap and jit.
RECORDED = {"while_record", "while_reversal", "loop_record", "checkpointed_reversal"}
TABLE = sorted(set(REGISTRY) - RECORDED)


def case_strategy(prim, dtype):
    if prim.name in CASES:
        return CASES[prim.name](prim, dtype)
    if prim.family == "elementwise":
        return elementwise_case(prim, dtype)
    if prim.family == "linalg":
        return linalg_case(prim, dtype)
    raise LookupError(f"no test case for primitive {prim.name!r}: add a row to CASES")


def test_every_primitive_has_a_case():
    for prim in (REGISTRY[name] for name in TABLE):
        case_strategy(prim, np.float64)


def _check_shape_rule(prim, args, params, out):
    expected = prim.shape(*args, **params)
    outs, expecteds = (out, expected) if prim.multiple_results else ((out,), (expected,))
    for o, e in zip(outs, expecteds):
        assert tuple(np.shape(o)) == tuple(e.shape), (prim.name, np.shape(o), e.shape)
        assert np.asarray(o).dtype == e.dtype, (prim.name, np.asarray(o).dtype, e.dtype)


def _differentiable_positions(args, prim=None):
    """The floating-point arguments (of `prim`: those it has a derivative for)."""
    partials = (prim.partials if prim is not None else None) or ()
    return [i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f" and not (
        i < len(partials) and isinstance(partials[i], no_closed_form))]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", TABLE)
def test_primitive(name, dtype):
    prim = REGISTRY[name]

    @SETTINGS
    @given(case_strategy(prim, dtype))
    def run(case):
        args, params = case
        with np.errstate(all="ignore"):
            out = prim(*args, **params)
        _check_shape_rule(prim, args, params, out)
        positions = _differentiable_positions(args, prim)
        if not prim.differentiable:
            # Zero derivative: differentiating through it gives exactly zero.
            if positions:
                i = positions[0]

                def f(x):
                    res = prim(*args[:i], x, *args[i + 1:], **params)
                    res = res[0] if prim.multiple_results else res
                    return np.sum(np.asarray(res, dtype=np.float64) if not isinstance(
                        res, pullback.core.engine.Tracer) else res * 1.0)
                assert np.all(pullback.grad(f)(args[i]) == 0)
            return

        def f(*diff_args):
            full = list(args)
            for i, a in zip(positions, diff_args):
                full[i] = a
            return prim(*full, **params)
        eps = 1e-2 if name == "convert" else 1e-6   # convert's output is float32: FD in large steps
        pullback.check_grads(f, [args[i] for i in positions], order=2, eps=eps)
    run()


def _batched(arg, axis, size=3):
    """`size` examples of `arg` stacked along `axis` (floats perturbed, others repeated)."""
    arg = np.asarray(arg)
    if arg.dtype.kind == "f":
        examples = [arg * (1 + 0.01 * k) for k in range(size)]
    else:
        examples = [arg] * size
    return np.stack(examples, axis=axis)


@pytest.mark.parametrize("name", TABLE)
def test_vmap_matches_a_loop(name):
    prim = REGISTRY[name]

    @SETTINGS
    @given(case_strategy(prim, np.float64), st.data())
    def run(case, data):
        args, params = case
        batch_mask = [True] + [data.draw(st.booleans()) for _ in args[1:]]
        if not data.draw(st.booleans()):
            batch_mask = [not b for b in batch_mask] if not all(batch_mask) else batch_mask
        in_axes = [data.draw(st.integers(0, np.ndim(a))) if b else None
                   for a, b in zip(args, batch_mask)]
        batched = [_batched(a, ax) if ax is not None else a for a, ax in zip(args, in_axes)]
        with np.errstate(all="ignore"):
            got = pullback.vmap(lambda *a: prim(*a, **params), in_axes=tuple(in_axes))(*batched)
            examples = [prim(*[np.take(b, i, axis=ax) if ax is not None else b
                               for b, ax in zip(batched, in_axes)], **params) for i in range(3)]
        if prim.multiple_results:
            for k, g in enumerate(got):
                np.testing.assert_allclose(g, np.stack([e[k] for e in examples]), rtol=1e-12,
                                           atol=1e-12, equal_nan=True)
        else:
            np.testing.assert_allclose(got, np.stack(examples), rtol=1e-12, atol=1e-12,
                                       equal_nan=True)
    run()


def _assert_same(got, expected):
    got = got if isinstance(got, (list, tuple)) else [got]
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.asarray(g).dtype == np.asarray(e).dtype, (np.asarray(g).dtype, np.asarray(e).dtype)
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", TABLE)
def test_staged_program_matches_eager(name, dtype):
    """Staged then interpreted, generated (both variants), and optimised: all equal eager,
    for the primitive and (if differentiable) for its pushforward and pullback."""
    from pullback.ir.codegen import compile_program
    from pullback.ir.passes import optimize
    from pullback.ir.program import evaluate, typecheck
    from pullback.ir.staging import stage
    prim = REGISTRY[name]

    @settings(SETTINGS, max_examples=4)
    @given(case_strategy(prim, dtype))
    def run(case):
        args, params = case
        positions = _differentiable_positions(args, prim)
        functions = [lambda *a: prim(*a, **params)]
        if prim.differentiable and positions:
            def split(a):
                return [a[i] for i in positions], lambda d: [
                    d[positions.index(i)] if i in positions else x for i, x in enumerate(a)]

            def jvp_of(*a):
                diff, rebuild = split(a)
                return pullback.pushforward(lambda *d: prim(*rebuild(d), **params), tuple(diff),
                                            tuple(x * 0.5 + 0.25 for x in diff))[1]

            def vjp_of(*a):
                diff, rebuild = split(a)
                out, back = pullback.pullback(lambda *d: prim(*rebuild(d), **params), *diff)
                return back(jax_like_ones(out))
            functions += [jvp_of, vjp_of]
        for fn in functions:
            with np.errstate(all="ignore"):
                expected = pullback.tree.flatten(fn(*args))[0]
                program = stage(fn, tuple(args))
                typecheck(program)
                _assert_same(evaluate(program, *args), expected)
                optimized = optimize(program)
                typecheck(optimized)
                _assert_same(evaluate(optimized, *args), expected)
                for fast in (True, False):
                    _assert_same(compile_program(optimized, fast=fast)(*[np.copy(a) for a in args]),
                                 expected)
    run()


def jax_like_ones(out):
    """A cotangent of ones shaped like `out` (a pytree of arrays)."""
    return pullback.tree.tree_map(lambda o: np.ones(o.shape, o.dtype), out)


def _intervals(domain):
    return all(isinstance(d, tuple) and not isinstance(d[0], str) for d in domain)


BINARY_ELEMENTWISE = [pytest.param(name, position, id=f"{name}-scalar_{side}")
                      for name, prim in sorted(REGISTRY.items())
                      if prim.family == "elementwise" and prim.differentiable
                      and prim.domain is not None and len(prim.domain) == 2
                      and _intervals(prim.domain)
                      for position, side in ((0, "first"), (1, "second"))
                      if not isinstance(prim.partials[1 - position], no_closed_form)]


@pytest.mark.parametrize("name, position", BINARY_ELEMENTWISE)
def test_binary_primitive_with_a_python_scalar_keeps_float32(name, position):
    # A Python scalar is weakly typed: no rule may turn it into a float64 NumPy scalar,
    # which would promote a float32 derivative (arctan2's square(y) once did).
    prim = REGISTRY[name]
    scalar = float(np.mean(prim.domain[position]))
    low, high = prim.domain[1 - position]
    array = np.array([0.13, 0.52, 0.91]) * (high - low) + low      # no ties with the scalar
    array = array.astype(np.float32)

    def f(x):
        return prim(scalar, x) if position == 0 else prim(x, scalar)
    pullback.check_grads(f, [array], order=2)


# ------------------------------------------------- exact derivatives at special points


def _falling(k, n):
    """k (k-1) ... (k-n+1): the n-th derivative of x**k is _falling(k, n) x**(k-n)."""
    return float(np.prod([k - i for i in range(n)]))


def _power_derivative(k, n, x):
    return 0.0 if n > k else _falling(k, n) * x ** (k - n)


EXPONENT_FORMS = {"int": int, "float": float, "0d_array": np.array}


@pytest.mark.parametrize("x", [0.0, -1.5], ids=["zero", "negative"])
@pytest.mark.parametrize("form", sorted(EXPONENT_FORMS))
@pytest.mark.parametrize("k", range(5))
def test_item7_integer_powers_are_exact_at_zero_at_every_order(k, form, x):
    y = EXPONENT_FORMS[form](k)
    f = lambda x: x ** y                                     # noqa: E731
    d1, d2, d3 = (_power_derivative(k, n, x) for n in (1, 2, 3))
    assert pullback.grad(f)(x) == d1
    for mode in HESSIAN_MODES:
        assert pullback.hessian(f, mode=mode)(x) == d2, mode
    assert pullback.grad(pullback.grad(pullback.grad(f)))(x) == d3
    third = pullback.jacfwd(pullback.jacrev(pullback.jacfwd(f)))(x)
    assert third == d3
    xs = np.array([x, 0.0, 2.0])                             # elementwise, in a vector
    g = lambda v: np.sum(v ** y)                             # noqa: E731
    np.testing.assert_array_equal(pullback.grad(g)(xs), [_power_derivative(k, 1, v) for v in xs])
    for mode in HESSIAN_MODES:
        np.testing.assert_array_equal(pullback.hessian(g, mode=mode)(xs),
                                      np.diag([_power_derivative(k, 2, v) for v in xs]))


def test_item7_a_polynomial_with_an_array_of_exponents_is_exact_at_zero():
    c = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    f = lambda x: np.sum(c * x ** np.arange(5))              # noqa: E731
    for x in (0.0, -1.5):
        exact = [sum(c[k] * _power_derivative(k, n, x) for k in range(5)) for n in (1, 2, 3)]
        assert pullback.grad(f)(x) == exact[0]
        for mode in HESSIAN_MODES:
            assert pullback.hessian(f, mode=mode)(x) == exact[1], mode
        assert pullback.grad(pullback.grad(pullback.grad(f)))(x) == exact[2]
        assert pullback.jacfwd(pullback.jacfwd(pullback.jacfwd(f)))(x) == exact[2]
    # float32 exponents and bases stay float32; the exponent's own derivative stays finite.
    x32 = np.float32(0.0)
    assert pullback.grad(lambda x: np.sum(x ** np.arange(4, dtype=np.float32)))(
        np.array(x32)).dtype == np.float32
    assert pullback.grad(lambda y: np.sum(0.0 ** y))(np.arange(1.0, 4.0)).tolist() == [0, 0, 0]
    # A negative base: x ** y is real only at integers y, so its y-derivative does not exist.
    assert np.isnan(pullback.grad(lambda y: (-2.0) ** y)(2.0))


# ---------------------------------------------- derivative dtypes under mixed precision


def _mixed_precision(draw, args, family):
    """The case's float arguments each cast to float32 or float64 (0-d ones of elementwise
    primitives sometimes a Python float, which is weakly typed)."""
    mixed = []
    for a in args:
        if np.asarray(a).dtype.kind != "f":
            mixed.append(a)
        elif family == "elementwise" and np.ndim(a) == 0 and draw(st.booleans()):
            mixed.append(float(a))
        else:
            mixed.append(np.asarray(a).astype(draw(st.sampled_from(DTYPES))))
    return mixed


def _dtypes(values, like=None):
    """The dtypes of a value or a list of them; with `like`, only where `like` is not ZERO."""
    values = values if isinstance(values, (list, tuple)) else [values]
    like = values if like is None else like if isinstance(like, (list, tuple)) else [like]
    return [np.asarray(v).dtype for v, k in zip(values, like) if k is not ZERO]


# The custom-call primitives' rules are the user's, whose dtypes pullback.custom checks.
DIFFERENTIABLE = sorted(name for name, prim in REGISTRY.items()
                        if name in TABLE and prim.differentiable and prim.family != "custom")


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_item10_a_tangent_has_its_outputs_dtype_and_a_cotangent_its_inputs(name):
    """Every rule under mixed float32/float64/Python-scalar operands, called directly (no
    transformation casts anything behind its back), each input differentiated or not."""
    prim = REGISTRY[name]

    @settings(SETTINGS, max_examples=20)
    @given(case_strategy(prim, np.float64), st.data())
    def run(case, data):
        args, params = case
        args = _mixed_precision(data.draw, args, prim.family)
        arrays = [i for i in _differentiable_positions(args, prim) if isinstance(args[i], np.ndarray)]
        if not arrays:
            return
        wrt = [i in arrays and data.draw(st.booleans()) for i in range(len(args))]
        if not any(wrt):
            wrt[arrays[0]] = True
        tangents = [np.ones_like(a) if w else ZERO for a, w in zip(args, wrt)]
        with np.errstate(all="ignore"):
            out, tangent = prim.jvp(args, tangents, **params)
            assert _dtypes(tangent) == _dtypes(out, tangent), (name, _dtypes(args))
            ct = [np.ones_like(o) for o in out] if prim.multiple_results else np.ones_like(out)
            cts = prim.vjp(tuple(wrt), out, *args, **params)(ct)
        for a, w, c in zip(args, wrt, cts):
            if w:
                assert _dtypes(dense(c)) == _dtypes(a), (name, _dtypes(args))


def _no_shared_memory(outs, args, name):
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    for k, out in enumerate(outs):
        for i, a in enumerate(args):
            assert not np.shares_memory(out, a), f"{name}: output {k} shares input {i}'s memory"
        for j, other in enumerate(outs[:k]):
            assert not np.shares_memory(out, other), f"{name}: outputs {j} and {k} share memory"


@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items() if p.fresh_output))
def test_item2_fresh_output_primitives_return_new_arrays(name):
    """A primitive declaring `fresh_output` returns arrays of its own, from `impl` and from
    the code generated for it: generated code writes into their buffers in place."""
    from pullback.ir.codegen import compile_program
    from pullback.ir.staging import stage
    prim = REGISTRY[name]

    @SETTINGS
    @given(case_strategy(prim, np.float64))
    def run(case):
        args, params = case
        with np.errstate(all="ignore"):
            _no_shared_memory(prim.impl(*args, **params), args, name)
            program = stage(lambda *a: prim(*a, **params), tuple(args))
            _no_shared_memory(compile_program(program, fast=False)(*args), args, name)
    run()


@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items()
                                         if not p.fresh_output and n in TABLE))
def test_item2_jit_keeps_the_inputs_of_possible_views_intact(name):
    """For every primitive that may return a view of its inputs: inputs computed into
    buffers the generated code could reuse (exp), the primitive, then each input read
    again (sin) after it: jit equals eager."""
    prim = REGISTRY[name]

    @settings(SETTINGS, max_examples=4)
    @given(case_strategy(prim, np.float64))
    def run(case):
        args, params = case
        floats = _differentiable_positions(args)

        def f(*a):
            a = [np.exp(x) if i in floats else x for i, x in enumerate(a)]
            return prim(*a, **params), [np.sin(a[i]) for i in floats]
        with np.errstate(all="ignore"):
            expected, got = f(*args), pullback.jit(f)(*args)
        for e, g in zip(pullback.tree.flatten(expected)[0], pullback.tree.flatten(got)[0]):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, equal_nan=True)
    run()


# ------------------------------------------- derivatives without a closed form

NO_CLOSED_FORM = [pytest.param(name, i, id=f"{name}-{i}") for name, prim in sorted(REGISTRY.items())
                  for i, d in enumerate(prim.partials or ()) if isinstance(d, no_closed_form)]


@pytest.mark.parametrize("name, position", NO_CLOSED_FORM)
def test_a_derivative_without_a_closed_form_raises_a_clear_error(name, position):
    """Differentiating with respect to such an argument names it; the others still work."""
    prim = REGISTRY[name]
    args = [np.full(3, float(d[1] + 1 if d[0] == "int" else np.mean(d))) for d in prim.domain]
    partial = prim.partials[position]

    def f(x):
        return np.sum(prim(*args[:position], x, *args[position + 1:]))
    with raises(UnsupportedFunctionError, partial.function, f"`{partial.argument}`"):
        pullback.grad(f)(args[position])
    with raises(UnsupportedFunctionError, partial.function, f"`{partial.argument}`"):
        pullback.pushforward(f, (args[position],), (args[position],))


def test_shared_factors_of_a_dense_batch_combine_before_they_multiply_it():
    """`Scaled` (primitives/basis.py): products with shared values and sums over one
    dense batch keep the batch apart; the results are the dense computation's."""
    from pullback.primitives.basis import vmap_basis
    rng = np.random.default_rng(7)
    batch, (y1, y2, y3) = rng.standard_normal((4, 5, 3)), rng.standard_normal((3, 3))
    scalar = np.float32(1.5)

    def fn(b):
        u, v = b * y1, (b * y2) * y3
        return [(u - v) * y2 + -(b * y3), np.tanh(u) * y1, v + b, (v * scalar) / y1], None
    got, _ = vmap_basis(fn, [batch])
    for g, e in zip(got, pullback.vmap(lambda b: fn(b)[0])(batch)):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-13)


def test_matrix_functions_get_dense_batches_from_one_hot_ones():
    # Off a one-hot pattern matrices are singular: these need their dense batches.
    assert {REGISTRY[name].sparsity for name in TABLE if REGISTRY[name].family == "linalg"} \
        == {None}


@pytest.mark.parametrize("name", [n for n in TABLE if REGISTRY[n].family != "linalg"])
def test_one_hot_batches_compute_what_their_dense_batches_compute(name):
    """Every primitive on structured one-hot batches (primitives/basis.py: random terms,
    slots with gaps and repeats, one or all floating arguments structured) gives what it
    gives on the dense batches they stand for."""
    from pullback.primitives.basis import OneHot, dense, vmap_basis
    prim, size = REGISTRY[name], 3

    @SETTINGS
    @given(case_strategy(prim, np.float64), st.data())
    def run(case, data):
        args, params = case
        positions = _differentiable_positions(args)
        if not positions:
            return
        if not data.draw(st.booleans()):
            positions = [data.draw(st.sampled_from(positions))]
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        seeds = [OneHot([(rng.uniform(0.5, 1.5, np.shape(args[i])) * args[i],
                          rng.integers(0, size + 1, np.shape(args[i])))
                         for _ in range(data.draw(st.integers(0, 2)))],
                        size, np.shape(args[i]), args[i].dtype) for i in positions]

        def fn(*batched):
            full = list(args)
            for i, b in zip(positions, batched):
                full[i] = b
            out = prim(*full, **params)
            return (list(out) if prim.multiple_results else [out]), None
        dense_seeds = [dense(s) for s in seeds]
        given_dense = [data.draw(st.booleans()) for _ in seeds]   # dense batches: `Scaled`
        with np.errstate(all="ignore"):
            expected = pullback.vmap(lambda *b: fn(*b)[0])(*dense_seeds)
            got, _ = vmap_basis(fn, [d if g else s for s, d, g in
                                     zip(seeds, dense_seeds, given_dense)])
        for g, e in zip(got, expected):
            assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
            tol = 1e-12 if np.asarray(e).dtype.itemsize >= 8 else 1e-6   # terms then summed
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol, equal_nan=True)
    run()


VECTOR_PRODUCTS = [((3, 4), (4,)), ((4,), (4, 3)), ((4,), (4,)), ((2, 3, 4), (4,)),
                   ((4,), (2, 4, 3)), ((1, 4), (4,))]


@pytest.mark.parametrize("shapes", VECTOR_PRODUCTS, ids=str)
def test_item12_eager_a_product_with_a_vector_is_one_tape_entry(shapes):
    """Eager reverse mode records `A @ v` (or `u @ A`) with a 1-d operand as one matmul, not
    a reshape, a matrix product and a reshape (each a bind, a tape entry and a pullback: a
    tenth of the logistic gradient). Staged programs still hold only products of matrices
    (the passes, code generation and sparsity detection read them), and eager mode, jit and
    vmap agree."""
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(s) for s in shapes)
    entries = []

    def recorded(a, b):
        out = a @ b
        entries.append(len(out._trace.tape))
        return np.sum(np.sin(out))

    def f(a, b):
        return np.sum(np.sin(a @ b))
    eager = pullback.grad(recorded, argnums=(0, 1))(a, b)
    assert entries == [3]                      # the two leaves and the product
    for fn in (pullback.grad(f, argnums=(0, 1)), lambda a, b: pullback.hvp(
            lambda ab: f(*ab), (a, b), (np.cos(a), np.sin(b)))):
        program = pullback.make_ir(fn, optimized=True)(a, b)
        products = [eq for eq in program.equations if eq.primitive.name == "matmul"]
        assert products and all(len(x.aval.shape) >= 2 for eq in products for x in eq.inputs)
    for got, expected in zip(pullback.jit(pullback.grad(f, argnums=(0, 1)))(a, b), eager):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    pullback.check_grads(lambda a, b: a @ b, (a, b), order=2)
    batched = pullback.vmap(pullback.grad(f, argnums=(0, 1)), in_axes=(None, 0))(
        a, np.stack([b, 2 * b]))
    for got, expected in zip(batched, pullback.grad(f, argnums=(0, 1))(a, 2 * b)):
        np.testing.assert_allclose(got[1], expected, rtol=1e-12, atol=1e-12)


def test_item12_eager_an_outer_product_by_matmul_is_an_elementwise_product():
    """A matmul over a contraction of length 1 (the cotangent of a matrix times a vector
    is one: the MLP gradient's largest product) is computed as `a * b` broadcasting: the
    same values as NumPy's `@`, stacks broadcast the same way; operands that do not fit
    are still NumPy's error, not a broadcast."""
    rng = np.random.default_rng(4)
    matmul = REGISTRY["matmul"]
    for sa, sb in [((3, 1), (1, 4)), ((2, 3, 1), (1, 4)), ((3, 1), (2, 1, 4)),
                   ((1, 1), (1, 1))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        got = matmul(a, b)
        assert got.shape == np.matmul(a, b).shape
        np.testing.assert_array_equal(got, np.matmul(a, b))
    with pytest.raises(ValueError):
        matmul(np.ones((3, 1)), np.ones((2, 4)))
