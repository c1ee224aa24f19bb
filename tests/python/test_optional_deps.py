"""What `pip install .` without extras gives: everything but the plots, and for the plots an
error that says what to install (matplotlib is the "plot" extra in pyproject.toml)."""

import subprocess
import sys

import pytest

from test_cli_schemas import ROOT

# matplotlib made unimportable, as in an environment without it.
WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None\n"


def run(code):
    return subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB + code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_plot_without_matplotlib_says_how_to_install_it():
    r = run("""
import kvmsim
r = kvmsim.run('tests/data/tdp-zap.json')  # the rest works
assert r.status == 'completed'
try:
    import kvmsim.plot
except ImportError as e:
    print(type(e).__name__, e)
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ImportError kvmsim.plot needs matplotlib")
    assert "pip install 'kvmsim[plot]'" in r.stdout


def test_the_lazy_attribute_says_it_too():
    r = run("""
import kvmsim
kvmsim.study  # no matplotlib needed
try:
    kvmsim.plot
except ImportError as e:
    print(e)
""")
    assert r.returncode == 0, r.stderr
    assert "pip install 'kvmsim[plot]'" in r.stdout


def test_the_plot_extra_is_matplotlib():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("matplotlib") for d in meta["optional-dependencies"]["plot"])
    assert not any(d.startswith("matplotlib") for d in meta["dependencies"])
