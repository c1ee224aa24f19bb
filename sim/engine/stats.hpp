// Statistics containers: log-bucket histograms with exact count/sum/min/max, named counters
// and lock-contention records, all kept per phase. Phases are merged exactly (never subtracted),
// so whole-run figures are the merge of the per-phase ones.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sim/engine/time.hpp"

namespace kvmsim::engine {

// Values are unsigned integers (picoseconds for times). A log-linear histogram of fixed size:
// values below 2^(SubBits+1) have a bucket each, then every power of two is split into 2^SubBits
// equal sub-buckets, so a bucket is at most 1/2^SubBits of its smallest value wide. Count, sum,
// min and max are exact. percentile(q) is the nearest-rank q-quantile's bucket midpoint, clamped
// to [min, max] (so rank 1 gives min and the last rank max exactly): within 1/2^(SubBits+1) of
// the true nearest-rank value, and exact below 2^(SubBits+1).
template <unsigned SubBits>
class LogHistogram {
public:
    static constexpr std::size_t kSub = std::size_t{1} << SubBits;
    static constexpr std::size_t kExact = 2 * kSub;  // values with a bucket each
    static constexpr std::size_t kBuckets = kExact + (64 - (SubBits + 1)) * kSub;

    void record(std::uint64_t v) {
        ++buckets_[bucket_of(v)];
        ++count_;
        sum_ += v;
        if (v < min_) min_ = v;
        if (v > max_) max_ = v;
    }
    void merge(const LogHistogram& o) {
        for (std::size_t i = 0; i < kBuckets; ++i) buckets_[i] += o.buckets_[i];
        count_ += o.count_;
        sum_ += o.sum_;
        min_ = std::min(min_, o.min_);
        max_ = std::max(max_, o.max_);
    }

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
        if (v < kExact) return static_cast<std::size_t>(v);
        const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(v));  // >= SubBits + 1
        return kExact + static_cast<std::size_t>(e - (SubBits + 1)) * kSub +
               static_cast<std::size_t>((v >> (e - SubBits)) & (kSub - 1));
    }
    static std::uint64_t bucket_low(std::size_t b) {
        if (b < kExact) return b;
        const std::size_t e = (b - kExact) / kSub + SubBits + 1;
        const std::uint64_t sub = (b - kExact) % kSub;
        return (kSub + sub) << (e - SubBits);
    }
    static std::uint64_t bucket_high(std::size_t b) {  // inclusive
        if (b < kExact) return b;
        const std::size_t e = (b - kExact) / kSub + SubBits + 1;
        return bucket_low(b) + (std::uint64_t{1} << (e - SubBits)) - 1;
    }

private:
    std::array<std::uint64_t, kBuckets> buckets_{};
    std::uint64_t count_ = 0;
    uint128_t sum_ = 0;
    std::uint64_t min_ = ~0ULL;
    std::uint64_t max_ = 0;
};

template <unsigned SubBits>
std::uint64_t LogHistogram<SubBits>::percentile(double q) const {
    if (count_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    // The rank of the q-quantile (nearest-rank definition), 1-based.
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_) + 0.999999999);
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    // The extremes are known exactly.
    if (rank == count_) return max_;
    if (rank == 1) return min_;
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
        seen += buckets_[b];
        if (seen >= rank) {
            const std::uint64_t lo = bucket_low(b), hi = bucket_high(b);
            const std::uint64_t mid = lo + (hi - lo) / 2;
            return std::clamp(mid, min_, max_);
        }
    }
    return max_;
}

// Lock and line waits: exact below 16, 8 sub-buckets per power of two (a percentile within
// 1/16 of the true value; 4 KiB).
using Histogram = LogHistogram<3>;
// Fault latencies, whose p99 and max variants are compared on: exact below 128 ps, 64
// sub-buckets per power of two (a percentile within 1/128 of the true value; 30 KiB).
using FineHistogram = LogHistogram<6>;

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

// A class of contended cache lines (LineClass: "struct_page_refcount", "mmap_lock") in a phase.
struct LineRecord {
    std::uint32_t line_class = 0;  // index into LineStatsTable::name
    std::uint32_t phase = 0;
    std::uint64_t operations = 0;
    std::uint64_t contended = 0;  // arrived while the line was busy
    Histogram wait_ps;            // contended operations: from arrival to the start of service
};

// Contended-line statistics keyed by (line class, phase), kept like LockStatsTable's: stable
// record addresses, creation order, totals merged exactly by name.
class LineStatsTable {
public:
    std::uint32_t class_id(std::string_view name);  // a fresh id per LineClass object
    const std::string& name(std::uint32_t id) const { return names_[id]; }
    LineRecord& record(std::uint32_t line_class, std::uint32_t phase);
    // In creation order, which is deterministic.
    const std::deque<LineRecord>& records() const { return records_; }
    // Merged over phases (and over classes of one name), sorted by name; phase set to 0.
    std::vector<LineRecord> totals() const;
    // Phase `phase`'s records, classes of one name merged, sorted by name.
    std::vector<LineRecord> in_phase(std::uint32_t phase) const;

private:
    std::vector<LineRecord> merged(bool all, std::uint32_t phase) const;
    std::vector<std::string> names_;
    std::deque<LineRecord> records_;
    std::map<std::pair<std::uint32_t, std::uint32_t>, LineRecord*> index_;
};

// A fair-shared resource (Bandwidth: "memory_bandwidth") in a phase. A transfer counts (bytes,
// transfers) in the phase it completes in; busy time (at least one transfer active) is split
// exactly at phase boundaries; peak_concurrency is the most transfers active at once during the
// phase (one still active from the phase before counts from the phase's start).
struct BandwidthRecord {
    std::uint32_t resource = 0;  // index into BandwidthStatsTable::name
    std::uint32_t phase = 0;
    std::uint64_t bytes = 0;
    std::uint64_t transfers = 0;
    Time busy{};
    std::uint32_t peak_concurrency = 0;
};

// Bandwidth statistics keyed by (resource, phase). The table also follows each resource's
// number of active transfers, so that the Simulator's begin_phase splits busy time exactly.
class BandwidthStatsTable {
public:
    std::uint32_t resource_id(std::string_view name);  // a fresh id per Bandwidth object
    const std::string& name(std::uint32_t id) const { return names_[id]; }
    // A transfer of resource `id` starts / finishes (having moved `bytes`) at `now`.
    void started(std::uint32_t id, Time now);
    void finished(std::uint32_t id, Time now, std::uint64_t bytes);
    // Called by Simulator::begin_phase: busy resources' time so far goes to the old phase.
    void begin_phase(std::size_t phase, Time now);
    // Adds the busy time of resources still active up to `now` (call before reading a run that
    // stopped with transfers in flight; calling it again later adds only the time since).
    void flush(Time now);
    std::uint32_t active(std::uint32_t id) const { return live_[id].active; }
    // In creation order, which is deterministic.
    const std::deque<BandwidthRecord>& records() const { return records_; }
    // Merged over phases (and over resources of one name), sorted by name; phase set to 0. The
    // peak is the largest phase (or resource) peak.
    std::vector<BandwidthRecord> totals() const;
    // Phase `phase`'s records, resources of one name merged (the peak is the largest), by name.
    std::vector<BandwidthRecord> in_phase(std::uint32_t phase) const;

private:
    struct Live {
        std::uint32_t active = 0;
        Time busy_since{};
        BandwidthRecord* rec = nullptr;  // the current phase's record, once made
    };
    BandwidthRecord& current(std::uint32_t id);
    std::vector<BandwidthRecord> merged(bool all, std::uint32_t phase) const;
    std::vector<std::string> names_;
    std::vector<Live> live_;
    std::uint32_t phase_ = 0;
    std::deque<BandwidthRecord> records_;
    std::map<std::pair<std::uint32_t, std::uint32_t>, BandwidthRecord*> index_;
};

}  // namespace kvmsim::engine
