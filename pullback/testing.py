"""Public testing utilities: check derivatives against finite differences and across modes.

`check_grads` verifies the pushforward against central differences and the
pullback through the dot-product identity `<u, J v> = <J^T u, v>` (no Jacobian
is formed), then checks the derivative functions themselves, recursively, up to
the requested order. Complex inputs and outputs are checked along directions with
random real and imaginary parts, under the pairing `<a, b> = Re(sum(a * b))` of
JAX's convention (core/numbers.py).
"""
from typing import Callable, Sequence

import numpy as np

from .transforms.forward import pushforward
from .transforms.reverse import pullback
from .tree import flatten, unflatten

_TOLERANCE = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 2e-3, np.dtype(np.float16): 5e-2,
              np.dtype(np.complex128): 1e-5, np.dtype(np.complex64): 2e-3}


def check_grads(f: Callable, args: Sequence, order: int = 2,
                modes: Sequence[str] = ("forward", "reverse"), *, eps: float = 1e-6,
                tol: float | None = None, seed: int | None = None) -> None:
    """Raise AssertionError unless f's derivatives match finite differences up to `order`.

    `args` is a tuple of arguments (pytrees of real or complex floating-point arrays).
    The finite differences are taken in float64 (complex128) whatever the input dtype,
    and the tolerance
    follows the lowest input precision unless `tol` is given. Derivatives must
    also keep the dtype of the values they belong to.

    >>> import numpy as np
    >>> check_grads(np.sin, (np.array([0.5, 1.0]),), order=2)
    """
    for mode in modes:
        if mode not in ("forward", "reverse"):
            raise ValueError(f"modes must be 'forward' and/or 'reverse', got {mode!r}")
    leaves, treedef = flatten(tuple(args))
    leaves = [np.asarray(x) if not isinstance(x, np.ndarray) else x for x in leaves]
    if tol is None:
        tol = max(_TOLERANCE.get(x.dtype, 1e-5) for x in leaves) if leaves else 1e-5

    def f_flat(*xs):
        outs = flatten(f(*unflatten(treedef, xs)))[0]
        return tuple(o for o in outs if np.dtype(getattr(o, "dtype", float)).kind in "fc")

    # Directions from a generator of their own, so that they never coincide with inputs
    # a caller drew from a small seed.
    rng = np.random.default_rng([0x5EED, *(x.size for x in leaves)] if seed is None else seed)
    _check(f_flat, leaves, order, tuple(modes), eps, tol, rng, "f")


def _random_like(rng, xs):
    def draw(x):
        dtype = np.asarray(x).dtype
        v = rng.standard_normal(np.shape(x))
        if dtype.kind == "c":
            v = v + 1j * rng.standard_normal(np.shape(x))
        return v.astype(dtype)
    return [draw(x) for x in xs]


def _wide(x):
    """x in float64, or complex128 for complex values."""
    x = np.asarray(x)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _pairing(a, b):
    """<a, b> = Re(sum(a * b)), the pairing of tangents and cotangents (core/numbers.py)."""
    return float(np.sum(_wide(a) * _wide(b)).real)


def _finite_difference(f_flat, xs, vs, eps):
    """Central difference of f_flat along vs, evaluated in float64 (complex128)."""
    plus = f_flat(*[_wide(x) + eps * _wide(v) for x, v in zip(xs, vs)])
    minus = f_flat(*[_wide(x) - eps * _wide(v) for x, v in zip(xs, vs)])
    return [(_wide(p) - _wide(m)) / (2 * eps) for p, m in zip(plus, minus)]


def _assert_close(analytic, numeric, tol, what):
    analytic = _wide(analytic)
    numeric = _wide(numeric)
    scale = 1.0 + np.max(np.abs(numeric), initial=0.0)
    error = np.max(np.abs(analytic - numeric), initial=0.0)
    if not error <= tol * scale:
        raise AssertionError(f"{what}: analytic and finite-difference derivatives differ by "
                             f"{error:.3g} (tolerance {tol * scale:.3g}).\n"
                             f"analytic:  {analytic}\nnumerical: {numeric}")


def _assert_dtype(values, references, what):
    for v, r in zip(values, references):
        if np.asarray(v).dtype != np.asarray(r).dtype:
            raise AssertionError(f"{what} has dtype {np.asarray(v).dtype}, expected "
                                 f"{np.asarray(r).dtype} (the dtype of the value it belongs to)")


def _check(f_flat, xs, order, modes, eps, tol, rng, name):
    vs = _random_like(rng, xs)
    numeric = _finite_difference(f_flat, xs, vs, eps)
    n = len(xs)
    if "forward" in modes:
        out, tangent = pushforward(f_flat, tuple(xs), tuple(vs))
        _assert_dtype(tangent, out, f"the tangent of {name}")
        for k, (t, num) in enumerate(zip(tangent, numeric)):
            _assert_close(t, num, tol, f"pushforward of {name} (output {k})")
        if order > 1:
            def jvp_of_f(*xs_and_vs):
                return pushforward(f_flat, tuple(xs_and_vs[:n]), tuple(xs_and_vs[n:]))[1]
            _check(jvp_of_f, xs + vs, order - 1, modes, eps, tol, rng, f"jvp({name})")
    if "reverse" in modes:
        out, back = pullback(f_flat, *xs)
        us = _random_like(rng, out)
        cts = back(tuple(us))
        _assert_dtype(cts, xs, f"the cotangent of {name}'s inputs")
        lhs = sum(_pairing(u, num) for u, num in zip(us, numeric))
        rhs = sum(_pairing(c, v) for c, v in zip(cts, vs))
        _assert_close(rhs, lhs, tol, f"pullback of {name} (<J^T u, v> vs <u, J v>)")
        if order > 1:
            def vjp_of_f(*xs_and_us):
                out, back = pullback(f_flat, *xs_and_us[:n])
                # Finite differences run in float64: give each cotangent its output's dtype.
                return back(tuple(u if u.dtype == o.dtype else u.astype(o.dtype)
                                  for u, o in zip(xs_and_us[n:], out)))
            _check(vjp_of_f, xs + us, order - 1, modes, eps, tol, rng, f"vjp({name})")
