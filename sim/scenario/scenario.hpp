// A scenario after loading: typed, validated, with its variant applied and its preset expanded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/vm/mmu_model.hpp"
#include "sim/workload/workload.hpp"

namespace kvmsim::scenario {

// A published figure of one run: the variant that reproduces the run ("" when the scenario has
// no variants), the value in the row's unit, and the individual runs when the source gives them.
struct PublishedValue {
    std::string variant;
    double value = 0;
    std::vector<double> samples;
};

// One row of a published table (`kvmsim check-published`). A row compares two runs (before,
// after: their ratio is the change the source reports) or gives one run's value (value).
struct PublishedRow {
    std::string pointer;     // "/published/rows/3", for messages
    std::string phase;       // a phase (step) name; "*" matches any text (with aggregate)
    std::string aggregate;   // "mean" or "sum" over the phases a "*" name matches; "" for one phase
    std::string stat;        // or a stat of the whole run
    std::string unit;        // "s", "ms", "us", "ns" for phases, "count" for stats
    std::optional<PublishedValue> before, after, value;
    bool calibration = false;  // a host-profile constant was derived from this row
    std::string note;
    // Why kvmsim cannot reproduce this row (a phase the model cannot run); kept so the project
    // holds every published figure. Its phase need not exist in the workload.
    std::string not_expressible;
};

// A scenario's "published" block: where the figures come from and its rows. The project keeps
// its own copy of every figure with its citation.
struct Published {
    std::string title, author, date, url;
    std::string host;
    std::string note;
    std::string skip;  // why check-published does not run it by default ("" = it does)
    std::vector<PublishedRow> rows;
};

// What a recorded trace measured (the "recorded" block kvmsim import-trace writes): printed by
// `kvmsim run` beside the simulated figures. Latencies are nanoseconds from the exit to the
// return to the guest (kvm_exit to kvm_entry) of the exits that took a guest page fault.
struct RecordedFigures {
    std::string name;  // a phase of the workload; "" for the whole trace
    std::vector<std::pair<std::string, std::uint64_t>> faults;  // "total", "write", ... in file order
    std::uint64_t latency_count = 0;
    double latency_p50_ns = 0, latency_p99_ns = 0, latency_max_ns = 0;
};

struct Recorded {
    std::string source;  // the trace file, as import-trace was given it
    std::string format;  // "trace-cmd" or "perf"
    std::vector<RecordedFigures> phases;
    RecordedFigures whole;
};

// True if `name` matches `pattern`, where "*" matches any (possibly empty) text.
bool phase_matches(std::string_view pattern, std::string_view name);

struct Scenario {
    std::string file;         // as given
    std::string name;
    std::string description;
    std::string sha256;       // of the file's bytes
    // SHA-256 of everything in the files that decides a run but the seed: the document as
    // loaded (the variant's patch and the overrides applied, "variants" and "seed" left out)
    // and the host profile's document. The same for two loads exactly when they run the same
    // scenario (given the same seed and kvmsim build): what Python sweeps key results on.
    std::string resolved_sha256;
    // The documents resolved_sha256 is taken over, as JSON text: the scenario as loaded (no
    // "variants"; "seed" is the run's) and its host profile. A result carries them, so a result
    // file alone says how it was made.
    std::string resolved_json;
    std::string host_profile_json;
    // LoadOptions::overrides as applied: (JSON pointer, value as JSON text), in order.
    std::vector<std::pair<std::string, std::string>> overrides;
    std::uint64_t seed = 1;
    std::string variant;      // the variant applied ("" when the scenario has none)
    std::vector<std::string> variants;  // all, the first is the baseline
    vm::HostConfig host;
    vm::VmConfig vm;
    std::string model;
    vm::Knobs knobs;          // every knob of the model, defaults filled in
    workload::Workload workload;
    std::optional<Published> published;  // the "published" block, if any
    std::optional<Recorded> recorded;    // the "recorded" block, if any
};

}  // namespace kvmsim::scenario
