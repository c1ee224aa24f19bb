#include "sim/workload/guest.hpp"

#include <algorithm>

#include "sim/vm/guest_tlb.hpp"

namespace kvmsim::workload {

std::uint64_t AccessStream::total() const {
    if (pattern == Pattern::Explicit) return accesses ? accesses->size() : 0;
    if (touch_back == 0) return pages();
    // sum over new pages j of 1 + min(touch_back, j)
    const std::uint64_t p = pages();
    const std::uint64_t ramp = std::min(p, touch_back + 1);  // pages j < ramp touch j back
    return p + ramp * (ramp - 1) / 2 + (p - ramp) * touch_back;
}

std::uint64_t AccessStream::pages() const {
    if (count) return count;
    switch (pattern) {
        case Pattern::Sequential: return stride ? npages / stride : 0;
        case Pattern::Random: return npages;
        case Pattern::BlockSplit: return block_pages ? (npages / block_pages) * (1 + block_pages / 2) : 0;
        case Pattern::WriteExec: return stride ? 2 * (npages / stride) : 0;
        case Pattern::Explicit: break;
    }
    return 0;
}

StreamCursor::StreamCursor(const AccessStream& s, engine::RandomStream rng)
    : s_(s), rng_(rng), total_(s.npages ? s.total() : 0), gap_(s.guest_time) {
    if (total_) compute();
}

void StreamCursor::compute() {
    if (s_.touch_back && i_ == 0) {  // the stream's first access (touch_back: Sequential only)
        j_ = b_ = 0;
        gfn_ = new_gfn_ = s_.base;
        set_access();
        return;
    }
    switch (s_.pattern) {
        case AccessStream::Pattern::Sequential:
            gfn_ = s_.base + (i_ * s_.stride) % s_.npages;
            break;
        case AccessStream::Pattern::Random:
            gfn_ = s_.base + rng_.uniform(s_.npages);
            break;
        case AccessStream::Pattern::BlockSplit: {
            const std::uint64_t per_block = 1 + s_.block_pages / 2;
            const std::uint64_t block = (i_ / per_block) % (s_.npages / s_.block_pages);
            k_ = i_ % per_block;
            const Gfn start = s_.base + block * s_.block_pages;
            gfn_ = k_ == 0 ? start : start + s_.block_pages / 2 + (k_ - 1);
            access_ = k_ == 0 ? Access::Write : Access::Read;
            return;
        }
        case AccessStream::Pattern::WriteExec:
            gfn_ = s_.base + ((i_ / 2) * s_.stride) % s_.npages;
            access_ = i_ % 2 == 0 ? Access::Write : Access::Exec;
            return;
        case AccessStream::Pattern::Explicit: {
            const ExplicitAccess& a = (*s_.accesses)[i_];
            gfn_ = a.gfn;
            access_ = a.access;
            gap_ = a.gap;
            return;
        }
    }
    set_access();
}

// compute() without divisions, for the common steps (millions of accesses per stage).
void StreamCursor::next() {
    if (s_.touch_back) [[unlikely]] {
        if (b_ < std::min(s_.touch_back, j_)) {
            ++b_;
            const std::uint64_t back = (b_ * s_.stride) % s_.npages;
            gfn_ = new_gfn_ >= s_.base + back ? new_gfn_ - back : new_gfn_ + s_.npages - back;
        } else {
            ++j_;
            b_ = 0;
            new_gfn_ = s_.base + (j_ * s_.stride) % s_.npages;
            gfn_ = new_gfn_;
        }
        set_access();
        return;
    }
    switch (s_.pattern) {
        case AccessStream::Pattern::Sequential:
            if (s_.stride >= s_.npages) {
                compute();
                return;
            }
            gfn_ += s_.stride;
            if (gfn_ >= s_.base + s_.npages) gfn_ -= s_.npages;
            break;
        case AccessStream::Pattern::Random:
            gfn_ = s_.base + rng_.uniform(s_.npages);
            break;
        case AccessStream::Pattern::BlockSplit:
            if (++k_ == 1 + s_.block_pages / 2) {
                compute();  // the next block (wrapping around the region)
                return;
            }
            gfn_ = k_ == 1 ? gfn_ + s_.block_pages / 2 : gfn_ + 1;
            access_ = Access::Read;
            return;
        case AccessStream::Pattern::WriteExec:
        case AccessStream::Pattern::Explicit:
            compute();
            return;
    }
    set_access();
}

void StreamCursor::set_access() {
    if (s_.mix) {
        const double u = rng_.uniform01();
        access_ = u < s_.write_fraction ? Access::Write
                  : u < s_.write_fraction + s_.exec_fraction ? Access::Exec
                                                             : Access::Read;
    } else if (s_.write_every) {
        access_ = i_ % s_.write_every == 0 ? Access::Write : Access::Read;
    } else {
        access_ = s_.access;
    }
}

void trace_counters(engine::Simulator& sim) {
    for (const char* name : {"pages_4k", "pages_2m", "pages_1g", "remote_tlb_flush"})
        sim.trace_counter(name, static_cast<double>(static_cast<std::int64_t>(sim.counters().total(name))));
}

GuestScheduler::GuestScheduler(engine::Simulator& sim, vm::MmuModel& model)
    : sim_(sim),
      model_(model),
      tlb_(model.guest_tlb()),
      assists_(model.hit_assists()),
      lookahead_(model.fault_lookahead()) {}

// A TLB hit costs nothing beyond the access's guest time; a miss, the model's refill walk, which
// fills the TLB. What the TLB holds changes only through the vCPU's own accesses and at engine
// events (the invalidations), so this is exact ahead of engine time, like hits().
Time GuestScheduler::translate(std::uint32_t vcpu, Gfn gfn) {
    if (tlb_->lookup(vcpu, gfn)) return Time::zero();
    return model_.tlb_refill(vcpu, gfn);
}

engine::Task<void> GuestScheduler::run(const vm::CpuContext& cpu, const AccessStream& stream, VcpuStats& stats) {
    // Only a stream that draws (random pattern, access mix) takes the seed.
    const bool draws = stream.pattern == AccessStream::Pattern::Random || stream.mix;
    StreamCursor cursor(stream, draws ? sim_.stream("guest", static_cast<std::uint64_t>(cpu.vcpu))
                                      : engine::RandomStream(0, "unused", 0));
    Vcpu v;
    v.cpu = &cpu;
    v.cursor = &cursor;
    v.stats = &stats;
    if (stream.start_delay > Time::zero()) co_await sim_.delay(stream.start_delay);
    while (!cursor.done()) {
        v.t = sim_.now();
        sim_.trace_begin("guest");
        // First in time order (nothing else due now): run ahead here, without the scheduler's
        // event; hand over to the scheduler at the horizon.
        const Time next = sim_.next_event_time();
        Ahead r = next > v.t ? run_ahead(v, next) : Ahead::Horizon;
        if (r == Ahead::Horizon) {
            co_await Enter{*this, v};
            sim_.trace_end();
            r = v.fault ? Ahead::Miss : Ahead::Done;
        } else {
            sim_.trace_end_at(v.t);
        }
        if (r == Ahead::Done) {
            if (v.t > sim_.now()) co_await sim_.delay(v.t - sim_.now());  // the last access completes
            break;
        }
        ++stats.faults;
        const bool held = model_.stream_held(static_cast<std::uint32_t>(cpu.vcpu));
        sim_.trace_begin_at("kvm_page_fault", v.t);
        if (const std::optional<Time> back = model_.page_fault_now(cpu, cursor.gfn(), cursor.access(), v.t))
            co_await sim_.delay(*back - sim_.now());
        else
            co_await model_.page_fault_at(sim_, cpu, cursor.gfn(), cursor.access(), v.t);
        // Back in the guest now (page_fault_now's end time, or page_fault_at's return).
        if (!held) record_fault_latency(sim_.now() - v.t);
        sim_.trace_end();
        if (sim_.tracer()) trace_counters(sim_);
    }
}

void GuestScheduler::record_fault_latency(Time latency) {
    const std::size_t phase = sim_.phase();
    // Grows once per phase, never per fault.
    if (fault_latency_.size() <= phase) fault_latency_.resize(phase + 1);
    fault_latency_[phase].record(static_cast<std::uint64_t>(latency.ps()));
}

const engine::FineHistogram& GuestScheduler::fault_latency(std::size_t phase) const {
    static const engine::FineHistogram empty;
    return phase < fault_latency_.size() ? fault_latency_[phase] : empty;
}

// The batch of fire() for a vCPU at the current time with no event due before it, so first in
// time order: hits up to the next event (which bounds every hitting vCPU's time too, as the
// scheduler is armed no later than its earliest vCPU).
GuestScheduler::Ahead GuestScheduler::run_ahead(Vcpu& v, Time next_event) {
    Time horizon = next_event;
    if (!heap_.empty()) horizon = std::min(horizon, heap_.front().t + lookahead_);
    ++batches_;
    StreamCursor& c = *v.cursor;
    const auto vcpu = static_cast<std::uint32_t>(v.cpu->vcpu);
    std::uint64_t n = 0;
    Ahead r = Ahead::Horizon;
    do {
        if (!model_.hits(vcpu, c.gfn(), c.access())) {
            r = Ahead::Miss;
            break;
        }
        if (tlb_) [[unlikely]]
            v.t += translate(vcpu, c.gfn());
        if (assists_) [[unlikely]]
            v.t += model_.take_hit_assist(vcpu);
        ++n;
        v.t += c.gap();
        c.advance();
        if (c.done()) {
            r = Ahead::Done;
            break;
        }
    } while (v.t < horizon);
    v.stats->accesses += n;
    return r;
}

void GuestScheduler::enter(Vcpu& v) {
    heap_.push_back(Entry{v.t, v.cpu->vcpu, &v});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
    // Re-arm now even if armed later: this vCPU's accesses start now.
    sim_.schedule(sim_.now(), *this);
    v.process->block_on(nullptr, "guest");
}

void GuestScheduler::release(Vcpu& v) {
    v.process->unblock();
    sim_.schedule_resume(v.t, v.h, v.process, engine::EventKind::Signal);
}

void GuestScheduler::fire(engine::Simulator& sim) {
    const Time now = sim.now();
    while (!heap_.empty()) {
        Vcpu& v = *heap_.front().v;
        if (v.t > now) {
            sim.schedule(v.t, *this);
            return;
        }
        const Time next_event = sim.next_event_time();
        if (next_event <= v.t) {
            // An engine event is due at this very time: it goes first.
            sim.schedule(v.t, *this, 1);
            return;
        }
        Time horizon = next_event;
        if (heap_.size() > 1) {
            const Entry* second = &heap_[1];
            if (heap_.size() > 2 && Later{}(*second, heap_[2])) second = &heap_[2];
            horizon = std::min(horizon, second->t + lookahead_);
        }
        // v stays at the front during its batch (nothing else touches the heap meanwhile), then
        // leaves it or moves down to its new place: one sift instead of a pop and a push.
        ++batches_;
        StreamCursor& c = *v.cursor;
        const std::uint32_t vcpu = static_cast<std::uint32_t>(v.cpu->vcpu);
        std::uint64_t n = 0;
        bool out = false;
        // v is first in (time, vCPU) order, so its current access always goes; later ones only
        // before the horizon.
        do {
            if (!model_.hits(vcpu, c.gfn(), c.access())) {
                v.fault = true;
                out = true;
                break;
            }
            if (tlb_) [[unlikely]]
                v.t += translate(vcpu, c.gfn());
            if (assists_) [[unlikely]]
                v.t += model_.take_hit_assist(vcpu);
            ++n;
            v.t += c.gap();
            c.advance();
            if (c.done()) {
                v.fault = false;
                out = true;
                break;
            }
        } while (v.t < horizon);
        v.stats->accesses += n;
        if (out) {
            std::pop_heap(heap_.begin(), heap_.end(), Later{});
            heap_.pop_back();
            release(v);
        } else {
            heap_.front().t = v.t;
            sift_down_front();
        }
    }
}

// The front's key grew: moves it down to its place (keys are unique, so this is the order a pop
// and a push would give).
void GuestScheduler::sift_down_front() {
    Entry* h = heap_.data();
    const std::size_t n = heap_.size();
    const Entry e = h[0];
    std::size_t i = 0;
    for (std::size_t c = 1; c < n; c = 2 * i + 1) {
        if (c + 1 < n && Later{}(h[c], h[c + 1])) ++c;
        if (!Later{}(e, h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

}  // namespace kvmsim::workload
