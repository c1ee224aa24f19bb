// Unit strings in scenarios, parsed exactly: the digits are read as a decimal fraction and scaled
// with integer arithmetic, so "1.1ns" is exactly 1100 ps and "1.5K" exactly 1536 bytes. A value
// that is not a whole number of the base unit is an error, never rounded.
//
// Sizes (bytes, std::uint64_t). Binary units only (1K = 1024 bytes, as in the kernel):
//   "512" or "512B"              bytes
//   "4K" "4k" "4KiB"             * 2^10      "2M" "2m" "2MiB"   * 2^20
//   "20G" "20g" "20GiB"          * 2^30      "1T" "1t" "1TiB"   * 2^40
//   "1P" "1p" "1PiB"             * 2^50
//   A decimal fraction is allowed when the result is whole: "1.5K" = 1536, "1.3K" is an error.
//   "4KB", "4kB", "4MB", ... are rejected as ambiguous (SI or binary?), with a hint.
// Times (engine::Time, integer picoseconds, non-negative): "90ps" "1.5ns" "15us" (also "µs",
//   "μs") "3ms" "2s". A unit is required: a bare number is an error.
// Frequencies (Hz, std::uint64_t): "50Hz" "800kHz" (also "KHz") "800MHz" "3.1GHz". A unit is
//   required.
// Bandwidths (bytes per second, std::uint64_t): "85GB/s" "12.5GB/s" "800MB/s" "64KB/s" "100B/s"
//   with decimal multiples (KB/s, also kB/s, = 10^3; MB/s 10^6; GB/s 10^9; TB/s 10^12), or
//   "20GiB/s" "512MiB/s" "4KiB/s" "1TiB/s" with binary ones (2^10 ... 2^40). A unit is
//   required; the value must be a whole number of bytes per second.
// Common syntax: DIGITS[.DIGITS]UNIT with no sign, no spaces and no exponent; leading zeros
// are allowed. A leading '-' is reported as "expected a non-negative ...".
//
// Each parser returns the value or a message saying what was expected and what was got; the
// caller adds the file and JSON pointer (see Node::get_size and friends in json_util.hpp).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/engine/time.hpp"

namespace kvmsim::scenario {

// A value or an error message (std::expected is C++23).
template <class T>
class Parsed {
public:
    static Parsed success(T value) { return Parsed(std::move(value), {}, true); }
    static Parsed failure(std::string message) { return Parsed(T{}, std::move(message), false); }

    bool ok() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    // Throws std::logic_error when !ok() (a programming error, not a user error).
    const T& value() const {
        if (!ok_) throw std::logic_error("Parsed::value() on a failed parse: " + error_);
        return value_;
    }
    // Empty when ok().
    const std::string& error() const noexcept { return error_; }

private:
    Parsed(T value, std::string error, bool ok)
        : value_(std::move(value)), error_(std::move(error)), ok_(ok) {}
    T value_;
    std::string error_;
    bool ok_;
};

Parsed<std::uint64_t> parse_size(std::string_view text);
Parsed<engine::Time> parse_time(std::string_view text);
Parsed<std::uint64_t> parse_frequency(std::string_view text);
Parsed<std::uint64_t> parse_bandwidth(std::string_view text);

// The unit suffixes each parser accepts ("" for a plain size in bytes), for the scenario
// schema's patterns (schema.hpp).
std::vector<std::string> size_units();
std::vector<std::string> time_units();
std::vector<std::string> frequency_units();
std::vector<std::string> bandwidth_units();

// Exact formatting; the output parses back to the same value.
// Sizes: the largest binary unit that divides the value ("4K", "2M", "1536" for 1.5K, "0").
std::string format_size(std::uint64_t bytes);
// Times: the largest unit not above the value, with exact decimals ("1.5ns", "15us",
// "1.234567us", "0ps"); negative times get a leading '-'.
std::string format_time(engine::Time t);
// Frequencies: like times ("3.1GHz", "800MHz", "50Hz", "0Hz").
std::string format_frequency(std::uint64_t hz);
// Bandwidths: decimal units like frequencies ("85GB/s", "12.5GB/s", "1.073741824GB/s", "0B/s").
std::string format_bandwidth(std::uint64_t bytes_per_second);

// The phrases used in "expected ..." messages, for callers composing their own.
inline constexpr std::string_view kSizeExpectation =
    "a size such as \"4K\", \"2M\", \"20G\" or \"512\" (bytes)";
inline constexpr std::string_view kTimeExpectation =
    "a time such as \"15us\" (units ps, ns, us, ms, s)";
inline constexpr std::string_view kFrequencyExpectation =
    "a frequency such as \"3.1GHz\" or \"800MHz\" (units Hz, kHz, MHz, GHz)";
inline constexpr std::string_view kBandwidthExpectation =
    "a bandwidth such as \"85GB/s\" or \"20GiB/s\" (units B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, "
    "TiB/s)";

}  // namespace kvmsim::scenario
