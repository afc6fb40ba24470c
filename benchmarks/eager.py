"""Eager-mode benchmark: f and its gradient, pullback side by side with its peers.

Problems: extended Rosenbrock at n = 10, 1_000, 100_000, and a chain of 100 cheap
elementwise operations on a length-10 vector. Peers (HIPS autograd, PyTorch CPU,
JAX without jit) run when installed; each library runs in its own process.

    python benchmarks/eager.py                      # this interpreter for every library
    python benchmarks/eager.py --python /path/to/peers/venv/bin/python

Writes benchmarks/results/eager.md (medians in microseconds, ratios to pullback).
Protocol: ../shared/BENCHMARKING.md (warm-up, >= 0.25 s per sample, median of 7
samples, best of 2 whole passes, CPU contention noted).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIBRARIES = ["pullback", "autograd", "torch", "jax"]
SIZES = [10, 1_000, 100_000]


# ------------------------------------------------------------------ problems

def rosenbrock(M):
    """The extended (chained) Rosenbrock function for a NumPy-like namespace M."""
    def f(x):
        return M.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return f


def chain(M):
    """A chain of 100 cheap elementwise operations, summed, for a namespace M."""
    def f(x):
        for _ in range(25):
            x = M.sin(x)
            x = x * 1.01
            x = M.tanh(x)
            x = x + 0.5
        return M.sum(x)
    return f


def problems(lib):
    """{name: (f, grad_f, x)} for one library; f and grad_f take that library's arrays."""
    rng = np.random.default_rng(0)
    xs = {n: rng.uniform(-1.0, 1.0, n) for n in SIZES}
    chain_x = np.linspace(0.1, 1.0, 10)

    # Per library: its namespace, grad_of(f, x), how to make its arrays, and a wrapper
    # that waits for the result.
    if lib == "pullback":
        import pullback
        M, asarray, wrap = np, np.asarray, lambda f: f

        def grad_of(f, x):
            return pullback.grad(f)
    elif lib == "autograd":
        import autograd
        import autograd.numpy as M
        asarray, wrap = np.asarray, lambda f: f

        def grad_of(f, x):
            return autograd.grad(f)
    elif lib == "torch":
        import torch
        torch.set_default_dtype(torch.float64)
        M, asarray, wrap = torch, torch.tensor, lambda f: f

        def autograd_grad(f):
            def g(x):
                x = x.detach().requires_grad_(True)
                return torch.autograd.grad(f(x), x)[0]
            return g

        def grad_of(f, x):
            # torch.func.grad and torch.autograd.grad: keep the faster (protocol).
            return min([torch.func.grad(f), autograd_grad(f)], key=lambda g: sample(g, x, 0.05))
    elif lib == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        import jax.numpy as M
        asarray = M.asarray

        def grad_of(f, x):
            return jax.grad(f)

        def wrap(f):
            return lambda x: jax.block_until_ready(f(x))
    else:
        raise ValueError(lib)
    cases = {f"rosenbrock n={n}": (rosenbrock(M), xs[n]) for n in SIZES}
    cases["chain 100 ops"] = (chain(M), chain_x)
    out = {}
    for name, (f, x) in cases.items():
        x = asarray(x)
        out[name] = (wrap(f), wrap(grad_of(f, x)), x)
    return out


# ------------------------------------------------------------------- timing

def sample(fn, x, seconds):
    """Median-free single measurement: mean time per call over >= `seconds`."""
    fn(x)
    calls, start = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def median_time(fn, x, samples=7, seconds=0.25):
    return float(np.median([sample(fn, x, seconds) for _ in range(samples)]))


def cpu_busy_fraction(interval=0.2):
    """Share of CPU time used by everything on the machine over `interval` (from /proc/stat)."""
    def read():
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)
    idle0, total0 = read()
    time.sleep(interval)
    idle1, total1 = read()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def run_library(lib):
    np.ones(2_000_000).sum()        # warm the allocator (see BENCHMARKING.md)
    results = {}
    for name, (f, g, x) in problems(lib).items():
        results[name] = {"f": median_time(f, x) * 1e6, "grad": median_time(g, x) * 1e6}
    return {"results": results, "blas": blas_kernel()}


def blas_kernel(verbose=False):
    """The BLAS loaded, as threadpoolctl names it ('openblas SkylakeX'); '' without threadpoolctl.
    verbose: with version, threads and the package that ships each library."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    return ", ".join(
        f"{i.get('internal_api')} {i.get('architecture', '')}".strip() if not verbose else
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}, "
        f"{i.get('num_threads')} threads "
        f"({os.path.basename(os.path.dirname(i.get('filepath', '')))})"
        for i in threadpool_info() if i.get("user_api") == "blas")


def check_agreement(python):
    """Every peer's gradient agrees with pullback's before anything is timed."""
    code = ("import numpy as np, pullback, autograd, autograd.numpy as anp;"
            "x=np.random.default_rng(1).uniform(-1,1,50);"
            "f=lambda np_: (lambda x: np_.sum(100.0*(x[1:]-x[:-1]**2)**2+(1.0-x[:-1])**2));"
            "assert np.allclose(pullback.grad(f(np))(x), autograd.grad(f(anp))(x))")
    subprocess.run([python, "-c", code], check=True, env=_env())


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with the peers installed (pullback is put on its path)")
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    if args.library:
        print(json.dumps(run_library(args.library)))
        return

    available = []
    for lib in LIBRARIES:
        probe = subprocess.run([args.python, "-c", f"import {lib}"], env=_env(),
                               capture_output=True)
        if probe.returncode == 0:
            available.append(lib)
    if "autograd" in available:
        check_agreement(args.python)
    best, busy, blas = {}, [], ""
    for _ in range(args.passes):
        for lib in available:
            busy.append(cpu_busy_fraction())
            out = subprocess.run([args.python, __file__, "--library", lib], env=_env(),
                                 capture_output=True, text=True, check=True)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            blas = blas or data["blas"]
            for problem, times in data["results"].items():
                for task, t in times.items():
                    key = (problem, task, lib)
                    best[key] = min(best.get(key, np.inf), t)
    write_report(best, available, blas, max(busy))


def write_report(best, libs, blas, busy):
    problems_ = list(dict.fromkeys(p for p, _, _ in best))
    lines = [
        "# Eager benchmark: f and gradient (median µs, best of passes)",
        "",
        f"Command: `python benchmarks/eager.py --python <venv with peers>`; "
        f"machine: {os.cpu_count()} cores, BLAS: {blas or 'unknown'}; highest CPU use by "
        f"other processes seen before a library ran: {busy:.0%}.",
        "JAX runs without jit, x64, synchronous CPU dispatch. torch: the faster of "
        "torch.func.grad and torch.autograd.grad.",
        "",
        "| problem | task | " + " | ".join(libs) + " | " +
        " | ".join(f"{lib} / pullback" for lib in libs if lib != "pullback") + " |",
        "|---|---|" + "---:|" * (2 * len(libs) - 1),
    ]
    for problem in problems_:
        for task in ("f", "grad"):
            times = [best.get((problem, task, lib), np.nan) for lib in libs]
            ours = best.get((problem, task, "pullback"), np.nan)
            ratios = [f"{best.get((problem, task, lib), np.nan) / ours:.2f}"
                      for lib in libs if lib != "pullback"]
            lines.append(f"| {problem} | {task} | " + " | ".join(f"{t:.1f}" for t in times)
                         + " | " + " | ".join(ratios) + " |")
    lines += ["", "grad / f per library:", ""]
    for problem in problems_:
        parts = [f"{lib} {best[(problem, 'grad', lib)] / best[(problem, 'f', lib)]:.2f}"
                 for lib in libs]
        lines.append(f"- {problem}: " + ", ".join(parts))
    write_results("eager.md", "\n".join(lines) + "\n")


def write_results(name, text):
    """Write a report to benchmarks/results/<name> and show it."""
    with open(os.path.join(HERE, "results", name), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
