// kvmsim: run, compare, validate and list scenarios.
//
// The command line is CLI11's. Each command is declared by one add_* function: its options in one
// place (a struct of values the parser fills), its help and examples, and the function that runs
// it once parsed. main() parses, turns every usage error into one line and exit status 2 (with a
// did-you-mean for a mistyped command or option), and runs the command chosen.
//
//   kvmsim run FILE              one run: summary, --json, --trace, --events, --until
//   kvmsim diff A B              the first event at which two recorded runs differ
//   kvmsim suite DIR             every scenario in DIR, every variant
//   kvmsim validate FILE...      every variant of each file
//   kvmsim list [--json]         models, knobs, presets, host profiles
//   kvmsim compare PATH...       every variant over common seeds, or two saved results
//   kvmsim check-published [DIR] scenarios against the figures of their "published" block
//   kvmsim import-trace TRACE -o OUT  a scenario from a recorded trace (sim/trace/import.hpp)
//   kvmsim report RESULT...      a cover-letter document from saved results (sim/report/cover_report.hpp)
//   kvmsim completion bash       the bash completion script
//   --set PATH=VALUE             on every command that loads scenarios, repeatable: an override
//                                after the variant (sim/cli/overrides.hpp)
//
// Exit status: 0 success, 1 a run failed (deadlock, internal error), 2 bad input or usage.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "models/registry.hpp"
#include "sim/cli/batch.hpp"
#include "sim/cli/overrides.hpp"
#include "sim/report/cover_report.hpp"
#include "sim/report/compare.hpp"
#include "sim/report/format.hpp"
#include "sim/report/events_writer.hpp"
#include "sim/report/output_file.hpp"
#include "sim/report/published.hpp"
#include "sim/report/report.hpp"
#include "sim/report/trace_writer.hpp"
#include "sim/runner/build_id.hpp"
#include "sim/runner/runner.hpp"
#include "sim/scenario/json_util.hpp"
#include "sim/scenario/loader.hpp"
#include "sim/scenario/input_file.hpp"
#include "sim/scenario/limits.hpp"
#include "sim/scenario/units.hpp"
#include "sim/trace/import.hpp"
#include "sim/workload/presets.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif
#ifndef KVMSIM_VERSION
#define KVMSIM_VERSION "unknown"
#endif

namespace fs = std::filesystem;
using namespace kvmsim;

namespace {

// A usage error found after parsing (a bad option value, a missing or extra argument): one line
// naming the command, and exit status 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::vector<std::pair<std::string, nlohmann::json>> g_set_overrides;  // --set, for every load
std::vector<std::string> g_host_dirs;  // --host-dir, searched first (before $KVMSIM_HOSTS)

// ---- what the commands share ---------------------------------------------------------------

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
    o.overrides = g_set_overrides;
    return o;
}

std::optional<std::string> variant_or_none(const std::string& v) {
    return v.empty() ? std::nullopt : std::optional(v);
}

// Options of every command that loads scenarios (run, suite, validate, list, compare,
// check-published) are declared here once; each such command calls add_scenario_options.
//   --set PATH=VALUE   an override after the variant, for every scenario the command loads
//                      (repeatable; the loader reports a bad one at its JSON pointer)
//   --host-dir DIR     where host profiles are looked up first (repeatable); a scenario names a
//                      profile by a bare name only, so this is the only other place one comes from
struct ScenarioArgs {};
void add_scenario_options(CLI::App& cmd, ScenarioArgs& /*args*/) {
    cmd.add_option_function<std::vector<std::string>>(
           "--host-dir",
           [](const std::vector<std::string>& dirs) {
               for (const auto& d : dirs) {
                   if (d.empty()) throw UsageError("--host-dir needs a directory");
                   g_host_dirs.push_back(d);
               }
           },
           "look host profiles up in DIR first, before $KVMSIM_HOSTS and scenarios/hosts; repeatable")
        ->type_name("DIR")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    cmd.add_option_function<std::vector<std::string>>(
           "--set",
           [](const std::vector<std::string>& sets) {
               for (const auto& s : sets) {
                   try {
                       g_set_overrides.push_back(cli::parse_set(s));
                   } catch (const cli::OverrideError& e) {
                       throw UsageError(e.what());
                   }
               }
           },
           "an override after the variant (vm.vcpus=8, workload.flags.v=8, a JSON pointer); repeatable")
        ->type_name("PATH=VALUE")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->allow_extra_args(false);
}

// ---- option values -------------------------------------------------------------------------

std::uint64_t parse_uint(const std::string& opt, const std::string& s, std::uint64_t lo, std::uint64_t hi) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || !end || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        throw UsageError(opt + " expects a non-negative integer, got \"" + s + "\"");
    if (v < lo || v > hi) throw UsageError(opt + " expects " + std::to_string(lo) + " to " + std::to_string(hi));
    return v;
}

engine::Time parse_time_arg(const std::string& opt, const std::string& v) {
    const auto t = scenario::parse_time(v);
    if (!t) throw UsageError(opt + ": " + t.error());
    return t.value();
}

std::set<std::uint32_t> parse_vcpus(const std::string& opt, const std::string& list) {
    std::set<std::uint32_t> set;
    for (std::size_t pos = 0; pos <= list.size();) {
        const std::size_t end = std::min(list.find(',', pos), list.size());
        const std::string item = list.substr(pos, end - pos);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 6)
            throw UsageError(opt + " expects vCPU numbers such as 0,1,5, got \"" + list + "\"");
        set.insert(static_cast<std::uint32_t>(std::stoul(item)));
        pos = end + 1;
    }
    return set;
}

std::vector<std::string> parse_names(const std::string& opt, const std::string& list) {
    std::vector<std::string> names;
    for (std::size_t pos = 0; pos <= list.size();) {
        const std::size_t end = std::min(list.find(',', pos), list.size());
        if (end > pos) names.push_back(list.substr(pos, end - pos));
        pos = end + 1;
    }
    if (names.empty()) throw UsageError(opt + " expects scenario names separated by commas");
    return names;
}

// An option whose value, when given, goes through `parse` into `out` (left empty when the option
// is not given). The last of repeated options wins.
template <class T, class Parse>
CLI::Option* add_value(CLI::App& cmd, const std::string& name, std::optional<T>& out, Parse parse,
                       const std::string& type, const std::string& help) {
    return cmd.add_option_function<std::string>(name, [&out, parse, name](const std::string& v) { out = parse(name, v); },
                                                help)
        ->type_name(type);
}
CLI::Option* add_path(CLI::App& cmd, const std::string& name, std::optional<std::string>& out, const std::string& type,
                      const std::string& help) {
    return add_value(cmd, name, out, [](const std::string&, const std::string& v) { return v; }, type, help);
}

// ---- running -------------------------------------------------------------------------------

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
            return report::to_json(runner::run(scenario::load_scenario(*p.file, load_options(variant_or_none(*p.variant), p.seed))))
                .dump();
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

// What a JSON file that kvmsim reads or writes is, from its top-level keys: so that a command
// given the wrong kind says so in one line instead of listing every key it did not expect.
enum class FileKind { Scenario, Result, Events, Trace, Comparison, PublishedCheck, HostProfile };

FileKind file_kind(const nlohmann::json& j) {
    if (!j.is_object()) return FileKind::Scenario;  // the loader says what it expected
    if (j.contains("result_schema")) return FileKind::Result;
    if (j.contains("traceEvents")) return FileKind::Trace;
    if (j.contains("events") && j.contains("processes") && j.contains("fingerprint")) return FileKind::Events;
    if (j.contains("comparisons") || (j.contains("metrics") && j.contains("seeds"))) return FileKind::Comparison;
    if (j.contains("rows") && j.contains("summary")) return FileKind::PublishedCheck;
    if (j.contains("costs") && j.contains("topology")) return FileKind::HostProfile;
    return FileKind::Scenario;
}

const char* describe(FileKind k) {
    switch (k) {
    case FileKind::Scenario: return "a scenario";
    case FileKind::Result: return "a run's result (kvmsim run --json)";
    case FileKind::Events: return "an event log (kvmsim run --events, for kvmsim diff)";
    case FileKind::Trace: return "a trace (kvmsim run --trace, for a trace viewer)";
    case FileKind::Comparison: return "a comparison (kvmsim compare --json)";
    case FileKind::PublishedCheck: return "a published-figures check (kvmsim check-published --json)";
    case FileKind::HostProfile: return "a host profile";
    }
    return "?";
}

FileKind kind_of_file(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return FileKind::Scenario;
    return file_kind(scenario::parse_json_file(path));
}

// ---- the commands --------------------------------------------------------------------------

// A declared command: its parser and what runs it once parsed.
struct Command {
    CLI::App* app;
    std::function<int()> run;
};

// ---- run

struct RunArgs {
    ScenarioArgs scenario;
    std::string file;
    std::optional<std::string> variant, json_out, trace_out, events_out;
    std::optional<std::uint64_t> seed;
    std::optional<engine::Time> trace_from, trace_to, until;
    std::optional<std::set<std::uint32_t>> trace_vcpus;
    bool quiet = false;
};

int cmd_run(const RunArgs& a) {
    if (!a.trace_out && (a.trace_from || a.trace_to || a.trace_vcpus))
        throw UsageError("--trace-from, --trace-to and --trace-vcpus go with --trace");
    const scenario::Scenario sc = scenario::load_scenario(a.file, load_options(a.variant, a.seed));
    // Every output is checked, and its temporary file made, before the run.
    std::optional<report::OutputFile> json_file;
    if (a.json_out) json_file.emplace(*a.json_out, "--json");
    runner::RunOptions ro = progress_options(a.quiet);
    if (a.until) ro.until = *a.until;
    std::optional<report::ChromeTraceWriter> tracer;
    if (a.trace_out) {
        report::TraceOptions topts;
        if (a.trace_from) topts.from = *a.trace_from;
        if (a.trace_to) topts.to = *a.trace_to;
        topts.vcpus = a.trace_vcpus;
        tracer.emplace(*a.trace_out, topts);
        ro.tracer = &*tracer;
    }
    std::optional<report::EventsWriter> events;
    std::vector<std::string> names;
    if (a.events_out) {
        events.emplace(*a.events_out);
        ro.event_log = &*events;
        ro.process_names = &names;
    }
    const runner::Result r = runner::run(sc, ro);
    if (!a.quiet && isatty(STDERR_FILENO)) std::fprintf(stderr, "\r%60s\r", "");
    if (tracer) tracer->finish(engine::Time::ps(static_cast<std::int64_t>(r.sim_time_ns * 1000.0)));
    if (json_file) {
        json_file->write(report::to_json(r).dump(2) + "\n");
        json_file->commit();
    }
    if (events) events->finish(r.scenario, r.variant, r.seed, report::hex64(r.fingerprint), names);
    if (!a.quiet) report::print_summary(std::cout, r);
    return r.status == "completed" || (a.until && r.status == "stopped") ? 0 : 1;
}

Command add_run(CLI::App& top) {
    auto a = std::make_shared<RunArgs>();
    CLI::App& c = *top.add_subcommand("run", "Run one scenario (a variant at a seed) and print its summary");
    c.add_option("FILE", a->file, "the scenario (JSON, scenarios/schema/scenario.schema.json)")->required()->type_name("");
    add_value(c, "--variant", a->variant, [](const std::string&, const std::string& v) { return v; }, "NAME",
              "the variant to run (default: the scenario as it is, without any)");
    add_value(c, "--seed", a->seed, [](const std::string& o, const std::string& v) { return parse_uint(o, v, 0, UINT64_MAX); },
              "N", "the random seed (default: the scenario's)");
    add_path(c, "--json", a->json_out, "OUT", "write the result document (scenarios/schema/result.schema.json)");
    c.add_flag("--quiet", a->quiet, "print no summary and no progress");
    add_path(c, "--trace", a->trace_out, "OUT", "write a Chrome/Perfetto trace (open it in ui.perfetto.dev)");
    add_value(c, "--trace-from", a->trace_from, parse_time_arg, "T", "trace from simulated time T (e.g. 50us)");
    add_value(c, "--trace-to", a->trace_to, parse_time_arg, "T", "trace until simulated time T (e.g. 200us)");
    add_value(c, "--trace-vcpus", a->trace_vcpus, parse_vcpus, "LIST", "trace only these vCPUs (e.g. 0,1,5)");
    add_path(c, "--events", a->events_out, "OUT", "write every processed event, for kvmsim diff");
    add_value(c, "--until", a->until, parse_time_arg, "T", "stop at simulated time T (status \"stopped\", exit 0)");
    add_scenario_options(c, a->scenario);
    c.footer(R"(Examples:
  kvmsim run scenarios/seeds/003-zap-gfn-range.json --variant read-lock --json out.json
  kvmsim run FILE --trace t.json --trace-to 200us       # open t.json in ui.perfetto.dev
  kvmsim run FILE --until 5ms                           # only the first 5 ms of simulated time
  kvmsim run FILE --events a.json                       # then: kvmsim diff a.json b.json

Exit status: 0 the run completed (or stopped at --until), 1 it did not (deadlock), 2 bad input.)");
    return {&c, [a] { return cmd_run(*a); }};
}

// ---- import-trace

std::string suggestion(const std::string& word, const std::vector<std::string>& candidates);

struct ImportArgs {
    std::string trace;
    std::optional<std::string> out, model, host, backing, name;
    std::optional<engine::Time> window;
    ScenarioArgs scenario_args;
};

int cmd_import_trace(const ImportArgs& a) {
    if (!a.out) throw UsageError("-o SCENARIO.json is required: where the scenario is written");
    trace::ImportOptions o;
    if (a.model) {
        std::vector<std::string> names;
        for (const auto* m : models::builtin_models().all()) names.push_back(m->name);
        if (std::find(names.begin(), names.end(), *a.model) == names.end())
            throw UsageError("--model: unknown MMU model \"" + *a.model + "\"" + suggestion(*a.model, names));
        o.model = *a.model;
    }
    if (a.host) {
        if (!scenario::is_profile_name(*a.host))
            throw UsageError("--host: expected a host profile name (scenarios/hosts/NAME.json, kvmsim list), got \"" +
                             *a.host + "\"");
        o.host = *a.host;
    }
    if (a.backing) {
        std::vector<std::string> names;
        for (const auto& [n, b] : scenario::backing_names()) names.emplace_back(n);
        if (std::find(names.begin(), names.end(), *a.backing) == names.end())
            throw UsageError("--backing: unknown backing \"" + *a.backing + "\"" + suggestion(*a.backing, names));
        o.backing = *a.backing;
    }
    if (a.name) o.name = *a.name;
    if (a.window) {
        if (a.window->ps() < 1000) throw UsageError("--window: expected at least 1ns");
        o.window_ns = static_cast<std::uint64_t>(a.window->ps() / 1000);
    }
    // The output is checked before the trace is read; nothing is written unless the scenario loads.
    report::OutputFile out(*a.out, "-o");
    const std::string text = scenario::read_input_file(a.trace, "a trace file");
    trace::ImportResult r;
    try {
        r = trace::import_trace(text, a.trace, o);
    } catch (const trace::ImportError& e) {
        std::cerr << e.what() << "\n";
        return 2;
    }
    const std::string json = r.scenario.dump(2) + "\n";
    try {
        scenario::load_scenario_text(json, *a.out, load_options(std::nullopt, std::nullopt));
    } catch (const scenario::ScenarioError& e) {
        std::cerr << "kvmsim import-trace: the scenario made from " << a.trace << " does not load: " << e.what() << "\n";
        return 2;
    }
    out.write(json);
    out.commit();
    const auto& s = r.summary;
    std::cout << *a.out << ": " << s.faults << " guest page faults on " << s.vcpus << " vCPUs in " << s.phases
              << (s.phases == 1 ? " phase" : " phases") << " (" << s.format << ", " << s.arch << ", " << s.lines
              << " lines, " << s.events << " events read)\n";
    for (const auto& [why, n] : s.skipped) std::cout << "  skipped " << n << ": " << why << "\n";
    return 0;
}

Command add_import_trace(CLI::App& top) {
    auto a = std::make_shared<ImportArgs>();
    CLI::App& c = *top.add_subcommand("import-trace",
                                      "Make a scenario from a recorded KVM trace (trace-cmd report or perf script text)");
    c.add_option("TRACE", a->trace, "the trace: the text of trace-cmd report or perf script")->required()->type_name("");
    add_path(c, "-o,--output", a->out, "SCENARIO", "write the scenario here (required; replaces a regular file)");
    add_path(c, "--model", a->model, "NAME", "the MMU model (default: x86_tdp for an x86 trace, arm64_stage2 for arm64)");
    add_path(c, "--host", a->host, "PROFILE", "the host profile (default: x86-server for x86, kunpeng-920 for arm64)");
    add_path(c, "--backing", a->backing, "NAME", "the memslots' backing (default: anonymous)");
    add_path(c, "--name", a->name, "NAME", "the scenario's name (default: the trace file's name)");
    add_value(c, "--window", a->window, parse_time_arg, "T",
              "one phase per window of T of the trace (e.g. 10ms; default: one phase, \"trace\")");
    add_scenario_options(c, a->scenario_args);
    c.footer(R"(Examples:
  kvmsim import-trace trace.txt -o replay.json --window 10ms
  kvmsim run replay.json             # recorded and simulated fault latencies side by side
  kvmsim run replay.json --set vm.memslots.0.backing=anonymous_thp   # a what-if

Recording a trace on the host (docs/trace-import.md):
  trace-cmd record -e kvm -e kvmmmu -P PID; trace-cmd report > trace.txt
  perf record -e 'kvm:*' -e 'kvmmmu:*' -p PID -- sleep 10; perf script > trace.txt

Exit status: 0 written, 2 bad input (the error names the trace's file and line).)");
    return {&c, [a] { return cmd_import_trace(*a); }};
}

// ---- diff

struct DiffArgs {
    std::vector<std::string> files;
};

int cmd_diff(const DiffArgs& d) {
    const std::vector<std::string>& args = d.files;
    if (args.size() != 2) throw UsageError("diff expects two event files (kvmsim run --events OUT)");
    nlohmann::json doc[2];
    for (int i = 0; i < 2; ++i) {
        const std::string& f = args[static_cast<std::size_t>(i)];
        doc[i] = scenario::parse_json_file(f);
        const FileKind k = file_kind(doc[i]);
        if (k != FileKind::Events && k != FileKind::Scenario)
            throw scenario::ScenarioError::file_error(f, std::string("this is ") + describe(k) +
                                                             ", not an event log: diff compares two files of kvmsim run --events");
        scenario::Node n(doc[i], f);
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

Command add_diff(CLI::App& top) {
    auto a = std::make_shared<DiffArgs>();
    CLI::App& c = *top.add_subcommand("diff", "The first event at which two recorded runs differ");
    c.add_option("EVENTS", a->files, "two event logs (kvmsim run --events OUT)")->required()->expected(2)->type_name("");
    c.footer(R"(Examples:
  kvmsim run FILE --events a.json; kvmsim run FILE --variant read --events b.json
  kvmsim diff a.json b.json

Exit status: 0 identical runs, 1 they differ (the first difference is printed), 2 bad input.)");
    return {&c, [a] { return cmd_diff(*a); }};
}

// ---- suite

struct SuiteArgs {
    ScenarioArgs scenario;
    std::string dir;
    std::optional<std::uint64_t> seed;
};

int cmd_suite(const SuiteArgs& a) {
    int status = 0;
    for (const auto& f : scenario_files(a.dir)) {
        std::vector<std::string> variants = scenario::scenario_variants(f);
        if (variants.empty()) variants.push_back("");
        std::cout << "== " << f << "\n";
        for (const auto& v : variants) {
            const auto sc = scenario::load_scenario(f, load_options(variant_or_none(v), a.seed));
            const auto r = runner::run(sc);
            std::cout << "  [" << (v.empty() ? "-" : v) << "]";
            for (const auto& p : r.phases)
                if (p.selftest_metric) std::cout << "  " << p.name << " " << report::format_duration_ns(p.sim_time_ns);
            auto stat = [&r](const char* k) {
                auto it = r.stats.find(k);
                return it == r.stats.end() ? 0.0 : static_cast<double>(it->second);
            };
            // Items separated by commas, wrapped within about 120 characters.
            std::vector<std::string> items = {"pf_fixed " + report::format_count(stat("pf_fixed")),
                                              "remote_tlb_flush " + report::format_count(stat("remote_tlb_flush"))};
            for (const auto& l : r.locks)
                if (l.lock == "mmu_lock")
                    items.push_back(l.mode + "@" + l.site + " wait " +
                                    report::format_duration_ns(l.wait_ps.sum_double() / 1e3));
            std::string line = "\n   ";
            for (std::size_t i = 0; i < items.size(); ++i) {
                const std::string item = " " + items[i] + (i + 1 < items.size() ? "," : "");
                if (line.size() + item.size() > 118 && line.size() > 5) {
                    std::cout << line;
                    line = "\n   ";
                }
                line += item;
            }
            std::cout << line;
            char wall[32];
            std::snprintf(wall, sizeof wall, "%.2fs", r.wall_time_s);
            std::cout << "\n    events " << report::format_count(static_cast<double>(r.events)) << ", wall " << wall
                      << ", fingerprint " << report::hex64(r.fingerprint)
                      << (r.status == "completed" ? "" : "  " + r.status) << "\n";
            if (r.status != "completed") status = 1;
        }
    }
    return status;
}

Command add_suite(CLI::App& top) {
    auto a = std::make_shared<SuiteArgs>();
    CLI::App& c = *top.add_subcommand("suite", "Run every scenario in a directory, every variant, one after another");
    c.add_option("DIR", a->dir, "a directory of scenarios (*.json)")->required()->type_name("");
    add_value(c, "--seed", a->seed, [](const std::string& o, const std::string& v) { return parse_uint(o, v, 0, UINT64_MAX); },
              "N", "the random seed of every run (default: each scenario's)");
    add_scenario_options(c, a->scenario);
    c.footer(R"(Examples:
  kvmsim suite scenarios/seeds
  kvmsim suite tests/data --seed 7)");
    return {&c, [a] { return cmd_suite(*a); }};
}

// ---- validate

struct ValidateArgs {
    ScenarioArgs scenario;
    std::vector<std::string> files;
};

int cmd_validate(const ValidateArgs& a) {
    int status = 0;
    for (const auto& f : a.files) {
        try {
            std::vector<std::string> variants = scenario::scenario_variants(f);
            if (variants.empty()) variants.push_back("");
            for (const auto& v : variants) scenario::load_scenario(f, load_options(variant_or_none(v), std::nullopt));
            std::cout << f << ": ok (" << variants.size() << " variant" << (variants.size() == 1 ? "" : "s") << ")\n";
        } catch (const scenario::ScenarioError& e) {
            std::cerr << e.what() << "\n";
            status = 2;
        }
    }
    return status;
}

Command add_validate(CLI::App& top) {
    auto a = std::make_shared<ValidateArgs>();
    CLI::App& c = *top.add_subcommand("validate", "Load every variant of each scenario file and report the first error of each");
    c.add_option("FILE", a->files, "scenario files")->required()->type_name("");
    add_scenario_options(c, a->scenario);
    c.footer(R"(Examples:
  kvmsim validate scenarios/seeds/*.json

Each bad file gets one line naming the file, the JSON pointer and what was expected.
Exit status: 0 every file is valid, 2 at least one is not.)");
    return {&c, [a] { return cmd_validate(*a); }};
}

// ---- list

struct ListArgs {
    ScenarioArgs scenario;
    bool json = false;
};

nlohmann::ordered_json knob_value_json(const vm::KnobValue& v) {
    return std::visit([](const auto& x) { return nlohmann::ordered_json(x); }, v);
}

// Host profiles by name, each from the first directory that has it (as the loader finds them).
std::vector<std::pair<std::string, std::string>> host_profile_files() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& name : scenario::host_profiles(host_dirs()))
        for (const auto& d : host_dirs()) {
            std::error_code ec;
            const fs::path p = fs::path(d) / (name + ".json");
            if (fs::is_regular_file(p, ec)) {
                out.emplace_back(name, p.lexically_normal().string());
                break;
            }
        }
    return out;
}

void list_json(std::ostream& os) {
    using oj = nlohmann::ordered_json;
    oj doc;
    doc["kvmsim_version"] = KVMSIM_VERSION;
    doc["build_id"] = std::string(kvmsim_build_id);
    doc["models"] = oj::array();
    for (const auto* m : models::builtin_models().all()) {
        oj mj = {{"name", m->name}, {"summary", m->summary}, {"kernel", m->kernel}, {"knobs", oj::array()}};
        for (const auto& k : m->knobs) {
            oj kj = {{"name", k.name},
                     {"type", k.type == vm::KnobSpec::Type::Bool ? "bool" : k.type == vm::KnobSpec::Type::Int ? "int" : "choice"},
                     {"default", knob_value_json(k.default_value)},
                     {"meaning", k.meaning}};
            if (!k.choices.empty()) kj["choices"] = k.choices;
            if (k.type == vm::KnobSpec::Type::Int) kj["range"] = {k.min, k.max};
            kj["applies_when"] = oj::array();
            for (const auto& w : k.applies_when) {
                oj vals = oj::array();
                for (const auto& v : w.values) vals.push_back(knob_value_json(v));
                kj["applies_when"].push_back({{"knob", w.knob}, {"values", vals}, {"why", w.why}});
            }
            mj["knobs"].push_back(std::move(kj));
        }
        mj["inert_knobs"] = oj::array();
        for (const auto& k : m->inert_knobs) mj["inert_knobs"].push_back({{"name", k.name}, {"why", k.why}});
        mj["operations"] = oj::array();
        for (auto op : m->operations) mj["operations"].push_back(vm::to_string(op));
        doc["models"].push_back(std::move(mj));
    }
    doc["presets"] = oj::array();
    for (const auto& p : workload::presets())
        doc["presets"].push_back({{"name", p.name}, {"summary", p.summary}, {"usage", p.usage}});
    doc["host_profiles"] = oj::array();
    for (const auto& [name, file] : host_profile_files()) {
        oj h = {{"name", name}, {"file", file}};
        try {
            const auto j = scenario::parse_json_file(file);
            if (j.is_object() && j.contains("description") && j["description"].is_string()) h["description"] = j["description"];
        } catch (const scenario::ScenarioError&) {
            // Listed all the same: a scenario that uses it gets the located error.
        }
        doc["host_profiles"].push_back(std::move(h));
    }
    os << doc.dump(2) << "\n";
}

int cmd_list(const ListArgs& a) {
    if (a.json) {
        list_json(std::cout);
        return 0;
    }
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
            for (const auto& w : k.applies_when) {
                std::cout << "        acts only when " << w.knob << " is ";
                for (std::size_t i = 0; i < w.values.size(); ++i) std::cout << (i ? " or " : "") << vm::to_string(w.values[i]);
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

Command add_list(CLI::App& top) {
    auto a = std::make_shared<ListArgs>();
    CLI::App& c = *top.add_subcommand("list", "List the MMU models with their knobs, the selftest presets and the host profiles");
    c.add_flag("--json", a->json, "print them as one JSON document (models, knobs, presets, host profiles)");
    add_scenario_options(c, a->scenario);
    c.footer(R"(Examples:
  kvmsim list
  kvmsim list --json | python3 -c 'import json,sys; print([m["name"] for m in json.load(sys.stdin)["models"]])')");
    return {&c, [a] { return cmd_list(*a); }};
}

// ---- compare

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

struct CompareArgs {
    ScenarioArgs scenario;
    std::vector<std::string> paths;
    std::optional<std::uint64_t> seeds, jobs;
    std::optional<std::string> json_out;
};

// Two saved results, each of a run that completed.
void check_results(const std::vector<std::string>& paths, const std::vector<nlohmann::json>& docs) {
    for (std::size_t i = 0; i < docs.size(); ++i) {
        const std::string status = docs[i].value("status", "");
        if (status == "completed") continue;
        std::string why = status == "stopped" ? "the run was stopped before it completed (kvmsim run --until)"
                          : status == "deadlock" ? "the run ended in a deadlock"
                                                 : "the run did not complete (status \"" + status + "\")";
        throw scenario::ScenarioError::file_error(paths[i], why + ": compare needs completed runs");
    }
}

int cmd_compare(const CompareArgs& a) {
    if (a.json_out) report::check_output_path(*a.json_out, "--json");
    const std::uint64_t nseeds = a.seeds.value_or(5);
    const unsigned jobs = a.jobs ? static_cast<unsigned>(*a.jobs) : cli::default_jobs();
    // Every file's kind first: two results compare as they are, scenarios run; anything else, or
    // a mix, is one line naming the file.
    std::vector<FileKind> kinds;
    for (const auto& p : a.paths) kinds.push_back(kind_of_file(p));
    const auto results = static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), FileKind::Result));
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        if (kinds[i] == FileKind::Result && (a.paths.size() != 2 || results != 2))
            throw scenario::ScenarioError::file_error(
                a.paths[i], std::string("this is ") + describe(kinds[i]) +
                                ": compare takes two results (and nothing else), or scenarios and directories of them");
        if (kinds[i] != FileKind::Result && kinds[i] != FileKind::Scenario)
            throw scenario::ScenarioError::file_error(
                a.paths[i], std::string("this is ") + describe(kinds[i]) +
                                ", not a scenario or a result: compare takes scenarios, directories of them, or two results");
    }
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    if (results == 2) {
        std::vector<std::vector<nlohmann::json>> docs;
        std::vector<nlohmann::json> flat;
        std::vector<std::string> names;
        for (const auto& p : a.paths) {
            flat.push_back(scenario::parse_json_file(p));
            docs.push_back({flat.back()});
            names.push_back(fs::path(p).filename().string());
        }
        check_results(a.paths, flat);
        const auto c = report::compare_documents(names, {0}, docs);
        report::print_compare(std::cout, c);
        all.push_back(report::to_json(c));
    } else {
        std::vector<std::string> files;
        for (const auto& path : a.paths)
            for (const auto& f : scenario_files(path)) files.push_back(f);
        const auto compared = compare_scenarios(files, nseeds, jobs, std::cerr);
        for (std::size_t i = 0; i < files.size(); ++i) {
            std::cout << "== " << files[i] << "\n";
            report::print_compare(std::cout, compared[i]);
            std::cout << "\n";
            all.push_back(report::to_json(compared[i]));
        }
    }
    if (a.json_out) {
        nlohmann::ordered_json doc = all.size() == 1 ? all[0] : nlohmann::ordered_json{{"comparisons", all}};
        report::write_file_atomic(*a.json_out, doc.dump(2) + "\n");
    }
    return 0;
}

Command add_compare(CLI::App& top) {
    auto a = std::make_shared<CompareArgs>();
    CLI::App& c = *top.add_subcommand(
        "compare", "Every variant of a scenario over the same seeds against the baseline, or two saved results");
    c.add_option("PATH", a->paths, "scenarios, directories of scenarios, or two results (kvmsim run --json)")
        ->required()
        ->type_name("");
    add_value(c, "--seeds", a->seeds, [](const std::string& o, const std::string& v) { return parse_uint(o, v, 1, 10000); },
              "N", "run every variant at the scenario's seed and the N-1 after it (default 5)");
    add_value(c, "--jobs", a->jobs, [](const std::string& o, const std::string& v) { return parse_uint(o, v, 1, 1024); }, "N",
              "worker processes (default: one per CPU); the results are the same for any N");
    add_path(c, "--json", a->json_out, "OUT", "write the comparison (means, changes, intervals) as JSON");
    add_scenario_options(c, a->scenario);
    c.footer(R"(Examples:
  kvmsim compare scenarios/seeds/003-zap-gfn-range.json --seeds 5
  kvmsim compare scenarios/seeds --seeds 3 --jobs 2 --json cmp.json
  kvmsim compare a.json b.json          # two results of kvmsim run --json

Output, per scenario: first the selftest's own lines, as the seed documents print them,
  boot: write-lock 0.1164s -> read-lock 0.03412s, faster by 70.69%
("faster by" and "slower by" compare the time with the baseline's: the seeds print this as
+70.69%, where + means faster). Then, for each variant against the baseline (the first variant),
a table of every metric that is not zero: both means (times in ns/us/ms/s, counters with
thousands separators), the change of the mean in percent (negative: less than the baseline; for a
time, faster: the -70.69% of the line above), and the 95% confidence interval of the paired
difference variant - baseline over the seeds (Student's t); * marks an interval that excludes zero.
A variant that draws no random number gives the same run under every seed, so it runs once.
Results stopped by --until, or files of another kind, are refused (exit 2).)");
    return {&c, [a] { return cmd_compare(*a); }};
}

// ---- check-published

struct CheckPublishedArgs {
    ScenarioArgs scenario;
    std::optional<std::string> dir, json_out;
    std::optional<std::uint64_t> seeds, jobs;
    std::optional<std::vector<std::string>> only;
    bool all = false;
};

// The published-results check: each scenario's variants that its "published" rows name, over
// the same seeds (a run that drew no random number stands for every seed, as in compare), then
// one line per row and the summary.
int cmd_check_published(const CheckPublishedArgs& a) {
    std::optional<std::string> dir = a.dir, json_out = a.json_out;
    if (json_out) report::check_output_path(*json_out, "--json");
    const std::uint64_t nseeds = a.seeds.value_or(1);
    const unsigned jobs = a.jobs ? static_cast<unsigned>(*a.jobs) : cli::default_jobs();
    const bool all = a.all;
    const std::vector<std::string> only = a.only.value_or(std::vector<std::string>{});
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

Command add_check_published(CLI::App& top) {
    auto a = std::make_shared<CheckPublishedArgs>();
    CLI::App& c = *top.add_subcommand("check-published",
                                      "Run scenarios with a \"published\" block and check them against the published figures");
    c.add_option_function<std::string>("DIR", [a](const std::string& v) { a->dir = v; },
                                       "the scenarios (default: scenarios/published)")
        ->type_name("");
    add_path(c, "--json", a->json_out, "OUT", "write every row, the summary and the runs as JSON");
    add_value(c, "--jobs", a->jobs, [](const std::string& o, const std::string& v) { return parse_uint(o, v, 1, 1024); }, "N",
              "worker processes (default: one per CPU)");
    add_value(c, "--seeds", a->seeds, [](const std::string& o, const std::string& v) { return parse_uint(o, v, 1, 10000); },
              "N", "seeds per variant, the simulated value being their mean (default 1)");
    c.add_flag("--all", a->all, "also run the scenarios marked \"skip\" (long runs)");
    add_value(c, "--only", a->only, parse_names, "NAME,...", "run only these scenarios (by their \"name\")");
    add_scenario_options(c, a->scenario);
    c.footer(R"(Examples:
  kvmsim check-published --jobs 2
  kvmsim check-published --only c3-eager-split --seeds 3 --json check.json

One line per published row (simulated against published, sign and error factor), the summary
line last. See docs/validation.md.)");
    return {&c, [a] { return cmd_check_published(*a); }};
}

// ---- report

struct ReportArgs {
    std::vector<std::string> results;
    std::optional<report::ReportFormat> format;
    std::optional<std::string> output, baseline;
};

Command add_report(CLI::App& top) {
    auto a = std::make_shared<ReportArgs>();
    CLI::App& c = *top.add_subcommand("report", "A cover-letter document (Markdown or HTML) from saved results");
    c.add_option("RESULT", a->results, "result documents (kvmsim run --json OUT)")->type_name("");
    add_value(
        c, "--format", a->format,
        [](const std::string& opt, const std::string& v) {
            if (v == "md" || v == "markdown") return report::ReportFormat::Markdown;
            if (v == "html") return report::ReportFormat::Html;
            throw UsageError(opt + " expects md or html, got \"" + v + "\"");
        },
        "md|html", "md or html (default: html when -o names a .html file, else md)");
    add_path(c, "-o,--output", a->output, "FILE", "write the document to FILE instead of stdout");
    add_value(c, "--baseline", a->baseline, [](const std::string&, const std::string& v) { return v; }, "VARIANT",
              "the variant the others are compared with (default: the first given)");
    c.footer(R"(Examples:
  kvmsim run scenarios/seeds/003-zap-gfn-range.json --variant write-lock --seed 1 --json w1.json
  kvmsim run scenarios/seeds/003-zap-gfn-range.json --variant read-lock --seed 1 --json r1.json
  kvmsim report w1.json r1.json -o report.html

The runs and their command lines, the selftest's stage lines, the significant changes with 95%
intervals, the counters that moved, a plot of the phase times (inline SVG in HTML) and
provenance. Results of one scenario are grouped by variant and matched by seed.)");
    return {&c, [a] {
                return report::write_report({a->results, a->format, a->output.value_or(""), a->baseline.value_or("")},
                                            std::cout, std::cerr);
            }};
}

// ---- completion

// The bash completion script, from the commands and options as declared: subcommands, each
// command's options, files for FILE/OUT/PATH values, directories for DIR.
std::string bash_completion(const CLI::App& top) {
    auto words = [](const CLI::App& app) {
        std::vector<std::string> w;
        for (const CLI::Option* o : app.get_options()) {
            if (o->get_positional() && o->get_lnames().empty() && o->get_snames().empty()) continue;
            for (const auto& n : o->get_lnames()) w.push_back("--" + n);
            for (const auto& n : o->get_snames()) w.push_back("-" + n);
        }
        return w;
    };
    auto join = [](const std::vector<std::string>& w) {
        std::string s;
        for (const auto& x : w) s += (s.empty() ? "" : " ") + x;
        return s;
    };
    std::vector<std::string> commands;
    for (const CLI::App* sub : top.get_subcommands([](const CLI::App*) { return true; })) commands.push_back(sub->get_name());
    std::ostringstream os;
    os << "# bash completion for kvmsim, made by `kvmsim completion bash` (kvmsim " << KVMSIM_VERSION << ").\n"
       << "# Load it with: source <(kvmsim completion bash), or install it as\n"
       << "# PREFIX/share/bash-completion/completions/kvmsim (pip install . does).\n"
       << "# The variant names of the first existing *.json file on the command line (python3 reads it).\n"
       << "_kvmsim_variants() {\n"
       << "    local w f=\"\"\n"
       << "    for w in \"${COMP_WORDS[@]:2}\"; do [[ $w == *.json && -f $w ]] && { f=$w; break; }; done\n"
       << "    [[ -n $f ]] || return 0\n"
       << "    mapfile -t COMPREPLY < <(compgen -W \"$(python3 -c 'import json, sys\n"
       << "print(\" \".join(v[\"name\"] for v in json.load(open(sys.argv[1])).get(\"variants\", [])))' \"$f\" 2>/dev/null)\" -- \"$1\")\n"
       << "}\n"
       << "_kvmsim() {\n"
       << "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"\" cmd=\"\" i\n"
       << "    [[ $COMP_CWORD -gt 0 ]] && prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
       << "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
       << "        case \"${COMP_WORDS[i]}\" in -*) ;; *) cmd=\"${COMP_WORDS[i]}\"; break ;; esac\n"
       << "    done\n"
       << "    COMPREPLY=()\n"
       << "    if [[ -z $cmd ]]; then\n"
       << "        mapfile -t COMPREPLY < <(compgen -W \"" << join(commands) << " " << join(words(top)) << "\" -- \"$cur\")\n"
       << "        return 0\n"
       << "    fi\n"
       << "    case \"$cmd\" in\n";
    for (const CLI::App* sub : top.get_subcommands([](const CLI::App*) { return true; })) {
        std::vector<std::string> files, dirs, values;
        std::string positional = "-f";
        for (const CLI::Option* o : sub->get_options()) {
            if (o->get_lnames().empty() && o->get_snames().empty()) {
                positional = o->get_name() == "DIR" ? "-d" : o->get_name() == "SHELL" ? "-W bash" : "-f";
                continue;
            }
            if (o->get_expected_min() == 0) continue;  // a flag
            const std::string t = o->get_type_name();
            auto& arm_of = t == "OUT" || t == "FILE" ? files : t == "DIR" ? dirs : values;
            for (const auto& n : o->get_lnames()) arm_of.push_back("--" + n);
            for (const auto& n : o->get_snames()) arm_of.push_back("-" + n);
        }
        os << "    " << sub->get_name() << ")\n        case \"$prev\" in\n";
        auto arm = [&](const std::vector<std::string>& opts, const std::string& action) {
            if (opts.empty()) return;
            std::string pat;
            for (const auto& o : opts) pat += (pat.empty() ? "" : "|") + o;
            os << "        " << pat << ") " << action << " ;;\n";
        };
        arm(files, "mapfile -t COMPREPLY < <(compgen -f -- \"$cur\"); return 0");
        arm(dirs, "mapfile -t COMPREPLY < <(compgen -d -- \"$cur\"); return 0");
        if (std::erase(values, "--variant"))  // the variants of the scenario named on the line
            arm({"--variant"}, "_kvmsim_variants \"$cur\"; return 0");
        arm(values, "return 0");
        os << "        esac\n"
           << "        if [[ $cur == -* ]]; then\n"
           << "            mapfile -t COMPREPLY < <(compgen -W \"" << join(words(*sub)) << "\" -- \"$cur\")\n"
           << "        else\n"
           << "            mapfile -t COMPREPLY < <(compgen " << positional << " -- \"$cur\")\n"
           << "        fi\n"
           << "        ;;\n";
    }
    os << "    esac\n"
       << "    return 0\n"
       << "}\n"
       << "complete -o filenames -o bashdefault -F _kvmsim kvmsim\n";
    return os.str();
}

Command add_completion(CLI::App& top) {
    auto shell = std::make_shared<std::string>("bash");
    CLI::App& c = *top.add_subcommand("completion", "Print the shell completion script (bash)");
    c.add_option("SHELL", *shell, "the shell (only bash)")->check(CLI::IsMember({"bash"}))->type_name("");
    c.footer(R"(Examples:
  source <(kvmsim completion bash)
  kvmsim completion bash > ~/.local/share/bash-completion/completions/kvmsim)");
    // The lambda keeps the option's storage alive: CLI11 writes to it when it parses.
    return {&c, [&top, shell] {
                (void)shell;
                std::cout << bash_completion(top);
                return 0;
            }};
}

// ---- the command line ----------------------------------------------------------------------

// The closest of `candidates` to a mistyped word, as the scenario loader suggests keys.
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
    return scenario::did_you_mean_suffix(word, std::span<const std::string>(candidates));
}

// CLI11's message, said as the rest of kvmsim says it where they differ.
std::string parse_error_message(const CLI::ParseError& e) {
    const std::string what = e.what();
    // ArgumentMismatch: "--seed: 1 required N missing"
    const auto colon = what.find(": ");
    if (e.get_name() == "ArgumentMismatch" && colon != std::string::npos && what.ends_with(" missing")) {
        const std::string who = what.substr(0, colon);
        return who + (who.starts_with("-") ? " expects a value" : ": expected more arguments");
    }
    return what;
}

std::vector<std::string> option_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::Option* o : app.get_options()) {
        for (const auto& n : o->get_lnames()) names.push_back("--" + n);
        for (const auto& n : o->get_snames()) names.push_back("-" + n);
    }
    return names;
}

// "kvmsim run: MESSAGE" and where to look, on stderr; exit status 2.
int usage_error(const CLI::App& app, const std::string& message) {
    const std::string who = app.get_parent() ? "kvmsim " + app.get_name() : "kvmsim";
    std::cerr << who << ": " << message << "\nRun '" << who << " --help' for its usage.\n";
    return 2;
}

// Arguments the command did not take: the first unknown option (with the closest known one),
// else the first unexpected argument.
std::optional<std::string> extras_message(const CLI::App& cmd) {
    const std::vector<std::string> rest = cmd.remaining();
    for (const auto& r : rest)
        if (r.size() > 1 && r[0] == '-') {
            const std::string opt = r.substr(0, r.find('='));
            return "unknown option " + opt + suggestion(opt, option_names(cmd));
        }
    if (!rest.empty()) return "unexpected argument \"" + rest.front() + "\"";
    return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("kvmsim: a deterministic discrete-event simulator of the KVM MMU. It runs JSON workload\n"
                 "scenarios against models of the x86 TDP and shadow MMUs and arm64 stage-2, and compares\n"
                 "the variants of a scenario (before/after an optimization) over common seeds.",
                 "kvmsim");
    app.set_help_all_flag("--help-all", "Print the help of every command and exit");
    app.set_version_flag("--version", std::string("kvmsim ") + KVMSIM_VERSION + "\nbuild_id " + kvmsim_build_id,
                         "Print the version and the build_id (a hash of the sources of the core) and exit");
    app.require_subcommand(1);
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.get_formatter()->column_width(28);
    app.footer(R"(Run 'kvmsim COMMAND --help' for a command's options and examples.

Exit status:
  0 success, 1 a run failed (deadlock, internal error), 2 bad input or usage.

Environment:
  KVMSIM_HOSTS   directories (separated by ':') searched for host profiles NAME.json before the
                 project's scenarios/hosts)");

    std::vector<Command> commands = {add_run(app),      add_compare(app),         add_validate(app),
                                     add_list(app),     add_suite(app),           add_diff(app),
                                     add_check_published(app), add_report(app), add_import_trace(app),
                                     add_completion(app)};
    for (auto& c : commands) {
        c.app->allow_extras();          // reported below, with a did-you-mean
        c.app->set_help_all_flag("");   // --help-all is kvmsim's own
    }

    // A mistyped command or option before it: CLI11 would first ask for a command.
    if (argc >= 2) {
        const std::string first = argv[1];
        std::vector<std::string> names;
        for (const auto& c : commands) names.push_back(c.app->get_name());
        const std::vector<std::string> options = option_names(app);
        if (first == "help") {  // `kvmsim help [COMMAND]`, as before CLI11: the help, status 0
            for (const auto& c : commands)
                if (argc >= 3 && c.app->get_name() == argv[2]) {
                    std::cout << c.app->help("kvmsim");
                    return 0;
                }
            if (argc >= 3) return usage_error(app, "no command \"" + std::string(argv[2]) + "\"" + suggestion(argv[2], names));
            std::cout << app.help();
            return 0;
        }
        if (first.empty() || first[0] != '-') {
            if (std::find(names.begin(), names.end(), first) == names.end())
                return usage_error(app, "unknown command \"" + first + "\"" + suggestion(first, names));
        } else if (const std::string opt = first.substr(0, first.find('='));
                   std::find(options.begin(), options.end(), opt) == options.end()) {
            return usage_error(app, "unknown option " + opt + suggestion(opt, options));
        }
    }
    const CLI::App* failed = &app;  // the command whose usage an error is about
    report::install_signal_cleanup();  // an interrupted run leaves no temporary output behind
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);  // --help, --help-all, --version: printed on stdout, status 0
    } catch (const CLI::ParseError& e) {
        for (const auto& c : commands)
            if (c.app->parsed()) failed = c.app;
        if (e.get_name() == "RequiredError" && failed == &app)
            return usage_error(app, "a command is required (kvmsim --help lists them)");
        return usage_error(*failed, parse_error_message(e));
    } catch (const UsageError& e) {
        for (const auto& c : commands)
            if (c.app->parsed()) failed = c.app;
        return usage_error(*failed, e.what());
    }
    for (const auto& c : commands) {
        if (!c.app->parsed()) continue;
        if (const auto extra = extras_message(*c.app)) return usage_error(*c.app, *extra);
        try {
            return c.run();
        } catch (const UsageError& e) {
            return usage_error(*c.app, e.what());
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
    return usage_error(app, "a command is required (kvmsim --help lists them)");
}
