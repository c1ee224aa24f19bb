"""The scenario schema says what the loader says (issue 13): its unit patterns, enumerations and
limits are generated from the loader's tables at build time (kvmsim-schema writes
build/sim/scenario.schema.json from the committed file as its template), the committed file is
the generated one, and schema and loader agree on a corpus of cases both must accept or refuse."""

import copy
import json
import os
import pathlib
import subprocess

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("KVMSIM_BUILD", ROOT / "build"))
KVMSIM = pathlib.Path(os.environ.get("KVMSIM_BIN", BUILD / "sim" / "kvmsim"))
COMMITTED = ROOT / "scenarios" / "schema" / "scenario.schema.json"
GENERATED = BUILD / "sim" / "scenario.schema.json"


def schema():
    return json.loads(COMMITTED.read_text())


def test_committed_schema_is_the_generated_one():
    assert GENERATED.is_file(), "build kvmsim first (meson compile -C build)"
    assert json.loads(GENERATED.read_text()) == schema(), (
        f"the loader's tables changed: cp {GENERATED} {COMMITTED}")


BASE = {"name": "agree", "host": {"profile": "x86-server"}, "mmu": {"model": "x86_tdp"},
        "vm": {"vcpus": 2, "memslots": [{"size": "16M"}]},
        "workload": {"phases": [{"name": "touch", "stream": {"access": "write"}}]}}
PRESET = {"name": "agree", "host": {"profile": "x86-server"}, "mmu": {"model": "x86_tdp"},
          "workload": {"preset": "kvm_page_table_test", "args": "-s anonymous -b 16M -v 1"}}


def with_(doc, path, value):
    d = copy.deepcopy(doc)
    cur = d
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    if isinstance(cur, list):
        cur[int(keys[-1])] = value
    else:
        cur[keys[-1]] = value
    return d


ACCEPT = {
    "base": BASE,
    "size-512M": with_(BASE, "vm.memslots.0.size", "512M"),
    "size-20G": with_(BASE, "vm.memslots.0.size", "20G"),
    "size-20GiB": with_(BASE, "vm.memslots.0.size", "20GiB"),
    "size-1.5M": with_(BASE, "vm.memslots.0.size", "1.5M"),
    "size-bytes": with_(BASE, "vm.memslots.0.size", 16777216),
    "knob-zap-lock": with_(BASE, "mmu.knobs", {"zap_lock": "read"}),
    "shadow-knob": with_(with_(BASE, "mmu.model", "x86_shadow"), "mmu.knobs", {"tdp_mmu": False}),
    "preset-thp": with_(PRESET, "workload.args", "-s anonymous_thp -b 16M -v 1"),
    "preset-mode-4": with_(PRESET, "workload.args", "-m 4 -s anonymous -b 16M -v 1"),
    "preset-mode-0": with_(PRESET, "workload.args", "-m 0 -b 16M"),
    "guest-time": with_(BASE, "workload.phases.0.stream.guest_time", "1.5ns"),
    "cost-number": with_(BASE, "host.costs", {"fault_entry": 200000}),
    "cost-time": with_(BASE, "host.costs", {"fault_entry": "250ns"}),
    "count": with_(BASE, "workload.phases.0.stream.count", 1000),
    "time-us": with_(BASE, "events", [{"op": "zap_gfn_range", "at": "15us"}]),
    "time-micro-sign": with_(BASE, "events", [{"op": "zap_gfn_range", "at": "15\u00b5s"}]),
}

REFUSE = {
    "size-512MB": with_(BASE, "vm.memslots.0.size", "512MB"),
    "size-20-space-G": with_(BASE, "vm.memslots.0.size", "20 G"),
    "size-negative": with_(BASE, "vm.memslots.0.size", "-16M"),
    "size-exponent": with_(BASE, "vm.memslots.0.size", "1e6"),
    "size-Q": with_(BASE, "vm.memslots.0.size", "16Q"),
    "knob-unknown": with_(BASE, "mmu.knobs", {"zap_lok": "read"}),
    "knob-bad-choice": with_(BASE, "mmu.knobs", {"zap_lock": "wrte"}),
    "knob-bad-type": with_(BASE, "mmu.knobs", {"zap_lock": 1}),
    "knob-of-another-model": with_(BASE, "mmu.knobs", {"tdp_mmu": False}),
    "model-unknown": with_(BASE, "mmu.model", "x86_tdpp"),
    "preset-backing": with_(PRESET, "workload.args", "-s anonymous_hugetlb_4gb -b 16M"),
    "preset-mode-64k": with_(PRESET, "workload.args", "-m 5 -b 16M"),
    "preset-mode-99": with_(PRESET, "workload.args", "-m 99 -b 16M"),
    "preset-unknown": with_(PRESET, "workload.preset", "kvm_page_table"),
    "phases-empty": with_(BASE, "workload.phases", []),
    "name-empty": with_(BASE, "name", ""),
    "profile-path": with_(BASE, "host.profile", "../hosts/x86-server"),
    "profile-absolute": with_(BASE, "host.profile", "/etc/passwd"),
    "profile-hidden": with_(BASE, "host.profile", ".x86-server"),
    "count-1e12": with_(BASE, "workload.phases.0.stream.count", 10**12),
    "storm-count-1e12": with_(BASE, "events", [{"op": "zap_gfn_range", "at": "1us", "count": 10**12,
                                                 "interval": "1us"}]),
    "cost-negative": with_(BASE, "host.costs", {"fault_entry": -1}),
    "cost-1e300": with_(BASE, "host.costs", {"fault_entry": 1e300}),
    "time-no-unit": with_(BASE, "events", [{"op": "zap_gfn_range", "at": "15"}]),
    "time-space": with_(BASE, "events", [{"op": "zap_gfn_range", "at": "15 us"}]),
    "op-unknown": with_(BASE, "events", [{"op": "zap_gfn", "at": "1us"}]),
    "backing-unknown": with_(BASE, "vm.memslots.0.backing", "anonymous_hugetlb_4gb"),
}


def loader_accepts(tmp_path, name, doc):
    f = tmp_path / f"{name}.json"
    f.write_text(json.dumps(doc))
    r = subprocess.run([str(KVMSIM), "validate", str(f)], capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 2), r.stderr
    return r.returncode == 0, r.stderr


def schema_accepts(doc):
    try:
        jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
        return True, ""
    except jsonschema.ValidationError as e:
        return False, e.message


@pytest.mark.parametrize("name", sorted(ACCEPT))
def test_both_accept(tmp_path, name):
    ok, why = loader_accepts(tmp_path, name, ACCEPT[name])
    assert ok, why
    ok, why = schema_accepts(ACCEPT[name])
    assert ok, why


@pytest.mark.parametrize("name", sorted(REFUSE))
def test_both_refuse(tmp_path, name):
    ok, _ = loader_accepts(tmp_path, name, REFUSE[name])
    assert not ok, "the loader accepts it"
    ok, _ = schema_accepts(REFUSE[name])
    assert not ok, "the schema accepts it"
