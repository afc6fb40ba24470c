"""Complex numbers (issue 10, section 1), under JAX's convention (core/numbers.py).

Every primitive with complex rules is checked against finite differences along directions
with random real and imaginary parts, at random complex points, to second order, in
both modes; every other differentiable primitive refuses complex values with a clear
error. The values JAX gives (checked with JAX itself when these tests were written) are
pinned here, as is the `holomorphic` flag of the derivative operators.
"""
import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

import pullback
from helpers import raises
from pullback import errors, grad, hessian, hvp, jacobian, jacfwd, jacrev, jit, pullback as vjp
from pullback import pushforward, vmap
from pullback.core.primitive import REGISTRY
from pullback.operators import HESSIAN_MODES
from pullback.testing import check_grads
from test_primitives import SETTINGS, TABLE, case_strategy, values

# A discarded imaginary part anywhere is a wrong value: make NumPy's warning an error.
pytestmark = pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")
COMPLEX = {np.dtype(np.float64): np.complex128, np.dtype(np.float32): np.complex64}
rng = np.random.default_rng(10)


def complexified(draw, args):
    """The floating-point arguments given imaginary parts in [-0.5, 0.5] (away from branch
    cuts of the primitives' real domains)."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            imaginary = values(draw, a.shape, np.float64, (-0.5, 0.5))
            a = (a + 1j * imaginary).astype(COMPLEX[a.dtype])
        out.append(a)
    return out


def _complex_case(prim, dtype):
    @st.composite
    def case(draw):
        args, params = draw(case_strategy(prim, dtype))
        if prim.name == "rfft":           # it transforms real signals
            return args, params
        if prim.name == "convert":        # to the real or complex dtype of the same precision
            params = {"dtype": np.dtype(draw(st.sampled_from([dtype, COMPLEX[np.dtype(dtype)]])))}
        return complexified(draw, args), params
    return case()


WITH_RULES = sorted(n for n in TABLE if REGISTRY[n].complex_rules and REGISTRY[n].differentiable)
WITHOUT_RULES = sorted(n for n in TABLE
                       if not REGISTRY[n].complex_rules and REGISTRY[n].differentiable)


def z_like(shape, dtype=np.complex128):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", WITH_RULES)
def test_section1_complex_rules_match_finite_differences_to_second_order(name, dtype):
    prim = REGISTRY[name]

    @SETTINGS
    @given(case=_complex_case(prim, dtype))
    def run(case):
        args, params = case
        positions = [i for i, a in enumerate(args)
                     if isinstance(a, np.ndarray) and a.dtype.kind in "fc"]

        def f(*diff):
            full = list(args)
            for i, a in zip(positions, diff):
                full[i] = a
            return prim(*full, **params)
        eps = 1e-2 if name == "convert" else 1e-6   # a float32 output: FD in large steps
        check_grads(f, tuple(args[i] for i in positions), order=2, eps=eps)
    run()


@pytest.mark.parametrize("name", WITHOUT_RULES)
def test_section1_primitives_without_complex_rules_refuse_complex_values(name):
    """Never a wrong value: every differentiable primitive without complex rules raises a
    clear error when a complex value meets its derivative, in both modes."""
    prim = REGISTRY[name]

    @SETTINGS
    @given(case=_complex_case(prim, np.float64))
    def run(case):
        args, params = case
        positions = [i for i, a in enumerate(args) if getattr(a, "dtype", None) is not None
                     and a.dtype.kind == "c"]

        def f(x):
            full = list(args)
            full[positions[0]] = x
            return prim(*full, **params)
        x = args[positions[0]]
        with raises(errors.ComplexValueError, name, "complex"):
            pushforward(f, (x,), (x,))
        with raises(errors.ComplexValueError, name, "complex"):
            vjp(f, x)
    run()


def test_section1_values_agree_with_jax():
    """Numbers JAX gives (jax.grad, jax.vjp with jax_enable_x64), pinned."""
    z = np.array(3 + 4j)
    np.testing.assert_allclose(grad(lambda z: np.abs(z) ** 2)(z), 6 - 8j)
    np.testing.assert_allclose(grad(np.abs)(z), 0.6 - 0.8j)
    np.testing.assert_allclose(grad(lambda z: np.real((2 + 3j) * z))(np.array(1 + 1j)), 2 + 3j)
    np.testing.assert_allclose(vjp(lambda z: (2 + 3j) * z, np.array(1 + 1j))[1](1 + 0j)[0],
                               2 + 3j)
    np.testing.assert_allclose(vjp(np.conj, np.array(1 + 1j))[1](np.array(1 + 2j))[0], 1 - 2j)
    np.testing.assert_allclose(vjp(np.imag, np.array(1 + 1j))[1](np.array(1.0))[0], -1j)
    np.testing.assert_allclose(grad(np.angle)(np.array(1 + 2j)), -0.4 - 0.2j)
    w = z_like(4)
    f = lambda z: np.sum(np.sin(z) * np.exp(z))       # noqa: E731  (holomorphic)
    derivative = np.cos(w) * np.exp(w) + np.sin(w) * np.exp(w)
    np.testing.assert_allclose(grad(f, holomorphic=True)(w), derivative)
    np.testing.assert_allclose(grad(lambda z: np.real(f(z)))(w), derivative)
    np.testing.assert_allclose(grad(lambda z: np.imag(f(z)))(w), -1j * derivative)


def test_section1_the_holomorphic_flag():
    z = z_like(3)
    with raises(errors.HolomorphicError, "holomorphic=True"):
        grad(lambda z: np.sum(z ** 2))(z)
    with raises(errors.HolomorphicError, "holomorphic=True"):
        jacrev(lambda z: z ** 2)(z)
    with raises(errors.HolomorphicError, "holomorphic=True"):
        jacfwd(lambda z: z ** 2)(z)
    with raises(errors.HolomorphicError, "complex inputs and outputs"):
        grad(lambda x: np.sum(x ** 2) * 1j, holomorphic=True)(np.ones(2))
    with raises(errors.HolomorphicError, "complex inputs and outputs"):
        grad(lambda z: np.sum(np.abs(z)), holomorphic=True)(z)
    np.testing.assert_allclose(grad(lambda z: np.sum(z ** 3), holomorphic=True)(z), 3 * z ** 2)
    for mode in ("forward", "reverse", "auto"):
        np.testing.assert_allclose(jacobian(np.exp, mode=mode, holomorphic=True)(z),
                                   np.diag(np.exp(z)))
    x = rng.standard_normal(3)        # a complex output of real inputs: a complex Jacobian
    np.testing.assert_allclose(jacobian(lambda x: np.exp(1j * x))(x), np.diag(1j * np.exp(1j * x)))
    real_valued = lambda z: np.sum(np.abs(np.sin(z)) ** 2)    # noqa: E731
    np.testing.assert_allclose(jacfwd(real_valued)(z), jacrev(real_valued)(z))
    np.testing.assert_allclose(jacfwd(real_valued)(z), grad(real_valued)(z))


def test_section1_hessian_modes_and_hvp_agree():
    z = z_like(3)
    f = lambda z: np.sum(np.sin(z) * z ** 2 + np.exp(z) @ z)       # noqa: E731
    reference = jacfwd(grad(f, holomorphic=True), holomorphic=True)(z)
    np.testing.assert_allclose(reference, jacrev(jacrev(f, holomorphic=True), holomorphic=True)(z))
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(hessian(f, mode=mode, holomorphic=True)(z), reference)
    real_valued = lambda z: np.sum(np.abs(np.sin(z) * z) ** 2 + np.real(z) ** 3)  # noqa: E731
    v, eps = z_like(3), 1e-6
    numeric = (grad(real_valued)(z + eps * v) - grad(real_valued)(z - eps * v)) / (2 * eps)
    for mode in HESSIAN_MODES:
        np.testing.assert_allclose(hvp(real_valued, z, v, mode=mode), numeric, rtol=1e-6)
    with raises(errors.HolomorphicError, "no complex Hessian", "hvp"):
        hessian(real_valued)(z)
    op = pullback.make_hvp(real_valued, z)
    np.testing.assert_allclose(op(v), numeric, rtol=1e-6)
    np.testing.assert_allclose(op.matmat(np.stack([v, 2 * v], -1))[:, 1], 2 * numeric, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_section1_vmap_and_jit_of_complex_derivatives(dtype):
    z = z_like((4, 3), dtype)
    f = lambda z: np.sum(np.abs(np.tanh(z) @ np.conj(z)) ** 2)       # noqa: E731
    rows = np.stack([grad(f)(row) for row in z])
    assert rows.dtype == dtype
    tol = 1e-4 if dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(vmap(grad(f))(z), rows, rtol=tol)
    np.testing.assert_allclose(jit(vmap(grad(f)))(z), rows, rtol=tol)
    np.testing.assert_allclose(jit(grad(f))(z[0]), rows[0], rtol=tol)
    np.testing.assert_allclose(jit(lambda z: np.exp(z) * 1j)(z), np.exp(z) * 1j, rtol=tol)


def test_section1_numpy_functions_of_complex_values():
    z = z_like((2, 3))
    for f in (np.real, np.imag, np.conj, np.conjugate, np.angle, lambda z: np.angle(z, deg=True),
              np.sign, np.abs, lambda z: z.real * z.imag, lambda z: z.conj() * z,
              lambda z: np.abs(z).astype(complex) * z,
              lambda z: np.real(z).astype(np.complex128) ** 2, np.sqrt, np.log, np.exp,
              lambda z: z ** 2.5, lambda z: 2.0 ** z, np.sinh, np.arctan, np.arcsinh,
              lambda z: np.sum(z * z, axis=0), lambda z: np.prod(z, axis=1), np.cumsum,
              lambda z: z @ z.T, lambda z: np.einsum("ij,kj->ik", z, np.conj(z))):
        check_grads(f, (z,), order=2, tol=1e-4)
    x = rng.standard_normal(3)
    check_grads(lambda x: x.astype(complex) * (1 + 2j), (x,), order=2)


def test_section1_check_grads_catches_a_conjugated_rule():
    """The classic mistake: a pullback that conjugates (PyTorch's convention, not JAX's)."""
    @pullback.custom_vjp
    def scale(z):
        return (2 + 3j) * z

    scale.defvjp(lambda z: ((2 + 3j) * z, None), lambda _, ct: (np.conj(2 + 3j) * ct,))
    with pytest.raises(AssertionError, match="differ"):
        check_grads(scale, (z_like(3),), order=1)
    scale.defvjp(lambda z: ((2 + 3j) * z, None), lambda _, ct: ((2 + 3j) * ct,))
    check_grads(scale, (z_like(3),), order=1)


def test_section1_reductions_contractions_and_linalg_of_complex_values():
    """NumPy's values and dtypes (vdot conjugates its first argument; var is real), and
    derivatives against finite differences, eager and staged."""
    z, w = z_like((3, 3)) + 3 * np.eye(3), z_like(3)
    functions = [
        lambda z: np.vdot(z, z @ z), lambda z: np.vdot(w, z[0]), np.var, np.mean,
        lambda z: np.std(z, axis=0, ddof=1), np.trace, lambda z: np.dot(z, w),
        lambda z: np.inner(z, z), lambda z: np.outer(w, z[1]), lambda z: np.tensordot(z, z, 1),
        lambda z: np.kron(z, w), lambda z: np.linalg.solve(z, w), np.linalg.inv, np.linalg.det,
        lambda z: np.linalg.slogdet(z)[0], lambda z: np.linalg.slogdet(z)[1],
        lambda z: np.linalg.matrix_power(z, -2), lambda z: np.float_power(z, 2.5)]
    for f in functions:
        expected = f(z.copy())
        staged = jit(f)(z)
        assert staged.dtype == np.asarray(expected).dtype
        np.testing.assert_allclose(staged, expected, rtol=1e-12)
        check_grads(f, (z,), order=2, tol=1e-4)
    tall = z_like((4, 3))
    for f in (lambda a: np.linalg.qr(a)[0], lambda a: np.linalg.qr(a)[1],
              lambda a: np.linalg.qr(a, mode="r")):           # r has a real diagonal
        np.testing.assert_allclose(jit(f)(tall), f(tall.copy()), rtol=1e-12)
        check_grads(f, (tall,), order=2, tol=1e-4)
    for f in (np.linalg.svdvals, np.linalg.norm, lambda z: np.linalg.norm(z, "nuc"),
              lambda z: np.linalg.norm(z, 2), lambda z: np.linalg.norm(z, 3, axis=1),
              lambda z: np.linalg.norm(z, 0, axis=0), lambda z: np.linalg.norm(z, np.inf)):
        expected = f(z.copy())
        assert jit(f)(z).dtype == np.asarray(expected).dtype
        np.testing.assert_allclose(jit(f)(z), expected, rtol=1e-12)
        check_grads(f, (z,), order=2, tol=1e-4)


def test_merge_numpy_composites_of_complex_values_match_numpy_or_refuse():
    """pullback.numpy's composites meeting complex values: NumPy's values (vecdot and vecmat
    conjugate the vector, correlate its second sequence) with derivatives against finite
    differences, or a ComplexValueError where a composite is written for real values only
    (never a value that differs from NumPy's), staged as well as eager; a complex constant
    meeting a primitive without complex rules is refused too."""
    z, short = z_like((3, 4)), z_like(2)
    special = np.array([complex(np.nan, 1), complex(1, np.nan), complex(np.inf, 1),
                        complex(1, -np.inf)])
    matching = [lambda z: np.vecdot(z, z[0]), lambda z: np.linalg.vecdot(z[0], z),
                lambda z: np.vecmat(z[0, :3], z[:, :3]), lambda z: np.matvec(z[:, :3], z[0, :3]),
                lambda z: np.correlate(z[0], z[1], "full"), lambda z: np.correlate(z[0], short),
                lambda z: np.correlate(short, z[0], "same"), np.linalg.vector_norm,
                lambda z: np.linalg.vector_norm(z, ord=3, axis=0), np.linalg.matrix_norm,
                lambda z: np.nan_to_num(np.where(np.isfinite(special), z, special)), np.diff,
                lambda z: np.polyval(z[0], z[1])]
    for f in matching:
        expected = f(z.copy())
        staged = jit(f)(z)
        assert staged.dtype == np.asarray(expected).dtype
        np.testing.assert_allclose(staged, expected, rtol=1e-12)
        check_grads(f, (z,), order=1, tol=1e-4)
    refused = [("cov", np.cov), ("cov", np.corrcoef), ("nanvar", np.nanvar),
               ("nanvar", np.nanstd), ("interp", lambda z: np.interp([0.5], [0.0, 1.0], z[0, :2])),
               ("median", np.median), ("quantile", lambda z: np.quantile(z, 0.3)),
               ("sinc", np.sinc), ("exprel", scipy.special.exprel)]
    for name, f in refused:
        for transform in (jit, grad):
            with raises(errors.ComplexValueError, name, "complex"):
                transform(lambda z: np.sum(np.real(f(z))))(z)
    constant = np.array([1 + 1j, 2.0])
    with raises(errors.ComplexValueError, "maximum", "complex"):
        grad(lambda x: np.sum(np.abs(np.maximum(x, constant))))(np.ones(2))


def test_section1_hermitian_matrices():
    """cholesky and eigh of complex Hermitian matrices (only one triangle is read):
    NumPy's values; eigenvectors with NumPy's phases (a real first row for UPLO='L', last
    for 'U'), so that even phase-dependent functions match finite differences."""
    b = z_like((3, 3))
    a = b @ b.conj().T + 3 * np.eye(3)
    functions = [np.linalg.cholesky, lambda a: np.linalg.cholesky(a, upper=True),
                 np.linalg.eigvalsh, lambda a: np.linalg.eigh(a, UPLO="U")[1],
                 lambda a: np.linalg.eigh(a)[1],
                 lambda a: (lambda w, v: (v * np.exp(w)) @ v.conj().T)(*np.linalg.eigh(a))]
    for f in functions:
        np.testing.assert_allclose(jit(f)(a), f(a.copy()), rtol=1e-10)
        check_grads(f, (a,), order=2, tol=1e-4)


def test_section1_lazy_cotangents_keep_complex_scales():
    """A sum's uniform cotangent with a complex scale, multiplied by an array and then by a
    Python float, lost its imaginary part (float(scale)): a silently wrong gradient."""
    z = z_like(3)
    f = lambda z: np.real((1 + 2j) * np.sum(np.exp(2.0 * z)))      # noqa: E731
    np.testing.assert_allclose(grad(f)(z), (1 + 2j) * 2 * np.exp(2 * z))
    np.testing.assert_allclose(jit(grad(f))(z), (1 + 2j) * 2 * np.exp(2 * z))


def test_section1_zero_derivative_primitives_with_complex_results_refuse():
    """sign(z) = z / |z| is not constant: the primitive (NumPy's sign of real values) refuses
    a complex result where a derivative flows; np.sign answers with the quotient's rule.
    Comparisons and predicates of complex values have real results and zero derivative."""
    from pullback.primitives import elementwise as P
    z = z_like(3)
    for prim, params in ((P.sign, {}), (P.around, {"decimals": 1})):
        with raises(errors.ComplexValueError, prim.name, "complex"):
            pushforward(lambda z: prim(z, **params), (z,), (z,))
        with raises(errors.ComplexValueError, prim.name, "complex"):
            vjp(lambda z: prim(z, **params), z)
    check_grads(np.sign, (z,), order=2)
    np.testing.assert_array_equal(grad(lambda z: np.sum(np.abs(z) * (np.isnan(z) | (z == z))))(z),
                                  grad(lambda z: np.sum(np.abs(z)))(z))
