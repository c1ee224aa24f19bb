"""Recorded traces from Python: kvmsim.import_trace, as `kvmsim import-trace` (sim/trace/import.hpp)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

from . import _core

PathLike = Union[str, "os.PathLike[str]"]


def import_trace(
    trace: PathLike,
    out: Optional[PathLike] = None,
    *,
    model: Optional[str] = None,
    host: Optional[str] = None,
    backing: Optional[str] = None,
    name: Optional[str] = None,
    window: Optional[str] = None,
) -> dict[str, Any]:
    """The scenario made from a recorded KVM trace (the text of ``trace-cmd report`` or ``perf script``).

    Its workload replays each vCPU's guest page faults with the guest time between them; its
    ``recorded`` block holds what the trace measured (faults by type, kvm_exit-to-kvm_entry
    latency p50/p99/max per phase). ``kvmsim.run`` on it gives a result whose ``doc["recorded"]``
    sits beside the simulated ``fault_latency``. ``window`` (a time such as ``"10ms"``) makes one
    phase per window of the trace. With ``out``, the scenario is also written there (whole or
    not at all). A bad trace raises kvmsim.TraceError (``file``, ``line``, ``message``); a file
    that cannot be read, kvmsim.ScenarioError.
    """
    text = _core.import_trace(os.fspath(trace), model=model, host=host, backing=backing, name=name, window=window)
    doc = json.loads(text)
    if out is not None:
        target = Path(out)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".tmp.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return doc
