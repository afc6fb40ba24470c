"""Issue 12's side-by-side table from one run: pullback eager, pullback jit (its NumPy code
and its fused Numba tier), JAX jit, torch, HIPS autograd and hand-written NumPy derivatives.

Rows (the issue's): extended Rosenbrock n = 1e5 gradient and HVP, 100 small elementwise
ops (length 10) gradient, Rosenbrock n = 10 gradient, the MLP (8,705 parameters) gradient
and HVP, logistic regression 1000 x 100 gradient, HVP and Hessian, the dense Hessian of
Rosenbrock at n = 1,000. Nothing is defined here: the eager columns (pullback, torch,
autograd, hand-written NumPy) are eager.py's tasks, the jit columns (pullback's tiers, JAX)
fused.py's builders on second_order.py's functions and data.

Protocol (../shared/BENCHMARKING.md, but the libraries' samples interleaved): one process
per library, all of them alive at once. Each, started in turn while the others wait idle,
warms the allocator, checks every value against pullback eager's, times the first call and
warms up; then, row by row, the driver asks the processes in turn for one sample each (the
mean time of >= 0.2 s of back-to-back calls, wall clock), SAMPLES rounds, the order rotating
between rounds and a pause before each sample (BLAS's idle threads spin ~0.1 s after a call:
the pause keeps one library's spinning out of the next one's sample). Rounds go on until
SAMPLES of them ran with the other processes' share of the CPUs below CONTENDED during each
sample (at most 3 * SAMPLES rounds), and the SAMPLES least contended rounds are kept: a
contended moment costs libraries very differently (with other processes holding the CPUs
at 50-75%, OpenBLAS's two threads, spin-waiting for each other, ran pullback's MLP rows 3 to
20 times slower than idle, torch's Rosenbrock gradient 50 times, JAX's within 1.3 times), so
it must not decide a row. A cell is the median of its kept samples; the whole run is repeated
(`--passes`, fresh processes) and the best pass of each cell kept, and the table gives each
pass's jit / JAX ratio beside the best. Why interleaved: this host's speed is bimodal for
minutes at a time (hand NumPy's chain gradient 135 or 230 µs), and with the libraries
measured one process after another (the previous protocol), the library measured in a slow
stretch lost its row: jit / JAX read <= 0.90 on every row in one idle run and up to 1.26 in
the next. Interleaved, a row's samples of every library lie within a minute of each other
(the report gives the longest span), so the libraries meet the same stretches.
pullback jit's two columns share one process (the tier that calls first alternating between
passes): measured in two processes, BLAS-bound rows differed by up to a third between the
columns even where the fused tier installs no kernel and both run the same function. JAX runs
in x64 with synchronous dispatch; torch with its default threads and the faster of
torch.autograd and torch.func per task (eager.py's candidates). The fused tier is timed once
installed (Numba compiles in the background; its disk cache serves later passes). BLAS threads
are left as the machine has them.

    python benchmarks/speed_table.py --python /work/peers/bin/python

Writes benchmarks/results/speed_table.md (7.4 minutes a pass measured where every round was
contended, so that each row took 3 * SAMPLES rounds; about a third of that idle).
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
sys.path.insert(0, HERE)
import eager  # noqa: E402
import fused  # noqa: E402
import second_order  # noqa: E402

# (row, eager.py's task (problem, task), jit task: (function, builder, data keys))
ROWS = [
    ("extended Rosenbrock n = 1e5, gradient", ("rosenbrock n=100000", "grad"),
     ("rosenbrock", "grad", ("x100000",))),
    ("extended Rosenbrock n = 1e5, HVP", ("rosenbrock n=100000", "hvp"),
     ("rosenbrock", "hvp", ("x100000", "v100000"))),
    ("100 elementwise ops (length 10), gradient", ("chain 100 ops", "grad"),
     ("chain", "grad", ("chain_x",))),
    ("Rosenbrock n = 10, gradient", ("rosenbrock n=10", "grad"), ("rosenbrock", "grad", ("x10",))),
    ("MLP (8,705 parameters), gradient", ("MLP 8,705 params", "grad"), ("mlp", "grad", ("mlp_p",))),
    ("MLP (8,705 parameters), HVP", ("MLP 8,705 params", "hvp"),
     ("mlp", "hvp", ("mlp_p", "mlp_v"))),
    ("logistic 1000 x 100, gradient", ("logistic 1000x100", "grad"),
     ("logistic", "grad", ("log_w",))),
    ("logistic 1000 x 100, HVP", ("logistic 1000x100", "hvp"),
     ("logistic", "hvp", ("log_w", "log_v"))),
    ("logistic 1000 x 100, Hessian", ("logistic 1000x100", "hessian"),
     ("logistic", "hessian", ("log_w",))),
    ("dense Hessian of Rosenbrock n = 1,000", ("rosenbrock n=1000", "hessian"),
     ("rosenbrock", "hessian", ("x1000",))),
]
QUICK_ROWS = [ROWS[2], ROWS[3]]         # `--quick`: the two small problems, short samples
# library -> (its name among eager.py's candidates, or None for a jit column)
LIBRARIES = {"pullback eager": "pullback", "pullback jit (NumPy)": None,
             "pullback jit (fused)": None, "JAX jit": None, "torch": "torch",
             "autograd": "autograd", "hand NumPy": "numpy"}
PEERS = ("JAX jit", "torch", "autograd")        # run by --python
NUMPY, FUSED = "pullback jit (NumPy)", "pullback jit (fused)"
JIT_TIERS = f"{NUMPY},{FUSED}"                   # both pullback jit columns: one process
TOLERANCE = 1e-8
SAMPLES, SECONDS = 5, 0.2
PAUSE = 0.15            # seconds before each sample (see the module docstring)
CONTENDED = 0.1         # other processes' share of the CPUs that makes a round contended


# ------------------------------------------------------------------ each library's calls

def eager_calls(name, rows, threads=None):
    """{row: zero-argument call} of a library among eager.py's task candidates."""
    libs = [] if name == "numpy" else [name]
    if name == "torch":
        import torch
        eager.THREADS[0] = threads or torch.get_num_threads()   # eager.py pins 1 by default
    found = {(problem, task): candidates for problem, task, candidates in eager.tasks(libs)}
    return {row: eager.pick_fastest(found[key][name]) for row, key, _ in rows
            if name in found.get(key, {})}


def jit_calls(lib, rows):
    """{row: (jitted function, arguments)} of a jit column."""
    data = fused.numpy_data()
    if lib == "JAX jit":
        import jax.numpy as jnp
        builders, M = fused.jax_builders(), jnp
        data = {k: jnp.asarray(v) for k, v in data.items()}
    else:
        builders, M = fused.pullback_builders(), np
    functions = problem_functions(M, data)
    return {row: (builders[task](functions[f]), tuple(data[k] for k in keys))
            for row, _, (f, task, keys) in rows}


def problem_functions(M, data):
    """The jit rows' functions in namespace M: second_order.py's and eager.py's chain."""
    rosenbrock, mlp, logistic, _ = second_order.functions(M, data)
    return {"rosenbrock": rosenbrock, "mlp": mlp, "logistic": logistic, "chain": eager.chain(M)}


def references(rows):
    """pullback eager's value of every row, for the eager columns' inputs and the jit
    columns' (eager.py draws its own n = 10 point)."""
    import pullback as pb
    out = {f"eager|{row}": eager.to_numpy(call()) for row, call in
           eager_calls("pullback", rows).items()}
    data = fused.numpy_data()
    functions = problem_functions(np, data)
    derivative = {"grad": lambda f, x: pb.grad(f)(x), "hvp": pb.hvp,
                  "hessian": lambda f, x: pb.hessian(f)(x)}
    for row, _, (f, task, keys) in rows:
        out[f"jit|{row}"] = np.asarray(derivative[task](functions[f], *(data[k] for k in keys)))
    return out


# ------------------------------------------------------------------ one library's process

def prepare(lib, rows, reference, threads, first):
    """({column: {row: zero-argument call}}, {column: {row: entry}}) for one library's
    process: each row's value checked, its first call timed (the fused tier's kernels
    counted), the call warmed up. JIT_TIERS hosts both pullback jit columns, the tier that
    calls first given by `first` (0 or 1, the pass's parity)."""
    if lib == JIT_TIERS:
        columns = (NUMPY, FUSED) if first == 0 else (FUSED, NUMPY)
        made = {column: jit_calls(column, rows) for column in columns}
    else:
        name = LIBRARIES[lib]
        made = {lib: {row: (call, ()) for row, call in eager_calls(name, rows, threads).items()}
                if name else jit_calls(lib, rows)}
    calls, entries = {column: {} for column in made}, {column: {} for column in made}
    kind = "jit" if lib == JIT_TIERS or not LIBRARIES[lib] else "eager"
    for row, _, _ in rows:
        for column in made:
            if row not in made[column]:
                continue
            fn, args = made[column][row]
            if lib == JIT_TIERS:
                os.environ["PULLBACK_FUSED"] = "1" if column == FUSED else "0"   # read at call 1
            start = time.perf_counter()
            value = fn(*args)
            entry = entries[column][row] = {"first_ms": (time.perf_counter() - start) * 1e3}
            if column == FUSED:
                entry["kernels"] = fused_kernels(fn, args)
                value = fn(*args)
            error = second_order.rel_err(eager.to_numpy(value), reference[f"{kind}|{row}"])
            if error > TOLERANCE:
                entries[column][row] = {"wrong": error}
                continue
            for _ in range(3):
                fn(*args)
            calls[column][row] = (lambda fn=fn, args=args: fn(*args))
    return calls, entries


def fused_kernels(fn, args):
    """Calls `fn` until its fused tier is installed; the number of kernels it runs."""
    for _ in range(5):
        fn(*args)
    fused.wait_for_fusing()
    return str(len(getattr(next(iter(fn.cache.values())).fast, "kernels", ())))


def serve(lib, rows, reference, threads, first):
    """One library's process: prepares its calls, writes their entries and its BLAS, then
    answers each [column, row] read from stdin with one sample of that call (µs per call
    and the other processes' share of the CPUs meanwhile). Replies go to the original
    stdout, one JSON line each; anything the libraries print goes to stderr."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    np.ones(2_000_000).sum()                    # warm the allocator
    calls, entries = prepare(lib, rows, np.load(reference), threads, first)

    def reply(message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()
    reply({"entries": entries, "blas": eager.blas_kernel(verbose=True)})
    for line in sys.stdin:
        column, row = json.loads(line)
        call = calls[column][row]
        before = second_order.cpu_ticks()
        seconds = eager.sample(lambda _: call(), None, SECONDS)
        reply({"us": seconds * 1e6,
               "others": second_order.others_share(before, second_order.cpu_ticks())})


# ------------------------------------------------------------------ driver

class Worker:
    """A library's process, started by `run_pass`; `ask` sends one request and reads the reply
    (None where the process died: the last line it wrote to stderr says why)."""

    def __init__(self, lib, command, env, scratch):
        self.lib, self.log = lib, tempfile.TemporaryFile("w+", dir=scratch)
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)

    def ask(self, request=None):
        if request is not None:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def why(self):
        self.log.seek(0)
        lines = self.log.read().strip().splitlines()
        return lines[-1] if lines else "failed"

    def close(self):
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


def run_pass(number, processes, rows, args, reference, scratch):
    """One pass: every library's process started and prepared in turn, then each row's
    samples taken round by round, one per column per round, the columns' order rotating.
    Returns ({(row, column): entry with the median µs}, {lib: why not run}, {lib: BLAS},
    the longest time in seconds from a row's first sample to its last)."""
    workers, entries, missing, blas, span = [], {}, {}, {}, 0.0
    for lib in processes:
        env = dict(eager._env(), PULLBACK_FUSED="1" if lib == FUSED else "0")
        if args.threads:
            env.update(dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                      "MKL_NUM_THREADS"), str(args.threads)))
        python = args.python if lib in PEERS else sys.executable
        print(f"{lib} ...", file=sys.stderr, flush=True)
        worker = Worker(lib, [python, __file__, "--library", lib, "--reference", reference,
                              "--first", str(number % 2)]
                        + ["--quick"] * args.quick + ["--rows", args.rows] * bool(args.rows)
                        + ["--threads", str(args.threads)] * bool(args.threads), env, scratch)
        ready = worker.ask()
        if ready is None:
            missing[lib] = worker.why()
            worker.close()
            continue
        workers.append(worker)
        blas[lib] = ready["blas"]
        for column, results in ready["entries"].items():
            for row, entry in results.items():
                entries[(row, column)] = dict(entry, samples=[], worker=worker)
    for row, _, _ in rows:
        columns = [column for (r, column), e in entries.items() if r == row and "wrong" not in e]
        start = time.perf_counter()
        for kept in sample_rounds(row, columns, entries, missing):
            for column, sample in kept.items():
                entries[(row, column)]["samples"].append(sample)
        span = max(span, time.perf_counter() - start)
    for worker in workers:
        worker.close()
    for entry in entries.values():
        samples = entry.pop("samples")
        entry.pop("worker")
        if samples:
            entry["us"] = float(np.median([s["us"] for s in samples]))
            entry["others"] = max(s["others"] for s in samples)
    return entries, missing, blas, span


def sample_rounds(row, columns, entries, missing):
    """Rounds of samples of `row`, one sample per column per round (the columns' order
    rotating), until SAMPLES rounds ran with the other processes' share of the CPUs below
    CONTENDED in each of their samples, or 3 * SAMPLES rounds ran; the SAMPLES least
    contended rounds, each {column: sample}. A library that dies is put in `missing`."""
    rounds = []
    while len(rounds) < 3 * SAMPLES and \
            sum(contention < CONTENDED for contention, _ in rounds) < SAMPLES:
        shift = len(rounds) % max(len(columns), 1)
        taken = {}
        for column in columns[shift:] + columns[:shift]:
            worker = entries[(row, column)]["worker"]
            if worker.lib in missing:
                continue
            time.sleep(PAUSE)
            sample = worker.ask([column, row])
            if sample is None:
                missing[worker.lib] = worker.why()
                continue
            taken[column] = sample
        rounds.append((max((s["others"] for s in taken.values()), default=0.0), taken))
    return [taken for _, taken in sorted(rounds, key=lambda r: r[0])[:SAMPLES]]


def main(argv=None):
    global SAMPLES, SECONDS, PAUSE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with JAX, torch and autograd (pullback is put on "
                             "its path)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="the two small problems, short samples (a smoke test)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help="comma-separated columns to run")
    parser.add_argument("--rows", help="comma-separated parts of row names: only the rows "
                        "naming one of them (e.g. 'logistic,HVP')")
    parser.add_argument("--threads", type=int,
                        help="threads of BLAS and torch in every process (default: the machine's "
                             "settings; 1 keeps spinning threads from measuring a loaded machine)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "speed_table.md"))
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = QUICK_ROWS if args.quick else ROWS
    if args.rows:
        rows = [r for r in rows if any(part in r[0] for part in args.rows.split(","))]
    if args.quick:
        SAMPLES, SECONDS, PAUSE = 3, 0.02, 0.0
    if args.library:
        serve(args.library, rows, args.reference, args.threads, args.first)
        return
    begin = time.perf_counter()
    libraries = [lib for lib in args.libraries.split(",") if lib]
    unknown = [lib for lib in libraries if lib not in LIBRARIES]
    if unknown or not rows:
        parser.error(f"unknown libraries {unknown}: the columns are {list(LIBRARIES)}"
                     if unknown else f"no row names any of {args.rows!r}")
    processes = [JIT_TIERS if lib == NUMPY and FUSED in libraries else lib
                 for lib in libraries if not (lib == FUSED and NUMPY in libraries)]
    best, ratios, missing, loads, blas, spans = {}, {}, {}, [], {}, []
    with tempfile.TemporaryDirectory() as scratch:
        reference = os.path.join(scratch, "reference.npz")
        np.savez(reference, **references(rows))
        for number in range(args.passes):
            loads.append(os.getloadavg()[0])
            entries, lost, kernels, span = run_pass(number, processes, rows, args, reference,
                                                    scratch)
            spans.append(span)
            missing.update(lost)
            blas.update(kernels)
            for row, _, _ in rows:
                mine, jax = entries.get((row, FUSED), {}), entries.get((row, "JAX jit"), {})
                if "us" in mine and "us" in jax:
                    ratios.setdefault(row, []).append(mine["us"] / jax["us"])
            for key, entry in entries.items():
                old = best.get(key, {})
                firsts = [e["first_ms"] for e in (old, entry) if "first_ms" in e]
                if not old or entry.get("us", np.inf) < old.get("us", np.inf):
                    best[key] = old = entry
                if firsts:
                    old["first_ms"] = min(firsts)
    text = report(rows, libraries, best, ratios, missing, loads, blas, max(spans), args,
                  time.perf_counter() - begin)
    with open(args.output, "w") as fh:
        fh.write(text)
    print(text)


def report(rows, libraries, best, ratios, missing, loads, blas, span, args, seconds):
    def us(row, lib):
        return best.get((row, lib), {}).get("us")

    def cell(row, lib):
        entry = best.get((row, lib), {})
        if "wrong" in entry:
            return f"wrong ({entry['wrong']:.1e})"
        return "-" if "us" not in entry else f"{entry['us']:.3g}" if entry["us"] < 1e3 \
            else f"{entry['us']:,.0f}"

    def ratio(row, a, b):
        return f"{us(row, a) / us(row, b):.2f}" if us(row, a) and us(row, b) else "-"

    others = [e["others"] for e in best.values() if "others" in e]
    lines = ["# Speed: pullback side by side with JAX, torch, autograd and hand-written NumPy", "",
             f"Command: `python benchmarks/speed_table.py --python {args.python}"
             + (" --quick" if args.quick else "")
             + (f" --threads {args.threads}" if args.threads else "")
             + (f' --rows "{args.rows}"' if args.rows else "")
             + (f' --libraries "{args.libraries}"' if args.libraries != ",".join(LIBRARIES)
                else "")
             + f"` ({args.passes} pass(es), "
             f"{seconds / 60:.1f} min). Machine: {os.cpu_count()} cores; "
             f"1-minute load average before each pass {min(loads):.1f} to "
             f"{max(loads):.1f}; other processes' share of the CPUs during the kept "
             f"measurements {min(others, default=0):.0%} to {max(others, default=0):.0%}. "
             "BLAS (threadpoolctl, in every process): " + "; ".join(
                 dict.fromkeys(kernel for kernels in blas.values()
                               for kernel in kernels.split(", ") if kernel)) + ".", "",
             f"Median µs per call (samples of >= {SECONDS} s, the libraries' taken in turn: "
             f"a row's samples, all libraries, within {span:.1f} s), best pass; float64. "
             "jit / JAX: pullback jit's fused tier (its steady state with Numba installed) over "
             "JAX jit; eager / torch: pullback eager over torch (eager.py's candidates, the faster "
             "of torch.autograd and torch.func; Hessians: torch.func.hessian). autograd: HIPS "
             "autograd; hand NumPy: eager.py's hand-written derivatives. "
             "Below 1: pullback faster; jit / JAX per pass: that ratio of each pass's medians.", "",
             "| task | " + " | ".join(libraries) + " | jit / JAX | eager / torch | "
             "jit / JAX per pass |", "|---|" + "---:|" * (len(libraries) + 3)]
    for row, _, _ in rows:
        lines.append(f"| {row} | " + " | ".join(cell(row, lib) for lib in libraries)
                     + f" | {ratio(row, 'pullback jit (fused)', 'JAX jit')} | "
                     f"{ratio(row, 'pullback eager', 'torch')} | "
                     + (", ".join(f"{r:.2f}" for r in ratios.get(row, ())) or "-") + " |")
    jit = [lib for lib in libraries if lib in ("pullback jit (NumPy)", "pullback jit (fused)",
                                               "JAX jit")]
    if jit:
        lines += ["", "First calls (ms; pullback: staging, passes and NumPy code, the fused tier "
                  "compiling later; JAX: trace and compile), best pass; fused kernels installed:",
                  "", "| task | " + " | ".join(jit) + " | kernels |",
                  "|---|" + "---:|" * (len(jit) + 1)]
        for row, _, _ in rows:
            firsts = [best.get((row, lib), {}).get("first_ms") for lib in jit]
            kernels = best.get((row, "pullback jit (fused)"), {}).get("kernels", "-")
            lines.append(f"| {row} | " + " | ".join("-" if f is None else f"{f:.1f}"
                                                    for f in firsts) + f" | {kernels} |")
    if missing:
        lines += ["", "Not run: " + "; ".join(f"{lib} ({why})" for lib, why in missing.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
