"""Staging: run a function on abstract values and record the primitives it binds.

A `StagingTracer` holds a `ShapeDtype` and the IR variable it stands for; every
primitive bound on one appends an equation to the trace's program (its output
types come from the primitive's shape rule). Everything the function computes
from its inputs is recorded, including the work of other transformations
nested inside (grad, pushforward, vmap ...), so `make_ir(grad(f))` is the
program of the gradient. Python control flow on staged values is an error that
names the user's line: the values are not known yet.

Calls of user functions with custom rules are recorded as single equations; their
output types come from `abstract_eval` (staging the function into a program that is
thrown away) or, for code pullback cannot trace, from running it on the values the
program sees at the example arguments it is staged at (`ShapeNeedsValues`).
"""
import inspect
import re
from contextlib import contextmanager
from typing import Callable

import numpy as np

from ..core.array_methods import array_attribute
from ..core.arrays import is_array
from ..core.engine import Trace, Tracer, new_trace, observed_by, observer
from ..core.primitive import ShapeDtype
from ..core.user_code import user_frame
from ..errors import ConcretizationError, PullbackError
from .program import Equation, Literal, Program, Var, abstract, evaluate, gc_paused
from ..tree import flatten, keys_in_order, unflatten
from .randomness import staged_without_randomness

def _user_location():
    """(file, line, function) of the innermost caller outside pullback, NumPy and SciPy."""
    frame = user_frame(2)
    if frame is None:
        return "<unknown>", 0, "?"
    return frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name


class Provenance:
    """The observer of the transformations while staging (see `core.engine.observer`):
    which primal value the equations being recorded differentiate, and readable names
    (the cotangent of `x` is `x_bar`, its tangent `x_dot`), and the source of the equation
    of a staged program `evaluate` runs (`replaying`: a loop body run again under a
    transformation), which the equations it records keep."""
    __slots__ = ("derived", "replaying")

    def __init__(self):
        self.derived, self.replaying = None, ""

    def derivative_of(self, value):
        self.derived = value

    def name_like(self, value, reference, suffix: str):
        target, origin = staged_value(value), staged_value(reference)
        if target is None or origin is None or target.staged_var.hint \
                or target.staged_var is origin.staged_var:
            return
        if origin.staged_var.hint:
            target.staged_var.hint = origin.staged_var.hint + suffix
        elif target.staged_var.origin is None:     # named later, if the origin is
            target.staged_var.origin = (origin.staged_var, suffix)


def staged_value(x):
    """The staged value inside a chain of tracers (or None): what carries IR names."""
    while x is not None and not hasattr(x, "staged_var"):
        x = getattr(x, "primal", None) if hasattr(x, "primal") else getattr(x, "value", None)
    return x


@contextmanager
def observing():
    """Observe the transformations while staging (an enclosing staging already does)."""
    if isinstance(observer(), Provenance):
        yield
    else:
        with observed_by(Provenance()):
            yield


class StagingTracer(Tracer):
    __slots__ = ("aval", "staged_var")

    def __init__(self, trace, aval, var):
        self._trace, self.aval, self.staged_var = trace, aval, var

    shape = array_attribute("shape", lambda self: self.aval.shape)
    dtype = array_attribute("dtype", lambda self: self.aval.dtype)

    @property
    def weak(self):
        """Whether it stands for a Python scalar (weakly typed)."""
        return self.staged_var.weak

    def __repr__(self):
        return f"StagingTracer({np.dtype(self.dtype).name}{list(self.shape)})"

    def _control_flow_error(self, what):
        filename, line, function = _user_location()
        return ConcretizationError(
            f"{what} of a staged value at {filename}:{line} (in {function}): under jit/make_ir, "
            "and in the body of a pullback loop or branch, the values are not known while the "
            "program is recorded, so Python code cannot use them (to branch on, print or "
            "convert). Branch with pullback.cond / pullback.switch, loop with "
            "pullback.while_loop / pullback.fori_loop / pullback.scan, use "
            "pullback.numpy.where (np.where) to select values, mark the argument static with "
            "static_argnums/static_argnames, or run this function eagerly (without jit).")

    def __bool__(self):
        raise self._control_flow_error("bool() (an `if`, `while`, `and`/`or`)")

    # float(), int(), .item(), format() ... likewise.
    _concretization_error = _unknown_value_error = _control_flow_error


class CapturedTracer(PullbackError, TypeError):
    """A value of an enclosing transformation reached the program as a constant (jit then
    runs the function as it is, unstaged)."""

    def __init__(self):
        super().__init__(
            "this function cannot be staged (make_ir, show): it uses a value traced by an "
            "enclosing transformation, or a custom rule uses a traced value it does not take "
            "as an argument (through a closure or a global), which the staged program could "
            "not see when it runs. Pass that value as an argument.")


def _python_arithmetic(name):
    """The operator `name` of a staged value, whose result is weakly typed when Python's
    operator is applied to Python scalars only (as it is in eager mode: `abs(s) + 0.5`
    stays a Python number, `np.abs(s)` does not)."""
    operator = getattr(Tracer, name)

    def op(self, *other):
        out = operator(self, *other)
        trace = self._trace
        if self.weak and all(_python_scalar(o, trace) for o in other) \
                and type(out) is StagingTracer and out._trace is trace and trace.equations \
                and trace.equations[-1].outputs == [out.staged_var] \
                and trace.equations[-1].primitive.python_operator is not None:
            out.staged_var.weak = True
        return out
    op.__name__ = name
    return op


def _python_scalar(value, trace):
    """Whether value is a Python scalar, or a weakly typed value staged by `trace`."""
    if type(value) is StagingTracer:
        return value._trace is trace and value.weak
    return isinstance(value, (bool, int, float, complex)) and not isinstance(value, np.generic)


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lt", "le", "gt", "ge",
              "eq", "ne", "neg", "abs", "radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmod",
              "rpow"):
    setattr(StagingTracer, f"__{_name}__", _python_arithmetic(f"__{_name}__"))


class ShapeNeedsValues(ConcretizationError):
    """A shape rule's answer when the output types depend on more than the input types (a
    custom rule around code pullback cannot trace): `types(*values)` gives them from the
    input values, which staging takes from its example arguments."""

    def __init__(self, types, message):
        super().__init__(message)
        self.types = types


class StagingTrace(Trace):
    __slots__ = ("equations", "constvars", "consts", "_const_ids", "_source_of", "examples",
                 "_arguments", "_caller")

    def __init__(self, level):
        super().__init__(level)
        self.equations, self.constvars, self.consts, self._const_ids = [], [], [], {}
        self._source_of = {}        # Var -> the user's source line that computed it
        self.examples = {}          # Var -> its value at the example arguments, once known
        self._arguments = {}        # input Var -> the example argument it stands for
        # The user's frame that started this staging (its id: the frame is not kept). An
        # equation recorded while it is the innermost user frame was made by pullback
        # outside the staged code (a seed, a cotangent sum, a Jacobian's assembly after
        # the function returned; a derived loop body staged later): it has no line.
        self._caller = id(user_frame(1))

    def _source(self) -> str:
        """`file:line` of the user's code running now inside the staged code, else ''."""
        frame = user_frame(2)
        if frame is None or id(frame) == self._caller:
            return ""
        return f"{frame.f_code.co_filename}:{frame.f_lineno}"

    def new_input(self, aval, hint="", weak=False, example=None):
        var = Var(aval, hint, weak)
        if example is not None:
            self._arguments[var] = example
        return StagingTracer(self, var.aval, var)

    def example_values(self, operands):
        """The values of IR operands at the example arguments, or None if unknown.

        Evaluates the equations recorded so far that they depend on (once: the values
        are kept for the next call).
        """
        examples = self.examples

        def known(var):
            if var not in examples and var in self._arguments:
                value = example_value(self._arguments.pop(var))
                if value is not None:
                    examples[var] = value
            return var in examples

        needed = {x for x in operands if type(x) is Var and not known(x)}
        needed_equations = []
        for eq in reversed(self.equations):
            if not needed:
                break
            if not needed.isdisjoint(eq.outputs):
                needed_equations.append(eq)
                needed.difference_update(eq.outputs)
                needed.update(x for x in eq.inputs if type(x) is Var and not known(x))
        if needed:
            return None
        needed_equations.reverse()
        invars = list({x: None for eq in needed_equations for x in eq.inputs
                       if type(x) is Var and x in examples})
        outvars = [v for eq in needed_equations for v in eq.outputs]
        values = evaluate(Program(invars, [], [], needed_equations, outvars),
                          *[examples[v] for v in invars])
        examples.update(zip(outvars, values))
        return [x.value if type(x) is Literal else examples[x] for x in operands]

    def read(self, value):
        """The IR operand for an argument: our variable, a literal, or a constant."""
        if type(value) is StagingTracer and value._trace is self:
            return value.staged_var
        if isinstance(value, (bool, int, float, complex)):
            return Literal(value)
        if isinstance(value, Tracer):
            raise CapturedTracer()
        key = id(value)
        if key not in self._const_ids:
            array = value if isinstance(value, np.ndarray) or is_array(value) else np.asarray(value)
            var = Var(ShapeDtype(array.shape, array.dtype))
            self._const_ids[key] = var
            self.constvars.append(var)
            self.consts.append(value)
            self.examples[var] = value
        return self._const_ids[key]

    def process_primitive(self, primitive, args, params):
        if primitive.staged_form is not None:
            staged = primitive.staged_form(*args, **params)
            if staged is not None:
                return staged
        inputs = [self.read(a) for a in args]
        avals = [abstract(x) for x in inputs]
        try:
            out_avals = primitive.shape(*avals, **params)
        except ShapeNeedsValues as need:
            values = self.example_values(inputs)
            if values is None:
                raise
            out_avals = need.types(*values)
        watcher = observer()
        derived = staged_value(watcher.derived) if isinstance(watcher, Provenance) else None
        if derived is not None and derived.staged_var in self._source_of:
            source = self._source_of[derived.staged_var].partition("|")[0] + "|derivative"
        else:
            source = (watcher.replaying if isinstance(watcher, Provenance) else "") \
                or self._source()
        outs = [_output_var(a) for a in (out_avals if primitive.multiple_results else [out_avals])]
        self.equations.append(Equation(primitive, inputs, dict(params), outs, source))
        for v in outs:
            self._source_of[v] = source
        tracers = [StagingTracer(self, v.aval, v) for v in outs]
        return tracers if primitive.multiple_results else tracers[0]


def _output_var(aval):
    """A variable of a primitive's output type; a Python scalar stands for a weakly typed one."""
    if isinstance(aval, (bool, int, float, complex)):
        return Var(ShapeDtype((), np.asarray(aval).dtype), weak=True)
    return Var(ShapeDtype(tuple(aval.shape), np.dtype(aval.dtype)))


def example_value(x):
    """The concrete value `x` has at the example arguments of the stagings under way (for
    a batched value, that of its first example), or None if unknown.

    Tracers hold it inside: a staging tracer in its trace's examples, the others in their
    `primal` or `value`, along `batch_axis` for a batch.
    """
    if not isinstance(x, Tracer):
        return x
    if type(x) is StagingTracer:
        values = x._trace.example_values([x.staged_var])
        return None if values is None else values[0]
    inner = example_value(x.primal if hasattr(x, "primal") else x.value)
    axis = getattr(x, "batch_axis", None)
    if inner is None or axis is None:
        return inner
    return np.take(inner, 0, axis=axis) if np.shape(inner)[axis] else None


def abstract_eval(fn: Callable, avals: list) -> list:
    """What `fn` returns for arguments of types `avals` (Python scalars: weakly typed), by
    staging it into a program that is thrown away: the types (`ShapeDtype`, or a Python
    scalar for a weakly typed one) of the values it computes from its arguments, the
    values themselves for the others. A value traced elsewhere that reaches them raises
    CapturedTracer: a staged call of `fn` could not see it later.
    """
    with new_trace(StagingTrace) as trace:
        inputs = [trace.new_input(ShapeDtype(tuple(a.shape), np.dtype(a.dtype)))
                  if hasattr(a, "shape") else
                  trace.new_input(ShapeDtype((), np.asarray(a).dtype), weak=True) for a in avals]
        return [abstract(trace.read(o)) if isinstance(o, Tracer) else o for o in fn(*inputs)]


def signature_of(value):
    """The abstract type of an argument: (shape, dtype, weak) -- weak for Python scalars
    (and values of an enclosing staging that stand for them),
    typed by their Python type alone, as NumPy promotes them (a Python int too large for
    int64 reaches NumPy as it is when the program runs, which then does what eager does).
    NumPy scalars (np.float64 too, a float subclass) are strongly typed."""
    if isinstance(value, (bool, int, float, complex)) and not isinstance(value, np.generic):
        kind = next(t for t in (bool, int, float, complex) if isinstance(value, t))
        return ((), np.dtype(kind), True)
    if isinstance(value, Tracer):
        return (tuple(value.shape), np.dtype(value.dtype), getattr(value, "weak", False))
    if isinstance(value, (np.ndarray, np.generic)) or is_array(value):
        return (tuple(value.shape), np.dtype(value.dtype), False)
    array = np.asarray(value)
    return (array.shape, array.dtype, False)


def stage(f: Callable, args: tuple, names=None) -> Program:
    """The program of `f` at the types of `args` (pytrees of arrays and scalars); an error
    if `f` draws random numbers meanwhile (see `randomness`)."""
    return staged_without_randomness(lambda: _stage(f, args, names), f, args)


def _stage(f, args, names):
    leaves, in_tree = flatten(args)
    names = names or {}
    with gc_paused(), observing(), new_trace(StagingTrace) as trace:
        inputs = []
        for i, leaf in enumerate(leaves):
            shape, dtype, weak = signature_of(leaf)
            inputs.append(trace.new_input(ShapeDtype(shape, dtype), names.get(i, ""), weak, leaf))
        out = f(*unflatten(in_tree, inputs))
        out_leaves, out_tree = flatten(out)
        outvars = [trace.read(o) for o in out_leaves]
    program = Program([t.staged_var for t in inputs], trace.constvars, trace.consts, trace.equations,
                      outvars, in_tree, out_tree)
    program.names = {v: v.hint for v in [t.staged_var for t in inputs] + outvars
                     if type(v) is Var and v.hint}
    return program


def argument_names(f: Callable, args: tuple) -> dict:
    """Leaf index -> a readable name built from f's parameter names and pytree keys."""
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    names = {}
    index = 0
    for position, arg in enumerate(args):
        base = params[position] if position < len(params) else f"arg{position}"
        for path in leaf_paths(arg):
            names[index] = re.sub(r"\W+", "_", "_".join([base, *map(str, path)])).strip("_")
            index += 1
    return names


def leaf_paths(tree, prefix=()):
    """The key path of each leaf of `tree`, in the order `flatten` lists them."""
    if isinstance(tree, dict):
        for k in keys_in_order(tree):
            yield from leaf_paths(tree[k], prefix + (k,))
    elif isinstance(tree, (tuple, list)):
        for i, c in enumerate(tree):
            yield from leaf_paths(c, prefix + (i,))
    elif tree is not None:
        yield prefix
