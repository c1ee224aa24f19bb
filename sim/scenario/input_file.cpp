#include "sim/scenario/input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sim/scenario/error.hpp"
#include "sim/scenario/units.hpp"

namespace kvmsim::scenario {

namespace {

struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

std::string read_input_file(const std::string& path, const std::string& what) {
    if (path.find('\0') != std::string::npos)
        throw ScenarioError::file_error(path, "expected " + what + ", got a path with a NUL character");
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)};
    if (f.fd < 0) {
        const int err = errno;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
            throw ScenarioError::file_error(path, "expected " + what + ", got a directory");
        throw ScenarioError::file_error(path, "cannot open the file (" + std::string(std::strerror(err)) + ")");
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0)
        throw ScenarioError::file_error(path, "cannot read the file (" + std::string(std::strerror(errno)) + ")");
    if (!S_ISREG(st.st_mode))
        throw ScenarioError::file_error(path, "expected " + what + " (a regular file), got " + describe_file_type(st.st_mode));
    if (static_cast<std::uint64_t>(st.st_size) > kMaxInputFileBytes)
        throw ScenarioError::file_error(path, "the file is too large (" + std::to_string(st.st_size) +
                                                  " bytes; the limit is " + format_size(kMaxInputFileBytes) + ")");
    std::string text;
    text.reserve(static_cast<std::size_t>(st.st_size));
    char buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(f.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw ScenarioError::file_error(path, "cannot read the file (" + std::string(std::strerror(errno)) + ")");
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        // The file may grow while it is read.
        if (text.size() > kMaxInputFileBytes)
            throw ScenarioError::file_error(path, "the file is too large (the limit is " +
                                                      format_size(kMaxInputFileBytes) + ")");
    }
    return text;
}

const char* describe_file_type(mode_t m) {
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

}  // namespace kvmsim::scenario
