"""Structural primitives: linear maps that move, copy, select or cast array elements.

Each gives its transpose rule (how a cotangent flows back); the jvp applies the
primitive to the tangent. Indexing is one primitive, `getitem`, whose integer
index arrays are positional arguments (they are data, never differentiated) and
whose static part (slices, integers, `None`, `Ellipsis`) is a hashable template.
"""
import math

import numpy as np

from ..core.arrays import (WRITABLE_TYPES, add_at, arange, dtype_of, foreign_array, full,
                           in_library_of, moveaxis, padded_embedding, shape_of,
                           without_new_axes, zeros, zeros_like_value)
from ..core.indexing import FULL, ArrayIndex, Slice, basic_index, index_tuple
from ..core.primitive import ZERO, Primitive, ShapeDtype
from .elementwise import equal, where
from .families import (array_dtype, batch_by_loop, batch_size, constant, for_reading, linear,
                       source, unbroadcast)
from ..transforms.cotangents import Embedded, LazyCotangent, Scaled, dense


def _aval_probe(x):
    """A zero-strided stand-in with x's shape and dtype, for exact shape rules."""
    return np.broadcast_to(np.zeros((), dtype_of(x)), shape_of(x))


# ----------------------------------------------------------- shape changes

def _front(values, dims):
    """The single operand of a unary primitive with its batch axis moved to the front."""
    return moveaxis(values[0], dims[0], 0)


def _broadcast_batch(values, dims, shape):
    x = _front(values, dims)
    lead = x.shape[:1] + (1,) * (len(shape) - (len(x.shape) - 1))
    return broadcast_to(x.reshape(lead + x.shape[1:]), shape=x.shape[:1] + tuple(shape)), 0


def _reshape_emit(x, shape):
    """The method (a fraction of `np.reshape`'s cost, which a 1-d `@` pays twice per call)
    where the operand has more than one element, so it is no Python scalar; else
    `np.reshape`, which takes those too."""
    if math.prod(shape) != 1:
        return f"{x}.reshape({source(shape)})"
    return f"np.reshape({x}, {source(shape)})"


def _relaid_cotangent(method, argument):
    """The cotangent rule (reverse mode's record of a NumPy array's bind as data, no closure
    per bind) of a primitive laying its operand's elements out anew: the array method
    `method` with `argument(shape, params)` applied to the output's cotangent, a `Scaled`
    one's array (still lazy), a NumPy one, or else bound as that primitive."""
    def rule(ct, shape, params):
        new = argument(shape, params)
        if type(ct) is Scaled and ct.like is None:
            return ct.relaid(shape, method, new)
        ct = dense(ct)
        if type(ct) in WRITABLE_TYPES or isinstance(ct, np.generic):
            return getattr(ct, method)(new)
        return reshape(ct, shape=new) if method == "reshape" else transpose(ct, axes=new)
    return rule


def _inverse_permutation(shape, params):
    axes = params["axes"]
    inverse = [0] * len(axes)
    for position, axis in enumerate(axes):
        inverse[axis] = position
    return tuple(inverse)


reshape = linear(
    "reshape", lambda x, shape: x.reshape(shape) if type(x) is np.ndarray
    else np.reshape(x, shape),                # the method: np.reshape's Python layers skipped
    shape=lambda x, shape: ShapeDtype(tuple(shape), array_dtype(x)),
    transpose=lambda ct, x, shape: reshape(ct, shape=shape_of(x)),
    batch=lambda values, dims, shape: (
        reshape(_front(values, dims), shape=(batch_size(values, dims),) + tuple(shape)), 0),
    emit=lambda args, shape: _reshape_emit(args[0], tuple(shape)),
    cotangent_rule=_relaid_cotangent("reshape", lambda shape, params: shape))

# The shape rules check what NumPy's functions check: staged (make_ir, show, sparsity
# detection), a shape rule is all that runs, and it must not accept an ill-typed program.


def _transpose_shape(x, axes):
    shape = shape_of(x)
    if sorted(axes) != list(range(len(shape))):
        raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation of the axes of "
                         f"an array of shape {shape}.")
    return ShapeDtype(tuple(shape[a] for a in axes), array_dtype(x))


def _broadcast_to_shape(x, shape):
    shape = tuple(shape)
    if len(shape) < len(shape_of(x)) or any(
            n != 1 and n != m for n, m in zip(shape_of(x)[::-1], shape[::-1])):
        raise ValueError(f"broadcast_to: an array of shape {shape_of(x)} cannot be broadcast "
                         f"to shape {shape}.")
    return ShapeDtype(shape, array_dtype(x))


transpose = linear(
    "transpose", lambda x, axes: x.transpose(axes) if type(x) is np.ndarray
    else np.transpose(x, axes),
    shape=_transpose_shape,
    transpose=lambda ct, x, axes: transpose(ct, axes=tuple(np.argsort(axes).tolist())),
    batch=lambda values, dims, axes: (
        transpose(_front(values, dims), axes=(0,) + tuple(a + 1 for a in axes)), 0),
    emit=lambda args, axes: f"{args[0]}.T" if tuple(axes) == (1, 0) else
    f"np.transpose({args[0]}, {source(tuple(axes))})",
    cotangent_rule=_relaid_cotangent("transpose", _inverse_permutation))

broadcast_to = linear(
    "broadcast_to", lambda x, shape: np.broadcast_to(x, shape),
    shape=_broadcast_to_shape,
    transpose=lambda ct, x, shape: unbroadcast(ct, x),
    batch=_broadcast_batch,
    emit=lambda args, shape: f"np.broadcast_to({args[0]}, {source(tuple(shape))})")

def _convert(x, dtype):
    # A complex value cast to a real dtype keeps its real part (as NumPy's astype does, but
    # without its warning: derivatives of real parts take this path). A Python scalar (a
    # weakly typed argument of a jitted function) has no astype: it is converted first.
    x = x if hasattr(x, "dtype") else np.asarray(x)
    return (x.real if x.dtype.kind == "c" and np.dtype(dtype).kind != "c" else x).astype(dtype)


def _convert_emit(args, dtype):
    cast = f".astype({source(np.dtype(dtype))})"
    return f"{args[0]}{cast}" if np.dtype(dtype).kind == "c" else f"np.real({args[0]}){cast}"


def _convert_statements(targets, args, code, dtype):
    """A Python scalar has no `.astype`: printed, it is made an array first; generated code
    calls the primitive (its traceable variant may run on tracers, which refuse asarray)."""
    x = code.equation.inputs[0]
    if hasattr(x, "aval") and not x.weak:          # an array (a literal is a Python scalar)
        return None
    if code.reading:
        return [f"{targets[0]} = {_convert_emit([f'np.asarray({args[0]})'], dtype)}"]
    return [f"{targets[0]} = {code.value(convert, 'convert')}({args[0]}, "
            f"dtype={source(np.dtype(dtype))})"]


convert = linear(
    "convert", _convert,
    shape=lambda x, dtype: ShapeDtype(shape_of(x), np.dtype(dtype)),
    transpose=lambda ct, x, dtype: convert(ct, dtype=dtype_of(x)),
    batch=lambda values, dims, dtype: (convert(values[0], dtype=dtype), dims[0]),
    emit=_convert_emit,
    emit_statements=_convert_statements,
    fresh_output=True,
    sparsity="same",
    emit_scalar=lambda args, dtypes, dtype: _convert_scalar(args[0], dtypes[0], np.dtype(dtype)))


def _convert_scalar(x, source_dtype, dtype):
    """One element cast, for the fused tier: a complex value's real part to a real dtype,
    nonzero to bool."""
    if dtype.kind == "b":
        return f"({x} != 0)"
    return f"np.{dtype.name}({x}.real)" if source_dtype.kind == "c" and dtype.kind != "c" \
        else f"np.{dtype.name}({x})"

stop_gradient = constant("stop_gradient", lambda x: x,
                         shape=lambda x: ShapeDtype(shape_of(x), array_dtype(x)),
                         batch=lambda values, dims: (stop_gradient(values[0]), dims[0]),
                         emit_statements=for_reading(lambda targets, args, code:
                                                     [f"{targets[0]} = {args[0]}"]),
                         complex_rules=True)

# ------------------------------------------------------------------ indexing


def _getitem_shape(x, *arrays, index):
    probes = [np.zeros(shape_of(a), np.intp) for a in arrays]
    return ShapeDtype(_aval_probe(x)[index_tuple(index, probes)].shape, array_dtype(x))


def _getitem_jvp(primals, tangents, index):
    x, *arrays = primals
    return getitem(x, *arrays, index=index), getitem(tangents[0], *arrays, index=index)


def _getitem_vjp(wrt, out, x, *arrays, index):
    def pullback(ct):
        return (embed(ct, *arrays, index=index, shape=shape_of(x)),) + (ZERO,) * len(arrays)
    return pullback



def batched_index_axis(shape, index, arrays):
    """Where the leading (batch) axis of an array of `shape` lands after `[(:,) + index]`.

    NumPy moves advanced-index dimensions to the front when the advanced indices are
    not adjacent, so the batch axis is found by probing shapes with two batch sizes.
    """
    probes = [np.zeros(shape_of(a), np.intp) for a in arrays]
    index = index_tuple((FULL,) + index, probes)
    small = np.broadcast_to(np.zeros((), np.int8), (2,) + tuple(shape[1:]))[index].shape
    large = np.broadcast_to(np.zeros((), np.int8), (3,) + tuple(shape[1:]))[index].shape
    return next(i for i, (a, b) in enumerate(zip(small, large)) if a != b)


def _getitem_batch(values, dims, index):
    if any(d is not None for d in dims[1:]):            # batched index arrays
        return batch_by_loop(getitem, values, dims, index=index)
    x, *arrays = values
    x = moveaxis(x, dims[0], 0)
    return (getitem(x, *arrays, index=(FULL,) + index),
            batched_index_axis(x.shape, index, arrays))


def _index_source(entry, arrays):
    """One entry of an index template as Python source."""
    if type(entry) is Slice:
        start, stop, step = ("" if v is None else str(v) for v in entry)
        return f"{start}:{stop}" + (f":{step}" if step else "")
    if type(entry) is ArrayIndex:
        return arrays[entry.position]
    return "..." if entry is Ellipsis else str(entry)


def _index_text(index, arrays) -> str:
    """An index template as the source inside brackets, e.g. `1:, i`."""
    return ", ".join(_index_source(e, arrays) for e in index) or "()"


def _getitem_emit(args, index):
    x, *arrays = args
    return f"{x}[{_index_text(index, arrays)}]"


def zeros_source(shape, dtype, function: str = "zeros") -> str:
    """`np.zeros(...)` (or `np.empty`: `function`) of a shape and dtype as a person writes
    it: `np.zeros(3)`, `np.zeros((2, 3), np.float32)`."""
    shape = tuple(shape)
    text = str(shape[0]) if len(shape) == 1 else source(shape)
    return f"np.{function}({text})" if np.dtype(dtype) == np.float64 else \
        f"np.{function}({text}, {source(np.dtype(dtype))})"


def _write_at(target, values, arrays, index, add):
    """Statements writing `values` into `target` at `index` (adding, or assigning): `+=` or
    `=` for a basic index; `np.add.at` where index arrays may repeat an index."""
    if arrays and add:
        parts = [_index_source(e, arrays) for e in index]
        plain = not any(":" in p or p in ("...", "None") for p in parts)
        where = (parts[0] if len(parts) == 1 else f"({', '.join(parts)})") if plain \
            else f"np.s_[{_index_text(index, arrays)}]"
        return [f"np.add.at({target}, {where}, {values})"]
    return [f"{target}[{_index_text(index, arrays)}] {'+=' if add else '='} {values}"]


def _scatter_statements(add):
    @for_reading
    def emit(targets, args, code, index):
        (target,), (x, updates, *arrays) = targets, args
        copy = [] if target == x else [f"{target} = {x}.copy()"]
        return copy + _write_at(target, updates, arrays, index, add)
    return emit


def _pad_widths(index, values_shape, shape):
    """The (before, after) widths that `np.pad` surrounds values with to place them at a
    basic `index` of step 1 into zeros of `shape`; None for any other index."""
    if any(type(e) is not Slice or e.step not in (None, 1) for e in index) \
            or len(index) > len(shape):
        return None
    widths = []
    for axis, n in enumerate(shape):
        start, stop, _ = slice(*(index[axis] if axis < len(index) else FULL)).indices(n)
        widths.append((start, n - max(stop, start)))
    sizes = tuple(n - b - a for n, (b, a) in zip(shape, widths))
    return tuple(widths) if sizes == tuple(values_shape) else None


@for_reading
def _embed_statements(targets, args, code, index, shape):
    """`np.pad(values, widths)` for a slice of step 1, else zeros and an assignment."""
    (target,), (values, *arrays) = targets, args
    widths = None if arrays else _pad_widths(index, code.equation.inputs[0].aval.shape, shape)
    if widths is not None:
        text = widths[0] if len(set(widths)) == 1 else widths
        text = text[0] if len(set(text)) == 1 else text
        return [f"{target} = np.pad({values}, {source(text)})"]
    dtype = code.equation.outputs[0].aval.dtype
    return [f"{target} = {zeros_source(shape, dtype)}"] + _write_at(target, values, arrays, index,
                                                                   add=bool(arrays))


def _getitem_impl(x, *arrays, index):
    """x[index]; a NumPy x indexed by another library's arrays is made an array of theirs
    first (NumPy's indexing would compute a lazy index)."""
    if not arrays:
        return x[basic_index(index)]
    if foreign_array(x) is None:
        libraries = [foreign_array(a) for a in arrays if foreign_array(a) is not None]
        if libraries:
            x = np.asarray(x, like=libraries[0])
    return x[index_tuple(index, arrays)]


def _getitem_cotangent(ct, shape, params):
    """getitem's transpose at a basic index (reverse mode's record as data): a concrete
    cotangent is placed into zeros lazily (`Embedded`, as `lazy_pullback` does), a traced one
    by embed."""
    if type(ct) in WRITABLE_TYPES or isinstance(ct, (LazyCotangent, np.generic)):
        return Embedded(ct, (), params["index"], shape)
    return embed(ct, index=params["index"], shape=shape)


getitem = Primitive("getitem", _getitem_impl,
                    shape=_getitem_shape, jvp=_getitem_jvp,
                    vjp=_getitem_vjp, cotangent_rule=_getitem_cotangent,
                    batch=_getitem_batch, emit=_getitem_emit, scaled_cotangents=True,
                    transpose_kind="embedding", sparsity="gather",
                    family="structural", complex_rules=True)


def _embed_impl(values, *arrays, index, shape):
    idx = index_tuple(index, arrays)
    padded = None if arrays else padded_embedding(values, idx, shape)
    if padded is not None:
        return padded
    out = zeros(shape, values.dtype, like=values)
    if arrays:
        out = add_at(out, idx, values)   # repeated indices accumulate
    else:
        values, idx = without_new_axes(values, idx, shape)    # (Dask's assignment)
        out[idx] = values
    return out


def _embed_vjp(wrt, out, values, *arrays, index, shape):
    def pullback(ct):
        return (getitem(ct, *arrays, index=index),) + (ZERO,) * len(arrays)
    return pullback


def _embed_batch(values, dims, index, shape):
    if any(d is not None for d in dims[1:]):
        return batch_by_loop(embed, values, dims, index=index, shape=shape)
    v, *arrays = values
    full_shape = (v.shape[dims[0]],) + tuple(shape)
    v = moveaxis(v, dims[0], batched_index_axis(full_shape, index, arrays))
    return embed(v, *arrays, index=(FULL,) + index, shape=full_shape), 0


# The transpose of getitem: `values` placed into zeros of `shape` at `index`.
embed = Primitive("embed", _embed_impl, batch=_embed_batch,
                  shape=lambda values, *arrays, index, shape: ShapeDtype(tuple(shape), array_dtype(values)),
                  jvp=lambda p, t, index, shape: (embed(*p, index=index, shape=shape),
                                                  embed(t[0], *p[1:], index=index, shape=shape)),
                  vjp=_embed_vjp, sparsity="embed", family="structural", fresh_output=True,
                  emit_statements=_embed_statements,
                  complex_rules=True, adds_at_index=(None, 0))


def _scatter_add_impl(x, updates, *arrays, index):
    if type(x) is np.ndarray and type(updates) is not np.ndarray \
            and foreign_array(updates) is not None:   # a NumPy constant (a folded cotangent)
        x = in_library_of(x, updates)                   # meets another library's updates
    idx = index_tuple(index, arrays)
    padded = None if arrays else padded_embedding(updates, idx, shape_of(x))
    if padded is not None:
        return x + padded
    out = _writable_copy(x)
    if arrays:
        np.add.at(out, idx, updates)     # repeated indices accumulate
    else:
        out[idx] += updates
    return out


def _scatter_jvp(prim, primals, tangents, index):
    """Both scatters are linear in (x, updates) jointly: apply them to the tangents."""
    x, updates, *arrays = primals
    t_x, t_u = tangents[:2]
    t_x = zeros_like_value(x) if t_x is ZERO else t_x
    t_u = 0.0 if t_u is ZERO else t_u
    return prim(x, updates, *arrays, index=index), prim(t_x, t_u, *arrays, index=index)


def _scatter_add_vjp(wrt, out, x, updates, *arrays, index):
    def pullback(ct):
        return (ct if wrt[0] else ZERO,
                unbroadcast(getitem(ct, *arrays, index=index), updates) if wrt[1] else ZERO,
                *(ZERO,) * len(arrays))
    return pullback


def _with_rank(shape, rank):
    """A shape that broadcasts like `shape` against one of `rank` dimensions, with exactly
    `rank` dimensions (leading ones added, or dropped as NumPy's assignment drops them)."""
    shape = tuple(shape)
    return (1,) * (rank - len(shape)) + shape[max(len(shape) - rank, 0):]


def _scatter_batch(prim, values, dims, index):
    """Scatter into a batch of arrays: the operand is batched (broadcast if shared); the
    updates are padded to the rank of the indexed region, then get a batch axis (of size
    one if shared) where the batch axis lands under the index."""
    if any(d is not None for d in dims[2:]):
        return batch_by_loop(prim, values, dims, index=index)
    x, updates, *arrays = values
    size = batch_size(values, dims)
    x = broadcast_to(x, shape=(size,) + shape_of(x)) if dims[0] is None else moveaxis(x, dims[0], 0)
    target = batched_index_axis(x.shape, index, arrays)
    rank = len(_getitem_shape(x, *arrays, index=(FULL,) + index).shape) - 1
    if dims[1] is not None:
        updates = moveaxis(updates, dims[1], 0)
        per_example = _with_rank(updates.shape[1:], rank)
        updates = moveaxis(reshape(updates, shape=(size,) + per_example), 0, target)
    elif shape_of(updates):              # (a scalar, a Python number too, fits as it is)
        per_example = _with_rank(shape_of(updates), rank)
        updates = reshape(updates, shape=per_example[:target] + (1,) + per_example[target:])
    return prim(x, updates, *arrays, index=(FULL,) + index), 0


def _scatter_shape(x, updates, *arrays, index):
    """x's type, once the updates fit the indexed positions (broadcast, as NumPy's
    assignment broadcasts them)."""
    indexed = _getitem_shape(x, *arrays, index=index).shape
    _broadcast_to_shape(ShapeDtype(shape_of(updates), array_dtype(x)), indexed)
    return ShapeDtype(shape_of(x), array_dtype(x))


scatter_add = Primitive("scatter_add", _scatter_add_impl,
                        batch=lambda v, d, index: _scatter_batch(scatter_add, v, d, index),
                        shape=_scatter_shape,
                        jvp=lambda p, t, index: _scatter_jvp(scatter_add, p, t, index),
                        vjp=_scatter_add_vjp, sparsity="scatter_add", family="structural",
                        fresh_output=True, emit_statements=_scatter_statements(add=True),
                        complex_rules=True, adds_at_index=(0, 1))


def _writable_copy(x):
    """A copy of x to write into: a NumPy scalar (x[i] of an array) or a number as a 0-d
    array (their copies are immutable)."""
    return np.array(x) if isinstance(x, (np.generic, int, float, complex)) else x.copy()


def _scatter_set_impl(x, updates, *arrays, index):
    out = _writable_copy(x)
    out[index_tuple(index, arrays)] = updates
    return out


def _last_writes(x, updates, arrays, index):
    """Mask over the indexed positions: True where the write is the one that lands.

    With repeated indices, NumPy's assignment keeps the last write; only those
    updates influence the result. Computed with primitives on integer ids, so it
    also works when the index arrays are staged.
    """
    shape = _getitem_shape(x, *arrays, index=index).shape
    ids = arange(math.prod(shape), like=x).reshape(shape)
    landed = scatter_set(full(shape_of(x), -1, np.intp, like=x), ids, *arrays, index=index)
    return equal(getitem(landed, *arrays, index=index), ids)


def _scatter_set_vjp(wrt, out, x, updates, *arrays, index):
    def pullback(ct):
        ct_updates = ZERO
        if wrt[1]:
            ct_updates = getitem(ct, *arrays, index=index)
            if arrays:
                ct_updates = where(_last_writes(x, updates, arrays, index), ct_updates, 0.0)
            ct_updates = unbroadcast(ct_updates, updates)
        return (scatter_set(ct, 0.0, *arrays, index=index) if wrt[0] else ZERO, ct_updates,
                *(ZERO,) * len(arrays))
    return pullback


scatter_set = Primitive("scatter_set", _scatter_set_impl,
                        batch=lambda v, d, index: _scatter_batch(scatter_set, v, d, index),
                        shape=_scatter_shape,
                        jvp=lambda p, t, index: _scatter_jvp(scatter_set, p, t, index),
                        vjp=_scatter_set_vjp, sparsity="scatter_set", family="structural",
                        fresh_output=True, emit_statements=_scatter_statements(add=False),
                        complex_rules=True)

# ------------------------------------------------------ joining and padding


def _concatenate_shape(*xs, axis):
    shapes = [shape_of(x) for x in xs]
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(
                n != m for i, (n, m) in enumerate(zip(s, shapes[0])) if i != axis):
            raise ValueError(f"concatenate: arrays of shapes {shapes[0]} and {s} differ in "
                             f"an axis other than the one they are joined along ({axis}).")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return ShapeDtype(tuple(out), np.result_type(*(array_dtype(x) for x in xs)))


def _concatenate_jvp(primals, tangents, axis):
    tangents = [zeros_like_value(x) if t is ZERO else t for x, t in zip(primals, tangents)]
    return concatenate(*primals, axis=axis), concatenate(*tangents, axis=axis)


def _concatenate_vjp(wrt, out, *xs, axis):
    def pullback(ct):
        cts, start = [], 0
        for x, w in zip(xs, wrt):
            stop = start + shape_of(x)[axis]
            if w:
                index = (Slice(None, None, None),) * axis + (Slice(start, stop, None),)
                cts.append(unbroadcast(getitem(ct, index=index), x))
            else:
                cts.append(ZERO)
            start = stop
        return tuple(cts)
    return pullback


def _concatenate_batch(values, dims, axis):
    size = batch_size(values, dims)
    xs = [broadcast_to(x, shape=(size,) + shape_of(x)) if d is None else moveaxis(x, d, 0)
          for x, d in zip(values, dims)]
    return concatenate(*xs, axis=axis + 1), 0


concatenate = Primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
                        shape=_concatenate_shape, jvp=_concatenate_jvp, vjp=_concatenate_vjp,
                        batch=_concatenate_batch, sparsity="gather", family="structural", fresh_output=True,
                        complex_rules=True,
                        emit=lambda args, axis: "np.concatenate(({}{}), axis={})".format(
                            ", ".join(args), "," if len(args) == 1 else "", axis))


def _pad_jvp(primals, tangents, pad_width, constant_value):
    (x,), (t,) = primals, tangents
    return (pad(x, pad_width=pad_width, constant_value=constant_value),
            pad(t, pad_width=pad_width, constant_value=0.0))


def _pad_vjp(wrt, out, x, pad_width, constant_value):
    def pullback(ct):
        index = tuple(Slice(before, before + n, None)
                      for (before, _), n in zip(pad_width, shape_of(x)))
        return (getitem(ct, index=index),)
    return pullback


def _pad_impl(x, pad_width, constant_value):
    return np.pad(x, pad_width, constant_values=constant_value) if pad_width else x


@for_reading
def _pad_statements(targets, args, code, pad_width, constant_value):
    if not pad_width:
        return [f"{targets[0]} = {args[0]}"]
    widths = source(pad_width[0] if len(set(pad_width)) == 1 else pad_width)
    value = f", constant_values={source(constant_value)}" if constant_value else ""
    return [f"{targets[0]} = np.pad({args[0]}, {widths}{value})"]


pad = Primitive(
    "pad", _pad_impl,
    shape=lambda x, pad_width, constant_value: ShapeDtype(
        tuple(n + b + a for n, (b, a) in zip(shape_of(x), pad_width)), dtype_of(x)),
    jvp=_pad_jvp, vjp=_pad_vjp, sparsity="gather", family="structural", emit_statements=_pad_statements,
    complex_rules=True,
    batch=lambda values, dims, pad_width, constant_value: (pad(
        _front(values, dims), pad_width=((0, 0),) + pad_width, constant_value=constant_value), 0))
