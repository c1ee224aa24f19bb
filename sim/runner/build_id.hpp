// The build identity of kvmsim's core: a SHA-256 of the sources it is built from and the
// compiler (64 hex digits), written by scripts/source_id.py into build_id.cpp at build time and
// linked into kvmsim_sim. `kvmsim --version` prints it; kvmsim._core.build_id is the same.
#pragma once

extern const char kvmsim_build_id[];
