// kvmsim: run, validate and list scenarios.
//   kvmsim run FILE [--variant V] [--seed N] [--json OUT] [--quiet]
//              [--trace OUT.json [--trace-from T] [--trace-to T] [--trace-vcpus 0,1,...]]
//              [--events OUT.json]   every processed event, for kvmsim diff
//   kvmsim diff A.json B.json             the first event at which two recorded runs differ
//   kvmsim suite DIR [--seed N]          every scenario in DIR, every variant
//   kvmsim validate FILE...              every variant of each file
//   kvmsim list                          models, knobs, presets, host profiles
//   kvmsim compare SCENARIO|DIR... [--seeds N] [--json OUT]
//                                        every variant over the same N seeds: means, change
//                                        against the baseline, paired 95% intervals
//   kvmsim compare A.json B.json         two saved results
// Exit status: 0 success, 1 a run failed (deadlock, internal error), 2 bad input or usage.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "models/registry.hpp"
#include "sim/report/compare.hpp"
#include "sim/report/report.hpp"
#include "sim/report/trace_writer.hpp"
#include "sim/scenario/json_util.hpp"
#include "sim/scenario/units.hpp"
#include "sim/runner/runner.hpp"
#include "sim/scenario/loader.hpp"
#include "sim/workload/presets.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

namespace fs = std::filesystem;
using namespace kvmsim;

namespace {

constexpr const char* kUsage =
    "usage: kvmsim run FILE [--variant V] [--seed N] [--json OUT] [--quiet]\n"
    "                  [--trace OUT.json [--trace-from T] [--trace-to T] [--trace-vcpus 0,1,...]] [--events OUT.json]\n"
    "       kvmsim diff EVENTS_A.json EVENTS_B.json\n"
    "       kvmsim suite DIR [--seed N]\n"
    "       kvmsim validate FILE...\n"
    "       kvmsim list\n"
    "       kvmsim compare SCENARIO|DIR... [--seeds N] [--json OUT]\n"
    "       kvmsim compare RESULT_A.json RESULT_B.json\n";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::vector<std::string> host_dirs() {
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("KVMSIM_HOSTS")) {
        std::string s = env;
        std::size_t pos = 0;
        while (pos <= s.size()) {
            const std::size_t end = std::min(s.find(':', pos), s.size());
            if (end > pos) dirs.push_back(s.substr(pos, end - pos));
            pos = end + 1;
        }
    }
    dirs.push_back(std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts");
    return dirs;
}

scenario::LoadOptions load_options(std::optional<std::string> variant, std::optional<std::uint64_t> seed) {
    scenario::LoadOptions o;
    o.variant = std::move(variant);
    o.seed = seed;
    o.models = &models::builtin_models();
    o.host_dirs = host_dirs();
    return o;
}

std::uint64_t parse_seed(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || !end || *end || errno || s[0] == '-') throw UsageError("--seed expects a non-negative integer, got \"" + s + "\"");
    return v;
}

// A progress line on stderr for runs longer than a few seconds, when stderr is a terminal.
runner::RunOptions progress_options(bool quiet) {
    runner::RunOptions o;
    if (quiet || !isatty(STDERR_FILENO)) return o;
    auto start = std::chrono::steady_clock::now();
    auto last = start;
    o.progress = [start, last](double sim_ns, std::uint64_t events) mutable {
        const auto now = std::chrono::steady_clock::now();
        const double wall = std::chrono::duration<double>(now - start).count();
        if (wall < 3 || std::chrono::duration<double>(now - last).count() < 0.5) return;
        last = now;
        std::fprintf(stderr, "\r[kvmsim] simulated %.3f ms, %.1f M events, %.0f s   ", sim_ns / 1e6,
                     static_cast<double>(events) / 1e6, wall);
        std::fflush(stderr);
    };
    return o;
}

engine::Time parse_time_arg(const std::string& opt, const std::string& v) {
    const auto t = scenario::parse_time(v);
    if (!t) throw UsageError(opt + ": " + t.error());
    return t.value();
}

int cmd_run(const std::vector<std::string>& args) {
    std::optional<std::string> file, variant, json_out, trace_out, events_out;
    std::optional<std::uint64_t> seed;
    report::TraceOptions topts;
    bool quiet = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) throw UsageError(a + " expects a value");
            return args[++i];
        };
        if (a == "--variant") variant = value();
        else if (a == "--seed") seed = parse_seed(value());
        else if (a == "--json") json_out = value();
        else if (a == "--quiet") quiet = true;
        else if (a == "--trace") trace_out = value();
        else if (a == "--trace-from") topts.from = parse_time_arg(a, value());
        else if (a == "--trace-to") topts.to = parse_time_arg(a, value());
        else if (a == "--trace-vcpus") {
            std::set<std::uint32_t> set;
            std::string list = value();
            for (std::size_t pos = 0; pos <= list.size();) {
                const std::size_t end = std::min(list.find(',', pos), list.size());
                const std::string item = list.substr(pos, end - pos);
                if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 6)
                    throw UsageError("--trace-vcpus expects vCPU numbers such as 0,1,5, got \"" + list + "\"");
                set.insert(static_cast<std::uint32_t>(std::stoul(item)));
                pos = end + 1;
            }
            topts.vcpus = set;
        } else if (a == "--events") events_out = value();
        else if (!a.empty() && a[0] == '-') throw UsageError("unknown option " + a);
        else if (file) throw UsageError("run takes one scenario file");
        else file = a;
    }
    if (!file) throw UsageError("run expects a scenario file");
    if (!trace_out && (topts.from != engine::Time::zero() || topts.to != engine::Time::max() || topts.vcpus))
        throw UsageError("--trace-from, --trace-to and --trace-vcpus go with --trace");
    const scenario::Scenario sc = scenario::load_scenario(*file, load_options(variant, seed));
    runner::RunOptions ro = progress_options(quiet);
    std::optional<report::ChromeTraceWriter> tracer;
    if (trace_out) {
        tracer.emplace(*trace_out, topts);
        ro.tracer = &*tracer;
    }
    std::vector<engine::LoggedEvent> log;
    std::vector<std::string> names;
    if (events_out) {
        ro.event_log = &log;
        ro.process_names = &names;
    }
    const runner::Result r = runner::run(sc, ro);
    if (!quiet && isatty(STDERR_FILENO)) std::fprintf(stderr, "\r%60s\r", "");
    if (tracer) tracer->finish(engine::Time::ps(static_cast<std::int64_t>(r.sim_time_ns * 1000.0)));
    if (json_out) report::write_file_atomic(*json_out, report::to_json(r).dump(2) + "\n");
    if (events_out) {
        nlohmann::json j = {{"scenario", r.scenario}, {"variant", r.variant}, {"seed", r.seed},
                            {"fingerprint", report::hex64(r.fingerprint)}, {"processes", names}};
        nlohmann::json ev = nlohmann::json::array();
        for (const auto& e : log) ev.push_back({e.time_ps, e.who, e.kind});
        j["events"] = std::move(ev);
        report::write_file_atomic(*events_out, j.dump() + "\n");
    }
    if (!quiet) report::print_summary(std::cout, r);
    return r.status == "completed" ? 0 : 1;
}

std::vector<std::string> scenario_files(const std::string& path) {
    std::vector<std::string> files;
    std::error_code ec;
    if (!fs::is_directory(path, ec)) return {path};
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().extension() == ".json") files.push_back(it->path().string());
    if (ec) throw UsageError(path + ": cannot read the directory");
    std::sort(files.begin(), files.end());
    if (files.empty()) throw UsageError(path + ": no scenario (*.json) in it");
    return files;
}

int cmd_suite(const std::vector<std::string>& args) {
    std::optional<std::string> dir;
    std::optional<std::uint64_t> seed;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--seed" && i + 1 < args.size()) seed = parse_seed(args[++i]);
        else if (!args[i].empty() && args[i][0] == '-') throw UsageError("unknown option " + args[i]);
        else dir = args[i];
    }
    if (!dir) throw UsageError("suite expects a directory of scenarios");
    int status = 0;
    for (const auto& f : scenario_files(*dir)) {
        std::vector<std::string> variants = scenario::scenario_variants(f);
        if (variants.empty()) variants.push_back("");
        std::cout << "== " << f << "\n";
        for (const auto& v : variants) {
            const auto sc = scenario::load_scenario(f, load_options(v.empty() ? std::nullopt : std::optional(v), seed));
            const auto r = runner::run(sc);
            std::cout << "  [" << (v.empty() ? "-" : v) << "]";
            for (const auto& p : r.phases)
                if (p.selftest_metric) std::cout << "  " << p.name << " " << p.sim_time_ns / 1e9 << "s";
            auto stat = [&r](const char* k) {
                auto it = r.stats.find(k);
                return it == r.stats.end() ? 0 : it->second;
            };
            std::cout << "\n    pf_fixed " << stat("pf_fixed") << ", remote_tlb_flush " << stat("remote_tlb_flush");
            for (const auto& l : r.locks)
                if (l.lock == "mmu_lock")
                    std::cout << ", " << l.mode << "@" << l.site << " wait " << l.wait_ps.sum_double() / 1e6 << "us";
            std::cout << "\n    events " << r.events << ", wall " << r.wall_time_s << "s, fingerprint "
                      << report::hex64(r.fingerprint) << (r.status == "completed" ? "" : "  " + r.status) << "\n";
            if (r.status != "completed") status = 1;
        }
    }
    return status;
}

bool is_result_file(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return false;
    const nlohmann::json j = scenario::parse_json_file(path);
    return j.is_object() && j.contains("result_schema");
}

int cmd_compare(const std::vector<std::string>& args) {
    std::vector<std::string> paths;
    std::optional<std::string> json_out;
    std::uint64_t nseeds = 5;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--seeds" && i + 1 < args.size()) {
            nseeds = parse_seed(args[++i]);
            if (nseeds == 0 || nseeds > 10000) throw UsageError("--seeds expects 1 to 10000");
        } else if (a == "--json" && i + 1 < args.size()) {
            json_out = args[++i];
        } else if (!a.empty() && a[0] == '-') {
            throw UsageError("unknown option " + a);
        } else {
            paths.push_back(a);
        }
    }
    if (paths.empty()) throw UsageError("compare expects a scenario, a directory, or two result files");
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    if (paths.size() == 2 && is_result_file(paths[0]) && is_result_file(paths[1])) {
        std::vector<std::vector<std::vector<report::MetricValue>>> values;
        std::vector<std::string> names, selftest;
        std::string scenario;
        for (const auto& p : paths) {
            const nlohmann::json j = scenario::parse_json_file(p);
            values.push_back({report::metrics_of(j)});
            names.push_back(fs::path(p).filename().string());
            if (scenario.empty() && j.contains("scenario") && j["scenario"].is_string()) scenario = j["scenario"];
            if (selftest.empty() && j.contains("phases") && j["phases"].is_array())
                for (const auto& ph : j["phases"])
                    if (ph.is_object() && ph.value("selftest_metric", false) && ph.contains("name") && ph["name"].is_string())
                        selftest.push_back(ph["name"]);
        }
        const auto c = report::compare_values(scenario, selftest, names, {0}, values);
        report::print_compare(std::cout, c);
        all.push_back(report::to_json(c));
    } else {
        for (const auto& path : paths)
            for (const auto& f : scenario_files(path)) {
                std::vector<std::string> variants = scenario::scenario_variants(f);
                if (variants.empty()) variants.push_back("");
                const auto base = scenario::load_scenario(f, load_options(std::nullopt, std::nullopt));
                std::vector<std::uint64_t> seeds;
                for (std::uint64_t i = 0; i < nseeds; ++i) seeds.push_back(base.seed + i);
                std::vector<std::vector<runner::Result>> runs(variants.size());
                for (std::size_t v = 0; v < variants.size(); ++v)
                    for (auto seed : seeds) {
                        const auto sc = scenario::load_scenario(
                            f, load_options(variants[v].empty() ? std::nullopt : std::optional(variants[v]), seed));
                        runs[v].push_back(runner::run(sc));
                        if (runs[v].back().status != "completed")
                            throw std::runtime_error(f + " [" + variants[v] + "] seed " + std::to_string(seed) + ": " +
                                                     runs[v].back().status + "\n" + runs[v].back().deadlock);
                    }
                const auto c = report::compare(variants, seeds, runs);
                std::cout << "== " << f << "\n";
                report::print_compare(std::cout, c);
                std::cout << "\n";
                all.push_back(report::to_json(c));
            }
    }
    if (json_out) {
        nlohmann::ordered_json doc = all.size() == 1 ? all[0] : nlohmann::ordered_json{{"comparisons", all}};
        report::write_file_atomic(*json_out, doc.dump(2) + "\n");
    }
    return 0;
}

int cmd_diff(const std::vector<std::string>& args) {
    if (args.size() != 2) throw UsageError("diff expects two event files (kvmsim run --events OUT)");
    nlohmann::json doc[2];
    for (int i = 0; i < 2; ++i) {
        doc[i] = scenario::parse_json_file(args[static_cast<std::size_t>(i)]);
        scenario::Node n(doc[i], args[static_cast<std::size_t>(i)]);
        n.check_keys({"scenario", "variant", "seed", "fingerprint", "processes", "events"});
        n.array("events");
        n.array("processes");
        for (const auto& e : n["events"].elements())
            if (!e.json().is_array() || e.json().size() != 3 || !e.json()[0].is_number_integer() ||
                !e.json()[1].is_number_unsigned() || !e.json()[2].is_number_unsigned())
                e.fail_expected("an event [time_ps, process, kind]");
    }
    auto describe = [&](int i, std::size_t k) {
        const auto& e = doc[i]["events"][k];
        const auto who = e[1].get<std::uint64_t>();
        std::string proc = (who & 0x80000000u) ? "callback " + std::to_string(who & 0x7fffffffu)
                           : who < doc[i]["processes"].size() ? doc[i]["processes"][who].get<std::string>()
                                                              : "process " + std::to_string(who);
        return "t=" + engine::Time::ps(e[0].get<std::int64_t>()).str() + " " + proc + " " + engine::to_string(static_cast<engine::EventKind>(e[2].get<std::uint8_t>()));
    };
    const auto& a = doc[0]["events"];
    const auto& b = doc[1]["events"];
    const std::size_t n = std::min(a.size(), b.size());
    for (std::size_t k = 0; k < n; ++k) {
        const bool same_proc = [&] {
            const auto wa = a[k][1].get<std::uint64_t>(), wb = b[k][1].get<std::uint64_t>();
            if (wa != wb) return false;
            if (wa & 0x80000000u) return true;
            return wa < doc[0]["processes"].size() && wa < doc[1]["processes"].size() &&
                   doc[0]["processes"][wa] == doc[1]["processes"][wa];
        }();
        if (a[k][0] != b[k][0] || !same_proc || a[k][2] != b[k][2]) {
            std::cout << "runs diverge at event " << k << " (of " << a.size() << " and " << b.size() << "):\n  "
                      << args[0] << ": " << describe(0, k) << "\n  " << args[1] << ": " << describe(1, k) << "\n";
            return 1;
        }
    }
    if (a.size() != b.size()) {
        const int longer = a.size() > b.size() ? 0 : 1;
        std::cout << "runs agree on their first " << n << " events; " << args[static_cast<std::size_t>(longer)]
                  << " goes on: " << describe(longer, n) << "\n";
        return 1;
    }
    std::cout << "identical: " << a.size() << " events, fingerprint " << doc[0]["fingerprint"].get<std::string>() << "\n";
    return 0;
}

int cmd_validate(const std::vector<std::string>& args) {
    if (args.empty()) throw UsageError("validate expects scenario files");
    int status = 0;
    for (const auto& f : args) {
        try {
            std::vector<std::string> variants = scenario::scenario_variants(f);
            if (variants.empty()) variants.push_back("");
            for (const auto& v : variants)
                scenario::load_scenario(f, load_options(v.empty() ? std::nullopt : std::optional(v), std::nullopt));
            std::cout << f << ": ok (" << variants.size() << " variant" << (variants.size() == 1 ? "" : "s") << ")\n";
        } catch (const scenario::ScenarioError& e) {
            std::cerr << e.what() << "\n";
            status = 2;
        }
    }
    return status;
}

int cmd_list() {
    std::cout << "Models:\n";
    for (const auto* m : models::builtin_models().all()) {
        std::cout << "  " << m->name << ": " << m->summary << "\n    follows: " << m->kernel << "\n    knobs:\n";
        for (const auto& k : m->knobs) {
            std::cout << "      " << k.name << " = " << vm::to_string(k.default_value);
            if (!k.choices.empty()) {
                std::cout << "  (";
                for (std::size_t i = 0; i < k.choices.size(); ++i) std::cout << (i ? " | " : "") << k.choices[i];
                std::cout << ")";
            }
            std::cout << "\n        " << k.meaning << "\n";
        }
        std::cout << "    operations:";
        for (auto op : m->operations) std::cout << " " << vm::to_string(op);
        std::cout << "\n";
    }
    std::cout << "Presets:\n";
    for (const auto& p : workload::presets()) std::cout << "  " << p.name << ": " << p.summary << "\n    " << p.usage << "\n";
    std::cout << "Host profiles:\n";
    for (const auto& h : scenario::host_profiles(host_dirs())) std::cout << "  " << h << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (args.empty()) throw UsageError("no command");
        const std::string cmd = args.front();
        args.erase(args.begin());
        if (cmd == "run") return cmd_run(args);
        if (cmd == "suite") return cmd_suite(args);
        if (cmd == "validate") return cmd_validate(args);
        if (cmd == "list") return cmd_list();
        if (cmd == "compare") return cmd_compare(args);
        if (cmd == "diff") return cmd_diff(args);
        if (cmd == "-h" || cmd == "--help" || cmd == "help") {
            std::cout << kUsage;
            return 0;
        }
        throw UsageError("unknown command \"" + cmd + "\"");
    } catch (const UsageError& e) {
        std::cerr << "kvmsim: " << e.what() << "\n" << kUsage;
        return 2;
    } catch (const scenario::ScenarioError& e) {
        std::cerr << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "kvmsim: internal error: " << e.what() << "\n";
        return 1;
    }
}
