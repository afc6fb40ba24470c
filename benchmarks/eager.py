"""Eager-mode benchmark: pullback's gradients, HVPs and Hessians side by side with PyTorch's
(torch.autograd / torch.func), HIPS autograd and hand-written NumPy derivatives, and nested
derivatives (GradBench's saddle and particle problems) against autograd.

Every library runs in one process, task by task, interleaved: each round times every
library once (a sample of >= 0.1 s of back-to-back calls, the order rotating), and the
ratios reported are medians over rounds of the per-round ratios, so load from other
processes that drifts during the run affects every library alike. Values are checked
against pullback's before anything is timed.

    python benchmarks/eager.py --python /work/peers/bin/python      # torch, autograd there
    python benchmarks/eager.py --python /work/peers/bin/python --nested   # saddle, particle

Writes benchmarks/results/eager.md (medians in microseconds; ratios pullback / peer).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROUNDS = 7                # interleaved rounds per task
SAMPLE_S = 0.1            # seconds of back-to-back calls per sample
SADDLE_ROUNDS = 9        # (runs of a few hundredths of a second: a slow stretch of the host skews few)
PARTICLE_ROUNDS = 2       # (seconds per run)
THREADS = [1]             # threads of BLAS and torch (set by --threads)
# The process's CPU time: with one thread per library it is the work done, whatever other
# processes take of the machine (wall time on a loaded machine measures the load).
CLOCK = time.process_time
SADDLE_ETA = 0.25         # GradBench starts at 1e-5 (thousands more steps, same saddle point)
PARTICLE_ETA = 0.01       # (GradBench: 1e-5, which only adds steps)


# ------------------------------------------------------------------ problems

def rosenbrock(M):
    """The extended (chained) Rosenbrock function for a NumPy-like namespace M."""
    def f(x):
        return M.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return f


def chain(M):
    """A chain of 100 cheap elementwise operations, summed, for a namespace M."""
    def f(x):
        for _ in range(25):
            x = M.sin(x)
            x = x * 1.01
            x = M.tanh(x)
            x = x + 0.5
        return M.sum(x)
    return f


CHAIN_OPS = 101           # primitives bound by chain (100 and the sum)


# --------------------------------------------------------- hand-written NumPy

def rosenbrock_grad_numpy(x):
    a, b = x[:-1], x[1:]
    d = b - a * a
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * d - 2.0 * (1.0 - a)
    g[1:] += 200.0 * d
    return g


def rosenbrock_hessian_parts(x):
    a, b = x[:-1], x[1:]
    diag = np.zeros_like(x)
    diag[:-1] = 1200.0 * a * a - 400.0 * b + 2.0
    diag[1:] += 200.0
    return diag, -400.0 * a


def rosenbrock_hvp_numpy(x, v):
    diag, off = rosenbrock_hessian_parts(x)
    hv = diag * v
    hv[:-1] += off * v[1:]
    hv[1:] += off * v[:-1]
    return hv


def rosenbrock_hessian_numpy(x):
    diag, off = rosenbrock_hessian_parts(x)
    h = np.diag(diag)
    i = np.arange(len(off))
    h[i, i + 1] = off
    h[i + 1, i] = off
    return h


def chain_grad_numpy(x):
    kept = []
    for _ in range(25):
        c = np.cos(x)
        t = np.tanh(np.sin(x) * 1.01)
        x = t + 0.5
        kept.append((c, t))
    g = np.ones_like(x)
    for c, t in reversed(kept):
        g = g * (1.0 - t * t) * 1.01 * c
    return g


def mlp_parts(p):
    """The MLP's weights and biases, views of the flat parameter vector p."""
    return p[:8192].reshape(32, 256), p[8192:8448], p[8448:8704].reshape(256, 1), p[8704]


def mlp_grad_numpy(p, X, Y):
    w1, b1, w2, b2 = mlp_parts(p)
    h = np.tanh(X @ w1 + b1)
    dr = (2.0 / Y.size) * (h @ w2 + b2 - Y)
    dh = (dr @ w2.T) * (1.0 - h * h)
    return np.concatenate([(X.T @ dh).ravel(), dh.sum(0), (h.T @ dr).ravel(), [dr.sum()]])


def mlp_hvp_numpy(p, v, X, Y):
    """The MLP's Hessian-vector product by hand: the gradient above and its derivative along
    v, computed together (forward over reverse, the tanh once)."""
    w1, b1, w2, b2 = mlp_parts(p)
    u1, c1, u2, c2 = mlp_parts(v)
    h = np.tanh(X @ w1 + b1)
    s = 1.0 - h * h                                  # tanh' at the hidden layer
    dh = s * (X @ u1 + c1)                           # h's tangent
    gr = (2.0 / Y.size) * (h @ w2 + b2 - Y)          # cotangent of the output
    dgr = (2.0 / Y.size) * (dh @ w2 + h @ u2 + c2)   # and its tangent
    gh = gr @ w2.T
    dga = (dgr @ w2.T + gr @ u2.T) * s - 2.0 * gh * h * dh
    return np.concatenate([(X.T @ dga).ravel(), dga.sum(0), (dh.T @ gr + h.T @ dgr).ravel(),
                           [dgr.sum()]])


def logistic_parts(w, X, y, lam):
    s = 1.0 / (1.0 + np.exp(-(X @ w)))
    return s, X.T @ (s - y) + lam * w


def logistic_hvp_numpy(w, v, X, y, lam):
    s, _ = logistic_parts(w, X, y, lam)
    return X.T @ ((s * (1.0 - s)) * (X @ v)) + lam * v


def logistic_hessian_numpy(w, X, y, lam):
    s, _ = logistic_parts(w, X, y, lam)
    return X.T @ (X * (s * (1.0 - s))[:, None]) + lam * np.eye(len(w))


# ------------------------------------------------------------------ tasks

def tasks(libs):
    """[(problem, task, {library: zero-argument callable})]: every library's version of each
    floor task of issue 12 (section 3), on the same data."""
    sys.path.insert(0, HERE)
    import second_order as so
    d = so.data()
    lam = so.LOG_LAMBDA
    rng = np.random.default_rng(0)
    x10, x5 = rng.uniform(-1.0, 1.0, 10), d["x100000"]
    v5 = d["v100000"]
    x1000 = d["x1000"]
    xc = np.linspace(0.1, 1.0, 10)
    out = []

    def add(problem, task, **fns):
        out.append((problem, task, {k: v for k, v in fns.items() if k in libs + ["numpy"]}))

    import pullback
    pb = dict(M=np, **{k: v for k, v in d.items()})
    rosen, mlp, logistic, _ = so.functions(np, pb)
    ch = chain(np)
    peers = {}
    if "torch" in libs:
        import torch
        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(THREADS[0])
        tc = {k: torch.tensor(a) for k, a in d.items()}
        tc["M"] = torch
        t_rosen, t_mlp, t_logistic, _ = so.functions(torch, tc)
        T = torch.tensor

        def t_grad(f):
            # torch.autograd.grad and torch.func.grad: whichever is faster (chosen per task).
            def autograd_grad(x):
                x = x.detach().requires_grad_(True)
                return torch.autograd.grad(f(x), x)[0]
            return [autograd_grad, torch.func.grad(f)]

        def t_hvp(f):
            def double_backward(x, v):
                x = x.detach().requires_grad_(True)
                g = torch.autograd.grad(f(x), x, create_graph=True)[0]
                return torch.autograd.grad(g @ v, x)[0]
            grad_f = torch.func.grad(f)
            return [double_backward, lambda x, v: torch.func.jvp(grad_f, (x,), (v,))[1]]
        peers["torch"] = dict(rosen=t_rosen, mlp=t_mlp, logistic=t_logistic, chain=chain(torch),
                              T=T, grad=t_grad, hvp=t_hvp,
                              hessian=lambda f: [torch.func.hessian(f)])
    if "autograd" in libs:
        import autograd
        import autograd.numpy as anp
        ac = dict(d, M=anp)
        a_rosen, a_mlp, a_logistic, _ = so.functions(anp, ac)
        peers["autograd"] = dict(rosen=a_rosen, mlp=a_mlp, logistic=a_logistic, chain=chain(anp),
                                 T=np.asarray, grad=lambda f: [autograd.grad(f)],
                                 hvp=lambda f: [autograd.hessian_vector_product(f)],
                                 hessian=lambda f: [autograd.hessian(f)])

    def peer_fns(kind, name, *args):
        """{library: [candidate thunks]} of a peer task."""
        res = {}
        for lib, p in peers.items():
            f = p[name]
            conv = [p["T"](a) for a in args]
            res[lib] = [lambda g=g, conv=conv: g(*conv) for g in p[kind](f)]
        return res

    def task(problem, kind, name, f, numpy_fn, *args):
        ours = {"grad": lambda: pullback.grad(f), "hvp": None,
                "hessian": lambda: pullback.hessian(f)}
        if kind == "hvp":
            fn = lambda: pullback.hvp(f, *args)                  # noqa: E731
        else:
            g = ours[kind]()
            fn = lambda: g(*args)                                # noqa: E731
        fns = {"pullback": [fn]}
        if numpy_fn is not None:
            fns["numpy"] = [numpy_fn]
        fns.update(peer_fns(kind, name, *args))
        add(problem, kind, **fns)

    task("rosenbrock n=10", "grad", "rosen", rosen, lambda: rosenbrock_grad_numpy(x10), x10)
    task("rosenbrock n=100000", "grad", "rosen", rosen, lambda: rosenbrock_grad_numpy(x5), x5)
    task("rosenbrock n=100000", "hvp", "rosen", rosen, lambda: rosenbrock_hvp_numpy(x5, v5),
         x5, v5)
    task("chain 100 ops", "grad", "chain", ch, lambda: chain_grad_numpy(xc), xc)
    X, Y = d["mlp_X"], d["mlp_Y"]
    task("MLP 8,705 params", "grad", "mlp", mlp, lambda: mlp_grad_numpy(d["mlp_p"], X, Y),
         d["mlp_p"])
    task("MLP 8,705 params", "hvp", "mlp", mlp,
         lambda: mlp_hvp_numpy(d["mlp_p"], d["mlp_v"], X, Y), d["mlp_p"], d["mlp_v"])
    LX, ly, w, v = d["log_X"], d["log_y"], d["log_w"], d["log_v"]
    task("logistic 1000x100", "grad", "logistic", logistic,
         lambda: logistic_parts(w, LX, ly, lam)[1], w)
    task("logistic 1000x100", "hvp", "logistic", logistic,
         lambda: logistic_hvp_numpy(w, v, LX, ly, lam), w, v)
    task("logistic 1000x100", "hessian", "logistic", logistic,
         lambda: logistic_hessian_numpy(w, LX, ly, lam), w)
    task("rosenbrock n=1000", "hessian", "rosen", rosen,
         lambda: rosenbrock_hessian_numpy(x1000), x1000)
    # The per-op cost of eager mode: chain in forward mode too (pushforward of a tangent).
    add("chain 100 ops", "jvp (forward)",
        pullback=[lambda: pullback.pushforward(ch, (xc,), (xc,))])
    return out


# ------------------------------------------------------------ nested: saddle, particle

def multivariate_argmin(M, grad, f, x, eta):
    """GradBench's multivariate_argmin: gradient descent from x with step eta, doubled after
    10 improving steps, halved after a worse one, until the gradient or the step is below
    1e-5; Python control flow on traced values where f's derivative is taken further out."""
    def magnitude(v):
        return M.sqrt(M.sum(v * v))
    g = grad(f)
    fx, gx, i = f(x), g(x), 0
    while True:
        if magnitude(gx) <= 1e-5:
            return x
        if i == 10:
            eta, i = 2.0 * eta, 0
            continue
        x_new = x - eta * gx
        if magnitude(x - x_new) <= 1e-5:
            return x
        fx_new = f(x_new)
        if fx_new < fx:
            x, fx, gx, i = x_new, fx_new, g(x_new), i + 1
        else:
            eta, i = eta / 2.0, 0


def saddle_solver(M, grads):
    """GradBench's saddle problem for one library: `run(combo)` with outer and inner
    derivative (combo[0], combo[1]) 'r' (reverse) or 'f' (forward: one pushforward per basis
    vector), `grads` the library's two. Gradient descent inside gradient descent."""
    def argmin(grad, f, x):
        return multivariate_argmin(M, grad, f, x, SADDLE_ETA)

    def argmax(grad, f, x):
        return argmin(grad, lambda x: -f(x), x)

    def cost(p1, p2):
        return (p1[0] ** 2 + p1[1] ** 2) - (p2[0] ** 2 + p2[1] ** 2)

    def run(combo):
        outer, inner = grads[combo[0]], grads[combo[1]]
        start = np.array([1.0, 1.0])

        def max_over_p2(p1):
            return cost(p1, argmax(inner, lambda p2: cost(p1, p2), start))
        r1 = argmin(outer, max_over_p2, start)
        r2 = argmax(outer, lambda p2: cost(r1, p2), start)
        return np.concatenate([np.asarray(getattr(r1, "_value", r1)),
                               np.asarray(getattr(r2, "_value", r2))])
    return run


def particle_solver(M, grads):
    """GradBench's particle problem for one library: `run(combo)` as `saddle_solver`'s. A
    charged particle starts at (0, 8) with velocity (0.75, 0) in the field of unit charges at
    (10, 0) and (10, 10 - w); Euler steps of 0.1 (the force: the inner derivative, of the
    potential at the particle) until it crosses the x axis, where it lands (interpolated
    linearly) at x0; gradient descent (the outer derivative) finds the w minimising x0 ** 2.
    The number of Euler steps depends on w: a loop on traced values."""
    def potential(x, w):
        return (1.0 / M.sqrt((x[0] - 10.0) ** 2 + (x[1] - (10.0 - w[0])) ** 2)
                + 1.0 / M.sqrt((x[0] - 10.0) ** 2 + x[1] ** 2))

    def naive_euler(inner, w):
        force = inner(lambda x: potential(x, w))
        x, xdot, delta_t = np.array([0.0, 8.0]), np.array([0.75, 0.0]), 0.1
        while True:
            xddot = -1.0 * force(x)
            x_new = x + delta_t * xdot
            if x_new[1] > 0.0:
                x, xdot = x_new, xdot + delta_t * xddot
                continue
            delta_t_f = -x[1] / xdot[1]
            x_t_f = x + delta_t_f * xdot
            return x_t_f[0] * x_t_f[0]

    def run(combo):
        outer, inner = grads[combo[0]], grads[combo[1]]
        w = multivariate_argmin(M, outer, lambda w: naive_euler(inner, w), np.array([0.0]),
                                PARTICLE_ETA)
        return np.asarray(getattr(w, "_value", w))
    return run


def nested_runners(libs, solver):
    """{library: solver's run} for pullback and (if installed) autograd."""
    import pullback
    runners = {"pullback": solver(np, {"r": pullback.grad, "f": lambda f: lambda x: np.stack(
        [pullback.pushforward(f, (x,), (e,))[1] for e in np.eye(len(x))])})}
    if "autograd" in libs:
        import autograd
        import autograd.numpy as anp

        def forward_grad(f):
            def g(x):
                jvp = autograd.make_jvp(f)(x)
                return anp.stack([jvp(e)[1] for e in np.eye(len(x))])
            return g
        runners["autograd"] = solver(anp, {"r": autograd.grad, "f": forward_grad})
    return runners


# ------------------------------------------------------------------ run

def interleaved(fns, rounds, seconds):
    """{library: [time per call in each round]}: every library sampled once per round."""
    libs = list(fns)
    times = {lib: [] for lib in libs}
    for r in range(rounds):
        for lib in libs[r % len(libs):] + libs[:r % len(libs)]:
            times[lib].append(sample(lambda _: fns[lib](), None, seconds, CLOCK))
    return times


def pick_fastest(candidates):
    """The fastest of a library's candidate implementations of a task (one short sample each)."""
    return min(candidates, key=lambda fn: sample(lambda _: fn(), None, 0.05, CLOCK)) \
        if len(candidates) > 1 else candidates[0]


def to_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().numpy()
    return np.asarray(value)


def run(libs):
    rows = []
    for problem, task, candidates in tasks(libs):
        reference = to_numpy(candidates["pullback"][0]())
        fns = {}
        for lib, cands in candidates.items():
            for fn in cands:
                err = np.max(np.abs(to_numpy(fn()) - reference)) / max(np.max(np.abs(reference)),
                                                                         1e-300)
                assert err < 1e-8, (problem, task, lib, err)
            fns[lib] = pick_fastest(cands)
        times = interleaved(fns, ROUNDS, SAMPLE_S)
        rows.append((problem, task, times))
        print(problem, task, {k: round(float(np.median(v)) * 1e6, 1) for k, v in times.items()},
              file=sys.stderr)
    return rows, run_nested(libs)


def run_nested(libs):
    """[(problem, combo, {library: [s per run]})]: GradBench's saddle and particle problems,
    every combination of outer and inner mode, the libraries interleaved."""
    nested = []
    for problem, solver, rounds in (("saddle", saddle_solver, SADDLE_ROUNDS),
                                    ("particle", particle_solver, PARTICLE_ROUNDS)):
        runners = nested_runners(libs, solver)
        for combo in ("rr", "rf", "fr", "ff"):
            results = {lib: r(combo) for lib, r in runners.items()}
            for lib, value in results.items():
                assert np.allclose(value, results["pullback"], atol=1e-6), (problem, combo, lib)
            times = {lib: [] for lib in runners}
            for r in range(rounds):
                for lib, runner in (list(runners.items())[::(-1) ** r]):
                    start = CLOCK()
                    runner(combo)
                    times[lib].append(CLOCK() - start)
            nested.append((problem, combo, times))
            print(problem, combo, {k: round(float(np.median(v)), 3) for k, v in times.items()},
                  file=sys.stderr)
    return nested


def ratio(times, a, b):
    """Median over rounds of time(a) / time(b)."""
    return float(np.median(np.array(times[a]) / np.array(times[b])))


def report(rows, nested, libs, loads, blas, seconds):
    peers = [lib for lib in ("torch", "autograd", "numpy") if lib in libs + ["numpy"]]
    lines = [
        "# Eager benchmark: pullback against torch, autograd and hand-written NumPy",
        "",
        f"Command: `python benchmarks/eager.py --python /work/peers/bin/python` (whole run "
        f"{seconds / 60:.1f} min). Machine: {os.cpu_count()} cores, shared; "
        f"{THREADS[0]} thread(s) for BLAS and torch (`--threads`); load average "
        f"(1 min) {loads[0]:.1f} at the start, {loads[1]:.1f} at the end. BLAS: {blas}.",
        "",
        f"All libraries in one process, interleaved: {ROUNDS} rounds per task, each timing every "
        f"library once (>= {SAMPLE_S} s of back-to-back calls, rotating order), in "
        + ("CPU time of the process (time.process_time: with one thread, the work done, not "
           "the other processes' share of the machine)" if CLOCK is time.process_time
           else "wall time") + "; times are "
        "medians over rounds (µs), ratios the medians of the per-round ratios pullback / peer "
        "(below 1: pullback faster). torch: the faster of torch.autograd and torch.func "
        "(gradient: autograd.grad or func.grad; HVP: double backward or func.jvp of "
        "func.grad; Hessian: func.hessian). numpy: hand-written derivatives. pullback: "
        "`grad`, `hvp` (default reverse-over-forward), `hessian` (default reverse-over-reverse).",
        "",
        "| problem | task | pullback | " + " | ".join(peers) + " | "
        + " | ".join(f"pullback / {p}" for p in peers) + " | floor |",
        "|---|---|---:|" + "---:|" * (2 * len(peers)) + "---|",
    ]
    chain_times = {}
    for problem, task, times in rows:
        med = {lib: float(np.median(t)) * 1e6 for lib, t in times.items()}
        cells = [f"{med[p]:.1f}" if p in med else "—" for p in peers]
        ratios = [f"{ratio(times, 'pullback', p):.2f}" if p in times else "—" for p in peers]
        lines.append(f"| {problem} | {task} | {med['pullback']:.1f} | " + " | ".join(cells)
                     + " | " + " | ".join(ratios) + f" | {floor(times)} |")
        if problem.startswith("chain"):
            chain_times[task] = times
    lines += ["", "Floor: pullback <= torch, or where hand-written NumPy is itself slower than "
              "torch, pullback <= 1.15 x NumPy.", ""]
    if "grad" in chain_times and "numpy" in chain_times["grad"]:
        t = chain_times["grad"]
        per_op = (np.median(t["pullback"]) - np.median(t["numpy"])) / CHAIN_OPS * 1e6
        total = np.median(t["pullback"]) / CHAIN_OPS * 1e6
        lines.append(f"Chain gradient per op: {total:.2f} µs in all, {per_op:.2f} µs above the "
                     "hand-written NumPy gradient (the same NumPy calls without the AD "
                     f"machinery), {CHAIN_OPS} primitives; floor <= 2 µs per op above the "
                     "hand-written gradient (the machinery's own cost: NumPy's calls, "
                     f"{np.median(t['numpy']) / CHAIN_OPS * 1e6:.2f} µs per op here, are no AD "
                     "tool's to remove): "
                     + ("met." if per_op <= 2 else "missed."))
        if "torch" in t:
            torch_per_op = (np.median(t["torch"]) - np.median(t["numpy"])) / CHAIN_OPS * 1e6
            lines.append(f"The same measure for torch.autograd in this run: {torch_per_op:.2f} µs "
                         f"per op (pullback's is {per_op / torch_per_op:.2f} of it; the issue "
                         "measured torch's at about 4 µs and set pullback's floor at 2, half).")
    if "jvp (forward)" in chain_times:
        t = chain_times["jvp (forward)"]["pullback"]
        lines.append(f"Chain in forward mode (pushforward of one tangent): "
                     f"{np.median(t) / CHAIN_OPS * 1e6:.2f} µs per op in all.")
    write_results("eager.md", "\n".join(lines + nested_report(nested, loads)) + "\n")


NESTED_HEADING = "## Nested eager AD: GradBench's saddle and particle problems (s per run)"


def nested_report(nested, loads):
    """The lines of the nested section of the report."""
    lines = ["", NESTED_HEADING, "",
             "Command: `python benchmarks/eager.py --python /work/peers/bin/python --nested` (this "
             "section only). "
             "Gradient descent inside gradient descent; outer/inner derivative r (reverse, grad) "
             "or f (forward, one pushforward per basis vector). saddle: a saddle point of a "
             "function of two 2-vectors; particle: the control w making a charged particle land "
             "at the origin, the inner derivative the force in each Euler step of its path "
             "(about 350 steps, as many as the path needs). Step sizes start at "
             f"{SADDLE_ETA} (saddle) and {PARTICLE_ETA} (particle) (GradBench: 1e-5, which "
             f"only adds steps); median of {SADDLE_ROUNDS} (saddle) and {PARTICLE_ROUNDS} "
             f"(particle) interleaved runs, CPU time; load average (1 min) {loads[0]:.1f} at "
             f"the start, {loads[1]:.1f} at the end. Floor: autograd / pullback >= 3.", "",
             "| problem | outer-inner | pullback | autograd | autograd / pullback |",
             "|---|---|---:|---:|---:|"]
    for problem, combo, times in nested:
        if "autograd" in times:
            lines.append(f"| {problem} | {combo} | {np.median(times['pullback']):.3f} | "
                         f"{np.median(times['autograd']):.3f} | "
                         f"{ratio(times, 'autograd', 'pullback'):.2f} |")
    return lines


def write_nested_only(nested, loads):
    """Replace the nested section of benchmarks/results/eager.md (`--nested`)."""
    with open(os.path.join(HERE, "results", "eager.md")) as fh:
        text = fh.read()
    for heading in (NESTED_HEADING, "## Nested eager AD"):
        if heading in text:
            text = text[:text.index(heading)].rstrip("\n") + "\n"
            break
    write_results("eager.md", text + "\n".join(nested_report(nested, loads)) + "\n")


def floor(times):
    """Whether pullback meets its floor on a task: 'met' or 'missed (by how much)'."""
    if "torch" not in times:
        return "—"
    target, against = ratio(times, "pullback", "torch"), "torch"
    if "numpy" in times and np.median(times["numpy"]) > np.median(times["torch"]):
        target, against = ratio(times, "pullback", "numpy") / 1.15, "1.15 x numpy"
    return "met" if target <= 1.0 else f"missed ({target:.2f} x {against})"


def main():
    global ROUNDS, CLOCK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with the peers installed (pullback is put on its path)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds per task")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of BLAS and torch (default 1: on a shared machine spinning "
                             "worker threads measure the load, not the library)")
    parser.add_argument("--nested", action="store_true",
                        help="only the nested problems (saddle, particle): replaces that section "
                             "of the results")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        env = _env()
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
        subprocess.run([args.python, __file__, "--inside", "--rounds", str(args.rounds),
                        "--threads", str(args.threads)] + ["--nested"] * args.nested, env=env,
                       check=True)
        return
    ROUNDS, THREADS[0] = args.rounds, args.threads
    if args.threads > 1:            # CPU time would add the threads up
        CLOCK = time.perf_counter
    begin, load0 = time.perf_counter(), os.getloadavg()[0]
    libs = ["pullback"]
    for lib in ("torch", "autograd"):
        try:
            __import__(lib)
            libs.append(lib)
        except ImportError:
            pass
    np.ones(2_000_000).sum()        # warm the allocator
    if args.nested:
        write_nested_only(run_nested(libs), (load0, os.getloadavg()[0]))
        return
    rows, nested = run(libs)
    report(rows, nested, libs, (load0, os.getloadavg()[0]), blas_kernel(verbose=True),
           time.perf_counter() - begin)


# ------------------------------------------------------------------- timing

def sample(fn, x, seconds, clock=time.perf_counter):
    """Median-free single measurement: mean time per call over >= `seconds` of `clock`."""
    fn(x)
    calls, start = 0, clock()
    while True:
        fn(x)
        calls += 1
        elapsed = clock() - start
        if elapsed >= seconds:
            return elapsed / calls


def median_time(fn, x, samples=7, seconds=0.25):
    return float(np.median([sample(fn, x, seconds) for _ in range(samples)]))


def cpu_busy_fraction(interval=0.2):
    """Share of CPU time used by everything on the machine over `interval` (from /proc/stat)."""
    def read():
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)
    idle0, total0 = read()
    time.sleep(interval)
    idle1, total1 = read()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def blas_kernel(verbose=False):
    """The BLAS loaded, as threadpoolctl names it ('openblas SkylakeX'); '' without threadpoolctl.
    verbose: with version, threads and the package that ships each library."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    return ", ".join(
        f"{i.get('internal_api')} {i.get('architecture', '')}".strip() if not verbose else
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}, "
        f"{i.get('num_threads')} threads "
        f"({os.path.basename(os.path.dirname(i.get('filepath', '')))})"
        for i in threadpool_info() if i.get("user_api") == "blas")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_results(name, text):
    """Write a report to benchmarks/results/<name> and show it."""
    with open(os.path.join(HERE, "results", name), "w") as fh:
        fh.write(text)
    print(text)




if __name__ == "__main__":
    main()
