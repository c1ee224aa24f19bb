#!/usr/bin/env bash
# setup.sh — install what kvmsim needs (only what is missing), build it, run the main job.
# Safe to re-run: a second run installs nothing and only rebuilds what changed.
# CI=<non-empty> builds with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh

kvmsim_env                                        # Debian + PyPI dependencies, Python choice
kvmsim_meson_setup build --buildtype=release -Dpython=true   # the release build, with the Python package
meson compile -C build

# ---- main job ---------------------------------------------------------------------------
# The seed suite: every scenario in scenarios/seeds/, every variant over the same 3 seeds,
# before/after with 95% intervals.
main_job() {
    build/sim/kvmsim compare scenarios/seeds --seeds 3
}
main_job
