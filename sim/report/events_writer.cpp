#include "sim/report/events_writer.hpp"

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace kvmsim::report {

EventsWriter::EventsWriter(const std::string& path) : out_(path, "--events") { out_.write("{\"events\":["); }

void EventsWriter::logged(const engine::LoggedEvent& e) {
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, "%s[%" PRId64 ",%" PRIu32 ",%u]", first_ ? "" : ",", e.time_ps, e.who,
                                static_cast<unsigned>(e.kind));
    first_ = false;
    if (std::fwrite(buf, 1, static_cast<std::size_t>(n), out_.file()) != static_cast<std::size_t>(n))
        throw OutputError("--events " + out_.path() + ": write failed");
}

void EventsWriter::finish(const std::string& scenario, const std::string& variant, std::uint64_t seed,
                          const std::string& fingerprint, const std::vector<std::string>& processes) {
    // The same bytes as nlohmann::json's dump() of the whole document (its keys sort this way).
    out_.write("],\"fingerprint\":" + nlohmann::json(fingerprint).dump() +
               ",\"processes\":" + nlohmann::json(processes).dump() + ",\"scenario\":" + nlohmann::json(scenario).dump() +
               ",\"seed\":" + std::to_string(seed) + ",\"variant\":" + nlohmann::json(variant).dump() + "}\n");
    out_.commit();
}

}  // namespace kvmsim::report
