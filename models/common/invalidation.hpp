// The MMU-notifier invalidation state of a VM (include/linux/kvm_host.h, virt/kvm/kvm_main.c,
// v6.9): mmu_invalidate_in_progress, mmu_invalidate_seq and the union of the ranges being
// invalidated. A fault snapshots the sequence before resolving the host page and retries when an
// invalidation covering its gfn is in progress or the sequence moved.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "sim/engine/time.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::models {

class MmuInvalidation {
public:
    static constexpr vm::Gfn kInvalidGfn = std::numeric_limits<vm::Gfn>::max();  // INVALID_GPA

    // kvm_mmu_invalidate_begin (mmu_lock held for write).
    void begin() {
        ++in_progress_;
        if (in_progress_ == 1) {
            range_start_ = kInvalidGfn;
            range_end_ = kInvalidGfn;
        }
    }
    // kvm_mmu_invalidate_range_add: [start, end) joins the union of invalidated ranges.
    void range_add(vm::Gfn start, vm::Gfn end) {
        if (range_start_ == kInvalidGfn) {
            range_start_ = start;
            range_end_ = end;
        } else {
            range_start_ = std::min(range_start_, start);
            range_end_ = std::max(range_end_, end);
        }
    }
    // kvm_mmu_invalidate_end at simulated time `at`: the sequence moves before in_progress drops.
    void end(engine::Time at) {
        bump_seq(at);
        if (in_progress_ > 0) --in_progress_;
    }

    // kvm_mmu_notifier_change_pte before v5.13: mmu_notifier_seq++ under mmu_lock, at `at`.
    void bump_seq(engine::Time at) {
        ++seq_;
        last_bump_ = std::max(last_bump_, at);
    }

    // mmu_invalidate_retry for a snapshot taken at simulated time `snap` (<= now), worked out
    // later: for a model that knows when its fault took the snapshot only after the fact (arm64:
    // after the VMA lookup's waits on mmap_lock's line). The sequence moved after the snapshot
    // if its last move came later.
    bool retry_since(engine::Time snap) const { return in_progress_ != 0 || last_bump_ > snap; }

    std::uint64_t seq() const { return seq_; }
    std::uint64_t in_progress() const { return in_progress_; }
    vm::Gfn range_start() const { return range_start_; }
    vm::Gfn range_end() const { return range_end_; }
    bool covers(vm::Gfn gfn) const {
        return in_progress_ != 0 && gfn >= range_start_ && gfn < range_end_;
    }

    // mmu_invalidate_retry_gfn (under mmu_lock): an in-progress invalidation without a range yet
    // (KVM WARNs) also means retry.
    bool retry_gfn(std::uint64_t mmu_seq, vm::Gfn gfn) const {
        if (in_progress_ != 0) {
            if (range_start_ == kInvalidGfn) return true;
            if (gfn >= range_start_ && gfn < range_end_) return true;
        }
        return seq_ != mmu_seq;
    }
    // mmu_invalidate_retry (under mmu_lock; arm64 and older x86 kernels): any invalidation in
    // progress, or the sequence moved since the snapshot.
    bool retry(std::uint64_t mmu_seq) const { return in_progress_ != 0 || seq_ != mmu_seq; }
    // mmu_invalidate_retry_gfn_unsafe (the v6.8+ pre-check, without mmu_lock).
    bool retry_gfn_unsafe(std::uint64_t mmu_seq, vm::Gfn gfn) const {
        if (in_progress_ != 0 && gfn >= range_start_ && gfn < range_end_) return true;
        return seq_ != mmu_seq;
    }

private:
    engine::Time last_bump_{};  // when the sequence last moved
    std::uint64_t in_progress_ = 0;
    std::uint64_t seq_ = 0;
    vm::Gfn range_start_ = kInvalidGfn;
    vm::Gfn range_end_ = kInvalidGfn;
};

}  // namespace kvmsim::models
