"""Traces and diff: a structural checker for the Chrome trace-event files kvmsim writes,
run over traces of every seed scenario, and diff on identical and diverging runs."""

import json
import pathlib
import re

import pytest

from test_cli_schemas import KVMSIM, ROOT, kvmsim

TS = re.compile(r'"ts":(-?\d+(\.\d+)?)')


def check_trace(path):
    """Returns the events; fails on any structural fault."""
    text = pathlib.Path(path).read_text()
    doc = json.loads(text)  # valid JSON
    events = doc["traceEvents"]
    for m in TS.finditer(text):  # microseconds, at most three decimals (exact nanoseconds)
        assert m.group(2) is None or len(m.group(2)) <= 4, m.group(0)
    last_ts, stacks, asyncs, flows = {}, {}, {}, {}
    for e in events:
        ph = e["ph"]
        if ph == "M":
            continue
        track = (e.get("pid"), e.get("tid")) if ph != "C" else ("counter", e["name"])
        ts = e["ts"]
        assert ts >= last_ts.get(track, float("-inf")), f"time goes back on {track}: {e}"
        last_ts[track] = ts
        if ph == "B":
            stacks.setdefault(track, []).append(ts)
        elif ph == "E":
            assert stacks.get(track), f"E without B on {track}: {e}"
            assert ts >= stacks[track].pop()
        elif ph == "b":
            key = (e["cat"], e["id"])
            assert key not in asyncs, f"async id reused while open: {e}"
            asyncs[key] = (ts, e["name"])
        elif ph == "e":
            # Viewers match an async end to its begin by category, id and name.
            key = (e["cat"], e["id"])
            assert key in asyncs, f"async end without begin: {e}"
            begin_ts, begin_name = asyncs.pop(key)
            assert e["name"] == begin_name, f"async end named otherwise than its begin ({begin_name!r}): {e}"
            assert ts >= begin_ts
        elif ph == "s":
            flows[e["id"]] = ts
        elif ph == "f":
            assert e["id"] in flows, f"flow end without start: {e}"
            assert ts >= flows.pop(e["id"])
        elif ph == "C":
            assert isinstance(e["args"]["value"], (int, float))
        else:
            pytest.fail(f"unexpected phase {ph}")
    assert all(not s for s in stacks.values()), "unclosed slices"
    assert not asyncs, "unclosed async slices"
    assert not flows, "flows without an end"
    return events


def variants_of(path):
    doc = json.loads(path.read_text())
    return [v["name"] for v in doc.get("variants", [])] or [None]


SEEDS = [(p, v) for p in sorted((ROOT / "scenarios" / "seeds").glob("*.json")) for v in variants_of(p)]


@pytest.mark.parametrize("path, variant", SEEDS, ids=lambda x: x.name if isinstance(x, pathlib.Path) else str(x))
def test_traces_of_every_seed_scenario_are_well_formed(tmp_path, path, variant):
    out = tmp_path / "trace.json"
    # 1 GiB pages: the first fault reaches mmu_lock after zeroing its page (about 50 ms).
    window = "200ms" if "anonymous_hugetlb_1gb" in path.read_text() else "2ms"
    args = ["run", path, "--quiet", "--trace", out, "--trace-to", window, "--until", window]
    if variant:
        args += ["--variant", variant]
    r = kvmsim(*args)
    assert r.returncode == 0, r.stderr
    events = check_trace(out)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "vcpu0" in names and "vmm" in names
    assert any(n.startswith("lock mmu_lock") for n in names)
    assert any(e["ph"] == "B" and e.get("name") == "kvm_page_fault" for e in events)


def test_a_full_trace_is_well_formed_and_does_not_change_the_run(tmp_path):
    scenario = ROOT / "tests" / "data" / "tdp-zap.json"
    plain, traced = tmp_path / "plain.json", tmp_path / "traced.json"
    assert kvmsim("run", scenario, "--quiet", "--json", plain).returncode == 0
    r = kvmsim("run", scenario, "--quiet", "--json", traced, "--trace", tmp_path / "t.json")
    assert r.returncode == 0, r.stderr
    events = check_trace(tmp_path / "t.json")
    assert json.loads(plain.read_text())["fingerprint"] == json.loads(traced.read_text())["fingerprint"]
    phases = {e["ph"] for e in events}
    assert {"B", "E", "b", "e", "s", "f", "C"} <= phases  # slices, async lock slices, flows, counters
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert {"pages_4k", "remote_tlb_flush", "mmu_lock waiters"} <= counters
    # Handler slices sit inside the fault, the fault beside the guest slices, inside the stage.
    stacks, parents = {}, {}
    for e in events:
        if e["ph"] == "B":
            st = stacks.setdefault((e["pid"], e["tid"]), [])
            parents.setdefault(e["name"], set()).add(st[-1] if st else None)
            st.append(e["name"])
        elif e["ph"] == "E":
            stacks[(e["pid"], e["tid"])].pop()
    assert parents["kvm_tdp_mmu_map"] == {"kvm_page_fault"}
    assert parents["kvm_faultin_pfn"] == {"kvm_page_fault"}
    assert parents["kvm_page_fault"] == {"boot"}
    assert parents["guest"] == {"boot"}


def test_a_trace_can_be_limited_to_some_vcpus(tmp_path):
    out = tmp_path / "t.json"
    r = kvmsim("run", ROOT / "tests" / "data" / "tdp-zap.json", "--quiet", "--trace", out, "--trace-vcpus", "0,2")
    assert r.returncode == 0, r.stderr
    events = check_trace(out)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"vcpu0", "vcpu2"} <= names
    assert not {"vcpu1", "vcpu3"} & names


def test_diff_finds_a_planted_divergence_and_reports_identical_runs(tmp_path):
    scenario = ROOT / "tests" / "data" / "tdp-zap.json"
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert kvmsim("run", scenario, "--quiet", "--events", a).returncode == 0
    assert kvmsim("run", scenario, "--quiet", "--events", b).returncode == 0
    # The planted divergence: one knob differs, so the zap takes another path.
    assert kvmsim("run", scenario, "--quiet", "--variant", "read", "--events", c).returncode == 0
    same = kvmsim("diff", a, b)
    assert same.returncode == 0
    assert same.stdout.startswith("identical: ")
    differ = kvmsim("diff", a, c)
    assert differ.returncode == 1
    first = json.loads(a.read_text())["events"]
    other = json.loads(c.read_text())["events"]
    k = next(i for i, (x, y) in enumerate(zip(first, other)) if x != y)
    assert differ.stdout.startswith(f"runs diverge at event {k} ")
    assert "mtrr_zap" in differ.stdout


@pytest.mark.parametrize(
    "events",
    [
        [{"ph": "E", "pid": 1, "tid": 1, "ts": 1}],  # end without begin
        [{"ph": "B", "pid": 1, "tid": 1, "ts": 1, "name": "x"}],  # never closed
        [{"ph": "B", "pid": 1, "tid": 1, "ts": 2, "name": "x"}, {"ph": "E", "pid": 1, "tid": 1, "ts": 1}],  # time back
        [{"ph": "b", "cat": "c", "id": 1, "pid": 1, "tid": 1, "ts": 1, "name": "x"}],  # async open
        [{"ph": "f", "id": 7, "pid": 1, "tid": 1, "ts": 1, "bp": "e"}],  # flow end alone
        [{"ph": "X", "pid": 1, "tid": 1, "ts": 1}],  # a phase kvmsim never writes
    ],
)
def test_the_checker_rejects_broken_traces(tmp_path, events):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"traceEvents": events}))
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check_trace(path)
