"""CuPy arrays on a GPU through every transformation: derivatives come back as CuPy
arrays, equal to NumPy's. Skipped, with the reason, where CuPy or a GPU is missing."""
import numpy as np
import pytest

import pullback as pb

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'pullback[cuda]')")
try:
    GPUS = cupy.cuda.runtime.getDeviceCount()
except cupy.cuda.runtime.CUDARuntimeError:
    GPUS = 0
if GPUS == 0:
    pytest.skip("no GPU on this machine", allow_module_level=True)

rng = np.random.default_rng(0)
X = rng.uniform(0.5, 1.5, 12)
A = rng.normal(size=(12, 12)) + 12 * np.eye(12)
BLOCKS = np.stack([A[:4, :4], A[4:8, 4:8], A[8:, 8:]])      # a stack of matrices


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


FUNCTIONS = {
    "rosenbrock": rosenbrock,
    "elementwise": lambda x: np.sum(np.sin(x) * np.exp(-x) + np.log(x) * np.tanh(x)),
    "reductions": lambda x: np.mean(x.reshape(3, 4).sum(axis=0) ** 2) + np.max(x),
    "matmul": lambda x: x @ (x[:, None] * x[None, :]) @ x,
    "where": lambda x: np.sum(np.where(x > 1, x ** 2, np.cos(x))),
    "solve": lambda x: np.sum(np.linalg.solve(cupy.asarray(A), x) ** 2),
    "a constant gradient": lambda x: 3.0 * np.sum(x),      # jit: a constant of the program
    "a stacked solve": lambda x: np.sum(np.linalg.solve(cupy.asarray(BLOCKS),
                                                         x.reshape(3, 4, 1)) ** 2),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_derivative_of_cupy_arrays_is_a_cupy_array_equal_to_numpys(name):
    f = FUNCTIONS[name]
    x = cupy.asarray(X)
    derivatives = {"grad": pb.grad(f)(x), "hvp": pb.hvp(f, x, x), "hessian": pb.hessian(f)(x),
                   "jit(grad)": pb.jit(pb.grad(f))(x)}
    numpy_f = {"solve": lambda x: np.sum(np.linalg.solve(A, x) ** 2),
               "a stacked solve": lambda x: np.sum(
                   np.linalg.solve(BLOCKS, x.reshape(3, 4, 1)) ** 2)}.get(name, f)
    expected = {"grad": pb.grad(numpy_f)(X), "hvp": pb.hvp(numpy_f, X, X),
                "hessian": pb.hessian(numpy_f)(X), "jit(grad)": pb.grad(numpy_f)(X)}
    for kind, value in derivatives.items():
        assert isinstance(value, cupy.ndarray), f"{name} {kind}: {type(value)}"
        np.testing.assert_allclose(cupy.asnumpy(value), expected[kind], rtol=1e-10,
                                   err_msg=f"{name} {kind}")
