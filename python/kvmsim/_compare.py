"""Before/after comparison: the table of ``kvmsim compare``, from the same C++ code."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from . import _core
from ._result import Result
from ._scenario import Scenario, ScenarioLike, load, override_list
from ._sweep import Keys, execute, seed_list, variant_list

if TYPE_CHECKING:
    import pandas as pd

STATS = ["mean", "stdev", "change_pct", "ci95_low", "ci95_high", "significant"]


def _is_result_file(path: str | os.PathLike[str]) -> bool:
    """As the command decides: a file whose JSON object has "result_schema"."""
    if os.path.isdir(path):
        return False
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "result_schema" in doc


def compare_frame(text: str, doc: dict[str, Any]) -> pd.DataFrame:
    """The comparison as a DataFrame: the rows the command prints (metrics with a non-zero mean
    in some variant), columns (statistic, variant) for mean, stdev, change_pct, ci95_low,
    ci95_high and significant, plus ("unit", ""). attrs: "text" (the command's table), "json"
    (its --json document), "scenario", "variants", "seeds"."""
    import pandas as pd
    variants = doc["variants"]
    cols = pd.MultiIndex.from_tuples([("unit", "")] + [(s, v) for s in STATS for v in variants],
                                     names=["statistic", "variant"])
    index, rows = [], []
    for m in doc["metrics"]:
        per = m["variants"]
        if not any(per[v]["mean"] != 0 for v in variants):
            continue  # the command leaves these out of its table too
        row: list[Any] = [m["unit"]]
        for stat in STATS:
            for v in variants:
                x = per[v]
                if stat in ("mean", "stdev"):
                    row.append(x[stat])
                elif stat == "change_pct":
                    row.append(x.get("change_pct", float("nan")))
                elif stat == "ci95_low":
                    row.append(x["ci95"][0] if "ci95" in x else float("nan"))
                elif stat == "ci95_high":
                    row.append(x["ci95"][1] if "ci95" in x else float("nan"))
                else:
                    row.append(bool(x["significant"]))
        index.append(m["name"])
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(index, name="metric"), columns=cols)
    df.attrs.update({"text": text, "json": doc, "scenario": doc["scenario"], "variants": variants,
                     "seeds": doc["seeds"]})
    return df


def compare(*items: ScenarioLike | Result, seeds: int | Iterable[int] = 5,
            variants: str | Iterable[str] | None = None, overrides: Mapping[str, Any] | None = None,
            executor: Executor | None = None, results: str | os.PathLike[str] | None = None,
            progress: bool | None = None, names: Iterable[str] | None = None,
            host_dirs: Iterable[str | os.PathLike[str]] | None = None) -> pd.DataFrame:
    """The before/after table of ``kvmsim compare``, as a DataFrame (``df.attrs["text"]`` is the
    table exactly as the command prints it).

    ``compare(scenario, seeds=5)`` runs every variant (or ``variants``) over the same seeds
    (the scenario's seed and the ones after it) and gives each metric's mean per variant, its
    change against the baseline and the Student-t 95% interval of the paired difference, as
    ``kvmsim compare SCENARIO --seeds 5``. The runs go through the sweep machinery:
    ``executor``, ``results`` and ``progress`` are those of :func:`kvmsim.sweep`.

    ``compare(a, b, ...)`` with Results (or saved result files, or result dicts) compares
    single runs, as ``kvmsim compare A.json B.json``; ``names`` labels them (default: the
    file names, or the runs' variants). ``host_dirs``: directories searched first for the host
    profile (as :func:`kvmsim.load`).
    """
    if not items:
        raise TypeError("compare() expects a scenario, or two or more results")
    if len(items) >= 2 or isinstance(items[0], Result) or (
            isinstance(items[0], (str, os.PathLike)) and _is_result_file(items[0])):
        return _compare_results(items, names)
    return _compare_scenario(items[0], seeds=seeds, variants=variants, overrides=overrides,
                             executor=executor, results=results, progress=progress, host_dirs=host_dirs)


def _compare_scenario(scenario: ScenarioLike, *, seeds: int | Iterable[int], variants: str | Iterable[str] | None,
                      overrides: Mapping[str, Any] | None, executor: Executor | None,
                      results: str | os.PathLike[str] | None, progress: bool | None,
                      host_dirs: Iterable[str | os.PathLike[str]] | None = None) -> pd.DataFrame:
    sc: Scenario = load(scenario, overrides=overrides, host_dirs=host_dirs)
    names = variant_list(sc, variants)
    seed_values = seed_list(sc, seeds)
    pairs = override_list(sc.overrides)
    keys = Keys(sc)
    points = [keys.point({}, pairs, v, s) for v in names for s in seed_values]
    rows = execute(sc, points, executor=executor, results=results, progress=progress, dirs=keys.dirs)
    failed = [p for p in points if rows[p.key]["status"] != "completed"]
    if failed:
        # Every run that did not complete, each named by scenario, variant and seed (and the
        # overrides), with the engine's report: enough to rerun it alone with kvmsim.run().
        where = f"scenario {sc.name!r} ({sc.file})"
        if sc.overrides:
            where += f" with overrides {sc.overrides!r}"
        lines = [f"{where}: {len(failed)} of {len(points)} runs did not complete, so there is nothing to compare"]
        for p in failed:
            row = rows[p.key]
            lines.append(f"  variant {p.variant!r}, seed {p.seed}: {row['status']}")
            lines += [f"    {line}" for line in str(row.get("deadlock", "")).splitlines()]
        raise RuntimeError("\n".join(lines))
    values = [[[tuple(m) for m in rows[p.key]["metrics"]] for p in points if p.variant == v] for v in names]
    first = rows[points[0].key]
    text, js = _core.compare_values(first["scenario"], first["selftest"], names, seed_values, values)
    return compare_frame(text, json.loads(js))


def _compare_results(items: tuple[Any, ...], names: Iterable[str] | None) -> pd.DataFrame:
    if len(items) < 2:
        raise TypeError("compare() of results expects two or more")
    texts, labels = [], []
    for i, item in enumerate(items):
        if isinstance(item, Result):
            texts.append(item.json)
            labels.append(item.variant or f"run{i}")
        elif isinstance(item, Mapping):
            texts.append(json.dumps(item))
            labels.append(str(item.get("variant") or f"run{i}"))
        elif isinstance(item, (str, os.PathLike)):
            with open(item, encoding="utf-8") as f:
                texts.append(f.read())
            labels.append(os.path.basename(os.fspath(item)))
        else:
            raise TypeError(f"compare(): expected Results, result files or result dicts, got {type(item).__name__}")
    if names is not None:
        labels = list(names)
        if len(labels) != len(texts):
            raise ValueError(f"names: {len(labels)} names for {len(texts)} results")
    if len(set(labels)) != len(labels):
        labels = [f"{label}#{i}" for i, label in enumerate(labels)]
    docs = [json.loads(t) for t in texts]
    # As the command does for two result files: the scenario name and the selftest's metrics
    # from the first document that has them; metrics in the (sorted) order of a parsed file.
    scenario = next((d["scenario"] for d in docs if isinstance(d.get("scenario"), str)), "")
    selftest: list[str] = []
    for d in docs:
        if not selftest and isinstance(d.get("phases"), list):
            selftest = [p["name"] for p in d["phases"]
                        if isinstance(p, dict) and p.get("selftest_metric") and isinstance(p.get("name"), str)]
    values = [[[tuple(m) for m in _core.metrics(t, ordered=False)]] for t in texts]
    text, js = _core.compare_values(scenario, selftest, labels, [0], values)
    return compare_frame(text, json.loads(js))
