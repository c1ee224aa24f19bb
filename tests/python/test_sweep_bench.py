"""bench/sweep_bench.py runs (tiny points here: the figures themselves are not checked, the
benchmark is for a quiet machine) and reports what it says it does."""

import json
import subprocess
import sys

from test_cli_schemas import ROOT

SMALL = ["--override", "workload.phases.0.stream.count=200", "--override", "events.0.count=2"]


def bench(*args):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "sweep_bench.py"), "--json", *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_sweep_bench_reports_both_rates(tmp_path):
    record = tmp_path / "bench.jsonl"
    out = bench("--seeds", "1", "--grid", "none", "--record", str(record), *SMALL)
    assert out["points"] == 4 and out["workers"] == 2
    assert out["serial_points_per_s"] == out["points"] / out["serial_s"]
    assert out["ratio"] == out["pool_points_per_s"] / out["serial_points_per_s"]
    assert 0 < out["balance_bound"] <= 2 and out["pool_point_slowdown"] > 0
    assert len(out["load_before"]) == 3 and out["build_id"]
    assert json.loads(record.read_text()) == out  # recorded as printed


def test_the_default_workload_is_the_sweep_study():
    """The notebook's sweep: vm.vcpus 2..32 under every variant (here with 1 seed and tiny points)."""
    out = bench("--seeds", "1", "--start-method", "spawn", *SMALL)
    assert out["grid"] == {"vm.vcpus": [2, 4, 8, 16, 32]}
    assert out["points"] == 5 * 4 and out["start_method"] == "spawn"
