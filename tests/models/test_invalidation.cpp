#include <catch2/catch.hpp>

#include "models/common/invalidation.hpp"

using kvmsim::models::MmuInvalidation;
using namespace kvmsim::engine::time_literals;

TEST_CASE("mmu_invalidate: a snapshot retries only if an invalidation is in progress or ended after it",
          "[invalidation]") {
    MmuInvalidation inv;
    CHECK_FALSE(inv.retry_since(0_ns));  // nothing ever invalidated
    inv.begin();
    inv.range_add(10, 20);
    CHECK(inv.retry_since(5_us));  // in progress: retry whenever the snapshot was taken
    inv.end(2_us);
    CHECK(inv.seq() == 1);
    CHECK(inv.retry_since(1_us));        // the sequence moved after a snapshot at 1 us
    CHECK_FALSE(inv.retry_since(2_us));  // a snapshot taken when it moved, or later, sees it
    CHECK_FALSE(inv.retry_since(3_us));
    // change_pte's bump (before v5.13) counts as a move too.
    inv.bump_seq(4_us);
    CHECK(inv.retry_since(3_us));
    CHECK_FALSE(inv.retry_since(4_us));
    // The snapshot-value check agrees: a snapshot of the sequence before the bump retries.
    CHECK(inv.retry(1));
    CHECK_FALSE(inv.retry(2));
}
