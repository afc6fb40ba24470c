"""Reverse mode: record a tape while `f` runs, then pull cotangents back through it.

A `ReverseTracer` holds a value and the index of the tape entry that produced it. The
tape's first entries are the input leaves (None); every bind appends one entry, of two
kinds:

- data, for an elementwise primitive with one or two inputs traced at this level (most
  binds): `(scale, parent, residual, params, shape, dtype, partial, index)` for one
  traced input, `(scale, parent, residuals, params, shape, dtype, scale_y, parent_y,
  shape_y, dtype_y)` for two: each input's rule from the primitive's `input_rules` (made
  once per primitive: the cotangent times the partial derivative, which the sweep sums to
  the input's shape and casts to its dtype where they differ; shape None: the output's,
  only a cast), the tape index of the input, the residuals its rules read, the parameters,
  the input's shape and dtype. No closure and no rule call per bind. Where the partial
  derivative reads one residual (`index`: x, y or out), the entry holds that value alone
  and its sweep form `partial` (a NumPy function of it, None: the value itself), which the
  sweep applies to a NumPy cotangent with no call of the scale (sin: np.cos). A primitive
  linear in its only operand, a NumPy array (`cotangent_rule`: x[i], x[1:]), records
  `(cotangent_rule, parent, shape, params, shape, dtype, None, None)` the same way, and
  matmul of NumPy arrays (`input_cotangents`: its transposes as the inputs' rules) as an
  elementwise primitive;
- a closure for any other: `(pullback, parents, n_results, scaled, output)`: the
  primitive's pullback closure (built by its `vjp` rule, or with the output by its
  `value_and_vjp` rule, closing over its residuals), the tape indices of its inputs traced
  at this level (None for the others), the number of outputs (0: one, not a list), whether
  the pullback accepts `Scaled` cotangents, and the output (kept only while staging, to
  name derivative code: a staging trace records every bind this way).

The tracer records the commonest binds itself, one frame from NumPy's dispatch to the
tape: a unary ufunc (`np.sin(x)`) and an operator with a constant (`x * 2.0`, `1.0 - x`);
`x + c` and `x - c` of x's shape and dtype record nothing (the output's cotangent is x's:
it takes x's tape index). Anything else binds the primitive (`process_primitive`).

`backward` sweeps the tape once in reverse order (the order of recording is a
topological order), so it needs no graph search. It can run any number of times
on one tape; the tape lives as long as the `back` function that holds it. The
cotangent computations are themselves primitives, so an outer transformation
traces them (reverse-over-reverse, forward-over-reverse).
"""
import sys
from operator import attrgetter
from typing import Callable

import numpy as np

from ..core.boundary import differentiable_inputs, matching_tree, split_aux
from ..core.engine import Trace, Tracer, new_trace, observer
from ..core.array_methods import CONSTANT_TYPES, array_attribute, ufunc_primitive
from ..core.arrays import (FLOAT64, REAL_SCALARS, SCALAR_OPERANDS, WRITABLE_TYPES, ZERO_D,
                           of_their_own, zero_d, zeros_like_value)
from ..core.numbers import refuse_complex
from ..core.primitive import PLAIN_TYPES, ZERO
from .cotangents import (LARGE_TEMPORARY, LazyCotangent, Scaled, dense, known_scale, lazy_pullback,
                         unbroadcast_to)
from ..errors import CotangentError
from ..tree import LEAF, ONE_ARGUMENT, flatten, tree_map, unflatten


class ReverseTracer(Tracer):
    # shape and dtype are copied from the value: reading them is then one slot, not a chain
    # of properties through every level of a nested transformation (the engine reads the
    # slots, a user the read-only attributes).
    __slots__ = ("value", "node", "_shape", "_dtype")
    shape = array_attribute("shape", attrgetter("_shape"))
    dtype = array_attribute("dtype", attrgetter("_dtype"))

    def __init__(self, trace, value, node):
        self._trace, self.value, self.node = trace, value, node
        self._shape, self._dtype = value.shape, value.dtype

    def __repr__(self):
        return f"ReverseTracer({self.value!r})"

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # `np.sin(x)` of a NumPy value traced here (the common case) is recorded here: one
        # frame from NumPy's dispatch to the tape (what `process_primitive` records, for an
        # elementwise primitive whose rules hold for complex values, bound without parameters,
        # whose partial derivative reads one residual).
        trace = self._trace
        if method == "__call__" and not kwargs and trace.active:
            try:
                rules = _UNARY[ufunc]             # (None for a ufunc of two inputs)
            except KeyError:
                rules = _recording_rules(ufunc, 1)
            x = self.value
            if rules is not None and type(x) in PLAIN_TYPES and not trace.hints:
                impl, scale, partial, index = rules
                out = impl(x)
                tape = trace.tape
                # (shape None: the input's is the output's, so nothing to sum)
                tape.append((scale, self.node, out if index else x, _NO_PARAMETERS, None,
                             self._dtype, partial, index))
                result = _new_object(ReverseTracer)
                result._trace, result.value, result.node = trace, out, len(tape) - 1
                result._shape, result._dtype = self._shape, out.dtype
                return result
            # `A @ x`, `np.add(x, c)`: what every tracer does, without its frame
            if len(inputs) == 2 and (type(inputs[0]) in CONSTANT_TYPES
                                     or type(inputs[1]) in CONSTANT_TYPES):
                try:
                    prim = _PRIMITIVES[ufunc]
                except KeyError:
                    prim = _PRIMITIVES[ufunc] = ufunc_primitive(ufunc)
                if prim is not None:
                    return trace.process_primitive(prim, inputs, _NO_PARAMETERS)
        return Tracer.__array_ufunc__(self, ufunc, method, *inputs, **kwargs)


def _recorded_operator(ufunc, name):
    """The operator method `name` computing `ufunc`: `x op c` (or `c op x`: `__rsub__`) of a
    tracer x and a constant c recorded by the tracer itself, as `__array_ufunc__` records a
    unary ufunc; any other operands as every tracer does. Where the output is x plus a
    constant (of x's shape and dtype), its cotangent is x's: the output takes x's tape
    reference, and the tape no entry."""
    reflected = name.startswith("__r")
    general = getattr(Tracer, name)
    # One correctly rounded operation per element: the same bits whether the constant is a
    # number or a 0-d array (np.power's loops may differ in the last bit).
    correctly_rounded = ufunc in (np.add, np.subtract, np.multiply, np.divide)

    def op(self, other):
        trace = self._trace
        kind = type(other)
        if kind in CONSTANT_TYPES and not trace.hints and trace.active:
            try:
                rules = _BINARY[ufunc]
            except KeyError:
                rules = _recording_rules(ufunc, 2)
            x = self.value
            if rules is not None:
                impl, scale, partial, index, passes, scalar, at, reads = rules[reflected]
                if type(x) is np.ndarray:
                    if kind is float and correctly_rounded and self._dtype is FLOAT64:
                        try:                     # (the same bits, a third faster, twice)
                            other = ZERO_D[other]
                        except KeyError:
                            other = zero_d(other)
                elif type(x) in REAL_SCALARS:
                    if scalar is not None and kind in SCALAR_OPERANDS:
                        impl = scalar            # NumPy's scalars: the operator, same bits
                elif type(x) not in PLAIN_TYPES:
                    return general(self, other)
                out = impl(other, x) if reflected else impl(x, other)
                shape = self._shape
                summed = None                    # the shape the sweep sums the cotangent to
                if kind is np.ndarray and out.shape != shape:
                    summed, shape, passes = shape, out.shape, False
                result = _new_object(ReverseTracer)
                result._trace, result.value, result._shape, result._dtype = trace, out, shape, \
                    out.dtype
                if passes and result._dtype is self._dtype:
                    result.node = self.node
                    return result
                if at is None:                   # the residuals the partial derivative reads
                    read_x, read_y, read_out = reads
                    residual = (other if read_x else None, x if read_y else None,
                                out if read_out else None) if reflected else \
                        (x if read_x else None, other if read_y else None,
                         out if read_out else None)
                else:
                    residual = x if at == 0 else other if at == 1 else out
                tape = trace.tape
                tape.append((scale, self.node, residual, _NO_PARAMETERS, summed, self._dtype,
                             partial, index))
                result.node = len(tape) - 1
                return result
        elif type(other) is ReverseTracer and other._trace is trace and trace.active:
            try:
                prim = _PRIMITIVES[ufunc]
            except KeyError:
                prim = _PRIMITIVES[ufunc] = ufunc_primitive(ufunc)
            return trace.process_primitive(prim, (other, self) if reflected
                                           else (self, other), _NO_PARAMETERS)
        return general(self, other)
    op.__name__ = op.__qualname__ = name
    return op


# The operators the tracers compute themselves (forward mode's too), with their ufuncs.
_OPERATORS = ((np.add, "add"), (np.subtract, "sub"), (np.multiply, "mul"), (np.divide, "truediv"),
              (np.power, "pow"))
for _ufunc, _name in _OPERATORS:
    for _method in (f"__{_name}__", f"__r{_name}__"):
        setattr(ReverseTracer, _method, _recorded_operator(_ufunc, _method))
del _ufunc, _name, _method


def _recording_rules(ufunc, n):
    """What a tracer's own methods need to record the primitive answering for `ufunc` with
    `n` inputs (elementwise, its rules as data and holding for complex values), else None;
    kept in `_RULES[n]` at first use (the primitives are registered after this module; plain
    dicts: a dict subclass's `[]` calls `__getitem__` through the method, ten times slower).
    Unary: `(impl, scale, partial, index)`, where the partial derivative reads one residual
    (else None); binary: `(impl, scale, partial, index, passes, scalar, at, reads)` per
    position of the tracer (`input_rules`' facts, `passes`: the partial derivative is 1,
    `scalar`: its `scalar_operator`, for NumPy's real scalars, `at`: the residual read alone,
    0 the tracer's value, 1 the constant, 2 the output, None: several, as `reads` says)."""
    prim = ufunc_primitive(ufunc)
    rules = None
    if prim is not None and prim.input_rules is not None and prim.complex_rules \
            and len(prim.input_rules) == n:
        rules = tuple((prim.impl, scale, partial, index, type(d) in (int, float) and d == 1,
                       prim.scalar_operator,
                       None if index is None else 2 if index == 2 else int(index != position),
                       reads)
                      for position, ((scale, reads, partial, index), d)
                      in enumerate(zip(prim.input_rules, prim.partials)))
        if n == 1:
            impl, scale, partial, index = rules[0][:4]
            rules = None if index is None else (impl, scale, partial, index)
    _RULES[n][ufunc] = rules
    return rules


_RULES = {1: {}, 2: {}}
_PRIMITIVES = {}        # ufunc -> the primitive answering for it, kept at first use
_UNARY, _BINARY = _RULES[1], _RULES[2]
_NO_PARAMETERS = {}     # the parameters of the binds the tracer's methods make (never written)
_new_object = object.__new__


def _tracer(trace, value, node):
    """`ReverseTracer(trace, value, node)`, made without a call of its `__init__` (a bind's
    tracer: one call, not the class's machinery and a frame more)."""
    tracer = _new_object(ReverseTracer)
    tracer._trace, tracer.value, tracer.node = trace, value, node
    tracer._shape, tracer._dtype = value.shape, value.dtype
    return tracer


class ReverseTrace(Trace):
    __slots__ = ("tape", "hints")

    def __init__(self, level):
        super().__init__(level)
        self.tape = []
        # Outputs are kept on the tape only to name derivative code when staging; otherwise
        # a value lives only as long as some pullback needs it.
        self.hints = observer() is not None

    def new_leaves(self, values):
        """Tracers of `values`, the leaves of the tape: its first entries (they have none)."""
        tape = self.tape
        start = len(tape)
        tape.extend([None] * len(values))
        return [ReverseTracer(self, v, start + k) for k, v in enumerate(values)]

    def process_primitive(self, primitive, args, params):
        rules = primitive.input_rules
        if rules is None or self.hints:
            scale = primitive.cotangent_rule
            if scale is None or self.hints or len(args) != 1:
                rules = primitive.input_cotangents
                if rules is None or self.hints:
                    return self.record(primitive, args, params)
                return self._linear_in_each(primitive, rules, args, params)
            # Linear in its only operand, a NumPy array (x[i], x[1:]): the entry is data too,
            # its residual the operand's shape.
            (tracer,) = args
            x = tracer.value
            if type(x) is not np.ndarray:
                return self.record(primitive, args, params)
            out = primitive.impl(x, **params)
            residual, partial, index = tracer._shape, None, None
        # Elementwise with one input traced here (the common case): the entry is data.
        elif len(args) == 1:
            (tracer,) = args                  # bound by its own trace: ours
            x = tracer.value
            if not primitive.complex_rules:
                refuse_complex(args, primitive)
            if type(x) not in PLAIN_TYPES:
                out = primitive(x, **params)
            elif params:
                out = primitive.impl(x, **params)
            elif type(x) in REAL_SCALARS and primitive.scalar_operator is not None:
                out = primitive.scalar_operator(x)    # (-x of a NumPy scalar)
            else:
                out = primitive.impl(x)
            scale, (read_x, read_out), partial, index = rules[0]
            residual = (x if read_x else None, out if read_out else None) if index is None \
                else (x, out)[index]
        elif len(args) == 2:
            x, y = args
            if type(x) is ReverseTracer and x._trace is self:
                tracer = x
                x = x.value
                scale, (read_x, read_y, read_out), partial, index = rules[0]
                if type(y) is ReverseTracer and y._trace is self:
                    return self._both_traced(primitive, rules, tracer, y, params)
            elif type(y) is ReverseTracer and y._trace is self:
                tracer = y
                y = y.value
                scale, (read_x, read_y, read_out), partial, index = rules[1]
            else:
                return self.record(primitive, args, params)
            if not primitive.complex_rules:
                refuse_complex((x, y), primitive)
            if type(x) not in PLAIN_TYPES or type(y) not in PLAIN_TYPES:
                out = primitive(x, y, **params)
            elif params:
                out = primitive.impl(x, y, **params)
            elif (type(x) in REAL_SCALARS and type(y) in SCALAR_OPERANDS or type(y) in REAL_SCALARS
                  and type(x) in SCALAR_OPERANDS) and primitive.scalar_operator is not None:
                out = primitive.scalar_operator(x, y)   # NumPy's scalars
            else:
                out = primitive.impl(x, y)
            residual = (x if read_x else None, y if read_y else None, out if read_out else None) \
                if index is None else (x, y, out)[index]
        else:
            return self.record(primitive, args, params)
        tape = self.tape
        tape.append((scale, tracer.node, residual, params, tracer._shape, tracer._dtype, partial,
                     index))
        result = _new_object(ReverseTracer)          # `_tracer`, inline
        result._trace, result.value, result.node = self, out, len(tape) - 1
        result._shape, result._dtype = out.shape, out.dtype
        return result

    def _linear_in_each(self, primitive, rules, args, params):
        """A bind of two inputs with `input_cotangents` (matmul), one or both traced here:
        recorded as data as an elementwise bind is, with those rules."""
        x, y = args
        traced_x = type(x) is ReverseTracer and x._trace is self
        if traced_x and type(y) is ReverseTracer and y._trace is self:
            return self._both_traced(primitive, rules, x, y, params)
        tracer, position = (x, 0) if traced_x else (y, 1)
        x, y = (x.value, y) if traced_x else (x, y.value)
        out = primitive.impl(x, y, **params) if type(x) in PLAIN_TYPES \
            and type(y) in PLAIN_TYPES else primitive(x, y, **params)
        scale, (read_x, read_y, read_out), _, _ = rules[position]
        tape = self.tape
        tape.append((scale, tracer.node, (x if read_x else None, y if read_y else None,
                                          out if read_out else None),
                     params, tracer._shape, tracer._dtype, None, None))
        return _tracer(self, out, len(tape) - 1)

    def _both_traced(self, primitive, rules, tracer_x, tracer_y, params):
        """A bind of two inputs both traced here, with its `rules` as data (elementwise:
        `input_rules`; matmul: `input_cotangents`): one entry with both."""
        x, y = tracer_x.value, tracer_y.value
        (scale_x, reads_x, _, _), (scale_y, reads_y, _, _) = rules
        if not primitive.complex_rules:
            refuse_complex((x, y), primitive)
        if type(x) in REAL_SCALARS and type(y) in REAL_SCALARS and not params \
                and primitive.scalar_operator is not None:
            out = primitive.scalar_operator(x, y)        # NumPy's scalars
        else:
            out = primitive.impl(x, y, **params) if type(x) in PLAIN_TYPES \
                and type(y) in PLAIN_TYPES else primitive(x, y, **params)
        residuals = (x if reads_x[0] or reads_y[0] else None,
                     y if reads_x[1] or reads_y[1] else None,
                     out if reads_x[2] or reads_y[2] else None)
        tape = self.tape
        tape.append((scale_x, tracer_x.node, residuals, params, tracer_x._shape, tracer_x._dtype,
                     scale_y, tracer_y.node, tracer_y._shape, tracer_y._dtype))
        result = _new_object(ReverseTracer)          # `_tracer`, inline
        result._trace, result.value, result.node = self, out, len(tape) - 1
        result._shape, result._dtype = out.shape, out.dtype
        return result

    def record(self, primitive, args, params):
        """Bind any primitive: its entry holds the pullback closure its rule builds."""
        if len(args) == 2 and not primitive.differentiable and not params:
            x, y = args
            if type(x) is ReverseTracer and x._trace is self:
                x = x.value
            if type(y) is ReverseTracer and y._trace is self:
                y = y.value
            if (type(x) in REAL_SCALARS and type(y) in SCALAR_OPERANDS or type(y) in REAL_SCALARS
                    and type(x) in SCALAR_OPERANDS) and primitive.scalar_operator is not None:
                return primitive.scalar_operator(x, y)  # a comparison of scalars
        if len(args) == 1:                    # bound by its own trace: ours
            (a,) = args
            values, parents, wrt = [a.value], [a.node], [True]
            plain = type(a.value) in PLAIN_TYPES
        else:
            values, parents, wrt = [], [], []
            plain = True         # every value NumPy's own: call impl without binding again
            for a in args:
                if type(a) is ReverseTracer and a._trace is self:
                    parents.append(a.node)
                    wrt.append(True)
                    a = a.value
                else:
                    parents.append(None)
                    wrt.append(False)
                values.append(a)
                if type(a) not in PLAIN_TYPES:
                    plain = False
        if not primitive.complex_rules and primitive.differentiable:
            refuse_complex(values, primitive)
        if primitive.value_and_vjp is not None:
            out, pullback = primitive.value_and_vjp(wrt, *values, **params)
        else:
            out = primitive.impl(*values, **params) if plain else primitive(*values, **params)
            if not primitive.differentiable:
                if not primitive.complex_rules:     # sign(z) is not constant, say
                    refuse_complex(out if primitive.multiple_results else (out,), primitive)
                return out
            pullback = primitive.vjp(wrt, out, *values, **params)
        if primitive.transpose_kind is not None:
            pullback = lazy_pullback(primitive, pullback, values, params)
        tape = self.tape
        node = len(tape)
        kept = out if self.hints else None
        scaled = primitive.scaled_cotangents
        if primitive.multiple_results:
            tape.append((pullback, parents, len(out), scaled, kept))
            # A Python number among the results (a custom rule's residual) is a constant.
            return [ReverseTracer(self, o, (node, k)) if hasattr(o, "dtype") else o
                    for k, o in enumerate(out)]
        tape.append((pullback, parents, 0, scaled, kept))
        return _tracer(self, out, node)

    def strip(self, value):
        """The value of a value returned by the traced function (auxiliary outputs)."""
        return value.value if type(value) is ReverseTracer and value._trace is self else value

    def outputs(self, outs):
        """(tape references, values) of the values the traced function returned (reference
        None: a constant)."""
        nodes, values = [], []
        for o in outs:
            if type(o) is ReverseTracer and o._trace is self:
                nodes.append(o.node)
                values.append(o.value)
            else:
                nodes.append(None)
                values.append(o)
        return nodes, values


def backward(tape, seeds, n_leaves):
    """Pull the cotangents `seeds` (pairs of tape reference and cotangent; reference None: a
    constant output's, skipped) back to the leaves, the first `n_leaves` entries of the tape:
    returns their cotangents (`None` where nothing arrived).

    Cotangents are summed into arrays this sweep allocated itself ("owned"), in
    place, or into a pullback's fresh array nothing else refers to; an array handed to
    a pullback is no longer owned (pullbacks may pass it on unchanged to several
    inputs). Lazy cotangents (`LazyCotangent`) stay lazy until they are summed, reach a
    pullback that does not accept them, or a leaf.
    """
    accumulator = _Accumulator(tape)
    seeds = list(seeds)
    cotangents = accumulator.cotangents
    for ref, ct in seeds:
        if ref is None:
            continue
        if type(ct) is not np.ndarray:
            ct = known_scale(ct)
        if type(ref) is int and cotangents[ref] is None:
            cotangents[ref] = ct
        else:
            accumulator.add(ref, ct)
    watcher = observer()
    owned = accumulator.owned
    for i in range(len(tape) - 1, n_leaves - 1, -1):
        ct = cotangents[i]
        if ct is None:
            continue
        cotangents[i] = None                 # taken: freed as early as it can be
        entry = tape[i]
        size = len(entry)                    # 8 or 10: data (one input or two); 5: a closure
        numpy_array = type(ct) is np.ndarray
        if numpy_array:
            if owned:
                owned.discard(id(ct))
        elif isinstance(ct, LazyCotangent):  # kept lazy for a rule that accepts it
            if type(ct) is not Scaled or size == 5 and not entry[3]:
                ct = ct.dense()
        elif type(ct) is list:               # a multiple-results entry's
            ct = [dense(c) for c in ct]
        elif owned:                          # a tracer (a NumPy scalar is never owned)
            owned.discard(id(ct))
        if watcher is not None:
            watcher.derivative_of(None if size != 5 else entry[4])
            if not isinstance(ct, (LazyCotangent, list)):
                watcher.name_like(ct, None if size != 5 else entry[4], "_bar")
        if size == 8:
            scale, ref, residual, params, shape, dtype, partial, index = entry
            # The partial derivative of the residual `index` alone, on a NumPy cotangent:
            # computed here (`partial`: a NumPy function, None: the residual itself).
            if index is None:
                c = scale(ct, residual, params)
            elif numpy_array and partial is None:
                c = ct * residual
            elif numpy_array and type(residual) is np.ndarray \
                    and residual.nbytes < LARGE_TEMPORARY:
                d = partial(residual)
                c = ct * d if type(d) is not tuple else ct * d[0] * d[1]
            else:                        # (its scale may write into a large partial derivative)
                c = scale(ct, (None,) * index + (residual,), params)
            if shape is None:            # the output's shape: a cast at most
                if c.dtype is not dtype and c.dtype != dtype:
                    c = unbroadcast_to(c, c.shape, dtype)
            elif c.shape != shape or c.dtype is not dtype and c.dtype != dtype:
                c = unbroadcast_to(c, shape, dtype)
            if type(ref) is int and cotangents[ref] is None:
                cotangents[ref] = c
            else:
                accumulator.add(ref, c)
            continue
        if size == 10:                       # two inputs, each with its scale
            scale, ref, residuals, params, shape, dtype = entry[:6]
            for scale, ref, shape, dtype in ((scale, ref, shape, dtype), entry[6:]):
                c = scale(ct, residuals, params)
                if c.shape != shape or c.dtype is not dtype and c.dtype != dtype:
                    c = unbroadcast_to(c, shape, dtype)
                if type(ref) is int and cotangents[ref] is None:
                    cotangents[ref] = c
                else:
                    accumulator.add(ref, c)
            continue
        for ref, c in zip(entry[1], entry[0](ct)):
            if ref is not None and c is not ZERO:
                if type(ref) is int and cotangents[ref] is None:   # the first to arrive
                    cotangents[ref] = c
                else:
                    accumulator.add(ref, c)
    if watcher is not None:
        watcher.derivative_of(None)
    del cotangents[n_leaves:]
    for i, ct in enumerate(cotangents):
        if isinstance(ct, LazyCotangent):
            cotangents[i] = ct.dense()
    # The leaves' cotangents: arrays of their own, not a seed passed on unchanged (f(x) = x + 0)
    # nor one array for two leaves (f(a, b) = (a + b) * 2).
    return of_their_own(cotangents, [seed for _, seed in seeds])


def _references_of_a_slot_alone():
    """How many references `sys.getrefcount` counts to an object that a list's slot and one
    local name alone refer to (the interpreter's own vary by version)."""
    slots = [object()]
    value = slots[0]
    return sys.getrefcount(value)


_SLOT_ALONE = _references_of_a_slot_alone()


class _Accumulator:
    """Sums of cotangents per tape entry, in place in buffers it owns."""
    __slots__ = ("tape", "cotangents", "owned")

    def __init__(self, tape):
        self.tape, self.cotangents, self.owned = tape, [None] * len(tape), set()

    def add(self, ref, ct):
        if type(ref) is not int:                 # one output of a multiple-results entry
            node, k = ref
            cts = self.cotangents[node]
            if cts is None:
                cts = self.cotangents[node] = [ZERO] * self.tape[node][2]
            cts[k] = ct if cts[k] is ZERO else dense(cts[k]) + dense(ct)
            return
        old = self.cotangents[ref]
        if old is None:
            self.cotangents[ref] = ct
            return
        if isinstance(old, Tracer) and isinstance(ct, Tracer):    # nested: traced, functional
            self.cotangents[ref] = old + ct
            return
        unshared = False
        if isinstance(old, LazyCotangent):
            old, ct = ct, old                    # keep the lazy one second
        elif type(old) is np.ndarray and id(old) not in self.owned:
            # A fresh array of a pullback that nothing else refers to (only the list's slot
            # and `old`: no residual, seed, tracer or other cotangent holds it) is summed
            # into in place, as NumPy's temporaries are.
            unshared = sys.getrefcount(old) <= _SLOT_ALONE and old.base is None \
                and old.flags.writeable
        # Summed in place where both are NumPy arrays or lazy; tracers, NumPy scalars: functionally.
        if not ((type(old) in WRITABLE_TYPES or isinstance(old, LazyCotangent))
                and (type(ct) in WRITABLE_TYPES or isinstance(ct, LazyCotangent))):
            self.owned.discard(id(self.cotangents[ref]))
            self.cotangents[ref] = dense(old) + dense(ct)
            return
        if isinstance(old, LazyCotangent):       # both lazy: a fresh buffer
            old = self._own(old.dense())
        elif id(old) not in self.owned:
            old = self._own(old if unshared else old.copy())
        if isinstance(ct, LazyCotangent):
            self.cotangents[ref] = ct.add_into(old)
        else:
            self.cotangents[ref] = np.add(old, ct, out=old)

    def _own(self, buffer):
        self.owned.add(id(buffer))
        return buffer


def reverse_trace():
    """Open a reverse-mode trace (context manager)."""
    return new_trace(ReverseTrace)


def vjp_flat(fn, primals):
    """(outs, back) for `fn` mapping a list of arrays to a list of arrays.

    `back(cts)` takes one cotangent per output (`ZERO` allowed) and returns one per
    primal, `ZERO` where the outputs do not depend on it. For rules: no checks.
    """
    with reverse_trace() as trace:
        nodes, values = trace.outputs(fn(*trace.new_leaves(primals)))
    tape = trace.tape
    n_primals = len(primals)
    del trace

    def back(cts):
        seeds = [(n, c) for n, c in zip(nodes, cts) if n is not None and c is not ZERO]
        accumulated = backward(tape, seeds, n_primals) if seeds else [None] * n_primals
        return [ZERO if c is None else c for c in accumulated]
    return values, back


def pullback(f: Callable, *primals, has_aux: bool = False):
    """Evaluate `f(*primals)` and record how to pull cotangents back: returns `(out, back)`.

    `back(cotangent)` takes a cotangent shaped like `out` (same pytree structure,
    shapes and dtypes; Python floats are accepted for scalar outputs) and returns
    `J.T @ cotangent` as a tuple with one entry per primal. `back` can be called any
    number of times; the recording is freed when `back` is. With `has_aux=True`,
    `f` returns `(out, aux)` and the result is `(out, back, aux)`.

    `back` works on private copies of the primals, of `out` and of `aux`, so modifying
    those arrays in place afterwards does not change what it computes. (Arrays that `f`
    closes over are read as they are when `back` runs: do not modify them while you
    still need `back`.)

    >>> import numpy as np
    >>> out, back = pullback(lambda x: x ** 2, np.array([1.0, 2.0]))
    >>> back(np.array([1.0, 10.0]))
    (array([ 2., 40.]),)
    """
    result = recorded_pullback(f, *tree_map(private_copy, primals), has_aux=has_aux)
    # (the outputs and aux may share memory with what `back` reads: the caller gets copies)
    return (tree_map(private_copy, result[0]), result[1],
            *[tree_map(private_copy, aux) for aux in result[2:]])


def private_copy(value):
    """A copy of a NumPy array the caller holds (tracers and NumPy scalars are immutable)."""
    return value.copy() if isinstance(value, np.ndarray) else value


def recorded_pullback(f: Callable, *primals, has_aux: bool = False):
    """`pullback` without its private copies, for callers that pull back before anyone can
    modify the arrays involved (grad, jacrev, hvp ...)."""
    if len(primals) == 1 and type(primals[0]) is np.ndarray and primals[0].dtype.kind in "fc":
        primal_leaves, treedef = list(primals), ONE_ARGUMENT     # one array, the common case
    else:
        primal_leaves, treedef = flatten(primals)
        primal_leaves = differentiable_inputs(primal_leaves, "primal")
    with reverse_trace() as trace:
        out = f(*trace.new_leaves(primal_leaves)) if treedef is ONE_ARGUMENT \
            else f(*unflatten(treedef, trace.new_leaves(primal_leaves)))
        if has_aux:
            out, aux = split_aux(out, has_aux)
        if type(out) is ReverseTracer and out._trace is trace:  # one traced array, the common case
            nodes, out_values, out_treedef = [out.node], [out.value], LEAF
        else:
            out_leaves, out_treedef = flatten(out)
            nodes, out_values = trace.outputs(out_leaves)
        if has_aux:
            aux = tree_map(trace.strip, aux)
    tape = trace.tape
    del trace, out

    def back(cotangent):
        cts = matching_tree(cotangent, out_values, out_treedef, CotangentError,
                            "cotangent", "output")
        cts_in = backward(tape, zip(nodes, cts), len(primal_leaves))
        for k, c in enumerate(cts_in):
            if c is None:
                cts_in[k] = zeros_like_value(primal_leaves[k])
        watcher = observer()
        if watcher is not None:
            for c, p in zip(cts_in, primal_leaves):
                watcher.name_like(c, p, "_bar")
        return unflatten(treedef, cts_in)

    out = out_values[0] if out_treedef is LEAF else unflatten(out_treedef, out_values)
    return (out, back, aux) if has_aux else (out, back)


vjp = pullback
