"""The README's code blocks are tested examples: every ```python block runs as written, and every
```sh block that runs kvmsim runs line by line, each command with the exit status the README
gives it (0 unless its comment says "exit status N").

They run in a scratch directory laid out as the project is (build/, scenarios/, tests/data), so
the paths work as written and what they write stays there. To keep the suite quick, that
directory's scenarios/seeds holds only seed 003 and its scenarios/published the small fixtures of
tests/data/published: the commands and options are the README's, the folders they walk smaller.

A block that is neither (the quick start, which runs setup.sh and test.sh themselves, and the
benchmarks, minutes long) is listed in NOT_RUN with the reason, so a new block cannot go
untested unnoticed."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import BUILD
from test_cli_schemas import ROOT

README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
SEED = "003-zap-gfn-range.json"

# First lines of the blocks that are not run, and why.
NOT_RUN = {
    "./setup.sh   # installs what is missing (Debian packages, PyPI tools), builds kvmsim and runs the main job":
        "the quick start: setup.sh and test.sh are what runs these tests",
    "build/bench/kvmsim-bench engine --json   # event throughput against a bare priority queue":
        "benchmarks: minutes of simulation each",
    "CC=clang-14 CXX=clang++-14 meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \\":
        "a long fuzzing session (an hour); test.sh runs the same target for a bounded number of executions",
}


def blocks():
    return [(lang, body) for lang, body in BLOCK.findall(README.read_text())]


def runs_kvmsim(body):
    return any(re.match(r"(build/sim/)?kvmsim\b", line) for line in body.splitlines())


def python_blocks():
    return [body for lang, body in blocks() if lang == "python"]


def shell_blocks():
    return [body for lang, body in blocks() if lang in ("sh", "bash", "shell") and runs_kvmsim(body)]


def test_every_block_is_tested_or_listed():
    for lang, body in blocks():
        first = body.splitlines()[0]
        tested = lang == "python" or (lang in ("sh", "bash", "shell") and runs_kvmsim(body))
        assert tested != (first in NOT_RUN), f"a README block neither tested nor in NOT_RUN: {first!r}"
    assert python_blocks() and shell_blocks()


@pytest.fixture
def project(tmp_path):
    """A scratch directory laid out as the project is, with smaller seed and published folders."""
    (tmp_path / "build").symlink_to(BUILD)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for d in ("hosts", "schema", "selftests"):
        (scenarios / d).symlink_to(ROOT / "scenarios" / d)
    (scenarios / "seeds").mkdir()
    (scenarios / "seeds" / SEED).symlink_to(ROOT / "scenarios" / "seeds" / SEED)
    (scenarios / "published").symlink_to(ROOT / "tests" / "data" / "published")
    return tmp_path


def commands(body):
    """The block's commands: one per line (continuation comments skipped), each with the exit
    status its comment gives (0 by default)."""
    out = []
    for line in body.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command, _, comment = line.partition("  #")
        m = re.search(r"exit status (\d+)", comment)
        out.append((command.strip(), int(m.group(1)) if m else 0))
    return out


@pytest.mark.parametrize("index", range(len(shell_blocks())))
def test_readme_shell_examples_run(project, index):
    env = dict(os.environ, KVMSIM_HOSTS="")
    for command, status in commands(shell_blocks()[index]):
        words = shlex.split(command)
        assert words[0] == "build/sim/kvmsim", command
        r = subprocess.run(["bash", "-c", command], cwd=project, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == status, f"{command}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert "internal error" not in r.stderr
    # What the block says it writes.
    for f in ("a.json", "b.json", "w.json", "t.json", "a.events.json", "b.events.json", "report.html"):
        if f in shell_blocks()[index]:
            assert (project / f).stat().st_size > 0, f


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_examples_run(project, index):
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-c", python_blocks()[index]], cwd=project, capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    if "sweep.jsonl" in python_blocks()[index]:
        assert len((project / "sweep.jsonl").read_text().splitlines()) > 0
    if "wait.png" in python_blocks()[index]:
        assert (project / "wait.png").read_bytes().startswith(b"\x89PNG")
