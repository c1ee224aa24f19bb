"""Plots of comparisons and sweeps (matplotlib; no display needed, works with the Agg backend).

- :func:`before_after` — one panel per metric: a bar per variant (its mean over seeds) with the
  95% interval of the paired difference against the baseline around each non-baseline bar.
- :func:`metric_vs_param` — a metric against a swept parameter, one line per variant, each
  point the mean over seeds with its Student-t 95% interval.

Both take ``logy=True`` (a log y axis) and ``percent=True`` (the change against the baseline
in percent instead of the values; for times, negative is faster). Axis labels carry the unit,
figures use matplotlib's constrained layout so no label is clipped, and a numeric parameter
(``"workload.flags.v"``: 1, 2, 4, ...) gets a numeric x axis with a tick at each value swept.
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
                 panel: tuple[float, float] = (3.6, 2.8), logy: bool = False, percent: bool = False) -> Figure:
    """Bars of each variant's mean for each metric of a :func:`kvmsim.compare` frame.

    The baseline's bar has no interval; every other variant's bar carries the 95% interval of
    its paired difference with the baseline, drawn around the baseline's mean plus that
    difference (so the bar's top lies inside it). A star marks an interval that excludes zero.
    ``metrics`` defaults to the selftest phases, or else the first six rows. ``percent``: a
    bar per non-baseline variant, its change against the baseline in percent, with the
    interval in percent of the baseline's mean. ``logy``: a log y axis (values only).
    """
    if percent and logy:
        raise ValueError("percent=True shows signed changes: a log axis cannot show them (use one or the other)")
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
        if percent:
            _percent_bars(ax, row, variants, means[0])
            ax.set_title(metric if len(metric) <= 40 else metric[:37] + "...", fontsize=9)
            continue
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
        ax.set_ylabel(_unit_label(unit, label))
        if logy:
            ax.set_yscale("log")
    what = "change against the baseline (%)" if percent else "mean"
    fig.suptitle(f"{cmp.attrs.get('scenario', '')}: {what} over {len(cmp.attrs.get('seeds', []))} seeds, "
                 "95% CI of the paired difference", fontsize=10)
    return fig


def _unit_label(unit: str, label: str) -> str:
    """The y label: the unit as the axis shows it ("ms"), "count" for counters."""
    return label if unit == "ns" else (unit or "value")


def _percent_bars(ax: Axes, row: pd.Series, variants: list[str], base: float) -> None:
    x = list(range(1, len(variants)))
    changes, errs = [], [[], []]
    for v in variants[1:]:
        mean = float(row[("mean", v)])
        ch = (mean - base) / base * 100 if base else math.nan
        changes.append(ch)
        lo, hi = float(row[("ci95_low", v)]), float(row[("ci95_high", v)])
        if base and not (math.isnan(lo) or math.isnan(hi)):
            # The interval of the paired difference, in percent of the baseline's mean.
            errs[0].append(max(0.0, ch - lo / base * 100))
            errs[1].append(max(0.0, hi / base * 100 - ch))
        else:
            errs[0].append(0.0)
            errs[1].append(0.0)
    ax.bar(x, changes, color=[f"C{i}" for i in x])
    ax.errorbar(x, changes, yerr=errs, fmt="none", ecolor="black", capsize=4, lw=1.2)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, variants[1:], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"change vs {variants[0]} (%)")


def metric_vs_param(df: pd.DataFrame, param: str, metric: str, *, by: str = "variant", ax: Axes | None = None,
                    logx: bool = False, logy: bool = False, percent: bool = False) -> Axes:
    """A metric of a :func:`kvmsim.sweep` frame against one of its grid parameters, one line per
    value of ``by`` (the variant, or another grid parameter), each point the mean over the
    seeds (and any other parameters) with its Student-t 95% interval.

    A numeric parameter is plotted on a numeric axis with a tick at each value swept (``logx``:
    base 2, the ticks still the plain values); any other on evenly spaced categories.
    ``logy``: a log y axis. ``percent``: each line's change against the first line (the first
    value of ``by``, e.g. the baseline variant) at the same parameter value, in percent, its
    interval in percent of that baseline mean."""
    for c in (param, metric, by):
        if c not in df.columns:
            raise KeyError(f"{c!r} is not a column of the sweep (columns: {list(df.columns)!r})")
    if ax is None:
        from matplotlib.figure import Figure
        ax = Figure(figsize=(5.5, 3.6), layout="constrained").subplots()
    if percent and logy:
        raise ValueError("percent=True shows signed changes: a log axis cannot show them (use one or the other)")
    import pandas as pd
    unit = df.attrs.get("units", {}).get(metric, "")
    div, label = _ns_scale(df[metric].tolist()) if unit == "ns" else (1.0, unit)
    numeric = pd.api.types.is_numeric_dtype(df[param]) and not pd.api.types.is_bool_dtype(df[param])
    values = sorted(df[param].unique().tolist()) if numeric else list(dict.fromkeys(df[param].tolist()))
    position = {v: (v if numeric else i) for i, v in enumerate(values)}
    groups = list(df.groupby(by, sort=False))
    base_means: dict[object, float] = {}
    if percent and groups:
        base_means = groups[0][1].groupby(param, sort=True)[metric].mean().to_dict()
    for key, g in groups:
        stats = g.groupby(param, sort=True)[metric].agg(["mean", "std", "count"])
        keys = stats.index.tolist()
        xs = [position[k] for k in keys]
        half = [(_core.t95(int(n) - 1) * s / math.sqrt(n)) if n > 1 and not math.isnan(s) else 0.0
                for s, n in zip(stats["std"], stats["count"])]
        if percent:
            base = [base_means.get(k, math.nan) for k in keys]
            mean = [(m - b) / b * 100 if b else math.nan for m, b in zip(stats["mean"], base)]
            half = [h / b * 100 if b else 0.0 for h, b in zip(half, base)]
        else:
            mean = (stats["mean"] / div).tolist()
            half = [h / div for h in half]
        line, = ax.plot(xs, mean, marker="o", label=str(key) if key != "" else metric)
        if any(h > 0 for h in half):
            ax.fill_between(xs, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)],
                            color=line.get_color(), alpha=0.2, lw=0)
    if logx:
        if not numeric:
            raise ValueError(f"logx=True needs a numeric parameter; {param!r} has values {values!r}")
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    # A tick at each value swept, labelled with the value itself (not 2^k, not 0.5 steps).
    ax.set_xticks([position[v] for v in values], [_tick(v) for v in values])
    if logx:
        from matplotlib.ticker import NullLocator
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(param)
    if percent:
        ax.set_ylabel(f"{metric}: change vs {groups[0][0] if groups else ''} (%)")
        ax.axhline(0, color="black", lw=0.8)
    else:
        ax.set_ylabel(f"{metric} ({label})" if label else metric)
    ax.legend(title=by, fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def _tick(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)
