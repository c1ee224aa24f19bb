"""notebooks/: each executes (small: KVMSIM_NB_SMALL=1) without an error, including the cells
that check the text's claims; they are committed without outputs; every seed scenario has
one."""

import json

import nbformat
import pytest
from nbclient import NotebookClient

from test_cli_schemas import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MARKER = "TODO(seed notebook)"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, monkeypatch, kernel):
    root, name = kernel
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    monkeypatch.setenv("KVMSIM_NB_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=name, resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and the traceback, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: cell {i} has an execution count"
    assert "widgets" not in nb.get("metadata", {})
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_unwritten_parts(path):
    assert MARKER not in path.read_text(), f"{path.name}: write the parts marked {MARKER}"


@pytest.mark.parametrize("seed", sorted((ROOT / "scenarios" / "seeds").glob("*.json")), ids=lambda p: p.name)
def test_every_seed_scenario_has_a_notebook(seed):
    nb = ROOT / "notebooks" / f"seed-{seed.stem}.ipynb"
    assert nb.exists(), (f"no notebook for {seed.relative_to(ROOT)}: run "
                         f"`python3 notebooks/new_seed_notebook.py {seed.relative_to(ROOT)}` and write its "
                         f"parts marked {MARKER}")
    assert f'\\"{seed.name}\\"' in nb.read_text(), f"{nb.name} does not load {seed.name}"


def test_the_generator_writes_a_notebook_with_the_marked_parts(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("new_seed_notebook", ROOT / "notebooks" / "new_seed_notebook.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    seed = ROOT / "scenarios" / "seeds" / "003-zap-gfn-range.json"
    nb = nbformat.v4.new_notebook(cells=gen.cells(seed))
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    assert text.count(MARKER) >= 2 and "003-zap-gfn-range.json" in text
