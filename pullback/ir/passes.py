"""Optimisation passes over staged programs: smaller derivative programs, same results.

Contract. A pass is a function `Program -> Program`. It returns a new program and
never modifies its argument: the equations it leaves alone, `Var`s, `Literal`s and
constant values (never mutated by anyone) are shared, so `optimize` sees that a round
changed nothing by identity, in linear time. The result has the same
inputs and computes the same outputs with the same shapes and dtypes -- NumPy
broadcasting and NumPy 2 promotion of weakly typed Python scalars included -- and
passes `typecheck`. Values are the same bit for bit, NaN and Inf included (a NaN
stays a NaN; the sign bit of a NaN, which IEEE arithmetic leaves unspecified, may
not), with these documented exceptions, all in `simplify` but the last:

- `sum(broadcast_to(y))` becomes a sum over y's own elements times the number of
  copies: a floating-point reassociation (`n * v` for `v + ... + v`);
- literal scale factors gather: `c * (k * x) -> (c*k) * x`, `c * (x / k) -> (c/k) * x`,
  `(k * x) / c -> (k/c) * x`, `(x / k) / c -> x / (k*c)`: reassociations, done only
  when both factors magnify or both shrink (so an intermediate overflows exactly when
  the folded product does: no Inf appears or vanishes), or both are powers of two and
  the inner one shrinks (exact then, but where the intermediate is subnormal: the
  folded result is the more accurate), and the folded factor is
  finite, nonzero and normal in x's dtype; `(k * x) + (k * x) -> (2k) * x` likewise;
- `embed(a, i) + embed(b, i) -> embed(a + b, i)` with index arrays that repeat an
  index sums the repeated terms in another order (a reassociation; exact otherwise);
- a power-of-two literal factor moves across a matrix product to the smallest of its
  operands and result (`(2 * a) @ b -> 2 * (a @ b)` where the product is smaller): exact
  unless an intermediate over- or underflows in one order and not the other;
- `x + 0 -> x`, `0 - x -> -x` and `x * 0 -> 0` may flip the sign of a zero result
  (-0.0 for +0.0; they compare equal), as XLA's algebraic simplifier does; so may
  `x + embed(b, i) -> scatter_add(x, b, i)` (no `+ 0.0` around b), scatter_adds
  filling an embed's zeros piece by piece becoming one concatenate, `(-x) - y ->
  -(x + y)`, and `a @ b -> a * b` for a contraction of length 1 (BLAS may add a
  -0.0 product to +0.0);
- dropping a conversion to x's own dtype (a copy) hands x's memory layout to the
  next equation, and NumPy's matmul and reductions may sum in another order on
  another layout (last-bit differences). Equal constants are shared only when
  their layouts are equal too;
- `merge_products` turns matrix-vector products sharing their matrix into one matrix
  product, and `contiguous_transposes` lays a transposed constant out in C order: BLAS
  may sum the same dot products in another order (last bits).

`x * 0` is folded only when `x` is known to be finite (integer or boolean values,
finite constants): for a float variable it is not, and `inf * 0` is NaN.

`optimize` applies `PASSES` in order, round after round, until a round changes
nothing (at most `max_rounds` rounds). Sub-programs in equations' parameters (loop bodies,
branches) are optimised first, once each, keeping their inputs and outputs.
"""
import math
import time
from collections import Counter
from dataclasses import replace

import numpy as np

from ..core.arrays import aligned_copy
from ..core.indexing import Slice
from ..core.primitive import ShapeDtype
from ..primitives.contraction import matmul
from ..primitives.elementwise import add, divide, multiply, negative, subtract
from ..primitives.reductions import sum as reduce_sum
from ..primitives.structural import (broadcast_to, concatenate, convert, embed, getitem, reshape,
                                     scatter_add,
                                     transpose)
from ..transforms.cotangents import may_fold, normal_factor
from .program import Equation, Literal, Program, Var, abstract, gc_paused

MAX_FOLD_SIZE = 10**6       # constant folding leaves larger results to run time


def _is_var(x):
    return type(x) is Var


def _operand(x):
    """What a shape rule sees for an operand: a Literal's Python scalar or a Var's type."""
    return abstract(x)


def _rebuilt(program, equations, env=None, constants=None) -> Program:
    """A copy of `program` with new equations (and constants), its outputs read through
    `env` (Var -> replacement), a replaced output keeping its preferred name. Equations
    are shared, never modified."""
    env = env or {}
    constants = list(zip(program.constvars, program.consts)) if constants is None else constants
    outvars = [env.get(x, x) if _is_var(x) else x for x in program.outvars]
    names = dict(program.names)
    for old, new in zip(program.outvars, outvars):
        if old is not new and old in names and new not in names:
            names[new] = names[old]
    return replace(program, equations=equations, constvars=[v for v, _ in constants],
                   consts=[c for _, c in constants], outvars=outvars, names=names)


def _read(inputs, env):
    return [env.get(x, x) if _is_var(x) else x for x in inputs]


def _reading(eq, env):
    """eq with its inputs read through `env`: eq itself when none is replaced."""
    if not env or not any(_is_var(x) and x in env for x in eq.inputs):
        return eq
    return Equation(eq.primitive, _read(eq.inputs, env), eq.params, eq.outputs, eq.source)


# ------------------------------------------------------------------- dead code

def eliminate_dead_code(program: Program) -> Program:
    """Drop the equations none of whose outputs is used, and the constants nobody reads.

    Primitives are pure, so a result nobody reads need not be computed. AD leaves
    many: the primal values of a linearised function, the unused halves of jvps. An
    equation used at all is replaced by its primitive's `prune` where it has one (a loop
    without its dead carries, or without the inputs its body ignores, such as the
    carries a reverse loop of a linear step never reads: then nothing stacks them).
    """
    live = {x for x in program.outvars if _is_var(x)}
    kept = []
    for eq in reversed(program.equations):
        used = [v in live for v in eq.outputs]
        if any(used):
            if eq.primitive.prune is not None:
                eq = eq.primitive.prune(eq, used) or eq
            kept.append(eq)
            live.update(x for x in eq.inputs if _is_var(x))
    constants = [(v, c) for v, c in zip(program.constvars, program.consts) if v in live]
    return _rebuilt(program, kept[::-1], constants=constants)


# --------------------------------------------------- common subexpressions

def _freeze(value):
    """A hashable key for a parameter, equal only for equal parameters: tuples, dtypes
    and scalars by value (with their types, so 1, 1.0 and True differ, as do 0.0 and
    -0.0), anything else (functions, arrays) by identity."""
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return dict, tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, float):
        return float, repr(value)
    if isinstance(value, np.generic):
        return type(value), value.tobytes()
    if value is None or value is Ellipsis or isinstance(value, (bool, int, str, np.dtype, type)):
        return type(value), value
    return "id", id(value)


def _operand_key(x):
    return ("var", id(x)) if _is_var(x) else ("literal", type(x.value).__name__, repr(x.value))


def _constant_key(value):
    """Bitwise identity of a numeric NumPy constant, memory layout included (a matmul may
    round differently on another layout); None: not compared."""
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufc" \
            and value.size <= MAX_FOLD_SIZE:
        return value.dtype.str, value.shape, value.strides, value.tobytes()
    return None


def eliminate_common_subexpressions(program: Program) -> Program:
    """Compute each (primitive, inputs, params) once, and keep one copy of equal constants.

    AD recomputes the same values many times (`2.0 * x` in the jvp and again in the
    vjp of `x ** 2`; one basis constant per batched pushforward). The operands of
    add and multiply are compared as unordered pairs.
    """
    env, constants, by_value = {}, [], {}
    for var, value in zip(program.constvars, program.consts):
        key = _constant_key(value)
        if key in by_value:
            env[var] = by_value[key]
            continue
        if key is not None:
            by_value[key] = var
        constants.append((var, value))
    seen, equations = {}, []
    for eq in program.equations:
        eq = _reading(eq, env)
        operands = [_operand_key(x) for x in eq.inputs]
        if eq.primitive.commutative:
            operands.sort()
        key = (eq.primitive, tuple(operands), _freeze(eq.params) if eq.params else (),
               eq.outputs[0].weak)
        if key in seen:
            env.update(zip(eq.outputs, seen[key]))
            continue
        seen[key] = eq.outputs
        equations.append(eq)
    return _rebuilt(program, equations, env, constants)


# ----------------------------------------------------------- constant folding

def _fold(eq, values):
    """The outputs of `eq` if its inputs are all known, small enough and it evaluates
    to exactly the recorded types; else None."""
    if not all(type(x) is Literal or x in values for x in eq.inputs):
        return None
    if sum(math.prod(v.aval.shape) for v in eq.outputs) > MAX_FOLD_SIZE:
        return None
    args = [x.value if type(x) is Literal else values[x] for x in eq.inputs]
    try:
        with np.errstate(all="ignore"):
            outs = eq.primitive.impl(*args, **eq.params)
    except Exception:       # noqa: BLE001 -- it fails at run time just the same: leave it there
        return None
    outs = outs if eq.primitive.multiple_results else (outs,)
    for var, out in zip(eq.outputs, outs):
        if np.shape(out) != tuple(var.aval.shape) or getattr(out, "dtype", None) != var.aval.dtype:
            return None
    return outs


def fold_constants(program: Program) -> Program:
    """Evaluate once, here, every equation whose inputs are all literals or constants.

    Its outputs become constants -- array constants, 0-d ones included: an equation's
    output is strongly typed (a NumPy float64, say), and turning it into a weakly typed
    Python scalar Literal would change how it promotes with float32 operands. Results
    of more than MAX_FOLD_SIZE elements, and equations that raise, are left alone.
    """
    constants = list(zip(program.constvars, program.consts))
    values, equations = dict(constants), []
    for eq in program.equations:
        outs = _fold(eq, values)
        if outs is None:
            equations.append(eq)
            continue
        for var, value in zip(eq.outputs, outs):
            values[var] = value
            constants.append((var, value))
    return _rebuilt(program, equations, constants=constants)


# ------------------------------------------------------ algebraic simplification

class _Rewriter:
    """One sweep of `simplify`: the new equations, who defines each variable, the
    constants (with their values) and the variables replaced so far."""

    def __init__(self, program):
        self.equations, self.env, self.producer, self.facts = [], {}, {}, {}
        self.source = ""        # the source of the equation being rewritten
        self.constants = list(zip(program.constvars, program.consts))
        self.values = dict(self.constants)
        self.outvars = {x for x in program.outvars if _is_var(x)}
        self.uses = {}          # how many times each variable of the input program is read
        for x in [x for eq in program.equations for x in eq.inputs] + program.outvars:
            if _is_var(x):
                self.uses[x] = self.uses.get(x, 0) + 1

    def single_use(self, x):
        """Whether x is read once in the program being rewritten (a new variable: no)."""
        return self.uses.get(x, 0) == 1 and x not in self.outvars

    def append(self, eq):
        self.equations.append(eq)
        self.producer.update((v, eq) for v in eq.outputs)

    def emit(self, primitive, inputs, params):
        """A new equation `primitive(inputs; params)`; returns its output variable."""
        aval = primitive.shape(*map(_operand, inputs), **params)
        out = Var(ShapeDtype(tuple(aval.shape), np.dtype(aval.dtype)))
        self.append(Equation(primitive, inputs, params, [out], self.source))
        return out

    def constant(self, value):
        var = Var(ShapeDtype(value.shape, value.dtype))
        self.constants.append((var, value))
        self.values[var] = value
        return var

    def forward(self, x, eq):
        """x itself in place of eq's output, if x is a strongly typed Var of its type."""
        out = eq.outputs[0].aval
        if _is_var(x) and not x.weak and tuple(x.aval.shape) == tuple(out.shape) \
                and np.dtype(x.aval.dtype) == np.dtype(out.dtype):
            return x
        return None

    def fit(self, x, eq):
        """Like `forward`, also broadcasting an x of the right dtype to the output's shape."""
        out = eq.outputs[0].aval
        if not _is_var(x) or x.weak or np.dtype(x.aval.dtype) != np.dtype(out.dtype):
            return None
        shape, target = tuple(x.aval.shape), tuple(out.shape)
        if len(shape) > len(target) or any(a not in (1, b) for a, b in
                                           zip(reversed(shape), reversed(target))):
            return None
        return self.forward(x, eq) or self.emit(broadcast_to, [x], {"shape": tuple(out.shape)})

    def typed(self, primitive, inputs, params, eq):
        """Whether `primitive(inputs; params)` has the type of eq's output."""
        aval = primitive.shape(*map(_operand, inputs), **params)
        out = eq.outputs[0].aval
        return tuple(aval.shape) == tuple(out.shape) and np.dtype(aval.dtype) == np.dtype(out.dtype)

    def retyped(self, eq, primitive, inputs, params=None):
        """The equation `primitive(inputs)` writing eq's output, if it has eq's output type."""
        params = eq.params if params is None else params
        aval = primitive.shape(*map(_operand, inputs), **params)
        out = eq.outputs[0].aval
        if tuple(aval.shape) == tuple(out.shape) and np.dtype(aval.dtype) == np.dtype(out.dtype):
            return Equation(primitive, inputs, params, eq.outputs, eq.source)
        return None

    def producer_of(self, x, primitive):
        """The equation of primitive `name` defining x, if its operand is a strong Var."""
        eq = self.producer.get(x) if _is_var(x) else None
        if eq is not None and eq.primitive is primitive and _is_var(eq.inputs[0]) \
                and not eq.inputs[0].weak:
            return eq
        return None

    def operand_of(self, x, primitive):
        eq = self.producer_of(x, primitive)
        return None if eq is None else eq.inputs[0]

    def _all(self, x, test):
        """Whether every element of the literal or numeric constant x passes `test`."""
        if type(x) is Literal:
            key = (test, type(x.value), x.value)      # NaN never matches: computed again
            if key not in self.facts:
                self.facts[key] = bool(test(np.asarray(x.value)))
            return self.facts[key]
        value = self.values.get(x)
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biufc":
            return False
        key = (x, test)
        if key not in self.facts:
            self.facts[key] = bool(np.all(test(value)))
        return self.facts[key]

    def is_zero(self, x):
        return self._all(x, _is_zero)

    def uniform(self, x):
        """The Python scalar every element of the numeric constant x is, bit for bit (a
        finite one: it is written into the source), or None."""
        value = self.values.get(x) if _is_var(x) else None
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biufc" \
                or value.size == 0 or value.size > MAX_FOLD_SIZE and any(value.strides):
            return None             # (one number broadcast is uniform at any size)
        key = (x, "uniform")
        if key not in self.facts:
            value = np.asarray(value)
            first = value.flat[:1]          # one element, copied: no copy of a broadcast
            scalar = first[0].item()
            same = all(st == 0 for st in value.strides) or np.array_equal(
                np.ascontiguousarray(value).reshape(-1).view(np.uint8).reshape(value.size, -1),
                np.broadcast_to(first.view(np.uint8), (value.size, value.itemsize)))
            finite = type(scalar) in (bool, int, float, complex) and bool(np.isfinite(first[0]))
            self.facts[key] = (scalar,) if same and finite else None
        fact = self.facts[key]
        return None if fact is None else fact[0]

    def is_one(self, x):
        return self._all(x, _is_one)

    def known_finite(self, x):
        """Integer or boolean values, a finite literal or constant, or a boolean converted."""
        if _is_var(x) and np.dtype(x.aval.dtype).kind in "biu":
            return True
        inner = self.operand_of(x, convert)
        return (inner is not None and np.dtype(inner.aval.dtype).kind == "b") \
            or self._all(x, np.isfinite)


def _is_zero(v):
    return v == 0


def _is_one(v):
    return v == 1


def _float_var(x):
    """A strongly typed variable of a real floating dtype (what the sign and scaling
    rewrites below apply to)."""
    return _is_var(x) and not x.weak and np.dtype(x.aval.dtype).kind == "f"


def _scalar(x):
    """The value of a finite int or float Literal (not a bool), else None."""
    if type(x) is Literal and type(x.value) in (int, float) and math.isfinite(x.value):
        return x.value
    return None


def _scaling(rw, v):
    """How v is a scaled float variable z: ("neg", -1, z) for -z, ("mul", c, z) for c * z
    or z * c, ("div", c, z) for z / c, with c a finite nonzero literal; else None."""
    eq = rw.producer.get(v) if _is_var(v) else None
    if eq is None:
        return None
    primitive, inputs = eq.primitive, eq.inputs
    if primitive is negative and _float_var(inputs[0]):
        return "neg", -1, inputs[0]
    if primitive is multiply:
        for a, z in (inputs, inputs[::-1]):
            if (c := _scalar(a)) is not None and c != 0 and _float_var(z):
                return "mul", c, z
    if primitive is divide and (c := _scalar(inputs[1])) is not None and c != 0 \
            and _float_var(inputs[0]):
        return "div", c, inputs[0]
    return None


def _negation(rw, x):
    """z if x = -z is a float variable read only there (so pushing the negation outward
    leaves no extra equation), else None."""
    z = rw.operand_of(x, negative)
    return z if z is not None and _float_var(z) and rw.single_use(x) else None


def _negated(rw, eq, primitive, inputs, params=None):
    """`-primitive(inputs)` written to eq's output, if the types allow; else None."""
    params = {} if params is None else params
    if not rw.typed(primitive, inputs, params, eq):
        return None
    return rw.retyped(eq, negative, [rw.emit(primitive, inputs, params)], {})


def _basic_embed(rw, x, shape):
    """The equation `embed(values; index, shape)` defining x, if its index has no index
    arrays and it places values (of the indexed shape) into zeros of `shape`."""
    eq = rw.producer_of(x, embed)
    if eq is None or len(eq.inputs) != 1 or tuple(eq.params["shape"]) != tuple(shape):
        return None
    values = eq.inputs[0].aval
    indexed = getitem.shape(ShapeDtype(tuple(shape), values.dtype), index=eq.params["index"])
    return eq if tuple(values.shape) == tuple(indexed.shape) else None


def _add(eq, rw):
    """x + 0 -> x (the sign of a zero may change, see the module docstring);
    x + (-y) -> x - y and (-x) + y -> y - x (exact: IEEE defines a - b as a + (-b));
    embed(a, i) + embed(b, i) -> embed(a + b, i) (embed is linear; exact for basic
    indices, a reassociation where repeated index arrays accumulate);
    x + embed(b, i) -> scatter_add(x, b, i) for a basic index i and an x of the output's
    type: the zeros around b are not added (an x of -0.0 there stays -0.0);
    (k * z) + (k * z) -> (2k) * z, so `0.5 * z + 0.5 * z` is z (exact but where k * z is
    subnormal: the folded result is then the more accurate);
    (z + c1) + c2 -> z + (c1 + c2) for constants that are never both nonzero (exact, see
    `_merged_constants`)."""
    merged = _merged_constants(eq, rw)
    if merged is not None:
        return merged
    x, y = eq.inputs
    scaled = _scaling(rw, x) if x is y else None
    if scaled is not None and scaled[0] == "mul" \
            and normal_factor(2 * scaled[1], scaled[2].aval.dtype) is not None \
            and (r := rw.retyped(eq, multiply, [Literal(2 * scaled[1]), scaled[2]], {})) is not None:
        return r
    for a, b in ((x, y), (y, x)):
        if rw.is_zero(b) and (r := rw.fit(a, eq)) is not None:
            return r
    for a, b in ((x, y), (y, x)):
        negated = rw.operand_of(b, negative)
        if negated is not None and (r := rw.retyped(eq, subtract, [a, negated])) is not None:
            return r
    ex, ey = rw.producer_of(x, embed), rw.producer_of(y, embed)
    if ex is not None and ey is not None and _freeze(ex.params) == _freeze(ey.params) \
            and ex.inputs[1:] == ey.inputs[1:] and ex.inputs[0].aval == ey.inputs[0].aval:
        values = [ex.inputs[0], ey.inputs[0]]
        total = add.shape(*map(_operand, values))
        if rw.typed(embed, [ex.inputs[0]] + ex.inputs[1:], ex.params, eq) \
                and ShapeDtype(tuple(total.shape), np.dtype(total.dtype)) == values[0].aval:
            return rw.retyped(eq, embed, [rw.emit(add, values, {})] + ex.inputs[1:], ex.params)
    out = eq.outputs[0].aval
    for a, b in ((x, y), (y, x)):
        inner = _basic_embed(rw, b, out.shape)
        if inner is not None and rw.forward(a, eq) is a \
                and np.dtype(inner.inputs[0].aval.dtype) == np.dtype(out.dtype):
            return rw.retyped(eq, scatter_add, [a, inner.inputs[0]],
                              {"index": inner.params["index"]})
    return None


def _merged_constants(eq, rw):
    """(z + c1) + c2 -> z + (c1 + c2), the inner sum read only here, where at each element
    c1 or c2 is a zero (of either sign): bit for bit the same. Adding +0.0 only turns a
    -0.0 into +0.0 and adding -0.0 changes nothing, and z + c, c nonzero, is never -0.0
    (x + (-x) is +0.0), so both orders give z + c1 + c2 with the zero term applied last."""
    out = eq.outputs[0].aval
    for inner, c2 in (eq.inputs, eq.inputs[::-1]):
        first = rw.producer.get(inner) if _is_var(inner) and rw.single_use(inner) else None
        if first is None or first.primitive is not add or c2 not in rw.values:
            continue
        for z, c1 in (first.inputs, first.inputs[::-1]):
            if not _is_var(z) or z in rw.values or c1 not in rw.values:
                continue
            a, b = np.asarray(rw.values[c1]), np.asarray(rw.values[c2])
            if a.dtype == b.dtype == np.dtype(out.dtype) and a.dtype.kind == "f" \
                    and a.size + b.size <= 2 * MAX_FOLD_SIZE and np.all((a == 0) | (b == 0)):
                return rw.retyped(eq, add, [z, rw.constant(np.asarray(a + b))], {})
    return None


def _subtract(eq, rw):
    """x - 0 -> x, x - (-y) -> x + y (exact), 0 - x -> -x (sign of zero, as x + 0);
    (-x) - y -> -(x + y) when -x is read only there (exact but for the sign of a zero)."""
    x, y = eq.inputs
    if rw.is_zero(y) and (r := rw.fit(x, eq)) is not None:
        return r
    negated = rw.operand_of(y, negative)
    if negated is not None and (r := rw.retyped(eq, add, [x, negated])) is not None:
        return r
    if rw.is_zero(x):
        return rw.retyped(eq, negative, [y], {})
    if (z := _negation(rw, x)) is not None and _is_var(y) and not y.weak:
        return _negated(rw, eq, add, [z, y])
    return None


def _gathered(outer, c, scaled):
    """One literal for `c * v` (outer "mul") or `v / c` (outer "div") where v is `scaled`
    (see `_scaling`): (primitive, inputs) computing it from v's variable z, or None.

    A negation folds exactly. Two scale factors fold into one (a reassociation) only
    when both magnify or both shrink (|factor| >= 1, or <= 1): then an intermediate
    overflows exactly when the folded product does (to rounding at the threshold), so
    no Inf appears or vanishes; and the folded factor must be finite, nonzero and normal
    in z's dtype.
    """
    kind, k, z = scaled
    if kind == "neg":
        return (multiply, [Literal(-c), z]) if outer == "mul" else (divide, [z, Literal(-c)])
    inner = k if kind == "mul" else 1 / k
    if not may_fold(inner, c if outer == "mul" else 1 / c) \
            and not (_power_of_two(k) and _power_of_two(c) and abs(inner) <= 1):
        return None
    if kind == "div" and outer == "div":
        primitive, factor = divide, k * c
    else:
        primitive = multiply
        factor = c * k if kind == "mul" and outer == "mul" else c / k if outer == "mul" \
            else k / c
    if normal_factor(factor, z.aval.dtype) is None:
        return None
    return (primitive, [Literal(factor), z]) if primitive is multiply \
        else (primitive, [z, Literal(factor)])


def _power_of_two(c) -> bool:
    """Whether c is +-2**n: scaling by it is exact unless the result is subnormal or
    overflows. (An inner factor that shrinks cannot overflow, so folding the outer one in
    changes only subnormal intermediates.)"""
    return isinstance(c, (int, float)) and c != 0 and math.isfinite(c) \
        and math.frexp(abs(c))[0] == 0.5


def _multiply(eq, rw):
    """x * 1 -> x (exact, NaN and Inf included); x * 0 -> zeros only for a finite x.

    Literal scale factors gather (x a float variable, c, k finite nonzero literals):
    c * (-x) -> (-c) * x (exact); c * (k * x) -> (c*k) * x and c * (x / k) -> (c/k) * x
    (reassociations, with the guards of `_gathered`). A negation read only here moves
    out of the product: (-x) * y -> -(x * y) (exact), so that it may cancel or fold
    into an add/subtract further on.
    """
    x, y = eq.inputs
    for a, b in ((x, y), (y, x)):
        if rw.is_one(b) and (r := rw.fit(a, eq)) is not None:
            return r
        if rw.is_zero(b) and rw.known_finite(a):
            out = eq.outputs[0].aval
            return rw.constant(np.broadcast_to(np.zeros((), out.dtype), out.shape))
    for a, b in ((x, y), (y, x)):
        c, scaled = _scalar(a), _scaling(rw, b)
        if c is not None and c != 0 and scaled is not None \
                and (folded := _gathered("mul", c, scaled)) is not None \
                and (r := rw.retyped(eq, *folded, {})) is not None:
            return r
    for a, b in ((x, y), (y, x)):
        if (z := _negation(rw, a)) is not None and _is_var(b) and not b.weak \
                and (r := _negated(rw, eq, multiply, [z, b])) is not None:
            return r
    for a, b in ((x, y), (y, x)):       # c * (u @ v) -> (c * u) @ v, u smaller than u @ v
        product = rw.producer_of(b, matmul)
        c = _scalar(a)
        if product is None or c is None or c == 0 or math.frexp(abs(c))[0] != 0.5 \
                or not rw.single_use(b):
            continue
        i = min((0, 1), key=lambda j: math.prod(product.inputs[j].aval.shape))
        operand = product.inputs[i]
        if _float_var(operand) and math.prod(operand.aval.shape) < math.prod(b.aval.shape):
            inputs = product.inputs[:i] + [rw.emit(multiply, [a, operand], {})] \
                + product.inputs[i + 1:]
            if (r := rw.retyped(eq, matmul, inputs, product.params)) is not None:
                return r
    return None


def _divide(eq, rw):
    """Literal divisors gather as in `_multiply` (x a float variable, c, k literals):
    (-x) / c -> x / (-c) (exact); (k * x) / c -> (k/c) * x and (x / k) / c -> x / (k*c)
    (reassociations, with the guards of `_gathered`); x / c -> x * (1/c) when c is a
    power of two (exact: 1/c is exact and normal, both round the same real number).
    A negation read only here moves out: (-x) / y -> -(x / y) and x / (-y) -> -(x / y)
    (exact)."""
    x, y = eq.inputs
    c = _scalar(y)
    if c is not None and c != 0:
        scaled = _scaling(rw, x)
        if scaled is not None and (folded := _gathered("div", c, scaled)) is not None \
                and (r := rw.retyped(eq, *folded, {})) is not None:
            return r
        if _float_var(x) and abs(math.frexp(c)[0]) == 0.5 \
                and normal_factor(1 / c, x.aval.dtype) is not None:
            return rw.retyped(eq, multiply, [x, Literal(1 / c)], {})
    if (z := _negation(rw, x)) is not None and _is_var(y) and not y.weak:
        return _negated(rw, eq, divide, [z, y])
    if (z := _negation(rw, y)) is not None and _is_var(x) and not x.weak:
        return _negated(rw, eq, divide, [x, z])
    return None


def _negative(eq, rw):
    """-(-x) -> x; -(c * x) -> (-c) * x and -(x / c) -> x / (-c) for a literal c (exact)."""
    inner = rw.operand_of(eq.inputs[0], negative)
    if inner is not None:
        return rw.forward(inner, eq)
    scaled = _scaling(rw, eq.inputs[0])
    if scaled is not None and scaled[0] != "neg":
        kind, c, z = scaled
        if kind == "mul":
            return rw.retyped(eq, multiply, [Literal(-c), z], {})
        return rw.retyped(eq, divide, [z, Literal(-c)], {})
    return None


def _matmul(eq, rw):
    """a @ b over a contraction of length 1 (an outer product, as the vjp of a matrix-vector
    product leaves) -> a * b, broadcasting (m, 1) against (1, n): one product per element,
    without a BLAS call (which may turn a -0.0 product into +0.0 as it accumulates).

    Not with a constant operand: a product with ones would then become a zero-strided
    broadcast, on which a later matmul or reduction may sum in another order."""
    a, b = eq.inputs
    if _is_var(a) and _is_var(b) and a not in rw.values and b not in rw.values \
            and a.aval.shape[-1:] == (1,):
        return rw.retyped(eq, multiply, [a, b], {})
    size = math.prod(eq.outputs[0].aval.shape)
    for i, x in enumerate(eq.inputs):         # (c * x) @ y -> c * (x @ y), the product smaller
        factor, z = _power_of_two_scaling(rw, x)
        if z is not None and rw.single_use(x) and math.prod(x.aval.shape) > size:
            inputs = eq.inputs[:i] + [z] + eq.inputs[i + 1:]
            if rw.typed(matmul, inputs, eq.params, eq):
                return rw.retyped(eq, multiply, [Literal(factor), rw.emit(matmul, inputs,
                                                                          eq.params)], {})
    return None


def _power_of_two_scaling(rw, x):
    """(c, z) where x is c * z, -z or z / k for a power of two c (1/k), else (None, None).
    Such a factor moves across a matrix product exactly (but where a value over- or
    underflows): `simplify` moves it to the smallest of the operands and the product."""
    scaled = _scaling(rw, x)
    if scaled is None:
        return None, None
    kind, c, z = scaled
    factor = 1 / c if kind == "div" else c
    return (factor, z) if math.frexp(abs(factor))[0] == 0.5 else (None, None)


def _embed(eq, rw):
    """embed(v, index, shape) whose index selects every element of `shape` in order (such
    as [:, 0] of an (n, 1) array) -> reshape(v, shape): no zeros to fill. Not for a
    program output, nor for a v that is a program input, a constant or possibly a view
    (the output of a primitive without `fresh_output`): the result would share their
    memory."""
    v = eq.inputs[0]
    shape = tuple(eq.params["shape"])
    if len(eq.inputs) != 1 or not _is_var(v) or v.weak or eq.outputs[0] in rw.outvars \
            or math.prod(shape) > MAX_FOLD_SIZE:
        return None
    source = rw.producer.get(v)
    if source is None or not source.primitive.fresh_output:
        return None
    ids = np.arange(math.prod(shape)).reshape(shape)
    try:
        selected = getitem.impl(ids, index=eq.params["index"])
    except Exception:                               # noqa: BLE001 -- leave it to run time
        return None
    if tuple(np.shape(selected)) != tuple(v.aval.shape) \
            or not np.array_equal(np.reshape(selected, -1), np.arange(ids.size)):
        return None
    return rw.retyped(eq, reshape, [v], {"shape": shape})


def _leading_piece(index, values, shape):
    """(start, length) of the leading-axis piece of `shape` that a basic index (one slice
    of step 1, or one integer) selects, if `values` fill it exactly; else None."""
    if len(index) != 1:
        return None
    entry, n, rest = index[0], shape[0], tuple(shape[1:])
    if type(entry) is Slice:
        start, stop, step = slice(*entry).indices(n)
        length = max(stop - start, 0)
        return (start, length) if step == 1 and tuple(values.aval.shape) == (length, *rest) \
            else None
    if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool) and -n <= entry < n \
            and tuple(values.aval.shape) == rest:
        return int(entry) % n, 1
    return None


def _scatter_add(eq, rw):
    """A chain of scatter_adds into an embed, each read only by the next, whose values
    fill disjoint pieces of the leading axis covering all of it (the gradient of a flat
    parameter vector sliced into a model's weights) -> one concatenate of the values in
    order: the zeros are neither written nor added to (a -0.0 value stays -0.0 where the
    sum gave +0.0)."""
    out = eq.outputs[0].aval
    if not out.shape:
        return None
    pieces, step = [], eq
    while step.primitive is scatter_add:
        if len(step.inputs) != 2:                   # index arrays
            return None
        base, values = step.inputs
        pieces.append((step.params["index"], values))
        if not rw.single_use(base):
            return None
        step = rw.producer.get(base) if _is_var(base) else None
        if step is None or step.primitive not in (scatter_add, embed):
            return None
    if len(step.inputs) != 1 or tuple(step.params["shape"]) != tuple(out.shape):
        return None
    pieces.append((step.params["index"], step.inputs[0]))
    placed = []
    for index, values in pieces:
        if not _is_var(values) or values.weak \
                or np.dtype(values.aval.dtype) != np.dtype(out.dtype):
            return None
        piece = _leading_piece(index, values, tuple(out.shape))
        if piece is None:
            return None
        placed.append((*piece, values))
    placed.sort(key=lambda p: p[0])
    if [p[0] for p in placed] != [sum(p[1] for p in placed[:k]) for k in range(len(placed))] \
            or sum(p[1] for p in placed) != out.shape[0]:
        return None
    parts = [values if len(values.aval.shape) == len(out.shape)
             else rw.emit(reshape, [values], {"shape": (1, *out.shape[1:])})
             for _, _, values in placed]
    return rw.retyped(eq, concatenate, parts, {"axis": 0})


def _transpose(eq, rw):
    """transpose(transpose(x, a), b) -> transpose(x, a[b]); the identity permutation -> x."""
    x, axes = eq.inputs[0], tuple(eq.params["axes"])
    inner = rw.producer_of(x, transpose)
    if inner is not None:
        x, axes = inner.inputs[0], tuple(inner.params["axes"][a] for a in axes)
    if axes == tuple(range(len(axes))):
        return rw.forward(x, eq)
    return None if inner is None else rw.retyped(eq, transpose, [x], {"axes": axes})


def _collapse(primitive):
    """A rule for reshape / broadcast_to: two in a row -> one; one to x's own shape -> x."""
    def rule(eq, rw):
        x = eq.inputs[0]
        inner = rw.operand_of(x, primitive)
        if inner is not None:
            x = inner
        r = rw.forward(x, eq)
        if r is None and inner is not None:
            r = rw.retyped(eq, primitive, [x])
        return r
    rule.__name__ = f"_{primitive.name}"
    return rule


_collapse_reshape = _collapse(reshape)


def _reshape(eq, rw):
    """`_collapse`'s rule; else x[:, k:k+1] (slices only) reshaped to drop every unit axis
    -> x[:, k] (integers where the slices have length one): one view instead of two
    equations, each a NumPy call (a column of a merged matrix-vector product, made a
    vector again)."""
    collapsed = _collapse_reshape(eq, rw)
    if collapsed is not None:
        return collapsed
    sliced = rw.producer_of(eq.inputs[0], getitem)
    if sliced is None or len(sliced.inputs) != 1:
        return None
    x, index = sliced.inputs[0], sliced.params["index"]
    shape = tuple(sliced.outputs[0].aval.shape)
    if len(index) != len(x.aval.shape) or not all(type(e) is Slice for e in index) \
            or tuple(eq.outputs[0].aval.shape) != tuple(n for n in shape if n != 1) \
            or 1 not in shape:
        return None
    index = tuple(slice(*e).indices(n)[0] if length == 1 else e
                  for e, n, length in zip(index, x.aval.shape, shape))
    return rw.retyped(eq, getitem, [x], {"index": index})


def _convert(eq, rw):
    """A conversion to x's own dtype -> x."""
    return rw.forward(eq.inputs[0], eq)


def _getitem(eq, rw):
    """x[:, 0:n] selecting all of x, in order -> x (a whole-array slice left by AD)."""
    if len(eq.inputs) != 1 or not all(
            e is Ellipsis or (type(e) is Slice and e.step in (None, 1))
            for e in eq.params["index"]):
        return None
    return rw.forward(eq.inputs[0], eq)


def _sum(eq, rw):
    """sum(broadcast_to(y, S)) -> sum(y over its own summed axes) * copies, shaped back.

    The copies of a broadcast are summed by one multiplication (a floating-point
    reassociation). Used for inexact dtypes, and when at most two equations replace
    the two it removes; never with zero copies (`inf * 0` would be NaN).
    """
    x = eq.inputs[0]
    y = rw.operand_of(x, broadcast_to)
    if y is None or np.dtype(y.aval.dtype).kind not in "fc":
        return None
    big, small = tuple(x.aval.shape), tuple(y.aval.shape)
    axis, keepdims, lead = tuple(eq.params["axis"]), eq.params["keepdims"], len(big) - len(small)
    own = tuple(i - lead for i in axis if i >= lead and small[i - lead] == big[i])
    copies = math.prod(big[i] for i in axis if i < lead or small[i - lead] != big[i])
    if keepdims:
        reduced = kept = tuple(1 if j in own else n for j, n in enumerate(small))
    else:       # the summed copy axes of y (of length 1) are left to drop
        reduced = tuple(n for j, n in enumerate(small) if j not in own)
        kept = tuple(n for j, n in enumerate(small) if j + lead not in axis)
    needed = (bool(own) + (copies != 1) + (kept != reduced)
              + (kept != tuple(eq.outputs[0].aval.shape)))
    if copies == 0 or needed > 2:
        return None
    z = rw.emit(reduce_sum, [y], {"axis": own, "keepdims": keepdims}) if own else y
    if copies != 1:
        z = rw.emit(multiply, [z, Literal(copies)], {})
    if kept != reduced:
        z = rw.emit(reshape, [z], {"shape": kept})
    return rw.fit(z, eq)


def _literal_operands(eq, rw):
    """A uniform ("splat") numeric constant feeding an elementwise primitive becomes a
    Python-scalar Literal (written into the source, no array read) when the primitive's
    other variable operands already have the constant's dtype and the output type is
    unchanged: NumPy 2 then converts the weak scalar to that very dtype, so the values
    are the same bit for bit."""
    for i, x in enumerate(eq.inputs):
        value = rw.uniform(x)
        if value is None:
            continue
        others = [y for j, y in enumerate(eq.inputs) if j != i and _is_var(y)]
        if not others or any(
                y.weak or np.dtype(y.aval.dtype) != np.dtype(x.aval.dtype) for y in others):
            continue
        inputs = eq.inputs[:i] + [Literal(value)] + eq.inputs[i + 1:]
        try:
            eq = rw.retyped(eq, eq.primitive, inputs) or eq
        except Exception:       # noqa: BLE001 -- a shape rule that wants arrays: keep it
            pass
    return eq


def _unbroadcast_operands(eq, rw):
    """An elementwise primitive broadcasts by itself: read y rather than broadcast_to(y)
    where the output type is unchanged (y strongly typed, so promotion is the same)."""
    for i, x in enumerate(eq.inputs):
        y = rw.operand_of(x, broadcast_to)
        if y is not None:
            inputs = eq.inputs[:i] + [y] + eq.inputs[i + 1:]
            eq = rw.retyped(eq, eq.primitive, inputs) or eq
    return eq


# The algebra this pass knows, per primitive (its own knowledge, keyed by the primitives
# themselves: a renamed primitive keeps its rules).
RULES = {add: _add, subtract: _subtract, multiply: _multiply, divide: _divide,
         negative: _negative, matmul: _matmul, embed: _embed, transpose: _transpose,
         reshape: _reshape, broadcast_to: _collapse(broadcast_to), convert: _convert,
         getitem: _getitem, reduce_sum: _sum, scatter_add: _scatter_add}


def simplify(program: Program) -> Program:
    """Algebraic simplification of what automatic differentiation leaves behind.

    Multiplications by one, additions of zero, double negations, negations that
    fold into add/subtract or move out of products and quotients, literal scale
    factors that gather, uniform constants that become literals, sums of embeds
    (one embed, or a scatter_add; scatter_adds filling the leading axis piece by piece,
    one concatenate), embeds of every element and one-term matrix
    products, chains of transposes, reshapes and broadcasts, identity
    transposes/reshapes/broadcasts/conversions/slices, unit slices reshaped to vectors
    (one integer index), explicit broadcasts feeding
    elementwise primitives, and sums of broadcasts (see each rule). Every rewrite
    keeps the exact type of the value it replaces; a rewrite that would not is skipped.
    Python arithmetic on Python scalars (weakly typed outputs) is left as it is.
    """
    rw = _Rewriter(program)
    for eq in program.equations:
        eq = _reading(eq, rw.env)
        if not eq.primitive.multiple_results and not eq.outputs[0].weak:
            if eq.primitive.family == "elementwise":
                eq = _literal_operands(_unbroadcast_operands(eq, rw), rw)
            rule = RULES.get(eq.primitive)
            rw.source = eq.source       # the line of the value the rule's equations compute
            result = rule(eq, rw) if rule is not None else None
            if _is_var(result):
                rw.env[eq.outputs[0]] = result
                rw.uses[result] = rw.uses.get(result, 0) + rw.uses.get(eq.outputs[0], 0)
                continue
            eq = result or eq
        rw.append(eq)
    return _rebuilt(program, rw.equations, rw.env, rw.constants)


# --------------------------------------------------------------------- driver

def _optimized_subprograms(program: Program, passes, max_rounds) -> Program:
    """`program` with every sub-program in its equations' parameters optimised (once: a
    program `optimize` returned is marked as such)."""
    equations, changed = [], False
    for eq in program.equations:
        params = dict(eq.params)
        for key, value in eq.params.items():
            subs = value if type(value) is tuple else (value,)
            if subs and all(isinstance(v, Program) for v in subs):
                done = tuple(v if getattr(v, "optimized", False) else
                             optimize(v, passes, max_rounds) for v in subs)
                params[key] = done if type(value) is tuple else done[0]
                changed |= any(a is not b for a, b in zip(done, subs))
        equations.append(replace(eq, params=params))
    return _rebuilt(program, equations) if changed else program


# ------------------------------------------------------------ shared products

MERGE_RATIO = 8             # a shared operand this many times the others' size: merge
MERGE_UNMEASURED_BYTES = 2 << 20   # a shared matrix this large merges without measuring
_merges_measured = {}


def merging_pays(shared, others, side) -> bool:
    """Whether the product of matrix `shared` with `others` side by side (concatenated)
    runs faster here than one product per operand: measured once per process for each
    set of shapes and dtype (random values, the best of seven tries of each), since BLAS
    libraries differ. OpenBLAS 0.3.31's Haswell kernels (an AMD EPYC host) multiply a
    1000 x 100 matrix by two columns in 69 µs, twice their two matrix-vector products'
    37; its SkylakeX kernels take less for the merged product. A shared matrix of
    MERGE_UNMEASURED_BYTES or more is merged unmeasured: reading it from memory once
    saves more than a kernel can lose, and measuring it would cost milliseconds."""
    dtype, axis = np.dtype(shared.aval.dtype), 1 - side
    shape = tuple(shared.aval.shape)
    parts = [tuple(x.aval.shape) for x in others]
    key = (shape, dtype, side, tuple(parts))
    if key not in _merges_measured:
        if math.prod(shape) * dtype.itemsize >= MERGE_UNMEASURED_BYTES:
            _merges_measured[key] = True
        else:
            rng = np.random.default_rng(0)
            matrix = rng.standard_normal(shape).astype(dtype)
            operands = [rng.standard_normal(p).astype(dtype) for p in parts]
            vectors = [(x[:, 0] if side == 0 else x[0]).copy() if x.shape[axis] == 1 else x
                       for x in operands]               # as code generation writes them

            def merged():
                joined = np.concatenate(operands, axis=axis)
                return matrix @ joined if side == 0 else joined @ matrix

            def separate():
                return [matrix @ x if side == 0 else x @ matrix for x in vectors]
            _merges_measured[key] = _best_time(merged) < _best_time(separate)
    return _merges_measured[key]


def _best_time(call, tries=7) -> float:
    call()
    best = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def shared_products(program: Program) -> tuple:
    """The matrix products of the program's equations (reshapes of products sunk to
    their first reader, `_sunk_reshapes`) that share one matrix A: `A @ b1`, `A @ b2`
    (side 0) or `b1 @ A`, `b2 @ A` (side 1), with A (2-D) at least MERGE_RATIO times as
    large as the other operands together (2-D, of A's dtype) and nothing reading a
    product before the last of them. Returns (the equations in their new order,
    [(A, side, members)]), each member a matmul equation, in program order; a product is
    a member of two groups (by its left and its right operand), and one product alone is
    a group of one."""
    equations = _sunk_reshapes(program.equations, program.outvars)
    first_use = {}
    for position, eq in reversed(list(enumerate(equations))):
        first_use.update((x, position) for x in eq.inputs if _is_var(x))
    groups = {}
    for position, eq in enumerate(equations):
        if eq.primitive is not matmul or eq.params or not all(
                _is_var(x) and not x.weak and len(x.aval.shape) == 2
                and np.dtype(x.aval.dtype) == np.dtype(eq.inputs[0].aval.dtype)
                for x in eq.inputs):
            continue
        for side in (0, 1):
            shared, other = eq.inputs[side], eq.inputs[1 - side]
            members = groups.setdefault((shared, side), [])
            if all(first_use.get(e.outputs[0], math.inf) > position for e in members) \
                    and math.prod(shared.aval.shape) >= MERGE_RATIO * sum(
                        math.prod(x.aval.shape) for x in [other] + [
                            e.inputs[1 - side] for e in members]):
                members.append(eq)
    return equations, [(shared, side, members)
                       for (shared, side), members in groups.items() if members]


def column_reshapes(equations, outvars) -> tuple:
    """The reshapes between vectors and one-column matrices, as products of vectors are
    staged: ({column read once: the reshape making it from a vector}, {column: the
    reshape to a vector that alone reads it})."""
    readers = Counter(x for eq in equations for x in eq.inputs if _is_var(x))
    readers.update(x for x in outvars if _is_var(x))
    made, read = {}, {}
    for eq in equations:
        if eq.primitive is not reshape or not _is_var(eq.inputs[0]):
            continue
        (x,), (out,) = eq.inputs, eq.outputs
        if len(x.aval.shape) == 1 and tuple(out.aval.shape) == (*x.aval.shape, 1) \
                and readers[out] == 1:
            made[out] = eq
        if tuple(x.aval.shape) == (*out.aval.shape, 1) and len(out.aval.shape) == 1 \
                and readers[x] == 1:
            read[x] = eq
    return made, read


def replaced_by(equations, steps) -> list:
    """`equations` with the members of each group in `steps` ({id of a group's last
    member: (its members, the equations computing their outputs)}) replaced by those
    equations, at the place of the last member."""
    replaced = {id(eq) for members, _ in steps.values() for eq in members}
    kept = []
    for eq in equations:
        if id(eq) in steps:
            kept += steps[id(eq)][1]
        elif id(eq) not in replaced:
            kept.append(eq)
    return kept


def merge_products(program: Program) -> Program:
    """Matrix products of one matrix A with small operands -- `A @ b1`, `A @ b2` (or
    `b1 @ A`, `b2 @ A`; `shared_products`) -- become one product with the operands side
    by side, each result a slice of it, where the merged product (its concatenation
    included) measures faster (`merging_pays`): a matrix-vector product costs the time to
    read its matrix, and an HVP multiplies the data by both the point and the direction.
    Each column (row) of the result is the same dot product as before."""
    equations, groups = shared_products(program)
    steps, taken = {}, set()
    for shared, side, members in groups:
        members = [eq for eq in members if id(eq) not in taken]
        others = [eq.inputs[1 - side] for eq in members]
        if len(members) < 2 or not merging_pays(shared, others, side):
            continue
        taken.update(map(id, members))
        axis = 1 - side                  # A @ [b1 b2] side by side; [b1; b2] @ A stacked
        joined = Var(_typed(concatenate, others, {"axis": axis}))
        operands = [shared, joined][::1 if side == 0 else -1]
        product = Var(_typed(matmul, operands, {}))
        source = members[0].source
        merged = [Equation(concatenate, others, {"axis": axis}, [joined], source),
                  Equation(matmul, operands, {}, [product], source)]
        start = 0
        for eq, other in zip(members, others):
            width = other.aval.shape[axis]
            part = Slice(start, start + width, None)
            index = (Slice(None, None, None), part) if axis == 1 else (part,)
            merged.append(Equation(getitem, [product], {"index": index}, eq.outputs,
                                   eq.source))
            start += width
        steps[id(members[-1])] = (members, merged)
    if not steps:
        return program
    return _rebuilt(program, replaced_by(equations, steps))


def split_products(program: Program, most_columns: int, dtype=np.float64) -> Program:
    """`merge_products` undone where A and the pieces are matrices of `dtype` and the
    merged operand has at most `most_columns` columns: `A @ concatenate([b1, b2], axis=1)`
    read only by column slices, one per piece, becomes `A @ b1`, `A @ b2` (a slice of one
    column by an integer: the product by that column reshaped to a vector). For the fused
    tier, whose loops over A's rows read A once for all of its products anyway
    (`fused.thin_products`); each column is the same dot product."""
    readers = {}
    for eq in program.equations:
        for x in eq.inputs:
            if _is_var(x):
                readers.setdefault(x, []).append(eq)
    made = {eq.outputs[0]: eq for eq in program.equations if eq.primitive is concatenate}
    outputs = set(program.outvars)
    steps = {}
    for eq in program.equations:
        joined = eq.inputs[1] if eq.primitive is matmul and len(eq.inputs) == 2 else None
        joining = made.get(joined)
        if joining is None or joining.params["axis"] != 1 or len(readers[joined]) != 1 \
                or eq.params or not 1 < joined.aval.shape[1] <= most_columns \
                or eq.outputs[0] in outputs or joined in outputs or not all(
                    len(x.aval.shape) == 2 and np.dtype(x.aval.dtype) == np.dtype(dtype)
                    for x in [eq.inputs[0], *joining.inputs]):
            continue                # (matrices of one dtype: a product's is its pieces')
        pieces, start = {}, 0
        for piece in joining.inputs:
            pieces[start] = piece
            start += piece.aval.shape[1]
        split, taken = [], set()
        for reader in readers[eq.outputs[0]]:
            at = _column_piece(reader, pieces)
            if at is None or at in taken:
                split = None
                break
            taken.add(at)
            piece, (out,) = pieces[at], reader.outputs
            if len(out.aval.shape) == 2:
                split.append(Equation(matmul, [eq.inputs[0], piece], {}, [out], reader.source))
            else:
                column = Var(_typed(matmul, [eq.inputs[0], piece], {}))
                split += [Equation(matmul, [eq.inputs[0], piece], {}, [column], reader.source),
                          Equation(reshape, [column], {"shape": out.aval.shape}, [out],
                                   reader.source)]
        if split:          # in the merged product's place: its readers come after it
            steps[id(eq)] = ([joining, eq, *readers[eq.outputs[0]]], split)
    if not steps:
        return program
    return _rebuilt(program, replaced_by(program.equations, steps))


def _column_piece(eq, pieces):
    """Where the piece of `pieces` ({first column: operand}) that `eq` reads as a column
    slice starts: `[:, a:b]` the whole piece, or `[:, a]` a piece of one column; else None."""
    if eq.primitive is not getitem or len(eq.params["index"]) != 2 \
            or eq.params["index"][0] != Slice(None, None, None):
        return None
    entry = eq.params["index"][1]
    if type(entry) is Slice:
        start, stop = entry.start, entry.stop
        fits = entry.step is None and start in pieces and \
            stop == start + pieces[start].aval.shape[1]
    else:
        start = entry if isinstance(entry, int) and not isinstance(entry, bool) else None
        fits = start in pieces and pieces[start].aval.shape[1] == 1
    return start if fits else None


def _sunk_reshapes(equations, outvars=()):
    """`equations` with each reshape of a matrix product moved to just before its first
    reader, or to the end where only the program's outputs (`outvars`) read it (valid: it
    reads only the product). A product with a 1-d operand is staged as a matrix product
    between reshapes, and a jvp stages the product of the point and that of the
    direction one after the other: with the reshapes sunk, the two products by one
    matrix are no longer separated by a reader of the first, and merge."""
    products = {eq.outputs[0] for eq in equations if eq.primitive is matmul}
    first_reader = {}
    for position, eq in enumerate(equations):
        for x in eq.inputs:
            if _is_var(x):
                first_reader.setdefault(x, position)
    for x in outvars:
        if _is_var(x):
            first_reader.setdefault(x, len(equations))
    waiting, order = {}, []
    for position, eq in enumerate(equations):
        order += waiting.pop(position, [])
        if eq.primitive is reshape and eq.inputs[0] in products \
                and eq.outputs[0] in first_reader:
            waiting.setdefault(first_reader[eq.outputs[0]], []).append(eq)
        else:
            order.append(eq)
    return order + waiting.pop(len(equations), [])


def _typed(primitive, inputs, params):
    aval = primitive.shape(*map(_operand, inputs), **params)
    return ShapeDtype(tuple(aval.shape), np.dtype(aval.dtype))


NARROW_COLUMNS = 4              # a product by this many columns or fewer reads its matrix
COPY_MEASURED_BYTES = 8 << 20   # a transposed constant this large is not copied
_copies_measured = {}


def contiguous_transposes(program: Program) -> Program:
    """Each constant that is a transposed view (the `X.T` of a gradient's `X.T @ r`) and
    that a matrix product by NARROW_COLUMNS columns or fewer reads, as a C-ordered copy
    where that measures faster here (`transposed_copy_pays`): with OpenBLAS's Haswell
    kernels (an AMD EPYC host) `X @ w` then `X.T @ r` for a 1000 x 100 X take 31.4 µs,
    29.0 with a C-ordered copy of X.T; with its SkylakeX kernels the view was the faster.
    BLAS may sum in another order on the other layout (last bits)."""
    narrow = {eq.inputs[0] for eq in program.equations
              if eq.primitive is matmul and _is_var(eq.inputs[0]) and _is_var(eq.inputs[1])
              and len(eq.inputs[1].aval.shape) == 2
              and eq.inputs[1].aval.shape[1] <= NARROW_COLUMNS}
    consts = [aligned_copy(c, order="C") if v in narrow and type(c) is np.ndarray
              and c.ndim == 2 and c.flags.f_contiguous and not c.flags.c_contiguous
              and transposed_copy_pays(c.shape, c.dtype) else c
              for v, c in zip(program.constvars, program.consts)]
    if all(a is b for a, b in zip(consts, program.consts)):
        return program
    return replace(program, consts=consts)


def transposed_copy_pays(shape, dtype) -> bool:
    """Whether `M @ u` then `T @ r` (M a matrix of shape[::-1], T its transpose: a
    gradient reading its data both ways) runs faster here with T a C-ordered copy than
    with T M's view: measured once per process for each shape and dtype (random values,
    the best of seven tries of each); never for COPY_MEASURED_BYTES or more (doubling the
    memory a program holds) or other than floating-point dtypes."""
    dtype = np.dtype(dtype)
    key = (tuple(shape), dtype)
    if key not in _copies_measured:
        if dtype.kind not in "fc" or math.prod(shape) * dtype.itemsize >= COPY_MEASURED_BYTES:
            _copies_measured[key] = False
        else:
            rng = np.random.default_rng(0)
            matrix = aligned_copy(rng.standard_normal(shape[::-1]).astype(dtype))
            u, r = rng.standard_normal(shape[0]).astype(dtype), \
                rng.standard_normal(shape[1]).astype(dtype)
            view, copy = matrix.T, aligned_copy(matrix.T, order="C")
            _copies_measured[key] = _best_time(lambda: (matrix @ u, copy @ r)) \
                < _best_time(lambda: (matrix @ u, view @ r))
    return _copies_measured[key]


PASSES = (fold_constants, simplify, eliminate_common_subexpressions, eliminate_dead_code,
          merge_products, contiguous_transposes)


def _same(a: Program, b: Program) -> bool:
    """Whether two programs are the same equations, constants and outputs (passes share the
    equations they leave alone, so identity says it in linear time)."""
    return all(len(x) == len(y) and all(u is v for u, v in zip(x, y)) for x, y in (
        (a.equations, b.equations), (a.constvars, b.constvars), (a.outvars, b.outvars)))


def optimize(program: Program, passes=PASSES, max_rounds: int = 10) -> Program:
    """Apply `passes` in order, round after round, until a round changes nothing; the
    sub-programs of its equations first."""
    with gc_paused():
        return _optimize(program, passes, max_rounds)


def _optimize(program, passes, max_rounds):
    program = _optimized_subprograms(program, passes, max_rounds)
    for _ in range(max_rounds):
        previous = program
        for p in passes:
            program = p(program)
        if _same(program, previous):
            break
    if passes is PASSES:
        program.optimized = True
    return program
