// KVM's statistics under their debugfs names (arch/x86/kvm/x86.c kvm_vm_stats_desc /
// kvm_vcpu_stats_desc, virt/kvm/kvm_main.c), registered in the simulator's counters so that every
// model reports the same names. VM-wide and per-vCPU stats are summed over the VM, as debugfs
// shows them.
//
// Gauges: pages_4k, pages_2m, pages_1g and mmu_unsync are gauges in KVM (kvm_update_page_stats
// and kvm_unsync_page/kvm_unlink_unsync_page add and subtract). The engine's counters only add, so a gauge is kept as a running sum of signed
// deltas in two's complement: the whole-run total is the current value, and a phase's value is
// the net change during that phase (read it as int64_t: a decrease shows as 2^64 - n). Use
// KvmStats::gauge() for the current value.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "sim/engine/stats.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::models {

namespace stat {
// vCPU stats (kvm_vcpu_stats_desc).
inline constexpr std::string_view pf_taken = "pf_taken";
inline constexpr std::string_view pf_fixed = "pf_fixed";
inline constexpr std::string_view pf_fast = "pf_fast";
inline constexpr std::string_view pf_spurious = "pf_spurious";
inline constexpr std::string_view pf_emulate = "pf_emulate";
inline constexpr std::string_view pf_mmio_spte_created = "pf_mmio_spte_created";
// VM stats (kvm_vm_stats_desc).
inline constexpr std::string_view mmu_cache_miss = "mmu_cache_miss";
inline constexpr std::string_view mmu_shadow_zapped = "mmu_shadow_zapped";
inline constexpr std::string_view mmu_pte_write = "mmu_pte_write";
inline constexpr std::string_view mmu_pde_zapped = "mmu_pde_zapped";
inline constexpr std::string_view mmu_flooded = "mmu_flooded";
inline constexpr std::string_view mmu_recycled = "mmu_recycled";
inline constexpr std::string_view mmu_unsync = "mmu_unsync";
inline constexpr std::string_view remote_tlb_flush = "remote_tlb_flush";
inline constexpr std::string_view remote_tlb_flush_requests = "remote_tlb_flush_requests";
inline constexpr std::string_view pages_4k = "pages_4k";
inline constexpr std::string_view pages_2m = "pages_2m";
inline constexpr std::string_view pages_1g = "pages_1g";
inline constexpr std::string_view nx_lpage_splits = "nx_lpage_splits";
inline constexpr std::string_view max_mmu_page_hash_collisions = "max_mmu_page_hash_collisions";
inline constexpr std::string_view max_mmu_rmap_size = "max_mmu_rmap_size";
}  // namespace stat

// Ids of every KVM stat above, registered at construction (so results always list them, zero
// when a model never touches one).
class KvmStats {
public:
    explicit KvmStats(engine::Counters& counters);

    engine::Counters& counters() { return c_; }
    void add(engine::CounterId id, std::uint64_t n = 1) { c_.add(id, n); }
    void set_max(engine::CounterId id, std::uint64_t v) { c_.set_max(id, v); }
    // A gauge change (see the header comment).
    void gauge_add(engine::CounterId id, std::int64_t delta) { c_.adjust(id, delta); }
    // kvm_update_page_stats(kvm, level, count).
    void update_page_stats(vm::PageLevel level, std::int64_t delta) {
        gauge_add(pages_[static_cast<std::size_t>(level) - 1], delta);
    }
    // Current value of a gauge (sum over phases, as a signed number).
    std::int64_t gauge(engine::CounterId id) const { return static_cast<std::int64_t>(c_.total(id)); }
    std::int64_t pages(vm::PageLevel level) const { return gauge(pages_[static_cast<std::size_t>(level) - 1]); }

    engine::CounterId pf_taken, pf_fixed, pf_fast, pf_spurious, pf_emulate, pf_mmio_spte_created;
    engine::CounterId mmu_cache_miss, mmu_shadow_zapped, mmu_pte_write, mmu_pde_zapped, mmu_flooded,
        mmu_recycled, mmu_unsync, remote_tlb_flush, remote_tlb_flush_requests, nx_lpage_splits;
    engine::CounterId max_mmu_page_hash_collisions, max_mmu_rmap_size;  // Kind::Max
    engine::CounterId pages_4k, pages_2m, pages_1g;

private:
    engine::Counters& c_;
    std::array<engine::CounterId, 3> pages_{};
};

}  // namespace kvmsim::models
