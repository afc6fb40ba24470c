"""Discrete Fourier transforms: linear primitives, each transposed by another transform.

- `fft(x, axes, inverse, norm)`: NumPy's fftn (ifftn with `inverse`) of a complex array,
  with no padding (pullback.numpy.fft pads and crops). Its matrix is symmetric, so under
  the pairing of core/numbers.py (no conjugation) the transpose is the same transform.
- `rfft(x, axis, norm)`: the transform of a real array along one axis, the m = n // 2 + 1
  non-negative frequencies. Its transpose takes a cotangent c (m values) to
  `Re(fft(c zero-padded to n))`: sum_k c_k w^(jk), real part.
- `irfft(c, axis, n, norm)`: the real signal of length n from m = n // 2 + 1 frequencies
  (the imaginary parts of the first and, for even n, the last are ignored). Writing
  irfft(c)_j = s Re(sum_k a_k c_k w^(-jk)) with a_k = 2 but a_0 = a_(n/2) = 1, its
  transpose is `a * conj(rfft(ct))` with rfft's scale s (the opposite direction's norm).

`norm` is NumPy's: "backward" (the default), "ortho" or "forward". Axes are negative
(counted from the end), so that a batch axis in front leaves them unchanged.
"""
import numpy as np

from ..core import arrays
from ..core.arrays import dtype_of, moveaxis, shape_of
from ..core.primitive import ShapeDtype
from .elementwise import conjugate, real
from .families import call_emitter, linear
from .structural import pad

OPPOSITE_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _fft_impl(x, axes, inverse, norm):
    return (np.fft.ifftn if inverse else np.fft.fftn)(x, axes=axes, norm=norm)


def _batch(prim):
    """The batch axis first: the transformed axes, negative, stay where they are."""
    return lambda values, dims, **params: (prim(moveaxis(values[0], dims[0], 0), **params), 0)


fft = linear(
    "fft", _fft_impl, shape=lambda x, axes, inverse, norm: ShapeDtype(shape_of(x), dtype_of(x)),
    transpose=lambda ct, x, axes, inverse, norm: fft(ct, axes=axes, inverse=inverse, norm=norm),
    batch=lambda values, dims, **params: _batch(fft)(values, dims, **params),
    emit=lambda args, axes, inverse, norm:
        f"np.fft.{'ifftn' if inverse else 'fftn'}({args[0]}, axes={axes!r}, norm={norm!r})",
    family="fft", fresh_output=True, sparsity=None)


def _frequencies(n):
    return n // 2 + 1


def _rfft_shape(x, axis, norm):
    shape = list(shape_of(x))
    shape[axis] = _frequencies(shape[axis])
    return ShapeDtype(tuple(shape), np.result_type(dtype_of(x), np.complex64))


def _rfft_transpose(ct, x, axis, norm):
    n = shape_of(x)[axis]
    widths = [(0, 0)] * len(shape_of(ct))
    widths[axis] = (0, n - shape_of(ct)[axis])
    full = pad(ct, pad_width=tuple(widths), constant_value=0.0)
    return real(fft(full, axes=(axis,), inverse=False, norm=norm))


rfft = linear(
    "rfft", lambda x, axis, norm: np.fft.rfft(x, axis=axis, norm=norm), shape=_rfft_shape,
    transpose=_rfft_transpose, batch=lambda values, dims, **params: _batch(rfft)(values, dims,
                                                                                **params),
    emit=call_emitter("np.fft.rfft"), family="fft", fresh_output=True, sparsity=None)


def _irfft_shape(c, axis, n, norm):
    shape = list(shape_of(c))
    shape[axis] = n
    return ShapeDtype(tuple(shape), np.finfo(dtype_of(c)).dtype)


def _irfft_transpose(ct, c, axis, n, norm):
    m = shape_of(c)[axis]
    weights = arrays.full((m,), 2.0, np.finfo(dtype_of(c)).dtype, like=c)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    shape = [1] * len(shape_of(c))
    shape[axis] = m
    weights = weights.reshape(shape)
    return conjugate(rfft(ct, axis=axis, norm=OPPOSITE_NORM[norm])) * weights


irfft = linear(
    "irfft", lambda c, axis, n, norm: np.fft.irfft(c, n=n, axis=axis, norm=norm),
    shape=_irfft_shape, transpose=_irfft_transpose,
    batch=lambda values, dims, **params: _batch(irfft)(values, dims, **params),
    emit=call_emitter("np.fft.irfft"), family="fft", fresh_output=True, sparsity=None)
