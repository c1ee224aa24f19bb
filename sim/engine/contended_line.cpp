#include "sim/engine/contended_line.hpp"

#include <algorithm>

namespace kvmsim::engine {

LineClass::LineClass(Simulator& sim, const Topology& topo, std::string name)
    : sim_(sim), xfer_(topo), name_(std::move(name)), id_(sim.line_stats().class_id(name_)) {}

LineRecord& LineClass::record() {
    const auto phase = static_cast<std::uint32_t>(sim_.phase());
    if (!rec_ || rec_->phase != phase) rec_ = &sim_.line_stats().record(id_, phase);
    return *rec_;
}

Time LineClass::serve(LineState& line, std::uint32_t cpu, Time at, Time service) {
    LineRecord& r = rec_ && rec_->phase == sim_.phase() ? *rec_ : record();
    ++r.operations;
    const Time start = std::max(at, line.free_at);
    if (line.free_at > at) {
        ++r.contended;
        r.wait_ps.record(static_cast<std::uint64_t>((start - at).ps()));
    }
    line.free_at = start + service;
    line.owner = cpu;
    return line.free_at;
}

Time LineClass::rmw(LineState& line, std::uint32_t cpu, Time at) { return serve(line, cpu, at, xfer_(line.owner, cpu)); }

Time LineClass::load_rmw(LineState& line, std::uint32_t cpu, Time at) {
    const Time x = xfer_(line.owner, cpu);
    const bool shared_fetch = line.owner != cpu && line.owner != Topology::kNoCpu;
    return serve(line, cpu, at, shared_fetch ? x + x : x);
}

}  // namespace kvmsim::engine
