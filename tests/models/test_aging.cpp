// Unit tests of access tracking (clear_young / test_young -> kvm_age_gfn / kvm_test_age_gfn) in
// x86_tdp and arm64_stage2: the lock modes taken, the SPTEs aged, what a later guest access does.
#include <catch2/catch.hpp>

#include "models/arm64_stage2/arm64_stage2.hpp"
#include "models/registry.hpp"
#include "models/x86_shadow/x86_shadow.hpp"
#include "models/x86_tdp/x86_tdp.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::testing;
using namespace kvmsim::engine::time_literals;
using kvmsim::models::arm64_stage2::Arm64Stage2;
using kvmsim::models::x86_tdp::X86TdpMmu;
using engine::LockMode;
using vm::Access;
using vm::Backing;
using vm::Gfn;

namespace {

constexpr Gfn B = Harness::kBase;

std::unique_ptr<vm::MmuModel> make(vm::ModelEnv& env, const char* name) {
    return models::builtin_models().find(name)->create(env);
}

struct Tdp : Harness {
    explicit Tdp(vm::Knobs k = {}, std::uint32_t vcpus = 1, std::uint64_t npages = 1024)
        : Harness(Backing::Anonymous, npages, vcpus, std::move(k)) {
        build([](vm::ModelEnv& e) { return make(e, "x86_tdp"); });
    }
    X86TdpMmu& tdp() { return static_cast<X86TdpMmu&>(*model); }
};

struct Shadow : Harness {
    explicit Shadow(vm::Knobs k = {}) : Harness(Backing::Anonymous, 1024, 1, std::move(k)) {
        auto ns = [&](const char* n, double v) { host.costs.set(n, v * 1000.0); };
        for (const char* n : {"shadow_fault_base", "hash_entry_step", "sp_alloc_base", "account_shadowed", "rmap_op",
                              "rmap_head_step", "sp_zap_base", "rmap_alloc_per_4k", "guest_walk_level",
                              "shadow_root_alloc", "nested_transition", "sync_spte", "emulate_write", "max_mapping_level"})
            ns(n, 5);
        build([](vm::ModelEnv& e) { return make(e, "x86_shadow"); });
    }
};

struct A64 : Harness {
    explicit A64(vm::Knobs k = {}, bool hafdbs = false, std::uint32_t vcpus = 1, std::uint64_t npages = 1024)
        : Harness(Backing::Anonymous, npages, vcpus, std::move(k)) {
        host.costs = arm64_test_costs();
        host.features["fwb"] = false;
        host.features["hafdbs"] = hafdbs;
        build([](vm::ModelEnv& e) { return make(e, "arm64_stage2"); });
    }
    Arm64Stage2& m() { return static_cast<Arm64Stage2&>(*model); }
};

vm::AgeRequest age(Gfn start, Gfn end, bool clear = true, vm::AgeCaller via = vm::AgeCaller::PageIdle) {
    vm::AgeRequest r;
    r.start = start;
    r.end = end;
    r.clear = clear;
    r.via = via;
    return r;
}

// Writes pages [B, B + n) on vCPU 0, then runs `body` on a host thread once the vCPU is done.
template <class H>
void populate_then(H& h, std::uint64_t n, std::function<engine::Task<void>()> body) {
    VcpuResult r;
    h.spawn_vcpu(0, range(B, n, Access::Write), 0_ns, r);
    h.spawn_actor("aging", 1_ms, std::move(body));
    REQUIRE(h.sim.run() == engine::RunStatus::Completed);
    REQUIRE(r.faults == n);
}

}  // namespace

TEST_CASE("age_lock: x86_tdp has write and lockless, arm64_stage2 write and read; the others are rejected",
          "[aging]") {
    const vm::ModelInfo* tdp = models::builtin_models().find("x86_tdp");
    const vm::ModelInfo* a64 = models::builtin_models().find("arm64_stage2");
    REQUIRE(tdp->knob("age_lock"));
    CHECK(tdp->knob("age_lock")->choices == std::vector<std::string>{"write", "lockless"});
    CHECK(a64->knob("age_lock")->choices == std::vector<std::string>{"write", "read"});
    CHECK(std::get<std::string>(tdp->knob("age_lock")->default_value) == "write");
    CHECK(std::get<std::string>(a64->knob("age_lock")->default_value) == "write");
    REQUIRE(tdp->knob("age_lock")->refused_choices.size() == 1);
    CHECK(tdp->knob("age_lock")->refused_choices[0].first == "read");
    REQUIRE(a64->knob("age_lock")->refused_choices.size() == 1);
    CHECK(a64->knob("age_lock")->refused_choices[0].first == "lockless");
    CHECK(tdp->supports(vm::Operation::ClearYoung));
    CHECK(a64->supports(vm::Operation::TestYoung));
    Harness h(Backing::Anonymous, 512, 1, {{"age_lock", std::string("read")}});
    CHECK_THROWS_WITH(h.build([](vm::ModelEnv& e) { return make(e, "x86_tdp"); }), Catch::Contains("age_lock"));
    Harness h2(Backing::Anonymous, 512, 1, {{"age_lock", std::string("lockless")}});
    h2.host.costs = arm64_test_costs();
    h2.host.features["fwb"] = false;
    CHECK_THROWS_WITH(h2.build([](vm::ModelEnv& e) { return make(e, "arm64_stage2"); }), Catch::Contains("age_lock"));
}

TEST_CASE("x86_tdp clear_young under the write lock: one mmu_lock write per notified page, each mapped SPTE aged "
          "once, no TLB flush",
          "[aging][x86_tdp]") {
    Tdp t;
    std::uint64_t first = 0, second = 0, tested = 99;
    populate_then(t, 8, [&]() -> engine::Task<void> {
        first = co_await t.model->age_range(t.host_ctx(3), age(B, B + 16));
        second = co_await t.model->age_range(t.host_ctx(3), age(B, B + 16));
        tested = co_await t.model->age_range(t.host_ctx(3), age(B, B + 16, false));
    });
    CHECK(first == 8);
    CHECK(second == 0);  // nothing accessed in between: every Accessed bit is still clear
    CHECK(tested == 0);
    CHECK(t.counter("sptes_aged") == 8);
    CHECK(t.counter("kvm_age_gfn") == 32);  // 16 pages notified twice
    CHECK(t.counter("kvm_test_age_gfn") == 16);
    const auto w = t.lock("mmu_lock", LockMode::Write, "kvm_age_gfn");
    REQUIRE(w);
    CHECK(w->acquisitions == 32);
    CHECK(t.lock("mmu_lock", LockMode::Write, "kvm_test_age_gfn")->acquisitions == 16);
    CHECK(t.counter("remote_tlb_flush") == 0);
    CHECK(t.tdp().aged(B));
    CHECK(t.tdp().aged(B + 7));
    CHECK_FALSE(t.tdp().aged(B + 8));  // never mapped
}

TEST_CASE("x86_tdp with A/D bits: an access to an aged page hits (the CPU sets the Accessed bit), and the next "
          "pass finds it young",
          "[aging][x86_tdp]") {
    Tdp t;
    std::uint64_t again = 0;
    VcpuResult r, r2;
    t.spawn_vcpu(0, range(B, 4, Access::Write), 0_ns, r);
    t.spawn_actor("aging", 1_ms, [&]() -> engine::Task<void> {
        co_await t.model->age_range(t.host_ctx(3), age(B, B + 4));
    });
    t.spawn_vcpu(0, range(B, 2, Access::Read), 2_ms, r2);
    t.spawn_actor("again", 3_ms, [&]() -> engine::Task<void> {
        again = co_await t.model->age_range(t.host_ctx(3), age(B, B + 4));
    });
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r2.faults == 0);
    CHECK(again == 2);  // the two pages read in between
    CHECK(t.counter("sptes_aged") == 4 + 2);
}

TEST_CASE("x86_tdp lockless aging takes no mmu_lock and does not stall faults; the write lock does", "[aging][x86_tdp]") {
    auto run = [](const std::string& mode) {
        auto t = std::make_unique<Tdp>(vm::Knobs{{"age_lock", mode}}, 1, 4096);
        VcpuResult r;
        // Pages mapped before aging starts, then the vCPU faults in the rest while the host ages
        // the whole slot again and again.
        t->spawn_vcpu(0, range(B, 4096, Access::Write), 0_ns, r);
        t->spawn_actor("aging", 20_us, [&]() -> engine::Task<void> {
            for (int i = 0; i < 4; ++i) co_await t->model->age_range(t->host_ctx(3), age(B, B + 4096, true, vm::AgeCaller::LruGen));
        });
        REQUIRE(t->sim.run() == engine::RunStatus::Completed);
        return t;
    };
    auto w = run("write");
    auto l = run("lockless");
    const auto wf = w->lock("mmu_lock", LockMode::Read, "kvm_tdp_mmu_page_fault");
    const auto lf = l->lock("mmu_lock", LockMode::Read, "kvm_tdp_mmu_page_fault");
    REQUIRE(wf);
    REQUIRE(lf);
    CHECK(wf->contended > 0);
    CHECK(lf->contended == 0);
    CHECK(w->lock("mmu_lock", LockMode::Write, "kvm_age_gfn")->acquisitions == 4 * 4096);
    CHECK_FALSE(l->lock("mmu_lock", LockMode::Write, "kvm_age_gfn"));
    CHECK(l->counter("kvm_age_gfn") == 4 * 4096);
}

TEST_CASE("arm64_stage2 clear_young clears the AF under mmu_lock write; the next access takes an access-flag "
          "fault under the read lock, then hits",
          "[aging][arm64]") {
    A64 t;
    std::uint64_t young = 0;
    VcpuResult r2;
    populate_then(t, 8, [&]() -> engine::Task<void> {
        young = co_await t.model->age_range(t.host_ctx(3), age(B, B + 8));
    });
    CHECK(young == 8);
    CHECK(t.counter("sptes_aged") == 8);
    CHECK(t.lock("mmu_lock", LockMode::Write, "kvm_age_gfn")->acquisitions == 8);
    CHECK(t.m().aged(B + 3));
    CHECK_FALSE(t.model->hits(0, B + 3, Access::Read));  // AF clear, no FEAT_HAFDBS
    const std::uint64_t taken = t.counter("pf_taken");
    t.spawn_vcpu(0, {{B + 3, Access::Read}}, 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r2.faults == 1);
    CHECK(t.counter("kvm_access_fault") == 1);
    CHECK(t.counter("pf_taken") == taken);  // not user_mem_abort
    CHECK(t.lock("mmu_lock", LockMode::Read, "handle_access_fault")->acquisitions == 1);
    CHECK_FALSE(t.m().aged(B + 3));
    CHECK(t.model->hits(0, B + 3, Access::Read));
    CHECK(t.m().aged(B + 4));
}

TEST_CASE("arm64_stage2 with FEAT_HAFDBS: an aged page hits and the CPU sets its AF", "[aging][arm64]") {
    A64 t({}, true);
    populate_then(t, 4, [&]() -> engine::Task<void> {
        co_await t.model->age_range(t.host_ctx(3), age(B, B + 4));
    });
    CHECK(t.m().aged(B));
    CHECK(t.model->hits(0, B, Access::Write));
    CHECK_FALSE(t.m().aged(B));
    CHECK(t.counter("kvm_access_fault") == 0);
}

TEST_CASE("arm64_stage2 age_lock read takes mmu_lock for read", "[aging][arm64]") {
    A64 t({{"age_lock", std::string("read")}});
    populate_then(t, 4, [&]() -> engine::Task<void> {
        co_await t.model->age_range(t.host_ctx(3), age(B, B + 4, false));
    });
    CHECK(t.lock("mmu_lock", LockMode::Read, "kvm_test_age_gfn")->acquisitions == 4);
    CHECK_FALSE(t.lock("mmu_lock", LockMode::Write, "kvm_test_age_gfn"));
    CHECK(t.counter("kvm_test_age_gfn_young") == 4);
    CHECK_FALSE(t.m().aged(B));  // test_young clears nothing
}

TEST_CASE("arm64_stage2 with the spinlock: the access-flag fault takes it exclusively", "[aging][arm64]") {
    A64 t({{"mmu_lock", std::string("spinlock")}});
    VcpuResult r2;
    populate_then(t, 2, [&]() -> engine::Task<void> {
        co_await t.model->age_range(t.host_ctx(3), age(B, B + 2));
    });
    t.spawn_vcpu(0, {{B, Access::Write}, {B + 1, Access::Read}}, 0_ns, r2);
    REQUIRE(t.sim.run() == engine::RunStatus::Completed);
    CHECK(r2.faults == 2);
    CHECK(t.counter("kvm_access_fault") == 2);
    CHECK(t.lock("mmu_lock", LockMode::Exclusive, "handle_access_fault")->acquisitions == 2);
}

TEST_CASE("x86_shadow (TDP MMU off) ages through the rmaps: under mmu_lock write per notified page, or with the "
          "rmap heads locked (lockless)",
          "[aging][x86_shadow]") {
    for (const std::string mode : {"write", "lockless"}) {
        Shadow t({{"age_lock", mode}});
        std::uint64_t first = 0, second = 0, third = 0;
        VcpuResult r2;
        populate_then(t, 8, [&]() -> engine::Task<void> {
            first = co_await t.model->age_range(t.host_ctx(3), age(B, B + 16));
            second = co_await t.model->age_range(t.host_ctx(3), age(B, B + 16));
        });
        CHECK(first == 8);
        CHECK(second == 0);
        CHECK(t.counter("sptes_aged") == 8);
        CHECK(t.counter("kvm_age_gfn") == 32);
        const auto w = t.lock("mmu_lock", LockMode::Write, "kvm_age_gfn");
        if (mode == "write") {
            REQUIRE(w);
            CHECK(w->acquisitions == 32);
        } else {
            CHECK_FALSE(w);
        }
        // EPT A/D bits: reading two aged pages hits, and the next pass finds those two young.
        t.spawn_vcpu(0, range(B, 2, Access::Read), 0_ns, r2);
        t.spawn_actor("again", 1_ms, [&]() -> engine::Task<void> {
            third = co_await t.model->age_range(t.host_ctx(3), age(B, B + 16));
        });
        REQUIRE(t.sim.run() == engine::RunStatus::Completed);
        CHECK(r2.faults == 0);
        CHECK(third == 2);
    }
}
