"""The kvmsim package: load, run and Result against the kvmsim command, overrides, errors as
exceptions, and the GIL released during a run."""

import json
import pickle
import subprocess
import sys
import threading

import pytest

import kvmsim
from kvmsim import _core
from test_cli_schemas import ROOT, kvmsim as cli

ZAP = ROOT / "tests" / "data" / "tdp-zap.json"
SEED003 = ROOT / "scenarios" / "seeds" / "003-zap-gfn-range.json"


def without_wall(text):
    return [line for line in text.splitlines() if '"wall_time_s"' not in line]


def test_run_gives_the_document_of_kvmsim_run_json(tmp_path):
    out = tmp_path / "cli.json"
    assert cli("run", ZAP, "--variant", "read", "--seed", "3", "--json", out, "--quiet").returncode == 0
    r = kvmsim.run(ZAP, variant="read", seed=3)
    # The same bytes, but for the wall time.
    assert without_wall(r.json) == without_wall(out.read_text())
    assert r.fingerprint == json.loads(out.read_text())["fingerprint"]
    assert (r.variant, r.seed, r.status) == ("read", 3, "completed")


def test_seeds_and_variants_change_the_run_and_repeat_exactly():
    a = kvmsim.run(ZAP, seed=1)
    assert kvmsim.run(ZAP, seed=1).doc | {"wall_time_s": 0} == a.doc | {"wall_time_s": 0}
    assert kvmsim.run(ZAP, seed=2).fingerprint != a.fingerprint
    assert kvmsim.run(ZAP, variant="read", seed=1).fingerprint != a.fingerprint
    assert a.variant == "write"  # the baseline by default


def test_a_dict_loads_like_the_file():
    doc = json.loads(ZAP.read_text())
    sc = kvmsim.load(doc)
    assert sc.file == "<dict>" and sc.variants == ["write", "write+precheck", "read", "drop_write_zap_read"]
    assert kvmsim.run(doc, variant="read").fingerprint == kvmsim.run(ZAP, variant="read").fingerprint


def test_load_summarises_the_scenario_with_overrides_applied():
    sc = kvmsim.load(ZAP, overrides={"vm.vcpus": 2, "mmu.knobs.zap_lock": "read"})
    assert sc.name == "golden-tdp-zap" and sc.model == "x86_tdp"
    assert sc.info["vcpus"] == 2
    assert sc.knobs["zap_lock"] == "read" and sc.knobs["fault_precheck"] is False
    assert len(sc.sha256) == 64


def test_overrides_equal_an_edited_file(tmp_path):
    doc = json.loads(ZAP.read_text())
    doc["vm"]["vcpus"] = 2
    doc["vm"]["memslots"][0]["size"] = "8M"
    doc["events"][0]["count"] = 3
    edited = tmp_path / "edited.json"  # no hosts/ beside it: the profile comes from scenarios/hosts
    edited.write_text(json.dumps(doc))
    over = {"vm.vcpus": 2, "vm.memslots.0.size": "8M", "events.0.count": 3}
    a = kvmsim.run(ZAP, overrides=over)
    b = kvmsim.run(edited)
    assert a.fingerprint == b.fingerprint and a.stats == b.stats
    assert a.fingerprint != kvmsim.run(ZAP).fingerprint
    assert a.overrides == over


def test_overrides_apply_after_the_variant():
    # The "read" variant patches zap_lock to "read"; the override sets it back to the base's.
    a = kvmsim.run(ZAP, variant="read", overrides={"mmu.knobs.zap_lock": "write"})
    assert a.fingerprint == kvmsim.run(ZAP, variant="write").fingerprint
    assert a.variant == "read"


@pytest.mark.parametrize(
    "overrides, path, expect",
    [
        ({"vm.vcpu": 4}, "vm.vcpu", '/vm: unknown key "vcpu" (did you mean "vcpus"?)'),
        ({"vm.vcpus": "many"}, "vm.vcpus", '/vm/vcpus: expected an integer between 1 and 4096, got "many"'),
        ({"vm.memslots.0.size": "16Q"}, "vm.memslots.0.size", "/vm/memslots/0/size: expected a size"),
        ({"vm.memslots.2.size": "16M"}, "vm.memslots.2.size", "/vm/memslots is an array of 1 elements"),
        ({"mmu.knobs.zap_lock": "sideways"}, "mmu.knobs.zap_lock", 'got "sideways"'),
        ({"host.costs.fault_entri": "1us"}, "host.costs.fault_entri", 'did you mean "fault_entry"?'),
    ],
)
def test_a_bad_override_is_an_error_naming_it(overrides, path, expect):
    with pytest.raises(kvmsim.GridError) as info:
        kvmsim.run(ZAP, overrides=overrides)
    e = info.value
    assert e.path == path and e.value == overrides[path]
    assert expect in str(e) and str(e).startswith(f"override {path!r} = ")
    assert e.file == str(ZAP) and e.pointer.startswith("/")
    with pytest.raises(kvmsim.GridError):
        kvmsim.load(ZAP, overrides=overrides)


def test_a_bad_path_string_is_an_error():
    with pytest.raises(kvmsim.GridError, match="expected a scenario path"):
        kvmsim.run(ZAP, overrides={"vm..vcpus": 2})
    assert kvmsim.to_pointer("host.costs.a/b") == "/host/costs/a~1b"
    assert kvmsim.to_pointer("/vm/vcpus") == "/vm/vcpus"


def test_load_errors_are_exceptions_with_file_and_pointer(tmp_path):
    bad = tmp_path / "bad.json"
    doc = json.loads(ZAP.read_text())
    doc["mmu"]["model"] = "x86_tpd"
    bad.write_text(json.dumps(doc))
    with pytest.raises(kvmsim.ScenarioError) as info:
        kvmsim.load(bad)
    e = info.value
    assert isinstance(e, ValueError)
    assert (e.file, e.pointer, e.kind) == (str(bad), "/mmu/model", "located")
    assert e.message == 'unknown MMU model "x86_tpd" (did you mean "x86_tdp"?)'
    assert str(e) == f"{bad}: /mmu/model: {e.message}"
    # The same line the command prints.
    assert cli("validate", bad).stderr.strip() == str(e)
    # Survives pickling (it crosses process boundaries in a sweep).
    again = pickle.loads(pickle.dumps(e))
    assert (type(again), again.file, again.pointer, again.message, str(again)) == \
        (kvmsim.ScenarioError, e.file, e.pointer, e.message, str(e))


def test_syntax_and_file_errors(tmp_path):
    bad = tmp_path / "syntax.json"
    bad.write_text('{\n  "name": "x"\n  "seed": 1\n}')
    with pytest.raises(kvmsim.ScenarioError) as info:
        kvmsim.load(bad)
    assert (info.value.kind, info.value.line, info.value.column, info.value.pointer) == ("syntax", 3, 3, "")
    with pytest.raises(kvmsim.ScenarioError, match="cannot open the file") as info:
        kvmsim.load(tmp_path / "missing.json")
    assert info.value.kind == "file" and info.value.file == str(tmp_path / "missing.json")
    with pytest.raises(kvmsim.ScenarioError, match="not JSON data"):
        kvmsim.load({"name": object()})


def test_several_errors_are_all_listed(tmp_path):
    doc = json.loads(ZAP.read_text())
    doc["vm"]["bogus1"] = 1
    doc["vm"]["bogus2"] = 2
    with pytest.raises(kvmsim.ScenarioError) as info:
        kvmsim.load(doc)
    assert [x["pointer"] for x in info.value.errors] == ["/vm", "/vm"]
    assert "bogus1" in str(info.value) and "bogus2" in str(info.value)


def test_bad_variant_and_seed():
    with pytest.raises(kvmsim.ScenarioError, match="did you mean 'read'"):
        kvmsim.load(ZAP, variant="reed")
    with pytest.raises(kvmsim.ScenarioError, match='no variant "reed"'):
        kvmsim.run(ZAP, variant="reed")
    for seed in (-1, 2**64, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            kvmsim.run(ZAP, seed=seed)


def test_result_as_dicts_and_frames():
    r = kvmsim.run(SEED003, variant="read-lock", overrides={"workload.phases.0.stream.count": 500})
    assert r.stats_df["total"].to_dict() == r.stats
    assert list(r.stats_df.columns) == [p["name"] for p in r.phases] + ["total"]
    total = r.locks_df[r.locks_df.phase == "total"]
    assert total[["lock", "mode", "site", "acquisitions", "contended"]].to_dict("records") == [
        {k: lk[k] for k in ("lock", "mode", "site", "acquisitions", "contended")} for lk in r.locks]
    assert list(total["wait_ns_sum"]) == [lk["wait_ns"]["sum"] for lk in r.locks]
    caches = r.caches_df[r.caches_df.phase == "total"].set_index("level")
    assert caches["misses"].to_dict() == {k: v["misses"] for k, v in r.caches.items() if isinstance(v, dict)}
    assert list(r.phases_df.index) == [p["name"] for p in r.phases]
    assert r.phases_df["sim_time_ns"].tolist() == [p["sim_time_ns"] for p in r.phases]
    assert r.metrics["stat pf_fixed"] == r.stats["pf_fixed"]
    assert r.metrics["phase boot"] == r.phases[0]["sim_time_ns"]
    assert r.metrics_df.loc["lock mmu_lock read @kvm_tdp_mmu_page_fault wait", "value"] == next(
        lk["wait_ns"]["sum"] for lk in r.locks if lk["mode"] == "read" and lk["site"] == "kvm_tdp_mmu_page_fault")
    assert r.units["phase boot"] == "ns" and r.units["stat pf_fixed"] == "count"
    back = pickle.loads(pickle.dumps(r))
    assert back.json == r.json and back.overrides == r.overrides


def test_result_lines_and_bandwidth_frames():
    import jsonschema
    from test_cli_schemas import schema
    doc = kvmsim.run(ZAP).doc
    wait = {"sum": 360.0, "p50": 120.0, "p99": 180.0, "max": 180.0}
    line = {"name": "struct_page_refcount", "operations": 4, "contended": 3, "wait_ns": wait}
    bw = {"name": "memory_bandwidth", "bytes": 4000000, "transfers": 3, "busy_ns": 4000000.0, "peak_concurrency": 2}
    doc["phases"][0]["lines"] = [line]
    doc["phases"][0]["bandwidth"] = [bw]
    doc["lines"] = [line]
    doc["bandwidth"] = [bw]
    jsonschema.validate(doc, schema("result.schema.json"))
    r = kvmsim.Result(json.dumps(doc))
    first = doc["phases"][0]["name"]
    assert r.lines_df.to_dict("records") == [
        {"phase": phase, "line": "struct_page_refcount", "operations": 4, "contended": 3, "wait_ns_sum": 360.0,
         "wait_ns_p50": 120.0, "wait_ns_p99": 180.0, "wait_ns_max": 180.0} for phase in (first, "total")]
    assert r.bandwidth_df.to_dict("records") == [
        {"phase": phase, "resource": "memory_bandwidth", "bytes": 4000000, "transfers": 3, "busy_ns": 4000000.0,
         "peak_concurrency": 2} for phase in (first, "total")]
    assert r.metrics["line struct_page_refcount wait"] == 360.0
    assert r.metrics["bandwidth memory_bandwidth busy"] == 4000000.0
    assert r.units["line struct_page_refcount wait"] == "ns"
    # A document written before lines and bandwidth were reported: empty frames.
    for p in doc["phases"]:
        p.pop("lines"), p.pop("bandwidth")
    doc.pop("lines"), doc.pop("bandwidth")
    old = kvmsim.Result(json.dumps(doc))
    assert old.lines == [] and old.lines_df.empty and old.bandwidth_df.empty
    assert list(old.bandwidth_df.columns) == ["phase", "resource", "bytes", "transfers", "busy_ns", "peak_concurrency"]


def test_result_fault_latency_frame():
    import jsonschema
    from test_cli_schemas import schema
    r = kvmsim.run(ZAP)
    jsonschema.validate(r.doc, schema("result.schema.json"))
    df = r.fault_latency_df
    assert list(df.index) == [p["name"] for p in r.phases] + ["total"]
    assert list(df.columns) == ["count", "sum_ns", "p50_ns", "p99_ns", "max_ns"]
    assert str(df["count"].dtype) == "int64" and all(str(df[c].dtype) == "float64" for c in df.columns[1:])
    total = r.doc["fault_latency_ns"]
    assert r.fault_latency == total
    assert df.loc["total"].to_dict() == {"count": total["count"], "sum_ns": total["sum"], "p50_ns": total["p50"],
                                         "p99_ns": total["p99"], "max_ns": total["max"]}
    # Every exit is a fault with a latency; the run is the merge of its phases.
    assert total["count"] == r.doc["guest_exits"] > 0
    phases = df.drop(index="total")
    assert phases["count"].sum() == total["count"]
    assert phases["sum_ns"].sum() == pytest.approx(total["sum"], rel=1e-12)
    assert phases["max_ns"].max() == total["max"]
    assert 0 < total["p50"] <= total["p99"] <= total["max"]
    # The comparison metrics are the run's.
    assert [r.metrics[f"fault latency {k}"] for k in ("p50", "p99", "max")] == [total[k] for k in ("p50", "p99", "max")]
    assert r.units["fault latency p99"] == "ns"
    # A document written before fault latencies were reported: an empty frame, no metrics.
    doc = r.doc
    for p in doc["phases"]:
        p.pop("fault_latency_ns")
    doc.pop("fault_latency_ns")
    jsonschema.validate(doc, schema("result.schema.json"))
    old = kvmsim.Result(json.dumps(doc))
    assert old.fault_latency == {} and old.fault_latency_df.empty
    assert list(old.fault_latency_df.columns) == ["count", "sum_ns", "p50_ns", "p99_ns", "max_ns"]
    assert not [m for m in old.metrics if m.startswith("fault latency")]


def test_result_save_and_from_file_round_trip(tmp_path):
    r = kvmsim.run(ZAP)
    r.save(tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text() == r.json
    assert kvmsim.Result.from_file(tmp_path / "r.json").fingerprint == r.fingerprint
    assert list(tmp_path.iterdir()) == [tmp_path / "r.json"]  # no temporary left behind


def test_run_releases_the_gil():
    """A thread observes a run in progress: possible only if the run released the GIL (the
    counter is raised after the release and lowered before the GIL is taken back)."""
    observed = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if _core.runs_in_progress() > 0:
                observed.append(True)
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(20):  # a run lasts ~0.1 s; the watcher needs a single look during one
            kvmsim.run(ZAP)
            if observed:
                break
    finally:
        stop.set()
        watcher.join()
    assert observed, "no other thread ran while kvmsim.run() was running"
    assert _core.runs_in_progress() == 0


def test_runs_in_threads_give_the_same_results():
    from concurrent.futures import ThreadPoolExecutor
    seeds = [1, 2, 3, 4]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda s: kvmsim.run(ZAP, seed=s).fingerprint, seeds))
    assert threaded == [kvmsim.run(ZAP, seed=s).fingerprint for s in seeds]
    assert len(set(threaded)) == len(seeds)


def test_python_dash_m_kvmsim_runs_the_command():
    r = subprocess.run([sys.executable, "-m", "kvmsim", "run", str(ZAP), "--variant", "read", "--seed", "3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"fingerprint {kvmsim.run(ZAP, variant='read', seed=3).fingerprint}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "kvmsim", "list"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "x86-server" in r.stdout
    # The older-kernel knobs of x86_tdp are listed with their choices and defaults.
    assert "fault_split" in r.stdout and "tdp_mmu_fast_page_fault" in r.stdout


def test_a_file_with_a_byte_order_mark_loads(tmp_path):
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + ZAP.read_bytes())
    sc = kvmsim.load(bom)
    assert sc.doc["name"] == "golden-tdp-zap"
    assert kvmsim.run(sc).fingerprint == kvmsim.run(ZAP).fingerprint


def test_plot_and_study_load_on_first_use():
    code = ("import sys, kvmsim; assert 'matplotlib' not in sys.modules; "
            "print(kvmsim.plot.before_after.__name__, kvmsim.study.SeedStudy.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["before_after", "SeedStudy"]
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        kvmsim.nonesuch
