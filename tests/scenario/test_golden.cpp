// Scenario-level regression tests: small scenarios through the loader, the real models and the
// runner, with their fingerprints and key counters pinned. A pinned value that changes means
// the simulated mechanism changed: update it only for an intended change, and say so.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>

#include "models/registry.hpp"
#include "sim/report/report.hpp"
#include "sim/runner/runner.hpp"
#include "sim/scenario/loader.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

using namespace kvmsim;

namespace {
std::string src(const std::string& rel) { return std::string(KVMSIM_SOURCE_DIR) + "/" + rel; }

runner::Result run_file(const std::string& rel, std::optional<std::string> variant = std::nullopt,
                        const runner::RunOptions& ro = {}) {
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.variant = std::move(variant);
    o.host_dirs = {src("scenarios/hosts")};
    return runner::run(scenario::load_scenario(src(rel), o), ro);
}

std::uint64_t stat(const runner::Result& r, const std::string& k) {
    auto it = r.stats.find(k);
    return it == r.stats.end() ? 0 : it->second;
}
std::uint64_t phase_stat(const runner::Result& r, const std::string& phase, const std::string& k) {
    for (const auto& p : r.phases)
        if (p.name == phase) {
            auto it = p.stats.find(k);
            return it == p.stats.end() ? 0 : it->second;
        }
    FAIL("no phase " << phase);
    return 0;
}
const runner::LockResult* lock(const runner::Result& r, const std::string& mode, const std::string& site) {
    for (const auto& l : r.locks)
        if (l.lock == "mmu_lock" && l.mode == mode && l.site == site) return &l;
    return nullptr;
}
}  // namespace

TEST_CASE("golden: 4K faults", "[golden]") {
    const auto r = run_file("tests/data/tdp-fault.json");
    CHECK(r.status == "completed");
    // 16M = 4096 pages; two vCPUs walk them in each of the three stages.
    CHECK(r.guest_accesses == 3 * 2 * 4096);
    CHECK(stat(r, "pf_fixed") >= 4096);
    CHECK(phase_stat(r, "KVM_CREATE_MAPPINGS", "pf_fixed") == 4096);
    CHECK(report::hex64(r.fingerprint) == "17a4440b01e95455");
}

TEST_CASE("golden: same scenario, same fingerprint; chunked runs too", "[golden][determinism]") {
    const auto a = run_file("tests/data/tdp-zap.json");
    const auto b = run_file("tests/data/tdp-zap.json");
    CHECK(a.fingerprint == b.fingerprint);
    CHECK(a.events == b.events);
    CHECK(a.stats == b.stats);
    runner::RunOptions ro;
    int calls = 0;
    ro.progress = [&calls](double, std::uint64_t) { ++calls; };
    const auto c = run_file("tests/data/tdp-zap.json", std::nullopt, ro);
    CHECK(calls > 1);
    CHECK(c.fingerprint == a.fingerprint);
    CHECK(c.stats == a.stats);
}

TEST_CASE("golden: huge pages split by dirty logging and rebuilt", "[golden]") {
    // 64M of THP = 32 blocks of 2M.
    const auto eager = run_file("tests/data/tdp-split.json", "eager-split");
    CHECK(phase_stat(eager, "KVM_CREATE_MAPPINGS", "pages_2m") == 32);
    // Eager splitting turns every block into 512 4K SPTEs when logging is enabled.
    CHECK(phase_stat(eager, "enable dirty logging", "pages_2m") == 0);
    CHECK(phase_stat(eager, "enable dirty logging", "pages_4k") == 32 * 512);
    // Reading every page after logging is disabled maps 2M blocks again.
    CHECK(phase_stat(eager, "KVM_ADJUST_MAPPINGS", "pages_2m") == 32);
    const auto lazy = run_file("tests/data/tdp-split.json", "no-eager-split");
    // Without eager splitting the blocks stay until the first write to each faults.
    CHECK(phase_stat(lazy, "enable dirty logging", "pages_2m") == 32);
    CHECK(phase_stat(lazy, "KVM_UPDATE_MAPPINGS", "pages_2m") == 0);
    // Lazily, the split happens in the write faults of KVM_UPDATE_MAPPINGS instead.
    CHECK(phase_stat(lazy, "enable dirty logging", "pages_4k") == 0);
    CHECK(phase_stat(lazy, "KVM_UPDATE_MAPPINGS", "pages_4k") > 0);
    CHECK(phase_stat(lazy, "KVM_ADJUST_MAPPINGS", "pages_2m") == 32);
    CHECK(report::hex64(eager.fingerprint) == "136bc4e3a9748bbe");
    CHECK(report::hex64(lazy.fingerprint) == "27d0f95f96f3f8c0");
}

TEST_CASE("golden: each kvm_zap_gfn_range lock mode", "[golden]") {
    const auto w = run_file("tests/data/tdp-zap.json", "write");
    const auto wp = run_file("tests/data/tdp-zap.json", "write+precheck");
    const auto r = run_file("tests/data/tdp-zap.json", "read");
    const auto d = run_file("tests/data/tdp-zap.json", "drop_write_zap_read");
    for (const auto* x : {&w, &wp, &r, &d}) {
        CHECK(x->status == "completed");
        CHECK(x->guest_accesses == 4 * 3000);
    }
    // The write-locked zap makes faults wait for mmu_lock; the read-locked one does not hold
    // it for write while zapping.
    const auto* w_fault = lock(w, "read", "kvm_tdp_mmu_page_fault");
    const auto* r_zap_write = lock(r, "write", "kvm_zap_gfn_range");
    REQUIRE(w_fault);
    CHECK(w_fault->contended > 0);
    CHECK(lock(r, "read", "kvm_zap_gfn_range") != nullptr);
    if (r_zap_write) CHECK(r_zap_write->hold_ps.sum() < lock(w, "write", "kvm_zap_gfn_range")->hold_ps.sum());
    // Under the write lock every yield to a waiting fault costs a flush first.
    CHECK(stat(w, "remote_tlb_flush") > 5);
    CHECK(lock(d, "read", "kvm_zap_gfn_range") != nullptr);
    // The pre-check keeps faults in the zapped range off the lock.
    CHECK(lock(wp, "read", "kvm_tdp_mmu_page_fault")->wait_ps.sum() < w_fault->wait_ps.sum());
    CHECK(report::hex64(w.fingerprint) == "99ec933f3be8c664");
    CHECK(report::hex64(wp.fingerprint) == "0652a773e03186a3");
    CHECK(report::hex64(r.fingerprint) == "d61b2987d9260ddc");
    CHECK(report::hex64(d.fingerprint) == "13126ea38226d42e");
}

TEST_CASE("the seed suite runs: every scenario, every variant", "[golden][seeds]") {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(src("scenarios/seeds")))
        if (e.path().extension() == ".json") files.push_back("scenarios/seeds/" + e.path().filename().string());
    REQUIRE_FALSE(files.empty());
    for (const auto& f : files) {
        for (const auto& v : scenario::scenario_variants(src(f))) {
            INFO(f << " [" << v << "]");
            const auto r = run_file(f, v);
            CHECK(r.status == "completed");
            CHECK(r.guest_accesses > 0);
        }
    }
}
