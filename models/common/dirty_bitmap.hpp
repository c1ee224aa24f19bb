// kvm_get_dirty_log_protect's walk of a memslot's dirty bitmap (virt/kvm/kvm_main.c, the same in
// v5.11 and v6.9), shared by the x86 models: each 64-page word costs dirty_bitmap_word and its
// line is loaded once per 8 words (a 64-byte line); a word with bits set is taken with xchg (its
// line written) and handed to kvm_arch_mmu_enable_log_dirty_pt_masked by the caller.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "models/common/bulk.hpp"
#include "models/common/slot.hpp"
#include "sim/engine/cache.hpp"

namespace kvmsim::models {

// Reading word i of s's bitmap: its cost, added to b.acc.
inline void read_dirty_word(engine::CacheModel& cache, BulkWalk& b, const SlotState& s, std::size_t i,
                            engine::Time word_cost) {
    b.acc += word_cost;
    if (i % 8 == 0) b.acc += cache.touch(b.cpu, s.bitmap_addr + i * 8, 8, false);
}

// xchg(&dirty_bitmap[i], 0) of a word with bits set: returns them (0 when none, nothing done).
inline std::uint64_t take_dirty_word(engine::CacheModel& cache, BulkWalk& b, SlotState& s, std::size_t i) {
    const std::uint64_t mask = s.bitmap[i];
    if (!mask) return 0;
    s.bitmap[i] = 0;
    b.acc += cache.touch(b.cpu, s.bitmap_addr + i * 8, 8, true);
    return mask;
}

// With manual protect KVM_GET_DIRTY_LOG only copies the bitmap: every word read, nothing
// protected. Returns the dirty pages in it.
inline engine::Task<std::uint64_t> copy_dirty_bitmap(engine::Simulator& sim, engine::CacheModel& cache, BulkWalk& b,
                                                     const SlotState& s, engine::Time word_cost) {
    std::uint64_t pages = 0;
    for (std::size_t i = 0; i < s.bitmap.size(); ++i) {
        if (b.acc >= kSettleQuantum) co_await settle(sim, b);
        read_dirty_word(cache, b, s, i, word_cost);
        pages += static_cast<std::uint64_t>(std::popcount(s.bitmap[i]));
    }
    co_await settle(sim, b);
    co_return pages;
}

}  // namespace kvmsim::models
