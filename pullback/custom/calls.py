"""Higher-order primitives: calls of user functions that carry their own derivative rules.

They take and return flat lists of arrays; `pullback.custom` wraps user functions
(pytrees in and out, static arguments) into flat ones:

- `custom_vjp_call(*xs, fun, fwd, bwd, out_count)`: `fun(*xs) -> outs`,
  `fwd(*xs) -> outs + residuals`, `bwd(*residuals, *cts) -> one cotangent per x`,
  `out_count()` the number of outs;
- `custom_jvp_call(*xs, fun, jvp)`: `jvp(*xs, *tangents) -> outs + tangents_out`;
- `rule_call(*xs, rule)`: one call of a rule (`fwd`, `bwd`, `jvp`, or a transposed
  tangent map), so that a rule, like `fun`, is never run on values it cannot handle.

Each user rule serves every mode:

- reverse mode runs `fwd` only (not `fun` too) and calls `bwd` in the pullback;
- a reverse rule `bwd(residuals, ct)` is linear in the cotangent, so the forward
  derivative `J t` is the transpose of `ct -> bwd(residuals, ct)` applied to `t`:
  a `custom_vjp` function works under forward mode, hence in forward-over-reverse
  Hessians and HVPs;
- a forward rule's tangent map `t -> jvp(primals, t)` is linear, so reverse mode
  pulls cotangents back by transposing it (at zero tangents, where a rule's tangents
  must be zero: one adding a constant is refused where the values are known), and takes
  the outputs from the rule, as forward mode does (so that every mode's second
  derivative differentiates the same code);
- batching runs the user's functions under `vmap` and binds them again; code
  that cannot be traced (the usual reason for a custom rule: SciPy, loops over
  Python floats) runs example by example instead;
- staging records each call as one equation; its output types come from staging
  the function into a throwaway program, or, if it cannot be traced, from running
  it on the values the program sees at its example arguments (never on made-up
  values: a Cholesky factorisation of zeros fails).

`rule_call`'s own derivatives differentiate the rule as ordinary code (second
derivatives through `fwd`, `bwd` and `jvp`).
"""
from weakref import WeakKeyDictionary

import numpy as np

from ..core.arrays import moveaxis, zeros_like_value
from ..core.engine import Tracer
from ..core.primitive import ZERO, Primitive, ShapeDtype
from ..errors import (ArrayConversionError, ConcretizationError, CustomRuleError,
                      InPlaceMutationError, UnsupportedFunctionError)
from ..ir.staging import CapturedTracer, ShapeNeedsValues, abstract_eval
from ..transforms.batching import batch_flat, map_examples, vmap
from ..transforms.forward import jvp_flat
from ..transforms.reverse import vjp_flat
from ..tree import flatten

# What pullback raises when user code cannot run on traced values.
_UNTRACEABLE = (ArrayConversionError, ConcretizationError, InPlaceMutationError,
                UnsupportedFunctionError)


def _with_zeros(values, tangents):
    return [zeros_like_value(v) if t is ZERO else t for v, t in zip(values, tangents)]


def _name(fn):
    return getattr(fn, "__name__", "function")


# ------------------------------------------------------------------ output types

# fn -> {input types: output types}: each user function is run at most once per signature
# to learn them (staging and `typecheck` ask again).
_KNOWN_TYPES = WeakKeyDictionary()
_LINEAR_RULES = WeakKeyDictionary()      # a user's rule -> the types its linearity was checked at


def _types_key(avals):
    return tuple((tuple(a.shape), np.dtype(a.dtype)) if hasattr(a, "shape") else type(a)
                 for a in avals)


def _result_types(results, fn):
    """The types of a staged call's results: arrays, or numbers (weakly typed)."""
    types = []
    for i, r in enumerate(results):
        if isinstance(r, ShapeDtype) or isinstance(r, (bool, int, float, complex)):
            types.append(r)
        elif isinstance(r, Tracer):
            raise CapturedTracer()
        elif hasattr(r, "shape") and hasattr(r, "dtype"):
            types.append(ShapeDtype(tuple(r.shape), np.dtype(r.dtype)))
        else:
            raise CustomRuleError(
                f"`{_name(fn)}` returned a {type(r).__name__} (result leaf {i}): under jit, "
                "make_ir and show, the outputs, residuals and cotangents of custom rules "
                "must be arrays or numbers. Keep other values out of them: pass static "
                "values as arguments listed in nondiff_argnums.")
    return types


def _call_types(fn, avals):
    """The output types of a call of `fn` on inputs of types `avals`: by abstract
    evaluation or, if `fn` cannot be traced, from the input values (ShapeNeedsValues)."""
    known = _KNOWN_TYPES.setdefault(fn, {})
    key = _types_key(avals)
    if key not in known:
        try:
            known[key] = _result_types(abstract_eval(fn, avals), fn)
        except _UNTRACEABLE as error:
            def types(*values):
                return known.setdefault(key, _result_types(fn(*values), fn))
            raise ShapeNeedsValues(types, (
                f"`{_name(fn)}` cannot be traced (it raised {type(error).__name__}), so under "
                "jit, make_ir and show the types of its results are learned by running it on "
                "the values the staged program sees at its example arguments; none are known "
                "here (an empty batch, or inside the abstract evaluation of another function). "
                f"Stage it at arrays with values, or write `{_name(fn)}` with operations "
                "pullback can trace.")) from error
    return known[key]


def function_types(fn, leaves):
    """(output leaves' types, output structure) of `fn` on arguments typed like `leaves`,
    by abstract evaluation (`fn` returns a pytree); None where it cannot be staged (code
    pullback cannot trace, a value traced elsewhere that it reads, a library refusing the
    staged values: whatever it raises, as only the caller's check depends on it)."""
    structure = []

    def flat(*inputs):
        out, tree = flatten(fn(*inputs))
        structure.append(tree)
        return out
    try:
        return abstract_eval(flat, leaves), structure[0]
    except Exception:
        return None


def _call_shape(*avals, fun, **rules):
    return _call_types(fun, avals)


# ------------------------------------------------------------------ batching

def _moved(values, dims):
    return [v if d is None else moveaxis(v, d, 0) for v, d in zip(values, dims)]


def _front_axes(dims):
    return tuple(None if d is None else 0 for d in dims)


def _batched(fn, in_axes):
    """`fn` over a batch, its outputs batched along axis 0: vmapped, or example by
    example if `fn` cannot be traced."""
    vmapped, looped = vmap(fn, in_axes=in_axes), map_examples(fn, in_axes=in_axes)

    def batched(*args):
        try:
            return vmapped(*args)
        except _UNTRACEABLE:
            return looped(*args)
    batched.__name__ = f"batched_{_name(fn)}"
    return batched


def _batched_keeping_shared(fn, in_axes):
    """(`fn` over a batch, the batch axes of its outputs): like `_batched`, but where vmap
    finds an output the same for every example (a primal output next to batched
    tangents), it stays unbatched (None). The axes are recorded at each run: the same
    for every run on arguments of the same types."""
    out_axes = []
    looped = map_examples(fn, in_axes=in_axes)

    def batched(*args):
        try:
            outs, out_axes[:] = batch_flat(fn, args, in_axes)
        except _UNTRACEABLE:
            outs = looped(*args)
            out_axes[:] = [0] * len(outs)
        return outs
    batched.__name__ = f"batched_{_name(fn)}"
    return batched, out_axes


def _vjp_wrt(fn, values, wrt):
    """(outs, pullback) of `fn` at `values`, differentiated with respect to the inputs
    flagged in `wrt`; the pullback returns one cotangent per input (ZERO for the others)."""
    positions = [i for i, w in enumerate(wrt) if w]

    def on_selected(*selected):
        args = list(values)
        for i, x in zip(positions, selected):
            args[i] = x
        return fn(*args)

    outs, back = vjp_flat(on_selected, [values[i] for i in positions])

    def pullback(cts):
        result = [ZERO] * len(values)
        for i, c in zip(positions, back(list(cts))):
            result[i] = c
        return result
    return outs, pullback


# ------------------------------------------------------------------ rule_call

def _rule_call_jvp(primals, tangents, rule):
    return jvp_flat(rule, list(primals), list(tangents))


def _rule_call_value_and_vjp(wrt, *values, rule):
    outs, pullback = _vjp_wrt(rule, values, wrt)
    return outs, pullback


def _rule_call_batch(values, dims, rule):
    batched, out_axes = _batched_keeping_shared(rule, tuple(dims))
    outs = rule_call(*values, rule=batched)          # runs `batched`: out_axes are known
    return outs, list(out_axes)


def _call_statements(function):
    """emit_statements (for reading) of a call of the flat function in parameter
    `function`: `show` stages it at the call's types and prints its statements inline."""
    def emit(targets, args, code, **params):
        return code.run(params[function], args, targets) if code.reading else None
    return emit


rule_call = Primitive(
    "rule_call", lambda *args, rule: rule(*args),
    shape=lambda *avals, rule: _call_types(rule, avals), jvp=_rule_call_jvp,
    value_and_vjp=_rule_call_value_and_vjp, batch=_rule_call_batch, multiple_results=True,
    family="custom", emit_statements=_call_statements("rule"),
    complex_rules=True)

# ------------------------------------------------------------------ custom_vjp


def _custom_vjp_jvp(primals, tangents, fun, fwd, bwd, out_count):
    results = rule_call(*primals, rule=fwd)
    outs, residuals = results[:out_count()], results[out_count():]
    def cotangents_in(*cts):
        return rule_call(*residuals, *cts, rule=bwd)
    at_zero, back = vjp_flat(cotangents_in, [zeros_like_value(o) for o in outs])
    _check_zero_at_zero(at_zero, bwd, "cotangents", "output cotangents")
    _check_linear(cotangents_in, back, [_random_like(o) for o in outs], at_zero, bwd,
                  "cotangents", "output cotangents")
    return outs, back(tangents)


def _custom_vjp_value_and_vjp(wrt, *primals, fun, fwd, bwd, out_count):
    results = rule_call(*primals, rule=fwd)
    outs, residuals = results[:out_count()], results[out_count():]

    def pullback(cts):
        return rule_call(*residuals, *_with_zeros(outs, cts), rule=bwd)
    return outs, pullback


def _custom_vjp_batch(values, dims, fun, fwd, bwd, out_count):
    axes = _front_axes(dims)
    bwd_of_each = _batched(bwd, 0)

    def batched_bwd(*residuals_and_cts):
        cts_in = bwd_of_each(*residuals_and_cts)
        # An input shared by the whole batch gets the sum of the examples' cotangents.
        return [c if d is not None else c.sum(axis=0) for c, d in zip(cts_in, dims)]

    outs = custom_vjp_call(*_moved(values, dims), fun=_batched(fun, axes),
                           fwd=_batched(fwd, axes), bwd=batched_bwd, out_count=out_count)
    return outs, [0] * len(outs)


custom_vjp_call = Primitive(
    "custom_vjp_call", lambda *args, fun, fwd, bwd, out_count: fun(*args),
    shape=_call_shape, jvp=_custom_vjp_jvp, value_and_vjp=_custom_vjp_value_and_vjp,
    batch=_custom_vjp_batch, multiple_results=True, family="custom",
    emit_statements=_call_statements("fun"),
    complex_rules=True)

# ------------------------------------------------------------------ custom_jvp


def _custom_jvp_jvp(primals, tangents, fun, jvp):
    results = rule_call(*primals, *_with_zeros(primals, tangents), rule=jvp)
    n = len(results) // 2
    return results[:n], results[n:]


def _transposed_tangent_map(jvp, wrt, n):
    """`(*primals, *cts) -> cotangents of the primals flagged in wrt`: the transpose of
    the (linear) tangent map of the flat rule `jvp` of n primals, as a rule to call."""
    def transposed(*primals_and_cts):
        primals, cts = primals_and_cts[:n], primals_and_cts[n:]

        def tangents_out(*tangents):
            results = jvp(*primals, *tangents)
            return results[len(results) // 2:]
        at_zero, pullback = _vjp_wrt(tangents_out, [zeros_like_value(p) for p in primals], wrt)
        _check_zero_at_zero(at_zero, jvp, "tangents", "input tangents")
        _check_linear(tangents_out, pullback, [_random_like(p) if w else zeros_like_value(p)
                                               for p, w in zip(primals, wrt)],
                      at_zero, jvp, "tangents", "input tangents")
        return [c for c, w in zip(_with_zeros(primals, pullback(cts)), wrt) if w]
    transposed.__name__ = f"transposed_{_name(jvp)}"
    return transposed


def _check_zero_at_zero(values, rule, what, given):
    """A linear map gives zeros for zeros: forward mode transposes a bwd rule, reverse mode
    a jvp rule's tangent map, where it is linear (at zero), so a rule adding a constant to
    its results would give forward and reverse modes different derivatives. Checked where
    the values are known (NaN is 0 times an infinite partial derivative, which a linear map
    may give)."""
    for t in values:
        if not isinstance(t, Tracer) and np.any((np.asarray(t) != 0) & ~np.isnan(t)):
            raise CustomRuleError(
                f"the rule `{_name(rule)}` returned nonzero {what} for zero {given}: a "
                f"rule's {what} must be linear in the {given} (no constant terms), or forward "
                "and reverse mode would disagree.")


def _check_linear(linear_map, transpose, directions, outputs, rule, what, given):
    """A rule's map L (a jvp rule's tangent map, a bwd rule's cotangent map) must be linear:
    the other mode uses `transpose`, L's transpose at zero, which sees only L's linear
    part, so a term such as t**2 or |t| would give the two modes different derivatives.
    Checked where the values are known, as <c, L(d)> = <L^T c, d> at random directions d
    and covectors c (like L's `outputs`; real parts: complex maps are transposed without
    conjugation), to half the digits of the precision; once per user rule and types (a
    rule non-linear somewhere is, in practice, non-linear everywhere)."""
    if any(isinstance(v, Tracer) for v in outputs):
        return
    key = _types_key([*directions, *outputs])
    try:
        checked = _LINEAR_RULES.setdefault(getattr(rule, "user_rule", None) or rule, set())
    except TypeError:                    # not weakly referenceable: checked every call
        checked = set()
    if key in checked:
        return
    covectors = [ZERO if v is ZERO else _random_like(v) for v in outputs]
    pairs = [*zip(covectors, linear_map(*directions)), *zip(transpose(covectors), directions)]
    if any(isinstance(v, Tracer) for pair in pairs for v in pair):
        return
    sides, scale, eps = [0.0, 0.0], 0.0, 0.0
    for k, (a, b) in enumerate(pairs):
        if a is ZERO or b is ZERO:
            continue
        a, b = np.asarray(a), np.asarray(b)
        sides[k >= len(covectors)] += float(np.sum(np.real(a * b), dtype=np.float64))
        scale += float(np.sum(np.abs(a) * np.abs(b), dtype=np.float64))
        eps = max([eps] + [np.finfo(v.dtype).eps for v in (a, b) if v.dtype.kind in "fc"])
    if not np.isfinite(scale):                      # (an infinite partial here: ask again)
        return
    if abs(sides[0] - sides[1]) <= np.sqrt(eps) * scale:
        checked.add(key)
    else:
        raise CustomRuleError(
            f"the rule `{_name(rule)}` returned {what} that are not linear in the {given} "
            f"(<c, L(t)> = {sides[0]:.6g} but <L^T c, t> = {sides[1]:.6g} at random t and c): "
            "forward and reverse mode would disagree. Make them linear (no t ** 2, abs(t), "
            "conditions on t).")


def _random_like(x):
    """Fixed pseudo-random values of x's shape and floating dtype (zeros for others)."""
    dtype = np.dtype(getattr(x, "dtype", type(x)))
    if dtype.kind not in "fc":
        return zeros_like_value(x)
    rng = np.random.default_rng(7)
    values = rng.standard_normal(np.shape(x))
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(np.shape(x))
    return np.asarray(values, dtype)


def _custom_jvp_value_and_vjp(wrt, *primals, fun, jvp):
    """Reverse mode: the outputs the rule gives (at zero tangents), as forward mode takes
    them, so that an outer derivative differentiates the rule's code in every mode (a
    straight-through `round` gave Hessians 2I over reverse mode, 0 over forward mode),
    and the transpose of its tangent map."""
    results = rule_call(*primals, *[zeros_like_value(p) for p in primals], rule=jvp)
    outs = results[:len(results) // 2]
    transposed = _transposed_tangent_map(jvp, wrt, len(primals))

    def pullback(cts):
        selected = iter(rule_call(*primals, *_with_zeros(outs, cts), rule=transposed))
        return [next(selected) if w else ZERO for w in wrt]
    return outs, pullback


def _custom_jvp_batch(values, dims, fun, jvp):
    axes = _front_axes(dims)
    outs = custom_jvp_call(*_moved(values, dims), fun=_batched(fun, axes),
                           jvp=_batched(jvp, axes + axes))
    return outs, [0] * len(outs)


custom_jvp_call = Primitive(
    "custom_jvp_call", lambda *args, fun, jvp: fun(*args),
    shape=_call_shape, jvp=_custom_jvp_jvp, value_and_vjp=_custom_jvp_value_and_vjp,
    batch=_custom_jvp_batch, multiple_results=True, family="custom",
    emit_statements=_call_statements("fun"),
    complex_rules=True)
