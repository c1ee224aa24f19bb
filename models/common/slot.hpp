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

struct VcpuCaches {
    MmuMemoryCache desc;    // mmu_pte_list_desc_cache
    MmuMemoryCache page;    // mmu_shadow_page_cache
    MmuMemoryCache header;  // mmu_page_header_cache
};

}  // namespace kvmsim::models
