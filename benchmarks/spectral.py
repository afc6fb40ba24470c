"""FFT and complex benchmark: gradients of a spectral loss and of a complex matrix function.

    python benchmarks/spectral.py --python /path/to/peers/venv/bin/python

Problems (issue 10's benchmark):
  - spectral loss sum(|rfft(x) * H|^2), x real of length 2^16, H a fixed complex filter;
  - complex matrix function sum(|Z @ Z|^2) of a complex 128 x 128 Z (a real loss of a
    complex input: its gradient under JAX's convention).
pullback eager and jit, JAX jit (x64) and torch (CPU), each in its own process. Every
gradient is checked against pullback's before it is timed (torch returns the conjugate of
JAX's convention for complex inputs; it is compared as such). Writes
benchmarks/results/spectral.md (medians in microseconds).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eager import _env, blas_kernel, cpu_busy_fraction, median_time, write_results  # noqa: E402
sys.path.remove(HERE)

N = 2 ** 16
M = 128
LIBRARIES = ["pullback", "pullback-jit", "jax-jit", "torch"]


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N)
    h = rng.standard_normal(N // 2 + 1) + 1j * rng.standard_normal(N // 2 + 1)
    z = (rng.standard_normal((M, M)) + 1j * rng.standard_normal((M, M))) / np.sqrt(M)
    return x, h, z


def gradients(lib):
    """{problem: (gradient function, argument)} for one library."""
    x, h, z = data()
    if lib.startswith("pullback"):
        import pullback
        spectral = pullback.grad(lambda x: np.sum(np.abs(np.fft.rfft(x) * h) ** 2))
        matrix = pullback.grad(lambda z: np.sum(np.abs(z @ z) ** 2))
        if lib == "pullback-jit":
            spectral, matrix = pullback.jit(spectral), pullback.jit(matrix)
        return {"spectral": (spectral, x), "matrix": (matrix, z)}
    if lib == "jax-jit":
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        hj = jnp.asarray(h)
        spectral = jax.jit(jax.grad(lambda x: jnp.sum(jnp.abs(jnp.fft.rfft(x) * hj) ** 2)))
        matrix = jax.jit(jax.grad(lambda z: jnp.sum(jnp.abs(z @ z) ** 2)))
        block = lambda f: lambda a: f(a).block_until_ready()              # noqa: E731
        return {"spectral": (block(spectral), jnp.asarray(x)),
                "matrix": (block(matrix), jnp.asarray(z))}
    import torch
    torch.set_num_threads(os.cpu_count())
    ht = torch.as_tensor(h)

    def torch_grad(loss):
        def g(a):
            a = a.detach().requires_grad_(True)
            loss(a).backward()
            return a.grad
        return g
    spectral = torch_grad(lambda x: torch.sum(torch.abs(torch.fft.rfft(x) * ht) ** 2))
    matrix = torch_grad(lambda z: torch.sum(torch.abs(z @ z) ** 2))
    return {"spectral": (spectral, torch.as_tensor(x)), "matrix": (matrix, torch.as_tensor(z))}


def run_library(lib):
    import pullback
    reference = gradients("pullback")
    results = {}
    for name, (g, arg) in gradients(lib).items():
        value = np.asarray(g(arg))
        expected = reference[name][0](reference[name][1])
        if lib == "torch" and np.iscomplexobj(expected):
            expected = np.conj(expected)              # torch's convention for complex inputs
        error = float(np.max(np.abs(value - expected)) / np.max(np.abs(expected)))
        if error > 1e-10:
            results[name] = {"error": error}
            continue
        results[name] = {"us": median_time(g, arg) * 1e6, "error": error}
    return {"results": results, "blas": blas_kernel(), "pullback": pullback.__name__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with the peers")
    parser.add_argument("--library", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library:
        print(json.dumps(run_library(args.library)))
        return
    busy = cpu_busy_fraction()
    runs = {}
    for lib in LIBRARIES:
        python = sys.executable if lib.startswith("pullback") else args.python
        out = subprocess.run([python, __file__, "--library", lib], env=_env(),
                             capture_output=True, text=True)
        runs[lib] = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                     else {"failed": out.stderr.strip().splitlines()[-1:]})
    rows = []
    for name, label in (("spectral", "spectral loss sum(abs(rfft(x) * H)**2), n = 2^16"),
                        ("matrix", f"sum(abs(Z @ Z)**2), complex {M} x {M}")):
        cells = []
        for lib in LIBRARIES:
            r = runs[lib].get("results", {}).get(name)
            cells.append("failed" if r is None else f"{r['us']:,.0f}" if "us" in r
                         else f"wrong ({r['error']:.1e})")
        jit, jax = (runs[lib].get("results", {}).get(name, {}).get("us")
                    for lib in ("pullback-jit", "jax-jit"))
        ratio = f"{jit / jax:.2f}" if jit and jax else "-"
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    text = f"""# FFT and complex gradients (microseconds, medians)

Command: `python benchmarks/spectral.py --python {args.python}`. Machine: {os.cpu_count()} cores;
BLAS: {runs['pullback'].get('blas', '?')} (pullback), {runs['jax-jit'].get('blas', '?')} (JAX);
CPU use by other processes before the run: {busy:.0%}. Each library in its own process;
gradients checked against pullback's (max relative difference <= 1e-10) before timing.

| gradient | pullback eager | pullback jit | JAX jit | torch | pullback jit / JAX jit (floor 1.5) |
|---|---:|---:|---:|---:|---:|
""" + "\n".join(rows) + "\n"
    failed = {lib: r["failed"] for lib, r in runs.items() if "failed" in r}
    if failed:
        text += f"\nFailed libraries: {failed}\n"
    write_results("spectral.md", text)


if __name__ == "__main__":
    main()
