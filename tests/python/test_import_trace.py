"""kvmsim import-trace (sim/trace/import.hpp) and kvmsim.import_trace: recorded traces to scenarios,
the recorded figures beside the simulated ones, and the malformed-trace corpus
(tests/data/traces/bad, each file saying what it expects on its "# expect:" line)."""

import json
import re

import jsonschema
import pytest

import kvmsim
from test_cli_schemas import ROOT, kvmsim as cli, schema

TRACES = ROOT / "tests" / "data" / "traces"
GOOD = sorted(TRACES.glob("*.txt"))
BAD = sorted((TRACES / "bad").glob("*.txt"))


def expectation(path):
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        m = re.match(r'# expect: error (\d+) (.*)$', line)
        if m:
            return "error", int(m.group(1)), m.group(2)
        m = re.match(r'# expect: skipped "(.*)" (\d+)$', line)
        if m:
            return "skipped", m.group(1), int(m.group(2))
    raise AssertionError(f"{path}: no '# expect:' line")


def test_there_is_a_corpus():
    assert len(GOOD) >= 4 and len(BAD) >= 12


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_a_trace_imports_to_a_scenario_that_validates_and_runs(path, tmp_path):
    out = tmp_path / "s.json"
    p = cli("import-trace", path, "-o", out)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, schema("scenario.schema.json"))
    assert doc["recorded"]["whole"]["faults"]["total"] > 0
    streams = doc["workload"]["phases"][0]["streams"]
    assert len(streams) == doc["vm"]["vcpus"]
    assert sum(len(s["accesses"]) for s in streams) == doc["recorded"]["whole"]["faults"]["total"]
    r = cli("run", out, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "Fault latency, recorded" in r.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(result, schema("result.schema.json"))
    assert result["recorded"]["whole"]["latency_ns"] == {
        k: v for k, v in doc["recorded"]["whole"]["latency_ns"].items() if k != "mean"}
    # Every recorded page fault that is not spurious is an exit in the simulation too, or a hit
    # on a page another fault mapped: never more exits than accesses.
    assert 0 < result["guest_exits"] <= result["guest_accesses"] == doc["recorded"]["whole"]["faults"]["total"]


def test_the_older_formats_give_their_one_fault():
    # Laid out as gvisor#6757's excerpt: one EPT violation, qualification 0x181 (a read of a page
    # not present).
    doc = kvmsim.import_trace(TRACES / "gvisor-6757-ept.txt")
    s = doc["workload"]["phases"][0]["streams"][0]
    # The excerpt ends in KVM and userspace (kvm_userspace_exit): no guest time after the fault.
    assert s["accesses"] == [[0x7F0A12345000, "read", "0ns"]]
    assert s["start_delay"] == "25000ns"  # in the guest from kvm_entry (100 us) to kvm_exit (125 us)
    assert doc["recorded"]["vcpu_ids"] == [2]
    w = doc["recorded"]["whole"]
    assert w["faults"]["not_present"] == 1 and w["faults"]["read"] == 1
    assert w["latency_ns"]["count"] == 0  # the excerpt ends before the exit's kvm_entry
    assert w["exits"] == {"EPT_VIOLATION": 1}
    assert doc["recorded"]["source"]["skipped"] == {"event kvm_fpu": 2, "event kvm_userspace_exit": 2}


def test_trace_cmd_and_perf_text_of_the_same_run_give_the_same_workload():
    a = kvmsim.import_trace(TRACES / "x86-tdp-2vcpu.txt")
    b = kvmsim.import_trace(TRACES / "x86-perf.txt")
    pages = lambda d: [[x[0], x[1]] for s in d["workload"]["phases"][0]["streams"] for x in s["accesses"]]
    assert pages(a) == pages(b)
    assert a["recorded"]["whole"]["faults"] == b["recorded"]["whole"]["faults"]
    assert a["recorded"]["whole"]["faults"]["mmio"] == 1
    assert a["recorded"]["whole"]["faults"]["spurious"] > 0
    assert b["recorded"]["source"]["format"] == "perf"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_the_malformed_corpus(path, tmp_path):
    kind, a, b = expectation(path)
    out = tmp_path / "s.json"
    p = cli("import-trace", path, "-o", out)
    if kind == "error":
        line, text = a, b
        assert p.returncode == 2, p.stdout
        where = f"{path}:{line}: " if line else f"{path}: "
        assert p.stderr.startswith(where), p.stderr
        assert text in p.stderr
        assert "internal error" not in p.stderr
        with pytest.raises(kvmsim.TraceError) as e:
            kvmsim.import_trace(path)
        assert e.value.line == line and e.value.file == str(path)
    else:
        why, n = a, b
        assert p.returncode == 0, p.stderr
        assert f"skipped {n}: {why}" in p.stdout
        assert json.loads(out.read_text())["recorded"]["source"]["skipped"][why] == n
    assert sorted(x.name for x in tmp_path.iterdir()) == ([] if kind == "error" else ["s.json"])


def test_import_is_deterministic_and_replaces_only_the_named_output(tmp_path):
    out = tmp_path / "s.json"
    out.write_text("old")
    assert cli("import-trace", TRACES / "arm64-stage2.txt", "-o", out).returncode == 0
    first = out.read_bytes()
    assert cli("import-trace", TRACES / "arm64-stage2.txt", "-o", out).returncode == 0
    assert out.read_bytes() == first
    assert [x.name for x in tmp_path.iterdir()] == ["s.json"]
    doc = json.loads(first)
    assert doc["mmu"]["model"] == "arm64_stage2" and doc["host"]["profile"] == "kunpeng-920"


@pytest.mark.parametrize("args,message", [
    ([], "-o SCENARIO.json is required"),
    (["-o", "OUT", "--model", "x86_tpd"], 'unknown MMU model "x86_tpd" (did you mean "x86_tdp"?)'),
    (["-o", "OUT", "--host", "../x"], "--host: expected a host profile name"),
    (["-o", "OUT", "--backing", "thp"], "--backing: unknown backing"),
    (["-o", "OUT", "--window", "0ns"], "--window: expected at least 1ns"),
    (["-o", "NODIR/s.json"], "-o"),
])
def test_usage_errors(args, message, tmp_path):
    args = [str(tmp_path / a) if a in ("OUT", "NODIR/s.json") else a for a in args]
    p = cli("import-trace", TRACES / "x86-tdp-2vcpu.txt", *args)
    assert p.returncode == 2
    assert message in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_model_host_and_window_options(tmp_path):
    doc = kvmsim.import_trace(TRACES / "x86-tdp-2vcpu.txt", model="x86_shadow", window="100us", name="w")
    assert doc["name"] == "w" and doc["mmu"]["model"] == "x86_shadow"
    names = [p["name"] for p in doc["workload"]["phases"]]
    assert len(names) > 3 and names[0] == "window 0"
    assert [p["name"] for p in doc["recorded"]["phases"]] == names
    assert sum(p["faults"]["total"] for p in doc["recorded"]["phases"]) == doc["recorded"]["whole"]["faults"]["total"]
    r = kvmsim.run(kvmsim.load(doc))
    assert [p["name"] for p in r.phases] == names
    with pytest.raises(ValueError, match="window"):
        kvmsim.import_trace(TRACES / "x86-tdp-2vcpu.txt", window="soon")


def test_a_what_if_changes_the_simulated_figures_not_the_recorded_ones(tmp_path):
    out = tmp_path / "s.json"
    kvmsim.import_trace(TRACES / "x86-tdp-2vcpu.txt", out)
    base = kvmsim.run(kvmsim.load(out))
    what_if = kvmsim.run(kvmsim.load(out), overrides={"vm.memslots.0.backing": "anonymous_thp"})
    assert base.doc["recorded"] == what_if.doc["recorded"]
    assert base.fingerprint != what_if.fingerprint
    assert base.fault_latency["count"] > 0
