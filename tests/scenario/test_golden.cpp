// Scenario-level regression tests: small scenarios through the loader, the real models and the
// runner, with their fingerprints and key counters pinned. A pinned value that changes means
// the simulated mechanism changed: update it only for an intended change, and say so.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

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

TEST_CASE("golden: arm64 seed 004 on THP: CMO bytes, TLBIs and lock waits per variant", "[golden][arm64]") {
    const auto before = run_file("tests/data/arm64-thp.json", "before");
    const auto after = run_file("tests/data/arm64-thp.json", "after");
    const auto rw = run_file("tests/data/arm64-thp.json", "rwlock");
    const auto fwb = run_file("tests/data/arm64-thp.json", "fwb");
    for (const auto* r : {&before, &after, &rw, &fwb}) CHECK(r->status == "completed");
    const std::uint64_t block = 2ULL << 20, page = 4096;
    // 32 blocks, 4 vCPUs convoyed: every vCPU faults on every block. Before, each fault cleans
    // the block; after, only the one that installs it.
    CHECK(phase_stat(before, "KVM_CREATE_MAPPINGS", "pf_taken") == 128);
    CHECK(phase_stat(before, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 128 * block);
    CHECK(phase_stat(after, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 32 * block);
    CHECK(phase_stat(rw, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 32 * block);
    CHECK(phase_stat(fwb, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 0);
    // UPDATE: a split per block (TLBI by IPA), then 4K mappings; every translation fault cleans
    // before, every install after.
    CHECK(phase_stat(before, "KVM_UPDATE_MAPPINGS", "stage2_block_to_table") == 32);
    CHECK(phase_stat(after, "KVM_UPDATE_MAPPINGS", "__kvm_tlb_flush_vmid_ipa") == 32);
    CHECK(phase_stat(after, "KVM_UPDATE_MAPPINGS", "dcache_clean_poc_bytes") ==
          phase_stat(after, "KVM_UPDATE_MAPPINGS", "pf_fixed") * page);
    CHECK(phase_stat(before, "KVM_UPDATE_MAPPINGS", "dcache_clean_poc_bytes") >
          3 * phase_stat(after, "KVM_UPDATE_MAPPINGS", "dcache_clean_poc_bytes"));
    // ADJUST (the seed's KVM_REBUILD_BLOCKS): a table replaced by a block (TLBI by VMID) per block.
    CHECK(phase_stat(after, "KVM_ADJUST_MAPPINGS", "stage2_table_to_block") == 32);
    CHECK(phase_stat(after, "KVM_ADJUST_MAPPINGS", "__kvm_tlb_flush_vmid") == 32);
    CHECK(phase_stat(before, "KVM_ADJUST_MAPPINGS", "dcache_clean_poc_bytes") == 128 * block);
    CHECK(phase_stat(after, "KVM_ADJUST_MAPPINGS", "dcache_clean_poc_bytes") == 32 * block);
    // The faults that wait for mmu_lock wait less after, and not at all under the rwlock, where
    // the others find the installing fault's PTE locked and fault again.
    const auto* bw = lock(before, "exclusive", "user_mem_abort");
    const auto* aw = lock(after, "exclusive", "user_mem_abort");
    REQUIRE(bw);
    REQUIRE(aw);
    CHECK(aw->wait_ps.sum() * 2 < bw->wait_ps.sum());
    REQUIRE(lock(rw, "read", "user_mem_abort"));
    CHECK(lock(rw, "read", "user_mem_abort")->contended == 0);
    CHECK(stat(rw, "stage2_pte_locked") > 1000);
    for (const char* st : {"KVM_CREATE_MAPPINGS", "KVM_UPDATE_MAPPINGS", "KVM_ADJUST_MAPPINGS"}) {
        INFO(st);
        const auto t = [&](const runner::Result& r) {
            for (const auto& p : r.phases)
                if (p.name == st) return p.sim_time_ns;
            return 0.0;
        };
        CHECK(t(after) < t(before));
        CHECK(t(fwb) < t(before));
    }
    CHECK(report::hex64(before.fingerprint) == "24e70642f4ed0676");
    CHECK(report::hex64(after.fingerprint) == "36fc20e0e1432f03");
    CHECK(report::hex64(rw.fingerprint) == "e284d4b2350499d9");
    CHECK(report::hex64(fwb.fingerprint) == "c94762eda742b2b9");
}

TEST_CASE("golden: arm64 seed 004 on hugetlb 1G and on 4K pages", "[golden][arm64]") {
    const auto hb = run_file("tests/data/arm64-hugetlb.json", "before");
    const auto ha = run_file("tests/data/arm64-hugetlb.json", "after");
    // Two 1 GiB blocks, two vCPUs: four 1 GiB cleans before, two after.
    CHECK(phase_stat(hb, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 4ULL << 30);
    CHECK(phase_stat(ha, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 2ULL << 30);
    CHECK(phase_stat(ha, "KVM_ADJUST_MAPPINGS", "stage2_table_to_block") == 2);
    CHECK(phase_stat(ha, "KVM_UPDATE_MAPPINGS", "pf_taken") == phase_stat(hb, "KVM_UPDATE_MAPPINGS", "pf_taken"));
    CHECK(report::hex64(hb.fingerprint) == "549e0d37417da974");
    CHECK(report::hex64(ha.fingerprint) == "a0bda5745328771b");
    const auto ab = run_file("tests/data/arm64-anon.json", "before");
    const auto aa = run_file("tests/data/arm64-anon.json", "after");
    CHECK(phase_stat(ab, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") ==
          phase_stat(ab, "KVM_CREATE_MAPPINGS", "pf_taken") * 4096);
    CHECK(phase_stat(aa, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 4096ULL * 4096);
    // UPDATE on 4K pages: permission faults only (relax_perms, no CMO): the same either way.
    CHECK(phase_stat(ab, "KVM_UPDATE_MAPPINGS", "dcache_clean_poc_bytes") == 0);
    CHECK(phase_stat(ab, "KVM_UPDATE_MAPPINGS", "kvm_pgtable_stage2_relax_perms") ==
          phase_stat(ab, "KVM_UPDATE_MAPPINGS", "pf_taken"));
    CHECK(ab.phases[2].sim_time_ns == aa.phases[2].sim_time_ns);
    CHECK(report::hex64(ab.fingerprint) == "f34fbf79565ac419");
    CHECK(report::hex64(aa.fingerprint) == "66cbee130f9407d8");
}

namespace {
// A seed scenario that is too large for the unit tests (the main job runs it at full size) runs
// here as a copy with kvm_page_table_test's -b and -v cut down.
std::string unit_sized(const std::string& rel, const std::string& dir) {
    nlohmann::json doc = nlohmann::json::parse(std::ifstream(src(rel)));
    const auto& wl = doc["workload"];
    if (!wl.contains("preset") || wl["preset"] != "kvm_page_table_test") return src(rel);
    std::istringstream in(wl["args"].get<std::string>());
    std::vector<std::string> args;
    for (std::string a; in >> a;) args.push_back(a);
    bool big = false;
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
        if (args[i] == "-b" && args[i + 1].back() == 'G') {
            args[i + 1] = "64M";  // kvm_page_table_test rounds it up to one 1 GiB page for hugetlb 1G
            big = true;
        }
        if (args[i] == "-v" && std::stoi(args[i + 1]) > 2) {
            args[i + 1] = "2";
            big = true;
        }
    }
    if (!big) return src(rel);
    std::string joined;
    for (const auto& a : args) joined += (joined.empty() ? "" : " ") + a;
    doc["workload"]["args"] = joined;
    const std::string out = dir + "/" + std::filesystem::path(rel).filename().string();
    std::ofstream(out) << doc.dump();
    return out;
}
}  // namespace

TEST_CASE("the seed suite runs: every scenario, every variant", "[golden][seeds]") {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(src("scenarios/seeds")))
        if (e.path().extension() == ".json") files.push_back("scenarios/seeds/" + e.path().filename().string());
    std::sort(files.begin(), files.end());
    REQUIRE_FALSE(files.empty());
    const fs::path dir = fs::temp_directory_path() / ("kvmsim-seeds-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const auto& f : files) {
        const std::string path = unit_sized(f, dir.string());
        for (const auto& v : scenario::scenario_variants(src(f))) {
            INFO(f << " [" << v << "]" << (path == src(f) ? "" : " (cut down: " + path + ")"));
            scenario::LoadOptions o;
            o.models = &models::builtin_models();
            o.variant = v;
            o.host_dirs = {src("scenarios/hosts")};
            const auto r = runner::run(scenario::load_scenario(path, o));
            CHECK(r.status == "completed");
            CHECK(r.guest_accesses > 0);
        }
    }
    fs::remove_all(dir);
}
