// Directed-graph helpers on Boost.Graph (vecS storage: deterministic iteration order).
#pragma once

#include <boost/graph/adjacency_list.hpp>
#include <cstddef>
#include <vector>

namespace kvmsim::engine {

using Digraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;

// One cycle of g, as its vertices in edge order (v0 -> v1 -> ... -> v0), found by a
// depth-first search from vertex 0 upward (a back edge closes it, as in Boost.Graph's
// example/file_dependencies.cpp). Empty when g is acyclic.
std::vector<std::size_t> find_cycle(const Digraph& g);

}  // namespace kvmsim::engine
