// x86 MMU context: see x86_context.hpp and docs/models/x86_context.md.
#include "models/x86_context/x86_context.hpp"

#include <stdexcept>
#include <utility>

#include "models/common/costs.hpp"

namespace kvmsim::models::x86_context {

using engine::Task;
using engine::Time;

namespace {
struct CostName {
    const char* name;
    Time Costs::*field;
};
constexpr CostName kCostNames[] = {
    {"kvm_init_mmu_base", &Costs::init_base},     {"mmu_init_field_write", &Costs::field_write},
    {"mmu_init_loop_step", &Costs::loop_step},    {"kvm_mmu_unload_base", &Costs::unload_base},
    {"kvm_mmu_load_base", &Costs::load_base},
};
}  // namespace

const std::vector<std::string>& Costs::names() {
    static const std::vector<std::string> n = [] {
        std::vector<std::string> v;
        for (const CostName& c : kCostNames) v.emplace_back(c.name);
        return v;
    }();
    return n;
}

Costs Costs::from(const vm::CostProfile& p) {
    require_costs(p, names(), "x86_context");
    Costs c;
    for (const CostName& n : kCostNames) c.*n.field = p.time(n.name);
    return c;
}

// struct kvm_mmu as in v6.9 (include/asm/kvm_host.h), x86-64, the struct assumed line aligned:
//   0 get_guest_pgd  8 get_pdptr  16 page_fault  24 inject_page_fault  32 gva_to_gpa
//  40 sync_spte  48 root {pgd, hpa}  64 cpu_role  72 root_role  76 pkru_mask  80 prev_roots[3]
// 128 permissions[16]  144 pae_root, pml4_root, pml5_root
// 168 shadow_zero_check {rsvd_bits_mask[2][5], bad_mt_xwr}  256 guest_rsvd_check  344 pdptrs[4]
// A full init_kvm_tdp_mmu writes, in order:
const std::vector<FieldWrite>& tdp_init_fields() {
    static const std::vector<FieldWrite> f = {
        {"cpu_role", 64, 1, 0, false, false},
        {"root_role", 72, 1, 0, false, false},
        {"page_fault", 16, 1, 0, true, false},
        {"sync_spte", 40, 1, 0, true, false},
        {"get_guest_pgd", 0, 1, 0, true, false},
        {"get_pdptr", 8, 1, 0, true, false},
        {"inject_page_fault", 24, 1, 0, true, false},
        {"gva_to_gpa", 32, 1, 0, false, false},  // depends on CR0.PG / CR4.PAE
        // reset_guest_paging_metadata (returns at once while CR0.PG = 0)
        {"guest_rsvd_check", 256, 11, 0, false, true},
        {"permissions", 128, 16, 16, false, true},  // update_permission_bitmask: 16-entry loop
        {"pkru_mask", 76, 1, 16, false, true},      // update_pkru_bitmask (loop only with CR4.PKE)
        // reset_tdp_shadow_zero_bits_mask: host-only (EPT: __reset_rsvds_bits_mask_ept and its
        // 64-entry bad_mt_xwr loop), hence constant for the vCPU
        {"shadow_zero_check", 168, 11, 64, true, false},
    };
    return f;
}

// kvm_init_shadow_ept_mmu (v6.9) when the nested EPT role changes: the callbacks
// (ept_page_fault, ept_gva_to_gpa, ept_sync_spte), update_permission_bitmask(context, true) (a
// 16-entry loop), pkru_mask = 0, reset_rsvds_bits_mask_ept on guest_rsvd_check and
// reset_ept_shadow_zero_bits_mask on shadow_zero_check (__reset_rsvds_bits_mask_ept: ten masks
// and bad_mt_xwr each, built with REPEAT_BYTE, no loop). The callbacks and shadow_zero_check are
// the same on every init of this MMU. (nested_ept_init_mmu_context's get_guest_pgd,
// inject_page_fault and get_pdptr stores on every nested VM-entry are not counted here.)
const std::vector<FieldWrite>& shadow_ept_init_fields() {
    static const std::vector<FieldWrite> f = {
        {"cpu_role", 64, 1, 0, false, false},
        {"root_role", 72, 1, 0, false, false},
        {"page_fault", 16, 1, 0, true, false},
        {"gva_to_gpa", 32, 1, 0, true, false},
        {"sync_spte", 40, 1, 0, true, false},
        {"permissions", 128, 16, 16, false, false},
        {"pkru_mask", 76, 1, 0, false, false},
        {"guest_rsvd_check", 256, 11, 0, false, false},
        {"shadow_zero_check", 168, 11, 0, true, false},
    };
    return f;
}

struct MmuContext::Counters {
    engine::CounterId init, init_full, init_early, init_ps, field_writes, lines, miss, reset, unload, roots_freed,
        load, new_pgd, prev_hit, prev_miss;
    Counters(engine::Counters& c, Which which) {
        // The init counters are named after the function: kvm_init_mmu or kvm_init_shadow_ept_mmu.
        const std::string f = which == Which::RootMmu ? "kvm_init_mmu" : "kvm_init_shadow_ept_mmu";
        const std::string p = which == Which::RootMmu ? "mmu_init" : "guest_mmu_init";
        init = c.id(f);
        init_full = c.id(f + "_full");
        init_early = c.id(f + "_early_return");
        init_ps = c.id(f + "_ps");
        field_writes = c.id(p + "_field_writes");
        lines = c.id(p + "_cache_lines");
        miss = c.id(p + "_cache_miss");
        const std::pair<const char*, engine::CounterId Counters::*> names[] = {
            {"kvm_mmu_reset_context", &Counters::reset},
            {"kvm_mmu_unload", &Counters::unload},
            {"kvm_mmu_free_roots_puts", &Counters::roots_freed},
            {"kvm_mmu_load", &Counters::load},
            {"kvm_mmu_new_pgd", &Counters::new_pgd},
            {"prev_roots_hit", &Counters::prev_hit},
            {"prev_roots_miss", &Counters::prev_miss},
        };
        for (const auto& [name, field] : names) this->*field = c.id(name);
    }
};

MmuContext::MmuContext(engine::Simulator& sim, engine::CacheModel& cache, KernelDataLayout& kdata,
                       const Costs& costs, InitMode mode, std::uint32_t vcpus, RootOps& ops, Which which)
    : sim_(sim), cache_(cache), k_(costs), mode_(mode), ops_(ops), which_(which), mmus_(vcpus) {
    c_ = std::make_unique<Counters>(sim_.counters(), which);
    for (KvmMmu& m : mmus_) m.addr = kdata.alloc(kKvmMmuBytes);
    const auto& levels = cache_.config().levels;
    l1_hit_ = levels.empty() ? Time::zero() : levels.front().hit_latency;
}

MmuContext::~MmuContext() = default;

KvmMmu& MmuContext::at(const vm::CpuContext& cpu) {
    if (cpu.vcpu < 0 || static_cast<std::size_t>(cpu.vcpu) >= mmus_.size())
        throw std::invalid_argument("x86_context: '" + cpu.name + "' is not a vCPU of the VM");
    return mmus_[static_cast<std::size_t>(cpu.vcpu)];
}

// One line of struct kvm_mmu; a touch not served by the first cache level counts as a miss.
Time MmuContext::touch(std::uint32_t cpu, std::uint64_t addr, bool write) {
    const Time t = cache_.touch(cpu, addr, 8, write);
    if (t > l1_hit_) sim_.counters().add(c_->miss);
    return t;
}

void MmuContext::set_loaded_root(std::uint32_t vcpu, const CpuRole& role, std::uint64_t hpa) {
    KvmMmu& m = mmus_.at(vcpu);
    m.cpu_role = role;
    m.cpu_role_valid = true;
    m.root_role = ops_.root_role(role);
    m.constants_written = true;
    m.root = RootInfo{hpa, 0, m.root_role};
}

Time MmuContext::init_mmu(std::uint32_t host_cpu, std::uint32_t vcpu, const CpuRole& role) {
    KvmMmu& m = mmus_.at(vcpu);
    auto& ctr = sim_.counters();
    ctr.add(c_->init);
    // kvm_calc_cpu_role, kvm_calc_tdp_mmu_root_page_role, then the compare reads both roles.
    Time t = k_.init_base + touch(host_cpu, m.addr + 64, false);
    const RootRole rr = ops_.root_role(role);
    if (m.cpu_role_valid && m.cpu_role == role && m.root_role.word() == rr.word()) {
        ctr.add(c_->init_early);
        ctr.add(c_->init_ps, static_cast<std::uint64_t>(t.ps()));
        return t;
    }
    ctr.add(c_->init_full);
    m.cpu_role = role;
    m.cpu_role_valid = true;
    m.root_role = rr;
    const bool skip_constants = mode_ == InitMode::ConstantOnce && m.constants_written;
    std::uint64_t last_line = ~std::uint64_t{0};
    std::uint64_t writes = 0, lines = 0;
    for (const FieldWrite& f : which_ == Which::RootMmu ? tdp_init_fields() : shadow_ept_init_fields()) {
        if (f.paging_only && !role.cr0_pg) continue;
        if (f.constant && skip_constants) continue;
        const std::uint32_t loop = f.name == std::string_view("pkru_mask") && !role.cr4_pke ? 0 : f.loop;
        t += k_.loop_step * static_cast<std::int64_t>(loop);
        const std::uint32_t bytes = f.name == std::string_view("permissions") ? 1 : 8;
        for (std::uint32_t i = 0; i < f.count; ++i) {
            const std::uint64_t a = m.addr + f.offset + i * bytes;
            t += k_.field_write;
            if ((a >> 6) != last_line) {  // consecutive stores to one line: one cache access
                t += touch(host_cpu, a, true);
                last_line = a >> 6;
                ++lines;
            }
            ++writes;
        }
    }
    m.constants_written = true;
    ctr.add(c_->field_writes, writes);
    ctr.add(c_->lines, lines);
    ctr.add(c_->init_ps, static_cast<std::uint64_t>(t.ps()));
    return t;
}

namespace {
// kvm_mmu_free_roots' bookkeeping: the valid roots named by the mask (the current one first), each
// set to INVALID_PAGE. (Outside the coroutine: GCC 12 mis-warns on the array fill in a coroutine
// frame.)
std::vector<std::uint64_t> take_roots(KvmMmu& m, unsigned mask) {
    std::vector<std::uint64_t> roots;
    if (mask & kRootCurrent) {
        if (m.root.valid()) roots.push_back(m.root.hpa);
        m.root = RootInfo{};
    }
    for (std::size_t i = 0; i < kNumPrevRoots; ++i) {
        if (!(mask & root_previous(i))) continue;
        if (m.prev_roots[i].valid()) roots.push_back(m.prev_roots[i].hpa);
        m.prev_roots[i] = RootInfo{};
    }
    return roots;
}
}  // namespace

Task<std::size_t> MmuContext::free_roots(const vm::CpuContext& cpu, unsigned roots_to_free) {
    KvmMmu& m = at(cpu);
    std::vector<std::uint64_t> roots = take_roots(m, roots_to_free);
    Time t = k_.unload_base;
    for (std::uint32_t line = 0; line < 2; ++line) t += touch(cpu.host_cpu, m.addr + 48 + line * 64, true);
    co_await sim_.delay(t);
    const std::size_t n = roots.size();
    if (n) {
        sim_.counters().add(c_->roots_freed, n);
        co_await ops_.put_roots(cpu, std::move(roots));
    }
    co_return n;
}

unsigned MmuContext::roots_matching(std::uint32_t vcpu, vm::Gfn pgd) const {
    const KvmMmu& m = mmus_.at(vcpu);
    unsigned mask = 0;
    if (m.root.valid() && m.root.pgd == pgd) mask |= kRootCurrent;
    for (std::size_t i = 0; i < kNumPrevRoots; ++i)
        if (m.prev_roots[i].valid() && m.prev_roots[i].pgd == pgd) mask |= root_previous(i);
    return mask;
}

Task<void> MmuContext::unload(const vm::CpuContext& cpu) {
    sim_.counters().add(c_->unload);
    (void)co_await free_roots(cpu, kRootsAll);
}

Task<void> MmuContext::reset_context(const vm::CpuContext& cpu, const CpuRole& role) {
    sim_.counters().add(c_->reset);
    co_await unload(cpu);
    const Time t = init_mmu(cpu.host_cpu, static_cast<std::uint32_t>(cpu.vcpu), role);
    co_await sim_.delay(t);
}

Task<bool> MmuContext::reload(const vm::CpuContext& cpu) {
    KvmMmu& m = at(cpu);
    if (m.root.valid()) co_return false;
    sim_.counters().add(c_->load);
    co_await sim_.delay(k_.load_base + touch(cpu.host_cpu, m.addr + 48, true));
    const RootRole role = m.root_role;
    const vm::Gfn pgd = m.root.pgd;
    const std::uint64_t hpa = co_await ops_.get_root(cpu, role, pgd);
    m.root = RootInfo{hpa, pgd, role};
    co_return true;
}

namespace {
// is_root_usable: a direct root ignores the pgd.
bool usable(const RootInfo& r, vm::Gfn pgd, const RootRole& role) {
    return r.valid() && (role.direct || r.pgd == pgd) && r.role.word() == role.word();
}

// fast_pgd_switch on m: true on a hit; on a miss with a current root, `evicted` is the least
// recently used root, which the caller frees (kvm_mmu_free_roots(KVM_MMU_ROOT_CURRENT)).
bool fast_pgd_switch(KvmMmu& m, vm::Gfn pgd, const RootRole& role, std::uint64_t& evicted) {
    evicted = kInvalidPage;
    if (m.root.valid()) {
        // cached_root_find_and_keep_current: rotates C 0 1 2 into 2 C 0 1 while looking.
        if (usable(m.root, pgd, role)) return true;
        for (std::size_t i = 0; i < kNumPrevRoots; ++i) {
            std::swap(m.root, m.prev_roots[i]);
            if (usable(m.root, pgd, role)) return true;
        }
        evicted = m.root.hpa;
        m.root = RootInfo{};
        m.root.pgd = pgd;
        return false;
    }
    // cached_root_find_without_current.
    for (std::size_t i = 0; i < kNumPrevRoots; ++i) {
        if (!usable(m.prev_roots[i], pgd, role)) continue;
        std::swap(m.root, m.prev_roots[i]);
        for (; i < kNumPrevRoots - 1; ++i) m.prev_roots[i] = m.prev_roots[i + 1];
        m.prev_roots[kNumPrevRoots - 1] = RootInfo{};
        return true;
    }
    m.root.pgd = pgd;  // kvm_mmu_reload allocates the root for it
    return false;
}
}  // namespace

Task<bool> MmuContext::new_pgd(const vm::CpuContext& cpu, vm::Gfn pgd) {
    KvmMmu& m = at(cpu);
    sim_.counters().add(c_->new_pgd);
    co_await sim_.delay(touch(cpu.host_cpu, m.addr + 48, false) + touch(cpu.host_cpu, m.addr + 80, true));
    std::uint64_t evicted = kInvalidPage;
    const bool hit = fast_pgd_switch(m, pgd, m.root_role, evicted);
    sim_.counters().add(hit ? c_->prev_hit : c_->prev_miss);
    if (evicted != kInvalidPage) {  // kvm_mmu_free_roots(KVM_MMU_ROOT_CURRENT)
        sim_.counters().add(c_->roots_freed);
        std::vector<std::uint64_t> put{evicted};
        co_await ops_.put_roots(cpu, std::move(put));
    }
    co_return hit;
}

vm::KnobSpec mmu_init_knob() {
    vm::KnobSpec k;
    k.name = "mmu_init";
    k.type = vm::KnobSpec::Type::Choice;
    k.default_value = std::string("full_every_reset");
    k.choices = {"full_every_reset", "constant_once"};
    k.meaning =
        "kvm_init_mmu after a role change (seed 002): 'full_every_reset' = v6.9 and the seed's kernel "
        "(init_kvm_tdp_mmu writes every field: callbacks, reserved-bit masks, bitmasks); 'constant_once' = "
        "the seed thread's direction (callbacks and the host-only shadow_zero_check written once per vCPU)";
    return k;
}

InitMode parse_init_mode(const vm::Knobs& knobs) {
    auto it = knobs.find("mmu_init");
    if (it == knobs.end()) return InitMode::FullEveryReset;
    const std::string* s = std::get_if<std::string>(&it->second);
    if (!s) throw std::invalid_argument("x86_context: knob 'mmu_init' must be a string");
    if (*s == "full_every_reset") return InitMode::FullEveryReset;
    if (*s == "constant_once") return InitMode::ConstantOnce;
    throw std::invalid_argument("x86_context: knob 'mmu_init' has no choice '" + *s + "'");
}

}  // namespace kvmsim::models::x86_context
