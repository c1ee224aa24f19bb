"""Plots of comparisons and sweeps (matplotlib; no display needed, works with the Agg backend).

- :func:`before_after` — one panel per metric: a bar per variant (its mean over seeds) with the
  95% interval of the paired difference against the baseline around each non-baseline bar.
- :func:`metric_vs_param` — a metric against a swept parameter, one line per variant, each
  point the mean over seeds with its Student-t 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import _core

try:  # checked here, so that the error says what to install
    import matplotlib  # noqa: F401
except ModuleNotFoundError as e:
    raise ImportError("kvmsim.plot needs matplotlib, an optional dependency of kvmsim: "
                      "pip install 'kvmsim[plot]' (or pip install matplotlib)", name=__name__) from e

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_SCALE_NS = [(1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns")]


def _ns_scale(values: Sequence[float]) -> tuple[float, str]:
    """A divisor and unit label for nanosecond values (as the command prints them)."""
    top = max((abs(v) for v in values if not math.isnan(v)), default=0.0)
    for div, label in _SCALE_NS:
        if top >= div:
            return div, label
    return 1.0, "ns"


def _figure(n: int, ncols: int, panel: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def before_after(cmp: pd.DataFrame, metrics: Sequence[str] | None = None, *, ncols: int = 3,
                 panel: tuple[float, float] = (3.6, 2.8)) -> Figure:
    """Bars of each variant's mean for each metric of a :func:`kvmsim.compare` frame.

    The baseline's bar has no interval; every other variant's bar carries the 95% interval of
    its paired difference with the baseline, drawn around the baseline's mean plus that
    difference (so the bar's top lies inside it). A star marks an interval that excludes zero.
    ``metrics`` defaults to the selftest phases, or else the first six rows.
    """
    variants = list(cmp.attrs.get("variants") or cmp["mean"].columns)
    if metrics is None:
        phases = [m for m in cmp.index if m.startswith("phase ")]
        metrics = phases or list(cmp.index[:6])
    missing = [m for m in metrics if m not in cmp.index]
    if missing:
        raise KeyError(f"not in the comparison: {missing!r} (it has {list(cmp.index)!r})")
    fig, axes = _figure(len(metrics), ncols, panel)
    for ax, metric in zip(axes, metrics):
        row = cmp.loc[metric]
        unit = row[("unit", "")]
        means = [float(row[("mean", v)]) for v in variants]
        div, label = _ns_scale(means) if unit == "ns" else (1.0, unit)
        base = means[0]
        x = list(range(len(variants)))
        colors = [f"C{i}" for i in x]
        ax.bar(x, [m / div for m in means], color=colors)
        for i, v in enumerate(variants[1:], 1):
            lo, hi = float(row[("ci95_low", v)]), float(row[("ci95_high", v)])
            if math.isnan(lo) or math.isnan(hi):
                continue
            centre = means[i] / div
            # A zero-width interval (every seed the same run) can round to a hair below zero.
            err = [[max(0.0, centre - (base + lo) / div)], [max(0.0, (base + hi) / div - centre)]]
            ax.errorbar([i], [centre], yerr=err, fmt="none", ecolor="black", capsize=4, lw=1.2)
            if bool(row[("significant", v)]):
                ax.annotate("*", (i, (base + hi) / div), ha="center", va="bottom")
        ax.set_xticks(x, variants, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric if len(metric) <= 40 else metric[:37] + "...", fontsize=9)
        ax.set_ylabel(label)
    fig.suptitle(f"{cmp.attrs.get('scenario', '')}: mean over {len(cmp.attrs.get('seeds', []))} seeds, "
                 "95% CI of the paired difference", fontsize=10)
    return fig


def metric_vs_param(df: pd.DataFrame, param: str, metric: str, *, by: str = "variant", ax: Axes | None = None,
                    logx: bool = False) -> Axes:
    """A metric of a :func:`kvmsim.sweep` frame against one of its grid parameters, one line per
    value of ``by`` (the variant, or another grid parameter), each point the mean over the
    seeds (and any other parameters) with its Student-t 95% interval."""
    for c in (param, metric, by):
        if c not in df.columns:
            raise KeyError(f"{c!r} is not a column of the sweep (columns: {list(df.columns)!r})")
    if ax is None:
        from matplotlib.figure import Figure
        ax = Figure(figsize=(5.5, 3.6), layout="constrained").subplots()
    unit = df.attrs.get("units", {}).get(metric, "")
    div, label = _ns_scale(df[metric].tolist()) if unit == "ns" else (1.0, unit)
    for key, g in df.groupby(by, sort=False):
        stats = g.groupby(param, sort=True)[metric].agg(["mean", "std", "count"])
        xs = stats.index.tolist()
        mean = (stats["mean"] / div).tolist()
        half = [(_core.t95(int(n) - 1) * s / math.sqrt(n) / div) if n > 1 and not math.isnan(s) else 0.0
                for s, n in zip(stats["std"], stats["count"])]
        line, = ax.plot(xs, mean, marker="o", label=str(key) if key != "" else metric)
        if any(h > 0 for h in half):
            ax.fill_between(xs, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)],
                            color=line.get_color(), alpha=0.2, lw=0)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} ({label})" if label else metric)
    ax.legend(title=by, fontsize=8)
    ax.grid(alpha=0.3)
    return ax
