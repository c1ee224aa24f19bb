// Simulated time: integer picoseconds in a strong type, so that no float rounding or unit
// confusion can creep into event ordering.
#pragma once

#include <compare>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <string>

namespace kvmsim::engine {

// 128-bit sums (GCC/Clang extension; __extension__ keeps -Wpedantic quiet).
__extension__ typedef unsigned __int128 uint128_t;

class Time {
public:
    constexpr Time() = default;
    static constexpr Time ps(std::int64_t v) { return Time(v); }
    static constexpr Time ns(std::int64_t v) { return Time(v * 1'000); }
    static constexpr Time us(std::int64_t v) { return Time(v * 1'000'000); }
    static constexpr Time ms(std::int64_t v) { return Time(v * 1'000'000'000); }
    static constexpr Time s(std::int64_t v) { return Time(v * 1'000'000'000'000); }
    static constexpr Time zero() { return Time(0); }
    static constexpr Time max() { return Time(std::numeric_limits<std::int64_t>::max()); }

    constexpr std::int64_t ps() const { return v_; }
    constexpr double to_ns() const { return static_cast<double>(v_) / 1e3; }
    constexpr double to_us() const { return static_cast<double>(v_) / 1e6; }
    constexpr double to_s() const { return static_cast<double>(v_) / 1e12; }

    constexpr auto operator<=>(const Time&) const = default;
    constexpr Time operator+(Time o) const { return Time(v_ + o.v_); }
    constexpr Time operator-(Time o) const { return Time(v_ - o.v_); }
    constexpr Time& operator+=(Time o) { v_ += o.v_; return *this; }
    constexpr Time& operator-=(Time o) { v_ -= o.v_; return *this; }
    constexpr Time operator*(std::int64_t k) const { return Time(v_ * k); }
    friend constexpr Time operator*(std::int64_t k, Time t) { return Time(k * t.v_); }
    constexpr Time operator/(std::int64_t k) const { return Time(v_ / k); }
    constexpr std::int64_t operator/(Time o) const { return v_ / o.v_; }

    // "1.5us", "250ps", "3s": the largest unit that keeps the value >= 1, up to 3 decimals.
    std::string str() const;

private:
    constexpr explicit Time(std::int64_t v) : v_(v) {}
    std::int64_t v_ = 0;
};

std::ostream& operator<<(std::ostream& os, Time t);

namespace time_literals {
constexpr Time operator""_ps(unsigned long long v) { return Time::ps(static_cast<std::int64_t>(v)); }
constexpr Time operator""_ns(unsigned long long v) { return Time::ns(static_cast<std::int64_t>(v)); }
constexpr Time operator""_us(unsigned long long v) { return Time::us(static_cast<std::int64_t>(v)); }
constexpr Time operator""_ms(unsigned long long v) { return Time::ms(static_cast<std::int64_t>(v)); }
constexpr Time operator""_s(unsigned long long v) { return Time::s(static_cast<std::int64_t>(v)); }
}  // namespace time_literals

}  // namespace kvmsim::engine
