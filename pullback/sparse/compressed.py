"""Sparse Jacobians and Hessians from a few compressed passes, decompressed into scipy.sparse.

Given a sparsity pattern, the columns of the Jacobian (forward mode) or its rows
(reverse mode) are coloured (`colouring.py`); one batched `vmap` of `pushforward` over
the k seed vectors s_c (s_c[j] = 1 where colour[j] = c) gives J S, or of the pullback
gives S^T J, and every nonzero is read from one entry of it. Hessians use a star
colouring and k Hessian-vector products, batched the same way. A plan
(`prepare_jacobian`, `prepare_hessian`) colours once; calling it at a new point computes
values only.

A pattern that misses a nonzero of f raises `PatternError` rather than give wrong
values. Preparing evaluates the matrix once, with one random vector v among the seeds,
and compares J v (or v^T J, H v) with the product of the decompressed matrix; a plan
whose pattern was given (`pattern=`) does so at every call, since a pattern valid at one
x may miss nonzeros at another (one more product per call; a detected pattern holds at
every x, for the values f's extra arguments and what it reads had at preparation: a call
where they differ checks a random product too). Every
call also checks the entries of the compressed products that no nonzero of the pattern
contributes to: they must be zero.

By default the pattern is detected from f's program (`detection.py`: global, valid at
every x); `pattern=` gives one instead.
"""
from typing import Callable, Sequence

import numpy as np
import scipy.sparse

from ..errors import (HolomorphicError, NonDifferentiableInputError, NonScalarOutputError,
                      PatternError, PlanMismatchError, PullbackError, SparseStructureError)
from ..loops.bodies import array_contents, function_state
from ..operators import JACOBIAN_MODES, check_mode, checked_chunk_size, default_chunk_size, hvp
from ..transforms.batching import vmap
from ..transforms.forward import pushforward
from ..transforms.reverse import pullback
from ..tree import flatten
from .colouring import (as_pattern, colour_columns, colour_rows, colour_star,
                        number_of_colours, symmetric_pattern)
from .detection import hessian_sparsity, jacobian_sparsity

# The Hessian-vector product batched over the seeds: `hvp`'s default. Batched, the three
# modes that do not push the whole basis forward measured within about 30% of one another
# on the benchmark problems, none fastest on all.
HVP_MODE = "reverse-over-forward"


def _input(x, function: str) -> np.ndarray:
    """x as a floating-point NumPy array (a Python float becomes a 0-d float64 array)."""
    if isinstance(x, float):
        return np.asarray(x)
    if type(x) is not np.ndarray and not isinstance(x, np.generic):
        raise SparseStructureError(
            f"{function} differentiates with respect to one NumPy array x (its elements, in C "
            f"order, are the columns of the matrix), but x is a {type(x).__name__}. Pass an "
            "array (np.asarray(x) converts array subclasses and lists); for several arrays, "
            "concatenate them into one vector and split it inside the function.")
    if x.dtype.kind != "f":
        raise NonDifferentiableInputError(
            f"{function}: x has dtype {x.dtype}; derivatives exist only with respect to real "
            "floating-point inputs. Convert it, e.g. x.astype(float).")
    if x.dtype == np.float16:
        raise NonDifferentiableInputError(
            f"{function}: x has dtype float16, which scipy.sparse matrices cannot hold. "
            "Convert it, e.g. x.astype(np.float32).")
    return np.asarray(x)


def _single_array(out, function: str):
    """The output of f, checked to be one array or number (no pytree)."""
    if isinstance(out, (tuple, list, dict)) or out is None:
        raise SparseStructureError(
            f"{function}: f returned a {type(out).__name__}, but pullback.sparse needs one "
            "array (its elements, in C order, are the rows of the Jacobian). Concatenate "
            "the outputs into one array.")
    return out


def _check_shape(pattern, shape, what, layout):
    if pattern.shape != shape:
        raise PatternError(f"the {what} pattern has shape {pattern.shape}, but the {what} has "
                           f"shape {shape}: {layout}, in C order (as x.ravel()).")


class SparsePlan:
    """A pattern, its colouring, and how to read each nonzero from the compressed products.

    Attributes: `shape` of the matrix, `nnz` and `density` of its pattern, `colours` (the
    number of compressed products per evaluation), `colouring` (the colour of each seeded
    vertex), `order` (the vertex order that gave it), `mode`, `pattern` (boolean CSR),
    `chunk_size` (products per batched pass), `checks_every_call` (whether each call also
    checks a random product: a pattern given by the caller may hold at one x only).
    """

    def __init__(self, f, x, args, pattern, mode, colouring, reads, touched, order, chunk_size,
                 checks_every_call):
        self.f, self.pattern, self.mode, self.order = f, pattern, mode, order
        self.checks_every_call = checks_every_call
        self._reads = _reads(f, args)
        self.colouring, self.colours = colouring, number_of_colours(colouring)
        self.shape, self.nnz = pattern.shape, pattern.nnz
        self.density = self.nnz / max(1, self.shape[0] * self.shape[1])
        self.x_shape, self.x_dtype = x.shape, x.dtype
        self._reads = reads
        # The compressed products are vectors of the output (J s), of the input (s^T J) or
        # of the input again (H s).
        self._vector_size = pattern.shape[1] if mode == "reverse" else pattern.shape[0]
        self._untouched = np.ones(self.colours * self._vector_size, bool)
        self._untouched[touched] = False
        self._seed_cache = {}
        self.chunk_size = checked_chunk_size(chunk_size) or default_chunk_size(
            self.colours + 1, 2 * max(self.shape))

    def spy(self, ax=None, **style):
        """Draw the pattern with matplotlib (an optional extra: `pip install "pullback[plot]"`),
        each nonzero coloured by the compressed product it is read from; returns the axes.

        `style` goes to `ax.scatter`.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise PullbackError('plan.spy() draws with matplotlib, which is not installed: '
                                'pip install "pullback[plot]" (or matplotlib).') from None
        if ax is None:
            ax = plt.figure(figsize=(5, 5)).add_subplot()
        rows, cols = self.pattern.nonzero()
        seeded = rows if self.mode == "reverse" else cols
        ax.scatter(cols, rows, c=self.colouring[seeded], cmap="tab10", marker="s",
                   s=style.pop("s", max(1.0, 2e4 / max(self.shape))), **style)
        ax.set_xlim(-0.5, self.shape[1] - 0.5)
        ax.set_ylim(self.shape[0] - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_title(f"{self.nnz:,} nonzeros, {self.colours} colours")
        return ax

    def __repr__(self):
        return (f"{type(self).__name__}(shape={self.shape}, nnz={self.nnz}, "
                f"density={self.density:.3g}, mode={self.mode!r}, colours={self.colours})")

    def __call__(self, x, *args) -> scipy.sparse.csr_matrix:
        """The matrix at x (for `f(x, *args)`), as CSR: values only, from the colouring."""
        if self.checks_every_call:
            return self._evaluate(self._checked(x), args, probe=_GIVEN)
        return self._evaluate(self._checked(x), args,
                              probe=self._changed(args) and _CHANGED)

    def _changed(self, args) -> bool:
        """Whether `args`, or what f reads (its closure, defaults, globals), may differ from
        what they were when the plan was prepared: a detected pattern holds for those values
        (it skips the products of a constant's zeros, and index arrays, shifts and numbers
        place its entries), so it is checked again then; and at every call where what f
        reads cannot be told (`function_state` gives up, or its arrays are too large to
        compare: loops' `array_contents`)."""
        reads = _reads(self.f, args)
        if reads is None or self._reads is None:
            return True
        try:
            return reads != self._reads
        except Exception:                       # noqa: BLE001 -- incomparable: changed
            return True

    def _products(self, x, args):
        """(product, seed shape, seed dtype): product(seed) is one compressed product."""
        raise NotImplementedError

    def _outside(self, index, members):
        """Where a stray nonzero in entry `index` of the product of colour `members` is."""
        raise NotImplementedError

    def _evaluate(self, x, args, probe):
        """The matrix at x; with `probe` (what to do if it fails), one random vector v is
        pushed through with the seeds and the matrix is checked against its product with v
        (`_check_probe`)."""
        product, shape, dtype = self._products(x, args)
        seeds = self._seeds(shape, dtype)
        if probe:
            rng = np.random.default_rng(0)
            vector = (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype(dtype)
            seeds = np.concatenate([seeds, vector[None]])
        compressed = self._compress(product, seeds)
        matrix = self._decompress(compressed[:self.colours], probe or _GIVEN)
        if probe:
            self._check_probe(matrix, vector.ravel(), compressed[self.colours], probe)
        return matrix

    def _checked(self, x) -> np.ndarray:
        """x, checked to have the shape and dtype the plan was prepared for."""
        is_array = isinstance(x, float) or type(x) is np.ndarray or isinstance(x, np.generic)
        array = np.asarray(x) if is_array else None
        if is_array and array.shape == self.x_shape and array.dtype == self.x_dtype:
            return array
        got = (f"shape {array.shape} and dtype {array.dtype}" if is_array
               else f"a {type(x).__name__}")
        fix = (f"cast it with .astype({self.x_dtype})" if is_array and array.shape == self.x_shape
               else "prepare another plan for this x")
        raise PlanMismatchError(
            f"this plan was prepared for x of shape {self.x_shape} and dtype {self.x_dtype}, "
            f"but it was called with {got}. A plan's colouring belongs to one shape and dtype: "
            f"{fix}.")

    def _seeds(self, shape, dtype) -> np.ndarray:
        """The k seed vectors, one per colour, shaped (k,) + shape (made once per shape and
        dtype, read-only)."""
        key = (tuple(shape), np.dtype(dtype))
        if key not in self._seed_cache:
            size = self.colouring.size
            seeds = np.zeros((self.colours, size), dtype)
            seeds[self.colouring, np.arange(size)] = 1
            seeds.flags.writeable = False
            self._seed_cache[key] = seeds.reshape((self.colours,) + key[0])
        return self._seed_cache[key]

    def _compress(self, product, seeds) -> np.ndarray:
        """product (a function of one seed) applied to every seed, batched in chunks:
        shape (number of seeds, vector size)."""
        count = len(seeds)
        if count == 0:
            return np.zeros((0, self._vector_size), self.x_dtype)
        chunks = [_single_array(vmap(product)(seeds[start:start + self.chunk_size]),
                                "the compressed evaluation")
                  for start in range(0, count, self.chunk_size)]
        compressed = np.concatenate(chunks) if len(chunks) > 1 else np.asarray(chunks[0])
        if compressed.dtype.kind not in "fc":  # an integer or boolean f(x): zero derivatives
            compressed = compressed.astype(self.x_dtype)
        if compressed.size != count * self._vector_size:
            raise PlanMismatchError(
                f"f's output now has {compressed.size // count} elements, but the pattern has "
                f"{self.shape[0]} rows: prepare a new plan for this f.")
        return compressed.reshape(count, self._vector_size)

    def _decompress(self, compressed, fix) -> scipy.sparse.csr_matrix:
        """The matrix from its k compressed products; a nonzero in an entry of them that no
        nonzero of the pattern contributes to is a derivative outside the pattern (`fix`:
        what to do)."""
        flat = compressed.ravel()
        stray = np.flatnonzero(flat[self._untouched])
        if stray.size:
            where = np.flatnonzero(self._untouched)[stray[0]]
            colour, index = divmod(int(where), self._vector_size)
            members = np.flatnonzero(self.colouring == colour)
            members = "[" + ", ".join(map(str, members[:8])) + (", ...]" if members.size > 8
                                                                else "]")
            if not np.isfinite(flat[where]):
                raise PatternError(
                    f"{self._outside(index, members)} has the derivative {flat[where]!r}: f's "
                    "derivatives are not finite at this x (a singular point, such as sqrt or "
                    "log at 0, where a zero tangent times an infinite partial derivative is "
                    "NaN), and a compressed product cannot tell which entry it belongs to. "
                    "Evaluate at another x, or here densely (pullback.jacobian, hessian).")
            raise PatternError(
                f"{self._outside(index, members)} has a nonzero derivative "
                f"({flat[where]!r}) that the {'given ' if self.checks_every_call else ''}"
                f"pattern does not contain. {fix}")
        return scipy.sparse.csr_matrix(
            (flat[self._reads], self.pattern.indices.copy(), self.pattern.indptr.copy()),
            shape=self.shape)

    def _check_probe(self, matrix, vector, product, fix):
        """`product` (J v, v^T J or H v, computed directly) must equal the same product of
        the decompressed matrix up to rounding: otherwise f has nonzeros outside the pattern
        that share their compressed entries with nonzeros inside it (`fix`: what to do)."""
        magnitude = abs(matrix)
        if self.mode == "reverse":
            expected, scale = vector @ matrix, np.abs(vector) @ magnitude
        else:
            expected, scale = matrix @ vector, magnitude @ np.abs(vector)
        eps = np.finfo(matrix.dtype).eps
        # (rows of non-finite entries cannot be checked; one of them made every row's
        # bound NaN (a correct pattern refused) or inf (a wrong one accepted))
        finite = np.isfinite(scale) & np.isfinite(expected)
        bound = np.sqrt(eps) * scale + 16 * eps * scale[finite].max(initial=0.0)
        wrong = np.flatnonzero(finite & ~(np.abs(product - expected) <= bound))
        if wrong.size:
            i = wrong[0]
            where = f"column {i}" if self.mode == "reverse" else f"row {i}"
            raise PatternError(
                f"the pattern misses nonzeros of the matrix: at x, {where} of its product with a "
                f"random vector is {product[i]!r}, but the entries of the pattern give "
                f"{expected[i]!r}. {fix}")


# What a failed check of a random product asks for.
_GIVEN = ("Pass a pattern with every structural nonzero (entries outside it must be zero at "
          "every x).")
_CHANGED = ("The pattern was detected with the values f's extra arguments and what it reads "
            "(closure, globals) had when the plan was prepared: it skips the products of their "
            "zeros, and index arrays or numbers among them place its entries. They changed, and "
            "the pattern no longer holds. Prepare a plan with the new values (or constants "
            "nonzero wherever they may be), or pass the pattern that holds for all of them.")


def _reads(f, args):
    """What a detected pattern depends on besides x, comparable with ==: f's state key (the
    numbers it reads), args' leaves other than arrays, and what args' arrays and the arrays
    f reads hold (loops' `array_contents`); None where that cannot be told."""
    state = function_state(f)
    if state is None:
        return None
    leaves = flatten(args)[0]
    contents = array_contents([a for a in leaves if isinstance(a, np.ndarray)] + state[1])
    return None if contents is None else \
        (state[0], [a for a in leaves if not isinstance(a, np.ndarray)], contents)


def _partial(f, args):
    return (lambda y: f(y, *args)) if args else f


class JacobianPlan(SparsePlan):
    """A prepared sparse Jacobian (see `prepare_jacobian`); `plan(x, *args)` is J at x."""

    def _products(self, x, args):
        f = _partial(self.f, args)
        if self.mode == "forward":
            return (lambda t: pushforward(f, (x,), (t,))[1]), x.shape, x.dtype
        out, back = pullback(f, x)
        out = _single_array(out, "sparse_jacobian")
        if np.size(out) != self.shape[0]:
            raise PlanMismatchError(
                f"f's output now has {np.size(out)} elements, but the pattern has "
                f"{self.shape[0]} rows: prepare a new plan for this f.")
        return (lambda ct: back(ct)[0]), np.shape(out), getattr(out, "dtype", np.result_type(out))

    def _outside(self, index, members):
        if self.mode == "forward":
            return f"element {index} of f(x), with respect to one of x's elements {members},"
        return f"one of the elements {members} of f(x), with respect to element {index} of x,"


class HessianPlan(SparsePlan):
    """A prepared sparse Hessian (see `prepare_hessian`); `plan(x, *args)` is H at x,
    symmetric CSR. Usable as `hess=` of `scipy.optimize.minimize(method="trust-constr")`."""

    def _products(self, x, args):
        f = _partial(self.f, args)
        return (lambda v: hvp(f, x, v, HVP_MODE)), x.shape, x.dtype

    def _outside(self, index, members):
        return f"row {index} of the Hessian, in one of the columns {members},"


def prepare_jacobian(f: Callable, x, *args, pattern=None, mode: str = "auto",
                     order: str | Sequence[int] = "best",
                     chunk_size: int | None = None) -> JacobianPlan:
    """Colour the sparsity pattern of the Jacobian of `f` at `x` once; the plan computes values.

    `f(x, *args)` returns one array; J has one row per element of f(x) and one column per
    element of x (both in C order). `pattern`: detected from f's program by default
    (`jacobian_sparsity`), or a boolean scipy.sparse matrix or dense array of that shape,
    True wherever J may be nonzero at any x. `mode`: "forward" colours columns and pushes
    the k seeds forward, "reverse" colours rows and pulls them back, "auto" takes the one
    with fewer colours (forward on a tie). `order`: a vertex order of `colouring.ORDERS`,
    "best" (the fewest colours over all of them) or a permutation. `chunk_size`: seeds per
    batched pass (default: all, within `default_chunk_size`'s memory bound).

    Preparing evaluates the Jacobian once at x, with one random product J v (or v^T J)
    alongside, to check the pattern: a nonzero of f outside it raises `PatternError`
    (calls of the plan check only the entries of the products that the pattern leaves
    empty, which costs nothing).

    >>> import numpy as np
    >>> plan = prepare_jacobian(np.sin, np.zeros(3), pattern=np.eye(3, dtype=bool))
    >>> plan.colours, plan.mode
    (1, 'forward')
    >>> plan(np.array([0.0, np.pi, 0.0])).toarray()
    array([[ 1.,  0.,  0.],
           [ 0., -1.,  0.],
           [ 0.,  0.,  1.]])
    """
    return _jacobian_plan(f, x, args, pattern, mode, order, chunk_size)[0]


def _jacobian_plan(f, x, args, pattern, mode, order, chunk_size):
    """(the plan, the Jacobian at x)."""
    check_mode(mode, JACOBIAN_MODES, "sparse_jacobian")
    x = _input(x, "sparse_jacobian")
    out = _single_array(f(x, *args), "sparse_jacobian")
    given = pattern is not None
    if pattern is None:
        pattern = jacobian_sparsity(f, x, *args)
    matrix = as_pattern(pattern, "the Jacobian pattern")
    _check_shape(matrix, (int(np.size(out)), x.size), "Jacobian",
                 "one row per element of f(x) and one column per element of x")
    if np.iscomplexobj(out):
        # A pullback of a real x returns Re(ct J): its rows would lose J's imaginary part.
        if mode == "reverse":
            raise HolomorphicError(
                "sparse_jacobian(mode='reverse') of a function with complex output: reverse "
                "mode's products by a real input keep the real part of the Jacobian only. "
                "Use mode='forward' (or 'auto'), whose columns keep both parts.")
        mode = "forward"
    if mode == "auto":
        # A row with r nonzeros needs r column colours (and a column, as many row colours):
        # a side whose bound exceeds the other side's count is not coloured at all.
        column_bound = int(np.diff(matrix.indptr).max(initial=0))
        row_bound = int(np.bincount(matrix.indices, minlength=x.size).max(initial=0))
        forward = reverse = None
        if column_bound <= row_bound:
            forward = colour_columns(matrix, order)
            if row_bound < number_of_colours(forward[0]):
                reverse = colour_rows(matrix, order)
        else:
            reverse = colour_rows(matrix, order)
            if column_bound <= number_of_colours(reverse[0]):
                forward = colour_columns(matrix, order)
        mode = "forward" if reverse is None or (
            forward is not None
            and number_of_colours(forward[0]) <= number_of_colours(reverse[0])) else "reverse"
        colours, reads, used = forward if mode == "forward" else reverse
    else:
        colour = colour_columns if mode == "forward" else colour_rows
        colours, reads, used = colour(matrix, order)
    plan = JacobianPlan(f, x, args, matrix, mode, colours, reads, reads, used, chunk_size, given)
    return plan, plan._evaluate(x, args, probe=_GIVEN)


def prepare_hessian(f: Callable, x, *args, pattern=None, order: str | Sequence[int] = "best",
                    chunk_size: int | None = None) -> HessianPlan:
    """Star-colour the sparsity pattern of the Hessian of a scalar `f` at `x` once; the plan
    computes values from `plan.colours` batched Hessian-vector products.

    `pattern`: detected from the program of f's gradient by default (`hessian_sparsity`),
    or an n x n boolean scipy.sparse matrix or dense array, n = x.size (C order), True
    wherever H may be nonzero at any x, diagonal included; it is symmetrised (a triangle
    is enough). The
    plan accepts extra arguments as `scipy.optimize.minimize` passes them:
    `plan(x, *args)` is the Hessian of `f(x, *args)`. `order`, `chunk_size`: as in
    `prepare_jacobian`. Preparing evaluates H once at x, with one random product H v
    alongside, to check the pattern (as `prepare_jacobian` does).

    >>> import numpy as np
    >>> f = lambda x: np.sum(x[:-1] * x[1:] ** 2)
    >>> tridiagonal = np.eye(4, dtype=bool) | np.eye(4, k=1, dtype=bool)  # a triangle is enough
    >>> plan = prepare_hessian(f, np.ones(4), pattern=tridiagonal)
    >>> plan.colours
    3
    >>> plan(np.ones(4)).toarray()
    array([[0., 2., 0., 0.],
           [2., 2., 2., 0.],
           [0., 2., 2., 2.],
           [0., 0., 2., 2.]])
    """
    return _hessian_plan(f, x, args, pattern, order, chunk_size)[0]


def _hessian_plan(f, x, args, pattern, order, chunk_size):
    """(the plan, the Hessian at x)."""
    x = _input(x, "sparse_hessian")
    out = _single_array(f(x, *args), "sparse_hessian")
    if np.shape(out) != ():
        raise NonScalarOutputError(
            f"sparse_hessian needs a function with a scalar output, but f returned shape "
            f"{np.shape(out)}. For a vector-valued function, use sparse_jacobian (of f, or of "
            "its gradient); or reduce the output explicitly if that is what you mean.")
    given = pattern is not None
    if pattern is None:
        pattern = hessian_sparsity(f, x, *args)
    matrix = symmetric_pattern(pattern, "the Hessian pattern")
    _check_shape(matrix, (x.size, x.size), "Hessian", "one row and one column per element of x")
    colours, (reads, touched), used = colour_star(matrix, order)
    plan = HessianPlan(f, x, args, matrix, HVP_MODE, colours, reads, touched, used, chunk_size,
                       given)
    return plan, plan._evaluate(x, args, probe=_GIVEN)


def sparse_jacobian(f: Callable, x, *args, pattern=None, mode: str = "auto",
                    order: str | Sequence[int] = "best",
                    chunk_size: int | None = None) -> scipy.sparse.csr_matrix:
    """The Jacobian of `f` at `x` as a scipy.sparse CSR matrix (f(x).size x x.size), exact,
    from a few compressed forward or reverse passes: what `prepare_jacobian` (see there for
    the arguments) computes at x while checking the pattern.

    >>> import numpy as np
    >>> f = lambda x: x[1:] - x[:-1] ** 2
    >>> pattern = np.eye(3, 4, dtype=bool) | np.eye(3, 4, k=1, dtype=bool)
    >>> sparse_jacobian(f, np.arange(4.0), pattern=pattern).toarray()
    array([[ 0.,  1.,  0.,  0.],
           [ 0., -2.,  1.,  0.],
           [ 0.,  0., -4.,  1.]])
    """
    return _jacobian_plan(f, x, args, pattern, mode, order, chunk_size)[1]


def sparse_hessian(f: Callable, x, *args, pattern=None, order: str | Sequence[int] = "best",
                   chunk_size: int | None = None) -> scipy.sparse.csr_matrix:
    """The Hessian of a scalar `f` at `x` as a symmetric scipy.sparse CSR matrix, exact, from
    a few batched Hessian-vector products: what `prepare_hessian` (see there) computes at x.

    >>> import numpy as np
    >>> sparse_hessian(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]),
    ...                pattern=np.eye(2, dtype=bool)).toarray()
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    return _hessian_plan(f, x, args, pattern, order, chunk_size)[1]
