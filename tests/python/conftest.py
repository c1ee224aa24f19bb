"""Shared setup for the Python tests: the kvmsim package is imported from the release build
(build/python, where meson puts the built _core beside copies of python/kvmsim/*.py), as
test.sh does with PYTHONPATH; KVMSIM_BUILD=DIR picks another build directory. Child processes
(process pools, Dask workers, notebook kernels) inherit the same path."""

import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("KVMSIM_BUILD", ROOT / "build")).resolve()

_pkg = str(BUILD / "python")
if (BUILD / "python" / "kvmsim").is_dir():
    if _pkg not in sys.path:
        sys.path.insert(0, _pkg)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _pkg not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([_pkg, *parts])


@pytest.fixture(scope="session")
def kernel(tmp_path_factory):
    """A Jupyter kernel spec for this very interpreter (the one with kvmsim's dependencies),
    found first on JUPYTER_PATH, so a "python3" kernel installed elsewhere on the machine is
    never used. Returns (JUPYTER_PATH directory, kernel name)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "kvmsim-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kvmsim tests", "language": "python"}))
    return root, "kvmsim-test"
