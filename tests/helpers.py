"""Shared test helpers."""
from contextlib import contextmanager

import pytest

from pullback import errors
from pullback.core.engine import trace_stack


@contextmanager
def raises(error_class, *fragments):
    """The block raises `error_class` (a PullbackError) with every fragment in its message,
    and leaves the trace stack empty."""
    with pytest.raises(error_class) as info:
        yield info
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert isinstance(info.value, errors.PullbackError)
    assert trace_stack() == []
