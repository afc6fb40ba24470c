"""Primitives: the operations the engine knows, each with every fact about it in one place.

A `Primitive` carries its rules and facts side by side; family constructors
(primitives/families.py) fill them in for whole families, and every other layer
(transformations, dispatch from NumPy, passes, code generation) reads them here:

- `impl(*arrays, **params)`: the concrete NumPy evaluation;
- `shape(*avals, **params)`: abstract evaluation, output `ShapeDtype`(s) from input
  shapes/dtypes (Python scalars stand for themselves: they are weakly typed);
- `jvp(primals, tangents, **params) -> (out, tangent_out)`: the pushforward, written
  with primitives so that it is differentiable again; tangents may be `ZERO`;
- `vjp(wrt, out, *primals, **params) -> pullback`: builds a closure over the
  residuals (closures named `pullback` in a rule's code are named after the primitive:
  `named_closures`); `pullback(cotangent)` returns one cotangent per input (`ZERO` allowed;
  entries whose `wrt` flag is False are ignored and need not be computed);
- `value_and_vjp(wrt, *primals, **params) -> (out, pullback)`: optional, used by reverse
  mode instead of evaluating then calling `vjp` when one computation yields both (a
  custom_vjp function's `fwd`: running `fun` as well would double the cost);
- `batch(values, dims, **params) -> (out, out_dim)`: the rule used by `vmap`;
- `emit(args, out=None, **params) -> str`: a Python expression computing the primitive
  with NumPy from the argument expressions, for generated code (None: a call of the
  primitive itself, always correct); `out` names a buffer of the output's shape and
  dtype to write into, given to a rule that takes it (elementwise primitives computed by
  a NumPy ufunc, matmul): code generation's buffers kept from call to call, and for
  elementwise ones a dead operand's buffer;
- `emit_statements(targets, args, code, **params) -> list of lines, or None`: statements
  assigning the output names `targets` from the argument expressions `args`, where one
  expression cannot say it: a loop, a branch (their sub-programs run through
  `code.run`), an indexed assignment into a new array, a NumPy or SciPy call pullback's
  namespace does not dispatch. `code` is the writer: ir/codegen.py's module, or `show`'s
  printer (ir/readable.py) where `code.reading` is True and the statements must be plain
  NumPy a person would write; `code.equation` is the equation being written. None: no
  statements for this writer (statements on arrays only, such as `out[:-1] = g`, are
  for reading: generated code that also runs on tracers then calls the primitive);
- `emit_scalar(args, dtypes, **params) -> str`: for the fused tier (ir/fused.py), the
  expression computing one output element from its operands' elements (`args`: scalar
  expressions, `dtypes`: their NumPy dtypes), in the subset of NumPy Numba compiles;
  None (or a rule returning None for these dtypes): never fused;
- `scalar_reduction(dtype) -> (identity, combine)`: for a reduction the fused tier may
  compute in the loop that produces its operand: the identity and the template
  combining the accumulator with one element (`"{} + {}"`), or None for that dtype;
- `adds_at_index`: for embed and scatter_add, which the fused tier may compute in the
  loop producing the values they add: (position of the operand added into, None for
  zeros of the `shape` parameter; position of the values), added at the `index`
  parameter (fused only for basic indices);
- `input_rules`: for the elementwise family, each input's derivative alone, as data the
  transformations apply without a closure: per input `(scale, reads, partial, index)`, where
  `scale(t, residuals, params)` is `t` times that input's partial derivative: the output's
  tangent from the input's tangent, or the input's cotangent from the output's (before
  broadcasting to the output's shape, or summing to the input's, and casting: the
  transformations fit it), and `residuals` holds the values `(x, [y, [z]], out)` flagged in
  `reads` (None for the others). Forward and reverse mode use them where one input (reverse
  mode: or two) is differentiated (transforms/forward.py, reverse.py); in reverse mode `t` may
  be a lazy `Scaled` cotangent (so `scaled_cotangents` must be set). `(partial, index)`
  (optional when constructing: `(None, None)`) is the input's sweep form, for reverse
  mode's sweep on a NumPy cotangent: where the partial derivative reads the residual
  `index` alone, `partial` computes it from that NumPy value with NumPy (None: it is the
  value itself), so the sweep needs no call of the scale;
- `cotangent_rule(ct, shape, params)`: for a primitive linear in its only operand (getitem at
  a basic index), that operand's cotangent from the output's `ct` (a NumPy array or scalar,
  a lazy cotangent, or a tracer), given the operand's shape: reverse mode records such a
  bind of a NumPy array as data, like the elementwise ones, with no closure per bind;
- `input_cotangents`: for a primitive of two inputs linear in each (matmul), reverse mode's
  rules as data: per input `(rule, reads)` in `input_rules`' form, `rule(ct, residuals,
  params)` that input's cotangent from the output's `ct` (a NumPy array or scalar, lazy or
  traced; the sweep fits its shape and dtype); reverse mode records a bind of two NumPy
  arrays with it like an elementwise one, with no closure per bind;
- `partials`: for the elementwise family, the partial derivatives as data, one per input:
  a number, or a function whose parameter names say what it reads (`x`, `y`: the inputs,
  `out`: the output, and parameters by name), written with primitives;
- `numpy_functions`: the NumPy/SciPy callables the primitive answers for (`np.sin`);
- `python_operator`: the Python operator computing it, as a source template (`"{} + {}"`),
  on Python scalars (giving Python scalars: weakly typed) and arrays alike; derived from it,
  `scalar_operator`: the Python function computing it bit for bit on NumPy's real scalars
  (core/arrays.py's `SCALAR_OPERATORS`; None where none does), which both modes apply to them;
- `commutative`: exchanging its two inputs never changes its result (NaN included);
- `fresh_output`: every output is a new array sharing memory with no input (nor with
  another output), in `impl` and in the emitted code alike. The default, False, means
  "may be a view": generated code then never writes into the inputs' buffers while the
  output lives;
- `sparsity`: how dependencies flow through it, for sparsity detection (pullback/sparse/
  detection.py interprets the kinds): "elementwise" (through broadcasting, not through a
  zero partial), "same", "gather" (each output element is one input element or zero: its
  jvp applied to element ids says which), "select", "reduce", "scan", "matmul",
  "einsum", "embed", "scatter_add", "scatter_set"; None: every output element may depend
  on every input element (no exact rule). A primitive with zero derivative has none;
- `transpose_kind`: "uniform" (a sum: its transpose spreads one number) or "embedding"
  (indexing: its transpose places values into zeros), which reverse mode keeps lazy
  (transforms/cotangents.py); `scaled_cotangents`: the pullback takes reverse mode's
  lazy `Scaled` cotangents (they multiply and negate like arrays);
- `zero_preserving`: for elementwise primitives, the argument positions where a zero gives a
  zero result whatever the other arguments are (multiply: both, divide: the numerator), up
  to the sign of the zero; batching over a one-hot basis keeps such results structural
  (primitives/basis.py);
- `prune(equation, used) -> equation or None`: for dead-code elimination
  (ir/passes.py), where some outputs are used (`used`: one flag per output), a smaller
  equation computing the used ones (its outputs among the equation's), or None: keep it
  whole. A loop drops its dead carries and ys, and the inputs nothing then reads;
- `staged_form(*args, **params) -> output or None`: where a bind's operands take a form
  that staged programs do not hold (matmul of a 1-d operand), the same computation written
  with primitives in the form they do hold (the matrix product between reshapes), which
  staging binds instead (ir/staging.py): passes, code generation and sparsity detection see
  only that form. None: staged as it is;
- `complex_rules`: its rules are right for complex values under the convention of
  core/numbers.py (a holomorphic primitive's real rules are; non-holomorphic ones need
  rules of their own). Without it, complex values meeting a derivative through it raise.

Positional arguments are arrays, keyword arguments are static parameters: tracers
only ever appear positionally. A primitive whose output has zero derivative
(piecewise-constant functions, comparisons, integer results) says
`differentiable=False` and needs no derivative rules.

Calling a primitive binds it: with no tracer among the arguments it runs `impl`
directly (plain NumPy speed); otherwise the innermost transformation among the
arguments processes it.
"""
import warnings
from types import CodeType, FunctionType
from typing import Any, Callable, NamedTuple

import numpy as np

from .arrays import SCALAR_OPERATORS, foreign_library
from .engine import Tracer, find_top_trace
from ..errors import ArrayLibraryError

# Operand types that are certainly NumPy's own: the fast path of `Primitive.__call__`.
PLAIN_TYPES = frozenset({np.ndarray, float, int, bool, complex, np.float64, np.float32,
                         np.int64, np.int32, np.bool_, np.complex128, np.complex64})


class _Zero:
    """Symbolic zero tangent/cotangent: never materialised unless a rule needs it."""
    __slots__ = ()

    def __repr__(self):
        return "ZERO"

    def __reduce__(self):
        return "ZERO"


ZERO = _Zero()


class ShapeDtype(NamedTuple):
    """An abstract value: what the shape rule of a primitive returns."""
    shape: tuple
    dtype: np.dtype


REGISTRY: dict[str, "Primitive"] = {}


def registered(name: str) -> "Primitive":
    """The primitive of that name (how a pickled primitive comes back)."""
    return REGISTRY[name]


class Primitive:
    """An operation with its rules; calling it binds it to the current transformation."""

    __slots__ = ("name", "impl", "shape", "jvp", "vjp", "value_and_vjp", "batch", "emit",
                 "partials", "numpy_functions", "python_operator", "commutative", "differentiable",
                 "scalar_operator",
                 "multiple_results", "scaled_cotangents", "transpose_kind", "sparsity", "domain",
                 "family", "fresh_output", "emit_statements", "complex_rules", "zero_preserving",
                 "emit_scalar", "scalar_reduction", "adds_at_index", "input_rules", "prune",
                 "cotangent_rule", "input_cotangents", "staged_form", "__weakref__")

    def __init__(self, name: str, impl: Callable, *, shape: Callable, jvp: Callable = None,
                 vjp: Callable = None, value_and_vjp: Callable = None, batch: Callable = None,
                 emit: Callable = None, partials: tuple = None, numpy_functions: tuple = (),
                 python_operator: str = None, commutative: bool = False, differentiable: bool = True,
                 multiple_results: bool = False, scaled_cotangents: bool = False,
                 transpose_kind: str = None, sparsity: str = None, domain: Any = None,
                 family: str = "", fresh_output: bool = False, emit_statements: Callable = None,
                 complex_rules: bool = False, zero_preserving: tuple = (),
                 emit_scalar: Callable = None, scalar_reduction: Callable = None,
                 adds_at_index: tuple = None, input_rules: tuple = None,
                 prune: Callable = None, cotangent_rule: Callable = None,
                 input_cotangents: tuple = None, staged_form: Callable = None):
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} is defined twice")
        if input_rules is not None and not scaled_cotangents:
            raise ValueError(f"primitive {name!r}: input_rules scales take Scaled cotangents; "
                             "set scaled_cotangents=True")
        if differentiable and (jvp is None or vjp is None and value_and_vjp is None):
            raise ValueError(f"primitive {name!r} is differentiable but lacks a jvp or vjp rule")
        self.name, self.impl, self.shape = name, impl, shape
        self.jvp = named_closures(jvp, name)
        self.vjp = named_closures(vjp, name)
        self.value_and_vjp = named_closures(value_and_vjp, name)
        self.batch, self.emit, self.partials = batch, emit, partials
        self.numpy_functions, self.commutative = tuple(numpy_functions), commutative
        self.python_operator = python_operator
        self.scalar_operator = SCALAR_OPERATORS.get(python_operator)
        self.differentiable = differentiable
        self.multiple_results = multiple_results
        self.scaled_cotangents = scaled_cotangents
        self.transpose_kind, self.sparsity = transpose_kind, sparsity
        self.domain = domain
        self.family = family
        self.fresh_output = fresh_output
        self.emit_statements = emit_statements
        self.complex_rules = complex_rules
        self.zero_preserving = tuple(zero_preserving)
        self.emit_scalar, self.scalar_reduction = emit_scalar, scalar_reduction
        self.adds_at_index = adds_at_index
        self.input_rules = input_rules and tuple(
            (named_closures(scale, name), reads, *(sweep or (None, None)))
            for scale, reads, *sweep in input_rules)
        self.prune, self.staged_form = prune, staged_form
        self.cotangent_rule = cotangent_rule
        self.input_cotangents = input_cotangents and tuple(
            (named_closures(rule, name), reads, None, None) for rule, reads in input_cotangents)
        REGISTRY[name] = self

    def __reduce__(self):          # by name: a staged program sent to Dask's workers
        return registered, (self.name,)

    def __call__(self, *args, **params):
        # bind(), inlined here because it is the hottest path of the library: the innermost
        # trace among the arguments processes it (find_top_trace, inlined).
        top = None
        plain = True
        for a in args:
            if type(a) not in PLAIN_TYPES:
                if isinstance(a, Tracer):
                    trace = a._trace
                    if top is None or trace.level > top.level:
                        top = trace
                    elif trace is not top and trace.level == top.level:
                        return find_top_trace(args)           # raises: an escaped tracer
                else:
                    plain = False
        if top is not None:
            if not top.active:
                return find_top_trace(args)                   # raises: an escaped tracer
            return top.process_primitive(self, args, params)
        if plain:
            return self.impl(*args, **params)
        return self._call_on_other_arrays(args, params)

    def _call_on_other_arrays(self, args, params):
        """The impl on operands that may belong to another array library (Dask, CuPy ...):
        where that library lacks the operation (it raises, or warns that it falls back to
        NumPy, which would compute a lazy array) say so rather than compute silently."""
        library = foreign_library(args)
        if library is None:
            return self.impl(*args, **params)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", FutureWarning)
                return self.impl(*args, **params)
        except Exception as error:
            raise ArrayLibraryError(
                f"primitive {self.name!r} failed on {library} arrays ({type(error).__name__}: "
                f"{error}): {library} lacks this operation or this form of it. Compute the "
                "inputs with NumPy (np.asarray), or express the step with operations "
                f"{library} supports.") from error

    def __repr__(self):
        return f"<primitive {self.name}>"


RULE_CLOSURES = ("pullback", "pushforward", "scale")     # names `named_closures` qualifies


def named_closures(rule: Callable, prim_name: str) -> Callable:
    """`rule` (a rule of the primitive `prim_name`) with the closures its code defines named
    `pullback`, `pushforward` or `scale` (and itself, if so named) renamed `<prim>_pullback`,
    `<prim>_pushforward` or `<prim>_scale` in its code. `Primitive` does this once for each of its rules, so a
    closure a rule makes per call costs nothing to name, and tracebacks (which read the
    code's name) and reprs say which primitive it belongs to. A copy: rules shared by several
    primitives keep their own names.

    >>> def vjp(ct):
    ...     def pullback(x):
    ...         return x
    ...     return pullback
    >>> named_closures(vjp, "sin")(1.0).__name__
    'sin_pullback'
    """
    if not isinstance(rule, FunctionType):
        return rule

    def renamed(code):
        code = code.replace(co_consts=tuple(renamed(c) if isinstance(c, CodeType) else c
                                            for c in code.co_consts))
        if code.co_name not in RULE_CLOSURES:
            return code
        name = f"{prim_name}_{code.co_name}"
        return code.replace(co_name=name, co_qualname=name)
    code = renamed(rule.__code__)
    named = FunctionType(code, rule.__globals__, code.co_name, rule.__defaults__, rule.__closure__)
    named.__kwdefaults__, named.__doc__ = rule.__kwdefaults__, rule.__doc__
    named.__qualname__ = code.co_qualname if code.co_name != rule.__code__.co_name \
        else rule.__qualname__
    named.__dict__.update(rule.__dict__)
    return named
