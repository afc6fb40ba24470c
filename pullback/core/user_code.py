"""Where in the user's code a traced value is being used: for error messages that quote it.

NumPy calls a tracer's conversion methods (`__array__`, `__float__`) from C while it
executes one of the user's statements; the statement and the bytecode instruction
running there tell what the user wrote (`y[i] = x`, `table[x]`, `np.array([x, y])`),
so the error can name the line and its fix; the frames between the two tell which SciPy
function converted the value (`library_function`).
"""
import dis
import inspect
import linecache
import os
import sys
import threading

import numpy as np
import scipy

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARIES = (_PACKAGE, os.path.dirname(np.__file__), os.path.dirname(scipy.__file__),
              "<frozen", "<pullback generated")

_DEMO = os.path.join(_PACKAGE, "demo.py")        # user code that ships with the package


def _in_library(frame):
    filename = frame.f_code.co_filename
    return filename.startswith(_LIBRARIES) and filename != _DEMO


def user_frame(depth: int = 1):
    """The innermost frame (from `depth` levels above the caller) outside pullback, NumPy
    and SciPy; None if there is none."""
    frame = sys._getframe(depth + 1)
    while frame is not None and _in_library(frame):
        frame = frame.f_back
    return frame


def _public_scipy_function(frame) -> str | None:
    """The public SciPy name of the function a frame runs ("scipy.linalg.solve"), of the
    method it runs on a public object ("scipy.stats.norm.logpdf"), or of the function a
    decorator's wrapper running there wraps (a free variable of the wrapper)."""
    candidates = [(frame.f_globals.get("__name__", ""), frame.f_code.co_name)]
    for var in frame.f_code.co_freevars:
        wrapped = frame.f_locals.get(var)
        if inspect.isfunction(wrapped):
            candidates.append((wrapped.__module__ or "", wrapped.__name__))
    for module, name in candidates:
        parts = module.split(".")
        if parts[0] != "scipy" or len(parts) < 2 or parts[1].startswith("_") or \
                name.startswith("_"):
            continue
        package = f"scipy.{parts[1]}"
        namespace = vars(sys.modules[package]) if package in sys.modules else {}
        if callable(namespace.get(name)):
            return f"{package}.{name}"
        owner = frame.f_locals.get("self")
        for attr, value in namespace.items() if owner is not None else ():
            if value is owner and not attr.startswith("_"):
                return f"{package}.{attr}.{name}"
    return None


def library_function(depth: int = 1) -> str | None:
    """The public SciPy function running outermost between the caller (from `depth` levels
    above it) and the user's code, e.g. "scipy.linalg.solve": the one the user called."""
    frame, found = sys._getframe(depth + 1), None
    while frame is not None and _in_library(frame):
        found = _public_scipy_function(frame) or found
        frame = frame.f_back
    return found


def calling_frame(depth: int = 1):
    """The innermost frame (from `depth` levels above the caller) outside pullback."""
    frame = sys._getframe(depth + 1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return frame


def instruction(frame) -> str:
    """What the frame is executing: "store" (`a[i] = v`), "subscript" (`a[i]`) or ""."""
    for ins in dis.get_instructions(frame.f_code):
        if ins.offset == frame.f_lasti:
            if ins.opname == "STORE_SUBSCR":
                return "store"
            if ins.opname == "BINARY_SUBSCR" or (ins.opname == "BINARY_OP" and ins.argrepr == "[]"):
                return "subscript"
            return ""
    return ""


def quoted(frame) -> str:
    """`file:line: code` of a frame, for an error message ("" without a frame)."""
    if frame is None:
        return ""
    code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    location = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
    return f"{location}: `{code}`" if code else location


# NumPy replaces an error raised by `float(x)` inside `y[i] = x` with its own ValueError
# ("setting an array element with a sequence", as tracers have __getitem__). The error
# is kept here (`swallowed.error`), and the transformation whose trace that ValueError
# leaves raises it instead (every trace that ends takes it: engine.new_trace).
class _Swallowed(threading.local):
    error = None                          # (a default: reading it never misses)


swallowed = _Swallowed()


def may_be_swallowed(error: Exception) -> Exception:
    """Remember `error`, which NumPy may replace with a ValueError; returns it."""
    swallowed.error = error
    return error


def filled_cell(cell) -> bool:
    """Whether a closure cell holds a value yet (a cell of a name assigned later is empty)."""
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True
