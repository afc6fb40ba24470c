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
- `batch(values, dims, **params) -> (out, out_dim)`: the rule used by `vmap`;
- `emit(args, **params) -> str`: a Python expression computing the primitive with
  NumPy from the argument expressions, for generated code (default: a call of the
  primitive itself, which is always correct).

Positional arguments are arrays, keyword arguments are static parameters: tracers
only ever appear positionally. A primitive whose output has zero derivative
(piecewise-constant functions, comparisons, integer results) says
`differentiable=False` and needs no derivative rules.

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


class SparseCotangent:
    """A cotangent that is zero outside a known region, kept symbolic by a pullback.

    Reverse mode adds it into an accumulator it owns in place instead of
    materialising it (the transpose of indexing would otherwise allocate a whole
    zero array per use). Subclasses implement `dense()` (a fresh array) and
    `add_into(buffer)` (in place, on a buffer of the full shape and dtype).
    Pullbacks return one only for concrete arrays, never for tracers.
    """
    __slots__ = ()

    def dense(self):
        raise NotImplementedError  # abstract: every concrete kind overrides it

    def add_into(self, buffer):
        raise NotImplementedError  # abstract: every concrete kind overrides it


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

    __slots__ = ("name", "impl", "shape", "jvp", "vjp", "batch", "emit", "differentiable",
                 "multiple_results", "domain", "family", "__weakref__")

    def __init__(self, name: str, impl: Callable, *, shape: Callable, jvp: Callable = None,
                 vjp: Callable = None, batch: Callable = None, emit: Callable = None,
                 differentiable: bool = True,
                 multiple_results: bool = False, domain: Any = None, family: str = ""):
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} is defined twice")
        if differentiable and (jvp is None or vjp is None):
            raise ValueError(f"primitive {name!r} is differentiable but lacks a jvp or vjp rule")
        self.name, self.impl, self.shape = name, impl, shape
        self.jvp, self.vjp, self.batch, self.emit = jvp, vjp, batch, emit
        self.differentiable = differentiable
        self.multiple_results = multiple_results
        self.domain = domain
        self.family = family
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
