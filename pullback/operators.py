"""Derivative operators, each a short composition of pushforward and pullback.

Nothing here knows about individual primitives.
"""
from functools import wraps
from typing import Any, Callable

import numpy as np

from .boundary import argnums_tuple, differentiable_input, split_aux
from .errors import NonScalarOutputError
from .primitives.structural import stop_gradient as _stop_gradient
from .transforms.forward import pushforward
from .transforms.reverse import pullback
from .tree import flatten, tree_map, unflatten


def _partial(f, args, argnums):
    """f as a function of the arguments in `argnums` only, the others fixed."""
    nums = argnums_tuple(argnums, len(args))

    def f_of_selected(*selected):
        full = list(args)
        for i, value in zip(nums, selected):
            full[i] = value
        return f(*full)
    return f_of_selected, tuple(args[i] for i in nums)


def _check_scalar(out):
    shape = getattr(out, "shape", None)
    dtype = getattr(out, "dtype", None)
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        return
    if shape is None or shape != () or dtype is None or dtype.kind != "f":
        what = (f"an array of shape {tuple(shape)}" if shape is not None and shape != ()
                else f"a value of type {type(out).__name__}"
                + (f" and dtype {dtype}" if dtype is not None else ""))
        raise NonScalarOutputError(
            f"grad requires a function with a real scalar output (shape ()), but it returned "
            f"{what}. The gradient of a non-scalar function is not defined: use "
            "`pullback.jacobian(f)` for all partial derivatives, `pullback.pullback(f, x)` and "
            "`back(cotangent)` for a vector-Jacobian product with a cotangent of your choice, "
            "or reduce the output explicitly (e.g. return `f(x).sum()`) if that is what you mean.")


def value_and_grad(f: Callable, argnums: int | tuple = 0, has_aux: bool = False) -> Callable:
    """A function returning `(f(*args), gradient)` (and aux: `((out, aux), gradient)`).

    >>> import numpy as np
    >>> value_and_grad(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
    (np.float64(5.0), array([2., 4.]))
    """
    @wraps(f)
    def value_and_grad_f(*args, **kwargs):
        f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
        out, back, *aux = pullback(f_selected, *selected, has_aux=has_aux)
        _check_scalar(out)
        cts = back(np.ones((), getattr(out, "dtype", np.float64)))
        gradient = cts[0] if isinstance(argnums, int) else cts
        return ((out, aux[0]) if has_aux else out), gradient
    return value_and_grad_f


def grad(f: Callable, argnums: int | tuple = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar-valued `f`: the pullback of 1.

    Defined only for real scalar outputs: anything else raises
    `NonScalarOutputError` (pullback never differentiates `sum(f(x))` silently).
    `argnums` picks the argument(s); with a tuple the result is a tuple. With
    `has_aux=True`, `f` returns `(out, aux)` and the result is `(gradient, aux)`.

    >>> import numpy as np
    >>> grad(lambda x: np.sum(np.sin(x)))(np.array([0.0, np.pi]))
    array([ 1., -1.])
    """
    value_and_grad_f = value_and_grad(f, argnums, has_aux)

    @wraps(f)
    def grad_f(*args, **kwargs):
        value, gradient = value_and_grad_f(*args, **kwargs)
        return (gradient, value[1]) if has_aux else gradient
    return grad_f


# ------------------------------------------------------------------ Jacobians

def _basis(x):
    """The standard basis of x's space, one array per element (x's shape and dtype)."""
    shape = tuple(x.shape)
    return [row.reshape(shape) for row in np.eye(int(np.prod(shape)), dtype=x.dtype)]


def _stack_block(parts, out_shape, in_shape, dtype, axis):
    """Stack Jacobian rows (axis 0) or columns (axis -1) into shape out_shape + in_shape."""
    if not parts:
        return np.zeros(out_shape + in_shape, dtype)
    return np.stack(parts, axis=axis).reshape(out_shape + in_shape)


def jacrev(f: Callable, argnums: int | tuple = 0, has_aux: bool = False) -> Callable:
    """The Jacobian by reverse mode: the pullback of each output basis vector (a row).

    The result has shape `f(x).shape + x.shape` for each (output leaf, input leaf).

    >>> import numpy as np
    >>> jacrev(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """
    @wraps(f)
    def jacrev_f(*args, **kwargs):
        f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
        out, back, *aux = pullback(f_selected, *selected, has_aux=has_aux)
        out_leaves, out_def = flatten(out)
        in_leaves, in_def = flatten(selected)
        zeros = [np.zeros_like(o) for o in out_leaves]
        blocks = []
        for k, o in enumerate(out_leaves):
            rows = []
            for e in _basis(o):
                ct = list(zeros)
                ct[k] = e
                rows.append(flatten(back(unflatten(out_def, ct)))[0])
            blocks.append(unflatten(in_def, [
                _stack_block([r[j] for r in rows], tuple(o.shape), tuple(np.shape(x)), o.dtype, 0)
                for j, x in enumerate(in_leaves)]))
        return _finish(blocks, out_def, argnums, has_aux, aux)
    return jacrev_f


def jacfwd(f: Callable, argnums: int | tuple = 0, has_aux: bool = False) -> Callable:
    """The Jacobian by forward mode: the pushforward of each input basis vector (a column).

    >>> import numpy as np
    >>> jacfwd(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """
    @wraps(f)
    def jacfwd_f(*args, **kwargs):
        f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
        in_leaves, in_def = flatten(selected)
        in_leaves = [differentiable_input(x, f"argument leaf {i}") for i, x in enumerate(in_leaves)]
        zeros = [np.zeros_like(x) for x in in_leaves]

        def push(tangent_leaves):
            return pushforward(f_selected, unflatten(in_def, in_leaves),
                               unflatten(in_def, tangent_leaves), has_aux=has_aux)

        out, _, *aux = push(zeros)
        columns = []
        for j, x in enumerate(in_leaves):
            cols = []
            for e in _basis(x):
                tangent = list(zeros)
                tangent[j] = e
                cols.append(flatten(push(tangent)[1])[0])
            columns.append(cols)
        out_leaves, out_def = flatten(out)
        blocks = [unflatten(in_def, [
            _stack_block([c[k] for c in columns[j]], tuple(np.shape(o)), tuple(x.shape), x.dtype, -1)
            for j, x in enumerate(in_leaves)]) for k, o in enumerate(out_leaves)]
        return _finish(blocks, out_def, argnums, has_aux, aux)
    return jacfwd_f


def _finish(blocks, out_def, argnums, has_aux, aux):
    if isinstance(argnums, int):
        blocks = [b[0] for b in blocks]
    jac = unflatten(out_def, blocks)
    return (jac, aux[0]) if has_aux else jac


def jacobian(f: Callable, argnums: int | tuple = 0, mode: str = "auto",
             has_aux: bool = False) -> Callable:
    """The Jacobian of `f`, shape `f(x).shape + x.shape`.

    `mode="forward"` pushes forward the input basis, `"reverse"` pulls back the
    output basis, `"auto"` picks forward when the input is smaller than the output
    and reverse otherwise.

    >>> import numpy as np
    >>> jacobian(np.sin)(np.zeros(2))
    array([[1., 0.],
           [0., 1.]])
    """
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")

    @wraps(f)
    def jacobian_f(*args, **kwargs):
        chosen = mode
        if mode == "auto":
            f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
            n_in = sum(int(np.prod(np.shape(x))) for x in flatten(selected)[0])
            out = split_aux(f_selected(*selected), has_aux)[0]
            n_out = sum(int(np.prod(np.shape(o))) for o in flatten(out)[0])
            chosen = "forward" if n_in < n_out else "reverse"
        operator = jacfwd if chosen == "forward" else jacrev
        return operator(f, argnums, has_aux)(*args, **kwargs)
    return jacobian_f


def stop_gradient(x: Any) -> Any:
    """x with its derivative cut: a constant to every transformation (pytrees allowed).

    >>> import numpy as np
    >>> grad(lambda x: x * stop_gradient(x))(3.0)
    array(3.)
    """
    return tree_map(_stop_gradient, x)
