#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>

#include "models/registry.hpp"
#include "sim/report/compare.hpp"
#include "sim/report/report.hpp"
#include "sim/scenario/loader.hpp"

using namespace kvmsim;
using report::MetricValue;

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

namespace {
std::vector<std::vector<std::vector<MetricValue>>> values(const std::vector<std::vector<double>>& per_variant) {
    std::vector<std::vector<std::vector<MetricValue>>> out;
    for (const auto& xs : per_variant) {
        auto& v = out.emplace_back();
        for (double x : xs) v.push_back({{"phase KVM_CREATE_MAPPINGS", "ns", x}});
    }
    return out;
}
}  // namespace

TEST_CASE("Student t quantiles are Boost.Math's, not a table's", "[report][compare]") {
    // t_{0.975,df} (two-sided 95%), to the printed digits of the usual tables and beyond: the old
    // step table gave 1.960 from df 121 on (1000: 1.9623) and 2.000 for df 41..60 (41: 2.0195).
    const std::pair<std::size_t, double> known[] = {
        {1, 12.706204736174694}, {2, 4.302652729749462},   {3, 3.1824463052837078},
        {4, 2.7764451051977934}, {5, 2.5705818356363146},  {9, 2.262157162798205},
        {10, 2.228138851986274}, {30, 2.0422724563012378}, {100, 1.9839715185235518},
        {1000, 1.9623390808264083}};
    for (const auto& [df, t] : known) {
        INFO("df " << df);
        CHECK(report::t95(df) == Approx(t).epsilon(1e-12));
    }
    CHECK(report::t95(1) == Approx(12.706).margin(5e-4));
    CHECK(report::t95(4) == Approx(2.776).margin(5e-4));
    CHECK(report::t95(41) == Approx(2.0195410).epsilon(1e-6));
    // Decreasing towards the normal quantile 1.959964.
    for (std::size_t df = 1; df < 200; ++df) CHECK(report::t95(df + 1) < report::t95(df));
    CHECK(report::t95(1'000'000) == Approx(1.959966).epsilon(1e-6));
}

TEST_CASE("paired differences give the interval and the verdict", "[report][compare]") {
    // Differences per seed: -2, -3, -1 -> mean -2, sd 1, t(2) = 4.3027: [-4.484, 0.484].
    const auto c = report::compare_values("s", {"KVM_CREATE_MAPPINGS"}, {"before", "after"}, {1, 2, 3},
                                          values({{10e9, 12e9, 14e9}, {8e9, 9e9, 13e9}}));
    REQUIRE(c.metrics.size() == 1);
    const auto& after = c.metrics[0].variants[1];
    CHECK(c.metrics[0].variants[0].mean == Approx(12e9));
    CHECK(c.metrics[0].variants[0].stdev == Approx(2e9));
    CHECK(after.mean == Approx(10e9));
    REQUIRE(after.change_pct);
    CHECK(*after.change_pct == Approx(-16.6667).epsilon(1e-4));
    REQUIRE(after.ci95);
    CHECK(after.ci95->first == Approx(-2e9 - 4.302652729749462e9 / std::sqrt(3.0)));
    CHECK(after.ci95->second == Approx(-2e9 + 4.302652729749462e9 / std::sqrt(3.0)));
    CHECK_FALSE(after.significant);
    // Consistent differences: significant.
    const auto d = report::compare_values("s", {}, {"before", "after"}, {1, 2, 3},
                                          values({{10e9, 12e9, 14e9}, {9e9, 11e9, 13.1e9}}));
    CHECK(d.metrics[0].variants[1].significant);
    // One seed: no interval.
    const auto one = report::compare_values("s", {}, {"a", "b"}, {1}, values({{10}, {5}}));
    CHECK_FALSE(one.metrics[0].variants[1].ci95);
    CHECK_FALSE(one.metrics[0].variants[1].significant);
}

TEST_CASE("the table prints the selftest's own lines and the JSON has the documented shape", "[report][compare]") {
    const auto c = report::compare_values("s", {"KVM_CREATE_MAPPINGS"}, {"before", "after"}, {1, 2},
                                          values({{1.23e9, 1.23e9}, {0.98e9, 0.98e9}}));
    std::ostringstream os;
    report::print_compare(os, c);
    // The selftest's line says "faster" in words (the seeds' +20.33%), the table the change of
    // the mean (-20.33%), and both name the variants.
    CHECK_THAT(os.str(), Catch::Contains("KVM_CREATE_MAPPINGS: before 1.23s -> after 0.98s, faster by 20.33%\n"));
    CHECK_THAT(os.str(), Catch::Contains("after against before (baseline), 2 seeds:"));
    CHECK_THAT(os.str(), Catch::Contains("95% CI of after - before"));
    CHECK_THAT(os.str(), Catch::Contains("1.230s") && Catch::Contains("980.0ms") && Catch::Contains("-20.33%"));
    const auto j = report::to_json(c);
    REQUIRE(j["metrics"].size() == 1);
    const auto& m = j["metrics"][0];
    CHECK(m["name"] == "phase KVM_CREATE_MAPPINGS");
    CHECK(m["unit"] == "ns");
    CHECK(m["variants"]["before"]["mean"].get<double>() == Approx(1.23e9));
    CHECK(m["variants"]["after"]["stdev"].get<double>() == Approx(0));
    CHECK(m["change_pct"].get<double>() == Approx(-20.3252).epsilon(1e-4));
    CHECK(m["ci95"].size() == 2);
    CHECK(m["significant"] == true);
}

TEST_CASE("metrics come out the same from a run and from its saved JSON", "[report][compare]") {
    nlohmann::json r = {
        {"result_schema", 1},
        {"phases", {{{"name", "boot"}, {"sim_time_ns", 100.0}}}},
        {"stats", {{"pf_fixed", 7}}},
        {"locks", {{{"lock", "mmu_lock"}, {"mode", "read"}, {"site", "f"}, {"wait_ns", {{"sum", 3.0}}}, {"hold_ns", {{"sum", 4.0}}}}}},
        {"caches", {{"L1d", {{"accesses", 10}, {"misses", 2}}}, {"coherence_misses", 1}}}};
    const auto m = report::metrics_of(r);
    std::map<std::string, double> by;
    for (const auto& v : m) by[v.name] = v.value;
    CHECK(by.at("phase boot") == 100);
    CHECK(by.at("stat pf_fixed") == 7);
    CHECK(by.at("lock mmu_lock read @f wait") == 3);
    CHECK(by.at("lock mmu_lock read @f hold") == 4);
    CHECK(by.at("cache L1d misses") == 2);
    CHECK(by.at("cache coherence misses") == 1);
}

TEST_CASE("metrics of a result document keep its cache-level order when parsed ordered", "[report][compare]") {
    const std::string text = R"({"caches": {"LLC": {"misses": 1}, "L1d": {"misses": 2}, "coherence_misses": 0}})";
    std::vector<std::string> ordered, sorted;
    for (const auto& m : report::metrics_of(nlohmann::ordered_json::parse(text))) ordered.push_back(m.name);
    for (const auto& m : report::metrics_of(nlohmann::json::parse(text))) sorted.push_back(m.name);
    CHECK(ordered == std::vector<std::string>{"cache LLC misses", "cache L1d misses", "cache coherence misses"});
    CHECK(sorted == std::vector<std::string>{"cache L1d misses", "cache LLC misses", "cache coherence misses"});
}

TEST_CASE("contended lines and bandwidth: in the document, its metrics and the summary", "[report][compare]") {
    runner::Result r;
    r.scenario = "s";
    r.status = "completed";
    runner::LineResult line{"struct_page_refcount", 4, 3, {}};
    for (std::uint64_t w : {60'000, 120'000, 180'000}) line.wait_ps.record(w);
    const runner::BandwidthResult bw{"memory_bandwidth", 4'000'000, 3, engine::Time::ms(4), 2};
    runner::PhaseStats p;
    p.name = "boot";
    p.lines = {line};
    p.bandwidth = {bw};
    r.phases = {p};
    r.lines = {line};
    r.bandwidth = {bw};
    const auto j = report::to_json(r);
    REQUIRE(j["lines"].size() == 1);
    CHECK(j["lines"][0]["name"] == "struct_page_refcount");
    CHECK(j["lines"][0]["operations"] == 4);
    CHECK(j["lines"][0]["contended"] == 3);
    CHECK(j["lines"][0]["wait_ns"]["sum"].get<double>() == 360.0);
    CHECK(j["lines"][0]["wait_ns"]["max"].get<double>() == 180.0);
    CHECK(j["bandwidth"][0] == nlohmann::ordered_json({{"name", "memory_bandwidth"}, {"bytes", 4'000'000},
                                                       {"transfers", 3}, {"busy_ns", 4e6}, {"peak_concurrency", 2}}));
    CHECK(j["phases"][0]["lines"] == j["lines"]);
    CHECK(j["phases"][0]["bandwidth"] == j["bandwidth"]);
    // The same metrics from the run and from its document.
    std::vector<std::pair<std::string, double>> from_run, from_doc;
    for (const auto& m : report::metrics_of(r)) from_run.emplace_back(m.name, m.value);
    for (const auto& m : report::metrics_of(j)) from_doc.emplace_back(m.name, m.value);
    CHECK(from_run == from_doc);
    std::map<std::string, double> by(from_run.begin(), from_run.end());
    CHECK(by.at("line struct_page_refcount wait") == 360.0);
    CHECK(by.at("bandwidth memory_bandwidth busy") == 4e6);
    std::ostringstream os;
    report::print_summary(os, r);
    CHECK_THAT(os.str(), Catch::Contains("Contended cache lines (whole run):") &&
                             Catch::Contains("struct_page_refcount") && Catch::Contains("75.0%") &&
                             Catch::Contains("Bandwidth (whole run):") && Catch::Contains("4000000"));
    // Without any, the summary says nothing of them.
    r.lines.clear();
    r.bandwidth.clear();
    std::ostringstream quiet;
    report::print_summary(quiet, r);
    CHECK_THAT(quiet.str(), !Catch::Contains("Contended") && !Catch::Contains("Bandwidth"));
}

TEST_CASE("fault latency: in the document, its metrics and the summary", "[report][compare]") {
    runner::Result r;
    r.scenario = "s";
    r.status = "completed";
    runner::PhaseStats boot, idle;
    boot.name = "boot";
    idle.name = "idle";
    for (std::uint64_t ps : {1'000'000, 2'000'000, 3'000'000, 250'000'000}) boot.fault_latency_ps.record(ps);
    r.phases = {boot, idle};
    r.fault_latency_ps = boot.fault_latency_ps;
    const auto j = report::to_json(r);
    // Nearest rank 2 of 4 is 2 us, in bucket [1998848, 2015231]: its midpoint, 2007039 ps.
    const nlohmann::ordered_json boot_ns = {
        {"count", 4}, {"sum", 256'000.0}, {"p50", 2007.039}, {"p99", 250'000.0}, {"max", 250'000.0}};
    CHECK(j["phases"][0]["fault_latency_ns"] == boot_ns);
    CHECK(j["phases"][1]["fault_latency_ns"] ==
          nlohmann::ordered_json({{"count", 0}, {"sum", 0.0}, {"p50", 0.0}, {"p99", 0.0}, {"max", 0.0}}));
    CHECK(j["fault_latency_ns"] == boot_ns);
    // The same metrics from the run and from its document, the whole run's p50, p99 and max.
    std::vector<std::pair<std::string, double>> from_run, from_doc;
    for (const auto& m : report::metrics_of(r)) from_run.emplace_back(m.name, m.value);
    for (const auto& m : report::metrics_of(j)) from_doc.emplace_back(m.name, m.value);
    CHECK(from_run == from_doc);
    std::map<std::string, double> by(from_run.begin(), from_run.end());
    CHECK(by.at("fault latency p50") == 2007.039);
    CHECK(by.at("fault latency p99") == 250'000.0);
    CHECK(by.at("fault latency max") == 250'000.0);
    // A document written before latencies were reported has none of these metrics.
    nlohmann::json old = j;
    old.erase("fault_latency_ns");
    for (const auto& m : report::metrics_of(old)) CHECK(m.name.rfind("fault latency", 0) == std::string::npos);
    // compare shows a change of p99 and max between variants.
    runner::Result after = r;
    after.fault_latency_ps = engine::FineHistogram{};
    for (std::uint64_t ps : {1'000'000, 2'000'000, 3'000'000, 125'000'000}) after.fault_latency_ps.record(ps);
    const auto c = report::compare({"before", "after"}, {1}, {{r}, {after}});
    std::ostringstream table;
    report::print_compare(table, c);
    CHECK_THAT(table.str(), Catch::Contains("fault latency max") && Catch::Contains("250.0us") &&
                                Catch::Contains("125.0us") && Catch::Contains("-50.00%"));
    // The summary: a row per phase with faults, and the run's.
    std::ostringstream os;
    report::print_summary(os, r);
    CHECK_THAT(os.str(), Catch::Contains("Fault latency (exit to return to the guest):") &&
                             Catch::Matches("(.|\n)*boot +4 +2.007us +250us +250us\n(.|\n)*") &&
                             Catch::Contains("(whole run)") && !Catch::Matches("(.|\n)*idle +0(.|\n)*"));
    // Without faults, the summary says nothing of them.
    r.fault_latency_ps = engine::FineHistogram{};
    std::ostringstream quiet;
    report::print_summary(quiet, r);
    CHECK_THAT(quiet.str(), !Catch::Contains("Fault latency"));
}

namespace {
runner::Result run_text(const std::string& text) {
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.host_dirs = {std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts"};
    return runner::run(scenario::load_scenario_text(text, "fault-latency.json", o));
}
}  // namespace

TEST_CASE("fault latency of a run: one vCPU's faults fill its phase's time but for its accesses",
          "[report][compare][fault_latency]") {
    // One vCPU alone, so nothing runs between its accesses and its faults: a stage lasts exactly
    // accesses x guest_time plus the sum of its fault latencies, for every model.
    for (const auto& [model, host] : {std::pair{"x86_tdp", "x86-server"}, std::pair{"x86_shadow", "x86-server"},
                                      std::pair{"arm64_stage2", "kunpeng-920"}}) {
        INFO(model);
        const std::string text = std::string(R"({"name": "one vcpu", "host": {"profile": ")") + host +
                                 R"("}, "vm": {"vcpus": 1, "memslots": [{"id": 1, "base": "4G", "size": "8M",
            "backing": "anonymous"}]}, "mmu": {"model": ")" + model + R"("}, "workload": {"phases": [
            {"name": "write", "stream": {"slot": 1, "stride": "4K", "access": "write", "guest_time": "7ns"}}]}})";
        const auto r = run_text(text);
        REQUIRE(r.status == "completed");
        REQUIRE(r.phases.size() == 1);
        const auto& f = r.phases[0].fault_latency_ps;
        CHECK(f.count() == r.guest_exits);
        CHECK(f.count() >= 2048);  // every 4K page of the 8M slot faults at least once
        CHECK(r.guest_accesses == 2048);
        const auto phase_ps = static_cast<std::uint64_t>(std::llround(r.phases[0].sim_time_ns * 1e3));
        CHECK(f.sum() + r.guest_accesses * 7'000 == phase_ps);
        CHECK(f.min() > 0);
        CHECK(f.min() <= f.percentile(0.5));
        CHECK(f.percentile(0.5) <= f.percentile(0.99));
        CHECK(f.percentile(0.99) <= f.max());
        // The whole run is the phase's.
        CHECK(r.fault_latency_ps.count() == f.count());
        CHECK(r.fault_latency_ps.sum() == f.sum());
        CHECK(r.fault_latency_ps.max() == f.max());
    }
}
