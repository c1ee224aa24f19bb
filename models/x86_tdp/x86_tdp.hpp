// x86 TDP MMU model ("x86_tdp"): KVM's two-dimensional paging MMU for EPT/NPT guests, following
// Linux v6.9 (torvalds/linux; arch/x86/kvm/mmu/tdp_mmu.c, arch/x86/kvm/mmu/mmu.c,
// arch/x86/kvm/x86.c, virt/kvm/kvm_main.c). The functions followed, one by one:
//   faults      kvm_tdp_page_fault -> kvm_tdp_mmu_page_fault: fast_page_fault,
//               mmu_topup_memory_caches, kvm_faultin_pfn (with the pre-check
//               mmu_invalidate_retry_gfn_unsafe), read_lock(mmu_lock), is_page_fault_stale,
//               kvm_tdp_mmu_map (tdp_mmu_link_sp, tdp_mmu_split_huge_page,
//               tdp_mmu_map_handle_target_level, tdp_mmu_set_spte_atomic)
//               older kernels by knob: fault_split = "zap" (v5.16's kvm_tdp_mmu_map:
//               tdp_mmu_zap_spte_atomic of the huge SPTE in the way, then tdp_mmu_link_page of an empty
//               page), tdp_mmu_fast_page_fault = false (v5.10-v5.14's direct_page_fault, which skipped
//               fast_page_fault for a TDP MMU root)
//   dirty log   kvm_mmu_slot_apply_flags, kvm_mmu_slot_try_split_huge_pages ->
//               tdp_mmu_split_huge_pages_root, kvm_mmu_slot_remove_write_access ->
//               wrprot_gfn_range, kvm_get_dirty_log_protect, kvm_clear_dirty_log_protect,
//               kvm_arch_mmu_enable_log_dirty_pt_masked (clear_dirty_pt_masked, write_protect_gfn,
//               kvm_mmu_try_split_huge_pages), kvm_mmu_zap_collapsible_sptes ->
//               zap_collapsible_spte_range
//   PML         (host feature pml) vmx_flush_pml_buffer and handle_pml_full (vmx/vmx.c),
//               vmx_update_cpu_dirty_logging, kvm_arch_sync_dirty_log, kvm_mmu_slot_leaf_clear_dirty ->
//               clear_dirty_gfn_range, clear_dirty_pt_masked (wrprot false), make_spte's Dirty bit;
//               v5.11's kvm_mmu_slot_set_dirty -> set_dirty_gfn_range by knob (pml_slot_set_dirty)
//   zaps        kvm_zap_gfn_range -> kvm_tdp_mmu_zap_leafs -> tdp_mmu_zap_leafs with
//               tdp_mmu_iter_cond_resched; the seed 003 alternatives (zap_lock knob): Yan Zhao's
//               "[PATCH v4 12/12] KVM: x86/mmu: convert kvm_zap_gfn_range() to use shared
//               mmu_lock in TDP MMU" (zap_gfn_range_atomic, tdp_mmu_zap_spte_atomic) and Sean
//               Christopherson's drop-write-zap-under-read suggestion
//   notifiers   kvm_mmu_notifier_invalidate_range_start/end -> kvm_unmap_gfn_range ->
//               kvm_tdp_mmu_unmap_gfn_range (the host's COW breaks and THP splits reach the
//               model through them, from models/host; v6.9 has no .change_pte hook any more)
//   host pages  kvm_faultin_pfn -> __kvm_faultin_pfn -> __gfn_to_pfn_memslot -> hva_to_pfn
//               (models/host: write faults ask for a writable pfn, a read fault accepts a
//               read-only one and maps it without the W and MMU-writable bits),
//               kvm_mmu_max_mapping_level -> host_pfn_mapping_level (the host mapping's size),
//               kvm_release_pfn_clean after mmu_lock
//   roots, SMM  kvm_tdp_mmu_get_vcpu_root_hpa, kvm_tdp_mmu_put_root (v6.4+; "drop": v5.17/v5.18's
//               synchronous tdp_mmu_zap_root), kvm_mmu_free_roots, enter_smm, emulator_leave_smm,
//               kvm_smm_changed, with the MMU context of models/x86_context
//   NX huge    (host feature nx_huge_pages, the iTLB multihit mitigation) make_spte (huge SPTEs
//   pages       non-executable), kvm_mmu_hugepage_adjust (huge_page_disallowed), disallowed_hugepage_adjust,
//               kvm_tdp_mmu_map (nx_huge_page_disallowed, track_possible_nx_huge_page under
//               tdp_mmu_pages_lock), make_huge_page_split_spte (4K children executable),
//               tdp_mmu_unlink_sp (untrack_possible_nx_huge_page), kvm_nx_huge_page_recovery_worker,
//               calc_nx_huge_pages_recovery_period, kvm_recover_nx_huge_pages and kvm_tdp_mmu_zap_sp
//               (v6.9, mmu_lock write) or, by knob, the read-lock recovery of Vipin Sharma / James
//               Houghton's "[PATCH v5 3/7] KVM: x86/mmu: Recover TDP MMU NX huge pages using MMU read
//               lock" (2025-07-07, kvm_tdp_mmu_zap_possible_nx_huge_page)
//   shared      kvm_mmu_invalidate_begin/range_add/end, kvm_flush_remote_tlbs,
//               __kvm_mmu_topup_memory_cache, tdp_iter (tdp_iter_next & co.)
// See docs/models/x86_tdp.md for what is simplified or left out.
#pragma once

#include <array>
#include <map>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/common/aging.hpp"
#include "models/common/bulk.hpp"
#include "models/common/host_memory.hpp"
#include "models/common/invalidation.hpp"
#include "models/common/kvm_stats.hpp"
#include "models/common/memory_cache.hpp"
#include "models/common/mmu_lock_word.hpp"
#include "models/common/pml.hpp"
#include "models/common/stream_hold.hpp"
#include "models/host/host_mm.hpp"
#include "models/common/resched.hpp"
#include "models/common/tlb_flush.hpp"
#include "models/x86_context/x86_context.hpp"
#include "sim/engine/contended_line.hpp"
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
        spte_update, tdp_iter_step, split_spte_fill, mmu_cache_alloc_page, mmu_cache_alloc_obj, tlb_flush_base, tlb_flush_per_vcpu, sched_timeslice,
        lock_yield, dirty_bitmap_word, memslot_update, tdp_root_lookup_step, smm_transition, pml_flush_entry,
        ept_dirty_assist;
    static const std::vector<std::string>& names();
    static Costs from(const vm::CostProfile& p);
    // Optional: the guest TLB (host feature guest_tlb), as arm64_stage2's.
    std::array<std::uint32_t, 3> tlb_entries{};
    std::uint32_t tlb_ways = 0;
    engine::Time tlb_walk_level;
    bool has_tlb = false;
    static const std::vector<std::string>& optional_names();
};

enum class ZapLock : std::uint8_t { Write, Read, DropWriteZapRead };
enum class HugePageRecovery : std::uint8_t { Zap, ZapBatchedFlush, InPlace };

struct Config {
    bool fault_lock_write = false;  // fault_lock = "write"
    ZapLock zap_lock = ZapLock::Write;
    bool fault_precheck = true;
    bool eager_page_split = true;
    bool preempt = true;  // CONFIG_PREEMPTION: rwlock_needbreak() is live
    // tdp_root_unload: "preserve" (v6.4+: the TDP MMU holds a reference to every valid root) or
    // "drop" (before: the last put frees the root and zaps its tree).
    bool preserve_roots = true;
    // fault_split: "in_place" (v6.2+: kvm_tdp_mmu_map splits a huge SPTE in the way with
    // tdp_mmu_split_huge_page) or "zap" (before: tdp_mmu_zap_spte_atomic, a flush, an empty table).
    bool fault_split_in_place = true;
    // tdp_mmu_fast_page_fault: v5.15+ (fast_page_fault serves TDP MMU roots); false = before,
    // where direct_page_fault skipped fast_page_fault for a TDP MMU root.
    bool tdp_mmu_fast_page_fault = true;
    // huge_page_recovery when dirty logging is disabled: "zap" (v6.9's zap_collapsible_spte_range,
    // a flush per zapped table), "zap_batched_flush" (v6.13's 35ef80eb29ab: flushes batched) or
    // "in_place" (v6.13's 13e2e4f62a4b: the table replaced by a huge SPTE, no refault).
    HugePageRecovery huge_page_recovery = HugePageRecovery::Zap;
    x86_context::InitMode mmu_init = x86_context::InitMode::FullEveryReset;
    // age_lock: kvm_age_gfn / kvm_test_age_gfn under mmu_lock for write (v6.9) or lockless
    // (v6.14, "KVM: x86/mmu: Age sptes locklessly").
    AgeLock age_lock = AgeLock::Write;
    // NX huge pages: the host feature (kvm.nx_huge_pages; set by the constructor from the host, not
    // a knob) and the recovery worker's module parameters.
    bool nx_huge_pages = false;
    // PML (Intel Page Modification Logging): the host feature pml (kvm_intel.pml with a CPU that
    // has PML and EPT A/D bits; set by the constructor from the host, not a knob).
    bool pml = false;
    // pml_slot_set_dirty: before v5.12, disabling dirty logging with PML set every leaf's Dirty
    // bit back (kvm_mmu_slot_set_dirty).
    bool pml_slot_set_dirty = false;
    std::int64_t nx_recovery_ratio = 60;      // nx_huge_pages_recovery_ratio (0: no recovery)
    std::int64_t nx_recovery_period_ms = 0;   // nx_huge_pages_recovery_period_ms (0: derived)
    bool nx_recovery_read = false;            // nx_recovery_lock = "read"
    // calc_nx_huge_pages_recovery_period: the period, or 0 when recovery is off.
    std::int64_t nx_recovery_period() const;
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
// make_spte with host_writable false (the host gave a read-only pfn: the zero page): neither
// writable nor MMU-writable, so a write is a fault the fast path cannot fix.
inline constexpr std::uint8_t LEAF_HOST_RO = P | X | LEAF;
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

// The host's MMU-notifier callbacks are this model's (host::MmuNotifier): the host's COW breaks
// and THP splits reach it through them, and so does the scenario operation "invalidate".
class X86TdpMmu final : public vm::MmuModel, public host::MmuNotifier, private x86_context::RootOps {
public:
    explicit X86TdpMmu(vm::ModelEnv& env);
    // Embedded in another model (x86_shadow with tdp_mmu on): the VM's one mmu_lock and the
    // host's mm are the embedding model's, and so is the notifier (it calls this one's).
    X86TdpMmu(vm::ModelEnv& env, MmuLock& shared_mmu_lock, host::HostMm& shared_host);
    ~X86TdpMmu() override;

    // From an SMI until RSM is done the vCPU's accesses enter the model only to wait.
    bool stream_held(std::uint32_t vcpu) const override { return hold_.held(vcpu); }

    vm::GuestTlb* guest_tlb() override { return gtlb_.get(); }
    engine::Time tlb_refill(std::uint32_t vcpu, vm::Gfn gfn) override;
    bool hits(std::uint32_t vcpu, vm::Gfn gfn, vm::Access access) const override {
        // An SMM transition or in SMM (the stream is held): the access must enter the model.
        if (hold_.held(vcpu)) [[unlikely]]
            return false;
        const std::uint64_t r = (gfn >> 18) - lut_base_;
        if (r >= lut_.size()) [[unlikely]]
            return false;
        const std::uint32_t ri = lut_[r];
        if (ri == kNoRegion) [[unlikely]]
            return false;
        const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];
        const std::size_t i4 = (static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff);
        const std::uint8_t e = pte_[i4];
        if (e & spte::P) [[likely]]
            return (e & need) != 0 && set_accessed(i4) && set_dirty(vcpu, i4, 1, gfn, access);
        const std::uint8_t d = pde_[(static_cast<std::size_t>(ri) << 9) | ((gfn >> 9) & 511)];
        if (d & spte::LEAF)
            return (d & need) != 0 && set_accessed(i4 & ~std::size_t{511}) &&
                   set_dirty(vcpu, i4 & ~std::size_t{511}, 2, gfn, access);
        const std::uint8_t u = pdpte_[ri];
        return (u & spte::LEAF) && (u & need) != 0 && set_accessed(i4 & ~std::size_t{0x3ffff}) &&
               set_dirty(vcpu, i4 & ~std::size_t{0x3ffff}, 3, gfn, access);
    }
    // With PML a write that hits a leaf (at `level`) whose Dirty bit KVM cleared has the CPU set
    // D (an assist: ept_dirty_assist plus the SPTE's line through the cache model, guest time
    // taken by take_hit_assist) and log the GPA in the vCPU's PML buffer, without an exit. A full
    // buffer makes it a PML-full VM exit instead (false: the access enters the model, page_fault
    // handles it).
    bool set_dirty(std::uint32_t vcpu, std::size_t head, int level, vm::Gfn gfn, vm::Access access) const {
        if (clean_.empty() || access != vm::Access::Write || !clean_[head]) [[likely]]
            return true;
        return pml_log(vcpu, head, level, gfn);
    }
    bool pml_log(std::uint32_t vcpu, std::size_t head, int level, vm::Gfn gfn) const;
    bool hit_assists() const override { return cfg_.pml; }
    engine::Time take_hit_assist(std::uint32_t vcpu) override { return pml_.take_assist(vcpu); }
    // With EPT A/D bits the CPU's page walk sets a leaf's Accessed bit on an access that hits: no
    // exit, no simulated time (the walk's cost is in guest_access). The model's only side effect
    // of hits(), and only once something was aged.
    bool set_accessed(std::size_t head) const {
        if (!aged_.empty()) [[unlikely]]
            aged_[head] = 0;
        return true;
    }
    engine::Task<std::uint64_t> age_range(const vm::CpuContext& cpu, const vm::AgeRequest& r) override;
    // Was the leaf mapping gfn aged (Accessed clear) and not accessed since? For tests.
    bool aged(vm::Gfn gfn) const;

    engine::Task<void> page_fault(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access) override;
    // The default's delay to `start`, then page_fault(), in one coroutine frame (fault()).
    engine::Task<void> page_fault_at(engine::Simulator& sim, const vm::CpuContext& cpu, vm::Gfn gfn,
                                     vm::Access access, engine::Time start) override;
    engine::Task<void> dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot,
                                        vm::DirtyLogOptions opts) override;
    engine::Task<std::uint64_t> dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, vm::Gfn first,
                                       std::uint64_t npages) override;
    engine::Task<void> dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> zap_gfn_range(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end,
                                     vm::ZapReason reason) override;
    engine::Task<void> invalidate_range(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> smm_transition(const vm::CpuContext& cpu, bool enter, const vm::SmiHandler& handler) override;

    // host::MmuNotifier
    engine::Task<void> invalidate_range_start(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> invalidate_range_end(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> change_pte(const vm::CpuContext& cpu, vm::Gfn gfn) override;

    // kvm_nx_huge_page_recovery_worker: started with the workload when nx_huge_pages is on and the
    // ratio is nonzero, stopped (kthread_stop) when it ends.
    void start_vm_workers(const vm::CpuContext& cpu) override;
    void stop_vm_workers() override;
    // The possible NX huge pages (tdp_mmu_possible_nx_huge_pages), oldest first: the level of the
    // SPTE linking each page table and its first gfn.
    std::vector<std::pair<int, vm::Gfn>> possible_nx_huge_pages() const;
    // kvm_recover_nx_huge_pages once, now (the worker's body; for tests).
    engine::Task<void> recover_nx_huge_pages(vm::CpuContext cpu);  // by value: callers (tests) pass temporaries

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
    const x86_context::MmuContext& context() const { return *ctx_; }
    host::HostMm& host_mm() { return *host_; }
    vm::Userfaultfd* userfaultfd() override { return host_->uffds() ? host_ : nullptr; }
    bool in_smm(std::uint32_t vcpu) const;
    // Roots in the list (valid or being freed) and the references of the one with hpa.
    std::size_t tdp_mmu_roots() const { return roots_.size(); }
    int root_refcount(std::uint64_t hpa) const;
    std::uint64_t root_hpa() const { return root_hpa_; }
    // kvm_mmu_new_pgd on a vCPU (CR3 load); true if a cached root was usable.
    engine::Task<bool> new_pgd(const vm::CpuContext& cpu, vm::Gfn pgd);

    static constexpr std::uint32_t kNoRegion = ~std::uint32_t{0};

private:
    X86TdpMmu(vm::ModelEnv& env, MmuLock* shared_mmu_lock, host::HostMm* shared_host);

    struct Slot;
    struct Region;
    struct Pml4e;
    struct Bulk;
    struct EntryRef;
    struct MapPlan;
    struct VcpuState;
    // A TDP MMU root (struct kvm_mmu_page with tdp_mmu_root_count).
    struct TdpRoot {
        x86_context::RootRole role;
        std::uint64_t hpa = 0;
        int refcount = 0;
    };

    static constexpr std::uint8_t kNeed[4] = {spte::P, spte::W, spte::X, 0};
    class NxTimer;

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
    // NX huge pages: the page table linked at (level, gfn) is nx_huge_page_disallowed, tracked as a
    // possible NX huge page or not; unlinking it untracks it (tdp_mmu_unlink_sp).
    void mark_nx(int level, vm::Gfn gfn, bool track);
    void unlink_nx(EntryRef& r);
    bool child_nx_disallowed(int level, vm::Gfn gfn) const;
    std::uint8_t split_child(std::uint8_t huge, int child_level) const;
    engine::Time pages_lock(std::uint32_t cpu, engine::Time at);
    engine::Task<void> nx_recovery_worker(vm::CpuContext cpu);
    engine::Task<void> nx_yield(Bulk& b, bool flush);

    // --- tdp_iter ---
    void iter_start(TdpIter& it, int min_level, vm::Gfn start) const;
    void iter_restart(TdpIter& it) const;
    void iter_next(TdpIter& it) const;

    // --- helpers ---
    Slot* slot_of(vm::Gfn gfn);
    const Slot* slot_of(vm::Gfn gfn) const;
    Slot& slot_by_id(std::uint32_t id);
    int max_mapping_level(const Slot& s, vm::Gfn gfn, int host_level) const;
    int host_mapping_level(vm::Gfn gfn) const;
    engine::Time touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes = 8);
    engine::Time mark_page_dirty(Slot& s, vm::Gfn gfn, std::uint32_t cpu);
    engine::Time topup_caches(VcpuState& v);

    // --- roots (x86_context::RootOps) ---
    x86_context::RootRole root_role(const x86_context::CpuRole& role) const override;
    engine::Task<std::uint64_t> get_root(const vm::CpuContext& cpu, x86_context::RootRole role, vm::Gfn pgd) override;
    engine::Task<void> put_roots(const vm::CpuContext& cpu, std::vector<std::uint64_t> roots) override;
    engine::Time zap_root_tree(std::uint32_t cpu);
    // page_fault() at `start` (>= now): one frame per exit, the stream hold's bracket included.
    engine::Task<void> fault(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access, engine::Time start);
    engine::Time guest_copy(std::uint32_t cpu, std::uint64_t gpa, std::uint64_t bytes, bool write);
    std::uint64_t lines_of(std::uint64_t addr, std::uint64_t bytes) const;

    // --- fault path ---
    void map_snapshot(MapPlan& p, std::uint32_t cpu, VcpuState& v, vm::Gfn gfn, int goal, std::uint8_t leaf);
    int map_commit(MapPlan& p, Slot& s, std::uint32_t cpu, int from = 0);
    int map_zap_link(MapPlan& p, Slot& s, std::uint32_t cpu);
    void nx_link(MapPlan& p, int level, std::uint32_t cpu);

    // --- bulk walkers (the Bulk context holds the lock guard and the unelapsed work) ---
    models::SettleAwaiter<models::BulkWalk> settle(Bulk& b);  // no frame
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
    using LeafOp = bool (X86TdpMmu::*)(Bulk& b, const TdpIter& it, EntryRef& r);
    engine::Task<std::uint64_t> leaf_walk(Bulk& b, vm::Gfn start, vm::Gfn end, int min_level, LeafOp op);
    bool wrprot_leaf(Bulk& b, const TdpIter& it, EntryRef& r);
    bool clear_dirty_leaf(Bulk& b, const TdpIter& it, EntryRef& r);
    bool set_dirty_leaf(Bulk& b, const TdpIter& it, EntryRef& r);
    engine::Task<void> zap_collapsible_spte_range(Bulk& b, Slot& s);
    // The first present leaf below the table at (level, gfn): its bits, and in `at` its (level, gfn).
    std::optional<std::uint8_t> first_leaf_below(Bulk& b, int level, vm::Gfn gfn, std::pair<int, vm::Gfn>& at);
    engine::Time replace_table(Bulk& b, int level, vm::Gfn gfn, std::uint8_t value);
    engine::Task<void> enable_log_dirty_pt_masked(Bulk& b, Slot& s, std::uint64_t offset, std::uint64_t mask);
    void clear_dirty_pt_masked(Bulk& b, vm::Gfn gfn, std::uint64_t mask, bool wrprot);
    void write_protect_gfn(Bulk& b, vm::Gfn gfn, int min_level);
    engine::Time pml_flush(std::uint32_t vcpu, std::uint32_t cpu);
    bool pml_full_exit(std::uint32_t vcpu, vm::Gfn gfn) const;
    void sync_dirty_log(Bulk& b);
    bool age_gfn_range(Bulk& b, vm::Gfn start, vm::Gfn end, bool clear);
    std::size_t age_index(int level, vm::Gfn gfn) const;

    engine::Simulator& sim_;
    engine::CacheModel& cache_;
    vm::VmConfig& vm_;
    Config cfg_;
    Costs k_;
    AgingCosts ak_;
    std::unique_ptr<host::HostMm> own_host_;  // null when the host's mm is shared
    host::HostMm* host_ = nullptr;
    KvmStats stats_;
    RemoteTlbFlush tlb_;
    MmuInvalidation inv_;
    std::unique_ptr<MmuLock> own_mmu_lock_;  // null when the lock is shared
    MmuLock& mmu_;
    engine::RwLock& mmu_lock_;  // mmu_.lock
    MmuLockWord& lock_word_;    // mmu_.word
    KernelDataLayout kdata_;
    PageTablePageAllocator pt_alloc_;
    std::uint64_t root_hpa_ = 0;
    std::uint64_t tdp_mmu_pages_ = 0;
    std::uint32_t next_serial_ = 1;

    // Page-table state: one Region per 1 GiB of guest physical space overlapping a memslot; the
    // PML4 entries per 512 GiB. Arrays are indexed by region (see x86_tdp.cpp).
    std::vector<Pml4e> pml4_;
    std::vector<std::uint64_t> region_g1_;      // 1G index (gfn >> 18) per region, sorted
    std::vector<std::uint32_t> region_pml4_;    // index into pml4_
    std::vector<std::uint8_t> pdpte_;           // per region
    std::vector<std::uint32_t> pd_serial_;      // per region: the PD page linked by the PDPTE
    std::vector<std::uint64_t> pd_page_;
    std::vector<std::uint8_t> pde_;             // region * 512 + index
    std::vector<std::uint32_t> pt_serial_;
    std::vector<std::uint64_t> pt_page_;
    std::vector<std::uint8_t> pte_;             // region * 262144 + index
    // Accessed bits KVM cleared (1: aged, not accessed since), per leaf at the pte_ index of its
    // first 4K; empty until the first aging pass. Mutable: hits() is where the CPU sets A again.
    mutable std::vector<std::uint8_t> aged_;
    // PML: Dirty bits KVM cleared (1: D clear, the leaf not written since), indexed as aged_;
    // empty without the host feature pml. The vCPUs' PML buffers and assists (models/common/pml.hpp).
    mutable std::vector<std::uint8_t> clean_;
    PmlLog pml_;
    // NX huge pages, per table entry at level 3 (per region) and 2 (region * 512 + index): 0 = the
    // linked page table is not nx_huge_page_disallowed, 1 = it is, >= 2 = it is and is tracked
    // (its key in nx_list_, which orders the list oldest first).
    std::vector<std::uint64_t> pd_nx_, pt_nx_;
    std::map<std::uint64_t, std::pair<int, vm::Gfn>> nx_list_;
    std::uint64_t nx_next_key_ = 2;
    std::unique_ptr<engine::ContendedLine> pages_lock_line_;  // kvm->arch.tdp_mmu_pages_lock
    std::unique_ptr<NxTimer> nx_timer_;
    std::unique_ptr<engine::Signal> nx_wake_;
    bool nx_stop_ = false;
    bool nx_running_ = false;
    std::vector<std::uint32_t> lut_;            // (gfn >> 18) - lut_base_ -> region
    std::uint64_t lut_base_ = 0;

    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<std::unique_ptr<VcpuState>> vcpus_;
    GuestStreamHold hold_;  // per vCPU: from an SMI until RSM is done (hits() is false)

    // Roots, newest first (list_add_rcu at the head of tdp_mmu_roots). Only the address-space-0
    // root has page-table state (the arrays above, rooted at root_hpa_); see x86_context.md.
    std::vector<TdpRoot> roots_;
    std::vector<std::uint64_t> was_mapped_;  // 4K bits (pte_ index): mapped by a freed root
    std::unique_ptr<x86_context::MmuContext> ctx_;

    // Sites and model counters.
    engine::Site site_fault_, site_zap_, site_split_, site_split_relock_, site_wrprot_, site_get_,
        site_clear_, site_collapsible_, site_mn_start_, site_mn_end_, site_free_roots_, site_alloc_root_,
        site_nx_recovery_, site_age_, site_test_age_, site_clear_dirty_, site_set_dirty_;
    struct ModelCounters;
    std::unique_ptr<ModelCounters> mc_;
    std::unique_ptr<vm::GuestTlb> gtlb_;  // host feature guest_tlb, else none
    engine::CounterId tlb_miss_id_ = 0, tlb_walk_id_ = 0;
    // Host feature pml only (so that runs without it keep their counter lists).
    engine::CounterId dirty_cleared_id_ = 0, dirty_set_id_ = 0;
};

}  // namespace x86_tdp
}  // namespace kvmsim::models
