// A fluid, fair-shared capacity (a socket's memory bandwidth): concurrent transfers share it
// max-min fairly (water-filling), each at most at its own cap, and every start and end re-shares
// the rates exactly. Statistics go to the Simulator's BandwidthStatsTable, per phase.
//
// Exactness: rates are whole bytes per second; a transfer's remaining work is kept in units of
// byte x 10^12 (a byte-picosecond-per-second), so a rate r moves exactly r units per picosecond
// and no rounding accumulates across re-shares. An even split of the capacity C among k
// uncapped transfers gives each floor(C / k); the C mod k bytes/s left over go one each to the
// earliest-started of them, so the rates always sum to C. A completion time is rounded up to
// the next picosecond: at that event the transfer's work is done (any fraction of a picosecond
// left over is dropped), and every other transfer's work was reduced exactly.
//
// Events: one callback event at the earliest completion, rescheduled on every re-share (the
// engine drops a replaced event when it reaches the front, without counting it or hashing it
// into the fingerprint); the processes whose transfers complete are then resumed in start order
// by a Transfer event each.
#pragma once

#include <coroutine>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/engine/simulator.hpp"

namespace kvmsim::engine {

class Bandwidth {
public:
    // bytes_per_second 0: unlimited (a transfer moves at its own cap, or at once without one).
    Bandwidth(Simulator& sim, std::string name, std::uint64_t bytes_per_second);
    // Like every event target, a Bandwidth must live as long as the simulator runs.
    ~Bandwidth();
    Bandwidth(const Bandwidth&) = delete;
    Bandwidth& operator=(const Bandwidth&) = delete;

    // Moves `bytes` through the resource from the awaiting process: the process resumes when its
    // share has moved them all. cap: the transfer's own limit in bytes/s (0: none). 0 bytes, or
    // an uncapped transfer through an unlimited resource, completes at once (without suspending).
    Task<void> transfer(std::uint64_t bytes, std::uint64_t cap = 0);
    // How long `bytes` take alone at `cap` (rounded up to the next picosecond), for analytic fast
    // paths taken while active() == 0.
    Time alone(std::uint64_t bytes, std::uint64_t cap = 0) const;
    std::uint32_t active() const { return static_cast<std::uint32_t>(flows_.size()); }
    const std::string& name() const { return name_; }
    std::uint64_t capacity() const { return capacity_; }
    // The rate a started transfer has now, by start order among the active ones (tests, traces).
    std::uint64_t rate(std::uint32_t index) const { return flows_[index].rate; }

    struct StartAwaiter {
        Bandwidth& bw;
        std::uint64_t bytes;
        std::uint64_t cap;
        bool await_ready() { return bw.instant(bytes, cap); }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            bw.start(bytes, cap, h, h.promise().pid);
        }
        void await_resume() const noexcept {}
    };

private:
    struct Flow {
        std::uint64_t seq;
        uint128_t remaining;  // bytes x 10^12
        std::uint64_t bytes;
        std::uint64_t cap;    // 0: none
        std::uint64_t rate = 0;
        std::coroutine_handle<> h;
        std::uint32_t pid;
    };
    struct Completion final : EventTarget {
        Bandwidth* bw = nullptr;
        void fire(Simulator&) override { bw->complete(); }
    };

    bool instant(std::uint64_t bytes, std::uint64_t cap);
    void start(std::uint64_t bytes, std::uint64_t cap, std::coroutine_handle<> h, std::uint32_t pid);
    void complete();
    void advance();     // moves every flow's work up to now
    void reshare();     // water-filling
    void reschedule();  // the completion event at the earliest finish

    Simulator& sim_;
    std::string name_;
    std::uint64_t capacity_;
    std::uint32_t id_;
    std::vector<Flow> flows_;  // in start order
    std::vector<std::uint32_t> order_;  // scratch for reshare
    std::uint64_t seq_ = 0;
    Time last_{};
    Time scheduled_at_{};  // of completion_, while pending
    Completion completion_;
};

}  // namespace kvmsim::engine
