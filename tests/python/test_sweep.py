"""kvmsim.sweep: the tidy frame, identical fingerprints on every executor (in process, process
pool, Dask LocalCluster), resuming an interrupted sweep from its results file, and bad grids
refused before anything runs."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import kvmsim
import kvmsim._sweep
from test_cli_schemas import ROOT

ZAP = ROOT / "tests" / "data" / "tdp-zap.json"
# 2 x 2 x 2 variants x 2 seeds = 16 small points (~0.05 s each).
GRID = {"vm.vcpus": [2, 4], "mmu.knobs.fault_precheck": [False, True]}
VARIANTS = ["write", "read"]


def tiny_sweep(**kw):
    kw.setdefault("variants", VARIANTS)
    kw.setdefault("seeds", 2)
    return kvmsim.sweep(ZAP, grid=GRID, progress=False, **kw)


def comparable(df):
    """Everything but the wall time (which is measured, not simulated)."""
    return df.drop(columns=["wall_time_s"])


@pytest.fixture(scope="module")
def serial():
    return tiny_sweep()


def test_the_frame_has_one_row_per_point_and_seed(serial):
    df = serial
    assert len(df) == 2 * 2 * 2 * 2
    assert list(df.columns[:4]) == ["vm.vcpus", "mmu.knobs.fault_precheck", "variant", "seed"]
    assert list(df.columns[-5:]) == ["fingerprint", "status", "events", "sim_time_ns", "wall_time_s"]
    # Grid order, then variant, then seed; seeds=2 is the scenario's seed (1) and the next.
    assert df[["vm.vcpus", "mmu.knobs.fault_precheck", "variant", "seed"]].head(4).values.tolist() == [
        [2, False, "write", 1], [2, False, "write", 2], [2, False, "read", 1], [2, False, "read", 2]]
    assert (df.status == "completed").all()
    assert df.fingerprint.nunique() == len(df)  # every point is a different run
    assert df.attrs["units"]["phase boot"] == "ns" and df.attrs["units"]["stat pf_fixed"] == "count"
    assert set(df.attrs["metrics"]) <= set(df.columns)
    assert not df[df.attrs["metrics"]].isna().any().any()


def test_a_point_is_the_run_of_its_values(serial):
    row = serial.iloc[13]
    r = kvmsim.run(ZAP, variant=row["variant"], seed=int(row["seed"]),
                   overrides={"vm.vcpus": row["vm.vcpus"], "mmu.knobs.fault_precheck": row["mmu.knobs.fault_precheck"]})
    assert row["fingerprint"] == r.fingerprint
    for name, value in r.metrics.items():
        assert row[name] == value, name


def test_numpy_values_and_seed_lists():
    df = kvmsim.sweep(ZAP, grid={"vm.vcpus": np.array([2, 3])}, variants="read", seeds=[7, 5], progress=False)
    assert df["vm.vcpus"].tolist() == [2, 2, 3, 3] and df["seed"].tolist() == [7, 5, 7, 5]
    assert df.variant.unique().tolist() == ["read"]
    assert df.fingerprint.iloc[0] == kvmsim.run(ZAP, variant="read", seed=7, overrides={"vm.vcpus": 2}).fingerprint


def test_process_pool_gives_identical_results(serial):
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        pooled = tiny_sweep(executor=ex)
    pd.testing.assert_frame_equal(comparable(pooled), comparable(serial))


def test_dask_local_cluster_gives_identical_results(serial):
    import distributed  # a dependency (scripts/env.sh): missing is a failure, not a skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        assert os.getpid() not in worker_pids  # the points really run elsewhere
        dasked = tiny_sweep(executor=client.get_executor())
    pd.testing.assert_frame_equal(comparable(dasked), comparable(serial))


class Interrupt(Exception):
    pass


def stop_after(k):
    seen = []

    def callback(row):
        seen.append(row["key"])
        if len(seen) == k:
            raise Interrupt(f"stopped after {k} points")
    return callback, seen


def counting():
    seen = []
    return (lambda row: seen.append(row["key"])), seen


@pytest.mark.parametrize("pool", [False, True], ids=["serial", "process-pool"])
def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, serial, pool):
    results = tmp_path / "sweep.jsonl"
    stop, first = stop_after(5)
    ex = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) if pool else None
    try:
        with pytest.raises(Interrupt):
            tiny_sweep(results=results, callback=stop, executor=ex)
    finally:
        if ex:
            ex.shutdown(cancel_futures=True)
    kept = [json.loads(x)["key"] for x in results.read_text().splitlines()]
    # The 5 points called back, in order; on a pool, also those that finished meanwhile.
    assert kept[:5] == first and len(set(kept)) == len(kept)
    assert len(kept) == 5 or pool

    count, second = counting()
    resumed = tiny_sweep(results=results, callback=count)
    assert len(second) == 16 - len(kept) and not set(second) & set(kept)  # only the missing points ran
    pd.testing.assert_frame_equal(comparable(resumed), comparable(serial))
    assert len(results.read_text().splitlines()) == 16

    count, third = counting()
    again = tiny_sweep(results=results, callback=count)
    assert third == []  # nothing left to run
    pd.testing.assert_frame_equal(again, resumed)  # wall times too: all from the file


def test_a_killed_sweep_with_a_torn_last_line_resumes(tmp_path, serial):
    """The process dies (SIGKILL, no cleanup) after 3 points, then a half-written line is left at
    the end of the file, as a kill in the middle of a write would."""
    results = tmp_path / "sweep.jsonl"
    script = textwrap.dedent(f"""
        import os, signal, kvmsim
        done = []
        def callback(row):
            done.append(row)
            if len(done) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        kvmsim.sweep({str(ZAP)!r}, grid={GRID!r}, variants={VARIANTS!r}, seeds=2, results={str(results)!r},
                     callback=callback, progress=False)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert len(results.read_text().splitlines()) == 3
    with open(results, "ab") as f:
        f.write(b'{"key":"0123","params":{"vm.vcp')
    count, ran = counting()
    with pytest.warns(UserWarning, match="dropping an unfinished last line"):
        resumed = tiny_sweep(results=results, callback=count)
    assert len(ran) == 13
    pd.testing.assert_frame_equal(comparable(resumed), comparable(serial))
    assert all(json.loads(line) for line in results.read_text().splitlines())


def test_a_damaged_line_in_the_middle_is_an_error(tmp_path):
    results = tmp_path / "sweep.jsonl"
    results.write_text('{"key": "a", "metrics": []}\nnot json\n{"key": "b", "metrics": []}\n')
    with pytest.raises(ValueError, match=r"sweep\.jsonl:2: expected a sweep point"):
        tiny_sweep(results=results)


def test_a_changed_scenario_is_run_again(tmp_path):
    results = tmp_path / "sweep.jsonl"
    doc = json.loads(ZAP.read_text())
    grid = {"vm.vcpus": [2]}
    kvmsim.sweep(doc, grid=grid, variants="read", results=results, progress=False)
    doc["events"][0]["count"] = 2
    count, ran = counting()
    kvmsim.sweep(doc, grid=grid, variants="read", results=results, progress=False, callback=count)
    assert len(ran) == 1 and len(results.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "grid, path, value, expect",
    [
        ({"vm.vcpu": [2]}, "vm.vcpu", 2, 'unknown key "vcpu" (did you mean "vcpus"?)'),
        ({"vm.vcpus": [2, "many"]}, "vm.vcpus", "many", '/vm/vcpus: expected an integer between 1 and 4096, got "many"'),
        ({"vm.memslots.0.size": ["16M", "16Q"]}, "vm.memslots.0.size", "16Q", "/vm/memslots/0/size: expected a size"),
        ({"mmu.knobs.zap_lok": ["read"]}, "mmu.knobs.zap_lok", "read", 'unknown knob "zap_lok" of model x86_tdp (did you mean "zap_lock"?)'),
        ({"events.0.interval": ["40us", "40"]}, "events.0.interval", "40", "/events/0/interval: expected a time"),
        ({"vm.vcpus": [4, 1000]}, "vm.vcpus", 1000, "/vm/vcpus: expected at most one vCPU per host CPU"),
        ({"vm.vcpus": [2, 80], "host.cpus": [96, 64]}, None, None, "grid point 'vm.vcpus' = 80, 'host.cpus' = 64"),
    ],
)
def test_bad_grids_fail_before_any_point_runs(tmp_path, monkeypatch, grid, path, value, expect):
    def must_not_run(task):
        raise AssertionError("a point ran")
    monkeypatch.setattr(kvmsim._sweep, "run_point", must_not_run)
    results = tmp_path / "sweep.jsonl"
    with pytest.raises(kvmsim.GridError) as info:
        kvmsim.sweep(ZAP, grid=grid, results=results, progress=False)
    e = info.value
    assert expect in str(e)
    assert (e.path, e.value) == (path, value)
    if path is not None:
        assert str(e).startswith(f"grid {path!r} = {value!r}: {ZAP}")
    assert e.file.startswith(str(ZAP))
    assert not results.exists() or results.read_text() == ""


@pytest.mark.parametrize(
    "grid, expect",
    [
        ({"vm.vcpus": 4}, "expected a list of values"),
        ({"vm.vcpus": "48"}, "expected a list of values"),
        ({"vm.vcpus": []}, "expected at least one value"),
        ({"vm.vcpus": [2, 2]}, "listed twice"),
        ({"vm.vcpus": [2], "/vm/vcpus": [4]}, "the same path as 'vm.vcpus'"),
        ({"vm..vcpus": [2]}, "expected a scenario path"),
        ({"vm.vcpus": [float("nan")]}, "is not a JSON number"),
        ({"variants.0.name": ["x"]}, 'cannot change "variants"'),
        ({"seed": [1, 2]}, "chooses its seeds with seeds="),
    ],
)
def test_malformed_grids(grid, expect):
    with pytest.raises(kvmsim.GridError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        kvmsim.sweep(ZAP, grid=grid, progress=False)


def test_every_bad_value_is_listed():
    with pytest.raises(kvmsim.GridError) as info:
        kvmsim.sweep(ZAP, grid={"vm.vcpus": [0, 2, "x"], "mmu.knobs.zap_lock": ["up"]}, progress=False)
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["grid 'vm.vcpus' = 0", "grid 'vm.vcpus' = 'x'",
                                                      "grid 'mmu.knobs.zap_lock' = 'up'"]


def test_bad_variants_and_seeds():
    with pytest.raises(kvmsim.ScenarioError, match="did you mean 'read'"):
        kvmsim.sweep(ZAP, variants=["reed"], progress=False)
    with pytest.raises(ValueError, match="lists a variant twice"):
        kvmsim.sweep(ZAP, variants=["read", "read"], progress=False)
    for seeds, expect in [(0, "at least 1"), ([1, 1], "twice"), ([-1], "seed"), ([], "at least one")]:
        with pytest.raises(ValueError, match=expect):
            kvmsim.sweep(ZAP, seeds=seeds, progress=False)


def test_a_sweep_without_a_grid_runs_the_variants():
    df = kvmsim.sweep(ZAP, seeds=1, progress=False)
    assert df.variant.tolist() == ["write", "write+precheck", "read", "drop_write_zap_read"]
    assert df.fingerprint.tolist() == [kvmsim.run(ZAP, variant=v).fingerprint for v in df.variant]


# ---- what a rerun reruns: the point key covers everything that decides a run ------------------------

def scenario_with_own_hosts(tmp_path):
    """A copy of ZAP in tmp/seeds/ with a copy of its host profile in tmp/hosts/ (found first,
    as ../hosts beside the scenario), so a test can edit the profile."""
    (tmp_path / "seeds").mkdir()
    (tmp_path / "hosts").mkdir()
    scenario = tmp_path / "seeds" / "zap.json"
    scenario.write_text(ZAP.read_text())
    profile = tmp_path / "hosts" / "x86-server.json"
    profile.write_text((ROOT / "scenarios" / "hosts" / "x86-server.json").read_text())
    return scenario, profile


def test_an_edited_host_profile_is_run_again(tmp_path):
    scenario, profile = scenario_with_own_hosts(tmp_path)
    results = tmp_path / "sweep.jsonl"
    kw = dict(grid={"vm.vcpus": [2]}, variants="read", seeds=2, results=results, progress=False)
    first = kvmsim.sweep(scenario, **kw)
    count, ran = counting()
    assert kvmsim.sweep(scenario, callback=count, **kw).fingerprint.tolist() == first.fingerprint.tolist()
    assert ran == []  # unchanged: everything comes from the file
    doc = json.loads(profile.read_text())
    doc["caches"]["memory_latency"] = "150ns"
    profile.write_text(json.dumps(doc))
    count, ran = counting()
    slower = kvmsim.sweep(scenario, callback=count, **kw)
    assert len(ran) == 2  # the profile decides the run: it ran again
    assert slower.fingerprint.tolist() != first.fingerprint.tolist()
    assert slower.fingerprint.tolist() == [kvmsim.run(scenario, variant="read", seed=s, overrides={"vm.vcpus": 2})
                                           .fingerprint for s in (1, 2)]


def test_edits_that_do_not_change_a_run_reuse_it(tmp_path):
    scenario, _ = scenario_with_own_hosts(tmp_path)
    results = tmp_path / "sweep.jsonl"
    kw = dict(variants="read", seeds=2, results=results, progress=False)
    kvmsim.sweep(scenario, **kw)
    doc = json.loads(scenario.read_text())
    doc["variants"][1]["patch"]["mmu"]["knobs"]["fault_precheck"] = False  # another variant's patch
    scenario.write_text(json.dumps(doc, indent=4))                        # and the layout
    count, ran = counting()
    kvmsim.sweep(scenario, callback=count, **kw)
    assert ran == []
    # The same run reached by an override instead of the variant: the same point.
    count, ran = counting()
    kvmsim.sweep(scenario, variants="write", overrides={"mmu.knobs.zap_lock": "read"}, seeds=2, results=results,
                 progress=False, callback=count)
    assert len(ran) == 2  # the variant's name is part of the point (its row says "write")


def test_another_build_of_the_core_runs_again(tmp_path, monkeypatch):
    results = tmp_path / "sweep.jsonl"
    kw = dict(grid={"vm.vcpus": [2]}, variants="read", results=results, progress=False)
    kvmsim.sweep(ZAP, **kw)
    assert json.loads(results.read_text())["build_id"] == kvmsim._core.build_id
    monkeypatch.setattr(kvmsim._core, "build_id", "0" * 64)  # model code changed, same version
    count, ran = counting()
    with pytest.warns(UserWarning, match="1 of its points were run by another build of kvmsim"):
        kvmsim.sweep(ZAP, callback=count, **kw)
    assert len(ran) == 1


def test_rows_of_an_older_results_format_are_not_reused(tmp_path):
    """Key version 1 hashed the scenario's bytes, overrides, variant, seed and version, but not
    the host profile or the build: such rows must run again, not be taken as done."""
    import hashlib
    results = tmp_path / "sweep.jsonl"
    fresh = kvmsim.sweep(ZAP, grid={"vm.vcpus": [2]}, variants="read", progress=False)
    sc = kvmsim.load(ZAP)
    ident = {"key_version": 1, "kvmsim": kvmsim.__version__, "scenario_sha256": sc.sha256,
             "overrides": [["/vm/vcpus", 2]], "variant": "read", "seed": 1}
    old_key = hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    stale = {"key": old_key, "params": {"vm.vcpus": 2}, "variant": "read", "seed": 1, "scenario": sc.name,
             "scenario_sha256": sc.sha256, "fingerprint": "0123456789abcdef", "status": "completed", "events": 1,
             "sim_time_ns": 1, "wall_time_s": 0.0, "selftest": [], "metrics": []}
    results.write_text(json.dumps(stale) + "\n")
    count, ran = counting()
    with pytest.warns(UserWarning, match="not reused"):
        df = kvmsim.sweep(ZAP, grid={"vm.vcpus": [2]}, variants="read", results=results, progress=False,
                          callback=count)
    assert len(ran) == 1
    assert df.fingerprint.tolist() == fresh.fingerprint.tolist()


# ---- an interrupted sweep loses nothing that finished -----------------------------------------------

class EagerExecutor(Executor):
    """Runs each point as it is submitted, so every future has finished before the sweep looks
    at the first one; fail_on=N makes the N-th point fail."""

    def __init__(self, fail_on=None):
        self.fail_on = fail_on
        self.n = 0
        self.tasks = []

    def submit(self, fn, *args, **kwargs):
        self.n += 1
        self.tasks.append(args[0])
        f = Future()
        if self.n == self.fail_on:
            f.set_exception(RuntimeError(f"point {self.n} failed"))
        else:
            f.set_result(fn(*args, **kwargs))
        return f


def test_a_stopping_callback_keeps_every_finished_point(tmp_path, serial):
    results = tmp_path / "sweep.jsonl"
    stop, first = stop_after(1)
    with pytest.raises(Interrupt):
        tiny_sweep(results=results, callback=stop, executor=EagerExecutor())
    assert len(first) == 1
    assert len(results.read_text().splitlines()) == 16  # all had finished: all are kept
    count, ran = counting()
    resumed = tiny_sweep(results=results, callback=count)
    assert ran == []
    pd.testing.assert_frame_equal(comparable(resumed), comparable(serial))


def test_a_failed_point_keeps_every_other_finished_point(tmp_path, serial):
    results = tmp_path / "sweep.jsonl"
    with pytest.raises(RuntimeError, match="point 5 failed"):
        tiny_sweep(results=results, executor=EagerExecutor(fail_on=5))
    assert len(results.read_text().splitlines()) == 15
    count, ran = counting()
    resumed = tiny_sweep(results=results, callback=count)
    assert len(ran) == 1
    pd.testing.assert_frame_equal(comparable(resumed), comparable(serial))


class WatchedPool(ProcessPoolExecutor):
    """A process pool that remembers its futures."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.futures = []

    def submit(self, *a, **kw):
        f = super().submit(*a, **kw)
        self.futures.append(f)
        return f


def test_an_interrupted_process_pool_sweep_keeps_what_finished_and_cancels_the_rest(tmp_path, serial):
    results = tmp_path / "sweep.jsonl"
    at_stop = []
    with WatchedPool(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        def stop(row):
            # Ctrl-C arrives once 6 points have finished, while the sweep handles the first.
            deadline = time.monotonic() + 300
            while sum(f.done() for f in ex.futures) < 6 and time.monotonic() < deadline:
                time.sleep(0.02)
            at_stop.extend(f for f in ex.futures if f.done())
            raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            tiny_sweep(results=results, callback=stop, executor=ex)
        assert any(f.cancelled() for f in ex.futures)  # what had not started never runs
    assert len(at_stop) >= 6
    kept = [json.loads(x)["key"] for x in results.read_text().splitlines()]
    assert len(set(kept)) == len(kept)
    assert {f.result()["key"] for f in at_stop} <= set(kept)  # every point finished by then is kept
    count, ran = counting()
    resumed = tiny_sweep(results=results, callback=count)
    assert len(ran) == 16 - len(kept)
    pd.testing.assert_frame_equal(comparable(resumed), comparable(serial))


def test_an_executor_gets_the_largest_points_first():
    """A sweep over a size (vCPUs here) hands its largest points out first, so that a pool's last
    points are short ones; equal sizes keep grid order. The frame stays in grid order."""
    ex = EagerExecutor()
    df = kvmsim.sweep(ZAP, grid={"vm.vcpus": [2, 4, 8], "mmu.knobs.fault_precheck": [False, True]},
                      variants="read", seeds=[1, 2], executor=ex, progress=False)
    order = [(t["params"]["vm.vcpus"], t["params"]["mmu.knobs.fault_precheck"], t["seed"]) for t in ex.tasks]
    assert order == [(v, f, s) for v in (8, 4, 2) for f in (False, True) for s in (1, 2)]
    assert df["vm.vcpus"].tolist() == [2] * 4 + [4] * 4 + [8] * 4
