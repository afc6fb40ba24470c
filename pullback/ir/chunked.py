"""A staged program run on Dask arrays as one task per chunk, where its leading axis allows.

A program whose every equation acts locally along the leading axis (elementwise primitives,
slices dropping a few elements at either end, and the placements that are their transposes:
embed and scatter_add, `adds_at_index`) computes each element from the inputs' elements a
bounded distance away. Run on a window of its inputs (a chunk and `depth` elements of each
neighbour) it computes the window's elements as it computes them on the whole array, except
within `depth` of a window edge that is not an edge of the whole array, where a slice's
transpose puts zeros or a neighbour's values are missing. `windows_of` finds that depth: for
every value it follows how many elements it lacks against the inputs' length (`Lead.lack`)
and how many at each end of a window may differ from the whole program's (`Lead.left`,
`Lead.right`). A reduction over the leading axis by an associative combination (a sum, max,
min, prod: `scalar_reduction`) splits there: each chunk reduces its own share of the operand
(a partial), the partials are reduced across chunks, and the equations after the reductions
that read no value along the axis (a loss's value from its sums) run on the reduced values
(the `tail`). `by_chunks` hands each chunk's window to the generated NumPy code of the
chunk-local part typed for the window's length (Dask's `map_overlap`): one task per chunk,
which frees its temporaries before the next runs and gives the chunk's share of every output
that follows the axis and its partials, where running the program through Dask's primitives
makes a task per operation and chunk whose results wait in a worker's memory for the tasks
reading them. Where a program or its inputs do not fit (a reduced value used along the axis
again, an output of another length, inputs chunked otherwise), the caller runs the program
as before (`windows_of` or `by_chunks` gives None).
"""
import operator
import pickle
import uuid
from functools import partial
from typing import NamedTuple

import numpy as np

from ..core.indexing import Slice
from ..core.primitive import ShapeDtype
from .codegen import compile_program
from .program import Program, Var, evaluate, typecheck


class Lead(NamedTuple):
    """A value along the leading axis: `lack` elements fewer than the inputs there; on a
    window, `left` and `right` elements at its ends that may differ from the whole run's."""
    lack: int
    left: int
    right: int


def _slice_ends(index):
    """(elements dropped at the start, at the end) by a leading-axis slice `x[s:-t]` whose
    other entries are slices too (axes kept in place); None for any other index."""
    if not index or not all(type(entry) is Slice for entry in index):
        return None
    first = index[0]
    start, stop = first.start or 0, first.stop
    if first.step not in (None, 1) or start < 0 or stop is not None and stop >= 0:
        return None
    return start, 0 if stop is None else -stop


def _broadcast_along(var, out_shape) -> bool:
    """Whether a value that does not follow the leading axis broadcasts along it."""
    shape = np.shape(var.value) if not isinstance(var, Var) else var.aval.shape
    return len(shape) < len(out_shape) or shape[0] == 1


def _ends(eq, ins):
    """(left, right) of the output's Lead from the inputs' Leads (None for a value that does
    not follow the leading axis), or None where the equation is not local along it."""
    prim, out = eq.primitive, eq.outputs[0].aval.shape
    if len(eq.outputs) != 1 or not out:
        return None
    if prim.family == "elementwise":
        if any(lead is None and not _broadcast_along(v, out)
               or lead is not None and v.aval.shape != out for v, lead in zip(eq.inputs, ins)):
            return None
        leads = [lead for lead in ins if lead is not None]
        return max(lead.left for lead in leads), max(lead.right for lead in leads)
    ends = _slice_ends(eq.params.get("index"))
    if ends is None:
        return None
    start, end = ends
    if prim.transpose_kind == "embedding" and len(eq.inputs) == 1:          # x[s:-t]
        return max(0, ins[0].left - start), max(0, ins[0].right - end)
    if prim.adds_at_index is None:
        return None
    into, at = prim.adds_at_index        # values added at the index into zeros or an operand
    if len(eq.inputs) != (1 if into is None else 2) or into is not None and ins[into] is None:
        return None
    if ins[at] is not None and eq.inputs[at].aval.shape[0] != out[0] - start - end:
        return None
    values = ins[at] or Lead(0, 0, 0)
    base = Lead(0, 0, 0) if into is None else ins[into]
    return max(base.left, start + values.left), max(base.right, end + values.right)


def _reduces_leading_axis(eq, lead) -> bool:
    """Whether the equation reduces a value that follows the leading axis over that axis
    (and perhaps others) by an associative combination (`scalar_reduction`), so that the
    reductions of each chunk's share, reduced again, give the whole value's."""
    prim, params = eq.primitive, eq.params
    return (lead is not None and len(eq.inputs) == 1 and prim.family == "reduction"
            and prim.scalar_reduction is not None
            and prim.scalar_reduction(np.dtype(eq.inputs[0].aval.dtype)) is not None
            and params.get("keepdims") is False and 0 in tuple(params.get("axis") or ()))


class Windows(NamedTuple):
    """How `by_chunks` runs a program: `local`, the part computed on each chunk's window
    (`depth` elements of each neighbour besides the chunk, more than `lack` elements of its
    own), whose outputs are the program's outputs that follow the leading axis, then the
    operands of `reductions` (an equation each, reducing over the leading axis); `tail`, the
    rest of the program, run on the reduced values; `outputs`, for each of the program's,
    (True, position among local's outputs) or (False, position among tail's). `key` names
    the program in the workers' caches of generated code."""
    depth: int
    lack: int
    key: str
    local: Program
    reductions: list
    tail: Program
    outputs: list


def windows_of(program: Program) -> Windows | None:
    """How to run the program on chunks of its inputs' leading axis, or None where its
    inputs differ in length there or a value it needs is not local along that axis
    (`_ends`), except reductions over it (`_reduces_leading_axis`) and values computed
    from those alone (not from values following the axis). Each output either keeps the
    inputs' leading length or is computed from reductions; `depth` is what the outputs
    need of each neighbour, and what the reductions need to be right on the chunk."""
    if not program.invars or not all(v.aval.shape for v in program.invars):
        return None
    length = program.invars[0].aval.shape[0]
    if any(v.aval.shape[0] != length for v in program.invars):
        return None
    leads = dict.fromkeys(program.invars, Lead(0, 0, 0))
    reduced, local, tail, reductions = set(), [], [], []
    for eq in program.equations:
        ins = [leads.get(v) if isinstance(v, Var) else None for v in eq.inputs]
        later = any(isinstance(v, Var) and v in reduced for v in eq.inputs)
        if later and any(lead is not None for lead in ins):
            return None                 # a reduced value used along the axis
        if later or all(lead is None for lead in ins):      # after the reductions, or
            tail.append(eq)                                 # the same on every window
            if later:
                reduced.update(eq.outputs)
            else:
                local.append(eq)
            continue
        if _reduces_leading_axis(eq, ins[0]):
            reductions.append(eq)
            reduced.add(eq.outputs[0])
            continue
        ends = _ends(eq, ins)
        if ends is None or eq.outputs[0].aval.shape[0] > length:
            return None
        local.append(eq)
        leads[eq.outputs[0]] = Lead(length - eq.outputs[0].aval.shape[0], *ends)
    if any(v not in reduced and leads.get(v, Lead(1, 0, 0)).lack for v in program.outvars):
        return None                     # an output of another length, or a constant
    along = list(dict.fromkeys(v for v in program.outvars if v not in reduced))
    operands = [leads[eq.inputs[0]] for eq in reductions]
    depth = max([max(leads[v].left, leads[v].right) for v in along]
                + [max(lead.left, lead.lack + lead.right) for lead in operands], default=0)
    ins = [eq.outputs[0] for eq in reductions]
    kept = list(dict.fromkeys(v for v in program.outvars if v in reduced))
    return Windows(
        depth, max(lead.lack for lead in leads.values()), uuid.uuid4().hex,
        Program(program.invars, program.constvars, program.consts, local,
                along + [eq.inputs[0] for eq in reductions], name=program.name),
        [(eq.primitive, eq.params) for eq in reductions],
        Program(ins, program.constvars, program.consts, tail, kept),
        [(True, along.index(v)) if v in along else (False, kept.index(v))
         for v in program.outvars])


def window_program(program: Program, length: int) -> Program:
    """The program typed for inputs `length` long on the leading axis (a window): each value
    that follows that axis as long as it is there less what it lacks on the whole arrays,
    and zeros placed into (embed's `shape`) as long as the value placed there."""
    whole = program.invars[0].aval.shape[0]
    along = set(program.invars)
    renamed = {}

    def typed(var):
        if var not in renamed:
            shape = var.aval.shape
            renamed[var] = Var(ShapeDtype((length - whole + shape[0],) + shape[1:],
                                          var.aval.dtype), var.hint, var.weak)
        return renamed[var]

    equations = []
    for eq in program.equations:
        if not any(v in along for v in eq.inputs if isinstance(v, Var)):
            equations.append(eq)
            continue
        along.add(eq.outputs[0])
        params = eq.params
        if (eq.primitive.adds_at_index or (0,))[0] is None:            # embed: into zeros
            params = {**params, "shape": typed(eq.outputs[0]).aval.shape}
        equations.append(type(eq)(eq.primitive, [typed(v) if v in along else v
                                                 for v in eq.inputs],
                                  params, [typed(eq.outputs[0])], eq.source))
    window = Program([typed(v) for v in program.invars], program.constvars, program.consts,
                     equations, [typed(v) if v in along else v for v in program.outvars],
                     names={renamed.get(v, v): name for v, name in program.names.items()},
                     name=program.name)
    typecheck(window)
    return window


_WINDOWS = {}          # (program key, window length) -> its generated code, in each worker


def _window_block(key, depth, pickled, *blocks, block_info=None):
    """A task of `by_chunks`: on one window of the inputs, the local program's outputs that
    follow the leading axis on the chunk alone, then each reduction of the chunk's share of
    its operand (with a leading axis of one, for the reductions across chunks): a tuple,
    or the `single` output itself. The program comes pickled: Dask's scheduler, which
    need not import pullback, only passes it on."""
    length = blocks[0].shape[0]
    code = _WINDOWS.get((key, length))
    local, reductions, along, single = pickle.loads(pickled)
    if code is None:
        if len(_WINDOWS) > 64:
            _WINDOWS.clear()
        code = _WINDOWS[key, length] = compile_program(window_program(local, length), "window")
    where = block_info[0]
    start = 0 if where["chunk-location"][0] == 0 else depth
    stop = length - (0 if where["chunk-location"][0] == where["num-chunks"][0] - 1 else depth)
    outs = code(*blocks)
    if single:                                   # one output: the block itself
        return outs[0][start:stop]
    return tuple([out[start:stop] for out in outs[:along]]
                 + [prim.impl(operand[start:stop], **params)[None]
                    for (prim, params), operand in zip(reductions, outs[along:])])


def _picked(blocks, position, chunks, dtype):
    """The Dask array of item `position` of each block of `blocks` (a task per chunk)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    name = f"picked-{tokenize(blocks.name, position)}"
    tail = (0,) * (len(chunks) - 1)
    layer = {(name, i) + tail: (operator.getitem, (blocks.name, i) + (0,) * (blocks.ndim - 1),
                                position) for i in range(len(chunks[0]))}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[blocks])
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


def by_chunks(program: Program, windows: Windows, args):
    """The program's outputs on Dask arrays `args`, lazily: one task per chunk runs the
    local program on a window `windows.depth` wider at each side (Dask's `map_overlap`)
    and gives the chunk's outputs and partial reductions; the partials are reduced across
    chunks (Dask's tree reductions) and the tail runs on them. None where the inputs are
    not Dask arrays of one rank chunked alike along the leading axis alone, in chunks
    longer than the depth and lack."""
    import dask.array as da
    first = args[0]
    if not all(isinstance(a, da.Array) and a.ndim == first.ndim     # (Dask aligns the
               and a.chunks[0] == first.chunks[0]                   # last axes of others)
               and all(len(c) == 1 for c in a.chunks[1:]) for a in args) \
            or min(first.chunks[0]) <= windows.depth + windows.lack:
        return None
    local = windows.local
    along = len(local.outvars) - len(windows.reductions)
    single = along == 1 and not windows.reductions
    block = partial(_window_block, windows.key, windows.depth,
                    pickle.dumps((local, windows.reductions, along, single)))
    if single:
        out = local.outvars[0].aval
        chunks = (first.chunks[0],) + tuple((n,) for n in out.shape[1:])
        dtype, meta = out.dtype, np.empty((0,) * first.ndim, out.dtype)
    else:                                        # a tuple per block, picked below
        chunks, dtype, meta = None, object, np.empty((0,) * first.ndim, object)
    blocks = (da.map_blocks(block, *args, chunks=chunks, dtype=dtype, meta=meta)
              if windows.depth == 0 else
              da.map_overlap(block, *args, depth={0: windows.depth}, boundary="none",
                             trim=False, align_arrays=False, chunks=chunks, dtype=dtype,
                             meta=meta))
    if chunks is not None:
        return [blocks]
    outs = []
    for position, var in enumerate(local.outvars):
        shape, dtype = var.aval.shape, var.aval.dtype
        if position < along:
            chunks = (first.chunks[0],) + tuple((n,) for n in shape[1:])
            outs.append(_picked(blocks, position, chunks, dtype))
            continue
        prim, params = windows.reductions[position - along]
        reduced = windows.tail.invars[position - along].aval
        partials = _picked(blocks, position, ((1,) * len(first.chunks[0]),)
                           + tuple((n,) for n in reduced.shape), reduced.dtype)
        outs.append(prim(partials, **{**params, "axis": (0,)}))
    finals = evaluate(windows.tail, *outs[along:]) if windows.tail.outvars else []
    return [outs[i] if is_local else finals[i] for is_local, i in windows.outputs]
