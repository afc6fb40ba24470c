"""Sparse benchmark: dense Jacobians and Hessians against pullback.sparse's compressed ones.

pullback: the dense `jacobian` / `hessian`, and `pullback.sparse` split into its parts: the
colouring alone, `prepare_*` (colouring + one evaluation checked against a random
product), the prepared plan's value time `plan(x)`, and `sparse_*` in one call. Peer: JAX's
dense `jacfwd` / `jacrev` (the faster) and `hessian`, under jit, in its own process (its
values checked against pullback.sparse's before timing).

Problems (benchmarks/sparse_problems.py, patterns passed explicitly): the 2-D Brusselator
Jacobian at N = 32 and 64 (2,048 and 8,192 unknowns), chained Rosenbrock and ARWHEAD
Hessians at n = 1,000 and 10,000, BROYDN7D at n = 1,000.

    python benchmarks/sparse.py --python /path/to/peers/venv/bin/python

Writes benchmarks/results/sparse.md (medians, best of passes). Protocol:
../shared/BENCHMARKING.md; timing helpers come from eager.py and second_order.py.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sparse_problems as problems  # noqa: E402
from eager import _env, blas_kernel, cpu_busy_fraction, write_results  # noqa: E402
from second_order import measure  # noqa: E402

LIBRARIES = ["pullback", "jax"]
SLOW_CALL_S = 1.0          # calls longer than this: the best of two more calls, not samples
TOLERANCE = 1e-10          # relative: max |sparse - dense| / max |dense|
CASES = [("brusselator", "jacobian", 32), ("brusselator", "jacobian", 64),
         ("rosenbrock", "hessian", 1_000), ("rosenbrock", "hessian", 10_000),
         ("arwhead", "hessian", 1_000), ("arwhead", "hessian", 10_000),
         ("broydn7d", "hessian", 1_000)]


def case_name(name, size):
    return f"{name} N={size}" if name == "brusselator" else f"{name} n={size:,}"


def case(M, name, kind, size):
    """(f for namespace M, x as NumPy, pattern, rows of the matrix)."""
    f = problems.brusselator(M, size) if name == "brusselator" else getattr(problems, name)(M)
    pattern = getattr(problems, f"{name}_pattern")(size)
    return f, problems.start(name, size), pattern


def timed(fn):
    """µs per call: `measure` (median of samples, re-measured when contended) for fast calls;
    for calls over SLOW_CALL_S, the best of two more calls after the first."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first < SLOW_CALL_S:
        return measure(fn)
    best = min(_once(fn) for _ in range(2))
    return {"us": best * 1e6, "others": 0.0, "samples": 2}


def _once(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ one library per process

def run_pullback():
    import pullback
    from pullback.sparse import (column_colouring, hessian_sparsity, jacobian_sparsity,
                                 prepare_hessian, prepare_jacobian, row_colouring,
                                 sparse_hessian, sparse_jacobian, star_colouring)
    results = {}
    for name, kind, size in CASES:
        f, x, pattern = case(np, name, kind, size)
        if kind == "jacobian":
            dense = lambda: pullback.jacobian(f)(x)                 # noqa: E731
            colour = lambda: (column_colouring(pattern), row_colouring(pattern))  # noqa: E731
            prepare = lambda: prepare_jacobian(f, x, pattern=pattern)  # noqa: E731
            one_call = lambda: sparse_jacobian(f, x, pattern=pattern)  # noqa: E731
            detect = lambda: jacobian_sparsity(f, x)                # noqa: E731
        else:
            dense = lambda: pullback.hessian(f)(x)                  # noqa: E731
            colour = lambda: star_colouring(pattern)               # noqa: E731
            prepare = lambda: prepare_hessian(f, x, pattern=pattern)  # noqa: E731
            one_call = lambda: sparse_hessian(f, x, pattern=pattern)  # noqa: E731
            detect = lambda: hessian_sparsity(f, x)                 # noqa: E731
        plan = prepare()
        reference = np.asarray(dense()).reshape(plan.shape)
        error = np.abs(plan(x).toarray() - reference).max() / max(np.abs(reference).max(), 1e-300)
        detected = detect()
        entry = {"colours": plan.colours, "mode": plan.mode, "order": plan.order,
                 "nnz": plan.nnz, "error": float(error),
                 "detected exact": bool((detected != plan.pattern).nnz == 0)}
        del reference
        if not error <= TOLERANCE:
            results[case_name(name, size)] = entry    # wrong: reported, not timed
            continue
        for task, fn in (("dense", dense), ("detection", detect), ("colouring", colour),
                         ("prepare", prepare),
                         ("plan", lambda: plan(x)), ("one call", one_call)):
            entry[task] = timed(fn)
        results[case_name(name, size)] = entry
    return results


def run_jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp
    from pullback.sparse import sparse_hessian, sparse_jacobian
    results = {}
    for name, kind, size in CASES:
        f_np, x, pattern = case(np, name, kind, size)
        f = case(jnp, name, kind, size)[0]
        candidates = ({"jacfwd": jax.jit(jax.jacfwd(f)), "jacrev": jax.jit(jax.jacrev(f))}
                      if kind == "jacobian" else {"hessian": jax.jit(jax.hessian(f))})
        sparse = (sparse_jacobian if kind == "jacobian" else sparse_hessian)(f_np, x,
                                                                            pattern=pattern)
        rows, cols = sparse.nonzero()
        entry = {}
        for label, fn in candidates.items():
            xj = jnp.asarray(x)
            start = time.perf_counter()
            value = np.asarray(jax.block_until_ready(fn(xj))).reshape(sparse.shape)
            first = time.perf_counter() - start
            # every nonzero of JAX's matrix lies in the pattern and equals pullback.sparse's
            inside = np.zeros(sparse.shape, bool)
            inside[rows, cols] = True
            error = max(np.abs(value[rows, cols] - np.asarray(sparse[rows, cols]).ravel()).max(),
                        np.abs(value[~inside]).max(initial=0.0)) / np.abs(value).max()
            del value, inside
            if not error <= TOLERANCE:
                entry[label] = {"error": float(error)}
                continue
            timing = timed(lambda: jax.block_until_ready(fn(xj)))
            timing.update(first_ms=first * 1e3, error=float(error))
            entry[label] = timing
        results[case_name(name, size)] = entry
    return results


def run_library(lib):
    np.ones(2_000_000).sum()        # warm the allocator (see BENCHMARKING.md)
    results = run_pullback() if lib == "pullback" else run_jax()
    info = blas_kernel(verbose=True)
    if lib == "jax":
        import jax
        info += f"; jax {jax.__version__}, devices {jax.devices()}"
    return {"results": results, "info": info}


# ------------------------------------------------------------------ driver and report

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with JAX installed (pullback is put on its path)")
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    if args.library:
        print(json.dumps(run_library(args.library)))
        return
    available = ["pullback"] + [
        lib for lib in LIBRARIES[1:]
        if subprocess.run([args.python, "-c", f"import {lib}"], env=_env(),
                          capture_output=True).returncode == 0]
    wall = time.perf_counter()
    best, info, busy = {}, {}, []
    for _ in range(args.passes):
        for lib in available:
            busy.append(cpu_busy_fraction())
            python = sys.executable if lib == "pullback" else args.python
            out = subprocess.run([python, __file__, "--library", lib], env=_env(),
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{lib} failed:\n{out.stderr}")
            data = json.loads(out.stdout.strip().splitlines()[-1])
            info[lib] = data["info"]
            for problem, entry in data["results"].items():
                kept = best.setdefault((problem, lib), entry)
                for task, value in entry.items():
                    if isinstance(value, dict) and "us" in value and (
                            "us" not in kept.get(task, {}) or value["us"] < kept[task]["us"]):
                        kept[task] = value
    write_results("sparse.md", report(best, available, info, max(busy),
                                      time.perf_counter() - wall, args))


def _ms(entry):
    return entry["us"] / 1e3 if entry and "us" in entry else float("nan")


def _fmt(ms):
    if ms != ms:
        return "—"
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def report(best, libs, info, busy, wall, args):
    lines = [
        "# Sparse Jacobians and Hessians: dense against compressed (milliseconds, best of "
        f"{args.passes} passes)",
        "",
        f"Command: `python benchmarks/sparse.py --python {args.python}` (whole run "
        f"{wall / 60:.1f} min). Machine: {os.cpu_count()} cores; "
        + "; ".join(f"{lib}: {text or 'BLAS unknown (no threadpoolctl)'}"
                    for lib, text in info.items())
        + f". CPU use by other processes just before a library started: up to {busy:.0%}.",
        "",
        "The known patterns (`benchmarks/sparse_problems.py`) are passed explicitly to time "
        "the rest; *detection*: `jacobian_sparsity` / `hessian_sparsity` from the program "
        "(*exact*: it equals the known pattern). Each library runs in its own process; calls "
        "are warmed up, then timed as the "
        "median of samples of >= 0.25 s (calls over 1 s: the best of two more calls). "
        "*colouring*: the colouring functions alone (Jacobians: columns and rows both, as "
        "`mode=\"auto\"` may need; Hessians: star, `order=\"best\"`). *prepare*: "
        "`prepare_*` (colouring + one evaluation checked against a random product). *plan*: "
        "`plan(x)`, values only. *one call*: `sparse_*`. Dense: `pullback.jacobian` (auto "
        "mode) / `pullback.hessian` (default mode); JAX: `jit(jacfwd)` or `jit(jacrev)`, the "
        "faster, and `jit(hessian)`, x64, synchronous dispatch, first call (trace + compile) "
        "separately. Before timing, pullback.sparse was checked against pullback's dense "
        f"matrix and JAX's against pullback.sparse (max relative difference <= {TOLERANCE:g}).",
        "",
        "| problem | matrix | nnz | colours (mode) | pullback dense | JAX jit dense | "
        "detection (exact?) | colouring | prepare | plan | one call | pullback dense / plan | "
        "JAX dense / plan |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floors = {}
    for name, kind, size in CASES:
        problem = case_name(name, size)
        ours = best.get((problem, "pullback"), {})
        jax_entry = best.get((problem, "jax"), {})
        jax_ms = min((_ms(v) for v in jax_entry.values() if "us" in v), default=float("nan"))
        dense, plan = _ms(ours.get("dense")), _ms(ours.get("plan"))
        mode = ours.get("mode", "?")
        lines.append(
            f"| {problem} | {kind} | {ours.get('nnz', 0):,} | {ours.get('colours', '?')} "
            f"({mode}) | {_fmt(dense)} | {_fmt(jax_ms)} | {_fmt(_ms(ours.get('detection')))} "
            f"({'exact' if ours.get('detected exact') else 'NOT exact'}) | "
            f"{_fmt(_ms(ours.get('colouring')))} | "
            f"{_fmt(_ms(ours.get('prepare')))} | {_fmt(plan)} | {_fmt(_ms(ours.get('one call')))} "
            f"| {dense / plan:,.0f} | {jax_ms / plan:,.1f} |")
        floors[(name, size)] = ours
    lines += ["", "JAX first calls (trace + compile), ms: " + ", ".join(
        f"{problem} {label} {entry['first_ms']:,.0f}"
        for (problem, lib), value in best.items() if lib == "jax"
        for label, entry in value.items() if "first_ms" in entry), ""]
    rosen = floors.get(("rosenbrock", 10_000), {})
    speedup = _ms(rosen.get("dense")) / _ms(rosen.get("plan"))
    colouring_s = (_ms(rosen.get("detection")) + _ms(rosen.get("colouring"))) / 1e3
    counts = {(n, s): floors.get((n, s), {}).get("colours") for n, s in
              (("arwhead", 1_000), ("arwhead", 10_000), ("rosenbrock", 1_000),
               ("rosenbrock", 10_000))}
    lines += [
        "## Floors",
        "",
        f"- chained Rosenbrock n = 10,000, sparse Hessian values (plan) against the dense "
        f"Hessian: {speedup:,.0f}x faster (floor 100x): {'met' if speedup >= 100 else 'NOT met'}.",
        f"- detection + colouring of that problem: {colouring_s:.3f} s (floor 1 s): "
        f"{'met' if colouring_s < 1 else 'NOT met'}.",
        "- star colours: " + ", ".join(f"{n} n={s:,}: {c}" for (n, s), c in counts.items())
        + " (bounds: ARWHEAD 2, Rosenbrock 3): "
        + ("met" if all(c == (2 if n == "arwhead" else 3) for (n, _), c in counts.items())
           else "NOT met") + ".",
        "",
        "Checks: " + ", ".join(f"{p} {e['error']:.1e}" for (p, lib), e in best.items()
                               if lib == "pullback" and "error" in e) + " (pullback.sparse "
        "against pullback dense, max relative difference).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
