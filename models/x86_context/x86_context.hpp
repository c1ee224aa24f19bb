// x86 MMU context (a component, not a registered model): the per-vCPU `struct kvm_mmu` of KVM's
// root MMU and what resets it, following Linux v6.9 (torvalds/linux; arch/x86/kvm/mmu/mmu.c,
// arch/x86/kvm/smm.c, arch/x86/kvm/x86.c):
//   kvm_init_mmu -> init_kvm_tdp_mmu   cpu_role / root_role, the early return on an unchanged
//                                      role, a full init's field writes (callbacks,
//                                      reset_guest_paging_metadata, reset_tdp_shadow_zero_bits_mask)
//   kvm_mmu_reset_context              kvm_mmu_unload (kvm_mmu_free_roots, KVM_MMU_ROOTS_ALL) +
//                                      kvm_init_mmu
//   kvm_mmu_reload / kvm_mmu_load      a root for the current role when none is loaded
//   kvm_mmu_new_pgd                    fast_pgd_switch: cached_root_find_and_keep_current /
//                                      cached_root_find_without_current (current + 3 prev_roots)
// Seed 002's "after" (InitMode::ConstantOnce) follows the direction Sean Christopherson gave in
// the seed thread (2022-03-03): fields that are constant for an MMU are written once per vCPU.
// The root owner (the TDP MMU here, the shadow MMU later) is reached through RootOps.
// See docs/models/x86_context.md for the struct kvm_mmu layout estimate and what is left out.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/common/host_memory.hpp"
#include "sim/engine/cache.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/engine/task.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models::x86_context {

// The bits of union kvm_cpu_role the model tracks (kvm_calc_cpu_role).
struct CpuRole {
    bool smm = false;         // base.smm: SMM also selects address space 1
    bool guest_mode = false;  // base.guest_mode (L2 running)
    bool cr0_pg = false;      // paging enabled (else base.direct, level 0)
    bool cr4_pae = false;
    bool efer_lma = false;
    bool cr4_pke = false;
    std::uint32_t word() const {
        return static_cast<std::uint32_t>(smm) | static_cast<std::uint32_t>(guest_mode) << 1 |
               static_cast<std::uint32_t>(cr0_pg) << 2 | static_cast<std::uint32_t>(cr4_pae) << 3 |
               static_cast<std::uint32_t>(efer_lma) << 4 | static_cast<std::uint32_t>(cr4_pke) << 5;
    }
    bool operator==(const CpuRole&) const = default;
};

// The bits of union kvm_mmu_page_role a root is matched on (role.word).
struct RootRole {
    std::uint8_t level = 4;
    bool direct = true;
    bool smm = false;  // kvm_mmu_role_as_id
    bool guest_mode = false;
    bool invalid = false;  // word 0 in the kernel: never equal to a real role
    std::uint32_t word() const {
        if (invalid) return 0;
        return 0x100u | level | static_cast<std::uint32_t>(direct) << 4 | static_cast<std::uint32_t>(smm) << 5 |
               static_cast<std::uint32_t>(guest_mode) << 6;
    }
    int as_id() const { return smm ? 1 : 0; }
};

inline constexpr std::uint64_t kInvalidPage = 0;  // INVALID_PAGE

// struct kvm_mmu_root_info (the role is root_to_sp(hpa)->role in the kernel).
struct RootInfo {
    std::uint64_t hpa = kInvalidPage;
    vm::Gfn pgd = 0;
    RootRole role;
    bool valid() const { return hpa != kInvalidPage; }
};
inline constexpr std::size_t kNumPrevRoots = 3;  // KVM_MMU_NUM_PREV_ROOTS

// The owner of the roots (TDP MMU: kvm_tdp_mmu_get_vcpu_root_hpa / kvm_tdp_mmu_put_root).
class RootOps {
public:
    virtual ~RootOps() = default;
    // kvm_calc_tdp_mmu_root_page_role (or the shadow MMU's) for a CPU role.
    virtual RootRole root_role(const CpuRole& role) const = 0;
    // mmu_alloc_direct_roots / mmu_alloc_shadow_roots: a root for (role, pgd) with a reference
    // held for the vCPU; takes mmu_lock itself.
    virtual engine::Task<std::uint64_t> get_root(const vm::CpuContext& cpu, RootRole role, vm::Gfn pgd) = 0;
    // kvm_mmu_free_roots' puts: one mmu_lock section for all of them (none is ever empty).
    virtual engine::Task<void> put_roots(const vm::CpuContext& cpu, std::vector<std::uint64_t> roots) = 0;
};

enum class InitMode : std::uint8_t {
    FullEveryReset,  // v6.9 (and the seed's kernel): every full init writes every field
    ConstantOnce,    // the seed's direction: constant fields written once per vCPU
};

// Host-profile costs (picoseconds), by their profile names.
struct Costs {
    engine::Time init_base;     // kvm_init_mmu_base: kvm_calc_cpu_role and the role compare
    engine::Time field_write;   // mmu_init_field_write: one field's computation and store
    engine::Time loop_step;     // mmu_init_loop_step: one iteration of a bitmask loop
    engine::Time unload_base;   // kvm_mmu_unload_base: kvm_mmu_free_roots besides the puts
    engine::Time load_base;     // kvm_mmu_load_base: kvm_mmu_load besides the root lookup
    static const std::vector<std::string>& names();
    static Costs from(const vm::CostProfile& p);
};

// One field (or run of same-kind fields) of struct kvm_mmu written by a full init.
struct FieldWrite {
    const char* name;
    std::uint32_t offset;  // bytes into struct kvm_mmu
    std::uint32_t count;   // 8-byte stores (permissions[]: 16 one-byte stores, counted as 16)
    std::uint32_t loop;    // loop iterations computing it (bad_mt_xwr: 64)
    bool constant;         // the same on every init of this MMU (ConstantOnce writes it once)
    bool paging_only;      // reset_guest_paging_metadata: skipped while CR0.PG = 0
};
// init_kvm_tdp_mmu's writes in order, with the layout estimate (docs/models/x86_context.md).
const std::vector<FieldWrite>& tdp_init_fields();
// kvm_init_shadow_ept_mmu's writes (the nested EPT MMU, vcpu->arch.guest_mmu) when its role changes.
const std::vector<FieldWrite>& shadow_ept_init_fields();

// Which struct kvm_mmu of the vCPU a context stands for: root_mmu (kvm_init_mmu ->
// init_kvm_tdp_mmu) or guest_mmu (the shadow of L1's EPT for L2: kvm_init_shadow_ept_mmu).
enum class Which : std::uint8_t { RootMmu, GuestMmu };

// kvm_mmu_free_roots' roots_to_free bits (KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS(i)).
inline constexpr unsigned kRootCurrent = 1;
constexpr unsigned root_previous(std::size_t i) { return 2u << i; }
inline constexpr unsigned kRootsAll = 0xf;  // KVM_MMU_ROOTS_ALL
inline constexpr std::uint64_t kKvmMmuBytes = 384;  // six lines

// struct kvm_mmu (root_mmu) of one vCPU.
struct KvmMmu {
    CpuRole cpu_role;
    RootRole root_role{4, true, false, false, true};  // invalid until the first init
    bool cpu_role_valid = false;                       // cpu_role.ext.valid
    RootInfo root;
    std::array<RootInfo, kNumPrevRoots> prev_roots{};
    bool constants_written = false;
    std::uint64_t addr = 0;  // synthetic address of the struct (KernelDataLayout)
};

class MmuContext {
public:
    MmuContext(engine::Simulator& sim, engine::CacheModel& cache, KernelDataLayout& kdata, const Costs& costs,
               InitMode mode, std::uint32_t vcpus, RootOps& ops, Which which = Which::RootMmu);
    ~MmuContext();

    // kvm_init_mmu (root_mmu) or kvm_init_shadow_ept_mmu's role check and init (guest_mmu):
    // returns the time it takes (no lock, no event).
    engine::Time init_mmu(std::uint32_t host_cpu, std::uint32_t vcpu, const CpuRole& role);
    // kvm_mmu_reset_context.
    engine::Task<void> reset_context(const vm::CpuContext& cpu, const CpuRole& role);
    // kvm_mmu_unload (every root: current and prev_roots).
    engine::Task<void> unload(const vm::CpuContext& cpu);
    // kvm_mmu_free_roots(mmu, roots_to_free): the valid roots among those named by the mask
    // (kRootCurrent, root_previous(i)) are put in one mmu_lock section; nothing when none is valid.
    // Returns how many were put.
    engine::Task<std::size_t> free_roots(const vm::CpuContext& cpu, unsigned roots_to_free);
    // The roots_to_free mask of the vCPU's valid roots whose pgd is `pgd` (handle_invept's
    // single-context nested_ept_root_matches).
    unsigned roots_matching(std::uint32_t vcpu, vm::Gfn pgd) const;
    // kvm_mmu_reload: loads a root if none is; true if it loaded one (kvm_mmu_load ran).
    engine::Task<bool> reload(const vm::CpuContext& cpu);
    // kvm_mmu_new_pgd: true if the current root or a prev_root was usable (no free, no load).
    engine::Task<bool> new_pgd(const vm::CpuContext& cpu, vm::Gfn pgd);

    // A vCPU whose MMU has no root and was set up before (the root is gone until reload).
    bool root_loaded(std::uint32_t vcpu) const { return mmus_[vcpu].root.valid(); }
    const KvmMmu& mmu(std::uint32_t vcpu) const { return mmus_.at(vcpu); }
    // Sets a root loaded without cost (a model's initial state).
    void set_loaded_root(std::uint32_t vcpu, const CpuRole& role, std::uint64_t hpa);
    InitMode mode() const { return mode_; }

private:
    engine::Time touch(std::uint32_t cpu, std::uint64_t addr, bool write);
    KvmMmu& at(const vm::CpuContext& cpu);

    engine::Simulator& sim_;
    engine::CacheModel& cache_;
    Costs k_;
    InitMode mode_;
    RootOps& ops_;
    Which which_;
    std::vector<KvmMmu> mmus_;
    engine::Time l1_hit_;
    struct Counters;
    std::unique_ptr<Counters> c_;
};

vm::KnobSpec mmu_init_knob();
InitMode parse_init_mode(const vm::Knobs& knobs);

}  // namespace kvmsim::models::x86_context
