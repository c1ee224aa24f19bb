// Unit tests of the MMU context (models/x86_context) and of its use by the TDP MMU for SMM
// transitions and roots: exact outcomes worked out from the kernel code followed.
#include <catch2/catch.hpp>

#include "models/registry.hpp"
#include "models/x86_context/x86_context.hpp"
#include "models/x86_tdp/x86_tdp.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::testing;
using namespace kvmsim::engine::time_literals;
using models::x86_context::CpuRole;
using models::x86_context::InitMode;
using models::x86_context::MmuContext;
using models::x86_context::RootRole;
using models::x86_tdp::X86TdpMmu;
using vm::Access;
using vm::Backing;
using vm::Gfn;

namespace {

// A root owner that hands out new hpas and records every get and put.
struct FakeRoots : models::x86_context::RootOps {
    bool direct = true;
    std::uint64_t next = 0x1000;
    std::vector<std::pair<std::uint64_t, Gfn>> gets;  // (hpa, pgd)
    std::vector<std::uint64_t> puts;
    RootRole root_role(const CpuRole& r) const override {
        RootRole rr;
        rr.direct = direct;
        rr.smm = r.smm;
        rr.guest_mode = r.guest_mode;
        return rr;
    }
    engine::Task<std::uint64_t> get_root(const vm::CpuContext&, RootRole, Gfn pgd) override {
        const std::uint64_t hpa = next;
        next += 0x1000;
        gets.emplace_back(hpa, pgd);
        co_return hpa;
    }
    engine::Task<void> put_roots(const vm::CpuContext&, std::vector<std::uint64_t> roots) override {
        for (auto r : roots) puts.push_back(r);
        co_return;
    }
};

models::x86_context::Costs ctx_costs() { return models::x86_context::Costs::from(test_costs()); }

struct Ctx {
    engine::Simulator sim{1};
    engine::CacheModel cache{small_cache(2)};
    models::KernelDataLayout kdata;
    FakeRoots roots;
    MmuContext ctx;
    explicit Ctx(InitMode mode, bool direct = true, std::uint32_t vcpus = 1,
                 models::x86_context::Which which = models::x86_context::Which::RootMmu)
        : ctx(sim, cache, kdata, ctx_costs(), mode, vcpus, (roots.direct = direct, roots), which) {}
    std::uint64_t n(std::string_view c) const { return sim.counters().total(c); }
    vm::CpuContext cpu(std::uint32_t v = 0) const { return {"vcpu" + std::to_string(v), v, static_cast<std::int32_t>(v)}; }
    // Runs one coroutine to completion.
    void run(std::function<engine::Task<void>()> body) {
        sim.spawn("t", [](std::function<engine::Task<void>()> b) -> engine::Task<void> { co_await b(); }(std::move(body)));
        REQUIRE(sim.run() == engine::RunStatus::Completed);
    }
    // Evicts every line of CPU 0's caches (touches 2 MiB elsewhere: twice the LLC of small_cache).
    void thrash() {
        for (std::uint64_t a = 0; a < 2 * 1024 * 1024; a += 64) cache.touch(0, 0x7000'0000'0000ULL + a, 8, false);
    }
};

CpuRole paging_role() {
    CpuRole r;
    r.cr0_pg = r.cr4_pae = r.efer_lma = true;
    return r;
}

}  // namespace

TEST_CASE("kvm_init_mmu returns early on an unchanged role and fully initializes on a change", "[x86_context]") {
    Ctx c(InitMode::FullEveryReset);
    const CpuRole r0;
    (void)c.ctx.init_mmu(0, 0, r0);
    CHECK(c.n("kvm_init_mmu_full") == 1);
    const engine::Time early = c.ctx.init_mmu(0, 0, r0);
    CHECK(c.n("kvm_init_mmu") == 2);
    CHECK(c.n("kvm_init_mmu_early_return") == 1);
    CHECK(c.n("kvm_init_mmu_full") == 1);
    // The early return pays the role computation and one (warm) read of the role line only.
    CHECK(early == 10_ns + 1_ns);
    CpuRole smm = r0;
    smm.smm = true;
    (void)c.ctx.init_mmu(0, 0, smm);
    CHECK(c.n("kvm_init_mmu_full") == 2);
    CHECK(c.ctx.mmu(0).root_role.smm);
    (void)c.ctx.init_mmu(0, 0, smm);
    CHECK(c.n("kvm_init_mmu_early_return") == 2);
}

TEST_CASE("a full init writes struct kvm_mmu field by field; constant fields once per vCPU", "[x86_context]") {
    // Non-paging guest (firmware): roles 2 + callbacks 5 + gva_to_gpa 1 + shadow_zero_check 11 = 19
    // stores on lines 0..3; reset_guest_paging_metadata returns at once (CR0.PG = 0).
    Ctx full(InitMode::FullEveryReset), once(InitMode::ConstantOnce);
    CpuRole a, b;
    b.smm = true;
    for (Ctx* c : {&full, &once}) {
        (void)c->ctx.init_mmu(0, 0, a);
        CHECK(c->n("mmu_init_field_writes") == 19);  // the first init writes everything in both modes
        CHECK(c->n("mmu_init_cache_lines") == 4);
        CHECK(c->n("mmu_init_cache_miss") == 4);  // cold: the role line (read) and lines 0, 2, 3
        c->thrash();
        (void)c->ctx.init_mmu(0, 0, b);
    }
    CHECK(full.n("mmu_init_field_writes") == 19 + 19);
    CHECK(full.n("mmu_init_cache_lines") == 4 + 4);
    CHECK(full.n("mmu_init_cache_miss") == 4 + 4);
    // Constant once: only cpu_role, root_role and gva_to_gpa (lines 1 and 0).
    CHECK(once.n("mmu_init_field_writes") == 19 + 3);
    CHECK(once.n("mmu_init_cache_lines") == 4 + 2);
    CHECK(once.n("mmu_init_cache_miss") == 4 + 2);
    CHECK(once.n("kvm_init_mmu_ps") < full.n("kvm_init_mmu_ps"));

    // A paging guest also gets guest_rsvd_check (11), permissions (16, a 16-entry loop) and
    // pkru_mask (1): 47 stores on all six lines, in eight runs of stores to one line (lines 1 0 4
    // 5 2 1 2 3).
    Ctx p(InitMode::FullEveryReset);
    (void)p.ctx.init_mmu(0, 0, paging_role());
    CHECK(p.n("mmu_init_field_writes") == 47);
    CHECK(p.n("mmu_init_cache_lines") == 8);
    CHECK(p.n("mmu_init_cache_miss") == 6);  // the role read (line 1), then the first store to each other line
}

TEST_CASE("kvm_mmu_reset_context unloads the current root and every prev_root, then reinitializes", "[x86_context]") {
    Ctx c(InitMode::FullEveryReset, /*direct=*/false);
    c.ctx.set_loaded_root(0, CpuRole{}, 0x100);
    CHECK(c.ctx.root_loaded(0));
    c.run([&]() -> engine::Task<void> {
        co_await c.ctx.new_pgd(c.cpu(), 5);  // 0x100 (pgd 0) goes to prev_roots
        co_await c.ctx.reload(c.cpu());
        CpuRole smm;
        smm.smm = true;
        co_await c.ctx.reset_context(c.cpu(), smm);
    });
    CHECK_FALSE(c.ctx.root_loaded(0));
    REQUIRE(c.roots.puts.size() == 2);
    CHECK(c.roots.puts[0] == 0x1000);  // the current root first, then prev_roots
    CHECK(c.roots.puts[1] == 0x100);
    CHECK(c.n("kvm_mmu_reset_context") == 1);
    CHECK(c.n("kvm_init_mmu_full") == 1);
    for (const auto& r : c.ctx.mmu(0).prev_roots) CHECK_FALSE(r.valid());
}

TEST_CASE("kvm_mmu_new_pgd: the prev_roots LRU hits, misses and evicts the least recently used root", "[x86_context]") {
    Ctx c(InitMode::FullEveryReset, /*direct=*/false);
    (void)c.ctx.init_mmu(0, 0, CpuRole{});
    std::vector<bool> hits;
    auto sw = [&](Gfn pgd) -> engine::Task<void> {
        hits.push_back(co_await c.ctx.new_pgd(c.cpu(), pgd));
        co_await c.ctx.reload(c.cpu());
    };
    c.run([&]() -> engine::Task<void> {
        for (Gfn pgd : {1, 2, 3, 4}) co_await sw(pgd);  // four misses: prev_roots = 3 2 1
        co_await sw(5);                                // miss: 1 (least recent) is freed
        co_await sw(2);                                // hit in prev_roots
        co_await sw(2);                                // hit on the current root
        co_await sw(1);                                // miss: 1 was evicted; 3 goes now
    });
    CHECK(hits == std::vector<bool>{false, false, false, false, false, true, true, false});
    CHECK(c.n("prev_roots_hit") == 2);
    CHECK(c.n("prev_roots_miss") == 6);
    // Roots were allocated for pgds 1 2 3 4 5 and 1 again; freed: pgd 1's, then pgd 3's.
    REQUIRE(c.roots.gets.size() == 6);
    REQUIRE(c.roots.puts.size() == 2);
    auto hpa_of = [&](Gfn pgd) {
        for (auto& [h, g] : c.roots.gets)
            if (g == pgd) return h;
        return std::uint64_t{0};
    };
    CHECK(c.roots.puts[0] == hpa_of(1));
    CHECK(c.roots.puts[1] == hpa_of(3));
    const auto& m = c.ctx.mmu(0);
    CHECK(m.root.pgd == 1);
    CHECK(m.prev_roots[0].pgd == 2);
    CHECK(m.prev_roots[1].pgd == 5);
    CHECK(m.prev_roots[2].pgd == 4);
}

TEST_CASE("kvm_mmu_free_roots frees only the roots named; INVEPT's single-context match", "[x86_context]") {
    namespace xc = models::x86_context;
    Ctx c(InitMode::FullEveryReset, /*direct=*/false);
    (void)c.ctx.init_mmu(0, 0, CpuRole{});
    std::size_t freed_none = 9, freed_two = 9;
    bool loaded_again = false, hit_again = true;
    c.run([&]() -> engine::Task<void> {
        for (Gfn pgd : {1, 2, 3}) {
            (void)co_await c.ctx.new_pgd(c.cpu(), pgd);
            (void)co_await c.ctx.reload(c.cpu());
        }
        // Current 3, prev_roots 2 1.
        CHECK(c.ctx.roots_matching(0, 3) == xc::kRootCurrent);
        CHECK(c.ctx.roots_matching(0, 2) == xc::root_previous(0));
        CHECK(c.ctx.roots_matching(0, 1) == xc::root_previous(1));
        CHECK(c.ctx.roots_matching(0, 9) == 0);
        freed_none = co_await c.ctx.free_roots(c.cpu(), c.ctx.roots_matching(0, 9));
        freed_two = co_await c.ctx.free_roots(c.cpu(), c.ctx.roots_matching(0, 2));
        // pgd 2's root is gone: switching back misses and loads a new root.
        hit_again = co_await c.ctx.new_pgd(c.cpu(), 2);
        loaded_again = co_await c.ctx.reload(c.cpu());
    });
    CHECK(freed_none == 0);
    CHECK(freed_two == 1);
    CHECK_FALSE(hit_again);
    CHECK(loaded_again);
    REQUIRE(c.roots.puts.size() == 1);
    CHECK(c.roots.puts[0] == c.roots.gets[1].first);  // pgd 2's
    CHECK(c.roots.gets.size() == 4);
    CHECK(c.n("kvm_mmu_free_roots_puts") == 1);
    // A reload with a root loaded does nothing.
    bool loaded = true;
    c.run([&]() -> engine::Task<void> { loaded = co_await c.ctx.reload(c.cpu()); });
    CHECK_FALSE(loaded);
}

TEST_CASE("guest_mmu: kvm_init_shadow_ept_mmu's writes on a role change, counted apart from kvm_init_mmu",
          "[x86_context]") {
    Ctx g(InitMode::FullEveryReset, /*direct=*/false, 1, models::x86_context::Which::GuestMmu);
    CpuRole ept;
    ept.guest_mode = true;
    (void)g.ctx.init_mmu(0, 0, ept);
    CHECK(g.n("kvm_init_shadow_ept_mmu_full") == 1);
    CHECK(g.n("kvm_init_mmu") == 0);
    // Roles 2, callbacks 3, permissions 16 (a 16-entry loop), pkru_mask 1, guest_rsvd_check 11,
    // shadow_zero_check 11: 44 stores in runs on lines 1 0 2 1 4 5 2 3.
    CHECK(g.n("guest_mmu_init_field_writes") == 44);
    CHECK(g.n("guest_mmu_init_cache_lines") == 8);
    CHECK(g.n("mmu_init_field_writes") == 0);
    (void)g.ctx.init_mmu(0, 0, ept);  // the next nested VM-entry: same role
    CHECK(g.n("kvm_init_shadow_ept_mmu_early_return") == 1);
    CHECK(g.n("guest_mmu_init_field_writes") == 44);
    CHECK_FALSE(g.ctx.mmu(0).root_role.direct);
    CHECK(g.ctx.mmu(0).root_role.guest_mode);
}

TEST_CASE("a direct root is usable whatever the pgd: CR3 loads under TDP keep the root", "[x86_context]") {
    Ctx c(InitMode::FullEveryReset, /*direct=*/true);
    c.ctx.set_loaded_root(0, CpuRole{}, 0x100);
    bool hit = false;
    c.run([&]() -> engine::Task<void> { hit = co_await c.ctx.new_pgd(c.cpu(), 77); });
    CHECK(hit);
    CHECK(c.roots.puts.empty());
    CHECK(c.ctx.mmu(0).root.hpa == 0x100);
}

// ---------------------------------------------------------------------------------------------
// The TDP MMU with SMM

namespace {

std::unique_ptr<vm::MmuModel> make_tdp(vm::ModelEnv& env) { return models::builtin_models().find("x86_tdp")->create(env); }

struct Smm : Harness {
    Smm(std::uint32_t vcpus, std::string unload, std::string init = "full_every_reset")
        : Harness(Backing::Anonymous, 512, vcpus,
                  {{"tdp_root_unload", std::move(unload)}, {"mmu_init", std::move(init)}}) {
        build(make_tdp);
        for (std::uint32_t v = 0; v < vcpus; ++v) ctxs.push_back(vcpu_ctx(v));
    }
    std::vector<vm::CpuContext> ctxs;  // outlive the transitions that refer to them
    X86TdpMmu& tdp() { return static_cast<X86TdpMmu&>(*model); }
    // SMBASE at the slot's start (the state-save area at +0xfe00 is in guest memory); no handler
    // working set unless a test gives one.
    vm::SmiHandler handler{kBase * vm::kPageSize, kBase * vm::kPageSize, 0, 0};
    void transition(std::uint32_t v, engine::Time at, bool enter) {
        sim.spawn(enter ? "smi" : "rsm",
                  actor(sim, at, [this, v, enter]() { return model->smm_transition(ctxs[v], enter, handler); }));
    }
    void vcpu(std::uint32_t v, std::vector<GuestAccess> acc, engine::Time start, VcpuResult& out,
              engine::Time think = 10_ns) {
        sim.spawn("vcpu" + std::to_string(v), vcpu_program(sim, *model, vcpu_ctx(v), std::move(acc), start, think, out));
    }
};

constexpr Gfn B = Harness::kBase;

}  // namespace

TEST_CASE("an SMI resets the MMU context twice and an RSM once", "[x86_context][x86_tdp]") {
    Smm s(1, "preserve");
    s.transition(0, 1_us, true);
    s.transition(0, 20_us, false);
    REQUIRE(s.sim.run() == engine::RunStatus::Completed);
    CHECK(s.counter("kvm_smm_transition_enter") == 1);
    CHECK(s.counter("kvm_smm_transition_exit") == 1);
    CHECK(s.counter("kvm_mmu_reset_context") == 3);
    CHECK(s.counter("kvm_init_mmu") == 3);
    // enter_smm: kvm_smm_changed flips role.smm (full init); its final reset sees the same role.
    CHECK(s.counter("kvm_init_mmu_full") == 2);
    CHECK(s.counter("kvm_init_mmu_early_return") == 1);
    CHECK(s.counter("kvm_mmu_load") == 2);  // the SMM root, then the normal root again
    CHECK_FALSE(s.tdp().in_smm(0));
}

TEST_CASE("SMM transitions that cannot happen are counted and ignored", "[x86_context][x86_tdp]") {
    Smm s(1, "preserve");
    s.transition(0, 1_us, false);  // RSM outside SMM
    s.transition(0, 2_us, true);
    s.transition(0, 3_us, true);   // SMI in SMM: latched
    REQUIRE(s.sim.run() == engine::RunStatus::Completed);
    CHECK(s.counter("kvm_smm_transition_ignored") == 2);
    CHECK(s.counter("kvm_smm_transition_enter") == 1);
    CHECK(s.tdp().in_smm(0));
}

TEST_CASE("roots dropped on unload are rebuilt by faults; preserved roots are found again", "[x86_context][x86_tdp]") {
    for (const char* mode : {"drop", "preserve"}) {
        Smm s(1, mode);
        VcpuResult first, second;
        // 64 faults (a few us each) end before the SMI at 500 us; the second pass starts after RSM.
        s.vcpu(0, range(B, 64, Access::Write), 0_ns, first, 1_us);
        s.vcpu(0, range(B, 64, Access::Read), 600_us, second, 1_us);
        s.transition(0, 500_us, true);
        s.transition(0, 520_us, false);
        REQUIRE(s.sim.run() == engine::RunStatus::Completed);
        CHECK(first.done < 500_us);
        CHECK(s.gauge("pages_4k") == 64);
        if (std::string(mode) == "drop") {
            CHECK(s.counter("tdp_mmu_root_free") == 2);   // the normal root at SMI, the SMM root at RSM
            CHECK(s.counter("tdp_mmu_root_alloc") == 2);  // the SMM root, then a new normal root
            CHECK(s.counter("root_rebuild_faults") == 64);
            CHECK(s.counter("pf_fixed") == 128);
            CHECK(s.tdp().tdp_mmu_pages() > 0);
        } else {
            CHECK(s.counter("tdp_mmu_root_free") == 0);
            CHECK(s.counter("tdp_mmu_root_alloc") == 1);  // the SMM root only
            CHECK(s.counter("tdp_mmu_root_reuse") == 1);  // the normal root, found again at RSM
            CHECK(s.counter("root_rebuild_faults") == 0);
            CHECK(s.counter("pf_fixed") == 64);
            CHECK(s.tdp().tdp_mmu_roots() == 2);
        }
    }
}

TEST_CASE("the guest stream of a vCPU in SMM waits for RSM", "[x86_context][x86_tdp]") {
    Smm s(1, "preserve");
    VcpuResult out;
    s.vcpu(0, range(B, 4, Access::Read), 0_ns, out, 10_us);
    s.transition(0, 12_us, true);
    s.transition(0, 100_us, false);
    REQUIRE(s.sim.run() == engine::RunStatus::Completed);
    CHECK(s.counter("smm_stalled_accesses") == 1);
    // Without SMM the four accesses end by about 40 us plus four faults; with it, after RSM.
    CHECK(out.done > 100_us);
    CHECK(s.counter("pf_taken") == 4);  // a stall is not a fault
}

TEST_CASE("a root shared by vCPUs is not freed when one of them unloads it", "[x86_context][x86_tdp]") {
    Smm s(2, "drop");
    VcpuResult o0, o1;
    s.vcpu(0, range(B, 32, Access::Write), 0_ns, o0, 1_us);
    s.vcpu(1, range(B + 32, 32, Access::Write), 0_ns, o1, 1_us);
    const std::uint64_t root = s.tdp().root_hpa();
    CHECK(s.tdp().root_refcount(root) == 2);  // one per vCPU (no TDP MMU reference before v6.4)
    s.transition(0, 500_us, true);
    s.transition(0, 520_us, false);
    REQUIRE(s.sim.run() == engine::RunStatus::Completed);
    CHECK(s.tdp().root_hpa() == root);
    CHECK(s.tdp().root_refcount(root) == 2);          // vCPU0 took it again at RSM
    CHECK(s.counter("tdp_mmu_root_free") == 1);       // only the SMM root
    CHECK(s.counter("tdp_mmu_root_reuse") == 1);
    CHECK(s.counter("root_rebuild_faults") == 0);
    CHECK(s.gauge("pages_4k") == 64);

    Smm p(2, "preserve");
    CHECK(p.tdp().root_refcount(p.tdp().root_hpa()) == 3);  // plus the TDP MMU's own (v6.4+)
}

// enter_smm writes the 512-byte state-save image to guest memory at SMBASE + 0xfe00
// (kvm_vcpu_write_guest, which marks the page dirty); emulator_leave_smm reads it back.
TEST_CASE("the SMRAM state-save image goes to guest memory at SMBASE + 0xfe00", "[x86_context][x86_tdp]") {
    Smm s(1, "preserve");
    s.spawn_actor("enable", 0_ns, [&]() -> engine::Task<void> { co_await s.model->dirty_log_enable(s.host_ctx(3), 0, {}); });
    s.transition(0, 1_ms, true);
    s.transition(0, 2_ms, false);
    REQUIRE(s.sim.run() == engine::RunStatus::Completed);
    CHECK(s.counter("smram_state_save_lines") == 16);  // 8 lines written at the SMI, 8 read at RSM
    CHECK(s.counter("mark_page_dirty_in_slot") == 1);  // the write only
    CHECK(s.tdp().dirty(0, B + 0xf));
    CHECK_FALSE(s.tdp().dirty(0, B + 0xe));
}

// The guest's SMI handler touches its working set on the vCPU's host CPU while in SMM. 40 KiB
// fill the 32 KiB L1 of small_cache, so struct kvm_mmu is cold in L1 (warm in the LLC) at RSM:
// kvm_mmu_unload's two lines (root, prev_roots) miss, then a full init's stores to lines 2 and 3
// (shadow_zero_check) miss too; with constant_once the init never touches them.
TEST_CASE("the SMI handler's working set makes RSM's MMU re-initialization miss the cache", "[x86_context][x86_tdp]") {
    struct Run {
        std::uint64_t miss, init_ps, handler_lines;
    };
    auto run = [](const char* init, std::uint64_t read, std::uint64_t write) {
        Smm s(1, "preserve", init);
        s.handler.read_bytes = read;
        s.handler.write_bytes = write;
        s.transition(0, 1_us, true);
        s.transition(0, 200_us, false);
        REQUIRE(s.sim.run() == engine::RunStatus::Completed);
        CHECK(s.counter("kvm_init_mmu_full") == 2);
        return Run{s.counter("mmu_init_cache_miss"), s.counter("kvm_init_mmu_ps"), s.counter("smi_handler_lines")};
    };
    const Run full0 = run("full_every_reset", 0, 0), full = run("full_every_reset", 32 * 1024, 8 * 1024);
    const Run once0 = run("constant_once", 0, 0), once = run("constant_once", 32 * 1024, 8 * 1024);
    CHECK(full.handler_lines == 640);
    CHECK(full0.handler_lines == 0);
    // The SMI finds struct kvm_mmu cold (never touched): full init 4 misses (unload's lines 0 and
    // 1, the init's lines 2 and 3), constant_once 2. Without a handler RSM hits everything.
    CHECK(full0.miss == 4);
    CHECK(once0.miss == 2);
    CHECK(full.miss == 4 + 4);
    CHECK(once.miss == 2 + 2);
    // RSM's full init pays two LLC hits (10 ns) instead of L1 hits (1 ns); constant_once's init
    // touches only lines the unload has just brought back.
    CHECK(full.init_ps - full0.init_ps == 2 * 9000);
    CHECK(once.init_ps == once0.init_ps);
}

TEST_CASE("RSM waits for the SMI handler, whose time is its memory accesses", "[x86_context][x86_tdp]") {
    auto done = [](std::uint64_t read) {
        Smm s(1, "preserve");
        s.handler.read_bytes = read;
        VcpuResult out;
        s.vcpu(0, range(B, 1, Access::Read), 3_us, out);
        s.transition(0, 1_us, true);
        s.transition(0, 2_us, false);  // executed when the handler reaches RSM
        REQUIRE(s.sim.run() == engine::RunStatus::Completed);
        CHECK(s.counter("smm_stalled_accesses") == 1);
        return out.done;
    };
    // 512 cold lines at 50 ns (small_cache's memory latency) keep the vCPU in SMM 25.6 us longer;
    // RSM's own touches of lines the handler evicted from L1 add a little.
    const engine::Time extra = done(32 * 1024) - done(0);
    CHECK(extra >= 25600_ns);
    CHECK(extra < 25600_ns + 500_ns);
}
