// Scenario-level regression tests: small scenarios through the loader, the real models and the
// runner, with their fingerprints and key counters pinned. A pinned value that changes means
// the simulated mechanism changed: update it only for an intended change, and say so.
#include <catch2/catch.hpp>
#include <cmath>
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
                        const runner::RunOptions& ro = {}, std::optional<std::uint64_t> seed = std::nullopt) {
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.variant = std::move(variant);
    o.seed = seed;
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
double phase_time(const runner::Result& r, const std::string& phase) {
    for (const auto& p : r.phases)
        if (p.name == phase) return p.sim_time_ns;
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
    // vCPU 1 reads (the host maps the zero page, KVM a read-only SPTE), vCPU 0 writes: its GUP
    // breaks the COW, whose invalidation zaps the SPTE, and it faults again: two fixes per page.
    CHECK(phase_stat(r, "KVM_CREATE_MAPPINGS", "pf_fixed") == 2 * 4096);
    CHECK(phase_stat(r, "KVM_CREATE_MAPPINGS", "host_wp_page_copy") == 4096);
    CHECK(report::hex64(r.fingerprint) == "d633a3cbe3d39821");
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

TEST_CASE("a run stopped at a simulated time is the start of the whole run", "[golden][determinism]") {
    runner::RunOptions ro;
    ro.until = engine::Time::us(500);
    const auto part = run_file("tests/data/tdp-fault.json", std::nullopt, ro);
    const auto whole = run_file("tests/data/tdp-fault.json");
    CHECK(part.status == "stopped");
    CHECK(part.sim_time_ns == 500000.0);
    CHECK(part.events < whole.events);
    CHECK(part.guest_accesses < whole.guest_accesses);
    CHECK(whole.status == "completed");
    // With a progress callback the run goes in chunks and still stops at the same point.
    int calls = 0;
    ro.progress = [&calls](double, std::uint64_t) { ++calls; };
    const auto chunked = run_file("tests/data/tdp-fault.json", std::nullopt, ro);
    CHECK(calls >= 1);
    CHECK(chunked.status == "stopped");
    CHECK(chunked.fingerprint == part.fingerprint);
    CHECK(chunked.events == part.events);
}

TEST_CASE("a run that draws no random number is the same under every seed", "[golden][determinism]") {
    // kvm_page_table_test walks sequentially: nothing asks for a random stream.
    const auto a = run_file("tests/data/tdp-fault.json", std::nullopt, {}, 1);
    const auto b = run_file("tests/data/tdp-fault.json", std::nullopt, {}, 977);
    CHECK_FALSE(a.seed_used);
    CHECK_FALSE(b.seed_used);
    CHECK(a.fingerprint == b.fingerprint);
    CHECK(a.stats == b.stats);
    // Random streams take the seed, and it shows.
    const auto c = run_file("tests/data/tdp-zap.json", std::nullopt, {}, 1);
    const auto d = run_file("tests/data/tdp-zap.json", std::nullopt, {}, 977);
    CHECK(c.seed_used);
    CHECK(d.seed_used);
    CHECK(c.fingerprint != d.fingerprint);
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
    CHECK(report::hex64(eager.fingerprint) == "c357df794432bf03");
    CHECK(report::hex64(lazy.fingerprint) == "dd894ed409a583fc");
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
    CHECK(report::hex64(w.fingerprint) == "00c1ca15e1702a16");
    CHECK(report::hex64(wp.fingerprint) == "dab6167d59d238c0");
    CHECK(report::hex64(r.fingerprint) == "21571cfb3d9c8d67");
    CHECK(report::hex64(d.fingerprint) == "cb9a7a6eb7fb2582");
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
    CHECK(report::hex64(before.fingerprint) == "120ae4485ca2be25");
    CHECK(report::hex64(after.fingerprint) == "e90496bd5ff3f2d4");
    CHECK(report::hex64(rw.fingerprint) == "55868085e0a0d194");
    CHECK(report::hex64(fwb.fingerprint) == "e5031726f1c9537d");
}

TEST_CASE("golden: arm64 seed 004 on THP with the huge zero page: readers map it, writers split it, 4 KiB after",
          "[golden][arm64]") {
    const auto before = run_file("tests/data/arm64-thp-zero.json", "before");
    const auto after = run_file("tests/data/arm64-thp-zero.json", "after");
    for (const auto* r : {&before, &after}) {
        CHECK(r->status == "completed");
        // CREATE: a reader reaches every 2 MiB first and maps the huge zero page (a read-only
        // block); the writer's COW splits the PMD (v5.8+: its invalidation unmaps the block) and
        // copies one 4 KiB page.
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_huge_zero_page_mapped") == 32);
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_split_huge_pmd") == 32);
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_wp_page_copy") == 32);
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "stage2_unmap_ptes") == 32);
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "mmu_invalidate_retry") > 0);
        // The host maps 4 KiB pages from then on: no block to split or rebuild; every page of
        // the 64 MiB mapped at 4 KiB by ADJUST.
        for (const char* st : {"KVM_UPDATE_MAPPINGS", "KVM_ADJUST_MAPPINGS"}) {
            CHECK(phase_stat(*r, st, "stage2_block_to_table") == 0);
            CHECK(phase_stat(*r, st, "stage2_table_to_block") == 0);
        }
        CHECK(phase_stat(*r, "KVM_ADJUST_MAPPINGS", "pages_4k") == 16384);
        CHECK(phase_stat(*r, "KVM_ADJUST_MAPPINGS", "pages_2m") == 0);
    }
    // Before, every translation fault cleans its page; after, only the installs (one per page).
    CHECK(phase_stat(after, "KVM_ADJUST_MAPPINGS", "dcache_clean_poc") == phase_stat(after, "KVM_ADJUST_MAPPINGS", "pf_fixed"));
    CHECK(phase_stat(before, "KVM_ADJUST_MAPPINGS", "dcache_clean_poc") >
          3 * phase_stat(after, "KVM_ADJUST_MAPPINGS", "dcache_clean_poc"));
    CHECK(report::hex64(before.fingerprint) == "1984922f287ae613");
    CHECK(report::hex64(after.fingerprint) == "3dc7f2487297889c");
}

TEST_CASE("golden: arm64 seed 004 on hugetlb 1G and on 4K pages", "[golden][arm64]") {
    const auto hb = run_file("tests/data/arm64-hugetlb.json", "before");
    const auto ha = run_file("tests/data/arm64-hugetlb.json", "after");
    // Two 1 GiB blocks, two vCPUs: four 1 GiB cleans before, two after.
    CHECK(phase_stat(hb, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 4ULL << 30);
    CHECK(phase_stat(ha, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") == 2ULL << 30);
    CHECK(phase_stat(ha, "KVM_ADJUST_MAPPINGS", "stage2_table_to_block") == 2);
    // UPDATE's faults come from the two vCPUs writing every 4 KiB page of the split blocks; how
    // many of the second's find the page already mapped depends on timing, within a few.
    CHECK(std::abs(static_cast<double>(phase_stat(ha, "KVM_UPDATE_MAPPINGS", "pf_taken")) -
                   static_cast<double>(phase_stat(hb, "KVM_UPDATE_MAPPINGS", "pf_taken"))) <
          1e-3 * static_cast<double>(phase_stat(hb, "KVM_UPDATE_MAPPINGS", "pf_taken")));
    CHECK(report::hex64(hb.fingerprint) == "ed47ab45ad2f28ab");
    CHECK(report::hex64(ha.fingerprint) == "e1b5aa1d14369611");
    const auto ab = run_file("tests/data/arm64-anon.json", "before");
    const auto aa = run_file("tests/data/arm64-anon.json", "after");
    // CREATE: where a reader reaches a page first, it maps the zero page read-only, a writer
    // then copies it (wp_page_copy) and change_pte maps the copy where a level-3 table is linked;
    // which comes first depends on timing (the vCPUs run on both sockets). v5.12 cleans in
    // user_mem_abort on every map, in kvm_set_spte_hva on every call (one per COW), and on every
    // unmap (the COW's invalidation).
    for (const auto* r : {&ab, &aa}) {
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_zero_page_mapped") > 512);
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_wp_page_copy") ==
              phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_zero_page_mapped"));
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "kvm_set_spte_gfn_mapped") <=
              phase_stat(*r, "KVM_CREATE_MAPPINGS", "host_wp_page_copy"));
        CHECK(phase_stat(*r, "KVM_CREATE_MAPPINGS", "dcache_clean_poc_bytes") ==
              phase_stat(*r, "KVM_CREATE_MAPPINGS", "dcache_clean_poc") * 4096);
    }
    CHECK(phase_stat(ab, "KVM_CREATE_MAPPINGS", "dcache_clean_poc") ==
          phase_stat(ab, "KVM_CREATE_MAPPINGS", "kvm_pgtable_stage2_map") +
              phase_stat(ab, "KVM_CREATE_MAPPINGS", "host_wp_page_copy") +
              phase_stat(ab, "KVM_CREATE_MAPPINGS", "stage2_unmap_ptes"));
    CHECK(phase_stat(aa, "KVM_CREATE_MAPPINGS", "dcache_clean_poc") < phase_stat(ab, "KVM_CREATE_MAPPINGS", "dcache_clean_poc"));
    // UPDATE on 4K pages: permission faults only (relax_perms, no CMO): the same either way.
    CHECK(phase_stat(ab, "KVM_UPDATE_MAPPINGS", "dcache_clean_poc_bytes") == 0);
    CHECK(phase_stat(ab, "KVM_UPDATE_MAPPINGS", "kvm_pgtable_stage2_relax_perms") ==
          phase_stat(ab, "KVM_UPDATE_MAPPINGS", "pf_taken"));
    // The same work either way; only the cache and line state CREATE left behind differs.
    CHECK(std::abs(ab.phases[2].sim_time_ns - aa.phases[2].sim_time_ns) < 1e-5 * ab.phases[2].sim_time_ns);
    CHECK(report::hex64(ab.fingerprint) == "a6ebff695881ee23");
    CHECK(report::hex64(aa.fingerprint) == "50abfb9592fc032d");
}

// Seed scenarios are full-size selftest runs (the README's main job runs them whole); here each
// variant runs its first simulated 2 ms, which loads it, builds its model and exercises it.
TEST_CASE("the seed suite runs: every scenario, every variant", "[golden][seeds]") {
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(src("scenarios/seeds")))
        if (e.path().extension() == ".json") files.push_back("scenarios/seeds/" + e.path().filename().string());
    std::sort(files.begin(), files.end());
    REQUIRE_FALSE(files.empty());
    for (const auto& f : files) {
        for (const auto& v : scenario::scenario_variants(src(f))) {
            INFO(f << " [" << v << "]");
            runner::RunOptions ro;
            ro.until = engine::Time::ms(2);
            const auto r = run_file(f, v, ro);
            CHECK((r.status == "completed" || r.status == "stopped"));
            // A 1 GiB first touch zeroes for longer than this: a fault begun counts too.
            CHECK(r.guest_accesses + r.guest_exits > 0);
        }
    }
}

TEST_CASE("golden: seed 000, child SP lookups around a nested guest", "[golden][x86_shadow]") {
    const auto a = run_file("tests/data/shadow-lookup.json", "always");
    const auto b = run_file("tests/data/shadow-lookup.json", "skip_bool");
    const auto c = run_file("tests/data/shadow-lookup.json", "skip_count");
    for (const auto* x : {&a, &b, &c}) {
        CHECK(x->status == "completed");
        // 4 vCPUs x 32 pages of 2M per stage; in stage 2 vCPUs 0 and 1 run L2.
        CHECK(phase_stat(*x, "shatter 1", "drop_large_spte") == 128);
        CHECK(phase_stat(*x, "shatter 3", "drop_large_spte") == 128);
        CHECK(stat(*x, "mmu_cache_miss") == 1415);  // the same SPs are created either way
        CHECK(stat(*x, "mmu_shadow_zapped") == 67);  // the nested tree, at nested_stop
    }
    // Before: every new child SP is looked up; the bool stops that until the first nested root;
    // the count also after the last one is gone.
    CHECK(phase_stat(a, "shatter 1", "kvm_mmu_find_shadow_page") == 128);
    CHECK(phase_stat(b, "shatter 1", "kvm_mmu_find_shadow_page") == 0);
    CHECK(phase_stat(c, "shatter 1", "kvm_mmu_find_shadow_page") == 0);
    for (const auto* x : {&a, &b, &c}) CHECK(phase_stat(*x, "shatter 2", "kvm_mmu_find_shadow_page") == 130);
    CHECK(phase_stat(b, "shatter 3", "kvm_mmu_find_shadow_page") == 128);
    CHECK(phase_stat(c, "shatter 3", "kvm_mmu_find_shadow_page") == 0);
    CHECK(phase_stat(b, "shatter 1", "kvm_mmu_find_shadow_page_ps") == 0);
    CHECK(phase_stat(a, "shatter 1", "kvm_mmu_find_shadow_page_ps") > 0);
    // mmu_lock around the state: on both root allocations (patch) or only the first (review).
    CHECK(stat(a, "indirect_mmu_mmu_lock") == 0);
    CHECK(stat(b, "indirect_mmu_mmu_lock") == 2);
    CHECK(stat(c, "indirect_mmu_mmu_lock") == 1);
    CHECK(report::hex64(a.fingerprint) == "8b8ece4729f35dda");
    CHECK(report::hex64(b.fingerprint) == "8087b0716c9f0d6f");
    CHECK(report::hex64(c.fingerprint) == "cd74ab4627c452b6");
}

TEST_CASE("golden: seed 001, eager page splitting for nested MMUs", "[golden][x86_shadow]") {
    const auto min = run_file("tests/data/shadow-split.json", "min");
    const auto two = run_file("tests/data/shadow-split.json", "2min");
    const auto p40 = run_file("tests/data/shadow-split.json", "min+40,free-at-flags-change");
    const auto lazy = run_file("tests/data/shadow-split.json", "no-eager-split");
    for (const auto* x : {&min, &two, &p40}) {
        CHECK(phase_stat(*x, "enable dirty logging", "kvm_mmu_split_huge_page") == 128);
        CHECK(stat(*x, "pte_list_desc_alloc") == 1215);  // the aliased gfns (2%)
    }
    // Lock drops (and -EAGAIN restarts) follow the cache capacity.
    CHECK(stat(min, "need_topup_split_caches_or_resched") == 128);
    CHECK(stat(two, "need_topup_split_caches_or_resched") == 6);
    CHECK(stat(p40, "need_topup_split_caches_or_resched") == 29);
    CHECK(stat(min, "shadow_mmu_split_rmap_restart") == 128);
    CHECK(lock(min, "write", "kvm_shadow_mmu_try_split_huge_pages")->acquisitions == 129);
    CHECK(lock(two, "write", "kvm_shadow_mmu_try_split_huge_pages")->acquisitions == 7);
    // Memory held after dirty logging is disabled: kept until VM destruction, or freed.
    CHECK(stat(min, "split_caches_bytes") == 201984);
    CHECK(stat(two, "split_caches_bytes") == 246272);
    CHECK(stat(p40, "split_caches_bytes") == 0);
    CHECK(phase_stat(p40, "enable dirty logging", "split_caches_leaked_if_vm_destroyed_bytes") > 0);
    CHECK(stat(p40, "split_caches_leaked_if_vm_destroyed_bytes") == 0);
    // Without eager splitting the L2 writes split the huge pages in the fault path.
    CHECK(stat(lazy, "kvm_mmu_split_huge_page") == 0);
    CHECK(phase_stat(lazy, "L2 writes", "drop_large_spte") == 128);
    CHECK(report::hex64(min.fingerprint) == "59378bdb143b2281");
    CHECK(report::hex64(two.fingerprint) == "7244db8d70e6e0b2");
    CHECK(report::hex64(p40.fingerprint) == "ed2d83b36f8c4c0e");
    CHECK(report::hex64(lazy.fingerprint) == "47fc1abd545afa75");
}

TEST_CASE("golden: dirty_log_perf_test on the shadow MMU (tdp_mmu off), with and without initially-all-set",
          "[golden][x86_shadow][dirty]") {
    const auto g = run_file("tests/data/shadow-dirty-log.json", "get");
    const auto m = run_file("tests/data/shadow-dirty-log.json", "initially-all-set");
    CHECK(g.status == "completed");
    CHECK(m.status == "completed");
    // 2 vCPUs x 4M: 2048 pages, 32 bitmap words.
    for (const auto* x : {&g, &m}) CHECK(phase_stat(*x, "Populate memory", "pf_fixed") == 2048);
    // -g: the enable protects every page; each get harvests and protects them again; each dirty
    // pass is 2048 write-protection faults fixed fast.
    CHECK(phase_stat(g, "Enabling dirty logging", "spte_write_protected") == 2048);
    for (const char* it : {"Iteration 1", "Iteration 2"}) {
        const std::string i = it;
        CHECK(phase_stat(g, i + " dirty memory", "pf_fast") == 2048);
        CHECK(phase_stat(g, i + " dirty memory", "mark_page_dirty_in_slot") == 2048);
        CHECK(phase_stat(g, i + " get dirty log", "dirty_pages_harvested") == 2048);
        CHECK(phase_stat(g, i + " get dirty log", "dirty_bitmap_words_walked") == 32);
        CHECK(phase_stat(g, i + " get dirty log", "kvm_arch_mmu_enable_log_dirty_pt_masked") == 32);
        CHECK(phase_stat(g, i + " get dirty log", "spte_write_protected") == 2048);
        CHECK(phase_stat(g, i + " get dirty log", "remote_tlb_flush") == 1);
    }
    CHECK(lock(g, "write", "kvm_get_dirty_log_protect")->acquisitions == 2);
    // Initially-all-set: nothing protected at enable, so the first pass takes no fault; get only
    // copies the bitmap; clear protects.
    CHECK(phase_stat(m, "Enabling dirty logging", "spte_write_protected") == 0);
    CHECK(phase_stat(m, "Iteration 1 dirty memory", "pf_taken") == 0);
    CHECK(phase_stat(m, "Iteration 2 dirty memory", "pf_fast") == 2048);
    for (const char* it : {"Iteration 1", "Iteration 2"}) {
        const std::string i = it;
        CHECK(phase_stat(m, i + " get dirty log", "dirty_pages_harvested") == 2048);
        CHECK(phase_stat(m, i + " get dirty log", "remote_tlb_flush") == 0);
        CHECK(phase_stat(m, i + " clear dirty log", "dirty_bitmap_words_walked") == 32);
        CHECK(phase_stat(m, i + " clear dirty log", "spte_write_protected") == 2048);
        CHECK(phase_stat(m, i + " clear dirty log", "remote_tlb_flush") == 1);
    }
    CHECK_FALSE(lock(m, "write", "kvm_get_dirty_log_protect"));
    CHECK(lock(m, "write", "kvm_clear_dirty_log_protect")->acquisitions == 2);
    // Disabling walks the rmaps (kvm_rmap_zap_collapsible_sptes) and zaps nothing on 4K pages.
    for (const auto* x : {&g, &m}) {
        CHECK(lock(*x, "write", "kvm_mmu_zap_collapsible_sptes")->acquisitions == 1);
        CHECK(stat(*x, "kvm_mmu_zap_collapsible_spte") == 0);
    }
    CHECK(report::hex64(g.fingerprint) == "55b9ed9196f659fd");
    CHECK(report::hex64(m.fingerprint) == "1f892d60e2ca70ab");
}

TEST_CASE("golden: x86_shadow runs are reproducible", "[golden][determinism][x86_shadow]") {
    const auto a = run_file("tests/data/shadow-split.json", "2min");
    const auto b = run_file("tests/data/shadow-split.json", "2min");
    CHECK(a.fingerprint == b.fingerprint);
    CHECK(a.stats == b.stats);
    CHECK(a.events == b.events);
}

namespace {
// A storm of `smis` SMIs, each answered by an RSM: two resets per SMI (the second returns early),
// one per RSM.
void check_smm_storm(const runner::Result& r, std::uint64_t smis) {
    CHECK(r.status == "completed");
    CHECK(stat(r, "kvm_smm_transition_enter") == smis);
    CHECK(stat(r, "kvm_smm_transition_exit") == smis);
    CHECK(stat(r, "kvm_init_mmu") == 3 * smis);
    CHECK(stat(r, "kvm_init_mmu_full") == 2 * smis);
}
}  // namespace

TEST_CASE("golden: seed 002, SMM storm during a SeaBIOS-like boot", "[golden][seeds]") {
    const char* f = "scenarios/seeds/002-smm-mmu-context.json";
    const auto before = run_file(f, "before"), once = run_file(f, "init-constant-once"),
               kept = run_file(f, "roots-preserved"), both = run_file(f, "both");
    for (const auto* r : {&before, &once, &kept, &both}) check_smm_storm(*r, 300);
    // Constant fields once: 19 stores per full init become 3, and init time falls.
    CHECK(stat(before, "mmu_init_field_writes") == 600 * 19);
    CHECK(stat(once, "mmu_init_field_writes") == 600 * 3);
    // KVM's state-save image (8 lines written at each SMI, read at each RSM) and the SMI
    // handler's 40 KiB (640 lines) per SMI go through vCPU0's caches.
    for (const auto* r : {&before, &once, &kept, &both}) {
        CHECK(stat(*r, "smram_state_save_lines") == 600 * 8);
        CHECK(stat(*r, "smi_handler_lines") == 300 * 640);
    }
    // The handler leaves struct kvm_mmu cold in L1 at every RSM: the unload's two lines miss, and
    // a full init's stores to lines 2 and 3 (shadow_zero_check) miss too unless constant once;
    // plus the first SMI's cold start (4 and 2).
    CHECK(stat(before, "mmu_init_cache_miss") == 300 * 4 + 4);
    CHECK(stat(once, "mmu_init_cache_miss") == 300 * 2 + 2);
    CHECK(stat(kept, "mmu_init_cache_miss") == 300 * 4 + 4);
    CHECK(stat(both, "mmu_init_cache_miss") == 300 * 2 + 2);
    // Those two lines come from L2 (6.7 ns instead of 1.9 ns): 300 x 2 x 4.8 ns = 2.88 us of the
    // full inits' time; constant_once's init touches only lines the unload has just brought back.
    CHECK(stat(before, "kvm_init_mmu_ps") == 50546200 + 300 * 2 * 4800);
    CHECK(stat(once, "kvm_init_mmu_ps") == 19290000);
    CHECK(stat(kept, "kvm_init_mmu_ps") == stat(before, "kvm_init_mmu_ps"));
    CHECK(stat(both, "kvm_init_mmu_ps") == stat(once, "kvm_init_mmu_ps"));
    // Roots dropped: rebuilt by faults after every RSM; preserved: the 1024 first-touch faults,
    // and a second fix for each of the 735 pages read first (the zero page, mapped read-only) and
    // written later (the COW's invalidation zaps the SPTE; the fault retries and maps it again).
    CHECK(stat(before, "root_rebuild_faults") == 20680);
    CHECK(stat(before, "tdp_mmu_root_free") == 600);
    CHECK(stat(kept, "root_rebuild_faults") == 0);
    CHECK(stat(kept, "host_wp_page_copy") == 735);
    CHECK(stat(kept, "pf_fixed") == 1024 + 735);
    CHECK(stat(kept, "tdp_mmu_root_reuse") == 599);
    CHECK(report::hex64(before.fingerprint) == "95f4392b264ed12f");
    CHECK(report::hex64(once.fingerprint) == "580c5c248b3de604");
    CHECK(report::hex64(kept.fingerprint) == "f1a244f5da91ea14");
    CHECK(report::hex64(both.fingerprint) == "8f240cc05968b77e");
}

TEST_CASE("golden: huge page recovery while the vCPUs run (x86_tdp huge_page_recovery)", "[x86_tdp][golden]") {
    const char* f = "scenarios/selftests/x86-huge-page-recovery.json";
    const std::string DIS = "Disabling dirty logging";
    const auto zap = run_file(f, "zap"), batched = run_file(f, "zap_batched_flush"), in_place = run_file(f, "in_place");
    // 8 vCPUs x 256 MiB of 2 MiB hugetlb pages: 1024 page tables to recover after eager splitting
    // (initially-all-set: at the first clear).
    for (const auto* r : {&zap, &batched, &in_place}) {
        CHECK(r->status == "completed");
        CHECK(phase_stat(*r, "Iteration 1 clear dirty log", "kvm_mmu_split_huge_page") == 1024);
    }
    // zap: a flush per table, and the running vCPUs fault 2 MiB pages back in.
    CHECK(phase_stat(zap, DIS, "remote_tlb_flush") == 1024);
    CHECK(stat(zap, "tdp_mmu_zap_spte_atomic") == 1024);
    CHECK(stat(zap, "pages_2m") < 1024);
    // Batched: the same zaps, the flushes at the yields and the end.
    CHECK(phase_stat(batched, DIS, "remote_tlb_flush") < 16);
    CHECK(stat(batched, "tdp_mmu_zap_spte_atomic") == 0);
    // In place: every table becomes a huge SPTE, nothing to refault.
    CHECK(stat(in_place, "huge_pages_recovered") == 1024);
    CHECK(stat(in_place, "pages_2m") == 1024);
    CHECK(phase_stat(in_place, DIS, "remote_tlb_flush") == phase_stat(batched, DIS, "remote_tlb_flush"));
    CHECK(phase_stat(in_place, DIS, "pf_fixed") < phase_stat(zap, DIS, "pf_fixed"));
    CHECK(report::hex64(zap.fingerprint) == "a91a03fab43d3c80");
    CHECK(report::hex64(batched.fingerprint) == "9b57f51d989aa7da");
    CHECK(report::hex64(in_place.fingerprint) == "c6994c75cea835b3");
}

TEST_CASE("golden: x86_tdp fault_split, a dirty-logging write fault under a 2M SPTE", "[x86_tdp][golden]") {
    const char* f = "scenarios/selftests/x86-fault-split.json";
    const auto zap = run_file(f, "zap"), in_place = run_file(f, "in_place");
    const std::string IT1 = "Iteration 1 dirty memory";
    for (const auto* r : {&zap, &in_place}) CHECK(r->status == "completed");
    // 4 x 256M of 2M pages: 512 huge SPTEs, each met by one write fault.
    CHECK(phase_stat(zap, IT1, "pf_huge_spte_zapped") == 512);
    CHECK(phase_stat(zap, IT1, "kvm_mmu_split_huge_page") == 0);
    CHECK(phase_stat(in_place, IT1, "kvm_mmu_split_huge_page") == 512);
    // zap: a flush per huge SPTE and every page faulted in under the lock; in place: no flush,
    // the other 511 pages of each are fast-path fixes.
    CHECK(phase_stat(zap, IT1, "remote_tlb_flush") == 512);
    CHECK(phase_stat(in_place, IT1, "remote_tlb_flush") == 0);
    CHECK(phase_stat(zap, IT1, "pf_fast") == 0);
    CHECK(phase_stat(in_place, IT1, "pf_fast") == 512 * 511);
    CHECK(phase_time(in_place, IT1) * 3 < phase_time(zap, IT1));
    CHECK(report::hex64(zap.fingerprint) == "92ad7c0e109fb99e");
    CHECK(report::hex64(in_place.fingerprint) == "79a6732aa8811bf4");
}

// dirty_log_perf_test -v 8 -b 256M -i 3 without (wp) and with PML, either x86 MMU. The preset's
// default: initially-all-set, so pass 1 finds every page dirty already; 8 x 64K pages of 4 KiB,
// each cleared and rewritten in passes 2 and 3.
static void check_pml_passes(const runner::Result& wp, const runner::Result& pml) {
    for (const auto* r : {&wp, &pml}) CHECK(r->status == "completed");
    const std::string CL = "Iteration 1 clear dirty log";
    CHECK(phase_stat(wp, CL, "spte_write_protected") == 524288);
    CHECK(phase_stat(pml, CL, "spte_dirty_cleared") == 524288);
    CHECK(phase_stat(pml, CL, "spte_write_protected") == 0);
    for (const std::string it : {"Iteration 2", "Iteration 3"}) {
        const std::string DM = it + " dirty memory", GET = it + " get dirty log";
        // Write protection: every page's first write is a fast_page_fault exit.
        CHECK(phase_stat(wp, DM, "pf_taken") == 524288);
        CHECK(phase_stat(wp, DM, "pf_fast") == 524288);
        // PML: no page fault; per vCPU the 513th, 1025th, ... write finds the buffer full (127 of
        // 65536), the last 512 are flushed by KVM_GET_DIRTY_LOG's kick.
        CHECK(phase_stat(pml, DM, "pf_taken") == 0);
        CHECK(phase_stat(pml, DM, "handle_pml_full") == 8 * 127);
        CHECK(phase_stat(pml, DM, "vmx_flush_pml_buffer_entries") == 8 * 127 * 512);
        CHECK(phase_stat(pml, GET, "vmx_flush_pml_buffer_entries") == 8 * 512);
        CHECK(phase_time(pml, DM) * 4 < phase_time(wp, DM));
    }
    // Both report the same dirty pages.
    CHECK(stat(wp, "mark_page_dirty_in_slot") == stat(pml, "mark_page_dirty_in_slot"));
}

TEST_CASE("golden: x86_tdp dirty logging with and without PML (dirty_log_perf_test -v 8 -b 256M -i 3)",
          "[x86_tdp][golden][pml]") {
    const char* f = "scenarios/selftests/x86-pml.json";
    const auto wp = run_file(f, "wrprot"), pml = run_file(f, "pml");
    check_pml_passes(wp, pml);
    CHECK(report::hex64(wp.fingerprint) == "f5620fc2da4c8a24");
    CHECK(report::hex64(pml.fingerprint) == "b25418cc8916ba3b");
}

TEST_CASE("golden: the shadow MMU's dirty logging with and without PML (dirty_log_perf_test -v 8 -b 256M -i 3)",
          "[x86_shadow][golden][pml]") {
    const char* f = "scenarios/selftests/x86-shadow-pml.json";
    const auto wp = run_file(f, "wrprot"), pml = run_file(f, "pml"), old = run_file(f, "pml-v5.11");
    CHECK(old.status == "completed");
    check_pml_passes(wp, pml);
    // v5.11's disable sets the 524288 cleared Dirty bits back through the rmaps, under mmu_lock.
    const std::string DIS = "Disabling dirty logging";
    CHECK(phase_stat(old, DIS, "spte_dirty_set") == 524288);
    CHECK(lock(old, "write", "kvm_mmu_slot_set_dirty")->acquisitions > 1);  // a walk of ~13 ms yields every 3 ms
    CHECK_FALSE(lock(pml, "write", "kvm_mmu_slot_set_dirty"));
    CHECK(phase_time(old, DIS) > phase_time(pml, DIS));
    CHECK(report::hex64(wp.fingerprint) == "6f65a5808edfc79b");
    CHECK(report::hex64(pml.fingerprint) == "cf87f0ccabfca32c");
    CHECK(report::hex64(old.fingerprint) == "e19cb5ba3eae6b41");
}

TEST_CASE("golden: x86_shadow eager page splitting with the TDP MMU off, on 1G pages", "[x86_shadow][golden]") {
    const char* f = "scenarios/selftests/x86-shadow-eager-split.json";
    const auto lazy = run_file(f, "no_eager_split"), eager = run_file(f, "eager_split");
    const std::string EN = "Enabling dirty logging", IT1 = "Iteration 1 dirty memory";
    for (const auto* r : {&lazy, &eager}) {
        CHECK(r->status == "completed");
        CHECK(phase_stat(*r, "Populate memory", "pages_1g") == 1);  // 4 x 256M: one 1G SPTE
    }
    // Upstream: the first write drops the 1G SPTE (one flush); every page of the gigabyte then
    // takes a slow fault under mmu_lock write.
    CHECK(stat(lazy, "kvm_mmu_split_huge_page") == 0);
    CHECK(phase_stat(lazy, IT1, "drop_large_spte") == 1);
    CHECK(phase_stat(lazy, IT1, "pf_fixed") == 512 * 512);
    CHECK(phase_stat(lazy, IT1, "pf_fast") == 0);
    // The proposal: 1 + 512 splits at enable; the writes are fast-path fixes.
    CHECK(phase_stat(eager, EN, "kvm_mmu_split_huge_page") == 1 + 512);
    CHECK(phase_stat(eager, IT1, "pf_fast") == 512 * 512);
    CHECK(phase_stat(eager, IT1, "drop_large_spte") == 0);
    CHECK(phase_time(eager, EN) > phase_time(lazy, EN));
    CHECK(phase_time(eager, IT1) * 5 < phase_time(lazy, IT1));
    // Disabling: the 4K SPTEs under the host's 1G page are zapped (kvm_rmap_zap_collapsible_sptes).
    for (const auto* r : {&lazy, &eager})
        CHECK(phase_stat(*r, "Disabling dirty logging", "kvm_mmu_zap_collapsible_spte") == 512 * 512);
    CHECK(report::hex64(lazy.fingerprint) == "a93383683314ae9c");
    CHECK(report::hex64(eager.fingerprint) == "a02bb1c9b9c736bb");
}

TEST_CASE("golden: seed 002 storm in small", "[x86_context][golden]") {
    const char* f = "tests/data/context-smm.json";
    const auto before = run_file(f, "before"), once = run_file(f, "constant_once"), kept = run_file(f, "preserve");
    for (const auto* r : {&before, &once, &kept}) check_smm_storm(*r, 20);
    CHECK(stat(before, "mmu_init_field_writes") == 40 * 19);
    // The constants were written when the vCPU was created (not counted): 3 stores per full init.
    CHECK(stat(once, "mmu_init_field_writes") == 40 * 3);
    CHECK(stat(once, "kvm_init_mmu_ps") < stat(before, "kvm_init_mmu_ps"));
    CHECK(stat(kept, "root_rebuild_faults") == 0);
    CHECK(stat(kept, "tdp_mmu_root_free") == 0);
    CHECK(stat(before, "tdp_mmu_root_free") == 40);
    CHECK(report::hex64(before.fingerprint) == "e0bd85794ba871b9");
    CHECK(report::hex64(once.fingerprint) == "f6d67ba87ed3fa2b");
    CHECK(report::hex64(kept.fingerprint) == "4be59d860ccbf68f");
    CHECK(stat(before, "root_rebuild_faults") == 428);
    // The default SMI handler (40 KiB) leaves struct kvm_mmu cold in L1 at every RSM.
    CHECK(stat(before, "mmu_init_cache_miss") == 20 * 4 + 4);
    CHECK(stat(once, "mmu_init_cache_miss") == 20 * 2 + 2);
    CHECK(stat(kept, "smi_handler_lines") == 20 * 640);
    // The fault latencies are the faults': a vCPU waiting out an SMI (stream_held) is not one.
    for (const auto* r : {&before, &once, &kept}) CHECK(r->fault_latency_ps.count() == stat(*r, "pf_taken"));
    // Determinism: the same run again is bit-identical.
    const auto again = run_file(f, "before");
    CHECK(again.fingerprint == before.fingerprint);
    CHECK(again.stats == before.stats);
}

// ---------------------------------------------------------------------------------------------
// The shipped seed 000 and 001 scenarios, whole, per variant: the fingerprint and the counters
// the seeds are about. A change here means the simulated mechanism changed.

namespace {
const runner::LockResult* lock_at(const runner::Result& r, const std::string& site, const std::string& mode = "write") {
    return lock(r, mode, site);
}
std::uint64_t acquisitions(const runner::Result& r, const std::string& site, const std::string& mode = "write") {
    const auto* l = lock_at(r, site, mode);
    return l ? l->acquisitions : 0;
}
const runner::PhaseStats& phase(const runner::Result& r, const std::string& name) {
    for (const auto& p : r.phases)
        if (p.name == name) return p;
    FAIL("no phase " << name);
    return r.phases.front();
}
}  // namespace

TEST_CASE("golden: shipped seed 000 per variant (lookups, root-allocation lock, unsync/sync)", "[golden][seeds][x86_shadow]") {
    const char* f = "scenarios/seeds/000-shadow-child-sp-lookup.json";
    const std::string S1 = "shatter 1 (direct root only)", S2 = "shatter 2 (nested guest running)",
                      S3 = "shatter 3 (nested guest gone)", EPT = "L1 rewrites EPT12 (unsync, INVEPT, sync)",
                      NOINV = "L1 rewrites EPT12 leaf entries, no INVEPT (SPs stay unsync)",
                      PD = "L1 rewrites EPT12 PD entries, INVEPT (unsync SPs unlinked, found again and synced)",
                      SW = "EPTP switching (6 L2 guests)";
    struct Pin {
        const char* variant;
        std::uint64_t lookups, collisions, max_collisions, s1, s2, s3;
        std::uint64_t cache_misses;  // L1's faults in part B run for as long as vCPU 0's phases last
        std::uint64_t flag_locks;  // mmu_lock at mmu_alloc_shadow_roots:indirect_mmu (whole run)
        std::uint64_t flag_locks_ept, flag_locks_switch;
        const char* fingerprint;
    };
    const Pin pins[] = {
        {"always", 39145, 167189, 11, 2048, 2050, 2048, 39030, 0, 0, 0, "3b77aa590ac2545f"},
        {"skip_bool", 4240, 34880, 11, 0, 2050, 2048, 39018, 120, 20, 96, "e644828e3c0096e1"},
        {"skip_bool,lock_first", 4252, 34995, 11, 0, 2050, 2048, 39030, 1, 0, 0, "03693af9cf4cf1e9"},
        {"skip_count", 2204, 17387, 10, 0, 2050, 0, 39030, 23, 20, 0, "a039b7d8d9a5ae2f"},
        {"skip_count,lock_every", 2192, 17272, 10, 0, 2050, 0, 39018, 120, 20, 96, "437bdafa4bef59ce"},
    };
    std::map<std::string, runner::Result> r;
    for (const Pin& p : pins) {
        INFO(p.variant);
        const auto& x = r[p.variant] = run_file(f, p.variant);
        CHECK(x.status == "completed");
        // The lookup (part A): kvm_mmu_find_shadow_page and its bucket walks.
        CHECK(stat(x, "kvm_mmu_find_shadow_page") == p.lookups);
        CHECK(stat(x, "mmu_page_hash_collisions") == p.collisions);
        CHECK(stat(x, "max_mmu_page_hash_collisions") == p.max_collisions);
        CHECK(phase_stat(x, S1, "kvm_mmu_find_shadow_page") == p.s1);
        CHECK(phase_stat(x, S2, "kvm_mmu_find_shadow_page") == p.s2);
        CHECK(phase_stat(x, S3, "kvm_mmu_find_shadow_page") == p.s3);
        // The same work in every variant: faults, SPs, large SPTEs dropped. The THP slot was
        // populated by reads (the huge zero page): every shatter write splits the host PMD, whose
        // invalidation drops the 2M SPTE (kvm_unmap_gfn_range), 3 x 2048.
        CHECK(stat(x, "mmu_cache_miss") == p.cache_misses);
        CHECK(stat(x, "drop_large_spte") == 3 * 2048);
        CHECK(stat(x, "host_split_huge_pmd") == 3 * 2048);
        // The lock at root allocation (part B): 3 allocations in part A and B's start, 21 after
        // INVEPT, 96 EPTP switches, all prev_roots misses; the VM-entry after the write without
        // INVEPT finds its root cached.
        CHECK(stat(x, "mmu_alloc_shadow_roots") == 120);
        CHECK(acquisitions(x, "mmu_alloc_shadow_roots") == 120);
        CHECK(stat(x, "prev_roots_miss") == 120);
        CHECK(stat(x, "prev_roots_hit") == 1);
        CHECK(phase_stat(x, NOINV, "prev_roots_hit") == 1);
        CHECK(stat(x, "indirect_mmu_mmu_lock") == p.flag_locks);
        CHECK(acquisitions(x, "mmu_alloc_shadow_roots:indirect_mmu") == p.flag_locks);
        CHECK(phase_stat(x, EPT, "indirect_mmu_mmu_lock") == p.flag_locks_ept);
        CHECK(phase_stat(x, SW, "indirect_mmu_mmu_lock") == p.flag_locks_switch);
        // Unsync and sync: 8 page-table SPs unsynced by L1's first write to each of its EPT pages
        // and synced at the VM-entry after INVEPT, 20 times.
        CHECK(phase_stat(x, EPT, "kvm_unsync_page") == 160);
        CHECK(phase_stat(x, EPT, "kvm_sync_page") == 160);
        CHECK(phase_stat(x, EPT, "kvm_mmu_sync_roots") == 20);
        CHECK(phase_stat(x, EPT, "kvm_sync_page_sptes_dropped") == 32);  // all in round 1 (the held L2 stream re-maps none in time)
        CHECK(phase_stat(x, EPT, "nested_ept_write_faults") == 160);
        CHECK(phase_stat(x, EPT, "kvm_vcpu_write_protect_gfn") == 160);
        CHECK(phase_stat(x, EPT, "mmu_pte_write") == 0);  // 4K EPT pages: never write-tracked
        // Without INVEPT the 8 stay unsync; L1's writes to 4 PD entries above them (write-tracked
        // upper-level pages: emulated) unlink 2 of them, which L2's next faults find in
        // mmu_page_hash and sync (kvm_sync_page from kvm_mmu_find_shadow_page; they stay unsync);
        // the next VM-entry's kvm_mmu_sync_roots syncs the rest, and the switch's the last 2.
        CHECK(phase_stat(x, NOINV, "kvm_unsync_page") == 8);
        CHECK(phase_stat(x, NOINV, "kvm_sync_page") == 0);
        CHECK(phase_stat(x, PD, "drop_parent_pte") == 2);
        CHECK(phase_stat(x, PD, "kvm_mmu_find_shadow_page_sync") == 2);
        CHECK(phase_stat(x, PD, "mmu_pte_write") == 3);
        CHECK(phase_stat(x, SW, "kvm_sync_page") == 2);
        CHECK(stat(x, "kvm_sync_page") == 164);
        CHECK(stat(x, "mmu_unsync") == 0);
        CHECK(report::hex64(x.fingerprint) == p.fingerprint);
    }
    // The lookup knob alone decides part A; the lock knob alone decides part B's extra locks, and
    // they cost the switching vCPU: its nested VM-entries wait for mmu_lock behind the faulting
    // vCPUs once more per allocation.
    auto entry_ns = [&](const std::string& v) {
        return static_cast<double>(phase_stat(r.at(v), SW, "nested_vm_entry_ps")) /
               static_cast<double>(phase_stat(r.at(v), SW, "nested_vm_entry")) / 1000.0;
    };
    for (const auto& [every, first] : {std::pair{"skip_bool", "skip_bool,lock_first"}, {"skip_count,lock_every", "skip_count"}}) {
        INFO(every << " vs " << first);
        for (const std::string& ph : {S1, S2, S3})  // part A; part B's L1 faults last as long as vCPU 0's work
            CHECK(phase_stat(r.at(every), ph, "kvm_mmu_find_shadow_page") == phase_stat(r.at(first), ph, "kvm_mmu_find_shadow_page"));
        CHECK(phase(r.at(every), S1).sim_time_ns == phase(r.at(first), S1).sim_time_ns);
        CHECK(entry_ns(every) > 1.3 * entry_ns(first));
        CHECK(phase(r.at(every), SW).sim_time_ns > phase(r.at(first), SW).sim_time_ns);
        const auto* wait = lock_at(r.at(every), "mmu_alloc_shadow_roots:indirect_mmu");
        REQUIRE(wait);
        CHECK(wait->contended > 100);
    }
    CHECK(entry_ns("always") < 1.05 * entry_ns("skip_bool,lock_first"));
}

TEST_CASE("golden: shipped seed 001 per variant (lock drops, split caches, roots)", "[golden][seeds][x86_shadow]") {
    const char* f = "scenarios/seeds/001-nested-eager-split.json";
    const std::string EN = "enable dirty logging";
    struct Pin {
        const char* variant;
        std::uint64_t splits, drops, held, leaked, leaked_while_logging;
        const char* fingerprint;
    };
    const Pin pins[] = {
        {"capacity=min", 4128, 4099, 166912, 0, 0, "ae18b86c54e2c749"},
        {"capacity=2min", 4128, 206, 174592, 0, 0, "544c213cf63765c2"},
        {"capacity=min+40", 4128, 1012, 172032, 0, 0, "a801d8df53da1eaf"},
        {"no-eager-split", 0, 0, 0, 0, 0, "4df89a7a6c261128"},
        {"free-at-flags-change", 4128, 1012, 0, 0, 172032, "f5448ccdc2b528cb"},
        {"free-at-flags-change,vm-dies-logging", 4128, 1012, 172032, 172032, 172032, "8da6029a6afab078"},
        {"faulting-vcpus,capacity=min,preempt_none", 3652, 3624, 149760, 0, 0, "f841efd99a326596"},
        {"faulting-vcpus,capacity=2min,preempt_none", 3652, 182, 204288, 0, 0, "a15ca5acbe8fe420"},
        {"faulting-vcpus,capacity=2min,preempt", 3652, 5163, 204288, 0, 0, "523ad3623b6ade95"},
    };
    std::map<std::string, runner::Result> r;
    for (const Pin& p : pins) {
        INFO(p.variant);
        const auto& x = r[p.variant] = run_file(f, p.variant);
        CHECK(x.status == "completed");
        // Hash lookups: the roots and the splits' shadow_mmu_get_sp_for_split.
        CHECK(stat(x, "kvm_mmu_find_shadow_page") == 4109);
        CHECK(stat(x, "mmu_page_hash_collisions") == 979);
        CHECK(stat(x, "max_mmu_page_hash_collisions") == 2);
        CHECK(stat(x, "kvm_mmu_split_huge_page") == p.splits);
        // mmu_lock drops in the split walk, and its acquisitions (one more than the drops).
        CHECK(stat(x, "need_topup_split_caches_or_resched") == p.drops);
        CHECK(acquisitions(x, "kvm_shadow_mmu_try_split_huge_pages") == (p.splits ? p.drops + 1 : 0));
        // Split caches: memory held at the end, what destroying the VM would leak, and what it
        // would have leaked right after enabling (freed at the flags change only).
        CHECK(stat(x, "split_caches_bytes") == p.held);
        CHECK(stat(x, "split_caches_leaked_if_vm_destroyed_bytes") == p.leaked);
        CHECK(phase_stat(x, EN, "split_caches_leaked_if_vm_destroyed_bytes") == p.leaked_while_logging);
        // One shadow root per vCPU (each a prev_roots miss), no lock of seed 000's, nothing unsync.
        CHECK(stat(x, "mmu_alloc_shadow_roots") == 4);
        CHECK(acquisitions(x, "mmu_alloc_shadow_roots") == 4);
        CHECK(acquisitions(x, "mmu_alloc_shadow_roots:indirect_mmu") == 0);
        CHECK(stat(x, "prev_roots_miss") == 4);
        CHECK(stat(x, "kvm_unsync_page") == 0);
        CHECK(stat(x, "kvm_sync_page") == 0);
        CHECK(report::hex64(x.fingerprint) == p.fingerprint);
    }
    // The faulting vCPUs' mmu_lock wait during the enable: long on a PREEMPT_NONE kernel (the
    // cache top-ups only), short with rwlock_needbreak(); and 2*min holds the lock longer.
    auto fault_wait = [&](const std::string& v) {
        for (const auto& p : r.at(v).phases)
            if (p.name == EN)
                for (const auto& l : p.locks)
                    if (l.lock == "mmu_lock" && l.site == "ept_page_fault") return static_cast<double>(l.wait_ps.sum());
        return 0.0;
    };
    const double min_none = fault_wait("faulting-vcpus,capacity=min,preempt_none"),
                 two_none = fault_wait("faulting-vcpus,capacity=2min,preempt_none"),
                 two_pre = fault_wait("faulting-vcpus,capacity=2min,preempt");
    CHECK(two_none > min_none);
    CHECK(two_pre * 5 < min_none);
}

TEST_CASE("golden: NX huge page recovery under mmu_lock write or read (nx_huge_pages_perf_test)", "[x86_tdp][golden]") {
    const char* f = "scenarios/selftests/x86-nx-huge-page-recovery.json";
    const auto wr = run_file(f, "write"), rd = run_file(f, "read");
    for (const auto* r : {&wr, &rd}) {
        CHECK(r->status == "completed");
        REQUIRE(r->phases.size() == 2);
        CHECK(r->phases[0].name == "execute region 0");
        CHECK(r->phases[1].name == "write region 1");
        // Region 0: a 2M fault for each first write, an exec fault splitting it (tracked); region
        // 1: one 2M fault per 2 MiB, each timed.
        CHECK(stat(*r, "pf_taken") == 1536);
        CHECK(stat(*r, "track_possible_nx_huge_page") == 512);
        CHECK(stat(*r, "kvm_mmu_split_huge_page") == 512);
        CHECK(r->phases[1].fault_latency_ps.count() == 512);
        CHECK(stat(*r, "pages_2m") == 512);  // region 1's; region 0's are all split
        // What recovery zapped is gone from the list: nx_lpage_splits is the rest.
        CHECK(stat(*r, "nx_lpage_splits") == 512 - stat(*r, "nx_huge_pages_recovery_zapped"));
        CHECK(phase_stat(*r, "write region 1", "nx_huge_pages_recovery_zapped") > 0);  // during the timed writes
    }
    CHECK(stat(wr, "kvm_recover_nx_huge_pages") == 10);
    CHECK(stat(wr, "nx_huge_pages_recovery_zapped") == 407);
    CHECK(stat(rd, "kvm_recover_nx_huge_pages") == 7);
    CHECK(stat(rd, "nx_huge_pages_recovery_zapped") == 322);
    // Under write the recovery yields to every waiting fault, with a flush; under read it never
    // has to, and flushes once per pass.
    CHECK(stat(wr, "nx_huge_pages_recovery_cond_resched") == 406);
    CHECK(stat(rd, "nx_huge_pages_recovery_cond_resched") == 0);
    CHECK(stat(rd, "remote_tlb_flush") == 7);
    // The selftest's line: the faults of region 1 wait behind a write-mode recovery, not a
    // read-mode one.
    REQUIRE(report::max_fault_latency_cycles(wr));
    REQUIRE(report::max_fault_latency_cycles(rd));
    CHECK(*report::max_fault_latency_cycles(wr) == 40841);
    CHECK(*report::max_fault_latency_cycles(rd) == 4306);
    CHECK(*report::max_fault_latency_cycles(rd) < *report::max_fault_latency_cycles(wr));
    CHECK(report::hex64(wr.fingerprint) == "92ac7c2fd9a54a50");
    CHECK(report::hex64(rd.fingerprint) == "6acfa42d0e6f9037");
    // x86_shadow with the TDP MMU on runs the same worker in its embedded TDP MMU.
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.variant = "read";
    o.host_dirs = {src("scenarios/hosts")};
    o.overrides = {{"/mmu/model", "x86_shadow"}, {"/mmu/knobs/tdp_mmu", true}};
    const auto sh = runner::run(scenario::load_scenario(src(f), o), {});
    CHECK(stat(sh, "kvm_recover_nx_huge_pages") == stat(rd, "kvm_recover_nx_huge_pages"));
    CHECK(stat(sh, "nx_huge_pages_recovery_zapped") == stat(rd, "nx_huge_pages_recovery_zapped"));
}

TEST_CASE("golden: demand paging through userfaultfd (demand_paging_test -u MISSING -v 8 -b 8M)", "[x86_tdp][uffd][golden]") {
    const char* f = "scenarios/selftests/x86-demand-paging-uffd.json";
    const std::string DP = "Demand paging";
    const auto per = run_file(f, "per_vcpu"), one = run_file(f, "single_uffd"), four = run_file(f, "single_uffd_4_readers"),
               w = run_file(f, "exit_on_missing");
    // 8 vCPUs x 8 MiB: 16384 first touches, each a missing page in a registered range.
    for (const auto* r : {&per, &one, &four, &w}) {
        CHECK(r->status == "completed");
        CHECK(stat(*r, "uffdio_copy") == 16384);
    }
    for (const auto* r : {&per, &one, &four}) {
        CHECK(stat(*r, "uffd_handle_userfault") == 16384);
        CHECK(stat(*r, "uffd_read_msg") == 16384);
    }
    // -w: no fault sleeps on a uffd; each vCPU exits and copies its own page.
    CHECK(stat(w, "uffd_handle_userfault") == 0);
    CHECK(stat(w, "memory_fault_exit") == 16384);
    // One uffd, one reader: every vCPU's fault queues behind the others' (the wait-queue lock held
    // by __wake_userfault's walk), so the stage takes longer than with a uffd per vCPU; four
    // readers recover most of it.
    const auto t = [&](const runner::Result& r) {
        for (const auto& p : r.phases)
            if (p.name == DP) return p.sim_time_ns;
        return 0.0;
    };
    CHECK(t(one) > t(per));
    CHECK(t(four) < t(one));
    CHECK(t(w) < t(per));
    const auto rates = report::demand_paging_rates(per);
    REQUIRE(rates);
    CHECK(rates->overall == Approx(rates->per_vcpu * 8));
    CHECK(report::hex64(per.fingerprint) == "7d9d61d256c55214");
    CHECK(report::hex64(one.fingerprint) == "ddcdee80d97a6844");
    CHECK(report::hex64(four.fingerprint) == "05aabb255c9feacc");
    CHECK(report::hex64(w.fingerprint) == "5a8b28d21db42354");
}

TEST_CASE("golden: scenarios/selftests/arm64-eager-split.json (v6.4 vs v6.5 eager splitting, 2M chunks)",
          "[arm64][golden][split]") {
    const char* f = "scenarios/selftests/arm64-eager-split.json";
    const auto before = run_file(f, "before"), after = run_file(f, "after"), local = run_file(f, "local_tlbi_only");
    const std::string EN = "Enabling dirty logging", IT1 = "Iteration 1 dirty memory", IT2 = "Iteration 2 dirty memory";
    auto ns = [](const runner::Result& r, const std::string& phase) {
        for (const auto& p : r.phases)
            if (p.name == phase) return p.sim_time_ns;
        FAIL("no phase " << phase);
        return 0.0;
    };
    for (const auto* r : {&before, &after, &local}) {
        CHECK(r->status == "completed");
        // 4 vCPUs x 256 MiB of 2 MiB hugetlb pages: 512 blocks, 262144 pages written per pass.
        CHECK(phase_stat(*r, IT1, "pf_fixed") == 262144);
        CHECK(stat(*r, "pages_4k") == 262144);
        CHECK(stat(*r, "stage2_block_to_table") == 512);
    }
    // Before (and v6.5 without the capability): the first write to each block splits it (a BBM
    // with a TLBI by IPA), the rest of the block faults in 4 KiB pages.
    CHECK(phase_stat(before, EN, "stage2_split_walker_blocks") == 0);
    CHECK(phase_stat(before, IT1, "stage2_block_to_table") == 512);
    CHECK(phase_stat(before, IT1, "__kvm_tlb_flush_vmid_ipa") == 512);
    CHECK(phase_stat(before, IT2, "__kvm_tlb_flush_vmid_ipa") == 262144);  // every relaxation broadcast
    CHECK(phase_stat(local, IT2, "__kvm_tlb_flush_vmid_ipa_nsh") == 262144);
    // After: enabling splits all 512 blocks in 512 chunks under the write lock, a top-up (mmu_lock
    // dropped) before each; the dirty passes only relax permissions, with local TLBIs.
    CHECK(phase_stat(after, EN, "stage2_split_walker_blocks") == 512);
    CHECK(phase_stat(after, EN, "kvm_pgtable_stage2_split") == 512);
    CHECK(phase_stat(after, EN, "stage2_break_before_make") == 512);
    CHECK(phase_stat(after, EN, "__kvm_tlb_flush_vmid_ipa") == 512);
    CHECK(phase_stat(after, EN, "split_page_cache_topups") == 512);
    CHECK(phase_stat(after, EN, "split_page_cache_objs") == 513);
    CHECK(phase_stat(after, IT1, "stage2_block_to_table") == 0);
    CHECK(phase_stat(after, IT1, "kvm_pgtable_stage2_map") == 0);
    CHECK(phase_stat(after, IT1, "kvm_pgtable_stage2_relax_perms") == 262144);
    CHECK(phase_stat(after, IT1, "__kvm_tlb_flush_vmid_ipa") == 0);
    CHECK(phase_stat(after, IT1, "dcache_clean_poc") == 0);  // the walker's CMOs skip split PTEs
    REQUIRE(lock(after, "write", "kvm_mmu_split_huge_pages"));
    CHECK(lock(after, "write", "kvm_mmu_split_huge_pages")->acquisitions == 512);
    CHECK_FALSE(lock(before, "write", "kvm_mmu_split_huge_pages"));
    // Enable: 1.03 ms -> 10.99 ms; iteration 1: 163.1 ms -> 136.3 ms (local TLBIs alone: 163.1 ms).
    CHECK(ns(before, EN) == Approx(1030415).epsilon(1e-6));
    CHECK(ns(after, EN) == Approx(10993764).epsilon(1e-6));
    CHECK(ns(before, IT1) == Approx(163110673.832).epsilon(1e-6));
    CHECK(ns(after, IT1) == Approx(136334185).epsilon(1e-6));
    CHECK(ns(local, IT1) == Approx(163110673.832).epsilon(1e-6));
    CHECK(ns(before, IT2) == Approx(323031071).epsilon(1e-6));
    CHECK(ns(after, IT2) == Approx(136323725).epsilon(1e-6));
    CHECK(report::hex64(before.fingerprint) == "22dd005e1e40608d");
    CHECK(report::hex64(after.fingerprint) == "ca3345aa2347cc27");
    CHECK(report::hex64(local.fingerprint) == "8a7179267539aa20");
}

TEST_CASE("golden: the eager split series' sparse run as explicit phases (one write per 2 MiB, initially-all-set)",
          "[arm64][golden][split]") {
    const char* f = "tests/data/arm64-eager-split-sparse.json";
    const auto before = run_file(f, "before"), after = run_file(f, "after");
    const std::string C1 = "Iteration 1 clear dirty log", IT2 = "Iteration 2 dirty memory";
    auto ns = [](const runner::Result& r, const std::string& phase) {
        for (const auto& p : r.phases)
            if (p.name == phase) return p.sim_time_ns;
        FAIL("no phase " << phase);
        return 0.0;
    };
    // Initially-all-set: nothing protected at enable, so iteration 1 does not fault.
    for (const auto* r : {&before, &after}) CHECK(phase_stat(*r, "Iteration 1 dirty memory", "pf_taken") == 0);
    // Before: the first clear only protects; iteration 2's writes each split their block.
    CHECK(phase_stat(before, C1, "stage2_split_walker_blocks") == 0);
    CHECK(phase_stat(before, IT2, "stage2_block_to_table") == 512);
    CHECK(phase_stat(before, IT2, "__kvm_tlb_flush_vmid_ipa") == 512);
    // After: kvm_arch_mmu_enable_log_dirty_pt_masked splits each block at the first clear, a
    // kvm_pgtable_stage2_split per 64-page word; iteration 2 only relaxes, with local TLBIs.
    CHECK(phase_stat(after, C1, "stage2_split_walker_blocks") == 512);
    CHECK(phase_stat(after, C1, "kvm_pgtable_stage2_split") == 512 * 8);
    CHECK(phase_stat(after, C1, "__kvm_tlb_flush_vmid_ipa") == 512);
    CHECK(phase_stat(after, IT2, "stage2_block_to_table") == 0);
    CHECK(phase_stat(after, IT2, "kvm_pgtable_stage2_relax_perms") == 512);
    CHECK(phase_stat(after, IT2, "__kvm_tlb_flush_vmid_ipa_nsh") == 512);
    REQUIRE(lock(after, "write", "kvm_mmu_split_huge_pages"));
    // Iteration 2: 795.1 us -> 301.7 us; the first clear: 0.17 ms -> 11.38 ms.
    CHECK(ns(before, IT2) == Approx(795091.968).epsilon(1e-6));
    CHECK(ns(after, IT2) == Approx(301688.5).epsilon(1e-6));
    CHECK(ns(before, C1) == Approx(169832.0).epsilon(1e-6));
    CHECK(ns(after, C1) == Approx(11380484.0).epsilon(1e-6));
    CHECK(report::hex64(before.fingerprint) == "239f3e4328a5538f");
    CHECK(report::hex64(after.fingerprint) == "c5590f0f3727250d");
}

TEST_CASE("golden: aging while the vCPUs populate memory, age_lock write against lockless / read "
          "(access_tracking_perf_test -l -p)",
          "[x86_tdp][arm64][golden]") {
    const char* f = "scenarios/selftests/aging-lock.json";
    const auto xw = run_file(f, "x86-write"), xl = run_file(f, "x86-lockless");
    const auto aw = run_file(f, "arm64-write"), ar = run_file(f, "arm64-read");
    for (const auto* r : {&xw, &xl, &aw, &ar}) {
        CHECK(r->status == "completed");
        REQUIRE(r->phases.size() == 1);
        CHECK(r->phases[0].name == "lru_gen: Aging while populating memory");
        CHECK(stat(*r, "pf_fixed") == 131072);  // 8 x 64 MiB, every 4K page written once
        // Every pass notifies every page of the 512 MiB once (one clear_young per PTE).
        CHECK(stat(*r, "kvm_age_gfn") == 131072 * stat(*r, "aging_passes"));
        // The aging outlasts the vCPUs: the last pass started before they were done.
        CHECK(stat(*r, "vcpu_wall_time_ns") < r->phases[0].sim_time_ns);
    }
    // Under the write lock one pass takes all the time the vCPUs take, each notifier call waiting
    // for the faults' readers and each fault for the aging writer; without it (x86 lockless,
    // arm64 read) four passes fit, nothing waits for mmu_lock, and the vCPUs finish sooner.
    CHECK(stat(xw, "aging_passes") == 1);
    CHECK(stat(xl, "aging_passes") == 4);
    CHECK(stat(aw, "aging_passes") == 1);
    CHECK(stat(ar, "aging_passes") == 4);
    CHECK(xw.phases[0].sim_time_ns == 109973027.9);
    CHECK(xl.phases[0].sim_time_ns == 89163914.7);
    CHECK(stat(xw, "vcpu_wall_time_ns") == 92450501);
    CHECK(stat(xl, "vcpu_wall_time_ns") == 70222401);
    CHECK(stat(aw, "vcpu_wall_time_ns") == 75164801);
    CHECK(stat(ar, "vcpu_wall_time_ns") == 71932619);
    REQUIRE(lock(xw, "read", "kvm_tdp_mmu_page_fault"));
    REQUIRE(lock(xw, "write", "kvm_age_gfn"));
    CHECK(lock(xw, "write", "kvm_age_gfn")->acquisitions == 131072);
    CHECK(lock(xw, "read", "kvm_tdp_mmu_page_fault")->contended == 130617);
    CHECK(lock(xl, "read", "kvm_tdp_mmu_page_fault")->contended == 0);
    CHECK_FALSE(lock(xl, "write", "kvm_age_gfn"));
    CHECK(lock(aw, "read", "user_mem_abort")->wait_ps.sum() > 0);
    CHECK(lock(aw, "write", "kvm_age_gfn")->acquisitions == 131072);
    CHECK(lock(ar, "read", "kvm_age_gfn")->acquisitions == 4 * 131072);
    CHECK(lock(ar, "read", "user_mem_abort")->contended == 0);
    // Pages aged before a vCPU touched them again (no FEAT_HAFDBS on the Kunpeng 920 profile):
    // access-flag faults under the read lock.
    CHECK(stat(aw, "kvm_access_fault") == 1);
    CHECK(stat(ar, "kvm_access_fault") == 2);
    // x86 lockless: with nothing staggering them, the vCPUs' first faults race to link the shared
    // page tables and seven cmpxchgs are lost.
    CHECK(stat(xl, "pf_retry_cmpxchg") == 7);
    CHECK(report::hex64(xw.fingerprint) == "e8bf6ca8668d2ba8");
    CHECK(report::hex64(xl.fingerprint) == "39a42e716c7abd7a");
    CHECK(report::hex64(aw.fingerprint) == "905a78f76f2bb08c");
    CHECK(report::hex64(ar.fingerprint) == "bb74240137a6cc39");
}

TEST_CASE("golden: arm64_stage2 tlbi by_ipa vs range with the guest TLB on, touch_back and vm_destroy",
          "[arm64][golden][tlb]") {
    const char* f = "scenarios/selftests/arm64-tlbi-range.json";
    const auto ipa = run_file(f, "by_ipa"), range = run_file(f, "range");
    const std::string ADJ = "KVM_ADJUST_MAPPINGS", UNMAP = "Unmap VM";
    for (const auto* r : {&ipa, &range}) {
        CHECK(r->status == "completed");
        // 4 vCPUs x 127 blocks rebuilt (a table replaced by a block), each then touching back 8
        // blocks (the first 8 of each vCPU fewer): 508 + 4 x (127 x 8 - 36) accesses.
        CHECK(phase_stat(*r, ADJ, "stage2_table_to_block") == 508);
        CHECK(phase_stat(*r, UNMAP, "stage2_unmap_ptes") == 512);
    }
    CHECK(ipa.guest_accesses == range.guest_accesses);
    // by_ipa: a TLBI by VMID per block rebuilt empties every vCPU's TLB, so every touched-back
    // block misses; range: only the rebuilt block's range goes, the touched-back blocks hit.
    CHECK(phase_stat(ipa, ADJ, "__kvm_tlb_flush_vmid") == 508);
    CHECK(phase_stat(range, ADJ, "__kvm_tlb_flush_vmid") == 0);
    CHECK(phase_stat(range, ADJ, "__kvm_tlb_flush_vmid_range") == 508);
    CHECK(phase_stat(range, ADJ, "tlbi_range_ops") == 508);  // a 2 MiB block: one range TLBI
    CHECK(phase_stat(ipa, ADJ, "guest_tlb_miss") == 508 + 4 * (127 * 8 - 36));
    CHECK(phase_stat(range, ADJ, "guest_tlb_miss") == 508);
    // Unmap VM: a TLBI by IPA per leaf (FWB, so no CMOs) against one deferred range flush.
    CHECK(phase_stat(ipa, UNMAP, "__kvm_tlb_flush_vmid_ipa") == 512);
    CHECK(phase_stat(range, UNMAP, "__kvm_tlb_flush_vmid_ipa") == 0);
    CHECK(phase_stat(range, UNMAP, "__kvm_tlb_flush_vmid_range") == 1);
    CHECK(phase_time(range, UNMAP) * 20 < phase_time(ipa, UNMAP));
    CHECK(phase_time(range, ADJ) < phase_time(ipa, ADJ));
    CHECK(report::hex64(ipa.fingerprint) == "a51d4c0d0b03a1e8");
    CHECK(report::hex64(range.fingerprint) == "535120eb98654a41");
}

TEST_CASE("x86_tdp with the guest TLB on: misses refilled, every remote TLB flush empties the TLBs",
          "[x86_tdp][tlb]") {
    scenario::LoadOptions o;
    o.models = &models::builtin_models();
    o.host_dirs = {src("scenarios/hosts")};
    const auto off = runner::run(scenario::load_scenario(src("tests/data/tdp-zap.json"), o), {});
    o.overrides = {{"/host/features/guest_tlb", true}};
    const auto on = runner::run(scenario::load_scenario(src("tests/data/tdp-zap.json"), o), {});
    CHECK(on.status == "completed");
    CHECK(on.guest_accesses == off.guest_accesses);
    CHECK(stat(off, "guest_tlb_miss") == 0);
    CHECK(stat(on, "guest_tlb_miss") > 0);
    CHECK(stat(on, "guest_tlb_miss") <= on.guest_accesses);
    CHECK(stat(on, "guest_tlb_refill_walk_levels") >= 2 * stat(on, "guest_tlb_miss"));
    CHECK(stat(on, "remote_tlb_flush") > 0);
    CHECK(on.sim_time_ns > off.sim_time_ns);  // the refill walks are guest time
}
