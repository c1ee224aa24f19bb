// A long walk under mmu_lock (a zap, a split, write-protection, dirty-log harvesting): the lock
// guard, the work done but not yet turned into simulated time, need_resched()'s clock, and the
// last page-table line read (to touch each line once). Walkers let the work elapse every so
// often (settle) and always before a lock operation.
#pragma once

#include <coroutine>
#include <cstdint>

#include "models/common/resched.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/engine/sync.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::models {

struct BulkWalk {
    static constexpr std::uint64_t kNoLine = ~std::uint64_t{0};
    std::uint32_t cpu = 0;
    engine::LockGuard guard;
    engine::LockMode mode = engine::LockMode::Write;
    engine::Site site;
    engine::Time acc;
    ReschedClock clock;
    std::uint64_t last_line = kNoLine;

    // Starts on cpu now, with need_resched() set after a timeslice.
    void start(const vm::CpuContext& c, engine::Time timeslice, engine::Time now) {
        cpu = c.host_cpu;
        clock = ReschedClock(timeslice);
        clock.start(now);
    }
};

// Lets the accumulated work elapse: one delay event if there is any, none otherwise. An
// awaiter rather than a Task, so that the walkers' many settles cost no coroutine frame; the
// event (time, process, kind) is the one a nested Task's delay would make.
template <class B>
struct SettleAwaiter {
    engine::Simulator& sim;
    B& b;
    bool await_ready() noexcept {
        if (b.acc > engine::Time::zero()) {
            if (!sim.resume_inline(sim.now() + b.acc, engine::EventKind::Delay)) return false;
            b.acc = engine::Time::zero();
        }
        b.last_line = B::kNoLine;
        return true;
    }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        const engine::Time d = b.acc;
        b.acc = engine::Time::zero();
        sim.delay(d).await_suspend(h);
    }
    void await_resume() const noexcept { b.last_line = B::kNoLine; }
};

inline SettleAwaiter<BulkWalk> settle(engine::Simulator& sim, BulkWalk& b) { return {sim, b}; }

// Settles, then takes `lock` in `mode` at `site` (the caller charges the lock word's line).
inline engine::Task<void> lock_walk(engine::Simulator& sim, engine::RwLock& lock, BulkWalk& b, engine::LockMode mode,
                                    engine::Site site) {
    co_await settle(sim, b);
    b.guard = co_await (mode == engine::LockMode::Write ? lock.write(site) : lock.read(site));
    b.mode = mode;
    b.site = site;
    b.last_line = BulkWalk::kNoLine;
}

// Settles, then releases the lock.
inline engine::Task<void> unlock_walk(engine::Simulator& sim, BulkWalk& b) {
    co_await settle(sim, b);
    b.guard.unlock();
}

// The same bookkeeping without the guard, for a walker that holds its lock in its own frame
// (arm64_stage2).
// Bulk walkers turn their accumulated work into simulated time at least this often, so a lock
// waiter arriving meanwhile is noticed at most this late: a property of the simulation, not of
// the host.
inline constexpr engine::Time kSettleQuantum = engine::Time::us(1);

struct BulkWork {
    static constexpr std::uint64_t kNoLine = ~std::uint64_t{0};
    std::uint32_t cpu = 0;
    engine::Time acc;
    ReschedClock clock;
    std::uint64_t last_line = kNoLine;
    void start(const vm::CpuContext& c, engine::Time timeslice, engine::Time now) {
        cpu = c.host_cpu;
        clock = ReschedClock(timeslice);
        clock.start(now);
    }
};

// Lets the accumulated work elapse (SettleAwaiter).
inline SettleAwaiter<BulkWork> settle(engine::Simulator& sim, BulkWork& b) { return {sim, b}; }

}  // namespace kvmsim::models
