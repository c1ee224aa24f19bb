#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "sim/workload/guest.hpp"
#include "sim/workload/presets.hpp"
#include "sim/workload/workload.hpp"

using namespace kvmsim;
using namespace kvmsim::engine::time_literals;
using engine::Task;
using engine::Time;
using workload::AccessStream;

namespace {
// A toy MMU: a fault pays `entry`, then maps the page (writable if the access writes), then
// pays `exit`. Zaps clear a range at their event time.
struct ToyModel : vm::MmuModel {
    engine::Simulator& sim;
    std::vector<std::uint8_t> state;  // 0 unmapped, 1 read-only, 2 writable
    Time entry, exit;
    std::vector<std::tuple<std::int64_t, std::int32_t, vm::Gfn>> faults;  // (time, vcpu, gfn)
    ToyModel(engine::Simulator& s, std::size_t pages, Time en, Time ex) : sim(s), state(pages, 0), entry(en), exit(ex) {}
    bool hits(std::uint32_t, vm::Gfn g, vm::Access a) const override {
        return state[g] == 2 || (state[g] == 1 && a != vm::Access::Write);
    }
    Task<void> page_fault(const vm::CpuContext& cpu, vm::Gfn g, vm::Access a) override {
        co_await sim.delay(entry);
        faults.emplace_back(sim.now().ps(), cpu.vcpu, g);
        state[g] = a == vm::Access::Write ? 2 : std::max<std::uint8_t>(state[g], 1);
        co_await sim.delay(exit);
    }
    Time fault_lookahead() const override { return entry; }
};

Task<void> zapper(engine::Simulator& sim, ToyModel& m, Time every, int times, vm::Gfn lo, vm::Gfn hi) {
    for (int i = 0; i < times; ++i) {
        co_await sim.delay(every);
        for (vm::Gfn g = lo; g < hi; ++g) m.state[g] = 0;
    }
}

// Reference: every access is an event.
Task<void> naive_vcpu(engine::Simulator& sim, ToyModel& m, const vm::CpuContext& cpu, AccessStream s,
                      std::uint64_t& accesses) {
    workload::StreamCursor c(s, sim.stream("guest", static_cast<std::uint64_t>(cpu.vcpu)));
    while (!c.done()) {
        if (!m.hits(static_cast<std::uint32_t>(cpu.vcpu), c.gfn(), c.access())) {
            co_await m.page_fault(cpu, c.gfn(), c.access());
            continue;
        }
        ++accesses;
        c.advance();
        co_await sim.delay(s.guest_time);
    }
}

Task<void> sched_vcpu(workload::GuestScheduler& g, const vm::CpuContext& cpu, AccessStream s, workload::VcpuStats& st) {
    co_await g.run(cpu, s, st);
}

AccessStream stream_for(std::uint32_t v) {
    AccessStream s;
    s.pattern = v % 2 ? AccessStream::Pattern::Random : AccessStream::Pattern::Sequential;
    s.base = 0;
    s.npages = 64;
    s.count = 3000;
    s.mix = true;
    s.write_fraction = 0.3;
    s.guest_time = Time::ps(7919 + 13 * v);  // distinct primes-ish: no ties between vCPUs
    return s;
}

struct Outcome {
    std::vector<std::tuple<std::int64_t, std::int32_t, vm::Gfn>> faults;
    std::uint64_t accesses = 0;
    Time end;
};

Outcome run_one(bool batched, std::uint64_t* events = nullptr, std::uint64_t* batches = nullptr) {
    engine::Simulator sim(5);
    ToyModel m(sim, 64, Time::ps(1'000'003), Time::ps(500'009));
    std::vector<vm::CpuContext> cpus;
    for (std::uint32_t v = 0; v < 4; ++v) cpus.push_back(vm::CpuContext{"vcpu" + std::to_string(v), v, static_cast<std::int32_t>(v)});
    workload::GuestScheduler g(sim, m);
    std::vector<workload::VcpuStats> st(4);
    std::uint64_t naive_accesses = 0;
    for (std::uint32_t v = 0; v < 4; ++v) {
        if (batched)
            sim.spawn(cpus[v].name, sched_vcpu(g, cpus[v], stream_for(v), st[v]));
        else
            sim.spawn(cpus[v].name, naive_vcpu(sim, m, cpus[v], stream_for(v), naive_accesses));
    }
    sim.spawn("zap", zapper(sim, m, Time::ps(3'333'331), 6, 8, 40));
    REQUIRE(sim.run() == engine::RunStatus::Completed);
    Outcome o;
    o.faults = m.faults;
    o.accesses = naive_accesses;
    for (const auto& s : st) o.accesses += s.accesses;
    o.end = sim.now();
    if (events) *events = sim.events_processed();
    if (batches) *batches = g.batches();
    return o;
}
}  // namespace

TEST_CASE("batched hits give exactly the faults of one event per access", "[workload][guest]") {
    std::uint64_t naive_events = 0, batched_events = 0, batches = 0;
    const Outcome naive = run_one(false, &naive_events);
    const Outcome batched = run_one(true, &batched_events, &batches);
    REQUIRE(naive.faults.size() > 100);  // the zaps force re-faults throughout
    CHECK(batched.faults == naive.faults);
    CHECK(batched.accesses == naive.accesses);
    CHECK(batched.accesses == 4 * 3000);
    CHECK(batched.end == naive.end);
    // ...at a fraction of the events.
    CHECK(batched_events * 4 < naive_events);
    CHECK(batches > 0);
}

TEST_CASE("stream cursors walk their patterns", "[workload][guest]") {
    AccessStream s;
    s.base = 100;
    s.npages = 8;
    s.stride = 3;
    s.count = 5;
    s.access = vm::Access::Write;
    workload::StreamCursor c(s, engine::RandomStream(1, "t"));
    std::vector<vm::Gfn> seen;
    while (!c.done()) {
        CHECK(c.access() == vm::Access::Write);
        seen.push_back(c.gfn());
        c.advance();
    }
    CHECK(seen == std::vector<vm::Gfn>{100, 103, 106, 101, 104});

    AccessStream b;
    b.pattern = AccessStream::Pattern::BlockSplit;
    b.base = 0;
    b.npages = 16;
    b.block_pages = 8;
    workload::StreamCursor bc(b, engine::RandomStream(1, "t"));
    std::vector<std::pair<vm::Gfn, vm::Access>> got;
    while (!bc.done()) {
        got.emplace_back(bc.gfn(), bc.access());
        bc.advance();
    }
    // Per 8-page block: write page 0, read pages 4..7.
    REQUIRE(got.size() == 10);
    CHECK(got[0] == std::make_pair(vm::Gfn{0}, vm::Access::Write));
    CHECK(got[1] == std::make_pair(vm::Gfn{4}, vm::Access::Read));
    CHECK(got[4] == std::make_pair(vm::Gfn{7}, vm::Access::Read));
    CHECK(got[5] == std::make_pair(vm::Gfn{8}, vm::Access::Write));

    AccessStream w;
    w.npages = 6;
    w.write_every = 3;
    workload::StreamCursor wc(w, engine::RandomStream(1, "t"));
    std::vector<vm::Access> acc;
    while (!wc.done()) {
        acc.push_back(wc.access());
        wc.advance();
    }
    CHECK(acc == std::vector<vm::Access>{vm::Access::Write, vm::Access::Read, vm::Access::Read, vm::Access::Write,
                                         vm::Access::Read, vm::Access::Read});
}

TEST_CASE("kvm_page_table_test expands to its three timed stages", "[workload][presets]") {
    const auto e = workload::expand_preset("kvm_page_table_test", {"-s", "anonymous_thp", "-b", "1G", "-v", "3"}, 10_ns);
    REQUIRE(e.vm.memslots.size() == 1);
    CHECK(e.vm.vcpus == 3);
    CHECK(e.vm.memslots[0].npages == 262144);
    CHECK(e.vm.memslots[0].backing == vm::Backing::AnonymousThp);
    std::vector<std::string> timed, all;
    for (const auto& s : e.workload.steps) {
        all.push_back(s.name);
        if (s.selftest_metric) timed.push_back(s.name);
    }
    CHECK(timed == std::vector<std::string>{"KVM_CREATE_MAPPINGS", "KVM_UPDATE_MAPPINGS", "KVM_ADJUST_MAPPINGS"});
    CHECK(all.size() == 5);
    const auto& create = e.workload.steps[0].streams;
    REQUIRE(create.size() == 3);
    CHECK(create[0].stride == 512);   // one access per 2M block
    CHECK(create[0].access == vm::Access::Write);
    CHECK(create[1].access == vm::Access::Read);
    CHECK(create[0].total() == 512);
    CHECK(e.workload.steps[2].streams[0].pattern == AccessStream::Pattern::BlockSplit);
    CHECK(e.workload.steps[4].streams[0].total() == 262144);
    CHECK(e.workload.steps[1].host.op == vm::Operation::DirtyLogEnable);
}

TEST_CASE("dirty_log_perf_test expands to its printed steps", "[workload][presets]") {
    const auto e = workload::expand_preset("dirty_log_perf_test", {"-v", "2", "-b", "64M", "-i", "2", "-x", "2"}, 10_ns);
    CHECK(e.vm.memslots.size() == 2);
    std::vector<std::string> names;
    for (const auto& s : e.workload.steps) names.push_back(s.name);
    CHECK(names == std::vector<std::string>{"Populate memory", "Enabling dirty logging", "Iteration 1 dirty memory",
                                            "Iteration 1 get dirty log", "Iteration 1 clear dirty log",
                                            "Iteration 2 dirty memory", "Iteration 2 get dirty log",
                                            "Iteration 2 clear dirty log", "Disabling dirty logging"});
    CHECK(e.workload.steps[1].host.dirty.manual_protect_initially_set);
    // Memslots are aligned up to the backing's page size: 4 x 64M fits in one 1G page.
    const auto h = workload::expand_preset("dirty_log_perf_test", {"-v", "4", "-b", "64M", "-s", "anonymous_hugetlb_1gb"}, 10_ns);
    REQUIRE(h.vm.memslots.size() == 1);
    CHECK(h.vm.memslots[0].npages == 262144);
    CHECK(h.workload.steps[0].streams[3].base == h.vm.memslots[0].base_gfn + 3 * 16384);
    const auto g = workload::expand_preset("dirty_log_perf_test", {"-g", "-i", "1"}, 10_ns);
    CHECK(g.workload.steps.size() == 5);  // no clear without manual protect
    CHECK_FALSE(g.workload.steps[1].host.dirty.manual_protect_initially_set);
}

TEST_CASE("dirty_log_perf_test -o overlaps the vCPUs' accesses", "[workload][presets]") {
    // memstress_setup_vcpus without partitioning: every vCPU from the region's start over
    // vcpus x size-per-vcpu.
    const auto o = workload::expand_preset("dirty_log_perf_test", {"-v", "3", "-b", "64M", "-o", "-i", "1"}, 10_ns);
    REQUIRE(o.vm.memslots.size() == 1);
    CHECK(o.vm.memslots[0].npages == 3 * 16384);
    for (const auto& step : {o.workload.steps[0], o.workload.steps[2]}) {
        REQUIRE(step.streams.size() == 3);
        for (const auto& s : step.streams) {
            CHECK(s.base == o.vm.memslots[0].base_gfn);
            CHECK(s.npages == 3 * 16384);
        }
    }
    const auto p = workload::expand_preset("dirty_log_perf_test", {"-v", "3", "-b", "64M", "-i", "1"}, 10_ns);
    CHECK(p.workload.steps[0].streams[2].base == p.vm.memslots[0].base_gfn + 2 * 16384);
    CHECK(p.workload.steps[0].streams[2].npages == 16384);
}

TEST_CASE("dirty_log_perf_test -w (write percent, v6.2+), -f (before v6.2), -i and -m as the eager split series ran them",
          "[workload][presets]") {
    // Ricardo Koller's arm64 eager split runs: -s anonymous_hugetlb_2mb -b 1G -v N -i 3 -m 2 [-w 10].
    const auto e = workload::expand_preset(
        "dirty_log_perf_test", {"-s", "anonymous_hugetlb_2mb", "-b", "64M", "-v", "2", "-i", "3", "-m", "2", "-w", "10"},
        10_ns);
    std::size_t dirty = 0;
    for (const auto& st : e.workload.steps)
        if (st.name.find("dirty memory") != std::string::npos) ++dirty;
    CHECK(dirty == 3);
    for (const auto& s : e.workload.steps[2].streams) {
        CHECK(s.mix);  // each access writes with probability 0.1 (guest_random_u32 % 100 < 10)
        CHECK(s.write_fraction == 0.1);
        CHECK(s.write_every == 0);
    }
    // -w 100 (the default) and -f 1 are the same all-writes pass, with no draws.
    for (const auto& args : {std::vector<std::string>{"-w", "100"}, std::vector<std::string>{"-f", "1"},
                             std::vector<std::string>{}}) {
        const auto d = workload::expand_preset("dirty_log_perf_test", args, 10_ns);
        CHECK_FALSE(d.workload.steps[2].streams[0].mix);
        CHECK(d.workload.steps[2].streams[0].write_every == 1);
    }
    const auto f = workload::expand_preset("dirty_log_perf_test", {"-f", "4"}, 10_ns);
    CHECK(f.workload.steps[2].streams[0].write_every == 4);
    auto arg_of = [](std::vector<std::string> args) {
        try {
            workload::expand_preset("dirty_log_perf_test", args, 10_ns);
        } catch (const workload::PresetError& e) {
            return e.arg;
        }
        return -99;
    };
    CHECK(arg_of({"-w", "101"}) == 1);
    CHECK(arg_of({"-f", "2", "-w", "50"}) == 3);  // -w replaced -f: not both
    CHECK(arg_of({"-m", "1"}) == 1);              // 64 KiB guest pages are not simulated
}

TEST_CASE("preset flags are checked", "[workload][presets]") {
    using workload::PresetError;
    auto arg_of = [](std::vector<std::string> args) {
        try {
            workload::expand_preset("kvm_page_table_test", args, 10_ns);
        } catch (const PresetError& e) {
            return e.arg;
        }
        return -99;
    };
    CHECK(arg_of({"-b", "12Q"}) == 1);
    CHECK(arg_of({"-v", "0"}) == 1);
    CHECK(arg_of({"-s", "anon"}) == 1);
    CHECK(arg_of({"-z", "1"}) == 0);
    CHECK(arg_of({"-v"}) == 0);
    std::uint64_t v = 0;
    CHECK(workload::parse_selftest_size("20G", v));
    CHECK(v == 20ULL << 30);
    CHECK(workload::parse_selftest_size("512m", v));
    CHECK(v == 512ULL << 20);
    CHECK_FALSE(workload::parse_selftest_size("1.5G", v));
    CHECK_FALSE(workload::parse_selftest_size("G", v));
}

namespace {
Outcome run_premapped(bool batched, std::uint64_t seed) {
    engine::Simulator sim(seed);
    ToyModel m(sim, 1024, Time::ps(1'000'003), Time::ps(500'009));
    std::fill(m.state.begin(), m.state.end(), 2);
    m.state[777] = 0;  // the one page a vCPU must fault in; the other then hits it
    std::vector<vm::CpuContext> cpus;
    for (std::uint32_t v = 0; v < 2; ++v) cpus.push_back(vm::CpuContext{"vcpu" + std::to_string(v), v, static_cast<std::int32_t>(v)});
    workload::GuestScheduler g(sim, m);
    std::vector<workload::VcpuStats> st(2);
    std::uint64_t naive_accesses = 0;
    for (std::uint32_t v = 0; v < 2; ++v) {
        AccessStream s;
        s.pattern = AccessStream::Pattern::Random;
        s.npages = 1024;
        s.count = 20000;
        s.guest_time = Time::ps(7919 + 13 * v);
        if (batched)
            sim.spawn(cpus[v].name, sched_vcpu(g, cpus[v], s, st[v]));
        else
            sim.spawn(cpus[v].name, naive_vcpu(sim, m, cpus[v], s, naive_accesses));
    }
    REQUIRE(sim.run() == engine::RunStatus::Completed);
    Outcome o;
    o.faults = m.faults;
    o.accesses = naive_accesses + st[0].accesses + st[1].accesses;
    o.end = sim.now();
    return o;
}
}  // namespace

TEST_CASE("a hitting vCPU never runs past another's possible fault by more than the lookahead",
          "[workload][guest]") {
    // No other event bounds the run-ahead here: only the lookahead keeps vCPU 0 from running
    // past the time vCPU 1 maps page 777.
    // Over several seeds either vCPU is the first to touch the page.
    std::set<std::int32_t> first_toucher;
    for (std::uint64_t seed = 1; seed <= 8; ++seed) {
        const Outcome naive = run_premapped(false, seed);
        const Outcome batched = run_premapped(true, seed);
        REQUIRE(!naive.faults.empty());
        first_toucher.insert(std::get<1>(naive.faults[0]));
        CHECK(batched.faults == naive.faults);
        CHECK(batched.end == naive.end);
    }
    CHECK(first_toucher.size() == 2);
}

namespace {
// The executor tests' VM: two vCPUs over one 64-page memslot, on 4 host CPUs.
struct SmallVm {
    vm::VmConfig vm;
    vm::HostConfig host;
    SmallVm() {
        vm.vcpus = 2;
        vm::Memslot slot;
        slot.npages = 64;
        vm.memslots.push_back(slot);
        host.cpus = 4;
    }
};
}  // namespace

// Regression: the vCPUs of a host step may finish before the operation does; the step must still
// complete (the "stage done" signal has fired before the VMM waits for it).
TEST_CASE("a host step that outlasts its vCPU streams completes", "[workload][executor]") {
    engine::Simulator sim(1);
    struct SlowEnable : ToyModel {
        using ToyModel::ToyModel;
        Task<void> dirty_log_enable(const vm::CpuContext&, std::uint32_t, vm::DirtyLogOptions) override {
            co_await sim.delay(100_us);
        }
    };
    SlowEnable m(sim, 64, 10_ns, 10_ns);
    const SmallVm v;
    AccessStream a;
    a.npages = 8;
    a.guest_time = 10_ns;
    workload::Workload w;
    workload::Step enable;
    enable.kind = workload::Step::Kind::Host;
    enable.name = "enable";
    enable.host.op = vm::Operation::DirtyLogEnable;
    enable.host.slots = {0};
    enable.streams = {a, a};
    w.steps.push_back(enable);
    workload::Step after;
    after.name = "after";
    after.streams = {a, a};
    w.steps.push_back(after);
    workload::Executor ex(sim, m, v.vm, v.host, w);
    ex.start();
    CHECK(sim.run() == engine::RunStatus::Completed);
    REQUIRE(ex.phases().size() == 2);
    CHECK(ex.phases()[0].duration == 100_us);
    CHECK(ex.accesses() == 4 * 8);
}

// A host step with count and interval runs its operation that many times, `interval` apart from
// the step's start, on each vCPU named; the step lasts until the last run completes.
TEST_CASE("a host step's storm: count runs, interval apart, on every vCPU named", "[workload][executor]") {
    engine::Simulator sim(1);
    struct Switcher : ToyModel {
        using ToyModel::ToyModel;
        std::vector<std::pair<std::int32_t, Time>> calls;
        Task<void> nested_eptp_switch(const vm::CpuContext& cpu, const std::vector<vm::Gfn>& eptps) override {
            CHECK(eptps == std::vector<vm::Gfn>{1, 2});
            calls.emplace_back(cpu.vcpu, sim.now());
            co_await sim.delay(3_us);
        }
    };
    Switcher m(sim, 64, 10_ns, 10_ns);
    const SmallVm v;
    workload::Workload w;
    workload::Step storm;
    storm.kind = workload::Step::Kind::Host;
    storm.name = "storm";
    storm.host.op = vm::Operation::NestedEptpSwitch;
    storm.host.vcpus = {0, 1};
    storm.host.eptps = {1, 2};
    storm.repeat.count = 3;
    storm.repeat.interval = 10_us;
    w.steps.push_back(storm);
    workload::Executor ex(sim, m, v.vm, v.host, w);
    ex.start();
    CHECK(sim.run() == engine::RunStatus::Completed);
    REQUIRE(m.calls.size() == 6);
    for (std::size_t k = 0; k < 3; ++k) {
        CHECK(m.calls[2 * k].second == 10_us * static_cast<std::int64_t>(k));
        CHECK(m.calls[2 * k + 1].second == 10_us * static_cast<std::int64_t>(k));
    }
    REQUIRE(ex.phases().size() == 1);
    CHECK(ex.phases()[0].duration == 23_us);
}

namespace {
// Faults of a known latency, (gfn + 1) us, taken three ways: even frames at once
// (page_fault_now), odd frames by the coroutine (page_fault, through page_fault_at's default).
// While `held`, hits() fails and page_fault waits 50 us for the hold to end (a held stream).
struct LatencyModel : vm::MmuModel {
    engine::Simulator& sim;
    std::vector<std::uint8_t> mapped;
    bool held = false;
    LatencyModel(engine::Simulator& s, std::size_t pages) : sim(s), mapped(pages, 0) {}
    static Time latency(vm::Gfn g) { return Time::us(static_cast<std::int64_t>(g) + 1); }
    bool hits(std::uint32_t, vm::Gfn g, vm::Access) const override { return !held && mapped[g]; }
    bool stream_held(std::uint32_t) const override { return held; }
    std::optional<Time> page_fault_now(const vm::CpuContext&, vm::Gfn g, vm::Access, Time start) override {
        if (held || g % 2) return std::nullopt;
        mapped[g] = 1;
        return start + latency(g);
    }
    Task<void> page_fault(const vm::CpuContext&, vm::Gfn g, vm::Access) override {
        if (held) {
            co_await sim.delay(Time::us(50));
            held = false;
            co_return;
        }
        co_await sim.delay(latency(g) - Time::ps(1));
        mapped[g] = 1;
        co_await sim.delay(Time::ps(1));
    }
};

Task<void> two_phases(engine::Simulator& sim, workload::GuestScheduler& g, const vm::CpuContext& cpu,
                      workload::VcpuStats& st) {
    AccessStream s;
    s.npages = 10;
    s.guest_time = Time::ns(3);
    s.count = 6;  // frames 0..5, then 6..9 in the next phase
    sim.begin_phase("first");
    co_await g.run(cpu, s, st);
    sim.begin_phase("second");
    s.base = 6;
    s.npages = 4;
    s.count = 0;
    co_await g.run(cpu, s, st);
}
}  // namespace

TEST_CASE("fault latency: every fault from its exit to the return to the guest, by phase", "[workload][guest]") {
    engine::Simulator sim(1);
    LatencyModel m(sim, 10);
    m.held = true;  // the first access waits for a hold: not a fault
    const vm::CpuContext cpu{"vcpu0", 0, 0};
    workload::GuestScheduler g(sim, m);
    workload::VcpuStats st;
    sim.spawn("vcpu0", two_phases(sim, g, cpu, st));
    REQUIRE(sim.run() == engine::RunStatus::Completed);
    CHECK(st.faults == 11);  // the held entry is an exit to the model too
    CHECK(g.fault_latency_phases() == 3);
    CHECK(g.fault_latency(0).count() == 0);
    // Phase 1: frames 0..5, 1..6 us (the 50 us hold left out).
    const auto& first = g.fault_latency(1);
    CHECK(first.count() == 6);
    CHECK(first.sum() == 21'000'000);
    CHECK(first.min() == 1'000'000);
    CHECK(first.max() == 6'000'000);
    // Phase 2: frames 6..9, 7..10 us.
    const auto& second = g.fault_latency(2);
    CHECK(second.count() == 4);
    CHECK(second.sum() == 34'000'000);
    CHECK(second.min() == 7'000'000);
    CHECK(second.max() == 10'000'000);
    CHECK(g.fault_latency(7).count() == 0);  // a phase without faults
    // The run: 50 us held, 55 us in faults, 10 accesses of 3 ns.
    CHECK(sim.now() == Time::us(105) + Time::ns(30));
}

TEST_CASE("nx_huge_pages_perf_test expands to per-1G stages, write+execute then timed writes", "[workload][presets]") {
    const auto e = workload::expand_preset("nx_huge_pages_perf_test", {"-b", "3G", "-s", "anonymous_hugetlb_2mb"}, 10_ns);
    REQUIRE(e.vm.memslots.size() == 1);
    CHECK(e.vm.vcpus == 1);
    CHECK(e.vm.memslots[0].npages == 3 * 262144);
    CHECK(e.vm.memslots[0].populate);  // MAP_POPULATE
    CHECK(e.workload.preset == "nx_huge_pages_perf_test");
    REQUIRE(e.workload.steps.size() == 3);
    CHECK(e.workload.steps[0].name == "execute region 0");
    CHECK(e.workload.steps[1].name == "write region 1");
    CHECK(e.workload.steps[2].name == "execute region 2");
    CHECK(e.workload.steps[0].streams[0].pattern == AccessStream::Pattern::WriteExec);
    CHECK(e.workload.steps[1].streams[0].pattern == AccessStream::Pattern::Sequential);
    CHECK(e.workload.steps[1].streams[0].access == vm::Access::Write);
    CHECK(e.workload.steps[1].streams[0].base == e.vm.memslots[0].base_gfn + 262144);
    CHECK(e.workload.steps[2].streams[0].total() == 2 * 262144);
    // Each page written, then executed.
    workload::StreamCursor c(e.workload.steps[0].streams[0], engine::RandomStream(1, "t"));
    const vm::Gfn b = e.vm.memslots[0].base_gfn;
    std::vector<std::pair<vm::Gfn, vm::Access>> seen;
    for (int i = 0; i < 4; ++i, c.advance()) seen.emplace_back(c.gfn(), c.access());
    CHECK(seen == std::vector<std::pair<vm::Gfn, vm::Access>>{
                      {b, vm::Access::Write}, {b, vm::Access::Exec}, {b + 1, vm::Access::Write}, {b + 1, vm::Access::Exec}});
    // -v: each vCPU its own -b, in lockstep.
    const auto v2 = workload::expand_preset("nx_huge_pages_perf_test", {"-v", "2"}, 10_ns);
    CHECK(v2.vm.vcpus == 2);
    CHECK(v2.vm.memslots[0].npages == 2 * 2 * 262144);  // default 2G each
    REQUIRE(v2.workload.steps.size() == 2);
    CHECK(v2.workload.steps[0].streams[1].base == v2.vm.memslots[0].base_gfn + 2 * 262144);
    // "Must use more than 1GiB of memory."
    try {
        workload::expand_preset("nx_huge_pages_perf_test", {"-b", "1G"}, 10_ns);
        FAIL("expected a PresetError");
    } catch (const workload::PresetError& err) {
        CHECK(err.arg == 1);
    }
}

TEST_CASE("an explicit stream replays its accesses with their own guest times", "[workload][guest][trace]") {
    engine::Simulator sim(1);
    // A fault costs 1us + 500ns: each access that misses returns 1.5us after it is made.
    ToyModel m(sim, 64, Time::us(1), Time::ns(500));
    const vm::CpuContext cpu{"vcpu0", 0, 0};
    workload::GuestScheduler g(sim, m);
    workload::VcpuStats st;
    AccessStream s;
    s.pattern = AccessStream::Pattern::Explicit;
    s.start_delay = Time::ns(300);
    s.accesses = std::make_shared<const std::vector<workload::ExplicitAccess>>(std::vector<workload::ExplicitAccess>{
        {5, vm::Access::Read, Time::ns(2000)},
        {5, vm::Access::Write, Time::ns(100)},   // a protection fault on the page just read
        {5, vm::Access::Read, Time::ns(40)},     // a hit: costs only its gap
        {9, vm::Access::Exec, Time::ns(700)}});
    s.npages = s.accesses->size();
    CHECK(s.total() == 4);
    sim.spawn("vcpu0", sched_vcpu(g, cpu, s, st));
    REQUIRE(sim.run() == engine::RunStatus::Completed);
    // 300ns delay; fault (gfn 5, at 300ns) -> back at 1.8us, hit, +2000ns; fault (write, at
    // 3.8us) -> back at 5.3us, hit, +100ns; hit +40ns; fault (gfn 9 at 5.44us) -> 6.94us, +700ns.
    using F = std::tuple<std::int64_t, std::int32_t, vm::Gfn>;
    CHECK(m.faults == std::vector<F>{F{1'300'000, 0, 5}, F{4'800'000, 0, 5}, F{6'440'000, 0, 9}});
    CHECK(sim.now() == Time::ns(7640));
    CHECK(st.faults == 3);
    CHECK(st.accesses == 4);
    CHECK(g.fault_latency(0).count() == 3);
    CHECK(g.fault_latency(0).max() == static_cast<std::uint64_t>(Time::ns(1500).ps()));
}
