"""SciPy optimisers from one scalar function: value, gradient and Hessian-vector products."""
from typing import Callable

import numpy as np

from .operators import DEFAULT_HVP_MODE, make_hvp, value_and_grad


def newton_callables(f: Callable, mode: str = DEFAULT_HVP_MODE) -> dict:
    """`fun`, `jac` and `hessp` for `scipy.optimize.minimize`, built from `f` alone.

    The value and the gradient at a point are computed together, once; all
    Hessian-vector products at a point share one `make_hvp` recording (Newton-CG
    and the trust-region Krylov methods ask for many at the same point).

    >>> import numpy as np, scipy.optimize
    >>> rosen = lambda x: np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    >>> result = scipy.optimize.minimize(x0=np.zeros(5), method="trust-krylov",
    ...                                  **newton_callables(rosen))
    >>> bool(np.allclose(result.x, 1.0, atol=1e-6))
    True
    """
    value_and_gradient = value_and_grad(f)
    cache = {}

    def at(x):
        key = np.asarray(x).tobytes()
        if cache.get("key") != key:
            cache.clear()
            cache["key"] = key
            cache["value"], cache["grad"] = value_and_gradient(np.array(x, dtype=float))
        return cache

    def fun(x):
        return float(at(x)["value"])

    def jac(x):
        return at(x)["grad"]

    def hessp(x, p):
        entry = at(x)
        if "hvp" not in entry:
            entry["hvp"] = make_hvp(f, np.array(x, dtype=float), mode)
        return entry["hvp"](np.asarray(p, dtype=float))

    return {"fun": fun, "jac": jac, "hessp": hessp}
