"""Fused-tier benchmark: pullback jit with and without its fused tier (Numba) against JAX jit.

Problems (second_order.py's, eager.py's chain, and GradBench's k-means Newton step):
Rosenbrock n = 100_000 gradient and HVP, the chain of 100 elementwise operations on
length-10 arrays (gradient), the MLP gradient and HVP, logistic regression gradient,
HVP and Hessian, and the k-means step `J / diag(H)` (k = 100 centroids, n = 10,000
points, d = 8; diag(H) as the jvp of the gradient along ones, exact for this cost).

Libraries, each in its own process, interleaved over passes:
- `pullback numpy`: jit's generated NumPy code (PULLBACK_FUSED=0);
- `pullback fused`: the fused tier, measured once installed; its "first call" is the
  NumPy code's (the tier compiles later), and "fused after" is the time from the first
  call until the fused code is installed (Numba compiling in the background, or loading
  its disk cache: the first pass compiles, later passes load);
- `jax jit` (x64, CPU), from the interpreter given by --python;
- `before fused` (with --before PATH): the fused tier of the pullback checkout at PATH
  (an A/B of a change in the same run).

Every value is checked against pullback's eager mode before it is timed.

    python benchmarks/fused.py --python /work/peers/bin/python [--before /tmp/main] [--threads 1]

--threads holds BLAS and XLA to that many threads (on a loaded machine, OpenBLAS threads
waiting for each other dominate the matrix-product rows).

Writes benchmarks/results/fused.md (medians in µs, best of passes, ratios to JAX).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from dense import thread_limits  # noqa: E402
from eager import _env, blas_kernel, chain, cpu_busy_fraction, write_results  # noqa: E402
from second_order import LOGISTIC, MLP, data, functions, measure, rel_err  # noqa: E402

LIBRARIES = ["pullback numpy", "pullback fused", "jax jit"]
BEFORE = "before fused"
ROSEN = "rosenbrock n=100000"
CHAIN = "chain 100 ops, n=10"
KMEANS = "k-means k=100 n=10000 d=8"
TOLERANCE = 1e-8


def kmeans_data():
    rng = np.random.default_rng(4)
    return rng.standard_normal((10_000, 8)), rng.standard_normal((100, 8))


def kmeans_cost(M, points):
    """GradBench's k-means cost: each point's squared distance to its nearest centroid."""
    def cost(centroids):
        distances = M.sum((points[:, None, :] - centroids[None, :, :]) ** 2, axis=2)
        return M.sum(M.min(distances, axis=1))
    return cost


def tasks(M, c):
    """[(problem, task, f, args)] in a namespace M with data c."""
    rosen, mlp, logistic, _ = functions(M, c)
    return [(ROSEN, "grad", rosen, (c["x100000"],)),
            (ROSEN, "hvp", rosen, (c["x100000"], c["v100000"])),
            (CHAIN, "grad", chain(M), (c["chain_x"],)),
            (MLP, "grad", mlp, (c["mlp_p"],)), (MLP, "hvp", mlp, (c["mlp_p"], c["mlp_v"])),
            (LOGISTIC, "grad", logistic, (c["log_w"],)),
            (LOGISTIC, "hvp", logistic, (c["log_w"], c["log_v"])),
            (LOGISTIC, "hessian", logistic, (c["log_w"],)),
            (KMEANS, "newton step", kmeans_cost(M, c["points"]), (c["centroids"],))]


def numpy_data():
    d = data()
    d["chain_x"] = np.linspace(0.1, 1.0, 10)
    d["points"], d["centroids"] = kmeans_data()
    return d


def pullback_builders():
    import pullback as pb

    def newton(f):
        def step(c):
            g, h = pb.pushforward(pb.grad(f), (c,), (np.ones_like(c),))
            return g / h
        return step
    return {"grad": lambda f: pb.jit(pb.grad(f)),
            "hvp": lambda f: pb.jit(lambda x, v: pb.hvp(f, x, v)),
            "hessian": lambda f: pb.jit(pb.hessian(f)),
            "newton step": lambda f: pb.jit(newton(f))}


def jax_builders():
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_enable_async_dispatch", False)      # the stable figure

    def ready(fn):
        return lambda *a: jax.block_until_ready(fn(*a))

    def newton(f):
        def step(c):
            g, h = jax.jvp(jax.grad(f), (c,), (jax.numpy.ones_like(c),))
            return g / h
        return step
    return {"grad": lambda f: ready(jax.jit(jax.grad(f))),
            "hvp": lambda f: ready(jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])),
            "hessian": lambda f: ready(jax.jit(jax.hessian(f))),
            "newton step": lambda f: ready(jax.jit(newton(f)))}


def references():
    """pullback eager's values of every task."""
    builders = pullback_builders()
    import pullback as pb
    out = {}
    for problem, task, f, args in tasks(np, numpy_data()):
        fn = {"grad": pb.grad(f), "hvp": lambda x, v, f=f: pb.hvp(f, x, v),
              "hessian": pb.hessian(f)}.get(task) or builders[task](f).__wrapped__
        out[f"{problem}|{task}"] = np.asarray(fn(*args))
    return out


def wait_for_fusing():
    for thread in threading.enumerate():
        if thread.name.startswith("pullback fuse"):
            thread.join()


def run_library(lib):
    np.ones(2_000_000).sum()
    reference = references()
    if lib == "jax jit":
        import jax.numpy as jnp
        M, builders = jnp, jax_builders()
        c = {k: jnp.asarray(v) for k, v in numpy_data().items()}
    else:
        M, builders, c = np, pullback_builders(), numpy_data()
    results = {}
    for problem, task, f, args in tasks(M, c):
        start = time.perf_counter()
        fn = builders[task](f)
        value = fn(*args)
        entry = {"first_ms": (time.perf_counter() - start) * 1e3}
        error = rel_err(np.asarray(value), reference[f"{problem}|{task}"])
        if error > TOLERANCE:
            results[f"{problem}|{task}"] = {"wrong": error}
            continue
        if lib in ("pullback fused", BEFORE):
            for _ in range(5):
                fn(*args)
            wait_for_fusing()
            entry["fused_after_ms"] = (time.perf_counter() - start) * 1e3
            fast = next(iter(fn.cache.values())).fast
            entry["kernels"] = len(getattr(fast, "kernels", ()))
            error = rel_err(np.asarray(fn(*args)), reference[f"{problem}|{task}"])
            if error > TOLERANCE:
                results[f"{problem}|{task}"] = {"wrong": error}
                continue
        entry.update(measure(lambda: fn(*args)))
        results[f"{problem}|{task}"] = entry
    return {"results": results, "blas": blas_kernel()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with JAX")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--before", help="another pullback checkout, timed as 'before fused'")
    parser.add_argument("--threads", type=int, help="BLAS and XLA threads (default: theirs)")
    parser.add_argument("--library", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library:
        print(json.dumps(run_library(args.library)))
        return
    best, busy, loads, blas = {}, [], [], ""
    libraries = LIBRARIES + ([BEFORE] if args.before else [])
    for _ in range(args.passes):
        for lib in libraries:
            env = dict(_env(), PULLBACK_FUSED="0" if lib == "pullback numpy" else "1",
                       **thread_limits(args.threads))
            if lib == BEFORE:
                env["PYTHONPATH"] = os.path.abspath(args.before)
            python = args.python if lib == "jax jit" else sys.executable
            busy.append(cpu_busy_fraction())
            loads.append(os.getloadavg()[0])
            out = subprocess.run([python, __file__, "--library", lib], env=env,
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{lib} failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            blas = blas or result["blas"]
            for key, entry in result["results"].items():
                old = best.get((key, lib))
                if old is None or entry.get("us", np.inf) < old.get("us", np.inf):
                    for name in ("first_ms", "fused_after_ms"):
                        if old and name in old and name in entry:
                            entry[name] = min(entry[name], old[name])
                    best[(key, lib)] = entry
    write_report(best, blas, busy, loads, args)


def write_report(best, blas, busy, loads, args):
    keys = list(dict.fromkeys(key for key, _ in best))
    before = [BEFORE] if args.before else []

    def cell(key, lib, name, digits=1):
        value = best.get((key, lib), {}).get(name)
        return "-" if value is None else f"{value:.{digits}f}"

    options = (f" --before {args.before}" if args.before else "") + (
        f" --threads {args.threads}" if args.threads else "")
    lines = ["# Fused tier: pullback jit (NumPy code, fused Numba tier) and JAX jit", "",
             f"Command: `python benchmarks/fused.py --python /work/peers/bin/python{options}` "
             "(pullback runs in the calling interpreter, which has Numba). Machine: "
             f"{os.cpu_count()} cores, BLAS {blas}; load average before each library's "
             f"process: {min(loads):.1f} to {max(loads):.1f}; CPU use by others "
             f"{min(busy):.0%} to {max(busy):.0%}. Medians in µs, best of passes; JAX x64 "
             "on CPU, synchronous dispatch"
             + (f"; BLAS and XLA held to {args.threads} thread(s)" if args.threads else "")
             + (f"; `before`: the checkout at {args.before}" if args.before else "") + ".", "",
             "| problem | task | pullback numpy | pullback fused | JAX jit | numpy / JAX | "
             "fused / JAX | fused / numpy | kernels |"
             + (" before fused | before / JAX |" if before else ""),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if before else "")]
    for key in keys:
        problem, task = key.split("|")
        us = {lib: best.get((key, lib), {}).get("us") for lib in LIBRARIES + before}
        wrong = [lib for lib in LIBRARIES + before if "wrong" in best.get((key, lib), {})]

        def ratio(a, b):
            return f"{us[a] / us[b]:.2f}" if us[a] and us[b] else "-"
        lines.append(f"| {problem} | {task} | {cell(key, 'pullback numpy', 'us')} | "
                     f"{cell(key, 'pullback fused', 'us')} | {cell(key, 'jax jit', 'us')} | "
                     f"{ratio('pullback numpy', 'jax jit')} | "
                     f"{ratio('pullback fused', 'jax jit')} | "
                     f"{ratio('pullback fused', 'pullback numpy')} | "
                     f"{cell(key, 'pullback fused', 'kernels', 0)} |"
                     + (f" {cell(key, BEFORE, 'us')} | {ratio(BEFORE, 'jax jit')} |"
                        if before else "")
                     + (f" wrong: {', '.join(wrong)}" if wrong else ""))
    lines += ["", "First calls (ms; pullback: staging, passes, NumPy code; JAX: trace and "
              "compile) and when the fused tier took over (ms after the first call began; "
              "best of passes, so Numba's disk cache usually served it):", "",
              "| problem | task | pullback first call (tier off) | pullback first call (tier on) "
              "| JAX first call | fused installed after |",
              "|---|---|---:|---:|---:|---:|"]
    for key in keys:
        problem, task = key.split("|")
        lines.append(f"| {problem} | {task} | {cell(key, 'pullback numpy', 'first_ms')} | "
                     f"{cell(key, 'pullback fused', 'first_ms')} | "
                     f"{cell(key, 'jax jit', 'first_ms')} | "
                     f"{cell(key, 'pullback fused', 'fused_after_ms', 0)} |")
    write_results("fused.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
