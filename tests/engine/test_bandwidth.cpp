#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <string>

#include "sim/engine/bandwidth.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

namespace {
constexpr std::uint64_t GBps = 1'000'000'000;  // 1 GB/s: 10^6 bytes take exactly 1 ms

// Waits until `start`, moves `bytes` at most at `cap`, and notes when it is done.
Task<void> mover(Simulator& sim, Bandwidth& bw, std::map<std::string, Time>& done, std::string name, Time start,
                 std::uint64_t bytes, std::uint64_t cap = 0) {
    if (start > Time::zero()) co_await sim.delay(start);
    co_await bw.transfer(bytes, cap);
    done[name] = sim.now();
}

std::optional<BandwidthRecord> total(const Simulator& sim, const std::string& name) {
    for (const auto& r : sim.bandwidth_stats().totals())
        if (sim.bandwidth_stats().name(r.resource) == name) return r;
    return std::nullopt;
}
}  // namespace

TEST_CASE("bandwidth: one transfer alone moves at the full rate", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "memory_bandwidth", GBps);
    std::map<std::string, Time> done;
    CHECK(bw.alone(1'000'000) == 1_ms);
    CHECK(bw.alone(1'000'000, GBps / 4) == 4_ms);  // its own cap below the capacity
    CHECK(bw.alone(1'000'000, 4 * GBps) == 1_ms);  // a cap above the capacity does not help
    CHECK(bw.alone(1) == 1_ns);
    sim.spawn("a", mover(sim, bw, done, "a", 5_us, 1'000'000));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(done.at("a") == 5_us + 1_ms);
    CHECK(bw.active() == 0);
}

TEST_CASE("bandwidth: two concurrent transfers get half each", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "memory_bandwidth", GBps);
    std::map<std::string, Time> done;
    sim.spawn("a", mover(sim, bw, done, "a", 0_ns, 1'000'000));
    sim.spawn("b", mover(sim, bw, done, "b", 0_ns, 1'000'000));
    sim.run(1_us);
    REQUIRE(bw.active() == 2);
    CHECK(bw.rate(0) == GBps / 2);
    CHECK(bw.rate(1) == GBps / 2);
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(done.at("a") == 2_ms);
    CHECK(done.at("b") == 2_ms);
}

TEST_CASE("bandwidth: a transfer starting midway re-shares both rates exactly", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "memory_bandwidth", GBps);
    std::map<std::string, Time> done;
    sim.spawn("a", mover(sim, bw, done, "a", 0_ns, 1'000'000));
    sim.spawn("b", mover(sim, bw, done, "b", 500_us, 1'000'000));
    CHECK(sim.run() == RunStatus::Completed);
    // a: 500,000 bytes alone by 0.5 ms, the other half at 0.5 GB/s: 1 ms more.
    CHECK(done.at("a") == 1500_us);
    // b: 500,000 bytes at half rate by 1.5 ms, the rest alone: 0.5 ms more.
    CHECK(done.at("b") == 2_ms);
    // Events: two starts, b's delay, two completions, two resumes. a's first completion event
    // (at 1 ms), replaced when b started, is dropped without being counted.
    CHECK(sim.events_processed() == 7);
}

TEST_CASE("bandwidth: capped transfers take their cap and the rest share what is left (water-filling)",
          "[bandwidth]") {
    SECTION("a capped beside an uncapped one") {
        Simulator sim;
        Bandwidth bw(sim, "memory_bandwidth", GBps);
        std::map<std::string, Time> done;
        sim.spawn("capped", mover(sim, bw, done, "capped", 0_ns, 400'000, GBps / 5));
        sim.spawn("free", mover(sim, bw, done, "free", 0_ns, 800'000));
        sim.run(1_us);
        CHECK(bw.rate(0) == 200'000'000);
        CHECK(bw.rate(1) == 800'000'000);
        CHECK(sim.run() == RunStatus::Completed);
        CHECK(done.at("free") == 1_ms);    // 800,000 bytes at 0.8 GB/s
        CHECK(done.at("capped") == 2_ms);  // held at its cap even once alone
    }
    SECTION("a cap above the fair share does not bind") {
        Simulator sim;
        Bandwidth bw(sim, "memory_bandwidth", GBps);
        std::map<std::string, Time> done;
        sim.spawn("small", mover(sim, bw, done, "small", 0_ns, 1'000'000, 100'000'000));
        sim.spawn("mid", mover(sim, bw, done, "mid", 0_ns, 1'000'000, 500'000'000));
        sim.spawn("free", mover(sim, bw, done, "free", 0_ns, 1'000'000));
        sim.run(1_us);
        // 1 GB/s over three: the 0.1 GB/s cap binds, the other two split the 0.9 GB/s left.
        CHECK(bw.rate(0) == 100'000'000);
        CHECK(bw.rate(1) == 450'000'000);
        CHECK(bw.rate(2) == 450'000'000);
        CHECK(sim.run() == RunStatus::Completed);
        // mid and free: 10^6 bytes at 0.45 GB/s = 2222222222.2 ps, rounded up.
        CHECK(done.at("mid") == Time::ps(2'222'222'223));
        CHECK(done.at("free") == Time::ps(2'222'222'223));
        // small: 222,222.2222 bytes by then, the rest at its cap (0.1 GB/s): 10 ms in all.
        CHECK(done.at("small") == 10_ms);
    }
}

TEST_CASE("bandwidth: an uneven split sums to the capacity and completions round up", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "tiny", 1000);  // bytes per second
    std::map<std::string, Time> done;
    for (const char* n : {"a", "b", "c"}) sim.spawn(n, mover(sim, bw, done, n, 0_ns, 1000));
    sim.run(1_us);
    // 1000 / 3: the earliest started gets the byte left over.
    CHECK(bw.rate(0) == 334);
    CHECK(bw.rate(1) == 333);
    CHECK(bw.rate(2) == 333);
    CHECK(sim.run() == RunStatus::Completed);
    // a: 1000 bytes at 334 B/s = 2994011976047.9 ps, up to the next picosecond.
    CHECK(done.at("a") == Time::ps(2'994'011'976'048));
    // (a's last fraction of a picosecond's worth of work is dropped.) b and c have moved exactly
    // 333 B/s x 2.994011976048 s each; the rest (about 2.994 bytes) goes at 500 B/s each, the
    // time again rounded up.
    const Time t = done.at("b");
    CHECK(done.at("c") == t);
    const uint128_t left = uint128_t{1000} * 1'000'000'000'000ULL - uint128_t{333} * 2'994'011'976'048ULL;
    const auto more = static_cast<std::int64_t>((left + 499) / 500);
    CHECK(t == Time::ps(2'994'011'976'048 + more));
}

TEST_CASE("bandwidth: zero bytes complete at once, and an unlimited resource moves at the caps", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "memory_bandwidth", GBps);
    Bandwidth unlimited(sim, "unlimited", 0);
    std::map<std::string, Time> done;
    sim.spawn("zero", mover(sim, bw, done, "zero", 3_us, 0));
    sim.spawn("free", mover(sim, unlimited, done, "free", 0_ns, 1'000'000));
    sim.spawn("capped", mover(sim, unlimited, done, "capped", 0_ns, 1'000'000, GBps));
    sim.spawn("capped2", mover(sim, unlimited, done, "capped2", 0_ns, 1'000'000, GBps));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(done.at("zero") == 3_us);
    CHECK(done.at("free") == 0_ns);
    CHECK(done.at("capped") == 1_ms);  // each at its own cap: no sharing
    CHECK(done.at("capped2") == 1_ms);
    CHECK(unlimited.alone(1'000'000) == 0_ns);
    CHECK(bw.alone(0) == 0_ns);
    CHECK_FALSE(total(sim, "memory_bandwidth"));  // nothing moved
    const auto u = total(sim, "unlimited");
    REQUIRE(u);
    CHECK(u->transfers == 3);
    CHECK(u->bytes == 3'000'000);
    CHECK(u->busy == 1_ms);
    CHECK(u->peak_concurrency == 2);
}

TEST_CASE("bandwidth: statistics per phase and for the run", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "memory_bandwidth", GBps);
    std::map<std::string, Time> done;
    sim.spawn("a", mover(sim, bw, done, "a", 0_ns, 1'000'000));
    sim.spawn("b", mover(sim, bw, done, "b", 500_us, 1'000'000));
    sim.spawn("c", mover(sim, bw, done, "c", 3_ms, 2'000'000));
    // Phase 1 begins at 1 ms, while a and b are active; phase 2 at 2.5 ms, while idle.
    struct Phaser {
        static Task<void> run(Simulator& s) {
            co_await s.delay(1_ms);
            s.begin_phase("one");
            co_await s.delay(1500_us);
            s.begin_phase("two");
        }
    };
    sim.spawn("phases", Phaser::run(sim));
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(done.at("c") == 5_ms);
    const auto& st = sim.bandwidth_stats();
    const auto p0 = st.in_phase(0), p1 = st.in_phase(1), p2 = st.in_phase(2);
    REQUIRE(p0.size() == 1);
    REQUIRE(p1.size() == 1);
    REQUIRE(p2.size() == 1);
    CHECK(p0[0].transfers == 0);  // nothing completed before 1 ms
    CHECK(p0[0].busy == 1_ms);
    CHECK(p0[0].peak_concurrency == 2);
    CHECK(p1[0].transfers == 2);  // a at 1.5 ms, b at 2 ms
    CHECK(p1[0].bytes == 2'000'000);
    CHECK(p1[0].busy == 1_ms);    // 1 ms to 2 ms
    CHECK(p1[0].peak_concurrency == 2);
    CHECK(p2[0].transfers == 1);
    CHECK(p2[0].bytes == 2'000'000);
    CHECK(p2[0].busy == 2_ms);
    CHECK(p2[0].peak_concurrency == 1);
    const auto t = total(sim, "memory_bandwidth");
    REQUIRE(t);
    CHECK(t->transfers == 3);
    CHECK(t->bytes == 4'000'000);
    CHECK(t->busy == 4_ms);
    CHECK(t->peak_concurrency == 2);
}

TEST_CASE("bandwidth: a run stopped with transfers in flight counts busy time up to the stop", "[bandwidth]") {
    Simulator sim;
    Bandwidth bw(sim, "memory_bandwidth", GBps);
    std::map<std::string, Time> done;
    sim.spawn("a", mover(sim, bw, done, "a", 0_ns, 1'000'000));
    CHECK(sim.run(300_us) == RunStatus::TimeLimit);
    sim.bandwidth_stats().flush(sim.now());
    sim.bandwidth_stats().flush(sim.now());  // idempotent
    const auto t = total(sim, "memory_bandwidth");
    REQUIRE(t);
    CHECK(t->busy == 300_us);
    CHECK(t->transfers == 0);
    CHECK(sim.run() == RunStatus::Completed);
    CHECK(done.at("a") == 1_ms);
    sim.bandwidth_stats().flush(sim.now());
    CHECK(total(sim, "memory_bandwidth")->busy == 1_ms);
}
