// Phase dependencies as a DAG (Boost.Graph): the order phases run in, or a located error for
// a cycle, an unknown dependency or a duplicate name. Generic: "phase" is only the noun used in
// messages.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sim/scenario/error.hpp"

namespace kvmsim::scenario {

struct DagNode {
    std::string name;                         // unique among the nodes
    std::string pointer;                      // where errors about this node point, e.g. "/phases/2"
    std::vector<std::string> after;           // names of the nodes that must come before this one
    std::vector<std::string> after_pointers;  // optional, one per `after` entry
                                              // (e.g. "/phases/2/after/0"); else `pointer`
};

// The execution order, as indices into `nodes`.
//
// Order rule (stable): among the nodes whose dependencies have all been placed, the one listed
// first comes next (Kahn's algorithm with the smallest input index first). So the input order
// is kept wherever the dependencies allow, and nodes without dependencies keep their order.
// Listing the same dependency twice is the same as listing it once.
//
// Errors (ScenarioError in `file`):
//  - a name used twice, at the later node's pointer:
//      duplicate phase name "warmup" (first used at /phases/0)
//  - an unknown dependency, at its after_pointers entry:
//      unknown phase "warmpu" (did you mean "warmup"?)
//  - a cycle, at the pointer of the first-listed node on it; "a -> b" reads "a runs after b":
//      phase dependencies form a cycle: warmup -> zap -> warmup
//    The cycle reported is the first one a depth-first search (Boost.Graph, vertices and
//    edges in input order) finds, rotated to start at its first-listed node.
std::vector<std::size_t> topological_order(std::span<const DagNode> nodes, const std::string& file,
                                           std::string_view noun = "phase");

}  // namespace kvmsim::scenario
