#include "sim/scenario/loader.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <cerrno>
#include <set>
#include <system_error>
#include <sstream>

#include "sim/scenario/dag.hpp"
#include "sim/scenario/input_file.hpp"
#include "sim/scenario/json_util.hpp"
#include "sim/scenario/limits.hpp"
#include "sim/scenario/units.hpp"
#include "sim/workload/presets.hpp"

namespace kvmsim::scenario {

namespace fs = std::filesystem;
using nlohmann::json;
using engine::Time;

namespace {

std::string read_file(const std::string& path) { return read_input_file(path, "a scenario file"); }

const std::vector<std::string_view> kTopKeys = {"$schema", "name", "description", "seed", "host", "vm",
                                                "mmu", "workload", "events", "variants", "published",
                                                "recorded"};

// ---- host profile --------------------------------------------------------------------------

fs::path find_profile(const std::string& name, const std::string& scenario_path, const std::vector<std::string>& dirs,
                      std::vector<std::string>& searched) {
    std::vector<fs::path> cands;
    const fs::path base = fs::path(scenario_path).parent_path();
    cands.push_back(base / ".." / "hosts");
    cands.push_back(base / "hosts");
    for (const auto& d : dirs) cands.emplace_back(d);
    for (const auto& d : cands) {
        const fs::path p = d / (name + ".json");
        searched.push_back(d.lexically_normal().string());
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) return p;
    }
    return {};
}

void parse_cost(const Node& v, const std::string& name, vm::CostProfile& costs) {
    if (v.json().is_number()) {
        const double x = v.as_number();
        if (!(x >= 0 && x <= kMaxCost))
            v.fail("expected a cost from 0 to 1e12 (a plain number; a time is at most \"1s\"), got " +
                   describe_json(v.json()));
        costs.set(name, x);
        return;
    }
    if (v.json().is_string()) {
        const auto t = parse_time(v.as_string());
        if (!t) v.fail("expected a time such as \"250ns\" or a plain number: " + t.error());
        if (t.value() > Time::s(1)) v.fail("expected a cost of at most 1s, got " + describe_json(v.json()));
        costs.set(name, static_cast<double>(t.value().ps()));
        return;
    }
    v.fail_expected("a time such as \"250ns\" or a number");
}

engine::CacheConfig parse_caches(const Node& c, std::uint32_t cpus) {
    c.check_keys({"line", "memory_latency", "remote_latency", "levels", "source"});
    engine::CacheConfig cfg;
    cfg.cpus = cpus;
    cfg.line_bytes = static_cast<std::uint32_t>(c.opt_size("line", 64, 8, 4096));
    if (!std::has_single_bit(cfg.line_bytes)) c["line"].fail_expected("a power of two from 8 to 4096 bytes");
    cfg.memory_latency = c.get_time("memory_latency", Time::zero(), kMaxLatency);
    cfg.remote_latency = c.get_time("remote_latency", Time::zero(), kMaxLatency);
    const Node levels = c.array("levels");
    if (levels.size() == 0) levels.fail("expected at least one cache level");
    const auto els = levels.elements();
    std::uint64_t state_lines = 0;
    for (std::size_t i = 0; i < els.size(); ++i) {
        const Node& l = els[i];
        l.check_keys({"name", "size", "ways", "latency", "shared", "source"});
        const bool shared = l.opt_bool("shared", false);
        if (shared != (i + 1 == els.size()))
            throw l.error_at("shared", "expected the last level, and only the last, to be shared");
        engine::CacheLevelConfig lc;
        lc.name = l.get_string("name");
        lc.size_bytes = l.get_size("size", 64, kMaxCacheLevelBytes);
        lc.ways = static_cast<std::uint32_t>(l.get_uint("ways", 1, 64));
        lc.hit_latency = l.get_time("latency", Time::zero(), kMaxLatency);
        if (lc.size_bytes % (std::uint64_t{lc.ways} * cfg.line_bytes) != 0)
            throw l.error_at("size", "expected a multiple of ways x line size (" +
                                         std::to_string(lc.ways * cfg.line_bytes) + " bytes)");
        cfg.levels.push_back(lc);
        // The cache model keeps a tag per line, per CPU for a private level.
        const std::uint64_t lines = lc.size_bytes / cfg.line_bytes;
        state_lines += i + 1 == els.size() ? lines : lines * cpus;
        if (state_lines > kMaxCacheStateLines)
            throw l.error_at("size", "expected the caches to hold at most " + std::to_string(kMaxCacheStateLines) +
                                         " lines in all (private levels once per CPU: " + std::to_string(cpus) +
                                         " CPUs), got " + std::to_string(state_lines) + " up to this level");
    }
    return cfg;
}

// ---- host topology ---------------------------------------------------------------------------

constexpr std::array<std::string_view, 6> kTopologyKeys = {
    "sockets", "cpus_per_socket", "line_local", "line_same_socket", "line_cross_socket", "memory_bandwidth_per_socket"};

// One topology field's value (a profile's "value" member, or a scenario override itself).
void parse_topology_field(const Node& v, const std::string& key, engine::Topology& t) {
    if (key == "sockets") t.sockets = static_cast<std::uint32_t>(v.as_uint(1, 1024));
    else if (key == "cpus_per_socket") t.cpus_per_socket = static_cast<std::uint32_t>(v.as_uint(1, 1024));
    else if (key == "line_local") t.line_local = v.as_time(Time::zero(), kMaxLatency);
    else if (key == "line_same_socket") t.line_same_socket = v.as_time(Time::zero(), kMaxLatency);
    else if (key == "line_cross_socket") t.line_cross_socket = v.as_time(Time::zero(), kMaxLatency);
    else {
        t.memory_bandwidth_per_socket = v.as_bandwidth();
        if (t.memory_bandwidth_per_socket != 0 && t.memory_bandwidth_per_socket < kMinBandwidth)
            v.fail_expected("a bandwidth of at least 1MB/s, or \"0B/s\" (unlimited)");
    }
}

// The profile's "topology" (every field {"value": ..., "source": ...}), then the scenario's
// host.topology overrides (plain values). The shape must cover the host's CPUs: when the
// scenario changes host.cpus, or one of sockets and cpus_per_socket, the other follows when it
// divides evenly; otherwise the error names what to set.
engine::Topology load_topology(const Node& prof, const Node& host, std::uint32_t profile_cpus, std::uint32_t cpus) {
    const Node t = prof.object("topology");
    t.check_keys(std::span<const std::string_view>(kTopologyKeys));
    engine::Topology topo;
    for (std::string_view key : kTopologyKeys) {
        const Node v = t[key];
        v.check_keys({"value", "source"});
        if (v.get_string("source").empty()) v["source"].fail("expected a source: a document, or \"estimate\" with the reasoning");
        parse_topology_field(v["value"], std::string(key), topo);
    }
    if (topo.cpus() != profile_cpus)
        t.fail("expected sockets x cpus_per_socket (" + std::to_string(topo.sockets) + " x " +
               std::to_string(topo.cpus_per_socket) + " = " + std::to_string(topo.cpus()) +
               ") to equal the profile's cpus (" + std::to_string(profile_cpus) + ")");
    const auto over = host.opt_object("topology");
    if (over) {
        over->check_keys(std::span<const std::string_view>(kTopologyKeys));
        for (const auto& [k, v] : over->members()) parse_topology_field(v, k, topo);
    }
    const bool set_sockets = over && over->has("sockets"), set_per = over && over->has("cpus_per_socket");
    const std::string cpus_text = std::to_string(cpus);
    if (set_sockets && !set_per) {
        if (cpus % topo.sockets != 0)
            (*over)["sockets"].fail("expected a divisor of the host's " + cpus_text +
                                    " CPUs, or host.topology.cpus_per_socket as well");
        topo.cpus_per_socket = cpus / topo.sockets;
    } else if (set_per && !set_sockets) {
        if (cpus % topo.cpus_per_socket != 0)
            (*over)["cpus_per_socket"].fail("expected a divisor of the host's " + cpus_text +
                                            " CPUs, or host.topology.sockets as well");
        topo.sockets = cpus / topo.cpus_per_socket;
    } else if (!set_sockets && cpus != profile_cpus) {
        if (cpus % topo.sockets != 0)
            host["cpus"].fail("expected a multiple of the profile's " + std::to_string(topo.sockets) +
                              " sockets, or host.topology.sockets and cpus_per_socket to match, got " + cpus_text);
        topo.cpus_per_socket = cpus / topo.sockets;
    } else if (set_sockets && set_per && topo.cpus() != cpus) {
        over->fail("expected sockets x cpus_per_socket (" + std::to_string(topo.sockets) + " x " +
                   std::to_string(topo.cpus_per_socket) + " = " + std::to_string(topo.cpus()) +
                   ") to equal the host's cpus (" + cpus_text + ")");
    }
    // A line further away never costs less: a reversed pair is a typo.
    auto order = [&](const char* lo, Time a, const char* hi, Time b) {
        if (a <= b) return;
        const std::string msg = std::string("expected ") + hi + " (" + format_time(b) + ") to be at least " + lo +
                                " (" + format_time(a) + ")";
        if (over && over->has(hi)) (*over)[hi].fail(msg);
        if (over && over->has(lo)) (*over)[lo].fail(msg);
        t[hi]["value"].fail(msg);
    };
    order("line_local", topo.line_local, "line_same_socket", topo.line_same_socket);
    order("line_same_socket", topo.line_same_socket, "line_cross_socket", topo.line_cross_socket);
    return topo;
}

// The profile's document is stored in *profile_doc (for Scenario::resolved_sha256).
vm::HostConfig load_host(const Node& host, const std::string& scenario_path, const std::vector<std::string>& dirs,
                         json* profile_doc) {
    host.check_keys({"profile", "cpus", "costs", "features", "caches", "topology"});
    const std::string name = host.get_string("profile");
    if (!is_profile_name(name))
        host["profile"].fail("expected a host profile name (letters, digits, \".\", \"_\", \"-\", not starting with "
                             "\".\"), got " + describe_json(json(name)) +
                             "; other profile directories are given on the command line (--host-dir DIR) or to the "
                             "Python API (host_dirs=), never by a scenario");
    std::vector<std::string> searched;
    const fs::path p = find_profile(name, scenario_path, dirs, searched);
    if (p.empty()) {
        std::vector<std::string> known = host_profiles(searched);
        host["profile"].fail("unknown host profile \"" + name + "\"" + did_you_mean_suffix(name, known) +
                             "; profiles are NAME.json in " + (searched.empty() ? std::string("?") : searched.front()));
    }
    const std::string profile_file = p.lexically_normal().string();
    json& prof_doc = *profile_doc;
    prof_doc = parse_json_file(p);
    Node prof(prof_doc, profile_file);
    prof.check_keys({"$schema", "name", "description", "cpus", "topology", "caches", "costs", "features"});

    vm::HostConfig h;
    h.profile = name;
    const auto profile_cpus = static_cast<std::uint32_t>(prof.get_uint("cpus", 1, 1024));
    h.cpus = profile_cpus;
    if (auto c = host.find("cpus")) h.cpus = static_cast<std::uint32_t>(c->as_uint(1, 1024));
    h.topology = load_topology(prof, host, profile_cpus, h.cpus);

    // Profile costs: {"value": ..., "source": "..."}; every one must cite a source.
    std::vector<std::string> cost_names;
    for (const auto& [k, v] : prof.object("costs").members()) {
        v.check_keys({"value", "source"});
        if (v.get_string("source").empty()) v["source"].fail("expected a source: a calibration row, a document, or \"estimate\"");
        parse_cost(v["value"], k, h.costs);
        cost_names.push_back(k);
    }
    if (auto over = host.opt_object("costs")) {
        for (const auto& [k, v] : over->members()) {
            if (!h.costs.has(k))
                v.fail("unknown cost \"" + k + "\" (not in host profile " + name + ")" + did_you_mean_suffix(k, cost_names));
            parse_cost(v, k, h.costs);
        }
    }
    // Profile features: {"value": true|false, "source": "..."}, overridable by the scenario.
    std::vector<std::string> feature_names;
    if (auto feats = prof.opt_object("features")) {
        for (const auto& [k, v] : feats->members()) {
            v.check_keys({"value", "source"});
            if (v.get_string("source").empty()) v["source"].fail("expected a source: a document, or \"estimate\"");
            h.features[k] = v.get_bool("value");
            feature_names.push_back(k);
        }
    }
    if (auto over = host.opt_object("features")) {
        for (const auto& [k, v] : over->members()) {
            if (!h.features.count(k))
                v.fail("unknown feature \"" + k + "\" (not in host profile " + name + ")" + did_you_mean_suffix(k, feature_names));
            h.features[k] = v.as_bool();
        }
    }
    json caches = prof.object("caches").json();
    if (auto over = host.opt_object("caches")) {
        over->check_keys({"line", "memory_latency", "remote_latency", "levels"});
        apply_merge_patch(caches, over->json());
        Node merged(caches, scenario_path + " (host.caches merged over " + profile_file + ")", over->pointer());
        h.cache = parse_caches(merged, h.cpus);
    } else {
        h.cache = parse_caches(prof.object("caches"), h.cpus);
    }
    // The cache model's coherence transfers between sockets cost the topology's line_cross_socket.
    if (h.topology.sockets > 1) {
        h.cache.cpus_per_socket = h.topology.cpus_per_socket;
        h.cache.cross_socket_latency = h.topology.line_cross_socket;
    }
    return h;
}

// ---- model -----------------------------------------------------------------------------------

// 1000000 rather than 1e+06.
std::string number_text(double x) {
    if (x == std::floor(x) && std::abs(x) < 1e15) return std::to_string(static_cast<std::int64_t>(x));
    std::ostringstream o;
    o << x;
    return o.str();
}

std::string knob_value_text(const vm::KnobValue& v) {
    return std::holds_alternative<std::string>(v) ? "\"" + vm::to_string(v) + "\"" : vm::to_string(v);
}

vm::Knobs load_knobs(const Node& mmu, const vm::ModelInfo& info, const vm::HostConfig& host) {
    vm::Knobs knobs;
    for (const auto& k : info.knobs) knobs[k.name] = k.default_value;
    const auto given = mmu.opt_object("knobs");
    if (!given) return knobs;
    std::vector<std::string> names;
    for (const auto& k : info.knobs) names.push_back(k.name);
    for (const auto& [key, v] : given->members()) {
        if (const vm::InertKnob* inert = info.inert_knob(key))
            v.fail("knob \"" + key + "\" has no effect on model " + info.name + ": " + inert->why);
        const vm::KnobSpec* spec = info.knob(key);
        if (!spec) v.fail("unknown knob \"" + key + "\" of model " + info.name + did_you_mean_suffix(key, names));
        switch (spec->type) {
            case vm::KnobSpec::Type::Bool: knobs[key] = v.as_bool(); break;
            case vm::KnobSpec::Type::Int: knobs[key] = v.as_int(spec->min, spec->max); break;
            case vm::KnobSpec::Type::Choice:
                if (v.is_string())
                    for (const auto& [value, why] : spec->refused_choices)
                        if (v.as_string() == value)
                            v.fail("knob \"" + key + "\" = \"" + value + "\" cannot act on model " + info.name + ": " +
                                   why);
                knobs[key] = v.as_enum(spec->choices);
                break;
        }
    }
    // A knob set in the scenario must be able to act, given the other knobs' final values.
    for (const auto& [key, v] : given->members()) {
        for (const auto& cond : info.knob(key)->applies_when) {
            const vm::KnobValue& other = knobs.at(cond.knob);
            if (std::find(cond.values.begin(), cond.values.end(), other) != cond.values.end()) continue;
            std::string wanted;
            for (std::size_t i = 0; i < cond.values.size(); ++i)
                wanted += (i ? " or " : "") + knob_value_text(cond.values[i]);
            v.fail("knob \"" + key + "\" has no effect while " + mmu.pointer() + "/knobs/" + cond.knob + " is " +
                   knob_value_text(other) + " (it acts only when that is " + wanted + "): " + cond.why);
        }
        for (const auto& req : info.knob(key)->requires_features) {
            if (knobs.at(key) != req.value) continue;
            const auto f = host.features.find(req.feature);
            if (f != host.features.end() && f->second) continue;
            v.fail("knob \"" + key + "\" = " + knob_value_text(req.value) + " needs host feature \"" + req.feature +
                   "\", which host profile " + host.profile + " " +
                   (f == host.features.end() ? "does not list" : "sets false (override it under /host/features)") +
                   ": " + req.why);
        }
    }
    return knobs;
}

// ---- workload --------------------------------------------------------------------------------

std::vector<std::string> split_args(const Node& args) {
    std::vector<std::string> out;
    if (args.json().is_string()) {
        std::istringstream ss(args.as_string());
        std::string w;
        while (ss >> w) out.push_back(w);
    } else if (args.json().is_array()) {
        for (const auto& e : args.elements()) {
            if (e.json().is_number_integer()) out.push_back(std::to_string(e.as_int()));
            else out.push_back(e.as_string());
        }
    } else {
        args.fail_expected("the selftest's flags as a string (\"-s anonymous -b 1G -v 4\") or an array");
    }
    return out;
}

// A preset's command line: "args" (the selftest's own flags) with "flags" on top. "flags" makes
// each flag a path of the document (/workload/flags/v for -v), so overrides and sweep grids set
// one flag: {"v": 8} gives "-v 8", {"g": true} the switch "-g", false leaves a switch out. A
// flag in "flags" replaces the same flag in "args". from[i] locates args[i] for errors (nullopt:
// somewhere in "args").
struct PresetArgs {
    std::vector<std::string> args;
    std::vector<std::optional<Node>> from;
};

PresetArgs preset_args(const Node& wl, const workload::PresetInfo& preset) {
    PresetArgs out;
    std::vector<std::string> given = wl.has("args") ? split_args(wl["args"]) : std::vector<std::string>{};
    const auto flags = wl.opt_object("flags");
    std::vector<std::pair<std::string, Node>> set;
    if (flags) set = flags->members();
    for (const auto& [key, value] : set) {
        if (key.size() != 1 || !std::isalpha(static_cast<unsigned char>(key[0])))
            value.fail("expected a one-letter flag name such as \"v\" (for -v), got " + quote(key));
        const auto& j = value.json();
        const bool count = j.is_number_unsigned() || (j.is_number_integer() && j.get<std::int64_t>() >= 0);
        if (!(j.is_boolean() || j.is_string() || count))
            value.fail_expected("the flag's value (a string or a non-negative integer), or true/false for a switch");
    }
    auto in_flags = [&](const std::string& a) {
        for (const auto& [key, value] : set)
            if (a == "-" + key) return &value;
        return static_cast<const Node*>(nullptr);
    };
    for (std::size_t i = 0; i < given.size(); ++i) {
        if (in_flags(given[i])) {
            // "-v 4": its value goes too (a bad flag of args itself is left for the preset).
            if (preset.with_value.find(given[i][1]) != std::string::npos) ++i;
            continue;
        }
        out.args.push_back(given[i]);
        out.from.emplace_back();
    }
    for (const auto& [key, value] : set) {
        const auto& j = value.json();
        if (j.is_boolean()) {
            if (!j.get<bool>()) continue;
            out.args.push_back("-" + key);
            out.from.push_back(value);
            continue;
        }
        out.args.push_back("-" + key);
        out.from.push_back(value);
        out.args.push_back(j.is_string() ? j.get<std::string>() : std::to_string(j.get<std::int64_t>()));
        out.from.push_back(value);
    }
    return out;
}

const vm::Memslot& slot_by_id(const Node& n, const vm::VmConfig& vm, std::uint64_t id) {
    for (const auto& s : vm.memslots)
        if (s.id == id) return s;
    n.fail("no memslot with id " + std::to_string(id));
}

// The vCPUs a per-vCPU operation happens on: listed, or vCPU 0 for SMM (the boot CPU, as with
// SeaBIOS) and every vCPU for a nested guest.
std::vector<std::uint32_t> vcpus_of(const Node& op, const vm::VmConfig& vm, vm::Operation kind) {
    std::vector<std::uint32_t> out;
    if (auto s = op.opt_array("vcpus")) {
        for (const auto& e : s->elements()) {
            const std::uint64_t v = e.as_uint();
            if (v >= vm.vcpus) e.fail("expected a vCPU index below " + std::to_string(vm.vcpus));
            if (std::find(out.begin(), out.end(), v) != out.end()) e.fail("expected each vCPU once");
            out.push_back(static_cast<std::uint32_t>(v));
        }
        if (out.empty()) s->fail("expected at least one vCPU");
    } else if (kind == vm::Operation::SmmEnter || kind == vm::Operation::SmmExit) {
        out.push_back(0);
    } else {
        for (std::uint32_t v = 0; v < vm.vcpus; ++v) out.push_back(v);
    }
    return out;
}

std::vector<std::uint32_t> slots_of(const Node& op, const vm::VmConfig& vm) {
    std::vector<std::uint32_t> out;
    if (auto s = op.opt_array("slots")) {
        for (const auto& e : s->elements()) out.push_back(slot_by_id(e, vm, e.as_uint()).id);
    } else {
        for (const auto& m : vm.memslots) out.push_back(m.id);
    }
    return out;
}

const std::vector<std::pair<std::string_view, vm::Operation>> kOpsTable = {
    {"dirty_log_enable", vm::Operation::DirtyLogEnable}, {"dirty_log_get", vm::Operation::DirtyLogGet},
    {"dirty_log_clear", vm::Operation::DirtyLogClear},   {"dirty_log_disable", vm::Operation::DirtyLogDisable},
    {"zap_gfn_range", vm::Operation::ZapGfnRange},       {"invalidate", vm::Operation::Invalidate},
    {"smm_enter", vm::Operation::SmmEnter},              {"smm_exit", vm::Operation::SmmExit},
    {"nested_start", vm::Operation::NestedStart},        {"nested_stop", vm::Operation::NestedStop},
    {"nested_eptp_switch", vm::Operation::NestedEptpSwitch}, {"nested_ept_write", vm::Operation::NestedEptWrite},
    {"clear_young", vm::Operation::ClearYoung},          {"test_young", vm::Operation::TestYoung},
    {"vm_destroy", vm::Operation::VmDestroy},
};

vm::Operation parse_op(const Node& n) {
    std::vector<std::string> names;
    for (const auto& [k, v] : operation_names()) names.emplace_back(k);
    const std::string s = n.as_enum(names);
    for (const auto& [k, v] : operation_names())
        if (k == s) return v;
    return vm::Operation::ZapGfnRange;
}

void require_op(const Node& at, const vm::ModelInfo& info, vm::Operation op) {
    if (!info.supports(op)) {
        std::string ops;
        for (auto o : info.operations) ops += std::string(ops.empty() ? "" : ", ") + vm::to_string(o);
        at.fail(std::string("model ") + info.name + " does not support " + vm::to_string(op) + " (it supports: " +
                (ops.empty() ? "none" : ops) + ")");
    }
}

// The memslot holding guest physical address gpa, if any.
const vm::Memslot* slot_at(const vm::VmConfig& vm, std::uint64_t gpa) {
    for (const auto& s : vm.memslots)
        if (s.contains(gpa / vm::kPageSize)) return &s;
    return nullptr;
}

// The guest around an SMI (smm_enter's "smi_handler"). Defaults: SeaBIOS's relocated SMBASE
// (BUILD_SMM_ADDR, src/fw/smm.c) and an estimated SMI-handler working set of tens of KiB from
// SMBASE on (docs/models/x86_context.md says what it stands for).
constexpr std::uint64_t kDefaultSmbase = 0xa0000;
constexpr std::uint64_t kDefaultSmiRead = 32 * 1024;
constexpr std::uint64_t kDefaultSmiWrite = 8 * 1024;

vm::SmiHandler parse_smi_handler(const Node& ev, const vm::VmConfig& vm) {
    vm::SmiHandler h{kDefaultSmbase, kDefaultSmbase, kDefaultSmiRead, kDefaultSmiWrite};
    const std::optional<Node> o = ev.opt_object("smi_handler");
    if (o) {
        o->check_keys({"smbase", "start", "read", "write"});
        constexpr std::uint64_t kMaxGpa = std::uint64_t{1} << 52, kMaxBytes = std::uint64_t{1} << 40;
        h.smbase = o->opt_size("smbase", kDefaultSmbase, 0, kMaxGpa);
        h.start = o->opt_size("start", h.smbase, 0, kMaxGpa);
        h.read_bytes = o->opt_size("read", kDefaultSmiRead, 0, kMaxBytes);
        h.write_bytes = o->opt_size("write", kDefaultSmiWrite, 0, kMaxBytes);
    }
    // enter_smm's kvm_vcpu_write_guest of the 512-byte state-save area at SMBASE + 0xfe00 must
    // land in guest memory (else KVM kills the VM).
    const std::uint64_t save = h.smbase + 0xfe00;
    if (!slot_at(vm, save) || !slot_at(vm, save + 511)) {
        const std::string what = "expected an SMBASE whose state-save area (SMBASE + 0xfe00, 512 bytes) lies in a memslot";
        if (o && o->has("smbase")) (*o)["smbase"].fail(what);
        throw (o ? *o : ev).error(what + " (the default SMBASE is 0xa0000; give smi_handler.smbase)");
    }
    const std::uint64_t bytes = h.read_bytes + h.write_bytes;
    if (bytes > 0) {
        const vm::Memslot* s = slot_at(vm, h.start);
        if (!s || bytes > (s->base_gfn + s->npages) * vm::kPageSize - h.start) {
            const std::string what = "expected the SMI handler's working set [start, start + read + write) inside one memslot";
            if (o && o->has("start")) (*o)["start"].fail(what);
            throw (o ? *o : ev).error(what + " (start defaults to SMBASE)");
        }
    }
    return h;
}

workload::HostOp parse_host_op(const Node& n, const vm::VmConfig& vm, const vm::ModelInfo& info,
                               std::initializer_list<std::string_view> extra_keys) {
    std::vector<std::string_view> keys = {"op",    "slots", "start", "size",    "reason",  "initially_set",
                                          "chunk", "vcpus", "eptp",  "eptps",   "entries", "invept",
                                          "smi_handler", "level", "via"};
    keys.insert(keys.end(), extra_keys.begin(), extra_keys.end());
    n.check_keys(keys);
    workload::HostOp h;
    h.op = parse_op(n["op"]);
    require_op(n["op"], info, h.op);
    if (h.op == vm::Operation::VmDestroy) {
        for (const std::string_view k : {"slots", "start", "size", "reason", "initially_set", "chunk", "vcpus", "eptp",
                                         "eptps", "entries", "invept", "smi_handler", "level"})
            if (n.has(k)) n[k].fail("expected no arguments for vm_destroy (it unmaps the whole VM)");
    }
    h.slots = slots_of(n, vm);
    const bool aging = h.op == vm::Operation::ClearYoung || h.op == vm::Operation::TestYoung;
    if (h.op == vm::Operation::ZapGfnRange || h.op == vm::Operation::Invalidate || aging) {
        const std::uint64_t start = n.opt_size("start", vm.memslots.front().base_gfn * vm::kPageSize);
        const std::uint64_t size = n.opt_size("size", vm.memslots.front().npages * vm::kPageSize, vm::kPageSize);
        if (start % vm::kPageSize) n["start"].fail("expected a 4K-aligned guest physical address");
        h.start = start / vm::kPageSize;
        h.end = h.start + size / vm::kPageSize;
        h.reason = n.opt_enum_mapped<vm::ZapReason>(
            "reason", vm::ZapReason::Mtrr,
            {{"mtrr", vm::ZapReason::Mtrr}, {"cr0_cd", vm::ZapReason::Cr0Cd}, {"other", vm::ZapReason::Other}});
    }
    const bool nested = h.op == vm::Operation::NestedStart || h.op == vm::Operation::NestedStop ||
                        h.op == vm::Operation::NestedEptpSwitch || h.op == vm::Operation::NestedEptWrite;
    const bool per_vcpu = h.op == vm::Operation::SmmEnter || h.op == vm::Operation::SmmExit || nested;
    if (aging) {
        h.age_via = n.opt_enum_mapped<vm::AgeCaller>(
            "via", vm::AgeCaller::PageIdle, {{"page_idle", vm::AgeCaller::PageIdle}, {"lru_gen", vm::AgeCaller::LruGen}});
        // With vcpus, each named vCPU's thread ages its share of the range (page_idle marking).
        if (n.has("vcpus")) {
            h.vcpus = vcpus_of(n, vm, h.op);
            if (h.end - h.start < h.vcpus.size()) n["vcpus"].fail("expected at most one vCPU per page of the range");
        }
    } else if (n.has("via")) {
        n["via"].fail("expected via only for clear_young and test_young");
    }
    if (aging) {
    } else if (per_vcpu) {
        h.vcpus = vcpus_of(n, vm, h.op);
    } else if (n.has("vcpus")) {
        n["vcpus"].fail(std::string("expected no vcpus for ") + vm::to_string(h.op) + " (it runs on a host thread)");
    }
    auto eptp_at = [](const Node& e, std::uint64_t bytes) {
        if (bytes % vm::kPageSize) e.fail("expected a 4K-aligned guest physical address");
        if (bytes >> vm::kMaxPhysAddrBits)
            e.fail("expected a guest physical address below 2^52 (4P, MAXPHYADDR), the EPT root's page");
        return static_cast<vm::Gfn>(bytes / vm::kPageSize);
    };
    if (nested && h.op != vm::Operation::NestedEptpSwitch) {
        h.eptp = eptp_at(n.has("eptp") ? n["eptp"] : n, n.opt_size("eptp", 0x1000));
    } else if (n.has("eptp")) {
        n["eptp"].fail(h.op == vm::Operation::NestedEptpSwitch
                           ? "expected \"eptps\" (the EPTPs to switch among), not \"eptp\", for nested_eptp_switch"
                           : "expected eptp only for nested_start, nested_stop and nested_ept_write");
    }
    if (h.op == vm::Operation::NestedEptpSwitch) {
        const Node list = n.array("eptps");
        if (list.size() < 2) list.fail("expected at least two EPTPs to switch among");
        for (const auto& e : list.elements()) {
            const vm::Gfn g = eptp_at(e, e.as_size());
            if (std::find(h.eptps.begin(), h.eptps.end(), g) != h.eptps.end()) e.fail("expected each EPTP once");
            h.eptps.push_back(g);
        }
    } else if (n.has("eptps")) {
        n["eptps"].fail("expected eptps only for nested_eptp_switch");
    }
    if (h.op == vm::Operation::NestedEptWrite) {
        // The L2 guest frames whose EPT12 entries L1 rewrites: L1's EPT maps L1 memory, so the
        // range lies inside one memslot.
        const vm::Memslot& first = vm.memslots.front();
        const std::uint64_t start = n.opt_size("start", first.base_gfn * vm::kPageSize);
        if (start % vm::kPageSize) n["start"].fail("expected a 4K-aligned guest physical address");
        const vm::Memslot* slot = slot_at(vm, start);
        if (!slot) (n.has("start") ? n["start"] : n).fail("expected an L2 guest physical address inside a memslot");
        const std::uint64_t size =
            n.opt_size("size", (slot->base_gfn + slot->npages) * vm::kPageSize - start, vm::kPageSize);
        if (size % vm::kPageSize || start / vm::kPageSize + size / vm::kPageSize > slot->base_gfn + slot->npages)
            (n.has("size") ? n["size"] : n)
                .fail("expected a multiple of 4K ending inside memslot " + std::to_string(slot->id));
        h.ept.eptp = h.eptp;
        h.ept.start = start / vm::kPageSize;
        h.ept.end = h.ept.start + size / vm::kPageSize;
        const std::uint64_t pages = h.ept.end - h.ept.start;
        h.ept.entries = static_cast<std::uint32_t>(n.get_uint("entries", 1, std::min<std::uint64_t>(pages, 1u << 20)));
        h.ept.invept = n.opt_bool("invept", true);
        // 1: the leaf entries; 2 or 3: the PD or PDPT entries above them (table entries L1
        // rewrites in place where it maps below that level).
        h.ept.level = static_cast<std::uint8_t>(n.opt_uint("level", 1, 1, 3));
    } else {
        for (const char* k : {"entries", "invept", "level"})
            if (n.has(k)) n[k].fail(std::string("expected ") + k + " only for nested_ept_write");
    }
    if (h.op == vm::Operation::SmmEnter) {
        h.smi_handler = parse_smi_handler(n, vm);
    } else if (n.has("smi_handler")) {
        n["smi_handler"].fail("expected smi_handler only for smm_enter");
    }
    h.dirty.manual_protect_initially_set = n.opt_bool("initially_set", false);
    h.clear_chunk_pages = n.opt_uint("chunk", 0);
    return h;
}

// {"pattern": "explicit", "start_delay": TIME, "accesses": [[ADDRESS, ACCESS, GAP], ...]}: the
// accesses in order (a recorded trace's faults), each followed by GAP of guest time.
// A simulated time far beyond any run, that keeps the arithmetic exact: the latest a storm's
// last run may start, and the most guest time an explicit stream may hold.
constexpr Time kMaxStormStart = Time::s(1'000'000);

workload::AccessStream parse_explicit_stream(const Node& s, const vm::VmConfig& vm) {
    s.check_keys({"pattern", "start_delay", "accesses"});
    workload::AccessStream a;
    a.pattern = workload::AccessStream::Pattern::Explicit;
    a.start_delay = s.opt_time("start_delay", Time::zero(), Time::zero(), kMaxStormStart);
    const Node list = s.array("accesses");
    if (list.size() > kMaxCount) list.fail_expected("at most " + std::to_string(kMaxCount) + " accesses");
    auto out = std::make_shared<std::vector<workload::ExplicitAccess>>();
    out->reserve(list.size());
    Time total = a.start_delay;
    const vm::Memslot* last = nullptr;  // consecutive accesses mostly hit the same memslot
    for (const auto& e : list.elements()) {
        if (!e.json().is_array() || e.size() != 3)
            e.fail_expected("[address, access, gap]: a guest-physical address, \"read\", \"write\" or \"exec\", "
                            "and the guest time after the access");
        const auto parts = e.elements();
        const std::uint64_t addr = parts[0].as_size();
        const vm::Gfn gfn = addr / vm::kPageSize;
        if (!last || !last->contains(gfn)) {
            last = nullptr;
            for (const auto& m : vm.memslots)
                if (m.contains(gfn)) last = &m;
            if (!last) parts[0].fail("expected an address inside a memslot, got " + std::to_string(addr));
        }
        workload::ExplicitAccess x;
        x.gfn = gfn;
        x.access = parts[1].as_enum_mapped<vm::Access>(
            {{"read", vm::Access::Read}, {"write", vm::Access::Write}, {"exec", vm::Access::Exec}});
        x.gap = parts[2].as_time(Time::zero(), kMaxStormStart);
        total += x.gap;
        if (total > kMaxStormStart) parts[2].fail("expected the stream's guest time to stay within 1000000 s");
        out->push_back(x);
    }
    a.npages = out->size();
    a.accesses = std::move(out);
    return a;
}

workload::AccessStream parse_stream(const Node& s, const vm::VmConfig& vm, std::uint32_t vcpu, Time guest_time) {
    if (s.has("pattern") && s["pattern"].json() == "explicit") return parse_explicit_stream(s, vm);
    s.check_keys({"pattern", "slot", "start", "size", "stride", "count", "access", "mix", "write_every",
                  "partitioned", "guest_time", "touch_back"});
    workload::AccessStream a;
    a.pattern = s.opt_enum_mapped<workload::AccessStream::Pattern>(
        "pattern", workload::AccessStream::Pattern::Sequential,
        {{"sequential", workload::AccessStream::Pattern::Sequential},
         {"strided", workload::AccessStream::Pattern::Sequential},
         {"random", workload::AccessStream::Pattern::Random},
         // each page written, then executed (nx_huge_pages_perf_test's guest): 2 accesses a page
         {"write_exec", workload::AccessStream::Pattern::WriteExec},
         // [address, access, gap] listed (parse_explicit_stream)
         {"explicit", workload::AccessStream::Pattern::Explicit}});
    const vm::Memslot& slot = slot_by_id(s.has("slot") ? s["slot"] : s, vm,
                                         s.has("slot") ? s["slot"].as_uint() : vm.memslots.front().id);
    std::uint64_t start = slot.base_gfn, npages = slot.npages;
    if (s.has("start")) {
        const std::uint64_t b = s.get_size("start");
        if (b % vm::kPageSize || !slot.contains(b / vm::kPageSize)) s["start"].fail("expected a 4K-aligned address inside the memslot");
        start = b / vm::kPageSize;
        npages = slot.base_gfn + slot.npages - start;
    }
    if (s.has("size")) {
        const std::uint64_t pages = s.get_size("size", vm::kPageSize) / vm::kPageSize;
        if (start + pages > slot.base_gfn + slot.npages) s["size"].fail("expected the range to fit in the memslot");
        npages = pages;
    }
    if (s.opt_bool("partitioned", true) && vm.vcpus > 1) {
        const std::uint64_t part = npages / vm.vcpus;
        if (part == 0) s.fail("the region is smaller than one page per vCPU");
        start += part * vcpu;
        npages = part;
    }
    a.base = start;
    a.npages = npages;
    a.stride = std::max<std::uint64_t>(1, s.opt_size("stride", vm::kPageSize, vm::kPageSize) / vm::kPageSize);
    a.count = s.opt_uint("count", 0, 0, kMaxCount);
    a.access = s.opt_enum_mapped<vm::Access>("access", vm::Access::Read,
                                             {{"read", vm::Access::Read}, {"write", vm::Access::Write}, {"exec", vm::Access::Exec}});
    a.write_every = s.opt_uint("write_every", 0);
    if (auto mix = s.opt_object("mix")) {
        mix->check_keys({"read", "write", "exec"});
        const double r = mix->opt_number("read", 0, 0, 1), w = mix->opt_number("write", 0, 0, 1),
                     x = mix->opt_number("exec", 0, 0, 1);
        if (r + w + x < 0.999999 || r + w + x > 1.000001) mix->fail("expected read + write + exec = 1");
        a.mix = true;
        a.write_fraction = w;
        a.exec_fraction = x;
    }
    a.touch_back = s.opt_uint("touch_back", 0, 0, 4096);
    if (a.touch_back && a.pattern != workload::AccessStream::Pattern::Sequential)
        s["touch_back"].fail("expected touch_back only with a sequential (or strided) pattern");
    if (a.touch_back && a.count > kMaxCount / (a.touch_back + 1))
        s["touch_back"].fail("expected count x (touch_back + 1) at most " + std::to_string(kMaxCount));
    a.guest_time = s.opt_time("guest_time", guest_time, Time::ps(1), Time::s(1));
    if (a.count > 0 && a.guest_time.ps() > Time::s(1'000'000).ps() / static_cast<std::int64_t>(a.count))
        throw s.error_at("count", "expected count x guest_time (" + format_time(a.guest_time) +
                                      ") to stay within 1000000 s, as a storm's runs do");
    return a;
}

// The expanded VM's memory against those limits; `at` is /vm (memslots listed) or the preset's
// args (memslots made from -b, -v, -x).
void check_guest_memory(const Node& at, const vm::VmConfig& vm, bool preset) {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < vm.memslots.size(); ++i) {
        const vm::Memslot& m = vm.memslots[i];
        auto where = [&](const char* key) { return preset ? at : at["memslots"][i][key]; };
        if (m.npages > kMaxMemslotPages)
            where("size").fail("expected a memslot of at most " + std::to_string(kMaxMemslotPages) +
                               " pages (KVM_MEM_MAX_NR_PAGES: 8T less 4K), got " + format_size(m.npages * vm::kPageSize));
        if (m.base_gfn + m.npages > (std::uint64_t{1} << (vm::kMaxPhysAddrBits - 12)))
            where("base").fail("expected the memslot to end below 2^52 (4P, MAXPHYADDR)");
        total += m.npages * vm::kPageSize;
        if (total > kMaxGuestBytes)
            where("size").fail("expected at most " + format_size(kMaxGuestBytes) +
                               " of guest memory in all memslots, got " + format_size(total) +
                               (preset ? "" : " up to this one"));
    }
}

vm::VmConfig parse_vm(const Node& v) {
    v.check_keys({"vcpus", "memslots"});
    vm::VmConfig cfg;
    cfg.vcpus = static_cast<std::uint32_t>(v.get_uint("vcpus", 1, 4096));
    const Node slots = v.array("memslots");
    if (slots.size() == 0) slots.fail("expected at least one memslot");
    std::set<std::uint64_t> ids;
    std::uint32_t next_id = 1;
    std::uint64_t next_base = 4ULL << 30;
    for (const auto& s : slots.elements()) {
        s.check_keys({"id", "base", "size", "backing"});
        vm::Memslot m;
        m.id = static_cast<std::uint32_t>(s.opt_uint("id", next_id, 0, 32767));
        if (!ids.insert(m.id).second) s["id"].fail("expected a unique memslot id, " + std::to_string(m.id) + " is used twice");
        m.backing = vm::Backing::Anonymous;
        if (s.has("backing")) {
            std::vector<std::string> names;
            for (const auto& [k, b] : backing_names()) names.emplace_back(k);
            const std::string name = s["backing"].as_enum(names);
            for (const auto& [k, b] : backing_names())
                if (k == name) m.backing = b;
        }
        const std::uint64_t align = vm::pages_per(vm::host_level(m.backing)) * vm::kPageSize;
        const std::uint64_t base = s.opt_size("base", (next_base + align - 1) / align * align);
        const std::uint64_t size = s.get_size("size", vm::kPageSize, kMaxMemslotBytes);
        if (base % align) s["base"].fail("expected an address aligned to the backing's page size (" + format_size(align) + ")");
        if (size % align) s["size"].fail("expected a multiple of the backing's page size (" + format_size(align) + ")");
        m.base_gfn = base / vm::kPageSize;
        m.npages = size / vm::kPageSize;
        for (const auto& o : cfg.memslots)
            if (m.base_gfn < o.base_gfn + o.npages && o.base_gfn < m.base_gfn + m.npages)
                s.fail("memslot overlaps memslot " + std::to_string(o.id));
        cfg.memslots.push_back(m);
        next_id = m.id + 1;
        next_base = base + size;
    }
    return cfg;
}

// A storm's "count" and "interval" (count > 1 needs an interval). The last run starts at
// first + interval * (count - 1), which must lie within kMaxStormStart.

workload::Repeat parse_repeat(const Node& n, Time first, const char* first_name) {
    workload::Repeat r;
    r.count = static_cast<std::uint32_t>(n.opt_uint("count", 1, 1, kMaxCount));
    r.interval = n.opt_time("interval", Time::zero());
    if (r.count > 1 && r.interval == Time::zero()) throw n.error_at("interval", "expected an interval when count > 1");
    if (first > kMaxStormStart ||
        (r.count > 1 && r.interval.ps() > (kMaxStormStart - first).ps() / static_cast<std::int64_t>(r.count - 1)))
        throw n.error_at(r.count > 1 ? "interval" : "at",
                         std::string("expected the last run, at ") + first_name +
                             " + interval * (count - 1), to start within 1000000 s");
    return r;
}

void parse_phases(const Node& wl, Scenario& sc, const vm::ModelInfo& info, Time guest_time) {
    const Node phases = wl.array("phases");
    if (phases.size() == 0) phases.fail_expected("at least one phase");
    const auto els = phases.elements();
    std::vector<DagNode> nodes;
    std::set<std::string> names;
    for (const auto& p : els) {
        p.check_keys({"name", "after", "stream", "streams", "host", "report"});
        DagNode d;
        d.name = p.get_string("name");
        d.pointer = p.pointer();
        if (!names.insert(d.name).second) p["name"].fail("expected a unique phase name, \"" + d.name + "\" is used twice");
        if (auto a = p.opt_array("after"))
            for (const auto& e : a->elements()) {
                d.after.push_back(e.as_string());
                d.after_pointers.push_back(e.pointer());
            }
        nodes.push_back(d);
    }
    for (std::size_t i : topological_order(nodes, phases.file())) {
        const Node& p = els[i];
        workload::Step step;
        step.name = nodes[i].name;
        step.selftest_metric = p.opt_bool("report", true);
        const bool has_host = p.has("host");
        if (has_host) {
            step.kind = workload::Step::Kind::Host;
            const Node h = p["host"];
            step.host = parse_host_op(h, sc.vm, info, {"count", "interval", "until_vcpus_done"});
            step.repeat = parse_repeat(h, Time::zero(), "the phase's start");
            step.repeat.until_vcpus_done = h.opt_bool("until_vcpus_done", false);
            if (step.repeat.until_vcpus_done && (h.has("count") || h.has("interval")))
                h["until_vcpus_done"].fail("expected until_vcpus_done without count or interval");
            if (step.repeat.until_vcpus_done && !p.has("stream") && !p.has("streams"))
                h["until_vcpus_done"].fail("expected until_vcpus_done only in a phase with vCPU streams");
        } else {
            step.kind = workload::Step::Kind::Stage;
        }
        if (p.has("stream") && p.has("streams")) p.fail("expected \"stream\" (every vCPU) or \"streams\" (one per vCPU), not both");
        if (auto s = p.find("stream")) {
            for (std::uint32_t v = 0; v < sc.vm.vcpus; ++v) step.streams.push_back(parse_stream(*s, sc.vm, v, guest_time));
        } else if (auto ss = p.opt_array("streams")) {
            const auto list = ss->elements();
            if (list.size() != sc.vm.vcpus)
                ss->fail("expected one stream per vCPU (" + std::to_string(sc.vm.vcpus) + "), got " + std::to_string(list.size()));
            for (std::uint32_t v = 0; v < sc.vm.vcpus; ++v) step.streams.push_back(parse_stream(list[v], sc.vm, v, guest_time));
        } else if (!has_host) {
            p.fail("expected \"stream\", \"streams\" or \"host\"");
        }
        sc.workload.steps.push_back(std::move(step));
    }
}

void parse_events(const Node& evs, Scenario& sc, const vm::ModelInfo& info) {
    std::size_t i = 0;
    for (const auto& e : evs.elements()) {
        workload::TimedEvent t;
        t.name = e.opt_string("name", "event" + std::to_string(i++));
        t.at = e.get_time("at");
        t.repeat = parse_repeat(e, t.at, "at");
        t.host = parse_host_op(e, sc.vm, info, {"name", "at", "count", "interval"});
        sc.workload.events.push_back(std::move(t));
    }
}

// ---- published figures (kvmsim check-published) ----------------------------------------------

PublishedValue parse_published_value(const Node& v, const Scenario& sc) {
    v.check_keys({"variant", "value", "samples"});
    PublishedValue out;
    if (sc.variants.empty()) {
        if (v.has("variant")) v["variant"].fail("expected no \"variant\": the scenario has no \"variants\"");
    } else {
        const Node n = v["variant"];
        out.variant = n.as_string();
        if (std::find(sc.variants.begin(), sc.variants.end(), out.variant) == sc.variants.end())
            n.fail("expected one of the scenario's variants, got \"" + out.variant + "\"" +
                   did_you_mean_suffix(out.variant, sc.variants));
    }
    out.value = v["value"].as_number(0);
    if (!(out.value > 0)) v["value"].fail_expected("a positive number (a published figure)");
    if (auto s = v.opt_array("samples")) {
        if (s->size() == 0) s->fail_expected("at least one sample");
        double sum = 0;
        for (const auto& e : s->elements()) {
            const double x = e.as_number(0);
            if (!(x > 0)) e.fail_expected("a positive number (one published run)");
            out.samples.push_back(x);
            sum += x;
        }
        const double mean = sum / static_cast<double>(out.samples.size());
        if (std::abs(mean - out.value) > 1e-6 * out.value)
            v["value"].fail("expected the mean of \"samples\" (" + describe_json(json(mean)) + "), got " +
                            describe_json(v["value"].json()));
    }
    return out;
}

// Checked against the variant being loaded: a row's phase must exist in each variant it names.
Published parse_published(const Node& p, const Scenario& sc) {
    p.check_keys({"source", "host", "note", "skip", "rows"});
    Published out;
    const Node src = p.object("source");
    src.check_keys({"title", "author", "date", "url"});
    out.title = src.get_string("title");
    out.author = src.get_string("author");
    out.date = src.get_string("date");
    {
        const std::string& d = out.date;
        bool ok = d.size() == 10 && d[4] == '-' && d[7] == '-';
        for (std::size_t i = 0; ok && i < d.size(); ++i)
            if (i != 4 && i != 7) ok = d[i] >= '0' && d[i] <= '9';
        if (!ok) src["date"].fail_expected("a date YYYY-MM-DD");
    }
    out.url = src.get_string("url");
    if (out.url.rfind("https://lore.kernel.org/", 0) != 0)
        src["url"].fail_expected("a lore.kernel.org address (https://lore.kernel.org/...)");
    out.host = p.get_string("host");
    out.note = p.opt_string("note", "");
    if (p.has("skip")) {
        out.skip = p.get_string("skip");
        if (out.skip.empty()) p["skip"].fail_expected("the reason the scenario is not run by default");
    }
    const Node rows = p.array("rows");
    if (rows.size() == 0) rows.fail_expected("at least one row");
    std::vector<std::string> step_names;
    for (const auto& s : sc.workload.steps) step_names.push_back(s.name);
    for (const auto& r : rows.elements()) {
        r.check_keys({"phase", "aggregate", "stat", "unit", "before", "after", "value", "calibration", "note",
                      "not_expressible"});
        PublishedRow row;
        row.pointer = r.pointer();
        if (r.has("phase") == r.has("stat")) r.fail("expected exactly one of \"phase\" and \"stat\"");
        if (r.has("phase")) {
            row.phase = r.get_string("phase");
            const bool wild = row.phase.find('*') != std::string::npos;
            if (r.has("aggregate")) {
                if (!wild) r["aggregate"].fail("expected no \"aggregate\": phase \"" + row.phase + "\" names one phase (no \"*\")");
                row.aggregate = r.get_enum("aggregate", {"mean", "sum"});
            } else if (wild) {
                row.aggregate = "mean";
            }
            row.unit = r.get_enum("unit", {"s", "ms", "us", "ns"});
        } else {
            if (r.has("aggregate")) r["aggregate"].fail("expected no \"aggregate\" on a stat row");
            row.stat = r.get_string("stat");
            if (row.stat.empty()) r["stat"].fail_expected("a stat name such as \"pf_fixed\"");
            row.unit = r.get_enum("unit", {"count"});
        }
        const bool pair = r.has("before") || r.has("after");
        if (pair && r.has("value")) r.fail("expected either \"before\" and \"after\" or \"value\", not both");
        if (pair) {
            row.before = parse_published_value(r.object("before"), sc);
            row.after = parse_published_value(r.object("after"), sc);
            if (!sc.variants.empty() && row.before->variant == row.after->variant)
                r["after"]["variant"].fail("expected a variant other than the \"before\" one (\"" + row.before->variant + "\")");
        } else if (r.has("value")) {
            row.value = parse_published_value(r.object("value"), sc);
        } else {
            r.fail("expected \"before\" and \"after\" (a published change) or \"value\" (one run)");
        }
        row.calibration = r.get_bool("calibration");
        row.note = r.opt_string("note", "");
        if (r.has("not_expressible")) {
            row.not_expressible = r.get_string("not_expressible");
            if (row.not_expressible.empty()) r["not_expressible"].fail_expected("why the model cannot reproduce the row");
        }
        if (!row.phase.empty() && row.not_expressible.empty()) {
            bool names_this = sc.variants.empty();
            for (const auto* v : {&row.before, &row.after, &row.value})
                if (*v && (*v)->variant == sc.variant) names_this = true;
            if (names_this && std::none_of(step_names.begin(), step_names.end(),
                                           [&](const std::string& n) { return phase_matches(row.phase, n); }))
                r["phase"].fail("expected a phase of the workload" +
                                std::string(sc.variant.empty() ? "" : " (variant \"" + sc.variant + "\")") + ", got \"" +
                                row.phase + "\"" + did_you_mean_suffix(row.phase, step_names));
        }
        out.rows.push_back(std::move(row));
    }
    return out;
}

// ---- recorded figures (kvmsim import-trace) ---------------------------------------------------

RecordedFigures parse_recorded_figures(const Node& n, bool named) {
    if (named) n.check_keys({"name", "from", "to", "faults", "exits", "events", "latency_ns"});
    else n.check_keys({"faults", "exits", "events", "latency_ns"});
    RecordedFigures f;
    if (named) f.name = n.get_string("name");
    if (auto faults = n.opt_object("faults"))
        for (const auto& [k, v] : faults->members()) f.faults.emplace_back(k, v.as_uint());
    for (const char* k : {"exits", "events"})
        if (auto o = n.opt_object(k))
            for (const auto& [name, v] : o->members()) v.as_uint();
    if (auto l = n.opt_object("latency_ns")) {
        l->check_keys({"count", "p50", "p99", "max", "mean"});
        f.latency_count = l->get_uint("count");
        f.latency_p50_ns = l->opt_number("p50", 0, 0);
        f.latency_p99_ns = l->opt_number("p99", 0, 0);
        f.latency_max_ns = l->opt_number("max", 0, 0);
        if (l->has("mean")) l->get_number("mean", 0);
    }
    return f;
}

// The "recorded" block: what a trace measured. Its phases must be the workload's.
Recorded parse_recorded(const Node& r, const Scenario& sc) {
    r.check_keys({"source", "vcpu_ids", "phases", "whole"});
    Recorded out;
    const Node src = r.object("source");
    src.check_keys({"file", "format", "arch", "lines", "skipped", "note"});
    out.source = src.get_string("file");
    out.format = src.get_enum("format", {"trace-cmd", "perf"});
    if (auto ids = r.opt_array("vcpu_ids")) {
        if (ids->size() != sc.vm.vcpus)
            ids->fail("expected one vCPU id per vCPU (" + std::to_string(sc.vm.vcpus) + "), got " + std::to_string(ids->size()));
        for (const auto& e : ids->elements()) e.as_uint();
    }
    std::vector<std::string> step_names;
    for (const auto& s : sc.workload.steps) step_names.push_back(s.name);
    for (const auto& p : r.array("phases").elements()) {
        RecordedFigures f = parse_recorded_figures(p, true);
        if (std::find(step_names.begin(), step_names.end(), f.name) == step_names.end())
            p["name"].fail("expected a phase of the workload, got \"" + f.name + "\"" + did_you_mean_suffix(f.name, step_names));
        out.phases.push_back(std::move(f));
    }
    out.whole = parse_recorded_figures(r.object("whole"), false);
    return out;
}

Scenario build(const Node& doc, const std::string& path, const std::string& sha, const std::string& variant,
               const std::vector<std::string>& variants, const LoadOptions& opts) {
    doc.check_keys(kTopKeys);
    Scenario sc;
    sc.variant = variant;
    sc.variants = variants;
    sc.file = path;
    sc.sha256 = sha;
    sc.name = doc.get_string("name");
    if (sc.name.empty()) doc["name"].fail_expected("a scenario name (a non-empty string)");
    sc.description = doc.opt_string("description", "");
    sc.seed = doc.opt_uint("seed", 1);
    if (opts.seed) sc.seed = *opts.seed;

    json profile_doc;
    sc.host = load_host(doc.object("host"), path, opts.host_dirs, &profile_doc);

    const Node mmu = doc.object("mmu");
    mmu.check_keys({"model", "knobs"});
    const std::string model = mmu.get_string("model");
    const vm::ModelInfo* info = opts.models ? opts.models->find(model) : nullptr;
    if (!info) {
        std::vector<std::string> names;
        if (opts.models)
            for (const auto* m : opts.models->all()) names.push_back(m->name);
        mmu["model"].fail("unknown MMU model \"" + model + "\"" + did_you_mean_suffix(model, names));
    }
    sc.model = model;
    sc.knobs = load_knobs(mmu, *info, sc.host);
    for (const auto& c : info->costs)
        if (!sc.host.costs.has(c))
            doc["host"]["profile"].fail("host profile " + sc.host.profile + " lacks cost \"" + c + "\", which model " +
                                        model + " needs");
    // A cost the model cannot use: located at the scenario's override if it has one, else at the
    // profile's name.
    auto bad_cost = [&](const std::string& c, const std::string& what) {
        const Node host = doc["host"];
        if (auto costs = host.find("costs"); costs && costs->find(c)) (*costs)[c].fail(what);
        doc["host"]["profile"].fail("host profile " + sc.host.profile + ": " + what + " (the profile's /costs/" + c + ")");
    };
    for (const auto& [c, least] : info->cost_minimums) {
        if (!sc.host.costs.has(c) || sc.host.costs.number(c) >= least) continue;
        bad_cost(c, "expected at least " + number_text(least) + " for cost \"" + c + "\", which model " + model +
                        " divides by");
    }
    for (const auto& [c, most] : info->cost_maximums) {
        if (!sc.host.costs.has(c) || sc.host.costs.number(c) <= most) continue;
        bad_cost(c, "expected at most " + number_text(most) + " for cost \"" + c + "\", which model " + model +
                        " scales by a mapping's size");
    }
    for (const auto& c : info->cost_powers_of_two) {
        if (!sc.host.costs.has(c)) continue;
        const double x = sc.host.costs.number(c);
        if (x >= 1 && x == std::floor(x) && std::has_single_bit(static_cast<std::uint64_t>(x))) continue;
        bad_cost(c, "expected a power of two for cost \"" + c + "\" (model " + model + ")");
    }
    for (const auto& c : info->cost_integers) {
        if (!sc.host.costs.has(c)) continue;
        const double x = sc.host.costs.number(c);
        if (x == std::floor(x)) continue;
        bad_cost(c, "expected a whole number for cost \"" + c + "\" (model " + model + " counts it)");
    }
    for (const auto& [c, of] : info->cost_multiples) {
        if (!sc.host.costs.has(c) || !sc.host.costs.has(of)) continue;
        const double x = sc.host.costs.number(c), y = sc.host.costs.number(of);
        if (y >= 1 && std::fmod(x, y) == 0) continue;
        bad_cost(c, "expected cost \"" + c + "\" (" + number_text(x) + ") to be a multiple of cost \"" + of + "\" (" +
                        number_text(y) + "), model " + model + "'s sets of that many ways");
    }
    for (const auto& f : info->features)
        if (!sc.host.features.count(f))
            doc["host"]["profile"].fail("host profile " + sc.host.profile + " lacks feature \"" + f + "\", which model " +
                                        model + " needs");
    // A feature the scenario sets must be one the model reads: setting another would do nothing.
    if (auto feats = doc["host"].find("features")) {
        for (const auto& [k, v] : feats->members()) {
            if (std::find(info->features.begin(), info->features.end(), k) != info->features.end()) continue;
            std::string reads;
            for (const auto& f : info->features) reads += (reads.empty() ? "" : ", ") + f;
            v.fail("feature \"" + k + "\" has no effect on model " + model + ", which reads " +
                   (reads.empty() ? std::string("no host feature") : reads));
        }
    }
    const Time guest_time = sc.host.costs.has("guest_access") ? sc.host.costs.time("guest_access") : Time::ns(10);

    const Node wl = doc.object("workload");
    wl.check_keys({"preset", "args", "flags", "phases"});
    if (auto preset = wl.find("preset")) {
        if (wl.has("phases")) wl.fail("expected either \"preset\" or \"phases\", not both");
        if (doc.has("vm"))
            doc["vm"].fail("expected no \"vm\": the preset's flags define the VM (set a flag by its path, "
                           "e.g. /workload/flags/v for -v)");
        std::vector<std::string> names;
        for (const auto& p : workload::presets()) names.push_back(p.name);
        const std::string name = preset->as_enum(names);
        const auto& info_of = *std::find_if(workload::presets().begin(), workload::presets().end(),
                                            [&](const workload::PresetInfo& p) { return p.name == name; });
        const PresetArgs pa = preset_args(wl, info_of);
        try {
            workload::Expanded ex = workload::expand_preset(name, pa.args, guest_time);
            sc.vm = std::move(ex.vm);
            sc.workload = std::move(ex.workload);
        } catch (const workload::PresetError& e) {
            const bool in_range = e.arg >= 0 && static_cast<std::size_t>(e.arg) < pa.from.size();
            const Node at = in_range && pa.from[static_cast<std::size_t>(e.arg)] ? *pa.from[static_cast<std::size_t>(e.arg)]
                            : wl.has("args")                                      ? wl["args"]
                            : wl.has("flags")                                     ? wl["flags"]
                                                                                  : *preset;
            at.fail(e.what());
        }
        for (const auto& step : sc.workload.steps)
            if (step.kind == workload::Step::Kind::Host) require_op(*preset, *info, step.host.op);
    } else {
        if (wl.has("flags")) wl["flags"].fail("expected \"flags\" only with a \"preset\" (they are the selftest's flags)");
        sc.vm = parse_vm(doc.object("vm"));
        parse_phases(wl, sc, *info, guest_time);
    }
    // No host scheduler: vCPU threads sharing a CPU would each run at full speed, as if the
    // host had a CPU for each, so an overcommitted VM is refused rather than simulated wrongly.
    if (sc.vm.vcpus > sc.host.cpus) {
        const Node at = doc.has("vm") ? doc["vm"]["vcpus"] : wl.has("args") ? wl["args"] : wl;
        at.fail("expected at most one vCPU per host CPU (" + std::to_string(sc.vm.vcpus) + " vCPUs on " +
                std::to_string(sc.host.cpus) +
                " host CPUs): kvmsim does not model host CPU time-sharing; give the host more CPUs "
                "(\"host\": {\"cpus\": N}) or the VM fewer vCPUs");
    }
    check_guest_memory(doc.has("vm") ? doc["vm"] : wl.has("args") ? wl["args"] : wl, sc.vm, !doc.has("vm"));
    if (auto evs = doc.opt_array("events")) parse_events(*evs, sc, *info);
    if (auto p = doc.opt_object("published")) sc.published = parse_published(*p, sc);
    if (auto r = doc.opt_object("recorded")) sc.recorded = parse_recorded(*r, sc);

    json resolved = doc.json();  // the variant's patch and the overrides applied; no "variants"
    resolved.erase("seed");
    json with_seed = resolved;
    with_seed["seed"] = sc.seed;
    sc.resolved_json = with_seed.dump();
    sc.host_profile_json = profile_doc.dump();
    sc.resolved_sha256 = sha256_hex(canonical_json(json{{"scenario", std::move(resolved)},
                                                        {"host_profile", std::move(profile_doc)}}));
    return sc;
}

// Sets one override (LoadOptions::overrides) in the document the variant produced.
void apply_override(json& doc, const std::string& pointer, const json& value, const std::string& label) {
    auto fail = [&](const std::string& message) { throw ScenarioError(label, pointer, "cannot override: " + message); };
    if (pointer.empty() || pointer[0] != '/') fail("expected a JSON pointer such as \"/vm/vcpus\"");
    std::vector<std::string> tokens;
    for (std::size_t pos = 1;;) {
        const std::size_t end = std::min(pointer.find('/', pos), pointer.size());
        std::string t;
        for (std::size_t i = pos; i < end; ++i) {
            if (pointer[i] != '~') t += pointer[i];
            else if (i + 1 < end && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) t += pointer[++i] == '0' ? '~' : '/';
            else fail("\"~\" must be followed by 0 or 1 (RFC 6901)");
        }
        tokens.push_back(std::move(t));
        if (end == pointer.size()) break;
        pos = end + 1;
    }
    if (tokens.front() == "variants") fail("overrides apply after the variant and cannot change \"variants\"");
    json* cur = &doc;
    std::string at;  // the pointer of *cur
    for (std::size_t k = 0; k < tokens.size(); ++k) {
        const std::string& t = tokens[k];
        const bool last = k + 1 == tokens.size();
        if (cur->is_object()) {
            if (last) {
                if (value.is_null()) cur->erase(t);
                else (*cur)[t] = value;
                return;
            }
            if (!cur->contains(t) || (*cur)[t].is_null()) (*cur)[t] = json::object();
            cur = &(*cur)[t];
        } else if (cur->is_array()) {
            const bool digits = !t.empty() && t.size() < 10 && t.find_first_not_of("0123456789") == std::string::npos &&
                                (t == "0" || t[0] != '0');
            if (!digits || std::stoul(t) >= cur->size())
                fail((at.empty() ? std::string("(root)") : at) + " is an array of " + std::to_string(cur->size()) +
                     " elements; expected an index from 0 to " + std::to_string(cur->size() == 0 ? 0 : cur->size() - 1) +
                     ", got " + quote(t));
            if (last) {
                if (value.is_null()) fail("null cannot delete an array element");
                (*cur)[std::stoul(t)] = value;
                return;
            }
            cur = &(*cur)[std::stoul(t)];
        } else {
            fail((at.empty() ? std::string("(root)") : at) + " is " + std::string(json_type_name(*cur)) + " " +
                 describe_json(*cur) + ", not an object or an array");
        }
        at = json_pointer_append(at, t);
    }
}

}  // namespace

const std::vector<std::pair<std::string_view, vm::Operation>>& operation_names() { return kOpsTable; }

const std::vector<std::pair<std::string_view, vm::Backing>>& backing_names() {
    static const std::vector<std::pair<std::string_view, vm::Backing>> list = {
        {"anonymous", vm::Backing::Anonymous},
        {"anonymous_thp", vm::Backing::AnonymousThp},
        {"anonymous_hugetlb_2mb", vm::Backing::Hugetlb2M},
        {"anonymous_hugetlb_1gb", vm::Backing::Hugetlb1G}};
    return list;
}

bool is_profile_name(std::string_view name) {
    if (name.empty() || name.size() > 255 || name[0] == '.') return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
}

Scenario load_scenario(const std::string& path, const LoadOptions& opts) {
    return load_scenario_text(read_file(path), path, opts);
}

Scenario load_scenario_text(const std::string& text, const std::string& path, const LoadOptions& opts) {
    json doc = parse_json_text(text, path);
    const std::string sha = sha256_hex(text);
    Node root(doc, path);
    if (!doc.is_object()) root.fail_expected("a scenario object");

    std::vector<std::string> variants;
    json base = doc;
    base.erase("variants");
    json patched = base;
    std::string chosen;
    if (auto vs = root.opt_array("variants")) {
        const auto els = vs->elements();
        if (els.empty()) vs->fail("expected at least one variant (or no \"variants\")");
        std::optional<Node> selected;
        for (const auto& v : els) {
            v.check_keys({"name", "description", "patch"});
            const std::string n = v.get_string("name");
            if (std::find(variants.begin(), variants.end(), n) != variants.end())
                v["name"].fail("expected a unique variant name, \"" + n + "\" is used twice");
            variants.push_back(n);
            if (v.has("patch") && !v["patch"].is_object()) v["patch"].fail_expected("an object (an RFC 7386 merge patch)");
            if ((opts.variant && *opts.variant == n) || (!opts.variant && !selected)) selected = v;
        }
        if (!selected)
            vs->fail("no variant \"" + *opts.variant + "\"" + did_you_mean_suffix(*opts.variant, variants));
        chosen = selected->get_string("name");
        if (auto p = selected->find("patch")) {
            if (p->json().contains("variants")) p->fail("a variant cannot patch \"variants\"");
            if (p->json().contains("published"))
                (*p)["published"].fail("a variant cannot patch \"published\" (the rows name the variants)");
            apply_merge_patch(patched, p->json());
        }
    } else if (opts.variant) {
        root.fail("no variant \"" + *opts.variant + "\": the scenario has no \"variants\"");
    }
    // Errors in a patched document name the variant: its pointers refer to the merged document.
    const std::string label = chosen.empty() || chosen == (variants.empty() ? "" : variants.front())
                                  ? path
                                  : path + " (variant \"" + chosen + "\")";
    for (const auto& [pointer, value] : opts.overrides) apply_override(patched, pointer, value, label);
    Node merged(patched, label);
    Scenario sc = build(merged, path, sha, chosen, variants, opts);
    for (const auto& [pointer, value] : opts.overrides) sc.overrides.emplace_back(pointer, value.dump());
    return sc;
}

bool phase_matches(std::string_view pattern, std::string_view name) {
    // Iterative glob with one backtrack point (the last "*"): linear in practice.
    std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
    while (n < name.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = n;
        } else if (p < pattern.size() && pattern[p] == name[n]) {
            ++p;
            ++n;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            n = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

std::vector<std::string> scenario_variants(const std::string& path) {
    const std::string text = read_file(path);
    json doc = parse_json_text(text, path);
    std::vector<std::string> out;
    if (doc.is_object() && doc.contains("variants") && doc["variants"].is_array())
        for (const auto& v : doc["variants"])
            if (v.is_object() && v.contains("name") && v["name"].is_string()) out.push_back(v["name"]);
    return out;
}

std::vector<std::string> host_profiles(const std::vector<std::string>& dirs) {
    std::set<std::string> names;
    for (const auto& d : dirs) {
        std::error_code ec;
        for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec))
            if (it->path().extension() == ".json" && is_profile_name(it->path().stem().string()))
                names.insert(it->path().stem().string());
    }
    return {names.begin(), names.end()};
}

}  // namespace kvmsim::scenario
