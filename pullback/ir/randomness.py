"""Random draws while staging: refused, since a staged program would freeze them.

A program staged by jit/make_ir keeps every value its function computed from
anything but its inputs, random draws included: a dropout mask drawn with
`np.random.rand` would be the same on every call. So staging watches the random
states the function can reach -- NumPy's global state (`np.random.*`), Python's
`random` module, and the NumPy Generators, RandomStates and BitGenerators and
`random.Random` instances reachable from the function (its closure, the globals
it names, its defaults, bound object and arguments, a few references deep) --
and raises `StagedRandomnessError` if staging moved one of them.

NumPy's random functions are compiled (Cython) functions, which `sys.setprofile`
does not see, so a draw is found by comparing states. To name the line that
drew, the function is staged once more, on this error path only, under a tracer
that compares the states after each line of the user's code; an installed
tracer (a debugger, coverage) is left alone, and the error then names the
function instead. If the second staging draws nothing (another thread drew, or
the function draws only on its first call, as it would in eager mode too), the
first program stands. A global source (np.random.*, random.*) that other threads
keep drawing from (its state moves while this thread waits) cannot tell whose the
draws were: the error then says so, and how to give those threads their own. Not
seen: generators the function creates itself, and
sources whose state cannot be read (`random.SystemRandom`).
"""
import collections
import itertools
import linecache
import os
import pickle
import random
import sys
import sysconfig
import threading
import time
import types
from functools import partial
from typing import Callable

import numpy as np
import scipy

from ..errors import StagedRandomnessError

_LIBRARIES = tuple(os.path.dirname(m.__file__) + os.sep
                   for m in (sys.modules["pullback"], np, scipy)) + ("<frozen", "<pullback")
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_SITE = tuple({sysconfig.get_paths()[k] + os.sep for k in ("purelib", "platlib")})
RANDOM_TYPES = (np.random.Generator, np.random.RandomState, np.random.BitGenerator,
                random.Random)
MAX_DEPTH = 4                   # references followed from the function and its arguments
MAX_OBJECTS = 10_000            # objects looked at, at most
MAX_ITEMS = 100                 # items looked at in one container

_local = threading.local()      # .staging: this thread is inside a watched staging


JIT = ("while jit/make_ir staged the function", "the staged program would keep the numbers "
       "drawn now and return the same ones on every call. Draw them outside and pass them as "
       "an argument (the mask itself, or a key or seed to compute it from), or call the "
       "function without jit.")


def staged_without_randomness(run: Callable, f: Callable, args: tuple, context=JIT):
    """`run()`, which stages f at args, unless it draws random numbers (see the module).
    `context`: (what was staging, why that is wrong and what to do) for the message."""
    if getattr(_local, "staging", False):         # nested: the outermost staging watches
        return run()
    sources = _sources(f, args)
    before = [_state(s) for s in sources]
    _local.staging = True
    try:
        result = run()
        moved = [s for s, state in zip(sources, before) if _state(s) != state]
        if not moved:
            return result
        shared = [s for s in moved if s in _GLOBAL_SOURCES and _drawn_from_elsewhere(s)]
        if shared:
            raise StagedRandomnessError(
                f"{' and '.join(sources[s] for s in shared)} moved {context[0]}, and moves "
                "while this thread waits too: another thread draws from it, so pullback cannot "
                "tell whether the function drew. If it did: "
                f"{context[1][0].lower()}{context[1][1:]} If it draws nothing, give the other "
                "threads generators of their own (np.random.default_rng(), random.Random()), "
                "which also makes their draws reproducible.")
        location, moved = _locate(run, moved)
    finally:
        _local.staging = False
    if not moved:
        return result
    if location is None:
        code = _user_function_code(f)
        where = f"in the function staged ({code.co_filename}:{code.co_firstlineno})" if code \
            else "in the function staged"
    else:
        where = f"at {location[0]}:{location[1]}  `{linecache.getline(*location).strip()}`"
    raise StagedRandomnessError(
        f"{' and '.join(sources[s] for s in moved)} drew random numbers {context[0]}, "
        f"{where}: {context[1]}")


_GLOBAL_SOURCES = (np.random.mtrand._rand, random._inst)      # shared by every thread


def _drawn_from_elsewhere(source, waits=4, seconds=0.002) -> bool:
    """Whether a global source's state moves while this thread waits (other threads
    draw from it): then a move during staging may not be the function's."""
    state = _state(source)
    for _ in range(waits):
        time.sleep(seconds)
        if _state(source) != state:
            return True
    return False


def _user_code(filename: str) -> bool:
    """Whether a frame of this file is the user's: not pullback, NumPy, SciPy or the
    standard library (packages installed beside it are the user's)."""
    if filename.startswith(_LIBRARIES):
        return False
    return not filename.startswith(_STDLIB) or filename.startswith(_SITE)


def _state(source) -> bytes:
    """A snapshot of a random source's state, equal only for equal states."""
    if isinstance(source, np.random.Generator):
        state = source.bit_generator.state
    elif isinstance(source, np.random.RandomState):
        state = source.get_state(legacy=False)          # with its cached Gaussian
    elif isinstance(source, np.random.BitGenerator):
        state = source.state
    else:
        state = source.getstate()
    return pickle.dumps(state)


def _sources(f, args) -> dict:
    """The random sources reachable from f and its arguments, each with a description.
    Breadth first, so that an object is looked into at its shortest depth; pullback's own
    functions (the transformations wrapping the user's: `jit(hessian(m.loss))`) do not
    count towards the depth."""
    found = {np.random.mtrand._rand: "NumPy's global random state (np.random.*)",
             random._inst: "Python's random module"}
    seen, todo = set(), collections.deque([(f, "", 0), (args, "", 0)])
    while todo and len(seen) < MAX_OBJECTS:
        obj, name, depth = todo.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, RANDOM_TYPES):
            if _readable(obj):
                kind = f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}"
                found.setdefault(obj, f"`{name}` (a {kind})" if name else f"a {kind}")
        elif depth < MAX_DEPTH:
            deeper = depth + (not _ours(obj))
            try:
                todo.extend((o, n or name, deeper) for o, n in _references(obj))
            except Exception:               # noqa: BLE001 -- an odd object: look no further
                pass
    return found


def _ours(obj) -> bool:
    """Whether obj is one of pullback's functions (or a method or partial of one)."""
    obj = getattr(obj, "__func__", None) or getattr(obj, "func", None) or obj
    return isinstance(obj, types.FunctionType) and \
        (getattr(obj, "__module__", None) or "").startswith("pullback.")


def _readable(source) -> bool:
    """Whether a source's state can be read (not `random.SystemRandom`'s, say)."""
    try:
        _state(source)
        return True
    except Exception:                       # noqa: BLE001 -- then it cannot be watched
        return False


def _references(obj):
    """(object, name or "") pairs that obj refers to and that may lead to a random source."""
    if isinstance(obj, types.MethodType):
        return [(obj.__self__, ""), (obj.__func__, "")]
    if isinstance(obj, partial):
        return [(obj.func, ""), *((a, "") for a in obj.args),
                *((v, k) for k, v in obj.keywords.items())]
    if isinstance(obj, types.FunctionType):
        return _function_references(obj)
    if isinstance(obj, (tuple, list, set, frozenset)):
        return [(v, "") for v in itertools.islice(obj, MAX_ITEMS)]
    if isinstance(obj, dict):
        return [(v, k if isinstance(k, str) else "")
                for k, v in itertools.islice(obj.items(), MAX_ITEMS)]
    if obj is None or isinstance(obj, (np.ndarray, np.generic, str, bytes, int, float, complex,
                                       type, types.ModuleType, types.BuiltinFunctionType)):
        return []
    attributes = getattr(obj, "__dict__", None)
    out = [(v, k) for k, v in itertools.islice(attributes.items(), MAX_ITEMS)] \
        if isinstance(attributes, dict) else []
    return out + [(v, k) for k, v in vars(type(obj)).items()       # (a class's generator)
                  if isinstance(v, (types.FunctionType, *RANDOM_TYPES))]


def _function_references(fn):
    """A function's closure, defaults and, for the user's code, the globals it names."""
    code = fn.__code__
    out = []
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            out.append((cell.cell_contents, name))
        except ValueError:                          # an empty cell
            pass
    out += [(v, "") for v in (fn.__defaults__ or ())]
    out += [(v, k) for k, v in (fn.__kwdefaults__ or {}).items()]
    if _user_code(code.co_filename):
        names = _names(code)
        for name in names:
            value = fn.__globals__.get(name)
            out.append((value, name))
            if isinstance(value, types.ModuleType):         # module.name.normal(...)
                out += [(vars(value)[n], n) for n in names if n in vars(value)]
    return out


def _user_function_code(f):
    """The code of the user's function f is or wraps (through closures: jit's, grad's)."""
    todo, seen = [f], set()
    while todo and len(seen) < MAX_OBJECTS:
        obj = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType) and _user_code(obj.__code__.co_filename):
            return obj.__code__
        if isinstance(obj, (types.FunctionType, types.MethodType, partial)):
            todo += [o for o, _ in _references(obj)]
    return None


def _names(code) -> set:
    """The global and attribute names a code object and the code nested in it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _locate(run, sources):
    """Stage again under a tracer of the user's lines: ((file, line) of the first line
    after which a source's state moved, or None), and the sources that moved."""
    states = [_state(s) for s in sources]
    current, found = [None], []

    def moved():
        return any(_state(s) != state for s, state in zip(sources, states))

    def stop():
        found.append(current[0])
        sys.settrace(None)

    def lines(frame, event, arg):
        if found:
            return None
        if moved():
            return stop()
        if event == "line":
            current[0] = (frame.f_code.co_filename, frame.f_lineno)
        elif event == "return" and frame.f_back is not None \
                and _user_code(frame.f_back.f_code.co_filename):
            current[0] = (frame.f_back.f_code.co_filename, frame.f_back.f_lineno)
        return lines

    def calls(frame, event, arg):
        if found or not _user_code(frame.f_code.co_filename):
            return None
        return stop() if moved() else lines

    tracing = sys.gettrace() is None               # else a debugger's: leave it alone
    if tracing:
        sys.settrace(calls)
    try:
        run()
    except Exception:                              # noqa: BLE001 -- only the draws matter
        pass
    finally:
        if tracing:
            sys.settrace(None)
    return (found[0] if found else None), [s for s, state in zip(sources, states)
                                           if _state(s) != state]
