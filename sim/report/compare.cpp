#include "sim/report/compare.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>

#include <boost/math/distributions/students_t.hpp>

#include "sim/report/format.hpp"

namespace kvmsim::report {

std::vector<MetricValue> metrics_of(const runner::Result& r) {
    std::vector<MetricValue> out;
    for (const auto& p : r.phases) out.push_back({"phase " + p.name, "ns", p.sim_time_ns});
    for (const auto& [k, v] : r.stats) out.push_back({"stat " + k, "count", static_cast<double>(v)});
    for (const auto& l : r.locks) {
        const std::string base = "lock " + l.lock + " " + l.mode + " @" + l.site;
        out.push_back({base + " wait", "ns", l.wait_ps.sum_double() / 1e3});
        out.push_back({base + " hold", "ns", l.hold_ps.sum_double() / 1e3});
    }
    for (std::size_t i = 0; i < r.cache_levels.size() && i < r.caches.levels.size(); ++i)
        out.push_back({"cache " + r.cache_levels[i] + " misses", "count", static_cast<double>(r.caches.levels[i].misses)});
    out.push_back({"cache coherence misses", "count", static_cast<double>(r.caches.coherence_misses)});
    for (const auto& l : r.lines) out.push_back({"line " + l.name + " wait", "ns", l.wait_ps.sum_double() / 1e3});
    for (const auto& b : r.bandwidth) out.push_back({"bandwidth " + b.name + " busy", "ns", b.busy.to_ns()});
    const auto& f = r.fault_latency_ps;
    out.push_back({"fault latency p50", "ns", static_cast<double>(f.percentile(0.5)) / 1e3});
    out.push_back({"fault latency p99", "ns", static_cast<double>(f.percentile(0.99)) / 1e3});
    out.push_back({"fault latency max", "ns", static_cast<double>(f.max()) / 1e3});
    return out;
}

namespace {
template <class Json>
std::vector<MetricValue> metrics_of_document(const Json& r) {
    std::vector<MetricValue> out;
    auto num = [](const Json& j, const char* k) {
        return j.contains(k) && j[k].is_number() ? j[k].template get<double>() : 0.0;
    };
    if (r.contains("phases") && r["phases"].is_array())
        for (const auto& p : r["phases"])
            if (p.is_object() && p.contains("name") && p["name"].is_string())
                out.push_back({"phase " + p["name"].template get<std::string>(), "ns", num(p, "sim_time_ns")});
    if (r.contains("stats") && r["stats"].is_object())
        for (const auto& [k, v] : r["stats"].items())
            if (v.is_number()) out.push_back({"stat " + k, "count", v.template get<double>()});
    if (r.contains("locks") && r["locks"].is_array())
        for (const auto& l : r["locks"]) {
            if (!l.is_object()) continue;
            auto str = [&l](const char* k) { return l.contains(k) && l[k].is_string() ? l[k].template get<std::string>() : std::string(); };
            const std::string base = "lock " + str("lock") + " " + str("mode") + " @" + str("site");
            if (l.contains("wait_ns") && l["wait_ns"].is_object()) out.push_back({base + " wait", "ns", num(l["wait_ns"], "sum")});
            if (l.contains("hold_ns") && l["hold_ns"].is_object()) out.push_back({base + " hold", "ns", num(l["hold_ns"], "sum")});
        }
    if (r.contains("caches") && r["caches"].is_object()) {
        for (const auto& [k, v] : r["caches"].items())
            if (v.is_object()) out.push_back({"cache " + k + " misses", "count", num(v, "misses")});
        out.push_back({"cache coherence misses", "count", num(r["caches"], "coherence_misses")});
    }
    auto named = [](const Json& x) { return x.contains("name") && x["name"].is_string() ? x["name"].template get<std::string>() : std::string(); };
    if (r.contains("lines") && r["lines"].is_array())
        for (const auto& l : r["lines"])
            if (l.is_object() && l.contains("wait_ns") && l["wait_ns"].is_object())
                out.push_back({"line " + named(l) + " wait", "ns", num(l["wait_ns"], "sum")});
    if (r.contains("bandwidth") && r["bandwidth"].is_array())
        for (const auto& b : r["bandwidth"])
            if (b.is_object()) out.push_back({"bandwidth " + named(b) + " busy", "ns", num(b, "busy_ns")});
    if (r.contains("fault_latency_ns") && r["fault_latency_ns"].is_object()) {
        const Json& f = r["fault_latency_ns"];
        for (const char* k : {"p50", "p99", "max"})
            out.push_back({std::string("fault latency ") + k, "ns", num(f, k)});
    }
    return out;
}
}  // namespace

std::vector<MetricValue> metrics_of(const nlohmann::json& r) { return metrics_of_document(r); }
std::vector<MetricValue> metrics_of(const nlohmann::ordered_json& r) { return metrics_of_document(r); }

double t95(std::size_t df) {
    if (df == 0) return 0;
    const boost::math::students_t dist(static_cast<double>(df));
    return boost::math::quantile(boost::math::complement(dist, 0.025));
}

namespace {
double mean(const std::vector<double>& x) {
    double s = 0;
    for (double v : x) s += v;
    return x.empty() ? 0 : s / static_cast<double>(x.size());
}
double stdev(const std::vector<double>& x) {
    if (x.size() < 2) return 0;
    const double m = mean(x);
    double s = 0;
    for (double v : x) s += (v - m) * (v - m);
    return std::sqrt(s / static_cast<double>(x.size() - 1));
}
}  // namespace

CompareResult compare(const std::vector<std::string>& variants, const std::vector<std::uint64_t>& seeds,
                      const std::vector<std::vector<runner::Result>>& runs) {
    std::vector<std::vector<std::vector<MetricValue>>> values(runs.size());
    for (std::size_t v = 0; v < runs.size(); ++v)
        for (const auto& r : runs[v]) values[v].push_back(metrics_of(r));
    std::vector<std::string> selftest;
    std::string scenario;
    if (!runs.empty() && !runs[0].empty()) {
        scenario = runs[0][0].scenario;
        for (const auto& p : runs[0][0].phases)
            if (p.selftest_metric) selftest.push_back(p.name);
    }
    CompareResult c = compare_values(scenario, selftest, variants, seeds, values);
    if (!runs.empty() && !runs[0].empty()) c.preset = runs[0][0].preset;
    return c;
}

CompareResult compare_documents(const std::vector<std::string>& variants, const std::vector<std::uint64_t>& seeds,
                                const std::vector<std::vector<nlohmann::json>>& docs) {
    std::vector<std::vector<std::vector<MetricValue>>> values(docs.size());
    for (std::size_t v = 0; v < docs.size(); ++v)
        for (const auto& d : docs[v]) values[v].push_back(metrics_of(d));
    std::string scenario, preset;
    std::vector<std::string> selftest;
    if (!docs.empty() && !docs[0].empty()) {
        const nlohmann::json& j = docs[0][0];
        if (j.contains("scenario") && j["scenario"].is_string()) scenario = j["scenario"];
        if (j.contains("preset") && j["preset"].is_string()) preset = j["preset"];
        if (j.contains("phases") && j["phases"].is_array())
            for (const auto& ph : j["phases"])
                if (ph.is_object() && ph.value("selftest_metric", false) && ph.contains("name") && ph["name"].is_string())
                    selftest.push_back(ph["name"]);
    }
    CompareResult c = compare_values(scenario, selftest, variants, seeds, values);
    c.preset = preset;
    return c;
}

CompareResult compare_values(const std::string& scenario, const std::vector<std::string>& selftest_metrics,
                             const std::vector<std::string>& variants, const std::vector<std::uint64_t>& seeds,
                             const std::vector<std::vector<std::vector<MetricValue>>>& runs) {
    CompareResult c;
    c.variants = variants;
    c.seeds = seeds;
    c.scenario = scenario;
    c.selftest_metrics = selftest_metrics;
    if (runs.empty() || runs[0].empty()) return c;

    // Metric names in first-seen order over all runs; a metric missing from a run is 0.
    std::vector<std::string> order;
    std::map<std::string, std::string> units;
    std::vector<std::vector<std::map<std::string, double>>> values(runs.size());
    for (std::size_t v = 0; v < runs.size(); ++v)
        for (const auto& r : runs[v]) {
            auto& m = values[v].emplace_back();
            for (const auto& mv : r) {
                if (units.emplace(mv.name, mv.unit).second) order.push_back(mv.name);
                m[mv.name] = mv.value;
            }
        }
    for (const auto& name : order) {
        MetricRow row{name, units[name], {}};
        std::vector<std::vector<double>> xs(runs.size());
        for (std::size_t v = 0; v < runs.size(); ++v)
            for (const auto& m : values[v]) {
                auto it = m.find(name);
                xs[v].push_back(it == m.end() ? 0 : it->second);
            }
        const double base = mean(xs[0]);
        for (std::size_t v = 0; v < runs.size(); ++v) {
            Comparison cmp;
            cmp.variant = variants[v];
            cmp.mean = mean(xs[v]);
            cmp.stdev = stdev(xs[v]);
            if (v > 0) {
                if (base != 0) cmp.change_pct = (cmp.mean - base) / base * 100.0;
                std::vector<double> d;
                for (std::size_t s = 0; s < xs[v].size() && s < xs[0].size(); ++s) d.push_back(xs[v][s] - xs[0][s]);
                const double md = mean(d);
                if (d.size() >= 2) {
                    const double half = t95(d.size() - 1) * stdev(d) / std::sqrt(static_cast<double>(d.size()));
                    cmp.ci95 = std::make_pair(md - half, md + half);
                    cmp.significant = cmp.ci95->first > 0 || cmp.ci95->second < 0;
                } else if (d.size() == 1) {
                    // One seed: the difference is exact for it, but there is no interval.
                    cmp.significant = false;
                }
            }
            row.variants.push_back(cmp);
        }
        c.metrics.push_back(std::move(row));
    }
    return c;
}

namespace {
// The selftest's own line, as the seed documents print it: seconds with 4 significant digits,
// before -> after. Their "+70.69%" means 70.69% less time; said in words here, so that it does
// not read as the opposite of the table's "-70.69%".
std::string selftest_line(const std::string& phase, const std::string& base_name, double base_ns,
                          const std::string& name, double ns) {
    std::ostringstream os;
    os << std::setprecision(4) << phase << ": " << base_name << " " << base_ns / 1e9 << "s -> " << name << " "
       << ns / 1e9 << "s, ";
    if (base_ns <= 0) return os.str() + "n/a";
    const double faster = (base_ns - ns) / base_ns * 100;
    const std::string pct = format_pct(std::fabs(faster)).substr(1);  // without the sign
    if (pct == "0.00%") os << "no change";
    else os << (faster > 0 ? "faster by " : "slower by ") << pct;
    return os.str();
}

// One variant against the baseline: a row per metric that is not zero in both, with both means,
// the change and the interval of the paired difference, columns named after the variants. Lines
// stay within about 120 characters: a metric name too long for its column gets a line of its
// own, the numbers following on the next.
void print_pair(std::ostream& out, const CompareResult& c, std::size_t v) {
    constexpr std::size_t kLine = 118;
    const std::string& base = c.variants[0];
    const std::string& name = c.variants[v];
    struct Row {
        std::string metric, base, value, change, ci;
    };
    std::vector<Row> rows;
    bool any_ci = false;
    for (const auto& m : c.metrics) {
        if (v >= m.variants.size()) continue;
        const Comparison& b = m.variants[0];
        const Comparison& x = m.variants[v];
        if (b.mean == 0 && x.mean == 0) continue;
        Row r{m.name, format_value(b.mean, m.unit), format_value(x.mean, m.unit),
              x.change_pct ? format_pct(*x.change_pct) : "n/a", ""};
        if (x.ci95) {
            // An interval's bounds are not known to more digits than a time shows: 4 significant.
            const auto bound = [&m](double b) { return format_value(m.unit == "ns" ? b : round_significant(b, 4), m.unit); };
            r.ci = "[" + bound(x.ci95->first) + " .. " + bound(x.ci95->second) + "]";
            any_ci = true;
        }
        if (x.significant) r.ci += " *";
        rows.push_back(std::move(r));
    }
    std::size_t wb = base.size(), wv = name.size(), wc = 7, wci = 0, wm = 6;
    for (const auto& r : rows) {
        wb = std::max(wb, r.base.size());
        wv = std::max(wv, r.value.size());
        wc = std::max(wc, r.change.size());
        wci = std::max(wci, r.ci.size());
        wm = std::max(wm, r.metric.size());
    }
    const std::size_t rest = 2 + wb + 2 + wv + 2 + wc + (wci ? 2 + wci : 0);
    wm = std::min(wm, std::max<std::size_t>(24, kLine > rest ? kLine - rest : 0));
    const auto w = [](std::size_t n) { return static_cast<int>(n); };

    std::ostringstream os;
    os << "\n" << name << " against " << base << " (baseline), " << c.seeds.size() << " seed"
       << (c.seeds.size() == 1 ? "" : "s");
    std::ostringstream head;
    head << std::left << std::setw(w(wm)) << "metric" << std::right << "  " << std::setw(w(wb)) << base << "  "
         << std::setw(w(wv)) << name << "  " << std::setw(w(wc)) << "change";
    if (any_ci) {
        const std::string ci = "95% CI of " + name + " - " + base;
        if (head.str().size() + 2 + ci.size() <= kLine + 2) {
            head << "  " << ci;
        } else {
            head << "  95% CI";
            os << "; the intervals are of " << name << " - " << base;
        }
    }
    os << ":\n" << head.str() << "\n";
    for (const auto& r : rows) {
        if (r.metric.size() > wm) os << r.metric << "\n" << std::string(wm, ' ');
        else os << std::left << std::setw(w(wm)) << r.metric;
        os << std::right << "  " << std::setw(w(wb)) << r.base << "  " << std::setw(w(wv)) << r.value << "  "
           << std::setw(w(wc)) << r.change;
        if (!r.ci.empty()) os << "  " << r.ci;
        os << "\n";
    }
    out << os.str();
}
}  // namespace

void print_compare(std::ostream& os, const CompareResult& c) {
    os << c.scenario << ": " << c.variants.size() << " variant" << (c.variants.size() == 1 ? "" : "s") << " x "
       << c.seeds.size() << " seed" << (c.seeds.size() == 1 ? "" : "s") << " (baseline "
       << (c.variants.empty() ? "-" : c.variants.front()) << ")\n";
    if (!c.selftest_metrics.empty() && c.variants.size() >= 2) {
        os << "\n";
        for (const auto& name : c.selftest_metrics)
            for (const auto& row : c.metrics)
                if (row.name == "phase " + name)
                    for (std::size_t v = 1; v < row.variants.size(); ++v)
                        os << selftest_line(name, c.variants[0], row.variants[0].mean, c.variants[v], row.variants[v].mean)
                           << "\n";
    }
    for (std::size_t v = 1; v < c.variants.size(); ++v) print_pair(os, c, v);
    if (c.variants.size() >= 2 && c.seeds.size() >= 2)
        os << "(change: the variant's mean against the baseline's, negative = less (a time: faster); CI: the 95%\n"
              " interval of the paired difference over the seeds, variant - baseline; * it excludes zero)\n";
    else if (c.variants.size() >= 2)
        os << "(change: the variant's value against the baseline's, negative = less (a time: faster); one seed,\n"
              " so no interval)\n";
}

nlohmann::ordered_json to_json(const CompareResult& c) {
    nlohmann::ordered_json j;
    j["scenario"] = c.scenario;
    j["variants"] = c.variants;
    j["seeds"] = c.seeds;
    j["metrics"] = nlohmann::ordered_json::array();
    for (const auto& row : c.metrics) {
        nlohmann::ordered_json m;
        m["name"] = row.name;
        m["unit"] = row.unit;
        m["variants"] = nlohmann::ordered_json::object();
        for (const auto& v : row.variants) {
            nlohmann::ordered_json vj = {{"mean", v.mean}, {"stdev", v.stdev}};
            if (v.change_pct) vj["change_pct"] = *v.change_pct;
            if (v.ci95) vj["ci95"] = {v.ci95->first, v.ci95->second};
            vj["significant"] = v.significant;
            m["variants"][v.variant] = vj;
        }
        // Top level: the last variant against the baseline (the "after" of a before/after pair).
        const auto& last = row.variants.back();
        m["change_pct"] = last.change_pct ? nlohmann::ordered_json(*last.change_pct) : nlohmann::ordered_json(nullptr);
        m["ci95"] = last.ci95 ? nlohmann::ordered_json{last.ci95->first, last.ci95->second} : nlohmann::ordered_json(nullptr);
        m["significant"] = last.significant;
        j["metrics"].push_back(m);
    }
    return j;
}

}  // namespace kvmsim::report
