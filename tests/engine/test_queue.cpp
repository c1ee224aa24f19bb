#include <catch2/catch.hpp>
#include <string>
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
