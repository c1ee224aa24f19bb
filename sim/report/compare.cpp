#include "sim/report/compare.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>

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
    return out;
}
}  // namespace

std::vector<MetricValue> metrics_of(const nlohmann::json& r) { return metrics_of_document(r); }
std::vector<MetricValue> metrics_of(const nlohmann::ordered_json& r) { return metrics_of_document(r); }

double t95(std::size_t df) {
    static const double table[] = {0,      12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                   2.201,  2.179,  2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                   2.080,  2.074,  2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
    if (df == 0) return 0;
    if (df <= 30) return table[df];
    if (df <= 40) return 2.021;
    if (df <= 60) return 2.000;
    if (df <= 120) return 1.980;
    return 1.960;
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
std::string fmt_value(double v, const std::string& unit) {
    std::ostringstream os;
    os << std::setprecision(4);
    if (unit == "ns") {
        const double a = std::fabs(v);
        if (a >= 1e9) os << v / 1e9 << "s";
        else if (a >= 1e6) os << v / 1e6 << "ms";
        else if (a >= 1e3) os << v / 1e3 << "us";
        else os << v << "ns";
    } else {
        os << v;
    }
    return os.str();
}
std::string fmt_pct(double p) {
    std::ostringstream os;
    os << std::showpos << std::fixed << std::setprecision(2) << p << "%";
    return os.str();
}
}  // namespace

void print_compare(std::ostream& os, const CompareResult& c) {
    os << c.scenario << ": " << c.variants.size() << " variants x " << c.seeds.size() << " seeds (baseline "
       << (c.variants.empty() ? "-" : c.variants.front()) << ")\n";
    // The selftest's own lines, as the seed documents print them: before -> after, + is faster.
    if (!c.selftest_metrics.empty() && c.variants.size() >= 2) {
        os << "\n";
        for (const auto& name : c.selftest_metrics)
            for (const auto& row : c.metrics)
                if (row.name == "phase " + name)
                    for (std::size_t v = 1; v < row.variants.size(); ++v) {
                        const double before = row.variants[0].mean / 1e9, after = row.variants[v].mean / 1e9;
                        os << name << ": " << c.variants[0] << " " << std::setprecision(4) << before << "s -> "
                           << c.variants[v] << " " << after << "s "
                           << (before > 0 ? fmt_pct((before - after) / before * 100) : std::string("n/a")) << "\n";
                    }
    }
    std::vector<int> width;
    for (const auto& v : c.variants) width.push_back(static_cast<int>(std::max<std::size_t>(12, v.size())) + 2);
    os << "\n" << std::left << std::setw(58) << "metric";
    for (std::size_t i = 0; i < c.variants.size(); ++i) os << std::right << std::setw(width[i]) << c.variants[i];
    os << "   change vs baseline (95% CI of the paired difference)\n";
    for (const auto& row : c.metrics) {
        bool any = false;
        for (const auto& v : row.variants) any = any || v.mean != 0;
        if (!any) continue;
        std::string name = row.name.size() > 57 ? row.name.substr(0, 54) + "..." : row.name;
        os << std::left << std::setw(58) << name;
        for (std::size_t i = 0; i < row.variants.size(); ++i)
            os << std::right << std::setw(i < width.size() ? width[i] : 14) << fmt_value(row.variants[i].mean, row.unit);
        for (std::size_t i = 1; i < row.variants.size(); ++i) {
            const auto& v = row.variants[i];
            os << "   " << (v.change_pct ? fmt_pct(*v.change_pct) : std::string("n/a"));
            if (v.ci95) os << " [" << fmt_value(v.ci95->first, row.unit) << ", " << fmt_value(v.ci95->second, row.unit) << "]";
            if (v.significant) os << " *";
        }
        os << "\n";
    }
    os << "(* the interval excludes zero)\n";
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
