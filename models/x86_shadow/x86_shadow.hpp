// x86 shadow MMU model ("x86_shadow"): KVM's shadow MMU (arch/x86/kvm/mmu/mmu.c, paging_tmpl.h)
// for direct (L1) faults when the TDP MMU is off and for nested (L2) guests, following Linux
// v6.9 (torvalds/linux). The functions followed:
//   SPs         kvm_mmu_get_child_sp, kvm_mmu_get_shadow_page, __kvm_mmu_get_shadow_page,
//               kvm_mmu_find_shadow_page (for_each_valid_sp over mmu_page_hash, collisions),
//               kvm_mmu_alloc_shadow_page, account_shadowed, __link_shadow_page,
//               drop_large_spte, mmu_page_add_parent_pte
//   rmaps       pte_list_add / pte_list_remove (pte_list_desc of PTE_LIST_EXT = 14), rmap_add
//   faults      kvm_mmu_page_fault -> direct_page_fault -> direct_map (tdp_mmu=false) and
//               FNAME(page_fault) -> FNAME(fetch) for the shadow EPT of a nested guest;
//               fast_page_fault; mmu_topup_memory_caches(maybe_indirect)
//   roots       mmu_alloc_direct_roots, mmu_alloc_shadow_roots, mmu_first_shadow_root_alloc,
//               kvm_mmu_free_roots; the nested MMU (guest_mmu) through x86_context:
//               kvm_init_shadow_ept_mmu, kvm_mmu_new_pgd (prev_roots), kvm_mmu_reload/kvm_mmu_load,
//               free_nested, handle_invept
//   sync        kvm_unsync_page, kvm_mmu_mark_parents_unsync, mark_unsync, mmu_try_to_unsync_pages
//               (from make_spte), kvm_mmu_sync_roots, mmu_sync_children, mmu_unsync_walk,
//               kvm_sync_page (ept_sync_spte), kvm_vcpu_write_protect_gfn, account_shadowed's
//               write protection and write tracking, page_fault_handle_page_track,
//               kvm_mmu_track_write (detect_write_flooding, mmu_page_zap_pte)
//   zaps        kvm_mmu_prepare_zap_page / kvm_mmu_commit_zap_page (one flush per commit)
//   dirty log   kvm_mmu_slot_apply_flags, kvm_mmu_slot_try_split_huge_pages ->
//               kvm_shadow_mmu_try_split_huge_pages -> shadow_mmu_try_split_huge_pages,
//               shadow_mmu_try_split_huge_page, need_topup_split_caches_or_resched,
//               topup_split_caches, shadow_mmu_split_huge_page, shadow_mmu_get_sp_for_split,
//               kvm_mmu_slot_remove_write_access (slot_rmap_write_protect),
//               kvm_mmu_free_eager_page_split_caches; kvm_get_dirty_log_protect,
//               kvm_clear_dirty_log_protect -> kvm_arch_mmu_enable_log_dirty_pt_masked:
//               kvm_mmu_write_protect_pt_masked, rmap_write_protect / spte_write_protect (no PML)
//               or kvm_mmu_clear_dirty_pt_masked, __rmap_clear_dirty (PML),
//               kvm_mmu_slot_gfn_write_protect (initially-all-set); fast_page_fault and
//               mark_page_dirty_in_slot for the write faults that follow; with PML (host feature
//               pml) kvm_mmu_slot_leaf_clear_dirty, vmx_flush_pml_buffer, handle_pml_full,
//               kvm_arch_sync_dirty_log and v5.11's kvm_mmu_slot_set_dirty (__rmap_set_dirty);
//               disabling: kvm_mmu_zap_collapsible_sptes -> kvm_rmap_zap_collapsible_sptes,
//               kvm_mmu_zap_collapsible_spte, then mmu_set_spte's drop_parent_pte when a fault
//               maps the huge page over the emptied table. With tdp_mmu off,
//               eager_page_split splits the direct tree's huge pages (1G -> 2M -> 4K) as David
//               Matlack's unmerged "[PATCH 00/23] KVM: Extend Eager Page Splitting to the shadow
//               MMU" (2022-02-03) proposed; the direct tree maps 1G on 1G hugetlb backing
// With tdp_mmu on (kvm.tdp_mmu=Y), L1 faults and the TDP half of every bulk operation go to an
// embedded x86_tdp model sharing mmu_lock. Seed 000 (Peter Feiner's "avoid mmu_page_hash lookup
// for direct_map-only VM", 2020, and Sean Christopherson's review) and seed 001 (David Matlack's
// "Extend Eager Page Splitting to nested MMUs", v6 22/22, 2022, and its review) are knobs.
// See docs/models/x86_shadow.md for the design, the costs and what is left out.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/common/aging.hpp"
#include "models/common/host_memory.hpp"
#include "models/common/kvm_stats.hpp"
#include "models/common/memory_cache.hpp"
#include "models/common/mmu_lock_word.hpp"
#include "models/common/pml.hpp"
#include "models/common/resched.hpp"
#include "models/common/stream_hold.hpp"
#include "models/common/tlb_flush.hpp"
#include "models/x86_context/x86_context.hpp"
#include "models/host/host_mm.hpp"
#include "models/x86_tdp/x86_tdp.hpp"
#include "models/common/invalidation.hpp"
#include "sim/engine/sync.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

void register_x86_shadow(vm::ModelRegistry& registry);
vm::ModelInfo x86_shadow_model_info();

namespace x86_shadow {

inline constexpr std::uint32_t kMmuHashBuckets = 4096;        // 1 << KVM_MMU_HASH_SHIFT
inline constexpr std::uint32_t kPteListExt = 14;              // PTE_LIST_EXT
inline constexpr std::uint32_t kSplitDescCacheMin = 512 + 1;  // SPLIT_DESC_CACHE_MIN_NR_OBJECTS
inline constexpr std::uint64_t kPteListDescBytes = 128;       // sizeof(struct pte_list_desc)
inline constexpr std::uint64_t kMmuPageHeaderBytes = 192;     // about sizeof(struct kvm_mmu_page)
inline constexpr std::size_t kPageArrayNr = 16;                // KVM_PAGE_ARRAY_NR (mmu_unsync_walk's batch)

// L1's EPT pages for the L2 guest whose EPT root is at eptp (its EPT12): synthetic L1 frames,
// one region of 2^20 frames per EPTP above every memslot (so EPTPs never share a page): the PDPT
// pages first, then the PD pages, then the PT pages, in L2 guest-physical order.
// EPTPs are page addresses below 2^52 (MAXPHYADDR): frames below kEptpGfnLimit, so that
// `eptp << 20` cannot overflow; the model rejects others (std::invalid_argument).
inline constexpr vm::Gfn kEptPageGfnBase = vm::Gfn{1} << 44;
inline constexpr vm::Gfn kEptpGfnLimit = vm::Gfn{1} << (vm::kMaxPhysAddrBits - 12);
constexpr vm::Gfn ept_page_gfn(vm::Gfn eptp, int level, std::uint64_t rel) {
    const std::uint64_t off = level == 3 ? (rel >> 27) : level == 2 ? 4 + (rel >> 18) : 4 + 1024 + (rel >> 9);
    return kEptPageGfnBase + (eptp << 20) + 1 + off;
}
static_assert(kEptPageGfnBase + ((kEptpGfnLimit - 1) << 20) + (vm::Gfn{1} << 20) > kEptPageGfnBase,
              "ept_page_gfn fits 64 bits for every EPTP below 2^52");

// mmu_page_hash's hash: hash_64(gfn, KVM_MMU_HASH_SHIFT) (include/linux/hash.h).
constexpr std::uint32_t page_table_hash(std::uint64_t gfn) {
    return static_cast<std::uint32_t>((gfn * 0x61C8864680B583EBULL) >> (64 - 12));
}

// New descriptors pte_list_add needs when an rmap (or parent_ptes) list of n entries grows to
// n + 1: one when it turns into a list (n == 1), one whenever the head descriptor is full.
constexpr std::uint32_t pte_list_add_descs(std::uint32_t n) {
    return n == 1 || (n >= kPteListExt && n % kPteListExt == 0) ? 1 : 0;
}
// Descriptors a list of n entries holds.
constexpr std::uint32_t pte_list_descs(std::uint32_t n) { return n <= 1 ? 0 : (n + kPteListExt - 1) / kPteListExt; }

// Cost constants the shadow MMU adds to x86_tdp's (which it also reads).
struct Costs {
    engine::Time shadow_fault_base, hash_entry_step, sp_alloc_base, account_shadowed, rmap_op, rmap_head_step,
        sp_zap_base, rmap_alloc_per_4k, guest_walk_level, shadow_root_alloc, nested_transition, sync_spte,
        emulate_write, max_mapping_level;
    static const std::vector<std::string>& names();  // the shadow MMU's own
    static std::vector<std::string> all_names();      // with x86_tdp's and x86_context's
    static Costs from(const vm::CostProfile& p);
};

enum class ChildSpLookup : std::uint8_t { Always, SkipBool, SkipCount };
enum class RootAllocLock : std::uint8_t { Every, First };
enum class SplitCacheFree : std::uint8_t { FlagsChange, VmDestroy };

struct Config {
    bool tdp_mmu = false;
    ChildSpLookup child_sp_lookup = ChildSpLookup::Always;
    RootAllocLock root_alloc_lock = RootAllocLock::First;
    bool eager_page_split = true;
    bool preempt = true;
    std::uint32_t split_desc_cache_capacity = kSplitDescCacheMin + kKvmArchNrObjsPerMemoryCache;
    std::uint32_t alias_percent = 0;
    SplitCacheFree split_cache_free = SplitCacheFree::VmDestroy;
    bool pml_slot_set_dirty = false;  // x86_tdp's knob: v5.11's kvm_mmu_slot_set_dirty on the rmaps too
    static Config from(const vm::Knobs& knobs);
};

// One shadow page table: the direct tree (L1 guest physical addresses) or the nested tree of an
// EPTP. One state byte per SPTE (x86_tdp::spte bits) over the VM's guest physical span, and the
// SP id linked by every table entry (0: none).
struct Tree {
    bool nested = false;
    vm::Gfn eptp = 0;
    std::uint32_t root = 0;  // root SP (its root_count: the vCPUs' current and prev_roots references)
    std::vector<std::uint8_t> pte, pde, pdpte, pml4e;
    std::vector<std::uint32_t> pt_sp, pd_sp, pdpt_sp;
};

// The host's MMU-notifier callbacks are this model's (host::MmuNotifier): kvm_unmap_gfn_range
// zaps the shadow MMU's SPTEs of the range (its trees' leaves) and, with tdp_mmu on, the TDP
// MMU's (the embedded model's callbacks).
class X86ShadowMmu final : public vm::MmuModel, public host::MmuNotifier, private x86_context::RootOps {
public:
    explicit X86ShadowMmu(vm::ModelEnv& env);
    ~X86ShadowMmu() override;

    // The embedded TDP MMU's per-VM workers (NX huge page recovery) run as they would alone.
    void start_vm_workers(const vm::CpuContext& cpu) override {
        if (tdp_) tdp_->start_vm_workers(cpu);
    }
    void stop_vm_workers() override {
        if (tdp_) tdp_->stop_vm_workers();
    }

    // A nested transition (or the embedded TDP MMU's SMM) holds the stream: accesses only wait.
    bool stream_held(std::uint32_t vcpu) const override {
        return hold_.held(vcpu) || (tdp_ && tdp_->stream_held(vcpu));
    }

    // O(1): false while the vCPU's stream is held (a nested transition runs on it); else the
    // vCPU's tree (its nested root's, while it runs L2; else the direct tree or the TDP MMU's),
    // then the 4K entry, then the 2M entry, then the 1G entry.
    bool hits(std::uint32_t vcpu, vm::Gfn gfn, vm::Access access) const override {
        if (hold_.held(vcpu)) [[unlikely]]
            return false;
        const Tree* t = vcpu_tree_[vcpu];
        if (!t) {
            if (tdp_) return tdp_->hits(vcpu, gfn, access);
            t = direct_.get();
        }
        const std::uint64_t i = gfn - span_base_;
        if (i >= span_) [[unlikely]]
            return false;
        const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];
        const std::uint8_t e = t->pte[i];
        if (e & x86_tdp::spte::P) [[likely]]
            return (e & need) != 0 && hw_bits(vcpu, t->pte[i], 1, gfn, access);
        const std::uint8_t d = t->pde[i >> 9];
        if (d & x86_tdp::spte::LEAF) return (d & need) != 0 && hw_bits(vcpu, t->pde[i >> 9], 2, gfn, access);
        const std::uint8_t g = t->pdpte[i >> 18];  // a 1G leaf (direct tree, 1G backing)
        return (g & x86_tdp::spte::LEAF) && (g & need) != 0 && hw_bits(vcpu, t->pdpte[i >> 18], 3, gfn, access);
    }
    // With EPT A/D bits the CPU's walk sets the Accessed bit of an SPTE kvm_age_rmap cleared
    // (kAged) again on an access that hits (no exit, no simulated time). With PML (host feature
    // pml, the TDP MMU off) a write that hits a direct-tree SPTE whose Dirty bit KVM cleared
    // (kDirtyClear) has the CPU set it and log the GPA: pml_log. The only state hits() changes.
    // A fault's new writable SPTE has neither bit (make_spte sets A, and D when writable).
    static constexpr std::uint8_t kAged = 0x40;
    static constexpr std::uint8_t kDirtyClear = 0x80;
    bool hw_bits(std::uint32_t vcpu, const std::uint8_t& e, int level, vm::Gfn gfn, vm::Access access) const {
        if (!(e & (kAged | kDirtyClear))) [[likely]]
            return true;
        auto& m = const_cast<std::uint8_t&>(e);  // the tree is never const
        if (access == vm::Access::Write && (m & kDirtyClear) && !pml_log(vcpu, m, level, gfn)) return false;
        m = static_cast<std::uint8_t>(m & ~kAged);
        return true;
    }
    bool pml_log(std::uint32_t vcpu, std::uint8_t& e, int level, vm::Gfn gfn) const;
    bool hit_assists() const override { return pml_; }
    engine::Time take_hit_assist(std::uint32_t vcpu) override {
        return tdp_ ? tdp_->take_hit_assist(vcpu) : pml_log_.take_assist(vcpu);
    }
    engine::Task<std::uint64_t> age_range(const vm::CpuContext& cpu, const vm::AgeRequest& r) override;
    engine::Time fault_lookahead() const override;

    engine::Task<void> page_fault(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access) override;
    engine::Task<void> dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot,
                                        vm::DirtyLogOptions opts) override;
    engine::Task<std::uint64_t> dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, vm::Gfn first,
                                       std::uint64_t npages) override;
    engine::Task<void> dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> nested_start(const vm::CpuContext& cpu, vm::Gfn eptp) override;
    engine::Task<void> nested_stop(const vm::CpuContext& cpu, vm::Gfn eptp) override;
    engine::Task<void> nested_eptp_switch(const vm::CpuContext& cpu, const std::vector<vm::Gfn>& eptps) override;
    engine::Task<void> nested_ept_write(const vm::CpuContext& cpu, const vm::NestedEptWrite& w) override;

    // host::MmuNotifier
    engine::Task<void> invalidate_range_start(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> invalidate_range_end(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> change_pte(const vm::CpuContext& cpu, vm::Gfn gfn) override;
    host::HostMm& host_mm() { return *host_; }
    vm::Userfaultfd* userfaultfd() override { return host_->uffds() ? host_.get() : nullptr; }

    // Introspection for tests (no simulated cost).
    const Config& config() const { return cfg_; }
    std::uint64_t indirect_shadow_pages() const { return indirect_shadow_pages_; }
    std::uint64_t n_used_mmu_pages() const { return n_used_mmu_pages_; }
    std::uint32_t indirect_mmu_count() const { return indirect_mmus_; }
    bool shadow_root_allocated() const { return shadow_root_allocated_; }
    bool rmaps_allocated() const { return rmaps_; }
    std::uint32_t bucket_size(std::uint32_t bucket) const;
    // Entries of the rmap of gfn at level (1: 4K, 2: 2M) and descriptors it holds.
    std::uint32_t rmap_size(vm::Gfn gfn, int level) const;
    std::uint64_t pte_list_descs_live() const { return descs_live_; }
    // The level of the leaf mapping gfn for the vCPU (its nested tree while in L2), if any.
    std::optional<vm::PageLevel> mapping_level(std::uint32_t vcpu, vm::Gfn gfn) const;
    const MmuMemoryCache& split_desc_cache() const { return split_desc_; }
    std::uint64_t split_caches_bytes() const;
    x86_tdp::X86TdpMmu* tdp() { return tdp_.get(); }
    engine::RwLock& mmu_lock() { return mmu_.lock; }
    // The vCPUs' nested EPT MMUs (vcpu->arch.guest_mmu): current root and prev_roots.
    const x86_context::MmuContext& guest_mmu() const { return *guest_mmu_; }
    // The EPTP of the L2 guest the vCPU runs (nullopt: it runs L1).
    std::optional<vm::Gfn> running_eptp(std::uint32_t vcpu) const;
    // The root SP's root_count of the nested tree for eptp (0 if it has no root).
    std::uint32_t root_count(vm::Gfn eptp) const;
    // SPs with sp->unsync (KVM's mmu_unsync) and the root's unsync_children for eptp.
    std::uint64_t mmu_unsync() const { return unsync_sps_; }
    std::uint32_t root_unsync_children(vm::Gfn eptp) const;
    // Whether L1's mapping of its EPT page at gfn is writable (mmu_try_to_unsync_pages let it).
    bool l1_ept_page_writable(vm::Gfn gfn) const;

private:
    struct Sp;
    struct Unlinked;
    struct Slot;
    struct VcpuState;
    struct Bulk;
    struct ModelCounters;

    static constexpr std::uint8_t kNeed[4] = {x86_tdp::spte::P, x86_tdp::spte::W, x86_tdp::spte::X, 0};

    // --- state ---
    std::uint8_t& entry(Tree& t, int level, vm::Gfn gfn);
    std::uint32_t& child(Tree& t, int level, vm::Gfn gfn);  // the SP linked by the entry
    std::uint64_t entry_addr(const Tree& t, int level, vm::Gfn gfn) const;
    Slot* slot_of(vm::Gfn gfn);
    Slot& slot_by_id(std::uint32_t id);
    engine::Time touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes = 8);

    // --- shadow pages ---
    std::uint32_t find_shadow_page(std::uint32_t cpu, vm::Gfn gfn, std::uint32_t role, engine::Time& cost);
    std::uint32_t alloc_shadow_page(std::uint32_t cpu, vm::Gfn gfn, std::uint32_t role, MmuMemoryCache& header,
                                    MmuMemoryCache& page, MmuMemoryCache* info, engine::Time& cost);
    std::uint32_t get_shadow_page(std::uint32_t cpu, vm::Gfn gfn, std::uint32_t role, MmuMemoryCache& header,
                                  MmuMemoryCache& page, MmuMemoryCache* info, bool lookup, engine::Time& cost,
                                  bool* found = nullptr);
    engine::Time pte_list_add(std::uint32_t cpu, std::uint32_t& n, std::uint64_t head_addr, MmuMemoryCache& cache);
    engine::Time pte_list_remove(std::uint32_t cpu, std::uint32_t& n, std::uint64_t head_addr);
    engine::Time rmap_add(std::uint32_t cpu, vm::Gfn gfn, int level, MmuMemoryCache& cache);
    engine::Time rmap_remove(std::uint32_t cpu, vm::Gfn gfn, int level);
    std::uint64_t rmap_head_addr(vm::Gfn gfn, int level) const;
    int max_rmap_level() const { return has_1g_ ? 3 : 2; }
    engine::Time drop_large_spte(std::uint32_t cpu, Tree& t, int level, vm::Gfn gfn, bool flush);
    engine::Time link_shadow_page(std::uint32_t cpu, Tree& t, int level, vm::Gfn gfn, std::uint32_t sp,
                                  MmuMemoryCache& cache, bool flush);
    engine::Time zap_tree(std::uint32_t cpu, Tree& t, bool flush = true);
    engine::Time prepare_zap_page(std::uint32_t cpu, Tree& t, std::uint32_t sp, int level, vm::Gfn base);
    void free_sp(std::uint32_t sp);

    // --- faults ---
    engine::Task<void> fault(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access);
    engine::Time map(std::uint32_t cpu, VcpuState& v, Tree& t, Slot& s, vm::Gfn gfn, int goal, std::uint8_t leaf);
    engine::Time topup_caches(VcpuState& v, bool indirect);
    int max_level(const Slot& s, vm::Gfn gfn, int host_level) const;
    int guest_leaf_level(const Slot& s) const;
    engine::Time mark_page_dirty(Slot& s, vm::Gfn gfn, std::uint32_t cpu);

    // --- roots (the nested ones through x86_context: RootOps) ---
    engine::Task<void> first_shadow_root_alloc(const vm::CpuContext& cpu);
    engine::Task<void> note_indirect_mmu(const vm::CpuContext& cpu);
    x86_context::RootRole root_role(const x86_context::CpuRole& role) const override;
    engine::Task<std::uint64_t> get_root(const vm::CpuContext& cpu, x86_context::RootRole role, vm::Gfn pgd) override;
    engine::Task<void> put_roots(const vm::CpuContext& cpu, std::vector<std::uint64_t> roots) override;
    engine::Task<void> zap_unheld_trees(const vm::CpuContext& cpu);
    Tree& tree_for(vm::Gfn eptp);
    Tree* tree_of_root(std::uint64_t hpa);
    engine::Task<void> nested_enter(const vm::CpuContext& cpu, vm::Gfn eptp);

    // --- unsync / sync ---
    std::uint32_t parent_of(const Sp& sp, unsigned& idx) const;
    engine::Time mark_unsync(std::uint32_t cpu, std::uint32_t parent, unsigned idx);
    engine::Time unsync_page(std::uint32_t cpu, std::uint32_t sp);
    void unlink_unsync_page(Sp& sp);
    engine::Time sync_page(std::uint32_t cpu, std::uint32_t sp, bool& changed);
    int unsync_walk(std::uint32_t cpu, std::uint32_t sp, std::vector<std::pair<std::uint32_t, int>>& pvec,
                    engine::Time& cost);
    engine::Time sync_children_batch(std::uint32_t cpu, std::uint32_t parent, bool& found, bool& flush);
    engine::Time sync_children_now(std::uint32_t cpu, std::uint32_t parent);
    engine::Task<void> sync_roots(const vm::CpuContext& cpu);
    engine::Time write_protect_gfn(std::uint32_t cpu, vm::Gfn gfn, bool& protected_);
    engine::Time account_ept_page(std::uint32_t cpu, const Sp& sp);
    engine::Task<void> l1_ept_write(const vm::CpuContext& cpu, vm::Gfn page, unsigned idx);
    engine::Task<void> track_write(const vm::CpuContext& cpu, vm::Gfn page, unsigned idx);
    engine::Time zap_nested_sp(std::uint32_t cpu, Tree& t, int level, vm::Gfn base);
    engine::Time zap_sp(std::uint32_t cpu, std::uint32_t sp);
    engine::Time drop_parent_pte(std::uint32_t cpu, Tree& t, int level, vm::Gfn gfn);
    engine::Time unlink_child(std::uint32_t cpu, Tree& t, int level, vm::Gfn gfn, std::uint32_t& child);

    // --- SPs unlinked by kvm_mmu_track_write (kept in the hash, their state moved aside) ---
    void stash(std::uint32_t sp, Tree& t, int level, vm::Gfn base);
    bool restore(std::uint32_t sp, Tree& t);
    std::uint32_t unlinked_parent(const Tree& t, std::uint32_t sp) const;
    std::uint32_t unlinked_covering(const Tree& t, std::uint32_t sp) const;
    engine::Time drop_stashes(std::uint32_t cpu, std::uint32_t sp);

    // --- bulk ---
    Bulk make_bulk(const vm::CpuContext& cpu);
    engine::Task<void> settle(Bulk& b);
    engine::Task<void> lock(Bulk& b, engine::Site site);
    engine::Task<void> unlock(Bulk& b);
    engine::Task<void> cond_resched(Bulk& b, bool flush);
    bool need_resched(const Bulk& b) const;
    engine::Task<void> try_split_huge_pages(Bulk& b, Slot& s, vm::Gfn start, vm::Gfn end);
    engine::Task<void> split_huge_page(Bulk& b, Tree& t, int level, vm::Gfn gfn);
    engine::Task<void> remove_write_access(Bulk& b, Slot& s, int min_level, bool pending);
    engine::Task<bool> leaf_clear_dirty(Bulk& b, Slot& s);
    template <class Fn>
    engine::Task<void> walk_slot_rmaps(Bulk& b, Slot& s, int min_level, int max_level, bool flush_on_yield, bool& flush,
                                       Fn fn);
    engine::Task<void> slot_set_dirty(Bulk& b, Slot& s);
    engine::Time pml_flush(std::uint32_t vcpu, std::uint32_t cpu);
    bool pml_full_exit(std::uint32_t vcpu, vm::Gfn gfn) const;
    void sync_dirty_log(Bulk& b);
    engine::Task<void> zap_collapsible_sptes(Bulk& b, Slot& s);
    bool table_empty(const Tree& t, int level, vm::Gfn gfn) const;
    engine::Time replace_empty_table(std::uint32_t cpu, Tree& t, int level, vm::Gfn gfn);
    void free_subtree(Tree& t, std::uint32_t sp, int level, vm::Gfn base);
    bool rmap_write_protect(Bulk& b, vm::Gfn gfn, int level, bool pt_protect, bool clear_dirty = false);
    bool age_rmap(Bulk& b, vm::Gfn gfn, int level, bool clear);
    void enable_log_dirty_pt_masked(Bulk& b, Slot& s, std::uint64_t offset, std::uint64_t mask);
    engine::Task<std::uint64_t> get_dirty_log_protect(const vm::CpuContext& cpu, Slot& s);
    engine::Task<void> clear_dirty_log_protect(const vm::CpuContext& cpu, Slot& s, vm::Gfn first, std::uint64_t npages);
    struct DirtyLogCounters;
    DirtyLogCounters& dirty_log_counters();
    engine::Time topup_split_caches();
    std::uint32_t free_split_caches();
    void split_cache_gauges();

    engine::Simulator& sim_;
    engine::CacheModel& cache_;
    vm::VmConfig& vm_;
    Config cfg_;
    // Host feature pml (kvm_x86_ops.cpu_dirty_log_size != 0): dirty logging clears Dirty bits
    // rather than write-protecting where the SPTEs have A/D bits (the direct tree; nested SPs are
    // A/D-disabled for PML, so write-protected). The vCPUs' PML buffers are the embedded TDP
    // MMU's with the TDP MMU on, else pml_log_'s.
    bool pml_ = false;
    PmlLog pml_log_;
    std::uint32_t dirty_cleared_id_ = 0, dirty_set_id_ = 0;  // counters, with pml only
    AgeLock age_lock_ = AgeLock::Write;  // knob age_lock (x86_tdp's, shared)
    AgingCosts ak_;
    x86_tdp::Costs kt_;
    Costs k_;
    KvmStats stats_;
    RemoteTlbFlush tlb_;
    MmuLock mmu_;
    engine::RwLock& mmu_lock_ = mmu_.lock;
    MmuLockWord& lock_word_ = mmu_.word;
    engine::Mutex slots_lock_;
    engine::Mutex slots_arch_lock_;
    KernelDataLayout kdata_;
    PageTablePageAllocator pt_alloc_;
    std::unique_ptr<host::HostMm> host_;
    MmuInvalidation inv_;  // the shadow MMU's faults' view (the TDP MMU keeps its own)
    std::unique_ptr<x86_tdp::X86TdpMmu> tdp_;
    std::uint64_t hash_addr_ = 0, rmap_base_ = 0;

    std::vector<Sp> sps_;  // [0] unused: id 0 is "none"
    std::vector<std::uint32_t> free_sps_;
    std::vector<std::uint64_t> free_headers_;
    std::uint32_t hash_[kMmuHashBuckets] = {};
    std::uint64_t n_used_mmu_pages_ = 0;
    std::uint64_t indirect_shadow_pages_ = 0;
    std::uint64_t descs_live_ = 0;

    // Guest physical span covered by the trees and rmaps: [span_base_, span_base_ + span_).
    vm::Gfn span_base_ = 0;
    std::uint64_t span_ = 0;
    std::unique_ptr<Tree> direct_;                // tdp_mmu off: the direct tree
    std::vector<std::unique_ptr<Tree>> nested_;   // by EPTP
    std::vector<Tree*> vcpu_tree_;                // the nested tree a vCPU runs in (L2), else null
    std::unique_ptr<x86_context::MmuContext> guest_mmu_;  // every vCPU's vcpu->arch.guest_mmu
    // A vCPU's guest stream is held while a nested operation runs on it (from the nested VM-exit,
    // or L1's own work, to the end of the nested VM-entry).
    GuestStreamHold hold_;

    // Unsync state (KVM's mmu_unsync), L1's mappings of its EPT pages (by L1 gfn: P/W bits; absent
    // = not present) and write tracking (upper-level indirect SPs per gfn), and the entries L1
    // rewrote in an unsync SP's guest page since it went unsync (by SP id).
    std::uint64_t unsync_sps_ = 0;
    std::map<vm::Gfn, std::uint8_t> l1_ept_spte_;
    std::map<vm::Gfn, std::uint32_t> write_track_;
    std::map<std::uint32_t, std::array<std::uint64_t, 8>> gpte_written_;
    // SPs kvm_mmu_track_write unlinked from a nested tree (mmu_page_zap_pte without an invalid
    // list): still in mmu_page_hash with their SPTEs; their subtree's state, moved out of the
    // tree's arrays until a fault links them there again. By (SP id, the tree's EPTP).
    std::map<std::pair<std::uint32_t, vm::Gfn>, Unlinked> unlinked_;
    engine::SpinLock unsync_pages_lock_;
    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<std::unique_ptr<VcpuState>> vcpus_;

    // rmaps (kvm_memory_slot.arch.rmap) per 4K and per 2M gfn over the span, allocated up front
    // with tdp_mmu off and by the first shadow root otherwise; entry counts stand for the lists.
    bool rmaps_ = false;
    using RmapCount = std::uint16_t;  // entries; 2 bytes per gfn keeps large VMs affordable
    static constexpr std::uint32_t kRmapCountMax = 0xffff;
    std::vector<RmapCount> rmap4k_, rmap2m_;
    RmapCount& rmap_count(vm::Gfn gfn, int level);
    // The 1G rmaps (tdp_mmu off and a slot backed by 1G pages only: the direct tree maps 1G there;
    // elsewhere they are always empty and their heads are not walked, see docs/models/x86_shadow.md).
    bool has_1g_ = false;
    std::vector<RmapCount> rmap1g_;
    std::uint64_t rmap1g_base_ = 0;

    // Seed 000: the one-way bool / the indirect MMU count, and v6.9's shadow_root_allocated.
    bool may_have_multiple_parents_ = false;
    std::uint32_t indirect_mmus_ = 0;
    bool shadow_root_allocated_ = false;

    // Seed 001: kvm->arch.split_{desc,page_header,shadow_page}_cache.
    MmuMemoryCache split_desc_, split_header_, split_page_;
    std::int64_t split_bytes_reported_ = 0, split_leak_reported_ = 0;

    engine::Site site_direct_fault_, site_ept_fault_, site_root_, site_root_flag_, site_free_roots_, site_split_,
        site_wrprot_, site_memslot_, site_first_root_, site_sync_roots_, site_track_write_, site_tdp_fault_,
        site_unsync_, site_zap_trees_, site_mn_start_, site_mn_end_;
    std::unique_ptr<ModelCounters> mc_;
    // Registered on the first KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG, so that runs without them
    // report no new (zero) counters.
    std::unique_ptr<DirtyLogCounters> dlc_;
    std::optional<engine::Site> site_collapsible_;  // registered on the first disable
};

}  // namespace x86_shadow
}  // namespace kvmsim::models
