"""Loops that stay loops: `scan` and `fori_loop` as one primitive in every mode, with
checkpointing schedules that bound reverse mode's memory."""
from .api import fori_loop, scan

__all__ = ["fori_loop", "scan"]
