"""Code generation: a Program becomes the source of a plain Python function of NumPy calls.

Each equation is one assignment, written by its primitive's `emit` rule (NumPy
calls and operators), or as a call of the primitive itself when it has none; an
equation of Python arithmetic on Python scalars (a weakly typed output) is written
as Python's operator, which computes a Python scalar as eager mode does.
Names come from the program (the user's parameter names for inputs) and short
letters otherwise; each block of equations carries a comment naming the user's
source line it came from.

Two variants are generated from one program:
- `fast=True` reuses dead intermediate buffers through NumPy's `out=` argument
  for elementwise ufuncs (fewer temporaries), and adds a `scatter_add` with a basic
  index into its operand's buffer in place (`y = x; y[index] += updates`) when that
  operand is a fresh intermediate nobody reads afterwards; it needs real arrays.
  Safe by construction: only outputs of primitives declaring `fresh_output` are
  written into, and never one that any other primitive read (its output may be a view);
- `fast=False` is pure NumPy calls, so it also runs on tracers: an outer
  transformation differentiates, batches or stages it like any NumPy code.

Either way the outputs are independent arrays, as in eager mode: an output whose
buffer may be an input's, a constant's or an earlier output's is returned as a copy.

A primitive with an `emit_statements` rule (a loop, a conditional) writes statements
instead of an expression; the sub-programs in its parameters become functions of the
same generated module (`Code.function`), named after the user's functions.
"""
import linecache
import os

import numpy as np
import scipy.special as sp

from ..core.indexing import ArrayIndex, Slice
from ..primitives import REGISTRY
from ..primitives.families import source as value_source
from ..primitives.structural import _index_source as index_entry_source
from ..primitives.structural import scatter_add
from .program import RESERVED, Literal, Namer, Program


def _global_name(prim):
    return f"{prim.name}_p"


class Code:
    """The module being generated, for statement emitters: its globals, the functions
    written so far, whether it is the fast variant, and fresh names."""

    def __init__(self, fast: bool):
        self.fast, self.functions, self.params_count = fast, [], [0]
        self.globals = {"np": np, "sp": sp, "Slice": Slice, "ArrayIndex": ArrayIndex}
        self.taken = {_global_name(p) for p in REGISTRY.values()}
        self.local_names = None          # the Namer of the function being written

    def reserved(self) -> set:
        return self.taken | set(self.globals)

    def _unique(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.reserved() or name in RESERVED:
            name, k = f"{hint}_{k}", k + 1
        self.taken.add(name)
        return name

    def function(self, program: Program, hint: str) -> str:
        """Write `program` as a function of the module; returns its name."""
        name = self._unique(hint if hint.isidentifier() else "body")
        outer = self.local_names
        text, _ = generate(program, name, self.fast, self)
        self.local_names = outer
        self.functions.append(text)
        return name

    def value(self, obj, hint: str) -> str:
        """A global name for a Python object the statements use."""
        name = self._unique(hint)
        self.globals[name] = obj
        return name

    def fresh(self, hint: str) -> str:
        """A new local name in the function being written."""
        return self.local_names.named(object(), hint)


def generate(program: Program, name: str = "f", fast: bool = True, code: Code = None):
    """(source, globals) of a function `name(*inputs) -> list of outputs`; with `code` (an
    enclosing module), the source of this function alone, in that module."""
    top = code is None
    code = code or Code(fast)
    code.taken.add(name)
    names = code.local_names = Namer(program, reserved={name} | code.reserved())
    globals_ = code.globals
    for var, value in zip(program.constvars, program.consts):
        const_name = names(var) if var.hint else names.named(var, "const")
        code.taken.add(const_name)
        globals_[const_name] = value
    params_count = code.params_count

    def param_expr(value):
        try:
            text = value_source(value)
            evaluated = eval(text, globals_)              # noqa: S307  (our own literals)
            if evaluated == value or repr(evaluated) == repr(value):      # NaN != NaN
                return text
        except Exception:                                 # not representable as a literal
            pass
        params_count[0] += 1
        key = f"_param{params_count[0]}"
        globals_[key] = value
        return key

    def operand(x):
        if type(x) is not Literal:
            return names(x)
        text = value_source(x.value)     # a negative literal is parenthesised: (-2.0) ** x
        return f"({text})" if text.startswith("-") else text

    reusable = _reusable_buffers(program) if fast else {}
    in_place = _in_place_scatters(program) if fast else set()
    lines = [f"def {name}({', '.join(names(v) for v in program.invars)}):"]
    comment = None
    for i, eq in enumerate(program.equations):
        here = _comment(eq.source)
        if here and here != comment:
            lines.append(f"    # {here}")
            comment = here
        args = [operand(x) for x in eq.inputs]
        prim = eq.primitive
        if i in in_place:       # scatter_add into its dead operand's buffer
            target, index = names(eq.outputs[0]), _index_source(eq.params["index"])
            lines.append(f"    {target} = {args[0]}")
            lines.append(f"    {target}[{index}] += {args[1]}")
            continue
        if prim.emit_statements is not None:
            targets = [names(v) for v in eq.outputs]
            lines += ["    " + line for line in prim.emit_statements(args, targets, code,
                                                                      **eq.params)]
            continue
        if i in reusable:       # an elementwise ufunc writing into a dead input's buffer
            expr = prim.emit(args, out=names(reusable[i]))
        elif prim.python_operator and (eq.outputs[0].weak or any(
                type(x) is not Literal and not x.weak for x in eq.inputs)):
            # Python's operator: NumPy's ufunc where an operand is an array, Python's
            # arithmetic (weakly typed) on Python scalars, as staged.
            expr = prim.python_operator.format(*args)
        elif prim.emit is not None:
            expr = prim.emit(args, **eq.params)
        else:
            globals_[_global_name(prim)] = prim
            keywords = [f"{k}={param_expr(v)}" for k, v in eq.params.items()]
            expr = f"{_global_name(prim)}({', '.join(args + keywords)})"
        targets = ", ".join(names(v) for v in eq.outputs)
        if prim.multiple_results and len(eq.outputs) == 1:
            targets += ","
        lines.append(f"    {targets} = {expr}")
    copied = _copied_outputs(program, reusable, in_place)
    outs = ", ".join(f"np.copy({operand(x)})" if i in copied else operand(x)
                     for i, x in enumerate(program.outvars))
    lines.append(f"    return [{outs}]")
    text = "\n".join(lines) + "\n"
    return ("\n".join(code.functions + [text]) if top else text), globals_


def compile_program(program: Program, name: str = "f", fast: bool = True):
    """The generated function itself (and its source, as `.source`)."""
    text, globals_ = generate(program, name, fast)
    code = compile(text, f"<pullback generated {name}>", "exec")
    exec(code, globals_)                                  # noqa: S102  (our own source)
    fn = globals_[name]
    fn.source = text
    return fn


def _comment(source: str) -> str:
    """`file:line  code` for a recorded source location (empty if unknown)."""
    if not source:
        return ""
    location, _, derived = source.partition("|")
    filename, _, line = location.rpartition(":")
    text = linecache.getline(filename, int(line)).strip() if line.isdigit() else ""
    label = f"{os.path.basename(filename)}:{line}" + (f"  {text}" if text else "")
    return f"derivative of {label}" if derived else label


def _buffer_facts(program: Program):
    """(last_use, viewed, fresh): the index of the last equation reading each variable
    (the outputs count as read after the last one); the variables some equation may
    return a view of (every input of a primitive without `fresh_output`); and the
    non-0-d outputs of `fresh_output` primitives, whose buffers are their own."""
    last_use, viewed, fresh = {}, set(), set()
    for i, eq in enumerate(program.equations):
        for x in eq.inputs:
            if type(x) is not Literal:
                last_use[x] = i
                if not eq.primitive.fresh_output:
                    viewed.add(x)
        if eq.primitive.fresh_output:
            fresh.update(v for v in eq.outputs if v.aval.shape)
    for x in program.outvars:
        if type(x) is not Literal:
            last_use[x] = len(program.equations)
    return last_use, viewed, fresh


def _copied_outputs(program: Program, reusable: dict, in_place: set) -> set:
    """Positions of the outputs to copy, so that the caller owns independent arrays, as in
    eager mode: those whose buffer may be an input's, a constant's or an earlier output's.

    Each variable may share the buffers of a set of roots: an input or constant is its
    own root, as is each output of a `fresh_output` primitive; the outputs of any other
    equation may share its inputs' roots and each other's (a root of the equation); an
    output written into an input's buffer (`out=`, in-place scatter) shares its roots.
    """
    roots = {v: {v} for v in program.invars + program.constvars}
    for i, eq in enumerate(program.equations):
        if i in reusable or i in in_place:
            shared = roots[reusable[i] if i in reusable else eq.inputs[0]]
        elif eq.primitive.fresh_output:
            shared = None
        else:
            shared = {i}.union(*(roots[x] for x in eq.inputs if type(x) is not Literal))
        roots.update((v, {v} if shared is None else shared) for v in eq.outputs)
    taken = set(program.invars + program.constvars)
    copied = set()
    for position, x in enumerate(program.outvars):
        if type(x) is Literal:
            continue
        if roots[x] & taken:
            copied.add(position)
        else:
            taken |= roots[x]
    return copied


def _in_place_scatters(program: Program) -> set:
    """Indices of the `scatter_add` equations that may add into their operand's buffer.

    As for `_reusable_buffers`: the operand is a fresh intermediate array (its buffer is
    its own), of the output's type, not possibly viewed, not read after this
    one; the index is basic (no index arrays: `+=` then adds each position once) and
    the updates are another variable (or a literal).
    """
    last_use, viewed, fresh = _buffer_facts(program)
    in_place = set()
    for i, eq in enumerate(program.equations):
        if eq.primitive is not scatter_add or len(eq.inputs) != 2:
            continue
        x, updates = eq.inputs
        if (type(x) is not Literal and x in fresh and x not in viewed and last_use[x] == i
                and x.aval == eq.outputs[0].aval and updates is not x):
            in_place.add(i)
    return in_place


def _index_source(index) -> str:
    """A basic index template as Python source, e.g. `1:, 0`."""
    return ", ".join(index_entry_source(e, ()) for e in index) or "()"


def _reusable_buffers(program: Program) -> dict:
    """Equation index -> an input variable whose buffer the output may be written into.

    Only for elementwise ufunc equations (emitted as `np.<ufunc>(...)` or an operator
    we can rewrite), when the input is a fresh intermediate array (the output of a
    `fresh_output` primitive), has the output's shape and dtype, is not read by an
    equation that may return a view of it, and is not used after this equation.
    """
    last_use, viewed, fresh = _buffer_facts(program)
    reusable = {}
    for i, eq in enumerate(program.equations):
        if not writes_into_buffers(eq.primitive):
            continue
        out = eq.outputs[0]
        if not out.aval.shape:
            continue
        for x in eq.inputs:
            if (type(x) is not Literal and x in fresh and x not in viewed and last_use[x] == i
                    and x.aval == out.aval and x not in reusable.values()):
                reusable[i] = x
                break
    return reusable


def writes_into_buffers(primitive) -> bool:
    """Whether an elementwise primitive is computed by a NumPy ufunc, whose emitter then
    writes into a given buffer (`out=`)."""
    return primitive.family == "elementwise" and primitive.fresh_output and any(
        isinstance(f, np.ufunc) and getattr(np, f.__name__, None) is f
        for f in primitive.numpy_functions)
