"""jit at scale: compile time per phase, staging cost, peak memory, numpy-namespace overhead.

Parts (one subprocess each, `--part` runs one and prints JSON):
- profile: jit(grad(chain)) at 4k and 16k staged equations and the LSTM gradient (256
  characters): µs per staged equation for staging, the interpreter (what a long program's
  first call runs), each pass (summed over the rounds of `optimize`), code generation (fast
  and traceable variants) and Python's `compile`;
- first: the first, second (which compiles a long program) and third calls of
  jit(grad(chain)) at 8k and 16k steps, and of the LSTM gradient (2 layers, 1,024
  characters, 14 symbols: GradBench's `lstm_l2_c1024` sizes, random data), wall-clock and
  CPU seconds (the CPU time is what the floors mean on a shared machine);
- memory: peak memory (tracemalloc) of a steady-state call, eager against jit, of f and of
  its gradient: an RK4 integrator (y_i' = x_i * y_{i-1}, n = 10^5, 10 steps), an MLP, the LSTM;
- steady: steady-state calls of jitted gradients (the chain of 100 steps on 10 elements,
  RK4 at n = 10^5, the MLP), median µs;
- wrappers: `pullback.numpy` functions against the NumPy functions they wrap and a
  pass-through Python wrapper (the reference), on small plain arrays, per call (thread CPU
  time of short interleaved samples; see `part_wrappers`).

    python benchmarks/jit_scale.py [--baseline PATH] [--parts wrappers profile ...]

With `--baseline`, a checkout of another pullback (e.g. the commit before a change, in a
temporary worktree) runs each part in turn with this one, and the report shows both.
Writes benchmarks/results/jit_scale.md. Protocol: ../shared/BENCHMARKING.md.
"""
import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
import timeit
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARTS = ("profile", "first", "memory", "steady", "wrappers")
CHAIN_STEPS = (1600, 6400)       # 4k and 16k staged equations
FIRST_CALL_STEPS = (8000, 16000)
CLOCK = time.process_time      # compile phases: CPU time, less disturbed by other processes
LSTM_SIZES = {"layers": 2, "characters": 1024, "symbols": 14}


# ------------------------------------------------------------------ problems

def chain(steps):
    """An elementwise chain of `steps` operations on a vector, summed."""
    def f(x):
        for i in range(steps):
            k = i % 4
            x = np.sin(x) if k == 0 else x * 1.01 if k == 1 else np.tanh(x) if k == 2 else x + 0.5
        return np.sum(x)
    return f


def rk4_data(n=100_000):
    return (np.random.default_rng(0).uniform(-1.0, 1.0, n),)


def rk4(x, steps=10):
    """GradBench's ode: y_i' = x_i * y_{i-1} (y_0' = x_0) from y = 0 to t = 1, by RK4."""
    def field(y):
        return np.concatenate([x[:1], x[1:] * y[:-1]])
    h = 1.0 / steps
    y = np.zeros_like(x)
    for _ in range(steps):
        k1 = field(y)
        k2 = field(y + (h / 2) * k1)
        k3 = field(y + (h / 2) * k2)
        k4 = field(y + h * k3)
        y = y + (h / 6) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


def rk4_loss(x):
    return np.sum(rk4(x) ** 2)


MLP_WIDTHS = (256, 512, 512, 10)
MLP_BATCH = 1024


def mlp_data():
    rng = np.random.default_rng(1)
    sizes = [a * b + b for a, b in zip(MLP_WIDTHS, MLP_WIDTHS[1:])]
    return (rng.standard_normal(sum(sizes)) * 0.05,
            rng.standard_normal((MLP_BATCH, MLP_WIDTHS[0])),
            rng.standard_normal((MLP_BATCH, MLP_WIDTHS[-1])))


def mlp(params, inputs, targets):
    """Mean squared error of a tanh MLP 256-512-512-10 on a batch of 1,024."""
    h, start = inputs, 0
    for k, (a, b) in enumerate(zip(MLP_WIDTHS, MLP_WIDTHS[1:])):
        w = params[start:start + a * b].reshape(a, b)
        bias = params[start + a * b:start + a * b + b]
        start += a * b + b
        h = h @ w + bias
        if k < len(MLP_WIDTHS) - 2:
            h = np.tanh(h)
    return np.mean((h - targets) ** 2)


def lstm_data(layers=LSTM_SIZES["layers"], characters=LSTM_SIZES["characters"],
              symbols=LSTM_SIZES["symbols"]):
    rng = np.random.default_rng(2)
    return (rng.uniform(-1, 1, (2 * layers, 4 * symbols)), rng.uniform(-1, 1, (3, symbols)),
            rng.uniform(-1, 1, (2 * layers, symbols)), rng.uniform(-1, 1, (characters, symbols)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm(main_params, extra_params, state, sequence):
    """GradBench's (ADBench's) LSTM objective: `layers` LSTM cells predicting each next
    character of `sequence`; main_params holds each layer's weights and biases, state its
    hidden and cell values."""
    b = sequence.shape[1]
    layers = main_params.shape[0] // 2
    hidden = [state[2 * i] for i in range(layers)]
    cell = [state[2 * i + 1] for i in range(layers)]
    total = 0.0
    for t in range(sequence.shape[0] - 1):
        x = sequence[t] * extra_params[0]
        for i in range(layers):
            gates = np.concatenate([x, hidden[i], x, hidden[i]]) * main_params[2 * i] \
                + main_params[2 * i + 1]
            forget, ingate = sigmoid(gates[:b]), sigmoid(gates[b:2 * b])
            outgate, change = sigmoid(gates[2 * b:3 * b]), np.tanh(gates[3 * b:])
            cell[i] = cell[i] * forget + ingate * change
            hidden[i] = outgate * np.tanh(cell[i])
            x = hidden[i]
        prediction = x * extra_params[1] + extra_params[2]
        normalised = prediction - np.log(np.sum(np.exp(prediction)) + 2.0)
        total = total + np.sum(sequence[t + 1] * normalised)
    return -total / ((sequence.shape[0] - 1) * b)


# ------------------------------------------------------------------ parts

def profile_program(f, args):
    """Seconds of each compile phase for jit(f) at args, and the equation counts."""
    from pullback.ir import codegen, passes
    from pullback.ir.staging import argument_names, stage
    gc.collect()
    times = {}
    start = CLOCK()
    program = stage(f, args, argument_names(f, args))
    times["staging"] = CLOCK() - start
    try:
        from pullback.ir.program import interpret
    except ImportError:              # a pullback without the interpreter
        pass
    else:
        from pullback.tree import flatten
        start = CLOCK()
        interpret(program, *flatten(args)[0])
        times["interpret (first call)"] = CLOCK() - start

    def timed(p):
        def run(prog):
            begin = CLOCK()
            out = p(prog)
            times[p.__name__] = times.get(p.__name__, 0.0) + CLOCK() - begin
            return out
        run.__name__ = p.__name__
        return run
    start = CLOCK()
    optimized = passes.optimize(program, passes=[timed(p) for p in passes.PASSES])
    total = CLOCK() - start
    times["optimize (rest)"] = total - sum(times.get(p.__name__, 0.0) for p in passes.PASSES)
    for fast in (True, False):
        variant = "fast" if fast else "traceable"
        start = CLOCK()
        text, _ = codegen.generate(optimized, "f", fast=fast)
        times[f"codegen {variant}"] = CLOCK() - start
        start = CLOCK()
        compile(text, "<benchmark>", "exec")
        times[f"compile {variant}"] = CLOCK() - start
    return {"times": times, "equations": len(program.equations),
            "optimized": len(optimized.equations)}


def part_profile():
    import pullback
    out = {}
    for steps in CHAIN_STEPS:
        out[f"chain {steps}"] = profile_program(pullback.grad(chain(steps)),
                                                (np.linspace(0.1, 1.0, 10),))
    out["lstm 256"] = profile_program(pullback.grad(lstm, argnums=(0, 1)),
                                      lstm_data(characters=256))
    return out


def timed_calls(fn, args, calls=3):
    """(wall s, CPU s, result) of each of the first `calls` calls of fn."""
    gc.collect()
    out = []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        out.append((time.perf_counter() - wall, time.process_time() - cpu, result))
    return out


def difference(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
               zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)))


def part_first():
    import pullback
    out = {}
    x = np.linspace(0.1, 1.0, 10)
    problems = [(f"chain {steps}", pullback.grad(chain(steps)), (x,)) for steps in FIRST_CALL_STEPS]
    problems.append(("lstm", pullback.grad(lstm, argnums=(0, 1)), lstm_data()))
    for name, f, args in problems:
        calls = timed_calls(pullback.jit(f), args)
        for k, (wall, cpu, _) in enumerate(calls):
            out[f"{name}: call {k + 1} (wall)"] = wall
            out[f"{name}: call {k + 1} (CPU)"] = cpu
        out[f"{name}: calls 1 and 2 differ by"] = difference(calls[0][2], calls[1][2])
        wall, cpu, eager = timed_calls(f, args, 1)[0]
        out[f"{name}: eager (wall)"], out[f"{name}: eager (CPU)"] = wall, cpu
        out[f"{name}: jit and eager differ by"] = difference(calls[0][2], eager)
    return out


def peak_bytes(fn, args):
    """Peak memory traced while `fn(*args)` runs (after two calls: a long jitted program's
    first runs interpreted, its second compiles), beyond what was allocated before."""
    fn(*args)
    fn(*args)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn(*args)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def part_memory():
    import pullback
    problems = {"rk4": (rk4, rk4_loss, rk4_data(), (0,)),
                "mlp": (mlp, mlp, mlp_data(), (0,)),
                "lstm": (lstm, lstm, lstm_data(characters=128), (0, 1))}
    out = {}
    for name, (f, loss, args, argnums) in problems.items():
        g = pullback.grad(loss, argnums=argnums)
        out[name] = {"eager f": peak_bytes(f, args), "jit f": peak_bytes(pullback.jit(f), args),
                     "eager grad": peak_bytes(g, args),
                     "jit grad": peak_bytes(pullback.jit(g), args)}
    return out


def wrapper_cases():
    """(name, NumPy call, pullback.numpy call) on small plain arrays."""
    import pullback.numpy as pnp
    a, b = np.linspace(0.1, 1.0, 8), np.linspace(1.0, 2.0, 8)
    m = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    cases = [("exp(a)", "exp", (a,)), ("sin(a)", "sin", (a,)), ("tanh(a)", "tanh", (a,)),
             ("add(a, b)", "add", (a, b)), ("multiply(a, 2.0)", "multiply", (a, 2.0)),
             ("maximum(a, b)", "maximum", (a, b)), ("where(a > 0.5, a, b)", "where", (a > 0.5, a, b)),
             ("concatenate([a, b])", "concatenate", ([a, b],)), ("stack([a, b])", "stack", ([a, b],)),
             ("sum(a)", "sum", (a,)), ("sum(m, axis=0)", "sum", (m, 0)), ("mean(a)", "mean", (a,)),
             ("max(a)", "max", (a,)), ("reshape(m, (4, 3))", "reshape", (m, (4, 3))),
             ("transpose(m)", "transpose", (m,)), ("dot(a, b)", "dot", (a, b)),
             ("matmul(m, m.T)", "matmul", (m, m.T)), ("clip(a, 0.2, 0.8)", "clip", (a, 0.2, 0.8)),
             ("einsum('ij,jk', m, m.T)", "einsum", ("ij,jk", m, m.T)),
             ("take(a, [1, 3])", "take", (a, [1, 3])), ("ravel(m)", "ravel", (m,))]
    return [(label, getattr(np, name), getattr(pnp, name), args) for label, name, args in cases]


def passthrough(numpy_fn):
    """The reference: the cheapest Python-level wrapper of `numpy_fn`, checking nothing."""
    def wrapper(*args):
        return numpy_fn(*args)
    return wrapper


def part_steady():
    import pullback
    np.ones(2_000_000).sum()
    problems = {"chain 100 grad": (chain(100), (np.linspace(0.1, 1.0, 10),), 500),
                "rk4 grad (n = 1e5)": (rk4_loss, rk4_data(), 2),
                "mlp grad": (mlp, mlp_data(), 1)}
    out = {}
    for name, (f, args, number) in problems.items():
        jitted = pullback.jit(pullback.grad(f))
        jitted(*args)
        timer = timeit.Timer(lambda: jitted(*args))
        out[name] = float(np.median(timer.repeat(9, number))) / number * 1e6
    return out


def part_wrappers(rounds=15, samples=21, number=200):
    """µs per call of each NumPy function, its pullback.numpy wrapper and a pass-through
    Python wrapper (the reference: `passthrough`), on small plain arrays. Samples of
    `number` calls of the three in turn (interleaved), timed in this thread's CPU time (a
    preempted sample does not count the other processes' time); per round, the median of
    `samples` samples of each, and of each sample's difference to NumPy's; the least of each
    over the rounds (drift and cache contention only add). The load average is noted."""
    np.ones(2_000_000).sum()
    out = {"load average (1 min)": os.getloadavg()[0]}
    for label, numpy_fn, pullback_fn, args in wrapper_cases():
        np.testing.assert_array_equal(pullback_fn(*args), numpy_fn(*args))
        timers = [timeit.Timer(lambda f=f: f(*args), timer=time.thread_time)
                  for f in (numpy_fn, pullback_fn, passthrough(numpy_fn))]
        best = [math.inf] * 5
        for _ in range(rounds):
            times = [[], [], []]
            for _ in range(samples):
                for k, timer in enumerate(timers):
                    times[k].append(timer.timeit(number) / number * 1e6)
            medians = [float(np.median(t)) for t in times] + [
                float(np.median(np.subtract(times[k], times[0]))) for k in (1, 2)]
            best = [min(b, m) for b, m in zip(best, medians)]
        out[label] = dict(zip(("numpy", "pullback", "passthrough", "pullback overhead",
                               "passthrough overhead"), best))
    out["load average (1 min), after"] = os.getloadavg()[0]
    return out


# ------------------------------------------------------------------ driver

def run_part(part, source, python):
    """The part's figures with the pullback at `source`, in a process of its own; jit runs
    its NumPy code throughout (the fused tier, issue 12's: benchmarks/fused.py, is off:
    its background compile would count in the third call's memory and time)."""
    env = dict(os.environ, PULLBACK_FUSED="0")
    env["PYTHONPATH"] = source + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([python, __file__, "--part", part], env=env, capture_output=True,
                            text=True, cwd=source)
    if result.returncode:
        sys.exit(f"{part} failed with {source}:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(results, labels, loads, command):
    """Write benchmarks/results/jit_scale.md: a section for each part run."""
    lines = ["# jit at scale", "",
             f"Command: `{command}`; "
             f"machine: {os.cpu_count()} cores, shared (timings drift: compare columns of one run; "
             f"1-minute load average after each part: {', '.join(loads)}). "
             + ("Columns: " + ", ".join(labels) + "." if len(labels) > 1 else "")]
    for part in PARTS:
        if part in results[labels[-1]]:
            lines += [""] + globals()[f"{part}_section"](
                {label: r[part] for label, r in results.items()}, labels)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(HERE, "results", "jit_scale.md"), "w") as fh:
        fh.write(text)
    print(text)


def profile_section(profile, labels):
    lines = ["## Compile profile of jit (µs per staged equation)", "",
              "Staging, each pass (all rounds of `optimize` together), code generation and "
              "Python's `compile` of each variant, for jit(grad(chain)) at growing lengths and "
              "the LSTM gradient (2 layers, 256 characters, 14 symbols); CPU time. The "
              "interpreter runs a long program's first call (staging and interpreting, no "
              "passes or compile); the second call optimises and compiles.", ""]
    programs = list(next(iter(profile.values())))
    phases = []
    for data in profile.values():
        for entry in data.values():
            phases += [p for p in entry["times"] if p not in phases]
    header = "| phase | " + " | ".join(f"{p} ({label})" for p in programs for label in labels) + " |"
    lines += [header, "|---|" + "---:|" * (len(programs) * len(labels))]
    rows = [("equations staged", lambda e: f"{e['equations']}"),
            ("equations after passes", lambda e: f"{e['optimized']}")]
    rows += [(phase, lambda e, phase=phase: f"{e['times'].get(phase, 0.0) / e['equations'] * 1e6:.1f}")
             for phase in phases]
    rows.append(("total", lambda e: f"{sum(e['times'].values()) / e['equations'] * 1e6:.1f}"))
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(profile[label][p]) for p in programs
                                                 for label in labels) + " |")
    return lines


def first_section(first, labels):
    lines = ["## First calls (s)", "", "The first three calls of each jitted function, "
              "wall-clock and CPU time (on a shared machine the CPU time is the figure), and "
              "the eager gradient's.", "", "| call | " + " | ".join(labels) + " |",
              "|---|" + "---:|" * len(labels)]
    for key in next(iter(first.values())):
        cells = [first[label].get(key) for label in labels]
        fmt = "{:.2e}" if key.endswith("differ by") else "{:.2f}"
        lines.append(f"| {key} | " + " | ".join("-" if c is None else fmt.format(c)
                                                for c in cells) + " |")
    for label in labels:
        f = first[label]
        short, long, lstm_first = (f[f"{name}: call 1 (CPU)"] for name in
                                   ("chain 8000", "chain 16000", "lstm"))
        lines.append("")
        lines.append(f"- {label} (CPU time): jit(grad(chain 8000)) first call {short:.2f} s "
                     f"(floor < 1 s: {'met' if short < 1 else 'NOT met'}); doubling to "
                     f"16000 steps: x{long / short:.2f} (floor <= 2); LSTM "
                     f"gradient first call {lstm_first:.2f} s (floor < 10 s: "
                     f"{'met' if lstm_first < 10 else 'NOT met'}).")
    return lines


def memory_section(memory, labels):
    lines = ["## Peak memory of a steady-state call (MB, tracemalloc)", "",
              "RK4: n = 10^5, 10 steps, the gradient of the squared norm of y; MLP 256-512-512-10, "
              "batch 1,024; LSTM: 2 layers, 128 characters, 14 symbols.", "",
              "| problem | " + " | ".join(f"{k} ({label})" for k in ("eager f", "jit f", "eager grad",
                                                                    "jit grad") for label in labels)
              + " | jit f / eager f | jit grad / eager grad |",
              "|---|" + "---:|" * (4 * len(labels) + 2)]
    last = labels[-1]
    for problem in memory[last]:
        cells = [f"{memory[label][problem][k] / 1e6:.1f}" for k in ("eager f", "jit f", "eager grad",
                                                                       "jit grad") for label in labels]
        m = memory[last][problem]
        lines.append(f"| {problem} | " + " | ".join(cells)
                     + f" | {m['jit f'] / m['eager f']:.2f} (floor <= 1.1) "
                       f"| {m['jit grad'] / m['eager grad']:.2f} (floor <= 1) |")
    return lines


def steady_section(steady, labels):
    last = labels[-1]
    lines = ["## Steady state of jitted gradients (median µs per call)", "",
              "| problem | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for problem in steady[last]:
        lines.append(f"| {problem} | " + " | ".join(f"{steady[label][problem]:.1f}"
                                                    for label in labels) + " |")
    return lines


def wrappers_section(wrappers, labels):
    last = labels[-1]
    loads = ", ".join(f"{wrappers[label].get('load average (1 min)', math.nan):.1f} to "
                      f"{wrappers[label].get('load average (1 min), after', math.nan):.1f}"
                      for label in labels)
    lines = ["## pullback.numpy on plain arrays (µs per call, small arrays)", "",
             "Thread CPU time; the least over rounds of the median of 21 interleaved samples "
             "of 200 calls; overhead: the median of the samples' differences to NumPy's. "
             "Pass-through: `def wrapper(*args): return numpy_fn(*args)`, the cheapest Python "
             f"wrapper (the reference). Load average (1 min) during the part: {loads}.", "",
             "| call | NumPy | pass-through (overhead) | "
             + " | ".join(f"pullback.numpy ({label}) | overhead ({label})" for label in labels)
             + " |", "|---|---:|---:|" + "---:|---:|" * len(labels)]
    calls = [c for c in wrappers[last] if not c.startswith("load average")]
    overhead = {label: {c: w.get("pullback overhead", w["pullback"] - w["numpy"])
                        for c, w in wrappers[label].items() if c in calls} for label in labels}
    for call in calls:
        w = wrappers[last][call]
        cells = []
        for label in labels:
            own = wrappers[label].get(call)
            cells += ["-", "-"] if own is None else [f"{own['pullback']:.2f}",
                                                     f"{overhead[label][call]:+.2f}"]
        lines.append(f"| {call} | {w['numpy']:.2f} | {w['passthrough']:.2f} "
                     f"({w['passthrough overhead']:+.2f}) | " + " | ".join(cells) + " |")
    worst = max(overhead[last].values())
    lines += ["", f"Largest overhead ({last}): {worst:.2f} µs (floor <= 0.3 µs: "
              f"{'met' if worst <= 0.3 else 'NOT met'})."]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--baseline", help="a checkout of pullback to compare with")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS,
                        help="the parts to run and report (default: all)")
    args = parser.parse_args()
    if args.part:
        print(json.dumps(globals()[f"part_{args.part}"]()))
        return
    sources = ([("before", os.path.abspath(args.baseline))] if args.baseline else []) \
        + [("after" if args.baseline else "pullback", ROOT)]
    results = {label: {} for label, _ in sources}
    loads = []
    for part in args.parts:
        for label, source in sources:
            print(f"{part} ({label}) ...", file=sys.stderr, flush=True)
            results[label][part] = run_part(part, source, args.python)
        loads.append(f"{part} {os.getloadavg()[0]:.1f}")
    report(results, [label for label, _ in sources], loads,
           "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]))


if __name__ == "__main__":
    main()
