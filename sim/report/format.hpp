// Numbers as people read them in kvmsim's tables and summaries: counters with thousands
// separators, times in ns/us/ms/s with 4 significant digits, changes with a sign.
#pragma once

#include <string>
#include <string_view>

namespace kvmsim::report {

// 119,700; a fractional mean keeps one decimal: 119,700.3.
std::string format_count(double v);
// 4 significant digits in the largest unit that keeps the value at least 1: 812ns, 34.12us,
// 116.4ms, 6.843s (12,345s past 1000 s).
std::string format_duration_ns(double ns);
// A metric's value by its unit: "ns" a duration, anything else ("count") a counter.
std::string format_value(double v, std::string_view unit);
// v rounded to `digits` significant digits (1,067,461.6 -> 1,067,000 for 4).
double round_significant(double v, int digits);
// +20.33%, -70.69%.
std::string format_pct(double pct);

}  // namespace kvmsim::report
