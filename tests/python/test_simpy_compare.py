"""bench/simpy_compare.py: the bad-input path (the comparison itself installs SimPy from PyPI into
a temporary venv and is a benchmark for a quiet machine, so it is not run here)."""

import subprocess
import sys

from test_cli_schemas import ROOT


def test_missing_bench_binary_is_bad_input(tmp_path):
    missing = tmp_path / "no-such-bench"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "simpy_compare.py"), "--bench", str(missing)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert str(missing) in r.stderr and "no such file" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing created
