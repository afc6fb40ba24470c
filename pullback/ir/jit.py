"""`jit`, `make_ir` and `show`: staged programs, optimised, compiled and printed.

`jit(f)` stages `f` once per input signature (pytree structure, shapes, dtypes,
Python-scalar types, static arguments), optimises the program, generates a
Python function of NumPy calls and caches it. Called with tracers of an outer
transformation, it runs the generated code in its traceable form (plain NumPy
calls, which the tracers dispatch), so `grad(jit(f))`, `vmap(jit(f))`,
`jit(jit(f))` ... all work and agree with eager mode.
"""
import warnings
from functools import wraps
from typing import Callable

import numpy as np

from ..core.engine import Tracer
from ..errors import StaticArgumentError
from ..transforms.staging import CapturedTracer, argument_names, signature_of, stage
from ..tree import flatten, unflatten
from .codegen import compile_program, generate
from .passes import optimize

# After this many consecutive calls that each had to stage again, warn.
RESTAGING_WARNING_THRESHOLD = 8


class RestagingWarning(UserWarning):
    """A jitted function is staged again on (almost) every call: its cache does not help."""


class _Compiled:
    __slots__ = ("program", "fast", "traceable", "out_tree")

    def __init__(self, program, name):
        self.program = program
        self.fast = compile_program(program, name, fast=True)
        self.traceable = compile_program(program, name, fast=False)
        self.out_tree = program.out_tree


def _static_positions(static_argnums, nargs):
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    return {i % nargs for i in nums if -nargs <= i < nargs}


def jit(f: Callable, static_argnums=(), static_argnames=()) -> Callable:
    """Compile `f` into generated NumPy code, once per input signature.

    Arguments named in `static_argnums`/`static_argnames` are Python values the
    program may branch on (they must be hashable); a new value stages again.

    >>> import numpy as np
    >>> fast_sin = jit(np.sin)
    >>> fast_sin(np.zeros(2))
    array([0., 0.])
    """
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
    cache = {}
    # Calls with plain ndarrays only (no keywords, no static arguments) skip flattening:
    # ((shape, dtype) of each argument) -> the entry `cache` holds for them.
    by_arrays = {}
    plain = isinstance(static_argnums, (tuple, list)) and not static_argnums
    misses = [0]
    name = getattr(f, "__name__", "f")
    name = name if name.isidentifier() else "f"

    @wraps(f)
    def jitted(*args, **kwargs):
        if plain and not kwargs:
            entry = by_arrays.get(tuple((a.shape, a.dtype) if type(a) is np.ndarray else None
                                        for a in args))
            if entry is not None:
                misses[0] = 0
                return unflatten(entry.out_tree, entry.fast(*args))
        static_pos = _static_positions(static_argnums, len(args))
        static = (tuple((i, args[i]) for i in sorted(static_pos))
                  + tuple(sorted((k, v) for k, v in kwargs.items() if k in names)))
        try:
            hash(static)
        except TypeError:
            bad = [repr(v) for _, v in static if not _hashable(v)]
            raise StaticArgumentError(
                f"static arguments of a jitted function must be hashable (they key its cache), "
                f"got {', '.join(bad)}. Pass a tuple instead of a list, or make the argument "
                "dynamic (an array) instead of static.") from None
        dynamic = ([a for i, a in enumerate(args) if i not in static_pos],
                   {k: v for k, v in kwargs.items() if k not in names})
        leaves, treedef = flatten(dynamic)
        key = (treedef, tuple(signature_of(x) for x in leaves), static)
        entry = cache.get(key)
        if entry is None:
            def flat_f(dynamic_args, dynamic_kwargs):
                it = iter(dynamic_args)
                full = [args[i] if i in static_pos else next(it) for i in range(len(args))]
                return f(*full, **dynamic_kwargs, **{k: v for k, v in kwargs.items() if k in names})
            try:
                program = stage(flat_f, dynamic, _leaf_names(f, args, static_pos, leaves))
            except CapturedTracer:
                # f closes over a value of an enclosing transformation: run it as it is.
                return f(*args, **kwargs)
            entry = cache[key] = _Compiled(optimize(program), name)
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
        traced = any(isinstance(x, Tracer) for x in leaves)
        if plain and not kwargs and all(type(a) is np.ndarray for a in args):
            by_arrays[tuple((a.shape, a.dtype) for a in args)] = entry
        outs = (entry.traceable if traced else entry.fast)(*leaves)
        return unflatten(entry.out_tree, outs)

    jitted.cache = cache
    return jitted


def _hashable(value):
    try:
        hash(value)
        return True
    except TypeError:
        return False


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
        program = stage(f, args, argument_names(f, args))
        return optimize(program) if optimized else program
    return make_ir_f


def show(f: Callable, *args, optimized: bool = True, file=None) -> str:
    """Print (and return) the Python source pullback generates for `f` at `args`.

    Inputs keep your parameter names; cotangents are named `x_bar`, tangents
    `x_dot`; comments point back to the lines of your code each block comes from.

    >>> import numpy as np
    >>> _ = show(lambda x: np.sum(np.sin(x)), np.zeros(2))     # doctest: +ELLIPSIS
    def ...
    """
    program = make_ir(f, optimized)(*args)
    name = getattr(f, "__name__", "f")
    text = generate(program, name if name.isidentifier() else "f", fast=False)[0]
    print(text, file=file)
    return text
