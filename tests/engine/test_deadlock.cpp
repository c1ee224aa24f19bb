#include <catch2/catch.hpp>
#include <string>

#include "sim/engine/sync.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {
Task<void> take_two(Simulator& sim, LockBase& first_name_only, SpinLock& first, SpinLock& second) {
    (void)first_name_only;
    auto a = co_await first.lock(sim.site("outer"));
    co_await sim.delay(1_ns);
    auto b = co_await second.lock(sim.site("inner"));
}

Task<void> wait_forever(Signal& s) { co_await s.wait(); }
}  // namespace

TEST_CASE("a two-process lock cycle is reported with both names", "[deadlock]") {
    Simulator sim;
    SpinLock mmu(sim, "mmu_lock"), slots(sim, "slots_lock");
    sim.spawn("vcpu0", take_two(sim, mmu, mmu, slots));
    sim.spawn("ioctl", take_two(sim, slots, slots, mmu));
    CHECK(sim.run() == RunStatus::Deadlock);
    const DeadlockReport* r = sim.deadlock();
    REQUIRE(r);
    REQUIRE(r->cycle.size() == 2);
    CHECK(((r->cycle[0] == "vcpu0" && r->cycle[1] == "ioctl") || (r->cycle[0] == "ioctl" && r->cycle[1] == "vcpu0")));
    REQUIRE(r->blocked.size() == 2);
    CHECK(r->blocked[0].process == "vcpu0");
    CHECK(r->blocked[0].waits_for == "slots_lock");
    REQUIRE(r->blocked[0].held_by.size() == 1);
    CHECK(r->blocked[0].held_by[0].first == "ioctl");
    CHECK(r->blocked[1].waits_for == "mmu_lock");
    CHECK_THAT(r->text, Catch::Contains("vcpu0") && Catch::Contains("ioctl") && Catch::Contains("wait-for cycle"));
    CHECK(sim.now() == 1_ns);
}

TEST_CASE("a process blocked on a signal nobody sends is reported without a cycle", "[deadlock]") {
    Simulator sim;
    Signal never(sim, "never");
    sim.spawn("orphan", wait_forever(never));
    CHECK(sim.run() == RunStatus::Deadlock);
    const DeadlockReport* r = sim.deadlock();
    REQUIRE(r);
    CHECK(r->cycle.empty());
    REQUIRE(r->blocked.size() == 1);
    CHECK(r->blocked[0].waits_for == "never");
    CHECK_THAT(r->text, Catch::Contains("orphan waits for never") && Catch::Contains("nothing will release"));
}

TEST_CASE("a completed run has no deadlock report", "[deadlock]") {
    Simulator sim;
    SpinLock a(sim, "a"), b(sim, "b");
    sim.spawn("only", take_two(sim, a, a, b));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(sim.deadlock() == nullptr);
}
