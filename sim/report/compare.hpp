// Before/after comparison: every variant of a scenario over the same seeds (common random
// numbers), each metric's mean per variant, its change against the baseline (the first
// variant) and the 95% confidence interval of the paired difference (Student t).
#pragma once

#include <iosfwd>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sim/runner/runner.hpp"

namespace kvmsim::report {

// One number per run: "phase KVM_CREATE_MAPPINGS", "stat pf_fixed", "lock mmu_lock read
// @kvm_tdp_mmu_page_fault wait", "cache LLC misses", "line struct_page_refcount wait" (ns,
// summed), "bandwidth memory_bandwidth busy" (ns), "fault latency p50|p99|max" (ns, whole run).
struct MetricValue {
    std::string name;
    std::string unit;  // "ns" or "count"
    double value = 0;
};
std::vector<MetricValue> metrics_of(const runner::Result& r);
// The same metrics from a saved result document (result.schema.json). Cache levels come in
// the document's key order: sorted for nlohmann::json, as written for ordered_json (which then
// gives exactly the order of metrics_of(Result)).
std::vector<MetricValue> metrics_of(const nlohmann::json& result);
std::vector<MetricValue> metrics_of(const nlohmann::ordered_json& result);

struct Comparison {
    std::string variant;
    double mean = 0, stdev = 0;
    std::optional<double> change_pct;               // against the baseline's mean
    std::optional<std::pair<double, double>> ci95;  // paired difference (variant - baseline)
    bool significant = false;                       // the interval excludes zero
};

struct MetricRow {
    std::string name, unit;
    std::vector<Comparison> variants;  // baseline first
};

struct CompareResult {
    std::string scenario;
    std::string preset;
    std::vector<std::string> variants;
    std::vector<std::uint64_t> seeds;
    std::vector<MetricRow> metrics;
    // The selftest's own printed metrics (phases it reports), by name, in order.
    std::vector<std::string> selftest_metrics;
};

// runs[v][s]: variant v (baseline first) at seeds[s]; every variant has a run per seed.
CompareResult compare(const std::vector<std::string>& variants, const std::vector<std::uint64_t>& seeds,
                      const std::vector<std::vector<runner::Result>>& runs);
// The same from metric lists: values[v][s] for variant v at seeds[s].
CompareResult compare_values(const std::string& scenario, const std::vector<std::string>& selftest_metrics,
                             const std::vector<std::string>& variants, const std::vector<std::uint64_t>& seeds,
                             const std::vector<std::vector<std::vector<MetricValue>>>& values);

// The same from result documents (result.schema.json): docs[v][s] for variant v at seeds[s]; the
// scenario, preset and selftest metrics come from the first.
CompareResult compare_documents(const std::vector<std::string>& variants, const std::vector<std::uint64_t>& seeds,
                                const std::vector<std::vector<nlohmann::json>>& docs);

// Two-sided 95% quantile of Student's t with `df` degrees of freedom (df >= 1).
double t95(std::size_t df);

void print_compare(std::ostream& os, const CompareResult& c);
nlohmann::ordered_json to_json(const CompareResult& c);

}  // namespace kvmsim::report
