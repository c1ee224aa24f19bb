// Options every kvmsim command takes.
#pragma once

#include <string>
#include <vector>

namespace kvmsim::cli {

// Removes every "--host-dir DIR" (repeatable, anywhere after the command) from args and returns
// the DIRs in order: where host profiles are looked up before $KVMSIM_HOSTS and the source
// tree's scenarios/hosts. A scenario names a profile by a bare name only, so these (and the
// Python API's host_dirs=) are the only other places a profile can come from. On a missing or
// empty DIR, *error says so (a usage error).
std::vector<std::string> take_host_dirs(std::vector<std::string>& args, std::string* error);

}  // namespace kvmsim::cli
