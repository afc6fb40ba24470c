"""The `while_loop` primitive: a loop whose trip count depends on the data, in every mode.

`while_loop(*cond_consts, *body_consts, *init, cond, body, n_cond, n_body, checkpoints)`
runs `carry = body(*body_consts, *carry)` while `cond(*cond_consts, *carry)` is true.

- jvp: a while loop over the body's jvp program, the tangents carried beside the carry
  (the predicate reads the primal part only);
- batch: when the predicate differs across the batch, the loop runs until every example
  is done, each step keeping the carry of the examples already done (`np.where`);
- reverse mode, with no bound on the number of steps: `while_record` runs the loop and
  keeps snapshots with the online schedule (schedules.Online) in a Python object, the
  "tape" (a 0-d object array, a value of the staged program like any other), and
  `while_reversal` reverses every step from them with the binomial recursion. Its own
  derivatives are those of the reverse mode of a `loop` of the recorded number of steps
  (the number is piecewise constant), so they need the tape's value: eagerly, any order;
  under jit, reverse mode twice through a while loop is an error naming what works, and
  so it is under vmap where the predicate is batched (the examples' numbers of steps
  differ: `Tape.masked`);
- statements: a Python `while` loop running the body (a call of a function named after
  the user's in generated code, inline in `show`); `show` prints reverse mode as the loop
  appending each carry to a list and a `for` loop over it reversed (the values pullback's
  snapshots give);
- prune (dead-code elimination): the loop without the carries nothing needs (used after
  it, read by the predicate or by a live carry's step); `while_record` without its tape
  is a while_loop; `while_reversal` without the cotangents of consts nobody uses.
"""
from dataclasses import replace

import numpy as np

from ..core.arrays import moveaxis, shape_of, zeros, zeros_like_value
from ..core.primitive import ZERO, Primitive, ShapeDtype
from ..core.engine import Tracer
from ..errors import LoopTypeError
from ..ir.staging import StagingTracer
from ..ir.program import Var, evaluate
from . import schedules
from .loop import for_tracers, indented, loop, unused_cotangents_pruned
from .bodies import (_cached, aval_of, batch_program, composite_rules, hoisted, is_float,
                     jvp_program, live_carries, loop_runner, read_inputs, runner, stage_flat,
                     vjp_programs, with_interface)

TAPE = ShapeDtype((), np.dtype(object))


def _split(args, n_cond, n_body):
    return (list(args[:n_cond]), list(args[n_cond:n_cond + n_body]),
            list(args[n_cond + n_body:]))


def _while_impl(*args, cond, body, n_cond, n_body, checkpoints):
    cond_consts, body_consts, carry = _split(args, n_cond, n_body)
    test = runner(cond)
    prepare, step = loop_runner(body, n_body)
    body_consts = prepare(*body_consts)
    while test(*cond_consts, *carry)[0]:
        carry = step(*body_consts, *carry)
    return [np.asarray(c) for c in carry]


def _while_shape(*avals, cond, body, n_cond, n_body, checkpoints):
    return [aval_of(v) for v in body.outvars]


def _while_jvp(primals, tangents, *, cond, body, n_cond, n_body, checkpoints):
    cond_consts, body_consts, carry = _split(primals, n_cond, n_body)
    _, body_dots, carry_dots = _split(tangents, n_cond, n_body)
    floats = [is_float(v.aval) for v in body.invars]
    nonzero = [t is not ZERO and f for t, f in zip(body_dots, floats[:n_body])]
    nonzero += floats[n_body:]
    n_carry = len(carry)
    program, found = jvp_program(body, tuple(nonzero), tuple(floats[n_body:]))
    n_tc = sum(nonzero[n_body:])

    def make():
        tangents_in = iter(program.invars[len(body.invars):])
        tangent_of = [next(tangents_in) if nz else None for nz in nonzero]
        invars = (program.invars[:n_body] + [t for t in tangent_of[:n_body] if t is not None]
                  + program.invars[n_body:len(body.invars)]
                  + [t for t in tangent_of[n_body:] if t is not None])
        jvp_body = with_interface(program, invars, program.outvars)
        extra = [Var(aval_of(v)) for v in program.outvars[n_carry:]]
        jvp_cond = with_interface(cond, list(cond.invars) + extra, cond.outvars)
        return jvp_body, jvp_cond, cond          # cond kept alive: its id is in the key
    jvp_body, jvp_cond, _ = _cached(body, ("jvp while", tuple(nonzero), id(cond)), make)
    dots = [zeros_like_value(c) if t is ZERO else t
            for c, t, nz in zip(carry, carry_dots, nonzero[n_body:]) if nz]
    const_dots = [t for t, nz in zip(body_dots, nonzero[:n_body]) if nz]
    outs = while_loop(*cond_consts, *body_consts, *const_dots, *carry, *dots, cond=jvp_cond,
                      body=jvp_body, n_cond=n_cond, n_body=n_body + len(const_dots),
                      checkpoints=checkpoints)
    out_dots = iter(outs[n_carry:])
    assert len(outs) == n_carry + n_tc, "a carry's tangent changed kind"
    return outs[:n_carry], [next(out_dots) if f else ZERO for f in found[:n_carry]]


# ------------------------------------------------------------------ batching

def masked_programs(cond, body, n_cond, n_body, batched, size):
    """(cond', body', carry batched, masked) for a batch. Where the predicate differs
    across the batch (masked), the carry is doubled: (carry, last) where `last` holds
    each example's last input the body ran on; cond' says whether any example goes on, and
    body' (reading cond's consts, then body's) steps the examples whose predicate holds,
    keeps the others' carry, and runs the body on `last` for those: never on a state it
    would not see unbatched, so that no inf or NaN from there reaches a derivative."""
    def make():
        flags = list(batched)
        carry_flags = flags[n_cond + n_body:]
        while True:
            bcond, cfound = batch_program(cond, tuple(flags[:n_cond] + carry_flags), (False,),
                                          size)
            if cfound[0] and not all(carry_flags):   # the predicate, staged again, reads them
                carry_flags = [True] * len(carry_flags)
                continue
            bbody, bfound = batch_program(body, tuple(flags[n_cond:n_cond + n_body]
                                                      + carry_flags), tuple(carry_flags), size)
            grown = [a or b for a, b in zip(carry_flags, bfound)]
            if grown == carry_flags:
                break
            carry_flags = grown
        if not cfound[0]:          # every example stops at the same step
            return bcond, bbody, tuple(carry_flags), False, cond
        carry_avals = [aval_of(v) for v in bcond.invars[n_cond:]]
        cond_avals = [aval_of(v) for v in bcond.invars[:n_cond]]
        n_carry = len(carry_avals)

        def any_going(*args):
            return [np.any(evaluate(bcond, *args[:n_cond + n_carry])[0])]

        def masked_step(*args):
            cond_consts, body_consts = args[:n_cond], args[n_cond:n_cond + n_body]
            carry = args[n_cond + n_body:n_cond + n_body + n_carry]
            last = args[n_cond + n_body + n_carry:]
            going = evaluate(bcond, *cond_consts, *carry)[0]

            def where(a, b):
                return np.where(going.reshape((size,) + (1,) * (len(shape_of(a)) - 1)), a, b)
            safe = [where(c, p) for c, p in zip(carry, last)]
            stepped = evaluate(bbody, *body_consts, *safe)
            return [where(s, c) for s, c in zip(stepped, carry)] + safe
        new_cond = stage_flat(any_going, cond_avals + carry_avals * 2, cond.name)
        body_avals = cond_avals + [aval_of(v) for v in bbody.invars[:n_body]] + carry_avals * 2
        new_body = stage_flat(masked_step, body_avals, body.name)
        return new_cond, new_body, tuple(carry_flags), True, cond
    return _cached(body, ("masked while", id(cond), tuple(batched), size), make)[:4]


def _while_batch(values, dims, *, cond, body, n_cond, n_body, checkpoints, primitive=None):
    size = next(shape_of(v)[d] for v, d in zip(values, dims) if d is not None)
    batched = tuple(d is not None for d in dims)
    new_cond, new_body, carry_flags, masked = masked_programs(cond, body, n_cond, n_body,
                                                              batched, size)
    args = []
    for v, d, b in zip(values, dims, batched[:n_cond + n_body] + carry_flags):
        if d is None and b:
            v = np.broadcast_to(v, (size,) + tuple(shape_of(v)))
        elif d is not None:
            v = moveaxis(v, d, 0)
        args.append(v)
    cond_consts, body_consts, carry = _split(args, n_cond, n_body)
    n_carry = len(carry)
    if masked:          # the masked body reads the predicate's consts too, and `last`
        body_consts, carry = cond_consts + body_consts, carry * 2
    outs = (primitive or while_loop)(*cond_consts, *body_consts, *carry, cond=new_cond,
                                     body=new_body, n_cond=n_cond, n_body=len(body_consts),
                                     checkpoints=checkpoints)
    return outs[:n_carry] + outs[len(carry):], [0 if f else None for f in carry_flags]


# ------------------------------------------------------------------ reverse mode

def _differentiated(wrt, body, n_cond, n_body):
    """Which body consts and carries reverse mode pulls back to: the floats among the
    differentiated consts, and every float carry (a cotangent flows through them)."""
    floats = [is_float(v.aval) for v in body.invars]
    return tuple([w and f for w, f in zip(wrt[n_cond:n_cond + n_body], floats)]
                 + floats[n_body:])


def _recorded_vjp(wrt, primals, cond, body, n_cond, n_body, checkpoints):
    """(carry and tape, pullback of the carry's cotangents to every input)."""
    differentiated = _differentiated(wrt, body, n_cond, n_body)
    results = while_record(*primals, cond=cond, body=body, n_cond=n_cond, n_body=n_body,
                           checkpoints=checkpoints)
    tape = results[-1]
    out_avals = [aval_of(v) for v in body.outvars]

    def pullback(cts):
        ct_carry = [zeros(tuple(a.shape), a.dtype) if c is ZERO else c
                    for c, a, d in zip(cts, out_avals, differentiated[n_body:]) if d]
        it = iter(while_reversal(*primals, tape, *ct_carry, cond=cond, body=body,
                                 n_cond=n_cond, n_body=n_body, differentiated=differentiated))
        return [ZERO] * n_cond + [next(it) if d else ZERO for d in differentiated]
    return results, pullback


def _while_value_and_vjp(wrt, *primals, **params):
    results, pullback = _recorded_vjp(wrt, primals, **params)
    return results[:-1], pullback


class Tape:
    """What `while_record` keeps for `while_reversal`: the number of steps, the online
    schedule, its snapshots (position -> carry) and the carry before the last step."""
    __slots__ = ("steps", "online", "snapshots", "last")

    def masked(self, n_carry: int) -> bool:
        """Whether a batched loop recorded it for a loop of `n_carry` carries, masking the
        examples that stopped (`masked_programs` doubles the carry): its number of steps
        is the longest example's."""
        return len(self.snapshots[0]) != n_carry


def _budget(checkpoints, carry):
    """The online schedule's snapshot budget for a number of steps."""
    if checkpoints in ("all", "carry"):
        return lambda steps: steps + 1
    if checkpoints in ("sqrt", "auto"):
        return lambda steps: schedules.snapshot_budget(checkpoints, steps, 0)
    c = schedules.snapshot_budget(checkpoints, 1, sum(np.asarray(x).nbytes for x in carry))
    return lambda steps: c


def _record_impl(*args, cond, body, n_cond, n_body, checkpoints):
    cond_consts, body_consts, carry = _split(args, n_cond, n_body)
    test = runner(cond)
    prepare, step = loop_runner(body, n_body)
    body_consts = prepare(*body_consts)
    tape = Tape()
    tape.online = schedules.Online(_budget(checkpoints, carry))
    tape.snapshots, tape.last, steps = {0: carry}, None, 0
    while test(*cond_consts, *carry)[0]:
        if steps and tape.online.offer(steps):
            tape.snapshots[steps] = carry
            tape.snapshots = {p: tape.snapshots[p] for p in tape.online.positions}
        tape.last = carry
        carry = step(*body_consts, *carry)
        steps += 1
    tape.steps = steps
    boxed = np.empty((), object)
    boxed[()] = tape
    return [np.asarray(c) for c in carry] + [boxed]


def _record_shape(*avals, cond, body, n_cond, n_body, checkpoints):
    return [aval_of(v) for v in body.outvars] + [TAPE]


def _record_jvp(primals, tangents, **params):
    results = while_record(*primals, **params)
    _, dots = _while_jvp(primals, tangents, **params)
    return results, list(dots) + [ZERO]


def _record_value_and_vjp(wrt, *primals, **params):
    results, pullback = _recorded_vjp(wrt, primals, **params)
    return results, lambda cts: pullback(cts[:-1])


def _record_batch(values, dims, *, cond, body, n_cond, n_body, checkpoints):
    outs, out_dims = _while_batch(values, dims, cond=cond, body=body, n_cond=n_cond,
                                  n_body=n_body, checkpoints=checkpoints, primitive=while_record)
    return outs, out_dims + [None]


def _reversal_impl(*args, cond, body, n_cond, n_body, differentiated):
    _, body_consts, rest = _split(args, n_cond, n_body)
    n_carry = len(body.outvars)
    tape, ct_carry = rest[n_carry][()], list(rest[n_carry + 1:])
    n = tape.steps
    floats_out = tuple(is_float(aval_of(v)) for v in body.outvars)
    vjp = vjp_programs(body, differentiated, floats_out, n_body)
    prepare, advance = loop_runner(vjp.primal, n_body)
    prepared = prepare(*body_consts)
    reverse_step = runner(vjp.step)
    n_acc = sum(differentiated[:n_body])
    acc = [zeros_like_value(c) for c, d in zip(body_consts, differentiated) if d]
    if n == 0:
        return acc + ct_carry
    snapshots, state = dict(tape.snapshots), tape.last
    if any(read_inputs(vjp.step)[n_body:n_body + n_carry]):
        actions = schedules.reversal(tape.online.segments(n), n)
    else:            # no step's derivative reads the carry (a linear step): no advances
        actions = (("reverse", p) for p in range(n - 1, -1, -1))
    for action in actions:
        kind, position = action[0], action[1]
        if kind == "advance":
            for _ in range(position, action[2]):
                state = advance(*prepared, *state)
        elif kind == "store":
            snapshots[position] = state
        elif kind == "restore":
            state = snapshots[position]
        elif kind == "free":
            snapshots.pop(position, None)
        else:
            cts = reverse_step(*body_consts, *state, *ct_carry)
            acc = [a + g for a, g in zip(acc, cts[:n_acc])]
            ct_carry = cts[n_acc:]
    return acc + [np.asarray(c) for c in ct_carry]


def _reversal_shape(*avals, body, differentiated, **params):
    return [aval_of(v) for v, d in zip(body.invars, differentiated) if d]


def _reversal_by_loop(*args, cond, body, n_cond, n_body, differentiated):
    """The reversal written as the reverse mode of a `loop` of the recorded number of
    steps: the same function of the consts, the initial carry and the cotangents (the
    number of steps is piecewise constant), which its derivatives differentiate."""
    _, body_consts, rest = _split(args, n_cond, n_body)
    n_carry = len(body.outvars)
    tape = _concrete(rest[n_carry])
    if tape is None:
        raise LoopTypeError(
            "reverse mode through a while_loop, differentiated again under jit/make_ir: the "
            "number of steps is only known when the program runs. Differentiate twice "
            "without jit, use forward mode over it (hessian(..., mode=\"reverse-over-forward\") "
            "or \"forward-over-forward\"), or pullback.fori_loop with the trip count.")
    if tape.masked(n_carry):
        raise LoopTypeError(
            "reverse mode through a while_loop under vmap, differentiated again (forward-"
            "over-reverse or reverse-over-reverse), whose predicate reads batched values: the "
            "examples may stop after different numbers of steps, and the derivative of the "
            "reversal would run every example for the longest one's number. Use forward mode over it (hessian(..., mode=\"reverse-over-"
            "forward\"), hvp's default), or call the function example by example.")
    ct_carry = iter(rest[n_carry + 1:])
    wrt = list(differentiated[:n_body]) + [True] * n_carry
    _, pullback = loop.value_and_vjp(
        wrt, *body_consts, *rest[:n_carry], body=body, n_consts=n_body, n_carry=n_carry,
        length=tape.steps, reverse=False, checkpoints="carry")
    cts = pullback([next(ct_carry) if d else ZERO for d in differentiated[n_body:]])
    return [c for c, d in zip(cts, differentiated) if d]


def _concrete(tape):
    """The Tape inside a value of the tape (through the tracers of derivatives), or None
    while it is staged (its value is only known when the program runs)."""
    while isinstance(tape, Tracer):
        if type(tape) is StagingTracer:
            return None
        tape = tape.primal if hasattr(tape, "primal") else tape.value
    return tape[()]


_reversal_jvp, _reversal_value_and_vjp = composite_rules(_reversal_by_loop, "while_reversal")


def _reversal_batch(values, dims, *, cond, body, n_cond, n_body, differentiated):
    n_in = n_cond + n_body + len(body.outvars)
    if dims[n_in] is not None:
        raise LoopTypeError("a while_loop's tape cannot be batched: vmap the function "
                            "that runs the loop instead.")
    size = next(shape_of(v)[d] for v, d in zip(values, dims) if d is not None)
    batched = tuple(d is not None for d in dims[:n_in])
    params = dict(cond=cond, body=body, n_cond=n_cond, n_body=n_body,
                  differentiated=differentiated)
    if not any(batched):        # cotangents batched (jacrev's basis) over one tape
        return _per_example(values, dims, size, lambda k: values[n_in], n_in, params)
    # The tape was recorded by the batched loop (`masked_programs`): reverse that loop,
    # reading the differentiated consts batched (broadcast): a const shared by the examples
    # has a cotangent per example, which a shared one would sum over the batch.
    recorded_flags = masked_programs(cond, body, n_cond, n_body, batched, size)[2]
    # A batched cotangent of a shared carry (an HVP's, for a batch of vectors) needs the
    # carry batched in the reversal's programs as well.
    ct_batched = [d is not None for d in dims[n_in + 1:]]
    carry_of_ct = [_ct_carry_index(differentiated, n_body, k) for k in range(len(ct_batched))]
    batched = tuple(b or (n_cond <= i < n_cond + n_body and differentiated[i - n_cond])
                    or any(c and n_cond + n_body + j == i for c, j in zip(ct_batched, carry_of_ct))
                    for i, b in enumerate(batched))
    new_cond, new_body, carry_flags, masked = masked_programs(cond, body, n_cond, n_body,
                                                              batched, size)
    if carry_flags != recorded_flags:      # it would batch a carry the tape keeps shared
        if isinstance(values[n_in], Tracer):
            raise LoopTypeError(
                "reverse mode of a while_loop under vmap, where a shared value the loop "
                "differentiates meets a carry it keeps shared, and its tape is traced (jit, "
                "or a derivative of higher order): vmap the function that runs the loop (its "
                "inputs batched), or differentiate eagerly.")
        return _per_example(values, dims, size,
                            lambda k: _example_tape(values[n_in], recorded_flags, k), n_in,
                            params)
    flags = batched[:n_cond + n_body] + carry_flags
    args = []
    for i, (v, d) in enumerate(zip(values, dims)):
        wanted = flags[i] if i < n_in else i > n_in and (
            carry_flags[_ct_carry_index(differentiated, n_body, i - n_in - 1)])
        if d is None and wanted:
            v = np.broadcast_to(v, (size,) + tuple(shape_of(v)))
        elif d is not None:
            v = moveaxis(v, d, 0)
        args.append(v)
    cond_consts, body_consts, rest = _split(args, n_cond, n_body)
    new_differentiated = differentiated
    n_carry = len(body.outvars)
    if masked:          # the carry doubled by `last`, whose cotangents are zero
        init, tape, cts = rest[:n_carry], rest[n_carry], rest[n_carry + 1:]
        body_consts = cond_consts + body_consts
        carry_differentiated = differentiated[n_body:]
        new_differentiated = ((False,) * n_cond + differentiated[:n_body]
                              + carry_differentiated * 2)
        rest = init * 2 + [tape] + cts + [zeros_like_value(c) for c in cts]
    outs = while_reversal(*cond_consts, *body_consts, *rest, cond=new_cond, body=new_body,
                          n_cond=n_cond, n_body=len(body_consts),
                          differentiated=new_differentiated)
    outs = outs[:len(_reversal_shape(body=body, differentiated=differentiated))]
    out_flags = [b for b, d in zip(flags[n_cond:], differentiated) if d]
    return outs, [0 if f else None for f in out_flags]


def _per_example(values, dims, size, tape_of, n_in, params):
    """The reversal example by example (the unbatched loop), with example k's tape."""
    moved = [v if d is None else moveaxis(v, d, 0) for v, d in zip(values, dims)]
    rows = [while_reversal(*[tape_of(k) if i == n_in else v if d is None else v[k]
                             for i, (v, d) in enumerate(zip(moved, dims))], **params)
            for k in range(size)]
    return [np.stack(column) for column in zip(*rows)], [0] * len(rows[0])


def _example_tape(boxed, carry_flags, k):
    """Example k's tape of a tape the batched loop recorded (unmasked: its carries
    flagged in `carry_flags` batched along axis 0, the others shared)."""
    tape, example = boxed[()], Tape()

    def carry_of(carry):
        return [c[k] if f else c for c, f in zip(carry, carry_flags)]
    example.steps, example.online = tape.steps, tape.online
    example.snapshots = {p: carry_of(c) for p, c in tape.snapshots.items()}
    example.last = None if tape.last is None else carry_of(tape.last)
    boxed = np.empty((), object)
    boxed[()] = example
    return boxed


def _ct_carry_index(differentiated, n_body, k):
    """The carry position of the k-th carry cotangent (one per float carry)."""
    return [i for i, d in enumerate(differentiated[n_body:]) if d][k]


# ------------------------------------------------------------------ statements

def _while_statements(targets, args, code, *, cond, body, n_cond, n_body, checkpoints,
                      tape=None):
    """A `while` loop running the body while the predicate holds (calls of functions in
    generated code, inline in `show`); with `tape`, each carry the body runs on is appended
    to the list of that name. None (the primitive is called) `for_tracers`."""
    if for_tracers(code):
        return None
    cond_consts, body_consts = list(args[:n_cond]), list(args[n_cond:n_cond + n_body])
    lines = [f"{t} = {a}" for t, a in zip(targets, args[n_cond + n_body:]) if t != a]
    split = hoisted(body, n_body)
    if split is not None:
        head, body = split
        invariants = [code.fresh("invariant") for _ in head.outvars]
        lines += code.run(head, body_consts, invariants)
        body_consts += invariants
    going = code.fresh("going")
    test = code.run(cond, cond_consts + list(targets), [going])
    statements = [line for line in test if not line.startswith("#")]
    if len(statements) == 1 and statements[0].startswith(f"{going} = "):
        lines.append(f"while {statements[0][len(going) + 3:]}:")     # one expression
    else:
        lines += ["while True:"] + indented(test) + [f"    if not {going}:", "        break"]
    if tape is not None:
        carry = targets[0] if len(targets) == 1 else f"({', '.join(targets)})"
        lines.append(f"    {tape}.append({carry})")
    return lines + indented(code.run(body, body_consts + list(targets), targets))


def _record_statements(targets, args, code, **params):
    """For `show`: the while loop appending every carry the body runs on to a list, the
    tape (pullback keeps snapshots and recomputes the others: the same values)."""
    if not code.reading:
        return None
    *carry, tape = targets
    return ([f"# pullback keeps snapshots of these carries ({params['checkpoints']!r}) and "
             "recomputes the others", f"{tape} = []"]
            + _while_statements(carry, args, code, **params, tape=tape))


def _reversal_statements(targets, args, code, *, cond, body, n_cond, n_body, differentiated):
    """For `show`: a `for` loop over the recorded carries, last first, each step's
    cotangents from its carry (the body's forward and backward halves), the consts'
    summed."""
    if not code.reading:
        return None
    _, body_consts, rest = _split(args, n_cond, n_body)
    n_carry = len(body.outvars)
    tape, ct_carry = rest[n_carry], rest[n_carry + 1:]
    floats_out = tuple(is_float(aval_of(v)) for v in body.outvars)
    step = vjp_programs(body, differentiated, floats_out, n_body).step
    n_acc = sum(differentiated[:n_body])
    acc, cts = targets[:n_acc], targets[n_acc:]
    summed = [c for c, d in zip(body_consts, differentiated) if d]
    lines = [f"{a} = np.zeros_like({c})" for a, c in zip(acc, summed)]
    lines += [f"{t} = {c}" for t, c in zip(cts, ct_carry) if t != c]
    states = [code.fresh("state") for _ in range(n_carry)]
    parts = [code.fresh("part") for _ in acc]
    lines.append(f"for {', '.join(states)} in reversed({tape}):")
    lines += indented(code.run(step, body_consts + states + cts, parts + cts))
    return lines + [f"    {a} = {a} + {p}" for a, p in zip(acc, parts)]


def _while_prune(eq, used):
    """Without its dead carries (those neither used after the loop, nor read by the
    predicate or a live carry's computation) and the consts nothing then reads."""
    cond, body = eq.params["cond"], eq.params["body"]
    n_cond, n_body = eq.params["n_cond"], eq.params["n_body"]
    n_carry = len(body.outvars)
    cond_reads = read_inputs(cond)
    reduced, reads, live = live_carries(body, n_body, list(used), [],
                                        also_read=cond_reads[n_cond:])
    if all(live) and all(reads[:n_body]) and all(cond_reads[:n_cond]):
        return None
    carries = [v for v, keep in zip(body.invars[n_body:], live) if keep]
    new_body = with_interface(reduced, [v for v, keep in zip(body.invars[:n_body], reads)
                                        if keep] + carries, reduced.outvars)
    cond_carries = [v for v, keep in zip(cond.invars[n_cond:], live) if keep]
    new_cond = with_interface(cond, [v for v, keep in zip(cond.invars[:n_cond], cond_reads)
                                     if keep] + cond_carries, cond.outvars)
    for new, old in ((new_body, body), (new_cond, cond)):
        new.optimized = getattr(old, "optimized", False)
    inputs_kept = cond_reads[:n_cond] + reads[:n_body] + live
    return replace(eq, inputs=[x for x, keep in zip(eq.inputs, inputs_kept) if keep],
                   outputs=[v for v, keep in zip(eq.outputs, live) if keep],
                   params={**eq.params, "cond": new_cond, "body": new_body,
                           "n_cond": sum(cond_reads[:n_cond]), "n_body": sum(reads[:n_body])})


while_loop = Primitive(
    "while_loop", _while_impl, shape=_while_shape, jvp=_while_jvp,
    value_and_vjp=_while_value_and_vjp, batch=_while_batch, emit_statements=_while_statements,
    multiple_results=True, family="loop", prune=_while_prune)

def _record_prune(eq, used):
    """Without the tape, a while_loop (then pruned itself); with it, every carry is live
    (the reversal reads them)."""
    if used[-1]:
        return None
    as_loop = replace(eq, primitive=while_loop, outputs=eq.outputs[:-1])
    return _while_prune(as_loop, used[:-1]) or as_loop


def _reversal_prune(eq, used):
    return unused_cotangents_pruned(eq, used, eq.params["n_body"], len(eq.params["body"].outvars))


while_record = Primitive(
    "while_record", _record_impl, shape=_record_shape, jvp=_record_jvp,
    value_and_vjp=_record_value_and_vjp, batch=_record_batch, multiple_results=True,
    emit_statements=_record_statements, family="loop", prune=_record_prune)

while_reversal = Primitive(
    "while_reversal", _reversal_impl, shape=_reversal_shape, jvp=_reversal_jvp,
    value_and_vjp=_reversal_value_and_vjp, batch=_reversal_batch, multiple_results=True,
    emit_statements=_reversal_statements, family="loop", prune=_reversal_prune)
