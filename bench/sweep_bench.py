#!/usr/bin/env python3
"""Sweep throughput: points per second for a sweep run in process (serial) and on a
ProcessPoolExecutor with N workers (default 2), and the ratio (target: >= 1.8x on 2 workers).

    PYTHONPATH=build/python python3 bench/sweep_bench.py [--seeds 3] [--workers 2] [--repeat 1]
        [--grid PATH=JSON-LIST ...] [--override PATH=JSON ...] [--start-method fork|spawn|forkserver]
        [--json] [--record FILE] [--check]

The default workload is the sweep study of notebooks/sweep-003-vcpus.ipynb at full size: seed
003 over vm.vcpus = 2, 4, 8, 16, 32, its four variants, 3 seeds: 60 points of 0.05 to 2 s,
handed to the pool as kvmsim.sweep hands any sweep's points (largest first by guest accesses).
The pool is created and shut down inside the timed region. Both sweeps must give the same
fingerprints.

Besides the rates it prints what explains a ratio below the worker count:
  - balance: the best ratio a pool of N could reach with these points in the order the sweep
    hands them out (list scheduling of the serial run's point times), i.e. what the tail of
    uneven points costs (and what it would cost in grid order);
  - slowdown: how much longer a point took in the pool than alone (the machine's other load,
    shared caches and memory bandwidth, a lower all-core clock), and how much of it is CPU
    time (contention for caches and memory shows there; other load does not);
  - overhead: pool time beyond the schedule of its own point times (process start-up,
    shipping tasks and rows, the parent's bookkeeping);
  - the load average before and after: measure on a quiet machine (load below 0.5 on 2 CPUs).
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import kvmsim
from kvmsim._scenario import override_list, plain, to_pointer
from kvmsim._sweep import Keys

DEFAULT_GRID = {"vm.vcpus": [2, 4, 8, 16, 32]}
TARGET = 1.8


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers, once joined)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def makespan(durations: list[float], workers: int) -> float:
    """Finish time of list scheduling: each point, in order, to the first worker free."""
    free = [0.0] * workers
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def path_value(text: str, what: str) -> tuple[str, object]:
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise SystemExit(f"sweep_bench: {what} {text!r}: expected PATH=JSON")
    try:
        return path, json.loads(value)
    except ValueError as e:
        raise SystemExit(f"sweep_bench: {what} {text!r}: the value is not JSON: {e}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(kvmsim.scenarios_dir() / "seeds" / "003-zap-gfn-range.json"))
    ap.add_argument("--seeds", type=int, default=3, help="seeds per point (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="process-pool workers (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings of each, interleaved (default 1)")
    ap.add_argument("--grid", action="append", default=None, metavar="PATH=JSON-LIST",
                    help="a grid entry, e.g. vm.vcpus=[2,4,8] (default: vm.vcpus=[2,4,8,16,32]); "
                         "--grid none: no grid, the variants and seeds only")
    ap.add_argument("--override", action="append", default=[], metavar="PATH=JSON",
                    help="a scenario override, e.g. workload.phases.0.stream.count=2000")
    ap.add_argument("--start-method", choices=multiprocessing.get_all_start_methods(), default=None,
                    help="the pool's start method (default: the platform's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--record", metavar="FILE", help="append the JSON object to FILE as one line")
    ap.add_argument("--check", action="store_true", help=f"exit 1 when the ratio is below {TARGET}")
    args = ap.parse_args(argv)
    overrides = dict(path_value(o, "--override") for o in args.override)
    if args.grid is None:
        grid = DEFAULT_GRID
    elif args.grid == ["none"]:
        grid = {}
    else:
        grid = dict(path_value(g, "--grid") for g in args.grid)
    ctx = multiprocessing.get_context(args.start_method)

    sc = kvmsim.load(args.scenario, overrides=overrides)
    load_before = os.getloadavg()

    def serial():
        return kvmsim.sweep(sc, grid=grid, seeds=args.seeds, progress=False)

    def pooled():
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as ex:
            return kvmsim.sweep(sc, grid=grid, seeds=args.seeds, executor=ex, progress=False)

    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    frames = {}
    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):  # interleaved, so a burst of other load hits one pair, not one kind
        for name, fn in (("serial", serial), ("pool", pooled)):
            df, secs, used = timed(fn)
            runs.append({"kind": name, "s": secs, "cpu_s": used, "load": os.getloadavg()[0]})
            if secs < best.get(name, float("inf")):
                best[name], cpu[name], frames[name] = secs, used, df
    load_after = os.getloadavg()
    if frames["serial"].fingerprint.tolist() != frames["pool"].fingerprint.tolist():
        print("error: the pooled sweep's fingerprints differ from the serial sweep's", file=sys.stderr)
        return 1
    n = len(frames["serial"])
    rate = {k: n / v for k, v in best.items()}
    ratio = rate["pool"] / rate["serial"]
    alone = frames["serial"].wall_time_s.tolist()
    in_pool = frames["pool"].wall_time_s.tolist()
    # The order the sweep hands points to the pool: largest first by guest accesses (as
    # kvmsim._sweep.execute does), ties in grid order.
    keys = Keys(sc)
    base = override_list(sc.overrides)
    sizes = [keys.point({}, base + [(to_pointer(k), plain(row[k])) for k in grid], row["variant"], int(row["seed"])).accesses
             for _, row in frames["serial"].iterrows()]
    handed = sorted(range(n), key=lambda i: -sizes[i])
    balance = sum(alone) / makespan([alone[i] for i in handed], args.workers)
    balance_grid_order = sum(alone) / makespan(alone, args.workers)
    slowdown = sum(in_pool) / sum(alone)
    overhead = best["pool"] - makespan([in_pool[i] for i in handed], args.workers)
    out = {
        "scenario": sc.name, "points": n, "grid": grid, "seeds": args.seeds, "overrides": overrides,
        "mean_point_s": sum(alone) / n, "max_point_s": max(alone), "workers": args.workers,
        "start_method": ctx.get_start_method(),
        "serial_s": best["serial"], "pool_s": best["pool"], "serial_points_per_s": rate["serial"],
        "pool_points_per_s": rate["pool"], "ratio": ratio, "target": TARGET,
        "balance_bound": balance, "balance_bound_grid_order": balance_grid_order,
        "pool_point_slowdown": slowdown, "pool_overhead_s": overhead,
        "pool_cpu_inflation": cpu["pool"] / cpu["serial"],
        "serial_cpu_per_wall": cpu["serial"] / best["serial"], "pool_cpu_per_wall": cpu["pool"] / best["pool"],
        "load_before": list(load_before), "load_after": list(load_after), "cpus": os.cpu_count(), "runs": runs,
        "python": platform.python_version(), "kvmsim": kvmsim.__version__, "build_id": kvmsim.build_id,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if args.record:
        with open(args.record, "a") as f:
            f.write(json.dumps(out) + "\n")
    if args.json:
        print(json.dumps(out))
    else:
        shape = " x ".join([f"{len(v)} {k}" for k, v in grid.items()] +
                           [f"{len(sc.variants) or 1} variants", f"{args.seeds} seeds"])
        print(f"sweep of {sc.name}: {n} points ({shape}), mean point {out['mean_point_s']:.2f} s, "
              f"longest {out['max_point_s']:.2f} s")
        # CPU seconds per wall second: how many CPUs the sweep actually got (other load on the
        # machine shows here as less than the worker count).
        print(f"  serial            {best['serial']:7.2f} s  {rate['serial']:6.3f} points/s"
              f"  ({out['serial_cpu_per_wall']:.2f} CPUs busy)")
        print(f"  {args.workers} worker processes {best['pool']:7.2f} s  {rate['pool']:6.3f} points/s"
              f"  ({out['pool_cpu_per_wall']:.2f} CPUs busy; {out['start_method']})")
        print(f"  ratio {ratio:.2f}x (target >= {TARGET}x with 2 workers)")
        print(f"  balance bound {balance:.2f}x (in grid order it would be {balance_grid_order:.2f}x), point slowdown in the pool {slowdown:.2f}x "
              f"(CPU time {out['pool_cpu_inflation']:.2f}x: the rest is waiting for a CPU), "
              f"pool overhead {overhead:.2f} s")
        print(f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
              f"({os.cpu_count()} CPUs; measure below 0.5)")
    if args.check and ratio < TARGET:
        print(f"sweep_bench: ratio {ratio:.2f}x is below {TARGET}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
