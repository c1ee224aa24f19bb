// The scenario schema (scenarios/schema/scenario.schema.json) says what the loader says: its
// unit patterns, enumerations and limits are generated from the loader's own tables (units.cpp's
// suffixes, the models' knobs, the presets' -s backings and -m guest modes, the operations, the
// host profile name rule, the count and cost limits). `kvmsim-schema` writes it at build time
// (build/sim/scenario.schema.json) from the committed file as a template: every part it owns is
// replaced, the rest (structure, descriptions) is kept. tests/python/test_schema.py checks the
// committed file is the generated one, and that schema and loader agree on a corpus of
// accepted and refused cases.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/vm/mmu_model.hpp"

namespace kvmsim::scenario {

// `templ`: the schema as committed. `profiles`: host profile names shipped (examples only: any
// bare name found in a --host-dir is accepted).
nlohmann::ordered_json generate_scenario_schema(nlohmann::ordered_json templ, const vm::ModelRegistry& models,
                                                const std::vector<std::string>& profiles);

// The regular expression of a value with one of `units` (ECMAScript and Python syntax alike).
std::string unit_pattern(const std::vector<std::string>& units);

}  // namespace kvmsim::scenario
