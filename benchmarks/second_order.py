"""Second-order benchmark: gradients, Hessian-vector products, Hessians and Jacobians.

pullback (all four Hessian modes, make_hvp, batched and looped Jacobians) side by side
with JAX (without jit, and with jit), PyTorch CPU torch.func and HIPS autograd, each
library in its own process.

Problems:
  - extended (chained) Rosenbrock, as in eager.py: f, grad, HVP at n = 1_000 and 100_000;
    full Hessian at n = 10, 100, 1_000;
  - a 2-layer tanh MLP mean-squared-error loss (batch 256, 32-256-1; 8,705 parameters as
    one flat vector unpacked inside the loss): f, grad, HVP;
  - L2-regularised logistic regression NLL, data 1000 x 100: f, grad, HVP, Hessian;
  - a 100 -> 100 function y = tanh(W @ x) * x: Jacobian by batched jacrev, by a loop of
    100 back(e_i) on one pullback, by batched jacfwd.

    python benchmarks/second_order.py --python /path/to/peers/venv/bin/python

Every library's f, gradient, HVP, Hessian and Jacobian are checked against pullback's
(default mode; pullback's own values are checked against hand-written derivatives) before
being timed; a value that disagrees is reported, never timed.
Writes benchmarks/results/second_order.md (medians in microseconds, best of passes).
Protocol: ../shared/BENCHMARKING.md; timing helpers come from eager.py.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eager import (_env, blas_kernel, cpu_busy_fraction, median_time,  # noqa: E402
                   rosenbrock, write_results)

LIBRARIES = ["pullback", "jax", "jax-jit", "torch", "autograd"]
IMPORT_NAME = {"pullback": "pullback", "jax": "jax", "jax-jit": "jax", "torch": "torch",
               "autograd": "autograd"}
LABEL = {"pullback": "pullback", "jax": "JAX eager", "jax-jit": "JAX jit", "torch": "torch.func",
         "autograd": "autograd"}
MODES = ("forward-over-reverse", "reverse-over-forward", "reverse-over-reverse",
         "forward-over-forward")         # == pullback.operators.HESSIAN_MODES (checked at run)
# pullback's default mode per task (pullback.operators.DEFAULT_HESSIAN_MODE / DEFAULT_HVP_MODE).
DEFAULT = {"hessian": "reverse-over-reverse", "hvp": "reverse-over-forward",
           "make_hvp": "reverse-over-forward"}


def mode_key(task, mode):
    """The result key of a pullback task in a mode: the bare task name for its default mode."""
    return task if mode in (None, DEFAULT.get(task, mode)) else f"{task} [{mode}]"
TOLERANCE = 1e-8                         # relative: max |a - b| / max |b|
CALL_LIMIT_S = 30.0                      # a first call longer than this is skipped
SAMPLES = 5                              # samples of >= 0.25 s per measurement (median)
SLOW_CALL_S = 0.5                        # calls longer than this get 3 samples
CONTENDED = 0.25                         # other processes' share of all CPUs worth a re-measure
RERUN_BEFORE_S = 600                     # contended libraries get one more process if the run
                                         # is younger than this
ROSENBROCK_HESSIAN_SIZES = [10, 100, 1_000]
ROSENBROCK_SIZES = [1_000, 100_000]
MLP = "MLP 32-256-1, batch 256"
LOGISTIC = "logistic 1000x100"
JACOBIAN = "jacobian 100->100"

# Calls not attempted: known (from one-off runs on this machine) to exceed CALL_LIMIT_S or
# the machine's memory. (problem, task, mode) -> reason.
SKIP = {
    ("rosenbrock n=100000", "hvp", "forward-over-forward"):
        "forward-over-forward HVP pushes all n basis vectors forward (O(n^2)): 145 ms at "
        "n=1e3, so ~25 min per call at n=1e5",
    (MLP, "hvp", "forward-over-forward"):
        "one call took 56 s (2 GB peak) in a one-off run: 8,705 basis vectors pushed forward",
    ("rosenbrock n=1000", "hessian", "reverse-over-forward"):
        "nested batching holds n^3 intermediates: 1.5 GB at n=400, ~23 GB (all the "
        "machine's memory) at n=1000",
    ("rosenbrock n=1000", "hessian", "forward-over-forward"):
        "nested batching holds n^3 intermediates: 2.0 GB at n=400, ~30 GB at n=1000",
}


# ------------------------------------------------------------------ data and problems

def data():
    """All problem inputs as NumPy arrays (fixed seeds)."""
    rng = np.random.default_rng(0)
    d = {f"x{n}": rng.uniform(-1.0, 1.0, n) for n in ROSENBROCK_HESSIAN_SIZES + ROSENBROCK_SIZES}
    d.update({f"v{n}": rng.standard_normal(n) for n in ROSENBROCK_SIZES})
    rng = np.random.default_rng(1)
    d["mlp_X"] = rng.standard_normal((256, 32))
    d["mlp_Y"] = np.sin(d["mlp_X"][:, :1]) + 0.1 * rng.standard_normal((256, 1))
    d["mlp_p"] = np.concatenate([rng.standard_normal(32 * 256) / np.sqrt(32), np.zeros(256),
                                 rng.standard_normal(256) / 16, np.zeros(1)])
    d["mlp_v"] = rng.standard_normal(8705)
    rng = np.random.default_rng(2)
    d["log_X"] = rng.standard_normal((1000, 100))
    w_true = rng.standard_normal(100) / 10
    d["log_y"] = (rng.uniform(size=1000) < 1 / (1 + np.exp(-d["log_X"] @ w_true))).astype(float)
    d["log_w"] = rng.standard_normal(100) / 10
    d["log_v"] = rng.standard_normal(100)
    rng = np.random.default_rng(3)
    d["jac_W"] = rng.standard_normal((100, 100)) / 10
    d["jac_x"] = rng.uniform(-1.0, 1.0, 100)
    return d


LOG_LAMBDA = 0.1


def functions(M, c):
    """The problems' functions, written once for any NumPy-like namespace M
    (numpy, autograd.numpy, jax.numpy, torch); c holds the data in that library's arrays."""
    def mlp(p):
        w1 = p[:8192].reshape(32, 256)
        b1 = p[8192:8448]
        w2 = p[8448:8704].reshape(256, 1)
        b2 = p[8704]
        return M.mean((M.tanh(c["mlp_X"] @ w1 + b1) @ w2 + b2 - c["mlp_Y"]) ** 2)

    def logistic(w):
        z = c["log_X"] @ w
        return M.sum(M.log1p(M.exp(z)) - c["log_y"] * z) + 0.5 * LOG_LAMBDA * M.sum(w * w)

    def tanh_layer(x):
        return M.tanh(c["jac_W"] @ x) * x
    return rosenbrock(M), mlp, logistic, tanh_layer


def problems(c):
    """[(problem, f, x, v, tasks)] with tasks among f, grad, hvp, hessian, make_hvp, jacobian."""
    rosenbrock, mlp, logistic, tanh_layer = functions(c["M"], c)
    out = []
    for n in ROSENBROCK_HESSIAN_SIZES:
        if n not in ROSENBROCK_SIZES:
            out.append((f"rosenbrock n={n}", rosenbrock, c[f"x{n}"], None, ["hessian"]))
    for n in ROSENBROCK_SIZES:
        tasks = ["f", "grad", "hvp", "make_hvp"]
        if n in ROSENBROCK_HESSIAN_SIZES:
            tasks.append("hessian")
        out.append((f"rosenbrock n={n}", rosenbrock, c[f"x{n}"], c[f"v{n}"], tasks))
    out.append((MLP, mlp, c["mlp_p"], c["mlp_v"], ["f", "grad", "hvp", "make_hvp"]))
    out.append((LOGISTIC, logistic, c["log_w"], c["log_v"],
                ["f", "grad", "hvp", "hessian", "make_hvp"]))
    out.append((JACOBIAN, tanh_layer, c["jac_x"], None, ["jacobian"]))
    return out


# ------------------------------------------------------------------ each library's operators

def library(lib):
    """(converted data with namespace 'M', to_numpy, ops); ops[task](f, x, v) -> list of
    (task name, mode or None, zero-argument callable). make_hvp gives a 'record' and a
    'product' entry; jax-jit callables are jitted once, so their first call compiles."""
    d = data()
    if lib == "pullback":
        import pullback
        from pullback.operators import HESSIAN_MODES
        from pullback.operators import DEFAULT_HESSIAN_MODE, DEFAULT_HVP_MODE
        assert tuple(HESSIAN_MODES) == MODES, HESSIAN_MODES
        assert (DEFAULT["hessian"], DEFAULT["hvp"]) == (DEFAULT_HESSIAN_MODE, DEFAULT_HVP_MODE)
        c, to_numpy = dict(d, M=np), np.asarray

        def loop_jacobian(f, x):
            out, back = pullback.pullback(f, x)
            return np.stack([back(e)[0] for e in np.eye(np.size(out))])

        def make_hvp(f, x, v):
            op = pullback.make_hvp(f, x)
            return [("make_hvp record", None, lambda: pullback.make_hvp(f, x)),
                    ("make_hvp product", None, lambda: op(v))]
        ops = {
            "f": lambda f, x, v: [("f", None, lambda: f(x))],
            "grad": lambda f, x, v: [("grad", None, lambda: pullback.grad(f)(x))],
            "hvp": lambda f, x, v: [("hvp", m, lambda m=m: pullback.hvp(f, x, v, mode=m))
                                    for m in MODES],
            "hessian": lambda f, x, v: [("hessian", m, lambda h=pullback.hessian(f, mode=m): h(x))
                                        for m in MODES],
            "make_hvp": make_hvp,
            "jacobian": lambda f, x, v: [
                ("jacrev (batched)", None, lambda: pullback.jacrev(f)(x)),
                ("loop of back(e_i)", None, lambda: loop_jacobian(f, x)),
                ("jacfwd (batched)", None, lambda: pullback.jacfwd(f)(x))],
        }
        return c, to_numpy, ops

    if lib == "autograd":
        import autograd
        import autograd.numpy as anp
        c, to_numpy = dict(d, M=anp), np.asarray

        def make_hvp(f, x, v):
            product = autograd.make_hvp(f)(x)[0]
            return [("make_hvp record", None, lambda: autograd.make_hvp(f)(x)),
                    ("make_hvp product", None, lambda: product(v))]
        ops = {
            "f": lambda f, x, v: [("f", None, lambda: f(x))],
            "grad": lambda f, x, v: [("grad", None, lambda g=autograd.grad(f): g(x))],
            "hvp": lambda f, x, v: [("hvp", None,
                                     lambda h=autograd.hessian_vector_product(f): h(x, v))],
            "hessian": lambda f, x, v: [("hessian", None, lambda h=autograd.hessian(f): h(x))],
            "make_hvp": make_hvp,
            "jacobian": lambda f, x, v: [("jacrev (batched)", None,
                                          lambda j=autograd.jacobian(f): j(x))],
        }
        return c, to_numpy, ops

    if lib == "torch":
        import torch
        torch.set_default_dtype(torch.float64)
        tf = torch.func
        c = {k: torch.tensor(a) for k, a in d.items()}
        c["M"] = torch

        def hvp(f, x, v):
            g = tf.grad(f)
            return [("hvp", None, lambda: tf.jvp(g, (x,), (v,))[1])]
        ops = {
            "f": lambda f, x, v: [("f", None, lambda: f(x))],
            "grad": lambda f, x, v: [("grad", None, lambda g=tf.grad(f): g(x))],
            "hvp": hvp,
            "hessian": lambda f, x, v: [("hessian", None, lambda h=tf.hessian(f): h(x))],
            "jacobian": lambda f, x, v: [("jacrev (batched)", None,
                                          lambda j=tf.jacrev(f): j(x))],
        }
        return c, lambda t: t.detach().numpy(), ops

    if lib in ("jax", "jax-jit"):
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        import jax.numpy as jnp
        c = {k: jnp.asarray(a) for k, a in d.items()}
        c["M"] = jnp
        jit = jax.jit if lib == "jax-jit" else (lambda fn: fn)

        def hvp(f, x, v):
            g = jax.grad(f)
            h = jit(lambda x, v: jax.jvp(g, (x,), (v,))[1])
            return [("hvp", None, lambda: jax.block_until_ready(h(x, v)))]

        def linearize(f, x, v):
            # jax.linearize of the gradient: JAX's recorded linear map v -> H v.
            if lib == "jax-jit":
                return []
            product = jax.linearize(jax.grad(f), x)[1]
            return [("make_hvp record", None,
                     lambda: jax.block_until_ready(jax.linearize(jax.grad(f), x)[1])),
                    ("make_hvp product", None, lambda: jax.block_until_ready(product(v)))]

        def blocking(task, transform):
            return lambda f, x, v: [(task, None, lambda h=jit(transform(f)):
                                     jax.block_until_ready(h(x)))]
        ops = {
            "f": blocking("f", lambda f: f),
            "grad": blocking("grad", jax.grad),
            "hvp": hvp,
            "hessian": blocking("hessian", jax.hessian),
            "make_hvp": linearize,
            "jacobian": blocking("jacrev (batched)", jax.jacrev),
        }
        return c, np.asarray, ops
    raise ValueError(lib)


# ------------------------------------------------------------------ reference values

KIND = {"f": "f", "grad": "grad", "hvp": "hvp", "make_hvp product": "hvp", "hessian": "hessian",
        "jacrev (batched)": "jacobian", "loop of back(e_i)": "jacobian",
        "jacfwd (batched)": "jacobian"}


def rel_err(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return np.inf
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def hand_derivatives(d):
    """Hand-written derivatives (NumPy) to check pullback's reference values against."""
    out = {}
    for n in ROSENBROCK_HESSIAN_SIZES + ROSENBROCK_SIZES:
        x = d[f"x{n}"]
        a, b = x[:-1], x[1:]
        g = np.zeros(n)
        g[:-1] = -400.0 * a * (b - a ** 2) - 2.0 * (1.0 - a)
        g[1:] += 200.0 * (b - a ** 2)
        diag = np.zeros(n)
        diag[:-1] = 1200.0 * a ** 2 - 400.0 * b + 2.0
        diag[1:] += 200.0
        off = -400.0 * a
        if n in ROSENBROCK_SIZES:
            out[f"rosenbrock n={n}|grad"] = g
            v = d[f"v{n}"]
            hv = diag * v
            hv[:-1] += off * v[1:]
            hv[1:] += off * v[:-1]
            out[f"rosenbrock n={n}|hvp"] = hv
        if n in ROSENBROCK_HESSIAN_SIZES:
            out[f"rosenbrock n={n}|hessian"] = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
    X, y, w = d["log_X"], d["log_y"], d["log_w"]
    s = 1.0 / (1.0 + np.exp(-X @ w))
    H = X.T @ (X * (s * (1 - s))[:, None]) + LOG_LAMBDA * np.eye(100)
    out[f"{LOGISTIC}|grad"] = X.T @ (s - y) + LOG_LAMBDA * w
    out[f"{LOGISTIC}|hvp"] = H @ d["log_v"]
    out[f"{LOGISTIC}|hessian"] = H
    t = np.tanh(d["jac_W"] @ d["jac_x"])
    out[f"{JACOBIAN}|jacobian"] = ((1 - t ** 2) * d["jac_x"])[:, None] * d["jac_W"] + np.diag(t)
    return out


def write_reference(path):
    """pullback's default-mode values, checked against hand-written derivatives first."""
    c, to_numpy, ops = library("pullback")
    ref = {}
    for problem, f, x, v, tasks in problems(c):
        for task in tasks:
            for name, mode, fn in ops[task](f, x, v):
                key = f"{problem}|{KIND.get(name)}"
                if name in KIND and mode_key(name, mode) == name and key not in ref:
                    ref[key] = to_numpy(fn())
    for key, expected in hand_derivatives(data()).items():
        err = rel_err(ref[key], expected)
        if err > TOLERANCE:
            sys.exit(f"pullback disagrees with the hand-written derivative: {key}: {err:.1e}")
    # MLP: the gradient against central differences, as the only derivative not written by hand.
    f, p = functions(np, data())[1], data()["mlp_p"]
    e = np.zeros_like(p)
    for i in (0, 5000, 8200, 8500, 8704):
        e[:] = 0
        e[i] = 1e-6
        fd = (f(p + e) - f(p - e)) / 2e-6
        if abs(fd - ref[f"{MLP}|grad"][i]) > 1e-6 * max(1.0, abs(fd)):
            sys.exit(f"pullback's MLP gradient disagrees with central differences at {i}")
    np.savez(path, **ref)


# ------------------------------------------------------------------ timing one library

class CallTooSlow(Exception):
    pass


def _alarm(signum, frame):
    raise CallTooSlow()


def cpu_ticks():
    """(busy ticks of the whole machine, total ticks, ticks used by this process)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    own = os.times()
    return (sum(fields) - fields[3] - fields[4], sum(fields),
            (own.user + own.system) * os.sysconf("SC_CLK_TCK"))


def others_share(before, after):
    """Share of all CPUs that other processes used between two cpu_ticks() readings."""
    busy, total, own = (b - a for a, b in zip(before, after))
    return max(0.0, busy - own) / max(total, 1)


def measure(fn):
    """Median µs per call; re-measured once when other processes used more than CONTENDED
    of the machine; the less contended measurement is kept."""
    start = time.perf_counter()
    fn()
    samples = SAMPLES if time.perf_counter() - start < SLOW_CALL_S else 3
    best = None
    for _ in range(2):
        before = cpu_ticks()
        t = median_time(lambda _: fn(), None, samples=samples)
        share = others_share(before, cpu_ticks())
        if best is None or share < best[1]:
            best = (t, share)
        if share <= CONTENDED:
            break
    return {"us": best[0] * 1e6, "others": best[1], "samples": samples}


def run_library(lib, reference):
    np.ones(2_000_000).sum()        # warm the allocator (see BENCHMARKING.md)
    ref = np.load(reference)
    c, to_numpy, ops = library(lib)
    signal.signal(signal.SIGALRM, _alarm)
    results, skipped, errors = {}, {}, {}
    for problem, f, x, v, tasks in problems(c):
        for task in tasks:
            if task not in ops:
                continue
            for name, mode, fn in ops[task](f, x, v):
                key = mode_key(name, mode) if lib == "pullback" else name
                if lib == "pullback" and (problem, name, mode) in SKIP:
                    skipped[f"{problem}|{key}"] = SKIP[(problem, name, mode)]
                    continue
                signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
                try:
                    start = time.perf_counter()
                    value = fn()
                    first = time.perf_counter() - start
                except CallTooSlow:
                    skipped[f"{problem}|{key}"] = f"first call over {CALL_LIMIT_S:.0f} s"
                    continue
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if name in KIND:
                    err = rel_err(to_numpy(value), ref[f"{problem}|{KIND[name]}"])
                    errors[f"{problem}|{key}"] = err
                    if not err <= TOLERANCE:
                        continue                      # wrong: reported, not timed
                entry = measure(fn)
                entry["first_ms"] = first * 1e3
                results.setdefault(problem, {})[key] = entry
    info = {"blas": blas_kernel(verbose=True)}
    if lib == "torch":
        import torch
        info["threads"] = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    elif lib.startswith("jax"):
        import jax
        info["threads"] = f"jax {jax.__version__}, devices {jax.devices()}"
    elif lib == "autograd":
        import autograd  # noqa: F401
        from importlib.metadata import version
        info["threads"] = f"autograd {version('autograd')}"
    return {"results": results, "skipped": skipped, "errors": errors, "info": info}


# ------------------------------------------------------------------ driver

class Run:
    """The best (fastest) measurement of every (problem, task, library) over its processes."""

    def __init__(self, python):
        self.python = python
        self.best, self.info, self.skipped, self.errors, self.busy = {}, {}, {}, {}, []
        self.reruns = []

    def library(self, lib, reference, label):
        self.busy.append(cpu_busy_fraction())
        t0 = time.perf_counter()
        out = subprocess.run([self.python, __file__, "--library", lib, "--reference", reference],
                             env=_env(), capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{lib} failed:\n{out.stderr}")
        data_ = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label}: {lib} took {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)
        if label.startswith("re-run"):
            self.reruns.append(lib)
        self.info[lib] = data_["info"]
        self.skipped.update({(*k.split("|"), lib): r for k, r in data_["skipped"].items()})
        for k, e in data_["errors"].items():
            key = (*k.split("|"), lib)
            self.errors[key] = max(self.errors.get(key, 0.0), e)
        for problem, tasks in data_["results"].items():
            for task, entry in tasks.items():
                key, prev = (problem, task, lib), self.best.get((problem, task, lib))
                if prev is None or entry["us"] < prev["us"]:
                    self.best[key] = entry
                if prev is not None:     # and the fastest first call of the processes
                    self.best[key]["first_ms"] = min(prev["first_ms"], entry["first_ms"])

    def contended(self, lib):
        return any(e["others"] > CONTENDED for k, e in self.best.items() if k[2] == lib)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with the peers installed (pullback is put on its path)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--write-reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_reference:
        write_reference(args.write_reference)
        return
    if args.library:
        print(json.dumps(run_library(args.library, args.reference)))
        return

    wall = time.perf_counter()
    available = []
    for lib in args.libraries.split(","):
        probe = subprocess.run([args.python, "-c", f"import {IMPORT_NAME[lib]}"], env=_env(),
                               capture_output=True)
        if probe.returncode == 0:
            available.append(lib)
    run = Run(args.python)
    with tempfile.TemporaryDirectory() as tmp:
        reference = os.path.join(tmp, "reference.npz")
        subprocess.run([args.python, __file__, "--write-reference", reference], env=_env(),
                       check=True)
        for n_pass in range(args.passes):
            for lib in available:
                run.library(lib, reference, f"pass {n_pass + 1}")
        # Re-measure (one more process each) the libraries with a contended kept measurement.
        for lib in available:
            if time.perf_counter() - wall < RERUN_BEFORE_S and run.contended(lib):
                run.library(lib, reference, "re-run (contended)")
    best, info, skipped, errors = run.best, run.info, run.skipped, run.errors
    busy = max(run.busy)
    report = Report(best, available, info, skipped, errors, busy,
                    time.perf_counter() - wall, args, run.reruns)
    write_results("second_order.md", report.text())


# ------------------------------------------------------------------ report

def _fmt(t):
    if t is None or not np.isfinite(t):
        return "—"
    return f"{t:.0f}" if t >= 100 else f"{t:.1f}"


def _ratio(a, b):
    if a is None or b is None:
        return "—"
    r = a / b
    return f"{r:.0f}" if r >= 100 else f"{r:.2f}" if r < 10 else f"{r:.1f}"


class Report:
    def __init__(self, best, libs, info, skipped, errors, busy, wall, args, reruns):
        self.best, self.libs, self.info, self.reruns = best, libs, info, reruns
        self.skipped, self.errors, self.busy, self.wall, self.args = \
            skipped, errors, busy, wall, args
        self.problems = list(dict.fromkeys(p for p, _, _ in best))

    def t(self, problem, task, lib):
        entry = self.best.get((problem, task, lib))
        return entry["us"] if entry else None

    def cell(self, problem, task, lib):
        t = self.t(problem, task, lib)
        if t is not None:
            return _fmt(t)
        if (problem, task, lib) in self.skipped:
            return "skipped†"
        err = self.errors.get((problem, task, lib))
        if err is not None and not err <= TOLERANCE:
            return f"WRONG ({err:.0e})"
        return "—"

    def text(self):
        lines = self.header() + self.main_table() + self.modes_table() + self.cost_ratios() \
            + self.make_hvp_table() + self.jacobian_table() + self.jit_first_calls() \
            + self.floors() + self.notes()
        return "\n".join(lines) + "\n"

    def header(self):
        blas = self.info.get("pullback", {}).get("blas", "unknown")
        peers = "; ".join(f"{LABEL[lib]}: {self.info[lib]['threads']}" for lib in self.libs
                          if "threads" in self.info.get(lib, {}))
        worst = max((e["others"] for e in self.best.values()), default=0.0)
        cpu = "unknown"
        try:
            with open("/proc/cpuinfo") as fh:
                cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
        except (OSError, StopIteration):
            pass
        return [
            "# Second-order benchmark: gradient, HVP, Hessian, Jacobian (median µs, best of "
            f"{self.args.passes} passes)",
            "",
            "Command: `python benchmarks/second_order.py --python /work/peers/bin/python` "
            f"(whole run {self.wall / 60:.1f} min).",
            "",
            f"Machine: {os.cpu_count()} cores ({cpu}); NumPy BLAS: {blas}; {peers}. "
            f"CPU use by other processes: up to {self.busy:.0%} of the machine just before a "
            f"library started; during the kept measurements up to {worst:.0%} (a measurement "
            f"is repeated once when others use more than {CONTENDED:.0%}, and a library with "
            f"such a measurement kept gets one more process: {self.rerun_text()}).",
            "",
            "Each library runs in its own process; every call is warmed up, then timed as the "
            f"median of {SAMPLES} samples of >= 0.25 s of back-to-back calls (3 samples for "
            f"calls over {SLOW_CALL_S} s); the best of the passes is kept. float64 everywhere; "
            "JAX with x64 and synchronous CPU dispatch, `block_until_ready` on every result. "
            f"pullback's default modes: Hessian {DEFAULT['hessian']}, HVP {DEFAULT['hvp']} "
            f"(the library's defaults). Peers: JAX HVP = "
            "`jvp(grad(f))`, Hessian = `jax.hessian`, make_hvp = `jax.linearize(grad(f))`; "
            "torch HVP = `torch.func.jvp(torch.func.grad(f))`, Hessian = `torch.func.hessian`, "
            "gradient = `torch.func.grad`; autograd HVP = `hessian_vector_product` "
            "(reverse-over-reverse), Hessian = `autograd.hessian`, make_hvp = "
            "`autograd.make_hvp`. Before timing, every value was checked against pullback's "
            f"default mode (max |a - b| / max |b| <= {TOLERANCE:.0e}; worst seen: "
            f"{self.worst_error()}), and pullback's against hand-written derivatives "
            "(Rosenbrock, logistic, Jacobian) and central differences (MLP gradient).",
            "",
        ]

    def rerun_text(self):
        return "re-run: " + ", ".join(LABEL[lib] for lib in self.reruns) if self.reruns \
            else "none needed"

    def worst_error(self):
        errs = [(e, k) for k, e in self.errors.items()]
        if not errs:
            return "n/a"
        e, k = max(errs)
        return f"{e:.1e} ({LABEL[k[2]]}, {k[0]}, {k[1]})"

    def main_table(self):
        peers = [lib for lib in self.libs if lib != "pullback"]
        lines = ["## All libraries (µs; ratio = library / pullback default mode)", "",
                 "| problem | task | " + " | ".join(LABEL[lib] for lib in self.libs) + " | "
                 + " | ".join(f"{LABEL[lib]} / pullback" for lib in peers) + " |",
                 "|---|---|" + "---:|" * (len(self.libs) + len(peers))]
        for problem in self.problems:
            for task in ("f", "grad", "hvp", "hessian", "jacrev (batched)"):
                if not any((problem, task, lib) in self.best for lib in self.libs):
                    continue
                ours = self.t(problem, task, "pullback")
                lines.append(f"| {problem} | {task} | "
                             + " | ".join(self.cell(problem, task, lib) for lib in self.libs)
                             + " | " + " | ".join(_ratio(self.t(problem, task, lib), ours)
                                                  for lib in peers) + " |")
        return lines + [""]

    def modes_table(self):
        lines = ["## pullback's four Hessian modes (µs; ratio to the task's default mode: "
                 f"Hessian {DEFAULT['hessian']}, HVP {DEFAULT['hvp']})", "",
                 "| problem | task | " + " | ".join(MODES) + " | "
                 + " | ".join(f"{m.split('-over-')[0][:3]}/{m.split('-over-')[1][:3]} / default"
                              for m in MODES) + " | default vs fastest |",
                 "|---|---|" + "---:|" * (2 * len(MODES) + 1) + ""]
        for problem in self.problems:
            for task in ("hvp", "hessian"):
                keys = [mode_key(task, m) for m in MODES]
                if (problem, task, "pullback") not in self.best:
                    continue
                times = [self.t(problem, k, "pullback") for k in keys]
                default = times[MODES.index(DEFAULT[task])]
                fastest = min(t for t in times if t is not None)
                lines.append(f"| {problem} | {task} | "
                             + " | ".join(self.cell(problem, k, "pullback") for k in keys) + " | "
                             + " | ".join(_ratio(t, default) for t in times)
                             + f" | {default / fastest:.2f}x |")
        return lines + ["", "† skipped: see the notes at the end.", ""]

    def cost_ratios(self):
        lines = ["## HVP cost relative to the gradient and to f (default modes)", "",
                 "| problem | " + " | ".join(f"{LABEL[lib]} HVP/grad | {LABEL[lib]} HVP/f"
                                             for lib in self.libs) + " |",
                 "|---|" + "---:|" * (2 * len(self.libs))]
        for problem in self.problems:
            if (problem, "hvp", "pullback") not in self.best:
                continue
            cells = []
            for lib in self.libs:
                hvp = self.t(problem, "hvp", lib)
                cells += [_ratio(hvp, self.t(problem, "grad", lib)),
                          _ratio(hvp, self.t(problem, "f", lib))]
            lines.append(f"| {problem} | " + " | ".join(cells) + " |")
        return lines + [""]

    def make_hvp_table(self):
        libs = [lib for lib in self.libs
                if any(k[1] == "make_hvp product" and k[2] == lib for k in self.best)]
        lines = ["## Recorded HVP operators: record once, apply to v (µs)", "",
                 "pullback: `pullback.make_hvp(f, x)` then `op(v)`; autograd: "
                 "`autograd.make_hvp(f)(x)` then `vjp(v)`; JAX eager: "
                 "`jax.linearize(jax.grad(f), x)` then `f_jvp(v)`. 'vs hvp' = product time / "
                 "the same library's one-shot HVP.", "",
                 "| problem | " + " | ".join(f"{LABEL[lib]} record | {LABEL[lib]} product | "
                                             f"{LABEL[lib]} product vs hvp" for lib in libs)
                 + " |",
                 "|---|" + "---:|" * (3 * len(libs))]
        for problem in self.problems:
            if (problem, "make_hvp product", "pullback") not in self.best:
                continue
            cells = []
            for lib in libs:
                product = self.t(problem, "make_hvp product", lib)
                cells += [self.cell(problem, "make_hvp record", lib),
                          self.cell(problem, "make_hvp product", lib),
                          _ratio(product, self.t(problem, "hvp", lib))]
            lines.append(f"| {problem} | " + " | ".join(cells) + " |")
        return lines + [""]

    def jacobian_table(self):
        p = JACOBIAN
        jacrev, loop, jacfwd = (self.t(p, k, "pullback") for k in
                                ("jacrev (batched)", "loop of back(e_i)", "jacfwd (batched)"))
        return ["## Jacobian of y = tanh(W @ x) * x, 100 -> 100 (µs)", "",
                "| pullback jacrev (batched) | loop of 100 back(e_i) on one pullback | pullback "
                "jacfwd (batched) | loop / jacrev | " + " | ".join(
                    f"{LABEL[lib]} jacrev" for lib in self.libs if lib != "pullback") + " |",
                "|" + "---:|" * (4 + len(self.libs) - 1),
                f"| {_fmt(jacrev)} | {_fmt(loop)} | {_fmt(jacfwd)} | {_ratio(loop, jacrev)} | "
                + " | ".join(self.cell(p, "jacrev (batched)", lib) for lib in self.libs
                             if lib != "pullback") + " |",
                "", "The loop's time includes its one recording `pullback.pullback(f, x)`, as "
                "jacrev's includes its own.", ""]

    def jit_first_calls(self):
        if "jax-jit" not in self.libs:
            return []
        lines = ["## JAX jit: first call (trace + compile) vs steady state", "",
                 "| problem | task | first call (ms) | steady state (µs) |",
                 "|---|---|---:|---:|"]
        for (problem, task, lib), entry in self.best.items():
            if lib == "jax-jit":
                lines.append(f"| {problem} | {task} | {entry['first_ms']:.1f} | "
                             f"{_fmt(entry['us'])} |")
        return lines + [""]

    def load(self, problem, *tasks):
        """', others' CPU use a% / b%' for pullback's kept measurements of these tasks."""
        return ", others' CPU use " + " / ".join(
            f"{self.best[(problem, t, 'pullback')]['others']:.0%}" for t in tasks)

    def floors(self):
        lines = ["## Floors", ""]
        p = "rosenbrock n=100000"
        hvp, grad = self.t(p, "hvp", "pullback"), self.t(p, "grad", "pullback")
        if hvp and grad:
            lines.append(f"- HVP <= 3x gradient at n = 100,000 (pullback, default mode): "
                         f"{hvp / grad:.2f}x ({_fmt(hvp)} / {_fmt(grad)} µs"
                         f"{self.load(p, 'hvp', 'grad')}): "
                         f"**{'met' if hvp / grad <= 3 else 'not met'}**.")
        jacrev, loop = (self.t(JACOBIAN, k, "pullback")
                        for k in ("jacrev (batched)", "loop of back(e_i)"))
        if jacrev and loop:
            lines.append(f"- batched jacrev >= 10x faster than the loop of 100 pullbacks: "
                         f"{loop / jacrev:.1f}x ({_fmt(jacrev)} vs {_fmt(loop)} µs"
                         f"{self.load(JACOBIAN, 'jacrev (batched)', 'loop of back(e_i)')}): "
                         f"**{'met' if loop / jacrev >= 10 else 'not met'}**.")
        verdicts = []
        for problem in self.problems:
            if not (problem.startswith("rosenbrock") or problem == LOGISTIC):
                continue
            for task in ("hessian", "hvp"):
                keys = [mode_key(task, m) for m in MODES]
                times = {m: self.t(problem, k, "pullback") for m, k in zip(MODES, keys)}
                if times[DEFAULT[task]] is None:
                    continue
                measured = {m: t for m, t in times.items() if t is not None}
                fastest = min(measured, key=measured.get)
                r = times[DEFAULT[task]] / measured[fastest]
                verdicts.append(r <= 1.10)
                lines.append(f"  - {problem}, {task}: default {DEFAULT[task]} "
                             f"{_fmt(times[DEFAULT[task]])} µs, "
                             f"fastest {fastest} {_fmt(measured[fastest])} µs: default is "
                             f"{r:.2f}x the fastest: {'met' if r <= 1.10 else 'NOT met'}")
        if verdicts:
            lines.insert(len(lines) - len(verdicts),
                         "- default Hessian mode fastest or within 10% of the fastest of the "
                         "four (Rosenbrock and logistic, Hessian and HVP): "
                         f"**{'met' if all(verdicts) else 'not met'}** "
                         f"({sum(verdicts)} of {len(verdicts)} cases met):")
        return lines + [""]

    def notes(self):
        lines = ["## Notes", ""]
        for (problem, task, lib), reason in sorted(self.skipped.items()):
            lines.append(f"- † {LABEL[lib]}, {problem}, {task}: skipped: {reason}.")
        wrong = [(k, e) for k, e in self.errors.items() if not e <= TOLERANCE]
        for (problem, task, lib), e in wrong:
            lines.append(f"- WRONG: {LABEL[lib]}, {problem}, {task}: relative error {e:.1e} "
                         "against pullback; not timed.")
        contended = [(k, e["others"]) for k, e in self.best.items() if e["others"] > CONTENDED]
        for (problem, task, lib), share in contended:
            lines.append(f"- contended: {LABEL[lib]}, {problem}, {task}: other processes used "
                         f"{share:.0%} of the machine during the kept (fastest) measurement; "
                         "treat with care.")
        missing = [lib for lib in LIBRARIES if lib not in self.libs]
        if missing:
            lines.append(f"- not installed for this interpreter: {', '.join(missing)}.")
        return lines


if __name__ == "__main__":
    main()
