#include <catch2/catch.hpp>
#include <cmath>

#include "sim/engine/stats.hpp"

using namespace kvmsim::engine;

TEST_CASE("histogram keeps exact count, sum, min and max", "[stats]") {
    Histogram h;
    CHECK(h.count() == 0);
    CHECK(h.percentile(0.5) == 0);
    for (std::uint64_t v : {5ULL, 1000ULL, 7ULL, 123456789ULL}) h.record(v);
    CHECK(h.count() == 4);
    CHECK(h.sum() == 5 + 1000 + 7 + 123456789);
    CHECK(h.min() == 5);
    CHECK(h.max() == 123456789);
    CHECK(h.percentile(1.0) == 123456789);
    CHECK(h.percentile(0.0) == 5);
}

TEST_CASE("histogram buckets tile the value range", "[stats]") {
    for (std::size_t b = 0; b + 1 < Histogram::kBuckets; ++b) {
        REQUIRE(Histogram::bucket_of(Histogram::bucket_low(b)) == b);
        REQUIRE(Histogram::bucket_of(Histogram::bucket_high(b)) == b);
        REQUIRE(Histogram::bucket_high(b) + 1 == Histogram::bucket_low(b + 1));
    }
    CHECK(Histogram::bucket_of(~0ULL) == Histogram::kBuckets - 1);
}

TEST_CASE("histogram percentiles are within 12.5%", "[stats]") {
    Histogram h;
    for (std::uint64_t v = 1; v <= 10000; ++v) h.record(v * 1000);
    const auto p50 = static_cast<double>(h.percentile(0.5));
    const auto p99 = static_cast<double>(h.percentile(0.99));
    CHECK(p50 == Approx(5'000'000).epsilon(0.125));
    CHECK(p99 == Approx(9'900'000).epsilon(0.125));
    Histogram one;
    one.record(777);
    CHECK(one.percentile(0.5) == 777);
    CHECK(one.percentile(0.99) == 777);
}

TEST_CASE("the lock-wait histogram keeps its buckets", "[stats]") {
    // LogHistogram<3> is the histogram lock and line waits always had: the same 496 buckets.
    CHECK(Histogram::kBuckets == 16 + 60 * 8);
    CHECK(Histogram::bucket_of(15) == 15);
    CHECK(Histogram::bucket_of(16) == 16);
    CHECK(Histogram::bucket_of(1000) == 16 + 5 * 8 + 7);  // 2^9 + 7 * 2^6 <= 1000 < 2^10
    CHECK(Histogram::bucket_low(16 + 5 * 8 + 7) == 960);
    CHECK(Histogram::bucket_high(16 + 5 * 8 + 7) == 1023);
}

TEST_CASE("fine histogram buckets tile the value range", "[stats]") {
    CHECK(FineHistogram::kBuckets == 128 + 57 * 64);
    for (std::size_t b = 0; b + 1 < FineHistogram::kBuckets; ++b) {
        REQUIRE(FineHistogram::bucket_of(FineHistogram::bucket_low(b)) == b);
        REQUIRE(FineHistogram::bucket_of(FineHistogram::bucket_high(b)) == b);
        REQUIRE(FineHistogram::bucket_high(b) + 1 == FineHistogram::bucket_low(b + 1));
        // No bucket is wider than 1/64 of its smallest value.
        REQUIRE((FineHistogram::bucket_high(b) - FineHistogram::bucket_low(b)) * 64 <= FineHistogram::bucket_low(b));
    }
    CHECK(FineHistogram::bucket_of(~0ULL) == FineHistogram::kBuckets - 1);
}

TEST_CASE("fine histogram percentiles: exact values on known inputs", "[stats]") {
    FineHistogram h;
    // 1..10 us in ps, in no order.
    for (std::uint64_t us : {7, 3, 10, 1, 5, 9, 2, 8, 6, 4}) h.record(us * 1'000'000);
    CHECK(h.count() == 10);
    CHECK(h.sum() == 55'000'000);
    CHECK(h.min() == 1'000'000);
    CHECK(h.max() == 10'000'000);
    // Nearest rank 5 is 5 us, in bucket [4980736, 5046271] (2^22 + 12 * 2^16 ...): its midpoint.
    CHECK(h.percentile(0.5) == 5'013'503);
    // Rank 10 of 10: the maximum, exactly.
    CHECK(h.percentile(0.99) == 10'000'000);
    CHECK(h.percentile(0.0) == 1'000'000);
    // Exact below 128.
    FineHistogram small;
    for (std::uint64_t v = 1; v <= 127; ++v) small.record(v);
    CHECK(small.percentile(0.5) == 64);
    CHECK(small.percentile(0.99) == 126);
    // A value's bucket midpoint outside [min, max] is clamped to them.
    FineHistogram same;
    for (int i = 0; i < 100; ++i) same.record(1'500'000);
    CHECK(same.percentile(0.5) == 1'500'000);
    CHECK(same.percentile(0.99) == 1'500'000);
}

TEST_CASE("fine histogram percentiles are within 1/128 of the true value", "[stats]") {
    FineHistogram h;
    for (std::uint64_t v = 1; v <= 10000; ++v) h.record(v * 997);
    for (double q : {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999}) {
        const auto rank = static_cast<std::uint64_t>(std::ceil(q * 10000));
        const double truth = static_cast<double>(rank * 997);
        INFO("q " << q);
        CHECK(std::fabs(static_cast<double>(h.percentile(q)) - truth) <= truth / 128);
    }
}

TEST_CASE("histogram merge is exact", "[stats]") {
    Histogram a, b;
    a.record(10);
    a.record(20);
    b.record(3);
    b.record(4000);
    a.merge(b);
    CHECK(a.count() == 4);
    CHECK(a.sum() == 4033);
    CHECK(a.min() == 3);
    CHECK(a.max() == 4000);
}

TEST_CASE("counters are kept per phase and merged by kind", "[stats]") {
    Counters c;
    const auto faults = c.id("pf_fixed");
    const auto coll = c.id("max_mmu_page_hash_collisions", Counters::Kind::Max);
    c.add(faults, 3);
    c.set_max(coll, 7);
    c.begin_phase(2);
    c.add(faults);
    c.set_max(coll, 5);
    c.set_max(coll, 2);
    CHECK(c.value(faults, 0) == 3);
    CHECK(c.value(faults, 1) == 0);
    CHECK(c.value(faults, 2) == 1);
    CHECK(c.value(coll, 2) == 5);
    CHECK(c.total(faults) == 4);
    CHECK(c.total(coll) == 7);
    CHECK(c.total("pf_fixed") == 4);
    CHECK(c.total("no_such_stat") == 0);
    CHECK(c.id("pf_fixed") == faults);
    CHECK_THROWS_AS(c.id("pf_fixed", Counters::Kind::Max), std::logic_error);
    // A counter registered after phases exist starts at zero in each.
    const auto late = c.id("pf_fast");
    c.add(late);
    CHECK(c.value(late, 0) == 0);
    CHECK(c.value(late, 2) == 1);
}

TEST_CASE("gauges read as their level at the end of each phase", "[stats]") {
    Counters c;
    const auto pages = c.id("pages_2m", Counters::Kind::Gauge);
    c.adjust(pages, 512);
    c.begin_phase(1);
    c.adjust(pages, -500);  // split by dirty logging
    c.begin_phase(2);
    c.adjust(pages, 300);
    c.adjust(pages, -10);
    CHECK(c.value(pages, 0) == 512);
    CHECK(c.value(pages, 1) == 12);
    CHECK(c.value(pages, 2) == 302);
    CHECK(c.total(pages) == 302);
}
