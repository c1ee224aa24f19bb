// Reading a model's knobs (the loader fills in every default, but a model built directly, as in
// unit tests, may get a partial or wrongly typed set) and declaring them in a ModelInfo.
#pragma once

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

// A bool knob, `def` when absent; std::invalid_argument "MODEL: knob 'NAME' must be a bool".
inline bool knob_bool(const vm::Knobs& knobs, std::string_view model, std::string_view name, bool def) {
    auto it = knobs.find(name);
    if (it == knobs.end()) return def;
    if (const bool* b = std::get_if<bool>(&it->second)) return *b;
    throw std::invalid_argument(std::string(model) + ": knob '" + std::string(name) + "' must be a bool");
}

// A choice knob, `def` when absent; rejects a non-string or a value not in `choices`.
inline std::string knob_choice(const vm::Knobs& knobs, std::string_view model, std::string_view name,
                               const std::string& def, std::initializer_list<const char*> choices) {
    auto it = knobs.find(name);
    if (it == knobs.end()) return def;
    const std::string* s = std::get_if<std::string>(&it->second);
    if (!s) throw std::invalid_argument(std::string(model) + ": knob '" + std::string(name) + "' must be a string");
    for (const char* c : choices)
        if (*s == c) return *s;
    throw std::invalid_argument(std::string(model) + ": knob '" + std::string(name) + "' has no choice '" + *s + "'");
}

inline vm::KnobSpec choice_knob(std::string name, std::string def, std::vector<std::string> choices, std::string meaning) {
    vm::KnobSpec k;
    k.name = std::move(name);
    k.type = vm::KnobSpec::Type::Choice;
    k.default_value = std::move(def);
    k.choices = std::move(choices);
    k.meaning = std::move(meaning);
    return k;
}

inline vm::KnobSpec bool_knob(std::string name, bool def, std::string meaning) {
    vm::KnobSpec k;
    k.name = std::move(name);
    k.type = vm::KnobSpec::Type::Bool;
    k.default_value = def;
    k.meaning = std::move(meaning);
    return k;
}

}  // namespace kvmsim::models
