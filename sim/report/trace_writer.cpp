#include "sim/report/trace_writer.hpp"

#include <cinttypes>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace kvmsim::report {

std::string trace_ts(engine::Time t) {
    const std::int64_t ps = t.ps();
    char buf[40];
    std::snprintf(buf, sizeof buf, "%" PRId64 ".%03" PRId64, ps / 1'000'000, (ps % 1'000'000) / 1000);
    return buf;
}

namespace {
std::string q(std::string_view s) { return nlohmann::json(std::string(s)).dump(); }
}  // namespace

ChromeTraceWriter::ChromeTraceWriter(const std::string& path, TraceOptions opts)
    : out_(std::make_unique<OutputFile>(path, "--trace")), opts_(std::move(opts)) {
    f_ = out_->file();
    std::fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", f_);
    emit(R"({"ph":"M","name":"process_name","pid":1,"args":{"name":"VM"}})");
}

ChromeTraceWriter::~ChromeTraceWriter() = default;  // an unfinished trace's temporary file goes with out_

void ChromeTraceWriter::emit(const std::string& json) {
    if (!first_) std::fputs(",\n", f_);
    first_ = false;
    std::fputs(json.c_str(), f_);
    ++written_;
}

std::string ChromeTraceWriter::process_name(std::uint32_t pid) const {
    auto it = names_.find(pid);
    return it == names_.end() ? "?" : it->second;
}

bool ChromeTraceWriter::track_on(std::uint32_t pid) const {
    if (!opts_.vcpus) return true;
    const std::string n = process_name(pid);
    if (n.rfind("vcpu", 0) != 0) return true;
    try {
        return opts_.vcpus->count(static_cast<std::uint32_t>(std::stoul(n.substr(4)))) > 0;
    } catch (const std::exception&) {
        return true;
    }
}

void ChromeTraceWriter::process_started(std::uint32_t pid, std::string_view name) {
    names_[pid] = std::string(name);
    if (!track_on(pid)) return;
    emit(R"({"ph":"M","name":"thread_name","pid":1,"tid":)" + std::to_string(pid + 1) + R"(,"args":{"name":)" + q(name) + "}}");
    emit(R"({"ph":"M","name":"thread_sort_index","pid":1,"tid":)" + std::to_string(pid + 1) + R"(,"args":{"sort_index":)" +
         std::to_string(pid + 1) + "}}");
}

void ChromeTraceWriter::lock_track(std::uint32_t lock, std::string_view name) {
    if (!lock_tracks_.insert(lock).second) return;
    emit(R"({"ph":"M","name":"thread_name","pid":1,"tid":)" + std::to_string(kLockTid + lock) + R"(,"args":{"name":)" +
         q("lock " + std::string(name)) + "}}");
}

void ChromeTraceWriter::slice_begin(std::uint32_t pid, std::string_view name, engine::Time t) {
    const bool on = track_on(pid) && in_window(t);
    stacks_[pid].push_back(on);
    if (on)
        emit(R"({"ph":"B","pid":1,"tid":)" + std::to_string(pid + 1) + R"(,"ts":)" + trace_ts(t) + R"(,"name":)" + q(name) + "}");
}

void ChromeTraceWriter::slice_end(std::uint32_t pid, engine::Time t) {
    auto& st = stacks_[pid];
    if (st.empty()) return;
    const bool on = st.back();
    st.pop_back();
    if (on) emit(R"({"ph":"E","pid":1,"tid":)" + std::to_string(pid + 1) + R"(,"ts":)" + trace_ts(t) + "}");
}

void ChromeTraceWriter::lock_wait_begin(std::uint32_t lock, std::string_view lock_name, std::uint32_t pid,
                                        std::string_view mode, engine::Time t) {
    if (!in_window(t) || !track_on(pid)) return;
    lock_track(lock, lock_name);
    const std::uint64_t id = next_id_++;
    const std::string name = process_name(pid) + " waits (" + std::string(mode) + ")";
    waits_[{lock, pid}] = {id, name};
    emit(R"({"ph":"b","cat":"lock wait","pid":1,"tid":)" + std::to_string(kLockTid + lock) + R"(,"id":)" +
         std::to_string(id) + R"(,"ts":)" + trace_ts(t) + R"(,"name":)" + q(name) + "}");
}

void ChromeTraceWriter::lock_wait_end(std::uint32_t lock, std::uint32_t pid, engine::Time t) {
    auto it = waits_.find({lock, pid});
    if (it == waits_.end()) return;
    emit(R"({"ph":"e","cat":"lock wait","pid":1,"tid":)" + std::to_string(kLockTid + lock) + R"(,"id":)" +
         std::to_string(it->second.first) + R"(,"ts":)" + trace_ts(t) + R"(,"name":)" + q(it->second.second) + "}");
    waits_.erase(it);
}

void ChromeTraceWriter::lock_hold_begin(std::uint32_t lock, std::string_view lock_name, std::uint32_t pid,
                                        std::string_view mode, std::string_view site, engine::Time t) {
    const bool on = in_window(t) && track_on(pid);
    const std::uint64_t id = next_id_++;
    const std::string name = process_name(pid) + " @" + std::string(site);
    holds_[{lock, pid, std::string(mode)}] = {id, on, name};
    if (!on) return;
    lock_track(lock, lock_name);
    const std::string tid = std::to_string(kLockTid + lock);
    if (mode == "read")
        emit(R"({"ph":"b","cat":"lock read","pid":1,"tid":)" + tid + R"(,"id":)" + std::to_string(id) + R"(,"ts":)" +
             trace_ts(t) + R"(,"name":)" + q(name) + "}");
    else
        emit(R"({"ph":"B","pid":1,"tid":)" + tid + R"(,"ts":)" + trace_ts(t) + R"(,"name":)" + q(name + " (" + std::string(mode) + ")") + "}");
}

void ChromeTraceWriter::lock_hold_end(std::uint32_t lock, std::uint32_t pid, std::string_view mode, engine::Time t) {
    auto it = holds_.find({lock, pid, std::string(mode)});
    if (it == holds_.end()) return;
    const Hold h = std::move(it->second);
    holds_.erase(it);
    if (!h.on) return;
    const std::string tid = std::to_string(kLockTid + lock);
    if (mode == "read")
        emit(R"({"ph":"e","cat":"lock read","pid":1,"tid":)" + tid + R"(,"id":)" + std::to_string(h.id) + R"(,"ts":)" +
             trace_ts(t) + R"(,"name":)" + q(h.name) + "}");
    else
        emit(R"({"ph":"E","pid":1,"tid":)" + tid + R"(,"ts":)" + trace_ts(t) + "}");
}

void ChromeTraceWriter::lock_handoff(std::uint32_t lock, std::uint32_t from_pid, std::uint32_t to_pid, engine::Time t) {
    if (!in_window(t) || !track_on(from_pid) || !track_on(to_pid)) return;
    const std::string id = std::to_string(next_id_++);
    const std::string ts = trace_ts(t);
    (void)lock;
    emit(R"({"ph":"s","cat":"handoff","name":"lock handoff","pid":1,"tid":)" + std::to_string(from_pid + 1) +
         R"(,"id":)" + id + R"(,"ts":)" + ts + "}");
    emit(R"({"ph":"f","bp":"e","cat":"handoff","name":"lock handoff","pid":1,"tid":)" + std::to_string(to_pid + 1) +
         R"(,"id":)" + id + R"(,"ts":)" + ts + "}");
}

void ChromeTraceWriter::counter(std::string_view name, double value, engine::Time t) {
    if (!in_window(t)) return;
    emit(R"({"ph":"C","pid":1,"ts":)" + trace_ts(t) + R"(,"name":)" + q(name) + R"(,"args":{"value":)" +
         nlohmann::json(value).dump() + "}}");
}

void ChromeTraceWriter::finish(engine::Time end) {
    if (finished_) return;
    finished_ = true;
    // Whatever is still open (a window that ends mid-slice, a deadlocked run) closes at `end`.
    for (auto& [pid, st] : stacks_)
        while (!st.empty()) slice_end(pid, end);
    for (auto it = waits_.begin(); it != waits_.end();) {
        const auto [lock, pid] = it->first;
        ++it;
        lock_wait_end(lock, pid, end);
    }
    while (!holds_.empty()) {
        const auto [lock, pid, mode] = holds_.begin()->first;
        lock_hold_end(lock, pid, mode, end);
    }
    std::fputs("\n]}\n", f_);
    f_ = nullptr;
    out_->commit();
}

}  // namespace kvmsim::report
