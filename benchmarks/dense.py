"""Dense Hessians and Jacobians under jit, side by side with JAX jit (issue 12, section 2).

Tasks: the dense Hessian of extended Rosenbrock at n = 1,000 (also hand-written NumPy),
the logistic-regression Hessian (1000 x 100), the MLP HVP (8,705 parameters), the
Jacobian of tanh(W x) * x (100 -> 100, reverse and forward), and GradBench's k-means
Newton step (`J / diag(H)`, diag(H) as the jvp of the gradient along ones; k = 100
centroids, n = 10,000 points, d = 8; the cost is, as GradBench writes it, the sum over
points of the smallest squared distance to a centroid, the distances from one matrix
product). pullback's `hessian` and `hvp` run in mode "auto" (chosen per program under jit).

Each library runs in a worker process of its own; the driver asks them for one timing
sample at a time, task by task, the libraries in turn (interleaved: drifting machine load
hits all alike), and reports medians, the ratios and the load average. `--before PATH`
adds a worker running another checkout of pullback (e.g. /work/main) for before/after.
Every result is checked against this checkout's pullback first.

    python benchmarks/dense.py --python /work/peers/bin/python [--before /work/main] [--threads 1]

Writes benchmarks/results/dense.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from eager import blas_kernel, write_results  # noqa: E402
from second_order import data, functions  # noqa: E402

TASKS = ["rosenbrock n=1000 hessian", "logistic 1000x100 hessian", "MLP 8705 hvp",
         "tanh layer 100 jacrev", "tanh layer 100 jacfwd", "k-means k=100 n=10000 d=8 dir"]
ROUNDS, SECONDS = 7, 0.2


def kmeans_data():
    rng = np.random.default_rng(4)
    points = rng.random((10_000, 8))
    return points, points[-100:].copy()        # GradBench: the last k points, no empty cluster


def kmeans_cost(M):
    def cost(points, centroids):
        squared_points = M.sum(points ** 2, axis=1)[None, :]
        squared_centroids = M.sum(centroids ** 2, axis=1)[:, None]
        distances = squared_points + squared_centroids - 2.0 * (centroids @ points.T)
        return M.sum(M.min(distances, axis=0))
    return cost


def rosenbrock_hessian_by_hand(x):
    n, a, b = x.size, x[:-1], x[1:]
    i = np.arange(n - 1)
    h = np.zeros((n, n))
    h[i, i] = 1200.0 * a * a - 400.0 * b + 2.0
    h[i + 1, i + 1] += 200.0
    h[i, i + 1] = h[i + 1, i] = -400.0 * a
    return h


def cases(lib):
    """{task: (function, arguments)} for one library, every function compiled."""
    d = data()
    points, centroids = kmeans_data()
    if lib == "jax-jit":
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        c = {k: jnp.asarray(v) for k, v in d.items()}
        rosenbrock, mlp, logistic, tanh_layer = functions(jnp, c)
        cost = kmeans_cost(jnp)

        def direction(points, centroids):
            gradient = jax.grad(lambda cs: cost(points, cs))
            g, h = jax.jvp(gradient, (centroids,), (jnp.ones_like(centroids),))
            return g / h
        jit, args = jax.jit, lambda *a: tuple(jnp.asarray(v) for v in a)
        made = {
            TASKS[0]: (jit(jax.hessian(rosenbrock)), args(d["x1000"])),
            TASKS[1]: (jit(jax.hessian(logistic)), args(d["log_w"])),
            TASKS[2]: (jit(lambda p, v: jax.jvp(jax.grad(mlp), (p,), (v,))[1]),
                       args(d["mlp_p"], d["mlp_v"])),
            TASKS[3]: (jit(jax.jacrev(tanh_layer)), args(d["jac_x"])),
            TASKS[4]: (jit(jax.jacfwd(tanh_layer)), args(d["jac_x"])),
            TASKS[5]: (jit(direction), args(points, centroids))}
        return {task: ((lambda f: lambda *a: f(*a).block_until_ready())(f), a)
                for task, (f, a) in made.items()}
    if lib == "numpy":
        return {TASKS[0]: (rosenbrock_hessian_by_hand, (d["x1000"],))}
    import pullback as pb
    rosenbrock, mlp, logistic, tanh_layer = functions(np, d)
    cost = kmeans_cost(np)

    def direction(points, centroids):
        gradient = pb.grad(lambda cs: cost(points, cs))
        g, h = pb.pushforward(gradient, (centroids,), (np.ones_like(centroids),))
        return g / h
    return {TASKS[0]: (pb.jit(pb.hessian(rosenbrock)), (d["x1000"],)),
            TASKS[1]: (pb.jit(pb.hessian(logistic)), (d["log_w"],)),
            TASKS[2]: (pb.jit(lambda p, v: pb.hvp(mlp, p, v)), (d["mlp_p"], d["mlp_v"])),
            TASKS[3]: (pb.jit(pb.jacrev(tanh_layer)), (d["jac_x"],)),
            TASKS[4]: (pb.jit(pb.jacfwd(tanh_layer)), (d["jac_x"],)),
            TASKS[5]: (pb.jit(direction), (points, centroids))}


def sample(fn, args, seconds):
    """Mean time per call over >= `seconds` of back-to-back calls."""
    calls, start = 0, time.perf_counter()
    while True:
        fn(*args)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def worker(lib, results_path):
    """Serve timing requests on stdin: a task name -> one sample (seconds), as JSON lines.
    First compiles everything (first call timed), saves the results for the check."""
    np.ones(2_000_000).sum()                # warm the allocator
    made, first = cases(lib), {}
    values = {}
    for task, (fn, args) in made.items():
        start = time.perf_counter()
        values[task] = np.asarray(fn(*args))
        first[task] = time.perf_counter() - start
    np.savez(results_path, **{str(i): values[t] for i, t in enumerate(TASKS) if t in values})
    print(json.dumps({"tasks": list(made), "first": first, "blas": blas_kernel(True)}),
          flush=True)
    for line in sys.stdin:
        task = json.loads(line)
        fn, args = made[task]
        print(json.dumps(sample(fn, args, SECONDS)), flush=True)


def thread_limits(threads):
    """Environment variables holding BLAS, OpenMP and XLA's CPU backend to `threads`."""
    if threads is None:
        return {}
    limits = {k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                         "MKL_NUM_THREADS")}
    if threads == 1:
        limits["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return limits


class Worker:
    def __init__(self, name, python, lib, pythonpath, results_path, threads):
        env = dict(os.environ, PYTHONPATH=pythonpath + os.pathsep + os.environ.get(
            "PYTHONPATH", ""), **thread_limits(threads))
        self.name, self.results_path = name, results_path
        self.process = subprocess.Popen([python, __file__, "--worker", lib, results_path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.info = json.loads(self.process.stdout.readline())

    def sample(self, task):
        self.process.stdin.write(json.dumps(task) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable, help="a Python with JAX")
    parser.add_argument("--before", help="another pullback checkout, timed alongside")
    parser.add_argument("--threads", type=int, help="BLAS and XLA threads (default: theirs)")
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    tmp = tempfile.mkdtemp()
    specs = [("pullback", sys.executable, "pullback", ROOT),
             ("JAX jit", args.python, "jax-jit", ROOT), ("hand NumPy", sys.executable, "numpy", ROOT)]
    if args.before:
        specs.insert(1, ("pullback before", sys.executable, "pullback", args.before))
    started = time.time()
    workers = [Worker(name, python, lib, path, os.path.join(tmp, f"{i}.npz"), args.threads)
               for i, (name, python, lib, path) in enumerate(specs)]
    reference = np.load(workers[0].results_path)
    worst = {}
    for w in workers[1:]:
        got = np.load(w.results_path)
        for key in got.files:
            err = float(np.max(np.abs(got[key] - reference[key])) / np.max(np.abs(reference[key])))
            assert err <= 1e-8, (w.name, TASKS[int(key)], err)
            worst[w.name] = max(worst.get(w.name, 0.0), err)
    samples = {(w.name, t): [] for w in workers for t in w.info["tasks"]}
    loads = []
    for r in range(ROUNDS):
        loads.append(os.getloadavg()[0])
        for task in TASKS:
            order = workers[r % len(workers):] + workers[:r % len(workers)]
            for w in order:
                if task in w.info["tasks"]:
                    samples[w.name, task].append(w.sample(task))
    for w in workers:
        w.close()
    median = {k: float(np.median(v)) * 1e6 for k, v in samples.items()}
    report(workers, median, loads, worst, time.time() - started, args)


def report(workers, median, loads, worst, elapsed, args):
    names = [w.name for w in workers]
    ratios = [n for n in names if n != "JAX jit"]
    lines = ["# Dense Hessians and Jacobians under jit (median µs; issue 12, section 2)", "",
             "Command: `python benchmarks/dense.py --python /work/peers/bin/python"
             + (f" --before {args.before}" if args.before else "")
             + (f" --threads {args.threads}`" if args.threads else "`")
             + f" ({elapsed / 60:.1f} min).", "",
             f"Interleaved: {ROUNDS} rounds, each one sample (>= {SECONDS} s of back-to-back "
             "calls) per task and library, the libraries in rotating order; medians. Load "
             f"average (1 min) during the rounds: {min(loads):.1f} to {max(loads):.1f} "
             f"(on {os.cpu_count()} cores: other workers share the machine). "
             + (f"Every library held to {args.threads} BLAS/XLA thread(s). " if args.threads
                else "") + "Every result "
             "agrees with this checkout's pullback (worst relative difference "
             + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()) + ").", ""]
    for w in workers:
        jax = " (NumPy's, in that process; JAX's dot products run in XLA)" if w.name == "JAX jit" \
            else ""
        lines.append(f"- {w.name}: BLAS {w.info['blas'] or 'n/a'}{jax}")
    lines += ["", "| task | " + " | ".join(names) + " | "
              + " | ".join(f"{n} / JAX jit" for n in ratios) + " |",
              "|---|" + "---:|" * (len(names) + len(ratios))]
    for task in TASKS:
        cells = [f"{median[n, task]:.0f}" if (n, task) in median else "-" for n in names]
        cells += [f"{median[n, task] / median['JAX jit', task]:.2f}"
                  if (n, task) in median else "-" for n in ratios]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "First call (ms: staging, optimisation and code generation, or JAX's trace "
              "and compile; the worker's first call, not interleaved):", "",
              "| task | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for task in TASKS:
        lines.append(f"| {task} | " + " | ".join(
            f"{w.info['first'][task] * 1e3:.1f}" if task in w.info["first"] else "-"
            for w in workers) + " |")
    write_results("dense.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
