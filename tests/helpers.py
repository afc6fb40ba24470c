"""Shared test helpers."""
import importlib.util
import os
import sys
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


def benchmark_module(name):
    """A module of benchmarks/ (the problems tests share with them), loaded from its file:
    putting benchmarks/ on sys.path would let its eager.py, jit.py, sparse.py shadow
    libraries of those names in every process started later (Dask's workers import
    `sparse`)."""
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", name + ".py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def assert_matches_golden(name: str, text: str):
    """`text` equals tests/golden/<name>.py.txt, reviewed by hand once;
    PULLBACK_UPDATE_GOLDEN=1 rewrites the file instead (review the diff)."""
    path = os.path.join(GOLDEN, f"{name}.py.txt")
    if os.environ.get("PULLBACK_UPDATE_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read()


def python_calls(fn):
    """The Python function calls `fn()` makes (sys.setprofile 'call' events): work, not time."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"
    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls
