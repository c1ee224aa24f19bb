// x86 shadow MMU model: see x86_shadow.hpp for the kernel functions followed and
// docs/models/x86_shadow.md for the design, the costs and what is left out.
//
// State. A Tree is one shadow page table: the direct tree (tdp_mmu off: L1 guest physical
// addresses, direct SPs only) or a nested tree per EPTP (the shadow of L1's EPT for an L2 guest;
// L1's EPT is modelled as the identity map, with 2M pages where the memslot's backing is huge).
// Each tree keeps one state byte per SPTE (x86_tdp::spte bits) over the VM's guest physical span,
// plus the SP linked by every table entry. SPs (struct kvm_mmu_page) live in sps_, hashed by gfn
// into mmu_page_hash (4096 buckets, newest first). rmaps and parent_ptes are entry counts; the
// pte_list_desc objects they would hold are allocated from the caches as pte_list_add does.
//
// Time. Everything the shadow MMU does runs under mmu_lock held for write, so a fault applies its
// changes when it gets the lock and then lets the work under the lock elapse in one delay. Bulk
// walkers accumulate work and let it elapse every kSettleQuantum and before every lock drop.
#include "models/x86_shadow/x86_shadow.hpp"

#include <algorithm>
#include <bit>
#include <iterator>
#include <stdexcept>
#include <tuple>

#include "models/common/bulk.hpp"
#include "models/common/costs.hpp"
#include "models/common/dirty_bitmap.hpp"
#include "models/common/knobs.hpp"
#include "models/common/slot.hpp"
#include "models/x86_context/x86_context.hpp"

namespace kvmsim::models {
namespace x86_shadow {

using engine::Task;
using engine::Time;
using vm::Gfn;
namespace spte = x86_tdp::spte;

namespace {

constexpr Time kSettleQuantum = Time::us(1);  // simulation granularity of bulk walkers
constexpr std::string_view kModel = "x86_shadow";

// A pte_list_desc's synthetic address: derived from its list's head (the slab placement is not
// modelled), in a region of its own.
constexpr std::uint64_t kDescBase = kKernelDataBase + (1ULL << 38);
constexpr std::uint64_t desc_addr(std::uint64_t head) { return kDescBase + ((head * 16) & ((1ULL << 36) - 64)); }

// L1's rmap head and SPTE for one of its EPT pages (kvm_mmu_slot_gfn_write_protect's work): a line
// derived from the page's gfn, in a region of its own.
constexpr std::uint64_t kEptMetaBase = kKernelDataBase + (1ULL << 39);
constexpr std::uint64_t ept_meta_addr(Gfn gfn) { return kEptMetaBase + ((gfn * 64) & ((1ULL << 38) - 64)); }
// The host memory of L1's EPT pages (guest memory KVM reads when it syncs an SP): synthetic, in
// host_memory.hpp's EPT12 window.
constexpr std::uint64_t ept_page_addr(Gfn gfn) {
    return kEptPageHostBase + (((gfn - kEptPageGfnBase) << 12) & (kEptPageHostWindow - 1));
}
constexpr int kFloodThreshold = 3;  // detect_write_flooding: write_flooding_count >= 3

void check_eptp(const vm::CpuContext& cpu, Gfn eptp, const char* op) {
    if (eptp >= kEptpGfnLimit)
        throw std::invalid_argument(std::string("x86_shadow: ") + op + " on '" + cpu.name + "' with an EPTP at frame " +
                                    std::to_string(eptp) + ", not below 2^52");
}

constexpr bool is_present(std::uint8_t e) { return (e & spte::P) != 0; }
constexpr bool is_leaf(std::uint8_t e) { return (e & (spte::P | spte::LEAF)) == (spte::P | spte::LEAF); }
constexpr bool is_table(std::uint8_t e) { return (e & (spte::P | spte::LEAF)) == spte::P; }
constexpr std::uint64_t pages_at(int level) { return std::uint64_t{1} << (9 * (level - 1)); }
constexpr Gfn round_gfn(Gfn gfn, int level) { return gfn & ~(pages_at(level) - 1); }
constexpr unsigned spte_index(Gfn gfn, int level) { return static_cast<unsigned>((gfn >> (9 * (level - 1))) & 511); }

// union kvm_mmu_page_role, the fields the model uses: level, direct, guest_mode (access is
// always ACC_ALL).
constexpr std::uint32_t make_role(int level, bool direct, bool guest_mode) {
    return static_cast<std::uint32_t>(level) | (direct ? 0x10u : 0u) | (guest_mode ? 0x20u : 0u);
}
constexpr int role_level(std::uint32_t r) { return static_cast<int>(r & 0xf); }
constexpr bool role_direct(std::uint32_t r) { return (r & 0x10u) != 0; }

// The alias_percent knob: whether an L1 gfn is also mapped by another L2 gfn or nested root (a
// deterministic pseudo-random choice per gfn).
bool aliased(Gfn gfn, std::uint32_t percent) {
    if (percent == 0) return false;
    std::uint64_t x = gfn + 0x9E3779B97F4A7C15ULL;  // SplitMix64 finalizer
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x % 100 < percent;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Costs, knobs

const std::vector<std::string>& Costs::names() {
    static const std::vector<std::string> n = {
        "shadow_fault_base", "hash_entry_step",   "sp_alloc_base", "account_shadowed",  "rmap_op",
        "rmap_head_step",    "sp_zap_base",       "rmap_alloc_per_4k", "guest_walk_level", "shadow_root_alloc",
        "nested_transition", "sync_spte",         "emulate_write",     "max_mapping_level",
    };
    return n;
}

std::vector<std::string> Costs::all_names() {
    std::vector<std::string> n = x86_tdp::Costs::names();
    n.insert(n.end(), names().begin(), names().end());
    const auto& ctx = x86_context::Costs::names();
    n.insert(n.end(), ctx.begin(), ctx.end());
    const auto& hc = host::Costs::names();
    n.insert(n.end(), hc.begin(), hc.end());
    const auto& ac = AgingCosts::names();
    n.insert(n.end(), ac.begin(), ac.end());
    return n;
}

Costs Costs::from(const vm::CostProfile& p) {
    require_costs(p, all_names(), "x86_shadow");
    // In the order of names().
    static constexpr Time Costs::*kFields[] = {
        &Costs::shadow_fault_base, &Costs::hash_entry_step, &Costs::sp_alloc_base,     &Costs::account_shadowed,
        &Costs::rmap_op,           &Costs::rmap_head_step,  &Costs::sp_zap_base,       &Costs::rmap_alloc_per_4k,
        &Costs::guest_walk_level,  &Costs::shadow_root_alloc, &Costs::nested_transition, &Costs::sync_spte,
        &Costs::emulate_write,     &Costs::max_mapping_level,
    };
    static_assert(std::size(kFields) == 14);
    Costs c;
    for (std::size_t i = 0; i < std::size(kFields); ++i) c.*kFields[i] = p.time(names()[i]);
    return c;
}

Config Config::from(const vm::Knobs& knobs) {
    Config c;
    c.tdp_mmu = knob_bool(knobs, "tdp_mmu", false, kModel);
    const std::string l = knob_choice(knobs, "child_sp_lookup", "always", {"always", "skip_bool", "skip_count"}, kModel);
    c.child_sp_lookup = l == "always" ? ChildSpLookup::Always : l == "skip_bool" ? ChildSpLookup::SkipBool
                                                                                  : ChildSpLookup::SkipCount;
    c.root_alloc_lock = knob_choice(knobs, "root_alloc_lock", "first", {"every", "first"}, kModel) == "every"
                            ? RootAllocLock::Every
                            : RootAllocLock::First;
    c.eager_page_split = knob_bool(knobs, "eager_page_split", true, kModel);
    c.preempt = knob_bool(knobs, "preempt", true, kModel);
    c.split_desc_cache_capacity = static_cast<std::uint32_t>(
        knob_int(knobs, "split_desc_cache_capacity", kSplitDescCacheMin + kKvmArchNrObjsPerMemoryCache,
                 kSplitDescCacheMin, 1 << 20, kModel));
    c.alias_percent = static_cast<std::uint32_t>(knob_int(knobs, "alias_percent", 0, 0, 100, kModel));
    c.split_cache_free = knob_choice(knobs, "split_cache_free", "vm_destroy", {"flags_change", "vm_destroy"}, kModel) ==
                                 "flags_change"
                             ? SplitCacheFree::FlagsChange
                             : SplitCacheFree::VmDestroy;
    c.pml_slot_set_dirty = knob_bool(knobs, "pml_slot_set_dirty", false, kModel);
    return c;
}

// ---------------------------------------------------------------------------------------------
// Internal structures

struct X86ShadowMmu::Sp {
    Gfn gfn = 0;
    std::uint32_t role = 0;
    std::uint32_t hash_next = 0;   // next SP in the bucket (0: end)
    std::uint32_t parents = 0;     // parent_ptes entries
    std::uint32_t root_count = 0;
    std::uint64_t header = 0;      // struct kvm_mmu_page
    std::uint64_t page = 0;        // sp->spt
    bool live = false;
    // An indirect SP of a nested tree (and its root): the tree, and the first L2 gfn it maps.
    Tree* tree = nullptr;
    Gfn base = 0;
    bool unsync = false;                 // sp->unsync
    std::uint8_t write_flooding = 0;     // sp->write_flooding_count
    std::uint32_t unsync_children = 0;   // sp->unsync_children
    std::array<std::uint64_t, 8> unsync_child_bitmap{};
    bool unsync_child(unsigned i) const { return (unsync_child_bitmap[i / 64] >> (i % 64)) & 1; }
};


// The state of an SP's subtree in one tree while the SP is unlinked from it: the SPTE bytes of its
// 512 entries and, below a level-2 SP, of its page-table children with their links.
struct X86ShadowMmu::Unlinked {
    int level = 0;  // the SP's level (1 or 2)
    Gfn base = 0;   // its first gfn
    std::vector<std::uint8_t> pte, pde;
    std::vector<std::uint32_t> pt_sp;
};

struct X86ShadowMmu::Slot : SlotState {  // host_level capped at 2M (L1's EPT for a nested guest)
    bool manual_protect = false;            // KVM_DIRTY_LOG_INITIALLY_SET when logging was enabled
    int direct_level = 1;                   // the backing's level: the direct tree maps up to 1G
};

struct X86ShadowMmu::VcpuState : VcpuCaches {
    MmuMemoryCache info;  // mmu_shadowed_info_cache (indirect SPs)
};

struct X86ShadowMmu::Bulk : BulkWalk {};

struct X86ShadowMmu::ModelCounters {
    explicit ModelCounters(engine::Counters& c)
        : find(c.id("kvm_mmu_find_shadow_page")),
          find_skipped(c.id("kvm_mmu_find_shadow_page_skipped")),
          find_ps(c.id("kvm_mmu_find_shadow_page_ps")),
          entries(c.id("mmu_page_hash_entries_walked")),
          collisions(c.id("mmu_page_hash_collisions")),
          alloc_sp(c.id("kvm_mmu_alloc_shadow_page")),
          dropped_large(c.id("drop_large_spte")),
          splits(c.id("kvm_mmu_split_huge_page")),
          split_drops(c.id("need_topup_split_caches_or_resched")),
          split_drops_topup(c.id("need_topup_split_caches")),
          split_restarts(c.id("shadow_mmu_split_rmap_restart")),
          topup_objs(c.id("mmu_topup_memory_cache_objs")),
          split_topup_objs(c.id("topup_split_caches_objs")),
          descs(c.id("pte_list_desc_alloc")),
          alloc_atomic(c.id("mmu_memory_cache_alloc_atomic")),
          shadow_roots(c.id("mmu_alloc_shadow_roots")),
          first_root_pages(c.id("mmu_first_shadow_root_alloc_pages")),
          flag_locks(c.id("indirect_mmu_mmu_lock")),
          retry_stale(c.id("pf_retry_is_page_fault_stale")),
          mn_zapped(c.id("kvm_unmap_gfn_range_sptes")),
          dirty_marked(c.id("mark_page_dirty_in_slot")),
          wrprot(c.id("spte_write_protected")),
          indirect_sp(c.id("indirect_shadow_pages", engine::Counters::Kind::Gauge)),
          used_pages(c.id("n_used_mmu_pages", engine::Counters::Kind::Gauge)),
          split_bytes(c.id("split_caches_bytes", engine::Counters::Kind::Gauge)),
          split_leak(c.id("split_caches_leaked_if_vm_destroyed_bytes", engine::Counters::Kind::Gauge)),
          unsync_page(c.id("kvm_unsync_page")),
          sync_page(c.id("kvm_sync_page")),
          sync_page_ps(c.id("kvm_sync_page_ps")),
          sync_dropped(c.id("kvm_sync_page_sptes_dropped")),
          sync_children(c.id("mmu_sync_children")),
          sync_children_ps(c.id("mmu_sync_children_ps")),
          sync_roots(c.id("kvm_mmu_sync_roots")),
          gfn_wrprot(c.id("kvm_vcpu_write_protect_gfn")),
          ept_writes(c.id("nested_ept_entries_written")),
          ept_write_faults(c.id("nested_ept_write_faults")),
          ept_write_emulated(c.id("nested_ept_write_emulated")),
          invept(c.id("handle_invept")),
          switches(c.id("nested_eptp_switch")),
          switch_ignored(c.id("nested_eptp_switch_ignored")),
          vm_entries(c.id("nested_vm_entry")),
          vm_entry_ps(c.id("nested_vm_entry_ps")),
          stalled(c.id("nested_stalled_accesses")),
          find_sync(c.id("kvm_mmu_find_shadow_page_sync")),
          fetch_sync(c.id("fetch_mmu_sync_children")),
          drop_parent(c.id("drop_parent_pte")) {}
    engine::CounterId find, find_skipped, find_ps, entries, collisions, alloc_sp, dropped_large, splits, split_drops,
        split_drops_topup, split_restarts, topup_objs, split_topup_objs, descs, alloc_atomic, shadow_roots,
        first_root_pages, flag_locks, retry_stale, mn_zapped, dirty_marked, wrprot, indirect_sp, used_pages, split_bytes,
        split_leak, unsync_page, sync_page, sync_page_ps, sync_dropped, sync_children, sync_children_ps, sync_roots,
        gfn_wrprot, ept_writes, ept_write_faults, ept_write_emulated, invept, switches, switch_ignored, vm_entries,
        vm_entry_ps, stalled, find_sync, fetch_sync, drop_parent;
};

struct X86ShadowMmu::DirtyLogCounters {
    explicit DirtyLogCounters(engine::Counters& c)
        : words(c.id("dirty_bitmap_words_walked")),
          masked(c.id("kvm_arch_mmu_enable_log_dirty_pt_masked")),
          huge_wrprot(c.id("kvm_mmu_slot_gfn_write_protect")),
          harvested(c.id("dirty_pages_harvested")) {}
    engine::CounterId words, masked, huge_wrprot, harvested;
};

// ---------------------------------------------------------------------------------------------
// Construction

X86ShadowMmu::X86ShadowMmu(vm::ModelEnv& env)
    : sim_(env.sim),
      cache_(env.cache),
      vm_(env.vm),
      cfg_(Config::from(env.knobs)),
      age_lock_(parse_age_lock(knob_choice(env.knobs, "age_lock", "write", {"write", "lockless"}, kModel))),
      ak_(AgingCosts::from(env.host.costs)),
      kt_(x86_tdp::Costs::from(env.host.costs)),
      k_(Costs::from(env.host.costs)),
      stats_(env.sim.counters()),
      tlb_(stats_, kt_.tlb_flush_base, kt_.tlb_flush_per_vcpu, env.vm.vcpus),
      mmu_(env.sim, env.host.topology),
      slots_lock_(env.sim, "slots_lock"),
      slots_arch_lock_(env.sim, "slots_arch_lock"),
      kdata_(kKernelDataBase + (1ULL << 37)),    // apart from the embedded TDP MMU's objects
      pt_alloc_(kPageTableBase + (1ULL << 42)),
      hold_(env.sim, env.vm.vcpus, "in a nested transition (until its VM-entry)"),
      unsync_pages_lock_(env.sim, "mmu_unsync_pages_lock") {
    mc_ = std::make_unique<ModelCounters>(sim_.counters());
    site_direct_fault_ = sim_.site("direct_page_fault");
    site_ept_fault_ = sim_.site("ept_page_fault");
    site_root_ = sim_.site("mmu_alloc_shadow_roots");
    site_root_flag_ = sim_.site("mmu_alloc_shadow_roots:indirect_mmu");
    site_free_roots_ = sim_.site("kvm_mmu_free_roots");
    site_split_ = sim_.site("kvm_shadow_mmu_try_split_huge_pages");
    site_wrprot_ = sim_.site("kvm_mmu_slot_remove_write_access");
    site_memslot_ = sim_.site("kvm_set_memory_region");
    site_first_root_ = sim_.site("mmu_first_shadow_root_alloc");
    site_sync_roots_ = sim_.site("kvm_mmu_sync_roots");
    site_track_write_ = sim_.site("kvm_mmu_track_write");
    site_tdp_fault_ = sim_.site("kvm_tdp_mmu_page_fault");
    site_unsync_ = sim_.site("mmu_try_to_unsync_pages");
    site_zap_trees_ = sim_.site("free_nested:zap_unheld_trees");
    site_mn_start_ = sim_.site("kvm_mmu_notifier_invalidate_range_start");
    site_mn_end_ = sim_.site("kvm_mmu_notifier_invalidate_range_end");
    // One host mm for the VM, shared with the embedded TDP MMU; its notifier is this model.
    host_ = std::make_unique<host::HostMm>(env.sim, env.host, env.vm.memslots, host::Costs::from(env.host.costs),
                                           host::Features::from(env.host), env.vm.userfaultfd);
    host_->set_notifier(this);
    if (cfg_.tdp_mmu) tdp_ = std::make_unique<x86_tdp::X86TdpMmu>(env, mmu_, *host_);
    pml_ = env.host.features.count("pml") && env.host.feature("pml");
    if (pml_ && !cfg_.tdp_mmu) {
        pml_log_.init(sim_, env.host, env.vm.vcpus);
        dirty_cleared_id_ = sim_.counters().id("spte_dirty_cleared");
        if (cfg_.pml_slot_set_dirty) dirty_set_id_ = sim_.counters().id("spte_dirty_set");
    }

    hash_addr_ = kdata_.alloc(kMmuHashBuckets * 8);
    sps_.emplace_back();  // id 0: none

    // The span: from the first memslot's 512G-aligned base to the last one's 1G-rounded end.
    Gfn lo = ~Gfn{0}, hi = 0;
    for (std::size_t i = 0; i < vm_.memslots.size(); ++i) {
        const vm::Memslot& m = vm_.memslots[i];
        if (m.npages == 0) continue;
        lo = std::min(lo, m.base_gfn);
        hi = std::max(hi, m.base_gfn + m.npages);
        auto s = std::make_unique<Slot>();
        s->index = i;
        s->id = m.id;
        s->base = m.base_gfn;
        s->npages = m.npages;
        s->host_level = std::min(2, static_cast<int>(vm::host_level(m.backing)));
        s->direct_level = static_cast<int>(vm::host_level(m.backing));
        s->bitmap_addr = kDirtyBitmapBase + kDirtyBitmapWindow * (slots_.size() + 32);
        if (m.dirty_logging) {
            s->bitmap.assign((m.npages + 63) / 64, 0);
            pml_log_.slot_logging(true);
        }
        slots_.push_back(std::move(s));
    }
    if (slots_.empty()) throw std::invalid_argument("x86_shadow: the VM has no memslot");
    span_base_ = lo & ~(pages_at(4) - 1);
    span_ = ((hi - span_base_) + pages_at(3) - 1) & ~(pages_at(3) - 1);
    if (span_ > (std::uint64_t{1} << 28))
        throw std::invalid_argument("x86_shadow: memslots span more than 1 TiB of guest physical space");
    rmap_base_ = kdata_.alloc(span_ * 8 + (span_ >> 9) * 8);

    vcpu_tree_.assign(vm_.vcpus, nullptr);
    for (std::uint32_t i = 0; i < vm_.vcpus; ++i) {
        auto v = std::make_unique<VcpuState>();
        v->desc = MmuMemoryCache("mmu_pte_list_desc_cache", kt_.mmu_cache_alloc_obj);
        v->page = MmuMemoryCache("mmu_shadow_page_cache", kt_.mmu_cache_alloc_page);
        v->header = MmuMemoryCache("mmu_page_header_cache", kt_.mmu_cache_alloc_obj);
        v->info = MmuMemoryCache("mmu_shadowed_info_cache", kt_.mmu_cache_alloc_page);
        vcpus_.push_back(std::move(v));
    }
    // Every vCPU's nested EPT MMU (vcpu->arch.guest_mmu), its roots owned by this model.
    guest_mmu_ = std::make_unique<x86_context::MmuContext>(sim_, cache_, kdata_, x86_context::Costs::from(env.host.costs),
                                                          x86_context::InitMode::FullEveryReset, vm_.vcpus,
                                                          static_cast<x86_context::RootOps&>(*this),
                                                          x86_context::Which::GuestMmu);
    split_desc_ = MmuMemoryCache("split_desc_cache", kt_.mmu_cache_alloc_obj);
    split_header_ = MmuMemoryCache("split_page_header_cache", kt_.mmu_cache_alloc_obj);
    split_page_ = MmuMemoryCache("split_shadow_page_cache", kt_.mmu_cache_alloc_page);

    if (!cfg_.tdp_mmu) {
        // Without the TDP MMU, rmaps and write tracking exist from the memslot's creation, and
        // mmu_alloc_direct_roots gives every vCPU the one direct root (set up before the run).
        rmaps_ = true;
        rmap4k_.assign(span_, 0);
        rmap2m_.assign(span_ >> 9, 0);
        direct_ = std::make_unique<Tree>();
        Tree& t = *direct_;
        t.pte.assign(span_, 0);
        t.pde.assign(span_ >> 9, 0);
        t.pt_sp.assign(span_ >> 9, 0);
        t.pdpte.assign(span_ >> 18, 0);
        t.pd_sp.assign(span_ >> 18, 0);
        t.pml4e.assign((span_ >> 27) + 1, 0);
        t.pdpt_sp.assign((span_ >> 27) + 1, 0);
        MmuMemoryCache setup;
        std::uint32_t n = 0;
        setup.topup(2, &n);
        Time ignored;
        t.root = alloc_shadow_page(0, 0, make_role(4, true, false), setup, setup, nullptr, ignored);
        sps_[t.root].root_count = vm_.vcpus;
        for (const auto& sl : slots_) has_1g_ = has_1g_ || sl->direct_level == 3;
        if (has_1g_) {
            rmap1g_.assign(span_ >> 18, 0);
            rmap1g_base_ = kdata_.alloc((span_ >> 18) * 8);
        }
    }
}

X86ShadowMmu::~X86ShadowMmu() = default;

// With PML, hits() sets Dirty bits and writes SPTE lines through the cache model: they must run
// in time order (docs/architecture.md), as x86_tdp's do.
Time X86ShadowMmu::fault_lookahead() const { return pml_ ? Time::zero() : kt_.fault_entry; }

// ---------------------------------------------------------------------------------------------
// State

std::uint8_t& X86ShadowMmu::entry(Tree& t, int level, Gfn gfn) {
    const std::uint64_t i = gfn - span_base_;
    switch (level) {
        case 1: return t.pte[i];
        case 2: return t.pde[i >> 9];
        case 3: return t.pdpte[i >> 18];
        default: return t.pml4e[i >> 27];
    }
}

std::uint32_t& X86ShadowMmu::child(Tree& t, int level, Gfn gfn) {
    const std::uint64_t i = gfn - span_base_;
    switch (level) {
        case 2: return t.pt_sp[i >> 9];
        case 3: return t.pd_sp[i >> 18];
        default: return t.pdpt_sp[i >> 27];
    }
}

std::uint64_t X86ShadowMmu::entry_addr(const Tree& t, int level, Gfn gfn) const {
    const std::uint64_t i = gfn - span_base_;
    std::uint32_t sp = 0;
    switch (level) {
        case 1: sp = t.pt_sp[i >> 9]; break;
        case 2: sp = t.pd_sp[i >> 18]; break;
        case 3: sp = t.pdpt_sp[i >> 27]; break;
        default: sp = t.root; break;
    }
    return sps_[sp].page + spte_index(gfn, level) * 8;
}

X86ShadowMmu::Slot* X86ShadowMmu::slot_of(Gfn gfn) {
    for (auto& s : slots_)
        if (s->contains(gfn)) return s.get();
    return nullptr;
}

X86ShadowMmu::Slot& X86ShadowMmu::slot_by_id(std::uint32_t id) {
    for (auto& s : slots_)
        if (s->id == id) return *s;
    throw std::invalid_argument("x86_shadow: no memslot with id " + std::to_string(id));
}

Time X86ShadowMmu::touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes) {
    return cache_.touch(cpu, addr, bytes, write);
}

std::uint32_t X86ShadowMmu::bucket_size(std::uint32_t bucket) const {
    std::uint32_t n = 0;
    for (std::uint32_t id = hash_[bucket % kMmuHashBuckets]; id; id = sps_[id].hash_next) ++n;
    return n;
}

std::uint32_t X86ShadowMmu::rmap_size(Gfn gfn, int level) const {
    if (!rmaps_ || gfn - span_base_ >= span_) return 0;
    const std::uint64_t i = gfn - span_base_;
    return level == 1 ? rmap4k_[i] : level == 2 ? rmap2m_[i >> 9] : level == 3 && has_1g_ ? rmap1g_[i >> 18] : 0;
}

std::optional<vm::PageLevel> X86ShadowMmu::mapping_level(std::uint32_t vcpu, Gfn gfn) const {
    const Tree* t = vcpu_tree_.at(vcpu);
    if (!t) {
        if (tdp_) return tdp_->mapping_level(gfn);
        t = direct_.get();
    }
    const std::uint64_t i = gfn - span_base_;
    if (i >= span_) return std::nullopt;
    if (is_leaf(t->pte[i])) return vm::PageLevel::K4;
    if (is_leaf(t->pde[i >> 9])) return vm::PageLevel::M2;
    if (is_leaf(t->pdpte[i >> 18])) return vm::PageLevel::G1;
    return std::nullopt;
}

std::uint64_t X86ShadowMmu::split_caches_bytes() const {
    return split_desc_.nobjs() * kPteListDescBytes + split_header_.nobjs() * kMmuPageHeaderBytes +
           split_page_.nobjs() * kHostPageSize;
}

// The gauges of memory held by the split caches and of what would leak if the VM were destroyed
// now (only when the caches are freed at a flags change, as the v6 patch did).
void X86ShadowMmu::split_cache_gauges() {
    const auto held = static_cast<std::int64_t>(split_caches_bytes());
    sim_.counters().adjust(mc_->split_bytes, held - split_bytes_reported_);
    split_bytes_reported_ = held;
    const std::int64_t leak = cfg_.split_cache_free == SplitCacheFree::FlagsChange ? held : 0;
    sim_.counters().adjust(mc_->split_leak, leak - split_leak_reported_);
    split_leak_reported_ = leak;
}

// ---------------------------------------------------------------------------------------------
// Shadow pages

// kvm_mmu_find_shadow_page: walk the gfn's bucket (one touch of each SP header visited), counting
// gfn mismatches as collisions; a miss counts mmu_cache_miss. An unsync match is synced with
// kvm_sync_page (without marking it synchronized: it stays unsync) and a flush if that changed an
// SPTE; a match's write-flooding count is cleared.
std::uint32_t X86ShadowMmu::find_shadow_page(std::uint32_t cpu, Gfn gfn, std::uint32_t role, Time& cost) {
    const std::uint32_t b = page_table_hash(gfn);
    Time c = touch(cpu, hash_addr_ + b * 8, false);
    std::uint64_t collisions = 0, walked = 0;
    std::uint32_t found = 0;
    for (std::uint32_t id = hash_[b]; id; id = sps_[id].hash_next) {
        const Sp& sp = sps_[id];
        c += k_.hash_entry_step + touch(cpu, sp.header, false);
        ++walked;
        if (sp.gfn != gfn) {
            ++collisions;
            continue;
        }
        if (sp.role != role) continue;
        found = id;
        break;
    }
    engine::Counters& ctr = sim_.counters();
    ctr.add(mc_->find);
    ctr.add(mc_->entries, walked);
    ctr.add(mc_->collisions, collisions);
    ctr.add(mc_->find_ps, static_cast<std::uint64_t>(c.ps()));
    if (!found) stats_.add(stats_.mmu_cache_miss);
    stats_.set_max(stats_.max_mmu_page_hash_collisions, collisions);
    if (found && !role_direct(role)) {
        // An SP kvm_mmu_track_write unlinked is found again: its state comes back to its tree
        // (the caller links it there), then it is synced like any unsync match.
        if (sps_[found].tree) restore(found, *sps_[found].tree);
        if (sps_[found].unsync) {
            sim_.counters().add(mc_->find_sync);
            bool changed = false;
            c += sync_page(cpu, found, changed);
            if (changed) c += tlb_.flush();
        }
        sps_[found].write_flooding = 0;  // __clear_sp_write_flooding_count
    }
    cost += c;
    return found;
}

// kvm_mmu_alloc_shadow_page (+ account_shadowed for an indirect SP): the header, the page and,
// for an indirect SP, the shadowed-info page come from the caches given.
std::uint32_t X86ShadowMmu::alloc_shadow_page(std::uint32_t cpu, Gfn gfn, std::uint32_t role, MmuMemoryCache& header,
                                              MmuMemoryCache& page, MmuMemoryCache* info, Time& cost) {
    for (MmuMemoryCache* c : {&header, &page, info}) {
        if (c && !c->alloc()) {
            sim_.counters().add(mc_->alloc_atomic);
            cost += c->cost_per_object();
        }
    }
    std::uint32_t id;
    if (!free_sps_.empty()) {
        id = free_sps_.back();
        free_sps_.pop_back();
    } else {
        id = static_cast<std::uint32_t>(sps_.size());
        sps_.emplace_back();
    }
    Sp& sp = sps_[id];
    sp = Sp{};
    sp.gfn = gfn;
    sp.role = role;
    sp.live = true;
    if (!free_headers_.empty()) {
        sp.header = free_headers_.back();
        free_headers_.pop_back();
    } else {
        sp.header = kdata_.alloc(kMmuPageHeaderBytes);
    }
    sp.page = pt_alloc_.alloc();
    const std::uint32_t b = page_table_hash(gfn);
    sp.hash_next = hash_[b];
    hash_[b] = id;  // hlist_add_head
    cost += k_.sp_alloc_base + touch(cpu, sp.header, true) + touch(cpu, hash_addr_ + b * 8, true);
    ++n_used_mmu_pages_;
    sim_.counters().adjust(mc_->used_pages, 1);
    sim_.counters().add(mc_->alloc_sp);
    if (!role_direct(role)) {  // account_shadowed
        ++indirect_shadow_pages_;
        sim_.counters().adjust(mc_->indirect_sp, 1);
        cost += account_ept_page(cpu, sp);
    }
    return id;
}

// __kvm_mmu_get_shadow_page; `lookup` false is seed 000's shortcut (allocate without looking).
std::uint32_t X86ShadowMmu::get_shadow_page(std::uint32_t cpu, Gfn gfn, std::uint32_t role, MmuMemoryCache& header,
                                            MmuMemoryCache& page, MmuMemoryCache* info, bool lookup, Time& cost,
                                            bool* found) {
    if (found) *found = false;
    if (lookup) {
        if (const std::uint32_t sp = find_shadow_page(cpu, gfn, role, cost)) {
            if (found) *found = true;
            return sp;
        }
    } else {
        sim_.counters().add(mc_->find_skipped);
        stats_.add(stats_.mmu_cache_miss);  // as the patch: the skip falls through to the miss
    }
    return alloc_shadow_page(cpu, gfn, role, header, page, info, cost);
}

// kvm_mmu_free_shadow_page after kvm_mmu_commit_zap_page.
void X86ShadowMmu::free_sp(std::uint32_t id) {
    Sp& sp = sps_[id];
    const std::uint32_t b = page_table_hash(sp.gfn);
    for (std::uint32_t* p = &hash_[b]; *p; p = &sps_[*p].hash_next) {
        if (*p == id) {
            *p = sp.hash_next;
            break;
        }
    }
    --n_used_mmu_pages_;
    sim_.counters().adjust(mc_->used_pages, -1);
    if (!role_direct(sp.role)) {  // unaccount_shadowed
        --indirect_shadow_pages_;
        sim_.counters().adjust(mc_->indirect_sp, -1);
        if (role_level(sp.role) > 1) {
            auto it = write_track_.find(sp.gfn);
            if (it != write_track_.end() && --it->second == 0) write_track_.erase(it);
        }
    }
    if (sp.unsync) unlink_unsync_page(sp);  // kvm_unlink_unsync_page in __kvm_mmu_prepare_zap_page
    gpte_written_.erase(id);
    pt_alloc_.free(sp.page);
    free_headers_.push_back(sp.header);
    sp = Sp{};
    free_sps_.push_back(id);
}

// pte_list_add on a list of n entries at head_addr: a new pte_list_desc when the list turns into
// descriptors or the head descriptor is full.
Time X86ShadowMmu::pte_list_add(std::uint32_t cpu, std::uint32_t& n, std::uint64_t head_addr, MmuMemoryCache& cache) {
    Time c = k_.rmap_op + touch(cpu, head_addr, true);
    if (pte_list_add_descs(n)) {
        if (!cache.alloc()) {
            sim_.counters().add(mc_->alloc_atomic);
            c += cache.cost_per_object();
        }
        ++descs_live_;
        sim_.counters().add(mc_->descs);
    }
    if (n >= 1) c += touch(cpu, desc_addr(head_addr), true);
    ++n;
    return c;
}

// pte_list_remove: a descriptor is freed when the list no longer needs it.
Time X86ShadowMmu::pte_list_remove(std::uint32_t cpu, std::uint32_t& n, std::uint64_t head_addr) {
    Time c = k_.rmap_op + touch(cpu, head_addr, true);
    if (n >= 2) c += touch(cpu, desc_addr(head_addr), true);
    descs_live_ -= pte_list_descs(n) - pte_list_descs(n - 1);
    --n;
    return c;
}

std::uint64_t X86ShadowMmu::rmap_head_addr(Gfn gfn, int level) const {
    const std::uint64_t i = gfn - span_base_;
    if (level == 3) return rmap1g_base_ + (i >> 18) * 8;
    return level == 1 ? rmap_base_ + i * 8 : rmap_base_ + span_ * 8 + (i >> 9) * 8;
}

X86ShadowMmu::RmapCount& X86ShadowMmu::rmap_count(Gfn gfn, int level) {
    const std::uint64_t i = gfn - span_base_;
    return level == 1 ? rmap4k_[i] : level == 2 ? rmap2m_[i >> 9] : rmap1g_[i >> 18];
}

// rmap_add: max_mmu_rmap_size records the entries found before the add (pte_list_add's count).
Time X86ShadowMmu::rmap_add(std::uint32_t cpu, Gfn gfn, int level, MmuMemoryCache& cache) {
    if (!rmaps_) return Time::zero();
    RmapCount& head = rmap_count(gfn, level);
    std::uint32_t n = head;
    if (n == kRmapCountMax) throw std::logic_error("x86_shadow: rmap entry count overflow");
    stats_.set_max(stats_.max_mmu_rmap_size, n);
    const Time c = pte_list_add(cpu, n, rmap_head_addr(gfn, level), cache);
    head = static_cast<RmapCount>(n);
    return c;
}

Time X86ShadowMmu::rmap_remove(std::uint32_t cpu, Gfn gfn, int level) {
    if (!rmaps_) return Time::zero();
    RmapCount& head = rmap_count(gfn, level);
    std::uint32_t n = head;
    if (n == 0) return Time::zero();
    const Time c = pte_list_remove(cpu, n, rmap_head_addr(gfn, level));
    head = static_cast<RmapCount>(n);
    return c;
}

// drop_large_spte of the huge SPTE at `level` (2M or 1G) covering gfn: clear it, remove it from
// its rmap, and flush if asked (kvm_flush_remote_tlbs_sptep).
Time X86ShadowMmu::drop_large_spte(std::uint32_t cpu, Tree& t, int level, Gfn gfn, bool flush) {
    std::uint8_t& e = entry(t, level, gfn);
    Time c = touch(cpu, entry_addr(t, level, gfn), true) + kt_.spte_update +
             rmap_remove(cpu, round_gfn(gfn, level), level);
    e = 0;
    stats_.update_page_stats(static_cast<vm::PageLevel>(level), -1);
    sim_.counters().add(mc_->dropped_large);
    if (flush) c += tlb_.flush();
    return c;
}

// __link_shadow_page: a huge SPTE in the way is dropped, the entry links sp, and the entry joins
// sp's parent_ptes.
Time X86ShadowMmu::link_shadow_page(std::uint32_t cpu, Tree& t, int level, Gfn gfn, std::uint32_t sp,
                                    MmuMemoryCache& cache, bool flush) {
    Time c;
    if (t.nested) restore(sp, t);  // unlinked from this tree by kvm_mmu_track_write: linked again
    std::uint8_t& e = entry(t, level, gfn);
    if (is_leaf(e)) c += drop_large_spte(cpu, t, level, gfn, flush);
    e = spte::TABLE;
    child(t, level, gfn) = sp;
    c += touch(cpu, entry_addr(t, level, gfn), true) + kt_.spte_update;
    c += pte_list_add(cpu, sps_[sp].parents, sps_[sp].header + 64, cache);  // mmu_page_add_parent_pte
    if (sps_[sp].unsync || sps_[sp].unsync_children) {  // mark_unsync(sptep)
        unsigned idx = 0;
        if (const std::uint32_t parent = parent_of(sps_[sp], idx)) c += mark_unsync(cpu, parent, idx);
    }
    return c;
}

// kvm_mmu_prepare_zap_page of the SP linked at (level + 1, base) and, recursively, of its children
// (kvm_mmu_page_unlink_children, mmu_page_zap_pte): leaves leave their rmaps. An SP another tree
// still links (a second parent) is only unlinked. Freed at once: the caller commits with one flush.
Time X86ShadowMmu::prepare_zap_page(std::uint32_t cpu, Tree& t, std::uint32_t id, int level, Gfn base) {
    Time c = k_.sp_zap_base + touch(cpu, sps_[id].page, false, 4096);
    Sp& sp = sps_[id];
    if (sp.parents > 0) c += pte_list_remove(cpu, sp.parents, sp.header + 64);
    const bool shared = sp.parents > 0;
    for (unsigned k = 0; k < 512; ++k) {
        const Gfn g = base + k * pages_at(level);
        if (g - span_base_ >= span_) break;
        std::uint8_t& e = entry(t, level, g);
        if (!is_present(e)) continue;
        c += kt_.spte_update;
        if (is_leaf(e)) {
            c += rmap_remove(cpu, g, level);
            stats_.update_page_stats(static_cast<vm::PageLevel>(level), -1);
        } else {
            const std::uint32_t ch = child(t, level, g);
            c += prepare_zap_page(cpu, t, ch, level - 1, g);
            child(t, level, g) = 0;
        }
        e = 0;
    }
    if (!shared) {
        stats_.add(stats_.mmu_shadow_zapped);
        c += drop_stashes(cpu, id);  // its SPTEs in trees it was unlinked from
        free_sp(id);
    }
    return c;
}

// Zap a whole nested tree (the L2 guest is gone): every SP from the root, and the SPs unlinked
// from it by kvm_mmu_track_write, then (flush) the commit's flush.
Time X86ShadowMmu::zap_tree(std::uint32_t cpu, Tree& t, bool flush) {
    Time c = prepare_zap_page(cpu, t, t.root, 4, span_base_);
    t.root = 0;
    std::vector<std::tuple<std::uint32_t, int, Gfn>> orphans;
    for (const auto& [key, u] : unlinked_)
        if (key.second == t.eptp) orphans.emplace_back(key.first, u.level, u.base);
    for (const auto& [id, level, base] : orphans)
        if (restore(id, t)) c += prepare_zap_page(cpu, t, id, level, base);
    return flush ? c + tlb_.flush() : c;  // kvm_mmu_commit_zap_page
}

// ---------------------------------------------------------------------------------------------
// SPs unlinked by kvm_mmu_track_write: mmu_page_zap_pte(kvm, sp, spte, NULL) drops the parent SPTE
// (drop_parent_pte) and leaves the child in mmu_page_hash with its SPTEs and rmap entries. The
// model moves the child's subtree state out of the tree's arrays (hits() and walks must not reach
// it) and back when a fault links the child there again (kvm_mmu_find_shadow_page finds it).

// Moves the state of the subtree of sp, at (level, base) of t, out of t's arrays (sp is at level
// 1 or 2 and was just unlinked there).
void X86ShadowMmu::stash(std::uint32_t id, Tree& t, int level, Gfn base) {
    Unlinked u;
    u.level = level;
    u.base = base;
    const std::uint64_t i = u.base - span_base_;
    auto take = [](auto& from, std::uint64_t at, std::uint64_t n, auto& to) {
        to.assign(from.begin() + static_cast<std::ptrdiff_t>(at), from.begin() + static_cast<std::ptrdiff_t>(at + n));
        std::fill_n(from.begin() + static_cast<std::ptrdiff_t>(at), n, 0);
    };
    if (u.level == 1) {
        take(t.pte, i, 512, u.pte);
    } else if (u.level == 2) {
        take(t.pde, i >> 9, 512, u.pde);
        take(t.pt_sp, i >> 9, 512, u.pt_sp);
        take(t.pte, i, 512 * 512, u.pte);
    } else {
        throw std::logic_error("x86_shadow: unlinking a shadow page above level 2");
    }
    if (!unlinked_.emplace(std::make_pair(id, t.eptp), std::move(u)).second)
        throw std::logic_error("x86_shadow: shadow page unlinked twice from a tree");
}

// Puts sp's subtree state back into t's arrays if sp was unlinked from t; says whether it was.
bool X86ShadowMmu::restore(std::uint32_t id, Tree& tree) {
    auto it = unlinked_.find(std::make_pair(id, tree.eptp));
    if (it == unlinked_.end()) return false;
    const Unlinked& u = it->second;
    const std::uint64_t i = u.base - span_base_;
    std::copy(u.pte.begin(), u.pte.end(), tree.pte.begin() + static_cast<std::ptrdiff_t>(i));
    if (u.level == 2) {
        std::copy(u.pde.begin(), u.pde.end(), tree.pde.begin() + static_cast<std::ptrdiff_t>(i >> 9));
        std::copy(u.pt_sp.begin(), u.pt_sp.end(), tree.pt_sp.begin() + static_cast<std::ptrdiff_t>(i >> 9));
    }
    unlinked_.erase(it);
    return true;
}

// The unlinked level-2 SP whose subtree, set aside, links the level-1 SP id of t (0 if none).
std::uint32_t X86ShadowMmu::unlinked_parent(const Tree& t, std::uint32_t id) const {
    const Sp& sp = sps_[id];
    if (role_level(sp.role) != 1) return 0;
    for (const auto& [key, u] : unlinked_)
        if (key.second == t.eptp && u.level == 2 && u.base == round_gfn(sp.base, 3) &&
            u.pt_sp[(sp.base - u.base) >> 9] == id)
            return key.first;
    return 0;
}

// The unlinked SP whose state set aside holds sp's SPTEs in t: sp itself, or the unlinked
// level-2 SP that links it; 0 if none.
std::uint32_t X86ShadowMmu::unlinked_covering(const Tree& t, std::uint32_t id) const {
    if (unlinked_.count(std::make_pair(id, t.eptp))) return id;
    return unlinked_parent(t, id);
}

// Freeing sp: its SPTEs stashed for trees it was unlinked from leave their rmaps.
Time X86ShadowMmu::drop_stashes(std::uint32_t cpu, std::uint32_t id) {
    Time c;
    for (auto it = unlinked_.lower_bound(std::make_pair(id, Gfn{0})); it != unlinked_.end() && it->first.first == id;) {
        const Unlinked& u = it->second;
        for (std::size_t k = 0; k < u.pte.size(); ++k)
            if (is_leaf(u.pte[k])) {
                c += kt_.spte_update + rmap_remove(cpu, u.base + k, 1);
                stats_.update_page_stats(vm::PageLevel::K4, -1);
            }
        for (std::size_t k = 0; k < u.pde.size(); ++k)
            if (is_leaf(u.pde[k])) {
                c += kt_.spte_update + rmap_remove(cpu, u.base + k * 512, 2);
                stats_.update_page_stats(vm::PageLevel::M2, -1);
            }
        for (std::uint32_t ch : u.pt_sp)
            if (ch) throw std::logic_error("x86_shadow: dropping an unlinked subtree with shadow pages in it");
        it = unlinked_.erase(it);
    }
    return c;
}

// ---------------------------------------------------------------------------------------------
// Faults

// mmu_topup_memory_caches(vcpu, maybe_indirect).
Time X86ShadowMmu::topup_caches(VcpuState& v, bool indirect) {
    Time cost;
    std::uint32_t n = 0, total = 0;
    auto fill = [&](MmuMemoryCache& c, std::uint32_t min) {
        c.topup(min, &n);
        cost += c.cost_per_object() * n;
        total += n;
    };
    fill(v.desc, 1 + 5 + 8);  // 1 + PT64_ROOT_MAX_LEVEL + PTE_PREFETCH_NUM
    fill(v.page, 5);
    if (indirect) fill(v.info, 5);
    fill(v.header, 5);
    if (total) sim_.counters().add(mc_->topup_objs, total);
    return cost;
}

// kvm_mmu_max_mapping_level: the host mapping's level (host_pfn_mapping_level, from the GUP: a
// 1G hugetlb page maps 1G, with EPT's 1G pages) if the huge page lies inside the slot
// (lpage_info); 4K while the slot logs dirty pages.
int X86ShadowMmu::max_level(const Slot& s, Gfn gfn, int host_level) const {
    if (vm_.memslots[s.index].dirty_logging) return 1;
    return x86_level_inside_slot(s, gfn, std::min(s.direct_level, host_level));
}

// L1's EPT for the L2 guest maps 2M pages where the backing is huge (and the page lies inside
// the slot), 4K pages otherwise.
int X86ShadowMmu::guest_leaf_level(const Slot& s) const { return s.host_level; }

Time X86ShadowMmu::mark_page_dirty(Slot& s, Gfn gfn, std::uint32_t cpu) {
    if (!vm_.memslots[s.index].dirty_logging) return Time::zero();
    if (s.bitmap.empty()) s.bitmap.assign((s.npages + 63) / 64, 0);
    const std::uint64_t rel = gfn - s.base;
    s.bitmap[rel / 64] |= std::uint64_t{1} << (rel % 64);
    sim_.counters().add(mc_->dirty_marked);
    return touch(cpu, s.bitmap_addr + (rel / 64) * 8, true);
}

// direct_map (direct tree) / FNAME(fetch) (nested tree), under mmu_lock write: walk from the
// root; every missing or huge level gets a child SP (kvm_mmu_get_child_sp) and is linked; then
// mmu_set_spte installs the leaf at `goal`. Returns the cost; `spurious` when the leaf was there.
Time X86ShadowMmu::map(std::uint32_t cpu, VcpuState& v, Tree& t, Slot& s, Gfn gfn, int goal, std::uint8_t leaf) {
    Time c = k_.shadow_fault_base;
    for (int level = 4; level > goal; --level) {
        c += kt_.tdp_walk_level + touch(cpu, entry_addr(t, level, gfn), false);
        if (t.nested) {  // FNAME(fetch): clear_sp_write_flooding_count on every SP walked
            const std::uint32_t walked = level == 4 ? t.root : child(t, level + 1, gfn);
            if (walked) sps_[walked].write_flooding = 0;
        }
        if (is_table(entry(t, level, gfn))) continue;
        // kvm_mmu_get_child_sp: the child SP's gfn and role. In a nested tree the levels above
        // the guest's leaf shadow L1's EPT pages (indirect SPs keyed by the EPT page's gfn); a
        // guest huge page mapped with smaller pages gets a direct SP keyed by its first gfn.
        const int cl = level - 1;
        bool direct = true;
        Gfn cg = round_gfn(gfn, level);
        if (t.nested && level > guest_leaf_level(s)) {
            direct = false;
            cg = ept_page_gfn(t.eptp, cl, gfn - span_base_);
        }
        const std::uint32_t role = make_role(cl, direct, t.nested);
        // Seed 000: with no indirect MMU, a non-present (or huge) SPTE's child cannot exist yet.
        bool lookup = true;
        if (cfg_.child_sp_lookup == ChildSpLookup::SkipBool) lookup = may_have_multiple_parents_;
        if (cfg_.child_sp_lookup == ChildSpLookup::SkipCount) lookup = indirect_mmus_ > 0;
        bool found = false;
        const std::uint32_t sp =
            get_shadow_page(cpu, cg, role, v.header, v.page, direct ? nullptr : &v.info, lookup, c, &found);
        if (!direct) {
            sps_[sp].tree = &t;
            sps_[sp].base = round_gfn(gfn, level);
            // FNAME(fetch): an upper-level page found with unsync children is synced before it is
            // linked (mmu_sync_children, without yielding).
            if (found && cl > 1 && sps_[sp].unsync_children) {
                sim_.counters().add(mc_->fetch_sync);
                c += sync_children_now(cpu, sp);
            }
        }
        c += link_shadow_page(cpu, t, level, gfn, sp, v.desc, true);
    }
    if (t.nested) sps_[child(t, goal + 1, gfn)].write_flooding = 0;  // the leaf's SP too
    // mmu_set_spte at the goal level.
    if (is_table(entry(t, goal, gfn))) c += replace_empty_table(cpu, t, goal, gfn);
    std::uint8_t& e = entry(t, goal, gfn);
    const std::uint64_t addr = entry_addr(t, goal, gfn);
    c += kt_.tdp_walk_level + touch(cpu, addr, true) + kt_.spte_update;
    if (!is_leaf(e)) {
        c += rmap_add(cpu, round_gfn(gfn, goal), goal, v.desc);
        stats_.update_page_stats(static_cast<vm::PageLevel>(goal), 1);
    }
    if (t.nested) {  // the leaf now follows L1's current entry: nothing left to sync for it
        const std::uint32_t leaf_sp = child(t, goal + 1, gfn);
        if (auto it = gpte_written_.find(leaf_sp); it != gpte_written_.end()) {
            const unsigned i = spte_index(gfn, goal);
            it->second[i / 64] &= ~(std::uint64_t{1} << (i % 64));
        }
    }
    // make_spte: ACC_ALL, writable if the host's pfn is; D only on a writable SPTE (tracked with
    // PML, where a clear D on the direct tree means the next write is logged).
    e = pml_log_.on() && !t.nested && !(leaf & spte::W) ? static_cast<std::uint8_t>(leaf | kDirtyClear) : leaf;
    if (leaf & spte::W) c += mark_page_dirty(s, gfn, cpu);  // only a writable SPTE (make_spte)
    return c;
}

Task<void> X86ShadowMmu::page_fault(const vm::CpuContext& cpu_ctx, Gfn gfn, vm::Access access) {
    if (cpu_ctx.vcpu < 0 || static_cast<std::size_t>(cpu_ctx.vcpu) >= vcpus_.size())
        throw std::invalid_argument("x86_shadow: page_fault from '" + cpu_ctx.name + "', which is not a vCPU of the VM");
    const auto vi = static_cast<std::uint32_t>(cpu_ctx.vcpu);
    if (hold_.held(vi)) {
        // The vCPU is in KVM or L1 for a nested operation (its guest code does not run): wait until
        // the nested VM-entry is done (or L1 resumes), then retry the access. Not an exit.
        sim_.counters().add(mc_->stalled);
        co_await hold_.wait_released(vi);
        co_return;
    }
    const GuestStreamHold::FaultScope in_fault = hold_.fault_scope(vi);
    co_await fault(cpu_ctx, gfn, access);
}

// kvm_mmu_page_fault in the vCPU's current mode: the nested tree (FNAME(page_fault) of the
// guest_mmu) while it runs L2, else the direct tree (direct_page_fault) or the TDP MMU. No nested
// operation starts on the vCPU while this runs, so the mode cannot change under it.
Task<void> X86ShadowMmu::fault(const vm::CpuContext& cpu_ctx, Gfn gfn, vm::Access access) {
    const auto vi = static_cast<std::size_t>(cpu_ctx.vcpu);
    Tree* t = vcpu_tree_[vi];
    if (!t && tdp_) {  // kvm_tdp_page_fault
        co_await tdp_->page_fault(cpu_ctx, gfn, access);
        co_return;
    }
    if (!t) t = direct_.get();
    const std::uint32_t cpu = cpu_ctx.host_cpu;
    VcpuState& v = *vcpus_[vi];
    Time pre = kt_.fault_entry;
    if (pml_log_.on() && !t->nested) {
        // vmx_handle_exit flushes the PML buffer on every VM exit from L1 (not from L2: PML is
        // never on in vmcs02), before the handler.
        const bool full = access == vm::Access::Write && pml_full_exit(vi, gfn);
        pre += pml_flush(vi, cpu);
        if (full) {  // EXIT_REASON_PML_FULL: the write runs again after the entry
            pml_log_.full_exit();
            co_await sim_.delay(pre + kt_.fault_exit);
            co_return;
        }
    }
    stats_.add(stats_.pf_taken);
    Slot* s = slot_of(gfn);
    if (!s) {
        stats_.add(stats_.pf_emulate);
        co_await sim_.delay(pre + kt_.fault_exit);
        co_return;
    }
    const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];

    // fast_page_fault: a write to a write-protected but MMU-writable leaf, fixed with a cmpxchg
    // without mmu_lock (not a huge SPTE while the slot logs dirty pages). A lost cmpxchg walks
    // again (at most 4 retries); a leaf that allows the write by then (another vCPU fixed it) is
    // RET_PF_SPURIOUS, without the lock (is_access_allowed).
    if (access == vm::Access::Write) {
        auto leaf_level = [&] {
            return is_leaf(entry(*t, 1, gfn)) ? 1 : is_leaf(entry(*t, 2, gfn)) ? 2 : is_leaf(entry(*t, 3, gfn)) ? 3 : 0;
        };
        int lvl = leaf_level();
        for (int retries = 0; lvl;) {
            const std::uint8_t e = entry(*t, lvl, gfn);
            if (e & need) {
                pre += kt_.fast_pf_base;
                for (int l = 4; l >= lvl; --l) pre += kt_.tdp_walk_level + touch(cpu, entry_addr(*t, l, gfn), false);
                stats_.add(stats_.pf_fast);
                stats_.add(stats_.pf_spurious);
                co_await sim_.delay(pre + kt_.fault_exit);
                co_return;
            }
            if (!(e & spte::MW) || (lvl >= 2 && vm_.memslots[s->index].dirty_logging)) break;
            pre += kt_.fast_pf_base + kt_.spte_cmpxchg;
            for (int l = 4; l >= lvl; --l) pre += kt_.tdp_walk_level + touch(cpu, entry_addr(*t, l, gfn), l == lvl);
            co_await sim_.delay(pre);
            pre = Time::zero();
            std::uint8_t& now = entry(*t, lvl, gfn);
            if (now == e) {
                now = static_cast<std::uint8_t>(e | spte::W);
                const Time d = mark_page_dirty(*s, gfn, cpu);
                stats_.add(stats_.pf_fast);
                stats_.add(stats_.pf_fixed);
                co_await sim_.delay(d + kt_.fault_exit);
                co_return;
            }
            // Registered here, so that runs without a lost cmpxchg report no new counter.
            sim_.counters().add(sim_.counters().id("fast_pf_cmpxchg_retry"));
            if (++retries > 4) break;  // "Fast #PF retrying more than 4 times."
            lvl = leaf_level();
        }
    }

    pre += topup_caches(v, t->nested);
    if (t->nested) pre += k_.guest_walk_level * 4;  // FNAME(walk_addr) over L1's EPT
    // kvm_faultin_pfn: the sequence snapshot, then hva_to_pfn through the host's mm (see x86_tdp).
    const std::uint64_t mmu_seq = inv_.seq();
    host::Gup gup;
    if (host_->gup_analytic(gfn, access == vm::Access::Write)) {
        gup = host_->try_gup(cpu, gfn, access == vm::Access::Write, sim_.now() + pre);
        co_await sim_.delay(gup.done - sim_.now());
    } else {
        co_await sim_.delay(pre);
        gup = co_await host_->gup(cpu_ctx, gfn, access == vm::Access::Write);
        if (gup.done > sim_.now()) co_await sim_.delay(gup.done - sim_.now());
    }
    const std::uint8_t leaf = gup.writable ? spte::LEAF_RW : spte::LEAF_HOST_RO;

    bool fixed = false, retry = false;
    {
        const Time asked = sim_.now();
        engine::LockGuard g = co_await mmu_lock_.write(t->nested ? site_ept_fault_ : site_direct_fault_);
        const engine::TraceScope slice(sim_, t->nested ? "FNAME(fetch)" : "direct_map");
        Time held = lock_word_.acquired(cpu, engine::LockMode::Write, asked, sim_.now());
        const std::uint8_t l1 = entry(*t, 1, gfn), l2 = entry(*t, 2, gfn), l3 = entry(*t, 3, gfn);
        const bool ok = (is_leaf(l1) && (l1 & need)) || (is_leaf(l2) && (l2 & need)) || (is_leaf(l3) && (l3 & need));
        if (inv_.retry_gfn(mmu_seq, gfn)) {  // is_page_fault_stale: RET_PF_RETRY
            sim_.counters().add(mc_->retry_stale);
            retry = true;
        } else if (!ok) {  // else another vCPU mapped it meanwhile: spurious
            int goal = max_level(*s, gfn, 4 - gup.level);
            if (t->nested) goal = std::min(goal, guest_leaf_level(*s));
            // mmu_set_spte replaces a page table with the huge SPTE (drop_parent_pte). The model
            // does so in the direct tree when no SPTE below is present (what
            // kvm_mmu_zap_collapsible_sptes leaves); a table with present SPTEs keeps the fault
            // at the level below (the kernel would unlink them, still mapped, with the table).
            if (goal == 3 && is_table(l3) && (t->nested || !table_empty(*t, 3, gfn))) goal = 2;
            if (goal == 2 && is_table(l2) && (t->nested || !table_empty(*t, 2, gfn))) goal = 1;
            held += map(cpu, v, *t, *s, gfn, goal, leaf);
            fixed = true;
        } else {
            held += kt_.tdp_walk_level * 4;
        }
        co_await sim_.delay(held);
    }
    if (!retry) stats_.add(fixed ? stats_.pf_fixed : stats_.pf_spurious);
    // kvm_release_pfn_clean after write_unlock.
    const Time rel = host_->put_page(cpu, gup, sim_.now());
    co_await sim_.delay(rel - sim_.now() + kt_.fault_exit);
}

// ---------------------------------------------------------------------------------------------
// Roots

// mmu_first_shadow_root_alloc: with the TDP MMU on, the first shadow root allocates the rmaps
// and write-tracking arrays of every memslot (cost proportional to guest memory) under
// slots_arch_lock; shadow_root_allocated never goes back to false.
Task<void> X86ShadowMmu::first_shadow_root_alloc(const vm::CpuContext& cpu) {
    if (shadow_root_allocated_) co_return;
    engine::LockGuard g = co_await slots_arch_lock_.lock(site_first_root_);
    if (!shadow_root_allocated_) {
        if (!rmaps_) {
            std::uint64_t pages = 0;
            for (const auto& s : slots_) pages += s->npages;
            rmap4k_.assign(span_, 0);
            rmap2m_.assign(span_ >> 9, 0);
            // Aliased gfns (alias_percent) already have one rmap entry: another L2 gfn or
            // nested root maps them.
            if (cfg_.alias_percent)
                for (const auto& s : slots_)
                    for (Gfn gfn = s->base; gfn < s->base + s->npages; ++gfn)
                        if (aliased(gfn, cfg_.alias_percent)) rmap4k_[gfn - span_base_] = 1;
            rmaps_ = true;
            sim_.counters().add(mc_->first_root_pages, pages);
            co_await sim_.delay(k_.rmap_alloc_per_4k * static_cast<std::int64_t>(pages) +
                                touch(cpu.host_cpu, rmap_base_, true));
        }
        shadow_root_allocated_ = true;
    }
}

// Seed 000's bookkeeping at the top of mmu_alloc_shadow_roots, on every shadow root allocation:
// the one-way bool or the indirect MMU count, with mmu_lock taken around the update on every
// allocation ("every", as the patch did) or only when the state first changes ("first", as the
// review asked). The count goes down when an indirect root is freed (put_roots), under the
// mmu_lock that kvm_mmu_free_roots holds anyway.
Task<void> X86ShadowMmu::note_indirect_mmu(const vm::CpuContext& cpu) {
    bool take = false;
    switch (cfg_.child_sp_lookup) {
        case ChildSpLookup::Always: co_return;
        case ChildSpLookup::SkipBool:
            take = cfg_.root_alloc_lock == RootAllocLock::Every || !may_have_multiple_parents_;
            break;
        case ChildSpLookup::SkipCount:
            take = cfg_.root_alloc_lock == RootAllocLock::Every || indirect_mmus_ == 0;
            break;
    }
    if (!take) {
        if (cfg_.child_sp_lookup == ChildSpLookup::SkipCount) ++indirect_mmus_;
        co_return;
    }
    const Time asked = sim_.now();
    engine::LockGuard g = co_await mmu_lock_.write(site_root_flag_);
    sim_.counters().add(mc_->flag_locks);
    if (cfg_.child_sp_lookup == ChildSpLookup::SkipBool) may_have_multiple_parents_ = true;
    else ++indirect_mmus_;
    co_await sim_.delay(lock_word_.acquired(cpu.host_cpu, engine::LockMode::Write, asked, sim_.now()));
}

// The nested EPT MMU's root role (kvm_calc_shadow_ept_root_page_role): 4-level, indirect,
// guest_mode.
x86_context::RootRole X86ShadowMmu::root_role(const x86_context::CpuRole& role) const {
    (void)role;
    x86_context::RootRole r;
    r.level = 4;
    r.direct = false;
    r.guest_mode = true;
    return r;
}

Tree& X86ShadowMmu::tree_for(Gfn eptp) {
    for (auto& n : nested_)
        if (n->eptp == eptp) return *n;
    auto n = std::make_unique<Tree>();
    n->nested = true;
    n->eptp = eptp;
    n->pte.assign(span_, 0);
    n->pde.assign(span_ >> 9, 0);
    n->pt_sp.assign(span_ >> 9, 0);
    n->pdpte.assign(span_ >> 18, 0);
    n->pd_sp.assign(span_ >> 18, 0);
    n->pml4e.assign((span_ >> 27) + 1, 0);
    n->pdpt_sp.assign((span_ >> 27) + 1, 0);
    nested_.push_back(std::move(n));
    return *nested_.back();
}

Tree* X86ShadowMmu::tree_of_root(std::uint64_t hpa) {
    for (auto& n : nested_)
        if (n->root && sps_[n->root].page == hpa) return n.get();
    return nullptr;
}

// kvm_mmu_load for the nested MMU: mmu_topup_memory_caches, then mmu_alloc_shadow_roots (seed
// 000's update; mmu_first_shadow_root_alloc; mmu_lock write; mmu_alloc_root: the root SP for the
// EPTP is looked up in mmu_page_hash and found again if it still exists, else allocated).
Task<std::uint64_t> X86ShadowMmu::get_root(const vm::CpuContext& cpu, x86_context::RootRole role, Gfn eptp) {
    (void)role;
    VcpuState& v = *vcpus_.at(static_cast<std::size_t>(cpu.vcpu));
    co_await sim_.delay(topup_caches(v, true));
    co_await note_indirect_mmu(cpu);
    co_await first_shadow_root_alloc(cpu);
    Tree& t = tree_for(eptp);
    const Time asked = sim_.now();
    engine::LockGuard g = co_await mmu_lock_.write(site_root_);
    Time held = lock_word_.acquired(cpu.host_cpu, engine::LockMode::Write, asked, sim_.now()) + k_.shadow_root_alloc;
    const std::uint32_t sp = get_shadow_page(cpu.host_cpu, eptp, make_role(4, false, true), v.header, v.page, &v.info,
                                             true, held);
    t.root = sp;
    sps_[sp].tree = &t;
    sps_[sp].base = span_base_;
    ++sps_[sp].root_count;
    sim_.counters().add(mc_->shadow_roots);
    co_await sim_.delay(held);
    co_return sps_[sp].page;
}

// kvm_mmu_free_roots' puts (mmu_free_root_page, mmu_lock write): a valid root SP only loses the
// reference (it stays in mmu_page_hash, found again by a later mmu_alloc_root); nested roots are
// never invalid here, so nothing is zapped. Seed 000's count goes down.
Task<void> X86ShadowMmu::put_roots(const vm::CpuContext& cpu, std::vector<std::uint64_t> roots) {
    const Time asked = sim_.now();
    engine::LockGuard g = co_await mmu_lock_.write(site_free_roots_);
    Time held = lock_word_.acquired(cpu.host_cpu, engine::LockMode::Write, asked, sim_.now());
    for (std::uint64_t hpa : roots) {
        Tree* t = tree_of_root(hpa);
        if (!t) throw std::logic_error("x86_shadow: put of an unknown root");
        Sp& sp = sps_[t->root];
        held += touch(cpu.host_cpu, sp.header, true);
        if (sp.root_count) --sp.root_count;
        if (cfg_.child_sp_lookup == ChildSpLookup::SkipCount && indirect_mmus_) --indirect_mmus_;
    }
    co_await sim_.delay(held);
}

// The simplification after free_nested (the L1 hypervisor is done with its L2 guests): every
// nested tree no vCPU holds any more is zapped (kvm_mmu_prepare_zap_page from its root, one
// kvm_mmu_commit_zap_page flush) in a mmu_lock write section of its own; the kernel keeps them
// until make_mmu_pages_available or a zap of everything reclaims them.
Task<void> X86ShadowMmu::zap_unheld_trees(const vm::CpuContext& cpu) {
    bool any = false;
    for (auto& n : nested_) any |= n->root && !sps_[n->root].root_count;
    if (!any) co_return;
    const Time asked = sim_.now();
    engine::LockGuard g = co_await mmu_lock_.write(site_zap_trees_);
    Time held = lock_word_.acquired(cpu.host_cpu, engine::LockMode::Write, asked, sim_.now());
    bool zapped = false;
    for (auto& n : nested_) {
        if (!n->root || sps_[n->root].root_count) continue;
        held += zap_tree(cpu.host_cpu, *n, false);
        zapped = true;
    }
    if (zapped) held += tlb_.flush();  // kvm_mmu_commit_zap_page
    co_await sim_.delay(held);
}

std::optional<Gfn> X86ShadowMmu::running_eptp(std::uint32_t vcpu) const {
    const Tree* t = vcpu_tree_.at(vcpu);
    return t ? std::optional<Gfn>(t->eptp) : std::nullopt;
}

std::uint32_t X86ShadowMmu::root_count(Gfn eptp) const {
    for (const auto& n : nested_)
        if (n->eptp == eptp) return n->root ? sps_[n->root].root_count : 0;
    return 0;
}

std::uint32_t X86ShadowMmu::root_unsync_children(Gfn eptp) const {
    for (const auto& n : nested_)
        if (n->eptp == eptp) return n->root ? sps_[n->root].unsync_children : 0;
    return 0;
}

bool X86ShadowMmu::l1_ept_page_writable(Gfn gfn) const {
    auto it = l1_ept_spte_.find(gfn);
    return it != l1_ept_spte_.end() && (it->second & spte::W);
}

// A nested VM-entry with EPT root eptp (nested_vmx_enter_non_root_mode ->
// nested_ept_init_mmu_context -> kvm_init_shadow_ept_mmu): the guest_mmu's role check (a full
// init the first time), kvm_mmu_new_pgd (fast_pgd_switch over the current root and prev_roots; a
// miss with a current root frees the least recently used one), then vcpu_enter_guest's
// kvm_mmu_reload (kvm_mmu_load: mmu_alloc_shadow_roots, kvm_mmu_sync_roots) when no root is
// loaded. The vCPU then runs L2 in that root's tree.
Task<void> X86ShadowMmu::nested_enter(const vm::CpuContext& cpu, Gfn eptp) {
    const auto vi = static_cast<std::size_t>(cpu.vcpu);
    const Time start = sim_.now();
    // L1's VMLAUNCH/VMRESUME is a VM exit from L1: vmx_handle_exit flushes the PML buffer (the
    // other L1 exits of a transition, VMPTRLD or INVEPT, would find it empty).
    if (pml_log_.on() && vcpu_tree_[vi] == nullptr) {
        const Time f = pml_flush(static_cast<std::uint32_t>(vi), cpu.host_cpu);
        if (f > Time::zero()) co_await sim_.delay(f);
    }
    x86_context::CpuRole ept;
    ept.guest_mode = true;
    co_await sim_.delay(guest_mmu_->init_mmu(cpu.host_cpu, static_cast<std::uint32_t>(vi), ept));
    const bool hit = co_await guest_mmu_->new_pgd(cpu, eptp);
    if (co_await guest_mmu_->reload(cpu)) co_await sync_roots(cpu);
    Tree* t = tree_of_root(guest_mmu_->mmu(static_cast<std::uint32_t>(vi)).root.hpa);
    if (!t) throw std::logic_error("x86_shadow: nested VM-entry without a root");
    if (hit) sps_[t->root].write_flooding = 0;  // kvm_mmu_new_pgd: __clear_sp_write_flooding_count
    vcpu_tree_[vi] = t;
    sim_.counters().add(mc_->vm_entries);
    sim_.counters().add(mc_->vm_entry_ps, static_cast<std::uint64_t>((sim_.now() - start).ps()));
}

// VMLAUNCH/VMRESUME of an L2 guest whose EPT root is at eptp on a vCPU running L1. The vCPU's
// guest stream is held until the VM-entry is done.
Task<void> X86ShadowMmu::nested_start(const vm::CpuContext& cpu, Gfn eptp) {
    if (cpu.vcpu < 0 || static_cast<std::size_t>(cpu.vcpu) >= vcpus_.size()) co_return;
    check_eptp(cpu, eptp, "nested_start");
    const auto vi = static_cast<std::uint32_t>(cpu.vcpu);
    co_await hold_.serialize(vi);
    if (vcpu_tree_[vi]) co_return;
    co_await hold_.hold(vi);
    co_await nested_enter(cpu, eptp);
    hold_.end(vi, true);
}

// The L2 guest exits for good and L1 is done with nested guests on this vCPU (free_nested:
// kvm_mmu_free_roots(guest_mmu, KVM_MMU_ROOTS_ALL), which only drops the roots' references);
// then, the simplification, the trees no vCPU holds any more are zapped. The vCPU's guest stream
// is held meanwhile.
Task<void> X86ShadowMmu::nested_stop(const vm::CpuContext& cpu, Gfn eptp) {
    if (cpu.vcpu < 0 || static_cast<std::size_t>(cpu.vcpu) >= vcpus_.size()) co_return;
    const auto vi = static_cast<std::uint32_t>(cpu.vcpu);
    co_await hold_.serialize(vi);
    if (!vcpu_tree_[vi] || vcpu_tree_[vi]->eptp != eptp) co_return;
    co_await hold_.hold(vi);
    vcpu_tree_[vi] = nullptr;
    (void)co_await guest_mmu_->free_roots(cpu, x86_context::kRootsAll);
    co_await zap_unheld_trees(cpu);
    hold_.end(vi, true);
}

// L1 switches the vCPU's L2 guest: a nested VM-exit, VMPTRLD of the next vmcs12, VMRESUME
// (nested_transition), then the nested VM-entry with the new EPTP (nested_enter). The vCPU's
// guest stream is held from the VM-exit to the end of the VM-entry.
Task<void> X86ShadowMmu::nested_eptp_switch(const vm::CpuContext& cpu, const std::vector<Gfn>& eptps) {
    if (cpu.vcpu < 0 || static_cast<std::size_t>(cpu.vcpu) >= vcpus_.size() || eptps.empty())
        throw std::invalid_argument("x86_shadow: nested_eptp_switch on '" + cpu.name + "'");
    for (Gfn e : eptps) check_eptp(cpu, e, "nested_eptp_switch");
    const auto vi = static_cast<std::uint32_t>(cpu.vcpu);
    co_await hold_.serialize(vi);
    const Tree* cur = vcpu_tree_[vi];
    if (!cur) {  // the vCPU runs L1: nothing to switch
        sim_.counters().add(mc_->switch_ignored);
        co_return;
    }
    co_await hold_.hold(vi);  // the nested VM-exit is taken at the next exit of L2
    auto it = std::find(eptps.begin(), eptps.end(), cur->eptp);
    const Gfn next = it == eptps.end() || std::next(it) == eptps.end() ? eptps.front() : *std::next(it);
    sim_.counters().add(mc_->switches);
    co_await sim_.delay(k_.nested_transition);
    co_await nested_enter(cpu, next);
    hold_.end(vi, true);
}

// ---------------------------------------------------------------------------------------------
// Unsync and sync (nested indirect SPs)

// The SP holding the SPTE that links sp (its parent) and that SPTE's index; 0 for a root, or an SP
// no longer linked in its tree.
std::uint32_t X86ShadowMmu::parent_of(const Sp& sp, unsigned& idx) const {
    const int level = role_level(sp.role);
    if (level >= 4 || !sp.tree) return 0;
    Tree& t = *sp.tree;
    const std::uint64_t i = sp.base - span_base_;
    const std::uint32_t linked = level == 1 ? t.pt_sp[i >> 9] : level == 2 ? t.pd_sp[i >> 18] : t.pdpt_sp[i >> 27];
    if (!linked || &sps_[linked] != &sp) {
        // A page table linked by a level-2 SP that kvm_mmu_track_write unlinked: its parent SPTE
        // is in that SP's subtree, set aside.
        const std::uint32_t parent = unlinked_parent(t, static_cast<std::uint32_t>(&sp - sps_.data()));
        if (parent) idx = spte_index(sp.base, 2);
        return parent;
    }
    idx = spte_index(sp.base, level + 1);
    return level + 1 == 4 ? t.root : level + 1 == 3 ? t.pdpt_sp[i >> 27] : t.pd_sp[i >> 18];
}

// mark_unsync: set the SPTE's bit in its SP's unsync_child_bitmap; the first unsync child of an SP
// marks its own parents (kvm_mmu_mark_parents_unsync).
Time X86ShadowMmu::mark_unsync(std::uint32_t cpu, std::uint32_t parent, unsigned idx) {
    Time c;
    while (parent) {
        Sp& p = sps_[parent];
        c += touch(cpu, p.header + 128, true);
        if (p.unsync_child(idx)) break;
        p.unsync_child_bitmap[idx / 64] |= std::uint64_t{1} << (idx % 64);
        if (p.unsync_children++) break;
        parent = parent_of(p, idx);
    }
    return c;
}

// kvm_unsync_page: ++mmu_unsync, sp->unsync = 1, kvm_mmu_mark_parents_unsync.
Time X86ShadowMmu::unsync_page(std::uint32_t cpu, std::uint32_t id) {
    Sp& sp = sps_[id];
    sp.unsync = true;
    ++unsync_sps_;
    stats_.gauge_add(stats_.mmu_unsync, 1);
    sim_.counters().add(mc_->unsync_page);
    Time c = touch(cpu, sp.header, true);
    unsigned idx = 0;
    if (const std::uint32_t parent = parent_of(sp, idx)) c += mark_unsync(cpu, parent, idx);
    return c;
}

// kvm_unlink_unsync_page: sp->unsync = 0, --mmu_unsync.
void X86ShadowMmu::unlink_unsync_page(Sp& sp) {
    sp.unsync = false;
    --unsync_sps_;
    stats_.gauge_add(stats_.mmu_unsync, -1);
}

// kvm_sync_page -> __kvm_sync_page: ept_sync_spte for each of the 512 SPTEs (the SP's page read
// through the cache model); a present SPTE costs sync_spte and the read of its guest entry (L1's
// EPT page); an entry L1 rewrote since the SP went unsync maps another frame now: the SPTE is
// dropped (drop_spte) and a flush is needed. `changed` says whether one was.
Time X86ShadowMmu::sync_page(std::uint32_t cpu, std::uint32_t id, bool& changed) {
    Sp& sp = sps_[id];
    Tree& t = *sp.tree;
    Time c = touch(cpu, sp.page, false, 4096);
    const std::uint64_t i0 = sp.base - span_base_;
    std::uint32_t present = 0, dropped = 0;
    const auto written = gpte_written_.find(id);
    for (unsigned k = 0; k < 512 && i0 + k < span_; ++k) {
        std::uint8_t& e = t.pte[i0 + k];
        if (!is_present(e)) continue;
        ++present;
        if (written != gpte_written_.end() && ((written->second[k / 64] >> (k % 64)) & 1)) {
            c += kt_.spte_update + rmap_remove(cpu, sp.base + k, 1);
            stats_.update_page_stats(vm::PageLevel::K4, -1);
            e = 0;
            ++dropped;
        }
    }
    if (written != gpte_written_.end()) gpte_written_.erase(written);  // the shadow follows L1 again
    if (present) c += touch(cpu, ept_page_addr(sp.gfn), false, 4096) + k_.sync_spte * static_cast<std::int64_t>(present);
    changed = dropped > 0;
    engine::Counters& ctr = sim_.counters();
    ctr.add(mc_->sync_page);
    ctr.add(mc_->sync_dropped, dropped);
    ctr.add(mc_->sync_page_ps, static_cast<std::uint64_t>(c.ps()));
    return c;
}

// __mmu_unsync_walk: the SPs reachable through unsync_child_bitmap, depth first, into pvec (SP,
// index in its parent) up to KVM_PAGE_ARRAY_NR entries; stale bits are cleared on the way.
// Returns the unsync leaves found, or -1 when pvec filled up (-ENOSPC).
int X86ShadowMmu::unsync_walk(std::uint32_t cpu, std::uint32_t id, std::vector<std::pair<std::uint32_t, int>>& pvec,
                              Time& cost) {
    auto add = [&](std::uint32_t sp, int idx) {
        if (sps_[sp].unsync)
            for (const auto& e : pvec)
                if (e.first == sp) return false;
        pvec.emplace_back(sp, idx);
        return pvec.size() == kPageArrayNr;
    };
    auto clear = [&](std::uint32_t sp, unsigned i) {
        Sp& s = sps_[sp];
        --s.unsync_children;
        s.unsync_child_bitmap[i / 64] &= ~(std::uint64_t{1} << (i % 64));
    };
    const int level = role_level(sps_[id].role);
    Tree& t = *sps_[id].tree;
    const Gfn base = sps_[id].base;
    int nr = 0;
    for (unsigned w = 0; w < 8; ++w) {
        std::uint64_t word = sps_[id].unsync_child_bitmap[w];
        if (!word) continue;
        cost += touch(cpu, sps_[id].header + 128, false);
        for (; word; word &= word - 1) {
            const unsigned i = w * 64 + static_cast<unsigned>(__builtin_ctzll(word));
            const Gfn g = base + i * pages_at(level);
            cost += touch(cpu, sps_[id].page + i * 8, false);
            if (g - span_base_ >= span_ || !is_table(entry(t, level, g))) {
                clear(id, i);
                continue;
            }
            const std::uint32_t ch = child(t, level, g);
            cost += touch(cpu, sps_[ch].header, false);
            if (sps_[ch].unsync_children) {
                if (add(ch, static_cast<int>(i))) return -1;
                const int r = unsync_walk(cpu, ch, pvec, cost);
                if (r == 0) clear(id, i);
                else if (r > 0) nr += r;
                else return r;
            } else if (sps_[ch].unsync) {
                ++nr;
                if (add(ch, static_cast<int>(i))) return -1;
            } else {
                clear(id, i);
            }
        }
    }
    return nr;
}

// One round of mmu_sync_children's loop: mmu_unsync_walk from parent; write-protect every unsync
// leaf's gfn (kvm_vcpu_write_protect_gfn), flush if that protected anything; then each leaf is
// marked synchronized (kvm_unlink_unsync_page), synced (kvm_sync_page) and its parents' bits are
// cleared (mmu_pages_clear_parents). `found`: the walk found something; `flush`: a sync changed
// an SPTE and no flush has covered it yet.
Time X86ShadowMmu::sync_children_batch(std::uint32_t cpu, std::uint32_t parent, bool& found, bool& flush) {
    Time c;
    std::vector<std::pair<std::uint32_t, int>> pvec;
    found = false;
    if (!sps_[parent].unsync_children) return c;
    pvec.emplace_back(parent, -1);
    const int r = unsync_walk(cpu, parent, pvec, c);
    found = r != 0;
    if (!found) return c;
    // for_each_sp: the leaves of pvec, with the path of parents (mmu_pages_first/next).
    std::array<std::uint32_t, 5> par{};
    std::array<int, 5> pidx{};
    auto next = [&](std::size_t i) {
        std::size_t n = i + 1;
        for (; n < pvec.size(); ++n) {
            const int level = role_level(sps_[pvec[n].first].role);
            pidx[static_cast<std::size_t>(level - 1)] = pvec[n].second;
            if (level == 1) break;
            par[static_cast<std::size_t>(level - 2)] = pvec[n].first;
        }
        return n;
    };
    auto first = [&]() {
        const int level = role_level(sps_[pvec[0].first].role);
        par[static_cast<std::size_t>(level - 2)] = pvec[0].first;
        par[static_cast<std::size_t>(level - 1)] = 0;
        return next(0);
    };
    bool protected_ = false;
    for (std::size_t i = first(); i < pvec.size(); i = next(i)) c += write_protect_gfn(cpu, sps_[pvec[i].first].gfn, protected_);
    if (protected_) {
        c += tlb_.flush();
        flush = false;
    }
    for (std::size_t i = first(); i < pvec.size(); i = next(i)) {
        Sp& sp = sps_[pvec[i].first];
        if (sp.unsync) unlink_unsync_page(sp);
        bool changed = false;
        c += sync_page(cpu, pvec[i].first, changed);
        flush |= changed;
        // mmu_pages_clear_parents
        for (std::size_t level = 0;; ++level) {
            const std::uint32_t p = par[level];
            if (!p) break;
            Sp& ps = sps_[p];
            const auto bit = static_cast<unsigned>(pidx[level]);
            if (ps.unsync_child(bit)) {
                --ps.unsync_children;
                ps.unsync_child_bitmap[bit / 64] &= ~(std::uint64_t{1} << (bit % 64));
            }
            if (ps.unsync_children) break;
        }
    }
    return c;
}

// mmu_sync_children(vcpu, parent, can_yield = false), as FNAME(fetch) calls it under mmu_lock.
Time X86ShadowMmu::sync_children_now(std::uint32_t cpu, std::uint32_t parent) {
    sim_.counters().add(mc_->sync_children);
    Time c;
    bool found = true, flush = false;
    while (found) c += sync_children_batch(cpu, parent, found, flush);
    if (flush) c += tlb_.flush();
    sim_.counters().add(mc_->sync_children_ps, static_cast<std::uint64_t>(c.ps()));
    return c;
}

// kvm_mmu_sync_roots: nothing unless the root is unsync or has unsync children (is_unsync_root,
// read without the lock); else mmu_lock write and mmu_sync_children(can_yield = true), which
// flushes and yields between rounds when need_resched() or rwlock_needbreak().
Task<void> X86ShadowMmu::sync_roots(const vm::CpuContext& cpu) {
    Tree* t = tree_of_root(guest_mmu_->mmu(static_cast<std::uint32_t>(cpu.vcpu)).root.hpa);
    if (!t || !(sps_[t->root].unsync || sps_[t->root].unsync_children)) co_return;
    sim_.counters().add(mc_->sync_roots);
    sim_.counters().add(mc_->sync_children);
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_sync_roots_);
    const Time start = sim_.now();
    bool found = true, flush = false;
    while (found && t->root) {
        b.acc += sync_children_batch(b.cpu, t->root, found, flush);
        if (found && need_resched(b)) {
            co_await cond_resched(b, flush);  // kvm_mmu_remote_flush_or_zap, cond_resched_rwlock_write
            flush = false;
        }
    }
    if (flush) b.acc += tlb_.flush();
    co_await unlock(b);
    sim_.counters().add(mc_->sync_children_ps, static_cast<std::uint64_t>((sim_.now() - start).ps()));
}

// kvm_vcpu_write_protect_gfn -> kvm_mmu_slot_gfn_write_protect on L1's mapping of gfn (its rmap,
// and with the TDP MMU its TDP SPTE): a writable SPTE loses W (and MMU-writable, pt_protect).
Time X86ShadowMmu::write_protect_gfn(std::uint32_t cpu, Gfn gfn, bool& protected_) {
    Time c = k_.rmap_op + touch(cpu, ept_meta_addr(gfn), false);
    if (tdp_) c += kt_.tdp_walk_level * 4;  // kvm_tdp_mmu_write_protect_gfn
    auto it = l1_ept_spte_.find(gfn);
    if (it != l1_ept_spte_.end() && (it->second & spte::W)) {
        it->second = spte::P;
        c += touch(cpu, ept_meta_addr(gfn) + 8, true) + kt_.spte_update;
        protected_ = true;
        sim_.counters().add(mc_->gfn_wrprot);
    }
    return c;
}

// account_shadowed for an indirect SP: an upper-level page is write-tracked
// (__kvm_write_track_add_gfn), and L1's mapping of the gfn is write-protected (with a flush if it
// was writable).
Time X86ShadowMmu::account_ept_page(std::uint32_t cpu, const Sp& sp) {
    Time c = k_.account_shadowed;
    if (role_level(sp.role) > 1) ++write_track_[sp.gfn];
    bool protected_ = false;
    c += write_protect_gfn(cpu, sp.gfn, protected_);
    if (protected_) c += tlb_.flush();  // kvm_flush_remote_tlbs_gfn
    return c;
}

// ---------------------------------------------------------------------------------------------
// L1 writing its EPT for an L2 guest (EPT12)

// Zaps the SP linked at (level + 1, base) of tree t and clears that SPTE (kvm_mmu_prepare_zap_page
// with its parent unlinked; the caller flushes).
Time X86ShadowMmu::zap_nested_sp(std::uint32_t cpu, Tree& t, int level, Gfn base) {
    std::uint32_t& link = child(t, level + 1, base);
    const std::uint32_t id = link;
    if (!id) return Time::zero();
    Time c = touch(cpu, entry_addr(t, level + 1, base), true) + kt_.spte_update;
    c += prepare_zap_page(cpu, t, id, level, base);
    entry(t, level + 1, base) = 0;
    link = 0;
    return c;
}

// kvm_mmu_prepare_zap_page of an indirect SP of a nested tree, linked or unlinked (the caller
// flushes).
Time X86ShadowMmu::zap_sp(std::uint32_t cpu, std::uint32_t id) {
    const Sp& sp = sps_[id];
    Tree& t = *sp.tree;
    const int level = role_level(sp.role);
    const Gfn base = sp.base;
    if (level < 4 && child(t, level + 1, base) == id) return zap_nested_sp(cpu, t, level, base);
    const std::uint32_t aside = unlinked_covering(t, id);
    if (aside == id) {
        restore(id, t);
        return prepare_zap_page(cpu, t, id, level, base);
    }
    if (!aside) throw std::logic_error("x86_shadow: zap of a shadow page neither linked nor unlinked");
    // Linked under an unlinked SP: zapped in that SP's subtree, which stays aside.
    const Unlinked& u = unlinked_.at(std::make_pair(aside, t.eptp));
    const int ul = u.level;
    const Gfn ub = u.base;
    restore(aside, t);
    const Time c = zap_nested_sp(cpu, t, level, base);
    stash(aside, t, ul, ub);
    return c;
}

// drop_parent_pte (mmu_page_zap_pte without an invalid list): the SPTE at (level, gfn) of t that
// links a child SP is cleared and leaves the child's parent_ptes; the child stays in mmu_page_hash
// with its SPTEs, unlinked (its subtree's state set aside), until a fault links it again or
// something zaps it.
Time X86ShadowMmu::drop_parent_pte(std::uint32_t cpu, Tree& t, int level, Gfn gfn) {
    std::uint32_t ch = 0;
    const Time c = unlink_child(cpu, t, level, gfn, ch);
    stash(ch, t, level - 1, round_gfn(gfn, level));
    return c;
}

// drop_parent_pte's unlink: the SPTE at (level, gfn) that links a child SP is cleared
// (mmu_spte_clear_no_track) and leaves the child's parent_ptes (mmu_page_remove_parent_pte).
Time X86ShadowMmu::unlink_child(std::uint32_t cpu, Tree& t, int level, Gfn gfn, std::uint32_t& ch) {
    std::uint32_t& link = child(t, level, gfn);
    ch = link;
    const Time c = kt_.spte_update + pte_list_remove(cpu, sps_[ch].parents, sps_[ch].header + 64);
    entry(t, level, gfn) = 0;
    link = 0;
    sim_.counters().add(mc_->drop_parent);
    return c;
}

// Whether no SPTE below the table at (level, gfn) of t is present (its page tables may be).
bool X86ShadowMmu::table_empty(const Tree& t, int level, Gfn gfn) const {
    const std::uint64_t i = round_gfn(gfn, level) - span_base_;
    const std::uint64_t n = std::min<std::uint64_t>(pages_at(level), span_ - i);
    auto present = [](std::uint8_t e) { return is_leaf(e); };
    if (std::any_of(t.pte.begin() + static_cast<std::ptrdiff_t>(i), t.pte.begin() + static_cast<std::ptrdiff_t>(i + n),
                    present))
        return false;
    if (level < 3) return true;
    return std::none_of(t.pde.begin() + static_cast<std::ptrdiff_t>(i >> 9),
                        t.pde.begin() + static_cast<std::ptrdiff_t>((i + n + 511) >> 9), present);
}

// mmu_set_spte over a table SPTE whose subtree holds no present SPTE: drop_parent_pte unlinks the
// child SP (its parent_ptes entry removed), then kvm_flush_remote_tlbs_gfn. The kernel leaves
// the child in mmu_page_hash until something zaps it; the model frees it and the SPs below it
// at no cost (they map nothing), so a later fault allocates a new one where the kernel would
// find the old one in the hash.
Time X86ShadowMmu::replace_empty_table(std::uint32_t cpu, Tree& t, int level, Gfn gfn) {
    std::uint32_t ch = 0;
    const Time c = unlink_child(cpu, t, level, gfn, ch);
    if (sps_[ch].parents == 0) free_subtree(t, ch, level - 1, round_gfn(gfn, level));
    return c + tlb_.flush();
}

// Frees sp, an SP at `level` of t over `base` whose SPTEs are all non-present, and its child SPs.
void X86ShadowMmu::free_subtree(Tree& t, std::uint32_t sp, int level, Gfn base) {
    if (level > 1) {
        for (unsigned k = 0; k < 512; ++k) {
            const Gfn g = base + k * pages_at(level);
            if (g - span_base_ >= span_) break;
            if (!is_table(entry(t, level, g))) continue;
            std::uint32_t& link = child(t, level, g);
            sps_[link].parents = 0;
            free_subtree(t, link, level - 1, g);
            entry(t, level, g) = 0;
            link = 0;
        }
    }
    free_sp(sp);
}

// kvm_mmu_track_write (mmu_lock write): ++mmu_pte_write; for every SP shadowing the page
// (for_each_gfn_valid_sp_with_gptes, unlinked ones too): a third write to an upper-level SP
// without a fault using it in between zaps it (detect_write_flooding: kvm_mmu_prepare_zap_page,
// mmu_flooded); else the written SPTE is zapped (mmu_page_zap_pte without an invalid list: a leaf
// is dropped, a link only unlinks its child, drop_parent_pte; mmu_pde_zapped above 4K, as L1's
// new entry is not zero); one flush if an SPTE was present or an SP zapped
// (kvm_mmu_remote_flush_or_zap).
Task<void> X86ShadowMmu::track_write(const vm::CpuContext& cpu, Gfn page, unsigned idx) {
    if (!indirect_shadow_pages_) co_return;
    const Time asked = sim_.now();
    engine::LockGuard g = co_await mmu_lock_.write(site_track_write_);
    const std::uint32_t hc = cpu.host_cpu;
    Time held = lock_word_.acquired(hc, engine::LockMode::Write, asked, sim_.now()) + k_.guest_walk_level;  // mmu_pte_write_fetch_gpte
    stats_.add(stats_.mmu_pte_write);
    const std::uint32_t b = page_table_hash(page);
    held += touch(hc, hash_addr_ + b * 8, false);
    std::vector<std::uint32_t> shadowing;
    for (std::uint32_t id = hash_[b]; id; id = sps_[id].hash_next) {
        held += k_.hash_entry_step + touch(hc, sps_[id].header, false);
        if (sps_[id].gfn == page && !role_direct(sps_[id].role) && sps_[id].tree) shadowing.push_back(id);
    }
    bool flush = false;
    for (std::uint32_t id : shadowing) {
        Sp& sp = sps_[id];
        if (!sp.live || sp.gfn != page) continue;  // zapped by an earlier one
        const int level = role_level(sp.role);
        Tree& t = *sp.tree;
        if (level > 1 && ++sp.write_flooding >= kFloodThreshold) {  // detect_write_flooding
            held += zap_sp(hc, id);
            stats_.add(stats_.mmu_flooded);
            flush = true;
            continue;
        }
        const Gfn gl = sp.base + idx * pages_at(level);
        // L1's new entry (gentry) is never zero: mmu_pde_zapped counts every upper-level SPTE the
        // write reaches, present or not.
        if (level > 1) stats_.add(stats_.mmu_pde_zapped);
        if (gl - span_base_ >= span_) continue;
        held += touch(hc, sp.page + idx * 8, true);
        // An unlinked SP (or one linked below it) has its SPTEs set aside: back for the write.
        const std::uint32_t aside = unlinked_covering(t, id);
        int aside_level = 0;
        Gfn aside_base = 0;
        if (aside) {
            const Unlinked& u = unlinked_.at(std::make_pair(aside, t.eptp));
            aside_level = u.level;
            aside_base = u.base;
            restore(aside, t);
        }
        std::uint8_t& e = entry(t, level, gl);
        if (is_present(e)) {
            if (is_leaf(e)) {  // drop_spte
                held += kt_.spte_update + rmap_remove(hc, gl, level);
                stats_.update_page_stats(level == 1 ? vm::PageLevel::K4 : vm::PageLevel::M2, -1);
                e = 0;
            } else {
                held += drop_parent_pte(hc, t, level, gl);
            }
            flush = true;  // the SPTE was present
        }
        if (aside) stash(aside, t, aside_level, aside_base);
    }
    if (flush) held += tlb_.flush();
    co_await sim_.delay(held);
}

// One write by L1 to entry idx of its EPT page `page` (an L1 frame), through L1's own mapping of
// it. Writable: no exit (the write is recorded for the unsync SPs that shadow the page). Present
// and write-tracked (an upper-level SP shadows it): page_fault_handle_page_track sends the fault
// to the emulator at once. Otherwise a write fault (direct_page_fault under mmu_lock write, or
// kvm_tdp_mmu_page_fault under mmu_lock read): make_spte -> mmu_try_to_unsync_pages: a
// write-tracked page stays read-only and the write is emulated (RET_PF_EMULATE); else every SP
// shadowing it goes unsync (kvm_unsync_page, under mmu_unsync_pages_lock whatever the MMU type)
// and the mapping becomes writable. Emulation (emulate_write) ends in kvm_mmu_track_write.
Task<void> X86ShadowMmu::l1_ept_write(const vm::CpuContext& cpu, Gfn page, unsigned idx) {
    const std::uint32_t hc = cpu.host_cpu;
    sim_.counters().add(mc_->ept_writes);
    std::uint8_t& st = l1_ept_spte_[page];
    auto record = [&] {
        const std::uint32_t b = page_table_hash(page);
        for (std::uint32_t id = hash_[b]; id; id = sps_[id].hash_next)
            if (sps_[id].gfn == page && sps_[id].unsync) gpte_written_[id][idx / 64] |= std::uint64_t{1} << (idx % 64);
    };
    if (st & spte::W) {
        record();
        co_return;
    }
    sim_.counters().add(mc_->ept_write_faults);
    stats_.add(stats_.pf_taken);
    const bool tracked = write_track_.count(page) > 0;
    Time pre = kt_.fault_entry + touch(hc, ept_meta_addr(page) + 16, false);  // kvm_gfn_is_write_tracked
    if ((st & spte::P) && tracked) {  // page_fault_handle_page_track
        co_await sim_.delay(pre);
    } else {
        co_await sim_.delay(pre + host_->costs().gup_fast);
        const engine::LockMode mode = tdp_ ? engine::LockMode::Read : engine::LockMode::Write;
        const Time asked = sim_.now();
        engine::LockGuard g = co_await (tdp_ ? mmu_lock_.read(site_tdp_fault_) : mmu_lock_.write(site_direct_fault_));
        Time held = lock_word_.acquired(hc, mode, asked, sim_.now()) + kt_.tdp_walk_level * 4 + touch(hc, ept_meta_addr(page) + 8, true) +
                    kt_.spte_update;
        if (!tracked) {
            // for_each_gfn_valid_sp_with_gptes: every SP shadowing the page goes unsync.
            const std::uint32_t b = page_table_hash(page);
            held += touch(hc, hash_addr_ + b * 8, false);
            std::vector<std::uint32_t> to_unsync;
            for (std::uint32_t id = hash_[b]; id; id = sps_[id].hash_next) {
                held += k_.hash_entry_step + touch(hc, sps_[id].header, false);
                if (sps_[id].gfn == page && !role_direct(sps_[id].role) && !sps_[id].unsync) to_unsync.push_back(id);
            }
            if (!to_unsync.empty()) {
                // mmu_unsync_pages_lock, taken whatever the MMU type (needed by TDP MMU faults,
                // which hold mmu_lock for read only; uncontended under mmu_lock write).
                co_await sim_.delay(held);
                held = Time::zero();
                engine::LockGuard u = co_await unsync_pages_lock_.lock(site_unsync_);
                Time in = Time::zero();
                for (std::uint32_t id : to_unsync)
                    if (!sps_[id].unsync) in += unsync_page(hc, id);  // rechecked under the spinlock
                co_await sim_.delay(in);
            }
            st = spte::P | spte::W;
        } else {
            st = spte::P;  // -EPERM: the SPTE stays read-only, the write is emulated
        }
        co_await sim_.delay(held);
        g.unlock();
        if (mode == engine::LockMode::Read) co_await sim_.delay(lock_word_.released(hc, mode, sim_.now()));
    }
    if (!(st & spte::W)) {
        stats_.add(stats_.pf_emulate);
        sim_.counters().add(mc_->ept_write_emulated);
        co_await sim_.delay(k_.emulate_write);  // x86_emulate_instruction up to kvm_page_track_write
        co_await track_write(cpu, page, idx);
    } else {
        stats_.add(stats_.pf_fixed);
        record();
    }
    co_await sim_.delay(kt_.fault_exit);
}

// L1 rewrites w.entries leaf entries of its EPT for the L2 guest at w.eptp, for L2 frames spread
// evenly over [w.start, w.end) (a 4K entry of a PT page where L1 maps 4K, a 2M entry of a PD page
// where it maps 2M), then INVEPT (handle_invept, single context: kvm_mmu_free_roots of the
// guest_mmu roots whose pgd is the EPTP). A vCPU running L2 exits to L1 first and resumes L2
// afterwards (nested_transition, then the nested VM-entry: with its root freed by INVEPT, the root
// is loaded again and kvm_mmu_sync_roots syncs what went unsync).
Task<void> X86ShadowMmu::nested_ept_write(const vm::CpuContext& cpu, const vm::NestedEptWrite& w) {
    if (cpu.vcpu < 0 || static_cast<std::size_t>(cpu.vcpu) >= vcpus_.size() || w.entries == 0 || w.end <= w.start)
        throw std::invalid_argument("x86_shadow: nested_ept_write on '" + cpu.name + "'");
    check_eptp(cpu, w.eptp, "nested_ept_write");
    if (w.level > 3)
        throw std::invalid_argument("x86_shadow: nested_ept_write on '" + cpu.name + "' at EPT level " +
                                    std::to_string(w.level) + " (L1 rewrites entries of levels 1 to 3)");
    const auto vi = static_cast<std::uint32_t>(cpu.vcpu);
    co_await hold_.serialize(vi);
    co_await hold_.hold(vi);  // L2 exits to L1 at its next exit; L1's writes are this vCPU's work
    const Tree* running = vcpu_tree_[vi];
    const Gfn resume = running ? running->eptp : 0;
    if (running) co_await sim_.delay(k_.nested_transition);
    const std::uint64_t step = (w.end - w.start) / w.entries;
    for (std::uint32_t j = 0; j < w.entries; ++j) {
        const Gfn g = w.start + j * step;
        const Slot* s = slot_of(g);
        if (!s || g - span_base_ >= span_) continue;
        const int level = std::max(std::min(2, guest_leaf_level(*s)), static_cast<int>(w.level));
        co_await l1_ept_write(cpu, ept_page_gfn(w.eptp, level, g - span_base_), spte_index(g, level));
    }
    if (w.invept) {
        sim_.counters().add(mc_->invept);
        co_await sim_.delay(kt_.fault_entry);  // the INVEPT exit
        (void)co_await guest_mmu_->free_roots(cpu, guest_mmu_->roots_matching(vi, w.eptp));
        co_await sim_.delay(kt_.fault_exit);
    }
    if (running) co_await nested_enter(cpu, resume);
    hold_.end(vi, true);
}

// ---------------------------------------------------------------------------------------------
// Bulk operations

X86ShadowMmu::Bulk X86ShadowMmu::make_bulk(const vm::CpuContext& cpu) {
    Bulk b;
    b.start(cpu, kt_.sched_timeslice, sim_.now());
    return b;
}

Task<void> X86ShadowMmu::settle(Bulk& b) { co_await models::settle(sim_, b); }

Task<void> X86ShadowMmu::lock(Bulk& b, engine::Site site) {
    const Time asked = sim_.now() + b.acc;
    co_await lock_walk(sim_, mmu_lock_, b, engine::LockMode::Write, site);
    b.acc += lock_word_.acquired(b.cpu, engine::LockMode::Write, asked, sim_.now());
}

Task<void> X86ShadowMmu::unlock(Bulk& b) {
    co_await unlock_walk(sim_, b);  // write_unlock: the next holder takes the word
}

bool X86ShadowMmu::need_resched(const Bulk& b) const {
    return b.clock.need_resched(sim_.now() + b.acc) || (cfg_.preempt && mmu_lock_.needbreak());
}

// cond_resched_rwlock_write (walk_slot_rmaps with flush_on_yield): flush if asked, drop, yield,
// retake.
Task<void> X86ShadowMmu::cond_resched(Bulk& b, bool flush) {
    if (flush) b.acc += tlb_.flush();
    const bool resched = b.clock.need_resched(sim_.now() + b.acc);
    co_await unlock(b);
    b.acc += kt_.lock_yield;
    co_await settle(b);
    if (resched) b.clock.start(sim_.now());
    co_await lock(b, b.site);
}

// topup_split_caches (slots_lock held by the caller): the descriptor cache to its capacity when
// below SPLIT_DESC_CACHE_MIN_NR_OBJECTS, the header and page caches when empty.
Time X86ShadowMmu::topup_split_caches() {
    Time c;
    std::uint32_t n = 0, total = 0;
    if (split_desc_.topup(cfg_.split_desc_cache_capacity, kSplitDescCacheMin, &n) != MmuMemoryCache::kOk)
        throw std::logic_error("x86_shadow: split_desc_cache capacity changed");
    c += split_desc_.cost_per_object() * n;
    total += n;
    split_header_.topup(1, &n);
    c += split_header_.cost_per_object() * n;
    total += n;
    split_page_.topup(1, &n);
    c += split_page_.cost_per_object() * n;
    total += n;
    sim_.counters().add(mc_->split_topup_objs, total);
    split_cache_gauges();
    return c;
}

// kvm_mmu_free_eager_page_split_caches.
std::uint32_t X86ShadowMmu::free_split_caches() {
    const std::uint32_t n = split_desc_.free_all() + split_header_.free_all() + split_page_.free_all();
    split_cache_gauges();
    return n;
}

// shadow_mmu_split_huge_page of t's huge SPTE at `level` (2M or 1G) covering gfn (aligned to it):
// a direct SP one level down (found, or taken from the split caches), 512 SPTEs with the huge
// SPTE's permissions, each added to its rmap (a descriptor only where the gfn is already mapped
// elsewhere), then linked in place of the huge SPTE (no flush: nothing was unmapped).
Task<void> X86ShadowMmu::split_huge_page(Bulk& b, Tree& t, int level, Gfn gfn) {
    const std::uint8_t huge = entry(t, level, gfn);
    const int cl = level - 1;
    const std::uint64_t step = pages_at(cl);
    Time c;
    const std::uint32_t sp =
        get_shadow_page(b.cpu, gfn, make_role(cl, true, t.nested), split_header_, split_page_, nullptr, true, c);
    // A direct SP found with SPTEs in this tree (unlinked from it by kvm_mmu_track_write) keeps
    // them: they map the same frames; only the others are filled and added to the rmaps.
    restore(sp, t);
    const auto ch = static_cast<std::uint8_t>(huge & (spte::P | spte::W | spte::X | spte::MW | spte::LEAF));
    std::array<bool, 512> fill{};
    unsigned filled = 0;
    for (unsigned k = 0; k < 512; ++k) {
        std::uint8_t& e = entry(t, cl, gfn + k * step);
        if (is_present(e)) continue;
        e = ch;
        fill[k] = true;
        ++filled;
    }
    c += kt_.split_spte_fill * filled + touch(b.cpu, sps_[sp].page, true, 4096);
    for (unsigned k = 0; k < 512; ++k) {
        if (!fill[k]) continue;  // kept
        const Gfn g = gfn + k * step;
        RmapCount& n = rmap_count(g, cl);
        if (n == kRmapCountMax) throw std::logic_error("x86_shadow: rmap entry count overflow");
        stats_.set_max(stats_.max_mmu_rmap_size, n);
        c += k_.rmap_op;
        if (pte_list_add_descs(n)) {
            if (!split_desc_.alloc()) {
                sim_.counters().add(mc_->alloc_atomic);
                c += split_desc_.cost_per_object();
            }
            ++descs_live_;
            sim_.counters().add(mc_->descs);
            c += touch(b.cpu, desc_addr(rmap_head_addr(g, cl)), true);
        }
        ++n;
        if (k % 8 == 0) c += touch(b.cpu, rmap_head_addr(g, cl), true, 64);
    }
    stats_.update_page_stats(static_cast<vm::PageLevel>(cl), filled);
    c += link_shadow_page(b.cpu, t, level, gfn, sp, split_desc_, false);
    sim_.counters().add(mc_->splits);
    b.acc += c;
    co_return;
}

// kvm_shadow_mmu_try_split_huge_pages (mmu_lock write held) over the slot's gfns [start, end):
// from the largest huge level down to 2M, walk the rmaps of that level; for every huge SPTE
// (the nested trees' and, as David Matlack's 2022 proposal did with the TDP MMU off, the direct
// tree's), shadow_mmu_try_split_huge_page: when need_topup_split_caches_or_resched(), drop
// mmu_lock, cond_resched, topup_split_caches, retake it and restart the rmap walk (-EAGAIN).
// A 1G page is split into 2M pages, which the 2M pass then splits.
Task<void> X86ShadowMmu::try_split_huge_pages(Bulk& b, Slot& s, Gfn start, Gfn end) {
    for (int level = max_rmap_level(); level >= 2; --level) {
        const std::uint64_t n = pages_at(level);
        for (Gfn g = round_gfn(start, level); g < end; g += n) {
            if (g < s.base || g + n > s.base + s.npages) continue;  // not a huge page of the slot
            if (b.acc >= kSettleQuantum) co_await settle(b);
            b.acc += k_.rmap_head_step;
            if (((g - span_base_) / n) % 8 == 0) b.acc += touch(b.cpu, rmap_head_addr(g, level), false, 64);
            if (rmap_count(g, level) == 0) continue;
            for (;;) {  // restart: for_each_rmap_spte
                Tree* huge = nullptr;
                if (direct_ && is_leaf(entry(*direct_, level, g))) huge = direct_.get();
                for (auto& t : nested_)
                    if (!huge && is_leaf(entry(*t, level, g))) huge = t.get();
                if (!huge) break;
                const bool low = split_desc_.nobjs() < kSplitDescCacheMin || split_header_.nobjs() < 1 ||
                                 split_page_.nobjs() < 1;
                if (low || need_resched(b)) {  // need_topup_split_caches_or_resched
                    sim_.counters().add(mc_->split_drops);
                    if (low) sim_.counters().add(mc_->split_drops_topup);
                    const bool resched = b.clock.need_resched(sim_.now() + b.acc);
                    co_await unlock(b);
                    b.acc += kt_.lock_yield;  // cond_resched
                    co_await settle(b);
                    if (resched) b.clock.start(sim_.now());
                    b.acc += topup_split_caches();
                    co_await lock(b, site_split_);
                    sim_.counters().add(mc_->split_restarts);  // -EAGAIN
                    continue;
                }
                co_await split_huge_page(b, *huge, level, g);
            }
        }
    }
    split_cache_gauges();
}

// walk_slot_rmaps (v6.9 mmu.c, slot_rmap_walk_*): every rmap head of the slot from min_level to
// max_level, by lines of 8 heads (rmap_head_step each, the line once), turning the accumulated work
// into time every kSettleQuantum and yielding when need_resched() (cond_resched_rwlock_write; with
// flush_on_yield the pending `flush` first). fn(level, gfn, n) for every head holding n > 0 SPTEs;
// it sets `flush` when an SPTE changed.
template <class Fn>
Task<void> X86ShadowMmu::walk_slot_rmaps(Bulk& b, Slot& s, int min_level, int max_level, bool flush_on_yield,
                                         bool& flush, Fn fn) {
    const Gfn end = s.base + s.npages;
    for (int level = min_level; level <= max_level; ++level) {
        const std::uint64_t step = pages_at(level);
        for (Gfn g = round_gfn(s.base, level); g < end; g += step * 8) {
            if (b.acc >= kSettleQuantum) co_await settle(b);
            if (need_resched(b)) {
                co_await cond_resched(b, flush_on_yield && flush);
                if (flush_on_yield) flush = false;
            }
            b.acc += k_.rmap_head_step * 8 + touch(b.cpu, rmap_head_addr(g, level), false, 64);
            for (Gfn h = g; h < g + step * 8 && h < end; h += step)
                if (const std::uint32_t n = rmap_size(h, level)) fn(level, h, n);
        }
    }
}

// kvm_mmu_slot_remove_write_access on the rmaps (slot_rmap_write_protect, from min_level: 4K, or
// 2M with PML): every rmap head of the slot is visited; every writable SPTE in it is
// write-protected (MMU-writable stays, so the fast path can restore it). Yields with a flush when
// needed, and flushes at the end if anything changed or `pending` (an earlier walk's change).
Task<void> X86ShadowMmu::remove_write_access(Bulk& b, Slot& s, int min_level, bool pending) {
    bool flush = false;
    auto protect = [&](Tree& t, int level, Gfn g) {
        std::uint8_t& e = entry(t, level, g);
        if (!is_leaf(e) || !(e & spte::W)) return;
        e = static_cast<std::uint8_t>(e & ~spte::W);
        b.acc += touch(b.cpu, entry_addr(t, level, g), true) + kt_.spte_update;
        sim_.counters().add(mc_->wrprot);
        flush = true;
    };
    co_await walk_slot_rmaps(b, s, min_level, max_rmap_level(), true, flush, [&](int level, Gfn h, std::uint32_t) {
        if (direct_) protect(*direct_, level, h);
        for (auto& t : nested_) protect(*t, level, h);
    });
    // The SPTEs of SPs kvm_mmu_track_write unlinked are still in the rmaps: protected too.
    for (auto& [key, u] : unlinked_) {
        auto protect_aside = [&](std::uint8_t& e, Gfn g) {
            if (g < s.base || g >= s.base + s.npages || !is_leaf(e) || !(e & spte::W)) return;
            e = static_cast<std::uint8_t>(e & ~spte::W);
            b.acc += kt_.spte_update;
            sim_.counters().add(mc_->wrprot);
            flush = true;
        };
        if (min_level == 1)
            for (std::size_t k = 0; k < u.pte.size(); ++k) protect_aside(u.pte[k], u.base + k);
        for (std::size_t k = 0; k < u.pde.size(); ++k) protect_aside(u.pde[k], u.base + k * 512);
    }
    if (flush || pending) b.acc += tlb_.flush();
}

// kvm_mmu_slot_leaf_clear_dirty's rmap half (v6.9; host feature pml), under mmu_lock for write:
// walk_slot_rmaps_4k(__rmap_clear_dirty), without a flush on yield. Every SPTE on a 4K rmap:
// the direct tree's has its Dirty bit cleared (spte_clear_dirty, when set), a nested tree's is
// write-protected (spte_wrprot_for_clear_dirty: its SP is A/D-disabled under PML), as are those
// of SPs kvm_mmu_track_write unlinked. Returns whether an SPTE changed (the caller flushes).
Task<bool> X86ShadowMmu::leaf_clear_dirty(Bulk& b, Slot& s) {
    bool changed = false;
    for (Gfn g = s.base; g < s.base + s.npages; ++g) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        if (need_resched(b)) co_await cond_resched(b, false);
        changed |= rmap_write_protect(b, g, 1, false, true);
    }
    co_return changed;
}

// Before v5.12 (commit b6e16ae5d99f; knob pml_slot_set_dirty): disabling dirty logging with PML
// set the Dirty bit of every SPTE that has A/D bits again (vmx_slot_disable_log_dirty ->
// kvm_mmu_slot_set_dirty: slot_handle_all_level(__rmap_set_dirty) under mmu_lock), then a flush if
// any changed. Every rmap head of every level is visited; the direct tree's SPTEs with the bit
// clear are written.
Task<void> X86ShadowMmu::slot_set_dirty(Bulk& b, Slot& s) {
    bool flush = false;
    co_await walk_slot_rmaps(b, s, 1, max_rmap_level(), false, flush, [&](int level, Gfn h, std::uint32_t n) {
        b.acc += k_.rmap_op * n;  // for_each_rmap_spte
        if (!direct_) return;
        std::uint8_t& e = entry(*direct_, level, h);
        if (!is_leaf(e)) return;
        // spte_set_dirty: mmu_spte_update stores it; a flush if D was clear.
        b.acc += touch(b.cpu, entry_addr(*direct_, level, h), true) + kt_.spte_update;
        if (!(e & kDirtyClear)) return;
        e = static_cast<std::uint8_t>(e & ~kDirtyClear);
        sim_.counters().add(dirty_set_id_);
        flush = true;
    });
    if (flush) b.acc += tlb_.flush();  // kvm_arch_flush_remote_tlbs_memslot
}

// ---------------------------------------------------------------------------------------------
// PML (v6.9 arch/x86/kvm/vmx/vmx.c; the TDP MMU off: the direct tree's SPTEs)

bool X86ShadowMmu::pml_log(std::uint32_t vcpu, std::uint8_t& e, int level, Gfn gfn) const {
    if (!pml_log_.log(vcpu, gfn)) return false;  // the log is full: a VM exit before the write
    e = static_cast<std::uint8_t>(e & ~kDirtyClear);
    // The page walker's locked update of the SPTE: its line comes to the vCPU's CPU (hits run in
    // time order with PML: fault_lookahead() is zero).
    pml_log_.assist(vcpu, kt_.ept_dirty_assist +
                              cache_.touch(pml_log_.cpu(vcpu), entry_addr(*direct_, level, round_gfn(gfn, level)), 8, true));
    return true;
}

// Is a write to gfn from L1, which did not hit, a PML-full exit (a writable direct-tree leaf with
// D clear and a full buffer) rather than an EPT violation?
bool X86ShadowMmu::pml_full_exit(std::uint32_t vcpu, Gfn gfn) const {
    if (!pml_log_.full(vcpu) || gfn - span_base_ >= span_) return false;
    const Tree& t = *direct_;
    const std::uint64_t i = gfn - span_base_;
    for (const std::uint8_t e : {t.pte[i], t.pde[i >> 9], t.pdpte[i >> 18]})
        if (is_leaf(e)) return (e & spte::W) && (e & kDirtyClear);
    return false;
}

// vmx_flush_pml_buffer: kvm_vcpu_mark_page_dirty for every logged GPA.
Time X86ShadowMmu::pml_flush(std::uint32_t vcpu, std::uint32_t cpu) {
    return pml_log_.flush(vcpu, kt_.pml_flush_entry, [&](Gfn g) {
        Slot* s = slot_of(g);
        return s ? mark_page_dirty(*s, g, cpu) : Time::zero();
    });
}

// kvm_arch_sync_dirty_log before KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG reads the bitmap: every
// vCPU is kicked and its VM exit flushes its buffer; the model flushes them at once, from the
// caller's CPU and in its time (as x86_tdp does).
void X86ShadowMmu::sync_dirty_log(Bulk& b) {
    for (std::uint32_t i = 0; i < pml_log_.vcpus(); ++i) b.acc += pml_flush(i, b.cpu);
}

// KVM_SET_USER_MEMORY_REGION adding KVM_MEM_LOG_DIRTY_PAGES, then kvm_mmu_slot_apply_flags.
// With the TDP MMU the embedded model does the memslot update and its own split and
// write-protection first; the shadow MMU's part follows (the kernel splits the rmaps first).
Task<void> X86ShadowMmu::dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot, vm::DirtyLogOptions opts) {
    Slot& s = slot_by_id(slot);
    vm::Memslot& m = vm_.memslots[s.index];
    if (m.dirty_logging) co_return;
    if (tdp_) {
        co_await tdp_->dirty_log_enable(cpu, slot, opts);
    } else {
        co_await sim_.delay(kt_.memslot_update);
        m.dirty_logging = true;
        pml_log_.slot_logging(true);  // kvm_mmu_update_cpu_dirty_logging
    }
    // kvm_alloc_dirty_bitmap, all set for KVM_DIRTY_LOG_INITIALLY_SET. With the TDP MMU on the
    // memslot's bitmap is the embedded model's: this one only holds what nested faults dirty.
    s.manual_protect = opts.manual_protect_initially_set;
    const bool all_set = s.manual_protect && !tdp_;
    s.bitmap.assign((s.npages + 63) / 64, all_set ? ~std::uint64_t{0} : 0);
    if (all_set && (s.npages % 64)) s.bitmap.back() = (std::uint64_t{1} << (s.npages % 64)) - 1;
    if (opts.manual_protect_initially_set || !rmaps_) co_return;
    Bulk b = make_bulk(cpu);
    engine::LockGuard slots = co_await slots_lock_.lock(site_memslot_);
    // kvm_mmu_slot_try_split_huge_pages: in v6.9 the shadow MMU splits (nested MMUs' huge pages)
    // only when the TDP MMU is on; with it off, as David Matlack's 2022 proposal did.
    if (cfg_.eager_page_split) {
        co_await lock(b, site_split_);
        co_await try_split_huge_pages(b, s, s.base, s.base + s.npages);
        co_await unlock(b);
    }
    bool changed = false;
    if (pml_) {  // kvm_x86_ops.cpu_dirty_log_size: Dirty bits at 4K, write protection above
        co_await lock(b, sim_.site("kvm_mmu_slot_leaf_clear_dirty"));
        changed = co_await leaf_clear_dirty(b, s);
        co_await unlock(b);
    }
    co_await lock(b, site_wrprot_);
    co_await remove_write_access(b, s, pml_ ? 2 : 1, changed);
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_zap_collapsible_sptes' rmap half (v6.9 kvm_rmap_zap_collapsible_sptes), under mmu_lock
// for write: walk_slot_rmaps over the slot's 4K and 2M rmaps (KVM_MAX_HUGEPAGE_LEVEL - 1), with
// flush_on_yield. For every SPTE on a head, kvm_mmu_zap_collapsible_spte: sptep_to_sp (the SP's
// header line) and, for a direct SP, kvm_mmu_max_mapping_level(sp->gfn) (`max_mapping_level`:
// lpage_info and host_pfn_mapping_level's walk of the host page tables, whose lines are not
// modelled); an SP whose level is below that loses the SPTE (kvm_zap_one_rmap_spte), the flush
// left for the next yield or the end (kvm_arch_flush_remote_tlbs_memslot: without Hyper-V's
// ranged flush, kvm_available_flush_tlb_with_range() is false). The next fault maps the huge page
// over the emptied table. The nested trees' SPTEs are visited and left alone (see
// docs/models/x86_shadow.md).
Task<void> X86ShadowMmu::zap_collapsible_sptes(Bulk& b, Slot& s) {
    bool flush = false;
    std::optional<engine::CounterId> zapped;
    co_await walk_slot_rmaps(b, s, 1, 2, true, flush, [&](int level, Gfn h, std::uint32_t n) {
        b.acc += k_.rmap_op * n;  // for_each_rmap_spte
        for (auto& t : nested_)
            if (is_leaf(entry(*t, level, h))) b.acc += touch(b.cpu, sps_[child(*t, level + 1, h)].header, false);
        if (!direct_ || !is_leaf(entry(*direct_, level, h))) return;
        Tree& t = *direct_;
        const Gfn sp_gfn = round_gfn(h, level + 1);
        b.acc += touch(b.cpu, sps_[child(t, level + 1, h)].header, false) + k_.max_mapping_level;
        if (max_level(s, sp_gfn, 4 - host_->mapping_level(sp_gfn)) <= level) return;
        b.acc += touch(b.cpu, entry_addr(t, level, h), true) + kt_.spte_update + rmap_remove(b.cpu, h, level);
        entry(t, level, h) = 0;
        stats_.update_page_stats(static_cast<vm::PageLevel>(level), -1);
        if (!zapped) zapped = sim_.counters().id("kvm_mmu_zap_collapsible_spte");
        sim_.counters().add(*zapped);
        flush = true;
    });
    if (flush) b.acc += tlb_.flush();
}

X86ShadowMmu::DirtyLogCounters& X86ShadowMmu::dirty_log_counters() {
    if (!dlc_) dlc_ = std::make_unique<DirtyLogCounters>(sim_.counters());
    return *dlc_;
}

// rmap_write_protect (v6.9; __rmap_write_protect in v5.11) on gfn's rmap at `level`:
// spte_write_protect on every SPTE in it (the direct tree's, the nested trees', and those of SPs
// kvm_mmu_track_write unlinked), clearing Writable and, with pt_protect, MMU-writable too (so
// fast_page_fault cannot undo it). Each head's line is loaded once per run of heads in it.
// Returns whether an SPTE changed.
bool X86ShadowMmu::rmap_write_protect(Bulk& b, Gfn gfn, int level, bool pt_protect, bool clear_dirty) {
    b.acc += k_.rmap_head_step;  // gfn_to_rmap, rmap_get_first
    const std::uint64_t line = rmap_head_addr(gfn, level) >> 6;
    if (line != b.last_line) {
        b.acc += touch(b.cpu, line << 6, false, 64);
        b.last_line = line;
    }
    if (rmap_size(gfn, level) == 0) return false;
    const auto clear = static_cast<std::uint8_t>(pt_protect ? (spte::W | spte::MW) : spte::W);
    bool changed = false;
    // spte_write_protect: nothing to do unless Writable (or MMU-writable with pt_protect) is set;
    // mmu_spte_update writes the SPTE (a writable, dirtied SPTE has no volatile bits).
    auto protect = [&](std::uint8_t& e, const std::uint64_t* addr) {
        if (!is_leaf(e) || !(e & clear)) return;
        e = static_cast<std::uint8_t>(e & ~clear);
        b.acc += (addr ? touch(b.cpu, *addr, true) : Time::zero()) + kt_.spte_update;
        sim_.counters().add(mc_->wrprot);
        changed = true;
    };
    const Gfn g = round_gfn(gfn, level);
    if (direct_ && clear_dirty) {
        // __rmap_clear_dirty -> spte_clear_dirty: the direct tree's SPTEs have A/D bits;
        // mmu_spte_update stores the SPTE whether or not D was set, and asks for a flush if it was.
        std::uint8_t& e = entry(*direct_, level, g);
        if (is_leaf(e)) {
            b.acc += touch(b.cpu, entry_addr(*direct_, level, g), true) + kt_.spte_update;
            if (!(e & kDirtyClear)) {
                e = static_cast<std::uint8_t>(e | kDirtyClear);
                sim_.counters().add(dirty_cleared_id_);
                changed = true;
            }
        }
    } else if (direct_) {
        const std::uint64_t a = entry_addr(*direct_, level, g);
        protect(entry(*direct_, level, g), &a);
    }
    for (auto& t : nested_) {
        const std::uint64_t a = entry_addr(*t, level, g);
        protect(entry(*t, level, g), &a);
    }
    for (auto& [key, u] : unlinked_) {
        if (g < u.base) continue;
        if (level == 1 && g - u.base < u.pte.size()) protect(u.pte[g - u.base], nullptr);
        if (level == 2 && (g - u.base) / 512 < u.pde.size()) protect(u.pde[(g - u.base) / 512], nullptr);
    }
    return changed;
}

// kvm_age_rmap / kvm_test_age_rmap (v6.9 mmu.c) on the rmap of gfn at level: every SPTE on it
// (the direct tree's and the nested trees', as rmap_write_protect finds them) whose Accessed bit
// is set has it cleared (clear_bit on the SPTE: atomic, the A/D bits are volatile) or, for
// test_young, is reported. With age_lock = "lockless" (v6.14, Sean Christopherson's rmap walk in
// James Houghton's v8 series) the rmap head is locked with a cmpxchg of its bit 0
// (kvm_rmap_lock_readonly) instead of mmu_lock. Returns whether an SPTE was young.
bool X86ShadowMmu::age_rmap(Bulk& b, Gfn gfn, int level, bool clear) {
    b.acc += k_.rmap_head_step;
    const std::uint64_t head = rmap_head_addr(gfn, level);
    if (age_lock_ == AgeLock::Lockless) {
        b.acc += touch(b.cpu, head, true) + kt_.spte_cmpxchg;  // kvm_rmap_lock_readonly
        b.last_line = head >> 6;
    } else if ((head >> 6) != b.last_line) {
        b.acc += touch(b.cpu, head, false, 64);
        b.last_line = head >> 6;
    }
    bool young = false;
    if (rmap_size(gfn, level) != 0) {
        auto visit = [&](std::uint8_t& e, std::uint64_t addr) {
            if (!is_leaf(e)) return;
            b.acc += k_.rmap_op + touch(b.cpu, addr, false);
            if (e & kAged) return;  // is_accessed_spte() false
            young = true;
            if (!clear) return;
            e = static_cast<std::uint8_t>(e | kAged);
            b.acc += touch(b.cpu, addr, true) + kt_.spte_cmpxchg;
            sim_.counters().add(sim_.counters().id("sptes_aged"));
        };
        const Gfn g = round_gfn(gfn, level);
        if (direct_) visit(entry(*direct_, level, g), entry_addr(*direct_, level, g));
        for (auto& t : nested_) visit(entry(*t, level, g), entry_addr(*t, level, g));
    }
    if (age_lock_ == AgeLock::Lockless) b.acc += kt_.spte_update;  // kvm_rmap_unlock_readonly
    return young;
}

// The host's aging of [start, end), per host page: the caller's work and the MMU notifier, then
// kvm_age_gfn / kvm_test_age_gfn (v6.9): with the rmaps allocated (TDP MMU off, or a shadow root
// exists), kvm_handle_gfn_range over the 4K, 2M and 1G rmaps (for_each_slot_rmap_range,
// PG_LEVEL_4K..KVM_MAX_HUGEPAGE_LEVEL); the TDP MMU's half goes to the
// embedded model (which pays its own notifier walk, and takes the shared mmu_lock itself). Under
// mmu_lock for write (v6.9) or, lockless (v6.14), with per-rmap locks.
Task<std::uint64_t> X86ShadowMmu::age_range(const vm::CpuContext& cpu, const vm::AgeRequest& r) {
    std::uint64_t young_n = 0;
    if (tdp_) young_n = co_await tdp_->age_range(cpu, r);
    if (!rmaps_) co_return young_n;
    const bool locked = age_lock_ == AgeLock::Write;
    Bulk b = make_bulk(cpu);
    young_n += co_await age_hva_range(
        sim_, b, r, tdp_ ? Time::zero() : ak_.caller(r.via) + ak_.mmu_notifier_young,  // else paid by the TDP half
        [this](Gfn g) {
            const std::uint64_t host_pages = pages_at(4 - host_->mapping_level(g));
            return (g / host_pages + 1) * host_pages;
        },
        [&](Gfn g, Gfn e, engine::Site site) -> Task<std::optional<bool>> {
            if (!slot_of(g) || g < span_base_ || g >= span_base_ + span_) co_return std::nullopt;
            if (locked) co_await lock(b, site);
            bool young = false;
            for (Gfn x = g; x < e; ++x) young |= age_rmap(b, x, 1, r.clear);
            for (Gfn x = round_gfn(g, 2); x < e; x += 512) young |= age_rmap(b, x, 2, r.clear);
            if (has_1g_)
                for (Gfn x = round_gfn(g, 3); x < e; x += Gfn{1} << 18) young |= age_rmap(b, x, 3, r.clear);
            else
                b.acc += k_.rmap_head_step;  // the 1G rmap head (always empty)
            if (locked) co_await unlock(b);
            co_return young;
        },
        [&] { return settle(b); });
    co_return young_n;
}

// kvm_arch_mmu_enable_log_dirty_pt_masked without PML (v6.9), mmu_lock held for write: for
// initially-all-set, the huge mappings around the mask's first and last page are write-protected
// (kvm_mmu_slot_gfn_write_protect from PG_LEVEL_2M: the 2M rmap, then the 1G one; the caller has
// split them first with eager_page_split, kvm_mmu_try_split_huge_pages); then
// kvm_mmu_write_protect_pt_masked: rmap_write_protect(pt_protect false) on the 4K rmap of every
// page of the mask.
void X86ShadowMmu::enable_log_dirty_pt_masked(Bulk& b, Slot& s, std::uint64_t offset, std::uint64_t mask) {
    DirtyLogCounters& dc = dirty_log_counters();
    sim_.counters().add(dc.masked);
    if (s.manual_protect) {
        const Gfn start = s.base + offset + static_cast<unsigned>(std::countr_zero(mask));
        const Gfn end = s.base + offset + 63 - static_cast<unsigned>(std::countl_zero(mask));
        auto gfn_write_protect = [&](Gfn g) {
            sim_.counters().add(dc.huge_wrprot);
            rmap_write_protect(b, g, 2, true);
            if (has_1g_) rmap_write_protect(b, g, 3, true);
            else b.acc += k_.rmap_head_step;  // the 1G rmap head (always empty)
        };
        gfn_write_protect(start);
        if (((start + 511) & ~Gfn{511}) != ((end + 511) & ~Gfn{511})) gfn_write_protect(end);
    }
    // kvm_mmu_clear_dirty_pt_masked with PML (__rmap_clear_dirty), else
    // kvm_mmu_write_protect_pt_masked.
    for (; mask; mask &= mask - 1)
        rmap_write_protect(b, s.base + offset + static_cast<unsigned>(std::countr_zero(mask)), 1, false, pml_);
}

// KVM_GET_DIRTY_LOG: kvm_get_dirty_log_protect (virt/kvm/kvm_main.c, the same in v5.11 and v6.9).
// With manual protect the bitmap is only copied out (KVM_CLEAR_DIRTY_LOG protects). Otherwise,
// under mmu_lock for write (the loop has no yield point), every word of the bitmap is read; a
// word with bits set is taken (xchg) and its pages write-protected; after the unlock, one
// kvm_flush_remote_tlbs_memslot if any word had bits set.
// With the TDP MMU on, the embedded model does all this for the memslot's bitmap first; the
// shadow MMU's rmaps (nested roots) are then protected for the pages nested faults dirtied, in a
// section of their own (the kernel does both in one pass over one bitmap: see the docs).
Task<std::uint64_t> X86ShadowMmu::dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) {
    Slot& s = slot_by_id(slot);
    if (!vm_.memslots[s.index].dirty_logging) co_return 0;  // -ENOENT: no dirty bitmap
    std::uint64_t harvested = 0;
    if (tdp_) harvested += co_await tdp_->dirty_log_get(cpu, slot);
    if (!rmaps_) co_return harvested;  // kvm_memslots_have_rmaps() false
    harvested += co_await get_dirty_log_protect(cpu, s);
    co_return harvested;
}

Task<std::uint64_t> X86ShadowMmu::get_dirty_log_protect(const vm::CpuContext& cpu, Slot& s) {
    if (s.bitmap.empty()) co_return 0;
    // With the TDP MMU on, its walk of the memslot's bitmap paid for the words.
    const bool words = !tdp_;
    const bool any = std::any_of(s.bitmap.begin(), s.bitmap.end(), [](std::uint64_t w) { return w != 0; });
    if (!words && (!any || s.manual_protect)) co_return 0;
    DirtyLogCounters& dc = dirty_log_counters();
    Bulk b = make_bulk(cpu);
    if (pml_log_.on()) sync_dirty_log(b);
    std::uint64_t harvested = 0;
    if (words) sim_.counters().add(dc.words, s.bitmap.size());
    if (s.manual_protect) {
        harvested = co_await copy_dirty_bitmap(sim_, cache_, b, s, kt_.dirty_bitmap_word);
        sim_.counters().add(dc.harvested, harvested);
        co_return harvested;
    }
    bool flush = false;
    co_await lock(b, sim_.site("kvm_get_dirty_log_protect"));  // KVM_MMU_LOCK
    for (std::size_t i = 0; i < s.bitmap.size(); ++i) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        if (words) read_dirty_word(cache_, b, s, i, kt_.dirty_bitmap_word);
        const std::uint64_t mask = take_dirty_word(cache_, b, s, i);
        if (!mask) continue;
        flush = true;
        harvested += static_cast<std::uint64_t>(std::popcount(mask));
        enable_log_dirty_pt_masked(b, s, i * 64, mask);
    }
    co_await unlock(b);
    if (flush) b.acc += tlb_.flush();  // kvm_flush_remote_tlbs_memslot
    co_await settle(b);
    sim_.counters().add(dc.harvested, harvested);
    co_return harvested;
}

// KVM_CLEAR_DIRTY_LOG: kvm_clear_dirty_log_protect for every page of [first, first + npages)
// (first is a gfn, rounded down to a multiple of 64 pages of the slot), with manual protect only
// (-EINVAL otherwise): under mmu_lock for write, each word's bits in the range are cleared
// (atomic_long_fetch_andnot) and the pages that were set write-protected; one flush after the
// unlock if any were. With the TDP MMU on, as for dirty_log_get.
Task<void> X86ShadowMmu::dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, Gfn first,
                                         std::uint64_t npages) {
    Slot& s = slot_by_id(slot);
    if (tdp_) co_await tdp_->dirty_log_clear(cpu, slot, first, npages);
    if (!rmaps_) co_return;
    co_await clear_dirty_log_protect(cpu, s, first, npages);
}

Task<void> X86ShadowMmu::clear_dirty_log_protect(const vm::CpuContext& cpu, Slot& s, Gfn first, std::uint64_t npages) {
    if (!vm_.memslots[s.index].dirty_logging || !s.manual_protect || s.bitmap.empty()) co_return;
    if (first < s.base || first - s.base >= s.npages || npages == 0) co_return;
    const std::uint64_t off0 = (first - s.base) & ~std::uint64_t{63};
    const std::uint64_t last = std::min(first - s.base + npages, s.npages);  // exclusive, slot-relative
    const bool words = !tdp_;
    if (!words && std::all_of(s.bitmap.begin() + static_cast<std::ptrdiff_t>(off0 / 64),
                              s.bitmap.begin() + static_cast<std::ptrdiff_t>((last + 63) / 64),
                              [](std::uint64_t w) { return w == 0; }))
        co_return;
    DirtyLogCounters& dc = dirty_log_counters();
    Bulk b = make_bulk(cpu);
    if (pml_log_.on()) sync_dirty_log(b);
    bool flush = false;
    co_await lock(b, sim_.site("kvm_clear_dirty_log_protect"));
    for (std::uint64_t off = off0; off < last; off += 64) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        const std::size_t i = off / 64;
        if (words) {
            sim_.counters().add(dc.words);
            b.acc += kt_.dirty_bitmap_word;
            if (i % 8 == 0) b.acc += touch(b.cpu, s.bitmap_addr + i * 8, false);
        }
        const std::uint64_t lo = std::max(off, first - s.base) - off;
        const std::uint64_t hi = std::min(off + 64, last) - off;
        const std::uint64_t user =
            (hi == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << hi) - 1) & ~((std::uint64_t{1} << lo) - 1);
        const std::uint64_t mask = user & s.bitmap[i];  // atomic_long_fetch_andnot
        if (!mask) continue;
        s.bitmap[i] &= ~user;
        b.acc += touch(b.cpu, s.bitmap_addr + i * 8, true);
        flush = true;
        if (s.manual_protect && cfg_.eager_page_split) {  // kvm_mmu_try_split_huge_pages(.., PG_LEVEL_4K)
            const Gfn first_set = s.base + off + static_cast<unsigned>(std::countr_zero(mask));
            const Gfn last_set = s.base + off + 63 - static_cast<unsigned>(std::countl_zero(mask));
            co_await try_split_huge_pages(b, s, first_set, last_set + 1);
        }
        enable_log_dirty_pt_masked(b, s, off, mask);
    }
    co_await unlock(b);
    if (flush) b.acc += tlb_.flush();  // kvm_flush_remote_tlbs_memslot
    co_await settle(b);
}

// KVM_SET_USER_MEMORY_REGION removing KVM_MEM_LOG_DIRTY_PAGES; with split_cache_free =
// flags_change (the v6 patch) the split caches are freed here.
Task<void> X86ShadowMmu::dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) {
    Slot& s = slot_by_id(slot);
    vm::Memslot& m = vm_.memslots[s.index];
    if (!m.dirty_logging) co_return;
    if (tdp_) {
        co_await tdp_->dirty_log_disable(cpu, slot);
    } else {
        co_await sim_.delay(kt_.memslot_update);
        m.dirty_logging = false;
        pml_log_.slot_logging(false);
    }
    s.bitmap.clear();
    if (!rmaps_ && cfg_.split_cache_free != SplitCacheFree::FlagsChange) co_return;
    // The ioctl holds slots_lock throughout (the model takes it for the shadow MMU's part).
    engine::LockGuard slots = co_await slots_lock_.lock(site_memslot_);
    // kvm_mmu_slot_apply_flags -> kvm_mmu_zap_collapsible_sptes: the rmap half when the rmaps
    // exist. v6.9 runs it before the TDP MMU's half; with the TDP MMU on the model runs it after
    // (the embedded model's part includes the memslot update).
    if (rmaps_) {
        if (!site_collapsible_) site_collapsible_ = sim_.site("kvm_mmu_zap_collapsible_sptes");
        Bulk b = make_bulk(cpu);
        co_await lock(b, *site_collapsible_);
        co_await zap_collapsible_sptes(b, s);
        co_await unlock(b);
        if (pml_ && cfg_.pml_slot_set_dirty) {
            co_await lock(b, sim_.site("kvm_mmu_slot_set_dirty"));
            co_await slot_set_dirty(b, s);
            co_await unlock(b);
        }
        co_await settle(b);
    }
    if (cfg_.split_cache_free == SplitCacheFree::FlagsChange) {
        free_split_caches();
        co_await sim_.delay(kt_.mmu_cache_alloc_obj);  // kmem_cache_free / free_page per object, batched
    }
}

// ---------------------------------------------------------------------------------------------
// MMU notifiers (the host's COW breaks and THP splits, from models/host)

// kvm_mmu_notifier_invalidate_range_start: with tdp_mmu on, the TDP MMU's part (its own
// invalidation state, under the shared mmu_lock); then, under mmu_lock for write,
// kvm_mmu_invalidate_begin and range_add and kvm_unmap_gfn_range's rmap half
// (kvm_handle_gfn_range(kvm_zap_rmap)): the direct tree's leaves in the range are dropped
// (pte_list_remove from their rmaps), then one flush. The nested trees are left alone (their
// stale read-only leaf is replaced by the next write fault; see docs/models/x86_shadow.md).
Task<void> X86ShadowMmu::invalidate_range_start(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    if (tdp_) co_await tdp_->invalidate_range_start(cpu, start, end);
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_mn_start_);
    inv_.begin();
    inv_.range_add(start, end);
    bool flush = false;
    if (direct_) {
        Tree& t = *direct_;
        const Gfn a = std::max(start, span_base_), z = std::min(end, span_base_ + span_);
        for (Gfn g = a; g < z; ++g) {
            if (rmaps_) b.acc += k_.rmap_head_step * 2;  // the 4K and 2M rmap heads of g
            if ((g == a || (g & (pages_at(3) - 1)) == 0) && is_leaf(entry(t, 3, g))) {
                b.acc += drop_large_spte(b.cpu, t, 3, g, false);
                sim_.counters().add(mc_->mn_zapped);
                flush = true;
            }
            if ((g == a || (g & 511) == 0) && is_leaf(entry(t, 2, g))) {
                b.acc += drop_large_spte(b.cpu, t, 2, g, false);
                sim_.counters().add(mc_->mn_zapped);
                flush = true;
            }
            std::uint8_t& e = entry(t, 1, g);
            if (!is_leaf(e)) continue;
            b.acc += touch(b.cpu, entry_addr(t, 1, g), true) + kt_.spte_update + rmap_remove(b.cpu, g, 1);
            e = 0;
            stats_.update_page_stats(vm::PageLevel::K4, -1);
            sim_.counters().add(mc_->mn_zapped);
            flush = true;
        }
    }
    if (flush) b.acc += tlb_.flush();
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_invalidate_range_end: kvm_mmu_invalidate_end under mmu_lock for write.
Task<void> X86ShadowMmu::invalidate_range_end(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_mn_end_);
    inv_.end(sim_.now());
    co_await unlock(b);
    co_await settle(b);
    if (tdp_) co_await tdp_->invalidate_range_end(cpu, start, end);
}

// kvm_mmu_notifier_change_pte: gone in v6.9 (see x86_tdp).
Task<void> X86ShadowMmu::change_pte(const vm::CpuContext& cpu, Gfn gfn) {
    (void)cpu;
    (void)gfn;
    co_return;
}

}  // namespace x86_shadow

// ---------------------------------------------------------------------------------------------
// Registration

vm::ModelInfo x86_shadow_model_info() {
    vm::ModelInfo info = x86_tdp_model_info();  // the TDP MMU's knobs apply to the embedded model
    info.name = "x86_shadow";
    info.summary =
        "x86 shadow MMU (mmu_page_hash, rmaps, direct and nested roots through the guest_mmu's prev_roots, "
        "unsync/sync and write tracking of L1's EPT pages) with the TDP MMU as a knob; seed 000 (child SP hash "
        "lookup, the lock at root allocation) and seed 001 (eager page splitting for nested MMUs)";
    info.kernel =
        "Linux v6.9: arch/x86/kvm/mmu/mmu.c, arch/x86/kvm/mmu/paging_tmpl.h, arch/x86/kvm/mmu/mmu_internal.h, "
        "arch/x86/kvm/x86.c (kvm_mmu_slot_apply_flags); seed 000 from Peter Feiner's 'kvm: x86 mmu: avoid "
        "mmu_page_hash lookup for direct_map-only VM' (v5.7, 2020-05-08) and Sean Christopherson's review; seed "
        "001 from David Matlack's '[PATCH v6 22/22] KVM: x86/mmu: Extend Eager Page Splitting to nested MMUs' "
        "(2022-05-16) and Sean Christopherson's review";
    info.knobs.push_back(bool_knob(
        "tdp_mmu", false,
        "the kvm.tdp_mmu module parameter: false = the shadow MMU handles L1 (direct) faults and dirty logging "
        "through rmaps; true = L1 faults and the direct tree's bulk work go to the TDP MMU (x86_tdp) and the "
        "shadow MMU handles only nested (L2) roots and their rmaps"));
    info.knobs.push_back(choice_knob(
        "child_sp_lookup", "always", {"always", "skip_bool", "skip_count"},
        "seed 000, kvm_mmu_get_child_sp under a non-present or huge SPTE: 'always' = walk the mmu_page_hash bucket "
        "(v6.9, and before the patch); 'skip_bool' = allocate without a lookup until the first indirect (nested) "
        "root sets a one-way bool (the patch's shadow_page_may_have_multiple_parents); 'skip_count' = skip while a "
        "count of indirect MMUs is zero, so lookups stop again once nested guests go away (the review)"));
    info.knobs.push_back(choice_knob(
        "root_alloc_lock", "first", {"every", "first"},
        "seed 000, how mmu_alloc_shadow_roots updates the bool/count: 'every' = take and release mmu_lock (write) "
        "around the update on every shadow root allocation (every nested VM-entry that finds no usable root in "
        "the guest_mmu's current root and prev_roots), as the patch did; 'first' = only when the state changes "
        "from none (bool false / count 0 -> 1), as the review asked. The count goes down when kvm_mmu_free_roots "
        "puts an indirect root, under the mmu_lock it holds"));
    info.knobs.push_back(int_knob(
        "split_desc_cache_capacity", x86_shadow::kSplitDescCacheMin + kKvmArchNrObjsPerMemoryCache,
        x86_shadow::kSplitDescCacheMin, 1 << 20,
        "seed 001: the capacity topup_split_caches fills split_desc_cache to when it holds fewer than "
        "SPLIT_DESC_CACHE_MIN_NR_OBJECTS = 513: 513 = min (the v6 patch), 1026 = 2*min (the review's suggestion, as first merged), "
        "553 = min + 40 (the follow-up that buffers for a few aliased gfns, v6.0+)"));
    info.knobs.push_back(int_knob(
        "alias_percent", 0, 0, 100,
        "seed 001: percent of L1 gfns already mapped by another L2 gfn or nested root when the rmaps are created "
        "(a deterministic pseudo-random choice per gfn); splitting a huge page consumes a pte_list_desc for each "
        "such gfn"));
    info.knobs.push_back(choice_knob(
        "split_cache_free", "vm_destroy", {"flags_change", "vm_destroy"},
        "seed 001: when the split caches are freed: 'flags_change' = when dirty logging is disabled on a slot "
        "(the v6 patch; leaks them if the VM is destroyed first), 'vm_destroy' = only at VM destruction "
        "(kvm_mmu_uninit_vm, merged)"));
    // The TDP MMU's knobs that can never act here: x86_shadow lists no zap_gfn_range, invalidate or
    // SMM operation, and never reloads the embedded TDP MMU's root.
    const std::vector<std::pair<std::string, std::string>> inert = {
        {"zap_lock", "it selects the lock mode of kvm_zap_gfn_range, and x86_shadow has no zap_gfn_range operation"},
        {"fault_precheck",
         "it only matters while an MMU-notifier invalidation is in progress, and x86_shadow has no invalidate "
         "operation"},
        {"tdp_root_unload",
         "it changes what kvm_mmu_unload does to TDP MMU roots on SMM transitions, and x86_shadow has no SMM "
         "(no smm_enter/smm_exit) and never unloads the TDP MMU's root"},
        {"mmu_init",
         "seed 002's knob acts on kvm_init_mmu after SMM role changes, and x86_shadow has no SMM; its nested "
         "MMU (guest_mmu, kvm_init_shadow_ept_mmu) is initialized once per vCPU"},
    };
    for (const auto& [name, why] : inert) {
        info.knobs.erase(std::remove_if(info.knobs.begin(), info.knobs.end(),
                                        [&name = name](const vm::KnobSpec& k) { return k.name == name; }),
                         info.knobs.end());
        info.inert_knobs.push_back(vm::InertKnob{name, why});
    }
    // The condition "tdp_mmu is true", with the reason it matters for the knob.
    const auto with_tdp = [](std::string why) { return vm::KnobSpec::AppliesWhen{"tdp_mmu", {true}, std::move(why)}; };
    const vm::KnobSpec::AppliesWhen with_eager{
        "eager_page_split", {true}, "the split caches are used only by eager page splitting"};
    for (auto& k : info.knobs) {
        if (k.name == "pml_slot_set_dirty") {
            k.meaning += "; the shadow MMU's rmaps likewise (__rmap_set_dirty on every rmap of the slot, the direct "
                         "tree's SPTEs; nested SPs are A/D-disabled under PML)";
        } else if (k.name == "age_lock") {
            k.meaning += "; the shadow MMU's rmap walk (kvm_age_rmap) likewise: under mmu_lock for write, or (v6.14) "
                         "with each rmap head locked by a cmpxchg (kvm_rmap_lock_readonly)";
        } else if (k.name == "eager_page_split") {
            k.meaning +=
                "; with tdp_mmu on it also splits the nested MMUs' huge pages (kvm_shadow_mmu_try_split_huge_pages, "
                "v5.19+). With tdp_mmu false it splits the direct (L1) huge pages through the rmaps (1G into 2M, "
                "then 2M into 4K), as David Matlack's '[PATCH 00/23] KVM: Extend Eager Page Splitting to the "
                "shadow MMU' (2022-02-03) proposed; that form was not merged (the merged series split only "
                "nested MMUs' pages, and only with the TDP MMU on), so the upstream kernel with tdp_mmu false "
                "behaves as false here: huge pages are dropped by the first write fault";
        } else if (k.name == "fault_lock") {
            k.applies_when.push_back(with_tdp("it is the mmu_lock mode of the TDP MMU's fault path; the shadow MMU's "
                                              "faults always take mmu_lock for write, and tdp_mmu false turns the TDP "
                                              "MMU off"));
        } else if (k.name == "huge_page_recovery") {
            k.applies_when.push_back(with_tdp("David Matlack's v6.13 series changed the TDP MMU's recovery "
                                              "(kvm_tdp_mmu_recover_huge_pages) only; the shadow MMU's "
                                              "kvm_rmap_zap_collapsible_sptes is as before"));
        } else if (k.name == "nx_huge_pages_recovery_ratio" || k.name == "nx_huge_pages_recovery_period_ms" ||
                   k.name == "nx_recovery_lock") {
            k.applies_when.push_back(with_tdp("NX huge pages and their recovery are modelled in the TDP MMU only; "
                                              "the shadow MMU's possible_nx_huge_pages list is not"));
        } else if (k.name == "fault_split" || k.name == "tdp_mmu_fast_page_fault") {
            k.applies_when.push_back(with_tdp("it changes the TDP MMU's fault path (kvm_tdp_mmu_map, fast_page_fault on "
                                              "TDP MMU roots); with tdp_mmu false the shadow MMU handles L1 faults"));
        } else if (k.name == "split_desc_cache_capacity" || k.name == "split_cache_free") {
            k.applies_when.push_back(with_eager);
        } else if (k.name == "alias_percent") {
            k.applies_when.push_back(with_tdp("the aliased rmap entries are laid down when the first shadow root "
                                              "allocates the rmaps, which happens only with the TDP MMU on; with "
                                              "tdp_mmu false the rmaps exist from the memslot's creation and nothing "
                                              "splits eagerly"));
        } else if (k.name == "root_alloc_lock") {
            k.applies_when.push_back({"child_sp_lookup", {std::string("skip_bool"), std::string("skip_count")},
                                      "the lock guards the indirect-MMU bool or count, which child_sp_lookup "
                                      "\"always\" (v6.9) does not keep"});
        }
    }
    info.costs = x86_shadow::Costs::all_names();
    info.cost_minimums = {{"zero_rate", host::Costs::kMinZeroRate}, {"uffd_copy_rate", host::Costs::kMinZeroRate}};
    info.features = host::Features::names();
    info.features.push_back("nx_huge_pages");  // read by the embedded TDP MMU (tdp_mmu true)
    info.features.push_back("pml");  // kvm_intel.pml: the direct tree's Dirty bits, or the embedded TDP MMU's
    info.operations = {vm::Operation::DirtyLogEnable, vm::Operation::DirtyLogGet,      vm::Operation::DirtyLogClear,
                       vm::Operation::DirtyLogDisable, vm::Operation::NestedStart,     vm::Operation::NestedStop,
                       vm::Operation::NestedEptpSwitch, vm::Operation::NestedEptWrite, vm::Operation::ClearYoung,
                       vm::Operation::TestYoung};
    info.create = [](vm::ModelEnv& env) -> std::unique_ptr<vm::MmuModel> {
        return std::make_unique<x86_shadow::X86ShadowMmu>(env);
    };
    return info;
}

void register_x86_shadow(vm::ModelRegistry& registry) { registry.add(x86_shadow_model_info()); }

}  // namespace kvmsim::models
