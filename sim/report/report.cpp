#include "sim/report/report.hpp"

#include "sim/report/output_file.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace kvmsim::report {

namespace {
double ns(std::uint64_t ps) { return static_cast<double>(ps) / 1e3; }

nlohmann::ordered_json lock_json(const runner::LockResult& l) {
    nlohmann::ordered_json j;
    j["lock"] = l.lock;
    j["mode"] = l.mode;
    j["site"] = l.site;
    j["acquisitions"] = l.acquisitions;
    j["contended"] = l.contended;
    j["wait_ns"] = {{"sum", l.wait_ps.sum_double() / 1e3},
                    {"p50", ns(l.wait_ps.percentile(0.5))},
                    {"p99", ns(l.wait_ps.percentile(0.99))},
                    {"max", ns(l.wait_ps.max())}};
    j["hold_ns"] = {{"sum", l.hold_ps.sum_double() / 1e3}, {"max", ns(l.hold_ps.max())}};
    return j;
}

nlohmann::ordered_json line_json(const runner::LineResult& l) {
    nlohmann::ordered_json j;
    j["name"] = l.name;
    j["operations"] = l.operations;
    j["contended"] = l.contended;
    j["wait_ns"] = {{"sum", l.wait_ps.sum_double() / 1e3},
                    {"p50", ns(l.wait_ps.percentile(0.5))},
                    {"p99", ns(l.wait_ps.percentile(0.99))},
                    {"max", ns(l.wait_ps.max())}};
    return j;
}

nlohmann::ordered_json bandwidth_json(const runner::BandwidthResult& b) {
    nlohmann::ordered_json j;
    j["name"] = b.name;
    j["bytes"] = b.bytes;
    j["transfers"] = b.transfers;
    j["busy_ns"] = b.busy.to_ns();
    j["peak_concurrency"] = b.peak_concurrency;
    return j;
}

nlohmann::ordered_json fault_latency_json(const engine::FineHistogram& h) {
    return {{"count", h.count()},
            {"sum", h.sum_double() / 1e3},
            {"p50", ns(h.percentile(0.5))},
            {"p99", ns(h.percentile(0.99))},
            {"max", ns(h.max())}};
}

template <class T, class F>
nlohmann::ordered_json array_of(const std::vector<T>& v, F f) {
    nlohmann::ordered_json a = nlohmann::ordered_json::array();
    for (const auto& x : v) a.push_back(f(x));
    return a;
}

nlohmann::ordered_json caches_json(const std::vector<std::string>& levels, const engine::CacheCounters& c) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < levels.size(); ++i) {
        const auto& l = i < c.levels.size() ? c.levels[i] : engine::CacheLevelCounters{};
        j[levels[i]] = {{"accesses", l.accesses}, {"misses", l.misses}};
    }
    j["coherence_misses"] = c.coherence_misses;
    j["invalidations"] = c.invalidations;
    j["memory_accesses"] = c.memory_accesses;
    return j;
}
nlohmann::ordered_json recorded_figures_json(const scenario::RecordedFigures& f) {
    nlohmann::ordered_json j;
    if (!f.name.empty()) j["name"] = f.name;
    j["faults"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : f.faults) j["faults"][k] = v;
    j["latency_ns"] = {{"count", f.latency_count},
                       {"p50", f.latency_p50_ns},
                       {"p99", f.latency_p99_ns},
                       {"max", f.latency_max_ns}};
    return j;
}

// The scenario's "recorded" block as the result carries it (beside the simulated figures).
nlohmann::ordered_json recorded_json(const scenario::Recorded& rec) {
    nlohmann::ordered_json j;
    j["source"] = rec.source;
    j["format"] = rec.format;
    j["phases"] = nlohmann::ordered_json::array();
    for (const auto& f : rec.phases) j["phases"].push_back(recorded_figures_json(f));
    j["whole"] = recorded_figures_json(rec.whole);
    return j;
}

std::string pretty_ns(double v);

// The recorded trace's figures beside the run's, per phase and for the whole run.
void print_recorded(std::ostream& os, const runner::Result& r) {
    const scenario::Recorded& rec = *r.recorded;
    os << "\nFault latency, recorded (" << rec.format << " trace " << rec.source << ") and simulated:\n";
    os << "  " << std::left << std::setw(24) << "phase" << std::right << std::setw(10) << "faults" << std::setw(10)
       << "(sim)" << std::setw(11) << "p50" << std::setw(11) << "(sim)" << std::setw(11) << "p99" << std::setw(11)
       << "(sim)" << std::setw(11) << "max" << std::setw(11) << "(sim)" << "\n";
    const auto row = [&os](const std::string& name, const scenario::RecordedFigures& f, const engine::FineHistogram& h) {
        os << "  " << std::left << std::setw(24) << name << std::right << std::setw(10) << f.latency_count
           << std::setw(10) << h.count() << std::setw(11) << pretty_ns(f.latency_p50_ns) << std::setw(11)
           << pretty_ns(ns(h.percentile(0.5))) << std::setw(11) << pretty_ns(f.latency_p99_ns) << std::setw(11)
           << pretty_ns(ns(h.percentile(0.99))) << std::setw(11) << pretty_ns(f.latency_max_ns) << std::setw(11)
           << pretty_ns(ns(h.max())) << "\n";
    };
    for (const auto& f : rec.phases) {
        const auto it = std::find_if(r.phases.begin(), r.phases.end(), [&](const auto& p) { return p.name == f.name; });
        if (it != r.phases.end()) row(f.name, f, it->fault_latency_ps);
        else row(f.name + " (not run)", f, engine::FineHistogram{});
    }
    row("(whole run)", rec.whole, r.fault_latency_ps);
    os << "  recorded faults:";
    for (const auto& [k, v] : rec.whole.faults) os << " " << k << " " << v;
    os << "\n  simulated: exits " << r.guest_exits << ", pf_fixed " << (r.stats.count("pf_fixed") ? r.stats.at("pf_fixed") : 0)
       << ", pf_spurious " << (r.stats.count("pf_spurious") ? r.stats.at("pf_spurious") : 0) << "\n";
}

}  // namespace

std::string hex64(std::uint64_t v) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
    return buf;
}

nlohmann::ordered_json to_json(const runner::Result& r) {
    nlohmann::ordered_json j;
    j["result_schema"] = kResultSchemaVersion;
    j["kvmsim_version"] = r.kvmsim_version;
    j["build_id"] = r.build_id;
    j["scenario"] = r.scenario;
    j["file"] = r.file;
    j["scenario_sha256"] = r.scenario_sha256;
    if (!r.resolved_sha256.empty()) j["resolved_sha256"] = r.resolved_sha256;
    j["overrides"] = nlohmann::ordered_json::array();
    for (const auto& [pointer, value] : r.overrides)
        j["overrides"].push_back({pointer, nlohmann::ordered_json::parse(value)});
    j["variant"] = r.variant;
    j["seed"] = r.seed;
    j["seed_used"] = r.seed_used;
    j["model"] = r.model;
    j["preset"] = r.preset;
    j["fingerprint"] = hex64(r.fingerprint);
    j["status"] = r.status;
    if (!r.deadlock.empty()) j["deadlock"] = r.deadlock;
    j["phases"] = nlohmann::ordered_json::array();
    for (const auto& p : r.phases) {
        nlohmann::ordered_json pj;
        pj["name"] = p.name;
        pj["sim_time_ns"] = p.sim_time_ns;
        pj["selftest_metric"] = p.selftest_metric;
        pj["stats"] = p.stats;
        pj["locks"] = nlohmann::ordered_json::array();
        for (const auto& l : p.locks) pj["locks"].push_back(lock_json(l));
        pj["caches"] = caches_json(r.cache_levels, p.caches);
        pj["lines"] = array_of(p.lines, line_json);
        pj["bandwidth"] = array_of(p.bandwidth, bandwidth_json);
        pj["fault_latency_ns"] = fault_latency_json(p.fault_latency_ps);
        j["phases"].push_back(pj);
    }
    j["stats"] = r.stats;
    j["locks"] = nlohmann::ordered_json::array();
    for (const auto& l : r.locks) j["locks"].push_back(lock_json(l));
    j["caches"] = caches_json(r.cache_levels, r.caches);
    j["lines"] = array_of(r.lines, line_json);
    j["bandwidth"] = array_of(r.bandwidth, bandwidth_json);
    j["fault_latency_ns"] = fault_latency_json(r.fault_latency_ps);
    j["events"] = r.events;
    j["guest_accesses"] = r.guest_accesses;
    j["guest_exits"] = r.guest_exits;
    j["sim_time_ns"] = r.sim_time_ns;
    j["wall_time_s"] = r.wall_time_s;
    if (r.recorded) j["recorded"] = recorded_json(*r.recorded);
    // How the run was made: `kvmsim run` of resolved_scenario (its host profile beside it)
    // with this seed on this build gives this result again.
    if (!r.resolved_json.empty()) j["resolved_scenario"] = nlohmann::ordered_json::parse(r.resolved_json);
    if (!r.host_profile_json.empty()) j["resolved_host_profile"] = nlohmann::ordered_json::parse(r.host_profile_json);
    return j;
}

namespace {
std::string seconds(double ns_value) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(9) << ns_value / 1e9 << "s";
    return os.str();
}
std::string pretty_ns(double v) {
    std::ostringstream os;
    os << std::setprecision(4);
    if (v >= 1e9) os << v / 1e9 << "s";
    else if (v >= 1e6) os << v / 1e6 << "ms";
    else if (v >= 1e3) os << v / 1e3 << "us";
    else os << v << "ns";
    return os.str();
}
}  // namespace

std::optional<std::uint64_t> max_fault_latency_cycles(const runner::Result& r) {
    if (r.preset != "nx_huge_pages_perf_test" || r.tsc_hz == 0) return std::nullopt;
    std::uint64_t max_ps = 0;
    for (const auto& p : r.phases)
        if (p.name.rfind("write region ", 0) == 0 && p.fault_latency_ps.count())
            max_ps = std::max(max_ps, p.fault_latency_ps.max());
    const std::uint64_t khz = r.tsc_hz / 1000;
    if (max_ps < (std::uint64_t{1} << 40)) return max_ps * khz / 1000000000;  // exact below ~1.1 s
    return static_cast<std::uint64_t>(static_cast<double>(max_ps) * static_cast<double>(khz) / 1e9);
}

std::optional<DemandPagingRates> demand_paging_rates(const runner::Result& r) {
    if (r.preset != "demand_paging_test" || r.vcpus == 0) return std::nullopt;
    for (const auto& p : r.phases)
        if (p.name == "Demand paging" && p.sim_time_ns > 0) {
            DemandPagingRates d;
            const double pages = static_cast<double>(r.guest_accesses / r.vcpus);  // memstress_args.vcpu_args[0].pages
            d.per_vcpu = pages / (p.sim_time_ns / 1e9);
            d.overall = d.per_vcpu * r.vcpus;
            return d;
        }
    return std::nullopt;
}

void print_summary(std::ostream& os, const runner::Result& r) {
    os << r.scenario;
    if (!r.variant.empty()) os << " [" << r.variant << "]";
    os << "  model " << r.model << ", seed " << r.seed << "\n";
    if (r.status == "stopped")
        os << "STATUS: stopped at " << engine::Time::ps(static_cast<std::int64_t>(r.sim_time_ns * 1000.0)).str()
           << " (--until): phases still running are not listed\n";
    else if (r.status != "completed")
        os << "STATUS: " << r.status << "\n" << r.deadlock << "\n";
    os << "\nPhases";
    if (!r.preset.empty()) os << " (" << r.preset << ")";
    os << ":\n";
    for (const auto& p : r.phases) {
        if (p.selftest_metric)
            os << "  " << p.name << ": total execution time: " << seconds(p.sim_time_ns) << "\n";
        else
            os << "  (" << p.name << ": " << seconds(p.sim_time_ns) << ")\n";
    }
    if (const auto cycles = max_fault_latency_cycles(r)) os << "  Max fault latency: " << *cycles << " cycles\n";
    if (const auto d = demand_paging_rates(r)) {
        std::ostringstream l;
        l << std::fixed << std::setprecision(6) << "  Per-vcpu demand paging rate:\t" << d->per_vcpu
          << " pgs/sec/vcpu\n  Overall demand paging rate:\t" << d->overall << " pgs/sec\n";
        os << l.str();
    }
    os << "\nKVM stats:\n";
    for (const auto& [k, v] : r.stats)
        if (v) os << "  " << std::left << std::setw(44) << k << v << "\n";
    os << "\nmmu_lock contention (whole run):\n";
    os << "  " << std::left << std::setw(10) << "mode" << std::setw(34) << "site" << std::right << std::setw(12)
       << "acquired" << std::setw(11) << "contended" << std::setw(11) << "wait p50" << std::setw(11) << "wait p99"
       << std::setw(12) << "wait total" << std::setw(12) << "hold total" << "\n";
    for (const auto& l : r.locks) {
        if (l.lock != "mmu_lock") continue;
        const double pct = l.acquisitions ? 100.0 * static_cast<double>(l.contended) / static_cast<double>(l.acquisitions) : 0;
        std::ostringstream c;
        c << std::fixed << std::setprecision(1) << pct << "%";
        os << "  " << std::left << std::setw(10) << l.mode << std::setw(34) << l.site << std::right << std::setw(12)
           << l.acquisitions << std::setw(11) << c.str() << std::setw(11) << pretty_ns(ns(l.wait_ps.percentile(0.5)))
           << std::setw(11) << pretty_ns(ns(l.wait_ps.percentile(0.99))) << std::setw(12)
           << pretty_ns(l.wait_ps.sum_double() / 1e3) << std::setw(12) << pretty_ns(l.hold_ps.sum_double() / 1e3)
           << "\n";
    }
    bool other = false;
    for (const auto& l : r.locks) other = other || l.lock != "mmu_lock";
    if (other) {
        os << "other locks:\n";
        for (const auto& l : r.locks)
            if (l.lock != "mmu_lock")
                os << "  " << l.lock << " " << l.mode << " @" << l.site << ": " << l.acquisitions << " acquired, "
                   << l.contended << " contended, wait total " << pretty_ns(l.wait_ps.sum_double() / 1e3) << "\n";
    }
    os << "\nCache misses (whole run):\n";
    for (std::size_t i = 0; i < r.cache_levels.size(); ++i) {
        const auto& l = i < r.caches.levels.size() ? r.caches.levels[i] : engine::CacheLevelCounters{};
        os << "  " << std::left << std::setw(6) << r.cache_levels[i] << std::right << std::setw(14) << l.misses
           << " misses of " << l.accesses << "\n";
    }
    os << "  coherence misses " << r.caches.coherence_misses << ", invalidations " << r.caches.invalidations << "\n";
    if (!r.lines.empty()) {
        os << "\nContended cache lines (whole run):\n";
        os << "  " << std::left << std::setw(32) << "class" << std::right << std::setw(14) << "operations"
           << std::setw(11) << "contended" << std::setw(11) << "wait p50" << std::setw(11) << "wait p99"
           << std::setw(12) << "wait total" << "\n";
        for (const auto& l : r.lines) {
            const double pct = l.operations ? 100.0 * static_cast<double>(l.contended) / static_cast<double>(l.operations) : 0;
            std::ostringstream c;
            c << std::fixed << std::setprecision(1) << pct << "%";
            os << "  " << std::left << std::setw(32) << l.name << std::right << std::setw(14) << l.operations
               << std::setw(11) << c.str() << std::setw(11) << pretty_ns(ns(l.wait_ps.percentile(0.5)))
               << std::setw(11) << pretty_ns(ns(l.wait_ps.percentile(0.99))) << std::setw(12)
               << pretty_ns(l.wait_ps.sum_double() / 1e3) << "\n";
        }
    }
    if (!r.bandwidth.empty()) {
        os << "\nBandwidth (whole run):\n";
        os << "  " << std::left << std::setw(32) << "resource" << std::right << std::setw(16) << "bytes"
           << std::setw(12) << "transfers" << std::setw(12) << "busy" << std::setw(10) << "peak" << "\n";
        for (const auto& b : r.bandwidth)
            os << "  " << std::left << std::setw(32) << b.name << std::right << std::setw(16) << b.bytes
               << std::setw(12) << b.transfers << std::setw(12) << pretty_ns(b.busy.to_ns()) << std::setw(10)
               << b.peak_concurrency << "\n";
    }
    if (r.recorded) print_recorded(os, r);
    if (r.fault_latency_ps.count() && !r.recorded) {
        os << "\nFault latency (exit to return to the guest):\n";
        os << "  " << std::left << std::setw(32) << "phase" << std::right << std::setw(14) << "faults"
           << std::setw(11) << "p50" << std::setw(11) << "p99" << std::setw(11) << "max" << "\n";
        const auto row = [&os](const std::string& name, const engine::FineHistogram& h) {
            os << "  " << std::left << std::setw(32) << name << std::right << std::setw(14) << h.count()
               << std::setw(11) << pretty_ns(ns(h.percentile(0.5))) << std::setw(11)
               << pretty_ns(ns(h.percentile(0.99))) << std::setw(11) << pretty_ns(ns(h.max())) << "\n";
        };
        for (const auto& p : r.phases)
            if (p.fault_latency_ps.count()) row(p.name, p.fault_latency_ps);
        row("(whole run)", r.fault_latency_ps);
    }
    os << "\nguest accesses " << r.guest_accesses << ", exits " << r.guest_exits << ", events " << r.events
       << ", simulated " << seconds(r.sim_time_ns) << ", wall " << std::setprecision(3) << r.wall_time_s << "s\n";
    os << "fingerprint " << hex64(r.fingerprint) << "\n";
}

void write_file_atomic(const std::string& path, const std::string& text) { write_output_file(path, text, "output"); }

}  // namespace kvmsim::report
