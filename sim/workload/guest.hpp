// What the guest does: access streams, and the scheduler that runs vCPUs through them.
//
// A hit (an access to a page already mapped with the right permission) costs no event. Every
// vCPU that is only hitting is owned by the GuestScheduler, which runs one vCPU at a time ahead
// of engine time, in batches, up to a horizon that keeps results exact:
//   - the next pending engine event (a fault handler or host actor may change mappings then);
//   - the local time of any other hitting vCPU plus the model's fault_lookahead() (that vCPU
//     may fault at its local time, but cannot change what hits() sees sooner than that).
// An access that does not hit hands the vCPU back to its own process, at the access's time,
// to take the fault. After the fault, a vCPU that is first in time order runs its hits in its
// own process (no scheduler event) and, on a miss, takes the next fault at the access's time
// through MmuModel::page_fault_at (no event either, if the model can); otherwise it re-enters
// the scheduler.
//
// Every fault's latency, from the access's time (the exit) to the return to the guest, goes to
// the histogram of the statistics phase current at its return. All three entry points
// (page_fault_now, page_fault_at, and page_fault through page_fault_at's default) are called
// from run() only, so this is every exit of every model; an entry into a held stream
// (MmuModel::stream_held) is a wait, not an exit, and is left out.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "sim/engine/random.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/engine/stats.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::workload {

using engine::Time;
using vm::Access;
using vm::Gfn;

// One access of an explicit stream: the page, how it is accessed, and the guest time after it
// (before the next access of the stream).
struct ExplicitAccess {
    Gfn gfn = 0;
    Access access = Access::Read;
    Time gap;
};

struct AccessStream {
    enum class Pattern : std::uint8_t {
        Sequential,  // base, base+stride, ... (count accesses, wrapping around the region)
        Random,      // uniform pages of the region
        BlockSplit,  // per block: write its first page, then read its second half (the
                     // selftest's KVM_UPDATE_MAPPINGS on huge pages)
        WriteExec,   // per page (base, base+stride, ...): write it, then execute it
                     // (nx_huge_pages_perf_test's "*gva = RETURN_OPCODE; ((void (*)(void)) gva)();")
        Explicit,    // the listed accesses in order, each followed by its own guest time (a
                     // recorded trace's faults, kvmsim import-trace)
    };
    Pattern pattern = Pattern::Sequential;
    Gfn base = 0;
    std::uint64_t npages = 0;      // region size in 4K pages
    std::uint64_t stride = 1;      // pages between accesses (Sequential)
    std::uint64_t count = 0;       // accesses; 0: one pass (npages / stride; BlockSplit: all blocks)
    std::uint64_t block_pages = 512;
    Access access = Access::Read;  // used when write_every == 0 and no mix
    std::uint64_t write_every = 0; // > 0: access i writes if i % write_every == 0, else reads
    double write_fraction = 0;     // mix by Bernoulli draws when mix is true
    double exec_fraction = 0;
    bool mix = false;
    Time guest_time;               // guest time per access (not Explicit)
    // Explicit: the accesses (shared: a stream is copied per vCPU and per cursor); npages is
    // their number. start_delay: guest time before the first access (any pattern).
    std::shared_ptr<const std::vector<ExplicitAccess>> accesses;
    Time start_delay;
    // Sequential: after each new page, touch up to touch_back earlier pages of the stream, the
    // nearest first (FEAT_TLBIRANGE series' modified kvm_page_table_test ADJUST stage). count
    // then counts the new pages.
    std::uint64_t touch_back = 0;
    std::uint64_t pages() const;   // new pages in the stream (accesses without touch_back)
    std::uint64_t total() const;   // accesses in the stream
};

// Iterates a stream: the current access stays current until advance() (a fault retries it).
class StreamCursor {
public:
    StreamCursor(const AccessStream& s, engine::RandomStream rng);
    bool done() const { return i_ >= total_; }
    Gfn gfn() const { return gfn_; }
    Access access() const { return access_; }
    // The guest time after the current access (the stream's guest_time, or Explicit's own).
    Time gap() const { return gap_; }
    void advance() {
        ++i_;
        if (i_ < total_) next();
    }
    std::uint64_t index() const { return i_; }

private:
    void compute();  // the access at i_, from scratch
    void next();     // the access at i_ from the one at i_ - 1
    void set_access();
    AccessStream s_;
    engine::RandomStream rng_;
    std::uint64_t total_ = 0;
    std::uint64_t i_ = 0;
    Gfn gfn_ = 0;
    Access access_ = Access::Read;
    Time gap_;
    std::uint64_t k_ = 0;  // BlockSplit: the access's index within its block
    std::uint64_t j_ = 0;  // touch_back: the new page's index in the stream
    std::uint64_t b_ = 0;  // touch_back: pages back from it (0: the new page)
    Gfn new_gfn_ = 0;      // touch_back: the new page
};

struct VcpuStats {
    std::uint64_t accesses = 0;
    std::uint64_t faults = 0;  // exits taken (page_fault calls)
};

// With a tracer: samples the mapped pages per level and the TLB flushes as counter tracks.
void trace_counters(engine::Simulator& sim);

class GuestScheduler : public engine::EventTarget {
public:
    GuestScheduler(engine::Simulator& sim, vm::MmuModel& model);

    // Runs `stream` on the vCPU from now, taking faults in the calling process. Returns when
    // the last access has completed.
    engine::Task<void> run(const vm::CpuContext& cpu, const AccessStream& stream, VcpuStats& stats);

    std::uint64_t batches() const { return batches_; }
    // The latencies (ps) of the faults that returned in simulator phase `phase` (empty if none).
    const engine::FineHistogram& fault_latency(std::size_t phase) const;
    std::size_t fault_latency_phases() const { return fault_latency_.size(); }

    void fire(engine::Simulator& sim) override;

private:
    struct Vcpu {
        const vm::CpuContext* cpu = nullptr;
        StreamCursor* cursor = nullptr;
        VcpuStats* stats = nullptr;
        Time t;               // local time of the current access
        std::coroutine_handle<> h{};
        engine::Process* process = nullptr;
        bool fault = false;   // handed back to take a fault (else: stream done)
    };
    // A heap entry keeps its vCPU's key (its time when entered, which does not change while it
    // is in the heap, and its index), so that ordering reads no Vcpu.
    struct Entry {
        Time t;
        std::int32_t vcpu;
        Vcpu* v;
    };
    struct Later {
        bool operator()(const Entry& a, const Entry& b) const { return a.t != b.t ? a.t > b.t : a.vcpu > b.vcpu; }
    };
    void sift_down_front();
    struct Enter {
        GuestScheduler& g;
        Vcpu& v;
        bool await_ready() const noexcept { return false; }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            v.h = h;
            v.process = h.promise().process;
            g.enter(v);
        }
        void await_resume() const noexcept {}
    };
    void enter(Vcpu& v);
    void record_fault_latency(Time latency);
    void release(Vcpu& v);
    enum class Ahead : std::uint8_t { Miss, Done, Horizon };
    Ahead run_ahead(Vcpu& v, Time next_event);
    // An access that hits(): its TLB lookup, and on a miss the refill's time (guest time).
    Time translate(std::uint32_t vcpu, Gfn gfn);

    engine::Simulator& sim_;
    vm::MmuModel& model_;
    vm::GuestTlb* tlb_;  // the model's, or nullptr (no TLB model)
    bool assists_;       // the model's hits may take assist time (MmuModel::hit_assists)
    Time lookahead_;
    std::vector<Entry> heap_;  // min-heap by (t, vcpu)
    std::uint64_t batches_ = 0;
    std::vector<engine::FineHistogram> fault_latency_;  // by simulator phase, grown per phase
};

}  // namespace kvmsim::workload
