#include <catch2/catch.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "sim/engine/simulator.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {
struct Log {
    std::vector<std::pair<std::int64_t, std::string>> entries;
};

Task<void> sleeper(Simulator& sim, Log& log, std::string name, Time d) {
    co_await sim.delay(d);
    log.entries.emplace_back(sim.now().ps(), name);
}

struct Recorder : EventTarget {
    Log* log;
    std::string name;
    Recorder(Log* l, std::string n) : log(l), name(std::move(n)) {}
    void fire(Simulator& sim) override { log->entries.emplace_back(sim.now().ps(), name); }
};

Task<void> random_walker(Simulator& sim, std::uint32_t index, int steps) {
    auto rng = sim.stream("walker", index);
    for (int i = 0; i < steps; ++i) co_await sim.delay(Time::ps(static_cast<std::int64_t>(rng.uniform(1000))));
}

std::uint64_t walk_fingerprint(std::uint64_t seed) {
    Simulator sim(seed);
    for (std::uint32_t i = 0; i < 8; ++i) sim.spawn("w" + std::to_string(i), random_walker(sim, i, 50));
    REQUIRE(sim.run() == RunStatus::Completed);
    return sim.fingerprint();
}
}  // namespace

TEST_CASE("events run in time order", "[queue]") {
    Simulator sim;
    Log log;
    sim.spawn("c", sleeper(sim, log, "c", 30_ns));
    sim.spawn("a", sleeper(sim, log, "a", 10_ns));
    sim.spawn("b", sleeper(sim, log, "b", 20_ns));
    CHECK(sim.run() == RunStatus::Completed);
    REQUIRE(log.entries.size() == 3);
    CHECK(log.entries[0] == std::make_pair(std::int64_t{10'000}, std::string("a")));
    CHECK(log.entries[1] == std::make_pair(std::int64_t{20'000}, std::string("b")));
    CHECK(log.entries[2] == std::make_pair(std::int64_t{30'000}, std::string("c")));
    CHECK(sim.now() == 30_ns);
    // 3 starts + 3 wakeups.
    CHECK(sim.events_processed() == 6);
}

TEST_CASE("ties break by priority, then insertion order", "[queue]") {
    Simulator sim;
    Log log;
    Recorder first(&log, "first"), second(&log, "second"), urgent(&log, "urgent"), late(&log, "late");
    sim.schedule(5_ns, first);
    sim.schedule(5_ns, second);
    sim.schedule(5_ns, urgent, -1);
    sim.schedule(5_ns, late, 1);
    sim.run();
    REQUIRE(log.entries.size() == 4);
    CHECK(log.entries[0].second == "urgent");
    CHECK(log.entries[1].second == "first");
    CHECK(log.entries[2].second == "second");
    CHECK(log.entries[3].second == "late");
}

namespace {
// At t=10ns: `waker` schedules a zero delay (FIFO path) while `other`'s wakeup at 10ns was
// inserted earlier into the heap; insertion order must still win over the fast path.
Task<void> zero_delay_after(Simulator& sim, Log& log) {
    co_await sim.delay(10_ns);
    log.entries.emplace_back(sim.now().ps(), "waker");
    co_await sim.delay(Time::zero());
    log.entries.emplace_back(sim.now().ps(), "waker-again");
}
}  // namespace

TEST_CASE("the current-time fast path keeps insertion order against the heap", "[queue]") {
    Simulator sim;
    Log log;
    sim.spawn("waker", zero_delay_after(sim, log));
    sim.spawn("other", sleeper(sim, log, "other", 10_ns));
    sim.run();
    REQUIRE(log.entries.size() == 3);
    CHECK(log.entries[0].second == "waker");
    CHECK(log.entries[1].second == "other");
    CHECK(log.entries[2].second == "waker-again");
    CHECK(log.entries[2].first == 10'000);
}

TEST_CASE("cancelled and rescheduled events do not fire nor count", "[queue]") {
    Simulator sim;
    Log log;
    Recorder a(&log, "a"), b(&log, "b");
    sim.schedule(5_ns, a);
    sim.schedule(6_ns, b);
    CHECK(a.pending());
    sim.cancel(a);
    CHECK_FALSE(a.pending());
    sim.schedule(9_ns, b);  // replaces the 6ns one
    sim.run();
    REQUIRE(log.entries.size() == 1);
    CHECK(log.entries[0] == std::make_pair(std::int64_t{9'000}, std::string("b")));
    CHECK(sim.events_processed() == 1);
}

TEST_CASE("run(until) stops before later events and can resume", "[queue]") {
    Simulator sim;
    Log log;
    sim.spawn("a", sleeper(sim, log, "a", 10_ns));
    sim.spawn("b", sleeper(sim, log, "b", 50_ns));
    CHECK(sim.run(20_ns) == RunStatus::TimeLimit);
    CHECK(sim.now() == 20_ns);
    CHECK(log.entries.size() == 1);
    CHECK(sim.next_event_time() == 50_ns);
    CHECK(sim.pending_events() == 1);
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(log.entries.size() == 2);
    CHECK(sim.next_event_time() == Time::max());
}

namespace {
struct Stopper : EventTarget {
    void fire(Simulator& sim) override { sim.stop(); }
};
}  // namespace

TEST_CASE("stop() ends the run after the current event", "[queue]") {
    Simulator sim;
    Log log;
    Stopper stop;
    sim.schedule(15_ns, stop);
    sim.spawn("a", sleeper(sim, log, "a", 10_ns));
    sim.spawn("b", sleeper(sim, log, "b", 20_ns));
    CHECK(sim.run() == RunStatus::Stopped);
    CHECK(sim.now() == 15_ns);
    CHECK(log.entries.size() == 1);
}

TEST_CASE("same seed gives the same fingerprint, another seed another", "[queue][determinism]") {
    const auto a = walk_fingerprint(1);
    CHECK(walk_fingerprint(1) == a);
    CHECK(walk_fingerprint(2) != a);
}

TEST_CASE("the fingerprint covers time, process and kind", "[queue][determinism]") {
    auto fp = [](Time d1, Time d2) {
        Simulator sim;
        Log log;
        sim.spawn("x", sleeper(sim, log, "x", d1));
        sim.spawn("y", sleeper(sim, log, "y", d2));
        sim.run();
        return sim.fingerprint();
    };
    const auto base = fp(1_ns, 2_ns);
    CHECK(fp(1_ns, 2_ns) == base);
    CHECK(fp(1_ns, 3_ns) != base);  // another time
    CHECK(fp(2_ns, 1_ns) != base);  // same times, other process order
}

namespace {
struct Kept : EventLog {
    std::vector<std::tuple<std::int64_t, std::uint32_t, int>> events;
    void logged(const LoggedEvent& e) override { events.emplace_back(e.time_ps, e.who, e.kind); }
};
struct Idle : EventTarget {
    void fire(Simulator&) override {}
};

// a: 10 ns, then 5 more (before b's wakeup at 25: next anyway), then 10 more (to 25, where b's
// earlier-scheduled wakeup must go first).
Task<void> stepper(Simulator& sim, Log& log) {
    co_await sim.delay(10_ns);
    co_await sim.delay(5_ns);
    log.entries.emplace_back(sim.now().ps(), "a15");
    co_await sim.delay(10_ns);
    log.entries.emplace_back(sim.now().ps(), "a25");
}
}  // namespace

TEST_CASE("a wakeup due before every other event runs at once, as if dispatched", "[queue][determinism]") {
    // Run 2 keeps a cancelled event at 12 ns: it never fires nor counts, but it stands before a's
    // second wakeup, which must then be queued. Both runs must be the same event for event.
    auto go = [](bool blocker, Kept& kept, Log& log) {
        Simulator sim;
        sim.set_event_log(&kept);
        Idle idle;
        if (blocker) {
            sim.schedule(12_ns, idle);
            sim.cancel(idle);
        }
        sim.spawn("a", stepper(sim, log));
        sim.spawn("b", sleeper(sim, log, "b", 25_ns));
        REQUIRE(sim.run() == RunStatus::Completed);
        return std::tuple{sim.fingerprint(), sim.events_processed(), sim.events_inline()};
    };
    Kept k1, k2;
    Log l1, l2;
    const auto [fp1, n1, inl1] = go(false, k1, l1);
    const auto [fp2, n2, inl2] = go(true, k2, l2);
    CHECK(inl1 == 1);
    CHECK(inl2 == 0);
    CHECK(fp1 == fp2);
    CHECK(n1 == n2);
    CHECK(n1 == 6);
    CHECK(k1.events == k2.events);
    CHECK(l1.entries == l2.entries);
    // b's wakeup at 25 ns was scheduled first, so it runs before a's.
    const std::vector<std::pair<std::int64_t, std::string>> want = {
        {15'000, "a15"}, {25'000, "b"}, {25'000, "a25"}};
    CHECK(l1.entries == want);
}

namespace {
Task<void> stop_then_sleep(Simulator& sim, Log& log) {
    co_await sim.delay(1_ns);
    sim.stop();
    co_await sim.delay(1_ns);
    log.entries.emplace_back(sim.now().ps(), "after stop");
}
Task<void> back_in_time(Simulator& sim) {
    co_await sim.delay(10_ns);
    co_await sim.delay(Time::ps(-1));
}
Task<void> two_sleeps(Simulator& sim, Log& log) {
    co_await sim.delay(10_ns);
    co_await sim.delay(30_ns);
    log.entries.emplace_back(sim.now().ps(), "40");
}
}  // namespace

TEST_CASE("a wakeup past the run's limit, or after stop(), is not taken at once", "[queue]") {
    {
        // Nothing else pending: only the time says no, and the queue reports it.
        Simulator sim;
        sim.spawn("a", back_in_time(sim));
        CHECK_THROWS_WITH(sim.run(), Catch::Contains("scheduled in the past"));
        CHECK(sim.now() == 10_ns);
    }
    {
        Simulator sim;
        Log log;
        sim.spawn("a", two_sleeps(sim, log));
        CHECK(sim.run(20_ns) == RunStatus::TimeLimit);
        CHECK(sim.now() == 20_ns);
        CHECK(log.entries.empty());
        CHECK(sim.run() == RunStatus::Completed);
        CHECK(log.entries.size() == 1);
    }
    {
        Simulator sim;
        Log log;
        sim.spawn("a", stop_then_sleep(sim, log));
        CHECK(sim.run() == RunStatus::Stopped);
        CHECK(sim.now() == 1_ns);
        CHECK(log.entries.empty());
    }
}

namespace {
Task<void> one_step(Simulator& sim) { co_await sim.delay(1_ns); }
Task<void> many_steps(Simulator& sim, int n) {
    for (int i = 0; i < n; ++i) co_await one_step(sim);
}
}  // namespace

TEST_CASE("a process that never has to suspend still unwinds its stack now and then", "[queue]") {
    // Alone, every wakeup is next anyway. Each nested task's completion resumes its parent on
    // the stack (no tail call in a debug build): without the periodic queued wakeup this run
    // overflows the stack under the sanitizer build.
    Simulator sim;
    constexpr int kSteps = 300000;
    sim.spawn("a", many_steps(sim, kSteps));
    REQUIRE(sim.run() == RunStatus::Completed);
    CHECK(sim.now() == Time::ns(kSteps));
    CHECK(sim.events_processed() == kSteps + 1);
    CHECK(sim.events_inline() > sim.events_processed() * 9 / 10);
    CHECK(sim.events_inline() < sim.events_processed());
}
