"""Array behaviour shared by every tracer: operators, methods, attributes, NumPy protocols.

Tracers look like arrays so that unmodified NumPy code runs on them:
`np.sin(x)` reaches `__array_ufunc__`, `np.sum(x)` reaches `__array_function__`,
and both are answered by the `pullback.numpy` function of the same name.
Conversions that would silently drop a derivative (`float(x)`, `np.asarray(x)`,
in-place writes) raise errors that say what to do instead.
"""
import builtins
import math
import re
import sys

import numpy as np

from ..errors import (ArrayAssignmentError, ArrayConversionError, ConcretizationError,
                      InPlaceMutationError, MemoryLayoutError, unsupported)
from .indexing import Slice
from .user_code import (calling_frame, instruction, library_function, may_be_swallowed, quoted,
                        user_frame)

pnp = None                 # the pullback.numpy namespace for tracers; set when it is imported
_ufunc_primitives = {}     # NumPy ufunc -> primitive, for the fast paths below
_getitem = None            # the getitem primitive, for `x[i]`'s fast path
_reshape = None            # the reshape primitive, for `x.reshape(m, n)`'s
_matmul = None             # the matmul primitive, for `x @ y`'s
_OPERANDS = None           # types that primitives take as they are, besides plain ndarrays
_stand_ins = {}            # "scipy.linalg" -> (its pullback stand-in's name, the module)
_array_namespace = None    # pullback.array_api; set by it when it is imported
_API_VERSIONS = ("2021.12", "2022.12", "2023.12", "2024.12")


def use_namespace(module, implementations):
    """Connect tracers to the pullback.numpy namespace (called once, when it is imported).
    `implementations`: its functions by name as pullback implements them, without the
    wrappers that hand calls with nothing traced to NumPy (on a tracer they only cost a
    check of every argument); methods and protocols call these."""
    global pnp, _ufunc_primitives, _OPERANDS, _getitem, _reshape, _matmul
    pnp = _Namespace(module, implementations)
    _ufunc_primitives = module.UFUNC_PRIMITIVES
    _getitem, _reshape = module.GETITEM_PRIMITIVE, module.RESHAPE_PRIMITIVE
    _matmul = module.MATMUL_PRIMITIVE
    _OPERANDS = module.OPERAND_TYPES


def ufunc_primitive(ufunc):
    """The primitive answering for the NumPy ufunc `ufunc` (None: none does)."""
    return _ufunc_primitives.get(ufunc)


def _basic_template(index):
    """The getitem template of a slice of Python ints (or None), or of a tuple of those,
    Python ints and None (common indices), else None: pullback.numpy's getitem reads any
    other."""
    kind = type(index)
    if kind is slice:
        entry = _slice_entry(index)
        return None if entry is None else (entry,)
    if kind is not tuple:
        return None
    template = []
    for entry in index:
        kind = type(entry)
        if kind is slice:
            entry = _slice_entry(entry)
            if entry is None:
                return None
        elif kind is not int and entry is not None:
            return None
        template.append(entry)
    return tuple(template)


def _slice_entry(s):
    """A slice of Python ints (or None) as a template's `Slice`, else None."""
    start, stop, step = s.start, s.stop, s.step
    if (start is None or type(start) is int) and (stop is None or type(stop) is int) \
            and (step is None or type(step) is int):
        return Slice(start, stop, step)
    return None


class _Namespace:
    """pullback.numpy as tracers call it: its attributes, `implementations` in place of the
    wrappers of the same names; any other name (added later, or NumPy's) from the module."""

    def __init__(self, module, implementations):
        self.__dict__.update(vars(module))
        self.__dict__.update(implementations)
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


def use_array_namespace(module):
    """Answer `x.__array_namespace__()` with `module` (pullback.array_api, at its import)."""
    global _array_namespace
    _array_namespace = module


def fresh_tracer(x):
    """A new tracer object with x's value and derivative (so that writing into it through
    `tracer_setitem` leaves x as it is): what a copy of a traced value is."""
    copy = object.__new__(type(x))
    for slot in _slots(type(x)):
        setattr(copy, slot, getattr(x, slot))
    return copy


def _slots(cls):
    return [slot for klass in cls.__mro__ for slot in klass.__dict__.get("__slots__", ())
            if slot != "__weakref__"]


def offer_stand_in(library: str, name: str, module):
    """Name `module` (importable as `name`) in conversion errors as the differentiable
    stand-in for the functions of `library` that it defines (called once, at its import)."""
    _stand_ins[library] = (name, module)


def stand_in_hint(function: str) -> str:
    """What to call instead of the library function `function` ("scipy.linalg.solve"), which
    converted a traced value: its differentiable namesake where pullback has one."""
    library, _, name = function.rpartition(".")
    stand_in, module = _stand_ins.get(library, (None, None))
    array_api = ARRAY_API_HINT if library.split(".")[0] in ("scipy", "sklearn") else ""
    if module is not None and callable(getattr(module, name, None)):
        return (f"`{function}` converts its inputs with np.asarray, which would drop their "
                f"derivatives. Call `{stand_in}.{name}` instead: it takes the same arguments "
                "and is differentiable." + array_api)
    return (f"`{function}` converts its inputs with np.asarray, which would drop their "
            "derivatives, and pullback has no differentiable version of it. Write the "
            "computation with NumPy functions (or those of pullback.scipy.special and "
            "pullback.scipy.linalg), or give it a derivative rule with pullback.custom_vjp / "
            "pullback.custom_jvp." + array_api)


ARRAY_API_HINT = (
    " If the function supports the Python Array API, it can run on traced values "
    "as they are: set the environment variable SCIPY_ARRAY_API=1 before SciPy is "
    "imported (and for scikit-learn also call sklearn.set_config(array_api_dispatch=True)); "
    "pass every array argument as a traced value (array namespaces cannot be mixed).")


_ARRAY_CALL = re.compile(r"\b(np|numpy)\.(as)?array\(")


def _statement_error(actions=("store", "subscript")):
    """The error for a traced value that the statement running stores into a NumPy array
    (`y[i] = x`) or indexes one with (`table[x]`), among `actions`; None for others."""
    frame = calling_frame(2)
    action = instruction(frame) if frame is not None else ""
    if action not in actions:
        return None
    statement = quoted(user_frame(2))
    if action == "store":
        return may_be_swallowed(ArrayAssignmentError(
            f"{statement}: a traced value was used in an assignment into a plain NumPy array "
            "(`y[index] = value`), which would drop its derivative. Build the array "
            "functionally: `y = pullback.numpy.at(y)[index].set(value)` (or `.add(value)`), "
            "or collect the values and `np.stack` them."))
    return ArrayConversionError(
        f"{statement}: a NumPy array was indexed with a traced value (`table[index]`), which "
        "NumPy's indexing cannot take (nor can `np.take`, which does not dispatch on its "
        "index). Write `pullback.numpy.take(table, index, axis=0)` (or another axis), or "
        "`pullback.numpy.getitem(table, index)` for any index.")


# Operands that are never tracers: with one of them (or a tracer of the same trace), a
# tracer's own trace binds an operator (what `find_top_trace` would find), one Python frame
# fewer than calling the primitive.
CONSTANT_TYPES = frozenset({np.ndarray, float, int, complex, np.float64, np.float32,
                            np.complex128, np.complex64})


def _binary(ufunc, reflected=False):
    """An operator method: the ufunc's primitive, reached without any dispatch layer."""
    def op(self, other):
        prim = _ufunc_primitives[ufunc]
        trace = self._trace
        if (type(other) in CONSTANT_TYPES or type(other) is type(self) and other._trace is trace) \
                and trace.active:                   # a constant, or a tracer of the same trace
            return trace.process_primitive(prim, (other, self) if reflected else (self, other), {})
        if type(other) is not np.ndarray and not isinstance(other, _OPERANDS):
            other = pnp.operand(other)
        return prim(other, self) if reflected else prim(self, other)
    op.__name__ = f"__{'r' if reflected else ''}{ufunc.__name__}__"
    return op


class _Probe:
    def __iadd__(self, other):
        _Probe.references = sys.getrefcount(self)
        return self


def _references_of_an_unshared_local():
    """How many references `sys.getrefcount` counts, in an augmented assignment's method,
    to an object that one local name alone refers to (the interpreter's own vary by
    version)."""
    probe = _Probe()
    probe += 0
    return _Probe.references


_UNSHARED_REFERENCES = _references_of_an_unshared_local()


def _in_place(binary, symbol):
    """An augmented assignment `x op= v` (`binary` is the operator `op`). NumPy writes the
    result into x: it keeps x's shape and dtype (casting "same_kind"), and every other name
    of the array sees it. A traced value is rebound to the result instead, which is the same
    unless another name refers to it: that is refused (checked among the names of the
    frame that runs the assignment; views, x[1:] say, are not seen), and the result keeps
    x's shape and dtype, or raises as NumPy does."""
    def op(self, other):
        result = binary(self, other)
        if result is NotImplemented:
            return NotImplemented
        if tuple(result.shape) != tuple(self.shape):
            raise ValueError(f"non-broadcastable output operand with shape {tuple(self.shape)} "
                             f"doesn't match the broadcast shape {tuple(result.shape)}")
        if result.dtype != self.dtype:
            if not np.can_cast(result.dtype, self.dtype, casting="same_kind"):
                raise InPlaceMutationError(
                    f"`x {symbol}= v` cannot cast its result from {result.dtype} to x's dtype "
                    f"{self.dtype} with casting rule 'same_kind' (an augmented assignment keeps "
                    f"the array's dtype, as in NumPy): write `x = x {symbol} v` for a new array.")
            result = result.astype(self.dtype)
        if sys.getrefcount(self) <= _UNSHARED_REFERENCES:       # one name: no alias possible
            return result
        names = [name for name, value in sys._getframe(1).f_locals.items() if value is self]
        if len(names) > 1:
            raise InPlaceMutationError(
                f"an augmented assignment `{symbol}=` to a traced array that several names refer "
                f"to ({', '.join(names)}): NumPy would change the array they all see, but a "
                "traced value cannot change in place, so only the assigned name would see it. "
                f"Write `x = x {symbol} v` to make a new array, or copy it (`y = x.copy()`) "
                "where another name must keep the old values.")
        return result
    return op


def _method(name):
    def method(self, *args, **kwargs):
        return getattr(pnp, name)(self, *args, **kwargs)
    method.__name__ = name
    method.__doc__ = f"Same as `pullback.numpy.{name}(self, ...)`."
    return method


_ASSIGNMENT_FIXES = {
    "shape": "write `x = x.reshape(shape)`",
    "dtype": "write `x = x.astype(dtype)` to convert the values (assigning a dtype "
             "reinterprets the bytes, which has no derivative)",
    "real": "build the new array, e.g. `x = new_real + 1j * x.imag`",
    "imag": "build the new array, e.g. `x = x.real + 1j * new_imag`",
}


def array_attribute(name: str, get) -> property:
    """A tracer's attribute `name` read by `get`, refused when assigned: NumPy's `x.shape = s`
    reshapes and `x.dtype = t` reinterprets an array in place, which a traced value cannot do
    (it would describe an array its value is not).

    >>> class T: shape = array_attribute("shape", lambda self: (2,))
    """
    def assign(self, value):
        raise InPlaceMutationError(
            f"`x.{name} = ...` changes a NumPy array in place; a traced array cannot change "
            f"in place: {_ASSIGNMENT_FIXES[name]}.")
    return property(get, assign, doc=f"The array's {name} (read-only).")


class ArrayMethods:
    """Mixin giving tracers the interface of a NumPy array (listed explicitly, no forwarding)."""

    __slots__ = ()
    __hash__ = None

    # ------------------------------------------------------------- attributes
    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def T(self):
        return pnp.transpose(self)

    @property
    def mT(self):
        return pnp.swapaxes(self, -1, -2)

    real = array_attribute("real", lambda self: pnp.real(self))
    imag = array_attribute("imag", lambda self: pnp.imag(self))

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self):
        return self.size * self.itemsize

    @property
    def flat(self):
        return FlatView(self)

    def view(self, dtype=None, type=None):
        if dtype is None and type in (None, np.ndarray):
            return self
        raise unsupported("x.view(dtype)", "it reinterprets the bytes of x, which has no "
                                           "derivative; use x.astype(dtype) to convert values")

    # ----------------------------------------------- the value, where it is known
    def _known_value(self, what):
        """The value as a plain array (no derivative), for what needs it: known eagerly,
        not while staged (StagingTracer overrides the error) or across a vmap batch."""
        value = pnp.stop_gradient(self)
        if isinstance(value, ArrayMethods):
            raise value._unknown_value_error(what)
        return value

    def _unknown_value_error(self, what):
        return ConcretizationError(
            f"{what} of a value that differs across a vmap batch: each example may take a "
            "different branch or give a result of another shape. Use np.where "
            "(pullback.numpy.where) to select values elementwise, pullback.cond / "
            "pullback.switch to branch and pullback.while_loop to loop (a batched loop runs "
            "until every example is done), or loop over the examples in Python.")

    def __bool__(self):
        # Concrete, as for an ndarray: a truth value has no derivative to drop.
        return bool(self._known_value("bool() (an `if`, `while`, `and`/`or`)") != 0)

    def __format__(self, spec):
        # Printing the value (a string has no derivative), e.g. f"{loss:.3f}" in eager mode.
        if not spec:
            try:
                return format(self._known_value("format()"), "")
            except ConcretizationError:
                return repr(self)
        return format(self._known_value(f"format(x, {spec!r})"), spec)

    def __round__(self, ndigits=None):
        return pnp.round(self, ndigits or 0)

    def __contains__(self, value):
        # `value in x`, as for an ndarray: (x == value).any(), a truth value of known values.
        return bool(pnp.any(self == value))

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    # Traced values are immutable, so a copy is the value itself: `copy.deepcopy` must not
    # rebuild a tracer from its parts (that would detach it from its trace and derivative).
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # -------------------------------------------------------------- operators
    __add__, __radd__ = _binary(np.add), _binary(np.add, True)
    __sub__, __rsub__ = _binary(np.subtract), _binary(np.subtract, True)
    __mul__, __rmul__ = _binary(np.multiply), _binary(np.multiply, True)
    __truediv__, __rtruediv__ = _binary(np.divide), _binary(np.divide, True)
    __floordiv__, __rfloordiv__ = _binary(np.floor_divide), _binary(np.floor_divide, True)
    __mod__, __rmod__ = _binary(np.remainder), _binary(np.remainder, True)
    __pow__, __rpow__ = _binary(np.power), _binary(np.power, True)
    __and__, __rand__ = _binary(np.bitwise_and), _binary(np.bitwise_and, True)
    __or__, __ror__ = _binary(np.bitwise_or), _binary(np.bitwise_or, True)
    __xor__, __rxor__ = _binary(np.bitwise_xor), _binary(np.bitwise_xor, True)
    __lshift__, __rlshift__ = _binary(np.left_shift), _binary(np.left_shift, True)
    __rshift__, __rrshift__ = _binary(np.right_shift), _binary(np.right_shift, True)
    __lt__, __le__ = _binary(np.less), _binary(np.less_equal)
    __gt__, __ge__ = _binary(np.greater), _binary(np.greater_equal)
    __eq__, __ne__ = _binary(np.equal), _binary(np.not_equal)

    def __divmod__(self, other):
        return pnp.divmod(self, other)

    def __rdivmod__(self, other):
        return pnp.divmod(other, self)

    def __matmul__(self, other):
        trace = self._trace
        if (type(other) is np.ndarray or type(other) is type(self) and other._trace is trace) \
                and trace.active and self.ndim and other.ndim:   # as `_binary`
            return trace.process_primitive(_matmul, (self, other), {})
        return pnp.matmul(self, other)

    def __rmatmul__(self, other):
        if type(other) is np.ndarray and self._trace.active and self.ndim and other.ndim:
            return self._trace.process_primitive(_matmul, (other, self), {})
        return pnp.matmul(other, self)

    def __neg__(self):
        if self._trace.active:               # bound by its own trace (as `_binary`)
            return self._trace.process_primitive(_ufunc_primitives[np.negative], (self,), {})
        return pnp.negative(self)

    __iadd__ = _in_place(__add__, "+")
    __isub__ = _in_place(__sub__, "-")
    __imul__ = _in_place(__mul__, "*")
    __itruediv__ = _in_place(__truediv__, "/")
    __ifloordiv__ = _in_place(__floordiv__, "//")
    __imod__ = _in_place(__mod__, "%")
    __ipow__ = _in_place(__pow__, "**")
    __imatmul__ = _in_place(__matmul__, "@")
    __iand__ = _in_place(__and__, "&")
    __ior__ = _in_place(__or__, "|")
    __ixor__ = _in_place(__xor__, "^")
    __ilshift__ = _in_place(__lshift__, "<<")
    __irshift__ = _in_place(__rshift__, ">>")

    def __pos__(self):
        return self

    def __abs__(self):
        return pnp.absolute(self)

    def __invert__(self):
        return pnp.invert(self)

    def __getitem__(self, index):
        if self._trace.active:              # x[i], x[a:b], x[i, a:]: bound by its own trace
            if type(index) is int:
                return self._trace.process_primitive(_getitem, (self,), {"index": (index,)})
            template = _basic_template(index)
            if template is not None:
                return self._trace.process_primitive(_getitem, (self,), {"index": template})
        return pnp.getitem(self, index)

    def __setitem__(self, index, value):
        if _from_array_api_extra():
            return tracer_setitem(self, index, value)
        raise InPlaceMutationError(
            "in-place assignment `x[...] = v` into a traced array is not supported: it would "
            "overwrite values the derivative needs. Use the functional update "
            "`x = pullback.numpy.at(x)[index].set(v)` (or `.add(v)`), which returns a new array.")

    # --------------------------------------------------------- the Array API
    def __array_namespace__(self, *, api_version=None):
        """pullback.array_api: the Python Array API standard (2024.12) for traced values."""
        if api_version is not None and api_version not in _API_VERSIONS:
            raise ValueError(f"api_version={api_version!r}: pullback's namespace follows "
                             f"the Array API standard 2024.12 (and {', '.join(_API_VERSIONS[:-1])})")
        return _array_namespace

    @property
    def device(self):
        return "cpu"

    def to_device(self, device, /, *, stream=None):
        if device != "cpu":
            raise unsupported("x.to_device", f"device={device!r}: traced values live on the CPU")
        return self


    # ---------------------------------------------------------------- methods
    sum = _method("sum")
    prod = _method("prod")
    mean = _method("mean")
    var = _method("var")
    std = _method("std")
    max = _method("max")
    min = _method("min")
    cumsum = _method("cumsum")
    cumprod = _method("cumprod")
    argmax = _method("argmax")
    argmin = _method("argmin")
    argsort = _method("argsort")
    nonzero = _method("nonzero")
    argpartition = _method("argpartition")
    any = _method("any")
    all = _method("all")
    ravel = _method("ravel")
    flatten = _method("ravel")
    swapaxes = _method("swapaxes")
    squeeze = _method("squeeze")
    dot = _method("dot")
    clip = _method("clip")
    round = _method("round")
    trace = _method("trace")
    diagonal = _method("diagonal")
    take = _method("take")
    repeat = _method("repeat")
    astype = _method("astype")
    copy = _method("copy")
    conj = conjugate = _method("conjugate")

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        # To a new shape of Python ints (no -1) with as many elements, bound by its own
        # trace: what pullback.numpy's reshape binds, without its frames.
        if order == "C" and self._trace.active and type(shape) is tuple and -1 not in shape \
                and shape != self.shape and math.prod(shape) == self.size \
                and builtins.all(type(n) is int for n in shape):
            return self._trace.process_primitive(_reshape, (self,), {"shape": shape})
        return pnp.reshape(self, shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = axes[0]
        return pnp.transpose(self, axes or None)

    def compress(self, condition, axis=None):
        return pnp.compress(condition, self, axis)

    def searchsorted(self, v, side="left", sorter=None):
        return pnp.searchsorted(self, v, side, sorter)

    def sort(self, *args, **kwargs):
        raise InPlaceMutationError(
            "`x.sort()` sorts a traced array in place; use `y = np.sort(x)` instead.")

    def partition(self, *args, **kwargs):
        raise InPlaceMutationError(
            "`x.partition(kth)` partitions a traced array in place; use "
            "`y = np.partition(x, kth)` instead.")

    def fill(self, value):
        raise InPlaceMutationError(
            "`x.fill(v)` overwrites a traced array in place; use `y = np.full_like(x, v)` instead.")

    def put(self, indices, values, mode="raise"):
        raise InPlaceMutationError(
            "`x.put(indices, v)` writes into a traced array in place; use "
            "`y = pullback.numpy.at(x.ravel())[indices].set(v).reshape(x.shape)` instead.")

    def resize(self, *args, **kwargs):
        raise InPlaceMutationError(
            "`x.resize(shape)` changes a traced array in place; use `y = np.resize(x, shape)` "
            "(repeating its values) or `y = np.pad(...)` instead.")

    def setflags(self, *args, **kwargs):
        raise InPlaceMutationError(
            "`x.setflags(...)` changes a traced array in place; a traced array has no memory "
            "flags to set (it cannot be written into anyway).")

    def _bytes(self, *args, **kwargs):
        raise ArrayConversionError(
            "the bytes of a traced array (`tobytes`, `tofile`, `byteswap`, `dump`) would drop "
            "its derivative; write the values out after the transformation, or call "
            "pullback.stop_gradient first for a constant.")

    tobytes = tofile = byteswap = dump = dumps = _bytes

    # ----------------------------------------------------------- conversions
    # NumPy converts values it stores or indexes with from C (`y[i] = x` calls float(x),
    # `table[x]` calls x.__array__()); the statement running tells which mistake it was.

    def _concretization_error(self, what):
        return ConcretizationError(
            f"{what} of a traced value would drop its derivative (the result would be a plain "
            "Python number that pullback can no longer follow). Keep the value as an array "
            "(e.g. use x[()] or x.reshape(()) instead of float(x)), or wrap it in "
            "pullback.stop_gradient first if you really want a constant.")

    def _number_error(self, what):
        """The error for converting this value to a Python number: for storing it into a
        NumPy array if the user's statement does that, else `_concretization_error(what)`."""
        return _statement_error(("store",)) or self._concretization_error(what)

    def __float__(self):
        raise self._number_error("float()")

    def __int__(self):
        raise self._number_error("int()")

    def __complex__(self):
        raise self._number_error("complex()")

    def __index__(self):
        raise self._concretization_error("Using it as an index (__index__)")

    def item(self, *args):
        raise self._concretization_error(".item()")

    def tolist(self):
        raise self._concretization_error(".tolist()")

    @property
    def strides(self):
        """A traced array has no memory to stride over: a library reading `x.strides` (for
        `as_strided`, as scipy.linalg's toeplitz and circulant do) gets the error naming
        its differentiable namesake; `hasattr(x, "strides")` is False."""
        function = library_function(1)
        raise MemoryLayoutError(stand_in_hint(function) if function is not None else
                              "a traced array has no memory layout (`strides`): it cannot be "
                              "viewed with `as_strided`; build the array with indexing or "
                              "`np.stack` instead.")

    def __array__(self, dtype=None, copy=None):
        error = _statement_error()
        if error is not None:
            raise error
        statement = quoted(user_frame(1))
        function = library_function(1)
        if function is not None:
            raise ArrayConversionError((f"{statement}: " if statement else "")
                                       + stand_in_hint(function))
        if _ARRAY_CALL.search(statement):
            raise ArrayConversionError(
                f"{statement}: `np.array`/`np.asarray` of traced values would drop their "
                "derivatives (NumPy builds a plain array from them). Write "
                "`pullback.numpy.array([...])` (it accepts nested lists of traced values) or "
                "`np.stack([...])` instead.")
        raise ArrayConversionError(
            (f"{statement}: " if statement else "")
            + "plain `np.asarray`/`np.array` was called on a traced value, directly or inside a "
            "library function that converts its inputs (as most of SciPy does), which would "
            "drop its derivative. Use `pullback.numpy.asarray`/`pullback.numpy.array` (they "
            "accept nested lists of traced values) or `np.stack`, call the pullback.scipy "
            "version of the library function (e.g. `pullback.scipy.special.logsumexp`), and "
            "keep the rest of the computation in NumPy functions." + ARRAY_API_HINT)

    # ------------------------------------------------------- NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and not kwargs:
            if ufunc is np.matmul and len(inputs) == 2:    # (`A @ x` of an ndarray A too)
                return self.__matmul__(inputs[1]) if inputs[0] is self \
                    else self.__rmatmul__(inputs[0])
            prim = _ufunc_primitives.get(ufunc)
            if prim is not None:       # the common case, without any dispatch layer
                if self._trace.active and (len(inputs) == 1 or len(inputs) == 2 and (
                        type(inputs[0]) in CONSTANT_TYPES or type(inputs[1]) in CONSTANT_TYPES)):
                    return self._trace.process_primitive(prim, inputs, {})   # as `_binary`
                for x in inputs:
                    if type(x) is not np.ndarray and not isinstance(x, _OPERANDS):
                        return prim(*[pnp.operand(x) for x in inputs])
                return prim(*inputs)
        return pnp.apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        implementation = pnp.DISPATCH.get(func)
        if implementation is None:
            raise unsupported(f"{getattr(func, '__module__', 'numpy')}.{func.__name__}")
        return implementation(*args, **kwargs)


def _from_array_api_extra():
    """Whether `x[i] = v` runs inside array-api-extra's `at` helper (vendored by SciPy and
    scikit-learn as `...array_api_extra._lib._at`)."""
    module = sys._getframe(2).f_globals.get("__name__", "")
    return module.startswith("array_api_extra.") or ".array_api_extra." in module


def tracer_setitem(x, index, value):
    """`x[index] = value` as array-api-extra's `at(x, index).set(value)` does it: the tracer
    object x is rebound to the functional update, which is its new value and derivative.

    Allowed there only: `at` is the functional-update idiom of Array API code, whose
    contract (shared by JAX, which never writes in place) is that the caller uses the
    returned array and nothing else reads x or a view of it afterwards. A write anywhere
    else could be read through a NumPy view, which a traced value does not have, so it
    stays refused. A boolean mask of x's shape with one value is a `where` (so it is
    staged and batched; a mask of other indexing needs known values)."""
    mask = getattr(index, "dtype", None) == np.bool_ and tuple(index.shape) == tuple(x.shape)
    if mask and pnp.ndim(value) == 0:
        value = (pnp.astype(value, x.dtype) if isinstance(value, ArrayMethods)
                 else np.asarray(value, dtype=x.dtype))
        new = pnp.where(index, value, x)
    else:
        new = pnp.at(x)[index].set(value)
    if type(new) is not type(x) or new._trace is not x._trace:
        raise InPlaceMutationError(
            "an in-place write `x[index] = value` (array-api-extra's `at`) of a value traced by "
            "an outer transformation into an inner one cannot update it in place; use "
            "`pullback.numpy.at(x)[index].set(value)`.")
    for slot in _slots(type(x)):
        setattr(x, slot, getattr(new, slot))


class FlatView:
    """`x.flat` of a traced array: reads its elements in C order (`x.flat[i]`, iteration,
    `len`); writing through it is refused like any in-place write."""

    __slots__ = ("base",)

    def __init__(self, base):
        self.base = base

    def __getitem__(self, index):
        return pnp.ravel(self.base)[index]

    def __iter__(self):
        return iter(pnp.ravel(self.base))

    def __len__(self):
        return self.base.size

    def __setitem__(self, index, value):
        if _from_array_api_extra():
            return tracer_setitem(self, index, value)
        raise InPlaceMutationError(
            "`x.flat[i] = v` writes into a traced array in place; use "
            "`y = pullback.numpy.at(x.ravel())[i].set(v).reshape(x.shape)` instead.")
