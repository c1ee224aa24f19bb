// kvmsim: run, validate and list scenarios.
//   kvmsim run FILE [--variant V] [--seed N] [--json OUT] [--quiet]
//              [--trace OUT.json [--trace-from T] [--trace-to T] [--trace-vcpus 0,1,...]]
//              [--events OUT.json]   every processed event, for kvmsim diff
//              [--until T]           stop at simulated time T (status "stopped")
//   kvmsim diff A.json B.json             the first event at which two recorded runs differ
//   kvmsim suite DIR [--seed N]          every scenario in DIR, every variant
//   kvmsim validate FILE...              every variant of each file
//   kvmsim list                          models, knobs, presets, host profiles
//   kvmsim compare SCENARIO|DIR... [--seeds N] [--jobs N] [--json OUT]
//                                        every variant over the same N seeds: means, change
//                                        against the baseline, paired 95% intervals; runs in
//                                        N worker processes (default: one per CPU)
//   kvmsim compare A.json B.json         two saved results
//   kvmsim check-published [DIR] [--json OUT] [--jobs N] [--seeds N] [--all] [--only NAME,...]
//                                        every scenario of DIR (default scenarios/published)
//                                        against the figures of its "published" block
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
#include "sim/cli/batch.hpp"
#include "sim/cli/options.hpp"
#include "sim/report/events_writer.hpp"
#include "sim/report/output_file.hpp"
#include "sim/report/compare.hpp"
#include "sim/report/published.hpp"
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
    "                  [--until T]\n"
    "       kvmsim diff EVENTS_A.json EVENTS_B.json\n"
    "       kvmsim suite DIR [--seed N]\n"
    "       kvmsim validate FILE...\n"
    "       kvmsim list\n"
    "       kvmsim compare SCENARIO|DIR... [--seeds N] [--jobs N] [--json OUT]\n"
    "       kvmsim compare RESULT_A.json RESULT_B.json\n"
    "       kvmsim check-published [DIR] [--json OUT] [--jobs N] [--seeds N] [--all] [--only NAME,...]\n"
    "every command: --host-dir DIR (repeatable) looks host profiles up in DIR first\n";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// --host-dir DIR (repeatable, any command): searched first, before $KVMSIM_HOSTS.
std::vector<std::string> g_host_dirs;

std::vector<std::string> host_dirs() {
    std::vector<std::string> dirs = g_host_dirs;
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

// One run for compare and check-published: a scenario file's variant ("" = the file as it is) at
// a seed.
struct RunPoint {
    const std::string* file;
    const std::string* variant;
    std::uint64_t seed;
};

// The points run in `jobs` worker processes: their result documents, in order. A run that did not
// complete (stopped, deadlocked) is an error naming it.
std::vector<nlohmann::json> run_documents(const std::vector<RunPoint>& pts, unsigned jobs) {
    auto name = [&](std::size_t i) {
        const RunPoint& p = pts[i];
        return *p.file + (p.variant->empty() ? "" : " [" + *p.variant + "]") + " seed " + std::to_string(p.seed);
    };
    const auto texts = cli::parallel_map(
        pts.size(), jobs,
        [&](std::size_t i) {
            const RunPoint& p = pts[i];
            const std::optional<std::string> v = p.variant->empty() ? std::nullopt : std::optional(*p.variant);
            return report::to_json(runner::run(scenario::load_scenario(*p.file, load_options(v, p.seed)))).dump();
        },
        name);
    std::vector<nlohmann::json> docs;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        docs.push_back(nlohmann::json::parse(texts[i]));
        if (docs.back().value("status", "") != "completed")
            throw std::runtime_error(name(i) + ": " + docs.back().value("status", "?") + "\n" +
                                     docs.back().value("deadlock", ""));
    }
    return docs;
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
    std::optional<engine::Time> until;
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
        else if (a == "--until") until = parse_time_arg(a, value());
        else if (!a.empty() && a[0] == '-') throw UsageError("unknown option " + a);
        else if (file) throw UsageError("run takes one scenario file");
        else file = a;
    }
    if (!file) throw UsageError("run expects a scenario file");
    if (!trace_out && (topts.from != engine::Time::zero() || topts.to != engine::Time::max() || topts.vcpus))
        throw UsageError("--trace-from, --trace-to and --trace-vcpus go with --trace");
    const scenario::Scenario sc = scenario::load_scenario(*file, load_options(variant, seed));
    // Every output is checked, and its temporary file made, before the run.
    std::optional<report::OutputFile> json_file;
    if (json_out) json_file.emplace(*json_out, "--json");
    runner::RunOptions ro = progress_options(quiet);
    if (until) ro.until = *until;
    std::optional<report::ChromeTraceWriter> tracer;
    if (trace_out) {
        tracer.emplace(*trace_out, topts);
        ro.tracer = &*tracer;
    }
    std::optional<report::EventsWriter> events;
    std::vector<std::string> names;
    if (events_out) {
        events.emplace(*events_out);
        ro.event_log = &*events;
        ro.process_names = &names;
    }
    const runner::Result r = runner::run(sc, ro);
    if (!quiet && isatty(STDERR_FILENO)) std::fprintf(stderr, "\r%60s\r", "");
    if (tracer) tracer->finish(engine::Time::ps(static_cast<std::int64_t>(r.sim_time_ns * 1000.0)));
    if (json_file) {
        json_file->write(report::to_json(r).dump(2) + "\n");
        json_file->commit();
    }
    if (events) events->finish(r.scenario, r.variant, r.seed, report::hex64(r.fingerprint), names);
    if (!quiet) report::print_summary(std::cout, r);
    return r.status == "completed" || (until && r.status == "stopped") ? 0 : 1;
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

// Every variant of every scenario file over the same seeds. A variant whose first run drew no
// random number gives that same result under every seed, so it runs once (exact, not a shortcut
// of the statistics: the other seeds' runs would be bit-identical).
std::vector<report::CompareResult> compare_scenarios(const std::vector<std::string>& files, std::uint64_t nseeds,
                                                     unsigned jobs, std::ostream& note) {
    struct Point {
        std::size_t file, variant;
        std::uint64_t seed;
    };
    std::vector<std::vector<std::string>> variants;
    std::vector<std::vector<std::uint64_t>> seeds;
    for (const auto& f : files) {
        std::vector<std::string> vs = scenario::scenario_variants(f);
        if (vs.empty()) vs.push_back("");
        // Load every variant before anything runs: bad input fails first, and alone.
        std::uint64_t base = 0;
        for (std::size_t v = 0; v < vs.size(); ++v) {
            const auto sc = scenario::load_scenario(f, load_options(vs[v].empty() ? std::nullopt : std::optional(vs[v]), std::nullopt));
            if (v == 0) base = sc.seed;
        }
        std::vector<std::uint64_t> ss;
        for (std::uint64_t i = 0; i < nseeds; ++i) ss.push_back(base + i);
        variants.push_back(std::move(vs));
        seeds.push_back(std::move(ss));
    }
    auto run_points = [&](const std::vector<Point>& pts) {
        std::vector<RunPoint> runs;
        for (const Point& p : pts) runs.push_back({&files[p.file], &variants[p.file][p.variant], p.seed});
        return run_documents(runs, jobs);
    };

    std::vector<Point> first;
    for (std::size_t f = 0; f < files.size(); ++f)
        for (std::size_t v = 0; v < variants[f].size(); ++v) first.push_back({f, v, seeds[f][0]});
    const auto first_docs = run_points(first);
    std::vector<Point> rest;
    for (std::size_t i = 0; i < first.size(); ++i)
        if (first_docs[i].value("seed_used", true))
            for (std::size_t s = 1; s < nseeds; ++s) rest.push_back({first[i].file, first[i].variant, seeds[first[i].file][s]});
    const auto rest_docs = run_points(rest);

    std::vector<report::CompareResult> out;
    std::size_t k = 0, r = 0;
    for (std::size_t f = 0; f < files.size(); ++f) {
        std::vector<std::vector<nlohmann::json>> docs(variants[f].size());
        bool reused = false;
        for (std::size_t v = 0; v < variants[f].size(); ++v, ++k) {
            docs[v].push_back(first_docs[k]);
            const bool used = first_docs[k].value("seed_used", true);
            for (std::size_t s = 1; s < nseeds; ++s) {
                if (used) {
                    docs[v].push_back(rest_docs[r++]);
                } else {
                    docs[v].push_back(first_docs[k]);
                    docs[v].back()["seed"] = seeds[f][s];
                    reused = true;
                }
            }
        }
        if (reused && nseeds > 1)
            note << files[f] << ": a variant drew no random number, so one run stands for all " << nseeds << " seeds\n";
        out.push_back(report::compare_documents(variants[f], seeds[f], docs));
    }
    return out;
}

int cmd_compare(const std::vector<std::string>& args) {
    std::vector<std::string> paths;
    std::optional<std::string> json_out;
    std::uint64_t nseeds = 5;
    unsigned jobs = cli::default_jobs();
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--seeds" && i + 1 < args.size()) {
            nseeds = parse_seed(args[++i]);
            if (nseeds == 0 || nseeds > 10000) throw UsageError("--seeds expects 1 to 10000");
        } else if (a == "--jobs" && i + 1 < args.size()) {
            const std::uint64_t j = parse_seed(args[++i]);
            if (j == 0 || j > 1024) throw UsageError("--jobs expects 1 to 1024");
            jobs = static_cast<unsigned>(j);
        } else if (a == "--json" && i + 1 < args.size()) {
            json_out = args[++i];
        } else if (!a.empty() && a[0] == '-') {
            throw UsageError("unknown option " + a);
        } else {
            paths.push_back(a);
        }
    }
    if (paths.empty()) throw UsageError("compare expects a scenario, a directory, or two result files");
    if (json_out) report::check_output_path(*json_out, "--json");
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    if (paths.size() == 2 && is_result_file(paths[0]) && is_result_file(paths[1])) {
        std::vector<std::vector<nlohmann::json>> docs;
        std::vector<std::string> names;
        for (const auto& p : paths) {
            docs.push_back({scenario::parse_json_file(p)});
            names.push_back(fs::path(p).filename().string());
        }
        const auto c = report::compare_documents(names, {0}, docs);
        report::print_compare(std::cout, c);
        all.push_back(report::to_json(c));
    } else {
        std::vector<std::string> files;
        for (const auto& path : paths)
            for (const auto& f : scenario_files(path)) files.push_back(f);
        const auto results = compare_scenarios(files, nseeds, jobs, std::cerr);
        for (std::size_t i = 0; i < files.size(); ++i) {
            std::cout << "== " << files[i] << "\n";
            report::print_compare(std::cout, results[i]);
            std::cout << "\n";
            all.push_back(report::to_json(results[i]));
        }
    }
    if (json_out) {
        nlohmann::ordered_json doc = all.size() == 1 ? all[0] : nlohmann::ordered_json{{"comparisons", all}};
        report::write_file_atomic(*json_out, doc.dump(2) + "\n");
    }
    return 0;
}

// The published-results check: each scenario's variants that its "published" rows name, over
// the same seeds (a run that drew no random number stands for every seed, as in compare), then
// one line per row and the summary.
int cmd_check_published(const std::vector<std::string>& args) {
    std::optional<std::string> dir, json_out;
    std::uint64_t nseeds = 1;
    unsigned jobs = cli::default_jobs();
    bool all = false;
    std::vector<std::string> only;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) throw UsageError(a + " expects a value");
            return args[++i];
        };
        if (a == "--seeds") {
            nseeds = parse_seed(value());
            if (nseeds == 0 || nseeds > 10000) throw UsageError("--seeds expects 1 to 10000");
        } else if (a == "--jobs") {
            const std::uint64_t j = parse_seed(value());
            if (j == 0 || j > 1024) throw UsageError("--jobs expects 1 to 1024");
            jobs = static_cast<unsigned>(j);
        } else if (a == "--json") {
            json_out = value();
        } else if (a == "--all") {
            all = true;
        } else if (a == "--only") {
            const std::string list = value();
            for (std::size_t pos = 0; pos <= list.size();) {
                const std::size_t end = std::min(list.find(',', pos), list.size());
                if (end > pos) only.push_back(list.substr(pos, end - pos));
                pos = end + 1;
            }
            if (only.empty()) throw UsageError("--only expects scenario names separated by commas");
        } else if (!a.empty() && a[0] == '-') {
            throw UsageError("unknown option " + a);
        } else if (dir) {
            throw UsageError("check-published takes one directory");
        } else {
            dir = a;
        }
    }
    if (json_out) report::check_output_path(*json_out, "--json");
    if (!dir) {
        std::error_code ec;
        dir = fs::is_directory("scenarios/published", ec) ? std::string("scenarios/published")
                                                          : std::string(KVMSIM_SOURCE_DIR) + "/scenarios/published";
    }
    struct Config {
        std::string file;
        scenario::Scenario sc;               // the baseline, with the block
        std::vector<std::string> variants;   // the ones the rows name, in the scenario's order
        // same[v]: the first variant that runs the same scenario (same resolved document and
        // seed: bit-identical results), run once for both (e.g. a change the model has no knob
        // for because it does not touch what the model follows).
        std::vector<std::size_t> same;
        bool run = true;
    };
    std::vector<Config> configs;
    for (const auto& f : scenario_files(*dir)) {
        std::vector<std::string> vs = scenario::scenario_variants(f);
        if (vs.empty()) vs.push_back("");
        Config c;
        c.file = f;
        // Every variant loads before anything runs: bad input fails first, and alone.
        std::vector<std::string> shas;
        for (std::size_t v = 0; v < vs.size(); ++v) {
            auto sc = scenario::load_scenario(f, load_options(vs[v].empty() ? std::nullopt : std::optional(vs[v]), std::nullopt));
            shas.push_back(sc.resolved_sha256);
            if (v == 0) c.sc = std::move(sc);
        }
        if (!c.sc.published)
            throw scenario::ScenarioError(f, "", "expected a \"published\" block: check-published compares a scenario's runs with published figures");
        for (const auto& v : vs) {
            bool named = false;
            for (const auto& r : c.sc.published->rows)
                if (r.not_expressible.empty())
                    for (const auto* pv : {&r.before, &r.after, &r.value})
                        if (*pv && (*pv)->variant == v) named = true;
            if (named) c.variants.push_back(v);
        }
        for (std::size_t i = 0; i < c.variants.size(); ++i) {
            auto sha = [&](std::size_t k) {
                return shas[static_cast<std::size_t>(std::find(vs.begin(), vs.end(), c.variants[k]) - vs.begin())];
            };
            std::size_t first = i;
            for (std::size_t k = 0; k < i; ++k)
                if (sha(k) == sha(i)) {
                    first = k;
                    break;
                }
            c.same.push_back(first);
        }
        c.run = all || c.sc.published->skip.empty();
        configs.push_back(std::move(c));
    }
    if (!only.empty()) {
        std::vector<std::string> names;
        for (const auto& c : configs) names.push_back(c.sc.name);
        for (const auto& n : only)
            if (std::find(names.begin(), names.end(), n) == names.end())
                throw UsageError("--only: no scenario named \"" + n + "\" in " + *dir + scenario::did_you_mean_suffix(n, names));
        for (auto& c : configs) c.run = std::find(only.begin(), only.end(), c.sc.name) != only.end();
    }

    struct Point {
        std::size_t config, variant;
        std::uint64_t seed;
    };
    auto run_points = [&](const std::vector<Point>& pts) {
        std::vector<RunPoint> runs;
        for (const Point& p : pts)
            runs.push_back({&configs[p.config].file, &configs[p.config].variants[p.variant], p.seed});
        return run_documents(runs, jobs);
    };
    std::vector<Point> first;
    for (std::size_t c = 0; c < configs.size(); ++c)
        if (configs[c].run)
            for (std::size_t v = 0; v < configs[c].variants.size(); ++v)
                if (configs[c].same[v] == v) first.push_back({c, v, configs[c].sc.seed});
    const auto first_docs = run_points(first);
    std::vector<Point> rest;
    for (std::size_t i = 0; i < first.size(); ++i)
        if (first_docs[i].value("seed_used", true))
            for (std::uint64_t s = 1; s < nseeds; ++s) rest.push_back({first[i].config, first[i].variant, first[i].seed + s});
    const auto rest_docs = run_points(rest);

    // docs[config][variant]: the runs over the seeds (a seed-independent run once).
    std::vector<std::vector<std::vector<const nlohmann::json*>>> docs(configs.size());
    for (std::size_t c = 0; c < configs.size(); ++c) docs[c].resize(configs[c].variants.size());
    nlohmann::ordered_json runs = nlohmann::ordered_json::array();
    auto add = [&](const Point& p, const nlohmann::json& d) {
        docs[p.config][p.variant].push_back(&d);
        runs.push_back({{"config", configs[p.config].sc.name}, {"variant", configs[p.config].variants[p.variant]},
                        {"seed", p.seed}, {"wall_time_s", d.value("wall_time_s", 0.0)},
                        {"events", d.value("events", std::uint64_t{0})}, {"fingerprint", d.value("fingerprint", "")}});
    };
    for (std::size_t i = 0; i < first.size(); ++i) add(first[i], first_docs[i]);
    for (std::size_t i = 0; i < rest.size(); ++i) add(rest[i], rest_docs[i]);
    for (std::size_t c = 0; c < configs.size(); ++c)
        for (std::size_t v = 0; v < configs[c].variants.size(); ++v)
            if (configs[c].same[v] != v) docs[c][v] = docs[c][configs[c].same[v]];

    std::vector<report::CheckedRow> rows;
    for (std::size_t c = 0; c < configs.size(); ++c) {
        const Config& cf = configs[c];
        for (const auto& row : cf.sc.published->rows) {
            if (!row.not_expressible.empty()) {
                rows.push_back(report::skipped_row(cf.sc.name, cf.file, row, row.not_expressible));
                continue;
            }
            if (!cf.run) {
                rows.push_back(report::skipped_row(cf.sc.name, cf.file, row,
                                                   cf.sc.published->skip.empty() ? "not selected (--only)" : cf.sc.published->skip));
                continue;
            }
            auto mean = [&](const scenario::PublishedValue& pv) {
                const auto it = std::find(cf.variants.begin(), cf.variants.end(), pv.variant);
                const auto& ds = docs[c][static_cast<std::size_t>(it - cf.variants.begin())];
                double sum = 0;
                for (const auto* d : ds) sum += report::simulated_value(row, *d, cf.file);
                return sum / static_cast<double>(ds.size());
            };
            if (row.before) rows.push_back(report::check_row(cf.sc.name, cf.file, row, mean(*row.before), mean(*row.after)));
            else rows.push_back(report::check_row(cf.sc.name, cf.file, row, mean(*row.value), 0));
        }
    }
    for (const auto& r : runs)
        std::cout << "run " << r["config"].get<std::string>()
                  << (r["variant"].get<std::string>().empty() ? "" : " [" + r["variant"].get<std::string>() + "]")
                  << " seed " << r["seed"].get<std::uint64_t>() << ": wall " << r["wall_time_s"].get<double>() << " s, "
                  << r["events"].get<std::uint64_t>() << " events\n";
    if (!runs.empty()) std::cout << "\n";
    report::print_published(std::cout, rows);
    if (json_out) report::write_file_atomic(*json_out, report::published_json(rows, runs, nseeds).dump(2) + "\n");
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
            for (const auto& c : k.applies_when) {
                std::cout << "        acts only when " << c.knob << " is ";
                for (std::size_t i = 0; i < c.values.size(); ++i) std::cout << (i ? " or " : "") << vm::to_string(c.values[i]);
                std::cout << "\n";
            }
        }
        for (const auto& k : m->inert_knobs) std::cout << "      (" << k.name << ": rejected, " << k.why << ")\n";
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
        std::string bad_option;
        g_host_dirs = cli::take_host_dirs(args, &bad_option);
        if (!bad_option.empty()) throw UsageError(bad_option);
        report::install_signal_cleanup();
        if (cmd == "run") return cmd_run(args);
        if (cmd == "suite") return cmd_suite(args);
        if (cmd == "validate") return cmd_validate(args);
        if (cmd == "list") return cmd_list();
        if (cmd == "compare") return cmd_compare(args);
        if (cmd == "diff") return cmd_diff(args);
        if (cmd == "check-published") return cmd_check_published(args);
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
    } catch (const report::OutputError& e) {
        std::cerr << "kvmsim: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "kvmsim: internal error: " << e.what() << "\n";
        return 1;
    }
}
