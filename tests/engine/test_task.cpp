#include <catch2/catch.hpp>
#include <stdexcept>

#include "sim/engine/simulator.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {
Task<int> handler(Simulator& sim, int x) {
    co_await sim.delay(5_ns);
    co_return x * 2;
}

Task<int> depth(Simulator& sim, int n) {
    if (n == 0) {
        co_await sim.delay(1_ns);
        co_return 0;
    }
    co_return 1 + co_await depth(sim, n - 1);
}

Task<void> caller(Simulator& sim, int& out, Process*& seen) {
    const int a = co_await handler(sim, 21);
    seen = sim.current();
    out = a + co_await depth(sim, 10000);
}

Task<void> thrower(Simulator& sim) {
    co_await sim.delay(1_ns);
    throw std::runtime_error("model bug");
}

Task<void> catches(Simulator& sim, bool& caught) {
    try {
        co_await thrower(sim);
    } catch (const std::runtime_error& e) {
        caught = std::string(e.what()) == "model bug";
    }
}

Task<void> fails(Simulator& sim) { co_await thrower(sim); }
}  // namespace

TEST_CASE("nested tasks return values and run in the caller's process", "[task]") {
    Simulator sim;
    int out = 0;
    Process* seen = nullptr;
    Process& p = sim.spawn("vcpu0", caller(sim, out, seen));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(out == 42 + 10000);  // 10000 nested awaits: symmetric transfer keeps the stack flat
    CHECK(seen == &p);
    CHECK(p.done());
    CHECK(sim.now() == 6_ns);
}

TEST_CASE("exceptions propagate to the awaiting task", "[task]") {
    Simulator sim;
    bool caught = false;
    sim.spawn("p", catches(sim, caught));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(caught);
}

TEST_CASE("an exception escaping a process ends the run", "[task]") {
    Simulator sim;
    sim.spawn("p", fails(sim));
    CHECK_THROWS_WITH(sim.run(), "model bug");
}

TEST_CASE("destroying a simulator with suspended processes frees them", "[task]") {
    // Under the address sanitizer a leaked frame fails this test.
    auto sim = std::make_unique<Simulator>();
    int out = 0;
    Process* seen = nullptr;
    sim->spawn("p", caller(*sim, out, seen));
    CHECK(sim->run(2_ns) == RunStatus::TimeLimit);
    sim.reset();
    CHECK(out == 0);
}
