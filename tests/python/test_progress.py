"""The sweep's progress bar (progress=None): shown when someone watches — stderr is a terminal,
or a Jupyter kernel (whose stderr is no terminal) — and not in pipes, batch jobs or CI unless
progress=True asks for it."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import nbformat
import pytest
from nbclient import NotebookClient

from test_cli_schemas import ROOT

ZAP = ROOT / "tests" / "data" / "tdp-zap.json"
BAR = "2/2"  # tqdm's count at the end of a 2-point sweep


def sweep_code(extra=""):
    return f"import kvmsim\ndf = kvmsim.sweep({str(ZAP)!r}, variants='read', seeds=2{extra})\n"


def env(**kw):
    e = {k: v for k, v in os.environ.items() if k != "CI"}
    e.update(kw)
    return e


def run_piped(code, **kw):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env(**kw))


def test_no_bar_in_a_pipe_unless_asked():
    r = run_piped(sweep_code())
    assert r.returncode == 0, r.stderr
    assert BAR not in r.stderr
    r = run_piped(sweep_code(", progress=True"), CI="true")
    assert r.returncode == 0, r.stderr
    assert BAR in r.stderr and "golden-tdp-zap" in r.stderr


def run_on_a_terminal(**kw):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    p = subprocess.Popen([sys.executable, "-c", sweep_code()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=slave, env=env(**kw))
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(timeout=300) == 0
    return out.decode(errors="replace")


def test_a_bar_on_a_terminal_but_not_in_ci():
    assert BAR in run_on_a_terminal()
    assert BAR not in run_on_a_terminal(CI="true")


def run_in_kernel(kernel, monkeypatch, ci):
    root, name = kernel
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(sweep_code() + "len(df)")])
    NotebookClient(nb, timeout=300, kernel_name=name).execute()
    outputs = nb.cells[0].outputs
    assert any(o.get("data", {}).get("text/plain") == "2" for o in outputs), outputs
    widget = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    text = [o for o in outputs if o.output_type == "stream" and BAR in o.text]
    return widget, text


def test_a_bar_in_a_jupyter_notebook(kernel, monkeypatch):
    widget, text = run_in_kernel(kernel, monkeypatch, ci=False)
    assert widget or text  # a widget (tqdm.auto, with ipywidgets), else tqdm's text on stderr
    try:
        import ipywidgets  # noqa: F401  (scripts/env.sh installs it)
    except ImportError:
        pytest.skip("ipywidgets is not installed: the text bar was checked")
    assert widget


def test_no_bar_in_a_notebook_run_by_ci(kernel, monkeypatch):
    assert run_in_kernel(kernel, monkeypatch, ci=True) == ([], [])
