"""Readable source for `show`: a program printed as NumPy code a person could have written.

The text runs as it is with `import numpy as np`, `import scipy`, `import scipy.linalg`
and `import scipy.special as sp`: each equation is written by its primitive's emitters
(`emit_eager` statements first, else a Python operator or the `emit` expression, as in
codegen), never as a call of an internal object. Constants are written inline when a
short expression gives them exactly (`2.0`, `np.eye(3)`, `np.arange(4)`, a small
`np.array([...])`); the others, and the user's functions a custom rule calls, become
keyword-only parameters whose types a comment gives (`readable` returns their values).

Names say what values are: the inputs keep the parameter names, the results take the
names asked for (`grad_x`, `hessian`), a value the user's line assigns to a variable
takes its name (`d = x[1:] - x[:-1]` keeps `d`), and a cotangent or tangent of a named
value adds `_bar` or `_dot` to it; short letters name the rest. A scatter into an array
nobody reads afterwards writes into it (`x_bar[1:] += f`) instead of copying it.
"""
import ast
import functools
import linecache
import re

import numpy as np

from .codegen import Code, _comment, buffer_facts
from .program import Literal, Namer, Program, Var, type_string
from ..primitives.contraction import matmul
from ..primitives.elementwise import multiply
from ..primitives.families import source as value_source
from ..primitives.structural import reshape, scatter_add, scatter_set, zeros_source

# Arrays up to this many elements print as `np.array([...])` when no shorter form fits.
INLINE_SIZE = 16
NAMESPACE = "import numpy as np\nimport scipy.linalg\nimport scipy.special as sp\n"


def readable(program: Program, name: str, result_names=()) -> tuple[str, dict]:
    """(source of `def name(inputs, *, arguments): ...`, {argument name: value}) for
    `program`; `result_names` name its outputs in order (others keep their hints)."""
    names = Namer(Program([], [], [], [], []), reserved={name})
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
    user_names, lettered = _user_variable_names(program), set()
    parameters, arguments, comments, constants = [], {}, [], {}
    for var, value in zip(program.constvars, program.consts):
        text = constant_source(value) or next(
            (f"{parameter}.T" for parameter, known in arguments.items()
             if np.ndim(value) == 2 and np.shape(known) == np.shape(value)[::-1]
             and np.array_equal(np.transpose(known), value)), None)
        if text is not None:
            constants[var] = text
            continue
        parameter = names.named(var, var.hint or "data")
        parameters.append(parameter)
        arguments[parameter] = value
        comments.append(f"# {parameter}: {type_string(var.aval)}, a constant of the function "
                        "(pass it in)")

    def name_of(var):
        var = written_as.get(var, var)
        if var in names.names:
            return names.names[var]
        if var in user_names:
            return names.named(var, user_names[var])
        if var.origin is not None and not var.hint:
            origin_var, suffix = var.origin
            if origin_var in names.names and origin_var not in lettered:
                return names.named(var, names.names[origin_var] + suffix)
        if not var.hint:
            lettered.add(var)
        return names(var)

    def operand(x):
        if type(x) is Literal:
            text = value_source(x.value)
            return f"({text})" if text.startswith("-") else text
        if x in constants:
            text = constants[x]
            return f"({text})" if text.startswith("-") or re.match(r"\S+ \* ", text) else text
        return name_of(x)

    def function_parameter(value, what="of your custom rule"):
        """A function the program calls that NumPy has no statement for (a user function a
        custom rule calls, a loop): a keyword-only parameter."""
        for parameter, known in arguments.items():
            if known is value:
                return parameter
        hint = re.sub(r"\W+", "_", getattr(value, "__name__", "")).strip("_")
        parameter = names.named(object(), hint if hint.isidentifier() else "function")
        parameters.append(parameter)
        arguments[parameter] = value
        comments.append(f"# {parameter}: the function {getattr(value, '__qualname__', value)!r}"
                        f" {what} (pass it in)")
        return parameter

    skipped, matrix_vector = _matrix_vector_products(program)
    body, comment, loops = [], None, None
    for i, eq in enumerate(program.equations):
        if i in skipped:
            continue
        here = _comment(eq.source)
        if here and here != comment:
            body.append(f"# {here}")
            comment = here
        if i in matrix_vector:       # matmul of a vector made a matrix, and made a vector again
            inputs, out = matrix_vector[i]
            body.append(f"{name_of(out)} = {operand(inputs[0])} @ {operand(inputs[1])}")
            continue
        args = [operand(x) for x in eq.inputs]
        targets = [name_of(v) for v in eq.outputs]
        prim = eq.primitive
        if prim.emit_eager is None and prim.emit_statements is not None:   # a loop, a branch
            if loops is None:
                loops = Code(fast=False)
            loops.local_names = names
            body += prim.emit_statements(args, targets, loops, **eq.params)
            continue
        if prim.emit_eager is not None:
            params = {k: function_parameter(v) if callable(v) and not isinstance(v, type) else v
                      for k, v in eq.params.items()}
            if prim in (scatter_add, scatter_set) and eq.inputs[0] in constants \
                    and not constants[eq.inputs[0]].endswith(".T"):     # not an argument's view
                body.append(f"{targets[0]} = {constants[eq.inputs[0]]}")   # a new array already
                args[0] = targets[0]
            body += prim.emit_eager(targets, args, eq.outputs[0].aval.dtype, **params)
            continue
        if prim is reshape and type(eq.inputs[0]) is Var:
            expr = _reshape_text(args[0], eq.inputs[0].aval.shape, tuple(eq.params["shape"]))
        elif prim is multiply and _negates(eq):       # (-1.0) * x: exactly -x
            expr = f"-{args[1] if type(eq.inputs[0]) is Literal else args[0]}"
        elif prim.python_operator and (eq.outputs[0].weak or any(
                type(x) is not Literal and not x.weak for x in eq.inputs)):
            expr = prim.python_operator.format(*args)
        elif prim.emit is not None:
            expr = prim.emit(args, **_plain_reduction(eq))
        else:       # no NumPy for it (a loop, a LAPACK helper): its computation, passed in
            step = functools.partial(prim.impl, **eq.params)
            step.__name__ = step.__qualname__ = prim.name
            expr = f"{function_parameter(step, 'that pullback computes this step with')}({', '.join(args)})"
        body.append(f"{', '.join(targets)}{',' if prim.multiple_results and len(targets) == 1 else ''}"
                    f" = {expr}")
    results = ", ".join(operand(x) for x in program.outvars)
    body.append(f"return {results if len(program.outvars) == 1 else '[' + results + ']'}")
    if loops is not None:       # the bodies, written by the code generator, as inner functions
        functions = [line for text in loops.functions for line in text.splitlines()]
        for key, value in list(loops.globals.items()):
            if re.fullmatch(r"const(_\d+)?", key):       # a body's constant: named by role
                role = names.named(object(), "data")
                functions = [re.sub(rf"\b{key}\b", role, line) for line in functions]
                body = [re.sub(rf"\b{key}\b", role, line) for line in body]
                loops.globals[role] = loops.globals.pop(key)
        written = "\n".join(functions + body)
        for key, value in loops.globals.items():
            if key not in ("np", "sp") and re.search(rf"\b{key}\b", written):
                parameters.append(key)
                arguments[key] = value
                comments.append(f"# {key}: {getattr(value, '__name__', type(value).__name__)}, "
                                "which the loop's functions use (pass it in)")
        body = functions + body
    signature = ", ".join([names.names[v] for v in program.invars]
                          + (["*"] + parameters if parameters else []))
    lines = comments + [f"def {name}({signature}):"] + ["    " + line for line in body]
    return "\n".join(lines) + "\n", arguments


def _matrix_vector_products(program: Program):
    """(skipped equations, {matmul equation: (operands, output)}): `A @ v` for a 1-d v
    where the program reshapes v to a column (or row), multiplies, and reshapes the result
    back (the matmul primitive takes matrices only), as a person writes it."""
    uses = {}
    for eq in program.equations:
        for x in eq.inputs:
            uses[x] = uses.get(x, 0) + 1
    for x in program.outvars:
        uses[x] = uses.get(x, 0) + 2
    producer = {v: i for i, eq in enumerate(program.equations) for v in eq.outputs}
    reader = {x: i for i, eq in enumerate(program.equations) for x in eq.inputs}
    equations = program.equations
    skipped, folded, folded_uses = set(), {}, {}

    def vector_made_matrix(x, side):
        """(index of the reshape, the vector) if x is only a reshaped 1-d vector."""
        i = producer.get(x)
        if i is None or equations[i].primitive is not reshape:
            return None
        (v,) = equations[i].inputs
        if type(v) is not Var or len(v.aval.shape) != 1:
            return None
        wanted = v.aval.shape + (1,) if side == 1 else (1,) + v.aval.shape
        return (i, v) if tuple(x.aval.shape) == wanted else None

    for i, eq in enumerate(equations):
        if eq.primitive is not matmul or uses.get(eq.outputs[0]) != 1:
            continue
        out = eq.outputs[0]
        j = reader.get(out)
        after = equations[j] if j is not None else None
        for side in (1, 0):
            made = vector_made_matrix(eq.inputs[side], side)
            if made is None or after is None or after.primitive is not reshape:
                continue
            shape = out.aval.shape[:-1] if side == 1 else out.aval.shape[:-2] + out.aval.shape[-1:]
            if side == 0 and len(eq.inputs[1].aval.shape) != 2:
                continue
            if tuple(after.outputs[0].aval.shape) == tuple(shape):
                inputs = list(eq.inputs)
                inputs[side] = made[1]
                skipped.add(j)
                folded_uses[made[0]] = folded_uses.get(made[0], 0) + 1
                folded[i] = (inputs, after.outputs[0])
                break
    # a reshape to a matrix that only folded products read is not written at all
    skipped.update(i for i, n in folded_uses.items() if n == uses[equations[i].outputs[0]])
    return skipped, folded


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
    if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biuf":
        return None
    array = np.asarray(value)
    text = value_source(array[()]) if array.ndim == 0 else _array_expression(array)
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
    if array.size <= INLINE_SIZE and dtype.kind in "biuf":
        return f"np.array({_nested(array.tolist())}{typed})"
    return None


def _nested(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return value_source(values)
