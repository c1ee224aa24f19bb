"""One run: kvmsim.run() and the Result it gives (the CLI's result document, as dicts and frames)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import _core
from ._scenario import host_dirs as _host_dirs
from ._scenario import (ScenarioLike, blame_override, check_seed, core_overrides, host_dirs, load,
                        override_list)
from ._errors import ScenarioError

if TYPE_CHECKING:
    import pandas as pd


class Result:
    """The result of one run: the document ``kvmsim run --json`` writes, with accessors.

    ``json`` is that document's text, ``doc`` the parsed dict. Plain data: ``phases`` (list of
    dicts, each with its own ``stats``, ``locks`` and ``caches``), ``stats`` (KVM's debugfs
    counters, whole run), ``locks`` (contention per lock, mode and call site), ``caches``
    (accesses and misses per level), ``lines`` (contended cache lines per line class),
    ``bandwidth`` (fair-shared resources such as memory bandwidth), ``fault_latency`` (guest
    fault latencies, whole run), ``metrics`` (the numbers ``kvmsim compare`` compares) and
    ``fingerprint`` (16 hex digits, as the command prints it). As pandas DataFrames:
    ``phases_df``, ``stats_df``, ``locks_df``, ``caches_df``, ``lines_df``, ``bandwidth_df``,
    ``fault_latency_df``, ``metrics_df``.
    """

    def __init__(self, json_text: str, overrides: Mapping[str, Any] | None = None) -> None:
        self.json = json_text
        self.doc: dict[str, Any] = json.loads(json_text)
        self.overrides = dict(overrides or {})

    # ---- the document's fields
    @property
    def fingerprint(self) -> str:
        return self.doc["fingerprint"]

    @property
    def kvmsim_version(self) -> str:
        return self.doc["kvmsim_version"]

    @property
    def build_id(self) -> str:
        """The build identity of the core that ran it (``kvmsim.build_id`` of that build); ""
        for documents written before results carried it."""
        return self.doc.get("build_id", "")

    @property
    def resolved_sha256(self) -> str:
        """The hash of the scenario as it ran (variant, overrides, host profile; not the seed)."""
        return self.doc.get("resolved_sha256", "")

    @property
    def resolved_scenario(self) -> dict[str, Any]:
        """The scenario document as it ran: the variant's patch and the overrides applied, no
        ``variants``, ``seed`` the run's. ``kvmsim.run(r.resolved_scenario)`` (with the same host
        profile, :attr:`resolved_host_profile`) gives this result again on the same build.
        Empty for documents written before results carried it."""
        return self.doc.get("resolved_scenario", {})

    @property
    def resolved_host_profile(self) -> dict[str, Any]:
        """The host profile document the run used (empty for older documents)."""
        return self.doc.get("resolved_host_profile", {})

    @property
    def scenario(self) -> str:
        return self.doc["scenario"]

    @property
    def file(self) -> str:
        return self.doc["file"]

    @property
    def scenario_sha256(self) -> str:
        return self.doc["scenario_sha256"]

    @property
    def variant(self) -> str:
        return self.doc["variant"]

    @property
    def seed(self) -> int:
        return self.doc["seed"]

    @property
    def model(self) -> str:
        return self.doc["model"]

    @property
    def preset(self) -> str:
        return self.doc["preset"]

    @property
    def status(self) -> str:
        """"completed", or "deadlock" (then ``deadlock`` holds the engine's report)."""
        return self.doc["status"]

    @property
    def deadlock(self) -> str:
        return self.doc.get("deadlock", "")

    @property
    def events(self) -> int:
        return self.doc["events"]

    @property
    def sim_time_ns(self) -> float:
        return self.doc["sim_time_ns"]

    @property
    def wall_time_s(self) -> float:
        return self.doc["wall_time_s"]

    @property
    def phases(self) -> list[dict[str, Any]]:
        return self.doc["phases"]

    @property
    def stats(self) -> dict[str, int]:
        return self.doc["stats"]

    @property
    def locks(self) -> list[dict[str, Any]]:
        return self.doc["locks"]

    @property
    def caches(self) -> dict[str, Any]:
        return self.doc["caches"]

    @property
    def lines(self) -> list[dict[str, Any]]:
        """Contended cache lines, whole run: one dict per line class (name, operations,
        contended, wait_ns). Empty for documents written before lines were reported."""
        return self.doc.get("lines", [])

    @property
    def bandwidth(self) -> list[dict[str, Any]]:
        """Fair-shared resources, whole run: one dict per resource (name, bytes, transfers,
        busy_ns, peak_concurrency). Empty for documents written before they were reported."""
        return self.doc.get("bandwidth", [])

    @property
    def fault_latency(self) -> dict[str, Any]:
        """Guest fault latency, whole run: {count, sum, p50, p99, max} in ns, each fault from
        its exit to the return to the guest (p50/p99 within 1/128 of the true value; count, sum
        and max exact). Empty for documents written before it was reported."""
        return self.doc.get("fault_latency_ns", {})

    @cached_property
    def metric_list(self) -> list[tuple[str, str, float]]:
        """[(name, unit, value)] in the order ``kvmsim compare`` lists them."""
        return [tuple(m) for m in _core.metrics(self.json, ordered=True)]  # type: ignore[misc]

    @property
    def metrics(self) -> dict[str, float]:
        """{metric: value}: "phase NAME" (ns), "stat NAME", "lock LOCK MODE @SITE wait|hold"
        (ns, summed), "cache LEVEL misses", "cache coherence misses", "line CLASS wait" (ns,
        summed), "bandwidth NAME busy" (ns), "fault latency p50|p99|max" (ns, whole run)."""
        return {name: value for name, _, value in self.metric_list}

    @property
    def units(self) -> dict[str, str]:
        return {name: unit for name, unit, _ in self.metric_list}

    # ---- DataFrames
    @cached_property
    def phases_df(self) -> pd.DataFrame:
        """One row per phase (in run order): name, sim_time_ns, selftest_metric, and the
        phase's coherence misses, invalidations and memory accesses."""
        import pandas as pd
        rows = []
        for p in self.phases:
            c = p.get("caches", {})
            rows.append({"phase": p["name"], "sim_time_ns": p["sim_time_ns"], "selftest_metric": p["selftest_metric"],
                         "coherence_misses": c.get("coherence_misses", 0), "invalidations": c.get("invalidations", 0),
                         "memory_accesses": c.get("memory_accesses", 0)})
        return pd.DataFrame(rows).set_index("phase")

    @cached_property
    def stats_df(self) -> pd.DataFrame:
        """KVM stats: one row per stat, one column per phase, and "total" (the whole run)."""
        import pandas as pd
        cols = {p["name"]: p["stats"] for p in self.phases}
        cols["total"] = self.stats
        df = pd.DataFrame(cols).fillna(0).astype("int64")
        df.index.name = "stat"
        return df

    @cached_property
    def locks_df(self) -> pd.DataFrame:
        """Lock contention, one row per (phase, lock, mode, site); phase "total" is the whole
        run. Columns: acquisitions, contended, wait_ns_{sum,p50,p99,max}, hold_ns_{sum,max}."""
        import pandas as pd
        rows = []
        for phase, locks in [(p["name"], p["locks"]) for p in self.phases] + [("total", self.locks)]:
            for lk in locks:
                row = {"phase": phase, "lock": lk["lock"], "mode": lk["mode"], "site": lk["site"],
                       "acquisitions": lk["acquisitions"], "contended": lk["contended"]}
                row.update({f"wait_ns_{k}": v for k, v in lk["wait_ns"].items()})
                row.update({f"hold_ns_{k}": v for k, v in lk["hold_ns"].items()})
                rows.append(row)
        cols = ["phase", "lock", "mode", "site", "acquisitions", "contended", "wait_ns_sum", "wait_ns_p50",
                "wait_ns_p99", "wait_ns_max", "hold_ns_sum", "hold_ns_max"]
        return pd.DataFrame(rows, columns=cols)

    @cached_property
    def lines_df(self) -> pd.DataFrame:
        """Contended cache lines, one row per (phase, line class); phase "total" is the whole
        run. Columns: operations, contended, wait_ns_{sum,p50,p99,max}."""
        import pandas as pd
        rows = []
        for phase, lines in [(p["name"], p.get("lines", [])) for p in self.phases] + [("total", self.lines)]:
            for ln in lines:
                row = {"phase": phase, "line": ln["name"], "operations": ln["operations"], "contended": ln["contended"]}
                row.update({f"wait_ns_{k}": v for k, v in ln["wait_ns"].items()})
                rows.append(row)
        cols = ["phase", "line", "operations", "contended", "wait_ns_sum", "wait_ns_p50", "wait_ns_p99", "wait_ns_max"]
        return pd.DataFrame(rows, columns=cols)

    @cached_property
    def bandwidth_df(self) -> pd.DataFrame:
        """Fair-shared resources, one row per (phase, resource); phase "total" is the whole run.
        Columns: bytes, transfers, busy_ns, peak_concurrency."""
        import pandas as pd
        cols = ["phase", "resource", "bytes", "transfers", "busy_ns", "peak_concurrency"]
        rows = []
        for phase, res in [(p["name"], p.get("bandwidth", [])) for p in self.phases] + [("total", self.bandwidth)]:
            for b in res:
                rows.append({"phase": phase, "resource": b["name"], "bytes": b["bytes"], "transfers": b["transfers"],
                             "busy_ns": b["busy_ns"], "peak_concurrency": b["peak_concurrency"]})
        return pd.DataFrame(rows, columns=cols)

    @cached_property
    def fault_latency_df(self) -> pd.DataFrame:
        """Guest fault latency, one row per phase (in run order) and "total" (the whole run),
        indexed by phase. Columns: count (int64), sum_ns, p50_ns, p99_ns, max_ns (float64;
        p50/p99 within 1/128 of the true value, the others exact). Phases of documents written
        before latencies were reported are left out."""
        import pandas as pd
        cols = ["count", "sum_ns", "p50_ns", "p99_ns", "max_ns"]
        rows = []
        for phase, f in [(p["name"], p.get("fault_latency_ns")) for p in self.phases] + [
                ("total", self.doc.get("fault_latency_ns"))]:
            if f is not None:
                rows.append({"phase": phase, "count": f["count"], "sum_ns": f["sum"], "p50_ns": f["p50"],
                             "p99_ns": f["p99"], "max_ns": f["max"]})
        df = pd.DataFrame(rows, columns=["phase", *cols]).set_index("phase")
        return df.astype({"count": "int64", "sum_ns": "float64", "p50_ns": "float64", "p99_ns": "float64",
                          "max_ns": "float64"})

    @cached_property
    def caches_df(self) -> pd.DataFrame:
        """Cache counters, one row per (phase, level); phase "total" is the whole run."""
        import pandas as pd
        rows = []
        for phase, caches in [(p["name"], p["caches"]) for p in self.phases] + [("total", self.caches)]:
            for level, c in caches.items():
                if isinstance(c, dict):
                    rows.append({"phase": phase, "level": level, "accesses": c["accesses"], "misses": c["misses"]})
        return pd.DataFrame(rows, columns=["phase", "level", "accesses", "misses"])

    @cached_property
    def metrics_df(self) -> pd.DataFrame:
        """The comparison metrics: index metric, columns unit and value."""
        import pandas as pd
        return pd.DataFrame(self.metric_list, columns=["metric", "unit", "value"]).set_index("metric")

    def to_frame(self) -> pd.DataFrame:
        """The run as one tidy frame, one row per metric (as :attr:`metrics`): columns
        ``scenario``, ``variant``, ``seed``, ``fingerprint`` (text), ``metric`` (text), ``kind``
        (the metric's first word: phase, stat, lock, cache, line, bandwidth, fault), ``unit`` ("ns" or
        "count") and ``value`` (float64). Every column has one type, so the frame writes to
        Parquet (``df.to_parquet``, which also keeps ``df.attrs``) and CSV as it is; the unit is
        a column. ``df.attrs`` holds the provenance: ``kvmsim_version``, ``build_id``,
        ``scenario_sha256``, ``resolved_sha256``, ``status`` and ``units`` ({metric: unit})."""
        import pandas as pd
        names = [m[0] for m in self.metric_list]
        df = pd.DataFrame({
            "scenario": pd.Series([self.scenario] * len(names), dtype="string"),
            "variant": pd.Series([self.variant] * len(names), dtype="string"),
            "seed": pd.Series([self.seed] * len(names), dtype="int64"),
            "fingerprint": pd.Series([self.fingerprint] * len(names), dtype="string"),
            "metric": pd.Series(names, dtype="string"),
            "kind": pd.Series([n.split(" ", 1)[0] for n in names], dtype="string"),
            "unit": pd.Series([m[1] for m in self.metric_list], dtype="string"),
            "value": pd.Series([float(m[2]) for m in self.metric_list], dtype="float64"),
        })
        df.attrs.update({"kvmsim_version": self.kvmsim_version, "build_id": self.build_id,
                         "scenario_sha256": self.scenario_sha256, "resolved_sha256": self.resolved_sha256,
                         "status": self.status, "units": self.units})
        return df

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the result document (as ``kvmsim run --json`` does): a path that exists and is
        not a regular file (a device node, a FIFO, a directory, a symlink) is refused with
        ValueError; the text goes to a temporary file beside it, fsynced, then renamed."""
        path = os.fspath(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{path}: refusing to replace something that is not a regular file")
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                   dir=os.path.dirname(os.path.abspath(path)))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.json)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Result:
        """A saved result document (``kvmsim run --json`` or :meth:`save`)."""
        with open(path, encoding="utf-8") as f:
            return cls(f.read())

    def __getstate__(self) -> dict[str, Any]:
        return {"json": self.json, "overrides": self.overrides}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["json"], state["overrides"])  # type: ignore[misc]

    def __repr__(self) -> str:
        variant = f" [{self.variant}]" if self.variant else ""
        return (f"<kvmsim.Result {self.scenario}{variant} seed {self.seed}: {self.status}, "
                f"{self.events} events, fingerprint {self.fingerprint}>")


def run(scenario: ScenarioLike, variant: str | None = None, seed: int | None = None,
        overrides: Mapping[str, Any] | None = None, *,
        host_dirs: Iterable[str | os.PathLike[str]] | None = None) -> Result:
    """Runs a scenario (a path, a dict or a :class:`kvmsim.Scenario`) and returns its Result.

    ``variant`` defaults to the scenario's default (the baseline), ``seed`` to the scenario's;
    ``overrides`` ({path: value}) are applied after the variant, on top of the scenario's own.
    The simulation runs with the GIL released, so threads can run other work (or other runs)
    meanwhile. The numbers are those of ``kvmsim run FILE --variant V --seed N --json``.
    ``host_dirs``: directories searched first for the host profile (``kvmsim run --host-dir``).
    """
    host_dirs_arg = host_dirs
    sc = load(scenario, host_dirs=host_dirs_arg)
    merged = {**sc.overrides, **(overrides or {})}
    pairs = override_list(merged)
    variant = variant if variant is not None else sc.variant
    seed = check_seed(seed) if seed is not None else sc.seed
    try:
        text = _core.run(sc.text, sc.file, variant=variant or None, seed=seed, overrides=core_overrides(pairs),
                         host_dirs=_host_dirs(sc.host_dirs))
    except ScenarioError as e:
        if not pairs:
            raise
        raise blame_override(sc, variant, pairs, merged, e) from None
    return Result(text, merged)
