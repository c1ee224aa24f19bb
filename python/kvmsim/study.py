"""Helpers for the worked studies in notebooks/: a seed's before/after in a few calls.

    study = SeedStudy("scenarios/seeds/003-zap-gfn-range.json", seeds=5)
    print(study.headline())        # the selftest's lines, before -> after
    study.figure()                 # before/after bars with 95% intervals
    study.counters()               # KVM stats (mean over seeds) per variant, non-zero rows
    study.locks()                  # mmu_lock acquisitions, contention, wait and hold per site

Notebooks run small when KVMSIM_NB_SMALL is set (the tests set it): :func:`small` tells them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from ._compare import compare
from ._result import Result, run
from ._scenario import ScenarioLike, load

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def small() -> bool:
    """True when the environment asks notebooks to run small (KVMSIM_NB_SMALL=1)."""
    return os.environ.get("KVMSIM_NB_SMALL", "") not in ("", "0")


class SeedStudy:
    """Every variant of a seed scenario over the same seeds (:func:`kvmsim.compare`), plus one
    full run per variant at the first seed for per-site lock detail.

    Attributes: ``scenario`` (the loaded Scenario), ``cmp`` (the comparison frame, whose
    ``attrs["text"]`` is the ``kvmsim compare`` table) and ``runs`` ({variant: Result}).
    """

    def __init__(self, scenario: ScenarioLike, *, seeds: int | Iterable[int] = 5,
                 overrides: Mapping[str, Any] | None = None, executor: Executor | None = None,
                 progress: bool | None = None) -> None:
        self.scenario = load(scenario, overrides=overrides)
        self.cmp = compare(self.scenario, seeds=seeds, executor=executor, progress=progress)
        self.variants: list[str] = list(self.cmp.attrs["variants"])
        first = self.cmp.attrs["seeds"][0]
        self.runs: dict[str, Result] = {v: run(self.scenario, variant=v or None, seed=first) for v in self.variants}

    @property
    def baseline(self) -> str:
        return self.variants[0]

    def headline(self) -> str:
        """The selftest's own lines of the comparison (before -> after per variant)."""
        text = self.cmp.attrs["text"]
        # The tables start with "VARIANT against BASELINE (baseline), ...".
        cut = text.find(f"\n\n{self.variants[1]} against ") if len(self.variants) > 1 else -1
        return (text if cut < 0 else text[:cut]).strip()

    def table(self) -> str:
        """The whole ``kvmsim compare`` table."""
        return self.cmp.attrs["text"]

    def means(self, prefix: str = "") -> pd.DataFrame:
        """Each metric's mean per variant (rows whose name starts with ``prefix``)."""
        m = self.cmp["mean"]
        return m[m.index.str.startswith(prefix)] if prefix else m

    def counters(self, names: Iterable[str] | None = None) -> pd.DataFrame:
        """KVM stats, mean over seeds, one column per variant: the named ones, or every stat
        that is non-zero in some variant."""
        m = self.means("stat ")
        m = m.rename(index=lambda s: s[len("stat "):])
        if names is not None:
            return m.loc[list(names)]
        return m

    def locks(self, lock: str = "mmu_lock") -> pd.DataFrame:
        """Whole-run records of ``lock`` at the first seed: one row per (variant, mode, site)
        with acquisitions, contended, wait and hold (ns, summed) and the contended share."""
        import pandas as pd
        frames = []
        for v, r in self.runs.items():
            df = r.locks_df
            df = df[(df["phase"] == "total") & (df["lock"] == lock)]
            df = df[["mode", "site", "acquisitions", "contended", "wait_ns_sum", "hold_ns_sum"]].copy()
            df.insert(0, "variant", v)
            frames.append(df)
        out = pd.concat(frames, ignore_index=True)
        out["contended_pct"] = (100.0 * out["contended"] / out["acquisitions"].where(out["acquisitions"] > 0)).round(1)
        return out.set_index(["variant", "mode", "site"])

    def figure(self, metrics: Iterable[str] | None = None, **kw: Any) -> Figure:
        """Before/after bars (:func:`kvmsim.plot.before_after`)."""
        from .plot import before_after
        return before_after(self.cmp, list(metrics) if metrics is not None else None, **kw)
