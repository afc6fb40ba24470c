"""Primitives: the operations the engine knows, each with all of its rules in one place.

A `Primitive` carries its rule slots side by side:

- `impl(*arrays, **params)`: the concrete NumPy evaluation;
- `shape(*avals, **params)`: abstract evaluation, output `ShapeDtype`(s) from input
  shapes/dtypes (Python scalars stand for themselves: they are weakly typed);
- `jvp(primals, tangents, **params) -> (out, tangent_out)`: the pushforward, written
  with primitives so that it is differentiable again; tangents may be `ZERO`;
- `vjp(wrt, out, *primals, **params) -> pullback`: builds a *named* closure over the
  residuals; `pullback(cotangent)` returns one cotangent per input (`ZERO` allowed;
  entries whose `wrt` flag is False are ignored and need not be computed);
- `value_and_vjp(wrt, *primals, **params) -> (out, pullback)`: optional, used by reverse
  mode instead of evaluating then calling `vjp` when one computation yields both (a
  custom_vjp function's `fwd`: running `fun` as well would double the cost);
- `batch(values, dims, **params) -> (out, out_dim)`: the rule used by `vmap`;
- `emit(args, **params) -> str`: a Python expression computing the primitive with
  NumPy from the argument expressions, for generated code (default: a call of the
  primitive itself, which is always correct);
- `fresh_output`: True if every output is a new array sharing memory with no input
  (nor with another output), in `impl` and in the emitted code alike. The default,
  False, means "may be a view": generated code then never writes into the inputs'
  buffers while the output lives.

Positional arguments are arrays, keyword arguments are static parameters: tracers
only ever appear positionally. A primitive whose output has zero derivative
(piecewise-constant functions, comparisons, integer results) says
`differentiable=False` and needs no derivative rules. A pullback may return a
`LazyCotangent` for a concrete cotangent; it is handed `Scaled` ones (which multiply
and negate like arrays) only if its primitive says `scaled_cotangents=True`.

Calling a primitive binds it: with no tracer among the arguments it runs `impl`
directly (plain NumPy speed); otherwise the innermost transformation among the
arguments processes it.
"""
from typing import Any, Callable, NamedTuple

import numpy as np

from .engine import Tracer, find_top_trace


class _Zero:
    """Symbolic zero tangent/cotangent: never materialised unless a rule needs it."""
    __slots__ = ()

    def __repr__(self):
        return "ZERO"

    def __reduce__(self):
        return "ZERO"


ZERO = _Zero()


class LazyCotangent:
    """A concrete cotangent that reverse mode keeps symbolic instead of materialising.

    Two kinds: `Embedded` (structural.py: zero outside an indexed region, the transpose
    of indexing) and `Scaled` (a number times an array). The reverse sweep adds one into
    a buffer it owns in place (`add_into`) and materialises it (`dense()`, always a fresh
    array) for a pullback, unless it is `Scaled` and the pullback accepts it
    (`Primitive.scaled_cotangents`).
    Pullbacks create them only from concrete arrays, never from tracers.
    """
    __slots__ = ()

    def dense(self):
        raise NotImplementedError  # abstract: every concrete kind overrides it

    def add_into(self, buffer):
        raise NotImplementedError  # abstract: every concrete kind overrides it


def dense(ct):
    """A cotangent as an array: lazy ones materialised, anything else as it is."""
    return ct.dense() if isinstance(ct, LazyCotangent) else ct


_NORMAL_RANGE = {}      # dtype -> (smallest, largest) normal magnitude, as Python floats


def normal_factor(c, dtype):
    """c if it is a usable scale factor for `dtype`: finite, nonzero and normal there (so
    that scaling by it rounds, but never overflows, underflows or makes a NaN); else None."""
    bounds = _NORMAL_RANGE.get(dtype)
    if bounds is None:
        info = np.finfo(dtype)
        bounds = _NORMAL_RANGE[dtype] = (float(info.tiny), float(info.max))
    try:
        magnitude = abs(float(c))
    except OverflowError:
        return None
    return c if bounds[0] <= magnitude <= bounds[1] else None


def may_fold(first, second) -> bool:
    """Whether scaling by `first` then by `second` may become one scaling by their product:
    when both magnify (|s| >= 1) or both shrink (|s| <= 1), an intermediate result
    overflows (or underflows) exactly when the folded one does, to rounding; a magnifying
    and a shrinking factor may cancel out what the intermediate did (1e200 * 1e200 * 0.0
    is NaN, 1e200 * (1e200 * 0.0) is 0)."""
    return abs(first) == 1 or abs(second) == 1 or (abs(first) > 1) == (abs(second) > 1)


class Scaled(LazyCotangent):
    """`scale * array`, or the value `scale` everywhere when `array` is None (the transpose of a sum).

    The elementwise pullbacks multiply it by their derivatives without a pass over the
    data where IEEE arithmetic allows, so the result is what the unfolded program gives
    (Inf and NaN included), to rounding. A uniform value is a scalar of `dtype`, which a
    Python number multiplies exactly as it would multiply every element. An array's
    pending scale folds a Python number in when `may_fold` allows and the product is a
    `normal_factor`, else the scale is applied first. An array of the same shape and dtype
    multiplies `array` (one pass, none if the cotangent is uniform) once nothing is
    pending. Anything else materialises it first (exact NumPy semantics).
    """
    __slots__ = ("scale", "array", "shape", "dtype")
    __array_ufunc__ = None               # never silently converted by NumPy

    def __init__(self, scale, array, shape, dtype):
        if array is None:
            scale = dtype.type(scale)
        self.scale, self.array, self.shape, self.dtype = scale, array, shape, dtype

    def __mul__(self, other):
        if type(other) in (int, float):                  # weakly typed: keeps the dtype
            if self.array is None:
                return Scaled(self.scale * other, None, self.shape, self.dtype)
            scale = float(self.scale) * other
            if may_fold(self.scale, other) and normal_factor(scale, self.dtype) is not None:
                return Scaled(scale, self.array, self.shape, self.dtype)
            return Scaled(other, self.dense(), self.shape, self.dtype)
        if type(other) is np.ndarray and other.shape == self.shape \
                and other.dtype == self.dtype and (self.array is None or self.scale == 1):
            array = other if self.array is None else self.array * other
            return Scaled(self.scale, array, self.shape, self.dtype)
        return self._operand() * other

    def __neg__(self):
        return Scaled(-self.scale, self.array, self.shape, self.dtype)

    def dense(self):
        out = np.empty(self.shape, self.dtype)       # an array even when 0-d
        if self.array is None:
            out.fill(self.scale)
            return out
        return np.multiply(self.array, self.scale, out=out)

    def _operand(self):
        # What it stands for, as an operand of arithmetic that makes a new array: shared
        # and read-only where that saves a pass (a staged program keeps a view, not a copy).
        if self.array is None:
            return np.broadcast_to(np.asarray(self.scale, self.dtype), self.shape)
        return self.array if self.scale == 1 else self.array * self.scale

    def add_into(self, buffer):
        scale, array = self.scale, self.array
        if array is None:
            return np.add(buffer, scale, out=buffer)
        if scale == 1:
            return np.add(buffer, array, out=buffer)
        if scale == -1:
            return np.subtract(buffer, array, out=buffer)
        return np.add(buffer, array * scale, out=buffer)


class ShapeDtype(NamedTuple):
    """An abstract value: what the shape rule of a primitive returns."""
    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self):
        return len(self.shape)


REGISTRY: dict[str, "Primitive"] = {}


class Primitive:
    """An operation with its rules; calling it binds it to the current transformation."""

    __slots__ = ("name", "impl", "shape", "jvp", "vjp", "value_and_vjp", "batch", "emit",
                 "differentiable", "multiple_results", "scaled_cotangents", "domain", "family",
                 "fresh_output", "__weakref__")

    def __init__(self, name: str, impl: Callable, *, shape: Callable, jvp: Callable = None,
                 vjp: Callable = None, value_and_vjp: Callable = None, batch: Callable = None,
                 emit: Callable = None, differentiable: bool = True, multiple_results: bool = False,
                 scaled_cotangents: bool = False, domain: Any = None, family: str = "",
                 fresh_output: bool = False):
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} is defined twice")
        if differentiable and (jvp is None or vjp is None and value_and_vjp is None):
            raise ValueError(f"primitive {name!r} is differentiable but lacks a jvp or vjp rule")
        self.name, self.impl, self.shape = name, impl, shape
        self.jvp, self.vjp, self.value_and_vjp = jvp, vjp, value_and_vjp
        self.batch, self.emit = batch, emit
        self.differentiable = differentiable
        self.multiple_results = multiple_results
        self.scaled_cotangents = scaled_cotangents
        self.domain = domain
        self.family = family
        self.fresh_output = fresh_output
        REGISTRY[name] = self

    def __call__(self, *args, **params):
        # bind(), inlined here because it is the hottest path of the library.
        for a in args:
            if isinstance(a, Tracer):
                return find_top_trace(args).process_primitive(self, args, params)
        return self.impl(*args, **params)

    def __repr__(self):
        return f"<primitive {self.name}>"


def name_pullback(fn: Callable, prim_name: str) -> Callable:
    """Give a pullback closure the name `<prim>_pullback`, so it reads well in tracebacks."""
    fn.__name__ = fn.__qualname__ = f"{prim_name}_pullback"
    return fn
