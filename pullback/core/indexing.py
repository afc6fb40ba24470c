"""Index templates: a NumPy index as hashable data (a primitive's static parameter).

An index such as `x[1:, idx, None]` is split into a template of `Slice`s, integers,
`None`, `Ellipsis` and `ArrayIndex` placeholders, and the integer index arrays the
placeholders stand for, which are passed as arrays (they may be traced).
"""
from functools import lru_cache
from typing import NamedTuple


class Slice(NamedTuple):
    """A hashable stand-in for `slice` inside an index template."""
    start: int | None
    stop: int | None
    step: int | None


class ArrayIndex(NamedTuple):
    """Placeholder in an index template for the k-th positional index array."""
    position: int


FULL = Slice(None, None, None)


def index_tuple(template, arrays):
    """The NumPy index described by a template and its index arrays."""
    if not arrays:
        return basic_index(template)
    return tuple(slice(*e) if type(e) is Slice else arrays[e.position]
                 if type(e) is ArrayIndex else e for e in template)


@lru_cache(maxsize=1024)
def basic_index(template):
    """`index_tuple` of a template without index arrays (slices are immutable: shared), one
    call fewer for hot paths that know there are none."""
    return tuple(slice(*e) if type(e) is Slice else e for e in template)
