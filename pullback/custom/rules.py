"""User-defined derivative rules: `custom_vjp` and `custom_jvp`.

For numerical stability, for code pullback cannot trace, or for a cheaper rule.
Either kind of rule serves every transformation (see calls.py):
a `custom_vjp` function works under forward mode too (so forward-over-reverse
Hessians and HVPs run through it), and a `custom_jvp` function under reverse mode
and `vmap`. Rules written with NumPy operations differentiate again. Under `jit`
the function and its rules are called as they are (never on made-up values), so
they may wrap SciPy; their results must then be arrays or numbers (fwd's residuals
may also be strings, kept beside the call for bwd in every mode).

Arguments given by keyword are resolved to positions with the function's
signature (defaults filled in), as in JAX. Static arguments that are not arrays
(callables, configuration objects, Python numbers used as parameters) are listed
in `nondiff_argnums`: they reach the function and its rules as they are, and get
no derivative.
"""
import inspect
from functools import partial, update_wrapper
from typing import Callable, Sequence
from weakref import WeakKeyDictionary, WeakSet

import numpy as np

from ..core.boundary import matching
from ..core.arrays import broadcast_scalar, zeros_like_value
from ..core.engine import Tracer, trace_stack
from ..core.primitive import ZERO
from ..errors import CustomRuleError
from ..transforms.batching import BatchTracer
from ..tree import MAPPINGS, describe, flatten, unflatten
from .calls import custom_jvp_call, custom_vjp_call, function_types


def _leaves_of(tree, expected_def, what, name):
    """The leaves of `tree`, structured like `expected_def`; None stands for a subtree of zeros."""
    def leaves(t, d):
        if t is None:
            return [None] * d.num_leaves
        t_leaves, t_def = flatten(t)
        if t_def == d:
            return t_leaves
        if (t_def.kind, t_def.meta, len(t_def.children)) == (d.kind, d.meta, len(d.children)) \
                and d.kind not in ("leaf", "none"):
            children = [t[k] for k in d.meta] if d.kind in MAPPINGS else list(t)
            return [leaf for c, c_def in zip(children, d.children) for leaf in leaves(c, c_def)]
        raise CustomRuleError(f"{what} of `{name}` has structure {describe(flatten(tree)[1])}, "
                              f"but {describe(expected_def)} was expected (None stands for "
                              "zeros of a whole subtree).")
    return leaves(tree, expected_def)


def _closure_check(leaves, name):
    """A check that what the user's functions compute comes from their arguments only.

    A value traced by a transformation that processes the call (one of the
    arguments' or one nested inside them), reached through a closure or a global,
    would bypass the rule and be wrapped by its own trace: wrong derivatives or
    leaked tracers. Values of outer transformations are constants here and fine, and
    so are values of a transformation that still traces the arguments the function or
    rule runs on (`arguments`): it has not reached the call yet and differentiates
    that run as ordinary code (an argument of an outer `grad`, say, that a rule run by
    an inner Hessian returns as a residual).
    """
    levels = [x._trace.level for x in leaves if isinstance(x, Tracer)]
    processing = WeakSet(t for t in trace_stack() if levels and t.level >= min(levels))

    def traces(values):
        """The traces of `values`, looking inside a vmap's tracers: batch rules run the
        user's functions under a vmap of their own."""
        inner = [v.value for v in values if type(v) is BatchTracer]
        return [u._trace for u in (*values, *inner) if isinstance(u, Tracer)]

    def check(values, arguments):
        tracing_arguments = set(map(id, traces(arguments)))
        for v in flatten(values)[0]:
            if any(t in processing and id(t) not in tracing_arguments for t in traces([v])):
                raise CustomRuleError(
                    f"`{name}` (or its rule) uses a value traced by the transformation of its "
                    "arguments, or by one nested inside it, without taking it as an argument "
                    "(through a closure or a global), so its rule cannot account for it. Pass "
                    f"that value to `{name}` as an argument.")
        return values
    return check


def _checked(values, references, what, name):
    """Each value shaped like its reference (None stands for a zero)."""
    out = []
    for i, (v, r) in enumerate(zip(values, references)):
        if v is None or v is ZERO:
            out.append(zeros_like_value(r))
            continue
        try:
            out.append(matching(v, r, CustomRuleError, f"{what} leaf {i}",
                                "the value it belongs to"))
        except CustomRuleError as error:
            raise CustomRuleError(f"in the rule of `{name}`: {error}") from None
    return out


def _positional(fun, name, args, kwargs):
    """The arguments as a tuple of positional ones, keywords and defaults resolved by
    the signature of `fun` (as JAX does: rules see every argument by position)."""
    try:
        signature = inspect.signature(fun)
    except (TypeError, ValueError):              # no signature (a ufunc, a builtin)
        if kwargs:
            raise CustomRuleError(f"`{name}` has no signature to resolve its keyword arguments "
                                  f"({', '.join(kwargs)}) to positions: pass them "
                                  "positionally.") from None
        return args
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise CustomRuleError(f"`{name}` was called with arguments that do not match its "
                              f"signature {signature}: {error}.") from None
    if bound.kwargs:
        raise CustomRuleError(
            f"`{name}` was given the keyword argument(s) {', '.join(bound.kwargs)}, which "
            "cannot be resolved to positions (keyword-only, or collected by **kwargs), so its "
            "rules could not receive them: make them positional parameters (listed in "
            "nondiff_argnums if they are static).")
    bound.apply_defaults()
    return bound.args


def _as_tuple(argnums):
    if isinstance(argnums, (int, np.integer)):
        return (argnums,)
    try:
        return tuple(argnums)
    except TypeError:
        raise CustomRuleError(f"nondiff_argnums must be an argument position or a sequence "
                              f"of them, got {argnums!r}.") from None


def _nondiff_positions(nondiff_argnums, nargs, name):
    positions = []
    for i in nondiff_argnums:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not -nargs <= i < nargs:
            raise CustomRuleError(f"nondiff_argnums of `{name}` contains {i!r}, but it was "
                                  f"called with {nargs} argument(s): give argument positions.")
        if int(i) % nargs in positions:
            raise CustomRuleError(f"nondiff_argnums of `{name}` names argument {int(i) % nargs} "
                                  "twice.")
        positions.append(int(i) % nargs)
    return positions


def _is_array_or_number(x):
    return isinstance(x, (bool, int, float, complex)) or hasattr(x, "shape") and hasattr(x, "dtype")


def _reference(x):
    """A stand-in with x's shape and dtype (a zero-stride view), kept by the rules instead
    of x: a rule staged under jit must not hold on to a traced value."""
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return broadcast_scalar(0, tuple(getattr(x, "shape", ())), dtype, like=x)


_MATCHED = WeakKeyDictionary()   # a user's rule -> the calls its outputs matched the function's at


def _like_function(rule, fun, leaves, out, out_def, static, what, name):
    """A rule's primal outputs `out` (structure `out_def`) as the function's own: the same
    structure, shapes and dtypes, or the modes that run the rule would return other values
    than the function. Learned by staging `fun` (where it can be), once per rule, argument
    types and static arguments (unhashable ones: their first values)."""
    types = tuple((np.shape(x), np.result_type(x)) for x in leaves)
    try:
        key = (types, tuple(static))
        hash(key)
    except TypeError:
        key = (types, None)
    try:
        checked = _MATCHED.setdefault(rule, set())
    except TypeError:                   # not weakly referenceable: checked every call
        checked = set()
    if key in checked:
        return
    known = function_types(fun, leaves)
    if known is not None:
        outputs, tree = known
        if tree != out_def:
            raise CustomRuleError(
                f"the {what} rule of `{name}` returned an output structured as "
                f"{describe(out_def)}, but `{name}` returns {describe(tree)}: the rule's "
                "output must be the function's own.")
        for i, (t, x) in enumerate(zip(outputs, out)):
            if not hasattr(t, "shape"):          # a Python number: weakly typed
                continue
            if tuple(np.shape(x)) != tuple(t.shape) or np.result_type(x) != t.dtype:
                raise CustomRuleError(
                    f"the {what} rule of `{name}` returned an output (leaf {i}) of shape "
                    f"{tuple(np.shape(x))} and dtype {np.result_type(x)}, but `{name}` "
                    f"returns shape {tuple(t.shape)} and dtype {t.dtype} there: the rule's "
                    "output must be the function's own, or the modes that run the rule "
                    "would compute other values than the function.")
    checked.add(key)


class _Call:
    """One call of a custom function: its arguments split into the leaves of the
    differentiable ones and the static ones, and the structures of what its function
    and rules return (recorded when they run: every mode runs one of them first)."""

    def __init__(self, fun, name, args, kwargs, nondiff_argnums):
        args = _positional(fun, name, args, kwargs)
        self.static_positions = _nondiff_positions(nondiff_argnums, len(args), name)
        self.static_args = [args[i] for i in self.static_positions]
        self.nargs = len(args)
        for i, a in enumerate(args):
            bad = [type(x).__name__ for x in flatten(a)[0] if (
                isinstance(x, Tracer) if i in self.static_positions else not _is_array_or_number(x))]
            if bad and i in self.static_positions:
                raise CustomRuleError(
                    f"argument {i} of `{name}` is listed in nondiff_argnums but is (or contains) "
                    "a traced array. nondiff_argnums are for static values (callables, "
                    "configuration, Python numbers); pass arrays as ordinary arguments.")
            if bad:
                raise CustomRuleError(
                    f"argument {i} of `{name}` is (or contains) a {bad[0]}, not an array or a "
                    f"number: list it in nondiff_argnums (custom_vjp(fun, nondiff_argnums=({i},)) "
                    "or custom_jvp(...)) to pass it to the function and its rules as a static "
                    "value.")
        differentiable = tuple(a for i, a in enumerate(args) if i not in self.static_positions)
        self.leaves, self.in_def = flatten(differentiable)
        self.references = [_reference(x) for x in self.leaves]
        self.check = _closure_check(self.leaves, name)
        self.out_def = self.res_def = None
        self.string_residuals, self.residuals_vary = None, False

    def array_residuals(self, residuals):
        """The residual leaves without its strings (a mode, a flag), which are kept here for
        bwd: the outputs of fwd's call must be arrays or numbers under jit. A string that
        differs between runs of fwd (per example under vmap, per call under jit) is noted:
        bwd could not tell which run's to take. Other values (an object holding arrays)
        stay residuals: bwd staged under jit would keep those of the staging run."""
        strings = [(i, r) for i, r in enumerate(residuals) if isinstance(r, (str, bytes))]
        if self.string_residuals not in (None, strings):
            self.residuals_vary = True
        self.string_residuals = strings
        return [r for r in residuals if not isinstance(r, (str, bytes))]

    def all_residuals(self, others, name):
        """The residual leaves: the strings put back among the others."""
        if self.residuals_vary:
            raise CustomRuleError(
                f"the fwd rule of `{name}` returned string residuals that differ between its "
                "runs (example by example under vmap, or at each call under jit), so its bwd "
                "rule could not be given those of its own run. Pass such a string as an "
                "argument listed in nondiff_argnums instead.")
        if any(getattr(r, "dtype", None) == object for r in others):
            raise CustomRuleError(
                f"the fwd rule of `{name}` returned a residual that is neither an array nor a "
                "number nor a string, which vmap cannot batch (it ran fwd example by example "
                "and got an object per example). Return its arrays as residuals instead.")
        strings, others = dict(self.string_residuals), iter(others)
        return [strings[i] if i in strings else next(others)
                for i in range(self.res_def.num_leaves)]

    def arguments(self, leaves):
        """All arguments in order, the differentiable ones rebuilt from `leaves`."""
        differentiable, static = iter(unflatten(self.in_def, leaves)), iter(self.static_args)
        return [next(static) if i in self.static_positions else next(differentiable)
                for i in range(self.nargs)]

    def function(self, fun):
        """`fun` of the differentiable leaves (the static arguments in their places)."""
        return lambda *leaves: fun(*self.arguments(leaves))

    def differentiable(self, leaves):
        """The tuple of differentiable arguments rebuilt from `leaves`."""
        return unflatten(self.in_def, leaves)

    def returned(self, out, arguments):
        """The leaves of an output of a run on `arguments`, checked; records its structure."""
        leaves, self.out_def = flatten(out)
        return self.check(leaves, arguments)

    def out_count(self):
        return self.out_def.num_leaves


def _named(fn, name, user_rule=None):
    """fn named `name`; `user_rule`: the user's rule it calls (calls.py checks each once)."""
    fn.__name__ = fn.__qualname__ = name
    fn.user_rule = user_rule
    return fn


class _CustomFunction:
    """What both kinds share: a function with static arguments, usable as a decorator
    with arguments (`@custom_vjp(nondiff_argnums=(0,))`)."""

    def __new__(cls, fun: Callable = None, *, nondiff_argnums: int | Sequence[int] = ()):
        if fun is None:
            return partial(cls, nondiff_argnums=nondiff_argnums)
        return super().__new__(cls)

    def __init__(self, fun: Callable, *, nondiff_argnums: int | Sequence[int] = ()):
        update_wrapper(self, fun)
        self.fun, self.nondiff_argnums = fun, _as_tuple(nondiff_argnums)


class custom_vjp(_CustomFunction):
    """A function with a user-supplied reverse-mode rule.

    >>> import numpy as np
    >>> @custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> clip_gradient.defvjp(lambda x: (x, None), lambda res, ct: (np.clip(ct, -1.0, 1.0),))
    <...>
    >>> import pullback
    >>> pullback.grad(lambda x: 5.0 * clip_gradient(x))(2.0)
    array(1.)

    `fwd(*args) -> (out, residuals)`; `bwd(residuals, cotangent) -> tuple` with one
    cotangent per argument, shaped like it (None for zeros: a whole argument or
    any subtree of one). Reverse mode runs `fwd` only, not `fun`.

    Static arguments (`nondiff_argnums`) reach `fun` and `fwd` in their places and
    `bwd` first, which returns cotangents for the other arguments only:

    >>> from functools import partial
    >>> @partial(custom_vjp, nondiff_argnums=(0,))
    ... def apply(f, x):
    ...     return f(x)
    >>> apply.defvjp(lambda f, x: (f(x), x), lambda f, x, ct: (ct * 2.0 * x,))
    <...>
    >>> pullback.grad(apply, argnums=1)(np.square, 3.0)
    array(6.)
    """

    fwd = bwd = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> "custom_vjp":
        """Set the rule: the forward pass with residuals, and the backward pass."""
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args, **kwargs):
        name = getattr(self.fun, "__name__", "function")
        if self.fwd is None:
            raise CustomRuleError(f"`{name}` is a custom_vjp function without a rule: call "
                                  f"`{name}.defvjp(fwd, bwd)` first.")
        call = _Call(self.fun, name, args, kwargs, self.nondiff_argnums)

        def flat_fun(*leaves):
            return call.returned(self.fun(*call.arguments(leaves)), leaves)

        def flat_fwd(*leaves):
            result = self.fwd(*call.arguments(leaves))
            if not isinstance(result, tuple) or len(result) != 2:
                raise CustomRuleError(f"the fwd rule of `{name}` must return (output, residuals).")
            residuals, call.res_def = flatten(result[1])
            out = call.returned(result[0], leaves)
            _like_function(self.fwd, call.function(self.fun), leaves, out, call.out_def,
                           call.static_args, "fwd", name)
            return out + call.check(call.array_residuals(residuals), leaves)

        def flat_bwd(*residuals_and_cts):
            n = call.res_def.num_leaves - len(call.string_residuals)
            residuals = unflatten(call.res_def, call.all_residuals(residuals_and_cts[:n], name))
            result = self.bwd(*call.static_args, residuals,
                              unflatten(call.out_def, residuals_and_cts[n:]))
            count = len(call.in_def.children)
            if not isinstance(result, tuple) or len(result) != count:
                per = "argument" if not call.static_args else "argument not in nondiff_argnums"
                raise CustomRuleError(
                    f"the bwd rule of `{name}` must return a tuple with one cotangent per "
                    f"{per} ({count}), got {type(result).__name__}"
                    + (f" of length {len(result)}" if isinstance(result, tuple) else "") + ".")
            ct_leaves = _leaves_of(result, call.in_def, "the cotangent tuple returned by bwd", name)
            return _checked(ct_leaves, call.references, "cotangent", name)

        outs = custom_vjp_call(*call.leaves, fun=_named(flat_fun, name),
                               fwd=_named(flat_fwd, f"{name}_fwd"),
                               bwd=_named(flat_bwd, f"{name}_bwd", self.bwd),
                               out_count=call.out_count)
        return unflatten(call.out_def, outs)


class custom_jvp(_CustomFunction):
    """A function with a user-supplied forward-mode rule.

    >>> import numpy as np
    >>> @custom_jvp
    ... def log1pexp(x):
    ...     return np.logaddexp(0.0, x)
    >>> @log1pexp.defjvp
    ... def log1pexp_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return log1pexp(x), t / (1.0 + np.exp(-x))
    >>> import pullback
    >>> float(pullback.grad(log1pexp)(1000.0))
    1.0

    `jvp(primals, tangents) -> (out, tangent_out)`, with primals and tangents the
    tuples of arguments and their tangents; the tangent map must be linear. None
    in the output tangent stands for zeros. Every mode takes `out` from the rule, and a
    derivative of a derivative differentiates the rule's code: compute `out` by calling
    the function (as here) for its rule to apply at second order too.

    Static arguments (`nondiff_argnums`) come first, and primals and tangents
    hold the other arguments only:

    >>> @custom_jvp(nondiff_argnums=(1,))
    ... def power(x, n):
    ...     return x ** n
    >>> @power.defjvp
    ... def power_jvp(n, primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return power(x, n), n * x ** (n - 1) * t
    >>> float(pullback.grad(power)(2.0, 3))
    12.0
    """

    jvp = None

    def defjvp(self, jvp: Callable) -> Callable:
        """Set the rule (usable as a decorator)."""
        self.jvp = jvp
        return jvp

    def __call__(self, *args, **kwargs):
        name = getattr(self.fun, "__name__", "function")
        if self.jvp is None:
            raise CustomRuleError(f"`{name}` is a custom_jvp function without a rule: decorate "
                                  f"its rule with `@{name}.defjvp`.")
        call = _Call(self.fun, name, args, kwargs, self.nondiff_argnums)

        def flat_fun(*leaves):
            return call.returned(self.fun(*call.arguments(leaves)), leaves)

        def flat_jvp(*primals_and_tangents):
            n = len(call.leaves)
            result = self.jvp(*call.static_args, call.differentiable(primals_and_tangents[:n]),
                              call.differentiable(primals_and_tangents[n:]))
            if not isinstance(result, tuple) or len(result) != 2:
                raise CustomRuleError(f"the jvp rule of `{name}` must return "
                                      "(output, tangent_of_output).")
            out_leaves = call.returned(result[0], primals_and_tangents)
            _like_function(self.jvp, call.function(self.fun), primals_and_tangents[:n],
                           out_leaves, call.out_def, call.static_args, "jvp", name)
            tangent_leaves = _leaves_of(result[1], call.out_def, "the tangent returned by jvp", name)
            return out_leaves + call.check(_checked(tangent_leaves, out_leaves, "tangent", name),
                                           primals_and_tangents)

        outs = custom_jvp_call(*call.leaves, fun=_named(flat_fun, name),
                               jvp=_named(flat_jvp, f"{name}_jvp", self.jvp))
        return unflatten(call.out_def, outs)
