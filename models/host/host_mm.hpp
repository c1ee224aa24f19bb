// The host kernel's memory management under KVM, shared by every MMU model ("models/host").
//
// What KVM's fault path asks of the host, and what the host does to KVM in return:
//   hva_to_pfn             virt/kvm/kvm_main.c: hva_to_pfn_fast (get_user_page_fast_only with
//                          FOLL_WRITE, also for a read fault whose caller accepts a writable pfn,
//                          to map it writable opportunistically), then hva_to_pfn_slow
//                          (get_user_pages_unlocked: mmap_read_lock, follow_page_mask under the page
//                          table lock, handle_mm_fault when the page is missing or not writable for
//                          a write, try_grab_page; then, for a read, get_user_page_fast_only with
//                          FOLL_WRITE again: "map read fault as writable if possible")
//   handle_mm_fault        mm/memory.c: do_anonymous_page (a read maps the shared zero page, a write
//                          allocates and clears a page), do_wp_page -> wp_page_copy (a write to the
//                          zero page: a cleared page, invalidate_range_start, set_pte_at_notify ->
//                          change_pte, invalidate_range_end); mm/huge_memory.c:
//                          do_huge_pmd_anonymous_page (a read maps the huge zero page when
//                          transparent_hugepage/use_zero_page; a write allocates and clears 2 MiB),
//                          do_huge_pmd_wp_page on the huge zero page (v5.8+: __split_huge_pmd with
//                          its MMU-notifier range over the 2 MiB, then the 4 KiB COW; before v5.8:
//                          a THP allocated in its place); mm/hugetlb.c: hugetlb_fault under the
//                          hugetlb fault mutex
//   struct page refcounts  try_grab_page / put_page on the page's line (the compound head for THP and
//                          hugetlb, one line for the zero page, one for the huge zero page). Each
//                          reads the line before its atomic (try_get_compound_head: page_ref_count,
//                          then atomic_add_unless, a try_cmpxchg loop behind atomic_read;
//                          try_get_page: page_ref_count, then page_ref_inc; put_page: compound_head,
//                          then put_page_testzero), so a line another CPU owns costs two coherence
//                          transactions, a shared fetch and then the upgrade
//                          (engine::LineClass::load_rmw). The CAS loop's retries when another
//                          CPU's atomic lands between its read and its cmpxchg are not modelled.
//   put_page               kvm_release_pfn_clean after the mapping is installed
// Linux versions: the arm64 rows this serves ran host v5.11/v5.12 (calibration C1, seed 004), the
// x86 ones v5.10-v5.16; the behaviour here is that of v5.12 unless a feature says otherwise
// (features thp_use_zero_page, thp_wp_zero_page_split). See docs/models/host.md.
//
// How a model uses it (model-neutral; arm64_stage2 is the first user):
//   * at construction: HostMm(sim, host config, memslots, costs, features), then
//     set_notifier(&model) with the model's MmuNotifier implementation;
//   * in the fault path, before mmu_lock: gup_analytic(gfn, write) says whether the GUP needs no
//     host page-table change (then try_gup() works it out at once, without an event: the fast
//     path, or the slow path following a page already there); otherwise the fault awaits gup(),
//     which may zero pages through the socket's memory bandwidth and call the notifier;
//   * after mmu_lock is released: put_page() (kvm_release_pfn_clean);
//   * bulk memory work of the model (arm64's D-cache clean to PoC): transfer_time() prices it at
//     the share of the socket's memory bandwidth it would get now; transfer() moves it;
//   * a host unmap (the scenario operation "invalidate"): unmap(), which calls the notifier's
//     invalidate_range_start / _end around dropping the pages.
//   * userfaultfd (VmConfig::userfaultfd, demand_paging_test -u): gup() of a page missing in a
//     registered range sleeps in handle_userfault until a reader resolves it; HostMm is the
//     vm::Userfaultfd the workload's reader threads poll, read and resolve (the model returns it
//     from MmuModel::userfaultfd()). Linux v6.8: fs/userfaultfd.c (handle_userfault,
//     userfaultfd_poll, userfaultfd_ctx_read, userfaultfd_copy / _continue, __wake_userfault,
//     userfaultfd_wake_function), mm/userfaultfd.c (mfill_atomic_copy, mfill_atomic_continue,
//     mfill_atomic_install_pte, hugetlb_mfill_atomic_pte). With exit_on_missing (-w, the
//     unmerged KVM_CAP_EXIT_ON_MISSING series) a vCPU's fault exits to userspace instead and the
//     vCPU thread resolves it (UFFDIO_COPY / UFFDIO_CONTINUE with DONTWAKE).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sim/engine/bandwidth.hpp"
#include "sim/engine/contended_line.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/engine/sync.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models::host {

// What the host's own page-table changes do to the MMU model: KVM's MMU-notifier callbacks
// (kvm_mmu_notifier_invalidate_range_start/_end, kvm_mmu_notifier_change_pte). Ranges are guest
// frame numbers (the memslots' userspace addresses are laid out like their guest addresses). They
// run in the context of whoever changes the host page tables (`cpu`).
class MmuNotifier {
public:
    virtual ~MmuNotifier() = default;
    virtual engine::Task<void> invalidate_range_start(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) = 0;
    virtual engine::Task<void> invalidate_range_end(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end) = 0;
    // set_pte_at_notify: gfn is now mapped, read-only, to a new page (wp_page_copy). Until v6.9.
    virtual engine::Task<void> change_pte(const vm::CpuContext& cpu, vm::Gfn gfn) = 0;
};

// Cost constants (profile names in comments).
struct Costs {
    engine::Time gup_fast;         // "gup_fast": hva_to_pfn_fast's own work besides the refcount line
    engine::Time gup_slow;         // "gup_slow": get_user_pages_unlocked's own work besides its lines
    engine::Time host_fault_base;  // "host_fault_base": handle_mm_fault allocating a page, besides clearing it
    engine::Time zero_page_map;    // "host_zero_page_map": do_anonymous_page / huge zero page mapping on a read
    engine::Time pmd_split;        // "host_pmd_split": __split_huge_pmd's own work (512 PTEs)
    std::uint64_t zero_rate = 0;   // "zero_rate": bytes/s one core clears (clear_page, DC ZVA)
    // userfaultfd (Linux v6.8 fs/userfaultfd.c, mm/userfaultfd.c); see docs/models/host.md.
    engine::Time uffd_handle_userfault;  // "uffd_handle_userfault": handle_userfault's own work before schedule()
    engine::Time uffd_wake_latency;      // "uffd_wake_latency": a task woken from a wait queue until it runs
    engine::Time uffd_wake_per_waiter;   // "uffd_wake_per_waiter": __wake_up_locked_key's check of one entry
    engine::Time uffd_ttwu;              // "uffd_ttwu": the waker's try_to_wake_up of one task
    engine::Time uffd_syscall;           // "uffd_syscall": a poll / read / ioctl on the uffd, entry to exit
    engine::Time uffd_continue;          // "uffd_continue": UFFDIO_CONTINUE's page-cache lookup (shmem_get_folio)
    engine::Time memory_fault_exit;      // "memory_fault_exit": -w: KVM_EXIT_MEMORY_FAULT, re-entry, the fault again
    std::uint64_t uffd_copy_rate = 0;    // "uffd_copy_rate": bytes/s UFFDIO_COPY's copy_from_user moves
    static const std::vector<std::string>& names();
    // The least zero_rate a model using the host mm accepts at load time (ModelInfo::
    // cost_minimums): 1 MB/s, so clearing a 1 GiB page stays within the clock by far.
    static constexpr double kMinZeroRate = 1e6;
    static Costs from(const vm::CostProfile& p);
};

struct Features {
    bool thp_use_zero_page = true;       // /sys/kernel/mm/transparent_hugepage/use_zero_page
    bool thp_wp_zero_page_split = true;  // v5.8+: a write to the huge zero page splits the PMD
    static const std::vector<std::string>& names();
    static Features from(const vm::HostConfig& host);
};

// The state of a host page as the fault sees it.
enum class Page : std::uint8_t {
    Absent,    // nothing mapped
    Zero,      // the 4 KiB zero page (read-only)
    Private,   // a private 4 KiB page (writable)
    HugeZero,  // the PMD maps the huge zero page (read-only)
    Huge,      // a THP (writable), PMD-mapped
    Hugetlb,   // a hugetlb page, populated
};
const char* to_string(Page p);

// What hva_to_pfn gave: when it returned, whether the pfn may be mapped writable, the host
// mapping's level (3: 4 KiB, 2: 2 MiB, 1: 1 GiB; PageTransCompoundMap / the hugetlb size), and the
// refcount line the caller releases with put_page().
struct Gup {
    engine::Time done;
    bool writable = false;
    int level = 3;
    engine::LineState* ref = nullptr;
    bool slow = false;
    // When the caller's VMA lookup (vma_lookup) was done, or when the GUP was asked for without
    // one: where arm64's user_mem_abort takes its mmu_invalidate_seq snapshot.
    engine::Time looked_up;
};

// The shared lines a GUP that changes no page table would use (gup_lines): its page's refcount line
// and, on the slow path, the mmap_lock and page-table-lock lines; with the caller's VMA lookup
// (vma_lookup: arm64's user_mem_abort), the mmap_lock line always. Two GUPs commute (their calls
// may come in either order) unless both use the mmap_lock line or they share the refcount line.
struct GupLines {
    const engine::LineState* ref = nullptr;
    bool slow = false;
    bool vma_lookup = false;  // mmap_read_lock / mmap_read_unlock around the caller's VMA lookup first
    bool changing = false;    // the GUP would change the host's page tables: it commutes with nothing
    bool mmap_lock() const { return slow || vma_lookup; }
};

class HostMm : public vm::Userfaultfd {
public:
    HostMm(engine::Simulator& sim, const vm::HostConfig& host, const std::vector<vm::Memslot>& slots, Costs costs,
           Features features, const vm::UffdConfig& uffd = {});
    ~HostMm() override;
    HostMm(const HostMm&) = delete;
    HostMm& operator=(const HostMm&) = delete;

    void set_notifier(MmuNotifier* n) { notifier_ = n; }

    // Pure: can hva_to_pfn for this access be worked out without changing the host's page tables
    // (nothing to allocate, clear, split or copy)?
    bool gup_analytic(vm::Gfn gfn, bool write) const;
    // With vma_lookup the caller looks the VMA up under mmap_read_lock just before hva_to_pfn
    // (arm64 user_mem_abort: find_vma_intersection in v5.12, vma_lookup in v6.x, then
    // mmap_read_unlock): the rwsem's down_read and up_read, two RMWs on the mmap_lock line, come
    // first; the lookup's own work is the caller's.
    // Pure: the lines hva_to_pfn at `at` would use, from the host's state now.
    GupLines gup_lines(vm::Gfn gfn, bool write, engine::Time at, bool vma_lookup = false) const;
    // hva_to_pfn at `at` (>= now) when gup_analytic(): works it out and charges its lines.
    Gup try_gup(std::uint32_t cpu, vm::Gfn gfn, bool write, engine::Time at, bool vma_lookup = false);
    // hva_to_pfn now, changing the host's page tables as handle_mm_fault does.
    engine::Task<Gup> gup(const vm::CpuContext& cpu, vm::Gfn gfn, bool write, bool vma_lookup = false);
    // put_page of the GUP's reference at `at`: returns when the refcount line is done.
    engine::Time put_page(std::uint32_t cpu, const Gup& g, engine::Time at);

    // Bulk memory work by `cpu` at up to `cap` bytes/s (0: no per-core cap) through its socket's
    // memory bandwidth: transfer_time() prices it at the share it would get now (for work whose
    // time must be known at once); transfer() moves it.
    engine::Time transfer_time(std::uint32_t cpu, std::uint64_t bytes, std::uint64_t cap) const;
    engine::Task<void> transfer(std::uint32_t cpu, std::uint64_t bytes, std::uint64_t cap);
    // Work priced with transfer_time() that ran from `start` for `d` (which may be ahead of now),
    // in the bandwidth statistics as the resource "memory_priced_ahead": no other transfer's rate
    // changes. The caller's intervals must not overlap (they are a serialized lock's holds).
    void account_transfer(std::uint32_t cpu, engine::Time start, engine::Time d, std::uint64_t bytes);

    // A host unmap of [start, end) (munmap, MADV_DONTNEED): the notifier's invalidate_range_start,
    // the pages dropped, invalidate_range_end.
    engine::Task<void> unmap(const vm::CpuContext& cpu, vm::Gfn start, vm::Gfn end);

    // mmap(MAP_POPULATE) / a userspace write before the VM runs: [start, end) present and writable
    // (private 4 KiB pages; a THP over every aligned 2 MiB it touches that the slot holds whole;
    // hugetlb pages populated). No simulated cost, no notifier: for set-ups.
    void populate(vm::Gfn start, vm::Gfn end);

    // Changes whenever any host page's state does (what gup_analytic and gup_lines read): a
    // caller may keep their answers while it is unchanged.
    std::uint64_t state_version() const { return version_; }

    // vm::Userfaultfd: the VMM's reader threads (fs/userfaultfd.c userfaultfd_poll,
    // userfaultfd_read, userfaultfd_ioctl). uffds() is 0 when nothing is registered.
    std::size_t uffds() const override { return uffds_.size(); }
    engine::Task<bool> poll(const vm::CpuContext& cpu, std::size_t fd) override;
    engine::Task<std::optional<vm::Gfn>> read(const vm::CpuContext& cpu, std::size_t fd) override;
    engine::Task<void> resolve(const vm::CpuContext& cpu, std::size_t fd, vm::Gfn gfn) override;
    void shutdown() override;
    // The uffd whose range holds gfn, if any (introspection).
    std::optional<std::size_t> uffd_of(vm::Gfn gfn) const;
    // Faults sleeping on uffd `fd` (read or not).
    std::size_t uffd_waiters(std::size_t fd) const;

    // Introspection (no simulated cost).
    Page page(vm::Gfn gfn) const;
    // The size of the host's mapping of gfn as its page tables say now, in Gup::level's numbering
    // (3: 4 KiB, also when nothing is mapped; 2: a PMD-mapped THP or the huge zero page; a hugetlb
    // page: its size). What KVM's host_pfn_mapping_level finds; its walk's cost is the caller's.
    int mapping_level(vm::Gfn gfn) const;
    const Costs& costs() const { return k_; }
    const Features& features() const { return ft_; }
    const engine::Topology& topology() const { return topo_; }

private:
    struct Slot;
    struct Counters;
    Slot* slot_of(vm::Gfn gfn);
    const Slot* slot_of(vm::Gfn gfn) const;
    Page state(const Slot& s, vm::Gfn gfn) const;
    static bool writable(Page p) { return p == Page::Private || p == Page::Huge || p == Page::Hugetlb; }
    engine::LineState& ref_line(Slot& s, vm::Gfn gfn, Page p);
    engine::LineState& ptl_line(Slot& s, vm::Gfn gfn, Page p);
    int map_level(const Slot& s, Page p) const;
    void allocated(Slot& s, std::uint32_t cpu, vm::Gfn gfn, Page p, engine::Time at);
    Gup hugetlb_gup(Slot& s, std::uint32_t cpu, vm::Gfn gfn, engine::Time at);
    engine::Task<Gup> hugetlb_populate(const vm::CpuContext& ctx, Slot& s, vm::Gfn gfn);
    engine::Time find_vma(std::uint32_t cpu, engine::Time at);
    engine::Time follow(Slot& s, std::uint32_t cpu, vm::Gfn gfn, Page p, engine::Time t, Gup& g);
    engine::Task<void> handle_mm_fault(const vm::CpuContext& cpu, Slot& s, vm::Gfn gfn, bool write);
    engine::Task<void> wp_page_copy(const vm::CpuContext& cpu, Slot& s, vm::Gfn gfn);
    engine::Task<void> clear_pages(std::uint32_t cpu, std::uint64_t bytes);
    engine::Bandwidth& memory(std::uint32_t cpu) const;
    struct Uffd;
    struct UffdWaiter;
    struct UffdCounters;
    Uffd* uffd_at(vm::Gfn gfn);
    vm::Gfn uffd_unit(const Slot& s, vm::Gfn gfn) const;
    std::uint64_t unit_pages(const Slot& s) const;
    engine::Task<void> userfault(const vm::CpuContext& cpu, Uffd& u, Slot& s, vm::Gfn gfn);
    engine::Task<void> handle_userfault(const vm::CpuContext& cpu, Uffd& u, vm::Gfn unit);
    engine::Task<void> mfill(std::uint32_t cpu, Uffd& u, vm::Gfn unit, bool wake);
    engine::Task<void> wake_userfault(std::uint32_t cpu, Uffd& u, vm::Gfn unit, std::uint64_t npages);

    engine::Simulator& sim_;
    engine::Topology topo_;
    Costs k_;
    Features ft_;
    MmuNotifier* notifier_ = nullptr;
    std::uint64_t version_ = 0;
    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<std::unique_ptr<engine::Bandwidth>> memory_;  // one per socket
    std::uint32_t priced_ahead_ = 0;  // the bandwidth statistics' id of account_transfer()
    std::unique_ptr<engine::LineClass> refcount_, mmap_lock_, ptl_;
    engine::LineState mmap_lock_line_;    // mm->mmap_lock's count
    engine::LineState zero_page_line_;    // the zero page's struct page
    engine::LineState huge_zero_line_;    // the huge zero page's head
    static constexpr std::size_t kRecent = 4096;  // 4 KiB pages' refcount lines, direct-mapped
    std::vector<std::uint64_t> recent_tag_;
    std::vector<engine::LineState> recent_;
    std::unique_ptr<Counters> c_;
    // hugetlb pages being populated (slot index << 40 | huge page): the fault mutex's holder
    // signals the faults waiting for it.
    std::map<std::uint64_t, std::unique_ptr<engine::Signal>> populating_;
    // userfaultfd: made only when the VM registers a range (so runs without one keep their
    // statistics' names and order).
    vm::UffdConfig uffd_cfg_;
    std::vector<std::unique_ptr<Uffd>> uffds_;
    std::unique_ptr<engine::LineClass> wqh_line_, fd_wqh_line_;
    std::unique_ptr<UffdCounters> uc_;
    engine::Site site_uffd_fault_{}, site_uffd_read_{}, site_uffd_wake_{};
};

}  // namespace kvmsim::models::host
