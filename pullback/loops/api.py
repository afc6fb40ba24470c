"""What users call (pytrees in and out): `scan`, `fori_loop` (the `loop` primitive,
loop.py), `while_loop` (whiles.py), `switch` and `cond` (branches.py), `checkpoint` (a
one-step scan keeping its inputs); the user's functions staged once per signature
(bodies.py)."""
import functools
from typing import Any, Callable

import numpy as np

from ..core.arrays import foreign_library, shape_of
from ..core.engine import Tracer
from ..core.primitive import ShapeDtype
from ..errors import ArrayLibraryError, CheckpointPolicyError, LoopTypeError
from ..tree import describe, flatten, tree_map, unflatten
from .bodies import aval_of, reading_its_xs, stage_function
from .loop import loop
from .whiles import while_loop as while_loop_p
from .branches import switch as switch_p
from .schedules import checked_policy


def _name(fn) -> str:
    if isinstance(fn, functools.partial):         # (fori_loop's body: its first argument)
        return _name(fn.args[0] if fn.func is _counted_step and fn.args else fn.func)
    return getattr(fn, "__name__", "body")


def _as_array(leaf):
    """A Python number as the NumPy scalar it would become (strongly typed)."""
    return np.asarray(leaf) if isinstance(leaf, (bool, int, float, complex)) else leaf


def _numpy_arrays_only(kind, values):
    """Loop and branch bodies run as generated NumPy code: another library's arrays (Dask,
    CuPy) would be computed into NumPy silently, so they are refused."""
    library = foreign_library(values)
    if library is not None:
        raise ArrayLibraryError(
            f"pullback.{kind} got {library} arrays, but it runs its body as NumPy code and "
            f"would compute them into NumPy arrays. Compute the inputs with NumPy first "
            f"(np.asarray), or write the loop or branch in plain Python, which pullback "
            f"differentiates on {library} arrays directly.")


def _check_carry(fn, carry_tree, carry_avals, out_tree, out_avals, kind="scan"):
    if out_tree != carry_tree:
        raise LoopTypeError(
            f"`{_name(fn)}` returned a carry of structure {describe(out_tree)}, but the loop "
            f"carries {describe(carry_tree)}: a loop's carry keeps its structure, shapes and "
            "dtypes from step to step. Return the carry in the structure it came in.")
    for i, (a, b) in enumerate(zip(carry_avals, out_avals)):
        if tuple(a.shape) != tuple(b.shape) or np.dtype(a.dtype) != np.dtype(b.dtype):
            index = " (fori_loop's index i is an int64 array, not a Python int: NumPy computes " \
                "float32 values times it in float64; write i.astype(x.dtype))" \
                if kind == "fori_loop" and tuple(a.shape) == tuple(b.shape) else ""
            raise LoopTypeError(
                f"`{_name(fn)}` changed carry leaf {i} from {np.dtype(a.dtype).name}"
                f"{list(a.shape)} to {np.dtype(b.dtype).name}{list(b.shape)}: a loop's carry "
                "keeps its shapes and dtypes from step to step. Convert the result back "
                f"(x.astype(...)), or start from an initial value of the type the step "
                f"returns{index}.")


def scan(f: Callable, init: Any, xs: Any = None, length: int = None, reverse: bool = False,
         checkpoints="all"):
    """Run `carry, y = f(carry, x)` over the rows x of `xs` (along axis 0); returns the last
    carry and the ys stacked. One primitive in every mode, rolled under jit; `checkpoints`
    chooses what reverse mode keeps: "all" (residuals), "carry", "sqrt", "auto", a number
    of snapshots or a byte budget ("256MB").

    >>> last, ys = scan(lambda c, x: (c + x, c + x), 0.0, np.arange(3.0))
    >>> float(last), ys.tolist()
    (3.0, [0.0, 1.0, 3.0])
    """
    return _scan(f, init, xs, length, reverse, checkpoints)


def _scan(f, init, xs, length, reverse, checkpoints, make_xs=None, kind="scan"):
    """scan; `make_xs`, if given, makes the leaves of `xs` (then only placeholders of their
    type) when the body reads them: fori_loop's counter is no array of n when unread. `kind`:
    the function the user called, for errors."""
    checkpoints = checked_policy(checkpoints)
    _callable(f, f"{kind}'s body")
    init_leaves, carry_tree = flatten(init)
    init_leaves = [_as_array(x) for x in init_leaves]
    x_leaves, x_tree = flatten(xs)
    x_leaves = [_as_array(x) for x in x_leaves]
    lengths = {shape_of(x)[0] if shape_of(x) else None for x in x_leaves}
    if length is not None:
        length = _integer(length, "scan's length")
        if length < 0:
            raise LoopTypeError(f"scan's length is {length}: a number of steps, at least 0.")
        lengths.add(length)
    if None in lengths or len(lengths) != 1:
        raise LoopTypeError(
            f"scan got xs of leading lengths {sorted(map(str, lengths))}"
            + (f" and length={length}" if length is not None else "")
            + ": every leaf of xs is scanned along its first axis, so they all need the same "
            "length (and length=, if given, must agree). Pass length= alone when there are no xs.")
    n = lengths.pop()
    carry_avals = [aval_of(x) for x in init_leaves]
    x_avals = [ShapeDtype(tuple(shape_of(x))[1:], aval_of(x).dtype) for x in x_leaves]

    in_tree = flatten((init, xs))[1]
    staged = _stage_step(f, carry_avals + x_avals, in_tree)
    out_avals = [aval_of(v) for v in staged.program.outvars]
    outs_tree = staged.out_tree
    new_carry_tree, y_tree = outs_tree.children if outs_tree.kind is tuple and \
        len(outs_tree.children) == 2 else (None, None)
    if new_carry_tree is None:
        raise LoopTypeError(f"`{_name(f)}` returned {describe(outs_tree)}; a scan body returns "
                            "a pair (new carry, y); y may be None.")
    n_carry = len(init_leaves)
    _check_carry(f, carry_tree, carry_avals, new_carry_tree, out_avals[:n_carry], kind)
    body, read = reading_its_xs(staged.program, len(staged.captured) + n_carry)
    if make_xs is not None and any(read):
        x_leaves = make_xs()
    _numpy_arrays_only(kind, [*staged.captured, *init_leaves, *x_leaves])
    outs = loop(*staged.captured, *init_leaves, *[x for x, r in zip(x_leaves, read) if r],
                body=body, n_consts=len(staged.captured), n_carry=n_carry, length=n,
                reverse=bool(reverse), checkpoints=checkpoints)
    return unflatten(carry_tree, outs[:n_carry]), unflatten(y_tree, outs[n_carry:])


def _stage_step(f, leaves, in_tree):
    def scan_body(carry, x):
        new_carry, y = _pair(f(carry, x), f)
        return (tree_of_arrays(new_carry), tree_of_arrays(y))
    scan_body.__name__ = _name(f)
    return stage_function(f, leaves, in_tree, call=scan_body, kind="scan")


def _pair(out, f):
    if not (isinstance(out, tuple) and len(out) == 2):
        raise LoopTypeError(f"`{_name(f)}` returned a {type(out).__name__}; a scan body returns "
                            "a pair (new carry, y); y may be None.")
    return out


def tree_of_arrays(tree):
    leaves, td = flatten(tree)
    return unflatten(td, [_as_array(x) for x in leaves])


def fori_loop(lower: int, upper: int, body: Callable, init: Any, checkpoints="all"):
    """`val = body(i, val)` for i in range(lower, upper); returns the last val. A scan
    without xs: one primitive in every mode, rolled under jit.

    >>> float(fori_loop(0, 4, lambda i, x: x * 2.0, 1.0))
    16.0
    """
    _callable(body, "fori_loop's body")
    lower = _integer(lower, "fori_loop's lower bound")
    upper = _integer(upper, "fori_loop's upper bound")
    upper = max(lower, upper)
    counter = np.broadcast_to(np.int_(lower), (upper - lower,))       # its type, no memory
    last, _ = _scan(functools.partial(_counted_step, body), init, counter, None, False,
                    checkpoints, make_xs=lambda: [np.arange(lower, upper)], kind="fori_loop")
    return last


def _integer(value, name):
    """A loop bound or length as a Python int: a float, which range() refuses, is an error
    (int() would drop its fraction: 2.5 steps are not 2)."""
    dtype = getattr(value, "dtype", None)
    if np.dtype(type(value) if dtype is None else dtype).kind not in "biu":
        raise LoopTypeError(f"{name} is {value!r}, not an integer: pass an int, as range() "
                            "takes.")
    return int(value)


def _callable(fn, name):
    if not callable(fn):
        raise LoopTypeError(f"{name} is {fn!r}, not a function: pass a function (a def or "
                            "a lambda).")


def _counted_step(body, carry, i):
    """fori_loop's body as a scan body (a partial of it is cached by what `body` holds)."""
    return body(i, carry), None


def while_loop(cond_fun: Callable, body_fun: Callable, init: Any, checkpoints="auto"):
    """`val = body_fun(val)` while `cond_fun(val)` is true; returns the last val. One
    primitive in every mode, a Python `while` under jit; reverse mode needs no bound on the
    number of steps: snapshots are kept with an online schedule (`checkpoints`: "auto"
    keeps about log2(n) of them, an int that many, "all"/"carry" every carry).

    >>> float(while_loop(lambda x: x < 10.0, lambda x: x * 2.0, 1.0))
    16.0
    """
    checkpoints = checked_policy(checkpoints)
    _callable(cond_fun, "while_loop's cond_fun")
    _callable(body_fun, "while_loop's body_fun")
    leaves, carry_tree = flatten(init)
    leaves = [_as_array(x) for x in leaves]
    avals = [aval_of(x) for x in leaves]
    in_tree = flatten((init,))[1]

    def predicate(val):
        return _as_array(cond_fun(val))
    predicate.__name__ = _name(cond_fun)
    cond = stage_function(cond_fun, avals, in_tree, call=predicate, kind="while cond")
    pred = [aval_of(v) for v in cond.program.outvars]
    if len(pred) != 1 or pred[0].shape != () or np.dtype(pred[0].dtype) != np.bool_:
        raise LoopTypeError(
            f"`{_name(cond_fun)}` returned {', '.join(_type_name(a) for a in pred) or 'nothing'}"
            "; a while_loop's predicate returns one boolean scalar. Reduce it (np.all, "
            "np.any), or compare a scalar.")

    def step(val):
        return tree_of_arrays(body_fun(val))
    step.__name__ = _name(body_fun)
    body = stage_function(body_fun, avals, in_tree, call=step, kind="while body")
    _check_carry(body_fun, carry_tree, avals, body.out_tree,
                 [aval_of(v) for v in body.program.outvars])
    _numpy_arrays_only("while_loop", [*cond.captured, *body.captured, *leaves])
    outs = while_loop_p(*cond.captured, *body.captured, *leaves, cond=cond.program,
                        body=body.program, n_cond=len(cond.captured),
                        n_body=len(body.captured), checkpoints=checkpoints)
    return unflatten(carry_tree, outs)


def _type_name(aval) -> str:
    return f"{np.dtype(aval.dtype).name}{list(aval.shape)}"


def switch(index, branches, *operands):
    """`branches[index](*operands)`, the index clipped to the branches; every branch
    returns the same structure, shapes and dtypes. One primitive in every mode (under vmap
    with an index per example, each branch runs and the results are selected).

    >>> float(switch(1, [np.sin, np.cos, np.tan], 0.0))
    1.0
    """
    branches = list(branches)
    if not branches:
        raise LoopTypeError("switch got no branches: pass a list of functions.")
    for k, fn in enumerate(branches):
        _callable(fn, f"switch's branch {k}")
    if tuple(shape_of(index)) != () or np.dtype(aval_of(_as_array(index)).dtype).kind not in "biu":
        raise LoopTypeError(
            f"switch's index is {_type_name(aval_of(_as_array(index)))}; it must be an integer "
            "scalar. Under vmap, pass one index per example (a batched scalar).")
    leaves, in_tree = flatten(operands)
    leaves = [_as_array(x) for x in leaves]
    avals = [aval_of(x) for x in leaves]
    staged = []
    for fn in branches:
        def branch(*args, fn=fn):
            return tree_of_arrays(fn(*args))
        branch.__name__ = _name(fn)
        staged.append(stage_function(fn, avals, in_tree, call=branch, kind="branch"))
    first = staged[0]
    for fn, s in zip(branches[1:], staged[1:]):
        theirs = [aval_of(v) for v in s.program.outvars]
        ours = [aval_of(v) for v in first.program.outvars]
        if s.out_tree != first.out_tree or [(tuple(a.shape), np.dtype(a.dtype)) for a in theirs] \
                != [(tuple(a.shape), np.dtype(a.dtype)) for a in ours]:
            raise LoopTypeError(
                f"the branches `{_name(branches[0])}` and `{_name(fn)}` return different "
                f"types: {describe(first.out_tree)} of {', '.join(map(_type_name, ours))} and "
                f"{describe(s.out_tree)} of {', '.join(map(_type_name, theirs))}. Every branch "
                "returns the same structure, shapes and dtypes (convert with astype, or "
                "broadcast).")
    _numpy_arrays_only("switch", [index, *[c for s in staged for c in s.captured], *leaves])
    outs = switch_p(np.asarray(index) if not isinstance(index, Tracer) else index,
                    *[c for s in staged for c in s.captured], *leaves,
                    branches=tuple(s.program for s in staged),
                    n_consts=tuple(len(s.captured) for s in staged))
    return unflatten(first.out_tree, outs)


def cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """`true_fn(*operands)` if `pred` else `false_fn(*operands)`: a branch that stays a
    branch under jit (where a Python `if` on a staged value is an error). Both return the
    same structure, shapes and dtypes. Under vmap both run and the results are selected.

    >>> float(cond(np.float64(2.0) > 1.0, lambda x: x * 10.0, lambda x: x, 3.0))
    30.0
    """
    _callable(true_fn, "cond's true_fn")
    _callable(false_fn, "cond's false_fn")
    pred = _as_array(pred)
    if tuple(shape_of(pred)) != () or np.dtype(aval_of(pred).dtype) != np.bool_:
        raise LoopTypeError(
            f"cond's predicate is {_type_name(aval_of(pred))}; it must be a boolean scalar. "
            "Reduce it (np.all, np.any), or use np.where to select elementwise.")
    index = np.where(pred, 1, 0) if isinstance(pred, Tracer) else np.int64(bool(pred))
    return switch(index, [false_fn, true_fn], *operands)


def checkpoint(f: Callable, policy: str = "recompute") -> Callable:
    """`f`, whose reverse mode keeps only its inputs and recomputes what its derivative
    reads on the way back ("recompute"; "all" keeps its residuals as usual). It composes
    with every mode and vmap: it is a one-step `scan` whose carry is the inputs. A Python
    loop over `step = checkpoint(step)` keeps one carry per step.

    >>> g = checkpoint(lambda x: np.sin(np.sin(x)))
    >>> round(float(g(1.0)), 6)
    0.745624
    """
    _callable(f, "checkpoint's function")
    if policy not in ("recompute", "all"):
        raise CheckpointPolicyError(
            f"policy={policy!r} is not a checkpoint policy: \"recompute\" keeps the inputs "
            "and recomputes the rest on the way back, \"all\" keeps the residuals.")

    @functools.wraps(f)
    def checkpointed(*args, **kwargs):
        def once(inputs, _):
            return inputs, f(*inputs[0], **inputs[1])
        once.__name__ = _name(f)
        _, outs = _scan(once, (args, kwargs), None, 1, False,
                        "carry" if policy == "recompute" else "all",
                        kind="checkpoint")
        return tree_map(lambda y: y[0], outs)
    return checkpointed
