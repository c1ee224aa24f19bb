// Unit tests of the x86 shadow MMU model: exact, mechanism-derived outcomes on small VMs.
#include <algorithm>
#include <catch2/catch.hpp>

#include <map>
#include <optional>

#include "models/registry.hpp"
#include "models/x86_shadow/x86_shadow.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::testing;
using namespace kvmsim::engine::time_literals;
using kvmsim::models::x86_shadow::X86ShadowMmu;
using vm::Access;
using vm::Backing;
using vm::Gfn;
using vm::PageLevel;
namespace xs = kvmsim::models::x86_shadow;

namespace {

std::unique_ptr<vm::MmuModel> make_shadow(vm::ModelEnv& env) {
    return models::builtin_models().find("x86_shadow")->create(env);
}

struct Shadow : Harness {
    Shadow(Backing b, std::uint64_t npages, std::uint32_t vcpus, vm::Knobs k = {}, double max_mapping_level_ns = 20,
           bool pml = false)
        : Harness(b, npages, vcpus, std::move(k)) {
        host.features["pml"] = pml;
        auto ns = [&](const char* n, double v) { host.costs.set(n, v * 1000.0); };
        ns("shadow_fault_base", 400);
        ns("hash_entry_step", 2);
        ns("sp_alloc_base", 50);
        ns("account_shadowed", 50);
        ns("rmap_op", 5);
        ns("rmap_head_step", 1);
        ns("sp_zap_base", 100);
        ns("rmap_alloc_per_4k", 1);
        ns("guest_walk_level", 10);
        ns("shadow_root_alloc", 100);
        ns("nested_transition", 1000);
        ns("sync_spte", 10);
        ns("emulate_write", 500);
        ns("max_mapping_level", max_mapping_level_ns);
        build(make_shadow);
        for (std::uint32_t i = 0; i < vcpus; ++i) vctx.push_back(vcpu_ctx(i));
    }
    // Contexts outlive the coroutines that take them by reference.
    std::vector<vm::CpuContext> vctx;
    vm::CpuContext hctx = host_ctx(3);
    X86ShadowMmu& sh() { return static_cast<X86ShadowMmu&>(*model); }
    // Runs the simulator until idle.
    void run() { REQUIRE(sim.run() == engine::RunStatus::Completed); }
    void access(std::uint32_t vcpu, std::vector<GuestAccess> acc) {
        VcpuResult r;
        sim.spawn("vcpu" + std::to_string(vcpu), vcpu_program(sim, *model, vctx[vcpu], std::move(acc), 0_ns, 10_ns, r));
        run();
    }
    void on_host(std::function<engine::Task<void>()> body) {
        sim.spawn("host", actor(sim, 0_ns, std::move(body)));
        run();
    }
    void nested_start(std::vector<std::uint32_t> vcpus, Gfn eptp = 1) {
        for (auto v : vcpus) on_host([this, v, eptp]() { return model->nested_start(vctx[v], eptp); });
    }
    void nested_stop(std::vector<std::uint32_t> vcpus, Gfn eptp = 1) {
        for (auto v : vcpus) on_host([this, v, eptp]() { return model->nested_stop(vctx[v], eptp); });
    }
    // A lock's record merged over phases, for a mode ("read", "write", "exclusive") and site.
    std::optional<engine::LockRecord> lock_record(const std::string& mode, const std::string& site,
                                                  const std::string& lock = "mmu_lock") const {
        const auto& t = sim.lock_stats();
        for (const auto& r : t.totals())
            if (t.lock_name(r.lock) == lock && engine::to_string(r.mode) == mode && t.site_name(r.site) == site) return r;
        return std::nullopt;
    }
    void eptp_switch(std::uint32_t v, std::vector<Gfn> eptps) {
        on_host([this, v, eptps]() { return model->nested_eptp_switch(vctx[v], eptps); });
    }
    void ept_write(std::uint32_t v, Gfn start, Gfn end, std::uint32_t entries, bool invept, Gfn eptp = 1,
                   std::uint8_t level = 0) {
        const vm::NestedEptWrite w{eptp, start, end, entries, invept, level};
        on_host([this, v, w]() { return model->nested_ept_write(vctx[v], w); });
    }
};

constexpr Gfn B = Harness::kBase;  // 4 GiB

vm::Knobs knobs(std::initializer_list<std::pair<const std::string, vm::KnobValue>> k) { return vm::Knobs(k); }

}  // namespace

TEST_CASE("x86_shadow is registered with its knobs, costs and operations", "[x86_shadow]") {
    const vm::ModelInfo* info = models::builtin_models().find("x86_shadow");
    REQUIRE(info);
    CHECK(info->kernel.find("v6.9") != std::string::npos);
    for (const char* k : {"tdp_mmu", "child_sp_lookup", "root_alloc_lock", "split_desc_cache_capacity", "alias_percent",
                          "split_cache_free", "eager_page_split", "preempt"})
        CHECK(info->knob(k));
    CHECK_FALSE(std::get<bool>(info->knob("tdp_mmu")->default_value));
    CHECK(std::get<std::string>(info->knob("child_sp_lookup")->default_value) == "always");
    CHECK(std::get<std::int64_t>(info->knob("split_desc_cache_capacity")->default_value) == 553);
    CHECK(info->knob("split_desc_cache_capacity")->min == 513);
    CHECK(info->supports(vm::Operation::NestedStart));
    CHECK(info->supports(vm::Operation::NestedStop));
    CHECK(info->supports(vm::Operation::DirtyLogEnable));
    CHECK_FALSE(info->supports(vm::Operation::SmmEnter));
    // Its own costs and, for tdp_mmu on, every cost of the embedded TDP MMU.
    for (const auto& c : models::x86_tdp::Costs::names())
        CHECK(std::count(info->costs.begin(), info->costs.end(), c) == 1);
    for (const char* c : {"hash_entry_step", "shadow_root_alloc", "guest_walk_level"})
        CHECK(std::count(info->costs.begin(), info->costs.end(), std::string(c)) == 1);
}

TEST_CASE("hash_64 and pte_list_desc arithmetic follow the kernel", "[x86_shadow]") {
    CHECK(xs::page_table_hash(0) == 0);
    CHECK(xs::page_table_hash(1) == 0x61C);  // GOLDEN_RATIO_64 >> 52
    for (Gfn g : {Gfn{12345}, Gfn{1} << 30, Gfn{0xfffff}}) CHECK(xs::page_table_hash(g) < xs::kMmuHashBuckets);
    // pte_list_add: a descriptor when a single entry becomes a list, then every 14 entries.
    std::uint32_t descs = 0;
    for (std::uint32_t n = 0; n < 60; ++n) {
        descs += xs::pte_list_add_descs(n);
        CHECK(descs == xs::pte_list_descs(n + 1));
    }
    CHECK(xs::pte_list_descs(1) == 0);
    CHECK(xs::pte_list_descs(2) == 1);
    CHECK(xs::pte_list_descs(14) == 1);
    CHECK(xs::pte_list_descs(15) == 2);
    CHECK(xs::pte_list_descs(29) == 3);
}

TEST_CASE("a direct 2M fault allocates the PDPT and PD shadow pages and counts mmu_cache_miss", "[x86_shadow]") {
    Shadow s(Backing::AnonymousThp, 2048, 1);
    REQUIRE(s.sh().n_used_mmu_pages() == 1);  // the direct root
    s.access(0, {{B + 5, Access::Read}});
    CHECK(s.sh().mapping_level(0, B + 5) == PageLevel::M2);
    CHECK(s.gauge("pages_2m") == 1);
    CHECK(s.sh().n_used_mmu_pages() == 3);
    CHECK(s.counter("mmu_cache_miss") == 2);
    CHECK(s.counter("kvm_mmu_find_shadow_page") == 2);
    CHECK(s.sh().indirect_shadow_pages() == 0);
    CHECK(s.sh().rmap_size(B, 2) == 1);
    // The read mapped the host's huge zero page: 2M, read-only (make_spte without host_writable).
    CHECK(s.sh().host_mm().page(B + 5) == models::host::Page::HugeZero);
    CHECK(s.model->hits(0, B + 511, Access::Read));
    CHECK_FALSE(s.model->hits(0, B + 511, Access::Write));
    CHECK_FALSE(s.model->hits(0, B + 512, Access::Read));
    CHECK(s.counter("pf_fixed") == 1);
}

TEST_CASE("bucket walks visit every SP of the bucket and count gfn mismatches as collisions", "[x86_shadow]") {
    // 4K faults one per 2M over 512M: a PT SP per 2M (plus PDPT and PD SPs).
    Shadow s(Backing::Anonymous, 512 * 256, 1);
    std::vector<GuestAccess> acc = range(B, 256, Access::Read, 512);
    // Replay the hash: the SPs inserted before each lookup, by bucket, and their gfns.
    std::map<std::uint32_t, std::vector<Gfn>> buckets;
    buckets[xs::page_table_hash(0)].push_back(0);  // the direct root
    std::uint64_t walked = 0, collisions = 0, maxc = 0;
    auto lookup = [&](Gfn gfn) {
        std::uint64_t c = 0;
        for (Gfn g : buckets[xs::page_table_hash(gfn)]) {
            ++walked;
            if (g != gfn) ++c;
        }
        collisions += c;
        maxc = std::max(maxc, c);
        buckets[xs::page_table_hash(gfn)].push_back(gfn);
    };
    lookup(0);                    // PDPT SP (gfn 0, role level 3): walks the root
    lookup(B);                    // PD SP of the first 1G
    for (const auto& a : acc) {
        if (a.gfn % (512 * 512) == 0 && a.gfn != B) lookup(a.gfn);  // a new PD SP
        lookup(a.gfn);            // the PT SP
    }
    s.access(0, acc);
    CHECK(s.counter("mmu_page_hash_entries_walked") == walked);
    CHECK(s.counter("mmu_page_hash_collisions") == collisions);
    CHECK(s.counter("max_mmu_page_hash_collisions") == maxc);
    CHECK(s.counter("mmu_cache_miss") == s.counter("kvm_mmu_find_shadow_page"));
    CHECK(s.sh().n_used_mmu_pages() == 1 + 1 + 1 + 256);
    std::uint64_t total = 0;
    for (std::uint32_t b = 0; b < xs::kMmuHashBuckets; ++b) total += s.sh().bucket_size(b);
    CHECK(total == s.sh().n_used_mmu_pages());
}

TEST_CASE("seed 000: child SP lookups are skipped while there is no indirect root", "[x86_shadow][seed000]") {
    for (const char* mode : {"always", "skip_bool", "skip_count"}) {
        INFO(mode);
        // v6.9: nothing is split eagerly with the TDP MMU off, so the write shatters.
        Shadow s(Backing::AnonymousThp, 512 * 8, 2,
                 knobs({{"child_sp_lookup", std::string(mode)}, {"eager_page_split", false}}));
        const bool skip = std::string(mode) != "always";
        s.access(0, {{B, Access::Read}});                             // PDPT + PD
        CHECK(s.counter("kvm_mmu_find_shadow_page") == (skip ? 0u : 2u));
        CHECK(s.counter("kvm_mmu_find_shadow_page_skipped") == (skip ? 2u : 0u));
        CHECK(s.counter("mmu_cache_miss") == 2);                      // allocated either way
        s.nested_start({1});
        CHECK(s.sh().indirect_shadow_pages() == 1);                   // the nested root
        const auto finds = s.counter("kvm_mmu_find_shadow_page");
        s.access(0, {{B + 512, Access::Read}, {B + 1024, Access::Read}});  // 2M mappings: no new SP
        s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
        s.access(0, {{B + 512, Access::Write}});                      // shatters: one PT SP
        CHECK(s.counter("drop_large_spte") == 1);
        CHECK(s.counter("kvm_mmu_find_shadow_page") == finds + 1);    // looked up while nested runs
        s.nested_stop({1});
        CHECK(s.sh().indirect_shadow_pages() == 0);
        CHECK(s.counter("mmu_shadow_zapped") == 1);
        s.access(0, {{B + 1024, Access::Write}});
        const bool looks = std::string(mode) != "skip_count";         // the bool stays set
        CHECK(s.counter("kvm_mmu_find_shadow_page") == finds + 1 + (looks ? 1u : 0u));
        CHECK(s.sh().indirect_mmu_count() == 0);
    }
}

TEST_CASE("seed 000: mmu_lock around the indirect-MMU state on every root allocation or the first", "[x86_shadow][seed000]") {
    struct Case {
        const char* lookup;
        const char* lock;
        std::uint64_t after_start, after_stop;
    };
    // The count goes down when a root is freed, under the mmu_lock kvm_mmu_free_roots holds anyway:
    // no acquisition of its own at nested_stop.
    for (const Case& c : {Case{"skip_bool", "every", 3, 3}, Case{"skip_bool", "first", 1, 1},
                          Case{"skip_count", "every", 3, 3}, Case{"skip_count", "first", 1, 1}}) {
        INFO(c.lookup << " " << c.lock);
        Shadow s(Backing::AnonymousThp, 512, 3,
                 knobs({{"child_sp_lookup", std::string(c.lookup)}, {"root_alloc_lock", std::string(c.lock)}}));
        s.nested_start({0, 1, 2});
        CHECK(s.counter("indirect_mmu_mmu_lock") == c.after_start);
        CHECK(s.counter("mmu_alloc_shadow_roots") == 3);
        CHECK(s.sh().n_used_mmu_pages() == 2);  // direct root + one shared nested root
        if (std::string(c.lookup) == "skip_count") CHECK(s.sh().indirect_mmu_count() == 3);
        s.nested_stop({0, 1, 2});
        CHECK(s.counter("indirect_mmu_mmu_lock") == c.after_stop);
        CHECK(s.sh().indirect_mmu_count() == 0);
        CHECK(s.sh().n_used_mmu_pages() == 1);
    }
}

TEST_CASE("an L2 fault maps through the vCPU's nested root with indirect SPs; rmaps chain aliases", "[x86_shadow]") {
    Shadow s(Backing::Anonymous, 1024, 2);
    s.access(0, {{B + 3, Access::Read}});  // L1 maps gfn B+3 (direct tree)
    CHECK(s.sh().rmap_size(B + 3, 1) == 1);
    s.nested_start({1});
    CHECK_FALSE(s.model->hits(1, B + 3, Access::Read));  // vCPU 1 runs L2: its own tree
    CHECK(s.model->hits(0, B + 3, Access::Read));
    s.access(1, {{B + 3, Access::Read}});
    // Root, PDPT, PD and PT SPs of the nested tree are indirect (L1 maps 4K pages here).
    CHECK(s.sh().indirect_shadow_pages() == 4);
    CHECK(s.sh().rmap_size(B + 3, 1) == 2);  // L1's direct SPTE and L2's: a pte_list_desc
    CHECK(s.sh().pte_list_descs_live() == 1);
    CHECK(s.counter("pte_list_desc_alloc") == 1);
    CHECK(s.counter("max_mmu_rmap_size") == 1);
    s.nested_stop({1});
    CHECK(s.sh().rmap_size(B + 3, 1) == 1);
    CHECK(s.sh().pte_list_descs_live() == 0);
    CHECK(s.counter("mmu_shadow_zapped") == 4);
    CHECK(s.counter("remote_tlb_flush") == 1);  // one commit
}

TEST_CASE("tdp_mmu routes L1 faults to the TDP MMU; the first shadow root allocates the rmaps", "[x86_shadow]") {
    Shadow off(Backing::AnonymousThp, 1024, 1);
    CHECK(off.sh().tdp() == nullptr);
    CHECK(off.sh().rmaps_allocated());
    Shadow on(Backing::AnonymousThp, 1024, 2, knobs({{"tdp_mmu", true}}));
    REQUIRE(on.sh().tdp() != nullptr);
    CHECK_FALSE(on.sh().rmaps_allocated());
    on.access(0, {{B, Access::Write}});
    CHECK(on.sh().tdp()->mapping_level(B) == PageLevel::M2);
    CHECK(on.sh().n_used_mmu_pages() == 0);
    CHECK(&on.sh().tdp()->mmu_lock() == &on.sh().mmu_lock());
    on.nested_start({1});
    CHECK(on.sh().rmaps_allocated());
    CHECK(on.sh().shadow_root_allocated());
    CHECK(on.counter("mmu_first_shadow_root_alloc_pages") == 1024);
    on.access(1, {{B, Access::Read}});
    CHECK(on.sh().mapping_level(1, B) == PageLevel::M2);
    CHECK(on.sh().indirect_shadow_pages() == 3);  // root, PDPT, PD (L1 maps 2M here)
    on.nested_stop({1});
    on.nested_start({1});
    CHECK(on.counter("mmu_first_shadow_root_alloc_pages") == 1024);  // only the first
}

namespace {
// TDP MMU on, a nested guest on vCPU 0 whose 8 2M pages are mapped huge, then dirty logging on.
struct SplitRun {
    std::uint64_t splits, drops, restarts, descs, bytes, leak;
    std::uint32_t desc_nobjs;
};
SplitRun split_run(std::int64_t capacity, std::int64_t alias, const char* free_at, bool disable = false) {
    Shadow s(Backing::AnonymousThp, 512 * 8, 1,
             knobs({{"tdp_mmu", true}, {"split_desc_cache_capacity", capacity}, {"alias_percent", alias},
                    {"split_cache_free", std::string(free_at)}}));
    s.nested_start({0});
    s.access(0, range(B, 8, Access::Read, 512));
    REQUIRE(s.gauge("pages_2m") == 8);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.gauge("pages_2m") == 0);
    CHECK(s.gauge("pages_4k") == 8 * 512);
    CHECK(s.sh().mapping_level(0, B + 700) == PageLevel::K4);
    CHECK_FALSE(s.model->hits(0, B + 700, Access::Write));  // write-protected
    CHECK(s.model->hits(0, B + 700, Access::Read));
    if (disable) s.on_host([&]() { return s.model->dirty_log_disable(s.hctx, 0); });
    return {s.counter("kvm_mmu_split_huge_page"), s.counter("need_topup_split_caches_or_resched"),
            s.counter("shadow_mmu_split_rmap_restart"), s.counter("pte_list_desc_alloc"),
            static_cast<std::uint64_t>(s.gauge("split_caches_bytes")),
            static_cast<std::uint64_t>(s.gauge("split_caches_leaked_if_vm_destroyed_bytes")),
            s.sh().split_desc_cache().nobjs()};
}
}  // namespace

TEST_CASE("seed 001: split cache capacity decides how often mmu_lock is dropped", "[x86_shadow][seed001]") {
    // No aliasing: no descriptor is consumed, one top-up before the first split.
    const SplitRun none = split_run(513, 0, "vm_destroy");
    CHECK(none.splits == 8);
    CHECK(none.descs == 0);
    CHECK(none.drops == 1);
    CHECK(none.restarts == 1);
    // Every gfn aliased: each split needs 512 descriptors.
    const SplitRun min = split_run(513, 100, "vm_destroy");
    CHECK(min.descs == 8 * 512);
    CHECK(min.drops == 8);  // 513 - 512 < 513: a drop before every split
    const SplitRun two = split_run(1026, 100, "vm_destroy");
    CHECK(two.drops == 4);  // 1026 - 512 = 514 lasts one more split
    const SplitRun plus40 = split_run(553, 100, "vm_destroy");
    CHECK(plus40.drops == 8);
    CHECK(plus40.restarts == plus40.drops);
    // Memory held: descriptors left, and the header and page caches filled to 40 by the first
    // top-up (kvm_mmu_topup_memory_cache) with 8 used.
    CHECK(min.desc_nobjs == 1);
    CHECK(min.bytes == 1 * xs::kPteListDescBytes + 32 * xs::kMmuPageHeaderBytes + 32 * 4096);
    CHECK(two.bytes == 2 * xs::kPteListDescBytes + 32 * xs::kMmuPageHeaderBytes + 32 * 4096);
    CHECK(min.leak == 0);
}

TEST_CASE("seed 001: split caches freed at the flags change, or held until VM destruction", "[x86_shadow][seed001]") {
    const SplitRun patch_logging = split_run(553, 100, "flags_change");
    CHECK(patch_logging.bytes > 0);
    CHECK(patch_logging.leak == patch_logging.bytes);  // the VM dying now would leak them
    const SplitRun patch = split_run(553, 100, "flags_change", true);
    CHECK(patch.bytes == 0);
    CHECK(patch.leak == 0);
    const SplitRun merged = split_run(553, 100, "vm_destroy", true);
    CHECK(merged.bytes == patch_logging.bytes);  // kept after the flags change
    CHECK(merged.leak == 0);
}

TEST_CASE("seed 001: without eager splitting the L2 write faults split lazily", "[x86_shadow][seed001]") {
    Shadow s(Backing::AnonymousThp, 512 * 4, 1, knobs({{"tdp_mmu", true}, {"eager_page_split", false}}));
    s.nested_start({0});
    s.access(0, range(B, 4, Access::Read, 512));
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("kvm_mmu_split_huge_page") == 0);
    CHECK(s.gauge("pages_2m") == 4);
    s.access(0, range(B, 4, Access::Write, 512));
    CHECK(s.counter("drop_large_spte") == 4);
    CHECK(s.gauge("pages_2m") == 0);
    CHECK(s.gauge("pages_4k") == 4);
    CHECK(s.counter("remote_tlb_flush") >= 4);  // each dropped large SPTE is flushed
}

TEST_CASE("x86_shadow runs are deterministic", "[x86_shadow][determinism]") {
    auto once = [] {
        Shadow s(Backing::AnonymousThp, 512 * 16, 4, knobs({{"child_sp_lookup", std::string("skip_count")}}));
        std::vector<VcpuResult> r(4);
        for (std::uint32_t v = 0; v < 4; ++v)
            s.sim.spawn("vcpu" + std::to_string(v),
                        vcpu_program(s.sim, *s.model, s.vctx[v], range(B + v * 512 * 4, 4 * 64, Access::Write, 8),
                                     0_ns, 10_ns, r[v]));
        s.run();
        return std::make_pair(s.sim.fingerprint(), s.counter("pf_fixed"));
    };
    CHECK(once() == once());
}

TEST_CASE("nested_stop waits for the vCPU's L2 fault in flight; the held access then faults in L1", "[x86_shadow]") {
    Shadow s(Backing::AnonymousThp, 1024, 1);
    s.nested_start({0});
    VcpuResult r;
    s.sim.spawn("vcpu0", vcpu_program(s.sim, *s.model, s.vctx[0], {{B + 7, Access::Read}}, 0_ns, 0_ns, r));
    // nested_stop lands while the fault is resolving the host page (before it takes mmu_lock):
    // the stop waits for the fault (the exit is taken at the next entry), which maps B + 7 in L2.
    engine::Time stopped;
    s.sim.spawn("stop", actor(s.sim, 50_ns, [&]() { return s.model->nested_stop(s.vctx[0], 1); }, &stopped));
    s.run();
    // The access retried while the stop ran waited for it (held, not an exit), then faulted in L1.
    CHECK(r.faults == 3);
    CHECK(s.counter("nested_stalled_accesses") == 1);
    CHECK(s.counter("pf_taken") == 2);
    CHECK(s.counter("pf_fixed") == 2);
    CHECK(s.counter("pf_spurious") == 0);
    CHECK(r.done >= stopped);
    CHECK(s.sh().indirect_shadow_pages() == 0);
    CHECK(s.sh().n_used_mmu_pages() == 3);  // direct root, PDPT, PD
    CHECK(s.sh().mapping_level(0, B + 7) == PageLevel::M2);
}

TEST_CASE("a vCPU's guest stream is held from the nested VM-exit to the end of the VM-entry", "[x86_shadow][eptp]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    s.nested_start({0}, 1);
    s.access(0, {{B + 3, Access::Read}});
    REQUIRE(s.model->hits(0, B + 3, Access::Read));
    // An EPTP switch from 1 to 2 (nested_transition 1 us, then the VM-entry): halfway through the
    // transition the vCPU's stream does not run in EPTP 1's tree any more.
    bool mid = true;
    engine::Time switched;
    const std::vector<Gfn> eptps = {1, 2};
    s.sim.spawn("switch", actor(s.sim, 0_ns, [&]() { return s.model->nested_eptp_switch(s.vctx[0], eptps); }, &switched));
    s.sim.spawn("probe", actor(s.sim, 500_ns, [&]() -> engine::Task<void> {
        mid = s.model->hits(0, B + 3, Access::Read);
        co_return;
    }));
    // The vCPU accesses B + 3 during the transition: it waits for the VM-entry, then faults in
    // EPTP 2's tree (not served from EPTP 1's).
    VcpuResult r;
    s.sim.spawn("vcpu0", vcpu_program(s.sim, *s.model, s.vctx[0], {{B + 3, Access::Read}}, 100_ns, 0_ns, r));
    s.run();
    CHECK_FALSE(mid);
    CHECK(s.counter("nested_stalled_accesses") == 1);
    CHECK(r.faults == 2);  // the wait, then the EPT violation in EPTP 2's tree
    CHECK(r.done > switched);
    CHECK(s.sh().running_eptp(0) == Gfn{2});
    CHECK(s.sh().rmap_size(B + 3, 1) == 2);  // mapped in both trees now
    // L1 rewriting EPT12 on a vCPU running L2 holds it likewise, and an L2 fault in flight
    // finishes before the VM-exit (taken at the next entry); the access's retry waits for the
    // VM-entry after the writes.
    VcpuResult r2;
    engine::Time wrote;
    s.sim.spawn("vcpu0", vcpu_program(s.sim, *s.model, s.vctx[0], {{B + 9, Access::Read}}, 0_ns, 0_ns, r2));
    const vm::NestedEptWrite w{2, B + 64, B + 65, 1, false};
    s.sim.spawn("ept", actor(s.sim, 50_ns, [&]() { return s.model->nested_ept_write(s.vctx[0], w); }, &wrote));
    s.run();
    CHECK(r2.faults == 2);  // the EPT violation, then the wait
    CHECK(s.counter("nested_stalled_accesses") == 2);
    CHECK(r2.done >= wrote);
    CHECK(s.model->hits(0, B + 9, Access::Read));
    const auto ept_fault = s.lock_record("write", "ept_page_fault");
    const auto l1_fault = s.lock_record("write", "direct_page_fault");
    REQUIRE(ept_fault);
    REQUIRE(l1_fault);
    CHECK(l1_fault->acquisitions == 1);  // L1's write fault on its EPT page
}

// ---------------------------------------------------------------------------------------------
// Nested EPTP switches through the guest_mmu context (kvm_mmu_new_pgd, prev_roots)

TEST_CASE("EPTP switches: a prev_roots hit reuses the root; a miss frees the LRU root and loads another",
          "[x86_shadow][eptp]") {
    for (const char* lock : {"every", "first"}) {
        INFO(lock);
        Shadow s(Backing::Anonymous, 512 * 8, 2,
                 knobs({{"child_sp_lookup", std::string("skip_count")}, {"root_alloc_lock", std::string(lock)}}));
        const bool every = std::string(lock) == "every";
        s.nested_start({0}, 1);
        CHECK(s.sh().running_eptp(0) == Gfn{1});
        CHECK(s.counter("mmu_alloc_shadow_roots") == 1);
        CHECK(s.counter("prev_roots_miss") == 1);
        CHECK(s.counter("kvm_init_shadow_ept_mmu_full") == 1);
        // Round robin over six EPTPs: every switch misses (the LRU keeps four roots).
        const std::vector<Gfn> six = {1, 2, 3, 4, 5, 6};
        for (int k = 0; k < 5; ++k) s.eptp_switch(0, six);
        CHECK(s.sh().running_eptp(0) == Gfn{6});
        CHECK(s.counter("nested_eptp_switch") == 5);
        CHECK(s.counter("prev_roots_miss") == 6);
        CHECK(s.counter("mmu_alloc_shadow_roots") == 6);
        CHECK(s.counter("kvm_init_shadow_ept_mmu_early_return") == 5);
        // The switches to 5 and 6 freed the least recently used roots, 1 then 2: their SPs stay.
        CHECK(s.counter("kvm_mmu_free_roots_puts") == 2);
        CHECK(s.sh().root_count(1) == 0);
        CHECK(s.sh().root_count(2) == 0);
        CHECK(s.sh().root_count(3) == 1);
        CHECK(s.sh().n_used_mmu_pages() == 1 + 6);  // the direct root and six nested roots
        CHECK(s.sh().indirect_mmu_count() == 4);     // current + three prev_roots
        const auto& m = s.sh().guest_mmu().mmu(0);
        CHECK(m.root.pgd == 6);
        CHECK(m.prev_roots[0].pgd == 5);
        CHECK(m.prev_roots[1].pgd == 4);
        CHECK(m.prev_roots[2].pgd == 3);
        // 6 -> 3: a hit in prev_roots, no free, no load.
        s.eptp_switch(0, {6, 3});
        CHECK(s.sh().running_eptp(0) == Gfn{3});
        CHECK(s.counter("prev_roots_hit") == 1);
        CHECK(s.counter("mmu_alloc_shadow_roots") == 6);
        CHECK(s.counter("kvm_mmu_free_roots_puts") == 2);
        // 3 -> 1: a miss; root 1's SP is found again in mmu_page_hash (no new SP).
        const auto allocs = s.counter("kvm_mmu_alloc_shadow_page");
        s.eptp_switch(0, {3, 1});
        CHECK(s.counter("mmu_alloc_shadow_roots") == 7);
        CHECK(s.counter("kvm_mmu_alloc_shadow_page") == allocs);
        CHECK(s.sh().root_count(1) == 1);
        // root_alloc_lock: mmu_lock on every mmu_alloc_shadow_roots, or only for the count's 0 -> 1.
        CHECK(s.counter("indirect_mmu_mmu_lock") == (every ? 7u : 1u));
        const auto site = s.lock_record("write", "mmu_alloc_shadow_roots:indirect_mmu");
        REQUIRE(site);
        CHECK(site->acquisitions == (every ? 7u : 1u));
        // A vCPU running L1 has nothing to switch.
        s.eptp_switch(1, six);
        CHECK(s.counter("nested_eptp_switch_ignored") == 1);
        // free_nested: the four roots held are put; every tree no vCPU holds is zapped.
        s.nested_stop({0}, 1);
        CHECK(s.sh().indirect_mmu_count() == 0);
        CHECK(s.sh().n_used_mmu_pages() == 1);
        CHECK(s.sh().indirect_shadow_pages() == 0);
    }
}

TEST_CASE("free_nested only drops the roots' references; the unheld trees are zapped in a section of their own",
          "[x86_shadow][eptp]") {
    Shadow s(Backing::Anonymous, 1024, 2);
    s.nested_start({0, 1}, 1);
    s.access(0, {{B + 3, Access::Read}});
    s.eptp_switch(0, {1, 2});  // vCPU 0: EPTP 2 current, 1 in prev_roots
    s.access(0, {{B + 5, Access::Read}});
    const auto used = s.sh().n_used_mmu_pages();
    const auto puts = s.lock_record("write", "kvm_mmu_free_roots");
    // vCPU 0 stops: both its roots are put (one kvm_mmu_free_roots section); tree 2 is held by no
    // vCPU any more and is zapped in a section of its own; tree 1 is still vCPU 1's.
    s.nested_stop({0}, 2);
    CHECK(s.sh().root_count(1) == 1);
    CHECK(s.sh().root_count(2) == 0);
    const auto free_roots = s.lock_record("write", "kvm_mmu_free_roots");
    REQUIRE(free_roots);
    CHECK(free_roots->acquisitions == (puts ? puts->acquisitions : 0) + 1);
    const auto zap = s.lock_record("write", "free_nested:zap_unheld_trees");
    REQUIRE(zap);
    CHECK(zap->acquisitions == 1);
    CHECK(s.sh().n_used_mmu_pages() == used - 4);  // tree 2: root, PDPT, PD and PT SPs
    CHECK(s.model->hits(1, B + 3, Access::Read));   // tree 1 intact
    // vCPU 1 stops: tree 1 is zapped too; nothing nested is left.
    s.nested_stop({1}, 1);
    CHECK(s.lock_record("write", "free_nested:zap_unheld_trees")->acquisitions == 2);
    CHECK(s.sh().indirect_shadow_pages() == 0);
    // A vCPU that stops holding nothing unheld zaps nothing (no section).
    s.nested_start({0}, 3);
    s.eptp_switch(0, {3, 4});
    s.nested_start({1}, 3);
    s.nested_stop({0}, 4);  // tree 4 zapped; tree 3 (prev_roots of vCPU 0, now put) is vCPU 1's
    CHECK(s.lock_record("write", "free_nested:zap_unheld_trees")->acquisitions == 3);
    CHECK(s.sh().root_count(3) == 1);
}

TEST_CASE("EPTPs at or above 2^52 are rejected (ept_page_gfn would overflow)", "[x86_shadow][eptp]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    const Gfn top = xs::kEptpGfnLimit - 1;  // the last page below 2^52: fine
    CHECK(xs::ept_page_gfn(top, 1, 0) > xs::ept_page_gfn(top - 1, 1, 0));
    s.nested_start({0}, top);
    CHECK(s.sh().running_eptp(0) == top);
    const vm::NestedEptWrite w{xs::kEptpGfnLimit, B, B + 1, 1, false};
    s.sim.spawn("bad", actor(s.sim, 0_ns, [&]() { return s.model->nested_ept_write(s.vctx[0], w); }));
    CHECK_THROWS_WITH(s.sim.run(), Catch::Contains("not below 2^52"));
}

TEST_CASE("an L2 fault maps into the tree of the EPTP the vCPU runs now", "[x86_shadow][eptp]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    s.nested_start({0}, 1);
    s.access(0, {{B + 3, Access::Read}});
    CHECK(s.model->hits(0, B + 3, Access::Read));
    s.eptp_switch(0, {1, 2});
    CHECK_FALSE(s.model->hits(0, B + 3, Access::Read));  // EPTP 2's tree is empty
    s.access(0, {{B + 3, Access::Read}});
    CHECK(s.model->hits(0, B + 3, Access::Read));
    CHECK(s.sh().rmap_size(B + 3, 1) == 2);  // both trees map it: the rmap chains them
    s.eptp_switch(0, {1, 2});                // back to 1: a prev_roots hit, its tree intact
    CHECK(s.counter("prev_roots_hit") == 1);
    CHECK(s.model->hits(0, B + 3, Access::Read));
}

// ---------------------------------------------------------------------------------------------
// L1 writing its EPT (EPT12): unsync, sync, write tracking and emulation

TEST_CASE("L1 writes to a 4K EPT12 page unsync its SP; INVEPT and the next VM-entry sync it", "[x86_shadow][unsync]") {
    Shadow s(Backing::Anonymous, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, range(B, 16, Access::Read, 1));  // L2 maps B..B+15: root, PDPT, PD and PT SPs
    REQUIRE(s.sh().indirect_shadow_pages() == 4);
    const Gfn pt = xs::ept_page_gfn(1, 1, B - 0);  // L1's EPT page holding B's entry (span base 0)
    CHECK_FALSE(s.sh().l1_ept_page_writable(pt));
    // Four entries of that page (indexes 0, 128, 256, 384), no INVEPT: the first write faults and
    // the SP goes unsync (its parents are marked); the others need no exit.
    s.ept_write(0, B, B + 512, 4, false);
    CHECK(s.counter("nested_ept_entries_written") == 4);
    CHECK(s.counter("nested_ept_write_faults") == 1);
    CHECK(s.counter("kvm_unsync_page") == 1);
    CHECK(s.gauge("mmu_unsync") == 1);
    CHECK(s.sh().mmu_unsync() == 1);
    CHECK(s.sh().root_unsync_children(1) == 1);
    CHECK(s.sh().l1_ept_page_writable(pt));
    CHECK(s.counter("mmu_pte_write") == 0);  // nothing emulated
    CHECK(s.counter("kvm_sync_page") == 0);
    // The stale SPTE is still used until the sync.
    CHECK(s.model->hits(0, B, Access::Read));
    // One more write, then INVEPT: the root is freed; the VM-entry loads it again (found in the
    // hash) and kvm_mmu_sync_roots syncs the SP: write-protect the page (flush), 16 present
    // SPTEs read, the rewritten one (B) dropped (flush).
    const auto flushes = s.counter("remote_tlb_flush");
    s.ept_write(0, B, B + 1, 1, true);
    CHECK(s.counter("nested_ept_write_faults") == 1);
    CHECK(s.counter("handle_invept") == 1);
    CHECK(s.counter("kvm_mmu_sync_roots") == 1);
    CHECK(s.counter("mmu_sync_children") == 1);
    CHECK(s.counter("kvm_sync_page") == 1);
    CHECK(s.counter("kvm_sync_page_sptes_dropped") == 1);
    CHECK(s.counter("kvm_vcpu_write_protect_gfn") == 1);
    CHECK(s.counter("kvm_sync_page_ps") > 0);
    CHECK(s.counter("mmu_sync_children_ps") >= s.counter("kvm_sync_page_ps"));
    CHECK(s.counter("remote_tlb_flush") == flushes + 2);
    CHECK(s.gauge("mmu_unsync") == 0);
    CHECK(s.sh().root_unsync_children(1) == 0);
    CHECK_FALSE(s.sh().l1_ept_page_writable(pt));
    CHECK(s.counter("mmu_alloc_shadow_roots") == 2);
    CHECK(s.sh().root_count(1) == 1);
    CHECK(s.sh().running_eptp(0) == Gfn{1});
    CHECK_FALSE(s.model->hits(0, B, Access::Read));  // dropped: L2 faults it in again
    CHECK(s.model->hits(0, B + 1, Access::Read));
    CHECK(s.gauge("pages_4k") == 15);
    // The page is protected again: the next write faults and unsyncs it again.
    s.ept_write(0, B + 8, B + 9, 1, false);
    CHECK(s.counter("nested_ept_write_faults") == 2);
    CHECK(s.gauge("mmu_unsync") == 1);
    // Zapping the tree takes the unsync SP with it.
    s.nested_stop({0}, 1);
    CHECK(s.gauge("mmu_unsync") == 0);
}

TEST_CASE("without INVEPT the nested VM-entry finds its root in prev_roots and nothing is synced", "[x86_shadow][unsync]") {
    Shadow s(Backing::Anonymous, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, range(B, 4, Access::Read, 1));
    s.ept_write(0, B, B + 4, 2, false);
    CHECK(s.counter("nested_vm_entry") == 2);  // VMLAUNCH, then the VMRESUME after the writes
    CHECK(s.counter("prev_roots_hit") == 1);   // the current root: kvm_mmu_new_pgd keeps it
    CHECK(s.counter("kvm_mmu_sync_roots") == 0);
    CHECK(s.gauge("mmu_unsync") == 1);
}

TEST_CASE("L1 writes to a 2M EPT12 page are emulated; the third in a row floods the SP", "[x86_shadow][unsync]") {
    Shadow s(Backing::AnonymousThp, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, {{B, Access::Read}, {B + 512, Access::Read}, {B + 1024, Access::Read}});
    REQUIRE(s.gauge("pages_2m") == 3);
    REQUIRE(s.sh().indirect_shadow_pages() == 3);  // root, PDPT, PD (the PD page holds the 2M entries)
    // Entries 0, 1, 2 of L1's PD page: write-tracked (an upper-level SP shadows it), so every
    // write is emulated; each zaps the written SPTE, the third zaps the whole PD SP.
    s.ept_write(0, B, B + 1536, 3, false);
    CHECK(s.counter("nested_ept_write_faults") == 3);
    CHECK(s.counter("nested_ept_write_emulated") == 3);
    CHECK(s.counter("pf_emulate") == 3);
    CHECK(s.counter("mmu_pte_write") == 3);
    CHECK(s.counter("mmu_pde_zapped") == 2);
    CHECK(s.counter("mmu_flooded") == 1);
    CHECK(s.counter("kvm_unsync_page") == 0);
    CHECK(s.gauge("pages_2m") == 0);
    CHECK(s.sh().indirect_shadow_pages() == 2);
    const auto tw = s.lock_record("write", "kvm_mmu_track_write");
    REQUIRE(tw);
    CHECK(tw->acquisitions == 3);
    // An L2 fault in between clears the count: two writes, a fault, two writes flood nothing.
    s.access(0, {{B, Access::Read}, {B + 512, Access::Read}});
    s.ept_write(0, B, B + 1024, 2, false);
    s.access(0, {{B, Access::Read}});
    s.ept_write(0, B, B + 1024, 2, false);
    CHECK(s.counter("mmu_flooded") == 1);
    CHECK(s.counter("mmu_pte_write") == 7);
}

TEST_CASE("kvm_mmu_track_write only unlinks a child SP; a later fault finds it in the hash with its SPTEs",
          "[x86_shadow][unsync]") {
    // L1 maps 2M; with dirty logging the shadow maps 4K under a direct SP (guest_mode).
    Shadow s(Backing::AnonymousThp, 512 * 4, 1);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    s.nested_start({0}, 1);
    s.access(0, range(B, 8, Access::Write, 1));
    REQUIRE(s.gauge("pages_4k") == 8);
    const auto used = s.sh().n_used_mmu_pages();  // direct root; nested root, PDPT, PD; the direct child
    const auto allocs = s.counter("kvm_mmu_alloc_shadow_page");
    // L1 rewrites its 2M entry for B (emulated: the PD page is write-tracked): the shadow PD entry
    // links the direct SP; mmu_page_zap_pte(..., NULL) drops only that link.
    s.ept_write(0, B, B + 512, 1, false);
    CHECK(s.counter("mmu_pte_write") == 1);
    CHECK(s.counter("drop_parent_pte") == 1);
    CHECK(s.counter("mmu_shadow_zapped") == 0);
    CHECK(s.sh().n_used_mmu_pages() == used);  // the child is still there, in mmu_page_hash
    CHECK(s.gauge("pages_4k") == 8);           // with its SPTEs, still in the rmaps
    CHECK(s.sh().rmap_size(B + 3, 1) == 1);
    CHECK_FALSE(s.model->hits(0, B + 3, Access::Read));  // but unreachable
    // An L2 fault under that entry finds it again (no new SP) and links it: its SPTEs are back.
    const auto misses = s.counter("mmu_cache_miss");
    s.access(0, {{B + 3, Access::Read}});
    CHECK(s.counter("kvm_mmu_alloc_shadow_page") == allocs);
    CHECK(s.counter("mmu_cache_miss") == misses);
    CHECK(s.model->hits(0, B + 5, Access::Read));
    CHECK(s.gauge("pages_4k") == 8);
    CHECK(s.sh().rmap_size(B + 3, 1) == 1);
    // Stopping the guest zaps its tree with everything in it.
    s.nested_stop({0}, 1);
    CHECK(s.gauge("pages_4k") == 0);
    CHECK(s.sh().n_used_mmu_pages() == 1);
}

TEST_CASE("an unsync page-table SP unlinked by kvm_mmu_track_write is synced when a fault finds it (kvm_sync_page)",
          "[x86_shadow][unsync]") {
    Shadow s(Backing::Anonymous, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, range(B, 16, Access::Write, 1));  // writable SPTEs (reads would map the zero page)
    REQUIRE(s.sh().indirect_shadow_pages() == 4);  // root, PDPT, PD, PT
    const auto allocs = s.counter("kvm_mmu_alloc_shadow_page");
    // L1 rewrites the PT entry for B + 4 (its write fault unsyncs the PT SP), then the PD entry
    // above B (level 2: a table entry, still pointing to the same PT page): emulated, it unlinks
    // the unsync PT SP, which stays in the hash.
    s.ept_write(0, B + 4, B + 5, 1, false);
    REQUIRE(s.gauge("mmu_unsync") == 1);
    s.ept_write(0, B, B + 512, 1, false, 1, 2);
    CHECK(s.counter("nested_ept_write_emulated") == 1);
    CHECK(s.counter("drop_parent_pte") == 1);
    CHECK(s.counter("mmu_pde_zapped") == 1);
    CHECK(s.sh().indirect_shadow_pages() == 4);
    CHECK(s.gauge("mmu_unsync") == 1);
    CHECK_FALSE(s.model->hits(0, B + 1, Access::Read));
    // Dirty logging write-protects its SPTEs too: they are still in the rmaps.
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("spte_write_protected") == 16);
    // The next L2 fault below that entry: kvm_mmu_find_shadow_page finds the unsync SP and syncs
    // it (kvm_sync_page: B + 4's SPTE, rewritten, is dropped), without marking it synchronized;
    // linked again, it marks its parents unsync again.
    s.access(0, {{B + 1, Access::Read}});
    CHECK(s.counter("kvm_mmu_find_shadow_page_sync") == 1);
    CHECK(s.counter("kvm_sync_page") == 1);
    CHECK(s.counter("kvm_sync_page_sptes_dropped") == 1);
    CHECK(s.counter("kvm_mmu_alloc_shadow_page") == allocs);  // no new SP
    CHECK(s.gauge("mmu_unsync") == 1);
    CHECK(s.sh().root_unsync_children(1) == 1);
    CHECK(s.model->hits(0, B + 2, Access::Read));
    CHECK_FALSE(s.model->hits(0, B + 2, Access::Write));  // write-protected while unlinked
    CHECK_FALSE(s.model->hits(0, B + 4, Access::Read));
    CHECK(s.gauge("pages_4k") == 15);
    // INVEPT and the VM-entry sync it for good.
    s.ept_write(0, B + 8, B + 9, 1, true);
    CHECK(s.counter("kvm_mmu_sync_roots") == 1);
    CHECK(s.gauge("mmu_unsync") == 0);
    // An unlinked SP goes with its tree when the guest stops.
    s.ept_write(0, B, B + 512, 1, false, 1, 2);
    CHECK(s.counter("drop_parent_pte") == 2);
    s.nested_stop({0}, 1);
    CHECK(s.sh().indirect_shadow_pages() == 0);
    CHECK(s.sh().n_used_mmu_pages() == 1);
    CHECK(s.gauge("pages_4k") == 0);
}

TEST_CASE("an upper-level SP unlinked with unsync children is synced before FNAME(fetch) links it again",
          "[x86_shadow][unsync]") {
    Shadow s(Backing::Anonymous, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, range(B, 4, Access::Read, 512));  // four PT SPs under one PD SP
    REQUIRE(s.sh().indirect_shadow_pages() == 7);
    const auto allocs = s.counter("kvm_mmu_alloc_shadow_page");
    // L1 rewrites a PT entry in the first PT page (unsync), then its PDPT entry above B (level
    // 3): the PD SP is unlinked with its subtree, unsync child included.
    s.ept_write(0, B + 1, B + 2, 1, false);
    s.ept_write(0, B, B + 1, 1, false, 1, 3);
    CHECK(s.counter("drop_parent_pte") == 1);
    CHECK_FALSE(s.model->hits(0, B + 512, Access::Read));
    // While it is unlinked, L1 rewrites a PT entry in the second PT page: that SP goes unsync
    // and marks its parent, the unlinked PD SP.
    s.ept_write(0, B + 513, B + 514, 1, false);
    CHECK(s.gauge("mmu_unsync") == 2);
    // The next L2 fault finds the PD SP with unsync children: mmu_sync_children before linking.
    s.access(0, {{B + 1024, Access::Read}});
    CHECK(s.counter("fetch_mmu_sync_children") == 1);
    CHECK(s.counter("mmu_sync_children") == 1);
    CHECK(s.counter("kvm_sync_page") == 2);
    CHECK(s.counter("kvm_sync_page_sptes_dropped") == 0);  // B + 1 and B + 513 were never mapped
    CHECK(s.gauge("mmu_unsync") == 0);
    CHECK(s.counter("kvm_mmu_alloc_shadow_page") == allocs);
    for (Gfn g : {B, B + 512, B + 1024, B + 1536}) CHECK(s.model->hits(0, g, Access::Read));
    // An unlinked SP floods too: the PD SP is unlinked again, then L1 rewrites three of its own
    // entries in a row: the first two unlink two PT SPs from it, the third zaps it with the two
    // PT SPs still linked to it; the two unlinked ones stay in the hash.
    s.ept_write(0, B, B + 1, 1, false, 1, 3);
    s.ept_write(0, B, B + 512, 1, false, 1, 2);
    s.ept_write(0, B + 512, B + 1024, 1, false, 1, 2);
    s.ept_write(0, B + 1024, B + 1536, 1, false, 1, 2);
    CHECK(s.counter("mmu_flooded") == 1);
    CHECK(s.counter("drop_parent_pte") == 4);
    CHECK(s.sh().indirect_shadow_pages() == 4);  // root, PDPT and the two unlinked PT SPs
    CHECK(s.gauge("pages_4k") == 2);             // theirs, still in the rmaps
    s.nested_stop({0}, 1);
    CHECK(s.sh().indirect_shadow_pages() == 0);
    CHECK(s.gauge("pages_4k") == 0);
    CHECK(s.sh().pte_list_descs_live() == 0);
}

TEST_CASE("kvm_mmu_track_write counts mmu_pde_zapped for L1's new entry whether or not the SPTE was present",
          "[x86_shadow][unsync]") {
    Shadow s(Backing::AnonymousThp, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, {{B, Access::Read}});  // only entry 0 of L1's PD page is shadowed
    REQUIRE(s.gauge("pages_2m") == 1);
    const auto flushes = s.counter("remote_tlb_flush");
    // Entry 1 (B + 512): L2 never touched it, its SPTE is not present: nothing to drop, no
    // flush, but the write (gentry != 0, level 2) counts mmu_pde_zapped as in v6.9.
    s.ept_write(0, B + 512, B + 1024, 1, false);
    CHECK(s.counter("mmu_pte_write") == 1);
    CHECK(s.counter("mmu_pde_zapped") == 1);
    CHECK(s.counter("remote_tlb_flush") == flushes);
    CHECK(s.gauge("pages_2m") == 1);
    // Entry 0: present, dropped, flushed.
    s.ept_write(0, B, B + 512, 1, false);
    CHECK(s.counter("mmu_pde_zapped") == 2);
    CHECK(s.counter("remote_tlb_flush") == flushes + 1);
    CHECK(s.gauge("pages_2m") == 0);
}

TEST_CASE("without the TDP MMU, L1's write fault unsyncs under mmu_lock write and mmu_unsync_pages_lock too",
          "[x86_shadow][unsync]") {
    Shadow s(Backing::Anonymous, 512 * 4, 1);
    s.nested_start({0}, 1);
    s.access(0, range(B, 4, Access::Read, 1));
    s.ept_write(0, B, B + 4, 1, false);
    CHECK(s.gauge("mmu_unsync") == 1);
    const auto write = s.lock_record("write", "direct_page_fault");
    REQUIRE(write);
    CHECK(write->acquisitions == 1);
    // v6.9 mmu_try_to_unsync_pages takes the spinlock regardless of the MMU type.
    const auto spin = s.lock_record("exclusive", "mmu_try_to_unsync_pages", "mmu_unsync_pages_lock");
    REQUIRE(spin);
    CHECK(spin->acquisitions == 1);
    CHECK(spin->contended == 0);
    // A page with nothing left to unsync does not take it (no write fault either: writable).
    s.ept_write(0, B + 1, B + 2, 1, false);
    CHECK(s.lock_record("exclusive", "mmu_try_to_unsync_pages", "mmu_unsync_pages_lock")->acquisitions == 1);
}

TEST_CASE("with the TDP MMU, L1's write fault unsyncs under mmu_lock read and mmu_unsync_pages_lock", "[x86_shadow][unsync]") {
    Shadow s(Backing::Anonymous, 512 * 4, 1, knobs({{"tdp_mmu", true}}));
    s.nested_start({0}, 1);
    s.access(0, range(B, 4, Access::Read, 1));
    s.ept_write(0, B, B + 4, 1, false);
    CHECK(s.gauge("mmu_unsync") == 1);
    const auto read = s.lock_record("read", "kvm_tdp_mmu_page_fault");
    REQUIRE(read);
    CHECK(read->acquisitions == 1);
    CHECK_FALSE(s.lock_record("write", "direct_page_fault"));
    const auto spin = s.lock_record("exclusive", "mmu_try_to_unsync_pages", "mmu_unsync_pages_lock");
    REQUIRE(spin);
    CHECK(spin->acquisitions == 1);
}

TEST_CASE("direct faults through the host mm: a read maps the zero page read-only, a write COWs it, the notifier zaps "
          "the direct SPTE and the fault retries",
          "[x86_shadow][host]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    s.access(0, {{B + 9, Access::Read}});
    CHECK(s.sh().host_mm().page(B + 9) == models::host::Page::Zero);
    CHECK(s.model->hits(0, B + 9, Access::Read));
    CHECK_FALSE(s.model->hits(0, B + 9, Access::Write));
    CHECK(s.counter("host_zero_page_mapped") == 1);
    CHECK(s.counter("pf_fixed") == 1);
    s.access(0, {{B + 9, Access::Write}});
    // No fast fix (no MMU-writable bit): the write fault's GUP breaks the COW; the host's
    // invalidation drops the direct SPTE under mmu_lock write; the fault is stale and retries.
    CHECK(s.counter("pf_fast") == 0);
    CHECK(s.counter("host_wp_page_copy") == 1);
    CHECK(s.counter("kvm_unmap_gfn_range_sptes") == 1);
    CHECK(s.counter("pf_retry_is_page_fault_stale") == 1);
    CHECK(s.counter("pf_taken") == 3);
    CHECK(s.counter("pf_fixed") == 2);
    CHECK(s.sh().host_mm().page(B + 9) == models::host::Page::Private);
    CHECK(s.model->hits(0, B + 9, Access::Write));
    CHECK(s.gauge("pages_4k") == 1);
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_notifier_invalidate_range_start")->acquisitions == 1);
}

TEST_CASE("direct faults while logging dirty pages: a read of the zero page marks nothing dirty, the write after it does",
          "[x86_shadow][host][dirty]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    s.access(0, {{B + 9, Access::Read}});
    CHECK(s.sh().host_mm().page(B + 9) == models::host::Page::Zero);
    CHECK(s.counter("mark_page_dirty_in_slot") == 0);  // make_spte: only a writable SPTE
    s.access(0, {{B + 9, Access::Write}});
    CHECK(s.counter("mark_page_dirty_in_slot") == 1);
}

// ---------------------------------------------------------------------------------------------
// Dirty logging without the TDP MMU: KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG on the rmaps

TEST_CASE("x86_shadow lists KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG", "[x86_shadow][dirty]") {
    const vm::ModelInfo* info = models::builtin_models().find("x86_shadow");
    REQUIRE(info);
    CHECK(info->supports(vm::Operation::DirtyLogGet));
    CHECK(info->supports(vm::Operation::DirtyLogClear));
}

TEST_CASE("tdp_mmu off: KVM_GET_DIRTY_LOG walks every bitmap word, write-protects the dirty pages through their "
          "4K rmaps under mmu_lock write, flushes once; the writes that follow are fixed fast",
          "[x86_shadow][dirty]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    std::uint64_t before = 1, got = 0, again = 0;
    s.on_host([&]() -> engine::Task<void> { before = co_await s.model->dirty_log_get(s.hctx, 0); });
    CHECK(before == 0);  // not logging: -ENOENT
    CHECK(s.counter("dirty_bitmap_words_walked") == 0);
    s.access(0, range(B, 1024, Access::Write));
    CHECK(s.gauge("pages_4k") == 1024);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("spte_write_protected") == 1024);  // slot_rmap_write_protect
    CHECK(s.counter("remote_tlb_flush") == 1);
    s.access(0, range(B, 300, Access::Write, 3));  // pages 0, 3, ..., 897: words 0 to 14
    CHECK(s.counter("pf_fast") == 300);
    CHECK(s.counter("mark_page_dirty_in_slot") == 300);
    s.on_host([&]() -> engine::Task<void> {
        got = co_await s.model->dirty_log_get(s.hctx, 0);
        again = co_await s.model->dirty_log_get(s.hctx, 0);
    });
    CHECK(got == 300);
    CHECK(again == 0);
    CHECK(s.counter("dirty_pages_harvested") == 300);
    CHECK(s.counter("dirty_bitmap_words_walked") == 2 * 16);            // 1024 pages, twice
    CHECK(s.counter("kvm_arch_mmu_enable_log_dirty_pt_masked") == 15);  // the words with bits set
    CHECK(s.counter("kvm_mmu_slot_gfn_write_protect") == 0);            // not initially-all-set
    CHECK(s.counter("spte_write_protected") == 1024 + 300);
    CHECK(s.counter("remote_tlb_flush") == 2);  // the second harvest found nothing: no flush
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "kvm_get_dirty_log_protect")->acquisitions == 2);
    CHECK_FALSE(s.model->hits(0, B, Access::Write));  // protected again
    CHECK(s.model->hits(0, B, Access::Read));
    CHECK_FALSE(s.model->hits(0, B + 1, Access::Write));  // protected since the enable
    // The next writes are write-protection faults fast_page_fault fixes without mmu_lock.
    s.access(0, {{B, Access::Write}, {B + 1, Access::Write}});
    CHECK(s.counter("pf_fast") == 302);
    CHECK(s.counter("mark_page_dirty_in_slot") == 302);
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "direct_page_fault")->acquisitions == 1024);  // populate only
    s.on_host([&]() -> engine::Task<void> { got = co_await s.model->dirty_log_get(s.hctx, 0); });
    CHECK(got == 2);
    CHECK(s.counter("kvm_arch_mmu_enable_log_dirty_pt_masked") == 16);  // one word
    CHECK(s.counter("spte_write_protected") == 1024 + 302);
    CHECK(s.counter("remote_tlb_flush") == 3);
}

TEST_CASE("tdp_mmu off, initially-all-set: nothing is protected at enable; KVM_GET_DIRTY_LOG only copies; "
          "KVM_CLEAR_DIRTY_LOG protects the pages of its range",
          "[x86_shadow][dirty]") {
    Shadow s(Backing::Anonymous, 1024, 1);
    s.access(0, range(B, 1024, Access::Write));
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {true}); });
    CHECK(s.counter("spte_write_protected") == 0);
    CHECK(s.counter("remote_tlb_flush") == 0);
    CHECK(s.model->hits(0, B + 100, Access::Write));
    std::uint64_t got = 0;
    s.on_host([&]() -> engine::Task<void> { got = co_await s.model->dirty_log_get(s.hctx, 0); });
    CHECK(got == 1024);  // all set
    CHECK(s.counter("dirty_bitmap_words_walked") == 16);
    CHECK_FALSE(s.lock("mmu_lock", engine::LockMode::Write, "kvm_get_dirty_log_protect"));
    CHECK(s.counter("remote_tlb_flush") == 0);
    // Pages [100, 300): the words at 64, 128, 192 and 256 (first is rounded down to 64 pages).
    s.on_host([&]() { return s.model->dirty_log_clear(s.hctx, 0, B + 100, 200); });
    CHECK(s.counter("dirty_bitmap_words_walked") == 16 + 4);
    CHECK(s.counter("kvm_arch_mmu_enable_log_dirty_pt_masked") == 4);
    CHECK(s.counter("kvm_mmu_slot_gfn_write_protect") == 4);  // each word's first page (no huge page here)
    CHECK(s.counter("spte_write_protected") == 200);
    CHECK(s.counter("remote_tlb_flush") == 1);
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "kvm_clear_dirty_log_protect")->acquisitions == 1);
    CHECK(s.model->hits(0, B + 99, Access::Write));
    CHECK_FALSE(s.model->hits(0, B + 100, Access::Write));
    CHECK_FALSE(s.model->hits(0, B + 299, Access::Write));
    CHECK(s.model->hits(0, B + 300, Access::Write));
    // A write to a protected page is fixed fast and logged; clearing the whole slot then finds
    // one bit (the rest were cleared or are still set but their SPTEs were never protected).
    s.access(0, {{B + 150, Access::Write}});
    CHECK(s.counter("pf_fast") == 1);
    CHECK(s.counter("mark_page_dirty_in_slot") == 1);
    s.on_host([&]() { return s.model->dirty_log_clear(s.hctx, 0, B + 100, 200); });
    CHECK(s.counter("kvm_arch_mmu_enable_log_dirty_pt_masked") == 5);
    CHECK(s.counter("spte_write_protected") == 201);
    CHECK(s.counter("remote_tlb_flush") == 2);
    // Clearing the rest of the slot protects the other 824 pages, still set since the enable.
    s.on_host([&]() { return s.model->dirty_log_clear(s.hctx, 0, B, 1024); });
    CHECK(s.counter("dirty_bitmap_words_walked") == 16 + 4 + 4 + 16);
    CHECK(s.counter("spte_write_protected") == 201 + 824);
    CHECK(s.counter("remote_tlb_flush") == 3);
}

TEST_CASE("tdp_mmu off, initially-all-set: KVM_CLEAR_DIRTY_LOG write-protects the 2M mappings around each word "
          "(kvm_mmu_slot_gfn_write_protect); the next write drops the huge SPTE and maps 4K",
          "[x86_shadow][dirty]") {
    Shadow s(Backing::AnonymousThp, 4 * 512, 1, knobs({{"eager_page_split", false}}));  // v6.9
    s.access(0, range(B, 4, Access::Write, 512));
    REQUIRE(s.gauge("pages_2m") == 4);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {true}); });
    CHECK(s.model->hits(0, B, Access::Write));
    // The first 2M page and the first 64 pages of the second: 9 words. ALIGN() rounds up, so a
    // word starting on a 2M boundary also protects its last page's 2M page (the same one): word 0
    // and word 8 make two calls, words 1 to 7 one.
    s.on_host([&]() { return s.model->dirty_log_clear(s.hctx, 0, B, 512 + 64); });
    CHECK(s.counter("kvm_arch_mmu_enable_log_dirty_pt_masked") == 9);
    CHECK(s.counter("kvm_mmu_slot_gfn_write_protect") == 11);
    CHECK(s.counter("spte_write_protected") == 2);  // the two huge SPTEs, Writable and MMU-writable
    CHECK(s.counter("remote_tlb_flush") == 1);
    CHECK_FALSE(s.model->hits(0, B, Access::Write));
    CHECK_FALSE(s.model->hits(0, B + 512 + 100, Access::Write));  // the whole 2M page: no split here
    CHECK(s.model->hits(0, B + 1024, Access::Write));
    // Not MMU-writable: the fast path cannot fix it; the fault maps 4K (the slot logs dirty pages)
    // in place of the huge SPTE (drop_large_spte, with its flush).
    s.access(0, {{B + 5, Access::Write}});
    CHECK(s.counter("pf_fast") == 0);
    CHECK(s.counter("drop_large_spte") == 1);
    CHECK(s.gauge("pages_2m") == 3);
    CHECK(s.gauge("pages_4k") == 1);
    CHECK(s.counter("remote_tlb_flush") == 2);
    CHECK(s.counter("mark_page_dirty_in_slot") == 1);
}

TEST_CASE("tdp_mmu on: KVM_GET_DIRTY_LOG harvests the TDP MMU's pages, then write-protects the nested faults' pages "
          "through the rmaps",
          "[x86_shadow][dirty]") {
    Shadow s(Backing::Anonymous, 1024, 2, knobs({{"tdp_mmu", true}}));
    s.nested_start({0});
    s.access(0, range(B, 10, Access::Write));        // L2, through the nested tree
    s.access(1, range(B + 100, 5, Access::Write));   // L1, through the TDP MMU
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK_FALSE(s.model->hits(0, B, Access::Write));
    CHECK_FALSE(s.model->hits(1, B + 100, Access::Write));
    s.access(0, range(B, 10, Access::Write));
    s.access(1, range(B + 100, 5, Access::Write));
    CHECK(s.counter("pf_fast") == 15);
    std::uint64_t got = 0, again = 1;
    s.on_host([&]() -> engine::Task<void> {
        got = co_await s.model->dirty_log_get(s.hctx, 0);
        again = co_await s.model->dirty_log_get(s.hctx, 0);
    });
    CHECK(got == 15);
    CHECK(again == 0);
    CHECK(s.counter("kvm_arch_mmu_enable_log_dirty_pt_masked") == 1);  // the shadow half's one word
    CHECK(s.counter("dirty_bitmap_words_walked") == 0);  // the TDP MMU's walk paid for the words
    CHECK_FALSE(s.model->hits(0, B + 3, Access::Write));
    CHECK_FALSE(s.model->hits(1, B + 103, Access::Write));
    // The TDP MMU's two harvests (the second found nothing) and the shadow half's one.
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "kvm_get_dirty_log_protect")->acquisitions == 3);
}

TEST_CASE("tdp_mmu off: two vCPUs writing one write-protected page: one fast fix, the other loses the cmpxchg, "
          "walks again and finds it spurious without mmu_lock",
          "[x86_shadow][dirty]") {
    Shadow s(Backing::Anonymous, 512, 2);
    s.access(0, range(B, 512, Access::Write));
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    VcpuResult a, b;
    s.spawn_vcpu(0, {{B + 9, Access::Write}}, 0_ns, a);
    s.spawn_vcpu(1, {{B + 9, Access::Write}}, 0_ns, b);
    s.run();
    CHECK(a.faults == 1);
    CHECK(b.faults == 1);
    CHECK(s.counter("pf_taken") == 512 + 2);
    CHECK(s.counter("pf_fast") == 2);
    CHECK(s.counter("pf_fixed") == 512 + 1);
    CHECK(s.counter("pf_spurious") == 1);
    CHECK(s.counter("fast_pf_cmpxchg_retry") == 1);
    CHECK(s.counter("mark_page_dirty_in_slot") == 1);
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "direct_page_fault")->acquisitions == 512);  // populate only
}

TEST_CASE("tdp_mmu off: a 1G hugetlb page is mapped with a 1G SPTE in the direct tree; the notifier drops it",
          "[x86_shadow][1g]") {
    Shadow s(Backing::Hugetlb1G, 2 * 512 * 512, 1);
    s.access(0, {{B + 5, Access::Read}});
    CHECK(s.sh().mapping_level(0, B + 5) == PageLevel::G1);
    CHECK(s.gauge("pages_1g") == 1);
    CHECK(s.gauge("pages_2m") == 0);
    CHECK(s.sh().n_used_mmu_pages() == 2);  // the root and one PDPT SP: no PD or PT below
    CHECK(s.sh().rmap_size(B, 3) == 1);
    CHECK(s.sh().rmap_size(B, 2) == 0);
    CHECK(s.model->hits(0, B + 512 * 512 - 1, Access::Read));
    CHECK_FALSE(s.model->hits(0, B + 512 * 512, Access::Read));  // the second 1G page
    s.on_host([&]() { return s.sh().invalidate_range_start(s.hctx, B + 7, B + 8); });
    s.on_host([&]() { return s.sh().invalidate_range_end(s.hctx, B + 7, B + 8); });
    CHECK(s.gauge("pages_1g") == 0);
    CHECK(s.sh().rmap_size(B, 3) == 0);
    CHECK_FALSE(s.model->hits(0, B + 5, Access::Read));
}

TEST_CASE("tdp_mmu off: aging walks the 1G rmap, so a 1G SPTE is aged and found young", "[x86_shadow][1g][aging]") {
    Shadow s(Backing::Hugetlb1G, 512 * 512, 1);
    s.access(0, {{B + 5, Access::Read}});
    REQUIRE(s.sh().rmap_size(B, 3) == 1);
    std::vector<std::uint64_t> young;
    auto age = [&](bool clear) {
        s.on_host([&, clear]() -> engine::Task<void> {
            vm::AgeRequest r;
            r.start = B;
            r.end = B + 512 * 512;
            r.clear = clear;
            young.push_back(co_await s.model->age_range(s.hctx, r));
        });
    };
    age(false);  // test_young: young, nothing cleared
    age(true);   // clear_young: young, the SPTE aged
    age(true);   // nothing accessed since
    CHECK(young == std::vector<std::uint64_t>{1, 1, 0});
    CHECK(s.counter("sptes_aged") == 1);
    CHECK(s.counter("kvm_age_gfn") == 2);  // one notifier call per (1G) host page
    CHECK(s.counter("kvm_age_gfn_young") == 1);
    CHECK(s.counter("kvm_test_age_gfn_young") == 1);
}

namespace {
// tdp_mmu off, one 1G hugetlb page written (a 1G SPTE), then dirty logging enabled, then one
// write at B + 5.
struct OneGigDirtyRun {
    std::uint64_t splits, drops, dropped_large;
    std::int64_t pages_4k, pages_2m, pages_1g;
    std::uint64_t pf_fast, flushes;
    bool hits_far_read;
};
OneGigDirtyRun one_gig_dirty_run(bool eager) {
    Shadow s(Backing::Hugetlb1G, 512 * 512, 1, knobs({{"eager_page_split", eager}}));
    s.access(0, {{B + 5, Access::Write}});
    REQUIRE(s.gauge("pages_1g") == 1);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    const std::uint64_t flushes_before = s.counter("remote_tlb_flush");
    s.access(0, {{B + 5, Access::Write}});
    return {s.counter("kvm_mmu_split_huge_page"),
            s.counter("need_topup_split_caches"),
            s.counter("drop_large_spte"),
            s.gauge("pages_4k"),
            s.gauge("pages_2m"),
            s.gauge("pages_1g"),
            s.counter("pf_fast"),
            s.counter("remote_tlb_flush") - flushes_before,
            s.model->hits(0, B + 300000 % (512 * 512), Access::Read)};
}
}  // namespace

TEST_CASE("eager_page_split with tdp_mmu off (the 2022 proposal): enabling dirty logging splits the direct 1G page "
          "into 2M pages and those into 4K; without it the first write drops the 1G SPTE",
          "[x86_shadow][1g][dirty]") {
    const OneGigDirtyRun on = one_gig_dirty_run(true);
    CHECK(on.splits == 1 + 512);  // the 1G page, then each of its 2M pages
    CHECK(on.pages_4k == 512 * 512);
    CHECK(on.pages_2m == 0);
    CHECK(on.pages_1g == 0);
    // Every split takes an SP from split_shadow_page_cache, topped up to 40 with mmu_lock dropped.
    CHECK(on.drops == (1 + 512 + 39) / 40);
    CHECK(on.dropped_large == 1 + 512);  // each huge SPTE replaced by its split table, without a flush
    CHECK(on.pf_fast == 1);  // the 4K SPTE was write-protected, MMU-writable: fixed without mmu_lock
    CHECK(on.flushes == 0);
    CHECK(on.hits_far_read);  // the rest of the 1G page stays mapped (4K, read-only)

    const OneGigDirtyRun off = one_gig_dirty_run(false);
    CHECK(off.splits == 0);
    CHECK(off.dropped_large == 1);  // the write fault drops the 1G SPTE (with its flush) and maps 4K
    CHECK(off.pages_4k == 1);
    CHECK(off.pages_1g == 0);
    CHECK(off.pf_fast == 0);
    CHECK(off.flushes == 1);
    CHECK_FALSE(off.hits_far_read);  // every other page of the 1G range faults again
}

TEST_CASE("eager_page_split with tdp_mmu off, initially-all-set: KVM_CLEAR_DIRTY_LOG splits the huge pages around "
          "each word before write-protecting it",
          "[x86_shadow][dirty]") {
    Shadow s(Backing::AnonymousThp, 4 * 512, 1);
    s.access(0, range(B, 4, Access::Write, 512));
    REQUIRE(s.gauge("pages_2m") == 4);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {true}); });
    CHECK(s.counter("kvm_mmu_split_huge_page") == 0);  // initially-all-set: nothing at enable
    s.on_host([&]() { return s.model->dirty_log_clear(s.hctx, 0, B, 512 + 64); });
    CHECK(s.counter("kvm_mmu_split_huge_page") == 2);  // the two 2M pages the cleared words cover
    CHECK(s.gauge("pages_2m") == 2);
    CHECK(s.gauge("pages_4k") == 1024);
    CHECK(s.counter("spte_write_protected") == 512 + 64);  // the cleared pages' 4K SPTEs
    CHECK(s.model->hits(0, B + 512 + 100, Access::Write));  // split, not cleared: still writable
    CHECK_FALSE(s.model->hits(0, B + 5, Access::Write));
    s.access(0, {{B + 5, Access::Write}});
    CHECK(s.counter("pf_fast") == 1);
    CHECK(s.counter("remote_tlb_flush") == 1);  // the clear's, after the unlock: the splits flush nothing
}

TEST_CASE("tdp_mmu off: disabling dirty logging zaps the 4K SPTEs of pages the host maps huge "
          "(kvm_rmap_zap_collapsible_sptes); the next faults map 2M over the emptied tables",
          "[x86_shadow][dirty][collapsible]") {
    Shadow s(Backing::AnonymousThp, 4 * 512, 1, knobs({{"eager_page_split", false}}));
    s.access(0, range(B, 4, Access::Write, 512));
    REQUIRE(s.gauge("pages_2m") == 4);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    s.access(0, range(B, 4 * 512, Access::Write));  // the first write in each 2M page drops it
    REQUIRE(s.gauge("pages_4k") == 4 * 512);
    REQUIRE(s.gauge("pages_2m") == 0);
    const std::uint32_t sps_logging = s.sh().n_used_mmu_pages();
    CHECK(sps_logging == 3 + 4);  // root, PDPT, PD and the four page tables
    const std::uint64_t flushes = s.counter("remote_tlb_flush");
    s.on_host([&]() { return s.model->dirty_log_disable(s.hctx, 0); });
    // Every 4K SPTE's SP (level 1) is below the host's 2M mapping: zapped, with one flush.
    CHECK(s.counter("kvm_mmu_zap_collapsible_spte") == 4 * 512);
    CHECK(s.gauge("pages_4k") == 0);
    CHECK(s.sh().rmap_size(B + 7, 1) == 0);
    CHECK(s.counter("remote_tlb_flush") == flushes + 1);
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_zap_collapsible_sptes")->acquisitions == 1);
    CHECK_FALSE(s.model->hits(0, B + 7, Access::Read));
    CHECK(s.sh().n_used_mmu_pages() == sps_logging);  // the page tables stay linked, empty
    // One read per 2M page maps it huge again: mmu_set_spte unlinks the empty page table, with a
    // flush each (kvm_flush_remote_tlbs_gfn).
    s.access(0, range(B, 4, Access::Read, 512));
    CHECK(s.gauge("pages_2m") == 4);
    CHECK(s.sh().mapping_level(0, B + 700) == PageLevel::M2);
    CHECK(s.counter("drop_parent_pte") == 4);
    CHECK(s.counter("remote_tlb_flush") == flushes + 1 + 4);
    CHECK(s.sh().n_used_mmu_pages() == 3);
    CHECK(s.model->hits(0, B + 3 * 512 + 9, Access::Write));
    // Again: the freed page tables' SPs are allocated anew and freed again, the hash consistent.
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    s.access(0, range(B, 4 * 512, Access::Write));
    CHECK(s.gauge("pages_4k") == 4 * 512);
    CHECK(s.sh().n_used_mmu_pages() == sps_logging);
    s.on_host([&]() { return s.model->dirty_log_disable(s.hctx, 0); });
    CHECK(s.counter("kvm_mmu_zap_collapsible_spte") == 2 * 4 * 512);
    s.access(0, range(B, 4, Access::Read, 512));
    CHECK(s.gauge("pages_2m") == 4);
    CHECK(s.sh().n_used_mmu_pages() == 3);
}

TEST_CASE("tdp_mmu off: on 4K pages the collapsible walk checks every SPTE's mapping level and zaps nothing",
          "[x86_shadow][dirty][collapsible]") {
    auto hold = [](double check_ns) {
        Shadow s(Backing::Anonymous, 1024, 1, {}, check_ns);
        s.access(0, range(B, 1024, Access::Write));
        s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
        s.on_host([&]() { return s.model->dirty_log_disable(s.hctx, 0); });
        CHECK(s.counter("kvm_mmu_zap_collapsible_spte") == 0);
        CHECK(s.gauge("pages_4k") == 1024);
        CHECK_FALSE(s.model->hits(0, B + 5, Access::Write));  // still write-protected: the next write is fixed fast
        const auto rec = s.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_zap_collapsible_sptes");
        REQUIRE(rec);
        CHECK(rec->acquisitions == 1);
        return rec->hold_ps.max();
    };
    // kvm_mmu_max_mapping_level once per present SPTE: 100 ns more each is 1024 x 100 ns more held.
    CHECK(hold(120) - hold(20) == 1024 * 100 * 1000);
}

TEST_CASE("tdp_mmu off, 1G hugetlb split eagerly while logging: the disable zaps every 4K SPTE and a fault maps "
          "1G over the emptied PD",
          "[x86_shadow][1g][dirty][collapsible]") {
    Shadow s(Backing::Hugetlb1G, 512 * 512, 1, knobs({{"eager_page_split", true}}));
    s.access(0, {{B + 5, Access::Write}});
    REQUIRE(s.gauge("pages_1g") == 1);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    REQUIRE(s.gauge("pages_4k") == 512 * 512);
    s.on_host([&]() { return s.model->dirty_log_disable(s.hctx, 0); });
    CHECK(s.counter("kvm_mmu_zap_collapsible_spte") == 512 * 512);
    CHECK(s.gauge("pages_4k") == 0);
    s.access(0, {{B + 100000, Access::Read}});
    CHECK(s.gauge("pages_1g") == 1);
    CHECK(s.sh().mapping_level(0, B + 5) == PageLevel::G1);
    CHECK(s.sh().n_used_mmu_pages() == 2);  // the root and the PDPT: the PD and its 512 PTs freed
}

// ---------------------------------------------------------------------------------------------
// PML (host feature pml)

namespace {
Shadow pml_shadow(Backing b, std::uint64_t npages, vm::Knobs k = {}) { return Shadow(b, npages, 1, std::move(k), 20, true); }
std::uint64_t get_log(Shadow& s) {
    std::uint64_t got = 0;
    s.on_host([&]() -> engine::Task<void> { got = co_await s.model->dirty_log_get(s.hctx, 0); });
    return got;
}
}  // namespace

TEST_CASE("pml, tdp_mmu off: enabling clears the direct tree's Dirty bits instead of write-protecting; writes log "
          "without exits; KVM_GET_DIRTY_LOG flushes the buffer and clears them again",
          "[x86_shadow][dirty][pml]") {
    Shadow s = pml_shadow(Backing::Anonymous, 1024);
    s.access(0, range(B, 1024, Access::Write));
    REQUIRE(s.counter("pf_taken") == 1024);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("spte_dirty_cleared") == 1024);  // kvm_mmu_slot_leaf_clear_dirty, 4K rmaps
    CHECK(s.counter("spte_write_protected") == 0);   // kvm_mmu_slot_remove_write_access from 2M: none
    CHECK(s.counter("remote_tlb_flush") == 1);
    CHECK(s.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_slot_leaf_clear_dirty")->acquisitions == 1);
    CHECK(s.model->hits(0, B, Access::Read));
    const engine::Time t0 = s.sim.now();
    s.access(0, range(B, 300, Access::Write, 3));
    CHECK(s.counter("pf_taken") == 1024);  // the CPU sets D and logs the GPA: no exit
    // Each write: guest time (10 ns) + ept_dirty_assist (100 ns) + the SPTE's line.
    CHECK(s.sim.now() - t0 > 300 * (10_ns + 100_ns));
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 0);
    CHECK(get_log(s) == 300);  // kvm_arch_sync_dirty_log flushed the buffer first
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 300);
    CHECK(s.counter("spte_dirty_cleared") == 1024 + 300);  // kvm_mmu_clear_dirty_pt_masked
    CHECK(s.counter("spte_write_protected") == 0);
    CHECK(get_log(s) == 0);
    s.access(0, range(B, 2, Access::Write));  // B harvested, B+1 clean since the enable: both log
    CHECK(s.counter("pf_taken") == 1024);
    CHECK(get_log(s) == 2);
}

TEST_CASE("pml, tdp_mmu off: the write that finds the PML buffer full is a PML-full exit that flushes it",
          "[x86_shadow][dirty][pml]") {
    Shadow s = pml_shadow(Backing::Anonymous, 2048);
    s.access(0, range(B, 1024, Access::Write));
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    s.access(0, range(B, 600, Access::Write));
    CHECK(s.counter("handle_pml_full") == 1);  // the 513th write
    CHECK(s.counter("pf_taken") == 1024);      // not a page fault
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 512);
    s.access(0, {{B + 1500, Access::Write}});  // any exit from L1 flushes the buffer too
    CHECK(s.counter("pf_taken") == 1025);
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 600);
    CHECK(get_log(s) == 601);  // and B+1500, marked by the fault that mapped it
}

TEST_CASE("pml, tdp_mmu off: huge pages are write-protected at enable; the write fault drops one and maps 4K, dirty",
          "[x86_shadow][dirty][pml]") {
    Shadow s = pml_shadow(Backing::AnonymousThp, 2 * 512, knobs({{"eager_page_split", false}}));
    s.access(0, range(B, 2, Access::Write, 512));
    REQUIRE(s.gauge("pages_2m") == 2);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("spte_dirty_cleared") == 0);    // no 4K SPTE yet
    CHECK(s.counter("spte_write_protected") == 2);  // kvm_mmu_slot_remove_write_access(PG_LEVEL_2M)
    s.access(0, range(B, 10, Access::Write));
    CHECK(s.counter("drop_large_spte") == 1);
    CHECK(s.counter("pf_taken") == 2 + 10);  // the huge SPTE's drop leaves the rest unmapped
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 0);  // each new writable SPTE is dirty
    CHECK(get_log(s) == 10);                                // marked by the faults
    CHECK(s.counter("spte_dirty_cleared") == 10);           // and cleared by the get
    s.access(0, range(B, 10, Access::Write));
    CHECK(s.counter("pf_taken") == 12);
    CHECK(get_log(s) == 10);
}

TEST_CASE("pml, tdp_mmu off: pml_slot_set_dirty (before v5.12) sets the cleared Dirty bits back through the rmaps",
          "[x86_shadow][dirty][pml]") {
    for (const bool old : {false, true}) {
        INFO("pml_slot_set_dirty " << old);
        Shadow s = pml_shadow(Backing::Anonymous, 2048, knobs({{"pml_slot_set_dirty", old}}));
        s.access(0, range(B, 1024, Access::Write));
        s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
        s.access(0, range(B, 100, Access::Write));  // 100 Dirty bits set again by the CPU
        const std::uint64_t flushes = s.counter("remote_tlb_flush");
        s.on_host([&]() { return s.model->dirty_log_disable(s.hctx, 0); });
        CHECK(s.counter("spte_dirty_set") == (old ? 924 : 0));
        CHECK(s.counter("remote_tlb_flush") == flushes + (old ? 1 : 0));
        CHECK(static_cast<bool>(s.lock("mmu_lock", engine::LockMode::Write, "kvm_mmu_slot_set_dirty")) == old);
        // PML is off now: without the knob a write to a still-clean SPTE sets D without logging
        // (with it the walk set every bit back, so nothing would log either way).
        s.access(0, range(B + 500, 10, Access::Write));
        s.access(0, {{B + 1500, Access::Write}});  // a first touch: an exit, which flushes the buffer
        CHECK(s.counter("vmx_flush_pml_buffer_entries") == 100);
    }
}

TEST_CASE("pml, tdp_mmu on: L1's writes log through the embedded TDP MMU's buffers, forwarded by x86_shadow",
          "[x86_shadow][dirty][pml]") {
    Shadow s(Backing::Anonymous, 1024, 1, knobs({{"tdp_mmu", true}}), 20, true);
    s.access(0, range(B, 1024, Access::Write));
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("spte_dirty_cleared") == 1024);
    const std::uint64_t faults = s.counter("pf_taken");
    s.access(0, range(B, 100, Access::Write));
    CHECK(s.counter("pf_taken") == faults);
    CHECK(get_log(s) == 100);
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 100);
}

TEST_CASE("pml, tdp_mmu off, an L2 guest: the nested trees' 4K SPTEs are write-protected (A/D-disabled), the direct "
          "tree's Dirty bits cleared; L1's VMLAUNCH flushes the buffer",
          "[x86_shadow][dirty][pml]") {
    Shadow s(Backing::Anonymous, 1024, 2, {}, 20, true);
    s.access(0, range(B, 64, Access::Write));  // L1 on vCPU 0: 64 direct SPTEs
    s.nested_start({1});
    s.access(1, range(B, 16, Access::Write));  // L2 on vCPU 1: 16 nested SPTEs, writable
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    CHECK(s.counter("spte_dirty_cleared") == 64);
    CHECK(s.counter("spte_write_protected") == 16);  // spte_wrprot_for_clear_dirty
    // L2's writes take write-protection faults (no PML in vmcs02) and flush nothing.
    const std::uint64_t faults = s.counter("pf_taken");
    s.access(1, range(B, 16, Access::Write));
    CHECK(s.counter("pf_taken") == faults + 16);
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 0);
    // vCPU 0 in L1 logs 10 writes; its VMLAUNCH of an L2 guest is an exit from L1: flushed.
    s.access(0, range(B + 20, 10, Access::Write));
    CHECK(s.counter("pf_taken") == faults + 16);
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 0);
    s.nested_start({0});
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 10);
    CHECK(get_log(s) == 10 + 16);  // L1's logged pages and L2's faults (marked in the slot)
}

TEST_CASE("pml, tdp_mmu off: a write to a write-protected huge SPTE is a page fault even with the buffer full",
          "[x86_shadow][dirty][pml]") {
    Shadow s = pml_shadow(Backing::AnonymousThp, 4 * 512, knobs({{"eager_page_split", false}}));
    s.access(0, range(B, 2 * 512, Access::Write));  // the first two 2M pages, then split below
    s.access(0, {{B + 2 * 512, Access::Write}});    // the third 2M page, mapped huge
    REQUIRE(s.gauge("pages_2m") == 3);
    s.on_host([&]() { return s.model->dirty_log_enable(s.hctx, 0, {}); });
    s.access(0, range(B, 512, Access::Write));  // the first 2M page: one fault drops it, 511 map 4K
    REQUIRE(get_log(s) == 512);                 // their Dirty bits cleared
    s.access(0, range(B, 512, Access::Write));  // now logged: 512 GPAs, the buffer is full
    CHECK(s.counter("handle_pml_full") == 0);
    const std::uint64_t faults = s.counter("pf_taken");
    s.access(0, {{B + 2 * 512 + 7, Access::Write}});  // a write-protected huge SPTE: an EPT violation
    CHECK(s.counter("handle_pml_full") == 0);
    CHECK(s.counter("pf_taken") == faults + 1);
    CHECK(s.counter("vmx_flush_pml_buffer_entries") == 512);  // flushed by that exit
}
