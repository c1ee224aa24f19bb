#include "models/common/costs.hpp"

#include <stdexcept>

namespace kvmsim::models {

void require_costs(const vm::CostProfile& profile, const std::vector<std::string>& names,
                   const std::string& model) {
    std::string missing;
    for (const std::string& n : names) {
        if (profile.has(n)) continue;
        if (!missing.empty()) missing += ", ";
        missing += n;
    }
    if (!missing.empty())
        throw std::invalid_argument("model '" + model + "': host profile lacks cost(s): " + missing);
}

}  // namespace kvmsim::models
