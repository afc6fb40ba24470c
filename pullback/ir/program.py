"""The IR: a flat, typed list of equations `outs = primitive(inputs; params)`.

Inputs of an equation are `Var`s (typed by a `ShapeDtype`) or `Literal`s (Python
scalars, weakly typed as in NumPy). Array constants are held separately
(`constvars` with their `consts`). A `Program` also keeps the pytree structures
of its arguments and results, and the names of its inputs, so that it can be
called like the function it came from, printed, and turned into source code.

`evaluate` is the reference interpreter: it binds each primitive in turn, so it
runs on arrays and on tracers alike; `interpret` runs a program on NumPy values alone,
calling the primitives' impls and releasing each value after its last use. `typecheck` re-derives every equation's
output types with the primitives' shape rules.

Equations are never modified once built: passes share them between programs.
`gc_paused` is for the phases that build programs of many small objects (staging,
passes, code generation), which Python's cyclic collector would otherwise scan again
and again as they grow.

An equation's parameters may hold sub-programs (a loop's body, a branch of a
conditional: `subprograms` finds them); typecheck and the printer recurse into them.
"""
import gc
import keyword
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.engine import observer
from ..core.primitive import ShapeDtype


class Var:
    """A value of the program, typed; `hint` is a readable name suggestion; `weak`: a
    Python scalar (weakly typed in NumPy's promotion); `origin`: (var, suffix) when it is
    the cotangent (`"_bar"`) or tangent (`"_dot"`) of another value, for naming."""
    __slots__ = ("aval", "hint", "weak", "origin")

    def __init__(self, aval: ShapeDtype, hint: str = "", weak: bool = False):
        self.aval, self.hint, self.weak, self.origin = aval, hint, weak, None

    def __repr__(self):
        return f"Var({self.hint or id(self)}: {type_string(self.aval)})"


class Literal:
    """A Python scalar written into the program."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return repr(self.value)


@dataclass(slots=True)
class Equation:
    primitive: Any
    inputs: list
    params: dict
    outputs: list
    source: str = ""          # "file:line" of the user's code that bound it, if known


@dataclass
class Program:
    invars: list
    constvars: list
    consts: list
    equations: list
    outvars: list
    in_tree: Any = None
    out_tree: Any = None
    names: dict = field(default_factory=dict)      # Var -> preferred name (inputs, outputs)
    name: str = ""          # the user's function it was staged from, if any (a loop body)

    def __str__(self):
        return pretty(self)


@contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector while the block runs (no-op if it is off).

    Building a program allocates many small containers; each automatic collection then
    scans all the objects built so far, which makes long programs cost more than linear
    time. Nothing here creates cycles that must be collected meanwhile.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

def subprograms(params: dict) -> list:
    """The programs held in an equation's parameters: (key, program), in order; a tuple of
    programs (the branches of a switch) gives each with its key."""
    found = []
    for key, value in params.items():
        if isinstance(value, Program):
            found.append((key, value))
        elif type(value) is tuple and value and all(isinstance(v, Program) for v in value):
            found += [(key, v) for v in value]
    return found


def type_string(aval) -> str:
    return f"{np.dtype(aval.dtype).name}[{','.join(map(str, aval.shape))}]"


def evaluate(program: Program, *args):
    """Run the program on flat arguments (arrays or tracers); returns the flat outputs."""
    env = {}
    for var, value in zip(program.invars, args):
        env[var] = value
    for var, value in zip(program.constvars, program.consts):
        env[var] = value

    def read(x):
        return x.value if type(x) is Literal else env[x]

    watcher = observer()        # staging: the equations recorded keep each one's source
    replayed = getattr(watcher, "replaying", None)
    try:
        for eq in program.equations:
            if replayed is not None:
                watcher.replaying = eq.source
            outs = eq.primitive(*[read(x) for x in eq.inputs], **eq.params)
            if not eq.primitive.multiple_results:
                outs = (outs,)
            for var, value in zip(eq.outputs, outs):
                env[var] = value.item() if var.weak and isinstance(value, np.generic) else value
    finally:
        if replayed is not None:
            watcher.replaying = replayed
    return [read(x) for x in program.outvars]


def interpret(program: Program, *args) -> list:
    """Run the program on NumPy values (no tracers), each primitive's impl in turn, releasing
    every value after its last use; returns the flat outputs, each an array of its own (an
    output that may be an argument's, a constant's or an earlier output's buffer is copied),
    as generated code returns them. jit's first call of a long program: no compile cost.

    >>> import numpy as np
    >>> from pullback.ir.staging import stage
    >>> interpret(stage(np.sin, (np.zeros(2),)), np.zeros(2))
    [array([0., 0.])]
    """
    env = dict(zip(program.invars, args))
    env.update(zip(program.constvars, program.consts))
    equations = program.equations
    last_use = {}
    for i, eq in enumerate(equations):
        for x in eq.inputs:
            last_use[x] = i
    for x in program.outvars:
        last_use[x] = len(equations)
    for i, eq in enumerate(equations):
        prim = eq.primitive
        # Python's arithmetic on Python scalars (a weakly typed output), as staged
        run = python_operator(prim) if prim.python_operator and eq.outputs[0].weak else prim.impl
        outs = run(*[x.value if type(x) is Literal else env[x] for x in eq.inputs], **eq.params)
        for var, value in zip(eq.outputs, outs if prim.multiple_results else (outs,)):
            if var in last_use:
                env[var] = value.item() if var.weak and isinstance(value, np.generic) else value
        for x in eq.inputs:
            if last_use[x] == i and type(x) is not Literal:
                env.pop(x, None)
    owned = {id(a) for a in args} | {id(c) for c in program.consts}
    outs = []
    for x in program.outvars:
        value = x.value if type(x) is Literal else env[x]
        if isinstance(value, np.ndarray) and (value.base is not None or id(value) in owned):
            value = value.copy()
        owned.add(id(value))
        outs.append(value)
    return outs


_OPERATORS = {}


def uses_python_operator(eq) -> bool:
    """Whether generated code writes `eq` with its primitive's Python operator: where its
    output is a Python scalar (Python's arithmetic, as staged), or an operand is an array
    or NumPy scalar (NumPy's ufunc answers) and no literal is a Python complex (whose
    operators answer a NumPy float64 scalar themselves: (1+2j) / np.float64(0) raises where
    np.divide gives inf)."""
    if not eq.primitive.python_operator:
        return False
    return eq.outputs[0].weak or (
        any(type(x) is not Literal and not x.weak for x in eq.inputs)
        and not any(type(x) is Literal and type(x.value) is complex for x in eq.inputs))


def python_operator(primitive):
    """The primitive's `python_operator` (e.g. `"{} + {}"`) as a function, e.g. `lambda a,
    b: a + b`: Python's arithmetic, which keeps Python ints exact where NumPy overflows."""
    if primitive not in _OPERATORS:
        names = [f"x{k}" for k in range(primitive.python_operator.count("{}"))]
        source = f"lambda {', '.join(names)}: {primitive.python_operator.format(*names)}"
        _OPERATORS[primitive] = eval(source)                # noqa: S307  (our own templates)
    return _OPERATORS[primitive]


class TypeCheckError(AssertionError):
    """A program whose recorded types disagree with its primitives' shape rules."""


def typecheck(program: Program) -> None:
    """Raise TypeCheckError unless every equation's inputs are defined and its output
    types are what the primitive's shape rule derives."""
    defined = set(program.invars) | set(program.constvars)
    for var, value in zip(program.constvars, program.consts):
        if tuple(np.shape(value)) != tuple(var.aval.shape) or np.asarray(value).dtype != var.aval.dtype:
            raise TypeCheckError(f"constant {var} does not match its value")
    for i, eq in enumerate(program.equations):
        for x in eq.inputs:
            if type(x) is not Literal and x not in defined:
                raise TypeCheckError(f"equation {i} ({eq.primitive.name}) reads an undefined {x}")
        for _, sub in subprograms(eq.params):
            typecheck(sub)
        avals = [abstract(x) for x in eq.inputs]
        expected = eq.primitive.shape(*avals, **eq.params)
        expected = expected if eq.primitive.multiple_results else [expected]
        for var, exp in zip(eq.outputs, expected):
            if not hasattr(exp, "shape"):           # a Python scalar: a weakly typed output
                exp = ShapeDtype((), np.asarray(exp).dtype)
            if tuple(var.aval.shape) != tuple(exp.shape) or np.dtype(var.aval.dtype) != np.dtype(exp.dtype):
                raise TypeCheckError(f"equation {i} ({eq.primitive.name}): output typed "
                                     f"{type_string(var.aval)}, the shape rule gives "
                                     f"{type_string(exp)}")
            defined.add(var)
    for x in program.outvars:
        if type(x) is not Literal and x not in defined:
            raise TypeCheckError(f"output {x} is never defined")


def abstract(x):
    """What a shape rule sees for an operand: a literal's value, a variable's type, or a
    Python scalar standing for a weakly typed variable."""
    if type(x) is Literal:
        return x.value
    if x.weak:
        return np.dtype(x.aval.dtype).type(1).item()
    return x.aval


def pretty(program: Program, indent: str = "") -> str:
    """The program as readable typed text, one let-binding per line; sub-programs in an
    equation's parameters are printed below it, indented."""
    names = Namer(program)
    lines = [f"{{ lambda {', '.join(f'{names(v)}:{type_string(v.aval)}' for v in program.invars)}"
             + (f" ; consts {', '.join(f'{names(v)}:{type_string(v.aval)}' for v in program.constvars)}"
                if program.constvars else "") + " ."]
    for eq in program.equations:
        outs = ", ".join(f"{names(v)}:{type_string(v.aval)}" for v in eq.outputs)
        subs = subprograms(eq.params)
        params = ", ".join(f"{k}={_short(v)}" for k, v in eq.params.items()
                           if k not in dict(subs))
        args = " ".join(names(x) if type(x) is not Literal else repr(x.value) for x in eq.inputs)
        lines.append(f"    {outs} = {eq.primitive.name}{'[' + params + ']' if params else ''} {args}")
        for key, sub in subs:
            label = f"{key} ({sub.name})" if sub.name else key
            lines.append(f"      {label} = " + pretty(sub, indent + "      "))
    lines.append(f"  in ({', '.join(names(x) if type(x) is not Literal else repr(x.value) for x in program.outvars)}) }}")
    return f"\n{indent}".join(lines)


def _short(value):
    text = getattr(value, "__name__", None) or repr(value)
    return text if len(text) < 60 else text[:57] + "..."


RESERVED = set(keyword.kwlist) | {"np", "sp", "scipy", "math", "abs"}   # abs: an operator template


class Namer:
    """Readable, unique names for a program's variables: preferred names first, then a, b, c...
    (`x`, then `x_1`, `x_2` ... for a name asked for again: each base remembers its next
    suffix, so naming stays linear in the number of variables)."""

    def __init__(self, program: Program, reserved=()):
        self.names, self.used, self.counter = {}, RESERVED | set(reserved), 0
        self.suffix = {}            # base -> the next suffix to try
        for var, name in program.names.items():
            self._assign(var, name)

    def named(self, var, base: str) -> str:
        """Give `var` a name built from `base` (made unique) and return it."""
        return self._assign(var, base)

    def _assign(self, var, base):
        name, k = base, self.suffix.get(base, 1)
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.suffix[base] = k
        self.names[var] = name
        self.used.add(name)
        return name

    def __call__(self, var) -> str:
        if var in self.names:
            return self.names[var]
        if var.hint:
            return self._assign(var, var.hint)
        while True:
            name = _letters(self.counter)
            self.counter += 1
            if name not in self.used:
                return self._assign(var, name)


def _letters(i):
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s
