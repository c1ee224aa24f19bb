#include "models/common/kvm_stats.hpp"

namespace kvmsim::models {

KvmStats::KvmStats(engine::Counters& counters) : c_(counters) {
    using K = engine::Counters::Kind;
    pf_taken = c_.id(stat::pf_taken);
    pf_fixed = c_.id(stat::pf_fixed);
    pf_fast = c_.id(stat::pf_fast);
    pf_spurious = c_.id(stat::pf_spurious);
    pf_emulate = c_.id(stat::pf_emulate);
    pf_mmio_spte_created = c_.id(stat::pf_mmio_spte_created);
    mmu_cache_miss = c_.id(stat::mmu_cache_miss);
    mmu_shadow_zapped = c_.id(stat::mmu_shadow_zapped);
    mmu_pte_write = c_.id(stat::mmu_pte_write);
    mmu_pde_zapped = c_.id(stat::mmu_pde_zapped);
    mmu_flooded = c_.id(stat::mmu_flooded);
    mmu_recycled = c_.id(stat::mmu_recycled);
    mmu_unsync = c_.id(stat::mmu_unsync, K::Gauge);  // an instantaneous count in debugfs
    remote_tlb_flush = c_.id(stat::remote_tlb_flush);
    remote_tlb_flush_requests = c_.id(stat::remote_tlb_flush_requests);
    pages_4k = c_.id(stat::pages_4k, K::Gauge);
    pages_2m = c_.id(stat::pages_2m, K::Gauge);
    pages_1g = c_.id(stat::pages_1g, K::Gauge);
    nx_lpage_splits = c_.id(stat::nx_lpage_splits);
    max_mmu_page_hash_collisions = c_.id(stat::max_mmu_page_hash_collisions, K::Max);
    max_mmu_rmap_size = c_.id(stat::max_mmu_rmap_size, K::Max);
    pages_ = {pages_4k, pages_2m, pages_1g};
}

}  // namespace kvmsim::models
