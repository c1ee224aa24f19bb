// The selftest scenarios (scenarios/selftests/) against the measurements they reproduce: every
// stage a calibration row reports, within 10% of its mean.
#include <catch2/catch.hpp>
#include <map>

#include "models/registry.hpp"
#include "sim/runner/runner.hpp"
#include "sim/scenario/loader.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

using namespace kvmsim;

namespace {
runner::Result run_selftest(const std::string& name) {
    const std::string root = KVMSIM_SOURCE_DIR;
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.host_dirs = {root + "/scenarios/hosts"};
    return runner::run(scenario::load_scenario(root + "/scenarios/selftests/" + name + ".json", o));
}

double stage_s(const runner::Result& r, const std::string& stage) {
    for (const auto& p : r.phases)
        if (p.name == stage) return p.sim_time_ns / 1e9;
    FAIL("no stage " << stage);
    return 0;
}

double mean(std::initializer_list<double> xs) {
    double s = 0;
    for (double x : xs) s += x;
    return s / static_cast<double>(xs.size());
}
}  // namespace

// calibration.md row C1: kvm_page_table_test -m 4 on a Kunpeng 920 without FWB, host
// v5.11-rc6, 1 vCPU, 5 runs per stage.
TEST_CASE("C1: every stage within 10% of its measured mean", "[selftests][c1]") {
    struct Row {
        const char* scenario;
        const char* stage;
        double mean;
    };
    const Row rows[] = {
        {"c1-anonymous-1g", "KVM_CREATE_MAPPINGS", mean({0.8196, 0.8260, 0.8258, 0.8169, 0.8190})},
        {"c1-anonymous-1g", "KVM_UPDATE_MAPPINGS", mean({1.1930, 1.1949, 1.1940, 1.1934, 1.1946})},
        {"c1-hugetlb-1g-20g", "KVM_CREATE_MAPPINGS", mean({3.7040, 3.7053, 3.7047, 3.7061, 3.7068})},
        {"c1-hugetlb-1g-20g", "KVM_ADJUST_MAPPINGS", mean({2.8264, 2.8266, 2.8272, 2.8259, 2.8283})},
    };
    std::map<std::string, runner::Result> runs;
    for (const Row& row : rows) {
        INFO(row.scenario << " " << row.stage);
        auto it = runs.find(row.scenario);
        if (it == runs.end()) it = runs.emplace(row.scenario, run_selftest(row.scenario)).first;
        REQUIRE(it->second.status == "completed");
        CHECK(stage_s(it->second, row.stage) == Approx(row.mean).epsilon(0.10));
    }
    CHECK(runs.size() == 2);
}
