"""kvmsim.compare: the same table as the kvmsim command, from the same C++ code, for a
scenario's variants over common seeds and for saved results."""

import json
import math
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor

import pytest

import kvmsim
from test_cli_schemas import ROOT, kvmsim as cli

ZAP = ROOT / "tests" / "data" / "tdp-zap.json"
SPLIT = ROOT / "tests" / "data" / "tdp-split.json"


def cli_compare(*args):
    r = cli("compare", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_scenario_compares_as_the_command_does(tmp_path):
    out = tmp_path / "cmp.json"
    text = cli_compare(ZAP, "--seeds", "3", "--json", out)
    df = kvmsim.compare(ZAP, seeds=3, progress=False)
    # The command prints "== FILE", the table, then a blank line.
    assert text == f"== {ZAP}\n" + df.attrs["text"] + "\n"
    assert df.attrs["json"] == json.loads(out.read_text())
    assert df.attrs["variants"] == ["write", "write+precheck", "read", "drop_write_zap_read"]
    assert df.attrs["seeds"] == [1, 2, 3]
    # One table per variant against the baseline, a row per frame row that is not zero in both;
    # every line within 120 characters (a long metric name has a line of its own).
    text = df.attrs["text"]
    assert max(len(line) for line in text.splitlines()) <= 120
    variants = df.attrs["variants"]
    tables = text.split("\nmetric ")[1:]
    assert len(tables) == len(variants) - 1
    for v, table in zip(variants[1:], tables):
        header, *lines = table.split("\n\n")[0].splitlines()
        assert header.split()[:3] == [variants[0], v, "change"]
        names = [re.split(r"\s{2,}", line)[0] for line in lines if not line.startswith((" ", "(change:"))]
        means = df["mean"]
        assert names == [m for m in df.index if means.loc[m, variants[0]] != 0 or means.loc[m, v] != 0]


def test_the_frame_holds_the_statistics():
    df = kvmsim.compare(ZAP, seeds=3, variants=["write", "read"], progress=False)
    runs = {v: [kvmsim.run(ZAP, variant=v, seed=s).stats["remote_tlb_flush"] for s in (1, 2, 3)] for v in ("write", "read")}
    row = df.loc["stat remote_tlb_flush"]
    assert row[("unit", "")] == "count"
    assert row[("mean", "write")] == pytest.approx(sum(runs["write"]) / 3)
    assert row[("mean", "read")] == pytest.approx(sum(runs["read"]) / 3)
    base, after = row[("mean", "write")], row[("mean", "read")]
    assert row[("change_pct", "read")] == pytest.approx((after - base) / base * 100)
    d = [b - a for a, b in zip(runs["write"], runs["read"])]
    mean_d = sum(d) / 3
    sd = math.sqrt(sum((x - mean_d) ** 2 for x in d) / 2)
    half = 4.302652729749462 * sd / math.sqrt(3)  # t(0.975, 2)
    assert (row[("ci95_low", "read")], row[("ci95_high", "read")]) == (pytest.approx(mean_d - half), pytest.approx(mean_d + half))
    assert row[("significant", "read")] == (mean_d - half > 0 or mean_d + half < 0)
    assert math.isnan(row[("change_pct", "write")])  # the baseline has no change
    assert list(df.columns.get_level_values(0).unique()) == ["unit", "mean", "stdev", "change_pct", "ci95_low",
                                                             "ci95_high", "significant"]


def test_compare_on_a_process_pool_is_the_same():
    serial = kvmsim.compare(ZAP, seeds=2, progress=False)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        pooled = kvmsim.compare(ZAP, seeds=2, executor=ex, progress=False)
    assert pooled.attrs["text"] == serial.attrs["text"]


def test_two_results_compare_as_the_command_does(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert cli("run", SPLIT, "--variant", "eager-split", "--json", a, "--quiet").returncode == 0
    assert cli("run", SPLIT, "--variant", "no-eager-split", "--json", b, "--quiet").returncode == 0
    text = cli_compare(a, b)
    assert kvmsim.compare(a, b).attrs["text"] == text
    ra, rb = kvmsim.run(SPLIT, variant="eager-split"), kvmsim.run(SPLIT, variant="no-eager-split")
    assert kvmsim.compare(ra, rb, names=["a.json", "b.json"]).attrs["text"] == text
    df = kvmsim.compare(ra, rb)
    assert df.attrs["variants"] == ["eager-split", "no-eager-split"]
    assert df.loc["stat pf_fixed", ("mean", "no-eager-split")] == rb.stats["pf_fixed"]


def test_compare_of_a_scenario_with_overrides_uses_them():
    df = kvmsim.compare(ZAP, seeds=2, overrides={"vm.vcpus": 2}, progress=False)
    want = [kvmsim.run(ZAP, variant="write", seed=s, overrides={"vm.vcpus": 2}).stats["pf_fixed"] for s in (1, 2)]
    assert df.loc["stat pf_fixed", ("mean", "write")] == pytest.approx(sum(want) / 2)


def test_compare_needs_something_to_compare():
    with pytest.raises(TypeError):
        kvmsim.compare()
    with pytest.raises(kvmsim.ScenarioError, match="did you mean"):
        kvmsim.compare(ZAP, variants=["wrte"], progress=False)


def test_a_run_that_did_not_complete_is_named_by_scenario_variant_and_seed(monkeypatch):
    """compare() refuses to compare a deadlocked run, after all runs, naming each such run."""
    import kvmsim._sweep
    real = kvmsim._sweep.run_point

    def deadlock_some(task):
        row = real(task)
        if task["variant"] == "read" and task["seed"] == 2:
            row["status"] = "deadlock"
            row["deadlock"] = "deadlock at 12 us:\nvcpu0 waits for mmu_lock (write), held by vcpu1"
        return row
    monkeypatch.setattr(kvmsim._sweep, "run_point", deadlock_some)
    with pytest.raises(RuntimeError) as info:
        kvmsim.compare(ZAP, seeds=2, variants=["write", "read"], overrides={"vm.vcpus": 2}, progress=False)
    text = str(info.value)
    assert "scenario 'golden-tdp-zap'" in text and str(ZAP) in text and "'vm.vcpus': 2" in text
    assert "1 of 4 runs did not complete" in text
    assert "variant 'read', seed 2: deadlock" in text
    assert "vcpu0 waits for mmu_lock" in text


def test_a_seed_studys_headline_is_the_title_and_the_selftest_lines():
    from kvmsim.study import SeedStudy
    study = SeedStudy(ZAP, seeds=2, progress=False)
    lines = study.headline().splitlines()
    assert lines[0] == "golden-tdp-zap: 4 variants x 2 seeds (baseline write)"
    assert lines[1] == ""
    assert [line.split(" -> ")[1].split()[0] for line in lines[2:]] == study.variants[1:]
    assert all(re.fullmatch(r"boot: write \S+s -> \S+ \S+s, (faster|slower) by \d+\.\d\d%", line) for line in lines[2:])
    assert study.table().startswith(study.headline())
