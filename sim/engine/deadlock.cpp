// The deadlock report: when no event is left but processes are still blocked, the wait-for
// graph (process -> processes holding what it waits for) is searched for a cycle.
#include <sstream>

#include "sim/engine/graph.hpp"
#include "sim/engine/simulator.hpp"

namespace kvmsim::engine {

void Simulator::build_deadlock_report() {
    DeadlockReport r;
    const std::size_t n = processes_.size();
    Digraph g(n);
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

    for (std::size_t v : find_cycle(g)) {
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
