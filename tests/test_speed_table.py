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
