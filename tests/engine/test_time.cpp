#include <catch2/catch.hpp>
#include <sstream>

#include "sim/engine/time.hpp"

using namespace kvmsim::engine;
using namespace kvmsim::engine::time_literals;

TEST_CASE("time literals are exact picoseconds", "[time]") {
    CHECK((1_ns).ps() == 1'000);
    CHECK((15_us).ps() == 15'000'000);
    CHECK((2_ms).ps() == 2'000'000'000);
    CHECK((3_s).ps() == 3'000'000'000'000);
    CHECK(1_us + 500_ns == Time::ps(1'500'000));
    CHECK(3 * 250_ps == 750_ps);
    CHECK(1_us / 4 == 250_ns);
    CHECK(1_us / 250_ns == 4);
    CHECK(1_ns < 1001_ps);
}

TEST_CASE("time prints in the largest fitting unit", "[time]") {
    CHECK((250_ps).str() == "250ps");
    CHECK((1_us + 500_ns).str() == "1.5us");
    CHECK((3_s).str() == "3s");
    CHECK((Time::ps(1'234'567)).str() == "1.234us");
    CHECK((Time::zero() - 2_ns).str() == "-2ns");
    std::ostringstream os;
    os << 20_ms;
    CHECK(os.str() == "20ms");
}
