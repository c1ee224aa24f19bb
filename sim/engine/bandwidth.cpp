#include "sim/engine/bandwidth.hpp"

#include <algorithm>
#include <limits>

namespace kvmsim::engine {

namespace {
constexpr std::uint64_t kPsPerSecond = 1'000'000'000'000ULL;
constexpr std::uint64_t kNoCap = std::numeric_limits<std::uint64_t>::max();

std::uint64_t effective_cap(std::uint64_t cap) { return cap == 0 ? kNoCap : cap; }

// ceil(work / rate) picoseconds, or -1 when it would not fit in a Time.
std::int64_t finish_after(uint128_t work, std::uint64_t rate) {
    const uint128_t t = (work + rate - 1) / rate;
    if (t > static_cast<uint128_t>(std::numeric_limits<std::int64_t>::max())) return -1;
    return static_cast<std::int64_t>(t);
}
}  // namespace

Bandwidth::Bandwidth(Simulator& sim, std::string name, std::uint64_t bytes_per_second)
    : sim_(sim), name_(std::move(name)), capacity_(bytes_per_second),
      id_(sim.bandwidth_stats().resource_id(name_)) {
    completion_.bw = this;
    completion_.trace_id = 0x40000000u | id_;
}

Bandwidth::~Bandwidth() {
    // Suspended frames wait for this resource's event: end them while it still exists.
    if (!flows_.empty() && !sim_.tearing_down()) sim_.destroy_processes();
}

Task<void> Bandwidth::transfer(std::uint64_t bytes, std::uint64_t cap) {
    co_await StartAwaiter{*this, bytes, cap};
}

Time Bandwidth::alone(std::uint64_t bytes, std::uint64_t cap) const {
    const std::uint64_t rate = std::min(effective_cap(cap), capacity_ == 0 ? kNoCap : capacity_);
    if (bytes == 0 || rate == kNoCap) return Time::zero();
    const std::int64_t t = finish_after(static_cast<uint128_t>(bytes) * kPsPerSecond, rate);
    return t < 0 ? Time::max() : Time::ps(t);
}

bool Bandwidth::instant(std::uint64_t bytes, std::uint64_t cap) {
    if (bytes == 0) return true;
    if (capacity_ != 0 || cap != 0) return false;
    BandwidthStatsTable& st = sim_.bandwidth_stats();
    st.started(id_, sim_.now());
    st.finished(id_, sim_.now(), bytes);
    return true;
}

void Bandwidth::start(std::uint64_t bytes, std::uint64_t cap, std::coroutine_handle<> h, std::uint32_t pid) {
    advance();
    flows_.push_back(Flow{seq_++, static_cast<uint128_t>(bytes) * kPsPerSecond, bytes, cap, 0, h, pid});
    sim_.bandwidth_stats().started(id_, sim_.now());
    reshare();
    reschedule();
}

void Bandwidth::complete() {
    advance();
    // Completed flows leave in start order; their processes resume in that order.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < flows_.size(); ++i) {
        Flow& f = flows_[i];
        if (f.remaining == 0) {
            sim_.bandwidth_stats().finished(id_, sim_.now(), f.bytes);
            sim_.schedule_resume_pid(sim_.now(), f.h, f.pid, EventKind::Transfer);
        } else {
            flows_[kept++] = f;
        }
    }
    flows_.resize(kept);
    reshare();
    reschedule();
}

void Bandwidth::advance() {
    const Time now = sim_.now();
    const auto dt = static_cast<uint128_t>((now - last_).ps());
    last_ = now;
    if (dt == 0) return;
    for (Flow& f : flows_) {
        const uint128_t moved = static_cast<uint128_t>(f.rate) * dt;
        f.remaining = moved >= f.remaining ? 0 : f.remaining - moved;
    }
}

void Bandwidth::reshare() {
    if (flows_.empty()) return;
    if (capacity_ == 0) {  // unlimited: every (capped) flow at its cap
        for (Flow& f : flows_) f.rate = f.cap;
        return;
    }
    // Water-filling: visit the flows by increasing cap; a flow whose cap is within the fair
    // share of what is left takes its cap, and the rest split what remains evenly.
    order_.resize(flows_.size());
    for (std::uint32_t i = 0; i < order_.size(); ++i) order_[i] = i;
    std::sort(order_.begin(), order_.end(), [this](std::uint32_t a, std::uint32_t b) {
        const std::uint64_t ca = effective_cap(flows_[a].cap), cb = effective_cap(flows_[b].cap);
        return ca != cb ? ca < cb : a < b;
    });
    std::uint64_t left = capacity_;
    std::size_t k = 0;
    for (; k < order_.size(); ++k) {
        Flow& f = flows_[order_[k]];
        const std::uint64_t share = left / (order_.size() - k);
        if (f.cap == 0 || f.cap > share) break;
        f.rate = f.cap;
        left -= f.cap;
    }
    if (k == order_.size()) return;
    // The uneven remainder goes one byte/s each to the earliest started (flows_ is in start
    // order, so visit the rest by index).
    const std::uint64_t n = order_.size() - k;
    const std::uint64_t share = left / n;
    std::uint64_t extra = left % n;
    std::sort(order_.begin() + static_cast<std::ptrdiff_t>(k), order_.end());
    for (std::size_t j = k; j < order_.size(); ++j) {
        Flow& f = flows_[order_[j]];
        f.rate = share + (extra > 0 ? 1 : 0);
        if (extra > 0) --extra;
    }
}

void Bandwidth::reschedule() {
    std::int64_t next = -1;
    for (const Flow& f : flows_) {
        if (f.rate == 0) continue;  // starved: waits for a re-share
        const std::int64_t t = finish_after(f.remaining, f.rate);
        if (t >= 0 && (next < 0 || t < next)) next = t;
    }
    if (next < 0) {
        sim_.cancel(completion_);
        return;
    }
    const std::int64_t now = sim_.now().ps();
    if (next > std::numeric_limits<std::int64_t>::max() - now) {
        sim_.cancel(completion_);
        return;
    }
    const Time at = Time::ps(now + next);
    if (completion_.pending() && at == scheduled_at_) return;  // no stale event to leave behind
    scheduled_at_ = at;
    sim_.schedule(at, completion_);
}

}  // namespace kvmsim::engine
