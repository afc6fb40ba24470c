"""Rolled loops side by side with JAX (`lax.scan`, `jax.checkpoint`): gradient under jit.

    python benchmarks/loops_jax.py --python /work/peers/bin/python [--rounds 2] [--problems rk4,heat,rnn]

Problems (the gradient of a scalar loss, under jit in both libraries):
- RK4 of y' = tanh(W y), D = 256, 2,000 steps, with respect to y0;
- a 1-D heat equation, 100 points, 10^5 explicit Euler steps, with respect to u0;
- a tanh RNN, hidden 256, input 32, sequence 1,000, loss sum(h_T), with respect to W.

Policies: store-all (pullback "all", a plain `lax.scan`), one carry per step (pullback
"carry", `lax.scan` of `jax.checkpoint(step)`), and pullback's binomial "auto" (JAX has
no binomial checkpointing of scan). Each (problem, policy, library) runs in a process of
its own, the libraries alternating (interleaved), `--rounds` times; the table keeps the
best of the rounds: the first call (staging and compilation included), the steady-state
gradient (best of 2 calls) and the growth of the process's peak resident memory during
the calls (ru_maxrss: coarse, but it sees XLA's buffers, which tracemalloc does not).
Both libraries' gradients are compared (relative difference in the table).
Writes benchmarks/results/loops_jax.md.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROBLEMS = ("rk4", "heat", "rnn")
POLICIES = ("all", "carry", "auto")


def data(problem):
    """The problem's inputs (NumPy float64), the same in both processes."""
    rng = np.random.default_rng(0)
    if problem == "rk4":
        return {"w": rng.normal(size=(256, 256)) / 16.0, "x": np.linspace(-1.0, 1.0, 256)}
    if problem == "heat":
        return {"x": np.sin(np.linspace(0.0, np.pi, 100)) + 0.1 * rng.normal(size=100)}
    return {"x": rng.normal(size=(256, 256)) / 16.0, "u": rng.normal(size=(256, 32)) / 6.0,
            "xs": rng.normal(size=(1000, 32))}


def losses(np_, scan, problem, inputs):
    """The loss of `problem` written once for both libraries: `np_` is the array module,
    `scan(step, init, xs, length)` the library's scan under the policy."""
    if problem == "rk4":
        w, dt = inputs["w"], 0.01

        def step(y, _):
            k1 = np_.tanh(w @ y)
            k2 = np_.tanh(w @ (y + dt / 2 * k1))
            k3 = np_.tanh(w @ (y + dt / 2 * k2))
            k4 = np_.tanh(w @ (y + dt * k3))
            return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None
        return lambda y0: np_.sum(scan(step, y0, None, 2000) ** 2)
    if problem == "heat":
        r = 0.2                          # nu dt / dx^2, stable below 0.5

        def step(u, _):
            lap = np_.concatenate([u[:1] * 0, u[2:] - 2 * u[1:-1] + u[:-2], u[:1] * 0])
            return u + r * lap, None
        return lambda u0: np_.sum(scan(step, u0, None, 100_000) ** 2)
    u, xs = inputs["u"], inputs["xs"]

    def loss(w):
        def step(h, x):
            return np_.tanh(w @ h + u @ x), None
        return np_.sum(scan(step, np_.zeros(256), xs, None))
    return loss


def run_pullback(problem, policy):
    import pullback
    inputs = data(problem)

    def scan(step, init, xs, length):
        return pullback.scan(step, init, xs, length=length, checkpoints=policy)[0]
    return pullback.jit(pullback.grad(losses(np, scan, problem, inputs))), inputs["x"]


def run_jax(problem, policy):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    inputs = {k: jnp.asarray(v) for k, v in data(problem).items()}

    def scan(step, init, xs, length):
        body = jax.checkpoint(step) if policy == "carry" else step
        return jax.lax.scan(body, init, xs, length=length)[0]
    grad = jax.jit(jax.grad(losses(jnp, scan, problem, inputs)))
    return (lambda x: np.asarray(grad(x).block_until_ready())), inputs["x"]


def measure(library, problem, policy):
    """One process's figures, as JSON on stdout."""
    fn, x = (run_pullback if library == "pullback" else run_jax)(problem, policy)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    gradient = np.asarray(fn(x))
    first = time.perf_counter() - start
    steady = []
    for _ in range(2):
        start = time.perf_counter()
        fn(x)
        steady.append(time.perf_counter() - start)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    path = os.path.join(HERE, "results", f".loops_jax_{problem}_{policy}_{library}.npy")
    np.save(path, gradient)
    print(json.dumps({"first": first, "steady": min(steady), "rss_mb": grown / 1024,
                      "gradient": path}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a Python with JAX")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--problems", default=",".join(PROBLEMS),
                        help="comma-separated, of " + ", ".join(PROBLEMS))
    parser.add_argument("--measure", nargs=3, metavar=("LIBRARY", "PROBLEM", "POLICY"))
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    problems = [p for p in PROBLEMS if p in args.problems.split(",")]
    best, loads = {}, []
    for _ in range(args.rounds):
        for problem in problems:
            for policy in POLICIES:
                for library in ("pullback", "jax") if policy != "auto" else ("pullback",):
                    python = sys.executable if library == "pullback" else args.python
                    out = subprocess.run([python, __file__, "--measure", library, problem,
                                          policy], capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(f"{library} {problem} {policy} failed:\n{out.stderr}")
                    figures = json.loads(out.stdout.strip().splitlines()[-1])
                    loads.append(os.getloadavg()[0])
                    print(library, problem, policy, figures, file=sys.stderr, flush=True)
                    key = (problem, policy, library)
                    if key in best:
                        figures = {k: min(v, best[key][k]) if k != "gradient" else v
                                   for k, v in figures.items()}
                    best[key] = figures
    rows = []
    for problem in problems:
        for policy in POLICIES:
            ours = best[(problem, policy, "pullback")]
            theirs = best.get((problem, policy, "jax"))
            g = np.load(ours["gradient"])
            if theirs is None:
                rows.append(f"| {problem} | {policy} | {ours['first']:.2f} | - | "
                            f"{ours['steady']:.3f} | - | - | {ours['rss_mb']:.0f} | - | - |")
                continue
            h = np.load(theirs["gradient"])
            diff = np.max(np.abs(g - h)) / max(np.max(np.abs(h)), 1e-300)
            rows.append(
                f"| {problem} | {policy} | {ours['first']:.2f} | {theirs['first']:.2f} | "
                f"{ours['steady']:.3f} | {theirs['steady']:.3f} | "
                f"{ours['steady'] / theirs['steady']:.2f} | {ours['rss_mb']:.0f} | "
                f"{theirs['rss_mb']:.0f} | {diff:.1e} |")
    for name in os.listdir(os.path.join(HERE, "results")):
        if name.startswith(".loops_jax_"):
            os.remove(os.path.join(HERE, "results", name))
    text = f"""# Rolled loops: pullback against JAX (lax.scan, jax.checkpoint)

Command: `{" ".join(["python benchmarks/loops_jax.py"] + sys.argv[1:])}`.
Gradient under jit in both (`pullback.jit(pullback.grad(...))`, `jax.jit(jax.grad(...))`),
float64, CPU. Each row: separate processes, the libraries interleaved, best of
{args.rounds} round(s). "all": store every step's residuals (JAX: plain `lax.scan`);
"carry": one carry per step, recomputed on the way back (JAX: `lax.scan` of
`jax.checkpoint(step)`); "auto": pullback's binomial schedule with bit_length(n) (about
log2 n) snapshots (JAX has none for scan). Peak memory: growth of the process's peak
resident set during the calls (MB): a lower bound only (the peak so far includes the
imports, and pullback's SciPy import may exceed what the gradient holds, which then reads
as ~0); pullback's own memory is measured exactly (tracemalloc) in loops_floors.md. Load average during the run:
{min(loads):.1f} to {max(loads):.1f} on a shared 2-core machine: timings are noisy, compare
ratios.

Problems: RK4 of y' = tanh(W y), D = 256, 2,000 steps (gradient w.r.t. y0); heat
equation, 100 points, 10^5 explicit Euler steps (w.r.t. u0); tanh RNN, hidden 256,
input 32, sequence 1,000 (w.r.t. W).

| problem | policy | first call pullback (s) | first call JAX (s) | gradient pullback (s) | gradient JAX (s) | pullback / JAX | peak RSS growth pullback (MB) | JAX (MB) | max rel. difference |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
""" + "\n".join(rows) + "\n"
    with open(os.path.join(HERE, "results", "loops_jax.md"), "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
