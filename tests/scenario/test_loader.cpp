#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>

#include "models/registry.hpp"
#include "sim/scenario/loader.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

using namespace kvmsim;
namespace fs = std::filesystem;

namespace {
struct NullModel : vm::MmuModel {
    bool hits(std::uint32_t, vm::Gfn, vm::Access) const override { return true; }
    engine::Task<void> page_fault(const vm::CpuContext&, vm::Gfn, vm::Access) override { co_return; }
};

const vm::ModelRegistry& test_models() {
    static const vm::ModelRegistry reg = [] {
        vm::ModelRegistry r;
        vm::ModelInfo m;
        m.name = "toy_tdp";
        m.summary = "test model";
        m.kernel = "none";
        vm::KnobSpec lock;
        lock.name = "zap_lock";
        lock.type = vm::KnobSpec::Type::Choice;
        lock.choices = {"write", "read", "drop_write_zap_read"};
        lock.default_value = std::string("write");
        vm::KnobSpec pre;
        pre.name = "fault_precheck";
        pre.type = vm::KnobSpec::Type::Bool;
        pre.default_value = true;
        m.knobs = {lock, pre};
        m.costs = {"fault_entry"};
        m.operations = {vm::Operation::ZapGfnRange, vm::Operation::DirtyLogEnable, vm::Operation::DirtyLogDisable};
        m.create = [](vm::ModelEnv&) { return std::make_unique<NullModel>(); };
        r.add(m);
        return r;
    }();
    return reg;
}

// A host profile's topology: SOCKETS x PER CPUs, every field with a source.
#define TEST_TOPOLOGY(SOCKETS, PER)                                                                   \
    "\"topology\": {\"sockets\": {\"value\": " #SOCKETS ", \"source\": \"estimate\"},"                 \
    " \"cpus_per_socket\": {\"value\": " #PER ", \"source\": \"estimate\"},"                            \
    " \"line_local\": {\"value\": \"10ns\", \"source\": \"estimate\"},"                                 \
    " \"line_same_socket\": {\"value\": \"60ns\", \"source\": \"estimate\"},"                           \
    " \"line_cross_socket\": {\"value\": \"130ns\", \"source\": \"estimate\"},"                         \
    " \"memory_bandwidth_per_socket\": {\"value\": \"85GB/s\", \"source\": \"estimate\"}},"

// A scratch directory with a host profile beside the scenarios (scenarios/hosts layout).
struct Dir {
    fs::path root;
    Dir() {
        root = fs::temp_directory_path() / ("kvmsim-loader-" + std::to_string(::getpid()));
        fs::create_directories(root / "hosts");
        fs::create_directories(root / "seeds");
        write("hosts/test-host.json", R"({
  "name": "test-host", "cpus": 8, )" TEST_TOPOLOGY(2, 4) R"(
  "caches": {"line": 64, "memory_latency": "90ns", "remote_latency": "60ns",
             "levels": [{"name": "L1d", "size": "32K", "ways": 8, "latency": "1ns"},
                        {"name": "LLC", "size": "1M", "ways": 16, "latency": "20ns", "shared": true}]},
  "costs": {"fault_entry": {"value": "1us", "source": "estimate"}, "guest_access": {"value": "10ns", "source": "estimate"}}
})");
    }
    ~Dir() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    std::string write(const std::string& name, const std::string& text) {
        std::ofstream(root / name) << text;
        return (root / name).string();
    }
};

const char* kGood = R"({
  "name": "t", "seed": 3,
  "host": {"profile": "test-host"},
  "vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},
  "mmu": {"model": "toy_tdp", "knobs": {"zap_lock": "write"}},
  "workload": {"phases": [
    {"name": "boot", "stream": {"pattern": "random", "count": 100, "mix": {"read": 0.5, "write": 0.5}}},
    {"name": "run", "after": ["boot"], "stream": {"count": 10}}
  ]},
  "events": [{"op": "zap_gfn_range", "at": "5us", "interval": "10us", "count": 3, "size": "2M"}],
  "variants": [{"name": "before"}, {"name": "after", "patch": {"mmu": {"knobs": {"zap_lock": "read"}}}}]
})";

scenario::LoadOptions opts(std::optional<std::string> variant = std::nullopt) {
    scenario::LoadOptions o;
    o.models = &test_models();
    o.variant = std::move(variant);
    return o;
}

// Load `path` with `o`: "" if it loads (the scenario goes to *out), else the error text with the
// path written as FILE.
std::string load_error_text(const std::string& path, const scenario::LoadOptions& o, scenario::Scenario* out = nullptr) {
    try {
        auto sc = scenario::load_scenario(path, o);
        if (out) *out = std::move(sc);
    } catch (const scenario::ScenarioError& e) {
        std::string w = e.what();
        if (w.compare(0, path.size(), path) == 0) w = "FILE" + w.substr(path.size());
        return w;
    }
    return "";
}

// Options for the built-in models and the project's host profiles.
scenario::LoadOptions builtin_opts(std::optional<std::string> variant = std::nullopt) {
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.host_dirs = {std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts"};
    o.variant = std::move(variant);
    return o;
}

// The error message of loading `text` (with `from`/`to` replaced), or "" if it loads.
std::string error_of(Dir& d, std::string text, std::optional<std::string> variant = std::nullopt) {
    const std::string path = d.write("seeds/s.json", text);
    return load_error_text(path, opts(std::move(variant)));
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
}
}  // namespace

TEST_CASE("a good scenario loads with defaults, order and variants", "[scenario][loader]") {
    Dir d;
    const std::string path = d.write("seeds/s.json", kGood);
    const auto sc = scenario::load_scenario(path, opts());
    CHECK(sc.name == "t");
    CHECK(sc.seed == 3);
    CHECK(sc.variant == "before");
    CHECK(sc.variants == std::vector<std::string>{"before", "after"});
    CHECK(sc.vm.vcpus == 2);
    CHECK(sc.vm.memslots[0].npages == 16384);
    CHECK(std::get<std::string>(sc.knobs.at("zap_lock")) == "write");
    CHECK(std::get<bool>(sc.knobs.at("fault_precheck")) == true);  // default filled in
    REQUIRE(sc.workload.steps.size() == 2);
    CHECK(sc.workload.steps[0].name == "boot");
    CHECK(sc.workload.steps[0].streams.size() == 2);
    CHECK(sc.workload.steps[0].streams[1].base == sc.vm.memslots[0].base_gfn + 8192);  // partitioned
    CHECK(sc.workload.events[0].repeat.count == 3);
    CHECK(sc.workload.events[0].host.end - sc.workload.events[0].host.start == 512);
    CHECK(sc.host.costs.time("fault_entry") == engine::Time::us(1));
    CHECK(sc.host.cache.levels.size() == 2);
    CHECK(sc.sha256.size() == 64);
    const auto after = scenario::load_scenario(path, opts("after"));
    CHECK(std::get<std::string>(after.knobs.at("zap_lock")) == "read");
    CHECK(after.sha256 == sc.sha256);
    scenario::LoadOptions seeded = opts();
    seeded.seed = 99;
    CHECK(scenario::load_scenario(path, seeded).seed == 99);
}

TEST_CASE("invalid JSON is reported with line and column", "[scenario][loader]") {
    Dir d;
    const auto e = error_of(d, "{\n  \"name\": \"t\"\n  \"seed\": 1\n}");
    CHECK_THAT(e, Catch::StartsWith("FILE:3:3:"));
}

TEST_CASE("every error names the pointer and what was expected", "[scenario][loader]") {
    Dir d;
    SECTION("wrong type") {
        CHECK(error_of(d, replace(kGood, "\"vcpus\": 2", "\"vcpus\": \"two\"")) ==
              "FILE: /vm/vcpus: expected an integer between 1 and 4096, got \"two\"");
    }
    SECTION("unknown key with a suggestion") {
        CHECK_THAT(error_of(d, replace(kGood, "\"memslots\"", "\"memslot\"")),
                   Catch::StartsWith("FILE: /vm: ") && Catch::Contains("\"memslot\"") && Catch::Contains("did you mean \"memslots\"?"));
    }
    SECTION("bad unit") {
        CHECK_THAT(error_of(d, replace(kGood, "\"64M\"", "\"64Q\"")), Catch::StartsWith("FILE: /vm/memslots/0/size: "));
        CHECK_THAT(error_of(d, replace(kGood, "\"5us\"", "\"5\"")), Catch::StartsWith("FILE: /events/0/at: expected a time"));
    }
    SECTION("out of range") {
        CHECK_THAT(error_of(d, replace(kGood, "\"vcpus\": 2", "\"vcpus\": 0")), Catch::StartsWith("FILE: /vm/vcpus: ") && Catch::Contains("1"));
    }
    SECTION("unknown model") {
        CHECK(error_of(d, replace(kGood, "\"toy_tdp\"", "\"toy_tpd\"")) ==
              "FILE: /mmu/model: unknown MMU model \"toy_tpd\" (did you mean \"toy_tdp\"?)");
    }
    SECTION("unknown knob and bad knob value") {
        CHECK_THAT(error_of(d, replace(kGood, "\"zap_lock\": \"write\"", "\"zap_lok\": \"write\"")),
                   Catch::StartsWith("FILE: /mmu/knobs/zap_lok: unknown knob \"zap_lok\"") && Catch::Contains("did you mean \"zap_lock\"?"));
        CHECK_THAT(error_of(d, replace(kGood, "\"zap_lock\": \"write\"", "\"zap_lock\": \"wrte\"")),
                   Catch::StartsWith("FILE: /mmu/knobs/zap_lock: expected one of") && Catch::Contains("did you mean \"write\"?"));
    }
    SECTION("unknown host profile") {
        CHECK_THAT(error_of(d, replace(kGood, "\"test-host\"", "\"test-hots\"")),
                   Catch::StartsWith("FILE: /host/profile: unknown host profile \"test-hots\"") && Catch::Contains("did you mean \"test-host\"?"));
    }
    SECTION("unknown preset") {
        std::string s = replace(kGood, R"("vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},)", "");
        const auto at = s.find("\"workload\"");
        const auto end = s.find("\"events\"");
        s = s.substr(0, at) + R"("workload": {"preset": "kvm_page_tabel_test", "args": "-v 2"},
  )" + s.substr(end);
        CHECK_THAT(error_of(d, s), Catch::StartsWith("FILE: /workload/preset: expected one of") &&
                                      Catch::Contains("did you mean \"kvm_page_table_test\"?"));
        s = replace(s, "kvm_page_tabel_test", "kvm_page_table_test");
        CHECK_THAT(error_of(d, replace(s, "-v 2", "-v 2 -b 1X")), Catch::StartsWith("FILE: /workload/args: expected a size"));
    }
    SECTION("an operation the model does not support") {
        CHECK(error_of(d, replace(kGood, "\"op\": \"zap_gfn_range\"", "\"op\": \"smm_enter\"")) ==
              "FILE: /events/0/op: model toy_tdp does not support smm_enter (it supports: zap_gfn_range, "
              "dirty_log_enable, dirty_log_disable)");
    }
    SECTION("a variant that makes the scenario invalid") {
        const auto s = replace(kGood, "{\"zap_lock\": \"read\"}", "{\"zap_lock\": \"sideways\"}");
        CHECK(error_of(d, s) == "");  // the baseline is fine
        CHECK_THAT(error_of(d, s, "after"), Catch::StartsWith("FILE (variant \"after\"): /mmu/knobs/zap_lock: expected one of"));
        CHECK_THAT(error_of(d, kGood, "aftr"), Catch::StartsWith("FILE: /variants: no variant \"aftr\" (did you mean \"after\"?)"));
    }
    SECTION("cyclic phase dependencies") {
        const auto s = replace(kGood, "{\"name\": \"boot\", ", "{\"name\": \"boot\", \"after\": [\"run\"], ");
        CHECK_THAT(error_of(d, s), Catch::StartsWith("FILE: /workload/phases/") && Catch::Contains("cycle") &&
                                      Catch::Contains("boot") && Catch::Contains("run"));
    }
    SECTION("a missing cost the model needs") {
        d.write("hosts/bare.json", R"({"name": "bare", "cpus": 4, )" TEST_TOPOLOGY(1, 4) R"(
  "caches": {"memory_latency": "90ns", "remote_latency": "60ns", "levels": [{"name": "LLC", "size": "1M", "ways": 16, "latency": "20ns", "shared": true}]},
  "costs": {}})");
        CHECK(error_of(d, replace(kGood, "\"test-host\"", "\"bare\"")) ==
              "FILE: /host/profile: host profile bare lacks cost \"fault_entry\", which model toy_tdp needs");
    }
    SECTION("a missing file") {
        try {
            scenario::load_scenario((d.root / "nope.json").string(), opts());
            FAIL("loaded a missing file");
        } catch (const scenario::ScenarioError& e) {
            CHECK_THAT(e.what(), Catch::Contains("nope.json") && Catch::Contains("cannot open"));
        }
    }
}

// Nested-guest events against the built-in models: x86_tdp cannot do them, x86_shadow can.
TEST_CASE("nested_start/nested_stop are checked at load time", "[scenario][loader][x86_shadow]") {
    Dir d;
    const std::string base = R"({
  "name": "n", "host": {"profile": "x86-server"},
  "vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},
  "mmu": {"model": "x86_shadow"},
  "workload": {"phases": [{"name": "run", "stream": {"count": 10}}]},
  "events": [{"op": "nested_start", "at": "1us", "vcpus": [1], "eptp": "8K"}]
})";
    auto err = [&](const std::string& text) {
        scenario::Scenario sc;
        const std::string w = load_error_text(d.write("seeds/n.json", text), builtin_opts(), &sc);
        if (w.empty()) {
            REQUIRE(sc.workload.events.size() == 1);
            CHECK(sc.workload.events[0].host.vcpus == std::vector<std::uint32_t>{1});
            CHECK(sc.workload.events[0].host.eptp == 2);
        }
        return w;
    };
    CHECK(err(base).empty());
    CHECK_THAT(err(replace(base, "\"x86_shadow\"", "\"x86_tdp\"")),
               Catch::StartsWith("FILE: /events/0/op: model x86_tdp does not support nested_start"));
    CHECK_THAT(err(replace(base, "\"vcpus\": [1]", "\"vcpus\": [2]")),
               Catch::StartsWith("FILE: /events/0/vcpus/0: expected a vCPU index below 2"));
    CHECK_THAT(err(replace(base, "\"eptp\": \"8K\"", "\"eptp\": \"6K\"")),
               Catch::StartsWith("FILE: /events/0/eptp: expected a 4K-aligned"));
    const std::string enable = replace(replace(base, "\"nested_start\"", "\"dirty_log_enable\""), "\"vcpus\": [1], ", "");
    CHECK_THAT(err(enable), Catch::StartsWith("FILE: /events/0/eptp: expected eptp only for nested_start, nested_stop and nested_ept_write"));
    CHECK_THAT(err(replace(replace(base, "\"nested_start\"", "\"dirty_log_enable\""), ", \"eptp\": \"8K\"", "")),
               Catch::StartsWith("FILE: /events/0/vcpus: expected no vcpus for dirty_log_enable"));
    CHECK_THAT(err(replace(base, "\"x86_shadow\"", "\"x86_shadow\", \"knobs\": {\"child_sp_lookup\": \"sometimes\"}")),
               Catch::StartsWith("FILE: /mmu/knobs/child_sp_lookup: expected one of"));
    CHECK_THAT(err(replace(base, "\"x86_shadow\"", "\"x86_shadow\", \"knobs\": {\"split_desc_cache_capacity\": 512}")),
               Catch::StartsWith("FILE: /mmu/knobs/split_desc_cache_capacity: "));
}

TEST_CASE("nested_eptp_switch and nested_ept_write are checked at load time", "[scenario][loader][x86_shadow]") {
    Dir d;
    const std::string base = R"({
  "name": "n", "host": {"profile": "x86-server"},
  "vm": {"vcpus": 2, "memslots": [{"id": 1, "base": "4G", "size": "64M"}]},
  "mmu": {"model": "x86_shadow"},
  "workload": {"phases": [{"name": "run", "stream": {"count": 10}},
                          {"name": "storm", "after": ["run"], "host": HOST}]},
  "events": [EVENT]
})";
    auto load = [&](const std::string& host, const std::string& event, scenario::Scenario* out = nullptr) {
        return load_error_text(d.write("seeds/e.json", replace(replace(base, "HOST", host), "EVENT", event)),
                               builtin_opts(), out);
    };
    const std::string sw = R"({"op": "nested_eptp_switch", "vcpus": [0], "eptps": ["4K", "8K", "12K"], "count": 3, "interval": "10us"})";
    const std::string wr =
        R"({"op": "nested_ept_write", "at": "5us", "vcpus": [1], "eptp": "8K", "start": "4G", "size": "2M", "entries": 16})";
    scenario::Scenario sc;
    REQUIRE(load(sw, wr, &sc).empty());
    const auto& step = sc.workload.steps[1];
    CHECK(step.host.op == vm::Operation::NestedEptpSwitch);
    CHECK(step.host.eptps == std::vector<vm::Gfn>{1, 2, 3});
    CHECK(step.repeat.count == 3);
    CHECK(step.repeat.interval == engine::Time::us(10));
    const auto& ev = sc.workload.events[0].host;
    CHECK(ev.op == vm::Operation::NestedEptWrite);
    CHECK(ev.ept.eptp == 2);
    CHECK(ev.ept.start == (4ULL << 30) / 4096);
    CHECK(ev.ept.end == ev.ept.start + 512);
    CHECK(ev.ept.entries == 16);
    CHECK(ev.ept.invept);
    CHECK(ev.ept.level == 1);  // the leaf entries by default
    CHECK(ev.vcpus == std::vector<std::uint32_t>{1});
    // The switch's EPTP list.
    CHECK_THAT(load(replace(sw, R"(["4K", "8K", "12K"])", R"(["4K"])"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptps: expected at least two EPTPs"));
    CHECK_THAT(load(replace(sw, R"(["4K", "8K", "12K"])", R"(["4K", "8K", "4K"])"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptps/2: expected each EPTP once"));
    CHECK_THAT(load(replace(sw, R"(["4K", "8K", "12K"])", R"(["4K", "6K"])"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptps/1: expected a 4K-aligned"));
    // EPTPs below 2^52 (MAXPHYADDR), at the element's pointer; the largest page below is fine.
    CHECK_THAT(load(replace(sw, R"(["4K", "8K", "12K"])", R"(["4K", "4P"])"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptps/1: expected a guest physical address below 2^52"));
    CHECK_THAT(load(replace(sw, R"(["4K", "8K", "12K"])", R"(["4K", 18446744073709547520])"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptps/1: expected a guest physical address below 2^52"));
    CHECK_THAT(load(sw, replace(wr, R"("eptp": "8K")", R"("eptp": "4P")")),
               Catch::StartsWith("FILE: /events/0/eptp: expected a guest physical address below 2^52"));
    scenario::Scenario top;
    REQUIRE(load(replace(sw, R"(["4K", "8K", "12K"])", R"(["4K", 4503599627366400])"),
                 replace(wr, R"("eptp": "8K")", R"("eptp": 4503599627366400)"), &top)
                .empty());
    CHECK(top.workload.steps[1].host.eptps.back() == (vm::Gfn{1} << 40) - 1);
    CHECK(top.workload.events[0].host.ept.eptp == (vm::Gfn{1} << 40) - 1);
    CHECK_THAT(load(replace(sw, R"("eptps")", R"("eptp": "4K", "eptps")"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptp: expected \"eptps\""));
    CHECK_THAT(load(replace(sw, R"("count": 3, "interval": "10us")", R"("count": 3)"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/interval: expected an interval when count > 1"));
    // A storm whose last run would start past 10^6 s of simulated time (the product would
    // overflow the picosecond clock): the interval, or a lone event's time, is named.
    CHECK_THAT(load(replace(sw, R"("count": 3, "interval": "10us")", R"("count": 100000000, "interval": "9000000s")"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/interval: expected the last run, at the phase's start + "
                                 "interval * (count - 1), to start within 1000000 s"));
    CHECK(load(replace(sw, R"("count": 3, "interval": "10us")", R"("count": 100001, "interval": "10s")"), wr) == "");
    CHECK_THAT(load(sw, replace(wr, R"("at": )", R"("count": 100002, "interval": "10s", "at": )")),
               Catch::StartsWith("FILE: /events/0/interval: expected the last run, at at + interval"));
    CHECK_THAT(load(sw, replace(replace(wr, R"("at": ")", R"("at": "2000000s", "x": ")"), R"("x": ")", R"("name": ")")),
               Catch::StartsWith("FILE: /events/0/at: expected the last run"));
    CHECK_THAT(load(replace(sw, "nested_eptp_switch", "nested_start"), wr),
               Catch::StartsWith("FILE: /workload/phases/1/host/eptps: expected eptps only for nested_eptp_switch"));
    // The EPT12 write: its range lies in a memslot, its entry count fits it.
    CHECK_THAT(load(sw, replace(wr, R"("start": "4G")", R"("start": "2G")")),
               Catch::StartsWith("FILE: /events/0/start: expected an L2 guest physical address inside a memslot"));
    CHECK_THAT(load(sw, replace(wr, R"("size": "2M")", R"("size": "128M")")),
               Catch::StartsWith("FILE: /events/0/size: expected a multiple of 4K ending inside memslot 1"));
    CHECK_THAT(load(sw, replace(wr, R"("entries": 16)", R"("entries": 1000)")),
               Catch::StartsWith("FILE: /events/0/entries: expected an integer between 1 and 512"));
    CHECK_THAT(load(sw, replace(wr, R"(, "entries": 16)", "")), Catch::StartsWith("FILE: /events/0: ") &&
                                                                   Catch::Contains("entries"));
    CHECK_THAT(load(sw, replace(wr, "nested_ept_write", "nested_stop")),
               Catch::StartsWith("FILE: /events/0/entries: expected entries only for nested_ept_write"));
    CHECK(load(sw, replace(wr, R"("entries": 16)", R"("entries": 16, "invept": false)")).empty());
    // The EPT12 level L1 rewrites: PD entries here; 1 to 3 only, and only for nested_ept_write.
    REQUIRE(load(sw, replace(wr, R"("entries": 16)", R"("entries": 16, "level": 2)"), &sc).empty());
    CHECK(sc.workload.events[0].host.ept.level == 2);
    CHECK_THAT(load(sw, replace(wr, R"("entries": 16)", R"("entries": 16, "level": 4)")),
               Catch::StartsWith("FILE: /events/0/level: expected an integer between 1 and 3"));
    CHECK_THAT(load(sw, replace(replace(wr, "nested_ept_write", "nested_stop"), R"(, "entries": 16)", R"(, "level": 2)")),
               Catch::StartsWith("FILE: /events/0/level: expected level only for nested_ept_write"));
}

// A host feature the scenario sets must be one the model reads: the vCPUs' TLB model is x86_tdp's
// only (x86_shadow's embedded TDP MMU does not consult it).
TEST_CASE("a host feature the model does not read is rejected at its pointer", "[scenario][loader][pml]") {
    Dir d;
    const std::string base = R"({
  "name": "f", "host": {"profile": "x86-server", "features": {"guest_tlb": true}},
  "vm": {"vcpus": 1, "memslots": [{"size": "16M"}]},
  "mmu": {"model": "MODEL"},
  "workload": {"phases": [{"name": "run", "stream": {"count": 10}}]}
})";
    auto err = [&](const std::string& model) {
        return load_error_text(d.write("seeds/f.json", replace(base, "MODEL", model)), builtin_opts());
    };
    CHECK(err("x86_tdp") == "");
    CHECK_THAT(err("x86_shadow"), Catch::StartsWith("FILE: /host/features/guest_tlb: feature \"guest_tlb\" has no "
                                                    "effect on model x86_shadow, which reads ") &&
                                      Catch::Contains("nx_huge_pages") && Catch::Contains("pml") &&
                                      !Catch::Contains("guest_tlb,"));
}

// x86_shadow embeds the TDP MMU's knobs: the ones that cannot act on it are rejected at load time,
// at the knob's pointer, with the reason (and the other knob's pointer when it depends on one).
TEST_CASE("x86_shadow rejects knobs that cannot act, naming the knob and why", "[scenario][loader][x86_shadow]") {
    Dir d;
    const std::string base = R"({
  "name": "k", "host": {"profile": "x86-server"},
  "vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},
  "mmu": {"model": "x86_shadow", "knobs": {KNOBS}},
  "workload": {"phases": [{"name": "run", "stream": {"count": 10}}]},
  "variants": [{"name": "a"}, {"name": "b", "patch": {"mmu": {"knobs": {"tdp_mmu": false}}}}]
})";
    auto err = [&](const std::string& knobs, std::optional<std::string> variant = std::nullopt) {
        return load_error_text(d.write("seeds/k.json", replace(base, "KNOBS", knobs)), builtin_opts(std::move(variant)));
    };
    // Knobs of mechanisms x86_shadow does not have.
    for (const char* k : {R"("zap_lock": "read")", R"("fault_precheck": false)", R"("tdp_root_unload": "drop")",
                          R"("mmu_init": "constant_once")"}) {
        INFO(k);
        const std::string name = std::string(k).substr(1, std::string(k).find('"', 1) - 1);
        CHECK_THAT(err(k), Catch::StartsWith("FILE: /mmu/knobs/" + name + ": knob \"" + name +
                                             "\" has no effect on model x86_shadow: "));
    }
    CHECK_THAT(err(R"("zap_lock": "read")"), Catch::Contains("no zap_gfn_range operation"));
    CHECK_THAT(err(R"("mmu_init": "constant_once")"), Catch::Contains("no SMM"));
    // TDP-only knobs with tdp_mmu false (the default): the other knob's pointer and the reason.
    CHECK(err(R"("fault_lock": "write")") ==
          "FILE: /mmu/knobs/fault_lock: knob \"fault_lock\" has no effect while /mmu/knobs/tdp_mmu is false (it acts "
          "only when that is true): it is the mmu_lock mode of the TDP MMU's fault path; the shadow MMU's faults "
          "always take mmu_lock for write, and tdp_mmu false turns the TDP MMU off");
    CHECK(err(R"("tdp_mmu": true, "fault_lock": "write")").empty());
    CHECK_THAT(err(R"("fault_split": "zap")"),
               Catch::StartsWith("FILE: /mmu/knobs/fault_split: ") && Catch::Contains("/mmu/knobs/tdp_mmu is false"));
    CHECK_THAT(err(R"("tdp_mmu_fast_page_fault": false)"),
               Catch::StartsWith("FILE: /mmu/knobs/tdp_mmu_fast_page_fault: ") &&
                   Catch::Contains("/mmu/knobs/tdp_mmu is false"));
    CHECK(err(R"("tdp_mmu": true, "fault_split": "zap", "tdp_mmu_fast_page_fault": false)").empty());
    for (const char* k : {R"("huge_page_recovery": "in_place")", R"("nx_recovery_lock": "read")",
                          R"("nx_huge_pages_recovery_ratio": 4)", R"("nx_huge_pages_recovery_period_ms": 1)"}) {
        INFO(k);
        const std::string name = std::string(k).substr(1, std::string(k).find('"', 1) - 1);
        CHECK_THAT(err(k), Catch::StartsWith("FILE: /mmu/knobs/" + name + ": ") &&
                               Catch::Contains("/mmu/knobs/tdp_mmu is false"));
        CHECK(err(std::string(R"("tdp_mmu": true, )") + k).empty());
    }
    // eager_page_split acts with tdp_mmu false (David Matlack's 2022 proposal), and so do the
    // split caches' knobs with it.
    CHECK(err(R"("eager_page_split": false)").empty());
    CHECK(err(R"("split_desc_cache_capacity": 1026, "split_cache_free": "flags_change")").empty());
    CHECK_THAT(err(R"("eager_page_split": false, "split_cache_free": "flags_change")"),
               Catch::StartsWith("FILE: /mmu/knobs/split_cache_free: ") &&
                   Catch::Contains("/mmu/knobs/eager_page_split is false"));
    CHECK_THAT(err(R"("alias_percent": 2)"),
               Catch::StartsWith("FILE: /mmu/knobs/alias_percent: ") && Catch::Contains("/mmu/knobs/tdp_mmu is false"));
    CHECK(err(R"("tdp_mmu": true, "alias_percent": 2)").empty());
    // The split caches' knobs need eager splitting too.
    CHECK(err(R"("tdp_mmu": true, "split_desc_cache_capacity": 1026, "split_cache_free": "flags_change")").empty());
    CHECK_THAT(err(R"("tdp_mmu": true, "eager_page_split": false, "split_desc_cache_capacity": 1026)"),
               Catch::StartsWith("FILE: /mmu/knobs/split_desc_cache_capacity: ") &&
                   Catch::Contains("/mmu/knobs/eager_page_split is false"));
    CHECK_THAT(err(R"("tdp_mmu": true, "eager_page_split": false, "split_cache_free": "flags_change")"),
               Catch::StartsWith("FILE: /mmu/knobs/split_cache_free: "));
    // Seed 000's lock knob needs a lookup mode that keeps the bool or count.
    CHECK_THAT(err(R"("root_alloc_lock": "every")"),
               Catch::StartsWith("FILE: /mmu/knobs/root_alloc_lock: ") &&
                   Catch::Contains("/mmu/knobs/child_sp_lookup is \"always\" (it acts only when that is \"skip_bool\" or "
                                   "\"skip_count\")"));
    CHECK(err(R"("child_sp_lookup": "skip_count", "root_alloc_lock": "every")").empty());
    // Found in the variant that makes it inert, naming the variant.
    CHECK(err(R"("tdp_mmu": true, "fault_lock": "write")", "a").empty());
    CHECK_THAT(err(R"("tdp_mmu": true, "fault_lock": "write")", "b"),
               Catch::StartsWith("FILE (variant \"b\"): /mmu/knobs/fault_lock: "));
    // Knobs that act with tdp_mmu false are accepted.
    CHECK(err(R"("preempt": false, "child_sp_lookup": "skip_bool")").empty());
}

namespace {
// A scenario on the real x86_tdp model and the x86-server profile, with `events`.
std::string x86_error_of(Dir& d, const std::string& events, scenario::Scenario* out = nullptr) {
    const std::string path = d.write("seeds/x.json", R"({
  "name": "x", "host": {"profile": "x86-server"},
  "vm": {"vcpus": 2, "memslots": [{"base": "0", "size": "16M"}]},
  "mmu": {"model": "x86_tdp"},
  "workload": {"phases": [{"name": "boot", "stream": {"count": 10}}]},
  "events": )" + events + "}");
    return load_error_text(path, builtin_opts(), out);
}
}  // namespace

TEST_CASE("arm64_stage2 rejects SMM and nested operations at load time, naming the pointer", "[scenario][loader]") {
    Dir d;
    const char* arm = R"({
  "name": "a", "host": {"profile": "kunpeng-920"},
  "vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},
  "mmu": {"model": "arm64_stage2"},
  "workload": {"phases": [{"name": "boot", "stream": {"count": 10}}]},
  "events": [{"op": "invalidate", "at": "5us", "size": "2M"}, {"op": "smm_enter", "at": "9us"}]
})";
    auto err = [&](const std::string& text) { return load_error_text(d.write("seeds/arm.json", text), builtin_opts()); };
    CHECK(err(arm) ==
          "FILE: /events/1/op: model arm64_stage2 does not support smm_enter (it supports: dirty_log_enable, "
          "dirty_log_get, dirty_log_clear, dirty_log_disable, invalidate, clear_young, test_young, vm_destroy)");
    CHECK_THAT(err(replace(arm, "\"smm_enter\"", "\"nested_start\"")),
               Catch::StartsWith("FILE: /events/1/op: model arm64_stage2 does not support nested_start"));
    CHECK_THAT(err(replace(arm, "\"smm_enter\"", "\"zap_gfn_range\"")),
               Catch::StartsWith("FILE: /events/1/op: model arm64_stage2 does not support zap_gfn_range"));
    // Without the event it loads; the host's fwb feature is the profile's unless overridden.
    const std::string ok = replace(arm, R"(, {"op": "smm_enter", "at": "9us"})", "");
    CHECK(err(ok) == "");
    const auto sc = scenario::load_scenario(d.write("seeds/ok.json", ok), builtin_opts());
    CHECK(sc.host.features.at("fwb") == false);
    const std::string with_fwb = replace(ok, R"("profile": "kunpeng-920")", R"("profile": "kunpeng-920", "features": {"fwb": true})");
    CHECK(scenario::load_scenario(d.write("seeds/fwb.json", with_fwb), builtin_opts()).host.features.at("fwb") == true);
    CHECK_THAT(err(replace(ok, R"("profile": "kunpeng-920")", R"("profile": "kunpeng-920", "features": {"fbw": true})")),
               Catch::StartsWith("FILE: /host/features/fbw: unknown feature \"fbw\"") && Catch::Contains("did you mean \"fwb\"?"));
    CHECK_THAT(err(replace(ok, R"("profile": "kunpeng-920")", R"("profile": "kunpeng-920", "features": {"fwb": 1})")),
               Catch::StartsWith("FILE: /host/features/fwb: expected"));
}


TEST_CASE("arm64_stage2 tlbi, the guest TLB's costs, touch_back and vm_destroy: located load errors",
          "[scenario][loader][tlb]") {
    Dir d;
    const std::string ok = R"({
  "name": "a", "host": {"profile": "kunpeng-920"},
  "vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},
  "mmu": {"model": "arm64_stage2", "knobs": {"tlbi": "by_ipa"}},
  "workload": {"phases": [{"name": "boot", "stream": {"count": 10, "touch_back": 2}},
                          {"name": "Unmap VM", "after": ["boot"], "host": {"op": "vm_destroy"}}]}
})";
    auto err = [&](const std::string& text) { return load_error_text(d.write("seeds/tlb.json", text), builtin_opts()); };
    CHECK(err(ok) == "");
    const std::string range = replace(ok, R"("tlbi": "by_ipa")", R"("tlbi": "range")");
    CHECK(err(range) ==
          "FILE: /mmu/knobs/tlbi: knob \"tlbi\" = \"range\" needs host feature \"tlbi_range\", which host profile "
          "kunpeng-920 sets false (override it under /host/features): range TLBIs are FEAT_TLBIRANGE instructions "
          "(ARMv8.4)");
    CHECK(err(replace(range, R"("profile": "kunpeng-920")",
                      R"("profile": "kunpeng-920", "features": {"tlbi_range": true})")) == "");
    CHECK_THAT(err(replace(ok, R"("profile": "kunpeng-920")",
                           R"("profile": "kunpeng-920", "costs": {"tlb_entries_4k": 1150})")),
               Catch::StartsWith("FILE: /host/costs/tlb_entries_4k: expected cost \"tlb_entries_4k\" (1150) to be a "
                                 "multiple of cost \"tlb_ways\" (4)"));
    CHECK_THAT(err(replace(ok, R"("profile": "kunpeng-920")",
                           R"("profile": "kunpeng-920", "costs": {"tlb_ways": 2.5})")),
               Catch::StartsWith("FILE: /host/costs/tlb_ways: expected a whole number"));
    CHECK_THAT(err(replace(ok, R"("profile": "kunpeng-920")",
                           R"("profile": "kunpeng-920", "costs": {"tlb_entries_2m": 100000})")),
               Catch::StartsWith("FILE: /host/costs/tlb_entries_2m: expected at most 16384"));
    CHECK(err(replace(ok, R"({"op": "vm_destroy"})", R"({"op": "vm_destroy", "slots": [0]})")) ==
          "FILE: /workload/phases/1/host/slots: expected no arguments for vm_destroy (it unmaps the whole VM)");
    CHECK(err(replace(ok, R"("count": 10, "touch_back": 2)", R"("pattern": "random", "touch_back": 2)")) ==
          "FILE: /workload/phases/0/stream/touch_back: expected touch_back only with a sequential (or strided) pattern");
    // x86 models do not list vm_destroy: rejected at the operation.
    CHECK_THAT(err(replace(replace(replace(ok, "arm64_stage2", "x86_tdp"), "kunpeng-920", "x86-server"),
                           R"(, "knobs": {"tlbi": "by_ipa"})", "")),
               Catch::StartsWith("FILE: /workload/phases/1/host/op: model x86_tdp does not support vm_destroy"));
}

TEST_CASE("SMM and nested events on x86_tdp: support, vCPU lists and defaults", "[scenario][loader]") {
    Dir d;
    scenario::Scenario sc;
    CHECK(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us"}, {"op": "smm_exit", "at": "2us", "vcpus": [1]}])", &sc) == "");
    REQUIRE(sc.workload.events.size() == 2);
    CHECK(sc.workload.events[0].host.vcpus == std::vector<std::uint32_t>{0});  // SMM: vCPU 0 by default
    CHECK(sc.workload.events[1].host.vcpus == std::vector<std::uint32_t>{1});
    // x86_tdp has no nested MMU: rejected at load time, naming the operation's pointer.
    CHECK_THAT(x86_error_of(d, R"([{"op": "nested_start", "at": "1us"}])"),
               Catch::StartsWith("FILE: /events/0/op: model x86_tdp does not support nested_start") &&
                   Catch::Contains("smm_enter"));
    CHECK_THAT(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us", "vcpus": [2]}])"),
               Catch::StartsWith("FILE: /events/0/vcpus/0: expected a vCPU index below 2"));
    CHECK_THAT(x86_error_of(d, R"([{"op": "zap_gfn_range", "at": "1us", "vcpus": [0]}])"),
               Catch::StartsWith("FILE: /events/0/vcpus: expected no vcpus for zap_gfn_range"));
}

TEST_CASE("smm_enter's SMI handler: SeaBIOS-like defaults, given values, and errors at load time", "[scenario][loader]") {
    Dir d;
    scenario::Scenario sc;
    REQUIRE(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us"}, {"op": "smm_exit", "at": "2us"}])", &sc) == "");
    const vm::SmiHandler& h = sc.workload.events[0].host.smi_handler;
    CHECK(h.smbase == 0xa0000);  // SeaBIOS's relocated SMBASE
    CHECK(h.start == 0xa0000);
    CHECK(h.read_bytes == 32 * 1024);
    CHECK(h.write_bytes == 8 * 1024);
    REQUIRE(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us", "smi_handler": {"smbase": "192K", "read": "4K", "write": "0"}}])",
                         &sc) == "");
    const vm::SmiHandler& g = sc.workload.events[0].host.smi_handler;
    CHECK(g.smbase == 0x30000);
    CHECK(g.start == 0x30000);  // start defaults to SMBASE
    CHECK(g.read_bytes == 4096);
    CHECK(g.write_bytes == 0);

    CHECK(x86_error_of(d, R"([{"op": "smm_exit", "at": "1us", "smi_handler": {}}])") ==
          "FILE: /events/0/smi_handler: expected smi_handler only for smm_enter");
    CHECK_THAT(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us", "smi_handler": {"smbase": "16M"}}])"),
               Catch::StartsWith("FILE: /events/0/smi_handler/smbase: expected an SMBASE whose state-save area"));
    CHECK_THAT(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us", "smi_handler": {"start": "16320K", "read": "64K"}}])"),
               Catch::StartsWith("FILE: /events/0/smi_handler/start: expected the SMI handler's working set"));
    CHECK_THAT(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us", "smi_handler": {"read": "4KB"}}])"),
               Catch::StartsWith("FILE: /events/0/smi_handler/read: "));
    CHECK_THAT(x86_error_of(d, R"([{"op": "smm_enter", "at": "1us", "smi_handler": {"bytes": "4K"}}])"),
               Catch::StartsWith("FILE: /events/0/smi_handler") && Catch::Contains("bytes"));
    // A VM without guest memory at the default SMBASE must say where SMRAM is.
    const std::string path = d.write("seeds/high.json", R"({
  "name": "high", "host": {"profile": "x86-server"},
  "vm": {"vcpus": 1, "memslots": [{"size": "16M"}]},
  "mmu": {"model": "x86_tdp"},
  "workload": {"phases": [{"name": "boot", "stream": {"count": 10}}]},
  "events": [{"op": "smm_enter", "at": "1us"}]
})");
    CHECK_THAT(load_error_text(path, builtin_opts()), Catch::Contains("/events/0: expected an SMBASE whose state-save area") &&
                                        Catch::Contains("give smi_handler.smbase"));
}

TEST_CASE("a scenario loads from its text as from its file", "[scenario][loader]") {
    Dir d;
    const std::string path = d.write("seeds/s.json", kGood);
    const auto from_file = scenario::load_scenario(path, opts("after"));
    const auto from_text = scenario::load_scenario_text(kGood, path, opts("after"));
    CHECK(from_text.sha256 == from_file.sha256);
    CHECK(from_text.variant == "after");
    CHECK(std::get<std::string>(from_text.knobs.at("zap_lock")) == "read");
    CHECK(from_text.host.costs.time("fault_entry") == engine::Time::us(1));  // ../hosts beside `path`
    try {
        scenario::load_scenario_text("{\"name\": 1}", path, opts());
        FAIL("loaded a bad text");
    } catch (const scenario::ScenarioError& e) {
        CHECK(e.file() == path);
        CHECK(e.pointer() == "/name");
    }
}

TEST_CASE("overrides apply after the variant, and the loader checks what they set", "[scenario][loader]") {
    Dir d;
    const std::string path = d.write("seeds/s.json", kGood);
    auto with = [&](std::vector<std::pair<std::string, nlohmann::json>> o, std::optional<std::string> v = std::nullopt) {
        scenario::LoadOptions lo = opts(std::move(v));
        lo.overrides = std::move(o);
        return scenario::load_scenario(path, lo);
    };
    auto error = [&](std::vector<std::pair<std::string, nlohmann::json>> o) -> std::string {
        try {
            with(std::move(o));
        } catch (const scenario::ScenarioError& e) {
            return e.pointer() + ": " + e.message();
        }
        return "";
    };
    SECTION("set values, over the variant's patch") {
        const auto sc = with({{"/vm/vcpus", 4}, {"/mmu/knobs/zap_lock", "write"}}, "after");
        CHECK(sc.vm.vcpus == 4);
        CHECK(std::get<std::string>(sc.knobs.at("zap_lock")) == "write");  // the override wins
        CHECK(sc.variant == "after");
    }
    SECTION("missing members are created; array elements by index; null deletes") {
        const auto sc = with({{"/mmu/knobs/fault_precheck", false},
                              {"/host/costs/fault_entry", "2us"},
                              {"/vm/memslots/0/size", "128M"},
                              {"/events", nullptr}});
        CHECK(std::get<bool>(sc.knobs.at("fault_precheck")) == false);
        CHECK(sc.host.costs.time("fault_entry") == engine::Time::us(2));
        CHECK(sc.vm.memslots[0].npages == 32768);
        CHECK(sc.workload.events.empty());
    }
    SECTION("bad values are the loader's errors at their pointer") {
        CHECK(error({{"/vm/vcpus", "many"}}) == "/vm/vcpus: expected an integer between 1 and 4096, got \"many\"");
        CHECK_THAT(error({{"/vm/vcpu", 4}}), Catch::StartsWith("/vm: unknown key \"vcpu\"") &&
                                                  Catch::Contains("did you mean \"vcpus\"?"));
        CHECK_THAT(error({{"/vm/memslots/0/size", "64Q"}}), Catch::StartsWith("/vm/memslots/0/size: "));
        CHECK_THAT(error({{"/host/costs/fault_entri", "1us"}}), Catch::StartsWith("/host/costs/fault_entri: unknown cost") &&
                                                                      Catch::Contains("did you mean \"fault_entry\"?"));
    }
    SECTION("paths that cannot be set") {
        CHECK_THAT(error({{"/vm/memslots/3/size", "1G"}}),
                   Catch::StartsWith("/vm/memslots/3/size: cannot override: /vm/memslots is an array of 1 elements"));
        CHECK_THAT(error({{"/vm/vcpus/x", 1}}), Catch::StartsWith("/vm/vcpus/x: cannot override: /vm/vcpus is integer 2"));
        CHECK_THAT(error({{"vm.vcpus", 1}}), Catch::StartsWith("vm.vcpus: cannot override: expected a JSON pointer"));
        CHECK_THAT(error({{"/variants/0/name", "x"}}), Catch::Contains("cannot change \"variants\""));
        CHECK_THAT(error({{"/a~2b", 1}}), Catch::Contains("\"~\" must be followed by 0 or 1"));
    }
}

TEST_CASE("resolved_sha256 changes exactly with what decides a run: the document as run and its host profile",
          "[scenario][loader]") {
    Dir d;
    const std::string path = d.write("seeds/s.json", kGood);
    auto load = [&](std::optional<std::string> v = std::nullopt,
                    std::vector<std::pair<std::string, nlohmann::json>> o = {}, std::optional<std::uint64_t> seed = {}) {
        scenario::LoadOptions lo = opts(std::move(v));
        lo.overrides = std::move(o);
        lo.seed = seed;
        return scenario::load_scenario(path, lo);
    };
    const auto base = load();
    REQUIRE(base.resolved_sha256.size() == 64);
    CHECK(base.resolved_sha256 != base.sha256);
    CHECK(load("before").resolved_sha256 == base.resolved_sha256);
    CHECK(load(std::nullopt, {}, 42).resolved_sha256 == base.resolved_sha256);  // the seed is keyed apart
    const auto after = load("after");
    CHECK(after.resolved_sha256 != base.resolved_sha256);
    // The same run reached another way: the baseline with the "after" patch as an override.
    CHECK(load("before", {{"/mmu/knobs/zap_lock", "read"}}).resolved_sha256 == after.resolved_sha256);
    CHECK(load(std::nullopt, {{"/vm/vcpus", 4}}).resolved_sha256 != base.resolved_sha256);
    // Another variant's patch and the file's layout do not change this variant's run.
    std::string other = replace(kGood, R"("patch": {"mmu": {"knobs": {"zap_lock": "read"}}})",
                                R"("patch": {"vm": {"vcpus": 4}})");
    other = replace(other, R"("name": "t", "seed": 3,)", "\"name\":  \"t\",\n \"seed\": 3,");
    d.write("seeds/s.json", other);
    const auto edited = load();
    CHECK(edited.sha256 != base.sha256);
    CHECK(edited.resolved_sha256 == base.resolved_sha256);
    // The host profile's contents: a changed memory latency is a different run.
    const std::string prof = (d.root / "hosts" / "test-host.json").string();
    std::ifstream in(prof);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    d.write("hosts/test-host.json", replace(text, R"("memory_latency": "90ns")", R"("memory_latency": "95ns")"));
    const auto slower = load();
    CHECK(slower.sha256 == edited.sha256);
    CHECK(slower.resolved_sha256 != base.resolved_sha256);
}

TEST_CASE("a model's host feature missing from the profile is a load error", "[scenario][loader]") {
    Dir d;
    d.write("hosts/nofwb.json", R"({"name": "nofwb", "cpus": 4, )" TEST_TOPOLOGY(1, 4) R"(
  "caches": {"memory_latency": "90ns", "remote_latency": "60ns", "levels": [{"name": "LLC", "size": "1M", "ways": 16, "latency": "20ns", "shared": true}]},
  "costs": {"fault_entry": {"value": "1us", "source": "estimate"}}})");
    vm::ModelRegistry reg;
    vm::ModelInfo m;
    m.name = "needs_fwb";
    m.costs = {"fault_entry"};
    m.features = {"fwb"};
    m.create = [](vm::ModelEnv&) -> std::unique_ptr<vm::MmuModel> { return nullptr; };
    reg.add(m);
    scenario::LoadOptions o;
    o.models = &reg;
    const std::string path = d.write("seeds/n.json", R"({"name": "n", "host": {"profile": "nofwb"},
  "vm": {"vcpus": 1, "memslots": [{"size": "2M"}]}, "mmu": {"model": "needs_fwb"},
  "workload": {"phases": [{"name": "p", "stream": {"count": 1}}]}})");
    CHECK_THAT(load_error_text(path, o), Catch::EndsWith(": /host/profile: host profile nofwb lacks feature \"fwb\", which model needs_fwb needs"));
    d.write("hosts/badfeat.json", R"({"name": "badfeat", "cpus": 4, )" TEST_TOPOLOGY(1, 4) R"(
  "caches": {"memory_latency": "90ns", "remote_latency": "60ns", "levels": [{"name": "LLC", "size": "1M", "ways": 16, "latency": "20ns", "shared": true}]},
  "costs": {"fault_entry": {"value": "1us", "source": "estimate"}},
  "features": {"fwb": {"value": false, "source": ""}}})");
    const std::string p2 = d.write("seeds/b.json", R"({"name": "b", "host": {"profile": "badfeat"},
  "vm": {"vcpus": 1, "memslots": [{"size": "2M"}]}, "mmu": {"model": "needs_fwb"},
  "workload": {"phases": [{"name": "p", "stream": {"count": 1}}]}})");
    CHECK_THAT(load_error_text(p2, o), Catch::Contains("badfeat.json: /features/fwb/source: expected a source"));
}

TEST_CASE("host topology: parsed from the profile, overridden by the scenario", "[scenario][loader][topology]") {
    Dir d;
    const std::string path = d.write("seeds/s.json", kGood);
    auto with = [&](std::vector<std::pair<std::string, nlohmann::json>> o) {
        scenario::LoadOptions lo = opts();
        lo.overrides = std::move(o);
        return scenario::load_scenario(path, lo).host.topology;
    };
    const auto t = with({});
    CHECK(t.sockets == 2);
    CHECK(t.cpus_per_socket == 4);
    CHECK(t.line_local == engine::Time::ns(10));
    CHECK(t.line_same_socket == engine::Time::ns(60));
    CHECK(t.line_cross_socket == engine::Time::ns(130));
    CHECK(t.memory_bandwidth_per_socket == 85'000'000'000ULL);
    SECTION("fields overridden like costs") {
        const auto o = with({{"/host/topology/line_cross_socket", "200ns"},
                             {"/host/topology/memory_bandwidth_per_socket", "20GiB/s"}});
        CHECK(o.line_cross_socket == engine::Time::ns(200));
        CHECK(o.memory_bandwidth_per_socket == 20ULL << 30);
        CHECK(o.line_same_socket == engine::Time::ns(60));
    }
    SECTION("the shape follows host.cpus, or the one of sockets and cpus_per_socket given") {
        const auto c = with({{"/host/cpus", 4}});
        CHECK((c.sockets == 2 && c.cpus_per_socket == 2));
        const auto s = with({{"/host/topology/sockets", 1}});
        CHECK((s.sockets == 1 && s.cpus_per_socket == 8));
        const auto p = with({{"/host/topology/cpus_per_socket", 2}});
        CHECK((p.sockets == 4 && p.cpus_per_socket == 2));
        const auto b = with({{"/host/cpus", 6}, {"/host/topology/sockets", 3}, {"/host/topology/cpus_per_socket", 2}});
        CHECK((b.sockets == 3 && b.cpus_per_socket == 2));
    }
}

TEST_CASE("host topology: every bad field is a located error", "[scenario][loader][topology]") {
    Dir d;
    SECTION("scenario overrides") {
        const std::string path = d.write("seeds/s.json", kGood);
        auto error = [&](std::vector<std::pair<std::string, nlohmann::json>> o) -> std::string {
            scenario::LoadOptions lo = opts();
            lo.overrides = std::move(o);
            return load_error_text(path, lo);
        };
        CHECK(error({{"/host/cpus", 7}}) == "FILE: /host/cpus: expected a multiple of the profile's 2 sockets, or "
                                           "host.topology.sockets and cpus_per_socket to match, got 7");
        CHECK(error({{"/host/topology/sockets", 3}}) ==
              "FILE: /host/topology/sockets: expected a divisor of the host's 8 CPUs, or "
              "host.topology.cpus_per_socket as well");
        CHECK(error({{"/host/topology/cpus_per_socket", 3}}) ==
              "FILE: /host/topology/cpus_per_socket: expected a divisor of the host's 8 CPUs, or "
              "host.topology.sockets as well");
        CHECK(error({{"/host/topology/sockets", 2}, {"/host/topology/cpus_per_socket", 2}}) ==
              "FILE: /host/topology: expected sockets x cpus_per_socket (2 x 2 = 4) to equal the host's cpus (8)");
        CHECK(error({{"/host/topology/sockets", 0}}) ==
              "FILE: /host/topology/sockets: expected an integer between 1 and 1024, got 0");
        CHECK(error({{"/host/topology/line_cross_socket", "20ns"}}) ==
              "FILE: /host/topology/line_cross_socket: expected line_cross_socket (20ns) to be at least "
              "line_same_socket (60ns)");
        CHECK(error({{"/host/topology/line_local", "100ns"}}) ==
              "FILE: /host/topology/line_local: expected line_same_socket (60ns) to be at least line_local (100ns)");
        CHECK_THAT(error({{"/host/topology/line_local", "5"}}),
                   Catch::StartsWith("FILE: /host/topology/line_local: expected a time such as \"15us\""));
        CHECK_THAT(error({{"/host/topology/memory_bandwidth_per_socket", "85GB"}}),
                   Catch::StartsWith("FILE: /host/topology/memory_bandwidth_per_socket: expected a bandwidth such as "
                                     "\"85GB/s\" or \"20GiB/s\""));
        CHECK(error({{"/host/topology/memory_bandwidth_per_socket", 85}}) ==
              "FILE: /host/topology/memory_bandwidth_per_socket: expected a bandwidth such as \"85GB/s\", got 85 "
              "(add a unit: B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s)");
        CHECK_THAT(error({{"/host/topology/socket", 2}}),
                   Catch::StartsWith("FILE: /host/topology: unknown key \"socket\"") &&
                       Catch::Contains("did you mean \"sockets\"?"));
    }
    SECTION("the profile") {
        const std::string caches = R"("caches": {"memory_latency": "90ns", "remote_latency": "60ns", "levels": [{"name": "LLC", "size": "1M", "ways": 16, "latency": "20ns", "shared": true}]},
  "costs": {"fault_entry": {"value": "1us", "source": "estimate"}}})";
        const std::string topo = TEST_TOPOLOGY(2, 4);
        // The error of loading kGood against host profile "bad" with this topology text.
        auto error = [&](const std::string& topology) {
            d.write("hosts/bad.json", R"({"name": "bad", "cpus": 8, )" + topology + caches);
            const std::string path = d.write("seeds/s.json", replace(kGood, "\"test-host\"", "\"bad\""));
            std::string e = load_error_text(path, opts());
            const std::string prof = (d.root / "hosts" / "bad.json").string();
            if (const auto at = e.find(prof); at != std::string::npos) e.replace(at, prof.size(), "PROFILE");
            return e;
        };
        CHECK(error(topo) == "");
        CHECK(error("") == "PROFILE: (root): missing required key \"topology\"");
        CHECK(error(replace(topo, R"("sockets": {"value": 2, "source": "estimate"})", R"("sockets": {"value": 2})")) ==
              "PROFILE: /topology/sockets: missing required key \"source\"");
        CHECK_THAT(error(replace(topo, R"("sockets": {"value": 2, "source": "estimate"})",
                                 R"("sockets": {"value": 2, "source": ""})")),
                   Catch::StartsWith("PROFILE: /topology/sockets/source: expected a source"));
        CHECK(error(replace(topo, R"("sockets": {"value": 2, "source": "estimate"}, )", "")) ==
              "PROFILE: /topology: missing required key \"sockets\"");
        CHECK(error(replace(topo, R"("value": 4)", R"("value": 3)")) ==
              "PROFILE: /topology: expected sockets x cpus_per_socket (2 x 3 = 6) to equal the profile's cpus (8)");
        CHECK(error(replace(topo, R"("value": 4)", R"("value": 0)")) ==
              "PROFILE: /topology/cpus_per_socket/value: expected an integer between 1 and 1024, got 0");
        CHECK(error(replace(topo, R"("value": "60ns")", R"("value": "200ns")")) ==
              "PROFILE: /topology/line_cross_socket/value: expected line_cross_socket (130ns) to be at least "
              "line_same_socket (200ns)");
        CHECK_THAT(error(replace(topo, R"("value": "130ns")", R"("value": 130)")),
                   Catch::StartsWith("PROFILE: /topology/line_cross_socket/value: expected a time"));
        CHECK(error(replace(topo, R"("85GB/s")", R"("85 GB/s")")) ==
              "PROFILE: /topology/memory_bandwidth_per_socket/value: expected a bandwidth such as \"85GB/s\" or "
              "\"20GiB/s\" (units B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s), got \"85 GB/s\" (no "
              "spaces allowed)");
        CHECK(error(replace(topo, R"("85GB/s")", R"("85.5B/s")")) ==
              "PROFILE: /topology/memory_bandwidth_per_socket/value: expected a whole number of bytes per second, "
              "got \"85.5B/s\"");
        CHECK_THAT(error(replace(topo, R"("topology": {)", R"("topology": {"numa": 1, )")),
                   Catch::StartsWith("PROFILE: /topology: unknown key \"numa\""));
    }
}

TEST_CASE("host topology: the project's host profiles", "[scenario][loader][topology]") {
    auto host_of = [](const std::string& rel) {
        return scenario::load_scenario(std::string(KVMSIM_SOURCE_DIR) + "/" + rel, builtin_opts()).host;
    };
    const auto x86 = host_of("scenarios/seeds/000-shadow-child-sp-lookup.json");
    CHECK(x86.profile == "x86-server");
    CHECK(x86.topology.sockets * x86.topology.cpus_per_socket == x86.cpus);
    CHECK(x86.topology.sockets == 2);
    CHECK(x86.topology.line_same_socket == engine::Time::ns(60));
    CHECK(x86.topology.line_cross_socket == engine::Time::ns(130));
    CHECK(x86.topology.memory_bandwidth_per_socket == 96'000'000'000ULL);
    const auto arm = host_of("scenarios/seeds/004-arm64-cmo-anonymous-4k.json");
    CHECK(arm.profile == "kunpeng-920");
    CHECK(arm.topology.sockets == 2);
    CHECK(arm.topology.cpus_per_socket == 48);
    CHECK(arm.topology.line_cross_socket == engine::Time::ns(140));
    CHECK(arm.topology.memory_bandwidth_per_socket == 131'000'000'000ULL);
}

TEST_CASE("arm64_stage2's host costs and features (models/host): a missing or bad one is a located error",
          "[scenario][loader]") {
    Dir d;
    std::ifstream in(std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts/kunpeng-920.json");
    const nlohmann::json k920 = nlohmann::json::parse(in);
    auto profile = [&](const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json p = k920;
        p["name"] = name;
        edit(p);
        d.write("hosts/" + name + ".json", p.dump(2));
    };
    auto scenario_on = [&](const std::string& host, const std::string& extra = "") {
        return d.write("seeds/" + host + ".json", R"({"name": "a", "host": {"profile": ")" + host + "\"" + extra + R"(},
  "vm": {"vcpus": 2, "memslots": [{"size": "64M", "backing": "anonymous_thp"}]},
  "mmu": {"model": "arm64_stage2"},
  "workload": {"phases": [{"name": "boot", "stream": {"count": 10}}]}})");
    };
    scenario::LoadOptions o = builtin_opts();
    o.host_dirs.insert(o.host_dirs.begin(), (d.root / "hosts").string());
    profile("k-ok", [](nlohmann::json&) {});
    CHECK(load_error_text(scenario_on("k-ok"), o) == "");
    profile("k-nozero", [](nlohmann::json& p) { p["costs"].erase("zero_rate"); });
    CHECK_THAT(load_error_text(scenario_on("k-nozero"), o),
               Catch::EndsWith(": /host/profile: host profile k-nozero lacks cost \"zero_rate\", which model arm64_stage2 needs"));
    profile("k-nosplit", [](nlohmann::json& p) { p["features"].erase("thp_wp_zero_page_split"); });
    CHECK_THAT(load_error_text(scenario_on("k-nosplit"), o),
               Catch::EndsWith(": /host/profile: host profile k-nosplit lacks feature \"thp_wp_zero_page_split\", which "
                               "model arm64_stage2 needs"));
    profile("k-nosource", [](nlohmann::json& p) { p["costs"]["gup_slow"]["source"] = ""; });
    CHECK_THAT(load_error_text(scenario_on("k-nosource"), o), Catch::Contains("k-nosource.json: /costs/gup_slow/source: expected a source"));
    CHECK_THAT(load_error_text(scenario_on("k-ok", R"(, "features": {"thp_use_zero_page": 1})"), o),
               Catch::Contains(": /host/features/thp_use_zero_page: expected"));
    CHECK_THAT(load_error_text(scenario_on("k-ok", R"(, "features": {"thp_use_zero_pages": false})"), o),
               Catch::Contains(": /host/features/thp_use_zero_pages: unknown feature") &&
                   Catch::Contains("did you mean \"thp_use_zero_page\"?"));
    CHECK_THAT(load_error_text(scenario_on("k-ok", R"(, "costs": {"host_pmd_split": "fast"})"), o),
               Catch::Contains(": /host/costs/host_pmd_split: "));
    // zero_rate divides: below 1 MB/s (a 1 GiB clear would outlast the clock) is rejected where it was set.
    CHECK_THAT(load_error_text(scenario_on("k-ok", R"(, "costs": {"zero_rate": 0})"), o),
               Catch::EndsWith(": /host/costs/zero_rate: expected at least 1000000 for cost \"zero_rate\", which model "
                               "arm64_stage2 divides by"));
    profile("k-zero", [](nlohmann::json& p) { p["costs"]["zero_rate"]["value"] = 5; });
    CHECK_THAT(load_error_text(scenario_on("k-zero"), o),
               Catch::EndsWith(": /host/profile: host profile k-zero: expected at least 1000000 for cost \"zero_rate\", "
                               "which model arm64_stage2 divides by (the profile's /costs/zero_rate)"));
    // A negative cost is refused in the profile itself; dcache_clean_byte has a ceiling and
    // icache_line must be a power of two (both failed only when the run started before).
    profile("k-neg", [](nlohmann::json& p) { p["costs"]["zero_rate"]["value"] = -5; });
    CHECK_THAT(load_error_text(scenario_on("k-neg"), o),
               Catch::Contains("k-neg.json: /costs/zero_rate/value: expected a cost from 0 to 1e12"));
    CHECK_THAT(load_error_text(scenario_on("k-ok", R"(, "costs": {"dcache_clean_byte": 1e12})"), o),
               Catch::EndsWith(": /host/costs/dcache_clean_byte: expected at most 1000000 for cost \"dcache_clean_byte\", "
                               "which model arm64_stage2 scales by a mapping's size"));
    CHECK_THAT(load_error_text(scenario_on("k-ok", R"(, "costs": {"icache_line": 48})"), o),
               Catch::EndsWith(": /host/costs/icache_line: expected a power of two for cost \"icache_line\" (model "
                               "arm64_stage2)"));
}
