// Host and guest structure shared by models, workloads and the runner. No KVM mechanism here:
// only what a VM is made of (memslots, backing, vCPUs) and what a host costs.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/engine/cache.hpp"
#include "sim/engine/time.hpp"
#include "sim/engine/topology.hpp"

namespace kvmsim::vm {

using engine::Time;
using Gfn = std::uint64_t;  // 4 KiB guest frame number
constexpr std::uint64_t kPageSize = 4096;
// x86 MAXPHYADDR at most: a guest physical address (an EPTP's page address too) is below 2^52.
constexpr unsigned kMaxPhysAddrBits = 52;

enum class Access : std::uint8_t { Read = 0, Write = 1, Exec = 2 };
const char* to_string(Access a);

// Host backing of guest memory, named as the selftests' -s flag.
enum class Backing : std::uint8_t { Anonymous, AnonymousThp, Hugetlb2M, Hugetlb1G };
const char* to_string(Backing b);
bool parse_backing(std::string_view s, Backing& out);

// Mapping levels as the kernel's PG_LEVEL_4K/2M/1G.
enum class PageLevel : std::uint8_t { K4 = 1, M2 = 2, G1 = 3 };
constexpr std::uint64_t pages_per(PageLevel l) {
    return l == PageLevel::K4 ? 1 : l == PageLevel::M2 ? 512 : 512 * 512;
}
// The largest level the host backing allows (THP and hugetlb 2M: 2M; hugetlb 1G: 1G).
PageLevel host_level(Backing b);

struct Memslot {
    std::uint32_t id = 0;
    Gfn base_gfn = 0;
    std::uint64_t npages = 0;
    Backing backing = Backing::Anonymous;
    bool dirty_logging = false;       // KVM_MEM_LOG_DIRTY_PAGES
    // mmap(MAP_POPULATE): the host pages are present (and hugetlb pages populated) before the VM
    // runs, at no simulated cost (nx_huge_pages_perf_test; presets only).
    bool populate = false;
    bool contains(Gfn g) const { return g >= base_gfn && g < base_gfn + npages; }
};

// userfaultfd registrations of guest memory by the VMM (demand_paging_test -u): the host mm
// sends a fault on a registered range that finds no page to the uffd's readers.
struct UffdConfig {
    enum class Mode : std::uint8_t { None, Missing, Minor };  // UFFDIO_REGISTER_MODE_MISSING / _MINOR
    Mode mode = Mode::None;
    // One uffd per range, [first, second) in guest frames (the memslots' hvas mirror them).
    std::vector<std::pair<Gfn, Gfn>> ranges;
    std::uint32_t readers = 1;  // reader threads per uffd (-r)
    // Shared memory (shmem, shared hugetlb): the page cache holds every page (MINOR's prefault
    // through the alias) and a fault finds it there with no PTE.
    bool shared = false;
    // KVM_CAP_EXIT_ON_MISSING (-w): a vCPU's fault on a missing page exits to userspace, which
    // resolves it on the vCPU thread, instead of sleeping in handle_userfault.
    bool exit_on_missing = false;
    bool enabled() const { return mode != Mode::None && !ranges.empty(); }
};

struct VmConfig {
    std::vector<Memslot> memslots;
    std::uint32_t vcpus = 1;
    UffdConfig userfaultfd;
};

// Latency constants of a host, by name. Every value comes from a host profile that cites its
// source or says "estimate"; a model asks for the names it needs (found missing at load time).
class CostProfile {
public:
    void set(std::string name, double value) { values_[std::move(name)] = value; }
    bool has(std::string_view name) const { return values_.find(name) != values_.end(); }
    // Picoseconds for times, plain numbers otherwise. std::out_of_range names a missing cost.
    double number(std::string_view name) const;
    Time time(std::string_view name) const { return Time::ps(static_cast<std::int64_t>(number(name))); }
    const std::map<std::string, double, std::less<>>& values() const { return values_; }

private:
    std::map<std::string, double, std::less<>> values_;
};

struct HostConfig {
    std::string profile;  // profile name, e.g. "x86-server"
    std::uint32_t cpus = 1;
    engine::CacheConfig cache;
    // Sockets, cache-line transfer latencies and memory bandwidth (the profile's "topology");
    // topology.cpus() == cpus.
    engine::Topology topology;
    CostProfile costs;
    // CPU features that change what the kernel does (arm64 "fwb": FEAT_S2FWB), by name; a model
    // lists the ones it reads (ModelInfo::features), found missing at load time.
    std::map<std::string, bool, std::less<>> features;
    // std::out_of_range names a missing feature.
    bool feature(std::string_view name) const;
};

// The CPU of the i-th thread the VMM creates (the vCPUs first, vCPU i being thread i, then its
// own): spread over the sockets as the scheduler places busy threads created one after another on
// an idle machine (select_task_rq_fair on fork and wake-up -> find_idlest_group: the least-loaded
// socket next), so thread i runs on socket i mod S. Past the last CPU it wraps around.
std::uint32_t thread_cpu(std::uint32_t i, const HostConfig& host);

// Who is executing: a vCPU (vcpu >= 0) or a host-side actor (the VMM's ioctl thread, an MMU
// notifier). host_cpu selects the CPU in the cache model.
struct CpuContext {
    std::string name;
    std::uint32_t host_cpu = 0;
    std::int32_t vcpu = -1;
    bool is_vcpu() const { return vcpu >= 0; }
};

}  // namespace kvmsim::vm
