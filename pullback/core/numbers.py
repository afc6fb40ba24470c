"""The number field of derivatives: real and complex floating point, with JAX's convention
for complex values (so that results agree with JAX and autograd).

- Tangents and cotangents of complex values are complex, of the value's dtype.
- A pushforward is the derivative as a real-linear map: `f'(z) v` for holomorphic f.
- A pullback is its transpose under the real bilinear pairing `<a, b> = Re(sum(a * b))`
  (no conjugation): for holomorphic f it multiplies by `f'(z)` and a matrix product's
  pullback multiplies by the plain transpose. The gradient of a real-valued f of z = x + iy
  is then `df/dx - i df/dy` (`grad(sum(abs(z)**2)) == 2 * conj(z)`).

So the rules of holomorphic primitives are their real rules, evaluated in complex
arithmetic; non-holomorphic ones (abs, real, imag, conj, angle, sign on complex values)
have rules of their own. A primitive says which by its `complex_rules` slot; the others
refuse complex values where a derivative would meet them (`refuse_complex`).

- `differentiable(dtype)`: the dtypes whose values have derivatives (floating point,
  real or complex); `cast(v, dtype)`: a tangent or cotangent cast to its value's dtype (a
  complex one to a real dtype keeps its real part).
"""
import numpy as np

from ..errors import ComplexValueError


def differentiable(dtype) -> bool:
    """Whether values of `dtype` have derivatives (real or complex floating point)."""
    return np.dtype(dtype).kind in "fc"


def complex_error(what: str) -> ComplexValueError:
    """The error for a complex value where pullback has no complex derivative rule."""
    return ComplexValueError(
        f"{what}: pullback has no derivative rule for complex values here. Split the values "
        "into real and imaginary parts (np.real, np.imag) around it, or keep them real.")


def _is_complex(value) -> bool:
    dtype = getattr(value, "dtype", None)
    return (dtype.kind == "c") if dtype is not None else type(value) is complex


def refuse_complex(values, primitive):
    """Raise if a primitive without complex rules meets complex values (its inputs, or the
    outputs of one with zero derivative) while a derivative flows through it: its real
    rules could give a wrong value."""
    for v in values:
        if _is_complex(v):
            raise complex_error(f"`{primitive.name}` of complex values")


def cast(v, dtype):
    """v (an array or tracer) cast to `dtype`: a complex value cast to a real dtype keeps its
    real part, the transpose of the real numbers' embedding in the complex ones (and the
    pushforward of a real-valued function of complex values).

    >>> cast(np.array([1 + 2j]), np.float64)
    array([1.])
    """
    if v.dtype.kind == "c" and np.dtype(dtype).kind != "c":
        v = v.real
    return v if v.dtype == dtype else v.astype(dtype)
