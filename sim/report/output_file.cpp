#include "sim/report/output_file.hpp"

#include "sim/scenario/input_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kvmsim::report {

namespace {

// The registry the signal handler reads: fixed storage, no allocation. A slot is free (0),
// being filled (1) or holds a temporary path owned by process `pid` (2): a forked worker that
// gets the signal leaves its parent's files alone.
constexpr std::size_t kSlots = 32;
constexpr std::size_t kPathMax = 4096;
struct Slot {
    std::atomic<int> state{0};
    std::atomic<pid_t> pid{0};
    char path[kPathMax];
};
std::array<Slot, kSlots> g_slots;
std::atomic<bool> g_installed{false};

static_assert(std::atomic<int>::is_always_lock_free && std::atomic<pid_t>::is_always_lock_free);

int register_temp(const std::string& path) {
    if (path.size() >= kPathMax) return -1;
    for (std::size_t i = 0; i < kSlots; ++i) {
        int expected = 0;
        if (g_slots[i].state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
            std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
            g_slots[i].pid.store(::getpid(), std::memory_order_relaxed);
            g_slots[i].state.store(2, std::memory_order_release);
            return static_cast<int>(i);
        }
    }
    return -1;  // more than kSlots outputs at once: not removed on a signal (the destructor still does)
}

void unregister_temp(int slot) {
    if (slot >= 0) g_slots[static_cast<std::size_t>(slot)].state.store(0, std::memory_order_release);
}

extern "C" void cleanup_handler(int sig) {
    const int saved = errno;
    const pid_t self = ::getpid();
    for (auto& s : g_slots)
        if (s.state.load(std::memory_order_acquire) == 2 && s.pid.load(std::memory_order_relaxed) == self)
            ::unlink(s.path);
    // Die of the signal, as without the handler (the shell sees 128 + sig).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    errno = saved;
    ::raise(sig);
}

std::string err_text(int e) { return std::strerror(e); }

mode_t file_mode() {
    // What open(..., 0666) would give under the process's umask.
    static const mode_t mode = [] {
        const mode_t mask = ::umask(0);
        ::umask(mask);
        return static_cast<mode_t>(0666 & ~mask);
    }();
    return mode;
}

}  // namespace

void check_output_path(const std::string& path, std::string_view option) {
    const std::string opt(option);
    if (path.empty()) throw OutputError(opt + ": expected a file path, got an empty string");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISREG(st.st_mode))
            throw OutputError(opt + " " + path + ": refusing to replace " + scenario::describe_file_type(st.st_mode) +
                              "; expected a regular file or a new path");
    } else if (errno != ENOENT) {
        throw OutputError(opt + " " + path + ": cannot check the path (" + err_text(errno) + ")");
    }
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    struct stat ds {};
    if (::stat(dir.c_str(), &ds) != 0)
        throw OutputError(opt + " " + path + ": the directory " + dir.string() + " does not exist (" +
                          err_text(errno) + ")");
    if (!S_ISDIR(ds.st_mode)) throw OutputError(opt + " " + path + ": " + dir.string() + " is not a directory");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
        throw OutputError(opt + " " + path + ": the directory " + dir.string() + " is not writable (" +
                          err_text(errno) + ")");
}

OutputFile::OutputFile(std::string path, std::string_view option) : path_(std::move(path)), option_(option) {
    check_output_path(path_, option_);
    std::string tmpl = path_ + ".tmp.XXXXXX";
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0)
        throw OutputError(option_ + " " + path_ + ": cannot create a temporary file beside it (" + err_text(errno) + ")");
    tmp_ = tmpl;
    slot_ = register_temp(tmp_);
    (void)::fchmod(fd, file_mode());
    f_ = ::fdopen(fd, "wb");
    if (!f_) {
        const int e = errno;
        ::close(fd);
        discard();
        throw OutputError(option_ + " " + path_ + ": cannot open the temporary file (" + err_text(e) + ")");
    }
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::discard() noexcept {
    if (f_) {
        std::fclose(f_);
        f_ = nullptr;
    }
    if (!tmp_.empty()) {
        ::unlink(tmp_.c_str());
        tmp_.clear();
    }
    unregister_temp(slot_);
    slot_ = -1;
}

void OutputFile::write(std::string_view text) {
    if (!f_) throw OutputError(option_ + " " + path_ + ": written after commit");
    if (!text.empty() && std::fwrite(text.data(), 1, text.size(), f_) != text.size()) {
        const int e = errno;
        discard();
        throw OutputError(option_ + " " + path_ + ": write failed (" + err_text(e) + ")");
    }
}

void OutputFile::commit() {
    if (!f_) throw OutputError(option_ + " " + path_ + ": committed twice");
    auto fail = [&](const std::string& what, int e) {
        discard();
        throw OutputError(option_ + " " + path_ + ": " + what + " (" + err_text(e) + ")");
    };
    if (std::fflush(f_) != 0 || std::ferror(f_)) fail("write failed", errno);
    if (::fsync(::fileno(f_)) != 0) fail("fsync failed", errno);
    const int closed = std::fclose(f_);
    f_ = nullptr;
    if (closed != 0) fail("write failed", errno);
    // What is at the path may have changed during the run.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        discard();
        throw OutputError(option_ + " " + path_ + ": refusing to replace " + scenario::describe_file_type(st.st_mode) +
                          " (it appeared during the run)");
    }
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file into place", errno);
    tmp_.clear();
    unregister_temp(slot_);
    slot_ = -1;
}

void install_signal_cleanup() {
    if (g_installed.exchange(true)) return;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        struct sigaction sa {};
        sa.sa_handler = cleanup_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        ::sigaction(sig, &sa, nullptr);
    }
}

void write_output_file(const std::string& path, std::string_view text, std::string_view option) {
    OutputFile f(path, option);
    f.write(text);
    f.commit();
}

}  // namespace kvmsim::report
