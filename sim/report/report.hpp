// Result documents: the schema-versioned JSON (scenarios/schema/result.schema.json) and the
// human summary printed by `kvmsim run`.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>

#include "sim/runner/runner.hpp"

namespace kvmsim::report {

inline constexpr int kResultSchemaVersion = 1;

nlohmann::ordered_json to_json(const runner::Result& r);
void print_summary(std::ostream& os, const runner::Result& r);
// Writes to a temporary file beside `path`, then renames it: a reader never sees half a file.
void write_file_atomic(const std::string& path, const std::string& text);
std::string hex64(std::uint64_t v);

}  // namespace kvmsim::report
