"""benchmarks/speed_table.py (issue 12's side-by-side table) runs and checks its values: a
smoke test on its two small problems, the columns that need no peer library. It runs as a
script: loading it here would put benchmarks/ on sys.path (through fused.py)."""
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "speed_table.py")


def test_speed_table_runs_on_the_small_problems(tmp_path):
    output = tmp_path / "speed_table.md"
    subprocess.run([sys.executable, SCRIPT, "--quick", "--passes", "1", "--output", str(output),
                    "--libraries", "pullback eager,pullback jit (NumPy),hand NumPy"],
                   check=True, capture_output=True, text=True)
    text = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 100 elementwise")
            or line.startswith("| Rosenbrock n = 10,")]
    assert len(rows) == 2 + 2, text                     # the table and the first calls
    assert "wrong" not in text and "Not run" not in text, text
    for line in rows[:2]:
        cells = [c.strip() for c in line.split("|")[2:5]]
        assert all(float(c.replace(",", "")) > 0 for c in cells), line


def test_item1_speed_table_measures_both_jit_tiers_in_one_process(tmp_path):
    """pullback jit's NumPy and fused columns come from one process, their samples taken
    in turn: in two processes, rows where the fused tier installs no kernel (the same
    function in both) differed by up to a third."""
    output = tmp_path / "speed_table.md"
    run = subprocess.run([sys.executable, SCRIPT, "--quick", "--passes", "1", "--output",
                          str(output), "--libraries", "pullback jit (NumPy),pullback jit (fused)"],
                         check=True, capture_output=True, text=True)
    assert run.stderr.splitlines() == ["pullback jit (NumPy),pullback jit (fused) ..."], run.stderr
    text = output.read_text()
    assert "wrong" not in text and "Not run" not in text, text
    rows = [line for line in text.splitlines() if line.startswith("| 100 elementwise")
            or line.startswith("| Rosenbrock n = 10,")]
    assert len(rows) == 2 + 2, text
    for line in rows:
        cells = [c.strip() for c in line.split("|")[2:4]]
        assert all(float(c.replace(",", "")) > 0 for c in cells), line
    assert all(line.split("|")[-2].strip().isdigit() for line in rows[2:]), text   # kernels


def test_item12_speed_table_interleaves_the_libraries_samples(tmp_path):
    """The libraries' samples of a row are taken in turn, all processes alive, so that
    they meet the same machine: measured one process after another, the host's slow
    stretches (minutes long) decided which library won a row."""
    output = tmp_path / "speed_table.md"
    subprocess.run([sys.executable, SCRIPT, "--quick", "--passes", "1", "--output", str(output),
                    "--libraries", "pullback eager,pullback jit (NumPy),hand NumPy"],
                   check=True, capture_output=True, text=True)
    text = output.read_text()
    span = float(text.split("a row's samples, all libraries, within ")[1].split(" s")[0])
    assert 0 < span < 5, text      # 3 libraries x 3 samples of 0.02 s (+ a call each)


def test_a_column_or_row_it_does_not_have_is_an_error(tmp_path):
    """A misspelt column or row used to measure nothing and write a table of dashes."""
    output = tmp_path / "speed_table.md"
    for option in (["--libraries", "jax"], ["--rows", "no such row"]):
        run = subprocess.run([sys.executable, SCRIPT, "--quick", "--passes", "1",
                              "--output", str(output), *option], capture_output=True, text=True)
        assert run.returncode == 2 and "error:" in run.stderr, run.stderr
        assert not output.exists()
