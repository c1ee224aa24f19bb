#include <catch2/catch.hpp>
#include <string>

#include "sim/trace/import.hpp"

using namespace kvmsim;
using Catch::Matchers::Contains;

namespace {
// SYNTHETIC lines in the kernel's v6.x formats (arch/x86/kvm/trace.h, mmu/mmutrace.h).
const std::string kExit0 =
    "  CPU 0/KVM-2402 [003] d..1. 1000.000010: kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0xffffffff81000000 info1 "
    "0x0000000000000182 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n";
const std::string kFault0 =
    "  CPU 0/KVM-2402 [003] d..1. 1000.000011: kvm_page_fault: vcpu 0 rip 0xffffffff81000000 address "
    "0x0000000100003123 error_code 0x182\n";
const std::string kEntry0 = "  CPU 0/KVM-2402 [003] d..1. 1000.000014: kvm_entry: vcpu 0, rip 0xffffffff81000000\n";

std::string error_of(const std::string& text) {
    try {
        trace::import_trace(text, "t.txt", {});
    } catch (const trace::ImportError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("import-trace: a fault's page, access, latency and guest gaps", "[trace]") {
    // Guest from 1000.000000 (the first timestamp is the exit at 10us: guest time before it is
    // the trace's start), exit at 10us, entry at 14us, an HLT exit from 20us to 30us, a read
    // fault at 35us (PFERR-less EPT qualification 0x181) back at 37us, last event at 40us.
    const std::string text =
        "cpus=4\n" + kExit0 + kFault0 + kEntry0 +
        "  CPU 0/KVM-2402 [003] d..1. 1000.000020: kvm_exit: vcpu 0 reason HLT rip 0x0 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0\n"
        "  CPU 0/KVM-2402 [003] d..1. 1000.000030: kvm_entry: vcpu 0, rip 0x0\n"
        "  CPU 0/KVM-2402 [003] d..1. 1000.000035: kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0x0 info1 0x181 info2 0x0 intr_info 0x0 error_code 0x0\n"
        "  CPU 0/KVM-2402 [003] d..1. 1000.000035: kvm_page_fault: vcpu 0 rip 0x0 address 0x200000 error_code 0x181\n"
        "  CPU 0/KVM-2402 [003] d..1. 1000.000037: kvm_entry: vcpu 0, rip 0x0\n"
        "  CPU 0/KVM-2402 [003] d..1. 1000.000040: kvm_pio: pio_read at 0x71 size 1 count 1 val 0x0\n";
    const auto r = trace::import_trace(text, "dir/rec.txt", {});
    const auto& sc = r.scenario;
    CHECK(sc["name"] == "rec");
    CHECK(sc["mmu"]["model"] == "x86_tdp");
    CHECK(sc["host"]["profile"] == "x86-server");
    CHECK(sc["vm"]["vcpus"] == 1);
    const auto& s = sc["workload"]["phases"][0]["streams"][0];
    CHECK(s["start_delay"] == "0ns");  // the trace starts at the first fault's exit
    // First fault: page 0x100003000, write (qualification bit 1); gap: guest 14->20 and 30->35.
    CHECK(s["accesses"][0] == nlohmann::ordered_json::array({0x100003000ULL, "write", "11000ns"}));
    // Second: page 0x200000, read; the guest time after it: 37us -> 40us (the thread's last event
    // is the skipped kvm_pio, which still marks the thread's time).
    CHECK(s["accesses"][1] == nlohmann::ordered_json::array({0x200000ULL, "read", "3000ns"}));
    const auto& w = sc["recorded"]["whole"];
    CHECK(w["faults"]["total"] == 2);
    CHECK(w["faults"]["write"] == 1);
    CHECK(w["faults"]["not_present"] == 2);
    CHECK(w["latency_ns"]["count"] == 2);
    CHECK(w["latency_ns"]["p50"] == 2000);  // nearest rank of {2000, 4000}
    CHECK(w["latency_ns"]["p99"] == 4000);
    CHECK(w["exits"]["HLT"] == 1);
    CHECK(r.summary.skipped.at("event kvm_pio") == 1);
    CHECK(r.summary.format == "trace-cmd");
    // Memslots cover the pages, 2M-aligned: 0x0-0x200000.. merged with 4G? No: 4G is more than
    // 1G away, so two memslots.
    CHECK(sc["vm"]["memslots"].size() == 2);
    CHECK(sc["vm"]["memslots"][0]["base"] == 0x200000ULL);
    CHECK(sc["vm"]["memslots"][1]["base"] == 0x100000000ULL);
    CHECK(sc["vm"]["memslots"][1]["size"] == "2M");
}

TEST_CASE("import-trace: the error code's meaning follows the exit", "[trace]") {
    // After an NPF (SVM) the error code is PFERR_*: 0x11 = present | fetch: an exec protection fault.
    const std::string text =
        "  qemu-7 [001] .... 5.000001: kvm_exit: vcpu 2 reason npf rip 0x0 info1 0x11 info2 0x0 intr_info 0x0 error_code 0x0\n"
        "  qemu-7 [001] .... 5.000002: kvm_page_fault: vcpu 2 rip 0x0 address 0x7000 error_code 0x11\n"
        "  qemu-7 [001] .... 5.000003: fast_page_fault: vcpu 2 gva 7000 error_code F sptep 0 old 0x0 new 0 spurious 1 fixed 0\n"
        "  qemu-7 [001] .... 5.000004: kvm_entry: vcpu 2, rip 0x0\n";
    const auto r = trace::import_trace(text, "npf.txt", {});
    const auto& w = r.scenario["recorded"]["whole"];
    CHECK(w["faults"]["exec"] == 1);
    CHECK(w["faults"]["protection"] == 1);
    CHECK(w["faults"]["spurious"] == 1);
    CHECK(r.scenario["recorded"]["vcpu_ids"] == nlohmann::ordered_json::array({2}));
}

TEST_CASE("import-trace: an NPF exit without kvm_page_fault is a fault from kvm_exit's info1 and info2", "[trace]") {
    // SYNTHETIC: SVM's kvm_exit prints exit_info_1 (the NPF error code) and exit_info_2 (the GPA).
    const std::string text =
        "  qemu-7 [001] .... 5.000001: kvm_exit: vcpu 0 reason npf rip 0x0 info1 0x6 info2 0x12345678 intr_info 0x0 error_code 0x0\n"
        "  qemu-7 [001] .... 5.000004: kvm_entry: vcpu 0, rip 0x0\n"
        "  qemu-7 [001] .... 5.000010: kvm_exit: vcpu 0 reason npf rip 0x0 info1 0x7 info2 0x9000 intr_info 0x0 error_code 0x0\n"
        "  qemu-7 [001] .... 5.000011: kvm_page_fault: vcpu 0 rip 0x0 address 0x9000 error_code 0x7\n"
        "  qemu-7 [001] .... 5.000013: kvm_entry: vcpu 0, rip 0x0\n";
    const auto r = trace::import_trace(text, "npf.txt", {});
    const auto& acc = r.scenario["workload"]["phases"][0]["streams"][0]["accesses"];
    REQUIRE(acc.size() == 2);  // the second exit's kvm_page_fault is the same fault, not another
    CHECK(acc[0][0] == 0x12345000ULL);
    CHECK(acc[0][1] == "write");  // PFERR_WRITE_MASK
    CHECK(acc[1][0] == 0x9000ULL);
    const auto& w = r.scenario["recorded"]["whole"];
    CHECK(w["faults"]["not_present"] == 1);
    CHECK(w["faults"]["protection"] == 1);
    CHECK(w["latency_ns"]["p50"] == 3000);
}

TEST_CASE("import-trace: arm64 kvm_guest_fault's ESR", "[trace]") {
    const std::string text =
        "  qemu-9 [008] ..... 7.000001: kvm_exit: TRAP: HSR_EC: 0x0024 (DABT_LOW), PC: 0xffff800008123450\n"
        "  qemu-9 [008] ..... 7.000001: kvm_guest_fault: ipa 0x41e83000, hsr 0x93c00047, hxfar 0x0, pc 0x0\n"
        "  qemu-9 [008] ..... 7.000005: kvm_entry: PC: 0xffff800008123450\n";
    const auto r = trace::import_trace(text, "a.txt", {});
    CHECK(r.summary.arch == "arm64");
    CHECK(r.scenario["mmu"]["model"] == "arm64_stage2");
    CHECK(r.scenario["host"]["profile"] == "kunpeng-920");
    CHECK(r.scenario["workload"]["phases"][0]["streams"][0]["accesses"][0][1] == "write");  // WnR
    CHECK(r.scenario["recorded"]["whole"]["latency_ns"]["p50"] == 4000);
}

TEST_CASE("import-trace: perf script lines and windows", "[trace]") {
    std::string text;
    for (int i = 0; i < 4; ++i) {
        const std::string t = std::to_string(10 + i * 10);  // us
        text += "CPU 0/KVM 2402 [003] 1.0000" + t + "000: kvm:kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0x0 info1 0x181 info2 0x0 intr_info 0x0 error_code 0x0\n";
        text += "CPU 0/KVM 2402 [003] 1.0000" + t + "500: kvm:kvm_page_fault: vcpu 0 rip 0x0 address 0x" + std::to_string(i + 1) + "000 error_code 0x181\n";
        text += "CPU 0/KVM 2402 [003] 1.0000" + t + "900: kvm:kvm_entry: vcpu 0, rip 0x0\n";
    }
    trace::ImportOptions o;
    o.window_ns = 20'000;
    const auto r = trace::import_trace(text, "p.txt", o);
    CHECK(r.summary.format == "perf");
    const auto& phases = r.scenario["workload"]["phases"];
    REQUIRE(phases.size() == 2);
    CHECK(phases[0]["name"] == "window 0");
    CHECK(phases[0]["streams"][0]["accesses"].size() == 2);
    CHECK(r.scenario["recorded"]["phases"][1]["latency_ns"]["p99"] == 900);
}

TEST_CASE("import-trace: located errors", "[trace]") {
    CHECK_THAT(error_of(kExit0 + "garbage\n" + kEntry0), Contains("t.txt:2: expected a trace line"));
    CHECK_THAT(error_of(kEntry0 + kExit0), Contains("t.txt:2: timestamp 1000.000010000s is before line 1's"));
    CHECK_THAT(error_of(kExit0 + "  CPU 0/KVM-2402 [003] d..1. 1000.000011: kvm_page_fault: vcpu 0 rip 0x0 address 0x1000\n"),
               Contains("t.txt:2: kvm_page_fault: expected a field \"error_code\""));
    CHECK_THAT(error_of(kEntry0), Contains("t.txt: no guest page faults"));
    // A truncated last line is skipped and counted.
    const auto r = trace::import_trace(kExit0 + kFault0 + kEntry0 + kExit0.substr(0, 50), "t.txt", {});
    CHECK(r.summary.skipped.at("truncated last line") == 1);
    // Deterministic: the same text gives the same scenario.
    CHECK(trace::import_trace(kExit0 + kFault0 + kEntry0, "t.txt", {}).scenario.dump() ==
          trace::import_trace(kExit0 + kFault0 + kEntry0, "t.txt", {}).scenario.dump());
}
