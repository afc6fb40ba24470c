"""User-defined derivative rules: `custom_vjp` and `custom_jvp` (rules.py), served in every
mode by the higher-order primitives that call them (calls.py)."""
from .rules import custom_jvp, custom_vjp

__all__ = ["custom_jvp", "custom_vjp"]
