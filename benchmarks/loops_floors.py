"""Issue 15's floors for checkpointed loops: RK4 of y' = tanh(W y).

    python benchmarks/loops_floors.py [--steps 10000] [--dim 1000] [--parts memory,time,jit,steady]
                                      [--policies all,carry,30,auto] [--time-dim 1000] [--rounds 3]

- memory: the eager gradient through n steps (tracemalloc peak, counted in states of D
  floats; W is allocated before tracing starts) for each policy, one traced run each (its
  time is printed too, but tracemalloc slows Python and the runs are not interleaved);
- time: the eager gradient untraced, against "all", at D = --time-dim, in --rounds rounds,
  the policies and the primal loop interleaved (each round in another order), with the
  load average and each policy's least possible ratio (its recomputed steps priced at
  the primal loop's time per step);
- jit: jit(grad) of the fori_loop: equations at n = 10 and n = 10^5, and the time to stage
  and optimise it at n = 10^5 (what jit's first call adds before running);
- steady: jit of the n-step fori_loop (no derivative) against a hand-written NumPy
  loop calling the same step, at D = 64 (Python overhead shows) and at D (BLAS
  dominates), interleaved, best of 5 each.
Writes benchmarks/results/loops_floors.md (every part), else loops_floors_<parts>.md.
"""
import argparse
import math
import os
import sys
import time
import tracemalloc

import numpy as np

import pullback
from pullback.ir.codegen import compile_program
from pullback.loops import schedules

HERE = os.path.dirname(os.path.abspath(__file__))


def rk4_step(w, dt=0.01):
    def step(i, y):
        k1 = np.tanh(w @ y)
        k2 = np.tanh(w @ (y + dt / 2 * k1))
        k3 = np.tanh(w @ (y + dt / 2 * k2))
        k4 = np.tanh(w @ (y + dt * k3))
        return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return step


def rk4(step, steps, checkpoints):
    def f(y):
        return np.sum(pullback.fori_loop(0, steps, step, y, checkpoints=checkpoints))
    return f


def traced_gradient(step, steps, policy, y0):
    """(gradient, seconds, peak bytes) of one eager gradient, traced by tracemalloc, after
    a 3-step warm-up with the same body (its staging is cached, not counted)."""
    pullback.grad(rk4(step, 3, policy))(y0)
    f = rk4(step, steps, policy)
    tracemalloc.start()
    start = time.perf_counter()
    gradient = pullback.grad(f)(y0)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return gradient, seconds, peak


def steady_state(w, steps, repeats=5):
    """(jit seconds, hand-written loop seconds, equal bit for bit): best of `repeats`,
    interleaved."""
    step = rk4_step(w)
    y0 = np.linspace(-1.0, 1.0, w.shape[0])
    jitted = pullback.jit(lambda y: pullback.fori_loop(0, steps, step, y))

    def by_hand(y):
        for i in range(steps):
            y = step(i, y)
        return y
    same = np.array_equal(jitted(y0), by_hand(y0))
    best = {jitted: math.inf, by_hand: math.inf}
    for _ in range(repeats):
        for fn in best:
            start = time.perf_counter()
            fn(y0)
            best[fn] = min(best[fn], time.perf_counter() - start)
    return best[jitted], best[by_hand], same


BOUNDS = {"carry": lambda n: (n + 16, 1.5), 30: lambda n: (46, 2.5),
          "auto": lambda n: (math.ceil(math.log2(n)) + 16, 3.0)}


def _policy(text):
    return int(text) if text.isdigit() else text


def memory_section(n, d, w, y0, policies):
    rows, reference = [], None
    for policy in policies:
        gradient, seconds, peak = traced_gradient(rk4_step(w), n, policy, y0)
        if reference is None and policy == "all":
            reference = gradient
        states = peak / y0.nbytes
        same = "-" if reference is None else np.array_equal(gradient, reference)
        bound = BOUNDS[policy](n)[0] if policy in BOUNDS else None
        verdict = "-" if bound is None else (
            f"states <= {bound}: {'met' if states <= bound else 'MISSED'}")
        rows.append(f"| {policy!r} | {states:,.2f} | {seconds:.1f} | {same} | {verdict} |")
        print(rows[-1], f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return f"""## Memory: gradient through n = {n:,} RK4 steps, D = {d}

One traced run each (tracemalloc: its seconds are not comparable), after a 3-step warm-up of
the same body (its staging is cached, not counted).

| checkpoints | peak (states of D floats) | seconds (traced) | equals "all" bit for bit | floor |
|---|---:|---:|---|---|
""" + "\n".join(rows) + "\n"


def recomputed_steps(policy, n):
    """The forward steps a policy runs besides the n steps reverse mode records (and
    "all" runs too): "carry" recomputes each step once; a binomial policy runs Griewank's
    t(n, c) (its first sweep included) and the last step of the primal pass."""
    if policy == "all":
        return 0
    if policy == "carry":
        return n
    return schedules.forward_steps(n, schedules.snapshot_budget(policy, n, 0)) + 1


def time_section(n, d, rounds, policies):
    """Untraced gradients, interleaved: each round runs every policy, in a rotated order,
    and the primal loop alone (no derivative), whose time per step prices a recomputed
    step: the least any schedule can take is "all" + its recomputed steps at that price."""
    w = np.random.default_rng(0).normal(size=(d, d)) / np.sqrt(d)
    y0 = np.linspace(-1.0, 1.0, d)
    policies = ["all"] + [p for p in policies if p != "all"]
    runs = {p: (lambda p=p: pullback.grad(rk4(rk4_step(w), n, p))(y0)) for p in policies}
    runs["primal"] = lambda: pullback.fori_loop(0, n, rk4_step(w), y0)
    for policy in policies:                              # stage each body once
        pullback.grad(rk4(rk4_step(w), 3, policy))(y0)
    names = list(runs)
    times, loads = {p: [] for p in names}, [os.getloadavg()[0]]
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
            print(f"round {r}: {name!r} {times[name][-1]:.2f} s", flush=True)
        loads.append(os.getloadavg()[0])
    rows = []
    for policy in policies:
        ratios = [t / a for t, a in zip(times[policy], times["all"])]
        least = [1 + recomputed_steps(policy, n) / n * f / a
                 for f, a in zip(times["primal"], times["all"])]
        bound = BOUNDS[policy](n)[1] if policy in BOUNDS else None
        verdict = "-" if bound is None else (
            f"<= {bound}x: {'met' if np.median(ratios) <= bound else 'MISSED'}")
        rows.append(f"| {policy!r} | {' / '.join(f'{t:.2f}' for t in times[policy])} | "
                    f"{' / '.join(f'{x:.2f}' for x in ratios)} | {np.median(ratios):.2f} | "
                    f"{recomputed_steps(policy, n) / n:.2f} | {np.median(least):.2f} | "
                    f"{verdict} |")
    return f"""## Time: untraced gradient through n = {n:,} RK4 steps, D = {d}, against "all"

{rounds} round(s), the policies and the primal loop interleaved (each round in a rotated
order); ratios within a round. Load average (1 min) at the start and after each round:
{', '.join(f'{x:.1f}' for x in loads)}. The primal loop alone (no derivative) took
{' / '.join(f'{t:.2f}' for t in times["primal"])} s: a step recomputed costs
{np.median([f / a for f, a in zip(times["primal"], times["all"])]):.2f} of a step of "all"
(its recorded forward and its backward). "least": 1 + (recomputed steps / n) x that, the
time of a schedule with no overhead at all (Griewank's t(n, c) steps for c snapshots).

| checkpoints | seconds per round | time / "all" per round | median ratio | recomputed steps / n | least | floor |
|---|---|---|---:|---:|---:|---|
""" + "\n".join(rows) + "\n"


def jit_section(w, d):
    small = w[:64, :64] * np.sqrt(d / 64)
    y_small = np.linspace(-1.0, 1.0, 64)
    start = time.perf_counter()       # first: the body is staged here, not cached before
    program = pullback.make_ir(pullback.grad(rk4(rk4_step(small), 100_000, "auto")),
                               optimized=True)(y_small)
    staging = time.perf_counter() - start
    equations = {m: len(pullback.make_ir(pullback.grad(rk4(rk4_step(small), m, "auto")),
                                         optimized=True)(y_small).equations) for m in (10, 100_000)}
    start = time.perf_counter()
    compile_program(program)
    compiling = time.perf_counter() - start
    return f"""## jit(grad) of the fori_loop (D = 64, checkpoints="auto")

- equations after optimisation: {equations[10]} at n = 10, {equations[100_000]} at n = 100,000.
- n = 100,000: stage + optimise (`make_ir(..., optimized=True)`) {staging * 1e3:.0f} ms; the
  program's {len(program.equations)} equations then generate and compile in about
  {compiling * 1e3:.1f} ms (floor for all of it: 100 ms).
"""


def steady_section(w, d, n):
    small = w[:64, :64] * np.sqrt(d / 64)
    steady = []
    for dim, matrix in ((64, small), (d, w)):
        jitted, by_hand, same = steady_state(matrix, n)
        ratio = jitted / by_hand
        steady.append(f"| {dim} | {jitted:.3f} | {by_hand:.3f} | {ratio:.2f} | {same} | "
                      f"{'met' if ratio <= 1.2 else 'MISSED'} |")
    return f"""## Steady state: jit of the {n:,}-step fori_loop against a hand-written NumPy loop

Best of 5 each, interleaved; the same step function (floor: 1.2x).

| D | jit (s) | hand-written loop (s) | ratio | equal bit for bit | floor |
|---:|---:|---:|---:|---|---|
""" + "\n".join(steady) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--parts", default="memory,time,jit,steady")
    parser.add_argument("--policies", default="all,carry,30,auto")
    parser.add_argument("--time-dim", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    n, d, parts = args.steps, args.dim, args.parts.split(",")
    policies = [_policy(p) for p in args.policies.split(",")]
    rng = np.random.default_rng(0)
    w = rng.normal(size=(d, d)) / np.sqrt(d)
    y0 = np.linspace(-1.0, 1.0, d)
    sections = {
        "memory": lambda: memory_section(n, d, w, y0, policies),
        "time": lambda: time_section(n, args.time_dim or d, args.rounds, policies),
        "jit": lambda: jit_section(w, d),
        "steady": lambda: steady_section(w, d, n)}
    command = " ".join(["python benchmarks/loops_floors.py"] + sys.argv[1:])
    text = f"""# Checkpointed loops against issue 15's floors

Command: `{command}`; the machine may be shared (load averages are given).

""" + "\n".join(sections[part]() for part in parts) + f"""
Load average at the end: {os.getloadavg()[0]:.1f} (machine shared with other workers).
"""
    name = "loops_floors" if set(parts) == set(sections) else "loops_floors_" + "_".join(parts)
    with open(os.path.join(HERE, "results", name + ".md"), "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
