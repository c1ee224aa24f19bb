"""kvmsim check-published on the small fixture directory tests/data/published: the table's
computed columns against values computed here from separate `kvmsim run` results, the summary
line, the JSON document, skipped scenarios, and located errors (exit 2) for bad published
blocks. (The real scenarios/published is far too expensive for the test suite.)"""

import json
import math
import shutil

import pytest

from test_cli_schemas import ROOT, kvmsim

FIXTURES = ROOT / "tests" / "data" / "published"
ARM = FIXTURES / "arm64-cmo.json"
TDP = FIXTURES / "tdp-dirty-log.json"


def run_doc(tmp_path, path, variant=None):
    out = tmp_path / f"{path.stem}-{variant or 'base'}.json"
    args = ["run", path, "--json", out, "--quiet"] + (["--variant", variant] if variant else [])
    r = kvmsim(*args)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def phase_ns(doc, name):
    return next(p["sim_time_ns"] for p in doc["phases"] if p["name"] == name)


def factor(a, b):
    return max(a / b, b / a)


def side(r):
    """Up, down, or no change within 2% of 1."""
    return 1 if r > 1.02 else -1 if r < 0.98 else 0


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("published")
    out = tmp / "check.json"
    r = kvmsim("check-published", FIXTURES, "--json", out, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads(out.read_text()), tmp


def test_change_rows_match_hand_computed_values(checked):
    _, doc, tmp = checked
    before, after = run_doc(tmp, ARM, "before"), run_doc(tmp, ARM, "after")
    rows = [r for r in doc["rows"] if r["config"] == "fixture-arm64-cmo"]
    assert [r.get("phase", r.get("stat")) for r in rows] == ["KVM_CREATE_MAPPINGS", "KVM_UPDATE_MAPPINGS", "pf_fixed",
                                                             "KVM_ADJUST_MAPPINGS", "KVM_CREATE_MAPPINGS"]
    for row, phase, pub_b, pub_a in [(rows[0], "KVM_CREATE_MAPPINGS", 20, 25), (rows[1], "KVM_UPDATE_MAPPINGS", 10, 12)]:
        sb, sa = phase_ns(before, phase) / 1e6, phase_ns(after, phase) / 1e6  # unit ms
        assert row["kind"] == "change"
        assert row["published"]["ratio"] == pytest.approx(pub_a / pub_b)
        assert row["simulated"]["before"] == pytest.approx(sb)
        assert row["simulated"]["after"] == pytest.approx(sa)
        r_pub, r_sim = pub_a / pub_b, sa / sb
        assert row["simulated"]["ratio"] == pytest.approx(r_sim)
        assert row["error_factor"] == pytest.approx(factor(r_sim, r_pub))
        assert row["error_factor_before"] == pytest.approx(factor(sb, pub_b))
        assert row["error_factor_after"] == pytest.approx(factor(sa, pub_a))
        assert row["within_1_5x"] == (factor(r_sim, r_pub) <= 1.5)
        assert row["sign_right"] == (side(r_pub) == side(r_sim))
    # UPDATE is unchanged in the model (v5.12 cleans nothing on a permission fault, wherever the
    # CMOs are), so against the made-up published 1.2 its sign is wrong. (CREATE's side depends on
    # the copy-on-write races of 4 vCPUs on 16M, which vCPU reaches a page first: checked above
    # against its own values, not pinned.)
    assert rows[1]["simulated"]["ratio"] == pytest.approx(1, abs=1e-5) and not rows[1]["sign_right"]
    # A stat row, unchanged on both sides: both ratios within 2% of 1 is a right sign.
    stat = rows[2]
    assert stat["unit"] == "count"
    assert stat["simulated"]["before"] == before["stats"]["pf_fixed"]
    assert stat["simulated"]["after"] == after["stats"]["pf_fixed"]
    r_sim = after["stats"]["pf_fixed"] / before["stats"]["pf_fixed"]
    assert stat["sign_right"] == (side(r_sim) == 0)
    assert [r["calibration"] for r in rows] == [False, True, False, False, False]
    # A variant that runs the same scenario as another runs once; ratio exactly 1 against a
    # published 1.015: both within 2% of 1, a right sign.
    same = rows[4]
    assert same["simulated"]["before"] == same["simulated"]["after"] == rows[0]["simulated"]["before"]
    assert same["simulated"]["ratio"] == 1 and same["sign_right"] and same["within_1_5x"]
    assert same["error_factor"] == pytest.approx(20.3 / 20)


def test_value_rows_and_phase_patterns(checked):
    _, doc, tmp = checked
    base = run_doc(tmp, TDP)
    arm_after = run_doc(tmp, ARM, "after")
    rows = {(r["config"], r["pointer"]): r for r in doc["rows"]}
    adjust = rows[("fixture-arm64-cmo", "/published/rows/3")]
    sim = phase_ns(arm_after, "KVM_ADJUST_MAPPINGS") / 1e3  # unit us
    assert adjust["kind"] == "value" and adjust["published"] == {"variant": "after", "value": 300}
    assert adjust["simulated"]["value"] == pytest.approx(sim)
    assert adjust["error_factor"] == pytest.approx(factor(sim, 300))
    populate = rows[("fixture-tdp-dirty-log", "/published/rows/0")]
    assert populate["simulated"]["value"] == pytest.approx(phase_ns(base, "Populate memory") / 1e6)
    iters = [phase_ns(base, f"Iteration {i} dirty memory") / 1e6 for i in (1, 2)]
    mean_row = rows[("fixture-tdp-dirty-log", "/published/rows/1")]
    sum_row = rows[("fixture-tdp-dirty-log", "/published/rows/2")]
    assert mean_row["aggregate"] == "mean" and sum_row["aggregate"] == "sum"
    assert mean_row["simulated"]["value"] == pytest.approx(sum(iters) / 2)
    assert sum_row["simulated"]["value"] == pytest.approx(sum(iters))
    assert sum_row["error_factor"] == pytest.approx(factor(sum(iters), 2))
    assert sum_row["within_1_5x"] == (factor(sum(iters), 2) <= 1.5)


def test_summary_counts_calibration_rows_apart(checked):
    text, doc, _ = checked
    run = [r for r in doc["rows"] if r["run"]]
    nx = [r for r in doc["rows"] if "not_expressible" in r]
    assert [(r["config"], r["run"], "simulated" in r) for r in nx] == [("fixture-tdp-dirty-log", False, False)]
    def counts(calib):
        rows = [r for r in run if r["calibration"] == calib]
        ch = [r for r in rows if r["kind"] == "change"]
        return (sum(r["sign_right"] for r in ch), len(ch), sum(r["within_1_5x"] for r in rows), len(rows))
    n, c = counts(False), counts(True)
    line = (f"summary: non-calibration rows: signs right {n[0]}/{n[1]}, within 1.5x {n[2]}/{n[3]}; "
            f"calibration rows: signs right {c[0]}/{c[1]}, within 1.5x {c[2]}/{c[3]}; not run: 1 rows; "
            "not expressible: 1 rows")
    assert text.rstrip("\n").splitlines()[-1] == line
    assert doc["summary"]["line"] == line
    assert (n[1], n[3], c[1], c[3]) == (3, 6, 1, 2)
    assert doc["summary"]["non_calibration"] == {"rows": n[3], "change_rows": n[1], "signs_right": n[0], "within_1_5x": n[2]}
    # Every run is listed with its wall time (3 runs: two variants and one base; same-as-before
    # ran as before, the skipped scenario not at all).
    assert sorted((r["config"], r["variant"]) for r in doc["runs"]) == [
        ("fixture-arm64-cmo", "after"), ("fixture-arm64-cmo", "before"), ("fixture-tdp-dirty-log", "")]
    assert all(r["wall_time_s"] >= 0 and r["events"] > 0 for r in doc["runs"])


def test_table_lines(checked):
    text, doc, _ = checked
    lines = text.splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("configuration"))
    table = lines[header + 1:-1]
    assert len(table) == len(doc["rows"]) == 10
    create = table[0].split()
    assert create[:3] == ["fixture-arm64-cmo", "KVM_CREATE_MAPPINGS", "ms"]
    assert create[3:6] == ["20", "25", "1.25"]
    row = doc["rows"][0]
    assert create[6:9] == [f"{row['simulated'][k]:.4g}" for k in ("before", "after", "ratio")]
    assert create[9] == ("yes" if row["sign_right"] else "NO")
    assert create[10] == f"{row['error_factor']:.4g}x"
    assert create[-1] == "no"
    skipped = [l for l in table if l.startswith("fixture-skipped")]
    assert len(skipped) == 1 and skipped[0].split()[-2:] == ["not", "run"]


def test_skipped_scenarios_run_with_all(tmp_path):
    out = tmp_path / "all.json"
    r = kvmsim("check-published", FIXTURES, "--all", "--only", "fixture-skipped", "--json", out, "--jobs", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    ran = [row for row in doc["rows"] if row["run"]]
    assert [row["config"] for row in ran] == ["fixture-skipped"]
    assert doc["summary"]["not_run"] == 8 and doc["summary"]["not_expressible"] == 1
    r = kvmsim("check-published", FIXTURES, "--only", "fixture-nope")
    assert r.returncode == 2 and "no scenario named \"fixture-nope\"" in r.stderr


def test_seeds_average_runs_that_draw_random_numbers(tmp_path):
    # These fixtures draw no random number: one run stands for every seed, the values are the same.
    one, three = tmp_path / "one.json", tmp_path / "three.json"
    assert kvmsim("check-published", FIXTURES, "--only", "fixture-tdp-dirty-log", "--json", one).returncode == 0
    assert kvmsim("check-published", FIXTURES, "--only", "fixture-tdp-dirty-log", "--seeds", "3", "--json", three).returncode == 0
    a, b = json.loads(one.read_text()), json.loads(three.read_text())
    assert [r.get("simulated") for r in a["rows"]] == [r.get("simulated") for r in b["rows"]]
    assert b["seeds"] == 3


BAD = [
    ("/published/rows/0/before/variant", {"before": {"variant": "befor", "value": 1}},
     "expected one of the scenario's variants, got \"befor\" (did you mean \"before\"?)"),
    ("/published/rows/0/phase", {"phase": "KVM_CREATE_MAPPING"},
     "expected a phase of the workload (variant \"before\"), got \"KVM_CREATE_MAPPING\""),
    ("/published/rows/0", {"calibration": None}, "missing required key \"calibration\""),
    ("/published/rows/0/after/variant", {"after": {"variant": "before", "value": 1}},
     "expected a variant other than the \"before\" one"),
    ("/published/rows/0/before/value", {"before": {"variant": "before", "value": 0}}, "expected a positive number"),
    ("/published/rows/0/before/value", {"before": {"variant": "before", "value": 2, "samples": [1, 2]}},
     "expected the mean of \"samples\" (1.5)"),
    ("/published/rows/0", {"value": {"variant": "before", "value": 1}}, "not both"),
    ("/published/rows/0/unit", {"unit": "seconds"}, "expected one of"),
    ("/published/rows/0/aggregate", {"aggregate": "mean"}, "names one phase"),
]


@pytest.mark.parametrize("pointer,patch,message", BAD, ids=[b[0] + ":" + b[2][:20] for b in BAD])
def test_bad_published_rows_are_located(tmp_path, pointer, patch, message):
    doc = json.loads(ARM.read_text())
    row = doc["published"]["rows"][0]
    for k, v in patch.items():
        if v is None:
            row.pop(k)
        else:
            row[k] = v
    d = tmp_path / "dir"
    d.mkdir()
    f = d / "bad.json"
    f.write_text(json.dumps(doc))
    for cmd in (("validate", f), ("check-published", d)):
        r = kvmsim(*cmd)
        assert r.returncode == 2, r.stdout
        assert f"{f}: {pointer}: " in r.stderr and message in r.stderr, r.stderr


def test_bad_published_blocks_are_located(tmp_path):
    doc = json.loads(ARM.read_text())
    cases = [
        (lambda d: d["published"]["source"].update(url="https://example.com/x"), "/published/source/url",
         "expected a lore.kernel.org address"),
        (lambda d: d["published"]["source"].update(date="16 June 2021"), "/published/source/date", "expected a date YYYY-MM-DD"),
        (lambda d: d["published"].update(rows=[]), "/published/rows", "expected at least one row"),
        (lambda d: d["published"].update(extra=1), "/published", "unknown key \"extra\""),
        (lambda d: d["variants"][1].update(patch={"published": {"host": "x"}}), "/variants/1/patch/published",
         "a variant cannot patch \"published\""),
    ]
    for i, (edit, pointer, message) in enumerate(cases):
        d = json.loads(json.dumps(doc))
        edit(d)
        f = tmp_path / f"bad{i}.json"
        f.write_text(json.dumps(d))
        r = kvmsim("validate", f)
        assert r.returncode == 2 and f"{f}: {pointer}: " in r.stderr and message in r.stderr, r.stderr


def test_a_scenario_without_a_published_block_is_an_error(tmp_path):
    shutil.copy(ROOT / "tests" / "data" / "tdp-fault.json", tmp_path / "plain.json")
    r = kvmsim("check-published", tmp_path)
    assert r.returncode == 2
    assert f"{tmp_path / 'plain.json'}: (root): expected a \"published\" block" in r.stderr


def test_json_is_written_atomically_and_only_on_success(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("old")
    bad = tmp_path / "dir"
    bad.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "tdp-fault.json", bad / "plain.json")
    assert kvmsim("check-published", bad, "--json", out).returncode == 2
    assert out.read_text() == "old"
    assert not any(p.name.startswith("out.json.") for p in tmp_path.iterdir())


def test_every_shipped_published_scenario_validates():
    files = sorted((ROOT / "scenarios" / "published").glob("*.json"))
    assert len(files) >= 9
    r = kvmsim("validate", *files)
    assert r.returncode == 0, r.stderr
    for f in files:
        doc = json.loads(f.read_text())
        assert doc["published"]["source"]["url"].startswith("https://lore.kernel.org/")
        assert "../shared" not in f.read_text()
        for row in doc["published"]["rows"]:
            vals = [row[k]["value"] for k in ("before", "after", "value") if k in row]
            assert all(v > 0 and math.isfinite(v) for v in vals)
