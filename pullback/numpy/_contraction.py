"""Products and contractions with NumPy's signatures.

Only matmul and einsum are primitives; dot, vdot, inner, outer, tensordot, trace,
kron, vecdot, matvec and vecmat are composites of them and of reshapes.
"""
import builtins
import numbers
import string

import numpy as np

from ..primitives import contraction as C
from ..primitives import elementwise as E
from ._common import ndim, normalize_axis, refuse
from ._elementwise import UFUNCS, _conjugated
from ._reductions import sum
from ._shape import (array_operand, broadcast_to, diagonal, moveaxis, operand, ravel, reshape,
                     shape, swapaxes, transpose)


def matmul(x1, x2, /, out=None, **kwargs):
    """`np.matmul` / the `@` operator (a 1-D operand's axis is removed from the product)."""
    if out is not None or kwargs:
        refuse("matmul", out=out, **kwargs)
    a, b = operand(x1), operand(x2)
    shape_a, shape_b = getattr(a, "shape", ()), getattr(b, "shape", ())
    if not shape_a or not shape_b:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    return C.matmul(a, b)


UFUNCS[np.matmul] = matmul     # `A @ x` with an ndarray `A` arrives as the ufunc np.matmul


def tensordot(a, b, axes=2):
    """`np.tensordot`: a transposed, reshaped matmul."""
    a, b = array_operand(a), array_operand(b)
    if isinstance(axes, numbers.Integral):
        axes_a, axes_b = list(range(ndim(a) - axes, ndim(a))), list(range(axes))
    else:
        axes_a, axes_b = ([x] if isinstance(x, numbers.Integral) else list(x) for x in axes)
    axes_a = [normalize_axis(i, ndim(a)) for i in axes_a]
    axes_b = [normalize_axis(i, ndim(b)) for i in axes_b]
    if [shape(a)[i] for i in axes_a] != [shape(b)[i] for i in axes_b]:
        raise ValueError("shape-mismatch for sum")
    free_a = [i for i in range(ndim(a)) if i not in axes_a]
    free_b = [i for i in range(ndim(b)) if i not in axes_b]
    k = int(np.prod([shape(a)[i] for i in axes_a]))
    out_shape = tuple(shape(a)[i] for i in free_a) + tuple(shape(b)[i] for i in free_b)
    a2 = reshape(transpose(a, free_a + axes_a), (-1, k))
    b2 = reshape(transpose(b, axes_b + free_b), (k, -1))
    return reshape(C.matmul(a2, b2), out_shape)


def dot(a, b, out=None):
    """`np.dot`."""
    refuse("dot", out=out)
    a, b = array_operand(a), array_operand(b)     # a Python number as NumPy's array of it
    if ndim(a) == 0 or ndim(b) == 0:
        return E.multiply(a, b)
    if ndim(a) <= 2 and ndim(b) <= 2:
        return matmul(a, b)
    return tensordot(a, b, ([ndim(a) - 1], [builtins.max(ndim(b) - 2, 0)]))


def vdot(a, b, /):
    """`np.vdot`: the dot product of the flattened arrays, the first one conjugated."""
    return matmul(ravel(_conjugated(a)), ravel(b))


def inner(a, b, /):
    """`np.inner`: contraction over the last axes."""
    a, b = array_operand(a), array_operand(b)
    if ndim(a) == 0 or ndim(b) == 0:
        return E.multiply(a, b)
    return tensordot(a, b, ([ndim(a) - 1], [ndim(b) - 1]))


def outer(a, b, out=None):
    """`np.outer`."""
    refuse("outer", out=out)
    return E.multiply(reshape(ravel(a), (-1, 1)), reshape(ravel(b), (1, -1)))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """`np.trace`."""
    refuse("trace", out=out, dtype=dtype)
    return sum(diagonal(a, offset, axis1, axis2), axis=-1)


def kron(a, b):
    """`np.kron`."""
    a, b = array_operand(a), array_operand(b)
    n = builtins.max(ndim(a), ndim(b))
    sa, sb = (1,) * (n - ndim(a)) + shape(a), (1,) * (n - ndim(b)) + shape(b)
    a = reshape(a, tuple(d for k in sa for d in (k, 1)))
    b = reshape(b, tuple(d for k in sb for d in (1, k)))
    return reshape(E.multiply(a, b), tuple(i * j for i, j in zip(sa, sb)))


def matrix_transpose(x, /):
    """`np.matrix_transpose`: the last two axes swapped."""
    x = operand(x)
    if ndim(x) < 2:
        raise ValueError("Input array must be at least 2-dimensional")
    return swapaxes(x, -1, -2)


def _core_dimensions(name, signature, a, b, dims, contracted=None):
    """NumPy's checks of a gufunc's operands: each has at least its `dims` core dimensions
    (a scalar is not broadcast), and the contracted ones (a's and b's axes `contracted`)
    agree in size (a length 1 is not broadcast either)."""
    for k, (x, d) in enumerate(zip((a, b), dims)):
        if ndim(x) < d:
            raise ValueError(f"{name}: Input operand {k} does not have enough dimensions (has "
                             f"{ndim(x)}, gufunc core with signature {signature} requires {d})")
    if contracted is not None:
        m, n = shape(a)[contracted[0]], shape(b)[contracted[1]]
        if m != n:
            raise ValueError(f"{name}: Input operand 1 has a mismatch in its core dimension 0, "
                             f"with gufunc signature {signature} (size {n} is different from "
                             f"{m})")


def vecdot(x1, x2, /, *, axis=-1, **kwargs):
    """`np.vecdot`: dot products of vectors along `axis` (the first conjugated), broadcasting
    the others."""
    refuse("vecdot", **kwargs)
    a, b = array_operand(x1), array_operand(x2)
    _core_dimensions("vecdot", "(n),(n)->()", a, b, (1, 1))
    a, b = (moveaxis(x, normalize_axis(axis, ndim(x)), -1) for x in (a, b))   # each its own
    _core_dimensions("vecdot", "(n),(n)->()", a, b, (1, 1), (-1, -1))
    products = E.multiply(_conjugated(a), b)
    return sum(products, axis=-1, dtype=products.dtype)     # (int8 stays int8, as in NumPy)


def matvec(x1, x2, /, **kwargs):
    """`np.matvec`: matrix-vector products over the leading (broadcast) axes."""
    refuse("matvec", **kwargs)
    a, b = array_operand(x1), array_operand(x2)
    _core_dimensions("matvec", "(m,n),(n)->(m)", a, b, (2, 1), (-1, -1))
    out = matmul(a, reshape(b, shape(b) + (1,)))
    return reshape(out, shape(out)[:-1])


def vecmat(x1, x2, /, **kwargs):
    """`np.vecmat`: products of the conjugated vectors with the matrices, over the leading
    (broadcast) axes."""
    refuse("vecmat", **kwargs)
    a, b = _conjugated(array_operand(x1)), array_operand(x2)
    _core_dimensions("vecmat", "(n),(n,m)->(m)", a, b, (1, 2), (-1, -2))
    out = matmul(reshape(a, shape(a)[:-1] + (1, shape(a)[-1])), b)
    return reshape(out, shape(out)[:-2] + shape(out)[-1:])


UFUNCS.update({f: fn for f, fn in ((getattr(np, name, None), globals()[name])
                                   for name in ("vecdot", "matvec", "vecmat")) if f is not None})


def _explicit_subscripts(subscripts, operands):
    """NumPy einsum subscripts in explicit form, with ellipses spelled out as letters."""
    subscripts = subscripts.replace(" ", "")
    inputs, arrow, output = subscripts.partition("->")
    inputs = inputs.split(",")
    if len(inputs) != len(operands):
        raise ValueError("einsum: more operands were provided than specified in the subscripts"
                         if len(operands) > len(inputs) else
                         "einsum: fewer operands were provided than specified in the subscripts")
    used = set(subscripts) - set(".,->")
    spare = [c for c in string.ascii_letters if c not in used]
    ell_len = builtins.max([ndim(x) - len(s.replace("...", "")) for s, x in zip(inputs, operands)
                            if "..." in s] or [0])
    ell = "".join(spare[:ell_len])
    expanded = []
    for s, x in zip(inputs, operands):
        if "..." in s:
            k = ndim(x) - len(s.replace("...", ""))
            s = s.replace("...", ell[ell_len - k:] if k else "")
        if len(s) != ndim(x):
            raise ValueError(f"einsum: operand has {ndim(x)} dimensions but subscripts {s!r}")
        expanded.append(s)
    if arrow:
        output = output.replace("...", ell)
    else:
        counts = {c: "".join(expanded).count(c) for c in "".join(expanded)}
        output = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return ",".join(expanded) + "->" + output


def _subscripts_from_lists(args):
    """einsum's operand-list form `(a, [0, 1], b, [1, 2], [0, 2])` as subscripts and
    operands."""
    output = args[-1] if len(args) % 2 else None
    operands, sublists = args[0:len(args) - len(args) % 2:2], args[1::2]

    def letters(sublist):
        return "".join("..." if k is Ellipsis else string.ascii_letters[k] for k in sublist)
    subscripts = ",".join(letters(s) for s in sublists)
    return subscripts + ("" if output is None else "->" + letters(output)), operands


def einsum(subscripts, *operands, out=None, optimize=False, **kwargs):
    """`np.einsum` (explicit and implicit subscripts, ellipsis, the operand-list form)."""
    refuse("einsum", out=out, **{k: v for k, v in kwargs.items() if k != "casting"})
    if not isinstance(subscripts, str):
        subscripts, operands = _subscripts_from_lists((subscripts,) + operands)
    ops = [operand(x) for x in operands]
    spec = _explicit_subscripts(subscripts, ops)
    # Broadcast size-1 dimensions of a letter that other operands have of another size
    # (0 included).
    sizes = {}
    for sub, x in zip(spec.split("->")[0].split(","), ops):
        for c, d in zip(sub, shape(x)):
            sizes[c] = d if sizes.get(c, 1) == 1 else sizes[c]
    ops = [broadcast_to(x, tuple(sizes[c] for c in sub))
           for sub, x in zip(spec.split("->")[0].split(","), ops)]
    return C.einsum(*ops, spec=spec)
