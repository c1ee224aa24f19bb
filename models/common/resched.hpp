// need_resched() for a host task that holds mmu_lock for a long time. The model has no host
// scheduler: the task is assumed to share its CPU with other runnable work, so the scheduler asks
// it to reschedule once it has run for a timeslice (the profile's `sched_timeslice`, an
// estimate). cond_resched() while need_resched() is set starts a new timeslice.
#pragma once

#include "sim/engine/time.hpp"

namespace kvmsim::models {

class ReschedClock {
public:
    explicit ReschedClock(engine::Time timeslice = engine::Time::max()) : slice_(timeslice) {}
    void start(engine::Time now) { start_ = now; }
    bool need_resched(engine::Time now) const { return now - start_ >= slice_; }
    engine::Time timeslice() const { return slice_; }

private:
    engine::Time slice_;
    engine::Time start_;
};

}  // namespace kvmsim::models
