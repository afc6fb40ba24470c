"""A differential fuzz: random NumPy programs, each computed every way pullback can.

Every program maps an array of shape (3, 4) to a few outputs built from a random
sequence of steps (elementwise math, broadcasting, reductions, views, contractions,
indexing and indexed updates). For each one the test checks that:

- `jit(f)` equals `f`, and its outputs never share memory with each other or the input;
- `jit(grad(loss))` equals `grad(loss)`, and the gradient matches central differences
  (programs with kinks -- abs, max, sort, where -- are compared at a point away from them
  by the mode checks only);
- `vmap(f)` equals a Python loop over examples;
- the pushforward and the pullback agree (`<u, J v> = <J^T u, v>`), and so do
  `jacfwd` and `jacrev`;
- the four Hessian modes agree (also under jit), and `hvp` equals `hessian @ v`;
- odd-numbered programs run in float32: every result keeps that dtype.

`PULLBACK_FUZZ_PROGRAMS` sets how many programs run (the suite runs a few dozen;
`PULLBACK_FUZZ_PROGRAMS=1000 pytest tests/test_fuzz.py` is the long run).
"""
import os

import numpy as np
import pytest

import pullback
import pullback.numpy as pnp
from pullback import grad, hessian, hvp, jacfwd, jacrev, jit, pushforward, vmap
from pullback.operators import HESSIAN_MODES

PROGRAMS = int(os.environ.get("PULLBACK_FUZZ_PROGRAMS", "40"))

# Steps: (name, smooth, function of the pool's arrays a, b (each (3, 4)) -> a (3, 4) array).
STEPS = [
    ("sin", True, lambda a, b: np.sin(a)),
    ("tanh * b", True, lambda a, b: np.tanh(a) * b),
    ("exp of tame", True, lambda a, b: np.exp(0.3 * np.tanh(a))),
    ("log1p square", True, lambda a, b: np.log1p(a ** 2)),
    ("sqrt", True, lambda a, b: np.sqrt(a ** 2 + 1.0)),
    ("power 3", True, lambda a, b: a ** 3),
    ("integer powers", True, lambda a, b: a ** np.arange(4)),
    ("quotient", True, lambda a, b: a / (b ** 2 + 1.0)),
    ("logaddexp", True, lambda a, b: np.logaddexp(a, b)),
    ("hypot", True, lambda a, b: np.hypot(a, b + 2.0)),
    ("expit", True, lambda a, b: 1.0 / (1.0 + np.exp(-a))),
    ("sum keepdims", True, lambda a, b: a * np.sum(b, axis=0, keepdims=True)),
    ("mean broadcast", True, lambda a, b: a - np.mean(a, axis=1)[:, None]),
    ("matmul round trip", True, lambda a, b: (a @ b.T) @ a / 4.0),
    ("einsum transpose", True, lambda a, b: np.einsum("ij->ji", a).T * b),
    ("einsum contraction", True, lambda a, b: np.einsum("ij,kj->ik", a, b) @ b / 4.0),
    ("einsum diagonal", True, lambda a, b: np.einsum("ii->i", a @ a.T)[:, None] * b),
    ("transpose", True, lambda a, b: (a.T * 2.0).T + b),
    ("reshape", True, lambda a, b: a.reshape(4, 3).T.reshape(3, 4)),
    ("flip", True, lambda a, b: a[::-1, ::-1] * b),
    ("roll", True, lambda a, b: np.roll(a, 1, axis=1) - b),
    ("concatenate", True, lambda a, b: np.concatenate([a[:, :2], b[:, 2:]], axis=1)),
    ("gather", True, lambda a, b: a[:, [3, 0, 2, 0]] + b[[2, 2, 0]]),
    ("tile", True, lambda a, b: np.tile(a[:, 1:3], (1, 2))),
    ("at set", True, lambda a, b: pnp.at(a)[1].set(b[0] * 2.0)),
    ("at add repeated", True, lambda a, b: pnp.at(a)[[0, 0, 2], 1:3].add(b[:3, :2])),
    ("cumsum", True, lambda a, b: np.cumsum(a, axis=0)),
    ("cumprod", True, lambda a, b: np.cumprod(np.tanh(a), axis=1)),
    ("prod", True, lambda a, b: a * np.prod(np.tanh(b), axis=1, keepdims=True)),
    ("stack", True, lambda a, b: np.stack([a[0], b[1], a[2] * b[2]])),
    ("outer", True, lambda a, b: np.outer(a[0, :3], b[1]) * 0.5),
    ("dot", True, lambda a, b: np.dot(a, b[0])[:, None] * b),
    ("solve", True, lambda a, b: np.linalg.solve(a[:, :3] + 3.0 * np.eye(3), b)),
    ("inv", True, lambda a, b: np.linalg.inv(a[:, :3] @ a[:, :3].T + np.eye(3)) @ b),
    ("det", True, lambda a, b: np.linalg.det(a[:, 1:]) * b),
    ("slogdet", True, lambda a, b: np.linalg.slogdet(a[:, :3] + 3.0 * np.eye(3))[1] * b),
    ("cholesky", True, lambda a, b: np.linalg.cholesky(a[:, :3] @ a[:, :3].T + np.eye(3)) @ b),
    # Distinct eigenvalues and a positive variance: derivatives exist at every input.
    ("eigh", True, lambda a, b: np.linalg.eigh(
        a[:, :3] + a[:, :3].T + np.diag([0.0, 5.0, 10.0]))[0][:, None] * b),
    ("norm", True, lambda a, b: a / np.linalg.norm(b)),
    ("logsumexp", True, lambda a, b: a - pnp.logsumexp(b, axis=1)[:, None]),
    ("std", True, lambda a, b: a * np.sqrt(np.var(b, axis=0) + 1.0)),
    ("triangles", True, lambda a, b: np.triu(a) + np.tril(b, -1)),
    ("pad", True, lambda a, b: np.pad(a[:, 1:3], ((0, 0), (1, 1))) + b),
    ("repeat", True, lambda a, b: np.repeat(a[:, :2], 2, axis=1)),
    ("diag", True, lambda a, b: np.diag(np.diag(a @ a.T))[:, :1] * b),
    ("swapaxes", True, lambda a, b: np.swapaxes(a.reshape(3, 2, 2), 1, 2).reshape(3, 4)),
    ("custom rule", True, lambda a, b: _softplus(a) * b),
    ("at max repeated", False, lambda a, b: pnp.at(a)[[0, 0, 1]].max(b[:3])),
    ("abs", False, lambda a, b: np.abs(a) * b),
    ("maximum", False, lambda a, b: np.maximum(a, b)),
    ("max keepdims", False, lambda a, b: a - np.max(a, axis=1, keepdims=True)),
    ("where", False, lambda a, b: np.where(a > b, a * b, a - b)),
    ("clip", False, lambda a, b: np.clip(a, -0.5, 0.5) + b),
    ("sort", False, lambda a, b: np.sort(a, axis=1) * b),
]


@pullback.custom_vjp
def _softplus(x):
    return np.logaddexp(0.0, x)


_softplus.defvjp(lambda x: (_softplus(x), x), lambda x, ct: (ct / (1.0 + np.exp(-x)),))


def random_program(seed):
    """(f, smooth, description): f maps x (3, 4) to a tuple of outputs."""
    rng = np.random.default_rng(seed)
    steps = [(rng.integers(len(STEPS)), rng.integers(0, 2 + i), rng.integers(0, 2 + i))
             for i in range(rng.integers(2, 7))]
    n_outputs = rng.integers(1, 4)
    view_output = rng.random() < 0.3

    def f(x):
        pool = [x, np.cos(x)]
        for step, i, j in steps:
            pool.append(STEPS[step][2](pool[i], pool[j]))
        outputs = [pool[-1 - k] for k in range(n_outputs)]
        if view_output:
            outputs.append(outputs[0].T)           # an output that views another one
        return tuple(outputs)

    smooth = all(STEPS[s][1] for s, _, _ in steps)
    description = " -> ".join(STEPS[s][0] for s, _, _ in steps)
    return f, smooth, description


def _loss(f, weights):
    return lambda x: sum(np.sum(w * o) for w, o in zip(weights, f(x)))


def check_program(seed):
    """Every check of the module docstring, for program `seed`; odd seeds run in float32."""
    f, smooth, description = random_program(seed)
    rng = np.random.default_rng(10_000 + seed)
    dtype = np.float32 if seed % 2 else np.float64
    tolerance = 2e-4 if dtype == np.float32 else 1e-9

    def _close(a, b, what, rtol=tolerance, atol=tolerance):
        np.testing.assert_allclose(a, b, rtol=max(rtol, tolerance), atol=max(atol, tolerance),
                                   err_msg=what)

    x = rng.uniform(-1.0, 1.0, (3, 4)).astype(dtype)
    outputs = f(x)
    weights = [rng.standard_normal(np.shape(o)).astype(o.dtype) for o in outputs]
    loss = _loss(f, weights)
    what = f"program {seed}: {description}"

    jitted = jit(f)(x)
    for k, (eager, staged) in enumerate(zip(outputs, jitted)):
        assert staged.dtype == eager.dtype, f"{what}: jit output {k} has dtype {staged.dtype}"
        _close(staged, eager, f"{what}: jit output {k}")
        for other in list(jitted[:k]) + [x]:
            assert not np.shares_memory(staged, other), f"{what}: jit output {k} shares memory"

    gradient = grad(loss)(x)
    assert gradient.dtype == dtype, f"{what}: gradient dtype {gradient.dtype}"
    _close(jit(grad(loss))(x), gradient, f"{what}: jit(grad)")
    if smooth and dtype == np.float64:
        eps, direction = 1e-6, rng.standard_normal(x.shape)
        numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
        _close(np.sum(gradient * direction), numeric, f"{what}: grad vs finite differences",
               rtol=1e-5, atol=1e-6)

    batch = rng.uniform(-1.0, 1.0, (2, 3, 4)).astype(dtype)
    looped = [np.stack(column) for column in zip(*(f(example) for example in batch))]
    for k, (batched, expected) in enumerate(zip(vmap(f)(batch), looped)):
        _close(batched, expected, f"{what}: vmap output {k}")

    v = rng.standard_normal(x.shape).astype(dtype)
    _, tangents = pushforward(f, (x,), (v,))
    _, back = pullback.pullback(f, x)
    (cotangent,) = back(tuple(weights))
    _close(sum(np.sum(w * t) for w, t in zip(weights, tangents)), np.sum(cotangent * v),
           f"{what}: <u, J v> = <J^T u, v>")
    first = lambda x: f(x)[0]          # noqa: E731
    _close(jacfwd(first)(x), jacrev(first)(x), f"{what}: jacfwd vs jacrev")

    hessians = [hessian(loss, mode=m)(x) for m in HESSIAN_MODES]
    for m, h in zip(HESSIAN_MODES[1:], hessians[1:]):
        _close(h, hessians[0], f"{what}: hessian {m}", rtol=1e-8, atol=1e-8)
    _close(hvp(loss, x, v), np.tensordot(hessians[0], v, axes=2), f"{what}: hvp",
           rtol=1e-8, atol=1e-8)
    _close(jit(hessian(loss))(x), hessians[0], f"{what}: jit(hessian)", rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("seed", range(PROGRAMS))
def test_random_program_agrees_in_every_mode(seed):
    check_program(seed)
