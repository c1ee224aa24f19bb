#include "models/common/knobs.hpp"

#include <stdexcept>

namespace kvmsim::models {

namespace {
const vm::KnobValue* find_knob(const vm::Knobs& knobs, std::string_view name) {
    auto it = knobs.find(name);
    return it == knobs.end() ? nullptr : &it->second;
}
std::invalid_argument bad(std::string_view model, std::string_view name, const std::string& what) {
    return std::invalid_argument(std::string(model) + ": knob '" + std::string(name) + "' " + what);
}
}  // namespace

bool knob_bool(const vm::Knobs& knobs, std::string_view name, bool def, std::string_view model) {
    const vm::KnobValue* v = find_knob(knobs, name);
    if (!v) return def;
    if (const bool* b = std::get_if<bool>(v)) return *b;
    throw bad(model, name, "must be a bool");
}

std::int64_t knob_int(const vm::Knobs& knobs, std::string_view name, std::int64_t def, std::int64_t lo, std::int64_t hi,
                      std::string_view model) {
    const vm::KnobValue* v = find_knob(knobs, name);
    if (!v) return def;
    const std::int64_t* i = std::get_if<std::int64_t>(v);
    if (!i || *i < lo || *i > hi)
        throw bad(model, name, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *i;
}

std::string knob_choice(const vm::Knobs& knobs, std::string_view name, const std::string& def,
                        std::initializer_list<const char*> choices, std::string_view model) {
    const vm::KnobValue* v = find_knob(knobs, name);
    if (!v) return def;
    const std::string* s = std::get_if<std::string>(v);
    if (!s) throw bad(model, name, "must be a string");
    for (const char* c : choices)
        if (*s == c) return *s;
    throw bad(model, name, "has no choice '" + *s + "'");
}

vm::KnobSpec bool_knob(std::string name, bool def, std::string meaning) {
    vm::KnobSpec k;
    k.name = std::move(name);
    k.type = vm::KnobSpec::Type::Bool;
    k.default_value = def;
    k.meaning = std::move(meaning);
    return k;
}

vm::KnobSpec int_knob(std::string name, std::int64_t def, std::int64_t lo, std::int64_t hi, std::string meaning) {
    vm::KnobSpec k;
    k.name = std::move(name);
    k.type = vm::KnobSpec::Type::Int;
    k.default_value = def;
    k.min = lo;
    k.max = hi;
    k.meaning = std::move(meaning);
    return k;
}

vm::KnobSpec choice_knob(std::string name, std::string def, std::vector<std::string> choices, std::string meaning) {
    vm::KnobSpec k;
    k.name = std::move(name);
    k.type = vm::KnobSpec::Type::Choice;
    k.default_value = std::move(def);
    k.choices = std::move(choices);
    k.meaning = std::move(meaning);
    return k;
}

}  // namespace kvmsim::models
