// A workload: the VMM thread's program of steps (vCPU stages and host operations, timed the way
// the selftests time them) plus timed host events (zaps, invalidations) that arrive on their own.
// Presets expand a selftest's command line into one (presets.hpp).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sim/engine/sync.hpp"
#include "sim/vm/mmu_model.hpp"
#include "sim/workload/guest.hpp"

namespace kvmsim::workload {

// A host-side operation on the model.
struct HostOp {
    vm::Operation op = vm::Operation::ZapGfnRange;
    std::vector<std::uint32_t> slots;  // dirty-log operations: every slot listed
    Gfn start = 0, end = 0;            // zap / invalidate: [start, end)
    vm::ZapReason reason = vm::ZapReason::Mtrr;
    vm::DirtyLogOptions dirty;
    std::uint64_t clear_chunk_pages = 0;  // dirty_log_clear: pages per KVM_CLEAR_DIRTY_LOG (0: whole slot)
    // smm_enter/smm_exit/nested_start/nested_stop: the vCPUs it happens on, each in its own
    // context and concurrently; nested: the L1 frame holding the L2 guest's EPT root.
    std::vector<std::uint32_t> vcpus;
    Gfn eptp = 0;
    vm::SmiHandler smi_handler;  // smm_enter: SMBASE and the guest SMI handler's working set
    std::vector<Gfn> eptps;     // nested_eptp_switch: the L2 guests' EPTPs L1 switches among
    vm::NestedEptWrite ept;     // nested_ept_write
    // clear_young/test_young: who calls the notifiers; with `vcpus`, [start, end) is split evenly
    // among those vCPUs' threads, each aging its part concurrently (access_tracking_perf_test's
    // page_idle marking runs on the vCPU threads).
    vm::AgeCaller age_via = vm::AgeCaller::PageIdle;
};

// An operation that runs `count` times, `interval` apart from its first start (a storm); a run
// that outlasts the interval delays the next one.
struct Repeat {
    std::uint32_t count = 1;
    Time interval;
    // Host step with streams: run again and again (at least once, `interval` ignored) until the
    // vCPUs are done (access_tracking_perf_test -p: MGLRU aging passes while the vCPUs fault
    // memory in); `count` is then unused.
    bool until_vcpus_done = false;
};

struct Step {
    enum class Kind : std::uint8_t { Stage, Host };
    Kind kind = Kind::Stage;
    std::string name;
    // Printed by the selftest this workload reproduces (its own metric line).
    bool selftest_metric = false;
    // Stage: one stream per vCPU (npages == 0: that vCPU idles). Host: streams the vCPUs run
    // while the operation runs (dirty_log_perf_test -e); the step's time is the operation's.
    std::vector<AccessStream> streams;
    HostOp host;
    // Host: the operation's storm within the step, from the step's start; the step lasts until
    // the last run completes and the vCPUs are done.
    Repeat repeat;
};

struct TimedEvent {
    std::string name;
    Time at;
    Repeat repeat;  // from `at`
    HostOp host;
};

struct Workload {
    std::string preset;                 // "" for explicit phases
    std::vector<std::string> preset_args;
    std::vector<Step> steps;
    std::vector<TimedEvent> events;
};

struct PhaseResult {
    std::string name;
    Time duration;
    bool selftest_metric = false;
};

// Runs a workload: spawns the vCPU processes, the VMM process and one actor per timed event.
// Each step is a phase of the simulator's statistics.
class Executor {
public:
    Executor(engine::Simulator& sim, vm::MmuModel& model, const vm::VmConfig& vm, const vm::HostConfig& host,
             const Workload& w);
    void start();
    const std::vector<PhaseResult>& phases() const { return phases_; }
    std::uint64_t accesses() const;
    std::uint64_t guest_exits() const;
    const GuestScheduler& scheduler() const { return sched_; }

private:
    engine::Task<void> vmm();
    engine::Task<void> vcpu(std::uint32_t index);
    engine::Task<void> repeated(Time first, const Repeat& r, vm::CpuContext& cpu, const HostOp& op);
    engine::Task<void> host_op(const vm::CpuContext& cpu, const HostOp& op);
    engine::Task<void> on_vcpus(const HostOp& op);
    engine::Task<void> age(const vm::CpuContext& cpu, const HostOp& op, Gfn start, Gfn end);
    engine::Task<void> vcpu_op(const vm::CpuContext& cpu, const HostOp& op, std::uint32_t& pending,
                               engine::Signal& done);
    void release_vcpus(const std::vector<AccessStream>* streams);
    // A VMM thread reading uffd `fd` (demand_paging_test's uffd_handler_thread_fn).
    engine::Task<void> uffd_reader(std::size_t fd, std::size_t k);

    engine::Simulator& sim_;
    vm::MmuModel& model_;
    const vm::VmConfig& vm_;
    const Workload& w_;
    GuestScheduler sched_;
    std::vector<vm::CpuContext> vcpus_;
    vm::CpuContext vmm_cpu_;
    vm::CpuContext worker_cpu_;
    std::vector<vm::CpuContext> actor_cpus_;
    std::vector<vm::CpuContext> reader_cpus_;  // uffd reader threads, readers-per-uffd for each uffd
    std::vector<VcpuStats> stats_;
    engine::Signal go_;
    engine::Signal all_done_;
    const std::vector<AccessStream>* current_ = nullptr;
    std::string stage_name_;
    std::uint32_t running_ = 0;
    bool quit_ = false;
    std::vector<PhaseResult> phases_;
    Time step_start_;
    std::optional<engine::CounterId> wall_;  // vcpu_wall_time_ns, for until_vcpus_done steps
};

}  // namespace kvmsim::workload
