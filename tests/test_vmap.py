"""vmap as a transformation: axes, nesting, composition with every other transformation, errors.

Each primitive's batch rule is checked against a loop in test_primitives.py; here
every result is compared against a Python loop over the examples or a hand
computation. The autouse fixture in conftest.py checks the trace stack is empty
after each test, including those that raise.
"""
import numpy as np
import pytest

import pullback
from helpers import raises
import pullback.numpy as pnp
from pullback import (errors, grad, hessian, jacfwd, jacrev, pullback as vjp, pushforward,
                      vmap)
from pullback.core.engine import trace_stack
from pullback.operators import HESSIAN_MODES

rng = np.random.default_rng(7)


def loop(f, *args, axes=None):
    """f applied to each example (args sliced along `axes`, None = shared), stacked on axis 0."""
    axes = axes if axes is not None else (0,) * len(args)
    size = next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    outs = [f(*[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, axes)])
            for i in range(size)]
    return np.stack(outs)


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=tol, atol=tol)


def f_vec(x):
    """A per-example function of a vector: a nonlinear scalar."""
    return np.sum(np.sin(x) * x ** 2) + np.prod(x[:2]) + np.log1p(x @ x)


def f_vec_out(x):
    """A per-example function of a vector with a vector output."""
    return np.tanh(x) * np.cumsum(x) + x[::-1] ** 2


# ------------------------------------------------------------------ in_axes


def test_in_axes_int_zero_default():
    xs = rng.standard_normal((4, 3))
    close(vmap(f_vec)(xs), loop(f_vec, xs))
    close(vmap(f_vec_out)(xs), loop(f_vec_out, xs))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_in_axes_int_any_axis_including_negative(axis):
    x = rng.standard_normal((2, 3, 4))
    f = lambda a: np.sum(a ** 2, axis=0) * a[-1]       # noqa: E731  (a 2-d example)
    close(vmap(f, in_axes=axis)(x), loop(f, x, axes=(axis,)))


def test_in_axes_none_shares_an_argument():
    xs, w = rng.standard_normal((5, 3)), rng.standard_normal((3, 2))
    f = lambda x, w: np.tanh(x @ w)                    # noqa: E731
    close(vmap(f, in_axes=(0, None))(xs, w), loop(f, xs, w, axes=(0, None)))
    close(vmap(f, in_axes=(None, 1))(xs[0], np.stack([w, 2 * w], axis=1)),
          np.stack([f(xs[0], w), f(xs[0], 2 * w)]))


def test_in_axes_as_a_list_per_argument():
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((4, 3))
    f = lambda a, b: a * b + np.sin(a)                 # noqa: E731
    close(vmap(f, in_axes=[1, 0])(x, y), loop(f, x, y, axes=(1, 0)))
    close(vmap(f, in_axes=(1, 0))(x, y), loop(f, x, y, axes=(1, 0)))


def test_in_axes_for_a_single_argument_as_a_one_tuple():
    x = rng.standard_normal((3, 2))
    close(vmap(f_vec, in_axes=(1,))(x), loop(f_vec, x, axes=(1,)))


def test_in_axes_dict_prefix_per_leaf():
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal((4, 2))}
    xs = rng.standard_normal((4, 3))

    def model(p, x):
        return np.tanh(x @ p["w"] + p["b"])

    got = vmap(model, in_axes=({"w": None, "b": 0}, 0))(params, xs)
    want = np.stack([model({"w": params["w"], "b": params["b"][i]}, xs[i]) for i in range(4)])
    close(got, want)


def test_in_axes_prefix_covers_a_whole_subtree():
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    xs = rng.standard_normal((4, 3))

    def model(p, x):
        return np.sum(np.tanh(x @ p["w"] + p["b"]))

    got = vmap(model, in_axes=(None, 0))(params, xs)
    close(got, np.array([model(params, x) for x in xs]))
    # A nested prefix: a tuple argument with an axis per element.
    pair = (rng.standard_normal((2, 4)), rng.standard_normal(3))
    got = vmap(lambda p: p[0] * np.sum(p[1]), in_axes=((1, None),))(pair)
    close(got, np.stack([pair[0][:, i] * np.sum(pair[1]) for i in range(4)]))


def test_pytree_argument_with_int_in_axes_batches_every_leaf():
    tree = {"a": rng.standard_normal((3, 2)), "b": [rng.standard_normal(3)]}
    got = vmap(lambda t: t["a"] * t["b"][0])(tree)
    close(got, tree["a"] * tree["b"][0][:, None])


def test_numpy_integer_axes():
    x = rng.standard_normal((2, 3))
    close(vmap(f_vec, in_axes=np.int64(1))(x), loop(f_vec, x, axes=(1,)))
    close(vmap(f_vec, in_axes=(np.int32(-1),))(x), loop(f_vec, x, axes=(1,)))
    close(vmap(f_vec_out, out_axes=np.int64(-1))(x), loop(f_vec_out, x).T)


def test_python_scalars_and_none_leaves_with_none_axes():
    xs = rng.standard_normal(4)
    got = vmap(lambda x, c, nothing: c * x ** 2, in_axes=(0, None, None))(xs, 3.0, None)
    close(got, 3.0 * xs ** 2)


# ------------------------------------------------------------------ out_axes


def test_out_axes_int_and_negative():
    xs = rng.standard_normal((4, 3))
    f = lambda x: np.outer(x, x[:2])                   # noqa: E731  example output (3, 2)
    want = loop(f, xs)                                  # (4, 3, 2)
    close(vmap(f, out_axes=0)(xs), want)
    close(vmap(f, out_axes=1)(xs), np.moveaxis(want, 0, 1))
    close(vmap(f, out_axes=2)(xs), np.moveaxis(want, 0, 2))
    close(vmap(f, out_axes=-1)(xs), np.moveaxis(want, 0, -1))
    close(vmap(f, out_axes=-2)(xs), np.moveaxis(want, 0, -2))


def test_out_axes_none_for_an_unbatched_output_and_pytree_out_axes():
    xs, w = rng.standard_normal((4, 3)), rng.standard_normal(3)

    def f(x, w):
        return {"per_example": np.outer(x, w), "shared": w * 2.0, "scalar": x @ w}

    got = vmap(f, in_axes=(0, None), out_axes={"per_example": -1, "shared": None, "scalar": 0})(
        xs, w)
    close(got["per_example"], np.moveaxis(np.stack([np.outer(x, w) for x in xs]), 0, -1))
    close(got["shared"], w * 2.0)
    assert got["shared"].shape == (3,)
    close(got["scalar"], xs @ w)
    # A tuple output with a tuple of out_axes.
    a, b = vmap(lambda x: (x * 2.0, x[0]), in_axes=1, out_axes=(1, 0))(xs.T)
    close(a, 2.0 * xs.T)
    close(b, xs[:, 0])


def test_unbatched_output_is_broadcast_to_the_batch():
    xs = rng.standard_normal((4, 3))
    c = np.array([1.0, 2.0])
    got = vmap(lambda x: c * 3.0)(xs)
    close(got, np.broadcast_to(c * 3.0, (4, 2)))
    got = vmap(lambda x: (x.sum(), 5.0))(xs)
    close(got[0], xs.sum(axis=1))
    close(got[1], np.full(4, 5.0))
    got = vmap(lambda x: np.ones((2, 3)), out_axes=-1)(xs)
    assert got.shape == (2, 3, 4)
    got[0, 0, 0] = 7.0                                  # a writable array, not a broadcast view
    got = vmap(lambda x: 3)(xs)
    assert got.shape == (4,) and got.flags.writeable
    # A constant output under an outer transformation broadcasts too.
    g = grad(lambda s: np.sum(vmap(lambda x: s ** 2)(xs)))(1.5)
    close(g, 4 * 2 * 1.5)


def test_output_batched_only_by_an_outer_vmap_is_broadcast_over_the_inner_batch():
    xs, ys = np.arange(3.0), 10.0 * np.arange(4.0)
    close(vmap(lambda x: vmap(lambda y: x)(ys))(xs), np.repeat(xs[:, None], 4, axis=1))
    got = vmap(lambda x: vmap(lambda y: x * np.ones(2), out_axes=1)(ys))(xs)
    close(got, np.broadcast_to(xs[:, None, None], (3, 2, 4)))
    close(jacfwd(lambda s: vmap(lambda y: s * y)(ys))(1.5), ys)
    close(jacrev(lambda s: vmap(lambda y: s)(ys))(1.5), np.ones(4))


# ------------------------------------------------------------------ mixing batched and unbatched


def test_matmul_with_batched_and_unbatched_operands():
    xs, w, ws = rng.standard_normal((5, 3)), rng.standard_normal((3, 2)), rng.standard_normal(
        (5, 3, 2))
    close(vmap(lambda x: x @ w)(xs), xs @ w)
    close(vmap(lambda w_: xs[0] @ w_)(ws), np.stack([xs[0] @ v for v in ws]))
    close(vmap(lambda x, w_: x @ w_)(xs, ws), np.einsum("bi,bij->bj", xs, ws))
    close(vmap(lambda w_: w_.T @ w_, in_axes=2)(np.moveaxis(ws, 0, 2)),
          np.stack([v.T @ v for v in ws]))
    close(vmap(lambda w_: w @ w_.T, in_axes=0)(ws), np.stack([w @ v.T for v in ws]))


def test_einsum_with_batched_and_unbatched_operands():
    a, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((3, 5))
    f = lambda x, y: np.einsum("ij,jk->ik", x, y)     # noqa: E731
    close(vmap(f, in_axes=(0, None))(a, b), loop(f, a, b, axes=(0, None)))
    bs = rng.standard_normal((3, 5, 4))
    close(vmap(f, in_axes=(0, 2))(a, bs), loop(f, a, bs, axes=(0, 2)))
    close(vmap(lambda x: np.einsum("ij,ij->", x, x))(a), np.einsum("bij,bij->b", a, a))
    ms = rng.standard_normal((3, 2, 2))
    close(vmap(lambda x: np.einsum("ii", x))(ms), np.trace(ms, axis1=1, axis2=2))


def test_indexing_with_batched_and_unbatched_values():
    xs = rng.standard_normal((4, 5))
    idx = np.array([3, 0, 0, 2])
    close(vmap(lambda x: x[1:4:2])(xs), xs[:, 1:4:2])
    close(vmap(lambda x: x[idx])(xs), xs[:, idx])
    close(vmap(lambda x: x[-1] * x[::-1])(xs), xs[:, -1:] * xs[:, ::-1])
    # A batched index into a shared array, and into a batched array.
    table = rng.standard_normal((6, 2))
    ids = np.array([5, 1, 1, 0])
    # (`table[i]` itself cannot work: ndarray.__getitem__ has no dispatch protocol.)
    close(vmap(lambda i: pnp.take(table, i, axis=0))(ids), table[ids])
    close(vmap(lambda i: pnp.getitem(table, (i, slice(None))))(ids), table[ids])
    close(vmap(lambda x, i: x[i])(xs, ids % 5), xs[np.arange(4), ids % 5])
    close(vmap(lambda x: np.where(x > 0, x, 0.0).sum())(xs), np.where(xs > 0, xs, 0.0).sum(axis=1))


def test_concatenate_and_stack_with_batched_and_unbatched_values():
    xs, c = rng.standard_normal((4, 3)), np.array([10.0, 20.0])
    close(vmap(lambda x: np.concatenate([x, c]))(xs),
          np.concatenate([xs, np.broadcast_to(c, (4, 2))], axis=1))
    close(vmap(lambda x: np.concatenate([c, x, x[:1]]))(xs),
          np.stack([np.concatenate([c, x, x[:1]]) for x in xs]))
    close(vmap(lambda x: np.stack([x, x ** 2], axis=1), in_axes=1)(xs.T),
          np.stack([np.stack([x, x ** 2], axis=1) for x in xs]))
    m = rng.standard_normal((2, 3))
    close(vmap(lambda x: np.concatenate([m, x[None]], axis=0))(xs),
          np.stack([np.concatenate([m, x[None]]) for x in xs]))


def test_reductions_and_shape_ops_see_the_example_shape():
    xs = rng.standard_normal((4, 2, 3))

    def f(x):
        assert x.shape == (2, 3) and x.ndim == 2
        return x.reshape(-1).sum() + x.T.mean(axis=0)[1] + np.max(x, axis=-1).sum()

    close(vmap(f)(xs), loop(f, xs))
    close(vmap(f, in_axes=-1)(np.moveaxis(xs, 0, -1)), loop(f, xs))


# ------------------------------------------------------------------ nesting


def test_nested_vmap_two_levels_different_axes():
    x = rng.standard_normal((3, 4, 5))
    f = lambda v: np.sum(np.sin(v) * v[::-1])          # noqa: E731
    got = vmap(vmap(f), in_axes=1)(x)                   # outer over axis 1, inner over axis 0
    want = np.array([[f(x[i, j]) for i in range(3)] for j in range(4)])
    close(got, want)
    got = vmap(vmap(f, in_axes=1), in_axes=0)(x)
    want = np.array([[f(x[i, :, k]) for k in range(5)] for i in range(3)])
    close(got, want)


def test_nested_vmap_outer_product_of_shared_arguments():
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    kernel = lambda u, v: np.exp(-np.sum((u - v) ** 2))     # noqa: E731
    got = vmap(vmap(kernel, in_axes=(None, 0)), in_axes=(0, None))(a, b)
    close(got, np.array([[kernel(u, v) for v in b] for u in a]))
    got = vmap(vmap(kernel, in_axes=(0, None)), in_axes=(None, 0), out_axes=1)(a, b)
    close(got, np.array([[kernel(u, v) for v in b] for u in a]))


def test_nested_vmap_three_levels():
    x = rng.standard_normal((2, 3, 4, 5))
    f = lambda v: v @ v + np.max(v)                     # noqa: E731
    got = vmap(vmap(vmap(f), in_axes=1), in_axes=2, out_axes=-1)(x)
    # outer over axis 2 (size 4) placed last; middle over axis 1 of the rest (size 3); inner axis 0
    want = np.empty((3, 2, 4))
    for k in range(4):
        for j in range(3):
            for i in range(2):
                want[j, i, k] = f(x[i, j, k])
    close(got, want)


def test_nested_vmap_with_out_axes_at_each_level():
    x = rng.standard_normal((2, 3, 4))
    f = lambda v: np.outer(v, v[:2])                    # noqa: E731  (4,) -> (4, 2)
    got = vmap(vmap(f, out_axes=-1), in_axes=1, out_axes=1)(x)
    # outer example j (size 3) at axis 1; inner example i (size 2) last: (4, 3, 2, 2)
    want = np.stack([np.stack([f(x[i, j]) for i in range(2)], axis=-1) for j in range(3)], axis=1)
    assert got.shape == (4, 3, 2, 2)
    close(got, want)


# ------------------------------------------------------------------ composition with derivatives


def test_vmap_of_grad_per_example_gradients():
    xs = rng.standard_normal((6, 4))
    got = vmap(grad(f_vec))(xs)
    close(got, np.stack([grad(f_vec)(x) for x in xs]))
    # With a shared parameter: per-example gradients of a loss.
    w = rng.standard_normal(4)
    loss = lambda w, x: np.log1p(np.exp(-x @ w)) + 0.1 * w @ w   # noqa: E731
    got = vmap(grad(loss), in_axes=(None, 0))(w, xs)
    want = np.stack([-x * (1 / (1 + np.exp(x @ w))) + 0.2 * w for x in xs])
    close(got, want)
    close(got.sum(axis=0), grad(lambda w: sum(loss(w, x) for x in xs))(w))


def test_grad_of_a_function_using_vmap():
    w, xs = rng.standard_normal(4), rng.standard_normal((6, 4))

    def total(w):
        return np.sum(vmap(lambda x: np.tanh(x @ w) ** 2)(xs))

    t = np.tanh(xs @ w)
    close(grad(total)(w), (2 * t * (1 - t ** 2)) @ xs)
    # The batched argument itself is differentiated.
    close(grad(lambda xs: np.sum(vmap(f_vec)(xs)))(xs), np.stack([grad(f_vec)(x) for x in xs]))
    pullback.check_grads(lambda xs: vmap(f_vec_out, in_axes=1)(xs), (xs.T,), order=2)


def test_pushforward_and_pullback_of_a_vmapped_function():
    xs, vs = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    out, tangent = pushforward(vmap(f_vec_out), (xs,), (vs,))
    close(out, loop(f_vec_out, xs))
    close(tangent, np.stack([pushforward(f_vec_out, (x,), (v,))[1] for x, v in zip(xs, vs)]))
    out, back = vjp(vmap(f_vec_out), xs)
    us = rng.standard_normal(out.shape)
    close(back(us)[0], np.stack([vjp(f_vec_out, x)[1](u)[0] for x, u in zip(xs, us)]))


def test_vmap_of_pushforward_and_of_pullbacks_back():
    x = rng.standard_normal(3)
    vs = rng.standard_normal((4, 3))
    # Batched tangents, shared primal: columns of the Jacobian.
    push = lambda v: pushforward(f_vec_out, (x,), (v,))[1]   # noqa: E731
    close(vmap(push)(vs), vs @ jacfwd(f_vec_out)(x).T)
    # Batched primals and tangents.
    xs = rng.standard_normal((4, 3))
    got_out, got_t = vmap(lambda x, v: pushforward(f_vec_out, (x,), (v,)))(xs, vs)
    close(got_out, loop(f_vec_out, xs))
    close(got_t, np.stack([pushforward(f_vec_out, (a,), (b,))[1] for a, b in zip(xs, vs)]))
    # vmap of the back function of one recording: rows of the Jacobian.
    _, back = vjp(f_vec_out, x)
    us = rng.standard_normal((4, 3))
    close(vmap(lambda u: back(u)[0])(us), us @ jacrev(f_vec_out)(x))
    close(vmap(lambda u: back(u)[0], in_axes=1, out_axes=1)(us.T), (us @ jacrev(f_vec_out)(x)).T)


def test_vmap_of_hessian_in_every_mode():
    xs = rng.uniform(0.5, 1.5, (3, 4))
    want = np.stack([hessian(f_vec)(x) for x in xs])
    for mode in HESSIAN_MODES:
        close(vmap(hessian(f_vec, mode=mode))(xs), want, 1e-10)
    # Hand computation for a simple one: f(x) = sum(x^3) -> diag(6x).
    close(vmap(hessian(lambda x: np.sum(x ** 3)))(xs), np.stack([np.diag(6 * x) for x in xs]))


def test_hessian_of_a_function_using_vmap():
    xs = rng.standard_normal((3, 2))

    def f(w):
        return np.sum(vmap(lambda x: np.sin(x @ w) ** 2)(xs))

    w = rng.standard_normal(2)
    # d2/dw2 sum sin(x.w)^2 = sum 2 cos(2 x.w) x x^T
    want = sum(2 * np.cos(2 * x @ w) * np.outer(x, x) for x in xs)
    for mode in HESSIAN_MODES:
        close(hessian(f, mode=mode)(w), want, 1e-10)
    close(pullback.hvp(f, w, np.array([1.0, -1.0])), want @ np.array([1.0, -1.0]), 1e-10)


@pytest.mark.parametrize("jac", [jacfwd, jacrev], ids=["jacfwd", "jacrev"])
def test_vmap_of_jacobians_and_jacobians_of_vmap(jac):
    xs = rng.standard_normal((4, 3))
    close(vmap(jac(f_vec_out))(xs), np.stack([jac(f_vec_out)(x) for x in xs]))
    close(vmap(jac(f_vec_out), in_axes=1, out_axes=-1)(xs.T),
          np.moveaxis(np.stack([jac(f_vec_out)(x) for x in xs]), 0, -1))
    # The Jacobian of a vmapped function is block diagonal.
    j = jac(vmap(f_vec_out))(xs)
    assert j.shape == (4, 3, 4, 3)
    for i in range(4):
        for k in range(4):
            close(j[i, :, k, :], jacfwd(f_vec_out)(xs[i]) if i == k else np.zeros((3, 3)))


def test_vmap_composes_in_every_order_with_grad_of_grad():
    xs = rng.uniform(0.5, 1.5, 5)
    f = lambda s: np.sin(s) * s ** 3                    # noqa: E731
    d2 = lambda s: -np.sin(s) * s ** 3 + 6 * np.cos(s) * s ** 2 + 6 * s * np.sin(s)  # noqa: E731
    close(vmap(grad(grad(f)))(xs), d2(xs))
    close(grad(lambda s: np.sum(vmap(grad(f))(s)))(xs), d2(xs))
    close(vmap(grad(lambda s: np.sum(vmap(grad(f))(s * np.ones(2)))))(xs), 2 * d2(xs))


def test_vmap_of_vmap_of_grad_and_grad_through_nested_vmap():
    x = rng.standard_normal((2, 3, 4))
    got = vmap(vmap(grad(f_vec)))(x)
    close(got, np.stack([np.stack([grad(f_vec)(v) for v in row]) for row in x]))
    g = grad(lambda x: np.sum(vmap(vmap(f_vec), in_axes=1)(x)))(x)
    close(g, got)


def test_float32_stays_float32():
    xs = rng.standard_normal((3, 4)).astype(np.float32)
    assert vmap(f_vec_out)(xs).dtype == np.float32
    assert vmap(grad(f_vec))(xs).dtype == np.float32
    assert vmap(f_vec_out, in_axes=1, out_axes=1)(xs.T).dtype == np.float32


# ------------------------------------------------------------------ errors


def test_error_when_batch_sizes_disagree():
    with raises(errors.BatchError, "different batch sizes", "leaf 0: 3", "leaf 1: 4", "same size"):
        vmap(lambda a, b: a + b)(np.ones(3), np.ones(4))
    with raises(errors.BatchError, "different batch sizes", "leaf 0: 2", "leaf 1: 3"):
        vmap(lambda a, b: a @ b, in_axes=(0, 1))(np.ones((2, 3)), np.ones((3, 3)))


def test_error_when_an_axis_is_out_of_range():
    with raises(errors.BatchError, "in_axes for argument leaf 0 is 2", "1 dimension(s)", "[-1, 1)"):
        vmap(f_vec, in_axes=2)(np.ones(3))
    with raises(errors.BatchError, "in_axes for argument leaf 1 is -3", "2 dimension(s)"):
        vmap(lambda a, b: a, in_axes=(0, -3))(np.ones(2), np.ones((2, 2)))
    with raises(errors.BatchError, "in_axes for argument leaf 0 is 0", "0 dimension(s)"):
        vmap(lambda a: a)(1.0)
    with raises(errors.BatchError, "out_axes is 3", "3 dimension(s)"):
        vmap(lambda x: np.outer(x, x), out_axes=3)(np.ones((2, 2)))
    with raises(errors.BatchError, "out_axes is -4"):
        vmap(lambda x: np.outer(x, x), out_axes=-4)(np.ones((2, 2)))


def test_error_when_all_in_axes_are_none():
    with raises(errors.BatchError, "at least one batched argument", "None"):
        vmap(f_vec, in_axes=None)(np.ones(3))
    with raises(errors.BatchError, "at least one batched argument"):
        vmap(lambda a, b: a, in_axes=(None, None))(np.ones(3), np.ones(3))
    with raises(errors.BatchError, "at least one batched argument"):
        vmap(lambda: 1.0)()


def test_error_when_out_axes_none_for_a_batched_output():
    with raises(errors.BatchError, "out_axes is None", "varies over the batch"):
        vmap(lambda x: x * 2.0, out_axes=None)(np.ones(3))
    with raises(errors.BatchError, "out_axes is None"):
        vmap(lambda x: (x.sum(), x), out_axes=(0, None))(np.ones((2, 3)))


def test_error_when_in_axes_does_not_match_the_arguments():
    with raises(errors.BatchError, "in_axes (0, 0) does not match the structure (*,)", "per argument", "prefix"):
        vmap(f_vec, in_axes=(0, 0))(np.ones((2, 3)))
    with raises(errors.BatchError, "in_axes", "does not match", "{'a': *, 'b': *}"):
        vmap(lambda d: d["a"], in_axes=({"a": 0, "c": 0},))({"a": np.ones(2), "b": np.ones(2)})
    with raises(errors.BatchError, "in_axes", "does not match"):
        vmap(lambda d: d["a"], in_axes=([0, 0],))({"a": np.ones(2), "b": np.ones(2)})
    with raises(errors.BatchError, "in_axes", "does not match"):
        vmap(lambda t: t[0], in_axes=((0, None, 0),))((np.ones(2), np.ones(2)))
    with raises(errors.BatchError, "out_axes (0, 0, 0) does not match the structure (*, *)", "per output"):
        vmap(lambda x: (x, x), out_axes=(0, 0, 0))(np.ones(2))
    with raises(errors.BatchError, "out_axes", "does not match", "per output"):
        vmap(lambda x: {"a": x}, out_axes={"b": 0})(np.ones(2))


def test_errors_inside_nested_transformations_leave_no_trace():
    with raises(errors.BatchError, "different batch sizes"):
        grad(lambda s: np.sum(vmap(lambda a, b: a * b)(s * np.ones(2), np.ones(3))))(1.0)
    with raises(errors.BatchError, "out_axes is None"):
        vmap(lambda x: vmap(lambda y: y * x, out_axes=None)(np.ones(2)))(np.ones(3))
    assert trace_stack() == []


def test_grad_through_vmap_with_moved_axes_and_shared_arguments():
    w, xs = rng.standard_normal((3, 2)), rng.standard_normal((3, 5))

    def loss(w, xs):
        per_example = vmap(lambda x, w: np.tanh(x @ w), in_axes=(1, None), out_axes=1)(xs, w)
        assert per_example.shape == (2, 5)
        return np.sum(per_example ** 2)

    def loss_loop(w, xs):
        return sum(np.sum(np.tanh(xs[:, i] @ w) ** 2) for i in range(5))

    gw, gx = grad(loss, argnums=(0, 1))(w, xs)
    gw_loop, gx_loop = grad(loss_loop, argnums=(0, 1))(w, xs)
    close(gw, gw_loop)
    close(gx, gx_loop)


def test_vmap_of_value_and_grad_with_several_argnums_and_aux():
    w, xs = rng.standard_normal(3), rng.standard_normal((4, 3))

    def f(w, x):
        z = x @ w
        return np.sin(z) ** 2, {"z": z}

    (values, aux), (gw, gx) = vmap(pullback.value_and_grad(f, argnums=(0, 1), has_aux=True),
                                   in_axes=(None, 0))(w, xs)
    z = xs @ w
    close(values, np.sin(z) ** 2)
    close(aux["z"], z)
    close(gw, np.sin(2 * z)[:, None] * xs)
    close(gx, np.sin(2 * z)[:, None] * w)


def test_python_control_flow_on_a_batched_value_raises_a_clear_error():
    # Each example has its own truth value: there is no single bool to give Python, and the
    # error should say so (and point to np.where) instead of recursing until RecursionError.
    with pytest.raises(errors.PullbackError):
        vmap(lambda x: x if x > 0 else -x)(np.array([1.0, -1.0]))
    close(vmap(lambda x: np.where(x > 0, x, -x))(np.array([1.0, -1.0])), [1.0, 1.0])


@pytest.mark.parametrize("update", ["add", "set"])
@pytest.mark.parametrize("index, shape, updates", [
    ((slice(None), slice(None, 1)), (2, 2), (1,)),          # (2, 1) region, updates broadcast
    ((Ellipsis, slice(None, 1)), (3, 2, 2), (2, 1)),
    ((np.array([0, 2]), slice(None, 1)), (3, 2), (1,)),
    ((0,), (2, 3), ()),
], ids=["slices", "ellipsis", "index array", "scalar updates"])
def test_vmap_of_a_scatter_whose_updates_broadcast(update, index, shape, updates):
    # Found by the jit fuzz: batched updates of lower rank than the indexed region were
    # lined up with its leading axes (silently wrong when the sizes happened to agree).
    def f(a, b):
        return getattr(pnp.at(a)[index], update)(b)
    a = rng.standard_normal(shape)
    bs = rng.standard_normal((2,) + updates)
    for in_axes, arrays in (((None, 0), (a, bs)), ((0, 0), (np.stack([a, 2 * a]), bs))):
        expected = np.stack([f(arrays[0] if in_axes[0] is None else arrays[0][k], bs[k])
                             for k in range(2)])
        np.testing.assert_array_equal(pullback.vmap(f, in_axes=in_axes)(*arrays), expected)
