// `--set PATH=VALUE` on the command line: the same overrides as the Python API's (a scenario
// path such as "mmu.knobs.zap_lock" or "workload.flags.v", or a JSON pointer), applied after
// the variant by the loader (LoadOptions::overrides), so a bad value is reported at its pointer.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kvmsim::cli {

struct OverrideError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// "vm.memslots.0.size" -> "/vm/memslots/0/size"; a string starting with "/" is a pointer already.
std::string path_to_pointer(const std::string& path);

// "workload.flags.v=8" -> ("/workload/flags/v", 8). VALUE is JSON when it parses as JSON (8,
// true, "x", [1,2], null deletes), else a string (read, 1G).
std::pair<std::string, nlohmann::json> parse_set(const std::string& arg);

}  // namespace kvmsim::cli
