// Unit tests of the x86 TDP MMU model: exact, mechanism-derived outcomes on small VMs.
#include <catch2/catch.hpp>

#include "models/registry.hpp"
#include "models/x86_tdp/x86_tdp.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::testing;
using namespace kvmsim::engine::time_literals;
using kvmsim::models::x86_tdp::X86TdpMmu;
using vm::Access;
using vm::Backing;
using vm::Gfn;
using vm::PageLevel;
using R = testing::GuestAccess;

namespace {

std::unique_ptr<vm::MmuModel> make_tdp(vm::ModelEnv& env) {
    return models::builtin_models().find("x86_tdp")->create(env);
}

struct Tdp : Harness {
    // `costs`: overrides of test_costs() (name, picoseconds).
    Tdp(Backing b, std::uint64_t npages, std::uint32_t vcpus, vm::Knobs k = {}, std::uint64_t seed = 1,
        std::vector<std::pair<std::string, double>> costs = {})
        : Harness(b, npages, vcpus, std::move(k), seed) {
        for (auto& [n, v] : costs) host.costs.set(n, v);
        build(make_tdp);
    }
    X86TdpMmu& tdp() { return static_cast<X86TdpMmu&>(*model); }
};

constexpr Gfn B = Harness::kBase;

}  // namespace

TEST_CASE("x86_tdp is registered with its knobs, costs and operations", "[x86_tdp]") {
    const vm::ModelInfo* info = models::builtin_models().find("x86_tdp");
    REQUIRE(info);
    CHECK(info->kernel.find("v6.9") != std::string::npos);
    for (const char* k : {"fault_lock", "zap_lock", "fault_precheck", "eager_page_split", "preempt", "tdp_root_unload",
                          "fault_split", "tdp_mmu_fast_page_fault", "mmu_init"})
        CHECK(info->knob(k));
    CHECK(std::get<std::string>(info->knob("fault_split")->default_value) == "in_place");
    CHECK(std::get<bool>(info->knob("tdp_mmu_fast_page_fault")->default_value));
    CHECK(std::get<std::string>(info->knob("tdp_root_unload")->default_value) == "preserve");
    CHECK(std::get<std::string>(info->knob("mmu_init")->default_value) == "full_every_reset");
    CHECK(std::get<std::string>(info->knob("zap_lock")->default_value) == "write");
    CHECK(std::get<std::string>(info->knob("fault_lock")->default_value) == "read");
    CHECK(std::get<bool>(info->knob("fault_precheck")->default_value));
    CHECK(std::get<bool>(info->knob("eager_page_split")->default_value));
    CHECK(info->costs.size() == 35 + 8 + 5);  // 24 of the TDP MMU, 5 of the MMU context, the host mm's, 3 of aging; 8 of userfaultfd; 5 optional guest TLB
    CHECK(info->supports(vm::Operation::ZapGfnRange));
    CHECK(info->supports(vm::Operation::Invalidate));
    CHECK(info->supports(vm::Operation::DirtyLogClear));
    CHECK(info->supports(vm::Operation::SmmEnter));
    CHECK(info->supports(vm::Operation::SmmExit));
    CHECK_FALSE(info->supports(vm::Operation::NestedStart));
}

TEST_CASE("a knob of the wrong type or with an unknown choice is rejected", "[x86_tdp]") {
    Harness h(Backing::Anonymous, 512, 1, {{"zap_lock", std::string("sometimes")}});
    CHECK_THROWS_WITH(h.build(make_tdp), Catch::Contains("zap_lock"));
    Harness h2(Backing::Anonymous, 512, 1, {{"fault_precheck", std::string("yes")}});
    CHECK_THROWS_WITH(h2.build(make_tdp), Catch::Contains("fault_precheck"));
    Harness h3(Backing::Anonymous, 512, 1, {{"fault_split", std::string("split")}});
    CHECK_THROWS_WITH(h3.build(make_tdp), Catch::Contains("fault_split"));
    Harness h4(Backing::Anonymous, 512, 1, {{"tdp_mmu_fast_page_fault", std::string("no")}});
    CHECK_THROWS_WITH(h4.build(make_tdp), Catch::Contains("tdp_mmu_fast_page_fault"));
}

TEST_CASE("a missing cost is reported by name", "[x86_tdp]") {
    Harness h(Backing::Anonymous, 512, 1);
    h.host.costs = vm::CostProfile{};
    h.host.costs.set("fault_entry", 1);
    CHECK_THROWS_WITH(h.build(make_tdp), Catch::Contains("tdp_map_base") && Catch::Contains("fault_exit"));
}

TEST_CASE("a 4K fault maps one page, counts pf_fixed and pages_4k, then hits", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 1024, 1);
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 7, Access::Write}}, 0_ns, r);
    t.check_one_4k_fault(r);
    CHECK(t.tdp().mapping_level(B + 7) == PageLevel::K4);
    CHECK_FALSE(t.tdp().mapping_level(B + 8));
    // make_spte installs a writable SPTE for a host-writable page (a write fault's GUP).
    CHECK(t.model->hits(0, B + 7, Access::Read));
    CHECK(t.model->hits(0, B + 7, Access::Write));
    CHECK(t.model->hits(0, B + 7, Access::Exec));
    CHECK_FALSE(t.model->hits(0, B + 8, Access::Read));
    // The walk linked a PDPT, a PD and a PT page from the vCPU's caches.
    CHECK(t.tdp().tdp_mmu_pages() == 3);
    // mmu_topup_memory_caches filled three caches to KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE.
    CHECK(t.counter("mmu_topup_memory_cache_objs") == 120);
    CHECK(t.tdp().vcpu_cache(0, 1).nobjs() == 40 - 3);
    CHECK(t.tdp().vcpu_cache(0, 2).nobjs() == 40 - 3);
    CHECK(t.counter("host_fault_first_touch") == 1);
    CHECK(t.counter("host_zeroed_4k") == 1);
    const auto rd = t.lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
    REQUIRE(rd);
    CHECK(rd->acquisitions == 1);
    CHECK(rd->contended == 0);
}

TEST_CASE("a second fault reuses the page tables and the topped-up caches", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 1024, 1);
    VcpuResult r;
    t.spawn_vcpu(0, range(B, 600, Access::Write), 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 600);
    CHECK(t.counter("pf_fixed") == 600);
    CHECK(t.gauge("pages_4k") == 600);
    CHECK(t.tdp().tdp_mmu_pages() == 4);  // PDPT, PD, two PTs (600 pages cross a 2M boundary)
    CHECK(t.counter("mmu_topup_memory_cache_objs") == 120);  // never below min = 5 afterwards
}

TEST_CASE("a THP-backed fault maps 2M and all 512 gfns then hit", "[x86_tdp]") {
    Tdp t(Backing::AnonymousThp, 2048, 1);
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 512 + 100, Access::Write}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 1);
    CHECK(t.counter("pf_fixed") == 1);
    CHECK(t.gauge("pages_2m") == 1);
    CHECK(t.gauge("pages_4k") == 0);
    CHECK(t.tdp().tdp_mmu_pages() == 2);  // PDPT and PD; no PT
    CHECK(t.counter("host_zeroed_4k") == 512);
    for (Gfn g = B + 512; g < B + 1024; ++g) {
        CHECK(t.model->hits(0, g, Access::Write));
        CHECK(t.tdp().mapping_level(g) == PageLevel::M2);
    }
    CHECK_FALSE(t.model->hits(0, B + 511, Access::Read));
    CHECK_FALSE(t.model->hits(0, B + 1024, Access::Read));
}

TEST_CASE("a hugetlb 1G fault maps 1G", "[x86_tdp]") {
    Tdp t(Backing::Hugetlb1G, 512 * 512, 1);
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 12345, Access::Write}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_1g") == 1);
    CHECK(t.tdp().tdp_mmu_pages() == 1);  // the PDPT
    CHECK(t.model->hits(0, B, Access::Read));
    CHECK(t.model->hits(0, B + 512 * 512 - 1, Access::Write));
    CHECK(t.counter("host_zeroed_4k") == 512 * 512);
}

TEST_CASE("a huge page that does not fit in the slot is mapped with 4K pages", "[x86_tdp]") {
    Tdp t(Backing::AnonymousThp, 512 + 100, 1);  // the second 2M region is cut by the slot end
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 3, Access::Read}, {B + 512 + 3, Access::Read}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.tdp().mapping_level(B + 3) == PageLevel::M2);
    CHECK(t.tdp().mapping_level(B + 512 + 3) == PageLevel::K4);
    CHECK(t.gauge("pages_2m") == 1);
    CHECK(t.gauge("pages_4k") == 1);
}

TEST_CASE("a fault outside every memslot is emulated", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 512, 1);
    std::uint64_t faults = 0;
    t.sim.spawn("vcpu0", [](Tdp& t, std::uint64_t& faults) -> engine::Task<void> {
        const vm::CpuContext ctx = t.vcpu_ctx(0);
        ++faults;
        co_await t.model->page_fault(ctx, 5, Access::Read);
    }(t, faults));
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_emulate") == 1);
    CHECK(t.counter("pf_fixed") == 0);
    CHECK(t.sim.now() == 200_ns);  // fault_entry + fault_exit
}

TEST_CASE("two vCPUs faulting the same gfn at once: one installs, the other loses the cmpxchg and retries", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 1024, 2);
    VcpuResult a, b;
    t.spawn_vcpu(0, {{B + 1, Access::Write}}, 0_ns, a);
    t.spawn_vcpu(1, {{B + 1, Access::Write}}, 0_ns, b);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    // Both resolved the host page (concurrent first touches both zero a page), took mmu_lock for
    // read together and read the same non-present SPTEs; the second commit found them changed.
    CHECK(a.faults == 1);
    CHECK(b.faults == 1);
    CHECK(t.counter("pf_taken") == 2);
    CHECK(t.counter("pf_fixed") == 1);
    CHECK(t.counter("pf_retry_cmpxchg") == 1);
    CHECK(t.counter("host_fault_first_touch") == 2);
    CHECK(t.gauge("pages_4k") == 1);
    CHECK(t.tdp().tdp_mmu_pages() == 3);  // the loser's three pages were freed
    const auto rd = t.lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
    REQUIRE(rd);
    CHECK(rd->acquisitions == 2);
    CHECK(rd->contended == 0);  // readers share
}

TEST_CASE("a vCPU whose fault finds the SPTE installed meanwhile counts pf_spurious", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 1024, 2);
    VcpuResult a, b;
    // vCPU0 installs at about 17.5us (entry, 16us of cache top-up, host fault). vCPU1 misses at
    // 10us, before the install, and walks after it.
    t.spawn_vcpu(0, {{B + 1, Access::Write}}, 0_ns, a);
    t.spawn_vcpu(1, {{B + 1, Access::Write}}, 10_us, b);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_taken") == 2);
    CHECK(t.counter("pf_fixed") == 1);
    CHECK(t.counter("pf_spurious") == 1);
    CHECK(t.counter("pf_retry_cmpxchg") == 0);
    CHECK(t.counter("host_fault_first_touch") == 1);  // vCPU1 found the host page present
}

TEST_CASE("fault_lock = write serializes faults", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 1024, 2, {{"fault_lock", std::string("write")}});
    VcpuResult a, b;
    t.spawn_vcpu(0, {{B + 1, Access::Read}}, 0_ns, a);
    t.spawn_vcpu(1, {{B + 2, Access::Read}}, 0_ns, b);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_fixed") == 2);
    CHECK(t.counter("pf_retry_cmpxchg") == 0);
    const auto wr = t.lock("mmu_lock", engine::LockMode::Write, "kvm_tdp_mmu_page_fault");
    REQUIRE(wr);
    CHECK(wr->acquisitions == 2);
    CHECK(wr->contended == 1);
    CHECK_FALSE(t.lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault"));
}

TEST_CASE("enabling dirty logging with eager split turns 2M mappings into write-protected 4K ones", "[x86_tdp][dirty]") {
    Tdp t(Backing::AnonymousThp, 4 * 512, 1);
    VcpuResult r1, r2;
    t.spawn_vcpu(0, range(B, 4, Access::Write, 512), 0_ns, r1);  // THPs, not the huge zero page
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_fixed") == 4);
    CHECK(t.gauge("pages_2m") == 0);
    CHECK(t.gauge("pages_4k") == 4 * 512);
    CHECK(t.counter("kvm_mmu_split_huge_page") == 4);
    CHECK(t.counter("tdp_mmu_alloc_sp_for_split") == 4);  // mmu_lock dropped once per split
    CHECK(t.counter("spte_write_protected") == 4 * 512);
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(t.tdp().tdp_mmu_pages() == 2 + 4);
    for (Gfn g = B; g < B + 4 * 512; g += 97) {
        CHECK(t.model->hits(0, g, Access::Read));
        CHECK_FALSE(t.model->hits(0, g, Access::Write));
        CHECK(t.tdp().mapping_level(g) == PageLevel::K4);
    }
    // Writes now take the fast path: one lockless cmpxchg each, and the page is logged.
    t.spawn_vcpu(0, range(B, 4 * 512, Access::Write), 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r2.faults == 4 * 512);
    CHECK(t.counter("pf_fast") == 4 * 512);
    CHECK(t.counter("pf_fixed") == 4 + 4 * 512);
    CHECK(t.lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault")->acquisitions == 4);
    CHECK(t.tdp().dirty(0, B));
    CHECK(t.tdp().dirty(0, B + 4 * 512 - 1));
    CHECK(t.counter("mark_page_dirty_in_slot") == 4 * 512);
}

TEST_CASE("without eager split the first write to each huge page splits it in the fault path", "[x86_tdp][dirty]") {
    Tdp t(Backing::AnonymousThp, 4 * 512, 1, {{"eager_page_split", false}});
    VcpuResult r1, r2;
    t.spawn_vcpu(0, range(B, 4, Access::Write, 512), 0_ns, r1);  // THPs, not the huge zero page
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_2m") == 4);  // write-protected, not split
    CHECK(t.counter("spte_write_protected") == 4);
    CHECK(t.counter("kvm_mmu_split_huge_page") == 0);
    CHECK_FALSE(t.model->hits(0, B, Access::Write));
    CHECK(t.model->hits(0, B, Access::Read));
    t.spawn_vcpu(0, range(B, 4 * 512, Access::Write), 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    // Per 2M page: the first write cannot be fixed fast (huge SPTE, dirty logging) and splits it
    // under mmu_lock read (pf_fixed); the other 511 writes find write-protected 4K children.
    CHECK(t.counter("kvm_mmu_split_huge_page") == 4);
    CHECK(t.counter("pf_fast") == 4 * 511);
    CHECK(t.counter("pf_fixed") == 4 + 4 + 4 * 511);
    CHECK(t.gauge("pages_2m") == 0);
    CHECK(t.gauge("pages_4k") == 4 * 512);
    CHECK(t.counter("mark_page_dirty_in_slot") == 4 * 512);
}

namespace {
// A 1G hugetlb page mapped by one write, then dirty logging enabled without eager splitting (the
// 1G SPTE is write-protected), then one vCPU writes B, B + 1 (same 2M range) and B + 600 (the next).
std::unique_ptr<Tdp> huge_1g_dirty_writes(const std::string& fault_split, VcpuResult& r) {
    auto t = std::make_unique<Tdp>(Backing::Hugetlb1G, 512 * 512, 1,
                                   vm::Knobs{{"eager_page_split", false}, {"fault_split", fault_split}});
    VcpuResult r0;
    t->spawn_vcpu(0, {{B + 5, Access::Write}}, 0_ns, r0);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    REQUIRE(t->gauge("pages_1g") == 1);
    t->spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t->model->dirty_log_enable(t->host_ctx(3), 0, {}); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    REQUIRE(t->counter("spte_write_protected") == 1);
    REQUIRE(t->counter("remote_tlb_flush") == 1);
    t->spawn_vcpu(0, {{B, Access::Write}, {B + 1, Access::Write}, {B + 600, Access::Write}}, 0_ns, r);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    return t;
}
}  // namespace

TEST_CASE("fault_split = zap: a write to a write-protected 1G page zaps it with a flush; its 4K pages fault one by one",
          "[x86_tdp][dirty][fault_split]") {
    VcpuResult r;
    auto t = huge_1g_dirty_writes("zap", r);
    CHECK(r.faults == 3);
    // v5.16's kvm_tdp_mmu_map: the 1G SPTE is frozen, flushed and cleared, an empty PD is linked.
    CHECK(t->counter("pf_huge_spte_zapped") == 1);
    CHECK(t->counter("tdp_mmu_zap_spte_atomic") == 1);
    CHECK(t->counter("kvm_mmu_split_huge_page") == 0);
    CHECK(t->counter("remote_tlb_flush") == 2);  // enable, then the zap's
    CHECK(t->gauge("pages_1g") == 0);
    CHECK(t->gauge("pages_2m") == 0);
    CHECK(t->gauge("pages_4k") == 3);  // only what was written is mapped again
    CHECK(t->tdp().tdp_mmu_pages() == 1 + 1 + 2);  // PDPT, the new PD, a PT per 2M range written
    // No fast fixes: the first write saw a huge SPTE in a dirty-logged slot, the others no SPTE.
    CHECK(t->counter("pf_fast") == 0);
    CHECK(t->counter("pf_fixed") == 1 + 3);
    CHECK(t->lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault")->acquisitions == 1 + 3);
    CHECK(t->counter("mark_page_dirty_in_slot") == 3);
    for (Gfn g : {B, B + 1, B + 600}) {
        CHECK(t->tdp().mapping_level(g) == PageLevel::K4);
        CHECK(t->model->hits(0, g, Access::Write));
        CHECK(t->tdp().dirty(0, g));
    }
    // Every other page of the 1G range now faults (not present), with no further flush.
    CHECK_FALSE(t->tdp().mapping_level(B + 2));
    CHECK_FALSE(t->model->hits(0, B + 2, Access::Read));
    CHECK_FALSE(t->model->hits(0, B + 512 * 512 - 1, Access::Read));
    VcpuResult r2;
    t->spawn_vcpu(0, range(B + 2, 100, Access::Write), 0_ns, r2);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    CHECK(r2.faults == 100);
    CHECK(t->counter("pf_fixed") == 1 + 3 + 100);
    CHECK(t->counter("pf_fast") == 0);
    CHECK(t->counter("remote_tlb_flush") == 2);
    CHECK(t->gauge("pages_4k") == 103);
}

TEST_CASE("fault_split = in_place: the same writes split the 1G page in the fault and fix the rest fast",
          "[x86_tdp][dirty][fault_split]") {
    VcpuResult r;
    auto t = huge_1g_dirty_writes("in_place", r);
    CHECK(r.faults == 3);
    // B: 1G -> 2M -> 4K in one fault; B + 1: a write-protected 4K child, fixed fast; B + 600: a
    // write-protected 2M child, split by the slow path.
    CHECK(t->counter("kvm_mmu_split_huge_page") == 3);
    CHECK(t->counter("pf_huge_spte_zapped") == 0);
    CHECK(t->counter("tdp_mmu_zap_spte_atomic") == 0);
    CHECK(t->counter("remote_tlb_flush") == 1);  // enable only
    CHECK(t->counter("pf_fast") == 1);
    CHECK(t->counter("pf_fixed") == 1 + 3);
    CHECK(t->gauge("pages_1g") == 0);
    CHECK(t->gauge("pages_2m") == 510);
    CHECK(t->gauge("pages_4k") == 2 * 512);
    CHECK(t->model->hits(0, B + 2, Access::Read));  // present, write-protected children
    CHECK_FALSE(t->model->hits(0, B + 2, Access::Write));
    CHECK(t->tdp().mapping_level(B + 512 * 512 - 1) == PageLevel::M2);
}

TEST_CASE("fault_split = zap: a fault that finds the SPTE frozen by another's zap retries", "[x86_tdp][dirty][fault_split]") {
    // Two 1G pages, each first mapped by its own vCPU (so both vCPUs' caches are topped up), then
    // dirty logging enabled: both 1G SPTEs write-protected. Both vCPUs then write different 2M
    // ranges of the first 1G page at the same instant: one zaps (holding the SPTE frozen through
    // its flush), the other loses the cmpxchg or walks into the frozen SPTE, retries, and maps its
    // page under the new table.
    auto t = std::make_unique<Tdp>(Backing::Hugetlb1G, 2 * 512 * 512, 2,
                                   vm::Knobs{{"eager_page_split", false}, {"fault_split", std::string("zap")}});
    VcpuResult r0, r1, a, b;
    t->spawn_vcpu(0, {{B + 5, Access::Write}}, 0_ns, r0);
    t->spawn_vcpu(1, {{B + 512 * 512 + 5, Access::Write}}, 0_ns, r1);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    t->spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t->model->dirty_log_enable(t->host_ctx(3), 0, {}); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    REQUIRE(t->counter("spte_write_protected") == 2);
    t->spawn_vcpu(0, {{B, Access::Write}}, 0_ns, a);
    t->spawn_vcpu(1, {{B + 1024, Access::Write}}, 0_ns, b);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    CHECK(t->counter("pf_huge_spte_zapped") == 1);
    const auto retries = t->counter("pf_retry_spte_frozen") + t->counter("pf_retry_cmpxchg");
    CHECK(retries >= 1);
    CHECK(t->counter("pf_taken") == 2 + 2 + retries);
    CHECK(t->counter("pf_fixed") == 2 + 2);
    CHECK(t->counter("remote_tlb_flush") == 2);  // enable, one zap
    CHECK(t->gauge("pages_4k") == 2);
    CHECK(t->gauge("pages_1g") == 1);  // the second 1G page, untouched
    CHECK(t->model->hits(0, B, Access::Write));
    CHECK(t->model->hits(1, B + 1024, Access::Write));
}

TEST_CASE("KVM_GET_DIRTY_LOG harvests and write-protects under mmu_lock write, then flushes", "[x86_tdp][dirty]") {
    Tdp t(Backing::Anonymous, 1024, 1);
    VcpuResult r1, r2, r3;
    std::uint64_t got = 0, again = 0;
    t.spawn_vcpu(0, range(B, 1024, Access::Write), 0_ns, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("remote_tlb_flush") == 1);
    t.spawn_vcpu(0, range(B, 300, Access::Write, 3), 0_ns, r2);  // 300 pages dirtied
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_fast") == 300);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        got = co_await t.model->dirty_log_get(t.host_ctx(3), 0);
        again = co_await t.model->dirty_log_get(t.host_ctx(3), 0);
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(got == 300);
    CHECK(again == 0);
    CHECK(t.counter("remote_tlb_flush") == 2);  // the second harvest found nothing: no flush
    CHECK(t.lock("mmu_lock", engine::LockMode::Write, "kvm_get_dirty_log_protect")->acquisitions == 2);
    CHECK_FALSE(t.model->hits(0, B, Access::Write));  // protected again
    t.spawn_vcpu(0, range(B, 1, Access::Write), 0_ns, r3);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_fast") == 301);
}

TEST_CASE("initially-all-set: nothing is protected at enable, KVM_CLEAR_DIRTY_LOG splits and protects", "[x86_tdp][dirty]") {
    Tdp t(Backing::AnonymousThp, 4 * 512, 1);
    VcpuResult r1;
    std::uint64_t got = 0;
    t.spawn_vcpu(0, range(B, 4, Access::Write, 512), 0_ns, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {true});
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_2m") == 4);
    CHECK(t.model->hits(0, B, Access::Write));  // not protected yet
    CHECK(t.counter("remote_tlb_flush") == 0);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        got = co_await t.model->dirty_log_get(t.host_ctx(3), 0);
        co_await t.model->dirty_log_clear(t.host_ctx(3), 0, B, 512 + 64);  // first 2M page + 64 pages
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(got == 4 * 512);  // all set
    CHECK(t.counter("kvm_mmu_split_huge_page") == 2);
    CHECK(t.gauge("pages_2m") == 2);
    CHECK(t.gauge("pages_4k") == 2 * 512);
    CHECK_FALSE(t.model->hits(0, B, Access::Write));
    CHECK_FALSE(t.model->hits(0, B + 512 + 63, Access::Write));
    CHECK(t.model->hits(0, B + 512 + 64, Access::Write));  // split but not cleared: still writable
    CHECK(t.model->hits(0, B + 1024, Access::Write));
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(t.lock("mmu_lock", engine::LockMode::Write, "tdp_mmu_split_huge_pages_root")->acquisitions == 2);
}

TEST_CASE("disabling dirty logging zaps collapsible page tables so faults rebuild huge pages", "[x86_tdp][dirty]") {
    Tdp t(Backing::AnonymousThp, 4 * 512, 1);
    VcpuResult r1, r2;
    t.spawn_vcpu(0, range(B, 4, Access::Write, 512), 0_ns, r1);  // THPs, not the huge zero page
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
        co_await t.model->dirty_log_disable(t.host_ctx(3), 0);
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_4k") == 0);
    CHECK(t.gauge("pages_2m") == 0);
    CHECK(t.counter("tdp_mmu_zap_spte_atomic") == 4);
    CHECK(t.counter("remote_tlb_flush") == 1 + 4);  // enable, then one per atomic zap
    CHECK(t.tdp().tdp_mmu_pages() == 2);
    t.spawn_vcpu(0, range(B, 4 * 512, Access::Read), 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r2.faults == 4);
    CHECK(t.gauge("pages_2m") == 4);
}

namespace {
// Four THPs mapped 2M, dirty logging enabled with eager split (4K SPTEs, write-protected), some
// of them written (fixed fast), then disabled with huge_page_recovery = mode.
std::unique_ptr<Tdp> recover_run(const std::string& mode) {
    auto t = std::make_unique<Tdp>(Backing::AnonymousThp, 4 * 512, 1, vm::Knobs{{"huge_page_recovery", mode}});
    VcpuResult r1, r2;
    t->spawn_vcpu(0, range(B, 4, Access::Write, 512), 0_ns, r1);  // THPs, not the huge zero page
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    t->spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t->model->dirty_log_enable(t->host_ctx(3), 0, {}); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    REQUIRE(t->gauge("pages_4k") == 4 * 512);
    t->spawn_vcpu(0, range(B + 512, 1, Access::Write), 0_ns, r2);  // the second THP's first 4K page
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    t->spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t->model->dirty_log_disable(t->host_ctx(3), 0); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    return t;
}
}  // namespace

TEST_CASE("huge_page_recovery in_place: the huge SPTE keeps its first leaf's Accessed bit (make_huge_spte)",
          "[x86_tdp][dirty][huge_page_recovery][aging]") {
    Tdp t(Backing::AnonymousThp, 2 * 512, 1, vm::Knobs{{"huge_page_recovery", std::string("in_place")}});
    VcpuResult w, r;
    t.spawn_vcpu(0, range(B, 2, Access::Write, 512), 0_ns, w);  // two THPs, mapped 2M
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});  // eager split: 4K SPTEs
        vm::AgeRequest a;
        a.start = B;
        a.end = B + 2 * 512;
        a.clear = true;
        (void)co_await t.model->age_range(t.host_ctx(3), a);  // every 4K Accessed bit cleared
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    REQUIRE(t.gauge("pages_4k") == 2 * 512);
    t.spawn_vcpu(0, {{B + 512, Access::Read}}, 0_ns, r);  // the CPU sets A on the second THP's first page
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    REQUIRE(r.faults == 0);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t.model->dirty_log_disable(t.host_ctx(3), 0); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    REQUIRE(t.gauge("pages_2m") == 2);
    CHECK(t.tdp().aged(B));              // from an aged first leaf: still not accessed
    CHECK_FALSE(t.tdp().aged(B + 512));  // from the leaf the read accessed
}

TEST_CASE("huge_page_recovery: zap flushes per table, zap_batched_flush once, in_place maps the huge pages back",
          "[x86_tdp][dirty][huge_page_recovery]") {
    // Flushes before the disable: the enable's one (eager split, then write-protect).
    SECTION("zap: v6.9, tdp_mmu_zap_spte_atomic with a flush each") {
        auto t = recover_run("zap");
        CHECK(t->counter("tdp_mmu_zap_spte_atomic") == 4);
        CHECK(t->counter("remote_tlb_flush") == 1 + 4);
        CHECK(t->gauge("pages_4k") == 0);
        CHECK(t->gauge("pages_2m") == 0);
        CHECK(t->counter("huge_pages_recovered") == 0);
    }
    SECTION("zap_batched_flush: the same tables zapped, one flush at the end") {
        auto t = recover_run("zap_batched_flush");
        CHECK(t->counter("tdp_mmu_zap_spte_atomic") == 0);
        CHECK(t->counter("remote_tlb_flush") == 1 + 1);
        CHECK(t->gauge("pages_4k") == 0);
        CHECK(t->gauge("pages_2m") == 0);
        CHECK(t->tdp().tdp_mmu_pages() == 2);  // the four PT pages freed
    }
    SECTION("in_place: the tables become huge SPTEs, one flush, nothing to refault") {
        auto t = recover_run("in_place");
        CHECK(t->counter("huge_pages_recovered") == 4);
        CHECK(t->counter("tdp_mmu_zap_spte_atomic") == 0);
        CHECK(t->counter("remote_tlb_flush") == 1 + 1);
        CHECK(t->gauge("pages_4k") == 0);
        CHECK(t->gauge("pages_2m") == 4);
        CHECK(t->tdp().tdp_mmu_pages() == 2);
        // make_huge_spte keeps the first leaf's permissions: the written THP's first page was
        // made writable by its fast fix, the others stay write-protected (MMU-writable).
        CHECK(t->model->hits(0, B + 512 + 7, Access::Write));
        CHECK_FALSE(t->model->hits(0, B + 7, Access::Write));
        CHECK(t->model->hits(0, B + 7, Access::Read));
        VcpuResult r;
        t->spawn_vcpu(0, range(B, 4 * 512, Access::Read), 0_ns, r);
        REQUIRE(t->sim.run() == engine::RunStatus::Completed);
        CHECK(r.faults == 0);
    }
}

namespace {
// vCPU0 maps [B, B + n) with writes; returns when done.
void premap(Tdp& t, std::uint64_t n) {
    VcpuResult r;
    t.spawn_vcpu(0, range(B, n, Access::Write), 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    REQUIRE(t.gauge("pages_4k") == static_cast<std::int64_t>(n));
}
std::uint64_t acq(const Tdp& t, engine::LockMode m, const std::string& site) {
    auto r = t.lock("mmu_lock", m, site);
    return r ? r->acquisitions : 0;
}
std::uint64_t contended(const Tdp& t, engine::LockMode m, const std::string& site) {
    auto r = t.lock("mmu_lock", m, site);
    return r ? r->contended : 0;
}
engine::Task<void> zap(Tdp& t, Gfn start, Gfn end) {
    co_await t.model->zap_gfn_range(t.host_ctx(3), start, end, vm::ZapReason::Mtrr);
}
}  // namespace

TEST_CASE("zap (write lock) without contention: every leaf zapped, one flush at the end", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 2048, 1);
    premap(t, 2048);
    engine::Time done;
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 2048); }, &done);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_4k") == 0);
    CHECK(t.counter("tdp_mmu_zap_leaf") == 2048);
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(t.counter("tdp_mmu_iter_cond_resched") == 0);
    CHECK(acq(t, engine::LockMode::Write, "kvm_zap_gfn_range") == 1);
    CHECK(t.tdp().invalidation().seq() == 1);
    CHECK(t.tdp().invalidation().in_progress() == 0);
    CHECK(t.tdp().tdp_mmu_pages() == 6);  // leaves only: the page tables stay
    CHECK_FALSE(t.model->hits(0, B, Access::Read));
}

TEST_CASE("zap (write lock) yields on need_resched, flushing before each yield", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 8192, 1, {}, 1, {{"sched_timeslice", 10e6}});  // 10 us
    premap(t, 8192);
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 8192); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    const auto yields = t.counter("tdp_mmu_iter_cond_resched");
    CHECK(yields == 18);  // about one per 10 us of zapping
    CHECK(t.counter("tdp_mmu_iter_cond_resched_need_resched") == yields);
    CHECK(t.counter("tdp_mmu_iter_cond_resched_flush") == yields);
    CHECK(t.counter("remote_tlb_flush") == yields + 1);
    CHECK(acq(t, engine::LockMode::Write, "kvm_zap_gfn_range") == 1 + yields);
    CHECK(t.gauge("pages_4k") == 0);
}

TEST_CASE("zap (write lock) with faults outside the range: readers wait, the zap yields with a flush each time", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 4096, 3, {{"fault_precheck", false}});
    premap(t, 2048);
    const auto rd0 = acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
    VcpuResult r1;
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 2048); });
    t.spawn_vcpu(1, range(B + 2048, 64, Access::Read), 1_us, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    const auto yields = t.counter("tdp_mmu_iter_cond_resched");
    // Every yield is caused by the queued reader (rwlock_needbreak) and, since every SPTE in the
    // range is present, comes with a pending flush: one flush per yield plus the final one. (The
    // reader's faults map the zero page, so they come faster than first touches would: 34.)
    CHECK(yields == 39);
    CHECK(t.counter("tdp_mmu_iter_cond_resched_needbreak") == yields);
    CHECK(t.counter("tdp_mmu_iter_cond_resched_flush") == yields);
    CHECK(t.counter("remote_tlb_flush") == yields + 1);
    // The zapper's retake after each yield waits for the reader it let in; the faulting vCPU waited
    // once per yield, and once more for the zap's final unlock.
    CHECK(contended(t, engine::LockMode::Write, "kvm_zap_gfn_range") == yields);
    CHECK(contended(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") == yields + 1);
    // Outside the invalidated range, a fault is stale only if mmu_invalidate_seq moved between its
    // snapshot and taking the lock: once, for the fault that waited on the zap's final unlock.
    CHECK(t.counter("pf_retry_is_page_fault_stale") == 1);
    CHECK(acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") - rd0 == 64 + 1);
    CHECK(t.gauge("pages_4k") == 64);
}

TEST_CASE("fault pre-check: faults in the invalidated range retry without taking mmu_lock", "[x86_tdp][zap][precheck]") {
    for (const bool precheck : {true, false}) {
        DYNAMIC_SECTION("fault_precheck = " << precheck) {
            Tdp t(Backing::Anonymous, 4096, 3, {{"fault_precheck", precheck}});
            premap(t, 2048);
            const auto rd0 = acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
            VcpuResult r1, r2;
            engine::Time zdone;
            t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 2048); }, &zdone);
            // Two vCPUs touch pages the zap has just zapped, while the invalidation is in progress.
            t.spawn_vcpu(1, {{B, Access::Read}}, 5_us, r1);
            t.spawn_vcpu(2, {{B + 1, Access::Write}}, 6_us, r2);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            const auto yields = t.counter("tdp_mmu_iter_cond_resched");
            const auto rd = acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") - rd0;
            CHECK(t.model->hits(1, B, Access::Read));
            CHECK(t.model->hits(2, B + 1, Access::Write));
            CHECK(r1.done > zdone);
            CHECK(r2.done > zdone);
            if (precheck) {
                // The vCPUs spin on RET_PF_RETRY outside mmu_lock until the invalidation ends,
                // then each takes the lock once: the zap never sees a waiter.
                CHECK(yields == 0);
                CHECK(t.counter("pf_retry_is_page_fault_stale") == 0);
                CHECK(t.counter("pf_retry_invalidate_precheck") == r1.faults + r2.faults - 2);
                CHECK(rd == 2);
                CHECK(t.counter("remote_tlb_flush") == 1);
                CHECK(contended(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") == 0);
            } else {
                // Each fault takes mmu_lock, queues behind the zapper (which yields and flushes),
                // finds the fault stale and retries.
                CHECK(yields == 38);
                CHECK(t.counter("pf_retry_invalidate_precheck") == 0);
                CHECK(t.counter("pf_retry_is_page_fault_stale") == r1.faults + r2.faults - 2);
                CHECK(rd == r1.faults + r2.faults);
                CHECK(t.counter("remote_tlb_flush") == yields + 1);
            }
        }
    }
}

TEST_CASE("zap_lock = read: atomic zaps under the read lock, a flush per zapped SPTE, faults do not wait", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 4096, 3, {{"zap_lock", std::string("read")}});
    premap(t, 2048);
    const auto rd0 = acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
    VcpuResult r1;
    engine::Time zdone;
    // 100 4K leaves, not covering a whole page table.
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B + 1, B + 101); }, &zdone);
    t.spawn_vcpu(1, range(B + 2048, 16, Access::Read), 20_us, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("tdp_mmu_zap_spte_atomic") == 100);
    CHECK(t.counter("remote_tlb_flush") == 100);
    CHECK(t.gauge("pages_4k") == 2048 - 100 + 16);
    CHECK(r1.done < zdone);  // the vCPU's faults ran while the zap was in progress
    CHECK(contended(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") == 0);
    CHECK(acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") - rd0 == 16);
    CHECK(acq(t, engine::LockMode::Write, "kvm_zap_gfn_range") == 2);  // invalidate begin and end
    CHECK(acq(t, engine::LockMode::Read, "kvm_zap_gfn_range") == 1);
    CHECK(t.tdp().invalidation().seq() == 1);
}

TEST_CASE("zap_lock = read zaps a fully covered page table with a single flush", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 2048, 1, {{"zap_lock", std::string("read")}});
    premap(t, 2048);
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 1024); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("tdp_mmu_zap_spte_atomic") == 2);  // two PDEs, each with its 512 leaves
    CHECK(t.counter("remote_tlb_flush") == 2);
    CHECK(t.gauge("pages_4k") == 1024);
    CHECK(t.tdp().tdp_mmu_pages() == 2 + 2);
}

TEST_CASE("zap_lock = drop_write_zap_read: leaves zapped under read, one flush, no yields", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 4096, 3, {{"zap_lock", std::string("drop_write_zap_read")}});
    premap(t, 2048);
    const auto rd0 = acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
    VcpuResult r1;
    engine::Time zdone;
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 2048); }, &zdone);
    t.spawn_vcpu(1, range(B + 2048, 8, Access::Read), 2_us, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("tdp_mmu_zap_leaf") == 2048);
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(t.counter("tdp_mmu_iter_cond_resched") == 0);
    CHECK(contended(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") == 0);
    CHECK(acq(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") - rd0 == 8);
    CHECK(acq(t, engine::LockMode::Write, "kvm_zap_gfn_range") == 2);
    CHECK(acq(t, engine::LockMode::Read, "kvm_zap_gfn_range") == 1);
    CHECK(t.gauge("pages_4k") == 8);
}

TEST_CASE("an MMU-notifier invalidation zaps under the write lock and unmaps the host pages", "[x86_tdp]") {
    Tdp t(Backing::Anonymous, 2048, 1);
    premap(t, 2048);
    CHECK(t.counter("host_fault_first_touch") == 2048);
    t.spawn_actor("notifier", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->invalidate_range(t.host_ctx(2), B, B + 512);
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.gauge("pages_4k") == 2048 - 512);
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(acq(t, engine::LockMode::Write, "kvm_mmu_notifier_invalidate_range_start") == 1);
    CHECK(acq(t, engine::LockMode::Write, "kvm_mmu_notifier_invalidate_range_end") == 1);
    CHECK(t.tdp().invalidation().seq() == 1);
    VcpuResult r;
    t.spawn_vcpu(0, range(B, 2, Access::Read), 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    // Faulted in again: reads of the unmapped pages map the zero page (no page allocated).
    CHECK(t.counter("host_fault_first_touch") == 2048);
    CHECK(t.counter("host_zero_page_mapped") == 2);
    CHECK(t.tdp().host_mm().page(B) == models::host::Page::Zero);
    CHECK(t.tdp().leaf_spte(B) == models::x86_tdp::spte::LEAF_HOST_RO);
}

namespace {
// A small kvm_page_table_test-like run: every vCPU walks the whole region (even vCPUs write, odd
// ones read), then dirty logging is enabled and every vCPU writes every page, then it is
// disabled and every vCPU reads every page. Optionally a zap of the first half runs during the
// second stage. Returns the fingerprint.
std::uint64_t overlap_run(Backing backing, std::uint64_t npages, vm::Knobs knobs, std::uint64_t seed, bool with_zap,
                          Tdp** keep = nullptr) {
    auto t = std::make_unique<Tdp>(backing, npages, 4, std::move(knobs), seed);
    std::vector<VcpuResult> r(12);
    for (std::uint32_t v = 0; v < 4; ++v)
        t->spawn_vcpu(v, range(B, npages, v % 2 ? Access::Read : Access::Write), 0_ns, r[v]);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    t->spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t->model->dirty_log_enable(t->host_ctx(3), 0, {}); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    for (std::uint32_t v = 0; v < 4; ++v) t->spawn_vcpu(v, range(B, npages, Access::Write), 0_ns, r[4 + v]);
    if (with_zap) t->spawn_actor("zapper", 3_us, [&] { return zap(*t, B, B + npages / 2); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    t->spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t->model->dirty_log_disable(t->host_ctx(3), 0); });
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    for (std::uint32_t v = 0; v < 4; ++v) t->spawn_vcpu(v, range(B, npages, Access::Read), 0_ns, r[8 + v]);
    REQUIRE(t->sim.run() == engine::RunStatus::Completed);
    const std::uint64_t fp = t->sim.fingerprint();
    if (keep) *keep = t.release();
    return fp;
}
}  // namespace

TEST_CASE("same seed, same fingerprint; golden fingerprints", "[x86_tdp][golden]") {
    SECTION("a small overlapping fault scenario (THP) is deterministic") {
        const auto a = overlap_run(Backing::AnonymousThp, 2048, {}, 7, false);
        const auto b = overlap_run(Backing::AnonymousThp, 2048, {}, 7, false);
        CHECK(a == b);
        CHECK(a == 0xad772164e3b19852ULL);
    }
    struct Golden {
        const char* mode;
        std::uint64_t fingerprint, flushes, yields;
    };
    // Flushes: one per page for the first pass's COW breaks (the readers mapped the zero page
    // first; the writer's wp_page_copy invalidates it: 2048), dirty-log enable 1, plus the zap's:
    // "write" one per yield and one at the end; "read" one per fully covered page table (2);
    // "drop_write_zap_read" one at the end.
    for (const Golden& g : {Golden{"write", 0x4794a051a5ed7e5dULL, 2048 + 30, 28},
                            Golden{"read", 0x4213ea9e7376ac26ULL, 2048 + 3, 0},
                            Golden{"drop_write_zap_read", 0xa7ae24aea808f2d5ULL, 2048 + 2, 0}}) {
        DYNAMIC_SECTION("zap_lock = " << g.mode) {
            Tdp* t = nullptr;
            const vm::Knobs k{{"zap_lock", std::string(g.mode)}, {"fault_precheck", false}};
            const auto a = overlap_run(Backing::Anonymous, 2048, k, 7, true, &t);
            std::unique_ptr<Tdp> keep(t);
            const auto b = overlap_run(Backing::Anonymous, 2048, k, 7, true);
            CHECK(a == b);
            CHECK(a == g.fingerprint);
            CHECK(t->counter("remote_tlb_flush") == g.flushes);
            CHECK(t->counter("tdp_mmu_iter_cond_resched") == g.yields);
            CHECK(t->gauge("pages_4k") == 2048);
        }
    }
    SECTION("another seed gives the same outcome (the model draws no random numbers)") {
        CHECK(overlap_run(Backing::AnonymousThp, 2048, {}, 8, false) == 0xad772164e3b19852ULL);
    }
}

TEST_CASE("two vCPUs writing one write-protected page: one fast fix, the other loses the cmpxchg and finds it spurious", "[x86_tdp][dirty]") {
    Tdp t(Backing::Anonymous, 512, 2);
    premap(t, 512);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    VcpuResult a, b;
    t.spawn_vcpu(0, {{B + 9, Access::Write}}, 0_ns, a);
    t.spawn_vcpu(1, {{B + 9, Access::Write}}, 0_ns, b);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_taken") == 512 + 2);
    CHECK(t.counter("pf_fast") == 2);
    CHECK(t.counter("pf_fixed") == 512 + 1);
    CHECK(t.counter("pf_spurious") == 1);
    CHECK(t.counter("fast_pf_cmpxchg_retry") == 1);
    CHECK(t.counter("mark_page_dirty_in_slot") == 1);
    CHECK(t.lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault")->acquisitions == 512);  // lockless
}

TEST_CASE("concurrent first touches of a hugetlb page wait for the first (hugetlb fault mutex)", "[x86_tdp]") {
    Tdp t(Backing::Hugetlb2M, 512, 2);
    VcpuResult a, b;
    t.spawn_vcpu(0, {{B + 1, Access::Read}}, 0_ns, a);
    t.spawn_vcpu(1, {{B + 2, Access::Read}}, 1_us, b);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("host_fault_first_touch") == 1);
    CHECK(t.counter("host_zeroed_4k") == 512);
    CHECK(t.gauge("pages_2m") == 1);
}

TEST_CASE("preempt = false: rwlock_needbreak() is false, the zap holds mmu_lock until need_resched", "[x86_tdp][zap]") {
    Tdp t(Backing::Anonymous, 4096, 3, {{"fault_precheck", false}, {"preempt", false}});
    premap(t, 2048);
    VcpuResult r1;
    t.spawn_actor("zapper", 0_ns, [&] { return zap(t, B, B + 2048); });
    t.spawn_vcpu(1, range(B + 2048, 64, Access::Read), 1_us, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("tdp_mmu_iter_cond_resched") == 0);
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(contended(t, engine::LockMode::Read, "kvm_tdp_mmu_page_fault") == 1);  // waited the whole zap
    CHECK(contended(t, engine::LockMode::Write, "kvm_zap_gfn_range") == 0);
}

TEST_CASE("a fault walking into an SPTE frozen by an atomic zap retries", "[x86_tdp][dirty]") {
    Tdp t(Backing::AnonymousThp, 2 * 512, 2);
    VcpuResult r0, r1, r2;
    // Writes: THPs (reads would map the huge zero page). Also tops up vCPU1's caches.
    t.spawn_vcpu(1, {{B, Access::Write}}, 0_ns, r0);
    t.spawn_vcpu(0, {{B + 512, Access::Write}}, 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    REQUIRE(t.gauge("pages_4k") == 1024);
    // Disabling logging zaps each 2M page table atomically (frozen for the flush); vCPU1 keeps
    // reading the first 2M region meanwhile.
    std::vector<R> loop;
    for (int pass = 0; pass < 8; ++pass)
        for (Gfn g = B; g < B + 512; g += 8) loop.push_back({g, Access::Read});
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t.model->dirty_log_disable(t.host_ctx(3), 0); });
    t.spawn_vcpu(1, std::move(loop), 0_ns, r1, 20_ns);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("pf_retry_spte_frozen") == 2);
    CHECK(r1.faults == 3);  // frozen twice, then the 2M mapping
    CHECK(t.tdp().mapping_level(B) == PageLevel::M2);  // rebuilt as a huge page after the zap
    CHECK(t.counter("tdp_mmu_zap_spte_atomic") == 2);
}

// ---------------------------------------------------------------------------------------------
// The host's mm in the fault path (models/host)

namespace {
std::optional<engine::LineRecord> line(const Tdp& t, const std::string& name) {
    for (const auto& r : t.sim.line_stats().totals())
        if (t.sim.line_stats().name(r.line_class) == name) return r;
    return std::nullopt;
}
}  // namespace

TEST_CASE("a read fault maps the zero page read-only; a write COWs it, the notifier zaps the SPTE and the fault retries",
          "[x86_tdp][host]") {
    for (const bool precheck : {true, false}) {
        DYNAMIC_SECTION("fault_precheck = " << precheck) {
            Tdp t(Backing::Anonymous, 1024, 1, {{"fault_precheck", precheck}});
            VcpuResult r1, r2;
            t.spawn_vcpu(0, {{B + 7, Access::Read}}, 0_ns, r1);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            CHECK(r1.faults == 1);
            CHECK(t.tdp().host_mm().page(B + 7) == models::host::Page::Zero);
            // make_spte with host_writable false: neither W nor MMU-writable.
            CHECK(t.tdp().leaf_spte(B + 7) == models::x86_tdp::spte::LEAF_HOST_RO);
            CHECK(t.model->hits(0, B + 7, Access::Read));
            CHECK_FALSE(t.model->hits(0, B + 7, Access::Write));
            CHECK(t.counter("host_zero_page_mapped") == 1);
            CHECK(t.counter("host_fault_first_touch") == 0);
            CHECK(t.counter("host_zeroed_4k") == 0);
            CHECK(t.counter("get_user_pages_unlocked") == 1);
            t.spawn_vcpu(0, {{B + 7, Access::Write}}, 0_ns, r2);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            // Not fixable by fast_page_fault (no MMU-writable bit); the GUP for write breaks the
            // COW (wp_page_copy), whose invalidation zaps the SPTE and moves the sequence the
            // fault snapshotted: RET_PF_RETRY, then a second fault maps the new page writable.
            CHECK(r2.faults == 2);
            CHECK(t.counter("pf_fast") == 0);
            CHECK(t.counter("host_wp_page_copy") == 1);
            CHECK(t.counter("host_zeroed_4k") == 1);
            CHECK(t.counter(precheck ? "pf_retry_invalidate_precheck" : "pf_retry_is_page_fault_stale") == 1);
            CHECK(t.counter("pf_fixed") == 2);
            CHECK(t.counter("tdp_mmu_zap_leaf") == 1);
            CHECK(t.counter("remote_tlb_flush") == 1);
            CHECK(t.tdp().invalidation().seq() == 1);
            CHECK(t.tdp().invalidation().in_progress() == 0);
            CHECK(acq(t, engine::LockMode::Write, "kvm_mmu_notifier_invalidate_range_start") == 1);
            CHECK(acq(t, engine::LockMode::Write, "kvm_mmu_notifier_invalidate_range_end") == 1);
            CHECK(t.tdp().host_mm().page(B + 7) == models::host::Page::Private);
            CHECK(t.tdp().leaf_spte(B + 7) == models::x86_tdp::spte::LEAF_RW);
            CHECK(t.model->hits(0, B + 7, Access::Write));
            CHECK(t.gauge("pages_4k") == 1);
        }
    }
}

TEST_CASE("while logging dirty pages, a read mapping the zero page marks nothing dirty; the write after it does",
          "[x86_tdp][dirty][host]") {
    Tdp t(Backing::Anonymous, 1024, 1);
    VcpuResult r1, r2;
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> {
        co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {});
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    t.spawn_vcpu(0, {{B + 7, Access::Read}}, 0_ns, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.tdp().leaf_spte(B + 7) == models::x86_tdp::spte::LEAF_HOST_RO);
    // make_spte marks the page dirty only for a writable SPTE.
    CHECK(t.counter("mark_page_dirty_in_slot") == 0);
    std::uint64_t got = 1;
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { got = co_await t.model->dirty_log_get(t.host_ctx(3), 0); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(got == 0);
    t.spawn_vcpu(0, {{B + 7, Access::Write}}, 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.tdp().leaf_spte(B + 7) == models::x86_tdp::spte::LEAF_RW);
    CHECK(t.counter("mark_page_dirty_in_slot") == 1);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { got = co_await t.model->dirty_log_get(t.host_ctx(3), 0); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(got == 1);
}

TEST_CASE("a THP read maps the huge zero page at 2M read-only; a write splits the host PMD and maps 4K", "[x86_tdp][host]") {
    Tdp t(Backing::AnonymousThp, 1024, 1);
    VcpuResult r1, r2;
    t.spawn_vcpu(0, {{B + 100, Access::Read}}, 0_ns, r1);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r1.faults == 1);
    CHECK(t.tdp().host_mm().page(B + 100) == models::host::Page::HugeZero);
    // host_pfn_mapping_level: the huge zero page is PMD-mapped.
    CHECK(t.tdp().mapping_level(B + 100) == PageLevel::M2);
    CHECK(t.tdp().leaf_spte(B + 100) == models::x86_tdp::spte::LEAF_HOST_RO);
    CHECK(t.gauge("pages_2m") == 1);
    CHECK(t.counter("host_huge_zero_page_mapped") == 1);
    CHECK(t.counter("host_zeroed_4k") == 0);
    for (Gfn g = B; g < B + 512; g += 37) {
        CHECK(t.model->hits(0, g, Access::Read));
        CHECK_FALSE(t.model->hits(0, g, Access::Write));
    }
    t.spawn_vcpu(0, {{B + 100, Access::Write}}, 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    // do_huge_pmd_wp_page (v5.8+): __split_huge_pmd with a 2 MiB invalidation (the 2M SPTE
    // zapped), then the 4 KiB COW with its own: two invalidations, the fault retried once.
    CHECK(r2.faults == 2);
    CHECK(t.counter("host_split_huge_pmd") == 1);
    CHECK(t.counter("host_wp_page_copy") == 1);
    CHECK(t.tdp().invalidation().seq() == 2);
    CHECK(t.tdp().host_mm().page(B + 100) == models::host::Page::Private);
    CHECK(t.tdp().host_mm().page(B + 101) == models::host::Page::Zero);
    CHECK(t.tdp().mapping_level(B + 100) == PageLevel::K4);
    CHECK(t.tdp().leaf_spte(B + 100) == models::x86_tdp::spte::LEAF_RW);
    CHECK(t.gauge("pages_2m") == 0);
    CHECK(t.gauge("pages_4k") == 1);
    CHECK_FALSE(t.model->hits(0, B + 101, Access::Read));  // zapped with the 2M SPTE
}

TEST_CASE("mmap_lock's line: contention grows with the number of concurrent slow GUPs", "[x86_tdp][host]") {
    // n vCPUs each write-fault their own page at the same instant: every GUP is slow (first
    // touch), and each takes and releases mmap_lock's count (two atomics on one line).
    auto run = [](std::uint32_t n) {
        auto t = std::make_unique<Tdp>(Backing::Anonymous, 4096, n, vm::Knobs{}, 1);
        std::vector<VcpuResult> r(n);
        // Warm the caches' top-up with one fault each on a distinct 2M region first.
        for (std::uint32_t v = 0; v < n; ++v) t->spawn_vcpu(v, {{B + 2048 + v, Access::Write}}, 0_ns, r[v]);
        REQUIRE(t->sim.run() == engine::RunStatus::Completed);
        const auto before = line(*t, "mmap_lock");
        for (std::uint32_t v = 0; v < n; ++v) t->spawn_vcpu(v, {{B + v * 8, Access::Write}}, 0_ns, r[v]);
        REQUIRE(t->sim.run() == engine::RunStatus::Completed);
        const auto after = line(*t, "mmap_lock");
        REQUIRE(after);
        CHECK(after->operations - before->operations == 2 * n);
        return std::pair<std::uint64_t, double>{after->contended - before->contended,
                                                after->wait_ps.sum_double() - before->wait_ps.sum_double()};
    };
    const auto one = run(1), two = run(2), four = run(4);
    CHECK(one.first == 0);
    CHECK(two.first >= 1);
    CHECK(four.first > two.first);
    CHECK(four.second > two.second);
}

TEST_CASE("tdp_mmu_fast_page_fault = false: write-protection faults take mmu_lock and kvm_tdp_mmu_map",
          "[x86_tdp][dirty][fast_pf]") {
    for (const bool fast : {true, false}) {
        DYNAMIC_SECTION("tdp_mmu_fast_page_fault = " << fast) {
            Tdp t(Backing::Anonymous, 512, 2, {{"tdp_mmu_fast_page_fault", fast}, {"fault_lock", std::string("write")}});
            premap(t, 512);
            t.spawn_actor("vmm", 0_ns,
                          [&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            VcpuResult a, b;
            t.spawn_vcpu(0, range(B, 100, Access::Write), 0_ns, a);
            t.spawn_vcpu(1, range(B + 256, 100, Access::Write), 0_ns, b);
            REQUIRE(t.sim.run() == engine::RunStatus::Completed);
            CHECK(a.faults == 100);
            CHECK(b.faults == 100);
            CHECK(t.counter("pf_fixed") == 512 + 200);
            CHECK(t.counter("mark_page_dirty_in_slot") == 200);
            CHECK(t.tdp().dirty(0, B + 99));
            CHECK(t.tdp().dirty(0, B + 355));
            CHECK_FALSE(t.tdp().dirty(0, B + 100));
            CHECK(t.model->hits(0, B + 99, Access::Write));
            const auto wr = t.lock("mmu_lock", engine::LockMode::Write, "kvm_tdp_mmu_page_fault");
            REQUIRE(wr);
            if (fast) {
                // v5.15+: lockless fast_page_fault fixes every write-protected SPTE.
                CHECK(t.counter("pf_fast") == 200);
                CHECK(wr->acquisitions == 512);
                CHECK(wr->contended == 0);
                CHECK(t.counter("mmu_topup_memory_cache_objs") == 120);  // vCPU 1 never took the slow path
            } else {
                // v5.10-v5.14: the full path under mmu_lock, here for write: the two vCPUs serialize.
                CHECK(t.counter("pf_fast") == 0);
                CHECK(wr->acquisitions == 512 + 200);
                CHECK(wr->contended > 0);
                // vCPU 1's first slow fault topped up its caches (vCPU 0's premap did its own).
                CHECK(t.counter("mmu_topup_memory_cache_objs") == 240);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NX huge pages (host feature nx_huge_pages) and their recovery

namespace {

struct NxTdp : Harness {
    NxTdp(Backing b, std::uint64_t npages, vm::Knobs k = {}, bool nx = true) : Harness(b, npages, 1, std::move(k)) {
        host.features["nx_huge_pages"] = nx;
        build(make_tdp);
    }
    X86TdpMmu& tdp() { return static_cast<X86TdpMmu&>(*model); }
    // n exec faults, one per 2M page from B on, then run to completion.
    void exec_split(std::uint64_t n) {
        VcpuResult r;
        spawn_vcpu(0, range(B, n, Access::Exec, 512), 0_ns, r);
        REQUIRE(sim.run() == engine::RunStatus::Completed);
        REQUIRE(r.faults == n);
    }
};

}  // namespace

TEST_CASE("nx: the knobs, their defaults and the derived recovery period", "[x86_tdp]") {
    const vm::ModelInfo* info = models::builtin_models().find("x86_tdp");
    REQUIRE(info);
    CHECK(std::get<std::int64_t>(info->knob("nx_huge_pages_recovery_ratio")->default_value) == 60);
    CHECK(std::get<std::int64_t>(info->knob("nx_huge_pages_recovery_period_ms")->default_value) == 0);
    CHECK(std::get<std::string>(info->knob("nx_recovery_lock")->default_value) == "write");
    CHECK(std::find(info->features.begin(), info->features.end(), "nx_huge_pages") != info->features.end());
    models::x86_tdp::Config c;
    c.nx_huge_pages = true;
    CHECK(c.nx_recovery_period() == 60000);  // 60*60*1000 / 60
    c.nx_recovery_ratio = 10000;
    CHECK(c.nx_recovery_period() == 1000);  // min(ratio, 3600): at least a second
    c.nx_recovery_period_ms = 7;
    CHECK(c.nx_recovery_period() == 7);
    c.nx_recovery_ratio = 0;
    CHECK(c.nx_recovery_period() == 0);
    c.nx_recovery_ratio = 60;
    c.nx_huge_pages = false;
    CHECK(c.nx_recovery_period() == 0);
    Harness h(Backing::Anonymous, 512, 1, {{"nx_huge_pages_recovery_ratio", std::int64_t{-1}}});
    CHECK_THROWS_WITH(h.build(make_tdp), Catch::Contains("nx_huge_pages_recovery_ratio"));
    Harness h2(Backing::Anonymous, 512, 1, {{"nx_recovery_lock", std::string("none")}});
    CHECK_THROWS_WITH(h2.build(make_tdp), Catch::Contains("nx_recovery_lock"));
}

TEST_CASE("nx: a huge SPTE is not executable; an exec fault maps 4K and tracks the page table", "[x86_tdp]") {
    NxTdp t(Backing::Hugetlb2M, 1024);
    VcpuResult r;
    t.spawn_vcpu(0, {{B, Access::Write}, {B + 5, Access::Exec}, {B + 512, Access::Read}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 3);
    // The exec fault split the 2M SPTE (tdp_mmu_split_huge_page): 512 4K children, executable.
    CHECK(t.tdp().mapping_level(B + 5) == PageLevel::K4);
    CHECK(t.tdp().mapping_level(B + 511) == PageLevel::K4);
    CHECK(t.model->hits(0, B + 300, Access::Exec));
    // The other 2M page: huge, readable, not executable.
    CHECK(t.tdp().mapping_level(B + 512) == PageLevel::M2);
    CHECK((t.tdp().leaf_spte(B + 512) & models::x86_tdp::spte::X) == 0);
    CHECK_FALSE(t.model->hits(0, B + 512, Access::Exec));
    CHECK(t.model->hits(0, B + 600, Access::Read));
    const auto list = t.tdp().possible_nx_huge_pages();
    REQUIRE(list.size() == 1);
    CHECK(list[0] == std::make_pair(2, B));
    CHECK(t.gauge("nx_lpage_splits") == 1);
    CHECK(t.counter("track_possible_nx_huge_page") == 1);
    CHECK(t.counter("kvm_mmu_split_huge_page") == 1);
    CHECK(t.gauge("pages_2m") == 1);
    CHECK(t.gauge("pages_4k") == 512);
}

TEST_CASE("nx: off, an exec fault maps the huge page executable and tracks nothing", "[x86_tdp]") {
    NxTdp t(Backing::Hugetlb2M, 1024, {}, false);
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 5, Access::Exec}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 1);
    CHECK(t.tdp().mapping_level(B + 5) == PageLevel::M2);
    CHECK(t.model->hits(0, B + 6, Access::Exec));
    CHECK(t.tdp().possible_nx_huge_pages().empty());
    CHECK(t.gauge("nx_lpage_splits") == 0);
}

TEST_CASE("nx: 1G backing tracks the PD and the PT an exec fault links", "[x86_tdp]") {
    NxTdp t(Backing::Hugetlb1G, 512 * 512);
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 1, Access::Write}, {B, Access::Exec}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 2);  // a 1G SPTE, then the exec fault splits it twice
    CHECK(t.counter("kvm_mmu_split_huge_page") == 2);
    CHECK(t.tdp().mapping_level(B) == PageLevel::K4);
    const auto list = t.tdp().possible_nx_huge_pages();
    REQUIRE(list.size() == 2);
    CHECK(list[0] == std::make_pair(3, B));
    CHECK(list[1] == std::make_pair(2, B));
    // The other 2M pages of the 1G page: split to 2M, still not executable.
    CHECK(t.tdp().mapping_level(B + 512) == PageLevel::M2);
    CHECK_FALSE(t.model->hits(0, B + 512, Access::Exec));
}

TEST_CASE("nx: disallowed_hugepage_adjust maps 4K below a page table an exec fault linked", "[x86_tdp]") {
    // fault_split = zap: the exec fault zaps the 2M SPTE and links an empty page table, so a
    // write elsewhere in the 2M range faults; it must not map 2M over the NX page table.
    NxTdp t(Backing::Hugetlb2M, 1024, {{"fault_split", std::string("zap")}});
    VcpuResult r;
    t.spawn_vcpu(0, {{B, Access::Write}, {B + 5, Access::Exec}, {B + 7, Access::Write}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 3);
    CHECK(t.tdp().mapping_level(B + 7) == PageLevel::K4);
    CHECK(t.tdp().mapping_level(B + 5) == PageLevel::K4);
    CHECK_FALSE(t.tdp().mapping_level(B + 8));
    CHECK(t.counter("disallowed_hugepage_adjust") == 1);
    CHECK(t.tdp().possible_nx_huge_pages().size() == 1);
}

TEST_CASE("nx: recovery zaps ceil(n / ratio) tracked page tables, oldest first; a write then maps 2M", "[x86_tdp]") {
    NxTdp t(Backing::Hugetlb2M, 10 * 512, {{"nx_huge_pages_recovery_ratio", std::int64_t{4}}});
    t.exec_split(10);
    REQUIRE(t.tdp().possible_nx_huge_pages().size() == 10);
    t.spawn_actor("recovery", 0_ns, [&]() { return t.tdp().recover_nx_huge_pages(t.host_ctx(1)); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("nx_huge_pages_recovery_zapped") == 3);  // DIV_ROUND_UP(10, 4)
    auto list = t.tdp().possible_nx_huge_pages();
    REQUIRE(list.size() == 7);
    CHECK(list[0] == std::make_pair(2, B + 3 * 512));
    CHECK(t.gauge("nx_lpage_splits") == 7);
    for (Gfn g : {B, B + 512, B + 1024}) CHECK_FALSE(t.tdp().mapping_level(g + 9));
    CHECK(t.tdp().mapping_level(B + 3 * 512) == PageLevel::K4);
    CHECK(t.counter("remote_tlb_flush") == 1);  // one flush for the pass (no yield)
    const auto w = t.lock("mmu_lock", engine::LockMode::Write, "kvm_recover_nx_huge_pages");
    REQUIRE(w);
    CHECK(w->acquisitions == 1);
    // The range faults again; a write maps the huge page back.
    VcpuResult r;
    t.spawn_vcpu(0, {{B + 9, Access::Write}}, 0_ns, r);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r.faults == 1);
    CHECK(t.tdp().mapping_level(B + 9) == PageLevel::M2);
    t.spawn_actor("recovery2", 0_ns, [&]() { return t.tdp().recover_nx_huge_pages(t.host_ctx(1)); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.counter("nx_huge_pages_recovery_zapped") == 5);  // + DIV_ROUND_UP(7, 4)
    CHECK(t.tdp().possible_nx_huge_pages().size() == 5);
}

TEST_CASE("nx: recovery only unaccounts the tables of a slot that logs dirty pages", "[x86_tdp]") {
    NxTdp t(Backing::Hugetlb2M, 10 * 512, {{"nx_huge_pages_recovery_ratio", std::int64_t{4}}});
    t.exec_split(10);
    t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(1), 0, {}); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    const auto flushes = t.counter("remote_tlb_flush");
    t.spawn_actor("recovery", 0_ns, [&]() { return t.tdp().recover_nx_huge_pages(t.host_ctx(1)); });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    // DIV_ROUND_UP(10, 4) tables taken off the list, none zapped, nothing to flush.
    CHECK(t.counter("nx_huge_pages_recovery_dirty_tracked") == 3);
    CHECK(t.counter("nx_huge_pages_recovery_zapped") == 0);
    CHECK(t.tdp().possible_nx_huge_pages().size() == 7);
    CHECK(t.gauge("nx_lpage_splits") == 7);
    CHECK(t.counter("remote_tlb_flush") == flushes);
    CHECK(t.tdp().mapping_level(B) == PageLevel::K4);  // still mapped
}

TEST_CASE("nx: the recovery worker runs every period until stopped", "[x86_tdp]") {
    NxTdp t(Backing::Hugetlb2M, 10 * 512,
            {{"nx_huge_pages_recovery_ratio", std::int64_t{4}}, {"nx_huge_pages_recovery_period_ms", std::int64_t{1}}});
    t.exec_split(10);
    const engine::Time t0 = t.sim.now();
    t.model->start_vm_workers(t.host_ctx(1));
    t.sim.run(t0 + 3500_us);
    // Passes at about 1, 2 and 3 ms (each period from the end of the last pass): 10 -> 7 -> 5 -> 3.
    CHECK(t.counter("kvm_recover_nx_huge_pages") == 3);
    CHECK(t.counter("nx_huge_pages_recovery_zapped") == 7);
    CHECK(t.tdp().possible_nx_huge_pages().size() == 3);
    t.model->stop_vm_workers();
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(t.sim.now() <= t0 + 3500_us);  // stopped while asleep: the timer is cancelled
    CHECK(t.counter("kvm_recover_nx_huge_pages") == 3);
}

TEST_CASE("nx: a fault waits behind a write-mode recovery, not behind a read-mode one", "[x86_tdp]") {
    for (const char* mode : {"write", "read"}) {
        NxTdp t(Backing::Hugetlb2M, 41 * 512,
                {{"nx_huge_pages_recovery_ratio", std::int64_t{1}}, {"nx_recovery_lock", std::string(mode)}});
        t.exec_split(40);
        const engine::Time t0 = t.sim.now();
        engine::Time rec_done;
        t.spawn_actor("recovery", 0_ns, [&]() { return t.tdp().recover_nx_huge_pages(t.host_ctx(1)); }, &rec_done);
        VcpuResult r;
        t.spawn_vcpu(0, {{B + 40 * 512, Access::Write}}, 0_ns, r);  // a 2M page recovery does not touch
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(r.faults == 1);
        CHECK(t.counter("nx_huge_pages_recovery_zapped") == 40);
        CHECK(t.tdp().possible_nx_huge_pages().empty());
        CHECK(t.tdp().mapping_level(B + 40 * 512) == PageLevel::M2);
        const auto f = t.lock("mmu_lock", engine::LockMode::Read, "kvm_tdp_mmu_page_fault");
        REQUIRE(f);
        INFO(mode << ": recovery " << (rec_done - t0).str() << ", fault done " << (r.done - t0).str());
        if (std::string(mode) == "write") {
            CHECK(f->contended == 1);
            CHECK(t.counter("nx_huge_pages_recovery_cond_resched") == 1);  // yielded to the fault
            CHECK(t.lock("mmu_lock", engine::LockMode::Write, "kvm_recover_nx_huge_pages"));
        } else {
            CHECK(f->contended == 0);
            CHECK(t.counter("nx_huge_pages_recovery_cond_resched") == 0);
            CHECK(r.done < rec_done);  // done while the recovery still ran
            CHECK(t.lock("mmu_lock", engine::LockMode::Read, "kvm_recover_nx_huge_pages"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PML (host feature pml)

namespace {

struct PmlTdp : Harness {
    PmlTdp(Backing b, std::uint64_t npages, vm::Knobs k = {}) : Harness(b, npages, 1, std::move(k)) {
        host.features["pml"] = true;
        build(make_tdp);
    }
    X86TdpMmu& tdp() { return static_cast<X86TdpMmu&>(*model); }
    void vcpu(std::vector<GuestAccess> a, VcpuResult& r) {
        spawn_vcpu(0, std::move(a), 0_ns, r);
        REQUIRE(sim.run() == engine::RunStatus::Completed);
    }
    void vmm(std::function<engine::Task<void>()> f) {
        spawn_actor("vmm", 0_ns, std::move(f));
        REQUIRE(sim.run() == engine::RunStatus::Completed);
    }
};

}  // namespace

TEST_CASE("pml: enabling dirty logging clears Dirty bits instead of write-protecting; writes log without exits",
          "[x86_tdp][dirty][pml]") {
    PmlTdp t(Backing::Anonymous, 1024);
    VcpuResult map, dirty1, dirty2;
    std::uint64_t got = 0, again = 0;
    t.vcpu(range(B, 1024, Access::Write), map);
    REQUIRE(map.faults == 1024);
    t.vmm([&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
    CHECK(t.counter("spte_dirty_cleared") == 1024);  // kvm_mmu_slot_leaf_clear_dirty
    CHECK(t.counter("spte_write_protected") == 0);   // no huge page to protect
    CHECK(t.counter("remote_tlb_flush") == 1);
    CHECK(t.lock("mmu_lock", engine::LockMode::Read, "kvm_mmu_slot_leaf_clear_dirty")->acquisitions == 1);
    const engine::Time t0 = t.sim.now();
    t.vcpu(range(B, 300, Access::Write, 3), dirty1);
    CHECK(dirty1.faults == 0);  // the CPU sets D and logs the GPA
    // Each write: guest time + ept_dirty_assist + the SPTE's line brought to the vCPU's CPU (113
    // lines for 300 pages at a stride of 3, each a miss of at most a memory access).
    CHECK(dirty1.done - t0 > 300 * (10_ns + 100_ns));
    CHECK(dirty1.done - t0 < 300 * (10_ns + 100_ns) + 113 * 100_ns);
    CHECK(t.counter("pf_taken") == 1024);
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 0);
    CHECK_FALSE(t.tdp().dirty(0, B));  // still in the vCPU's PML buffer
    t.vmm([&]() -> engine::Task<void> {
        got = co_await t.model->dirty_log_get(t.host_ctx(3), 0);  // kvm_arch_sync_dirty_log flushes it
        again = co_await t.model->dirty_log_get(t.host_ctx(3), 0);
    });
    CHECK(got == 300);
    CHECK(again == 0);
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 300);
    CHECK(t.counter("spte_dirty_cleared") == 1024 + 300);  // clear_dirty_pt_masked clears D, not W
    CHECK(t.counter("spte_write_protected") == 0);
    // B was harvested (D cleared again), B+1 is clean since the enable: both log.
    t.vcpu(range(B, 2, Access::Write), dirty2);
    CHECK(dirty2.faults == 0);
    t.vmm([&]() -> engine::Task<void> { got = co_await t.model->dirty_log_get(t.host_ctx(3), 0); });
    CHECK(got == 2);
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 302);
}

TEST_CASE("pml: the write that finds the PML buffer full is a PML-full exit that flushes it, not a page fault",
          "[x86_tdp][dirty][pml]") {
    PmlTdp t(Backing::Anonymous, 2048);
    VcpuResult map, dirty;
    std::uint64_t got = 0;
    t.vcpu(range(B, 1024, Access::Write), map);
    t.vmm([&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
    t.vcpu(range(B, 600, Access::Write), dirty);
    CHECK(dirty.faults == 1);  // the 513th write
    CHECK(t.counter("handle_pml_full") == 1);
    CHECK(t.counter("pf_taken") == 1024);
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 512);
    CHECK(t.tdp().dirty(0, B + 511));
    CHECK_FALSE(t.tdp().dirty(0, B + 512));  // logged after the flush, in the buffer
    // Any other exit flushes the buffer too (vmx_handle_exit): a first touch of another page.
    VcpuResult other;
    t.vcpu({{B + 1500, Access::Write}}, other);
    CHECK(other.faults == 1);
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 600);
    CHECK(t.tdp().dirty(0, B + 599));
    t.vmm([&]() -> engine::Task<void> { got = co_await t.model->dirty_log_get(t.host_ctx(3), 0); });
    CHECK(got == 601);  // and B+1500, marked by the fault that mapped it
}

TEST_CASE("pml: huge pages are write-protected at enable; split children keep the cleared Dirty bit and log",
          "[x86_tdp][dirty][pml]") {
    PmlTdp t(Backing::AnonymousThp, 2 * 512, {{"eager_page_split", false}});
    VcpuResult map, dirty;
    std::uint64_t got = 0;
    t.vcpu(range(B, 2, Access::Write, 512), map);
    REQUIRE(t.gauge("pages_2m") == 2);
    t.vmm([&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
    CHECK(t.counter("spte_dirty_cleared") == 2);
    CHECK(t.counter("spte_write_protected") == 2);  // kvm_mmu_slot_remove_write_access(PG_LEVEL_2M)
    // B: the fault splits the 2M page in place and maps B writable and dirty (marked in the slot).
    // B+1..B+9: children of the protected huge SPTE, fixed by fast_page_fault (W only); the write
    // then runs again and, D being clear as in the huge SPTE, is logged.
    t.vcpu(range(B, 10, Access::Write), dirty);
    CHECK(dirty.faults == 10);
    CHECK(t.counter("kvm_mmu_split_huge_page") == 1);
    CHECK(t.counter("pf_fast") == 9);
    t.vmm([&]() -> engine::Task<void> { got = co_await t.model->dirty_log_get(t.host_ctx(3), 0); });
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 9);
    CHECK(got == 10);
}

TEST_CASE("pml: initially-all-set clears nothing at enable; KVM_CLEAR_DIRTY_LOG clears the Dirty bits it is given",
          "[x86_tdp][dirty][pml]") {
    PmlTdp t(Backing::Anonymous, 2048);
    VcpuResult map, before, after;
    t.vcpu(range(B, 1024, Access::Write), map);
    t.vmm([&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {true}); });
    CHECK(t.counter("spte_dirty_cleared") == 0);
    t.vcpu(range(B, 128, Access::Write), before);  // D still set: nothing logged
    t.vmm([&]() -> engine::Task<void> { co_await t.model->dirty_log_clear(t.host_ctx(3), 0, B, 64); });
    CHECK(t.counter("spte_dirty_cleared") == 64);
    t.vcpu(range(B, 128, Access::Write), after);
    CHECK(before.faults + after.faults == 0);
    VcpuResult other;
    t.vcpu({{B + 1500, Access::Write}}, other);  // an exit: the buffer is flushed
    CHECK(t.counter("vmx_flush_pml_buffer_entries") == 64);
}

TEST_CASE("pml: pml_slot_set_dirty (before v5.12) sets the cleared Dirty bits back when logging stops",
          "[x86_tdp][dirty][pml]") {
    for (const bool old : {false, true}) {
        INFO("pml_slot_set_dirty " << old);
        PmlTdp t(Backing::Anonymous, 2048, {{"pml_slot_set_dirty", old}});
        VcpuResult map, dirty, after;
        t.vcpu(range(B, 1024, Access::Write), map);
        t.vmm([&]() -> engine::Task<void> { co_await t.model->dirty_log_enable(t.host_ctx(3), 0, {}); });
        t.vcpu(range(B, 100, Access::Write), dirty);  // 100 Dirty bits set again by the CPU
        engine::Time done;
        t.spawn_actor("vmm", 0_ns, [&]() -> engine::Task<void> { co_await t.model->dirty_log_disable(t.host_ctx(3), 0); },
                      &done);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(t.counter("spte_dirty_set") == (old ? 924 : 0));
        CHECK(t.counter("remote_tlb_flush") == (old ? 2 : 1));
        if (old) CHECK(t.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_slot_set_dirty")->acquisitions == 1);
        // Either way PML is off now: a write to a still-clean SPTE sets D without logging.
        t.vcpu(range(B + 500, 10, Access::Write), after);
        CHECK(after.faults == 0);
        VcpuResult other;
        t.vcpu({{B + 1500, Access::Write}}, other);  // a first touch: an exit, which flushes the buffer
        CHECK(t.counter("vmx_flush_pml_buffer_entries") == 100);
    }
}
