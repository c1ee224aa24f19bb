// Selftest presets: a selftest's own command line expanded into the VM it creates and the
// workload it runs, with its stage names and printed metrics.
//   kvm_page_table_test  -m mode -s backing -b size -v vcpus [-p offset]
//   dirty_log_perf_test  -v vcpus -b size-per-vcpu -s backing -i iterations -f write-fraction (before
//                        v6.2) or -w write-percent (v6.2+, Bernoulli per access)
//                        -g (no manual protect / initially set) -e (vCPUs run while disabling)
//                        -x memslots -o (every vCPU walks the whole region) [-m mode]
//   nx_huge_pages_perf_test  -b size -s backing [-v vcpus]
//   demand_paging_test   -b size-per-vcpu -v vcpus -u MISSING|MINOR -s backing -a -r readers -w
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "sim/workload/workload.hpp"

namespace kvmsim::workload {

// A bad flag or value: arg is the index into the argument list (-1: the preset name itself).
struct PresetError : std::runtime_error {
    PresetError(int arg, const std::string& msg) : std::runtime_error(msg), arg(arg) {}
    int arg;
};

struct PresetInfo {
    std::string name;
    std::string summary;
    std::string usage;
    std::string with_value;  // the letters of its flags that take a value ("vbs...")
    std::string switches;    // and of those that do not ("geo")
};
const std::vector<PresetInfo>& presets();

struct Expanded {
    vm::VmConfig vm;
    Workload workload;
};

// The selftests' guest modes, `-m ID` (enum vm_guest_mode, tools/testing/selftests/kvm/include/
// kvm_util.h as of v5.12, the kernels the published runs used; guest_modes_cmdline takes the
// index). The models simulate 4 KiB guest pages, so only the 4K modes are accepted.
struct GuestMode {
    unsigned id;
    const char* name;  // VM_MODE_...
    bool supported;    // a 4 KiB guest page mode
};
const std::vector<GuestMode>& guest_modes();

// The backings `-s` accepts (vm::Backing names).
const std::vector<std::string>& preset_backings();

// guest_access: guest time per access (from the host profile).
Expanded expand_preset(const std::string& name, const std::vector<std::string>& args, Time guest_access);

// "20G", "1g", "4096" as the selftests' parse_size (binary multiples); false if malformed.
bool parse_selftest_size(const std::string& s, std::uint64_t& out);

}  // namespace kvmsim::workload
