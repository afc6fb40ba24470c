"""Functions whose derivative programs are kept as golden files (tests/test_readable.py):
the comments in those files quote the lines below, so edit with care."""
import numpy as np

import pullback


def energy(x):
    d = x[1:] - x[:-1]
    return 0.5 * np.sum(d * d) + np.sum(np.cos(x))


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def softplus_loss(w, x):
    return np.sum(np.logaddexp(0.0, x @ w)) + 0.5 * np.sum(w * w)


DATA = np.random.default_rng(0).standard_normal((64, 4))


def mlp_loss(w):
    hidden = np.tanh(DATA @ w[:12].reshape(4, 3))
    return np.mean((hidden @ w[12:15] - np.sin(DATA[:, 0])) ** 2) + 1e-3 * np.sum(w ** 2)


def cubes(x):
    d = np.sin(x)
    s = d * d * d
    return np.sum(s * x)


W = np.random.default_rng(1).standard_normal((3, 3)) / 3.0
DT = 0.01


def rk4_step(i, y):
    k1 = np.tanh(W @ y)
    k2 = np.tanh(W @ (y + DT / 2 * k1))
    k3 = np.tanh(W @ (y + DT / 2 * k2))
    k4 = np.tanh(W @ (y + DT * k3))
    return y + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def rk4_end(y):
    return np.sum(pullback.fori_loop(0, 10, rk4_step, y))


def clipped_energy(x):
    return pullback.cond(np.sum(x) > 0, lambda x: np.sum(x * x), lambda x: np.sum(np.sin(x)), x)
