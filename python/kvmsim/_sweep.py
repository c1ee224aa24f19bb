"""Parameter sweeps: a grid of scenario paths x variants x seeds, on any concurrent.futures
executor, appended point by point to a results file so that a rerun resumes."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _core
from ._errors import GridError, ScenarioError
from ._scenario import (Scenario, ScenarioLike, check_seed, core_overrides, did_you_mean, grid_error,
                        host_dirs, load, override_list, plain, to_pointer)

if TYPE_CHECKING:
    import pandas as pd

#: Columns of a sweep frame besides the grid's paths and the metrics.
POINT_COLUMNS = ["variant", "seed"]
RUN_COLUMNS = ["fingerprint", "status", "events", "sim_time_ns", "wall_time_s"]

_KEY_VERSION = 2  # 1: the scenario's bytes, overrides, variant, seed, version


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Runs one point of a sweep: plain data in, plain data out (what executors ship).

    ``task`` holds the scenario's text and file label, the variant ("" for the baseline of a
    scenario without variants), the seed, the overrides as [(pointer, JSON text)], the host
    profile directories, the point's key and its grid values. The row returned has the key,
    the grid values, the variant and seed, the run's fingerprint, status, events, simulated
    and wall time, the selftest metric names, and the metrics as [[name, unit, value], ...] in
    the order ``kvmsim compare`` uses.
    """
    text = _core.run(task["text"], task["file"], variant=task["variant"] or None, seed=task["seed"],
                     overrides=task["overrides"], host_dirs=host_dirs(task["host_dirs"]))
    doc = json.loads(text)
    row = {
        "key": task["key"],
        "params": task["params"],
        "variant": doc["variant"],
        "seed": doc["seed"],
        "scenario": doc["scenario"],
        "scenario_sha256": doc["scenario_sha256"],
        "fingerprint": doc["fingerprint"],
        "status": doc["status"],
        "events": doc["events"],
        "sim_time_ns": doc["sim_time_ns"],
        "wall_time_s": doc["wall_time_s"],
        "selftest": [p["name"] for p in doc["phases"] if p["selftest_metric"]],
        "metrics": [list(m) for m in _core.metrics(text, ordered=True)],
        # What the key was made of (a results file says why a row is, or is not, reused) and
        # the build of the core that ran it (a Dask worker's may differ from the caller's).
        "key_version": _KEY_VERSION,
        "resolved_sha256": task.get("resolved_sha256", ""),
        "build_id": _core.build_id,
    }
    if doc["status"] != "completed":
        row["deadlock"] = doc.get("deadlock", "")
    return row


@dataclass
class Point:
    """One run of a sweep: grid values, variant and seed, and its key in a results file."""
    params: dict[str, Any]
    variant: str
    seed: int
    pairs: list[tuple[str, Any]] = field(repr=False)
    key: str = ""
    resolved: str = field(default="", repr=False)
    accesses: int = field(default=0, repr=False)  # the run's guest accesses: its size, roughly


def point_ident(resolved: str, variant: str, seed: int) -> dict[str, Any]:
    """What identifies a run, hashed into its key (and stored with each row of a results file)."""
    return {"key_version": _KEY_VERSION, "kvmsim": _core.__version__, "build_id": _core.build_id,
            "resolved_sha256": resolved, "variant": variant, "seed": seed}


def point_key(resolved: str, variant: str, seed: int) -> str:
    """What identifies a run: everything that decides its result. That is the scenario as it
    runs (its document with the variant's patch and the overrides applied, and the host
    profile it names, by content: ``resolved_sha256``), the seed, and the compiled core (its
    version and ``_core.build_id``, a hash of the sources it was built from). A results file is
    matched on it, so a changed scenario, host profile or model runs again; an edit elsewhere
    (another variant's patch, whitespace) does not."""
    ident = point_ident(resolved, variant, seed)
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Keys:
    """Point keys of one sweep, loading each (overrides, variant) once (host profiles are read
    again by the next sweep, so an edited profile is seen)."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.dirs = host_dirs(sc.host_dirs)
        self.loaded: dict[tuple[str, str], tuple[str, int]] = {}  # -> (resolved_sha256, accesses)

    @staticmethod
    def _id(pairs: Sequence[tuple[str, Any]], variant: str) -> tuple[str, str]:
        return json.dumps([[p, v] for p, v in pairs], sort_keys=True), variant

    def remember(self, pairs: Sequence[tuple[str, Any]], variant: str, info: Mapping[str, Any]) -> None:
        self.loaded[self._id(pairs, variant)] = (str(info["resolved_sha256"]), int(info["accesses"]))

    def point(self, params: dict[str, Any], pairs: list[tuple[str, Any]], variant: str, seed: int) -> Point:
        k = self._id(pairs, variant)
        if k not in self.loaded:
            self.remember(pairs, variant, _core.load(self.sc.text, self.sc.file, variant=variant or None,
                                                     seed=self.sc.seed, overrides=core_overrides(pairs),
                                                     host_dirs=self.dirs))
        resolved, accesses = self.loaded[k]
        return Point(params, variant, seed, pairs, point_key(resolved, variant, seed),
                     resolved, accesses)


# ---- the results file ---------------------------------------------------------------------------------

class ResultsFile:
    """A JSON-lines file of finished points, appended one line per point (flushed and fsynced).

    Opening it reads what is done. A last line cut short (the process died while writing it)
    is dropped; any other line that is not a point is an error naming the file and line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.rows: dict[str, dict[str, Any]] = {}
        newline = False
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                data = f.read()
            lines = data.split(b"\n")
            tail = lines.pop()  # b"" when the file ends with a newline
            for n, line in enumerate(lines, 1):
                if line.strip():
                    self._add(line, n)
            if tail.strip():
                try:
                    self._add(tail, len(lines) + 1)
                    newline = True
                except ValueError:
                    warnings.warn(f"{self.path}:{len(lines) + 1}: dropping an unfinished last line "
                                  f"({len(tail)} bytes; the sweep was interrupted while writing it)",
                                  stacklevel=3)
                    with open(self.path, "r+b") as f:
                        f.truncate(len(data) - len(tail))
        self._f = open(self.path, "ab")
        if newline:
            self._f.write(b"\n")

    def _add(self, line: bytes, n: int) -> None:
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{self.path}:{n}: expected a sweep point (one JSON object per line), "
                             f"got unreadable JSON: {e}") from None
        if not isinstance(row, dict) or not isinstance(row.get("key"), str) or "metrics" not in row:
            raise ValueError(f"{self.path}:{n}: expected a sweep point (an object with \"key\" and "
                             f"\"metrics\"), got {line[:60]!r}")
        self.rows[row["key"]] = row

    def append(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.rows[row["key"]] = row

    def close(self) -> None:
        self._f.close()


# ---- running points -----------------------------------------------------------------------------------

def in_jupyter() -> bool:
    """True in a Jupyter kernel (a notebook, JupyterLab, VS Code): its stderr is no terminal,
    yet someone is watching."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an IPython too old or too new to ask
        return False


def show_progress() -> bool:
    """The default of ``progress=None``: a bar when someone is watching (stderr is a terminal,
    or a Jupyter kernel); none in pipes, batch jobs and CI ($CI set)."""
    if os.environ.get("CI"):
        return False
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return in_jupyter()


def execute(sc: Scenario, points: Sequence[Point], *, executor: Executor | None = None,
            results: str | os.PathLike[str] | None = None, progress: bool | None = None,
            callback: Callable[[dict[str, Any]], Any] | None = None,
            dirs: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Runs the points not already in ``results``; returns every point's row by key.

    Each finished point is appended to ``results`` as it completes. If anything stops the
    sweep (a point's error, ``callback`` raising, Ctrl-C), the points not started are
    cancelled, every point that has finished meanwhile is appended too, and the error is
    raised: only the points still running are lost.
    """
    store = ResultsFile(results) if results is not None else None
    try:
        done = dict(store.rows) if store else {}
        todo = [p for p in points if p.key not in done]
        wanted = {p.key for p in points}
        if store and todo:
            stale = sum(1 for r in store.rows.values()
                        if r.get("key_version") != _KEY_VERSION or r.get("build_id") != _core.build_id)
            if stale:
                warnings.warn(f"{store.path}: {stale} of its points were run by another build of kvmsim (other "
                              f"model code, or an older results format); they are not reused", stacklevel=3)
        if progress is None:
            progress = show_progress()
        from tqdm.auto import tqdm  # a widget in Jupyter (text if ipywidgets is missing), else text
        bar = tqdm(total=len(wanted), initial=len(wanted) - len({p.key for p in todo}), disable=not progress,
                   desc=sc.name, unit="point", file=sys.stderr, dynamic_ncols=True)
        run_dirs = list(dirs) if dirs is not None else host_dirs(sc.host_dirs)  # those the keys were made with
        other_builds: set[str] = set()

        def task(p: Point) -> dict[str, Any]:
            return {"text": sc.text, "file": sc.file, "variant": p.variant, "seed": p.seed,
                    "overrides": core_overrides(p.pairs), "host_dirs": run_dirs, "key": p.key, "params": p.params,
                    "resolved_sha256": p.resolved}

        def record(row: dict[str, Any]) -> dict[str, Any]:
            row = json.loads(json.dumps(row))  # exactly what a results file gives back on resume
            if row.get("build_id") != _core.build_id and row.get("build_id") not in other_builds:
                other_builds.add(row.get("build_id"))
                warnings.warn(f"a point ran on another build of kvmsim's core ({row.get('build_id')}, here "
                              f"{_core.build_id}): the workers' kvmsim differs from this one", stacklevel=4)
            if store:
                store.append(row)
            done[row["key"]] = row
            bar.update(1)
            return row

        def finish(row: dict[str, Any]) -> None:
            row = record(row)
            if callback is not None:
                callback(row)

        try:
            seen: set[str] = set()
            unique = [p for p in todo if not (p.key in seen or seen.add(p.key))]
            if executor is not None:
                # Largest first (by guest accesses; ties in grid order): a pool's last points are
                # then short, instead of a sweep's largest values (grid order) finishing alone.
                unique.sort(key=lambda p: -p.accesses)
            if executor is None:
                for p in unique:
                    finish(run_point(task(p)))
            else:
                futures: list[Future[dict[str, Any]]] = []
                taken: set[Future[dict[str, Any]]] = set()
                try:
                    for p in unique:
                        futures.append(executor.submit(run_point, task(p)))
                    for f in as_completed(futures):
                        taken.add(f)
                        finish(f.result())
                except BaseException:
                    # Stop what has not started, then keep what finished meanwhile (without
                    # calling back: the sweep is stopping); the points still running are lost.
                    for f in futures:
                        f.cancel()
                    for f in futures:
                        if f in taken or not f.done() or f.cancelled() or f.exception() is not None:
                            continue
                        try:
                            record(f.result())
                        except Exception as e:  # keep the error that stopped the sweep
                            warnings.warn(f"could not keep a finished point: {e}", stacklevel=3)
                            break
                    raise
        finally:
            bar.close()
        return done
    finally:
        if store:
            store.close()


# ---- grids ----------------------------------------------------------------------------------------------

def variant_list(sc: Scenario, variants: str | Iterable[str] | None) -> list[str]:
    names = sc.variants
    if variants is None:
        return names or [""]
    chosen = [variants] if isinstance(variants, str) else list(variants)
    if not chosen:
        raise ValueError("variants: expected at least one variant name")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"variants: {chosen!r} lists a variant twice")
    for v in chosen:
        if v not in names and not (v == "" and not names):
            raise ScenarioError(
                f"{sc.file}: no variant {v!r}" + (did_you_mean(v, names) if names else
                                                  ": the scenario has no \"variants\""),
                file=sc.file, pointer="/variants", message=f"no variant {v!r}")
    return chosen


def seed_list(sc: Scenario, seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise ValueError(f"seeds: expected a count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int) or (hasattr(seeds, "dtype") and getattr(seeds, "shape", None) == ()):
        n = int(seeds)  # type: ignore[arg-type]
        if n < 1:
            raise ValueError(f"seeds: expected at least 1, got {n}")
        base = sc.seed if sc.seed is not None else sc.info["seed"]
        return [base + i for i in range(n)]
    out = [check_seed(s) for s in seeds]
    if not out:
        raise ValueError("seeds: expected at least one seed")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: {out!r} lists a seed twice")
    return out  # type: ignore[return-value]


def grid_items(grid: Mapping[str, Iterable[Any]] | None) -> list[tuple[str, str, list[Any]]]:
    """[(path, pointer, values)] of a grid, checked for shape (not yet against the scenario)."""
    items: list[tuple[str, str, list[Any]]] = []
    pointers: dict[str, str] = {}
    for path, values in (grid or {}).items():
        pointer = to_pointer(path)
        if pointer == "/seed":
            raise GridError(f"grid {path!r}: a sweep chooses its seeds with seeds=N or seeds=[...]", path=path)
        if pointer in pointers:
            raise GridError(f"grid {path!r}: the same path as {pointers[pointer]!r}", path=path)
        pointers[pointer] = path
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise GridError(f"grid {path!r}: expected a list of values, got {values!r}", path=path, value=values)
        vals = [plain(v, f"grid {path!r}") for v in values]
        if not vals:
            raise GridError(f"grid {path!r}: expected at least one value", path=path)
        canon = [json.dumps(v, sort_keys=True) for v in vals]
        for i, c in enumerate(canon):
            if c in canon[:i]:
                raise GridError(f"grid {path!r}: the value {vals[i]!r} is listed twice", path=path, value=vals[i])
        items.append((path, pointer, vals))
    return items


def check_grid(sc: Scenario, items: list[tuple[str, str, list[Any]]], variants: list[str],
               base: list[tuple[str, Any]], keys: Keys | None = None) -> None:
    """Loads every value of every path alone, then every point, under every variant: a bad path
    or value raises a GridError naming it (every one found, one per line) before anything runs.
    ``keys`` remembers what each load resolved to."""
    errors: list[GridError] = []
    dirs = keys.dirs if keys is not None else host_dirs(sc.host_dirs)

    def attempt(pairs: list[tuple[str, Any]], variant: str) -> ScenarioError | None:
        try:
            info = _core.load(sc.text, sc.file, variant=variant or None, seed=sc.seed,
                              overrides=core_overrides(pairs), host_dirs=dirs)
        except ScenarioError as e:
            return e
        if keys is not None:
            keys.remember(pairs, variant, info)
        return None

    for path, pointer, values in items:
        for value in values:
            for v in variants:
                e = attempt(base + [(pointer, value)], v)
                if e is not None:
                    errors.append(grid_error(f"grid {path!r} = {value!r}", e, path=path, value=value))
                    break
    if not errors and len(items) > 1:
        for combo in itertools.product(*[vals for _, _, vals in items]):
            pairs = [(pointer, value) for (_, pointer, _), value in zip(items, combo)]
            for v in variants:
                e = attempt(base + pairs, v)
                if e is not None:
                    desc = ", ".join(f"{path!r} = {value!r}" for (path, _, _), value in zip(items, combo))
                    errors.append(grid_error(f"grid point {desc}", e))
                    break
    if errors:
        first = errors[0]
        text = "\n".join(str(e) for e in errors)
        raise GridError(text, path=first.path, value=first.value, file=first.file, pointer=first.pointer,
                        message=first.message, line=first.line, column=first.column, kind=first.kind,
                        errors=[x for e in errors for x in e.errors])


def frame(points: Sequence[Point], rows: Mapping[str, dict[str, Any]], paths: Sequence[str],
          scenario_name: str) -> pd.DataFrame:
    """The tidy frame: one row per point, in grid x variant x seed order."""
    import pandas as pd
    records: list[dict[str, Any]] = []
    metrics: list[str] = []
    units: dict[str, str] = {}
    for p in points:
        row = rows[p.key]
        rec: dict[str, Any] = {path: p.params[path] for path in paths}
        rec["variant"] = row["variant"]
        rec["seed"] = row["seed"]
        for name, unit, value in row["metrics"]:
            if name not in units:
                units[name] = unit
                metrics.append(name)
            rec[name] = value
        for c in RUN_COLUMNS:
            rec[c] = row[c]
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=[*paths, *POINT_COLUMNS, *metrics, *RUN_COLUMNS])
    if metrics:
        df[metrics] = df[metrics].fillna(0.0).astype("float64")  # a lock site a run never took: no wait, no hold
    for path in paths:
        df[path] = param_column(df[path])
    for c in ("variant", "fingerprint", "status"):
        df[c] = df[c].astype("string")
    for c in ("seed", "events"):
        df[c] = df[c].astype("int64")
    df.attrs["scenario"] = scenario_name
    df.attrs["units"] = units
    df.attrs["metrics"] = metrics
    df.attrs["params"] = list(paths)
    df.attrs["kvmsim_version"] = _core.__version__
    df.attrs["build_id"] = _core.build_id
    return df


def param_column(col: pd.Series) -> pd.Series:
    """A grid path's column with one type, so that it writes to Parquet and CSV and plots on a
    numeric axis when its values are numbers: int64 for integers, float64 for numbers, boolean,
    string for text; values of mixed kinds, lists and objects become their JSON text."""
    import pandas as pd
    vals = col.tolist()
    if all(isinstance(v, bool) for v in vals):
        return col.astype("bool")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return col.astype("int64")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return col.astype("float64")
    if all(isinstance(v, str) for v in vals):
        return col.astype("string")
    return pd.Series([v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in vals],
                     index=col.index, name=col.name, dtype="string")


def with_units(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a :func:`sweep` frame whose metric columns carry their unit in the name
    ("phase boot [ns]", "stat pf_fixed [count]"), for formats without ``df.attrs`` (CSV): the
    units then survive ``df.to_csv`` / ``pd.read_csv``."""
    units = df.attrs.get("units", {})
    out = df.rename(columns={m: f"{m} [{u}]" for m, u in units.items() if m in df.columns})
    out.attrs = dict(df.attrs)
    return out


def sweep(scenario: ScenarioLike, grid: Mapping[str, Iterable[Any]] | None = None, *,
          variants: str | Iterable[str] | None = None, seeds: int | Iterable[int] = 1,
          overrides: Mapping[str, Any] | None = None, executor: Executor | None = None,
          results: str | os.PathLike[str] | None = None, progress: bool | None = None,
          callback: Callable[[dict[str, Any]], Any] | None = None,
          host_dirs: Iterable[str | os.PathLike[str]] | None = None) -> pd.DataFrame:
    """Runs every combination of the grid's values, under each variant and seed.

    ``grid`` maps scenario paths (``"mmu.knobs.zap_lock"``, ``"vm.vcpus"``,
    ``"host.costs.fault_entry"``, ``"vm.memslots.0.size"``; see :func:`kvmsim.load`) to lists
    of values, set after the variant is applied. Every path and value is checked by loading
    every point under every variant before anything runs; a bad one raises
    :class:`kvmsim.GridError` naming it. ``variants``: None for all (baseline first), a name,
    or a list. ``seeds``: a count N (the scenario's seed and the N-1 after it, as
    ``kvmsim compare --seeds N``) or a list.

    ``executor``: any :class:`concurrent.futures.Executor` (a ProcessPoolExecutor, Dask's
    ``Client.get_executor()``); None runs the points here, one after the other. Results are
    the same bit for bit whichever runs them. ``results``: a JSON-lines file; each finished
    point is appended (and fsynced) as it completes, and points already in it are not run
    again, so an interrupted sweep resumes where it stopped (a point is rerun when what decides
    it changed: the scenario as it runs, its host profile, the seed, or kvmsim's build).
    ``progress``: a tqdm bar (default: when stderr is a terminal or in a Jupyter notebook,
    unless $CI is set). ``callback(row)`` is called after each finished point. ``host_dirs``:
    directories searched first for the host profile (as :func:`kvmsim.load`).

    Returns a tidy DataFrame, one row per point: a column per grid path, ``variant``, ``seed``,
    one column per metric (as :attr:`Result.metrics`; ``df.attrs["units"]`` gives units),
    ``fingerprint``, ``status``, ``events``, ``sim_time_ns`` and ``wall_time_s``.
    """
    sc = load(scenario, host_dirs=host_dirs)
    base = override_list({**sc.overrides, **(overrides or {})})
    if overrides:
        sc = sc.with_overrides(overrides)  # validates them, naming a bad one
    names = variant_list(sc, variants)
    seed_values = seed_list(sc, seeds)
    items = grid_items(grid)
    keys = Keys(sc)
    check_grid(sc, items, names, base, keys)
    points: list[Point] = []
    for combo in itertools.product(*[vals for _, _, vals in items]):
        params = {path: value for (path, _, _), value in zip(items, combo)}
        pairs = base + [(pointer, value) for (_, pointer, _), value in zip(items, combo)]
        for v in names:
            for s in seed_values:
                points.append(keys.point(params, pairs, v, s))
    rows = execute(sc, points, executor=executor, results=results, progress=progress, callback=callback,
                   dirs=keys.dirs)
    return frame(points, rows, [path for path, _, _ in items], sc.name)
