// A scenario after loading: typed, validated, with its variant applied and its preset expanded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/vm/mmu_model.hpp"
#include "sim/workload/workload.hpp"

namespace kvmsim::scenario {

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
    std::uint64_t seed = 1;
    std::string variant;      // the variant applied ("" when the scenario has none)
    std::vector<std::string> variants;  // all, the first is the baseline
    vm::HostConfig host;
    vm::VmConfig vm;
    std::string model;
    vm::Knobs knobs;          // every knob of the model, defaults filled in
    workload::Workload workload;
};

}  // namespace kvmsim::scenario
