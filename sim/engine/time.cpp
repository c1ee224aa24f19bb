#include "sim/engine/time.hpp"

#include <cinttypes>
#include <cstdio>
#include <ostream>

namespace kvmsim::engine {

std::string Time::str() const {
    struct Unit { std::int64_t scale; const char* name; };
    static constexpr Unit units[] = {
        {1'000'000'000'000, "s"}, {1'000'000'000, "ms"}, {1'000'000, "us"}, {1'000, "ns"}};
    const std::int64_t mag = v_ < 0 ? -v_ : v_;
    for (const Unit& u : units) {
        if (mag >= u.scale) {
            // Integer formatting keeps the printed value exact to the displayed digit.
            const std::int64_t whole = mag / u.scale;
            const std::int64_t frac = (mag % u.scale) * 1000 / u.scale;
            char buf[64];
            if (frac == 0)
                std::snprintf(buf, sizeof buf, "%s%" PRId64 "%s", v_ < 0 ? "-" : "", whole, u.name);
            else {
                int n = std::snprintf(buf, sizeof buf, "%s%" PRId64 ".%03" PRId64, v_ < 0 ? "-" : "",
                                      whole, frac);
                while (n > 0 && buf[n - 1] == '0') buf[--n] = '\0';
                std::snprintf(buf + n, sizeof buf - static_cast<std::size_t>(n), "%s", u.name);
            }
            return buf;
        }
    }
    return std::to_string(v_) + "ps";
}

std::ostream& operator<<(std::ostream& os, Time t) { return os << t.str(); }

}  // namespace kvmsim::engine
