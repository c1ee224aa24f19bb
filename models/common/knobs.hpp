// Reading a model's knobs (the loader has already checked them against the KnobSpecs; these
// checks guard direct construction, as in tests) and building its KnobSpecs.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

// `model` prefixes the error message: "x86_tdp: knob 'zap_lock' must be a bool".
bool knob_bool(const vm::Knobs& knobs, std::string_view name, bool def, std::string_view model);
std::int64_t knob_int(const vm::Knobs& knobs, std::string_view name, std::int64_t def, std::int64_t lo, std::int64_t hi,
                      std::string_view model);
std::string knob_choice(const vm::Knobs& knobs, std::string_view name, const std::string& def,
                        std::initializer_list<const char*> choices, std::string_view model);

vm::KnobSpec bool_knob(std::string name, bool def, std::string meaning);
vm::KnobSpec int_knob(std::string name, std::int64_t def, std::int64_t lo, std::int64_t hi, std::string meaning);
vm::KnobSpec choice_knob(std::string name, std::string def, std::vector<std::string> choices, std::string meaning);

}  // namespace kvmsim::models
