// kvm_flush_remote_tlbs (virt/kvm/kvm_main.c, v6.x): counts remote_tlb_flush_requests, makes a
// KVM_REQ_TLB_FLUSH request to every vCPU and kicks the running ones with an IPI, waiting for them
// (counted in remote_tlb_flush). Its cost grows with the vCPU count: a base plus a per-vCPU IPI
// cost, both from the host profile. On EPT/NPT without Hyper-V enlightenments the range and gfn
// variants (kvm_flush_remote_tlbs_range/_gfn/_memslot) fall back to this full flush.
//
// Only the flushing task pays; the exits the IPIs cause on the target vCPUs are not modelled.
#pragma once

#include <cstdint>

#include "models/common/kvm_stats.hpp"
#include "sim/engine/time.hpp"
#include "sim/vm/guest_tlb.hpp"

namespace kvmsim::models {

class RemoteTlbFlush {
public:
    RemoteTlbFlush(KvmStats& stats, engine::Time base, engine::Time per_vcpu, std::uint32_t vcpus)
        : stats_(stats), base_(base), per_vcpu_(per_vcpu), vcpus_(vcpus) {}

    // Counts one flush and returns the time it takes the caller; every vCPU's guest TLB, if the
    // model keeps one, is emptied (KVM_REQ_TLB_FLUSH: INVEPT single-context on each vCPU, or
    // all-context).
    engine::Time flush() {
        stats_.add(stats_.remote_tlb_flush_requests);
        stats_.add(stats_.remote_tlb_flush);
        if (guest_tlb_) guest_tlb_->invalidate_all();
        return cost();
    }
    void set_guest_tlb(vm::GuestTlb* t) { guest_tlb_ = t; }
    engine::Time cost() const { return base_ + per_vcpu_ * static_cast<std::int64_t>(vcpus_); }
    std::uint32_t vcpus() const { return vcpus_; }

private:
    KvmStats& stats_;
    engine::Time base_;
    engine::Time per_vcpu_;
    std::uint32_t vcpus_;
    vm::GuestTlb* guest_tlb_ = nullptr;
};

}  // namespace kvmsim::models
