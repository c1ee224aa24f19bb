// Reading a model's cost constants from the host profile: every name a model reads is declared
// in its ModelInfo::costs, and a missing one is reported with all the others missing.
#pragma once

#include <string>
#include <vector>

#include "sim/vm/types.hpp"

namespace kvmsim::models {

// Throws std::invalid_argument listing every name of `names` the profile lacks.
void require_costs(const vm::CostProfile& profile, const std::vector<std::string>& names,
                   const std::string& model);

}  // namespace kvmsim::models
