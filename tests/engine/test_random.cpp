#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "sim/engine/random.hpp"

using namespace kvmsim::engine;

TEST_CASE("splitmix64 matches the reference output", "[random]") {
    // Reference: Vigna's splitmix64.c seeded with 1234567.
    std::uint64_t s = 1234567;
    CHECK(splitmix64(s) == 6457827717110365317ULL);
    CHECK(splitmix64(s) == 3203168211198807973ULL);
    CHECK(splitmix64(s) == 9817491932198370423ULL);
}

TEST_CASE("xoshiro256** matches the reference output", "[random]") {
    // Reference implementation from state {1, 2, 3, 4}.
    auto r = RandomStream::from_state(1, 2, 3, 4);
    CHECK(r.next_u64() == 11520ULL);
    CHECK(r.next_u64() == 0ULL);
    CHECK(r.next_u64() == 1509978240ULL);
    CHECK(r.next_u64() == 1215971899390074240ULL);
}

TEST_CASE("streams are determined by (seed, name, index)", "[random]") {
    RandomStream a(42, "vcpu", 3), b(42, "vcpu", 3);
    for (int i = 0; i < 100; ++i) REQUIRE(a.next_u64() == b.next_u64());
    RandomStream other_seed(43, "vcpu", 3), other_name(42, "vCPU", 3), other_index(42, "vcpu", 4);
    RandomStream c(42, "vcpu", 3);
    const auto first = c.next_u64();
    CHECK(other_seed.next_u64() != first);
    CHECK(other_name.next_u64() != first);
    CHECK(other_index.next_u64() != first);
}

TEST_CASE("adding a stream does not change another stream's values", "[random]") {
    std::vector<std::uint64_t> alone;
    {
        RandomStream s(7, "zap");
        for (int i = 0; i < 16; ++i) alone.push_back(s.next_u64());
    }
    RandomStream extra(7, "fault");
    RandomStream s(7, "zap");
    for (int i = 0; i < 16; ++i) {
        (void)extra.next_u64();
        REQUIRE(s.next_u64() == alone[static_cast<std::size_t>(i)]);
    }
}

TEST_CASE("bounded integers are in range and unbiased", "[random]") {
    RandomStream r(1, "uniform");
    std::vector<int> counts(6, 0);
    const int n = 60000;
    for (int i = 0; i < n; ++i) {
        const auto v = r.uniform(6);
        REQUIRE(v < 6);
        ++counts[v];
    }
    // Chi-square with 5 degrees of freedom; 20.5 is the 0.999 quantile.
    double chi = 0;
    for (int c : counts) chi += (c - n / 6.0) * (c - n / 6.0) / (n / 6.0);
    CHECK(chi < 20.5);
    for (int i = 0; i < 1000; ++i) {
        const auto v = r.uniform_int(-3, 3);
        REQUIRE(v >= -3);
        REQUIRE(v <= 3);
    }
    CHECK(r.uniform(1) == 0);
}

TEST_CASE("real distributions have the right moments", "[random]") {
    RandomStream r(9, "dist");
    const int n = 200000;
    double sum = 0, sum_exp = 0;
    int hits = 0;
    for (int i = 0; i < n; ++i) {
        const double u = r.uniform01();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        sum += u;
        const double e = r.exponential(5.0);
        REQUIRE(e >= 0.0);
        sum_exp += e;
        hits += r.bernoulli(0.25) ? 1 : 0;
    }
    CHECK(sum / n == Approx(0.5).margin(0.005));
    CHECK(sum_exp / n == Approx(5.0).epsilon(0.02));
    CHECK(static_cast<double>(hits) / n == Approx(0.25).margin(0.005));
    CHECK_FALSE(r.bernoulli(0.0));
    CHECK(r.bernoulli(1.0));
}
