"""Helpers shared by the numpy namespace: argument normalisation in NumPy's terms, and
the fast path that hands calls with nothing traced to NumPy itself."""
import functools
import inspect
import numbers
import os

import numpy as np

from ..core.engine import Tracer
from ..core.numbers import complex_error
from ..errors import InPlaceMutationError, unsupported

# What primitives take as it is, besides plain ndarrays (`type(x) is np.ndarray`).
SCALARS = (int, float, complex, bool, np.generic, Tracer)


def ndim(a) -> int:
    """`np.ndim`."""
    s = getattr(a, "shape", None)
    return len(s) if s is not None else np.ndim(a)


def normalize_axis(axis, n: int) -> int:
    """One axis in [0, n), from NumPy's possibly negative form."""
    if isinstance(axis, Tracer) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -n <= axis < n:
        raise np.exceptions.AxisError(axis, n)
    return int(axis) % n if n else 0


def normalize_axes(axis, n: int) -> tuple:
    """A sorted tuple of axes in [0, n); `None` means all of them."""
    if axis is None:
        return tuple(range(n))
    if isinstance(axis, (tuple, list)):
        axes = tuple(sorted(normalize_axis(a, n) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in {axis!r}")
        return axes
    return (normalize_axis(axis, n),)


def refuse_out(name, out):
    if out is not None:
        raise InPlaceMutationError(
            f"`{name}(..., out=...)` writes into an existing array in place, which pullback "
            "cannot differentiate. Drop `out=` and use the returned array.")


def refuse(name, **given):
    """Reject NumPy keyword options that pullback does not implement (when set)."""
    for key, value in given.items():
        if key == "out":
            refuse_out(name, value)
        elif value is not None and value is not np._NoValue:
            raise unsupported(f"{name}", f"the option {key}={value!r} is not supported")


# Argument types that hold no traced value: numbers, plain arrays, dtypes and the like.
# (Subclasses of ndarray are not among them: masked arrays and np.matrix are refused.)
UNTRACED = frozenset({np.ndarray, bool, int, float, complex, str, type(None), type(Ellipsis),
                      slice, type, *np.sctypeDict.values(),
                      *(type(np.dtype(t)) for t in set(np.sctypeDict.values()))})


def refuse_complex_values(name, *values):
    """Raise `ComplexValueError` if a value is complex: `np.<name>` is written for real
    values, and its result for complex ones would differ from NumPy's."""
    for v in values:
        if v is not None and np.dtype(getattr(v, "dtype", type(v))).kind == "c":
            raise complex_error(f"np.{name} of complex values")


def untraced(values) -> bool:
    """Whether `values` (and the lists and tuples among them) hold only `UNTRACED` ones."""
    for a in values:
        kind = type(a)
        if kind not in UNTRACED and not ((kind is list or kind is tuple) and untraced(a)):
            return False
    return True


MISSING = object()      # the default of every parameter of a fast path: not given
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def numpy_when_untraced(numpy_function, fn):
    """`fn`, which calls NumPy's implementation of `numpy_function` itself (no pullback
    layer: NumPy's speed and semantics) when no argument is traced; otherwise `fn` answers.

    The wrapper is generated with `numpy_function`'s own signature (so no packing of
    `*args` on the hot path; a ufunc's keywords, many and rare, are collected in one dict,
    cheaper than as many keyword-only parameters), each default replaced by `MISSING` so
    that only the arguments given are passed on; see `fast_path_source`. NumPy's implementation is
    what its `__array_function__` dispatch picks when only plain arrays and scalars are
    given (`_implementation`), so the dispatch is skipped too.

    >>> import numpy as np
    >>> exp = numpy_when_untraced(np.exp, lambda x: "pullback's")
    >>> exp([0.0, 0.0]), exp(range(2))
    (array([1., 1.]), "pullback's")
    """
    try:
        signature = inspect.signature(numpy_function)
    except (TypeError, ValueError):     # no signature to check calls against: no fast path
        return fn
    parameters = list(signature.parameters.values())
    if isinstance(numpy_function, np.ufunc):    # outputs also by position; keywords: one check
        parameters = parameters[:numpy_function.nin] + [
            inspect.Parameter("outputs", inspect.Parameter.VAR_POSITIONAL),
            inspect.Parameter("keywords", inspect.Parameter.VAR_KEYWORD)]
    own = inspect.signature(fn).parameters
    for k, p in enumerate(parameters):
        if p.kind is p.POSITIONAL_ONLY:         # pullback's functions take them by name too
            parameters[k] = p = p.replace(kind=p.POSITIONAL_OR_KEYWORD)
        if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and (
                k and parameters[k - 1].default is not p.empty
                or p.name in own and own[p.name].default is not p.empty):
            parameters[k] = p.replace(default=None)   # optional in pullback's (`reshape`)
    names = {p.name for p in parameters}
    extra = [p.replace(default=None) for p in own.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in names]
    if extra:       # pullback's own keywords (e.g. NumPy's removed `newshape`): keep them
        at = next((k for k, p in enumerate(parameters)
                   if p.kind is inspect.Parameter.VAR_KEYWORD), len(parameters))
        parameters[at:at] = extra
    if any(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty
           for p in parameters):
        return fn   # a required keyword: none of NumPy's functions; no fast path written
    spec = _Spec(getattr(numpy_function, "_implementation", numpy_function), fn, parameters,
                 {p.name for p in signature.parameters.values() if p.kind is not p.VAR_POSITIONAL}
                 if not any(p.kind is p.VAR_KEYWORD for p in parameters) else None)
    endpoint, arity = ARRAY_ENDPOINTS.get(numpy_function, (None, 0))
    defaults = {k: p.default for k, p in enumerate(signature.parameters.values())
                if 0 < k < arity and p.default is not p.empty}
    ending = [k for k in range(1, arity + 1) if set(range(k, arity)) <= defaults.keys()]
    scope = {"_spec": spec, "_impl": spec.implementation, "_general": _general, "_M": MISSING,
             "_U": UNTRACED, "_SEQUENCES": (list, tuple), "_untraced": untraced,
             "_nd": np.ndarray, "_end": endpoint, "_item": None, "_T": Tracer, "_fn": fn,
             **{f"_d{k}": d for k, d in defaults.items()}}
    if {p.name for p in parameters} & {"type", *scope}:     # would hide what the code calls
        return fn
    name = fn.__name__ if fn.__name__.isidentifier() else "wrapper"
    where = os.path.join(os.path.dirname(__file__), f"<fast path of {name}>")   # the library's
    # NumPy's own ufuncs: a tracer's dispatch binds them as pullback's wrapper would
    # (SciPy's convert dtypes first, in their wrappers)
    ufunc = isinstance(numpy_function, np.ufunc) and getattr(
        np, numpy_function.__name__, None) is numpy_function
    exec(compile(fast_path_source(name, parameters, ending, ufunc), where, "exec"), scope)
    return functools.update_wrapper(scope[name], fn)


# NumPy functions whose implementation, given a plain ndarray first and at most `arity`
# arguments by position (the rest NumPy's defaults), ends in one call of `endpoint` with
# those arguments in that order (through `_wrapfunc`, `_wrapreduction`, `asanyarray(a).f`
# or ndarray's methods), NumPy's own Python layers between being skipped: np.reshape(a, s)
# is a.reshape(s), np.sum(a) is np.add.reduce(a, None).
ARRAY_ENDPOINTS = {
    np.reshape: (np.ndarray.reshape, 2), np.transpose: (np.ndarray.transpose, 2),
    np.swapaxes: (np.ndarray.swapaxes, 3), np.ravel: (np.ndarray.ravel, 2),
    np.squeeze: (np.ndarray.squeeze, 1), np.diagonal: (np.ndarray.diagonal, 4),
    np.trace: (np.ndarray.trace, 4), np.take: (np.ndarray.take, 2),
    np.repeat: (np.ndarray.repeat, 3), np.nonzero: (np.ndarray.nonzero, 1),
    np.argsort: (np.ndarray.argsort, 2), np.argmax: (np.ndarray.argmax, 2),
    np.argmin: (np.ndarray.argmin, 2), np.cumsum: (np.ndarray.cumsum, 2),
    np.cumprod: (np.ndarray.cumprod, 2), np.mean: (np.ndarray.mean, 2),
    np.var: (np.ndarray.var, 2), np.std: (np.ndarray.std, 2),
    np.sum: (np.add.reduce, 2), np.prod: (np.multiply.reduce, 2),
    np.max: (np.maximum.reduce, 2), np.amax: (np.maximum.reduce, 2),
    np.min: (np.minimum.reduce, 2), np.amin: (np.minimum.reduce, 2)}


class _Spec:
    """What the general path of a generated wrapper needs (see `_general`)."""

    def __init__(self, implementation, fn, parameters, numpy_keywords):
        self.implementation, self.fn, self.numpy_keywords = implementation, fn, numpy_keywords
        self.positional = [p.name for p in parameters if p.kind in _POSITIONAL]


def _general(spec, leading, keywords, more, extra):
    """A call that is not the fast path's: the leading positional arguments given stay
    positional, the later ones were given by keyword; NumPy answers if nothing is traced
    and it takes every keyword given, else pullback's function."""
    n = next((k for k, v in enumerate(leading) if v is MISSING), len(leading))
    args = leading[:n] + more
    kwargs = {name: v for name, v in zip(spec.positional[n:], leading[n:]) if v is not MISSING}
    kwargs.update((name, v) for name, v in keywords.items() if v is not MISSING)
    kwargs.update(extra)
    if untraced(args) and untraced(kwargs.values()) and (
            spec.numpy_keywords is None or kwargs.keys() <= spec.numpy_keywords):
        return spec.implementation(*args, **kwargs)
    return spec.fn(*args, **kwargs)


def _check(name: str) -> str:
    """An expression: the argument `name` holds nothing traced (a plain array tested first)."""
    return (f"(type({name}) is _nd or type({name}) in _U "
            f"or type({name}) in _SEQUENCES and _untraced({name}))")


def _first_check(name: str, general: str, traced: list, holding: list) -> list:
    """Statements: `general` unless the argument `name` is untraced, a list or tuple of
    arrays or numbers scanned inline (cheaper than `_check`'s call; a nested sequence
    leaves to `general`, which scans it whole); first the statements `traced` for a
    tracer, `holding` for a list or tuple holding one."""
    return [f"if type({name}) is not _nd and type({name}) not in _U:",
            f"    if type({name}) not in _SEQUENCES:",
            f"        if isinstance({name}, _T):",
            *[f"            {line}" for line in traced],
            f"        {general}",
            f"    for _item in {name}:",
            f"        if type(_item) is not _nd and type(_item) not in _U:",
            f"            if isinstance(_item, _T):",
            *[f"                {line}" for line in holding],
            f"            {general}"]


def _tuple(items) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def fast_path_source(name: str, parameters: list, ending=(), ufunc=False) -> str:
    """The source of a wrapper `def name(...)` with `parameters` (each default `_M`).
    Its fast path is a call whose positional parameters are given up to some point and
    not after it, with no keyword-only or variadic keyword argument and no variadic
    positional one after named ones (a variadic alone is the input): if nothing is traced
    (`_first_check`, `_check`), NumPy's `_impl` gets exactly those arguments, or, where
    their number is in `ending` and the first is a plain ndarray, NumPy's endpoint `_end`
    gets them and NumPy's defaults of the next ones (`_d1`, ...: see `ARRAY_ENDPOINTS`) up
    to the endpoint's arity, the largest of `ending`. Where the first argument is a tracer
    or a list holding one, or a later argument is not a plain value (a tracer, or anything
    else `_general` would also hand to pullback), the same calls go to pullback's function
    `_fn` (for a `ufunc` with a tracer first: the ufunc itself, whose dispatch reaches the
    tracer's `__array_ufunc__`, as NumPy code on tracers does). Any other call goes to
    `_general`.

    >>> import inspect
    >>> print(fast_path_source("f", list(inspect.signature(lambda a, b=1: 0).parameters.values()), [1, 2]))
    def f(a, b=_M):
        if type(a) is not _nd and type(a) not in _U:
            if type(a) not in _SEQUENCES:
                if isinstance(a, _T):
                    if b is _M:
                        return _fn(a)
                    else:
                        return _fn(a, b)
                return _general(_spec, (a, b), {}, (), {})
            for _item in a:
                if type(_item) is not _nd and type(_item) not in _U:
                    if isinstance(_item, _T):
                        if b is _M:
                            return _fn(a)
                        else:
                            return _fn(a, b)
                    return _general(_spec, (a, b), {}, (), {})
        if b is _M:
            return _end(a, _d1) if type(a) is _nd else _impl(a)
        else:
            if (type(b) is _nd or type(b) in _U or type(b) in _SEQUENCES and _untraced(b)):
                return _end(a, b) if type(a) is _nd else _impl(a, b)
            return _fn(a, b)
        return _general(_spec, (a, b), {}, (), {})
    <BLANKLINE>
    """
    P = inspect.Parameter
    names = [p.name for p in parameters if p.kind in _POSITIONAL]
    required = sum(p.default is p.empty for p in parameters if p.kind in _POSITIONAL)
    keyword_only = [p.name for p in parameters if p.kind is P.KEYWORD_ONLY]
    variadic = next((p.name for p in parameters if p.kind is P.VAR_POSITIONAL), None)
    var_keyword = next((p.name for p in parameters if p.kind is P.VAR_KEYWORD), None)
    keywords = ", ".join(f"{k!r}: {k}" for k in keyword_only)
    general = (f"return _general(_spec, {_tuple(names)}, {{{keywords}}}, "
               f"{variadic or '()'}, {var_keyword or '{}'})")
    guard = [f"{k} is _M" for k in keyword_only] + ([f"not {var_keyword}"] if var_keyword else [])
    if variadic and names:      # extra arguments (a ufunc's outputs): the general path's
        guard.insert(0, f"not {variadic}")
    def branches(plain, traced):
        """Statements for each call whose names[:k] are given, names[k:] not: `plain`'s call
        if nothing after the first argument is traced (None: no check), else `traced`'s."""
        body = []
        for k in range(required, len(names) + 1):
            given = names[:k]
            checks = [_check(v) for v in names[1 if required else 0:k]]
            if variadic and not names:
                given, checks = given + [f"*{variadic}"], checks + [
                    f"(not {variadic} or _untraced({variadic}))"]
            calls = [f"return {traced(given)}"]
            if plain and checks:
                calls[:0] = [f"if {' and '.join(checks)}:", f"    return {plain(given, k)}"]
            elif plain:
                calls = [f"return {plain(given, k)}"]
            missing = " and ".join(f"{v} is _M" for v in names[k + 1:])
            if k < len(names):
                body.append(f"{'if' if k == required else 'elif'} {names[k]} is _M:")
                body += [f"    if {missing}:"] * bool(missing)
                body += [("        " if missing else "    ") + line for line in calls]
            elif k > required:
                body += ["else:"] + ["    " + line for line in calls]
            else:
                body += calls
        return body

    def plain(given, k):
        call = f"_impl({', '.join(given)})"
        if k in ending:
            arguments = ", ".join(given + [f"_d{j}" for j in range(k, max(ending))])
            call = f"_end({arguments}) if type({names[0]}) is _nd else {call}"
        return call

    def by(function):
        return lambda given: f"{function}({', '.join(given)})"

    body = _first_check(names[0], general, branches(None, by("_impl" if ufunc else "_fn")),
                        branches(None, by("_fn"))) if required else []
    body += branches(plain, by("_fn"))
    lines = [f"def {name}({_header(parameters)}):"]
    if guard:
        lines.append(f"    if {' and '.join(guard)}:")
        body = ["    " + line for line in body]
    lines += ["    " + line for line in body] + [f"    {general}"]
    return "\n".join(lines) + "\n"


def _header(parameters) -> str:
    """The parameter list, defaults `_M`, with the `/` and `*` markers where kinds change."""
    P = inspect.Parameter
    out, previous = [], None
    for p in parameters:
        if previous is P.POSITIONAL_ONLY and p.kind is not P.POSITIONAL_ONLY:
            out.append("/")
        if p.kind is P.KEYWORD_ONLY and previous not in (P.KEYWORD_ONLY, P.VAR_POSITIONAL):
            out.append("*")
        prefix = {P.VAR_POSITIONAL: "*", P.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name + ("" if p.default is p.empty else "=_M"))
        previous = p.kind
    if previous is P.POSITIONAL_ONLY:
        out.append("/")
    return ", ".join(out)
