#include "sim/workload/presets.hpp"

#include <cctype>
#include <map>

namespace kvmsim::workload {

namespace {
// Test memory sits at 4 GiB of guest physical space (aligned for any backing).
constexpr Gfn kTestBaseGfn = (4ULL << 30) / vm::kPageSize;

struct Flags {
    std::map<char, std::pair<std::string, int>> values;  // flag -> (value, arg index)
    std::map<char, int> switches;
};

Flags parse_flags(const std::vector<std::string>& args, const std::string& with_value, const std::string& switches,
                  const std::string& usage) {
    Flags f;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        const int idx = static_cast<int>(i);
        if (a.size() != 2 || a[0] != '-')
            throw PresetError(idx, "expected a flag such as -v, got \"" + a + "\"; usage: " + usage);
        const char c = a[1];
        if (with_value.find(c) != std::string::npos) {
            if (i + 1 >= args.size()) throw PresetError(idx, "flag " + a + " needs a value; usage: " + usage);
            f.values[c] = {args[i + 1], idx + 1};
            ++i;
        } else if (switches.find(c) != std::string::npos) {
            f.switches[c] = idx;
        } else {
            throw PresetError(idx, "unknown flag " + a + "; usage: " + usage);
        }
    }
    return f;
}

std::uint64_t size_flag(const Flags& f, char c, std::uint64_t def) {
    auto it = f.values.find(c);
    if (it == f.values.end()) return def;
    std::uint64_t v = 0;
    if (!parse_selftest_size(it->second.first, v) || v == 0)
        throw PresetError(it->second.second, "expected a size such as \"1G\" or \"512M\", got \"" + it->second.first + "\"");
    // Beyond MAXPHYADDR (2^52): the loader refuses such a VM anyway, and the arithmetic stays exact.
    if (v > (std::uint64_t{1} << vm::kMaxPhysAddrBits))
        throw PresetError(it->second.second, "expected a size of at most 4P (2^52 bytes), got \"" + it->second.first + "\"");
    return v;
}

std::uint64_t int_flag(const Flags& f, char c, std::uint64_t def, std::uint64_t min, std::uint64_t max) {
    auto it = f.values.find(c);
    if (it == f.values.end()) return def;
    const std::string& s = it->second.first;
    std::uint64_t v = 0;
    bool ok = !s.empty() && s.size() <= 9;
    for (char ch : s) ok = ok && std::isdigit(static_cast<unsigned char>(ch));
    if (ok) v = std::stoull(s);
    if (!ok || v < min || v > max)
        throw PresetError(it->second.second, "expected an integer from " + std::to_string(min) + " to " +
                                                 std::to_string(max) + ", got \"" + s + "\"");
    return v;
}

vm::Backing backing_flag(const Flags& f, vm::Backing def) {
    auto it = f.values.find('s');
    if (it == f.values.end()) return def;
    vm::Backing b;
    if (!vm::parse_backing(it->second.first, b))
        throw PresetError(it->second.second, "expected one of anonymous, anonymous_thp, anonymous_hugetlb_2mb, "
                                             "anonymous_hugetlb_1gb, got \"" + it->second.first + "\"");
    return b;
}

void mode_flag(const Flags& f) {
    auto it = f.values.find('m');
    if (it == f.values.end()) return;
    const std::string& s = it->second.first;
    std::string ok;
    for (const auto& m : guest_modes())
        if (m.supported) ok += (ok.empty() ? "" : ", ") + std::to_string(m.id) + " (" + m.name + ")";
    for (const auto& m : guest_modes())
        if (s == std::to_string(m.id)) {
            if (m.supported) return;
            throw PresetError(it->second.second, std::string("guest mode ") + s + " (" + m.name +
                                                     ") is not simulated: the models use 4 KiB guest pages; expected one of " + ok);
        }
    throw PresetError(it->second.second, "expected a guest mode ID, one of " + ok + ", got \"" + s + "\"");
}

AccessStream seq(Gfn base, std::uint64_t npages, std::uint64_t stride, Access a, Time gt) {
    AccessStream s;
    s.pattern = AccessStream::Pattern::Sequential;
    s.base = base;
    s.npages = npages;
    s.stride = stride;
    s.access = a;
    s.guest_time = gt;
    return s;
}

// Each preset's flags, as its getopt string has them: with a value, or a switch.
const char* kPttValues = "msbvp";
const char* kPttSwitches = "";
const char* kDlptValues = "vbsifxmw";
const char* kDlptSwitches = "geo";
const char* kNxValues = "bsv";
const char* kNxSwitches = "";
const char* kAtptValues = "mbvsr";
const char* kAtptSwitches = "olp";
const char* kAtptUsage =
    "access_tracking_perf_test [-m mode] [-b vcpu_bytes] [-v vcpus] [-o] [-s mem_type] [-l] [-r memcg_root] [-p]";
const char* kNxUsage = "nx_huge_pages_perf_test [-b size] [-s backing] [-v vcpus]";
const char* kDpValues = "bvusrm";
const char* kDpSwitches = "aw";
const char* kDpUsage =
    "demand_paging_test [-b size-per-vcpu] [-v vcpus] [-u MISSING|MINOR] [-s backing] [-a] [-r readers] [-w] [-m mode]";
const char* kPttUsage = "kvm_page_table_test [-m mode] [-s backing] [-b size] [-v vcpus] [-p offset]";
const char* kDlptUsage =
    "dirty_log_perf_test [-v vcpus] [-b size-per-vcpu] [-s backing] [-i iterations] [-f write-fraction] [-g] [-e] "
    "[-x memslots] [-o] [-m mode] [-w write-percent]";

Expanded kvm_page_table_test(const std::vector<std::string>& args, Time gt) {
    const Flags f = parse_flags(args, kPttValues, kPttSwitches, kPttUsage);
    mode_flag(f);
    const vm::Backing backing = backing_flag(f, vm::Backing::Anonymous);
    const std::uint64_t large_pages = vm::pages_per(vm::host_level(backing));
    const std::uint64_t large = large_pages * vm::kPageSize;
    std::uint64_t bytes = size_flag(f, 'b', 1ULL << 30);
    bytes = (bytes + large - 1) / large * large;  // aligned up, as the test does
    const auto vcpus = static_cast<std::uint32_t>(int_flag(f, 'v', 1, 1, 4096));
    const std::uint64_t npages = bytes / vm::kPageSize;

    Expanded e;
    e.vm.vcpus = vcpus;
    e.vm.memslots.push_back(vm::Memslot{1, kTestBaseGfn, npages, backing, false, false});
    Workload& w = e.workload;
    w.preset = "kvm_page_table_test";
    w.preset_args = args;

    // Every vCPU walks the whole region in every stage; even vCPUs write, odd ones read.
    Step create{Step::Kind::Stage, "KVM_CREATE_MAPPINGS", true, {}, {}, 1, {}};
    Step update{Step::Kind::Stage, "KVM_UPDATE_MAPPINGS", true, {}, {}, 1, {}};
    Step adjust{Step::Kind::Stage, "KVM_ADJUST_MAPPINGS", true, {}, {}, 1, {}};
    for (std::uint32_t v = 0; v < vcpus; ++v) {
        create.streams.push_back(seq(kTestBaseGfn, npages, large_pages, v % 2 == 0 ? Access::Write : Access::Read, gt));
        if (backing == vm::Backing::Anonymous) {
            update.streams.push_back(seq(kTestBaseGfn, npages, 1, Access::Write, gt));
        } else {
            AccessStream s = seq(kTestBaseGfn, npages, 1, Access::Write, gt);
            s.pattern = AccessStream::Pattern::BlockSplit;
            s.block_pages = large_pages;
            update.streams.push_back(s);
        }
        adjust.streams.push_back(seq(kTestBaseGfn, npages, 1, Access::Read, gt));
    }
    Step enable{Step::Kind::Host, "enable dirty logging", false, {}, {}, 1, {}};
    enable.host.op = vm::Operation::DirtyLogEnable;
    enable.host.slots = {1};
    Step disable{Step::Kind::Host, "disable dirty logging", false, {}, {}, 1, {}};
    disable.host.op = vm::Operation::DirtyLogDisable;
    disable.host.slots = {1};
    w.steps = {create, enable, update, disable, adjust};
    return e;
}

Expanded dirty_log_perf_test(const std::vector<std::string>& args, Time gt) {
    const Flags f = parse_flags(args, kDlptValues, kDlptSwitches, kDlptUsage);
    mode_flag(f);
    const auto vcpus = static_cast<std::uint32_t>(int_flag(f, 'v', 1, 1, 4096));
    const vm::Backing backing = backing_flag(f, vm::Backing::Anonymous);
    const std::uint64_t large_pages = vm::pages_per(vm::host_level(backing));
    std::uint64_t per_vcpu = size_flag(f, 'b', 1ULL << 30) / vm::kPageSize;
    if (per_vcpu == 0)
        throw PresetError(f.values.at('b').second, "expected a size per vCPU of at least 4K (one page), got \"" +
                                                       f.values.at('b').first + "\"");
    if (per_vcpu * vcpus > (std::uint64_t{1} << (vm::kMaxPhysAddrBits - 12)))
        throw PresetError(f.values.at('b').second, "expected -b x -v (" + std::to_string(vcpus) +
                                                       " vCPUs) to be at most 4P (2^52 bytes)");
    const auto iterations = static_cast<std::uint32_t>(int_flag(f, 'i', 2, 1, 100000));
    // -f (before v6.2): 1/<fraction of pages to write>, every wr_fract-th access writes. -w (v6.2+,
    // Colton Lewis's random access series, which removed -f): each access writes with probability
    // write_percent / 100 (guest_random; here the stream's Bernoulli draws).
    const std::uint64_t wr_fract = int_flag(f, 'f', 1, 1, 1000000);
    const std::uint64_t write_percent = int_flag(f, 'w', 100, 0, 100);
    if (f.values.count('f') && f.values.count('w'))
        throw PresetError(f.values.at('w').second,
                          "-w (v6.2+) replaced -f (before v6.2): give one of them, not both");
    const auto nslots = static_cast<std::uint32_t>(int_flag(f, 'x', 1, 1, 512));
    const bool manual = !f.switches.count('g');
    const bool run_while_disabling = f.switches.count('e') > 0;
    // -o: "Overlap guest memory accesses instead of partitioning them into a separate region of
    // memory for each vCPU" (memstress_setup_vcpus): every vCPU walks the whole region of
    // vcpus x size-per-vcpu from its start.
    const bool overlap = f.switches.count('o') > 0;

    const std::uint64_t total = per_vcpu * vcpus;
    // Each memslot is aligned up to the backing's page size, as memstress does.
    std::uint64_t slot_pages = (total + nslots - 1) / nslots;
    slot_pages = (slot_pages + large_pages - 1) / large_pages * large_pages;

    Expanded e;
    e.vm.vcpus = vcpus;
    std::vector<std::uint32_t> slot_ids;
    for (std::uint32_t i = 0; i < nslots; ++i) {
        e.vm.memslots.push_back(vm::Memslot{i + 1, kTestBaseGfn + i * slot_pages, slot_pages, backing, false, false});
        slot_ids.push_back(i + 1);
    }
    Workload& w = e.workload;
    w.preset = "dirty_log_perf_test";
    w.preset_args = args;

    // Each vCPU owns its partition (or, with -o, walks all of them); access i writes if
    // i % wr_fract == 0, else reads.
    std::vector<AccessStream> pass;
    for (std::uint32_t v = 0; v < vcpus; ++v) {
        AccessStream s = overlap ? seq(kTestBaseGfn, total, 1, Access::Write, gt)
                                 : seq(kTestBaseGfn + v * per_vcpu, per_vcpu, 1, Access::Write, gt);
        s.write_every = wr_fract;
        if (write_percent != 100) {
            s.write_every = 0;
            s.mix = true;
            s.write_fraction = static_cast<double>(write_percent) / 100.0;
        }
        pass.push_back(s);
    }
    w.steps.push_back(Step{Step::Kind::Stage, "Populate memory", true, pass, {}, 1, {}});
    Step enable{Step::Kind::Host, "Enabling dirty logging", true, {}, {}, 1, {}};
    enable.host.op = vm::Operation::DirtyLogEnable;
    enable.host.slots = slot_ids;
    enable.host.dirty.manual_protect_initially_set = manual;
    w.steps.push_back(enable);
    for (std::uint32_t i = 1; i <= iterations; ++i) {
        const std::string it = "Iteration " + std::to_string(i);
        w.steps.push_back(Step{Step::Kind::Stage, it + " dirty memory", true, pass, {}, 1, {}});
        Step get{Step::Kind::Host, it + " get dirty log", true, {}, {}, 1, {}};
        get.host.op = vm::Operation::DirtyLogGet;
        get.host.slots = slot_ids;
        get.host.dirty.manual_protect_initially_set = manual;
        w.steps.push_back(get);
        if (manual) {
            Step clear{Step::Kind::Host, it + " clear dirty log", true, {}, {}, 1, {}};
            clear.host.op = vm::Operation::DirtyLogClear;
            clear.host.slots = slot_ids;
            w.steps.push_back(clear);
        }
    }
    Step disable{Step::Kind::Host, "Disabling dirty logging", true, {}, {}, 1, {}};
    disable.host.op = vm::Operation::DirtyLogDisable;
    disable.host.slots = slot_ids;
    if (run_while_disabling) disable.streams = pass;
    w.steps.push_back(disable);
    return e;
}
// nx_huge_pages_perf_test (James Houghton, "[PATCH v5 6/7] KVM: selftests: Add an NX huge pages
// jitter test", 2025-07-07): the guest walks its memory 4K page by 4K page; in every other 1 GiB
// region (page & (1 << 18) clear) it writes a RET to the page and executes it, in the others it
// only writes, timing each write (rdtsc); it reports the largest: "Max fault latency: N cycles".
// The memory is MAP_POPULATE'd. The test has one vCPU; -v (an extension) gives each vCPU its own
// region of -b bytes, walked in lockstep region by region. Each 1 GiB region is a stage: "execute
// region i" or "write region i"; the printed maximum is over the write stages' fault latencies.
Expanded nx_huge_pages_perf_test(const std::vector<std::string>& args, Time gt) {
    const Flags f = parse_flags(args, kNxValues, kNxSwitches, kNxUsage);
    const vm::Backing backing = backing_flag(f, vm::Backing::Anonymous);
    const std::uint64_t bytes = size_flag(f, 'b', 2ULL << 30);
    if (bytes <= (1ULL << 30))
        throw PresetError(f.values.at('b').second, "expected more than 1G (\"Must use more than 1GiB of memory.\"), got \"" +
                                                       f.values.at('b').first + "\"");
    const auto vcpus = static_cast<std::uint32_t>(int_flag(f, 'v', 1, 1, 4096));
    const std::uint64_t large_pages = vm::pages_per(vm::host_level(backing));
    std::uint64_t per_vcpu = bytes / vm::kPageSize;
    per_vcpu = (per_vcpu + large_pages - 1) / large_pages * large_pages;  // the slot, aligned as vm_mem_add needs
    if (per_vcpu * vcpus > (std::uint64_t{1} << (vm::kMaxPhysAddrBits - 12)))
        throw PresetError(f.values.at('b').second, "expected -b x -v to be at most 4P (2^52 bytes)");

    Expanded e;
    e.vm.vcpus = vcpus;
    e.vm.memslots.push_back(vm::Memslot{1, kTestBaseGfn, per_vcpu * vcpus, backing, false, true});  // MAP_POPULATE
    Workload& w = e.workload;
    w.preset = "nx_huge_pages_perf_test";
    w.preset_args = args;
    constexpr std::uint64_t kRegion = 1ULL << 18;  // 4K pages per 1 GiB
    const std::uint64_t guest_pages = bytes / vm::kPageSize;
    for (std::uint64_t r = 0; r * kRegion < guest_pages; ++r) {
        const std::uint64_t n = std::min(kRegion, guest_pages - r * kRegion);
        const bool exec = r % 2 == 0;
        Step st{Step::Kind::Stage, (exec ? "execute region " : "write region ") + std::to_string(r), false, {}, {}, 1, {}};
        for (std::uint32_t v = 0; v < vcpus; ++v) {
            AccessStream s = seq(kTestBaseGfn + v * per_vcpu + r * kRegion, n, 1, Access::Write, gt);
            if (exec) s.pattern = AccessStream::Pattern::WriteExec;
            st.streams.push_back(s);
        }
        w.steps.push_back(std::move(st));
    }
    return e;
}

// demand_paging_test (tools/testing/selftests/kvm/demand_paging_test.c, v6.8: -a and -r from Anish
// Moorthy's "Allow many vCPUs and reader threads per UFFD"; -w from his unmerged series "Improve
// scalability of KVM + userfaultfd live migration via annotated memory faults", v3 2023-04 through
// v6 2023-11, KVM_CAP_EXIT_ON_MISSING / KVM_MEM_USERFAULT_ON_MISSING). memstress gives each vCPU
// its own -b bytes of one memslot; each vCPU writes every 4 KiB guest page of its part once
// (write_percent 100). With -u the memory is registered with one uffd per vCPU's part (-a: one
// for all of it), each read by -r threads; MINOR prefaults the page cache through the alias
// first. The vCPUs' run is the stage "Demand paging"; the test prints the per-vCPU and overall
// demand paging rates over it. -s also takes shmem and shared_hugetlb (the shared backings MINOR
// needs); they are simulated as 4 KiB / hugetlb 2 MiB slots whose page cache holds every page.
Expanded demand_paging_test(const std::vector<std::string>& args, Time gt) {
    const Flags f = parse_flags(args, kDpValues, kDpSwitches, kDpUsage);
    mode_flag(f);
    const auto vcpus = static_cast<std::uint32_t>(int_flag(f, 'v', 1, 1, 4096));
    vm::Backing backing = vm::Backing::Anonymous;
    bool shared = false;
    if (auto it = f.values.find('s'); it != f.values.end()) {
        const std::string& b = it->second.first;
        if (b == "shmem") {
            shared = true;
        } else if (b == "shared_hugetlb") {
            shared = true;
            backing = vm::Backing::Hugetlb2M;
        } else {
            backing = backing_flag(f, backing);
        }
    }
    vm::UffdConfig::Mode mode = vm::UffdConfig::Mode::None;
    if (auto it = f.values.find('u'); it != f.values.end()) {
        if (it->second.first == "MISSING")
            mode = vm::UffdConfig::Mode::Missing;
        else if (it->second.first == "MINOR")
            mode = vm::UffdConfig::Mode::Minor;
        else
            throw PresetError(it->second.second, "expected MISSING or MINOR (\"UFFD mode must be 'MISSING' or 'MINOR'.\"), got \"" +
                                                     it->second.first + "\"");
        if (mode == vm::UffdConfig::Mode::Minor && !shared)
            throw PresetError(it->second.second, "-u MINOR needs shared memory (\"userfaultfd MINOR mode requires shared "
                                                 "memory; pick a different -s\"): expected -s shmem or -s shared_hugetlb");
        if (backing == vm::Backing::AnonymousThp)
            throw PresetError(f.values.at('s').second, "-s anonymous_thp with -u is not simulated (UFFDIO_COPY of a "
                                                       "THP-sized page); expected anonymous, shmem or a hugetlb backing");
    }
    const bool uffd = mode != vm::UffdConfig::Mode::None;
    if (auto it = f.values.find('r'); it != f.values.end() && !uffd)
        throw PresetError(it->second.second, "-r (reader threads per uffd) acts only with -u");
    if (auto it = f.switches.find('a'); it != f.switches.end() && !uffd)
        throw PresetError(it->second, "-a (one uffd for all of guest memory) acts only with -u");
    if (auto it = f.switches.find('w'); it != f.switches.end() && !uffd)
        throw PresetError(it->second, "-w (memory fault exits) acts only with -u");
    const auto readers = static_cast<std::uint32_t>(int_flag(f, 'r', 1, 1, 1024));
    const std::uint64_t large_pages = vm::pages_per(vm::host_level(backing));
    const std::uint64_t per_vcpu = size_flag(f, 'b', 1ULL << 30) / vm::kPageSize;
    if (per_vcpu == 0 || per_vcpu % large_pages)
        throw PresetError(f.values.at('b').second, "expected a size per vCPU that is a multiple of the backing's page (" +
                                                       std::to_string(large_pages * vm::kPageSize) + " bytes), got \"" +
                                                       f.values.at('b').first + "\"");
    if (per_vcpu * vcpus > (std::uint64_t{1} << (vm::kMaxPhysAddrBits - 12)))
        throw PresetError(f.values.at('b').second, "expected -b x -v to be at most 4P (2^52 bytes)");

    Expanded e;
    e.vm.vcpus = vcpus;
    const std::uint64_t total = per_vcpu * vcpus;
    e.vm.memslots.push_back(vm::Memslot{1, kTestBaseGfn, total, backing, false, false});
    vm::UffdConfig& u = e.vm.userfaultfd;
    u.mode = mode;
    u.shared = shared;
    if (uffd) {
        u.readers = readers;
        u.exit_on_missing = f.switches.count('w') > 0;
        const std::uint32_t n = f.switches.count('a') ? 1 : vcpus;
        for (std::uint32_t i = 0; i < n; ++i)
            u.ranges.emplace_back(kTestBaseGfn + i * (total / n), kTestBaseGfn + (i + 1) * (total / n));
    }
    Workload& w = e.workload;
    w.preset = "demand_paging_test";
    w.preset_args = args;
    Step run{Step::Kind::Stage, "Demand paging", true, {}, {}, 1, {}};
    for (std::uint32_t v = 0; v < vcpus; ++v) run.streams.push_back(seq(kTestBaseGfn + v * per_vcpu, per_vcpu, 1, Access::Write, gt));
    w.steps.push_back(std::move(run));
    return e;
}

// access_tracking_perf_test with James Houghton's multi-gen LRU option ("[PATCH v4 7/7] KVM:
// selftests: Add multi-gen LRU aging to access_tracking_perf_test", 2024-05-29; getopt
// "hm:b:v:os:lr:p"). Each vCPU touches its own -b bytes (or, with -o, all of them). Without -l,
// "Mark memory idle" marks every page idle through /sys/kernel/mm/page_idle/bitmap on the vCPU
// threads, each its own region (vCPU 0 alone with -o): one clear_young per page. With -l, each
// "lru_gen: Aging" is one aging pass of the test's memcg (lru_gen_do_aging: the MGLRU page-table
// walk, one clear_young per young PTE; the series' v6 single-notifier form). -p (needs -l): aging
// passes run back to back while the vCPUs populate memory (run_benchmark); the phase lasts until
// the last pass started before the vCPUs were done has finished ("lru_gen avg pass duration"'s
// total), the passes are the counter aging_passes. -r (the memcg root) changes nothing here.
Expanded access_tracking_perf_test(const std::vector<std::string>& args, Time gt) {
    const Flags f = parse_flags(args, kAtptValues, kAtptSwitches, kAtptUsage);
    mode_flag(f);
    const vm::Backing backing = backing_flag(f, vm::Backing::Anonymous);
    const auto vcpus = static_cast<std::uint32_t>(int_flag(f, 'v', 1, 1, 4096));
    const std::uint64_t per_vcpu = size_flag(f, 'b', 1ULL << 30) / vm::kPageSize;
    if (per_vcpu == 0)
        throw PresetError(f.values.at('b').second, "expected a size per vCPU of at least 4K (one page), got \"" +
                                                       f.values.at('b').first + "\"");
    if (per_vcpu * vcpus > (std::uint64_t{1} << (vm::kMaxPhysAddrBits - 12)))
        throw PresetError(f.values.at('b').second, "expected -b x -v to be at most 4P (2^52 bytes)");
    const bool overlap = f.switches.count('o') > 0;
    const bool lru_gen = f.switches.count('l') > 0;
    const bool bench = f.switches.count('p') > 0;
    if (bench && !lru_gen)
        throw PresetError(f.switches.at('p'), "-p specified without -l (the benchmark ages with the multi-gen LRU)");
    const std::uint64_t large_pages = vm::pages_per(vm::host_level(backing));
    const std::uint64_t total = per_vcpu * vcpus;
    const std::uint64_t slot_pages = (total + large_pages - 1) / large_pages * large_pages;

    Expanded e;
    e.vm.vcpus = vcpus;
    e.vm.memslots.push_back(vm::Memslot{1, kTestBaseGfn, slot_pages, backing, false, false});
    Workload& w = e.workload;
    w.preset = "access_tracking_perf_test";
    w.preset_args = args;

    auto pass = [&](Access a) {
        std::vector<AccessStream> v;
        for (std::uint32_t i = 0; i < vcpus; ++i)
            v.push_back(overlap ? seq(kTestBaseGfn, total, 1, a, gt) : seq(kTestBaseGfn + i * per_vcpu, per_vcpu, 1, a, gt));
        return v;
    };
    auto aging = [&](const std::string& name) {
        Step st{Step::Kind::Host, name, true, {}, {}, 1, {}};
        st.host.op = vm::Operation::ClearYoung;
        st.host.start = kTestBaseGfn;
        st.host.end = kTestBaseGfn + total;
        st.host.age_via = vm::AgeCaller::LruGen;
        return st;
    };
    auto mark_idle = [&]() {
        Step st{Step::Kind::Host, "Mark memory idle", true, {}, {}, 1, {}};
        st.host.op = vm::Operation::ClearYoung;
        st.host.start = kTestBaseGfn;
        st.host.end = kTestBaseGfn + total;
        st.host.age_via = vm::AgeCaller::PageIdle;
        if (overlap) {
            st.host.vcpus = {0};
        } else {
            for (std::uint32_t i = 0; i < vcpus; ++i) st.host.vcpus.push_back(i);
        }
        return st;
    };
    const auto write = pass(Access::Write), read = pass(Access::Read);
    if (bench) {
        Step st = aging("lru_gen: Aging while populating memory");
        st.streams = write;
        st.repeat.until_vcpus_done = true;
        w.steps.push_back(st);
        return e;
    }
    w.steps.push_back(Step{Step::Kind::Stage, "Populating memory", true, write, {}, 1, {}});
    w.steps.push_back(Step{Step::Kind::Stage, "Writing to populated memory", true, write, {}, 1, {}});
    w.steps.push_back(Step{Step::Kind::Stage, "Reading from populated memory", true, read, {}, 1, {}});
    if (lru_gen) {
        w.steps.push_back(aging("lru_gen: Aging"));  // the initial page-table scan
        w.steps.push_back(aging("lru_gen: Aging"));
    } else {
        w.steps.push_back(mark_idle());
    }
    w.steps.push_back(Step{Step::Kind::Stage, "Writing to idle memory", true, write, {}, 1, {}});
    if (lru_gen) {
        w.steps.push_back(aging("lru_gen: Aging"));
        w.steps.push_back(aging("lru_gen: Aging"));
    } else {
        w.steps.push_back(mark_idle());
    }
    w.steps.push_back(Step{Step::Kind::Stage, "Reading from idle memory", true, read, {}, 1, {}});
    if (lru_gen) w.steps.push_back(aging("lru_gen: Aging"));
    return e;
}
}  // namespace

const std::vector<GuestMode>& guest_modes() {
    static const std::vector<GuestMode> list = {
        {0, "VM_MODE_P52V48_4K", true},  {1, "VM_MODE_P52V48_64K", false}, {2, "VM_MODE_P48V48_4K", true},
        {3, "VM_MODE_P48V48_64K", false}, {4, "VM_MODE_P40V48_4K", true},  {5, "VM_MODE_P40V48_64K", false},
        {6, "VM_MODE_PXXV48_4K", true},  {7, "VM_MODE_P47V64_4K", true},
    };
    return list;
}

const std::vector<std::string>& preset_backings() {
    static const std::vector<std::string> list = {
        vm::to_string(vm::Backing::Anonymous), vm::to_string(vm::Backing::AnonymousThp),
        vm::to_string(vm::Backing::Hugetlb2M), vm::to_string(vm::Backing::Hugetlb1G),
        "shmem", "shared_hugetlb"};  // demand_paging_test only
    return list;
}

const std::vector<PresetInfo>& presets() {
    static const std::vector<PresetInfo> list = {
        {"access_tracking_perf_test",
         "access tracking: populate, write/read, age (page_idle or -l lru_gen), write/read idle memory; -p ages "
         "while populating",
         kAtptUsage, kAtptValues, kAtptSwitches},
        {"dirty_log_perf_test", "dirty logging: populate, enable, dirty/get/clear per iteration, disable", kDlptUsage,
         kDlptValues, kDlptSwitches},
        {"nx_huge_pages_perf_test",
         "NX huge page recovery jitter: per 1G region write+execute or timed writes, max write fault latency", kNxUsage,
         kNxValues, kNxSwitches},
        {"demand_paging_test",
         "demand paging: each vCPU writes its memory once, faults resolved through userfaultfd (-u) by reader threads",
         kDpUsage, kDpValues, kDpSwitches},
        {"kvm_page_table_test", "create, update (dirty logging on) and adjust mappings, every vCPU over the whole region",
         kPttUsage, kPttValues, kPttSwitches},
    };
    return list;
}

bool parse_selftest_size(const std::string& s, std::uint64_t& out) {
    std::size_t i = 0;
    std::uint64_t v = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        if (v > (~0ULL) / 10) return false;
        v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
        ++i;
    }
    if (i == 0) return false;
    unsigned shift = 0;
    if (i < s.size()) {
        switch (std::tolower(static_cast<unsigned char>(s[i]))) {
            case 'b': shift = 0; break;
            case 'k': shift = 10; break;
            case 'm': shift = 20; break;
            case 'g': shift = 30; break;
            case 't': shift = 40; break;
            default: return false;
        }
        ++i;
    }
    if (i != s.size()) return false;
    if (shift && v > ((~0ULL) >> shift)) return false;
    out = v << shift;
    return true;
}

Expanded expand_preset(const std::string& name, const std::vector<std::string>& args, Time guest_access) {
    if (name == "kvm_page_table_test") return kvm_page_table_test(args, guest_access);
    if (name == "dirty_log_perf_test") return dirty_log_perf_test(args, guest_access);
    if (name == "nx_huge_pages_perf_test") return nx_huge_pages_perf_test(args, guest_access);
    if (name == "demand_paging_test") return demand_paging_test(args, guest_access);
    if (name == "access_tracking_perf_test") return access_tracking_perf_test(args, guest_access);
    throw PresetError(-1, "unknown preset \"" + name + "\"");
}

}  // namespace kvmsim::workload
