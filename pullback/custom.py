"""User-defined derivative rules: `custom_vjp` and `custom_jvp`.

For numerical stability, for code pullback cannot trace, or for a cheaper rule.
Either kind of rule serves every transformation (see primitives/control.py):
a `custom_vjp` function works under forward mode too (so forward-over-reverse
Hessians and HVPs run through it), and a `custom_jvp` function under reverse mode
and `vmap`. Rules written with NumPy operations differentiate again.
"""
from functools import update_wrapper
from typing import Callable

from .boundary import matching
from .core.primitive import ZERO
from .errors import CustomRuleError
from .primitives.control import custom_jvp_call, custom_vjp_call
from .primitives.structural import zeros_like_value
from .tree import describe, flatten, unflatten


def _leaves_of(tree, expected_def, what, name):
    leaves, treedef = flatten(tree)
    if treedef != expected_def:
        raise CustomRuleError(f"{what} of `{name}` has structure {describe(treedef)}, but "
                              f"{describe(expected_def)} was expected.")
    return leaves


def _checked(values, references, what, name):
    """Each value shaped like its reference (None stands for a zero)."""
    out = []
    for i, (v, r) in enumerate(zip(values, references)):
        if v is None or v is ZERO:
            out.append(zeros_like_value(r))
            continue
        try:
            out.append(matching(v, r, CustomRuleError, f"{what} leaf {i}", "the value it belongs to"))
        except CustomRuleError as error:
            raise CustomRuleError(f"in the rule of `{name}`: {error}") from None
    return out


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
    cotangent per argument, shaped like it (None for a zero).
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
        out_def = []

        def flat_fun(*xs):
            out_leaves, treedef = flatten(self.fun(*unflatten(in_def, xs)))
            out_def[:] = [treedef]
            return out_leaves

        def flat_fwd(*xs):
            result = self.fwd(*unflatten(in_def, xs))
            if not isinstance(result, tuple) or len(result) != 2:
                raise CustomRuleError(f"the fwd rule of `{name}` must return (output, residuals).")
            out_leaves, treedef = flatten(result[0])
            out_def[:] = [treedef]
            return out_leaves, result[1]

        def flat_bwd(residuals, cts):
            result = self.bwd(residuals, unflatten(out_def[0], list(cts)))
            if not isinstance(result, tuple) or len(result) != len(args):
                raise CustomRuleError(
                    f"the bwd rule of `{name}` must return a tuple with one cotangent per "
                    f"argument ({len(args)}), got {type(result).__name__}"
                    + (f" of length {len(result)}" if isinstance(result, tuple) else "") + ".")
            ct_leaves = []
            for arg, ct in zip(args, result):
                arg_leaves, arg_def = flatten(arg)
                ct_leaves += [None] * len(arg_leaves) if ct is None else \
                    _leaves_of(ct, arg_def, "a cotangent returned by bwd", name)
            return _checked(ct_leaves, leaves, "cotangent", name)

        outs = custom_vjp_call(*leaves, fun=flat_fun, fwd=flat_fwd, bwd=flat_bwd)
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
    >>> pullback.grad(log1pexp)(1000.0)
    array(1.)

    `jvp(primals, tangents) -> (out, tangent_out)`, with primals and tangents the
    tuples of arguments and their tangents; the tangent map must be linear.
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
        out_def = []

        def flat_fun(*xs):
            out_leaves, treedef = flatten(self.fun(*unflatten(in_def, xs)))
            out_def[:] = [treedef]
            return out_leaves

        def flat_jvp(primals, tangents):
            result = self.jvp(unflatten(in_def, primals), unflatten(in_def, tangents))
            if not isinstance(result, tuple) or len(result) != 2:
                raise CustomRuleError(f"the jvp rule of `{name}` must return "
                                      "(output, tangent_of_output).")
            out_leaves, treedef = flatten(result[0])
            out_def[:] = [treedef]
            tangent_leaves = _leaves_of(result[1], treedef, "the tangent returned by jvp", name)
            return out_leaves, _checked(tangent_leaves, out_leaves, "tangent", name)

        outs = custom_jvp_call(*leaves, fun=flat_fun, jvp=flat_jvp)
        return unflatten(out_def[0], outs)

