"""The demand_paging_test preset through the CLI (issue 17): its stage and printed rates, the
userfaultfd flags acting through the host mm's mechanism, and the flags refused where they cannot
act (exit 2, the JSON pointer named)."""

import json
import os
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KVMSIM = pathlib.Path(os.environ.get("KVMSIM_BIN", ROOT / "build" / "sim" / "kvmsim"))
SCENARIO = ROOT / "scenarios" / "selftests" / "x86-demand-paging-uffd.json"


def write(tmp_path, args, model="x86_tdp", profile="x86-server"):
    doc = {"name": "dp", "seed": 1, "host": {"profile": profile}, "mmu": {"model": model},
           "workload": {"preset": "demand_paging_test", "args": args}}
    p = tmp_path / "dp.json"
    p.write_text(json.dumps(doc))
    return p


def run(*args):
    return subprocess.run([str(KVMSIM), *map(str, args)], capture_output=True, text=True, timeout=300)


def rates(stdout):
    per = float(re.search(r"^  Per-vcpu demand paging rate:\t([0-9.]+) pgs/sec/vcpu$", stdout, re.M).group(1))
    overall = float(re.search(r"^  Overall demand paging rate:\t([0-9.]+) pgs/sec$", stdout, re.M).group(1))
    stage = float(re.search(r"^  Demand paging: total execution time: ([0-9.]+)s$", stdout, re.M).group(1))
    return per, overall, stage


def stat(stdout, name):
    m = re.search(rf"^  {name}\s+([0-9]+)$", stdout, re.M)
    return int(m.group(1)) if m else 0


def test_the_stage_and_the_rates_as_the_test_prints_them(tmp_path):
    r = run("run", write(tmp_path, "-u MISSING -v 2 -b 1M"))
    assert r.returncode == 0, r.stderr
    per, overall, stage = rates(r.stdout)
    # 256 pages per vCPU over the stage's time; overall is that times the vCPUs.
    assert per == pytest.approx(256 / stage, rel=1e-6)
    assert overall == pytest.approx(2 * per, rel=1e-6)
    assert stat(r.stdout, "uffd_handle_userfault") == 512
    assert stat(r.stdout, "uffdio_copy") == 512


def test_without_u_nothing_goes_through_a_uffd(tmp_path):
    r = run("run", write(tmp_path, "-v 2 -b 1M"))
    assert r.returncode == 0, r.stderr
    assert stat(r.stdout, "uffd_handle_userfault") == 0
    assert "Overall demand paging rate" in r.stdout


def test_minor_on_shmem_continues_and_copies_nothing(tmp_path):
    r = run("run", write(tmp_path, "-u MINOR -s shmem -v 2 -b 1M"))
    assert r.returncode == 0, r.stderr
    assert stat(r.stdout, "uffdio_continue") == 512
    assert stat(r.stdout, "uffdio_copy") == 0


def test_the_scenario_variants_order_by_mechanism():
    got = {}
    for v in ("per_vcpu", "single_uffd", "single_uffd_4_readers", "exit_on_missing"):
        r = run("run", SCENARIO, "--variant", v)
        assert r.returncode == 0, r.stderr
        got[v] = rates(r.stdout)[1]
    # One uffd and one reader for 8 vCPUs pages slowest; four readers recover most of it; exits
    # to userspace avoid the wait queue altogether.
    assert got["single_uffd"] < got["single_uffd_4_readers"] < got["per_vcpu"] < got["exit_on_missing"]


def test_arm64_and_hugetlb_work_too(tmp_path):
    r = run("run", write(tmp_path, "-u MISSING -s anonymous_hugetlb_2mb -v 2 -b 4M", model="arm64_stage2",
                         profile="kunpeng-920"))
    assert r.returncode == 0, r.stderr
    assert stat(r.stdout, "uffdio_copy") == 4  # one per 2 MiB page


@pytest.mark.parametrize("args, message", [
    ("-u MINOR", "-u MINOR needs shared memory"),
    ("-u MINOR -s anonymous_hugetlb_2mb", "-u MINOR needs shared memory"),
    ("-u SOMETIMES", "expected MISSING or MINOR"),
    ("-a", "-a (one uffd for all of guest memory) acts only with -u"),
    ("-r 4", "-r (reader threads per uffd) acts only with -u"),
    ("-w", "-w (memory fault exits) acts only with -u"),
    ("-u MISSING -r 0", "expected an integer from 1 to 1024"),
    ("-u MISSING -s anonymous_thp", "is not simulated"),
    ("-s shared_hugetlb -b 1M", "multiple of the backing's page"),
])
def test_flags_refused_where_they_cannot_act(tmp_path, args, message):
    f = write(tmp_path, args)
    r = run("validate", f)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{f}: /workload/args: " in r.stderr + r.stdout
    assert message in r.stderr + r.stdout


def test_other_presets_refuse_the_shared_backings(tmp_path):
    doc = {"name": "k", "host": {"profile": "x86-server"}, "mmu": {"model": "x86_tdp"},
           "workload": {"preset": "kvm_page_table_test", "args": "-s shmem -b 1M"}}
    f = tmp_path / "k.json"
    f.write_text(json.dumps(doc))
    r = run("validate", f)
    assert r.returncode == 2
    assert "/workload/args" in r.stderr + r.stdout
