"""CuPy benchmark: Rosenbrock gradient and HVP at n = 10^7 on one GPU, pullback against JAX
and torch on the same GPU, side by side.

Floor (issue 13): pullback on CuPy in jit within 2x of JAX on the GPU (jit).

    python benchmarks/cupy_gpu.py --python /path/to/venv/with/jax-cuda/and/torch-cuda/bin/python

Each library runs in its own process (its own GPU memory pool). Times are medians of 7
calls after 2 warm-up calls (JAX and torch compile or plan on their first calls), each call
ended by a device synchronisation, so they count the GPU work, not only its launch. A
library that is not installed, or that sees no GPU, is reported as such; without CuPy and a
GPU the script says so and exits. Writes benchmarks/results/cupy_gpu.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rosenbrock(np_):
    """The chained Rosenbrock function written with the namespace `np_`."""
    def f(x):
        return np_.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return f


def median_seconds(fn, synchronize, calls=7, warmup=2):
    for _ in range(warmup):
        fn()
        synchronize()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[calls // 2]


def run_pullback(n):
    import cupy
    import numpy as np
    import pullback as pb
    f = rosenbrock(np)
    x = cupy.random.default_rng(0).uniform(0.5, 1.5, n)
    v = cupy.random.default_rng(1).standard_normal(n)
    sync = cupy.cuda.Device().synchronize
    jit_grad, jit_hvp = pb.jit(pb.grad(f)), pb.jit(lambda x, v: pb.hvp(f, x, v))
    check = float(cupy.sum(pb.grad(f)(x)[::997]))
    return {"grad": median_seconds(lambda: pb.grad(f)(x), sync),
            "hvp": median_seconds(lambda: pb.hvp(f, x, v), sync),
            "jit grad": median_seconds(lambda: jit_grad(x), sync),
            "jit hvp": median_seconds(lambda: jit_hvp(x, v), sync),
            "checksum": check, "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()}


def run_jax(n):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    if jax.default_backend() != "gpu":
        return {"missing": f"JAX runs on {jax.default_backend()}, not a GPU"}
    f = rosenbrock(jnp)
    x = jax.random.uniform(jax.random.key(0), (n,), jnp.float64, 0.5, 1.5)
    v = jax.random.normal(jax.random.key(1), (n,), jnp.float64)
    grad = jax.jit(jax.grad(f))
    hvp = jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])
    return {"jit grad": median_seconds(lambda: grad(x).block_until_ready(), lambda: None),
            "jit hvp": median_seconds(lambda: hvp(x, v).block_until_ready(), lambda: None)}


def run_torch(n):
    import torch
    if not torch.cuda.is_available():
        return {"missing": "torch sees no CUDA device"}
    f = rosenbrock(torch)
    generator = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(n, dtype=torch.float64, device="cuda", generator=generator) + 0.5
    v = torch.randn(n, dtype=torch.float64, device="cuda", generator=generator)

    def grad():
        y = x.detach().requires_grad_()
        return torch.autograd.grad(f(y), y)[0]

    def hvp():
        y = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(f(y), y, create_graph=True)
        return torch.autograd.grad(g, y, v)[0]
    return {"grad": median_seconds(grad, torch.cuda.synchronize),
            "hvp": median_seconds(hvp, torch.cuda.synchronize)}


def in_process(python, task, n):
    """One library's measurements in a fresh process: a dict, or {"missing": why}."""
    code = (f"import json, sys; sys.path.insert(0, {HERE!r}); import cupy_gpu; "
            f"print(json.dumps(cupy_gpu.{task}({n})))")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    if run.returncode:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return {"missing": f"failed: {last}"}
    return json.loads(run.stdout.strip().splitlines()[-1])


def gpu_missing():
    """Why the pullback side cannot run here (no CuPy, or no GPU it can use), or None."""
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        cupy.zeros(1).sum()
    except Exception as error:              # ImportError, CUDARuntimeError, ...
        return f"{type(error).__name__}: {error}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10**7)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with JAX (CUDA) and torch (CUDA) installed")
    args = parser.parse_args()
    why = gpu_missing()
    if why is not None:
        raise SystemExit(f"cupy_gpu.py needs CuPy and an NVIDIA GPU ({why}); nothing was "
                         "measured. Install pullback[cuda] on a GPU machine and run it there.")
    ours = in_process(sys.executable, "run_pullback", args.n)
    jax = in_process(args.python, "run_jax", args.n)
    torch = in_process(args.python, "run_torch", args.n)

    def cell(run, key):
        return f"{run[key] * 1e3:.2f}" if key in run else run.get("missing", "-")
    rows = [("pullback on CuPy, eager", ours, "grad", "hvp"),
            ("pullback on CuPy, jit", ours, "jit grad", "jit hvp"),
            ("JAX on the GPU, jit", jax, "jit grad", "jit hvp"),
            ("torch CUDA, eager", torch, "grad", "hvp")]
    table = "\n".join(f"| {name} | {cell(run, g)} | {cell(run, h)} |" for name, run, g, h in rows)
    ratio = (f"{ours['jit grad'] / jax['jit grad']:.2f} (gradient), "
             f"{ours['jit hvp'] / jax['jit hvp']:.2f} (HVP)" if "jit grad" in jax
             else f"not measured ({jax.get('missing')})")
    text = f"""# CuPy: Rosenbrock gradient and HVP on a GPU against JAX and torch

Command: `python benchmarks/cupy_gpu.py{" ".join([""] + sys.argv[1:])}`. GPU: {ours.get('device', '?')}; n = {args.n:,}, float64.

| run | gradient (ms, median of 7) | HVP (ms, median of 7) |
|---|---:|---:|
{table}

Floor: pullback jit / JAX jit at most 2: {ratio}.
"""
    with open(os.path.join(HERE, "results", "cupy_gpu.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
