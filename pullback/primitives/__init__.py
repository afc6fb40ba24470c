"""The primitives, one block each, grouped by family. Importing this registers them all."""
from ..core.primitive import REGISTRY, ZERO, Primitive  # noqa: F401
from . import contraction, elementwise, fft, linalg, reductions, special, structural  # noqa: F401
from .families import resolve_sweep_forms

resolve_sweep_forms()
