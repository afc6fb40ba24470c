"""Differential fuzz: random NumPy programs, jit against eager.

Each program applies random operations -- elementwise math, arithmetic with a scalar
argument (a Python or NumPy number), views (transposes, einsum, reshapes, slices,
broadcasts, index arrays), reductions, joins, scatters -- to a growing pool of values
and returns several of them (duplicates and views of each other included).
`jit(f)` must equal `f` (values and dtypes, on two calls), return arrays that share
no memory with the input or each other; `jit(grad(loss))` and `jit(hessian(loss))`
must equal `grad(loss)` and `hessian(loss)`, and `vmap(jit(f))` `vmap(f)`. The suite runs a few programs; `python tests/test_jit_fuzz.py N` runs N.
"""
import sys

import numpy as np
import pytest

import pullback
from pullback import grad, jit

UNARY = [np.sin, np.cos, np.tanh, np.abs, np.square, np.negative, np.exp,
         lambda v: v * 1.5, lambda v: 0.5 - v, lambda v: v / 3.0, lambda v: np.sqrt(v * v + 1.0),
         lambda v: np.clip(v, -0.5, np.inf), lambda v: np.where(v > 0, v, -np.inf),
         lambda v: v ** 2, pullback.stop_gradient, lambda v: np.pad(v, 1), lambda v: v.astype(
             np.float32) * 2, lambda v: np.fmax(v, np.nan)]
BINARY = [np.add, np.subtract, np.multiply, np.maximum, lambda a, b: np.where(a > b, a, b),
          lambda a, b: a * 2.0 + b, lambda a, b: pullback.numpy.at(a)[..., :1].add(b[..., :1])]
WITH_SCALAR = [lambda v, s: v * s, lambda v, s: s - v, lambda v, s: np.maximum(v, s),
               lambda v, s: v / (abs(s) + 10.0), lambda v, s: np.clip(v, -abs(s), abs(s) + 0.1),
               lambda v, s: v * (s > 1) + s // 2, lambda v, s: (v * (s * 0.5)).astype(np.float64)]
SCALARS = [1.5, 2, -3, np.float64(0.5), np.float32(-1.5), np.int64(3)]


def _views(v):
    """The view-making operations that apply to a value of v's shape."""
    ops = [lambda v: v.reshape(-1), lambda v: v[::-1], lambda v: v[1:],
           lambda v: np.broadcast_to(v, (2,) + v.shape), lambda v: np.einsum("...->...", v)]
    if v.ndim >= 1:
        ops += [lambda v: v[[0, 0]], lambda v: v[np.array([-1, 0])] * 1.0]
    if v.ndim == 2:
        ops += [lambda v: v @ v.T, lambda v: np.einsum("ij,kj->ik", v, v), lambda v: v.T, lambda v: np.einsum("ij->ji", v), lambda v: np.einsum("ij", v),
                lambda v: v[:, 0], lambda v: v[0], lambda v: v.reshape(v.shape[::-1]),
                lambda v: np.transpose(v)[::2]]
        if v.shape[0] == v.shape[1]:
            ops += [lambda v: np.einsum("ii->i", v), lambda v: np.diagonal(v)]
    return ops


def _reductions(v):
    ops = [np.sum, np.max, lambda v: np.mean(v) * 2.0]
    if v.ndim:
        ops += [lambda v: np.sum(v, axis=0), lambda v: np.max(v, axis=-1, keepdims=True),
                lambda v: np.cumsum(v, axis=0), lambda v: np.concatenate([v, v * 2.0])]
    return ops


def random_program(rng):
    """(f, x, s): a random function of an array and a scalar, and arguments for it."""
    shape = [(3, 3), (2, 4), (4,), (3, 1)][rng.integers(4)]
    x = rng.uniform(-1.0, 1.0, shape).astype([np.float64, np.float32][rng.integers(2)])
    scalar = SCALARS[rng.integers(len(SCALARS))]
    steps, pool = [], [x]
    for _ in range(rng.integers(2, 9)):
        kind = rng.choice(["unary", "binary", "scalar", "view", "view", "reduction"])
        i = int(rng.integers(len(pool)))
        v = pool[i]
        if kind == "scalar":
            step = (WITH_SCALAR[rng.integers(len(WITH_SCALAR))], (i, "s"))
        elif kind == "binary":
            partners = [j for j, w in enumerate(pool) if _broadcastable(v.shape, w.shape)]
            j = partners[rng.integers(len(partners))]
            op = BINARY[rng.integers(len(BINARY))]
            step = (op, (i, j))
        else:
            ops = {"unary": UNARY, "view": _views(v), "reduction": _reductions(v)}[kind]
            step = (ops[rng.integers(len(ops))], (i,))
        try:
            with np.errstate(all="ignore"):
                value = step[0](*(scalar if k == "s" else pool[k] for k in step[1]))
        except (ValueError, IndexError):          # e.g. v[::-1] of a 0-d value: another step
            continue
        pool.append(value)
        steps.append(step)
    outputs = [int(k) for k in rng.integers(len(pool) > 1, len(pool), size=rng.integers(1, 4))]

    def f(x, s):
        values = [x]
        for op, args in steps:
            values.append(op(*(s if k == "s" else values[k] for k in args)))
        return tuple(values[k] for k in outputs)
    return f, x, scalar


def _broadcastable(a, b):
    try:
        return np.broadcast_shapes(a, b) == a
    except ValueError:
        return False


def check_program(f, x, s):
    with np.errstate(all="ignore"):
        expected = f(x, s)
        jitted = jit(f)
        for _ in range(2):                              # staged, then from the cache
            got = jitted(x, s)
            for k, (g, e) in enumerate(zip(got, expected)):
                assert np.asarray(g).dtype == np.asarray(e).dtype, k
                np.testing.assert_allclose(g, e, rtol=1e-6 if x.dtype == np.float32 else 1e-12,
                                           atol=1e-6, equal_nan=True)
                assert not np.shares_memory(g, x), k
                assert not any(np.shares_memory(g, other) for other in got[:k]), k

        def loss(x, s):
            return sum(np.sum(np.sin(out)) for out in f(x, s))
        for transform in (grad, pullback.hessian):
            expected = transform(loss)(x, s)
            got = jit(transform(loss))(x, s)
            assert got.dtype == expected.dtype
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
        xs = np.stack([x, x[::-1] * 0.5])
        batched = pullback.vmap(f, in_axes=(0, None))(xs, s)
        for g, e in zip(pullback.vmap(jit(f), in_axes=(0, None))(xs, s), batched):
            assert g.dtype == e.dtype
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("seed", range(40))
def test_jit_agrees_with_eager_on_random_programs(seed):
    check_program(*random_program(np.random.default_rng(seed)))


if __name__ == "__main__":                  # a longer run: python tests/test_jit_fuzz.py 2000
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for seed in range(count):
        try:
            check_program(*random_program(np.random.default_rng(seed)))
        except Exception as e:              # noqa: BLE001 -- report and go on
            print(f"seed {seed}: {type(e).__name__}: {str(e)[:300]}")
    print(f"{count} programs run")
