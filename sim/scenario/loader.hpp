// Loads a scenario file: validates it against what kvmsim can do (models, knobs, presets, host
// profiles, operations), applies a variant (an RFC 7386 merge patch over the base), expands its
// preset, orders its phases. Every error is a ScenarioError naming file, JSON pointer and what
// was expected.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sim/scenario/error.hpp"
#include "sim/scenario/scenario.hpp"

namespace kvmsim::scenario {

struct LoadOptions {
    std::optional<std::string> variant;  // default: the first (baseline)
    std::optional<std::uint64_t> seed;   // default: the scenario's
    const vm::ModelRegistry* models = nullptr;
    // Where host profiles are looked up (NAME.json), after the scenario's ../hosts and ./hosts.
    std::vector<std::string> host_dirs;
};

Scenario load_scenario(const std::string& path, const LoadOptions& opts);
// The scenario's variant names, baseline first (empty when it has none).
std::vector<std::string> scenario_variants(const std::string& path);
// Host profile names found in the given directories (for `kvmsim list`).
std::vector<std::string> host_profiles(const std::vector<std::string>& dirs);

}  // namespace kvmsim::scenario
