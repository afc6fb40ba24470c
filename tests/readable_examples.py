"""Functions whose derivative programs are kept as golden files (tests/test_readable.py):
the comments in those files quote the lines below, so edit with care."""
import numpy as np


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
