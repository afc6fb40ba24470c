"""pullback.scipy: SciPy's functions, differentiable (`special`, `linalg`).

SciPy's ufuncs (scipy.special.gamma, erf, iv, ...) work on traced values as they are:
NumPy's `__array_ufunc__` protocol routes them to pullback. SciPy's other functions
convert their inputs with `np.asarray` and cannot be reached that way: call their
namesakes here instead (`pullback.scipy.special.logsumexp`, `pullback.scipy.linalg.expm`):
the error a traced value raises inside SciPy's own says which one.

>>> import numpy as np, pullback
>>> from pullback.scipy import special
>>> float(pullback.grad(lambda x: special.logsumexp(x))(np.zeros(2))[0])
0.5
"""
from ..core import array_methods as _array_methods
from . import linalg, special

for _module in (linalg, special):
    _array_methods.offer_stand_in(_module.__name__.replace("pullback.", "", 1),
                                  _module.__name__, _module)
