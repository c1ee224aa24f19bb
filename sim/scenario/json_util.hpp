// The typed, located-error JSON toolkit the scenario loader is built from. It knows nothing of
// KVM: it parses JSON with line/column syntax errors, applies RFC 7386 merge patches, walks a
// document with typed getters that throw ScenarioError carrying the file and the RFC 6901
// pointer, suggests names ("did you mean"), and hashes (SHA-256).
//
//   nlohmann::json doc = parse_json_file("scenarios/seeds/003-zap.json");
//   Node root(doc, "scenarios/seeds/003-zap.json");
//   root.check_keys({"name", "description", "vm", "mmu", "phases", "variants"});
//   Node slot = root["vm"]["memslots"][0];               // pointer "/vm/memslots/0"
//   std::uint64_t size = slot.get_size("size", 4096);     // "/vm/memslots/0: missing ..."
//   std::string lock = root["mmu"]["knobs"].opt_enum("zap_lock", "write", {"write", "read"});
//
// Documents use nlohmann::json (std::map objects): keys iterate in sorted order, so errors
// about several keys and canonical_json() are deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/engine/time.hpp"
#include "sim/scenario/error.hpp"
#include "sim/scenario/units.hpp"

namespace kvmsim::scenario {

// ---- parsing ----------------------------------------------------------------------------------

// Nesting deeper than this is rejected at parse time (keeps every recursive walk bounded).
inline constexpr std::size_t kMaxJsonDepth = 256;
// Files larger than this are rejected before reading (kMaxInputFileBytes, input_file.hpp).
inline constexpr std::uintmax_t kMaxJsonFileBytes = std::uintmax_t{64} << 20;

// Parses strict JSON (RFC 8259: no comments, no trailing commas; a UTF-8 BOM is skipped).
// Syntax errors: ScenarioError::syntax with 1-based line and column (column in UTF-8
// characters; lines end at '\n'), pointing at the start of an unexpected string or number token,
// otherwise at the offending character (or just past the end for unexpected end of input).
// Duplicate keys in one object and nesting deeper than kMaxJsonDepth: ScenarioError at the
// pointer of the object / the too-deep value.
nlohmann::json parse_json_text(std::string_view text, const std::string& file_label);
// Reads and parses a file; the label in errors is path.string(). A missing, unreadable or
// oversized file, or anything but a regular file (read_input_file), is a
// ScenarioError::file_error naming the file.
nlohmann::json parse_json_file(const std::filesystem::path& path);

// Line and column (1-based, column in UTF-8 characters) of a byte offset in text; an offset
// past the end is clamped to the end.
std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t offset);

// ---- RFC 7386 merge patch ------------------------------------------------------------------------

// Applies `patch` to `target` in place: an object patch merges member by member (a null member
// deletes the key, others merge recursively into the member, a non-object target becomes {}
// first); any other patch (array, string, number, boolean, null) replaces the target.
// The patch is taken by value, so it may be a part of target (a variant stored in the scenario).
void apply_merge_patch(nlohmann::json& target, nlohmann::json patch);
// The same, returning the patched copy.
nlohmann::json merge_patch(nlohmann::json target, const nlohmann::json& patch);

// ---- JSON pointers (RFC 6901) -----------------------------------------------------------------------

// Escapes one reference token: "~" -> "~0", "/" -> "~1".
std::string json_pointer_escape(std::string_view key);
// pointer + "/" + escaped key; pointer + "/" + index.
std::string json_pointer_append(std::string_view pointer, std::string_view key);
std::string json_pointer_append(std::string_view pointer, std::size_t index);

// ---- names -------------------------------------------------------------------------------------------

// The candidate closest to `word` by case-insensitive optimal-string-alignment distance
// (Damerau–Levenshtein with adjacent transpositions, ASCII case folding), suggested only when
// distance <= max(1, word.size() / 3). Ties: smallest distance, then the earlier candidate.
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::span<const std::string_view> candidates);
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::span<const std::string> candidates);
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::initializer_list<std::string_view> candidates);
// " (did you mean \"X\"?)" or "" — ready to append to a message.
std::string did_you_mean_suffix(std::string_view word, std::span<const std::string_view> candidates);
std::string did_you_mean_suffix(std::string_view word, std::span<const std::string> candidates);

// ---- value descriptions ----------------------------------------------------------------------------

// The JSON type: "null", "boolean", "integer", "number", "string", "array", "object".
std::string_view json_type_name(const nlohmann::json& v);
// A value as it appears in JSON, compact, cut after max_chars characters with "..."
// ("\"wrte\"", "5", "2.5", "true", "null", "[1,2,3]", "{\"a\":1}").
std::string describe_json(const nlohmann::json& v, std::size_t max_chars = 60);

// ---- hashing ----------------------------------------------------------------------------------------

// SHA-256 (FIPS 180-4) as 64 lowercase hex digits.
std::string sha256_hex(std::string_view data);
// Compact dump with sorted keys (nlohmann::json objects are ordered maps) and shortest
// round-trip numbers: the same document always gives the same bytes, e.g. for scenario_sha256.
std::string canonical_json(const nlohmann::json& v);

// ---- the located reader ------------------------------------------------------------------------------

// A position in a JSON document: a reference to the value, the file label and the RFC 6901
// pointer. Navigating and typed getters throw ScenarioError located at the exact pointer.
// A Node does not own the document: the nlohmann::json passed to the root Node must outlive
// every Node derived from it.
//
// Conventions for every getter taking a key:
//  - this node must be an object: otherwise "expected an object, got ..." at this pointer;
//  - get_*: a missing key is "missing required key \"K\"" at this node's pointer;
//  - opt_*: a missing key gives the default; a present key must be valid (null is not
//    "missing": it is a wrong-type error like any other value);
//  - a wrong type or range is "expected ..., got VALUE" at the member's pointer.
// as_* are the same conversions applied to this node's own value.
class Node {
public:
    Node(const nlohmann::json& root, std::string file);
    Node(nlohmann::json&&, std::string) = delete;  // would dangle
    // A value that stands at `pointer` of the file (e.g. a merged copy of a member).
    Node(const nlohmann::json& value, std::string file, std::string pointer);
    Node(nlohmann::json&&, std::string, std::string) = delete;

    const nlohmann::json& json() const noexcept { return *value_; }
    const std::string& file() const noexcept { return *file_; }
    const std::string& pointer() const noexcept { return pointer_; }

    std::string_view type_name() const { return json_type_name(*value_); }
    bool is_null() const noexcept { return value_->is_null(); }
    bool is_object() const noexcept { return value_->is_object(); }
    bool is_array() const noexcept { return value_->is_array(); }
    bool is_string() const noexcept { return value_->is_string(); }

    // ---- navigation
    // Required member: this must be an object holding key.
    Node operator[](std::string_view key) const;
    // Required element: this must be an array with more than index elements.
    Node operator[](std::size_t index) const;
    // The member if present (this must be an object).
    std::optional<Node> find(std::string_view key) const;
    // True if this is an object holding key (never throws).
    bool has(std::string_view key) const noexcept;
    // Member that must be an object / an array.
    Node object(std::string_view key) const;
    Node array(std::string_view key) const;
    std::optional<Node> opt_object(std::string_view key) const;
    std::optional<Node> opt_array(std::string_view key) const;
    // This must be an array: its elements in order.
    std::vector<Node> elements() const;
    // This must be an object: its members in key order.
    std::vector<std::pair<std::string, Node>> members() const;
    std::vector<std::string> keys() const;
    // Number of elements / members (0 for scalars).
    std::size_t size() const noexcept { return value_->is_structured() ? value_->size() : 0; }

    // This must be an object whose keys are all listed. Unknown keys are reported at this
    // node's pointer as: unknown key "X" (did you mean "Y"?) — or, without a close match,
    // unknown key "X" (expected one of "a", "b"). Several unknown keys: ScenarioErrors, one
    // error per key, in key order.
    void check_keys(std::initializer_list<std::string_view> allowed) const;
    void check_keys(std::span<const std::string_view> allowed) const;
    void check_keys(std::span<const std::string> allowed) const;

    // ---- this node's value
    const std::string& as_string() const;
    bool as_bool() const;
    std::int64_t as_int(std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                        std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
    std::uint64_t as_uint(std::uint64_t min = 0,
                          std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    // Any JSON number (integers included).
    double as_number(double min = -std::numeric_limits<double>::max(),
                     double max = std::numeric_limits<double>::max()) const;
    // A size string (see units.hpp) or a non-negative JSON integer (bytes).
    std::uint64_t as_size(std::uint64_t min = 0,
                          std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    // A time string (a unit is required; JSON numbers are rejected).
    engine::Time as_time(engine::Time min = engine::Time::zero(),
                         engine::Time max = engine::Time::max()) const;
    // A frequency string (a unit is required).
    std::uint64_t as_frequency(std::uint64_t min = 0,
                               std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    // A bandwidth string (a unit is required): bytes per second.
    std::uint64_t as_bandwidth(std::uint64_t min = 0,
                               std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    // One of the listed strings; otherwise
    //   expected one of "write", "read", got "wrte" (did you mean "write"?)
    std::string as_enum(std::initializer_list<std::string_view> choices) const;
    std::string as_enum(std::span<const std::string_view> choices) const;
    std::string as_enum(std::span<const std::string> choices) const;
    // One of the listed strings, mapped to a value: as_enum_mapped<Lock>({{"write", Lock::W}, ...}).
    template <class T>
    T as_enum_mapped(std::initializer_list<std::pair<std::string_view, T>> choices) const;

    // ---- required members
    const std::string& get_string(std::string_view key) const { return (*this)[key].as_string(); }
    bool get_bool(std::string_view key) const { return (*this)[key].as_bool(); }
    std::int64_t get_int(std::string_view key,
                         std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
        return (*this)[key].as_int(min, max);
    }
    std::uint64_t get_uint(std::string_view key, std::uint64_t min = 0,
                           std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
        return (*this)[key].as_uint(min, max);
    }
    double get_number(std::string_view key, double min = -std::numeric_limits<double>::max(),
                      double max = std::numeric_limits<double>::max()) const {
        return (*this)[key].as_number(min, max);
    }
    std::uint64_t get_size(std::string_view key, std::uint64_t min = 0,
                           std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
        return (*this)[key].as_size(min, max);
    }
    engine::Time get_time(std::string_view key, engine::Time min = engine::Time::zero(),
                          engine::Time max = engine::Time::max()) const {
        return (*this)[key].as_time(min, max);
    }
    std::uint64_t get_frequency(std::string_view key, std::uint64_t min = 0,
                                std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
        return (*this)[key].as_frequency(min, max);
    }
    std::uint64_t get_bandwidth(std::string_view key, std::uint64_t min = 0,
                                std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const {
        return (*this)[key].as_bandwidth(min, max);
    }
    std::string get_enum(std::string_view key, std::initializer_list<std::string_view> choices) const {
        return (*this)[key].as_enum(choices);
    }
    std::string get_enum(std::string_view key, std::span<const std::string> choices) const {
        return (*this)[key].as_enum(choices);
    }
    template <class T>
    T get_enum_mapped(std::string_view key,
                      std::initializer_list<std::pair<std::string_view, T>> choices) const {
        return (*this)[key].as_enum_mapped(choices);
    }

    // ---- optional members (default when the key is absent)
    std::string opt_string(std::string_view key, std::string_view def) const;
    bool opt_bool(std::string_view key, bool def) const;
    std::int64_t opt_int(std::string_view key, std::int64_t def,
                         std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
    std::uint64_t opt_uint(std::string_view key, std::uint64_t def, std::uint64_t min = 0,
                           std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    double opt_number(std::string_view key, double def,
                      double min = -std::numeric_limits<double>::max(),
                      double max = std::numeric_limits<double>::max()) const;
    std::uint64_t opt_size(std::string_view key, std::uint64_t def, std::uint64_t min = 0,
                           std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    engine::Time opt_time(std::string_view key, engine::Time def,
                          engine::Time min = engine::Time::zero(),
                          engine::Time max = engine::Time::max()) const;
    std::uint64_t opt_frequency(std::string_view key, std::uint64_t def, std::uint64_t min = 0,
                                std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) const;
    std::string opt_enum(std::string_view key, std::string_view def,
                         std::initializer_list<std::string_view> choices) const;
    std::string opt_enum(std::string_view key, std::string_view def,
                         std::span<const std::string> choices) const;
    template <class T>
    T opt_enum_mapped(std::string_view key, T def,
                      std::initializer_list<std::pair<std::string_view, T>> choices) const {
        const auto m = find(key);
        return m ? m->as_enum_mapped(choices) : def;
    }

    // ---- errors
    // A ScenarioError at this node's pointer.
    ScenarioError error(std::string message) const;
    // A ScenarioError at this node's member `key` (which need not exist).
    ScenarioError error_at(std::string_view key, std::string message) const;
    [[noreturn]] void fail(std::string message) const;
    // "expected WHAT, got VALUE" at this node.
    [[noreturn]] void fail_expected(std::string_view what) const;

private:
    Node(const nlohmann::json* value, std::shared_ptr<const std::string> file, std::string pointer)
        : value_(value), file_(std::move(file)), pointer_(std::move(pointer)) {}
    const nlohmann::json& require_object() const;
    [[noreturn]] void fail_enum(std::span<const std::string_view> choices) const;

    const nlohmann::json* value_;  // never null
    std::shared_ptr<const std::string> file_;
    std::string pointer_;
};

template <class T>
T Node::as_enum_mapped(std::initializer_list<std::pair<std::string_view, T>> choices) const {
    if (value_->is_string()) {
        const std::string& s = value_->template get_ref<const std::string&>();
        for (const auto& [name, value] : choices)
            if (name == s) return value;
    }
    std::vector<std::string_view> names;
    names.reserve(choices.size());
    for (const auto& c : choices) names.push_back(c.first);
    fail_enum(names);
}

}  // namespace kvmsim::scenario
