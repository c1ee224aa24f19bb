#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "sim/scenario/dag.hpp"

using namespace kvmsim::scenario;

namespace {

// Phases as a loader would pass them: pointer "/phases/I", dependency pointers
// "/phases/I/after/K".
std::vector<DagNode> phases(std::vector<std::pair<std::string, std::vector<std::string>>> spec) {
    std::vector<DagNode> out;
    for (std::size_t i = 0; i < spec.size(); ++i) {
        DagNode n;
        n.name = spec[i].first;
        n.pointer = "/phases/" + std::to_string(i);
        n.after = spec[i].second;
        for (std::size_t k = 0; k < n.after.size(); ++k)
            n.after_pointers.push_back(n.pointer + "/after/" + std::to_string(k));
        out.push_back(std::move(n));
    }
    return out;
}

std::vector<std::string> ordered_names(const std::vector<DagNode>& nodes) {
    std::vector<std::string> out;
    for (std::size_t i : topological_order(nodes, "f.json")) out.push_back(nodes[i].name);
    return out;
}

ScenarioError error_of(const std::vector<DagNode>& nodes, std::string_view noun = "phase") {
    try {
        topological_order(nodes, "f.json", noun);
    } catch (const ScenarioError& e) {
        return e;
    }
    FAIL("expected a ScenarioError");
    return ScenarioError("", "", "");
}

using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("topological_order: no dependencies keeps the input order", "[scenario][dag]") {
    CHECK(topological_order(std::vector<DagNode>{}, "f.json").empty());
    CHECK(ordered_names(phases({{"c", {}}, {"a", {}}, {"b", {}}})) == Names{"c", "a", "b"});
}

TEST_CASE("topological_order: dependencies first, ties by input order", "[scenario][dag]") {
    // b waits for c, d for a: a and c are ready first (a listed first), then b before d.
    CHECK(ordered_names(phases({{"a", {}}, {"b", {"c"}}, {"c", {}}, {"d", {"a"}}})) ==
          Names{"a", "c", "b", "d"});
    CHECK(topological_order(phases({{"a", {}}, {"b", {"c"}}, {"c", {}}, {"d", {"a"}}}), "f.json") ==
          std::vector<std::size_t>{0, 2, 1, 3});
    // A dependency listed later pulls ahead only what needs it.
    CHECK(ordered_names(phases({{"measure", {"warmup"}}, {"report", {}}, {"warmup", {}}})) ==
          Names{"report", "warmup", "measure"});
    CHECK(ordered_names(phases({{"warmup", {}},
                                {"zap", {}},
                                {"measure", {"warmup"}},
                                {"cleanup", {"zap", "measure"}}})) ==
          Names{"warmup", "zap", "measure", "cleanup"});
    // The same dependency twice counts once.
    CHECK(ordered_names(phases({{"b", {"a", "a"}}, {"a", {}}})) == Names{"a", "b"});
    // Diamond.
    CHECK(ordered_names(phases({{"join", {"left", "right"}}, {"right", {"root"}}, {"left", {"root"}}, {"root", {}}})) ==
          Names{"root", "right", "left", "join"});
}

TEST_CASE("topological_order: a long chain listed backwards", "[scenario][dag]") {
    std::vector<std::pair<std::string, std::vector<std::string>>> spec;
    const int n = 5000;
    for (int i = 0; i < n; ++i)
        spec.push_back({"p" + std::to_string(i), i + 1 < n ? Names{"p" + std::to_string(i + 1)} : Names{}});
    const auto order = topological_order(phases(spec), "f.json");
    REQUIRE(order.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) CHECK(order[static_cast<std::size_t>(i)] == static_cast<std::size_t>(n - 1 - i));
}

TEST_CASE("topological_order: a cycle is listed, at the first-listed phase on it", "[scenario][dag]") {
    auto e = error_of(phases({{"warmup", {"zap"}}, {"zap", {"warmup"}}}));
    CHECK(std::string(e.what()) == "f.json: /phases/0: phase dependencies form a cycle: warmup -> zap -> warmup");
    CHECK(e.pointer() == "/phases/0");
    CHECK(e.message() == "phase dependencies form a cycle: warmup -> zap -> warmup");

    // "a -> c": a runs after c. Rotated to start at a, the first listed of the cycle.
    e = error_of(phases({{"setup", {}}, {"b", {"a"}}, {"a", {"c"}}, {"c", {"b", "setup"}}}));
    CHECK(std::string(e.what()) == "f.json: /phases/1: phase dependencies form a cycle: b -> a -> c -> b");

    e = error_of(phases({{"ok", {}}, {"self", {"self"}}}));
    CHECK(std::string(e.what()) == "f.json: /phases/1: phase dependencies form a cycle: self -> self");

    e = error_of(phases({{"x", {"y"}}, {"y", {"x"}}}), "step");
    CHECK(e.message() == "step dependencies form a cycle: x -> y -> x");
}

TEST_CASE("topological_order: unknown dependency names, with did-you-mean", "[scenario][dag]") {
    auto e = error_of(phases({{"warmup", {}}, {"zap", {"warmpu"}}}));
    CHECK(std::string(e.what()) == R"(f.json: /phases/1/after/0: unknown phase "warmpu" (did you mean "warmup"?))");

    e = error_of(phases({{"warmup", {}}, {"zap", {"warmup", "nothing_like_it"}}}));
    CHECK(std::string(e.what()) ==
          R"(f.json: /phases/1/after/1: unknown phase "nothing_like_it" (phases are "warmup", "zap"))");

    // Without per-dependency pointers the error points at the phase.
    auto nodes = phases({{"warmup", {}}, {"zap", {"Warmup2"}}});
    nodes[1].after_pointers.clear();
    e = error_of(nodes);
    CHECK(std::string(e.what()) == R"(f.json: /phases/1: unknown phase "Warmup2" (did you mean "warmup"?))");
}

TEST_CASE("topological_order: duplicate names", "[scenario][dag]") {
    const auto e = error_of(phases({{"warmup", {}}, {"zap", {}}, {"warmup", {}}}));
    CHECK(std::string(e.what()) == R"(f.json: /phases/2: duplicate phase name "warmup" (first used at /phases/0))");
}
