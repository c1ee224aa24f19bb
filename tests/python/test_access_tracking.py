"""access_tracking_perf_test through the kvmsim command: its stages as phases, named as the test
prints them; page_idle marking and -l's lru_gen aging passes; -p's aging while populating; the
age_lock knob per model, and what is refused (exit status 2, located)."""

import json

import pytest

from test_cli_schemas import kvmsim


def scenario(tmp_path, args, model="x86_tdp", profile="x86-server", knobs=None, name="atpt"):
    doc = {
        "name": name,
        "seed": 1,
        "host": {"profile": profile},
        "mmu": {"model": model, "knobs": knobs or {}},
        "workload": {"preset": "access_tracking_perf_test", "args": args},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def run(tmp_path, *args, **kw):
    path = scenario(tmp_path, *args, **kw)
    out = tmp_path / "result.json"
    r = kvmsim("run", path, "--quiet", "--json", out)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def stat(phase, name):
    return phase["stats"].get(name, 0)


def test_page_idle_stages_and_aging(tmp_path):
    doc = run(tmp_path, "-v 2 -b 2M")
    names = [p["name"] for p in doc["phases"]]
    assert names == ["Populating memory", "Writing to populated memory", "Reading from populated memory",
                     "Mark memory idle", "Writing to idle memory", "Mark memory idle", "Reading from idle memory"]
    ph = doc["phases"]
    # Every page of the 2 x 2 MiB was written, so each marking finds every SPTE young (once per
    # page: 1024 notifier calls, each aging one 4K SPTE) and takes mmu_lock for write each time.
    for i in (3, 5):
        assert stat(ph[i], "kvm_age_gfn") == 1024
        assert stat(ph[i], "kvm_age_gfn_young") == 1024
        assert stat(ph[i], "sptes_aged") == 1024
    # x86 with A/D bits: the accesses to idle memory do not exit.
    assert stat(ph[4], "pf_taken") == 0 and stat(ph[6], "pf_taken") == 0
    assert stat(ph[0], "pf_fixed") == 1024


def test_lru_gen_aging_passes(tmp_path):
    doc = run(tmp_path, "-l -v 2 -b 2M")
    names = [p["name"] for p in doc["phases"]]
    assert names == ["Populating memory", "Writing to populated memory", "Reading from populated memory",
                     "lru_gen: Aging", "lru_gen: Aging", "Writing to idle memory", "lru_gen: Aging",
                     "lru_gen: Aging", "Reading from idle memory", "lru_gen: Aging"]
    aging = [p for p in doc["phases"] if p["name"].startswith("lru_gen: Aging")]
    # A pass after the memory was touched finds it all young; the pass right after finds none.
    assert [stat(p, "sptes_aged") for p in aging] == [1024, 0, 1024, 0, 1024]


def test_arm64_access_flag_faults_after_aging(tmp_path):
    doc = run(tmp_path, "-v 2 -b 2M", model="arm64_stage2", profile="kunpeng-920")
    ph = {p["name"]: p for p in doc["phases"]}
    # The Kunpeng 920 profile has no FEAT_HAFDBS: every aged page takes an access-flag fault.
    assert stat(ph["Writing to idle memory"], "kvm_access_fault") == 1024
    assert stat(ph["Reading from idle memory"], "kvm_access_fault") == 1024
    assert stat(ph["Writing to populated memory"], "kvm_access_fault") == 0


@pytest.mark.parametrize("model,profile,mode", [("x86_tdp", "x86-server", "lockless"),
                                                ("arm64_stage2", "kunpeng-920", "read")])
def test_p_ages_while_populating(tmp_path, model, profile, mode):
    doc = run(tmp_path, "-l -p -v 2 -b 2M", model=model, profile=profile, knobs={"age_lock": mode})
    assert [p["name"] for p in doc["phases"]] == ["lru_gen: Aging while populating memory"]
    p = doc["phases"][0]
    assert stat(p, "aging_passes") >= 1
    assert stat(p, "kvm_age_gfn") == 1024 * stat(p, "aging_passes")
    assert stat(p, "pf_fixed") == 1024


@pytest.mark.parametrize("args,model,profile,knobs,pointer,reason", [
    ("-p -v 2 -b 2M", "x86_tdp", "x86-server", {}, "/workload/args", "-p specified without -l"),
    ("-v 2 -b 2M", "x86_tdp", "x86-server", {"age_lock": "read"}, "/mmu/knobs/age_lock",
     "never aged under mmu_lock for read"),
    ("-v 2 -b 2M", "arm64_stage2", "kunpeng-920", {"age_lock": "lockless"}, "/mmu/knobs/age_lock",
     "never aged without mmu_lock"),
    ("-v 2 -b 2M", "arm64_stage2", "kunpeng-920", {"age_lock": "read", "mmu_lock": "spinlock"},
     "/mmu/knobs/age_lock", "spinlock"),
])
def test_refused_with_the_place_and_exit_2(tmp_path, args, model, profile, knobs, pointer, reason):
    path = scenario(tmp_path, args, model=model, profile=profile, knobs=knobs)
    r = kvmsim("validate", path)
    assert r.returncode == 2
    assert str(path) in r.stderr and pointer in r.stderr and reason in r.stderr, r.stderr
