"""kvmsim.plot: the bars and lines show the numbers they are given (Agg, no display)."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import kvmsim  # noqa: E402
import kvmsim.plot  # noqa: E402
from test_cli_schemas import ROOT  # noqa: E402

ZAP = ROOT / "tests" / "data" / "tdp-zap.json"


@pytest.fixture(scope="module")
def cmp():
    return kvmsim.compare(ZAP, seeds=3, progress=False)


def test_before_after_bars_and_intervals(cmp, tmp_path):
    metrics = ["phase boot", "stat remote_tlb_flush"]
    fig = kvmsim.plot.before_after(cmp, metrics)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == metrics
    variants = cmp.attrs["variants"]
    # Bar heights are the means (phase times scaled to ms here).
    boot = axes[0]
    assert boot.get_ylabel() == "ms"
    heights = [p.get_height() for p in boot.patches]
    assert heights == pytest.approx([cmp.loc["phase boot", ("mean", v)] / 1e6 for v in variants])
    # One interval per non-baseline variant: baseline mean + the paired difference's CI.
    flush = axes[1]
    lines = [c for c in flush.containers if c.__class__.__name__ == "ErrorbarContainer"]
    assert len(lines) == len(variants) - 1
    base = cmp.loc["stat remote_tlb_flush", ("mean", variants[0])]
    for v, container in zip(variants[1:], lines):
        segs = container.lines[2][0].get_segments()[0]
        lo, hi = sorted(y for _, y in segs)
        assert lo == pytest.approx(base + cmp.loc["stat remote_tlb_flush", ("ci95_low", v)])
        assert hi == pytest.approx(base + cmp.loc["stat remote_tlb_flush", ("ci95_high", v)])
    fig.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000


def test_before_after_draws_a_zero_width_interval_that_rounds_below_zero(cmp):
    # Every seed the same run: the paired difference's interval is [d, d], and base + d may
    # round to either side of the variant's own mean. Here it rounds below on one side.
    c = cmp.copy()
    metric, v = "phase boot", cmp.attrs["variants"][1]
    base = c.loc[metric, ("mean", cmp.attrs["variants"][0])]
    mean = c.loc[metric, ("mean", v)]
    d = (mean - base) + abs(base) * 1e-12
    c.loc[metric, ("ci95_low", v)] = d
    c.loc[metric, ("ci95_high", v)] = d
    assert (mean - (base + d)) / 1e6 < 0
    fig = kvmsim.plot.before_after(c, [metric])
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [metric]


def test_before_after_names_a_missing_metric(cmp):
    with pytest.raises(KeyError, match="stat no_such"):
        kvmsim.plot.before_after(cmp, ["stat no_such"])


def test_metric_against_a_parameter_one_line_per_variant(tmp_path):
    df = kvmsim.sweep(ZAP, grid={"vm.vcpus": [1, 2, 4]}, variants=["write", "read"], seeds=3, progress=False)
    metric = "stat pf_taken"
    ax = kvmsim.plot.metric_vs_param(df, "vm.vcpus", metric)
    assert [line.get_label() for line in ax.get_lines()] == ["write", "read"]
    for line, v in zip(ax.get_lines(), ["write", "read"]):
        want = df[df.variant == v].groupby("vm.vcpus")[metric].mean()
        assert list(line.get_xdata()) == [1, 2, 4]
        assert list(line.get_ydata()) == pytest.approx(want.tolist())
    # A 95% band per line: mean +- t * s / sqrt(n) at each point.
    band = ax.collections[0].get_paths()[0].vertices
    g = df[(df.variant == "write") & (df["vm.vcpus"] == 1)][metric]
    half = kvmsim._core.t95(2) * g.std() / math.sqrt(3)
    ys = [y for x, y in band if x == 1]
    assert min(ys) == pytest.approx(g.mean() - half) and max(ys) == pytest.approx(g.mean() + half)
    ax.figure.savefig(tmp_path / "lines.png")
    with pytest.raises(KeyError, match="vm.cpus"):
        kvmsim.plot.metric_vs_param(df, "vm.cpus", metric)
