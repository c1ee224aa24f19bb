// The deadlock report: when no event is left but processes are still blocked, the wait-for
// graph (process -> processes holding what it waits for) is searched for a cycle.
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/depth_first_search.hpp>
#include <sstream>

#include "sim/engine/simulator.hpp"

namespace kvmsim::engine {

namespace {
using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;
using Vertex = boost::graph_traits<Graph>::vertex_descriptor;

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

void Simulator::build_deadlock_report() {
    DeadlockReport r;
    const std::size_t n = processes_.size();
    Graph g(n);
    std::vector<std::pair<const Process*, std::string>> holders;
    for (const auto& p : processes_) {
        if (p->state_ != Process::State::Waiting || !p->waiting_on_) continue;
        DeadlockReport::Blocked b;
        b.process = p->name_;
        b.waits_for = p->waiting_on_->wait_name();
        b.mode = p->waiting_mode_;
        holders.clear();
        p->waiting_on_->holders(holders);
        for (const auto& [h, mode] : holders) {
            b.held_by.emplace_back(h->name(), mode);
            boost::add_edge(p->id_, h->id(), g);
        }
        r.blocked.push_back(std::move(b));
    }

    std::vector<Vertex> parent(n, 0), cycle;
    std::vector<boost::default_color_type> color(n);
    try {
        boost::depth_first_search(
            g, CycleVisitor{{}, &parent, &cycle},
            boost::make_iterator_property_map(color.begin(), boost::get(boost::vertex_index, g)));
    } catch (const CycleFound&) {
    }
    for (Vertex v : cycle) {
        r.cycle.push_back(processes_[v]->name_);
        const WaitTarget* w = processes_[v]->waiting_on_;
        r.cycle_locks.push_back(w ? w->wait_name() : std::string{});
    }

    std::ostringstream os;
    os << "deadlock at t=" << now() << ": " << live_ << " process(es) blocked and no event left";
    if (!r.cycle.empty()) {
        os << "\n  wait-for cycle: ";
        for (const auto& name : r.cycle) os << name << " -> ";
        os << r.cycle.front();
    }
    for (const auto& b : r.blocked) {
        os << "\n  " << b.process << " waits for " << b.waits_for;
        if (!b.mode.empty()) os << " (" << b.mode << ")";
        if (b.held_by.empty()) {
            os << ", which nothing will release";
        } else {
            os << ", held by ";
            for (std::size_t i = 0; i < b.held_by.size(); ++i)
                os << (i ? ", " : "") << b.held_by[i].first << " (" << b.held_by[i].second << ")";
        }
    }
    r.text = os.str();
    deadlock_ = std::move(r);
}

}  // namespace kvmsim::engine
