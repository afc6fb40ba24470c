"""`pullback demo`: a short tour of what the library does, printed as it runs."""
import sys
import time

import numpy as np

import pullback


def _section(title):
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)))


def _show(label, value):
    text = np.array2string(np.asarray(value), precision=4, suppress_small=True)
    print(f"{label:<34}{text}")


def first_order():
    _section("1. A gradient is the pullback of 1 (scalar output only)")

    def rosenbrock(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x = np.array([-1.2, 1.0, 0.5])
    print("f(x) = sum(100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2), plain NumPy code")
    _show("x", x)
    _show("f(x)", rosenbrock(x))
    _show("grad f(x)", pullback.grad(rosenbrock)(x))

    _section("2. A pullback carries ANY cotangent back: J^T ct")

    def spiral(t):
        return np.stack([np.cos(t) * t, np.sin(t) * t])

    t = np.array([0.5, 1.0, 2.0])
    out, back = pullback.pullback(spiral, t)
    ct = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    _show("t", t)
    print(f"{'out = spiral(t) has shape':<34}{out.shape}")
    print("cotangent ct (shape of out):")
    print(np.array2string(ct, precision=4))
    (t_bar,) = back(ct)
    _show("back(ct) = J^T ct", t_bar)

    _section("3. A Jacobian, row by row: pull back each basis vector e_i")

    def polar_to_cartesian(p):
        r, theta = p[0], p[1]
        return np.stack([r * np.cos(theta), r * np.sin(theta), r ** 2])

    p = np.array([2.0, 0.3])
    out, back = pullback.pullback(polar_to_cartesian, p)
    rows = []
    for i in range(out.size):
        e_i = np.zeros_like(out)
        e_i[i] = 1.0
        (row,) = back(e_i)
        rows.append(row)
        _show(f"back(e_{i}) = row {i} of J", row)
    jac = np.stack(rows)
    agree = np.allclose(jac, pullback.jacobian(polar_to_cartesian)(p))
    print(f"stacked rows == pullback.jacobian(f)(p): {agree}")

    _section("4. grad refuses a vector-valued function (no silent sum)")
    try:
        pullback.grad(polar_to_cartesian)(p)
    except pullback.errors.NonScalarOutputError as error:
        print(f"{type(error).__name__}: {error}")


def _rosenbrock(x):
    """The extended Rosenbrock function: n/2 independent Rosenbrock pairs."""
    odd, even = x[0::2], x[1::2]
    return np.sum(100.0 * (even - odd ** 2) ** 2 + (1.0 - odd) ** 2)


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def second_order():
    _section("5. A Hessian is the Jacobian of the gradient: four ways")

    def mlp_loss(w, data=np.random.default_rng(0).standard_normal((64, 4))):
        hidden = np.tanh(data @ w[:12].reshape(4, 3))
        return np.mean((hidden @ w[12:15] - np.sin(data[:, 0])) ** 2) + 1e-3 * np.sum(w ** 2)

    w = np.random.default_rng(1).standard_normal(15) * 0.5
    print("f = loss of a tiny tanh network, 15 parameters")
    hessians = {}
    for mode in pullback.operators.HESSIAN_MODES:
        pullback.hessian(mlp_loss, mode=mode)(w)                       # warm up
        hessians[mode], seconds = _timed(pullback.hessian(mlp_loss, mode=mode), w)
        print(f"  {mode:<22} {seconds * 1e3:8.2f} ms")
    reference = hessians[pullback.operators.DEFAULT_HESSIAN_MODE]
    spread = max(np.abs(h - reference).max() for h in hessians.values())
    print(f"largest difference between the four Hessians: {spread:.1e} "
          f"(entries up to {np.abs(reference).max():.2f}); symmetric: "
          f"{np.allclose(reference, reference.T)}")

    _section("6. A Hessian-vector product never forms the Hessian")
    n = 1_000_000
    x = np.tile([-1.2, 1.0], n // 2)
    v = np.random.default_rng(2).standard_normal(n)
    _, grad_seconds = _timed(pullback.grad(_rosenbrock), x)
    hv, hvp_seconds = _timed(pullback.hvp, _rosenbrock, x, v)
    print(f"extended Rosenbrock, n = {n:,}: its Hessian would hold {n * n * 8 / 1e12:,.0f} TB.")
    print(f"gradient {grad_seconds * 1e3:.0f} ms, H v {hvp_seconds * 1e3:.0f} ms "
          f"({pullback.operators.DEFAULT_HVP_MODE}), |H v| = {np.linalg.norm(hv):.4e}")
    small = np.tile([-1.2, 1.0], 5)
    exact = pullback.hessian(_rosenbrock)(small) @ v[:10]
    print(f"check at n = 10 against the full Hessian: "
          f"{np.allclose(pullback.hvp(_rosenbrock, small, v[:10]), exact)}")

    _section("7. Newton-CG with make_hvp vs L-BFGS-B, extended Rosenbrock n = 10,000")
    import scipy.optimize
    x0 = np.tile([-1.2, 1.0], 5_000)
    runs = [("Newton-CG (hessp = make_hvp)", "Newton-CG", pullback.newton_callables(_rosenbrock)),

            ("L-BFGS-B (jac = pullback.grad)", "L-BFGS-B",
             {k: v for k, v in pullback.newton_callables(_rosenbrock).items() if k != "hessp"})]
    for label, method, callables in runs:
        progress = _Progress(label)
        options = {"maxiter": 10_000, **({"xtol": 1e-10} if method == "Newton-CG" else {})}
        result, seconds = _timed(lambda: scipy.optimize.minimize(
            x0=x0, method=method, callback=progress, options=options, **callables))
        progress.done()
        print(f"  {label:<32} iterations {result.nit:5d}, f evaluations {result.nfev:5d}, "
              f"{seconds:6.2f} s, f = {result.fun:.2e}, max|x - 1| = {np.abs(result.x - 1).max():.1e}")


class _Progress:
    """A one-line progress display for scipy.optimize callbacks."""

    def __init__(self, label):
        self.label, self.iterations, self.tty = label, 0, sys.stdout.isatty()

    def __call__(self, intermediate_result):
        self.iterations += 1
        if self.tty:
            f = getattr(intermediate_result, "fun", None)
            text = f"f = {f:.3e}" if f is not None else ""
            print(f"\r  {self.label:<32} iteration {self.iterations:5d} {text}", end="",
                  flush=True)
        elif self.iterations % 50 == 0:
            print(f"  ... {self.label}: iteration {self.iterations}", flush=True)

    def done(self):
        if self.tty:
            print("\r" + " " * 78 + "\r", end="")


def softplus_loss(w, x):
    """A small function whose derivative programs the demo prints."""
    return np.sum(np.logaddexp(0.0, x @ w)) + 0.5 * np.sum(w * w)


def programs():
    _section("8. Every derivative is a program you can read (pullback.show)")
    w, x = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]])
    print("def softplus_loss(w, x):  return np.sum(np.logaddexp(0.0, x @ w)) + 0.5 * np.sum(w * w)")
    print("\n-- its gradient with respect to w: pullback.show(pullback.grad(softplus_loss), w, x)")
    pullback.show(pullback.grad(softplus_loss), w, x)

    def softplus_loss_hvp(w, v, x):
        return pullback.hvp(lambda w: softplus_loss(w, x), w, v)
    print("-- its Hessian-vector product (reverse-over-forward): no Hessian anywhere")
    pullback.show(softplus_loss_hvp, w, np.array([1.0, 0.0]), x)

    _section("9. jit: the same programs, compiled once per signature")
    grad_jit = pullback.jit(pullback.grad(softplus_loss))
    _, first = _timed(grad_jit, w, x)
    repeats = 2000
    _, cached = _timed(lambda: [grad_jit(w, x) for _ in range(repeats)])
    _, eager_many = _timed(lambda: [pullback.grad(softplus_loss)(w, x) for _ in range(repeats)])
    print(f"first call (stage + optimise + compile) {first * 1e3:.2f} ms; then "
          f"{cached / repeats * 1e6:.1f} µs per call, eager {eager_many / repeats * 1e6:.1f} µs")
    print(f"same result as eager: {np.allclose(grad_jit(w, x), pullback.grad(softplus_loss)(w, x))}")


def _step(label, fn, *args):
    """Run one longer step, saying what runs while it does; returns (result, seconds)."""
    print(f"  {label} ...", end="", flush=True)
    result, seconds = _timed(fn, *args)
    print(f" {seconds * 1e3:,.0f} ms", flush=True)
    return result, seconds


def sparsity():
    _section("10. Sparse Hessians: detected pattern, colouring, a few HVPs")
    n = 4_000
    x = np.tile([-1.2, 1.0], n // 2)
    plan, prepared = _step(f"detect the pattern of the Hessian (n = {n:,}) and colour it",
                           pullback.sparse.prepare_hessian, _rosenbrock, x)
    print(f"  {plan.nnz:,} nonzeros of {n * n:,} (density {plan.density:.1e}): "
          f"{plan.colours} colours, so {plan.colours} Hessian-vector products per Hessian")
    sparse, sparse_seconds = _step("the sparse Hessian from the prepared plan", plan, x)
    dense, dense_seconds = _step("the dense Hessian (n HVPs, batched)",
                                 pullback.hessian(_rosenbrock), x)
    print(f"  same values: {np.array_equal(sparse.toarray(), dense)}; the sparse one is "
          f"{dense_seconds / sparse_seconds:,.0f}x faster")


def dask_hvp(n: int = 10**8, workers: int = 2, memory_limit: str = "2GB",
             chunk: int = 5 * 10**6):
    """The extended Rosenbrock Hessian-vector product at size n on a local Dask cluster
    whose workers each hold at most `memory_limit`, checked against NumPy on a slice.
    For example `dask_hvp(n=10**6, chunk=10**5)` (a small run: seconds, not minutes).
    """
    try:
        import dask.array as da
        from dask.distributed import Client, LocalCluster, progress
    except ImportError as missing:
        raise SystemExit(f"the Dask demo needs Dask: pip install 'pullback[dask]' ({missing})")
    _section(f"Rosenbrock HVP, n = {n:,} ({n * 8 / 1e9:.1f} GB per array), on Dask")
    with LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"  {workers} worker processes, each held to {memory_limit}; chunks of {chunk:,}")
        random = da.random.default_rng(0)
        x = random.uniform(0.5, 1.5, n, chunks=chunk)
        v = random.standard_normal(n, chunks=chunk)
        product = pullback.hvp(_rosenbrock, x, v)     # a lazy Dask array: nothing ran yet
        start = n // 4 * 2                              # even: the 2x2 blocks stay whole
        middle = slice(start, start + 2_000)
        norm, window = client.persist([np.linalg.norm(product), product[middle]])
        start = time.perf_counter()
        progress(norm, window)
        norm, window = client.compute([norm, window], sync=True)
        print(f"\n  |Hv| = {norm:.6e}, computed in {time.perf_counter() - start:.1f} s")
        # the Hessian is block diagonal (2x2 blocks of pairs): a slice of whole pairs is
        # the HVP of the same function on that slice
        x_part, v_part = client.compute([x[middle], v[middle]], sync=True)
        expected = pullback.hvp(_rosenbrock, x_part, v_part)
        error = np.max(np.abs(window - expected)) / np.max(np.abs(expected))
        print(f"  a slice of 2,000 entries against NumPy: max relative difference {error:.1e}")
        if error > 1e-12:
            raise SystemExit("the Dask result differs from NumPy's")


def main():
    """Run every section of the demo."""
    first_order()
    second_order()
    programs()
    sparsity()


if __name__ == "__main__":
    main()
