"""Batching: `vmap(f)` runs `f` once on a whole batch, as if on each example in turn.

A `BatchTracer` holds a value and the axis of that value along which the batch
runs; its `shape` is the shape of one example. Processing a primitive applies its
`batch` rule, `batch(values, dims, **params) -> (out, out_dim)`, where `dims[i]`
is the batch axis of `values[i]` or None for values shared by the whole batch.
Rules compute with primitives (or array methods), so `vmap` composes with every
other transformation in every order.
"""
from functools import wraps
from typing import Any, Callable

import numpy as np

from ..core.array_methods import array_attribute
from ..core.arrays import moveaxis, of_their_own
from ..core.engine import Trace, Tracer, new_trace
from ..errors import BatchError
from ..tree import describe, flatten, keys_in_order, unflatten


class BatchTracer(Tracer):
    __slots__ = ("value", "batch_axis")

    def __init__(self, trace, value, batch_axis):
        self._trace, self.value, self.batch_axis = trace, value, batch_axis

    def _example_shape(self):
        shape = self.value.shape
        return shape[:self.batch_axis] + shape[self.batch_axis + 1:]

    shape = array_attribute("shape", _example_shape)
    dtype = array_attribute("dtype", lambda self: self.value.dtype)

    def __repr__(self):
        return f"BatchTracer(axis={self.batch_axis}, {self.value!r})"


class BatchTrace(Trace):
    __slots__ = ()

    def process_primitive(self, primitive, args, params):
        values, dims = [], []
        for a in args:
            if type(a) is BatchTracer and a._trace is self:
                values.append(a.value)
                dims.append(a.batch_axis)
            else:
                values.append(a)
                dims.append(None)
        out, out_axis = primitive.batch(values, dims, **params)
        if primitive.multiple_results:
            return [self.wrap(o, a) for o, a in zip(out, out_axis)]
        return self.wrap(out, out_axis)

    def wrap(self, value, axis):
        return value if axis is None else BatchTracer(self, value, axis)

    def unwrap(self, value):
        """(value, batch axis or None) of a value returned by the traced function."""
        if type(value) is BatchTracer and value._trace is self:
            return value.value, value.batch_axis
        return value, None


def _axes_for(leaves_def, axes, what):
    """Broadcast an `in_axes`/`out_axes` prefix tree to one entry per leaf."""
    if axes is None or isinstance(axes, (int, np.integer)):
        return [axes] * leaves_def.num_leaves
    axes_leaves, axes_def = flatten(axes)
    if axes_def == leaves_def:
        return axes_leaves
    # A prefix: each entry of `axes` covers a whole subtree of the arguments.
    if leaves_def.kind == axes_def.kind and leaves_def.meta == axes_def.meta \
            and len(leaves_def.children) == len(axes_def.children) \
            and leaves_def.kind not in ("leaf", "none"):
        out = []
        for sub_def, sub_axes in zip(leaves_def.children, _children(axes)):
            out += _axes_for(sub_def, sub_axes, what)
        return out
    of = "argument" if what == "in_axes" else "output"
    raise BatchError(f"{what} {axes!r} does not match the structure {describe(leaves_def)}; "
                     f"give an int or None, or a tree with one entry per {of} (a prefix "
                     f"of the {of}s' structure).")


def _children(tree):
    if isinstance(tree, dict):
        return [tree[k] for k in keys_in_order(tree)]
    return list(tree)


def _normalize_axis(axis, ndim, what):
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)) \
            or not -ndim <= axis < ndim:
        raise BatchError(f"{what} is {axis!r}, but the value has {ndim} dimension(s): the batch "
                         f"axis must be an integer in [{-ndim}, {ndim}) or None.")
    return int(axis) % ndim


def _leaf_axes(leaves, treedef, in_axes):
    """The batch axis (non-negative, or None) of each argument leaf."""
    axes = _axes_for(treedef, tuple(in_axes) if isinstance(in_axes, list) else in_axes, "in_axes")
    return [_normalize_axis(a, len(_shape(x)), f"in_axes for argument leaf {i}")
            for i, (x, a) in enumerate(zip(leaves, axes))]


def _shape(x):
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def len_along(x, axis):
    """The size of array or tracer `x` along `axis`."""
    return _shape(x)[axis]


def vmap(f: Callable, in_axes: Any = 0, out_axes: Any = 0) -> Callable:
    """Vectorise `f` over a batch axis of its arguments.

    `in_axes` gives, per argument (an int, None for an argument shared by the
    whole batch, or a pytree prefix of the arguments), the axis that holds the
    batch; keyword arguments are batched along axis 0 (as in JAX). `out_axes` says
    where the batch axis goes in each output. Negative axes count from the end.
    `vmap` nests and composes with every transformation.

    >>> import numpy as np
    >>> vmap(lambda x: x @ x)(np.arange(6.0).reshape(2, 3))
    array([ 5., 50.])
    """
    @wraps(f)
    def vmapped(*args, **kwargs):
        leaves, treedef = flatten(args)
        axes = _leaf_axes(leaves, treedef, in_axes)
        keyword_leaves, keyword_def = flatten(kwargs)
        for name in keys_in_order(kwargs):
            if any(_shape(x) == () for x in flatten(kwargs[name])[0]):
                raise BatchError(
                    f"keyword argument {name!r} holds a 0-d value, but vmap batches keyword "
                    "arguments along their axis 0 (as JAX does). Pass a value shared by the "
                    "whole batch positionally, with None for it in in_axes, or close over it "
                    "(functools.partial).")
        axes += [0] * len(keyword_leaves)
        leaves += keyword_leaves
        sizes = {len_along(x, a) for x, a in zip(leaves, axes) if a is not None}
        if not sizes:
            raise BatchError("vmap needs at least one batched argument (in_axes are all None).")
        if len(sizes) > 1:
            detail = ", ".join(f"leaf {i}: {len_along(x, a)}"
                               for i, (x, a) in enumerate(zip(leaves, axes)) if a is not None)
            raise BatchError(f"vmap got different batch sizes ({detail}); every batched "
                             "argument must have the same size along its batch axis.")
        (size,) = sizes
        with new_trace(BatchTrace) as trace:
            inputs = [x if a is None else BatchTracer(trace, x, a) for x, a in zip(leaves, axes)]
            out = f(*unflatten(treedef, inputs[:treedef.num_leaves]),
                    **unflatten(keyword_def, inputs[treedef.num_leaves:]))
            out_leaves, out_def = flatten(out)
            pairs = [trace.unwrap(o) for o in out_leaves]
        targets = _axes_for(out_def, out_axes, "out_axes")
        results = []
        for (value, axis), target in zip(pairs, targets):
            if target is None:
                if axis is not None:
                    raise BatchError("out_axes is None for an output that varies over the batch; "
                                     "give it an axis.")
                results.append(value)
                continue
            if axis is None:            # the same for every example: broadcast it
                value = np.broadcast_to(value, (size,) + tuple(np.shape(value)))
                if not isinstance(value, Tracer):
                    value = value.copy()    # writable, like every other output
                axis = 0
            target = _normalize_axis(target, len(np.shape(value)), "out_axes")
            results.append(moveaxis(value, axis, target))
        return unflatten(out_def, of_their_own(results, leaves))
    return vmapped


def batch_flat(fn, values, dims):
    """(outs, out_dims) for `fn` mapping a list of arrays to a list of arrays, run once on
    a batch: `dims[i]` is the batch axis of `values[i]` (None: shared), `out_dims[k]` that
    of `outs[k]` (None: the same for every example). For rules: no checks."""
    with new_trace(BatchTrace) as trace:
        pairs = [trace.unwrap(o) for o in fn(*[trace.wrap(v, d) for v, d in zip(values, dims)])]
    return [v for v, _ in pairs], [d for _, d in pairs]


def map_examples(f: Callable, in_axes: Any = 0) -> Callable:
    """`vmap(f, in_axes)` (batch on axis 0 of each output) computed example by example.

    The slow path for code that cannot run on batched values (SciPy, loops over
    Python floats): `f` runs once per example, on slices without a batch tracer,
    and the results are stacked.
    """
    @wraps(f)
    def mapped(*args):
        leaves, treedef = flatten(args)
        axes = _leaf_axes(leaves, treedef, in_axes)
        size = next((len_along(x, a) for x, a in zip(leaves, axes) if a is not None), 0)
        if size == 0:
            raise BatchError("an empty batch cannot be mapped example by example: the "
                             "structure of the result is unknown.")
        leaves = [x if a is None else moveaxis(x, a, 0) for x, a in zip(leaves, axes)]
        results = []
        for i in range(size):
            example = [x if a is None else x[i] for x, a in zip(leaves, axes)]
            results.append(flatten(f(*unflatten(treedef, example))))
        out_def = results[0][1]
        return unflatten(out_def, [np.stack(column) for column in zip(*(r[0] for r in results))])
    return mapped
