#include "sim/engine/simulator.hpp"

#include <array>
#include <cstdlib>
#include <new>
#include <stdexcept>

namespace kvmsim::engine {

namespace detail {
namespace {
// Coroutine frames are allocated per nested call (a fault handler per fault): a per-thread
// free list per 64-byte size class makes that cheap. Frame addresses never influence results.
constexpr std::size_t kClass = 64;
constexpr std::size_t kClasses = 32;  // frames up to 2 KiB are pooled
struct FramePool {
    std::array<void*, kClasses> free{};
    ~FramePool() {
        for (void*& head : free) {
            while (head) {
                void* next = *static_cast<void**>(head);
                ::operator delete(head);
                head = next;
            }
        }
    }
};
thread_local FramePool pool;
}  // namespace

void* frame_alloc(std::size_t n) {
    const std::size_t c = (n + kClass - 1) / kClass;
    if (c >= kClasses) return ::operator new(n);
    if (void* p = pool.free[c]) {
        pool.free[c] = *static_cast<void**>(p);
        return p;
    }
    return ::operator new(c * kClass);
}

void frame_free(void* p, std::size_t n) noexcept {
    const std::size_t c = (n + kClass - 1) / kClass;
    if (c >= kClasses) {
        ::operator delete(p);
        return;
    }
    *static_cast<void**>(p) = pool.free[c];
    pool.free[c] = p;
}
}  // namespace detail

Simulator::Simulator(std::uint64_t seed) : seed_(seed) {
    phases_.push_back(PhaseInfo{"", Time::zero()});
    fifo_.reserve(64);
}

Simulator::~Simulator() { destroy_processes(); }

void Simulator::destroy_processes() {
    tearing_down_ = true;
    for (auto& p : processes_) p->body_ = Task<void>{};
    queue_ = EventQueue{};
    fifo_.clear();
    fifo_head_ = 0;
    live_ = 0;
}

Process& Simulator::spawn(std::string name, Task<void> body) {
    const auto id = static_cast<std::uint32_t>(processes_.size());
    auto& p = *processes_.emplace_back(std::make_unique<Process>(std::move(name), id, std::move(body)));
    p.sim_ = this;
    p.body_.handle().promise().process = &p;
    p.body_.handle().promise().pid = id;
    by_pid_.push_back(&p);
    if (tracer_) tracer_->process_started(id, p.name_);
    ++live_;
    schedule_resume(now(), p.body_.handle(), &p, EventKind::Start);
    return p;
}

void Simulator::schedule(Time at, EventTarget& t, std::int8_t priority) {
    const std::uint64_t order = make_order(priority, EventKind::Callback);
    t.armed_ = order;
    push(Event{at.ps(), order, reinterpret_cast<std::uintptr_t>(&t) | 1, 0});
}

const char* to_string(EventKind k) {
    switch (k) {
        case EventKind::Start: return "start";
        case EventKind::Delay: return "delay";
        case EventKind::LockGrant: return "lock grant";
        case EventKind::Signal: return "signal";
        case EventKind::Barrier: return "barrier";
        case EventKind::Callback: return "callback";
        case EventKind::Transfer: return "transfer";
    }
    return "?";
}

void Simulator::past(const Event& e) const {
    throw std::logic_error("event scheduled in the past: at " + Time::ps(e.time).str() + ", now " +
                           Time::ps(now_).str());
}

std::uint64_t Simulator::fingerprint() const {
    std::uint64_t s = hash_ ^ events_;
    return splitmix64(s);
}

std::size_t Simulator::begin_phase(std::string name) {
    phases_.push_back(PhaseInfo{std::move(name), now()});
    phase_ = phases_.size() - 1;
    counters_.begin_phase(phase_);
    bandwidth_stats_.begin_phase(phase_, now());
    for (auto& f : phase_listeners_) f(phase_);
    return phase_;
}

void root_done(Process* p) noexcept {
    p->state_ = Process::State::Done;
    p->waiting_on_ = nullptr;
    p->sim_->finished_.push_back(p);
}

void Simulator::reap() {
    for (Process* p : finished_) {
        auto& promise = p->body_.handle().promise();
        if (promise.exception && !failure_) failure_ = promise.exception;
        p->body_ = Task<void>{};
        --live_;
    }
    finished_.clear();
}

// Inlined into run(), its only caller (one call and its register spills less per event).
[[gnu::always_inline]] inline void Simulator::dispatch(const Event& e) {
    const std::uintptr_t raw = e.target;
    std::uint64_t who;
    if (raw & 1) {
        auto* t = reinterpret_cast<EventTarget*>(raw & ~std::uintptr_t{1});
        if (t->armed_ != e.order) return;  // cancelled or rescheduled
        t->armed_ = 0;
        who = 0x80000000u | t->trace_id;
        current_pid_ = kNoPid;
    } else {
        who = e.pid;
        current_pid_ = e.pid;
    }
    now_ = e.time;
    inline_run_ = 0;
    ++events_;
    fold(static_cast<std::uint64_t>(e.time), (who << 8) | (e.order & 0xff));
    if (event_log_) event_log_->logged(LoggedEvent{e.time, static_cast<std::uint32_t>(who), static_cast<std::uint8_t>(e.order & 0xff)});
    if (raw & 1)
        reinterpret_cast<EventTarget*>(raw & ~std::uintptr_t{1})->fire(*this);
    else
        std::coroutine_handle<>::from_address(reinterpret_cast<void*>(raw)).resume();
    current_pid_ = kNoPid;
    if (!finished_.empty()) reap();
}

RunStatus Simulator::run(Time until) {
    stop_ = false;
    until_ = until.ps();
    for (;;) {
        if (stop_) return RunStatus::Stopped;
        Event e{};
        if (fifo_head_ < fifo_.size()) {
            // FIFO events are due now; so are the queue's events at its base (== now_).
            if (queue_.has_at_base() && queue_.top_at_base() < fifo_[fifo_head_]) {
                e = queue_.pop();
            } else {
                e = fifo_[fifo_head_++];
                if (fifo_head_ == fifo_.size()) {
                    fifo_.clear();
                    fifo_head_ = 0;
                }
            }
        } else if (!queue_.empty()) {
            if (queue_.top().time > until.ps()) {
                if (until.ps() > now_) now_ = until.ps();
                queue_.rebase(now_);
                return RunStatus::TimeLimit;
            }
            e = queue_.pop();
        } else {
            break;
        }
        // The frame the next event will likely resume was last used many events ago: ask for its
        // first lines now, so that they arrive while this one runs (a hint; no effect on results).
        // (An EventTarget's object is prefetched as well: cheaper than a branch on the tag bit.)
        if (const Event* n = queue_.next_hint()) {
            const char* fr = reinterpret_cast<const char*>(n->target & ~std::uintptr_t{1});
            __builtin_prefetch(fr);
            __builtin_prefetch(fr + 64);
            __builtin_prefetch(fr + 128);
            __builtin_prefetch(fr + 192);
        }
        dispatch(e);
        if (failure_) {
            auto f = std::exchange(failure_, nullptr);
            std::rethrow_exception(f);
        }
    }
    if (live_ > 0) {
        build_deadlock_report();
        return RunStatus::Deadlock;
    }
    return RunStatus::Completed;
}

}  // namespace kvmsim::engine
