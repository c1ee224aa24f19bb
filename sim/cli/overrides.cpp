#include "sim/cli/overrides.hpp"

namespace kvmsim::cli {

std::string path_to_pointer(const std::string& path) {
    if (!path.empty() && path[0] == '/') return path;
    std::string out;
    std::size_t pos = 0;
    while (true) {
        const std::size_t end = std::min(path.find('.', pos), path.size());
        if (end == pos)
            throw OverrideError("--set: expected a scenario path such as workload.flags.v or mmu.knobs.zap_lock "
                                "(keys joined by dots), got \"" + path + "\"");
        out += '/';
        for (std::size_t i = pos; i < end; ++i) {
            if (path[i] == '~') out += "~0";
            else if (path[i] == '/') out += "~1";
            else out += path[i];
        }
        if (end == path.size()) break;
        pos = end + 1;
    }
    return out;
}

std::pair<std::string, nlohmann::json> parse_set(const std::string& arg) {
    const std::size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0)
        throw OverrideError("--set expects PATH=VALUE (e.g. --set workload.flags.v=8), got \"" + arg + "\"");
    const std::string value = arg.substr(eq + 1);
    nlohmann::json v = nlohmann::json::parse(value, nullptr, false);
    if (v.is_discarded()) v = value;
    return {path_to_pointer(arg.substr(0, eq)), std::move(v)};
}

}  // namespace kvmsim::cli
