"""kvmsim: a deterministic discrete-event simulator of the KVM MMU.

Replays JSON workload scenarios against models of KVM's MMUs (x86 TDP MMU, x86 shadow MMU,
arm64 stage-2) and reports lock contention and cache misses per scenario and phase. This
package will hold the Python API (run, sweep, compare) over the C++ core; for now it only
carries the version.
"""

__version__ = "0.1.0"
