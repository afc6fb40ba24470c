import pytest

from pullback.core.engine import trace_stack


@pytest.fixture(autouse=True)
def clean_trace_stack():
    """Every test, including those that raise inside a transformation, leaves no trace behind."""
    assert trace_stack() == []
    yield
    assert trace_stack() == [], "a transformation left its trace on the stack"
