// arm64 stage-2 model: see arm64_stage2.hpp for the kernel functions followed and
// docs/models/arm64_stage2.md for the design, the costs and what is left out.
//
// Descriptors. The stage-2 tables of a 40-bit IPA space with 4 KiB pages have three levels
// (kvm_pgtable levels 1, 2 and 3: 1 GiB blocks, 2 MiB blocks, 4 KiB pages; the level-1 table is
// two concatenated pages). One state byte per descriptor (pte:: bits) in flat arrays, one region
// per 1 GiB of IPA space overlapping a memslot. Invariant: the entries below anything but a
// linked table are zero, so hits() reads bottom-up.
//
// Two copies. vis*: what the guest's accesses see (hits). plan*: what walkers under mmu_lock
// read and write. With mmu_lock as a spinlock every walker runs alone, so a fault's whole hold
// is worked out when the lock is granted: plan* changes at once and each change reaches vis* at
// its simulated time (break, install) through a queue of timed publications. With the rwlock,
// walkers run concurrently and both copies change together at the simulated time of the change.
//
// Time, spinlock. mmu_lock is a FIFO lock, so a fault's grant time is the end of the holds
// reserved before it, and its hold's length follows from the state it finds then: the lock is a
// timeline of reserved holds (busy_until_). A fault takes at most four events: its GUP, its
// arrival at the lock, its put_page and its return to the guest; the first three are skipped when
// they can be taken ahead of the engine's clock (see call_now). A host operation holds the lock for an
// open-ended time; arrivals meanwhile queue and are given their holds when it releases the lock.
//
// Call points. A fault touches state other processes share at three moments: its GUP (the host's
// page tables, read; the mmap_lock, page-table-lock and refcount lines, FIFO in call order), its
// arrival at the lock (its hold: the descriptors, the sequence count, the cache model) and its
// put_page after spin_unlock (the refcount line). One event per access
// (set_early_arrivals(false)) makes each of them at its own time, so in time order; a call point
// taken ahead of its time must come in the same order as every other it does not commute with: it
// may only be taken when no such call point can come at or before it (call_now). Arrivals commute
// with GUPs and put_pages, not with each other, but the put_page that follows an arrival's hold
// can come sooner than min_lead_ after it: an arrival waiting for its event, or a fault queued
// behind a host operation, holds off GUPs and put_pages on its refcount line. GUPs and
// put_pages commute unless they share a line (host::GupLines: a refcount line, or the mmap_lock
// line, which every GUP here uses for user_mem_abort's VMA lookup: kVmaLookup); a GUP changing
// the host's page tables commutes with nothing while it is under way. A put_page is
// its own call point, at its time, so that a line is never held by a release far ahead of the
// GUPs that come before it.
#include "models/arm64_stage2/arm64_stage2.hpp"

#include <algorithm>
#include <bit>
#include <stdexcept>

#include "models/common/bulk.hpp"
#include "models/common/costs.hpp"
#include "models/common/knobs.hpp"
#include "models/common/memslots.hpp"
#include "models/common/regions.hpp"

namespace kvmsim::models {
namespace arm64_stage2 {

using engine::LockMode;
using engine::Task;
using engine::Time;
using vm::Gfn;

namespace {

constexpr std::uint32_t kMinCachePages = 2;  // kvm_mmu_cache_min_pages: kvm_stage2_levels - 1
constexpr std::uint64_t kMaxDvmOps = 512;    // MAX_DVM_OPS (PTRS_PER_PTE): lines per ranged I-cache op

constexpr std::uint64_t pages_at(int level) { return std::uint64_t{1} << (9 * (3 - level)); }
constexpr Gfn round_gfn(Gfn gfn, int level) { return gfn & ~(pages_at(level) - 1); }
constexpr std::uint32_t idx2(Gfn gfn) { return static_cast<std::uint32_t>((gfn >> 9) & 511); }
constexpr bool is_table(std::uint8_t e) { return (e & pte::TABLE) == pte::TABLE; }
constexpr bool is_leaf(std::uint8_t e) { return (e & pte::TABLE) == pte::V; }
vm::PageLevel page_level(int level) { return static_cast<vm::PageLevel>(4 - level); }

enum Ret : std::uint8_t { kFixed, kSpurious, kAgain, kRetry };

// user_mem_abort looks the VMA up under mmap_read_lock on every fault, just before the GUP
// (v5.12: mmap_read_lock, find_vma_intersection, mmap_read_unlock, then the memory-cache top-up
// and gfn_to_pfn_prot; v6.2: the top-up first, then mmap_read_lock, vma_lookup, the mmu_seq
// snapshot, mmap_read_unlock, __gfn_to_pfn_memslot). Two RMWs on mm->mmap_lock's count, a line
// the whole VM shares: every GUP call point uses it, so no two commute.
constexpr bool kVmaLookup = true;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Costs, knobs

namespace {
// Every time cost, by its profile name (dcache_clean_byte and icache_line are plain numbers).
constexpr std::pair<const char*, Time Costs::*> kTimes[] = {
    {"fault_entry", &Costs::fault_entry},
    {"fault_exit", &Costs::fault_exit},
    {"user_mem_abort", &Costs::user_mem_abort},
    {"mmu_cache_alloc_page", &Costs::mmu_cache_alloc_page},
    {"mmu_lock_op", &Costs::mmu_lock_op},
    {"stage2_map_base", &Costs::stage2_map_base},
    {"stage2_walk_level", &Costs::stage2_walk_level},
    {"stage2_pte_update", &Costs::stage2_pte_update},
    {"stage2_free_entry", &Costs::stage2_free_entry},
    {"relax_perms_base", &Costs::relax_perms_base},
    {"tlbi_ipa", &Costs::tlbi_ipa},
    {"tlbi_ipa_nsh", &Costs::tlbi_ipa_nsh},
    {"tlbi_vmid", &Costs::tlbi_vmid},
    {"icache_inval_line", &Costs::icache_inval_line},
    {"icache_inval_all", &Costs::icache_inval_all},
    {"mark_page_dirty", &Costs::mark_page_dirty},
    {"host_entry", &Costs::host_entry},
    {"memslot_update", &Costs::memslot_update},
    {"stage2_walk_step", &Costs::stage2_walk_step},
    {"dirty_bitmap_word", &Costs::dirty_bitmap_word},
    {"sched_timeslice", &Costs::sched_timeslice},
    {"lock_yield", &Costs::lock_yield},
};
}  // namespace

const std::vector<std::string>& Costs::names() {
    static const std::vector<std::string> n = [] {
        std::vector<std::string> v;
        for (const auto& [name, member] : kTimes) v.emplace_back(name);
        v.emplace_back("dcache_clean_byte");
        v.emplace_back("icache_line");
        return v;
    }();
    return n;
}

const std::vector<std::string>& Costs::optional_names() {
    static const std::vector<std::string> n = {"tlb_entries_4k", "tlb_entries_2m", "tlb_entries_1g", "tlb_ways",
                                               "tlb_walk_level", "tlbi_vmid_range", "tlbi_range_op"};
    return n;
}

Costs Costs::from(const vm::CostProfile& p) {
    require_costs(p, names(), "arm64_stage2");
    Costs c;
    for (const auto& [name, member] : kTimes) c.*member = p.time(name);
    c.has_tlb = p.has("tlb_entries_4k") && p.has("tlb_entries_2m") && p.has("tlb_entries_1g") && p.has("tlb_ways") &&
                p.has("tlb_walk_level");
    if (c.has_tlb) {
        const char* n[3] = {"tlb_entries_4k", "tlb_entries_2m", "tlb_entries_1g"};
        for (std::size_t i = 0; i < 3; ++i) c.tlb_entries[i] = static_cast<std::uint32_t>(p.number(n[i]));
        c.tlb_ways = static_cast<std::uint32_t>(p.number("tlb_ways"));
        c.tlb_walk_level = p.time("tlb_walk_level");
    }
    c.has_tlbi_range = p.has("tlbi_vmid_range") && p.has("tlbi_range_op");
    if (c.has_tlbi_range) {
        c.tlbi_range = p.time("tlbi_vmid_range");
        c.tlbi_range_op = p.time("tlbi_range_op");
    }
    c.dcache_clean_byte = p.number("dcache_clean_byte");
    c.icache_line = static_cast<std::uint64_t>(p.number("icache_line"));
    if (c.icache_line == 0 || (c.icache_line & (c.icache_line - 1)))
        throw std::invalid_argument("arm64_stage2: icache_line must be a power of two");
    if (c.dcache_clean_byte < 0) throw std::invalid_argument("arm64_stage2: dcache_clean_byte must not be negative");
    return c;
}

Config Config::from(const vm::Knobs& knobs, const vm::HostConfig& host) {
    Config c;
    c.spinlock = knob_choice(knobs, "mmu_lock", "rwlock", {"rwlock", "spinlock"}, "arm64_stage2") == "spinlock";
    c.cmo_in_walker =
        knob_choice(knobs, "cmo", "map_walker", {"map_walker", "user_mem_abort"}, "arm64_stage2") == "map_walker";
    c.preempt = knob_bool(knobs, "preempt", true, "arm64_stage2");
    // KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE: 0 or a block size the stage-2 tables support
    // (kvm_is_block_size_supported: 4K, 2M, 1G with 4 KiB pages), else -EINVAL.
    const std::string chunk = knob_choice(knobs, "eager_split_chunk_size", "0", {"0", "4K", "2M", "1G"}, "arm64_stage2");
    c.relax_tlbi_local =
        knob_choice(knobs, "relax_perms_tlbi", "broadcast", {"broadcast", "local"}, "arm64_stage2") == "local";
    c.split_chunk_pages = chunk == "4K" ? 1 : chunk == "2M" ? 512 : chunk == "1G" ? (1u << 18) : 0;
    if (c.split_chunk_pages && c.spinlock)
        throw std::invalid_argument(
            "arm64_stage2: knob 'eager_split_chunk_size' needs mmu_lock = \"rwlock\" (eager splitting, v6.5, came after "
            "the rwlock, v6.2)");
    if (!host.features.count("fwb")) throw std::invalid_argument("arm64_stage2: the host profile lacks feature 'fwb'");
    c.fwb = host.feature("fwb");
    // FEAT_HAFDBS: a profile without the feature has it off (the access-flag faults happen).
    c.hafdbs = host.features.count("hafdbs") && host.feature("hafdbs");
    c.age_lock = parse_age_lock(knob_choice(knobs, "age_lock", "write", {"write", "read"}, "arm64_stage2"));
    c.tlbi_range = knob_choice(knobs, "tlbi", "by_ipa", {"by_ipa", "range"}, "arm64_stage2") == "range";
    if (c.tlbi_range && !(host.features.count("tlbi_range") && host.feature("tlbi_range")))
        throw std::invalid_argument("arm64_stage2: tlbi = \"range\" needs host feature tlbi_range (FEAT_TLBIRANGE)");
    c.guest_tlb = host.features.count("guest_tlb") && host.feature("guest_tlb");
    return c;
}

// ---------------------------------------------------------------------------------------------
// Internal structures

struct Arm64Stage2::Slot {
    std::size_t index = 0;  // in vm_.memslots
    std::uint32_t id = 0;
    Gfn base = 0;
    std::uint64_t npages = 0;
    int host_level = 3;     // the backing's page: 3 (4K), 2 (2M), 1 (1G)
    bool hugetlb = false;
    std::vector<std::uint64_t> bitmap;
    std::uint64_t bitmap_addr = 0;
    bool manual_protect = false;
    bool contains(Gfn g) const { return g >= base && g - base < npages; }
};

// One stage-2 fault, from the exit to the return to the guest.
struct Arm64Stage2::Fault {
    VcpuState* v = nullptr;
    Slot* s = nullptr;
    engine::Process* proc = nullptr;
    std::uint32_t vcpu = 0;
    std::uint32_t cpu = 0;
    Gfn gfn = 0;
    vm::Access access = vm::Access::Read;
    Time start;              // the exit
    bool write = false, exec = false;
    bool perm = false;       // ESR_ELx_FSC_PERM: the hardware found a valid leaf lacking the access
    int fault_level = 0;     // that leaf's level (fault_granule)
    int level = 3;           // vma_pagesize as a level
    bool writable = true;
    std::uint32_t topup = 0;           // objects the memory-cache top-up allocates
    Time t_gup;              // __gfn_to_pfn_memslot starts
    host::Gup gup;           // what it gave
    Time t1;                 // arrival at mmu_lock
    bool reserved = false;   // spinlock: its hold is on the timeline
    bool wait_traced = false;  // its wait's begin is in the trace already (queued behind a host operation)
    Time unlock;             // spinlock: the end of its hold (spin_unlock)
    Time r;                  // return to the guest
    // rwlock: the leaf install that waits for the break's TLBI and the CMOs.
    bool deferred = false;
    int d_level = 0;
    std::uint8_t d_value = 0;
    Time d_at;
    // *this = Fault{}, store by store: the struct's assignment compiles to a rep stos, whose
    // start-up costs more than these (one fault per exit).
    void reset() {
        v = nullptr;
        s = nullptr;
        proc = nullptr;
        vcpu = cpu = 0;
        gfn = 0;
        access = vm::Access::Read;
        start = Time{};
        write = exec = perm = false;
        fault_level = 0;
        level = 3;
        writable = true;
        topup = 0;
        t_gup = Time{};
        gup = host::Gup{};
        t1 = Time{};
        reserved = wait_traced = false;
        unlock = r = Time{};
        deferred = false;
        d_level = 0;
        d_value = 0;
        d_at = Time{};
    }
};

// try_gup's answer into the fault field by field: it comes back through the stack, just written
// field by field, and a wide copy would read it back across those stores (no store forwarding).
[[gnu::always_inline]] inline void set_gup(host::Gup& d, const host::Gup& s) {
    d.done = s.done;
    d.writable = s.writable;
    d.level = s.level;
    d.ref = s.ref;
    d.slow = s.slow;
    d.looked_up = s.looked_up;
}

inline Time Arm64Stage2::call_time(Call::Kind kind, const Fault& f) {
    return kind == Call::kArrival ? f.t1 : kind == Call::kPut ? f.unlock : f.t_gup;
}

struct Arm64Stage2::VcpuState {
    MmuMemoryCache mc;  // vcpu->arch.mmu_page_cache
    // A fault page_fault_now() took part of the way (its GUP charged, maybe its hold reserved) but
    // could not finish without an event: page_fault_at(), called next, goes on with it.
    Fault stash;
    bool stashed = false;
    // page_fault_now() left the stash as prepare() made it (its GUP could not be taken ahead):
    // page_fault_at(), called next for the same fault, need not work it out again.
    bool prepared = false;
    bool gup_later = false;  // ... because call_now() said its GUP must wait for its event
};

// The work of a fault under mmu_lock, from the grant g; h is the time so far.
struct Arm64Stage2::Walk {
    Fault& f;
    Time g;
    Time h;
    std::uint32_t ri = 0;
    std::uint8_t prot = 0;
    Ret ret = kFixed;
    bool ok = false;  // the kernel's ret == 0
    // rwlock: a D-cache clean the coroutine moves through the memory bandwidth (fault_rw), at
    // clean_at into the hold (priced nothing in h).
    std::uint64_t clean_bytes = 0;
    Time clean_at{};
};

struct Arm64Stage2::Bulk : BulkWork {
    engine::LockGuard guard;
    engine::Site site;
};

struct Arm64Stage2::Publish {
    std::int64_t time;
    std::uint32_t ri;
    Gfn gfn;
    std::uint8_t level;
    std::uint8_t value;
};

// An arrival at the spinlock while a host operation holds it: a fault (fault != nullptr) or a
// host operation.
struct Arm64Stage2::TlWaiter {
    Fault* fault = nullptr;
    engine::Site site;
    std::coroutine_handle<> h;
    engine::Process* proc = nullptr;
    Time arrival;
};

struct Arm64Stage2::TraceItem {
    std::int64_t t;
    std::uint8_t kind;  // order among items at the same time: ends before begins
    std::uint64_t seq;
    std::uint32_t pid;
    std::uint32_t site;
    bool operator>(const TraceItem& o) const {
        return t != o.t ? t > o.t : kind != o.kind ? kind > o.kind : seq > o.seq;
    }
};
namespace {
enum TraceKind : std::uint8_t { kHoldEnd, kWaitEnd, kHoldBegin, kWaitBegin };
}

// The model's counters (besides KVM's stats), registered by name in this order.
struct Arm64Stage2::ModelCounters {
    enum Id : std::uint8_t {
        map, map_same, relax, relax_again, locked, retry_inv, bbm, tlbi_ipa, tlbi_vmid, dc_bytes, dc_calls, ic_range,
        ic_bytes, ic_all, block_to_table, table_to_block, tables_linked, tables_freed, tables_rcu, topup_objs,
        alloc_atomic, change_pte_map, dirty_marked, wp, unmapped, harvested, resched, split_chunks, split_blocks,
        split_ptes, split_topups, split_topup_objs, split_enomem, tlbi_ipa_nsh, kCount
    };
    static constexpr const char* kNames[kCount] = {
        "kvm_pgtable_stage2_map", "stage2_map_same_pte", "kvm_pgtable_stage2_relax_perms", "stage2_relax_perms_no_leaf",
        "stage2_pte_locked", "mmu_invalidate_retry", "stage2_break_before_make", "__kvm_tlb_flush_vmid_ipa",
        "__kvm_tlb_flush_vmid", "dcache_clean_poc_bytes", "dcache_clean_poc", "icache_inval_pou",
        "icache_inval_pou_bytes", "icache_inval_all_pou", "stage2_block_to_table", "stage2_table_to_block",
        "stage2_table_pages_linked", "stage2_table_pages_freed", "stage2_free_removed_table_rcu",
        "mmu_topup_memory_cache_objs", "mmu_memory_cache_alloc_atomic", "kvm_set_spte_gfn_mapped",
        "mark_page_dirty_in_slot", "stage2_wp_ptes", "stage2_unmap_ptes", "dirty_pages_harvested",
        "mmu_lock_cond_resched", "kvm_pgtable_stage2_split", "stage2_split_walker_blocks",
        "stage2_create_unlinked_ptes", "split_page_cache_topups", "split_page_cache_objs", "stage2_split_enomem",
        "__kvm_tlb_flush_vmid_ipa_nsh",
    };
    explicit ModelCounters(engine::Counters& c) : c_(c) {
        for (std::size_t i = 0; i < kCount; ++i) ids_[i] = c.id(kNames[i]);
    }
    void add(Id id, std::uint64_t n = 1) { c_.add(ids_[id], n); }

private:
    engine::Counters& c_;
    std::array<engine::CounterId, kCount> ids_{};
};

// Counters of the TLB model and of range TLBIs, registered only when either is on (so results
// without them keep their stats).
struct Arm64Stage2::TlbCounters {
    engine::CounterId range_calls, range_ops, miss, walk_levels, flush_all, flush_range;
    explicit TlbCounters(engine::Counters& c)
        : range_calls(c.id("__kvm_tlb_flush_vmid_range")),
          range_ops(c.id("tlbi_range_ops")),
          miss(c.id("guest_tlb_miss")),
          walk_levels(c.id("guest_tlb_refill_walk_levels")),
          flush_all(c.id("guest_tlb_flush_all")),
          flush_range(c.id("guest_tlb_flush_range")) {}
};

class Arm64Stage2::Publisher : public engine::EventTarget {
public:
    explicit Publisher(Arm64Stage2& m) : m_(m) {}
    void fire(engine::Simulator&) override { m_.publish_due(); }

private:
    Arm64Stage2& m_;
};

// What a process queued on the spinlock waits for, for the deadlock report.
struct Arm64Stage2::SpinTarget : engine::WaitTarget {
    const Arm64Stage2& m;
    explicit SpinTarget(const Arm64Stage2& mm) : m(mm) {}
    std::string wait_name() const override { return "mmu_lock"; }
    void holders(std::vector<std::pair<const engine::Process*, std::string>>& out) const override {
        if (m.open_holder_) out.emplace_back(m.open_holder_, "exclusive");
    }
};

// Suspends an arrival (a fault: `f`; a host operation: `f` null) queued behind a host operation
// until spin_release_host() schedules it.
struct Arm64Stage2::SpinWaitAwaiter {
    Arm64Stage2& m;
    Fault* f;
    engine::Site site;
    Time arrival;
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        engine::Process* p = h.promise().process;
        // Its wait starts now (arrival >= now): traced now, not at the grant, which may come after
        // later records of the lock's track have been written.
        if (m.sim_.tracer() && p) m.trace_add(arrival, kWaitBegin, p->id(), site);
        m.waiters_.push_back(TlWaiter{f, site, h, p, arrival});
        p->block_on(m.spin_target_.get(), "exclusive");
    }
    void await_resume() const noexcept {}
};

// ---------------------------------------------------------------------------------------------
// Construction

Arm64Stage2::Arm64Stage2(vm::ModelEnv& env)
    : sim_(env.sim),
      cache_(env.cache),
      vm_(env.vm),
      cfg_(Config::from(env.knobs, env.host)),
      k_(Costs::from(env.host.costs)),
      ak_(AgingCosts::from(env.host.costs)),
      host_(std::make_unique<host::HostMm>(env.sim, env.host, env.vm.memslots, host::Costs::from(env.host.costs),
                                           host::Features::from(env.host), env.vm.userfaultfd)),
      stats_(env.sim.counters()) {
    host_->set_notifier(this);
    line_xfer_ = engine::LineTransfer(host_->topology());
    dcache_rate_ = k_.dcache_clean_byte > 0 ? static_cast<std::uint64_t>(1e12 / k_.dcache_clean_byte + 0.5) : 0;
    mc_ = std::make_unique<ModelCounters>(sim_.counters());
    publisher_ = std::make_unique<Publisher>(*this);
    spin_target_ = std::make_unique<SpinTarget>(*this);
    site_fault_ = sim_.site("user_mem_abort");
    site_wp_ = sim_.site("kvm_mmu_wp_memory_region");
    site_get_ = sim_.site("kvm_get_dirty_log_protect");
    site_clear_ = sim_.site("kvm_clear_dirty_log_protect");
    site_mn_start_ = sim_.site("kvm_mmu_notifier_invalidate_range_start");
    site_mn_end_ = sim_.site("kvm_mmu_notifier_invalidate_range_end");
    site_mn_change_ = sim_.site("kvm_mmu_notifier_change_pte");
    site_split_region_ = sim_.site("kvm_mmu_split_memory_region");
    site_split_ = sim_.site("kvm_mmu_split_huge_pages");
    split_cache_ = MmuMemoryCache("split_page_cache", k_.mmu_cache_alloc_page);
    site_destroy_ = sim_.site("kvm_arch_flush_shadow_all");
    if (cfg_.tlbi_range && !k_.has_tlbi_range)
        throw std::invalid_argument("arm64_stage2: tlbi = \"range\" needs costs tlbi_vmid_range and tlbi_range_op");
    if (cfg_.guest_tlb) {
        if (!k_.has_tlb)
            throw std::invalid_argument(
                "arm64_stage2: host feature guest_tlb needs costs tlb_entries_4k, _2m, _1g, tlb_ways, tlb_walk_level");
        tlb_ = std::make_unique<vm::GuestTlb>(env.vm.vcpus, vm::GuestTlb::Geometry{k_.tlb_entries, k_.tlb_ways});
    }
    if (tlb_ || cfg_.tlbi_range) tc_ = std::make_unique<TlbCounters>(sim_.counters());
    if (cfg_.spinlock)
        spin_id_ = sim_.lock_stats().lock_id("mmu_lock");
    else
        rw_.emplace(sim_, "mmu_lock");
    if (!cfg_.spinlock) rw_word_.emplace(sim_, host_->topology(), "mmu_lock");

    mmu_lock_addr_ = kdata_.alloc();
    records_.push_back(RecordSlot{~std::uint64_t{0}, nullptr});
    lock_hit_ = env.cache.config().levels.front().hit_latency;
    root_hpa_ = pt_alloc_.alloc();  // the level-1 table: two concatenated pages (40-bit IPA)
    pt_alloc_.alloc();
    // Every fault pays the exit, user_mem_abort and at least a GUP before mmu_lock; every host
    // operation pays host_entry before it touches anything shared. No call point (a GUP, a
    // put_page, a host operation's first change) comes sooner than min_lead_ after any event, no
    // arrival at the lock or host operation sooner than min_arrival_.
    min_fault_pre_ = k_.fault_entry + k_.user_mem_abort + host_->costs().gup_fast;
    min_lead_ = std::min(k_.fault_entry + k_.user_mem_abort, k_.host_entry);
    min_arrival_ = std::min(min_fault_pre_, k_.host_entry);

    for (std::size_t i = 0; i < vm_.memslots.size(); ++i) {
        const vm::Memslot& m = vm_.memslots[i];
        if (m.npages == 0) continue;
        auto s = std::make_unique<Slot>();
        s->index = i;
        s->id = m.id;
        s->base = m.base_gfn;
        s->npages = m.npages;
        s->host_level = 4 - static_cast<int>(vm::host_level(m.backing));
        s->hugetlb = m.backing == vm::Backing::Hugetlb2M || m.backing == vm::Backing::Hugetlb1G;
        s->bitmap_addr = kDirtyBitmapBase + kDirtyBitmapWindow * slots_.size();
        if (m.dirty_logging) s->bitmap.assign((m.npages + 63) / 64, 0);
        slots_.push_back(std::move(s));
    }
    regions_ = GibRegions(vm_.memslots, "arm64_stage2");
    const std::size_t nr = regions_.size();
    for (auto* v : {&vis1_, &plan1_}) v->assign(nr, 0);
    for (auto* v : {&vis2_, &plan2_}) v->assign(nr * 512, 0);
    for (auto* v : {&vis3_, &plan3_}) v->assign(nr << 18, 0);
    t2_page_.assign(nr, 0);
    t3_page_.assign(nr * 512, 0);
    vcpus_.reserve(vm_.vcpus);
    pending_pos_.assign(vm_.vcpus, kNoPos);
    for (std::size_t l = 0; l < 3; ++l) {
        pending_[l].resize(vm_.vcpus);
        pending_t_[l].resize(vm_.vcpus);
    }
    pending_lines_.resize(vm_.vcpus);
    for (std::uint32_t i = 0; i < vm_.vcpus; ++i) {
        auto v = std::make_unique<VcpuState>();
        v->mc = MmuMemoryCache("mmu_page_cache", k_.mmu_cache_alloc_page);
        vcpus_.push_back(std::move(v));
    }
}

Arm64Stage2::~Arm64Stage2() {
    if (publisher_) sim_.cancel(*publisher_);
}

// ---------------------------------------------------------------------------------------------
// Descriptors

// Clears every entry below (level, gfn) in one copy (the table it linked is gone).
void Arm64Stage2::zero_below(bool vis, int level, std::uint32_t ri, Gfn gfn) {
    auto& l2 = vis ? vis2_ : plan2_;
    auto& l3 = vis ? vis3_ : plan3_;
    const std::size_t r = ri;
    if (level == 1) {
        std::fill_n(l2.begin() + static_cast<std::ptrdiff_t>(r << 9), 512, std::uint8_t{0});
        std::fill_n(l3.begin() + static_cast<std::ptrdiff_t>(r << 18), 1 << 18, std::uint8_t{0});
    } else if (level == 2) {
        std::fill_n(l3.begin() + static_cast<std::ptrdiff_t>((r << 18) | (round_gfn(gfn, 2) & 0x3ffff)), 512,
                    std::uint8_t{0});
    }
}

// A table replaced by a block: frees every table page below (level, gfn), unaccounts the
// leaves, clears the planned entries. Returns the entries the kernel's walk of the removed table
// visits (512 per page freed).
std::uint64_t Arm64Stage2::free_subtree(int level, std::uint32_t ri, Gfn gfn) {
    std::uint64_t pages = 0, leaves2 = 0, leaves3 = 0;
    auto free_t3 = [&](std::uint32_t i2) {
        std::uint64_t& p = t3_page_[(static_cast<std::size_t>(ri) << 9) | i2];
        const std::size_t b = (static_cast<std::size_t>(ri) << 18) | (std::size_t{i2} << 9);
        for (std::size_t k = 0; k < 512; ++k) leaves3 += is_leaf(plan3_[b + k]);
        pt_alloc_.free(p);
        p = 0;
        ++pages;
    };
    if (level == 1) {
        for (std::uint32_t i2 = 0; i2 < 512; ++i2) {
            const std::uint8_t e = plan2_[(static_cast<std::size_t>(ri) << 9) | i2];
            if (is_table(e)) free_t3(i2);
            leaves2 += is_leaf(e);
        }
        pt_alloc_.free(t2_page_[ri]);
        t2_page_[ri] = 0;
        ++pages;
    } else {
        free_t3(idx2(gfn));
    }
    zero_below(false, level, ri, gfn);
    if (leaves2) stats_.update_page_stats(vm::PageLevel::M2, -static_cast<std::int64_t>(leaves2));
    if (leaves3) stats_.update_page_stats(vm::PageLevel::K4, -static_cast<std::int64_t>(leaves3));
    mc_->add(ModelCounters::tables_freed, pages);
    return pages * 512;
}

// Both copies now (rwlock walkers, host operations).
void Arm64Stage2::set_both(int level, std::uint32_t ri, Gfn gfn, std::uint8_t value) {
    plan_entry(level, ri, gfn) = value;
    std::uint8_t& e = vis_entry(level, ri, gfn);
    // A new leaf has its AF set (stage2_set_prot_attr); a permission change keeps the AF.
    if (!aged_.empty() && (!is_leaf(e) || !is_leaf(value))) aged_[level == 3 ? i3(ri, gfn) : level == 2 ? i3(ri, gfn & ~Gfn{511}) : i3(ri, 0)] = 0;
    if (tlb_) tlb_vis_change(level, gfn, e, value);
    if (is_table(e) && !is_table(value)) zero_below(true, level, ri, gfn);
    e = value;
}

// The guest sees a descriptor change: a valid leaf that changes in any way went with a TLBI by
// IPA of its range (break-before-make, unmap, write protection, relaxed permissions:
// __kvm_tlb_flush_vmid_ipa, broadcast); a table replaced by a block with __kvm_tlb_flush_vmid
// (stage2_try_break_pte before v6.6) or, with tlbi = "range", kvm_tlb_flush_vmid_range over the
// table's range (v6.6). The TLBIs' time is charged where the walkers issue them.
void Arm64Stage2::tlb_vis_change(int level, Gfn gfn, std::uint8_t old, std::uint8_t value) {
    if (old == value) return;
    const Gfn start = round_gfn(gfn, level), end = start + pages_at(level);
    if (is_leaf(old)) {
        tlb_->invalidate_range(start, end);
        sim_.counters().add(tc_->flush_range);
    } else if (is_table(old)) {
        if (cfg_.tlbi_range) {
            tlb_->invalidate_range(start, end);
            sim_.counters().add(tc_->flush_range);
        } else {
            tlb_->invalidate_all();
            sim_.counters().add(tc_->flush_all);
        }
    }
}

// The hardware's refill of a TLB miss: a walk of the stage-2 tables from the level-1 root (two
// concatenated pages, 40-bit IPA) to the leaf, one level at a time; the entry is cached at the
// leaf's size. The guest's own stage 1 is not modelled (guest_access stands for it).
Time Arm64Stage2::tlb_refill(std::uint32_t vcpu, Gfn gfn) {
    const std::uint32_t ri = regions_.of(gfn);
    int level = 0;
    if (ri != kNoRegion) {
        if (vis3_[i3(ri, gfn)] & pte::V)
            level = 3;
        else if (is_leaf(vis2_[i2(ri, gfn)]))
            level = 2;
        else if (is_leaf(vis1_[ri]))
            level = 1;
    }
    if (level == 0) return Time::zero();  // hits() said mapped: cannot happen
    tlb_->fill(vcpu, gfn, 3 - level);
    sim_.counters().add(tc_->miss);
    sim_.counters().add(tc_->walk_levels, static_cast<std::uint64_t>(level));
    return k_.tlb_walk_level * static_cast<std::int64_t>(level);
}

namespace {
// MAX_TLBI_RANGE_PAGES (arch/arm64/include/asm/tlbflush.h, v6.6): __TLBI_RANGE_PAGES(31, 3).
constexpr std::uint64_t kMaxTlbiRangePages = std::uint64_t{32} << 16;
}  // namespace
// The TLBI instructions __flush_tlb_range_op (v6.6) issues for `pages` 4K pages with
// FEAT_TLBIRANGE: an odd page count takes one single-page TLBI, then per scale 0..3 one range
// TLBI of (num + 1) << (5 * scale + 1) pages, num = __TLBI_RANGE_NUM(pages, scale).
std::uint64_t tlbi_range_ops(std::uint64_t pages) {
    std::uint64_t ops = 0;
    unsigned scale = 0;
    while (pages > 0) {
        if (pages % 2 == 1) {
            ++ops;
            --pages;
            continue;
        }
        if (scale > 3) {  // not reached for pages <= MAX_TLBI_RANGE_PAGES - 1
            ++ops;
            break;
        }
        const std::int64_t num = static_cast<std::int64_t>((pages >> (5 * scale + 1)) & 0x1f) - 1;
        if (num >= 0) {
            ++ops;
            pages -= static_cast<std::uint64_t>(num + 1) << (5 * scale + 1);
        }
        ++scale;
    }
    return ops;
}

Time Arm64Stage2::tlb_flush_vmid_range(Gfn start, Gfn end) {
    Time t;
    for (Gfn a = start; a < end;) {
        const std::uint64_t pages = std::min<std::uint64_t>(end - a, kMaxTlbiRangePages - 1);
        const std::uint64_t ops = tlbi_range_ops(pages);
        t += k_.tlbi_range + k_.tlbi_range_op * static_cast<std::int64_t>(ops);
        sim_.counters().add(tc_->range_calls);
        sim_.counters().add(tc_->range_ops, ops);
        a += pages;
    }
    return t;
}

// The flush after a memslot's write protection or dirty-log harvest: kvm_flush_remote_tlbs (a
// TLBI by VMID, counted in remote_tlb_flush) before the series; kvm_flush_remote_tlbs_memslot ->
// kvm_arch_flush_remote_tlbs_range -> kvm_tlb_flush_vmid_range with it (v6.6), which does not go
// through kvm_flush_remote_tlbs.
Time Arm64Stage2::flush_range(Gfn start, Gfn end) {
    if (cfg_.tlbi_range) {
        if (tlb_) {
            tlb_->invalidate_range(start, end);
            sim_.counters().add(tc_->flush_range);
        }
        return tlb_flush_vmid_range(start, end);
    }
    stats_.add(stats_.remote_tlb_flush_requests);
    stats_.add(stats_.remote_tlb_flush);
    mc_->add(ModelCounters::tlbi_vmid);
    if (tlb_) {
        tlb_->invalidate_all();
        sim_.counters().add(tc_->flush_all);
    }
    return k_.tlbi_vmid;
}

// ---------------------------------------------------------------------------------------------
// Helpers

Arm64Stage2::Slot* Arm64Stage2::slot_of(Gfn gfn) { return slot_containing(slots_, gfn); }

const Arm64Stage2::Slot* Arm64Stage2::slot_of(Gfn gfn) const { return slot_containing(slots_, gfn); }

Arm64Stage2::Slot& Arm64Stage2::slot_by_id(std::uint32_t id) { return slot_with_id(slots_, id, "arm64_stage2"); }

Time Arm64Stage2::touch(std::uint32_t cpu, std::uint64_t addr, bool write, std::uint64_t bytes) {
    return cache_.touch(cpu, addr, bytes, write);
}

// The spinlock's word for a fault taking mmu_lock (qspinlock, kernel/locking/qspinlock.c, v5.12).
// Found free: queued_spin_lock's cmpxchg takes the line from the CPU that touched it last (a hit
// when that is this CPU). Queued (the fault waited for the lock): it spins at the head of the MCS
// queue reading the word (queued_spin_lock_slowpath's atomic_cond_read_acquire), so the holder's
// spin_unlock must first take the line back from it, invalidating its copy, and its read then
// fetches the line again: two transfers between the two CPUs from the end of one hold to the
// start of the next. The other waiters spin on their own MCS nodes. Kept out of the cache model:
// a fault's cache-model work is its walk (see the docs).
Time Arm64Stage2::lock_line(std::uint32_t cpu, bool queued) {
    const std::uint32_t prev = lock_cpu_;
    lock_cpu_ = cpu;
    if (prev == cpu) return lock_hit_;
    const Time t = line_xfer_(prev, cpu);
    return queued ? t + t : t;
}

// kvm_mmu_topup_memory_cache(memcache, kvm_mmu_cache_min_pages(kvm)): how many objects it would
// allocate (below the minimum, it fills the cache to KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE).
std::uint32_t Arm64Stage2::topup_objects(const VcpuState& v) const {
    if (v.mc.nobjs() >= kMinCachePages) return 0;
    return (v.mc.capacity() ? v.mc.capacity() : kKvmArchNrObjsPerMemoryCache) - v.mc.nobjs();
}

// The backing's page size, down to the largest block lying inside the slot
// (fault_supports_stage2_huge_mapping; userspace addresses are aligned like the IPAs).
int Arm64Stage2::max_mapping_level(const Slot& s, Gfn gfn) const {
    int level = s.host_level;
    while (level < 3) {
        const Gfn g0 = round_gfn(gfn, level);
        if (g0 >= s.base && g0 + pages_at(level) <= s.base + s.npages) break;
        ++level;
    }
    return level;
}

// clean_dcache_guest_page: DC CIVAC over the range to the point of coherency; nothing with FWB.
// The lines go to memory at one core's clean rate at most, through the socket's memory bandwidth.
// Under the spinlock (and in a host operation's bulk work) the clean's length must be known when
// the hold is worked out, before whatever else moves memory meanwhile is known: it is priced at
// the share it would get at `at` (transfer_time) and does not load the bandwidth; its bytes and
// busy time are accounted in the bandwidth statistics (HostMm::account_transfer: those holds are
// serialized, so the intervals are exact). A fault under the rwlock moves it for real (walk_clean).
Time Arm64Stage2::dcache_clean(std::uint32_t cpu, std::uint64_t bytes, Time at) {
    if (cfg_.fwb) return Time::zero();
    mc_->add(ModelCounters::dc_calls);
    mc_->add(ModelCounters::dc_bytes, bytes);
    const Time d = host_->transfer_time(cpu, bytes, dcache_rate_);
    host_->account_transfer(cpu, at, d, bytes);
    return d;
}

// The clean of a fault's hold: see dcache_clean.
Time Arm64Stage2::walk_clean(Walk& w, std::uint64_t bytes) {
    if (cfg_.spinlock || cfg_.fwb) return dcache_clean(w.f.cpu, bytes, w.g + w.h);
    mc_->add(ModelCounters::dc_calls);
    mc_->add(ModelCounters::dc_bytes, bytes);
    w.clean_bytes = bytes;
    w.clean_at = w.h;
    return Time::zero();
}

// rwlock: the walk's clean, if any, moved through the bandwidth at its time; what follows it in
// the hold (w.g, and a leaf installed after it) moves by the clean's length.
Task<void> Arm64Stage2::run_clean(Walk& w) {
    if (!w.clean_bytes) co_return;
    const Time at = w.g + w.clean_at;
    if (at > sim_.now()) co_await sim_.delay(at - sim_.now());
    co_await host_->transfer(w.f.cpu, w.clean_bytes, dcache_rate_);
    const Time took = sim_.now() - at;
    w.g += took;
    if (w.f.deferred) w.f.d_at += took;
    w.clean_bytes = 0;
}

// invalidate_icache_guest_page: IC IVAU per line up to MAX_DVM_OPS lines, else the whole I-cache.
Time Arm64Stage2::icache_inval(std::uint64_t bytes) {
    const std::uint64_t lines = std::max<std::uint64_t>(1, bytes / k_.icache_line);
    if (lines > kMaxDvmOps) {
        mc_->add(ModelCounters::ic_all);
        return k_.icache_inval_all;
    }
    mc_->add(ModelCounters::ic_range);
    mc_->add(ModelCounters::ic_bytes, bytes);
    return k_.icache_inval_line * static_cast<std::int64_t>(lines);
}

// kvm_set_pfn_dirty + mark_page_dirty_in_slot.
Time Arm64Stage2::mark_page_dirty(Slot& s, Gfn gfn, std::uint32_t cpu) {
    if (!vm_.memslots[s.index].dirty_logging || s.bitmap.empty()) return k_.mark_page_dirty;
    const std::uint64_t rel = gfn - s.base;
    s.bitmap[rel / 64] |= std::uint64_t{1} << (rel % 64);
    mc_->add(ModelCounters::dirty_marked);
    return k_.mark_page_dirty + touch(cpu, s.bitmap_addr + (rel / 64) * 8, true);
}

std::optional<vm::PageLevel> Arm64Stage2::mapping_level(Gfn gfn) const {
    const std::uint32_t ri = region_of(gfn);
    if (ri == kNoRegion) return std::nullopt;
    if (vis3_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)] & pte::V) return vm::PageLevel::K4;
    if (is_leaf(vis2_[(static_cast<std::size_t>(ri) << 9) | idx2(gfn)])) return vm::PageLevel::M2;
    if (is_leaf(vis1_[ri])) return vm::PageLevel::G1;
    return std::nullopt;
}

std::uint8_t Arm64Stage2::leaf(Gfn gfn) const {
    const std::uint32_t ri = region_of(gfn);
    if (ri == kNoRegion) return 0;
    const std::uint8_t e3 = vis3_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)];
    if (e3 & pte::V) return e3;
    const std::uint8_t e2 = vis2_[(static_cast<std::size_t>(ri) << 9) | idx2(gfn)];
    if (is_leaf(e2)) return e2;
    return is_leaf(vis1_[ri]) ? vis1_[ri] : 0;
}

bool Arm64Stage2::dirty(std::uint32_t slot, Gfn gfn) const { return page_dirty(slots_, slot, gfn); }

// ---------------------------------------------------------------------------------------------
// Visible-state publications and lock traces (spinlock)

void Arm64Stage2::publish(Time at, int level, std::uint32_t ri, Gfn gfn, std::uint8_t value) {
    if (!pub_.empty() && at.ps() < pub_.back().time) throw std::logic_error("arm64_stage2: publication out of order");
    pub_.push_back(Publish{at.ps(), ri, gfn, static_cast<std::uint8_t>(level), value});
    if (pub_.size() == 1) sim_.schedule(at, *publisher_);
}

void Arm64Stage2::publish_due() {
    const std::int64_t now = sim_.now().ps();
    while (!pub_.empty() && pub_.front().time <= now) {
        const Publish& p = pub_.front();
        std::uint8_t& e = vis_entry(p.level, p.ri, p.gfn);
        if (!aged_.empty() && (!is_leaf(e) || !is_leaf(p.value)))
            aged_[p.level == 3 ? i3(p.ri, p.gfn) : p.level == 2 ? i3(p.ri, p.gfn & ~Gfn{511}) : i3(p.ri, 0)] = 0;
        if (tlb_) tlb_vis_change(p.level, p.gfn, e, p.value);
        if (is_table(e) && !is_table(p.value)) zero_below(true, p.level, p.ri, p.gfn);
        e = p.value;
        pub_.pop_front();
    }
    if (pub_.empty())
        sim_.cancel(*publisher_);
    else if (!publisher_->pending())
        sim_.schedule(Time::ps(pub_.front().time), *publisher_);
}

void Arm64Stage2::trace_add(Time t, std::uint8_t kind, std::uint32_t pid, engine::Site site) {
    trace_.push_back(TraceItem{t.ps(), kind, trace_seq_++, pid, site.id});
    std::push_heap(trace_.begin(), trace_.end(), std::greater<>{});
}

// Lock records are kept at their simulated times, which a reserved hold knows ahead of the
// engine's clock: they wait here until it gets there (a track's records must come in order).
void Arm64Stage2::trace_flush() {
    engine::Tracer* tr = sim_.tracer();
    if (!tr) {
        trace_.clear();
        return;
    }
    const std::int64_t now = sim_.now().ps();
    const std::string& lock = sim_.lock_stats().lock_name(spin_id_);
    while (!trace_.empty() && trace_.front().t <= now) {
        std::pop_heap(trace_.begin(), trace_.end(), std::greater<>{});
        const TraceItem it = trace_.back();
        trace_.pop_back();
        const Time t = Time::ps(it.t);
        switch (it.kind) {
            case kWaitBegin: tr->lock_wait_begin(spin_id_, lock, it.pid, "exclusive", t); break;
            case kWaitEnd: tr->lock_wait_end(spin_id_, it.pid, t); break;
            case kHoldBegin:
                tr->lock_hold_begin(spin_id_, lock, it.pid, "exclusive", sim_.lock_stats().site_name(it.site), t);
                break;
            default: tr->lock_hold_end(spin_id_, it.pid, "exclusive", t); break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mmu_lock as a spinlock

// May a call point at logical time t (>= now) be taken now, without an event? Yes if no call point
// it does not commute with can come at or before t: every one still to come is at least min_lead_
// after an event not yet processed (so after the next event time), and those already waiting for
// their event are in pending_ (as is the start of a GUP changing the host's page tables, under way:
// it makes its calls as it goes).
bool Arm64Stage2::call_now(Call::Kind kind, const Fault& f) {
    if (!early_) return false;
    const Time t = call_time(kind, f);
    const Time next = sim_.next_event_time();
    if (next != Time::max() && t >= next + (kind == Call::kArrival ? min_arrival_ : min_lead_)) return false;
    const std::int64_t tp = t.ps();
    for (std::uint32_t i = 0; i < pending_n_[2]; ++i)  // a host change under way commutes with nothing
        if (pending_t_[2][i] <= tp) return false;
    if (kind == Call::kArrival) {  // arrivals commute with GUPs and put_pages, not with each other
        for (std::uint32_t i = 0; i < pending_n_[1]; ++i)
            if (pending_t_[1][i] <= tp) return false;
        return true;
    }
    host::GupLines mine;
    if (kind == Call::kGup) {
        mine = host_->gup_lines(f.gfn, f.write, t, kVmaLookup);
        if (mine.changing) return false;
    } else {
        mine.ref = f.gup.ref;
    }
    // An arrival waiting for its event, or a fault queued behind a host operation, brings its
    // put_page on its GUP's refcount line as soon as its hold ends, which may be sooner than
    // min_lead_ after that event: it does not commute with a call on that line.
    for (std::uint32_t i = 0; i < pending_n_[1]; ++i)
        if (pending_t_[1][i] <= tp && pending_[1][i].line == mine.ref) return false;
    for (const TlWaiter& w : waiters_)
        if (w.fault && w.fault->gup.ref == mine.ref) return false;
    const std::uint64_t ver = host_->state_version();
    const std::int64_t* const times = pending_t_[0].data();
    for (std::uint32_t i = 0, n = pending_n_[0]; i < n; ++i) {
        if (times[i] > tp) continue;
        const Call& p = pending_[0][i];
        host::GupLines theirs;
        if (p.kind == Call::kGup) {
            // A pending GUP looks its VMA up under mmap_lock (gup_lines(..., kVmaLookup) says
            // mmap_lock() whatever else it finds): it conflicts with every call point using that
            // line too, its other lines unseen.
            if (kVmaLookup && mine.mmap_lock()) return false;
            CachedLines& cl = pending_lines_[i];
            if (cl.ver != ver) {  // gup_lines reads only the host's state (not the time)
                cl.lines = host_->gup_lines(p.gfn, p.write, Time::ps(p.t), kVmaLookup);
                cl.ver = ver;
            }
            theirs = cl.lines;
            if (theirs.changing) return false;
        } else {
            theirs.ref = p.line;
        }
        if (theirs.ref == mine.ref || (theirs.mmap_lock() && mine.mmap_lock())) return false;
    }
    return true;
}

engine::LockRecord& Arm64Stage2::spin_record(engine::Site site) {
    const std::uint64_t key = (static_cast<std::uint64_t>(sim_.phase()) << 32) | site.id;
    if (key == records_.back().key) return *records_.back().rec;
    for (RecordSlot& s : records_)
        if (s.key == key) {
            std::swap(s, records_.back());  // the last one used is looked at first
            return *records_.back().rec;
        }
    engine::LockRecord& r =
        sim_.lock_stats().record(spin_id_, LockMode::Exclusive, site.id, static_cast<std::uint32_t>(sim_.phase()));
    records_.push_back(RecordSlot{key, &r});
    return r;
}

// Statistics and trace records of a grant at g of an arrival at t1 (as the engine's locks keep
// them: waits of contended acquisitions only).
void Arm64Stage2::spin_granted(engine::Process* p, engine::Site site, Time t1, Time g, bool wait_traced) {
    engine::LockRecord& rec = spin_record(site);
    ++rec.acquisitions;
    if (g > t1) {
        ++rec.contended;
        rec.wait_ps.record(static_cast<std::uint64_t>((g - t1).ps()));
    }
    if (!sim_.tracer() || !p) return;
    if (g > t1 || wait_traced) {
        if (!wait_traced) trace_add(t1, kWaitBegin, p->id(), site);
        trace_add(g, kWaitEnd, p->id(), site);
    }
    trace_add(g, kHoldBegin, p->id(), site);
}

// A host operation holds the lock from g, for as long as it takes.
void Arm64Stage2::spin_open(engine::Process* p, engine::Site site, Time t1, Time g, bool wait_traced) {
    open_ = true;
    open_since_ = g;
    open_site_ = site;
    open_holder_ = p;
    spin_granted(p, site, t1, g, wait_traced);
}

// A fault granted at g (>= its arrival f.t1): works out its hold, reserves it on the timeline and
// returns its end (spin_unlock).
Time Arm64Stage2::spin_reserve(Fault& f, Time g) {
    const Time h = hold(f, g);
    busy_until_ = g + h;
    if (fault_rec_phase_ != sim_.phase()) {
        fault_rec_ = &spin_record(site_fault_);
        fault_rec_phase_ = sim_.phase();
    }
    engine::LockRecord& rec = *fault_rec_;
    ++rec.acquisitions;
    if (g > f.t1) {
        ++rec.contended;
        rec.wait_ps.record(static_cast<std::uint64_t>((g - f.t1).ps()));
    }
    rec.hold_ps.record(static_cast<std::uint64_t>(h.ps()));
    if (sim_.tracer() && f.proc) {
        const std::uint32_t pid = f.proc->id();
        if (g > f.t1 || f.wait_traced) {
            if (!f.wait_traced) trace_add(f.t1, kWaitBegin, pid, site_fault_);
            trace_add(g, kWaitEnd, pid, site_fault_);
        }
        trace_add(g, kHoldBegin, pid, site_fault_);
        trace_add(g + h, kHoldEnd, pid, site_fault_);
    }
    f.reserved = true;
    f.unlock = g + h;
    return f.unlock;
}

// kvm_release_pfn_clean after spin_unlock (a call point at f.unlock: put_page on the page's refcount
// line), then the way back to the guest: returns when the vCPU is back.
Time Arm64Stage2::release(Fault& f) {
    return host_->put_page(f.cpu, f.gup, f.unlock) + k_.fault_exit;
}

// spin_unlock by a host operation: the arrivals queued meanwhile get their places in order; a
// fault's hold is worked out now, a host operation holds the lock open again.
void Arm64Stage2::spin_release_host() {
    spin_record(open_site_).hold_ps.record(static_cast<std::uint64_t>((sim_.now() - open_since_).ps()));
    if (sim_.tracer() && open_holder_) trace_add(sim_.now(), kHoldEnd, open_holder_->id(), open_site_);
    open_ = false;
    open_holder_ = nullptr;
    busy_until_ = sim_.now();
    while (!waiters_.empty()) {
        const TlWaiter w = waiters_.front();
        waiters_.pop_front();
        w.proc->unblock();
        const Time g = std::max(w.arrival, busy_until_);
        if (w.fault) {
            w.fault->wait_traced = true;
            spin_reserve(*w.fault, g);
            // Its put_page is a call point at the very event that resumes it (no lead): known
            // from now, so call_now must see it (page_fault_at erases it when it resumes).
            pending_push(Call::kPut, *w.fault);
            sim_.schedule_resume(w.fault->unlock, w.h, w.proc, engine::EventKind::LockGrant);
            continue;
        }
        spin_open(w.proc, w.site, w.arrival, g, true);
        sim_.schedule_resume(g, w.h, w.proc, engine::EventKind::LockGrant);
        break;
    }
    trace_flush();
}

// ---------------------------------------------------------------------------------------------
// The fault path: kvm_handle_guest_abort -> user_mem_abort

Task<void> Arm64Stage2::page_fault(const vm::CpuContext& cpu, Gfn gfn, vm::Access access) {
    co_await page_fault_at(sim_, cpu, gfn, access, sim_.now());
}

// user_mem_abort up to the GUP, worked out for a fault at `start` without changing anything:
// false for an access outside every memslot (an MMIO access, emulated).
bool Arm64Stage2::prepare(Fault& f, const vm::CpuContext& ctx, Gfn gfn, vm::Access access, Time start) {
    if (ctx.vcpu < 0 || static_cast<std::size_t>(ctx.vcpu) >= vcpus_.size())
        throw std::invalid_argument("arm64_stage2: page_fault from '" + ctx.name + "', which is not a vCPU of the VM");
    f.v = vcpus_[static_cast<std::size_t>(ctx.vcpu)].get();
    f.vcpu = static_cast<std::uint32_t>(ctx.vcpu);
    f.cpu = ctx.host_cpu;
    f.gfn = gfn;
    f.access = access;
    f.start = start;
    f.write = access == vm::Access::Write;
    f.exec = access == vm::Access::Exec;
    f.s = slot_of(gfn);
    if (!f.s) return false;
    // What the hardware reported: a permission fault on the valid leaf it found, or a
    // translation fault (kvm_vcpu_trap_get_fault_type / _level).
    const std::uint32_t ri = region_of(gfn);
    if (vis3_[(static_cast<std::size_t>(ri) << 18) | (gfn & 0x3ffff)] & pte::V)
        f.fault_level = 3;
    else if (is_leaf(vis2_[(static_cast<std::size_t>(ri) << 9) | idx2(gfn)]))
        f.fault_level = 2;
    else if (is_leaf(vis1_[ri]))
        f.fault_level = 1;
    f.perm = f.fault_level != 0;
    const bool logging = vm_.memslots[f.s->index].dirty_logging;
    Time t = start + k_.fault_entry + k_.user_mem_abort;
    // Permission faults need no page-table page, but a dirty-logged write may split a block.
    if (!f.perm || (logging && f.write)) {
        f.topup = topup_objects(*f.v);
        t += k_.mmu_cache_alloc_page * f.topup;
    }
    f.t_gup = t;
    return true;
}

// What prepare() decided happens: the top-up. (The mmu_invalidate_seq snapshot is taken when the
// VMA lookup is done, just before the GUP: Gup::looked_up, checked under mmu_lock with
// MmuInvalidation::retry_since.)
void Arm64Stage2::commit(Fault& f) {
    stats_.add(stats_.pf_taken);
    if (f.topup) {
        std::uint32_t n = 0;
        f.v->mc.topup(kMinCachePages, &n);
        mc_->add(ModelCounters::topup_objs, n);
    }
}

// The GUP's answer: the arrival at mmu_lock, vma_pagesize (PAGE_SIZE while logging, else the host
// mapping's size, transparent_hugepage_adjust's PageTransCompoundMap, within the slot), and
// whether the mapping may be writable (hva_to_pfn's `writable`; while logging only for a write).
void Arm64Stage2::after_gup(Fault& f) {
    const bool logging = vm_.memslots[f.s->index].dirty_logging;
    f.t1 = f.gup.done;
    f.level = logging ? 3 : std::max(f.gup.level, max_mapping_level(*f.s, f.gfn));
    f.writable = f.gup.writable && !(logging && !f.write);
}

// Registers a call point waiting for its event (the lists are unordered: call_now looks at all).
// Its id is its fault's vCPU (a vCPU has at most one call point waiting), whose slot of
// pending_pos_ says where it is, so that erasing it needs no search.
void Arm64Stage2::pending_push(Call::Kind kind, const Fault& f) {
    const std::uint32_t id = f.vcpu;
    if (id >= pending_pos_.size() || pending_pos_[id] != kNoPos) [[unlikely]]
        throw std::logic_error("arm64_stage2: a vCPU with two call points waiting");
    const std::uint32_t list = kind == Call::kArrival ? 1 : kind == Call::kHost ? 2 : 0;
    const std::uint32_t i = pending_n_[list]++;  // below the capacity: one per vCPU
    pending_pos_[id] = (list << 30) | i;
    // Field by field from the fault (written long before): no wide reload of fresh narrow stores.
    Call& c = pending_[list][i];
    c.t = call_time(kind, f).ps();
    c.kind = kind;
    c.id = id;
    c.gfn = f.gfn;
    c.write = f.write;
    c.line = f.gup.ref;
    pending_t_[list][i] = c.t;
    if (list == 0) pending_lines_[i].ver = ~std::uint64_t{0};
}

void Arm64Stage2::pending_erase(std::uint32_t id) {
    const std::uint32_t pos = id < pending_pos_.size() ? pending_pos_[id] : kNoPos;
    const std::uint32_t list = pos >> 30, i = pos & ((1u << 30) - 1);
    if (list > 2 || i >= pending_n_[list] || pending_[list][i].id != id) [[unlikely]]
        throw std::logic_error("arm64_stage2: call point not registered");
    const std::uint32_t last = --pending_n_[list];
    Call* const calls = pending_[list].data();
    std::int64_t* const times = pending_t_[list].data();
    const std::uint32_t moved = calls[last].id;  // read before the copy (not back from it)
    calls[i] = calls[last];
    times[i] = times[last];
    pending_pos_[moved] = (list << 30) | i;
    if (list == 0) pending_lines_[i] = pending_lines_[last];
    pending_pos_[id] = kNoPos;
}

// Waits for the fault's call point `kind` in an event (a delay to its time, as sim_.delay), registered
// meanwhile. An awaiter rather than a nested task: no frame per wait.
struct Arm64Stage2::CallWait {
    Arm64Stage2& m;
    const Fault& f;
    Call::Kind kind = Call::kGup;
    bool registered = false;
    // Due already, or the next event anyway (then nobody can see it registered: no event between).
    bool await_ready() noexcept {
        const Time t = call_time(kind, f);
        return t <= m.sim_.now() || m.sim_.resume_inline(t, engine::EventKind::Delay);
    }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        m.pending_push(kind, f);
        registered = true;
        m.sim_.schedule_resume_pid(call_time(kind, f), h, h.promise().pid, engine::EventKind::Delay);
    }
    void await_resume() {
        if (registered) {
            registered = false;
            m.pending_erase(f.vcpu);
        }
    }
};

std::optional<Time> Arm64Stage2::page_fault_now(const vm::CpuContext& ctx, Gfn gfn, vm::Access access, Time start) {
    // Lock records of a traced run are flushed when the fault returns: the coroutine does it.
    if (!cfg_.spinlock || sim_.tracer()) return std::nullopt;
    if (ctx.vcpu < 0 || static_cast<std::size_t>(ctx.vcpu) >= vcpus_.size()) return std::nullopt;  // prepare() says
    VcpuState& v = *vcpus_[static_cast<std::size_t>(ctx.vcpu)];
    v.prepared = false;
    if (!aged_.empty() && access_fault(gfn, access)) return std::nullopt;  // handle_access_fault waits
    Fault& f = v.stash;
    f.reset();
    if (!prepare(f, ctx, gfn, access, start)) {
        stats_.add(stats_.pf_taken);
        stats_.add(stats_.pf_emulate);
        return start + k_.fault_entry + k_.fault_exit;
    }
    // A GUP that changes the host's page tables waits for events (bandwidth, invalidations).
    if (open_ || !call_now(Call::kGup, f)) {
        v.prepared = true;
        v.gup_later = !open_;
        return std::nullopt;
    }
    commit(f);
    set_gup(f.gup, host_->try_gup(f.cpu, gfn, f.write, f.t_gup, kVmaLookup));
    after_gup(f);
    f.proc = sim_.current();
    if (!call_now(Call::kArrival, f)) {
        f.v->stashed = true;
        return std::nullopt;
    }
    spin_reserve(f, std::max(f.t1, busy_until_));
    if (!call_now(Call::kPut, f)) {
        f.v->stashed = true;
        return std::nullopt;
    }
    return release(f);
}

// The hot path (mmu_lock as a spinlock, a vCPU's fault in a memslot): the fault lives in the
// vCPU's stash (page_fault_now() may have taken it part of the way), not in the frame, and one
// CallWait serves every call point, so that the frame stays a few lines; the rest is page_fault_cold().
Task<void> Arm64Stage2::page_fault_at(engine::Simulator&, const vm::CpuContext& ctx, Gfn gfn, vm::Access access,
                                      Time start) {
    VcpuState* const v = ctx.vcpu >= 0 && static_cast<std::size_t>(ctx.vcpu) < vcpus_.size()
                             ? vcpus_[static_cast<std::size_t>(ctx.vcpu)].get()
                             : nullptr;
    if (!v || (!v->stashed && (!cfg_.spinlock || (!aged_.empty() && access_fault(gfn, access))))) {
        co_await page_fault_cold(ctx, gfn, access, start);
        co_return;
    }
    Fault& f = v->stash;
    CallWait w{*this, f};
    if (v->stashed) {  // page_fault_now() took it part of the way
        v->stashed = false;
    } else {
        // page_fault_now() just found that the GUP waits: nothing call_now() reads has changed.
        bool gup_later = v->prepared && v->gup_later;
        if (!v->prepared || f.gfn != gfn || f.access != access || f.start != start) {
            gup_later = false;
            f.reset();
            if (!prepare(f, ctx, gfn, access, start)) {  // emulated: page_fault_cold() works it out again
                v->prepared = false;
                co_await page_fault_cold(ctx, gfn, access, start);
                co_return;
            }
        }
        v->prepared = false;
        commit(f);
        w.kind = Call::kGup;
        if (gup_later || !call_now(Call::kGup, f)) co_await w;
        if (host_->gup_analytic(gfn, f.write))
            set_gup(f.gup, host_->try_gup(f.cpu, gfn, f.write, f.t_gup, kVmaLookup));
        else
            co_await gup_changing(f, ctx);
        after_gup(f);
    }
    f.proc = sim_.current();
    if (!f.reserved) {
        w.kind = Call::kArrival;
        if (!call_now(Call::kArrival, f)) co_await w;
        if (open_) {
            co_await SpinWaitAwaiter{*this, &f, site_fault_, f.t1};  // resumed at f.unlock
            pending_erase(f.vcpu);  // its put_page, registered at the grant
        } else
            spin_reserve(f, std::max(f.t1, busy_until_));
    }
    w.kind = Call::kPut;
    if (!call_now(Call::kPut, f)) co_await w;
    f.r = release(f);
    co_await sim_.delay(f.r - sim_.now());
    if (sim_.tracer()) trace_flush();
}

// The GUP changes the host's page tables, as it goes (at its own time: the wait before it).
// Until it reaches mmu_lock no call point after its start is taken ahead of its event (see
// call_now).
Task<void> Arm64Stage2::gup_changing(Fault& f, const vm::CpuContext& ctx) {
    pending_push(Call::kHost, f);
    f.gup = co_await host_->gup(ctx, f.gfn, f.write, kVmaLookup);
    pending_erase(f.vcpu);
}

// page_fault_at() when not on its hot path: not a vCPU (prepare() says so), an access-flag fault,
// an emulated access, or mmu_lock as an rwlock.
Task<void> Arm64Stage2::page_fault_cold(const vm::CpuContext& ctx, Gfn gfn, vm::Access access, Time start) {
    Fault f;
    VcpuState* v = ctx.vcpu >= 0 && static_cast<std::size_t>(ctx.vcpu) < vcpus_.size()
                       ? vcpus_[static_cast<std::size_t>(ctx.vcpu)].get()
                       : nullptr;
    if (v && !aged_.empty() && access_fault(gfn, access)) {
        co_await handle_access_fault(ctx, gfn, start);
        co_return;
    }
    if (!prepare(f, ctx, gfn, access, start)) {
        stats_.add(stats_.pf_taken);
        stats_.add(stats_.pf_emulate);
        co_await sim_.delay(start + k_.fault_entry + k_.fault_exit - sim_.now());
        co_return;
    }
    commit(f);
    if (!cfg_.spinlock) {
        f.proc = sim_.current();
        co_await fault_rw(f, ctx);
        co_return;
    }
    throw std::logic_error("arm64_stage2: page_fault_cold on the spinlock's hot path");
}

// The work under mmu_lock from g (spinlock: all of it at once); returns its length.
Time Arm64Stage2::hold(Fault& f, Time g) {
    Walk w{f, g, Time::zero()};
    if (hold_head(w)) hold_walk(w);
    return w.h;
}

// The hold up to the walk: the lock word, mmu_invalidate_retry, v5.12's CMOs. False when the fault
// must go back to the guest.
bool Arm64Stage2::hold_head(Walk& w) {
    Fault& f = w.f;
    if (cfg_.spinlock) {
        w.h = lock_line(f.cpu, w.g > f.t1) + k_.mmu_lock_op;
    } else {  // read_lock: qrwlock's atomic_add_return_acquire on the count, FIFO with every other
        w.h = rw_word_->rmw(f.cpu, w.g) - w.g + k_.mmu_lock_op;
    }
    w.ri = region_of(f.gfn);
    if (inv_.retry_since(f.gup.looked_up)) {  // the host mapping changed meanwhile: back to the guest
        mc_->add(ModelCounters::retry_inv);
        return false;
    }
    const std::uint64_t bytes = pages_at(f.level) * vm::kPageSize;
    if (!cfg_.cmo_in_walker) {  // v5.12: on every fault but a permission fault, mapped or not
        if (!f.perm) w.h += walk_clean(w, bytes);
        if (f.exec) w.h += icache_inval(bytes);
    }
    w.prot = static_cast<std::uint8_t>(pte::V | pte::R | (f.writable ? pte::W : 0) | (f.exec ? pte::X : 0));
    return true;
}

// kvm_pgtable_stage2_relax_perms or kvm_pgtable_stage2_map, then marking the page dirty.
void Arm64Stage2::hold_walk(Walk& w) {
    Fault& f = w.f;
    if (f.perm && f.level == f.fault_level)
        relax_perms(w);
    else
        map(w);
    if (w.ret == kFixed)
        stats_.add(stats_.pf_fixed);
    else if (w.ret == kSpurious)
        stats_.add(stats_.pf_spurious);
    if (f.writable && w.ok) w.h += mark_page_dirty(*f.s, f.gfn, f.cpu);
}

// A change of a descriptor at the walk's current time. Spinlock: the planned copy now, the
// visible one then. Rwlock: both now, but a leaf installed after its CMOs stays locked until then
// (stage2_try_break_pte's KVM_INVALID_PTE_LOCKED), when fault_rw() installs it.
void Arm64Stage2::emit(Walk& w, int level, Gfn gfn, std::uint8_t value, bool leaf) {
    if (cfg_.spinlock) {
        plan_entry(level, w.ri, gfn) = value;
        publish(w.g + w.h, level, w.ri, gfn, value);
    } else if (!leaf) {
        set_both(level, w.ri, gfn, value);
    } else {
        set_both(level, w.ri, gfn, pte::LOCKED);
        w.f.deferred = true;
        w.f.d_level = level;
        w.f.d_value = value;
        w.f.d_at = w.g + w.h;
    }
}

// kvm_pgtable_stage2_map(vma_pagesize): the walk from level 1 to the mapping level.
void Arm64Stage2::map(Walk& w) {
    Fault& f = w.f;
    mc_->add(ModelCounters::map);
    w.h += k_.stage2_map_base;
    for (int level = 1; level <= f.level; ++level) {
        const std::uint8_t e = plan_entry(level, w.ri, f.gfn);
        w.h += k_.stage2_walk_level + touch(f.cpu, entry_addr(level, w.ri, f.gfn), false);
        if (level == f.level) {
            try_leaf(w, level, e);
            return;
        }
        if (is_table(e)) continue;
        if (e & pte::LOCKED) {  // another walker is breaking it
            mc_->add(ModelCounters::locked);
            w.ret = kAgain;
            return;
        }
        // stage2_map_walk_leaf: no table here, or a block in the way (force_pte): link a table
        // page from the vCPU's cache, breaking the block first.
        if (!f.v->mc.alloc()) {
            mc_->add(ModelCounters::alloc_atomic);
            w.h += k_.mmu_cache_alloc_page;
        }
        const std::uint64_t page = pt_alloc_.alloc();
        if (e & pte::V) {
            emit(w, level, f.gfn, pte::LOCKED, false);
            w.h += touch(f.cpu, entry_addr(level, w.ri, f.gfn), true) + k_.tlbi_ipa;
            stats_.update_page_stats(page_level(level), -1);
            mc_->add(ModelCounters::bbm);
            mc_->add(ModelCounters::tlbi_ipa);
            mc_->add(ModelCounters::block_to_table);
        }
        if (level == 1)
            t2_page_[w.ri] = page;
        else
            t3_page_[(static_cast<std::size_t>(w.ri) << 9) | idx2(f.gfn)] = page;
        emit(w, level, f.gfn, pte::TABLE, false);
        w.h += k_.stage2_pte_update + touch(f.cpu, entry_addr(level, w.ri, f.gfn), true);
        mc_->add(ModelCounters::tables_linked);
    }
}

// stage2_map_walker_try_leaf at the mapping level (a table there: stage2_map_walk_table_pre).
void Arm64Stage2::try_leaf(Walk& w, int level, std::uint8_t old) {
    Fault& f = w.f;
    if (is_leaf(old)) {  // stage2_pte_needs_update: the same output, at most permissions differ
        mc_->add(ModelCounters::map_same);
        w.ret = kSpurious;
        return;
    }
    if (old & pte::LOCKED) {
        mc_->add(ModelCounters::locked);
        w.ret = kAgain;
        return;
    }
    if (is_table(old)) {  // a block replaces the table: break it, flush the VMID, free the table
        const std::uint64_t entries = free_subtree(level, w.ri, f.gfn);
        emit(w, level, f.gfn, pte::LOCKED, false);
        w.h += touch(f.cpu, entry_addr(level, w.ri, f.gfn), true);
        if (cfg_.tlbi_range) {  // v6.6: kvm_tlb_flush_vmid_range over the table's range
            w.h += tlb_flush_vmid_range(round_gfn(f.gfn, level), round_gfn(f.gfn, level) + pages_at(level));
        } else {
            w.h += k_.tlbi_vmid;
            mc_->add(ModelCounters::tlbi_vmid);
        }
        mc_->add(ModelCounters::bbm);
        mc_->add(ModelCounters::table_to_block);
        if (cfg_.spinlock)  // before v6.2 the removed table is walked and freed under the lock
            w.h += k_.stage2_free_entry * static_cast<std::int64_t>(entries);
        else  // since v6.2 by an RCU callback (free_removed_table)
            mc_->add(ModelCounters::tables_rcu);
    }
    if (cfg_.cmo_in_walker) {  // only when a PTE is really installed
        const std::uint64_t bytes = pages_at(level) * vm::kPageSize;
        w.h += walk_clean(w, bytes);
        if (w.prot & pte::X) w.h += icache_inval(bytes);
    }
    emit(w, level, f.gfn, w.prot, true);
    w.h += k_.stage2_pte_update + touch(f.cpu, entry_addr(level, w.ri, f.gfn), true);
    stats_.update_page_stats(page_level(level), 1);
    w.ret = kFixed;
    w.ok = true;
}

// kvm_pgtable_stage2_relax_perms: add the fault's permissions to the leaf, then TLBI by IPA.
void Arm64Stage2::relax_perms(Walk& w) {
    Fault& f = w.f;
    mc_->add(ModelCounters::relax);
    w.h += k_.relax_perms_base;
    int level = 1;
    std::uint8_t e = 0;
    for (;; ++level) {
        e = plan_entry(level, w.ri, f.gfn);
        w.h += k_.stage2_walk_level + touch(f.cpu, entry_addr(level, w.ri, f.gfn), false);
        if (!is_table(e) || level == 3) break;
    }
    if (!(e & pte::V)) {  // gone or locked meanwhile: -EAGAIN, no TLBI
        mc_->add(ModelCounters::relax_again);
        w.ret = kAgain;
        return;
    }
    const auto ne = static_cast<std::uint8_t>(e | (w.prot & (pte::R | pte::W | pte::X)));
    if (ne != e) {
        if (cfg_.cmo_in_walker && (ne & pte::X) && !(e & pte::X))
            w.h += icache_inval(pages_at(level) * vm::kPageSize);
        emit(w, level, f.gfn, ne, false);
        w.h += k_.stage2_pte_update + touch(f.cpu, entry_addr(level, w.ri, f.gfn), true);
        w.ret = kFixed;
    } else {
        w.ret = kSpurious;
    }
    if (cfg_.relax_tlbi_local) {  // v6.5: TLBI IPAS2E1, VMALLE1 and DSB NSH, this CPU only
        w.h += k_.tlbi_ipa_nsh;
        mc_->add(ModelCounters::tlbi_ipa_nsh);
    } else {
        w.h += k_.tlbi_ipa;
        mc_->add(ModelCounters::tlbi_ipa);
    }
    w.ok = true;
}

// The fault under mmu_lock as an rwlock (v6.2): read lock, concurrent walkers. The walk reads the
// descriptors when it gets there (after any CMOs user_mem_abort does first); a leaf it installs
// stays locked through its TLBI and CMOs.
// The GUP runs at its own time: the host's page tables and lines are read and used in time order.
Task<void> Arm64Stage2::fault_rw(Fault& f, const vm::CpuContext& ctx) {
    if (f.t_gup > sim_.now()) co_await sim_.delay(f.t_gup - sim_.now());
    if (host_->gup_analytic(f.gfn, f.write))
        f.gup = host_->try_gup(f.cpu, f.gfn, f.write, f.t_gup, kVmaLookup);
    else
        f.gup = co_await host_->gup(ctx, f.gfn, f.write, kVmaLookup);
    after_gup(f);
    if (f.t1 > sim_.now()) co_await sim_.delay(f.t1 - sim_.now());
    engine::LockGuard guard = co_await rw_->read(site_fault_);
    Walk w{f, sim_.now(), Time::zero()};
    if (hold_head(w)) {
        co_await run_clean(w);
        if (w.g + w.h > sim_.now()) co_await sim_.delay(w.g + w.h - sim_.now());
        hold_walk(w);
        co_await run_clean(w);
    }
    if (f.deferred) {
        co_await sim_.delay(f.d_at - sim_.now());
        const std::uint32_t ri = region_of(f.gfn);
        if (plan_entry(f.d_level, ri, f.gfn) == pte::LOCKED) set_both(f.d_level, ri, f.gfn, f.d_value);
    }
    if (w.g + w.h > sim_.now()) co_await sim_.delay(w.g + w.h - sim_.now());
    // read_unlock: atomic_sub_return_release on the count, which the other readers contend for.
    const Time unlocked = rw_word_->rmw(f.cpu, sim_.now());
    if (unlocked > sim_.now()) co_await sim_.delay(unlocked - sim_.now());
    guard.unlock();
    const Time rel = host_->put_page(f.cpu, f.gup, sim_.now());
    co_await sim_.delay(rel - sim_.now() + k_.fault_exit);
}

// ---------------------------------------------------------------------------------------------
// Host-side operations

Arm64Stage2::Bulk Arm64Stage2::make_bulk(const vm::CpuContext& cpu) {
    Bulk b;
    b.start(cpu, k_.sched_timeslice, sim_.now());
    return b;
}

Task<void> Arm64Stage2::settle(Bulk& b) { co_await models::settle(sim_, b); }

// mmu_lock for write (spin_lock before v6.2), after host_entry (the ioctl's or the notifier's way
// to the lock: no host arrival comes sooner after its last event).
Task<void> Arm64Stage2::lock(Bulk& b, engine::Site site, bool read, bool entry) {
    co_await settle(b);
    if (entry) co_await sim_.delay(k_.host_entry);
    b.site = site;
    if (!cfg_.spinlock) {
        b.guard = co_await (read ? rw_->read(site) : rw_->write(site));
    } else if (open_ || !waiters_.empty()) {
        co_await SpinWaitAwaiter{*this, nullptr, site, sim_.now()};
    } else {
        const Time g = std::max(sim_.now(), busy_until_);
        spin_open(sim_.current(), site, sim_.now(), g);
        if (g > sim_.now()) co_await sim_.delay(g - sim_.now());
    }
    if (cfg_.spinlock) {
        publish_due();  // every reserved hold has ended: the guest sees all of it
        trace_flush();
    }
    b.acc += touch(b.cpu, mmu_lock_addr_, true);
    lock_cpu_ = b.cpu;
    b.last_line = BulkWork::kNoLine;
}

Task<void> Arm64Stage2::unlock(Bulk& b) {
    co_await settle(b);
    if (cfg_.spinlock)
        spin_release_host();
    else
        b.guard.unlock();
    b.acc += touch(b.cpu, mmu_lock_addr_, true);
}

bool Arm64Stage2::needbreak() const {
    if (!cfg_.preempt) return false;
    return cfg_.spinlock ? !waiters_.empty() : rw_->needbreak();
}

// cond_resched_rwlock_write / cond_resched_lock between chunks of stage2_apply_range.
Task<void> Arm64Stage2::cond_resched(Bulk& b) {
    const bool resched = b.clock.need_resched(sim_.now() + b.acc);
    if (!needbreak() && !resched) co_return;
    mc_->add(ModelCounters::resched);
    const engine::Site site = b.site;
    co_await unlock(b);
    b.acc += k_.lock_yield;
    if (resched) {
        co_await settle(b);
        b.clock.start(sim_.now());
    }
    co_await lock(b, site);
}

// kvm_pgtable_stage2_wrprotect on one descriptor (stage2_attr_walker, clearing S2AP_W).
void Arm64Stage2::wp_entry(Bulk& b, int level, std::uint32_t ri, Gfn gfn) {
    const std::uint8_t e = plan_entry(level, ri, gfn);
    if (!is_leaf(e) || !(e & pte::W)) return;
    set_both(level, ri, gfn, static_cast<std::uint8_t>(e & ~pte::W));
    b.acc += k_.stage2_pte_update + touch(b.cpu, entry_addr(level, ri, gfn), true);
    mc_->add(ModelCounters::wp);
}

// A bulk walker's visit of the descriptor at (level, ri, g): a walker step, and a touch of its
// line when the walk moves to another line. Returns the descriptor as the walk will see it.
std::uint8_t Arm64Stage2::walk_step(Bulk& b, int level, std::uint32_t ri, Gfn g) {
    const std::uint64_t addr = entry_addr(level, ri, g);
    b.acc += k_.stage2_walk_step;
    if ((addr >> 6) != b.last_line) {
        b.acc += touch(b.cpu, addr, false);
        b.last_line = addr >> 6;
    }
    return plan_entry(level, ri, g);
}

// stage2_wp_range -> stage2_apply_range_resched(kvm_pgtable_stage2_wrprotect), 1 GiB at a time,
// with a cond_resched between chunks. Every descriptor visited costs a walker step; every new
// line of descriptors a touch.
Task<void> Arm64Stage2::wp_range(Bulk& b, Gfn start, Gfn end) {
    for (Gfn a = start; a < end;) {
        const Gfn next = std::min(round_gfn(a, 1) + pages_at(1), end);
        const std::uint32_t ri = region_of(a);
        if (ri != kNoRegion) {
            auto step = [&](int level, Gfn g) { return walk_step(b, level, ri, g); };
            const std::uint8_t e1 = step(1, a);
            if (is_leaf(e1)) {
                wp_entry(b, 1, ri, a);
            } else if (is_table(e1)) {
                for (Gfn g2 = round_gfn(a, 2); g2 < next; g2 += pages_at(2)) {
                    const std::uint8_t e2 = step(2, g2);
                    if (is_leaf(e2)) {
                        wp_entry(b, 2, ri, g2);
                    } else if (is_table(e2)) {
                        for (Gfn g3 = std::max(g2, a); g3 < std::min(g2 + pages_at(2), next); ++g3)
                            if (is_leaf(step(3, g3))) wp_entry(b, 3, ri, g3);
                    }
                }
            }
        }
        a = next;
        if (b.acc >= kSettleQuantum) co_await settle(b);
        if (a < end) co_await cond_resched(b);
    }
}

// ---------------------------------------------------------------------------------------------
// Eager page splitting (Ricardo Koller, "KVM: arm64: Eager Huge-page splitting for dirty-logging",
// merged for v6.5 through kvmarm-6.5; arch/arm64/kvm/mmu.c, arch/arm64/kvm/hyp/pgtable.c).

// kvm_mmu_split_nr_page_tables(chunk): the table pages splitting a chunk's blocks down to
// PAGE_SIZE may take: one per 1 GiB (KVM_PGTABLE_MIN_BLOCK_LEVEL is 1 with 4 KiB pages) plus one
// per 2 MiB, rounded up. It is both the split cache's capacity and its minimum.
std::uint32_t Arm64Stage2::split_nr_page_tables() const {
    const std::uint64_t c = cfg_.split_chunk_pages;
    return static_cast<std::uint32_t>((c + pages_at(1) - 1) / pages_at(1) + (c + pages_at(2) - 1) / pages_at(2));
}

// need_split_memcache_topup_or_resched: need_resched(), a waiter on mmu_lock
// (rwlock_needbreak), or fewer free pages in the split cache than a chunk may take.
bool Arm64Stage2::need_split_memcache_topup_or_resched(const Bulk& b) const {
    if (b.clock.need_resched(sim_.now() + b.acc) || needbreak()) return true;
    return split_cache_.nr_free_objects() < split_nr_page_tables();
}

// stage2_split_walker on a valid block at `level`: kvm_pgtable_stage2_create_unlinked builds the
// subtree that maps the same output with the block's permissions (a walk with
// KVM_PGTABLE_WALK_SKIP_BBM_TLBI | KVM_PGTABLE_WALK_SKIP_CMO: no TLBI and no CMO for the new,
// unreachable entries), down to PAGE_SIZE when the cache holds every page that takes
// (stage2_block_get_nr_page_tables: 1 + 512 for a 1 GiB block, 1 for a 2 MiB one; force_pte), else
// one table of the next level's blocks, which the walk then descends into and splits in turn.
// Then stage2_try_break_pte (the block made KVM_INVALID_PTE_LOCKED, __kvm_tlb_flush_vmid_ipa
// for the block it held) and stage2_make_pte (the table). Returns false on -ENOMEM (the cache
// cannot give one page).
bool Arm64Stage2::split_block(Bulk& b, int level, std::uint32_t ri, Gfn gfn) {
    const std::uint8_t e = plan_entry(level, ri, gfn);
    std::uint32_t nr = level == 1 ? 1 + 512 : 1;
    bool force_pte = true;
    if (split_cache_.nr_free_objects() < nr) {
        force_pte = false;
        nr = 1;
    }
    if (split_cache_.nr_free_objects() < nr) {
        mc_->add(ModelCounters::split_enomem);
        return false;
    }
    const auto leaf = static_cast<std::uint8_t>(pte::V | (e & (pte::R | pte::W | pte::X)));
    b.acc += k_.stage2_map_base;  // kvm_pgtable_stage2_create_unlinked's walk set-up
    // One table page from the split cache, its 512 descriptors written by the map walker.
    auto new_table = [&]() {
        const bool cached = split_cache_.alloc();
        (void)cached;  // nr pages are there (checked above)
        const std::uint64_t page = split_pages_.back();
        split_pages_.pop_back();
        b.acc += touch(b.cpu, page, true, vm::kPageSize) + (k_.stage2_walk_step + k_.stage2_pte_update) * 512;
        mc_->add(ModelCounters::tables_linked);
        mc_->add(ModelCounters::split_ptes, 512);
        return page;
    };
    const std::size_t r = ri;
    if (level == 1) {
        t2_page_[ri] = new_table();
        const auto b2 = static_cast<std::ptrdiff_t>(r << 9);
        if (force_pte) {
            for (std::uint32_t i2 = 0; i2 < 512; ++i2) t3_page_[(r << 9) | i2] = new_table();
            std::fill_n(plan3_.begin() + static_cast<std::ptrdiff_t>(r << 18), 1 << 18, leaf);
            std::fill_n(vis3_.begin() + static_cast<std::ptrdiff_t>(r << 18), 1 << 18, leaf);
            std::fill_n(plan2_.begin() + b2, 512, pte::TABLE);
            std::fill_n(vis2_.begin() + b2, 512, pte::TABLE);
            stats_.update_page_stats(vm::PageLevel::K4, 1 << 18);
        } else {
            std::fill_n(plan2_.begin() + b2, 512, leaf);
            std::fill_n(vis2_.begin() + b2, 512, leaf);
            stats_.update_page_stats(vm::PageLevel::M2, 512);
        }
    } else {
        t3_page_[i2(ri, gfn)] = new_table();
        const auto b3 = static_cast<std::ptrdiff_t>((r << 18) | (round_gfn(gfn, 2) & 0x3ffff));
        std::fill_n(plan3_.begin() + b3, 512, leaf);
        std::fill_n(vis3_.begin() + b3, 512, leaf);
        stats_.update_page_stats(vm::PageLevel::K4, 512);
    }
    // stage2_try_break_pte, then stage2_make_pte: both copies at once, as every host operation
    // changes them (the guest cannot run between the two here).
    b.acc += touch(b.cpu, entry_addr(level, ri, gfn), true) + k_.stage2_pte_update + k_.tlbi_ipa + k_.stage2_pte_update;
    set_both(level, ri, gfn, pte::TABLE);
    stats_.update_page_stats(page_level(level), -1);
    mc_->add(ModelCounters::bbm);
    mc_->add(ModelCounters::tlbi_ipa);
    mc_->add(ModelCounters::block_to_table);
    mc_->add(ModelCounters::split_blocks);
    return true;
}

// kvm_pgtable_stage2_split over [start, end): a kvm_pgtable_walk with KVM_PGTABLE_WALK_LEAF that
// visits every descriptor of the range (a walker step and a new line each, as stage2_wp_range)
// and calls stage2_split_walker on the valid blocks; after a split it reloads the entry and walks
// the new table. Returns false on -ENOMEM.
bool Arm64Stage2::stage2_split(Bulk& b, Gfn start, Gfn end) {
    mc_->add(ModelCounters::split_chunks);
    for (Gfn a = start; a < end;) {
        const Gfn next = std::min(round_gfn(a, 1) + pages_at(1), end);
        const std::uint32_t ri = region_of(a);
        if (ri != kNoRegion) {
            auto step = [&](int level, Gfn g) { return walk_step(b, level, ri, g); };
            std::uint8_t e1 = step(1, a);
            if (is_leaf(e1)) {
                if (!split_block(b, 1, ri, a)) return false;
                e1 = plan_entry(1, ri, a);
            }
            if (is_table(e1)) {
                for (Gfn g2 = round_gfn(a, 2); g2 < next; g2 += pages_at(2)) {
                    std::uint8_t e2 = step(2, g2);
                    if (is_leaf(e2)) {
                        if (!split_block(b, 2, ri, g2)) return false;
                        e2 = plan_entry(2, ri, g2);
                    }
                    if (is_table(e2))  // no huge pages at the last level: visited, nothing done
                        for (Gfn g3 = std::max(g2, a); g3 < std::min(g2 + pages_at(2), next); ++g3) step(3, g3);
                }
            }
        }
        a = next;
    }
    return true;
}

// kvm_mmu_split_huge_pages(start, end), mmu_lock held for write: chunk by chunk
// (__stage2_range_addr_end: the next chunk-aligned boundary), each chunk's split preceded, when
// need_split_memcache_topup_or_resched(), by write_unlock, cond_resched(),
// __kvm_mmu_topup_memory_cache(split_page_cache, n, n) with n = kvm_mmu_split_nr_page_tables(chunk)
// (GFP_KERNEL_ACCOUNT | __GFP_ZERO pages, mmu_cache_alloc_page each), write_lock. Best effort: a
// failed split ends it.
Task<void> Arm64Stage2::split_huge_pages(Bulk& b, Gfn start, Gfn end) {
    const std::uint64_t chunk = cfg_.split_chunk_pages;
    if (chunk == 0) co_return;
    const std::uint32_t cap = split_nr_page_tables();
    const engine::Site outer = b.site;
    for (Gfn a = start; a < end;) {
        if (need_split_memcache_topup_or_resched(b)) {
            const bool resched = b.clock.need_resched(sim_.now() + b.acc);
            co_await unlock(b);
            b.acc += k_.lock_yield;
            if (resched) {
                co_await settle(b);
                b.clock.start(sim_.now());
            }
            std::uint32_t n = 0;
            split_cache_.topup(cap, cap, &n);
            b.acc += k_.mmu_cache_alloc_page * static_cast<std::int64_t>(n);
            // __GFP_ZERO leaves each page's lines in this CPU's cache; the clearing itself is in
            // mmu_cache_alloc_page.
            for (std::uint32_t i = 0; i < n; ++i) {
                split_pages_.push_back(pt_alloc_.alloc());
                (void)touch(b.cpu, split_pages_.back(), true, vm::kPageSize);
            }
            mc_->add(ModelCounters::split_topups);
            mc_->add(ModelCounters::split_topup_objs, n);
            mc_->add(ModelCounters::topup_objs, n);
            co_await lock(b, site_split_, false, false);
            b.site = outer;  // a later cond_resched re-takes the lock for the caller
        }
        const Gfn next = std::min((a + chunk) & ~(chunk - 1), end);
        if (!stage2_split(b, a, next)) break;
        a = next;
        if (b.acc >= kSettleQuantum) co_await settle(b);
    }
}

// KVM_SET_USER_MEMORY_REGION adding KVM_MEM_LOG_DIRTY_PAGES: the memslot update, then
// kvm_arch_commit_memory_region -> kvm_mmu_wp_memory_region (unless initially-all-set):
// write-protect every leaf under mmu_lock (blocks stay blocks: no eager splitting by default),
// then kvm_flush_remote_tlbs.
Task<void> Arm64Stage2::dirty_log_enable(const vm::CpuContext& cpu, std::uint32_t slot, vm::DirtyLogOptions opts) {
    Slot& s = slot_by_id(slot);
    vm::Memslot& m = vm_.memslots[s.index];
    if (m.dirty_logging) co_return;
    Bulk b = make_bulk(cpu);
    co_await sim_.delay(k_.memslot_update);
    s.manual_protect = opts.manual_protect_initially_set;
    s.bitmap = make_dirty_bitmap(s.npages, s.manual_protect);
    m.dirty_logging = true;
    if (s.manual_protect) co_return;
    b.clock.start(sim_.now());
    co_await lock(b, site_wp_);
    co_await wp_range(b, s.base, s.base + s.npages);
    co_await unlock(b);
    b.acc += flush_range(s.base, s.base + s.npages);  // kvm_flush_remote_tlbs: TLBI VMALLS12E1IS, broadcast
    if (cfg_.split_chunk_pages) {  // v6.5: kvm_mmu_split_memory_region, write-protected blocks split
        co_await lock(b, site_split_region_, false, false);
        co_await split_huge_pages(b, s.base, s.base + s.npages);
        co_await unlock(b);
    }
    co_await settle(b);
}

// kvm_arch_mmu_enable_log_dirty_pt_masked: write-protect from the first to the last page of the
// mask.
Task<void> Arm64Stage2::harvest(Bulk& b, Slot& s, std::uint64_t word, std::uint64_t mask) {
    const Gfn base = s.base + word * 64;
    co_await wp_range(b, base + static_cast<unsigned>(std::countr_zero(mask)),
                      base + 64 - static_cast<unsigned>(std::countl_zero(mask)));
}

// KVM_GET_DIRTY_LOG: kvm_get_dirty_log_protect.
Task<std::uint64_t> Arm64Stage2::dirty_log_get(const vm::CpuContext& cpu, std::uint32_t slot) {
    Slot& s = slot_by_id(slot);
    if (!vm_.memslots[s.index].dirty_logging || s.bitmap.empty()) co_return 0;
    Bulk b = make_bulk(cpu);
    std::uint64_t harvested = 0;
    const std::size_t nw = s.bitmap.size();
    if (s.manual_protect) {  // the bitmap is copied as is; KVM_CLEAR_DIRTY_LOG protects
        for (std::size_t i = 0; i < nw; ++i) {
            b.acc += k_.dirty_bitmap_word;
            if (i % 8 == 0) b.acc += touch(b.cpu, s.bitmap_addr + i * 8, false);
            harvested += static_cast<std::uint64_t>(std::popcount(s.bitmap[i]));
        }
        co_await settle(b);
        mc_->add(ModelCounters::harvested, harvested);
        co_return harvested;
    }
    bool flush = false;
    co_await lock(b, site_get_);
    for (std::size_t i = 0; i < nw; ++i) {
        b.acc += k_.dirty_bitmap_word;
        if (i % 8 == 0) b.acc += touch(b.cpu, s.bitmap_addr + i * 8, false);
        if (!s.bitmap[i]) continue;
        flush = true;
        const std::uint64_t mask = std::exchange(s.bitmap[i], 0);
        b.acc += touch(b.cpu, s.bitmap_addr + i * 8, true);
        harvested += static_cast<std::uint64_t>(std::popcount(mask));
        co_await harvest(b, s, i, mask);
    }
    co_await unlock(b);
    if (flush) b.acc += flush_range(s.base, s.base + s.npages);  // kvm_flush_remote_tlbs_memslot
    co_await settle(b);
    mc_->add(ModelCounters::harvested, harvested);
    co_return harvested;
}

// KVM_CLEAR_DIRTY_LOG: kvm_clear_dirty_log_protect over [first, first + npages), rounded down to
// 64 pages of the slot.
Task<void> Arm64Stage2::dirty_log_clear(const vm::CpuContext& cpu, std::uint32_t slot, Gfn first, std::uint64_t npages) {
    Slot& s = slot_by_id(slot);
    if (!vm_.memslots[s.index].dirty_logging || !s.manual_protect || s.bitmap.empty()) co_return;
    if (first < s.base || first - s.base >= s.npages || npages == 0) co_return;
    const std::uint64_t off0 = (first - s.base) & ~std::uint64_t{63};
    const std::uint64_t last = std::min(first - s.base + npages, s.npages);
    Bulk b = make_bulk(cpu);
    bool flush = false;
    co_await lock(b, site_clear_);
    for (std::uint64_t off = off0; off < last; off += 64) {
        const std::size_t i = off / 64;
        b.acc += k_.dirty_bitmap_word;
        if (i % 8 == 0) b.acc += touch(b.cpu, s.bitmap_addr + i * 8, false);
        const std::uint64_t user = dirty_word_range(off, first - s.base, last);
        const std::uint64_t mask = user & s.bitmap[i];
        if (!mask) continue;
        s.bitmap[i] &= ~user;
        b.acc += touch(b.cpu, s.bitmap_addr + i * 8, true);
        flush = true;
        co_await harvest(b, s, i, mask);
        // kvm_arch_mmu_enable_log_dirty_pt_masked, initially-all-set (v6.5): the same range's
        // blocks split after their write protection.
        const Gfn base = s.base + i * 64;
        co_await split_huge_pages(b, base + static_cast<unsigned>(std::countr_zero(mask)),
                                  base + 64 - static_cast<unsigned>(std::countl_zero(mask)));
    }
    co_await unlock(b);
    if (flush) b.acc += flush_range(s.base, s.base + s.npages);  // kvm_flush_remote_tlbs_memslot
    co_await settle(b);
}

// KVM_SET_USER_MEMORY_REGION removing KVM_MEM_LOG_DIRTY_PAGES: only the memslot update on arm64;
// later faults map blocks again (a table replaced by a block, freeing the table).
Task<void> Arm64Stage2::dirty_log_disable(const vm::CpuContext& cpu, std::uint32_t slot) {
    (void)cpu;
    Slot& s = slot_by_id(slot);
    vm::Memslot& m = vm_.memslots[s.index];
    if (!m.dirty_logging) co_return;
    co_await sim_.delay(k_.memslot_update);
    m.dirty_logging = false;
    s.bitmap.clear();
    s.bitmap.shrink_to_fit();
    s.manual_protect = false;
    split_cache_.free_all();  // kvm_arch_commit_memory_region: kvm_mmu_free_memory_cache(split_page_cache)
    for (const std::uint64_t page : split_pages_) pt_alloc_.free(page);
    split_pages_.clear();
}

// kvm_pgtable_stage2_unmap over [start, end): every leaf overlapping it goes (a block entirely),
// with a TLBI by IPA each and, without FWB, a clean of what it mapped (stage2_unmap_walker).
// Emptied table pages stay linked (the kernel frees them).
Task<void> Arm64Stage2::unmap_range(Bulk& b, Gfn start, Gfn end) {
    // stage2_unmap_defer_tlb_flush (v6.6): with FEAT_TLBIRANGE and FWB (no CMOs in the walk) the
    // per-leaf TLBIs give way to one kvm_tlb_flush_vmid_range over the range after the walk.
    const bool defer = cfg_.tlbi_range && cfg_.fwb;
    bool unmapped = false;
    auto unmap = [&](int level, std::uint32_t ri, Gfn g) {
        set_both(level, ri, g, 0);
        stats_.update_page_stats(page_level(level), -1);
        b.acc += k_.stage2_pte_update + touch(b.cpu, entry_addr(level, ri, g), true) +
                 dcache_clean(b.cpu, pages_at(level) * vm::kPageSize, sim_.now() + b.acc);
        if (!defer) {
            b.acc += k_.tlbi_ipa;
            mc_->add(ModelCounters::tlbi_ipa);
        }
        unmapped = true;
        mc_->add(ModelCounters::unmapped);
    };
    for (Gfn a = start; a < end;) {
        const Gfn next = std::min(round_gfn(a, 1) + pages_at(1), end);
        const std::uint32_t ri = region_of(a);
        if (ri != kNoRegion) {
            b.acc += k_.stage2_walk_step;
            const std::uint8_t e1 = plan_entry(1, ri, a);
            if (is_leaf(e1)) {
                unmap(1, ri, a);
            } else if (is_table(e1)) {
                for (Gfn g2 = round_gfn(a, 2); g2 < next; g2 += pages_at(2)) {
                    b.acc += k_.stage2_walk_step;
                    const std::uint8_t e2 = plan_entry(2, ri, g2);
                    if (is_leaf(e2)) {
                        unmap(2, ri, g2);
                    } else if (is_table(e2)) {
                        for (Gfn g3 = std::max(g2, a); g3 < std::min(g2 + pages_at(2), next); ++g3) {
                            b.acc += k_.stage2_walk_step;
                            if (is_leaf(plan_entry(3, ri, g3))) unmap(3, ri, g3);
                        }
                    }
                }
            }
        }
        a = next;
        if (b.acc >= kSettleQuantum) co_await settle(b);
        if (a < end) co_await cond_resched(b);
    }
    if (defer && unmapped) b.acc += tlb_flush_vmid_range(start, end);
}

// The VM's teardown as its memory goes (the series' "Unmap VM"): kvm_unmap_gfn_range over every
// memslot under mmu_lock for write, i.e. kvm_pgtable_stage2_unmap with its TLBIs (per leaf, or one
// range per memslot when deferred); the emptied tables are then freed by kvm_pgtable_stage2_destroy
// (kvm_free_stage2_pgd), which issues no TLBI and is not timed.
Task<void> Arm64Stage2::vm_destroy(const vm::CpuContext& cpu) {
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_destroy_);
    for (const auto& s : slots_) co_await unmap_range(b, s->base, s->base + s->npages);
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_invalidate_range_start: under mmu_lock for write, kvm_mmu_invalidate_begin
// and range_add, then kvm_unmap_gfn_range (unmap_range).
Task<void> Arm64Stage2::invalidate_range_start(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_mn_start_);
    inv_.begin();
    inv_.range_add(start, end);
    co_await unmap_range(b, start, end);
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_invalidate_range_end: kvm_mmu_invalidate_end under mmu_lock.
Task<void> Arm64Stage2::invalidate_range_end(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    (void)start;
    (void)end;
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_mn_end_);
    inv_.end(sim_.now() + b.acc);
    co_await unlock(b);
    co_await settle(b);
}

// kvm_mmu_notifier_change_pte -> kvm_set_spte_hva (v5.12) / kvm_set_spte_gfn: the new page
// mapped read-only at 4 KiB with kvm_pgtable_stage2_map and no memory cache, so only where a
// level-3 table is already linked (else -ENOMEM, nothing mapped). Before v5.13 the notifier bumps
// mmu_notifier_seq (here with mmu_lock = "spinlock"); since, it returns at once unless an
// invalidation is in progress (always, around wp_page_copy's). With cmo = "user_mem_abort"
// kvm_set_spte_hva cleans the page to PoC itself; with "map_walker" the walker does when it
// installs.
Task<void> Arm64Stage2::change_pte(const vm::CpuContext& cpu, Gfn gfn) {
    Bulk b = make_bulk(cpu);
    co_await lock(b, site_mn_change_);
    if (cfg_.spinlock) inv_.bump_seq(sim_.now() + b.acc);
    const std::uint32_t ri = region_of(gfn);
    if ((cfg_.spinlock || inv_.in_progress() != 0) && ri != kNoRegion) {
        if (!cfg_.cmo_in_walker) b.acc += dcache_clean(b.cpu, vm::kPageSize, sim_.now() + b.acc);
        b.acc += k_.stage2_map_base;
        if (is_table(plan_entry(1, ri, gfn)) && is_table(plan_entry(2, ri, gfn)) && !(plan_entry(3, ri, gfn) & pte::V)) {
            b.acc += k_.stage2_walk_level * 3 + touch(b.cpu, entry_addr(3, ri, gfn), false);
            if (cfg_.cmo_in_walker) b.acc += dcache_clean(b.cpu, vm::kPageSize, sim_.now() + b.acc);
            set_both(3, ri, gfn, static_cast<std::uint8_t>(pte::V | pte::R));
            b.acc += k_.stage2_pte_update + touch(b.cpu, entry_addr(3, ri, gfn), true);
            stats_.update_page_stats(vm::PageLevel::K4, 1);
            mc_->add(ModelCounters::change_pte_map);
        }
    }
    co_await unlock(b);
    co_await settle(b);
}

// ---------------------------------------------------------------------------------------------
// Access tracking (v6.2 kvm_age_gfn / kvm_test_age_gfn -> kvm_pgtable_stage2_mkold /
// kvm_pgtable_stage2_is_young; handle_access_fault -> kvm_pgtable_stage2_mkyoung)

std::size_t Arm64Stage2::leaf_head(Gfn gfn) const {
    const std::uint32_t ri = region_of(gfn);
    if (vis3_[i3(ri, gfn)] & pte::V) return i3(ri, gfn);
    if (is_leaf(vis2_[i2(ri, gfn)])) return i3(ri, gfn & ~Gfn{511});
    return i3(ri, 0);
}

bool Arm64Stage2::aged(Gfn gfn) const {
    const std::uint32_t ri = region_of(gfn);
    if (aged_.empty() || ri == kNoRegion) return false;
    return aged_[leaf_head(gfn)] != 0;
}

// The guest's access finds a valid leaf with the permission it needs but the AF clear, and the CPU
// does not set the AF itself: an access-flag fault (ESR_ELx_FSC_ACCESS).
bool Arm64Stage2::access_fault(Gfn gfn, vm::Access access) const {
    if (cfg_.hafdbs) return false;
    const std::uint32_t ri = region_of(gfn);
    if (ri == kNoRegion) return false;
    const std::uint8_t need = kNeed[static_cast<std::uint8_t>(access)];
    std::uint8_t e = vis3_[i3(ri, gfn)];
    if (!(e & pte::V)) {
        e = vis2_[i2(ri, gfn)];
        if (!is_leaf(e)) e = vis1_[ri];
        if (!is_leaf(e)) return false;
    }
    return (e & need) != 0 && aged_[leaf_head(gfn)] != 0;
}

// kvm_handle_guest_abort -> handle_access_fault (v6.2): mmu_lock for read (the spinlock before
// v6.1), kvm_pgtable_stage2_mkyoung (a walk to the leaf, the AF set with a cmpxchg), unlock; no
// TLB maintenance (an AF fault leaves no TLB entry). The vCPU retries the access.
Task<void> Arm64Stage2::handle_access_fault(const vm::CpuContext& ctx, Gfn gfn, Time start) {
    if (start > sim_.now()) co_await sim_.delay(start - sim_.now());
    sim_.counters().add(sim_.counters().id("kvm_access_fault"));
    Bulk b = make_bulk(ctx);
    b.acc += k_.fault_entry;
    co_await lock(b, sim_.site("handle_access_fault"), true, false);
    const std::uint32_t ri = region_of(gfn);
    for (int level = 1; level <= 3; ++level) {
        b.acc += k_.stage2_walk_level + touch(b.cpu, entry_addr(level, ri, gfn), false);
        if (!is_table(plan_entry(level, ri, gfn))) break;
    }
    std::uint8_t& a = aged_[leaf_head(gfn)];
    if (a) {
        a = 0;
        b.acc += k_.stage2_pte_update;
    }
    co_await unlock(b);
    b.acc += k_.fault_exit;
    co_await settle(b);
}

// kvm_pgtable_stage2_mkold (stage2_update_leaf_attrs clearing KVM_PTE_LEAF_ATTR_LO_S2_AF with a
// cmpxchg on each young leaf of [start, end)) or kvm_pgtable_stage2_is_young. No TLB invalidation:
// kvm_pgtable_stage2_mkold leaves it to its caller (kvm_pgtable_stage2_test_clear_young later
// says so: "the caller's responsibility") and clear_young does not flush; an old translation
// still cached just delays the next AF fault. Returns whether a leaf was young.
bool Arm64Stage2::age_leaves(Bulk& b, Gfn start, Gfn end, bool clear) {
    bool young = false;
    for (Gfn g = start; g < end;) {
        const std::uint32_t ri = region_of(g);
        if (ri == kNoRegion) break;
        int level = 1;
        for (;; ++level) {
            const std::uint64_t addr = entry_addr(level, ri, g);
            b.acc += k_.stage2_walk_level;
            if ((addr >> 6) != b.last_line) {
                b.acc += touch(b.cpu, addr, false);
                b.last_line = addr >> 6;
            }
            if (level == 3 || !is_table(plan_entry(level, ri, g))) break;
        }
        const std::uint8_t e = plan_entry(level, ri, g);
        const Gfn next = std::min(end, round_gfn(g, level) + pages_at(level));
        if (is_leaf(e)) {
            std::uint8_t& a = aged_[level == 3 ? i3(ri, g) : level == 2 ? i3(ri, g & ~Gfn{511}) : i3(ri, 0)];
            if (!a) {
                young = true;
                if (clear) {
                    a = 1;
                    b.acc += k_.stage2_pte_update + touch(b.cpu, entry_addr(level, ri, g), true);
                    sim_.counters().add(sim_.counters().id("sptes_aged"));
                }
            }
        }
        g = next;
    }
    return young;
}

// The host's aging of [start, end): per host page, the caller's work, then the MMU notifier
// (kvm_mmu_notifier_clear_young / test_young -> kvm_handle_hva_range): mmu_lock for write
// (KVM_MMU_LOCK: v6.2 and mainline) or read (age_lock = "read": James Houghton's v6 03/11,
// not merged), kvm_age_gfn / kvm_test_age_gfn, unlock.
Task<std::uint64_t> Arm64Stage2::age_range(const vm::CpuContext& cpu, const vm::AgeRequest& r) {
    if (aged_.empty()) aged_.assign(vis3_.size(), 0);
    const bool read = cfg_.age_lock == AgeLock::Read;
    Bulk b = make_bulk(cpu);
    co_return co_await age_hva_range(
        sim_, b, r, ak_.caller(r.via) + ak_.mmu_notifier_young,
        [this](Gfn g) {
            const Slot* s = slot_of(g);
            const std::uint64_t host_pages = s ? vm::pages_per(vm::host_level(vm_.memslots[s->index].backing)) : 1;
            return (g / host_pages + 1) * host_pages;
        },
        [&](Gfn g, Gfn e, engine::Site site) -> Task<std::optional<bool>> {
            if (!slot_of(g) || region_of(g) == kNoRegion) co_return std::nullopt;
            co_await lock(b, site, read, false);
            const bool young = age_leaves(b, g, e, r.clear);
            co_await unlock(b);
            co_return young;
        },
        [&] { return settle(b); });
}

// An MMU-notifier invalidation by a host unmap (the scenario operation): the host's unmap, which
// calls invalidate_range_start and _end around dropping its pages.
Task<void> Arm64Stage2::invalidate_range(const vm::CpuContext& cpu, Gfn start, Gfn end) {
    co_await host_->unmap(cpu, start, end);
}

}  // namespace arm64_stage2

// ---------------------------------------------------------------------------------------------
// Registration

vm::ModelInfo arm64_stage2_model_info() {
    vm::ModelInfo info;
    info.name = "arm64_stage2";
    info.summary =
        "arm64 stage-2 (KVM/arm64): user_mem_abort, the stage-2 map walker with break-before-make, TLBIs, "
        "cache maintenance (seed 004), dirty logging with lazy or eager (v6.5) block splitting and rebuilding";
    info.kernel =
        "Linux v6.2: arch/arm64/kvm/mmu.c (user_mem_abort, kvm_mmu_wp_memory_region), arch/arm64/kvm/hyp/pgtable.c "
        "(stage2_map_walker, stage2_map_walker_try_leaf, stage2_try_break_pte, kvm_pgtable_stage2_relax_perms), "
        "virt/kvm/kvm_main.c; mmu_lock = spinlock and cmo = user_mem_abort give v5.12 (before Yanan Wang's "
        "'KVM: arm64: Move guest CMOs to the fault handlers', v5.14); eager_split_chunk_size and relax_perms_tlbi "
        "give v6.5's eager page splitting (kvm_mmu_split_huge_pages, kvm_pgtable_stage2_split) and local TLBI on "
        "permission relaxation";
    info.knobs = {
        choice_knob("mmu_lock", "rwlock", {"rwlock", "spinlock"},
                    "kvm->mmu_lock: 'rwlock' (v6.2, parallel stage-2 faults: faults take it for read and install "
                    "with cmpxchg, locking a PTE through its break-before-make; removed tables are freed by RCU) or "
                    "'spinlock' (before v6.2: every fault and walk exclusive; a removed table is freed under the "
                    "lock)"),
        choice_knob("cmo", "map_walker", {"map_walker", "user_mem_abort"},
                    "where the cache maintenance runs (seed 004): 'user_mem_abort' (before v5.14: D-cache clean "
                    "to PoC of the whole mapping on every non-permission fault and I-cache invalidation on every "
                    "exec fault, under mmu_lock, whether or not the walker then installs anything) or "
                    "'map_walker' (v5.14+: kvm_pgtable_mm_ops callbacks, only when a PTE is installed or exec "
                    "permission added)"),
        [] {
            vm::KnobSpec k = choice_knob(
                "age_lock", "write", {"write", "read"},
                "kvm_age_gfn / kvm_test_age_gfn from the clear_young/test_young MMU notifiers: 'write' = v6.2 and "
                "mainline (kvm_handle_hva_range takes mmu_lock for write) or 'read' = James Houghton, '[PATCH v6 "
                "03/11] KVM: arm64: Relax locking for kvm_test_age_gfn and kvm_age_gfn' (2024-07-24, not merged: "
                "the stage-2 age walker under the read lock). arm64 never aged without mmu_lock");
            k.refused_choices = {{"lockless", "arm64 never aged without mmu_lock: only x86 has "
                                              "CONFIG_KVM_MMU_LOCKLESS_AGING (v6.14)"}};
            k.applies_when.push_back({"mmu_lock", {std::string("rwlock")},
                                      "before v6.2 mmu_lock was a spinlock: aging took it like every other walk"});
            return k;
        }(),
        [] {
            vm::KnobSpec k = choice_knob(
                "tlbi", "by_ipa", {"by_ipa", "range"},
                "stage-2 TLB invalidation of a range: 'by_ipa' (before v6.6: a TLBI by IPA per leaf unmapped, "
                "and a TLBI by VMID for a table replaced by a block or a memslot's flush, kvm_flush_remote_tlbs) "
                "or 'range' (Raghavendra Rao Ananta's FEAT_TLBIRANGE series, v6.6: kvm_tlb_flush_vmid_range with "
                "range TLBIs for those, and with FWB one range after an unmap walk instead of a TLBI per leaf)");
            k.requires_features = {{std::string("range"), "tlbi_range",
                                    "range TLBIs are FEAT_TLBIRANGE instructions (ARMv8.4)"}};
            return k;
        }(),
        bool_knob("preempt", true,
                  "host kernel with CONFIG_PREEMPTION: spin/rwlock_needbreak() report mmu_lock waiters, so "
                  "stage2_apply_range yields to them between 1 GiB chunks; false: it yields only on need_resched()"),
        choice_knob("eager_split_chunk_size", "0", {"0", "4K", "2M", "1G"},
                    "KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE (Ricardo Koller's eager page splitting, merged for v6.5): "
                    "'0' (the default, also the kernel's) leaves blocks to the write faults that split them; a "
                    "supported block size (kvm_is_block_size_supported: 4K, 2M or 1G with 4 KiB pages; anything else "
                    "is -EINVAL) makes enabling dirty logging (kvm_mmu_split_memory_region) and, with "
                    "initially-all-set, KVM_CLEAR_DIRTY_LOG (kvm_arch_mmu_enable_log_dirty_pt_masked) split the "
                    "write-protected blocks to 4 KiB pages under mmu_lock for write (kvm_mmu_split_huge_pages), "
                    "chunk by chunk, topping up the split page cache with mmu_lock dropped"),
    };
    info.knobs.push_back(choice_knob(
        "relax_perms_tlbi", "broadcast", {"broadcast", "local"},
        "the TLBI after kvm_pgtable_stage2_relax_perms: 'broadcast' (before v6.5: __kvm_tlb_flush_vmid_ipa, "
        "inner shareable, tlbi_ipa) or 'local' (v6.5, Marc Zyngier's 'KVM: arm64: Use local TLBI on permission "
        "relaxation', a12ab1378a88, merged with the eager splitting series: __kvm_tlb_flush_vmid_ipa_nsh on the "
        "faulting CPU only, tlbi_ipa_nsh)"));
    info.knobs[info.knobs.size() - 2].applies_when.push_back(
        {"mmu_lock", {std::string("rwlock")},
         "eager page splitting (v6.5) takes mmu_lock for write, an rwlock since v6.2; the spinlock is older"});
    info.costs = arm64_stage2::Costs::names();
    for (const auto& c : host::Costs::names()) info.costs.push_back(c);
    for (const auto& c : AgingCosts::names()) info.costs.push_back(c);
    for (const auto& c : arm64_stage2::Costs::optional_names()) info.costs.push_back(c);
    info.cost_minimums = {{"zero_rate", host::Costs::kMinZeroRate}, {"uffd_copy_rate", host::Costs::kMinZeroRate}};
    // A D-cache clean of a 1 GiB block at most 1e6 ps a byte stays within the clock by far;
    // icache_line is the I-cache line in bytes.
    info.cost_maximums = {{"dcache_clean_byte", 1e6}, {"icache_line", 65536}};
    info.cost_powers_of_two = {"icache_line"};
    // The guest TLB's arrays: at most 16384 entries of each size per vCPU, 1 to 64 ways.
    for (const char* c : {"tlb_entries_4k", "tlb_entries_2m", "tlb_entries_1g"}) {
        info.cost_maximums.emplace_back(c, 16384);
        info.cost_integers.emplace_back(c);
        info.cost_multiples.emplace_back(c, "tlb_ways");
    }
    info.cost_minimums.emplace_back("tlb_ways", 1);
    info.cost_maximums.emplace_back("tlb_ways", 64);
    info.cost_integers.emplace_back("tlb_ways");
    info.features = {"fwb", "hafdbs", "tlbi_range", "guest_tlb"};
    for (const auto& f : host::Features::names()) info.features.push_back(f);
    info.operations = {vm::Operation::DirtyLogEnable, vm::Operation::DirtyLogGet, vm::Operation::DirtyLogClear,
                       vm::Operation::DirtyLogDisable, vm::Operation::Invalidate, vm::Operation::ClearYoung,
                       vm::Operation::TestYoung,      vm::Operation::VmDestroy};
    info.create = [](vm::ModelEnv& env) -> std::unique_ptr<vm::MmuModel> {
        return std::make_unique<arm64_stage2::Arm64Stage2>(env);
    };
    return info;
}

void register_arm64_stage2(vm::ModelRegistry& registry) { registry.add(arm64_stage2_model_info()); }

}  // namespace kvmsim::models
