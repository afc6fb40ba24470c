"""Shape, joining, indexing and creation functions with NumPy's signatures.

Primitives: reshape, transpose, broadcast_to, concatenate, pad (constant), getitem and the
two scatters. Everything else here (stack, split, flip, roll, tile, diag, sort, take, ...)
is a composite of those.
"""
import builtins
import math
import numbers

import numpy as np

from ..core.arrays import foreign_array, is_array
from ..core.engine import Tracer
from ..errors import (ArrayConversionError, ConcretizationError, InPlaceMutationError,
                      UnsupportedFunctionError, unsupported)
from ..primitives import elementwise as E
from ..primitives import reductions as R
from ..primitives import structural as S
from ..primitives.reductions import argsort as _argsort
from ..core.boundary import REFUSED_ARRAY_TYPES, refused_array_type
from ._common import SCALARS, ndim, normalize_axes, normalize_axis, refuse

# ------------------------------------------------------------------ operands


def operand(x):
    """An argument as the primitives take it: arrays, tracers and Python scalars pass as they
    are, masked arrays and np.matrix are refused, anything else goes through asarray."""
    if type(x) is np.ndarray or isinstance(x, SCALARS):
        return x
    if isinstance(x, REFUSED_ARRAY_TYPES):
        raise refused_array_type(x, "an operand of a traced computation",
                                 UnsupportedFunctionError)
    if isinstance(x, np.ndarray) or is_array(x):   # subclasses (memmap ...), Dask, CuPy ...
        return x
    return asarray(x)


def array_operand(x):
    """`operand(x)`, with a Python number as a 0-d array (for code that reads its shape)."""
    x = operand(x)
    return x if hasattr(x, "shape") else np.asarray(x)


def as_floating(x, dtype=None):
    """x as `dtype`, or (without one) with integers and booleans as float64, as NumPy's
    numerical routines take them."""
    x = array_operand(x)
    if dtype is not None:
        return astype(x, dtype)
    return astype(x, np.float64) if np.dtype(x.dtype).kind in "biu" else x


def astype(x, dtype, copy=True):
    """`x.astype(dtype)`: a floating-point cast (real or complex) keeps the derivative, a
    complex value cast to a real dtype keeps its real part; casting to int/bool drops it.
    Other dtypes (object, strings, dates) of a traced value are refused: their values
    would carry no derivative, silently."""
    dtype = np.dtype(dtype)
    x = operand(x)
    if getattr(x, "dtype", None) == dtype and hasattr(x, "dtype"):   # (dtype == None: float64)
        return x
    if dtype.kind not in "biufc" and isinstance(x, Tracer):
        raise ArrayConversionError(
            f"a traced value cast to {dtype} (`astype`) would lose its derivative: values of "
            "that dtype carry none. Keep it a number array; convert a value to text or "
            "objects outside the differentiated function.")
    if dtype.kind not in "fc":
        x = S.stop_gradient(x)
    if not isinstance(x, Tracer):
        return np.asarray(x).astype(dtype)
    return S.convert(x, dtype=dtype)


# ---------------------------------------------------------------- reshaping


def shape(a):
    """`np.shape`."""
    return tuple(getattr(operand(a), "shape", ()))


def iscomplexobj(x) -> bool:
    """`np.iscomplexobj`: whether x's dtype is complex (a fact of its type, no value read)."""
    return np.dtype(getattr(x, "dtype", None) or np.asarray(x).dtype).kind == "c"


def isrealobj(x) -> bool:
    """`np.isrealobj`: not `iscomplexobj`."""
    return not iscomplexobj(x)


def result_type(*arrays_and_dtypes):
    """`np.result_type`, reading the dtypes of traced values (Python numbers stay weak)."""
    return np.result_type(*(getattr(a, "dtype", a) if isinstance(a, Tracer) else a
                            for a in arrays_and_dtypes))


def size(a, axis=None):
    """`np.size`."""
    s = shape(a)
    return math.prod(s) if axis is None else s[axis]


def _resolve_shape(new_shape, total):
    if isinstance(new_shape, numbers.Integral):
        new_shape = (new_shape,)
    new_shape = tuple(map(int, new_shape))
    if new_shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in new_shape:
        known = math.prod(n for n in new_shape if n != -1)
        if not known:           # any length fits beside a zero: NumPy refuses to guess
            raise ValueError(f"cannot reshape array of size {total} into shape "
                             f"{new_shape} (the -1 is ambiguous beside a zero)")
        new_shape = tuple(total // known if n == -1 else n for n in new_shape)
    if math.prod(new_shape) != total:
        raise ValueError(f"cannot reshape array of size {total} into shape {new_shape}")
    return new_shape


def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    """`np.reshape` (C order)."""
    if order != "C":
        raise unsupported("reshape", f"order={order!r}; only C order is supported")
    x = array_operand(a)
    target = _resolve_shape(shape if shape is not None else newshape, math.prod(x.shape))
    return x if target == tuple(x.shape) else S.reshape(x, shape=target)


def ravel(a, order="C"):
    """`np.ravel`."""
    return reshape(a, (-1,), order)


def transpose(a, axes=None):
    """`np.transpose`."""
    x = operand(a)
    n = ndim(x)
    perm = tuple(range(n - 1, -1, -1)) if axes is None else tuple(normalize_axis(i, n) for i in axes)
    return x if perm == tuple(range(n)) else S.transpose(x, axes=perm)


def swapaxes(a, axis1, axis2):
    """`np.swapaxes`."""
    x = operand(a)
    perm = list(range(ndim(x)))
    i, j = normalize_axis(axis1, len(perm)), normalize_axis(axis2, len(perm))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(x, perm)


def moveaxis(a, source, destination):
    """`np.moveaxis`."""
    x = operand(a)
    n = ndim(x)
    source = [normalize_axis(s, n) for s in np.atleast_1d(source).tolist()]
    destination = [normalize_axis(d, n) for d in np.atleast_1d(destination).tolist()]
    order = [i for i in range(n) if i not in source]
    for d, s in sorted(zip(destination, source)):
        order.insert(d, s)
    return transpose(x, order)


def expand_dims(a, axis):
    """`np.expand_dims`."""
    x = operand(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    n = ndim(x) + len(axes)
    axes = {normalize_axis(i, n) for i in axes}
    it = iter(shape(x))
    return reshape(x, tuple(1 if i in axes else next(it) for i in range(n)))


def squeeze(a, axis=None):
    """`np.squeeze`."""
    x = operand(a)
    s = shape(x)
    axes = [i for i, d in enumerate(s) if d == 1] if axis is None else normalize_axes(axis, len(s))
    for i in axes:
        if s[i] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(x, tuple(d for i, d in enumerate(s) if i not in axes))


def broadcast_to(array, shape, subok=False):
    """`np.broadcast_to`."""
    x = operand(array)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    return x if tuple(getattr(x, "shape", ())) == shape else S.broadcast_to(x, shape=shape)


def broadcast_arrays(*args, subok=False):
    """`np.broadcast_arrays`."""
    xs = [operand(a) for a in args]
    target = np.broadcast_shapes(*(shape(x) for x in xs))
    return tuple(broadcast_to(x, target) for x in xs)


def _atleast(n):
    def fn(*arys):
        out = []
        for a in arys:
            x = operand(a)
            s = shape(x)
            if len(s) < n:
                s = ((1,) * (n - len(s)) + s if n < 3 else
                     {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}[len(s)])
                x = reshape(x, s)
            out.append(x)
        return out[0] if len(out) == 1 else tuple(out)
    fn.__name__ = fn.__qualname__ = f"atleast_{n}d"
    fn.__doc__ = f"`np.atleast_{n}d`."
    return fn


atleast_1d, atleast_2d, atleast_3d = _atleast(1), _atleast(2), _atleast(3)

# ------------------------------------------------------------------ joining


def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    """`np.concatenate`."""
    refuse("concatenate", out=out)
    xs = [operand(a) for a in arrays]
    if axis is None:
        xs, axis = [ravel(x) for x in xs], 0
    if dtype is not None:
        xs = [astype(x, dtype) for x in xs]
    if not xs:
        raise ValueError("need at least one array to concatenate")
    return S.concatenate(*xs, axis=normalize_axis(axis, ndim(xs[0])))


def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """`np.stack`."""
    xs = [operand(a) for a in arrays]
    if not xs:
        raise ValueError("need at least one array to stack")
    axis = normalize_axis(axis, ndim(xs[0]) + 1)
    return concatenate([expand_dims(x, axis) for x in xs], axis, out, dtype)


def hstack(tup, *, dtype=None, casting="same_kind"):
    """`np.hstack`."""
    xs = atleast_1d(*tup) if len(tup) > 1 else [atleast_1d(*tup)]
    return concatenate(xs, 0 if ndim(xs[0]) == 1 else 1, dtype=dtype)


def vstack(tup, *, dtype=None, casting="same_kind"):
    """`np.vstack`."""
    xs = atleast_2d(*tup) if len(tup) > 1 else [atleast_2d(*tup)]
    return concatenate(xs, 0, dtype=dtype)


def column_stack(tup):
    """`np.column_stack`."""
    xs = [operand(a) for a in tup]
    return concatenate([reshape(x, (-1, 1)) if ndim(x) < 2 else x for x in xs], 1)


def slice_along(x, axis, start, stop, step=None):
    """`x[..., start:stop:step, ...]` with the slice at position `axis`."""
    index = (S.Slice(None, None, None),) * axis + (S.Slice(start, stop, step),)
    return S.getitem(x, index=index)


def array_split(ary, indices_or_sections, axis=0):
    """`np.array_split`."""
    x = operand(ary)
    axis = normalize_axis(axis, ndim(x))
    n = shape(x)[axis]
    if isinstance(indices_or_sections, numbers.Integral):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        each, extra = divmod(n, sections)
        sizes = [each + 1] * extra + [each] * (sections - extra)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    # Python slicing, as NumPy does: negative indices count from the end, a decreasing
    # pair gives an empty piece.
    return [slice_along(x, axis, start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def split(ary, indices_or_sections, axis=0):
    """`np.split`."""
    if isinstance(indices_or_sections, numbers.Integral):
        n = shape(ary)[normalize_axis(axis, ndim(operand(ary)))]
        if n % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
    return array_split(ary, indices_or_sections, axis)


# -------------------------------------------------------- reordering, copies


def flip(m, axis=None):
    """`np.flip`."""
    x = operand(m)
    axes = normalize_axes(axis, ndim(x))
    index = tuple(S.Slice(None, None, -1) if i in axes else S.Slice(None, None, None)
                  for i in range(ndim(x)))
    return S.getitem(x, index=index) if axes else x


def fliplr(m):
    """`np.fliplr`."""
    return flip(m, 1)


def flipud(m):
    """`np.flipud`."""
    return flip(m, 0)


def roll(a, shift, axis=None):
    """`np.roll`."""
    x = operand(a)
    if axis is None:
        return reshape(roll(ravel(x), shift, 0), shape(x))
    shifts, axes = np.broadcast_arrays(shift, axis)
    for s, ax in zip(shifts.ravel().tolist(), axes.ravel().tolist()):
        ax = normalize_axis(ax, ndim(x))
        n = shape(x)[ax]
        s = int(s) % n if n else 0
        if s:
            x = S.concatenate(slice_along(x, ax, n - s, None), slice_along(x, ax, None, n - s),
                              axis=ax)
    return x


def tile(A, reps):
    """`np.tile`."""
    x = operand(A)
    reps = (reps,) if isinstance(reps, numbers.Integral) else tuple(reps)
    n = builtins.max(len(reps), ndim(x))
    reps = (1,) * (n - len(reps)) + reps
    s = (1,) * (n - ndim(x)) + shape(x)
    interleaved = reshape(x, tuple(d for k in s for d in (1, k)))
    tiled = broadcast_to(interleaved, tuple(d for r, k in zip(reps, s) for d in (r, k)))
    return reshape(tiled, tuple(r * k for r, k in zip(reps, s)))


def repeat(a, repeats, axis=None):
    """`np.repeat`."""
    x = operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    axis = normalize_axis(axis, ndim(x))
    n = shape(x)[axis]
    indices = np.repeat(np.arange(n), repeats)
    return take(x, indices, axis)


def pad_constant(array, pad_width, constant_value=0.0):
    """`np.pad(array, pad_width)` with one constant (the pad primitive); `np.pad` itself,
    in every mode, is in _building."""
    x = operand(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (ndim(x), 2)).tolist()
    number = complex if np.iscomplexobj(constant_value) else float     # (a parameter: hashable)
    return S.pad(x, pad_width=tuple(map(tuple, widths)), constant_value=number(constant_value))


def copy(a, order="K", subok=False):
    """`np.copy`: traced arrays are immutable, so the value itself."""
    x = operand(a)
    return x if isinstance(x, Tracer) else np.copy(x)


def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """`np.sort`: a gather by the (constant) sorting permutation."""
    refuse("sort", order=order)
    x = operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    axis = normalize_axis(axis, ndim(x))
    return take_along_axis(x, _argsort(S.stop_gradient(x), axis=axis), axis)


def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """`np.argsort` (integer result)."""
    refuse("argsort", order=order)
    x = operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    return _argsort(x, axis=normalize_axis(axis, ndim(x)))


def _kth(kth, n):
    """partition's `kth` as a sorted tuple of non-negative ints."""
    if isinstance(kth, Tracer):
        raise unsupported("partition", "kth must be a constant integer or sequence of them")
    positions = sorted({int(k) + n if int(k) < 0 else int(k) for k in np.atleast_1d(kth)})
    for k in positions:
        if not 0 <= k < n:
            raise ValueError(f"kth(={k}) out of bounds ({n})")
    return tuple(positions)


def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """`np.argpartition` (integer result, NumPy's own permutation)."""
    refuse("argpartition", order=order)
    x = operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    axis = normalize_axis(axis, ndim(x))
    return R.argpartition(x, kth=_kth(kth, shape(x)[axis]), axis=axis)


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """`np.partition`: a gather by NumPy's partitioning permutation (the same values as
    NumPy's, in the same places)."""
    x = operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    return take_along_axis(x, argpartition(S.stop_gradient(x), kth, axis, kind, order), axis)


def searchsorted(a, v, side="left", sorter=None):
    """`np.searchsorted` (integer result, no derivative)."""
    x = operand(a)
    if sorter is not None:
        x = take(x, sorter)
    if ndim(x) != 1:
        raise ValueError("object too deep for desired array")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right' (got {side!r})")
    return R.searchsorted(x, operand(v), side=side)


# ----------------------------------------------------------------- diagonals


def diagonal(a, offset=0, axis1=0, axis2=1):
    """`np.diagonal` (the diagonal becomes the last axis)."""
    x = operand(a)
    n = ndim(x)
    axis1, axis2 = normalize_axis(axis1, n), normalize_axis(axis2, n)
    x = moveaxis(x, (axis1, axis2), (-2, -1))
    rows, cols = shape(x)[-2:]
    i = np.arange(builtins.max(0, builtins.min(rows + builtins.min(offset, 0),
                                               cols - builtins.max(offset, 0))))
    r, c = i - builtins.min(offset, 0), i + builtins.max(offset, 0)
    return getitem(x, (Ellipsis, r, c))


def diag(v, k=0):
    """`np.diag`: the k-th diagonal of a matrix, or a matrix with v on its k-th diagonal."""
    x = operand(v)
    if ndim(x) == 2:
        return diagonal(x, k)
    if ndim(x) != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = shape(x)[0] + abs(k)
    i = np.arange(shape(x)[0])
    rows, cols = i + builtins.max(-k, 0), i + builtins.max(k, 0)
    return at(np.zeros((n, n), x.dtype))[rows, cols].set(x)


def _tri_mask(x, k, lower):
    rows, cols = (shape(x) * 2)[-2:]                  # (a vector: as its own row, n x n)
    mask = np.tri(rows, cols, k=k if lower else k - 1, dtype=bool)
    return mask if lower else ~mask


def tril(m, k=0):
    """`np.tril`."""
    x = operand(m)
    return E.where(_tri_mask(x, k, True), x, 0)


def triu(m, k=0):
    """`np.triu`."""
    x = operand(m)
    return E.where(_tri_mask(x, k, False), x, 0)


# ------------------------------------------------------------------ indexing


def _index_template(index, shape_indexed):
    """Split a NumPy index of an array of shape `shape_indexed` into a hashable template and
    its integer index arrays."""
    if not isinstance(index, tuple):
        index = (index,)
    template, arrays = [], []
    masks = []                                  # (position in the index, the mask's shape)
    for entry in index:
        if type(entry) is int or entry is None or entry is Ellipsis:    # int: the common case
            template.append(entry)
        elif isinstance(entry, slice):
            start, stop, step = entry.start, entry.stop, entry.step
            template.append(S.Slice(start if start is None else int(start.__index__()),
                                    stop if stop is None else int(stop.__index__()),
                                    step if step is None else int(step.__index__())))
        elif isinstance(entry, numbers.Integral) and not isinstance(entry, (bool, np.bool_)):
            template.append(int(entry))
        else:
            # (np.asarray would compute a lazy array: a Dask index stays one)
            arr = entry if isinstance(entry, Tracer) or is_array(entry) else np.asarray(entry)
            if isinstance(entry, (list, tuple)) and arr.size == 0:
                arr = arr.astype(np.intp)    # [] has no values to be floats: NumPy's int index
            kind = arr.dtype.kind
            if kind == "b":
                if isinstance(arr, Tracer) or foreign_array(arr) is not None:
                    raise unsupported("boolean-mask indexing", "the mask must be a NumPy "
                                      "array (its number of True entries sets the shape)")
                if arr.ndim == 0:
                    raise unsupported("a boolean scalar index", "x[True] is x[None], a new "
                                      "axis; x[False] is x[None][:0], an empty one: write those")
                masks.append((len(template), arr.shape))
                for a in np.nonzero(arr):
                    template.append(S.ArrayIndex(len(arrays)))
                    arrays.append(a)
            elif kind in "iu":
                template.append(S.ArrayIndex(len(arrays)))
                arrays.append(arr)
            else:
                raise IndexError(
                    "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
                    f"integer or boolean arrays are valid indices, got {entry!r}")
    if masks:
        _check_masks(template, masks, tuple(shape_indexed))
    return tuple(template), arrays


def _check_masks(template, masks, shape_indexed):
    """NumPy's IndexError for a boolean mask whose shape is not that of the axes it indexes:
    its integer indices would silently index part of them."""
    starts = {position for position, _ in masks}
    # The axes each template entry consumes; a mask's entries (one per mask axis) consume
    # one axis each, a 0-d mask none.
    used = builtins.sum(entry is not None and entry is not Ellipsis for entry in template)
    axis, mask_shapes = 0, dict(masks)
    for position, entry in enumerate(template):
        if position in starts:
            mask_shape = mask_shapes[position]
            if mask_shape != shape_indexed[axis:axis + len(mask_shape)]:
                raise IndexError(
                    f"boolean index did not match indexed array along axis {axis}: the mask "
                    f"has shape {mask_shape}, the axes it indexes "
                    f"{shape_indexed[axis:axis + len(mask_shape)]}")
        if entry is Ellipsis:
            axis += len(shape_indexed) - used
        elif entry is not None:
            axis += 1


def getitem(a, index):
    """`a[index]` for any NumPy index; gradients accumulate over repeated indices."""
    x = operand(a)
    template, arrays = _index_template(index, shape(x))
    return S.getitem(x, *arrays, index=template)


def nonzero(a):
    """`np.nonzero`: integer indices (no derivative), of a value known eagerly (under jit or
    across a vmap batch the result's shape would depend on unknown values)."""
    x = operand(a)
    return np.nonzero(x._known_value("np.nonzero") if isinstance(x, Tracer) else x)


def take(a, indices, axis=None, out=None, mode=None):
    """`np.take`."""
    refuse("take", out=out, mode=mode)
    x = operand(a)
    if axis is None:
        x, axis = ravel(x), 0
    axis = normalize_axis(axis, ndim(x))
    return getitem(x, (slice(None),) * axis + (indices,))


def take_along_axis(arr, indices, axis=-1):
    """`np.take_along_axis`."""
    x = operand(arr)
    if axis is None:
        x, axis = ravel(x), 0
    n = ndim(x)
    axis = normalize_axis(axis, n)
    idx = indices if isinstance(indices, Tracer) else np.asarray(indices)
    if ndim(idx) != n:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    index = tuple(idx if i == axis else np.arange(d).reshape((-1,) + (1,) * (n - i - 1))
                  for i, d in enumerate(shape(x)))
    return getitem(x, index)


def _combined(x, values, landing, reduce):
    """x where each element that `landing` names (the flat position of each indexed element)
    is `reduce` (along axis 1) of itself and of every update landing on it, in order: one
    reduction per number of updates."""
    if isinstance(values, (int, float)):     # weakly typed, as in NumPy: x's precision
        values = np.asarray(values, np.result_type(x.dtype, values))
    updates = reshape(broadcast_to(values, landing.shape), (-1,))
    order = np.argsort(landing, axis=None, kind="stable")
    positions, starts, counts = np.unique(landing.ravel()[order], return_index=True,
                                          return_counts=True)
    flat, first = reshape(x, (-1,)), (S.ArrayIndex(0),)
    parts, targets = [], []
    for count in np.unique(counts).tolist():
        rows = counts == count
        own = S.getitem(flat, positions[rows][:, None], index=first)
        others = S.getitem(updates, order[starts[rows][:, None] + np.arange(count)], index=first)
        parts.append(reduce(S.concatenate(own, others, axis=1), axis=(1,), keepdims=False))
        targets.append(positions[rows])
    combined = S.concatenate(*parts, axis=0) if len(parts) > 1 else parts[0]
    return reshape(S.scatter_set(flat, combined, np.concatenate(targets), index=first), shape(x))


def _updates(x, values):
    """`values` cast to x's dtype, as NumPy casts what it writes into x: into an integer
    or boolean array they carry no derivative (`astype`)."""
    return astype(values, getattr(x, "dtype", None) or np.asarray(x).dtype)


class _AtIndexer:
    __slots__ = ("array", "index")

    def __init__(self, array, index):
        self.array, self.index = array, index

    def set(self, values):
        """A copy of the array with `values` written at the index (leading axes of length
        one beyond the indexed region's dropped, as NumPy's assignment drops them)."""
        x = operand(self.array)
        template, arrays = _index_template(self.index, shape(x))
        values = _updates(x, values)
        extra = len(shape(values)) - len(S.getitem.shape(x, *arrays, index=template).shape)
        if extra > 0 and builtins.all(n == 1 for n in shape(values)[:extra]):
            values = reshape(values, shape(values)[extra:])
        return S.scatter_set(x, values, *arrays, index=template)

    def add(self, values):
        """A copy of the array with `values` added at the index (repeated indices accumulate)."""
        x = operand(self.array)
        template, arrays = _index_template(self.index, shape(x))
        return S.scatter_add(x, _updates(x, values), *arrays, index=template)

    def multiply(self, values):
        """A copy of the array with the elements at the index multiplied by `values`
        (`np.multiply.at`: an element indexed repeatedly is multiplied by each update)."""
        return self._combine("multiply", E.multiply, R.prod, values)

    def min(self, values):
        """A copy of the array with the elements at the index replaced by their minimum with
        `values` (`np.minimum.at`: over all updates of an element indexed repeatedly; the
        derivative is split equally among ties)."""
        return self._combine("min", E.minimum, R.min, values)

    def max(self, values):
        """Like `min`, with the maximum (`np.maximum.at`)."""
        return self._combine("max", E.maximum, R.max, values)

    def _combine(self, method, pairwise, reduce, values):
        x = operand(self.array)
        values = _updates(x, values)
        template, arrays = _index_template(self.index, shape(x))
        if builtins.any(isinstance(a, Tracer) for a in arrays):
            raise ConcretizationError(
                f"`at(x)[index].{method}(values)` needs the values of its index arrays, to "
                "combine the updates that land on the same element, but they are traced (an "
                "argument of a jitted function, or batched by vmap). Make the index a "
                "constant: a NumPy array the function closes over, or a static argument of "
                "jit (static_argnums); or use `.set` or `.add`, which need no values.")
        if arrays:
            positions = np.arange(math.prod(shape(x))).reshape(shape(x))
            landing = positions[S.index_tuple(template, arrays)]
            if np.unique(landing).size < landing.size:           # repeated indices
                return _combined(x, values, landing, reduce)
        region = S.getitem(x, *arrays, index=template)
        return S.scatter_set(x, pairwise(region, values), *arrays, index=template)

    def get(self):
        """The same as `array[index]`."""
        return getitem(self.array, self.index)


class at:
    """Functional indexed updates: `at(x)[idx].set(v)`, `.add(v)`, `.multiply(v)`,
    `.min(v)`, `.max(v)` and `.get()`.

    In-place writes (`x[idx] = v`, `np.add.at`) are refused on traced arrays; these
    return a new array and are differentiable in both `x` and `v`. Repeated indices
    combine all their updates, as NumPy's `np.add.at`, `np.multiply.at`, `np.minimum.at`
    and `np.maximum.at` do (`.set` keeps one of them, as assignment does); `.multiply`,
    `.min` and `.max` need index arrays whose values are known (not traced).

    >>> import numpy as np, pullback.numpy as pnp
    >>> pnp.at(np.zeros(3))[1].set(5.0)
    array([0., 5., 0.])
    >>> pnp.at(np.ones(3))[[0, 0, 2]].multiply(2.0)
    array([4., 1., 2.])
    """
    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __getitem__(self, index):
        return _AtIndexer(self.array, index)

    def __setitem__(self, index, value):
        raise InPlaceMutationError("use `at(x)[index].set(value)`, which returns the new array")


# ------------------------------------------------------------------ creation


def _contains_tracer(obj):
    if isinstance(obj, Tracer):
        return True
    if isinstance(obj, (list, tuple)):
        return builtins.any(_contains_tracer(o) for o in obj)
    return False


def array(object, dtype=None, *, copy=True, order="K", subok=False, ndmin=0, like=None):
    """`np.array` that also accepts (nested) lists of traced values."""
    if isinstance(object, (list, tuple)) and _contains_tracer(object):
        result = stack([array(o) for o in object]) if object else np.array([], dtype)
    elif isinstance(object, Tracer):
        result = object
    else:
        return np.array(object, dtype=dtype, ndmin=ndmin)
    result = astype(result, dtype) if dtype is not None else result
    return reshape(result, (1,) * (ndmin - ndim(result)) + shape(result)) if ndim(result) < ndmin else result


def asarray(a, dtype=None, order=None, *, like=None, **kwargs):
    """`np.asarray` that also accepts traced values and (nested) lists of them."""
    if isinstance(a, Tracer) or (isinstance(a, (list, tuple)) and _contains_tracer(a)):
        return array(a, dtype)
    if foreign_array(a) is not None:          # another library's array stays in its library
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return np.asarray(a, dtype=dtype)


def zeros_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """`np.zeros_like` (a constant: no derivative flows through it)."""
    return np.zeros(_like_shape(a, shape), dtype or _dtype(a))


def ones_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """`np.ones_like` (a constant)."""
    return np.ones(_like_shape(a, shape), dtype or _dtype(a))


empty_like = zeros_like


def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """`np.full_like`; a traced fill value keeps its derivative."""
    target = _like_shape(a, shape)
    dtype = np.dtype(dtype or _dtype(a))
    if isinstance(fill_value, Tracer):
        return broadcast_to(astype(fill_value, dtype), target)
    return np.full(target, fill_value, dtype)


def _like_shape(a, shape_):
    if shape_ is not None:
        return (shape_,) if isinstance(shape_, numbers.Integral) else tuple(shape_)
    return shape(a)


def _dtype(a):
    return getattr(a, "dtype", None) or np.asarray(a).dtype
