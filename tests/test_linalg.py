"""numpy.linalg, differentiable: values equal NumPy's, derivatives pass `check_grads`,
`vmap` equals a loop.

Every row of ROWS is a function written once against a linalg namespace `m`
(`numpy.linalg`, reached on traced values through `__array_function__`, or
`pullback.numpy.linalg`) with its inputs: well-conditioned, full rank, with
distinct eigen/singular values, in float64 and float32, single and stacked
matrices. Rows for `eigh` and `cholesky` use non-symmetric inputs on purpose:
NumPy reads one triangle only, and the derivative must be that of exactly the
function NumPy computes. The triangular-solve primitive (no NumPy counterpart)
and the unsupported cases have their own tests.
"""
import zlib
from typing import Callable, NamedTuple

import numpy as np
import pytest

import pullback
import pullback.numpy as pnp
from pullback.errors import ConcretizationError, UnsupportedFunctionError
from pullback.operators import HESSIAN_MODES
from pullback.primitives import linalg as L
from pullback.tree import flatten


class Draw:
    """Seeded well-conditioned inputs of one dtype (one generator per row, seeded by its name)."""

    def __init__(self, name, dtype):
        self.rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
        self.dtype = np.dtype(dtype)

    def _cast(self, x):
        return x.astype(self.dtype)

    def normal(self, *shape):
        return self._cast(self.rng.standard_normal(shape))

    def invertible(self, *shape):
        """Random plus 3 I: far from singular."""
        return self._cast(self.rng.standard_normal(shape) + 3.0 * np.eye(shape[-1]))

    def spd(self, *shape):
        x = self.rng.standard_normal(shape)
        return self._cast(x @ np.swapaxes(x, -1, -2) / shape[-1] + np.eye(shape[-1]))

    def lower_spd(self, *shape):
        """SPD in the lower triangle, arbitrary above it (what cholesky ignores)."""
        return self._cast(self.spd(*shape) + np.triu(self.rng.standard_normal(shape), 1))

    def symmetric(self, *shape):
        x = self.rng.standard_normal(shape)
        return self._cast(x + np.swapaxes(x, -1, -2))

    def rank(self, r, *shape):
        """Singular values in (0.5, 2) but for n - r zeros: rank r (0: the zero matrix)."""
        n = shape[-1]
        u = np.linalg.qr(self.rng.standard_normal(shape))[0]
        v = np.linalg.qr(self.rng.standard_normal(shape))[0]
        s = self.rng.uniform(0.5, 2.0, shape[:-1]) * (np.arange(n) < r)
        return self._cast(u @ (s[..., None] * v))

    def away(self, *shape):
        """Entries of magnitude in (0.3, 1.5), random signs: away from the kinks of |x|."""
        x = self.rng.uniform(0.3, 1.5, shape) * self.rng.choice([-1.0, 1.0], shape)
        return self._cast(x)


class Row(NamedTuple):
    name: str
    fn: Callable          # fn(m, *args), m a linalg namespace
    args: Callable        # args(draw) -> tuple of arrays
    vmap: bool = True     # False: the function needs known values (lstsq's rank)


ROWS = [
    # ------------------------------------------------ solving and inverting
    Row("inv", lambda m, a: m.inv(a), lambda d: (d.invertible(3, 3),)),
    Row("inv/batched", lambda m, a: m.inv(a), lambda d: (d.invertible(2, 3, 3),)),
    Row("solve/matrix", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(3, 3), d.normal(3, 2))),
    Row("solve/vector", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(3, 3), d.normal(3))),
    Row("solve/batched", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(2, 3, 3), d.normal(2, 3, 2))),
    Row("solve/batched-vector", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(2, 3, 3), d.normal(3))),
    Row("solve/broadcast", lambda m, a, b: m.solve(a, b),
        lambda d: (d.invertible(3, 3), d.normal(2, 3, 2))),
    Row("pinv/tall", lambda m, a: m.pinv(a), lambda d: (d.normal(4, 3),)),
    Row("pinv/wide", lambda m, a: m.pinv(a), lambda d: (d.normal(2, 4),)),
    Row("pinv/square", lambda m, a: m.pinv(a), lambda d: (d.invertible(3, 3),)),
    Row("pinv/batched-rtol", lambda m, a: m.pinv(a, rtol=None), lambda d: (d.normal(2, 4, 3),)),
    Row("pinv/hermitian", lambda m, a: m.pinv(a, hermitian=True),
        lambda d: (d.invertible(3, 3),)),
    Row("matrix_power/0", lambda m, a: m.matrix_power(a, 0), lambda d: (d.normal(3, 3),)),
    Row("matrix_power/1", lambda m, a: m.matrix_power(a, 1), lambda d: (d.normal(3, 3),)),
    Row("matrix_power/5", lambda m, a: m.matrix_power(a, 5), lambda d: (d.normal(3, 3) / 3,)),
    Row("matrix_power/-3", lambda m, a: m.matrix_power(a, -3), lambda d: (d.invertible(3, 3),)),
    Row("matrix_power/batched", lambda m, a: m.matrix_power(a, 6),
        lambda d: (d.normal(2, 3, 3) / 3,)),
    # ---------------------------------------------------------- determinants
    Row("det", lambda m, a: m.det(a), lambda d: (d.invertible(3, 3),)),
    Row("det/batched", lambda m, a: m.det(a), lambda d: (d.normal(2, 3, 3),)),
    Row("det/rank-2", lambda m, a: m.det(a), lambda d: (d.rank(2, 3, 3),)),
    Row("det/rank-1-batched", lambda m, a: m.det(a), lambda d: (d.rank(1, 2, 3, 3),)),
    Row("det/zero", lambda m, a: m.det(a), lambda d: (d.rank(0, 2, 2),)),
    Row("slogdet", lambda m, a: tuple(m.slogdet(a)), lambda d: (d.invertible(3, 3),)),
    Row("slogdet/batched", lambda m, a: m.slogdet(a).logabsdet, lambda d: (d.normal(2, 3, 3),)),
    # -------------------------------------------------------- factorizations
    Row("cholesky", lambda m, a: m.cholesky(a), lambda d: (d.spd(3, 3),)),
    Row("cholesky/nonsymmetric", lambda m, a: m.cholesky(a), lambda d: (d.lower_spd(3, 3),)),
    Row("cholesky/upper", lambda m, a: m.cholesky(a, upper=True),
        lambda d: (np.swapaxes(d.lower_spd(3, 3), -1, -2),)),
    Row("cholesky/batched", lambda m, a: m.cholesky(a), lambda d: (d.lower_spd(2, 3, 3),)),
    Row("eigh", lambda m, a: tuple(m.eigh(a)), lambda d: (d.symmetric(3, 3),)),
    Row("eigh/nonsymmetric", lambda m, a: tuple(m.eigh(a)), lambda d: (d.normal(3, 3),)),
    Row("eigh/UPLO=U", lambda m, a: tuple(m.eigh(a, UPLO="U")), lambda d: (d.normal(3, 3),)),
    Row("eigh/batched", lambda m, a: tuple(m.eigh(a)), lambda d: (d.normal(2, 3, 3),)),
    Row("eigh/eigenvalues-only", lambda m, a: m.eigh(a).eigenvalues,
        lambda d: (d.normal(2, 3, 3),)),
    Row("eigvalsh", lambda m, a: m.eigvalsh(a), lambda d: (d.normal(2, 3, 3),)),
    Row("svd/square", lambda m, a: tuple(m.svd(a)), lambda d: (d.normal(3, 3),)),
    Row("svd/tall", lambda m, a: tuple(m.svd(a, full_matrices=False)),
        lambda d: (d.normal(4, 3),)),
    Row("svd/wide", lambda m, a: tuple(m.svd(a, full_matrices=False)),
        lambda d: (d.normal(2, 4),)),
    Row("svd/batched", lambda m, a: tuple(m.svd(a, full_matrices=False)),
        lambda d: (d.normal(2, 4, 3),)),
    Row("svd/U-only", lambda m, a: m.svd(a, full_matrices=False).U, lambda d: (d.normal(4, 3),)),
    Row("svd/Vh-only", lambda m, a: m.svd(a, full_matrices=False).Vh,
        lambda d: (d.normal(2, 4),)),
    Row("svd/values", lambda m, a: m.svd(a, compute_uv=False), lambda d: (d.normal(2, 3, 4),)),
    Row("svd/hermitian", lambda m, a: tuple(m.svd(a, hermitian=True)),
        lambda d: (d.normal(3, 3),)),
    Row("svd/hermitian-values", lambda m, a: m.svd(a, compute_uv=False, hermitian=True),
        lambda d: (d.normal(2, 3, 3),)),
    Row("svdvals", lambda m, a: m.svdvals(a), lambda d: (d.normal(4, 3),)),
    Row("qr/tall", lambda m, a: tuple(m.qr(a)), lambda d: (d.normal(4, 3),)),
    Row("qr/square", lambda m, a: tuple(m.qr(a)), lambda d: (d.normal(3, 3),)),
    Row("qr/batched", lambda m, a: tuple(m.qr(a)), lambda d: (d.normal(2, 4, 3),)),
    Row("qr/Q-only", lambda m, a: m.qr(a).Q, lambda d: (d.normal(4, 3),)),
    Row("qr/mode=r", lambda m, a: m.qr(a, mode="r"), lambda d: (d.normal(4, 3),)),
    Row("qr/complete-square", lambda m, a: tuple(m.qr(a, mode="complete")),
        lambda d: (d.normal(3, 3),)),
    # ----------------------------------------------------------------- norms
    Row("norm", lambda m, x: m.norm(x), lambda d: (d.normal(2, 3, 2),)),
    Row("norm/keepdims", lambda m, x: m.norm(x, keepdims=True), lambda d: (d.normal(3, 2),)),
    Row("norm/vector-fro", lambda m, x: m.norm(x, "fro"), lambda d: (d.normal(3, 2),)),
    *[Row(f"norm/vector-{ord}", lambda m, x, ord=ord: m.norm(x, ord, axis=1),
          lambda d: (d.away(2, 4, 3),))
      for ord in (None, 2, 1, np.inf, -np.inf, 0, 3, -1, 0.5)],
    Row("norm/vector-1d", lambda m, x: m.norm(x, 2), lambda d: (d.normal(4),)),
    Row("norm/vector-keepdims", lambda m, x: m.norm(x, 3, axis=-1, keepdims=True),
        lambda d: (d.away(2, 4),)),
    *[Row(f"norm/matrix-{ord}", lambda m, x, ord=ord: m.norm(x, ord, axis=(2, 0)),
          lambda d: (d.away(3, 2, 4),))
      for ord in ("fro", "nuc", 2, -2, 1, -1, np.inf, -np.inf)],
    Row("norm/matrix-2d", lambda m, x: m.norm(x, "nuc"), lambda d: (d.normal(3, 4),)),
    Row("norm/matrix-keepdims", lambda m, x: m.norm(x, 1, axis=(0, 2), keepdims=True),
        lambda d: (d.away(3, 2, 4),)),
    Row("vector_norm", lambda m, x: m.vector_norm(x), lambda d: (d.normal(2, 3, 2),)),
    *[Row(f"vector_norm/{ord}-axes", lambda m, x, ord=ord: m.vector_norm(
        x, axis=(0, 2), keepdims=True, ord=ord), lambda d: (d.away(2, 3, 4),))
      for ord in (2, 1, 3, np.inf)],
    Row("vector_norm/axis", lambda m, x: m.vector_norm(x, axis=-1), lambda d: (d.normal(3, 4),)),
    Row("matrix_norm", lambda m, x: m.matrix_norm(x), lambda d: (d.normal(2, 3, 4),)),
    Row("matrix_norm/nuc-keepdims", lambda m, x: m.matrix_norm(x, ord="nuc", keepdims=True),
        lambda d: (d.normal(2, 3, 4),)),
    *[Row(f"cond/{p}", lambda m, a, p=p: m.cond(a, p), lambda d: (d.invertible(2, 3, 3),))
      for p in (None, 2, -2, 1, -1, np.inf, "fro", "nuc")],
    Row("cond/tall", lambda m, a: m.cond(a), lambda d: (d.normal(4, 3),)),
    # ------------------------------------------- least squares, tensor solves
    Row("lstsq/tall", lambda m, a, b: tuple(m.lstsq(a, b)), lambda d: (d.normal(5, 3), d.normal(5)),
        vmap=False),
    Row("lstsq/several-rcond", lambda m, a, b: tuple(m.lstsq(a, b, rcond=1e-6)[:2]),
        lambda d: (d.normal(5, 3), d.normal(5, 2)), vmap=False),
    Row("lstsq/wide", lambda m, a, b: m.lstsq(a, b)[0], lambda d: (d.normal(2, 4), d.normal(2)),
        vmap=False),
    Row("tensorsolve", lambda m, a, b: m.tensorsolve(a, b),
        lambda d: (d.invertible(6, 6).reshape(6, 2, 3), d.normal(6))),
    Row("tensorsolve/axes", lambda m, a, b: m.tensorsolve(a, b, axes=(0, 1)),
        lambda d: (d.invertible(6, 6).reshape(2, 3, 6), d.normal(6))),
    Row("tensorinv", lambda m, a: m.tensorinv(a, ind=1),
        lambda d: (d.invertible(6, 6).reshape(6, 2, 3),)),
    Row("tensorinv/ind-2", lambda m, a: m.tensorinv(a),
        lambda d: (d.invertible(6, 6).reshape(2, 3, 3, 2),)),
    # ------------------------------------------------- products, NumPy 2 names
    Row("multi_dot", lambda m, v, a, b, w: m.multi_dot([v, a, b, w]),
        lambda d: (d.normal(4), d.normal(4, 3), d.normal(3, 2), d.normal(2))),
    Row("multi_dot/matrices", lambda m, a, b, c: m.multi_dot([a, b, c]),
        lambda d: (d.normal(2, 3), d.normal(3, 4), d.normal(4, 2))),
    Row("matmul", lambda m, a, b: m.matmul(a, b), lambda d: (d.normal(2, 3, 4), d.normal(4, 2))),
    Row("outer", lambda m, a, b: m.outer(a, b), lambda d: (d.normal(3), d.normal(2))),
    Row("cross", lambda m, a, b: m.cross(a, b), lambda d: (d.normal(2, 3), d.normal(3))),
    Row("tensordot", lambda m, a, b: m.tensordot(a, b, axes=1),
        lambda d: (d.normal(2, 3), d.normal(3, 4))),
    Row("vecdot", lambda m, a, b: m.vecdot(a, b), lambda d: (d.normal(2, 3), d.normal(3))),
    Row("matrix_transpose", lambda m, a: m.matrix_transpose(a), lambda d: (d.normal(2, 3, 4),)),
    Row("trace", lambda m, a: m.trace(a, offset=1), lambda d: (d.normal(2, 3, 4),)),
    Row("diagonal", lambda m, a: m.diagonal(a, offset=-1), lambda d: (d.normal(2, 3, 4),)),
]

NAMESPACES = {"numpy": np.linalg, "pullback.numpy": pnp.linalg}
DTYPES = [np.float64, np.float32]


def _inputs(row, dtype):
    return row.args(Draw(row.name, dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_values_equal_numpy(row, dtype):
    args = _inputs(row, dtype)
    expected, _ = flatten(row.fn(np.linalg, *args))
    got, _ = flatten(row.fn(pnp.linalg, *args))
    assert len(got) == len(expected)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for g, e in zip(got, expected):
        assert np.asarray(g).dtype == np.asarray(e).dtype
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_grads(row, dtype, namespace):
    m = NAMESPACES[namespace]
    pullback.check_grads(lambda *args: row.fn(m, *args), _inputs(row, dtype), order=2,
                         modes=("forward", "reverse"))


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_vmap_matches_a_loop(row):
    if not row.vmap:
        with pytest.raises(ConcretizationError, match="pinv"):
            pullback.vmap(lambda *args: row.fn(np.linalg, *args))(
                *[np.stack([x, x]) for x in _inputs(row, np.float64)])
        return
    examples = [[x * (1.0 + 0.05 * k) for x in _inputs(row, np.float64)] for k in range(3)]
    stacked = [np.stack(xs) for xs in zip(*examples)]
    got, _ = flatten(pullback.vmap(lambda *args: row.fn(np.linalg, *args))(*stacked))
    expected = [np.stack(outs) for outs in zip(*(flatten(row.fn(np.linalg, *xs))[0]
                                                 for xs in examples))]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)


def test_float32_derivatives_stay_float32():
    a = Draw("float32", np.float32).invertible(2, 3, 3)
    for f in (lambda a: np.sum(np.linalg.det(a)), lambda a: np.sum(np.linalg.inv(a)),
              lambda a: np.sum(np.linalg.svd(a)[1]),
              lambda a: np.sum(np.linalg.norm(a, "nuc", axis=(1, 2)))):
        assert pullback.grad(f)(a).dtype == np.float32


def test_integer_input_becomes_float64():
    a = np.array([[2, 1], [1, 3]])
    for name in ("inv", "det", "cholesky", "pinv"):
        got, expected = getattr(pnp.linalg, name)(a), getattr(np.linalg, name)(a)
        assert got.dtype == expected.dtype == np.float64
        np.testing.assert_allclose(got, expected)


def test_one_triangle_is_read():
    """eigh and cholesky ignore the other triangle: its gradient is exactly zero."""
    a = Draw("triangle", np.float64).lower_spd(3, 3)
    upper = np.triu(np.ones((3, 3)), 1).astype(bool)
    for f in (lambda a: np.sum(np.linalg.eigh(a)[1] ** 3), lambda a: np.sum(np.linalg.cholesky(a))):
        assert np.all(pullback.grad(f)(a)[upper] == 0)
    g = pullback.grad(lambda a: np.sum(np.linalg.eigh(a, UPLO="U")[0] ** 3))(a)
    assert np.all(g[upper.T] == 0)


def test_matrix_power_zero_is_the_identity_with_zero_derivative():
    a = Draw("mp0", np.float64).normal(2, 3, 3)
    identity = np.broadcast_to(np.eye(3), a.shape)
    np.testing.assert_array_equal(pnp.linalg.matrix_power(a, 0), identity)
    assert np.all(pullback.grad(lambda a: np.sum(np.linalg.matrix_power(a, 0)))(a) == 0)
    with pytest.raises(TypeError, match="exponent must be an integer"):
        pnp.linalg.matrix_power(a, 1.5)


# ------------------------------------------------------- triangular_solve


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("lower", [True, False], ids=["lower", "upper"])
@pytest.mark.parametrize("trans", [0, 1])
@pytest.mark.parametrize("shapes", [((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 1)), ((3, 3), (2, 3, 2))],
                         ids=["single", "batched", "broadcast"])
def test_triangular_solve(shapes, trans, lower, dtype):
    """scipy.linalg.solve_triangular semantics; a full matrix: the other triangle is ignored."""
    d = Draw(f"triangular_solve{shapes}", dtype)
    a, b = d.invertible(*shapes[0]), d.normal(*shapes[1])

    def f(a, b):
        return L.triangular_solve(a, b, lower=lower, trans=trans)
    triangle = np.tril(a) if lower else np.triu(a)
    expected = np.linalg.solve(np.swapaxes(triangle, -1, -2) if trans else triangle, b)
    got = f(a, b)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    pullback.check_grads(f, (a, b), order=2)


# -------------------------------------------------------- unsupported cases


def _traced(f, x):
    """Run f on a traced x (inside a gradient), as user code would."""
    return pullback.grad(lambda x: np.sum(f(x)))(x)


def test_svd_full_matrices_of_a_non_square_matrix_is_unsupported():
    a = Draw("svd-full", np.float64).normal(4, 3)
    for call in (lambda: pnp.linalg.svd(a), lambda: _traced(lambda x: np.linalg.svd(x)[0], a)):
        with pytest.raises(UnsupportedFunctionError,
                           match=r"full_matrices=True for a non-square 4x3 matrix.*"
                                 r"pass full_matrices=False"):
            call()


def test_qr_unsupported_cases():
    d = Draw("qr-unsupported", np.float64)
    wide, tall = d.normal(2, 3), d.normal(3, 2)
    with pytest.raises(UnsupportedFunctionError, match=r"wide 2x3 matrix \(m < n\)"):
        _traced(lambda x: np.linalg.qr(x)[1], wide)
    with pytest.raises(UnsupportedFunctionError, match=r"mode='complete' for a non-square 3x2"):
        pnp.linalg.qr(tall, mode="complete")
    with pytest.raises(UnsupportedFunctionError, match=r"mode='raw'"):
        pnp.linalg.qr(tall, mode="raw")
    with pytest.raises(ValueError, match="Unrecognized mode"):
        pnp.linalg.qr(tall, mode="bogus")


def test_complex_input_is_unsupported_where_there_are_no_complex_rules():
    a = np.eye(2) * (1 + 1j)
    assert set(pnp.linalg.COMPLEX_FUNCTIONS) == {"inv", "solve", "matrix_power", "det", "slogdet",
                                                 "cholesky", "eigh", "eigvalsh", "eig", "eigvals",
                                                 "svdvals", "pinv", "svd",
                                                 "norm", "vector_norm", "matrix_norm", "qr"}
    with pytest.raises(UnsupportedFunctionError, match=r"numpy.linalg.lstsq.*complex"):
        pnp.linalg.lstsq(a, a)


@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (3, 5), (2, 3, 3)])
def test_issue10_svd_of_complex_matrices_keeps_numpys_phases(shape):
    """Complex singular vectors are unique up to one phase per pair (u_k, v_k); LAPACK makes
    row 0 of v (m >= n) or of u (m < n) real, and the derivative keeps it so: it matches
    finite differences of np.linalg.svd itself, in both modes, to second order."""
    d = Draw(f"svd-complex-{shape}", np.float64)
    a = d.normal(*shape) + 1j * d.normal(*shape)
    for mine, numpys in zip(pnp.linalg.svd(a, full_matrices=False),
                            np.linalg.svd(a, full_matrices=False)):
        np.testing.assert_allclose(mine, numpys, atol=1e-12)
    pullback.check_grads(lambda a: np.linalg.svd(a, full_matrices=False), (a,), order=2)
    t = d.normal(*shape) + 1j * d.normal(*shape)
    _, (du, _, dvh) = pullback.pushforward(
        lambda a: tuple(np.linalg.svd(a, full_matrices=False)), (a,), (t,))
    real_row = dvh[..., :, 0] if shape[-2] >= shape[-1] else du[..., 0, :]
    np.testing.assert_allclose(real_row.imag, 0.0, atol=1e-12)
    h = d.normal(3, 3) + 1j * d.normal(3, 3)
    h = h + h.conj().T
    for mine, numpys in zip(pnp.linalg.svd(h, hermitian=True), np.linalg.svd(h, hermitian=True)):
        np.testing.assert_allclose(mine, numpys, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (2, 3, 3)])
def test_issue10_pinv_of_complex_matrices_to_second_order(shape):
    """Complex pinv: its rule conjugates da where the derivative does (x x^H da^H ...),
    checked against finite differences in both modes; hermitian=True reads the lower
    triangle and the real part of the diagonal, as LAPACK does."""
    d = Draw(f"pinv-complex-{shape}", np.float64)
    a = d.normal(*shape) + 1j * d.normal(*shape)
    np.testing.assert_allclose(pnp.linalg.pinv(a), np.linalg.pinv(a), atol=1e-12)
    pullback.check_grads(lambda a: np.linalg.pinv(a), (a,), order=2)
    h = d.normal(3, 3) + 1j * d.normal(3, 3)
    np.testing.assert_allclose(pnp.linalg.pinv(h, hermitian=True),
                               np.linalg.pinv(h, hermitian=True), atol=1e-12)
    pullback.check_grads(lambda h: np.linalg.pinv(h, hermitian=True), (h,), order=2)


def test_pinv_with_an_array_of_cutoffs_is_unsupported():
    a = Draw("pinv-rcond", np.float64).normal(2, 3, 3)
    with pytest.raises(UnsupportedFunctionError, match="rcond/rtol must be a constant scalar"):
        pnp.linalg.pinv(a, rcond=np.array([1e-15, 1e-10]))
    with pytest.raises(ValueError, match="can't be both set"):
        pnp.linalg.pinv(a, rcond=1e-15, rtol=1e-15)


def _general(d, *shape, complex_=False):
    """A diagonalizable matrix (stack) with well-separated eigenvalues, a complex pair among
    them when real: p diag(w) p^-1 with a well-conditioned p."""
    n = shape[-1]
    p = np.eye(n) + 0.3 * d.rng.standard_normal(shape)
    w = np.diag(np.arange(1.0, n + 1.0))
    if n >= 2:
        w[..., :2, :2] = [[1.0, -1.5], [1.5, 1.0]]     # eigenvalues 1 +- 1.5i
    a = p @ w @ np.linalg.inv(p)
    if complex_:
        a = a + 1j * (p @ np.diag(np.linspace(-1.0, 1.0, n)) @ np.linalg.inv(p))
    return d._cast(a) if not complex_ else a.astype(np.result_type(d.dtype, np.complex64))


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_issue10_eig_values_and_derivatives_to_second_order(dtype, complex_):
    """eig and eigvals equal NumPy's (cast to complex) and match finite differences to second
    order in both modes, on single matrices and stacks."""
    d = Draw(f"eig-{complex_}", dtype)
    for a in (_general(d, 3, 3, complex_=complex_), _general(d, 2, 3, 3, complex_=complex_)):
        w, v = pnp.linalg.eig(a)
        w_np, v_np = np.linalg.eig(a)
        assert w.dtype == v.dtype == np.result_type(a.dtype, np.complex64)
        np.testing.assert_array_equal(w, w_np)
        np.testing.assert_array_equal(v, v_np)
        pullback.check_grads(lambda a: np.linalg.eig(a), (a,), order=2)
        pullback.check_grads(lambda a: np.linalg.eigvals(a), (a,), order=2)


def test_issue10_eig_eigenvector_derivatives_keep_numpys_normalisation():
    """Eigenvectors are unique up to a complex scale each; NumPy's have unit norm and their
    largest component real, and so do their tangents (the gauge is NumPy's, not JAX's)."""
    d = Draw("eig-gauge", np.float64)
    a = _general(d, 4, 4, complex_=True)
    t = d.rng.standard_normal((4, 4)) + 1j * d.rng.standard_normal((4, 4))
    (w, v), (dw, dv) = pullback.pushforward(lambda a: tuple(np.linalg.eig(a)), (a,), (t,))
    np.testing.assert_allclose(np.real(np.sum(np.conj(v) * dv, axis=0)), 0.0, atol=1e-12)
    largest = np.argmax(np.abs(v), axis=0)
    np.testing.assert_allclose(dv[largest, np.arange(4)].imag, 0.0, atol=1e-12)
    # and it is the derivative of NumPy's eigenvectors (finite differences of np.linalg.eig)
    h = 1e-6
    fd = (np.linalg.eig(a + h * t)[1] - np.linalg.eig(a - h * t)[1]) / (2 * h)
    np.testing.assert_allclose(dv, fd, atol=1e-7)


def test_issue10_eig_under_jit_vmap_and_every_hessian_mode():
    d = Draw("eig-transforms", np.float64)
    a = _general(d, 3, 3)

    def f(a):
        w, v = np.linalg.eig(a)
        return np.sum(np.abs(w) ** 2) + np.sum(np.real(v) ** 3)
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(a), pullback.grad(f)(a),
                               rtol=1e-12)
    stack = np.stack([a, 1.1 * a])
    np.testing.assert_allclose(pullback.vmap(pullback.grad(f))(stack),
                               [pullback.grad(f)(x) for x in stack], rtol=1e-12)
    hessians = [pullback.hessian(f, mode=mode)(a) for mode in HESSIAN_MODES]
    for h in hessians[1:]:
        np.testing.assert_allclose(h, hessians[0], rtol=1e-8, atol=1e-10)


def test_issue10_roots_through_eigvals_of_the_companion_matrix():
    """np.roots of traced coefficients: NumPy's roots (complex), derivatives to second order
    (a simple root r of p moves by -dp(r) / p'(r))."""
    p = np.array([1.0, -3.0, 2.0])                # (x - 1)(x - 2)
    np.testing.assert_allclose(np.sort(pnp.roots(p).real), [1.0, 2.0])
    np.testing.assert_allclose(pullback.grad(lambda p: np.roots(p).real.max())(p),
                               [-4.0, -2.0, -1.0])
    quartic = np.array([2.0, 1.0, 3.0, -1.0, 0.0])  # a zero constant term: a root at 0 that
    pullback.check_grads(lambda p: np.roots(p), (quartic,), order=2)    # moves with it
    out, _ = pullback.vjp(np.roots, quartic)
    np.testing.assert_allclose(out, np.roots(quartic), atol=1e-12)     # NumPy's order
    for p in ([0.0, 1.0, 2.0], [1.0, 2.0, 0.0, 0.0]):
        with pytest.raises(UnsupportedFunctionError, match="roots have no derivative there"):
            _traced(lambda p: np.abs(np.roots(p)), np.array(p))


def test_lstsq_under_jit_says_what_to_use():
    d = Draw("lstsq-jit", np.float64)
    a, b = d.normal(4, 2), d.normal(4)
    with pytest.raises(ConcretizationError, match=r"np.linalg.pinv\(a\) @ b"):
        pullback.jit(lambda a, b: np.linalg.lstsq(a, b)[0])(a, b)
    np.testing.assert_allclose(pullback.jit(lambda a, b: np.linalg.pinv(a) @ b)(a, b),
                               np.linalg.lstsq(a, b)[0], rtol=1e-12)


def test_numpy_argument_errors():
    with pytest.raises(np.linalg.LinAlgError, match="must be square"):
        pnp.linalg.inv(np.ones((2, 3)))
    with pytest.raises(np.linalg.LinAlgError, match="at least two-dimensional"):
        pnp.linalg.det(np.ones(3))
    with pytest.raises(ValueError, match="UPLO"):
        pnp.linalg.eigh(np.eye(2), UPLO="X")
    with pytest.raises(ValueError, match="Invalid norm order for matrices"):
        pnp.linalg.norm(np.eye(2), 3)
    with pytest.raises(ValueError, match="Improper number of dimensions"):
        pnp.linalg.norm(np.ones((2, 2, 2)), 2)


# -------------------------------------------------- det everywhere: the adjugate


def cofactor_adjugate(a):
    """adj(a)[j, i] = (-1)^(i+j) det(a without row i and column j), for a stack."""
    n = a.shape[-1]
    adj = np.ones_like(a)
    for i in range(n):
        for j in range(n):
            if n > 1:
                minor = np.delete(np.delete(a, i, -2), j, -1)
                adj[..., j, i] = (-1) ** (i + j) * np.linalg.det(minor)
    return adj


def _every_rank(n, stack=()):
    d = Draw(f"adjugate{n}{stack}", np.float64)
    return [d.rank(r, *stack, n, n) for r in range(n + 1)] + [d.normal(*stack, n, n)]


@pytest.mark.parametrize("stack", [(), (2,)], ids=["single", "stacked"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_item16_adjugate_equals_cofactors_and_its_rules_finite_differences(n, stack):
    """adj and both rules at random, rank-deficient and zero matrices: det is a polynomial,
    so central differences of the cofactors are exact to O(eps^2)."""
    d = Draw(f"adjugate-directions{n}{stack}", np.float64)
    for a in _every_rank(n, stack):
        np.testing.assert_allclose(L.adjugate(a), cofactor_adjugate(a), atol=1e-12)
        t, c = d.normal(*a.shape), d.normal(*a.shape)
        eps = 1e-5
        fd = (cofactor_adjugate(a + eps * t) - cofactor_adjugate(a - eps * t)) / (2 * eps)
        _, tangent = pullback.jvp(L.adjugate, (a,), (t,))
        np.testing.assert_allclose(tangent, fd, atol=1e-8)
        _, back = pullback.vjp(L.adjugate, a)
        np.testing.assert_allclose(np.sum(back(c)[0] * t), np.sum(c * tangent), atol=1e-10)


def _exact_det_hessian(a, eps=1e-5):
    """d2 det / da_ij da_kl: central differences of the cofactors (the gradient)."""
    n = a.shape[-1]
    h = np.empty((n, n, n, n))
    for k in range(n):
        for l in range(n):
            step = np.zeros((n, n))
            step[k, l] = eps
            h[:, :, k, l] = (cofactor_adjugate(a + step) - cofactor_adjugate(a - step)).T / (2 * eps)
    return h


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_item16_det_has_exact_first_and_second_derivatives_everywhere(n):
    for a in _every_rank(n):
        np.testing.assert_allclose(pullback.grad(np.linalg.det)(a), cofactor_adjugate(a).T,
                                   atol=1e-12)
        h = _exact_det_hessian(a)
        for mode in HESSIAN_MODES:
            np.testing.assert_allclose(pullback.hessian(np.linalg.det, mode=mode)(a), h,
                                       atol=1e-8, err_msg=mode)
    # At the zero matrix the Hessian is exact to the last bit: d2 (ad - bc) for n = 2.
    zero = np.zeros((n, n))
    expected = np.zeros((n, n, n, n))
    if n == 2:
        expected[0, 0, 1, 1] = expected[1, 1, 0, 0] = 1.0
        expected[0, 1, 1, 0] = expected[1, 0, 0, 1] = -1.0
    for mode in HESSIAN_MODES:
        np.testing.assert_array_equal(pullback.hessian(np.linalg.det, mode=mode)(zero), expected)
    g32 = pullback.grad(np.linalg.det)(np.zeros((n, n), np.float32))
    assert g32.dtype == np.float32


def test_item16_beyond_second_order_det_is_exact_or_nan():
    """Third derivatives go through the SVD: exact where the singular values are distinct
    (a single zero included), NaN where they repeat -- never a wrong finite number."""
    third = pullback.jacfwd(pullback.hessian(np.linalg.det))
    d = Draw("det-third", np.float64)
    for a in (d.normal(3, 3), d.rank(2, 3, 3)):
        eps = 1e-4
        fd = np.stack([(_exact_det_hessian(a + eps * e) - _exact_det_hessian(a - eps * e)) / (2 * eps)
                       for e in np.eye(9).reshape(9, 3, 3)], axis=-1).reshape((3,) * 6)
        np.testing.assert_allclose(third(a), fd, atol=1e-5)
    with np.errstate(all="ignore"):
        assert np.all(np.isnan(third(np.zeros((3, 3)))))
        assert np.all(np.isnan(third(np.eye(3))))


def test_item16_slogdet_has_no_derivative_at_a_singular_matrix():
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    stack = np.stack([singular, np.array([[2.0, 1.0], [1.0, 3.0]])])
    logabsdet = lambda a: np.sum(np.linalg.slogdet(a)[1])          # noqa: E731
    with np.errstate(all="ignore"):
        assert np.all(np.isnan(pullback.grad(logabsdet)(singular)))
        assert np.isnan(pullback.jvp(logabsdet, (singular,), (np.eye(2),))[1])
        for mode in HESSIAN_MODES:
            assert np.all(np.isnan(pullback.hessian(logabsdet, mode=mode)(singular))), mode
        g = pullback.grad(logabsdet)(stack)      # the invertible matrix of a stack is unaffected
    assert np.all(np.isnan(g[0]))
    np.testing.assert_allclose(g[1], np.linalg.inv(stack[1]).T)


@pytest.mark.parametrize("keywords", [{}, {"axis": 1}, {"axis": (0, 1), "ord": 2},
                                      {"ord": 1, "axis": 0, "keepdims": True}])
def test_vector_norm_under_jit_equals_eager(keywords):
    """vector_norm once staged a reshape with -1, which failed under jit for real input."""
    x = np.arange(1.0, 7.0).reshape(2, 3)

    def f(x):
        return np.sum(np.linalg.vector_norm(x, **keywords))
    np.testing.assert_allclose(pullback.jit(f)(x), f(x), rtol=1e-14)
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(x), pullback.grad(f)(x), rtol=1e-14)


@pytest.mark.parametrize("which", [0, 1])
def test_qr_derivative_at_a_numerically_rank_deficient_matrix_is_nan_in_every_mode(which):
    """At a rank-deficient matrix Q and R have no derivative; r's rounding-noise diagonal
    used to give a finite wrong one (d sum(Q) = [-2, -2] against differences [0.15, 0.29])."""
    deficient = np.array([[1.0, 2.0], [2.0, 4.0]])
    full = np.array([[1.0, 2.0], [2.0, 4.5]])

    def f(a):
        return pnp.sum(pnp.linalg.qr(a)[which] ** 2 * np.array([[1.0, 2.0], [3.0, 4.0]]))

    for derivative in (pullback.grad(f), pullback.jit(pullback.grad(f)), pullback.jacfwd(f),
                       lambda a: pullback.hvp(f, a, np.ones_like(a))):
        assert np.isnan(derivative(deficient)).all()
        assert np.isfinite(derivative(full)).all()
    stacked = pullback.vmap(pullback.grad(f))(np.stack([deficient, full]))
    assert np.isnan(stacked[0]).all() and np.isfinite(stacked[1]).all()
    pullback.testing.check_grads(f, (full,), order=2)
