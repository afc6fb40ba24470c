"""Graph colouring of sparsity patterns, so that a few products give a whole sparse matrix.

Jacobians (Gebremedhin, Manne, Pothen, "What color is your Jacobian?", SIAM Review 47,
2005, section 3). Columns j1, j2 conflict when they have a nonzero in the same row.
Give every column a colour so that no two conflicting columns share one (a partial
distance-2 colouring of the columns, i.e. a distance-1 colouring of the column
intersection graph P^T P), and let S (n x k) have S[j, colour[j]] = 1. Then row i of the
compressed product J S holds, in column colour[j], the single nonzero J[i, j] of its
colour: every nonzero is read directly. Rows likewise (S^T J, reverse mode).

Hessians (ibid., section 4; Gebremedhin, Tarafdar, Manne, Pothen, SISC 29, 2007). H is
symmetric, so fewer colours suffice: a *star colouring* of the adjacency graph of H (a
distance-1 colouring in which every path on four vertices uses at least three colours)
lets every nonzero be read directly from H S. The rule (`star_reads`), for i < j: H[i, j]
and H[j, i] are both (H S)[i, colour[j]] when j is the only column of its colour in row
i; otherwise both are (H S)[j, colour[i]], and i is then the only column of its colour in
row j. (If both failed, with k != j of colour[j] in row i and l != i of colour[i] in row
j, then k - i - j - l would be a path on four vertices coloured with two colours.)
Diagonal entries are read from (H S)[i, colour[i]], clean because neighbours differ in
colour. Reading both entries of a pair from one place makes the result exactly symmetric.

The greedy colourings visit vertices in one of the `ORDERS`; "best" tries them all and
keeps the fewest colours (an order is abandoned as soon as it needs more than the best so
far). Whatever the order, the colouring is checked before it is returned: every
structural nonzero must be the only contribution to the product entry it is read from.
A failure is a `ColouringError`, a bug in this module, never bad input (a published star
colouring was found to mis-colour some graphs silently).

Star colouring is the distance-based greedy algorithm of GMP 2005 (section 4), with the
sets of colours that each vertex forbids to its uncoloured neighbours kept up to date as
vertices are coloured, instead of being recomputed from the 3-neighbourhood: a vertex's
work is then proportional to its degree and the number of colours, so the hub of an
arrow pattern costs nothing per leaf.
"""
import heapq
from typing import Sequence

import numpy as np
import scipy.sparse

from ..errors import OrderError, PatternError

# Tried in this sequence by order="best" (ties go to the earlier one).
ORDERS = ("largest-first", "smallest-last", "saturation-degree", "incidence-degree",
          "dynamic-largest-first", "natural")


class ColouringError(RuntimeError):
    """A colouring does not recover some nonzero: a bug in pullback.sparse (please report)."""


# ------------------------------------------------------------------ patterns

def as_pattern(pattern, what: str = "pattern") -> scipy.sparse.csr_matrix:
    """`pattern` as a boolean CSR matrix with sorted indices and only its structural nonzeros.

    Accepts a scipy.sparse matrix or array, or a dense 2-D array-like; an entry belongs to
    the pattern when it is nonzero (True, or any nonzero number, NaN included).
    """
    if scipy.sparse.issparse(pattern):
        matrix = scipy.sparse.csr_matrix(pattern, copy=True)
        if matrix.dtype.kind not in "biufc":
            raise PatternError(f"{what} has dtype {matrix.dtype}; give booleans (True where "
                               "the matrix may be nonzero) or numbers (nonzero there).")
        matrix.sum_duplicates()
        matrix.data = matrix.data != 0
    else:
        dense = np.asarray(pattern)
        if dense.ndim != 2 or dense.dtype.kind not in "biufc":
            raise PatternError(
                f"{what} must be a 2-D boolean array or a scipy.sparse matrix, but it is "
                f"{type(pattern).__name__} with shape {dense.shape} and dtype {dense.dtype}.")
        matrix = scipy.sparse.csr_matrix(dense != 0)
    matrix.eliminate_zeros()
    matrix = matrix.astype(bool)
    matrix.sort_indices()
    return matrix


def symmetric_pattern(pattern, what: str = "pattern") -> scipy.sparse.csr_matrix:
    """A square pattern made symmetric (P or P^T): a Hessian nonzero at (i, j) is one at (j, i)
    too, so either triangle, or both, may be given."""
    matrix = as_pattern(pattern, what)
    if matrix.shape[0] != matrix.shape[1]:
        raise PatternError(f"{what} has shape {matrix.shape}; a Hessian pattern is square.")
    return as_pattern(matrix + matrix.T, what)


def coordinates(pattern: scipy.sparse.csr_matrix):
    """(rows, cols) of the nonzeros of a canonical CSR pattern, in its storage order."""
    rows = np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))
    return rows, pattern.indices.astype(np.int64)


# ------------------------------------------------------------------ graphs and orders

def _adjacency(matrix: scipy.sparse.csr_matrix):
    """(indptr, indices) as Python lists of the graph whose edges are the off-diagonal
    nonzeros of a square matrix (lists: the greedy loops below index them per vertex)."""
    rows, cols = coordinates(matrix)
    off = rows != cols
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[off], minlength=matrix.shape[0]))])
    return indptr.tolist(), cols[off].tolist()


def _intersection_graph(pattern: scipy.sparse.csr_matrix):
    """The column intersection graph P^T P: columns adjacent when they share a row."""
    ones = pattern.astype(np.int32)       # counts of shared rows: no cancellation, no overflow
    product = (ones.T @ ones).tocsr()
    product.sort_indices()
    return _adjacency(product)


def _dynamic_order(indptr, indices, keys, pick_largest: bool, step: int):
    """The vertices one at a time, each time one whose key is largest (or smallest) among
    those left; then each neighbour left has its key changed by `step`. Bucket queue with
    stale entries skipped: O(V + E). Ties go to the smaller vertex number."""
    n = len(keys)
    buckets = [[] for _ in range(n + 1)]        # keys stay within 0 .. n - 1 (degrees)
    for v in range(n - 1, -1, -1):
        buckets[keys[v]].append(v)
    done = [False] * n
    current = max(keys, default=0) if pick_largest else min(keys, default=0)
    sequence = []
    while len(sequence) < n:
        bucket = buckets[current]
        while bucket and (done[bucket[-1]] or keys[bucket[-1]] != current):
            bucket.pop()
        if not bucket:
            current += -1 if pick_largest else 1
            continue
        v = bucket.pop()
        done[v] = True
        sequence.append(v)
        for w in indices[indptr[v]:indptr[v + 1]]:
            if not done[w]:
                keys[w] += step
                buckets[keys[w]].append(w)
                if (keys[w] > current) if pick_largest else (keys[w] < current):
                    current = keys[w]
    return sequence


def _saturation_order(indptr, indices, degree):
    """The sequence in which Brelaz's DSATUR colours the vertices (distance-1): next, the
    vertex whose coloured neighbours have the most distinct colours (ties: larger degree,
    then smaller number). Greedy colouring in this sequence is DSATUR's colouring."""
    n = len(degree)
    colour, neighbour_colours = [-1] * n, [set() for _ in range(n)]
    heap = [(0, -degree[v], v) for v in range(n)]
    heapq.heapify(heap)
    sequence = []
    while heap:
        saturation, _, v = heapq.heappop(heap)
        if colour[v] >= 0 or -saturation != len(neighbour_colours[v]):
            continue                                    # stale entry
        c = 0
        while c in neighbour_colours[v]:
            c += 1
        colour[v] = c
        sequence.append(v)
        for w in indices[indptr[v]:indptr[v + 1]]:
            if colour[w] < 0 and c not in neighbour_colours[w]:
                neighbour_colours[w].add(c)
                heapq.heappush(heap, (-len(neighbour_colours[w]), -degree[w], w))
    return sequence


def vertex_order(indptr, indices, order: str) -> list:
    """The vertices of a graph in one of the `ORDERS`.

    natural: 0, 1, 2, ...; largest-first: by decreasing degree; smallest-last: repeatedly
    remove a vertex of smallest degree in what is left, colour in the reverse order;
    saturation-degree: the sequence of DSATUR (next, the vertex with the most distinct
    colours among its neighbours); incidence-degree: next, the vertex with the most
    neighbours already ordered; dynamic-largest-first: next, the vertex of largest degree
    among those left.
    """
    n = len(indptr) - 1
    degree = np.diff(np.asarray(indptr, dtype=np.int64))
    if order == "natural":
        return list(range(n))
    if order == "largest-first":
        return np.argsort(-degree, kind="stable").tolist()
    if order == "smallest-last":
        return _dynamic_order(indptr, indices, degree.tolist(), False, -1)[::-1]
    if order == "saturation-degree":
        return _saturation_order(indptr, indices, degree.tolist())
    if order == "incidence-degree":
        return _dynamic_order(indptr, indices, [0] * n, True, 1)
    if order == "dynamic-largest-first":
        return _dynamic_order(indptr, indices, degree.tolist(), True, -1)
    raise _unknown_order(order)


def _unknown_order(order):
    return OrderError(f"unknown vertex order {order!r}; the orders are "
                      f"{', '.join(map(repr, ORDERS))}, 'best' (try them all), or a "
                      "permutation of the vertices.")


def _orders_to_try(order, n: int):
    """[(name, None)] for each named order to try, or [(None, permutation)] for a given one."""
    if isinstance(order, str):
        if order == "best":
            return [(name, None) for name in ORDERS]
        if order not in ORDERS:
            raise _unknown_order(order)
        return [(order, None)]
    permutation = np.asarray(order)
    if permutation.shape != (n,) or permutation.dtype.kind not in "iu" \
            or not np.array_equal(np.sort(permutation), np.arange(n)):
        raise OrderError(f"order must be a name or a permutation of the {n} vertices "
                         f"(0 .. {n - 1}, each once); got {order!r}.")
    return [(None, permutation.tolist())]


# ------------------------------------------------------------------ greedy colourings

def _distance1_greedy(indptr, indices, sequence, limit):
    """Colour the vertices in `sequence`, each with the smallest colour none of its
    neighbours has; None as soon as a vertex would need colour `limit` or more."""
    colour = [-1] * (len(indptr) - 1)
    taken_by = [-1] * (limit + 1)           # taken_by[c] == v: a neighbour of v has colour c
    for v in sequence:
        for w in indices[indptr[v]:indptr[v + 1]]:
            c = colour[w]
            if c >= 0:
                taken_by[c] = v
        c = 0
        while taken_by[c] == v:
            c += 1
        if c >= limit:
            return None
        colour[v] = c
    return colour


_MANY = -1      # in `seen`: two or more coloured neighbours have this colour


def _star_greedy(indptr, indices, sequence, limit):
    """Distance-based greedy star colouring (GMP 2005) in the order `sequence`; None once a
    vertex would need colour `limit` or more.

    Vertex v may not take: (1) the colour of a coloured neighbour w; (2) the colour of a
    coloured x two steps away through an uncoloured w (w would later sit between two
    vertices of one colour); (3) the colour of a coloured x two steps away through a
    coloured w when x has another coloured neighbour y of w's colour (v-w-x-y would use
    two colours). (2) and (3) depend on w alone, so `forbids[w]` keeps them up to date:
    for w uncoloured, the colours of its coloured neighbours; for w coloured, the colours
    of its coloured neighbours that have two or more coloured neighbours of w's colour.
    `seen[x]` maps each colour among x's coloured neighbours to the first of them, or to
    _MANY once there are two. When v is coloured, its colour never joins the set of a
    coloured neighbour w: that would need another coloured neighbour of v with w's colour,
    which (2) forbade while v was uncoloured.
    """
    n = len(indptr) - 1
    colour = [-1] * n
    forbids = [set() for _ in range(n)]
    seen = [{} for _ in range(n)]
    for v in sequence:
        neighbours = indices[indptr[v]:indptr[v + 1]]
        taken = set()
        for w in neighbours:
            if colour[w] >= 0:
                taken.add(colour[w])
            taken.update(forbids[w])
        c = 0
        while c in taken:
            c += 1
        if c >= limit:
            return None
        colour[v] = c
        own = set()
        for w in neighbours:
            cw, seen_w = colour[w], seen[w]
            first = seen_w.get(c)
            if first is None:
                seen_w[c] = v
            elif first != _MANY:
                seen_w[c] = _MANY
                if cw >= 0:                     # w now has two neighbours of colour c
                    forbids[first].add(cw)
            if cw < 0:
                forbids[w].add(c)
            elif seen_w[c] == _MANY:
                own.add(cw)
        forbids[v] = own
    return colour


def _best_colouring(indptr, indices, order, greedy):
    """(colours as an int64 array, name of the order used) with the fewest colours."""
    n = len(indptr) - 1
    best, best_name = None, None
    for name, sequence in _orders_to_try(order, n):
        if n == 0:
            return np.zeros(0, np.int64), name
        limit = n if best is None else int(best.max()) + 1
        colour = greedy(indptr, indices, sequence or vertex_order(indptr, indices, name), limit)
        if colour is not None and (best is None or max(colour) + 1 < limit):
            best, best_name = np.asarray(colour, dtype=np.int64), name
    return best, best_name


def number_of_colours(colours: np.ndarray) -> int:
    """How many colours a colouring uses (0 for no vertices)."""
    return int(colours.max()) + 1 if colours.size else 0


# ------------------------------------------------------------------ reads (the checks)

def column_reads(pattern: scipy.sparse.csr_matrix, colours: np.ndarray) -> np.ndarray:
    """For each nonzero (i, j) of `pattern` (CSR order), its index in the compressed product
    C of shape (k, m), C[c] = J s_c: colour[j] * m + i. Raises ColouringError if two
    nonzeros would be read from the same entry (the colouring is not valid)."""
    rows, cols = coordinates(pattern)
    reads = colours[cols] * pattern.shape[0] + rows
    _check_distinct(reads, rows, cols, "column")
    return reads


def row_reads(pattern: scipy.sparse.csr_matrix, colours: np.ndarray) -> np.ndarray:
    """For each nonzero (i, j) (CSR order), its index in C of shape (k, n), C[c] = s_c^T J:
    colour[i] * n + j. Raises ColouringError for an invalid row colouring."""
    rows, cols = coordinates(pattern)
    reads = colours[rows] * pattern.shape[1] + cols
    _check_distinct(reads, rows, cols, "row")
    return reads


def _check_distinct(reads, rows, cols, kind):
    order = np.argsort(reads, kind="stable")
    clash = np.flatnonzero(reads[order][1:] == reads[order][:-1])
    if clash.size:
        a, b = order[clash[0]], order[clash[0] + 1]
        raise ColouringError(
            f"invalid {kind} colouring: nonzeros ({rows[a]}, {cols[a]}) and ({rows[b]}, "
            f"{cols[b]}) would be read from the same compressed entry. This is a bug in "
            "pullback.sparse; please report it with the pattern.")


def star_reads(pattern: scipy.sparse.csr_matrix, colours: np.ndarray):
    """(reads, touched) for a symmetric pattern and a colouring of its vertices.

    C has shape (k, n), C[c] = H s_c. reads[e], for the e-th nonzero (i, j) (CSR order), is
    the index of C it is read from by the rule in the module docstring; `touched` lists
    (sorted) every entry of C that some nonzero contributes to. Raises ColouringError if
    some nonzero is not alone in any entry it could be read from.
    """
    n = pattern.shape[0]
    rows, cols = coordinates(pattern)
    touched, counts = np.unique(colours[cols] * n + rows, return_counts=True)
    low, high = np.minimum(rows, cols), np.maximum(rows, cols)
    in_low_row = colours[high] * n + low          # (H S)[low, colour[high]]
    in_high_row = colours[low] * n + high
    alone_low = counts[np.searchsorted(touched, in_low_row)] == 1
    alone_high = counts[np.searchsorted(touched, in_high_row)] == 1
    lost = np.flatnonzero(~(alone_low | alone_high))
    if lost.size:
        e = lost[0]
        raise ColouringError(
            f"invalid star colouring: H[{rows[e]}, {cols[e]}] is not alone in row {rows[e]} "
            f"among the columns of colour {colours[cols[e]]} nor in row {cols[e]} among those "
            f"of colour {colours[rows[e]]}. This is a bug in pullback.sparse; please report "
            "it with the pattern.")
    return np.where(alone_low, in_low_row, in_high_row), touched


# ------------------------------------------------------------------ colourings

def colour_columns(matrix: scipy.sparse.csr_matrix, order="best"):
    """(colours, reads, order used) for the columns of a canonical pattern (`as_pattern`)."""
    colours, used = _best_colouring(*_intersection_graph(matrix), order, _distance1_greedy)
    return colours, column_reads(matrix, colours), used


def colour_rows(matrix: scipy.sparse.csr_matrix, order="best"):
    """(colours, reads, order used) for the rows of a canonical pattern."""
    colours, used = _best_colouring(*_intersection_graph(as_pattern(matrix.T)), order,
                                    _distance1_greedy)
    return colours, row_reads(matrix, colours), used


def colour_star(matrix: scipy.sparse.csr_matrix, order="best"):
    """(colours, (reads, touched), order used) for a canonical symmetric pattern."""
    colours, used = _best_colouring(*_adjacency(matrix), order, _star_greedy)
    return colours, star_reads(matrix, colours), used


def column_colouring(pattern, order: str | Sequence[int] = "best") -> np.ndarray:
    """Colours of the columns of a Jacobian pattern (m x n): columns sharing a nonzero row
    differ. Returns an int array of length n with values 0 .. k-1.

    `order` is one of `ORDERS`, "best" (all of them, keeping the fewest colours), or a
    permutation of the columns to colour them in.

    >>> import numpy as np
    >>> column_colouring(np.array([[1, 1, 0], [0, 1, 1]], bool))
    array([1, 0, 1])
    """
    return colour_columns(as_pattern(pattern), order)[0]


def row_colouring(pattern, order: str | Sequence[int] = "best") -> np.ndarray:
    """Colours of the rows of a Jacobian pattern: rows sharing a nonzero column differ (the
    column colouring of the transpose, for reverse mode).

    >>> import numpy as np
    >>> row_colouring(np.array([[1, 0], [1, 1], [0, 1]], bool))
    array([1, 0, 1])
    """
    return colour_rows(as_pattern(pattern), order)[0]


def star_colouring(pattern, order: str | Sequence[int] = "best") -> np.ndarray:
    """A star colouring of a symmetric (Hessian) pattern: neighbours differ, and every path
    on four vertices uses at least three colours, so that every nonzero is read directly
    from H S (rule in the module docstring). The pattern is symmetrised (either triangle
    may be given); the diagonal does not affect the colouring.

    >>> import numpy as np
    >>> arrow = np.eye(4, dtype=bool); arrow[3, :] = arrow[:, 3] = True
    >>> star_colouring(arrow)
    array([1, 1, 1, 0])
    """
    return colour_star(symmetric_pattern(pattern), order)[0]
