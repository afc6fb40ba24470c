"""The number field of derivatives: the real numbers, for now. Every place that depends on
that choice asks this module, so adopting complex numbers is one decision here.

- `differentiable(dtype)`: the dtypes whose values have derivatives (floating point);
- `refuse_complex` / `complex_error`: complex values that meet a derivative, a complex
  dtype given where only real ones are differentiated: clear errors;
- `conj`: what a rule applies where it transposes (a cotangent is pulled back through the
  conjugate of a derivative; `primitives.contraction.adjoint`, the conjugate transpose of
  matrices, is built on it). For real values it is the identity.
"""
import numpy as np

from ..errors import ComplexValueError


def differentiable(dtype) -> bool:
    """Whether values of `dtype` have derivatives (real floating point)."""
    return np.dtype(dtype).kind == "f"


def complex_error(what: str) -> ComplexValueError:
    """The error for a complex value or dtype where pullback transforms real numbers only."""
    return ComplexValueError(
        f"{what}: pullback differentiates real numbers only, for now. Keep complex values "
        "out of differentiated code, or split them into real and imaginary parts yourself.")


def refuse_complex(out, primitive):
    """Raise if a differentiable primitive's output (or one of its outputs) is complex: a
    complex constant entered the computation (inputs to differentiate are real)."""
    for o in out if primitive.multiple_results else (out,):
        dtype = getattr(o, "dtype", None)
        if dtype is not None and dtype.kind == "c":
            raise complex_error(f"`{primitive.name}` produced a {dtype} value from a "
                                "differentiated one (a complex constant entered the computation)")


def conj(x):
    """The complex conjugate of a derivative or operand, as rules apply it where they
    transpose: x itself, since complex values never reach a rule (`refuse_complex`)."""
    return x


# Rules on hot paths skip calling `conj` while it is the identity (a Python call saved
# per elementwise derivative).
CONJ_IS_IDENTITY = True
