// Contended cache lines: an atomic or a lock word that many CPUs hit is a FIFO server whose
// service time is the line's transfer latency (Topology::line_transfer from its last owner), so
// N CPUs hammering one line serialize. There can be millions of lines (one per struct page): the
// per-line state is a small LineState kept by the caller, and the named LineClass serves it and
// keeps the statistics (in the Simulator's LineStatsTable, per phase).
//
// No event is scheduled: rmw() returns the completion time and the caller delays to it. Callers
// compute future arrival times analytically, so the call order is the FIFO order: a call whose
// `at` is earlier than a previous call's completion simply queues behind it (it is not moved
// ahead of calls made before it, even if they arrive later).
#pragma once

#include <cstdint>
#include <string>

#include "sim/engine/simulator.hpp"
#include "sim/engine/topology.hpp"

namespace kvmsim::engine {

struct LineState {
    Time free_at{};                          // when the last operation on the line completes
    std::uint32_t owner = Topology::kNoCpu;  // the CPU that did it
};
static_assert(sizeof(LineState) <= 16);

class LineClass {
public:
    // The topology is copied.
    LineClass(Simulator& sim, const Topology& topo, std::string name);
    LineClass(const LineClass&) = delete;
    LineClass& operator=(const LineClass&) = delete;

    // An atomic read-modify-write of `line` by `cpu` arriving at `at`: served FIFO in call order,
    // starting at max(at, line.free_at) and taking topo.line_transfer(line.owner, cpu) -
    // line_local when `cpu` owns the line already. A line nobody has touched costs
    // line_same_socket: it is not in any CPU's cache, so the RMW must fetch it into this CPU's
    // L1 in exclusive state from the socket's shared cache or memory, which is about what taking
    // it from a neighbour core costs; charging it so does not depend on which socket happens to
    // touch it first. Returns the completion time; the line is then owned by `cpu`. Statistics
    // go to the simulator's current phase.
    Time rmw(LineState& line, std::uint32_t cpu, Time at);
    // A load of `line` and then an atomic on it by the same CPU (code that reads a word before
    // it updates it: a cmpxchg loop behind its first read, a check before an increment), served
    // as one FIFO operation. When another CPU owns the line these are two coherence transactions
    // at topo.line_transfer(line.owner, cpu): the load fetches the line shared, the atomic then
    // takes it exclusive, invalidating the previous owner's copy. When `cpu` owns it, or nobody
    // has touched it, it costs what rmw() does (the atomic finds the line exclusive).
    Time load_rmw(LineState& line, std::uint32_t cpu, Time at);

    const std::string& name() const { return name_; }
    const Topology& topology() const { return xfer_.topology(); }
    // What `to_cpu` pays to take a line `from_cpu` owns (Topology::line_transfer, by table).
    Time transfer(std::uint32_t from_cpu, std::uint32_t to_cpu) const { return xfer_(from_cpu, to_cpu); }

private:
    LineRecord& record();
    Time serve(LineState& line, std::uint32_t cpu, Time at, Time service);

    Simulator& sim_;
    LineTransfer xfer_;
    std::string name_;
    std::uint32_t id_;
    LineRecord* rec_ = nullptr;  // the current phase's record, once made
};

// One named line (a lock word such as mmap_lock's): its state and its class.
class ContendedLine {
public:
    ContendedLine(Simulator& sim, const Topology& topo, std::string name)
        : class_(sim, topo, std::move(name)) {}
    Time rmw(std::uint32_t cpu, Time at) { return class_.rmw(state_, cpu, at); }
    const LineState& state() const { return state_; }
    const std::string& name() const { return class_.name(); }
    LineClass& line_class() { return class_; }

private:
    LineClass class_;
    LineState state_;
};

}  // namespace kvmsim::engine
