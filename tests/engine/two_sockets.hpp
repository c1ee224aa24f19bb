// A small two-socket topology for tests: CPUs 0-3 on socket 0, 4-7 on socket 1; an atomic on an
// owned line 10 ns, a transfer within a socket 60 ns, between sockets 130 ns.
#pragma once

#include "sim/engine/topology.hpp"

namespace kvmsim::test {

inline engine::Topology two_sockets() {
    using namespace engine::time_literals;
    engine::Topology t;
    t.sockets = 2;
    t.cpus_per_socket = 4;
    t.line_local = 10_ns;
    t.line_same_socket = 60_ns;
    t.line_cross_socket = 130_ns;
    return t;
}

}  // namespace kvmsim::test
