// The host's mm under KVM: see host_mm.hpp for the kernel functions followed and docs/models/host.md
// for the design and what is simplified.
//
// State. Per 4 KiB page of an anonymous slot one byte (Page); per 2 MiB of a THP slot one PMD byte
// (none, huge zero page, THP, or a table after a split: then the 4 KiB bytes below it hold the
// PTEs); per hugetlb page the time it was populated. Refcount lines:
// one per compound head (THP, hugetlb), one for the zero page, one for the huge zero page, and a
// direct-mapped set of recent 4 KiB pages' lines (a page's line only matters while vCPUs touch it
// together). Page-table locks: one line per PTE page (2 MiB) and per PMD page (1 GiB).
//
// Time. A GUP that changes no host page table is worked out at once (try_gup: the lines are FIFO
// servers, no event). One that must (handle_mm_fault: allocate, clear, split, copy) runs as a
// coroutine: clearing moves bytes through the socket's memory bandwidth, and the invalidations go
// to the MMU model, which takes its own locks. The host state changes when the coroutine gets
// there; concurrent faults on the same page each do their part of the work and find the entry
// taken, as the kernel's do (a page cleared for nothing is freed).
#include "models/host/host_mm.hpp"

#include "models/common/memslots.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <stdexcept>

namespace kvmsim::models::host {

using engine::LineState;
using engine::Task;
using engine::Time;
using vm::Gfn;

namespace {

constexpr std::int64_t kNever = INT64_MAX;
constexpr std::uint64_t k4K = 4096, k2M = 2ULL << 20;

enum Pmd : std::uint8_t { kPmdNone, kPmdHugeZero, kPmdHuge, kPmdTable };

constexpr std::pair<const char*, Time Costs::*> kTimes[] = {
    {"gup_fast", &Costs::gup_fast},
    {"gup_slow", &Costs::gup_slow},
    {"host_fault_base", &Costs::host_fault_base},
    {"host_zero_page_map", &Costs::zero_page_map},
    {"host_pmd_split", &Costs::pmd_split},
    {"uffd_handle_userfault", &Costs::uffd_handle_userfault},
    {"uffd_wake_latency", &Costs::uffd_wake_latency},
    {"uffd_wake_per_waiter", &Costs::uffd_wake_per_waiter},
    {"uffd_ttwu", &Costs::uffd_ttwu},
    {"uffd_syscall", &Costs::uffd_syscall},
    {"uffd_continue", &Costs::uffd_continue},
    {"memory_fault_exit", &Costs::memory_fault_exit},
};

}  // namespace

const std::vector<std::string>& Costs::names() {
    static const std::vector<std::string> n = [] {
        std::vector<std::string> v;
        for (const auto& [name, member] : kTimes) v.emplace_back(name);
        v.emplace_back("zero_rate");
        v.emplace_back("uffd_copy_rate");
        return v;
    }();
    return n;
}

Costs Costs::from(const vm::CostProfile& p) {
    Costs c;
    for (const auto& name : names())
        if (!p.has(name)) throw std::invalid_argument("host: the host profile lacks cost '" + name + "'");
    for (const auto& [name, member] : kTimes) c.*member = p.time(name);
    const double rate = p.number("zero_rate");
    if (!(rate >= kMinZeroRate) || rate > 1e15)
        throw std::invalid_argument("host: zero_rate must be a rate in bytes per second, at least 1e6");
    c.zero_rate = static_cast<std::uint64_t>(rate);
    const double copy = p.number("uffd_copy_rate");
    if (!(copy >= kMinZeroRate) || copy > 1e15)
        throw std::invalid_argument("host: uffd_copy_rate must be a rate in bytes per second, at least 1e6");
    c.uffd_copy_rate = static_cast<std::uint64_t>(copy);
    return c;
}

const std::vector<std::string>& Features::names() {
    static const std::vector<std::string> n = {"thp_use_zero_page", "thp_wp_zero_page_split"};
    return n;
}

Features Features::from(const vm::HostConfig& host) {
    for (const auto& name : names())
        if (!host.features.count(name))
            throw std::invalid_argument("host: the host profile lacks feature '" + name + "'");
    Features f;
    f.thp_use_zero_page = host.feature("thp_use_zero_page");
    f.thp_wp_zero_page_split = host.feature("thp_wp_zero_page_split");
    return f;
}

const char* to_string(Page p) {
    switch (p) {
        case Page::Absent: return "absent";
        case Page::Zero: return "zero";
        case Page::Private: return "private";
        case Page::HugeZero: return "huge_zero";
        case Page::Huge: return "huge";
        case Page::Hugetlb: return "hugetlb";
    }
    return "?";
}

struct HostMm::Slot {
    std::size_t index = 0;
    Gfn base = 0;
    std::uint64_t npages = 0;
    int host_level = 3;  // the backing's page: 3 (4K), 2 (2M), 1 (1G)
    bool thp = false, hugetlb = false;
    std::vector<std::uint8_t> pte;        // per 4 KiB: Page (anonymous, or below a split PMD)
    std::vector<std::uint8_t> pmd;        // THP: per 2 MiB, Pmd
    std::vector<std::int64_t> ready;      // hugetlb: per huge page, when populated (ps)
    std::vector<LineState> head;          // THP per 2 MiB, hugetlb per huge page: the compound head
    std::vector<LineState> ptl;           // per 2 MiB: the PTE page's lock
    std::vector<LineState> pmdl;          // per 1 GiB: the PMD page's lock
    bool contains(Gfn g) const { return g >= base && g - base < npages; }
    std::uint64_t i4(Gfn g) const { return g - base; }
    std::uint64_t i2(Gfn g) const { return (g >> 9) - (base >> 9); }
    std::uint64_t i1(Gfn g) const { return (g >> 18) - (base >> 18); }
    std::uint64_t ih(Gfn g) const {
        const unsigned sh = 9 * static_cast<unsigned>(3 - host_level);
        return (g >> sh) - (base >> sh);
    }
};

// The host's counters, registered by name in this order.
struct HostMm::Counters {
    enum Id : std::uint8_t {
        first_touch, zeroed_4k, zero_map, huge_zero_map, thp_alloc, thp_alloc_raced, wp_copy, wp_copy_raced,
        split_pmd, gup_fast, gup_slow, handle_mm_fault, kCount
    };
    static constexpr const char* kNames[kCount] = {
        "host_fault_first_touch", "host_zeroed_4k", "host_zero_page_mapped", "host_huge_zero_page_mapped",
        "host_thp_alloc", "host_page_freed_raced", "host_wp_page_copy", "host_wp_page_copy_raced",
        "host_split_huge_pmd", "gup_fast_only", "get_user_pages_unlocked", "handle_mm_fault",
    };
    explicit Counters(engine::Counters& c) : c_(c) {
        for (std::size_t i = 0; i < kCount; ++i) ids_[i] = c.id(kNames[i]);
    }
    void add(Id id, std::uint64_t n = 1) { c_.add(ids_[id], n); }

private:
    engine::Counters& c_;
    std::array<engine::CounterId, kCount> ids_{};
};

// A userfaultfd context (fs/userfaultfd.c struct userfaultfd_ctx): fault_pending_wqh (faults not
// read yet, oldest first: find_userfault takes the list's last entry), fault_wqh (read, waiting for
// the wake), both under fault_pending_wqh.lock (fault_wqh's own lock nests inside it and is not
// modelled apart); fd_wqh (the readers in poll).
struct HostMm::UffdWaiter {
    Gfn unit = 0;  // the page (4 KiB, or the huge page's first frame) the fault waits for
    std::unique_ptr<engine::Signal> woken;
};

struct HostMm::Uffd {
    Gfn start = 0, end = 0;
    std::unique_ptr<engine::SpinLock> wqh;  // fault_pending_wqh.lock
    LineState wqh_word;                      // its lock word's line
    LineState fd_wqh_word;                   // fd_wqh.lock's line
    std::deque<UffdWaiter*> pending;         // fault_pending_wqh
    std::vector<UffdWaiter*> waiting;        // fault_wqh
    std::unique_ptr<engine::Signal> fd_wqh;  // readers blocked in poll
    bool shut = false;
};

struct HostMm::UffdCounters {
    enum Id : std::uint8_t { userfault, copy, cont, eexist, wake, read_msg, read_eagain, poll_sleep, memfault_exit, kCount };
    static constexpr const char* kNames[kCount] = {
        "uffd_handle_userfault", "uffdio_copy", "uffdio_continue", "uffdio_eexist", "uffdio_wake",
        "uffd_read_msg", "uffd_read_eagain", "uffd_poll_sleep", "memory_fault_exit",
    };
    explicit UffdCounters(engine::Counters& c) : c_(c) {
        for (std::size_t i = 0; i < kCount; ++i) ids_[i] = c.id(kNames[i]);
    }
    void add(Id id, std::uint64_t n = 1) { c_.add(ids_[id], n); }

private:
    engine::Counters& c_;
    std::array<engine::CounterId, kCount> ids_{};
};

HostMm::HostMm(engine::Simulator& sim, const vm::HostConfig& host, const std::vector<vm::Memslot>& slots, Costs costs,
               Features features, const vm::UffdConfig& uffd)
    : sim_(sim), topo_(host.topology), k_(costs), ft_(features), uffd_cfg_(uffd) {
    c_ = std::make_unique<Counters>(sim_.counters());
    refcount_ = std::make_unique<engine::LineClass>(sim_, topo_, "struct_page_refcount");
    mmap_lock_ = std::make_unique<engine::LineClass>(sim_, topo_, "mmap_lock");
    ptl_ = std::make_unique<engine::LineClass>(sim_, topo_, "page_table_lock");
    for (std::uint32_t s = 0; s < std::max<std::uint32_t>(topo_.sockets, 1); ++s)
        memory_.push_back(std::make_unique<engine::Bandwidth>(sim_, "memory" + std::to_string(s),
                                                              topo_.memory_bandwidth_per_socket));
    priced_ahead_ = sim_.bandwidth_stats().resource_id("memory_priced_ahead");
    recent_tag_.assign(kRecent, ~std::uint64_t{0});
    recent_.assign(kRecent, LineState{});
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const vm::Memslot& m = slots[i];
        if (m.npages == 0) continue;
        auto s = std::make_unique<Slot>();
        s->index = i;
        s->base = m.base_gfn;
        s->npages = m.npages;
        s->host_level = 4 - static_cast<int>(vm::host_level(m.backing));
        s->hugetlb = m.backing == vm::Backing::Hugetlb2M || m.backing == vm::Backing::Hugetlb1G;
        s->thp = m.backing == vm::Backing::AnonymousThp;
        const Gfn last = m.base_gfn + m.npages - 1;
        s->ptl.assign(s->i2(last) + 1, LineState{});
        s->pmdl.assign(s->i1(last) + 1, LineState{});
        if (s->hugetlb) {
            s->ready.assign(s->ih(last) + 1, kNever);
            s->head.assign(s->ih(last) + 1, LineState{});
        } else {
            s->pte.assign(m.npages, static_cast<std::uint8_t>(Page::Absent));
        }
        if (s->thp) {
            s->pmd.assign(s->i2(last) + 1, kPmdNone);
            s->head.assign(s->i2(last) + 1, LineState{});
            // A THP needs an aligned 2 MiB inside the mapping: the partial ends are PTE-mapped.
            for (Gfn g = m.base_gfn & ~Gfn{511}; g <= last; g += 512)
                if (g < m.base_gfn || g + 512 > m.base_gfn + m.npages) s->pmd[s->i2(std::max(g, m.base_gfn))] = kPmdTable;
        }
        slots_.push_back(std::move(s));
        if (m.populate) populate(m.base_gfn, m.base_gfn + m.npages);
    }
    if (uffd_cfg_.enabled()) {
        uc_ = std::make_unique<UffdCounters>(sim_.counters());
        wqh_line_ = std::make_unique<engine::LineClass>(sim_, topo_, "uffd_fault_pending_wqh");
        fd_wqh_line_ = std::make_unique<engine::LineClass>(sim_, topo_, "uffd_fd_wqh");
        site_uffd_fault_ = sim_.site("handle_userfault");
        site_uffd_read_ = sim_.site("userfaultfd_ctx_read");
        site_uffd_wake_ = sim_.site("__wake_userfault");
        for (const auto& [a, z] : uffd_cfg_.ranges) {
            auto u = std::make_unique<Uffd>();
            u->start = a;
            u->end = z;
            u->wqh = std::make_unique<engine::SpinLock>(sim_, "uffd_wqh");
            u->fd_wqh = std::make_unique<engine::Signal>(sim_, "uffd_fd_wqh");
            uffds_.push_back(std::move(u));
        }
    }
}

HostMm::~HostMm() = default;

HostMm::Slot* HostMm::slot_of(Gfn gfn) { return slot_containing(slots_, gfn); }

const HostMm::Slot* HostMm::slot_of(Gfn gfn) const { return slot_containing(slots_, gfn); }

Page HostMm::state(const Slot& s, Gfn gfn) const {
    if (s.hugetlb) return s.ready[s.ih(gfn)] == kNever ? Page::Absent : Page::Hugetlb;
    if (s.thp) {
        switch (s.pmd[s.i2(gfn)]) {
            case kPmdNone: return Page::Absent;
            case kPmdHugeZero: return Page::HugeZero;
            case kPmdHuge: return Page::Huge;
            default: break;
        }
    }
    return static_cast<Page>(s.pte[s.i4(gfn)]);
}

Page HostMm::page(Gfn gfn) const {
    const Slot* s = slot_of(gfn);
    return s ? state(*s, gfn) : Page::Absent;
}

int HostMm::mapping_level(Gfn gfn) const {
    const Slot* s = slot_of(gfn);
    return s ? map_level(*s, state(*s, gfn)) : 3;
}

// The host mapping's size as KVM sees it: PageTransCompoundMap holds for a PMD-mapped THP and
// for the huge zero page (a compound page without rmap mapcounts), not for a 4 KiB page.
int HostMm::map_level(const Slot& s, Page p) const {
    if (p == Page::Hugetlb) return s.host_level;
    return p == Page::Huge || p == Page::HugeZero ? 2 : 3;
}

LineState& HostMm::ref_line(Slot& s, Gfn gfn, Page p) {
    switch (p) {
        case Page::Zero: return zero_page_line_;
        case Page::HugeZero: return huge_zero_line_;
        case Page::Huge: return s.head[s.i2(gfn)];
        case Page::Hugetlb: return s.head[s.ih(gfn)];
        default: break;
    }
    const std::size_t i = gfn % kRecent;
    if (recent_tag_[i] != gfn) {
        recent_tag_[i] = gfn;
        recent_[i] = LineState{};
    }
    return recent_[i];
}

LineState& HostMm::ptl_line(Slot& s, Gfn gfn, Page p) {
    return p == Page::Huge || p == Page::HugeZero ? s.pmdl[s.i1(gfn)] : s.ptl[s.i2(gfn)];
}

// A page just allocated: prep_new_page set its refcount on `cpu`, whose cache holds the line.
void HostMm::allocated(Slot& s, std::uint32_t cpu, Gfn gfn, Page p, Time at) {
    LineState& l = ref_line(s, gfn, p);
    l.owner = cpu;
    l.free_at = std::max(l.free_at, at);
}

bool HostMm::gup_analytic(Gfn gfn, bool write) const {
    const Slot* s = slot_of(gfn);
    if (!s) return true;
    if (s->hugetlb) return s->ready[s->ih(gfn)] != kNever;
    const Page p = state(*s, gfn);
    return writable(p) || (!write && (p == Page::Zero || p == Page::HugeZero));
}

GupLines HostMm::gup_lines(Gfn gfn, bool write, Time /*at*/, bool vma_lookup) const {
    GupLines l;
    l.vma_lookup = vma_lookup;
    const Slot* s = slot_of(gfn);
    if (!s) return l;
    if (s->hugetlb) {
        l.ref = &s->head[s->ih(gfn)];
        l.changing = s->ready[s->ih(gfn)] == kNever;
        return l;
    }
    const Page p = state(*s, gfn);
    if (!(writable(p) || (!write && (p == Page::Zero || p == Page::HugeZero)))) {
        l.changing = true;
        return l;
    }
    switch (p) {
        case Page::Zero: l.ref = &zero_page_line_; break;
        case Page::HugeZero: l.ref = &huge_zero_line_; break;
        case Page::Huge: l.ref = &s->head[s->i2(gfn)]; break;
        default: l.ref = &recent_[gfn % kRecent]; break;  // the slot a 4 KiB page's line lives in
    }
    l.slow = !writable(p);
    return l;
}

// hva_to_pfn on a populated hugetlb page: the fast path.
Gup HostMm::hugetlb_gup(Slot& s, std::uint32_t cpu, Gfn gfn, Time at) {
    Gup g;
    g.writable = true;
    g.level = s.host_level;
    g.ref = &s.head[s.ih(gfn)];
    g.looked_up = at;
    c_->add(Counters::gup_fast);
    g.done = refcount_->load_rmw(*g.ref, cpu, at + k_.gup_fast);  // try_get_compound_head
    return g;
}

// hva_to_pfn_slow on a hugetlb page not populated yet: mmap_read_lock, hugetlb_fault under the
// hugetlb fault mutex (the first one allocates the page and clears it through the socket's memory
// bandwidth; the others wait for the mutex and find it populated), follow_page_mask, unlock.
Task<Gup> HostMm::hugetlb_populate(const vm::CpuContext& ctx, Slot& s, Gfn gfn) {
    const std::uint32_t cpu = ctx.host_cpu;
    c_->add(Counters::gup_slow);
    Time t = mmap_lock_->rmw(mmap_lock_line_, cpu, sim_.now() + k_.gup_fast + k_.gup_slow);
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    const std::uint64_t h = s.ih(gfn);
    const std::uint64_t key = (static_cast<std::uint64_t>(s.index) << 40) | h;
    if (s.ready[h] == kNever) {
        auto it = populating_.find(key);
        if (it != populating_.end()) {  // the fault mutex is held by the one populating it
            engine::Signal& done = *it->second;
            co_await done.wait();
        } else {
            auto& done = populating_[key];
            done = std::make_unique<engine::Signal>(sim_, "hugetlb_fault_mutex");
            c_->add(Counters::handle_mm_fault);
            co_await sim_.delay(k_.host_fault_base);
            co_await clear_pages(cpu, (std::uint64_t{1} << (9 * (3 - s.host_level))) * k4K);
            s.ready[h] = sim_.now().ps();
            ++version_;
            allocated(s, cpu, gfn, Page::Hugetlb, sim_.now());
            c_->add(Counters::first_touch);
            std::unique_ptr<engine::Signal> sig = std::move(populating_[key]);
            populating_.erase(key);
            sig->notify_all();
        }
    }
    Gup g;
    g.slow = true;
    g.writable = true;
    g.level = s.host_level;
    g.ref = &s.head[h];
    t = refcount_->load_rmw(*g.ref, cpu, sim_.now());  // try_grab_page
    g.done = mmap_lock_->rmw(mmap_lock_line_, cpu, t);
    co_return g;
}

// follow_page_mask on a present page under its page-table lock, taking a reference.
Time HostMm::follow(Slot& s, std::uint32_t cpu, Gfn gfn, Page p, Time t, Gup& g) {
    LineState& ptl = ptl_line(s, gfn, p);
    t = ptl_->rmw(ptl, cpu, t);
    g.ref = &ref_line(s, gfn, p);
    t = refcount_->load_rmw(*g.ref, cpu, t);  // try_grab_page: page_ref_count, then page_ref_inc
    return ptl_->rmw(ptl, cpu, t);
}

// The caller's VMA lookup under mmap_read_lock: down_read (atomic_long_add_return_acquire on the
// rwsem's count), then up_read (atomic_long_add_return_release) when it is done. Readers do not
// exclude each other, but every one of them moves the count's line.
Time HostMm::find_vma(std::uint32_t cpu, Time at) {
    const Time t = mmap_lock_->rmw(mmap_lock_line_, cpu, at);
    return mmap_lock_->rmw(mmap_lock_line_, cpu, t);
}

Gup HostMm::try_gup(std::uint32_t cpu, Gfn gfn, bool write, Time at, bool vma_lookup) {
    Slot* s = slot_of(gfn);
    if (!s) throw std::logic_error("host: GUP outside every memslot");
    if (vma_lookup) at = find_vma(cpu, at);
    if (s->hugetlb) return hugetlb_gup(*s, cpu, gfn, at);
    const Page p = state(*s, gfn);
    Gup g;
    g.looked_up = at;
    g.level = map_level(*s, p);
    Time t = at + k_.gup_fast;
    if (writable(p)) {  // hva_to_pfn_fast: get_user_page_fast_only(FOLL_WRITE)
        c_->add(Counters::gup_fast);
        g.ref = &ref_line(*s, gfn, p);
        g.done = refcount_->load_rmw(*g.ref, cpu, t);  // try_get_compound_head
        g.writable = true;
        return g;
    }
    if (write || !(p == Page::Zero || p == Page::HugeZero))
        throw std::logic_error("host: try_gup on a page that needs handle_mm_fault");
    // hva_to_pfn_slow: the zero page is mapped read-only, so FOLL_WRITE failed; a read follows it.
    c_->add(Counters::gup_slow);
    g.slow = true;
    t += k_.gup_slow;
    t = mmap_lock_->rmw(mmap_lock_line_, cpu, t);
    t = follow(*s, cpu, gfn, p, t, g);
    t = mmap_lock_->rmw(mmap_lock_line_, cpu, t);
    g.done = t + k_.gup_fast;  // "map read fault as writable if possible": fails on the zero page
    return g;
}

Task<Gup> HostMm::gup(const vm::CpuContext& ctx, Gfn gfn, bool write, bool vma_lookup) {
    Slot* s = slot_of(gfn);
    if (!s) throw std::logic_error("host: GUP outside every memslot");
    if (vma_lookup) {
        const Time t = find_vma(ctx.host_cpu, sim_.now());
        if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    }
    const Time looked_up = sim_.now();
    // A registered range with no page there: the fault goes to userspace (VM_FAULT_RETRY, then
    // the GUP starts over and finds the page).
    for (int rounds = 0; !uffds_.empty() && state(*s, gfn) == Page::Absent; ++rounds) {
        Uffd* u = uffd_at(gfn);
        if (!u) break;
        if (rounds == 64) throw std::logic_error("host: userfault made no progress");
        co_await userfault(ctx, *u, *s, gfn);
    }
    if (gup_analytic(gfn, write)) {
        Gup r = try_gup(ctx.host_cpu, gfn, write, sim_.now());
        r.looked_up = looked_up;
        co_return r;
    }
    if (s->hugetlb) {
        Gup r = co_await hugetlb_populate(ctx, *s, gfn);
        r.looked_up = looked_up;
        co_return r;
    }
    const std::uint32_t cpu = ctx.host_cpu;
    c_->add(Counters::gup_slow);
    Time t = sim_.now() + k_.gup_fast + k_.gup_slow;
    t = mmap_lock_->rmw(mmap_lock_line_, cpu, t);
    Page p = state(*s, gfn);
    // __get_user_pages: follow_page_mask, handle_mm_fault while the page is missing (or not
    // writable for a write), again.
    for (int tries = 0; write ? !writable(p) : p == Page::Absent; ++tries) {
        if (tries == 8) throw std::logic_error("host: handle_mm_fault made no progress");
        if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
        co_await handle_mm_fault(ctx, *s, gfn, write);
        t = sim_.now();
        p = state(*s, gfn);
    }
    Gup g;
    g.slow = true;
    t = follow(*s, cpu, gfn, p, t, g);
    t = mmap_lock_->rmw(mmap_lock_line_, cpu, t);
    g.writable = writable(p);
    g.level = map_level(*s, p);
    if (!write) {  // get_user_page_fast_only(FOLL_WRITE): succeeds when the page is writable
        t += k_.gup_fast;
        if (g.writable) {
            t = refcount_->load_rmw(*g.ref, cpu, t);  // the new reference, then put_page of the old
            t = refcount_->rmw(*g.ref, cpu, t);
        }
    }
    g.done = t;
    g.looked_up = looked_up;
    co_return g;
}

Time HostMm::put_page(std::uint32_t cpu, const Gup& g, Time at) {
    if (!g.ref) return at;
    return refcount_->load_rmw(*g.ref, cpu, at);  // compound_head, then put_page_testzero
}

engine::Bandwidth& HostMm::memory(std::uint32_t cpu) const {
    const std::uint32_t sock = std::min<std::uint32_t>(topo_.socket_of(cpu), static_cast<std::uint32_t>(memory_.size() - 1));
    return *memory_[sock];
}

Time HostMm::transfer_time(std::uint32_t cpu, std::uint64_t bytes, std::uint64_t cap) const {
    const engine::Bandwidth& bw = memory(cpu);
    std::uint64_t rate = cap;
    if (topo_.memory_bandwidth_per_socket) {
        const std::uint64_t share = topo_.memory_bandwidth_per_socket / (std::uint64_t{bw.active()} + 1);
        rate = rate ? std::min(rate, share) : share;
    }
    if (!rate) return Time::zero();
    return Time::ps(static_cast<std::int64_t>(static_cast<double>(bytes) * 1e12 / static_cast<double>(rate) + 0.5));
}

void HostMm::account_transfer(std::uint32_t cpu, Time start, Time d, std::uint64_t bytes) {
    (void)cpu;
    if (bytes == 0) return;
    engine::BandwidthStatsTable& st = sim_.bandwidth_stats();
    st.started(priced_ahead_, start);
    st.finished(priced_ahead_, start + d, bytes);
}

// Not coroutines: the bandwidth's transfer task is the caller's (no frame of their own). Every
// caller awaits at once, so clear_pages' count is taken when the transfer starts, as before.
Task<void> HostMm::transfer(std::uint32_t cpu, std::uint64_t bytes, std::uint64_t cap) {
    return memory(cpu).transfer(bytes, cap);
}

Task<void> HostMm::clear_pages(std::uint32_t cpu, std::uint64_t bytes) {
    c_->add(Counters::zeroed_4k, bytes / k4K);
    return memory(cpu).transfer(bytes, k_.zero_rate);
}

// handle_mm_fault for an anonymous or THP page that is missing, or read-only for a write.
Task<void> HostMm::handle_mm_fault(const vm::CpuContext& ctx, Slot& s, Gfn gfn, bool write) {
    c_->add(Counters::handle_mm_fault);
    const std::uint32_t cpu = ctx.host_cpu;
    if (s.thp && s.pmd[s.i2(gfn)] != kPmdTable) {
        std::uint8_t& pmd = s.pmd[s.i2(gfn)];
        const Gfn g0 = gfn & ~Gfn{511};
        if (pmd == kPmdNone) {
            if (!write && ft_.thp_use_zero_page) {  // do_huge_pmd_anonymous_page: the huge zero page
                co_await sim_.delay(k_.zero_page_map);
                if (pmd == kPmdNone) {
                    pmd = kPmdHugeZero;
                    ++version_;
                    c_->add(Counters::huge_zero_map);
                }
                co_return;
            }
            // A THP allocated and cleared, then installed if the PMD is still none.
            co_await sim_.delay(k_.host_fault_base);
            co_await clear_pages(cpu, k2M);
            c_->add(Counters::first_touch);
            if (pmd == kPmdNone) {
                pmd = kPmdHuge;
                ++version_;
                allocated(s, cpu, gfn, Page::Huge, sim_.now());
                c_->add(Counters::thp_alloc);
            } else {
                c_->add(Counters::thp_alloc_raced);
            }
            co_return;
        }
        if (pmd == kPmdHugeZero && write) {  // do_huge_pmd_wp_page on the huge zero page
            if (ft_.thp_wp_zero_page_split) {
                // v5.8+: __split_huge_pmd (its notifier range covers the 2 MiB), then the 4 KiB COW.
                if (notifier_) co_await notifier_->invalidate_range_start(ctx, g0, g0 + 512);
                co_await sim_.delay(k_.pmd_split);
                if (pmd == kPmdHugeZero) {
                    pmd = kPmdTable;
                    ++version_;
                    std::fill_n(s.pte.begin() + static_cast<std::ptrdiff_t>(s.i4(g0)), 512,
                                static_cast<std::uint8_t>(Page::Zero));
                    c_->add(Counters::split_pmd);
                }
                if (notifier_) co_await notifier_->invalidate_range_end(ctx, g0, g0 + 512);
                if (pmd == kPmdTable && static_cast<Page>(s.pte[s.i4(gfn)]) == Page::Zero)
                    co_await wp_page_copy(ctx, s, gfn);
                co_return;
            }
            // Before v5.8: a THP allocated in place of the huge zero page.
            co_await sim_.delay(k_.host_fault_base);
            co_await clear_pages(cpu, k2M);
            if (notifier_) co_await notifier_->invalidate_range_start(ctx, g0, g0 + 512);
            if (pmd == kPmdHugeZero) {
                pmd = kPmdHuge;
                ++version_;
                allocated(s, cpu, gfn, Page::Huge, sim_.now());
                c_->add(Counters::thp_alloc);
            } else {
                c_->add(Counters::thp_alloc_raced);
            }
            if (notifier_) co_await notifier_->invalidate_range_end(ctx, g0, g0 + 512);
            co_return;
        }
        co_return;  // present and good enough: the caller follows it
    }
    std::uint8_t& pte = s.pte[s.i4(gfn)];
    if (static_cast<Page>(pte) == Page::Absent) {
        if (!write) {  // do_anonymous_page, read: the zero page
            co_await sim_.delay(k_.zero_page_map);
            if (static_cast<Page>(pte) == Page::Absent) {
                pte = static_cast<std::uint8_t>(Page::Zero);
                ++version_;
                c_->add(Counters::zero_map);
            }
            co_return;
        }
        co_await sim_.delay(k_.host_fault_base);  // do_anonymous_page, write: a cleared page
        co_await clear_pages(cpu, k4K);
        c_->add(Counters::first_touch);
        if (static_cast<Page>(pte) == Page::Absent) {
            pte = static_cast<std::uint8_t>(Page::Private);
            ++version_;
            allocated(s, cpu, gfn, Page::Private, sim_.now());
        } else {
            c_->add(Counters::thp_alloc_raced);
        }
        co_return;
    }
    if (static_cast<Page>(pte) == Page::Zero && write) co_await wp_page_copy(ctx, s, gfn);
}

// do_wp_page -> wp_page_copy on the zero page: a cleared page (alloc_zeroed_user_highpage_movable),
// invalidate_range_start over the page, the PTE replaced (ptep_clear_flush_notify,
// set_pte_at_notify -> change_pte) if nobody did it meanwhile, invalidate_range_end.
Task<void> HostMm::wp_page_copy(const vm::CpuContext& ctx, Slot& s, Gfn gfn) {
    co_await sim_.delay(k_.host_fault_base);
    co_await clear_pages(ctx.host_cpu, k4K);
    if (notifier_) co_await notifier_->invalidate_range_start(ctx, gfn, gfn + 1);
    std::uint8_t& pte = s.pte[s.i4(gfn)];
    if (static_cast<Page>(pte) == Page::Zero) {
        pte = static_cast<std::uint8_t>(Page::Private);
        ++version_;
        allocated(s, ctx.host_cpu, gfn, Page::Private, sim_.now());
        c_->add(Counters::wp_copy);
        if (notifier_) co_await notifier_->change_pte(ctx, gfn);
    } else {
        c_->add(Counters::wp_copy_raced);
    }
    if (notifier_) co_await notifier_->invalidate_range_end(ctx, gfn, gfn + 1);
}

void HostMm::populate(Gfn start, Gfn end) {
    ++version_;
    for (auto& sp : slots_) {
        Slot& s = *sp;
        const Gfn a = std::max(start, s.base), z = std::min(end, s.base + s.npages);
        if (a >= z) continue;
        if (s.hugetlb) {
            for (std::uint64_t h = s.ih(a); h <= s.ih(z - 1); ++h) s.ready[h] = 0;
            continue;
        }
        for (Gfn g = a; g < z; ++g) {
            if (s.thp && s.pmd[s.i2(g)] != kPmdTable) {
                s.pmd[s.i2(g)] = kPmdHuge;
                continue;
            }
            s.pte[s.i4(g)] = static_cast<std::uint8_t>(Page::Private);
        }
    }
}

Task<void> HostMm::unmap(const vm::CpuContext& ctx, Gfn start, Gfn end) {
    if (end <= start) co_return;
    if (notifier_) co_await notifier_->invalidate_range_start(ctx, start, end);
    ++version_;
    for (auto& sp : slots_) {
        Slot& s = *sp;
        const Gfn a = std::max(start, s.base), z = std::min(end, s.base + s.npages);
        if (a >= z) continue;
        if (s.hugetlb) {
            for (std::uint64_t h = s.ih(a); h <= s.ih(z - 1); ++h)
                if (!populating_.count((static_cast<std::uint64_t>(s.index) << 40) | h)) s.ready[h] = kNever;
            continue;
        }
        if (s.thp)
            for (std::uint64_t i = s.i2(a); i <= s.i2(z - 1); ++i)
                if (s.pmd[i] != kPmdTable) {  // a THP partly unmapped is split first
                    const Gfn g0 = std::max((s.base & ~Gfn{511}) + i * 512, s.base);
                    const Gfn h0 = g0 & ~Gfn{511};
                    const auto fill = static_cast<std::uint8_t>(s.pmd[i] == kPmdNone       ? Page::Absent
                                                                : s.pmd[i] == kPmdHugeZero ? Page::Zero
                                                                                           : Page::Private);
                    for (Gfn g = g0; g < std::min(h0 + 512, s.base + s.npages); ++g) s.pte[s.i4(g)] = fill;
                    s.pmd[i] = (a <= h0 && z >= h0 + 512) ? kPmdNone : kPmdTable;
                }
        std::fill(s.pte.begin() + static_cast<std::ptrdiff_t>(s.i4(a)), s.pte.begin() + static_cast<std::ptrdiff_t>(s.i4(z)),
                  static_cast<std::uint8_t>(Page::Absent));
    }
    if (notifier_) co_await notifier_->invalidate_range_end(ctx, start, end);
}

// ---- userfaultfd (Linux v6.8) ----

HostMm::Uffd* HostMm::uffd_at(Gfn gfn) {
    for (auto& u : uffds_)
        if (gfn >= u->start && gfn < u->end) return u.get();
    return nullptr;
}

std::optional<std::size_t> HostMm::uffd_of(Gfn gfn) const {
    for (std::size_t i = 0; i < uffds_.size(); ++i)
        if (gfn >= uffds_[i]->start && gfn < uffds_[i]->end) return i;
    return std::nullopt;
}

std::size_t HostMm::uffd_waiters(std::size_t fd) const {
    return fd < uffds_.size() ? uffds_[fd]->pending.size() + uffds_[fd]->waiting.size() : 0;
}

// The page a fault message names and UFFDIO_COPY / _CONTINUE fills (demand_paging_size is the
// backing's page size): a hugetlb page whole, else 4 KiB.
std::uint64_t HostMm::unit_pages(const Slot& s) const {
    return s.hugetlb ? std::uint64_t{1} << (9 * static_cast<unsigned>(3 - s.host_level)) : 1;
}

Gfn HostMm::uffd_unit(const Slot& s, Gfn gfn) const { return gfn & ~(unit_pages(s) - 1); }

// hva_to_pfn on a missing page of a registered range. The vCPU's thread normally takes the slow
// path into handle_mm_fault (do_anonymous_page, hugetlb_no_page, or shmem's page-cache lookup
// for MINOR), which calls handle_userfault. With exit_on_missing KVM tries the fast GUP only and
// exits (KVM_EXIT_MEMORY_FAULT); the test's vCPU thread resolves the page itself
// (ready_page -> UFFDIO_COPY / UFFDIO_CONTINUE with DONTWAKE) and re-enters.
Task<void> HostMm::userfault(const vm::CpuContext& ctx, Uffd& u, Slot& s, Gfn gfn) {
    const Gfn unit = uffd_unit(s, gfn);
    if (uffd_cfg_.exit_on_missing && ctx.vcpu >= 0) {
        uc_->add(UffdCounters::memfault_exit);
        co_await sim_.delay(k_.gup_fast + k_.memory_fault_exit);
        co_await mfill(ctx.host_cpu, u, unit, false);
        co_return;
    }
    c_->add(Counters::gup_slow);
    c_->add(Counters::handle_mm_fault);
    const Time t = mmap_lock_->rmw(mmap_lock_line_, ctx.host_cpu, sim_.now() + k_.gup_fast + k_.gup_slow);
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    co_await handle_userfault(ctx, u, unit);
}

// handle_userfault: the message queued on fault_pending_wqh under its lock, the pollers woken
// (wake_up_poll(&ctx->fd_wqh, EPOLLIN): every reader blocked in poll, each a try_to_wake_up),
// mmap_read_unlock, schedule() until userfaultfd_wake_function wakes us; then the woken task runs
// after the wake-up latency and returns VM_FAULT_RETRY.
Task<void> HostMm::handle_userfault(const vm::CpuContext& ctx, Uffd& u, Gfn unit) {
    const std::uint32_t cpu = ctx.host_cpu;
    uc_->add(UffdCounters::userfault);
    co_await sim_.delay(k_.uffd_handle_userfault);
    UffdWaiter w;
    w.unit = unit;
    w.woken = std::make_unique<engine::Signal>(sim_, "handle_userfault");
    {
        auto g = co_await u.wqh->lock(site_uffd_fault_);
        const Time t = wqh_line_->rmw(u.wqh_word, cpu, sim_.now());
        if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
        u.pending.push_back(&w);  // set_current_state before the unlock: a wake from here on is not lost
    }
    {
        Time t = fd_wqh_line_->rmw(u.fd_wqh_word, cpu, sim_.now());
        t += k_.uffd_ttwu * static_cast<std::int64_t>(u.fd_wqh->waiting());
        if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
        u.fd_wqh->notify_all();
    }
    const Time t = mmap_lock_->rmw(mmap_lock_line_, cpu, sim_.now());
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    co_await w.woken->wait();
    co_await sim_.delay(k_.uffd_wake_latency);
}

// poll(2) on the uffd and the quit pipe: userfaultfd_poll says EPOLLIN while fault_pending_wqh is
// not empty; otherwise the reader sleeps on fd_wqh until handle_userfault (or the quit pipe) wakes it.
Task<bool> HostMm::poll(const vm::CpuContext& cpu, std::size_t fd) {
    (void)cpu;
    Uffd& u = *uffds_.at(fd);
    co_await sim_.delay(k_.uffd_syscall);
    // do_poll: asleep until woken, then, once running, every fd polled again.
    while (u.pending.empty() && !u.shut) {
        uc_->add(UffdCounters::poll_sleep);
        co_await u.fd_wqh->wait();
        co_await sim_.delay(k_.uffd_wake_latency);
    }
    co_return !u.shut;
}

// userfaultfd_read -> userfaultfd_ctx_read (O_NONBLOCK): fd_wqh.lock, then fault_pending_wqh.lock;
// the oldest pending fault moves to fault_wqh and its message is returned; none left: EAGAIN.
Task<std::optional<Gfn>> HostMm::read(const vm::CpuContext& ctx, std::size_t fd) {
    Uffd& u = *uffds_.at(fd);
    const std::uint32_t cpu = ctx.host_cpu;
    co_await sim_.delay(k_.uffd_syscall);
    Time t = fd_wqh_line_->rmw(u.fd_wqh_word, cpu, sim_.now());
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    auto g = co_await u.wqh->lock(site_uffd_read_);
    t = wqh_line_->rmw(u.wqh_word, cpu, sim_.now());
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    if (u.pending.empty()) {
        uc_->add(UffdCounters::read_eagain);
        g.unlock();
        co_return std::nullopt;
    }
    UffdWaiter* w = u.pending.front();
    u.pending.pop_front();
    u.waiting.push_back(w);
    uc_->add(UffdCounters::read_msg);
    g.unlock();
    co_return w->unit;
}

// The reader's handle_uffd_page_request: UFFDIO_COPY / UFFDIO_CONTINUE with mode 0 (it wakes the
// waiters), or, after EEXIST, UFFDIO_WAKE.
Task<void> HostMm::resolve(const vm::CpuContext& ctx, std::size_t fd, Gfn gfn) {
    Uffd& u = *uffds_.at(fd);
    const Slot* s = slot_of(gfn);
    if (!s) throw std::logic_error("host: uffd message outside every memslot");
    co_await mfill(ctx.host_cpu, u, uffd_unit(*s, gfn), true);
}

// userfaultfd_copy / userfaultfd_continue -> mfill_atomic (mm/userfaultfd.c, v6.8): mmap_read_lock;
// MISSING: mfill_atomic_pte_copy (a page allocated, copy_from_user of the prototype into it) or
// hugetlb_mfill_atomic_pte; MINOR: mfill_atomic_pte_continue (the page-cache page looked up);
// mfill_atomic_install_pte under the page-table lock, -EEXIST if a page is there already;
// mmap_read_unlock; then, unless DONTWAKE, wake_userfault over the range.
Task<void> HostMm::mfill(std::uint32_t cpu, Uffd& u, Gfn unit, bool wake) {
    Slot& s = *slot_of(unit);
    const std::uint64_t npages = unit_pages(s);
    co_await sim_.delay(k_.uffd_syscall);
    Time t = mmap_lock_->rmw(mmap_lock_line_, cpu, sim_.now());
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    bool exists = state(s, unit) != Page::Absent;
    if (!exists) {
        if (uffd_cfg_.mode == vm::UffdConfig::Mode::Minor) {
            uc_->add(UffdCounters::cont);
            co_await sim_.delay(k_.uffd_continue);
        } else {
            uc_->add(UffdCounters::copy);
            co_await sim_.delay(k_.host_fault_base);  // the page allocated and charged, as a fault's
            co_await memory(cpu).transfer(npages * k4K, k_.uffd_copy_rate);
        }
        LineState& ptl = s.hugetlb ? s.pmdl[s.i1(unit)] : s.ptl[s.i2(unit)];
        t = ptl_->rmw(ptl, cpu, sim_.now());
        if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
        if (state(s, unit) == Page::Absent) {
            if (s.hugetlb) {
                s.ready[s.ih(unit)] = sim_.now().ps();
                allocated(s, cpu, unit, Page::Hugetlb, sim_.now());
            } else {
                s.pte[s.i4(unit)] = static_cast<std::uint8_t>(Page::Private);
                allocated(s, cpu, unit, Page::Private, sim_.now());
            }
            ++version_;
        } else {
            exists = true;
        }
    }
    if (exists) uc_->add(UffdCounters::eexist);
    t = mmap_lock_->rmw(mmap_lock_line_, cpu, sim_.now());
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    if (!wake) co_return;
    if (exists) {  // the test's UFFDIO_WAKE after EEXIST
        uc_->add(UffdCounters::wake);
        co_await sim_.delay(k_.uffd_syscall);
    }
    co_await wake_userfault(cpu, u, unit, npages);
}

// wake_userfault -> __wake_userfault: nothing when neither queue has an entry (the lockless
// waitqueue_active check under refile_seq); otherwise under fault_pending_wqh.lock every entry of
// both queues is checked against the range (userfaultfd_wake_function) and each match woken
// (try_to_wake_up) and removed. One uffd for all vCPUs (-a) makes that walk as long as the
// number of vCPUs waiting.
Task<void> HostMm::wake_userfault(std::uint32_t cpu, Uffd& u, Gfn unit, std::uint64_t npages) {
    if (u.pending.empty() && u.waiting.empty()) co_return;
    auto g = co_await u.wqh->lock(site_uffd_wake_);
    Time t = wqh_line_->rmw(u.wqh_word, cpu, sim_.now());
    const auto walked = static_cast<std::int64_t>(u.pending.size() + u.waiting.size());
    // Both queues walked in order (fault_pending_wqh, then fault_wqh); the matches woken in that order.
    std::vector<UffdWaiter*> woken;
    auto sweep = [&](auto& queue) {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < queue.size(); ++i) {
            UffdWaiter* w = queue[i];
            if (w->unit >= unit && w->unit < unit + npages)
                woken.push_back(w);
            else
                queue[kept++] = w;
        }
        queue.resize(kept);
    };
    sweep(u.pending);
    sweep(u.waiting);
    t += k_.uffd_wake_per_waiter * walked + k_.uffd_ttwu * static_cast<std::int64_t>(woken.size());
    if (t > sim_.now()) co_await sim_.delay(t - sim_.now());
    for (UffdWaiter* w : woken) w->woken->set();
    g.unlock();
}

void HostMm::shutdown() {
    for (auto& u : uffds_) {
        u->shut = true;
        u->fd_wqh->notify_all();
    }
}

}  // namespace kvmsim::models::host
