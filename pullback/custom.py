"""User-defined derivative rules: `custom_vjp` and `custom_jvp`.

For numerical stability, for code pullback cannot trace, or for a cheaper rule.
Either kind of rule serves every transformation (see primitives/control.py):
a `custom_vjp` function works under forward mode too (so forward-over-reverse
Hessians and HVPs run through it), and a `custom_jvp` function under reverse mode
and `vmap`. Rules written with NumPy operations differentiate again. Under `jit`
the function and its rules are called as they are (never on made-up values), so
they may wrap SciPy; their results must then be arrays or numbers.
"""
from functools import update_wrapper
from typing import Callable
from weakref import WeakSet

import numpy as np

from .boundary import matching
from .core.engine import Tracer, trace_stack
from .core.primitive import ZERO
from .errors import CustomRuleError
from .primitives.control import custom_jvp_call, custom_vjp_call
from .primitives.structural import zeros_like_value
from .transforms.batching import BatchTracer
from .tree import describe, flatten, unflatten


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
            children = [t[k] for k in d.meta] if d.kind is dict else list(t)
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
    leaked tracers. Values of outer transformations are constants here and fine.
    """
    levels = [x._trace.level for x in leaves if isinstance(x, Tracer)]
    processing = WeakSet(t for t in trace_stack() if levels and t.level >= min(levels))

    def check(values):
        for v in flatten(values)[0]:
            # Batch rules run the user's functions under a vmap of their own: look inside it.
            inner = v.value if type(v) is BatchTracer else None
            if any(isinstance(u, Tracer) and u._trace in processing for u in (v, inner)):
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


def _reference(x):
    """A stand-in with x's shape and dtype (a zero-stride view), kept by the rules instead
    of x: a rule staged under jit must not hold on to a traced value."""
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return np.broadcast_to(np.zeros((), dtype), tuple(getattr(x, "shape", ())))


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return fn


def _flat(fun, in_def, out_def, check):
    """`fun` on flat leaves, returning flat leaves; records the output structure in out_def."""
    def flat_fun(*xs):
        out_leaves, treedef = flatten(fun(*unflatten(in_def, xs)))
        out_def[:] = [treedef]
        return check(out_leaves)
    return flat_fun


class custom_vjp:
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
    """

    def __init__(self, fun: Callable):
        update_wrapper(self, fun)
        self.fun, self.fwd, self.bwd = fun, None, None

    def defvjp(self, fwd: Callable, bwd: Callable) -> "custom_vjp":
        """Set the rule: the forward pass with residuals, and the backward pass."""
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args):
        name = getattr(self.fun, "__name__", "function")
        if self.fwd is None:
            raise CustomRuleError(f"`{name}` is a custom_vjp function without a rule: call "
                                  f"`{name}.defvjp(fwd, bwd)` first.")
        leaves, in_def = flatten(args)
        out_def, residuals_def, check = [], [], _closure_check(leaves, name)
        references = [_reference(x) for x in leaves]
        flat_fun = _flat(self.fun, in_def, out_def, check)

        def flat_fwd(*xs):
            result = self.fwd(*unflatten(in_def, xs))
            if not isinstance(result, tuple) or len(result) != 2:
                raise CustomRuleError(f"the fwd rule of `{name}` must return (output, residuals).")
            out_leaves, treedef = flatten(result[0])
            residuals, residuals_tree = flatten(result[1])
            out_def[:], residuals_def[:] = [treedef], [residuals_tree]
            return check(out_leaves) + check(residuals)

        def flat_bwd(*residuals_and_cts):
            n = residuals_def[0].num_leaves
            result = self.bwd(unflatten(residuals_def[0], residuals_and_cts[:n]),
                              unflatten(out_def[0], residuals_and_cts[n:]))
            if not isinstance(result, tuple) or len(result) != len(args):
                raise CustomRuleError(
                    f"the bwd rule of `{name}` must return a tuple with one cotangent per "
                    f"argument ({len(args)}), got {type(result).__name__}"
                    + (f" of length {len(result)}" if isinstance(result, tuple) else "") + ".")
            ct_leaves = _leaves_of(result, in_def, "the cotangent tuple returned by bwd", name)
            return _checked(ct_leaves, references, "cotangent", name)

        outs = custom_vjp_call(*leaves, fun=_named(flat_fun, name),
                               fwd=_named(flat_fwd, f"{name}_fwd"),
                               bwd=_named(flat_bwd, f"{name}_bwd"),
                               out_count=lambda: out_def[0].num_leaves)
        return unflatten(out_def[0], outs)


class custom_jvp:
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
    in the output tangent stands for zeros.
    """

    def __init__(self, fun: Callable):
        update_wrapper(self, fun)
        self.fun, self.jvp = fun, None

    def defjvp(self, jvp: Callable) -> Callable:
        """Set the rule (usable as a decorator)."""
        self.jvp = jvp
        return jvp

    def __call__(self, *args):
        name = getattr(self.fun, "__name__", "function")
        if self.jvp is None:
            raise CustomRuleError(f"`{name}` is a custom_jvp function without a rule: decorate "
                                  f"its rule with `@{name}.defjvp`.")
        leaves, in_def = flatten(args)
        out_def, check = [], _closure_check(leaves, name)
        flat_fun = _flat(self.fun, in_def, out_def, check)

        def flat_jvp(*primals_and_tangents):
            n = len(leaves)
            result = self.jvp(unflatten(in_def, primals_and_tangents[:n]),
                              unflatten(in_def, primals_and_tangents[n:]))
            if not isinstance(result, tuple) or len(result) != 2:
                raise CustomRuleError(f"the jvp rule of `{name}` must return "
                                      "(output, tangent_of_output).")
            out_leaves, treedef = flatten(result[0])
            out_def[:] = [treedef]
            tangent_leaves = _leaves_of(result[1], treedef, "the tangent returned by jvp", name)
            return check(out_leaves) + check(_checked(tangent_leaves, out_leaves, "tangent", name))

        outs = custom_jvp_call(*leaves, fun=_named(flat_fun, name),
                               jvp=_named(flat_jvp, f"{name}_jvp"))
        return unflatten(out_def[0], outs)

