"""scipy.special's public names with its ufuncs as ufuncs. With SCIPY_ARRAY_API=1 SciPy makes
many of them Python functions that dispatch on the array namespace (the ufunc is their
`__wrapped__`); pullback registers, calls and emits the ufuncs themselves, whatever the
environment. (A traced value given to such a wrapper reaches pullback through
`__array_namespace__`, whose `special` namespace answers it.)"""
import numpy as np
import scipy.special


def _unwrapped(function):
    inner = getattr(function, "__wrapped__", None)
    return inner if isinstance(inner, np.ufunc) else function


globals().update({name: _unwrapped(value) for name, value in vars(scipy.special).items()
                  if not name.startswith("_")})
_ufuncs = scipy.special._ufuncs      # private ufuncs (_zeta: Hurwitz's zeta)
