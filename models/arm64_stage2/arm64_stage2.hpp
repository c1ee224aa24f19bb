// arm64 stage-2 MMU model ("arm64_stage2"): KVM/arm64's guest stage-2 page tables, following
// Linux v6.2 (torvalds/linux; arch/arm64/kvm/mmu.c, arch/arm64/kvm/hyp/pgtable.c,
// virt/kvm/kvm_main.c), with knobs for the older behaviour seed 004 measured (v5.12):
//   faults      kvm_handle_guest_abort -> user_mem_abort: vma_pagesize (PAGE_SIZE while dirty
//               logging, else the backing's, limited by fault_supports_stage2_huge_mapping and
//               transparent_hugepage_adjust), kvm_mmu_topup_memory_cache unless a permission
//               fault, mmap_read_lock + vma_lookup (find_vma_intersection in v5.12) +
//               mmap_read_unlock on every fault (two RMWs on the VM's mmap_lock line), the
//               mmu_invalidate_seq snapshot, __gfn_to_pfn_memslot, mmu_lock (spin_lock
//               before v6.2, read_lock since), mmu_invalidate_retry, then
//               kvm_pgtable_stage2_relax_perms (permission fault at the mapped size) or
//               kvm_pgtable_stage2_map, mark_page_dirty_in_slot
//   map walker  stage2_map_walker: stage2_map_walk_table_pre (table -> block, freeing the table),
//               stage2_map_walk_leaf (block -> table on a dirty-logged write),
//               stage2_map_walker_try_leaf (stage2_pte_needs_update, stage2_try_break_pte with
//               __kvm_tlb_flush_vmid_ipa / __kvm_tlb_flush_vmid, CMOs, stage2_make_pte),
//               stage2_attr_walker
//   CMOs        clean_dcache_guest_page (dcache_clean_inval_poc; nothing with FWB),
//               invalidate_icache_guest_page (by line up to a bound, else the whole I-cache);
//               in user_mem_abort (v5.12) or as kvm_pgtable_mm_ops callbacks in the walker
//               (Yanan Wang, "KVM: arm64: Move guest CMOs to the fault handlers", v5.14)
//   dirty log   kvm_mmu_wp_memory_region -> stage2_wp_range, kvm_get_dirty_log_protect,
//               kvm_clear_dirty_log_protect, kvm_arch_mmu_enable_log_dirty_pt_masked; disabling
//               only swaps the memslot (blocks are rebuilt by later faults)
//   eager split (knob eager_split_chunk_size, Ricardo Koller's series, merged for v6.5)
//               kvm_mmu_split_memory_region / kvm_arch_mmu_enable_log_dirty_pt_masked ->
//               kvm_mmu_split_huge_pages (need_split_memcache_topup_or_resched,
//               __kvm_mmu_topup_memory_cache with mmu_lock dropped) -> kvm_pgtable_stage2_split
//               (stage2_split_walker: kvm_pgtable_stage2_create_unlinked, stage2_try_break_pte)
//   notifiers   kvm_mmu_notifier_invalidate_range_start/end -> kvm_unmap_gfn_range ->
//               kvm_pgtable_stage2_unmap
// See docs/models/arm64_stage2.md for the design, the costs and what is left out.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/common/aging.hpp"
#include "models/common/host_memory.hpp"
#include "models/common/invalidation.hpp"
#include "models/common/kvm_stats.hpp"
#include "models/common/memory_cache.hpp"
#include "models/common/regions.hpp"
#include "models/common/resched.hpp"
#include "models/host/host_mm.hpp"
#include "sim/engine/sync.hpp"
#include "sim/vm/guest_tlb.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

// Adds "arm64_stage2" to the registry.
void register_arm64_stage2(vm::ModelRegistry& registry);
vm::ModelInfo arm64_stage2_model_info();

namespace arm64_stage2 {

// Cost constants read from the host profile (picoseconds; dcache_clean_byte in ps per byte,
// icache_line in bytes), by their profile names.
struct Costs {
    engine::Time fault_entry, fault_exit, user_mem_abort, mmu_cache_alloc_page,
        mmu_lock_op, stage2_map_base, stage2_walk_level, stage2_pte_update, stage2_free_entry, relax_perms_base,
        tlbi_ipa, tlbi_ipa_nsh, tlbi_vmid, icache_inval_line, icache_inval_all, mark_page_dirty, host_entry, memslot_update,
        stage2_walk_step, dirty_bitmap_word, sched_timeslice, lock_yield;
    double dcache_clean_byte = 0;  // ps per byte cleaned to the point of coherency
    std::uint64_t icache_line = 64;
    // Optional (absent: no TLB model, and tlbi = "range" cannot be costed): the guest TLB's
    // geometry, the refill walk's cost per stage-2 level, a __kvm_tlb_flush_vmid_range call and
    // each range TLBI instruction it issues.
    std::array<std::uint32_t, 3> tlb_entries{};  // tlb_entries_4k, _2m, _1g
    std::uint32_t tlb_ways = 0;
    engine::Time tlb_walk_level, tlbi_range, tlbi_range_op;
    bool has_tlb = false, has_tlbi_range = false;
    static const std::vector<std::string>& optional_names();
    static const std::vector<std::string>& names();
    static Costs from(const vm::CostProfile& p);
};

struct Config {
    bool spinlock = false;        // mmu_lock = "spinlock": before v6.2, everything exclusive
    bool cmo_in_walker = true;    // cmo = "map_walker" (v5.14+) or "user_mem_abort" (before)
    bool preempt = true;          // CONFIG_PREEMPTION: spin/rwlock_needbreak() is live
    bool fwb = false;             // host feature FEAT_S2FWB (stage2_has_fwb)
    // KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE in 4 KiB pages (kvm->arch.mmu.split_page_chunk_size);
    // 0: no eager splitting (the default, as in the kernel).
    std::uint64_t split_chunk_pages = 0;
    // relax_perms_tlbi = "local": kvm_pgtable_stage2_relax_perms invalidates with
    // __kvm_tlb_flush_vmid_ipa_nsh (Marc Zyngier, "KVM: arm64: Use local TLBI on permission
    // relaxation", a12ab1378a88, merged for v6.5 with the eager splitting series).
    bool relax_tlbi_local = false;
    bool hafdbs = false;          // host feature FEAT_HAFDBS: the CPU sets a stage-2 AF itself (VTCR_EL2.HA)
    AgeLock age_lock = AgeLock::Write;  // knob age_lock: kvm_age_gfn under mmu_lock write or read
    bool tlbi_range = false;      // tlbi = "range": FEAT_TLBIRANGE used (v6.6), else by IPA / VMID
    bool guest_tlb = false;       // host feature guest_tlb: the vCPUs' TLB is modelled
    static Config from(const vm::Knobs& knobs, const vm::HostConfig& host);
};

// The TLBI instructions __flush_tlb_range_op (arch/arm64/include/asm/tlbflush.h, v6.6) issues
// for `pages` 4 KiB pages with FEAT_TLBIRANGE (pages below MAX_TLBI_RANGE_PAGES).
std::uint64_t tlbi_range_ops(std::uint64_t pages);

// Stage-2 descriptor state bits, one byte per entry (see arm64_stage2.cpp).
namespace pte {
inline constexpr std::uint8_t V = 0x01;       // valid
inline constexpr std::uint8_t R = 0x02;       // S2AP read
inline constexpr std::uint8_t W = 0x04;       // S2AP write
inline constexpr std::uint8_t X = 0x08;       // executable (XN clear)
inline constexpr std::uint8_t T = 0x10;       // table descriptor (with V)
inline constexpr std::uint8_t LOCKED = 0x20;  // KVM_INVALID_PTE_LOCKED (not valid)
inline constexpr std::uint8_t TABLE = V | T;
}  // namespace pte

// The host's MMU-notifier callbacks (kvm_mmu_notifier_invalidate_range_start/_end,
// kvm_mmu_notifier_change_pte) are this model's: the host's COW breaks and THP splits reach it
// through them, and so does the scenario operation "invalidate" (a host unmap).
class Arm64Stage2 final : public vm::MmuModel, public host::MmuNotifier {
public:
    explicit Arm64Stage2(vm::ModelEnv& env);
    ~Arm64Stage2() override;

    // Reads the visible descriptors bottom-up: a valid level-3 page, else a level-2 block, else a
    // level-1 block (entries below anything but a linked table are kept zero).
    bool hits(std::uint32_t vcpu, vm::Gfn gfn, vm::Access access) const override {
        (void)vcpu;
        const std::uint32_t ri = regions_.of(gfn);
        if (ri == kNoRegion) [[unlikely]]
            return false;
        const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];
        const std::size_t i = (static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff);
        const std::uint8_t e3 = vis3_[i];
        if (e3 & pte::V) [[likely]]
            return (e3 & need) != 0 && young(i);
        const std::uint8_t e2 = vis2_[(static_cast<std::size_t>(ri) << 9) | ((gfn >> 9) & 511)];
        if ((e2 & pte::TABLE) == pte::V) return (e2 & need) != 0 && young(i & ~std::size_t{511});
        const std::uint8_t e1 = vis1_[ri];
        return (e1 & pte::TABLE) == pte::V && (e1 & need) != 0 && young(i & ~std::size_t{0x3ffff});
    }
    // A leaf whose access flag KVM cleared (aged) takes an access-flag fault (handle_access_fault),
    // unless the CPU has FEAT_HAFDBS: then its walk sets the AF (VTCR_EL2.HA, set by v6.2's
    // kvm_get_vtcr) with no exit and no simulated time, hits()'s only side effect.
    bool young(std::size_t head) const {
        if (aged_.empty() || !aged_[head]) [[likely]]
            return true;
        if (!cfg_.hafdbs) return false;
        aged_[head] = 0;
        return true;
    }
    engine::Task<std::uint64_t> age_range(const vm::CpuContext& cpu, const vm::AgeRequest& r) override;
    // For tests: is the leaf mapping gfn aged (AF clear) and not accessed since?
    bool aged(vm::Gfn gfn) const;

    engine::Task<void> page_fault(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access) override;
    engine::Task<void> page_fault_at(engine::Simulator& sim, const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access,
                                     engine::Time start) override;
    std::optional<engine::Time> page_fault_now(const vm::CpuContext& cpu, vm::Gfn gfn, vm::Access access,
                                               engine::Time start) override;
    engine::Time fault_lookahead() const override { return min_fault_pre_; }
    vm::GuestTlb* guest_tlb() override { return tlb_.get(); }
    engine::Time tlb_refill(std::uint32_t vcpu, vm::Gfn gfn) override;
    engine::Task<void> vm_destroy(const vm::CpuContext& cpu) override;

    engine::Task<void> dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot,
                                        vm::DirtyLogOptions opts) override;
    engine::Task<std::uint64_t> dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, vm::Gfn first,
                                       std::uint64_t npages) override;
    engine::Task<void> dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) override;
    engine::Task<void> invalidate_range(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;

    // host::MmuNotifier
    engine::Task<void> invalidate_range_start(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> invalidate_range_end(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) override;
    engine::Task<void> change_pte(const vm::CpuContext& cpu, vm::Gfn gfn) override;

    // Introspection for tests (no simulated cost; the visible state, as the guest sees it).
    std::optional<vm::PageLevel> mapping_level(vm::Gfn gfn) const;
    std::uint8_t leaf(vm::Gfn gfn) const;  // the visible leaf descriptor mapping gfn (0 if none)
    std::int64_t pages(vm::PageLevel level) const { return stats_.pages(level); }
    std::uint64_t table_pages() const { return pt_alloc_.live(); }  // including the 2 root pages
    bool dirty(std::uint32_t slot, vm::Gfn gfn) const;
    const Config& config() const { return cfg_; }
    const MmuMemoryCache& split_page_cache() const { return split_cache_; }
    const Costs& costs() const { return k_; }
    host::HostMm& host_mm() { return *host_; }
    vm::Userfaultfd* userfaultfd() override { return host_->uffds() ? host_.get() : nullptr; }
    // For tests: every call point (a GUP, a spinlock arrival) waits for its own event (the
    // reference for the call points taken ahead of events, which must give the same run).
    void set_early_arrivals(bool on) { early_ = on; }

    static constexpr std::uint32_t kNoRegion = GibRegions::kNone;

private:
    struct Slot;
    struct VcpuState;
    struct Fault;
    struct Walk;
    struct Bulk;
    struct Publish;
    struct TlWaiter;
    struct TraceItem;
    struct ModelCounters;
    class Publisher;
    struct SpinWaitAwaiter;
    struct SpinTarget;

    static constexpr std::uint8_t kNeed[4] = {pte::R, pte::W, pte::X, 0};

    // --- descriptors ---
    static std::size_t i2(std::uint32_t ri, vm::Gfn gfn) { return (std::size_t{ri} << 9) | ((gfn >> 9) & 511); }
    static std::size_t i3(std::uint32_t ri, vm::Gfn gfn) { return (std::size_t{ri} << 18) | (gfn & 0x3ffff); }
    std::uint8_t walk_step(Bulk& b, int level, std::uint32_t ri, vm::Gfn g);
    std::uint8_t& plan_entry(int level, std::uint32_t ri, vm::Gfn gfn) {
        return level == 1 ? plan1_[ri] : level == 2 ? plan2_[i2(ri, gfn)] : plan3_[i3(ri, gfn)];
    }
    std::uint8_t& vis_entry(int level, std::uint32_t ri, vm::Gfn gfn) {
        return level == 1 ? vis1_[ri] : level == 2 ? vis2_[i2(ri, gfn)] : vis3_[i3(ri, gfn)];
    }
    // The descriptor's address in the synthetic host-physical space (what the cache model sees).
    // The walk reaches a level only through a linked table, so the table page exists.
    std::uint64_t entry_addr(int level, std::uint32_t ri, vm::Gfn gfn) const {
        if (level == 1) return root_hpa_ + ((gfn >> 18) & 1023) * 8;
        if (level == 2) return t2_page_[ri] + ((gfn >> 9) & 511) * 8;
        return t3_page_[i2(ri, gfn)] + (gfn & 511) * 8;
    }
    std::uint32_t region_of(vm::Gfn gfn) const { return regions_.of(gfn); }
    void zero_below(bool vis, int level, std::uint32_t ri, vm::Gfn gfn);
    std::uint64_t free_subtree(int level, std::uint32_t ri, vm::Gfn gfn);
    void set_both(int level, std::uint32_t ri, vm::Gfn gfn, std::uint8_t value);
    // The guest TLB's entries a visible descriptor change takes away (the TLBI that goes with it).
    void tlb_vis_change(int level, vm::Gfn gfn, std::uint8_t old, std::uint8_t value);
    // kvm_flush_remote_tlbs_memslot / kvm_arch_flush_remote_tlbs_range over [start, end): returns its time.
    engine::Time flush_range(vm::Gfn start, vm::Gfn end);
    // kvm_tlb_flush_vmid_range (v6.6) over [start, end): __kvm_tlb_flush_vmid_range calls of at most
    // MAX_TLBI_RANGE_PAGES (counted); returns its time. The TLB's entries go with the descriptor
    // changes (tlb_vis_change) or at the caller.
    engine::Time tlb_flush_vmid_range(vm::Gfn start, vm::Gfn end);

    // --- the fault path ---
    bool prepare(Fault& f, const vm::CpuContext& ctx, vm::Gfn gfn, vm::Access access, engine::Time start);
    void commit(Fault& f);
    void after_gup(Fault& f);
    // A call point (see arm64_stage2.cpp): a fault's GUP, its arrival at the spinlock, its put_page,
    // or a GUP changing the host's page tables, under way (kHost).
    struct Call {
        std::int64_t t = 0;
        const engine::LineState* line = nullptr;  // kPut: the refcount line
        vm::Gfn gfn = 0;                          // kGup
        std::uint32_t id = 0;                     // its fault's vCPU: its slot in pending_pos_
        enum Kind : std::uint8_t { kGup, kArrival, kPut, kHost } kind = kGup;
        bool write = false;
    };
    // A pending kGup's host_->gup_lines() as of the host's state version `ver` (recomputed when
    // the host's state has changed since).
    struct CachedLines {
        host::GupLines lines;
        std::uint64_t ver = ~std::uint64_t{0};
    };
    struct CallWait;
    // A call point's time: the fault's GUP (kGup, kHost), its arrival, its put_page.
    [[gnu::always_inline]] static inline engine::Time call_time(Call::Kind kind, const Fault& f);
    engine::Time release(Fault& f);
    bool call_now(Call::Kind kind, const Fault& f);
    void pending_push(Call::Kind kind, const Fault& f);
    void pending_erase(std::uint32_t id);
    std::uint32_t topup_objects(const VcpuState& v) const;
    int max_mapping_level(const Slot& s, vm::Gfn gfn) const;
    engine::Time hold(Fault& f, engine::Time g);  // the work under mmu_lock from g; returns its length
    bool hold_head(Walk& w);
    void hold_walk(Walk& w);
    void map(Walk& w);
    void relax_perms(Walk& w);
    void try_leaf(Walk& w, int level, std::uint8_t old);
    void emit(Walk& w, int level, vm::Gfn gfn, std::uint8_t value, bool leaf);
    engine::Time dcache_clean(std::uint32_t cpu, std::uint64_t bytes, engine::Time at);
    engine::Time walk_clean(Walk& w, std::uint64_t bytes);
    engine::Task<void> run_clean(Walk& w);
    engine::Time icache_inval(std::uint64_t bytes);
    engine::Time mark_page_dirty(Slot& s, vm::Gfn gfn, std::uint32_t cpu);
    engine::Time touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes = 8);
    engine::Time lock_line(std::uint32_t cpu, bool queued);
    engine::Task<void> fault_rw(Fault& f, const vm::CpuContext& ctx);
    engine::Task<void> page_fault_cold(const vm::CpuContext& ctx, vm::Gfn gfn, vm::Access access, engine::Time start);
    engine::Task<void> gup_changing(Fault& f, const vm::CpuContext& ctx);

    // --- mmu_lock as a spinlock: a FIFO timeline of reserved holds (see arm64_stage2.cpp) ---
    engine::Time spin_reserve(Fault& f, engine::Time g);
    void spin_granted(engine::Process* p, engine::Site site, engine::Time t1, engine::Time g, bool wait_traced = false);
    void spin_open(engine::Process* p, engine::Site site, engine::Time t1, engine::Time g, bool wait_traced = false);
    void spin_release_host();
    engine::LockRecord& spin_record(engine::Site site);
    void publish(engine::Time at, int level, std::uint32_t ri, vm::Gfn gfn, std::uint8_t value);
    void publish_due();
    void trace_add(engine::Time t, std::uint8_t kind, std::uint32_t pid, engine::Site site);
    void trace_flush();

    // --- host-side operations ---
    Bulk make_bulk(const vm::CpuContext& cpu);
    engine::Task<void> settle(Bulk& b);
    // read: mmu_lock for read (the rwlock). entry: the request's way to the lock first (host_entry); false for a re-acquisition inside
    // the same request under the rwlock (kvm_mmu_split_huge_pages after its top-up).
    engine::Task<void> lock(Bulk& b, engine::Site site, bool read = false, bool entry = true);
    engine::Task<void> unlock(Bulk& b);
    engine::Task<void> cond_resched(Bulk& b);
    bool needbreak() const;
    engine::Task<void> wp_range(Bulk& b, vm::Gfn start, vm::Gfn end);
    void wp_entry(Bulk& b, int level, std::uint32_t ri, vm::Gfn gfn);
    engine::Task<void> harvest(Bulk& b, Slot& s, std::uint64_t word, std::uint64_t mask);
    engine::Task<void> unmap_range(Bulk& b, vm::Gfn start, vm::Gfn end);
    // --- eager page splitting (eager_split_chunk_size) ---
    std::uint32_t split_nr_page_tables() const;
    bool need_split_memcache_topup_or_resched(const Bulk& b) const;
    engine::Task<void> split_huge_pages(Bulk& b, vm::Gfn start, vm::Gfn end);
    bool stage2_split(Bulk& b, vm::Gfn start, vm::Gfn end);
    bool split_block(Bulk& b, int level, std::uint32_t ri, vm::Gfn gfn);
    bool age_leaves(Bulk& b, vm::Gfn start, vm::Gfn end, bool clear);
    bool access_fault(vm::Gfn gfn, vm::Access access) const;
    engine::Task<void> handle_access_fault(const vm::CpuContext& ctx, vm::Gfn gfn, engine::Time start);
    std::size_t leaf_head(vm::Gfn gfn) const;  // the aged_ index of the visible leaf mapping gfn
    Slot* slot_of(vm::Gfn gfn);
    const Slot* slot_of(vm::Gfn gfn) const;
    Slot& slot_by_id(std::uint32_t id);

    engine::Simulator& sim_;
    engine::CacheModel& cache_;
    vm::VmConfig& vm_;
    Config cfg_;
    Costs k_;
    AgingCosts ak_;
    std::unique_ptr<host::HostMm> host_;
    std::uint64_t dcache_rate_ = 0;  // bytes/s one core cleans to PoC (1 / dcache_clean_byte)
    KvmStats stats_;
    MmuInvalidation inv_;
    KernelDataLayout kdata_;
    PageTablePageAllocator pt_alloc_;
    std::uint64_t root_hpa_ = 0;
    std::uint64_t mmu_lock_addr_ = 0;
    std::uint32_t lock_cpu_ = ~std::uint32_t{0};  // the CPU whose cache holds the lock word
    engine::LineTransfer line_xfer_;              // the host's topology's line transfers
    engine::Time lock_hit_;
    engine::Time min_fault_pre_;  // the least time from a fault's start to mmu_lock
    engine::Time min_lead_;       // ... from any event to any GUP, put_page or host change
    engine::Time min_arrival_;    // ... to any arrival at mmu_lock or host operation
    bool early_ = true;

    // Descriptors: one region per 1 GiB of IPA space overlapping a memslot: its level-1 entry, its
    // level-2 table (512) and the level-3 tables below (262144). vis*: what the guest sees (hits);
    // plan*: what walkers under mmu_lock read and write (ahead of vis by the reserved holds).
    std::vector<std::uint8_t> vis1_, vis2_, vis3_, plan1_, plan2_, plan3_;
    // Access flags KVM cleared (1: aged, not accessed since), per leaf at the vis3_ index of its
    // first 4K; empty until the first aging. Mutable: with FEAT_HAFDBS hits() sets the AF again.
    mutable std::vector<std::uint8_t> aged_;
    std::vector<std::uint64_t> t2_page_;  // per region: the level-2 table page linked from level 1
    std::vector<std::uint64_t> t3_page_;  // per region * 512: the level-3 table pages
    GibRegions regions_;

    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<std::unique_ptr<VcpuState>> vcpus_;

    // mmu_lock: the engine's rwlock (mmu_lock = "rwlock"), or the spinlock timeline.
    std::optional<engine::RwLock> rw_;
    std::optional<engine::ContendedLine> rw_word_;  // the rwlock's count (qrwlock cnts)
    std::uint32_t spin_id_ = 0;            // lock-statistics id of the timeline
    engine::Time busy_until_;              // end of the last reserved hold
    bool open_ = false;                    // a host operation holds (or is next to hold) the lock
    std::deque<TlWaiter> waiters_;         // arrivals while open_, FIFO
    // Call points still waiting for their event (each list in any order), by what call_now must
    // compare them with: 0 GUPs and put_pages, 1 arrivals, 2 host changes under way; with their
    // times apart, for the scans.
    // Each list's first pending_n_ entries are in use; its capacity is one per vCPU.
    std::array<std::vector<Call>, 3> pending_;
    std::array<std::vector<std::int64_t>, 3> pending_t_;
    std::array<std::uint32_t, 3> pending_n_{};
    std::vector<CachedLines> pending_lines_;   // beside pending_[0]
    std::vector<std::uint32_t> pending_pos_;   // by Call::id (the vCPU): its list and index there (list << 30 | index)
    static constexpr std::uint32_t kNoPos = ~std::uint32_t{0};
    struct RecordSlot {
        std::uint64_t key;
        engine::LockRecord* rec;
    };
    std::vector<RecordSlot> records_;
    engine::LockRecord* fault_rec_ = nullptr;  // the faults' record in phase fault_rec_phase_
    std::size_t fault_rec_phase_ = ~std::size_t{0};
    engine::Time open_since_;
    engine::Site open_site_;
    engine::Process* open_holder_ = nullptr;
    std::unique_ptr<SpinTarget> spin_target_;

    std::deque<Publish> pub_;              // visible-state changes, in time order
    std::unique_ptr<Publisher> publisher_;
    std::vector<TraceItem> trace_;         // min-heap of trace records not yet due
    std::uint64_t trace_seq_ = 0;

    engine::Site site_fault_, site_wp_, site_get_, site_clear_, site_mn_start_, site_mn_end_, site_mn_change_,
        site_split_region_, site_split_;
    MmuMemoryCache split_cache_;  // kvm->arch.mmu.split_page_cache
    std::vector<std::uint64_t> split_pages_;  // its pages' addresses (zeroed, so cached, at the top-up)
    std::unique_ptr<ModelCounters> mc_;
    struct TlbCounters;
    std::unique_ptr<TlbCounters> tc_;
    std::unique_ptr<vm::GuestTlb> tlb_;
    engine::Site site_destroy_;
};

}  // namespace arm64_stage2
}  // namespace kvmsim::models
