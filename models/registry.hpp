// The built-in MMU models. Registration is explicit (static libraries drop self-registering
// static initializers).
#pragma once

#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

// Adds every built-in model to `registry`.
void register_builtin_models(vm::ModelRegistry& registry);

// A registry holding every built-in model, filled once on first use.
const vm::ModelRegistry& builtin_models();

}  // namespace kvmsim::models
