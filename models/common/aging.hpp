// Access tracking ("aging") shared by the models: the host's clear_young/test_young MMU-notifier
// calls (mm/page_idle.c, mm/vmscan.c's multi-gen LRU walk) reaching kvm_mmu_notifier_clear_young /
// kvm_mmu_notifier_test_young -> kvm_handle_hva_range -> kvm_age_gfn / kvm_test_age_gfn
// (virt/kvm/kvm_main.c), and the mmu_lock mode the handler runs under (knob age_lock).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/common/bulk.hpp"
#include "models/common/costs.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::models {

// age_lock: how kvm_handle_hva_range runs kvm_age_gfn / kvm_test_age_gfn.
//   Write    KVM_MMU_LOCK: mmu_lock for write (x86 before v6.14; arm64 mainline)
//   Read     mmu_lock for read (arm64: James Houghton, "[PATCH v6 03/11] KVM: arm64: Relax locking
//            for kvm_test_age_gfn and kvm_age_gfn", 2024-07-24; not merged)
//   Lockless no mmu_lock, RCU only (x86: James Houghton, "[PATCH v8 00/11] KVM: x86/mmu: Age sptes
//            locklessly", 2024-11, v6.14: range->lockless with CONFIG_KVM_MMU_LOCKLESS_AGING)
enum class AgeLock : std::uint8_t { Write, Read, Lockless };

inline AgeLock parse_age_lock(const std::string& s) {
    return s == "read" ? AgeLock::Read : s == "lockless" ? AgeLock::Lockless : AgeLock::Write;
}

// The host's work per notifier call, by caller (host profile names).
struct AgingCosts {
    engine::Time mmu_notifier_young;  // __mmu_notifier_clear_young/test_young up to KVM's lock
    engine::Time page_idle_page;      // page_idle: pagemap + bitmap syscalls and the folio's rmap walk
    engine::Time lru_gen_pte;         // multi-gen LRU: one PTE of walk_pte_range (folio, generation)

    static const std::vector<std::string>& names() {
        static const std::vector<std::string> n = {"mmu_notifier_young", "page_idle_page", "lru_gen_pte"};
        return n;
    }
    static AgingCosts from(const vm::CostProfile& p) {
        AgingCosts c;
        c.mmu_notifier_young = p.time("mmu_notifier_young");
        c.page_idle_page = p.time("page_idle_page");
        c.lru_gen_pte = p.time("lru_gen_pte");
        return c;
    }
    engine::Time caller(vm::AgeCaller via) const { return via == vm::AgeCaller::PageIdle ? page_idle_page : lru_gen_pte; }
};

// kvm_handle_hva_range's loop for the aging notifiers, the same in every model: one notifier call
// per host page of [r.start, r.end) (`page_end(g)`: the end of g's host page), each charged
// `per_call` (the caller's and the notifier's own work) on `b`; `handle(g, e, site)` runs KVM's
// handler over [g, e) at `site` (kvm_age_gfn or kvm_test_age_gfn) and returns nullopt when no
// memslot handler ran, else whether an SPTE was young. Counts the handler calls and the young
// ones (kvm_age_gfn[_young], kvm_test_age_gfn[_young]); lets the work elapse every
// kSettleQuantum through `settle()` and at the end. Returns the young calls.
template <class Walk, class PageEnd, class Handle, class Settle>
engine::Task<std::uint64_t> age_hva_range(engine::Simulator& sim, Walk& b, vm::AgeRequest r, engine::Time per_call,
                                          PageEnd page_end, Handle handle, Settle settle) {
    const engine::Site site = sim.site(r.clear ? "kvm_age_gfn" : "kvm_test_age_gfn");
    const engine::CounterId calls = sim.counters().id(r.clear ? "kvm_age_gfn" : "kvm_test_age_gfn");
    const engine::CounterId young_calls = sim.counters().id(r.clear ? "kvm_age_gfn_young" : "kvm_test_age_gfn_young");
    std::uint64_t young_n = 0;
    for (vm::Gfn g = r.start; g < r.end;) {
        const vm::Gfn e = std::min(r.end, page_end(g));
        b.acc += per_call;
        const std::optional<bool> young = co_await handle(g, e, site);
        if (young) {
            sim.counters().add(calls);
            if (*young) {
                ++young_n;
                sim.counters().add(young_calls);
            }
        }
        if (b.acc >= kSettleQuantum) co_await settle();
        g = e;
    }
    co_await settle();
    co_return young_n;
}

}  // namespace kvmsim::models
