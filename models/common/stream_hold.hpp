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
    GuestStreamHold(engine::Simulator& sim, std::uint32_t vcpus, const std::string& until) : held_(vcpus, 0) {
        v_.reserve(vcpus);
        for (std::uint32_t i = 0; i < vcpus; ++i) {
            auto s = std::make_unique<State>();
            s->wake = std::make_unique<engine::Signal>(sim, "vcpu" + std::to_string(i) + " " + until);
            v_.push_back(std::move(s));
        }
    }

    // For hits(): one byte per vCPU.
    bool held(std::uint32_t vcpu) const { return vcpu < held_.size() && held_[vcpu] != 0; }

    // page_fault's entry on a held vCPU: waits until the hold ends.
    engine::Task<void> wait_released(std::uint32_t vcpu) {
        State& s = *v_.at(vcpu);
        while (held_[vcpu]) co_await s.wake->wait();
    }
    // page_fault's work (not held at its entry) runs between these.
    void fault_begin(std::uint32_t vcpu) { v_.at(vcpu)->in_fault = true; }
    void fault_end(std::uint32_t vcpu) {
        State& s = *v_.at(vcpu);
        s.in_fault = false;
        if (s.in_op) s.wake->notify_all();
    }

    // An operation on the vCPU: serialize() first (waits for one in progress), then hold() when it
    // has work to do (holds the stream, waits for the fault in flight), then end().
    engine::Task<void> serialize(std::uint32_t vcpu) {
        State& s = *v_.at(vcpu);
        while (s.in_op) co_await s.wake->wait();
    }
    engine::Task<void> hold(std::uint32_t vcpu) {
        State& s = *v_.at(vcpu);
        s.in_op = true;
        held_[vcpu] = 1;
        while (s.in_fault) co_await s.wake->wait();
    }
    void end(std::uint32_t vcpu, bool release) {
        State& s = *v_.at(vcpu);
        s.in_op = false;
        if (release) held_[vcpu] = 0;
        s.wake->notify_all();
    }

private:
    struct State {
        bool in_fault = false;  // inside page_fault
        bool in_op = false;     // an operation runs on the vCPU
        std::unique_ptr<engine::Signal> wake;  // fault done / operation done
    };
    std::vector<std::uint8_t> held_;
    std::vector<std::unique_ptr<State>> v_;
};

}  // namespace kvmsim::models
