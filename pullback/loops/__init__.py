"""Control flow that stays control flow: `scan`, `fori_loop` and `while_loop`, `cond` and
`switch`, each one primitive in every mode; checkpointing schedules that bound reverse
mode's memory, and `checkpoint` for a function."""
from .api import checkpoint, cond, fori_loop, scan, switch, while_loop

__all__ = ["checkpoint", "cond", "fori_loop", "scan", "switch", "while_loop"]
