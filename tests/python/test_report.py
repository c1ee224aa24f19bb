"""`kvmsim report` of seed 003 as a developer makes it (the C++ binary, results saved with
`kvmsim run --json`), read back with html.parser and, where Debian's chromium is installed,
rendered by headless Chromium. Also: result documents carry the resolved scenario and the
build_id, and `--set` overrides (a preset's flags by their path) on the command line."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
from html.parser import HTMLParser

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KVMSIM = pathlib.Path(os.environ.get("KVMSIM_BIN", ROOT / "build" / "sim" / "kvmsim"))
SEED = ROOT / "scenarios" / "seeds" / "003-zap-gfn-range.json"
# A smaller 003 (fewer accesses and zaps) keeps the four runs quick; still a before/after.
SMALL = ["--set", "workload.phases.0.stream.count=4000", "--set", "events.0.count=8"]
VARIANTS = ["write-lock", "read-lock"]
SEEDS = [1, 2]


def kvmsim(*args, **kw):
    return subprocess.run([str(KVMSIM), *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    out = []
    for v in VARIANTS:
        for s in SEEDS:
            path = d / f"{v}-{s}.json"
            r = kvmsim("run", SEED, "--variant", v, "--seed", s, "--json", path, "--quiet", *SMALL)
            assert r.returncode == 0, r.stderr
            out.append(path)
    return out


class Page(HTMLParser):
    """The parts of the report a test looks at: tables (by class: header and rows of cell
    text), SVG elements (tag and attributes), headings and the title."""

    def __init__(self):
        super().__init__()
        self.tables, self.svg, self.headings, self.stack = {}, [], [], []
        self.title = ""
        self._table = self._row = self._cell = None
        self._text = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append(tag)
        if "svg" in self.stack:
            self.svg.append((tag, a))
        if tag == "table":
            self._table = {"header": [], "rows": []}
            self.tables[a.get("class", "")] = self._table
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag in ("h1", "h2", "h3", "h4", "title") and "svg" not in self.stack:
            self._text = ""

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if "thead" in self.stack:
                self._table["header"] = self._row
            else:
                self._table["rows"].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag in ("h1", "h2", "h3", "h4") and self._text is not None:
            self.headings.append(self._text)
            self._text = None
        elif tag == "title" and self._text is not None:
            self.title = self._text
            self._text = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._text is not None:
            self._text += data


def parse(html):
    p = Page()
    p.feed(html)
    p.close()
    return p


def test_the_html_report_of_seed_003(results, tmp_path):
    out = tmp_path / "report.html"
    r = kvmsim("report", *results, "--format", "html", "-o", out)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    page = parse(html)
    assert page.title == "kvmsim report: 003-zap-gfn-range"
    assert {"Runs", "Stage times (selftest style)", "Significant changes", "Mechanism counters that moved",
            "Phase times per variant", "Provenance"} <= set(page.headings)
    # The runs, each with the command line that makes it.
    runs = page.tables["runs"]
    assert runs["header"] == ["variant", "seed", "status", "fingerprint", "command line"]
    assert [(row[0], row[1], row[2]) for row in runs["rows"]] == [
        (v, str(s), "completed") for v in VARIANTS for s in SEEDS]
    for row, path in zip(runs["rows"], results):
        doc = json.loads(path.read_text())
        assert row[3] == doc["fingerprint"]
        assert row[4] == (f"kvmsim run {SEED} --variant {doc['variant']} --seed {doc['seed']} "
                          f"--set workload.phases.0.stream.count=4000 --set events.0.count=8 --json {path}")
    # A command line, run as it is written, makes that run again.
    import shlex
    argv = shlex.split(runs["rows"][3][4])
    again = tmp_path / "again.json"
    argv[argv.index("--json") + 1] = str(again)
    assert kvmsim(*argv[1:], "--quiet").returncode == 0
    assert json.loads(again.read_text())["fingerprint"] == runs["rows"][3][3]
    # The significant changes: the boot phase, read-lock against write-lock, with its interval.
    sig = page.tables["significant-changes"]
    assert sig["header"][:3] == ["metric", "write-lock (mean)", "read-lock (mean)"]
    assert "95% CI" in sig["header"][3]
    rows = {row[0]: row for row in sig["rows"]}
    assert "phase boot" in rows
    docs = {(d["variant"], d["seed"]): d for d in (json.loads(p.read_text()) for p in results)}
    boot = {k: next(p["sim_time_ns"] for p in d["phases"] if p["name"] == "boot") for k, d in docs.items()}
    before = sum(boot[("write-lock", s)] for s in SEEDS) / 2
    after = sum(boot[("read-lock", s)] for s in SEEDS) / 2
    change = rows["phase boot"][3]
    assert change.startswith(f"{(after - before) / before * 100:+.2f}% [") and change.endswith("*")
    # Mechanism counters that moved: debugfs stats and mmu_lock contention, each a table.
    assert any(k.startswith("counters-stat") for k in page.tables)
    locks = page.tables["counters-lock"]["rows"]
    assert any(r[0].startswith("lock mmu_lock write @") for r in locks)
    # The plot: an inline SVG, a bar per variant for the boot phase, with the mean in ns.
    bars = [a for tag, a in page.svg if tag == "rect" and a.get("class") == "bar"]
    assert sorted((a["data-phase"], a["data-variant"]) for a in bars) == sorted(("boot", v) for v in VARIANTS)
    for a in bars:
        want = sum(boot[(a["data-variant"], s)] for s in SEEDS) / 2
        assert float(a["data-mean-ns"]) == pytest.approx(want, rel=1e-5)
        assert float(a["height"]) > 0
    # Read-lock's bar is the shorter, as its time is.
    h = {a["data-variant"]: float(a["height"]) for a in bars}
    assert (h["read-lock"] < h["write-lock"]) == (after < before)
    # Provenance: the build that ran them, the scenario's hash, the seeds.
    prov = dict(page.tables["provenance"]["rows"])
    d0 = docs[("write-lock", 1)]
    assert prov["build_id"] == d0["build_id"] and len(d0["build_id"]) == 64
    assert prov["kvmsim version"] == d0["kvmsim_version"]
    assert prov["scenario_sha256"] == hashlib.sha256(SEED.read_bytes()).hexdigest()
    assert prov["seeds"] == "1, 2"
    assert prov["resolved_sha256 [read-lock]"] == docs[("read-lock", 1)]["resolved_sha256"]
    # Self-contained: nothing fetched from elsewhere.
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert "<script" not in html and "<link" not in html


def test_the_markdown_report_of_seed_003(results):
    r = kvmsim("report", *results)  # Markdown to stdout by default
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.startswith("# kvmsim report: 003-zap-gfn-range\n")
    assert "boot: total execution time: " in md
    assert "boot: write-lock " in md and " -> read-lock " in md and ("faster by " in md or "slower by " in md)
    assert "| phase boot |" in md
    assert "| build_id |" in md
    assert "<svg" not in md
    # --baseline puts another variant first.
    r2 = kvmsim("report", *results, "--baseline", "read-lock")
    assert r2.returncode == 0, r2.stderr
    assert "baseline read-lock" in r2.stdout and "boot: read-lock " in r2.stdout


def test_report_rejects_what_is_not_a_result(results, tmp_path):
    r = kvmsim("report", SEED)
    assert r.returncode == 2
    assert f"{SEED}: not a result document" in r.stderr
    r = kvmsim("report", results[0], "--format", "pdf")
    assert r.returncode == 2 and "--format expects md or html" in r.stderr
    r = kvmsim("report")
    assert r.returncode == 2 and "expected result files" in r.stderr
    r = kvmsim("report", results[0], results[3])  # write-lock seed 1, read-lock seed 2: no common seed
    assert r.returncode == 2 and "no seed has a result of every variant" in r.stderr


def _chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_html_report_renders_in_headless_chromium(results, tmp_path):
    out = tmp_path / "report.html"
    assert kvmsim("report", *results, "-o", out).returncode == 0  # .html: HTML by default
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr
    page = parse(dom.stdout)
    assert "phase boot" in {row[0] for row in page.tables["significant-changes"]["rows"]}
    assert sum(1 for tag, a in page.svg if tag == "rect" and a.get("class") == "bar") == 2
    png = tmp_path / "report.png"
    shot = subprocess.run([_chromium(), *flags, "--window-size=1200,2400", f"--screenshot={png}", out.as_uri()],
                          capture_output=True, text=True, timeout=120, env=env)
    assert shot.returncode == 0, shot.stderr
    import matplotlib.image
    img = matplotlib.image.imread(png)
    assert img.shape[0] == 2400 and img.shape[1] == 1200
    rgb = img[..., :3]
    # Not a blank page: dark text, and the bars' colours (write-lock's blue, read-lock's orange).
    assert (rgb.sum(axis=2) < 0.5).sum() > 1000
    blue = ((abs(rgb[..., 0] - 0x4c / 255) < 0.02) & (abs(rgb[..., 1] - 0x72 / 255) < 0.02)
            & (abs(rgb[..., 2] - 0xb0 / 255) < 0.02)).sum()
    orange = ((abs(rgb[..., 0] - 0xdd / 255) < 0.02) & (abs(rgb[..., 1] - 0x84 / 255) < 0.02)
              & (abs(rgb[..., 2] - 0x52 / 255) < 0.02)).sum()
    assert blue > 200 and orange > 200


# ---- result documents: resolved scenario and build_id -------------------------------------------

def test_a_result_says_how_it_was_made(results, tmp_path):
    schema = json.loads((ROOT / "scenarios" / "schema" / "result.schema.json").read_text())
    doc = json.loads(results[2].read_text())  # read-lock, seed 1
    jsonschema.validate(doc, schema)
    assert doc["variant"] == "read-lock" and doc["seed"] == 1
    sc = doc["resolved_scenario"]
    assert "variants" not in sc
    assert sc["seed"] == 1
    assert sc["mmu"]["knobs"]["zap_lock"] == "read"  # the variant's patch
    assert sc["workload"]["phases"][0]["stream"]["count"] == 4000  # the --set overrides
    assert sc["events"][0]["count"] == 8
    assert doc["overrides"] == [["/workload/phases/0/stream/count", 4000], ["/events/0/count", 8]]
    assert doc["resolved_host_profile"]["name"] == "x86-server"
    assert len(doc["build_id"]) == 64 and len(doc["resolved_sha256"]) == 64
    # The resolved scenario alone runs the same run again.
    again = tmp_path / "resolved.json"
    again.write_text(json.dumps(sc))
    r = kvmsim("run", again, "--json", tmp_path / "again.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "again.json").read_text())["fingerprint"] == doc["fingerprint"]


def test_the_binary_and_the_python_core_share_the_build_id(results):
    kvmsim_py = pytest.importorskip("kvmsim")
    assert json.loads(results[0].read_text())["build_id"] == kvmsim_py.build_id


# ---- --set on the command line: a preset's flags by their path --------------------------------

PRESET = ROOT / "scenarios" / "selftests" / "c1-anonymous-1g.json"


def test_set_a_preset_flag_on_the_command_line(tmp_path):
    out = tmp_path / "r.json"
    r = kvmsim("run", PRESET, "--set", "workload.flags.v=2", "--set", "workload.flags.b=8M", "--json", out,
               "--quiet")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["resolved_scenario"]["workload"]["flags"] == {"v": 2, "b": "8M"}
    # The resolved scenario, flags included, is a scenario by the schema.
    jsonschema.validate(doc["resolved_scenario"],
                        json.loads((ROOT / "scenarios" / "schema" / "scenario.schema.json").read_text()))
    one = tmp_path / "one.json"
    assert kvmsim("run", PRESET, "--set", "workload.flags.b=8M", "--json", one, "--quiet").returncode == 0

    def created(d):
        return next(p for p in d["phases"] if p["name"] == "KVM_CREATE_MAPPINGS")["stats"]["pf_fixed"]
    # -b 8M: one vCPU faults 8 MiB of 4 KiB pages in; -v 2: two vCPUs each walk the region.
    assert created(json.loads(one.read_text())) == 8 * 256
    assert created(doc) > 8 * 256


@pytest.mark.parametrize("setting, message", [
    ("workload.flags.v=0", "/workload/flags/v: expected an integer from 1 to 4096, got \"0\""),
    ("workload.flags.b=1X", "/workload/flags/b: expected a size"),
    ("workload.flags.vcpus=4", "/workload/flags/vcpus: expected a one-letter flag name"),
    ("vm.vcpus=4", "/vm: expected no \"vm\": the preset's flags define the VM (set a flag by its path, "
                   "e.g. /workload/flags/v for -v)"),
])
def test_a_bad_flag_is_located_and_exits_2(setting, message):
    r = kvmsim("validate", PRESET, "--set", setting)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{PRESET}: {message}"), r.stderr


def test_set_usage_errors_exit_2():
    r = kvmsim("run", PRESET, "--set", "workload.flags.v")
    assert r.returncode == 2 and "--set expects PATH=VALUE" in r.stderr


def test_the_python_command_runs_the_same_report(results):
    """`kvmsim` as pip installs it is python/kvmsim/__main__.py, which execs the C++ binary."""
    import sys
    pytest.importorskip("kvmsim")
    env = {**os.environ}
    py = subprocess.run([sys.executable, "-m", "kvmsim", "report", *map(str, results)], capture_output=True,
                        text=True, timeout=120, env=env)
    assert py.returncode == 0, py.stderr
    assert py.stdout == kvmsim("report", *results).stdout
