#include "sim/workload/workload.hpp"

namespace kvmsim::workload {

using vm::thread_cpu;

Executor::Executor(engine::Simulator& sim, vm::MmuModel& model, const vm::VmConfig& vm, const vm::HostConfig& host,
                   const Workload& w)
    : sim_(sim), model_(model), vm_(vm), w_(w), sched_(sim, model), go_(sim, "stage start"),
      all_done_(sim, "stage done") {
    for (std::uint32_t i = 0; i < vm.vcpus; ++i)
        vcpus_.push_back(vm::CpuContext{"vcpu" + std::to_string(i), thread_cpu(i, host), static_cast<std::int32_t>(i)});
    // Host threads run on the CPUs after the vCPUs' (wrapping when the host is full).
    vmm_cpu_ = vm::CpuContext{"vmm", thread_cpu(vm.vcpus, host), -1};
    for (std::size_t i = 0; i < w.events.size(); ++i)
        actor_cpus_.push_back(
            vm::CpuContext{w.events[i].name, thread_cpu(static_cast<std::uint32_t>(vm.vcpus + 1 + i), host), -1});
    // The VM's own workers run on the CPU after the timed events' actors.
    worker_cpu_ = vm::CpuContext{"vm_worker", thread_cpu(static_cast<std::uint32_t>(vm.vcpus + 1 + w.events.size()), host), -1};
    stats_.resize(vm.vcpus);
    // The uffd reader threads, on the CPUs after the worker's.
    if (vm::Userfaultfd* uf = model.userfaultfd()) {
        const auto first = static_cast<std::uint32_t>(vm.vcpus + 2 + w.events.size());
        for (std::size_t fd = 0; fd < uf->uffds(); ++fd)
            for (std::uint32_t r = 0; r < vm.userfaultfd.readers; ++r) {
                const auto i = static_cast<std::uint32_t>(reader_cpus_.size());
                reader_cpus_.push_back(vm::CpuContext{"uffd" + std::to_string(fd) + "_reader" + std::to_string(r),
                                                      thread_cpu(first + i, host), -1});
            }
    }
}

void Executor::start() {
    for (std::uint32_t i = 0; i < vm_.vcpus; ++i) sim_.spawn(vcpus_[i].name, vcpu(i));
    sim_.spawn("vmm", vmm());
    for (std::size_t i = 0; i < w_.events.size(); ++i) sim_.spawn(w_.events[i].name, repeated(w_.events[i].at, w_.events[i].repeat, actor_cpus_[i], w_.events[i].host));
    model_.start_vm_workers(worker_cpu_);
    // readers-per-uffd threads for each uffd, in order (reader k reads uffd k / readers).
    if (model_.userfaultfd())
        for (std::size_t k = 0; k < reader_cpus_.size(); ++k)
            sim_.spawn(reader_cpus_[k].name, uffd_reader(k / vm_.userfaultfd.readers, k));
}

// uffd_handler_thread_fn (tools/testing/selftests/kvm/lib/userfaultfd_util.c, v6.8): poll the uffd
// and the quit pipe, read one message (EAGAIN: another reader took it), handle_uffd_page_request.
engine::Task<void> Executor::uffd_reader(std::size_t fd, std::size_t k) {
    vm::Userfaultfd& uf = *model_.userfaultfd();
    const vm::CpuContext& cpu = reader_cpus_[k];
    while (co_await uf.poll(cpu, fd)) {
        const std::optional<Gfn> gfn = co_await uf.read(cpu, fd);
        if (!gfn) continue;
        co_await uf.resolve(cpu, fd, *gfn);
    }
}

std::uint64_t Executor::accesses() const {
    std::uint64_t n = 0;
    for (const auto& s : stats_) n += s.accesses;
    return n;
}

std::uint64_t Executor::guest_exits() const {
    std::uint64_t n = 0;
    for (const auto& s : stats_) n += s.faults;
    return n;
}

void Executor::release_vcpus(const std::vector<AccessStream>* streams) {
    current_ = streams;
    running_ = vm_.vcpus;
    go_.notify_all();
}

engine::Task<void> Executor::vcpu(std::uint32_t index) {
    for (;;) {
        co_await go_.wait();
        if (quit_) co_return;
        if (current_ && index < current_->size() && (*current_)[index].npages) {
            sim_.trace_begin(stage_name_);
            co_await sched_.run(vcpus_[index], (*current_)[index], stats_[index]);
            sim_.trace_end();
        }
        if (--running_ == 0) {
            // access_tracking_perf_test -p's "vcpu wall time": from the step's start to the last vCPU done.
            if (wall_) sim_.counters().set_max(*wall_, static_cast<std::uint64_t>((sim_.now() - step_start_).ps() / 1000));
            all_done_.notify_all();
        }
    }
}

engine::Task<void> Executor::host_op(const vm::CpuContext& cpu, const HostOp& op) {
    using vm::Operation;
    sim_.trace_begin(vm::to_string(op.op));
    switch (op.op) {
        case Operation::DirtyLogEnable:
            for (auto s : op.slots) co_await model_.dirty_log_enable(cpu, s, op.dirty);
            break;
        case Operation::DirtyLogGet:
            for (auto s : op.slots) (void)co_await model_.dirty_log_get(cpu, s);
            break;
        case Operation::DirtyLogClear:
            for (auto s : op.slots) {
                const vm::Memslot* slot = nullptr;
                for (const auto& m : vm_.memslots)
                    if (m.id == s) slot = &m;
                if (!slot) continue;
                const std::uint64_t chunk = op.clear_chunk_pages ? op.clear_chunk_pages : slot->npages;
                for (std::uint64_t off = 0; off < slot->npages; off += chunk)
                    co_await model_.dirty_log_clear(cpu, s, slot->base_gfn + off, std::min(chunk, slot->npages - off));
            }
            break;
        case Operation::DirtyLogDisable:
            for (auto s : op.slots) co_await model_.dirty_log_disable(cpu, s);
            break;
        case Operation::ZapGfnRange: co_await model_.zap_gfn_range(cpu, op.start, op.end, op.reason); break;
        case Operation::Invalidate: co_await model_.invalidate_range(cpu, op.start, op.end); break;
        case Operation::VmDestroy: co_await model_.vm_destroy(cpu); break;
        case Operation::SmmEnter:
        case Operation::SmmExit:
        case Operation::NestedStart:
        case Operation::NestedStop:
        case Operation::NestedEptpSwitch:
        case Operation::NestedEptWrite: co_await on_vcpus(op); break;
        case Operation::ClearYoung:
        case Operation::TestYoung:
            if (op.vcpus.empty())
                co_await age(cpu, op, op.start, op.end);
            else
                co_await on_vcpus(op);
            break;
    }
    sim_.trace_end();
    if (sim_.tracer()) trace_counters(sim_);
}

engine::Task<void> Executor::age(const vm::CpuContext& cpu, const HostOp& op, Gfn start, Gfn end) {
    vm::AgeRequest r;
    r.start = start;
    r.end = end;
    r.clear = op.op == vm::Operation::ClearYoung;
    r.via = op.age_via;
    (void)co_await model_.age_range(cpu, r);
}

engine::Task<void> Executor::vcpu_op(const vm::CpuContext& cpu, const HostOp& op, std::uint32_t& pending,
                                      engine::Signal& done) {
    using vm::Operation;
    switch (op.op) {
        case Operation::SmmEnter: co_await model_.smm_transition(cpu, true, op.smi_handler); break;
        case Operation::SmmExit: co_await model_.smm_transition(cpu, false, op.smi_handler); break;
        case Operation::NestedStart: co_await model_.nested_start(cpu, op.eptp); break;
        case Operation::NestedStop: co_await model_.nested_stop(cpu, op.eptp); break;
        case Operation::NestedEptpSwitch: co_await model_.nested_eptp_switch(cpu, op.eptps); break;
        case Operation::NestedEptWrite: co_await model_.nested_ept_write(cpu, op.ept); break;
        case Operation::ClearYoung:
        case Operation::TestYoung: {
            // The vCPU thread's share of the range (the last takes the remainder).
            std::size_t k = 0;
            while (k < op.vcpus.size() && op.vcpus[k] != static_cast<std::uint32_t>(cpu.vcpu)) ++k;
            const std::uint64_t n = op.vcpus.size(), total = op.end - op.start, part = total / n;
            const Gfn s = op.start + part * k;
            co_await age(cpu, op, s, k + 1 == n ? op.end : s + part);
            break;
        }
        default: throw std::logic_error(std::string("not a per-vCPU operation: ") + vm::to_string(op.op));
    }
    if (--pending == 0) done.notify_all();
}

// A per-vCPU operation runs in each named vCPU's context, concurrently, and completes when the
// last of them does. The executor does not pause the vCPU's guest stream meanwhile (in KVM the
// transition happens inside that vCPU's KVM_RUN); a model can hold it by failing hits() for the
// vCPU and waiting in page_fault, as x86_tdp does from an SMI until RSM.
engine::Task<void> Executor::on_vcpus(const HostOp& op) {
    std::uint32_t pending = static_cast<std::uint32_t>(op.vcpus.size());
    if (pending == 0) co_return;
    engine::Signal done(sim_, std::string(vm::to_string(op.op)) + " done");
    for (std::uint32_t v : op.vcpus)
        sim_.spawn(vcpus_[v].name + ":" + vm::to_string(op.op), vcpu_op(vcpus_[v], op, pending, done));
    co_await done.wait();
}

engine::Task<void> Executor::vmm() {
    for (const Step& step : w_.steps) {
        sim_.begin_phase(step.name);
        stage_name_ = step.name;
        sim_.trace_begin(step.name);
        const Time t0 = sim_.now();
        step_start_ = t0;
        wall_.reset();
        if (step.repeat.until_vcpus_done)  // registered only when used
            wall_ = sim_.counters().id("vcpu_wall_time_ns", engine::Counters::Kind::Max);
        if (step.kind == Step::Kind::Stage) {
            release_vcpus(&step.streams);
            co_await all_done_.wait();
            phases_.push_back(PhaseResult{step.name, sim_.now() - t0, step.selftest_metric});
        } else {
            const bool with_vcpus = !step.streams.empty();
            if (with_vcpus) release_vcpus(&step.streams);
            co_await repeated(t0, step.repeat, vmm_cpu_, step.host);
            phases_.push_back(PhaseResult{step.name, sim_.now() - t0, step.selftest_metric});
            // The vCPUs may all have finished while the operation ran: all_done_ has fired then.
            if (with_vcpus && running_ > 0) co_await all_done_.wait();
        }
        sim_.trace_end();
    }
    quit_ = true;
    current_ = nullptr;
    model_.stop_vm_workers();
    if (vm::Userfaultfd* uf = model_.userfaultfd()) uf->shutdown();  // uffd_stop_demand_paging
    go_.notify_all();
}

engine::Task<void> Executor::repeated(Time first, const Repeat& r, vm::CpuContext& cpu, const HostOp& op) {
    if (r.until_vcpus_done) {
        // Checked after each run: the vCPUs released with this step are still going.
        do {
            co_await host_op(cpu, op);
            sim_.counters().add(sim_.counters().id("aging_passes"));  // registered only when used
        } while (running_ > 0);
        co_return;
    }
    for (std::uint32_t k = 0; k < r.count; ++k) {
        const Time at = first + r.interval * static_cast<std::int64_t>(k);
        if (at > sim_.now()) co_await sim_.delay(at - sim_.now());
        co_await host_op(cpu, op);
    }
}

}  // namespace kvmsim::workload
