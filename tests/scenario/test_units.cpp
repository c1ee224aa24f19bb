#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "sim/scenario/units.hpp"

using namespace kvmsim::scenario;
using kvmsim::engine::Time;

namespace {
std::uint64_t size_of(const char* s) {
    const auto p = parse_size(s);
    INFO(s << ": " << p.error());
    REQUIRE(p.ok());
    return p.value();
}
std::string size_error(const char* s) {
    const auto p = parse_size(s);
    INFO(s);
    REQUIRE_FALSE(p.ok());
    return p.error();
}
std::int64_t ps_of(const char* s) {
    const auto p = parse_time(s);
    INFO(s << ": " << p.error());
    REQUIRE(p.ok());
    return p.value().ps();
}
std::string time_error(const char* s) {
    const auto p = parse_time(s);
    INFO(s);
    REQUIRE_FALSE(p.ok());
    return p.error();
}
std::uint64_t hz_of(const char* s) {
    const auto p = parse_frequency(s);
    INFO(s << ": " << p.error());
    REQUIRE(p.ok());
    return p.value();
}
std::string frequency_error(const char* s) {
    const auto p = parse_frequency(s);
    INFO(s);
    REQUIRE_FALSE(p.ok());
    return p.error();
}
constexpr std::uint64_t K = 1024;
const std::string kSizeSyntax = R"(expected a size such as "4K", "2M", "20G" or "512" (bytes), got )";
const std::string kTimeSyntax = R"(expected a time such as "15us" (units ps, ns, us, ms, s), got )";
const std::string kFreqSyntax =
    R"(expected a frequency such as "3.1GHz" or "800MHz" (units Hz, kHz, MHz, GHz), got )";
}  // namespace

TEST_CASE("parse_size accepts bytes and binary K/M/G/T/P with optional iB", "[scenario][units]") {
    CHECK(size_of("0") == 0);
    CHECK(size_of("512") == 512);
    CHECK(size_of("512B") == 512);
    CHECK(size_of("4K") == 4 * K);
    CHECK(size_of("4k") == 4 * K);
    CHECK(size_of("4KiB") == 4 * K);
    CHECK(size_of("2M") == 2 * K * K);
    CHECK(size_of("2m") == 2 * K * K);
    CHECK(size_of("2MiB") == 2 * K * K);
    CHECK(size_of("20G") == 20 * K * K * K);
    CHECK(size_of("20g") == 20 * K * K * K);
    CHECK(size_of("20GiB") == 20 * K * K * K);
    CHECK(size_of("1T") == K * K * K * K);
    CHECK(size_of("1t") == K * K * K * K);
    CHECK(size_of("1TiB") == K * K * K * K);
    CHECK(size_of("1P") == K * K * K * K * K);
    CHECK(size_of("1p") == K * K * K * K * K);
    CHECK(size_of("1PiB") == K * K * K * K * K);
    CHECK(size_of("007K") == 7 * K);
    CHECK(size_of("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
    CHECK(size_of("16383P") == 16383 * K * K * K * K * K);
}

TEST_CASE("parse_size accepts fractions only when the byte count is whole", "[scenario][units]") {
    CHECK(size_of("1.5K") == 1536);
    CHECK(size_of("1.50K") == 1536);
    CHECK(size_of("0.5M") == 512 * K);
    CHECK(size_of("1.25G") == 1280 * K * K);
    CHECK(size_of("0.0009765625K") == 1);  // 2^-10 K
    CHECK(size_of("2.000000000000000000000000000M") == 2 * K * K);
    CHECK(size_of("3.0") == 3);
    CHECK(size_error("1.3K") == R"(expected a whole number of bytes, got "1.3K")");
    CHECK(size_error("1.5") == R"(expected a whole number of bytes, got "1.5")");
    CHECK(size_error("0.0001K") == R"(expected a whole number of bytes, got "0.0001K")");
    CHECK(size_error("1.0000000000000000001") ==
          R"(expected a size with at most 18 decimal places, got "1.0000000000000000001")");
}

TEST_CASE("parse_size rejections say what was expected", "[scenario][units]") {
    CHECK(size_error("") == kSizeSyntax + R"("")");
    CHECK(size_error("K") == kSizeSyntax + R"("K")");
    CHECK(size_error("4X") == kSizeSyntax + R"("4X")");
    CHECK(size_error("4Ki") == kSizeSyntax + R"("4Ki")");
    CHECK(size_error("4kib") == kSizeSyntax + R"("4kib")");
    CHECK(size_error("4kiB") == kSizeSyntax + R"("4kiB")");
    CHECK(size_error(".5K") == kSizeSyntax + R"(".5K")");
    CHECK(size_error("5.K") == kSizeSyntax + R"("5.K")");
    CHECK(size_error("+4K") == kSizeSyntax + R"("+4K")");
    CHECK(size_error("1e3") == kSizeSyntax + R"("1e3")");
    CHECK(size_error("0x10") == kSizeSyntax + R"("0x10")");
    CHECK(size_error("4 K") == kSizeSyntax + R"("4 K" (no spaces allowed))");
    CHECK(size_error(" 4K") == kSizeSyntax + R"(" 4K" (no spaces allowed))");
    CHECK(size_error("4K\n") == kSizeSyntax + R"("4K\n" (no spaces allowed))");
    CHECK(size_error("-4K") == R"(expected a non-negative size, got "-4K")");
    CHECK(size_error("-0") == R"(expected a non-negative size, got "-0")");
    CHECK(size_error("4KB") == kSizeSyntax +
                                   R"("4KB" ("KB" is ambiguous: write "4K" or "4KiB"; sizes are binary, 1K = 1024 bytes))");
    CHECK(size_error("1.5kB") == kSizeSyntax +
                                     R"("1.5kB" ("kB" is ambiguous: write "1.5k" or "1.5KiB"; sizes are binary, 1K = 1024 bytes))");
    CHECK(size_error("2MB") == kSizeSyntax +
                                   R"("2MB" ("MB" is ambiguous: write "2M" or "2MiB"; sizes are binary, 1K = 1024 bytes))");
    CHECK(size_error("16384P") == R"(expected a size below 16384P (2^64 bytes), got "16384P")");
    CHECK(size_error("18446744073709551616") ==
          R"(expected a size below 16384P (2^64 bytes), got "18446744073709551616")");
    CHECK(size_error("99999999999999999999999999999999999999999K") ==
          R"(expected a size below 16384P (2^64 bytes), got "99999999999999999999999999999999999999999K")");
    // Long input is cut in the message.
    const std::string long_text(100, 'x');
    CHECK(parse_size(long_text).error() == kSizeSyntax + "\"" + std::string(60, 'x') + "\"...");
}

TEST_CASE("parse_time: every unit, exact decimal picoseconds", "[scenario][units]") {
    CHECK(ps_of("0ps") == 0);
    CHECK(ps_of("90ps") == 90);
    CHECK(ps_of("250ns") == 250'000);
    CHECK(ps_of("1.5ns") == 1'500);
    CHECK(ps_of("1.1ns") == 1'100);  // exactly: no binary floating point involved
    CHECK(ps_of("0.001ns") == 1);
    CHECK(ps_of("15us") == 15'000'000);
    CHECK(ps_of("15\xc2\xb5s") == 15'000'000);  // µs (micro sign)
    CHECK(ps_of("15\xce\xbcs") == 15'000'000);  // μs (Greek mu)
    CHECK(ps_of("0.1us") == 100'000);
    CHECK(ps_of("3ms") == 3'000'000'000);
    CHECK(ps_of("2s") == 2'000'000'000'000);
    CHECK(ps_of("0.000000000001s") == 1);
    CHECK(ps_of("1.000000000001s") == 1'000'000'000'001);
    CHECK(ps_of("2.50000000000000000000000ns") == 2'500);
    CHECK(ps_of("9223372036854775807ps") == std::numeric_limits<std::int64_t>::max());
    CHECK(ps_of("9223372.036854775807s") == std::numeric_limits<std::int64_t>::max());
    CHECK(parse_time("15us").value() == Time::us(15));
}

TEST_CASE("parse_time rejections", "[scenario][units]") {
    CHECK(time_error("15") == R"(expected a time such as "15us", got "15" (add a unit: ps, ns, us, ms or s))");
    CHECK(time_error("0") == R"(expected a time such as "15us", got "0" (add a unit: ps, ns, us, ms or s))");
    CHECK(time_error("1.5") == R"(expected a time such as "15us", got "1.5" (add a unit: ps, ns, us, ms or s))");
    CHECK(time_error("0.5ps") == R"(expected a whole number of picoseconds, got "0.5ps")");
    CHECK(time_error("1.0005ns") == R"(expected a whole number of picoseconds, got "1.0005ns")");
    CHECK(time_error("1.0000000000001s") ==
          R"(expected a whole number of picoseconds, got "1.0000000000001s")");
    CHECK(time_error("1.0000000000000000000000001ns") ==
          R"(expected a whole number of picoseconds, got "1.0000000000000000000000001ns")");
    CHECK(time_error("-5us") == R"(expected a non-negative time, got "-5us")");
    CHECK(time_error("9223372036854775808ps") ==
          R"(expected a time of at most 9223372.036854775807s, got "9223372036854775808ps")");
    CHECK(time_error("9223372.036854775808s") ==
          R"(expected a time of at most 9223372.036854775807s, got "9223372.036854775808s")");
    CHECK(time_error("10000000s") == R"(expected a time of at most 9223372.036854775807s, got "10000000s")");
    CHECK(time_error("15 us") == kTimeSyntax + R"("15 us" (no spaces allowed))");
    CHECK(time_error("15US") == kTimeSyntax + R"("15US")");
    CHECK(time_error("15sec") == kTimeSyntax + R"("15sec")");
    CHECK(time_error("15m") == kTimeSyntax + R"("15m")");
    CHECK(time_error("us") == kTimeSyntax + R"("us")");
    CHECK(time_error("") == kTimeSyntax + R"("")");
    CHECK(time_error("1e3ns") == kTimeSyntax + R"("1e3ns")");
}

TEST_CASE("parse_frequency: units and rejections", "[scenario][units]") {
    CHECK(hz_of("3.1GHz") == 3'100'000'000);
    CHECK(hz_of("2.4GHz") == 2'400'000'000);
    CHECK(hz_of("1.000000001GHz") == 1'000'000'001);
    CHECK(hz_of("800MHz") == 800'000'000);
    CHECK(hz_of("800kHz") == 800'000);
    CHECK(hz_of("800KHz") == 800'000);
    CHECK(hz_of("50Hz") == 50);
    CHECK(hz_of("0Hz") == 0);
    CHECK(hz_of("18446744073.709551615GHz") == std::numeric_limits<std::uint64_t>::max());
    CHECK(frequency_error("3.1") ==
          R"(expected a frequency such as "3.1GHz", got "3.1" (add a unit: Hz, kHz, MHz or GHz))");
    CHECK(frequency_error("0.5Hz") == R"(expected a whole number of Hz, got "0.5Hz")");
    CHECK(frequency_error("1.0000000001GHz") == R"(expected a whole number of Hz, got "1.0000000001GHz")");
    CHECK(frequency_error("-1GHz") == R"(expected a non-negative frequency, got "-1GHz")");
    CHECK(frequency_error("18446744073.709551616GHz") ==
          R"(expected a frequency of at most 18446744073.709551615GHz, got "18446744073.709551616GHz")");
    CHECK(frequency_error("3.1ghz") == kFreqSyntax + R"("3.1ghz")");
    CHECK(frequency_error("3.1 GHz") == kFreqSyntax + R"("3.1 GHz" (no spaces allowed))");
    CHECK(frequency_error("GHz") == kFreqSyntax + R"("GHz")");
}

TEST_CASE("format_size, format_time, format_frequency are exact and round-trip", "[scenario][units]") {
    CHECK(format_size(0) == "0");
    CHECK(format_size(512) == "512");
    CHECK(format_size(1536) == "1536");
    CHECK(format_size(4 * K) == "4K");
    CHECK(format_size(1025 * K) == "1025K");
    CHECK(format_size(2 * K * K) == "2M");
    CHECK(format_size(20 * K * K * K) == "20G");
    CHECK(format_size(K * K * K * K) == "1T");
    CHECK(format_size(3 * K * K * K * K * K) == "3P");
    CHECK(format_size(16384 * K * K * K * K * K - 1) == "18446744073709551615");

    CHECK(format_time(Time::zero()) == "0ps");
    CHECK(format_time(Time::ps(90)) == "90ps");
    CHECK(format_time(Time::ps(1500)) == "1.5ns");
    CHECK(format_time(Time::ps(1'234'567)) == "1.234567us");
    CHECK(format_time(Time::us(15)) == "15us");
    CHECK(format_time(Time::ms(3)) == "3ms");
    CHECK(format_time(Time::s(2)) == "2s");
    CHECK(format_time(Time::max()) == "9223372.036854775807s");
    CHECK(format_time(Time::zero() - Time::ns(2)) == "-2ns");
    CHECK(format_time(Time::ps(std::numeric_limits<std::int64_t>::min())) == "-9223372.036854775808s");

    CHECK(format_frequency(0) == "0Hz");
    CHECK(format_frequency(50) == "50Hz");
    CHECK(format_frequency(800'000) == "800kHz");
    CHECK(format_frequency(800'000'000) == "800MHz");
    CHECK(format_frequency(3'100'000'000) == "3.1GHz");

    for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1536}, 4 * K, 3 * K * K + 1,
                            std::numeric_limits<std::uint64_t>::max()}) {
        CHECK(parse_size(format_size(v)).value() == v);
        CHECK(parse_frequency(format_frequency(v)).value() == v);
    }
    for (std::int64_t v : {std::int64_t{0}, std::int64_t{1}, std::int64_t{999}, std::int64_t{1'000'001},
                           std::int64_t{123'456'789'012'345}, std::numeric_limits<std::int64_t>::max()})
        CHECK(parse_time(format_time(Time::ps(v))).value() == Time::ps(v));
}

TEST_CASE("Parsed::value on a failed parse throws logic_error, not UB", "[scenario][units]") {
    const auto p = parse_size("nope");
    CHECK_FALSE(p);
    CHECK_THROWS_AS(p.value(), std::logic_error);
    const auto q = parse_size("4K");
    CHECK(q);
    CHECK(q.error().empty());
}

namespace {
std::uint64_t bps_of(const char* s) {
    const auto p = parse_bandwidth(s);
    INFO(s << ": " << p.error());
    REQUIRE(p.ok());
    return p.value();
}
std::string bandwidth_error(const char* s) {
    const auto p = parse_bandwidth(s);
    INFO(s);
    REQUIRE_FALSE(p.ok());
    return p.error();
}
const std::string kBwSyntax =
    R"(expected a bandwidth such as "85GB/s" or "20GiB/s" (units B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s), got )";
}  // namespace

TEST_CASE("parse_bandwidth: decimal and binary units, exactly", "[scenario][units]") {
    CHECK(bps_of("0B/s") == 0);
    CHECK(bps_of("100B/s") == 100);
    CHECK(bps_of("64KB/s") == 64'000);
    CHECK(bps_of("64kB/s") == 64'000);
    CHECK(bps_of("800MB/s") == 800'000'000);
    CHECK(bps_of("85GB/s") == 85'000'000'000ULL);
    CHECK(bps_of("12.5GB/s") == 12'500'000'000ULL);
    CHECK(bps_of("187.712GB/s") == 187'712'000'000ULL);
    CHECK(bps_of("1TB/s") == 1'000'000'000'000ULL);
    CHECK(bps_of("4KiB/s") == 4096);
    CHECK(bps_of("512MiB/s") == 512ULL << 20);
    CHECK(bps_of("20GiB/s") == 20ULL << 30);
    CHECK(bps_of("1.5GiB/s") == 3ULL << 29);
    CHECK(bps_of("1TiB/s") == 1ULL << 40);
    CHECK(bps_of("007GB/s") == 7'000'000'000ULL);
}

TEST_CASE("parse_bandwidth: rejections say what was expected", "[scenario][units]") {
    CHECK(bandwidth_error("85") ==
          R"(expected a bandwidth such as "85GB/s", got "85" (add a unit: B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s))");
    CHECK(bandwidth_error("85GB") == kBwSyntax + R"("85GB")");
    CHECK(bandwidth_error("85Gb/s") == kBwSyntax + R"("85Gb/s")");
    CHECK(bandwidth_error("85gb/s") == kBwSyntax + R"("85gb/s")");
    CHECK(bandwidth_error("85 GB/s") == kBwSyntax + R"("85 GB/s" (no spaces allowed))");
    CHECK(bandwidth_error("GB/s") == kBwSyntax + R"("GB/s")");
    CHECK(bandwidth_error("1.5B/s") == R"(expected a whole number of bytes per second, got "1.5B/s")");
    CHECK(bandwidth_error("1.0001KB/s") == R"(expected a whole number of bytes per second, got "1.0001KB/s")");
    CHECK(bandwidth_error("-1GB/s") == R"(expected a non-negative bandwidth, got "-1GB/s")");
    CHECK(bandwidth_error("18446744073.709551616GB/s") ==
          R"(expected a bandwidth of at most 18446744.073709551615TB/s, got "18446744073.709551616GB/s")");
    CHECK(bandwidth_error("20000000TB/s") ==
          R"(expected a bandwidth of at most 18446744.073709551615TB/s, got "20000000TB/s")");
}

TEST_CASE("format_bandwidth is exact and round-trips", "[scenario][units]") {
    CHECK(format_bandwidth(0) == "0B/s");
    CHECK(format_bandwidth(100) == "100B/s");
    CHECK(format_bandwidth(64'000) == "64KB/s");
    CHECK(format_bandwidth(85'000'000'000ULL) == "85GB/s");
    CHECK(format_bandwidth(12'500'000'000ULL) == "12.5GB/s");
    CHECK(format_bandwidth(1ULL << 30) == "1.073741824GB/s");
    for (std::uint64_t v : std::initializer_list<std::uint64_t>{0, 1, 999, 1000, 1ULL << 30, 187'712'000'000ULL,
                                                                3'000'000'000'000ULL,
                                                                std::numeric_limits<std::uint64_t>::max()})
        CHECK(parse_bandwidth(format_bandwidth(v)).value() == v);
}
