// Unit tests of the host's mm (models/host): the page state machine, the notifier calls it makes,
// GUP costs with exact times, refcount-line contention, the hugetlb fault mutex; and, through
// arm64_stage2, a COW invalidating a stage-2 mapping under a fault in flight.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "models/arm64_stage2/arm64_stage2.hpp"
#include "models/host/host_mm.hpp"
#include "models/registry.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::engine::time_literals;
using kvmsim::models::host::Gup;
using kvmsim::models::host::HostMm;
using kvmsim::models::host::Page;
using vm::Backing;
using vm::Gfn;

namespace {

constexpr Gfn B = 0x100000;

// Round costs: a 4 KiB clear takes 100 ns at zero_rate, a 2 MiB one 51.2 us.
models::host::Costs costs() {
    models::host::Costs k;
    k.gup_fast = 50_ns;
    k.gup_slow = 60_ns;
    k.host_fault_base = 1000_ns;
    k.zero_page_map = 70_ns;
    k.pmd_split = 400_ns;
    k.zero_rate = 40'960'000'000;
    return k;
}

// What the host's page-table changes tell KVM, in order.
struct MockNotifier : models::host::MmuNotifier {
    engine::Simulator& sim;
    std::vector<std::string> calls;
    explicit MockNotifier(engine::Simulator& s) : sim(s) {}
    std::string at() const { return "@" + std::to_string(sim.now().ps() / 1000); }
    engine::Task<void> invalidate_range_start(const vm::CpuContext&, Gfn s, Gfn e) override {
        calls.push_back("start " + std::to_string(s - B) + "-" + std::to_string(e - B) + at());
        co_return;
    }
    engine::Task<void> invalidate_range_end(const vm::CpuContext&, Gfn s, Gfn e) override {
        calls.push_back("end " + std::to_string(s - B) + "-" + std::to_string(e - B) + at());
        co_return;
    }
    engine::Task<void> change_pte(const vm::CpuContext&, Gfn g) override {
        calls.push_back("change_pte " + std::to_string(g - B) + at());
        co_return;
    }
};

struct Host {
    engine::Simulator sim{1};
    vm::HostConfig cfg;
    std::vector<vm::Memslot> slots;
    std::unique_ptr<HostMm> mm;
    MockNotifier mn{sim};

    explicit Host(Backing b, std::uint64_t npages = 2048, models::host::Features f = {}) {
        cfg.cpus = 4;
        cfg.topology.sockets = 1;
        cfg.topology.cpus_per_socket = 4;
        cfg.topology.line_local = 10_ns;
        cfg.topology.line_same_socket = 60_ns;
        cfg.topology.line_cross_socket = 130_ns;
        cfg.topology.memory_bandwidth_per_socket = 0;  // unlimited: each clear at zero_rate
        vm::Memslot m;
        m.id = 0;
        m.base_gfn = B;
        m.npages = npages;
        m.backing = b;
        slots.push_back(m);
        mm = std::make_unique<HostMm>(sim, cfg, slots, costs(), f);
        mm->set_notifier(&mn);
    }
    std::uint64_t counter(std::string_view n) const { return sim.counters().total(n); }
    static vm::CpuContext ctx(std::uint32_t cpu) { return vm::CpuContext{"cpu" + std::to_string(cpu), cpu, -1}; }

    // hva_to_pfn by `cpu` at `start`: what it gave.
    void gup(std::uint32_t cpu, Gfn g, bool write, engine::Time start, Gup& out) {
        sim.spawn("gup" + std::to_string(cpu) + "_" + std::to_string(start.ps()),
                  [](Host& h, std::uint32_t c, Gfn g, bool w, engine::Time s, Gup& o) -> engine::Task<void> {
                      co_await h.sim.delay(s);
                      o = co_await h.mm->gup(ctx(c), g, w);
                  }(*this, cpu, g, write, start, out));
    }
    void run() { REQUIRE(sim.run() == engine::RunStatus::Completed); }
};

}  // namespace

TEST_CASE("host: a read maps the zero page read-only, a write a cleared private page; exact GUP times",
          "[host]") {
    Host h(Backing::Anonymous);
    Gup r, w;
    h.gup(0, B + 1, false, 0_ns, r);
    h.gup(0, B + 2, true, 10_us, w);
    h.run();
    // Read: gup_fast + gup_slow (110), mmap_lock (untouched: 60) 170, do_anonymous_page maps the
    // zero page (70) 240, follow: ptl 60, the zero page's refcount 60, ptl again 10, mmap_lock 10
    // (380), then "map read fault as writable if possible" fails (gup_fast): 430.
    CHECK(r.done == 430_ns);
    CHECK_FALSE(r.writable);
    CHECK(r.level == 3);
    CHECK(r.slow);
    CHECK(h.mm->page(B + 1) == Page::Zero);
    // Write: 110, mmap_lock (held by CPU 0 already: 10) 120, handle_mm_fault 1000 and a 4 KiB clear
    // 100 (1220), follow: ptl 10, the new page's refcount (CPU 0 allocated it: 10), ptl 10,
    // mmap_lock 10: 1260 after its start.
    CHECK(w.done == 10_us + 1260_ns);
    CHECK(w.writable);
    CHECK(h.mm->page(B + 2) == Page::Private);
    CHECK(h.counter("host_zero_page_mapped") == 1);
    CHECK(h.counter("host_fault_first_touch") == 1);
    CHECK(h.counter("host_zeroed_4k") == 1);
    CHECK(h.mn.calls.empty());  // nothing was mapped before: no invalidation
}

TEST_CASE("host: a write to the zero page copies it: invalidate_range_start, change_pte, invalidate_range_end",
          "[host]") {
    Host h(Backing::Anonymous);
    Gup r, w;
    h.gup(0, B + 5, false, 0_ns, r);
    h.gup(1, B + 5, true, 10_us, w);
    h.run();
    CHECK(h.mm->page(B + 5) == Page::Private);
    CHECK(w.writable);
    CHECK(h.counter("host_wp_page_copy") == 1);
    CHECK(h.counter("host_zeroed_4k") == 1);
    // wp_page_copy: the new page cleared first (10 us + 110 + mmap_lock 60 + 1000 + 100), then the
    // notifier around the PTE change, over the one page.
    REQUIRE(h.mn.calls.size() == 3);
    CHECK(h.mn.calls[0] == "start 5-6@11270");
    CHECK(h.mn.calls[1] == "change_pte 5@11270");
    CHECK(h.mn.calls[2] == "end 5-6@11270");
    // The GUP follows the new page, writable, after the copy.
    CHECK(w.done > 11270_ns);
}

TEST_CASE("host: THP - a read maps the huge zero page; a write to it splits the PMD (v5.8+) then copies 4 KiB",
          "[host]") {
    Host h(Backing::AnonymousThp);
    Gup r, w;
    h.gup(0, B + 600, false, 0_ns, r);
    h.gup(0, B + 700, true, 10_us, w);
    h.run();
    CHECK(r.level == 2);  // the huge zero page is PMD-mapped (PageTransCompoundMap)
    CHECK_FALSE(r.writable);
    CHECK(h.counter("host_huge_zero_page_mapped") == 1);
    CHECK(h.counter("host_split_huge_pmd") == 1);
    CHECK(h.counter("host_wp_page_copy") == 1);
    // The split's invalidation covers the 2 MiB (pages 512-1023), the COW's the one page.
    REQUIRE(h.mn.calls.size() == 5);
    CHECK(h.mn.calls[0].rfind("start 512-1024@", 0) == 0);
    CHECK(h.mn.calls[1].rfind("end 512-1024@", 0) == 0);
    CHECK(h.mn.calls[2].rfind("start 700-701@", 0) == 0);
    CHECK(h.mn.calls[3].rfind("change_pte 700@", 0) == 0);
    CHECK(h.mn.calls[4].rfind("end 700-701@", 0) == 0);
    CHECK(h.mm->page(B + 700) == Page::Private);
    CHECK(h.mm->page(B + 600) == Page::Zero);  // the rest of the split PMD: zero-page PTEs
    CHECK(w.level == 3);
    CHECK(w.writable);
}

TEST_CASE("host: THP - before v5.8 a write to the huge zero page allocates a THP; a first write allocates 2 MiB",
          "[host]") {
    models::host::Features old;
    old.thp_wp_zero_page_split = false;
    Host h(Backing::AnonymousThp, 2048, old);
    Gup r, w, x;
    h.gup(0, B + 600, false, 0_ns, r);
    h.gup(0, B + 700, true, 10_us, w);
    h.gup(1, B + 1500, true, 200_us, x);
    h.run();
    CHECK(h.counter("host_split_huge_pmd") == 0);
    CHECK(h.counter("host_thp_alloc") == 2);
    CHECK(h.counter("host_zeroed_4k") == 1024);
    CHECK(h.mm->page(B + 600) == Page::Huge);
    CHECK(w.level == 2);
    CHECK(w.writable);
    REQUIRE(h.mn.calls.size() == 2);  // the huge zero page replaced: its 2 MiB invalidated
    CHECK(h.mn.calls[0].rfind("start 512-1024@", 0) == 0);
    CHECK(h.mn.calls[1].rfind("end 512-1024@", 0) == 0);
    // A first write to a THP: 110, mmap_lock (untouched by CPU 1: the line was CPU 0's: 60) 170,
    // handle_mm_fault 1000 and a 2 MiB clear 51200 (52370), follow: the PMD lock (CPU 0's: 60),
    // the new head's refcount (CPU 1 allocated it: 10), the PMD lock 10, mmap_lock 10: 52460.
    CHECK(x.done == 200_us + 52460_ns);
    CHECK(x.level == 2);
    CHECK(h.mm->page(B + 1500) == Page::Huge);
}

TEST_CASE("host: the hugetlb fault mutex - one fault populates a huge page, the others wait for it",
          "[host]") {
    Host h(Backing::Hugetlb2M, 1024);
    std::vector<Gup> g(3);
    for (std::uint32_t c = 0; c < 3; ++c) h.gup(c, B + 7 + c, true, 0_ns, g[c]);
    h.run();
    CHECK(h.counter("host_fault_first_touch") == 1);
    CHECK(h.counter("host_zeroed_4k") == 512);  // one 2 MiB clear
    CHECK(h.mm->page(B + 100) == Page::Hugetlb);
    // CPU 0 got mmap_lock at 170 (110 + 60), populated the page: 1000 + 51200 -> 52370. The others
    // waited for it, then took the head's line one after the other: try_grab_page reads the
    // count before its increment, so from another CPU that is a shared fetch and an upgrade
    // (2 x 60), then mmap_lock (60).
    CHECK(g[0].done == 52440_ns);  // head 10 (it allocated it), mmap_lock 60 (CPU 2 had it)
    CHECK(g[1].done == 52560_ns);  // head 52380 + 120, mmap_lock 60
    CHECK(g[2].done == 52680_ns);  // head 52500 + 120, mmap_lock 60
    for (const Gup& x : g) {
        CHECK(x.level == 2);
        CHECK(x.writable);
    }
    // Populated, the next GUP is the fast path: gup_fast, then the head's line, which CPU 2's
    // reference holds until 52620 (the run ended at the populate, 52370: those were worked out
    // ahead); try_get_compound_head's read and cmpxchg take it from CPU 2: 2 x 60.
    CHECK(h.sim.now() == 52370_ns);
    CHECK(h.mm->gup_analytic(B + 300, false));
    const Gup f = h.mm->try_gup(3, B + 300, false, h.sim.now());
    CHECK(f.done == 52620_ns + 120_ns);
    CHECK_FALSE(f.slow);
}

TEST_CASE("host: GUP fast and slow paths cost what their lines cost, exactly", "[host]") {
    Host h(Backing::Anonymous);
    h.mm->populate(B, B + 4);
    // A private page: hva_to_pfn_fast (gup_fast 50) and its refcount line (untouched: 60).
    const Gup a = h.mm->try_gup(0, B + 1, false, 1_us);
    CHECK(a.done == 1_us + 110_ns);
    CHECK(a.writable);
    CHECK_FALSE(a.slow);
    // Again by the same CPU: the line is its own (10).
    CHECK(h.mm->try_gup(0, B + 1, true, 2_us).done == 2_us + 60_ns);
    // From another CPU of the socket: try_get_compound_head reads the count, then its cmpxchg
    // takes the line exclusive: two transfers, 2 x 60.
    CHECK(h.mm->try_gup(1, B + 1, true, 3_us).done == 3_us + 170_ns);
    // put_page: one more atomic on the line (CPU 1 owns it).
    CHECK(h.mm->put_page(1, a, 4_us) == 4_us + 10_ns);
    CHECK(h.counter("gup_fast_only") == 3);
    CHECK(h.counter("get_user_pages_unlocked") == 0);
}

TEST_CASE("host: N CPUs taking references on one THP serialize on its head's line; on 4 KiB pages they do not",
          "[host]") {
    Host thp(Backing::AnonymousThp);
    thp.mm->populate(B, B + 512);
    Host small(Backing::Anonymous);
    small.mm->populate(B, B + 512);
    for (std::uint32_t c = 0; c < 4; ++c) {
        // Four different 4 KiB pages of one 2 MiB, all at 1 us.
        const Gup t = thp.mm->try_gup(c, B + 10 * c, false, 1_us);
        const Gup s = small.mm->try_gup(c, B + 10 * c, false, 1_us);
        // The compound head's line, one after another: untouched first (60), then each from the
        // CPU before it, a shared fetch and an upgrade (2 x 60).
        CHECK(t.done == 1_us + 50_ns + 60_ns + 120_ns * c);
        CHECK(s.done == 1_us + 50_ns + 60_ns);           // each page's own line
        CHECK(t.level == 2);
        CHECK(s.level == 3);
    }
}

TEST_CASE("host: an unmap invalidates the range around dropping the pages", "[host]") {
    Host h(Backing::AnonymousThp);
    h.mm->populate(B, B + 1024);
    h.sim.spawn("unmap", [](Host& h) -> engine::Task<void> {
        co_await h.sim.delay(5_us);
        co_await h.mm->unmap(Host::ctx(2), B + 100, B + 200);
    }(h));
    h.run();
    REQUIRE(h.mn.calls.size() == 2);
    CHECK(h.mn.calls[0] == "start 100-200@5000");
    CHECK(h.mn.calls[1] == "end 100-200@5000");
    CHECK(h.mm->page(B + 150) == Page::Absent);
    CHECK(h.mm->page(B + 50) == Page::Private);  // the THP was split around the hole
    CHECK(h.mm->page(B + 600) == Page::Huge);
}

// ---------------------------------------------------------------------------------------------
// arm64_stage2 with the host

namespace {
std::unique_ptr<vm::MmuModel> make_a64(vm::ModelEnv& env) {
    return models::builtin_models().find("arm64_stage2")->create(env);
}
}  // namespace

TEST_CASE("arm64: a COW unmaps the zero page's stage-2 mapping; the fault that caused it retries "
          "(mmu_invalidate_seq)", "[arm64][host]") {
    for (const char* lock : {"spinlock", "rwlock"}) {
        INFO(lock);
        testing::Harness t(Backing::Anonymous, 1024, 2, {{"mmu_lock", std::string(lock)}, {"cmo", std::string("map_walker")}});
        t.host.costs = testing::arm64_test_costs();
        t.host.features["fwb"] = false;
        t.host.features["thp_use_zero_page"] = true;
        t.host.features["thp_wp_zero_page_split"] = true;
        t.build(make_a64);
        auto& m = static_cast<models::arm64_stage2::Arm64Stage2&>(*t.model);
        const Gfn g = testing::Harness::kBase + 1;
        testing::VcpuResult a, b;
        t.spawn_vcpu(0, {{g, vm::Access::Read}}, 0_ns, a);
        t.spawn_vcpu(1, {{g, vm::Access::Write}}, 50_us, b);
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(a.faults == 1);
        CHECK(m.host_mm().page(g) == Page::Private);
        CHECK(t.counter("host_wp_page_copy") == 1);
        // The read mapped the zero page read-only; the write's COW unmapped it (its
        // invalidate_range_start), and its own fault, which took its sequence snapshot before
        // the GUP, found it moved at mmu_lock and went back to the guest to fault again.
        CHECK(t.counter("stage2_unmap_ptes") >= 1);
        CHECK(t.counter("mmu_invalidate_retry") >= 1);
        CHECK(b.faults >= 2);
        CHECK(t.model->hits(1, g, vm::Access::Write));
        CHECK(t.model->hits(0, g, vm::Access::Read));
    }
}
