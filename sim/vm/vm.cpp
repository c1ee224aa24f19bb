#include <algorithm>

#include "sim/vm/mmu_model.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::vm {

const char* to_string(Access a) {
    switch (a) {
        case Access::Read: return "read";
        case Access::Write: return "write";
        case Access::Exec: return "exec";
    }
    return "?";
}

const char* to_string(Backing b) {
    switch (b) {
        case Backing::Anonymous: return "anonymous";
        case Backing::AnonymousThp: return "anonymous_thp";
        case Backing::Hugetlb2M: return "anonymous_hugetlb_2mb";
        case Backing::Hugetlb1G: return "anonymous_hugetlb_1gb";
    }
    return "?";
}

bool parse_backing(std::string_view s, Backing& out) {
    for (Backing b : {Backing::Anonymous, Backing::AnonymousThp, Backing::Hugetlb2M, Backing::Hugetlb1G}) {
        if (s == to_string(b)) {
            out = b;
            return true;
        }
    }
    return false;
}

PageLevel host_level(Backing b) {
    switch (b) {
        case Backing::Anonymous: return PageLevel::K4;
        case Backing::AnonymousThp:
        case Backing::Hugetlb2M: return PageLevel::M2;
        case Backing::Hugetlb1G: return PageLevel::G1;
    }
    return PageLevel::K4;
}

std::uint32_t thread_cpu(std::uint32_t i, const HostConfig& host) {
    const std::uint32_t cpus = host.cpus ? host.cpus : 1;
    const engine::Topology& t = host.topology;
    const std::uint32_t j = i % cpus;
    if (t.sockets <= 1 || t.cpus() != cpus) return j;
    return (j % t.sockets) * t.cpus_per_socket + (j / t.sockets) % t.cpus_per_socket;
}

bool HostConfig::feature(std::string_view name) const {
    auto it = features.find(name);
    if (it == features.end()) throw std::out_of_range("host profile has no feature '" + std::string(name) + "'");
    return it->second;
}

double CostProfile::number(std::string_view name) const {
    auto it = values_.find(name);
    if (it == values_.end()) throw std::out_of_range("host profile has no cost '" + std::string(name) + "'");
    return it->second;
}

std::string to_string(const KnobValue& v) {
    if (const bool* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
    if (const std::int64_t* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
    return std::get<std::string>(v);
}

const char* to_string(Operation op) {
    switch (op) {
        case Operation::DirtyLogEnable: return "dirty_log_enable";
        case Operation::DirtyLogGet: return "dirty_log_get";
        case Operation::DirtyLogClear: return "dirty_log_clear";
        case Operation::DirtyLogDisable: return "dirty_log_disable";
        case Operation::ZapGfnRange: return "zap_gfn_range";
        case Operation::Invalidate: return "invalidate";
        case Operation::SmmEnter: return "smm_enter";
        case Operation::SmmExit: return "smm_exit";
        case Operation::NestedStart: return "nested_start";
        case Operation::NestedStop: return "nested_stop";
        case Operation::NestedEptpSwitch: return "nested_eptp_switch";
        case Operation::NestedEptWrite: return "nested_ept_write";
        case Operation::VmDestroy: return "vm_destroy";
        case Operation::ClearYoung: return "clear_young";
        case Operation::TestYoung: return "test_young";
    }
    return "?";
}

const char* to_string(AgeCaller c) {
    switch (c) {
        case AgeCaller::PageIdle: return "page_idle";
        case AgeCaller::LruGen: return "lru_gen";
    }
    return "?";
}

const char* to_string(ZapReason r) {
    switch (r) {
        case ZapReason::Mtrr: return "mtrr";
        case ZapReason::Cr0Cd: return "cr0_cd";
        case ZapReason::Other: return "other";
    }
    return "?";
}

namespace {
[[noreturn]] void unsupported(const char* what) {
    throw std::logic_error(std::string("the MMU model does not support ") + what);
}
}  // namespace

engine::Task<void> MmuModel::page_fault_at(engine::Simulator& sim, const CpuContext& cpu, Gfn gfn, Access access,
                                           Time start) {
    if (start > sim.now()) co_await sim.delay(start - sim.now());
    co_await page_fault(cpu, gfn, access);
}

engine::Task<void> MmuModel::dirty_log_enable(const CpuContext&, std::uint32_t, DirtyLogOptions) {
    unsupported("dirty_log_enable");
    co_return;
}
engine::Task<std::uint64_t> MmuModel::dirty_log_get(const CpuContext&, std::uint32_t) {
    unsupported("dirty_log_get");
    co_return 0;
}
engine::Task<void> MmuModel::dirty_log_clear(const CpuContext&, std::uint32_t, Gfn, std::uint64_t) {
    unsupported("dirty_log_clear");
    co_return;
}
engine::Task<void> MmuModel::dirty_log_disable(const CpuContext&, std::uint32_t) {
    unsupported("dirty_log_disable");
    co_return;
}
engine::Task<void> MmuModel::zap_gfn_range(const CpuContext&, Gfn, Gfn, ZapReason) {
    unsupported("zap_gfn_range");
    co_return;
}
engine::Task<void> MmuModel::vm_destroy(const CpuContext&) {
    unsupported("vm_destroy");
    co_return;
}
engine::Task<void> MmuModel::invalidate_range(const CpuContext&, Gfn, Gfn) {
    unsupported("invalidate_range");
    co_return;
}
engine::Task<std::uint64_t> MmuModel::age_range(const CpuContext&, const AgeRequest&) {
    unsupported("age_range");
    co_return 0;
}
engine::Task<void> MmuModel::smm_transition(const CpuContext&, bool, const SmiHandler&) {
    unsupported("smm_transition");
    co_return;
}
engine::Task<void> MmuModel::nested_start(const CpuContext&, Gfn) {
    unsupported("nested_start");
    co_return;
}
engine::Task<void> MmuModel::nested_stop(const CpuContext&, Gfn) {
    unsupported("nested_stop");
    co_return;
}
engine::Task<void> MmuModel::nested_eptp_switch(const CpuContext&, const std::vector<Gfn>&) {
    unsupported("nested_eptp_switch");
    co_return;
}
engine::Task<void> MmuModel::nested_ept_write(const CpuContext&, const NestedEptWrite&) {
    unsupported("nested_ept_write");
    co_return;
}

const KnobSpec* ModelInfo::knob(std::string_view n) const {
    for (const auto& k : knobs)
        if (k.name == n) return &k;
    return nullptr;
}

const InertKnob* ModelInfo::inert_knob(std::string_view n) const {
    for (const auto& k : inert_knobs)
        if (k.name == n) return &k;
    return nullptr;
}

bool ModelInfo::supports(Operation op) const {
    return std::find(operations.begin(), operations.end(), op) != operations.end();
}

void ModelRegistry::add(ModelInfo info) {
    const std::string name = info.name;
    models_.insert_or_assign(name, std::move(info));
}

const ModelInfo* ModelRegistry::find(std::string_view name) const {
    auto it = models_.find(name);
    return it == models_.end() ? nullptr : &it->second;
}

std::vector<const ModelInfo*> ModelRegistry::all() const {
    std::vector<const ModelInfo*> out;
    for (const auto& [n, m] : models_) out.push_back(&m);
    return out;
}

}  // namespace kvmsim::vm
