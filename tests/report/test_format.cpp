#include <catch2/catch.hpp>

#include "sim/report/format.hpp"

using namespace kvmsim;

TEST_CASE("counters print with thousands separators, not in exponent form", "[report][format]") {
    CHECK(report::format_count(0) == "0");
    CHECK(report::format_count(7) == "7");
    CHECK(report::format_count(999) == "999");
    CHECK(report::format_count(1000) == "1,000");
    CHECK(report::format_count(119700) == "119,700");
    CHECK(report::format_count(1234567890) == "1,234,567,890");
    CHECK(report::format_count(-32499) == "-32,499");
    // A mean over seeds keeps one decimal.
    CHECK(report::format_count(119700.25) == "119,700.3");
    CHECK(report::format_count(13.6667) == "13.7");
    CHECK(report::format_count(-0.04) == "0");
    CHECK(report::round_significant(1067461.6, 4) == 1067000);
    CHECK(report::round_significant(-396949, 4) == -396900);
}

TEST_CASE("times print in ns, us, ms or s with 4 significant digits", "[report][format]") {
    CHECK(report::format_duration_ns(0) == "0ns");
    CHECK(report::format_duration_ns(812) == "812.0ns");
    CHECK(report::format_duration_ns(34120) == "34.12us");
    CHECK(report::format_duration_ns(116.4e6) == "116.4ms");
    CHECK(report::format_duration_ns(34.1234e6) == "34.12ms");
    CHECK(report::format_duration_ns(1.23e9) == "1.230s");
    CHECK(report::format_duration_ns(6.84341e9) == "6.843s");
    CHECK(report::format_duration_ns(6.84341e12) == "6,843s");  // was "6.84341e+09us"
    CHECK(report::format_duration_ns(-26.75e6) == "-26.75ms");
    // Rounding to 4 digits first: 999.96 us is 1.000 ms, not 1000 us.
    CHECK(report::format_duration_ns(999960) == "1.000ms");
    CHECK(report::format_duration_ns(0.5) == "0.5000ns");
    CHECK(report::format_value(1500, "ns") == "1.500us");
    CHECK(report::format_value(1500, "count") == "1,500");
}

TEST_CASE("changes print with a sign and two decimals", "[report][format]") {
    CHECK(report::format_pct(-70.6899) == "-70.69%");
    CHECK(report::format_pct(248.2249) == "+248.22%");
    CHECK(report::format_pct(-0.001) == "+0.00%");
}
