"""Where values cross into and out of a transformation: checks and conversions.

Inputs to differentiate must be floating point, real or complex (arrays, NumPy
scalars, Python floats and complex numbers, or tracers of an outer transformation);
tangents and cotangents must match their primals in structure, shape and dtype. Every failure is a
`PullbackError` subclass with a message that says what to do.
"""
import numbers

import numpy as np

from .arrays import foreign_array, in_library_of, is_array, known_scalar
from .engine import Tracer
from .numbers import differentiable
from ..errors import ArgnumsError, AuxOutputError, NonDifferentiableInputError
from ..tree import LEAF, describe, flatten


# ndarray subclasses whose operations mean something else than the plain arrays' (a mask
# hides elements; `*` is a matrix product): their derivatives would be silently wrong.
REFUSED_ARRAY_TYPES = (np.ma.MaskedArray, np.matrix)


def refused_array_type(x, where: str, error_class=NonDifferentiableInputError):
    """The error for a masked array or np.matrix reaching a transformation."""
    fix = ("x.filled(value) or np.asarray(x) (which drops the mask)"
           if isinstance(x, np.ma.MaskedArray) else "np.asarray(x)")
    return error_class(
        f"{where} is a {type(x).__module__}.{type(x).__name__}, whose operations pullback "
        f"does not differentiate (they differ from plain arrays'). Convert it with {fix}.")


def refuse_unknown_shape(x, where: str, error_class):
    """Raise for an array whose shape is not known (Dask's after a boolean index: NaN
    sizes), which every transformation needs."""
    if any(size != size for size in getattr(x, "shape", ())):
        fix = " Call x.compute_chunk_sizes() first." if hasattr(x, "compute_chunk_sizes") else ""
        raise error_class(f"{where} is a {type(x).__module__}.{type(x).__name__} of unknown "
                          f"shape {tuple(x.shape)}: pullback needs every array's shape.{fix}")


def array_api_refusal(x, where: str) -> str:
    """The message refusing an array of the Array API standard that lacks NumPy's dispatch
    protocols (array-api-strict's): pullback cannot see the operations on it."""
    return (f"{where} is a {type(x).__module__}.{type(x).__name__}, an array of the Python "
            "Array API standard without NumPy's dispatch protocols (__array_function__, "
            "__array_ufunc__), through which pullback sees the operations on it. Convert it "
            "with np.asarray(x) (or np.from_dlpack(x)), or use Dask or CuPy arrays.")


def differentiable_input(x, where: str):
    """x as a real or complex floating-point array (or tracer) to differentiate with
    respect to."""
    if type(x) is np.ndarray and x.dtype.kind in "fc":      # the common case, fast
        return x
    if isinstance(x, Tracer):
        dtype = x.dtype
    elif isinstance(x, REFUSED_ARRAY_TYPES):
        raise refused_array_type(x, where)
    elif isinstance(x, np.generic) or is_array(x):
        dtype = np.dtype(x.dtype)
        refuse_unknown_shape(x, where, NonDifferentiableInputError)
    elif isinstance(x, (float, complex)):
        return np.asarray(x)
    elif isinstance(x, (bool, numbers.Integral)):
        dtype = np.asarray(x).dtype
    elif hasattr(x, "__array_namespace__"):
        raise NonDifferentiableInputError(array_api_refusal(x, where))
    else:
        raise NonDifferentiableInputError(
            f"{where} is a {type(x).__module__}.{type(x).__name__}, which pullback cannot "
            "differentiate. Pass floating-point arrays (NumPy's, or of a library that implements "
            "NumPy's dispatch protocols: Dask, CuPy ...) or Python floats, or pytrees of them "
            "(tuples, lists, dicts).")
    if not differentiable(dtype):
        kind = {"b": "boolean", "i": "integer", "u": "unsigned integer"}.get(
            dtype.kind, str(dtype))
        raise NonDifferentiableInputError(
            f"{where} has {kind} dtype {dtype}; derivatives exist only with respect to "
            "floating-point inputs (real or complex). Convert it (e.g. `x.astype(float)` or "
            "pass `3.0` instead of `3`), or leave it out of `argnums` if it is not a variable.")
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def differentiable_inputs(leaves: list, what: str) -> list:
    """`differentiable_input` of each leaf, named `<what> leaf <i>` in errors."""
    if len(leaves) == 1 and type(leaves[0]) is np.ndarray and leaves[0].dtype.kind in "fc":
        return list(leaves)                                 # one array, the common case
    return [x if type(x) is np.ndarray and x.dtype.kind in "fc"
            else differentiable_input(x, f"{what} leaf {i}") for i, x in enumerate(leaves)]


def _describe_value(x):
    return f"shape {tuple(x.shape if hasattr(x, 'shape') else np.shape(x))} and dtype " \
           f"{getattr(x, 'dtype', type(x).__name__)}"


def matching(value, reference, error_class, what: str, of: str):
    """`value` checked to have the shape and dtype of `reference` (Python scalars are cast)."""
    if type(value) is np.ndarray and (type(reference) is np.ndarray or isinstance(
            reference, np.generic) or isinstance(reference, Tracer) and foreign_array(
            reference) is None) and value.shape == reference.shape \
            and value.dtype == reference.dtype:
        return value                 # the common cases, fast (a gradient's seed among them)
    ref_shape = tuple(reference.shape if hasattr(reference, "shape") else np.shape(reference))
    ref_dtype = getattr(reference, "dtype", None)
    if ref_dtype is None:
        ref_dtype = np.asarray(reference).dtype
    if isinstance(value, (float, int, complex)) and not isinstance(value, bool) and ref_shape == ():
        if isinstance(value, complex) and np.dtype(ref_dtype).kind != "c":
            raise error_class(
                f"{what} is a complex number, but {of} is real ({_describe_value(reference)}): "
                f"its imaginary part would be dropped. Give a real {what.split()[0]}.")
        return known_scalar(value, ref_dtype, like=reference)
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, REFUSED_ARRAY_TYPES):
        raise refused_array_type(value, what, error_class)
    if not isinstance(value, (np.generic, Tracer)) and not is_array(value):
        if hasattr(value, "__array_namespace__"):
            raise error_class(array_api_refusal(value, what))
        raise error_class(f"{what} is a {type(value).__name__}; expected an array with "
                          f"{_describe_value(reference)} (like {of}).")
    shape = tuple(value.shape)
    if shape != ref_shape or value.dtype != ref_dtype:
        raise error_class(
            f"{what} has {_describe_value(value)}, but {of} has {_describe_value(reference)}. "
            f"A {what.split()[0]} must have exactly the shape and dtype of {of}"
            + (f": cast it with .astype({ref_dtype})" if shape == ref_shape else "") + ".")
    if isinstance(value, (np.ndarray, np.generic)) and foreign_array(reference) is not None:
        return in_library_of(value, reference)     # derivatives stay in the reference's library
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


def matching_tree(values, references, ref_treedef, error_class, what: str, of: str):
    """Flattened `values` checked leaf by leaf against flattened `references`."""
    if type(values) is np.ndarray and ref_treedef is LEAF:       # one array, the common case
        return [matching(values, references[0], error_class, what, of)]
    leaves, treedef = flatten(values)
    if len(leaves) == 1 and treedef == ref_treedef:          # one leaf, the common case
        return [matching(leaves[0], references[0], error_class, what, of)]
    if treedef != ref_treedef:
        raise error_class(
            f"the {what} has structure {describe(treedef)}, but the {of} has structure "
            f"{describe(ref_treedef)}; give one {what} leaf per {of} leaf, nested the same way.")
    return [matching(v, r, error_class, f"{what} leaf {i}" if len(leaves) > 1 else what, of)
            for i, (v, r) in enumerate(zip(leaves, references))]


def argnums_tuple(argnums, nargs: int) -> tuple:
    """argnums as a tuple of valid positions (an int, or a tuple or list of ints)."""
    if type(argnums) is int and -nargs <= argnums < nargs:      # the common case, fast
        return (argnums % nargs,)
    nums = (argnums,) if isinstance(argnums, numbers.Integral) else argnums
    if not isinstance(nums, (tuple, list)) or any(
            isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in nums):
        raise ArgnumsError(f"argnums={argnums!r}: give the position of the argument to "
                           "differentiate as an int (e.g. argnums=1), or several as a tuple of "
                           "ints (e.g. argnums=(0, 2)).")
    nums = tuple(int(i) for i in nums)
    if not nums:
        raise ArgnumsError("argnums is empty; name at least one argument to differentiate.")
    for i in nums:
        if not -nargs <= i < nargs:
            raise ArgnumsError(
                f"argnums={argnums!r} names argument {i!r}, but the function was called with "
                f"{nargs} positional argument(s).")
    return tuple(i % nargs for i in nums)


def split_aux(result, has_aux: bool):
    """(out, aux) of a function's result, checking the `has_aux` contract."""
    if not has_aux:
        return result, None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise AuxOutputError(
            f"with has_aux=True the function must return a pair (output, aux), but it returned "
            f"a {type(result).__name__}. Return `out, aux`, or drop has_aux=True.")
    return result[0], result[1]
