#include "sim/engine/sync.hpp"

#include <algorithm>

namespace kvmsim::engine {

void LockGuard::unlock() {
    if (!lock_) return;
    LockBase* l = std::exchange(lock_, nullptr);
    if (l->sim_.tearing_down()) return;
    l->release(holder_, mode_, site_, since_);
}

LockBase::LockBase(Simulator& sim, std::string name, Time wake_latency)
    : sim_(sim), name_(std::move(name)), id_(sim.lock_stats().lock_id(name_)), wake_latency_(wake_latency) {}

LockBase::~LockBase() {
    // Frames still holding or awaiting this lock would touch it after it is gone.
    if ((!holders_.empty() || !waiters_.empty()) && !sim_.tearing_down()) sim_.destroy_processes();
}

void LockBase::holders(std::vector<std::pair<const Process*, std::string>>& out) const {
    for (const auto& [p, m] : holders_)
        if (p) out.emplace_back(p, to_string(m));
}

LockRecord& LockBase::record(LockMode m, std::uint32_t site) {
    const std::uint64_t key = (static_cast<std::uint64_t>(sim_.phase()) << 34) |
                              (static_cast<std::uint64_t>(site) << 2) | static_cast<std::uint64_t>(m);
    for (const RecordSlot& s : records_)
        if (s.key == key) return *s.rec;
    LockRecord& r = sim_.lock_stats().record(id_, m, site, static_cast<std::uint32_t>(sim_.phase()));
    records_.push_back(RecordSlot{key, &r});
    return r;
}

void LockBase::take(Process* p, LockMode m, std::uint32_t site) {
    if (m == LockMode::Read)
        ++readers_;
    else
        writer_ = true;
    holders_.emplace_back(p, m);
    ++record(m, site).acquisitions;
    if (Tracer* t = sim_.tracer(); t && p)
        t->lock_hold_begin(id_, name_, p->id(), to_string(m), sim_.lock_stats().site_name(site), sim_.now());
}

LockGuard LockBase::try_lock(LockMode mode, Site site) {
    if (!can_take_now(mode)) return {};
    Process* p = sim_.current();
    take(p, mode, site.id);
    return LockGuard(this, p, mode, site.id, sim_.now());
}

void LockBase::enqueue(Awaiter* aw, std::coroutine_handle<> h, Process* p) {
    waiters_.push_back(Waiter{aw, h, p, sim_.now()});
    if (p) p->block_on(this, to_string(aw->mode));
    if (Tracer* t = sim_.tracer(); t && p) {
        t->lock_wait_begin(id_, name_, p->id(), to_string(aw->mode), sim_.now());
        t->counter(name_ + " waiters", static_cast<double>(waiters_.size()), sim_.now());
    }
}

void LockBase::release(Process* p, LockMode m, std::uint32_t site, Time since) {
    record(m, site).hold_ps.record(static_cast<std::uint64_t>((sim_.now() - since).ps()));
    auto it = std::find(holders_.begin(), holders_.end(), std::make_pair(p, m));
    if (it != holders_.end()) holders_.erase(it);
    if (m == LockMode::Read)
        --readers_;
    else
        writer_ = false;
    Tracer* t = sim_.tracer();
    if (t && p) t->lock_hold_end(id_, p->id(), to_string(m), sim_.now());
    const std::size_t before = waiters_.size();
    grant_waiters();
    if (t && waiters_.size() != before) {
        for (std::size_t k = 0; k < granted_.size(); ++k)
            if (p && granted_[k]) t->lock_handoff(id_, p->id(), granted_[k]->id(), sim_.now());
        t->counter(name_ + " waiters", static_cast<double>(waiters_.size()), sim_.now());
    }
    granted_.clear();
}

void LockBase::grant_waiters() {
    while (!waiters_.empty()) {
        Waiter& w = waiters_.front();
        const LockMode m = w.aw->mode;
        if (writer_ || (m != LockMode::Read && readers_ > 0)) break;
        take(w.p, m, w.aw->site);
        LockRecord& r = record(m, w.aw->site);
        ++r.contended;
        r.wait_ps.record(static_cast<std::uint64_t>((sim_.now() - w.since).ps()));
        w.aw->granted_at = sim_.now();
        if (w.p) w.p->unblock();
        if (Tracer* t = sim_.tracer(); t && w.p) {
            t->lock_wait_end(id_, w.p->id(), sim_.now());
            granted_.push_back(w.p);
        }
        sim_.schedule_resume(sim_.now() + wake_latency_, w.h, w.p, EventKind::LockGrant);
        waiters_.pop_front();
        if (m != LockMode::Read) break;
    }
}

Barrier::Barrier(Simulator& sim, std::string name, std::size_t parties)
    : sim_(sim), name_(std::move(name)), parties_(parties) {}

bool Barrier::arrive() {
    if (waiters_.size() + 1 < parties_) return false;
    for (auto& [h, p] : waiters_) {
        p->unblock();
        sim_.schedule_resume(sim_.now(), h, p, EventKind::Barrier);
    }
    waiters_.clear();
    ++generation_;
    return true;
}

void Signal::notify_one() {
    if (waiters_.empty()) return;
    auto [h, p] = waiters_.front();
    waiters_.pop_front();
    p->unblock();
    sim_.schedule_resume(sim_.now(), h, p, EventKind::Signal);
}

void Signal::notify_all() {
    for (auto& [h, p] : waiters_) {
        p->unblock();
        sim_.schedule_resume(sim_.now(), h, p, EventKind::Signal);
    }
    waiters_.clear();
}

}  // namespace kvmsim::engine
