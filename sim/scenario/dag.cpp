#include "sim/scenario/dag.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "sim/engine/graph.hpp"
#include "sim/scenario/json_util.hpp"

namespace kvmsim::scenario {

namespace {

// Edges point from a dependency to the node that runs after it ("runs before").
using Graph = engine::Digraph;

}  // namespace

std::vector<std::size_t> topological_order(std::span<const DagNode> nodes, const std::string& file,
                                           std::string_view noun) {
    const std::size_t n = nodes.size();
    const std::string noun_s(noun);

    std::map<std::string, std::size_t, std::less<>> index;
    std::vector<std::string_view> names;
    for (std::size_t i = 0; i < n; ++i) {
        const auto [it, inserted] = index.emplace(nodes[i].name, i);
        if (!inserted)
            throw ScenarioError(file, nodes[i].pointer,
                                "duplicate " + noun_s + " name " + quote(nodes[i].name) +
                                    " (first used at " +
                                    (nodes[it->second].pointer.empty() ? std::string("(root)")
                                                                       : nodes[it->second].pointer) +
                                    ")");
        names.push_back(nodes[i].name);
    }

    Graph g(n);
    std::set<std::pair<std::size_t, std::size_t>> seen;
    for (std::size_t i = 0; i < n; ++i) {
        const DagNode& node = nodes[i];
        for (std::size_t k = 0; k < node.after.size(); ++k) {
            const std::string& dep = node.after[k];
            const auto it = index.find(dep);
            if (it == index.end()) {
                std::string message = "unknown " + noun_s + " " + quote(dep);
                if (const auto s = did_you_mean(dep, std::span<const std::string_view>(names)))
                    message += " (did you mean " + quote(*s) + "?)";
                else if (names.empty())
                    message += " (there are no " + noun_s + "s)";
                else
                    message += " (" + noun_s + "s are " + quoted_list(names) + ")";
                const std::string& where =
                    k < node.after_pointers.size() ? node.after_pointers[k] : node.pointer;
                throw ScenarioError(file, where, std::move(message));
            }
            if (seen.emplace(it->second, i).second) boost::add_edge(it->second, i, g);
        }
    }

    if (std::vector<std::size_t> cycle = engine::find_cycle(g); !cycle.empty()) {
        // Reverse into "runs after" order, then start at the first-listed node.
        std::reverse(cycle.begin(), cycle.end());
        std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
        std::string text;
        for (std::size_t v : cycle) text += printable(nodes[v].name) + " -> ";
        text += printable(nodes[cycle.front()].name);
        throw ScenarioError(file, nodes[cycle.front()].pointer,
                            noun_s + " dependencies form a cycle: " + text);
    }

    // Kahn's algorithm, smallest input index first among the ready nodes.
    std::vector<std::size_t> waiting(n, 0);
    for (const auto& [before, after] : seen) ++waiting[after];
    std::set<std::size_t> ready;
    for (std::size_t i = 0; i < n; ++i)
        if (waiting[i] == 0) ready.insert(i);
    std::vector<std::size_t> order;
    order.reserve(n);
    while (!ready.empty()) {
        const std::size_t v = *ready.begin();
        ready.erase(ready.begin());
        order.push_back(v);
        for (auto [e, end] = boost::out_edges(v, g); e != end; ++e) {
            const std::size_t t = boost::target(*e, g);
            if (--waiting[t] == 0) ready.insert(t);
        }
    }
    return order;  // complete: the depth-first search found no cycle
}

}  // namespace kvmsim::scenario
