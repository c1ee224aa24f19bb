#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sim/engine/sync.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {
struct Trace {
    // (time in ns, process, what)
    std::vector<std::tuple<double, std::string, std::string>> log;
    void add(Simulator& sim, const std::string& who, const std::string& what) {
        log.emplace_back(sim.now().to_ns(), who, what);
    }
    double when(const std::string& who, const std::string& what) const {
        for (const auto& [t, w, x] : log)
            if (w == who && x == what) return t;
        return -1;
    }
};

// Arrives at `start`, takes the lock in `mode`, holds it for `hold`.
Task<void> locker(Simulator& sim, RwLock& lock, Trace& tr, std::string name, LockMode mode, Time start,
                  Time hold, Site site) {
    co_await sim.delay(start);
    auto g = co_await (mode == LockMode::Read ? lock.read(site) : lock.write(site));
    tr.add(sim, name, "acquired");
    co_await sim.delay(hold);
    g.unlock();
    tr.add(sim, name, "released");
}

std::optional<LockRecord> find(const Simulator& sim, const std::string& lock, LockMode mode, const std::string& site) {
    for (const auto& r : sim.lock_stats().totals())
        if (sim.lock_stats().lock_name(r.lock) == lock && r.mode == mode && sim.lock_stats().site_name(r.site) == site)
            return r;
    return std::nullopt;
}
}  // namespace

TEST_CASE("readers share, a writer excludes them, and a waiting writer blocks new readers", "[sync]") {
    Simulator sim;
    RwLock lock(sim, "mmu_lock");
    Trace tr;
    const Site fault = sim.site("kvm_tdp_mmu_page_fault"), zap = sim.site("kvm_zap_gfn_range");
    sim.spawn("r1", locker(sim, lock, tr, "r1", LockMode::Read, 0_ns, 10_ns, fault));
    sim.spawn("r2", locker(sim, lock, tr, "r2", LockMode::Read, 2_ns, 4_ns, fault));
    sim.spawn("w", locker(sim, lock, tr, "w", LockMode::Write, 3_ns, 5_ns, zap));
    sim.spawn("r3", locker(sim, lock, tr, "r3", LockMode::Read, 4_ns, 1_ns, fault));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(tr.when("r1", "acquired") == 0);
    CHECK(tr.when("r2", "acquired") == 2);  // shares with r1
    CHECK(tr.when("w", "acquired") == 10);  // waits for both readers
    CHECK(tr.when("r3", "acquired") == 15); // queued behind the waiting writer
    CHECK(tr.when("r3", "released") == 16);

    const auto rd = find(sim, "mmu_lock", LockMode::Read, "kvm_tdp_mmu_page_fault");
    const auto wr = find(sim, "mmu_lock", LockMode::Write, "kvm_zap_gfn_range");
    REQUIRE(rd);
    REQUIRE(wr);
    CHECK(rd->acquisitions == 3);
    CHECK(rd->contended == 1);
    CHECK(rd->wait_ps.count() == 1);
    CHECK(rd->wait_ps.sum() == (11_ns).ps());  // r3: 4ns -> 15ns
    CHECK(rd->hold_ps.sum() == (10_ns + 4_ns + 1_ns).ps());
    CHECK(rd->hold_ps.max() == (10_ns).ps());
    CHECK(wr->acquisitions == 1);
    CHECK(wr->contended == 1);
    CHECK(wr->wait_ps.max() == (7_ns).ps());
    CHECK(wr->hold_ps.sum() == (5_ns).ps());
}

TEST_CASE("waiters are served FIFO and readers at the head are granted together", "[sync]") {
    Simulator sim;
    RwLock lock(sim, "mmu_lock");
    Trace tr;
    const Site s = sim.site("site");
    sim.spawn("w0", locker(sim, lock, tr, "w0", LockMode::Write, 0_ns, 10_ns, s));
    sim.spawn("r1", locker(sim, lock, tr, "r1", LockMode::Read, 1_ns, 3_ns, s));
    sim.spawn("r2", locker(sim, lock, tr, "r2", LockMode::Read, 2_ns, 5_ns, s));
    sim.spawn("w1", locker(sim, lock, tr, "w1", LockMode::Write, 3_ns, 2_ns, s));
    sim.spawn("r3", locker(sim, lock, tr, "r3", LockMode::Read, 4_ns, 1_ns, s));
    sim.spawn("w2", locker(sim, lock, tr, "w2", LockMode::Write, 5_ns, 1_ns, s));
    sim.run();
    CHECK(tr.when("r1", "acquired") == 10);
    CHECK(tr.when("r2", "acquired") == 10);
    CHECK(tr.when("w1", "acquired") == 15);  // after r2, the longer reader
    CHECK(tr.when("r3", "acquired") == 17);
    CHECK(tr.when("w2", "acquired") == 18);
}

namespace {
Task<void> watcher(Simulator& sim, RwLock& lock, std::vector<std::pair<double, bool>>& seen) {
    for (int i = 0; i < 6; ++i) {
        seen.emplace_back(sim.now().to_ns(), lock.needbreak());
        co_await sim.delay(2_ns);
    }
}
}  // namespace

TEST_CASE("needbreak is true exactly while someone waits", "[sync]") {
    Simulator sim;
    RwLock lock(sim, "mmu_lock");
    Trace tr;
    const Site s = sim.site("site");
    std::vector<std::pair<double, bool>> seen;
    sim.spawn("holder", locker(sim, lock, tr, "holder", LockMode::Write, 0_ns, 5_ns, s));
    sim.spawn("waiter", locker(sim, lock, tr, "waiter", LockMode::Read, 1_ns, 2_ns, s));
    sim.spawn("watch", watcher(sim, lock, seen));
    sim.run();
    // Samples at 0, 2, 4, 6, 8, 10 ns: the reader waits from 1ns to 5ns.
    REQUIRE(seen.size() == 6);
    CHECK_FALSE(seen[0].second);
    CHECK(seen[1].second);
    CHECK(seen[2].second);
    CHECK_FALSE(seen[3].second);
    CHECK_FALSE(seen[5].second);
}

namespace {
Task<void> spinner(Simulator& sim, SpinLock& lock, Trace& tr, std::string name, Time start, Time hold) {
    co_await sim.delay(start);
    auto g = co_await lock.lock(sim.site("spin_site"));
    tr.add(sim, name, "acquired");
    co_await sim.delay(hold);
}

Task<void> sleeper_mutex(Simulator& sim, Mutex& m, Trace& tr, std::string name, Time start, Time hold) {
    co_await sim.delay(start);
    auto g = co_await m.lock(sim.site("slots_lock_site"));
    tr.add(sim, name, "acquired");
    co_await sim.delay(hold);
}
}  // namespace

TEST_CASE("a spinlock hands over in ticket order", "[sync]") {
    Simulator sim;
    SpinLock lock(sim, "spin");
    Trace tr;
    for (int i = 0; i < 5; ++i)
        sim.spawn("t" + std::to_string(i), spinner(sim, lock, tr, "t" + std::to_string(i), Time::ns(i), 10_ns));
    sim.run();
    for (int i = 0; i < 5; ++i) CHECK(tr.when("t" + std::to_string(i), "acquired") == 10.0 * i);
    const auto r = find(sim, "spin", LockMode::Exclusive, "spin_site");
    REQUIRE(r);
    CHECK(r->acquisitions == 5);
    CHECK(r->contended == 4);
    // Waits: 9, 18, 27, 36 ns.
    CHECK(r->wait_ps.sum() == (90_ns).ps());
    CHECK(r->wait_ps.min() == (9_ns).ps());
}

TEST_CASE("a mutex hands over after the wake latency; hold counts from the grant", "[sync]") {
    Simulator sim;
    Mutex m(sim, "slots_lock", 3_ns);
    Trace tr;
    sim.spawn("a", sleeper_mutex(sim, m, tr, "a", 0_ns, 10_ns));
    sim.spawn("b", sleeper_mutex(sim, m, tr, "b", 1_ns, 10_ns));
    sim.run();
    CHECK(tr.when("a", "acquired") == 0);
    CHECK(tr.when("b", "acquired") == 13);
    const auto r = find(sim, "slots_lock", LockMode::Exclusive, "slots_lock_site");
    REQUIRE(r);
    CHECK(r->hold_ps.sum() == (10_ns + 13_ns).ps());
    CHECK(r->wait_ps.sum() == (9_ns).ps());
}

namespace {
Task<void> try_once(Simulator& sim, RwLock& lock, Time start, bool& got) {
    co_await sim.delay(start);
    auto g = lock.try_lock(LockMode::Write, sim.site("try"));
    got = g.owns();
    co_await sim.delay(1_ns);
}
}  // namespace

TEST_CASE("try_lock succeeds only on a free lock", "[sync]") {
    Simulator sim;
    RwLock lock(sim, "l");
    Trace tr;
    bool early = true, late = false;
    sim.spawn("reader", locker(sim, lock, tr, "reader", LockMode::Read, 0_ns, 5_ns, sim.site("s")));
    sim.spawn("early", try_once(sim, lock, 1_ns, early));
    sim.spawn("late", try_once(sim, lock, 6_ns, late));
    sim.run();
    CHECK_FALSE(early);
    CHECK(late);
}

TEST_CASE("lock statistics are kept per phase", "[sync]") {
    Simulator sim;
    RwLock lock(sim, "mmu_lock");
    Trace tr;
    const Site s = sim.site("s");
    sim.spawn("a", locker(sim, lock, tr, "a", LockMode::Write, 0_ns, 1_ns, s));
    sim.run();
    sim.begin_phase("KVM_UPDATE_MAPPINGS");
    sim.spawn("b", locker(sim, lock, tr, "b", LockMode::Write, 0_ns, 2_ns, s));
    sim.spawn("c", locker(sim, lock, tr, "c", LockMode::Write, 0_ns, 2_ns, s));
    sim.run();
    std::uint64_t phase0 = 0, phase1 = 0;
    for (const auto& r : sim.lock_stats().records()) (r.phase == 0 ? phase0 : phase1) += r.acquisitions;
    CHECK(phase0 == 1);
    CHECK(phase1 == 2);
    CHECK(find(sim, "mmu_lock", LockMode::Write, "s")->acquisitions == 3);
    CHECK(sim.phases().back().name == "KVM_UPDATE_MAPPINGS");
}

namespace {
Task<void> arrive(Simulator& sim, Barrier& b, Trace& tr, std::string name, Time start) {
    for (int round = 0; round < 2; ++round) {
        co_await sim.delay(start);
        co_await b.arrive_and_wait();
        tr.add(sim, name, "passed" + std::to_string(round));
    }
}

Task<void> waiter(Simulator& sim, Signal& s, Trace& tr, std::string name) {
    co_await s.wait();
    tr.add(sim, name, "woke");
}

Task<void> notifier(Simulator& sim, Signal& s) {
    co_await sim.delay(5_ns);
    s.notify_one();
    co_await sim.delay(5_ns);
    s.notify_all();
    co_await sim.delay(5_ns);
    s.set();
}
}  // namespace

TEST_CASE("a barrier releases everyone when the last party arrives, and is reusable", "[sync]") {
    Simulator sim;
    Barrier b(sim, "stage", 3);
    Trace tr;
    sim.spawn("a", arrive(sim, b, tr, "a", 1_ns));
    sim.spawn("b", arrive(sim, b, tr, "b", 4_ns));
    sim.spawn("c", arrive(sim, b, tr, "c", 2_ns));
    CHECK(sim.run() == RunStatus::Completed);
    for (const char* n : {"a", "b", "c"}) {
        CHECK(tr.when(n, "passed0") == 4);
        CHECK(tr.when(n, "passed1") == 8);
    }
    CHECK(b.generation() == 2);
}

TEST_CASE("signals wake one, all, or pass while set", "[sync]") {
    Simulator sim;
    Signal s(sim, "done");
    Trace tr;
    sim.spawn("w1", waiter(sim, s, tr, "w1"));
    sim.spawn("w2", waiter(sim, s, tr, "w2"));
    sim.spawn("w3", waiter(sim, s, tr, "w3"));
    sim.spawn("n", notifier(sim, s));
    sim.run();
    CHECK(tr.when("w1", "woke") == 5);
    CHECK(tr.when("w2", "woke") == 10);
    CHECK(tr.when("w3", "woke") == 10);
    CHECK(s.is_set());
    Simulator sim2;
    Signal s2(sim2, "x");
    Trace tr2;
    s2.set();
    sim2.spawn("late", waiter(sim2, s2, tr2, "late"));
    sim2.run();
    CHECK(tr2.when("late", "woke") == 0);
}
