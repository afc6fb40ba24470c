"""Higher-order primitives: calls of user functions that carry their own derivative rules.

`custom_vjp_call` and `custom_jvp_call` take flat lists of arrays and return flat
lists; `pullback.custom` wraps user functions (pytrees in and out) into them.
Each user rule serves every mode:

- a reverse rule `bwd(residuals, ct)` is linear in the cotangent, so the forward
  derivative `J t` is the transpose of `ct -> bwd(residuals, ct)` applied to `t`,
  and reverse mode transposes it: a `custom_vjp` function works under forward
  mode, hence in forward-over-reverse Hessians and HVPs;
- a forward rule's tangent map `t -> jvp(primals, t)` is linear, so reverse mode
  pulls cotangents back by transposing it;
- batching runs the user's functions under `vmap` and binds them again; code
  that cannot be traced (the usual reason for a custom rule: SciPy, loops over
  Python floats) runs example by example instead.
"""
import numpy as np

from ..core.primitive import ZERO, Primitive, ShapeDtype, name_pullback
from ..errors import (ArrayConversionError, ConcretizationError, InPlaceMutationError,
                      UnsupportedFunctionError)
from ..transforms.batching import map_examples, moveaxis, vmap
from ..transforms.reverse import vjp_flat
from .families import dtype_of, shape_of
from .structural import zeros_like_value


def _with_zeros(values, tangents):
    return [zeros_like_value(v) if t is ZERO else t for v, t in zip(values, tangents)]


def _call_shape(*avals, fun, **rules):
    """Output shapes and dtypes, by running the user's function on zeros of the input shapes."""
    with np.errstate(all="ignore"):
        outs = fun(*[np.zeros(shape_of(a), dtype_of(a) or np.float64) for a in avals])
    return [ShapeDtype(np.shape(o), np.asarray(o).dtype) for o in outs]


def _moved(values, dims):
    return [v if d is None else moveaxis(v, d, 0) for v, d in zip(values, dims)]


def _front_axes(dims):
    return tuple(None if d is None else 0 for d in dims)


# What pullback raises when user code cannot run on traced values.
_UNTRACEABLE = (ArrayConversionError, ConcretizationError, InPlaceMutationError,
                UnsupportedFunctionError)


def _batched(fn, in_axes):
    """`fn` over a batch: vmapped, or example by example if `fn` cannot be traced."""
    vmapped, looped = vmap(fn, in_axes=in_axes), map_examples(fn, in_axes=in_axes)

    def batched(*args):
        try:
            return vmapped(*args)
        except _UNTRACEABLE:
            return looped(*args)
    return batched


# ------------------------------------------------------------------ custom_vjp

def _custom_vjp_jvp(primals, tangents, fun, fwd, bwd):
    outs, residuals = fwd(*primals)
    _, back = vjp_flat(lambda *cts: bwd(residuals, cts), [zeros_like_value(o) for o in outs])
    return outs, back(tangents)


def _custom_vjp_vjp(wrt, outs, *primals, fun, fwd, bwd):
    # NB: `fun` already ran for `outs`; `fwd` runs again to produce the residuals.
    _, residuals = fwd(*primals)

    def pullback(cts):
        return bwd(residuals, _with_zeros(outs, cts))
    return name_pullback(pullback, "custom_vjp_call")


def _custom_vjp_batch(values, dims, fun, fwd, bwd):
    axes = _front_axes(dims)

    def batched_bwd(residuals, cts):
        cts_in = _batched(bwd, in_axes=(0, 0))(residuals, list(cts))
        # An input shared by the whole batch gets the sum of the examples' cotangents.
        return [c if d is not None else c.sum(axis=0) for c, d in zip(cts_in, dims)]

    outs = custom_vjp_call(*_moved(values, dims), fun=_batched(fun, axes),
                           fwd=_batched(fwd, axes), bwd=batched_bwd)
    return outs, [0] * len(outs)


custom_vjp_call = Primitive(
    "custom_vjp_call", lambda *args, fun, fwd, bwd: fun(*args),
    shape=_call_shape, jvp=_custom_vjp_jvp, vjp=_custom_vjp_vjp,
    batch=_custom_vjp_batch, multiple_results=True, family="control")

# ------------------------------------------------------------------ custom_jvp


def _custom_jvp_jvp(primals, tangents, fun, jvp):
    return jvp(list(primals), _with_zeros(primals, tangents))


def _custom_jvp_vjp(wrt, outs, *primals, fun, jvp):
    positions = [i for i, w in enumerate(wrt) if w]

    def tangent_map(*selected):
        tangents = [zeros_like_value(p) for p in primals]
        for i, t in zip(positions, selected):
            tangents[i] = t
        return jvp(list(primals), tangents)[1]

    _, back = vjp_flat(tangent_map, [zeros_like_value(primals[i]) for i in positions])

    def pullback(cts):
        result = [ZERO] * len(primals)
        for i, c in zip(positions, back(list(cts))):
            result[i] = c
        return result
    return name_pullback(pullback, "custom_jvp_call")


def _custom_jvp_batch(values, dims, fun, jvp):
    axes = _front_axes(dims)
    outs = custom_jvp_call(*_moved(values, dims), fun=_batched(fun, axes),
                           jvp=_batched(jvp, (list(axes), list(axes))))
    return outs, [0] * len(outs)


custom_jvp_call = Primitive(
    "custom_jvp_call", lambda *args, fun, jvp: fun(*args),
    shape=_call_shape, jvp=_custom_jvp_jvp, vjp=_custom_jvp_vjp,
    batch=_custom_jvp_batch, multiple_results=True, family="control")
