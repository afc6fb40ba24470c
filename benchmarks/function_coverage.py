"""Coverage table of issue 10: how many NumPy / SciPy / Array API functions pullback
differentiates, each name checked by actually differentiating it.

    python benchmarks/function_coverage.py            # prints the table, writes results/coverage.md

For every function pullback's namespaces offer under a NumPy or SciPy name (the list of
FUNCTIONS.md, from `pullback.cli.supported_functions`) and every function of the Array API
namespace (pullback.array_api), the script looks for a sample call: the first of a fixed
list of argument templates (a 3 x 4 array in (0.2, 0.9) or in (1.2, 2), a vector, a square
invertible or positive definite matrix, two or three arrays, an integer order first, a
complex vector ...) on which the reference function (NumPy's, SciPy's, array-api-strict's)
returns a finite floating-point result. At one random point it then checks, as a user would
call it (`np.sin(x)` on a tracer; `pullback.scipy.special.logsumexp`; `xp.sum`):
  - the value computed on tracers (the primal of a jvp) equals the reference (rtol 1e-8);
  - `pullback.check_grads(order=1)`: the jvp against central finite differences and the
    pullback (grad) against the jvp (the dot-product identity), at a random direction.
A name counts as differentiated only if both pass with a nonzero derivative; a constant
(a zero derivative, floor; or a boolean or integer result, isnan, argmax) is counted apart,
and so are names with no sample call (the templates do not fit their arguments: not a
claim that they fail). Templates are tried in order until one passes.
"""
import argparse
import inspect
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _templates(rng):
    """Argument lists to try, in order (each a list of arrays or Python ints)."""
    def u(*shape, lo=0.2, hi=0.9):
        return rng.uniform(lo, hi, shape)
    a = rng.standard_normal((3, 3)) + 3.0 * np.eye(3)
    p = np.eye(3) + 0.3 * rng.standard_normal((3, 3))
    general = p @ np.diag([1.0, 2.0, 3.5]) @ np.linalg.inv(p)
    spd = a @ a.T
    z = u(8) + 1j * u(8)
    return [
        [u(3, 4)], [u(3, 4, lo=1.2, hi=2.0)], [u(5)], [np.sort(u(5))], [spd], [a], [general],
        [u(3, 4), u(3, 4)], [u(5), u(5)], [a, u(3, 2)], [a, a], [spd, spd], [u(3), u(3)],
        [u(3, 4), u(3, 4), u(3, 4)], [np.sort(u(5)), np.sort(u(5)), u(5)],
        [u(3, 4), 2], [2, u(3, 4)], [u(3, 4, lo=1.2, hi=2.0), 2], [2, u(3, 4, lo=1.2, hi=2.0)],
        [a, 2], [u(4, 4), 1], [z], [z.reshape(2, 4)], [u(5), u(3)],
        [u(3, 4), 0, 1], [u(3, 4), (4, 3)], [u(3, 4), (2, 3, 4)], [u(3, 4), np.float32],
        [u(3, 4), np.argsort(u(3, 4), axis=1), 1], ["ij,ij->i", u(3, 4), u(3, 4)],
        [u(3, 4), [True, False, True]], [u(4, 6, 2), 2],
    ]


def _leaves(value):
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _result_kind(value, args):
    """'float' (finite floating point), 'discrete' (boolean or integer) or None (no usable
    result: empty, not finite, or one of the arguments written through `out=`)."""
    try:
        leaves = _leaves(value)
        arrays = [np.asarray(v) for v in leaves]
    except Exception:
        return None
    if not arrays or any(v is a for v in leaves for a in args[1:]) or any(
            a.size == 0 for a in arrays):
        return None
    if all(a.dtype.kind in "biu" for a in arrays):
        return "discrete"
    if all(a.dtype.kind in "fc" and np.all(np.isfinite(a)) for a in arrays):
        return "float"
    return None


def _close(ours, reference):
    ours, reference = _leaves(ours), _leaves(reference)
    return len(ours) == len(reference) and all(
        np.shape(o) == np.shape(r) and np.allclose(np.asarray(o), np.asarray(r), rtol=1e-8,
                                                   atol=1e-10)
        for o, r in zip(ours, reference))


def _sample(ours, args, expected, kind, rng):
    """The outcome of one sample call (see `check`)."""
    import pullback
    floating = [i for i, a in enumerate(args)
                if isinstance(a, np.ndarray) and a.dtype.kind in "fc"]

    def f(*xs):
        full = list(args)
        for i, x in zip(floating, xs):
            full[i] = x
        return ours(*full)
    primals = tuple(args[i] for i in floating)
    value, tangent = pullback.jvp(f, primals, tuple(
        rng.standard_normal(np.shape(p)).astype(p.dtype) for p in primals))
    if not _close(value, expected):
        return "failed: value differs from the reference"
    if kind == "discrete":
        return "constant"
    single = any(np.asarray(v).dtype in (np.float32, np.complex64) for v in _leaves(value))
    # float32 results of float64 inputs (astype): finite differences in large steps
    pullback.check_grads(f, primals, order=1, eps=1e-2 if single else 1e-6)
    if all(np.all(np.asarray(t) == 0) for t in _leaves(tangent)):
        return "constant"
    return "differentiated"


def check(ours, reference, rng, to_reference=lambda x: x):
    """'differentiated', 'constant' (a zero derivative, or a boolean or integer result),
    'refused: <error>' (pullback's error saying why), 'failed: <why>' (a wrong value or
    derivative, or another exception) or 'no sample call', for one function: `ours` called as
    a user would, `reference` the library's own. Templates are tried in order until one
    passes (a refusal of some arguments, e.g. a wide matrix for qr, does not count when
    others pass); a failure outranks a refusal."""
    from pullback.errors import PullbackError
    failure = None
    for args in _templates(rng):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                expected = reference(*[to_reference(a) if isinstance(a, np.ndarray) else a
                                       for a in args])
            except Exception:
                continue
            kind = _result_kind(expected, args)
            if kind is None:
                continue
            try:
                outcome = _sample(ours, args, expected, kind, rng)
            except PullbackError as error:      # a refusal that says why
                outcome = f"refused: {type(error).__name__}: {str(error)[:160]}"
            except Exception as error:
                outcome = f"failed: {type(error).__name__}: {str(error)[:160]}"
            if not outcome.startswith(("failed", "refused")):
                return outcome
            failure = outcome if failure is None or failure.startswith("refused") else failure
    return failure or "no sample call"


def groups():
    """[(group, {name: (ours, reference, to_reference)})]."""
    import numpy.fft
    import scipy.linalg
    import scipy.special

    import array_api_strict
    import pullback
    import pullback.numpy
    import pullback.scipy
    array_api_strict.set_array_api_strict_flags(api_version="2024.12")

    def public(ours, theirs):
        return {name: value for name, value in vars(ours).items()
                if not name.startswith("_") and callable(value) and hasattr(theirs, name)
                and not inspect.isclass(value) and not inspect.ismodule(value)}

    def as_user(theirs, ours, name):
        # As written, on tracers, where NumPy dispatches to pullback (ufuncs and functions
        # with __array_function__); otherwise (np.array, SciPy's functions that convert
        # their inputs) the pullback.numpy / pullback.scipy namesake.
        function = getattr(theirs, name)
        if isinstance(function, np.ufunc) or hasattr(function, "_implementation"):
            return function
        return getattr(ours, name)

    table = []
    for group, ours, theirs in [("numpy", pullback.numpy, np),
                                ("numpy.linalg", pullback.numpy.linalg, np.linalg),
                                ("numpy.fft", pullback.numpy.fft, numpy.fft),
                                ("scipy.special", pullback.scipy.special, scipy.special),
                                ("scipy.linalg", pullback.scipy.linalg, scipy.linalg)]:
        table.append((group, {name: (as_user(theirs, ours, name), getattr(theirs, name),
                                     lambda x: x)
                              for name in public(ours, theirs)}))
    xp = pullback.array_api
    strict = array_api_strict
    entries = {}
    for prefix, ours, theirs in [("", xp, strict), ("linalg.", xp.linalg, strict.linalg),
                                 ("fft.", xp.fft, strict.fft)]:
        names = getattr(theirs, "__all__", None) or [
            n for n in dir(theirs) if not n.startswith("_") and callable(getattr(theirs, n))
            and not isinstance(getattr(theirs, n), type) and hasattr(ours, n)]
        for name in names:
            if hasattr(ours, name) and callable(getattr(ours, name)):
                entries[prefix + name] = (getattr(ours, name), getattr(theirs, name),
                                          strict.asarray)
    table.append(("array API namespace", entries))
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(HERE, "results", "coverage.md"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(10)
    rows, details = [], []
    for group, functions in groups():
        outcomes = {name: check(ours, reference, rng, convert)
                    for name, (ours, reference, convert) in sorted(functions.items())}
        counts = {kind: sorted(n for n, o in outcomes.items() if o.startswith(kind))
                  for kind in ("differentiated", "constant", "no sample call", "refused",
                               "failed")}
        rows.append(f"| {group} | {len(functions)} | {len(counts['differentiated'])} | "
                    f"{len(counts['constant'])} | {len(counts['no sample call'])} | "
                    f"{len(counts['refused'])} | {len(counts['failed'])} |")
        details.append(f"### {group}\n")
        for kind in ("constant", "no sample call"):
            if counts[kind]:
                details.append(f"- {kind}: " + ", ".join(f"`{n}`" for n in counts[kind]))
        for name in counts["refused"] + counts["failed"]:
            details.append(f"- `{name}` {outcomes[name]}")
        details.append("")
    total = [sum(int(r.split("|")[k]) for r in rows) for k in range(2, 8)]
    rows.append("| **all** | " + " | ".join(f"**{t}**" for t in total) + " |")
    text = "\n".join([
        "# Coverage: functions pullback differentiates, each checked by differentiating it",
        "", "Generated by `python benchmarks/function_coverage.py` (see its docstring for the method).",
        "", "| group | functions | differentiated (value, jvp and grad checked) | "
        "constant (zero derivative, or a boolean/integer result) | no sample call | "
        "refused (an error that says why) | failed |", "|---|---|---|---|---|---|---|", *rows,
        "",
        "## Names not counted as differentiated", "", *details])
    print(text)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
