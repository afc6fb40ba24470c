"""Derivative operators, each a short composition of pushforward and pullback.

Nothing here knows about individual primitives.
"""
import difflib
import numbers
import inspect
from functools import wraps
from typing import Any, Callable

import numpy as np

from .core import arrays
from .core.arrays import tree_of_their_own
from .core.engine import Tracer, new_trace, observer
from .core.boundary import argnums_tuple, differentiable_inputs, matching_tree, split_aux
from .errors import ChunkSizeError, HolomorphicError, ModeError, NonScalarOutputError, TangentError
from .ir import cost
from .ir.jit import on_chunks
from .primitives.basis import basis, vmap_basis
from .primitives.structural import stop_gradient as _stop_gradient
from .transforms.forward import pushforward
from .transforms.batching import vmap
from .transforms.reverse import (ReverseTrace, ReverseTracer, backward, private_copy, pullback,
                                 recorded_pullback)
from .tree import flatten, tree_map, unflatten


def _partial(f, args, argnums):
    """f as a function of the distinct arguments `argnums` names, the others fixed."""
    if type(argnums) is int and len(args) == 1 and -1 <= argnums <= 0:
        return f, args                           # the common case: nothing fixed
    nums = tuple(dict.fromkeys(argnums_tuple(argnums, len(args))))
    if nums == (0,) and len(args) == 1:
        return f, args

    def f_of_selected(*selected):
        full = list(args)
        for i, value in zip(nums, selected):
            full[i] = value
        return f(*full)
    return f_of_selected, tuple(args[i] for i in nums)


_NUMPY_SCALARS = frozenset({np.float64, np.float32, np.float16, np.complex128, np.complex64})


def _per_argnum(values, argnums, nargs):
    """Results for the distinct arguments (as `_partial` selects them) arranged as `argnums`
    asks: the one value for an int, a tuple for a tuple (repeated positions repeat it)."""
    if type(argnums) is int or isinstance(argnums, numbers.Integral):
        return values[0]
    nums = argnums_tuple(argnums, nargs)
    distinct = list(dict.fromkeys(nums))
    return tuple(values[distinct.index(i)] for i in nums)


def _is_complex(x):
    return np.dtype(getattr(x, "dtype", type(x))).kind == "c"


def _is_inexact(x):
    return np.dtype(_dtype(x)).kind in "fc"


def _check_holomorphic(function, inputs, outputs, holomorphic):
    """With `holomorphic=True`, inputs and outputs must be complex (as in JAX)."""
    if holomorphic and not all(_is_complex(x) for x in [*inputs, *outputs]):
        raise HolomorphicError(
            f"{function} with holomorphic=True needs complex inputs and outputs, but "
            f"{'an input' if not all(map(_is_complex, inputs)) else 'an output'} is real. "
            "Cast it (x.astype(complex)), or drop holomorphic=True for real values.")


def _check_complex_linear(function, derivative, like, outputs, inputs):
    """holomorphic=True promises f'(z): the derivative map is complex-linear, D(i d) =
    i D(d) (it is not for conj(z), |z|, z.real). Checked at random directions d shaped as
    `like` where the values are known, to half the precision's digits of D's size, or to
    rounding of the size of a derivative of f's `outputs` by its `inputs` where D is
    smaller: a derivative that is 0 (trace(inv(z) @ z @ z)'s Hessian) is rounding noise,
    which no map keeps linear."""
    rng = np.random.default_rng(7)
    directions = [(rng.standard_normal(np.shape(x)) + 1j * rng.standard_normal(np.shape(x)))
                  .astype(_dtype(x)) for x in like]
    size = _ratio_of_sizes(outputs, inputs) * max(
        (float(np.max(np.abs(d), initial=0.0)) for d in directions), default=0.0)
    for a, b in zip(derivative(directions), derivative([1j * d for d in directions])):
        if isinstance(a, Tracer) or isinstance(b, Tracer):
            return
        a, b = np.asarray(a), np.asarray(b)
        eps = np.finfo(a.dtype).eps
        # (the floor's: 1000 eps of |f| / |z|, rounding noise; half the digits of it let
        # z conj(z) + 1e9 pass)
        tolerance = max(np.sqrt(eps) * np.max(np.abs(a), initial=1e-300), 1e3 * eps * size)
        if np.all(np.isfinite(a)) and not np.allclose(b, 1j * a, rtol=0, atol=tolerance):
            raise HolomorphicError(
                f"{function} with holomorphic=True of a function that is not holomorphic here: "
                "its derivative is not complex-linear (as for conj(z), abs(z), z.real). Drop "
                "holomorphic=True and differentiate a real function of it (np.real, np.abs(...)"
                " ** 2), whose gradient holds both partial derivatives.")


def _check_holomorphic_function(f, args, kwargs, argnums, has_aux):
    """f's own derivative complex-linear, checked on concrete arguments (two pushforwards):
    inside a Hessian the first derivative's check sees tracers and is skipped, and the
    second's sees only the derivative of what the first computed (sum(conj(z) ** 2)'s
    reverse-mode 'gradient' 2z is complex-linear), so two modes gave a Hessian of a
    function that has none."""
    call = (lambda *a: f(*a, **kwargs)) if kwargs else f
    f_selected, selected = _partial(call, args, argnums)
    leaves, treedef = flatten(selected)
    if any(isinstance(x, Tracer) for x in leaves):
        return
    first = (lambda *a: f_selected(*a)[0]) if has_aux else f_selected

    def derivative(directions):
        return flatten(pushforward(first, selected, unflatten(treedef, directions))[1])[0]
    _check_complex_linear("hessian", derivative, leaves, flatten(first(*selected))[0], leaves)


def _ratio_of_sizes(outputs, inputs) -> float:
    """max |outputs| / max |inputs| where both are known, finite and nonzero, else 0."""
    sizes = []
    for values in (outputs, inputs):
        if any(isinstance(v, Tracer) for v in values):
            return 0.0
        sizes.append(max((float(np.max(np.abs(v), initial=0.0)) for v in values), default=0.0))
    ratio = sizes[0] / sizes[1] if sizes[1] else 0.0
    return ratio if np.isfinite(ratio) else 0.0


def _complex_output_error(function, fix):
    return HolomorphicError(
        f"{function} of a function with complex output: if the function is holomorphic, pass "
        f"holomorphic=True (the derivative is then f'(z)); {fix}, or differentiate a "
        "real-valued function of the output (np.real, np.imag, np.abs(...) ** 2).")


def _check_scalar(out, holomorphic=False):
    """Refuse anything but a real floating-point scalar output (complex with `holomorphic`),
    saying what to do instead."""
    if not holomorphic and (isinstance(out, float) or getattr(out, "shape", None) == ()
                            and getattr(getattr(out, "dtype", None), "kind", None) == "f"):
        return                                        # a real floating-point scalar: fine
    shape = getattr(out, "shape", None)
    dtype = np.asarray(out).dtype if isinstance(out, (bool, int, float, complex)) \
        else getattr(out, "dtype", None)
    if shape in (None, ()) and dtype is not None and dtype.kind == "c" and not holomorphic:
        raise _complex_output_error(
            "grad", "otherwise a gradient is defined for real outputs (hvp and make_hvp, which "
            "take none, are for real-valued functions: for a holomorphic f, "
            "hessian(f, holomorphic=True)(z) @ v)")
    if holomorphic and dtype is not None and dtype.kind != "c":
        _check_holomorphic("grad", [], [out], holomorphic)
    if shape in (None, ()) and dtype is not None and dtype.kind in "biu":
        raise NonScalarOutputError(
            f"grad requires a real floating-point scalar output, but the function returned "
            f"{out!r}, of {dtype.name} type: integers and booleans have no derivative, so this "
            "output does not depend differentiably on the input (a constant, a count, a "
            "comparison...). Return a float (e.g. `3.0` or `out.astype(float)`), whose "
            "gradient is zero where it does not depend on the input.")
    if shape != () or dtype is None or dtype.kind not in "fc":
        what = (f"an array of shape {tuple(shape)}" if shape is not None and shape != ()
                else f"a value of type {type(out).__name__}"
                + (f" and dtype {dtype}" if dtype is not None else ""))
        raise NonScalarOutputError(
            f"grad requires a function with a real scalar output (shape ()), but it returned "
            f"{what}. The gradient of a non-scalar function is not defined: use "
            "`pullback.jacobian(f)` for all partial derivatives, `pullback.pullback(f, x)` and "
            "`back(cotangent)` for a vector-Jacobian product with a cotangent of your choice, "
            "or reduce the output explicitly (e.g. return `f(x).sum()`) if that is what you mean.")


def value_and_grad(f: Callable, argnums: int | tuple = 0, has_aux: bool = False,
                   holomorphic: bool = False) -> Callable:
    """A function returning `(f(*args), gradient)` (and aux: `((out, aux), gradient)`).

    >>> import numpy as np
    >>> value_and_grad(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
    (np.float64(5.0), array([2., 4.]))
    """
    def eager(*args, **kwargs):
        return _value_and_grad(f, args, kwargs, argnums, has_aux, holomorphic)
    return _chunked_first(eager, f)


def _value_and_grad(f, args, kwargs, argnums=0, has_aux=False, holomorphic=False):
    """`value_and_grad(f, ...)(*args, **kwargs)`."""
    if type(argnums) is int and len(args) == 1 and -1 <= argnums <= 0 and not kwargs:
        f_selected, selected = f, args            # the common case (see _partial)
    else:
        f_selected, selected = _partial((lambda *a: f(*a, **kwargs)) if kwargs else f, args,
                                        argnums)
    out, back, *aux = recorded_pullback(f_selected, *selected, has_aux=has_aux)
    if holomorphic or not _real_scalar(out):
        _check_scalar(out, holomorphic)
        if holomorphic:
            _check_holomorphic("grad", flatten(selected)[0], [out], holomorphic)
            _check_complex_linear("grad", lambda d: flatten(back(d[0]))[0], [out], [out],
                                  flatten(selected)[0])
    cts = back(_seed(out))
    gradient = cts[0] if type(argnums) is int else _per_argnum(cts, argnums, len(args))
    return ((out, tree_of_their_own(aux[0], flatten(args)[0])) if has_aux else out), gradient


def _real_scalar(out) -> bool:
    """Whether `out` is a real NumPy scalar or 0-d tracer (the common cases), which passes
    `_check_scalar`: then it is not called."""
    return (type(out) in _NUMPY_SCALARS or isinstance(out, Tracer) and out.shape == ()) \
        and out.dtype.kind == "f"


def _seed(out):
    """The seed of the gradient of a scalar output: 1 of its dtype, in its array library."""
    if type(out) in _NUMPY_SCALARS or isinstance(out, Tracer) and arrays.foreign_array(out) is None:
        return np.array(1, out.dtype)             # (what known_scalar makes for NumPy's values)
    return arrays.known_scalar(1, getattr(out, "dtype", np.float64), like=out)


def _grad_of_one_array(f, x):
    """`grad(f)(x)` for one floating-point array or tracer x, argnums 0, no aux, not
    holomorphic: the commonest call, made in loops by nested derivatives. What
    `_value_and_grad` computes, in fewer steps: no pytrees, no `back` closure, and no check
    of the seed, made to match the output."""
    with new_trace(ReverseTrace) as trace:
        out = f(*trace.new_leaves((x,)))
    node = None
    if type(out) is ReverseTracer and out._trace is trace:
        node, out = out.node, out.value
    if not _real_scalar(out):
        _check_scalar(out)
    gradient = None if node is None else backward(trace.tape, [(node, _seed(out))], 1)[0]
    if gradient is None:                          # the output does not depend on x
        gradient = arrays.zeros_like_value(x)
    watcher = observer()
    if watcher is not None:
        watcher.name_like(gradient, x, "_bar")
    return gradient


def grad(f: Callable, argnums: int | tuple = 0, has_aux: bool = False,
         holomorphic: bool = False) -> Callable:
    """The gradient of a scalar-valued `f`: the pullback of 1.

    Defined only for real scalar outputs: anything else raises
    `NonScalarOutputError` (pullback never differentiates `sum(f(x))` silently).
    Of complex inputs it is `df/dx - i df/dy` (JAX's convention, core/numbers.py);
    with `holomorphic=True`, f maps complex inputs to a complex scalar and the result
    is f'(z) (a complex output without the flag raises `HolomorphicError`).
    `argnums` picks the argument(s); with a tuple the result is a tuple. With
    `has_aux=True`, `f` returns `(out, aux)` and the result is `(gradient, aux)`.

    >>> import numpy as np
    >>> grad(lambda x: np.sum(np.sin(x)))(np.array([0.0, np.pi]))
    array([ 1., -1.])
    """
    def eager(*args, **kwargs):
        value, gradient = _value_and_grad(f, args, kwargs, argnums, has_aux, holomorphic)
        return (gradient, value[1]) if has_aux else gradient
    simple = type(argnums) is int and argnums in (0, -1) and not has_aux and not holomorphic
    grad_f = _chunked_first(eager, f, _grad_of_one_array if simple else None)
    grad_f.result_names = _names_for_one_array(
        lambda: f"grad_{parameter}" if (parameter := _parameter_name(f, argnums)) else "grad",
        argnums, has_aux)
    return grad_f


def _chunked_first(eager: Callable, f: Callable, one_array: Callable | None = None) -> Callable:
    """`eager`, run on Dask arguments as one task per chunk where its staged program allows
    (`on_chunks`: each chunk's temporaries then live for its task alone, where eager mode
    makes a task per operation and chunk); as it is otherwise. `one_array(f, x)`, where
    given, computes the call of one floating-point NumPy array or tracer x alone (no Dask
    there), before any other test."""
    chunked = on_chunks(eager)

    @wraps(f)
    def run(*args, **kwargs):
        if one_array is not None and len(args) == 1 and not kwargs:
            x = args[0]
            if (type(x) is np.ndarray or isinstance(x, Tracer)) and x.dtype.kind in "fc":
                return one_array(f, x)
        if not kwargs and _may_hold_dask(args):
            result = chunked(*args)
            if result is not None:
                return result
        return eager(*args, **kwargs)
    return run


def _may_hold_dask(args) -> bool:
    """False where every argument is a NumPy array, a number or a tracer (the cheap test
    before `on_chunks` looks at the leaves; a loop: no frame per argument)."""
    for a in args:
        if type(a) is not np.ndarray and not isinstance(a, (Tracer, numbers.Number, np.generic)):
            return True
    return False


def _parameter_name(f, argnums):
    """The name of f's parameter number `argnums` (an int), or None."""
    try:
        parameters = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return None
    return parameters[argnums] if isinstance(argnums, int) and argnums < len(parameters) else None


def _is_leaf(x) -> bool:
    leaves = flatten(x)[0]
    return len(leaves) == 1 and leaves[0] is x


def _names_for_one_array(name, argnums, has_aux):
    """`result_names` for `show`: [name] where the derivative is one array (an int argnums
    picking an array argument, no aux), else None (the outputs keep their own names).
    `name` may be a function giving it, called only then (inspecting f costs every grad(f))."""
    def result_names(*args):
        single = isinstance(argnums, int) and not has_aux and -len(args) <= argnums < len(args) \
            and _is_leaf(args[argnums])
        return [name() if callable(name) else name] if single else None
    return result_names


# ------------------------------------------------------------------ Jacobians

# Seeds and results of one batched pass hold at most this many elements (128 MiB in float64).
CHUNK_ELEMENTS = 2 ** 24


def checked_chunk_size(chunk_size):
    """`chunk_size` as given (None: the default), refused unless None or a positive int."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(
            chunk_size, numbers.Integral) or chunk_size < 1):
        raise ChunkSizeError(f"chunk_size={chunk_size!r}: give the number of basis vectors per "
                             "batched pass as a positive int, or None for the default.")
    return None if chunk_size is None else int(chunk_size)


def default_chunk_size(n_basis: int, elements_per_vector: int) -> int:
    """How many basis vectors one batched pass pushes forward or pulls back.

    All of them (one pass, the fastest), unless a pass would hold more than
    CHUNK_ELEMENTS seed and result elements; then as many as fit, at least one.
    Intermediate values of the pass grow with the chunk in the same proportion.
    """
    return max(1, min(n_basis, CHUNK_ELEMENTS // max(1, elements_per_vector)))


def _size(x):
    return int(np.prod(np.shape(x) if not hasattr(x, "shape") else x.shape, dtype=np.int64))


def _batched_over_basis(f, leaves, chunk, factors=None):
    """f (mapping seeds, one per leaf, to (a list of arrays, a value shared by the batch))
    run on the identity over all leaves' elements, `chunk` rows per batched pass: per
    pass, its arrays with the batch axis first, and the shared value of the last pass.

    The seeds are one-hot bases kept structural through the pass (primitives/basis.py);
    another library's arrays get dense seeds (NumPy's arrays underneath the structure)."""
    factors = factors or [1] * len(leaves)
    total = sum(_size(x) for x in leaves)
    structured = not any(arrays.foreign_array(x) is not None for x in leaves)
    passes, shared = [], None
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        if structured:
            batched, shared = vmap_basis(f, basis(leaves, start, stop, factors))
        else:
            seeds = [s * factor for s, factor in zip(_dense_seeds(leaves, start, stop), factors)]
            batched, shared = vmap(f, out_axes=(0, None))(*seeds)
        passes.append(batched)
    return passes, shared


def _dense_seeds(leaves, start, stop):
    """Rows [start, stop) of the identity over all leaves' elements: one array of shape
    (stop - start,) + leaf.shape per leaf."""
    if len(leaves) == 1 and stop - start == _size(leaves[0]):  # one identity matrix
        leaf = leaves[0]
        return [arrays.eye(stop - start, leaf.dtype, like=leaf).reshape((stop - start,)
                                                                        + tuple(leaf.shape))]
    seeds, offset = [], 0
    for leaf in leaves:              # element p of all: row p - start, column p - offset
        n = _size(leaf)
        block = arrays.eye(stop - start, leaf.dtype, like=leaf, m=n, k=start - offset)
        seeds.append(block.reshape((stop - start,) + tuple(leaf.shape)))
        offset += n
    return seeds


def _concat_chunks(chunks):
    """Per leaf, the chunk results joined along the batch axis."""
    if len(chunks) == 1:
        return chunks[0]
    return [np.concatenate(parts) for parts in zip(*chunks)]


def _offsets(leaves):
    sizes = [_size(x) for x in leaves]
    return [sum(sizes[:i]) for i in range(len(sizes) + 1)]


def jacrev(f: Callable, argnums: int | tuple = 0, has_aux: bool = False,
           chunk_size: int | None = None, holomorphic: bool = False) -> Callable:
    """The Jacobian by reverse mode: the pullback of the whole output basis, batched.

    One recorded forward pass; its `back` is vmapped over the identity (in chunks
    of `chunk_size` basis vectors, default `default_chunk_size`). The result has
    shape `f(x).shape + x.shape` for each (output leaf, input leaf). Complex outputs
    need `holomorphic=True` (see `grad`).

    >>> import numpy as np
    >>> jacrev(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """
    chunk_size = checked_chunk_size(chunk_size)

    @wraps(f)
    def jacrev_f(*args, **kwargs):
        f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
        out, back, *aux = recorded_pullback(f_selected, *selected, has_aux=has_aux)
        out_leaves, out_def = flatten(out)
        out_leaves = [np.asarray(o) if isinstance(o, (float, int)) else o for o in out_leaves]
        in_leaves, in_def = flatten(selected)
        _check_holomorphic("jacrev", in_leaves, out_leaves, holomorphic)
        if any(map(_is_complex, out_leaves)) and not holomorphic:
            raise _complex_output_error("jacrev", "for real inputs use jacfwd")
        offsets = _offsets(out_leaves)
        chunk = chunk_size or default_chunk_size(offsets[-1], offsets[-1] + sum(
            _size(x) for x in in_leaves))
        pull = lambda *cts: (flatten(back(unflatten(out_def, cts)))[0], None)  # noqa: E731
        if holomorphic:
            _check_complex_linear("jacrev", lambda d: pull(*d)[0], out_leaves, out_leaves,
                                  in_leaves)
        rows = _concat_chunks(_batched_over_basis(pull, out_leaves, chunk)[0]) \
            if offsets[-1] else None
        blocks = [unflatten(in_def, [
            rows[j][offsets[k]:offsets[k + 1]].reshape(tuple(o.shape) + tuple(np.shape(x)))
            if rows is not None else arrays.zeros(tuple(o.shape) + tuple(np.shape(x)),
                                                  _dtype(x), like=x)
            for j, x in enumerate(in_leaves)]) for k, o in enumerate(out_leaves)]
        return _finish(blocks, out_def, argnums, args, has_aux, aux)
    return jacrev_f


def jacfwd(f: Callable, argnums: int | tuple = 0, has_aux: bool = False,
           chunk_size: int | None = None, holomorphic: bool = False) -> Callable:
    """The Jacobian by forward mode: the pushforward of the whole input basis, batched.

    The pushforward is vmapped over the identity (in chunks of `chunk_size`
    basis vectors, default `default_chunk_size`). Of complex inputs, without
    `holomorphic=True`, the outputs must be real and the basis is pushed forward twice,
    along the real and the imaginary axes: the rows are gradients, as `jacrev` gives them.

    >>> import numpy as np
    >>> jacfwd(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """
    chunk_size = checked_chunk_size(chunk_size)

    @wraps(f)
    def jacfwd_f(*args, **kwargs):
        f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
        in_leaves, in_def = flatten(selected)
        in_leaves = differentiable_inputs(in_leaves, "argument")
        primals = unflatten(in_def, in_leaves)

        def push(*tangents):
            result = pushforward(f_selected, primals, unflatten(in_def, tangents),
                                 has_aux=has_aux)
            return flatten(result[1])[0], (result[0], result[2:])

        offsets = _offsets(in_leaves)
        # The output size is unknown before the first pass: size chunks as for a square Jacobian.
        chunk = chunk_size or default_chunk_size(offsets[-1], 2 * offsets[-1])
        along_imaginary = [not holomorphic and _is_complex(x) for x in in_leaves]

        def push_basis(factors):
            if not offsets[-1]:
                return None, None, []
            chunks, (out, aux) = _batched_over_basis(push, in_leaves, chunk, factors)
            return _concat_chunks(chunks), out, aux

        columns, out, aux = push_basis([1] * len(in_leaves))
        if out is None:                      # no input elements: nothing to push
            _, (out, aux) = push(*[arrays.zeros_like_value(x) for x in in_leaves])
        out_leaves, out_def = flatten(out)
        _check_holomorphic("jacfwd", in_leaves, out_leaves, holomorphic)
        if holomorphic and offsets[-1]:
            _check_complex_linear("jacfwd", lambda d: push(*d)[0], in_leaves, out_leaves,
                                  in_leaves)
        if any(along_imaginary) and columns is not None:
            if any(map(_is_complex, out_leaves)):
                raise _complex_output_error("jacfwd of complex inputs", "otherwise use jvp")
            imaginary, _, _ = push_basis([1j if c else 1 for c in along_imaginary])

        def block(k, o, j, x):
            column = columns[k][offsets[j]:offsets[j + 1]]
            if along_imaginary[j]:        # gradient rows: d/dx - i d/dy (core/numbers.py)
                column = (column - 1j * imaginary[k][offsets[j]:offsets[j + 1]]).astype(x.dtype)
            elif not _is_inexact(o):      # zeros of x's dtype, as jacrev's
                column = column.astype(x.dtype)
            return np.moveaxis(column, 0, -1).reshape(tuple(np.shape(o)) + tuple(x.shape))

        blocks = [unflatten(in_def, [
            block(k, o, j, x) if columns is not None
            else arrays.zeros(tuple(np.shape(o)) + tuple(x.shape), x.dtype, like=x)
            for j, x in enumerate(in_leaves)]) for k, o in enumerate(out_leaves)]
        return _finish(blocks, out_def, argnums, args, has_aux, list(aux))
    return jacfwd_f


def _finish(blocks, out_def, argnums, args, has_aux, aux):
    jac = unflatten(out_def, [_per_argnum(b, argnums, len(args)) for b in blocks])
    return (jac, tree_of_their_own(aux[0], flatten(args)[0])) if has_aux else jac


JACOBIAN_MODES = ("auto", "forward", "reverse")


def jacobian(f: Callable, argnums: int | tuple = 0, mode: str = "auto",
             has_aux: bool = False, chunk_size: int | None = None,
             holomorphic: bool = False) -> Callable:
    """The Jacobian of `f`, shape `f(x).shape + x.shape`.

    `mode="forward"` pushes forward the input basis (`jacfwd`), `"reverse"` pulls
    back the output basis (`jacrev`). `"auto"` picks forward when the input has
    fewer elements than the output, and reverse otherwise: the fewer basis
    vectors, the less work (complex outputs of real inputs: forward); its blocks have
    NumPy's promotion of their output's and input's dtypes (jacfwd's have the output's,
    jacrev's the input's, as JAX's). `chunk_size`
    bounds how many go in one batched pass. `holomorphic=True`: f maps complex values to
    complex values holomorphically, and the Jacobian holds f'(z) (see `grad`).

    >>> import numpy as np
    >>> jacobian(np.sin)(np.zeros(2))
    array([[1., 0.],
           [0., 1.]])
    """
    check_mode(mode, JACOBIAN_MODES, "jacobian")

    @wraps(f)
    def jacobian_f(*args, **kwargs):
        chosen = mode
        if mode == "auto":
            f_selected, selected = _partial(lambda *a: f(*a, **kwargs), args, argnums)
            n_in = sum(_size(x) for x in flatten(selected)[0])
            out = split_aux(f_selected(*selected), has_aux)[0]
            n_out = sum(_size(o) for o in flatten(out)[0])
            complex_out = any(map(_is_complex, flatten(out)[0])) and not holomorphic
            chosen = "forward" if n_in < n_out or complex_out else "reverse"
        operator = jacfwd if chosen == "forward" else jacrev
        result = operator(f, argnums, has_aux, chunk_size, holomorphic)(*args, **kwargs)
        if mode != "auto":
            return result
        differentiated = [args[i] for i in argnums_tuple(argnums, len(args))]   # (repeats)
        return _promoted_blocks(result, out, differentiated, has_aux)
    jacobian_f.result_names = _names_for_one_array("jacobian", argnums, has_aux)
    return jacobian_f


def _promoted_blocks(result, out, inputs, has_aux):
    """`jacobian(mode="auto")`'s result with each block (output k, input j) in NumPy's
    promotion of their floating dtypes: jacfwd gives the output's dtype and jacrev the
    input's (as JAX's do), so mixed precision made the dtype depend on the shapes that
    chose the mode."""
    jac, aux = result if has_aux else (result, None)
    outs, ins = flatten(out)[0], flatten(inputs)[0]
    blocks, treedef = flatten(jac)
    if len(blocks) != len(outs) * len(ins):
        return result
    promoted = []
    for k, block in enumerate(blocks):
        o, x = outs[k // len(ins)], ins[k % len(ins)]
        if _is_inexact(o) and _is_inexact(x) and hasattr(block, "astype"):
            dtype = np.result_type(_dtype(o), _dtype(x))
            block = block if block.dtype == dtype else block.astype(dtype)
        promoted.append(block)
    jac = unflatten(treedef, promoted)
    return (jac, aux) if has_aux else jac


# ------------------------------------------------------------------ Hessians

HESSIAN_MODES = ("forward-over-reverse", "reverse-over-forward", "reverse-over-reverse",
                 "forward-over-forward")

# The eager defaults of mode "auto" are the modes measured fastest in eager mode
# (benchmarks/second_order.py): a full Hessian by pulling the basis back through the
# recorded gradient, and an HVP by differentiating the directional derivative, which never
# computes the gradient itself (forward-over-reverse computes it alongside H v: about one
# gradient more); they are the defaults. Under `jit`, "auto" stages the candidates and
# keeps the one whose optimised program costs least (ir/cost.py): after the passes the
# candidates' programs mostly coincide, and staging them all made first calls 2.5-4x
# slower, so it is asked for, not the default; the -over-forward Hessians push the whole
# basis through a batched pass per basis vector (n times the work), and forward-over-forward
# HVPs push the whole basis forward: never the cheapest but for tiny n, so not candidates.
DEFAULT_HESSIAN_MODE = "reverse-over-reverse"
DEFAULT_HVP_MODE = "reverse-over-forward"
AUTO_HESSIAN_MODES = ("reverse-over-reverse", "forward-over-reverse")
AUTO_HVP_MODES = ("reverse-over-forward", "forward-over-reverse", "reverse-over-reverse")


def _auto_mode(default: str, candidates: tuple, computing: Callable, args: tuple) -> str:
    """Mode "auto": `default` eagerly; under `jit` the candidate mode whose optimised
    program (of `computing(mode)` on `args`) is cheapest. All modes agree up to rounding."""
    if not cost.staged(args):
        return default
    best = cost.cheapest([computing(mode) for mode in candidates], args)
    return default if best is None else candidates[best]


def check_mode(mode: str, modes: tuple, function: str) -> str:
    """`mode`, one of `modes`, or a ModeError that lists them (and the closest one)."""
    if mode not in modes:
        close = difflib.get_close_matches(str(mode), modes, n=1, cutoff=0.3)
        raise ModeError(f"{function}: unknown mode {mode!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else "")
                        + f"; the modes are {', '.join(map(repr, modes))}.")
    return mode


def forward_grad(f: Callable, argnums: int | tuple = 0, has_aux: bool = False,
                 holomorphic: bool = False) -> Callable:
    """The gradient of a scalar-valued `f` by forward mode (a batched pushforward of the basis).

    Same result as `grad` (with `has_aux=True`: `(gradient, aux)`); the inner derivative
    of the "-over-forward" modes.
    """
    @wraps(f)
    def forward_grad_f(*args, **kwargs):
        def checked(*a):
            out, aux = split_aux(f(*a, **kwargs), has_aux)
            _check_scalar(out, holomorphic)
            return out, aux
        gradient, aux = jacfwd(checked, argnums, has_aux=True, holomorphic=holomorphic)(*args)
        selected = _per_argnum(_partial(f, args, argnums)[1], argnums, len(args))
        # A gradient has its input's dtype (as in reverse mode), whatever f's output dtype.
        gradient = tree_map(lambda g, x: g if g.dtype == _dtype(x) else g.astype(_dtype(x)),
                            gradient, selected)
        return (gradient, aux) if has_aux else gradient
    return forward_grad_f


def _dtype(x):
    return x.dtype if hasattr(x, "dtype") else np.result_type(float)


def _in_common_dtypes(hessian_tree, args, argnums):
    """The Hessian's block for inputs i and j in NumPy's promotion of their dtypes, whatever
    the mode (an outer forward pass gives row i's dtype, an outer reverse pass column j's)."""
    dtypes = [_dtype(x) for i in argnums_tuple(argnums, len(args))    # (repeats included)
              for x in flatten(args[i])[0]]
    if len(set(dtypes)) < 2:
        return hessian_tree
    blocks, treedef = flatten(hessian_tree)
    if len(blocks) != len(dtypes) ** 2:
        return hessian_tree
    n = len(dtypes)
    common = [np.result_type(dtypes[k // n], dtypes[k % n]) for k in range(n * n)]
    return unflatten(treedef, [b if b.dtype == d else b.astype(d)
                               for b, d in zip(blocks, common)])


def hessian(f: Callable, argnums: int | tuple = 0, mode: str = DEFAULT_HESSIAN_MODE,
            chunk_size: int | None = None, has_aux: bool = False,
            holomorphic: bool = False) -> Callable:
    """The Hessian of a scalar-valued `f`: the Jacobian of its gradient.

    `mode` names the outer and the inner differentiation: "reverse-over-reverse"
    (measured fastest eagerly: the whole basis pulled back, batched, through the
    recorded gradient), "forward-over-reverse" (a batched pushforward of the
    reverse-mode gradient), "reverse-over-forward" or "forward-over-forward"; all
    four agree. "auto" is reverse-over-reverse eagerly and, under `jit`, whichever of the
    -over-reverse modes gives the cheaper optimised program (its first call stages both). For
    pytree inputs the result is nested like JAX's: `H[i][j]` is the block for leaves i
    and j, of shape `x_i.shape + x_j.shape`. With `has_aux=True`,
    `f` returns `(out, aux)` and the result is `(hessian, aux)`. `holomorphic=True`:
    f is a holomorphic function of complex inputs, and H holds its second derivatives
    (a real-valued f of complex inputs has no complex Hessian: use `hvp`).

    >>> import numpy as np
    >>> hessian(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    check_mode(mode, HESSIAN_MODES + ("auto",), "hessian")

    def in_mode(mode):
        outer, inner = mode.split("-over-")
        gradient = (grad if inner == "reverse" else forward_grad)(f, argnums, has_aux,
                                                                  holomorphic)
        return (jacfwd if outer == "forward" else jacrev)(gradient, argnums, has_aux,
                                                          chunk_size, holomorphic)

    @wraps(f)
    def hessian_f(*args, **kwargs):
        chosen = mode if mode != "auto" else _auto_mode(
            DEFAULT_HESSIAN_MODE, AUTO_HESSIAN_MODES,
            lambda m: lambda *a: in_mode(m)(*a, **kwargs), args)
        if not holomorphic and any(map(_is_complex, flatten(_partial(f, args, argnums)[1])[0])):
            raise HolomorphicError(
                "hessian of a function of complex inputs: a real-valued function has no "
                "complex Hessian matrix (its gradient is not holomorphic). Use hvp(f, x, v) "
                "for Hessian-vector products, pass the real and imaginary parts as separate "
                "real inputs, or pass holomorphic=True for a holomorphic function.")
        if holomorphic:
            _check_holomorphic_function(f, args, kwargs, argnums, has_aux)
        result = in_mode(chosen)(*args, **kwargs)
        return (_in_common_dtypes(result[0], args, argnums), result[1]) if has_aux else \
            _in_common_dtypes(result, args, argnums)
    hessian_f.result_names = _names_for_one_array("hessian", argnums, has_aux)
    return hessian_f


def hvp(f: Callable, x: Any, v: Any, mode: str = DEFAULT_HVP_MODE) -> Any:
    """The Hessian-vector product H(x) v of a scalar-valued `f`, without forming H.

    reverse-over-forward (measured fastest eagerly) takes the gradient of the
    directional derivative; forward-over-reverse pushes v forward through the gradient;
    reverse-over-reverse pulls v back through the gradient; forward-over-forward
    differentiates the directional derivative by forward mode (one pass per input
    element: the slowest, still without storing H). "auto" is reverse-over-forward eagerly
    and, under `jit`, whichever of the first three gives the cheapest optimised program
    (its first call stages all three). `x` and `v` are pytrees of the same structure.

    >>> import numpy as np
    >>> hvp(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    array([6., 0.])
    """
    if _may_hold_dask((x, v)):
        result = on_chunks(lambda x, v: hvp(f, x, v, mode))(x, v)
        if result is not None:
            return result
    if check_mode(mode, HESSIAN_MODES + ("auto",), "hvp") == "auto":
        mode = _auto_mode(DEFAULT_HVP_MODE, AUTO_HVP_MODES,
                          lambda m: lambda x, v: hvp(f, x, v, m), (x, v))
    outer, inner = mode.split("-over-")
    x_leaves, x_def = flatten(x)
    differentiable_inputs(x_leaves, "primal")      # x's errors first, then v's against it
    v = unflatten(x_def, _vector_like_x(v, x_leaves, x_def))
    if mode == "forward-over-reverse":
        return pushforward(grad(f), (x,), (v,))[1]
    if mode == "reverse-over-reverse":
        return recorded_pullback(grad(f), x)[1](v)[0]

    def directional(y):                            # grad f(y) . v, f real and scalar
        out, tangent = pushforward(f, (y,), (v,))
        _check_scalar(out)
        return tangent
    if outer == "reverse":
        return _value_and_grad(directional, (x,), {})[1]
    return forward_grad(directional)(x)


def _vector_like_x(v, x_leaves, x_def):
    """The leaves of the vector v of a Hessian-vector product, checked to be shaped like x."""
    return matching_tree(v, x_leaves, x_def, TangentError, "vector", "x")


class HVPOperator:
    """H(x) of a scalar-valued f as a reusable linear operator (see `make_hvp`).

    Attributes: `value` = f(x), `grad` = the gradient at x, `shape` = (n, n) with
    n the number of elements of x, `dtype`.
    """

    def __init__(self, f: Callable, x: Any, mode: str):
        check_mode(mode, HESSIAN_MODES, "make_hvp")
        x = tree_map(private_copy, x)       # the recording reads x: modifying yours is safe
        self.value, self.grad = value_and_grad(f)(x)
        self._x_leaves, self._x_def = flatten(x)
        self.dtype = np.result_type(*(leaf.dtype for leaf in flatten(self.grad)[0]))
        n = sum(_size(leaf) for leaf in self._x_leaves)
        self.shape = (n, n)
        # v -> H v is linear: record it once, at v = 0, and apply its transpose (H is
        # symmetric). Only the work that depends on v is on the recording.
        zero = tree_map(arrays.zeros_like_value, self.grad)
        _, self._back = pullback(lambda v: hvp(f, x, v, mode), zero)

    def __call__(self, v: Any) -> Any:
        """H v, for v shaped like x."""
        return self._back(unflatten(self._x_def, _vector_like_x(v, self._x_leaves, self._x_def)))[0]

    matvec = __call__

    def matmat(self, vs: Any) -> Any:
        """H applied to a batch of vectors stacked along a last axis (shape x.shape + (k,))."""
        return vmap(self, in_axes=-1, out_axes=-1)(vs)

    def as_linear_operator(self):
        """A `scipy.sparse.linalg.LinearOperator` on flat vectors of length n (x real)."""
        from scipy.sparse.linalg import LinearOperator
        if any(_is_complex(leaf) for leaf in self._x_leaves):
            raise HolomorphicError(
                "as_linear_operator of an HVP at complex x: a real-valued function of complex "
                "inputs has no complex Hessian matrix (v -> H v is only real-linear, so SciPy's "
                "solvers would get wrong products). Pass the real and imaginary parts as "
                "separate real inputs, or call the operator itself on complex v.")

        shapes = [np.shape(leaf) for leaf in self._x_leaves]
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

        def unravel(flat):
            return unflatten(self._x_def, [flat[a:b].reshape(s).astype(_dtype(leaf), copy=False)
                                           for a, b, s, leaf in zip(offsets[:-1], offsets[1:],
                                                                    shapes, self._x_leaves)])

        def ravel(tree):
            return np.concatenate([np.ravel(leaf) for leaf in flatten(tree)[0]])

        def matvec(v):
            v = np.ravel(v)
            if np.iscomplexobj(v) and np.dtype(self.dtype).kind != "c":
                return matvec(v.real) + 1j * matvec(v.imag)   # H is real: part by part
            return ravel(self(unravel(v)))

        matmat = vmap(matvec, in_axes=1, out_axes=1)
        return LinearOperator(self.shape, matvec=matvec, rmatvec=matvec, matmat=matmat,
                              rmatmat=matmat, dtype=self.dtype)


def make_hvp(f: Callable, x: Any, mode: str = DEFAULT_HVP_MODE) -> HVPOperator:
    """Record the Hessian of `f` at `x` once as a linear operator; apply it to many `v`.

    The map v -> H v is recorded (in the chosen `mode`) with everything that does
    not depend on v evaluated once; each product then costs one sweep of the
    recording. The operator is callable (`op(v)`), has `.matvec`, a batched
    `.matmat`, `.value` and `.grad` at x, and `.as_linear_operator()` for SciPy.

    >>> import numpy as np
    >>> op = make_hvp(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]))
    >>> op(np.array([1.0, 1.0]))
    array([ 6., 12.])
    """
    return HVPOperator(f, x, mode)


def stop_gradient(x: Any) -> Any:
    """x with its derivative cut: a constant to every transformation (pytrees allowed).

    >>> import numpy as np
    >>> grad(lambda x: x * stop_gradient(x))(3.0)
    np.float64(3.0)
    """
    return tree_map(_stop_gradient, x)
