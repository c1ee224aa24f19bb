"""scripts/env.sh on a fresh machine: building _core needs Python.h, which Debian's python3
has only with python3-dev. kvmsim_env installs the headers the chosen interpreter lacks (the
right Debian package for Debian's Python; an error naming the interpreter for any other).

The interpreter here is a stand-in: this very Python, made to report an include directory
without Python.h and, as Debian's does, the base prefix /usr. apt is a stub that records what
it is asked for (and "installs" the headers)."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from test_cli_schemas import ROOT

debian = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="the apt path needs Debian")


def debian_header_package():
    version = "%d.%d" % sys.version_info[:2]
    return "python3-dev" if os.path.realpath("/usr/bin/python3") == f"/usr/bin/python{version}" \
        else f"python{version}-dev"


def run_env(tmp_path, python, **extra):
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "env.sh", tree / "scripts" / "env.sh")  # no .venv beside it
    log = tmp_path / "apt.log"
    script = textwrap.dedent(f"""
        set -euo pipefail
        source {str(tree / "scripts" / "env.sh")!r}
        kvmsim_apt_ensure() {{      # records, and installs the headers it is asked for
            echo "$*" >> {str(log)!r}
            local p
            for p in "$@"; do
                case "$p" in python3-dev | python3.*-dev) [ -z "${{FAKE_INCLUDE:-}}" ] || touch "$FAKE_INCLUDE/Python.h" ;; esac
            done
        }}
        KVMSIM_PYTHON={python!r} kvmsim_env
        echo "chose $KVMSIM_PY"
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("KVMSIM_PYTHON", "CI")}
    env.update(extra)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=env)
    return r, (log.read_text().splitlines() if log.exists() else [])


def fake_debian_python(tmp_path, base_prefix="/usr"):
    """A wrapper of this interpreter that reports no Python.h and base prefix `base_prefix`."""
    include = tmp_path / "include"
    include.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    wrapper = tmp_path / "bin" / "python3"
    wrapper.parent.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys, sysconfig
        _paths = sysconfig.get_paths
        def get_paths(*a, **kw):
            d = _paths(*a, **kw)
            d["include"] = {str(include)!r}
            return d
        sysconfig.get_paths = get_paths
        sys.base_prefix = {base_prefix!r}
        sys.executable = {str(wrapper)!r}
    """))
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={str(site)!r}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable!r} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, include


def test_the_probe_reports_missing_headers(tmp_path):
    wrapper, include = fake_debian_python(tmp_path)
    r = subprocess.run(["bash", "-c", f"source {str(ROOT / 'scripts' / 'env.sh')!r}; kvmsim_py_probe {str(wrapper)!r}"],
                       capture_output=True, text=True, check=True)
    assert f"headers missing {include}" in r.stdout.splitlines()
    assert "base_prefix /usr" in r.stdout.splitlines()
    r = subprocess.run(["bash", "-c", f"source {str(ROOT / 'scripts' / 'env.sh')!r}; kvmsim_py_probe {sys.executable!r}"],
                       capture_output=True, text=True, check=True)
    assert any(line.startswith("headers ok ") for line in r.stdout.splitlines())


@debian
def test_debians_python_without_headers_gets_them_from_apt(tmp_path):
    wrapper, include = fake_debian_python(tmp_path)
    r, apt = run_env(tmp_path, str(wrapper), FAKE_INCLUDE=str(include))
    assert r.returncode == 0, r.stderr
    assert [debian_header_package()] in [line.split() for line in apt], apt
    assert (include / "Python.h").exists()
    assert f"chose {wrapper}" in r.stdout


@debian
def test_an_interpreter_with_headers_needs_no_package(tmp_path):
    r, apt = run_env(tmp_path, sys.executable)
    assert r.returncode == 0, r.stderr
    assert not any("-dev" in p and p.startswith("python") for line in apt for p in line.split()), apt


@debian
def test_another_interpreter_without_headers_is_an_error_naming_it(tmp_path):
    wrapper, include = fake_debian_python(tmp_path, base_prefix="/opt/somepython")
    r, apt = run_env(tmp_path, str(wrapper), FAKE_INCLUDE=str(include))
    assert r.returncode != 0
    assert f"{wrapper} has no Python.h (in {include})" in r.stderr
    assert "KVMSIM_PYTHON" in r.stderr


@pytest.mark.parametrize("doc", ["README.md", "docs/python.md"])
def test_the_docs_install_into_the_venv_setup_made(doc):
    """After ./setup.sh made .venv (Debian's python3 is externally managed, PEP 668), a plain
    `pip install .` fails: the docs say `.venv/bin/pip install .`."""
    text = (ROOT / doc).read_text()
    assert ".venv/bin/pip install ." in text
    assert "python3-dev" in text
