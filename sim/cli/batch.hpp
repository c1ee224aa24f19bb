// A parallel map over forked worker processes, for independent simulation runs. Each run is a
// whole simulation of its own, so running them side by side changes nothing in any of them: the
// results are the same, bit for bit, whatever the number of workers.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace kvmsim::cli {

// out[i] = work(i) for i < n. jobs <= 1 runs in this process; otherwise up to `jobs` forked
// workers, each computing one item and handing its text back through a file. A failing item
// throws std::runtime_error with name(i) and the worker's message; items not started yet are
// not started.
std::vector<std::string> parallel_map(std::size_t n, unsigned jobs, const std::function<std::string(std::size_t)>& work,
                                      const std::function<std::string(std::size_t)>& name);

// The default worker count: the machine's CPUs.
unsigned default_jobs();

}  // namespace kvmsim::cli
