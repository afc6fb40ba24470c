"""Code generation: a Program becomes the source of a plain Python function of NumPy calls.

Each equation is one assignment, written by its primitive's `emit` rule (NumPy
calls and operators), or as a call of the primitive itself when it has none; an
equation of Python arithmetic on Python scalars (a weakly typed output) is written
as Python's operator, which computes a Python scalar as eager mode does.
A matmul of a 1-d vector made a matrix, made a vector again (how a 1-d `@` is staged: the
primitive takes matrices), is written as NumPy's own 1-d `A @ v`, the same product without
two reshapes. Names come from the program (the user's parameter names for inputs) and short
letters otherwise; each block of equations carries a comment naming the user's
source line it came from.

Two variants are generated from one program:
- `fast=True` reuses dead intermediate buffers through NumPy's `out=` argument
  for elementwise ufuncs (fewer temporaries), and adds a `scatter_add` with a basic
  index into its operand's buffer in place (`y = x; y[index] += updates`) when that
  operand is a fresh intermediate nobody reads afterwards, else into a copy of it (the
  primitive's impl inline); it needs real arrays. With `keeps` (jit's functions), large
  intermediates (`SCRATCH_BYTES`) that never reach a result are written (`out=`: ufuncs,
  matmul; fused kernels' given outputs) into buffers the function keeps from one call
  to the next, in pools per shape and dtype (`_scratch_plan`: freeing and allocating
  them again cost page faults);
  Safe by construction: only outputs of primitives declaring `fresh_output` are
  written into, and never one that any other primitive read (its output may be a view);
- `fast=False` is pure NumPy calls, so it also runs on tracers: an outer
  transformation differentiates, batches or stages it like any NumPy code; an equation
  whose first operand is a constant array and another a variable binds its primitive
  (`table[i]` of a NumPy table cannot take a traced index).

Both release each intermediate after its last use (`del`), as eager code drops a
temporary, so that a long program holds about as much memory as the eager function.
Either way the outputs are independent arrays, as in eager mode: an output whose
buffer may be an input's, a constant's or an earlier output's is returned as a copy.
Every step is linear (or near-linear) in the number of equations.

A primitive's `emit_statements` rule (a loop, a conditional) writes statements instead of
an expression, with `Code` as the writer; the sub-programs it runs (`Code.run`) become
functions of the same generated module, named after the user's functions. (The printer of
`show`, ir/readable.py, is the other writer these rules serve.)
"""
import inspect
import linecache
import math
import os
from dataclasses import replace

import numpy as np
from ..primitives import scipy_special as sp

from ..core.arrays import is_array
from ..core.indexing import ArrayIndex, Slice
from ..primitives import REGISTRY
from ..primitives.families import source as value_source
from ..primitives.contraction import matmul
from ..primitives.structural import _index_source as index_entry_source
from ..primitives.structural import reshape, scatter_add
from .program import RESERVED, Literal, Namer, Program, Var, gc_paused, uses_python_operator


def _global_name(prim):
    return f"{prim.name}_p"


class Code:
    """The module being generated, the writer of `emit_statements` rules: its globals, the
    functions written so far, whether it is the fast variant (and keeps buffers from call
    to call: `keeps`), and fresh names."""
    reading = False          # the statements run; `show`'s printer reads them

    def __init__(self, fast: bool, keeps: bool = False):
        self.fast, self.keeps, self.functions, self.params_count = fast, keeps, [], [0]
        self.equation = None             # the equation being written
        self.globals = {"np": np, "sp": sp, "Slice": Slice, "ArrayIndex": ArrayIndex}
        self.taken = {_global_name(p) for p in REGISTRY.values()}
        self.local_names = None          # the Namer of the function being written
        self.pooled = set()              # outputs of this equation in kept buffers (names)

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
        outer = self.local_names, self.equation
        text, _ = generate(program, name, self.fast, self)
        self.local_names, self.equation = outer
        self.functions.append(text)
        return name

    def run(self, program: Program, args: list, targets: list) -> list:
        """Statements running `program` on the expressions `args`, assigning its outputs to
        the names `targets`: a call of it, written as a function of the module."""
        call = f"{self.function(program, program.name or 'body')}({', '.join(args)})"
        return [f"{', '.join(targets)}{',' if len(targets) == 1 else ''} = {call}"
                if targets else call]

    def value(self, obj, hint: str) -> str:
        """A global name for a Python object the statements use."""
        name = self._unique(hint)
        self.globals[name] = obj
        return name

    def fresh(self, hint: str) -> str:
        """A new local name in the function being written."""
        return self.local_names.named(object(), hint)


def generate(program: Program, name: str = "f", fast: bool = True, code: Code = None,
             keeps: bool = False):
    """(source, globals) of a function `name(*inputs) -> list of outputs`; with `code` (an
    enclosing module), the source of this function alone, in that module. `keeps`: the
    fast variant keeps its large intermediates' buffers from call to call (`_scratch_plan`;
    for a function called many times, such as jit's: one a loop runs once per call of
    the user's function would hold its buffers for nothing)."""
    with gc_paused():
        return _generate(program, name, fast, code, keeps)


def _generate(program, name, fast, code, keeps):
    program = _with_matrix_vector_products(program)
    top = code is None
    code = code or Code(fast, keeps)
    code.taken.add(name)
    names = code.local_names = Namer(program, reserved={name} | code.reserved())
    globals_ = code.globals
    for var, value in zip(program.constvars, program.consts):
        const_name = names(var) if var.hint else names.named(var, "const")
        code.taken.add(const_name)
        globals_[const_name] = value
    params_count = code.params_count
    constants = set(program.constvars)

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

    reusable, in_place = _buffer_plan(program) if fast else ({}, {})
    released = _released(program)
    taken, returned = _scratch_plan(program, reusable, in_place, released) \
        if fast and code.keeps else ({}, {})
    pool_of = {}         # a buffer's variables -> its pool: one per shape and dtype
    if taken:
        kinds = {(v.aval.shape, v.aval.dtype): None for vs in taken.values() for v in vs}
        pools = code.value([[] for _ in kinds], "scratch")
        kinds = {kind: f"{pools}[{k}]" for k, kind in enumerate(kinds)}
        for v, holder in returned.items():
            pool_of[v] = pool_of[holder] = kinds[v.aval.shape, v.aval.dtype]
    holders = set(returned.values())
    comments = {}
    lines = [f"def {name}({', '.join(names(v) for v in program.invars)}):"]
    comment = None
    for i, eq in enumerate(program.equations):
        here = comments.get(eq.source)
        if here is None:
            here = comments[eq.source] = _comment(eq.source)
        if here and here != comment:
            lines.append(f"    # {here}")
            comment = here
        args = [operand(x) for x in eq.inputs]
        prim = eq.primitive
        code.pooled = {names(v) for v in taken.get(i, ())}
        for v in taken.get(i, ()):       # a scratch buffer kept from an earlier call, or new
            target = names(v)
            lines += ["    try:", f"        {target} = {pool_of[v]}.pop()",
                      "    except IndexError:",
                      f"        {target} = np.empty({tuple(v.aval.shape)}, "
                      f"np.{np.dtype(v.aval.dtype).name})"]
        if i in taken and prim.emit_statements is None:   # its output written into it
            target = names(eq.outputs[0])
            lines.append(f"    {target} = {prim.emit(args, out=target, **eq.params)}")
        elif i in in_place:       # scatter_add into its dead operand's buffer, or a copy
            target, index = names(eq.outputs[0]), _index_source(eq.params["index"])
            lines.append(f"    {target} = {args[0]}" + (".copy()" if in_place[i] else ""))
            lines.append(f"    {target}[{index}] += {args[1]}")
        elif prim.emit_statements is not None and (statements := _statements(eq, args, code)):
            lines += ["    " + line for line in statements]
        else:
            if i in reusable:       # an elementwise ufunc writing into a dead input's buffer
                expr = prim.emit(args, out=names(reusable[i]))
            elif uses_python_operator(eq):
                # Python's operator: NumPy's ufunc where an operand is an array, Python's
                # arithmetic (weakly typed) on Python scalars, as staged.
                expr = prim.python_operator.format(*args)
            elif prim.emit is not None and (fast or eq.inputs[0] not in constants or all(
                    type(x) is Literal or x in constants for x in eq.inputs)):
                expr = prim.emit(args, **eq.params)
            else:
                globals_[_global_name(prim)] = prim
                keywords = [f"{k}={param_expr(v)}" for k, v in eq.params.items()]
                expr = f"{_global_name(prim)}({', '.join(args + keywords)})"
            targets = ", ".join(names(v) for v in eq.outputs)
            if prim.multiple_results and len(eq.outputs) == 1:
                targets += ","
            lines.append(f"    {targets} = {expr}")
        if i in released:
            lines += [f"    {pool_of[v]}.append({names(v)})" for v in released[i]
                      if v in holders]
            lines.append(f"    del {', '.join(names(v) for v in released[i])}")
    copied = _copied_outputs(program, reusable, in_place)
    outs = ", ".join(f"np.copy({operand(x)})" if i in copied else operand(x)
                     for i, x in enumerate(program.outvars))
    lines.append(f"    return [{outs}]")
    text = "\n".join(lines) + "\n"
    return ("\n".join(code.functions + [text]) if top else text), globals_


def matrix_vector_products(program: Program):
    """(skipped equations, {matmul equation: (operands, output)}): `A @ v` for a 1-d v
    where the program reshapes v to a column (or row), multiplies, and reshapes the result
    back (the matmul primitive takes matrices only), as a person writes it, and as NumPy
    computes it without the two reshapes around each product (what a 1-d `@` costs)."""
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


def _with_matrix_vector_products(program: Program) -> Program:
    """`program` with each matmul of a vector made a matrix, and made a vector again, one
    equation `A @ v` on the vector (NumPy's own 1-d matmul, the same product): written
    with the rest, so that buffer reuse and releases see what the code computes."""
    skipped, folded = matrix_vector_products(program)
    if not folded:
        return program
    equations = []
    for i, eq in enumerate(program.equations):
        if i in folded:
            inputs, out = folded[i]
            equations.append(replace(eq, inputs=inputs, outputs=[out]))
        elif i not in skipped:
            equations.append(eq)
    return replace(program, equations=equations)


def _statements(eq, args, code):
    """The equation's `emit_statements` lines for generated code (None: it has none)."""
    code.equation = eq
    return eq.primitive.emit_statements([code.local_names(v) for v in eq.outputs], args, code,
                                        **eq.params)


def compile_program(program: Program, name: str = "f", fast: bool = True, keeps: bool = False):
    """The generated function itself (and its source, as `.source`); `keeps`: see `generate`."""
    with gc_paused():
        text, globals_ = generate(program, name, fast, keeps=keeps)
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


def _released(program: Program) -> dict:
    """Equation index -> the values to release after it: those it reads last, and its
    outputs nobody reads. Inputs (the caller's), constants (globals) and the program's
    outputs are never released. (0-d values too are released: a long loop of scalar
    updates would otherwise hold one per step.)"""
    last_use = {}
    for i, eq in enumerate(program.equations):
        for x in eq.inputs:
            if type(x) is not Literal:
                last_use[x] = i
    kept = set(program.invars) | set(program.constvars)
    kept.update(x for x in program.outvars if type(x) is not Literal)
    released = {}
    for i, eq in enumerate(program.equations):
        dead = [v for v in eq.outputs if v not in last_use and v not in kept]
        dead += [x for x in dict.fromkeys(eq.inputs) if type(x) is not Literal
                 and last_use[x] == i and x not in kept]
        if dead:
            released[i] = dead
    return released


def buffer_facts(program: Program):
    """(last use, viewed, fresh) of a program's variables: the index of the last equation
    reading each (the outputs: one past the end), those read by a primitive that may
    return a view of them, and the non-0-d outputs of `fresh_output` primitives (buffers
    of their own)."""
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


def _buffer_plan(program: Program):
    """(reusable, in_place): where the fast variant writes into a dead intermediate's buffer.

    `reusable`: equation index -> the input variable whose buffer an elementwise ufunc
    writes its output into (`out=`); `in_place`: equation index -> whether a `scatter_add`
    with a basic index adds into a copy of its operand (`y = x.copy(); y[index] +=
    updates`, as its impl does, without the call) or into the operand's own buffer
    (`y = x; ...`).

    The buffer written into is a fresh intermediate array: the non-0-d output of a
    `fresh_output` primitive (its buffer is its own), read by no primitive that may
    return a view of it (those without `fresh_output`), read by no equation after this
    one, and of the output's shape and dtype. A ufunc takes the first such input; a
    scatter needs a basic index (no index arrays: `+=` then adds each position once)
    and updates that are another variable (or a literal).
    """
    last_use, viewed, fresh = buffer_facts(program)

    def free(x, i, aval):
        return (type(x) is not Literal and x in fresh and x not in viewed and last_use[x] == i
                and x.aval == aval)

    reusable, in_place, ufunc = {}, {}, {}
    for i, eq in enumerate(program.equations):
        prim, out = eq.primitive, eq.outputs[0]
        if prim is scatter_add:
            x = eq.inputs[0]
            if len(eq.inputs) == 2 and type(x) is not Literal and x.aval == out.aval \
                    and out.aval.shape:
                in_place[i] = eq.inputs[1] is x or not free(x, i, out.aval)
            continue
        if prim not in ufunc:
            ufunc[prim] = writes_into_buffers(prim)
        if ufunc[prim] and out.aval.shape:
            x = next((x for x in eq.inputs if free(x, i, out.aval)), None)
            if x is not None:
                reusable[i] = x
    return reusable, in_place


SCRATCH_BYTES = (65536, 1 << 24)     # the sizes of intermediates kept for the next call


def _scratch_plan(program: Program, reusable: dict, in_place: dict, released: dict):
    """(taken, returned): the large intermediates the fast variant writes into buffers kept
    from one call to the next, and which variable gives each back to its pool (moved in
    `released` to where the last value that may hold or view the buffer is released).

    Freeing a large temporary at the end of each call and allocating it again at the next
    costs page faults: glibc hands memory at the top of its heap back to the system
    once more than a threshold (about twice the largest block freed) is free there, and
    every page of the next allocation is then a fault, the page zeroed. The MLP's HVP
    (256 x 256 intermediates) took about 530 faults per call, a third of its time.

    `taken`: equation index -> its outputs written into a pooled buffer: an output of
    SCRATCH_BYTES (at least the first, at most the second), of an equation whose emitter
    writes into a given buffer (`out=`: NumPy ufuncs, matmul; a fused kernel's outputs it
    takes as arguments, `given_outputs`) of the output's dtype, which every array operand
    has. `returned`: such an output -> the variable holding its buffer last (itself, or
    the output of a ufunc or in-place scatter written into it), which gives it back once
    it and every view of it (outputs of primitives without `fresh_output`) are released;
    never where one of them is an output of the program. A function has one pool per shape
    and dtype, so that a later equation of the same call takes a buffer given back (the
    last one, still in cache), as malloc would have reused its memory: the fewer distinct
    256 x 256 arrays the MLP touches, the more of them L2 holds. A pool is a list;
    taking (`pop`) and giving back (`append`) are atomic, so calls in several threads each
    take their own buffers."""
    low, high = SCRATCH_BYTES
    released_at = {v: i for i, values in released.items() for v in values}
    outputs = {x for x in program.outvars if type(x) is not Literal}
    roots, holder, last, escapes, taken = {}, {}, {}, set(), {}
    for i, eq in enumerate(program.equations):
        donor = reusable.get(i, eq.inputs[0] if in_place.get(i) is False else None)
        if donor is not None:                  # the output is written into donor's buffer
            reached = roots.get(donor, ())
            holder.update((r, eq.outputs[0]) for r in reached)
            found = {eq.outputs[0]: reached}
        elif not eq.primitive.fresh_output:    # its outputs may view its inputs
            reached = set().union(*(roots.get(x, ()) for x in eq.inputs
                                    if type(x) is not Literal))
            found = dict.fromkeys(eq.outputs, reached)
        else:
            found = {}
            for k in _given_outputs(eq):
                v = eq.outputs[k]
                if not v.weak and low <= nbytes(v) <= high \
                        and np.dtype(v.aval.dtype).kind in "biufc":
                    taken.setdefault(i, []).append(v)
                    holder[v], found[v] = v, {v}
        for v, reached in found.items():
            if reached:
                roots[v] = reached
                for r in reached:
                    if v in outputs:
                        escapes.add(r)
                    else:
                        last[r] = max(last.get(r, -1), released_at[v])
    taken = {i: [v for v in vs if v not in escapes] for i, vs in taken.items()}
    taken = {i: vs for i, vs in taken.items() if vs}
    returned = {v: holder[v] for vs in taken.values() for v in vs}
    for v, h in returned.items():              # the holder outlives the views of its buffer
        at = released_at[h]
        released[at].remove(h)
        if not released[at]:
            del released[at]
        released.setdefault(last[v], []).append(h)
    return taken, returned


def nbytes(v) -> int:
    """The bytes of a variable's array."""
    return math.prod(v.aval.shape) * np.dtype(v.aval.dtype).itemsize


def _given_outputs(eq) -> tuple:
    """Positions of the outputs an equation can write into buffers it is given: a fused
    kernel's `given_outputs`, or the output of an `emit` rule taking `out` (NumPy ufuncs,
    matmul) where every array operand has the output's dtype (NumPy then computes that
    dtype, which the buffer has)."""
    prim = eq.primitive
    given = getattr(prim, "given_outputs", None)
    if given is not None:
        return given
    if prim.emit_statements is not None or not _emits_into_buffers(prim):
        return ()
    dtype = eq.outputs[0].aval.dtype
    arrays = [x for x in eq.inputs if type(x) is not Literal]
    same = arrays and all(x.aval.dtype == dtype for x in arrays)
    return (0,) if same and len(eq.outputs) == 1 and eq.outputs[0].aval.shape else ()


_takes_out = {}          # primitive -> whether its emit rule takes `out`


def _emits_into_buffers(prim) -> bool:
    if prim not in _takes_out:
        _takes_out[prim] = prim.fresh_output and prim.emit is not None and \
            "out" in inspect.signature(prim.emit).parameters
    return _takes_out[prim]


def _copied_outputs(program: Program, reusable: dict, in_place: dict) -> set:
    """Positions of the outputs to copy, so that the caller owns independent arrays, as in
    eager mode: those whose buffer may be an input's, a constant array's or an earlier
    output's (a constant that is not an array, such as an aux's string, is returned as
    it is: np.copy made it a 0-d array).

    Variables that may share a buffer are grouped (union-find, near-linear time): the
    outputs of an equation without `fresh_output` with each other and with its inputs;
    an output written into an input's buffer (`out=`, in-place scatter) with that input.
    An output is copied when its group holds an input, a constant or an earlier output.
    (Grouping is transitive, so the outputs of a primitive without `fresh_output` reading
    several variables join their groups: an output may be copied that need not be.)
    """
    parent = {}

    def find(v):
        root = v
        while root in parent:
            root = parent[root]
        while v is not root:
            parent[v], v = root, parent[v]
        return root

    def join(a, b):
        a, b = find(a), find(b)
        if a is not b:
            parent[a] = b

    for i, eq in enumerate(program.equations):
        if i in reusable or i in in_place and not in_place[i]:
            join(eq.outputs[0], reusable[i] if i in reusable else eq.inputs[0])
        elif not eq.primitive.fresh_output:
            for v in eq.outputs[1:] + [x for x in eq.inputs if type(x) is not Literal]:
                join(v, eq.outputs[0])
    taken = {find(v) for v in program.invars + program.constvars}
    immutable = {v for v, c in zip(program.constvars, program.consts)
                 if not isinstance(c, np.ndarray) and not is_array(c)}
    copied = set()
    for position, x in enumerate(program.outvars):
        if type(x) is Literal or x in immutable:   # (a string, a NumPy scalar: returned as is)
            continue
        root = find(x)
        if root in taken:
            copied.add(position)
        else:
            taken.add(root)
    return copied


def _index_source(index) -> str:
    """A basic index template as Python source, e.g. `1:, 0`."""
    return ", ".join(index_entry_source(e, ()) for e in index) or "()"


def writes_into_buffers(primitive) -> bool:
    """Whether an elementwise primitive is computed by a NumPy ufunc, whose emitter then
    writes into a given buffer (`out=`)."""
    return primitive.family == "elementwise" and primitive.fresh_output and any(
        isinstance(f, np.ufunc) and getattr(np, f.__name__, None) is f
        for f in primitive.numpy_functions)
