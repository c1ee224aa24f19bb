#!/usr/bin/env python3
"""Sweep throughput: points per second for a sweep run in process (serial) and on a
ProcessPoolExecutor with N workers (default 2), and the ratio (target: >= 1.8x on 2 workers).

    PYTHONPATH=build/python python3 bench/sweep_bench.py [--seeds 3] [--workers 2] [--repeat 1] [--json]

The points are seed 003's four variants over --seeds seeds, at full size (each point is a
whole run of about 0.5 to 1.5 s), so process start-up is amortised. The pool is created and
shut down inside the timed region. Both sweeps must give the same fingerprints.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import kvmsim


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers, once joined)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(kvmsim.scenarios_dir() / "seeds" / "003-zap-gfn-range.json"))
    ap.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="process-pool workers (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings of each (default 1)")
    ap.add_argument("--override", action="append", default=[], metavar="PATH=JSON",
                    help="a scenario override, e.g. workload.phases.0.stream.count=2000")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    overrides = {}
    for o in args.override:
        path, _, value = o.partition("=")
        overrides[path] = json.loads(value)

    sc = kvmsim.load(args.scenario, overrides=overrides)

    def serial():
        return kvmsim.sweep(sc, seeds=args.seeds, progress=False)

    def pooled():
        with ProcessPoolExecutor(args.workers) as ex:
            return kvmsim.sweep(sc, seeds=args.seeds, executor=ex, progress=False)

    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    frames = {}
    for name, fn in (("serial", serial), ("pool", pooled)):
        for _ in range(args.repeat):
            df, secs, used = timed(fn)
            frames[name] = df
            if secs < best.get(name, float("inf")):
                best[name], cpu[name] = secs, used
    if frames["serial"].fingerprint.tolist() != frames["pool"].fingerprint.tolist():
        print("error: the pooled sweep's fingerprints differ from the serial sweep's", file=sys.stderr)
        return 1
    n = len(frames["serial"])
    rate = {k: n / v for k, v in best.items()}
    ratio = rate["pool"] / rate["serial"]
    point_s = frames["serial"].wall_time_s.mean()
    if args.json:
        print(json.dumps({"scenario": sc.name, "points": n, "mean_point_s": point_s, "workers": args.workers,
                          "serial_s": best["serial"], "pool_s": best["pool"], "serial_points_per_s": rate["serial"],
                          "pool_points_per_s": rate["pool"], "ratio": ratio,
                          "serial_cpu_per_wall": cpu["serial"] / best["serial"],
                          "pool_cpu_per_wall": cpu["pool"] / best["pool"]}))
    else:
        print(f"sweep of {sc.name}: {n} points ({len(sc.variants) or 1} variants x {args.seeds} seeds), "
              f"mean point {point_s:.2f} s")
        # CPU seconds per wall second: how many CPUs the sweep actually got (other load on the
        # machine shows here as less than the worker count).
        print(f"  serial            {best['serial']:7.2f} s  {rate['serial']:6.3f} points/s"
              f"  ({cpu['serial'] / best['serial']:.2f} CPUs busy)")
        print(f"  {args.workers} worker processes {best['pool']:7.2f} s  {rate['pool']:6.3f} points/s"
              f"  ({cpu['pool'] / best['pool']:.2f} CPUs busy)")
        print(f"  ratio {ratio:.2f}x (target >= 1.8x with 2 workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
