#include "sim/cli/options.hpp"

namespace kvmsim::cli {

std::vector<std::string> take_host_dirs(std::vector<std::string>& args, std::string* error) {
    std::vector<std::string> dirs, rest;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] != "--host-dir") {
            rest.push_back(args[i]);
            continue;
        }
        if (i + 1 >= args.size() || args[i + 1].empty()) {
            *error = "--host-dir expects a directory";
            return {};
        }
        dirs.push_back(args[++i]);
    }
    args = std::move(rest);
    return dirs;
}

}  // namespace kvmsim::cli
