// kvm->mmu_lock's word on x86: the cache line every acquisition and every reader's release
// touches, as a contended line (engine::ContendedLine "mmu_lock") between the host's CPUs.
//
// Linux v5.12+ (kernel/locking/qrwlock.c, the rwlock KVM x86 uses since "KVM: x86/mmu: Use an
// rwlock for the x86 MMU", v5.12) and v5.11's qspinlock (kernel/locking/qspinlock.c):
//  - read_lock: queued_read_lock's atomic_add_return_acquire on cnts; read_unlock:
//    queued_read_unlock's atomic_sub_return_release. Each is a LOCK XADD on the one line: with
//    many CPUs faulting under the read lock, they serialize on it at the line transfer latency.
//  - write_lock (and spin_lock): the cmpxchg on the word. A writer that had to wait spun reading
//    the word (queued_write_lock_slowpath's atomic_cond_read_acquire, or the qspinlock's head of
//    queue), so the holder's unlock first takes the line back from it and its read then fetches
//    it again: two transfers from one hold to the next. write_unlock's store is that first
//    transfer, so it is paid by the next writer, not by the holder.
// A fault that found the lock free pays one transfer from the CPU that touched the word last.
#pragma once

#include <cstdint>

#include "sim/engine/contended_line.hpp"
#include "sim/engine/sync.hpp"

namespace kvmsim::models {

class MmuLockWord {
public:
    MmuLockWord(engine::Simulator& sim, const engine::Topology& topo) : line_(sim, topo, "mmu_lock") {}

    // The word's work of a lock granted to `cpu` at `now` in `mode`, asked for at `asked`
    // (granted later: it waited). Returns its length from `now`.
    engine::Time acquired(std::uint32_t cpu, engine::LockMode mode, engine::Time asked, engine::Time now) {
        const std::uint32_t prev = line_.state().owner;
        engine::Time done = line_.rmw(cpu, now);
        if (mode == engine::LockMode::Write && now > asked && prev != cpu && prev != engine::Topology::kNoCpu)
            done += line_.line_class().transfer(prev, cpu);
        return done - now;
    }

    // The word's work of releasing at `at`: read_unlock's atomic; nothing for write_unlock (see
    // above). Returns its length from `at`.
    engine::Time released(std::uint32_t cpu, engine::LockMode mode, engine::Time at) {
        if (mode == engine::LockMode::Write) return engine::Time::zero();
        return line_.rmw(cpu, at) - at;
    }

private:
    engine::ContendedLine line_;
};

// kvm->mmu_lock: the engine's lock (who holds it, who waits) and its word (what taking it costs).
struct MmuLock {
    MmuLock(engine::Simulator& sim, const engine::Topology& topo) : lock(sim, "mmu_lock"), word(sim, topo) {}
    engine::RwLock lock;
    MmuLockWord word;
};

}  // namespace kvmsim::models
