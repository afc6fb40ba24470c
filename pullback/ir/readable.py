"""Readable source for `show`: a program printed as NumPy code a person could have written.

The text runs as it is with `import numpy as np`, `import scipy.linalg` and
`import scipy.special as sp`: each equation is written by its primitive's emitters (the
`emit_statements` rule first, with the `Printer` as its writer, else a Python operator or
the `emit` expression, as in codegen), never as a call of an internal object. Loops,
while loops and branches print as `for`, `while` and `if` with the sub-programs they run
inline (`Printer.run`); a checkpointed reversal as the plain loops that give its value.

Constants are written inline when a short expression gives them exactly (`2.0`,
`np.eye(3)`, `np.arange(4)`, a small `np.array([...])`); (rows of) an identity basis is
computed first (`basis = np.eye(6).reshape(6, 2, 3)`); the others become keyword-only
parameters whose types a comment gives (`readable` returns their values), named for their
role: the user's own name for an array the function reads (`W`), else `data_0`, ...

Names say what values are: the inputs keep the parameter names, the results take the
names asked for (`grad_x`, `hessian`), a value the user's line assigns to a variable
takes its name (`d = x[1:] - x[:-1]` keeps `d`), and a cotangent or tangent of a named
value adds `_bar` or `_dot` to it; short letters name the rest. A scatter into an array
nobody reads afterwards writes into it (`x_bar[1:] += f`) instead of copying it.
"""
import ast
import functools
import linecache
import os
import re
import types

import numpy as np

from .codegen import _comment, buffer_facts, matrix_vector_products
from .passes import optimize
from .program import Equation, Literal, Namer, Program, Var, type_string, uses_python_operator
from .staging import StagingTrace
from ..core.engine import new_trace
from ..core.primitive import ShapeDtype
from ..core.user_code import filled_cell
from ..errors import PullbackError
from ..primitives.elementwise import multiply, where
from ..primitives.families import source as value_source
from ..primitives.structural import reshape, scatter_add, scatter_set, zeros_source

# The comment over equations of no one line of the user's (a cotangent sum, a Jacobian's
# assembly, ...) where they follow a line's block: they are not that line's.
NO_LINE = "(no single line of the function)"
# Arrays up to this many elements print as `np.array([...])` when no shorter form fits.
INLINE_SIZE = 16
NAMESPACE = "import numpy as np\nimport scipy.linalg\nimport scipy.special as sp\n"


def readable(program: Program, name: str, result_names=(), known_arrays=None) -> tuple[str, dict]:
    """(source of `def name(inputs, *, arguments): ...`, {argument name: value}) for
    `program`; `result_names` name its outputs in order (others keep their hints);
    `known_arrays` ({id: name}) names the constants that are the user's own arrays."""
    printer = Printer(name, known_arrays or {})
    names = printer.names
    for var in program.invars:
        names.named(var, program.names.get(var) or var.hint or "arg")
    written_as = _writes_in_place(program)
    for var, wanted in zip(program.outvars, list(result_names) + [None] * len(program.outvars)):
        final = written_as.get(var, var)
        if type(var) is Var and final not in names.names and var not in program.invars \
                and var not in program.constvars:
            origin = var.origin if var.origin and var.origin[0] in names.names else None
            derived = origin and names.names[origin[0]] + origin[1]
            names.named(final, wanted or program.names.get(var) or var.hint or derived or "out")
    body = printer.statements(program, written_as)
    results = ", ".join(printer.operand(x) for x in program.outvars)
    body.append(f"return {results if len(program.outvars) == 1 else '[' + results + ']'}")
    signature = ", ".join([names.names[v] for v in program.invars]
                          + (["*"] + printer.parameters if printer.parameters else []))
    lines = printer.comments + [f"def {name}({signature}):"] + ["    " + line for line in body]
    return "\n".join(lines) + "\n", printer.arguments


class Printer:
    """The writer of `emit_statements` rules for `show` (`reading`): one function's
    statements, with every sub-program a loop or branch runs printed inline (`run`), under
    one set of names."""
    reading, fast = True, False

    def __init__(self, name: str, known_arrays: dict):
        self.names = Namer(Program([], [], [], [], []), reserved={name})
        self.known_arrays = known_arrays
        self.parameters, self.arguments, self.comments = [], {}, []
        self.env, self.fresh_constants = {}, {}     # Var -> its text; inline constants' texts
        self.constant_values = {}                   # inline constants' values
        self.written_as, self.user_names, self.lettered = {}, {}, set()
        self.equation, self.comment, self.unnamed = None, None, 0

    def fresh(self, hint: str) -> str:
        """A new name."""
        return self.names.named(object(), hint)

    def name_of(self, var) -> str:
        var = self.written_as.get(var, var)
        if var in self.env:
            return self.env[var]
        names = self.names
        if var in names.names:
            return names.names[var]
        if var in self.user_names:
            return names.named(var, self.user_names[var])
        if var.origin is not None and not var.hint:
            origin_var, suffix = var.origin
            if origin_var in names.names and origin_var not in self.lettered:
                return names.named(var, names.names[origin_var] + suffix)
        if not var.hint:
            self.lettered.add(var)
        return names(var)

    def operand(self, x) -> str:
        if type(x) is Literal:
            text = value_source(x.value)
            return f"({text})" if text.startswith("-") else text
        text = self.name_of(x)
        return text if _atomic(text) else f"({text})"

    # ------------------------------------------------------------------ constants

    def constant(self, var, value) -> list:
        """Bind a constant (the lines defining it, if any): inline where a short exact
        expression gives it (a literal array only when it is not the user's own, which
        keeps the user's name); (rows of) an identity basis as `basis = np.eye(...)`; else
        a keyword parameter named for its role: the user's name, or `data_0`, `data_1` ..."""
        text = constant_source(value)
        own = self.known_arrays.get(id(value))
        if own is not None and text is not None and text.startswith("np.array("):
            text = None
        for parameter, known in self.arguments.items():
            if known is value:
                self.env[var] = parameter
                return []
            if text is None and np.ndim(value) == 2 and np.shape(known) == np.shape(value)[::-1] \
                    and np.array_equal(np.transpose(known), value):
                text = f"{parameter}.T"
        if text is not None:
            self.env[var] = self.fresh_constants[var] = text
            self.constant_values[var] = value
            return []
        basis = basis_source(value) if own is None else None
        if basis is not None:         # `basis = np.eye(6).reshape(6, 2, 3)`: computed here
            self.env[var] = self.names.named(var, "basis")
            return [f"{self.env[var]} = {basis}"]
        if own is None:
            own, self.unnamed = f"data_{self.unnamed}", self.unnamed + 1
        parameter = self.env[var] = self.names.named(object(), own)
        self.parameters.append(parameter)
        self.arguments[parameter] = np.asarray(value) if isinstance(value, np.generic) else value
        self.comments.append(f"# {parameter}: {type_string(var.aval)}, a constant of the function "
                             "(pass it in)")
        return []

    def function_parameter(self, value, what: str) -> str:
        """A function the program calls that has no NumPy statements (a custom rule's
        function pullback cannot stage): a keyword parameter."""
        for parameter, known in self.arguments.items():
            if known is value:
                return parameter
        hint = re.sub(r"\W+", "_", getattr(value, "__name__", "")).strip("_")
        parameter = self.fresh(hint if hint.isidentifier() else "function")
        self.parameters.append(parameter)
        self.arguments[parameter] = value
        self.comments.append(f"# {parameter}: the function {getattr(value, '__qualname__', value)!r}"
                             f" {what} (pass it in)")
        return parameter

    # ------------------------------------------------------------------ statements

    def statements(self, program: Program, written_as=None) -> list:
        """The lines computing a program's equations (its inputs already bound)."""
        lines = [line for var, value in zip(program.constvars, program.consts)
                 for line in self.constant(var, value)]
        self.written_as.update(_writes_in_place(program) if written_as is None else written_as)
        self.user_names.update(_user_variable_names(program))
        skipped, matrix_vector = matrix_vector_products(program)
        predicates = _predicate_indices(program)
        skipped |= set(predicates)
        for i, eq in enumerate(program.equations):
            if i in skipped:
                continue
            if i in predicates.values():      # cond's index: its predicate, `if pred:`
                test = program.equations[next(k for k, j in predicates.items() if j == i)]
                eq = Equation(eq.primitive, [test.inputs[0]] + eq.inputs[1:], eq.params,
                              eq.outputs, eq.source)
            here = _comment(eq.source) or NO_LINE
            if here != (self.comment or NO_LINE):   # a block of one line's equations begins
                lines.append(f"# {here}")
                self.comment = here
            if i in matrix_vector:   # matmul of a vector made a matrix, and made a vector again
                inputs, out = matrix_vector[i]
                lines.append(f"{self.name_of(out)} = {self.operand(inputs[0])} @ "
                             f"{self.operand(inputs[1])}")
                continue
            lines += self.equation_lines(eq)
        return lines

    def equation_lines(self, eq) -> list:
        args = [self.operand(x) for x in eq.inputs]
        targets = [self.name_of(v) for v in eq.outputs]
        prim = eq.primitive
        if prim.emit_statements is not None:
            lines = []
            if prim in (scatter_add, scatter_set) and eq.inputs[0] in self.fresh_constants \
                    and not self.fresh_constants[eq.inputs[0]].endswith(".T"):
                lines.append(f"{targets[0]} = {args[0]}")      # a new array already
                args[0] = targets[0]
            self.equation = eq
            statements = prim.emit_statements(targets, args, self, **eq.params)
            if statements is not None:
                return lines + statements
        if prim is reshape and type(eq.inputs[0]) is Var:
            expr = _reshape_text(args[0], eq.inputs[0].aval.shape, tuple(eq.params["shape"]))
        elif prim is multiply and _negates(eq):       # (-1.0) * x: exactly -x
            expr = f"-{args[1] if type(eq.inputs[0]) is Literal else args[0]}"
        elif uses_python_operator(eq):
            expr = prim.python_operator.format(*args)
        elif prim.emit is not None:
            expr = prim.emit(args, **_plain_reduction(eq))
        else:       # no NumPy for it: its computation, passed in (never for the registry)
            step = functools.partial(prim.impl, **eq.params)
            step.__name__ = step.__qualname__ = prim.name
            expr = f"{self.function_parameter(step, 'that pullback computes this step with')}" \
                   f"({', '.join(args)})"
        return [f"{', '.join(targets)}{',' if prim.multiple_results and len(targets) == 1 else ''}"
                f" = {expr}"]

    def run(self, program, args: list, targets: list) -> list:
        """Statements running `program` (or a function of the current equation's inputs,
        staged here) on the expressions `args`, assigning its outputs to `targets`: its
        own statements, inline; an output is computed under its target's name where no
        later statement reads the target's old value."""
        equation = self.equation
        if not isinstance(program, Program):
            staged = _staged(program, equation.inputs)
            if staged is None:        # code pullback cannot stage: the function, passed in
                function = self.function_parameter(program, "of your custom rule")
                return [f"[{', '.join(targets)}] = {function}({', '.join(args)})"]
            program = staged
        program, args = self._specialized(program, args, equation)
        lines, bound = [], list(program.invars) + list(program.constvars)
        reads = _reads(program)
        for var, text in zip(program.invars, args):
            if _atomic(text) and not text.startswith("(") or len(reads.get(var, ())) <= 1:
                self.env[var] = text
            else:                    # an expression read more than once: computed once
                lines.append(f"{self.name_of(var)} = {text}")
        written_as = _writes_in_place(program)
        stored = [k for k, (x, target) in enumerate(zip(program.outvars, targets))
                  if x in program.invars and not target.isidentifier()]
        for k in stored:             # a row `ys[i]` of an input: stored first
            x = program.outvars[k]
            lines.append(f"{targets[k]} = {self.operand(x)}")
            reads[x] = reads[x][:-1]
        renamed = self._rename_outputs(program, args, targets, reads, written_as) | set(stored)
        lines += self.statements(program, written_as)
        pending = [(t, self.operand(x)) for k, (x, t) in enumerate(zip(program.outvars, targets))
                   if k not in renamed]
        pending = [(t, text) for t, text in pending if t != text]
        if pending:
            lines.append(f"{', '.join(t for t, _ in pending)} = "
                         f"{', '.join(text for _, text in pending)}")
        for var in bound + [v for eq in program.equations for v in eq.outputs]:
            self.env.pop(var, None)
            self.names.names.pop(var, None)
            self.written_as.pop(var, None)
        self.equation = equation
        return lines

    def _specialized(self, program, args, equation):
        """(program, args) with the inputs given a constant of the current equation (a
        number, a small array written inline: never a carry, whose name is a target)
        made constants of the program, optimised again: `1.0 * x` is `x`."""
        known = {}
        for x in equation.inputs:
            if type(x) is Literal and type(x.value) in (int, float):
                known[self.operand(x)] = np.asarray(x.value)
            elif type(x) is Var and x in self.fresh_constants:
                known[self.operand(x)] = self.constant_values[x]
        fixed = [k for k, (v, text) in enumerate(zip(program.invars, args))
                 if text in known and not v.weak and np.shape(known[text]) == tuple(v.aval.shape)
                 and np.asarray(known[text]).dtype == v.aval.dtype]
        if not fixed:
            return program, args
        kept = [k for k in range(len(args)) if k not in fixed]
        program = optimize(Program(
            [program.invars[k] for k in kept],
            list(program.constvars) + [program.invars[k] for k in fixed],
            list(program.consts) + [known[args[k]] for k in fixed], program.equations,
            program.outvars, name=program.name))
        return program, [args[k] for k in kept]

    def _rename_outputs(self, program, args, targets, reads, written_as) -> set:
        """Positions of the outputs computed under their targets' names: a variable the
        program computes (once among the outputs), where every input bound to the target's
        name is read last before it is first assigned (or by the very expression that
        assigns it)."""
        producer = {v: i for i, eq in enumerate(program.equations) for v in eq.outputs}
        printed_as = {}
        for x, final in written_as.items():
            printed_as.setdefault(final, []).append(x)
        renamed, seen = set(), set()
        for k, (x, target) in enumerate(zip(program.outvars, targets)):
            if type(x) is not Var or x not in producer or x in seen or x in written_as:
                seen.add(x)
                continue
            seen.add(x)
            first = min(producer[v] for v in [x] + printed_as.get(x, []))
            one_expression = producer[x] == first and not printed_as.get(x) \
                and program.equations[first].primitive.emit_statements is None
            if not target.isidentifier():     # a row `ys[i]`: for a value read nowhere else
                if one_expression and reads[x] == [len(program.equations)] \
                        and program.outvars.count(x) == 1:
                    self.names.names[x] = target
                    renamed.add(k)
                continue
            if all(max(reads.get(v) or [-1]) < first or one_expression and max(reads[v]) == first
                   for v, text in zip(program.invars, args) if text == target):
                self.names.names[x] = target
                renamed.add(k)
        return renamed


def _predicate_indices(program: Program) -> dict:
    """{index of `k = np.where(pred, 1, 0)`: index of the switch of two branches, the only
    reader of k, that takes it as its index}: cond, which prints as `if pred:`."""
    reads, found = _reads(program), {}
    for i, eq in enumerate(program.equations):
        if eq.primitive is where and [type(x) for x in eq.inputs[1:]] == [Literal, Literal] \
                and [x.value for x in eq.inputs[1:]] == [1, 0] and type(eq.inputs[0]) is Var \
                and eq.inputs[0].aval.dtype == np.bool_ and not eq.inputs[0].aval.shape:
            readers = reads.get(eq.outputs[0], [])
            if len(readers) == 1 and readers[0] < len(program.equations):
                switch = program.equations[readers[0]]
                if len(switch.params.get("branches", ())) == 2 \
                        and switch.inputs[0] is eq.outputs[0] \
                        and eq.outputs[0] not in switch.inputs[1:]:
                    found[i] = readers[0]
    return found


def _reads(program: Program) -> dict:
    """Var -> the indices of the equations reading it (the outputs: one past the end)."""
    reads = {}
    for i, eq in enumerate(program.equations):
        for x in eq.inputs:
            if type(x) is Var:
                reads.setdefault(x, []).append(i)
    for x in program.outvars:
        if type(x) is Var:
            reads.setdefault(x, []).append(len(program.equations))
    return reads


def _atomic(text: str) -> bool:
    """Whether an expression needs no parentheses as an operand: no operator at its top
    level (`x`, `x[1:]`, `np.eye(3)`, `a.T`), and no leading minus."""
    if text.startswith("-"):
        return False
    depth = 0
    for c in text:
        depth += c in "([{"
        depth -= c in ")]}"
        if c == " " and depth == 0:
            return False
    return True


def _staged(function, inputs):
    """The program of a flat function at the types of an equation's inputs, optimised, or
    None where it cannot be staged (code that is not NumPy's)."""
    try:
        with new_trace(StagingTrace) as trace:
            tracers = [trace.new_input(ShapeDtype((), np.asarray(x.value).dtype), "", True)
                       if type(x) is Literal else trace.new_input(x.aval, "", x.weak)
                       for x in inputs]
            outvars = [trace.read(o) for o in function(*tracers)]
    except PullbackError:
        return None
    return optimize(Program([t.staged_var for t in tracers], trace.constvars, trace.consts,
                            trace.equations, outvars))


def user_arrays(fn, depth: int = 4) -> dict:
    """{id(array): name} for the arrays the user's code names, that `fn` reaches: its
    closure variables, defaults and the globals it reads, through the functions it wraps
    and calls (a few deep), so that a constant of the program keeps the user's name."""
    found, seen = {}, set()

    def visit(obj, depth):
        if id(obj) in seen or depth < 0:
            return
        seen.add(id(obj))
        if isinstance(obj, functools.partial):
            obj = obj.func
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            visit(wrapped, depth - 1)
        if not isinstance(obj, types.FunctionType):
            return
        code, own = obj.__code__, not obj.__code__.co_filename.startswith(_LIBRARY)
        named = [(n, c.cell_contents) for n, c in zip(code.co_freevars, obj.__closure__ or ())
                 if filled_cell(c)]
        defaults = obj.__defaults__ or ()
        named += list(zip(code.co_varnames[code.co_argcount - len(defaults):code.co_argcount],
                          defaults)) + list((obj.__kwdefaults__ or {}).items())
        if own:
            named += [(n, obj.__globals__[n]) for n in sorted(_global_names(code))
                      if n in obj.__globals__]
        for name, value in named:
            if isinstance(value, np.ndarray) and own:
                found.setdefault(id(value), name)
            elif callable(value) and not isinstance(value, type):
                visit(value, depth - 1)
    visit(fn, depth)
    return found


_LIBRARY = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _global_names(code) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _reshape_text(x: str, shape: tuple, new: tuple) -> str:
    """A reshape as a person writes it: a unit axis added or dropped at the end or front by
    indexing (`x[:, None]`, `x[None]`, `x[:, 0]`), else `x.reshape(4, 3)`."""
    shape = tuple(shape)
    if new == shape + (1,):
        return f"{x}[:, None]" if len(shape) == 1 else f"{x}[..., None]"
    if new == (1,) + shape:
        return f"{x}[None]"
    if shape == new + (1,):
        return f"{x}[:, 0]" if len(new) == 1 else f"{x}[..., 0]"
    return f"{x}.reshape({', '.join(map(str, new)) if new else '()'})"


def _negates(eq) -> bool:
    """Whether a multiply equation is `-1 * x` for x of its output's type."""
    for a, b in (eq.inputs, eq.inputs[::-1]):
        if type(a) is Literal and type(a.value) in (int, float) and a.value == -1 \
                and type(b) is Var and not b.weak and b.aval == eq.outputs[0].aval:
            return True
    return False


def _plain_reduction(eq) -> dict:
    """A reduction's parameters as a person writes them: no `keepdims=False`, no `axis` when
    it is every axis, `axis=0` for one axis; other equations' parameters as they are."""
    params = dict(eq.params)
    if set(params) != {"axis", "keepdims"} or type(eq.inputs[0]) is not Var:
        return params
    if not params["keepdims"]:
        del params["keepdims"]
    if tuple(params["axis"]) == tuple(range(len(eq.inputs[0].aval.shape))):
        del params["axis"]
    elif len(params["axis"]) == 1:
        params["axis"] = params["axis"][0]
    return params


def _writes_in_place(program: Program) -> dict:
    """Var -> the var it is printed as: a scatter's operand that nothing reads afterwards and
    that this function made itself (no input, constant or view of one) is written into,
    under the scatter's output name."""
    last_use, viewed, made = buffer_facts(program)
    written_as = {}
    for i in reversed(range(len(program.equations))):
        eq = program.equations[i]
        x = eq.inputs[0] if eq.inputs else None
        if eq.primitive in (scatter_add, scatter_set) and type(x) is Var and x in made \
                and x not in viewed and last_use[x] == i and x.aval == eq.outputs[0].aval \
                and x not in eq.inputs[1:]:
            written_as[x] = written_as.get(eq.outputs[0], eq.outputs[0])
    return written_as


def _user_variable_names(program: Program) -> dict:
    """Var -> the name the user's line gives it, for a run of equations (not derived ones)
    from a line `name = ...` (or `name += ...`): the value whose tangent the run computes
    last, if it computes tangents (forward mode), else its last value."""
    named, last, primal, run = {}, None, None, set()
    equations = program.equations
    for i, eq in enumerate(equations):
        if eq.source and "|" not in eq.source and len(eq.outputs) == 1:
            last = eq.outputs[0]
            origin = last.origin
            if origin is not None and origin[1] == "_dot" and origin[0] in run:
                primal = origin[0]
            run.add(last)
        if i + 1 < len(equations) and equations[i + 1].source == eq.source:
            continue
        variable = _assigned_name(eq.source) if last is not None else ""
        if variable:
            named[primal or last] = variable
        last, primal, run = None, None, set()
    return named


def _assigned_name(source: str) -> str:
    """The variable a recorded line `file:line` assigns (`d = ...`, `d += ...`), or ''."""
    filename, _, line = source.rpartition(":")
    if not line.isdigit():
        return ""
    text = linecache.getline(filename, int(line)).strip()
    try:
        statement = ast.parse(text).body[0]
    except (SyntaxError, IndexError):
        return ""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, (ast.AugAssign, ast.AnnAssign)):
        target = statement.target
    else:
        return ""
    return target.id if isinstance(target, ast.Name) else ""


def constant_source(value):
    """A short NumPy expression equal to `value` (same shape, dtype and bits), or None."""
    if type(value) in (bool, int, float, complex):
        return value_source(value)
    if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biufc":
        return None
    array = np.asarray(value)
    return _exact(value_source(array[()]) if array.ndim == 0 else _array_expression(array), array)


def basis_source(value):
    """`np.eye(k, m, offset)`, scaled and reshaped, where `value` is that (rows of an
    identity basis, as jacobian and hessian push through a function), exactly; or None."""
    array = np.asarray(value)
    if array.ndim < 2 or array.dtype.kind != "f" or not array.size:
        return None
    rows = array.reshape(array.shape[0], -1)
    k, m = rows.shape
    columns = np.argmax(rows != 0, axis=1)
    scale = rows[0, columns[0]]
    if np.any(np.count_nonzero(rows, axis=1) != 1) or np.any(columns != columns[0] + np.arange(k)) \
            or np.any(rows[np.arange(k), columns] != scale):
        return None
    typed = "" if array.dtype == np.float64 else f", dtype={value_source(array.dtype)}"
    size = f"{k}" if m == k and not columns[0] else f"{k}, {m}"
    offset = f", {columns[0]}" if columns[0] else ""
    text = f"np.eye({size}{offset}{typed})" + (f".reshape{tuple(array.shape)}" if array.ndim > 2
                                               else "")
    scale = scale.item()
    text = text if scale == 1 else f"-{text}" if scale == -1 else f"{value_source(scale)} * {text}"
    return _exact(text, array)


def _exact(text, array: np.ndarray):
    """`text` if it evaluates to `array` exactly (shape, dtype, bits, signs of zeros)."""
    if text is None:
        return None
    try:
        evaluated = np.asarray(eval(text, {"np": np}))    # noqa: S307  (our own text)
    except Exception:                                     # pragma: no cover - a bug
        return None
    same = (evaluated.shape == array.shape and evaluated.dtype == array.dtype
            and np.array_equal(evaluated, array, equal_nan=array.dtype.kind == "f")
            and (array.dtype.kind != "f" or np.array_equal(np.signbit(evaluated),
                                                           np.signbit(array))))
    return text if same else None


def _array_expression(array: np.ndarray):
    dtype, shape = array.dtype, array.shape
    typed = "" if dtype in (np.float64, np.int64, np.bool_) else f", {value_source(dtype)}"
    flat = array.ravel()
    if not array.size:
        return zeros_source(shape, dtype)
    if np.all(flat == flat[0]):
        first = flat[0].item()
        if first == 0 and not np.signbit(flat[0]) and dtype.kind == "f":
            return zeros_source(shape, dtype)
        size = str(shape[0]) if len(shape) == 1 else value_source(tuple(shape))
        if first == 1 and dtype == np.float64:
            return f"np.ones({size})"
        return f"np.full({size}, {value_source(first)}{typed})"
    if array.ndim == 2 and shape[0] == shape[1] and dtype.kind == "f":
        diagonal = np.diagonal(array)
        if np.all(diagonal == diagonal[0]) and np.array_equal(array, diagonal[0] * np.eye(
                shape[0], dtype=dtype)):
            scale = diagonal[0].item()
            eye = f"np.eye({shape[0]}{typed})"
            return eye if scale == 1 else f"-{eye}" if scale == -1 else \
                f"{value_source(scale)} * {eye}"
    if array.ndim == 1 and np.array_equal(array, np.arange(array.size, dtype=dtype)):
        return f"np.arange({array.size}{'.0' if dtype.kind == 'f' else ''}{typed})" \
            if dtype.kind in "if" else None
    if array.size <= INLINE_SIZE and dtype.kind in "biufc":
        return f"np.array({_nested(array.tolist())}{typed})"
    return None


def _nested(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return value_source(values)
