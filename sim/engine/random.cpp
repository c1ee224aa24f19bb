#include "sim/engine/random.hpp"

#include <cmath>

namespace kvmsim::engine {

RandomStream::RandomStream(std::uint64_t seed, std::string_view name, std::uint64_t index) {
    std::uint64_t sm = seed;
    std::uint64_t key = splitmix64(sm) ^ fnv1a64(name);
    sm = key;
    key = splitmix64(sm) ^ (index * 0xd1b54a32d192ed03ULL);
    sm = key;
    for (auto& w : s_) w = splitmix64(sm);
    // xoshiro must not start from the all-zero state.
    if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) s_[0] = 1;
}

std::int64_t RandomStream::uniform_int(std::int64_t lo, std::int64_t hi) {
    const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
    if (span == ~0ULL) return static_cast<std::int64_t>(next_u64());
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + uniform(span + 1));
}

double RandomStream::exponential(double mean) {
    // 1 - u lies in (0, 1], so the log is finite.
    return -std::log(1.0 - uniform01()) * mean;
}

}  // namespace kvmsim::engine
