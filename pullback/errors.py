"""Every error pullback raises on bad input: one class per failure, all under `PullbackError`.

Messages say what was wrong, what was expected, and what to do. Each class also
derives from the builtin exception a Python user would expect (`TypeError`,
`ValueError`), so existing `except` clauses keep working.
"""


class PullbackError(Exception):
    """Base class of every error pullback raises on bad input."""


class NonScalarOutputError(PullbackError, TypeError):
    """`grad` was asked for the gradient of a function whose output is not a real
    floating-point scalar."""


class CotangentError(PullbackError, ValueError):
    """A cotangent given to `back` does not match the output (shape, dtype or structure)."""


class TangentError(PullbackError, ValueError):
    """A tangent given to `pushforward` does not match its primal (shape, dtype or structure)."""


class NonDifferentiableInputError(PullbackError, TypeError):
    """Differentiation was asked with respect to an integer, boolean or non-numeric input."""


class UnsupportedFunctionError(PullbackError, TypeError):
    """A NumPy/SciPy function (or an argument of one) that pullback cannot differentiate."""


class ArrayLibraryError(UnsupportedFunctionError):
    """Another array library than NumPy (Dask, CuPy ...) lacks an operation a computation needs,
    or arrays of libraries that do not mix met."""


class ComplexValueError(UnsupportedFunctionError):
    """A complex value met a primitive that has no derivative rule for complex values."""


class HolomorphicError(PullbackError, TypeError):
    """A complex output (or input) where a derivative operator needs `holomorphic=True`, or
    that flag given for real values."""


class InPlaceMutationError(PullbackError, TypeError):
    """An in-place write into a traced array (`x[i] = v`, `out=`, `np.add.at`)."""


class ArrayAssignmentError(PullbackError, ValueError):
    """A traced value was written into a plain NumPy array (`y[i] = x`)."""


class ConcretizationError(PullbackError, TypeError):
    """A traced value was turned into a Python number, which would drop its derivative."""


class ArrayConversionError(PullbackError, TypeError):
    """Plain `np.asarray`/`np.array` was called on a traced value."""


class MemoryLayoutError(ArrayConversionError, AttributeError):
    """A traced value's memory layout (`strides`) was read; an AttributeError too, so that
    `hasattr(x, "strides")` is False."""


class EscapedTracerError(PullbackError, RuntimeError):
    """A traced value was used after the transformation that made it had finished."""


class ArgnumsError(PullbackError, ValueError):
    """`argnums` names an argument that does not exist."""


class ModeError(PullbackError, ValueError):
    """An unknown `mode` was given to jacobian, hessian, hvp or make_hvp."""


class ChunkSizeError(PullbackError, ValueError):
    """`chunk_size` is not None or a positive integer."""


class PatternError(PullbackError, ValueError):
    """A sparsity pattern is not a 2-D array or scipy.sparse matrix of the expected shape,
    or the function has a nonzero derivative outside it."""


class OrderError(PullbackError, ValueError):
    """An unknown vertex order, or a sequence that is not a permutation of the vertices."""


class PlanMismatchError(PullbackError, ValueError):
    """A sparse plan was called at an x of another shape or dtype than it was prepared for,
    or f's output no longer matches the pattern."""


class SparseStructureError(PullbackError, TypeError):
    """x or f(x) is not a single array: pullback.sparse does not take pytrees yet."""


class BatchError(PullbackError, ValueError):
    """vmap got inconsistent batch sizes or an axis outside an argument's dimensions."""


class CustomRuleError(PullbackError, TypeError):
    """A custom_jvp/custom_vjp rule is missing or returned the wrong structure, shape or dtype."""


class StaticArgumentError(PullbackError, TypeError):
    """jit's static arguments are unhashable or name no argument, or an argument that is
    not an array or a number was not marked static."""


class StagedRandomnessError(PullbackError, RuntimeError):
    """A function drew random numbers while jit/make_ir staged it: the program would freeze them."""


class LoopTypeError(PullbackError, TypeError):
    """A loop body or branch returned another structure, shape or dtype than the loop
    needs (a carry that changes type, branches that disagree), or a loop got inconsistent
    arguments (xs of different lengths, a predicate that is not a boolean scalar)."""


class CheckpointPolicyError(PullbackError, ValueError):
    """An unknown checkpointing policy (`checkpoints=` of a loop, `policy=` of checkpoint)."""


class OutsideStateError(PullbackError, RuntimeError):
    """A loop body, branch or checkpointed function changed state outside itself while it
    was staged (a list appended to, an attribute set, a nonlocal rebound)."""


class AuxOutputError(PullbackError, TypeError):
    """With `has_aux=True`, the function did not return an `(output, aux)` pair."""


class ZeroWeightsError(PullbackError, ZeroDivisionError):
    """Weights that sum to zero (`np.average`), as NumPy's ZeroDivisionError."""


def unsupported(name: str, why: str = "") -> UnsupportedFunctionError:
    """The standard message for a function pullback does not differentiate."""
    reason = f" ({why})" if why else ""
    return UnsupportedFunctionError(
        f"pullback does not support `{name}` on traced values{reason}. "
        "Rewrite the computation with supported NumPy functions (see pullback.numpy), "
        "or wrap it in a function with its own derivative rule via "
        "pullback.custom_jvp / pullback.custom_vjp.")
