#include "sim/report/published.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "sim/scenario/error.hpp"

namespace kvmsim::report {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double ns_per_unit(const std::string& unit) {
    if (unit == "s") return 1e9;
    if (unit == "ms") return 1e6;
    if (unit == "us") return 1e3;
    return 1;
}

std::string num(double v) {
    if (std::isinf(v)) return "inf";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

std::string what(const scenario::PublishedRow& r) {
    if (!r.stat.empty()) return "stat " + r.stat;
    return r.aggregate.empty() ? r.phase : r.phase + " (" + r.aggregate + ")";
}

nlohmann::ordered_json number_or_null(double v) {
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

double error_factor(double a, double b) {
    if (!(a > 0) || !(b > 0)) return kInf;
    return std::max(a / b, b / a);
}

bool same_sign(double r_pub, double r_sim) {
    // Three sides: up, down, and "no change" within the tolerance of 1 (inclusive, with room
    // for the rounding of a ratio of decimal figures: 1.02 - 1 > 0.02). A simulated 1.0003
    // against a published 1.46 is a missed change, not a right sign.
    const double tol = kSignTolerance + 1e-12;
    auto side = [tol](double r) { return r > 1 + tol ? 1 : r < 1 - tol ? -1 : 0; };
    return side(r_pub) == side(r_sim);
}

double simulated_value(const scenario::PublishedRow& row, const nlohmann::json& result, const std::string& file) {
    if (!row.stat.empty()) {
        const auto& stats = result.at("stats");
        if (!stats.contains(row.stat))
            throw scenario::ScenarioError(file, row.pointer + "/stat",
                                          "expected a stat the run reports, got \"" + row.stat + "\"");
        return stats.at(row.stat).get<double>();
    }
    double sum = 0;
    std::size_t n = 0;
    for (const auto& p : result.at("phases"))
        if (scenario::phase_matches(row.phase, p.at("name").get<std::string>())) {
            sum += p.at("sim_time_ns").get<double>();
            ++n;
        }
    if (n == 0)
        throw scenario::ScenarioError(file, row.pointer + "/phase",
                                      "expected a phase the run reports, got \"" + row.phase + "\"");
    const double ns = row.aggregate == "mean" ? sum / static_cast<double>(n) : sum;
    return ns / ns_per_unit(row.unit);
}

CheckedRow check_row(const std::string& config, const std::string& file, const scenario::PublishedRow& row,
                     double sim_a, double sim_b) {
    CheckedRow c;
    c.config = config;
    c.file = file;
    c.pointer = row.pointer;
    c.row = row;
    if (row.before) {
        c.pub_before = row.before->value;
        c.pub_after = row.after->value;
        c.pub_ratio = c.pub_after / c.pub_before;
        c.sim_before = sim_a;
        c.sim_after = sim_b;
        c.sim_ratio = sim_a > 0 ? sim_b / sim_a : kInf;
        c.sign_right = std::isfinite(c.sim_ratio) && same_sign(c.pub_ratio, c.sim_ratio);
        c.error = error_factor(c.sim_ratio, c.pub_ratio);
        c.error_before = error_factor(c.sim_before, c.pub_before);
        c.error_after = error_factor(c.sim_after, c.pub_after);
    } else {
        c.pub_value = row.value->value;
        c.sim_value = sim_a;
        c.error = error_factor(c.sim_value, c.pub_value);
    }
    c.within = c.error <= kWithinFactor;
    return c;
}

CheckedRow skipped_row(const std::string& config, const std::string& file, const scenario::PublishedRow& row,
                       const std::string& why) {
    CheckedRow c;
    c.config = config;
    c.file = file;
    c.pointer = row.pointer;
    c.row = row;
    c.run = false;
    c.skip = why;
    if (row.before) {
        c.pub_before = row.before->value;
        c.pub_after = row.after->value;
        c.pub_ratio = c.pub_after / c.pub_before;
    } else {
        c.pub_value = row.value->value;
    }
    return c;
}

Summary summarize(const std::vector<CheckedRow>& rows) {
    Summary s;
    for (const auto& r : rows) {
        if (!r.row.not_expressible.empty()) {
            ++s.not_expressible;
            continue;
        }
        if (!r.run) {
            ++s.not_run;
            continue;
        }
        const int k = r.row.calibration ? 1 : 0;
        ++s.rows[k];
        if (r.within) ++s.within[k];
        if (r.is_change()) {
            ++s.sign_rows[k];
            if (r.sign_right) ++s.signs_right[k];
        }
    }
    return s;
}

std::string summary_line(const Summary& s) {
    auto part = [&](int k, const char* label) {
        return std::string(label) + " rows: signs right " + std::to_string(s.signs_right[k]) + "/" +
               std::to_string(s.sign_rows[k]) + ", within 1.5x " + std::to_string(s.within[k]) + "/" +
               std::to_string(s.rows[k]);
    };
    std::string line = "summary: " + part(0, "non-calibration") + "; " + part(1, "calibration");
    if (s.not_run) line += "; not run: " + std::to_string(s.not_run) + " rows";
    if (s.not_expressible) line += "; not expressible: " + std::to_string(s.not_expressible) + " rows";
    return line;
}

void print_published(std::ostream& os, const std::vector<CheckedRow>& rows) {
    // The configuration column as wide as the longest name.
    int cw = 13;
    for (const auto& r : rows) cw = std::max(cw, static_cast<int>(r.config.size()));
    char buf[768];
    std::snprintf(buf, sizeof buf, "%-*s %-34s %-4s %10s %10s %8s %10s %10s %8s %-4s %7s %-6s %s\n", cw, "configuration",
                  "phase", "unit", "pub before", "pub after", "pub r", "sim before", "sim after", "sim r", "sign",
                  "error", "<=1.5x", "calib");
    os << buf;
    for (const auto& r : rows) {
        const std::string w = what(r.row);
        const char* calib = r.row.calibration ? "yes" : "no";
        if (!r.run) {
            const char* why = r.row.not_expressible.empty() ? "not run" : "not expressible";
            if (r.is_change())
                std::snprintf(buf, sizeof buf, "%-*s %-34s %-4s %10s %10s %8s %-10s\n", cw, r.config.c_str(), w.c_str(),
                              r.row.unit.c_str(), num(r.pub_before).c_str(), num(r.pub_after).c_str(),
                              num(r.pub_ratio).c_str(), why);
            else
                std::snprintf(buf, sizeof buf, "%-*s %-34s %-4s %10s %10s %8s %-10s\n", cw, r.config.c_str(), w.c_str(),
                              r.row.unit.c_str(), num(r.pub_value).c_str(), "-", "-", why);
        } else if (r.is_change()) {
            std::snprintf(buf, sizeof buf, "%-*s %-34s %-4s %10s %10s %8s %10s %10s %8s %-4s %7s %-6s %s\n",
                          cw, r.config.c_str(), w.c_str(), r.row.unit.c_str(), num(r.pub_before).c_str(),
                          num(r.pub_after).c_str(), num(r.pub_ratio).c_str(), num(r.sim_before).c_str(),
                          num(r.sim_after).c_str(), num(r.sim_ratio).c_str(), r.sign_right ? "yes" : "NO",
                          (num(r.error) + "x").c_str(), r.within ? "yes" : "NO", calib);
        } else {
            std::snprintf(buf, sizeof buf, "%-*s %-34s %-4s %10s %10s %8s %10s %10s %8s %-4s %7s %-6s %s\n",
                          cw, r.config.c_str(), w.c_str(), r.row.unit.c_str(), num(r.pub_value).c_str(), "-", "-",
                          num(r.sim_value).c_str(), "-", "-", "-", (num(r.error) + "x").c_str(),
                          r.within ? "yes" : "NO", calib);
        }
        os << buf;
    }
    os << summary_line(summarize(rows)) << "\n";
}

nlohmann::ordered_json published_json(const std::vector<CheckedRow>& rows, const nlohmann::ordered_json& runs,
                                      std::uint64_t seeds) {
    nlohmann::ordered_json doc;
    doc["check_published"] = 1;
    doc["seeds"] = seeds;
    doc["sign_tolerance"] = kSignTolerance;
    doc["within_factor"] = kWithinFactor;
    doc["rows"] = nlohmann::ordered_json::array();
    for (const auto& r : rows) {
        nlohmann::ordered_json j;
        j["config"] = r.config;
        j["file"] = r.file;
        j["pointer"] = r.pointer;
        if (r.row.stat.empty()) {
            j["phase"] = r.row.phase;
            if (!r.row.aggregate.empty()) j["aggregate"] = r.row.aggregate;
        } else {
            j["stat"] = r.row.stat;
        }
        j["unit"] = r.row.unit;
        j["kind"] = r.is_change() ? "change" : "value";
        j["calibration"] = r.row.calibration;
        if (!r.row.note.empty()) j["note"] = r.row.note;
        j["run"] = r.run;
        if (!r.run && r.row.not_expressible.empty()) j["skip"] = r.skip;
        if (!r.row.not_expressible.empty()) j["not_expressible"] = r.row.not_expressible;
        if (r.is_change()) {
            j["published"] = {{"before", {{"variant", r.row.before->variant}, {"value", r.pub_before}}},
                              {"after", {{"variant", r.row.after->variant}, {"value", r.pub_after}}},
                              {"ratio", r.pub_ratio}};
            if (r.run) {
                j["simulated"] = {{"before", r.sim_before}, {"after", r.sim_after},
                                  {"ratio", number_or_null(r.sim_ratio)}};
                j["sign_right"] = r.sign_right;
                j["error_factor"] = number_or_null(r.error);
                j["error_factor_before"] = number_or_null(r.error_before);
                j["error_factor_after"] = number_or_null(r.error_after);
                j["within_1_5x"] = r.within;
            }
        } else {
            j["published"] = {{"variant", r.row.value->variant}, {"value", r.pub_value}};
            if (r.run) {
                j["simulated"] = {{"value", r.sim_value}};
                j["error_factor"] = number_or_null(r.error);
                j["within_1_5x"] = r.within;
            }
        }
        doc["rows"].push_back(std::move(j));
    }
    const Summary s = summarize(rows);
    auto part = [&](int k) {
        return nlohmann::ordered_json{{"rows", s.rows[k]},
                                      {"change_rows", s.sign_rows[k]},
                                      {"signs_right", s.signs_right[k]},
                                      {"within_1_5x", s.within[k]}};
    };
    doc["summary"] = {{"non_calibration", part(0)}, {"calibration", part(1)}, {"not_run", s.not_run},
                      {"not_expressible", s.not_expressible},
                      {"line", summary_line(s)}};
    doc["runs"] = runs;
    return doc;
}

}  // namespace kvmsim::report
