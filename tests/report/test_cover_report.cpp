// kvmsim report: grouping of result documents by scenario, variant and seed, and what the
// document says (tables, stage lines, SVG, provenance).
#include <catch2/catch.hpp>
#include <sstream>

#include "sim/report/cover_report.hpp"

using namespace kvmsim;
using nlohmann::json;

namespace {
// A result document with one selftest phase of `boot_ns`, pf_fixed faults and an mmu_lock wait.
json result(const std::string& variant, std::uint64_t seed, double boot_ns, std::uint64_t pf_fixed, double wait_ns,
            const std::string& resolved = "r") {
    json lock = {{"lock", "mmu_lock"}, {"mode", "write"}, {"site", "kvm_zap_gfn_range"}, {"acquisitions", 10},
                 {"contended", 2}, {"wait_ns", {{"sum", wait_ns}, {"p50", 1}, {"p99", 2}, {"max", 3}}},
                 {"hold_ns", {{"sum", 100.0}, {"max", 5}}}};
    return {{"result_schema", 1},
            {"kvmsim_version", "0.1.0"},
            {"build_id", std::string(64, 'b')},
            {"scenario", "zap"},
            {"file", "scenarios/seeds/zap.json"},
            {"scenario_sha256", std::string(64, 'a')},
            {"resolved_sha256", resolved + std::string(63, '0')},
            {"variant", variant},
            {"seed", seed},
            {"status", "completed"},
            {"fingerprint", "0123456789abcdef"},
            {"phases", json::array({{{"name", "boot"}, {"sim_time_ns", boot_ns}, {"selftest_metric", true}},
                                    {{"name", "setup"}, {"sim_time_ns", 1000.0}, {"selftest_metric", false}}})},
            {"stats", {{"pf_fixed", pf_fixed}, {"remote_tlb_flush", 7}}},
            {"locks", json::array({lock})},
            {"caches", {{"LLC", {{"accesses", 10}, {"misses", 4}}}, {"coherence_misses", 0}}},
            {"resolved_scenario", {{"name", "zap"}, {"description", "a <zap> & more"}}},
            {"events", 1},
            {"wall_time_s", 0.1}};
}

std::vector<report::ReportInput> inputs() {
    // Given out of order: seeds and variants are matched by their fields, not the order.
    return {{"after-2.json", result("after", 2, 60e6, 900, 10)},  {"before-1.json", result("before", 1, 100e6, 1000, 500)},
            {"after-1.json", result("after", 1, 50e6, 900, 20)},  {"before-2.json", result("before", 2, 110e6, 1000, 600)},
            {"before-3.json", result("before", 3, 105e6, 1000, 550)}};
}
}  // namespace

TEST_CASE("results group by scenario and variant, matched by seed", "[report][cover]") {
    const auto in = inputs();
    const auto groups = report::group_results(in, "before");
    REQUIRE(groups.size() == 1);
    const auto& g = groups[0];
    CHECK(g.variants == std::vector<std::string>{"before", "after"});
    CHECK(g.seeds == std::vector<std::uint64_t>{1, 2});  // seed 3 has no "after" run
    REQUIRE(g.dropped.size() == 1);
    CHECK_THAT(g.dropped[0], Catch::Contains("before-3.json") && Catch::Contains("seed 3"));
    CHECK(g.runs[1][0]->path == "after-1.json");
    // The comparison is compare's: boot 105 ms -> 55 ms, paired differences -50 and -50 ms.
    const auto& rows = g.comparison.metrics;
    const auto boot = std::find_if(rows.begin(), rows.end(), [](const auto& r) { return r.name == "phase boot"; });
    REQUIRE(boot != rows.end());
    CHECK(boot->variants[0].mean == Approx(105e6));
    CHECK(boot->variants[1].mean == Approx(55e6));
    CHECK(*boot->variants[1].change_pct == Approx(-100.0 * 50 / 105));
    // Without --baseline the first variant given is the baseline.
    CHECK(report::group_results(in)[0].variants == std::vector<std::string>{"after", "before"});
}

TEST_CASE("grouping refuses what it cannot compare", "[report][cover]") {
    const std::vector<report::ReportInput> scenario{{"x.json", json{{"name", "a scenario"}}}};
    CHECK_THROWS_WITH(report::group_results(scenario), Catch::Contains("x.json: not a result document"));
    const std::vector<report::ReportInput> apart{{"a.json", result("a", 1, 1, 1, 1)}, {"b.json", result("b", 2, 1, 1, 1)}};
    CHECK_THROWS_WITH(report::group_results(apart), Catch::Contains("no seed has a result of every variant"));
    const auto in = inputs();
    CHECK_THROWS_WITH(report::group_results(in, "middle"), Catch::Contains("--baseline: no variant \"middle\""));
    // The same variant name with another resolved scenario (other overrides) is another column.
    const std::vector<report::ReportInput> two{{"a.json", result("v", 1, 1e6, 1, 1, "x")}, {"b.json", result("v", 1, 2e6, 1, 1, "y")}};
    const auto g = report::group_results(two);
    CHECK(g[0].variants == std::vector<std::string>{"v @x0000000", "v @y0000000"});
}

TEST_CASE("the Markdown report has the stage lines, the changes and provenance", "[report][cover]") {
    const auto in = inputs();  // the groups point into it
    const auto groups = report::group_results(in, "before");
    const std::string md = report::render_report(groups, report::ReportFormat::Markdown, {"9.9.9", "cafe"});
    CHECK_THAT(md, Catch::StartsWith("# kvmsim report: zap\n"));
    CHECK_THAT(md, Catch::Contains("kvmsim 9.9.9 (build_id cafe)"));
    CHECK_THAT(md, Catch::Contains("boot: total execution time: 0.105000000s"));
    CHECK_THAT(md, Catch::Contains("boot: before 105 ms -> after 55 ms, faster by 47.62%"));
    CHECK_THAT(md, Catch::Contains("kvmsim run scenarios/seeds/zap.json --variant after --seed 2 --json after-2.json"));
    // Two seeds: intervals. boot's paired differences are -50 ms twice: [-50 ms, -50 ms], significant.
    CHECK_THAT(md, Catch::Contains("| phase boot | 105 ms | 55 ms | -47.62% [-50 ms, -50 ms] * |"));
    // pf_fixed moved by the same amount at each seed (significant); the lock wait moved too.
    CHECK_THAT(md, Catch::Contains("#### KVM stats (debugfs)"));
    CHECK_THAT(md, Catch::Contains("| stat pf_fixed | 1,000 | 900 | -10.00% [-100, -100] * |"));
    CHECK_THAT(md, Catch::Contains("lock mmu_lock write @kvm_zap_gfn_range wait"));
    // Unchanged counters are not listed.
    CHECK_THAT(md, !Catch::Contains("remote_tlb_flush"));
    CHECK_THAT(md, !Catch::Contains("cache LLC misses"));
    CHECK_THAT(md, Catch::Contains("| scenario_sha256 | " + std::string(64, 'a') + " |"));
    CHECK_THAT(md, Catch::Contains("| build_id | " + std::string(64, 'b') + " |"));
    CHECK_THAT(md, Catch::Contains("| seeds | 1, 2 |"));
    CHECK_THAT(md, Catch::Contains("Left out: before-3.json"));
    CHECK_THAT(md, !Catch::Contains("<svg"));
}

TEST_CASE("the HTML report is one escaped page with an inline SVG plot", "[report][cover]") {
    const auto in = inputs();
    const auto groups = report::group_results(in, "before");
    const std::string html = report::render_report(groups, report::ReportFormat::Html, {"9.9.9", "cafe"});
    CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>"));
    CHECK_THAT(html, Catch::EndsWith("</html>\n"));
    CHECK_THAT(html, Catch::Contains("a &lt;zap&gt; &amp; more"));  // the description, escaped
    CHECK_THAT(html, !Catch::Contains("<zap>"));
    CHECK_THAT(html, Catch::Contains("<table class=\"significant-changes\">"));
    CHECK_THAT(html, !Catch::Contains("src=\"http"));  // no external asset
    const std::string svg = report::phase_svg(groups[0]);
    // One bar per selftest phase and variant ("setup" is not a selftest metric).
    std::size_t bars = 0;
    for (std::size_t at = svg.find("class=\"bar\""); at != std::string::npos; at = svg.find("class=\"bar\"", at + 1)) ++bars;
    CHECK(bars == 2);
    CHECK_THAT(svg, Catch::Contains("data-phase=\"boot\" data-variant=\"after\" data-mean-ns=\"55000000\""));
    CHECK_THAT(svg, Catch::Contains("simulated time (ms)"));
    CHECK_THAT(html, Catch::Contains(svg));
}

TEST_CASE("numbers as people read them", "[report][cover]") {
    CHECK(report::thousands(0) == "0");
    CHECK(report::thousands(999) == "999");
    CHECK(report::thousands(1000) == "1,000");
    CHECK(report::thousands(-1234567) == "-1,234,567");
    CHECK(report::thousands(1234.5) == "1,234.5");
    CHECK(report::thousands(-184.99999) == "-185");
    CHECK(report::thousands(99.96) == "100");
    CHECK(report::thousands(-0.01) == "0");
    CHECK(report::thousands(2500000.4) == "2,500,000");
    CHECK(report::human_ns(55e6) == "55 ms");
    CHECK(report::human_ns(1.5e9) == "1.5 s");
    CHECK(report::human_ns(999) == "999 ns");
}

// The command line's own errors (--format pdf, --help) are tested with the command:
// tests/python/test_report.py and test_cli.py.
TEST_CASE("the report command: no results or an unreadable one exit 2", "[report][cover]") {
    std::ostringstream out, err;
    CHECK(report::write_report({}, out, err) == 2);
    CHECK_THAT(err.str(), Catch::Contains("expected result files"));
    err.str("");
    CHECK(report::write_report({{"/nonexistent/r.json"}, std::nullopt, "", ""}, out, err) == 2);
    CHECK_THAT(err.str(), Catch::StartsWith("/nonexistent/r.json: cannot open"));
}

TEST_CASE("stopped runs are flagged, and each scenario is its own section", "[report][cover]") {
    auto stopped = result("after", 1, 50e6, 900, 20);
    stopped["status"] = "stopped";
    stopped["sim_time_ns"] = 5e6;
    auto other = result("x", 7, 1e6, 1, 1);
    other["scenario"] = "other";
    other["scenario_sha256"] = std::string(64, 'c');
    other["overrides"] = json::array({json::array({"/workload/flags/v", 8}), json::array({"/host/costs/fault_entry", "1 us"}),
                                      json::array({"/a.b/c", true}), json::array({"/mmu/knobs/s", "8"}),
                                      json::array({"/vm/name", "it's"})});
    const std::vector<report::ReportInput> in{
        {"b.json", result("before", 1, 100e6, 1000, 500)}, {"a.json", stopped}, {"o.json", other}};
    const auto groups = report::group_results(in);
    REQUIRE(groups.size() == 2);
    CHECK(groups[1].scenario == "other");
    CHECK(groups[1].variants == std::vector<std::string>{"x"});
    const std::string md = report::render_report(groups, report::ReportFormat::Markdown, {"v", "b"});
    CHECK_THAT(md, Catch::StartsWith("# kvmsim report\n"));  // no single scenario in the title
    CHECK_THAT(md, Catch::Contains("\n## zap\n") && Catch::Contains("\n## other\n"));
    CHECK_THAT(md, Catch::Contains("kvmsim run scenarios/seeds/zap.json --variant after --seed 1 --until 5ms --json a.json"));
    CHECK_THAT(md, Catch::Contains("Warning: some runs did not complete"));
    // Overrides come back as --set arguments a shell takes as they are.
    CHECK_THAT(md, Catch::Contains("--variant x --seed 7 --set workload.flags.v=8 --set 'host.costs.fault_entry=1 us' "
                                   "--set /a.b/c=true --set 'mmu.knobs.s=\"8\"' --set 'vm.name=it'\\''s' --json o.json"));
    CHECK_THAT(md, Catch::Contains("One variant: nothing to compare."));
    // One seed per variant: no intervals, the phases that changed.
    CHECK_THAT(md, Catch::Contains("One seed per variant: no intervals"));
    CHECK_THAT(md, Catch::Contains("| phase boot | 100 ms | 50 ms | -50.00% |"));
}
