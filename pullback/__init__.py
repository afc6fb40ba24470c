"""pullback: differentiate ordinary NumPy code, exactly, to any order, in any mode.

>>> import numpy as np, pullback
>>> pullback.grad(lambda x: np.sum(np.tanh(x) ** 2))(np.zeros(3))
array([0., 0., 0.])
"""
# The NumPy-shaped namespace (imported first: it makes tracers array-like).
from . import numpy

# Transformations: the pushforward and the pullback.
from .transforms.forward import jvp, pushforward
from .transforms.reverse import pullback, vjp
from .transforms.batching import vmap

# Derivative operators built from them.
from .operators import grad, jacfwd, jacobian, jacrev, stop_gradient, value_and_grad

# Testing utilities and errors.
from .testing import check_grads
from . import errors
from .errors import PullbackError

__all__ = [
    "numpy",
    "pushforward", "jvp", "pullback", "vjp", "vmap",
    "grad", "value_and_grad", "jacfwd", "jacrev", "jacobian", "stop_gradient",
    "check_grads", "errors", "PullbackError",
]
