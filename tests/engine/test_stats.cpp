#include <catch2/catch.hpp>

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
