// Tracing hooks. The simulator holds an optional Tracer; every hook is behind a null check, so
// a run without one pays a predictable branch and nothing else. Tracing never schedules events,
// so it cannot change a run's results or fingerprint.
#pragma once

#include <cstdint>
#include <string_view>

#include "sim/engine/time.hpp"

namespace kvmsim::engine {

// Tracks: processes by pid; locks by their stats id (see LockStatsTable::lock_name).
class Tracer {
public:
    virtual ~Tracer() = default;
    virtual void process_started(std::uint32_t pid, std::string_view name) = 0;
    // A named slice on a process's track; slices on a track nest strictly.
    virtual void slice_begin(std::uint32_t pid, std::string_view name, Time t) = 0;
    virtual void slice_end(std::uint32_t pid, Time t) = 0;
    // Lock tracks: a writer/exclusive holder is a slice; readers and waiters are async slices
    // keyed by the holding or waiting process.
    virtual void lock_wait_begin(std::uint32_t lock, std::string_view lock_name, std::uint32_t pid, std::string_view mode, Time t) = 0;
    virtual void lock_wait_end(std::uint32_t lock, std::uint32_t pid, Time t) = 0;
    virtual void lock_hold_begin(std::uint32_t lock, std::string_view lock_name, std::uint32_t pid, std::string_view mode,
                                 std::string_view site, Time t) = 0;
    virtual void lock_hold_end(std::uint32_t lock, std::uint32_t pid, std::string_view mode, Time t) = 0;
    // A release that hands the lock to the next waiter: an arrow from one process to the other.
    virtual void lock_handoff(std::uint32_t lock, std::uint32_t from_pid, std::uint32_t to_pid, Time t) = 0;
    virtual void counter(std::string_view name, double value, Time t) = 0;
};

// One processed event, for `kvmsim diff` (the fingerprint's inputs).
struct LoggedEvent {
    std::int64_t time_ps;
    std::uint32_t who;   // process id, or 0x80000000 | trace id for callbacks
    std::uint8_t kind;
};

// Where the simulator sends every processed event when asked (kvmsim run --events streams them
// to a file; a test may keep them).
class EventLog {
public:
    virtual ~EventLog() = default;
    virtual void logged(const LoggedEvent& e) = 0;
};

}  // namespace kvmsim::engine
