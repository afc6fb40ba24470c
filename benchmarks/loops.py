"""Loops benchmark: an RK4 integrator of y' = tanh(W y) (D = 64), a Python loop against
`pullback.fori_loop`, at 100 and 400 steps.

- jit staging (first call: stage, optimise, generate, compile) and run time of the
  gradient of sum(y_n) with respect to y_0, with the equations and generated lines;
- eager reverse mode: time and tracemalloc peak (counted in states of D floats) for the
  checkpointing policies "all", "carry", "auto" and 30 snapshots, against the Python loop.

    python benchmarks/loops.py

Writes benchmarks/results/loops.md. Timings are medians of 5 runs after one warm-up; the
machine is shared, so compare the ratios within one run.
"""
import os
import statistics
import time
import tracemalloc

import numpy as np

import pullback

HERE = os.path.dirname(os.path.abspath(__file__))
D, DT = 64, 0.01
W = np.random.default_rng(0).normal(size=(D, D)) / np.sqrt(D)


def rk4_step(y):
    k1 = np.tanh(W @ y)
    k2 = np.tanh(W @ (y + DT / 2 * k1))
    k3 = np.tanh(W @ (y + DT / 2 * k2))
    k4 = np.tanh(W @ (y + DT * k3))
    return y + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def python_loop(steps):
    def f(y):
        for _ in range(steps):
            y = rk4_step(y)
        return np.sum(y)
    return f


def rolled(steps, checkpoints="all"):
    def f(y):
        return np.sum(pullback.fori_loop(0, steps, lambda i, y: rk4_step(y), y,
                                         checkpoints=checkpoints))
    return f


def median_time(fn, *args, repeats=5):
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def jit_row(name, f, y0):
    grad = pullback.grad(f)
    program = pullback.make_ir(grad, optimized=True)(y0)
    lines = pullback.show(grad, y0, file=open(os.devnull, "w")).count("\n")
    jitted = pullback.jit(grad)
    start = time.perf_counter()
    jitted(y0)
    staging = time.perf_counter() - start
    run = median_time(jitted, y0)
    return f"| {name} | {len(program.equations)} | {lines} | {staging * 1e3:.0f} | {run * 1e3:.2f} |"


def memory_row(name, f, y0):
    grad = pullback.grad(f)
    run = median_time(grad, y0, repeats=3)
    tracemalloc.start()
    grad(y0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return f"| {name} | {peak / y0.nbytes:.0f} | {run * 1e3:.1f} |"


def main():
    y0 = np.linspace(-1.0, 1.0, D)
    lines = ["# Loops: RK4 of y' = tanh(W y), D = 64", "",
             "Gradient of sum(y_n) with respect to y_0. Produced by `python benchmarks/loops.py`.",
             ""]
    for steps in (100, 400):
        lines += [f"## {steps} steps", "", "jit (staging = the first call: stage, optimise, generate, compile and one run):", "",
                  "| function | equations | generated lines | staging ms | run ms |",
                  "|---|---|---|---|---|",
                  jit_row("Python loop", python_loop(steps), y0),
                  jit_row("fori_loop", rolled(steps), y0), "",
                  "eager reverse mode (peak memory in states of D floats):", "",
                  "| function | peak (states) | time ms |", "|---|---|---|",
                  memory_row("Python loop", python_loop(steps), y0)]
        for policy in ("all", "carry", "auto", 30):
            lines.append(memory_row(f"fori_loop, checkpoints={policy!r}",
                                    rolled(steps, policy), y0))
        lines.append("")
    lines.append("The peak counts W (64 states) and temporaries too. The machine may be shared: "
                 "compare within a run.")
    text = "\n".join(lines)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "loops.md"), "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
