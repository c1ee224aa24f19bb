// The runner: builds the host, VM, MMU model and workload of a scenario on a fresh simulator,
// runs it, and collects the result. Results depend only on (scenario, variant, seed).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sim/engine/cache.hpp"
#include "sim/engine/stats.hpp"
#include "sim/scenario/scenario.hpp"

// Written by scripts/source_id.py at build time (sim/meson.build).
extern const char kvmsim_build_id[];

namespace kvmsim::runner {

struct LockResult {
    std::string lock, mode, site;
    std::uint64_t acquisitions = 0, contended = 0;
    engine::Histogram wait_ps, hold_ps;
};

// A class of contended cache lines (engine::LineClass), e.g. "struct_page_refcount".
struct LineResult {
    std::string name;
    std::uint64_t operations = 0, contended = 0;
    engine::Histogram wait_ps;  // contended operations
};

// A fair-shared resource (engine::Bandwidth), e.g. "memory_bandwidth".
struct BandwidthResult {
    std::string name;
    std::uint64_t bytes = 0, transfers = 0;
    engine::Time busy{};
    std::uint32_t peak_concurrency = 0;
};

struct PhaseStats {
    std::string name;
    double sim_time_ns = 0;
    bool selftest_metric = false;
    std::map<std::string, std::uint64_t> stats;
    std::vector<LockResult> locks;
    engine::CacheCounters caches;
    std::vector<LineResult> lines;
    std::vector<BandwidthResult> bandwidth;
    // Every guest fault that returned in the phase: from the exit (the access's time) to the
    // return to the guest, in ps.
    engine::FineHistogram fault_latency_ps;
};

struct Result {
    std::string kvmsim_version;
    std::string build_id;     // kvmsim_build_id: a hash of the sources this binary was built from
    std::string scenario;     // name
    std::string file;
    std::string scenario_sha256;
    std::string resolved_sha256;
    std::string resolved_json;       // Scenario::resolved_json
    std::string host_profile_json;   // Scenario::host_profile_json
    std::vector<std::pair<std::string, std::string>> overrides;  // Scenario::overrides
    std::string variant;
    std::uint64_t seed = 0;
    bool seed_used = false;  // false: every seed gives this same result
    std::string model;
    std::string preset;
    std::uint32_t vcpus = 0;  // the VM's
    // The host profile's tsc_frequency (Hz), 0 if it has none: selftests that print rdtsc cycles.
    std::uint64_t tsc_hz = 0;
    std::uint64_t fingerprint = 0;
    std::string status;       // "completed", "deadlock" or "stopped" (RunOptions::until)
    std::string deadlock;     // the report, when status is "deadlock"
    std::vector<PhaseStats> phases;   // the workload's steps, in order
    std::map<std::string, std::uint64_t> stats;  // whole run
    std::vector<LockResult> locks;               // whole run
    std::vector<LineResult> lines;               // whole run, by name
    std::vector<BandwidthResult> bandwidth;      // whole run, by name
    std::vector<std::string> cache_levels;
    engine::CacheCounters caches;                // whole run
    engine::FineHistogram fault_latency_ps;      // whole run: the phases' merged
    std::uint64_t events = 0;
    std::uint64_t events_inline = 0;  // of `events`, processed without queueing (benchmarks only)
    std::uint64_t guest_accesses = 0;
    std::uint64_t guest_exits = 0;
    double sim_time_ns = 0;
    double wall_time_s = 0;
    std::optional<scenario::Recorded> recorded;  // Scenario::recorded: printed beside the run's
};

struct RunOptions {
    // Called every so often with the simulated time and events processed (progress display).
    std::function<void(double sim_ns, std::uint64_t events)> progress;
    engine::Tracer* tracer = nullptr;                     // traces the run (never changes it)
    engine::EventLog* event_log = nullptr;                  // every processed event, for diff
    std::vector<std::string>* process_names = nullptr;      // by process id, with event_log
    // Stop at this simulated time (status "stopped"): a quick look at a long scenario.
    engine::Time until = engine::Time::max();
};

Result run(const scenario::Scenario& s, const RunOptions& opts = {});

}  // namespace kvmsim::runner
