"""The `loop` primitive: a scan whose body is a program, in every mode.

`loop(*consts, *init, *xs, body, n_consts, n_carry, length, reverse, checkpoints)` runs
`body(*consts, *carry, *x_i) -> (*carry, *y_i)` for i in range(length) (backwards with
`reverse`), x_i the i-th rows of the xs, and returns the last carry and the stacked ys.
`consts` are the values the body reads from outside (arrays, other transformations'
tracers): as arguments, every transformation sees them.

Its rules are loops again, so that every mix of modes works and stays rolled:

- jvp: one loop over the body's jvp program, tangents carried beside the carries;
- vjp, by the `checkpoints` policy: "all" runs the body's forward half, stacking its
  residuals as extra ys, and pulls back with a reverse loop over the backward half;
  "carry" stacks the carries and the reverse loop recomputes each step from its carry;
  a number of snapshots, "sqrt", "auto" or a byte budget reverse with the binomial
  schedule (schedules.py): `loop_record` runs the loop keeping the snapshots of the
  schedule's first sweep in a `Tape` (a 0-d object array, a value like any other), and
  `checkpointed_reversal`, a primitive whose impl takes them out and keeps its own in a
  Python dict, reverses every step; its derivatives are those of the "carry" reversal;
- batch: one loop over the body's batched program (a carry is batched once anything
  batched reaches it);
- statements: a Python `for` loop running the body (generated code calls it as a
  function of the module, named after the user's function; `show` prints it inline);
- prune (dead-code elimination): the loop without the carries and ys no used output needs,
  and the consts and xs its body then ignores; `loop_record` without its tape is a loop;
  a reversal without the cotangents of consts and xs nobody uses.
"""
from dataclasses import replace

import numpy as np

from ..core.arrays import moveaxis, shape_of, zeros, zeros_like_value
from ..core.primitive import ZERO, Primitive, ShapeDtype
from ..ir.program import evaluate
from ..primitives.structural import zeros_source
from . import schedules
from .bodies import (_cached, aval_of, batch_program, carries_only, composite_rules, hoisted,
                     is_float, jvp_program, live_carries, loop_runner, read_inputs, runner,
                     stage_flat, vjp_programs, with_interface)


def step_rows(length: int, aval) -> np.ndarray:
    """The array the steps write their ys into, one row each (no list of rows, then a
    stacked copy: half the memory)."""
    return np.empty((length,) + tuple(aval.shape), aval.dtype)


def _layout(body, n_consts, n_carry):
    n_in = len(body.invars)
    return n_consts, n_carry, n_in - n_consts - n_carry, len(body.outvars) - n_carry


def _out_avals(body):
    return [aval_of(v) for v in body.outvars]


def _loop_impl(*args, body, n_consts, n_carry, length, reverse, checkpoints):
    return _run(args, body, n_consts, n_carry, length, reverse)


def _run(args, body, n_consts, n_carry, length, reverse, tape=None):
    """The loop's outputs; with a `Tape`, the carries before the steps at its snapshot
    positions (in the order of the steps) are kept in it, and the one before the last."""
    prepare, step = loop_runner(body, n_consts)
    consts = prepare(*args[:n_consts])
    carry = list(args[n_consts:n_consts + n_carry])
    xs = args[n_consts + n_carry:]
    ys = None
    for position, i in enumerate(range(length - 1, -1, -1) if reverse else range(length)):
        if tape is not None and (position in tape.snapshots or position == length - 1):
            tape.keep(position, carry)
        outs = step(*consts, *carry, *[x[i] for x in xs])
        carry = outs[:n_carry]
        if ys is None:  # the values' own dtypes (finite differences pass float64 to float32 code)
            ys = [step_rows(length, ShapeDtype(np.shape(y), np.result_type(y)))
                  for y in outs[n_carry:]]
        for rows, y in zip(ys, outs[n_carry:]):
            rows[i] = y
    if ys is None:                                  # no steps
        ys = [step_rows(0, aval) for aval in _out_avals(body)[n_carry:]]
    return [np.asarray(c) for c in carry] + ys


def _loop_shape(*avals, body, n_consts, n_carry, length, reverse, checkpoints):
    outs = _out_avals(body)
    return outs[:n_carry] + [ShapeDtype((length,) + tuple(a.shape), a.dtype)
                             for a in outs[n_carry:]]


# ------------------------------------------------------------------ forward mode

def _grouped(invars, flags, bounds):
    """Each group of `invars` (bounds: (start, stop) pairs) followed by the tangent
    variables of its flagged members (the extra inputs of a jvp program, in order)."""
    n = len(flags)
    tangents = iter(invars[n:])
    tangent_of = [next(tangents) if f else None for f in flags]
    order = []
    for lo, hi in bounds:
        order += list(invars[lo:hi]) + [t for t in tangent_of[lo:hi] if t is not None]
    return order


def _loop_jvp(primals, tangents, *, body, n_consts, n_carry, length, reverse, checkpoints):
    _, _, n_x, n_y = _layout(body, n_consts, n_carry)
    floats = [is_float(v.aval) for v in body.invars]
    nonzero = [t is not ZERO and f for t, f in zip(tangents, floats)]
    carries = slice(n_consts, n_consts + n_carry)
    nonzero[carries] = floats[carries]             # tangents flow through every float carry
    forced = tuple(is_float(a) for a in _out_avals(body)[:n_carry]) + (False,) * n_y
    program, found = jvp_program(body, tuple(nonzero), forced)
    assert list(found[:n_carry]) == nonzero[carries], "a carry's tangent changed kind"
    n_in, n_out = len(body.invars), len(body.outvars)

    def make():
        invars = _grouped(program.invars, nonzero, [(0, n_consts), (n_consts, n_consts + n_carry),
                                                     (n_consts + n_carry, n_in)])
        outvars = _grouped(program.outvars, found, [(0, n_carry), (n_carry, n_out)])
        return with_interface(program, invars, outvars)
    jvp_body = _cached(body, ("jvp loop", tuple(nonzero)), make)
    tangents = [zeros_like_value(p) if t is ZERO else t
                for p, t in zip(primals, tangents)]
    groups = [(0, n_consts), (n_consts, n_consts + n_carry), (n_consts + n_carry, n_in)]
    args = []
    for lo, hi in groups:
        args += list(primals[lo:hi]) + [t for t, nz in zip(tangents[lo:hi], nonzero[lo:hi]) if nz]
    n_tc = sum(nonzero[carries])
    outs = loop(*args, body=jvp_body, n_consts=n_consts + sum(nonzero[:n_consts]),
                n_carry=n_carry + n_tc, length=length, reverse=reverse, checkpoints=checkpoints)
    carry, carry_dots = outs[:n_carry], iter(outs[n_carry:n_carry + n_tc])
    ys, y_dots = outs[n_carry + n_tc:n_carry + n_tc + n_y], iter(outs[n_carry + n_tc + n_y:])
    dots = [next(carry_dots) if f else ZERO for f in found[:n_carry]]
    dots += [next(y_dots) if f else ZERO for f in found[n_carry:]]
    return carry + ys, dots


# ------------------------------------------------------------------ reverse mode

def _zeros_for(value, aval, length=None):
    shape = tuple(aval.shape) if length is None else (length,) + tuple(aval.shape)
    return zeros(shape, aval.dtype) if value is ZERO else value


def _reverse_body(vjp, body, wrt, n_consts, n_carry, recompute: bool) -> "Program":
    """The reverse loop's body: (*consts, *accumulators, *carry cotangents, *rows) ->
    (*accumulators + the step's const cotangents, *carry cotangents before the step,
    *cotangents of the step's xs). A step's rows are its residuals ("all") or its inputs,
    carry and x, to recompute from ("carry"), then its ys' cotangents."""
    program = vjp.step if recompute else vjp.backward
    out_avals = _out_avals(body)
    n_acc = sum(wrt[:n_consts])
    ct_avals = [a for a in out_avals if is_float(a)]
    n_ct_carry = sum(is_float(a) for a in out_avals[:n_carry])
    rows = (body.invars[n_consts:] if recompute
            else vjp.forward.outvars[len(body.outvars):])

    def reverse_step(*args):
        consts = args[:n_consts]
        acc = args[n_consts:n_consts + n_acc]
        ct_carry = args[n_consts + n_acc:n_consts + n_acc + n_ct_carry]
        rest = args[n_consts + n_acc + n_ct_carry:]
        cts = evaluate(program, *consts, *rest[:len(rows)], *ct_carry, *rest[len(rows):])
        return [a + c for a, c in zip(acc, cts[:n_acc])] + cts[n_acc:]
    const_avals = [aval_of(v) for v in body.invars[:n_consts]]
    avals = (const_avals + [a for a, w in zip(const_avals, wrt) if w] + ct_avals[:n_ct_carry]
             + [aval_of(v) for v in rows] + ct_avals[n_ct_carry:])
    return stage_flat(reverse_step, avals, f"{body.name or 'body'}_reverse")


def _loop_value_and_vjp(wrt, *primals, body, n_consts, n_carry, length, reverse, checkpoints):
    _, _, n_x, n_y = _layout(body, n_consts, n_carry)
    floats = [is_float(v.aval) for v in body.invars]
    wrt_body = [w and f for w, f in zip(wrt, floats)]
    wrt_body[n_consts:n_consts + n_carry] = floats[n_consts:n_consts + n_carry]
    out_avals = _out_avals(body)
    cts_flags = tuple(is_float(a) for a in out_avals)
    vjp = vjp_programs(body, tuple(wrt_body), cts_flags, n_consts)
    consts, carry_in = list(primals[:n_consts]), list(primals[n_consts:n_consts + n_carry])
    xs = list(primals[n_consts + n_carry:])
    common = dict(length=length, checkpoints=checkpoints)
    policy = checkpoints
    if policy == "all":
        outs = loop(*primals, body=vjp.forward, n_consts=n_consts, n_carry=n_carry,
                    reverse=reverse, **common)
        outs, rows = outs[:n_carry + n_y], outs[n_carry + n_y:]
    elif policy == "carry":
        stacking = _cached(body, ("stacking carries",), lambda: with_interface(
            body, body.invars, body.outvars + body.invars[n_consts:n_consts + n_carry]))
        outs = loop(*primals, body=stacking, n_consts=n_consts, n_carry=n_carry,
                    reverse=reverse, **common)
        outs, rows = outs[:n_carry + n_y], outs[n_carry + n_y:] + xs
    else:          # the snapshots of the reversal's first sweep, kept while running
        outs = loop_record(*primals, body=body, n_consts=n_consts, n_carry=n_carry,
                           reverse=reverse, **common)
        outs, tape, rows = outs[:-1], outs[-1], None
    n_acc = sum(wrt_body[:n_consts])
    float_carries = [i for i in range(n_carry) if floats[n_consts + i]]
    float_ys = [j for j in range(n_y) if cts_flags[n_carry + j]]

    def pullback(cts):
        ct_carry = [_zeros_for(cts[i], out_avals[i]) for i in float_carries]
        ct_ys = [_zeros_for(cts[n_carry + j], out_avals[n_carry + j], length) for j in float_ys]
        acc = [zeros_like_value(c)
               for c, w in zip(consts, wrt_body[:n_consts]) if w]
        if rows is None:
            results = checkpointed_reversal(
                *consts, *carry_in, *xs, tape, *ct_carry, *ct_ys, body=body,
                differentiated=tuple(wrt_body),
                n_consts=n_consts, n_carry=n_carry, length=length, reverse=reverse,
                checkpoints=checkpoints)
        else:
            back = _cached(body, ("reverse loop", tuple(wrt_body), policy),
                           lambda: _reverse_body(vjp, body, wrt_body, n_consts, n_carry,
                                                 policy == "carry"))
            results = loop(*consts, *acc, *ct_carry, *rows, *ct_ys, body=back,
                           n_consts=n_consts, n_carry=n_acc + len(ct_carry), length=length,
                           reverse=not reverse, checkpoints=checkpoints)
        return _input_cotangents(results, wrt_body, n_consts, n_carry, n_acc, len(ct_carry))
    return outs, pullback


def _input_cotangents(results, wrt_body, n_consts, n_carry, n_acc, n_ct_carry):
    """One cotangent per loop input from a reverse loop's outputs (accumulated const
    cotangents, the init's cotangents, the stacked xs' cotangents)."""
    acc = iter(results[:n_acc])
    init = iter(results[n_acc:n_acc + n_ct_carry])
    xs = iter(results[n_acc + n_ct_carry:])
    cts = []
    for i, w in enumerate(wrt_body):
        source = acc if i < n_consts else init if i < n_consts + n_carry else xs
        cts.append(next(source) if w else ZERO)
    return cts


# ------------------------------------------------------------------ batching

def _loop_batch(values, dims, *, body, n_consts, n_carry, length, reverse, checkpoints):
    size = next(shape_of(v)[d] for v, d in zip(values, dims) if d is not None)
    batched = [d is not None for d in dims]
    while True:
        program, found = batch_program(body, tuple(batched), tuple(batched[n_consts:n_consts + n_carry])
                                       + (False,) * (len(body.outvars) - n_carry), size)
        grown = [b or f for b, f in zip(batched[n_consts:n_consts + n_carry], found[:n_carry])]
        if grown == batched[n_consts:n_consts + n_carry]:
            break
        batched[n_consts:n_consts + n_carry] = grown
    args = []
    for i, (v, d) in enumerate(zip(values, dims)):
        is_x = i >= n_consts + n_carry
        if d is None and batched[i]:         # a carry that becomes batched
            v = np.broadcast_to(v, (size,) + tuple(shape_of(v)))
        elif d is not None:
            v = moveaxis(v, d, 1 if is_x else 0)
        args.append(v)
    outs = loop(*args, body=program, n_consts=n_consts, n_carry=n_carry, length=length,
                reverse=reverse, checkpoints=checkpoints)
    out_dims = [0 if f else None for f in found[:n_carry]] + [1 if f else None
                                                              for f in found[n_carry:]]
    return outs, out_dims


# ------------------------------------------------------------------ statements

def indented(lines: list) -> list:
    """A block of statements under a `for`, `while` or `if` line."""
    return ["    " + line for line in lines] or ["    pass"]


def for_tracers(code) -> bool:
    """Whether `code` writes generated code's traceable variant, which runs on an outer
    transformation's tracers (`grad(jit(f))`, `vmap(jit(f))`): a loop or branch there
    calls its primitive, which they see, not Python statements that would store rows
    into a NumPy array and branch on a traced predicate."""
    return not (code.fast or code.reading)


def _loop_statements(targets, args, code, *, body, n_consts, n_carry, length, reverse,
                     checkpoints):
    """A `for` loop running the body (a call in generated code, its statements inline in
    `show`), each y written into its row of an array allocated once; loop invariants
    (W.T ...) computed before it. None (the primitive is called) `for_tracers`."""
    if for_tracers(code):
        return None
    consts, carry, xs = list(args[:n_consts]), targets[:n_carry], args[n_consts + n_carry:]
    lines = [f"{c} = {a}" for c, a in zip(carry, args[n_consts:n_consts + n_carry]) if c != a]
    split = hoisted(body, n_consts)
    if split is not None:
        head, body = split
        invariants = [code.fresh("invariant") for _ in head.outvars]
        lines += code.run(head, consts, invariants)
        consts += invariants
    rows = targets[n_carry:]
    lines += [f"{r} = {zeros_source((length,) + tuple(a.shape), a.dtype, 'empty')}"
              for r, a in zip(rows, _out_avals(body)[n_carry:])]
    i = code.fresh("i")
    steps = f"range({length - 1}, -1, -1)" if reverse else f"range({length})"
    lines.append(f"for {i} in {steps}:")
    return lines + indented(code.run(body, consts + carry + [f"{x}[{i}]" for x in xs],
                                     carry + [f"{r}[{i}]" for r in rows]))


# ------------------------------------------------------------------ dead code

def _pruned_loop(eq, used, carries_used):
    """`eq` (a loop or loop_record) without its dead ys, its dead carries (those
    `carries_used` and the live outputs' computation do not need) and the consts and xs
    nothing then reads; None if it keeps them all."""
    params = eq.params
    body, n_consts, n_carry = params["body"], params["n_consts"], params["n_carry"]
    n_y = len(body.outvars) - n_carry
    ys_used = list(used[n_carry:n_carry + n_y])
    reduced, reads, live = live_carries(body, n_consts, list(carries_used), ys_used)
    inputs_kept = reads[:n_consts] + live + reads[n_consts + n_carry:]
    if all(inputs_kept) and all(live) and all(ys_used):
        return None
    invars = [v for v, keep in zip(body.invars, inputs_kept) if keep]
    reduced = with_interface(reduced, invars, reduced.outvars)
    reduced.optimized = getattr(body, "optimized", False)
    kept = live + ys_used + [True] * (len(eq.outputs) - n_carry - n_y)
    return replace(eq, inputs=[x for x, keep in zip(eq.inputs, inputs_kept) if keep],
                   outputs=[v for v, keep in zip(eq.outputs, kept) if keep],
                   params={**params, "body": reduced, "n_consts": sum(reads[:n_consts]),
                           "n_carry": sum(live)})


def _loop_prune(eq, used):
    return _pruned_loop(eq, used, used[:eq.params["n_carry"]])


loop = Primitive(
    "loop", _loop_impl, shape=_loop_shape, jvp=_loop_jvp, value_and_vjp=_loop_value_and_vjp,
    batch=_loop_batch, emit_statements=_loop_statements, multiple_results=True, family="loop",
    prune=_loop_prune)


# ------------------------------------------------------------------ recording loop

TAPE = ShapeDtype((), np.dtype(object))


class Tape:
    """The carries a checkpointed reversal starts from, kept by `loop_record`: `segments`
    (schedules.initial_sweep), `snapshots` (position -> carry) and `last` (the carry
    before the last step). The reversal takes them out (`take`): a snapshot it frees is
    then freed, and its memory stays within the schedule's c snapshots; a reversal from a
    tape taken already (a pullback called twice) or empty (recorded by a derivative or a
    batch of the loop, which keep nothing) runs the first sweep itself."""
    __slots__ = ("segments", "snapshots", "last")

    def __init__(self, segments=()):
        self.segments, self.last = list(segments), None
        self.snapshots = {p: None for p, _ in segments}

    def keep(self, position, carry):
        if position in self.snapshots:
            self.snapshots[position] = carry
        else:
            self.last = carry

    def take(self):
        """(segments, snapshots, carry before the last step), or None."""
        if not self.segments:
            return None
        taken = (self.segments, self.snapshots, self.last)
        self.segments, self.snapshots, self.last = [], {}, None
        return taken


def _boxed(tape):
    boxed = np.empty((), object)
    boxed[()] = tape
    return boxed


def _taken(tape):
    """What a tape holds (`Tape.take`), or None: an empty tape, or not one Tape (a batch of
    tapes, which random inputs of a test may give): the reversal sweeps itself then."""
    tape = tape[()] if isinstance(tape, np.ndarray) and tape.shape == () else tape
    return tape.take() if isinstance(tape, Tape) else None


def _record_impl(*args, body, n_consts, n_carry, length, reverse, checkpoints):
    state_bytes = sum(np.asarray(x).nbytes for x in args[n_consts:n_consts + n_carry])
    c = schedules.snapshot_budget(checkpoints, length, state_bytes)
    tape = Tape(schedules.initial_sweep(length, c) if length else ())
    outs = _run(args, body, n_consts, n_carry, length, reverse, tape)
    if tape.last is None and length:            # one step: the state at n - 1 is the first
        tape.last = tape.snapshots[0]
    return outs + [_boxed(tape)]


def _record_shape(*avals, **params):
    return _loop_shape(*avals, **params) + [TAPE]


def _record_jvp(primals, tangents, **params):
    outs, dots = _loop_jvp(primals, tangents, **params)
    return list(outs) + [_boxed(Tape())], list(dots) + [ZERO]


def _record_value_and_vjp(wrt, *primals, **params):
    outs, pullback = _loop_value_and_vjp(wrt, *primals, **params)
    return list(outs) + [_boxed(Tape())], lambda cts: pullback(cts[:-1])


def _record_batch(values, dims, **params):
    outs, out_dims = _loop_batch(values, dims, **params)
    return list(outs) + [_boxed(Tape())], list(out_dims) + [None]


def _record_statements(targets, args, code, **params):
    """For `show`: the plain loop (generated code calls the primitive, which also keeps
    the first sweep's snapshots for the reversal); the snapshots print as None."""
    if not code.reading:
        return None
    return (_loop_statements(targets[:-1], args, code, **params)
            + [f"{targets[-1]} = None  # pullback keeps snapshots of the carry here"])


def _record_prune(eq, used):
    """Without the tape, a plain loop; with it, every carry is live (the tape keeps them
    for the reversal), only dead ys go."""
    if not used[-1]:
        as_loop = replace(eq, primitive=loop, outputs=eq.outputs[:-1])
        return _loop_prune(as_loop, used[:-1]) or as_loop
    return _pruned_loop(eq, used, [True] * eq.params["n_carry"])


loop_record = Primitive(
    "loop_record", _record_impl, shape=_record_shape, jvp=_record_jvp,
    value_and_vjp=_record_value_and_vjp, batch=_record_batch,
    emit_statements=_record_statements, multiple_results=True, family="loop",
    prune=_record_prune)


# ------------------------------------------------------------------ checkpointed reversal

def _reversal_impl(*args, body, differentiated, n_consts, n_carry, length, reverse, checkpoints):
    """Pull the cotangents back through the loop with the binomial schedule: the
    snapshots live in a Python dict; the advances run the body's primal program without
    its ys; each step is reversed by the body's `step` program (its forward and backward
    halves, the same operations as with "all"). A step whose derivative reads no carry (a
    linear step) is reversed without advancing to its state."""
    wrt, n_in = differentiated, len(body.invars)
    floats_out = tuple(is_float(a) for a in _out_avals(body))
    vjp = vjp_programs(body, wrt, floats_out, n_consts)
    prepare, advance = loop_runner(carries_only(vjp.primal, n_carry), n_consts)
    reverse_step = runner(vjp.step)
    consts_raw = list(args[:n_consts])
    consts = prepare(*consts_raw)
    init = list(args[n_consts:n_consts + n_carry])
    xs = args[n_consts + n_carry:n_in]
    taken = _taken(args[n_in])
    n_ct_carry = sum(floats_out[:n_carry])
    ct_carry = list(args[n_in + 1:n_in + 1 + n_ct_carry])
    ct_ys = args[n_in + 1 + n_ct_carry:]
    n_acc = sum(wrt[:n_consts])
    acc = [zeros_like_value(c) for c, w in zip(consts_raw, wrt) if w]
    ct_xs = [step_rows(length, aval_of(v))
             for v, w in zip(body.invars[n_consts + n_carry:], wrt[n_consts + n_carry:]) if w]

    def index(position):                   # the row of the step at `position`
        return length - 1 - position if reverse else position

    def row(values, position):
        return [v[index(position)] for v in values]

    def run(state, start, stop):
        if xs:
            for p in range(start, stop):
                state = advance(*consts, *state, *row(xs, p))
        else:
            for _ in range(start, stop):
                state = advance(*consts, *state)
        return state

    reads_carry = any(read_inputs(vjp.step)[n_consts:n_consts + n_carry])
    if not reads_carry:      # no step's derivative reads the carry (a linear step): no advances
        state, actions = init, (("reverse", p) for p in range(length - 1, -1, -1))
    elif taken is not None:              # the first sweep's, kept by loop_record
        segments, snapshots, state = taken
    else:
        state_bytes = sum(np.asarray(x).nbytes for x in init)
        c = schedules.snapshot_budget(checkpoints, length, state_bytes)
        segments = schedules.initial_sweep(length, c) if length else []
        snapshots, state = {}, init
        for (position, _), stop in zip(segments, [p for p, _ in segments[1:]] + [length - 1]):
            snapshots[position] = state
            state = run(state, position, stop)
    if reads_carry:
        actions = schedules.reversal(segments, length) if length else []
    del taken
    for action in actions:
        kind, position = action[0], action[1]
        if kind == "advance":
            state = run(state, position, action[2])
        elif kind == "store":
            snapshots[position] = state
        elif kind == "restore":
            state = snapshots[position]
        elif kind == "free":
            del snapshots[position]
        else:
            cts = reverse_step(*consts_raw, *state, *row(xs, position), *ct_carry,
                               *row(ct_ys, position))
            acc = [a + g for a, g in zip(acc, cts[:n_acc])]
            ct_carry = cts[n_acc:n_acc + n_ct_carry]
            if position == length - 1:     # the first reversed: the values' own dtypes
                ct_xs = [step_rows(length, ShapeDtype(np.shape(g), np.result_type(g)))
                         for g in cts[n_acc + n_ct_carry:]]
            for rows, g in zip(ct_xs, cts[n_acc + n_ct_carry:]):
                rows[index(position)] = g
            state = None if reads_carry else state
    return acc + [np.asarray(c) for c in ct_carry] + ct_xs


def _reversal_by_loops(*args, body, differentiated, n_consts, n_carry, length, reverse, checkpoints):
    """The checkpointed reversal's value written with "carry" loops (what its own
    derivatives differentiate: the same function)."""
    wrt, n_in = differentiated, len(body.invars)
    primals = list(args[:n_in])
    _, pullback = _loop_value_and_vjp(wrt, *primals, body=body, n_consts=n_consts,
                                      n_carry=n_carry, length=length, reverse=reverse,
                                      checkpoints="carry")
    floats_out = [is_float(a) for a in _out_avals(body)]
    cts = iter(args[n_in + 1:])                 # after the tape, which it does not need
    results = pullback([next(cts) if f else ZERO for f in floats_out])
    return [c for c, w in zip(results, wrt) if w]


def _reversal_shape(*avals, body, differentiated, n_consts, n_carry, length, reverse, checkpoints):
    shapes = []
    for i, (v, w) in enumerate(zip(body.invars, differentiated)):
        if w:
            a = aval_of(v)
            shapes.append(ShapeDtype(((length,) if i >= n_consts + n_carry else ()) + a.shape,
                                     a.dtype))
    return shapes


_reversal_jvp, _reversal_value_and_vjp = composite_rules(_reversal_by_loops,
                                                        "checkpointed_reversal")


def _reversal_statements(targets, args, code, **params):
    """For `show`: the reversal as the "carry" loops that give its value (generated code
    calls the primitive, which keeps only the schedule's snapshots)."""
    if not code.reading:
        return None
    schedule = f"the binomial schedule ({params['checkpoints']!r} snapshots of the carry)"
    return ([f"# pullback runs this reversal with {schedule}: the same values as these loops"]
            + code.run(lambda *a: _reversal_by_loops(*a, **params), args, targets))


def _reversal_batch(values, dims, *, body, differentiated, n_consts, n_carry, length, reverse,
                    checkpoints):
    """The reversal of the batched body, with the same schedule (its snapshots are batched
    carries): the differentiated inputs and every float output are batched (their
    cotangents differ per example); xs and their cotangents along axis 1, as in `loop`."""
    size = next(shape_of(v)[d] for v, d in zip(values, dims) if d is not None)
    n_in = len(body.invars)
    batched = [d is not None or w for d, w in zip(dims[:n_in], differentiated)]
    forced = tuple(is_float(a) for a in _out_avals(body))
    while True:
        program, found = batch_program(body, tuple(batched), forced, size)
        grown = [b or f for b, f in zip(batched[n_consts:n_consts + n_carry], found[:n_carry])]
        if grown == batched[n_consts:n_consts + n_carry]:
            break
        batched[n_consts:n_consts + n_carry] = grown
    flags = batched + [False] + [True] * sum(forced)       # inputs, tape, cotangents
    args = []
    for i, (v, d, b) in enumerate(zip(values, dims, flags)):
        is_stacked = n_consts + n_carry <= i < n_in or i > n_in + sum(forced[:n_carry])
        if i == n_in:
            v = _boxed(Tape())                # the unbatched loop's snapshots do not apply
        elif d is None and b and is_stacked:
            rest = tuple(shape_of(v))[1:]
            v = np.broadcast_to(np.reshape(v, (length, 1) + rest), (length, size) + rest)
        elif d is None and b:
            v = np.broadcast_to(v, (size,) + tuple(shape_of(v)))
        elif d is not None:
            v = moveaxis(v, d, 1 if is_stacked else 0)
        args.append(v)
    outs = checkpointed_reversal(*args, body=program, differentiated=differentiated,
                                 n_consts=n_consts, n_carry=n_carry, length=length,
                                 reverse=reverse, checkpoints=checkpoints)
    out_dims = [1 if i >= n_consts + n_carry else 0 for i, w in enumerate(differentiated) if w]
    return outs, out_dims


def unused_cotangents_pruned(eq, used, n_before: int, n_carry: int):
    """A reversal (`checkpointed_reversal`, `while_reversal`) without the cotangents
    nobody uses of its consts (the first `n_before` body inputs) and of its xs (those
    after the carries): those inputs are no longer differentiated, so that no step computes
    or sums them (W's outer products in an RNN when only h0's gradient is wanted). The
    carries' cotangents stay: they flow from step to step. None if every one is used."""
    differentiated = list(eq.params["differentiated"])
    outputs = iter(zip(eq.outputs, used))
    kept_outputs = []
    for i, d in enumerate(differentiated):
        if not d:
            continue
        var, is_used = next(outputs)
        if is_used or n_before <= i < n_before + n_carry:
            kept_outputs.append(var)
        else:
            differentiated[i] = False
    if len(kept_outputs) == len(eq.outputs):
        return None
    return replace(eq, outputs=kept_outputs,
                   params={**eq.params, "differentiated": tuple(differentiated)})


def _reversal_prune(eq, used):
    return unused_cotangents_pruned(eq, used, eq.params["n_consts"], eq.params["n_carry"])


checkpointed_reversal = Primitive(
    "checkpointed_reversal", _reversal_impl, shape=_reversal_shape, jvp=_reversal_jvp,
    value_and_vjp=_reversal_value_and_vjp, batch=_reversal_batch, multiple_results=True,
    emit_statements=_reversal_statements, family="loop", prune=_reversal_prune)
