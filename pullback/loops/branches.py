"""The `switch` primitive: one of several programs, chosen by an index, in every mode.

`switch(index, *consts of each branch, *operands, branches, n_consts)` runs
`branches[clip(index, 0, len - 1)](*its consts, *operands)`; `cond` is a switch of two.

- jvp: a switch of the branches' jvp programs (the tangents every branch may give);
- reverse mode: a switch of the branches' "recompute" programs (the branch taken runs
  forward and backward: nothing is kept), a cotangent for every branch's consts (zeros
  for the branches not taken);
- batch: with one index for the batch, a switch of the batched branches; with an index
  per example, every branch runs and `np.where` selects. Each branch sees the operands
  and batched consts of the examples that take it, and for the others the
  (gradient-stopped) ones of an example that does: an untaken branch never computes on
  values it would not see unbatched, and `where` gives its rows a zero cotangent, so no
  NaN from it reaches a gradient; a shared const enters a branch no example takes through
  a select that drops its cotangent there;
- statements: an `if`/`elif`/`else` chain running the branches (calls of functions
  named after the user's in generated code, inline in `show`);
- prune (dead-code elimination): the unused outputs of every branch, and the consts and
  operands no branch then reads.
"""
from dataclasses import replace

import numpy as np

from ..core.arrays import moveaxis, shape_of, zeros_like_value
from ..core.primitive import ZERO, Primitive
from ..ir.passes import eliminate_dead_code
from ..ir.program import evaluate
from ..primitives.structural import stop_gradient
from .loop import for_tracers, indented
from .bodies import (_cached, aval_of, batch_program, is_float, jvp_program, read_inputs,
                     recompute_program, runner, stage_flat, with_interface)


def _groups(args, n_consts):
    """(index, consts of each branch, operands)."""
    consts, start = [], 1
    for n in n_consts:
        consts.append(list(args[start:start + n]))
        start += n
    return args[0], consts, list(args[start:])


def _chosen(index, count):
    return min(max(int(index), 0), count - 1)


def _switch_impl(*args, branches, n_consts):
    index, consts, operands = _groups(args, n_consts)
    k = _chosen(index, len(branches))
    return [np.asarray(o) for o in runner(branches[k])(*consts[k], *operands)]


def _switch_shape(*avals, branches, n_consts):
    return [aval_of(v) for v in branches[0].outvars]


def _switch_jvp(primals, tangents, *, branches, n_consts):
    index, consts, operands = _groups(primals, n_consts)
    _, const_dots, operand_dots = _groups(tangents, n_consts)
    operand_nonzero = [t is not ZERO and is_float(aval_of(o))
                       for o, t in zip(operands, operand_dots)]
    flags = [tuple([t is not ZERO and is_float(aval_of(c)) for c, t in zip(cs, ts)]
                   + operand_nonzero) for cs, ts in zip(consts, const_dots)]
    found = [False] * len(branches[0].outvars)
    for branch, nonzero in zip(branches, flags):
        _, f = jvp_program(branch, nonzero, tuple(found))
        found = [a or b for a, b in zip(found, f)]
    programs = []
    for branch, nonzero, n in zip(branches, flags, n_consts):
        program, _ = jvp_program(branch, nonzero, tuple(found))
        programs.append(_cached(program, ("switch order", n), lambda p=program, nz=nonzero, n=n:
                                _tangents_beside(p, nz, n)))
    args = [index]
    for cs, ts, nonzero, n in zip(consts, const_dots, flags, n_consts):
        args += cs + [t for t, nz in zip(ts, nonzero[:n]) if nz]
    args += operands + [zeros_like_value(o) if t is ZERO else t
                        for o, t, nz in zip(operands, operand_dots, operand_nonzero) if nz]
    outs = switch(*args, branches=tuple(programs),
                  n_consts=tuple(n + sum(nz[:n]) for n, nz in zip(n_consts, flags)))
    n_out = len(found)
    dots = iter(outs[n_out:])
    return outs[:n_out], [next(dots) if f else ZERO for f in found]


def _tangents_beside(program, nonzero, n):
    """A jvp program's inputs reordered: consts, their tangents, operands, theirs."""
    n_in = len(nonzero)
    tangents = iter(program.invars[n_in:])
    tangent_of = [next(tangents) if nz else None for nz in nonzero]
    invars = (program.invars[:n] + [t for t in tangent_of[:n] if t is not None]
              + program.invars[n:n_in] + [t for t in tangent_of[n:] if t is not None])
    return with_interface(program, invars, program.outvars)


def _switch_value_and_vjp(wrt, *primals, branches, n_consts):
    outs = switch(*primals, branches=branches, n_consts=n_consts)
    out_avals = [aval_of(v) for v in branches[0].outvars]
    cts_flags = tuple(is_float(a) for a in out_avals)
    differentiated = tuple(w and is_float(aval_of(p)) for w, p in zip(wrt[1:], primals[1:]))
    backward, _ = _cached(branches[0], ("switch backward", tuple(map(id, branches)),
                                        differentiated),
                          lambda: (_backward_branches(branches, n_consts, differentiated,
                                                      cts_flags), branches))   # kept alive

    def pullback(cts):
        ct_outs = [zeros_like_value(o) if c is ZERO else c
                   for o, c, f in zip(outs, cts, cts_flags) if f]
        results = iter(switch(primals[0], *primals[1:], *ct_outs, branches=backward,
                              n_consts=(0,) * len(branches)))
        return [ZERO] + [next(results) if d else ZERO for d in differentiated]
    return outs, pullback


def _backward_branches(branches, n_consts, differentiated, cts_flags):
    """Per branch: (*every branch's consts, *operands, *cotangents) -> cotangents of the
    differentiated inputs, zeros for the other branches' consts."""
    n_all = sum(n_consts)
    avals = [aval_of(v) for b, n in zip(branches, n_consts) for v in b.invars[:n]]
    avals += [aval_of(v) for v in branches[0].invars[n_consts[0]:]]
    avals += [aval_of(v) for v, f in zip(branches[0].outvars, cts_flags) if f]
    programs, start = [], 0
    for branch, n in zip(branches, n_consts):
        own = list(range(start, start + n)) + list(range(n_all, len(differentiated)))
        wrt = tuple(differentiated[i] for i in own)
        recompute = recompute_program(branch, wrt, cts_flags)

        def backward(*args, own=own, recompute=recompute, wrt=wrt):
            n_inputs = len(differentiated)
            mine = iter(evaluate(recompute, *[args[i] for i in own], *args[n_inputs:]))
            result = [next(mine) if i in own and differentiated[i] else zeros_like_value(args[i])
                      for i in range(n_inputs) if differentiated[i]]
            return result
        programs.append(stage_flat(backward, avals, f"{branch.name or 'branch'}_backward"))
        start += n
    return tuple(programs)


def _switch_batch(values, dims, *, branches, n_consts):
    size = next(shape_of(v)[d] for v, d in zip(values, dims) if d is not None)
    moved = [v if d is None else moveaxis(v, d, 0) for v, d in zip(values, dims)]
    index, consts, operands = _groups(moved, n_consts)
    _, const_dims, operand_dims = _groups(dims, n_consts)
    operand_flags = [d is not None for d in operand_dims]
    found = [False] * len(branches[0].outvars)
    for _ in range(2):          # the outputs any branch batches, then every branch forced
        programs = []
        for branch, cd in zip(branches, const_dims):
            flags = tuple([d is not None for d in cd] + operand_flags)
            program, f = batch_program(branch, flags, tuple(found), size)
            programs.append(program)
            found = [a or b for a, b in zip(found, f)]
    if dims[0] is None:
        outs = switch(index, *[c for cs in consts for c in cs], *operands,
                      branches=tuple(programs), n_consts=n_consts)
        return outs, [0 if f else None for f in found]
    count = len(branches)
    chosen = np.clip(index, 0, count - 1)
    result = None
    for k, (program, cs, cd) in enumerate(zip(programs, consts, const_dims)):
        taken = chosen == k
        first = np.argmax(taken)           # an example that takes branch k (0 if none)
        inputs = [_rows(taken, o, stop_gradient(o[first])) if f else o
                  for o, f in zip(operands, operand_flags)]
        # The consts likewise; a shared one reaches the branch's derivative only if some
        # example takes it: where none does, its cotangent there (0 * inf may be NaN) is
        # dropped by the select.
        anyone = np.any(taken)
        cs = [_rows(taken, c, stop_gradient(c[first])) if d is not None
              else np.where(anyone, c, stop_gradient(c)) for c, d in zip(cs, cd)]
        outs = evaluate(program, *cs, *inputs)
        outs = [o if f else np.broadcast_to(o, (size,) + tuple(shape_of(o)))
                for o, f in zip(outs, found)]
        result = outs if result is None else [_rows(taken, o, r) for o, r in zip(outs, result)]
    return result, [0] * len(result)


def _rows(taken, x, other):
    """x in the rows (examples) flagged in `taken`, `other` elsewhere."""
    return np.where(taken.reshape((-1,) + (1,) * (len(shape_of(x)) - 1)), x, other)


def _switch_statements(targets, args, code, *, branches, n_consts):
    """An `if`/`elif`/`else` chain on the index, each running its branch (`if pred:` for
    a boolean index: cond). None (the primitive is called) `for_tracers`."""
    if for_tracers(code):
        return None
    index, consts, operands = _groups(args, n_consts)
    runs = [code.run(branch, cs + operands, targets) for branch, cs in zip(branches, consts)]
    if len(runs) == 1:
        return runs[0]
    if len(runs) == 2 and aval_of(code.equation.inputs[0]).dtype == np.bool_:
        return [f"if {index}:"] + indented(runs[1]) + ["else:"] + indented(runs[0])
    lines = []
    for k, run in enumerate(runs):
        lines.append(f"{'if' if k == 0 else 'elif'} {index} <= {k}:" if k < len(runs) - 1
                     else "else:")
        lines += indented(run)
    return lines


def _switch_prune(eq, used):
    """Without its unused outputs, and the consts and operands no branch then reads; None
    if it keeps them all."""
    branches, n_consts = eq.params["branches"], eq.params["n_consts"]
    reduced = [eliminate_dead_code(with_interface(b, b.invars, [v for v, u in zip(
        b.outvars, used) if u])) for b in branches]
    reads = [read_inputs(b) for b in reduced]
    operands = [any(r[n + i] for r, n in zip(reads, n_consts))
                for i in range(len(branches[0].invars) - n_consts[0])]
    kept_consts = [r[:n] for r, n in zip(reads, n_consts)]
    new_branches = []
    for old, b, keep in zip(branches, reduced, kept_consts):
        b = with_interface(b, [v for v, k in zip(b.invars, keep + operands) if k], b.outvars)
        b.optimized = getattr(old, "optimized", False)
        new_branches.append(b)
    inputs_kept = [True] + [k for keep in kept_consts for k in keep] + operands
    if all(used) and all(inputs_kept):
        return None
    return replace(eq, inputs=[x for x, k in zip(eq.inputs, inputs_kept) if k],
                   outputs=[v for v, u in zip(eq.outputs, used) if u],
                   params={**eq.params, "branches": tuple(new_branches),
                           "n_consts": tuple(sum(keep) for keep in kept_consts)})


switch = Primitive(
    "switch", _switch_impl, shape=_switch_shape, jvp=_switch_jvp,
    value_and_vjp=_switch_value_and_vjp, batch=_switch_batch, emit_statements=_switch_statements,
    multiple_results=True, family="loop", prune=_switch_prune)
