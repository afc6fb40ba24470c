"""`numpy.fft`, differentiable, with NumPy's signatures (`n`/`s`, `axis`/`axes`, `norm`).

Every transform is one of three primitives (primitives/fft.py) after the input is padded
with zeros or cropped to the requested lengths, as NumPy does: the multi-axis real
transforms are a real transform along the last axis and complex ones along the others,
and hfft/ihfft are irfft/rfft of conjugates in the opposite direction. fftfreq and
rfftfreq are constants (divided by a traced `d` if it is one).
"""
import operator

import numpy as np

from ..core.engine import Tracer
from ..errors import ComplexValueError
from ..primitives import fft as F
from ..primitives import structural as S
from ._common import ndim, refuse
from ._elementwise import conjugate
from ._shape import astype, operand, roll

__all__ = ["fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn",
           "rfftn", "irfftn", "hfft", "ihfft", "fftshift", "ifftshift", "fftfreq", "rfftfreq"]


def _norm(norm):
    if norm is None:
        return "backward"
    if norm not in F.OPPOSITE_NORM:
        raise ValueError(f'Invalid norm value {norm!r}; should be "backward", "ortho" or '
                         '"forward".')
    return norm


def _array(a):
    x = operand(a)
    return x if hasattr(x, "dtype") else np.asarray(x)


def _complex(a):
    """a as complex values (real ones of the same precision; integers as complex128)."""
    x = _array(a)
    kind = np.dtype(x.dtype).kind
    if kind == "c":
        return x
    return astype(x, np.result_type(x.dtype, np.complex64) if kind == "f" else np.complex128)


def _real(a, name):
    """a as real floating-point values (integers as float64); complex values are an error
    (a TypeError), as in NumPy."""
    x = _array(a)
    kind = np.dtype(x.dtype).kind
    if kind == "c":
        raise ComplexValueError(f"numpy.fft.{name} takes real input (NumPy refuses complex "
                                "values too); use numpy.fft.fft for complex values, or pass "
                                "np.real(x).")
    return x if kind == "f" else astype(x, np.float64)


def _axis(axis, rank):
    """A valid axis as a negative number (counted from the end)."""
    axis = operator.index(axis)
    if not -rank <= axis < rank:
        raise np.exceptions.AxisError(axis, rank)
    return axis - rank if axis >= 0 else axis


def _resized(x, axis, n):
    """x padded with zeros or cropped along `axis` (negative) to length n, as NumPy does."""
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"Invalid number of FFT data points ({n}) specified.")
    size = x.shape[axis]
    if n > size:
        widths = [(0, 0)] * ndim(x)
        widths[axis] = (0, n - size)
        return S.pad(x, pad_width=tuple(widths), constant_value=0.0)
    if n < size:
        return x[(slice(None),) * (ndim(x) + axis) + (slice(0, n),)]
    return x


def _axes_and_lengths(x, s, axes):
    """NumPy's defaults: every axis, or the last len(s) ones; lengths from x's shape (also
    where s gives -1)."""
    rank = ndim(x)
    if axes is None:
        axes = range(rank) if s is None else range(rank - len(s), rank)
    axes = tuple(_axis(a, rank) for a in axes)
    if s is None:
        s = [x.shape[a] for a in axes]
    elif len(s) != len(axes):
        raise ValueError("Shape and axes have different lengths.")
    return axes, [x.shape[a] if n == -1 else n for a, n in zip(axes, s)]


def _transform(a, s, axes, norm, inverse, out):
    """The transform along `axes` (none: `a` as it is, as NumPy's); an axis named twice is
    transformed twice, one axis at a time from the last, as NumPy does."""
    refuse("fft", out=out)
    if axes is not None and len(axes) == 0:
        return _array(a)
    x = _complex(a)
    axes, s = _axes_and_lengths(x, s, axes)
    if len(set(axes)) != len(axes):
        for axis, n in reversed(list(zip(axes, s))):
            x = _transform(x, [n], (axis,), norm, inverse, None)
        return x
    for axis, n in zip(axes, s):
        x = _resized(x, axis, n)
    return F.fft(x, axes=axes, inverse=inverse, norm=_norm(norm)) if axes else x


def fftn(a, s=None, axes=None, norm=None, out=None):
    """`np.fft.fftn`.

    >>> fftn(np.ones((2, 2))).real
    array([[4., 0.],
           [0., 0.]])
    """
    return _transform(a, s, axes, norm, False, out)


def ifftn(a, s=None, axes=None, norm=None, out=None):
    """`np.fft.ifftn`."""
    return _transform(a, s, axes, norm, True, out)


def fft(a, n=None, axis=-1, norm=None, out=None):
    """`np.fft.fft`."""
    return _transform(a, None if n is None else [n], (axis,), norm, False, out)


def ifft(a, n=None, axis=-1, norm=None, out=None):
    """`np.fft.ifft`."""
    return _transform(a, None if n is None else [n], (axis,), norm, True, out)


def fft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    """`np.fft.fft2`."""
    return _transform(a, s, axes, norm, False, out)


def ifft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    """`np.fft.ifft2`."""
    return _transform(a, s, axes, norm, True, out)


def rfft(a, n=None, axis=-1, norm=None, out=None):
    """`np.fft.rfft`: the non-negative frequencies of a real signal.

    >>> rfft(np.array([1.0, 2.0, 3.0, 4.0]))
    array([10.+0.j, -2.+2.j, -2.+0.j])
    """
    refuse("rfft", out=out)
    x = _real(a, "rfft")
    axis = _axis(axis, ndim(x))
    x = _resized(x, axis, x.shape[axis] if n is None else n)
    return F.rfft(x, axis=axis, norm=_norm(norm))


def irfft(a, n=None, axis=-1, norm=None, out=None):
    """`np.fft.irfft`: the real signal of length n (default 2 (m - 1)) from m frequencies."""
    refuse("irfft", out=out)
    c = _complex(a)
    axis = _axis(axis, ndim(c))
    n = 2 * (c.shape[axis] - 1) if n is None else operator.index(n)
    if n < 1:
        raise ValueError(f"Invalid number of FFT data points ({n}) specified.")
    return F.irfft(_resized(c, axis, n // 2 + 1), axis=axis, n=n, norm=_norm(norm))


def rfftn(a, s=None, axes=None, norm=None, out=None):
    """`np.fft.rfftn`: rfft along the last of `axes`, fft along the others."""
    refuse("rfftn", out=out)
    x = _real(a, "rfftn")
    axes, s = _axes_and_lengths(x, s, axes)
    x = rfft(x, s[-1], axes[-1], norm)
    return _transform(x, s[:-1], axes[:-1], norm, False, None)


def irfftn(a, s=None, axes=None, norm=None, out=None):
    """`np.fft.irfftn`: ifft along all but the last of `axes`, irfft along that one."""
    refuse("irfftn", out=out)
    c = _complex(a)
    axes, lengths = _axes_and_lengths(c, s, axes)
    if s is None:
        lengths[-1] = 2 * (lengths[-1] - 1)
    c = _transform(c, lengths[:-1], axes[:-1], norm, True, None)
    return irfft(c, lengths[-1], axes[-1], norm)


def rfft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    """`np.fft.rfft2`."""
    return rfftn(a, s, axes, norm, out)


def irfft2(a, s=None, axes=(-2, -1), norm=None, out=None):
    """`np.fft.irfft2`."""
    return irfftn(a, s, axes, norm, out)


def hfft(a, n=None, axis=-1, norm=None, out=None):
    """`np.fft.hfft`: the real spectrum of a signal with Hermitian symmetry."""
    refuse("hfft", out=out)
    c = _complex(a)
    n = 2 * (c.shape[_axis(axis, ndim(c))] - 1) if n is None else n
    return irfft(conjugate(c), n, axis, F.OPPOSITE_NORM[_norm(norm)])


def ihfft(a, n=None, axis=-1, norm=None, out=None):
    """`np.fft.ihfft`: the inverse of hfft."""
    refuse("ihfft", out=out)
    return conjugate(rfft(a, n, axis, F.OPPOSITE_NORM[_norm(norm)]))


def _shifted(x, axes, sign):
    x = _array(x)
    axes = range(ndim(x)) if axes is None else [axes] if np.ndim(axes) == 0 else axes
    axes = [_axis(a, ndim(x)) for a in axes]
    return roll(x, [sign * (x.shape[a] // 2) for a in axes], axes) if axes else x


def fftshift(x, axes=None):
    """`np.fft.fftshift`: the zero frequency moved to the centre."""
    return _shifted(x, axes, 1)


def ifftshift(x, axes=None):
    """`np.fft.ifftshift`: the inverse of fftshift."""
    return _shifted(x, axes, -1)


def fftfreq(n, d=1.0, device=None):
    """`np.fft.fftfreq` (a constant; divided by `d` if `d` is traced)."""
    if isinstance(d, Tracer):
        return np.fft.fftfreq(n) / d
    return np.fft.fftfreq(n, d)


def rfftfreq(n, d=1.0, device=None):
    """`np.fft.rfftfreq` (a constant; divided by `d` if `d` is traced)."""
    if isinstance(d, Tracer):
        return np.fft.rfftfreq(n) / d
    return np.fft.rfftfreq(n, d)
