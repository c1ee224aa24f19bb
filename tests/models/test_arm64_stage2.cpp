// Unit tests of the arm64 stage-2 model: mechanism-derived outcomes on small VMs, in both
// mmu_lock modes and both CMO placements.
#include <catch2/catch.hpp>
#include <map>
#include <tuple>

#include "models/arm64_stage2/arm64_stage2.hpp"
#include "models/registry.hpp"
#include "sim/workload/guest.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::testing;
using namespace kvmsim::engine::time_literals;
using kvmsim::models::arm64_stage2::Arm64Stage2;
using vm::Access;
using vm::Backing;
using vm::Gfn;
using vm::PageLevel;
using R = testing::GuestAccess;
namespace pte = kvmsim::models::arm64_stage2::pte;

namespace {

std::unique_ptr<vm::MmuModel> make_a64(vm::ModelEnv& env) {
    return models::builtin_models().find("arm64_stage2")->create(env);
}

vm::Knobs knobs(const std::string& lock, const std::string& cmo) {
    return {{"mmu_lock", lock}, {"cmo", cmo}};
}

struct A64 : Harness {
    // logging: the memslot logs dirty pages from the start (every mapping 4K).
    A64(Backing b, std::uint64_t npages, std::uint32_t vcpus, vm::Knobs k, bool fwb = false, bool logging = false)
        : Harness(b, npages, vcpus, std::move(k)) {
        host.costs = arm64_test_costs();
        host.features["fwb"] = fwb;
        host.features["thp_use_zero_page"] = true;
        host.features["thp_wp_zero_page_split"] = true;
        vm.memslots[0].dirty_logging = logging;
        build(make_a64);
    }
    Arm64Stage2& m() { return static_cast<Arm64Stage2&>(*model); }
    // The host's memory written by userspace before the vCPUs run (MAP_POPULATE): every page
    // present and writable, so faults test stage 2 alone.
    void populate() { m().host_mm().populate(kBase, kBase + vm.memslots[0].npages); }
    engine::LockMode fault_mode() const {
        return std::get<std::string>(knobs.at("mmu_lock")) == "spinlock" ? engine::LockMode::Exclusive
                                                                       : engine::LockMode::Read;
    }
    std::optional<engine::LockRecord> fault_lock() const { return lock("mmu_lock", fault_mode(), "user_mem_abort"); }
};

constexpr Gfn B = Harness::kBase;
constexpr std::uint64_t k2M = 2ULL << 20;

}  // namespace

TEST_CASE("arm64_stage2 is registered with its knobs, costs, the fwb feature and its operations", "[arm64]") {
    const vm::ModelInfo* info = models::builtin_models().find("arm64_stage2");
    REQUIRE(info);
    CHECK(info->kernel.find("v6.2") != std::string::npos);
    CHECK(info->kernel.find("v5.12") != std::string::npos);
    REQUIRE(info->knob("mmu_lock"));
    CHECK(std::get<std::string>(info->knob("mmu_lock")->default_value) == "rwlock");
    CHECK(info->knob("mmu_lock")->choices == std::vector<std::string>{"rwlock", "spinlock"});
    REQUIRE(info->knob("cmo"));
    CHECK(std::get<std::string>(info->knob("cmo")->default_value) == "map_walker");
    CHECK(info->knob("cmo")->choices == std::vector<std::string>{"map_walker", "user_mem_abort"});
    CHECK(std::get<bool>(info->knob("preempt")->default_value));
    CHECK(info->features == std::vector<std::string>{"fwb", "hafdbs", "tlbi_range", "guest_tlb", "thp_use_zero_page",
                                                     "thp_wp_zero_page_split"});
    // its own, the host mm's, its userfaultfd's (models/host), aging's (models/common/aging.hpp) and the
    // optional TLB ones
    CHECK(info->costs.size() == 24 + 6 + 8 + 3 + 7);
    for (auto op : {vm::Operation::DirtyLogEnable, vm::Operation::DirtyLogGet, vm::Operation::DirtyLogClear,
                    vm::Operation::DirtyLogDisable, vm::Operation::Invalidate})
        CHECK(info->supports(op));
    for (auto op : {vm::Operation::SmmEnter, vm::Operation::SmmExit, vm::Operation::NestedStart,
                    vm::Operation::NestedStop, vm::Operation::ZapGfnRange})
        CHECK_FALSE(info->supports(op));
}

TEST_CASE("arm64_stage2 rejects bad knobs, a missing cost and a missing fwb feature", "[arm64]") {
    Harness h(Backing::Anonymous, 512, 1, {{"mmu_lock", std::string("mutex")}});
    h.host.costs = arm64_test_costs();
    h.host.features["fwb"] = false;
    h.host.features["thp_use_zero_page"] = true;
    h.host.features["thp_wp_zero_page_split"] = true;
    CHECK_THROWS_WITH(h.build(make_a64), Catch::Contains("mmu_lock"));
    Harness h2(Backing::Anonymous, 512, 1, {{"cmo", true}});
    h2.host.costs = arm64_test_costs();
    h2.host.features["fwb"] = false;
    CHECK_THROWS_WITH(h2.build(make_a64), Catch::Contains("cmo"));
    Harness h3(Backing::Anonymous, 512, 1);
    h3.host.costs = arm64_test_costs();
    CHECK_THROWS_WITH(h3.build(make_a64), Catch::Contains("fwb"));
    Harness h4(Backing::Anonymous, 512, 1);
    h4.host.features["fwb"] = false;  // x86 test costs only
    CHECK_THROWS_WITH(h4.build(make_a64), Catch::Contains("tlbi_ipa") && Catch::Contains("dcache_clean_byte"));
}

TEST_CASE("a 4K read fault maps the zero page read-only, a write fault a new page read-write; not executable, "
          "cleaning 4 KiB", "[arm64]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        for (const char* cmo : {"user_mem_abort", "map_walker"}) {
          for (const bool write : {false, true}) {
            INFO(lock << " " << cmo << " write " << write);
            A64 t(Backing::Anonymous, 1024, 1, knobs(lock, cmo));
            VcpuResult r;
            t.spawn_vcpu(0, {{B + 7, write ? Access::Write : Access::Read}}, 0_ns, r);
            t.check_one_4k_fault(r);
            CHECK(t.m().mapping_level(B + 7) == PageLevel::K4);
            CHECK_FALSE(t.m().mapping_level(B + 8));
            // A read maps the shared zero page (do_anonymous_page), which the host maps
            // read-only, so stage 2 does too; a write allocates a page. No exec fault: XN.
            CHECK(t.model->hits(0, B + 7, Access::Read));
            CHECK(t.model->hits(0, B + 7, Access::Write) == write);
            CHECK_FALSE(t.model->hits(0, B + 7, Access::Exec));
            CHECK(t.m().host_mm().page(B + 7) == (write ? models::host::Page::Private : models::host::Page::Zero));
            CHECK(t.m().table_pages() == 4);  // two root pages, a level-2 and a level-3 table
            CHECK(t.counter("dcache_clean_poc") == 1);
            CHECK(t.counter("dcache_clean_poc_bytes") == 4096);
            CHECK(t.counter("icache_inval_pou") == 0);
            CHECK(t.counter("host_fault_first_touch") == (write ? 1 : 0));
            CHECK(t.counter("host_zero_page_mapped") == (write ? 0 : 1));
            CHECK(t.counter("host_zeroed_4k") == (write ? 1 : 0));
            CHECK(t.counter("mmu_topup_memory_cache_objs") == 40);
            CHECK(t.counter("stage2_table_pages_linked") == 2);
            const auto rec = t.fault_lock();
            REQUIRE(rec);
            CHECK(rec->acquisitions == 1);
            CHECK(rec->contended == 0);
          }
        }
    }
}

TEST_CASE("THP and hugetlb 1G faults map blocks and clean the whole block", "[arm64]") {
    for (const char* cmo : {"user_mem_abort", "map_walker"}) {
        A64 t(Backing::AnonymousThp, 2048, 1, knobs("spinlock", cmo));
        VcpuResult r;
        t.spawn_vcpu(0, {{B + 512 + 100, Access::Write}}, 0_ns, r);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(t.gauge("pages_2m") == 1);
        CHECK(t.gauge("pages_4k") == 0);
        CHECK(t.counter("dcache_clean_poc_bytes") == k2M);
        CHECK(t.counter("host_zeroed_4k") == 512);
        for (Gfn g = B + 512; g < B + 1024; g += 37) CHECK(t.model->hits(0, g, Access::Write));
        CHECK_FALSE(t.model->hits(0, B + 511, Access::Read));
        CHECK(t.m().table_pages() == 3);  // no level-3 table
    }
    A64 t(Backing::Hugetlb1G, 512 * 512, 1, knobs("spinlock", "map_walker"));
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 12345, Access::Read}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_1g") == 1);
    CHECK(t.m().table_pages() == 2);
    CHECK(t.counter("dcache_clean_poc_bytes") == 1ULL << 30);
    CHECK(t.model->hits(0, B + 512 * 512 - 1, Access::Write));
    // Cleaning 1 GiB at 10 ps per byte alone takes 10.7 ms, zeroing it 26.2 ms.
    CHECK(r.done > 36_ms);
}

TEST_CASE("seed 004: vCPUs faulting one block at once: before, every fault cleans it; after, only the installer",
          "[arm64][seed004]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        std::map<std::string, engine::Time> last;
        for (const char* cmo : {"user_mem_abort", "map_walker"}) {
            INFO(lock << " " << cmo);
            A64 t(Backing::AnonymousThp, 1024, 4, knobs(lock, cmo));
            std::vector<VcpuResult> r(4);
            for (std::uint32_t i = 0; i < 4; ++i) t.spawn_vcpu(i, {{B + 512 + i, Access::Read}}, 0_ns, r[i]);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            CHECK(t.counter("pf_fixed") == 1);
            CHECK(t.gauge("pages_2m") == 1);
            const bool before = std::string(cmo) == "user_mem_abort";
            CHECK(t.counter("dcache_clean_poc_bytes") == (before ? 4 : 1) * k2M);
            for (const auto& x : r) last[cmo] = std::max(last[cmo], x.done);
            if (std::string(lock) == "spinlock") {
                // Serialized: the three that come second find the block installed.
                CHECK(t.counter("pf_spurious") == 3);
                CHECK(t.counter("stage2_map_same_pte") == 3);
                CHECK(t.fault_lock()->contended == 3);
            } else if (!before) {
                // Concurrent: the installer keeps the PTE locked through its CMO; the others
                // find it locked and fault again until it is installed.
                CHECK(t.counter("stage2_pte_locked") > 0);
                CHECK(t.fault_lock()->contended == 0);
            }
        }
        // Spinlock: three 2 MiB cleans (3 x 20.97 us) leave the lock's critical path.
        if (std::string(lock) == "spinlock") {
            const engine::Time saved = last["user_mem_abort"] - last["map_walker"];
            CHECK(saved > 62_us);
            CHECK(saved < 64_us);
        }
    }
}

TEST_CASE("FWB removes the D-cache clean in both placements, not the I-cache invalidation", "[arm64][seed004]") {
    for (const char* cmo : {"user_mem_abort", "map_walker"}) {
        A64 t(Backing::AnonymousThp, 1024, 2, knobs("spinlock", cmo), true);
        VcpuResult a, b;
        t.spawn_vcpu(0, {{B + 3, Access::Read}}, 0_ns, a);
        t.spawn_vcpu(1, {{B + 600, Access::Exec}}, 0_ns, b);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(t.gauge("pages_2m") == 2);
        CHECK(t.counter("dcache_clean_poc") == 0);
        CHECK(t.counter("dcache_clean_poc_bytes") == 0);
        // A 2 MiB exec mapping is 32768 lines: more than MAX_DVM_OPS, the whole I-cache goes.
        CHECK(t.counter("icache_inval_all_pou") == 1);
        CHECK(t.model->hits(1, B + 600, Access::Exec));
        CHECK_FALSE(t.model->hits(0, B + 3, Access::Exec));
    }
}

TEST_CASE("exec faults: the I-cache is invalidated by line for a page; before, on every exec fault", "[arm64][seed004]") {
    for (const char* cmo : {"user_mem_abort", "map_walker"}) {
        A64 t(Backing::Anonymous, 1024, 4, knobs("spinlock", cmo));
        std::vector<VcpuResult> r(4);
        for (std::uint32_t i = 0; i < 4; ++i) t.spawn_vcpu(i, {{B + 9, Access::Exec}}, 0_ns, r[i]);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        const bool before = std::string(cmo) == "user_mem_abort";
        CHECK(t.counter("icache_inval_pou") == (before ? 4 : 1));
        CHECK(t.counter("icache_inval_pou_bytes") == (before ? 4 : 1) * 4096);
        CHECK(t.counter("icache_inval_all_pou") == 0);
        CHECK(t.model->hits(0, B + 9, Access::Exec));
    }
}

TEST_CASE("dirty logging write-protects; a write is a permission fault relaxed with a TLBI by IPA, no clean",
          "[arm64]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        for (const char* cmo : {"user_mem_abort", "map_walker"}) {
            INFO(lock << " " << cmo);
            A64 t(Backing::Anonymous, 1024, 2, knobs(lock, cmo));
            t.populate();  // reads map writable pages
            VcpuResult a, b, c;
            t.spawn_vcpu(0, {{B + 1, Access::Read}, {B + 2, Access::Read}}, 0_ns, a);
            t.spawn_actor("vmm", 50_us, [&]() -> engine::Task<void> {
                co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
            });
            t.spawn_vcpu(0, {{B + 1, Access::Write}}, 200_us, b);
            // Two exec permission faults on B + 2 at once: X is added once.
            t.spawn_vcpu(0, {{B + 2, Access::Exec}}, 300_us, c);
            VcpuResult d;
            t.spawn_vcpu(1, {{B + 2, Access::Exec}}, 300_us, d);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            CHECK(t.counter("stage2_wp_ptes") == 2);
            CHECK(t.counter("remote_tlb_flush") == 1);
            CHECK(t.counter("__kvm_tlb_flush_vmid") == 1);
            CHECK(t.counter("kvm_pgtable_stage2_relax_perms") >= 3);
            CHECK(t.counter("dcache_clean_poc_bytes") == 2 * 4096);  // the two first faults only
            CHECK(t.model->hits(0, B + 1, Access::Write));
            CHECK_FALSE(t.model->hits(0, B + 2, Access::Write));
            CHECK(t.model->hits(0, B + 2, Access::Exec));
            CHECK(t.m().dirty(0, B + 1));
            CHECK_FALSE(t.m().dirty(0, B + 2));
            CHECK(t.counter("mark_page_dirty_in_slot") == 1);
            const bool before = std::string(cmo) == "user_mem_abort";
            if (std::string(lock) == "spinlock") {
                // Every relax_perms that finds a leaf ends with a TLBI by IPA, even a no-op one.
                CHECK(t.counter("__kvm_tlb_flush_vmid_ipa") == t.counter("kvm_pgtable_stage2_relax_perms"));
                CHECK(t.counter("pf_spurious") == 1);
                CHECK(t.counter("icache_inval_pou") == (before ? 2 : 1));
            }
        }
    }
}

TEST_CASE("a write to a dirty-logged block splits it into a table; disabling logging rebuilds the block",
          "[arm64]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        for (const char* cmo : {"user_mem_abort", "map_walker"}) {
            INFO(lock << " " << cmo);
            A64 t(Backing::AnonymousThp, 1024, 1, knobs(lock, cmo));
            t.populate();  // THPs, not the huge zero page
            const bool before = std::string(cmo) == "user_mem_abort";
            VcpuResult a, b, c;
            t.spawn_vcpu(0, {{B + 3, Access::Read}}, 0_ns, a);
            t.spawn_actor("enable", 200_us, [&]() -> engine::Task<void> {
                co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
            });
            std::map<std::string, std::uint64_t> after_split;
            std::int64_t pages_split = 0;
            t.spawn_vcpu(0, {{B + 5, Access::Write}, {B + 6, Access::Read}}, 300_us, b);
            t.spawn_actor("check", 350_us, [&]() -> engine::Task<void> {
                for (const char* k : {"stage2_block_to_table", "stage2_break_before_make", "__kvm_tlb_flush_vmid_ipa",
                                      "dcache_clean_poc_bytes", "mmu_topup_memory_cache_objs"})
                    after_split[k] = t.counter(k);
                pages_split = static_cast<std::int64_t>(t.m().table_pages());
                CHECK(t.gauge("pages_2m") == 0);
                CHECK(t.gauge("pages_4k") == 2);
                CHECK(t.m().mapping_level(B + 5) == PageLevel::K4);
                CHECK(t.model->hits(0, B + 5, Access::Write));
                // Mapped read-only while logging; the rest of the block lazily.
                CHECK(t.model->hits(0, B + 6, Access::Read));
                CHECK_FALSE(t.model->hits(0, B + 6, Access::Write));
                CHECK_FALSE(t.model->hits(0, B + 7, Access::Read));
                co_await t.model->dirty_log_disable(t.host_ctx(3), 0);
            });
            t.spawn_vcpu(0, {{B + 7, Access::Read}}, 500_us, c);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            CHECK(after_split["stage2_block_to_table"] == 1);
            CHECK(after_split["stage2_break_before_make"] == 1);
            CHECK(after_split["__kvm_tlb_flush_vmid_ipa"] == 1);
            CHECK(pages_split == 4);
            // The split installs a 4K page: cleaned in the walker, but not by v5.12's
            // user_mem_abort (a permission fault); the read of B + 6 cleans its page either way.
            CHECK(after_split["dcache_clean_poc_bytes"] == k2M + (before ? 1 : 2) * 4096);
            // The rebuild: a table replaced by a block (TLBI by VMID), the table freed.
            CHECK(t.counter("stage2_table_to_block") == 1);
            CHECK(t.counter("__kvm_tlb_flush_vmid") == 2);  // + kvm_flush_remote_tlbs at enable
            CHECK(t.counter("stage2_table_pages_freed") == 1);
            CHECK(t.m().table_pages() == 3);
            CHECK(t.gauge("pages_2m") == 1);
            CHECK(t.gauge("pages_4k") == 0);
            CHECK(t.m().mapping_level(B + 5) == PageLevel::M2);
            CHECK(t.model->hits(0, B + 200, Access::Write));
            CHECK(t.counter("dcache_clean_poc_bytes") == after_split["dcache_clean_poc_bytes"] + k2M);
            // Before v6.2 the removed table is freed under the lock, since then by RCU.
            CHECK(t.counter("stage2_free_removed_table_rcu") == (std::string(lock) == "rwlock" ? 1 : 0));
        }
    }
}

TEST_CASE("spinlock: faults on different blocks serialize; rwlock: they run together", "[arm64]") {
    std::map<std::string, engine::Time> done;
    for (const char* lock : {"spinlock", "rwlock"}) {
        A64 t(Backing::AnonymousThp, 1024, 2, knobs(lock, "map_walker"));
        t.populate();  // two THPs: the GUPs take their own heads' lines and arrive together
        VcpuResult a, b;
        t.spawn_vcpu(0, {{B + 1, Access::Read}}, 0_ns, a);
        t.spawn_vcpu(1, {{B + 513, Access::Read}}, 0_ns, b);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(t.counter("pf_fixed") == 2);
        const auto rec = t.fault_lock();
        REQUIRE(rec);
        CHECK(rec->acquisitions == 2);
        if (std::string(lock) == "spinlock") {
            CHECK(rec->contended == 1);
            // The second waited for the first's hold (the 2 MiB clean and the walk) less the
            // head start the first got on the VM's mmap_lock line (user_mem_abort's VMA lookup:
            // its down_read on the untouched line, 60 ns, and its up_read, 10 ns, before the
            // second's down_read is served).
            CHECK(rec->wait_ps.sum() + 70000 >= rec->hold_ps.min());
            CHECK(rec->wait_ps.sum() <= rec->hold_ps.max());
            CHECK(rec->wait_ps.sum() > 20971520);
        } else {
            CHECK(rec->contended == 0);
        }
        done[lock] = std::max(a.done, b.done);
    }
    CHECK(done["spinlock"] - done["rwlock"] > 20_us);
}

TEST_CASE("mmu_lock's word: a queued spinlock hand-over costs two line transfers; readers contend on the rwlock count",
          "[arm64]") {
    // Spinlock (qspinlock): vCPU 1's fault on another block either finds the lock free (it arrives
    // after vCPU 0's hold: one cmpxchg, the line taken from CPU 0) or waits at the head of the
    // queue (both arrive at once: spin_unlock takes the line back from it, it reads it again).
    // Everything else in its hold is the same work in the same order.
    std::map<std::string, std::uint64_t> holds;
    for (const char* when : {"apart", "together"}) {
        A64 t(Backing::AnonymousThp, 1024, 2, knobs("spinlock", "map_walker"));
        t.populate();
        VcpuResult a, b;
        t.spawn_vcpu(0, {{B + 1, Access::Read}}, 0_ns, a);
        t.spawn_vcpu(1, {{B + 513, Access::Read}}, std::string(when) == "apart" ? 1_ms : 0_ns, b);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        const auto rec = t.fault_lock();
        REQUIRE(rec);
        CHECK(rec->contended == (std::string(when) == "apart" ? 0u : 1u));
        holds[when] = rec->hold_ps.sum();
    }
    // The harness's CPUs share a socket: 60 ns a transfer.
    CHECK(holds["together"] - holds["apart"] == 60000);

    // Rwlock (qrwlock): read_lock and read_unlock are atomics on the count, served in turn.
    A64 t(Backing::AnonymousThp, 1024, 2, knobs("rwlock", "map_walker"));
    t.populate();
    VcpuResult a, b;
    t.spawn_vcpu(0, {{B + 1, Access::Read}}, 0_ns, a);
    t.spawn_vcpu(1, {{B + 513, Access::Read}}, 0_ns, b);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    bool found = false;
    for (const auto& r : t.sim.line_stats().totals()) {
        if (t.sim.line_stats().name(r.line_class) != "mmu_lock") continue;
        found = true;
        CHECK(r.operations == 4);
        CHECK(r.contended >= 1);
    }
    CHECK(found);
}

TEST_CASE("an invalidation unmaps, cleans the block and drops the host page; a racing fault retries", "[arm64]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        INFO(lock);
        A64 t(Backing::AnonymousThp, 1024, 2, knobs(lock, "map_walker"));
        VcpuResult a, b, c;
        t.spawn_vcpu(0, {{B + 1, Access::Read}}, 0_ns, a);
        t.spawn_actor("mn", 200_us, [&]() -> engine::Task<void> {
            co_await t.model->invalidate_range(t.host_ctx(3), B, B + 512);
        });
        // A fault during the invalidation: the block is gone, the host page too (a read maps the
        // huge zero page again); when it gets mmu_lock the sequence has moved.
        t.spawn_vcpu(1, {{B + 2, Access::Read}}, engine::Time::ns(200'400), b);
        t.spawn_vcpu(0, {{B + 3, Access::Read}}, 400_us, c);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(t.counter("stage2_unmap_ptes") == 1);
        CHECK(t.counter("mmu_invalidate_retry") >= 1);
        CHECK(b.faults >= 2);
        CHECK(t.counter("host_huge_zero_page_mapped") >= 2);  // before and after the unmap
        CHECK(t.counter("dcache_clean_poc_bytes") >= 3 * k2M);  // map, unmap, map again
        CHECK(t.model->hits(0, B + 3, Access::Read));
        CHECK(t.gauge("pages_2m") == 1);
    }
}

TEST_CASE("the mmu_invalidate_seq snapshot is taken just before the GUP, not at the fault's start", "[arm64][mmu_seq]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        INFO(lock);
        A64 t(Backing::Anonymous, 1024, 1, knobs(lock, "map_walker"));
        VcpuResult r;
        // An invalidation elsewhere is in progress when the fault starts (330 ns) and ends (about
        // 630 ns) before its GUP (330 + entry 100 + user_mem_abort 100 + a two-page top-up 400).
        t.spawn_actor("mn", 0_ns, [&]() -> engine::Task<void> {
            co_await t.m().invalidate_range_start(t.host_ctx(3), B + 900, B + 901);
            co_await t.m().invalidate_range_end(t.host_ctx(3), B + 900, B + 901);
        });
        t.spawn_vcpu(0, {{B + 1, Access::Write}}, 330_ns, r);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(t.counter("mmu_invalidate_retry") == 0);
        CHECK(r.faults == 1);
        CHECK(t.counter("pf_fixed") == 1);
    }
}

TEST_CASE("KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG harvest and write-protect again", "[arm64]") {
    for (const bool manual : {false, true}) {
        INFO("initially set " << manual);
        A64 t(Backing::Anonymous, 1024, 1, knobs("spinlock", "map_walker"));
        t.populate();  // reads map writable pages, which logging write-protects
        VcpuResult a, b;
        t.spawn_vcpu(0, range(B, 8, Access::Read), 0_ns, a);
        std::uint64_t got = 0;
        bool writable_after_enable = false;
        t.spawn_actor("vmm", 100_us, [&]() -> engine::Task<void> {
            vm::DirtyLogOptions o;
            o.manual_protect_initially_set = manual;
            co_await t.model->dirty_log_enable(t.host_ctx(3), 0, o);
            writable_after_enable = t.model->hits(0, B + 1, Access::Write);
            co_await t.sim.delay(100_us);
            got = co_await t.model->dirty_log_get(t.host_ctx(3), 0);
            if (manual) co_await t.model->dirty_log_clear(t.host_ctx(3), 0, B, 1024);
        });
        t.spawn_vcpu(0, {{B + 1, Access::Write}, {B + 2, Access::Write}, {B + 5, Access::Write}}, 150_us, b);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        // Initially-all-set protects nothing when logging starts; KVM_CLEAR_DIRTY_LOG does.
        CHECK(writable_after_enable == manual);
        CHECK(got == (manual ? 1024 : 3));
        CHECK(t.counter("dirty_pages_harvested") == got);
        CHECK_FALSE(t.model->hits(0, B + 1, Access::Write));
        CHECK_FALSE(t.model->hits(0, B + 5, Access::Write));
        CHECK(t.model->hits(0, B + 5, Access::Read));
        CHECK(t.counter("remote_tlb_flush") == (manual ? 1 : 2));
        CHECK(t.counter("stage2_wp_ptes") == (manual ? 8 : 8 + 3));
    }
}

namespace {
// The same accesses through the guest scheduler (faults taken without events where possible) and
// one event per access: identical faults, times, statistics and lock records.
struct Log {
    std::vector<std::tuple<std::int64_t, std::int32_t, Gfn>> faults;
    std::map<std::string, std::uint64_t> counters;
    std::uint64_t acquired = 0, contended = 0;
    engine::uint128_t wait = 0, hold = 0;
    engine::Time end;
    std::uint64_t events = 0;
};

struct Recorder : vm::MmuModel {
    vm::MmuModel& m;
    engine::Simulator& sim;
    std::vector<std::tuple<std::int64_t, std::int32_t, Gfn>>& out;
    Recorder(vm::MmuModel& mm, engine::Simulator& s, std::vector<std::tuple<std::int64_t, std::int32_t, Gfn>>& o)
        : m(mm), sim(s), out(o) {}
    bool hits(std::uint32_t v, Gfn g, Access a) const override { return m.hits(v, g, a); }
    engine::Task<void> page_fault(const vm::CpuContext& c, Gfn g, Access a) override {
        out.emplace_back(sim.now().ps(), c.vcpu, g);
        co_await m.page_fault(c, g, a);
    }
    engine::Task<void> page_fault_at(engine::Simulator& s, const vm::CpuContext& c, Gfn g, Access a,
                                     engine::Time start) override {
        out.emplace_back(start.ps(), c.vcpu, g);
        co_await m.page_fault_at(s, c, g, a, start);
    }
    std::optional<engine::Time> page_fault_now(const vm::CpuContext& c, Gfn g, Access a, engine::Time start) override {
        auto r = m.page_fault_now(c, g, a, start);
        if (r) out.emplace_back(start.ps(), c.vcpu, g);
        return r;
    }
    engine::Time fault_lookahead() const override { return m.fault_lookahead(); }
};

engine::Task<void> naive(engine::Simulator& sim, vm::MmuModel& m, vm::CpuContext ctx, workload::AccessStream s) {
    workload::StreamCursor c(s, sim.stream("guest", static_cast<std::uint64_t>(ctx.vcpu)));
    while (!c.done()) {
        if (!m.hits(static_cast<std::uint32_t>(ctx.vcpu), c.gfn(), c.access())) {
            co_await m.page_fault(ctx, c.gfn(), c.access());
            continue;
        }
        c.advance();
        co_await sim.delay(s.guest_time);
    }
}

// shared: every vCPU walks all four THPs in the same order (a convoy: their GUPs and put_pages
// take the same heads' refcount lines); else each its own THP.
Log convoy(bool scheduler, const char* cmo, bool shared = true) {
    A64 t(Backing::AnonymousThp, 2048, 4, knobs("spinlock", cmo), false, true);
    t.m().set_early_arrivals(scheduler);
    Log log;
    Recorder rec(*t.model, t.sim, log.faults);
    workload::GuestScheduler g(t.sim, rec);
    std::vector<vm::CpuContext> cpus;
    std::vector<workload::VcpuStats> st(4);
    for (std::uint32_t v = 0; v < 4; ++v) cpus.push_back(t.vcpu_ctx(v));
    for (std::uint32_t v = 0; v < 4; ++v) {
        workload::AccessStream s;
        s.pattern = workload::AccessStream::Pattern::BlockSplit;
        s.base = shared ? B : B + 512 * v;
        s.npages = shared ? 2048 : 512;
        s.block_pages = 512;
        s.guest_time = engine::Time::ps(25'000 + 7 * v);
        if (scheduler)
            t.sim.spawn(cpus[v].name, [](workload::GuestScheduler& g, const vm::CpuContext& c, workload::AccessStream s,
                                         workload::VcpuStats& st) -> engine::Task<void> { co_await g.run(c, s, st); }(
                                          g, cpus[v], s, st[v]));
        else
            t.sim.spawn(cpus[v].name, naive(t.sim, rec, cpus[v], s));
    }
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    for (const char* k : {"pf_taken", "pf_fixed", "pf_spurious", "dcache_clean_poc_bytes", "stage2_map_same_pte",
                          "host_fault_first_touch", "pages_2m"})
        log.counters[k] = t.counter(k);
    const auto r = t.fault_lock();
    REQUIRE(r);
    log.acquired = r->acquisitions;
    log.contended = r->contended;
    log.wait = r->wait_ps.sum();
    log.hold = r->hold_ps.sum();
    log.end = t.sim.now();
    log.events = t.sim.events_processed();
    std::sort(log.faults.begin(), log.faults.end());
    return log;
}
}  // namespace

TEST_CASE("spinlock arrivals and faults taken ahead of events give exactly the run of one event per access", "[arm64]") {
    for (const char* cmo : {"user_mem_abort", "map_walker"}) {
      for (const bool shared : {true, false}) {
        INFO(cmo << " shared " << shared);
        const Log a = convoy(false, cmo, shared);
        const Log b = convoy(true, cmo, shared);
        REQUIRE(a.faults.size() > (shared ? 1000 : 250));
        CHECK(b.faults == a.faults);
        CHECK(b.counters == a.counters);
        CHECK(b.acquired == a.acquired);
        CHECK(b.contended == a.contended);
        CHECK(b.wait == a.wait);
        CHECK(b.hold == a.hold);
        CHECK(b.end == a.end);
        if (shared) {
            // Convoyed: each vCPU faults on nearly every page the others fault on. Every GUP and
            // arrival then shares a refcount line with another vCPU's call point due before it,
            // so none is taken ahead: the same events, and the scheduler's.
            CHECK(a.counters.at("pf_spurious") > a.counters.at("pf_fixed"));
        } else {
            // Apart, GUPs and put_pages use the vCPUs' own lines: only arrivals wait for each
            // other, and the faults are taken ahead of events.
            CHECK(a.counters.at("pf_spurious") == 0);
            CHECK(b.events < a.events);
        }
      }
    }
}

TEST_CASE("arm64_stage2 runs are deterministic and a tracer changes nothing", "[arm64]") {
    struct Rec : engine::Tracer {
        std::map<std::pair<int, std::uint32_t>, std::int64_t> last;  // (kind, track) -> time
        bool ordered = true;
        std::uint64_t holds = 0;
        void at(int kind, std::uint32_t track, engine::Time t) {
            auto& l = last[{kind, track}];
            ordered = ordered && t.ps() >= l;
            l = t.ps();
        }
        void process_started(std::uint32_t, std::string_view) override {}
        void slice_begin(std::uint32_t pid, std::string_view, engine::Time t) override { at(0, pid, t); }
        void slice_end(std::uint32_t pid, engine::Time t) override { at(0, pid, t); }
        void lock_wait_begin(std::uint32_t l, std::string_view, std::uint32_t, std::string_view, engine::Time t) override { at(1, l, t); }
        void lock_wait_end(std::uint32_t l, std::uint32_t, engine::Time t) override { at(1, l, t); }
        void lock_hold_begin(std::uint32_t l, std::string_view, std::uint32_t, std::string_view, std::string_view,
                             engine::Time t) override {
            at(1, l, t);
            ++holds;
        }
        void lock_hold_end(std::uint32_t l, std::uint32_t, std::string_view, engine::Time t) override { at(1, l, t); }
        void lock_handoff(std::uint32_t, std::uint32_t, std::uint32_t, engine::Time) override {}
        void counter(std::string_view, double, engine::Time) override {}
    };
    auto run = [](Rec* tr) {
        A64 t(Backing::AnonymousThp, 1024, 3, knobs("spinlock", "map_walker"));
        t.sim.set_tracer(tr);
        std::vector<VcpuResult> r(3);
        for (std::uint32_t i = 0; i < 3; ++i) t.spawn_vcpu(i, range(B, 64, Access::Read, 9), engine::Time::ns(i), r[i]);
        t.spawn_actor("vmm", 30_us, [&]() -> engine::Task<void> {
            co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
        });
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        t.sim.set_tracer(nullptr);
        return std::make_pair(t.sim.fingerprint(), t.counter("pf_taken"));
    };
    const auto a = run(nullptr);
    const auto b = run(nullptr);
    Rec tr;
    const auto c = run(&tr);
    CHECK(a == b);
    CHECK(c == a);
    CHECK(tr.ordered);
    CHECK(tr.holds > 3);
}

// ---------------------------------------------------------------------------------------------
// Eager page splitting (eager_split_chunk_size, v6.5) and the local TLBI on permission relaxation.

namespace {
vm::Knobs split_knobs(const std::string& chunk, const std::string& relax = "broadcast") {
    return {{"mmu_lock", std::string("rwlock")}, {"cmo", std::string("map_walker")},
            {"eager_split_chunk_size", chunk}, {"relax_perms_tlbi", relax}};
}

// Maps every block of the slot (hugetlb, populated) by a read of its first page, enables dirty
// logging (not initially-all-set) at 20 ms (a 1 GiB block's first clean takes 10.7 ms), then
// writes `write_gfn` at 100 ms.
struct SplitRun {
    A64 t;
    VcpuResult a, b;
    engine::Time enable_start, enable_end;
    SplitRun(Backing backing, std::uint64_t npages, vm::Knobs k, Gfn write_gfn)
        : t(backing, npages, 1, std::move(k)) {
        t.populate();
        const std::uint64_t block = backing == Backing::Hugetlb1G ? (1u << 18) : 512;
        std::vector<R> reads;
        for (Gfn g = 0; g < npages; g += block) reads.push_back({B + g, Access::Read});
        t.spawn_vcpu(0, reads, 0_ns, a);
        t.spawn_actor("vmm", 20_ms, [this]() -> engine::Task<void> {
            enable_start = t.sim.now();
            co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
            enable_end = t.sim.now();
        });
        t.spawn_vcpu(0, {{write_gfn, Access::Write}}, 100_ms, b);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    }
};
}  // namespace

TEST_CASE("eager_split_chunk_size and relax_perms_tlbi: knobs, defaults, the kernel's validation", "[arm64][split]") {
    const vm::ModelInfo* info = models::builtin_models().find("arm64_stage2");
    REQUIRE(info);
    const vm::KnobSpec* k = info->knob("eager_split_chunk_size");
    REQUIRE(k);
    CHECK(std::get<std::string>(k->default_value) == "0");
    CHECK(k->choices == std::vector<std::string>{"0", "4K", "2M", "1G"});
    CHECK(k->meaning.find("v6.5") != std::string::npos);
    REQUIRE(k->applies_when.size() == 1);
    CHECK(k->applies_when[0].knob == "mmu_lock");
    const vm::KnobSpec* r = info->knob("relax_perms_tlbi");
    REQUIRE(r);
    CHECK(std::get<std::string>(r->default_value) == "broadcast");
    // Not a block size (kvm_is_block_size_supported): -EINVAL.
    Harness h(Backing::Anonymous, 512, 1, {{"eager_split_chunk_size", std::string("3M")}});
    h.host.costs = arm64_test_costs();
    h.host.features["fwb"] = false;
    CHECK_THROWS_WITH(h.build(make_a64), Catch::Contains("eager_split_chunk_size"));
    // Eager splitting takes the rwlock for write: not with the pre-v6.2 spinlock.
    Harness h2(Backing::Anonymous, 512, 1,
               {{"mmu_lock", std::string("spinlock")}, {"eager_split_chunk_size", std::string("2M")}});
    h2.host.costs = arm64_test_costs();
    h2.host.features["fwb"] = false;
    CHECK_THROWS_WITH(h2.build(make_a64), Catch::Contains("rwlock"));
}

TEST_CASE("eager split 2M: enabling dirty logging splits every write-protected 2 MiB block, one BBM and TLBI "
          "by IPA per chunk, the split cache topped up with mmu_lock dropped",
          "[arm64][split]") {
    SplitRun s(Backing::Hugetlb2M, 4 * 512, split_knobs("2M"), B + 512 + 5);
    A64& t = s.t;
    // 4 chunks of 2 MiB, a block each.
    CHECK(t.counter("kvm_pgtable_stage2_split") == 4);
    CHECK(t.counter("stage2_split_walker_blocks") == 4);
    CHECK(t.counter("stage2_block_to_table") == 4);
    CHECK(t.counter("stage2_break_before_make") == 4);
    CHECK(t.counter("stage2_create_unlinked_ptes") == 4 * 512);
    // kvm_mmu_split_nr_page_tables(2M) = 1 + 1: the empty cache first gets 2 pages; every chunk
    // takes 1 and leaves 1 < 2, so every chunk is preceded by a top-up of 1 (the first by 2).
    CHECK(t.counter("split_page_cache_topups") == 4);
    CHECK(t.counter("split_page_cache_objs") == 2 + 1 + 1 + 1);
    CHECK(t.m().split_page_cache().nobjs() == 1);
    // The split's TLBIs: one by IPA per block (stage2_try_break_pte); the write after it is a
    // permission fault relaxed (broadcast TLBI by default) without a split or a CMO.
    CHECK(t.counter("__kvm_tlb_flush_vmid_ipa") == 4 + 1);
    CHECK(t.counter("__kvm_tlb_flush_vmid") == 1);  // kvm_flush_remote_tlbs after the write protection
    CHECK(t.counter("kvm_pgtable_stage2_relax_perms") == 1);
    CHECK(t.counter("dcache_clean_poc_bytes") == 4 * k2M);  // the first mappings only
    CHECK(t.gauge("pages_2m") == 0);
    CHECK(t.gauge("pages_4k") == 4 * 512);
    // Every page mapped read-only at 4 KiB (the blocks were write-protected first), B + 517 written.
    CHECK(t.m().mapping_level(B + 7) == PageLevel::K4);
    CHECK(t.model->hits(0, B + 2047, Access::Read));
    CHECK_FALSE(t.model->hits(0, B + 2047, Access::Write));
    CHECK(t.model->hits(0, B + 517, Access::Write));
    // Lock modes: the split under mmu_lock for write, taken by kvm_mmu_split_memory_region and
    // again after each top-up; the fault for read.
    auto region = t.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_split_memory_region");
    auto huge = t.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_split_huge_pages");
    REQUIRE(region);
    REQUIRE(huge);
    CHECK(region->acquisitions == 1);
    CHECK(huge->acquisitions == 4);
    CHECK(t.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_wp_memory_region")->acquisitions == 1);
    CHECK(t.lock("mmu_lock", engine::LockMode::Read, "user_mem_abort")->acquisitions == 4 + 1);
}

TEST_CASE("eager split chunk \"0\" leaves dirty logging as it was: the write fault splits the block", "[arm64][split]") {
    SplitRun off(Backing::Hugetlb2M, 4 * 512, split_knobs("0"), B + 512 + 5);
    SplitRun dflt(Backing::Hugetlb2M, 4 * 512, {{"mmu_lock", std::string("rwlock")}, {"cmo", std::string("map_walker")}},
                  B + 512 + 5);
    for (const char* c : {"kvm_pgtable_stage2_split", "stage2_split_walker_blocks", "split_page_cache_topups"})
        CHECK(off.t.counter(c) == 0);
    CHECK(off.t.counter("stage2_block_to_table") == 1);  // by the write fault
    CHECK(off.t.gauge("pages_2m") == 3);
    CHECK(off.t.gauge("pages_4k") == 1);
    CHECK_FALSE(off.t.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_split_memory_region"));
    // Bit for bit the run without the knob: the same counters, times and enable duration.
    const auto& ca = off.t.sim.counters();
    const auto& cb = dflt.t.sim.counters();
    REQUIRE(ca.size() == cb.size());
    for (std::size_t i = 0; i < ca.size(); ++i) {
        INFO(ca.name(static_cast<engine::CounterId>(i)));
        CHECK(ca.name(static_cast<engine::CounterId>(i)) == cb.name(static_cast<engine::CounterId>(i)));
        CHECK(ca.total(static_cast<engine::CounterId>(i)) == cb.total(static_cast<engine::CounterId>(i)));
    }
    CHECK(off.enable_end - off.enable_start == dflt.enable_end - dflt.enable_start);
    CHECK(off.b.done == dflt.b.done);
    CHECK(off.t.sim.fingerprint() == dflt.t.sim.fingerprint());
}

TEST_CASE("eager split of a 1 GiB block: chunk 1G builds it down to PTEs at once (513 pages); chunk 2M splits it "
          "to 2 MiB blocks, then one of those per chunk",
          "[arm64][split]") {
    SECTION("1G") {
        SplitRun s(Backing::Hugetlb1G, 1u << 18, split_knobs("1G"), B + 5);
        CHECK(s.t.counter("kvm_pgtable_stage2_split") == 1);
        CHECK(s.t.counter("stage2_split_walker_blocks") == 1);  // force_pte: no 2 MiB block is left to split
        CHECK(s.t.counter("stage2_break_before_make") == 1);
        CHECK(s.t.counter("split_page_cache_objs") == 513);
        CHECK(s.t.counter("stage2_create_unlinked_ptes") == 513 * 512);
        CHECK(s.t.gauge("pages_1g") == 0);
        CHECK(s.t.gauge("pages_4k") == 1 << 18);
    }
    SECTION("2M") {
        SplitRun s(Backing::Hugetlb1G, 1u << 18, split_knobs("2M"), B + 5);
        CHECK(s.t.counter("kvm_pgtable_stage2_split") == 512);
        CHECK(s.t.counter("stage2_split_walker_blocks") == 1 + 512);
        CHECK(s.t.counter("stage2_break_before_make") == 1 + 512);
        CHECK(s.t.counter("__kvm_tlb_flush_vmid_ipa") == 1 + 512 + 1);  // BBMs, then the relax
        // Chunk 1: 2 pages (the 1 GiB block's table, one 2 MiB block's); chunk 2: a top-up of 2,
        // one used; chunks 3-512: a top-up of 1 each.
        CHECK(s.t.counter("split_page_cache_topups") == 512);
        CHECK(s.t.counter("split_page_cache_objs") == 2 + 2 + 510);
        CHECK(s.t.gauge("pages_2m") == 0);
        CHECK(s.t.gauge("pages_4k") == 1 << 18);
    }
}

TEST_CASE("eager split with initially-all-set: nothing at enable, KVM_CLEAR_DIRTY_LOG splits the cleared range's "
          "block after protecting it",
          "[arm64][split]") {
    A64 t(Backing::Hugetlb2M, 4 * 512, 1, split_knobs("2M"));
    t.populate();
    VcpuResult a;
    t.spawn_vcpu(0, {{B, Access::Read}, {B + 512, Access::Read}, {B + 1024, Access::Read}, {B + 1536, Access::Read}},
                 0_ns, a);
    std::uint64_t split_at_enable = 1;
    t.spawn_actor("vmm", 1_ms, [&]() -> engine::Task<void> {
        vm::DirtyLogOptions o;
        o.manual_protect_initially_set = true;
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, o);
        split_at_enable = t.counter("stage2_split_walker_blocks");
        co_await t.model->dirty_log_clear(t.host_ctx(3), 0, B + 512, 64);
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(split_at_enable == 0);
    CHECK(t.counter("stage2_split_walker_blocks") == 1);
    CHECK(t.counter("kvm_pgtable_stage2_split") == 1);
    CHECK(t.gauge("pages_2m") == 3);
    CHECK(t.gauge("pages_4k") == 512);
    CHECK(t.m().mapping_level(B + 600) == PageLevel::K4);
    CHECK(t.m().mapping_level(B + 1100) == PageLevel::M2);
    // stage2_wp_range protected the whole block holding the cleared pages, then the split gave
    // its permissions to all 512 PTEs; the other blocks stay writable.
    CHECK_FALSE(t.model->hits(0, B + 512 + 3, Access::Write));
    CHECK_FALSE(t.model->hits(0, B + 512 + 100, Access::Write));
    CHECK(t.model->hits(0, B + 512 + 100, Access::Read));
    CHECK(t.model->hits(0, B + 1100, Access::Write));
    CHECK(t.lock("mmu_lock", engine::LockMode::Write, "kvm_clear_dirty_log_protect")->acquisitions == 1);
    CHECK(t.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_split_huge_pages")->acquisitions == 1);
}

TEST_CASE("relax_perms_tlbi local: the permission relaxation's TLBI is __kvm_tlb_flush_vmid_ipa_nsh", "[arm64][split]") {
    SplitRun bc(Backing::Hugetlb2M, 512, split_knobs("2M"), B + 5);
    SplitRun lc(Backing::Hugetlb2M, 512, split_knobs("2M", "local"), B + 5);
    CHECK(bc.t.counter("__kvm_tlb_flush_vmid_ipa") == 2);
    CHECK(bc.t.counter("__kvm_tlb_flush_vmid_ipa_nsh") == 0);
    CHECK(lc.t.counter("__kvm_tlb_flush_vmid_ipa") == 1);  // the split's BBM stays broadcast
    CHECK(lc.t.counter("__kvm_tlb_flush_vmid_ipa_nsh") == 1);
    // The write fault is shorter by exactly tlbi_ipa - tlbi_ipa_nsh (500 - 40 ns).
    CHECK(bc.b.done - lc.b.done == 460_ns);
}

TEST_CASE("user_mem_abort's VMA lookup takes and drops mmap_lock on every fault, on the line the VM shares", "[arm64]") {
    // Every page present and writable: the GUPs take the fast path, so the mmap_lock line sees
    // only the VMA lookup's down_read and up_read (arch/arm64/kvm/mmu.c user_mem_abort).
    const auto mmap_line = [](A64& t) {
        std::optional<engine::LineRecord> out;
        for (const auto& r : t.sim.line_stats().totals())
            if (t.sim.line_stats().name(r.line_class) == "mmap_lock") out = r;
        return out;
    };
    for (const char* lock : {"spinlock", "rwlock"}) {
        INFO(lock);
        {  // one vCPU, three faults on distinct THPs: two operations each, never contended
            A64 t(Backing::AnonymousThp, 2048, 1, knobs(lock, "map_walker"));
            t.populate();
            VcpuResult a;
            t.spawn_vcpu(0, {{B + 1, Access::Write}, {B + 513, Access::Write}, {B + 1025, Access::Write}}, 0_ns, a);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            const auto r = mmap_line(t);
            REQUIRE(r);
            CHECK(r->operations == 6);
            CHECK(r->contended == 0);
        }
        {  // four vCPUs at once on distinct THPs: their lookups overlap on the one line
            A64 t(Backing::AnonymousThp, 2048, 4, knobs(lock, "map_walker"));
            t.populate();
            std::vector<VcpuResult> res(4);
            for (std::uint32_t i = 0; i < 4; ++i) t.spawn_vcpu(i, {{B + 1 + 512 * i, Access::Write}}, 0_ns, res[i]);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            const auto r = mmap_line(t);
            REQUIRE(r);
            CHECK(r->operations == 8);
            // the first down_read is served at once; every other vCPU's arrives while the line is busy
            CHECK(r->contended >= 3);
            CHECK(r->wait_ps.count() == r->contended);
        }
    }
}
