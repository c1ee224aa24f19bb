// A host-side walk that holds mmu_lock for long (write protection, zaps, splits, unmaps): the
// work it has done but not let elapse yet, its timeslice for need_resched(), and the last line of
// descriptors it touched (a walk touches each line once).
#pragma once

#include <cstdint>

#include "models/common/resched.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::models {

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

// Lets the accumulated work elapse.
inline engine::Task<void> settle(engine::Simulator& sim, BulkWork& b) {
    if (b.acc > engine::Time::zero()) {
        const engine::Time d = b.acc;
        b.acc = engine::Time::zero();
        co_await sim.delay(d);
    }
    b.last_line = BulkWork::kNoLine;
}

}  // namespace kvmsim::models
