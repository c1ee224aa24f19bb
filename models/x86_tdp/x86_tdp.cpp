// x86 TDP MMU model: see x86_tdp.hpp for the kernel functions followed and
// docs/models/x86_tdp.md for the design, the costs and what is left out.
//
// Page-table state. The TDP page table is 4-level (PML4 -> PDPT -> PD -> PT). The model keeps one
// state byte per SPTE (spte:: bits) in flat arrays:
//   pml4_        one entry per 512 GiB of guest physical space that holds a memslot;
//   pdpte_ etc.  one Region per 1 GiB overlapping a memslot: its PDPTE, the 512 PDEs of its PD page
//                and the 262144 PTEs of its PT pages. A table entry also records the serial number
//                of the page it links (never reused: it stands for the page's identity in a cmpxchg)
//                and the page's synthetic host-physical address (reused LIFO: it is what the cache
//                model sees).
// Invariant: the entries of a page that is not linked are zero; a removed page is cleared at once.
// hits() is then: the PTE if present, else a 2M leaf PDE, else a 1G leaf PDPTE.
//
// Time. A fault snapshots the SPTEs it walks (touching each through the cache model), waits for
// the simulated time of the walk, then commits: every SPTE it changes must still hold the value it
// read (and every table it walked through must still be linked), else the cmpxchg "fails" and the
// fault returns RET_PF_RETRY. Bulk walkers (zap, write-protect, split, dirty-log harvesting)
// apply their changes as they iterate and let the accumulated time elapse every kSettleQuantum of
// work and before every lock drop.
#include "models/x86_tdp/x86_tdp.hpp"

#include <algorithm>
#include <optional>
#include <bit>
#include <map>
#include <stdexcept>

#include "models/common/bulk.hpp"
#include "models/common/costs.hpp"
#include "models/common/dirty_bitmap.hpp"
#include "models/common/knobs.hpp"
#include "models/common/slot.hpp"

namespace kvmsim::models {
namespace x86_tdp {

using engine::LockMode;
using engine::Task;
using engine::Time;
using vm::Gfn;

constexpr std::int64_t kUintMax = 4294967295;  // the kvm module parameters are uint

namespace {

// Simulation granularity of bulk walkers: accumulated work is turned into simulated time at least
// every kSettleQuantum, so a lock waiter arriving meanwhile is noticed at most this late. A
// property of the simulation, not of the host.
constexpr Time kSettleQuantum = Time::us(1);

constexpr int kRootLevel = 4;
constexpr std::uint64_t kNoLine = ~std::uint64_t{0};

enum Ret : int { RET_PF_FIXED, RET_PF_SPURIOUS, RET_PF_RETRY, RET_PF_EMULATE, RET_PF_INVALID };
// Not a kernel value: map_commit froze a huge SPTE (fault_split = "zap") and the caller must flush
// before map_zap_link goes on.
constexpr int kZapFlushPending = 100;

constexpr std::uint64_t pages_at(int level) { return std::uint64_t{1} << (9 * (level - 1)); }
constexpr Gfn round_gfn(Gfn gfn, int level) { return gfn & ~(pages_at(level) - 1); }
constexpr unsigned spte_index(Gfn gfn, int level) { return static_cast<unsigned>((gfn >> (9 * (level - 1))) & 511); }
constexpr bool is_present(std::uint8_t e) { return (e & spte::P) != 0; }
constexpr bool is_leaf(std::uint8_t e) { return (e & (spte::P | spte::LEAF)) == (spte::P | spte::LEAF); }
constexpr bool is_table(std::uint8_t e) { return (e & (spte::P | spte::LEAF)) == spte::P; }

int level_of(vm::PageLevel l) { return static_cast<int>(l); }
vm::PageLevel page_level(int l) { return static_cast<vm::PageLevel>(l); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Costs, knobs

const std::vector<std::string>& Costs::names() {
    static const std::vector<std::string> n = {
        "fault_entry",       "fault_exit",          "fast_pf_base",         "tdp_map_base",
        "tdp_walk_level",    "spte_cmpxchg",        "spte_update",          "tdp_iter_step",
        "split_spte_fill",   "mmu_cache_alloc_page", "mmu_cache_alloc_obj", "tlb_flush_base",
        "tlb_flush_per_vcpu",
        "sched_timeslice",   "lock_yield",          "dirty_bitmap_word",    "memslot_update",
        "tdp_root_lookup_step", "smm_transition", "pml_flush_entry",
        "ept_dirty_assist",
    };
    return n;
}

Costs Costs::from(const vm::CostProfile& p) {
    require_costs(p, names(), "x86_tdp");
    Costs c;
    c.fault_entry = p.time("fault_entry");
    c.fault_exit = p.time("fault_exit");
    c.fast_pf_base = p.time("fast_pf_base");
    c.tdp_map_base = p.time("tdp_map_base");
    c.tdp_walk_level = p.time("tdp_walk_level");
    c.spte_cmpxchg = p.time("spte_cmpxchg");
    c.spte_update = p.time("spte_update");
    c.tdp_iter_step = p.time("tdp_iter_step");
    c.split_spte_fill = p.time("split_spte_fill");
    c.mmu_cache_alloc_page = p.time("mmu_cache_alloc_page");
    c.mmu_cache_alloc_obj = p.time("mmu_cache_alloc_obj");
    c.tlb_flush_base = p.time("tlb_flush_base");
    c.tlb_flush_per_vcpu = p.time("tlb_flush_per_vcpu");
    c.sched_timeslice = p.time("sched_timeslice");
    c.lock_yield = p.time("lock_yield");
    c.dirty_bitmap_word = p.time("dirty_bitmap_word");
    c.memslot_update = p.time("memslot_update");
    c.tdp_root_lookup_step = p.time("tdp_root_lookup_step");
    c.smm_transition = p.time("smm_transition");
    c.pml_flush_entry = p.time("pml_flush_entry");
    c.ept_dirty_assist = p.time("ept_dirty_assist");
    c.has_tlb = p.has("tlb_entries_4k") && p.has("tlb_entries_2m") && p.has("tlb_entries_1g") && p.has("tlb_ways") &&
                p.has("tlb_walk_level");
    if (c.has_tlb) {
        const char* n[3] = {"tlb_entries_4k", "tlb_entries_2m", "tlb_entries_1g"};
        for (std::size_t i = 0; i < 3; ++i) c.tlb_entries[i] = static_cast<std::uint32_t>(p.number(n[i]));
        c.tlb_ways = static_cast<std::uint32_t>(p.number("tlb_ways"));
        c.tlb_walk_level = p.time("tlb_walk_level");
    }
    return c;
}

const std::vector<std::string>& Costs::optional_names() {
    static const std::vector<std::string> n = {"tlb_entries_4k", "tlb_entries_2m", "tlb_entries_1g", "tlb_ways",
                                               "tlb_walk_level"};
    return n;
}

Config Config::from(const vm::Knobs& knobs) {
    Config c;
    c.fault_lock_write = knob_choice(knobs, "fault_lock", "read", {"read", "write"}, "x86_tdp") == "write";
    const std::string z = knob_choice(knobs, "zap_lock", "write", {"write", "read", "drop_write_zap_read"}, "x86_tdp");
    c.zap_lock = z == "write" ? ZapLock::Write : z == "read" ? ZapLock::Read : ZapLock::DropWriteZapRead;
    c.fault_precheck = knob_bool(knobs, "fault_precheck", true, "x86_tdp");
    c.eager_page_split = knob_bool(knobs, "eager_page_split", true, "x86_tdp");
    c.preempt = knob_bool(knobs, "preempt", true, "x86_tdp");
    c.preserve_roots = knob_choice(knobs, "tdp_root_unload", "preserve", {"preserve", "drop"}, "x86_tdp") == "preserve";
    c.fault_split_in_place = knob_choice(knobs, "fault_split", "in_place", {"in_place", "zap"}, "x86_tdp") == "in_place";
    c.tdp_mmu_fast_page_fault = knob_bool(knobs, "tdp_mmu_fast_page_fault", true, "x86_tdp");
    const std::string r =
        knob_choice(knobs, "huge_page_recovery", "zap", {"zap", "zap_batched_flush", "in_place"}, "x86_tdp");
    c.huge_page_recovery = r == "zap"                 ? HugePageRecovery::Zap
                           : r == "zap_batched_flush" ? HugePageRecovery::ZapBatchedFlush
                                                      : HugePageRecovery::InPlace;
    c.mmu_init = x86_context::parse_init_mode(knobs);
    c.nx_recovery_ratio = knob_int(knobs, "nx_huge_pages_recovery_ratio", 60, 0, kUintMax, "x86_tdp");
    c.nx_recovery_period_ms = knob_int(knobs, "nx_huge_pages_recovery_period_ms", 0, 0, kUintMax, "x86_tdp");
    c.nx_recovery_read = knob_choice(knobs, "nx_recovery_lock", "write", {"write", "read"}, "x86_tdp") == "read";
    c.age_lock = parse_age_lock(knob_choice(knobs, "age_lock", "write", {"write", "lockless"}, "x86_tdp"));
    c.pml_slot_set_dirty = knob_bool(knobs, "pml_slot_set_dirty", false, "x86_tdp");
    return c;
}

// calc_nx_huge_pages_recovery_period (v6.9 arch/x86/kvm/mmu/mmu.c).
std::int64_t Config::nx_recovery_period() const {
    if (!nx_huge_pages || nx_recovery_ratio == 0) return 0;
    if (nx_recovery_period_ms) return nx_recovery_period_ms;
    return 60 * 60 * 1000 / std::min<std::int64_t>(nx_recovery_ratio, 3600);  // at least a second
}

// ---------------------------------------------------------------------------------------------
// Internal structures

struct X86TdpMmu::Pml4e {
    std::uint64_t g512 = 0;   // gfn >> 27
    std::uint8_t e = 0;
    std::uint32_t serial = 0;  // PDPT page identity
    std::uint64_t page = 0;    // PDPT page HPA
};

struct X86TdpMmu::Slot : SlotState {
    bool manual_protect = false;               // KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | INITIALLY_SET
};

struct X86TdpMmu::VcpuState : VcpuCaches {
    x86_context::CpuRole role;  // the vCPU's registers as kvm_calc_cpu_role sees them
    std::uint64_t smram_buf = 0;  // enter_smm's / emulator_leave_smm's union kvm_smram on the kernel stack
    std::uint64_t smbase = 0;     // vcpu->arch.smbase (GPA) of the SMI being handled
};


struct X86TdpMmu::EntryRef {
    std::uint8_t* e = nullptr;
    std::uint32_t* serial = nullptr;
    std::uint64_t* page = nullptr;
    std::uint64_t* nx = nullptr;  // levels 3 and 2: the linked table's NX huge page state
    std::uint64_t addr = 0;
};

struct X86TdpMmu::Bulk : BulkWalk {};

struct X86TdpMmu::MapPlan {
    // ZapLink (fault_split = "zap"): freeze the huge SPTE in the way, flush, then link an empty page.
    enum Kind : std::uint8_t { Through, Link, Split, ZapLink, Install };
    struct Step {
        int level = 0;
        Kind kind = Through;
        std::uint8_t old_e = 0;
        std::uint32_t old_serial = 0;
        std::uint8_t new_e = 0;
        std::uint64_t page = 0;  // Link/Split/ZapLink: the new page
    };
    std::array<Step, 4> steps{};
    int n = 0;
    int result = RET_PF_FIXED;  // RET_PF_RETRY / RET_PF_SPURIOUS when decided by the walk
    Time cost;
    Gfn gfn = 0;
    int zapped = -1;  // the ZapLink step frozen by map_commit, awaiting its flush
    // kvm_mmu_hugepage_adjust: an exec fault with NX huge pages on (fault->huge_page_disallowed)
    // and the level the host mapping allows (fault->req_level).
    bool huge_page_disallowed = false;
    int req_level = 1;
    Time nx_cost;  // tdp_mmu_pages_lock taken to track linked tables
};

// The recovery worker's sleep (schedule_timeout): wakes it at the end of the period.
class X86TdpMmu::NxTimer final : public engine::EventTarget {
public:
    explicit NxTimer(engine::Signal& s) : s_(s) {}
    void fire(engine::Simulator&) override { s_.notify_all(); }

private:
    engine::Signal& s_;
};

struct X86TdpMmu::ModelCounters {
    explicit ModelCounters(engine::Counters& c)
        : retry_precheck(c.id("pf_retry_invalidate_precheck")),
          retry_stale(c.id("pf_retry_is_page_fault_stale")),
          retry_frozen(c.id("pf_retry_spte_frozen")),
          retry_cmpxchg(c.id("pf_retry_cmpxchg")),
          fast_retry(c.id("fast_pf_cmpxchg_retry")),
          yields(c.id("tdp_mmu_iter_cond_resched")),
          yields_needbreak(c.id("tdp_mmu_iter_cond_resched_needbreak")),
          yields_resched(c.id("tdp_mmu_iter_cond_resched_need_resched")),
          yield_flushes(c.id("tdp_mmu_iter_cond_resched_flush")),
          zap_atomic(c.id("tdp_mmu_zap_spte_atomic")),
          zap_leaf(c.id("tdp_mmu_zap_leaf")),
          splits(c.id("kvm_mmu_split_huge_page")),
          split_allocs(c.id("tdp_mmu_alloc_sp_for_split")),
          topup_objs(c.id("mmu_topup_memory_cache_objs")),
          alloc_atomic(c.id("mmu_memory_cache_alloc_atomic")),
          dirty_marked(c.id("mark_page_dirty_in_slot")),
          wrprot(c.id("spte_write_protected")),
          dirty_harvested(c.id("dirty_pages_harvested")),
          smm_enter(c.id("kvm_smm_transition_enter")),
          smm_exit(c.id("kvm_smm_transition_exit")),
          smm_ignored(c.id("kvm_smm_transition_ignored")),
          smm_stall(c.id("smm_stalled_accesses")),
          smi_handler_lines(c.id("smi_handler_lines")),
          smram_lines(c.id("smram_state_save_lines")),
          root_alloc(c.id("tdp_mmu_root_alloc")),
          root_reuse(c.id("tdp_mmu_root_reuse")),
          root_put(c.id("tdp_mmu_root_put")),
          root_free(c.id("tdp_mmu_root_free")),
          root_walk(c.id("tdp_mmu_root_lookup_steps")),
          rebuild_faults(c.id("root_rebuild_faults")),
          pf_zap_huge(c.id("pf_huge_spte_zapped")),
          recovered(c.id("huge_pages_recovered")),
          nx_recoveries(c.id("kvm_recover_nx_huge_pages")),
          nx_zapped(c.id("nx_huge_pages_recovery_zapped")),
          nx_tracked(c.id("track_possible_nx_huge_page")),
          nx_adjust(c.id("disallowed_hugepage_adjust")),
          nx_yields(c.id("nx_huge_pages_recovery_cond_resched")),
          nx_dirty_skipped(c.id("nx_huge_pages_recovery_dirty_tracked")) {}
    engine::CounterId retry_precheck, retry_stale, retry_frozen, retry_cmpxchg, fast_retry, yields,
        yields_needbreak, yields_resched, yield_flushes, zap_atomic, zap_leaf, splits, split_allocs,
        topup_objs, alloc_atomic, dirty_marked, wrprot, dirty_harvested,
        smm_enter, smm_exit, smm_ignored, smm_stall, smi_handler_lines, smram_lines, root_alloc, root_reuse,
        root_put, root_free, root_walk, rebuild_faults, pf_zap_huge, recovered, nx_recoveries, nx_zapped, nx_tracked,
        nx_adjust, nx_yields, nx_dirty_skipped;
};

// ---------------------------------------------------------------------------------------------
// Construction

X86TdpMmu::X86TdpMmu(vm::ModelEnv& env) : X86TdpMmu(env, nullptr, nullptr) {}

X86TdpMmu::X86TdpMmu(vm::ModelEnv& env, MmuLock& shared_mmu_lock, host::HostMm& shared_host)
    : X86TdpMmu(env, &shared_mmu_lock, &shared_host) {}

X86TdpMmu::X86TdpMmu(vm::ModelEnv& env, MmuLock* shared, host::HostMm* shared_host)
    : sim_(env.sim),
      cache_(env.cache),
      vm_(env.vm),
      cfg_(Config::from(env.knobs)),
      k_(Costs::from(env.host.costs)),
      ak_(AgingCosts::from(env.host.costs)),
      own_host_(shared_host ? nullptr
                            : std::make_unique<host::HostMm>(env.sim, env.host, env.vm.memslots,
                                                             host::Costs::from(env.host.costs),
                                                             host::Features::from(env.host), env.vm.userfaultfd)),
      host_(shared_host ? shared_host : own_host_.get()),
      stats_(env.sim.counters()),
      tlb_(stats_, k_.tlb_flush_base, k_.tlb_flush_per_vcpu, env.vm.vcpus),
      own_mmu_lock_(shared ? nullptr : std::make_unique<MmuLock>(env.sim, host_->topology())),
      mmu_(shared ? *shared : *own_mmu_lock_),
      mmu_lock_(mmu_.lock),
      lock_word_(mmu_.word),
      hold_(env.sim, env.vm.vcpus, "in SMM (until smm_exit)") {
    if (own_host_) own_host_->set_notifier(this);
    mc_ = std::make_unique<ModelCounters>(sim_.counters());
    if (env.host.features.count("guest_tlb") && env.host.feature("guest_tlb")) {
        if (!k_.has_tlb)
            throw std::invalid_argument(
                "x86_tdp: host feature guest_tlb needs costs tlb_entries_4k, _2m, _1g, tlb_ways, tlb_walk_level");
        gtlb_ = std::make_unique<vm::GuestTlb>(env.vm.vcpus,
                                                   vm::GuestTlb::Geometry{k_.tlb_entries, k_.tlb_ways});
        tlb_.set_guest_tlb(gtlb_.get());
        tlb_miss_id_ = sim_.counters().id("guest_tlb_miss");
        tlb_walk_id_ = sim_.counters().id("guest_tlb_refill_walk_levels");
    }
    site_fault_ = sim_.site("kvm_tdp_mmu_page_fault");
    site_zap_ = sim_.site("kvm_zap_gfn_range");
    site_split_ = sim_.site("kvm_mmu_slot_try_split_huge_pages");
    site_split_relock_ = sim_.site("tdp_mmu_split_huge_pages_root");
    site_wrprot_ = sim_.site("kvm_mmu_slot_remove_write_access");
    site_get_ = sim_.site("kvm_get_dirty_log_protect");
    site_clear_ = sim_.site("kvm_clear_dirty_log_protect");
    site_collapsible_ = sim_.site("kvm_mmu_zap_collapsible_sptes");
    site_mn_start_ = sim_.site("kvm_mmu_notifier_invalidate_range_start");
    site_mn_end_ = sim_.site("kvm_mmu_notifier_invalidate_range_end");
    site_free_roots_ = sim_.site("kvm_mmu_free_roots");
    site_alloc_root_ = sim_.site("mmu_alloc_direct_roots");
    site_nx_recovery_ = sim_.site("kvm_recover_nx_huge_pages");
    // kvm.nx_huge_pages: a host feature (a profile without it, e.g. when x86_shadow embeds this
    // model and does not list it, has it off).
    cfg_.nx_huge_pages = env.host.features.count("nx_huge_pages") && env.host.feature("nx_huge_pages");
    // kvm_intel.pml: likewise a host feature, off where the profile does not list it.
    cfg_.pml = env.host.features.count("pml") && env.host.feature("pml");
    pages_lock_line_ = std::make_unique<engine::ContendedLine>(sim_, host_->topology(), "tdp_mmu_pages_lock");
    nx_wake_ = std::make_unique<engine::Signal>(sim_, "nx_huge_pages_recovery_period");
    nx_timer_ = std::make_unique<NxTimer>(*nx_wake_);

    root_hpa_ = pt_alloc_.alloc();  // kvm_tdp_mmu_alloc_root: one root, shared by every vCPU

    // Memslots and the regions they overlap.
    std::vector<std::uint64_t> g1s;
    for (std::size_t i = 0; i < vm_.memslots.size(); ++i) {
        const vm::Memslot& m = vm_.memslots[i];
        if (m.npages == 0) continue;
        auto s = std::make_unique<Slot>();
        s->index = i;
        s->id = m.id;
        s->base = m.base_gfn;
        s->npages = m.npages;
        s->host_level = level_of(vm::host_level(m.backing));
        s->bitmap_addr = kDirtyBitmapBase + kDirtyBitmapWindow * slots_.size();
        if (m.dirty_logging) {
            s->bitmap.assign((m.npages + 63) / 64, 0);
            pml_.slot_logging(true);
        }
        for (std::uint64_t g = m.base_gfn >> 18; g <= (m.base_gfn + m.npages - 1) >> 18; ++g) g1s.push_back(g);
        slots_.push_back(std::move(s));
    }
    std::sort(g1s.begin(), g1s.end());
    g1s.erase(std::unique(g1s.begin(), g1s.end()), g1s.end());
    const std::size_t nr = g1s.size();
    region_g1_ = g1s;
    region_pml4_.assign(nr, 0);
    for (std::size_t r = 0; r < nr; ++r) {
        const std::uint64_t g512 = g1s[r] >> 9;
        if (pml4_.empty() || pml4_.back().g512 != g512) pml4_.push_back(Pml4e{g512, 0, 0, 0});
        region_pml4_[r] = static_cast<std::uint32_t>(pml4_.size() - 1);
    }
    pdpte_.assign(nr, 0);
    pd_serial_.assign(nr, 0);
    pd_page_.assign(nr, 0);
    pde_.assign(nr * 512, 0);
    pt_serial_.assign(nr * 512, 0);
    pt_page_.assign(nr * 512, 0);
    pte_.assign(nr << 18, 0);
    pd_nx_.assign(nr, 0);
    pt_nx_.assign(nr * 512, 0);
    if (nr > 0) {
        lut_base_ = g1s.front();
        const std::uint64_t span = g1s.back() - g1s.front() + 1;
        if (span > (std::uint64_t{1} << 24))
            throw std::invalid_argument("x86_tdp: memslots span more than 16 PiB of guest physical space");
        lut_.assign(span, kNoRegion);
        for (std::size_t r = 0; r < nr; ++r) lut_[g1s[r] - lut_base_] = static_cast<std::uint32_t>(r);
    }

    vcpus_.reserve(vm_.vcpus);
    for (std::uint32_t i = 0; i < vm_.vcpus; ++i) {
        auto v = std::make_unique<VcpuState>();
        v->desc = MmuMemoryCache("mmu_pte_list_desc_cache", k_.mmu_cache_alloc_obj);
        v->page = MmuMemoryCache("mmu_shadow_page_cache", k_.mmu_cache_alloc_page);
        v->header = MmuMemoryCache("mmu_page_header_cache", k_.mmu_cache_alloc_obj);
        vcpus_.push_back(std::move(v));
    }

    // Every vCPU starts with the address-space-0 root loaded (a reference each), plus the TDP
    // MMU's own reference since v6.4. A vCPU's guest is in flat protected mode without paging
    // (firmware); only SMM changes its role here.
    ctx_ = std::make_unique<x86_context::MmuContext>(sim_, cache_, kdata_, x86_context::Costs::from(env.host.costs),
                                                     cfg_.mmu_init, vm_.vcpus,
                                                     static_cast<x86_context::RootOps&>(*this));
    const x86_context::CpuRole role0;
    roots_.push_back(TdpRoot{root_role(role0), root_hpa_, static_cast<int>(vm_.vcpus) + (cfg_.preserve_roots ? 1 : 0)});
    for (std::uint32_t i = 0; i < vm_.vcpus; ++i) {
        ctx_->set_loaded_root(i, role0, root_hpa_);
        vcpus_[i]->smram_buf = kdata_.alloc(512);
    }
    if (cfg_.pml) {
        clean_.assign(pte_.size(), 0);
        site_clear_dirty_ = sim_.site("kvm_mmu_slot_leaf_clear_dirty");
        if (cfg_.pml_slot_set_dirty) {
            site_set_dirty_ = sim_.site("kvm_mmu_slot_set_dirty");
            dirty_set_id_ = sim_.counters().id("spte_dirty_set");
        }
        pml_.init(sim_, env.host, vm_.vcpus);
        dirty_cleared_id_ = sim_.counters().id("spte_dirty_cleared");
    }
}

X86TdpMmu::~X86TdpMmu() = default;

// ---------------------------------------------------------------------------------------------
// Page-table state

std::uint32_t X86TdpMmu::region_of(Gfn gfn) const {
    const std::uint64_t r = (gfn >> 18) - lut_base_;
    return r < lut_.size() ? lut_[r] : kNoRegion;
}

X86TdpMmu::EntryRef X86TdpMmu::ref(int level, Gfn gfn) const {
    auto* self = const_cast<X86TdpMmu*>(this);
    EntryRef r;
    if (level == 4) {
        const std::uint64_t g512 = gfn >> 27;
        auto it = std::lower_bound(self->pml4_.begin(), self->pml4_.end(), g512,
                                   [](const Pml4e& p, std::uint64_t g) { return p.g512 < g; });
        r.addr = root_hpa_ + spte_index(gfn, 4) * 8;
        if (it != self->pml4_.end() && it->g512 == g512) {
            r.e = &it->e;
            r.serial = &it->serial;
            r.page = &it->page;
        }
        return r;
    }
    const std::uint32_t ri = region_of(gfn);
    if (ri == kNoRegion) return r;
    if (level == 3) {
        r.addr = pml4_[region_pml4_[ri]].page + spte_index(gfn, 3) * 8;
        r.e = &self->pdpte_[ri];
        r.serial = &self->pd_serial_[ri];
        r.page = &self->pd_page_[ri];
        r.nx = &self->pd_nx_[ri];
    } else if (level == 2) {
        const std::size_t i = static_cast<std::size_t>(ri) * 512 + spte_index(gfn, 2);
        r.addr = pd_page_[ri] + spte_index(gfn, 2) * 8;
        r.e = &self->pde_[i];
        r.serial = &self->pt_serial_[i];
        r.page = &self->pt_page_[i];
        r.nx = &self->pt_nx_[i];
    } else {
        r.addr = pt_page_[static_cast<std::size_t>(ri) * 512 + spte_index(gfn, 2)] + spte_index(gfn, 1) * 8;
        r.e = &self->pte_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)];
    }
    return r;
}

std::uint8_t X86TdpMmu::entry(int level, Gfn gfn) const {
    if (level == 4) {
        const std::uint64_t g512 = gfn >> 27;
        auto it = std::lower_bound(pml4_.begin(), pml4_.end(), g512,
                                   [](const Pml4e& p, std::uint64_t g) { return p.g512 < g; });
        return it != pml4_.end() && it->g512 == g512 ? it->e : 0;
    }
    const std::uint32_t ri = region_of(gfn);
    if (ri == kNoRegion) return 0;
    if (level == 3) return pdpte_[ri];
    if (level == 2) return pde_[static_cast<std::size_t>(ri) * 512 + spte_index(gfn, 2)];
    return pte_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)];
}

// Serial of the page linked by the table entry at (level, gfn); 0 if none.
std::uint32_t X86TdpMmu::child_serial(int level, Gfn gfn) const {
    const EntryRef r = ref(level, gfn);
    return r.serial ? *r.serial : 0;
}

std::uint64_t X86TdpMmu::child_page(int level, Gfn gfn) const {
    const EntryRef r = ref(level, gfn);
    return r.page ? *r.page : 0;
}

void X86TdpMmu::set_leaf(int level, Gfn gfn, std::uint8_t value) {
    EntryRef r = ref(level, gfn);
    if (!aged_.empty()) aged_[age_index(level, gfn)] = 0;  // make_spte sets the Accessed bit
    // make_spte sets Dirty on a writable SPTE (spte_shadow_dirty_mask); a read-only one starts clean.
    if (!clean_.empty()) clean_[age_index(level, gfn)] = (value & spte::W) ? 0 : 1;
    const bool was = is_leaf(*r.e), now = is_leaf(value);
    if (was != now) stats_.update_page_stats(page_level(level), now ? 1 : -1);
    *r.e = value;
    if (r.serial) {
        *r.serial = 0;
        *r.page = 0;
    }
    unlink_nx(r);
}

void X86TdpMmu::clear_entry(int level, Gfn gfn) {
    EntryRef r = ref(level, gfn);
    if (!r.e) return;
    if (!aged_.empty() && level <= 3) aged_[age_index(level, gfn)] = 0;
    if (is_leaf(*r.e)) stats_.update_page_stats(page_level(level), -1);
    *r.e = 0;
    if (r.serial) {
        *r.serial = 0;
        *r.page = 0;
    }
    unlink_nx(r);
}

// tdp_mmu_unlink_sp: a page table that was nx_huge_page_disallowed leaves the possible-NX list
// (untrack_possible_nx_huge_page, under tdp_mmu_pages_lock: charged to its line by the caller's
// path only where the model knows the time, see docs).
void X86TdpMmu::unlink_nx(EntryRef& r) {
    if (!r.nx || !*r.nx) return;
    if (*r.nx >= 2) {
        nx_list_.erase(*r.nx);
        stats_.gauge_add(stats_.nx_lpage_splits, -1);
    }
    *r.nx = 0;
}

// kvm_tdp_mmu_map after linking a page table for a fault with huge_page_disallowed:
// sp->nx_huge_page_disallowed, and track_possible_nx_huge_page when a huge page could have been
// mapped at the table's level (fault->req_level >= iter.level).
void X86TdpMmu::mark_nx(int level, Gfn gfn, bool track) {
    EntryRef r = ref(level, gfn);
    if (!r.nx) return;
    if (!track) {
        *r.nx = 1;
        return;
    }
    *r.nx = nx_next_key_++;
    nx_list_.emplace(*r.nx, std::make_pair(level, round_gfn(gfn, level)));
    stats_.gauge_add(stats_.nx_lpage_splits, 1);
    sim_.counters().add(mc_->nx_tracked);
}

bool X86TdpMmu::child_nx_disallowed(int level, Gfn gfn) const {
    const EntryRef r = ref(level, gfn);
    return r.nx && *r.nx != 0;
}

// make_huge_page_split_spte: the children carry the huge SPTE's bits; split to 4K with NX huge
// pages on, they are made executable (the mitigation no longer applies).
std::uint8_t X86TdpMmu::split_child(std::uint8_t huge, int child_level) const {
    auto child = static_cast<std::uint8_t>(huge & (spte::P | spte::W | spte::X | spte::MW | spte::LEAF));
    if (cfg_.nx_huge_pages && child_level == 1) child |= spte::X;
    return child;
}

// spin_lock(&kvm->arch.tdp_mmu_pages_lock) at `at`: its line (held for a list operation only).
Time X86TdpMmu::pages_lock(std::uint32_t cpu, Time at) { return pages_lock_line_->rmw(cpu, at) - at; }

std::vector<std::pair<int, Gfn>> X86TdpMmu::possible_nx_huge_pages() const {
    std::vector<std::pair<int, Gfn>> out;
    for (const auto& [key, v] : nx_list_) out.push_back(v);
    return out;
}

// tdp_mmu_link_sp: the entry now links `page` (a fresh identity); a huge leaf it replaces is
// accounted by handle_changed_spte.
void X86TdpMmu::link_table(int level, Gfn gfn, std::uint64_t page) {
    EntryRef r = ref(level, gfn);
    if (is_leaf(*r.e)) stats_.update_page_stats(page_level(level), -1);
    *r.e = spte::TABLE;
    *r.serial = next_serial_++;
    *r.page = page;
    if (r.nx) *r.nx = 0;
    ++tdp_mmu_pages_;  // tdp_account_mmu_page
}

// tdp_mmu_split_huge_page's fill: 512 children of the huge leaf at (level, gfn), one level down,
// with the huge SPTE's permissions (make_huge_page_split_spte). The caller charges the cost
// (split_cost).
void X86TdpMmu::fill_split(int level, Gfn gfn, std::uint8_t huge) {
    const Gfn base = round_gfn(gfn, level);
    const std::uint32_t ri = region_of(base);
    const std::uint8_t child = split_child(huge, level - 1);
    if (level == 2) {
        std::fill_n(pte_.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(ri) << 18) | (base & 0x3ffff)),
                    512, child);
    } else {
        std::fill_n(pde_.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(ri) * 512), 512, child);
    }
    if (!clean_.empty()) {  // the children carry the huge SPTE's Dirty bit too
        const std::uint8_t c = clean_[age_index(level, base)];
        for (unsigned k = 0; k < 512; ++k) clean_[age_index(level - 1, base + k * pages_at(level - 1))] = c;
    }
    stats_.update_page_stats(page_level(level - 1), 512);
    sim_.counters().add(mc_->splits);
}

// Filling the 512 SPTEs of a new page (written through the cache model).
Time X86TdpMmu::split_cost(std::uint64_t page, std::uint32_t cpu) {
    return k_.split_spte_fill * 512 + touch(cpu, page, true, 4096);
}

// handle_removed_pt for the table linked at (level, gfn): every child is cleared (recursively),
// leaves are unaccounted and the page is freed. `shared`: under mmu_lock read, each child is
// replaced with an atomic xchg. Returns the cost.
Time X86TdpMmu::remove_subtree(int level, Gfn gfn, bool shared, std::uint32_t cpu) {
    EntryRef r = ref(level, gfn);
    const std::uint64_t page = *r.page;
    Time cost = touch(cpu, page, shared, 4096);
    const Gfn base = round_gfn(gfn, level);
    const int cl = level - 1;
    for (unsigned k = 0; k < 512; ++k) {
        const Gfn cg = base + k * pages_at(cl);
        const std::uint8_t ce = entry(cl, cg);
        cost += k_.tdp_iter_step;
        if (shared) cost += k_.spte_cmpxchg;  // xchg to REMOVED_SPTE for every child
        if (!is_present(ce)) {
            if (ce) clear_entry(cl, cg);
            continue;
        }
        if (!shared) cost += k_.spte_cmpxchg;  // kvm_tdp_mmu_write_spte of a present child
        if (is_table(ce)) cost += remove_subtree(cl, cg, shared, cpu);
        clear_entry(cl, cg);
        cost += k_.spte_update;
    }
    pt_alloc_.free(page);
    --tdp_mmu_pages_;
    return cost;
}

// ---------------------------------------------------------------------------------------------
// tdp_iter (arch/x86/kvm/mmu/tdp_iter.c)

void X86TdpMmu::iter_restart(TdpIter& it) const {
    it.yielded = false;
    it.yielded_gfn = it.next_last_level_gfn;
    it.level = kRootLevel;
    it.gfn = round_gfn(it.next_last_level_gfn, it.level);
    it.valid = true;
}

void X86TdpMmu::iter_start(TdpIter& it, int min_level, Gfn start) const {
    it.min_level = min_level;
    it.next_last_level_gfn = start;
    iter_restart(it);
}

void X86TdpMmu::iter_next(TdpIter& it) const {
    if (it.yielded) {
        iter_restart(it);
        return;
    }
    // try_step_down
    if (it.level != it.min_level && is_table(entry(it.level, it.gfn))) {
        --it.level;
        it.gfn = round_gfn(it.next_last_level_gfn, it.level);
        return;
    }
    do {
        // try_step_side
        if (spte_index(it.gfn, it.level) != 511) {
            it.gfn += pages_at(it.level);
            it.next_last_level_gfn = it.gfn;
            return;
        }
        // try_step_up
        if (it.level == kRootLevel) break;
        ++it.level;
        it.gfn = round_gfn(it.gfn, it.level);
    } while (true);
    it.valid = false;
}

// ---------------------------------------------------------------------------------------------
// Helpers

X86TdpMmu::Slot* X86TdpMmu::slot_of(Gfn gfn) {
    for (auto& s : slots_)
        if (s->contains(gfn)) return s.get();
    return nullptr;
}

const X86TdpMmu::Slot* X86TdpMmu::slot_of(Gfn gfn) const {
    for (const auto& s : slots_)
        if (s->contains(gfn)) return s.get();
    return nullptr;
}

X86TdpMmu::Slot& X86TdpMmu::slot_by_id(std::uint32_t id) {
    for (auto& s : slots_)
        if (s->id == id) return *s;
    throw std::invalid_argument("x86_tdp: no memslot with id " + std::to_string(id));
}

// host_pfn_mapping_level: the size of the host's mapping of gfn as its page tables say now (a
// PMD-mapped THP or huge zero page: 2M; a hugetlb page: its size; else, or nothing mapped, 4K).
int X86TdpMmu::host_mapping_level(Gfn gfn) const { return 4 - host_->mapping_level(gfn); }

// kvm_mmu_hugepage_adjust / kvm_mmu_max_mapping_level: the host mapping level, limited to huge
// pages lying inside the slot (lpage_info), and 4K while the slot logs dirty pages.
int X86TdpMmu::max_mapping_level(const Slot& s, Gfn gfn, int host_level) const {
    if (vm_.memslots[s.index].dirty_logging) return 1;
    return x86_level_inside_slot(s, gfn, std::min(s.host_level, host_level));
}

Time X86TdpMmu::touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes) {
    return cache_.touch(cpu, addr, bytes, write);
}

// mark_page_dirty_in_slot.
Time X86TdpMmu::mark_page_dirty(Slot& s, Gfn gfn, std::uint32_t cpu) {
    if (!vm_.memslots[s.index].dirty_logging || s.bitmap.empty()) return Time::zero();
    const std::uint64_t rel = gfn - s.base;
    s.bitmap[rel / 64] |= std::uint64_t{1} << (rel % 64);
    sim_.counters().add(mc_->dirty_marked);
    return touch(cpu, s.bitmap_addr + (rel / 64) * 8, true);
}

// mmu_topup_memory_caches(vcpu, maybe_indirect = false).
Time X86TdpMmu::topup_caches(VcpuState& v) {
    Time cost;
    std::uint32_t n = 0;
    v.desc.topup(1 + 5 + 8, &n);  // 1 + PT64_ROOT_MAX_LEVEL + PTE_PREFETCH_NUM
    cost += v.desc.cost_per_object() * n;
    std::uint32_t total = n;
    v.page.topup(5, &n);  // PT64_ROOT_MAX_LEVEL
    cost += v.page.cost_per_object() * n;
    total += n;
    v.header.topup(5, &n);
    cost += v.header.cost_per_object() * n;
    total += n;
    if (total) sim_.counters().add(mc_->topup_objs, total);
    return cost;
}

std::optional<vm::PageLevel> X86TdpMmu::mapping_level(Gfn gfn) const {
    if (is_leaf(entry(1, gfn))) return vm::PageLevel::K4;
    if (is_leaf(entry(2, gfn))) return vm::PageLevel::M2;
    if (is_leaf(entry(3, gfn))) return vm::PageLevel::G1;
    return std::nullopt;
}

std::uint8_t X86TdpMmu::leaf_spte(Gfn gfn) const {
    for (int l = 1; l <= 3; ++l)
        if (is_leaf(entry(l, gfn))) return entry(l, gfn);
    return 0;
}

bool X86TdpMmu::dirty(std::uint32_t slot, Gfn gfn) const {
    for (const auto& s : slots_) {
        if (s->id != slot) continue;
        if (s->bitmap.empty() || !s->contains(gfn)) return false;
        const std::uint64_t rel = gfn - s->base;
        return (s->bitmap[rel / 64] >> (rel % 64)) & 1;
    }
    return false;
}

std::uint64_t X86TdpMmu::state_bytes() const {
    std::uint64_t b = pte_.size() + pde_.size() + pdpte_.size() + pt_serial_.size() * 4 + pt_page_.size() * 8 +
                      pd_serial_.size() * 4 + pd_page_.size() * 8 + lut_.size() * 4 + region_g1_.size() * 12 +
                      pml4_.size() * sizeof(Pml4e);
    for (const auto& s : slots_)
        b += s->bitmap.size() * 8;
    b += vcpus_.size() * sizeof(VcpuState) + was_mapped_.size() * 8 + roots_.size() * sizeof(TdpRoot);
    return b;
}

const MmuMemoryCache& X86TdpMmu::vcpu_cache(std::uint32_t vcpu, int which) const {
    const VcpuState& v = *vcpus_.at(vcpu);
    return which == 0 ? v.desc : which == 1 ? v.page : v.header;
}

// ---------------------------------------------------------------------------------------------
// The fault path: kvm_tdp_mmu_page_fault

// kvm_tdp_mmu_map up to the cmpxchgs: walks from the root (touching every SPTE it reads), takes
// a page from the vCPU's caches for every missing or huge-in-the-way level (tdp_mmu_alloc_sp),
// and records the SPTE values it will cmpxchg. Entries below a page this fault creates are known
// (zero, or the split copies) without reading memory that is not linked yet.
void X86TdpMmu::map_snapshot(MapPlan& p, std::uint32_t cpu, VcpuState& v, Gfn gfn, int goal, std::uint8_t leaf) {
    p.gfn = gfn;
    p.cost = k_.tdp_map_base;
    bool virt = false;         // inside a page this fault creates
    std::uint8_t virt_e = 0;   // the value of every entry of that page
    std::uint64_t virt_page = 0;
    for (int level = kRootLevel; level >= goal; --level) {
        std::uint8_t e = 0;
        std::uint32_t ser = 0;
        std::uint64_t addr = 0;
        if (!virt) {
            EntryRef r = ref(level, gfn);
            e = r.e ? *r.e : 0;
            ser = r.serial ? *r.serial : 0;
            addr = r.addr;
        } else {
            e = virt_e;
            addr = virt_page + spte_index(gfn, level) * 8;
        }
        p.cost += k_.tdp_walk_level + touch(cpu, addr, false);
        // disallowed_hugepage_adjust: no huge page over a page table an exec fault split for
        // the NX huge page mitigation (until recovery zaps it); map one level down.
        if (cfg_.nx_huge_pages && !virt && level > 1 && level == goal && is_table(e) &&
            child_nx_disallowed(level, gfn)) {
            --goal;
            sim_.counters().add(mc_->nx_adjust);
        }
        if (e & spte::FROZEN) {  // is_removed_spte: give up and retry
            p.result = RET_PF_RETRY;
            sim_.counters().add(mc_->retry_frozen);
            return;
        }
        MapPlan::Step& st = p.steps[static_cast<std::size_t>(p.n)];
        st.level = level;
        st.old_e = e;
        st.old_serial = ser;
        if (level == goal) {  // tdp_mmu_map_handle_target_level
            // make_spte: ACC_ALL, writable if the host's pfn is; a huge SPTE is not executable
            // with NX huge pages on (is_nx_huge_page_enabled).
            const auto ne = static_cast<std::uint8_t>(cfg_.nx_huge_pages && level > 1 ? leaf & ~spte::X : leaf);
            st.kind = MapPlan::Install;
            st.new_e = ne;
            if (ne == e) {
                // RET_PF_SPURIOUS, without a cmpxchg. The splits/links above it (if any) still
                // have to be committed.
                if (!virt) p.result = RET_PF_SPURIOUS;
                ++p.n;
                return;
            }
            p.cost += touch(cpu, addr, true) + k_.spte_cmpxchg + k_.spte_update;
            ++p.n;
            return;
        }
        if (is_table(e)) {  // step down into the lower level page table
            st.kind = MapPlan::Through;
            ++p.n;
            continue;
        }
        // Non-present, or a huge page in the way: tdp_mmu_alloc_sp.
        for (MmuMemoryCache* c : {&v.header, &v.page}) {
            if (!c->alloc()) {
                sim_.counters().add(mc_->alloc_atomic);
                p.cost += c->cost_per_object();
            }
        }
        st.page = pt_alloc_.alloc();
        if (is_present(e) && !cfg_.fault_split_in_place) {
            // v5.16's kvm_tdp_mmu_map: tdp_mmu_zap_spte_atomic (cmpxchg to REMOVED_SPTE,
            // handle_changed_spte, flush, write 0), then an empty page linked in its place; the
            // other pages of the huge range will fault one by one. The flush is the caller's.
            st.kind = MapPlan::ZapLink;
            p.cost += k_.spte_cmpxchg + k_.spte_update;
            virt_e = 0;
        } else if (is_present(e)) {  // tdp_mmu_split_huge_page
            st.kind = MapPlan::Split;
            p.cost += split_cost(st.page, cpu);
            virt_e = split_child(e, level - 1);
        } else {  // tdp_mmu_link_sp
            st.kind = MapPlan::Link;
            virt_e = 0;
        }
        p.cost += touch(cpu, addr, true) + k_.spte_cmpxchg + k_.spte_update;
        virt = true;
        virt_page = st.page;
        ++p.n;
    }
}

// The cmpxchgs, in walk order. Returns RET_PF_FIXED, RET_PF_SPURIOUS (the target already held
// the new value) or RET_PF_RETRY (a lost cmpxchg). p.cost receives the work done after a
// successful install, still under mmu_lock (a TLB flush when a table was replaced, marking the
// page dirty).
int X86TdpMmu::map_commit(MapPlan& p, Slot& s, std::uint32_t cpu, int from) {
    const Gfn gfn = p.gfn;
    int i = from;
    for (; i < p.n; ++i) {
        MapPlan::Step& st = p.steps[static_cast<std::size_t>(i)];
        EntryRef r = ref(st.level, gfn);
        const std::uint8_t cur = r.e ? *r.e : 0;
        if (cur != st.old_e || (st.kind == MapPlan::Through && *r.serial != st.old_serial)) break;
        switch (st.kind) {
            case MapPlan::Through: break;
            case MapPlan::Link:
                link_table(st.level, gfn, st.page);
                nx_link(p, st.level, cpu);
                break;
            case MapPlan::Split:
                link_table(st.level, gfn, st.page);
                fill_split(st.level, gfn, st.old_e);
                nx_link(p, st.level, cpu);
                break;
            case MapPlan::ZapLink:
                // Frozen: other faults walking into it retry, bulk walkers skip it.
                clear_entry(st.level, gfn);
                *r.e = spte::FROZEN;
                sim_.counters().add(mc_->zap_atomic);
                sim_.counters().add(mc_->pf_zap_huge);
                p.zapped = i;
                p.cost = Time::zero();
                return kZapFlushPending;
            case MapPlan::Install:
                if (st.new_e == st.old_e) {
                    p.cost = p.nx_cost;
                    return RET_PF_SPURIOUS;
                }
                if (is_table(cur)) {
                    // A huge SPTE replaces a page table: handle_removed_pt, then
                    // kvm_flush_remote_tlbs_gfn.
                    p.cost = p.nx_cost + remove_subtree(st.level, gfn, true, cpu) + tlb_.flush();
                } else {
                    p.cost = p.nx_cost;
                }
                set_leaf(st.level, gfn, st.new_e);
                // make_spte: only a writable SPTE is marked dirty (a read-only one, e.g. of the
                // zero page, takes a write fault first).
                if (st.new_e & spte::W) p.cost += mark_page_dirty(s, gfn, cpu);
                return RET_PF_FIXED;
        }
    }
    // Lost a cmpxchg: the pages this fault allocated and did not link are freed (tdp_mmu_free_sp).
    for (; i < p.n; ++i) {
        const MapPlan::Step& st = p.steps[static_cast<std::size_t>(i)];
        if (st.kind == MapPlan::Link || st.kind == MapPlan::Split || st.kind == MapPlan::ZapLink)
            pt_alloc_.free(st.page);
    }
    p.cost = Time::zero();
    sim_.counters().add(mc_->retry_cmpxchg);
    return RET_PF_RETRY;
}

// kvm_tdp_mmu_map after tdp_mmu_link_sp / tdp_mmu_split_huge_page succeeded at `level`.
void X86TdpMmu::nx_link(MapPlan& p, int level, std::uint32_t cpu) {
    if (!p.huge_page_disallowed) return;
    const bool track = p.req_level >= level;
    if (track) p.nx_cost += pages_lock(cpu, sim_.now() + p.nx_cost);
    mark_nx(level, p.gfn, track);
}

// After the flush that followed map_commit's freeze: the frozen SPTE is cleared (only its freezer
// writes a REMOVED_SPTE), an empty page is linked in its place, and the remaining steps commit.
int X86TdpMmu::map_zap_link(MapPlan& p, Slot& s, std::uint32_t cpu) {
    const MapPlan::Step& st = p.steps[static_cast<std::size_t>(p.zapped)];
    EntryRef r = ref(st.level, p.gfn);
    if (*r.e != spte::FROZEN) throw std::logic_error("x86_tdp: a frozen SPTE changed under its freezer");
    *r.e = 0;
    link_table(st.level, p.gfn, st.page);
    nx_link(p, st.level, cpu);
    const int from = p.zapped + 1;
    p.zapped = -1;
    return map_commit(p, s, cpu, from);
}

// Not coroutines: the Task of fault() is the caller's, so an exit costs one frame.
Task<void> X86TdpMmu::page_fault(const vm::CpuContext& cpu_ctx, Gfn gfn, vm::Access access) {
    return fault(cpu_ctx, gfn, access, sim_.now());
}

Task<void> X86TdpMmu::page_fault_at(engine::Simulator&, const vm::CpuContext& cpu_ctx, Gfn gfn, vm::Access access,
                                    Time start) {
    return fault(cpu_ctx, gfn, access, start);
}

// kvm_tdp_mmu_page_fault on the vCPU's loaded address-space-0 root.
Task<void> X86TdpMmu::fault(const vm::CpuContext& cpu_ctx, Gfn gfn, vm::Access access, Time start) {
    // MmuModel::page_fault_at's default: let the time pass to the access.
    if (start > sim_.now()) co_await sim_.delay(start - sim_.now());
    if (cpu_ctx.vcpu < 0 || static_cast<std::size_t>(cpu_ctx.vcpu) >= vcpus_.size())
        throw std::invalid_argument("x86_tdp: page_fault from '" + cpu_ctx.name + "', which is not a vCPU of the VM");
    const auto vi = static_cast<std::uint32_t>(cpu_ctx.vcpu);
    if (hold_.held(vi)) {
        // The guest code of this stream does not run during an SMM transition or in SMM (the SMI
        // handler's accesses are smm_transition's): wait until RSM has been emulated and the root
        // reloaded, then retry the access. Not an exit: no pf_taken.
        sim_.counters().add(mc_->smm_stall);
        co_await hold_.wait_released(vi);
        co_return;
    }
    const GuestStreamHold::FaultScope in_fault = hold_.fault_scope(vi);  // fault_end at every co_return
    const std::uint32_t cpu = cpu_ctx.host_cpu;
    VcpuState& v = *vcpus_[static_cast<std::size_t>(cpu_ctx.vcpu)];
    Time t = k_.fault_entry;
    if (cfg_.pml) {
        // vmx_handle_exit flushes the vCPU's PML buffer on every VM exit, before the handler.
        const bool full = access == vm::Access::Write && pml_full_exit(vi, gfn);
        t += pml_flush(vi, cpu);
        if (full) {
            // EXIT_REASON_PML_FULL: handle_pml_full has nothing left to do; the write runs again
            // after the entry and is logged in the emptied buffer.
            pml_.full_exit();
            co_await sim_.delay(t + k_.fault_exit);
            co_return;
        }
    }
    stats_.add(stats_.pf_taken);

    Slot* s = slot_of(gfn);
    if (!s) {  // no memslot: MMIO, emulated
        stats_.add(stats_.pf_emulate);
        co_await sim_.delay(t + k_.fault_exit);
        co_return;
    }
    const bool write = access == vm::Access::Write;
    const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];

    // fast_page_fault: only for a write to a present SPTE (A/D bits enabled). Lockless: the SPTE
    // is read now and cmpxchg'ed after the walk; another CPU may change it in between.
    {
        auto walk = [&](int& level, std::uint8_t& e, std::uint32_t& parent_serial, Time& cost) {
            // kvm_tdp_mmu_fast_pf_get_last_sptep: the deepest SPTE of the walk.
            level = kRootLevel;
            parent_serial = 0;
            for (;; --level) {
                EntryRef r = ref(level, gfn);
                e = r.e ? *r.e : 0;
                cost += k_.tdp_walk_level + touch(cpu, r.addr, false);
                if (!is_table(e) || level == 1) return;
                parent_serial = *r.serial;
            }
        };
        // page_fault_can_be_fast: fault->present && fault->write (A/D bits enabled). `present`
        // is the exit qualification's, i.e. the SPTE the guest access saw: no walk before the
        // check, so a not-present fault reads no SPTE here.
        // Before v5.15 (tdp_mmu_fast_page_fault false) direct_page_fault called fast_page_fault
        // only when the root was not a TDP MMU root.
        if (cfg_.tdp_mmu_fast_page_fault && write && is_leaf(leaf_spte(gfn))) {
            const engine::TraceScope slice(sim_, "fast_page_fault");
            int level = 0;
            std::uint8_t e = 0;
            std::uint32_t parent_serial = 0;
            Time wcost;
            walk(level, e, parent_serial, wcost);
            int retries = 0;
            for (;;) {
                t += k_.fast_pf_base + wcost;
                if (!is_leaf(e)) break;
                if (e & need) {  // is_access_allowed: spurious
                    stats_.add(stats_.pf_fast);
                    stats_.add(stats_.pf_spurious);
                    co_await sim_.delay(t + k_.fault_exit);
                    co_return;
                }
                std::uint8_t ne = e;
                if (e & spte::MW) {
                    ne |= spte::W;
                    // No fast fix of a huge SPTE while dirty logging: the slow path splits it.
                    if (level > 1 && vm_.memslots[s->index].dirty_logging) break;
                }
                if (ne == e || !(ne & need)) break;
                t += touch(cpu, ref(level, gfn).addr, true) + k_.spte_cmpxchg;
                co_await sim_.delay(t);
                t = Time::zero();
                // fast_pf_fix_direct_spte: try_cmpxchg64 against the value read.
                EntryRef r = ref(level, gfn);
                const bool same_table = level == kRootLevel || child_serial(level + 1, gfn) == parent_serial;
                if (r.e && *r.e == e && same_table) {
                    *r.e = ne;
                    t += mark_page_dirty(*s, gfn, cpu);
                    stats_.add(stats_.pf_fast);
                    stats_.add(stats_.pf_fixed);
                    co_await sim_.delay(t + k_.fault_exit);
                    co_return;
                }
                sim_.counters().add(mc_->fast_retry);
                if (++retries > 4) break;  // "Fast #PF retrying more than 4 times."
                wcost = Time::zero();
                walk(level, e, parent_serial, wcost);
            }
        }
    }

    // Handler slice (traces only): top-up and kvm_faultin_pfn, paid in one delay below.
    std::optional<engine::TraceScope> faultin_slice;
    faultin_slice.emplace(sim_, "kvm_faultin_pfn");
    // mmu_topup_memory_caches, outside mmu_lock.
    t += topup_caches(v);

    // kvm_faultin_pfn: snapshot the invalidation sequence, pre-check, resolve the host page.
    const std::uint64_t mmu_seq = inv_.seq();
    if (cfg_.fault_precheck && inv_.retry_gfn_unsafe(mmu_seq, gfn)) {
        sim_.counters().add(mc_->retry_precheck);
        co_await sim_.delay(t + k_.fault_exit);
        co_return;
    }
    // __kvm_faultin_pfn -> __gfn_to_pfn_memslot(write_fault = fault->write, &map_writable) ->
    // hva_to_pfn: a GUP that changes no host page table is worked out at once (one delay, as
    // before); one that must (first touch, COW, THP split) waits for the host's work, which may
    // invalidate this very gfn through the notifier (the sequence snapshot above sees it).
    host::Gup gup;
    if (host_->gup_analytic(gfn, write)) {
        gup = host_->try_gup(cpu, gfn, write, sim_.now() + t);
        co_await sim_.delay(gup.done - sim_.now());
    } else {
        co_await sim_.delay(t);
        gup = co_await host_->gup(cpu_ctx, gfn, write);
        if (gup.done > sim_.now()) co_await sim_.delay(gup.done - sim_.now());
    }
    t = Time::zero();
    faultin_slice.reset();
    if (cfg_.fault_precheck && inv_.retry_gfn_unsafe(mmu_seq, gfn)) {
        sim_.counters().add(mc_->retry_precheck);
        // kvm_release_pfn_clean, then RET_PF_RETRY.
        co_await sim_.delay(host_->put_page(cpu, gup, sim_.now()) - sim_.now() + k_.fault_exit);
        co_return;
    }
    // host_pfn_mapping_level: the GUP's answer (x86 numbering).
    const int host_level = 4 - gup.level;
    const std::uint8_t leaf = gup.writable ? spte::LEAF_RW : spte::LEAF_HOST_RO;

    int ret;
    {
        const LockMode mode = cfg_.fault_lock_write ? LockMode::Write : LockMode::Read;
        const Time asked = sim_.now();
        engine::LockGuard g =
            co_await (mode == LockMode::Write ? mmu_lock_.write(site_fault_) : mmu_lock_.read(site_fault_));
        const engine::TraceScope map_slice(sim_, "kvm_tdp_mmu_map");
        t += lock_word_.acquired(cpu, mode, asked, sim_.now());
        if (inv_.retry_gfn(mmu_seq, gfn)) {  // is_page_fault_stale
            sim_.counters().add(mc_->retry_stale);
            ret = RET_PF_RETRY;
            co_await sim_.delay(t);
        } else {
            MapPlan plan;
            // kvm_mmu_hugepage_adjust: an exec fault maps 4K with NX huge pages on.
            plan.req_level = max_mapping_level(*s, gfn, host_level);
            plan.huge_page_disallowed = cfg_.nx_huge_pages && access == vm::Access::Exec;
            map_snapshot(plan, cpu, v, gfn, plan.huge_page_disallowed ? 1 : plan.req_level, leaf);
            co_await sim_.delay(t + plan.cost);
            if (plan.result != RET_PF_FIXED) {
                ret = plan.result;
            } else {
                ret = map_commit(plan, *s, cpu);
                if (ret == kZapFlushPending) {
                    // kvm_flush_remote_tlbs_with_address, mmu_lock held, the SPTE frozen.
                    co_await sim_.delay(tlb_.flush());
                    ret = map_zap_link(plan, *s, cpu);
                }
                if (plan.cost > Time::zero()) co_await sim_.delay(plan.cost);
            }
        }
        t = Time::zero();
        g.unlock();
        t += lock_word_.released(cpu, mode, sim_.now());
    }
    // kvm_release_pfn_clean after read_unlock: put_page on the page's refcount line.
    t = host_->put_page(cpu, gup, sim_.now() + t) - sim_.now();
    if (ret == RET_PF_FIXED) {
        stats_.add(stats_.pf_fixed);
        if (!was_mapped_.empty()) {  // a mapping the freed root had: rebuilt by this fault
            const std::uint32_t ri = region_of(gfn);
            const std::size_t bit = (static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff);
            if (ri != kNoRegion && ((was_mapped_[bit / 64] >> (bit % 64)) & 1)) {
                was_mapped_[bit / 64] &= ~(std::uint64_t{1} << (bit % 64));
                sim_.counters().add(mc_->rebuild_faults);
            }
        }
    } else if (ret == RET_PF_SPURIOUS)
        stats_.add(stats_.pf_spurious);
    co_await sim_.delay(t + k_.fault_exit);
}

// ---------------------------------------------------------------------------------------------
// Bulk walkers

std::uint64_t X86TdpMmu::entry_addr(int level, Gfn gfn) const {
    if (level == 4) return root_hpa_ + spte_index(gfn, 4) * 8;
    if (level == 3) {
        const std::uint64_t g512 = gfn >> 27;
        auto it = std::lower_bound(pml4_.begin(), pml4_.end(), g512,
                                   [](const Pml4e& p, std::uint64_t g) { return p.g512 < g; });
        const std::uint64_t page = it != pml4_.end() && it->g512 == g512 ? it->page : 0;
        return page + spte_index(gfn, 3) * 8;
    }
    return ref(level, gfn).addr;
}

X86TdpMmu::Bulk X86TdpMmu::make_bulk(const vm::CpuContext& cpu) {
    Bulk b;
    b.start(cpu, k_.sched_timeslice, sim_.now());
    return b;
}

models::SettleAwaiter<models::BulkWalk> X86TdpMmu::settle(Bulk& b) { return models::settle(sim_, b); }

// lock_walk's and unlock_walk's bodies (models/common/bulk.hpp) in this frame, not a nested one.
Task<void> X86TdpMmu::lock(Bulk& b, LockMode mode, engine::Site site) {
    const Time asked = sim_.now() + b.acc;
    co_await settle(b);
    b.guard = co_await (mode == LockMode::Write ? mmu_lock_.write(site) : mmu_lock_.read(site));
    b.mode = mode;
    b.site = site;
    b.last_line = Bulk::kNoLine;
    b.acc += lock_word_.acquired(b.cpu, mode, asked, sim_.now());
}

Task<void> X86TdpMmu::unlock(Bulk& b) {
    const LockMode mode = b.mode;
    co_await settle(b);
    b.guard.unlock();
    b.acc += lock_word_.released(b.cpu, mode, sim_.now());
}

// One tdp_iter step: the iterator's bookkeeping plus reading the SPTE (one cache touch per line).
Time X86TdpMmu::step(Bulk& b, const TdpIter& it) {
    Time c = k_.tdp_iter_step;
    const std::uint64_t addr = entry_addr(it.level, it.gfn);
    if ((addr >> 6) != b.last_line) {
        c += touch(b.cpu, addr, false);
        b.last_line = addr >> 6;
    }
    return c;
}

// tdp_mmu_iter_cond_resched's condition: forward progress since the last (re)start, and
// need_resched() || rwlock_needbreak(). needbreak can only become true while this task holds the
// lock (waiters only accumulate), so checking it now is exact up to the unelapsed work.
// rwlock_needbreak() is constant false on a kernel without CONFIG_PREEMPTION.
bool X86TdpMmu::should_yield(const Bulk& b, const TdpIter& it) const {
    if (it.next_last_level_gfn == it.yielded_gfn) return false;
    return needbreak() || b.clock.need_resched(sim_.now() + b.acc);
}

// tdp_mmu_iter_cond_resched when it yields: flush if a flush is pending, drop and retake mmu_lock
// (cond_resched_rwlock_read/write), and restart the walk from the root.
Task<void> X86TdpMmu::cond_resched(Bulk& b, TdpIter& it, bool flush) {
    co_await settle(b);
    if (flush) {
        sim_.counters().add(mc_->yield_flushes);
        co_await sim_.delay(tlb_.flush());
    }
    sim_.counters().add(mc_->yields);
    const bool resched = b.clock.need_resched(sim_.now());
    sim_.counters().add(needbreak() ? mc_->yields_needbreak : mc_->yields_resched);
    b.guard.unlock();
    co_await sim_.delay(lock_word_.released(b.cpu, b.mode, sim_.now()) + k_.lock_yield);
    if (resched) b.clock.start(sim_.now());  // schedule() gave the CPU away and got it back
    const Time asked = sim_.now();
    b.guard = co_await (b.mode == LockMode::Write ? mmu_lock_.write(b.site) : mmu_lock_.read(b.site));
    b.acc += lock_word_.acquired(b.cpu, b.mode, asked, sim_.now());
    it.yielded = true;
    b.last_line = kNoLine;
}

// tdp_mmu_zap_leafs (can_yield = true): zap every leaf SPTE in [start, end) at 4K granularity,
// under mmu_lock held in b.mode (write; read for seed 003's drop_write_zap_read, where the
// in-progress invalidation keeps faults from reinstalling what was zapped, and a zap is a
// cmpxchg). Returns whether a flush is pending.
Task<bool> X86TdpMmu::zap_leafs(Bulk& b, Gfn start, Gfn end, bool flush) {
    TdpIter it;
    for (iter_start(it, 1, start); it.valid && it.gfn < end; iter_next(it)) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        b.acc += step(b, it);
        if (should_yield(b, it)) {
            co_await cond_resched(b, it, flush);
            flush = false;
            continue;
        }
        if (!is_leaf(entry(it.level, it.gfn))) continue;
        // Atomic either way: under mmu_lock write, kvm_tdp_mmu_write_spte still xchg's a leaf SPTE
        // whose A/D bits the CPU may set (spte_has_volatile_bits).
        b.acc += touch(b.cpu, entry_addr(it.level, it.gfn), true) + k_.spte_cmpxchg + k_.spte_update;
        clear_entry(it.level, it.gfn);
        sim_.counters().add(mc_->zap_leaf);
        flush = true;  // the root is valid
    }
    co_return flush;
}

// tdp_mmu_zap_spte_atomic: freeze the SPTE (REMOVED_SPTE), flush, then clear it and process the
// removed subtree. The subtree is cleared in the model when the SPTE is frozen (it is unreachable
// from then on); its processing cost is charged after the flush, as the kernel does it.
Task<void> X86TdpMmu::zap_spte_atomic(Bulk& b, int level, Gfn gfn) {
    EntryRef r = ref(level, gfn);
    const std::uint8_t e = *r.e;
    const std::uint32_t parent = level < kRootLevel ? child_serial(level + 1, gfn) : 0;
    b.acc += touch(b.cpu, r.addr, true) + k_.spte_cmpxchg;
    Time removed;
    if (is_table(e)) removed = remove_subtree(level, gfn, true, b.cpu);
    clear_entry(level, gfn);
    *r.e = spte::FROZEN;
    sim_.counters().add(mc_->zap_atomic);
    co_await settle(b);
    co_await sim_.delay(tlb_.flush());  // kvm_flush_remote_tlbs_gfn
    EntryRef r2 = ref(level, gfn);
    if (r2.e && *r2.e == spte::FROZEN && (level == kRootLevel || child_serial(level + 1, gfn) == parent))
        *r2.e = 0;  // __kvm_tdp_mmu_write_spte(SHADOW_NONPRESENT_VALUE)
    b.acc += touch(b.cpu, r2.addr, true) + k_.spte_update + removed;
}

// Yan Zhao's zap_gfn_range_atomic (seed 003, zap_lock = "read"): under mmu_lock read, zap every
// present SPTE of level <= 1G fully inside [start, end), each with its own TLB flush.
Task<void> X86TdpMmu::zap_range_atomic(Bulk& b, Gfn start, Gfn end) {
    TdpIter it;
    for (iter_start(it, 1, start); it.valid && it.gfn < end; iter_next(it)) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        b.acc += step(b, it);
        if (should_yield(b, it)) {
            co_await cond_resched(b, it, false);
            continue;
        }
        if (!is_present(entry(it.level, it.gfn))) continue;
        if (it.gfn < start || it.gfn + pages_at(it.level) > end || it.level > 3) continue;
        co_await zap_spte_atomic(b, it.level, it.gfn);
    }
}

// tdp_mmu_split_huge_pages_root(target_level = 4K): pre-order, so a 1G page is split into 2M
// pages which are then split in turn. Each split needs a page allocated with mmu_lock dropped
// (tdp_mmu_alloc_sp_for_split), after which the walk restarts from the root.
Task<void> X86TdpMmu::split_huge_pages_root(Bulk& b, Gfn start, Gfn end) {
    bool have_sp = false;
    TdpIter it;
    for (iter_start(it, 2, start); it.valid && it.gfn < end; iter_next(it)) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        b.acc += step(b, it);
        if (should_yield(b, it)) {
            co_await cond_resched(b, it, false);
            continue;
        }
        const std::uint8_t e = entry(it.level, it.gfn);
        if (!is_leaf(e) || it.level < 2) continue;
        if (!have_sp) {
            const LockMode mode = b.mode;
            const engine::Site site = b.site;
            co_await unlock(b);
            sim_.counters().add(mc_->split_allocs);
            b.acc += k_.mmu_cache_alloc_obj + k_.mmu_cache_alloc_page;  // GFP_KERNEL_ACCOUNT
            co_await lock(b, mode, site_split_relock_);
            b.site = site;
            have_sp = true;
            it.yielded = true;
            continue;
        }
        // tdp_mmu_split_huge_page + tdp_mmu_link_sp.
        const std::uint64_t page = pt_alloc_.alloc();
        link_table(it.level, it.gfn, page);
        fill_split(it.level, it.gfn, e);
        b.acc += split_cost(page, b.cpu);
        b.acc += touch(b.cpu, entry_addr(it.level, it.gfn), true) + k_.spte_cmpxchg + k_.spte_update;
        have_sp = false;
    }
}

// The walk of wrprot_gfn_range, clear_dirty_gfn_range and set_dirty_gfn_range: every present
// leaf of [start, end) at min_level or above, tdp_mmu_iter_cond_resched between SPTEs; `op`
// changes a leaf (adding its work to b.acc) and says whether it did. Returns how many it changed.
Task<std::uint64_t> X86TdpMmu::leaf_walk(Bulk& b, Gfn start, Gfn end, int min_level, LeafOp op) {
    std::uint64_t changed = 0;
    TdpIter it;
    for (iter_start(it, min_level, start); it.valid && it.gfn < end; iter_next(it)) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        b.acc += step(b, it);
        if (should_yield(b, it)) {
            co_await cond_resched(b, it, false);
            continue;
        }
        EntryRef r = ref(it.level, it.gfn);
        if (!is_leaf(*r.e)) continue;
        if ((this->*op)(b, it, r)) ++changed;
    }
    co_return changed;
}

// wrprot_gfn_range's body, under mmu_lock read: clear the Writable bit (tdp_mmu_set_spte_atomic).
bool X86TdpMmu::wrprot_leaf(Bulk& b, const TdpIter&, EntryRef& r) {
    if (!(*r.e & spte::W)) return false;
    *r.e = static_cast<std::uint8_t>(*r.e & ~spte::W);
    b.acc += touch(b.cpu, r.addr, true) + k_.spte_cmpxchg + k_.spte_update;
    sim_.counters().add(mc_->wrprot);
    return true;
}

// clear_dirty_gfn_range's body (kvm_mmu_slot_leaf_clear_dirty -> kvm_tdp_mmu_clear_dirty_slot),
// under mmu_lock read: clear the Dirty bit of a leaf at any level (tdp_mmu_set_spte_atomic).
bool X86TdpMmu::clear_dirty_leaf(Bulk& b, const TdpIter& it, EntryRef& r) {
    std::uint8_t& c = clean_[age_index(it.level, it.gfn)];
    if (c) return false;
    c = 1;
    b.acc += touch(b.cpu, r.addr, true) + k_.spte_cmpxchg + k_.spte_update;
    sim_.counters().add(dirty_cleared_id_);
    return true;
}

// set_dirty_gfn_range's body (v5.11, kvm_tdp_mmu_slot_set_dirty), mmu_lock held exclusively:
// set a clear Dirty bit back with tdp_mmu_set_spte (a plain write).
bool X86TdpMmu::set_dirty_leaf(Bulk& b, const TdpIter& it, EntryRef& r) {
    std::uint8_t& c = clean_[age_index(it.level, it.gfn)];
    if (!c) return false;
    c = 0;
    b.acc += touch(b.cpu, r.addr, true) + k_.spte_update;
    sim_.counters().add(dirty_set_id_);
    return true;
}

// Huge page recovery when dirty logging is disabled, under mmu_lock read: every page table at 2M
// or 1G that a huge page could now replace (kvm_mmu_max_mapping_level), by huge_page_recovery:
//  - zap (v6.9's zap_collapsible_spte_range): tdp_mmu_zap_spte_atomic, a remote flush each; the
//    vCPUs fault the huge page back in;
//  - zap_batched_flush (v6.13, David Matlack, "KVM: x86/mmu: Batch TLB flushes when zapping
//    collapsible TDP MMU SPTEs", commit 35ef80eb29ab): the table's SPTE set non-present with one
//    cmpxchg (no freeze), the flush left pending until a yield or the end
//    (kvm_flush_remote_tlbs_memslot);
//  - in_place (v6.13, "KVM: x86/mmu: Recover TDP MMU huge page mappings in-place instead of
//    zapping", commit 13e2e4f62a4b, recover_huge_pages_range): tdp_mmu_make_huge_spte walks to the
//    first leaf below the table and make_huge_spte turns it into the huge SPTE, which replaces the
//    table with one cmpxchg; flushes batched as above; no refault.
// In every mode the removed table goes through handle_removed_pt.
Task<void> X86TdpMmu::zap_collapsible_spte_range(Bulk& b, Slot& s) {
    const Gfn start = s.base, end = s.base + s.npages;
    const HugePageRecovery mode = cfg_.huge_page_recovery;
    bool flush = false;
    TdpIter it;
    for (iter_start(it, 2, start); it.valid && it.gfn < end; iter_next(it)) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        b.acc += step(b, it);
        if (should_yield(b, it)) {
            co_await cond_resched(b, it, flush);
            flush = false;
            continue;
        }
        const std::uint8_t e = entry(it.level, it.gfn);
        if (it.level > 3 || !is_present(e)) continue;
        if (is_leaf(e)) continue;
        if (it.gfn < start || it.gfn >= end) continue;
        if (max_mapping_level(s, it.gfn, host_mapping_level(it.gfn)) < it.level) continue;
        if (mode == HugePageRecovery::Zap) {
            co_await zap_spte_atomic(b, it.level, it.gfn);
            continue;
        }
        std::uint8_t value = 0;  // SHADOW_NONPRESENT_VALUE
        std::pair<int, Gfn> child{0, 0};
        if (mode == HugePageRecovery::InPlace) {
            const std::optional<std::uint8_t> leaf = first_leaf_below(b, it.level, it.gfn, child);
            if (!leaf) continue;  // -ENOENT: nothing mapped below
            value = *leaf;        // make_huge_spte: the child's bits, a huge page's size
            if (cfg_.nx_huge_pages) value = static_cast<std::uint8_t>(value & ~spte::X);
            sim_.counters().add(mc_->recovered);
        }
        // make_huge_spte copies the child's Accessed and Dirty bits too (read before the
        // replace frees the child's state).
        const std::uint8_t aged = value && !aged_.empty() ? aged_[age_index(child.first, child.second)] : 0;
        const std::uint8_t clean = value && !clean_.empty() ? clean_[age_index(child.first, child.second)] : 0;
        b.acc += replace_table(b, it.level, it.gfn, value);
        if (value && !aged_.empty()) aged_[age_index(it.level, it.gfn)] = aged;
        if (value && !clean_.empty()) clean_[age_index(it.level, it.gfn)] = clean;
        flush = true;
    }
    if (flush) {
        co_await settle(b);
        co_await sim_.delay(tlb_.flush());  // kvm_flush_remote_tlbs_memslot
    }
}

// tdp_mmu_make_huge_spte's walk (tdp_root_for_each_leaf_pte below the table at (level, gfn)):
// pre-order to the first present leaf; its SPTE bits, or nothing when no leaf is present.
std::optional<std::uint8_t> X86TdpMmu::first_leaf_below(Bulk& b, int level, Gfn gfn, std::pair<int, Gfn>& at) {
    const Gfn base = round_gfn(gfn, level);
    const int cl = level - 1;
    for (unsigned k = 0; k < 512; ++k) {
        const Gfn cg = base + k * pages_at(cl);
        b.acc += k_.tdp_iter_step + touch(b.cpu, entry_addr(cl, cg), false);
        const std::uint8_t ce = entry(cl, cg);
        if (!is_present(ce)) continue;
        if (is_leaf(ce)) {
            at = {cl, cg};
            return ce;
        }
        if (cl > 1) return first_leaf_below(b, cl, cg, at);  // the first present table's first leaf
    }
    return std::nullopt;
}

// tdp_mmu_set_spte_atomic of the table SPTE at (level, gfn) to `value` (non-present, or a huge
// leaf), then handle_changed_spte: handle_removed_pt frees the old table. Returns the work.
Time X86TdpMmu::replace_table(Bulk& b, int level, Gfn gfn, std::uint8_t value) {
    EntryRef r = ref(level, gfn);
    Time c = touch(b.cpu, r.addr, true) + k_.spte_cmpxchg;
    c += remove_subtree(level, gfn, true, b.cpu);
    clear_entry(level, gfn);
    if (value) set_leaf(level, gfn, value);
    return c + k_.spte_update;
}

// clear_dirty_pt_masked, under mmu_lock write: for every bit i of mask, write-protect the 4K SPTE
// of gfn + i (wrprot) or clear its Dirty bit (PML).
void X86TdpMmu::clear_dirty_pt_masked(Bulk& b, Gfn gfn, std::uint64_t mask, bool wrprot) {
    TdpIter it;
    const Gfn end = gfn + 64;
    for (iter_start(it, 1, gfn + static_cast<unsigned>(std::countr_zero(mask))); it.valid && it.gfn < end;
         iter_next(it)) {
        if (!mask) break;
        b.acc += step(b, it);
        EntryRef r = ref(it.level, it.gfn);
        if (!is_leaf(*r.e)) continue;
        if (it.level > 1 || !(mask & (std::uint64_t{1} << (it.gfn - gfn)))) continue;
        mask &= ~(std::uint64_t{1} << (it.gfn - gfn));
        // tdp_mmu_clear_spte_bits: an atomic AND (the SPTE has volatile bits), priced as the
        // bulk walks' cmpxchg.
        (this->*(wrprot ? &X86TdpMmu::wrprot_leaf : &X86TdpMmu::clear_dirty_leaf))(b, it, r);
    }
}

// write_protect_gfn (kvm_mmu_slot_gfn_write_protect), under mmu_lock write: clear Writable and
// MMU-writable on the leaf mapping gfn at min_level or above (so the fast path cannot undo it).
void X86TdpMmu::write_protect_gfn(Bulk& b, Gfn gfn, int min_level) {
    TdpIter it;
    for (iter_start(it, min_level, gfn); it.valid && it.gfn < gfn + 1; iter_next(it)) {
        b.acc += step(b, it);
        EntryRef r = ref(it.level, it.gfn);
        if (!is_leaf(*r.e)) continue;
        const auto ne = static_cast<std::uint8_t>(*r.e & ~(spte::W | spte::MW));
        if (ne == *r.e) break;
        *r.e = ne;
        b.acc += touch(b.cpu, r.addr, true) + k_.spte_cmpxchg + k_.spte_update;
        sim_.counters().add(mc_->wrprot);
    }
}

// kvm_arch_mmu_enable_log_dirty_pt_masked, mmu_lock held for write: the 4K SPTEs write-protected,
// or with PML (kvm_x86_ops.cpu_dirty_log_size) their Dirty bits cleared.
Task<void> X86TdpMmu::enable_log_dirty_pt_masked(Bulk& b, Slot& s, std::uint64_t offset, std::uint64_t mask) {
    if (s.manual_protect) {
        // Initially-all-set: huge pages were never write-protected; split and protect them now.
        const Gfn start = s.base + offset + static_cast<unsigned>(std::countr_zero(mask));
        const Gfn end = s.base + offset + 63 - static_cast<unsigned>(std::countl_zero(mask));
        if (cfg_.eager_page_split) co_await split_huge_pages_root(b, start, end + 1);
        write_protect_gfn(b, start, 2);
        if (((start + 511) & ~Gfn{511}) != ((end + 511) & ~Gfn{511})) write_protect_gfn(b, end, 2);
    }
    clear_dirty_pt_masked(b, s.base + offset, mask, !cfg_.pml);
}

// ---------------------------------------------------------------------------------------------
// PML (v6.9 arch/x86/kvm/vmx/vmx.c, arch/x86/kvm/x86.c, arch/x86/kvm/mmu/tdp_mmu.c)

bool X86TdpMmu::pml_log(std::uint32_t vcpu, std::size_t head, int level, Gfn gfn) const {
    if (!pml_.log(vcpu, gfn)) return false;  // the log is full: a VM exit before the write
    clean_[head] = 0;
    // The page walker's locked update of the SPTE: its line comes to the vCPU's CPU. Hits run in
    // time order (fault_lookahead() is zero), so the cache model sees them in order.
    pml_.assist(vcpu, k_.ept_dirty_assist + cache_.touch(pml_.cpu(vcpu), entry_addr(level, gfn), 8, true));
    return true;
}

// Is a write to gfn, which did not hit, a PML-full exit (a writable leaf with D clear and a full
// buffer) rather than an EPT violation?
bool X86TdpMmu::pml_full_exit(std::uint32_t vcpu, Gfn gfn) const {
    if (!pml_.full(vcpu)) return false;
    for (int level = 1; level <= 3; ++level) {
        const std::uint8_t e = entry(level, gfn);
        if (is_leaf(e)) return (e & spte::W) && clean_[age_index(level, gfn)];
    }
    return false;
}

// vmx_flush_pml_buffer: kvm_vcpu_mark_page_dirty for every logged GPA (its memslot through the
// vCPU's last-used-slot cache, then mark_page_dirty_in_slot's bitmap store), and the index reset.
Time X86TdpMmu::pml_flush(std::uint32_t vcpu, std::uint32_t cpu) {
    return pml_.flush(vcpu, k_.pml_flush_entry, [&](Gfn g) {
        Slot* s = slot_of(g);
        return s ? mark_page_dirty(*s, g, cpu) : Time::zero();
    });
}

// kvm_arch_sync_dirty_log before KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG reads the bitmap: every
// vCPU is kicked, and its VM exit flushes its PML buffer. The model flushes them at once, from
// the caller's CPU and in its time (the kernel's vCPUs do it on their own CPUs meanwhile).
void X86TdpMmu::sync_dirty_log(Bulk& b) {
    for (std::uint32_t i = 0; i < pml_.vcpus(); ++i) b.acc += pml_flush(i, b.cpu);
}

// ---------------------------------------------------------------------------------------------
// Host-side operations

// KVM_SET_USER_MEMORY_REGION adding KVM_MEM_LOG_DIRTY_PAGES: kvm_set_memslot (new slot with its
// dirty bitmap, swap, SRCU synchronization), then kvm_mmu_slot_apply_flags.
Task<void> X86TdpMmu::dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot, vm::DirtyLogOptions opts) {
    Slot& s = slot_by_id(slot);
    vm::Memslot& m = vm_.memslots[s.index];
    if (m.dirty_logging) co_return;
    Bulk b = make_bulk(cpu);
    co_await sim_.delay(k_.memslot_update);
    s.manual_protect = opts.manual_protect_initially_set;
    s.bitmap.assign((s.npages + 63) / 64, s.manual_protect ? ~std::uint64_t{0} : 0);
    if (s.manual_protect && (s.npages % 64)) s.bitmap.back() = (std::uint64_t{1} << (s.npages % 64)) - 1;
    m.dirty_logging = true;
    pml_.slot_logging(true);  // kvm_mmu_update_cpu_dirty_logging: PML on in every VMCS
    if (s.manual_protect) co_return;  // initially-all-set: nothing is write-protected now
    b.clock.start(sim_.now());
    if (cfg_.eager_page_split) {  // kvm_mmu_slot_try_split_huge_pages
        co_await lock(b, LockMode::Read, site_split_);
        co_await split_huge_pages_root(b, s.base, s.base + s.npages);
        co_await unlock(b);
    }
    if (cfg_.pml) {  // kvm_mmu_slot_leaf_clear_dirty
        co_await lock(b, LockMode::Read, site_clear_dirty_);
        co_await leaf_walk(b, s.base, s.base + s.npages, 1, &X86TdpMmu::clear_dirty_leaf);
        co_await unlock(b);
    }
    // kvm_mmu_slot_remove_write_access(slot, PG_LEVEL_4K), or PG_LEVEL_2M with PML
    co_await lock(b, LockMode::Read, site_wrprot_);
    co_await leaf_walk(b, s.base, s.base + s.npages, cfg_.pml ? 2 : 1, &X86TdpMmu::wrprot_leaf);
    co_await unlock(b);
    b.acc += tlb_.flush();  // kvm_flush_remote_tlbs_memslot, unconditionally
    co_await settle(b);
}

// KVM_GET_DIRTY_LOG: kvm_get_dirty_log_protect.
Task<std::uint64_t> X86TdpMmu::dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) {
    Slot& s = slot_by_id(slot);
    if (!vm_.memslots[s.index].dirty_logging || s.bitmap.empty()) co_return 0;  // -ENOENT
    Bulk b = make_bulk(cpu);
    if (cfg_.pml) sync_dirty_log(b);
    std::uint64_t harvested = 0;
    if (s.manual_protect) {  // the bitmap is copied as is; KVM_CLEAR_DIRTY_LOG protects
        harvested = co_await copy_dirty_bitmap(sim_, cache_, b, s, k_.dirty_bitmap_word);
        sim_.counters().add(mc_->dirty_harvested, harvested);
        co_return harvested;
    }
    bool flush = false;
    co_await lock(b, LockMode::Write, site_get_);  // KVM_MMU_LOCK
    for (std::size_t i = 0; i < s.bitmap.size(); ++i) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        read_dirty_word(cache_, b, s, i, k_.dirty_bitmap_word);
        const std::uint64_t mask = take_dirty_word(cache_, b, s, i);
        if (!mask) continue;
        flush = true;
        harvested += static_cast<std::uint64_t>(std::popcount(mask));
        co_await enable_log_dirty_pt_masked(b, s, i * 64, mask);
    }
    co_await unlock(b);
    if (flush) b.acc += tlb_.flush();  // kvm_flush_remote_tlbs_memslot
    co_await settle(b);
    sim_.counters().add(mc_->dirty_harvested, harvested);
    co_return harvested;
}

// KVM_CLEAR_DIRTY_LOG: kvm_clear_dirty_log_protect, for every page of [first, first + npages)
// (first is a gfn; rounded down to a multiple of 64 pages of the slot).
Task<void> X86TdpMmu::dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, Gfn first, std::uint64_t npages) {
    Slot& s = slot_by_id(slot);
    if (!vm_.memslots[s.index].dirty_logging || !s.manual_protect || s.bitmap.empty()) co_return;  // -EINVAL
    if (first < s.base || first - s.base >= s.npages || npages == 0) co_return;
    const std::uint64_t off0 = (first - s.base) & ~std::uint64_t{63};
    const std::uint64_t last = std::min(first - s.base + npages, s.npages);  // exclusive, slot-relative
    Bulk b = make_bulk(cpu);
    if (cfg_.pml) sync_dirty_log(b);
    bool flush = false;
    co_await lock(b, LockMode::Write, site_clear_);
    for (std::uint64_t off = off0; off < last; off += 64) {
        if (b.acc >= kSettleQuantum) co_await settle(b);
        const std::size_t i = off / 64;
        b.acc += k_.dirty_bitmap_word;
        if (i % 8 == 0) b.acc += touch(b.cpu, s.bitmap_addr + i * 8, false);
        const std::uint64_t lo = std::max(off, first - s.base) - off;
        const std::uint64_t hi = std::min(off + 64, last) - off;
        const std::uint64_t user = (hi == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << hi) - 1) &
                                   ~((std::uint64_t{1} << lo) - 1);
        const std::uint64_t mask = user & s.bitmap[i];  // atomic_long_fetch_andnot
        if (!mask) continue;
        s.bitmap[i] &= ~user;
        b.acc += touch(b.cpu, s.bitmap_addr + i * 8, true);
        flush = true;
        co_await enable_log_dirty_pt_masked(b, s, off, mask);
    }
    co_await unlock(b);
    if (flush) b.acc += tlb_.flush();
    co_await settle(b);
}

// KVM_SET_USER_MEMORY_REGION removing KVM_MEM_LOG_DIRTY_PAGES: kvm_set_memslot, then
// kvm_mmu_slot_apply_flags -> kvm_mmu_zap_collapsible_sptes (v6.9; v6.13 recovers huge pages in
// place instead).
Task<void> X86TdpMmu::dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) {
    Slot& s = slot_by_id(slot);
    vm::Memslot& m = vm_.memslots[s.index];
    if (!m.dirty_logging) co_return;
    Bulk b = make_bulk(cpu);
    co_await sim_.delay(k_.memslot_update);
    m.dirty_logging = false;
    pml_.slot_logging(false);  // kvm_mmu_update_cpu_dirty_logging: PML off once none logs
    s.bitmap.clear();
    s.bitmap.shrink_to_fit();
    s.manual_protect = false;
    b.clock.start(sim_.now());
    co_await lock(b, LockMode::Read, site_collapsible_);
    co_await zap_collapsible_spte_range(b, s);
    co_await unlock(b);
    if (cfg_.pml && cfg_.pml_slot_set_dirty) {
        // Before v5.12 (b6e16ae5d99f): vmx_slot_disable_log_dirty -> kvm_mmu_slot_set_dirty,
        // under mmu_lock taken exclusively, then a flush if any SPTE changed.
        co_await lock(b, LockMode::Write, site_set_dirty_);
        const bool flush = co_await leaf_walk(b, s.base, s.base + s.npages, 1, &X86TdpMmu::set_dirty_leaf) > 0;
        co_await unlock(b);
        if (flush) b.acc += tlb_.flush();  // kvm_arch_flush_remote_tlbs_memslot
    }
    co_await settle(b);
}

// kvm_zap_gfn_range (MTRR / CR0.CD changes), with seed 003's lock modes.
Task<void> X86TdpMmu::zap_gfn_range(const vm::CpuContext& cpu, Gfn start, Gfn end, vm::ZapReason reason) {
    (void)reason;
    if (end <= start) co_return;  // WARN_ON_ONCE(gfn_end <= gfn_start)
    Bulk b = make_bulk(cpu);
    co_await lock(b, LockMode::Write, site_zap_);
    inv_.begin();
    inv_.range_add(start, end);
    bool flush = false;
    switch (cfg_.zap_lock) {
        case ZapLock::Write:  // v6.x
            flush = co_await zap_leafs(b, start, end, false);
            break;
        case ZapLock::DropWriteZapRead:  // Sean Christopherson, 2023-09-05
            co_await unlock(b);
            co_await lock(b, LockMode::Read, site_zap_);
            flush = co_await zap_leafs(b, start, end, false);
            co_await unlock(b);
            co_await lock(b, LockMode::Write, site_zap_);
            break;
        case ZapLock::Read:  // Yan Zhao, [PATCH v4 12/12], 2023-07-14
            co_await unlock(b);
            co_await lock(b, LockMode::Read, site_zap_);
            co_await zap_range_atomic(b, start, end);
            co_await unlock(b);
            co_await lock(b, LockMode::Write, site_zap_);
            break;
    }
    if (flush) b.acc += tlb_.flush();  // kvm_flush_remote_tlbs_range
    co_await settle(b);
    inv_.end(sim_.now());
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_invalidate_range_start: under mmu_lock for write, kvm_mmu_invalidate_begin and
// range_add, then kvm_unmap_gfn_range -> kvm_tdp_mmu_unmap_gfn_range (tdp_mmu_zap_leafs) and the
// flush. Faults that snapshotted the sequence before it retry (is_page_fault_stale).
Task<void> X86TdpMmu::invalidate_range_start(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    Bulk b = make_bulk(cpu);
    co_await lock(b, LockMode::Write, site_mn_start_);
    inv_.begin();
    inv_.range_add(start, end);
    const bool flush = co_await zap_leafs(b, start, end, false);
    if (flush) b.acc += tlb_.flush();
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_invalidate_range_end: kvm_mmu_invalidate_end under mmu_lock for write.
Task<void> X86TdpMmu::invalidate_range_end(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    (void)start;
    (void)end;
    Bulk b = make_bulk(cpu);
    co_await lock(b, LockMode::Write, site_mn_end_);
    inv_.end(sim_.now());
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_change_pte (set_pte_at_notify in wp_page_copy): gone in v6.9 (commit
// f3b65bbaed7c, "KVM: delete .change_pte MMU notifier callback"). Before, inside the invalidation
// it took mmu_lock for write and walked to the gfn (kvm_tdp_mmu_set_spte_gfn), only to find the
// SPTE invalidate_range_start had zapped already: nothing in the model's state would change.
Task<void> X86TdpMmu::change_pte(const vm::CpuContext& cpu, Gfn gfn) {
    (void)cpu;
    (void)gfn;
    co_return;
}

// The scenario operation "invalidate" (a host unmap of [start, end)): the host's unmap, which
// calls invalidate_range_start and _end around dropping its pages.
Task<void> X86TdpMmu::invalidate_range(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    co_await host_->unmap(cpu, start, end);
}


// ---------------------------------------------------------------------------------------------
// Access tracking (v6.9 kvm_age_gfn / kvm_test_age_gfn -> kvm_tdp_mmu_age_gfn_range /
// kvm_tdp_mmu_test_age_gfn; v6.14 with age_lock = "lockless")

std::size_t X86TdpMmu::age_index(int level, Gfn gfn) const {
    const std::size_t base = static_cast<std::size_t>(region_of(gfn)) << 18;
    if (level == 1) return base | (gfn & 0x3ffff);
    if (level == 2) return base | (gfn & 0x3fe00);
    return base;
}

bool X86TdpMmu::aged(Gfn gfn) const {
    if (aged_.empty() || region_of(gfn) == kNoRegion) return false;
    for (int level = 1; level <= 3; ++level)
        if (is_leaf(entry(level, gfn))) return aged_[age_index(level, gfn)] != 0;
    return false;
}

// age_gfn_range / test_age_gfn (tdp_mmu.c): walk the leaves of [start, end) (tdp_root_for_each_leaf_pte)
// and, for a leaf whose Accessed bit is set, clear it with an atomic AND (tdp_mmu_clear_spte_bits:
// the A/D bits are volatile, so atomic under either lock mode; v6.14's
// tdp_mmu_clear_spte_bits_atomic) or only report it (test_young). No TLB flush: clear_young never
// flushes (kvm_handle_hva_range_no_flush). Returns whether a leaf was young.
bool X86TdpMmu::age_gfn_range(Bulk& b, Gfn start, Gfn end, bool clear) {
    bool young = false;
    TdpIter it;
    for (iter_start(it, 1, start); it.valid && it.gfn < end; iter_next(it)) {
        b.acc += step(b, it);
        if (!is_leaf(entry(it.level, it.gfn))) continue;
        std::uint8_t& a = aged_[age_index(it.level, it.gfn)];
        if (a) continue;  // is_accessed_spte() false: nothing to do
        young = true;
        if (!clear) break;  // kvm_tdp_mmu_test_age_gfn returns at the first young leaf
        a = 1;
        b.acc += touch(b.cpu, entry_addr(it.level, it.gfn), true) + k_.spte_cmpxchg;
        sim_.counters().add(sim_.counters().id("sptes_aged"));
    }
    return young;
}

// The host's aging of [start, end): per host page, the caller's own work, then the MMU notifier
// (kvm_mmu_notifier_clear_young / test_young -> kvm_handle_hva_range): mmu_lock for write
// (KVM_MMU_LOCK, v6.9) or none (v6.14: range->lockless, under RCU), the walk, the unlock.
Task<std::uint64_t> X86TdpMmu::age_range(const vm::CpuContext& cpu, const vm::AgeRequest& r) {
    if (aged_.empty()) aged_.assign(pte_.size(), 0);
    const bool locked = cfg_.age_lock == AgeLock::Write;
    Bulk b = make_bulk(cpu);
    co_return co_await age_hva_range(
        sim_, b, r, ak_.caller(r.via) + ak_.mmu_notifier_young,
        [this](Gfn g) {
            const std::uint64_t host_pages = pages_at(host_mapping_level(g));  // 4K outside every slot
            return (g / host_pages + 1) * host_pages;
        },
        [&](Gfn g, Gfn e, engine::Site site) -> Task<std::optional<bool>> {
            if (!slot_of(g)) co_return std::nullopt;  // kvm_handle_hva_range finds no memslot
            if (locked) co_await lock(b, LockMode::Write, site);
            const bool young = age_gfn_range(b, g, e, r.clear);
            if (locked) co_await unlock(b);
            co_return young;
        },
        [&] { return settle(b); });
}

// ---------------------------------------------------------------------------------------------
// Roots and SMM (see docs/models/x86_context.md)

// kvm_calc_tdp_mmu_root_page_role: direct, 4-level, the CPU role's SMM and guest mode.
x86_context::RootRole X86TdpMmu::root_role(const x86_context::CpuRole& role) const {
    x86_context::RootRole r;
    r.level = kRootLevel;
    r.direct = true;
    r.smm = role.smm;
    r.guest_mode = role.guest_mode;
    return r;
}

bool X86TdpMmu::in_smm(std::uint32_t vcpu) const { return vcpus_.at(vcpu)->role.smm; }

int X86TdpMmu::root_refcount(std::uint64_t hpa) const {
    for (const TdpRoot& r : roots_)
        if (r.hpa == hpa) return r.refcount;
    return 0;
}

// mmu_alloc_direct_roots -> kvm_tdp_mmu_get_vcpu_root_hpa (v6.4-v6.9: a walk of tdp_mmu_roots
// for a valid root with the same role whose refcount can be raised, else a new root from the
// vCPU's caches added at the head). Lock: read in v6.9 (preserve), write before v6.4 (drop).
Task<std::uint64_t> X86TdpMmu::get_root(const vm::CpuContext& cpu, x86_context::RootRole role, Gfn pgd) {
    (void)pgd;  // direct roots
    VcpuState& v = *vcpus_.at(static_cast<std::size_t>(cpu.vcpu));
    Time t = topup_caches(v);  // kvm_mmu_load: mmu_topup_memory_caches
    co_await sim_.delay(t);
    t = Time::zero();
    const LockMode mode = cfg_.preserve_roots ? LockMode::Read : LockMode::Write;
    const Time asked = sim_.now();
    engine::LockGuard g =
        co_await (mode == LockMode::Read ? mmu_lock_.read(site_alloc_root_) : mmu_lock_.write(site_alloc_root_));
    t += lock_word_.acquired(cpu.host_cpu, mode, asked, sim_.now());
    std::uint64_t hpa = 0;
    for (TdpRoot& r : roots_) {
        t += k_.tdp_root_lookup_step + touch(cpu.host_cpu, r.hpa, false);  // the root's header
        sim_.counters().add(mc_->root_walk);
        if (r.role.word() == role.word() && r.refcount > 0) {
            ++r.refcount;
            hpa = r.hpa;
            sim_.counters().add(mc_->root_reuse);
            break;
        }
    }
    if (hpa == 0) {
        // tdp_mmu_alloc_sp: a header and a page from the vCPU's caches.
        if (!v.header.alloc()) t += v.header.cost_per_object();
        if (!v.page.alloc()) t += v.page.cost_per_object();
        hpa = pt_alloc_.alloc();
        t += touch(cpu.host_cpu, hpa, true, 4096);
        roots_.insert(roots_.begin(), TdpRoot{role, hpa, 1 + (cfg_.preserve_roots ? 1 : 0)});
        sim_.counters().add(mc_->root_alloc);
        if (role.as_id() == 0) root_hpa_ = hpa;
    }
    co_await sim_.delay(t);
    g.unlock();
    co_await sim_.delay(lock_word_.released(cpu.host_cpu, mode, sim_.now()));
    co_return hpa;
}

// tdp_mmu_zap_root on the address-space-0 tree (the root's last reference is gone): every
// top-level SPTE's subtree goes through handle_removed_pt. Records what was mapped, so that the
// faults that map it again count as root_rebuild_faults. Returns the work.
Time X86TdpMmu::zap_root_tree(std::uint32_t cpu) {
    if (was_mapped_.empty()) was_mapped_.assign((pte_.size() + 63) / 64, 0);
    auto mark = [&](std::size_t first, std::size_t n) {
        for (std::size_t b = first; b < first + n; ++b) was_mapped_[b / 64] |= std::uint64_t{1} << (b % 64);
    };
    for (std::size_t r = 0; r < pdpte_.size(); ++r) {
        const std::size_t base = r << 18;
        if (is_leaf(pdpte_[r])) {
            mark(base, std::size_t{1} << 18);
            continue;
        }
        if (!is_table(pdpte_[r])) continue;
        for (std::size_t d = 0; d < 512; ++d) {
            const std::uint8_t e = pde_[r * 512 + d];
            if (is_leaf(e)) {
                mark(base + d * 512, 512);
            } else if (is_table(e)) {
                for (std::size_t k = 0; k < 512; ++k)
                    if (is_leaf(pte_[base + d * 512 + k])) mark(base + d * 512 + k, 1);
            }
        }
    }
    Time cost;
    for (Pml4e& p : pml4_) {
        cost += k_.tdp_iter_step + touch(cpu, root_hpa_ + (p.g512 & 511) * 8, true);
        if (!is_table(p.e)) continue;
        cost += k_.spte_cmpxchg + remove_subtree(4, p.g512 << 27, false, cpu) + k_.spte_update;
        p.e = 0;
        p.serial = 0;
        p.page = 0;
    }
    return cost;
}

// kvm_mmu_free_roots -> kvm_tdp_mmu_put_root for each root: under mmu_lock (read in v6.9, write
// before v6.4). With preserve (v6.4+) the TDP MMU's own reference keeps a valid root; with drop
// the last put zaps the root's tree synchronously and frees it (v5.17/v5.18's put_root).
Task<void> X86TdpMmu::put_roots(const vm::CpuContext& cpu, std::vector<std::uint64_t> roots) {
    const LockMode mode = cfg_.preserve_roots ? LockMode::Read : LockMode::Write;
    const Time asked = sim_.now();
    engine::LockGuard g =
        co_await (mode == LockMode::Read ? mmu_lock_.read(site_free_roots_) : mmu_lock_.write(site_free_roots_));
    Time t = lock_word_.acquired(cpu.host_cpu, mode, asked, sim_.now());
    for (std::uint64_t hpa : roots) {
        auto it = std::find_if(roots_.begin(), roots_.end(), [&](const TdpRoot& r) { return r.hpa == hpa; });
        if (it == roots_.end()) throw std::logic_error("x86_tdp: put of an unknown root");
        sim_.counters().add(mc_->root_put);
        t += touch(cpu.host_cpu, hpa, true);  // refcount_dec_and_test on the root's header
        if (--it->refcount > 0) continue;
        if (it->role.as_id() == 0) t += zap_root_tree(cpu.host_cpu);
        pt_alloc_.free(hpa);
        roots_.erase(it);
        sim_.counters().add(mc_->root_free);
    }
    co_await sim_.delay(t);
    g.unlock();
    co_await sim_.delay(lock_word_.released(cpu.host_cpu, mode, sim_.now()));
}

Task<bool> X86TdpMmu::new_pgd(const vm::CpuContext& cpu, Gfn pgd) {
    const bool hit = co_await ctx_->new_pgd(cpu, pgd);
    co_await ctx_->reload(cpu);
    co_return hit;
}

// The cache lines [addr, addr + bytes) covers.
std::uint64_t X86TdpMmu::lines_of(std::uint64_t addr, std::uint64_t bytes) const {
    if (bytes == 0) return 0;
    const std::uint64_t line = cache_.config().line_bytes;
    return (addr + bytes - 1) / line - addr / line + 1;
}

// kvm_vcpu_write_guest / kvm_vcpu_read_guest of [gpa, gpa + bytes), page by page
// (kvm_vcpu_write_guest_page): the memslot's userspace mapping through copy_to_user /
// copy_from_user, then, for a write, mark_page_dirty_in_slot. A GPA outside every memslot makes
// the kernel's call fail (enter_smm then kills the VM); the scenario loader rejects such an
// SMBASE, so it is a logic error here.
Time X86TdpMmu::guest_copy(std::uint32_t cpu, std::uint64_t gpa, std::uint64_t bytes, bool write) {
    Time t;
    for (std::uint64_t a = gpa; a < gpa + bytes;) {
        const Gfn gfn = a / vm::kPageSize;
        const std::uint64_t n = std::min(gpa + bytes, (gfn + 1) * vm::kPageSize) - a;
        Slot* s = slot_of(gfn);
        if (!s) throw std::logic_error("x86_tdp: kvm_vcpu_" + std::string(write ? "write" : "read") +
                                       "_guest outside every memslot (the SMRAM state-save area)");
        sim_.counters().add(mc_->smram_lines, lines_of(a, n));
        t += touch(cpu, guest_memory_addr(a), write, n);
        if (write) t += mark_page_dirty(*s, gfn, cpu);
        a += n;
    }
    return t;
}

// An SMI taken (enter_smm) or RSM emulated (emulator_leave_smm), v6.9 arch/x86/kvm/smm.c, then
// the next entry's kvm_mmu_reload. The guest is in flat protected mode without paging, so the
// CR0/CR4/EFER writes of both paths change no role bit: enter_smm resets the context twice
// (kvm_smm_changed, and its end), the second with an unchanged role; RSM resets it once
// (kvm_smm_changed). The state-save image goes through the kernel stack (union kvm_smram) and
// guest memory at smbase + 0xfe00, in the kernel's order. After an SMI the guest's SMI handler
// runs on the vCPU's host CPU and touches its working set (handler) before RSM can be executed.
// The vCPU's guest stream is held from the transition's start until RSM.
Task<void> X86TdpMmu::smm_transition(const vm::CpuContext& cpu, bool enter, const vm::SmiHandler& handler) {
    if (cpu.vcpu < 0 || static_cast<std::size_t>(cpu.vcpu) >= vcpus_.size())
        throw std::invalid_argument("x86_tdp: smm_transition on '" + cpu.name + "', which is not a vCPU of the VM");
    const auto i = static_cast<std::size_t>(cpu.vcpu);
    VcpuState& v = *vcpus_[i];
    co_await hold_.serialize(static_cast<std::uint32_t>(i));
    // An SMI in SMM is latched, an RSM outside SMM is #UD: nothing for the MMU (counted).
    if (v.role.smm == enter) {
        sim_.counters().add(mc_->smm_ignored);
        co_return;
    }
    co_await hold_.hold(static_cast<std::uint32_t>(i));  // the SMI is taken at the next entry
    sim_.counters().add(enter ? mc_->smm_enter : mc_->smm_exit);
    constexpr std::uint64_t kSmram = 512;  // sizeof(union kvm_smram), at smbase + 0xfe00
    const std::uint32_t hc = cpu.host_cpu;
    if (enter) {
        v.smbase = handler.smbase;
        // memset and enter_smm_save_state_64/32 into the on-stack image; the vendor callbacks.
        co_await sim_.delay(k_.smm_transition + touch(hc, v.smram_buf, true, kSmram));
        v.role.smm = true;
        co_await ctx_->reset_context(cpu, v.role);  // kvm_smm_changed(vcpu, true)
        // kvm_vcpu_write_guest(vcpu, smbase + 0xfe00, &smram, sizeof(smram)).
        co_await sim_.delay(touch(hc, v.smram_buf, false, kSmram) + guest_copy(hc, v.smbase + 0xfe00, kSmram, true));
        co_await ctx_->reset_context(cpu, v.role);  // end of enter_smm
        co_await ctx_->reload(cpu);                 // vcpu_enter_guest -> kvm_mmu_reload
        // The guest's SMI handler (code, stack, data): reads, then writes, through the caches of
        // the vCPU's host CPU. RSM is its last instruction, so RSM waits for it.
        if (handler.read_bytes + handler.write_bytes > 0) {
            sim_.counters().add(mc_->smi_handler_lines, lines_of(handler.start, handler.read_bytes) +
                                                            lines_of(handler.start + handler.read_bytes, handler.write_bytes));
            co_await sim_.delay(
                touch(hc, guest_memory_addr(handler.start), false, handler.read_bytes) +
                touch(hc, guest_memory_addr(handler.start + handler.read_bytes), true, handler.write_bytes));
        }
    } else {
        // kvm_vcpu_read_guest(vcpu, smbase + 0xfe00, smram.bytes, sizeof(smram)) into the stack.
        co_await sim_.delay(k_.smm_transition + guest_copy(hc, v.smbase + 0xfe00, kSmram, false) +
                            touch(hc, v.smram_buf, true, kSmram));
        v.role.smm = false;
        co_await ctx_->reset_context(cpu, v.role);  // kvm_smm_changed(vcpu, false)
        // rsm_load_state_64/32 reads the image back.
        co_await sim_.delay(touch(hc, v.smram_buf, false, kSmram));
        co_await ctx_->reload(cpu);
    }
    hold_.end(static_cast<std::uint32_t>(i), !enter);  // an SMI keeps the stream held until RSM
}

// ---------------------------------------------------------------------------------------------
// NX huge page recovery

void X86TdpMmu::start_vm_workers(const vm::CpuContext& cpu) {
    if (cfg_.nx_recovery_period() == 0 || nx_running_) return;
    nx_running_ = true;
    nx_stop_ = false;
    vm::CpuContext c = cpu;
    c.name = "kvm-nx-lpage-recovery";
    sim_.spawn(c.name, nx_recovery_worker(c));
}

// kthread_stop: a worker asleep wakes and returns; one recovering finishes its pass first.
void X86TdpMmu::stop_vm_workers() {
    if (!nx_running_) return;
    nx_stop_ = true;
    sim_.cancel(*nx_timer_);
    nx_wake_->notify_all();
}

// kvm_nx_huge_page_recovery_worker: sleep a period (from the end of the last pass), recover.
// The kernel's jiffies rounding of the period is left out.
Task<void> X86TdpMmu::nx_recovery_worker(vm::CpuContext cpu) {
    const Time period = Time::ms(cfg_.nx_recovery_period());
    while (!nx_stop_) {
        sim_.schedule(sim_.now() + period, *nx_timer_);
        co_await nx_wake_->wait();
        if (nx_stop_) break;
        co_await recover_nx_huge_pages(cpu);
    }
    nx_running_ = false;
}

// cond_resched_rwlock_read/write after kvm_mmu_remote_flush_or_zap.
Task<void> X86TdpMmu::nx_yield(Bulk& b, bool flush) {
    TdpIter it;  // no walk to restart
    co_await cond_resched(b, it, flush);
    sim_.counters().add(mc_->nx_yields);
}

// kvm_recover_nx_huge_pages: zap DIV_ROUND_UP(nr_possible_nx_huge_pages, ratio) of the tracked page
// tables, oldest first, so that the range faults again (a non-exec access may then map a huge
// page). nx_recovery_lock:
//  - write (v6.9): under mmu_lock write; kvm_tdp_mmu_zap_sp -> tdp_mmu_set_spte(0), whose
//    handle_removed_pt (not shared) clears the children and tdp_mmu_unlink_sp untracks the table
//    under tdp_mmu_pages_lock;
//  - read ([PATCH v5 3/7], 2025): under mmu_lock read; the first table is taken off the list and
//    unaccounted under tdp_mmu_pages_lock, then kvm_tdp_mmu_zap_possible_nx_huge_page zaps its
//    SPTE with tdp_mmu_set_spte_atomic (a cmpxchg to non-present; handle_removed_pt shared).
// Either way one flush at the end or before a yield (kvm_mmu_remote_flush_or_zap), and a yield
// after any table when need_resched() || rwlock_needbreak().
Task<void> X86TdpMmu::recover_nx_huge_pages(vm::CpuContext cpu) {
    const bool shared = cfg_.nx_recovery_read;
    sim_.counters().add(mc_->nx_recoveries);
    Bulk b = make_bulk(cpu);
    co_await lock(b, shared ? LockMode::Read : LockMode::Write, site_nx_recovery_);
    const auto ratio = static_cast<std::uint64_t>(cfg_.nx_recovery_ratio);
    std::uint64_t to_zap = ratio ? (nx_list_.size() + ratio - 1) / ratio : 0;
    bool flush = false;
    for (; to_zap; --to_zap) {
        if (shared) b.acc += pages_lock(b.cpu, sim_.now() + b.acc);
        if (nx_list_.empty()) break;
        const auto [level, gfn] = nx_list_.begin()->second;
        EntryRef r = ref(level, gfn);
        b.acc += k_.tdp_iter_step + touch(b.cpu, r.addr, true);
        // v6.2+ (David Matlack, "KVM: x86/mmu: Do not recover dirty-tracked NX Huge Pages"): a
        // table in a slot that logs dirty pages is only unaccounted; disabling dirty logging
        // recovers its huge page with the others.
        const Slot* s = slot_of(gfn);
        if (s && vm_.memslots[s->index].dirty_logging) {
            unlink_nx(r);
            sim_.counters().add(mc_->nx_dirty_skipped);
            continue;
        }
        if (shared) {
            unlink_nx(r);  // unaccount_nx_huge_page before the zap
            b.acc += replace_table(b, level, gfn, 0);
        } else {
            b.acc += remove_subtree(level, gfn, false, b.cpu) + k_.spte_update;
            b.acc += pages_lock(b.cpu, sim_.now() + b.acc);  // tdp_mmu_unlink_sp
            clear_entry(level, gfn);
        }
        sim_.counters().add(mc_->nx_zapped);
        flush = true;
        co_await settle(b);
        if (needbreak() || b.clock.need_resched(sim_.now())) {
            co_await nx_yield(b, flush);
            flush = false;
        }
    }
    if (flush) {
        co_await settle(b);
        co_await sim_.delay(tlb_.flush());
    }
    co_await unlock(b);
    co_await settle(b);
}

}  // namespace x86_tdp

// ---------------------------------------------------------------------------------------------
// Registration

// The hardware's refill of a guest TLB miss: a 4-level EPT walk from the root to the leaf (4 levels
// to a 4K SPTE, 3 to 2M, 2 to 1G), the entry cached at the leaf's size. Emptied by every
// kvm_flush_remote_tlbs (RemoteTlbFlush).
engine::Time x86_tdp::X86TdpMmu::tlb_refill(std::uint32_t vcpu, vm::Gfn gfn) {
    const std::uint64_t r = (gfn >> 18) - lut_base_;
    if (r >= lut_.size() || lut_[r] == kNoRegion) return engine::Time::zero();
    const std::uint32_t ri = lut_[r];
    int size = -1;
    if (pte_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)] & x86_tdp::spte::P)
        size = 0;
    else if (pde_[(static_cast<std::size_t>(ri) << 9) | ((gfn >> 9) & 511)] & x86_tdp::spte::LEAF)
        size = 1;
    else if (pdpte_[ri] & x86_tdp::spte::LEAF)
        size = 2;
    if (size < 0) return engine::Time::zero();
    gtlb_->fill(vcpu, gfn, size);
    const auto levels = static_cast<std::uint64_t>(4 - size);
    sim_.counters().add(tlb_miss_id_);
    sim_.counters().add(tlb_walk_id_, levels);
    return k_.tlb_walk_level * static_cast<std::int64_t>(levels);
}

vm::ModelInfo x86_tdp_model_info() {
    vm::ModelInfo info;
    info.name = "x86_tdp";
    info.summary =
        "x86 TDP MMU (EPT/NPT): faults under mmu_lock read with cmpxchg installs, fast page faults, "
        "dirty logging with eager splitting (write protection, or Intel PML with host feature pml), "
        "kvm_zap_gfn_range lock modes (seed 003)";
    info.kernel =
        "Linux v6.9: arch/x86/kvm/mmu/tdp_mmu.c, arch/x86/kvm/mmu/mmu.c, arch/x86/kvm/x86.c "
        "(kvm_mmu_slot_apply_flags), virt/kvm/kvm_main.c; zap_lock alternatives from Yan Zhao's "
        "'[PATCH v4 12/12] KVM: x86/mmu: convert kvm_zap_gfn_range() to use shared mmu_lock in TDP MMU' "
        "(2023-07-14) and Sean Christopherson's reply of 2023-09-05";
    info.knobs = {
        choice_knob("fault_lock", "read", {"read", "write"},
               "mmu_lock mode of the TDP MMU fault path: 'read' (parallel faults, v5.12+) or 'write' "
               "(exclusive, before v5.12). Other paths keep their v6.9 lock modes."),
        [] {
            vm::KnobSpec k = choice_knob(
                "age_lock", "write", {"write", "lockless"},
                "kvm_age_gfn / kvm_test_age_gfn from the clear_young/test_young MMU notifiers: 'write' = v6.9 "
                "(kvm_handle_hva_range takes mmu_lock for write) or 'lockless' = v6.14 (James Houghton, '[PATCH v8 "
                "00/11] KVM: x86/mmu: Age sptes locklessly', 2024-11: no mmu_lock, the TDP MMU's walk under RCU "
                "with atomic Accessed-bit clears). x86 never aged under mmu_lock for read");
            k.refused_choices = {{"read", "x86 never aged under mmu_lock for read: kvm_handle_hva_range took it for "
                                          "write (KVM_MMU_LOCK) until v6.14 made x86 aging lockless "
                                          "(CONFIG_KVM_MMU_LOCKLESS_AGING); 'read' is arm64's unmerged patch"}};
            return k;
        }(),
        choice_knob("zap_lock", "write", {"write", "read", "drop_write_zap_read"},
               "kvm_zap_gfn_range (seed 003): 'write' = v6.x (write lock, 4K-granular leaf zap, yield on "
               "need_resched/rwlock_needbreak with a flush before each yield, one flush at the end); "
               "'read' = Yan Zhao's v4 12/12 (write lock for the invalidation, zap under the read lock with "
               "tdp_mmu_zap_spte_atomic: freeze, flush, clear, for every SPTE <= 1G fully in the range); "
               "'drop_write_zap_read' = Sean Christopherson's suggestion (take write, drop it, zap leaves "
               "under read with cmpxchg and batched flushes, retake write)"),
        bool_knob("fault_precheck", true,
                "v6.8+: kvm_faultin_pfn retries the fault before taking mmu_lock while an invalidation "
                "covers the gfn (mmu_invalidate_retry_gfn_unsafe); false = the earlier behaviour"),
        bool_knob("eager_page_split", true,
                "kvm.eager_page_split: split huge pages when dirty logging is enabled (or, with "
                "initially-all-set, on KVM_CLEAR_DIRTY_LOG) instead of on the first write fault"),
        bool_knob("preempt", true,
                "host kernel with CONFIG_PREEMPTION (preempt=full): rwlock_needbreak() reports mmu_lock "
                "waiters, so long walks yield to them; false = PREEMPT_NONE/VOLUNTARY, where "
                "rwlock_needbreak() is always false and walks yield only on need_resched()"),
        choice_knob("tdp_root_unload", "preserve", {"preserve", "drop"},
               "what kvm_mmu_unload does to a TDP MMU root (seed 002): 'preserve' = v6.4+ (the TDP MMU "
               "holds a reference to every valid root, so an unloaded root is found again on reload); "
               "'drop' = before v6.4 (the last vCPU reference put frees the root and zaps its whole tree, "
               "synchronously as in v5.17/v5.18, so the vCPU rebuilds it by faults). Also the mmu_lock mode "
               "of root allocation and kvm_mmu_free_roots: read (preserve, v6.9) or write (drop)"),
        choice_knob("fault_split", "in_place", {"in_place", "zap"},
               "what a fault that needs a smaller mapping does to a huge SPTE in the way (kvm_tdp_mmu_map): "
               "'in_place' = v6.2+ (David Matlack's 'KVM: x86/mmu: Split huge pages mapped by the TDP MMU on "
               "fault', commit c4b33d28ea51, merged for v6.2): tdp_mmu_split_huge_page fills a page with 512 "
               "children carrying the huge SPTE's permissions and links it; 'zap' = before v6.2 (v5.16's "
               "code is followed): tdp_mmu_zap_spte_atomic freezes the huge SPTE, flushes remote TLBs "
               "(kvm_flush_remote_tlbs_with_address) and clears it, then an empty page is linked, so every "
               "other 4K page of the huge range takes its own fault"),
        choice_knob("huge_page_recovery", "zap", {"zap", "zap_batched_flush", "in_place"},
               "what disabling dirty logging does to the page tables a huge page could now replace "
               "(kvm_mmu_slot_apply_flags -> kvm_mmu_zap_collapsible_sptes / kvm_mmu_recover_huge_pages): "
               "'zap' = v6.9's zap_collapsible_spte_range (tdp_mmu_zap_spte_atomic: freeze, a remote flush "
               "each, clear; the vCPUs fault the huge pages back in); 'zap_batched_flush' = v6.13, David "
               "Matlack's 'KVM: x86/mmu: Batch TLB flushes when zapping collapsible TDP MMU SPTEs' (commit "
               "35ef80eb29ab): one cmpxchg to non-present, the flushes batched (at a yield and at the end); "
               "'in_place' = v6.13, 'KVM: x86/mmu: Recover TDP MMU huge page mappings in-place instead of "
               "zapping' (commit 13e2e4f62a4b): the first leaf below gives the huge SPTE (make_huge_spte), "
               "installed with one cmpxchg in place of the table, flushes batched, no refault. Source: "
               "'[PATCH 0/7] KVM: x86/mmu: Optimize TDP MMU huge page recovery during disable-dirty-log', "
               "2024-08-05"),
        bool_knob("tdp_mmu_fast_page_fault", true,
                "fast_page_fault on TDP MMU roots (David Matlack's 'KVM: x86/mmu: fast_page_fault support for "
                "the TDP MMU', commit 6e8eb2060cc7, merged for v5.15); false = v5.10-v5.14, where "
                "direct_page_fault skipped fast_page_fault for a TDP MMU root, so a write-protection fault "
                "takes the full path: top-up, GUP, mmu_lock (fault_lock's mode), kvm_tdp_mmu_map"),
        [] {
            vm::KnobSpec k = bool_knob(
                "pml_slot_set_dirty", false,
                "with PML: true = before v5.12, where disabling dirty logging set every leaf SPTE's Dirty bit "
                "back (vmx_slot_disable_log_dirty -> kvm_mmu_slot_set_dirty -> the TDP MMU's "
                "set_dirty_gfn_range, under mmu_lock taken exclusively, then a flush); false = v5.12+ (Sean "
                "Christopherson's 'KVM: x86/mmu: Don't set dirty bits when disabling dirty logging w/ PML', "
                "commit b6e16ae5d99f)");
            k.requires_features = {{true, "pml", "the Dirty bits are those PML dirty logging cleared"}};
            return k;
        }(),
        int_knob("nx_huge_pages_recovery_ratio", 60, 0, x86_tdp::kUintMax,
                 "kvm.nx_huge_pages_recovery_ratio (Linux v6.9 default 60): with the host feature nx_huge_pages, "
                 "every period the recovery worker (kvm_nx_huge_page_recovery_worker) zaps "
                 "DIV_ROUND_UP(possible NX huge pages, ratio) of the page tables exec faults split, oldest "
                 "first; 0 = no recovery. Accepted but inert with nx_huge_pages off"),
        int_knob("nx_huge_pages_recovery_period_ms", 0, 0, x86_tdp::kUintMax,
                 "kvm.nx_huge_pages_recovery_period_ms: the worker's period; 0 = derived as Linux v6.9's "
                 "calc_nx_huge_pages_recovery_period does, 60*60*1000 / min(ratio, 3600) ms (at least a second)"),
        choice_knob("nx_recovery_lock", "write", {"write", "read"},
               "mmu_lock mode of NX huge page recovery: 'write' = Linux v6.9 (kvm_recover_nx_huge_pages under "
               "write_lock, kvm_tdp_mmu_zap_sp with tdp_mmu_set_spte, so faults wait for it); 'read' = Vipin "
               "Sharma / James Houghton, '[PATCH v5 3/7] KVM: x86/mmu: Recover TDP MMU NX huge pages using MMU "
               "read lock' (2025-07-07, applied to kvm-x86 mmu as a57750909580): under read_lock, the list walked "
               "under tdp_mmu_pages_lock, each table zapped with tdp_mmu_set_spte_atomic, so faults proceed"),
        x86_context::mmu_init_knob(),
    };
    info.costs = x86_tdp::Costs::names();
    for (const std::string& c : x86_context::Costs::names()) info.costs.push_back(c);
    for (const std::string& c : host::Costs::names()) info.costs.push_back(c);
    for (const std::string& c : AgingCosts::names()) info.costs.push_back(c);
    info.cost_minimums = {{"zero_rate", host::Costs::kMinZeroRate}, {"uffd_copy_rate", host::Costs::kMinZeroRate}};
    info.features = host::Features::names();
    info.features.push_back("nx_huge_pages");  // kvm.nx_huge_pages (the iTLB multihit mitigation)
    info.features.push_back("guest_tlb");      // the vCPUs' TLB model (sim/vm/guest_tlb.hpp)
    info.features.push_back("pml");            // kvm_intel.pml: Page Modification Logging
    for (const std::string& c : x86_tdp::Costs::optional_names()) info.costs.push_back(c);
    for (const char* c : {"tlb_entries_4k", "tlb_entries_2m", "tlb_entries_1g"}) {
        info.cost_maximums.emplace_back(c, 16384);
        info.cost_integers.emplace_back(c);
        info.cost_multiples.emplace_back(c, "tlb_ways");
    }
    info.cost_minimums.emplace_back("tlb_ways", 1);
    info.cost_maximums.emplace_back("tlb_ways", 64);
    info.cost_integers.emplace_back("tlb_ways");
    info.operations = {vm::Operation::DirtyLogEnable,  vm::Operation::DirtyLogGet, vm::Operation::DirtyLogClear,
                       vm::Operation::DirtyLogDisable, vm::Operation::ZapGfnRange, vm::Operation::Invalidate,
                       vm::Operation::SmmEnter,        vm::Operation::SmmExit,     vm::Operation::ClearYoung,
                       vm::Operation::TestYoung};
    info.create = [](vm::ModelEnv& env) -> std::unique_ptr<vm::MmuModel> {
        return std::make_unique<x86_tdp::X86TdpMmu>(env);
    };
    return info;
}

void register_x86_tdp(vm::ModelRegistry& registry) { registry.add(x86_tdp_model_info()); }

}  // namespace kvmsim::models
