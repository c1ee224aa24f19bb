#include "sim/scenario/units.hpp"

#include <array>
#include <limits>
#include <optional>

#include "sim/scenario/error.hpp"

namespace kvmsim::scenario {

namespace {

using u128 = engine::uint128_t;

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kI64Max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
// At most this many significant fractional digits: 10^18 < 2^60, so fraction * unit
// (unit <= 2^50) fits comfortably in 128 bits.
constexpr std::size_t kMaxFractionDigits = 18;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool has_space(std::string_view s) {
    for (char c : s)
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') return true;
    return false;
}

// "DIGITS[.DIGITS]SUFFIX"; nullopt if the number part is malformed.
struct Number {
    std::string_view whole, fraction, suffix;
};

std::optional<Number> split_number(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i == 0) return std::nullopt;
    Number n;
    n.whole = s.substr(0, i);
    if (i < s.size() && s[i] == '.') {
        std::size_t j = i + 1;
        while (j < s.size() && is_digit(s[j])) ++j;
        if (j == i + 1) return std::nullopt;  // "5." or "5.K"
        n.fraction = s.substr(i + 1, j - i - 1);
        i = j;
    }
    n.suffix = s.substr(i);
    return n;
}

enum class Scaled { Ok, NotWhole, TooPrecise, Overflow };

// n * unit, exactly, if it is a whole number not above max.
Scaled scale_exact(const Number& n, std::uint64_t unit, std::uint64_t max, std::uint64_t& out) {
    bool too_big = false;
    u128 whole = 0;
    for (char c : n.whole) {
        if (too_big) break;
        whole = whole * 10 + static_cast<unsigned>(c - '0');
        if (whole > kU64Max) too_big = true;
    }
    std::string_view frac = n.fraction;
    while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
    if (frac.size() > kMaxFractionDigits) return Scaled::TooPrecise;
    u128 frac_digits = 0, pow10 = 1;
    for (char c : frac) {
        frac_digits = frac_digits * 10 + static_cast<unsigned>(c - '0');
        pow10 *= 10;
    }
    const u128 frac_scaled = frac_digits * unit;
    if (frac_scaled % pow10 != 0) return Scaled::NotWhole;
    if (too_big) return Scaled::Overflow;
    const u128 total = whole * unit + frac_scaled / pow10;
    if (total > max) return Scaled::Overflow;
    out = static_cast<std::uint64_t>(total);
    return Scaled::Ok;
}

struct Unit {
    std::string_view name;
    std::uint64_t scale;
};

std::optional<std::uint64_t> find_unit(std::string_view suffix, std::span<const Unit> units) {
    for (const Unit& u : units)
        if (u.name == suffix) return u.scale;
    return std::nullopt;
}

std::string got(std::string_view text) { return ", got " + quote(text); }

std::string syntax_message(std::string_view expectation, std::string_view text) {
    std::string m = "expected " + std::string(expectation) + got(text);
    if (has_space(text)) m += " (no spaces allowed)";
    return m;
}

constexpr std::uint64_t KiB = 1ull << 10, MiB = 1ull << 20, GiB = 1ull << 30, TiB = 1ull << 40,
                        PiB = 1ull << 50;

constexpr std::array<Unit, 17> kSizeUnits{{
    {"", 1}, {"B", 1},
    {"K", KiB}, {"k", KiB}, {"KiB", KiB},
    {"M", MiB}, {"m", MiB}, {"MiB", MiB},
    {"G", GiB}, {"g", GiB}, {"GiB", GiB},
    {"T", TiB}, {"t", TiB}, {"TiB", TiB},
    {"P", PiB}, {"p", PiB}, {"PiB", PiB},
}};

constexpr std::array<Unit, 7> kTimeUnits{{
    {"ps", 1},
    {"ns", 1'000},
    {"us", 1'000'000}, {"\xc2\xb5s", 1'000'000} /* µs, U+00B5 */, {"\xce\xbcs", 1'000'000} /* μs, U+03BC */,
    {"ms", 1'000'000'000},
    {"s", 1'000'000'000'000},
}};

constexpr std::array<Unit, 5> kFrequencyUnits{{
    {"Hz", 1}, {"kHz", 1'000}, {"KHz", 1'000}, {"MHz", 1'000'000}, {"GHz", 1'000'000'000},
}};

constexpr std::array<Unit, 10> kBandwidthUnits{{
    {"B/s", 1},
    {"KB/s", 1'000}, {"kB/s", 1'000}, {"MB/s", 1'000'000}, {"GB/s", 1'000'000'000}, {"TB/s", 1'000'000'000'000},
    {"KiB/s", KiB}, {"MiB/s", MiB}, {"GiB/s", GiB}, {"TiB/s", TiB},
}};

bool is_ambiguous_size_suffix(std::string_view s) {
    return s.size() == 2 && std::string_view("KMGTPkmgtp").find(s[0]) != std::string_view::npos &&
           (s[1] == 'B' || s[1] == 'b');
}

// Exact decimal: v / scale with up to `digits` decimals, trailing zeros dropped.
std::string decimal(std::uint64_t v, std::uint64_t scale) {
    std::string out = std::to_string(v / scale);
    std::uint64_t rem = v % scale;
    if (rem == 0) return out;
    std::string frac;
    for (std::uint64_t s = scale / 10; s > 0; s /= 10) {
        frac += static_cast<char>('0' + rem / s);
        rem %= s;
    }
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    return out + "." + frac;
}

// Largest unit not above v (units in descending scale order; the last is the base unit).
std::string format_decimal(std::uint64_t v, std::span<const Unit> descending) {
    for (const Unit& u : descending)
        if (v >= u.scale) return decimal(v, u.scale) + std::string(u.name);
    return "0" + std::string(descending.back().name);
}

constexpr std::array<Unit, 5> kTimeFormat{{
    {"s", 1'000'000'000'000}, {"ms", 1'000'000'000}, {"us", 1'000'000}, {"ns", 1'000}, {"ps", 1},
}};
constexpr std::array<Unit, 5> kBandwidthFormat{{
    {"TB/s", 1'000'000'000'000}, {"GB/s", 1'000'000'000}, {"MB/s", 1'000'000}, {"KB/s", 1'000}, {"B/s", 1},
}};
constexpr std::array<Unit, 4> kFrequencyFormat{{
    {"GHz", 1'000'000'000}, {"MHz", 1'000'000}, {"kHz", 1'000}, {"Hz", 1},
}};

}  // namespace

Parsed<std::uint64_t> parse_size(std::string_view text) {
    using P = Parsed<std::uint64_t>;
    if (!text.empty() && text[0] == '-' && split_number(text.substr(1)))
        return P::failure("expected a non-negative size" + got(text));
    const auto n = split_number(text);
    if (!n) return P::failure(syntax_message(kSizeExpectation, text));
    if (is_ambiguous_size_suffix(n->suffix)) {
        const std::string number(text.substr(0, text.size() - 2));
        return P::failure("expected " + std::string(kSizeExpectation) + got(text) + " (" +
                          quote(n->suffix) + " is ambiguous: write " +
                          quote(number + n->suffix[0]) + " or " +
                          quote(number + static_cast<char>(n->suffix[0] & ~0x20) + "iB") +
                          "; sizes are binary, 1K = 1024 bytes)");
    }
    const auto unit = find_unit(n->suffix, kSizeUnits);
    if (!unit) return P::failure(syntax_message(kSizeExpectation, text));
    std::uint64_t bytes = 0;
    switch (scale_exact(*n, *unit, kU64Max, bytes)) {
    case Scaled::Ok: return P::success(bytes);
    case Scaled::NotWhole: return P::failure("expected a whole number of bytes" + got(text));
    case Scaled::TooPrecise:
        return P::failure("expected a size with at most 18 decimal places" + got(text));
    case Scaled::Overflow:
        return P::failure("expected a size below 16384P (2^64 bytes)" + got(text));
    }
    return P::failure(syntax_message(kSizeExpectation, text));
}

Parsed<engine::Time> parse_time(std::string_view text) {
    using P = Parsed<engine::Time>;
    if (!text.empty() && text[0] == '-' && split_number(text.substr(1)))
        return P::failure("expected a non-negative time" + got(text));
    const auto n = split_number(text);
    if (!n) return P::failure(syntax_message(kTimeExpectation, text));
    if (n->suffix.empty())
        return P::failure("expected a time such as \"15us\"" + got(text) +
                          " (add a unit: ps, ns, us, ms or s)");
    const auto unit = find_unit(n->suffix, kTimeUnits);
    if (!unit) return P::failure(syntax_message(kTimeExpectation, text));
    std::uint64_t ps = 0;
    switch (scale_exact(*n, *unit, kI64Max, ps)) {
    case Scaled::Ok: return P::success(engine::Time::ps(static_cast<std::int64_t>(ps)));
    case Scaled::NotWhole:
    case Scaled::TooPrecise:  // more than 18 significant decimals of a unit <= 1s: below 1ps
        return P::failure("expected a whole number of picoseconds" + got(text));
    case Scaled::Overflow:
        return P::failure("expected a time of at most " + format_time(engine::Time::max()) +
                          got(text));
    }
    return P::failure(syntax_message(kTimeExpectation, text));
}

Parsed<std::uint64_t> parse_frequency(std::string_view text) {
    using P = Parsed<std::uint64_t>;
    if (!text.empty() && text[0] == '-' && split_number(text.substr(1)))
        return P::failure("expected a non-negative frequency" + got(text));
    const auto n = split_number(text);
    if (!n) return P::failure(syntax_message(kFrequencyExpectation, text));
    if (n->suffix.empty())
        return P::failure("expected a frequency such as \"3.1GHz\"" + got(text) +
                          " (add a unit: Hz, kHz, MHz or GHz)");
    const auto unit = find_unit(n->suffix, kFrequencyUnits);
    if (!unit) return P::failure(syntax_message(kFrequencyExpectation, text));
    std::uint64_t hz = 0;
    switch (scale_exact(*n, *unit, kU64Max, hz)) {
    case Scaled::Ok: return P::success(hz);
    case Scaled::NotWhole:
    case Scaled::TooPrecise:
        return P::failure("expected a whole number of Hz" + got(text));
    case Scaled::Overflow:
        return P::failure("expected a frequency of at most " + format_frequency(kU64Max) + got(text));
    }
    return P::failure(syntax_message(kFrequencyExpectation, text));
}

Parsed<std::uint64_t> parse_bandwidth(std::string_view text) {
    using P = Parsed<std::uint64_t>;
    if (!text.empty() && text[0] == '-' && split_number(text.substr(1)))
        return P::failure("expected a non-negative bandwidth" + got(text));
    const auto n = split_number(text);
    if (!n) return P::failure(syntax_message(kBandwidthExpectation, text));
    if (n->suffix.empty())
        return P::failure("expected a bandwidth such as \"85GB/s\"" + got(text) +
                          " (add a unit: B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s)");
    const auto unit = find_unit(n->suffix, kBandwidthUnits);
    if (!unit) return P::failure(syntax_message(kBandwidthExpectation, text));
    std::uint64_t bps = 0;
    switch (scale_exact(*n, *unit, kU64Max, bps)) {
    case Scaled::Ok: return P::success(bps);
    case Scaled::NotWhole:
    case Scaled::TooPrecise:
        return P::failure("expected a whole number of bytes per second" + got(text));
    case Scaled::Overflow:
        return P::failure("expected a bandwidth of at most " + format_bandwidth(kU64Max) + got(text));
    }
    return P::failure(syntax_message(kBandwidthExpectation, text));
}

std::string format_bandwidth(std::uint64_t bytes_per_second) {
    return format_decimal(bytes_per_second, kBandwidthFormat);
}

std::string format_size(std::uint64_t bytes) {
    static constexpr std::array<Unit, 5> units{{{"P", PiB}, {"T", TiB}, {"G", GiB}, {"M", MiB}, {"K", KiB}}};
    for (const Unit& u : units)
        if (bytes != 0 && bytes % u.scale == 0) return std::to_string(bytes / u.scale) + std::string(u.name);
    return std::to_string(bytes);
}

std::string format_time(engine::Time t) {
    const std::int64_t ps = t.ps();
    if (ps >= 0) return format_decimal(static_cast<std::uint64_t>(ps), kTimeFormat);
    // -(ps + 1) + 1 avoids negating INT64_MIN.
    const std::uint64_t mag = static_cast<std::uint64_t>(-(ps + 1)) + 1;
    return "-" + format_decimal(mag, kTimeFormat);
}

std::string format_frequency(std::uint64_t hz) { return format_decimal(hz, kFrequencyFormat); }

template <std::size_t N>
std::vector<std::string> unit_names(const std::array<Unit, N>& units) {
    std::vector<std::string> out;
    for (const Unit& u : units) out.emplace_back(u.name);
    return out;
}

std::vector<std::string> size_units() { return unit_names(kSizeUnits); }
std::vector<std::string> time_units() { return unit_names(kTimeUnits); }
std::vector<std::string> frequency_units() { return unit_names(kFrequencyUnits); }
std::vector<std::string> bandwidth_units() { return unit_names(kBandwidthUnits); }

}  // namespace kvmsim::scenario
