// Intel PML (Page Modification Logging), the part the x86 models share (Linux v6.9
// arch/x86/kvm/vmx/vmx.c: the 512-entry PML buffer of each vCPU, vmx_flush_pml_buffer on every VM
// exit, handle_pml_full; vmx_update_cpu_dirty_logging: PML is on in the VMCS only while some
// memslot logs dirty pages). What each model keeps itself: which of its SPTEs have the Dirty bit
// clear, and how it walks them.
//
// With the host feature pml a write that hits a writable SPTE whose Dirty bit KVM cleared has
// the CPU set the bit (an assist, guest time the model adds here and the guest scheduler takes
// after the hit: MmuModel::take_hit_assist) and, while a memslot logs, append the GPA to the
// vCPU's buffer without an exit. The write that finds the buffer full is a PML-full VM exit
// before it (log() returns false; the model's page_fault counts it with full_exit()).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "sim/engine/simulator.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::models {

class PmlLog {
public:
    static constexpr std::size_t kEntries = 512;  // PML_LOG_NR_ENTRIES: one 4 KiB page of GPAs

    // With the host feature pml only: registers the counters handle_pml_full and
    // vmx_flush_pml_buffer_entries (so that runs without it keep their counter lists).
    void init(engine::Simulator& sim, const vm::HostConfig& host, std::uint32_t vcpus) {
        sim_ = &sim;
        buf_.resize(vcpus);
        for (auto& b : buf_) b.reserve(kEntries);
        assist_.assign(vcpus, engine::Time::zero());
        for (std::uint32_t i = 0; i < vcpus; ++i) cpu_.push_back(vm::thread_cpu(i, host));
        full_id_ = sim.counters().id("handle_pml_full");
        flushed_id_ = sim.counters().id("vmx_flush_pml_buffer_entries");
    }
    bool on() const { return sim_ != nullptr; }

    // kvm_mmu_update_cpu_dirty_logging: a memslot starts or stops logging.
    void slot_logging(bool start) { start ? ++logging_ : --logging_; }

    // The CPU logs gfn (while a memslot logs); false when the buffer is full: the write exits first.
    bool log(std::uint32_t vcpu, vm::Gfn gfn) const {
        if (logging_ == 0) return true;
        std::vector<vm::Gfn>& b = buf_[vcpu];
        if (b.size() == kEntries) return false;
        b.push_back(gfn);
        return true;
    }
    bool full(std::uint32_t vcpu) const { return logging_ > 0 && buf_[vcpu].size() >= kEntries; }

    // The Dirty-bit assists of hits, guest time until the scheduler takes it.
    void assist(std::uint32_t vcpu, engine::Time t) const { assist_[vcpu] += t; }
    engine::Time take_assist(std::uint32_t vcpu) { return std::exchange(assist_[vcpu], engine::Time::zero()); }
    // The vCPU's host CPU (vm::thread_cpu), for the assist's cache-model access.
    std::uint32_t cpu(std::uint32_t vcpu) const { return cpu_[vcpu]; }

    // vmx_flush_pml_buffer: per logged GPA `per_entry` plus what mark(gfn) returns
    // (kvm_vcpu_mark_page_dirty: the memslot's bitmap store), then the index reset.
    template <class Mark>
    engine::Time flush(std::uint32_t vcpu, engine::Time per_entry, Mark&& mark) {
        std::vector<vm::Gfn>& b = buf_[vcpu];
        if (b.empty()) return engine::Time::zero();
        engine::Time t;
        for (const vm::Gfn g : b) t += per_entry + mark(g);
        sim_->counters().add(flushed_id_, b.size());
        b.clear();
        return t;
    }
    std::uint32_t vcpus() const { return static_cast<std::uint32_t>(buf_.size()); }
    // EXIT_REASON_PML_FULL (handle_pml_full has nothing left to do once the exit flushed).
    void full_exit() { sim_->counters().add(full_id_); }

private:
    engine::Simulator* sim_ = nullptr;
    mutable std::vector<std::vector<vm::Gfn>> buf_;
    mutable std::vector<engine::Time> assist_;
    std::vector<std::uint32_t> cpu_;
    std::uint32_t logging_ = 0;
    engine::CounterId full_id_ = 0, flushed_id_ = 0;
};

}  // namespace kvmsim::models
