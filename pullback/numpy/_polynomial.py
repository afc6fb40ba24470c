"""NumPy's polynomial functions (coefficients highest power first): polyval, polyder,
polyint, polyadd, polysub, polymul, vander, polyfit, roots.

Composites of arithmetic, `convolve`, `cumprod` and `pinv`/`lstsq`, differentiable in the
coefficients and the points alike. Unlike NumPy's `polymul`, leading zero coefficients
are kept (the polynomial is the same; NumPy's result is shorter by as many zeros).
"""
import numpy as np

from ..core.engine import Tracer
from ..errors import unsupported
from ..primitives import elementwise as E
from . import linalg
from ._calculus import convolve
from ._common import ndim
from ._reductions import cumprod, sum
from ._shape import (array_operand, as_floating, astype, broadcast_to, concatenate, flip, operand,
                     pad_constant, reshape, shape)


def _coefficients(p):
    p = array_operand(p)
    if ndim(p) == 0:
        p = reshape(p, (1,))
    if ndim(p) != 1:
        raise ValueError("Polynomial must be 1d only.")
    return p


def polyval(p, x):
    """`np.polyval`: the polynomial with coefficients p at x (Horner's scheme, as NumPy).

    >>> import numpy as np, pullback
    >>> pullback.grad(lambda x: np.polyval([1.0, 0.0, -2.0], x))(3.0)
    np.float64(6.0)
    """
    p, x = _coefficients(p), array_operand(x)
    y = np.zeros(shape(x), x.dtype)
    for i in range(shape(p)[0]):
        y = y * x + p[i]
    return y


def polyder(p, m=1):
    """`np.polyder`: the m-th derivative's coefficients."""
    if int(m) < 0:
        raise ValueError("Order of derivative must be positive (see polyint)")
    p = _coefficients(p)
    for _ in range(int(m)):
        n = shape(p)[0] - 1
        p = p[:-1] * np.arange(n, 0, -1)
    return p


def polyint(p, m=1, k=None):
    """`np.polyint`: the m-th antiderivative, with integration constants k (may be traced)."""
    m = int(m)
    if m < 0:
        raise ValueError("Order of integral must be positive (see polyder)")
    constants = array_operand(0.0 if k is None else k)
    if ndim(constants) == 0:
        constants = broadcast_to(constants, (m,))
    if shape(constants)[0] < m:
        raise ValueError("k must be a scalar or a rank-1 array of length 1 or >m.")
    p = _coefficients(p)
    for i in range(m):
        p = concatenate([p / np.arange(shape(p)[0], 0, -1), reshape(constants[i], (1,))])
    return p


def _aligned(a1, a2):
    """The two coefficient arrays padded with leading zeros to one length."""
    a1, a2 = _coefficients(a1), _coefficients(a2)
    n = max(shape(a1)[0], shape(a2)[0])
    return pad_constant(a1, (n - shape(a1)[0], 0)), pad_constant(a2, (n - shape(a2)[0], 0))


def polyadd(a1, a2):
    """`np.polyadd`."""
    a1, a2 = _aligned(a1, a2)
    return a1 + a2


def polysub(a1, a2):
    """`np.polysub`."""
    a1, a2 = _aligned(a1, a2)
    return a1 - a2


def polymul(a1, a2):
    """`np.polymul`: the convolution of the coefficients."""
    return convolve(_coefficients(a1), _coefficients(a2))


def vander(x, N=None, increasing=False):
    """`np.vander`: columns of powers of x, by repeated multiplication (as NumPy)."""
    x = operand(x)
    if ndim(x) != 1:
        raise ValueError("x must be a one-dimensional array or sequence.")
    x = astype(x, np.promote_types(getattr(x, "dtype", np.float64), int))
    n = shape(x)[0]
    N = n if N is None else int(N)
    columns = [np.ones((n, min(N, 1)), x.dtype)]
    if N > 1:
        columns.append(cumprod(broadcast_to(reshape(x, (n, 1)), (n, N - 1)), axis=1))
    powers = concatenate(columns, axis=1)
    return powers if increasing else flip(powers, axis=1)


def polyfit(x, y, deg, rcond=None, full=False, w=None, cov=False):
    """`np.polyfit`: least-squares coefficients (NumPy's column scaling, then the
    pseudo-inverse), differentiable in x, y and w. With `full=True` or `cov=True` the rank
    is needed (`lstsq`), so the values must be known (not under `jit` or `vmap`)."""
    deg = int(deg)
    if deg < 0:
        raise ValueError("expected deg >= 0")
    x, y = as_floating(x), as_floating(y)
    if ndim(x) != 1:
        raise TypeError("expected 1D vector for x")
    if ndim(y) not in (1, 2):
        raise TypeError("expected 1D or 2D array for y")
    if shape(x)[0] != shape(y)[0]:
        raise TypeError("expected x and y to have same length")
    order = deg + 1
    if rcond is None:
        rcond = shape(x)[0] * np.finfo(x.dtype).eps
    lhs, rhs = vander(x, order), y
    if w is not None:
        w = operand(w)
        if ndim(w) != 1 or shape(w)[0] != shape(y)[0]:
            raise TypeError("expected a 1-d weight vector of the length of y")
        lhs = lhs * reshape(w, (-1, 1))
        rhs = rhs * (reshape(w, (-1, 1)) if ndim(y) == 2 else w)
    scale = E.sqrt(sum(lhs * lhs, axis=0))
    lhs = lhs / scale
    if not (full or cov):
        c = linalg.pinv(lhs, rcond=rcond) @ rhs
        return c / (reshape(scale, (-1, 1)) if ndim(y) == 2 else scale)
    c, residuals, rank, s = linalg.lstsq(lhs, rhs, rcond)
    c = c / (reshape(scale, (-1, 1)) if ndim(y) == 2 else scale)
    if full:
        return c, residuals, rank, s, rcond
    base = linalg.inv(lhs.T @ lhs) / (reshape(scale, (-1, 1)) * reshape(scale, (1, -1)))
    if cov == "unscaled":
        factor = 1.0
    else:
        if shape(x)[0] <= order:
            raise ValueError("the number of data points must exceed order to scale the "
                             "covariance matrix")
        factor = residuals / (shape(x)[0] - order)
    if ndim(y) == 1:
        return c, base * factor
    return c, reshape(base, shape(base) + (1,)) * factor


def roots(p):
    """`np.roots`: the eigenvalues of the companion matrix (`np.linalg.eigvals`), so always
    complex, as JAX's; derivatives need distinct roots. Which coefficients are zero is read
    from their values (known eagerly). Leading zeros of traced coefficients are refused (a
    root would come from infinity); a zero constant term's root at 0 moves with it, so then
    the companion matrix keeps it and the roots are put in NumPy's order.

    >>> import pullback, numpy as np
    >>> pullback.grad(lambda p: np.roots(p).real.max())(np.array([1.0, -3.0, 2.0]))
    array([-4., -2., -1.])
    """
    p = _coefficients(p)
    traced = isinstance(p, Tracer)
    known = p._known_value("np.roots (which coefficients are zero)") if traced else np.asarray(p)
    nonzero = np.flatnonzero(known)
    if nonzero.size == 0:
        return np.array([])
    trailing = shape(p)[0] - nonzero[-1] - 1
    if traced and (nonzero[0] > 0 or trailing > 1):
        raise unsupported("numpy.roots", "traced coefficients with a zero leading coefficient "
                          "(a root comes from infinity) or two zero trailing ones (a multiple "
                          "root at 0): the roots have no derivative there; drop those "
                          "coefficients")
    if not traced:
        p = p[int(nonzero[0]):int(nonzero[-1]) + 1]
    n = shape(p)[0]
    if n < 2:
        return np.zeros(trailing, np.result_type(getattr(p, "dtype", np.float64), np.complex64))
    companion = concatenate([reshape(-p[1:] / p[0], (1, n - 1)),
                             np.eye(n - 2, n - 1, dtype=p.dtype)], axis=0)
    found = linalg.eigvals(companion)
    if not traced:
        return concatenate([found, np.zeros(trailing, found.dtype)])
    if trailing:             # NumPy's order: the other roots (its order), then 0
        wanted = np.roots(known)
        order = np.argmin(np.abs(found._known_value("np.roots")[None, :] - wanted[:, None]), 1)
        found = found[order]
    return found
