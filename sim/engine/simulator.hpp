// The discrete-event simulator: simulated time, the event queue, processes and their wakeups,
// phases, statistics and the run fingerprint. It knows nothing of KVM.
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/engine/random.hpp"
#include "sim/engine/stats.hpp"
#include "sim/engine/task.hpp"
#include "sim/engine/time.hpp"
#include "sim/engine/trace.hpp"

namespace kvmsim::engine {

class Simulator;

// Kinds of events, part of the fingerprint.
enum class EventKind : std::uint8_t { Start = 1, Delay, LockGrant, Signal, Barrier, Callback, Transfer };
const char* to_string(EventKind k);

// An event, ordered by (time, order); order packs (priority, insertion sequence, kind) so that a
// single integer comparison breaks ties. Priority: lower runs first; default 0. The target is a
// coroutine frame to resume in process `pid`, or (tagged with the low bit) an EventTarget.
// Dispatching a coroutine event touches only the frame, never the Process object.
struct Event {
    std::int64_t time;
    std::uint64_t order;
    std::uintptr_t target;
    std::uint32_t pid;

    friend bool operator<(const Event& a, const Event& b) {
        return a.time < b.time || (a.time == b.time && a.order < b.order);
    }
    EventKind kind() const { return static_cast<EventKind>(order & 0xff); }
};

// A callback event source. At most one pending event per target; schedule() again replaces it
// (the earlier one is dropped when popped), cancel() drops it. Costs nothing for other events.
class EventTarget {
public:
    virtual ~EventTarget() = default;
    virtual void fire(Simulator& sim) = 0;
    bool pending() const { return armed_ != 0; }
    // Id reported in the fingerprint for this target's events.
    std::uint32_t trace_id = 0;

private:
    friend class Simulator;
    std::uint64_t armed_ = 0;
};

// A radix heap (Ahuja et al.) over event times: valid because simulated time never goes back,
// so every pushed time is >= the last popped one. Bucket k > 0 holds events whose time differs
// from the last popped time first in bit k-1; bucket 0 holds events at exactly that time, kept
// as a min-heap by `order` so priority and insertion order break ties. Pushes are O(1); each
// event moves to a lower bucket a few times at most, over memory read in sequence - several
// times fewer cache misses and branch mispredictions than a binary or 4-ary heap.
// With few pending events (a VM's vCPUs, a handful of actors) a plain 4-ary heap over (time,
// order), branch-free on the way down, is cheaper than the buckets' moves: the queue is one
// while it holds at most kToRadix events, and goes back to one below kToHeap. Either way events
// come out in (time, order) order, so the choice never changes a run.
class EventQueue {
public:
    static constexpr std::size_t kToRadix = 512;
    static constexpr std::size_t kToHeap = 128;

    bool empty() const { return size_ == 0; }
    std::size_t size() const { return size_; }
    void push(const Event& e) {
        ++size_;
        if (heap_mode_) {
            heap_push(e);
            if (size_ > kToRadix) to_radix();
            return;
        }
        push_radix(e);
    }
    // The smallest event; the queue must not be empty. Moves the base to its time, so the
    // caller must dispatch it, or rebase() to a time no later than it.
    const Event& top() {
        if (heap_mode_) return h_.front();
        if (b_[0].empty()) refill();
        return b_[0].front();
    }
    // Events at exactly the base time, without moving the base.
    bool has_at_base() const { return heap_mode_ ? !h_.empty() && h_.front().time == last_ : !b_[0].empty(); }
    const Event& top_at_base() const { return heap_mode_ ? h_.front() : b_[0].front(); }
    // Re-buckets everything around base t (every event must be at t or later).
    void rebase(std::int64_t t) {
        last_ = t;
        if (heap_mode_) return;
        std::vector<Event> all = take_buckets();
        min_known_ = false;
        for (const Event& e : all) push_radix(e);
    }
    Event pop() {
        --size_;
        if (heap_mode_) {
            const Event e = heap_pop();
            last_ = e.time;
            return e;
        }
        if (b_[0].empty()) refill();
        std::pop_heap(b_[0].begin(), b_[0].end(), later);
        const Event e = b_[0].back();
        b_[0].pop_back();
        min_known_ = false;
        if (size_ < kToHeap) to_heap();
        return e;
    }
    // In heap mode, the event that would come out next if nothing were pushed first (null in
    // radix mode or when empty): a hint only, for prefetching.
    const Event* next_hint() const { return heap_mode_ && !h_.empty() ? h_.data() : nullptr; }
    // In heap mode (where it is one comparison), whether nothing is pending at or before `t`;
    // false in radix mode. Then rebase(t) is cheap: the base only moves.
    bool before_all(std::int64_t t) const { return heap_mode_ && (h_.empty() || t < h_.front().time); }
    // Smallest time without changing anything (a scan of one bucket, remembered until a pop).
    std::int64_t min_time() const {
        if (heap_mode_) return h_.front().time;
        if (!b_[0].empty()) return b_[0].front().time;
        if (!min_known_) {
            min_ = min_of(b_[__builtin_ctzll(mask_) + 1]);
            min_known_ = true;
        }
        return min_;
    }

private:
    static bool later(const Event& a, const Event& b) { return a.order > b.order; }
    // The heap mode's min-heap by (time, order), written out (rather than std::push_heap
    // and pop_heap) so that the new event's key stays in registers: the library's versions copy
    // it through memory and read it back in halves, which the store buffer cannot forward.
    // Keys are unique (order holds a sequence number), so any correct heap pops the same order.
    // (time, order) as one unsigned 128-bit key (times are never negative): a comparison is a
    // subtraction with borrow, no branch and no second compare.
    __extension__ using Key = unsigned __int128;
    static Key key(std::int64_t t, std::uint64_t o) { return (Key{static_cast<std::uint64_t>(t)} << 64) | o; }
    static Key key(const Event& e) { return key(e.time, e.order); }
    static bool less_key(std::int64_t ta, std::uint64_t oa, const Event& b) { return key(ta, oa) < key(b); }
    // The heap is 4-ary (children of i: 4i+1 .. 4i+4): half the levels of a binary heap for the
    // same events, so half the dependent steps down and up, each choosing among four children
    // without a branch.
    static constexpr std::size_t kArity = 4;
    void heap_push(const Event& e) {
        const std::int64_t t = e.time;
        const std::uint64_t o = e.order;
        std::size_t i = h_.size();
        h_.emplace_back();
        Event* h = h_.data();
        while (i > 0) {
            const std::size_t p = (i - 1) / kArity;
            if (!less_key(t, o, h[p])) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = e;
    }
    // (time, order) < as bit operations, so that the child choice compiles without a branch.
    static bool less_nb(const Event& a, const Event& b) { return key(a) < key(b); }
    // Bottom-up: the hole goes down to a leaf by the smallest child (picked without a branch),
    // then the last event moves up from there, usually a level or none. One comparison per level
    // instead of two, and the one per level whose outcome is random costs no misprediction.
    Event heap_pop() {
        Event* h = h_.data();
        const Event top = h[0];
        const std::size_t n = h_.size() - 1;
        if (n > 0) {
            const Event last = h[n];
            std::size_t i = 0;
            std::size_t c = 1;
            for (; c + kArity <= n; c = kArity * i + 1) {  // all four children there
                const std::size_t a = c + less_nb(h[c + 1], h[c]);
                const std::size_t b = c + 2 + less_nb(h[c + 3], h[c + 2]);
                const std::size_t m = less_nb(h[b], h[a]) ? b : a;
                h[i] = h[m];
                i = m;
            }
            if (c < n) {  // a last node with one to three children
                std::size_t m = c;
                for (std::size_t k = c + 1; k < n; ++k) m = less_nb(h[k], h[m]) ? k : m;
                h[i] = h[m];
                i = m;
            }
            while (i > 0) {
                const std::size_t p = (i - 1) / kArity;
                if (!less_key(last.time, last.order, h[p])) break;
                h[i] = h[p];
                i = p;
            }
            h[i] = last;
        }
        h_.pop_back();
        return top;
    }
    static std::int64_t min_of(const std::vector<Event>& v) {
        std::int64_t m = v.front().time;
        for (const Event& e : v) m = e.time < m ? e.time : m;
        return m;
    }
    int bucket(std::int64_t t) const {
        const auto x = static_cast<std::uint64_t>(t ^ last_);
        return x == 0 ? 0 : 64 - __builtin_clzll(x);
    }
    void push_radix(const Event& e) {
        if (min_known_ && e.time < min_) min_ = e.time;
        const int k = bucket(e.time);
        if (k == 0) {
            b_[0].push_back(e);
            std::push_heap(b_[0].begin(), b_[0].end(), later);
        } else {
            b_[k].push_back(e);
            mask_ |= 1ULL << (k - 1);
        }
    }
    void refill() {
        const int k = __builtin_ctzll(mask_) + 1;
        std::vector<Event>& v = b_[k];
        last_ = min_of(v);
        for (const Event& e : v) {
            const int j = bucket(e.time);
            b_[j].push_back(e);
            if (j) mask_ |= 1ULL << (j - 1);
        }
        v.clear();
        mask_ &= ~(1ULL << (k - 1));
        if (b_[0].size() > 1) std::make_heap(b_[0].begin(), b_[0].end(), later);
    }
    std::vector<Event> take_buckets() {
        std::vector<Event> all;
        all.reserve(size_);
        for (auto& v : b_) {
            all.insert(all.end(), v.begin(), v.end());
            v.clear();
        }
        mask_ = 0;
        return all;
    }
    void to_radix() {
        heap_mode_ = false;
        min_known_ = false;
        for (const Event& e : h_) push_radix(e);
        h_.clear();
    }
    void to_heap() {
        heap_mode_ = true;
        std::vector<Event> all = take_buckets();
        h_.clear();
        for (const Event& e : all) heap_push(e);
    }

    bool heap_mode_ = true;
    std::vector<Event> h_;  // heap mode: a 4-ary min-heap by (time, order)
    std::vector<Event> b_[65];
    std::uint64_t mask_ = 0;  // bit k-1 set: bucket k non-empty
    std::int64_t last_ = 0;
    std::size_t size_ = 0;
    mutable std::int64_t min_ = 0;  // min_time() of a non-empty queue, while min_known_
    mutable bool min_known_ = false;
};

enum class RunStatus : std::uint8_t {
    Completed,  // no event left, no process blocked
    Deadlock,   // no event left, some process blocked: see deadlock()
    Stopped,    // stop() was called
    TimeLimit,  // the next event lies after `until`
};

struct DeadlockReport {
    struct Blocked {
        std::string process;
        std::string waits_for;  // target name
        std::string mode;
        std::vector<std::pair<std::string, std::string>> held_by;  // (process, mode)
    };
    std::vector<Blocked> blocked;     // every blocked process, by process id
    std::vector<std::string> cycle;   // process names around a wait-for cycle, empty if none
    std::vector<std::string> cycle_locks;  // what each process in `cycle` waits for
    std::string text;                 // human-readable
};

struct PhaseInfo {
    std::string name;
    Time start;
};

// A site (call-site tag for lock statistics), interned per simulator.
struct Site {
    std::uint32_t id = 0;
};

class Simulator {
public:
    explicit Simulator(std::uint64_t seed = 0);
    ~Simulator();
    Simulator(const Simulator&) = delete;
    Simulator& operator=(const Simulator&) = delete;

    Time now() const { return Time::ps(now_); }
    std::uint64_t seed() const { return seed_; }
    // The only way a run's seed reaches it: a run that never asks for a stream gives the same
    // result under every seed (seed_used() says so, and compare runs such a variant once).
    RandomStream stream(std::string_view name, std::uint64_t index = 0) const {
        seed_used_ = true;
        return RandomStream(seed_, name, index);
    }
    bool seed_used() const { return seed_used_; }

    // Processes start at the current time, in spawn order.
    Process& spawn(std::string name, Task<void> body);
    const std::vector<std::unique_ptr<Process>>& processes() const { return processes_; }
    // The process whose coroutine is running, null in callbacks and outside run().
    Process* current() const { return current_pid_ == kNoPid ? nullptr : by_pid_[current_pid_]; }

    struct DelayAwaiter {
        Simulator& sim;
        Time d;
        bool await_ready() noexcept { return sim.resume_inline(sim.now() + d, EventKind::Delay); }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            sim.schedule_resume_pid(sim.now() + d, h, h.promise().pid, EventKind::Delay);
        }
        void await_resume() const noexcept {}
    };
    // Suspends the calling process for `d` (0: after the other events due now).
    DelayAwaiter delay(Time d) { return DelayAwaiter{*this, d}; }

    void schedule(Time at, EventTarget& t, std::int8_t priority = 0);
    void cancel(EventTarget& t) { t.armed_ = 0; }

    // Wakes a suspended coroutine at `at`. Used by awaitables.
    void schedule_resume_pid(Time at, std::coroutine_handle<> h, std::uint32_t pid, EventKind kind,
                             std::int8_t priority = 0) {
        push(Event{at.ps(), make_order(priority, kind), reinterpret_cast<std::uintptr_t>(h.address()), pid});
    }
    void schedule_resume(Time at, std::coroutine_handle<> h, Process* p, EventKind kind,
                         std::int8_t priority = 0) {
        schedule_resume_pid(at, h, p->id(), kind, priority);
    }

    // The running process's wakeup (at `at`, of `kind`, default priority), processed at once
    // when it would be the next event run() takes anyway: nothing is due now or pending before
    // `at` (in the small queue's heap mode, where that is one comparison), the run is not
    // stopping and `at` is within its limit. Then the time, the event count, the fingerprint
    // and the event log move exactly as dispatching it would, and the caller goes on without
    // suspending (true); otherwise it must schedule the wakeup (false). Saves the queue's push
    // and pop and the resumption of a frame, never changes a run.
    bool resume_inline(Time at, EventKind kind) noexcept {
        const std::int64_t t = at.ps();
        // The queue first: with many processes it is what usually says no.
        // A time in the past is left to schedule_resume, which reports it. Every kMaxInlineRun-th
        // wakeup in a row is queued anyway: a process that never suspends keeps its stack, and a
        // nested task's completion resumes its parent on it (a tail call only when optimized).
        if (!queue_.before_all(t) || t < now_ || current_pid_ == kNoPid || fifo_head_ != fifo_.size() || stop_ ||
            t > until_ || !finished_.empty() || ++inline_run_ >= kMaxInlineRun)
            return false;
        queue_.rebase(t);
        ++events_inline_;
        now_ = t;
        ++events_;
        ++seq_;  // the sequence number the queued event would have taken
        fold(static_cast<std::uint64_t>(t), (std::uint64_t{current_pid_} << 8) | static_cast<std::uint64_t>(kind));
        if (event_log_) event_log_->logged(LoggedEvent{t, current_pid_, static_cast<std::uint8_t>(kind)});
        return true;
    }

    RunStatus run(Time until = Time::max());
    void stop() { stop_ = true; }
    // The time of the next pending event, or Time::max() when none.
    Time next_event_time() const {
        if (fifo_head_ < fifo_.size()) return Time::ps(now_);
        return queue_.empty() ? Time::max() : Time::ps(queue_.min_time());
    }
    std::size_t pending_events() const { return queue_.size() + (fifo_.size() - fifo_head_); }

    std::uint64_t events_processed() const { return events_; }
    // Of those, the wakeups resume_inline() processed without queueing (not part of any result).
    std::uint64_t events_inline() const { return events_inline_; }
    // 64-bit hash chained over every processed event's (time, process, kind).
    std::uint64_t fingerprint() const;
    const DeadlockReport* deadlock() const { return deadlock_ ? &*deadlock_ : nullptr; }

    // Phases: statistics recorded from now on go to a new phase slot. Phase 0 is the implicit
    // phase before the first begin_phase.
    std::size_t begin_phase(std::string name);
    std::size_t phase() const { return phase_; }
    const std::vector<PhaseInfo>& phases() const { return phases_; }
    // Called with the new phase index by begin_phase (components keeping their own stats).
    void on_phase_change(std::function<void(std::size_t)> f) { phase_listeners_.push_back(std::move(f)); }

    Counters& counters() { return counters_; }
    const Counters& counters() const { return counters_; }
    LockStatsTable& lock_stats() { return lock_stats_; }
    const LockStatsTable& lock_stats() const { return lock_stats_; }
    Site site(std::string_view name) { return Site{lock_stats_.site_id(name)}; }
    // The machine's shared resources (contended_line.hpp, bandwidth.hpp), per phase.
    LineStatsTable& line_stats() { return line_stats_; }
    const LineStatsTable& line_stats() const { return line_stats_; }
    BandwidthStatsTable& bandwidth_stats() { return bandwidth_stats_; }
    const BandwidthStatsTable& bandwidth_stats() const { return bandwidth_stats_; }

    // Optional tracing and event logging (null: off, at the cost of a branch).
    void set_tracer(Tracer* t) { tracer_ = t; }
    Tracer* tracer() const { return tracer_; }
    void set_event_log(EventLog* log) { event_log_ = log; }
    // A slice on the current process's track (no-op without a tracer or outside a process).
    void trace_begin(std::string_view name) {
        if (tracer_ && current_pid_ != kNoPid) tracer_->slice_begin(current_pid_, name, now());
    }
    void trace_end() {
        if (tracer_ && current_pid_ != kNoPid) tracer_->slice_end(current_pid_, now());
    }
    // The same at a later time `t` of the current process (one that runs ahead of events, e.g.
    // a vCPU's hits); slices on a track must still be given in time order.
    void trace_begin_at(std::string_view name, Time t) {
        if (tracer_ && current_pid_ != kNoPid) tracer_->slice_begin(current_pid_, name, t);
    }
    void trace_end_at(Time t) {
        if (tracer_ && current_pid_ != kNoPid) tracer_->slice_end(current_pid_, t);
    }
    void trace_counter(std::string_view name, double value) {
        if (tracer_) tracer_->counter(name, value, now());
    }

    // True while the simulator destroys process frames: awaitables' destructors must not
    // schedule anything then.
    bool tearing_down() const { return tearing_down_; }
    // Destroys every process frame (locks held by them are abandoned). The simulator cannot
    // run afterwards. Called by the destructor, and by a lock destroyed while still in use.
    void destroy_processes();

private:
    std::uint64_t make_order(std::int8_t priority, EventKind kind) {
        return (static_cast<std::uint64_t>(static_cast<std::uint8_t>(priority ^ 0x80)) << 56) |
               (seq_++ << 8) | static_cast<std::uint64_t>(kind);
    }
    // Invariant outside run()'s pop step: the queue's base time equals now_, so anything pushed
    // (never earlier than now_) is bucketed correctly.
    void push(const Event& e) {
        // FIFO fast path: default-priority events due now need no queue operation.
        if (e.time == now_ && (e.order >> 56) == 0x80)
            fifo_.push_back(e);
        else if (e.time < now_)
            past(e);
        else
            queue_.push(e);
    }
    [[noreturn]] void past(const Event& e) const;
    // The fingerprint's chain step over one processed event.
    void fold(std::uint64_t time, std::uint64_t who_kind) noexcept {
        constexpr std::uint64_t kMul = 0x9e3779b97f4a7c15ULL;
        hash_ = (((hash_ << 5) | (hash_ >> 59)) ^ time) * kMul;
        hash_ = (((hash_ << 5) | (hash_ >> 59)) ^ who_kind) * kMul;
    }
    void dispatch(const Event& e);
    friend void root_done(Process* p) noexcept;
    void reap();
    void build_deadlock_report();

    std::uint64_t seed_;
    mutable bool seed_used_ = false;
    std::int64_t now_ = 0;
    std::int64_t until_ = 0;  // run()'s limit, in ps
    std::uint64_t seq_ = 0;
    std::uint64_t events_ = 0;
    std::uint64_t events_inline_ = 0;
    static constexpr std::uint32_t kMaxInlineRun = 16;
    std::uint32_t inline_run_ = 0;  // wakeups run at once since run() last dispatched an event
    std::uint64_t hash_ = 0x6b766d73696d0001ULL;  // "kvmsim"
    EventQueue queue_;
    std::vector<Event> fifo_;
    std::size_t fifo_head_ = 0;
    std::vector<std::unique_ptr<Process>> processes_;
    std::vector<Process*> by_pid_;    // flat, for dispatch
    std::vector<Process*> finished_;  // bodies ended, frames to destroy after dispatch
    std::size_t live_ = 0;
    // The running process's id, resolved only on demand (dispatch touches nothing but the
    // frame it resumes).
    static constexpr std::uint32_t kNoPid = ~std::uint32_t{0};
    std::uint32_t current_pid_ = kNoPid;
    bool stop_ = false;
    bool tearing_down_ = false;
    std::exception_ptr failure_;
    std::optional<DeadlockReport> deadlock_;
    Tracer* tracer_ = nullptr;
    EventLog* event_log_ = nullptr;

    std::size_t phase_ = 0;
    std::vector<PhaseInfo> phases_;
    std::vector<std::function<void(std::size_t)>> phase_listeners_;
    Counters counters_;
    LockStatsTable lock_stats_;
    LineStatsTable line_stats_;
    BandwidthStatsTable bandwidth_stats_;
};

// A slice on the current process's track for the lifetime of a scope, so that every exit
// path of a coroutine ends it (nothing happens without a tracer).
class TraceScope {
public:
    TraceScope(Simulator& sim, std::string_view name) : sim_(sim.tracer() ? &sim : nullptr) {
        if (sim_) sim_->trace_begin(name);
    }
    ~TraceScope() {
        if (sim_) sim_->trace_end();
    }
    TraceScope(const TraceScope&) = delete;
    TraceScope& operator=(const TraceScope&) = delete;

private:
    Simulator* sim_;
};

}  // namespace kvmsim::engine
