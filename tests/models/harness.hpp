// A small fixture for MMU-model unit tests: a simulator, a 4-CPU cache model, a host profile with
// round test costs, one memslot, and helpers to spawn vCPUs and host actors.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "sim/engine/cache.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/engine/sync.hpp"
#include "sim/vm/mmu_model.hpp"

namespace kvmsim::testing {

using namespace kvmsim::engine::time_literals;

inline engine::CacheConfig small_cache(std::uint32_t cpus) {
    engine::CacheConfig c;
    c.cpus = cpus;
    c.line_bytes = 64;
    c.levels = {{"L1d", 32 * 1024, 8, engine::Time::ns(1)}, {"LLC", 1024 * 1024, 16, engine::Time::ns(10)}};
    c.memory_latency = engine::Time::ns(50);
    c.remote_latency = engine::Time::ns(30);
    return c;
}

// Round numbers so that test expectations can be worked out by hand.
// userfaultfd's costs (round; only demand-paging tests use them), the same on both profiles.
inline void set_uffd_test_costs(vm::CostProfile& p) {
    auto ns = [&](const char* n, double v) { p.set(n, v * 1000.0); };
    ns("uffd_handle_userfault", 1000);
    ns("uffd_wake_latency", 2000);
    ns("uffd_wake_per_waiter", 100);
    ns("uffd_ttwu", 500);
    ns("uffd_syscall", 300);
    ns("uffd_continue", 400);
    ns("memory_fault_exit", 2000);
    p.set("uffd_copy_rate", 10.24e9);  // bytes/s: 4 KiB in 400 ns
}

inline vm::CostProfile test_costs() {
    vm::CostProfile p;
    auto ns = [&](const char* n, double v) { p.set(n, v * 1000.0); };
    ns("fault_entry", 100);
    ns("fault_exit", 100);
    ns("fast_pf_base", 50);
    ns("tdp_map_base", 500);
    ns("tdp_walk_level", 5);
    ns("spte_cmpxchg", 10);
    ns("spte_update", 5);
    ns("tdp_iter_step", 2);
    ns("split_spte_fill", 1);
    ns("gup_fast", 100);
    ns("gup_slow", 120);
    ns("host_fault_base", 1000);
    ns("host_zero_page_map", 70);
    ns("host_pmd_split", 400);
    p.set("zero_rate", 20.48e9);  // bytes/s: 4 KiB in 200 ns
    set_uffd_test_costs(p);
    ns("mmu_cache_alloc_page", 300);
    ns("mmu_cache_alloc_obj", 50);
    ns("tlb_flush_base", 1000);
    ns("tlb_flush_per_vcpu", 100);
    ns("sched_timeslice", 1'000'000);  // 1 ms
    ns("lock_yield", 50);
    ns("dirty_bitmap_word", 2);
    ns("memslot_update", 10'000);
    ns("tdp_root_lookup_step", 5);
    ns("smm_transition", 1000);
    ns("pml_flush_entry", 15);
    ns("ept_dirty_assist", 100);
    ns("kvm_init_mmu_base", 10);
    ns("mmu_init_field_write", 1);
    ns("mmu_init_loop_step", 1);
    ns("kvm_mmu_unload_base", 20);
    ns("kvm_mmu_load_base", 100);
    ns("mmu_notifier_young", 20);
    ns("page_idle_page", 1000);
    ns("lru_gen_pte", 10);
    return p;
}

// The arm64_stage2 model's costs, round too (dcache_clean_byte: 10 ps per byte, so a 4 KiB
// page costs 40.96 ns and a 2 MiB block 20.97 us).
inline vm::CostProfile arm64_test_costs() {
    vm::CostProfile p;
    auto ns = [&](const char* n, double v) { p.set(n, v * 1000.0); };
    ns("fault_entry", 100);
    ns("fault_exit", 100);
    ns("user_mem_abort", 100);
    ns("gup_fast", 50);
    ns("gup_slow", 60);
    ns("host_fault_base", 1000);
    ns("host_zero_page_map", 70);
    ns("host_pmd_split", 400);
    p.set("zero_rate", 40.96e9);  // bytes/s: 4 KiB in 100 ns
    set_uffd_test_costs(p);
    ns("mmu_cache_alloc_page", 200);
    ns("mmu_lock_op", 10);
    ns("stage2_map_base", 50);
    ns("stage2_walk_level", 5);
    ns("stage2_pte_update", 10);
    ns("stage2_free_entry", 1);
    ns("relax_perms_base", 20);
    ns("tlbi_ipa", 500);
    ns("tlbi_ipa_nsh", 40);
    ns("tlbi_vmid", 700);
    p.set("dcache_clean_byte", 10);
    p.set("icache_line", 64);
    ns("icache_inval_line", 1);
    ns("icache_inval_all", 3000);
    ns("mark_page_dirty", 10);
    ns("host_entry", 300);
    ns("memslot_update", 10'000);
    ns("stage2_walk_step", 2);
    ns("dirty_bitmap_word", 2);
    ns("sched_timeslice", 1'000'000);  // 1 ms
    ns("lock_yield", 50);
    ns("mmu_notifier_young", 20);
    ns("page_idle_page", 1000);
    ns("lru_gen_pte", 10);
    return p;
}

struct GuestAccess {
    vm::Gfn gfn;
    vm::Access access;
};

struct VcpuResult {
    std::uint64_t faults = 0;  // page_fault calls
    engine::Time done;
};

// A vCPU that performs `accesses` in order: every access that does not hit exits to the model and
// is retried until it hits. `think` is the guest time per access.
inline engine::Task<void> vcpu_program(engine::Simulator& sim, vm::MmuModel& m, vm::CpuContext ctx,
                                       std::vector<GuestAccess> accesses, engine::Time start, engine::Time think,
                                       VcpuResult& out) {
    co_await sim.delay(start);
    const auto v = static_cast<std::uint32_t>(ctx.vcpu);
    for (const GuestAccess& a : accesses) {
        while (!m.hits(v, a.gfn, a.access)) {
            ++out.faults;
            co_await m.page_fault(ctx, a.gfn, a.access);
        }
        const engine::Time t = think + (m.hit_assists() ? m.take_hit_assist(v) : engine::Time::zero());
        if (t > engine::Time::zero()) co_await sim.delay(t);
    }
    out.done = sim.now();
}

inline std::vector<GuestAccess> range(vm::Gfn first, std::uint64_t n, vm::Access a, std::uint64_t stride = 1) {
    std::vector<GuestAccess> v;
    v.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) v.push_back({first + i * stride, a});
    return v;
}

// A host actor running `body` after `start`.
inline engine::Task<void> actor(engine::Simulator& sim, engine::Time start, std::function<engine::Task<void>()> body,
                                engine::Time* done = nullptr) {
    co_await sim.delay(start);
    co_await body();
    if (done) *done = sim.now();
}

struct Harness {
    engine::Simulator sim;
    engine::CacheModel cache;
    vm::HostConfig host;
    vm::VmConfig vm;
    vm::Knobs knobs;
    std::unique_ptr<vm::ModelEnv> env;
    std::unique_ptr<vm::MmuModel> model;

    static constexpr vm::Gfn kBase = 0x100000;  // slot at 4 GiB

    Harness(vm::Backing backing, std::uint64_t npages, std::uint32_t vcpus, vm::Knobs k = {},
            std::uint64_t seed = 1, std::uint32_t cpus = 4)
        : sim(seed), cache(small_cache(cpus)), knobs(std::move(k)) {
        host.profile = "test";
        host.cpus = cpus;
        host.cache = small_cache(cpus);
        host.costs = test_costs();
        // One socket of `cpus` (topology.cpus() == host.cpus, as the loader guarantees).
        host.topology.sockets = 1;
        host.topology.cpus_per_socket = cpus;
        host.topology.line_local = engine::Time::ns(10);
        host.topology.line_same_socket = engine::Time::ns(60);
        host.topology.line_cross_socket = engine::Time::ns(130);
        // The host mm's features as Linux defaults them (v5.8+).
        host.features["thp_use_zero_page"] = true;
        host.features["thp_wp_zero_page_split"] = true;
        vm.vcpus = vcpus;
        vm::Memslot m;
        m.id = 0;
        m.base_gfn = kBase;
        m.npages = npages;
        m.backing = backing;
        vm.memslots.push_back(m);
    }

    template <class Factory>
    void build(Factory&& create) {
        env = std::make_unique<vm::ModelEnv>(vm::ModelEnv{sim, cache, host, vm, knobs});
        model = create(*env);
    }

    vm::CpuContext vcpu_ctx(std::uint32_t i) const {
        return vm::CpuContext{"vcpu" + std::to_string(i), i % host.cpus, static_cast<std::int32_t>(i)};
    }
    vm::CpuContext host_ctx(std::uint32_t cpu) const { return vm::CpuContext{"vmm", cpu, -1}; }

    std::uint64_t counter(std::string_view name) const { return sim.counters().total(name); }
    std::int64_t gauge(std::string_view name) const { return static_cast<std::int64_t>(sim.counters().total(name)); }

    // vCPU i runs `acc` from `start` (vcpu_program); a host actor runs `body` from `start`.
    void spawn_vcpu(std::uint32_t i, std::vector<GuestAccess> acc, engine::Time start, VcpuResult& out,
                    engine::Time think = engine::Time::ns(10)) {
        sim.spawn("vcpu" + std::to_string(i), vcpu_program(sim, *model, vcpu_ctx(i), std::move(acc), start, think, out));
    }
    void spawn_actor(std::string name, engine::Time start, std::function<engine::Task<void>()> body,
                     engine::Time* done = nullptr) {
        sim.spawn(std::move(name), actor(sim, start, std::move(body), done));
    }

    // Runs to completion; one vCPU took one fault that mapped one 4K page.
    void check_one_4k_fault(const VcpuResult& r) {
        REQUIRE(sim.run() == engine::RunStatus::Completed);
        CHECK(r.faults == 1);
        CHECK(counter("pf_taken") == 1);
        CHECK(counter("pf_fixed") == 1);
        CHECK(counter("pf_spurious") == 0);
        CHECK(gauge("pages_4k") == 1);
        CHECK(gauge("pages_2m") == 0);
    }

    std::optional<engine::LockRecord> lock(const std::string& lock, engine::LockMode mode, const std::string& site) const {
        for (const auto& r : sim.lock_stats().totals())
            if (sim.lock_stats().lock_name(r.lock) == lock && r.mode == mode && sim.lock_stats().site_name(r.site) == site)
                return r;
        return std::nullopt;
    }
};

}  // namespace kvmsim::testing
