"""Loops that stay loops: `scan`, `fori_loop` and `while_loop`, each one primitive in every mode, with
checkpointing schedules that bound reverse mode's memory."""
from .api import fori_loop, scan, while_loop

__all__ = ["fori_loop", "scan", "while_loop"]
