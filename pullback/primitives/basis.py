"""A one-hot basis batched structurally: dense Jacobians and Hessians without dense work.

`jacrev` and `jacfwd` (so `hessian` too) push or pull every basis vector through the
program in one batched pass. Given the identity as a dense array, every elementwise
step of that pass costs (basis size) x (example size) although each position holds one
nonzero. Here the basis is a `OneHot` batched value: example k is the sum over its
terms of `where(slots == k + 1, coef, 0)`, with `coef` of the example's shape and
`slots` a NumPy integer array of that shape (0: zero in every example). Primitives keep
the structure where they can:

- element-moving primitives (sparsity "gather", "embed" or "same": getitem, embed,
  reshape, transpose, broadcast_to, pad, convert ...) with constant index arrays move
  each coef, and its slots alike (the primitive's jvp applied to the slots, as sparsity
  detection applies it to element ids);
- an elementwise primitive with one structured argument at a `zero_preserving` position
  (multiply, divide), the others shared by the batch, applies to each coef;
- a linear elementwise primitive (number partials, zero at zero: add, subtract,
  negative) of structured arguments only collects their terms, scaled; terms with equal
  slots merge;
- a matrix product of a structured vector and a shared matrix (`sparsity="matmul"`)
  gathers the matrix's columns (rows) at the coefficients' places, times them: a dense
  batch without a product over the basis's zeros.

Anything else gets the dense value (`dense`: one scatter into zeros). Off its pattern a
structured value is a symbolic zero, as `ZERO` is: a product with an Inf there is zero,
not NaN, and a zero there is +0.0 where the dense pass could give -0.0.

Where the batch is dense (after a matrix product), a product with values the batch
shares is kept as a `Scaled` value: the dense batch and a shared factor, further shared
factors multiplying the factor and sums over the same batch adding factors, so that a
chain of such steps makes one pass over the batch, not one per step (factors summed
before they multiply: rounding differs from the dense pass in the last bits).
"""
import functools
from numbers import Number

import numpy as np

from ..core import arrays
from ..core.arrays import dtype_of, foreign_array, moveaxis, shape_of
from ..core.engine import Tracer, new_trace
from ..core.indexing import ArrayIndex, Slice
from ..core.primitive import ZERO
from ..errors import BatchError
from ..transforms.batching import BatchTrace, BatchTracer
from ..tree import tree_map
from .elementwise import add, multiply
from .structural import concatenate, embed, getitem, reshape, transpose

MAX_TERMS = 8       # more terms than this: the dense value is cheaper to carry


class OneHot:
    """A batch of `size` examples, each the sum of its terms' `where(slots == k + 1, coef, 0)`."""
    __slots__ = ("terms", "size", "example_shape", "dtype")

    def __init__(self, terms, size, example_shape, dtype):
        self.terms, self.size = tuple(terms), size
        self.example_shape, self.dtype = tuple(example_shape), np.dtype(dtype)

    @property
    def shape(self):
        return (self.size,) + self.example_shape


def basis(leaves, start, stop, factors):
    """The rows [start, stop) of the identity over all leaves' elements, one `OneHot` per
    leaf (its elements numbered after the previous leaves'), times the leaf's factor."""
    out, offset = [], 0
    for leaf, factor in zip(leaves, factors):
        shape = shape_of(leaf)
        ids = np.arange(offset, offset + int(np.prod(shape, dtype=np.int64))).reshape(shape)
        slots = np.where((ids >= start) & (ids < stop), ids - start + 1, 0)
        coef = (np.ones(shape, dtype_of(leaf)) * factor).astype(dtype_of(leaf), copy=False)
        out.append(OneHot([(coef, slots)] if slots.any() else [], stop - start, shape,
                          coef.dtype))
        offset += ids.size
    return out


def dense(value: OneHot):
    """The batched array a `OneHot` stands for (batch axis first): zeros, and each term's
    coefficients added at their places in one scatter (the constant terms summed first,
    into one constant)."""
    n = int(np.prod(value.example_shape, dtype=np.int64))
    if not value.terms or value.size == 0 or n == 0:
        return arrays.zeros(value.shape, value.dtype)
    parts, places = [], []
    for coef, slots in sorted(value.terms, key=lambda t: not isinstance(t[0], Tracer)):
        flat = slots.reshape(-1)
        where = np.flatnonzero(flat)
        coef = reshape(coef, shape=(n,))
        if where.size and where[-1] - where[0] + 1 == where.size < n:     # a range: a view
            coef = getitem(coef, index=(Slice(int(where[0]), int(where[-1]) + 1, None),))
        elif where.size < n:
            coef = getitem(coef, where, index=(ArrayIndex(0),))
        parts.append(coef)
        places.append((flat[where] - 1) * n + where)
    traced = sum(isinstance(c, Tracer) for c in parts)
    if traced < len(parts):         # the constant terms: one value per place, zeros dropped
        place, at = np.unique(np.concatenate(places[traced:]), return_inverse=True)
        summed = np.zeros(place.shape, value.dtype)
        np.add.at(summed, at, np.concatenate(parts[traced:]))
        parts[traced:], places[traced:] = [summed[summed != 0]], [place[summed != 0]]
    values = parts[0] if len(parts) == 1 else concatenate(*parts, axis=0)
    places = np.concatenate(places)
    out = embed(values, places // n, places % n, index=(ArrayIndex(0), ArrayIndex(1)),
                shape=(value.size, n))
    return reshape(out, shape=value.shape)


def _collected(signed_terms):
    """A OneHot of (sign, coef, slots) terms, equal slots merged; None past MAX_TERMS."""
    merged = []
    for sign, coef, slots in signed_terms:
        for i, (c, s) in enumerate(merged):
            if s is slots or (s.shape == slots.shape and np.array_equal(s, slots)):
                merged[i] = (c + coef if sign == 1 else c - coef if sign == -1
                             else c + coef * sign, s)
                break
        else:
            merged.append((coef if sign == 1 else -coef if sign == -1 else coef * sign, slots))
    if len(merged) > MAX_TERMS:
        return None
    dtypes = {dtype_of(c) for c, _ in merged}
    if len(dtypes) > 1:
        return None
    return merged


def _elementwise(prim, values, hot, params):
    if len(hot) == 1 and hot[0] in prim.zero_preserving:
        (i,) = hot
        aval = prim.shape(*values[:i], arrays.zeros(values[i].example_shape, values[i].dtype),
                          *values[i + 1:], **params)
        terms = [(prim(*values[:i], coef, *values[i + 1:], **params),
                  np.broadcast_to(slots, aval.shape)) for coef, slots in values[i].terms]
        return OneHot(terms, values[i].size, aval.shape, aval.dtype)
    linear = prim.partials and all(isinstance(d, Number) for d in prim.partials)
    if not linear or len(hot) != len(values):
        return None
    shapes = {v.example_shape for v in values}
    dtypes = {v.dtype for v in values}
    if len(shapes) > 1 or len(dtypes) > 1 or prim.impl(*[0.0] * len(values), **params) != 0:
        return None
    signed = [(d, c, s) for d, v in zip(prim.partials, values) for c, s in v.terms]
    terms = _collected(signed)
    if terms is None:
        return None
    return OneHot(terms, values[0].size, shapes.pop(), dtypes.pop())


def _moved(prim, values, params):
    x, *others = values
    if any(isinstance(o, Tracer) or np.dtype(dtype_of(o)).kind not in "biu"
           or foreign_array(o) is not None for o in others):
        return None         # traced or lazy index arrays, or floats that fill other places
    zeros = np.zeros(x.example_shape)
    if np.any(prim(zeros, *others, **params)):
        return None         # not linear (pad with a nonzero constant)

    def moved(ids):
        """ids moved as the primitive moves elements (its jvp: zeros where it fills)."""
        _, t = prim.jvp((zeros, *others), (ids, *[ZERO] * len(others)), **params)
        return None if t is ZERO or np.dtype(dtype_of(t)) != np.float64 else np.asarray(t)
    if prim.sparsity != "same":
        ones = moved(np.ones(x.example_shape))
        if ones is None or np.any((ones != 0) & (ones != 1)):
            return None     # elements summed (an embed at repeated indices)
    terms = []
    for coef, slots in x.terms:
        c = prim(coef, *others, **params)
        s = slots if prim.sparsity == "same" else moved(slots.astype(np.float64))
        if s is None or s.shape != shape_of(c):
            return None
        terms.append((c, s.astype(np.intp)))
    if not terms:
        aval = prim.shape(arrays.zeros(x.example_shape, x.dtype), *others, **params)
        return OneHot([], x.size, aval.shape, aval.dtype)
    return OneHot(terms, x.size, shape_of(terms[0][0]), dtype_of(terms[0][0]))


def structured(prim, values, dims, params):
    """The OneHot result of `prim` on batch `values` some of which are OneHot, or None
    where the structure is lost (the caller then computes on dense values)."""
    hot = [i for i, v in enumerate(values) if type(v) is OneHot]
    if prim.multiple_results or any(d is not None and type(v) is not OneHot
                                    for v, d in zip(values, dims)):
        return None
    if prim.sparsity == "elementwise":
        return _elementwise(prim, values, hot, params)
    if prim.sparsity in ("gather", "embed", "same") and hot == [0]:
        return _moved(prim, values, params)
    if prim.sparsity == "matmul" and len(values) == 2 and len(hot) == 1:
        return _product(values, hot[0])
    return None


def _product(values, position):
    """The dense batch of `A @ x` (x at `position` 1, examples of n or n x 1) or `x @ A`
    (0, examples of n or 1 x n) for a OneHot x and a shared matrix A: each slot's row is
    its coefficients times A's columns (rows) at their places, gathered, not a product
    over the batch's zeros (the
    reverse pass of `jacrev` through `W @ x`: O(n m) for the n x m products' O(n n m)).
    A slot held at several places sums their rows (in another order than the product's:
    last bits); a symbolic zero stays +0.0 where the product could give -0.0."""
    x, matrix = values[position], values[1 - position]
    column = position == 1
    if isinstance(matrix, Number) or len(shape_of(matrix)) != 2:
        return None
    n, m = shape_of(matrix)[::-1] if column else shape_of(matrix)
    if x.example_shape not in ((n,), (n, 1) if column else (1, n)):
        return None
    dtype = np.result_type(x.dtype, dtype_of(matrix))
    example = (m,) if len(x.example_shape) == 1 else (m, 1) if column else (1, m)
    total = None
    for coef, slots in x.terms:
        places = np.flatnonzero(slots.reshape(-1))
        coef = reshape(coef, shape=(n, 1))
        if places.size < n:
            coef = getitem(coef, places, index=(ArrayIndex(0),))
        if column:                              # A's columns at the places, as rows
            lines = transpose(getitem(matrix, places, index=(Slice(None, None, None),
                                                             ArrayIndex(0))), axes=(1, 0))
        else:
            lines = getitem(matrix, places, index=(ArrayIndex(0),))
        rows = multiply(lines, coef)            # (places, m)
        order = slots.reshape(-1)[places] - 1
        if order.size == x.size and np.array_equal(order, np.arange(x.size)):
            batch = rows
        else:                                   # slots in another order, missing or repeated
            batch = embed(rows, order, index=(ArrayIndex(0),), shape=(x.size, m))
        total = batch if total is None else add(total, batch)
    if total is None:
        return OneHot([], x.size, example, dtype)
    if dtype_of(total) != dtype:
        return None
    return reshape(total, shape=(x.size,) + example)


class Scaled:
    """A dense batch (`base`, batch axis `axis`) times a `factor` the batch shares, kept
    apart: further shared factors, and sums over the same base, then cost O(example)
    instead of O(batch x example) (X.T * a, X.T * c, ..., combined: X.T * (c - c c a) a)."""
    __slots__ = ("base", "axis", "factor", "shape", "dtype")

    def __init__(self, base, axis, factor, shape, dtype):
        self.base, self.axis, self.factor = base, axis, factor
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def _scaled_product(prim, values, dims, params):
    """A Scaled for a product (a commutative primitive zero where either factor is) of one
    batched value and shared ones, where the shared factor does not enlarge the example."""
    batched = [i for i, d in enumerate(dims) if d is not None]
    if len(batched) != 1 or not prim.commutative or len(prim.zero_preserving) != 2:
        return None
    (i,), (x, y) = batched, values if batched == [0] else values[::-1]
    if type(x) is Scaled:
        factor = x.factor * y
        if not _in_range(factor, x.factor, y, product=True):
            return None
        base, axis = x.base, x.axis
    else:
        base, axis, factor = x, dims[i], y
    example = x.shape[1:] if type(x) is Scaled else \
        tuple(n for j, n in enumerate(shape_of(base)) if j != axis)
    if np.broadcast_shapes(example, shape_of(factor)) != example:
        return None
    aval = prim.shape(arrays.zeros(example, dtype_of(base)), factor, **params)
    return Scaled(base, axis, factor, (shape_of(base)[axis],) + example, aval.dtype)


def _scaled_sum(prim, values, params):
    """A Scaled for a linear elementwise primitive (add, subtract, negative) of Scaled values
    of one base: the factors combined."""
    if not all(type(v) is Scaled and v.base is values[0].base and v.axis == values[0].axis
               and v.shape == values[0].shape and v.dtype == values[0].dtype for v in values):
        return None
    if not (prim.partials and all(isinstance(d, Number) for d in prim.partials)) \
            or prim.impl(*[0.0] * len(values), **params) != 0:
        return None
    factor = None
    for d, v in zip(prim.partials, values):
        term = v.factor if d == 1 or factor is not None and d == -1 else v.factor * d
        factor = term if factor is None else factor - term if d == -1 else factor + term
    if not _in_range(factor, *(v.factor for v in values)):
        return None
    return Scaled(values[0].base, values[0].axis, factor, values[0].shape, values[0].dtype)


def _in_range(combined, *parts, product=False) -> bool:
    """Whether factors combined before they meet the batch (`base * (f1 * f2)` for the
    function's `(base * f1) * f2`) stay finite where the parts are, and for a `product`
    normal where they are nonzero: 1e200 * 1e200 overflowed to inf (and 1e-200 * 1e-200
    underflowed to 0) where the function's own order stays finite. Traced factors are not
    known here and are combined."""
    if any(isinstance(v, Tracer) or foreign_array(v) is not None for v in (combined, *parts)):
        return True
    with np.errstate(all="ignore"):
        combined = np.abs(np.asarray(combined))
        finite = functools.reduce(np.logical_and, [np.isfinite(p) for p in parts])
        if not np.all(np.isfinite(combined) | ~finite):
            return False
        if product:
            nonzero = functools.reduce(np.logical_and, [np.asarray(p) != 0 for p in parts])
            tiny = np.finfo(combined.dtype).tiny if combined.dtype.kind in "fc" else 0
            return bool(np.all((combined >= tiny) | ~nonzero | ~finite))
    return True


def _unscaled(value: Scaled):
    return moveaxis(value.base, value.axis, 0) * value.factor


class BasisTrace(BatchTrace):
    """vmap over a `OneHot` basis: structured where the primitives allow (`Scaled` values
    too), dense elsewhere."""
    __slots__ = ()

    def process_primitive(self, primitive, args, params):
        values = [a.value if type(a) is BatchTracer and a._trace is self else a for a in args]
        dims = [a.batch_axis if type(a) is BatchTracer and a._trace is self else None
                for a in args]
        if any(type(v) is OneHot for v in values):
            out = structured(primitive, values, dims, params)
            if out is not None:
                return BatchTracer(self, out, 0)
            values = [dense(v) if type(v) is OneHot else v for v in values]
        if primitive.sparsity == "elementwise" and not primitive.multiple_results:
            out = _scaled_product(primitive, values, dims, params) or (
                _scaled_sum(primitive, values, params) if all(d is not None for d in dims)
                else None)
            if out is not None:
                return BatchTracer(self, out, 0)
        args = [BatchTracer(self, _unscaled(v) if type(v) is Scaled else v, d if type(v)
                            is not Scaled else 0) if d is not None else a
                for a, v, d in zip(args, values, dims)]
        return super().process_primitive(primitive, args, params)

    def unwrap(self, value):
        value, axis = super().unwrap(value)
        if type(value) is Scaled:
            return _unscaled(value), 0
        return (dense(value), axis) if type(value) is OneHot else (value, axis)


def _shared(value, axis):
    if axis is not None:
        raise BatchError("a value returned as shared by the whole batch varies over the basis")
    return value


def vmap_basis(f, seeds):
    """`vmap(f)` over `OneHot` seeds (batch axis 0), for f returning (a list of arrays, a
    value the batch shares): the arrays with the batch axis first (broadcast where shared),
    and the shared value."""
    with new_trace(BasisTrace) as trace:
        batched, shared = f(*[BatchTracer(trace, s, 0) for s in seeds])
        pairs = [trace.unwrap(o) for o in batched]
        shared = tree_map(lambda v: _shared(*trace.unwrap(v)), shared)
    size = seeds[0].shape[0]
    out = []
    for value, axis in pairs:
        if axis is None:
            value = np.broadcast_to(value, (size,) + tuple(np.shape(value)))
            if not isinstance(value, Tracer):
                value = value.copy()
        elif axis:
            value = arrays.moveaxis(value, axis, 0)
        out.append(value)
    return out, shared
