// Loads a scenario file: validates it against what kvmsim can do (models, knobs, presets, host
// profiles, operations), applies a variant (an RFC 7386 merge patch over the base), expands its
// preset, orders its phases. Every error is a ScenarioError naming file, JSON pointer and what
// was expected.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/scenario/error.hpp"
#include "sim/scenario/scenario.hpp"

namespace kvmsim::scenario {

struct LoadOptions {
    std::optional<std::string> variant;  // default: the first (baseline)
    std::optional<std::uint64_t> seed;   // default: the scenario's
    const vm::ModelRegistry* models = nullptr;
    // Where host profiles are looked up (NAME.json), after the scenario's ../hosts and ./hosts:
    // from the command line (--host-dir) or the Python API (host_dirs=), never from a scenario,
    // whose host.profile is a bare name (is_profile_name).
    std::vector<std::string> host_dirs;
    // Values set after the variant is applied, each at an RFC 6901 pointer into the scenario
    // document ("/mmu/knobs/zap_lock"): missing object members on the way are created, an array
    // element must exist, null deletes the member. The loader then checks the result as usual,
    // so a bad value is reported at its pointer. (The Python API's overrides and sweep grids.)
    std::vector<std::pair<std::string, nlohmann::json>> overrides;
};

Scenario load_scenario(const std::string& path, const LoadOptions& opts);
// The same from the document's text; `path` names it in errors and locates host profiles
// (../hosts and ./hosts beside it), and scenario_sha256 is the SHA-256 of `text`.
Scenario load_scenario_text(const std::string& text, const std::string& path, const LoadOptions& opts);
// The scenario's variant names, baseline first (empty when it has none).
std::vector<std::string> scenario_variants(const std::string& path);
// A host profile name a scenario may give: letters, digits, ".", "_", "-", not starting with
// "." (so never a path: no "/", no "..", no NUL), at most 255 characters.
bool is_profile_name(std::string_view name);
// Host profile names found in the given directories (for `kvmsim list`).
std::vector<std::string> host_profiles(const std::vector<std::string>& dirs);

}  // namespace kvmsim::scenario
