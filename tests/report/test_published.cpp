// check-published's arithmetic on hand-computed values.
#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>

#include "sim/report/published.hpp"

using namespace kvmsim;

namespace {
scenario::PublishedRow change_row(double before, double after, bool calibration) {
    scenario::PublishedRow r;
    r.pointer = "/published/rows/0";
    r.phase = "KVM_CREATE_MAPPINGS";
    r.unit = "s";
    r.before = scenario::PublishedValue{"before", before, {}};
    r.after = scenario::PublishedValue{"after", after, {}};
    r.calibration = calibration;
    return r;
}
}  // namespace

TEST_CASE("sign: up, down or no change (within 2% of 1) on both sides", "[report][published]") {
    CHECK(report::same_sign(0.5, 0.9));
    CHECK(report::same_sign(3.0, 1.1));
    CHECK_FALSE(report::same_sign(0.5, 1.1));
    CHECK(report::same_sign(1.01, 0.99));   // both within 2%
    CHECK(report::same_sign(1.0, 1.0));
    CHECK_FALSE(report::same_sign(1.03, 0.99));  // 3% up against 1% down
    CHECK_FALSE(report::same_sign(0.83, 1.0));   // a change against none
    CHECK(report::same_sign(1.02, 0.98));   // the 2% bound is inclusive
    CHECK_FALSE(report::same_sign(1.46, 1.0003));  // a missed change: "no change" is not "up"
    CHECK_FALSE(report::same_sign(0.07, 0.99));
    CHECK(report::same_sign(0.97, 0.5));
}

TEST_CASE("error factor and the columns of a change row", "[report][published]") {
    CHECK(report::error_factor(2, 1) == 2);
    CHECK(report::error_factor(1, 4) == 4);
    CHECK(std::isinf(report::error_factor(0, 1)));
    // Published 100 -> 50 (ratio 0.5), simulated 80 -> 30 (0.375): factor 0.5 / 0.375 = 4/3.
    const auto c = report::check_row("cfg", "f.json", change_row(100, 50, false), 80, 30);
    CHECK(c.pub_ratio == 0.5);
    CHECK(c.sim_ratio == 0.375);
    CHECK(c.error == Approx(4.0 / 3.0));
    CHECK(c.error_before == Approx(1.25));
    CHECK(c.error_after == Approx(50.0 / 30.0));
    CHECK(c.sign_right);
    CHECK(c.within);
    // Simulated 80 -> 20 (0.25): factor 2, outside 1.5x, sign still right.
    const auto d = report::check_row("cfg", "f.json", change_row(100, 50, true), 80, 20);
    CHECK(d.error == Approx(2.0));
    CHECK_FALSE(d.within);
    CHECK(d.sign_right);
    // A value row: 3 published, 2 simulated.
    scenario::PublishedRow v;
    v.phase = "x";
    v.unit = "s";
    v.value = scenario::PublishedValue{"", 3, {}};
    const auto e = report::check_row("cfg", "f.json", v, 2, 0);
    CHECK(e.error == Approx(1.5));
    CHECK(e.within);
    const auto s = report::summarize({c, d, e});
    CHECK(report::summary_line(s) ==
          "summary: non-calibration rows: signs right 1/1, within 1.5x 2/2; calibration rows: signs right 1/1, within 1.5x 0/1");
}
