#include "sim/engine/stats.hpp"

#include <algorithm>
#include <stdexcept>
#include <tuple>

namespace kvmsim::engine {

CounterId Counters::id(std::string_view name, Kind kind) {
    if (auto it = index_.find(name); it != index_.end()) {
        if (kinds_[it->second] != kind)
            throw std::logic_error("counter '" + std::string(name) + "' registered with two kinds");
        return it->second;
    }
    const auto id = static_cast<CounterId>(names_.size());
    names_.emplace_back(name);
    kinds_.push_back(kind);
    index_.emplace(std::string(name), id);
    for (auto& v : values_) v.resize(names_.size(), 0);
    return id;
}

void Counters::begin_phase(std::size_t phase) {
    if (values_.size() <= phase) values_.resize(phase + 1, std::vector<std::uint64_t>(names_.size(), 0));
    phase_ = phase;
}

std::uint64_t Counters::value(CounterId id, std::size_t phase) const {
    if (phase >= values_.size() || id >= names_.size()) return 0;
    if (kinds_[id] != Kind::Gauge) return values_[phase][id];
    std::uint64_t level = 0;  // net changes up to the end of `phase`
    for (std::size_t p = 0; p <= phase; ++p) level += values_[p][id];
    return level;
}

std::uint64_t Counters::total(CounterId id) const {
    std::uint64_t t = 0;
    for (const auto& v : values_) t = kinds_[id] == Kind::Max ? std::max(t, v[id]) : t + v[id];
    return t;
}

std::uint64_t Counters::total(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? 0 : total(it->second);
}

const char* to_string(LockMode m) {
    switch (m) {
        case LockMode::Read: return "read";
        case LockMode::Write: return "write";
        case LockMode::Exclusive: return "exclusive";
    }
    return "?";
}

std::uint32_t LockStatsTable::lock_id(std::string_view name) {
    lock_names_.emplace_back(name);
    return static_cast<std::uint32_t>(lock_names_.size() - 1);
}

std::uint32_t LockStatsTable::site_id(std::string_view name) {
    if (auto it = site_index_.find(name); it != site_index_.end()) return it->second;
    const auto id = static_cast<std::uint32_t>(site_names_.size());
    site_names_.emplace_back(name);
    site_index_.emplace(std::string(name), id);
    return id;
}

LockRecord& LockStatsTable::record(std::uint32_t lock, LockMode mode, std::uint32_t site,
                                   std::uint32_t phase) {
    const auto key = std::make_tuple(lock, mode, site, phase);
    if (auto it = index_.find(key); it != index_.end()) return *it->second;
    LockRecord& r = records_.emplace_back();
    r.lock = lock;
    r.mode = mode;
    r.site = site;
    r.phase = phase;
    index_.emplace(key, &r);
    return r;
}

std::vector<LockRecord> LockStatsTable::totals() const {
    // Two lock objects may share a name (one per VM); their records merge.
    std::map<std::tuple<std::string, LockMode, std::string>, LockRecord> merged;
    for (const LockRecord& r : records_) {
        auto [it, fresh] = merged.try_emplace({lock_names_[r.lock], r.mode, site_names_[r.site]}, r);
        if (!fresh) {
            it->second.acquisitions += r.acquisitions;
            it->second.contended += r.contended;
            it->second.wait_ps.merge(r.wait_ps);
            it->second.hold_ps.merge(r.hold_ps);
        }
    }
    std::vector<LockRecord> out;
    out.reserve(merged.size());
    for (auto& [k, r] : merged) {
        r.phase = 0;
        out.push_back(r);
    }
    return out;
}

std::uint32_t LineStatsTable::class_id(std::string_view name) {
    names_.emplace_back(name);
    return static_cast<std::uint32_t>(names_.size() - 1);
}

LineRecord& LineStatsTable::record(std::uint32_t line_class, std::uint32_t phase) {
    const auto key = std::make_pair(line_class, phase);
    if (auto it = index_.find(key); it != index_.end()) return *it->second;
    LineRecord& r = records_.emplace_back();
    r.line_class = line_class;
    r.phase = phase;
    index_.emplace(key, &r);
    return r;
}

std::vector<LineRecord> LineStatsTable::totals() const { return merged(true, 0); }
std::vector<LineRecord> LineStatsTable::in_phase(std::uint32_t phase) const { return merged(false, phase); }

std::vector<LineRecord> LineStatsTable::merged(bool all, std::uint32_t phase) const {
    std::map<std::string, LineRecord> by_name;
    for (const LineRecord& r : records_) {
        if (!all && r.phase != phase) continue;
        auto [it, fresh] = by_name.try_emplace(names_[r.line_class], r);
        if (!fresh) {
            it->second.operations += r.operations;
            it->second.contended += r.contended;
            it->second.wait_ps.merge(r.wait_ps);
        }
    }
    std::vector<LineRecord> out;
    out.reserve(by_name.size());
    for (auto& [k, r] : by_name) {
        r.phase = all ? 0 : phase;
        out.push_back(r);
    }
    return out;
}

std::uint32_t BandwidthStatsTable::resource_id(std::string_view name) {
    names_.emplace_back(name);
    live_.emplace_back();
    return static_cast<std::uint32_t>(names_.size() - 1);
}

BandwidthRecord& BandwidthStatsTable::current(std::uint32_t id) {
    Live& l = live_[id];
    if (l.rec && l.rec->phase == phase_) return *l.rec;
    const auto key = std::make_pair(id, phase_);
    auto it = index_.find(key);
    if (it == index_.end()) {
        BandwidthRecord& r = records_.emplace_back();
        r.resource = id;
        r.phase = phase_;
        it = index_.emplace(key, &r).first;
    }
    l.rec = it->second;
    return *l.rec;
}

void BandwidthStatsTable::started(std::uint32_t id, Time now) {
    Live& l = live_[id];
    BandwidthRecord& r = current(id);
    if (l.active++ == 0) l.busy_since = now;
    r.peak_concurrency = std::max(r.peak_concurrency, l.active);
}

void BandwidthStatsTable::finished(std::uint32_t id, Time now, std::uint64_t bytes) {
    Live& l = live_[id];
    BandwidthRecord& r = current(id);
    r.bytes += bytes;
    ++r.transfers;
    if (--l.active == 0) r.busy += now - l.busy_since;
}

void BandwidthStatsTable::begin_phase(std::size_t phase, Time now) {
    for (std::uint32_t id = 0; id < live_.size(); ++id) {
        Live& l = live_[id];
        if (l.active == 0) continue;
        current(id).busy += now - l.busy_since;
        l.busy_since = now;
    }
    phase_ = static_cast<std::uint32_t>(phase);
    for (std::uint32_t id = 0; id < live_.size(); ++id) {
        Live& l = live_[id];
        if (l.active == 0) continue;
        BandwidthRecord& r = current(id);
        r.peak_concurrency = std::max(r.peak_concurrency, l.active);
    }
}

void BandwidthStatsTable::flush(Time now) {
    for (std::uint32_t id = 0; id < live_.size(); ++id) {
        Live& l = live_[id];
        if (l.active == 0) continue;
        current(id).busy += now - l.busy_since;
        l.busy_since = now;
    }
}

std::vector<BandwidthRecord> BandwidthStatsTable::totals() const { return merged(true, 0); }
std::vector<BandwidthRecord> BandwidthStatsTable::in_phase(std::uint32_t phase) const {
    return merged(false, phase);
}

std::vector<BandwidthRecord> BandwidthStatsTable::merged(bool all, std::uint32_t phase) const {
    std::map<std::string, BandwidthRecord> by_name;
    for (const BandwidthRecord& r : records_) {
        if (!all && r.phase != phase) continue;
        auto [it, fresh] = by_name.try_emplace(names_[r.resource], r);
        if (!fresh) {
            it->second.bytes += r.bytes;
            it->second.transfers += r.transfers;
            it->second.busy += r.busy;
            it->second.peak_concurrency = std::max(it->second.peak_concurrency, r.peak_concurrency);
        }
    }
    std::vector<BandwidthRecord> out;
    out.reserve(by_name.size());
    for (auto& [k, r] : by_name) {
        r.phase = all ? 0 : phase;
        out.push_back(r);
    }
    return out;
}

}  // namespace kvmsim::engine
