// A preset's flags as paths of the document (/workload/flags/v for -v): what overrides and
// sweep grids set, and where the loader reports a bad flag value.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "models/registry.hpp"
#include "sim/cli/overrides.hpp"
#include "sim/scenario/loader.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

using namespace kvmsim;

namespace {
const std::string kFile = std::string(KVMSIM_SOURCE_DIR) + "/scenarios/selftests/c1-anonymous-1g.json";

scenario::LoadOptions builtin(std::vector<std::pair<std::string, nlohmann::json>> overrides = {}) {
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.host_dirs = {std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts"};
    o.overrides = std::move(overrides);
    return o;
}

// "POINTER: MESSAGE" of the load's error, "" if it loads.
std::string error_of(std::vector<std::pair<std::string, nlohmann::json>> overrides) {
    try {
        scenario::load_scenario(kFile, builtin(std::move(overrides)));
    } catch (const scenario::ScenarioError& e) {
        CHECK(e.file() == kFile);
        return e.pointer() + ": " + e.message();
    }
    return "";
}
}  // namespace

TEST_CASE("a preset flag set by its path replaces the flag of \"args\"", "[scenario][preset]") {
    const auto base = scenario::load_scenario(kFile, builtin());
    REQUIRE(base.vm.vcpus == 1);  // "-v 1" in args
    for (std::uint64_t v : {2u, 8u, 64u}) {
        const auto sc = scenario::load_scenario(kFile, builtin({{"/workload/flags/v", v}}));
        CHECK(sc.vm.vcpus == v);
        // Only the vCPU count changed: the memory is still -b 1G of -s anonymous.
        REQUIRE(sc.vm.memslots.size() == base.vm.memslots.size());
        CHECK(sc.vm.memslots[0].npages == base.vm.memslots[0].npages);
        CHECK(sc.vm.memslots[0].backing == base.vm.memslots[0].backing);
        CHECK(sc.resolved_sha256 != base.resolved_sha256);
    }
    // A string value is the flag's text as the selftest takes it.
    const auto half = scenario::load_scenario(kFile, builtin({{"/workload/flags/b", "512M"}}));
    CHECK(half.vm.memslots[0].npages == base.vm.memslots[0].npages / 2);
    CHECK(half.vm.vcpus == 1);
    // The same as writing the flag into args.
    const auto both = scenario::load_scenario(kFile, builtin({{"/workload/args", "-m 4 -s anonymous -b 1G -v 4"}}));
    const auto flag = scenario::load_scenario(kFile, builtin({{"/workload/flags/v", 4}}));
    CHECK(both.vm.vcpus == flag.vm.vcpus);
    CHECK(both.workload.steps.size() == flag.workload.steps.size());
}

TEST_CASE("a bad preset flag is reported at its path", "[scenario][preset]") {
    CHECK_THAT(error_of({{"/workload/flags/v", 0}}),
               Catch::StartsWith("/workload/flags/v: expected an integer from 1 to 4096, got \"0\""));
    CHECK_THAT(error_of({{"/workload/flags/v", "many"}}), Catch::StartsWith("/workload/flags/v: expected an integer"));
    CHECK_THAT(error_of({{"/workload/flags/b", "1X"}}), Catch::StartsWith("/workload/flags/b: expected a size"));
    CHECK_THAT(error_of({{"/workload/flags/s", "anonymus"}}), Catch::StartsWith("/workload/flags/s: expected one of anonymous"));
    CHECK_THAT(error_of({{"/workload/flags/q", 3}}), Catch::StartsWith("/workload/flags/q: unknown flag -q"));
    CHECK_THAT(error_of({{"/workload/flags/v", true}}), Catch::StartsWith("/workload/flags/v: flag -v needs a value"));
    CHECK_THAT(error_of({{"/workload/flags/vcpus", 4}}),
               Catch::StartsWith("/workload/flags/vcpus: expected a one-letter flag name such as \"v\""));
    CHECK_THAT(error_of({{"/workload/flags/v", -2}}), Catch::StartsWith("/workload/flags/v: expected the flag's value"));
    CHECK_THAT(error_of({{"/workload/flags/v", 2.5}}), Catch::StartsWith("/workload/flags/v: expected the flag's value"));
    // Still no "vm" beside a preset, and the message says which path to set instead.
    CHECK_THAT(error_of({{"/vm/vcpus", 4}}), Catch::StartsWith("/vm: expected no \"vm\"") && Catch::Contains("/workload/flags/v"));
    // A bad flag of "args" itself is still reported at /workload/args.
    CHECK_THAT(error_of({{"/workload/args", "-v 1 -b 1X"}}), Catch::StartsWith("/workload/args: expected a size"));
    // false leaves a switch out; a flag that needs no value is given by true.
    CHECK(error_of({{"/workload/flags/v", 2}, {"/workload/flags/x", false}}).empty());
}

TEST_CASE("a switch is true or false", "[scenario][preset]") {
    const std::string c3 = std::string(KVMSIM_SOURCE_DIR) + "/scenarios/published/c3-eager-split.json";  // args "... -g -i 3"
    auto load = [&](std::vector<std::pair<std::string, nlohmann::json>> o) { return scenario::load_scenario(c3, builtin(std::move(o))); };
    CHECK_NOTHROW(load({{"/workload/flags/g", false}, {"/workload/flags/v", 4}}));
    CHECK(load({{"/workload/flags/g", true}, {"/workload/flags/v", 4}}).vm.vcpus == 4);
    CHECK(load({{"/workload/flags/i", 5}}).vm.vcpus == 96);
    try {
        load({{"/workload/flags/g", "yes"}});
        FAIL("a switch given a value loaded");
    } catch (const scenario::ScenarioError& e) {
        CHECK(e.pointer() == "/workload/flags/g");
    }
}

TEST_CASE("--set PATH=VALUE: a scenario path and a JSON value, else a string", "[cli][overrides]") {
    CHECK(cli::parse_set("workload.flags.v=8") == std::make_pair(std::string("/workload/flags/v"), nlohmann::json(8)));
    CHECK(cli::parse_set("mmu.knobs.zap_lock=read") == std::make_pair(std::string("/mmu/knobs/zap_lock"), nlohmann::json("read")));
    CHECK(cli::parse_set("mmu.knobs.fault_precheck=true").second == nlohmann::json(true));
    CHECK(cli::parse_set("workload.flags.b=1G").second == nlohmann::json("1G"));
    CHECK(cli::parse_set("vm.memslots.0.size=\"2G\"").first == "/vm/memslots/0/size");
    CHECK(cli::parse_set("/a~1b/c=1").first == "/a~1b/c");  // a pointer as it is
    CHECK(cli::path_to_pointer("a/b.c~d") == "/a~1b/c~0d");
    CHECK_THROWS_AS(cli::parse_set("workload.flags.v"), cli::OverrideError);
    CHECK_THROWS_AS(cli::parse_set("=3"), cli::OverrideError);
    CHECK_THROWS_AS(cli::parse_set("a..b=3"), cli::OverrideError);
}
