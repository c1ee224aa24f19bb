#include "sim/cli/batch.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>


namespace fs = std::filesystem;

namespace kvmsim::cli {

namespace {

std::string slurp(const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

unsigned default_jobs() {
    const unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
}

std::vector<std::string> parallel_map(std::size_t n, unsigned jobs, const std::function<std::string(std::size_t)>& work,
                                      const std::function<std::string(std::size_t)>& name) {
    std::vector<std::string> out(n);
    if (jobs <= 1 || n <= 1) {
        for (std::size_t i = 0; i < n; ++i) out[i] = work(i);
        return out;
    }
    // Workers write their result to a private directory; the parent reads it after the exit.
    char tmpl[] = "/tmp/kvmsim-batch-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("cannot create a temporary directory for the workers");
    const fs::path dir(tmpl);
    struct Cleanup {
        fs::path d;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(d, ec);
        }
    } cleanup{dir};

    std::map<pid_t, std::size_t> running;
    std::size_t next = 0;
    std::string failure;
    std::cout.flush();
    std::cerr.flush();
    while ((next < n && failure.empty()) || !running.empty()) {
        while (next < n && running.size() < jobs && failure.empty()) {
            const pid_t pid = ::fork();
            if (pid < 0) throw std::runtime_error("fork failed for " + name(next));
            if (pid == 0) {
                int code = 0;
                const fs::path res = dir / (std::to_string(next) + ".json");
                try {
                    const std::string text = work(next);
                    std::ofstream f(res.string() + ".tmp", std::ios::binary);
                    f << text;
                    f.close();
                    if (!f) throw std::runtime_error("cannot write " + res.string());
                    fs::rename(res.string() + ".tmp", res);
                } catch (const std::exception& e) {
                    std::ofstream(dir / (std::to_string(next) + ".err")) << e.what();
                    code = 1;
                }
                std::_Exit(code);
            }
            running.emplace(pid, next++);
        }
        int status = 0;
        const pid_t done = ::waitpid(-1, &status, 0);
        if (done < 0) throw std::runtime_error("waitpid failed");
        auto it = running.find(done);
        if (it == running.end()) continue;
        const std::size_t i = it->second;
        running.erase(it);
        const fs::path res = dir / (std::to_string(i) + ".json");
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(res)) {
            out[i] = slurp(res);
        } else if (failure.empty()) {
            const fs::path err = dir / (std::to_string(i) + ".err");
            failure = name(i) + ": " +
                      (fs::exists(err) ? slurp(err)
                                       : "the worker died (status " + std::to_string(status) + ")");
        }
    }
    if (!failure.empty()) throw std::runtime_error(failure);
    return out;
}

}  // namespace kvmsim::cli
