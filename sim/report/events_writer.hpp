// `kvmsim run --events OUT`: every processed event streamed to OUT's temporary file as the run
// goes (output_file.hpp), so a long run's log never sits in memory. The document is the one
// `kvmsim diff` reads, keys in sorted order:
//   {"events":[[time_ps,who,kind],...],"fingerprint":"...","processes":[...],"scenario":"...",
//    "seed":N,"variant":"..."}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/engine/trace.hpp"
#include "sim/report/output_file.hpp"

namespace kvmsim::report {

class EventsWriter : public engine::EventLog {
public:
    // OutputError when the path cannot be an output: before the run.
    explicit EventsWriter(const std::string& path);
    void logged(const engine::LoggedEvent& e) override;
    // Ends the document and renames it into place.
    void finish(const std::string& scenario, const std::string& variant, std::uint64_t seed,
                const std::string& fingerprint, const std::vector<std::string>& processes);

private:
    OutputFile out_;
    bool first_ = true;
};

}  // namespace kvmsim::report
