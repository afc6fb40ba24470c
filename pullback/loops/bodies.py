"""Loop bodies as programs: the user's functions staged once per signature, and the programs
the loop primitives derive from them, each cached on the program it comes from.

- `stage_function`: a user function (pytrees in and out) as a closed `Program` whose
  first inputs are the values it reads from outside (arrays, values traced by another
  transformation): the loop primitive takes them as arguments, so every transformation
  sees them. Staged once per signature: the cache key holds the function's code and what
  its closure, defaults and globals hold (Python values by value, objects by their
  attributes and slots, the user's modules and classes by the attributes the code names,
  arrays and traced values by identity, held weakly, and NumPy arrays by their bytes too:
  Python code may have read their values while staging, as in `W[0, 0]`, so another
  array, or the same one written into since, stages again; a few references deep); a
  function reading arrays it cannot find there (created inside, or deeper), or more than
  `_COMPARED_BYTES` of them, is staged again at each call. A branch reads the arrays and traced values of its closure cells and
  defaults as inputs from its start (`lifted`), so that what it computes from them alone
  stays in the branch. Staging refuses random draws and changes to outside state (a list
  appended to, a nonlocal rebound): a body runs once while staged, not at each step.
- `stage_flat`: a function of flat arrays (the rules' own) as a program.
- derived programs: `jvp_program`, `batch_program`, `vjp_programs` (the forward half
  with residuals and the backward half of reverse mode, split from one joint program so
  that every checkpointing policy runs exactly the same operations), `recompute_program`
  (both halves: a step's derivative from its inputs), `carries_only` (a body without its
  ys, for advances), `hoisted` (the equations that
  depend only on loop-invariant inputs, run once before the loop), `live_carries` (a body
  without the carries dead-code elimination finds dead).
- `runner`: a program's generated NumPy code, compiled once, for running loops eagerly.
"""
import array
import collections
import dis
import functools
import hashlib
import os
import sys
import sysconfig
import types
import weakref
from dataclasses import replace

import numpy as np

from ..core.arrays import foreign_array, moveaxis, zeros_like_value
from ..core.engine import Tracer, new_trace
from ..core.primitive import ZERO, ShapeDtype
from ..core.user_code import filled_cell
from ..errors import LoopTypeError, OutsideStateError
from ..ir.codegen import compile_program
from ..ir.passes import eliminate_dead_code, optimize
from ..ir.program import Program, Var, evaluate
from ..ir.randomness import staged_without_randomness
from ..ir.staging import (StagingTrace, StagingTracer, argument_names, example_value, observing,
                          signature_of)
from ..transforms.batching import batch_flat
from ..transforms.forward import jvp_flat
from ..transforms.reverse import vjp_flat
from ..tree import flatten, unflatten

LOOP_RANDOMNESS = (
    "while pullback staged the body of a loop, a branch or a checkpointed function",
    "the body is staged once and its program runs at every step, so every step would use "
    "the numbers drawn now. Pass the draws in (all of them at once, as the xs of scan), or "
    "pass the generator state in and out through the carry (a key to derive draws from).")


def _derived(program: Program) -> dict:
    """The cache of what was derived from `program` (kept on it: it dies with it)."""
    cache = program.__dict__.get("_derived")
    if cache is None:
        cache = program.__dict__["_derived"] = {}
    return cache


def aval_of(x) -> ShapeDtype:
    """The type of a value, a tracer, a Var or an abstract value (strong: Python scalars
    become 0-d arrays of their NumPy type)."""
    x = x.aval if isinstance(x, Var) else x
    if isinstance(x, ShapeDtype):
        return ShapeDtype(tuple(x.shape), np.dtype(x.dtype))
    shape, dtype, _ = signature_of(x)
    return ShapeDtype(shape, dtype)


def is_float(aval) -> bool:
    return np.dtype(aval.dtype).kind == "f"


# ------------------------------------------------------------------ flat staging

def stage_flat(fn, avals, name: str = "", hints=None) -> Program:
    """The program of `fn`, a function of flat arrays returning a list, at `avals` (each a
    ShapeDtype, or a Var whose type and weakness it takes)."""
    with observing(), new_trace(StagingTrace) as trace:
        inputs = [trace.new_input(aval_of(a), (hints or {}).get(i, ""),
                                  getattr(a, "weak", False)) for i, a in enumerate(avals)]
        outvars = [trace.read(o) for o in fn(*inputs)]
    return Program([t.staged_var for t in inputs], trace.constvars, trace.consts,
                   trace.equations, outvars, name=name)


def with_interface(program: Program, invars, outvars, name=None) -> Program:
    """`program` with other inputs (a permutation, unused ones added) and outputs (any of
    its values, inputs included): no staging again."""
    return replace(program, invars=list(invars), outvars=list(outvars), names={},
                   name=program.name if name is None else name)


def prepared(program: Program) -> Program:
    """The optimised program (once)."""
    return program if getattr(program, "optimized", False) else optimize(program)


def runner(program: Program):
    """The program's fast generated code (compiled once per program)."""
    cache = _derived(program)
    if "runner" not in cache:
        cache["runner"] = compile_program(program, program.name or "body", fast=True)
    return cache["runner"]


# ------------------------------------------------------------------ user functions

class _ClosureTrace(StagingTrace):
    """Staging where every array (another library's too: `api` refuses those) or foreign
    traced value the function reads becomes an input of its own ("captured"), instead of a
    constant or an error."""
    __slots__ = ("captured", "_captured_vars")

    def __init__(self, level):
        super().__init__(level)
        self.captured, self._captured_vars = [], {}

    def read(self, value):
        if isinstance(value, np.ndarray) or foreign_array(value) is not None or (
                isinstance(value, Tracer) and not (
                type(value) is StagingTracer and value._trace is self)):
            var = self._captured_vars.get(id(value))
            if var is None:
                shape, dtype, weak = signature_of(value)
                var = self._captured_vars[id(value)] = Var(ShapeDtype(shape, dtype))
                self.captured.append((value, var))
                concrete = example_value(value)
                if concrete is not None:
                    self.examples[var] = concrete
            return var
        return super().read(value)

    def lifted(self, value):
        """A tracer of this trace standing for a captured value."""
        var = self.read(value)
        return StagingTracer(self, var.aval, var)


class Staged:
    """A user function as a program: `program(*captured, *leaves of the arguments)`
    returns the leaves of `out_tree`."""
    __slots__ = ("program", "captured", "out_tree")

    def __init__(self, program, captured, out_tree):
        self.program, self.captured, self.out_tree = program, captured, out_tree


_CACHE_SIZE = 512
# (state key, input signature) -> (program, captured slots, out_tree, kept objects, weak
# references to the arrays read: the cache never keeps a user's array alive, `array_contents`)
_cache = {}
# A cached program is reused only while the NumPy arrays it read hold the same bytes (Python
# code may have read their values while staging: `W[0, 0]` became a constant of the
# program). Its entry keeps a copy of them up to _COPIED_BYTES in all, else digests; beyond
# _COMPARED_BYTES of arrays, comparing would cost more than staging again at each call.
_COPIED_BYTES, _COMPARED_BYTES = 2**16, 2**24


def array_contents(arrays):
    """What the NumPy arrays among `arrays` hold (None for a traced value, which never
    changes), or None beyond `_COMPARED_BYTES`."""
    if sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)) > _COMPARED_BYTES:
        return None
    contents, copied = [], 0
    for a in arrays:
        if not isinstance(a, np.ndarray):
            contents.append(None)
            continue
        copy = copied + a.nbytes <= _COPIED_BYTES or a.dtype.hasobject
        copied += a.nbytes if copy else 0
        contents.append(_fingerprint(a, copy))
    return tuple(contents)


def _fingerprint(a, copy):
    """a's layout and bytes (with `copy`, else a digest of them, read in place)."""
    if copy:
        return a.shape, a.strides, a.dtype.str, a.tobytes()
    memory = a if a.flags.c_contiguous else a.T if a.flags.f_contiguous else a.copy()
    return a.shape, a.strides, a.dtype.str, hashlib.sha256(memory.data).digest()


def stage_function(fn, leaves: list, in_tree, call=None, kind=()) -> Staged:
    """`fn(*args)` as a program, staged once per signature (see the module docstring).

    `leaves` and `in_tree` flatten the tuple of arguments; a leaf is a value or a
    ShapeDtype (for a value, its type is used, strongly: a Python float becomes a float64
    input). `call`, if given, is what is staged: an adapter of fn (a scan body returning
    arrays) described by the hashable `kind`; the state is still fn's.
    """
    avals = [aval_of(x) for x in leaves]
    state = function_state(fn)
    contents = None if state is None else array_contents(state[1])
    key = None if contents is None else (state[0], kind, in_tree, tuple(avals))
    entry = _cache.get(key) if key is not None else None
    if entry is not None and all(ref() is a for ref, a in zip(entry[4], state[1])) \
            and entry[5] == contents:
        program, slots, out_tree = entry[:3]
        return Staged(program, [state[1][i] for i in slots], out_tree)
    name = getattr(call or fn, "__name__", "body")
    name = name if name.isidentifier() else "body"
    staged = staged_without_randomness(
        lambda: _stage_function(call or fn, leaves, in_tree, avals, kind, name), fn,
        tuple(leaves),
        LOOP_RANDOMNESS)
    after = function_state(fn)
    if state is not None and (after is None or after[0] != state[0]):
        raise OutsideStateError(
            f"`{name}` changed state outside itself while pullback staged it (it appended to "
            "or changed a list, dict or attribute it reads, or rebound a nonlocal or global "
            "variable). A loop body, a branch or a checkpointed function is staged once and "
            "its program runs at every step, so such changes would happen once, not at each "
            "step. Return what you want to keep (the ys of scan, or part of the carry), and "
            "pass state in and out through the arguments and results.")
    if key is not None:
        arrays = state[1]
        slots = [next((i for i, a in enumerate(arrays) if a is value), None)
                 for value in staged.captured]
        try:
            refs = [weakref.ref(a) for a in arrays]
        except TypeError:                   # a value without weak references: not cached
            refs = None
        if None not in slots and refs is not None:
            if len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[key] = (staged.program, slots, staged.out_tree, state[2], refs, contents)
    return staged


def _stage_function(fn, leaves, in_tree, avals, kind, name):
    try:
        hints = argument_names(fn, unflatten(in_tree, leaves))
    except Exception:              # noqa: BLE001 -- names are only a nicety
        hints = {}
    with new_trace(_ClosureTrace) as trace:
        inputs = []
        for i, (leaf, aval) in enumerate(zip(leaves, avals)):
            example = None if isinstance(leaf, ShapeDtype) else example_value(leaf)
            inputs.append(trace.new_input(aval, hints.get(i, ""), False, example))
        out = (lifted(fn, trace) if kind == "branch" else fn)(*unflatten(in_tree, inputs))
        out_leaves, out_tree = flatten(out)
        outvars = [_output_operand(trace, o, name, i) for i, o in enumerate(out_leaves)]
    captured_vars = [v for _, v in trace.captured]
    names = {v: v.hint for v in [t.staged_var for t in inputs] if v.hint}
    program = Program(captured_vars + [t.staged_var for t in inputs], trace.constvars,
                      trace.consts, trace.equations, outvars, names=names, name=name)
    return Staged(prepared(program), [value for value, _ in trace.captured], out_tree)


def lifted(fn, trace, depth=0):
    """`fn` reading the arrays and traced values its closure cells and defaults hold (and
    those of the functions they hold, a few deep) as the trace's captured inputs: what a
    branch computes from outside values alone (`np.log(d - d)`) is then staged in the
    branch, not computed outside it whichever branch is taken (its inf would reach d's
    cotangent as 0 * inf). A function rebinding a nonlocal is kept as it is (staging
    then reports the change). `fn` itself may be pullback's adapter of the user's function."""
    if isinstance(fn, (np.ndarray, Tracer)):
        return trace.lifted(fn)
    if not isinstance(fn, types.FunctionType) or depth > _MAX_DEPTH \
            or depth and _library_function(fn) or _rebinds_a_nonlocal(fn):
        return fn
    cells = tuple(types.CellType(lifted(cell.cell_contents, trace, depth + 1))
                  if filled_cell(cell) else cell for cell in fn.__closure__ or ())
    defaults = fn.__defaults__ and tuple(lifted(d, trace, depth + 1) for d in fn.__defaults__)
    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, defaults, cells)
    new.__kwdefaults__ = fn.__kwdefaults__ and {k: lifted(v, trace, depth + 1)
                                                 for k, v in fn.__kwdefaults__.items()}
    return new


def _rebinds_a_nonlocal(fn) -> bool:
    return any(i.opname == "STORE_DEREF" for i in dis.get_instructions(fn.__code__))


def _output_operand(trace, value, name, i):
    if not (isinstance(value, (bool, int, float, complex, np.ndarray, np.generic, Tracer))):
        raise LoopTypeError(
            f"`{name}` returned a {type(value).__name__} (result leaf {i}); loop bodies and "
            "branches return pytrees of arrays and numbers.")
    return trace.read(value)


# The state a function reads besides its arguments, as a hashable key: what its closure,
# defaults and (for the user's functions) the globals it names hold, a few references deep.
# Python values by value, everything else (arrays and traced values included) by identity;
# the user's modules and classes by the attributes their readers' code names.
_MAX_DEPTH, _MAX_OBJECTS, _MAX_ITEMS = 4, 2_000, 64
_ATOMS = (bool, int, float, complex, str, bytes, type(None), type(Ellipsis), np.generic,
          np.dtype)
_OPAQUE = (types.ModuleType, type, types.BuiltinFunctionType, np.ufunc, types.CodeType)
_LIBRARY_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (
    sys.modules["pullback"], np)) + (sysconfig.get_paths()["stdlib"] + os.sep,)
_LIBRARIES = frozenset(("pullback", "numpy", "scipy", *sys.builtin_module_names,
                        *sys.stdlib_module_names))


class _TooLarge(Exception):
    """The reachable state is too large to key a cache on: stage at every call."""


def function_state(fn):
    """(key, arrays, kept objects) of what fn reads besides its arguments (its closure,
    defaults and globals, a few references deep), or None where that is too large.

    A module or class of the user's (`settings.RATE`, `Config.rate`) is keyed by the
    attributes of it that the code of the functions met names, whatever reads them (its
    functions and classes by identity, as before): its whole namespace (imports,
    functions) would be too large to walk, its identity alone misses a changed number,
    which a program staged before holds as a constant."""
    walk = _StateWalk()
    try:
        walk.visit(fn, 0)
        walk.visit_named_attributes()
    except _TooLarge:
        return None
    return tuple(walk.key), walk.arrays, walk.kept


_ABSENT = object()
_CODE_HOLDERS = (types.FunctionType, types.MethodType, types.ModuleType, type, property,
                 classmethod, staticmethod)


class _StateWalk:
    def __init__(self):
        self.key, self.arrays, self.kept, self.seen = [], [], [], {}
        self.names = set()           # attribute and global names the walked code reads
        self.namespaces = []         # (attributes of the user's module or class, its depth)

    def visit(self, obj, depth):
        key = self.key
        if isinstance(obj, _ATOMS):
            key.append((type(obj), repr(obj)))
            return
        if isinstance(obj, (np.ndarray, Tracer)):
            key.append(("array", id(obj)))
            self.arrays.append(obj)
            return
        if id(obj) in self.seen:
            key.append(("seen", self.seen[id(obj)]))
            return
        if depth > _MAX_DEPTH or len(self.seen) > _MAX_OBJECTS:
            raise _TooLarge
        self.seen[id(obj)] = len(self.seen)
        self.kept.append(obj)
        if isinstance(obj, types.CodeType):
            self.names |= _global_names(obj)
        if isinstance(obj, (types.ModuleType, type)) and _users(obj):
            key.append(("id", id(obj)))
            self.namespaces.append((_attributes(obj), depth))
            return
        if isinstance(obj, _OPAQUE) or isinstance(obj, types.FunctionType) \
                and _library_function(obj):
            key.append(("id", id(obj)))
            return
        children = _children(obj)
        if children is None:
            key.append(("id", id(obj)))
            return
        key.append((type(obj), len(children)))
        for label, child in children:
            key.append(label)
            self.visit(child, depth + 1)

    def visit_named_attributes(self):
        """The attributes of the namespaces met that the code met names, until no new
        pair: names met later may name attributes of earlier namespaces, and attributes
        may hold further code. Methods and classes count by identity."""
        done = set()
        while True:
            todo = [(k, name) for k, (attributes, _) in enumerate(self.namespaces)
                    for name in sorted(self.names & attributes.keys()) if (k, name) not in done]
            if not todo:
                return
            for k, name in todo:
                done.add((k, name))
                attributes, depth = self.namespaces[k]
                value = attributes[name]
                self.key.append(("namespace", k, name))
                if isinstance(value, _CODE_HOLDERS):
                    self.key.append(("id", id(value)))
                    self.kept.append(value)
                else:
                    self.visit(value, depth + 1)


def _attributes(namespace) -> dict:
    """A module's or class's attributes by name (a class's own and its bases', as Python
    finds them), as they are now."""
    if isinstance(namespace, types.ModuleType):
        return namespace.__dict__
    attributes = {}
    for klass in reversed(namespace.__mro__[:-1]):         # (not `object`'s)
        attributes.update(klass.__dict__)
    return attributes


def _users(namespace) -> bool:
    """Whether a module or class is the user's code (not Python's, NumPy's, SciPy's or
    pullback's), whose attributes a function's state includes."""
    name = namespace.__name__ if isinstance(namespace, types.ModuleType) \
        else namespace.__module__ or ""
    return name.split(".")[0] not in _LIBRARIES


def _library_function(fn) -> bool:
    filename = fn.__code__.co_filename
    return filename.startswith(_LIBRARY_DIRS) and "site-packages" not in filename


def _children(obj):
    """(label, value) pairs of what obj holds, or None for an object kept by identity."""
    if isinstance(obj, (tuple, list, collections.deque)):   # (subclasses, namedtuples too)
        if len(obj) > _MAX_ITEMS:
            raise _TooLarge
        return list(enumerate(obj))
    if isinstance(obj, (set, frozenset)):
        if len(obj) > _MAX_ITEMS:
            raise _TooLarge
        return [(("member",), v) for v in sorted(obj, key=repr)]
    if isinstance(obj, (bytearray, array.array)):              # numbers held in place
        return [(("bytes",), bytes(obj))]
    if isinstance(obj, dict):
        if len(obj) > _MAX_ITEMS:
            raise _TooLarge
        return [(("key", repr(k)), v) for k, v in obj.items()]
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        cells = []
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                cells.append((("cell", name), cell.cell_contents))
            except ValueError:                      # an empty cell
                cells.append((("cell", name), None))
        names = sorted(n for n in _global_names(code) if n in obj.__globals__)
        return ([(("code",), code)] + cells + [(("default",), v) for v in obj.__defaults__ or ()]
                + [(("kwdefault", k), v) for k, v in sorted((obj.__kwdefaults__ or {}).items())]
                + [(("global", n), obj.__globals__[n]) for n in names]
                + [(("attribute", k), v) for k, v in sorted(obj.__dict__.items())])
    if isinstance(obj, types.MethodType):
        return [(("self",), obj.__self__), (("func",), obj.__func__)]
    if isinstance(obj, functools.partial):
        return ([(("func",), obj.func)] + [(("arg",), a) for a in obj.args]
                + [(("keyword", k), v) for k, v in sorted(obj.keywords.items())])
    if (type(obj).__module__ or "").split(".")[0] in ("pullback", "numpy", "scipy", "builtins"):
        return None
    attributes = getattr(obj, "__dict__", None)
    slots = _slot_names(type(obj))
    if not isinstance(attributes, dict) and not slots:
        return None
    items = list(attributes.items()) if isinstance(attributes, dict) else []
    items += [(name, getattr(obj, name, _ABSENT)) for name in slots]
    if len(items) > _MAX_ITEMS:
        raise _TooLarge
    return [(("class",), type(obj))] + [(("attr", k), v) for k, v in items]


@functools.lru_cache(maxsize=None)
def _slot_names(cls) -> tuple:
    """The instance attributes `__slots__` declares along cls's classes (not `__dict__`)."""
    names = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    return tuple(n for n in dict.fromkeys(names) if n not in ("__dict__", "__weakref__"))


@functools.lru_cache(maxsize=4096)
def _global_names(code) -> frozenset:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return frozenset(names)


# ------------------------------------------------------------------ derived programs

def _cached(program, key, make):
    cache = _derived(program)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def jvp_program(program: Program, nonzero: tuple, forced: tuple):
    """(J, nonzero outputs): J(*inputs, *nonzero tangents) = (*outputs, *their nonzero
    tangents), where `nonzero` flags the inputs with a tangent and `forced` the outputs
    whose tangent is kept even when it is zero (a loop's carries)."""
    def make():
        n = len(program.invars)
        found = []

        def fn(*args):
            it = iter(args[n:])
            tangents = [next(it) if nz else ZERO for nz in nonzero]
            outs, dots = jvp_flat(lambda *a: evaluate(program, *a), list(args[:n]), tangents)
            found[:] = [t is not ZERO or f for t, f in zip(dots, forced)]
            return outs + [zeros_like_value(o) if t is ZERO else t
                           for o, t, keep in zip(outs, dots, found) if keep]
        avals = list(program.invars) + [v for v, nz in zip(program.invars, nonzero) if nz]
        staged = prepared(stage_flat(fn, avals, f"{program.name}_jvp"))
        return staged, tuple(found)
    return _cached(program, ("jvp", nonzero, forced), make)


def batch_program(program: Program, batched: tuple, forced: tuple, size: int):
    """(B, batched outputs): B runs the program on `size` examples at once, along axis 0
    of the inputs flagged in `batched` (the others shared); `forced` outputs are batched
    even when the same for every example."""
    def make():
        found = []

        def fn(*args):
            outs, dims = batch_flat(lambda *a: evaluate(program, *a), list(args),
                                    [0 if b else None for b in batched])
            found[:] = [d is not None or f for d, f in zip(dims, forced)]
            result = []
            for o, d, keep in zip(outs, dims, found):
                if d is not None:
                    o = moveaxis(o, d, 0)
                elif keep:
                    o = np.broadcast_to(o, (size,) + tuple(np.shape(o)))
                result.append(o)
            return result
        avals = [ShapeDtype(((size,) if b else ()) + tuple(v.aval.shape), v.aval.dtype)
                 for v, b in zip(program.invars, batched)]
        staged = prepared(stage_flat(fn, avals, f"{program.name}_batched"))
        return staged, tuple(found)
    return _cached(program, ("batch", batched, forced, size), make)


def joint_program(program: Program, wrt: tuple, cts: tuple) -> Program:
    """J(*inputs, *cotangents) = (*outputs, *cotangents of the `wrt` inputs): the
    cotangents are those of the outputs flagged in `cts` (the others zero); zeros where an
    input does not reach the outputs."""
    def make():
        n = len(program.invars)
        positions = [i for i, w in enumerate(wrt) if w]

        def fn(*args):
            primals = list(args[:n])

            def on_selected(*selected):
                full = list(primals)
                for i, x in zip(positions, selected):
                    full[i] = x
                return evaluate(program, *full)
            outs, back = vjp_flat(on_selected, [primals[i] for i in positions])
            it = iter(args[n:])
            cts_in = back([next(it) if c else ZERO for c in cts])
            return list(outs) + [zeros_like_value(primals[i]) if c is ZERO else c
                                 for i, c in zip(positions, cts_in)]
        avals = list(program.invars) + [v for v, c in zip(program.outvars, cts) if c]
        return stage_flat(fn, avals, f"{program.name}_vjp")
    return _cached(program, ("joint", wrt, cts), make)


def recompute_program(program: Program, wrt: tuple, cts: tuple) -> Program:
    """(*inputs, *cotangents) -> cotangents of the `wrt` inputs: the forward computation
    is redone inside (what a checkpointed step runs on its way back)."""
    def make():
        joint = joint_program(program, wrt, cts)
        n_out = len(program.outvars)
        return prepared(with_interface(joint, joint.invars, joint.outvars[n_out:],
                                       f"{program.name}_recompute"))
    return _cached(program, ("recompute", wrt, cts), make)


class VJP:
    """The two halves of reverse mode through a step, and what the policies run:

    - `forward(*consts, *rest) = (*outputs, *residuals)`;
    - `backward(*consts, *residuals, *cotangents of the outputs flagged in cts) =
      cotangents of the wrt inputs`: what depends only on the first `n_consts` inputs
      (loop invariants) is recomputed there, never stored per step;
    - `primal`: the forward half without its residuals (a checkpointed loop's advances);
    - `step`: forward then backward, from a step's inputs (the reversal of a checkpointed
      step), the very operations of the two halves.
    """
    __slots__ = ("forward", "backward", "primal", "step", "n_residuals")


def vjp_programs(program: Program, wrt: tuple, cts: tuple, n_consts: int) -> VJP:
    """The halves of reverse mode (see `VJP`), from one joint program split in two."""
    return _cached(program, ("vjp", wrt, cts, n_consts),
                   lambda: _split(joint_program(program, wrt, cts), len(program.invars),
                                  len(program.outvars), n_consts, program.name))


def _split(joint: Program, n_in: int, n_out: int, n_consts: int, name: str) -> VJP:
    inputs, ct_vars = joint.invars[:n_in], joint.invars[n_in:]
    consts = set(joint.invars[:n_consts]) | set(joint.constvars)
    backward, invariant = set(ct_vars), set(consts)
    producer = {}
    for eq in joint.equations:
        operands = [x for x in eq.inputs if type(x) is Var]
        if any(x in backward for x in operands):
            backward.update(eq.outputs)
        elif all(x in invariant for x in operands):
            invariant.update(eq.outputs)
        for v in eq.outputs:
            producer[v] = eq
    ct_outputs = joint.outvars[n_out:]
    # The values the backward half reads from the forward half: invariant ones are
    # recomputed there (with the equations they need), the others are residuals.
    residuals, recomputed, needed = {}, set(), []
    for x in [x for eq in joint.equations if any(o in backward for o in eq.outputs)
              for x in eq.inputs] + ct_outputs:
        if type(x) is not Var or x in backward or x in residuals:
            continue
        if x in invariant:
            needed.append(x)
        else:
            residuals[x] = None
    while needed:
        x = needed.pop()
        if x in recomputed or x not in producer:
            continue
        recomputed.add(x)
        needed += [y for y in producer[x].inputs if type(y) is Var]
    forward_eqs = [eq for eq in joint.equations if not any(o in backward for o in eq.outputs)]
    backward_eqs = [eq for eq in joint.equations if any(o in backward for o in eq.outputs)
                    or any(o in recomputed for o in eq.outputs)]
    residuals = list(residuals)
    vjp = VJP()
    forward = replace(joint, invars=list(inputs), equations=forward_eqs,
                      outvars=joint.outvars[:n_out] + residuals, names={}, name=f"{name}_forward")
    back = replace(joint, invars=list(inputs[:n_consts]) + residuals + list(ct_vars),
                   equations=backward_eqs, outvars=list(ct_outputs), names={},
                   name=f"{name}_backward")
    vjp.forward = prepared(eliminate_dead_code(forward))
    vjp.backward = prepared(eliminate_dead_code(back))
    vjp.n_residuals = len(residuals)
    vjp.primal = eliminate_dead_code(with_interface(
        vjp.forward, vjp.forward.invars, vjp.forward.outvars[:n_out], f"{name}_primal"))
    vjp.primal.optimized = True
    vjp.step = _composed(vjp.forward, vjp.backward, n_consts, n_out, f"{name}_step")
    return vjp


def _composed(forward: Program, backward: Program, n_consts: int, n_out: int, name: str):
    """(*inputs, *cts) -> backward(*consts, *residuals of forward(*inputs), *cts): the
    equations of both, unchanged (so the values are the same bit for bit), the forward
    equations nothing reads dropped."""
    n_res = len(forward.outvars) - n_out
    ct_vars = backward.invars[n_consts + n_res:]
    env = dict(zip(backward.invars[:n_consts], forward.invars[:n_consts]))
    env.update(zip(backward.invars[n_consts:n_consts + n_res], forward.outvars[n_out:]))

    def read(x):
        return env.get(x, x) if type(x) is Var else x
    equations = forward.equations + [replace(eq, inputs=[read(x) for x in eq.inputs])
                                     for eq in backward.equations]
    constants = dict(zip(forward.constvars + backward.constvars, forward.consts + backward.consts))
    program = Program(list(forward.invars) + list(ct_vars), list(constants),
                      list(constants.values()), equations, [read(x) for x in backward.outvars],
                      name=name)
    program = eliminate_dead_code(program)
    program.optimized = True
    return program


def carries_only(program: Program, n_carry: int) -> Program:
    """The program computing only its first `n_carry` outputs (a checkpointed loop's
    advances need no ys)."""
    if len(program.outvars) == n_carry:
        return program

    def make():
        reduced = eliminate_dead_code(with_interface(program, program.invars,
                                                     program.outvars[:n_carry]))
        reduced.optimized = True
        return reduced
    return _cached(program, ("carries only", n_carry), make)


def read_inputs(program: Program) -> list:
    """Which of its inputs the program reads (its equations or its outputs)."""
    read = {x for eq in program.equations for x in eq.inputs} | set(program.outvars)
    return [v in read for v in program.invars]


def reading_its_xs(program: Program, n_before: int):
    """(program without the inputs after the first `n_before` that it never reads, which
    of those it reads): a scan passes no xs its body ignores (fori_loop's counter for a
    body that ignores it), so they are neither kept for reverse mode nor sliced."""
    flags = tuple(read_inputs(program)[n_before:])
    if all(flags):
        return program, flags
    def make():
        kept = [v for v, r in zip(program.invars[n_before:], flags) if r]
        reduced = with_interface(program, program.invars[:n_before] + kept, program.outvars)
        reduced.optimized = getattr(program, "optimized", False)
        return reduced
    return _cached(program, ("reading its xs", n_before), make), flags


def live_carries(program: Program, n_before: int, live: list, outputs_after: list,
                 also_read=()) -> tuple:
    """(program computing the live carries and `outputs_after` (flags for the outputs after
    the carries), which inputs it reads, which carries are live) for dead-code elimination
    of a loop whose body is `program`, its carries the inputs after the first `n_before`
    and its first outputs: a carry is live if used after the loop, read by a live output's
    computation or in `also_read` (flags: a while loop's predicate reads it)."""
    n_carry = len(live)
    if also_read:
        live = [a or b for a, b in zip(live, also_read)]
    while True:
        outvars = [v for v, keep in zip(program.outvars, live + list(outputs_after)) if keep]
        reduced = eliminate_dead_code(with_interface(program, program.invars, outvars))
        reads = read_inputs(reduced)
        grown = [a or b for a, b in zip(live, reads[n_before:n_before + n_carry])]
        if grown == live:
            return reduced, reads, live
        live = grown


def hoisted(program: Program, n_consts: int):
    """(H, Q): H(*consts) computes the values that depend only on the first `n_consts`
    inputs and that the rest reads; Q(*consts, *those values, *other inputs) the outputs
    from them. None where nothing is invariant. Views of invariants (`W.T`) stay in Q
    (see `_view`)."""
    def make():
        invariant = set(program.invars[:n_consts]) | set(program.constvars)
        outer, inner = [], []
        for eq in program.equations:
            if all(type(x) is not Var or x in invariant for x in eq.inputs):
                invariant.update(eq.outputs)
                outer.append(eq)
                if _view(eq):
                    inner.append(eq)
            else:
                inner.append(eq)
        inner = eliminate_dead_code(replace(program, equations=inner)).equations
        read = [x for eq in inner for x in eq.inputs] + list(program.outvars)
        produced = {v for eq in outer for v in eq.outputs}
        produced -= {v for eq in inner for v in eq.outputs}
        values = list(dict.fromkeys(x for x in read if type(x) is Var and x in produced))
        if not values:
            return None
        consts = program.invars[:n_consts]
        head = eliminate_dead_code(replace(program, invars=list(consts), equations=outer,
                                           outvars=values, names={},
                                           name=f"{program.name}_invariants"))
        rest = eliminate_dead_code(replace(program, invars=list(consts) + values
                                           + list(program.invars[n_consts:]),
                                           equations=inner, names={}))
        head.optimized = rest.optimized = True
        return head, rest
    return _cached(program, ("hoisted", n_consts), make)


def _view(eq) -> bool:
    """Whether an equation may only take a view of its input (a transpose, a reshape): an
    invariant one is recomputed in the body, where it costs nothing, rather than passed
    in, where the invariants' code would copy it (its outputs own their buffers)."""
    return eq.primitive.family == "structural" and not eq.primitive.fresh_output


def loop_runner(program: Program, n_consts: int):
    """(prepare, step): `prepare(*consts)` gives the constants `step` takes first (the
    invariant values computed once), `step` the program's compiled code."""
    def make():
        split = hoisted(program, n_consts)
        if split is None:
            return (lambda *consts: list(consts)), runner(program)
        head, rest = runner(split[0]), runner(split[1])
        return (lambda *consts: list(consts) + head(*consts)), rest
    return _cached(program, ("loop_runner", n_consts), make)


def composite_rules(composite, name: str):
    """(jvp, value_and_vjp) of a primitive whose value is `composite(*args, **params)`, a
    function of other primitives (a reversal is the loops that compute it): its derivatives
    are the composite's, taken with respect to the differentiated inputs only."""
    def jvp(primals, tangents, **params):
        return jvp_flat(lambda *args: composite(*args, **params), list(primals), list(tangents))

    def value_and_vjp(wrt, *primals, **params):
        positions = [i for i, w in enumerate(wrt) if w]

        def on_selected(*selected):
            args = list(primals)
            for i, x in zip(positions, selected):
                args[i] = x
            return composite(*args, **params)
        outs, back = vjp_flat(on_selected, [primals[i] for i in positions])

        def pullback(cts):
            result = [ZERO] * len(primals)
            for i, c in zip(positions, back(list(cts))):
                result[i] = c
            return result
        return outs, pullback
    return jvp, value_and_vjp
