"""pullback.scipy.special: scipy.special's functions with SciPy's signatures, differentiable.

The ufuncs (gamma, loggamma, beta, gammainc, erfinv, iv, jv, kv, yn, spence, expn,
boxcox, ...) are primitives (pullback/primitives/special.py) and also work as SciPy's own
on traced values. The functions that are not ufuncs (logsumexp, softmax, log_softmax,
softplus, zeta, polygamma, multigammaln) are composites here; SciPy's own would convert
their inputs with `np.asarray`. Derivatives with respect to an argument that has no
closed form (the order v of a Bessel function, a and b of the incomplete gamma and
beta functions, the exponent of zeta) raise `UnsupportedFunctionError`.

>>> import numpy as np, pullback
>>> from pullback.scipy import special
>>> float(pullback.grad(lambda x: special.gammaln(x))(1.0))     # digamma(1)
-0.5772156649015329
"""
import numbers

import numpy as _np
from ..primitives import scipy_special as _sp

from ..core.engine import Tracer
from ..errors import unsupported
from ..numpy import UFUNCS
from ..numpy._elementwise import sinc  # noqa: F401  (scipy.special.sinc is NumPy's)
from ..numpy._reductions import logsumexp
from ..numpy._shape import broadcast_to, operand, shape
from ..primitives import elementwise as _E
from ..primitives import special as _S
from ..primitives.structural import convert

# Every scipy.special ufunc pullback answers for, under its SciPy names (psi and digamma).
_UFUNC_FUNCTIONS = {name: UFUNCS[f] for name, f in vars(_sp).items()
                    if isinstance(f, _np.ufunc) and f in UFUNCS and not name.startswith("_")}
globals().update(_UFUNC_FUNCTIONS)


def zeta(x, q=None, out=None):
    """`scipy.special.zeta`: Riemann's zeta(x), or Hurwitz's zeta(x, q) (differentiable in q)."""
    if out is not None:
        raise unsupported("scipy.special.zeta", "out= writes in place")
    if q is None:
        return _S.riemann_zeta(operand(x))
    return _S.hurwitz_zeta(operand(x), operand(q))


def polygamma(n, x):
    """`scipy.special.polygamma`: the n-th derivative of digamma (n: constant integers), in
    float64 as SciPy computes it."""
    if isinstance(n, Tracer):
        raise unsupported("scipy.special.polygamma", "the order n must be a constant")
    x = operand(x)
    orders = _np.asarray(n)
    if orders.dtype.kind not in "iu" and not _np.all(orders == _np.floor(orders)):
        raise ValueError("polygamma: the order n must be integers")
    result = None
    for k in _np.unique(orders).tolist():
        value = _E.digamma(x) if k == 0 else _E.polygamma(x, n=int(k))
        result = value if result is None else _E.where(orders == k, value, result)
    if result.dtype != _np.float64:
        result = convert(result, dtype=_np.dtype(_np.float64))
    return broadcast_to(result, _np.broadcast_shapes(orders.shape, shape(result)))


def multigammaln(a, d):
    """`scipy.special.multigammaln`: log of the multivariate gamma function of dimension d.
    NaN where a <= (d - 1) / 2 (SciPy raises there when it can see the values)."""
    if not isinstance(d, numbers.Integral) or d < 1:
        raise ValueError("d should be a positive integer (dimension)")
    a = operand(a)
    total = d * (d - 1) * 0.25 * _np.log(_np.pi)
    for j in range(d):
        total = total + _E.gammaln(a - 0.5 * j)
    return _E.where(a > 0.5 * (d - 1), total, _np.nan)


def softmax(x, axis=None):
    """`scipy.special.softmax`: exp(x) / sum(exp(x)) along `axis` (all axes by default)."""
    x = operand(x)
    return _E.exp(x - logsumexp(x, axis=axis, keepdims=True))


def log_softmax(x, axis=None):
    """`scipy.special.log_softmax`: x - logsumexp(x) along `axis` (all axes by default)."""
    x = operand(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def softplus(x, **kwargs):
    """`scipy.special.softplus`: log(1 + exp(x)), computed stably."""
    return _np.logaddexp(0.0, x, **kwargs)


__all__ = sorted([*_UFUNC_FUNCTIONS, "zeta", "polygamma", "multigammaln", "softmax",
                  "log_softmax", "softplus", "logsumexp", "sinc"])
