import os

import pytest

# jit's fused tier compiles Numba kernels after a few calls of a signature; the suite tests
# it in test_fused.py (on the whole registry) and runs the NumPy code elsewhere, so that
# its time does not depend on how many tests call a jitted function thrice. Set
# PULLBACK_FUSED=1 to run every test with the tier.
os.environ.setdefault("PULLBACK_FUSED", "0")

from pullback.core.engine import trace_stack


@pytest.fixture(autouse=True)
def clean_trace_stack():
    """Every test, including those that raise inside a transformation, leaves no trace behind."""
    assert trace_stack() == []
    yield
    assert trace_stack() == [], "a transformation left its trace on the stack"
