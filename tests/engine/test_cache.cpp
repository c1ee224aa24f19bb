#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "sim/engine/cache.hpp"

namespace kvmsim::engine {
// Test-only backdoor declared a friend by CacheModel.
struct CacheModelTestAccess {
    static std::uint32_t clock(const CacheModel& m) { return m.clock_; }
    static void set_clock(CacheModel& m, std::uint32_t v) { m.clock_ = v; }
};
}  // namespace kvmsim::engine

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {

constexpr Time kL1 = 1_ns;
constexpr Time kL2 = 4_ns;
constexpr Time kLLC = 20_ns;
constexpr Time kMem = 100_ns;
constexpr Time kRemote = 60_ns;

// L1: 2 sets x 2 ways, L2: 4 sets x 4 ways, LLC: 16 sets x 8 ways; 64-byte lines.
CacheConfig three_level(std::uint32_t cpus) {
    CacheConfig c;
    c.cpus = cpus;
    c.line_bytes = 64;
    c.levels = {
        {"L1d", 2 * 2 * 64, 2, kL1},
        {"L2", 4 * 4 * 64, 4, kL2},
        {"LLC", 16 * 8 * 64, 8, kLLC},
    };
    c.memory_latency = kMem;
    c.remote_latency = kRemote;
    return c;
}

// One private level (4 sets x 2 ways) and a tiny shared level (1 set x 4 ways), to provoke
// shared-level evictions while private levels still hold the line.
CacheConfig small_llc(std::uint32_t cpus) {
    CacheConfig c;
    c.cpus = cpus;
    c.levels = {
        {"L1d", 4 * 2 * 64, 2, kL1},
        {"LLC", 1 * 4 * 64, 4, kLLC},
    };
    c.memory_latency = kMem;
    c.remote_latency = kRemote;
    return c;
}

std::uint64_t L(std::uint64_t line) { return line * 64; }  // address of a line

Time rd(CacheModel& m, std::uint32_t cpu, std::uint64_t line) { return m.touch(cpu, L(line), 8, false); }
Time wr(CacheModel& m, std::uint32_t cpu, std::uint64_t line) { return m.touch(cpu, L(line), 8, true); }

// Deterministic generator for the randomized test (SplitMix64).
struct SplitMix {
    std::uint64_t s;
    std::uint64_t next() {
        std::uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
};

}  // namespace

TEST_CASE("cache: cold miss then hit", "[cache]") {
    CacheModel m(three_level(1));
    CHECK(m.touch(0, 0x1000, 8, false) == kMem);
    const CacheCounters& c = m.phase_counters(0);
    REQUIRE(c.levels.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(c.levels[i].accesses == 1);
        CHECK(c.levels[i].hits == 0);
        CHECK(c.levels[i].misses == 1);
    }
    CHECK(c.memory_accesses == 1);

    CHECK(m.touch(0, 0x1008, 8, false) == kL1);  // same line
    CHECK(c.levels[0].accesses == 2);
    CHECK(c.levels[0].hits == 1);
    CHECK(c.levels[1].accesses == 1);  // L1 hit: lower levels not looked at
    CHECK(c.levels[2].accesses == 1);
    CHECK(c.memory_accesses == 1);
    CHECK(c.coherence_misses == 0);
    CHECK(c.invalidations == 0);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: LRU eviction at associativity + 1", "[cache]") {
    CacheModel m(three_level(1));
    // Lines 0, 2, 4 all map to L1 set 0 (2 sets, 2 ways); L2 (4 sets x 4 ways) keeps them all.
    CHECK(rd(m, 0, 0) == kMem);
    CHECK(rd(m, 0, 2) == kMem);
    CHECK(rd(m, 0, 4) == kMem);  // evicts line 0 from L1
    CHECK(rd(m, 0, 4) == kL1);   // most recent ones still hit
    CHECK(rd(m, 0, 2) == kL1);
    CHECK(rd(m, 0, 0) == kL2);  // first one misses L1 again, found in L2
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.levels[0].accesses == 6);
    CHECK(c.levels[0].hits == 2);
    CHECK(c.levels[0].misses == 4);
    CHECK(c.levels[1].accesses == 4);
    CHECK(c.levels[1].hits == 1);
    CHECK(c.levels[1].misses == 3);
    CHECK(c.levels[2].accesses == 3);
    CHECK(c.memory_accesses == 3);

    SECTION("replacement is LRU, not FIFO") {
        // L1 set 0 now holds 2 (older) and 0 (newer). Use 2, then bring 4: 0 is the LRU victim.
        CHECK(rd(m, 0, 2) == kL1);
        CHECK(rd(m, 0, 4) == kL2);
        CHECK(rd(m, 0, 2) == kL1);
        CHECK(rd(m, 0, 0) == kL2);
    }
    SECTION("the other set is unaffected") {
        CHECK(rd(m, 0, 1) == kMem);
        CHECK(rd(m, 0, 3) == kMem);
        CHECK(rd(m, 0, 1) == kL1);
        CHECK(rd(m, 0, 3) == kL1);
        CHECK(rd(m, 0, 2) == kL1);
        CHECK(rd(m, 0, 0) == kL1);
    }
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: a working set that fits stays all hits", "[cache]") {
    CacheModel m(three_level(1));
    // 4 lines = whole L1 (2 sets x 2 ways).
    for (std::uint64_t l = 0; l < 4; ++l) CHECK(rd(m, 0, l) == kMem);
    for (int round = 0; round < 10; ++round)
        for (std::uint64_t l = 0; l < 4; ++l) CHECK(m.touch(0, L(l), 64, (l & 1) != 0) == kL1);
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.levels[0].accesses == 44);
    CHECK(c.levels[0].hits == 40);
    CHECK(c.levels[0].misses == 4);
    CHECK(c.levels[1].accesses == 4);
    CHECK(c.memory_accesses == 4);

    SECTION("a working set of L2 size stays in L2") {
        // 16 lines = whole L2, 4x the L1: cyclic access thrashes L1 but always hits L2.
        CacheModel m2(three_level(1));
        for (std::uint64_t l = 0; l < 16; ++l) CHECK(rd(m2, 0, l) == kMem);
        Time sum;
        for (int round = 0; round < 3; ++round)
            for (std::uint64_t l = 0; l < 16; ++l) sum += rd(m2, 0, l);
        CHECK(sum == 48 * kL2);
        CHECK(m2.phase_counters(0).levels[1].hits == 48);
        CHECK(m2.phase_counters(0).memory_accesses == 16);
    }
}

TEST_CASE("cache: non-power-of-two set count", "[cache]") {
    CacheConfig cfg;
    cfg.cpus = 1;
    cfg.levels = {{"LLC", 3 * 2 * 64, 2, kLLC}};  // 3 sets x 2 ways
    cfg.memory_latency = kMem;
    cfg.remote_latency = kRemote;
    CacheModel m(cfg);
    // Lines 0, 3, 6 map to set 0; line 1 to set 1.
    CHECK(rd(m, 0, 0) == kMem);
    CHECK(rd(m, 0, 3) == kMem);
    CHECK(rd(m, 0, 1) == kMem);
    CHECK(rd(m, 0, 0) == kLLC);
    CHECK(rd(m, 0, 6) == kMem);   // evicts 3 (LRU in set 0)
    CHECK(rd(m, 0, 0) == kLLC);
    CHECK(rd(m, 0, 1) == kLLC);
    CHECK(rd(m, 0, 3) == kMem);
    CHECK(m.phase_counters(0).levels[0].hits == 3);
    CHECK(m.phase_counters(0).levels[0].misses == 5);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: lines whose tags agree in the low 32 bits stay distinct", "[cache]") {
    CacheConfig cfg;
    cfg.cpus = 1;
    cfg.levels = {{"L1d", 4 * 4 * 64, 4, kL1}, {"LLC", 4 * 8 * 64, 8, kLLC}};
    cfg.memory_latency = kMem;
    cfg.remote_latency = kRemote;
    CacheModel m(cfg);
    const std::uint64_t X = 5, Y = X + (std::uint64_t{1} << 32), Z = X + (std::uint64_t{3} << 40);
    CHECK(rd(m, 0, X) == kMem);
    CHECK(rd(m, 0, Y) == kMem);  // same set, same low half: still a different line
    CHECK(rd(m, 0, Z) == kMem);
    CHECK(rd(m, 0, Y) == kL1);
    CHECK(rd(m, 0, X) == kL1);
    CHECK(rd(m, 0, Z) == kL1);
    // A line whose low half equals the empty-way marker is not found in empty ways.
    const std::uint64_t E = 0xFFFFFFFFULL;
    CHECK(rd(m, 0, E) == kMem);
    CHECK(rd(m, 0, E) == kL1);
    CHECK(rd(m, 0, E + (std::uint64_t{1} << 32)) == kMem);
    CHECK(m.phase_counters(0).memory_accesses == 5);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: a write invalidates other CPUs' copies", "[cache][coherence]") {
    CacheModel m(three_level(2));
    const std::uint64_t X = 5;
    CHECK(rd(m, 1, X) == kMem);
    CHECK(rd(m, 0, X) == kLLC);  // clean in CPU1: an ordinary shared-level hit
    CHECK(m.phase_counters(0).coherence_misses == 0);

    CHECK(wr(m, 0, X) == kRemote);  // L1 hit, but CPU1 must be invalidated: max(1ns, remote)
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.invalidations == 1);
    CHECK(c.levels[0].hits == 1);
    CHECK(m.check_invariants().empty());

    CHECK(rd(m, 1, X) == kRemote);  // CPU1's copy is gone; CPU0 has it modified
    CHECK(c.coherence_misses == 1);
    CHECK(c.levels[0].misses == 3);
    CHECK(c.levels[1].misses == 3);
    CHECK(c.levels[2].hits == 2);  // the directory hit: the line is in the shared level
    CHECK(c.memory_accesses == 1);

    CHECK(rd(m, 0, X) == kL1);  // CPU0 kept a (now clean) copy
    CHECK(rd(m, 1, X) == kL1);
    CHECK(wr(m, 0, X) == kRemote);  // shared again: upgrade invalidates CPU1
    CHECK(c.invalidations == 2);
    CHECK(wr(m, 0, X) == kL1);  // already the owner: silent
    CHECK(c.invalidations == 2);
    CHECK(c.coherence_misses == 1);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: a write miss on a line modified elsewhere", "[cache][coherence]") {
    CacheModel m(three_level(3));
    const std::uint64_t X = 9;
    CHECK(wr(m, 0, X) == kMem);
    CHECK(wr(m, 1, X) == kRemote);  // coherence miss + invalidation of CPU0
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.coherence_misses == 1);
    CHECK(c.invalidations == 1);
    CHECK(rd(m, 0, X) == kRemote);  // CPU1 has it modified now
    CHECK(c.coherence_misses == 2);
    CHECK(rd(m, 2, X) == kLLC);  // clean after that read: plain shared-level hit
    CHECK(c.coherence_misses == 2);
    CHECK(wr(m, 2, X) == kRemote);  // invalidates CPU0 and CPU1
    CHECK(c.invalidations == 3);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: coherence transfers between sockets cost cross_socket_latency", "[cache][coherence]") {
    constexpr Time kCross = 130_ns;
    CacheConfig cfg = three_level(4);
    cfg.cpus_per_socket = 2;  // CPUs 0-1 on socket 0, 2-3 on socket 1
    cfg.cross_socket_latency = kCross;
    CacheModel m(cfg);
    const std::uint64_t X = 9;
    CHECK(wr(m, 0, X) == kMem);
    CHECK(wr(m, 1, X) == kRemote);  // modified in CPU0, same socket
    CHECK(rd(m, 2, X) == kCross);   // modified in CPU1, other socket
    CHECK(rd(m, 1, X) == kL1);      // CPU1 kept a clean copy
    CHECK(wr(m, 1, X) == kCross);   // upgrade: invalidates CPU2, on the other socket
    CHECK(rd(m, 0, X) == kRemote);  // modified in CPU1, same socket
    CHECK(rd(m, 3, X) == kLLC);     // clean now: a shared-level hit wherever it is
    CHECK(wr(m, 0, X) == kCross);   // invalidates CPU1 (same socket) and CPU3 (other): the farther
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.coherence_misses == 3);
    CHECK(c.invalidations == 4);
    CHECK(m.check_invariants().empty());
    // Without sockets every transfer is remote_latency.
    CacheModel flat(three_level(4));
    CHECK(wr(flat, 0, X) == kMem);
    CHECK(rd(flat, 2, X) == kRemote);
}

TEST_CASE("cache: a write to a line no other CPU holds is silent", "[cache][coherence]") {
    CacheModel m(three_level(2));
    CHECK(rd(m, 0, 3) == kMem);
    CHECK(wr(m, 0, 3) == kL1);  // exclusive -> modified, no remote cost
    CHECK(wr(m, 1, 4) == kMem);  // write miss to memory: no sharers to invalidate
    CHECK(rd(m, 1, 4) == kL1);
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.invalidations == 0);
    CHECK(c.coherence_misses == 0);
    CHECK(m.check_invariants().empty());
}

// The nearest level's "owned" hint (a write hit without a directory look-up) must follow
// ownership: a line still owned after leaving L1, or refilled into L1 by a read, is written
// without any invalidation.
TEST_CASE("cache: writes to a line owned from a lower level stay silent", "[cache][coherence]") {
    CacheModel m(three_level(2));
    const std::uint64_t A = 0, B = 2, C = 4;  // all in L1 set 0 (2 ways); A and C share L2 set 0
    CHECK(wr(m, 0, A) == kMem);
    CHECK(rd(m, 0, B) == kMem);
    CHECK(rd(m, 0, C) == kMem);  // evicts A from L1; L2 keeps it, modified
    CHECK(wr(m, 0, A) == kL2);   // still the owner: no upgrade
    CHECK(wr(m, 0, A) == kL1);   // L1 set 0 = {A, C}: B was the LRU
    CHECK(rd(m, 0, B) == kL2);   // evicts C
    CHECK(rd(m, 0, C) == kL2);   // evicts A from L1 again
    CHECK(rd(m, 0, A) == kL2);   // a read refills L1
    CHECK(wr(m, 0, A) == kL1);   // owned all along: silent
    CHECK(wr(m, 0, A) == kL1);
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.invalidations == 0);
    CHECK(c.coherence_misses == 0);
    CHECK(m.check_invariants().empty());
    CHECK(rd(m, 1, A) == kRemote);  // CPU1 takes a clean copy: CPU0 no longer owns it
    CHECK(wr(m, 0, A) == kRemote);  // so CPU0's next write must invalidate CPU1
    CHECK(c.invalidations == 1);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: an invalidated way is refilled before a valid line is evicted", "[cache][coherence]") {
    CacheModel m(three_level(2));
    const std::uint64_t A = 0, B = 2, C = 4;  // all in L1 set 0 (2 ways)
    CHECK(rd(m, 1, A) == kMem);
    CHECK(rd(m, 1, B) == kMem);  // CPU1 L1 set 0 = {A (older), B}
    CHECK(wr(m, 0, B) == kRemote);  // invalidates B in CPU1: its way is empty but keeps a newer stamp
    CHECK(rd(m, 1, C) == kMem);  // must take B's empty way, not evict A (the LRU valid line)
    CHECK(rd(m, 1, A) == kL1);
    CHECK(rd(m, 1, C) == kL1);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: a multi-line touch counts one access per line", "[cache]") {
    CacheModel m(three_level(1));
    const CacheCounters& c = m.phase_counters(0);
    CHECK(m.touch(0, 60, 8, false) == 2 * kMem);  // bytes 60..67: lines 0 and 1
    CHECK(c.levels[0].accesses == 2);
    CHECK(c.memory_accesses == 2);
    CHECK(m.touch(0, 0, 256, false) == 2 * kL1 + 2 * kMem);  // lines 0..3
    CHECK(c.levels[0].accesses == 6);
    CHECK(c.memory_accesses == 4);
    CHECK(m.touch(0, 64, 64, false) == kL1);  // exactly line 1
    CHECK(m.touch(0, 127, 1, false) == kL1);  // last byte of line 1
    CHECK(c.levels[0].accesses == 8);
    CHECK(m.touch(0, 128, 0, false) == Time::zero());  // empty range: no access
    CHECK(m.touch(0, 0, 0, true) == Time::zero());
    CHECK(m.touch(0, std::numeric_limits<std::uint64_t>::max(), 0, false) == Time::zero());
    CHECK(c.levels[0].accesses == 8);
    CHECK(m.touch(0, 63, 2, true) == 2 * kL1);  // writes straddling lines 0 and 1
    CHECK(c.levels[0].accesses == 10);
    // Top of the address space does not overflow.
    CHECK(m.touch(0, std::numeric_limits<std::uint64_t>::max() - 63, 64, false) == kMem);
    CHECK(m.touch(0, std::numeric_limits<std::uint64_t>::max(), 1, false) == kL1);
    CHECK(c.memory_accesses == 5);
    CHECK_THROWS_AS(m.touch(0, std::numeric_limits<std::uint64_t>::max(), 2, false),
                    std::invalid_argument);
    CHECK_THROWS_AS(m.touch(1, 0, 8, false), std::out_of_range);
}

TEST_CASE("cache: inclusive shared-level eviction back-invalidates private copies", "[cache][coherence]") {
    CacheModel m(small_llc(2));
    const std::uint64_t A = 0, B = 1, C = 2, D = 3, E = 5;  // L1 sets 0,1,2,3,1; LLC has one set
    CHECK(rd(m, 0, A) == kMem);
    CHECK(rd(m, 1, A) == kLLC);
    CHECK(rd(m, 0, B) == kMem);
    CHECK(rd(m, 0, C) == kMem);
    CHECK(rd(m, 0, D) == kMem);
    CHECK(rd(m, 0, A) == kL1);  // private hit: does not refresh the shared level's LRU
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.back_invalidations == 0);
    CHECK(rd(m, 0, E) == kMem);  // shared level evicts A: both CPUs lose it
    CHECK(c.back_invalidations == 2);
    CHECK(c.invalidations == 0);
    CHECK(m.check_invariants().empty());
    CHECK(rd(m, 1, A) == kMem);  // would be an L1 hit without back-invalidation
    CHECK(c.back_invalidations == 3);  // ... and evicts B, held by CPU0 only
    CHECK(rd(m, 0, B) == kMem);
    CHECK(rd(m, 0, E) == kL1);  // E (L1 set 1) was not disturbed
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: a private-level eviction leaves the directory exact", "[cache][coherence]") {
    // CPU0 loses X from its private levels by capacity; a later write by CPU1 must not count an
    // invalidation of CPU0, and a later read by CPU0 must not be a coherence miss.
    CacheModel m(three_level(2));
    const std::uint64_t X = 0;
    CHECK(wr(m, 0, X) == kMem);
    // Lines 4, 8, 12, 16 map to L2 set 0 (4 sets x 4 ways) and L1 set 0: X leaves L1 and L2.
    for (std::uint64_t l : {4, 8, 12, 16}) CHECK(rd(m, 0, l) == kMem);
    CHECK(m.check_invariants().empty());
    CHECK(rd(m, 1, X) == kLLC);  // written back: not a coherence miss
    CHECK(wr(m, 1, X) == kL1);   // CPU0 holds nothing: silent
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.coherence_misses == 0);
    CHECK(c.invalidations == 0);
    // L2 eviction also removed X from L1 (inclusion): CPU0 misses both private levels.
    CHECK(rd(m, 0, X) == kRemote);
    CHECK(c.coherence_misses == 1);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: private levels are inclusive", "[cache]") {
    // L1: 4 sets x 1 way, L2: 2 sets x 4 ways. Line 0 stays hot in L1 (which does not refresh L2's
    // LRU) while lines 2, 6, 10, 14 (L1 set 2, L2 set 0) push it out of L2: it must leave L1 too.
    CacheConfig cfg = three_level(1);
    cfg.levels[0] = {"L1d", 4 * 1 * 64, 1, kL1};
    cfg.levels[1] = {"L2", 2 * 4 * 64, 4, kL2};
    CacheModel m(cfg);
    CHECK(rd(m, 0, 0) == kMem);
    for (std::uint64_t l : {2, 6, 10}) {
        CHECK(rd(m, 0, l) == kMem);
        CHECK(rd(m, 0, 0) == kL1);
    }
    CHECK(rd(m, 0, 14) == kMem);  // L2 set 0 full: evicts line 0 (LRU in L2)
    CHECK(m.check_invariants().empty());
    CHECK(rd(m, 0, 0) == kLLC);  // gone from L1 and L2, still in the shared level
    const CacheCounters& c = m.phase_counters(0);
    CHECK(c.levels[0].hits == 3);
    CHECK(c.levels[1].hits == 0);
    CHECK(c.levels[2].hits == 1);
    CHECK(c.back_invalidations == 0);  // internal to one CPU: not a shared-level eviction
}

TEST_CASE("cache: per-phase counters", "[cache]") {
    CacheModel m(three_level(1));
    CHECK(m.phase_count() == 1);
    CHECK(rd(m, 0, 7) == kMem);
    m.begin_phase(1);
    CHECK(m.phase_count() == 2);
    CHECK(rd(m, 0, 7) == kL1);
    CHECK(rd(m, 0, 7) == kL1);
    CHECK(rd(m, 0, 8) == kMem);

    const CacheCounters& p0 = m.phase_counters(0);
    const CacheCounters& p1 = m.phase_counters(1);
    CHECK(p0.levels[0].accesses == 1);
    CHECK(p0.levels[0].hits == 0);
    CHECK(p0.memory_accesses == 1);
    CHECK(p1.levels[0].accesses == 3);
    CHECK(p1.levels[0].hits == 2);
    CHECK(p1.levels[0].misses == 1);
    CHECK(p1.memory_accesses == 1);

    CacheCounters t = m.total();
    REQUIRE(t.levels.size() == 3);
    CHECK(t.levels[0].accesses == 4);
    CHECK(t.levels[0].hits == 2);
    CHECK(t.levels[0].misses == 2);
    CHECK(t.levels[2].misses == 2);
    CHECK(t.memory_accesses == 2);

    const CacheCounters& never = m.phase_counters(9);
    CHECK(never.levels.size() == 3);
    CHECK(never.levels[0].accesses == 0);
    CHECK(never.memory_accesses == 0);
    CHECK(m.phase_count() == 2);

    m.begin_phase(4);
    CHECK(m.phase_count() == 5);
    CHECK(m.phase_counters(2).levels.size() == 3);
    CHECK(m.phase_counters(2).levels[0].accesses == 0);
    m.begin_phase(0);  // back to phase 0: accumulates there again
    CHECK(rd(m, 0, 8) == kL1);
    CHECK(m.phase_counters(0).levels[0].accesses == 2);
    CHECK(m.phase_counters(0).levels[0].hits == 1);
    CHECK(m.phase_counters(1).levels[0].accesses == 3);
    CHECK(m.total().levels[0].accesses == 5);
}

TEST_CASE("cache: CacheCounters::merge adds", "[cache]") {
    CacheCounters a, b;
    a.levels = {{1, 1, 0}};
    b.levels = {{2, 1, 1}, {1, 0, 1}};
    a.coherence_misses = 1;
    b.coherence_misses = 2;
    b.invalidations = 3;
    b.back_invalidations = 4;
    a.memory_accesses = 5;
    b.memory_accesses = 6;
    a.merge(b);
    REQUIRE(a.levels.size() == 2);
    CHECK(a.levels[0] == CacheLevelCounters{3, 2, 1});
    CHECK(a.levels[1] == CacheLevelCounters{1, 0, 1});
    CHECK(a.coherence_misses == 3);
    CHECK(a.invalidations == 3);
    CHECK(a.back_invalidations == 4);
    CHECK(a.memory_accesses == 11);
}

TEST_CASE("cache: a single shared level", "[cache]") {
    CacheConfig cfg;
    cfg.cpus = 4;
    cfg.levels = {{"LLC", 4 * 4 * 64, 4, kLLC}};
    cfg.memory_latency = kMem;
    cfg.remote_latency = kRemote;
    CacheModel m(cfg);
    CHECK(wr(m, 0, 1) == kMem);
    CHECK(rd(m, 1, 1) == kLLC);
    CHECK(wr(m, 2, 1) == kLLC);
    CHECK(wr(m, 3, 1) == kLLC);
    // 5 lines into a 4-way set (lines 1, 5, 9, 13, 17 map to set 1).
    for (std::uint64_t l : {5, 9, 13, 17}) CHECK(rd(m, 0, l) == kMem);
    CHECK(rd(m, 0, 1) == kMem);
    CacheCounters t = m.total();
    REQUIRE(t.levels.size() == 1);
    CHECK(t.levels[0].accesses == 9);
    CHECK(t.levels[0].hits == 3);
    CHECK(t.memory_accesses == 6);
    CHECK(t.coherence_misses == 0);
    CHECK(t.invalidations == 0);
    CHECK(t.back_invalidations == 0);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: flush_all empties the caches and keeps the counters", "[cache]") {
    CacheModel m(three_level(2));
    CHECK(wr(m, 0, 1) == kMem);
    CHECK(rd(m, 1, 2) == kMem);
    m.flush_all();
    CHECK(m.check_invariants().empty());
    CHECK(m.phase_counters(0).memory_accesses == 2);
    CHECK(rd(m, 1, 1) == kMem);  // not a coherence miss: nothing is cached anywhere
    CHECK(rd(m, 1, 2) == kMem);
    CHECK(m.phase_counters(0).memory_accesses == 4);
    CHECK(m.phase_counters(0).coherence_misses == 0);
}

TEST_CASE("cache: config is kept", "[cache]") {
    CacheModel m(three_level(3));
    CHECK(m.config().cpus == 3);
    REQUIRE(m.config().levels.size() == 3);
    CHECK(m.config().levels[1].name == "L2");
    CHECK(m.config().levels[2].size_bytes == 16 * 8 * 64);
    CHECK(m.config().remote_latency == kRemote);
}

TEST_CASE("cache: bad configurations throw std::invalid_argument", "[cache]") {
    auto throws = [](auto mutate) {
        CacheConfig c = three_level(2);
        mutate(c);
        CHECK_THROWS_AS(CacheModel(c), std::invalid_argument);
    };
    CHECK_NOTHROW(CacheModel(three_level(2)));
    throws([](CacheConfig& c) { c.cpus = 0; });
    throws([](CacheConfig& c) { c.cpus = 1025; });
    throws([](CacheConfig& c) { c.levels.clear(); });
    throws([](CacheConfig& c) { c.levels[0].ways = 0; });
    throws([](CacheConfig& c) { c.levels[2].size_bytes = 0; });
    throws([](CacheConfig& c) { c.levels[1].size_bytes += 64; });  // not a multiple of ways * line
    throws([](CacheConfig& c) { c.line_bytes = 0; });
    throws([](CacheConfig& c) { c.line_bytes = 48; });
    throws([](CacheConfig& c) { c.line_bytes = 4; });  // below the 8-byte minimum
    throws([](CacheConfig& c) { c.line_bytes = 256; });  // L1 256 B is no longer a multiple of 2 * 256
    throws([](CacheConfig& c) { c.levels[0].hit_latency = Time::ps(-1); });
    throws([](CacheConfig& c) { c.memory_latency = Time::ps(-1); });
    throws([](CacheConfig& c) { c.remote_latency = Time::ps(-1); });
    CHECK_THROWS_WITH(CacheModel([] {
                          CacheConfig c = three_level(2);
                          c.levels[1].size_bytes = 1000;
                          return c;
                      }()),
                      Catch::Contains("L2") && Catch::Contains("not a multiple"));
    CHECK_THROWS_WITH(CacheModel([] {
                          CacheConfig c = three_level(2);
                          c.cpus = 0;
                          return c;
                      }()),
                      Catch::Contains("cpus"));
    CacheConfig ok = three_level(1024);  // the upper bound is accepted
    CHECK_NOTHROW(CacheModel(ok));
    ok = three_level(2);
    ok.line_bytes = 8;  // the smallest line: sizes are multiples of ways * 8
    CHECK_NOTHROW(CacheModel(ok));
}

TEST_CASE("cache: LRU order survives the stamp counter wrapping", "[cache]") {
    CacheModel m(three_level(1));
    CHECK(rd(m, 0, 0) == kMem);
    CHECK(rd(m, 0, 2) == kMem);
    CacheModelTestAccess::set_clock(m, std::numeric_limits<std::uint32_t>::max() - 1);
    CHECK(rd(m, 0, 0) == kL1);   // gets the last stamp before the wrap: L1 set 0 = {2, 0}
    CHECK(rd(m, 0, 4) == kMem);  // wraps: renormalized, 2 is the LRU victim; set 0 = {0, 4}
    CHECK(CacheModelTestAccess::clock(m) == 9);  // restarted above every rank (8 ways max)
    CHECK(m.check_invariants().empty());
    CHECK(rd(m, 0, 2) == kL2);  // 0 (pre-wrap stamp) is older than 4: 0 is evicted, not 4
    CHECK(rd(m, 0, 4) == kL1);
    CHECK(rd(m, 0, 0) == kL2);
    CHECK(m.check_invariants().empty());
}

TEST_CASE("cache: random traffic keeps inclusion and the directory exact, deterministically", "[cache][coherence]") {
    auto run = [](std::uint64_t seed, bool check) {
        CacheConfig cfg = three_level(5);
        cfg.levels[2] = {"LLC", 3 * 4 * 64, 4, kLLC};  // 3 sets x 4 ways: smaller than the sum of L2s
        CacheModel m(cfg);
        SplitMix rng{seed};
        Time sum;
        for (int i = 0; i < 20000; ++i) {
            const std::uint64_t r = rng.next();
            const auto cpu = static_cast<std::uint32_t>(r % 5);
            const std::uint64_t addr = (r >> 8) % (40 * 64);
            const std::uint64_t bytes = 1 + (r >> 24) % 150;
            const bool write = ((r >> 40) % 3) == 0;
            if (i % 5000 == 4999) m.begin_phase(static_cast<std::size_t>(i / 5000));
            sum += m.touch(cpu, addr, bytes, write);
            if (check && i % 97 == 0) {
                const std::string err = m.check_invariants();
                INFO("after access " << i << ": " << err);
                REQUIRE(err.empty());
            }
        }
        REQUIRE(m.check_invariants().empty());
        return std::pair{sum, m.total()};
    };
    const auto [sum1, tot1] = run(42, true);
    const auto [sum2, tot2] = run(42, false);
    CHECK(sum1 == sum2);
    CHECK(tot1 == tot2);
    // Counters are self-consistent and the model exercised every mechanism.
    for (const auto& lv : tot1.levels) CHECK(lv.accesses == lv.hits + lv.misses);
    CHECK(tot1.levels[1].accesses == tot1.levels[0].misses);
    CHECK(tot1.levels[2].accesses == tot1.levels[1].misses);
    CHECK(tot1.memory_accesses == tot1.levels[2].misses);
    CHECK(tot1.coherence_misses > 0);
    CHECK(tot1.invalidations > 0);
    CHECK(tot1.back_invalidations > 0);
    const auto [sum3, tot3] = run(43, false);
    CHECK_FALSE(tot3 == tot1);
}
