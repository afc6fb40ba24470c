"""The fused tier of `jit`: elementwise chains, and the reductions consuming them, as Numba loops.

NumPy evaluates `100.0 * (b - a ** 2) ** 2` one operation at a time, each a pass over
memory with a temporary array; a compiled loop computes every element of the chain at
once. `fuse` partitions an optimised program into groups: a group holds elementwise
equations whose outputs share one shape (the loop's), the reductions (sum, max, ...)
of values it computes, and the stores (embed, scatter_add at basic indices) of its
values, and nothing else. Each group becomes one equation calling a Numba kernel
(`FusedKernel`) that loops over the shape once and returns the values the rest of the
program reads. Stores through slices of step one (the cotangents of `x[1:]` and
`x[:-1]`) loop over their output instead, piece by piece, computing each element's
values at their offsets (a value stored one position further along, as the cotangent
of `x[1:]` is beside that of `x[:-1]`, carried from one element to the next): a loop
that adds into memory it reads on the next step is not vectorised. Contractions,
decompositions, indexing and every other equation stay the generated NumPy code
(ir/codegen.py writes the whole program, kernel calls included), except products of one
float64 matrix by a few columns in all (an HVP's `X @ w` and `X @ v`), which become one
loop over the matrix's rows (`thin_products`) where it measures faster than BLAS. Which
primitives fuse and how one element is written are facts on the primitives
(`emit_scalar`, `scalar_reduction`); nothing here names a primitive.

A kernel is one loop on the calling thread (a 2-D loop of vector_math calls over
C-ordered arrays: a flat function over chunks of rows, `_in_rows`). Loops split over
the CPUs (helper threads taking parts of the first dimension, chosen by timing both
ways) were measured on 2 cores and removed: forced, they took 2 to 7 times the one
loop's time whenever other processes ran (a helper waits for a CPU, and the caller for
it), and in idle runs of the speed table they showed no gain; the one loop runs at about
memory speed.

A kernel takes the arrays it writes whole as arguments (`given_outputs`) rather than
allocating them: for those of `codegen.SCRATCH_BYTES` or more the generated code passes
buffers it keeps from call to call, where the value never reaches a result (allocated in
the kernel, the MLP's 256 x 256 outputs cost a page fault per 4 KiB at every call: glibc
returns freed memory at the top of its heap to the system), and a Numba function
returning an array pays about half a microsecond to box it (the kernel returns its 0-d
results, and the rare arrays it makes itself).

Kernels are written to files in a cache directory named by a hash of their source
(`PULLBACK_CACHE`, default ~/.cache/pullback/fused), so that Numba's own cache
(`cache=True`) finds them compiled in the next process.

The first calls of a jitted function run the NumPy code (Numba is not even imported); at
call `AFTER_CALLS` a background thread fuses and compiles the program, runs it once on a
copy of that call's arguments (a group whose kernel fails to compile, or runs slower
than its NumPy code, falls back to its NumPy equations), then installs it (`tier`).
Before partitioning it probes each kind of elementwise equation not probed yet in the
process (`numpy_saving`): where NumPy runs a kind much faster per element than a Numba
loop (its AVX-512 sin, cos ... against the C library's scalar calls; float64 exp, expm1,
log, log1p, tanh, sinh, cosh, arctan, logaddexp and expit are vector_math's, which LLVM
vectorises), an equation of that kind on enough elements to pay for splitting its group
stays a NumPy call, and the rest of the group fuses around it. Numba is optional (`pip
install "pullback[fast]"`): without it, or with `PULLBACK_FUSED=0`, jit runs the NumPy
code only; where it is installed but fails to import, one `FusedTierWarning` says why.
"""
import functools
import hashlib
import importlib.util
import itertools
import math
import os
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter

import numpy as np

from ..core.indexing import Slice
from ..primitives.families import source as value_source
from .codegen import compile_program, generate
from .passes import column_reshapes, replaced_by, shared_products, split_products
from .program import Equation, Literal, Program, evaluate, gc_paused

AFTER_CALLS = 3          # the call of a signature that starts fusing its program
BACKGROUND = True        # compile in a thread (False: during that call, for tests)
MIN_GROUP = 2            # fewer equations than this in a group: NumPy code is as fast
MAX_SEGMENTS = 16        # more pieces than this: a store chain adds into zeros instead
THIN_COLUMNS = 4         # products by one matrix of this many columns in all: one kernel
THIN_ROWS = 4            # rows of the matrix such a kernel multiplies at once
# dtypes Numba computes with (not float16, nor long double)
NUMBA_INEXACT = frozenset(map(np.dtype, (np.float32, np.float64, np.complex64, np.complex128)))


def _numba_dtype(dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind in "biu" or dtype in NUMBA_INEXACT


def available() -> bool:
    """Whether the fused tier runs: Numba is installed and `PULLBACK_FUSED` is not "0"."""
    return os.environ.get("PULLBACK_FUSED", "1") != "0" and _numba_installed()


_installed = []


def _numba_installed():
    if not _installed:
        _installed.append(importlib.util.find_spec("numba") is not None)
    return _installed[0]


class FusedTierWarning(RuntimeWarning):
    """The fused tier is off in this process although Numba is installed (importing it
    failed), or it failed on a program, which runs its NumPy code."""


_imported = []           # once tried: [None], or [the error importing Numba raised]
_import_lock = threading.Lock()


def _numba_imports() -> bool:
    """Whether `import numba` works; tried once per process, and where it fails (a
    broken install, a module of the same name as one Numba needs on sys.path) one
    FusedTierWarning names the error, and jit keeps running its NumPy code."""
    with _import_lock:
        if not _imported:
            try:
                import numba  # noqa: F401
                _imported.append(None)
            except Exception as error:       # noqa: BLE001 -- any failure: report, fall back
                _imported.append(error)
                warnings.warn(f"pullback's fused tier is off: `import numba` failed with "
                              f"{type(error).__name__}: {error}. jit runs its NumPy code; fix "
                              "the Numba install (or set PULLBACK_FUSED=0 to silence this).",
                              FusedTierWarning, stacklevel=2)
        return _imported[0] is None


# ------------------------------------------------------------------ partition

def _map_element(eq):
    """Whether an equation can be one step of a fused loop: an elementwise primitive with
    a scalar emitter for these operand dtypes, writing one non-empty, non-weak array."""
    prim = eq.primitive
    if prim.emit_scalar is None or prim.multiple_results or len(eq.outputs) != 1:
        return False
    out = eq.outputs[0]
    variables = [x for x in eq.inputs if type(x) is not Literal]
    if out.weak or not variables or 0 in out.aval.shape:
        return False
    if not all(_numba_dtype(x.aval.dtype) for x in variables + [out]):
        return False
    return prim.emit_scalar(["x"] * len(eq.inputs), _operand_dtypes(eq), **eq.params) is not None


def _reduction_step(eq):
    """Whether an equation is a reduction a fused loop can accumulate (same dtype in and
    out, a non-empty operand, a scalar combine rule for that dtype)."""
    prim = eq.primitive
    if prim.scalar_reduction is None or set(eq.params) != {"axis", "keepdims"}:
        return False
    (x,), (out,) = eq.inputs, eq.outputs
    if type(x) is Literal or 0 in x.aval.shape or out.aval.dtype != x.aval.dtype:
        return False
    return _numba_dtype(x.aval.dtype) and \
        prim.scalar_reduction(np.dtype(x.aval.dtype)) is not None


def basic_positions(index, shape):
    """Where a basic index (slices and integers) of an array of `shape` reads: per
    dimension (start, step, length), length None for an integer; None for any other index."""
    if len(index) > len(shape):
        return None
    positions = []
    for entry, n in zip(tuple(index) + (Slice(None, None, None),) * (len(shape) - len(index)),
                        shape):
        if type(entry) is Slice:
            start, stop, step = slice(*entry).indices(n)
            positions.append((start, step, len(range(start, stop, step))))
        elif isinstance(entry, (int, np.integer)) and not isinstance(entry, bool) \
                and -n <= entry < n:
            positions.append((int(entry) % n, 0, None))
        else:
            return None
    return positions


def _store_step(eq, owner, readers):
    """The open group whose loop can compute an `adds_at_index` equation (embed,
    scatter_add): it adds a value of that group, of the loop's shape, at a basic index
    into zeros, into an array computed before the loop, or into such a store of the same
    loop that nothing else reads. None otherwise."""
    prim = eq.primitive
    if prim.adds_at_index is None or set(eq.params) - {"index", "shape"}:
        return None
    into, at = prim.adds_at_index
    if len(eq.inputs) != (into is not None) + 1 or type(eq.inputs[at]) is Literal:
        return None
    values, out = eq.inputs[at], eq.outputs[0]
    group = owner.get(values)
    positions = basic_positions(eq.params["index"], out.aval.shape)
    if group is None or values in group.reduced or positions is None \
            or not _numba_dtype(out.aval.dtype) \
            or tuple(p[2] for p in positions if p[2] is not None) != group.shape:
        return None
    if into is not None:
        base = eq.inputs[into]
        if type(base) is Literal or owner.get(base) not in (None, group) or (
                owner.get(base) is group and (base not in group.stores or readers[base] != 1)):
            return None
    return group


class Group:
    """Equations computed in one loop over `shape`; `reduced`: their reduction and store
    outputs (known only after the loop, so no step of the same loop reads them), `stores`
    the store outputs."""

    def __init__(self, shape):
        self.shape, self.equations, self.reduced, self.stores = shape, [], set(), set()


def partition(program: Program, min_size: int = None, leave=None) -> list:
    """The program's equations in order, with each fused group (of at least `min_size`
    equations) in place of its members: a list of Equations and Groups. `leave` maps
    kinds of elementwise equations (`probe_key`) to the seconds per element NumPy's call
    saves over a Numba loop: an equation whose saving reaches SPLIT_COST stays a NumPy call.

    A group is emitted where a later equation outside it first reads one of its values
    (or at the end): an equation reading a value of an open group of another shape, or a
    reduction of its own group, closes that group first, so that every kernel runs after
    all of its inputs exist. Linear in the number of equations.
    """
    min_size = MIN_GROUP if min_size is None else min_size
    items, open_groups, owner = [], {}, {}
    readers = Counter(x for eq in program.equations for x in eq.inputs if type(x) is not Literal)
    readers.update(x for x in program.outvars if type(x) is not Literal)

    def close(group):
        del open_groups[group.shape]
        for eq in group.equations:
            for v in eq.outputs:
                owner.pop(v, None)
        if len(group.equations) >= min_size:
            items.append(group)
        else:
            items.extend(group.equations)

    for eq in program.equations:
        variables = [x for x in eq.inputs if type(x) is not Literal]
        if _map_element(eq) and not (leave and _left_to_numpy(eq, leave)):
            shape = tuple(eq.outputs[0].aval.shape)
            for x in variables:
                group = owner.get(x)
                if group is not None and (group.shape != shape or x in group.reduced):
                    close(group)
            group = open_groups.get(shape)
            if group is None:
                group = open_groups[shape] = Group(shape)
            group.equations.append(eq)
            owner[eq.outputs[0]] = group
            continue
        group = owner.get(variables[0]) if len(variables) == 1 else None
        if group is not None and _reduction_step(eq) and variables[0] not in group.reduced:
            group.equations.append(eq)
            group.reduced.add(eq.outputs[0])
            owner[eq.outputs[0]] = group
            continue
        group = _store_step(eq, owner, readers)
        if group is not None:
            group.equations.append(eq)
            group.reduced.add(eq.outputs[0])
            group.stores.add(eq.outputs[0])
            owner[eq.outputs[0]] = group
            continue
        for x in variables:
            group = owner.get(x)
            if group is not None:
                close(group)
        items.append(eq)
    for group in list(open_groups.values()):
        close(group)
    return items


# --------------------------------------------------------------------- kernels

def _operand_dtypes(eq):
    """The dtype each operand is converted to before the operation, in the loop: for a
    ufunc, the input dtypes of the loop NumPy runs for these operands (Numba's typing of
    mixed operands differs: float32 * int32 in single precision, where NumPy converts
    both to float64); for other primitives a variable's own, a literal's (or a Python
    scalar's, a weak variable) as NumPy's weak promotion gives it with the other operands."""
    weak = [type(x) is Literal or x.weak for x in eq.inputs]
    types = [_weak_type(x) if w else np.dtype(x.aval.dtype) for x, w in zip(eq.inputs, weak)]
    ufunc = next(iter(eq.primitive.numpy_functions), None)
    if isinstance(ufunc, np.ufunc) and ufunc.nout == 1 and ufunc.nin == len(types):
        return list(_loop_dtypes(ufunc, tuple(types)))
    strong = [t for t, w in zip(types, weak) if not w]
    return [t if not w else np.result_type(_weak_value(x), *strong) if strong
            else np.asarray(_weak_value(x)).dtype for x, t, w in zip(eq.inputs, types, weak)]


def _weak_value(x):
    """A literal's value, or a weak variable's as a Python scalar of its type."""
    return x.value if type(x) is Literal else np.dtype(x.aval.dtype).type(0).item()


def _weak_type(x):
    """How a literal or weak variable takes part in NumPy's promotion: a Python int,
    float or complex as its type (weakly typed), anything else as its dtype."""
    value = _weak_value(x)
    return type(value) if type(value) in (int, float, complex) else np.asarray(value).dtype


@functools.lru_cache(maxsize=None)
def _loop_dtypes(ufunc, types):
    """The input dtypes of the loop `ufunc` runs on operands of `types`."""
    return ufunc.resolve_dtypes(types + (None,))[:-1]


def _converted(expr, have, dtype):
    """`expr`, a scalar of dtype `have`, as `dtype` (itself where they agree)."""
    if have == dtype:
        return expr
    return f"({expr} != 0)" if dtype.kind == "b" else f"np.{dtype.name}({expr})"


def _cast(dtype, expr):
    """`expr` as a scalar of `dtype` in Numba (bool values need no cast)."""
    return expr if dtype.kind == "b" else f"np.{dtype.name}({expr})"


def _accumulator_dtype(dtype):
    """Reductions of float32/complex64 accumulate in double precision (NumPy's pairwise
    sums are about as accurate; max and min are exact either way)."""
    return {"f": np.dtype(np.float64), "c": np.dtype(np.complex128)}.get(dtype.kind, dtype)


def _affine(start, step, i):
    """`start + step * i` as short source."""
    term = i if step == 1 else f"{step} * {i}"
    return term if start == 0 else f"{start} + {term}"


class FusedKernel:
    """A fused group as the primitive of one equation: `fuse` builds it, code generation
    writes its call (`emit_statements`), `__call__` runs it. Its outputs are new arrays
    (or, for 0-d ones, NumPy scalars), like the NumPy code's; `group` holds the
    equations it replaces. The arrays it writes whole are arguments after its inputs
    (`given_outputs`, their positions among its outputs), made by the caller or, for
    those of SCRATCH_BYTES or more, buffers kept from the last call (ir/codegen.py's
    `_scratch_plan`); the kernel returns only the others (`returned`: 0-d results, and
    the rare arrays it makes itself: a float32 reduction over an axis, summed in float64,
    or stores of steps other than one): a Numba function returning an array it made, or
    even one it was given, spends about half a microsecond per call boxing it (an
    unpickling of its type), a tiny kernel's whole cost."""
    emit = python_operator = emit_scalar = scalar_reduction = adds_at_index = None
    multiple_results, fresh_output, family, numpy_functions = True, True, "fused", ()

    def __init__(self, source, group, inputs, outputs, given_outputs=()):
        self.source, self.shape, self.group = source, group.shape, group.equations
        self.name = "fused_" + hashlib.sha256(source.encode()).hexdigest()[:16]
        self.scalar_inputs = [not x.aval.shape and not x.weak for x in inputs]
        self.scalar_outputs = [np.dtype(v.aval.dtype) if not v.aval.shape else None
                               for v in outputs]
        self.given_outputs = tuple(given_outputs)
        self.given_types = [(tuple(outputs[k].aval.shape), np.dtype(outputs[k].aval.dtype))
                            for k in self.given_outputs]
        self.returned = [k for k in range(len(outputs)) if k not in self.given_outputs]
        self._function = None

    def __repr__(self):
        return f"<fused kernel {self.name}>"

    @property
    def function(self):
        """The compiled kernel (Numba's dispatcher; compiles on its first call)."""
        if self._function is None:
            self._function = _load(self.name, self.source).kernel
        return self._function

    def __call__(self, *args):
        args = [np.asarray(a)[()] if s else a for a, s in zip(args, self.scalar_inputs)]
        buffers = [np.empty(shape, dtype) for shape, dtype in self.given_types]
        outs = dict(zip(self.given_outputs, buffers))
        outs.update(zip(self.returned, self.function(*self.shape, *args, *buffers) or ()))
        return [outs[k] if d is None else d.type(outs[k])
                for k, d in enumerate(self.scalar_outputs)]

    def emit_statements(self, targets, args, code):
        kernel = code.value(self, self.name)
        operands = [f"{a}[()]" if s else a for a, s in zip(args, self.scalar_inputs)]
        lines = [f"{targets[k]} = np.empty({shape}, np.{dtype.name})"
                 for k, (shape, dtype) in zip(self.given_outputs, self.given_types)
                 if targets[k] not in code.pooled]
        operands += [targets[k] for k in self.given_outputs]
        results = [code.fresh("r") if self.scalar_outputs[k] is not None else targets[k]
                   for k in self.returned]
        call = f"{kernel}.function({', '.join(list(map(str, self.shape)) + operands)})"
        lines.append(f"{', '.join(results)}, = {call}" if results else call)
        lines += [f"{targets[k]} = np.{self.scalar_outputs[k].name}({r})"
                  for k, r in zip(self.returned, results) if self.scalar_outputs[k] is not None]
        return lines


def _store_chains(group):
    """The group's stores as chains [store, store, ...]: each adds into the previous one's
    output (the first into zeros or into an array computed before the loop)."""
    chains, open_chains = [], {}
    for eq in group.equations:
        if eq.outputs[0] in group.stores:
            into, _ = eq.primitive.adds_at_index
            chain = open_chains.pop(None if into is None else eq.inputs[into], None)
            if chain is None:
                chain = []
                chains.append(chain)
            chain.append(eq)
            open_chains[eq.outputs[0]] = chain
    return chains


def _segments(chain):
    """The pieces of a store chain's output, as per-dimension ranges [(lo, hi), ...], in
    each of which every store of the chain covers all elements or none; None where a
    store has a step other than one, the output is 0-d, or pieces exceed MAX_SEGMENTS."""
    shape = tuple(chain[-1].outputs[0].aval.shape)
    cuts = [{0, n} for n in shape]
    for eq in chain:
        for dim, (start, step, length) in enumerate(
                basic_positions(eq.params["index"], shape)):
            if length is not None and step != 1:
                return None
            cuts[dim].update((start, start + (1 if length is None else length)))
    ranges = [list(zip(sorted(c), sorted(c)[1:])) for c in cuts]
    if not shape or np.prod([len(r) for r in ranges]) > MAX_SEGMENTS:
        return None
    return list(itertools.product(*ranges))


def kernel_for(group: Group, needed) -> tuple:
    """(FusedKernel, inputs, outputs) of a group: its inputs are the variables it reads
    and does not compute; its outputs the values in `needed` (read outside the group),
    its reductions and its stores.

    The kernel's main loop runs over the group's shape and writes its outputs and
    reductions; the arrays it writes whole (outputs, reductions over some axes, stores
    by pieces) are arguments after its inputs, in the order of its outputs
    (`FusedKernel.given_outputs`). A chain of stores (embed,
    scatter_add) whose slices have step one gets loops of its own over its output, one
    per piece where the same stores cover it: each element adds up the values it
    receives, computed there at the offset positions (or read where the main loop wrote
    them), so that every loop is free of read-after-write dependences through memory and
    LLVM vectorises it. Other chains add into zeros in the main loop."""
    computed = {v for eq in group.equations for v in eq.outputs}
    inputs, index = [], {}
    for eq in group.equations:
        for x in eq.inputs:
            if type(x) is not Literal and x not in computed and x not in index:
                index[x] = f"a{len(inputs)}"
                inputs.append(x)
    rank = len(group.shape)
    loops = [f"i{k}" for k in range(rank)]
    header = [f"n{k}" for k in range(rank)]
    maps = {eq.outputs[0]: eq for eq in group.equations if eq.outputs[0] not in group.reduced}
    arrays = {}                      # value -> the array the main loop writes it to
    body, outputs, returns = [], [], []

    def operand(x, dtype, at):
        """Operand x (not computed in the loop) at the loop position `at`, as `dtype`."""
        if type(x) is Literal:
            return _cast(dtype, value_source(x.value))
        shape = tuple(x.aval.shape)
        if not shape:
            return _cast(dtype, index[x]) if x.weak else \
                _converted(index[x], np.dtype(x.aval.dtype), dtype)
        lead = rank - len(shape)
        at = [at[lead + j] if n != 1 or group.shape[lead + j] == 1 else "0"
              for j, n in enumerate(shape)]
        return _converted(f"{index[x]}[{', '.join(at)}]", np.dtype(x.aval.dtype), dtype)

    def compute(values, at, prefix, lines, stored=(), read=operand):
        """Appends the lines computing `values` at loop position `at` (reading those in
        `stored` from the main loop's arrays, the operands by `read`) to `lines`; {value:
        its expression}."""
        wanted = set(values)
        for out in reversed(list(maps)):
            if out in wanted and out not in stored:
                wanted.update(x for x in maps[out].inputs if x in maps)
        names = {}
        for out, eq in maps.items():
            if out not in wanted:
                continue
            if out in stored:
                names[out] = f"{arrays[out]}[{', '.join(at)}]"
                continue
            dtypes = _operand_dtypes(eq)
            args = [_converted(names[x], np.dtype(x.aval.dtype), d) if x in names
                    else read(x, d, at) for x, d in zip(eq.inputs, dtypes)]
            names[out] = f"{prefix}{len(names)}"
            lines.append(f"{names[out]} = "
                         f"{_cast(np.dtype(out.aval.dtype), eq.primitive.emit_scalar(args, dtypes, **eq.params))}")
        return names

    chains = _store_chains(group)
    pieces = [_segments(chain) for chain in chains]
    main_values = [v for v in maps if v in needed]
    main_values += [eq.inputs[0] for eq in group.equations
                    if eq.outputs[0] in group.reduced and eq.outputs[0] not in group.stores]
    main_values += [eq.inputs[eq.primitive.adds_at_index[1]]
                    for chain, p in zip(chains, pieces) if p is None for eq in chain]
    local = compute(main_values, loops, "v", body)
    setup = []         # lines making the arrays the loops write
    given, given_names = [], []      # outputs the caller passes (arrays written whole)

    def made(name):
        given.append(len(outputs))
        given_names.append(name)
    for out in maps:
        if out in needed:
            if rank:
                arrays[out] = array = f"o{len(returns)}"
                made(array)
                body.append(f"{array}[{', '.join(loops)}] = {local[out]}")
            returns.append(arrays.get(out, local[out]))
            outputs.append(out)
    for eq in group.equations:
        out = eq.outputs[0]
        if out not in group.reduced or out in group.stores:
            continue
        dtype = np.dtype(out.aval.dtype)
        identity, combine = eq.primitive.scalar_reduction(dtype)
        acc_dtype = _accumulator_dtype(dtype)
        axis, keepdims = eq.params["axis"], eq.params["keepdims"]
        kept = [k for k in range(rank) if k not in axis]
        name = f"s{len(returns)}"
        if kept or keepdims and rank:
            shape = [f"n{k}" if k in kept else "1" for k in range(rank)] if keepdims \
                else [f"n{k}" for k in kept]
            at = [loops[k] if k in kept else "0" for k in range(rank)] if keepdims \
                else [loops[k] for k in kept]
            if acc_dtype == dtype:      # given, and filled with the identity first
                line = f"{name}[:] = {_cast(acc_dtype, identity)}"
                made(name)
                returns.append(name)
            else:
                line = f"{name} = np.full(({', '.join(shape)},), " \
                       f"{_cast(acc_dtype, identity)}, np.{acc_dtype.name})"
                returns.append(f"{name}.astype(np.{dtype.name})")
            target = f"{name}[{', '.join(at)}]"
        else:
            line = f"{name} = {_cast(acc_dtype, identity)}"
            target = name
            returns.append(_cast(dtype, name))
        setup.append(line)
        body.append(f"{target} = {_cast(acc_dtype, combine.format(target, local[eq.inputs[0]]))}")
        outputs.append(out)
    gathers = []
    for k, (chain, segments) in enumerate(zip(chains, pieces)):
        out = chain[-1].outputs[0]
        name = f"z{k}"
        if segments is None:
            _scatter_chain(chain, name, loops, local, index, setup, body)
        else:
            if out in needed:
                made(name)
            else:
                setup.append(f"{name} = np.empty({tuple(out.aval.shape)}, "
                             f"np.{np.dtype(out.aval.dtype).name})")
            gathers.append((chain, name, segments))
        if out in needed:
            returns.append(name)
            outputs.append(out)
    lines = []
    if body:
        indent = ""
        for k in range(rank):
            lines.append(f"{indent}for i{k} in range(n{k}):")
            indent += "    "
        lines += [indent + line for line in body]
    for chain, name, segments in gathers:
        lines += _gather_chain(chain, name, segments, compute, set(arrays), index)
    helper = None
    if rank == 2 and body and not gathers and len(returns) == len(arrays) \
            and any("vm." in line for line in body) and group.shape[1] > 1:
        def flat(read):
            flat_lines = []
            return compute(main_values, ["i"], "v", flat_lines, read=read), flat_lines
        helper, lines = _in_rows(group.shape, inputs, index, arrays, lines, flat, operand)
    source = _module(header + [index[x] for x in inputs] + given_names, setup + lines,
                     [r for k, r in enumerate(returns) if k not in given], helper=helper)
    return FusedKernel(source, group, inputs, outputs, given), inputs, outputs


ROWS_CHUNK = 4096        # elements per call of a kernel's flat row function


def _in_rows(shape, inputs, index, arrays, loops, flat, operand):
    """(the flat row function, the kernel's lines) for a loop over a 2-D shape of
    vector_math calls: inside a loop over rows LLVM keeps reloading their ~20 constants
    (a `movabs` and a `vbroadcastsd` per constant and iteration: the MLP's tanh kernel
    176 µs against 143 for a flat loop over the same elements), so the kernel calls a
    function looping over chunks of ROWS_CHUNK elements of C-ordered arrays, each row
    operand tiled over a chunk's rows, which LLVM does not inline (Numba marks a
    function `noinline` when it carries debug information: `debug=True`; inlined, the
    loop is the nested one again; debug would also check bounds, so `boundscheck=False`):
    154 µs. The nested loops stay for other layouts (a transposed operand), and where an
    operand is a column: (None, loops) then."""
    n0, n1 = shape
    tiles, full = {}, []
    for x in inputs:
        if tuple(x.aval.shape) == tuple(shape):
            full.append(x)
        elif tuple(x.aval.shape) in ((n1,), (1, n1)) and n0 > 1:
            tiles[x] = f"t{len(tiles)}"
        elif x.aval.shape:
            return None, loops

    def read(x, dtype, at):
        if type(x) is Literal or not x.aval.shape:
            return operand(x, dtype, at)
        return _converted(f"{tiles[x]}[i]" if x in tiles else f"f{index[x][1:]}[i]",
                          np.dtype(x.aval.dtype), dtype)
    names, body = flat(read)
    parameters = ["m"] + [f"f{index[x][1:]}" for x in full] + list(tiles.values()) + \
        [index[x] for x in inputs if not x.aval.shape] + [f"g{a[1:]}" for a in arrays.values()]
    helper = ["for i in range(m):"] + [f"    {line}" for line in body] + \
        [f"    g{array[1:]}[i] = {names[value]}" for value, array in arrays.items()]
    contiguous = " and ".join(f"{a}.flags.c_contiguous" for a in
                              [index[x] for x in full] + list(arrays.values()))
    chunk = [f"rows = max(1, {ROWS_CHUNK} // n1)"]
    for x, tile in tiles.items():
        chunk += [f"{tile} = np.empty(rows * n1, {index[x]}.dtype)",
                  "for r in range(rows):",
                  f"    {tile}[r * n1:(r + 1) * n1] = {index[x]}"
                  + ("" if tuple(x.aval.shape) == (n1,) else "[0]")]
    chunk += [f"f{index[x][1:]} = np.ravel({index[x]})" for x in full]
    chunk += [f"g{a[1:]} = {a}.reshape(-1)" for a in arrays.values()]
    chunk += ["for start in range(0, n0, rows):",
              "    m = min(rows, n0 - start) * n1",
              "    s = start * n1",
              "    kernel_rows(" + ", ".join(
                  ["m"] + [f"f{index[x][1:]}[s:s + m]" for x in full] + list(tiles.values())
                  + [index[x] for x in inputs if not x.aval.shape]
                  + [f"g{a[1:]}[s:s + m]" for a in arrays.values()]) + ")"]
    lines = [f"if {contiguous}:"] + [f"    {line}" for line in chunk] + ["else:"] + \
        [f"    {line}" for line in loops]
    return (parameters, helper), lines


def _vector_math_version() -> str:
    """A hash of ir/vector_math.py's source, written into every kernel module that calls
    it: Numba's disk cache does not see a change in a function a kernel calls, so a
    change there must change the kernel's file name."""
    with open(os.path.join(os.path.dirname(__file__), "vector_math.py"), "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()[:16]


def _module(parameters, body, returns, fastmath=None, helper=None) -> str:
    """Source of a module defining the Numba function `kernel` (its body lines,
    returning the tuple of `returns`, or nothing where there are none; `fastmath`: the
    flags LLVM may use, source text); it releases the GIL, so other threads run
    meanwhile. A body calling `vm.` functions imports ir/vector_math (its version in a
    comment). `helper`: (parameters, body) of the function `kernel_rows` it calls,
    compiled with debug information so that LLVM does not inline it, without bounds
    checks (`_in_rows`)."""
    lines = ["import numpy as np", "import numba"]
    if any("vm." in line for line in body + (helper[1] if helper else [])):
        lines.append(f"from pullback.ir import vector_math as vm  # {_vector_math_version()}")
    flags = f", fastmath={fastmath}" if fastmath else ""
    if helper:
        lines += ["", '@numba.njit(cache=True, error_model="numpy", nogil=True, debug=True, '
                      'boundscheck=False)',
                  f"def kernel_rows({', '.join(helper[0])}):"]
        lines += [f"    {line}" for line in helper[1]]
    lines += ["",
             f'@numba.njit(cache=True, error_model="numpy", nogil=True{flags})',
             f"def kernel({', '.join(parameters)}):"]
    lines += [f"    {line}" for line in body]
    if returns:
        lines.append(f"    return ({''.join(r + ', ' for r in returns)})")
    return "\n".join(lines) + "\n"


def _scatter_chain(chain, name, loops, local, index, setup, body):
    """A store chain in the main loop: its values added into zeros (or a copy of the
    array it starts from) at the positions of each store."""
    out = chain[-1].outputs[0]
    dtype = np.dtype(out.aval.dtype)
    into, _ = chain[0].primitive.adds_at_index
    setup.append(f"{name} = np.zeros({tuple(out.aval.shape)}, np.{dtype.name})" if into is None
                 else f"{name} = np.copy({index[chain[0].inputs[into]]})")
    for eq in chain:
        loop = iter(loops)
        at = [str(start) if length is None else _affine(start, step, next(loop))
              for start, step, length in basic_positions(eq.params["index"], out.aval.shape)]
        target = f"{name}[{', '.join(at)}]"
        value = local[eq.inputs[eq.primitive.adds_at_index[1]]]
        body.append(f"{target} = {_cast(dtype, f'{target} + {value}')}")


def _gather_chain(chain, name, segments, compute, stored, index):
    """The lines of a store chain computed over its output, piece by piece: each element
    is the array the chain starts from (or zero), plus each value stored there, in the
    chain's order (so rounding, signed zeros and NaN are the NumPy code's).

    A value stored one position further along the last dimension than another store's
    (the cotangents of `x[1:]` and `x[:-1]`) is computed beside that store's, where the
    two share their work, and carried to the next step (`_carried`); only its first is
    computed before the loop. LLVM vectorises the carried value (a first-order
    recurrence) where it is computed before the element is stored; without it the shared
    terms are computed twice per element."""
    out = chain[-1].outputs[0]
    dtype, shape = np.dtype(out.aval.dtype), tuple(out.aval.shape)
    into, _ = chain[0].primitive.adds_at_index
    positions = [basic_positions(eq.params["index"], shape) for eq in chain]
    lines, where = [], [f"j{d}" for d in range(len(shape))]

    def at(places, last=None):
        """The loop position a store reads at (the last index replaced by `last`)."""
        index = where[:-1] + [where[-1] if last is None else str(last)]
        return [f"{w} - {start}" if start else w
                for w, (start, _, length) in zip(index, places) if length is not None]
    for segment in segments:
        indent, block, first = "", [], []
        covering = [k for k, places in enumerate(positions)
                    if all(start <= lo and hi <= start + (1 if length is None else length)
                           for (lo, hi), (start, _, length) in zip(segment, places))]
        carried = _carried([positions[k] for k in covering])
        for d, (lo, hi) in enumerate(segment):
            if d == len(segment) - 1:
                for j, lead in carried.items():
                    k = covering[j]
                    value = chain[k].inputs[chain[k].primitive.adds_at_index[1]]
                    term = compute([value], at(positions[k], lo), f"{name}f{k}_", first,
                                   stored)[value]
                    first.append(f"{name}c{k} = {term}")
                lines += [indent + line for line in first]
            lines.append(f"{indent}for j{d} in range({lo}, {hi}):")
            indent += "    "
        following = {}      # carried store -> its value at the next step, computed first
        for j, lead in carried.items():
            k = covering[j]
            value = chain[k].inputs[chain[k].primitive.adds_at_index[1]]
            following[k] = compute([value], at(positions[covering[lead]]), f"{name}n{k}_",
                                   block, stored)[value]
        base = chain[0].inputs[into] if into is not None else None
        total = _cast(dtype, "0") if base is None else \
            _cast(dtype, f"{index[base]}[{', '.join(where)}]")
        for j, k in enumerate(covering):
            value = chain[k].inputs[chain[k].primitive.adds_at_index[1]]
            term = f"{name}c{k}" if j in carried else \
                compute([value], at(positions[k]), f"{name}w{k}_", block, stored)[value]
            total = _cast(dtype, term) if k == 0 and base is None else \
                _cast(dtype, f"{total} + {term}")
            block.append(f"{name}t = {total}")
            total = f"{name}t"
        block.append(f"{name}[{', '.join(where)}] = {total}")
        block += [f"{name}c{k} = {term}" for k, term in following.items()]
        lines += [indent + line for line in block]
    return lines


def _carried(places):
    """{j: i}: store j reads one position further along the last dimension than store i
    (and at i's positions elsewhere), so its value at the next step is computed now, at
    i's position; i is a store whose value is computed in the loop, not carried."""
    def key(p):
        return tuple((start, length is None) for start, _, length in p)
    computed = {key(p): i for i, p in reversed(list(enumerate(places)))}
    carried = {}
    for j, p in enumerate(places):
        start, _, length = p[-1]
        if length is None or j in carried.values():
            continue
        lead = computed.get(key(p[:-1] + [(start - 1, 1, 1)]))
        if lead is not None and lead not in carried:
            carried[j] = lead
    return carried


# ------------------------------------------------------------------ thin products

def thin_products(program: Program) -> Program:
    """The program with each group of products of one float64 matrix A by narrow
    operands -- `A @ b1`, `A @ b2`, ... (`passes.shared_products`: an HVP's products of
    the data by the point and the direction), or `A @ B` alone -- of 2 to THIN_COLUMNS
    columns in all, as one kernel (`thin_kernel`) that reads each row of A once for all
    of them. BLAS reads A once per product (or, for a merged product, may be slower
    still: OpenBLAS's Haswell dgemm with two columns takes twice its two matrix-vector
    products' time); the generated code keeps the products where they measure faster.
    A product of vectors, staged between reshapes to and from one-column matrices,
    reads and writes the vectors."""
    equations, groups = shared_products(program)
    made, read = column_reshapes(equations, program.outvars)
    steps, taken = {}, set()
    for shared, side, members in groups:
        members = [eq for eq in members if id(eq) not in taken]
        if side or np.dtype(shared.aval.dtype) != np.float64 or not \
                2 <= sum(eq.inputs[1].aval.shape[1] for eq in members) <= THIN_COLUMNS:
            continue
        taken.update(map(id, members))
        before = [made[eq.inputs[1]] for eq in members if eq.inputs[1] in made]
        after = [read[eq.outputs[0]] for eq in members if eq.outputs[0] in read]
        kernel, inputs, outputs = thin_kernel(shared, members, before, after)
        steps[id(members[-1])] = (before + members + after, [Equation(
            kernel, inputs, {}, outputs, members[0].source)])
    if not steps:
        return program
    return Program(program.invars, program.constvars, program.consts,
                   replaced_by(equations, steps), program.outvars, program.in_tree,
                   program.out_tree, program.names, program.name)


def thin_kernel(matrix, products, before=(), after=()) -> tuple:
    """(FusedKernel, inputs, outputs) computing `products`, matmul equations of `matrix`
    (float64, m x k) by operands of few columns in all: a loop over the m rows, THIN_ROWS
    at a time, their dot products with every column summed together as the rows are read
    (each column's element loaded once for the block: 1000 x 100 by 2 columns 18.8 µs
    against 21.9 row by row, 4000 x 50 by 2 34 against 58). An operand
    made from a vector by a reshape in `before` is read as that vector, a matrix operand
    as copies of its columns (strided, they keep LLVM from vectorising the loop: 89 µs
    against 25 for a 1000 x 100 matrix by 3 columns); a product that a reshape in
    `after` alone reads is written as that reshape's vector. The sums may be
    reassociated (LLVM keeps partial sums in vector lanes, as BLAS does: without it the
    loop is not vectorised) and each product added in one fused multiply-add, rounded
    once, as BLAS's kernels do (the logistic HVP's pair of dot products 5% faster); no
    other fast-math liberty is taken."""
    vector_of = {eq.outputs[0]: eq.inputs[0] for eq in before}
    vector_of.update((eq.inputs[0], eq.outputs[0]) for eq in after)
    operands = [vector_of.get(eq.inputs[1], eq.inputs[1]) for eq in products]
    outputs = [vector_of.get(eq.outputs[0], eq.outputs[0]) for eq in products]
    group = Group(tuple(matrix.aval.shape[:1]))
    group.equations = [*before, *products, *after]
    setup, columns, stores = [], [], []
    for t, (operand, out) in enumerate(zip(operands, outputs)):
        for c in range(products[t].inputs[1].aval.shape[1]):
            column = f"a{t + 1}"
            if len(operand.aval.shape) == 2:      # a matrix's column, copied contiguous
                column = f"a{t + 1}_{c}"
                setup.append(f"{column} = np.ascontiguousarray(a{t + 1}[:, {c}])")
            columns.append(column)
            stores.append((f"o{t}", "" if len(out.aval.shape) == 1 else f", {c}"))

    def rows(block):       # the loop over rows `block` at a time, from i0 up to n0
        row = ["i0"] + [f"i0 + {r}" for r in range(1, block)]
        lines = [f"while i0 + {block} <= n0:"]
        lines += [f"    s{p}_{r} = 0.0" for p in range(len(columns)) for r in range(block)]
        lines += ["    for j in range(a0.shape[1]):"]
        lines += [f"        x{r} = a0[{row[r]}, j]" for r in range(block)]
        for p, column in enumerate(columns):
            lines += [f"        c = {column}[j]"]
            lines += [f"        s{p}_{r} += x{r} * c" for r in range(block)]
        lines += [f"    {name}[{row[r]}{at}] = s{p}_{r}"
                  for p, (name, at) in enumerate(stores) for r in range(block)]
        return lines + [f"    i0 += {block}"]
    body = setup + ["i0 = 0"] + rows(THIN_ROWS) + rows(1)
    given = range(len(outputs))
    source = _module(["n0"] + [f"a{k}" for k in range(len(operands) + 1)]
                     + [f"o{t}" for t in given], body, [], fastmath='{"reassoc", "contract"}')
    inputs = [matrix] + operands
    return FusedKernel(source, group, inputs, outputs, given), inputs, outputs


def fuse(program: Program, min_size: int = None, leave=None) -> Program:
    """The program with each fused group (`partition`) and each group of products by one
    matrix's rows (`thin_products`) as one FusedKernel equation. Products merged for BLAS
    (passes.merge_products) are split first, for `thin_products` to read their operands
    as the vectors they were (a merged operand's columns lie apart in memory: its loop
    is not vectorised)."""
    with gc_paused():
        program = thin_products(split_products(program, THIN_COLUMNS))
        items = partition(program, min_size, leave)
        groups = [item for item in items if type(item) is Group]
        if not groups:
            return program
        member = {id(eq): group for group in groups for eq in group.equations}
        computed_by = {v: group for group in groups for eq in group.equations
                       for v in eq.outputs}
        needed = {x for x in program.outvars if type(x) is not Literal}
        for eq in program.equations:
            reader = member.get(id(eq))
            needed.update(x for x in eq.inputs if type(x) is not Literal
                          and computed_by.get(x, reader) is not reader)
        equations = []
        for item in items:
            if type(item) is Group:
                kernel, inputs, outputs = kernel_for(item, needed)
                equations.append(Equation(kernel, inputs, {}, outputs, item.equations[0].source))
            else:
                equations.append(item)
        return Program(program.invars, program.constvars, program.consts, equations,
                       program.outvars, program.in_tree, program.out_tree, program.names,
                       program.name)


# ------------------------------------------------------------------ disk cache

_loaded = {}
_load_lock = threading.Lock()


def cache_directory() -> str:
    """Where kernel modules are written: `PULLBACK_CACHE`/fused (default
    ~/.cache/pullback/fused), or a temporary directory if that cannot be written."""
    root = os.environ.get("PULLBACK_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "pullback")
    path = os.path.join(root, "fused")
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="pullback_fused_")


def _load(name, source):
    """The module of a file `name`.py holding `source` (written once, atomically)."""
    with _load_lock:
        if name not in _loaded:
            path = os.path.join(cache_directory(), name + ".py")
            if not os.path.exists(path):
                temporary = f"{path}.{os.getpid()}.{threading.get_ident()}"
                with open(temporary, "w") as file:
                    file.write(source)
                os.replace(temporary, path)
            # registered by its own name: Numba's cache imports it to rebuild the kernel
            spec = importlib.util.spec_from_file_location(name, path)
            module = sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _loaded[name] = module
        return _loaded[name]


# ------------------------------------------------------------------ the tier

def compile_fused(program: Program, name: str, args, min_size: int = None,
                  measure: bool = True, leave=None):
    """The fast generated function of `program` with its groups fused, compiled by
    running it once on `args` (whose values do not matter). A group keeps its NumPy
    equations where its kernel fails to compile, or (`measure`) where the NumPy code
    runs faster on these arguments: NumPy's SIMD kernels for exp, tanh ... beat Numba's
    scalar calls on large arrays. Elementwise equations that `leave` (see `partition`;
    default: with `measure`, the probes' savings, `numpy_saving`) gives to NumPy stay
    NumPy calls between the groups. None when no group is fused, or Numba fails to import."""
    if not _numba_imports():
        return None
    if leave is None:
        leave = _probed(program, args, min_size) if measure else None
    fused = fuse(program, min_size, leave)
    if fused is program:
        return None
    env = dict(zip(program.invars, args))
    env.update(zip(program.constvars, program.consts))
    equations, kernels = [], []

    def read(x):
        return x.value if type(x) is Literal else env[x]

    with np.errstate(all="ignore"):
        for eq in fused.equations:
            steps = [eq]
            if type(eq.primitive) is FusedKernel:
                kernel, values = eq.primitive, list(map(read, eq.inputs))
                try:
                    outs = kernel(*values)
                except Exception:            # Numba cannot compile it: NumPy code instead
                    outs = None
                if outs is not None and (not measure or _faster(
                        lambda: kernel(*values), compile_program(Program(
                            eq.inputs, [], [], kernel.group, eq.outputs), "group"), values)):
                    env.update(zip(eq.outputs, outs))
                    equations.append(eq)
                    kernels.append(kernel)
                    continue
                steps = kernel.group
            for step in steps:
                env.update(zip(step.outputs, evaluate(_alone(step), *map(read, _read(step)))))
                equations.append(step)
    if not kernels:
        return None
    final = Program(fused.invars, fused.constvars, fused.consts, equations, fused.outvars,
                    fused.in_tree, fused.out_tree, fused.names, fused.name)
    function = compile_program(final, name, keeps=True)
    function.kernels = kernels
    return function


PROBE_SIZE = 8192        # elements a probe loop runs over
PROBE_MARGIN = 2.0       # NumPy may keep an equation whose Numba loop is this many times slower
SPLIT_COST = 2e-6        # seconds a NumPy call in the middle of a group adds (and a kernel call)
_savings = {}            # probe_key -> seconds per element NumPy saves (this process)


def probe_key(eq):
    """What decides how fast an elementwise equation runs: its primitive, parameters,
    operand dtypes and which operands are literals (their values are in the loop)."""
    return (eq.primitive, repr(sorted(eq.params.items())), tuple(_operand_dtypes(eq)),
            tuple(value_source(x.value) if type(x) is Literal else None for x in eq.inputs))


def _left_to_numpy(eq, leave) -> bool:
    """Whether NumPy's call saves more on this equation's elements than splitting its
    group costs (a kind NumPy runs faster per element: its output large enough)."""
    size = math.prod(eq.outputs[0].aval.shape)
    return leave.get(probe_key(eq), 0.0) * size >= SPLIT_COST


def _probed(program, args, min_size):
    """{probe_key: seconds per element NumPy saves}, after probing (`numpy_saving`) the
    fusable elementwise equations of kinds not probed yet in this process, on their own
    operand values (the program evaluated equation by equation up to the last of them)."""
    unknown = {}
    for item in partition(program, min_size):
        if type(item) is Group:
            for eq in item.equations:
                if eq.outputs[0] not in item.reduced and probe_key(eq) not in _savings:
                    unknown.setdefault(probe_key(eq), eq)
    wanted = {id(eq) for eq in unknown.values()}
    env = dict(zip(program.invars, args))
    env.update(zip(program.constvars, program.consts))
    with np.errstate(all="ignore"):
        for eq in program.equations:
            if not wanted:
                break
            values = [x.value if type(x) is Literal else env[x] for x in eq.inputs]
            if id(eq) in wanted:
                wanted.discard(id(eq))
                _savings[probe_key(eq)] = numpy_saving(eq, values)
            env.update(zip(eq.outputs, evaluate(_alone(eq), *map(env.get, _read(eq)))))
    return dict(_savings)


def numpy_saving(eq, values) -> float:
    """The seconds per element NumPy's call saves over a Numba loop of the elementwise
    equation `eq`'s scalar rule (on operand `values`, repeated to PROBE_SIZE elements),
    where the loop is PROBE_MARGIN times slower: NumPy's SIMD exp, tanh, sin ... against
    Numba's calls of the C library's (6 to 10 times slower per element, 6 to 18 ns more).
    0 otherwise, and where the loop fails to compile."""
    dtypes, out = _operand_dtypes(eq), np.dtype(eq.outputs[0].aval.dtype)
    arrays, args = [], []
    for x, value, dtype in zip(eq.inputs, values, dtypes):
        if type(x) is Literal:
            args.append(_cast(dtype, value_source(x.value)))
        else:
            args.append(f"a{len(arrays)}[i]")
            arrays.append(np.resize(np.asarray(value).astype(dtype, copy=False), PROBE_SIZE))
    body = [f"o = np.empty((n,), np.{out.name})", "for i in range(n):",
            f"    o[i] = {_cast(out, eq.primitive.emit_scalar(args, dtypes, **eq.params))}"]
    source = _module(["n"] + [f"a{k}" for k in range(len(arrays))], body, ["o"])
    loop = _load("probe_" + hashlib.sha256(source.encode()).hexdigest()[:16], source).kernel
    operands = iter(arrays)
    numpy_args = [x.value if type(x) is Literal else next(operands) for x in eq.inputs]
    try:
        loop(PROBE_SIZE, *arrays)
    except Exception:                    # noqa: BLE001 -- Numba cannot compile it: not fused
        return 0.0
    loop_time, numpy_time = _best_times(lambda: loop(PROBE_SIZE, *arrays),
                                        lambda: eq.primitive.impl(*numpy_args, **eq.params))
    return (loop_time - numpy_time) / PROBE_SIZE if loop_time > PROBE_MARGIN * numpy_time \
        else 0.0


def _faster(kernel, numpy_code, values) -> bool:
    """Whether the kernel call beats the group's NumPy code on `values`."""
    kernel_time, numpy_time = _best_times(kernel, lambda: numpy_code(*values))
    return kernel_time <= numpy_time


def _best_times(*calls):
    """The best time per call of each call, over three rounds of about a millisecond
    of each, the calls alternating. Time is this thread's CPU time: the measuring
    thread runs beside the caller's (and other programs' fusing threads), and on the
    clock a call that waits for the GIL or a CPU measured up to a hundred times its
    cost, which kept NumPy's code for a group whose kernel runs five times faster."""
    repeats = []
    for call in calls:
        start = time.thread_time()
        call()
        repeats.append(max(1, min(1000, int(1e-3 / max(time.thread_time() - start, 1e-7)))))
    best = [np.inf] * len(calls)
    for _ in range(3):
        for k, call in enumerate(calls):
            start = time.thread_time()
            for _ in range(repeats[k]):
                call()
            best[k] = min(best[k], (time.thread_time() - start) / repeats[k])
    return best


def _read(eq):
    return list(dict.fromkeys(x for x in eq.inputs if type(x) is not Literal))


def _alone(eq):
    """A program of one equation (evaluate's conventions: weak outputs are Python scalars)."""
    return Program(_read(eq), [], [], [eq], list(eq.outputs))


def tier(program: Program, name: str, numpy_function, install):
    """The function a jit cache entry calls: `numpy_function` (the generated NumPy code),
    counting calls; at call `AFTER_CALLS` it starts fusing (in a thread when
    `BACKGROUND`) and `install`s the fused function once compiled, or `numpy_function`
    when nothing fuses or the tier is unavailable. Programs fuse one at a time
    (`_BUILDING`): compiling is CPU-bound, and concurrent builds only share the CPUs."""
    if not available():
        return numpy_function
    calls = [0]

    def build(args):
        try:
            with _BUILDING:
                fused = compile_fused(program, name, args)
        except Exception as error:           # noqa: BLE001 -- never worse than the NumPy code
            fused = None
            _report_failure(name, error)
        install(fused or numpy_function)

    def counting(*args):
        calls[0] += 1
        if calls[0] == AFTER_CALLS:
            copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
            if BACKGROUND:
                threading.Thread(target=build, args=(copies,), daemon=True,
                                 name=f"pullback fuse {name}").start()
            else:
                build(copies)
        return numpy_function(*args)
    return counting


_BUILDING = threading.RLock()
_failures_reported = []


def _before_fork():
    """A fork waits for a background `import numba` to finish: the child would inherit
    Numba's module locks held by a thread it lacks, and its own `import numba` hang."""
    _import_lock.acquire()


def _after_fork_in_child():
    """The child's locks anew: a build the parent's thread was running at the fork never
    ends here (that program keeps its NumPy code in the child), and must not hold back
    the child's own builds."""
    global _import_lock, _load_lock, _BUILDING
    _import_lock, _load_lock, _BUILDING = threading.Lock(), threading.Lock(), threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=lambda: _import_lock.release(),
                        after_in_child=_after_fork_in_child)


def _report_failure(name, error):
    """One FusedTierWarning per process naming the first error that kept a program from
    the fused tier (a kernel Numba cannot compile falls back quietly, in `compile_fused`;
    this is anything else): otherwise it would show only as slowness."""
    if _failures_reported:
        return
    _failures_reported.append(error)
    warnings.warn(f"pullback's fused tier failed on jit({name}) with {type(error).__name__}: "
                  f"{error}; it runs its NumPy code (the same values, slower). Please report "
                  "it; PULLBACK_FUSED=0 turns the tier off.", FusedTierWarning, stacklevel=2)


def fused_source(program: Program, name: str = "f", min_size: int = None) -> str:
    """The generated function of `program` with its groups fused, then each kernel's
    source (what `show(..., fused=True)` prints)."""
    fused = fuse(program, min_size)
    text = generate(fused, name, keeps=True)[0]
    kernels = [eq.primitive for eq in fused.equations if type(eq.primitive) is FusedKernel]
    return text + "".join(f"\n# {k.name}: a loop over shape {k.shape}\n{k.source}"
                          for k in kernels)
