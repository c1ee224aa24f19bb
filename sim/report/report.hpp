// Result documents: the schema-versioned JSON (scenarios/schema/result.schema.json) and the
// human summary printed by `kvmsim run`.
#pragma once

#include <optional>

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

// nx_huge_pages_perf_test's "Max fault latency: N cycles": the largest fault latency of its write
// stages at the host's tsc_frequency; nothing for another preset or a host without the frequency.
std::optional<std::uint64_t> max_fault_latency_cycles(const runner::Result& r);

// demand_paging_test's "Per-vcpu demand paging rate" (pgs/sec/vcpu) and "Overall demand paging
// rate" (pgs/sec): each vCPU's pages over the "Demand paging" stage's time, and that times the
// vCPUs; nothing for another preset or a run that did not finish the stage.
struct DemandPagingRates {
    double per_vcpu = 0, overall = 0;
};
std::optional<DemandPagingRates> demand_paging_rates(const runner::Result& r);

}  // namespace kvmsim::report
