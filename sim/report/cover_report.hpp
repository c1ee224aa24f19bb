// `kvmsim report RESULTS...`: one self-contained document from saved result documents
// (result.schema.json), for a patch's cover letter (Markdown) or a browser (HTML, plots as
// inline SVG, no external assets). Results are grouped as `kvmsim compare` groups runs: one
// group per scenario (name and file hash), one column per variant (the first variant given is
// the baseline), the runs of a variant matched to the other variants' by seed.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sim/report/compare.hpp"

namespace kvmsim::report {

enum class ReportFormat { Markdown, Html };

// One result document and the file it came from.
struct ReportInput {
    std::string path;
    nlohmann::json doc;
};

// A scenario's runs, grouped: variants (baseline first), the seeds every variant has, and
// runs[v][s] the document of variant v at seeds[s].
struct ReportGroup {
    std::string scenario;
    std::string scenario_sha256;
    std::vector<std::string> variants;
    std::vector<std::uint64_t> seeds;
    std::vector<std::vector<const ReportInput*>> runs;
    std::vector<std::string> dropped;  // inputs left out (a seed not every variant has), why
    CompareResult comparison;
};

// What the report says about the binary that wrote it (provenance).
struct ReportContext {
    std::string kvmsim_version;
    std::string build_id;
};
// This binary's version and kvmsim_build_id.
ReportContext this_build();

// Groups the inputs (the groups point into `inputs`, which must outlive them). Throws ReportError for inputs that cannot be grouped (not a result
// document, no seed common to a scenario's variants, an unknown --baseline).
struct ReportError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
std::vector<ReportGroup> group_results(const std::vector<ReportInput>& inputs, const std::string& baseline = "");
std::vector<ReportGroup> group_results(std::vector<ReportInput>&& inputs, const std::string& baseline = "") = delete;

// The whole document.
std::string render_report(const std::vector<ReportGroup>& groups, ReportFormat format, const ReportContext& ctx);

// The phase-time plot of a group as an SVG element (grouped bars: a group per selftest phase,
// or every phase when the selftest reports none; a bar per variant, its mean over the seeds
// with a whisker for the spread of the seeds).
std::string phase_svg(const ReportGroup& g);

// Numbers as people read them: 1,234,567; 12.35 ms; +70.69%.
std::string thousands(double v);
std::string human_ns(double ns);

// What `kvmsim report RESULTS... [--format md|html] [-o FILE] [--baseline VARIANT]` asks for; the
// command line (sim/cli) parses it.
struct ReportRequest {
    std::vector<std::string> files;
    std::optional<ReportFormat> format;  // unset: html when `output` ends in .html, else Markdown
    std::string output;                  // empty: the document goes to `out`
    std::string baseline;                // empty: the first variant given
};

// Reads the results, groups them and writes the document. Returns the exit status (2 for bad
// input, with the message on err).
int write_report(const ReportRequest& req, std::ostream& out, std::ostream& err, const ReportContext& ctx = this_build());

}  // namespace kvmsim::report
