// libFuzzer target: the scenario loader from text (every variant of a document that loads).
// Bad input must end in a ScenarioError (a located error, exit 2 for the command); anything else
// escaping the loader (std::bad_alloc, std::out_of_range, a logic_error), a crash, a hang or a
// sanitizer report is a finding. README "Fuzzing" says how to run it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "models/registry.hpp"
#include "sim/scenario/loader.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace kvmsim;
    const std::string text(reinterpret_cast<const char*>(data), size);
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.host_dirs = {std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts"};
    // A path with no hosts/ beside it: profiles come from host_dirs only.
    const std::string path = "/nonexistent/fuzz/scenario.json";
    try {
        const scenario::Scenario sc = scenario::load_scenario_text(text, path, o);
        for (const auto& v : sc.variants) {
            o.variant = v;
            try {
                scenario::load_scenario_text(text, path, o);
            } catch (const scenario::ScenarioError&) {
            }
        }
    } catch (const scenario::ScenarioError&) {
    }
    return 0;
}
