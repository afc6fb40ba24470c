"""`xp.fft` of pullback's Array API namespace: pullback.numpy.fft with the standard's
keyword-only arguments."""
from ..numpy import fft as F
from ._common import check_device

__all__ = ["fft", "ifft", "fftn", "ifftn", "rfft", "irfft", "rfftn", "irfftn", "hfft", "ihfft",
           "fftfreq", "rfftfreq", "fftshift", "ifftshift"]


def _one_axis(name):
    function = getattr(F, name)

    def transform(x, /, *, n=None, axis=-1, norm="backward"):
        return function(x, n=n, axis=axis, norm=norm)
    transform.__name__ = name
    transform.__doc__ = f"`xp.fft.{name}`: `pullback.numpy.fft.{name}`."
    return transform


def _many_axes(name):
    function = getattr(F, name)

    def transform(x, /, *, s=None, axes=None, norm="backward"):
        return function(x, s=s, axes=axes, norm=norm)
    transform.__name__ = name
    transform.__doc__ = f"`xp.fft.{name}`: `pullback.numpy.fft.{name}`."
    return transform


fft, ifft, rfft, irfft, hfft, ihfft = map(_one_axis, ["fft", "ifft", "rfft", "irfft", "hfft",
                                                      "ihfft"])
fftn, ifftn, rfftn, irfftn = map(_many_axes, ["fftn", "ifftn", "rfftn", "irfftn"])


def fftfreq(n, /, *, d=1.0, dtype=None, device=None):
    check_device(device)
    result = F.fftfreq(n, d)
    return result if dtype is None else result.astype(dtype)


def rfftfreq(n, /, *, d=1.0, dtype=None, device=None):
    check_device(device)
    result = F.rfftfreq(n, d)
    return result if dtype is None else result.astype(dtype)


def fftshift(x, /, *, axes=None):
    return F.fftshift(x, axes=axes)


def ifftshift(x, /, *, axes=None):
    return F.ifftshift(x, axes=axes)
