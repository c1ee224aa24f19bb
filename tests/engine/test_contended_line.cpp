#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sim/engine/contended_line.hpp"
#include "tests/engine/two_sockets.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {
using kvmsim::test::two_sockets;

std::optional<LineRecord> total(const Simulator& sim, const std::string& name) {
    for (const auto& r : sim.line_stats().totals())
        if (sim.line_stats().name(r.line_class) == name) return r;
    return std::nullopt;
}
}  // namespace

TEST_CASE("topology: sockets and line transfer costs", "[topology]") {
    const Topology t = two_sockets();
    CHECK(t.cpus() == 8);
    CHECK(t.socket_of(0) == 0);
    CHECK(t.socket_of(3) == 0);
    CHECK(t.socket_of(4) == 1);
    CHECK(t.socket_of(7) == 1);
    CHECK(t.socket_of(8) == 0);  // wraps
    CHECK(t.line_transfer(2, 2) == 10_ns);
    CHECK(t.line_transfer(0, 3) == 60_ns);
    CHECK(t.line_transfer(3, 4) == 130_ns);
    CHECK(t.line_transfer(Topology::kNoCpu, 5) == 60_ns);
    const Topology one;  // the default: one socket, one CPU, free
    CHECK(one.socket_of(17) == 0);
    CHECK(one.line_transfer(0, 1) == 0_ns);
}

TEST_CASE("contended line: CPUs hitting one line at the same instant serialize at the transfer latency",
          "[contended_line]") {
    Simulator sim;
    LineClass refcount(sim, two_sockets(), "struct_page_refcount");
    LineState page;
    // Four CPUs of socket 0 at 100 ns: the untouched line costs a same-socket transfer first.
    CHECK(refcount.rmw(page, 0, 100_ns) == 160_ns);
    CHECK(refcount.rmw(page, 1, 100_ns) == 220_ns);
    CHECK(refcount.rmw(page, 2, 100_ns) == 280_ns);
    CHECK(refcount.rmw(page, 3, 100_ns) == 340_ns);
    CHECK(page.owner == 3);
    CHECK(page.free_at == 340_ns);
    const auto r = total(sim, "struct_page_refcount");
    REQUIRE(r);
    CHECK(r->operations == 4);
    CHECK(r->contended == 3);
    CHECK(r->wait_ps.count() == 3);
    CHECK(r->wait_ps.sum() == (60_ns + 120_ns + 180_ns).ps());
    CHECK(r->wait_ps.min() == (60_ns).ps());
    CHECK(r->wait_ps.max() == (180_ns).ps());
}

TEST_CASE("contended line: same-socket and cross-socket transfers, a local re-access is cheap", "[contended_line]") {
    Simulator sim;
    ContendedLine lock(sim, two_sockets(), "mmap_lock");
    CHECK(lock.rmw(1, 0_ns) == 60_ns);       // untouched
    CHECK(lock.rmw(1, 100_ns) == 110_ns);    // owned by this CPU: local
    CHECK(lock.rmw(2, 200_ns) == 260_ns);    // from CPU 1, same socket
    CHECK(lock.rmw(6, 300_ns) == 430_ns);    // from CPU 2, across sockets
    CHECK(lock.rmw(5, 1000_ns) == 1060_ns);  // from CPU 6, same socket (1)
    CHECK(lock.rmw(0, 2000_ns) == 2130_ns);  // back across
    CHECK(lock.state().owner == 0);
    const auto r = total(sim, "mmap_lock");
    REQUIRE(r);
    CHECK(r->operations == 6);
    CHECK(r->contended == 0);
    CHECK(r->wait_ps.count() == 0);
}

TEST_CASE("contended line: a load then an atomic is two transfers from another CPU, one otherwise",
          "[contended_line]") {
    Simulator sim;
    LineClass c(sim, two_sockets(), "struct_page_refcount");
    LineState page;
    CHECK(c.load_rmw(page, 1, 0_ns) == 60_ns);       // untouched: one fetch, then exclusive already
    CHECK(c.load_rmw(page, 1, 100_ns) == 110_ns);    // owned by this CPU: local
    CHECK(c.load_rmw(page, 2, 200_ns) == 320_ns);    // from CPU 1, same socket: shared fetch + upgrade
    CHECK(c.load_rmw(page, 6, 400_ns) == 660_ns);    // from CPU 2, across sockets: 2 x 130 ns
    CHECK(c.rmw(page, 6, 700_ns) == 710_ns);         // a plain atomic after it: local
    // Queued like rmw(): three CPUs of socket 0 at once behind CPU 6 (across), then each other.
    CHECK(c.load_rmw(page, 0, 1000_ns) == 1260_ns);
    CHECK(c.load_rmw(page, 1, 1000_ns) == 1380_ns);
    CHECK(c.load_rmw(page, 2, 1000_ns) == 1500_ns);
    CHECK(page.owner == 2);
    const auto r = total(sim, "struct_page_refcount");
    REQUIRE(r);
    CHECK(r->operations == 8);
    CHECK(r->contended == 2);
    CHECK(r->wait_ps.sum() == (260_ns + 380_ns).ps());
}

TEST_CASE("contended line: call order is the FIFO order, even for an earlier arrival", "[contended_line]") {
    Simulator sim;
    LineClass c(sim, two_sockets(), "lock_word");
    LineState l;
    CHECK(c.rmw(l, 0, 1000_ns) == 1060_ns);
    // Computed later but arriving earlier: it queues behind the call made before it.
    CHECK(c.rmw(l, 4, 500_ns) == 1190_ns);
    const auto r = total(sim, "lock_word");
    REQUIRE(r);
    CHECK(r->contended == 1);
    CHECK(r->wait_ps.sum() == (560_ns).ps());
    // An arrival after the line is free waits for nothing.
    CHECK(c.rmw(l, 4, 2000_ns) == 2010_ns);
    CHECK(total(sim, "lock_word")->contended == 1);
}

TEST_CASE("contended line: statistics per phase, classes of one name merged, lines kept apart", "[contended_line]") {
    Simulator sim;
    LineClass a(sim, two_sockets(), "struct_page_refcount");
    LineClass b(sim, two_sockets(), "struct_page_refcount");  // a second VM's, say
    std::vector<LineState> pages(3);
    // Different lines of one class do not wait for each other.
    CHECK(a.rmw(pages[0], 0, 0_ns) == 60_ns);
    CHECK(a.rmw(pages[1], 1, 0_ns) == 60_ns);
    CHECK(a.rmw(pages[0], 4, 0_ns) == 190_ns);  // waits 60 ns, then crosses
    sim.begin_phase("second");
    CHECK(b.rmw(pages[2], 5, 0_ns) == 60_ns);
    CHECK(b.rmw(pages[2], 5, 10_ns) == 70_ns);  // waits 50 ns, local
    CHECK(a.rmw(pages[1], 1, 100_ns) == 110_ns);
    const auto p0 = sim.line_stats().in_phase(0), p1 = sim.line_stats().in_phase(1);
    REQUIRE(p0.size() == 1);
    REQUIRE(p1.size() == 1);
    CHECK(p0[0].operations == 3);
    CHECK(p0[0].contended == 1);
    CHECK(p0[0].wait_ps.sum() == (60_ns).ps());
    CHECK(p1[0].operations == 3);
    CHECK(p1[0].contended == 1);
    CHECK(p1[0].wait_ps.sum() == (50_ns).ps());
    const auto t = total(sim, "struct_page_refcount");
    REQUIRE(t);
    CHECK(t->operations == 6);
    CHECK(t->contended == 2);
    CHECK(t->wait_ps.count() == 2);
    CHECK(t->wait_ps.max() == (60_ns).ps());
    CHECK(sim.line_stats().totals().size() == 1);
}
