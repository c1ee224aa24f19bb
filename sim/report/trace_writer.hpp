// Chrome trace-event JSON (opens in Perfetto UI and chrome://tracing), streamed to a file.
// One process per VM; a track per simulated process (vCPUs, the VMM, event actors) with
// strictly nested slices; a track per lock with write holders as slices and readers and
// waiters as async slices; counter tracks; flow arrows from a lock's release to the next
// acquirer. Timestamps are microseconds with three decimals, exact from integer picoseconds.
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sim/engine/trace.hpp"
#include "sim/report/output_file.hpp"

namespace kvmsim::report {

struct TraceOptions {
    engine::Time from = engine::Time::zero();
    engine::Time to = engine::Time::max();
    std::optional<std::set<std::uint32_t>> vcpus;  // only these vCPU tracks (others: all)
};

class ChromeTraceWriter : public engine::Tracer {
public:
    // Throws OutputError when the path cannot be an output (output_file.hpp): before the run.
    ChromeTraceWriter(const std::string& path, TraceOptions opts);
    ~ChromeTraceWriter() override;
    // Closes open slices at `end`, ends the JSON, fsyncs and renames the file into place.
    void finish(engine::Time end);

    void process_started(std::uint32_t pid, std::string_view name) override;
    void slice_begin(std::uint32_t pid, std::string_view name, engine::Time t) override;
    void slice_end(std::uint32_t pid, engine::Time t) override;
    void lock_wait_begin(std::uint32_t lock, std::string_view lock_name, std::uint32_t pid, std::string_view mode,
                         engine::Time t) override;
    void lock_wait_end(std::uint32_t lock, std::uint32_t pid, engine::Time t) override;
    void lock_hold_begin(std::uint32_t lock, std::string_view lock_name, std::uint32_t pid, std::string_view mode,
                         std::string_view site, engine::Time t) override;
    void lock_hold_end(std::uint32_t lock, std::uint32_t pid, std::string_view mode, engine::Time t) override;
    void lock_handoff(std::uint32_t lock, std::uint32_t from_pid, std::uint32_t to_pid, engine::Time t) override;
    void counter(std::string_view name, double value, engine::Time t) override;

    std::uint64_t events_written() const { return written_; }

private:
    static constexpr std::uint32_t kLockTid = 100000;
    bool in_window(engine::Time t) const { return t >= opts_.from && t <= opts_.to; }
    bool track_on(std::uint32_t pid) const;
    void lock_track(std::uint32_t lock, std::string_view name);
    void emit(const std::string& json);
    std::string process_name(std::uint32_t pid) const;

    std::unique_ptr<OutputFile> out_;  // the temporary file beside the target (output_file.hpp)
    TraceOptions opts_;
    std::FILE* f_ = nullptr;
    bool first_ = true;
    bool finished_ = false;
    std::uint64_t written_ = 0;
    std::uint64_t next_id_ = 1;
    std::map<std::uint32_t, std::string> names_;           // pid -> name
    std::map<std::uint32_t, std::vector<bool>> stacks_;    // pid -> open slices (emitted?)
    std::set<std::uint32_t> lock_tracks_;
    std::map<std::pair<std::uint32_t, std::uint32_t>, std::pair<std::uint64_t, std::string>> waits_;  // (lock,pid)
    // (lock, pid, mode) -> the async slice's id, whether it was emitted, and its name (its end
    // event repeats it: viewers match an end to its begin by category, id and name).
    struct Hold {
        std::uint64_t id;
        bool on;
        std::string name;
    };
    std::map<std::tuple<std::uint32_t, std::uint32_t, std::string>, Hold> holds_;
};

// "12.345" for 12345 ns: microseconds with three decimals, exact.
std::string trace_ts(engine::Time t);

}  // namespace kvmsim::report
