"""The kvmsim command line as a user meets it (CLI11, sim/cli/main.cpp): help with examples for
every command, --version, usage errors in one line with a did-you-mean and exit status 2,
`list --json`, compare's labels, units and refusals, and the man page and bash completion the
build makes and installs."""

import json
import re
import shutil
import subprocess

import pytest

import kvmsim as pkg
from conftest import BUILD
from test_cli_schemas import ROOT, kvmsim

ZAP = ROOT / "tests" / "data" / "tdp-zap.json"
SPLIT = ROOT / "tests" / "data" / "tdp-split.json"
SEED003 = ROOT / "scenarios" / "seeds" / "003-zap-gfn-range.json"
COMMANDS = ["run", "compare", "validate", "list", "suite", "diff", "check-published", "report", "import-trace",
            "completion"]
MAN = BUILD / "sim" / "cli" / "kvmsim.1"
COMPLETION = BUILD / "sim" / "cli" / "kvmsim"


def commands_in_help():
    """The commands `kvmsim --help` lists, in its order."""
    text = kvmsim("--help").stdout
    section = text.split("\nSubcommands:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  (\S+)", section, re.M)


def usage_error(r, command, message):
    """Exit 2, nothing on stdout, and one line "kvmsim COMMAND: MESSAGE" then where to look."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    first, hint = r.stderr.splitlines()
    who = f"kvmsim {command}".strip()
    assert first == f"{who}: {message}", r.stderr
    assert hint == f"Run '{who} --help' for its usage."


# ---- help and version ----------------------------------------------------------------------


def test_every_command_is_listed():
    assert commands_in_help() == COMMANDS


def test_the_main_help_lists_commands_and_exit_status():
    r = kvmsim("--help")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("kvmsim: a deterministic discrete-event simulator of the KVM MMU.")
    assert "Usage: kvmsim [OPTIONS] SUBCOMMAND" in r.stdout
    assert "Exit status:\n  0 success, 1 a run failed (deadlock, internal error), 2 bad input or usage." in r.stdout
    assert "KVMSIM_HOSTS" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 120
    assert kvmsim("-h").stdout == r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_examples(command):
    r = kvmsim(command, "--help")
    assert r.returncode == 0 and r.stderr == ""
    assert f"Usage: kvmsim {command} [OPTIONS]" in r.stdout
    examples = r.stdout.split("\nExamples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert all("kvmsim " in line for line in examples)
    assert any(line.startswith(f"  kvmsim {command}") for line in examples) or command == "completion"
    assert max(len(line) for line in r.stdout.splitlines()) <= 120
    # -h and --help after other arguments too.
    assert kvmsim(command, "-h").stdout == r.stdout


def test_run_help_names_every_option_it_had():
    text = kvmsim("run", "--help").stdout
    for opt in ["--variant NAME", "--seed N", "--json OUT", "--quiet", "--trace OUT", "--trace-from T", "--trace-to T",
                "--trace-vcpus LIST", "--events OUT", "--until T"]:
        assert f"  {opt} " in text, opt


def test_compare_help_documents_the_sign_convention():
    text = kvmsim("compare", "--help").stdout
    assert "boot: write-lock 0.1164s -> read-lock 0.03412s, faster by 70.69%" in text
    assert "where + means faster" in text and "-70.69%" in text
    assert "95% confidence interval of the paired" in text


def test_help_as_a_command_still_works():
    assert kvmsim("help").stdout == kvmsim("--help").stdout
    assert kvmsim("help", "compare").stdout == kvmsim("compare", "--help").stdout
    usage_error(kvmsim("help", "comapre"), "", 'no command "comapre" (did you mean "compare"?)')


def test_version_prints_the_version_and_the_build_id():
    r = kvmsim("--version")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"kvmsim {pkg.__version__}\nbuild_id {pkg.build_id}\n"
    assert re.fullmatch(r"[0-9a-f]{64}", pkg.build_id)


# ---- usage errors --------------------------------------------------------------------------


@pytest.mark.parametrize("args, command, message", [
    ([], "", "a command is required (kvmsim --help lists them)"),
    (["rn", "x.json"], "", 'unknown command "rn" (did you mean "run"?)'),
    (["compre"], "", 'unknown command "compre" (did you mean "compare"?)'),
    (["frobnicate"], "", 'unknown command "frobnicate"'),
    (["--verison"], "", 'unknown option --verison (did you mean "--version"?)'),
    (["run"], "run", "FILE is required"),
    (["run", ZAP, "--sed", "3"], "run", 'unknown option --sed (did you mean "--seed"?)'),
    (["run", ZAP, "--sed=3"], "run", 'unknown option --sed (did you mean "--seed"?)'),
    (["run", ZAP, "--seed", "abc"], "run", '--seed expects a non-negative integer, got "abc"'),
    (["run", ZAP, "--seed"], "run", "--seed expects a value"),
    (["run", ZAP, ZAP], "run", f'unexpected argument "{ZAP}"'),
    (["run", ZAP, "--until", "5"], "run",
     '--until: expected a time such as "15us", got "5" (add a unit: ps, ns, us, ms or s)'),
    (["run", ZAP, "--trace-to", "5us"], "run", "--trace-from, --trace-to and --trace-vcpus go with --trace"),
    (["run", ZAP, "--trace", "t.json", "--trace-vcpus", "0,x"], "run",
     '--trace-vcpus expects vCPU numbers such as 0,1,5, got "0,x"'),
    (["list", "--bogus"], "list", "unknown option --bogus"),
    (["list", "--jsn"], "list", 'unknown option --jsn (did you mean "--json"?)'),
    (["list", "extra"], "list", 'unexpected argument "extra"'),
    (["compare"], "compare", "PATH is required"),
    (["compare", ZAP, "--seeds", "0"], "compare", "--seeds expects 1 to 10000"),
    (["compare", ZAP, "--jobs", "2000"], "compare", "--jobs expects 1 to 1024"),
    (["compare", ZAP, "--seed", "3"], "compare", 'unknown option --seed (did you mean "--seeds"?)'),
    (["suite"], "suite", "DIR is required"),
    (["diff", "a.json"], "diff", "diff expects two event files (kvmsim run --events OUT)"),
    (["validate"], "validate", "FILE is required"),
    (["check-published", "--onl", "x"], "check-published", 'unknown option --onl (did you mean "--only"?)'),
    (["check-published", "--only", ","], "check-published", "--only expects scenario names separated by commas"),
    (["completion", "zsh"], "completion", "SHELL: zsh not in {bash}"),
    (["report", "x.json", "--fromat", "md"], "report", 'unknown option --fromat (did you mean "--format"?)'),
    (["run", ZAP, "--set", "vm.vcpus"], "run", '--set expects PATH=VALUE (e.g. --set workload.flags.v=8), got "vm.vcpus"'),
    (["run", ZAP, "--sett", "vm.vcpus=2"], "run", 'unknown option --sett (did you mean "--set"?)'),
])
def test_usage_errors_are_one_line_and_exit_2(args, command, message, tmp_path):
    usage_error(subprocess.run([str(BUILD / "sim" / "kvmsim"), *map(str, args)], capture_output=True, text=True,
                               cwd=tmp_path, timeout=60), command, message)


def test_set_is_an_option_of_every_command_that_loads_scenarios(tmp_path):
    for command in ["run", "suite", "validate", "compare", "check-published"]:
        assert "  --set PATH=VALUE " in kvmsim(command, "--help").stdout, command
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert kvmsim("run", ZAP, "--quiet", "--set", "vm.vcpus=2", "--set=mmu.knobs.zap_lock=read", "--json", a).returncode == 0
    assert kvmsim("run", ZAP, "--quiet", "--variant", "read", "--set", "vm.vcpus=2", "--json", b).returncode == 0
    assert json.loads(a.read_text())["fingerprint"] == json.loads(b.read_text())["fingerprint"]
    r = kvmsim("validate", ZAP, "--set", "vm.vcpu=2")
    assert r.returncode == 2 and r.stderr.startswith(f"{ZAP}: /vm: unknown key \"vcpu\" (did you mean \"vcpus\"?)")


def test_the_last_of_a_repeated_option_wins(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert kvmsim("run", ZAP, "--quiet", "--seed", "5", "--seed", "2", "--json", a).returncode == 0
    assert kvmsim("run", ZAP, "--quiet", "--seed=2", "--json", b).returncode == 0
    assert json.loads(a.read_text())["seed"] == 2
    assert json.loads(a.read_text())["fingerprint"] == json.loads(b.read_text())["fingerprint"]


# ---- list --json ---------------------------------------------------------------------------


def test_list_json_has_models_knobs_presets_and_host_profiles():
    r = kvmsim("list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kvmsim_version"] == pkg.__version__ and doc["build_id"] == pkg.build_id
    models = {m["name"]: m for m in doc["models"]}
    assert {"x86_tdp", "x86_shadow", "arm64_stage2"} <= set(models)
    zap = next(k for k in models["x86_tdp"]["knobs"] if k["name"] == "zap_lock")
    assert zap["type"] == "choice" and zap["default"] in zap["choices"] and "read" in zap["choices"]
    assert zap["meaning"]
    for m in doc["models"]:
        assert m["summary"] and m["kernel"] and m["operations"]
        for k in m["knobs"]:
            want = {"bool": bool, "int": int, "choice": str}[k["type"]]
            assert type(k["default"]) is want, k
    # The same as the text listing.
    text = kvmsim("list").stdout
    for m in doc["models"]:
        assert f"  {m['name']}: {m['summary']}" in text
        for k in m["knobs"]:
            assert f"      {k['name']} = " in text
    assert [p["name"] for p in doc["presets"]] == ["kvm_page_table_test", "dirty_log_perf_test"] or \
        {"kvm_page_table_test", "dirty_log_perf_test"} <= {p["name"] for p in doc["presets"]}
    hosts = {h["name"]: h for h in doc["host_profiles"]}
    assert {"x86-server", "kunpeng-920"} <= set(hosts)
    assert hosts["x86-server"]["file"].endswith("scenarios/hosts/x86-server.json")


# ---- compare -------------------------------------------------------------------------------


def test_compare_labels_the_selftest_line_and_prints_human_numbers(tmp_path):
    r = kvmsim("compare", SEED003, "--seeds", "2", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    doc = pkg.compare(SEED003, seeds=2, progress=False)
    base = doc.attrs["variants"][0]
    for v in doc.attrs["variants"][1:]:
        before, after = doc.loc["phase boot", ("mean", base)], doc.loc["phase boot", ("mean", v)]
        faster = (before - after) / before * 100
        word = "faster" if faster > 0 else "slower"
        assert (f"boot: {base} {before / 1e9:.4g}s -> {v} {after / 1e9:.4g}s, {word} by {abs(faster):.2f}%\n"
                in text)
        # The table's change has the opposite sign: the mean's change.
        assert f"{v} against {base} (baseline), 2 seeds" in text
    assert max(len(line) for line in text.splitlines()) <= 120
    assert not re.search(r"\de[+-]\d", text), "a number in exponent form"
    # Counters with separators, times with units.
    pf = doc.loc["stat pf_fixed", ("mean", base)]
    assert f"{pf:,.0f}" in text or f"{pf:,.1f}" in text
    assert re.search(r"^phase boot +\d+\.\d+m?s +\d+\.\d+m?s +[-+]\d+\.\d\d%  \[", text, re.M)
    # The interval column names the variants (in the header, or the title when that is too wide).
    assert (f"95% CI of {doc.attrs['variants'][1]} - {base}" in text
            or f"the intervals are of {doc.attrs['variants'][1]} - {base}" in text)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    for name, args in {"a": [], "b": ["--variant", "no-eager-split"]}.items():
        assert kvmsim("run", SPLIT, "--quiet", "--json", d / f"{name}.json", *args).returncode == 0
    assert kvmsim("run", SPLIT, "--quiet", "--until", "20us", "--json", d / "stopped.json").returncode == 0
    assert json.loads((d / "stopped.json").read_text())["status"] == "stopped"
    assert kvmsim("run", ZAP, "--quiet", "--events", d / "events.json", "--trace", d / "trace.json",
                  "--until", "50us").returncode == 0
    assert kvmsim("compare", d / "a.json", d / "b.json", "--json", d / "cmp.json").returncode == 0
    return d


def test_compare_of_two_results_still_works(outputs):
    r = kvmsim("compare", outputs / "a.json", outputs / "b.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("golden-tdp-split: 2 variants x 1 seed (baseline a.json)\n")
    assert "b.json against a.json (baseline), 1 seed:" in r.stdout
    assert "95% CI" not in r.stdout and "one seed,\n so no interval" in r.stdout


@pytest.mark.parametrize("files, culprit, message", [
    (["a.json", "stopped.json"], "stopped.json",
     "the run was stopped before it completed (kvmsim run --until): compare needs completed runs"),
    (["stopped.json", "a.json"], "stopped.json",
     "the run was stopped before it completed (kvmsim run --until): compare needs completed runs"),
    (["events.json", "a.json"], "events.json",
     "this is an event log (kvmsim run --events, for kvmsim diff), not a scenario or a result: compare takes "
     "scenarios, directories of them, or two results"),
    (["trace.json"], "trace.json",
     "this is a trace (kvmsim run --trace, for a trace viewer), not a scenario or a result: compare takes "
     "scenarios, directories of them, or two results"),
    (["cmp.json", "b.json"], "cmp.json",
     "this is a comparison (kvmsim compare --json), not a scenario or a result: compare takes scenarios, "
     "directories of them, or two results"),
    ([SPLIT, "a.json"], "a.json",
     "this is a run's result (kvmsim run --json): compare takes two results (and nothing else), or scenarios "
     "and directories of them"),
    (["a.json"], "a.json",
     "this is a run's result (kvmsim run --json): compare takes two results (and nothing else), or scenarios "
     "and directories of them"),
    ([ROOT / "scenarios" / "hosts" / "x86-server.json"], ROOT / "scenarios" / "hosts" / "x86-server.json",
     "this is a host profile, not a scenario or a result: compare takes scenarios, directories of them, or two "
     "results"),
])
def test_compare_refuses_what_it_cannot_compare_in_one_line(outputs, files, culprit, message):
    r = kvmsim("compare", *[outputs / f for f in files], "--jobs", "1")
    assert r.returncode == 2, r.stdout
    assert r.stdout == ""
    assert r.stderr == f"{outputs / culprit}: {message}\n"


def test_diff_refuses_files_of_another_kind(outputs):
    r = kvmsim("diff", outputs / "a.json", outputs / "events.json")
    assert r.returncode == 2
    assert r.stderr == (f"{outputs / 'a.json'}: this is a run's result (kvmsim run --json), not an event log: "
                        "diff compares two files of kvmsim run --events\n")


def test_suite_prints_times_in_units_and_counters_with_separators(tmp_path):
    shutil.copy(ZAP, tmp_path / "zap.json")
    r = kvmsim("suite", tmp_path)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"\de[+-]\d", r.stdout), r.stdout
    assert re.search(r"wait \d+(\.\d+)?(ns|us|ms|s)\b", r.stdout), r.stdout
    assert re.search(r"events \d{1,3}(,\d{3})*, wall \d+\.\d\ds, fingerprint [0-9a-f]{16}", r.stdout), r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 120


# ---- man page and bash completion ----------------------------------------------------------


def test_the_build_makes_a_man_page_with_every_command():
    text = MAN.read_text()
    assert text.startswith(".\\\" DO NOT MODIFY THIS FILE!  It was generated by help2man")
    assert '.TH KVMSIM "1"' in text
    for cmd in commands_in_help():
        assert f'.SS "kvmsim {cmd}"' in text, cmd
        assert f"Usage: kvmsim {cmd.replace('-', chr(92) + '-')} [OPTIONS]" in text, cmd
    assert "\\-\\-trace\\-vcpus LIST" in text and "\\-\\-seeds N" in text
    assert ".SH ENVIRONMENT" in text and "KVMSIM_HOSTS" in text
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", str(MAN)], capture_output=True, text=True, env={"MANWIDTH": "100",
                                                                                          "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0 and "kvmsim check-published" in r.stdout


def complete(*words):
    """What the completion script offers for the last of `words` (the word being typed)."""
    script = (f"source {COMPLETION}; COMP_WORDS=({' '.join(repr(w) if w else repr('') for w in words)}); "
              f"COMP_CWORD={len(words) - 1}; _kvmsim; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_the_bash_completion_completes_commands_and_options():
    assert COMPLETION.read_text() == kvmsim("completion", "bash").stdout
    assert complete("kvmsim", "") == COMMANDS + ["--help", "-h", "--help-all", "--version"]
    assert complete("kvmsim", "c") == ["compare", "check-published", "completion"]
    assert complete("kvmsim", "ru") == ["run"]
    assert complete("kvmsim", "r") == ["run", "report"]
    assert complete("kvmsim", "report", "x.json", "-o", "READ") == ["README.md"]
    assert complete("kvmsim", "run", "--tr") == ["--trace", "--trace-from", "--trace-to", "--trace-vcpus"]
    assert complete("kvmsim", "run", "scenarios/seeds/003", "--va") == ["--variant"]
    assert complete("kvmsim", "list", "--") == ["--help", "--json", "--host-dir", "--set"]
    assert complete("kvmsim", "check-published", "--o") == ["--only"]
    assert complete("kvmsim", "completion", "") == ["bash"]
    assert complete("kvmsim", "i") == ["import-trace"]
    assert complete("kvmsim", "import-trace", "x.txt", "--wi") == ["--window"]
    # Files where a command takes a file, directories where it takes one, nothing for a number.
    assert complete("kvmsim", "run", "scenarios/seeds/003") == ["scenarios/seeds/003-zap-gfn-range.json"]
    assert complete("kvmsim", "run", "x.json", "--json", "READ") == ["README.md"]
    assert complete("kvmsim", "suite", "scenarios/se") == ["scenarios/seeds", "scenarios/selftests"]
    assert complete("kvmsim", "compare", "x.json", "--seeds", "") == []
    # A scenario's variants, read from the file on the line.
    assert complete("kvmsim", "run", "scenarios/seeds/003-zap-gfn-range.json", "--variant", "") == \
        ["write-lock", "write-lock+precheck", "read-lock", "drop-write-zap-read"]
    assert complete("kvmsim", "run", "tests/data/tdp-zap.json", "--variant", "dr") == ["drop_write_zap_read"]
    assert complete("kvmsim", "run", "--variant", "") == []


def test_pip_install_puts_them_in_share():
    """meson-python maps what meson installs under {datadir} to the wheel's data scheme, whose
    root is the install prefix: the build installs them under {datadir}/share so that `pip
    install .` gives PREFIX/share/man/man1/kvmsim.1 and PREFIX/share/bash-completion/completions/kvmsim."""
    plan = json.loads((BUILD / "meson-info" / "intro-install_plan.json").read_text())
    targets = {t["destination"]: src for src, t in plan["targets"].items()}
    assert targets["{datadir}/share/man/man1/kvmsim.1"] == str(MAN)
    assert targets["{datadir}/share/bash-completion/completions/kvmsim"] == str(COMPLETION)
    mesonpy = pytest.importorskip("mesonpy")
    if not hasattr(mesonpy, "_map_to_wheel"):
        pytest.skip("this meson-python has no _map_to_wheel")
    wheel = mesonpy._map_to_wheel(plan, [], [], str(BUILD))
    data = {str(e.dst): e.src for e in wheel["data"]}
    assert data == {"share/man/man1/kvmsim.1": str(MAN), "share/bash-completion/completions/kvmsim": str(COMPLETION)}


def test_the_installed_entry_point_gives_the_same_help_version_and_usage_errors():
    """`kvmsim` as pip installs it (the package's __main__, which execs the executable)."""
    import sys

    def entry(*args):
        return subprocess.run([sys.executable, "-m", "kvmsim", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    v = entry("--version")
    assert v.returncode == 0 and v.stdout == kvmsim("--version").stdout
    assert re.fullmatch(r"kvmsim \S+\nbuild_id [0-9a-f]{64}\n", v.stdout), v.stdout
    h = entry("run", "--help")
    assert h.returncode == 0 and "Examples:" in h.stdout and "--variant" in h.stdout
    usage_error(entry("run", SEED003, "--sed", "3"), "run", 'unknown option --sed (did you mean "--seed"?)')
    usage_error(entry("lst"), "", 'unknown command "lst" (did you mean "list"?)')
