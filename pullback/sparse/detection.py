"""Sparsity patterns from the program: which output elements depend on which input elements.

`jacobian_sparsity(f, x)` stages f at x's shape and dtype (the other arguments are
constants of the program) and carries, equation by equation, a boolean dependency matrix
per variable: row k holds the elements of x that the variable's element k depends on. Each
primitive's `sparsity` kind says how dependencies flow through it (`RULES`); the
`hessian_sparsity` of f is the Jacobian pattern of its staged gradient, symmetrised.

The patterns are *global*: the program does not depend on x's values (staging refuses
Python control flow on them), so they hold at every x -- both branches of a `where`
count, and only the zeros of the program's constants are skipped. They are
*conservative*: a primitive with no exact rule makes each element of its outputs depend
on everything its inputs depend on, and `sparsity_listing` names it.
"""
import math
from typing import Callable

import numpy as np
import scipy.sparse

from ..core.indexing import index_tuple
from ..core.primitive import ZERO
from ..errors import ConcretizationError, PatternError, SparseStructureError
from ..ir.jit import make_ir
from ..ir.program import Literal
from ..operators import grad

# Dense structure tensors of an einsum are built only up to this many elements; beyond,
# its outputs depend on everything its operands depend on.
EINSUM_STRUCTURE_LIMIT = 2 * 10**7


def jacobian_sparsity(f: Callable, x, *args) -> scipy.sparse.csr_matrix:
    """The boolean pattern of the Jacobian of `f` with respect to x (rows: f(x)'s elements,
    columns: x's, both in C order), valid at every x.

    >>> import numpy as np
    >>> jacobian_sparsity(lambda x: x[1:] - x[:-1] ** 2, np.ones(4)).toarray().astype(int)
    array([[1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])
    """
    return _detect(f, x, args, "jacobian_sparsity")[0]


def hessian_sparsity(f: Callable, x, *args) -> scipy.sparse.csr_matrix:
    """The boolean, symmetric pattern of the Hessian of a scalar `f` with respect to x,
    valid at every x: the Jacobian pattern of f's staged gradient, symmetrised.

    >>> import numpy as np
    >>> f = lambda x: np.sum((x[1:] - x[:-1] ** 2) ** 2)
    >>> hessian_sparsity(f, np.ones(3)).toarray().astype(int)
    array([[1, 1, 0],
           [1, 1, 1],
           [0, 1, 1]])
    """
    pattern = _detect(grad(f), x, args, "hessian_sparsity")[0]
    return (pattern + pattern.T).tocsr()


def sparsity_listing(f: Callable, x, *args, hessian: bool = False) -> str:
    """The equations of f's program (of its gradient, with `hessian=True`) whose outputs
    fell back to depending on everything their inputs depend on: no exact rule."""
    fallbacks = _detect(grad(f) if hessian else f, x, args, "sparsity_listing")[1]
    if not fallbacks:
        return "every equation has an exact sparsity rule"
    return "\n".join(fallbacks)


# ------------------------------------------------------------------ propagation

def _detect(f, x, args, function):
    x = np.asarray(x) if isinstance(x, float) else x
    if not isinstance(x, (np.ndarray, np.generic)):
        raise SparseStructureError(f"{function} differentiates with respect to one NumPy "
                                   f"array x, got a {type(x).__name__}.")
    try:
        program = make_ir(lambda x: f(x, *args), optimized=True)(x)
    except ConcretizationError as error:
        raise PatternError(
            f"{function}: f's program depends on the values of x ({error}). A pattern valid "
            "at every x needs the same program for every x: select values with np.where "
            "(both branches then count) instead of Python `if`s on them, or give the pattern "
            "yourself (pattern=...).") from None
    if len(program.outvars) != 1:
        raise SparseStructureError(f"{function}: f must return one array, got "
                                   f"{len(program.outvars)} outputs.")
    n = math.prod(x.shape)
    deps = {program.invars[0]: scipy.sparse.identity(n, dtype=bool, format="csr")}
    values = dict(zip(program.constvars, program.consts))
    fallbacks = []
    for eq in program.equations:
        inputs = [None if type(v) is Literal else deps.get(v) for v in eq.inputs]
        if not eq.primitive.differentiable or all(d is None for d in inputs):
            continue
        rule = RULES.get(eq.primitive.sparsity)
        outs = rule(eq, inputs, values, n) if rule is not None else None
        if outs is None:
            fallbacks.append(f"{eq.primitive.name}: no exact sparsity rule"
                             + (f" ({eq.primitive.sparsity})" if rule is not None else "")
                             + ": each output element depends on all its inputs depend on")
            outs = _everything(eq, inputs, n)
        deps.update(zip(eq.outputs, outs))
    out = program.outvars[0]
    size = math.prod(out.aval.shape) if type(out) is not Literal else 1
    pattern = deps.get(out) if type(out) is not Literal else None
    if pattern is None:
        pattern = scipy.sparse.csr_matrix((size, n), dtype=bool)
    return pattern.tocsr(), fallbacks


def _size(var):
    return math.prod(var.aval.shape)


def _select(rows, source_size):
    """The matrix selecting `rows` (one source index per output element; -1: none)."""
    keep = rows >= 0
    return scipy.sparse.csr_matrix(
        (np.ones(int(keep.sum()), bool), (np.nonzero(keep)[0], rows[keep])),
        shape=(rows.size, source_size))


def _broadcast_rows(var, shape):
    """For each element of `shape`, the element of var's array that broadcasts to it."""
    ids = np.arange(_size(var)).reshape(var.aval.shape)
    return np.broadcast_to(ids, shape).reshape(-1)


def _union(matrices, shape):
    present = [m for m in matrices if m is not None]
    if not present:
        return None
    total = present[0]
    for m in present[1:]:
        total = total + m
    return total


def _everything(eq, inputs, n):
    """No exact rule: every element of every output depends on all the inputs depend on."""
    present = [d for d in inputs if d is not None]
    row = scipy.sparse.csr_matrix(np.zeros((1, n), bool))
    for d in present:
        row = row + scipy.sparse.csr_matrix(d.sum(axis=0) > 0)
    return [scipy.sparse.csr_matrix(np.ones((_size(v), 1), bool)) @ row for v in eq.outputs]


# ---------------------------------------------------------------------- rules
# Each takes (equation, input dependencies (None: a constant), constant values, n) and
# returns the outputs' dependencies, or None where it cannot be exact.

def _elementwise(eq, inputs, values, n):
    shape = eq.outputs[0].aval.shape
    terms = []
    for var, dep, partial in zip(eq.inputs, inputs, eq.primitive.partials):
        if dep is None or (isinstance(partial, (int, float)) and partial == 0):
            continue
        terms.append(dep if var.aval.shape == shape
                     else _select(_broadcast_rows(var, shape), _size(var)) @ dep)
    return [_union(terms, shape)]


def _select_branches(eq, inputs, values, n):
    shape = eq.outputs[0].aval.shape
    terms = [_select(_broadcast_rows(var, shape), _size(var)) @ dep
             for var, dep in zip(eq.inputs[1:], inputs[1:]) if dep is not None]
    return [_union(terms, shape)]


def _same(eq, inputs, values, n):
    return [inputs[0]]


def _gather(eq, inputs, values, n):
    """Each output element is one element of the floating inputs or zero: the primitive's
    jvp, applied to a tangent of element ids, says which."""
    primals, tangents, stacked, offset = [], [], [], 0
    for var, dep in zip(eq.inputs, inputs):
        if type(var) is Literal:
            primals.append(var.value)
            tangents.append(ZERO)
        elif np.dtype(var.aval.dtype).kind == "f":
            size = _size(var)
            primals.append(np.zeros(var.aval.shape, var.aval.dtype))
            tangents.append(np.arange(offset + 1, offset + size + 1, dtype=np.float64)
                            .reshape(var.aval.shape))
            stacked.append(dep if dep is not None else scipy.sparse.csr_matrix((size, n), dtype=bool))
            offset += size
        elif var in values:                          # constant index arrays
            primals.append(values[var])
            tangents.append(ZERO)
        else:
            return None                              # traced indices: no global pattern
    with np.errstate(all="ignore"):
        _, tangent = eq.primitive.jvp(primals, tangents, **eq.params)
    rows = np.asarray(tangent).reshape(-1).astype(np.int64) - 1
    return [_select(rows, offset) @ scipy.sparse.vstack(stacked, format="csr")]


def _constant_arrays(eq, first, values):
    arrays = eq.inputs[first:]
    if not all(v in values for v in arrays):
        return None
    return [values[v] for v in arrays]


def _positions(eq, shape, arrays, region_var):
    """The positions (in an array of `shape`) the index writes, and for each the element
    of `region_var` (broadcast to the indexed region) written there."""
    ids = np.arange(math.prod(shape)).reshape(shape)
    positions = ids[index_tuple(eq.params["index"], arrays)]
    sources = np.broadcast_to(np.arange(_size(region_var)).reshape(region_var.aval.shape)
                              if type(region_var) is not Literal else 0, positions.shape)
    return positions.reshape(-1), np.asarray(sources).reshape(-1)


def _scattered(positions, sources, size_out, dep, n):
    if dep is None:
        return None
    placed = scipy.sparse.csr_matrix((np.ones(positions.size, bool), (positions, sources)),
                                     shape=(size_out, dep.shape[0]))
    return placed @ dep


def _embed(eq, inputs, values, n):
    arrays = _constant_arrays(eq, 1, values)
    if arrays is None:
        return None
    shape = tuple(eq.params["shape"])
    positions, sources = _positions(eq, shape, arrays, eq.inputs[0])
    return [_scattered(positions, sources, math.prod(shape), inputs[0], n)]


def _scatter(replace):
    def rule(eq, inputs, values, n):
        arrays = _constant_arrays(eq, 2, values)
        if arrays is None:
            return None
        shape = eq.outputs[0].aval.shape
        size = math.prod(shape)
        positions, sources = _positions(eq, shape, arrays, eq.inputs[1])
        kept = inputs[0]
        if kept is not None and replace:             # overwritten elements forget x
            rows = np.arange(size)
            rows[positions] = -1
            kept = _select(rows, size) @ kept
        return [_union([kept, _scattered(positions, sources, size, inputs[1], n)], shape)]
    return rule


def _reduce(eq, inputs, values, n):
    shape, axis = eq.inputs[0].aval.shape, tuple(eq.params["axis"])
    kept = tuple(1 if i in axis else d for i, d in enumerate(shape))
    if not shape:                                    # a 0-d reduction: the identity
        return [inputs[0]]
    coordinates = np.indices(shape).reshape(len(shape), -1)
    coordinates[list(axis)] = 0
    groups = np.ravel_multi_index(tuple(coordinates), kept)
    size = _size(eq.inputs[0])
    grouping = scipy.sparse.csr_matrix((np.ones(size, bool), (groups, np.arange(size))),
                                       shape=(math.prod(kept), size))
    return [grouping @ inputs[0]]


def _scan(eq, inputs, values, n):
    shape, axis = eq.inputs[0].aval.shape, eq.params["axis"]
    before, length, after = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    prefix = scipy.sparse.kron(scipy.sparse.kron(
        scipy.sparse.identity(before, dtype=bool),
        scipy.sparse.csr_matrix(np.tri(length, dtype=bool))),
        scipy.sparse.identity(after, dtype=bool), format="csr").astype(bool)  # (kron of an
    return [prefix @ inputs[0]]                                            # empty: float)


def _nonzero(var, values):
    """Where an operand may be nonzero: a constant's nonzeros, everywhere for a variable."""
    if type(var) is Literal:
        return np.asarray(var.value != 0)
    if var in values:
        return np.asarray(values[var]) != 0
    return np.ones(var.aval.shape, bool)


def _matmul(eq, inputs, values, n):
    """out[t, i, q] = sum_j a[t, i, j] b[t, j, q] (t over the batch): an element of a counts
    where b's matching element may be nonzero, and the other way round."""
    a, b = eq.inputs
    shape = eq.outputs[0].aval.shape
    batch, (m, k), p = shape[:-2], a.aval.shape[-2:], shape[-1]
    terms = []
    for position, (var, dep) in enumerate(zip(eq.inputs, inputs)):
        if dep is None:
            continue
        other = eq.inputs[1 - position]
        mask = np.broadcast_to(_nonzero(other, values), batch + other.aval.shape[-2:])
        t, r, c = np.nonzero(mask.reshape((-1,) + mask.shape[-2:]))
        if position == 0:            # b[t, j=r, q=c] != 0: out[t, i, q] reads a[t, i, j]
            i = np.arange(m)[:, None]
            rows, cols = (t * m + i) * p + c, (t * m + i) * k + r
        else:                        # a[t, i=r, j=c] != 0: out[t, i, q] reads b[t, j, q]
            q = np.arange(p)[:, None]
            rows, cols = (t * m + r) * p + q, (t * k + c) * p + q
        full = batch + var.aval.shape[-2:]           # the operand broadcast to the batch
        dep = _select(_broadcast_rows(var, full), _size(var)) @ dep
        product = scipy.sparse.csr_matrix(
            (np.ones(rows.size, bool), (rows.reshape(-1), cols.reshape(-1))),
            shape=(math.prod(shape), math.prod(full)))
        terms.append(product @ dep)
    return [_union(terms, shape)]


def _einsum(eq, inputs, values, n):
    spec = eq.params["spec"]
    operands, output = spec.split("->")
    subscripts = operands.split(",")
    out_size = _size(eq.outputs[0])
    sizes = {c: d for s, v in zip(subscripts, eq.inputs) for c, d in zip(s, v.aval.shape)}
    letters = iter(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   if c not in spec)
    terms = []
    for position, (var, dep) in enumerate(zip(eq.inputs, inputs)):
        if dep is None:
            continue
        if out_size * _size(var) > EINSUM_STRUCTURE_LIMIT:
            return None
        # structure[out, operand element] = OR over the contracted indices of the product
        # of the other operands' nonzeros, the operand's own axes tied by identities.
        args, subs, fresh = [], [], ""
        for q, (s, other) in enumerate(zip(subscripts, eq.inputs)):
            if q != position:
                subs.append(s)
                args.append(_nonzero(other, values).astype(np.float64))
        for c in subscripts[position]:
            d = next(letters)
            subs.append(c + d)
            args.append(np.eye(sizes[c]))
            fresh += d
        structure = np.einsum(",".join(subs) + "->" + output + fresh, *args) != 0
        terms.append(scipy.sparse.csr_matrix(structure.reshape(out_size, _size(var))) @ dep)
    return [_union(terms, eq.outputs[0].aval.shape)]


RULES = {"elementwise": _elementwise, "select": _select_branches, "same": _same,
         "gather": _gather, "embed": _embed, "scatter_add": _scatter(False),
         "scatter_set": _scatter(True), "reduce": _reduce, "scan": _scan, "matmul": _matmul,
         "einsum": _einsum}
