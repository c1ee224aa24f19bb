#include "sim/report/cover_report.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <string_view>

#include "sim/report/report.hpp"
#include "sim/scenario/error.hpp"
#include "sim/scenario/json_util.hpp"

namespace kvmsim::report {

namespace {

std::string str_of(const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::string fixed(double v, int digits) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(digits) << v;
    return os.str();
}

// A value for a machine to read back (data attributes): no exponent, integers without decimals.
std::string exact(double v) {
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) return fixed(v, 0);
    return fixed(v, 6);
}

std::string pct(double p) {
    std::ostringstream os;
    os << std::showpos << std::fixed << std::setprecision(2) << p << "%";
    return os.str();
}

}  // namespace

std::string thousands(double v) {
    if (!std::isfinite(v)) return "n/a";
    // Counters are integers; a mean over seeds (or an interval) keeps one decimal when it is
    // not one, below a million.
    const double a = std::fabs(v);
    const double r = a >= 1e6 ? std::round(a) : std::round(a * 10) / 10;
    const bool whole = r == std::floor(r);
    const std::string digits = fixed(std::floor(r), 0);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    if (!whole) out += "." + std::to_string(static_cast<int>(std::lround((r - std::floor(r)) * 10)));
    return (v < 0 && r != 0 ? "-" : "") + out;
}

std::string human_ns(double ns) {
    if (!std::isfinite(ns)) return "n/a";
    const double a = std::fabs(ns);
    auto four = [](double x) {
        std::ostringstream os;
        os << std::setprecision(4) << x;
        return os.str();
    };
    if (a >= 1e9) return four(ns / 1e9) + " s";
    if (a >= 1e6) return four(ns / 1e6) + " ms";
    if (a >= 1e3) return four(ns / 1e3) + " us";
    return four(ns) + " ns";
}

namespace {

std::string value_text(double v, const std::string& unit) { return unit == "ns" ? human_ns(v) : thousands(v); }

// ---- grouping --------------------------------------------------------------------------------

}  // namespace

std::vector<ReportGroup> group_results(const std::vector<ReportInput>& inputs, const std::string& baseline) {
    for (const auto& in : inputs) {
        if (!in.doc.is_object() || !in.doc.contains("result_schema"))
            throw ReportError(in.path + ": not a result document (kvmsim run --json writes one; expected a "
                              "\"result_schema\" member)");
        if (!in.doc.contains("phases") || !in.doc["phases"].is_array() || !in.doc.contains("seed") ||
            !in.doc["seed"].is_number_unsigned())
            throw ReportError(in.path + ": expected a result document with \"phases\" and \"seed\" (result.schema.json)");
    }
    // Scenarios in the order first given; within one, variants in the order first given.
    std::vector<std::pair<std::string, std::string>> scenario_order;
    std::map<std::pair<std::string, std::string>, std::vector<const ReportInput*>> by_scenario;
    for (const auto& in : inputs) {
        const auto key = std::make_pair(str_of(in.doc, "scenario"), str_of(in.doc, "scenario_sha256"));
        if (!by_scenario.count(key)) scenario_order.push_back(key);
        by_scenario[key].push_back(&in);
    }
    std::vector<ReportGroup> groups;
    for (const auto& key : scenario_order) {
        const auto& ins = by_scenario[key];
        ReportGroup g;
        g.scenario = key.first;
        g.scenario_sha256 = key.second;
        // A column per (variant, resolved scenario); labelled by the variant, with the resolved
        // hash's first digits when one variant name ran two different scenarios.
        std::vector<std::pair<std::string, std::string>> cols;
        for (const auto* in : ins) {
            const auto c = std::make_pair(str_of(in->doc, "variant"), str_of(in->doc, "resolved_sha256"));
            if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
        }
        std::vector<std::string> labels;
        for (const auto& c : cols) {
            std::size_t same = 0;
            for (const auto& o : cols) same += o.first == c.first;
            std::string label = c.first.empty() ? std::string("(no variant)") : c.first;
            if (same > 1) label += " @" + c.second.substr(0, 8);
            labels.push_back(label);
        }
        if (!baseline.empty()) {
            const auto it = std::find_if(cols.begin(), cols.end(), [&](const auto& c) { return c.first == baseline; });
            if (it == cols.end()) {
                std::string have;
                for (const auto& l : labels) have += (have.empty() ? "" : ", ") + l;
                throw ReportError("--baseline: no variant \"" + baseline + "\" among the results of " + g.scenario +
                                  " (" + have + ")");
            }
            const auto i = static_cast<std::size_t>(it - cols.begin());
            std::rotate(cols.begin(), cols.begin() + static_cast<std::ptrdiff_t>(i), cols.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            std::rotate(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(i), labels.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        }
        // Seeds every column has, ascending; a column's second run at a seed is left out.
        std::vector<std::map<std::uint64_t, const ReportInput*>> at(cols.size());
        for (const auto* in : ins) {
            const auto c = std::make_pair(str_of(in->doc, "variant"), str_of(in->doc, "resolved_sha256"));
            const auto v = static_cast<std::size_t>(std::find(cols.begin(), cols.end(), c) - cols.begin());
            const auto seed = in->doc["seed"].get<std::uint64_t>();
            if (!at[v].emplace(seed, in).second)
                g.dropped.push_back(in->path + ": a second result of " + labels[v] + " at seed " + std::to_string(seed));
        }
        for (const auto& [seed, in] : at[0]) {
            bool all = true;
            for (const auto& m : at) all = all && m.count(seed);
            if (all) g.seeds.push_back(seed);
        }
        for (std::size_t v = 0; v < at.size(); ++v)
            for (const auto& [seed, in] : at[v])
                if (std::find(g.seeds.begin(), g.seeds.end(), seed) == g.seeds.end())
                    g.dropped.push_back(in->path + ": seed " + std::to_string(seed) + " of " + labels[v] +
                                        " has no run of every other variant");
        if (g.seeds.empty())
            throw ReportError(g.scenario + ": no seed has a result of every variant (" + std::to_string(cols.size()) +
                              " variants given); run each variant at the same seeds");
        g.variants = labels;
        std::vector<std::vector<nlohmann::json>> docs(cols.size());
        g.runs.resize(cols.size());
        for (std::size_t v = 0; v < cols.size(); ++v)
            for (auto s : g.seeds) {
                g.runs[v].push_back(at[v][s]);
                docs[v].push_back(at[v][s]->doc);
            }
        g.comparison = compare_documents(g.variants, g.seeds, docs);
        g.comparison.scenario = g.scenario;
        groups.push_back(std::move(g));
    }
    return groups;
}

namespace {

// ---- the document, format-neutral --------------------------------------------------------------

struct Block {
    enum class Kind { Heading, Para, Table, Pre, Svg, List };
    explicit Block(Kind k) : kind(k) {}
    Kind kind;
    int level = 2;
    std::string text, id;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> items;
    std::size_t text_columns = 1;  // leading columns of text (left-aligned); the rest are numbers
};

Block heading(int level, std::string text, std::string id = "") {
    Block b{Block::Kind::Heading};
    b.level = level;
    b.text = std::move(text);
    b.id = std::move(id);
    return b;
}
Block para(std::string text) {
    Block b{Block::Kind::Para};
    b.text = std::move(text);
    return b;
}
Block pre(std::string text) {
    Block b{Block::Kind::Pre};
    b.text = std::move(text);
    return b;
}
Block table(std::string id, std::vector<std::string> header, std::vector<std::vector<std::string>> rows,
            std::size_t text_columns = 1) {
    Block b{Block::Kind::Table};
    b.text_columns = text_columns;
    b.id = std::move(id);
    b.header = std::move(header);
    b.rows = std::move(rows);
    return b;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string md_cell(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '|') out += "\\|";
        else if (c == '\n') out += ' ';
        else out += c;
    }
    return out;
}

const char* kCategoryTitles[][2] = {
    {"stat ", "KVM stats (debugfs)"},
    {"lock ", "Lock contention (wait and hold time, summed)"},
    {"cache ", "Cache misses"},
    {"line ", "Contended cache lines (wait, summed)"},
    {"bandwidth ", "Shared bandwidth (busy time)"},
    {"fault ", "Fault latency (exit to return to the guest, whole run)"},
};

bool moved(const MetricRow& row) {
    for (std::size_t v = 1; v < row.variants.size(); ++v)
        if (row.variants[v].mean != row.variants[0].mean) return true;
    return false;
}

bool any_significant(const MetricRow& row) {
    for (std::size_t v = 1; v < row.variants.size(); ++v)
        if (row.variants[v].significant) return true;
    return false;
}

double largest_change(const MetricRow& row) {
    double m = 0;
    for (std::size_t v = 1; v < row.variants.size(); ++v) {
        const auto& c = row.variants[v];
        m = std::max(m, c.change_pct ? std::fabs(*c.change_pct) : (c.mean != 0 ? 1e300 : 0.0));
    }
    return m;
}

std::string change_cell(const Comparison& c, const std::string& unit, bool with_ci) {
    std::string s = c.change_pct ? pct(*c.change_pct) : std::string(c.mean != 0 ? "new" : "n/a");
    if (with_ci && c.ci95)
        s += " [" + (unit == "ns" ? human_ns(c.ci95->first) : thousands(c.ci95->first)) + ", " +
             (unit == "ns" ? human_ns(c.ci95->second) : thousands(c.ci95->second)) + "]";
    if (c.significant) s += " *";
    return s;
}

std::vector<std::string> metric_header(const ReportGroup& g, bool with_ci) {
    std::vector<std::string> h{"metric"};
    for (const auto& v : g.variants) h.push_back(v + " (mean)");
    for (std::size_t v = 1; v < g.variants.size(); ++v)
        h.push_back(g.variants[v] + " vs " + g.variants[0] + (with_ci ? " (change, 95% CI of the difference)" : " (change)"));
    return h;
}

std::vector<std::string> metric_row(const MetricRow& row, bool with_ci) {
    std::vector<std::string> r{row.name};
    for (const auto& c : row.variants) r.push_back(value_text(c.mean, row.unit));
    for (std::size_t v = 1; v < row.variants.size(); ++v) r.push_back(change_cell(row.variants[v], row.unit, with_ci));
    return r;
}

std::string phase_name(const std::string& metric) { return metric.substr(6); }

// The comparison's phase rows the selftest prints (all phases when it names none).
std::vector<const MetricRow*> selftest_phases(const CompareResult& c) {
    std::vector<const MetricRow*> phases;
    for (const auto& row : c.metrics)
        if (row.name.rfind("phase ", 0) == 0 &&
            (c.selftest_metrics.empty() ||
             std::find(c.selftest_metrics.begin(), c.selftest_metrics.end(), phase_name(row.name)) != c.selftest_metrics.end()))
            phases.push_back(&row);
    return phases;
}

// A --set argument for an override: the dotted path when no key needs the pointer form, the
// value as JSON (a string bare when it reads back as the same string), quoted for a shell when
// needed.
std::string set_argument(const std::string& pointer, const nlohmann::json& value) {
    std::string path;
    bool dotted = pointer.size() > 1 && pointer[0] == '/';
    for (std::size_t i = 1; dotted && i < pointer.size(); ++i) {
        const char c = pointer[i];
        if (c == '.' || c == '~' || (c == '/' && (pointer[i - 1] == '/' || i + 1 == pointer.size()))) dotted = false;
        else path += c == '/' ? '.' : c;
    }
    std::string v = value.dump();
    if (value.is_string()) {
        const std::string s = value.get<std::string>();
        if (nlohmann::json::parse(s, nullptr, false).is_discarded()) v = s;
    }
    std::string arg = (dotted ? path : pointer) + "=" + v;
    const bool plain = std::all_of(arg.begin(), arg.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("._-/=:+,@").find(c) != std::string_view::npos;
    });
    if (plain) return arg;
    std::string q = "'";
    for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// The run's command line, as the result says: its file, variant, seed and overrides (the
// scenario as it ran is in its resolved_scenario).
std::string command_line(const ReportInput& in) {
    std::string cmd = "kvmsim run " + str_of(in.doc, "file");
    if (!str_of(in.doc, "variant").empty()) cmd += " --variant " + str_of(in.doc, "variant");
    cmd += " --seed " + std::to_string(in.doc["seed"].get<std::uint64_t>());
    if (in.doc.contains("overrides") && in.doc["overrides"].is_array())
        for (const auto& o : in.doc["overrides"])
            if (o.is_array() && o.size() == 2 && o[0].is_string()) cmd += " --set " + set_argument(o[0], o[1]);
    if (str_of(in.doc, "status") == "stopped" && in.doc.contains("sim_time_ns") && in.doc["sim_time_ns"].is_number()) {
        std::string t = human_ns(in.doc["sim_time_ns"].get<double>());
        t.erase(std::remove(t.begin(), t.end(), ' '), t.end());
        cmd += " --until " + t;
    }
    cmd += " --json " + in.path;
    return cmd;
}

std::vector<Block> group_blocks(const ReportGroup& g, bool html) {
    std::vector<Block> out;
    const CompareResult& c = g.comparison;
    const bool ci = g.seeds.size() >= 2;
    out.push_back(heading(2, g.scenario, "scenario-" + g.scenario));
    std::string seeds;
    for (auto s : g.seeds) seeds += (seeds.empty() ? "" : ", ") + std::to_string(s);
    std::string desc;
    if (!g.runs.empty() && !g.runs[0].empty()) {
        const auto& d = g.runs[0][0]->doc;
        if (d.contains("resolved_scenario") && d["resolved_scenario"].is_object())
            desc = str_of(d["resolved_scenario"], "description");
    }
    out.push_back(para(std::to_string(g.variants.size()) + " variant" + (g.variants.size() == 1 ? "" : "s") + " x " +
                       std::to_string(g.seeds.size()) + " seed" + (g.seeds.size() == 1 ? "" : "s") + " (" + seeds +
                       "), baseline " + g.variants[0] + (c.preset.empty() ? "" : ", preset " + c.preset) + "." +
                       (desc.empty() ? "" : " " + desc)));

    // Runs and their command lines.
    std::vector<std::vector<std::string>> runs;
    bool stopped = false;
    for (std::size_t v = 0; v < g.runs.size(); ++v)
        for (const auto* in : g.runs[v]) {
            const std::string status = str_of(in->doc, "status");
            stopped = stopped || status != "completed";
            runs.push_back({g.variants[v], std::to_string(in->doc["seed"].get<std::uint64_t>()), status,
                            str_of(in->doc, "fingerprint"), command_line(*in)});
        }
    out.push_back(heading(3, "Runs"));
    out.push_back(table("runs", {"variant", "seed", "status", "fingerprint", "command line"}, runs, 5));
    if (stopped)
        out.push_back(para("Warning: some runs did not complete (\"stopped\" runs ended at --until: their phases still "
                           "running are missing and count as 0)."));
    for (const auto& d : g.dropped) out.push_back(para("Left out: " + d + "."));

    // The selftest's own lines.
    const std::vector<const MetricRow*> phases = selftest_phases(c);
    out.push_back(heading(3, "Stage times (selftest style)"));
    std::ostringstream st;
    for (std::size_t v = 0; v < g.variants.size(); ++v) {
        st << "[" << g.variants[v] << "]" << (ci ? " mean over " + std::to_string(g.seeds.size()) + " seeds" : "") << "\n";
        for (const auto* row : phases)
            st << phase_name(row->name) << ": total execution time: " << fixed(row->variants[v].mean / 1e9, 9) << "s\n";
    }
    if (g.variants.size() >= 2) {
        st << "\n";
        for (const auto* row : phases)
            for (std::size_t v = 1; v < g.variants.size(); ++v) {
                const double before = row->variants[0].mean, after = row->variants[v].mean;
                st << phase_name(row->name) << ": " << g.variants[0] << " " << human_ns(before) << " -> " << g.variants[v]
                   << " " << human_ns(after);
                if (before > 0) {
                    // Worded as compare's selftest line: "faster by" / "slower by".
                    const double p = (after - before) / before * 100;
                    const std::string mag = pct(std::fabs(p)).substr(1);  // without the sign
                    st << ", " << (mag == "0.00%" ? "no change" : (p < 0 ? "faster by " : "slower by ") + mag);
                }
                st << "\n";
            }
    }
    out.push_back(pre(st.str()));

    // The plot.
    out.push_back(heading(3, "Phase times per variant"));
    if (html) {
        Block b{Block::Kind::Svg};
        b.text = phase_svg(g);
        out.push_back(b);
    } else {
        // A text plot for a cover letter: one bar per phase and variant, scaled to the longest.
        double top = 0;
        std::size_t width = 0;
        for (const auto* row : phases)
            for (std::size_t v = 0; v < row->variants.size(); ++v) {
                top = std::max(top, row->variants[v].mean);
                width = std::max(width, phase_name(row->name).size() + g.variants[v].size() + 3);
            }
        std::ostringstream p;
        for (const auto* row : phases)
            for (std::size_t v = 0; v < row->variants.size(); ++v) {
                const std::string label = phase_name(row->name) + " [" + g.variants[v] + "]";
                const auto n = top > 0 ? static_cast<std::size_t>(std::lround(row->variants[v].mean / top * 50)) : 0;
                p << label << std::string(width + 1 - std::min(width, label.size()), ' ') << std::string(n, '#') << " "
                  << human_ns(row->variants[v].mean) << "\n";
            }
        out.push_back(pre(p.str()));
    }


    // Significant changes.
    out.push_back(heading(3, "Significant changes"));
    std::vector<std::vector<std::string>> sig;
    std::size_t more = 0;
    for (const auto& row : c.metrics) {
        const bool keep = ci ? any_significant(row) : (row.name.rfind("phase ", 0) == 0 && moved(row));
        if (!keep) continue;
        if (sig.size() >= 40) {
            ++more;
            continue;
        }
        sig.push_back(metric_row(row, ci));
    }
    if (g.variants.size() < 2) {
        out.push_back(para("One variant: nothing to compare."));
    } else {
        out.push_back(para(ci ? "Metrics whose 95% confidence interval of the paired difference (Student t over the " +
                                    std::to_string(g.seeds.size()) + " seeds) excludes zero (*). Change is of the mean "
                                    "against the baseline; for times, negative is faster."
                              : "One seed per variant: no intervals; the phases that changed."));
        if (sig.empty()) out.push_back(para("No significant change."));
        else out.push_back(table("significant-changes", metric_header(g, ci), sig));
        if (more) out.push_back(para(std::to_string(more) + " more (kvmsim compare lists every metric)."));
    }

    // Mechanism counters that moved.
    if (g.variants.size() >= 2) {
        out.push_back(heading(3, "Mechanism counters that moved"));
        bool anything = false;
        for (const auto& cat : kCategoryTitles) {
            std::vector<const MetricRow*> rows;
            for (const auto& row : c.metrics)
                if (row.name.rfind(cat[0], 0) == 0 && moved(row)) rows.push_back(&row);
            if (rows.empty()) continue;
            anything = true;
            std::stable_sort(rows.begin(), rows.end(),
                             [](const MetricRow* a, const MetricRow* b) { return largest_change(*a) > largest_change(*b); });
            std::vector<std::vector<std::string>> t;
            for (std::size_t i = 0; i < rows.size() && i < 15; ++i) t.push_back(metric_row(*rows[i], ci));
            out.push_back(heading(4, cat[1]));
            std::string id = cat[0];
            id.pop_back();
            out.push_back(table("counters-" + id, metric_header(g, ci), t));
            if (rows.size() > 15) out.push_back(para(std::to_string(rows.size() - 15) + " more moved (kvmsim compare lists them)."));
        }
        if (!anything) out.push_back(para("No counter moved."));
    }

    // Provenance.
    out.push_back(heading(3, "Provenance"));
    std::set<std::string> versions, builds, files;
    for (const auto& vr : g.runs)
        for (const auto* in : vr) {
            versions.insert(str_of(in->doc, "kvmsim_version"));
            builds.insert(str_of(in->doc, "build_id").empty() ? std::string("(not recorded)") : str_of(in->doc, "build_id"));
            files.insert(str_of(in->doc, "file"));
        }
    auto joined = [](const std::set<std::string>& s) {
        std::string out;
        for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
        return out;
    };
    std::vector<std::vector<std::string>> prov{
        {"kvmsim version", joined(versions)},
        {"build_id", joined(builds)},
        {"scenario file", joined(files)},
        {"scenario_sha256", g.scenario_sha256},
        {"seeds", seeds},
    };
    for (std::size_t v = 0; v < g.runs.size(); ++v) {
        const std::string r = str_of(g.runs[v][0]->doc, "resolved_sha256");
        prov.push_back({"resolved_sha256 [" + g.variants[v] + "]", r.empty() ? "(not recorded)" : r});
    }
    out.push_back(table("provenance", {"item", "value"}, prov, 2));
    return out;
}

std::string render_markdown(const std::vector<Block>& blocks) {
    std::ostringstream os;
    for (const auto& b : blocks) {
        switch (b.kind) {
            case Block::Kind::Heading: os << std::string(static_cast<std::size_t>(b.level), '#') << " " << b.text << "\n\n"; break;
            case Block::Kind::Para: os << b.text << "\n\n"; break;
            case Block::Kind::Pre: os << "```\n" << b.text << (b.text.empty() || b.text.back() == '\n' ? "" : "\n") << "```\n\n"; break;
            case Block::Kind::Svg: break;
            case Block::Kind::List:
                for (const auto& i : b.items) os << "- " << i << "\n";
                os << "\n";
                break;
            case Block::Kind::Table: {
                os << "|";
                for (const auto& h : b.header) os << " " << md_cell(h) << " |";
                os << "\n|";
                for (std::size_t i = 0; i < b.header.size(); ++i) os << (i < b.text_columns ? " --- |" : " ---: |");
                os << "\n";
                for (const auto& r : b.rows) {
                    os << "|";
                    for (const auto& cell : r) os << " " << md_cell(cell) << " |";
                    os << "\n";
                }
                os << "\n";
                break;
            }
        }
    }
    return os.str();
}

constexpr const char* kStyle =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;"
    "padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.2em;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;vertical-align:top}"
    "th.text,td.text{text-align:left}"
    "th{background:#f3f3f3}"
    "pre{background:#f7f7f7;border:1px solid #ddd;padding:0.6em;overflow-x:auto}"
    "td.mono,code{font-family:ui-monospace,monospace;font-size:0.9em}"
    "h2{border-bottom:2px solid #ddd;padding-bottom:0.2em}";

std::string render_html(const std::string& title, const std::vector<Block>& blocks) {
    std::ostringstream os;
    os << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" << html_escape(title)
       << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
    for (const auto& b : blocks) {
        switch (b.kind) {
            case Block::Kind::Heading:
                os << "<h" << b.level << (b.id.empty() ? "" : " id=\"" + html_escape(b.id) + "\"") << ">" << html_escape(b.text)
                   << "</h" << b.level << ">\n";
                break;
            case Block::Kind::Para: os << "<p>" << html_escape(b.text) << "</p>\n"; break;
            case Block::Kind::Pre: os << "<pre>" << html_escape(b.text) << "</pre>\n"; break;
            case Block::Kind::Svg: os << b.text << "\n"; break;
            case Block::Kind::List:
                os << "<ul>\n";
                for (const auto& i : b.items) os << "<li>" << html_escape(i) << "</li>\n";
                os << "</ul>\n";
                break;
            case Block::Kind::Table: {
                os << "<table class=\"" << html_escape(b.id) << "\">\n<thead><tr>";
                for (std::size_t i = 0; i < b.header.size(); ++i)
                    os << (i < b.text_columns ? "<th class=\"text\">" : "<th>") << html_escape(b.header[i]) << "</th>";
                os << "</tr></thead>\n<tbody>\n";
                for (const auto& r : b.rows) {
                    os << "<tr>";
                    for (std::size_t i = 0; i < r.size(); ++i)
                        os << (i < b.text_columns ? "<td class=\"text\">" : "<td>") << html_escape(r[i]) << "</td>";
                    os << "</tr>\n";
                }
                os << "</tbody>\n</table>\n";
                break;
            }
        }
    }
    os << "</body>\n</html>\n";
    return os.str();
}

}  // namespace

std::string phase_svg(const ReportGroup& g) {
    const CompareResult& c = g.comparison;
    const std::vector<const MetricRow*> phases = selftest_phases(c);
    const std::size_t nv = g.variants.size();
    double top = 0;
    for (const auto* row : phases)
        for (const auto& v : row->variants) top = std::max(top, v.mean + v.stdev);
    // The axis in the unit of its top value, to a round number of ticks.
    double div = 1;
    std::string unit = "ns";
    if (top >= 1e9) div = 1e9, unit = "s";
    else if (top >= 1e6) div = 1e6, unit = "ms";
    else if (top >= 1e3) div = 1e3, unit = "us";
    const double top_u = top / div;
    double step = top_u > 0 ? std::pow(10.0, std::floor(std::log10(top_u))) : 1;
    if (top_u / step < 2) step /= 5;
    else if (top_u / step < 5) step /= 2;
    const double axis_top = top_u > 0 ? std::ceil(top_u / step) * step : 1;

    const double left = 70, right = 20, top_pad = 20, label_h = 60, legend_h = 22.0 * static_cast<double>(nv);
    const double group_w = std::max(80.0, 36.0 * static_cast<double>(nv) + 30);
    const double plot_w = std::max(300.0, group_w * static_cast<double>(std::max<std::size_t>(1, phases.size())));
    const double plot_h = 220;
    const double width = left + plot_w + right, height = top_pad + plot_h + label_h + legend_h;
    static const char* colors[] = {"#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"};
    auto y_of = [&](double v_u) { return top_pad + plot_h - v_u / axis_top * plot_h; };
    auto num = [](double v) { return fixed(v, 1); };
    std::ostringstream os;
    os << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"phase-times\" role=\"img\" width=\"" << num(width)
       << "\" height=\"" << num(height) << "\" viewBox=\"0 0 " << num(width) << " " << num(height)
       << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    os << "<title>" << html_escape(g.scenario) << ": phase times per variant (mean over " << g.seeds.size()
       << " seeds; whiskers one standard deviation)</title>\n";
    // Axis, gridlines and tick labels.
    std::ostringstream tick;
    for (double t = 0; t <= axis_top * (1 + 1e-9); t += step) {
        const double y = y_of(t);
        os << "<line x1=\"" << num(left) << "\" y1=\"" << num(y) << "\" x2=\"" << num(left + plot_w) << "\" y2=\"" << num(y)
           << "\" stroke=\"#e5e5e5\"/>\n";
        std::ostringstream lab;
        lab << std::setprecision(4) << t;
        os << "<text x=\"" << num(left - 6) << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">" << lab.str() << "</text>\n";
    }
    os << "<line x1=\"" << num(left) << "\" y1=\"" << num(top_pad) << "\" x2=\"" << num(left) << "\" y2=\""
       << num(top_pad + plot_h) << "\" stroke=\"#333\"/>\n";
    os << "<line x1=\"" << num(left) << "\" y1=\"" << num(top_pad + plot_h) << "\" x2=\"" << num(left + plot_w)
       << "\" y2=\"" << num(top_pad + plot_h) << "\" stroke=\"#333\"/>\n";
    os << "<text class=\"y-label\" transform=\"translate(16," << num(top_pad + plot_h / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
       << "simulated time (" << unit << ")</text>\n";
    // Bars.
    const double slot = plot_w / static_cast<double>(std::max<std::size_t>(1, phases.size()));
    const double bar_w = std::min(36.0, (slot - 20) / static_cast<double>(nv));
    for (std::size_t p = 0; p < phases.size(); ++p) {
        const auto& row = *phases[p];
        const double x0 = left + slot * static_cast<double>(p) + (slot - bar_w * static_cast<double>(nv)) / 2;
        for (std::size_t v = 0; v < nv && v < row.variants.size(); ++v) {
            const double m = row.variants[v].mean / div, sd = row.variants[v].stdev / div;
            const double x = x0 + bar_w * static_cast<double>(v);
            const double y = y_of(m);
            os << "<rect class=\"bar\" data-phase=\"" << html_escape(phase_name(row.name)) << "\" data-variant=\""
               << html_escape(g.variants[v]) << "\" data-mean-ns=\"" << exact(row.variants[v].mean) << "\" x=\"" << num(x + 1)
               << "\" y=\"" << num(y) << "\" width=\"" << num(bar_w - 2) << "\" height=\"" << num(top_pad + plot_h - y)
               << "\" fill=\"" << colors[v % 8] << "\"><title>" << html_escape(phase_name(row.name)) << " ["
               << html_escape(g.variants[v]) << "]: " << html_escape(human_ns(row.variants[v].mean)) << "</title></rect>\n";
            if (sd > 0) {
                const double cx = x + bar_w / 2;
                os << "<line x1=\"" << num(cx) << "\" y1=\"" << num(y_of(m - sd)) << "\" x2=\"" << num(cx) << "\" y2=\""
                   << num(y_of(m + sd)) << "\" stroke=\"#222\"/>\n";
            }
        }
        std::string label = phase_name(row.name);
        if (label.size() > 28) label = label.substr(0, 25) + "...";
        os << "<text class=\"x-label\" x=\"" << num(left + slot * (static_cast<double>(p) + 0.5)) << "\" y=\""
           << num(top_pad + plot_h + 18) << "\" text-anchor=\"middle\">" << html_escape(label) << "</text>\n";
    }
    if (phases.empty())
        os << "<text x=\"" << num(left + plot_w / 2) << "\" y=\"" << num(top_pad + plot_h / 2)
           << "\" text-anchor=\"middle\">no phase</text>\n";
    // Legend.
    for (std::size_t v = 0; v < nv; ++v) {
        const double y = top_pad + plot_h + label_h + 22.0 * static_cast<double>(v) - 14;
        os << "<rect x=\"" << num(left) << "\" y=\"" << num(y) << "\" width=\"14\" height=\"14\" fill=\"" << colors[v % 8]
           << "\"/><text class=\"legend\" x=\"" << num(left + 20) << "\" y=\"" << num(y + 12) << "\">"
           << html_escape(g.variants[v]) << (v == 0 ? " (baseline)" : "") << "</text>\n";
    }
    os << "</svg>";
    return os.str();
}

ReportContext this_build() { return {KVMSIM_VERSION, kvmsim_build_id}; }

std::string render_report(const std::vector<ReportGroup>& groups, ReportFormat format, const ReportContext& ctx) {
    std::vector<Block> blocks;
    std::string title = "kvmsim report";
    if (groups.size() == 1) title += ": " + groups[0].scenario;
    blocks.push_back(heading(1, title));
    blocks.push_back(para("Written by kvmsim " + ctx.kvmsim_version + " (build_id " + ctx.build_id +
                          ") from saved results. Times are simulated; + and - are changes of the mean against the "
                          "baseline (for times, - is faster)."));
    for (const auto& g : groups)
        for (auto& b : group_blocks(g, format == ReportFormat::Html)) blocks.push_back(std::move(b));
    return format == ReportFormat::Html ? render_html(title, blocks) : render_markdown(blocks);
}

int write_report(const ReportRequest& req, std::ostream& out, std::ostream& err, const ReportContext& ctx) {
    const std::string& out_path = req.output;
    if (req.files.empty()) {
        err << "kvmsim report: expected result files (kvmsim run --json OUT writes one)\n";
        return 2;
    }
    const ReportFormat format = req.format ? *req.format
                                : out_path.size() > 5 && out_path.substr(out_path.size() - 5) == ".html"
                                    ? ReportFormat::Html
                                    : ReportFormat::Markdown;
    try {
        std::vector<ReportInput> inputs;
        for (const auto& f : req.files) inputs.push_back({f, scenario::parse_json_file(f)});
        const auto groups = group_results(inputs, req.baseline);
        const std::string text = render_report(groups, format, ctx);
        if (out_path.empty()) out << text;
        else write_file_atomic(out_path, text);
        return 0;
    } catch (const scenario::ScenarioError& e) {
        err << e.what() << "\n";
        return 2;
    } catch (const ReportError& e) {
        err << "kvmsim report: " << e.what() << "\n";
        return 2;
    } catch (const std::runtime_error& e) {  // an output file that cannot be written
        err << "kvmsim report: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace kvmsim::report
