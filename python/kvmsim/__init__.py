"""kvmsim: a deterministic discrete-event simulator of the KVM MMU, from Python.

Replays JSON workload scenarios against models of KVM's MMUs and reports lock contention and
cache misses per scenario and phase; the same scenario, variant and seed always give the same
result, bit for bit, in any process.

    import kvmsim
    sc = kvmsim.load("scenarios/seeds/003-zap-gfn-range.json")
    r = kvmsim.run(sc, variant="read-lock", overrides={"vm.vcpus": 8})
    r.stats["pf_fixed"], r.locks_df, r.fingerprint
    kvmsim.compare(sc, seeds=3)                       # the table of `kvmsim compare`
    kvmsim.import_trace("trace.txt")                  # a scenario from a trace-cmd/perf trace
    kvmsim.sweep(sc, grid={"vm.vcpus": [4, 8, 16]}, seeds=3,
                 executor=concurrent.futures.ProcessPoolExecutor(2), results="sweep.jsonl")

See docs/python.md for the whole API.
"""

from . import _core
from ._compare import compare
from ._errors import GridError, ScenarioError, TraceError
from ._result import Result, run
from ._scenario import Scenario, load, scenarios_dir, to_pointer
from ._sweep import run_point, sweep, with_units
from ._trace import import_trace

__version__ = _core.__version__
#: SHA-256 of the sources (and compiler) the C++ core was built from: two builds with the same
#: build_id run every scenario identically. Sweeps key their results files on it.
build_id = _core.build_id


def __getattr__(name: str):
    """kvmsim.plot and kvmsim.study load on first use (matplotlib is needed only for plots)."""
    if name in ("plot", "study"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kvmsim' has no attribute {name!r}")

__all__ = [
    "GridError",
    "Result",
    "Scenario",
    "ScenarioError",
    "TraceError",
    "compare",
    "import_trace",
    "load",
    "run",
    "run_point",
    "scenarios_dir",
    "sweep",
    "to_pointer",
    "with_units",
    "__version__",
    "build_id",
    "plot",
    "study",
]
