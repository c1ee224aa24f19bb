// kvmsim check-published: a scenario's runs against the figures its "published" block carries.
// Pure functions over the loaded block and the runs' result documents (report::to_json); the
// command (sim/cli) runs the variants and prints what these compute.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "sim/scenario/scenario.hpp"

namespace kvmsim::report {

// Sign and error thresholds of the check.
inline constexpr double kSignTolerance = 0.02;  // both ratios within 2% of 1: "no change" agrees
inline constexpr double kWithinFactor = 1.5;

// One row checked. A "change" row compares after/before ratios; a "value" row one run's value.
struct CheckedRow {
    std::string config;  // the scenario's name
    std::string file;
    std::string pointer;  // of the row in the file
    scenario::PublishedRow row;
    bool run = true;      // false: not run (the scenario's "skip", --only, or the row not expressible)
    std::string skip;
    // Published and simulated values in the row's unit (ratios: after / before).
    double pub_before = 0, pub_after = 0, pub_ratio = 0, pub_value = 0;
    double sim_before = 0, sim_after = 0, sim_ratio = 0, sim_value = 0;
    bool sign_right = false;  // change rows
    double error = 0;         // max(sim/pub, pub/sim) of the ratio (change) or the value; +inf if sim <= 0
    double error_before = 0, error_after = 0;  // change rows: of the absolute values
    bool within = false;      // error <= kWithinFactor
    bool is_change() const { return row.before.has_value(); }
};

struct Summary {
    // [0] non-calibration rows, [1] calibration rows.
    std::uint32_t signs_right[2] = {0, 0}, sign_rows[2] = {0, 0};
    std::uint32_t within[2] = {0, 0}, rows[2] = {0, 0};
    std::uint32_t not_run = 0;          // rows of scenarios not run (skip, --only)
    std::uint32_t not_expressible = 0;  // rows the model cannot reproduce
};

// max(a/b, b/a); +inf when either is not positive.
double error_factor(double a, double b);
// Both ratios on the same side of 1 beyond kSignTolerance, or both within it of 1 (a ratio
// within 2% of 1 is "no change", on neither side).
bool same_sign(double r_pub, double r_sim);

// The row's simulated value in its unit from one run's result document: the phase's time (the
// aggregate of the phases a "*" pattern matches) or the stat. A phase or stat the run lacks is
// a ScenarioError at the row's pointer.
double simulated_value(const scenario::PublishedRow& row, const nlohmann::json& result, const std::string& file);

// The row's columns from the simulated values (means over seeds) of the variants it names.
CheckedRow check_row(const std::string& config, const std::string& file, const scenario::PublishedRow& row,
                     double sim_before_or_value, double sim_after);
// A row of a scenario that was not run.
CheckedRow skipped_row(const std::string& config, const std::string& file, const scenario::PublishedRow& row,
                       const std::string& why);

Summary summarize(const std::vector<CheckedRow>& rows);
// The table, one line per row, and the summary line last.
void print_published(std::ostream& os, const std::vector<CheckedRow>& rows);
std::string summary_line(const Summary& s);
// The document `check-published --json` writes; `runs` lists the runs made (config, variant,
// seed, wall_time_s, events).
nlohmann::ordered_json published_json(const std::vector<CheckedRow>& rows, const nlohmann::ordered_json& runs,
                                      std::uint64_t seeds);

}  // namespace kvmsim::report
