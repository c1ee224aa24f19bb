// kvmsim._core: the C++ core for Python. A thin layer over the scenario loader, the runner and
// the report, with plain data across the boundary: scenario text in, result JSON (exactly what
// `kvmsim run --json` writes) out. The pure-Python package (kvmsim/*.py) builds its API on it.
//
// A ScenarioError becomes kvmsim.ScenarioError (file, pointer, message, line, column); a run
// holds no Python state, so it releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "models/registry.hpp"
#include "sim/report/compare.hpp"
#include "sim/report/report.hpp"
#include "sim/runner/runner.hpp"
#include "sim/scenario/input_file.hpp"
#include "sim/scenario/loader.hpp"
#include "sim/scenario/units.hpp"
#include "sim/trace/import.hpp"

#ifndef KVMSIM_VERSION
#define KVMSIM_VERSION "unknown"
#endif
#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif
#ifndef KVMSIM_BUILD_DIR
#define KVMSIM_BUILD_DIR "."
#endif

// Generated at build time (scripts/source_id.py): SHA-256 of the sources this core is built from.
extern const char kvmsim_build_id[];

namespace py = pybind11;
using namespace kvmsim;
using namespace pybind11::literals;

namespace {

// Runs in progress with the GIL released (tests check that another thread sees one).
std::atomic<int> g_runs_in_progress{0};

using Overrides = std::vector<std::pair<std::string, std::string>>;  // (pointer, value as JSON text)
using Metric = std::tuple<std::string, std::string, double>;         // (name, unit, value)

scenario::LoadOptions load_options(const std::optional<std::string>& variant, const std::optional<std::uint64_t>& seed,
                                   const Overrides& overrides, const std::vector<std::string>& host_dirs,
                                   const std::string& file) {
    scenario::LoadOptions o;
    o.variant = variant;
    o.seed = seed;
    o.models = &models::builtin_models();
    o.host_dirs = host_dirs;
    for (const auto& [pointer, value] : overrides) {
        nlohmann::json v;
        try {
            v = nlohmann::json::parse(value);
        } catch (const nlohmann::json::exception& e) {
            throw scenario::ScenarioError(file, pointer, std::string("cannot override: the value is not JSON: ") + e.what());
        }
        o.overrides.emplace_back(pointer, std::move(v));
    }
    return o;
}

py::object knob_value(const vm::KnobValue& v) {
    if (const bool* b = std::get_if<bool>(&v)) return py::bool_(*b);
    if (const std::int64_t* i = std::get_if<std::int64_t>(&v)) return py::int_(*i);
    return py::str(std::get<std::string>(v));
}

py::dict load(const std::string& text, const std::string& file, const std::optional<std::string>& variant,
              const std::optional<std::uint64_t>& seed, const Overrides& overrides,
              const std::vector<std::string>& host_dirs) {
    const scenario::Scenario sc =
        scenario::load_scenario_text(text, file, load_options(variant, seed, overrides, host_dirs, file));
    py::dict knobs;
    for (const auto& [k, v] : sc.knobs) knobs[py::str(k)] = knob_value(v);
    py::list steps, events;
    std::uint64_t accesses = 0;  // the guest accesses of every stream: how big the run is
    for (const auto& s : sc.workload.steps) {
        steps.append(s.name);
        for (const auto& st : s.streams) accesses += st.total();
    }
    for (const auto& e : sc.workload.events) events.append(e.name);
    return py::dict("name"_a = sc.name, "description"_a = sc.description, "file"_a = sc.file,
                    "sha256"_a = sc.sha256, "resolved_sha256"_a = sc.resolved_sha256, "seed"_a = sc.seed, "variant"_a = sc.variant,
                    "variants"_a = sc.variants, "model"_a = sc.model, "knobs"_a = knobs,
                    "host_profile"_a = sc.host.profile, "host_cpus"_a = sc.host.cpus, "vcpus"_a = sc.vm.vcpus,
                    "preset"_a = sc.workload.preset, "steps"_a = steps, "events"_a = events,
                    "accesses"_a = accesses);
}

std::string run(const std::string& text, const std::string& file, const std::optional<std::string>& variant,
                const std::optional<std::uint64_t>& seed, const Overrides& overrides,
                const std::vector<std::string>& host_dirs) {
    py::gil_scoped_release nogil;
    struct InProgress {
        InProgress() { ++g_runs_in_progress; }
        ~InProgress() { --g_runs_in_progress; }
    } in_progress;
    const scenario::Scenario sc =
        scenario::load_scenario_text(text, file, load_options(variant, seed, overrides, host_dirs, file));
    const runner::Result r = runner::run(sc);
    return report::to_json(r).dump(2) + "\n";  // byte for byte what `kvmsim run --json` writes
}

std::vector<Metric> metrics(const std::string& result_json, bool ordered) {
    std::vector<report::MetricValue> ms;
    if (ordered) ms = report::metrics_of(nlohmann::ordered_json::parse(result_json));
    else ms = report::metrics_of(nlohmann::json::parse(result_json));
    std::vector<Metric> out;
    out.reserve(ms.size());
    for (auto& m : ms) out.emplace_back(std::move(m.name), std::move(m.unit), m.value);
    return out;
}

std::pair<std::string, std::string> compare_values(const std::string& scenario_name,
                                                   const std::vector<std::string>& selftest_metrics,
                                                   const std::vector<std::string>& variants,
                                                   const std::vector<std::uint64_t>& seeds,
                                                   const std::vector<std::vector<std::vector<Metric>>>& values) {
    if (values.size() != variants.size())
        throw std::invalid_argument("compare_values: " + std::to_string(values.size()) + " value lists for " +
                                    std::to_string(variants.size()) + " variants");
    std::vector<std::vector<std::vector<report::MetricValue>>> vs(values.size());
    for (std::size_t v = 0; v < values.size(); ++v) {
        if (values[v].size() != seeds.size())
            throw std::invalid_argument("compare_values: variant " + variants[v] + " has " +
                                        std::to_string(values[v].size()) + " runs for " +
                                        std::to_string(seeds.size()) + " seeds");
        for (const auto& run : values[v]) {
            auto& out = vs[v].emplace_back();
            for (const auto& [name, unit, value] : run) out.push_back({name, unit, value});
        }
    }
    const report::CompareResult c = report::compare_values(scenario_name, selftest_metrics, variants, seeds, vs);
    std::ostringstream text;
    report::print_compare(text, c);
    return {text.str(), report::to_json(c).dump()};
}

// kvmsim._errors.ScenarioError from a C++ ScenarioError (ScenarioErrors: every error listed).
void raise_scenario_error(const scenario::ScenarioError& e) {
    auto kind = [](const scenario::ScenarioError& x) {
        switch (x.kind()) {
        case scenario::ScenarioError::Kind::File: return "file";
        case scenario::ScenarioError::Kind::Syntax: return "syntax";
        case scenario::ScenarioError::Kind::Located: break;
        }
        return "located";
    };
    auto one = [&](const scenario::ScenarioError& x) {
        return py::dict("text"_a = x.what(), "file"_a = x.file(), "pointer"_a = x.pointer(), "message"_a = x.message(),
                        "line"_a = x.line(), "column"_a = x.column(), "kind"_a = kind(x));
    };
    py::list all;
    if (const auto* many = dynamic_cast<const scenario::ScenarioErrors*>(&e)) {
        for (const auto& x : many->errors()) all.append(one(x));
    } else {
        all.append(one(e));
    }
    py::object cls = py::module_::import("kvmsim._errors").attr("ScenarioError");
    py::object exc = cls(e.what(), "file"_a = e.file(), "pointer"_a = e.pointer(), "message"_a = e.message(),
                         "line"_a = e.line(), "column"_a = e.column(), "kind"_a = kind(e), "errors"_a = all);
    PyErr_SetObject(cls.ptr(), exc.ptr());
}

// kvmsim.import_trace: the scenario document (JSON text) made from a trace file, as `kvmsim
// import-trace` writes it. A bad trace raises kvmsim.TraceError (file, line, message).
std::string import_trace(const std::string& path, const std::optional<std::string>& model,
                         const std::optional<std::string>& host, const std::optional<std::string>& backing,
                         const std::optional<std::string>& name, const std::optional<std::string>& window) {
    trace::ImportOptions o;
    if (model) o.model = *model;
    if (host) o.host = *host;
    if (backing) o.backing = *backing;
    if (name) o.name = *name;
    if (window) {
        const auto t = scenario::parse_time(*window);
        if (!t || t.value().ps() < 1000) throw py::value_error("window: expected a time of at least 1ns such as \"10ms\", got \"" + *window + "\"");
        o.window_ns = static_cast<std::uint64_t>(t.value().ps() / 1000);
    }
    const std::string text = scenario::read_input_file(path, "a trace file");
    try {
        py::gil_scoped_release nogil;
        return trace::import_trace(text, path, o).scenario.dump(2) + "\n";
    } catch (const trace::ImportError& e) {
        py::object cls = py::module_::import("kvmsim._errors").attr("TraceError");
        py::object exc = cls(e.what(), "file"_a = e.file(), "line"_a = e.line(), "message"_a = e.message());
        PyErr_SetObject(cls.ptr(), exc.ptr());
        throw py::error_already_set();
    }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "kvmsim's C++ core: scenario loading, runs, result JSON and before/after statistics";
    m.attr("__version__") = KVMSIM_VERSION;
    m.attr("build_id") = py::str(static_cast<const char*>(kvmsim_build_id));
    m.attr("source_dir") = KVMSIM_SOURCE_DIR;
    m.attr("build_dir") = KVMSIM_BUILD_DIR;

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const scenario::ScenarioError& e) {
            raise_scenario_error(e);
        }
    });

    m.def("load", &load, "text"_a, "file"_a, py::kw_only(), "variant"_a = py::none(), "seed"_a = py::none(),
          "overrides"_a = Overrides{}, "host_dirs"_a = std::vector<std::string>{},
          "Loads a scenario document (its text; `file` names it) and returns a summary of the result.");
    m.def("run", &run, "text"_a, "file"_a, py::kw_only(), "variant"_a = py::none(), "seed"_a = py::none(),
          "overrides"_a = Overrides{}, "host_dirs"_a = std::vector<std::string>{},
          "Loads and runs a scenario with the GIL released; returns the result JSON text.");
    m.def("metrics", &metrics, "result_json"_a, "ordered"_a = true,
          "The comparison metrics of a result document: [(name, unit, value)].");
    m.def("compare_values", &compare_values, "scenario"_a, "selftest_metrics"_a, "variants"_a, "seeds"_a,
          "values"_a,
          "Before/after statistics from metric lists values[variant][seed]: (table text, JSON text).");
    m.def("import_trace", &import_trace, "path"_a, py::kw_only(), "model"_a = py::none(), "host"_a = py::none(),
          "backing"_a = py::none(), "name"_a = py::none(), "window"_a = py::none(),
          "A scenario (JSON text) from a trace-cmd report / perf script text file, as kvmsim import-trace makes it.");
    m.def("t95", &report::t95, "df"_a, "Two-sided 95% quantile of Student's t (Boost.Math's, as kvmsim compare uses).");
    m.def("runs_in_progress", [] { return g_runs_in_progress.load(); },
          "How many run() calls are executing now (with the GIL released).");
}
