// The machine's shape as the shared resources see it: sockets of CPUs, what moving a cache line
// between two CPUs costs, and each socket's memory bandwidth. Values come from a host profile.
#pragma once

#include <cstdint>
#include <vector>

#include "sim/engine/time.hpp"

namespace kvmsim::engine {

struct Topology {
    // A CPU number meaning "no CPU" (a cache line nobody has touched yet).
    static constexpr std::uint32_t kNoCpu = UINT32_MAX;

    std::uint32_t sockets = 1;
    std::uint32_t cpus_per_socket = 1;
    Time line_local{};          // an atomic on a line this CPU already owns (L1 hit + the RMW)
    Time line_same_socket{};    // the line is owned by another core of the same socket
    Time line_cross_socket{};   // owned by a core of another socket
    std::uint64_t memory_bandwidth_per_socket = 0;  // bytes per second; 0 = unlimited

    std::uint32_t cpus() const { return sockets * cpus_per_socket; }
    // CPUs are numbered socket by socket; a number past the last CPU wraps around.
    std::uint32_t socket_of(std::uint32_t cpu) const {
        return cpus_per_socket == 0 || sockets == 0 ? 0 : (cpu / cpus_per_socket) % sockets;
    }
    // What `to_cpu` pays to take the line `from_cpu` owns: line_local when it is the same CPU,
    // else line_same_socket or line_cross_socket. from_cpu == kNoCpu (an untouched line) costs
    // line_same_socket: see LineClass::rmw.
    Time line_transfer(std::uint32_t from_cpu, std::uint32_t to_cpu) const {
        if (from_cpu == to_cpu) return line_local;
        if (from_cpu == kNoCpu || socket_of(from_cpu) == socket_of(to_cpu)) return line_same_socket;
        return line_cross_socket;
    }
};

// Topology::line_transfer without its divisions: each CPU's socket looked up in a table (for the
// topology's CPUs; a number past them takes line_transfer itself). Same results.
class LineTransfer {
public:
    static constexpr std::uint32_t kMaxTable = 1u << 16;
    LineTransfer() = default;
    explicit LineTransfer(const Topology& t) : topo_(t) {
        const std::uint64_t n = std::uint64_t{t.sockets} * t.cpus_per_socket;
        if (n <= kMaxTable) {
            socket_.resize(static_cast<std::size_t>(n));
            for (std::uint32_t c = 0; c < n; ++c) socket_[c] = t.socket_of(c);
        }
    }
    Time operator()(std::uint32_t from_cpu, std::uint32_t to_cpu) const {
        if (from_cpu == to_cpu) return topo_.line_local;
        if (from_cpu < socket_.size() && to_cpu < socket_.size())
            return socket_[from_cpu] == socket_[to_cpu] ? topo_.line_same_socket : topo_.line_cross_socket;
        return topo_.line_transfer(from_cpu, to_cpu);
    }
    const Topology& topology() const { return topo_; }

private:
    Topology topo_;
    std::vector<std::uint32_t> socket_;
};

}  // namespace kvmsim::engine
