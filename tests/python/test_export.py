"""Frames out of kvmsim: Result.to_frame() and sweep() frames to Parquet and CSV and back, a
sweep over a preset's flag by its path (workload.flags.v), and the plots' options (log y,
percent change, numeric x ticks, labels inside the figure)."""

import pathlib

import pytest

import kvmsim

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRESET = ROOT / "scenarios" / "selftests" / "c1-anonymous-1g.json"  # kvm_page_table_test -m 4 -s anonymous -b 1G -v 1
SEED3 = ROOT / "scenarios" / "seeds" / "003-zap-gfn-range.json"
SMALL3 = {"workload.phases.0.stream.count": 3000, "events.0.count": 6}


@pytest.fixture(scope="module")
def flag_sweep():
    """The same selftest at 1, 2 and 4 vCPUs (8 MiB per vCPU keeps it quick): one line."""
    return kvmsim.sweep(PRESET, grid={"workload.flags.v": [1, 2, 4]}, overrides={"workload.flags.b": "8M"})


def test_a_sweep_over_a_preset_flag(flag_sweep):
    df = flag_sweep
    assert df["workload.flags.v"].tolist() == [1, 2, 4]
    assert df["workload.flags.v"].dtype == "int64"  # a numeric parameter, for numeric plot axes
    # Each value ran another VM: three runs, and more vCPUs take more faults than one.
    assert df["fingerprint"].nunique() == 3
    assert df["stat pf_fixed"].iloc[1] > df["stat pf_fixed"].iloc[0]
    assert df.attrs["params"] == ["workload.flags.v"]
    # The same point as a run with the flag as an override.
    r = kvmsim.run(PRESET, overrides={"workload.flags.b": "8M", "workload.flags.v": 2})
    row = df[df["workload.flags.v"] == 2].iloc[0]
    assert row["fingerprint"] == r.fingerprint
    assert r.resolved_scenario["workload"]["flags"] == {"b": "8M", "v": 2}


def test_a_bad_flag_in_a_grid_is_located():
    with pytest.raises(kvmsim.GridError) as e:
        kvmsim.sweep(PRESET, grid={"workload.flags.v": [1, 0]})
    assert e.value.pointer == "/workload/flags/v"
    assert e.value.file == str(PRESET)
    assert "expected an integer from 1 to 4096" in str(e.value)
    with pytest.raises(kvmsim.GridError) as e:
        kvmsim.sweep(PRESET, grid={"vm.vcpus": [1, 2]})
    assert "/workload/flags/v" in str(e.value)  # the message names the path to use instead


def test_a_sweep_frame_round_trips_through_parquet_and_csv(flag_sweep, tmp_path):
    df = flag_sweep
    assert not [c for c in df.columns if df[c].dtype == object], "object columns do not write to Parquet cleanly"
    df.to_parquet(tmp_path / "s.parquet")
    back = pd.read_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["units"] == df.attrs["units"] and back.attrs["units"]["phase KVM_CREATE_MAPPINGS"] == "ns"
    assert back.attrs["build_id"] == kvmsim.build_id
    # CSV has no attrs: the units go into the column names.
    named = kvmsim.with_units(df)
    assert "phase KVM_CREATE_MAPPINGS [ns]" in named.columns and "stat pf_fixed [count]" in named.columns
    named.to_csv(tmp_path / "s.csv", index=False)
    csv = pd.read_csv(tmp_path / "s.csv")
    assert list(csv.columns) == list(named.columns)
    assert csv["workload.flags.v"].tolist() == [1, 2, 4]
    assert csv["phase KVM_CREATE_MAPPINGS [ns]"].tolist() == named["phase KVM_CREATE_MAPPINGS [ns]"].tolist()
    assert csv["fingerprint"].astype(str).tolist() == df["fingerprint"].tolist()


def test_mixed_and_structured_grid_values_become_one_type(tmp_path):
    df = kvmsim.sweep(SEED3, grid={"mmu.knobs.zap_lock": ["write", "read"], "host.costs.fault_entry": ["1us", "2us"]},
                      variants="write-lock", overrides=SMALL3)
    assert str(df["mmu.knobs.zap_lock"].dtype) in ("string", "str")
    df.to_parquet(tmp_path / "g.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "g.parquet"), df)
    from kvmsim._sweep import param_column
    col = param_column(pd.Series([1, "2", [3]], name="p"))
    assert col.tolist() == ["1", "2", "[3]"]
    assert param_column(pd.Series([1, 2.5])).dtype == "float64"
    assert param_column(pd.Series([True, False])).dtype == "bool"


def test_result_to_frame_round_trips(tmp_path):
    r = kvmsim.run(SEED3, variant="read-lock", overrides=SMALL3)
    df = r.to_frame()
    assert list(df.columns) == ["scenario", "variant", "seed", "fingerprint", "metric", "kind", "unit", "value"]
    assert not [c for c in df.columns if df[c].dtype == object]
    assert df["metric"].tolist() == list(r.metrics)
    assert df.set_index("metric")["value"].to_dict() == pytest.approx(r.metrics)
    assert set(df["kind"]) <= {"phase", "stat", "lock", "cache", "line", "bandwidth", "fault"}
    assert df[df["kind"] == "fault"]["metric"].tolist() == ["fault latency p50", "fault latency p99",
                                                           "fault latency max"]
    assert df.attrs["build_id"] == r.build_id == kvmsim.build_id
    assert df.attrs["resolved_sha256"] == r.resolved_sha256
    df.to_parquet(tmp_path / "r.parquet")
    back = pd.read_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs == df.attrs
    df.to_csv(tmp_path / "r.csv", index=False)
    csv = pd.read_csv(tmp_path / "r.csv")
    assert csv["value"].tolist() == df["value"].tolist()
    assert csv["unit"].tolist() == df["unit"].tolist()
    # The resolved scenario runs the same run again.
    again = kvmsim.run(r.resolved_scenario)
    assert again.fingerprint == r.fingerprint


# ---- plots --------------------------------------------------------------------------------------

mpl = pytest.importorskip("matplotlib")


def _inside(fig, artist):
    """True when the artist's drawn box lies inside the figure (not clipped)."""
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    fb = fig.bbox
    return box.x0 >= fb.x0 - 1 and box.y0 >= fb.y0 - 1 and box.x1 <= fb.x1 + 1 and box.y1 <= fb.y1 + 1


def test_numeric_parameter_ticks_log_y_and_labels_with_units(flag_sweep):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    import kvmsim.plot
    ax = kvmsim.plot.metric_vs_param(flag_sweep, "workload.flags.v", "phase KVM_CREATE_MAPPINGS", logx=True,
                                     logy=True)
    fig = ax.figure
    FigureCanvasAgg(fig)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.get_xticks()) == [1, 2, 4]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]
    assert ax.get_ylabel().startswith("phase KVM_CREATE_MAPPINGS (") and ax.get_ylabel().endswith("s)")
    assert _inside(fig, ax.yaxis.label) and _inside(fig, ax.xaxis.label)
    for t in ax.get_xticklabels():
        assert _inside(fig, t)


def test_percent_change_view(tmp_path):
    import kvmsim.plot
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    df = kvmsim.sweep(SEED3, grid={"host.costs.fault_entry": ["1us", "2us"]},
                      variants=["write-lock", "read-lock"], overrides=SMALL3)
    ax = kvmsim.plot.metric_vs_param(df, "host.costs.fault_entry", "phase boot", percent=True)
    FigureCanvasAgg(ax.figure)
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert list(lines["write-lock"].get_ydata()) == [0.0, 0.0]  # the baseline against itself
    want = []
    for cost in ("1us", "2us"):
        g = df[df["host.costs.fault_entry"] == cost].set_index("variant")["phase boot"]
        want.append((g["read-lock"] - g["write-lock"]) / g["write-lock"] * 100)
    assert list(lines["read-lock"].get_ydata()) == pytest.approx(want)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1us", "2us"]  # text values: categories
    assert "change vs write-lock (%)" in ax.get_ylabel()
    with pytest.raises(ValueError):
        kvmsim.plot.metric_vs_param(df, "host.costs.fault_entry", "phase boot", percent=True, logy=True)
    # before_after: the same two options.
    cmp = kvmsim.compare(SEED3, variants=["write-lock", "read-lock"], seeds=2, overrides=SMALL3)
    fig = kvmsim.plot.before_after(cmp, ["phase boot"], percent=True)
    FigureCanvasAgg(fig)
    bars = fig.axes[0].patches
    assert len(bars) == 1
    row = cmp.loc["phase boot"]
    assert bars[0].get_height() == pytest.approx(float(row[("change_pct", "read-lock")]))
    fig = kvmsim.plot.before_after(cmp, ["phase boot"], logy=True)
    assert fig.axes[0].get_yscale() == "log"
    fig.savefig(tmp_path / "ba.png")
