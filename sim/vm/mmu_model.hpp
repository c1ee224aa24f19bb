// The interface between workloads and MMU models, and the model registry. A model follows a
// kernel's mechanism (locks, work, flushes) using engine primitives; it knows nothing of JSON,
// the CLI or Python. Its KVM stats go to sim.counters() under their debugfs names.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "sim/engine/cache.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::vm {

class GuestTlb;  // sim/vm/guest_tlb.hpp: a model owns it, the guest scheduler looks it up

using KnobValue = std::variant<bool, std::int64_t, std::string>;
using Knobs = std::map<std::string, KnobValue, std::less<>>;
std::string to_string(const KnobValue& v);

struct KnobSpec {
    enum class Type : std::uint8_t { Bool, Int, Choice };
    // A knob that acts only when another knob of the model has one of `values`: setting it in a
    // scenario while the other does not is a load-time error that says `why`.
    struct AppliesWhen {
        std::string knob;
        std::vector<KnobValue> values;
        std::string why;
    };
    std::string name;
    Type type = Type::Bool;
    KnobValue default_value;
    std::string meaning;
    std::vector<std::string> choices;  // Choice
    std::int64_t min = 0, max = 0;     // Int, inclusive
    std::vector<AppliesWhen> applies_when;
    // Choice: values the knob has on other models or kernels but that cannot act on this model,
    // as (value, why): setting one is a load-time error that says why.
    std::vector<std::pair<std::string, std::string>> refused_choices;
    // A value the host must have a CPU feature for (HostConfig::features): the knob set to `value`
    // on a host without `feature` is a load-time error that says `why`.
    struct RequiresFeature {
        KnobValue value;
        std::string feature;
        std::string why;
    };
    std::vector<RequiresFeature> requires_features;
};

// A knob name the model knows but that can never act on it (a knob of a model it embeds, or of a
// mechanism it does not have): setting it in a scenario is a load-time error that says `why`.
struct InertKnob {
    std::string name;
    std::string why;
};

// What a scenario's timed events ask of a model. A model lists the operations it supports and
// the scenario loader rejects the others at load time.
enum class Operation : std::uint8_t {
    DirtyLogEnable,
    DirtyLogGet,
    DirtyLogClear,
    DirtyLogDisable,
    ZapGfnRange,
    Invalidate,  // MMU-notifier invalidation of a GPA range
    SmmEnter,
    SmmExit,
    NestedStart,
    NestedStop,
    NestedEptpSwitch,  // L1 switches a vCPU's L2 to another EPTP (VMPTRLD + VMRESUME)
    NestedEptWrite,    // L1 rewrites leaf entries of its EPT for an L2 (EPT12), then INVEPT
    ClearYoung,        // MMU notifier clear_young over a GPA range (kvm_age_gfn)
    TestYoung,         // MMU notifier test_young over a GPA range (kvm_test_age_gfn)
    VmDestroy,         // the whole VM unmapped (its stage-2 / EPT torn down)
};
const char* to_string(Operation op);

enum class ZapReason : std::uint8_t { Mtrr, Cr0Cd, Other };
const char* to_string(ZapReason r);

// nested_ept_write: L1 rewrites `entries` leaf entries of the EPT it keeps for the L2 guest whose
// EPT root is at `eptp` (its EPT12), for L2 guest frames spread evenly over [start, end), then
// executes INVEPT (single context, that EPTP) when `invept`. A rewritten leaf entry maps another
// frame. With `level` 2 or 3 the entries are those at that EPT level above the frames (PD or PDPT
// entries) where L1 maps below it: table entries that keep pointing to the same page table (L1
// changes other bits, e.g. clears an accessed flag); 0: the leaf level.
struct NestedEptWrite {
    Gfn eptp = 0;
    Gfn start = 0, end = 0;
    std::uint32_t entries = 0;
    bool invept = true;
    std::uint8_t level = 0;
};

// Who calls the clear_young/test_young notifiers, one host page at a time: the page_idle bitmap
// (mm/page_idle.c: page_idle_bitmap_write -> page_idle_clear_pte_refs -> rmap walk ->
// ptep_clear_young_notify) or the multi-gen LRU's page-table walk (mm/vmscan.c: walk_pte_range ->
// ptep_clear_young_notify / lru_gen_notifier_*). The caller's own work per page differs.
enum class AgeCaller : std::uint8_t { PageIdle, LruGen };
const char* to_string(AgeCaller c);

struct AgeRequest {
    Gfn start = 0, end = 0;  // [start, end), notified one host page at a time
    bool clear = true;       // clear_young (kvm_age_gfn) or test_young (kvm_test_age_gfn)
    AgeCaller via = AgeCaller::PageIdle;
};

struct DirtyLogOptions {
    bool manual_protect_initially_set = false;  // KVM_DIRTY_LOG_INITIALLY_SET
};

// What the guest does around an SMI (smm_enter): where its SMRAM is and what its SMI handler
// touches while the vCPU is in SMM. Guest physical addresses, bytes; all zero-footprint by
// default (the scenario loader supplies the documented default).
struct SmiHandler {
    // vcpu->arch.smbase, where the state-save area is at smbase + 0xfe00: 0x30000 is its reset
    // value (kvm_vcpu_reset); the loader's default is SeaBIOS's relocated 0xa0000.
    std::uint64_t smbase = 0x30000;
    std::uint64_t start = 0;         // first byte of the handler's working set
    std::uint64_t read_bytes = 0;    // read from start on
    std::uint64_t write_bytes = 0;   // written from start + read_bytes on
};

// Everything a model is built from.
struct ModelEnv {
    engine::Simulator& sim;
    engine::CacheModel& cache;
    const HostConfig& host;
    VmConfig& vm;
    const Knobs& knobs;  // complete: every knob of the model, defaults filled in
};

// The userfaultfds of the VM's memory as the VMM's reader threads use them (the host mm
// implements it: models/host). The workload runs the threads' loop (poll, read, resolve).
class Userfaultfd {
public:
    virtual ~Userfaultfd() = default;
    virtual std::size_t uffds() const = 0;
    // poll(2) on uffd `fd` (and the test's quit pipe): returns when a fault message is pending
    // (true) or the uffd is shut down (false).
    virtual engine::Task<bool> poll(const CpuContext& cpu, std::size_t fd) = 0;
    // read(2) of one message (O_NONBLOCK): the faulting guest frame, or none (EAGAIN: another
    // reader took it).
    virtual engine::Task<std::optional<Gfn>> read(const CpuContext& cpu, std::size_t fd) = 0;
    // UFFDIO_COPY (MISSING) or UFFDIO_CONTINUE (MINOR) of the page at gfn, waking its waiters
    // (UFFDIO_WAKE after an EEXIST).
    virtual engine::Task<void> resolve(const CpuContext& cpu, std::size_t fd, Gfn gfn) = 0;
    // uffd_stop_demand_paging: the readers' polls return false.
    virtual void shutdown() = 0;
};

class MmuModel {
public:
    virtual ~MmuModel() = default;

    // The VM's userfaultfds when VmConfig::userfaultfd registers any (null otherwise).
    virtual Userfaultfd* userfaultfd() { return nullptr; }

    // Would this guest access complete without exiting to KVM? No simulated time, and no side
    // effects but the hardware's on a hit (x86: the Accessed bit after aging, the Dirty bit and
    // the PML log), which the guest scheduler's time order keeps exact. Called for every guest
    // access, so it must be cheap.
    virtual bool hits(std::uint32_t vcpu, Gfn gfn, Access access) const = 0;
    // Guest time the vCPU's hits took beyond their own (a hardware assist: x86's Dirty-bit update
    // with PML), accumulated by hits() and taken after each hit; asked only when hit_assists()
    // is true, so a model without assists costs the scheduler nothing.
    virtual bool hit_assists() const { return false; }
    virtual Time take_hit_assist(std::uint32_t vcpu) {
        (void)vcpu;
        return Time::zero();
    }
    // The exit for an access that did not hit (EPT violation, stage-2 abort). Returns when the
    // guest may retry the access (which may fault again).
    virtual engine::Task<void> page_fault(const CpuContext& cpu, Gfn gfn, Access access) = 0;
    // The same exit for an access at `start` (>= now) when no engine event is due before
    // `start` (the guest scheduler knows): a model may then take the fault at that later time
    // without waiting for it in an event. The default lets the time pass and calls page_fault().
    virtual engine::Task<void> page_fault_at(engine::Simulator& sim, const CpuContext& cpu, Gfn gfn, Access access,
                                             Time start);
    // The same exit done at once, when the model can tell everything it does without waiting for
    // another event: returns when the guest may retry, and the caller lets that time pass.
    // Otherwise (the default) nothing has happened and the caller awaits page_fault_at().
    virtual std::optional<Time> page_fault_now(const CpuContext& cpu, Gfn gfn, Access access, Time start) {
        (void)cpu;
        (void)gfn;
        (void)access;
        (void)start;
        return std::nullopt;
    }
    // Is the vCPU's guest stream held by the model (hits() false for it because KVM works in its
    // context, e.g. from an SMI until RSM, not because of a mapping)? Its next access then enters
    // page_fault() only to wait for the hold to end: not an exit, so the workload leaves that wait
    // out of the fault latencies. Pure, like hits().
    virtual bool stream_held(std::uint32_t vcpu) const {
        (void)vcpu;
        return false;
    }
    // The least simulated time between page_fault() being called and its first change to
    // anything hits() reads (typically the VM-exit and fault-entry cost it pays first). The
    // workload lets vCPUs that only hit run ahead of each other by this much, exactly.
    virtual Time fault_lookahead() const { return Time::zero(); }

    // The vCPUs' TLB of guest translations (sim/vm/guest_tlb.hpp), or nullptr: no TLB
    // model, every access that hits() costs only its guest time (an infinite TLB). The guest
    // scheduler looks an access that hits() up in it; a miss costs tlb_refill()'s time, as
    // guest time (no event, no exit).
    virtual vm::GuestTlb* guest_tlb() { return nullptr; }
    // The refill of a TLB miss by an access that hits(): the hardware's walk of the tables, which
    // fills the vCPU's TLB. Returns its time. Called ahead of engine time, like hits(): it may
    // change only the vCPU's TLB and statistics, nothing another vCPU or hits() reads.
    virtual Time tlb_refill(std::uint32_t vcpu, Gfn gfn) {
        (void)vcpu;
        (void)gfn;
        return Time::zero();
    }

    // The VM's own host threads (x86's kvm-nx-lpage-recovery worker): started when the workload
    // starts, on `cpu`, and stopped when its last step is done. Default: none.
    virtual void start_vm_workers(const CpuContext& cpu) { (void)cpu; }
    virtual void stop_vm_workers() {}

    // Host-side operations; the default says the model does not support them (the loader
    // prevents that from happening).
    virtual engine::Task<void> dirty_log_enable(const CpuContext& cpu, std::uint32_t slot, DirtyLogOptions opts);
    // KVM_GET_DIRTY_LOG: returns the number of dirty pages harvested.
    virtual engine::Task<std::uint64_t> dirty_log_get(const CpuContext& cpu, std::uint32_t slot);
    virtual engine::Task<void> dirty_log_clear(const CpuContext& cpu, std::uint32_t slot, Gfn first, std::uint64_t npages);
    virtual engine::Task<void> dirty_log_disable(const CpuContext& cpu, std::uint32_t slot);
    virtual engine::Task<void> zap_gfn_range(const CpuContext& cpu, Gfn start, Gfn end, ZapReason reason);
    virtual engine::Task<void> invalidate_range(const CpuContext& cpu, Gfn start, Gfn end);
    // An SMM transition of the vCPU cpu.vcpu: SMI taken (enter) or RSM (leave). Runs in that
    // vCPU's context (kvm_smm_transition). An SMI also runs the guest's SMI handler (`handler`;
    // ignored for RSM, which uses the SMBASE of the SMI it leaves).
    virtual engine::Task<void> smm_transition(const CpuContext& cpu, bool enter, const SmiHandler& handler);
    // The vCPU cpu.vcpu starts running a nested (L2) guest whose EPT root is the L1 page at
    // guest frame eptp (VMLAUNCH/VMRESUME: an indirect root is allocated), or stops (L2 exits
    // for good: the root is released).
    virtual engine::Task<void> nested_start(const CpuContext& cpu, Gfn eptp);
    virtual engine::Task<void> nested_stop(const CpuContext& cpu, Gfn eptp);
    // The vCPU cpu.vcpu, running an L2 guest, is switched by L1 to the next of `eptps` after the
    // EPTP it runs (the first if it runs none of them): a nested VM-exit, L1's VMPTRLD of another
    // vmcs12 and a VMRESUME, i.e. a nested VM-entry with a new EPTP.
    virtual engine::Task<void> nested_eptp_switch(const CpuContext& cpu, const std::vector<Gfn>& eptps);
    // The L1 hypervisor on vCPU cpu.vcpu (after a nested VM-exit if the vCPU runs L2, which it
    // resumes afterwards) rewrites leaf entries of its EPT for an L2 guest (see NestedEptWrite).
    virtual engine::Task<void> nested_ept_write(const CpuContext& cpu, const NestedEptWrite& w);
    // The host ages guest memory (see AgeRequest) on the thread `cpu`: one MMU-notifier call per
    // host page of the range. Returns the number of calls that found the page young.
    virtual engine::Task<std::uint64_t> age_range(const CpuContext& cpu, const AgeRequest& r);

    // The VM's memory unmapped as a whole (the VM's teardown: every memslot through the unmap
    // path, with its TLB invalidations).
    virtual engine::Task<void> vm_destroy(const CpuContext& cpu);
};

struct ModelInfo {
    std::string name;     // "x86_tdp"
    std::string summary;  // one line
    std::string kernel;   // which kernel code and version it follows
    std::vector<KnobSpec> knobs;
    std::vector<InertKnob> inert_knobs;
    std::vector<std::string> costs;  // cost names it reads from the host profile
    // Costs that must be at least a value (a rate that divides), as (name, least): the loader
    // rejects a smaller one where it was set.
    std::vector<std::pair<std::string, double>> cost_minimums;
    // Costs that must be at most a value (a per-byte cost scaled by a mapping's size), as (name,
    // most), and costs that must be a power of two (a cache line in bytes).
    std::vector<std::pair<std::string, double>> cost_maximums;
    std::vector<std::string> cost_powers_of_two;
    // Costs that must be whole numbers (counts: TLB entries, ways), and costs that must be a
    // multiple of another cost, as (name, of).
    std::vector<std::string> cost_integers;
    std::vector<std::pair<std::string, std::string>> cost_multiples;
    std::vector<std::string> features;  // host feature names it reads (HostConfig::features)
    std::vector<Operation> operations;
    std::function<std::unique_ptr<MmuModel>(ModelEnv&)> create;

    const KnobSpec* knob(std::string_view n) const;
    const InertKnob* inert_knob(std::string_view n) const;
    bool supports(Operation op) const;
};

class ModelRegistry {
public:
    void add(ModelInfo info);
    const ModelInfo* find(std::string_view name) const;
    // Sorted by name.
    std::vector<const ModelInfo*> all() const;

private:
    std::map<std::string, ModelInfo, std::less<>> models_;
};

}  // namespace kvmsim::vm
