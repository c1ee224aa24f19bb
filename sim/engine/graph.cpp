#include "sim/engine/graph.hpp"

#include <boost/graph/depth_first_search.hpp>

namespace kvmsim::engine {

namespace {
using Vertex = boost::graph_traits<Digraph>::vertex_descriptor;

struct CycleFound {};

struct CycleVisitor : boost::default_dfs_visitor {
    std::vector<Vertex>* parent;
    std::vector<Vertex>* cycle;
    template <class E, class G>
    void tree_edge(E e, const G& g) const { (*parent)[boost::target(e, g)] = boost::source(e, g); }
    template <class E, class G>
    void back_edge(E e, const G& g) const {
        // source -> target closes a cycle: target ... source along tree edges.
        const Vertex from = boost::source(e, g), to = boost::target(e, g);
        std::vector<Vertex> path{from};
        for (Vertex v = from; v != to; v = (*parent)[v]) path.push_back((*parent)[v]);
        cycle->assign(path.rbegin(), path.rend());
        throw CycleFound{};
    }
};
}  // namespace

std::vector<std::size_t> find_cycle(const Digraph& g) {
    const std::size_t n = boost::num_vertices(g);
    std::vector<Vertex> parent(n, 0), cycle;
    std::vector<boost::default_color_type> color(n);
    try {
        boost::depth_first_search(
            g, CycleVisitor{{}, &parent, &cycle},
            boost::make_iterator_property_map(color.begin(), boost::get(boost::vertex_index, g)));
    } catch (const CycleFound&) {
    }
    return {cycle.begin(), cycle.end()};
}

}  // namespace kvmsim::engine
