"""Dask arrays through every transformation: derivatives come back as Dask arrays, equal to
NumPy's, and nothing is computed until the user asks (a scheduler that counts its calls
checks that), on the threaded scheduler and on a local cluster of worker processes."""
import contextlib

import dask
import dask.array as da
import distributed
import numpy as np
import pytest

import pullback as pb
from helpers import raises
from pullback.core.engine import trace_stack
from pullback.errors import (ArrayLibraryError, CotangentError, NonDifferentiableInputError,
                             StaticArgumentError, TangentError, UnsupportedFunctionError)

rng = np.random.default_rng(0)
X = rng.uniform(0.5, 1.5, 12)
A = rng.normal(size=(12, 12)) + 12 * np.eye(12)
A_DASK = da.from_array(A, chunks=5)            # a constant inside f, in chunks too


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


SCALAR_FUNCTIONS = {
    "rosenbrock": rosenbrock,
    "elementwise": lambda x: np.sum(np.sin(x) * np.exp(-x) + np.log(x) * np.tanh(x)
                                    + np.sqrt(x) / (1 + x ** 2)),
    "reductions": lambda x: (np.mean(x.reshape(3, 4).sum(axis=0) ** 2) + np.max(x)
                             + np.prod(x[:4])),
    "slices across chunks": lambda x: np.sum(x[2:9:2] * x[::-3][:4]) + x[7] * x[3],
    "matmul with a Dask constant": lambda x: x @ (A_DASK @ x) + np.dot(x, x),
    "concatenate and stack": lambda x: (np.sum(np.concatenate([x, x[::2] ** 2]) ** 2)
                                        + np.sum(np.stack([x, x]) * 2)),
    "where and maximum": lambda x: (np.sum(np.where(x > 1, x ** 2, np.cos(x)))
                                    + np.sum(np.maximum(x, 1.0))),
    "cumsum": lambda x: np.sum(np.cumsum(x) ** 2),
    "outer and tril": lambda x: np.sum(np.outer(x, x) * A_DASK) + np.sum(np.tril(A_DASK) @ x),
    "transpose": lambda x: np.sum(x.reshape(3, 4).T @ x.reshape(3, 4) ** 2),
    "norm and abs": lambda x: np.linalg.norm(x) + np.sum(np.abs(x - 1)),
    "einsum": lambda x: np.einsum("i,ij,j->", x, A_DASK, x),
    # item 5: the Hessian batches the solve; Dask's solve takes 2-d arrays only
    "solve with a NumPy matrix": lambda x: np.sum(np.linalg.solve(A, x) ** 3),
}


def vector_function(x):
    return np.sin(x) * x[::-1]


def _derivatives(f, x):
    """Every derivative kind of a scalar function f at x, by name."""
    return {"grad": pb.grad(f)(x), "hvp": pb.hvp(f, x, x), "hessian": pb.hessian(f)(x),
            "pushforward": pb.pushforward(f, (x,), (x,))[1],
            "pullback": pb.pullback(f, x)[1](1.0)[0], "jit(grad)": pb.jit(pb.grad(f))(x)}


class CountingScheduler:
    """A synchronous Dask scheduler that counts the graphs it runs and their tasks."""

    def __init__(self):
        self.computations = self.tasks = 0

    def __call__(self, graph, keys, **kwargs):
        self.computations += 1
        self.tasks += len(graph.__dask_graph__() if hasattr(graph, "__dask_graph__") else graph)
        return dask.get(graph, keys, **kwargs)


@contextlib.contextmanager
def counting():
    scheduler = CountingScheduler()
    with dask.config.set(scheduler=scheduler):
        yield scheduler


def _as_dask(x):
    return da.from_array(x, chunks=5)


@pytest.mark.parametrize("name", SCALAR_FUNCTIONS)
def test_every_derivative_of_dask_arrays_is_a_lazy_dask_array_equal_to_numpys(name):
    f = SCALAR_FUNCTIONS[name]
    with counting() as scheduler:
        lazy = _derivatives(f, _as_dask(X))
    assert scheduler.computations == 0, f"{name}: computed while differentiating"
    expected = _derivatives(f, X)
    for kind, value in lazy.items():
        assert isinstance(value, da.Array), f"{name} {kind}: {type(value)}"
        np.testing.assert_allclose(value.compute(), expected[kind], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name} {kind}")


def test_jacobians_pushforwards_and_pullbacks_of_vector_functions_stay_lazy():
    x = _as_dask(X)
    with counting() as scheduler:
        lazy = {"jacobian": pb.jacobian(vector_function)(x),
                "reverse jacobian": pb.jacobian(vector_function, mode="reverse")(x),
                "pushforward": pb.pushforward(vector_function, (x,), (x,))[1],
                "pullback": pb.pullback(vector_function, x)[1](x)[0],
                "vmap": pb.vmap(vector_function)(x.reshape(3, 4))}
    assert scheduler.computations == 0
    expected = {"jacobian": pb.jacobian(vector_function)(X),
                "reverse jacobian": pb.jacobian(vector_function)(X),
                "pushforward": pb.pushforward(vector_function, (X,), (X,))[1],
                "pullback": pb.pullback(vector_function, X)[1](X)[0],
                "vmap": pb.vmap(vector_function)(X.reshape(3, 4))}
    for kind, value in lazy.items():
        assert isinstance(value, da.Array), kind
        np.testing.assert_allclose(value.compute(), expected[kind], rtol=1e-12, err_msg=kind)


def test_one_compute_of_value_and_gradient_shares_the_forward_work():
    x = da.from_array(rng.uniform(0.5, 1.5, 1000), chunks=100)
    value, gradient = pb.value_and_grad(rosenbrock)(x)
    with counting() as separately:
        value.compute()
        gradient.compute()
    with counting() as together:
        joint_value, joint_gradient = dask.compute(value, gradient)
    assert together.computations == 1
    assert together.tasks < separately.tasks
    expected_value, expected_gradient = pb.value_and_grad(rosenbrock)(x.compute())
    np.testing.assert_allclose(joint_value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(joint_gradient, expected_gradient, rtol=1e-12)


def test_a_dask_constant_in_a_numpy_function_is_not_computed_and_the_result_is_dask():
    """NumPy's own mixing rule: a Dask operand makes the result a Dask array."""
    with counting() as scheduler:
        gradient = pb.grad(lambda x: x @ (A_DASK @ x))(X)
    assert scheduler.computations == 0
    assert isinstance(gradient, da.Array)
    np.testing.assert_allclose(gradient.compute(), (A + A.T) @ X, rtol=1e-12)


def test_dask_tangents_and_cotangents_of_numpy_primals():
    tangent = _as_dask(X)
    value, derivative = pb.pushforward(vector_function, (X,), (tangent,))
    assert isinstance(derivative, da.Array)
    np.testing.assert_allclose(derivative.compute(),
                               pb.pushforward(vector_function, (X,), (X,))[1], rtol=1e-12)
    cotangent = pb.pullback(vector_function, X)[1](tangent)[0]
    assert isinstance(cotangent, da.Array)
    np.testing.assert_allclose(cotangent.compute(),
                               pb.pullback(vector_function, X)[1](X)[0], rtol=1e-12)


def test_jit_keeps_one_cache_entry_per_array_type():
    gradient = pb.jit(pb.grad(rosenbrock))
    on_numpy = gradient(X)
    with counting() as scheduler:
        on_dask = gradient(_as_dask(X))
    assert scheduler.computations == 0
    assert isinstance(on_numpy, np.ndarray) and isinstance(on_dask, da.Array)
    np.testing.assert_allclose(on_dask.compute(), on_numpy, rtol=1e-12)
    assert len(gradient.cache) == 2


def test_an_operation_dask_lacks_is_an_error_naming_it_and_nothing_is_computed():
    x = _as_dask(X.reshape(3, 4))
    with counting() as scheduler:
        with raises(ArrayLibraryError, "det", "dask"):
            pb.grad(lambda x: np.linalg.det(x[:, :3]))(x)
    assert scheduler.computations == 0


def test_a_local_cluster_of_two_worker_processes_computes_a_gradient_and_an_hvp():
    x = da.from_array(rng.uniform(0.5, 1.5, 10_000), chunks=2_500)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        jitted = pb.jit(pb.grad(rosenbrock))(x)      # one task per chunk, sent pickled
        assert _chunked_path_taken(jitted)
        futures = client.compute([pb.grad(rosenbrock)(x), pb.hvp(rosenbrock, x, x), jitted])
        distributed.wait(futures, timeout=300)       # a cluster that hangs fails the test
        gradient, product, jitted = client.gather(futures)
    plain = x.compute()
    np.testing.assert_allclose(gradient, pb.grad(rosenbrock)(plain), rtol=1e-12)
    np.testing.assert_allclose(jitted, pb.grad(rosenbrock)(plain), rtol=1e-12)
    np.testing.assert_allclose(product, pb.hvp(rosenbrock, plain, plain), rtol=1e-12)


def test_array_api_arrays_without_numpys_dispatch_protocols_are_refused_with_the_way_out():
    """array-api-strict arrays have no __array_function__/__array_ufunc__, so pullback
    cannot see operations on them: a clear refusal, not a silent conversion."""
    import array_api_strict as xp
    x = xp.asarray([1.0, 2.0])
    with raises(NonDifferentiableInputError, "Array API", "np.asarray(x)"):
        pb.grad(lambda x: xp.sum(x * x))(x)


def test_reverse_mode_through_slices_pads_instead_of_assigning_items():
    """The transpose of a slice is a pad: item assignment into a lazy array would cost a
    pass over every chunk and keep them all alive."""
    gradient = pb.grad(rosenbrock)(_as_dask(X))
    operations = {(key[0] if isinstance(key, tuple) else key).rsplit("-", 1)[0]
                  for key in gradient.__dask_graph__()}
    assert "setitem" not in operations and "concatenate" in operations, operations


def test_item2_the_cotangent_of_a_sum_is_chunked_like_its_operand():
    """Broadcasting the sum's cotangent made one chunk of the operand's whole size (computed
    on one worker, then split up and sent to every other): no rechunking now, and no chunk
    larger than the operand's."""
    x = da.from_array(np.linspace(0.5, 1.5, 40), chunks=10)
    with counting() as scheduler:
        gradient = pb.grad(lambda x: np.sum(x ** 2))(x)
    assert scheduler.computations == 0
    layers = {name.rsplit("-", 1)[0] for name in gradient.__dask_graph__().layers}
    assert not any(name.startswith("rechunk") for name in layers), layers
    assert gradient.chunks == x.chunks
    np.testing.assert_allclose(gradient.compute(), 2 * x.compute())


def test_item2_arrays_made_like_a_dask_array_of_its_shape_share_its_chunks():
    from pullback.core import arrays
    x = da.from_array(np.ones(40), chunks=10)
    for made in (arrays.zeros((40,), np.float64, like=x), arrays.ones((40,), np.float64, like=x),
                 arrays.empty((40,), np.float64, like=x),
                 arrays.full((40,), 2.0, np.float64, like=x)):
        assert isinstance(made, da.Array) and made.chunks == x.chunks


def test_item6_the_cupy_benchmark_says_what_it_needs_where_there_is_no_gpu(monkeypatch):
    """benchmarks/cupy_gpu.py measures nothing without CuPy and a GPU, and says so."""
    from helpers import benchmark_module
    bench = benchmark_module("cupy_gpu")
    monkeypatch.setattr(bench, "gpu_missing", lambda: "ModuleNotFoundError: No module named 'cupy'")
    monkeypatch.setattr("sys.argv", ["cupy_gpu.py"])
    with pytest.raises(SystemExit, match="needs CuPy and an NVIDIA GPU"):
        bench.main()
    assert bench.rosenbrock(np)(np.ones(5)) == 0.0


def test_item1_derivatives_made_by_the_transposes_of_sums_and_indexing_alone_are_dask():
    """A number as the cotangent of a Dask function's output: the sums' and indexing's
    lazy cotangents are made in x's library (NumPy's before, where no Dask operand
    followed). (jit(grad) of such a function stages a NumPy constant: not tested here.)"""
    f = lambda x: np.sum(x) + x[2, 3] + 2.0 * np.mean(x[1:, 2:4]) + np.sum(x[1:, 2])
    x = _as_dask(X.reshape(3, 4))
    with counting() as scheduler:
        lazy = {"grad": pb.grad(f)(x), "pullback of 1.0": pb.pullback(f, x)[1](1.0)[0],
                "pullback of a Dask 1": pb.pullback(f, x)[1](da.ones(()))[0],
                "hessian": pb.hessian(f)(x)}
    assert scheduler.computations == 0
    expected = {"grad": pb.grad(f)(X.reshape(3, 4)), "hessian": np.zeros((3, 4, 3, 4))}
    for kind, value in lazy.items():
        assert isinstance(value, da.Array), kind
        np.testing.assert_allclose(value.compute(), expected.get(kind, expected["grad"]),
                                   rtol=1e-15, err_msg=kind)


def _chunked_layers(array, blocks):
    """The names of the layers of a Dask array's graph with a task per chunk (or more)."""
    return sorted(name.rsplit("-", 1)[0] for name, layer in array.__dask_graph__().layers.items()
                  if len(layer) >= blocks)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_item1_numbers_multiplying_a_sums_cotangent_make_no_pass_over_the_chunks(dtype):
    """A gradient's seed on Dask is the number 1, as on NumPy: numbers fold into the sum's
    cotangent, and the gradient is made by one full_like (before: ones, then a pass per
    multiplication and negation). Any other lazy cotangent is a symbolic 0-d scale: numbers
    fold into it as 0-d operations, one pass in all (ones times the scale)."""
    x = da.from_array(np.linspace(0.5, 1.5, 40).astype(dtype), chunks=10)
    f = lambda x: np.sum(-(2.0 * (3.0 * x)))
    with counting() as scheduler:
        gradient = pb.grad(f)(x)
        scaled = pb.pullback(f, x)[1](da.from_array(np.array(2.0, dtype)))[0]
    assert scheduler.computations == 0
    assert _chunked_layers(gradient, 4) == ["full_like"]
    assert _chunked_layers(scaled, 4) == ["mul", "ones_like"]
    for value, factor in ((gradient, 1), (scaled, 2)):
        assert value.dtype == dtype and value.chunks == x.chunks
        np.testing.assert_array_equal(value.compute(), np.full(40, -6.0 * factor, dtype))


def test_item1_a_gradients_seed_folds_as_the_number_one_after_an_array_too():
    """(x**2)**2: the seed's 2 folds with the next rule's 2 as on NumPy (y * 4 * x: two
    passes); a lazy cotangent of unknown value cannot fold there (IEEE: y * 2s * 2 * x).
    Chunked across columns, grad runs eagerly (not one task per chunk: ir/chunked.py)."""
    x = da.from_array(np.linspace(0.5, 1.5, 40).reshape(20, 2), chunks=(10, 1))
    f = lambda x: np.sum((x ** 2) ** 2)
    gradient = pb.grad(f)(x)
    scaled = pb.pullback(f, x)[1](da.ones(()))[0]
    assert _chunked_layers(gradient, 4).count("mul") == 2
    assert _chunked_layers(scaled, 4).count("mul") == 3
    for value in (gradient, scaled):
        np.testing.assert_allclose(value.compute(), 4 * x.compute() ** 3, rtol=1e-15)


def test_item1_a_lazy_cotangent_of_a_sum_is_never_computed_and_scales_the_derivative():
    x = _as_dask(X)
    cotangent = da.from_array(np.array(3.0))
    with counting() as scheduler:
        derivative = pb.pullback(lambda x: np.sum(5.0 * x ** 2), x)[1](cotangent)[0]
    assert scheduler.computations == 0 and isinstance(derivative, da.Array)
    np.testing.assert_allclose(derivative.compute(), 30.0 * X, rtol=1e-15)


def test_item1_the_rosenbrock_gradient_graph_is_smaller_than_the_hand_written_one():
    """The benchmark's problem at a small size (10 chunks, as there): pullback's gradient
    has fewer tasks than the hand-written dask.array gradient once Dask has optimised
    both (488 before, against 408: slices' cotangents padded in the chunks of their own
    pieces, summed at the union of all boundaries), and comes back in x's chunks."""
    from helpers import benchmark_module
    bench = benchmark_module("dask_cluster")
    x = da.from_array(np.linspace(0.5, 1.5, 100), chunks=10)
    with counting() as scheduler:
        ours = pb.grad(bench.chained_rosenbrock)(x)
    assert scheduler.computations == 0
    hand = bench.hand_written_dask_gradient(x)
    tasks = [len(dask.optimize(g)[0].__dask_graph__()) for g in (ours, hand)]
    assert tasks[0] < 0.8 * tasks[1], tasks
    assert ours.chunks == x.chunks
    np.testing.assert_allclose(ours.compute(), hand.compute(), rtol=1e-12)


def test_item1_the_cotangent_of_slices_of_step_one_is_chunked_like_the_sliced_array():
    x = da.from_array(np.linspace(0.5, 1.5, 40), chunks=7)
    f = lambda x: np.sum(x[3:37] * x[5:39]) + np.sum(x[:-1] ** 2)
    gradient = pb.grad(f)(x)
    assert gradient.chunks == x.chunks
    np.testing.assert_allclose(gradient.compute(), pb.grad(f)(x.compute()), rtol=1e-12)


@pytest.mark.parametrize("make", ["zeros", "ones", "empty", "full"])
def test_item1_arrays_made_like_a_dask_array_compute_in_the_dtype_asked(make):
    """Dask's full_like takes `order` third where NumPy's takes `dtype`: keywords only."""
    from pullback.core import arrays
    x = da.from_array(np.ones(40), chunks=10)
    args = (2.0,) if make == "full" else ()
    made = getattr(arrays, make)((40,), *args, np.float32, like=x)
    assert made.chunks == x.chunks and made.compute().dtype == np.float32


def test_item1_a_derivative_is_never_an_array_the_function_closed_over():
    """Dask arrays can be assigned into (which rebinds that Python object): a derivative
    equal to a constant of f is a new object, not the constant itself."""
    x, y = _as_dask(X), _as_dask(X[::-1].copy())
    gradient = pb.grad(lambda x: np.sum(x * y))(x)
    assert gradient is not y
    gradient[0] = 0.0
    np.testing.assert_array_equal(y.compute(), X[::-1])


# ------------------------------------------------- issue 13, follow-up: the gaps named

CONSTANT_GRADIENTS = {
    "sum": lambda x: np.sum(x),
    "number times a sum": lambda x: 3.0 * np.sum(x),
    "a sum times a number": lambda x: np.sum(x) * 3.0,
    "negated mean": lambda x: -np.mean(x),
    "a sum over two": lambda x: np.sum(x) / 2,
    "an element times a number": lambda x: 2.0 * x[3],
    "a sum of a slice": lambda x: np.sum(x[2:9]),
    "a sum of a slice with a new axis": lambda x: np.sum(x[None, 2:9]),
}


@pytest.mark.parametrize("name", CONSTANT_GRADIENTS)
def test_item2_jit_of_a_constant_gradient_comes_back_in_the_inputs_library(name):
    """A gradient that does not depend on x is a constant of the staged program (a NumPy
    array): it came back as NumPy's from a Dask input before."""
    f, x = CONSTANT_GRADIENTS[name], _as_dask(X)
    with counting() as scheduler:
        gradient = pb.jit(pb.grad(f))(x)
    assert scheduler.computations == 0
    assert isinstance(gradient, da.Array) and gradient.chunks == x.chunks
    np.testing.assert_allclose(gradient.compute(), pb.grad(f)(X), rtol=1e-15)


def test_item2_jit_results_that_are_constants_come_back_in_the_inputs_library():
    x = _as_dask(X)
    jitted = pb.jit(lambda x: (2.0 * x, np.ones(3), np.float64(2.0)))
    with counting() as scheduler:
        results = jitted(x) + (pb.jit(pb.jacobian(lambda x: 2.0 * x))(x),
                               pb.jit(pb.hessian(lambda x: np.sum(x)))(x))
    assert scheduler.computations == 0
    expected = (2.0 * X, np.ones(3), 2.0, 2.0 * np.eye(12), np.zeros((12, 12)))
    for value, want in zip(results, expected):
        assert isinstance(value, da.Array), type(value)
        np.testing.assert_array_equal(value.compute(), want)


@pytest.mark.parametrize("name", ["sum", "number times a sum", "a sum times a number",
                                  "negated mean", "a sum over two"])
def test_item2_numbers_times_a_sum_fold_into_the_seed_and_make_one_full_like(name):
    """c * np.sum(x): the seed (1) times c reached the sum as a lazy 0-d product, made
    ones_like(x) times it (a pass over every chunk); now numbers fold into the seed as
    on NumPy, and a number given as the cotangent folds the same way."""
    f, x = CONSTANT_GRADIENTS[name], _as_dask(X)
    with counting() as scheduler:
        made = {"grad": pb.grad(f)(x), "pullback of 2.0": pb.pullback(f, x)[1](2.0)[0],
                "pullback of a NumPy 2": pb.pullback(f, x)[1](np.float64(2.0))[0]}
    assert scheduler.computations == 0
    for kind, value in made.items():
        assert _chunked_layers(value, 3) == ["full_like"], (kind, _chunked_layers(value, 3))
        factor = 1.0 if kind == "grad" else 2.0
        np.testing.assert_allclose(value.compute(), factor * pb.grad(f)(X), rtol=1e-15,
                                   err_msg=kind)


def test_item2_a_known_number_assigned_into_is_no_longer_taken_for_that_number():
    """The numbers reverse mode folds on Dask are remembered by the 0-d arrays made for
    them: a derivative handed back to the user is such an array, and assigning into it
    (Dask rebinds the object) must not leave its old value remembered."""
    from pullback.core import arrays
    scalar = arrays.known_scalar(2.0, np.float64, like=_as_dask(X))
    assert arrays.known_value(scalar) == 2.0
    scalar[()] = 5.0
    assert arrays.known_value(scalar) is None
    cotangent = pb.grad(lambda y: 2.0 * y)(da.from_array(np.array(1.5)))
    cotangent[()] = 5.0
    derivative = pb.pullback(lambda x: 3.0 * np.sum(x), _as_dask(X))[1](cotangent)[0]
    np.testing.assert_array_equal(derivative.compute(), np.full(12, 15.0))


STACK = rng.normal(size=(3, 4, 4)) + 4 * np.eye(4)
RIGHT = rng.normal(size=(3, 4, 2))
STACKED_SOLVES = {
    "matrices": (lambda a: np.sum(np.linalg.solve(a, RIGHT) ** 2), STACK),
    "right-hand sides": (lambda b: np.sum(np.linalg.solve(STACK, b) ** 3), RIGHT),
    "one matrix, stacked right-hand sides": (lambda a: np.sum(np.linalg.solve(a, RIGHT) ** 2),
                                             STACK[0]),
    "vectors with a new axis": (lambda b: np.sum(np.linalg.solve(STACK, b[..., None]) ** 2),
                                RIGHT[..., 0]),
}


@pytest.mark.parametrize("name", STACKED_SOLVES)
def test_item2_stacked_solves_and_their_derivatives_work_on_dask(name):
    """Dask's solve takes 2-d arrays only: a stack is solved one matrix at a time (it was
    an ArrayLibraryError), and its derivatives follow."""
    f, value = STACKED_SOLVES[name]
    x = da.from_array(value, chunks=2)
    with counting() as scheduler:
        lazy = {"grad": pb.grad(f)(x), "hessian": pb.hessian(f)(x), "hvp": pb.hvp(f, x, x),
                "jit(grad)": pb.jit(pb.grad(f))(x)}
    assert scheduler.computations == 0
    expected = {"grad": pb.grad(f)(value), "hessian": pb.hessian(f)(value),
                "hvp": pb.hvp(f, value, value), "jit(grad)": pb.grad(f)(value)}
    for kind, got in lazy.items():
        assert isinstance(got, da.Array), kind
        np.testing.assert_allclose(got.compute(), expected[kind], rtol=1e-9, err_msg=kind)


def test_item2_a_stacked_solve_dask_cannot_do_is_an_error_naming_it():
    """Matrices in chunks that are not square: Dask's solve refuses them."""
    a = da.from_array(STACK, chunks=(3, 3, 1))
    with counting() as scheduler:
        with raises(ArrayLibraryError, "solve", "dask"):
            pb.grad(lambda a: np.sum(np.linalg.solve(a, RIGHT)))(a)
    assert scheduler.computations == 0


X0 = np.array(1.5)
LINEAR = {      # derivatives made from the cotangent or tangent alone, never from x's values
    "identity of a 0-d array": (lambda x: x, X0),
    "negation of a 0-d array": (lambda x: -x, X0),
    "a number times a 0-d array": (lambda x: 3.0 * x, X0),
    "a reversed slice times a number": (lambda x: 2.0 * x[::-1], X),
    "a transpose": (lambda x: x.reshape(3, 4).T, X),
    "an element with a new axis": (lambda x: x[2, None], X),
    "new axes around a slice": (lambda x: x[None, 1:, None], X),
}


@pytest.mark.parametrize("name", LINEAR)
def test_item3_derivatives_made_from_numpy_cotangents_and_tangents_are_dask(name):
    """A NumPy (or number) cotangent or tangent of Dask values gave NumPy derivatives
    where the derivative never met x's values; and jit gave NumPy ones throughout."""
    f, value = LINEAR[name]
    x = da.from_array(value, chunks=5)
    out = f(value)
    direction = np.linspace(1.0, 2.0, out.size).reshape(out.shape)
    tangent = np.linspace(-1.0, 1.0, value.size).reshape(value.shape)
    with counting() as scheduler:
        lazy = {"pullback": pb.pullback(f, x)[1](direction)[0],
                "pushforward": pb.pushforward(f, (x,), (tangent,))[1],
                "jvp": pb.jvp(f, (x,), (tangent,))[1],
                "grad": pb.grad(lambda x: np.sum(f(x)))(x),
                "jacobian": pb.jacobian(f)(x),
                "jit(grad)": pb.jit(pb.grad(lambda x: np.sum(f(x))))(x),
                "jit(pullback)": pb.jit(lambda x, c: pb.pullback(f, x)[1](c)[0])(x, direction),
                "jit(pushforward)": pb.jit(lambda x, t: pb.pushforward(f, (x,), (t,))[1])(
                    x, tangent)}
        if out.shape == ():
            lazy["pullback of 2.0"] = pb.pullback(f, x)[1](2.0)[0]
    assert scheduler.computations == 0
    expected = {"pullback": pb.pullback(f, value)[1](direction)[0],
                "pushforward": pb.pushforward(f, (value,), (tangent,))[1],
                "jvp": pb.jvp(f, (value,), (tangent,))[1],
                "grad": pb.grad(lambda x: np.sum(f(x)))(value),
                "jacobian": pb.jacobian(f)(value)}
    if out.shape == ():
        expected["pullback of 2.0"] = pb.pullback(f, value)[1](2.0)[0]
    expected["jit(grad)"] = expected["grad"]
    expected["jit(pullback)"] = expected["pullback"]
    expected["jit(pushforward)"] = expected["pushforward"]
    for kind, got in lazy.items():
        assert isinstance(got, da.Array), f"{kind}: {type(got)}"
        np.testing.assert_allclose(got.compute(), expected[kind], rtol=1e-15, err_msg=kind)


def test_item3_a_numpy_cotangent_is_copied_not_read_later_by_the_lazy_derivative():
    """Dask keeps a NumPy array it is given and reads it when computed: a cotangent the
    caller modifies afterwards must not change the derivative."""
    x = _as_dask(X)
    cotangent = np.ones(12)
    derivative = pb.pullback(lambda x: 2.0 * x[::-1], x)[1](cotangent)[0]
    cotangent[:] = 7.0
    np.testing.assert_array_equal(derivative.compute(), np.full(12, 2.0))


def test_item3_array_api_arrays_are_refused_as_cotangents_tangents_and_jit_inputs_too():
    import array_api_strict as xp
    strict = xp.asarray(X)
    with raises(CotangentError, "Array API", "np.asarray(x)"):
        pb.pullback(lambda x: 2.0 * x, X)[1](strict)
    with raises(TangentError, "Array API", "np.asarray(x)"):
        pb.pushforward(lambda x: 2.0 * x, (X,), (strict,))
    with raises(TangentError, "Array API", "np.asarray(x)"):
        pb.hvp(lambda x: np.sum(x ** 3), X, strict)
    with raises(StaticArgumentError, "Array API", "np.asarray(x)"):
        pb.jit(lambda x: 2.0 * x)(strict)


CREATIONS = {
    "zeros": lambda arrays, shape, dtype, like: arrays.zeros(shape, dtype, like=like),
    "ones": lambda arrays, shape, dtype, like: arrays.ones(shape, dtype, like=like),
    "empty": lambda arrays, shape, dtype, like: arrays.empty(shape, dtype, like=like),
    "full": lambda arrays, shape, dtype, like: arrays.full(shape, 2.0, dtype, like=like),
    "eye": lambda arrays, shape, dtype, like: arrays.eye(shape[0], dtype, like=like),
    "tri": lambda arrays, shape, dtype, like: arrays.tri(shape[0], dtype=dtype, like=like),
    "broadcast_scalar": lambda arrays, shape, dtype, like: arrays.broadcast_scalar(
        2.0, shape, dtype, like=like),
    "known_scalar": lambda arrays, shape, dtype, like: arrays.known_scalar(2.0, dtype, like=like),
}


@pytest.mark.parametrize("name", CREATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.complex128, np.complex64])
def test_item3_arrays_made_like_a_dask_array_of_another_shape_have_the_dtype_asked(name, dtype):
    """Dask's zeros dropped a dtype passed in NumPy's position: complex zeros made like a
    Dask operand of another shape came out float64 (the embedding of complex values at
    integer indices lost their imaginary parts: a silently wrong jit(hessian))."""
    from pullback.core import arrays
    made = CREATIONS[name](arrays, (3, 3), np.dtype(dtype), _as_dask(X))
    assert isinstance(made, da.Array)
    assert made.dtype == dtype and made.compute().dtype == dtype


INTEGER_INDEXES = {
    "repeated positions": (lambda x: np.sum(x[np.array([1, 1, 5])] ** 2), X),
    "rows of a matrix": (lambda m: np.sum(m[np.array([0, 2, 2])] ** 3), X.reshape(3, 4)),
    "complex values": (lambda x: np.sum(np.abs(x[np.array([1, 1, 5])] * (1 + 1j)) ** 2), X),
    "float32": (lambda x: np.sum(x[np.array([1, 1, 5])] ** 2), X.astype(np.float32)),
    "a Dask index": (lambda x: np.sum(x[da.from_array(np.array([1, 1, 5]), chunks=2)] ** 2), X),
}


@pytest.mark.parametrize("name", INTEGER_INDEXES)
def test_item3_indexing_by_integer_arrays_differentiates_on_dask(name):
    """The cotangent of x[i] adds at i with np.add.at, which Dask lacks (a bare TypeError
    from the sweep); jit's generated code wrote into NumPy zeros (computing Dask values);
    a Dask index was computed (np.asarray) to make the index template."""
    f, value = INTEGER_INDEXES[name]
    x = da.from_array(value, chunks=5)
    kinds = {"grad": pb.grad(f), "hessian": pb.hessian(f), "jit(grad)": pb.jit(pb.grad(f)),
             "jit(hessian)": pb.jit(pb.hessian(f))}
    with counting() as scheduler:
        lazy = {kind: derivative(x) for kind, derivative in kinds.items()}
    assert scheduler.computations == 0
    for kind, got in lazy.items():
        expected = kinds[kind](value)
        assert isinstance(got, da.Array) and got.dtype == expected.dtype, (kind, got.dtype)
        np.testing.assert_allclose(got.compute(), expected, rtol=1e-6, err_msg=kind)


def test_item3_a_dask_boolean_mask_is_refused_without_computing_it():
    x = _as_dask(X)
    with counting() as scheduler:
        with raises(UnsupportedFunctionError, "boolean-mask", "NumPy array"):
            pb.grad(lambda x: np.sum(x[da.from_array(X > 1)]))(x)
    assert scheduler.computations == 0


def test_item3_jit_on_dask_runs_the_primitives_so_a_refusal_names_the_operation():
    """jit ran the generated NumPy code on Dask arrays: a refusal was Dask's bare error."""
    m = _as_dask(X.reshape(3, 4))
    with raises(ArrayLibraryError, "getitem", "dask"):
        pb.jit(pb.grad(lambda m: np.sum(m[np.array([0, 2]), np.array([1, 3])] ** 2)))(m)


def test_item3_jit_never_returns_an_input_or_a_dask_constant_itself():
    """Dask arrays can be assigned into: a result must be an object of its own."""
    x, y = _as_dask(X), _as_dask(X[::-1].copy())
    results = pb.jit(lambda x: (x, y, pb.grad(lambda x: np.sum(x * y))(x)))(x)
    assert all(r is not x and r is not y for r in results)
    results[1][0] = 0.0
    np.testing.assert_array_equal(y.compute(), X[::-1])


def test_item3_a_numpy_array_indexed_by_a_dask_index_is_neither_computed_nor_numpy():
    """NumPy's indexing and np.add.at take a Dask index by computing it (np.asarray)."""
    index = da.from_array(np.array([1, 1, 5]), chunks=2)
    f = lambda x: np.sum(x[index] ** 2)
    with counting() as scheduler:
        lazy = {"grad": pb.grad(f)(X), "hessian": pb.hessian(f)(X)}
    assert scheduler.computations == 0
    plain = lambda x: np.sum(x[np.array([1, 1, 5])] ** 2)
    for kind, expected in (("grad", pb.grad(plain)(X)), ("hessian", pb.hessian(plain)(X))):
        assert isinstance(lazy[kind], da.Array), kind
        np.testing.assert_allclose(lazy[kind].compute(), expected, rtol=1e-15, err_msg=kind)


LOOPS = {
    "fori_loop": lambda x: np.sum(pb.fori_loop(0, 3, lambda i, c: np.sin(c), x)),
    "scan": lambda x: pb.scan(lambda c, xi: (c + xi, c * xi), 0.0, x)[0],
    "while_loop": lambda x: np.sum(pb.while_loop(lambda c: np.sum(c) < 10, lambda c: c * 2, x)),
    "switch": lambda x: np.sum(pb.cond(True, lambda a: a * 2, lambda a: a * 3, x)),
    "checkpoint": lambda x: np.sum(pb.checkpoint(np.sin)(x)),
    "closure": lambda y: np.sum(pb.fori_loop(0, 2, lambda i, c: c * _as_dask(X), X)),
}


@pytest.mark.parametrize("name", sorted(LOOPS))
@pytest.mark.parametrize("transform", ["call", "grad"])
def test_loops_refuse_dask_arrays_rather_than_compute_them_into_numpy(name, transform):
    """Loop and branch bodies run as generated NumPy code: fori_loop, while_loop and cond of
    Dask arrays computed them and returned NumPy arrays."""
    f = LOOPS[name] if transform == "call" else pb.grad(LOOPS[name])
    with counting() as scheduler:
        with raises(ArrayLibraryError, f"pullback.{name if name != 'closure' else 'fori_loop'}",
                    "dask", "np.asarray"):
            f(_as_dask(X))
    assert scheduler.computations == 0


# ---- issue 13, worker memory floor: jit runs a program local along the chunks per chunk

def _chunked_path_taken(result) -> bool:
    """Whether a Dask result came from one task per chunk (ir/chunked.py)."""
    return any(name.startswith("_window_block") for name in result.__dask_graph__().layers)


LOCAL_PROGRAMS = {   # name: (f of its arguments, arguments' leading length, depth windows need)
    "rosenbrock grad": (pb.grad(rosenbrock), 1),
    "rosenbrock hvp": (lambda x, v: pb.hvp(rosenbrock, x, v), 1),
    "elementwise grad": (pb.grad(SCALAR_FUNCTIONS["elementwise"]), 0),
    "wide stencil grad": (pb.grad(lambda x: np.sum(x[3:] * x[:-3] ** 2
                                                   + np.sin(x[1:-2]) * x[2:-1])), 3),
    "two inputs": (pb.grad(lambda x, y: np.sum(x[2:] * y[:-2]) + np.sum(np.exp(y[1:] - x[:-1]))),
                   2),
    "rows of a matrix": (pb.grad(lambda m: np.sum((m[1:, 1:] - m[:-1, :-1] ** 2) ** 2 * 2.0)), 1),
    "a broadcast row": (lambda m: pb.grad(lambda m: np.sum(np.tanh(m[2:] * np.arange(3.0))))(m)
                        * m, 2),
    # item 2: reductions over the leading axis (partials per chunk, reduced across chunks)
    # and several outputs
    "a value and its gradient": (pb.value_and_grad(rosenbrock), 1),
    "value, gradient and hvp": (lambda x, v: (rosenbrock(x), pb.grad(rosenbrock)(x),
                                              pb.hvp(rosenbrock, x, v)), 1),
    "reductions of every kind": (lambda x: (np.max(x[1:] * x[:-1]), np.min(np.sin(x)),
                                            np.prod(1 + x[2:] / 100),
                                            np.sum(x) * 2 + np.sqrt(np.sum(x ** 2)),
                                            pb.grad(rosenbrock)(x)), 2),
    "rows summed, all summed": (lambda m: (np.sum(m[1:] * m[:-1], axis=0), np.sum(m ** 2),
                                           pb.value_and_grad(lambda m: np.sum(
                                               m[1:, 1:] * m[:-1, :-1]))(m)), 1),
}


def _inputs(name, n, chunks):
    arguments = 2 if name in ("rosenbrock hvp", "two inputs", "value, gradient and hvp") else 1
    shape = (n, 3) if name in ("rows of a matrix", "a broadcast row",
                               "rows summed, all summed") else (n,)
    plain = [np.random.default_rng(i).uniform(0.5, 1.5, shape) for i in range(arguments)]
    return plain, [da.from_array(p, chunks=(chunks,) + (-1,) * (p.ndim - 1)) for p in plain]


@pytest.mark.parametrize("chunks", [(8, 7, 9, 11), (9,) * 6 + (7,), (20, 20, 21)])
@pytest.mark.parametrize("name", LOCAL_PROGRAMS)
def test_memory_floor_jit_runs_a_local_program_as_one_task_per_chunk_equal_to_numpy(name, chunks):
    """jit ran every Dask program equation by equation (a task per operation and chunk,
    whose results waited in the workers' memory): a program local along the leading axis
    now runs its generated NumPy code once per chunk, on the chunk and the `depth` nearest
    elements of each neighbour, lazily, giving NumPy's values at every chunk boundary
    (chunks as short as the depth allows, of uneven lengths)."""
    f, depth = LOCAL_PROGRAMS[name]
    plain, lazy = _inputs(name, sum(chunks), chunks)
    jitted = pb.jit(f)
    with counting() as scheduler:
        results = pb.tree.flatten(jitted(*lazy))[0]
    assert scheduler.computations == 0
    for result in results:
        assert isinstance(result, da.Array) and _chunked_path_taken(result), name
        if result.shape[:1] == lazy[0].shape[:1]:           # not a reduction's
            assert result.chunks[0] == lazy[0].chunks[0]
    entry, = jitted.cache.values()
    assert entry._windows.depth == depth
    for result, value in zip(dask.compute(*results), pb.tree.flatten(f(*plain))[0]):
        np.testing.assert_allclose(result, value, rtol=1e-13, atol=1e-13, err_msg=name)


FALLBACKS = {   # name: (f, arguments); each still right and lazy, by Dask's primitives
    "a reduction inside": (pb.grad(lambda x: np.sum(x / np.sum(x) * x[1:].mean())), lambda x: (x,)),
    "steps of two": (pb.grad(lambda x: np.sum(x[::2] * x[1::2])), lambda x: (x,)),
    "a slice from a fixed stop": (pb.grad(lambda x: np.sum(x[:30] * x[5:35])), lambda x: (x,)),
    "reversed": (pb.grad(lambda x: np.sum(x * x[::-1])), lambda x: (x,)),
    "chunks shorter than the depth": (pb.grad(lambda x: np.sum(x[6:] * x[:-6])),
                                      lambda x: (x.rechunk(5),)),
    "chunks differing between inputs": (pb.grad(lambda x, y: np.sum(x[1:] * y[:-1])),
                                        lambda x: (x, x.rechunk(7) + 1)),
    "chunks across columns": (pb.grad(lambda m: np.sum(m[1:] * m[:-1])),
                              lambda x: (x.reshape(20, 2).rechunk((10, 1)),)),
    "a NumPy argument": (pb.grad(lambda x, y: np.sum(x[1:] * y[:-1])),
                         lambda x: (x, np.arange(40.0))),
    "arguments of two ranks": (pb.grad(lambda x, m: np.sum(x ** 2) + np.sum(m[1:] * m[:-1]),
                                       argnums=1),
                               lambda x: (x, da.stack([x, x, x], axis=1).rechunk((10, 3)))),
    "an output of another length": (lambda x: pb.grad(rosenbrock)(x)[1:], lambda x: (x,)),
}


@pytest.mark.parametrize("name", FALLBACKS)
def test_memory_floor_programs_not_local_along_the_chunks_run_as_before(name):
    """Where the per-chunk run does not apply (a reduction, a slice whose window is not
    a chunk's neighbourhood, inputs chunked otherwise), jit runs Dask's primitives as
    before: lazily, with NumPy's values."""
    f, arguments = FALLBACKS[name]
    lazy = arguments(da.from_array(np.random.default_rng(1).uniform(0.5, 1.5, 40), chunks=10))
    with counting() as scheduler:
        results = pb.jit(f)(*lazy)
    assert scheduler.computations == 0
    results = results if isinstance(results, tuple) else (results,)
    assert not any(_chunked_path_taken(r) for r in results), name
    expected = f(*[np.asarray(a) for a in lazy])
    for result, value in zip(dask.compute(*results),
                             expected if isinstance(expected, tuple) else (expected,)):
        np.testing.assert_allclose(result, value, rtol=1e-13, atol=1e-15, err_msg=name)


def test_memory_floor_every_primitive_pickles_as_itself():
    """A staged program goes to Dask's workers pickled: its primitives come back as the
    registered ones (not copies holding the same name twice)."""
    import pickle
    from pullback.core.primitive import REGISTRY
    for primitive in REGISTRY.values():
        assert pickle.loads(pickle.dumps(primitive)) is primitive, primitive.name


def test_memory_floor_a_broadcast_seed_folds_into_a_number_at_any_size():
    """The gradient's broadcast seeds (one number, strides 0) stayed array constants above
    MAX_FOLD_SIZE elements: jit(grad) of a long Dask array read two full-length constants."""
    from pullback.ir.passes import MAX_FOLD_SIZE, optimize
    x = np.empty(MAX_FOLD_SIZE + 10)
    assert optimize(pb.make_ir(pb.grad(rosenbrock))(x)).consts == []


# ---- issue 13, worker memory floor, item 1: eager operators on Dask run one task per chunk

EAGER_ON_CHUNKS = {   # name: (derivative of the arguments, number of arguments)
    "grad": (pb.grad(rosenbrock), 1),
    "value_and_grad": (pb.value_and_grad(rosenbrock), 1),
    "hvp": (lambda x, v: pb.hvp(rosenbrock, x, v), 2),
    "hvp forward-over-reverse": (lambda x, v: pb.hvp(rosenbrock, x, v, "forward-over-reverse"),
                                 2),
    "grad of two arguments": (pb.grad(lambda x, y: np.sum(x[2:] * y[:-2]) + np.sum(np.exp(y)),
                                      argnums=(0, 1)), 2),
    "grad with aux": (pb.grad(lambda x: (rosenbrock(x), np.max(x)), has_aux=True), 1),
}


@pytest.mark.parametrize("chunks", [(8, 7, 9, 11), (20, 15)])
@pytest.mark.parametrize("name", EAGER_ON_CHUNKS)
def test_memory_floor_eager_derivatives_of_dask_arrays_run_one_task_per_chunk(name, chunks):
    """grad, value_and_grad and hvp of Dask arrays made a task per operation and chunk,
    whose results waited in the workers' memory: every operation on a Dask array is lazy
    anyway, so they now stage the function and run it as one task per chunk where it is
    local along the chunks, lazily, with NumPy's values at uneven chunk boundaries."""
    f, arguments = EAGER_ON_CHUNKS[name]
    plain = [np.random.default_rng(i).uniform(0.5, 1.5, sum(chunks)) for i in range(arguments)]
    with counting() as scheduler:
        results = pb.tree.flatten(f(*[da.from_array(p, chunks=(chunks,)) for p in plain]))[0]
    assert scheduler.computations == 0
    assert all(isinstance(r, da.Array) and _chunked_path_taken(r) for r in results), name
    for result, value in zip(dask.compute(*results), pb.tree.flatten(f(*plain))[0]):
        np.testing.assert_allclose(result, value, rtol=1e-13, atol=1e-13, err_msg=name)


EAGER_FALLBACKS = {   # name: (derivative, Dask argument); staging fails or does not apply
    "random numbers drawn in f (staging refuses)": (
        pb.grad(lambda x: np.sum(x ** 2 * np.random.default_rng(3).uniform(size=x.shape))),
        lambda x: x),
    "a reduction used along the chunks": (pb.grad(lambda x: np.sum(x / np.sum(x) * x)),
                                          lambda x: x),
    "chunks shorter than the depth": (pb.grad(lambda x: np.sum(x[6:] * x[:-6])),
                                      lambda x: x.rechunk(5)),
    "a Dask constant in f": (pb.grad(lambda x: np.sum(x * A_DASK[0, 0]) + np.sum(x[1:] * x[:-1])),
                             lambda x: x),
}


@pytest.mark.parametrize("name", EAGER_FALLBACKS)
def test_memory_floor_eager_derivatives_fall_back_where_chunks_do_not_apply(name):
    """Where staging fails or the staged program is not local along the chunks, the
    eager operators run as before: lazily, with NumPy's values, trace stack clean."""
    f, argument = EAGER_FALLBACKS[name]
    x = argument(da.from_array(np.random.default_rng(1).uniform(0.5, 1.5, 40), chunks=10))
    with counting() as scheduler:
        result = f(x)
    assert scheduler.computations == 0
    assert isinstance(result, da.Array) and not _chunked_path_taken(result), name
    assert trace_stack() == []
    np.testing.assert_allclose(result.compute(), f(np.asarray(x)), rtol=1e-13, err_msg=name)


def test_memory_floor_eager_derivatives_on_chunks_read_the_globals_of_each_call():
    """Eager grad stages f at each call (a program kept from an earlier call would keep
    the values f read then): a NumPy array f closes over and the user changes between
    calls, and a Python number, are read as they are at each call, as on NumPy."""
    weights, scale = np.arange(3.0), [2.0]              # broadcast along the chunked axis
    gradient = pb.grad(lambda x: np.sum(weights * x[1:] * x[:-1] * scale[0]))
    x = da.from_array(np.random.default_rng(2).uniform(0.5, 1.5, (41, 3)), chunks=(11, 3))
    first, expected = gradient(x), gradient(np.asarray(x))
    weights[:] = -1.0
    scale[0] = 3.0
    second = gradient(x)
    assert _chunked_path_taken(first) and _chunked_path_taken(second)
    np.testing.assert_allclose(first.compute(), expected, rtol=1e-14)
    np.testing.assert_allclose(second.compute(), gradient(np.asarray(x)), rtol=1e-14)

