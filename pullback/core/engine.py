"""The engine: traces, tracers, levels and the per-thread trace stack.

Every transformation is a kind of `Trace` with one method, `process_primitive`,
and a kind of `Tracer` (an array-like value the trace owns). Each active trace has
a level: nested transformations get increasing levels. When a primitive is bound,
the trace with the highest level among the arguments processes it; arguments of
lower levels are constants at that level. This is what makes nesting safe: a
value from one level is never mistaken for a perturbation of another.

Traces are opened with `new_trace`, a context manager that always restores the
stack, even when the user's function raises.
"""
import threading
from contextlib import contextmanager

from ..errors import EscapedTracerError
from .array_methods import ArrayMethods
from .user_code import swallowed

class _ThreadState(threading.local):
    """This thread's trace stack and observer. Defaults as class attributes: reading one
    never misses (a missing attribute of a thread-local costs an exception, a microsecond:
    every derivative call reads them)."""
    observer = None

    def __init__(self):                   # (run in each thread on its first use)
        self.stack = []


_state = _ThreadState()


def trace_stack() -> list:
    """The active traces of this thread, innermost last."""
    return _state.stack


class Trace:
    """One active transformation. Subclasses implement `process_primitive`."""

    __slots__ = ("level", "active", "__weakref__")

    def __init__(self, level: int):
        self.level = level
        self.active = True

    def process_primitive(self, primitive, args, params):
        raise NotImplementedError  # abstract: every concrete trace overrides it


class new_trace:
    """Open a trace of `trace_class` one level above the current innermost one (a context
    manager giving the trace; a class, as cheaper to enter than a generator: derivatives
    nested in a loop open one per call)."""

    __slots__ = ("trace_class", "stack", "trace")

    def __init__(self, trace_class):
        self.trace_class = trace_class

    def __enter__(self):
        stack = self.stack = _state.stack
        trace = self.trace = self.trace_class(len(stack) + 1)
        stack.append(trace)
        return trace

    def __exit__(self, kind, error, traceback):
        ours = swallowed.error                     # taken: forgotten once a trace ends
        if ours is not None:
            swallowed.error = None
        self.trace.active = False
        self.stack.pop()
        if isinstance(error, ValueError) and ours is not None and error.__cause__ is ours:
            raise ours from error                 # NumPy replaced our error with its own
        return False


class Tracer(ArrayMethods):
    """A value owned by a trace; array-like through `ArrayMethods` (array_methods.py)."""

    __slots__ = ("_trace",)
    __array_priority__ = 1000


def find_top_trace(args):
    """The innermost trace among the tracers in `args` (there is at least one)."""
    top = None
    for a in args:
        if isinstance(a, Tracer):
            t = a._trace
            if top is None or t.level > top.level:
                top = t
            elif t.level == top.level and t is not top:
                raise _escaped()
    if not top.active:
        raise _escaped()
    return top


def _escaped():
    return EscapedTracerError(
        "a traced value was used outside the transformation that created it (for example "
        "stored in a global or a closure and used after grad/pushforward returned). "
        "Return values out of the differentiated function instead of storing them.")


# ----------------------------------------------------------------- observer
# While a function is being staged (make_ir, jit, show), the staging layer (ir/) watches
# the other transformations to make the program readable: which primal operation a
# derivative equation comes from, names such as x_bar for the cotangent of x. They
# report to the observer of their thread, if there is one; otherwise nothing is done.

def observer():
    """The object watching the transformations of this thread (while staging), or None.

    It has `derivative_of(value)` (the next operations compute the derivative of the
    primal `value`; None: of nothing) and `name_like(value, reference, suffix)`.
    """
    return _state.observer


@contextmanager
def observed_by(watcher):
    """Make `watcher` the observer of this thread while the block runs."""
    previous = observer()
    _state.observer = watcher
    try:
        yield watcher
    finally:
        _state.observer = previous
