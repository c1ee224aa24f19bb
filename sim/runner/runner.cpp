#include "sim/runner/runner.hpp"

#include <chrono>
#include <stdexcept>

#include "models/registry.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/workload/workload.hpp"

#ifndef KVMSIM_VERSION
#define KVMSIM_VERSION "unknown"
#endif

namespace kvmsim::runner {

namespace {
LockResult to_lock_result(const engine::LockStatsTable& t, const engine::LockRecord& r) {
    return LockResult{t.lock_name(r.lock), engine::to_string(r.mode), t.site_name(r.site), r.acquisitions,
                      r.contended, r.wait_ps, r.hold_ps};
}

LineResult to_line_result(const engine::LineStatsTable& t, const engine::LineRecord& r) {
    return LineResult{t.name(r.line_class), r.operations, r.contended, r.wait_ps};
}

BandwidthResult to_bandwidth_result(const engine::BandwidthStatsTable& t, const engine::BandwidthRecord& r) {
    return BandwidthResult{t.name(r.resource), r.bytes, r.transfers, r.busy, r.peak_concurrency};
}

std::map<std::string, std::uint64_t> counters_of(const engine::Counters& c, std::size_t phase) {
    std::map<std::string, std::uint64_t> out;
    for (engine::CounterId id = 0; id < c.size(); ++id) out[c.name(id)] = c.value(id, phase);
    return out;
}
}  // namespace

Result run(const scenario::Scenario& s, const RunOptions& opts) {
    const auto wall0 = std::chrono::steady_clock::now();
    const vm::ModelInfo* info = models::builtin_models().find(s.model);
    if (!info) throw std::invalid_argument("unknown MMU model \"" + s.model + "\"");

    engine::Simulator sim(s.seed);
    sim.set_tracer(opts.tracer);
    sim.set_event_log(opts.event_log);
    engine::CacheModel cache(s.host.cache);
    sim.on_phase_change([&cache](std::size_t p) { cache.begin_phase(p); });
    vm::VmConfig vm = s.vm;
    vm::ModelEnv env{sim, cache, s.host, vm, s.knobs};
    std::unique_ptr<vm::MmuModel> model = info->create(env);
    workload::Executor exec(sim, *model, vm, s.host, s.workload);
    exec.start();

    engine::RunStatus status;
    if (opts.progress) {
        // Chunks of simulated time, growing so that long runs report about every chunk.
        engine::Time step = engine::Time::us(100);
        do {
            const bool last = opts.until - sim.now() <= step;
            status = sim.run(last ? opts.until : sim.now() + step);
            opts.progress(sim.now().to_ns(), sim.events_processed());
            if (last) break;
            if (step < engine::Time::ms(100)) step = step * 2;
        } while (status == engine::RunStatus::TimeLimit);
    } else {
        status = sim.run(opts.until);
    }

    Result r;
    r.kvmsim_version = KVMSIM_VERSION;
    r.build_id = kvmsim_build_id;
    r.scenario = s.name;
    r.file = s.file;
    r.scenario_sha256 = s.sha256;
    r.resolved_sha256 = s.resolved_sha256;
    r.resolved_json = s.resolved_json;
    r.host_profile_json = s.host_profile_json;
    r.overrides = s.overrides;
    r.variant = s.variant;
    r.seed = s.seed;
    r.seed_used = sim.seed_used();
    r.model = s.model;
    r.preset = s.workload.preset;
    r.vcpus = s.vm.vcpus;
    r.recorded = s.recorded;
    if (s.host.costs.has("tsc_frequency")) r.tsc_hz = static_cast<std::uint64_t>(s.host.costs.number("tsc_frequency"));
    r.fingerprint = sim.fingerprint();
    r.status = status == engine::RunStatus::Deadlock    ? "deadlock"
               : status == engine::RunStatus::TimeLimit ? "stopped"
                                                        : "completed";
    if (const auto* d = sim.deadlock()) r.deadlock = d->text;
    r.events = sim.events_processed();
    r.events_inline = sim.events_inline();
    r.guest_accesses = exec.accesses();
    r.guest_exits = exec.guest_exits();
    r.sim_time_ns = sim.now().to_ns();

    // Simulator phase i + 1 is the workload's step i (phase 0: before the first step).
    const auto& steps = exec.phases();
    const auto& table = sim.lock_stats();
    const auto& lines = sim.line_stats();
    auto& bandwidth = sim.bandwidth_stats();
    bandwidth.flush(sim.now());  // transfers still in flight (a stopped run): busy up to now
    for (std::size_t i = 0; i < steps.size(); ++i) {
        PhaseStats p;
        p.name = steps[i].name;
        p.sim_time_ns = steps[i].duration.to_ns();
        p.selftest_metric = steps[i].selftest_metric;
        p.stats = counters_of(sim.counters(), i + 1);
        for (const auto& rec : table.records())
            if (rec.phase == i + 1) p.locks.push_back(to_lock_result(table, rec));
        p.caches = cache.phase_counters(i + 1);
        for (const auto& rec : lines.in_phase(static_cast<std::uint32_t>(i + 1)))
            p.lines.push_back(to_line_result(lines, rec));
        for (const auto& rec : bandwidth.in_phase(static_cast<std::uint32_t>(i + 1)))
            p.bandwidth.push_back(to_bandwidth_result(bandwidth, rec));
        p.fault_latency_ps = exec.scheduler().fault_latency(i + 1);
        r.phases.push_back(std::move(p));
    }
    // Every phase, 0 (before the first step) included.
    for (std::size_t i = 0; i < exec.scheduler().fault_latency_phases(); ++i)
        r.fault_latency_ps.merge(exec.scheduler().fault_latency(i));
    for (engine::CounterId id = 0; id < sim.counters().size(); ++id)
        r.stats[sim.counters().name(id)] = sim.counters().total(id);
    for (const auto& rec : table.totals()) r.locks.push_back(to_lock_result(table, rec));
    for (const auto& rec : lines.totals()) r.lines.push_back(to_line_result(lines, rec));
    for (const auto& rec : bandwidth.totals()) r.bandwidth.push_back(to_bandwidth_result(bandwidth, rec));
    for (const auto& l : s.host.cache.levels) r.cache_levels.push_back(l.name);
    r.caches = cache.total();

    if (opts.process_names)
        for (const auto& p : sim.processes()) opts.process_names->push_back(p->name());
    // Frames may hold guards on the model's locks: end them while everything is alive.
    sim.set_tracer(nullptr);
    sim.destroy_processes();
    r.wall_time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    return r;
}

}  // namespace kvmsim::runner
