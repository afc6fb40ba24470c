"""np.fft (issue 10): every transform with `n`/`s`, `axis`/`axes` and `norm` gives NumPy's
values, dtypes and shapes on traced values (Hypothesis draws them), and its derivatives
match finite differences to second order, under vmap and jit too."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import pullback
import pullback.numpy as pnp
from helpers import raises
from pullback import grad, jit, vmap
from pullback.testing import check_grads

pytestmark = pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")
NORMS = (None, "backward", "ortho", "forward")
ONE_AXIS = ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft")
MANY_AXES = ("fftn", "ifftn", "rfftn", "irfftn", "fft2", "ifft2", "rfft2", "irfft2")
REAL_INPUT = ("rfft", "ihfft", "rfftn", "rfft2")
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def _input(seed, shape, name, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if name not in REAL_INPUT:
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype if name in REAL_INPUT else np.result_type(dtype, np.complex64))


@st.composite
def fft_call(draw):
    """(name, x, keyword arguments) for a random transform, shape, lengths and axes."""
    name = draw(st.sampled_from(ONE_AXIS + MANY_AXES))
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    if name in ("irfft", "hfft", "irfftn", "irfft2"):      # default lengths 2 (m - 1) >= 1
        shape = shape[:-1] + (max(shape[-1], 2),)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x = _input(draw(st.integers(0, 2**16)), shape, name, dtype)
    kwargs = {"norm": draw(st.sampled_from(NORMS))}
    rank = len(shape)
    if name in ONE_AXIS:
        kwargs["axis"] = draw(st.integers(-rank, rank - 1))
        if name in ("irfft", "hfft") and shape[kwargs["axis"]] < 2:
            kwargs["axis"] = -1
        if draw(st.booleans()):
            kwargs["n"] = draw(st.integers(1, 6))
    elif name.endswith("2"):
        if rank < 2:
            x = x.reshape((1,) + shape)
            shape = x.shape
        if draw(st.booleans()):
            kwargs["s"] = tuple(draw(st.integers(1, 5)) for _ in range(2))
    else:
        axes = draw(st.permutations(range(rank)).map(
            lambda p: p[:draw(st.integers(1, rank))]))
        if name.startswith("irfft") and shape[axes[-1]] < 2:
            axes = axes[:-1] + [rank - 1] if rank - 1 not in axes[:-1] else [rank - 1]
        kwargs["axes"] = tuple(axes)
        if draw(st.booleans()):
            kwargs["s"] = tuple(draw(st.integers(1, 5)) for _ in axes)
    return name, x, kwargs


@SETTINGS
@given(fft_call())
def test_fft_matches_numpy_on_traced_values(call):
    name, x, kwargs = call
    expected = getattr(np.fft, name)(x, **kwargs)
    f = lambda x: getattr(np.fft, name)(x, **kwargs)        # noqa: E731  (dispatched)
    for result in (getattr(pnp.fft, name)(x, **kwargs), jit(f)(x), vmap(f)(x[None])[0],
                   pullback.pushforward(f, (x,), (x,))[0]):
        assert result.shape == expected.shape and result.dtype == expected.dtype, name
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


@settings(SETTINGS, max_examples=12)
@given(fft_call())
def test_fft_derivatives_match_finite_differences_to_second_order(call):
    name, x, kwargs = call
    x = x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)
    check_grads(lambda x: getattr(np.fft, name)(x, **kwargs), (x,), order=2)


@pytest.mark.parametrize("name", ["fftshift", "ifftshift"])
def test_fftshift(name):
    z = _input(1, (3, 4), "fft", np.float64)
    for axes in (None, 0, (1,), (0, 1)):
        f = lambda z: getattr(np.fft, name)(z, axes=axes)   # noqa: E731
        np.testing.assert_array_equal(jit(f)(z), f(z))
        check_grads(f, (z,), order=2)


def test_fftfreq_are_constants_divided_by_a_traced_spacing():
    for f in (np.fft.fftfreq, np.fft.rfftfreq):
        np.testing.assert_array_equal(pnp.fft.__dict__[f.__name__](6, 0.5), f(6, 0.5))
        np.testing.assert_allclose(grad(lambda d: np.sum(f(6, d) ** 2))(0.5),
                                   -2 * np.sum(f(6, 0.5) ** 2) / 0.5)


def test_spectral_loss_gradient():
    """The benchmark's spectral loss sum(|rfft(x) H|^2), whose gradient is
    2 n irfft(H^2 rfft(x) / a) (a: irfft's weights, 1 at both ends and 2 between)."""
    rng = np.random.default_rng(5)
    x, h = rng.standard_normal(16), rng.standard_normal(9)
    loss = lambda x: np.sum(np.abs(np.fft.rfft(x) * h) ** 2)       # noqa: E731
    weights = np.fft.irfft(np.fft.rfft(x) * h ** 2 / np.r_[1, 2 * np.ones(7), 1], n=16)
    np.testing.assert_allclose(grad(loss)(x), 2 * 16 * weights, rtol=1e-10)
    np.testing.assert_allclose(jit(grad(loss))(x), grad(loss)(x), rtol=1e-12)
    for mode in pullback.operators.HESSIAN_MODES:
        np.testing.assert_allclose(pullback.hessian(loss, mode=mode)(x),
                                   pullback.hessian(loss)(x), atol=1e-9)


def test_fft_errors_are_numpys():
    z = _input(2, (4,), "fft", np.float64)
    with raises(pullback.errors.ComplexValueError, "real input"):
        grad(lambda z: np.sum(np.abs(np.fft.rfft(z))))(z)
    with pytest.raises(ValueError, match="norm"):          # NumPy's own errors
        grad(lambda x: np.sum(np.fft.fft(x, norm="bogus").real))(z.real)
    with pytest.raises(ValueError, match="Invalid number of FFT data points"):
        grad(lambda x: np.sum(np.fft.fft(x, n=0).real))(z.real)
    assert pullback.core.engine.trace_stack() == []
    with raises(pullback.errors.InPlaceMutationError, "out="):
        grad(lambda x: np.sum(np.fft.fft(x, out=np.empty(4, complex)).real))(z.real)
