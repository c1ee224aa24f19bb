// Writing an output file (--json, --trace, --events) without harming what is at the path:
//  - a path that exists and is not a regular file (a device node such as /dev/null, a FIFO, a
//    directory, a symlink) is refused, and so is one whose directory is missing or not
//    writable: OutputError, before anything is simulated;
//  - the text goes to a unique temporary file made with mkstemp beside the target
//    ("NAME.tmp.XXXXXX"), which is fsynced and renamed over the target only when complete;
//  - an unfinished temporary file is removed when the OutputFile is destroyed and, once
//    install_signal_cleanup() has run, on SIGINT, SIGTERM and SIGHUP (the handler unlinks the
//    registered paths with async-signal-safe calls, then re-raises the signal).
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kvmsim::report {

// Bad output path (the command exits 2).
struct OutputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Throws OutputError when `path` cannot be an output (see above). `option` names it in the
// message ("--json").
void check_output_path(const std::string& path, std::string_view option);

class OutputFile {
public:
    // check_output_path, then the temporary file (OutputError when it cannot be made).
    OutputFile(std::string path, std::string_view option);
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    // The temporary file, open for writing (buffered).
    std::FILE* file() const { return f_; }
    void write(std::string_view text);
    // Flushes, fsyncs and renames the temporary file over the target (checked again: it must
    // still not be anything but a regular file). OutputError on failure (the temporary file is
    // removed).
    void commit();
    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return tmp_; }

private:
    void discard() noexcept;
    std::string path_, option_, tmp_;
    std::FILE* f_ = nullptr;
    int slot_ = -1;  // in the signal handler's registry
};

// Installs the SIGINT/SIGTERM/SIGHUP handler that removes unfinished temporary files (once;
// later calls do nothing). A signal whose disposition is "ignore" stays ignored.
void install_signal_cleanup();

// Writes `text` to `path` through an OutputFile.
void write_output_file(const std::string& path, std::string_view text, std::string_view option);

}  // namespace kvmsim::report
