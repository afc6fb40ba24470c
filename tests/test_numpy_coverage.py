"""The NumPy surface, name by name: values equal NumPy's, derivatives pass `check_grads`.

Every row is checked twice: written with plain `numpy` (so tracers reach pullback
through `__array_ufunc__` / `__array_function__`) and with `pullback.numpy`. Most
rows are written once against a namespace `m` (`numpy` or `pullback.numpy`); the
scipy.special rows and the pullback-only ones (`at`, `array` of tracers) give the two
functions apart. Inputs are drawn from a generator seeded by the row's name, inside
each function's domain and away from its kinks and ties.
"""
import zlib
from typing import Callable, NamedTuple

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import pullback
import pullback.numpy as pnp
from pullback.core.engine import trace_stack
from pullback.operators import HESSIAN_MODES
from pullback.errors import (ArrayConversionError, ConcretizationError, InPlaceMutationError,
                             PullbackError, UnsupportedFunctionError)


class Draw:
    """Seeded random inputs of one dtype (one generator per row, seeded by its name)."""

    def __init__(self, name, dtype):
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.dtype = np.dtype(dtype)

    def u(self, *shape, lo=-1.0, hi=1.0):
        """Uniform on (lo, hi)."""
        return self.rng.uniform(lo, hi, shape).astype(self.dtype)

    def pos(self, *shape):
        return self.u(*shape, lo=0.5, hi=2.0)

    def away(self, *shape):
        """Away from zero: magnitudes in (0.2, 1.5), random signs."""
        return self.u(*shape, lo=0.2, hi=1.5) * self.rng.choice([-1, 1], shape).astype(self.dtype)

    def grid(self, *shape, step=0.25):
        """Distinct values at least `step` apart (no ties for max, sort, ...), shuffled."""
        n = int(np.prod(shape))
        values = (np.arange(n) - n / 2) * step + self.rng.uniform(0.02, 0.05)
        return self.rng.permutation(values).reshape(shape).astype(self.dtype)

    def with_nans(self, *shape, nans=2):
        """Distinct values (as `grid`) except `nans` NaNs, at most one per row."""
        x = self.grid(*shape)
        rows = x.reshape(-1, shape[-1])
        for i in self.rng.choice(rows.shape[0], nans, replace=False):
            rows[i, self.rng.integers(shape[-1])] = np.nan
        return x

    def with_zeros(self, *shape, zeros=1):
        """Entries away from zero, except `zeros` of them that are exactly 0."""
        x = self.away(*shape)
        x.reshape(-1)[self.rng.choice(x.size, zeros, replace=False)] = 0.0
        return x


class Row(NamedTuple):
    name: str
    np_fn: Callable        # plain NumPy (the reference value; traced through dispatch)
    pnp_fn: Callable       # the same through pullback.numpy
    make: Callable         # Draw -> tuple of arguments
    f32: bool = False      # also checked at float32
    dispatch: bool = True  # np_fn reaches pullback (False: it is a reference value only)


def same(name, fn, make, f32=False):
    """A row written once, against a namespace `m`."""
    return Row(name, lambda *a: fn(np, *a), lambda *a: fn(pnp, *a), make, f32)


def pair(name, np_fn, pnp_fn, make, f32=False, dispatch=True):
    return Row(name, np_fn, pnp_fn, make, f32, dispatch)


def method(name, fn, make, f32=False):
    """A row using tracer methods and operators: the same code runs on arrays and tracers."""
    return Row(name, fn, fn, make, f32)


A23 = np.random.default_rng(7).uniform(-1, 1, (2, 3))     # a plain ndarray operand

# ------------------------------------------------------------------ elementwise


def unary(name, domain="u", f32=False, **kwargs):
    make = {"u": lambda d: (d.u(3, 4),), "pos": lambda d: (d.pos(3, 4),),
            "away": lambda d: (d.away(3, 4),), "unit": lambda d: (d.u(3, 4, lo=-0.9, hi=0.9),),
            "open": lambda d: (d.u(3, 4, lo=0.05, hi=0.95),),
            "gt1": lambda d: (d.u(3, 4, lo=1.2, hi=3.0),)}[domain]
    return same(name, lambda m, x: getattr(m, name)(x, **kwargs), make, f32)


ELEMENTWISE = [
    unary("negative"), unary("positive"), unary("absolute", "away", f32=True),
    unary("abs", "away"), unary("sqrt", "pos", f32=True), unary("cbrt", "away"),
    unary("square"), unary("reciprocal", "away"), unary("exp", f32=True), unary("exp2"),
    unary("expm1"), unary("log", "pos", f32=True), unary("log2", "pos"), unary("log10", "pos"),
    unary("log1p", "pos"), unary("sin", f32=True), unary("cos"), unary("tan", "unit"),
    unary("arcsin", "unit"), unary("arccos", "unit"), unary("arctan"), unary("sinh"),
    unary("cosh"), unary("tanh", f32=True), unary("arcsinh"), unary("arccosh", "gt1"),
    unary("arctanh", "unit"), unary("deg2rad"), unary("rad2deg"), unary("radians"),
    unary("degrees"), unary("fabs", "away"), unary("conjugate"),
    same("add", lambda m, x, y: m.add(x, y), lambda d: (d.u(3, 4), d.u(4)), f32=True),
    same("subtract", lambda m, x, y: m.subtract(x, y), lambda d: (d.u(3, 1), d.u(4))),
    same("multiply", lambda m, x, y: m.multiply(x, y), lambda d: (d.u(3, 4), d.u(3, 4)), f32=True),
    same("divide", lambda m, x, y: m.divide(x, y), lambda d: (d.u(3, 4), d.away(3, 4)), f32=True),
    same("true_divide", lambda m, x, y: m.true_divide(x, y), lambda d: (d.u(2, 3), d.away(3))),
    same("divide-by-int", lambda m, x: m.divide(x, 4), lambda d: (d.u(2, 3),)),
    same("divide-int-by", lambda m, y: m.divide(3, y), lambda d: (d.away(2, 3),)),
    same("power", lambda m, x, y: m.power(x, y), lambda d: (d.pos(3, 4), d.u(3, 4, lo=-2, hi=2)),
         f32=True),
    same("power-int", lambda m, x: m.power(x, 3), lambda d: (d.u(3, 4),)),
    same("power-half", lambda m, x: m.power(x, 0.5), lambda d: (d.pos(3, 4),)),
    same("power-base", lambda m, y: m.power(2.5, y), lambda d: (d.u(3, 4),)),
    same("float_power", lambda m, x, y: m.float_power(x, y),
         lambda d: (d.pos(3, 4), d.u(3, 4, lo=-2, hi=2))),
    same("maximum", lambda m, x, y: m.maximum(x, y), lambda d: (d.u(3, 4), d.u(3, 4)), f32=True),
    same("minimum", lambda m, x, y: m.minimum(x, y), lambda d: (d.u(3, 4), d.u(4))),
    same("fmax", lambda m, x, y: m.fmax(x, y), lambda d: (d.u(3, 4), d.u(3, 4))),
    same("fmin", lambda m, x, y: m.fmin(x, y), lambda d: (d.u(3, 4), d.u(3, 4))),
    same("arctan2", lambda m, y, x: m.arctan2(y, x), lambda d: (d.away(3, 4), d.away(3, 4))),
    same("hypot", lambda m, x, y: m.hypot(x, y), lambda d: (d.away(3, 4), d.away(3, 4))),
    same("logaddexp", lambda m, x, y: m.logaddexp(x, y), lambda d: (d.u(3, 4), d.u(3, 4))),
    same("logaddexp2", lambda m, x, y: m.logaddexp2(x, y), lambda d: (d.u(3, 4), d.u(3, 4))),
    same("remainder", lambda m, x, y: m.remainder(x, y),
         lambda d: (d.u(3, 4, lo=-3, hi=3), d.u(3, 4, lo=0.7, hi=1.3))),
    same("mod", lambda m, x, y: m.mod(x, y), lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(3, 4))),
    same("fmod", lambda m, x, y: m.fmod(x, y),
         lambda d: (d.u(3, 4, lo=-3, hi=3), d.u(3, 4, lo=0.7, hi=1.3))),
    same("clip", lambda m, x: m.clip(x, -0.5, 0.5), lambda d: (d.u(3, 4),), f32=True),
    same("clip-traced-bounds", lambda m, x, lo, hi: m.clip(x, lo, hi),
         lambda d: (d.u(3, 4), d.u(4, lo=-1, hi=-0.1), d.u(3, 1, lo=0.1, hi=1))),
    same("clip-upper-only", lambda m, x: m.clip(x, None, 0.3), lambda d: (d.u(3, 4),)),
    same("clip-min-max-keywords", lambda m, x: m.clip(x, min=-0.3, max=0.3),
         lambda d: (d.u(3, 4),)),
    same("where", lambda m, x, y: m.where(x > y, x * y, m.sin(y)),
         lambda d: (d.u(3, 4), d.u(3, 4)), f32=True),
    same("where-scalar-branch", lambda m, x: m.where(x > 0, x, 0.0), lambda d: (d.away(3, 4),)),
    same("maximum-plain-first", lambda m, x: m.maximum(A23, x), lambda d: (d.u(3),)),
    same("clip-traced-bound-only", lambda m, lo: m.clip(A23, lo, 0.5), lambda d: (d.u(3),)),
    same("where-constant-condition", lambda m, x, y: m.where(np.eye(3, dtype=bool), x, y),
         lambda d: (d.u(3, 3), d.u(3))),
    # scipy.special ufuncs, through __array_ufunc__
    pair("expit", sp.expit, pnp.expit, lambda d: (d.u(3, 4, lo=-3, hi=3),), f32=True),
    pair("logit", sp.logit, pnp.logit, lambda d: (d.u(3, 4, lo=0.05, hi=0.95),)),
    pair("erf", sp.erf, pnp.erf, lambda d: (d.u(3, 4),), f32=True),
    pair("erfc", sp.erfc, pnp.erfc, lambda d: (d.u(3, 4),)),
    pair("gammaln", sp.gammaln, pnp.gammaln, lambda d: (d.pos(3, 4),)),
    pair("digamma", sp.digamma, pnp.digamma, lambda d: (d.pos(3, 4),)),
    pair("psi", sp.psi, pnp.psi, lambda d: (d.pos(3, 4),)),
    pair("xlogy", sp.xlogy, pnp.xlogy, lambda d: (d.u(3, 4), d.pos(3, 4))),
    pair("log_ndtr", sp.log_ndtr, pnp.log_ndtr, lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    pair("ndtr", sp.ndtr, pnp.ndtr, lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    # ufunc methods
    method("add.reduce", lambda x: np.add.reduce(x, axis=1), lambda d: (d.u(3, 4),)),
    method("maximum.reduce", lambda x: np.maximum.reduce(x), lambda d: (d.grid(3, 4),)),
    method("multiply.accumulate", lambda x: np.multiply.accumulate(x), lambda d: (d.u(3, 4),)),
    method("multiply.outer", lambda x, y: np.multiply.outer(x, y), lambda d: (d.u(3), d.u(2, 2))),
]

# ------------------------------------------------------------------- reductions


def reduction(name, fn, make=lambda d: (d.u(2, 3, 4),), f32=False):
    return same(name, fn, make, f32)


REDUCTIONS = [
    reduction("sum", lambda m, x: m.sum(x), f32=True),
    reduction("sum-axis", lambda m, x: m.sum(x, axis=1)),
    reduction("sum-negative-axis", lambda m, x: m.sum(x, axis=-1)),
    reduction("sum-axis-tuple-keepdims", lambda m, x: m.sum(x, axis=(0, 2), keepdims=True)),
    reduction("sum-where", lambda m, x: m.sum(x, axis=0, where=np.arange(4) % 2 == 0)),
    reduction("prod", lambda m, x: m.prod(x), lambda d: (d.away(2, 3),), f32=True),
    reduction("prod-axis", lambda m, x: m.prod(x, axis=-1, keepdims=True)),
    reduction("prod-one-zero", lambda m, x: m.prod(x), lambda d: (d.with_zeros(2, 3, zeros=1),)),
    reduction("prod-two-zeros", lambda m, x: m.prod(x), lambda d: (d.with_zeros(2, 3, zeros=2),)),
    reduction("prod-zero-axis", lambda m, x: m.prod(x, axis=(0, 2)),
              lambda d: (d.with_zeros(2, 3, 2, zeros=3),)),
    reduction("mean", lambda m, x: m.mean(x), f32=True),
    reduction("mean-axis-tuple", lambda m, x: m.mean(x, axis=(-1, 0), keepdims=True)),
    reduction("average", lambda m, x: m.average(x, axis=1)),
    reduction("average-weights", lambda m, x, w: m.average(x, axis=-1, weights=w),
              lambda d: (d.u(2, 3, 4), d.pos(4))),
    reduction("average-weights-full", lambda m, x, w: m.average(x, weights=w),
              lambda d: (d.u(2, 3), d.pos(2, 3))),
    reduction("average-returned", lambda m, x, w: m.average(x, 0, w, returned=True),
              lambda d: (d.u(3, 2), d.pos(3, 2))),
    reduction("average-returned-unweighted", lambda m, x: m.average(x, -1, returned=True)),
    reduction("var", lambda m, x: m.var(x), f32=True),
    reduction("var-ddof-axis", lambda m, x: m.var(x, axis=(0, 2), ddof=1, keepdims=True)),
    reduction("var-correction", lambda m, x: m.var(x, axis=-1, correction=1)),
    reduction("mean-where", lambda m, x: m.mean(x, axis=-1, where=np.arange(4) < 3)),
    reduction("mean-dtype", lambda m, x: m.mean(x, axis=1, dtype=np.float64)),
    reduction("sum-initial", lambda m, x: m.sum(x, axis=0, initial=1.5)),
    reduction("prod-initial", lambda m, x: m.prod(x, axis=1, initial=2.0)),
    reduction("max-initial", lambda m, x: m.max(x, axis=0, initial=0.1), lambda d: (d.grid(3, 4),)),
    reduction("std", lambda m, x: m.std(x, axis=-1)),
    reduction("std-ddof", lambda m, x: m.std(x, ddof=1), f32=True),
    reduction("max", lambda m, x: m.max(x), lambda d: (d.grid(2, 3, 4),), f32=True),
    reduction("max-axis-keepdims", lambda m, x: m.max(x, axis=(0, -1), keepdims=True),
              lambda d: (d.grid(2, 3, 4),)),
    reduction("min", lambda m, x: m.min(x, axis=1), lambda d: (d.grid(2, 3, 4),)),
    reduction("amax", lambda m, x: m.amax(x, axis=0), lambda d: (d.grid(2, 3, 4),)),
    reduction("amin", lambda m, x: m.amin(x, axis=-2), lambda d: (d.grid(2, 3, 4),)),
    reduction("ptp", lambda m, x: m.ptp(x, axis=1), lambda d: (d.grid(2, 3, 4),)),
    reduction("ptp-all", lambda m, x: m.ptp(x), lambda d: (d.grid(3, 4),)),
    reduction("cumsum", lambda m, x: m.cumsum(x), f32=True),
    reduction("cumsum-axis", lambda m, x: m.cumsum(x, axis=1)),
    reduction("cumsum-negative-axis", lambda m, x: m.cumsum(x, axis=-1)),
    reduction("cumprod", lambda m, x: m.cumprod(x, axis=0), lambda d: (d.away(3, 4),), f32=True),
    reduction("cumprod-flat", lambda m, x: m.cumprod(x), lambda d: (d.away(2, 3),)),
    reduction("cumprod-zero", lambda m, x: m.cumprod(x, axis=-1),
              lambda d: (d.with_zeros(3, 4, zeros=2),)),
    pair("logsumexp", sp.logsumexp, pnp.logsumexp, lambda d: (d.u(2, 3, 4),), f32=True,
         dispatch=False),
    pair("logsumexp-axis", lambda x: sp.logsumexp(x, axis=(0, 2), keepdims=True),
         lambda x: pnp.logsumexp(x, axis=(0, 2), keepdims=True), lambda d: (d.u(2, 3, 4),),
         dispatch=False),
    pair("logsumexp-b", lambda x, b: sp.logsumexp(x, axis=-1, b=b),
         lambda x, b: pnp.logsumexp(x, axis=-1, b=b), lambda d: (d.u(3, 4), d.pos(3, 4)),
         dispatch=False),
]

# ----------------------------------------------------------------- contractions

CONTRACTIONS = [
    same("dot-1d-1d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(4), d.u(4)), f32=True),
    same("dot-2d-1d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(3, 4), d.u(4))),
    same("dot-1d-2d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(3), d.u(3, 4))),
    same("dot-2d-2d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(2, 3), d.u(3, 4)), f32=True),
    same("dot-0d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(), d.u(2, 3))),
    same("dot-3d-1d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(2, 3, 4), d.u(4))),
    same("dot-1d-3d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(3), d.u(2, 3, 4))),
    same("dot-3d-3d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(2, 3, 4), d.u(2, 4, 2))),
    same("dot-2d-3d", lambda m, a, b: m.dot(a, b), lambda d: (d.u(2, 3), d.u(2, 3, 4))),
    same("dot-plain-first", lambda m, b: m.dot(A23, b), lambda d: (d.u(3, 2),)),
    same("einsum-plain-operand", lambda m, b: m.einsum("ij,j", A23, b), lambda d: (d.u(3),)),
    same("concatenate-plain-first", lambda m, b: m.concatenate([A23, b]), lambda d: (d.u(1, 3),)),
    same("matmul-1d-1d", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(4), d.u(4))),
    same("matmul-1d-2d", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(3), d.u(3, 4))),
    same("matmul-2d-1d", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(3, 4), d.u(4))),
    same("matmul-2d-2d", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(2, 3), d.u(3, 4)),
         f32=True),
    same("matmul-batched", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(2, 3, 4), d.u(4, 2))),
    same("matmul-broadcast", lambda m, a, b: m.matmul(a, b),
         lambda d: (d.u(2, 1, 3, 4), d.u(3, 4, 2))),
    same("matmul-1d-3d", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(3), d.u(2, 3, 4))),
    same("matmul-3d-1d", lambda m, a, b: m.matmul(a, b), lambda d: (d.u(2, 3, 4), d.u(4))),
    same("vdot", lambda m, a, b: m.vdot(a, b), lambda d: (d.u(2, 3), d.u(3, 2))),
    same("inner-1d", lambda m, a, b: m.inner(a, b), lambda d: (d.u(4), d.u(4))),
    same("inner-nd", lambda m, a, b: m.inner(a, b), lambda d: (d.u(2, 3, 4), d.u(5, 4))),
    same("inner-0d", lambda m, a, b: m.inner(a, b), lambda d: (d.u(), d.u(3))),
    same("outer", lambda m, a, b: m.outer(a, b), lambda d: (d.u(3), d.u(2, 2)), f32=True),
    same("tensordot-int", lambda m, a, b: m.tensordot(a, b, 1), lambda d: (d.u(2, 3), d.u(3, 4))),
    same("tensordot-2", lambda m, a, b: m.tensordot(a, b), lambda d: (d.u(2, 3, 4), d.u(3, 4, 2))),
    same("tensordot-0", lambda m, a, b: m.tensordot(a, b, 0), lambda d: (d.u(2), d.u(3))),
    same("tensordot-pairs", lambda m, a, b: m.tensordot(a, b, axes=([1, 0], [0, 2])),
         lambda d: (d.u(3, 2, 4), d.u(2, 5, 3))),
    same("tensordot-pair-ints", lambda m, a, b: m.tensordot(a, b, axes=(-1, 0)),
         lambda d: (d.u(2, 3), d.u(3, 4))),
    same("einsum-explicit", lambda m, a, b: m.einsum("ij,jk->ik", a, b),
         lambda d: (d.u(2, 3), d.u(3, 4)), f32=True),
    same("einsum-implicit", lambda m, a, b: m.einsum("ij,jk", a, b),
         lambda d: (d.u(2, 3), d.u(3, 4))),
    same("einsum-implicit-order", lambda m, a: m.einsum("ba", a), lambda d: (d.u(2, 3),)),
    same("einsum-ellipsis", lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
         lambda d: (d.u(2, 3, 4), d.u(4, 2))),
    same("einsum-ellipsis-implicit", lambda m, a, b: m.einsum("...i,...i", a, b),
         lambda d: (d.u(2, 3), d.u(3))),
    same("einsum-trace", lambda m, a: m.einsum("ii->", a), lambda d: (d.u(3, 3),)),
    same("einsum-trace-implicit", lambda m, a: m.einsum("ii", a), lambda d: (d.u(3, 3),)),
    same("einsum-diagonal", lambda m, a: m.einsum("ii->i", a), lambda d: (d.u(3, 3),)),
    same("einsum-sum", lambda m, a: m.einsum("ij->", a), lambda d: (d.u(2, 3),)),
    same("einsum-three", lambda m, a, b, c: m.einsum("ij,jk,kl->il", a, b, c),
         lambda d: (d.u(2, 3), d.u(3, 4), d.u(4, 2))),
    same("einsum-three-shared", lambda m, a, b, c: m.einsum("i,ij,j->i", a, b, c),
         lambda d: (d.u(3), d.u(3, 4), d.u(4))),
    same("einsum-outer", lambda m, a, b: m.einsum("i,j->ij", a, b), lambda d: (d.u(3), d.u(2))),
    same("einsum-hadamard", lambda m, a, b: m.einsum("ij,ij->ij", a, b),
         lambda d: (d.u(2, 3), d.u(2, 3))),
    same("einsum-broadcast", lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
         lambda d: (d.u(1, 2, 3), d.u(4, 3, 2))),
    same("einsum-spaces", lambda m, a, b: m.einsum("i j, j -> i", a, b),
         lambda d: (d.u(2, 3), d.u(3))),
    same("trace", lambda m, a: m.trace(a), lambda d: (d.u(3, 4),)),
    same("trace-offset-axes", lambda m, a: m.trace(a, offset=-1, axis1=2, axis2=0),
         lambda d: (d.u(3, 2, 4),)),
    same("kron-1d", lambda m, a, b: m.kron(a, b), lambda d: (d.u(2), d.u(3))),
    same("kron-2d", lambda m, a, b: m.kron(a, b), lambda d: (d.u(2, 3), d.u(2, 2)), f32=True),
    same("kron-mixed", lambda m, a, b: m.kron(a, b), lambda d: (d.u(3), d.u(2, 2))),
]

# ------------------------------------------------------------------------ shape

x234 = lambda d: (d.u(2, 3, 4),)   # noqa: E731
x34 = lambda d: (d.u(3, 4),)       # noqa: E731

SHAPE = [
    same("reshape", lambda m, x: m.reshape(x, (4, -1)), x234, f32=True),
    same("ravel", lambda m, x: m.ravel(x), x234),
    same("transpose", lambda m, x: m.transpose(x), x234, f32=True),
    same("transpose-axes", lambda m, x: m.transpose(x, (1, -1, 0)), x234),
    same("swapaxes", lambda m, x: m.swapaxes(x, 0, -1), x234),
    same("moveaxis", lambda m, x: m.moveaxis(x, 0, -1), x234),
    same("moveaxis-several", lambda m, x: m.moveaxis(x, (0, 1), (2, 0)), x234),
    same("expand_dims", lambda m, x: m.expand_dims(x, -1), x34),
    same("expand_dims-tuple", lambda m, x: m.expand_dims(x, (0, 2)), x34),
    same("squeeze", lambda m, x: m.squeeze(x), lambda d: (d.u(1, 3, 1),)),
    same("squeeze-axis", lambda m, x: m.squeeze(x, axis=-1), lambda d: (d.u(1, 3, 1),)),
    same("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 3, 4)), lambda d: (d.u(3, 1),),
         f32=True),
    same("broadcast_arrays", lambda m, x, y: m.broadcast_arrays(x, y),
         lambda d: (d.u(3, 1), d.u(4))),
    same("atleast_1d", lambda m, x: m.atleast_1d(x), lambda d: (d.u(),)),
    same("atleast_2d", lambda m, x: m.atleast_2d(x), lambda d: (d.u(3),)),
    same("atleast_3d", lambda m, x: m.atleast_3d(x), lambda d: (d.u(3, 4),)),
    same("atleast_3d-1d", lambda m, x: m.atleast_3d(x), lambda d: (d.u(3),)),
    same("atleast_2d-several", lambda m, x, y: m.atleast_2d(x, y), lambda d: (d.u(), d.u(3, 4))),
    same("concatenate", lambda m, x, y: m.concatenate([x, y], axis=-1),
         lambda d: (d.u(2, 3), d.u(2, 2)), f32=True),
    same("concatenate-axis-none", lambda m, x, y: m.concatenate((x, y), axis=None),
         lambda d: (d.u(2, 3), d.u(4))),
    same("stack", lambda m, x, y: m.stack([x, y]), lambda d: (d.u(2, 3), d.u(2, 3))),
    same("stack-axis", lambda m, x, y: m.stack([x, y], axis=-1), lambda d: (d.u(2, 3), d.u(2, 3))),
    same("hstack", lambda m, x, y: m.hstack([x, y]), lambda d: (d.u(3), d.u(2))),
    same("hstack-2d", lambda m, x, y: m.hstack((x, y)), lambda d: (d.u(2, 3), d.u(2, 1))),
    same("vstack", lambda m, x, y: m.vstack([x, y]), lambda d: (d.u(3), d.u(2, 3))),
    same("column_stack", lambda m, x, y: m.column_stack([x, y]), lambda d: (d.u(3), d.u(3, 2))),
    same("split", lambda m, x: m.split(x, 2, axis=-1), x234),
    same("split-indices", lambda m, x: m.split(x, [1, 3], axis=1), x34),
    same("split-beyond", lambda m, x: m.split(x, [2, 9]), x34),
    same("split-negative", lambda m, x: m.split(x, [-1, 1], axis=-1), x34),
    same("array_split", lambda m, x: m.array_split(x, 3, axis=1), x34),
    same("flip", lambda m, x: m.flip(x), x234),
    same("flip-axis", lambda m, x: m.flip(x, axis=(0, -1)), x234),
    same("fliplr", lambda m, x: m.fliplr(x), x34),
    same("flipud", lambda m, x: m.flipud(x), x34),
    same("roll", lambda m, x: m.roll(x, 2), x34),
    same("roll-axis", lambda m, x: m.roll(x, -1, axis=1), x34),
    same("roll-axes", lambda m, x: m.roll(x, (1, 2), axis=(0, 1)), x34),
    same("roll-large", lambda m, x: m.roll(x, [7, -5], axis=[1, 0]), x34),
    same("roll-same-shift", lambda m, x: m.roll(x, 1, axis=(0, 1)), x34),
    same("roll-shifts-one-axis", lambda m, x: m.roll(x, [1, 2], axis=np.int64(1)), x34),
    same("tile", lambda m, x: m.tile(x, (2, 1, 2)), x34, f32=True),
    same("tile-int", lambda m, x: m.tile(x, 2), lambda d: (d.u(3),)),
    same("repeat", lambda m, x: m.repeat(x, 2), x34),
    same("repeat-axis", lambda m, x: m.repeat(x, [1, 0, 2], axis=0), x34),
    same("tile-short-reps", lambda m, x: m.tile(x, (2,)), x34),
    same("pad", lambda m, x: m.pad(x, ((1, 0), (2, 1))), x34, f32=True),
    same("pad-value", lambda m, x: m.pad(x, 1, constant_values=2.5), x34),
    same("pad-mode", lambda m, x: m.pad(x, (1, 2), mode="constant"), lambda d: (d.u(3),)),
    same("diag-vector", lambda m, x: m.diag(x), lambda d: (d.u(3),)),
    same("diag-vector-k", lambda m, x: m.diag(x, -1), lambda d: (d.u(3),)),
    same("diag-matrix", lambda m, x: m.diag(x), x34),
    same("diag-matrix-k", lambda m, x: m.diag(x, 1), x34),
    same("diagonal", lambda m, x: m.diagonal(x), x34),
    same("diagonal-axes", lambda m, x: m.diagonal(x, 1, -1, 0), x234),
    same("diagonal-negative", lambda m, x: m.diagonal(x, offset=-1), x34),
    same("trace-empty", lambda m, x: m.trace(x, offset=5) + m.sum(x), x34),
    same("tril", lambda m, x: m.tril(x), x34),
    same("triu", lambda m, x: m.triu(x, -1), x234),
    same("sort", lambda m, x: m.sort(x), lambda d: (d.grid(3, 4),), f32=True),
    same("sort-axis", lambda m, x: m.sort(x, axis=0), lambda d: (d.grid(3, 4),)),
    same("sort-none", lambda m, x: m.sort(x, axis=None), lambda d: (d.grid(3, 4),)),
]

# --------------------------------------------------------------------- indexing


def at_reference(x, index, values, how):
    out = np.array(x, copy=True)
    if how == "set":
        out[index] = values
    else:
        {"add": np.add, "multiply": np.multiply, "min": np.minimum,
         "max": np.maximum}[how].at(out, index, values)
    return out


def at_row(name, index, make, how, f32=False):
    return pair(name, lambda x, v: at_reference(x, index, v, how),
                lambda x, v: getattr(pnp.at(x)[index], how)(v), make, f32, dispatch=False)


INDEXING = [
    same("slice", lambda m, x: x[1:, ::2], x34, f32=True),
    same("slice-negative-step", lambda m, x: x[::-1, -1:0:-2], x34),
    same("slice-ellipsis-newaxis", lambda m, x: x[..., None, 1], x234),
    same("integer", lambda m, x: x[-1, 2], x34),
    same("integer-array-repeated", lambda m, x: x[[0, 0, 1]], lambda d: (d.u(3),), f32=True),
    same("integer-array-2d", lambda m, x: x[np.array([[0, 2], [2, 2]])], x34),
    same("integer-arrays-pair", lambda m, x: x[[0, 2, 2], [1, 3, 3]], x34),
    same("integer-array-mixed", lambda m, x: x[1:, [3, 0, 3]], x34),
    same("boolean-mask", lambda m, x: x[np.arange(12).reshape(3, 4) % 3 == 0], x34),
    same("boolean-mask-traced", lambda m, x: x[x > 0], x34),
    same("boolean-mask-row", lambda m, x: x[np.array([True, False, True])], x34),
    same("take", lambda m, x: m.take(x, [3, 0, 3], axis=1), x34, f32=True),
    same("take-flat", lambda m, x: m.take(x, [[5, 1], [1, 0]]), x34),
    same("take-scalar", lambda m, x: m.take(x, 2, axis=1), x34),
    same("slice-empty", lambda m, x: x[1:1] + m.sum(x), x34),
    same("slice-clamped", lambda m, x: x[-9:100:2], x34),
    same("boolean-list", lambda m, x: x[[True, False, True]], x34),
    same("sort-reversed", lambda m, x: m.sort(x)[..., ::-1], lambda d: (d.grid(3, 4),)),
    same("take_along_axis", lambda m, x: m.take_along_axis(x, np.array([[0, 0], [2, 1], [3, 3]]),
                                                           axis=1), x34),
    same("take_along_axis-0", lambda m, x: m.take_along_axis(x, np.array([[2, 0, 0, 1]]),
                                                             axis=0), x34),
    at_row("at-set-slice", (slice(1, None), 0), lambda d: (d.u(3, 4), d.u(2)), "set"),
    at_row("at-set-broadcast", (Ellipsis, 1), lambda d: (d.u(3, 4), d.u()), "set"),
    at_row("at-set-array", ([0, 2], [1, 3]), lambda d: (d.u(3, 4), d.u(2)), "set"),
    at_row("at-set-mask", np.eye(3, 4, dtype=bool), lambda d: (d.u(3, 4), d.u(3)), "set"),
    at_row("at-set-repeated", [0, 2, 0], lambda d: (d.u(3, 4), d.u(3, 4)), "set"),
    at_row("at-add-repeated", [0, 2, 0, 0], lambda d: (d.u(3, 4), d.u(4, 4)), "add", f32=True),
    at_row("at-add-slice", (slice(None), slice(1, 3)), lambda d: (d.u(3, 4), d.u(3, 2)), "add"),
    at_row("at-multiply-repeated", [0, 2, 0], lambda d: (d.u(3, 4), d.u(3, 4)), "multiply",
           f32=True),
    at_row("at-multiply-slice", (slice(None), 1), lambda d: (d.u(3, 4), d.u(3)), "multiply"),
    at_row("at-min-repeated", ([0, 2, 0], [1, 1, 1]), lambda d: (d.u(3, 4), d.u(3)), "min",
           f32=True),
    at_row("at-max-broadcast", [1, 1], lambda d: (d.u(3, 4), d.u(4)), "max"),
]

# --------------------------------------------------------------------- creation

CREATION = [
    pair("array-nested", lambda x, y: np.array([[x[0], x[1]], [y, 1.0]]),
         lambda x, y: pnp.array([[x[0], x[1]], [y, 1.0]]), lambda d: (d.u(2), d.u()),
         dispatch=False),
    pair("array-of-arrays", lambda x, y: np.array([x, y, x]),
         lambda x, y: pnp.array([x, y, x]), lambda d: (d.u(3), d.u(3)), dispatch=False),
    pair("asarray-list", lambda x: np.asarray([x[1] * 2.0, x[0]]),
         lambda x: pnp.asarray([x[1] * 2.0, x[0]]), lambda d: (d.u(2),), dispatch=False),
    pair("asarray-traced", lambda x: np.asarray(x), pnp.asarray, x34, dispatch=False),
    same("zeros_like", lambda m, x: m.zeros_like(x) + x, x34),
    same("ones_like", lambda m, x: m.ones_like(x) * m.sin(x), x34),
    same("full_like", lambda m, x, v: m.full_like(x, v) * x, lambda d: (d.u(3, 4), d.u())),
    same("full_like-constant", lambda m, x: m.full_like(x, 2.5) - x, x34),
]


# ------------------------------------------------ differences, integrals, sequences

coords = lambda d: np.cumsum(d.u(5, lo=0.5, hi=1.5))   # noqa: E731 (increasing, uneven)

SEQUENCES = [
    same("diff", lambda m, x: m.diff(x), x34),
    same("diff-n-axis-prepend", lambda m, x: m.diff(x, 2, axis=0, prepend=0.5), x34),
    same("diff-append-traced", lambda m, x, y: m.diff(x, append=y),
         lambda d: (d.u(3, 4), d.u(3, 1))),
    same("ediff1d", lambda m, x, e: m.ediff1d(x, to_begin=[1.0], to_end=e),
         lambda d: (d.u(3, 4), d.u(2))),
    same("gradient", lambda m, x: m.gradient(x), x34),
    same("gradient-spacing-edge2", lambda m, x: m.gradient(x, 0.5, axis=1, edge_order=2), x34),
    same("gradient-coordinates", lambda m, x, c: m.gradient(x, c, axis=-1),
         lambda d: (d.u(3, 5), coords(d))),
    same("gradient-coordinates-edge2", lambda m, x, c: m.gradient(x, c, axis=1, edge_order=2),
         lambda d: (d.u(3, 5), coords(d))),
    same("gradient-traced-step", lambda m, x, h: m.gradient(x, h, axis=0),
         lambda d: (d.u(3, 4), d.pos())),
    same("trapezoid", lambda m, y: m.trapezoid(y), x34),
    same("trapezoid-x", lambda m, y, x: m.trapezoid(y, x), lambda d: (d.u(3, 5), coords(d))),
    same("trapezoid-dx-axis", lambda m, y: m.trapezoid(y, dx=0.3, axis=0), x34),
    same("cumulative_sum", lambda m, x: m.cumulative_sum(x, axis=1, include_initial=True), x34),
    same("cumulative_prod", lambda m, x: m.cumulative_prod(x), lambda d: (d.away(5),)),
    same("interp", lambda m, x, xp, fp: m.interp(x, xp, fp),
         lambda d: (d.u(2, 4, lo=-1.2, hi=1.2), np.sort(d.u(6)), d.u(6))),
    same("interp-left-right", lambda m, x, fp: m.interp(x, [-0.5, 0.1, 0.5], fp, -3.0, fp[0]),
         lambda d: (d.u(2, 4), d.u(3))),
    same("interp-period", lambda m, x, xp, fp: m.interp(x, xp, fp, period=1.5),
         lambda d: (d.u(7, lo=-2, hi=2), d.u(5, lo=-1, hi=1), d.u(5))),
    same("convolve", lambda m, a, v: m.convolve(a, v), lambda d: (d.u(6), d.u(3))),
    same("convolve-same-longer-kernel", lambda m, a, v: m.convolve(a, v, "same"),
         lambda d: (d.u(3), d.u(6))),
    same("convolve-valid", lambda m, a, v: m.convolve(a, v, mode="valid"),
         lambda d: (d.u(6), d.u(4))),
    same("correlate", lambda m, a, v: m.correlate(a, v), lambda d: (d.u(6), d.u(3))),
    same("correlate-full", lambda m, a, v: m.correlate(a, v, "full"), lambda d: (d.u(4), d.u(6))),
    same("correlate-same", lambda m, a, v: m.correlate(a, v, "same"), lambda d: (d.u(6), d.u(4))),
    same("cross", lambda m, a, b: m.cross(a, b), lambda d: (d.u(4, 3), d.u(3))),
    same("cross-axes", lambda m, a, b: m.cross(a, b, axisa=0, axisb=0, axisc=0),
         lambda d: (d.u(3, 4), d.u(3, 4))),
    same("unwrap", lambda m, p: m.unwrap(p), lambda d: (np.cumsum(d.u(10, lo=-3, hi=3)),)),
    same("unwrap-axis-discont", lambda m, p: m.unwrap(p, discont=4.0, axis=0),
         lambda d: (np.cumsum(d.u(5, 2, lo=-4, hi=4), axis=0),)),
]

# ------------------------------------------------------------- order statistics

grid234 = lambda d: (d.grid(2, 3, 4),)   # noqa: E731
nan34 = lambda d: (d.with_nans(3, 4),)   # noqa: E731
QUANTILE_METHODS = ["linear", "lower", "higher", "nearest", "midpoint", "inverted_cdf",
                    "averaged_inverted_cdf", "closest_observation", "interpolated_inverted_cdf",
                    "hazen", "weibull", "median_unbiased", "normal_unbiased"]

STATISTICS = [
    same("median", lambda m, x: m.median(x), grid234),
    same("median-axis-keepdims", lambda m, x: m.median(x, axis=(0, 2), keepdims=True), grid234),
    same("median-even-count", lambda m, x: m.median(x, axis=-1), grid234),
    same("percentile", lambda m, x: m.percentile(x, [10, 50, 95], axis=1), grid234),
    same("quantile", lambda m, x: m.quantile(x, 0.3, axis=0), grid234),
    same("quantile-traced-q", lambda m, x, q: m.quantile(x, q, axis=-1),
         lambda d: (d.grid(3, 5), d.u(2, lo=0.05, hi=0.95))),
    *[same(f"quantile-{method}", lambda m, x, method=method: m.quantile(
        x, [0.0, 0.2, 0.5, 0.77, 1.0], axis=1, method=method), grid234)
      for method in QUANTILE_METHODS],
    same("quantile-weights", lambda m, x, w: m.quantile(x, [0.0, 0.3, 1.0], method="inverted_cdf",
                                                       weights=w), lambda d: (d.grid(3, 4),
                                                                              d.pos(3, 4))),
    same("percentile-weights-axis", lambda m, x: m.percentile(
        x, 40, axis=-1, method="inverted_cdf", weights=[0.0, 1.0, 0.5, 2.0], keepdims=True),
        grid234),
    same("nanmedian", lambda m, x: m.nanmedian(x, axis=1), nan34),
    same("nanpercentile", lambda m, x: m.nanpercentile(x, [20, 80], axis=-1), nan34),
    same("nanquantile-hazen", lambda m, x: m.nanquantile(x, 0.4, axis=1, method="hazen"), nan34),
    same("nansum", lambda m, x: m.nansum(x, axis=1), nan34),
    same("nansum-all", lambda m, x: m.nansum(x), nan34),
    same("nanprod", lambda m, x: m.nanprod(x, axis=0), lambda d: (d.with_nans(4, 3),)),
    same("nanmean", lambda m, x: m.nanmean(x, axis=-1, keepdims=True), nan34),
    same("nanvar", lambda m, x: m.nanvar(x, axis=1, ddof=1), nan34),
    same("nanstd", lambda m, x: m.nanstd(x), nan34),
    same("nanmax", lambda m, x: m.nanmax(x, axis=1), nan34),
    same("nanmin", lambda m, x: m.nanmin(x), nan34),
    same("nancumsum", lambda m, x: m.nancumsum(x, axis=1), nan34),
    same("nancumprod", lambda m, x: m.nancumprod(x), nan34),
    same("cov", lambda m, x: m.cov(x), lambda d: (d.u(3, 6),)),
    same("cov-y-rowvar-bias", lambda m, x, y: m.cov(x, y, rowvar=False, bias=True),
         lambda d: (d.u(6, 2), d.u(6))),
    same("cov-1d", lambda m, x: m.cov(x), lambda d: (d.u(6),)),
    same("cov-weights", lambda m, x, w: m.cov(x, fweights=[1, 2, 1, 3, 1, 1], aweights=w),
         lambda d: (d.u(3, 6), d.pos(6))),
    same("cov-aweights-ddof", lambda m, x, w: m.cov(x, aweights=w, ddof=2),
         lambda d: (d.u(3, 6), d.pos(6))),
    same("corrcoef", lambda m, x: m.corrcoef(x), lambda d: (d.u(3, 6),)),
    same("corrcoef-y", lambda m, x, y: m.corrcoef(x, y), lambda d: (d.u(6), d.u(6))),
    same("bincount-weights", lambda m, w: m.bincount(np.array([0, 2, 2, 5]), w, minlength=7),
         lambda d: (d.u(4),)),
]

# ------------------------------------------------------------------- polynomials

spread = lambda d: (np.linspace(-1, 1, 8) + d.u(8, lo=-0.05, hi=0.05)).astype(d.dtype)  # noqa

POLYNOMIALS = [
    same("polyval", lambda m, p, x: m.polyval(p, x), lambda d: (d.u(4), d.u(2, 3))),
    same("polyval-list-scalar", lambda m, x: m.polyval([1.0, 2.0, 3.0], x), lambda d: (d.u(),)),
    same("polyder", lambda m, p: m.polyder(p, 2), lambda d: (d.u(5),)),
    same("polyder-beyond-degree", lambda m, p: m.polyder(p, 4), lambda d: (d.u(3),)),
    same("polyint", lambda m, p: m.polyint(p), lambda d: (d.u(4),)),
    same("polyint-constants", lambda m, p, k: m.polyint(p, 2, k), lambda d: (d.u(4), d.u(2))),
    same("polyadd", lambda m, p, q: m.polyadd(p, q), lambda d: (d.u(4), d.u(2))),
    same("polysub", lambda m, p, q: m.polysub(p, q), lambda d: (d.u(2), d.u(3))),
    same("polymul", lambda m, p, q: m.polymul(p, q), lambda d: (d.away(4), d.away(3))),
    same("vander", lambda m, x: m.vander(x), lambda d: (d.u(4),)),
    same("vander-N-increasing", lambda m, x: m.vander(x, 5, increasing=True),
         lambda d: (d.u(3),)),
    same("polyfit", lambda m, x, y: m.polyfit(x, y, 3), lambda d: (spread(d), d.u(8))),
    same("polyfit-weights-2d", lambda m, x, y, w: m.polyfit(x, y, 2, w=w),
         lambda d: (spread(d), d.u(8, 2), d.pos(8))),
    same("polyfit-full", lambda m, x, y: m.polyfit(x, y, 2, full=True),
         lambda d: (spread(d), d.u(8))),
    same("polyfit-cov", lambda m, x, y: m.polyfit(x, y, 2, cov=True),
         lambda d: (spread(d), d.u(8))),
]

# ------------------------------------------------------- building and rearranging


def _with_nan_and_inf(x):
    """x (4 values) plus a constant 0, inf, NaN, -inf: the last three are replaced."""
    return x + np.array([0.0, np.inf, np.nan, -np.inf], x.dtype)


CHOICE = np.array([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 1, 2]])
PAD_WIDTHS = ((1, 2), (3, 1))

BUILDING = [
    same("linspace", lambda m, a, b: m.linspace(a, b, 7), lambda d: (d.u(), d.pos())),
    same("linspace-arrays-axis", lambda m, a, b: m.linspace(a, b, 5, axis=1),
         lambda d: (d.u(3), d.pos(3))),
    same("linspace-retstep-no-endpoint", lambda m, a, b: m.linspace(a, b, 4, False, True),
         lambda d: (d.u(), d.pos(2))),
    same("linspace-one", lambda m, a, b: m.linspace(a, b, 1), lambda d: (d.u(), d.pos())),
    same("logspace", lambda m, a, b: m.logspace(a, b, 5), lambda d: (d.u(), d.pos())),
    same("logspace-base-axis", lambda m, a, b: m.logspace(a, b, 4, base=2.0, axis=1),
         lambda d: (d.u(3), d.pos(3))),
    same("geomspace", lambda m, a, b: m.geomspace(a, b, 6), lambda d: (d.pos(), d.pos() + 2)),
    same("geomspace-negative-no-endpoint", lambda m, a, b: m.geomspace(-a, -b, 4, False),
         lambda d: (d.pos(), d.pos() + 2)),
    same("geomspace-arrays-axis", lambda m, a, b: m.geomspace(a, b, 4, axis=1),
         lambda d: (d.pos(3), d.pos(3) + 2)),
    same("meshgrid", lambda m, a, b: m.meshgrid(a, b), lambda d: (d.u(3), d.u(4))),
    same("meshgrid-ij-sparse", lambda m, a, b, c: m.meshgrid(a, b, c, indexing="ij", sparse=True),
         lambda d: (d.u(3), d.u(4), d.u(2))),
    same("meshgrid-three", lambda m, a, b, c: m.meshgrid(a, b, c), lambda d: (d.u(3), d.u(4),
                                                                             d.u(2))),
    same("append", lambda m, x, v: m.append(x, v), lambda d: (d.u(3, 4), d.u(4))),
    same("append-axis", lambda m, x, v: m.append(x, v, axis=0), lambda d: (d.u(3, 4), d.u(1, 4))),
    same("insert", lambda m, x, v: m.insert(x, 2, v, axis=1), lambda d: (d.u(3, 4), d.u(3))),
    same("insert-flat-repeated", lambda m, x, v: m.insert(x, [1, 5, 5], v),
         lambda d: (d.u(3, 4), d.u(3))),
    same("insert-scalar", lambda m, x, v: m.insert(x, 1, v, axis=0), lambda d: (d.u(3, 4), d.u())),
    same("insert-slice-constant", lambda m, x: m.insert(x, slice(0, 3), 7.0, axis=1), x34),
    same("delete", lambda m, x: m.delete(x, [0, 2], axis=1), x34),
    same("delete-flat-slice", lambda m, x: m.delete(x, slice(2, 9, 3)), x34),
    same("resize", lambda m, x: m.resize(x, (5, 3)), x34),
    *[same(f"pad-{mode}", lambda m, x, mode=mode: m.pad(x, PAD_WIDTHS, mode=mode),
           lambda d: (d.grid(3, 4),))
      for mode in ("edge", "reflect", "symmetric", "wrap", "maximum", "minimum", "mean",
                   "median", "linear_ramp")],
    *[same(f"pad-{mode}-wider-than-array", lambda m, x, mode=mode: m.pad(x, 5, mode=mode),
           lambda d: (d.grid(4),)) for mode in ("reflect", "symmetric", "wrap", "linear_ramp")],
    same("pad-stat_length", lambda m, x: m.pad(x, PAD_WIDTHS, mode="mean",
                                               stat_length=((1, 2), (2, 2))), x34),
    same("pad-end_values", lambda m, x: m.pad(x, PAD_WIDTHS, mode="linear_ramp",
                                              end_values=((1, 2), (3, -1))), x34),
    same("pad-constant-pairs", lambda m, x: m.pad(x, PAD_WIDTHS, constant_values=((1, 2), (3, -1))),
         x34),
    same("pad-traced-constant", lambda m, x, c: m.pad(x, 1, constant_values=c),
         lambda d: (d.u(3, 4), d.u())),
    same("pad-traced-end-value", lambda m, x, c: m.pad(x, 2, mode="linear_ramp", end_values=c),
         lambda d: (d.u(3, 4), d.u())),
    same("select", lambda m, x, v: m.select([x < -0.3, x > 0.5], [x * 2, v], default=v[0]),
         lambda d: (d.u(3, 4), d.u(4))),
    same("select-default", lambda m, x: m.select([x < 0], [x]), lambda d: (d.away(3, 4),)),
    same("piecewise", lambda m, x: m.piecewise(x, [x < 0, x >= 0],
                                               [lambda t: -t ** 3, lambda t: m.sqrt(t)]),
         lambda d: (d.away(3, 4),)),
    same("piecewise-otherwise-constant", lambda m, x: m.piecewise(x, [x < -0.5],
                                                                  [lambda t: t * 2, 1.5]),
         lambda d: (d.away(3, 4),)),
    same("piecewise-one-condition", lambda m, x: m.piecewise(x, x > 0, [lambda t: t ** 2]),
         lambda d: (d.away(5),)),
    same("choose", lambda m, x, v: m.choose(CHOICE, [x, v, 2 * x]),
         lambda d: (d.u(3, 4), d.u(4))),
    same("choose-wrap", lambda m, x, v: m.choose(CHOICE + 2, [x, v, 2 * x], mode="wrap"),
         lambda d: (d.u(3, 4), d.u(4))),
    same("choose-clip", lambda m, x, v: m.choose(CHOICE * 2 - 1, [x, v, 2 * x], mode="clip"),
         lambda d: (d.u(3, 4), d.u(4))),
    same("compress", lambda m, x: m.compress([True, False, True], x, axis=0), x34),
    same("compress-traced-condition", lambda m, x: m.compress(x.ravel() > 0, x), x34),
    same("extract", lambda m, x: m.extract(x > 0, x), x34),
    same("dstack", lambda m, x, y: m.dstack([x, y]), lambda d: (d.u(3, 4), d.u(3, 4))),
    same("dstack-1d", lambda m, x, y: m.dstack((x, y)), lambda d: (d.u(3), d.u(3))),
    same("block", lambda m, x, v: m.block([[x, x[:, :1]], [v[None], v[None, :1]]]),
         lambda d: (d.u(3, 4), d.u(4))),
    same("block-1d", lambda m, x, y: m.block([x, y, 1.0]), lambda d: (d.u(3), d.u(2))),
    *[same(f"rot90-{k}", lambda m, x, k=k: m.rot90(x, k), x34) for k in (-1, 1, 2, 3)],
    same("rot90-axes", lambda m, x: m.rot90(x, 1, axes=(2, 0)), x234),
    same("hsplit", lambda m, x: m.hsplit(x, 2), x34),
    same("hsplit-1d", lambda m, v: m.hsplit(v, [1, 3]), lambda d: (d.u(4),)),
    same("vsplit", lambda m, x: m.vsplit(x, 3), x34),
    same("dsplit", lambda m, x: m.dsplit(x, 2), x234),
    same("rollaxis", lambda m, x: m.rollaxis(x, 2), x234),
    same("rollaxis-start", lambda m, x: m.rollaxis(x, 0, 3), x234),
    same("diagflat", lambda m, x: m.diagflat(x, -1), lambda d: (d.u(2, 2),)),
    same("unstack", lambda m, x: m.unstack(x, axis=1), x34),
    same("apply_along_axis", lambda m, x: m.apply_along_axis(lambda r: r * m.sum(r ** 2), 0, x),
         x34),
    same("apply_along_axis-scalar", lambda m, x: m.apply_along_axis(m.max, 1, x),
         lambda d: (d.grid(3, 4),)),
    same("apply_along_axis-matrix", lambda m, x: m.apply_along_axis(
        lambda r: m.outer(r, r), 1, x), x34),
    same("partition", lambda m, x: m.partition(x, 2, axis=1), lambda d: (d.grid(3, 4),)),
    same("partition-several", lambda m, x: m.partition(x, (0, -1), axis=None),
         lambda d: (d.grid(3, 4),)),
    same("einsum-operand-lists", lambda m, a, b: m.einsum(a, [0, 1], b, [1, 2], [0, 2]),
         lambda d: (d.u(2, 3), d.u(3, 4))),
    same("einsum-operand-lists-ellipsis", lambda m, a, b: m.einsum(a, [Ellipsis, 1], b, [1]),
         lambda d: (d.u(2, 3), d.u(3))),
    same("vecdot", lambda m, a, b: m.vecdot(a, b), lambda d: (d.u(2, 3), d.u(3))),
    same("vecdot-axis", lambda m, a, b: m.vecdot(a, b, axis=0), lambda d: (d.u(3, 2), d.u(3, 1))),
    same("matvec", lambda m, a, b: m.matvec(a, b), lambda d: (d.u(2, 3, 4), d.u(4))),
    same("vecmat", lambda m, a, b: m.vecmat(a, b), lambda d: (d.u(3), d.u(2, 3, 4))),
    same("matrix_transpose", lambda m, a: m.matrix_transpose(a), x234),
    same("kron-scalar", lambda m, a: m.kron(2.0, a), x34),
    same("kron-traced-scalar", lambda m, s, a: m.kron(a, s), lambda d: (d.u(), d.u(2, 3))),
    same("tensordot-scalar", lambda m, a: m.tensordot(a, 3.0, 0), x34),
    same("i0", lambda m, x: m.i0(x), x34),
    same("sinc", lambda m, x: m.sinc(x), x34),
    same("copysign", lambda m, x, y: m.copysign(x, y), lambda d: (d.away(3, 4), d.away(4))),
    same("heaviside", lambda m, x, h: m.heaviside(m.where(x > 0.5, 0.0, x), h),
         lambda d: (d.away(3, 4), d.u(4))),
    same("ldexp", lambda m, x: m.ldexp(x, np.array([-1, 0, 2, 3])), x34),
    same("frexp-mantissa", lambda m, x: m.frexp(x)[0], lambda d: (d.away(3, 4) * 7,)),
    same("modf", lambda m, x: m.modf(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    same("divmod-remainder", lambda m, x, y: m.divmod(x, y)[1],
         lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(4))),
    same("nan_to_num", lambda m, x: m.nan_to_num(_with_nan_and_inf(x)), lambda d: (d.away(4),)),
    same("nan_to_num-values", lambda m, x, v: m.nan_to_num(_with_nan_and_inf(x), nan=v,
                                                            posinf=5.0, neginf=-5.0),
         lambda d: (d.away(4), d.u())),
]

# -------------------------------------------------- tracer methods and operators

METHODS = [
    method(".T", lambda x: x.T, x34),
    method(".mT", lambda x: x.mT, x234),
    method(".sum()", lambda x: x.sum(), x34, f32=True),
    method(".sum(axis, keepdims)", lambda x: x.sum(axis=-1, keepdims=True), x34),
    method(".mean()", lambda x: x.mean(axis=0), x34),
    method(".prod()", lambda x: x.prod(axis=1), lambda d: (d.away(3, 4),)),
    method(".var()", lambda x: x.var(ddof=1), x34),
    method(".std()", lambda x: x.std(axis=0), x34),
    method(".max()", lambda x: x.max(), lambda d: (d.grid(3, 4),)),
    method(".min(axis)", lambda x: x.min(axis=0), lambda d: (d.grid(3, 4),)),
    method(".cumsum()", lambda x: x.cumsum(axis=1), x34),
    method(".cumprod()", lambda x: x.cumprod(), lambda d: (d.away(2, 3),)),
    method(".reshape(*shape)", lambda x: x.reshape(2, -1), x34, f32=True),
    method(".reshape(shape)", lambda x: x.reshape((-1,)), x34),
    method(".ravel()", lambda x: x.ravel(), x34),
    method(".flatten()", lambda x: x.flatten(), x34),
    method(".transpose(*axes)", lambda x: x.transpose(2, 0, 1), x234),
    method(".transpose()", lambda x: x.transpose(), x234),
    method(".swapaxes()", lambda x: x.swapaxes(0, 1), x34),
    method(".squeeze()", lambda x: x.squeeze(), lambda d: (d.u(3, 1),)),
    method(".dot()", lambda x, y: x.dot(y), lambda d: (d.u(3, 4), d.u(4))),
    method(".astype(float64)", lambda x: x.astype(np.float64) * 2.0, x34, f32=True),
    method(".clip()", lambda x: x.clip(-0.5, 0.5), x34),
    method(".trace()", lambda x: x.trace(), x34),
    method(".diagonal()", lambda x: x.diagonal(1), x34),
    method(".take()", lambda x: x.take([1, 1, 0]), x34),
    method(".repeat()", lambda x: x.repeat(2, axis=1), x34),
    method(".copy()", lambda x: x.copy() * x, x34),
    method(".conj()", lambda x: x.conj(), x34),
    method(".real, .imag", lambda x: x.real + x.imag, x34),
    method("len()", lambda x: x * len(x), x34),
    method("iteration", lambda x: sum(row * i for i, row in enumerate(x)), x34),
    method("np.stack(list(x))", lambda x: np.stack(list(x)[::-1]), x34),
    method("x + y", lambda x, y: x + y, lambda d: (d.u(3, 4), d.u(4)), f32=True),
    method("x - y", lambda x, y: x - y, lambda d: (d.u(3, 4), d.u(3, 4))),
    method("x * y", lambda x, y: x * y, lambda d: (d.u(3, 4), d.u(3, 1))),
    method("x / y", lambda x, y: x / y, lambda d: (d.u(3, 4), d.away(3, 4)), f32=True),
    method("x / 2", lambda x: x / 2, x34),
    method("x @ y", lambda x, y: x @ y, lambda d: (d.u(3, 4), d.u(4, 2)), f32=True),
    method("x @ v", lambda x, v: x @ v, lambda d: (d.u(3, 4), d.u(4))),
    method("x ** 3", lambda x: x ** 3, x34),
    method("x ** y", lambda x, y: x ** y, lambda d: (d.pos(3, 4), d.u(3, 4))),
    method("-x, +x, abs(x)", lambda x: -x + (+x) * abs(x), lambda d: (d.away(3, 4),)),
    method("x % y", lambda x, y: x % y, lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(3, 4))),
    method("2.0 - x", lambda x: 2.0 - x, x34),
    method("2.0 + x", lambda x: 2.0 + x, x34),
    method("2.0 * x", lambda x: 2.0 * x, x34),
    method("2.0 / x", lambda x: 2.0 / x, lambda d: (d.away(3, 4),)),
    method("2.0 ** x", lambda x: 2.0 ** x, x34, f32=True),
    method("A @ x (ndarray)", lambda x: A23 @ x, x34),
    method("x @ A.T (ndarray)", lambda x: x @ A23.T, lambda d: (d.u(4, 3),)),
    method("ndarray + x", lambda x: A23[0] + x, lambda d: (d.u(2, 3),)),
    method("ndarray ** x", lambda x: np.abs(A23) ** x, lambda d: (d.u(2, 3),)),
    method("float64 * x", lambda x: np.float64(3.0) * x, x34),
    method("x += y", lambda x, y: _iadd(x, y), lambda d: (d.u(3, 4), d.u(4))),
    method(".compress()", lambda x: x.compress([False, True, True], axis=0), x34),
    method(".flat", lambda x: x.flat[5] * sum(x.flat) * len(x.flat), x34),
    method("divmod(x, y)", lambda x, y: divmod(x, y)[1] + divmod(2.5, y)[1],
           lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(3, 4))),
    method("f-string, in, itemsize, nbytes", lambda x: _inspect(x), x34),
]


def _inspect(x):
    """Python protocols that read a traced value's known value or its type."""
    assert f"{x[0, 0]:.3f}" == format(float(np.asarray(pullback.stop_gradient(x)[0, 0])), ".3f")
    assert (x[1, 2] in x) and (7.5 not in x)
    assert (x.itemsize, x.nbytes) == (x.dtype.itemsize, x.size * x.dtype.itemsize)
    return x * 1.0


def _iadd(x, y):
    z = x * 1.0
    z += y          # rebinds z to z + y on tracers: functional, not in place
    z *= y
    return z


# Issue 10's functions are all checked in float32 as well.
SEQUENCES, STATISTICS, POLYNOMIALS, BUILDING = (
    [row._replace(f32=True) for row in family]
    for family in (SEQUENCES, STATISTICS, POLYNOMIALS, BUILDING))
ROWS = (ELEMENTWISE + REDUCTIONS + CONTRACTIONS + SHAPE + INDEXING + CREATION + METHODS
        + SEQUENCES + STATISTICS + POLYNOMIALS + BUILDING)
BY_NAME = {row.name: row for row in ROWS}
assert len(BY_NAME) == len(ROWS), "row names must be unique"


# ------------------------------------------------------------------------ checks


def assert_tree_equal(actual, expected, rtol):
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_tree_equal(a, e, rtol)
        return
    assert np.shape(actual) == np.shape(expected)
    assert np.asarray(actual).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol)


def traced_value(fn, args):
    """fn's value computed under reverse mode and forward mode (both must agree with NumPy)."""
    reverse = pullback.pullback(fn, *args)[0]
    forward = pullback.pushforward(fn, tuple(args), tuple(np.ones_like(a) for a in args))[0]
    return reverse, forward


def check_value(row, rtol=1e-12):
    """The row's value through pullback.numpy, and traced in both modes, equals NumPy's."""
    args = row.make(Draw(row.name, np.float64))
    expected = row.np_fn(*args)
    assert_tree_equal(row.pnp_fn(*args), expected, rtol)
    for fn in (row.np_fn, row.pnp_fn) if row.dispatch else (row.pnp_fn,):
        for value in traced_value(fn, args):
            assert_tree_equal(value, expected, rtol)


def grad_cases(rows):
    """(name, "np" / "pnp") for each way a row's function is written."""
    return [pytest.param(row.name, impl, id=f"{row.name}-{impl}") for row in rows
            for impl in (("np", "pnp") if row.dispatch and row.np_fn is not row.pnp_fn
                         else ("np",) if row.dispatch else ("pnp",))]


def check_row_grads(row, impl, order=2):
    fn = row.np_fn if impl == "np" else row.pnp_fn
    pullback.check_grads(fn, row.make(Draw(row.name, np.float64)), order=order,
                         modes=("forward", "reverse"))


def check_row_float32(row, impl, order=2):
    """Values and derivatives stay float32 (check_grads also checks the derivative dtypes)."""
    fn = row.np_fn if impl == "np" else row.pnp_fn
    args = row.make(Draw(row.name, np.float32))
    expected = row.np_fn(*args)
    for value in traced_value(fn, args):
        assert_tree_equal(value, expected, 1e-6)
    pullback.check_grads(fn, args, order=order, modes=("forward", "reverse"))


@pytest.mark.parametrize("name", list(BY_NAME))
def test_value(name):
    check_value(BY_NAME[name])


GRAD_CASES = grad_cases(ROWS)


@pytest.mark.parametrize("name, impl", GRAD_CASES)
def test_grads(name, impl):
    check_row_grads(BY_NAME[name], impl)


F32_CASES = [pytest.param(name, impl, id=f"{name}-{impl}") for name, impl in
             (case.values for case in GRAD_CASES) if BY_NAME[name].f32]


@pytest.mark.parametrize("name, impl", F32_CASES)
def test_grads_float32(name, impl):
    check_row_float32(BY_NAME[name], impl)


def test_float32_subset_is_representative():
    families = [ELEMENTWISE, REDUCTIONS, CONTRACTIONS, SHAPE, INDEXING, METHODS, SEQUENCES,
                STATISTICS, POLYNOMIALS, BUILDING]
    assert all(sum(row.f32 for row in family) >= 3 for family in families)


# ------------------------------------------- every function of the list reaches us

EVERYDAY = """diff ediff1d gradient trapezoid cumulative_sum cumulative_prod median percentile
quantile nansum nanprod nanmean nanvar nanstd nanmax nanmin nanmedian nanpercentile
nanquantile nancumsum nancumprod cov corrcoef interp convolve correlate cross vecdot matvec
vecmat matrix_transpose polyval polyfit polyder polyint polymul polyadd polysub vander roots
linspace logspace geomspace meshgrid append insert delete pad select piecewise choose compress
extract partition argpartition searchsorted sinc i0 nan_to_num unwrap copysign heaviside
ldexp frexp modf divmod fix dstack block rot90 hsplit vsplit dsplit array_split resize
rollaxis diagflat unstack bincount apply_along_axis einsum""".split()
LINALG = """eig eigvals lstsq cond multi_dot tensorsolve tensorinv matrix_norm vector_norm svdvals
outer cross trace diagonal tensordot vecdot matrix_transpose matmul""".split()


@pytest.mark.parametrize("name", EVERYDAY + [f"linalg.{name}" for name in LINALG])
def test_issue10_numpy_functions_reach_pullback(name):
    """Each function of issue 10's NumPy list, called on a traced value, is answered by
    pullback.numpy (through __array_function__ or __array_ufunc__), never by NumPy itself."""
    namespace, function = (np.linalg, name[7:]) if name.startswith("linalg.") else (np, name)
    f = getattr(namespace, function)
    assert f in pnp.DISPATCH or f in pnp.UFUNCS, f"np.{name}"


# ---------------------------------------------------- jit and vmap, on a sample

JIT_VMAP_SAMPLE = [
    "diff-n-axis-prepend", "gradient-coordinates-edge2", "trapezoid-x", "interp",
    "interp-period", "convolve", "correlate-full", "cross", "unwrap", "cumulative_sum",
    "median-axis-keepdims", "quantile-traced-q", "quantile-midpoint", "quantile-inverted_cdf",
    "nanmedian", "nanvar", "nanmax", "cov-weights", "corrcoef", "polyval", "polyfit", "vander",
    "polymul", "linspace-arrays-axis", "geomspace", "meshgrid", "pad-reflect", "pad-linear_ramp",
    "pad-median", "insert", "delete", "select", "choose", "rot90-1", "block", "vecdot", "matvec",
    "einsum-operand-lists", "partition", "apply_along_axis", "resize", "kron-scalar"]


def _total(out):
    """The sum of every element of a (tuple of) results, as one traced scalar."""
    leaves = out if isinstance(out, (tuple, list)) else (out,)
    return sum(np.sum(leaf) for leaf in leaves)


@pytest.mark.parametrize("name", JIT_VMAP_SAMPLE)
def test_jit_and_vmap_of_a_sample(name):
    """Staged and compiled, the function and its gradient equal the eager ones; batched by
    vmap (over its first argument), it equals a loop."""
    row = BY_NAME[name]
    args = row.make(Draw(name, np.float64))
    assert_tree_equal(pullback.jit(row.np_fn)(*args), row.np_fn(*args), 1e-12)
    gradient = pullback.grad(lambda *a: _total(row.np_fn(*a)))
    np.testing.assert_allclose(pullback.jit(gradient)(*args), gradient(*args), rtol=1e-10,
                               atol=1e-12)
    batch = np.stack([args[0] * (1.0 + 0.01 * k) for k in range(3)])
    batched = pullback.vmap(lambda first: row.np_fn(first, *args[1:]))(batch)
    loop = [row.np_fn(first, *args[1:]) for first in batch]
    if isinstance(loop[0], (tuple, list)):
        for k, part in enumerate(batched):
            assert_tree_equal(part, np.stack([out[k] for out in loop]), 1e-12)
    else:
        assert_tree_equal(batched, np.stack(loop), 1e-12)


HESSIAN_SAMPLE = ["gradient-coordinates", "interp", "convolve", "cross", "quantile-traced-q",
                  "nanvar", "cov-weights", "corrcoef", "polyfit", "geomspace", "pad-linear_ramp",
                  "choose", "apply_along_axis"]


@pytest.mark.parametrize("name", HESSIAN_SAMPLE)
def test_hessian_modes_agree_on_a_sample(name):
    """The four Hessian modes agree on a smooth scalar function of the row's first argument."""
    row = BY_NAME[name]
    args = row.make(Draw(name, np.float64))

    def f(first):
        return _total(row.np_fn(first, *args[1:])) ** 2
    hessians = [pullback.hessian(f, mode=mode)(args[0]) for mode in HESSIAN_MODES]
    for h in hessians[1:]:
        np.testing.assert_allclose(h, hessians[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn, fragment", [
    (lambda x: np.piecewise(x, [x > 0], [np.sin, np.cos]), "np.piecewise"),
    (lambda x: np.compress(x > 0, x), "np.compress"),
    (lambda x: np.extract(x > 0, x), "np.extract"),
    (lambda x: np.bincount(x.astype(int), x), "np.bincount"),
    (lambda x: np.linalg.lstsq(x[:, None], x)[0], "np.linalg.pinv"),
])
@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_functions_that_need_known_values_say_so_under_jit_and_vmap(fn, fragment, transform):
    """Their result's shape or placement depends on the values: staged or batched, a clear
    error names the function (eagerly, they work: see the coverage rows)."""
    x = np.array([0.5, -1.0, 2.0])
    run = pullback.jit(fn) if transform == "jit" else lambda x: pullback.vmap(fn)(np.stack([x, x]))
    with pytest.raises(ConcretizationError, match=fragment):
        run(x)
    assert trace_stack() == []


# ------------------------------------------------ shapes and axes of reductions

AXIS_REDUCTIONS = {
    "median": lambda m, x, axis, keepdims: m.median(x, axis=axis, keepdims=keepdims),
    "percentile": lambda m, x, axis, keepdims: m.percentile(x, [5, 60], axis, keepdims=keepdims,
                                                            method="weibull"),
    "quantile": lambda m, x, axis, keepdims: m.quantile(x, 0.3, axis, keepdims=keepdims),
    "quantile-weighted": lambda m, x, axis, keepdims: m.quantile(
        x, [0.2, 0.9], axis, method="inverted_cdf", keepdims=keepdims,
        weights=np.arange(x.size).reshape(x.shape) % 3 * 0.5 + 0.25),
    "nanmedian": lambda m, x, axis, keepdims: m.nanmedian(x, axis=axis, keepdims=keepdims),
    "nanquantile": lambda m, x, axis, keepdims: m.nanquantile(x, [0.5, 0.9], axis,
                                                              keepdims=keepdims),
    **{name: lambda m, x, axis, keepdims, name=name: getattr(m, name)(x, axis=axis,
                                                                      keepdims=keepdims)
       for name in ("nansum", "nanprod", "nanmean", "nanvar", "nanstd", "nanmax", "nanmin")},
}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(AXIS_REDUCTIONS)),
       array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), st.data())
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_reductions_over_any_axes(name, shape, data):
    """Values and shapes equal NumPy's for every axis (None, one, negative, a tuple) and
    keepdims, with NaNs anywhere for the nan-functions (all-NaN slices included); the
    derivatives pass check_grads where the result is finite."""
    n = len(shape)
    axis = data.draw(st.none() | st.integers(-n, n - 1) | st.sets(
        st.integers(0, n - 1), min_size=1).map(tuple))
    keepdims = data.draw(st.booleans())
    draw = Draw(f"{name}{shape}{axis}", np.float64)
    x = draw.grid(*shape)
    if name.startswith("nan"):
        x[draw.rng.random(shape) < 0.3] = np.nan
    fn = AXIS_REDUCTIONS[name]
    expected = fn(np, x, axis, keepdims)
    assert_tree_equal(fn(pnp, x, axis, keepdims), expected, 1e-12)
    assert_tree_equal(pullback.pullback(lambda x: fn(np, x, axis, keepdims), x)[0], expected,
                      1e-12)
    if np.all(np.isfinite(expected)):
        pullback.check_grads(lambda x: fn(np, x, axis, keepdims), (x,), order=1)


AXIS_SEQUENCES = {
    "diff": lambda m, x, axis, k: m.diff(x, n=k, axis=axis),
    "gradient": lambda m, x, axis, k: m.gradient(x, 0.5, axis=axis, edge_order=k),
    "trapezoid": lambda m, x, axis, k: m.trapezoid(x, dx=0.5 * k, axis=axis),
    "cumulative_sum": lambda m, x, axis, k: m.cumulative_sum(x, axis=axis,
                                                             include_initial=k == 2),
    "cumulative_prod": lambda m, x, axis, k: m.cumulative_prod(x, axis=axis,
                                                               include_initial=k == 1),
    "unwrap": lambda m, x, axis, k: m.unwrap(5.0 * x, axis=axis, discont=2.0 * k),
    "nancumsum": lambda m, x, axis, k: m.nancumsum(x, axis=axis),
}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(AXIS_SEQUENCES)),
       array_shapes(min_dims=1, max_dims=3, min_side=3, max_side=4), st.data())
def test_sequence_functions_along_any_axis(name, shape, data):
    """Values and shapes equal NumPy's along every axis (negative ones too), and the
    derivatives pass check_grads."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(1, 2))
    x = Draw(f"{name}{shape}{axis}{k}", np.float64).u(*shape)
    fn = AXIS_SEQUENCES[name]
    expected = fn(np, x, axis, k)
    assert_tree_equal(fn(pnp, x, axis, k), expected, 1e-12)
    assert_tree_equal(pullback.pullback(lambda x: fn(np, x, axis, k), x)[0], expected, 1e-12)
    pullback.check_grads(lambda x: fn(np, x, axis, k), (x,), order=1)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_convolve_gathers_its_windows_in_blocks(monkeypatch, mode):
    """Long sequences are convolved a block of kernel taps at a time (bounded memory): the
    same values and derivatives as in one block."""
    from pullback.numpy import _calculus
    d = Draw(f"convolve-blocks-{mode}", np.float64)
    a, v = d.u(20), d.u(7)
    monkeypatch.setattr(_calculus, "WINDOW_ELEMENTS", 30)     # blocks of one or two taps
    for f in (lambda a, v: np.convolve(a, v, mode), lambda a, v: np.correlate(v, a, mode)):
        np.testing.assert_allclose(pullback.pullback(f, a, v)[0], f(a, v), rtol=1e-12)
        pullback.check_grads(f, (a, v), order=2)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_order_statistics_of_empty_arrays_are_as_in_numpy():
    """The median of nothing is NaN (of the reduced shape); a quantile of nothing raises."""
    x = np.zeros((0, 3))
    for f in (lambda x: np.median(x, axis=0), lambda x: np.nanmedian(x, keepdims=True)):
        np.testing.assert_array_equal(pullback.pullback(f, x)[0], f(x))
    with pytest.raises(IndexError, match="empty"):
        pullback.pullback(lambda x: np.quantile(x, 0.5), x)
    assert trace_stack() == []


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_reductions_of_all_nan_slices_are_nan_like_numpy():
    x = np.array([[np.nan, np.nan], [1.0, np.nan]])
    for name in ("nanmax", "nanmin", "nanmean", "nanvar", "nanmedian"):
        expected = getattr(np, name)(x, axis=1)
        np.testing.assert_array_equal(pullback.pullback(
            lambda x: getattr(np, name)(x, axis=1), x)[0], expected)
        gradient = pullback.grad(lambda x: getattr(np, name)(x, axis=1)[1])(x)
        assert np.array_equal(gradient, [[0.0, 0.0], [0.0 if name == "nanvar" else 1.0, 0.0]])
    np.testing.assert_array_equal(pullback.jit(lambda x: np.quantile(x, 0.5, axis=1))(x),
                                  [np.nan, np.nan])


# ------------------------------------------------- zero-derivative functions


class ZeroRow(NamedTuple):
    name: str
    fn: Callable           # (m, *args) -> array with zero derivative (float, int or bool)
    make: Callable


ZERO_DERIVATIVE = [
    ZeroRow("sign", lambda m, x: m.sign(x), lambda d: (d.away(3, 4),)),
    ZeroRow("floor", lambda m, x: m.floor(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("ceil", lambda m, x: m.ceil(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("trunc", lambda m, x: m.trunc(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("rint", lambda m, x: m.rint(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("round", lambda m, x: m.round(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("round-decimals", lambda m, x: m.round(x, 1), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("around", lambda m, x: m.around(x, 2), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("floor_divide", lambda m, x, y: m.floor_divide(x, y),
            lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(3, 4))),
    ZeroRow("x // y", lambda m, x, y: x // y, lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(3, 4))),
    ZeroRow("argmax", lambda m, x: m.argmax(x, axis=0), lambda d: (d.grid(3, 4),)),
    ZeroRow("argmin", lambda m, x: m.argmin(x), lambda d: (d.grid(3, 4),)),
    ZeroRow("argsort", lambda m, x: m.argsort(x, axis=0), lambda d: (d.grid(3, 4),)),
    ZeroRow(".argmax()", lambda m, x: x.argmax(), lambda d: (d.grid(3, 4),)),
    ZeroRow(".argsort()", lambda m, x: x.argsort(axis=None).reshape(3, 4),
            lambda d: (d.grid(3, 4),)),
    ZeroRow(".round()", lambda m, x: x.round(1), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("searchsorted", lambda m, x: m.searchsorted(m.sort(x[0]), x),
            lambda d: (d.grid(3, 4),)),
    ZeroRow(".searchsorted()", lambda m, x: m.sort(x[0]).searchsorted(x, side="right"),
            lambda d: (d.grid(3, 4),)),
    ZeroRow("argpartition", lambda m, x: m.argpartition(x, 1), lambda d: (d.grid(3, 4),)),
    ZeroRow(".argpartition()", lambda m, x: x.argpartition((0, 2), axis=0),
            lambda d: (d.grid(3, 4),)),
    ZeroRow("fix", lambda m, x: m.fix(x), lambda d: (d.u(3, 4, lo=-3, hi=3),)),
    ZeroRow("frexp-exponent", lambda m, x: m.frexp(x)[1], lambda d: (d.away(3, 4) * 7,)),
    ZeroRow("divmod-quotient", lambda m, x, y: m.divmod(x, y)[0],
            lambda d: (d.u(3, 4, lo=-3, hi=3), d.pos(3, 4))),
    ZeroRow("diff-of-booleans", lambda m, x: m.diff(x > 0, prepend=False),
            lambda d: (d.away(3, 4),)),
    ZeroRow("bincount", lambda m, x: m.bincount((x > 0).astype(int), minlength=2),
            lambda d: (d.away(2),)),
    ZeroRow("any", lambda m, x: m.any(x, axis=0), lambda d: (d.u(3, 4),)),
    ZeroRow(".all()", lambda m, x: x.all(axis=1, keepdims=True), lambda d: (d.u(3, 4),)),
    ZeroRow("less", lambda m, x, y: m.less(x, y), lambda d: (d.u(3, 4), d.u(4))),
    ZeroRow("less_equal", lambda m, x, y: m.less_equal(x, y), lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("greater", lambda m, x, y: m.greater(x, y), lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("greater_equal", lambda m, x, y: m.greater_equal(x, y), lambda d: (d.u(3, 4), d.u(4))),
    ZeroRow("equal", lambda m, x, y: m.equal(x, m.where(y > 0, x, y)),
            lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("not_equal", lambda m, x, y: m.not_equal(m.where(y > 0, x, y), x),
            lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("x < y", lambda m, x, y: x < y, lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("x >= 0.2", lambda m, x: x >= 0.2, lambda d: (d.u(3, 4),)),
    ZeroRow("x == x", lambda m, x: x == x, lambda d: (d.u(3, 4),)),
    ZeroRow("x != y", lambda m, x, y: x != y, lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("logical_and", lambda m, x, y: m.logical_and(x > 0, y > 0),
            lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("logical_or", lambda m, x, y: m.logical_or(x > 0, y > 0),
            lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("logical_not", lambda m, x: m.logical_not(x > 0), lambda d: (d.u(3, 4),)),
    ZeroRow("logical_xor", lambda m, x, y: m.logical_xor(x > 0, y),
            lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("logical-on-floats", lambda m, x, y: m.logical_or(m.floor(x), m.floor(y)),
            lambda d: (d.u(3, 4, lo=-1, hi=2), d.u(3, 4, lo=-1, hi=2))),
    ZeroRow("& | ~ ^", lambda m, x, y: ((x > 0) & (y < 0)) | ~(x > y) ^ (y > 0.5),
            lambda d: (d.u(3, 4), d.u(3, 4))),
    ZeroRow("isnan", lambda m, x: m.isnan(m.log(x)), lambda d: (d.u(3, 4),)),
    ZeroRow("isinf", lambda m, x: m.isinf(m.where(x > 0.5, np.inf, x)), lambda d: (d.u(3, 4),)),
    ZeroRow("isfinite", lambda m, x: m.isfinite(m.log(x)), lambda d: (d.u(3, 4),)),
]
ZERO_BY_NAME = {row.name: row for row in ZERO_DERIVATIVE}


@pytest.mark.parametrize("name", list(ZERO_BY_NAME))
@pytest.mark.parametrize("m", [np, pnp], ids=["np", "pnp"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_zero_derivative(name, m):
    """Values equal NumPy's; the derivative is exactly zero; the result works inside a
    differentiated function (as a factor, or as the condition of a `where`)."""
    row = ZERO_BY_NAME[name]
    args = row.make(Draw(name, np.float64))
    expected = row.fn(np, *args)
    assert_tree_equal(row.fn(pnp, *args), expected, 0)
    for value in traced_value(lambda *a: row.fn(m, *a), args):
        assert_tree_equal(value, expected, 0)

    def combine(value, x):
        if value.dtype == bool:
            return m.sum(m.where(value, x, 2.0 * x) * 3.0)
        return m.sum(value * x)

    def uses_it(*a):
        return combine(row.fn(m, *a), a[0])
    first = pullback.grad(lambda x: combine(expected, x))(args[0])
    if expected.dtype != bool:
        _, back = pullback.pullback(lambda *a: row.fn(m, *a), *args)
        for cotangent in back(np.ones_like(expected)):
            assert np.array_equal(cotangent, np.zeros_like(cotangent))
        _, tangent = pullback.pushforward(lambda *a: row.fn(m, *a), args,
                                          tuple(np.ones_like(a) for a in args))
        assert np.array_equal(tangent, np.zeros_like(expected))

    gradient = pullback.grad(uses_it, argnums=tuple(range(len(args))))(*args)
    assert np.array_equal(gradient[0], first)
    for g in gradient[1:]:
        assert np.array_equal(g, np.zeros_like(g))
    pullback.check_grads(uses_it, args, order=2)


def test_integer_array_gradients_accumulate():
    x = np.array([0.3, -1.2, 2.0])
    for m in (np, pnp):
        assert np.array_equal(pullback.grad(lambda x: m.sum(x[[0, 0, 1]]))(x), [2.0, 1.0, 0.0])
        assert np.array_equal(pullback.grad(lambda x: m.sum(m.take(x, [2, 2, 2])))(x),
                              [0.0, 0.0, 3.0])


def test_at_differentiates_both_arguments():
    x, v = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])
    g_x, g_v = pullback.grad(lambda x, v: pnp.sum(pnp.at(x)[[0, 2]].set(v) * [1.0, 2.0, 3.0]),
                             argnums=(0, 1))(x, v)
    assert np.array_equal(g_x, [0.0, 2.0, 0.0]) and np.array_equal(g_v, [1.0, 3.0])
    g_x, g_v = pullback.grad(lambda x, v: pnp.sum(pnp.at(x)[[0, 0]].add(v) ** 2),
                             argnums=(0, 1))(x, v)
    assert np.array_equal(g_x, [62.0, 4.0, 6.0]) and np.array_equal(g_v, [62.0, 62.0])


def test_prod_with_zeros_is_exact():
    """The gradient of prod at a point with zeros: the product of the other entries."""
    x = np.array([2.0, 0.0, 3.0, -1.5])
    for m in (np, pnp):
        assert np.array_equal(pullback.grad(m.prod)(x), [0.0, -9.0, 0.0, 0.0])
        hessian = pullback.jacfwd(pullback.grad(m.prod))(x)
        expected = np.array([[0.0, -4.5, 0.0, 0.0], [-4.5, 0.0, -3.0, 6.0],
                             [0.0, -3.0, 0.0, 0.0], [0.0, 6.0, 0.0, 0.0]])
        np.testing.assert_allclose(hessian, expected, rtol=1e-15)
        two = np.array([0.0, 2.0, 0.0])
        assert np.array_equal(pullback.grad(m.prod)(two), [0.0, 0.0, 0.0])
        np.testing.assert_allclose(pullback.jacrev(pullback.grad(m.prod))(two),
                                   [[0, 0, 2], [0, 0, 0], [2, 0, 0]], rtol=1e-15)


def test_attributes_of_tracers():
    x = np.arange(12.0).reshape(3, 4)
    seen = {}

    def f(x):
        seen.update(shape=x.shape, ndim=x.ndim, size=x.size, dtype=x.dtype, len=len(x),
                    np_shape=np.shape(x), np_ndim=np.ndim(x), np_size=np.size(x),
                    T=x.T.shape, rows=len(list(x)))
        return x.sum()
    for transform in (pullback.grad, pullback.jacfwd):
        seen.clear()
        transform(f)(x)
        assert seen == dict(shape=(3, 4), ndim=2, size=12, dtype=np.float64, len=3,
                            np_shape=(3, 4), np_ndim=2, np_size=12, T=(4, 3), rows=3)


# ----------------------------------------------------------------------- errors


class ErrorRow(NamedTuple):
    name: str
    fn: Callable
    error: type
    match: str


ERRORS = [
    ErrorRow("np.histogram", lambda x: np.histogram(x), UnsupportedFunctionError,
             r"numpy\.histogram"),
    ErrorRow("unsupported ufunc", lambda x: np.spacing(x), UnsupportedFunctionError, "spacing"),
    ErrorRow("unsupported scipy ufunc", lambda x: sp.hyp2f1(1.0, 2.0, 3.0, x),
             UnsupportedFunctionError, "hyp2f1"),
    ErrorRow("unsupported ufunc method", lambda x: np.add.reduceat(x, [0, 2]),
             UnsupportedFunctionError, r"add\.reduceat"),
    ErrorRow("unsupported option", lambda x: np.pad(x, 1, mode="reflect", reflect_type="odd"),
             UnsupportedFunctionError, "odd"),
    ErrorRow("x.partition(k)", lambda x: x.partition(1), InPlaceMutationError, "np.partition"),
    ErrorRow("x.flat[i] = v", lambda x: x.flat.__setitem__(0, 1.0), InPlaceMutationError,
             r"at\(x\.ravel"),
    ErrorRow("ufunc out=", lambda x: np.sin(x, out=np.empty(3)), InPlaceMutationError, "out="),
    ErrorRow("ufunc out= tracer", lambda x: np.multiply(x, 2.0, out=x), InPlaceMutationError,
             "out="),
    ErrorRow("sum out=", lambda x: np.sum(x, out=np.empty(())), InPlaceMutationError, "out="),
    ErrorRow("cumsum out=", lambda x: np.cumsum(x, out=np.empty(3)), InPlaceMutationError, "out="),
    ErrorRow("clip out=", lambda x: np.clip(x, 0, 1, out=np.empty(3)), InPlaceMutationError,
             "out="),
    ErrorRow("dot out=", lambda x: np.dot(x, x, out=np.empty(())), InPlaceMutationError, "out="),
    ErrorRow("np.add.at", lambda x: np.add.at(x, [0, 0], 1.0), InPlaceMutationError, r"add\.at"),
    ErrorRow("x[0] = 1.0", lambda x: x.__setitem__(0, 1.0), InPlaceMutationError, "at\\(x\\)"),
    ErrorRow("x.sort()", lambda x: x.sort(), InPlaceMutationError, "np.sort"),
    ErrorRow("x.fill(v)", lambda x: x.fill(1.0), InPlaceMutationError, "full_like"),
    ErrorRow("x.put(i, v)", lambda x: x.put([0], 1.0), InPlaceMutationError, r"at\(x\.ravel"),
    ErrorRow("at(x)[0] = v", lambda x: pnp.at(x).__setitem__(0, 1.0), InPlaceMutationError, "set"),
    ErrorRow("ndarray.dot(x)", lambda x: A23.dot(x), ArrayConversionError, "np.stack"),
    ErrorRow("float(x)", lambda x: float(x[0]), ConcretizationError, "float"),
    ErrorRow("np.asarray(x)", lambda x: np.asarray(x), ArrayConversionError, "pullback.numpy"),
    # scipy.special.logsumexp is not a ufunc and converts its input: it cannot dispatch.
    ErrorRow("scipy logsumexp", lambda x: sp.logsumexp(x), ArrayConversionError,
             r"pullback\.scipy\.special\.logsumexp"),
]
ERROR_BY_NAME = {row.name: row for row in ERRORS}


@pytest.mark.parametrize("name", list(ERROR_BY_NAME))
@pytest.mark.parametrize("transform", ["grad", "pushforward"])
def test_errors(name, transform):
    row = ERROR_BY_NAME[name]
    x = np.array([0.5, 1.0, 2.0])

    def f(x):
        return np.sum(row.fn(x))
    with pytest.raises(row.error, match=row.match) as info:
        if transform == "grad":
            pullback.grad(f)(x)
        else:
            pullback.pushforward(f, (x,), (x,))
    assert isinstance(info.value, PullbackError)
    assert trace_stack() == []


def test_astype_keeps_or_drops_the_derivative():
    x = np.array([0.5, -1.25, 2.0])
    for m in (np, pnp):
        g = pullback.grad(lambda x: m.sum(x.astype(np.float32)))(x)
        assert g.dtype == np.float64 and np.array_equal(g, np.ones(3))
        g = pullback.grad(lambda x: m.sum(x.astype(np.float64)), )(x.astype(np.float32))
        assert g.dtype == np.float32 and np.array_equal(g, np.ones(3))
        g = pullback.grad(lambda x: m.sum(x.astype(int) * x))(x)
        assert np.array_equal(g, x.astype(int).astype(float))


def test_truth_value_of_tracers_is_concrete():
    """`if x:` works on the concrete value, and is ambiguous for several elements, as in NumPy."""
    def f(x):
        return x * 2.0 if x else x - 1.0
    for transform in (pullback.grad, pullback.jacfwd):
        assert transform(f)(np.array(1.5)) == 2.0
        assert transform(f)(np.array(0.0)) == 1.0
        with pytest.raises(ValueError, match="ambiguous"):
            transform(lambda x: x.sum() if x else x[0])(np.ones(2))
