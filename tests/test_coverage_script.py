"""benchmarks/function_coverage.py (issue 10's coverage table) counts only what it checked: its
`check` calls a function as a user would, on tracers, and compares the value with the
reference and the derivatives with finite differences."""
import numpy as np
import scipy.special

import pullback
from helpers import benchmark_module


def test_issue10_coverage_check_counts_only_what_passes():
    coverage = benchmark_module("function_coverage")
    rng = np.random.default_rng(0)
    assert coverage.check(np.sin, np.sin, rng) == "differentiated"
    assert coverage.check(np.floor, np.floor, rng) == "constant"
    assert coverage.check(np.isnan, np.isnan, rng) == "constant"
    assert coverage.check(scipy.special.betainc, scipy.special.betainc, rng).startswith(
        "refused: UnsupportedFunctionError")

    @pullback.custom_jvp
    def wrong_sin(x):
        return np.sin(x)

    @wrong_sin.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return np.sin(x), np.cos(x) * t * 1.01            # a derivative 1% off
    assert coverage.check(wrong_sin, np.sin, rng).startswith("failed: AssertionError")
    assert coverage.check(lambda x: np.sin(x) + 1e-6, np.sin, rng) == (
        "failed: value differs from the reference")
    assert coverage.check(lambda s: np.sin(s.encode()), lambda s: s.encode(), rng) == (
        "no sample call")


def test_issue10_coverage_groups_are_the_namespaces():
    coverage = benchmark_module("function_coverage")
    groups = dict(coverage.groups())
    assert list(groups) == ["numpy", "numpy.linalg", "numpy.fft", "scipy.special",
                            "scipy.linalg", "array API namespace"]
    assert "sin" in groups["numpy"] and "eig" in groups["numpy.linalg"]
    assert "logsumexp" in groups["scipy.special"] and "linalg.solve" in groups[
        "array API namespace"]
