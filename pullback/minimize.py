"""SciPy optimisers from one scalar function: value, gradient and Hessian-vector products."""
from typing import Callable

import numpy as np

from .operators import DEFAULT_HVP_MODE, HESSIAN_MODES, check_mode, make_hvp, value_and_grad


def newton_callables(f: Callable, mode: str = DEFAULT_HVP_MODE) -> dict:
    """`fun`, `jac` and `hessp` for `scipy.optimize.minimize`, built from `f(x, *args)` alone.

    `fun` returns the value and the gradient together (one reverse pass; `jac=True`
    tells SciPy so). All Hessian-vector products at a point share one `make_hvp`
    recording (Newton-CG and the trust-region Krylov methods ask for many at the same
    point); it is dropped whenever `fun` runs, so it never outlives a change of `x` or
    of the extra arguments `minimize(args=...)` passes to all three.

    >>> import numpy as np, scipy.optimize
    >>> rosen = lambda x: np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    >>> result = scipy.optimize.minimize(x0=np.zeros(5), method="trust-krylov",
    ...                                  **newton_callables(rosen))
    >>> bool(np.allclose(result.x, 1.0, atol=1e-6))
    True
    """
    check_mode(mode, HESSIAN_MODES, "newton_callables")   # now, not at SciPy's first hessp
    value_and_gradient = value_and_grad(f)
    recording = {}

    def fun(x, *args):
        recording.clear()
        value, gradient = value_and_gradient(np.array(x, dtype=float), *args)
        return float(value), gradient

    def hessp(x, p, *args):
        x = np.array(x, dtype=float)
        key = (x.tobytes(), tuple(map(id, args)))
        if recording.get("key") != key:
            recording.clear()
            recording["key"] = key
            recording["hvp"] = make_hvp(lambda x: f(x, *args), x, mode)
        return recording["hvp"](np.asarray(p, dtype=float))

    return {"fun": fun, "jac": True, "hessp": hessp}
