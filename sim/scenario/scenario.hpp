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
