// What a model keeps per memslot besides vm::Memslot, and the per-vCPU memory caches of the x86
// fault path (mmu_topup_memory_caches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "models/common/memory_cache.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::models {

struct SlotState {
    std::size_t index = 0;  // in VmConfig::memslots
    std::uint32_t id = 0;
    vm::Gfn base = 0;
    std::uint64_t npages = 0;
    int host_level = 1;                    // the largest mapping level the backing allows
    std::vector<std::uint64_t> bitmap;     // dirty bitmap (KVM_MEM_LOG_DIRTY_PAGES)
    std::uint64_t bitmap_addr = 0;

    bool contains(vm::Gfn g) const { return g >= base && g - base < npages; }
};

// x86 levels (1: 4K, 2: 2M, 3: 1G): the largest level up to `level` whose huge page around gfn lies
// inside the slot (kvm_mmu_max_mapping_level's lpage_info: a huge page crossing the slot's edge is
// disallowed).
inline int x86_level_inside_slot(const SlotState& s, vm::Gfn gfn, int level) {
    for (; level > 1; --level) {
        const std::uint64_t n = std::uint64_t{1} << (9 * (level - 1));
        const vm::Gfn g0 = gfn & ~(n - 1);
        if (g0 >= s.base && g0 + n <= s.base + s.npages) break;
    }
    return level;
}

struct VcpuCaches {
    MmuMemoryCache desc;    // mmu_pte_list_desc_cache
    MmuMemoryCache page;    // mmu_shadow_page_cache
    MmuMemoryCache header;  // mmu_page_header_cache
};

}  // namespace kvmsim::models
