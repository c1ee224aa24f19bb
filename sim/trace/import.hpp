// kvmsim import-trace: a recorded KVM trace (the text of `trace-cmd report` or `perf script`) to a
// scenario whose workload replays the guest's page faults.
//
// Events read (TP_printk formats of Linux v6.x; older formats noted):
//   kvm_exit          x86 "vcpu N reason R rip ..." (older: "reason R rip ... info ...");
//                     arm64 "TRAP: HSR_EC: 0x0024 (DABT_LOW), PC: ..."   (arch/x86/kvm/trace.h,
//                     arch/arm64/kvm/trace_arm.h)
//   kvm_entry         x86 "vcpu N, rip 0x..." (older "vcpu N"); arm64 "PC: 0x..."
//   kvm_page_fault    "vcpu N rip 0x... address 0x... error_code 0x..." (older "address A
//                     error_code E", hex without 0x). After an EPT_VIOLATION exit the error
//                     code is VMX's exit qualification (__vmx_handle_ept_violation); otherwise
//                     the #PF/NPF error code (PFERR_*: npf_interception, kvm_handle_page_fault)
//   kvm_guest_fault   arm64 "ipa 0x..., hsr 0x..., hxfar 0x..., pc 0x..." (ESR_ELx: EC, WnR, FSC)
//   kvmmmu:           fast_page_fault (spurious, fixed), kvm_mmu_spte_requested (level),
//                     kvm_mmu_set_spte, kvm_mmu_prepare_zap_page, kvm_tdp_mmu_spte_changed,
//                     handle_mmio_page_fault (arch/x86/kvm/mmu/mmutrace.h): counted; an exit
//                     with handle_mmio_page_fault is MMIO, not a guest memory fault
// Other events are skipped and counted by name.
//
// Per vCPU thread: guest time runs from a kvm_entry to the next kvm_exit; a fault's latency is its
// exit's kvm_exit to kvm_entry. The workload is one phase per time window (one, "trace", unless
// ImportOptions::window), each an explicit stream per vCPU: the faulting pages in order, each
// followed by the guest time the trace shows before the next fault (time in KVM left out).
//
// Errors (ImportError, "FILE:LINE: what"): a line that is not a trace line (but a truncated last
// line, which is skipped and counted), a known event whose fields are missing or malformed,
// timestamps going back, x86 and arm64 events mixed, one vCPU id on two threads (two VMs in one
// trace), a trace without guest page faults. Deterministic: the scenario depends only on the
// text and the options.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kvmsim::trace {

// what(): "FILE:LINE: MESSAGE" ("FILE: MESSAGE" when no line is to blame).
struct ImportError : std::runtime_error {
    ImportError(std::string file, std::size_t line, std::string message)
        : std::runtime_error(file + (line ? ":" + std::to_string(line) : std::string()) + ": " + message),
          file_(std::move(file)), line_(line), message_(std::move(message)) {}
    const std::string& file() const noexcept { return file_; }
    std::size_t line() const noexcept { return line_; }
    const std::string& message() const noexcept { return message_; }

private:
    std::string file_;
    std::size_t line_;
    std::string message_;
};

struct ImportOptions {
    std::string name;            // the scenario's name ("" : from the file's name)
    std::string model;           // "" : x86_tdp for an x86 trace, arm64_stage2 for arm64
    std::string host;            // "" : x86-server for x86, kunpeng-920 for arm64
    std::string backing = "anonymous";
    std::uint64_t window_ns = 0;  // > 0: one phase per window of the trace's time
};

struct ImportSummary {
    std::string format;  // "trace-cmd" or "perf"
    std::string arch;    // "x86" or "arm64"
    std::uint64_t lines = 0, events = 0, faults = 0, vcpus = 0, phases = 0;
    std::map<std::string, std::uint64_t> skipped;  // why -> lines
};

struct ImportResult {
    nlohmann::ordered_json scenario;
    ImportSummary summary;
};

// `file` names the trace in errors and in the scenario's recorded block.
ImportResult import_trace(std::string_view text, const std::string& file, const ImportOptions& opts);

}  // namespace kvmsim::trace
