"""jit benchmark: generated NumPy code against JAX jit, the peers and hand-written NumPy.

Problems (from second_order.py, plus eager.py's chain of 100 elementwise operations):
Rosenbrock n = 100_000 (f, gradient, HVP), Rosenbrock n = 10 and 100 (Hessian), the
2-layer tanh MLP loss (f, gradient, HVP), L2 logistic regression (f, gradient, HVP,
Hessian), the chain (f, gradient). Reported per library: steady-state medians (µs);
first-call times (staging + optimisation + code generation, or JAX's trace + compile);
for pullback the number of IR equations of each program before and after the passes;
hand-written NumPy gradients and HVPs (checked against pullback's) as the yardstick.

    python benchmarks/jit.py --python /path/to/peers/venv/bin/python

Writes benchmarks/results/jit.md. Protocol: ../shared/BENCHMARKING.md.
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
from eager import _env, blas_kernel, chain, cpu_busy_fraction, write_results  # noqa: E402
from second_order import (LOGISTIC, MLP, data, functions, hand_derivatives,  # noqa: E402
                          measure, rel_err)

LIBRARIES = ["pullback", "jax-jit", "jax", "torch", "autograd"]
PEER_MODULE = {"pullback": "pullback", "jax-jit": "jax", "jax": "jax", "torch": "torch",
               "autograd": "autograd"}
ROSEN = "rosenbrock n=100000"
CHAIN = "chain 100 ops"
TOLERANCE = 1e-8


def mlp_hand(d):
    """Hand-written gradient and HVP of the MLP loss (forward-over-reverse by hand)."""
    X, Y, n = d["mlp_X"], d["mlp_Y"], d["mlp_X"].shape[0]

    def unpack(p):
        return p[:8192].reshape(32, 256), p[8192:8448], p[8448:8704].reshape(256, 1), p[8704]

    def grad(p):
        w1, b1, w2, b2 = unpack(p)
        h = np.tanh(X @ w1 + b1)
        dr = (2.0 / n) * (h @ w2 + b2 - Y)
        dz = (dr @ w2.T) * (1.0 - h * h)
        return np.concatenate([(X.T @ dz).ravel(), dz.sum(0), (h.T @ dr).ravel(), [dr.sum()]])

    def hvp(p, v):
        w1, b1, w2, b2 = unpack(p)
        v1, vb1, v2, vb2 = unpack(v)
        h = np.tanh(X @ w1 + b1)
        g = 1.0 - h * h
        h_dot = g * (X @ v1 + vb1)
        dr = (2.0 / n) * (h @ w2 + b2 - Y)
        dr_dot = (2.0 / n) * (h_dot @ w2 + h @ v2 + vb2)
        dh = dr @ w2.T
        dz_dot = (dr_dot @ w2.T + dr @ v2.T) * g - 2.0 * dh * h * h_dot
        return np.concatenate([(X.T @ dz_dot).ravel(), dz_dot.sum(0),
                               (h_dot.T @ dr + h.T @ dr_dot).ravel(), [dr_dot.sum()]])
    return grad, hvp


def rosen_hand(x, v=None):
    a, b = x[:-1], x[1:]
    d = b - a * a
    if v is None:
        g = np.zeros_like(x)
        g[:-1] = -400.0 * a * d - 2.0 * (1.0 - a)
        g[1:] += 200.0 * d
        return g
    hv = np.zeros_like(x)
    hv[:-1] = (1200.0 * a * a - 400.0 * b + 2.0) * v[:-1] - 400.0 * a * v[1:]
    hv[1:] += -400.0 * a * v[:-1] + 200.0 * v[1:]
    return hv


def logistic_hand(d):
    X, y, lam = d["log_X"], d["log_y"], 0.1

    def grad(w):
        return X.T @ (1.0 / (1.0 + np.exp(-X @ w)) - y) + lam * w

    def hvp(w, v):
        s = 1.0 / (1.0 + np.exp(-X @ w))
        return X.T @ (s * (1.0 - s) * (X @ v)) + lam * v
    return grad, hvp


def cases(lib):
    """[(problem, task, fn, args, fresh)]: `fresh()` builds a new callable whose first
    call includes staging/compiling (None where that is not meaningful)."""
    d = data()
    out = []
    if lib == "pullback":
        import pullback as pb
        M, c = np, dict(d)
        rosen, mlp, logistic, _ = functions(M, c)
        problems_ = [(ROSEN, rosen, d["x100000"], d["v100000"]), (MLP, mlp, d["mlp_p"], d["mlp_v"]),
                     (LOGISTIC, logistic, d["log_w"], d["log_v"])]
        for problem, f, x, v in problems_:
            builders = {"f": lambda f=f: pb.jit(f), "grad": lambda f=f: pb.jit(pb.grad(f)),
                        "hvp": lambda f=f: pb.jit(lambda x, v: pb.hvp(f, x, v))}
            for task, build in builders.items():
                args = (x, v) if task == "hvp" else (x,)
                out.append((problem, f"jit {task}", build(), args, build))
        for n in (10, 100):
            out.append((f"rosenbrock n={n}", "jit hessian", pb.jit(pb.hessian(rosen)),
                        (d[f"x{n}"],), lambda: pb.jit(pb.hessian(rosen))))
        out.append((LOGISTIC, "jit hessian", pb.jit(pb.hessian(logistic)), (d["log_w"],),
                    lambda: pb.jit(pb.hessian(logistic))))
        f = chain(np)
        x = np.linspace(0.1, 1.0, 10)
        out += [(CHAIN, "jit f", pb.jit(f), (x,), lambda: pb.jit(f)),
                (CHAIN, "jit grad", pb.jit(pb.grad(f)), (x,), lambda: pb.jit(pb.grad(f))),
                (CHAIN, "eager f", f, (x,), None), (CHAIN, "eager grad", pb.grad(f), (x,), None),
                (ROSEN, "eager grad", pb.grad(rosen), (d["x100000"],), None),
                (MLP, "eager grad", pb.grad(mlp), (d["mlp_p"],), None)]
        mg, mh = mlp_hand(d)
        lg, lh = logistic_hand(d)
        out += [(ROSEN, "hand grad", rosen_hand, (d["x100000"],), None),
                (ROSEN, "hand hvp", rosen_hand, (d["x100000"], d["v100000"]), None),
                (MLP, "hand grad", mg, (d["mlp_p"],), None),
                (MLP, "hand hvp", mh, (d["mlp_p"], d["mlp_v"]), None),
                (LOGISTIC, "hand grad", lg, (d["log_w"],), None),
                (LOGISTIC, "hand hvp", lh, (d["log_w"], d["log_v"]), None)]
        return out
    from second_order import library
    c, to_numpy, ops = library(lib)
    rosen, mlp, logistic, _ = functions(c["M"], c)
    prefix = "jit" if lib == "jax-jit" else "eager"
    for problem, f, x, v, tasks in [(ROSEN, rosen, c["x100000"], c["v100000"], ["f", "grad", "hvp"]),
                                    (MLP, mlp, c["mlp_p"], c["mlp_v"], ["f", "grad", "hvp"]),
                                    (LOGISTIC, logistic, c["log_w"], c["log_v"],
                                     ["f", "grad", "hvp", "hessian"]),
                                    ("rosenbrock n=10", rosen, c["x10"], None, ["hessian"]),
                                    ("rosenbrock n=100", rosen, c["x100"], None, ["hessian"])]:
        for task in tasks:
            for name, _, fn in ops[task](f, x, v):
                fresh = (lambda task=task, f=f, x=x, v=v: ops[task](f, x, v)[0][2]) \
                    if lib == "jax-jit" else None
                out.append((problem, f"{prefix} {name}", lambda fn=fn: fn(), (), fresh))
    f = chain(c["M"])
    x = c["M"].asarray(np.linspace(0.1, 1.0, 10)) if lib != "torch" else c["M"].tensor(
        np.linspace(0.1, 1.0, 10))
    for task in ("f", "grad"):
        for name, _, fn in ops[task](f, x, None):
            fresh = (lambda task=task: ops[task](f, x, None)[0][2]) if lib == "jax-jit" else None
            out.append((CHAIN, f"{prefix} {name}", lambda fn=fn: fn(), (), fresh))
    return out


def to_numpy(value):
    if hasattr(value, "detach"):
        return value.detach().numpy()
    return np.asarray(value)


def run_library(lib):
    np.ones(2_000_000).sum()
    results, counts = {}, {}
    reference = reference_values()
    for problem, task, fn, args, fresh in cases(lib):
        value = fn(*args)
        kind = task.split()[-1]
        key = f"{problem}|{kind}"
        if key in reference and rel_err(to_numpy(value), reference[key]) > TOLERANCE:
            results.setdefault(problem, {})[task] = {"wrong": rel_err(to_numpy(value), reference[key])}
            continue
        entry = measure(lambda: fn(*args))
        if fresh is not None:
            first = []
            for _ in range(3):
                callable_ = fresh()
                start = time.perf_counter()
                callable_(*args)
                first.append(time.perf_counter() - start)
            entry["first_ms"] = min(first) * 1e3
        results.setdefault(problem, {})[task] = entry
        if lib == "pullback" and task.startswith("jit") and hasattr(fn, "cache"):
            program = next(iter(fn.cache.values())).program
            from pullback.ir.staging import stage
            raw = stage(fn.__wrapped__, tuple(args))
            counts[f"{problem}|{task}"] = (len(raw.equations), len(program.equations))
    return {"results": results, "counts": counts, "blas": blas_kernel()}


def reference_values():
    """Hand-written derivatives (and the chain's f/grad from pullback eager)."""
    d = data()
    mg, mh = mlp_hand(d)
    lg, lh = logistic_hand(d)
    ref = {f"{ROSEN}|grad": rosen_hand(d["x100000"]),
           f"{ROSEN}|hvp": rosen_hand(d["x100000"], d["v100000"]),
           f"{MLP}|grad": mg(d["mlp_p"]), f"{MLP}|hvp": mh(d["mlp_p"], d["mlp_v"]),
           f"{LOGISTIC}|grad": lg(d["log_w"]), f"{LOGISTIC}|hvp": lh(d["log_w"], d["log_v"])}
    for key, value in hand_derivatives(d).items():
        if key.endswith("hessian"):
            ref[key] = value
    return ref


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library:
        print(json.dumps(run_library(args.library)))
        return
    available = [lib for lib in LIBRARIES if subprocess.run(
        [args.python, "-c", f"import {PEER_MODULE[lib]}"], env=_env(),
        capture_output=True).returncode == 0]
    best, counts, busy, blas = {}, {}, [], ""
    for _ in range(args.passes):
        for lib in available:
            busy.append(cpu_busy_fraction())
            out = subprocess.run([args.python, __file__, "--library", lib], env=_env(),
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{lib} failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            blas = blas or result["blas"]
            counts.update(result["counts"])
            for problem, tasks in result["results"].items():
                for task, entry in tasks.items():
                    key = (problem, task, lib)
                    old = best.get(key)
                    if old is None or entry.get("us", np.inf) < old.get("us", np.inf):
                        if old and "first_ms" in old:
                            entry["first_ms"] = min(entry.get("first_ms", np.inf), old["first_ms"])
                        best[key] = entry
    write_report(best, counts, available, blas, max(busy))


def write_report(best, counts, libs, blas, busy):
    def us(problem, task, lib):
        entry = best.get((problem, task, lib))
        if entry is None:
            return None
        return entry.get("us")

    lines = ["# jit benchmark (median µs, best of passes)", "",
             f"Command: `python benchmarks/jit.py --python <venv with peers>`; machine: "
             f"{os.cpu_count()} cores, BLAS {blas}; highest CPU use by others before a library "
             f"ran: {busy:.0%}. JAX: x64, synchronous CPU dispatch.", "",
             "| problem | task | library | median µs | first call ms | wrong? |",
             "|---|---|---|---:|---:|---|"]
    for (problem, task, lib), entry in sorted(best.items()):
        median = f"{entry['us']:.1f}" if "us" in entry else "-"
        first = f"{entry['first_ms']:.1f}" if "first_ms" in entry else "-"
        wrong = f"rel. error {entry['wrong']:.1e}" if "wrong" in entry else ""
        lines.append(f"| {problem} | {task} | {lib} | {median} | {first} | {wrong} |")
    lines += ["", "## Ratios and floors", ""]
    checks = []
    for problem in (ROSEN, MLP):
        jf, jg, jh = (us(problem, f"jit {t}", "pullback") for t in ("f", "grad", "hvp"))
        hg, hh = us(problem, "hand grad", "pullback"), us(problem, "hand hvp", "pullback")
        checks += [(f"{problem}: jit grad / jit f", jg / jf, 3.0),
                   (f"{problem}: jit HVP / jit f", jh / jf, 6.0),
                   (f"{problem}: jit grad / hand-written grad", jg / hg, 1.25),
                   (f"{problem}: jit HVP / hand-written HVP", jh / hh, 1.25)]
    checks.append(("chain: eager grad / jit grad (at least)",
                   us(CHAIN, "eager grad", "pullback") / us(CHAIN, "jit grad", "pullback"), -5.0))
    for (problem, task, lib), entry in sorted(best.items()):
        jax_first = best.get((problem, task, "jax-jit"), {}).get("first_ms")
        if lib == "pullback" and task in ("jit grad", "jit hvp") and jax_first \
                and "first_ms" in entry:
            checks.append((f"{problem}: first call of {task} / JAX's",
                           entry["first_ms"] / jax_first, 0.2))
    for name, value, floor in checks:
        met = value >= -floor if floor < 0 else value <= floor
        bound = f">= {-floor}" if floor < 0 else f"<= {floor}"
        lines.append(f"- {name}: {value:.2f} (floor {bound}: {'met' if met else 'NOT met'})")
    lines += ["", "Ratio of pullback jit to JAX jit (steady state):", ""]
    for (problem, task, lib) in sorted(best):
        if lib == "pullback" and task.startswith("jit"):
            theirs = us(problem, task, "jax-jit")
            if theirs:
                lines.append(f"- {problem} {task}: {us(problem, task, lib) / theirs:.2f}")
    lines += ["", "IR equations before / after the passes:", ""]
    for key, (before, after) in sorted(counts.items()):
        lines.append(f"- {key.replace('|', ' ')}: {before} -> {after} "
                     f"({100 * (before - after) / max(before, 1):.0f}% removed)")
    write_results("jit.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
