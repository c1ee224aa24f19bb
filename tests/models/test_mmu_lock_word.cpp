#include <catch2/catch.hpp>

#include "models/common/mmu_lock_word.hpp"
#include "tests/engine/two_sockets.hpp"

using namespace kvmsim;
using namespace kvmsim::engine::time_literals;
using engine::LockMode;

using kvmsim::test::two_sockets;

TEST_CASE("mmu_lock word: a queued writer pays two transfers, a writer finding it free one", "[mmu_lock_word]") {
    engine::Simulator sim;
    models::MmuLockWord w(sim, two_sockets());
    // Untouched: a same-socket fetch, whichever the CPU.
    CHECK(w.acquired(5, LockMode::Write, 0_ns, 0_ns) == 60_ns);
    CHECK(w.released(5, LockMode::Write, 1000_ns) == 0_ns);  // the next holder pays the store
    // CPU 0 waited from 500 ns: the line comes from CPU 5 (other socket) twice.
    CHECK(w.acquired(0, LockMode::Write, 500_ns, 1000_ns) == 260_ns);
    // CPU 1 found it free: one same-socket transfer from CPU 0.
    CHECK(w.acquired(1, LockMode::Write, 2000_ns, 2000_ns) == 60_ns);
    // CPU 1 again, waited or not: its own line.
    CHECK(w.acquired(1, LockMode::Write, 2500_ns, 3000_ns) == 10_ns);
}

TEST_CASE("mmu_lock word: readers serialize on the count at the line transfer latency", "[mmu_lock_word]") {
    engine::Simulator sim;
    models::MmuLockWord w(sim, two_sockets());
    // Four read_locks at the same instant from both sockets: FIFO on the line.
    CHECK(w.acquired(0, LockMode::Read, 100_ns, 100_ns) == 60_ns);   // untouched
    CHECK(w.acquired(4, LockMode::Read, 100_ns, 100_ns) == 190_ns);  // + cross, after the first
    CHECK(w.acquired(5, LockMode::Read, 100_ns, 100_ns) == 250_ns);  // + same socket
    CHECK(w.acquired(1, LockMode::Read, 100_ns, 100_ns) == 380_ns);  // + cross
    // A waiting reader pays no second transfer: only writers spin on the word before the hand-over.
    CHECK(w.released(1, LockMode::Read, 1000_ns) == 10_ns);
    CHECK(w.released(0, LockMode::Read, 1000_ns) == 70_ns);  // behind CPU 1's, from CPU 1
}
