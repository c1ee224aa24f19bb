// Reading an input file (a scenario, a host profile, a result or events document) without
// trusting what is at the path: only a regular file is read (a FIFO would block, a device such
// as /dev/zero would never end), and only up to kMaxInputFileBytes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace kvmsim::scenario {

// Larger files are refused before reading: the largest document kvmsim writes is an events
// log of a long run; a scenario is a few KiB.
inline constexpr std::uint64_t kMaxInputFileBytes = std::uint64_t{64} << 20;

// The file's bytes. A path that is not a regular file (directory, FIFO, socket, device), a file
// larger than kMaxInputFileBytes, or one that cannot be opened or read, is a
// ScenarioError::file_error naming the path and what was expected. `what` names the kind of
// file in messages ("a scenario file", "a host profile").
std::string read_input_file(const std::string& path, const std::string& what = "a scenario file");

// What a stat() mode that is not a regular file is, for messages ("a directory", "a FIFO", ...).
const char* describe_file_type(mode_t m);

}  // namespace kvmsim::scenario
