#include "models/registry.hpp"

#include "models/arm64_stage2/arm64_stage2.hpp"
#include "models/x86_shadow/x86_shadow.hpp"
#include "models/x86_tdp/x86_tdp.hpp"

namespace kvmsim::models {

void register_builtin_models(vm::ModelRegistry& registry) {
    register_arm64_stage2(registry);
    register_x86_tdp(registry);
    register_x86_shadow(registry);
}

const vm::ModelRegistry& builtin_models() {
    static const vm::ModelRegistry registry = [] {
        vm::ModelRegistry r;
        register_builtin_models(r);
        return r;
    }();
    return registry;
}

}  // namespace kvmsim::models
