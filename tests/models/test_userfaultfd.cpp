// Unit tests of the host mm's userfaultfd (models/host, Linux v6.8 fs/userfaultfd.c and
// mm/userfaultfd.c): faults sleeping in handle_userfault on the uffd's wait queue, reader threads
// polling, reading and resolving (UFFDIO_COPY / UFFDIO_CONTINUE), one uffd for all vCPUs (-a)
// against one per vCPU, several readers per uffd (-r), and the memory-fault exit (-w).
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "models/host/host_mm.hpp"
#include "tests/models/harness.hpp"

using namespace kvmsim;
using namespace kvmsim::engine::time_literals;
using kvmsim::models::host::Gup;
using kvmsim::models::host::HostMm;
using kvmsim::models::host::Page;
using vm::Backing;
using vm::Gfn;
using Mode = vm::UffdConfig::Mode;

namespace {

constexpr Gfn B = 0x100000;
constexpr std::uint64_t kPart = 64;  // pages per vCPU

models::host::Costs costs() {
    models::host::Costs k;
    k.gup_fast = 50_ns;
    k.gup_slow = 60_ns;
    k.host_fault_base = 1000_ns;
    k.zero_page_map = 70_ns;
    k.pmd_split = 400_ns;
    k.zero_rate = 40'960'000'000;
    k.uffd_handle_userfault = 1000_ns;
    k.uffd_wake_latency = 2000_ns;
    k.uffd_wake_per_waiter = 100_ns;
    k.uffd_ttwu = 500_ns;
    k.uffd_syscall = 300_ns;
    k.uffd_continue = 400_ns;
    k.memory_fault_exit = 2000_ns;
    k.uffd_copy_rate = 10'240'000'000;  // 4 KiB in 400 ns
    return k;
}

struct Opts {
    std::uint32_t vcpus = 1;
    Mode mode = Mode::Missing;
    bool single = false;  // -a
    std::uint32_t readers = 1;
    bool exit_on_missing = false;
    Backing backing = Backing::Anonymous;
    std::uint64_t pages = 1;  // each vCPU writes this many pages of its part, one after the other
};

// The host mm with the VM's memory registered as demand_paging_test does, vCPUs each writing
// their part, and the reader threads of workload.cpp's Executor::uffd_reader.
struct Run {
    engine::Simulator sim{1};
    vm::HostConfig cfg;
    std::vector<vm::Memslot> slots;
    vm::UffdConfig uffd;
    std::unique_ptr<HostMm> mm;
    std::vector<engine::Time> done;  // per vCPU, its last GUP's return
    std::uint32_t running = 0;
    engine::Signal all_done{sim, "all done"};

    explicit Run(const Opts& o) {
        cfg.cpus = 64;
        cfg.topology.sockets = 1;
        cfg.topology.cpus_per_socket = 64;
        cfg.topology.line_local = 10_ns;
        cfg.topology.line_same_socket = 60_ns;
        cfg.topology.line_cross_socket = 130_ns;
        cfg.topology.memory_bandwidth_per_socket = 0;
        const std::uint64_t unit = o.backing == Backing::Hugetlb2M ? 512 : 1;
        const std::uint64_t part = kPart * unit;
        vm::Memslot m;
        m.id = 1;
        m.base_gfn = B;
        m.npages = part * o.vcpus;
        m.backing = o.backing;
        slots.push_back(m);
        uffd.mode = o.mode;
        uffd.readers = o.readers;
        uffd.exit_on_missing = o.exit_on_missing;
        uffd.shared = o.mode == Mode::Minor;
        const std::uint32_t n = o.single ? 1 : o.vcpus;
        for (std::uint32_t i = 0; i < n; ++i)
            uffd.ranges.emplace_back(B + i * (m.npages / n), B + (i + 1) * (m.npages / n));
        mm = std::make_unique<HostMm>(sim, cfg, slots, costs(), models::host::Features{}, uffd);
        done.resize(o.vcpus);
        running = o.vcpus;
        for (std::uint32_t v = 0; v < o.vcpus; ++v)
            sim.spawn("vcpu" + std::to_string(v), vcpu(v, B + v * part, o.pages, unit));
        std::uint32_t cpu = o.vcpus;
        for (std::size_t fd = 0; fd < mm->uffds(); ++fd)
            for (std::uint32_t r = 0; r < o.readers; ++r) sim.spawn("reader", reader(fd, cpu++));
        sim.spawn("main", stop());
    }
    engine::Task<void> vcpu(std::uint32_t v, Gfn base, std::uint64_t pages, std::uint64_t unit) {
        const vm::CpuContext c{"vcpu" + std::to_string(v), v, static_cast<std::int32_t>(v)};
        for (std::uint64_t p = 0; p < pages; ++p) {
            const Gup g = co_await mm->gup(c, base + p * unit, true);
            if (g.done > sim.now()) co_await sim.delay(g.done - sim.now());
        }
        done[v] = sim.now();
        if (--running == 0) all_done.set();
    }
    engine::Task<void> reader(std::size_t fd, std::uint32_t cpu) {
        const vm::CpuContext c{"reader", cpu, -1};
        while (co_await mm->poll(c, fd)) {
            const auto gfn = co_await mm->read(c, fd);
            if (!gfn) continue;
            co_await mm->resolve(c, fd, *gfn);
        }
    }
    engine::Task<void> stop() {
        co_await all_done.wait();
        mm->shutdown();
    }
    void run() { REQUIRE(sim.run() == engine::RunStatus::Completed); }
    std::uint64_t counter(std::string_view n) const { return sim.counters().total(n); }
    std::uint64_t wqh(bool contended) const {
        std::uint64_t n = 0;
        const auto& t = sim.lock_stats();
        for (const auto& r : t.totals())
            if (t.lock_name(r.lock) == "uffd_wqh") n += contended ? r.contended : r.acquisitions;
        return n;
    }
    engine::Time last() const {
        engine::Time t{};
        for (auto d : done) t = std::max(t, d);
        return t;
    }
};

}  // namespace

TEST_CASE("uffd: one MISSING fault sleeps in handle_userfault until the reader's UFFDIO_COPY wakes it; "
          "exact times",
          "[host][uffd]") {
    Run r(Opts{});
    r.run();
    // vCPU: gup_fast + gup_slow 110, mmap_lock (untouched) 60: 170; handle_userfault 1000: 1170;
    // the wait-queue lock word 60: 1230; fd_wqh's word 60 and one poller woken (ttwu 500): 1790;
    // mmap_read_unlock 10: 1800, asleep.
    // Reader (CPU 1): poll 300, nothing pending: asleep on fd_wqh from 300, woken at 1790, runs
    // 2000 later: 3790; read 300, fd_wqh's word 60, the lock word 60: 4210, the message taken.
    // UFFDIO_COPY: 300, mmap_lock 60: 4570, allocation 1000, copy 400: 5970, page-table lock 60:
    // 6030, mmap_lock 10: 6040; wake: the lock word 10, one entry walked 100, ttwu 500: 6650.
    // vCPU: runs 2000 later (8650), the GUP starts over: the fast path, gup_fast 50, its page's
    // refcount line (the reader allocated it: a shared fetch and the upgrade, 2 x 60): 8820.
    CHECK(r.done[0] == 8820_ns);
    CHECK(r.mm->page(B) == Page::Private);
    CHECK(r.counter("uffd_handle_userfault") == 1);
    CHECK(r.counter("uffd_read_msg") == 1);
    CHECK(r.counter("uffdio_copy") == 1);
    CHECK(r.counter("uffdio_continue") == 0);
    CHECK(r.counter("uffd_read_eagain") == 0);
    CHECK(r.wqh(false) == 3);  // handle_userfault, userfaultfd_ctx_read, __wake_userfault
    CHECK(r.mm->uffd_waiters(0) == 0);
}

TEST_CASE("uffd: MINOR resolves with UFFDIO_CONTINUE (the page cache's page mapped, nothing copied)", "[host][uffd]") {
    Opts o;
    o.mode = Mode::Minor;
    Run r(o);
    r.run();
    // As the MISSING case up to the ioctl (4570), then the page-cache lookup 400 instead of the
    // allocation and the copy (1400): 1000 earlier.
    CHECK(r.done[0] == 7820_ns);
    CHECK(r.counter("uffdio_continue") == 1);
    CHECK(r.counter("uffdio_copy") == 0);
}

TEST_CASE("uffd: with -a every vCPU's fault waits on one queue; the reader serves them in order and "
          "each wake walks the queue",
          "[host][uffd]") {
    Opts o;
    o.vcpus = 8;
    o.single = true;
    Run r(o);
    // Run until all eight have queued their fault and the reader took the first.
    r.sim.run(5_us);
    CHECK(r.mm->uffds() == 1);
    CHECK(r.mm->uffd_waiters(0) == 8);
    r.run();
    CHECK(r.counter("uffd_handle_userfault") == 8);
    CHECK(r.counter("uffd_read_msg") == 8);
    CHECK(r.wqh(true) > 0);  // the faults and the reader contended for the wait-queue lock
    // One reader serializes the eight: each vCPU finishes later than the one before it.
    for (std::uint32_t v = 1; v < 8; ++v) CHECK(r.done[v] != r.done[v - 1]);

    // One uffd (and reader) per vCPU: no queue shared, every vCPU as fast as a lone one, give or
    // take the shared mmap_lock line.
    Opts p = o;
    p.single = false;
    Run q(p);
    q.run();
    CHECK(q.mm->uffds() == 8);
    CHECK(q.wqh(true) == 0);
    CHECK(q.last() < r.last());
    CHECK(q.last() < 8760_ns + 8 * 200_ns);
}

TEST_CASE("uffd: more readers on one uffd serve queued faults sooner; woken readers that find nothing get "
          "EAGAIN",
          "[host][uffd]") {
    Opts o;
    o.vcpus = 8;
    o.single = true;
    o.pages = 4;
    Run one(o);
    one.run();
    o.readers = 4;
    Run four(o);
    four.run();
    CHECK(four.last() < one.last());
    CHECK(four.counter("uffd_read_msg") == 32);
    CHECK(four.counter("uffdio_copy") == 32);
    CHECK(four.wqh(true) > one.wqh(true));

    // One vCPU, four readers: each fault's wake_up_poll wakes all four sleeping in poll; once
    // running they all see the message, one reads it and three get EAGAIN. The extra wake-ups
    // (try_to_wake_up each, in handle_userfault) make the lone vCPU slower than with one reader.
    Opts l;
    l.pages = 4;
    Run lone1(l);
    lone1.run();
    l.readers = 4;
    Run lone4(l);
    lone4.run();
    CHECK(lone1.counter("uffd_read_eagain") == 0);
    CHECK(lone4.counter("uffd_read_eagain") == 3 * 4);
    CHECK(lone4.last() > lone1.last());
}

TEST_CASE("uffd: -w - the vCPU exits to userspace and resolves the page itself; nobody sleeps on the uffd",
          "[host][uffd]") {
    Opts o;
    o.exit_on_missing = true;
    Run r(o);
    r.run();
    // gup_fast 50 + memory_fault_exit 2000; UFFDIO_COPY on the vCPU thread: 300, mmap_lock 60
    // (2410), allocation 1000 and copy 400 (3810), page-table lock 60 (3870), mmap_lock 10 (3880),
    // DONTWAKE; the GUP starts over: gup_fast 50, the refcount line it owns 10: 3940.
    CHECK(r.done[0] == 3940_ns);
    CHECK(r.counter("memory_fault_exit") == 1);
    CHECK(r.counter("uffd_handle_userfault") == 0);
    CHECK(r.counter("uffd_read_msg") == 0);
    CHECK(r.wqh(false) == 0);

    // Eight vCPUs on one uffd: no wait queue, so they do not serialize behind one reader.
    Opts a = o;
    a.vcpus = 8;
    a.single = true;
    Run w(a);
    w.run();
    a.exit_on_missing = false;
    Run s(a);
    s.run();
    CHECK(w.last() < s.last());
}

TEST_CASE("uffd: hugetlb - one fault per huge page, UFFDIO_COPY copies 2 MiB", "[host][uffd]") {
    Opts o;
    o.backing = Backing::Hugetlb2M;
    o.pages = 2;
    Run r(o);
    r.run();
    CHECK(r.counter("uffdio_copy") == 2);
    CHECK(r.counter("uffd_handle_userfault") == 2);
    CHECK(r.mm->page(B + 511) == Page::Hugetlb);
    CHECK(r.mm->page(B + 1024) == Page::Absent);
    // The copy of 2 MiB at 10.24 GB/s takes 204.8 us of each fault.
    CHECK(r.done[0] > 2 * 204800_ns);
}
