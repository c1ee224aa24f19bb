// Holding a vCPU's guest stream while KVM works in that vCPU's context. The workload's executor
// runs a per-vCPU host operation (an SMM transition, a nested VM-exit and VM-entry, ...) in the
// vCPU's context but does not pause the vCPU's access stream meanwhile; in KVM the work happens
// inside that vCPU's KVM_RUN, so its guest code does not run. A model holds the stream this way:
//   - hits() returns false for a held vCPU (held(), checked first), so its next access enters
//     page_fault, which waits until the hold ends and returns without an exit (the guest retries
//     the access in whatever mode and tree the vCPU is in then): wait_released();
//   - an operation starts only once the fault the vCPU is in (if any) has finished (the event is
//     taken at the next entry): page_fault brackets its work with fault_begin()/fault_end(), and
//     hold() waits for it;
//   - operations on one vCPU run one at a time: serialize() waits for one in progress.
// The hold ends with end(release = true), or outlives the operation (end(release = false): an SMI
// leaves the stream held until RSM's operation releases it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sim/engine/simulator.hpp"
#include "sim/engine/sync.hpp"
#include "sim/engine/task.hpp"

namespace kvmsim::models {

class GuestStreamHold {
public:
    // `until`: what a waiter waits for, for diagnostics ("in SMM (until smm_exit)").
    GuestStreamHold(engine::Simulator& sim, std::uint32_t vcpus, const std::string& until) : f_(vcpus, 0) {
        wake_.reserve(vcpus);
        for (std::uint32_t i = 0; i < vcpus; ++i)
            wake_.push_back(std::make_unique<engine::Signal>(sim, "vcpu" + std::to_string(i) + " " + until));
    }

    // For hits(): one byte per vCPU.
    bool held(std::uint32_t vcpu) const { return vcpu < f_.size() && (f_[vcpu] & kHeld) != 0; }

    // page_fault's entry on a held vCPU: waits until the hold ends.
    engine::Task<void> wait_released(std::uint32_t vcpu) {
        engine::Signal& wake = *wake_.at(vcpu);
        while (f_[vcpu] & kHeld) co_await wake.wait();
    }
    // page_fault's work (not held at its entry) runs between these. Every exit calls both: the
    // flags are bytes of one small array, not per-vCPU heap objects.
    void fault_begin(std::uint32_t vcpu) { f_.at(vcpu) |= kInFault; }
    void fault_end(std::uint32_t vcpu) {
        std::uint8_t& f = f_.at(vcpu);
        f = static_cast<std::uint8_t>(f & ~kInFault);
        if (f & kInOp) wake_[vcpu]->notify_all();
    }
    // fault_begin() now and fault_end() when the returned scope ends: in a coroutine, at any
    // co_return, before its caller resumes.
    struct FaultScope {
        GuestStreamHold& hold;
        std::uint32_t vcpu;
        FaultScope(GuestStreamHold& h, std::uint32_t v) : hold(h), vcpu(v) {}
        FaultScope(const FaultScope&) = delete;
        FaultScope& operator=(const FaultScope&) = delete;
        ~FaultScope() { hold.fault_end(vcpu); }
    };
    [[nodiscard]] FaultScope fault_scope(std::uint32_t vcpu) {
        fault_begin(vcpu);
        return FaultScope{*this, vcpu};
    }

    // An operation on the vCPU: serialize() first (waits for one in progress), then hold() when it
    // has work to do (holds the stream, waits for the fault in flight), then end().
    engine::Task<void> serialize(std::uint32_t vcpu) {
        engine::Signal& wake = *wake_.at(vcpu);
        while (f_[vcpu] & kInOp) co_await wake.wait();
    }
    engine::Task<void> hold(std::uint32_t vcpu) {
        engine::Signal& wake = *wake_.at(vcpu);
        f_[vcpu] |= kInOp | kHeld;
        while (f_[vcpu] & kInFault) co_await wake.wait();
    }
    void end(std::uint32_t vcpu, bool release) {
        engine::Signal& wake = *wake_.at(vcpu);
        f_[vcpu] = static_cast<std::uint8_t>(f_[vcpu] & ~(release ? kInOp | kHeld : kInOp));
        wake.notify_all();
    }

private:
    static constexpr std::uint8_t kHeld = 1;     // hits() false, page_fault waits
    static constexpr std::uint8_t kInFault = 2;  // inside page_fault
    static constexpr std::uint8_t kInOp = 4;     // an operation runs on the vCPU
    std::vector<std::uint8_t> f_;                // per vCPU
    std::vector<std::unique_ptr<engine::Signal>> wake_;  // fault done / operation done
};

}  // namespace kvmsim::models
