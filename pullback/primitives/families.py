"""Family constructors: the only place that knows what "elementwise" or "linear" means.

Each constructor builds a `Primitive` and supplies the rules and facts its family derives:

- `elementwise(name, ufunc, *partials)`: from the ufunc it computes (its NumPy name,
  emitter and dtype promotion) and its partial derivatives (data: numbers, or functions
  naming what they read) come the shape rule, the jvp and the vjp (with
  un-broadcasting), each reading only the residuals it needs;
- `constant(name, impl, shape)`: outputs with zero derivative (comparisons,
  rounding, integer results);
- `linear(name, impl, shape, transpose)`: the jvp applies the primitive to the
  tangents and the vjp is the transpose rule;
- `derivatives_from(composite)`: rules that differentiate a slower composite.

Then the batching rules shared by several families.
"""
import builtins
import cmath
import inspect
import math
from functools import lru_cache
from types import FunctionType

import numpy as np
from . import scipy_special as sp

from ..core.arrays import dtype_of, moveaxis, on_distinct, shape_of
from ..core.primitive import REGISTRY, ZERO, Primitive, ShapeDtype
from ..core.numbers import cast
from ..transforms.cotangents import LARGE_TEMPORARY, unbroadcast_to
from ..transforms.forward import jvp_flat
from ..transforms.reverse import vjp_flat

REALS = (-2.0, 2.0)


# ------------------------------------------------------------------ elementwise

def elementwise_shape(impl):
    """Shape rule of a broadcasting primitive: broadcast shapes, dtype as NumPy computes it
    (remembered per combination of operand types: staging asks once per equation)."""
    def shape(*args, **params):
        types = tuple([a if type(a) is ShapeDtype else _operand_type(a) for a in args])
        return _elementwise_type(impl, types, tuple(sorted(params.items())) if params else ())
    return shape


def _operand_type(a):
    """An operand's type as a cache key: its ShapeDtype, or a Python scalar's type."""
    dtype = dtype_of(a)
    return type(a) if dtype is None else ShapeDtype(tuple(shape_of(a)), dtype)


@lru_cache(maxsize=4096)
def _elementwise_type(impl, types, params):
    scalars = tuple(None if type(t) is ShapeDtype else t for t in types)
    dtypes = tuple(t.dtype if type(t) is ShapeDtype else None for t in types)
    shapes = [t.shape if type(t) is ShapeDtype else () for t in types]
    return ShapeDtype(np.broadcast_shapes(*shapes), _result_dtype(impl, dtypes, scalars, params))


@lru_cache(maxsize=None)
def _result_dtype(impl, dtypes, scalars, params):
    # Evaluate on one-element arrays: exact NumPy type promotion (weak Python scalars included).
    probes = [s(1) if d is None else np.ones(1, d) for d, s in zip(dtypes, scalars)]
    with np.errstate(all="ignore"):
        return impl(*probes, **dict(params)).dtype


def source(value) -> str:
    """A parameter or literal value as Python source for generated code (scalars, tuples,
    dtypes), where `np` is NumPy: non-finite numbers as `np.inf`, `(-np.inf)`, `np.nan`.

    >>> source((1.5, -np.inf, np.float32(np.nan)))
    '(1.5, (-np.inf), np.float32(np.nan))'
    """
    if isinstance(value, np.dtype):      # np.object does not exist: np.dtype('O')
        return f"np.{value.name}" if value.kind in "biufc" else f"np.dtype({value.str!r})"
    if type(value) is tuple:
        return "(" + ", ".join(map(source, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, tuple):         # a named tuple: its class name must be in scope
        return f"{type(value).__name__}({', '.join(map(source, value))})"
    if isinstance(value, (np.floating, np.complexfloating)) and not np.isfinite(value):
        return f"np.{type(value).__name__}({source(value.item())})"
    if type(value) is float and not math.isfinite(value):
        return "np.nan" if math.isnan(value) else "np.inf" if value > 0 else "(-np.inf)"
    if type(value) is complex and not cmath.isfinite(value):
        return f"complex({source(value.real)}, {source(value.imag)})"
    return repr(value)


def call_emitter(function: str, **fixed):
    """emit rule for `function(arg, ..., param=value, ...)`, e.g. call_emitter("np.sum").
    `keepdims=False`, NumPy's default, is left out: given, it costs NumPy's reductions a
    dictionary per call, which fills Python's free lists (memory a long program holds)."""
    def emit(args, **params):
        keywords = [f"{k}={source(v)}" for k, v in {**params, **fixed}.items()
                    if not (k == "keepdims" and v is False)]
        return f"{function}({', '.join(list(args) + keywords)})"
    return emit



def array_dtype(x):
    """The dtype of x as an array: a Python scalar (a weakly typed operand, as shape rules
    see it) has NumPy's default for its type, as `np.asarray` gives it: the result of
    reshaping, indexing or reducing one is an array of that dtype, not float64."""
    dtype = dtype_of(x)
    return np.asarray(x).dtype if dtype is None else dtype

def for_reading(statements):
    """An emit_statements rule that writes for `show` only: NumPy statements on arrays (an
    indexed assignment, a function pullback's namespace does not dispatch), which generated
    code that also runs on tracers cannot use (it calls the primitive instead)."""
    def emit(targets, args, code, **params):
        return statements(targets, args, code, **params) if code.reading else None
    return emit


def eager_call(function: str, **fixed):
    """emit_statements rule (for reading) assigning `function(arg, ..., param=value, ...)`
    to the outputs, e.g. eager_call("np.linalg.slogdet") writes
    `sign, logabsdet = np.linalg.slogdet(a)`. Parameters are renamed or dropped by giving
    `fixed` a callable of them."""
    @for_reading
    def emit(targets, args, code, **params):
        keywords = {k: source(v) for k, v in params.items() if k not in fixed}
        for k, rule in fixed.items():
            keywords.update(rule(**params) if callable(rule) else {k: rule})
        call = ", ".join(list(args) + [f"{k}={v}" for k, v in keywords.items()])
        return [f"{', '.join(targets)} = {function}({call})"]
    return emit


def ufunc_emitter(ufunc):
    """emit rule of a primitive computed by `ufunc` (NumPy's or scipy.special's):
    `np.<name>(a, b)`, and `np.<name>(a, b, out=buffer)` to write into a buffer (None for
    a ufunc reached by no public name, such as scipy.special's `_zeta`). (Code
    generation writes the primitive's `python_operator` instead where an operand is an
    array, so that the result is the same.)"""
    prefix = "np" if getattr(np, ufunc.__name__, None) is ufunc else "sp"
    if getattr(np if prefix == "np" else sp, ufunc.__name__, None) is not ufunc:
        return None                      # a private ufunc: generated code calls the primitive
    function = f"{prefix}.{ufunc.__name__}"

    def emit(args, out=None):
        return f"{function}({', '.join(args)}" + (f", out={out})" if out else ")")
    return emit


def ufunc_scalar(ufunc):
    """emit_scalar rule of a primitive computed by a NumPy ufunc, which Numba compiles on
    scalars: `np.<name>(a, b)` (None for scipy.special's ufuncs, which Numba lacks)."""
    if getattr(np, ufunc.__name__, None) is not ufunc:
        return None

    def emit_scalar(args, dtypes):
        return f"np.{ufunc.__name__}({', '.join(args)})"
    return emit_scalar


def real_ufunc_scalar(ufunc):
    """`ufunc_scalar` for real operands only: Numba's complex version of the ufunc differs
    from NumPy's (so a complex operand keeps the NumPy code)."""
    scalar = ufunc_scalar(ufunc)
    return lambda args, dtypes: None if any(d.kind == "c" for d in dtypes) else scalar(args,
                                                                                        dtypes)


def unfused(args, dtypes):
    """emit_scalar rule of a primitive no fused kernel computes (Numba's version differs
    from NumPy's): its equations stay NumPy calls."""
    return None


def float_ufunc_scalar(ufunc):
    """`ufunc_scalar` for floating-point operands only: Numba's integer version of the
    ufunc differs from NumPy's (fmod(-7, 3) gave 0; reciprocal of an unsigned 0, 2**n - 1,
    NumPy's 0), so integer operands keep the NumPy code."""
    scalar = ufunc_scalar(ufunc)
    return lambda args, dtypes: scalar(args, dtypes) if all(d.kind == "f" for d in dtypes) \
        else None


def vectorised_scalar(ufunc, otherwise):
    """emit_scalar rule calling ir/vector_math's version of `ufunc` (`vm.exp(x)`) on
    float64 operands, which LLVM vectorises where Numba's `np.exp` calls the C library
    per element; `otherwise` (an emit_scalar rule) for other dtypes."""
    def emit_scalar(args, dtypes):
        if all(d == np.float64 for d in dtypes):
            return f"vm.{ufunc.__name__}({', '.join(args)})"
        return otherwise(args, dtypes)
    return emit_scalar


def unbroadcast(ct, x):
    """Sum `ct` down to the shape of `x` (undoing broadcasting) and cast it to x's dtype.

    Written with array methods, which are primitives on tracers and NumPy on arrays;
    a lazy cotangent that needs either is materialised first.
    """
    return unbroadcast_to(ct, shape_of(x), dtype_of(x))


def _partial_call(partial, residuals):
    """The partial derivative as `call(values, params)`, where `values` holds the
    residuals named by `residuals` (("x", "out") or ("x", "y", "out")): the function's
    parameter names pick what it reads, the other parameters are the primitive's."""
    names = list(inspect.signature(partial).parameters)
    read = tuple(residuals.index(n) for n in names if n in residuals)
    keywords = tuple(n for n in names if n not in residuals)
    if keywords:
        return lambda values, params: partial(*[values[i] for i in read],
                                               **{k: params[k] for k in keywords})
    if len(read) == 1:
        (i,) = read
        return lambda values, params: partial(values[i])
    if len(read) == 2:
        i, j = read
        return lambda values, params: partial(values[i], values[j])
    return lambda values, params: partial(*[values[i] for i in read])


def _reads(partial, residuals) -> tuple:
    """For each residual name, whether the partial derivative reads it (a number: none)."""
    if isinstance(partial, (int, float)):
        return (False,) * len(residuals)
    names = inspect.signature(partial).parameters
    return tuple(n in names for n in residuals)


def _impl_globals(module: dict) -> dict:
    """The globals of `_on_arrays` twins of `module`'s functions: its names, each primitive
    replaced by its `impl`, in a plain dict (a dict subclass's lookups call `__getitem__`
    through the method, ten times slower), made once per module and brought up to date by
    `resolve_sweep_forms` once every primitive exists (a twin may name one defined later).
    """
    known = _IMPL_GLOBALS.get(id(module))
    if known is None:
        known = _IMPL_GLOBALS[id(module)] = (module, {})
        _fill(*known)
    return known[1]


def _fill(module: dict, impl_globals: dict):
    impl_globals.update({name: value.impl if isinstance(value, Primitive) else value
                         for name, value in module.items()})


_IMPL_GLOBALS = {}          # id of a module's globals -> (those globals, its twins' globals)


def _on_arrays(partial):
    """A twin of the function `partial` for NumPy arrays: the primitives it names (as
    globals) are their `impl`, which is what binding them does when no argument is traced,
    without the bind (a partial derivative's primitives are most of an eager reverse
    sweep's calls). Only for plain arrays: on tracers the primitives must be bound.

    >>> from pullback.primitives.elementwise import sin      # partial: lambda x: cos(x)
    >>> _on_arrays(sin.partials[0]).__globals__["cos"] is np.cos
    True
    """
    if not isinstance(partial, FunctionType):   # a callable object: as it is
        return partial
    return FunctionType(partial.__code__, _impl_globals(partial.__globals__), partial.__name__,
                         partial.__defaults__, partial.__closure__)


# `lambda x: f(x)` and `lambda x: x`: partial derivatives the sweep needs no frame for.
_CALL_OF_ITS_ARGUMENT = (lambda x: f(x)).__code__           # noqa: F821 (compared, never run)
_ITS_ARGUMENT = (lambda x: x).__code__


def _sweep_form(partial, residuals) -> tuple:
    """`(fn, index)` where the partial derivative reads the residual `index` alone (of the
    names `residuals`) and `fn` computes it from that NumPy value with NumPy, with no bind
    and no frame where it can (`lambda x: cos(x)` is np.cos, `lambda x: g(x)` of a function
    g is g's twin; None: `lambda y: y`, the value itself), else `(None, None)`: reverse
    mode's sweep applies it to a NumPy cotangent without calling the scale (`input_rules`,
    core/primitive.py).

    >>> from pullback.primitives.elementwise import sin, multiply
    >>> _sweep_form(sin.partials[0], ("x", "out"))
    (<ufunc 'cos'>, 0)
    >>> _sweep_form(multiply.partials[0], ("x", "y", "out"))
    (None, 1)
    """
    names = list(inspect.signature(partial).parameters) if callable(partial) else ()
    if len(names) != 1 or names[0] not in residuals:
        return None, None
    index, code = residuals.index(names[0]), getattr(partial, "__code__", None)
    if isinstance(partial, FunctionType) and not partial.__closure__:
        if (code.co_code, code.co_consts) == (_ITS_ARGUMENT.co_code, _ITS_ARGUMENT.co_consts):
            return None, index
        if (code.co_code, code.co_consts, len(code.co_names)) == (
                _CALL_OF_ITS_ARGUMENT.co_code, _CALL_OF_ITS_ARGUMENT.co_consts, 1):
            function = partial.__globals__.get(code.co_names[0])
            if isinstance(function, Primitive) and isinstance(function.impl, np.ufunc):
                return function.impl, index
            if isinstance(function, FunctionType):     # tanh's `_one_minus_square`: its twin
                return _on_arrays(function), index
    return _on_arrays(partial), index


def resolve_sweep_forms():
    """The elementwise primitives' sweep forms again, once every primitive exists: a partial
    derivative naming a primitive defined after its own (sin's `lambda x: cos(x)`) is then
    that primitive's ufunc, no longer its twin's frame; and the twins' globals complete.
    (primitives/__init__.py calls it.)"""
    for known in _IMPL_GLOBALS.values():
        _fill(*known)
    for prim in REGISTRY.values():
        if prim.family == "elementwise" and prim.input_rules is not None:
            residuals = ("x", "y", "z")[:len(prim.partials)] + ("out",)
            prim.input_rules = tuple(
                (scale, reads, *_sweep_form(d, residuals))
                for (scale, reads, _, _), d in zip(prim.input_rules, prim.partials))


def _scaler(partial, residuals):
    """The map `scale(t, values, params) -> t * partial`, in both modes (for complex values
    too: see core/numbers.py), specialised once for a number or a function (see
    `_partial_call`). A function may return a number, or a pair (number, array) applied
    number-first. No broadcasting and no cast: callers fit the result to its value."""
    if isinstance(partial, (int, float)):
        if partial == 1:
            def scale(t, values, params):
                return t
        elif partial == -1:
            def scale(t, values, params):
                return -t if type(t) is not np.ndarray or 0 not in t.strides \
                    else on_distinct(np.negative, t)
        else:
            def scale(t, values, params):
                return t * partial if type(t) is not np.ndarray or 0 not in t.strides \
                    else on_distinct(np.multiply, t, partial)
        return scale
    call = _partial_call(partial, residuals)
    names = list(inspect.signature(partial).parameters)
    # A partial reading one residual and no parameter (the common case) is called directly,
    # on a NumPy array as its twin calling the primitives' impls; one reading two residuals
    # and no parameter (x ** y) directly too.
    single = residuals.index(names[0]) if len(names) == 1 and names[0] in residuals else None
    pair = tuple(residuals.index(n) for n in names) \
        if len(names) == 2 and all(n in residuals for n in names) else None
    on_arrays = _on_arrays(partial)

    def scale(t, values, params):
        if single is not None:
            v = values[single]
            d = on_arrays(v) if type(v) is np.ndarray else partial(v)
        elif pair is not None:
            d = partial(values[pair[0]], values[pair[1]])
        else:
            d = call(values, params)
        kind = type(d)
        if kind is np.ndarray:
            if d.nbytes >= LARGE_TEMPORARY and type(t) is np.ndarray and _temporary(d, values) \
                    and d.shape == t.shape and d.dtype == t.dtype:
                return np.multiply(t, d, out=d)  # the same product, without a new large array
            return t * d
        # (a broadcast view t times a number: `on_distinct`, the size of t's own elements)
        broadcast = type(t) is np.ndarray and 0 in t.strides
        if kind is tuple:                    # (number, array): the number first
            return (on_distinct(np.multiply, t, d[0]) if broadcast else t * d[0]) * d[1]
        return t if kind is int and d == 1 else \
            on_distinct(np.multiply, t, d) if broadcast else t * d
    return scale


def _temporary(d, residuals) -> bool:
    """Whether the array `d` a partial derivative returned is a temporary of its own, which
    the product may overwrite: a writable array owning its memory (not a view) that is
    none of the residuals it was computed from (a partial may return one: `lambda y: y`)."""
    return d.base is None and d.flags.writeable and all(d is not r for r in residuals)


def _stand_in(value):
    """What a pullback keeps of an input it does not read: its shape and dtype."""
    return ShapeDtype(value.shape, value.dtype) if hasattr(value, "dtype") else value


def elementwise(name, ufunc, *partials, impl=None, operator=None, emit=None, domain=None,
                commutative=False, aliases=(), emit_statements=None, complex_rules=False,
                zero_preserving=(), emit_scalar=None):
    """An elementwise (broadcasting) primitive of one to three inputs, from its partial
    derivatives.

    `ufunc` is the NumPy or scipy.special ufunc it computes and answers for (`impl`
    overrides how it computes; `emit` the emitter; `aliases` are other ufuncs computing
    the same function, such as scipy.special.expm1 for numpy.expm1); `operator` the
    Python operator that computes it, as a source template ("{} + {}").
    `partials[i]` is the partial derivative with respect to input i: a number, or a
    function written with primitives whose parameter names say what it reads -- `x`, `y`
    and `z` for the inputs, `out` for the output, the primitive's parameters by name
    (`lambda out: 1.0 - square(out)` for tanh). The function may return a number, or a
    pair `(number, array)` for their product (x ** 2: `(2.0, x)`): the cotangent is
    multiplied by the number first, which a lazy `Scaled` cotangent folds into its
    scale, saving a pass over the data. A partial derivative without a closed form is a
    function raising an error that says so (it runs only when that input is differentiated).
    `complex_rules`: the partials hold for complex values (holomorphic primitives,
    core/numbers.py). `zero_preserving`: see core/primitive.py. `emit_scalar` (default: the
    ufunc's, for a NumPy ufunc computed as such) writes one element for the fused tier.
    """
    prim = None
    impl = impl or ufunc
    residuals = ("x", "y", "z")[:len(partials)] + ("out",)
    scales = [_scaler(d, residuals) for d in partials]
    subtracted = [type(d) is int and d == -1 for d in partials]    # t_out - t, not + (-t)

    def jvp(primals, tangents, **params):
        out = prim(*primals, **params)
        values = (*primals, out)
        tangent_out = ZERO
        for scale, minus, t in zip(scales, subtracted, tangents):
            if t is ZERO:
                continue
            if tangent_out is ZERO:
                tangent_out = scale(t, values, params)
            else:
                tangent_out = tangent_out - t if minus else tangent_out + scale(t, values, params)
        if tangent_out is ZERO:
            return out, ZERO
        if tangent_out.shape != out.shape:
            tangent_out = np.broadcast_to(tangent_out, out.shape)   # a primitive on tracers
        if tangent_out.dtype != out.dtype:       # SciPy promotions, real functions of complex z
            tangent_out = cast(tangent_out, out.dtype)
        return out, tangent_out

    # A pullback keeps only the residuals its derivatives read (and the shapes and dtypes
    # of the other inputs), so intermediate results die as soon as the forward pass is
    # done with them: less memory, and buffers NumPy reuses while they are still cached.
    reads = [_reads(d, residuals) for d in partials]
    if len(partials) == 1:
        (scale,) = scales
        keep_x, keep_out = reads[0]

        def vjp(wrt, out, x, **params):
            # One input: no broadcasting; a cast only where the output's dtype differs
            # (a SciPy ufunc computing float16 in float64).
            kept = (x if keep_x else None, out if keep_out else None)
            x_type = out.dtype != x.dtype and _stand_in(x)

            def pullback(ct):
                ct_x = scale(ct, kept, params)
                return (unbroadcast(ct_x, x_type) if x_type else ct_x,)
            return pullback
    elif len(partials) == 2:
        (scale_x, scale_y), (reads_x, reads_y) = scales, reads
        keeps = {(True, False): reads_x, (False, True): reads_y,      # per wrt pattern
                 (True, True): tuple(a or b for a, b in zip(reads_x, reads_y))}

        def vjp(wrt, out, x, y, **params):
            wrt_x, wrt_y = wrt
            keep_x, keep_y, keep_out = keeps[wrt_x, wrt_y]
            values = (x if keep_x else None, y if keep_y else None, out if keep_out else None)
            # Of the inputs differentiated, the shapes and dtypes to un-broadcast to.
            x_shape, x_dtype = (getattr(x, "shape", ()), getattr(x, "dtype", None)) \
                if wrt_x else (None, None)
            y_shape, y_dtype = (getattr(y, "shape", ()), getattr(y, "dtype", None)) \
                if wrt_y else (None, None)

            def pullback(ct):
                ct_x = ct_y = ZERO
                if wrt_x:
                    ct_x = scale_x(ct, values, params)
                    if ct_x.shape != x_shape or ct_x.dtype != x_dtype:
                        ct_x = unbroadcast_to(ct_x, x_shape, x_dtype)
                if wrt_y:
                    ct_y = scale_y(ct, values, params)
                    if ct_y.shape != y_shape or ct_y.dtype != y_dtype:
                        ct_y = unbroadcast_to(ct_y, y_shape, y_dtype)
                return ct_x, ct_y
            return pullback
    else:
        def vjp(wrt, out, *inputs, **params):
            # Three inputs (rare: scipy.special.betainc): keep what any partial reads.
            keep = [any(r[i] for r, w in zip(reads, wrt) if w) for i in range(len(residuals))]
            values = tuple(v if k else _stand_in(v) for v, k in zip(inputs, keep)) + (
                out if keep[-1] else None,)

            def pullback(ct):
                return tuple(unbroadcast(scale(ct, values, params), v) if w else ZERO
                             for scale, v, w in zip(scales, values, wrt))
            return pullback

    ufuncs = tuple(f for f in (ufunc, *aliases) if isinstance(f, np.ufunc))
    prim = Primitive(name, impl, shape=elementwise_shape(impl), jvp=jvp,
                     vjp=vjp,
                     input_rules=tuple((scale, read, *_sweep_form(d, residuals))
                                       for scale, read, d in zip(scales, reads, partials)),
                     batch=lambda values, dims, **params: batch_elementwise(prim, values, dims,
                                                                            **params),
                     emit=emit or (ufunc_emitter(ufunc) if ufuncs else None),
                     partials=partials, numpy_functions=ufuncs, python_operator=operator,
                     commutative=commutative, sparsity="elementwise",
                     scaled_cotangents=True, domain=domain, family="elementwise",
                     fresh_output=True, emit_statements=emit_statements,
                     complex_rules=complex_rules, zero_preserving=zero_preserving,
                     emit_scalar=emit_scalar or (ufunc_scalar(ufunc) if impl is ufunc
                                                 and ufuncs else None))
    return prim


def constant(name, impl, shape=None, *, batch=None, emit=None, domain=(REALS,),
             family="elementwise", fresh_output=False, commutative=False, operator=None,
             emit_statements=None, complex_rules=False, emit_scalar=None):
    """A primitive with zero derivative everywhere it is defined (no derivative rules).

    Without `shape` and `batch` it is elementwise. `domain` gives one value interval
    (or "bool") per input, for the tests. A NumPy ufunc's result is always a new array
    (`fresh_output`) and answers for it (`numpy_functions`); other implementations say so
    themselves.
    """
    ufunc = isinstance(impl, np.ufunc)
    prim = Primitive(name, impl, shape=shape or elementwise_shape(impl), differentiable=False,
                     batch=batch or (lambda values, dims, **params: batch_elementwise(
                         prim, values, dims, **params)),
                     emit=emit or (ufunc_emitter(impl) if ufunc else None),
                     numpy_functions=(impl,) if ufunc else (), python_operator=operator,
                     commutative=commutative, emit_statements=emit_statements,
                     domain=domain, family=family, fresh_output=fresh_output or ufunc,
                     complex_rules=complex_rules,
                     emit_scalar=emit_scalar or (ufunc_scalar(impl) if ufunc and shape is None
                                                 else None))
    return prim


# ----------------------------------------------------------------------- linear

def linear(name, impl, shape, transpose, batch, *, emit=None, family="structural",
           fresh_output=False, transpose_kind=None, sparsity="gather", complex_rules=True,
           domain=None, emit_scalar=None, scalar_reduction=None, emit_statements=None,
           cotangent_rule=None):
    """A primitive linear in its (single) array input.

    `transpose(ct, x, **params)` pulls a cotangent back; it is only ever called
    with `x` as a shape/dtype reference, never for its values. By default each output
    element is one input element or zero (`sparsity="gather"`), and real coefficients
    make the rules right for complex values too (`complex_rules`).
    """
    prim = None

    def jvp(primals, tangents, **params):
        return prim(*primals, **params), prim(*tangents, **params)

    def vjp(wrt, out, x, **params):
        def pullback(ct):
            return (transpose(ct, x, **params),)
        return pullback

    prim = Primitive(name, impl, shape=shape, jvp=jvp, vjp=vjp, batch=batch,
                     emit=emit, emit_statements=emit_statements,
                     family=family, fresh_output=fresh_output, transpose_kind=transpose_kind,
                     sparsity=sparsity, complex_rules=complex_rules, domain=domain,
                     emit_scalar=emit_scalar, scalar_reduction=scalar_reduction,
                     cotangent_rule=cotangent_rule)
    return prim


# -------------------------------------------------------------- via a composite

def derivatives_from(composite, name):
    """jvp and vjp rules equal to the derivatives of `composite(*primals, **params)`.

    For primitives whose fast `impl` has no convenient closed-form derivative, but
    which can be written (more slowly) with other primitives: differentiating the
    composite is exact and differentiable again.
    """
    def jvp(primals, tangents, **params):
        (out,), (tangent,) = jvp_flat(lambda *args: [composite(*args, **params)], primals,
                                      tangents)
        return out, tangent

    def vjp(wrt, out, *primals, **params):
        positions = [i for i, w in enumerate(wrt) if w]

        def partial(*diff_args):
            args = list(primals)
            for i, a in zip(positions, diff_args):
                args[i] = a
            return [composite(*args, **params)]

        _, back = vjp_flat(partial, [primals[i] for i in positions])

        def pullback(ct):
            cts = [ZERO] * len(primals)
            for i, c in zip(positions, back([ct])):
                cts[i] = c
            return tuple(cts)
        return pullback

    return {"jvp": jvp, "vjp": vjp}


# --------------------------------------------------------------------- batching
# Batch rules take (values, dims, **params), where dims[i] is the batch axis of
# values[i] or None, and return (out, out_dim). They compute with array methods
# and primitives, so they work on plain arrays and on tracers of outer levels.

def batch_size(values, dims):
    for v, d in zip(values, dims):
        if d is not None:
            return v.shape[d]
    raise ValueError("no batched argument")


def batch_elementwise(prim, values, dims, **params):
    """Broadcasting primitives: batch axes to the front, batched operands padded to
    the common rank so that NumPy broadcasting lines the examples up."""
    ranks = [len(shape_of(v)) - (d is not None) for v, d in zip(values, dims)]
    rank = max(ranks)
    args = []
    for v, d, r in zip(values, dims, ranks):
        if d is not None:
            v = moveaxis(v, d, 0)
            if r < rank:
                v = v.reshape(v.shape[:1] + (1,) * (rank - r) + v.shape[1:])
        args.append(v)
    return prim(*args, **params), 0


def batch_reduction(prim, values, dims, axis, **params):
    """Reductions over a tuple of axes: the batch axis goes first, the others shift by one."""
    return prim(moveaxis(values[0], dims[0], 0), axis=tuple(i + 1 for i in axis), **params), 0


def batch_along_axis(prim, values, dims, axis, **params):
    """Scans and arg-reductions along one axis: the batch axis goes first."""
    return prim(moveaxis(values[0], dims[0], 0), axis=axis + 1, **params), 0


def batch_stacked(prim, values, dims, **params):
    """Primitives that already map over leading axes (linear algebra on stacks)."""
    moved = [v if d is None else moveaxis(v, d, 0) for v, d in zip(values, dims)]
    out = prim(*moved, **params)
    return (out, [0] * len(out)) if prim.multiple_results else (out, 0)


def batch_by_loop(prim, values, dims, **params):
    """The fallback for rare cases: run each example and stack (correct, not fast)."""
    outs = []
    for i in range(batch_size(values, dims)):
        example = [v if d is None else moveaxis(v, d, 0)[i] for v, d in zip(values, dims)]
        outs.append(prim(*example, **params))
    if prim.multiple_results:
        return [np.stack([o[k] for o in outs]) for k in range(len(outs[0]))], [0] * len(outs[0])
    return np.stack(outs), 0
