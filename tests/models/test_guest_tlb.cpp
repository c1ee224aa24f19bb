// The guest TLB (sim/vm/guest_tlb.hpp): fill, LRU eviction per set, invalidation by range
// and by VMID; arm64's range TLBI decomposition; and, through the guest scheduler, that a TLB hit
// costs no event and a miss only guest time.
#include <catch2/catch.hpp>

#include "models/arm64_stage2/arm64_stage2.hpp"
#include "sim/vm/guest_tlb.hpp"
#include "sim/workload/guest.hpp"

using namespace kvmsim;
using engine::Task;
using engine::Time;
using vm::GuestTlb;

TEST_CASE("guest TLB: a fill is found at its size by any frame it covers, on its vCPU only", "[tlb]") {
    GuestTlb t(2, GuestTlb::Geometry{{8, 4, 2}, 2});
    CHECK_FALSE(t.lookup(0, 100));
    t.fill(0, 100, 0);          // 4K
    t.fill(0, 512 * 3 + 7, 1);  // the 2M block of frames 1536..2047
    t.fill(0, 262144 * 2, 2);   // a 1G block
    CHECK(t.lookup(0, 100));
    CHECK_FALSE(t.lookup(0, 101));
    CHECK(t.lookup(0, 1536));
    CHECK(t.lookup(0, 2047));
    CHECK_FALSE(t.lookup(0, 2048));
    CHECK(t.lookup(0, 262144 * 2 + 12345));
    CHECK_FALSE(t.lookup(1, 100));  // per vCPU
    CHECK(t.live(0) == 3);
    CHECK(t.live(1) == 0);
}

TEST_CASE("guest TLB: a full set evicts its least recently used entry", "[tlb]") {
    // 4K: 8 entries, 2 ways -> 4 sets indexed by the frame's low bits: 0, 4, 8 share set 0.
    GuestTlb t(1, GuestTlb::Geometry{{8, 0, 0}, 2});
    t.fill(0, 0, 0);
    t.fill(0, 4, 0);
    CHECK(t.lookup(0, 0));  // 0 is now the most recent: 4 goes next
    t.fill(0, 8, 0);
    CHECK(t.holds(0, 0, 0));
    CHECK_FALSE(t.holds(0, 4, 0));
    CHECK(t.holds(0, 8, 0));
    CHECK(t.evictions() == 1);
    t.fill(0, 1, 0);  // another set: no eviction
    CHECK(t.evictions() == 1);
    CHECK(t.live(0) == 3);
    // A size without entries is never cached.
    CHECK_FALSE(t.fill(0, 512, 1));
    CHECK_FALSE(t.lookup(0, 512));
}

TEST_CASE("guest TLB: a non-power-of-two set count indexes by modulo", "[tlb]") {
    GuestTlb t(1, GuestTlb::Geometry{{12, 0, 0}, 4});  // 3 sets
    for (vm::Gfn g : {0, 3, 6, 9}) t.fill(0, g, 0);    // set 0, full
    t.fill(0, 12, 0);                                  // evicts 0 (least recent)
    CHECK_FALSE(t.holds(0, 0, 0));
    for (vm::Gfn g : {3, 6, 9, 12}) CHECK(t.holds(0, g, 0));
}

TEST_CASE("guest TLB: invalidation by range takes every entry overlapping it on every vCPU; by VMID all",
          "[tlb]") {
    GuestTlb t(3, GuestTlb::Geometry{{64, 16, 4}, 4});
    for (std::uint32_t v = 0; v < 3; ++v) {
        for (vm::Gfn g = 0; g < 8; ++g) t.fill(v, g, 0);
        t.fill(v, 1024, 1);    // 2M block 1024..1535
        t.fill(v, 262144, 2);  // 1G block
    }
    t.invalidate_range(2, 4);  // frames 2, 3
    t.invalidate_range(1500, 1501);  // inside the 2M block
    for (std::uint32_t v = 0; v < 3; ++v) {
        CHECK(t.holds(v, 1, 0));
        CHECK_FALSE(t.holds(v, 2, 0));
        CHECK_FALSE(t.holds(v, 3, 0));
        CHECK(t.holds(v, 4, 0));
        CHECK_FALSE(t.holds(v, 1024, 1));
        CHECK(t.holds(v, 262144, 2));
        CHECK(t.live(v) == 7);
    }
    // A range wider than the sets scans the whole array.
    t.invalidate_range(0, std::uint64_t{1} << 30);
    CHECK(t.live(0) == 0);
    t.fill(1, 5, 0);
    t.invalidate_all();
    CHECK(t.live(1) == 0);
    CHECK_FALSE(t.lookup(1, 5));
}

TEST_CASE("arm64 range TLBIs: __flush_tlb_range_op's instruction count per call", "[tlb][arm64]") {
    using models::arm64_stage2::tlbi_range_ops;
    CHECK(tlbi_range_ops(1) == 1);    // one single-page TLBI
    CHECK(tlbi_range_ops(2) == 1);    // scale 0, num 0
    CHECK(tlbi_range_ops(3) == 2);    // 1 + 2
    CHECK(tlbi_range_ops(64) == 1);   // scale 0, num 31
    CHECK(tlbi_range_ops(512) == 1);  // a 2 MiB block: scale 1, num 7
    CHECK(tlbi_range_ops(513) == 2);
    CHECK(tlbi_range_ops(262144) == 1);  // 1 GiB: scale 3, num 3
    CHECK(tlbi_range_ops(262144 + 512 + 2 + 1) == 4);
    // against one TLBI by IPA per page before the series
    CHECK(tlbi_range_ops(65535) <= 8);
}

namespace {
// A toy model whose pages are all mapped (4K) and whose TLB refill costs a fixed time.
struct TlbToy : vm::MmuModel {
    GuestTlb tlb;
    Time refill;
    std::uint64_t refills = 0;
    TlbToy(std::uint32_t vcpus, Time r) : tlb(vcpus, GuestTlb::Geometry{{16, 0, 0}, 4}), refill(r) {}
    bool hits(std::uint32_t, vm::Gfn, vm::Access) const override { return true; }
    Task<void> page_fault(const vm::CpuContext&, vm::Gfn, vm::Access) override { co_return; }
    vm::GuestTlb* guest_tlb() override { return &tlb; }
    Time tlb_refill(std::uint32_t vcpu, vm::Gfn gfn) override {
        ++refills;
        tlb.fill(vcpu, gfn, 0);
        return refill;
    }
};

Task<void> run_stream(workload::GuestScheduler& g, const vm::CpuContext& cpu, workload::AccessStream s,
                      workload::VcpuStats& st) {
    co_await g.run(cpu, s, st);
}

struct TlbRun {
    std::uint64_t events, refills, accesses;
    Time end;
};

TlbRun run_tlb(std::uint64_t npages, std::uint64_t count, Time refill, std::uint64_t touch_back = 0) {
    engine::Simulator sim(1);
    TlbToy m(1, refill);
    workload::GuestScheduler g(sim, m);
    vm::CpuContext cpu{"vcpu0", 0, 0};
    workload::AccessStream s;
    s.base = 0;
    s.npages = npages;
    s.count = count;
    s.touch_back = touch_back;
    s.guest_time = Time::ns(10);
    workload::VcpuStats st;
    sim.spawn("vcpu0", run_stream(g, cpu, s, st));
    REQUIRE(sim.run() == engine::RunStatus::Completed);
    return {sim.events_processed(), m.refills, st.accesses, sim.now()};
}
}  // namespace

TEST_CASE("a TLB hit costs no event and no time; a miss costs its refill as guest time, no event",
          "[tlb][workload]") {
    // 8 pages fit the 16-entry TLB: 8 misses, then 992 hits.
    const TlbRun fit = run_tlb(8, 1000, Time::ns(7));
    CHECK(fit.refills == 8);
    CHECK(fit.accesses == 1000);
    CHECK(fit.end == Time::ns(1000 * 10 + 8 * 7));
    // 64 pages cycle through 4 sets of 4 ways: LRU misses every access.
    const TlbRun thrash = run_tlb(64, 1000, Time::ns(7));
    CHECK(thrash.refills == 1000);
    CHECK(thrash.end == Time::ns(1000 * 17));
    // Same events either way: hits and misses alike run in the batch.
    CHECK(fit.events == thrash.events);
    const TlbRun none = run_tlb(64, 1000, Time::zero());
    CHECK(none.events == fit.events);
}

TEST_CASE("touch_back: each new page, then up to N earlier ones, nearest first", "[tlb][workload]") {
    workload::AccessStream s;
    s.base = 10;
    s.npages = 100;
    s.count = 4;
    s.touch_back = 2;
    CHECK(s.total() == 4 + 0 + 1 + 2 + 2);
    workload::StreamCursor c(s, engine::RandomStream(1, "t"));
    std::vector<vm::Gfn> seen;
    while (!c.done()) {
        seen.push_back(c.gfn());
        c.advance();
    }
    CHECK(seen == std::vector<vm::Gfn>{10, 11, 10, 12, 11, 10, 13, 12, 11});
    // The touched-back pages hit the TLB: 4 refills for 9 accesses.
    const TlbRun r = run_tlb(100, 4, Time::ns(7), 2);
    CHECK(r.accesses == 9);
    CHECK(r.refills == 4);
}

namespace {
Task<void> flusher(engine::Simulator& sim, GuestTlb& tlb, Time every, int times) {
    for (int i = 0; i < times; ++i) {
        co_await sim.delay(every);
        if (i % 3 == 2)
            tlb.invalidate_all();
        else
            tlb.invalidate_range(static_cast<vm::Gfn>(4 * i), static_cast<vm::Gfn>(4 * i + 20));
    }
}

// Reference: every access an event, the refill waited for as a delay.
Task<void> naive_tlb_vcpu(engine::Simulator& sim, TlbToy& m, std::uint32_t v, workload::AccessStream s) {
    workload::StreamCursor c(s, engine::RandomStream(1, "unused"));
    while (!c.done()) {
        Time t = s.guest_time;
        if (!m.tlb.lookup(v, c.gfn())) t += m.tlb_refill(v, c.gfn());
        c.advance();
        co_await sim.delay(t);
    }
}

std::pair<std::uint64_t, Time> run_flushed(bool batched) {
    engine::Simulator sim(1);
    TlbToy m(3, Time::ns(7));
    workload::GuestScheduler g(sim, m);
    std::vector<vm::CpuContext> cpus;
    for (std::uint32_t v = 0; v < 3; ++v) cpus.push_back(vm::CpuContext{"vcpu" + std::to_string(v), v, static_cast<std::int32_t>(v)});
    std::vector<workload::VcpuStats> st(3);
    for (std::uint32_t v = 0; v < 3; ++v) {
        workload::AccessStream s;
        s.base = 0;
        s.npages = 12 + 3 * v;  // fits the TLB between flushes
        s.count = 4000;
        s.touch_back = v;
        s.guest_time = Time::ps(10007 + 17 * v);
        if (batched)
            sim.spawn(cpus[v].name, run_stream(g, cpus[v], s, st[v]));
        else
            sim.spawn(cpus[v].name, naive_tlb_vcpu(sim, m, v, s));
    }
    sim.spawn("flush", flusher(sim, m.tlb, Time::ps(3'000'017), 12));
    REQUIRE(sim.run() == engine::RunStatus::Completed);
    return {m.refills, sim.now()};
}
}  // namespace

TEST_CASE("TLB invalidations at engine events: batched hits refill exactly as one event per access",
          "[tlb][workload]") {
    const auto naive = run_flushed(false), batched = run_flushed(true);
    CHECK(naive.first > 3 * 20);  // the flushes force refills throughout
    CHECK(batched.first == naive.first);
    CHECK(batched.second == naive.second);
}
