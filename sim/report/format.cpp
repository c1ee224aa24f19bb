#include "sim/report/format.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kvmsim::report {

namespace {
// Digits of a non-negative integer with a comma every three.
std::string grouped(unsigned long long n) {
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}
}  // namespace

std::string format_count(double v) {
    if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v < 0 ? "-inf" : "inf");
    const double a = std::fabs(v);
    if (a >= 1e18) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.4g", v);
        return buf;
    }
    // Tenths, rounded once: 119700.25 -> 1197003 tenths.
    const auto tenths = static_cast<unsigned long long>(std::llround(a * 10));
    std::string s = (v < 0 && tenths != 0 ? "-" : "") + grouped(tenths / 10);
    if (tenths % 10 != 0) s += "." + std::to_string(tenths % 10);
    return s;
}

std::string format_duration_ns(double ns) {
    if (!std::isfinite(ns)) return std::isnan(ns) ? "nan" : (ns < 0 ? "-inf" : "inf");
    if (ns == 0) return "0ns";
    // Round to 4 significant digits first, so that 999.96us becomes 1.000ms, not 1000us.
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.3e", std::fabs(ns));
    const double a = std::strtod(buf, nullptr);
    const char* sign = ns < 0 ? "-" : "";
    static constexpr struct {
        double scale;
        const char* unit;
    } units[] = {{1e9, "s"}, {1e6, "ms"}, {1e3, "us"}, {1, "ns"}};
    for (const auto& u : units) {
        if (a < u.scale && u.scale != 1) continue;
        const double x = a / u.scale;
        if (x >= 1000) {  // only seconds get here
            return sign + grouped(static_cast<unsigned long long>(std::llround(x))) + u.unit;
        }
        const int decimals = x >= 100 ? 1 : x >= 10 ? 2 : x >= 1 ? 3 : 3 - static_cast<int>(std::floor(std::log10(x)));
        std::snprintf(buf, sizeof buf, "%s%.*f%s", sign, decimals, x, u.unit);
        return buf;
    }
    return "?";
}

std::string format_value(double v, std::string_view unit) {
    return unit == "ns" ? format_duration_ns(v) : format_count(v);
}

double round_significant(double v, int digits) {
    if (v == 0 || !std::isfinite(v)) return v;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    return std::strtod(buf, nullptr);
}

std::string format_pct(double pct) {
    if (std::fabs(pct) < 0.005) pct = 0;  // no "-0.00%"
    char buf[48];
    std::snprintf(buf, sizeof buf, "%+.2f%%", pct);
    return buf;
}

}  // namespace kvmsim::report
