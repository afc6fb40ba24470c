"""Sparse test problems, written once for any NumPy-like namespace M, with their exact patterns.

Each problem is `name(M, ...)` returning a function of an array, and `name_pattern(...)`
returning its exact Jacobian or Hessian sparsity pattern (boolean scipy.sparse CSR, rows
and columns in the C order of the flattened input and output): the reference for the
tests of pullback.sparse and for pattern detection. `start(name, n)` gives a point to
evaluate at.

    Jacobians: brusselator (2-D reaction-diffusion residual, 2 N^2 unknowns),
               five_point_laplacian (its diffusion part, Dirichlet: for colour counts).
    Hessians:  rosenbrock (chained), arwhead, broydn7d (CUTEst).
"""
import numpy as np
import scipy.sparse


def _csr(rows, cols, shape):
    """The boolean CSR pattern with nonzeros at (rows, cols) (repeats merged)."""
    pattern = scipy.sparse.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=shape)
    pattern.sum_duplicates()
    return pattern


# ------------------------------------------------------------------ Jacobians

BRUSSELATOR_A, BRUSSELATOR_B, BRUSSELATOR_ALPHA = 3.4, 1.0, 10.0


def brusselator(M, N):
    """The right-hand side of the 2-D Brusselator on an N x N periodic grid of [0, 1]^2.

    du/dt = B + u^2 v - (A + 1) u + alpha lap(u),  dv/dt = A u - u^2 v + alpha lap(v),
    A = 3.4, B = 1, alpha = 10, lap the 5-point Laplacian with spacing 1 / (N - 1) and
    periodic boundary: the stiff PDE of the SciML sparse-Jacobian tutorials (without
    their forcing term, a constant that does not change the Jacobian). The input and
    the output have shape (N, N, 2): the last axis is the species (u, v).
    """
    A, B = BRUSSELATOR_A, BRUSSELATOR_B
    scale = BRUSSELATOR_ALPHA * (N - 1) ** 2

    def laplacian(w):
        return (M.roll(w, 1, 0) + M.roll(w, -1, 0) + M.roll(w, 1, 1) + M.roll(w, -1, 1)
                - 4.0 * w)

    def f(x):
        u, v = x[:, :, 0], x[:, :, 1]
        u2v = u * u * v
        du = scale * laplacian(u) + B + u2v - (A + 1.0) * u
        dv = scale * laplacian(v) + A * u - u2v
        return M.stack([du, dv], axis=-1)
    return f


def brusselator_pattern(N):
    """Row (i, j, s) depends on species s at (i, j) and its four periodic neighbours, and on
    the other species at (i, j)."""
    i, j, s = (a.ravel() for a in np.meshgrid(np.arange(N), np.arange(N), np.arange(2),
                                               indexing="ij"))
    row = (i * N + j) * 2 + s
    columns = [((i + di) % N * N + (j + dj) % N) * 2 + s
               for di, dj in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    columns.append((i * N + j) * 2 + 1 - s)
    return _csr(np.tile(row, len(columns)), np.concatenate(columns), (2 * N * N, 2 * N * N))


def five_point_laplacian_pattern(N):
    """The 5-point Laplacian on an N x N grid with Dirichlet boundary (no wrap-around)."""
    i, j = (a.ravel() for a in np.meshgrid(np.arange(N), np.arange(N), indexing="ij"))
    rows, cols = [], []
    for di, dj in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        inside = (0 <= i + di) & (i + di < N) & (0 <= j + dj) & (j + dj < N)
        rows.append((i * N + j)[inside])
        cols.append(((i + di) * N + j + dj)[inside])
    return _csr(np.concatenate(rows), np.concatenate(cols), (N * N, N * N))


# ------------------------------------------------------------------ Hessians

def rosenbrock(M):
    """The chained Rosenbrock function sum_{i<n} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2
    (More, Garbow, Hillstrom's extension to n variables, as in benchmarks/eager.py;
    CUTEst GENROSE up to a constant). Tridiagonal Hessian."""
    def f(x):
        return M.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return f


def rosenbrock_pattern(n):
    """Tridiagonal."""
    return banded_pattern(n, 1)


def arwhead(M):
    """CUTEst ARWHEAD (Conn, Gould, Lescrenier, Toint 1988, problem 55):
    sum_{i<n} (x_i^2 + x_n^2)^2 - 4 x_i + 3. Arrow-head Hessian."""
    def f(x):
        return M.sum((x[:-1] ** 2 + x[-1] ** 2) ** 2 - 4.0 * x[:-1] + 3.0)
    return f


def arwhead_pattern(n):
    """The diagonal, and the last row and column."""
    i = np.arange(n)
    return _csr(np.concatenate([i, i, np.full(n, n - 1)]),
                np.concatenate([i, np.full(n, n - 1), i]), (n, n))


def broydn7d(M):
    """CUTEst BROYDN7D (Ph. Toint), n even, p = 7/3:

    sum_{i=1}^{n} |1 - x_{i-1} - 2 x_{i+1} + (3 - x_i / 2) x_i|^p
      + sum_{i=1}^{n/2} |x_i + x_{i+n/2}|^p,   with x_0 = x_{n+1} = 0.

    Seven-diagonal-like Hessian: bandwidth 2 plus the couplings (i, i + n/2).
    """
    def f(x):
        half = x.shape[0] // 2
        before = M.pad(x[:-1], (1, 0))
        after = M.pad(x[1:], (0, 1))
        element = 1.0 - before - 2.0 * after + (3.0 - x / 2.0) * x
        return M.sum(M.abs(element) ** (7.0 / 3.0)) \
            + M.sum(M.abs(x[:half] + x[half:]) ** (7.0 / 3.0))
    return f


def broydn7d_pattern(n):
    """Entries with |i - j| <= 2, and (i, i + n/2), (i + n/2, i)."""
    half = np.arange(n // 2)
    band = banded_pattern(n, 2)
    pairs = _csr(np.concatenate([half, half + n // 2]), np.concatenate([half + n // 2, half]),
                 (n, n))
    return (band + pairs).astype(bool).tocsr()


def banded_pattern(n, bandwidth):
    """Entries with |i - j| <= bandwidth."""
    i = np.arange(n)
    rows = np.concatenate([i[max(0, -k):n - max(0, k)] for k in range(-bandwidth, bandwidth + 1)])
    cols = np.concatenate([i[max(0, k):n - max(0, -k)] for k in range(-bandwidth, bandwidth + 1)])
    return _csr(rows, cols, (n, n))


# ------------------------------------------------------------------ points

def start(name, size, seed=0):
    """A point to evaluate problem `name` at: near the CUTEst starting point (1 for ARWHEAD,
    -1 for BROYDN7D), uniform in [-1, 1] for Rosenbrock, the SciML initial state plus
    noise for the Brusselator (size = N; shape (N, N, 2))."""
    rng = np.random.default_rng(seed)
    if name == "brusselator":
        grid = np.linspace(0.0, 1.0, size)
        x, y = np.meshgrid(grid, grid, indexing="ij")
        state = np.stack([22.0 * (y * (1 - y)) ** 1.5, 27.0 * (x * (1 - x)) ** 1.5], axis=-1)
        return state + rng.uniform(0.0, 0.1, state.shape)
    centre = {"arwhead": 1.0, "broydn7d": -1.0, "rosenbrock": 0.0}[name]
    return centre + rng.uniform(-0.5, 0.5, size) if centre else rng.uniform(-1.0, 1.0, size)
