#!/usr/bin/env python3
"""The engine against SimPy on the hold model, side by side (issue 18's engine target).

    python3 bench/simpy_compare.py [--bench build/bench/kvmsim-bench] [--events N]
                                   [--simpy-events N] [--json OUT]

The hold model keeps P events pending (P = 16, 4096, 100000): each event is a process resuming
from a delay drawn from an exponential distribution (mean 1 us) and scheduling its next one.
`kvmsim-bench engine --json` runs it on kvmsim's engine (and a bare std::priority_queue loop over
the same items, its ceiling); this script runs the same model in SimPy, installed into a
temporary virtual environment that is removed afterwards (nothing is installed anywhere else).
Each figure is the best of three runs, in events per second of wall time, on an otherwise idle
machine if the figures are to mean anything. Prints one line per pending count with the ratio
engine / SimPy (target: at least 20x) and engine / ceiling (target at 100000 pending: at least
0.5x), and writes them as JSON with --json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv

# Runs inside the temporary venv: the hold model in SimPy, best of three, events per second.
SIMPY_HOLD = r"""
import json, random, sys, time
import simpy

def hold(pending, events):
    env = simpy.Environment()
    rng = random.Random(1)
    budget = [events]
    def proc():
        while budget[0] > 0:
            budget[0] -= 1
            yield env.timeout(rng.expovariate(1.0) + 1e-6)
    for _ in range(pending):
        env.process(proc())
    t0 = time.perf_counter()
    env.run()
    return events / (time.perf_counter() - t0)

out = {}
events = int(sys.argv[1])
for pending in (16, 4096, 100000):
    out[pending] = max(hold(pending, events) for _ in range(3))
print(json.dumps({"simpy_version": simpy.__version__, "events_per_s": out}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="build/bench/kvmsim-bench", help="the kvmsim-bench binary")
    ap.add_argument("--events", type=int, default=4_000_000, help="events per engine run")
    ap.add_argument("--simpy-events", type=int, default=400_000, help="events per SimPy run")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    if not os.path.isfile(a.bench):
        print(f"simpy_compare: {a.bench}: no such file (build first: meson compile -C build)", file=sys.stderr)
        return 2

    engine = json.loads(
        subprocess.run([a.bench, "engine", "--json", "--events", str(a.events)], check=True,
                       capture_output=True, text=True).stdout)
    with tempfile.TemporaryDirectory(prefix="kvmsim-simpy-") as d:
        venv.EnvBuilder(with_pip=True).create(d)
        py = os.path.join(d, "bin", "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "simpy"], check=True)
        simpy = json.loads(
            subprocess.run([py, "-c", SIMPY_HOLD, str(a.simpy_events)], check=True, capture_output=True,
                           text=True).stdout)

    rows = []
    for h in engine["hold"]:
        p = h["pending"]
        s = simpy["events_per_s"][str(p)]
        rows.append({"pending": p, "engine_events_per_s": h["events_per_s"], "simpy_events_per_s": s,
                     "engine_over_simpy": h["events_per_s"] / s,
                     "ceiling_events_per_s": h["ceiling_events_per_s"],
                     "engine_over_ceiling": h["ratio"]})
    print(f"SimPy {simpy['simpy_version']}, Python {sys.version.split()[0]}")
    print(f"{'pending':>8} {'engine M/s':>11} {'SimPy M/s':>10} {'engine/SimPy':>13} {'engine/ceiling':>15}")
    for r in rows:
        print(f"{r['pending']:>8} {r['engine_events_per_s'] / 1e6:>11.2f} {r['simpy_events_per_s'] / 1e6:>10.3f} "
              f"{r['engine_over_simpy']:>12.1f}x {r['engine_over_ceiling']:>14.2f}x")
    worst = min(r["engine_over_simpy"] for r in rows)
    at100k = next(r["engine_over_ceiling"] for r in rows if r["pending"] == 100000)
    print(f"targets: engine/SimPy >= 20x at every size: {'met' if worst >= 20 else 'MISSED'} (worst {worst:.1f}x); "
          f"engine/ceiling >= 0.5x at 100000 pending: {'met' if at100k >= 0.5 else 'MISSED'} ({at100k:.2f}x)")
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"simpy_version": simpy["simpy_version"], "rows": rows}, f, indent=2)
        os.replace(tmp, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
