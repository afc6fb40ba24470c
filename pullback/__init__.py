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
from .operators import (HVPOperator, default_chunk_size, forward_grad, grad, hessian, hvp,
                        jacfwd, jacobian, jacrev, make_hvp, stop_gradient, value_and_grad)

# Staged programs: compiled (jit), inspected (make_ir) and printed as Python (show).
from .ir.jit import jit, make_ir, show

# User-defined derivative rules, and SciPy optimisers driven by our derivatives.
from .custom import custom_jvp, custom_vjp
from .minimize import newton_callables

# Loops that stay loops in every mode, with checkpointing.
from .loops import checkpoint, cond, fori_loop, scan, switch, while_loop

# Sparse Jacobians and Hessians: colouring and compressed evaluation.
from . import sparse

# SciPy's functions that are not ufuncs (logsumexp, solve_triangular, expm ...), differentiable.
from . import scipy

# The Python Array API standard for traced values (x.__array_namespace__()).
from . import array_api

# Testing utilities and errors.
from .testing import check_grads
from . import errors
from .errors import PullbackError

__all__ = [
    "numpy",
    "pushforward", "jvp", "pullback", "vjp", "vmap",
    "grad", "value_and_grad", "forward_grad", "jacfwd", "jacrev", "jacobian",
    "default_chunk_size", "hessian", "hvp", "make_hvp", "HVPOperator", "stop_gradient",
    "custom_jvp", "custom_vjp", "newton_callables", "scan", "fori_loop", "while_loop", "cond",
    "switch", "checkpoint", "jit", "make_ir", "show",
    "sparse", "scipy", "array_api", "check_grads", "errors", "PullbackError",
]
