"""The command line: `pullback demo` and `pullback show`."""
import os
import subprocess
import sys
import textwrap

import pytest

from pullback.cli import main


def test_demo_runs_and_shows_each_section():
    result = subprocess.run([sys.executable, "-m", "pullback", "demo"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for fragment in ("grad f(x)", "back(ct) = J^T ct", "row 0 of J", "NonScalarOutputError",
                     "forward-over-reverse", "reverse-over-reverse", "H v", "Newton-CG",
                     "L-BFGS-B", "w_bar", "same result as eager: True", "2 colours",
                     "same values: True"):
        assert fragment in result.stdout, fragment


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent("""
        import numpy as np

        def energy(x):
            return np.sum(np.cos(x) * x ** 2)
    """))
    return path


@pytest.mark.parametrize("flags, fragments", [
    ([], ["def energy(x):", "np.cos(x)", "model.py:5"]),
    (["--grad"], ["grad_x = ", "return grad_x", "derivative of model.py:5", "np.sin(x)"]),
    (["--hessian"], ["def energy(x):", "return hessian"]),
    (["--hvp", "[1.0, 0.0]"], ["def energy_hvp(x):", "return hvp"]),
])
def test_show_prints_generated_source(model_file, capsys, flags, fragments):
    assert main(["show", f"{model_file}:energy", *flags, "--at", "[1.0, 2.0]"]) == 0
    out = capsys.readouterr().out
    for fragment in fragments:
        assert fragment in out, (fragment, out)


def test_show_reports_bad_targets(model_file):
    with pytest.raises(SystemExit, match="no function"):
        main(["show", f"{model_file}:missing", "--at", "1.0"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["show", "nowhere.py:f", "--at", "1.0"])
    with pytest.raises(SystemExit, match="literal"):
        main(["show", f"{model_file}:energy", "--at", "[1.0,"])


def test_the_list_of_supported_functions_is_generated_from_the_namespaces():
    """FUNCTIONS.md is `pullback functions`' output: regenerate it with
    `pullback functions > FUNCTIONS.md` when a function is added."""
    from pullback.cli import supported_functions
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "FUNCTIONS.md")
    with open(path) as fh:
        assert fh.read() == supported_functions() + "\n"
    assert "`logsumexp`" in supported_functions() and "`eig`, `eigh`" in supported_functions()
