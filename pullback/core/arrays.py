"""Array helpers for every layer, and the one place where the library creates arrays.

`shape_of`, `dtype_of` and `moveaxis` work on arrays, tracers, abstract values and
Python scalars alike. Every array a rule, transformation or operator creates (zeros,
ones, identity matrices, triangles, masks, index ranges, basis vectors) comes from
the functions below, each given an operand it is made `like`: an array of the same
library as that operand (NumPy's, or through NumPy's `like=` protocol Dask's, CuPy's
...), whatever transformations wrap it. Abstract probes that only compute shapes are
NumPy's, whatever the operands.

Arrays of other libraries take part when they implement NumPy's dispatch protocols
(`__array_function__`, `__array_ufunc__`): `is_array`.
"""
import math
import numbers
import operator
import weakref

import numpy as np

from ..tree import flatten, unflatten


def shape_of(x) -> tuple:
    """Shape of an array, tracer, abstract value or Python scalar."""
    return getattr(x, "shape", ())


def dtype_of(x):
    """dtype of an array, tracer or abstract value; None for a (weakly typed) Python scalar."""
    return getattr(x, "dtype", None)


def moveaxis(x, source: int, destination: int):
    """x with axis `source` moved to `destination` (array methods: arrays or tracers)."""
    if source == destination:
        return x
    order = [i for i in range(len(x.shape)) if i != source]
    order.insert(destination, source)
    return x.transpose(order)


# ------------------------------------------------------------- capabilities
# What fast paths need of an array, asked here rather than by testing for NumPy's type.

def is_array(x) -> bool:
    """Whether x is an array pullback can compute with: NumPy's, or another library's that
    implements NumPy's dispatch protocols (Dask, CuPy ...)."""
    kind = type(x)
    return kind is np.ndarray or (hasattr(kind, "__array_function__")
                                  and hasattr(kind, "__array_ufunc__")
                                  and hasattr(x, "shape") and hasattr(x, "dtype"))


def foreign_array(x):
    """The array of another library than NumPy that x is or that a tracer x wraps, or None
    (a NumPy array, a number, or a value known only abstractly, while staged)."""
    while hasattr(x, "_trace"):                  # a tracer: look at the value it wraps
        x = getattr(x, "primal", None) if hasattr(x, "primal") else getattr(x, "value", None)
    if x is None or isinstance(x, (np.ndarray, np.generic, numbers.Number)):
        return None
    return x if is_array(x) else None


def foreign_library(values) -> str | None:
    """The name of the first other array library than NumPy among `values` ("dask", "cupy"
    ...), or None."""
    for x in values:
        base = foreign_array(x)
        if base is not None:
            return type(base).__module__.split(".")[0]
    return None


# The types of the arrays whose memory the library may write into (sums of cotangents
# accumulated in place): hot paths test `type(x) in WRITABLE_TYPES` inline.
WRITABLE_TYPES = frozenset({np.ndarray})


def writable_in_place(x) -> bool:
    """Whether x is an array whose memory the library may write into."""
    return type(x) in WRITABLE_TYPES


def of_their_own(results: list, given) -> list:
    """`results` with each array that is, or may share memory with, an array of `given` or an
    earlier result replaced by its copy: derivatives handed to the user are arrays of their
    own, so a write into one never changes another, nor the caller's seed or tangent; so are
    values and aux handed back (traced values are immutable, so `np.copy(x)` of a traced x
    is x itself inside f: handed back, it would be the caller's own array). A read-only
    result (a broadcast view: `on_distinct`'s) is copied too, to be written into.

    >>> t = np.ones(2); a, b = of_their_own([t, t], [])
    >>> a is b
    False
    """
    kept = []
    for g in given:                   # (a loop: no frame, as a comprehension costs)
        if type(g) in WRITABLE_TYPES:
            kept.append(g)
    for i, r in enumerate(results):
        if type(r) not in WRITABLE_TYPES:
            continue
        if not r.flags.writeable:
            r = results[i] = r.copy()
        for k in kept:     # (two distinct arrays each owning its memory share none: no search)
            if r is k or (r.base is not None or k.base is not None) and np.may_share_memory(r, k):
                r = results[i] = r.copy()
                break
        kept.append(r)
    return results


def tree_of_their_own(tree, given):
    """`of_their_own` of a pytree's leaves."""
    leaves, treedef = flatten(tree)
    return unflatten(treedef, of_their_own(leaves, given))


# Python's operators on NumPy's real floating-point scalars (with Python floats and ints)
# compute what NumPy's ufuncs compute, bit for bit (one IEEE operation each; only NumPy's
# warnings read "scalar divide" for "divide"), in a tenth of the time: a ufunc first makes
# 0-d arrays of them. Traces apply them to such values by the primitive's `python_operator`
# (not `**`: np.power's vectorised pow differs from the scalar one in the last bit).
SCALAR_OPERATORS = {"-{}": operator.neg, "{} + {}": operator.add, "{} - {}": operator.sub,
                    "{} * {}": operator.mul, "{} / {}": operator.truediv,
                    "{} < {}": operator.lt, "{} <= {}": operator.le, "{} > {}": operator.gt,
                    "{} >= {}": operator.ge, "{} == {}": operator.eq, "{} != {}": operator.ne}
REAL_SCALARS = frozenset({np.float64, np.float32})          # (at least one operand)
SCALAR_OPERANDS = frozenset({np.float64, np.float32, float, int})
FLOAT64 = np.dtype(np.float64)


def zero_d(number: float) -> np.ndarray:
    """A read-only 0-d float64 array of the Python float `number`, kept in `ZERO_D`: a ufunc
    takes it a third faster than the number, which it converts at every call, and computes
    the same bits with a float64 array where its operation is one correctly rounded step
    (+ - * /: the number is weakly typed, float64 there).

    >>> zero_d(0.5) * np.ones(2)
    array([0.5, 0.5])
    """
    try:
        return ZERO_D[number]
    except KeyError:
        if len(ZERO_D) >= 256:
            ZERO_D.clear()
        value = np.array(number)
        value.flags.writeable = False
        if number != 0.0:                # (0.0 and -0.0 are one key)
            ZERO_D[number] = value
        return value


ZERO_D = {}


def on_distinct(ufunc, t, *numbers_):
    """`ufunc(t, *numbers_)` of an elementwise ufunc; where t is a NumPy broadcast view (a
    stride 0: a concrete tangent broadcast against a staged value, as a jvp along
    `ones_like(x)` makes) and the other operands are numbers, computed on t's distinct
    elements and broadcast again: the same values, without an array of the broadcast shape
    (a k-means cost's jvp staged 61 MB constants of them).

    >>> on_distinct(np.multiply, np.broadcast_to(np.ones(3), (1000, 3)), 2.0).strides
    (0, 8)
    """
    if type(t) is np.ndarray and t.size > 1 and 0 in t.strides \
            and all(isinstance(n, numbers.Number) for n in numbers_):
        distinct = t[tuple(slice(0, 1) if s == 0 else slice(None) for s in t.strides)]
        return np.broadcast_to(ufunc(distinct, *numbers_), t.shape)
    return ufunc(t, *numbers_)


def runs_generated_code(x) -> bool:
    """Whether x is an array the generated NumPy code of `jit` runs on as it is."""
    return type(x) is np.ndarray


CACHE_LINE = 64          # bytes: where `aligned_copy`'s copies start


def aligned_copy(a, order="K"):
    """A copy of the ndarray `a` in `order` (as `a.copy(order)` lays it out) whose data
    starts on a multiple of CACHE_LINE bytes. A large array from malloc starts 16 bytes
    past a page boundary, so that every 64-byte load of it straddles two cache lines: the
    logistic program's matrix-vector products over a 1000 x 100 constant took 18 µs
    where it starts at such an offset, 14 µs on a cache line (OpenBLAS, AVX-512), and
    which of the two a process got decided whether its HVP beat JAX's. (`jit` copies the
    constants a program reads this way.)

    >>> aligned_copy(np.ones((2, 3)).T, order="C").flags.c_contiguous
    True
    """
    if a.dtype.hasobject:
        return a.copy(order=order)
    strides = np.empty_like(a, order=order).strides     # copy(order)'s layout, unwritten
    buffer = np.empty(a.nbytes + CACHE_LINE, np.uint8)
    copy = np.ndarray(a.shape, a.dtype, buffer, -buffer.ctypes.data % CACHE_LINE, strides)
    copy[...] = a
    return copy


# ------------------------------------------------------------------ creation
# `like` names the operand whose array library the result belongs to. dtypes go by keyword:
# Dask's functions take other arguments in NumPy's positions (its zeros drops a positional
# dtype: complex zeros came out float64).

def _like(like):
    """NumPy's `like=` keyword for an operand: only for another library's arrays."""
    base = foreign_array(like) if like is not None else None
    return {} if base is None else {"like": base}


def _shaped_like(like, shape):
    """The other library's array `like` stands for, where it has exactly `shape`: arrays of
    its shape are then made with NumPy's `*_like` functions, which keep its layout (Dask's
    chunks, so that they line up with the operand's instead of forming one huge chunk;
    CuPy's device); None otherwise."""
    base = foreign_array(like) if like is not None else None
    return base if base is not None and tuple(base.shape) == tuple(shape) else None


def zeros(shape, dtype, like=None):
    if like is None or type(like) is np.ndarray:          # NumPy's (the common case, fast)
        return np.zeros(shape, dtype=dtype)
    base = _shaped_like(like, shape)
    return (np.zeros(shape, dtype=dtype, **_like(like)) if base is None
            else np.zeros_like(base, dtype=dtype))


def empty(shape, dtype, like=None):
    if like is None or type(like) is np.ndarray:          # NumPy's (the common case, fast)
        return np.empty(shape, dtype=dtype)
    base = _shaped_like(like, shape)
    return (np.empty(shape, dtype=dtype, **_like(like)) if base is None
            else np.empty_like(base, dtype=dtype))


def ones(shape, dtype, like=None):
    if like is None or type(like) is np.ndarray:          # NumPy's (the common case, fast)
        return np.ones(shape, dtype=dtype)
    base = _shaped_like(like, shape)
    return (np.ones(shape, dtype=dtype, **_like(like)) if base is None
            else np.ones_like(base, dtype=dtype))


def full(shape, value, dtype, like=None):
    if like is None or type(like) is np.ndarray:          # NumPy's (the common case, fast)
        return np.full(shape, value, dtype=dtype)
    base = _shaped_like(like, shape)
    return (np.full(shape, value, dtype=dtype, **_like(like)) if base is None
            else np.full_like(base, value, dtype=dtype))


def eye(n: int, dtype, like=None, m: int | None = None, k: int = 0):
    """np.eye(n, m, k): ones on the k-th diagonal of an n x m matrix."""
    if not _like(like):
        return np.eye(n, m, k, dtype=dtype)
    # Dask's eye takes other keywords than NumPy's: compare index ranges instead
    columns = n if m is None else m
    return (arange(n, like)[:, None] + k == arange(columns, like)[None, :]).astype(dtype)


def tri(n: int, m: int | None = None, k: int = 0, dtype=bool, like=None):
    """Ones at and below the k-th diagonal (np.tri)."""
    return np.tri(n, m, k, dtype=dtype, **_like(like))


def arange(n: int, like=None):
    return np.arange(n, **_like(like))


_KNOWN = {}     # id -> (weak reference, name, value) of a 0-d array `known_scalar` made


def known_scalar(value, dtype, like=None):
    """A 0-d array of `value` and `dtype` like `like`: a gradient's seed (1), a number given
    as a cotangent. One made for a lazy library (Dask: its values are known only by
    computing them) remembers `value` (`known_value`), so that reverse mode folds it as
    that number, as it does NumPy's.

    >>> known_scalar(1, np.float64)
    array(1.)
    """
    scalar = full((), value, dtype, like=like)
    name = getattr(scalar, "name", None)        # Dask's: a new one on any item assignment
    if isinstance(name, str) and foreign_array(scalar) is not None:
        key = id(scalar)
        try:
            reference = weakref.ref(scalar, lambda _: _KNOWN.pop(key, None))
        except TypeError:            # a type without weak references: stays a lazy value
            return scalar
        _KNOWN[key] = (reference, name, value)
    return scalar


def known_value(x):
    """The value `known_scalar` made x with, where it made x for a lazy library and x has
    not been assigned into since; else None."""
    entry = _KNOWN.get(id(x))
    return (entry[2] if entry is not None and entry[0]() is x
            and getattr(x, "name", None) == entry[1] else None)


def in_library_of(value, like):
    """A NumPy array `value` (copied: a lazy library would keep reading the caller's buffer)
    as an array of `like`'s library, laid out like `like` where it has its shape; a 0-d one
    as a `known_scalar`.

    >>> import dask.array as da
    >>> in_library_of(np.ones(4), da.zeros(4, chunks=2)).chunks
    ((2, 2),)
    """
    value = np.asarray(value)
    if value.shape == ():
        return known_scalar(value.item(), value.dtype, like=like)
    return laid_out_like(np.asarray(value.copy(), **_like(like)), like)


def zeros_like_value(x):
    """Zeros of x's shape and dtype (a constant: never traced)."""
    return zeros(shape_of(x), dtype_of(x), like=x)


def broadcast_scalar(value, shape, dtype, like=None):
    """`value` as a read-only array of `shape` and `dtype` without a pass over memory."""
    return np.broadcast_to(np.asarray(value, dtype=dtype, **_like(like)), shape)


def pad_widths(index: tuple, shape):
    """The (before, after) widths that place an array at `index` in zeros of `shape` with
    np.pad, where `index` is slices of step one; None otherwise."""
    if len(index) > len(shape) or not all(isinstance(s, slice) for s in index):
        return None
    widths = []
    for s, n in zip(index + (slice(None),) * (len(shape) - len(index)), shape):
        start, stop, step = s.indices(n)
        if step != 1:
            return None
        widths.append((start, n - max(start, stop)))
    return widths


def add_at(buffer, index: tuple, values):
    """`buffer` with `values` added at `index`, repeated indices accumulating (np.add.at, in
    place where the library can). A library without `ufunc.at` (Dask), or an index of a
    library's arrays, gets the sums by `bincount` over the flat positions the index
    selects (in that library), added to a new array.

    >>> import dask.array as da
    >>> add_at(da.zeros(3, chunks=2), (np.array([0, 0, 2]),), da.ones(3, chunks=2)).compute()
    array([2., 0., 1.])
    """
    library_index = [i for i in index if foreign_array(i) is not None]  # (NumPy's add.at
    if not library_index:                                               # would compute them)
        try:
            np.add.at(buffer, index, values)
            return buffer
        except TypeError:
            if foreign_array(buffer) is None and foreign_array(values) is None:
                raise
    size = math.prod(buffer.shape)
    positions = np.arange(size, **(_like(library_index[0]) if library_index else {}))
    positions = positions.reshape(buffer.shape)[index]
    values = np.broadcast_to(values, positions.shape)
    if library_index:
        values = laid_out_like(values if foreign_array(values) is not None
                               else in_library_of(values, positions), positions)
    else:
        positions = in_library_of(positions, values)
    positions, values = positions.ravel(), values.ravel()

    def summed(weights):
        return np.bincount(positions, weights=weights, minlength=size)
    sums = (summed(values.real) + 1j * summed(values.imag) if values.dtype.kind == "c"
            else summed(values))
    return buffer + laid_out_like(sums.reshape(buffer.shape).astype(buffer.dtype), buffer)


def without_new_axes(values, index: tuple, shape):
    """(values, index) for assigning `values` (broadcast to the shape `index` selects) at
    `index` into an array of `shape`, with the index's Ellipsis spelled out and its new
    axes (None) dropped, with the axes of length one they give `values`: Dask assigns at
    such plain indices only. Unchanged where the index holds arrays or neither.

    >>> v, i = without_new_axes(np.ones((2, 1)), (Ellipsis, None), (2,))
    >>> v.shape, i
    ((2,), (slice(None, None, None),))
    """
    if not any(i is None or i is Ellipsis for i in index) \
            or not all(i is None or i is Ellipsis or isinstance(i, (slice, int)) for i in index):
        return values, index
    indexed = sum(i is not None and i is not Ellipsis for i in index)
    expanded = []
    for i in index:
        expanded += [slice(None)] * (len(shape) - indexed) if i is Ellipsis else [i]
    selected, kept, dim = [], [], 0
    for i in expanded:
        if i is None:
            selected.append(1)
            continue
        if isinstance(i, slice):
            selected.append(len(range(*i.indices(shape[dim]))))
            kept.append(len(selected) - 1)
        dim += 1
    rest = list(range(len(selected), len(selected) + len(shape) - dim))
    values = np.broadcast_to(values, tuple(selected) + tuple(shape[dim:]))
    values = values.reshape(tuple(values.shape[k] for k in kept + rest))
    return values, tuple(i for i in expanded if i is not None)


def padded_embedding(values, index: tuple, shape, like=None):
    """`values` placed at `index` in zeros of `shape`, built with np.pad, for arrays of
    another library where `index` is slices of step one (item assignment into a lazy Dask
    array costs a pass over every chunk and keeps them all alive), laid out like `like`
    (`laid_out_like`); None otherwise."""
    if foreign_array(values) is None:
        return None
    values, index = without_new_axes(values, index, shape)
    widths = pad_widths(index, shape)
    if widths is None:
        return None
    region = tuple(n - before - after for n, (before, after) in zip(shape, widths))
    return laid_out_like(np.pad(np.broadcast_to(values, region), widths), like)


def laid_out_like(array, like):
    """`array` in the pieces `like` (an array of the same shape) is laid out in, where its
    library lays arrays out in pieces (Dask's chunks): elementwise arithmetic between them
    then pairs piece with piece, instead of splitting both at the union of their
    boundaries; `array` unchanged otherwise.

    >>> import dask.array as da
    >>> laid_out_like(da.ones(4, chunks=1), da.zeros(4, chunks=2)).chunks
    ((2, 2),)
    """
    base = _shaped_like(like, shape_of(array)) if like is not None else None
    chunks = getattr(base, "chunks", None)
    if chunks is None or getattr(array, "chunks", chunks) == chunks:
        return array
    return array.rechunk(chunks)
