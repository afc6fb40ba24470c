"""Dask benchmark: the chained Rosenbrock gradient on a local cluster against NumPy.

Floors (issue 13): at n = 10^7 in chunks of 10^6 on 2 worker processes, the Dask gradient
within 3x of pullback on NumPy, and each worker's peak memory below a quarter of the NumPy
run's; the extended Rosenbrock HVP at n = 10^8 completes with each worker held to 2 GB.

    python benchmarks/dask_cluster.py            # needs pip install -e ".[dask]"

Each measurement runs in its own process and cluster. Memory is the growth of the peak
resident set (ru_maxrss) over the process's own after start-up (NumPy: after imports, so
it counts x and the gradient; workers: before x is scattered to them, so it counts their
share of x, received by deserialising, and whatever the gradient's ending makes them hold;
the growth on receiving x alone is shown too). The gradient ends three ways (`ENDINGS`):
kept on the cluster in its chunks (persisted, as an optimiser running there keeps it),
gathered into the client chunk by chunk, or by `.compute()`, whose final task (Dask's
`finalize`, the same for any Dask array) joins every chunk on one worker and ships the
whole array to the client: that worker then holds the whole gradient and its join besides
its share of x, whatever computed the chunks: x itself, ending the same three ways with
no derivative computed, measures what the ending costs alone. pullback's grad and
`jit(grad)` (both one task per chunk: ir/chunked.py) and the hand-written dask.array
gradient are measured the same three ways, and `jit(grad)` on NumPy too. Each timed call starts once the cluster holds only x. The threaded rows run 2 worker threads in one process: the
cost of moving chunks between processes, by difference. Times are medians of 3 calls; the
Dask time covers building the graph, computing it and the ending. Writes
benchmarks/results/dask.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eager import _env, blas_kernel, cpu_busy_fraction, write_results  # noqa: E402
sys.path.remove(HERE)            # its sparse.py, jit.py ... would shadow libraries of those names


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chained_rosenbrock(x):
    import numpy as np
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def hand_written_dask_gradient(x):
    """The chained Rosenbrock gradient written by hand with dask.array: the reference for
    what Dask itself costs on the same data and cluster."""
    import dask.array as da
    d = x[1:] - x[:-1] ** 2
    inner = -400.0 * d * x[:-1] - 2.0 * (1.0 - x[:-1])
    return (da.concatenate([inner, da.zeros(1, chunks=1)])
            + da.concatenate([da.zeros(1, chunks=1), 200.0 * d]))


def gather_by_chunks(client, array):
    """A 1-d Dask array computed on the cluster and gathered into the client chunk by chunk,
    joined there: no worker holds more than its own chunks of it."""
    import numpy as np
    return np.concatenate(client.gather(client.compute(list(array.to_delayed().ravel()))))


def _median_seconds(fn, calls=3, settle=lambda: None):
    """The median time of `calls` calls of fn, each after `settle()`."""
    times = []
    for _ in range(calls):
        settle()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[calls // 2]


def _holding_only(client, array):
    """Wait until the cluster's workers hold nothing but `array`'s chunks: a result the
    last call left (released asynchronously) would let the next call of a graph with the
    same keys (jit's are the same each call) skip its work."""
    from dask.core import flatten
    keep = {str(key) for key in flatten(array.__dask_keys__())}
    while any(str(key) not in keep for keys in client.has_what().values() for key in keys):
        time.sleep(0.01)


def run_numpy(n, jitted=False):
    import numpy as np
    import pullback
    before = peak_rss_mb()
    x = np.random.default_rng(0).uniform(0.5, 1.5, n)
    gradient = pullback.grad(chained_rosenbrock)
    gradient = pullback.jit(gradient) if jitted else gradient
    seconds = _median_seconds(lambda: gradient(x))
    return {"seconds": seconds, "memory_mb": peak_rss_mb() - before,
            "checksum": float(np.sum(gradient(x)[::997]))}


ENDINGS = {"persist": "kept on the cluster (persisted)",
           "chunks": "gathered into the client chunk by chunk",
           "compute": "`.compute()`"}


GRADIENTS = {"eager": "pullback on Dask, gradient",
             "jit": "pullback on Dask, `jit(grad)`",
             "hand": "hand-written gradient in dask.array",
             "none": "x itself, no derivative (the ending alone)"}


def run_dask(n, chunk, workers, how="eager", processes=True, ending="compute"):
    """The gradient on a LocalCluster of `workers` worker processes (threads in the client's
    process when not `processes`: no transfers between processes, and no memory of their own
    to measure), ending as `ending` says (`ENDINGS`): kept on the cluster in its chunks, as
    an optimiser running there keeps it; gathered into the client chunk by chunk; or by
    `.compute()`, whose final task (Dask's `finalize`) joins every chunk on one worker.
    `how` (`GRADIENTS`): pullback's grad, its jit (both one task per chunk: ir/chunked.py),
    the hand-written dask.array gradient, or x itself (what the ending costs alone)."""
    import dask.array as da
    import numpy as np
    from dask.distributed import Client, LocalCluster, wait
    import pullback
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("pullback"))                  # imports before the baseline
        before = client.run(peak_rss_mb)
        x = client.persist(da.from_array(np.random.default_rng(0).uniform(0.5, 1.5, n),
                                         chunks=chunk))
        wait(x)
        loaded = client.run(peak_rss_mb)
        gradient = {"eager": pullback.grad(chained_rosenbrock),
                    "jit": pullback.jit(pullback.grad(chained_rosenbrock)),
                    "hand": hand_written_dask_gradient, "none": lambda x: x}[how]

        def persisted():
            kept = client.persist(gradient(x))
            wait(kept)
            return kept
        run = {"persist": persisted, "chunks": lambda: gather_by_chunks(client, gradient(x)),
               "compute": lambda: gradient(x).compute()}[ending]
        seconds = _median_seconds(run, settle=lambda: _holding_only(client, x))
        after = client.run(peak_rss_mb)
        value = gather_by_chunks(client, persisted()) if ending == "persist" else run()
    return {"seconds": seconds, "memory_mb": max(after[w] - before[w] for w in after),
            "x_mb": max(loaded[w] - before[w] for w in after),
            "checksum": float(np.sum(np.asarray(value)[::997]))}


def run_hvp(n, chunk, workers, memory_limit):
    from dask.distributed import Client, LocalCluster
    import dask.array as da
    import pullback
    from pullback.demo import _rosenbrock
    with LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("pullback"))
        before = client.run(peak_rss_mb)
        random = da.random.default_rng(0)
        x = random.uniform(0.5, 1.5, n, chunks=chunk)
        v = random.standard_normal(n, chunks=chunk)
        start = time.perf_counter()
        norm = float(client.compute(da.linalg.norm(pullback.hvp(_rosenbrock, x, v)), sync=True))
        seconds = time.perf_counter() - start
        after = client.run(peak_rss_mb)
    return {"seconds": seconds, "memory_mb": max(after[w] - before[w] for w in after),
            "norm": norm}


def in_process(task, *args):
    """Run one measurement in a fresh process; its result as a dict. benchmarks/ leaves
    sys.path before the cluster starts (its sparse.py would shadow a library in the
    workers), so this module's functions travel to the workers by value."""
    code = (f"import json, sys; sys.path.insert(0, {HERE!r}); import cloudpickle, dask_cluster; "
            f"sys.path.remove({HERE!r}); cloudpickle.register_pickle_by_value(dask_cluster); "
            f"print(json.dumps(dask_cluster.{task}(*{args!r})))")
    run = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True)
    if run.returncode:
        raise SystemExit(f"{task} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10**7)
    parser.add_argument("--chunk", type=int, default=10**6)
    parser.add_argument("--hvp-n", type=int, default=10**8)
    args = parser.parse_args()
    busy, load = cpu_busy_fraction(), os.getloadavg()
    numpy_run = in_process("run_numpy", args.n)
    numpy_jit = in_process("run_numpy", args.n, True)
    runs = {(ending, how): in_process("run_dask", args.n, args.chunk, 2, how, True, ending)
            for ending in ENDINGS for how in GRADIENTS}
    threaded = {how: in_process("run_dask", args.n, args.chunk, 2, how, False)
                for how in GRADIENTS if how != "none"}
    hvp_run = in_process("run_hvp", args.hvp_n, 5 * 10**6, 2, "2GB")
    same = all(abs(numpy_run["checksum"] - run["checksum"]) <= 1e-9 * abs(numpy_run["checksum"])
               for run in [numpy_jit] + [run for (_, how), run in runs.items() if how != "none"]
               + [run for how, run in threaded.items() if how != "none"])
    import dask
    rows = "\n".join(
        f"| {GRADIENTS[how]}, {ENDINGS[ending]} | {args.n:,} | {args.chunk:,} | 2 | "
        f"{run['seconds']:.3f} | {run['memory_mb']:,.0f} per worker (max; {run['x_mb']:,.0f} "
        "on receiving x) |" for (ending, how), run in runs.items())
    rows += "".join(
        f"\n| *threads, not processes:* {GRADIENTS[how]}, `.compute()` | {args.n:,} | "
        f"{args.chunk:,} | 2 threads | {run['seconds']:.3f} | (one process) |"
        for how, run in threaded.items())

    def ratio(key, how, e, base=numpy_run):
        """A Dask run's figure over a NumPy run's."""
        return runs[e, how][key] / base[key]

    floors = "\n".join(
        f"  - {ENDINGS[e]}: " + ", ".join(f"{GRADIENTS[how].removesuffix(', gradient')} "
                                          f"{ratio('memory_mb', how, e):.2f}" for how in GRADIENTS)
        + f" (`jit(grad)` per the jitted NumPy run's peak: "
          f"{ratio('memory_mb', 'jit', e, numpy_jit):.2f})" for e in ENDINGS)
    times = "; ".join(f"{ENDINGS[e]}: " + ", ".join(
        f"{GRADIENTS[how].removesuffix(', gradient')} {ratio('seconds', how, e):.2f}"
        for how in GRADIENTS) for e in ENDINGS)
    threads = ", ".join(f"{GRADIENTS[how].removesuffix(', gradient')} "
                        f"{threaded[how]['seconds'] / numpy_run['seconds']:.2f}"
                        for how in threaded)
    text = f"""# Dask: gradients and HVPs on a local cluster against NumPy

Command: `python benchmarks/dask_cluster.py{" ".join([""] + sys.argv[1:])}`. Machine: {os.cpu_count()} cores; BLAS: {blas_kernel()};
dask {dask.__version__}; CPU use by other processes before the run: {busy:.0%}; load average {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}.
Each row runs in a fresh process (and cluster): memory is the growth of each worker's peak
resident set over its own before x arrives.

| run | n | chunks | workers | seconds (median of 3) | peak memory growth (MB) |
|---|---:|---:|---:|---:|---:|
| pullback on NumPy, gradient | {args.n:,} | - | - | {numpy_run['seconds']:.3f} | {numpy_run['memory_mb']:,.0f} |
| pullback on NumPy, `jit(grad)` | {args.n:,} | - | - | {numpy_jit['seconds']:.3f} | {numpy_jit['memory_mb']:,.0f} |
{rows}
| pullback on Dask, extended Rosenbrock HVP, 2 GB per worker | {args.hvp_n:,} | {5 * 10**6:,} | 2 | {hvp_run['seconds']:.1f} (one call) | {hvp_run['memory_mb']:,.0f} per worker (max) |

Gradients agree with NumPy's (checksum of every 997th entry): {same}. HVP norm: {hvp_run['norm']:.6e}.

## Floors

- Dask gradient time / pullback's eager gradient on NumPy (floor: at most 3), by how the gradient ends: {times}. With 2 threads in one process instead of 2 worker processes (no transfers between processes), `.compute()`: {threads}.
- Dask worker peak memory / the eager NumPy run's (floor: below 0.25), by how the gradient ends:
{floors}

  `.compute()` ends every Dask array's graph in Dask's own `finalize` task, which joins all
  the chunks on one worker before sending the array to the client: that worker then holds
  the whole gradient and its join, whoever computed the chunks (pullback adds nothing to
  that task; the hand-written gradient pays it alike, and `.compute()` of x itself, with no
  derivative at all, peaks at {ratio('memory_mb', 'none', 'compute'):.2f} of the NumPy run's). Kept on the cluster, as an optimiser
  running there keeps it, or gathered chunk by chunk, no worker holds more than its share.
- n = {args.hvp_n:,} HVP with each worker held to 2 GB: completed in {hvp_run['seconds']:.0f} s.
"""
    write_results("dask.md", text)


if __name__ == "__main__":
    main()
