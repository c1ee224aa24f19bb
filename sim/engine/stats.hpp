// Statistics containers: log-bucket histograms with exact count/sum/min/max, named counters
// and lock-contention records, all kept per phase. Phases are merged exactly (never subtracted),
// so whole-run figures are the merge of the per-phase ones.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sim/engine/time.hpp"

namespace kvmsim::engine {

// Values are unsigned integers (picoseconds for times). Buckets: exact below 16, then 8
// sub-buckets per power of two, so a percentile is within 12.5% of the true value and always
// inside [min, max].
class Histogram {
public:
    static constexpr std::size_t kBuckets = 16 + 60 * 8;

    void record(std::uint64_t v) {
        ++buckets_[bucket_of(v)];
        ++count_;
        sum_ += v;
        if (v < min_) min_ = v;
        if (v > max_) max_ = v;
    }
    void merge(const Histogram& o);

    std::uint64_t count() const { return count_; }
    // Sum as 128-bit: hours of picoseconds summed over millions of records overflow 64 bits.
    uint128_t sum() const { return sum_; }
    double sum_double() const { return static_cast<double>(sum_); }
    std::uint64_t min() const { return count_ ? min_ : 0; }
    std::uint64_t max() const { return max_; }
    double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }
    // q in [0, 1]; the representative value of the bucket holding the q-quantile.
    std::uint64_t percentile(double q) const;

    static std::size_t bucket_of(std::uint64_t v) {
        if (v < 16) return static_cast<std::size_t>(v);
        const int e = 63 - __builtin_clzll(v);  // >= 4
        return 16 + static_cast<std::size_t>(e - 4) * 8 + static_cast<std::size_t>((v >> (e - 3)) & 7);
    }
    static std::uint64_t bucket_low(std::size_t b);
    static std::uint64_t bucket_high(std::size_t b);  // inclusive

private:
    std::array<std::uint64_t, kBuckets> buckets_{};
    std::uint64_t count_ = 0;
    uint128_t sum_ = 0;
    std::uint64_t min_ = ~0ULL;
    std::uint64_t max_ = 0;
};

using CounterId = std::uint32_t;

// Named counters (KVM's debugfs stats live here), one value vector per phase.
//   Sum:   events counted; a phase's value is its own count, the total their sum.
//   Max:   a high-water mark; the total is the largest phase value.
//   Gauge: a level moved up and down (pages_4k); a phase records its net change, reads as the
//          level at its end, and the total is the final level.
class Counters {
public:
    enum class Kind : std::uint8_t { Sum, Max, Gauge };

    // Registers `name` (or returns its id). Registering one name with two kinds is an error.
    CounterId id(std::string_view name, Kind kind = Kind::Sum);
    void add(CounterId id, std::uint64_t v = 1) { values_[phase_][id] += v; }
    void adjust(CounterId id, std::int64_t delta) {
        values_[phase_][id] += static_cast<std::uint64_t>(delta);  // two's complement
    }
    void set_max(CounterId id, std::uint64_t v) {
        auto& x = values_[phase_][id];
        if (v > x) x = v;
    }
    void begin_phase(std::size_t phase);

    std::size_t size() const { return names_.size(); }
    const std::string& name(CounterId id) const { return names_[id]; }
    Kind kind(CounterId id) const { return kinds_[id]; }
    std::uint64_t value(CounterId id, std::size_t phase) const;
    std::uint64_t total(CounterId id) const;
    // Total by name; 0 for an unregistered name.
    std::uint64_t total(std::string_view name) const;
    std::size_t phase_count() const { return values_.size(); }

private:
    std::vector<std::string> names_;
    std::vector<Kind> kinds_;
    std::map<std::string, CounterId, std::less<>> index_;
    std::vector<std::vector<std::uint64_t>> values_ = std::vector<std::vector<std::uint64_t>>(1);
    std::size_t phase_ = 0;
};

enum class LockMode : std::uint8_t { Read, Write, Exclusive };
const char* to_string(LockMode m);

struct LockRecord {
    std::uint32_t lock = 0;  // index into LockStatsTable::lock_name
    LockMode mode = LockMode::Write;
    std::uint32_t site = 0;  // index into LockStatsTable::site_name
    std::uint32_t phase = 0;
    std::uint64_t acquisitions = 0;
    std::uint64_t contended = 0;  // had to wait
    Histogram wait_ps;            // every acquisition, 0 when uncontended
    Histogram hold_ps;
};

// Lock contention keyed by (lock, mode, call site, phase). Records have stable addresses so
// locks can cache pointers to them.
class LockStatsTable {
public:
    std::uint32_t lock_id(std::string_view name);  // a fresh id per lock object
    std::uint32_t site_id(std::string_view name);  // interned
    const std::string& lock_name(std::uint32_t id) const { return lock_names_[id]; }
    const std::string& site_name(std::uint32_t id) const { return site_names_[id]; }
    LockRecord& record(std::uint32_t lock, LockMode mode, std::uint32_t site, std::uint32_t phase);
    // In creation order, which is deterministic.
    const std::deque<LockRecord>& records() const { return records_; }
    // Merged over phases, sorted by (lock name, mode, site name).
    std::vector<LockRecord> totals() const;

private:
    std::vector<std::string> lock_names_;
    std::vector<std::string> site_names_;
    std::map<std::string, std::uint32_t, std::less<>> site_index_;
    std::deque<LockRecord> records_;
    std::map<std::tuple<std::uint32_t, LockMode, std::uint32_t, std::uint32_t>, LockRecord*> index_;
};

}  // namespace kvmsim::engine
