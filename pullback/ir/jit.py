"""`jit`, `make_ir` and `show`: staged programs, optimised, compiled and printed.

`jit(f)` stages `f` once per input signature (pytree structure, shapes, dtypes,
Python-scalar types, static arguments), optimises the program, generates a
Python function of NumPy calls and caches it. A long program's first call runs
it by the interpreter instead, and the next call compiles it, so that a long
program answers without its compile cost; with Numba installed, a later call swaps
in the fused tier (ir/fused.py) once a thread has compiled it (`_Compiled`: the
tiers are chosen there). Called with tracers of an outer
transformation, it runs the generated code in its traceable form (plain NumPy
calls, which the tracers dispatch), so `grad(jit(f))`, `vmap(jit(f))`,
`jit(jit(f))` ... all work and agree with eager mode. Another library's arrays (Dask, CuPy)
run the optimised program through its primitives, as eager mode does (one cache entry per
array type), and results come back in their library, the program's constants included;
a program local along Dask's chunked leading axis (reductions over it included) runs its
generated code once per chunk instead (ir/chunked.py), as eager operators do through
`on_chunks`.
"""
import dataclasses
import inspect
import warnings
from functools import wraps
from numbers import Integral
from typing import Callable

import numpy as np

from ..core.arrays import (aligned_copy, foreign_array, foreign_library, in_library_of,
                           is_array, runs_generated_code)
from ..core.boundary import (REFUSED_ARRAY_TYPES, array_api_refusal, refused_array_type,
                             refuse_unknown_shape)
from ..core.engine import Tracer
from ..errors import ArrayLibraryError, StaticArgumentError, UnsupportedFunctionError
from ..tree import LEAF, flatten, unflatten
from . import fused as fused_tier
from .chunked import by_chunks, windows_of
from .codegen import compile_program, generate
from .passes import optimize
from .program import evaluate, interpret
from .readable import readable, user_arrays
from .staging import CapturedTracer, argument_names, leaf_paths, signature_of, stage

# After this many consecutive calls that each had to stage again, warn.
RESTAGING_WARNING_THRESHOLD = 8
# Programs of this many equations or more run interpreted on their first call (see _Compiled).
INTERPRETED_FIRST_CALL = 2000


class RestagingWarning(UserWarning):
    """A jitted function is staged again on (almost) every call: its cache does not help."""


def _snapshot(program):
    """`program` with copies of the NumPy arrays it reads as constants (the function's
    closure and globals): the passes compute values from them once (`exp(W)`), the
    generated code reads the rest when called, so a later write into the user's array
    would be seen by some of the program and not by the rest. A snapshot is seen by all.

    Copies keep the constants' layout and what they share: constants that view one array
    whole (`X` and the `X.T` a matrix product's derivative reads, or a broadcast of it)
    stay views of one copy,
    and a transposed view stays transposed: a C-ordered copy of `X.T` doubles the memory
    the program holds and changes the matrix-vector product BLAS runs, which is faster
    with some BLAS kernels and slower with others (`passes.contiguous_transposes`
    measures it). Copies start on a cache line (`arrays.aligned_copy`)."""
    roots = {}             # id of an array owning its memory -> its copy, where a constant spans it
    for c in program.consts:
        root = _owner(c)
        if root is not None and c.nbytes >= root.nbytes:
            roots.setdefault(id(root), aligned_copy(root))

    def copied(c):
        if not isinstance(c, np.ndarray) or _frozen(c):
            return c
        if type(c) is not np.ndarray:     # a memmap's memory changes under it too
            return c.copy() if isinstance(c, (np.matrix, np.ma.MaskedArray)) \
                else aligned_copy(c.view(np.ndarray))
        root = _owner(c)
        if root is None or id(root) not in roots:
            return aligned_copy(c)
        if c is root:
            return roots[id(root)]
        view = np.ndarray(c.shape, c.dtype, buffer=roots[id(root)], strides=c.strides,
                          offset=c.__array_interface__["data"][0]
                          - root.__array_interface__["data"][0])
        view.flags.writeable = c.flags.writeable
        return view
    program.consts = [copied(c) for c in program.consts]
    return program


def _frozen(c) -> bool:
    """Whether nothing can write the memory of the ndarray `c`: c and every array it views
    read-only, and the memory at the bottom another object's read-only buffer. A read-only
    view of a writeable array (`np.broadcast_to(w, shape)`) is not frozen: a write into w
    changes it; nor is a read-only array owning its memory (its owner may set it writeable
    again)."""
    while isinstance(c, np.ndarray):
        if c.flags.writeable:
            return False
        c = c.base
    if c is None:
        return False
    try:
        return memoryview(c).readonly
    except TypeError:
        return False


def _owner(c):
    """The array owning the memory of the ndarray `c` (c itself, or the array it views,
    read-only views included), where that array is contiguous; else None (not an
    ndarray, memory of another object)."""
    if type(c) is not np.ndarray:
        return None
    while isinstance(c.base, np.ndarray):
        c = c.base
    contiguous = c.flags.c_contiguous or c.flags.f_contiguous
    return c if c.base is None and contiguous else None


class _Compiled:
    """A cached program and its variants, built as calls come (the tiers are chosen here
    alone). A long program (`INTERPRETED_FIRST_CALL` equations or more) is run as staged by
    the interpreter on its first call, which costs no optimisation or compile (most of the
    cost of a long program's first call); the next call optimises it and compiles the fast
    variant, which runs from then on. A shorter program is compiled at once. The traceable
    variant is compiled when tracers first call it (most jitted functions never see one)."""
    __slots__ = ("staged", "_program", "name", "fast", "_traceable", "out_tree", "_windows")

    def __init__(self, staged, name):
        self.staged, self.name = _snapshot(staged), name
        self._program = self._traceable = self._windows = None
        self.out_tree = staged.out_tree
        # constants of another array library (a Dask array in f) cannot meet NumPy buffers
        if any(foreign_array(c) is not None for c in staged.consts):
            self.fast = self.on_other_arrays
        elif len(staged.equations) >= INTERPRETED_FIRST_CALL:
            self.fast = self._interpret_once
        else:
            self.fast = self._compiled()

    def _compiled(self):
        """The generated NumPy code, which hands over to the fused tier when it is ready."""
        return fused_tier.tier(self.program, self.name,
                               compile_program(self.program, self.name, keeps=True),
                               self._install)

    def _interpret_once(self, *args):
        self.fast = self._compile_then_run
        return interpret(self.staged, *args)

    def _compile_then_run(self, *args):
        self.fast = self._compiled()
        return self.fast(*args)

    @property
    def program(self):
        """The optimised program."""
        if self._program is None:
            self._program, self.staged = optimize(self.staged), None
        return self._program

    def _install(self, fast):
        self.fast = fast

    def on_other_arrays(self, *args):
        """The optimised program run on another library's arrays (Dask, CuPy). On Dask arrays
        of a program local along their chunked leading axis, one task per chunk runs its
        generated code on the chunk and its neighbours' nearest elements, reductions over
        that axis reduced across chunks (ir/chunked.py).
        Otherwise equation by equation through its primitives, as eager mode runs them:
        arrays are made like their operands and a library's refusal is an
        `ArrayLibraryError` naming the primitive (the generated code makes NumPy buffers
        and writes into them, which would compute a lazy array). An output that is an
        argument or constant is copied."""
        if self._windows is None:
            self._windows = windows_of(self.program) or False
        if self._windows and all(foreign_array(c) is None for c in self.program.consts):
            outs = by_chunks(self.program, self._windows, args)
            if outs is not None:
                return outs
        outs = evaluate(self.program, *args)
        kept = (*args, *self.program.consts)
        return [o.copy() if is_array(o) and any(o is v for v in kept) else o for o in outs]

    @property
    def traceable(self):
        if self._traceable is None:
            self._traceable = compile_program(self.program, self.name, fast=False)
        return self._traceable


def _static_key(value):
    """A static value as a cache key: equal values of other types (2, 2.0, True) or signs
    (0.0, -0.0) may stage different programs, so the key holds the type and a float's repr
    (by which NaN also finds its own entry); tuples, frozensets and dataclasses (a frozen
    configuration: `Cfg(100)` and `Cfg(100.0)` are equal) by their items."""
    if isinstance(value, tuple):
        return type(value), tuple(map(_static_key, value))
    if isinstance(value, frozenset):
        return type(value), frozenset(map(_static_key, value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value), tuple(_static_key(getattr(value, field.name))
                                  for field in dataclasses.fields(value))
    if isinstance(value, (float, complex, np.inexact)):
        return type(value), repr(value)
    return type(value), value


def _one_or_many(value, kind):
    """A tuple of `value`'s items, or of `value` itself if it is one of `kind`; None for
    neither (an error to name)."""
    if isinstance(value, kind):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        return None


class _StaticArguments:
    """Which arguments of `f` are static: positions and names, each mapped to the other
    through f's signature (so either may be passed positionally or by keyword), checked
    against it when it can be inspected, else at each call."""

    def __init__(self, f, name, static_argnums, static_argnames):
        self.name = name
        nums, names = _one_or_many(static_argnums, Integral), _one_or_many(static_argnames, str)
        if nums is None or names is None or any(isinstance(i, bool) for i in nums) \
                or not all(isinstance(i, Integral) for i in nums) \
                or not all(isinstance(k, str) for k in names):
            raise StaticArgumentError(
                f"jit({name}): static_argnums must be ints and static_argnames strings, got "
                f"static_argnums={static_argnums!r}, static_argnames={static_argnames!r}.")
        try:
            params = list(inspect.signature(f).parameters.values())
        except (TypeError, ValueError):        # a builtin, say: checked at each call
            self.positions, self.names, self.checked = tuple(map(int, nums)), frozenset(names), False
            return
        self.checked = True
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        n = len(positional)
        for i in nums:
            if not varargs and not -n <= i < n:
                raise StaticArgumentError(
                    f"jit({name}, static_argnums={static_argnums!r}): {name} has no argument "
                    f"{i}; its positional parameters are ({', '.join(p.name for p in positional)})."
                    f" Give positions from 0 to {n - 1}, or name parameters in static_argnames.")
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            for k in names:
                if k not in {p.name for p in params}:
                    raise StaticArgumentError(
                        f"jit({name}, static_argnames={static_argnames!r}): {name} has no "
                        f"parameter {k!r}; its parameters are "
                        f"({', '.join(p.name for p in params)}).")
        nums = {int(i) % n if i < 0 and not varargs else int(i) for i in nums}
        by_keyword = {p.name: i for i, p in enumerate(positional)
                      if p.kind is p.POSITIONAL_OR_KEYWORD}
        self.positions = tuple(sorted(nums | {by_keyword[k] for k in names if k in by_keyword}))
        self.names = frozenset(names) | {k for k, i in by_keyword.items() if i in nums}

    def __bool__(self):
        return bool(self.positions or self.names)

    def positions_in(self, nargs: int) -> set:
        """The static positions among the `nargs` positional arguments of a call."""
        positions = set()
        for i in self.positions:
            if -nargs <= i < nargs:
                positions.add(i % nargs)
            elif not self.checked or i < 0:
                raise StaticArgumentError(
                    f"jit({self.name}): static_argnums names argument {i}, but it was called "
                    f"with {nargs} positional argument(s).")
        return positions


def jit(f: Callable, static_argnums=(), static_argnames=()) -> Callable:
    """Compile `f` into generated NumPy code, once per input signature.

    Arguments named in `static_argnums`/`static_argnames` (by position or by name,
    however the caller passes them) are Python values the program may branch on; they
    must be hashable, and a new value stages again. Every other argument is a pytree of
    arrays, NumPy scalars and Python numbers: anything else (a config object, a model)
    must be static, or `StaticArgumentError` says so.

    >>> import numpy as np
    >>> fast_sin = jit(np.sin)
    >>> fast_sin(np.zeros(2))
    array([0., 0.])
    """
    name = getattr(f, "__name__", "f")
    name = name if name.isidentifier() else "f"
    static = _StaticArguments(f, name, static_argnums, static_argnames)
    cache = {}
    # Calls with plain ndarrays only (no keywords, no static arguments) skip flattening:
    # ((shape, dtype) of each argument) -> the entry `cache` holds for them.
    by_arrays = {}
    # The last call of one plain ndarray: (its shape, its dtype object, the entry). Most
    # calls repeat it: comparing costs less than building and hashing the key (a call's
    # own cost 0.8 -> 0.5 µs).
    last = [None, None, None]
    plain = not static
    misses = [0]

    @wraps(f)
    def jitted(*args, **kwargs):
        if plain and not kwargs:
            if len(args) == 1 and runs_generated_code(args[0]):
                a = args[0]
                if a.shape == last[0] and a.dtype is last[1]:
                    entry = last[2]
                else:
                    entry = by_arrays.get(((a.shape, a.dtype),))
                    if entry is not None:
                        last[:] = a.shape, a.dtype, entry
            else:                       # (a list, not a generator: a frame less per call)
                entry = by_arrays.get(tuple([(a.shape, a.dtype) if runs_generated_code(a)
                                             else None for a in args]))
            if entry is not None:
                misses[0] = 0
                outs = entry.fast(*args)
                return outs[0] if entry.out_tree is LEAF else unflatten(entry.out_tree, outs)
        static_pos = static.positions_in(len(args))
        static_kwargs = {k: v for k, v in kwargs.items() if k in static.names}
        static_values = tuple((i, args[i]) for i in sorted(static_pos)) + tuple(
            sorted(static_kwargs.items()))
        try:
            hash(static_values)
        except TypeError:
            bad = [repr(v) for _, v in static_values if not _hashable(v)]
            raise StaticArgumentError(
                f"static arguments of a jitted function must be hashable (they key its cache), "
                f"got {', '.join(bad)}. Pass a tuple instead of a list, or make the argument "
                "dynamic (an array) instead of static.") from None
        dynamic = ([a for i, a in enumerate(args) if i not in static_pos],
                   {k: v for k, v in kwargs.items() if k not in static.names})
        leaves, treedef = flatten(dynamic)
        for leaf in leaves:     # staged as plain arrays, run as theirs: neither is NumPy's
            if isinstance(leaf, REFUSED_ARRAY_TYPES):
                raise refused_array_type(leaf, f"jit({name}): an argument",
                                         UnsupportedFunctionError)
            if type(leaf) is not np.ndarray:
                refuse_unknown_shape(leaf, f"jit({name}): an argument", ArrayLibraryError)
        key = (treedef, tuple(signature_of(x) for x in leaves), _static_key(static_values),
               tuple(type(x) for x in leaves if foreign_array(x) is not None))
        entry = cache.get(key)
        if entry is None:
            _refuse_unstageable(f"jit({name})", f, args, kwargs, static_pos, static.names)

            def flat_f(dynamic_args, dynamic_kwargs):
                it = iter(dynamic_args)
                full = [args[i] if i in static_pos else next(it) for i in range(len(args))]
                return f(*full, **dynamic_kwargs, **static_kwargs)
            try:
                program = stage(flat_f, dynamic, _leaf_names(f, args, static_pos, leaves))
            except CapturedTracer:
                # f closes over a value of an enclosing transformation: run it as it is.
                return f(*args, **kwargs)
            entry = cache[key] = _Compiled(program, name)
            misses[0] += 1
            if misses[0] == RESTAGING_WARNING_THRESHOLD:
                warnings.warn(
                    f"jit({name}) has been staged again on each of its last "
                    f"{RESTAGING_WARNING_THRESHOLD} calls (new shapes, dtypes or static "
                    "values each time), so compiling costs more than it saves. Keep argument "
                    "shapes fixed, or pass changing Python values as arrays, not static.",
                    RestagingWarning, stacklevel=2)
        else:
            misses[0] = 0
        # the fast variant writes into NumPy buffers: tracers run the traceable variant,
        # whose plain NumPy calls dispatch on them; other arrays (Dask, CuPy ...) the
        # program through its primitives
        if plain and not kwargs and all(runs_generated_code(a) for a in args):
            by_arrays[tuple((a.shape, a.dtype) for a in args)] = entry
        if any(isinstance(x, Tracer) for x in leaves):
            outs = entry.traceable(*leaves)
        elif any(foreign_array(x) is not None for x in leaves):
            outs = _in_inputs_library(entry.on_other_arrays(*leaves), leaves)
        else:
            outs = entry.fast(*leaves)
        return unflatten(entry.out_tree, outs)

    jitted.cache = cache
    return jitted


def on_chunks(f: Callable) -> Callable:
    """A function giving f's result on Dask arrays by one task per chunk (ir/chunked.py)
    where f's staged program allows it, and None otherwise: eager operators try it first on
    Dask arguments, whose every operation is lazy anyway, so that a chunk's temporaries live
    for its task alone. None also where an argument is not a Dask array or a tracer of an
    outer transformation is, or staging f fails (Python control flow on values, say): the
    caller runs f as before. f is staged at each call, as eager mode runs it at each call
    (a cached program would keep the values of the globals f read when it was staged).

    >>> import dask.array as da, numpy as np
    >>> on_chunks(lambda x: np.sin(x) * 2)(da.zeros(4, chunks=2)).compute()
    array([0., 0., 0., 0.])
    """
    def run(*args):
        leaves = flatten(args)[0]
        if foreign_library(leaves) != "dask" or any(isinstance(x, Tracer) for x in leaves) \
                or not all(_stageable(x) for x in leaves):
            return None
        try:
            program = optimize(_snapshot(stage(f, args)))
        except Exception:           # noqa: BLE001  f raises it again when run as before
            return None
        windows = all(foreign_array(c) is None for c in program.consts) and windows_of(program)
        outs = windows and by_chunks(program, windows, leaves)
        return unflatten(program.out_tree, outs) if outs else None
    return run


def _in_inputs_library(outs, leaves):
    """The outputs the program gives as NumPy arrays (constants, such as a derivative that
    does not depend on the inputs) as arrays of the inputs' library where inputs are
    another library's arrays: results come back in the inputs' array type, as in eager
    mode (each laid out like an input of its shape, if there is one)."""
    inputs = [x for x in leaves if foreign_array(x) is not None]
    return [in_library_of(o, next((x for x in inputs if x.shape == o.shape), inputs[0]))
            if isinstance(o, (np.ndarray, np.generic)) else o for o in outs]


def _hashable(value):
    try:
        hash(value)
        return True
    except TypeError:
        return False


def _stageable(value) -> bool:
    """Whether an argument leaf can be an input of a staged program: an array or NumPy
    scalar of a numeric or boolean dtype, a Python number, or a tracer."""
    if isinstance(value, (np.ndarray, np.generic)) or is_array(value):
        return np.dtype(value.dtype).kind in "biufc"
    return isinstance(value, (bool, int, float, complex, Tracer))


def _refuse_unstageable(what, f, args, kwargs, static_pos=None, static_names=()):
    """StaticArgumentError for the first dynamic argument holding a leaf that is not
    `_stageable`, naming it and the fix: mark it static (jit), or bind it (make_ir, show)."""
    try:
        params = [p.name for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    dynamic = [(i, a) for i, a in enumerate(args) if i not in (static_pos or ())]
    dynamic += [(k, v) for k, v in kwargs.items() if k not in static_names]
    for key, value in dynamic:
        bad = [(leaf, path) for leaf, path in zip(flatten(value)[0], leaf_paths(value))
               if not _stageable(leaf)]
        if not bad:
            continue
        leaf, path = bad[0]
        param = key if isinstance(key, str) else params[key] if key < len(params) else None
        argument = (f"keyword argument {key!r}" if isinstance(key, str) else
                    f"argument {key}" + (f" ({param})" if param else ""))
        inside = f", at {''.join(f'[{k!r}]' for k in path)}," if path else ""
        if hasattr(leaf, "__array_namespace__") and not is_array(leaf):
            raise StaticArgumentError(array_api_refusal(leaf, f"{what}: {argument}{inside}"))
        kind = (f"an array of dtype {leaf.dtype}" if isinstance(leaf, (np.ndarray, np.generic))
                else f"a {type(leaf).__name__}")
        if static_pos is None:
            fix = ("make_ir and show stage every argument: bind this one first, e.g. "
                   f"make_ir(lambda x: f(x, {param or 'value'})).")
        else:
            by = " or ".join(([f"static_argnums=({key},)"] if isinstance(key, int) else [])
                             + ([f'static_argnames=("{param}",)'] if param else []))
            fix = (f"Mark it static with {by}; static values must be hashable, and jit "
                   "stages again for each new value.")
        raise StaticArgumentError(
            f"{what}: {argument}{inside} is {kind}; only arrays and NumPy scalars of numeric "
            f"or boolean dtype, and Python numbers, can be inputs of a staged program. {fix}")


def _leaf_names(f, args, static_pos, leaves):
    names = argument_names(f, args)
    # argument_names numbers the leaves of all arguments; drop the static ones.
    kept, index = {}, 0
    position_names = list(names.values())
    flat_positions = []
    for position, arg in enumerate(args):
        count = len(flatten(arg)[0])
        flat_positions += [position] * count
    for leaf_index, position in enumerate(flat_positions):
        if position not in static_pos:
            kept[index] = position_names[leaf_index] if leaf_index < len(position_names) else ""
            index += 1
    return kept


def make_ir(f: Callable, optimized: bool = False) -> Callable:
    """A function returning the program (IR) of `f` at the shapes and dtypes of its arguments.

    Any composition works: `make_ir(grad(g))`, `make_ir(vmap(hessian(g)))`, ...
    With `optimized=True` the optimisation passes are applied.

    >>> import numpy as np
    >>> print(make_ir(lambda x: np.sin(x))(np.zeros(3)))
    { lambda x:float64[3] .
        a:float64[3] = sin x
      in (a) }
    """
    @wraps(f)
    def make_ir_f(*args):
        _refuse_unstageable("make_ir/show", f, args, {})
        program = stage(f, args, argument_names(f, args))
        return optimize(program) if optimized else program
    return make_ir_f


def show(f: Callable, *args, optimized: bool = True, file=None, result_names=None,
         fused: bool = False) -> str:
    """Print (and return) the derivative code pullback generates for `f` at `args`, as
    NumPy source that runs on its own (`readable`: constants inline or passed in).

    Inputs keep your parameter names, and values your lines assign keep theirs;
    cotangents add `_bar`, tangents `_dot`; results are named by `result_names` (default:
    `f.result_names`, which `grad`, `hessian`, `jacobian` and `hvp` set); comments point
    back to the lines of your code each block comes from. With `fused=True`, what the
    fused tier runs instead (ir/fused.py): the generated code calling Numba kernels, then
    the kernels.

    >>> import numpy as np
    >>> _ = show(lambda x: np.sum(np.sin(x)), np.zeros(2))     # doctest: +ELLIPSIS
    def ...
    """
    if fused:
        name = getattr(f, "__name__", "f")
        text = fused_tier.fused_source(make_ir(f, optimized)(*args),
                                       name if name.isidentifier() else "f")
    else:
        text = readable_source(f, *args, optimized=optimized, result_names=result_names)[0]
    print(text, file=file)
    return text


def readable_source(f: Callable, *args, optimized: bool = True, result_names=None):
    """(source, arguments): what `show` prints, and the values of the constants and
    functions it takes as keyword arguments (see `ir/readable.py`)."""
    program = make_ir(f, optimized)(*args)
    name = getattr(f, "__name__", "f")
    if result_names is None:
        result_names = getattr(f, "result_names", None)
        result_names = result_names(*args) if callable(result_names) else result_names
    return readable(program, name if name.isidentifier() else "f", result_names or (),
                    user_arrays(f))
