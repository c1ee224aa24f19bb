// Deterministic random streams. Every stream is derived from the scenario seed, a stream name
// and an index with SplitMix64, so adding a stream never shifts the values of another one.
// Distributions are kvmsim's own: std::*_distribution differ between standard libraries.
#pragma once

#include <cstdint>
#include <string_view>

#include "sim/engine/time.hpp"

namespace kvmsim::engine {

constexpr std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// 64-bit FNV-1a: a stable hash of a stream name (std::hash is not stable across libraries).
constexpr std::uint64_t fnv1a64(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return h;
}

// xoshiro256** (Blackman and Vigna), seeded from SplitMix64 over (seed, name, index).
class RandomStream {
public:
    RandomStream(std::uint64_t seed, std::string_view name, std::uint64_t index = 0);
    // A stream from a raw xoshiro256** state (for checking against the reference vectors).
    static RandomStream from_state(std::uint64_t s0, std::uint64_t s1, std::uint64_t s2, std::uint64_t s3) {
        RandomStream r(0, "");
        r.s_[0] = s0;
        r.s_[1] = s1;
        r.s_[2] = s2;
        r.s_[3] = s3;
        return r;
    }

    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, bound), unbiased, by Lemire's multiply-and-reject method. bound > 0.
    std::uint64_t uniform(std::uint64_t bound) {
        uint128_t m = static_cast<uint128_t>(next_u64()) * bound;
        auto low = static_cast<std::uint64_t>(m);
        if (low < bound) {
            const std::uint64_t threshold = (0 - bound) % bound;
            while (low < threshold) {
                m = static_cast<uint128_t>(next_u64()) * bound;
                low = static_cast<std::uint64_t>(m);
            }
        }
        return static_cast<std::uint64_t>(m >> 64);
    }
    // Uniform in [lo, hi] inclusive.
    std::int64_t uniform_int(std::int64_t lo, std::int64_t hi);
    // Uniform in [0, 1) with 53 random bits.
    double uniform01() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    double uniform_real(double lo, double hi) { return lo + (hi - lo) * uniform01(); }
    // Exponential with the given mean (inverse transform).
    double exponential(double mean);
    bool bernoulli(double p) { return uniform01() < p; }

private:
    static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4];
};

}  // namespace kvmsim::engine
