"""bench/sweep_bench.py runs (tiny points here: the figures themselves are not checked, the
benchmark is for a quiet machine) and reports what it says it does."""

import json
import subprocess
import sys

from test_cli_schemas import ROOT


def test_sweep_bench_reports_both_rates():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "sweep_bench.py"), "--seeds", "1", "--json",
                        "--override", "workload.phases.0.stream.count=200", "--override", "events.0.count=2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["points"] == 4 and out["workers"] == 2
    assert out["serial_points_per_s"] == out["points"] / out["serial_s"]
    assert out["ratio"] == out["pool_points_per_s"] / out["serial_points_per_s"]
