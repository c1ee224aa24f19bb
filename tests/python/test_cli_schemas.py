"""The kvmsim command as a user runs it: scenario files against the scenario schema, a run's
result document against the result schema, and bad input failing with status 2."""

import json
import os
import pathlib
import re
import subprocess

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KVMSIM = pathlib.Path(os.environ.get("KVMSIM_BIN", ROOT / "build" / "sim" / "kvmsim"))
SCHEMA = ROOT / "scenarios" / "schema"


def schema(name):
    return json.loads((SCHEMA / name).read_text())


def kvmsim(*args):
    return subprocess.run([str(KVMSIM), *map(str, args)], capture_output=True, text=True, timeout=300)


# Every scenario the project ships (scenarios/ but its schemas and host profiles) and the test data.
SCENARIOS = (sorted(p for p in (ROOT / "scenarios").rglob("*.json") if p.parent.name not in ("schema", "hosts"))
             + sorted(p for p in (ROOT / "tests" / "data").rglob("*.json") if "bad" not in p.relative_to(ROOT).parts))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_match_the_schema(path):
    jsonschema.validate(json.loads(path.read_text()), schema("scenario.schema.json"))


def test_every_shipped_scenario_validates():
    files = [p for p in SCENARIOS if p.is_relative_to(ROOT / "scenarios")]
    assert {p.parent.name for p in files} == {"seeds", "selftests", "published"}, "a new folder: document it in README"
    r = kvmsim("validate", *files)
    assert r.returncode == 0, r.stderr


def test_every_file_under_scenarios_is_documented():
    """scenarios/README.md lists every file under scenarios/ by its path, and nothing else: a
    temporary or forgotten file (a scenarios/ptt-tmp.json) fails here."""
    listing = (ROOT / "scenarios" / "README.md").read_text()
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "scenarios").rglob("*")
                   if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts)
    listed = sorted(set(re.findall(r"`(scenarios/[^`]+)`", listing)))
    assert files == listed, "scenarios/README.md lists what is under scenarios/, and only that"
    # Each is JSON; the schemas are valid JSON Schema.
    for f in files:
        json.loads((ROOT / f).read_text())
    for f in (ROOT / "scenarios" / "schema").glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(f.read_text()))


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "hosts").glob("*.json")), ids=lambda p: p.name)
def test_host_profiles_cite_a_source_for_every_cost(path):
    profile = json.loads(path.read_text())
    assert profile["costs"], "a host profile without costs"
    for name, cost in profile["costs"].items():
        assert cost.get("source", "").strip(), f"{name} has no source"
    for name, feature in profile.get("features", {}).items():
        assert isinstance(feature["value"], bool), f"feature {name} is not a bool"
        assert feature.get("source", "").strip(), f"feature {name} has no source"
    topology = profile["topology"]
    assert set(topology) == {"sockets", "cpus_per_socket", "line_local", "line_same_socket", "line_cross_socket",
                             "memory_bandwidth_per_socket"}
    for name, field in topology.items():
        assert field.get("source", "").strip(), f"topology {name} has no source"
    assert topology["sockets"]["value"] * topology["cpus_per_socket"]["value"] == profile["cpus"]


def test_a_run_writes_a_result_that_matches_the_schema(tmp_path):
    out = tmp_path / "result.json"
    r = kvmsim("run", ROOT / "tests" / "data" / "tdp-fault.json", "--json", out)
    assert r.returncode == 0, r.stderr
    assert "KVM_CREATE_MAPPINGS: total execution time:" in r.stdout
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, schema("result.schema.json"))
    assert doc["status"] == "completed"
    # x86_tdp's GUPs go through the host mm: its lines and the sockets' memory bandwidth; mmu_lock's word
    # (clearing the written pages: 4096 first touches of 4 KiB).
    assert sorted(l["name"] for l in doc["lines"]) == ["mmap_lock", "mmu_lock", "page_table_lock", "struct_page_refcount"]
    assert sum(b["bytes"] for b in doc["bandwidth"]) == doc["stats"]["host_zeroed_4k"] * 4096 >= 4096 * 4096
    assert all(p["lines"] or p["name"] != "KVM_CREATE_MAPPINGS" for p in doc["phases"])
    # Every exit's latency, per phase and for the run; the summary prints them.
    faults = doc["fault_latency_ns"]
    assert faults["count"] == doc["guest_exits"] >= 4096
    assert sum(p["fault_latency_ns"]["count"] for p in doc["phases"]) == faults["count"]
    assert max(p["fault_latency_ns"]["max"] for p in doc["phases"]) == faults["max"]
    assert 0 < faults["p50"] <= faults["p99"] <= faults["max"]
    assert "Fault latency (exit to return to the guest):" in r.stdout
    assert re.search(r"\n  KVM_CREATE_MAPPINGS +\d+ +\S+s +\S+s +\S+s\n", r.stdout)
    assert [p["name"] for p in doc["phases"] if p["selftest_metric"]] == [
        "KVM_CREATE_MAPPINGS", "KVM_UPDATE_MAPPINGS", "KVM_ADJUST_MAPPINGS"]
    # The same run again is bit-identical but for the wall time.
    out2 = tmp_path / "again.json"
    assert kvmsim("run", ROOT / "tests" / "data" / "tdp-fault.json", "--json", out2, "--quiet").returncode == 0
    again = json.loads(out2.read_text())
    doc.pop("wall_time_s")
    again.pop("wall_time_s")
    assert doc == again


def test_compare_of_two_results_matches_the_runs(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    data = ROOT / "tests" / "data" / "tdp-split.json"
    assert kvmsim("run", data, "--variant", "eager-split", "--json", a, "--quiet").returncode == 0
    assert kvmsim("run", data, "--variant", "no-eager-split", "--json", b, "--quiet").returncode == 0
    out = tmp_path / "cmp.json"
    r = kvmsim("compare", a, b, "--json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["variants"] == ["a.json", "b.json"]
    metrics = {m["name"]: m for m in doc["metrics"]}
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert metrics["stat pf_fixed"]["variants"]["a.json"]["mean"] == ra["stats"]["pf_fixed"]
    assert metrics["stat pf_fixed"]["variants"]["b.json"]["mean"] == rb["stats"]["pf_fixed"]
    for k in ("p50", "p99", "max"):
        m = metrics[f"fault latency {k}"]
        assert m["unit"] == "ns"
        assert m["variants"]["a.json"]["mean"] == ra["fault_latency_ns"][k]
        assert m["variants"]["b.json"]["mean"] == rb["fault_latency_ns"][k]
    # The table shows the worst case's change like any metric's.
    line = next(l for l in r.stdout.splitlines() if l.startswith("fault latency max"))
    before, after = ra["fault_latency_ns"]["max"], rb["fault_latency_ns"]["max"]
    assert line.split()[-1] == f"{(after - before) / before * 100:+.2f}%"


def test_compare_gives_the_same_table_on_one_worker_and_on_two(tmp_path):
    data = ROOT / "tests" / "data" / "tdp-zap.json"
    one = kvmsim("compare", data, "--seeds", "2", "--jobs", "1", "--json", tmp_path / "one.json")
    two = kvmsim("compare", data, "--seeds", "2", "--jobs", "2", "--json", tmp_path / "two.json")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert one.stdout == two.stdout
    a, b = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert a == b
    assert len(a["seeds"]) == 2


def test_compare_runs_a_seed_independent_variant_once(tmp_path):
    data = ROOT / "tests" / "data" / "tdp-split.json"
    r = kvmsim("compare", data, "--seeds", "3", "--json", tmp_path / "c.json")
    assert r.returncode == 0, r.stderr
    assert "one run stands for all 3 seeds" in r.stderr
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["seeds"] == [doc["seeds"][0] + i for i in range(3)]
    # Every seed's run is the same run: no spread.
    for m in doc["metrics"]:
        for v in m["variants"].values():
            assert v["stdev"] <= 1e-9 * abs(v["mean"])


@pytest.mark.parametrize(
    "edit, pointer",
    [
        (lambda d: d["mmu"].update(model="x86_tpd"), "/mmu/model"),
        (lambda d: d["vm"].update(vcpus="four"), "/vm/vcpus"),
        (lambda d: d["events"][0].update(op="nested_start"), "/events/0/op"),  # x86_tdp has no nested MMU
        (lambda d: d.update(sede=1), "(root)"),
        (lambda d: d["mmu"].setdefault("knobs", {}).update(fault_split="split"), "/mmu/knobs/fault_split"),
        (lambda d: d["mmu"].setdefault("knobs", {}).update(tdp_mmu_fast_page_fault="no"),
         "/mmu/knobs/tdp_mmu_fast_page_fault"),
    ],
)
def test_bad_input_names_file_and_pointer_and_exits_2(tmp_path, edit, pointer):
    doc = json.loads((ROOT / "tests" / "data" / "tdp-zap.json").read_text())
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    r = kvmsim("run", path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{path}: {pointer}: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
