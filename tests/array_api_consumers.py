"""SciPy's and scikit-learn's array-API code paths on tracers (issue 10 §3), one example per
run: `SCIPY_ARRAY_API=1 python tests/array_api_consumers.py logsumexp` prints
"logsumexp: ok" or fails. A script, not a test module: SciPy reads SCIPY_ARRAY_API when it
is imported, so tests/test_array_api.py runs it in a subprocess with the variable set.

Each example differentiates a library function the user did not write, through the array
namespace its array arguments give (`x.__array_namespace__()`): gradients and second
derivatives against finite differences (check_grads, both modes), jit and vmap against
eager.
"""
import os
import sys

import numpy as np


def _check(f, x, jit=True, vmap=True):
    import pullback
    pullback.check_grads(f, (x,), order=2)
    gradient = pullback.grad(f)(x)
    if jit:
        np.testing.assert_allclose(pullback.jit(pullback.grad(f))(x), gradient, rtol=1e-12)
    if vmap:
        batch = np.stack([x, 0.5 * x])
        np.testing.assert_allclose(pullback.vmap(pullback.grad(f))(batch),
                                   [pullback.grad(f)(b) for b in batch], rtol=1e-12)


def logsumexp():
    import scipy.special
    x = np.array([[0.5, -1.0, 2.0], [0.3, 0.1, -0.4]])
    _check(lambda x: scipy.special.logsumexp(x), x)
    _check(lambda x: np.sum(scipy.special.logsumexp(x, axis=1) ** 2), x)
    # weights b (traced too: the array namespace of x and b must be the same)
    _check(lambda x: scipy.special.logsumexp(x, b=x ** 2), x, jit=False)


def softmax():
    import scipy.special
    x = np.array([[0.5, -1.0, 2.0], [0.3, 0.1, -0.4]])
    _check(lambda x: np.sum(scipy.special.softmax(x, axis=0) * np.arange(3.0)), x)


def log_softmax():
    import scipy.special
    x = np.array([0.5, -1.0, 2.0])
    _check(lambda x: np.sum(scipy.special.log_softmax(x) * np.array([1.0, 2.0, -1.0])), x)


def special_ufunc():
    """With SCIPY_ARRAY_API=1 scipy.special.gammaln is a Python function that dispatches on
    the namespace: SciPy finds pullback's in `xp.special`."""
    import scipy.special
    assert not isinstance(scipy.special.gammaln, np.ufunc)
    x = np.array([0.5, 1.5, 3.0])
    _check(lambda x: np.sum(scipy.special.gammaln(x) * scipy.special.erf(x)), x)


def _sklearn():
    import sklearn
    sklearn.set_config(array_api_dispatch=True)
    return np.random.default_rng(0).standard_normal((4, 3))


def sklearn_euclidean_distances():
    from sklearn.metrics.pairwise import euclidean_distances
    x = _sklearn()
    _check(lambda x: np.sum(euclidean_distances(x, x + 1.0) ** 3), x, jit=False, vmap=False)


def sklearn_polynomial_kernel():
    from sklearn.metrics.pairwise import polynomial_kernel
    x = _sklearn()
    _check(lambda x: np.sum(polynomial_kernel(x, 2.0 * x, degree=2, coef0=0.5)), x, jit=False,
           vmap=False)


def sklearn_direct_write_refused():
    """scikit-learn's `normalize` writes `scale[mask] = 1.0` into a traced array directly (not
    through array-api-extra's `at`): refused with the in-place error, never a wrong value."""
    import pullback
    from pullback.errors import InPlaceMutationError
    from sklearn.preprocessing import normalize
    x = _sklearn()
    try:
        pullback.grad(lambda x: np.sum(normalize(x)))(x)
    except InPlaceMutationError as error:
        assert "in-place assignment" in str(error)
    else:
        raise AssertionError("normalize wrote into a tracer")


if __name__ == "__main__":
    assert os.environ.get("SCIPY_ARRAY_API") == "1", "run with SCIPY_ARRAY_API=1"
    name = sys.argv[1]
    globals()[name]()
    print(f"{name}: ok")
