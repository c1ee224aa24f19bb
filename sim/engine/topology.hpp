// The machine's shape as the shared resources see it: sockets of CPUs, what moving a cache line
// between two CPUs costs, and each socket's memory bandwidth. Values come from a host profile.
#pragma once

#include <cstdint>

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

}  // namespace kvmsim::engine
