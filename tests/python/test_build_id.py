"""kvmsim._core.build_id: the build identity sweeps key their results on. It is a hash of the
sources the core is built from (scripts/source_id.py, run by meson), made without git, and it
changes with model code even when the version does not."""

import json
import os
import re
import shutil
import subprocess
import sys

import kvmsim
from conftest import BUILD
from test_cli_schemas import ROOT

SCRIPT = ROOT / "scripts" / "source_id.py"


def source_id(root, compiler="gcc 12"):
    r = subprocess.run([sys.executable, str(SCRIPT), str(root), compiler], capture_output=True, text=True,
                       check=True)
    return r.stdout.strip()


def test_the_core_knows_the_sources_it_was_built_from():
    assert re.fullmatch(r"[0-9a-f]{64}", kvmsim._core.build_id)
    assert kvmsim.build_id == kvmsim._core.build_id
    info = json.loads((BUILD / "meson-info" / "intro-compilers.json").read_text())["host"]["cpp"]
    assert kvmsim._core.build_id == source_id(ROOT, f"{info['id']} {info['version']}")


def test_the_id_follows_the_model_code_not_the_rest(tmp_path):
    """A copy of the tree without .git (as an sdist unpacks): an id all the same; a changed model
    source, header or compiler changes it; docs, scenarios and Python files do not."""
    tree = tmp_path / "src"
    ignore = shutil.ignore_patterns(".git", "build", "build-*", ".venv", "__pycache__", "notebooks")
    shutil.copytree(ROOT, tree, ignore=ignore)
    assert not (tree / ".git").exists()
    base = source_id(tree)
    assert base == source_id(ROOT)

    for rel in ["docs/python.md", "README.md", "scenarios/hosts/x86-server.json", "python/kvmsim/_sweep.py"]:
        with open(tree / rel, "a") as f:
            f.write("\n")
    assert source_id(tree) == base
    assert source_id(tree, "gcc 13") != base

    for rel in ["models/x86_tdp/x86_tdp.cpp", "sim/engine/time.hpp", "python/kvmsim/_core.cpp"]:
        path = tree / rel
        text = path.read_text()
        path.write_text(text + "\n// changed\n")
        assert source_id(tree) != base, rel
        path.write_text(text)
    assert source_id(tree) == base
    os.remove(tree / "models" / "x86_tdp" / "x86_tdp.cpp")
    assert source_id(tree) != base
