// x86 TDP MMU model ("x86_tdp"): KVM's two-dimensional paging MMU for EPT/NPT guests, following
// Linux v6.9 (torvalds/linux; arch/x86/kvm/mmu/tdp_mmu.c, arch/x86/kvm/mmu/mmu.c,
// arch/x86/kvm/x86.c, virt/kvm/kvm_main.c). The functions followed, one by one:
//   faults      kvm_tdp_page_fault -> kvm_tdp_mmu_page_fault: fast_page_fault,
//               mmu_topup_memory_caches, kvm_faultin_pfn (with the pre-check
//               mmu_invalidate_retry_gfn_unsafe), read_lock(mmu_lock), is_page_fault_stale,
//               kvm_tdp_mmu_map (tdp_mmu_link_sp, tdp_mmu_split_huge_page,
//               tdp_mmu_map_handle_target_level, tdp_mmu_set_spte_atomic)
//   dirty log   kvm_mmu_slot_apply_flags, kvm_mmu_slot_try_split_huge_pages ->
//               tdp_mmu_split_huge_pages_root, kvm_mmu_slot_remove_write_access ->
//               wrprot_gfn_range, kvm_get_dirty_log_protect, kvm_clear_dirty_log_protect,
//               kvm_arch_mmu_enable_log_dirty_pt_masked (clear_dirty_pt_masked, write_protect_gfn,
//               kvm_mmu_try_split_huge_pages), kvm_mmu_zap_collapsible_sptes ->
//               zap_collapsible_spte_range
//   zaps        kvm_zap_gfn_range -> kvm_tdp_mmu_zap_leafs -> tdp_mmu_zap_leafs with
//               tdp_mmu_iter_cond_resched; the seed 003 alternatives (zap_lock knob): Yan Zhao's
//               "[PATCH v4 12/12] KVM: x86/mmu: convert kvm_zap_gfn_range() to use shared
//               mmu_lock in TDP MMU" (zap_gfn_range_atomic, tdp_mmu_zap_spte_atomic) and Sean
//               Christopherson's drop-write-zap-under-read suggestion
//   notifiers   kvm_mmu_notifier_invalidate_range_start/end -> kvm_unmap_gfn_range ->
//               kvm_tdp_mmu_unmap_gfn_range
//   shared      kvm_mmu_invalidate_begin/range_add/end, kvm_flush_remote_tlbs,
//               __kvm_mmu_topup_memory_cache, tdp_iter (tdp_iter_next & co.)
// See docs/models/x86_tdp.md for what is simplified or left out.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/common/host_memory.hpp"
#include "models/common/invalidation.hpp"
#include "models/common/kvm_stats.hpp"
#include "models/common/memory_cache.hpp"
#include "models/common/regions.hpp"
#include "models/common/resched.hpp"
#include "models/common/tlb_flush.hpp"
#include "sim/engine/sync.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

// Adds "x86_tdp" to the registry.
void register_x86_tdp(vm::ModelRegistry& registry);
vm::ModelInfo x86_tdp_model_info();

namespace x86_tdp {

// Cost constants read from the host profile (picoseconds), by their profile names.
struct Costs {
    engine::Time fault_entry, fault_exit, fast_pf_base, tdp_map_base, tdp_walk_level, spte_cmpxchg,
        spte_update, tdp_iter_step, split_spte_fill, gup_fast, host_fault_base, zero_4k,
        mmu_cache_alloc_page, mmu_cache_alloc_obj, tlb_flush_base, tlb_flush_per_vcpu, sched_timeslice,
        lock_yield, dirty_bitmap_word, memslot_update;
    static const std::vector<std::string>& names();
    static Costs from(const vm::CostProfile& p);
};

enum class ZapLock : std::uint8_t { Write, Read, DropWriteZapRead };

struct Config {
    bool fault_lock_write = false;  // fault_lock = "write"
    ZapLock zap_lock = ZapLock::Write;
    bool fault_precheck = true;
    bool eager_page_split = true;
    bool preempt = true;  // CONFIG_PREEMPTION: rwlock_needbreak() is live
    static Config from(const vm::Knobs& knobs);
};

// SPTE state bits, one byte per SPTE (see x86_tdp.cpp).
namespace spte {
inline constexpr std::uint8_t P = 0x01;       // present (readable)
inline constexpr std::uint8_t W = 0x02;       // writable
inline constexpr std::uint8_t X = 0x04;       // executable
inline constexpr std::uint8_t MW = 0x08;      // MMU-writable (shadow_mmu_writable_mask)
inline constexpr std::uint8_t LEAF = 0x10;    // leaf (last level) SPTE
inline constexpr std::uint8_t FROZEN = 0x20;  // REMOVED_SPTE: frozen by an atomic zap
inline constexpr std::uint8_t TABLE = P | W | X;
inline constexpr std::uint8_t LEAF_RO = P | X | MW | LEAF;  // write-protected, fixable in the fast path
inline constexpr std::uint8_t LEAF_RW = LEAF_RO | W;
}  // namespace spte

class X86TdpMmu;

// The kernel's struct tdp_iter over the model's page-table state (pre-order, min_level..4).
struct TdpIter {
    vm::Gfn next_last_level_gfn = 0;
    vm::Gfn yielded_gfn = 0;
    vm::Gfn gfn = 0;
    int level = 4;
    int min_level = 1;
    bool valid = false;
    bool yielded = false;
};

class X86TdpMmu final : public vm::MmuModel {
public:
    explicit X86TdpMmu(vm::ModelEnv& env);
    ~X86TdpMmu() override;

    bool hits(std::uint32_t vcpu, vm::Gfn gfn, vm::Access access) const override {
        (void)vcpu;
        const std::uint32_t ri = regions_.of(gfn);
        if (ri == kNoRegion) [[unlikely]]
            return false;
        const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];
        const std::uint8_t e = pte_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)];
        if (e & spte::P) [[likely]]
            return (e & need) != 0;
        const std::uint8_t d = pde_[(static_cast<std::size_t>(ri) << 9) | ((gfn >> 9) & 511)];
        if (d & spte::LEAF) return (d & need) != 0;
        const std::uint8_t u = pdpte_[ri];
        return (u & spte::LEAF) && (u & need) != 0;
    }

    engine::Task<void> page_fault(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access) override;
    engine::Task<void> dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot,
                                        vm::DirtyLogOptions opts) override;
    engine::Task<std::uint64_t> dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, vm::Gfn first,
                                       std::uint64_t npages) override;
    engine::Task<void> dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> zap_gfn_range(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end,
                                     vm::ZapReason reason) override;
    engine::Task<void> invalidate_range(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;

    // Introspection for tests and drivers (no simulated cost).
    // The level of the present leaf SPTE mapping gfn, if any.
    std::optional<vm::PageLevel> mapping_level(vm::Gfn gfn) const;
    // The SPTE state byte of the leaf mapping gfn (0 if none).
    std::uint8_t leaf_spte(vm::Gfn gfn) const;
    std::int64_t pages(vm::PageLevel level) const { return stats_.pages(level); }
    std::uint64_t tdp_mmu_pages() const { return tdp_mmu_pages_; }
    bool dirty(std::uint32_t slot, vm::Gfn gfn) const;
    std::uint64_t state_bytes() const;  // memory held by the page-table state and bitmaps
    engine::RwLock& mmu_lock() { return mmu_lock_; }
    const MmuInvalidation& invalidation() const { return inv_; }
    const MmuMemoryCache& vcpu_cache(std::uint32_t vcpu, int which) const;  // 0 desc, 1 page, 2 header
    const Config& config() const { return cfg_; }
    const Costs& costs() const { return k_; }

    static constexpr std::uint32_t kNoRegion = GibRegions::kNone;

private:
    struct Slot;
    struct Region;
    struct Pml4e;
    struct Bulk;
    struct EntryRef;
    struct MapPlan;
    struct VcpuState;

    static constexpr std::uint8_t kNeed[4] = {spte::P, spte::W, spte::X, 0};

    // --- page-table state ---
    EntryRef ref(int level, vm::Gfn gfn) const;
    std::uint8_t entry(int level, vm::Gfn gfn) const;
    std::uint32_t region_of(vm::Gfn gfn) const;
    std::uint64_t child_page(int level, vm::Gfn gfn) const;
    std::uint32_t child_serial(int level, vm::Gfn gfn) const;
    void set_leaf(int level, vm::Gfn gfn, std::uint8_t value);
    void link_table(int level, vm::Gfn gfn, std::uint64_t page);
    void fill_split(int level, vm::Gfn gfn, std::uint8_t huge);
    engine::Time split_cost(std::uint64_t page, std::uint32_t cpu);
    engine::Time remove_subtree(int level, vm::Gfn gfn, bool shared, std::uint32_t cpu);
    void clear_entry(int level, vm::Gfn gfn);

    // --- tdp_iter ---
    void iter_start(TdpIter& it, int min_level, vm::Gfn start) const;
    void iter_restart(TdpIter& it) const;
    void iter_next(TdpIter& it) const;

    // --- helpers ---
    Slot* slot_of(vm::Gfn gfn);
    const Slot* slot_of(vm::Gfn gfn) const;
    Slot& slot_by_id(std::uint32_t id);
    int max_mapping_level(const Slot& s, vm::Gfn gfn, bool for_fault) const;
    engine::Time touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes = 8);
    engine::Time lock_touch(std::uint32_t cpu) { return touch(cpu, mmu_lock_addr_, true); }
    engine::Time mark_page_dirty(Slot& s, vm::Gfn gfn, std::uint32_t cpu);
    engine::Time topup_caches(VcpuState& v);
    bool host_populated(const Slot& s, vm::Gfn gfn) const;
    void unmap_host(vm::Gfn start, vm::Gfn end);

    // --- fault path ---
    void map_snapshot(MapPlan& p, std::uint32_t cpu, VcpuState& v, vm::Gfn gfn, int goal);
    int map_commit(MapPlan& p, Slot& s, std::uint32_t cpu);

    // --- bulk walkers (the Bulk context holds the lock guard and the unelapsed work) ---
    engine::Task<void> settle(Bulk& b);
    engine::Task<void> lock(Bulk& b, engine::LockMode mode, engine::Site site);
    engine::Task<void> unlock(Bulk& b);
    std::uint64_t entry_addr(int level, vm::Gfn gfn) const;
    Bulk make_bulk(const vm::CpuContext& cpu);
    engine::Task<void> cond_resched(Bulk& b, TdpIter& it, bool flush);
    bool should_yield(const Bulk& b, const TdpIter& it) const;
    bool needbreak() const { return cfg_.preempt && mmu_lock_.needbreak(); }
    engine::Time step(Bulk& b, const TdpIter& it);
    engine::Task<bool> zap_leafs(Bulk& b, vm::Gfn start, vm::Gfn end, bool flush);
    engine::Task<void> zap_range_atomic(Bulk& b, vm::Gfn start, vm::Gfn end);
    engine::Task<void> zap_spte_atomic(Bulk& b, int level, vm::Gfn gfn);
    engine::Task<void> split_huge_pages_root(Bulk& b, vm::Gfn start, vm::Gfn end);
    engine::Task<void> wrprot_gfn_range(Bulk& b, vm::Gfn start, vm::Gfn end);
    engine::Task<void> zap_collapsible_spte_range(Bulk& b, Slot& s);
    engine::Task<void> enable_log_dirty_pt_masked(Bulk& b, Slot& s, std::uint64_t offset, std::uint64_t mask);
    void clear_dirty_pt_masked(Bulk& b, vm::Gfn gfn, std::uint64_t mask);
    void write_protect_gfn(Bulk& b, vm::Gfn gfn, int min_level);

    engine::Simulator& sim_;
    engine::CacheModel& cache_;
    vm::VmConfig& vm_;
    Config cfg_;
    Costs k_;
    KvmStats stats_;
    RemoteTlbFlush tlb_;
    MmuInvalidation inv_;
    engine::RwLock mmu_lock_;
    KernelDataLayout kdata_;
    PageTablePageAllocator pt_alloc_;
    std::uint64_t mmu_lock_addr_ = 0;
    std::uint64_t root_hpa_ = 0;
    std::uint64_t tdp_mmu_pages_ = 0;
    std::uint32_t next_serial_ = 1;

    // Page-table state: one Region per 1 GiB of guest physical space overlapping a memslot; the
    // PML4 entries per 512 GiB. Arrays are indexed by region (see x86_tdp.cpp).
    std::vector<Pml4e> pml4_;
    GibRegions regions_;                        // 1 GiB regions overlapping a memslot
    std::vector<std::uint32_t> region_pml4_;    // index into pml4_
    std::vector<std::uint8_t> pdpte_;           // per region
    std::vector<std::uint32_t> pd_serial_;      // per region: the PD page linked by the PDPTE
    std::vector<std::uint64_t> pd_page_;
    std::vector<std::uint8_t> pde_;             // region * 512 + index
    std::vector<std::uint32_t> pt_serial_;
    std::vector<std::uint64_t> pt_page_;
    std::vector<std::uint8_t> pte_;             // region * 262144 + index

    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<std::unique_ptr<VcpuState>> vcpus_;

    // Sites and model counters.
    engine::Site site_fault_, site_zap_, site_split_, site_split_relock_, site_wrprot_, site_get_,
        site_clear_, site_collapsible_, site_mn_start_, site_mn_end_;
    struct ModelCounters;
    std::unique_ptr<ModelCounters> mc_;
};

}  // namespace x86_tdp
}  // namespace kvmsim::models
