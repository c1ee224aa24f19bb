// Synchronization primitives that record contention per (lock, mode, call site, phase).
//   RwLock   - qrwlock semantics: readers share; a writer excludes all; waiters queue FIFO and
//              a queued waiter blocks newcomers (so a waiting writer blocks new readers); when
//              a reader at the queue head is granted, the readers queued right behind it are
//              granted too. needbreak() is rwlock_needbreak(): someone is queued.
//   SpinLock - FIFO ticket lock.
//   Mutex    - sleeping lock: FIFO handoff, the woken waiter resumes after a wake latency.
// Wait statistics are kept for contended acquisitions (as lock_stat does); hold statistics for
// every acquisition, from grant to release.
#pragma once

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "sim/engine/simulator.hpp"

namespace kvmsim::engine {

class LockBase;

class [[nodiscard]] LockGuard {
public:
    LockGuard() = default;
    LockGuard(LockBase* lock, Process* holder, LockMode mode, std::uint32_t site, Time since)
        : lock_(lock), holder_(holder), mode_(mode), site_(site), since_(since) {}
    LockGuard(LockGuard&& o) noexcept
        : lock_(std::exchange(o.lock_, nullptr)), holder_(o.holder_), mode_(o.mode_), site_(o.site_),
          since_(o.since_) {}
    LockGuard& operator=(LockGuard&& o) noexcept {
        if (this != &o) {
            unlock();
            lock_ = std::exchange(o.lock_, nullptr);
            holder_ = o.holder_;
            mode_ = o.mode_;
            site_ = o.site_;
            since_ = o.since_;
        }
        return *this;
    }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;
    ~LockGuard() { unlock(); }

    void unlock();
    bool owns() const { return lock_ != nullptr; }
    LockMode mode() const { return mode_; }
    Time since() const { return since_; }

private:
    LockBase* lock_ = nullptr;
    Process* holder_ = nullptr;
    LockMode mode_ = LockMode::Write;
    std::uint32_t site_ = 0;
    Time since_;
};

class LockBase : public WaitTarget {
public:
    LockBase(Simulator& sim, std::string name, Time wake_latency = Time::zero());
    ~LockBase() override;
    LockBase(const LockBase&) = delete;
    LockBase& operator=(const LockBase&) = delete;

    const std::string& name() const { return name_; }
    // Someone is queued: the kernel's rwlock_needbreak()/spin_needbreak() on a preemptible kernel.
    bool needbreak() const { return !waiters_.empty(); }
    std::size_t waiter_count() const { return waiters_.size(); }
    std::uint32_t readers() const { return readers_; }
    bool write_held() const { return writer_; }
    bool is_locked() const { return writer_ || readers_ > 0; }

    std::string wait_name() const override { return name_; }
    void holders(std::vector<std::pair<const Process*, std::string>>& out) const override;

    struct Awaiter {
        LockBase& lock;
        LockMode mode;
        std::uint32_t site;
        Process* self = nullptr;
        Time granted_at;
        bool await_ready() {
            if (!lock.can_take_now(mode)) return false;
            self = lock.sim_.current();
            granted_at = lock.sim_.now();
            lock.take(self, mode, site);
            return true;
        }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            self = h.promise().process;
            lock.enqueue(this, h, self);
        }
        LockGuard await_resume() { return LockGuard(&lock, self, mode, site, granted_at); }
    };

    // Non-blocking attempt; an empty guard when the lock is not free.
    LockGuard try_lock(LockMode mode, Site site);

protected:
    friend class LockGuard;
    struct Waiter {
        Awaiter* aw;
        std::coroutine_handle<> h;
        Process* p;
        Time since;
    };
    bool can_take_now(LockMode m) const {
        if (!waiters_.empty() || writer_) return false;
        return m == LockMode::Read || readers_ == 0;
    }
    void take(Process* p, LockMode m, std::uint32_t site);
    void enqueue(Awaiter* aw, std::coroutine_handle<> h, Process* p);
    void release(Process* p, LockMode m, std::uint32_t site, Time since);
    void grant_waiters();
    LockRecord& record(LockMode m, std::uint32_t site);

    Simulator& sim_;
    std::string name_;
    std::uint32_t id_;
    Time wake_latency_;
    std::deque<Waiter> waiters_;
    std::uint32_t readers_ = 0;
    bool writer_ = false;
    std::vector<std::pair<Process*, LockMode>> holders_;
    struct RecordSlot {
        std::uint64_t key;
        LockRecord* rec;
    };
    std::vector<RecordSlot> records_;
    std::vector<Process*> granted_;  // by the last release (tracing only)
};

class RwLock : public LockBase {
public:
    RwLock(Simulator& sim, std::string name) : LockBase(sim, std::move(name)) {}
    Awaiter read(Site site) { return Awaiter{*this, LockMode::Read, site.id, nullptr, Time{}}; }
    Awaiter write(Site site) { return Awaiter{*this, LockMode::Write, site.id, nullptr, Time{}}; }
};

class SpinLock : public LockBase {
public:
    SpinLock(Simulator& sim, std::string name) : LockBase(sim, std::move(name)) {}
    Awaiter lock(Site site) { return Awaiter{*this, LockMode::Exclusive, site.id, nullptr, Time{}}; }
};

class Mutex : public LockBase {
public:
    Mutex(Simulator& sim, std::string name, Time wake_latency = Time::zero())
        : LockBase(sim, std::move(name), wake_latency) {}
    Awaiter lock(Site site) { return Awaiter{*this, LockMode::Exclusive, site.id, nullptr, Time{}}; }
};

// A reusable barrier for a fixed number of parties; waiters resume in arrival order.
class Barrier : public WaitTarget {
public:
    Barrier(Simulator& sim, std::string name, std::size_t parties);
    struct Awaiter {
        Barrier& b;
        bool await_ready() { return b.arrive(); }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            b.waiters_.emplace_back(h, h.promise().process);
            h.promise().process->block_on(&b, "barrier");
        }
        void await_resume() const noexcept {}
    };
    Awaiter arrive_and_wait() { return Awaiter{*this}; }
    std::size_t parties() const { return parties_; }
    std::size_t waiting() const { return waiters_.size(); }
    std::uint64_t generation() const { return generation_; }
    std::string wait_name() const override { return name_; }
    void holders(std::vector<std::pair<const Process*, std::string>>&) const override {}

private:
    bool arrive();  // true if this arrival completes the barrier (releases the others)
    Simulator& sim_;
    std::string name_;
    std::size_t parties_;
    std::uint64_t generation_ = 0;
    std::vector<std::pair<std::coroutine_handle<>, Process*>> waiters_;
};

// A wakeup signal. wait() suspends until notify_one/notify_all, or passes at once while set.
class Signal : public WaitTarget {
public:
    Signal(Simulator& sim, std::string name) : sim_(sim), name_(std::move(name)) {}
    struct Awaiter {
        Signal& s;
        bool await_ready() const noexcept { return s.set_; }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            s.waiters_.emplace_back(h, h.promise().process);
            h.promise().process->block_on(&s, "signal");
        }
        void await_resume() const noexcept {}
    };
    Awaiter wait() { return Awaiter{*this}; }
    void notify_one();
    void notify_all();
    void set() {
        set_ = true;
        notify_all();
    }
    void clear() { set_ = false; }
    bool is_set() const { return set_; }
    std::size_t waiting() const { return waiters_.size(); }
    std::string wait_name() const override { return name_; }
    void holders(std::vector<std::pair<const Process*, std::string>>&) const override {}

private:
    Simulator& sim_;
    std::string name_;
    bool set_ = false;
    std::deque<std::pair<std::coroutine_handle<>, Process*>> waiters_;
};

}  // namespace kvmsim::engine
