#!/usr/bin/env python3
"""Writes the notebook of a seed scenario: notebooks/seed-NAME.ipynb for scenarios/seeds/NAME.json.

    python3 notebooks/new_seed_notebook.py scenarios/seeds/004-something.json

The notebook has every generic part already (parameters, the before/after comparison, its
plot, KVM counters and mmu_lock records per variant). Two cells are yours to write before it is
committed (tests/python/test_notebooks.py fails while the marker below is in a notebook):

- SMALL_OVERRIDES in the parameters cell: overrides ({path: value}) that make the scenario
  run in a second or two when KVMSIM_NB_SMALL=1 (fewer accesses, fewer events), keeping the
  mechanism visible;
- the "Mechanism" section: what the counters show and why, with `assert`s of the claims, so
  the notebook fails if the model stops behaving as the text says.

Outputs are never written: commit the notebook as this script leaves it (plus your text).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

MARKER = "TODO(seed notebook)"

ROOT = Path(__file__).resolve().parents[1]


def cells(seed: Path) -> list[nbformat.NotebookNode]:
    doc = json.loads(seed.read_text())
    rel = seed.resolve().relative_to(ROOT).as_posix()
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return [
        md(f"# {doc['name']}\n\n{doc.get('description', '')}\n\n"
           f"Scenario: `{rel}`. Variants: "
           + ", ".join(f"`{v['name']}`" for v in doc.get("variants", []))
           + " (the first is the baseline).\n\n"
           "Every number below comes from the simulator; re-running the notebook gives the same "
           "numbers bit for bit."),
        code("# Parameters. KVMSIM_NB_SMALL=1 (set by the tests) runs a smaller, faster version.\n"
             "%matplotlib inline\n"
             "import kvmsim\n"
             "from kvmsim.study import SeedStudy, small\n\n"
             f"SCENARIO = kvmsim.scenarios_dir() / \"seeds\" / \"{seed.name}\"\n"
             "SEEDS = 2 if small() else 5\n"
             f"SMALL_OVERRIDES = {{}}  # {MARKER}: make the scenario small (a second or two)\n"
             "OVERRIDES = SMALL_OVERRIDES if small() else {}",
             metadata={"tags": ["parameters"]}),
        md("## Before and after\n\n"
           "Every variant over the same seeds (common random numbers): the selftest's lines, "
           "then `kvmsim compare`'s table (means, change against the baseline, 95% interval of "
           "the paired difference; `*` when it excludes zero)."),
        code("study = SeedStudy(SCENARIO, seeds=SEEDS, overrides=OVERRIDES)\n"
             "print(study.headline())"),
        code("print(study.table())"),
        code("study.figure()"),
        md("## Counters\n\nKVM's counters (mean over seeds) and `mmu_lock` per mode and call site "
           "(first seed) for each variant."),
        code("counters = study.counters()\ncounters"),
        code("locks = study.locks()\nlocks"),
        md(f"## Mechanism\n\n{MARKER}: explain the difference from the counters above: which "
           "work each variant does or avoids, and which lock waits that removes. Then check the "
           "claims in the next cell."),
        code(f"# {MARKER}: assert the claims of the text above, e.g.\n"
             "# assert counters.loc['remote_tlb_flush', study.variants[1]] < counters.loc['remote_tlb_flush', study.baseline]"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seed", type=Path, help="scenarios/seeds/NAME.json")
    ap.add_argument("--force", action="store_true", help="overwrite an existing notebook")
    args = ap.parse_args(argv)
    out = ROOT / "notebooks" / f"seed-{args.seed.stem}.ipynb"
    if out.exists() and not args.force:
        print(f"{out} exists (--force overwrites it)", file=sys.stderr)
        return 1
    nb = nbformat.v4.new_notebook()
    nb.cells = cells(args.seed)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    nbformat.write(nb, out)
    print(f"wrote {out.relative_to(ROOT)}: write its SMALL_OVERRIDES and Mechanism cells ({MARKER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
