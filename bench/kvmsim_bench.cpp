// kvmsim-bench: throughput figures for the engine and each model.
//   kvmsim-bench engine [--json] [--events N]
//   kvmsim-bench tdp [--json] [--sizes 5G,10G,20G] [--vcpus 40]
//     kvm_page_table_test -s anonymous -b SIZE -v VCPUS on the x86_tdp model, all three stages;
//     wall and CPU time, peak memory, CPU time and events per exit of each size, each run in a
//     child process.
//   kvmsim-bench arm64 [--json] [--scenario FILE] [--jobs N]
//     seed 004's kvm_page_table_test -m 4 -s anonymous_thp -b 20G -v 40 on arm64_stage2, every
//     variant (before, after) in a child process, N at a time (default 1): wall and CPU time, peak
//     memory, CPU time and events per exit of each, and the wall time of all.
// The hold model keeps N events pending: each event is a process resuming from a delay drawn
// from an exponential distribution and scheduling its next one. The ceiling is a bare
// std::priority_queue loop over the same items with the same random draws.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <queue>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "models/registry.hpp"
#include "sim/engine/simulator.hpp"
#include "sim/engine/sync.hpp"
#include "sim/runner/runner.hpp"
#include "sim/scenario/loader.hpp"

#ifndef KVMSIM_SOURCE_DIR
#define KVMSIM_SOURCE_DIR "."
#endif

using namespace kvmsim::engine;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr double kMeanDelayPs = 1e6;  // 1 us

Task<void> hold_process(Simulator& sim, RandomStream& rng, std::int64_t& budget) {
    while (budget-- > 0) co_await sim.delay(Time::ps(static_cast<std::int64_t>(rng.exponential(kMeanDelayPs)) + 1));
}

double hold_engine(std::size_t pending, std::int64_t events) {
    Simulator sim(1);
    RandomStream rng(1, "hold");
    std::int64_t budget = events;
    for (std::size_t i = 0; i < pending; ++i) sim.spawn("p", hold_process(sim, rng, budget));
    const auto t0 = Clock::now();
    sim.run();
    return static_cast<double>(sim.events_processed()) / seconds_since(t0);
}

double hold_ceiling(std::size_t pending, std::int64_t events) {
    struct Item {
        std::int64_t time;
        std::uint64_t order;
        void* a;
        void* b;
        bool operator>(const Item& o) const { return time > o.time || (time == o.time && order > o.order); }
    };
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> q;
    RandomStream rng(1, "hold");
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < pending; ++i) q.push(Item{0, seq++, nullptr, nullptr});
    std::uint64_t processed = 0;
    std::uint64_t sink = 0;
    const auto t0 = Clock::now();
    for (std::int64_t n = 0; n < events; ++n) {
        Item it = q.top();
        q.pop();
        ++processed;
        sink ^= it.order;
        it.time += static_cast<std::int64_t>(rng.exponential(kMeanDelayPs)) + 1;
        it.order = seq++;
        q.push(it);
    }
    const double rate = static_cast<double>(processed) / seconds_since(t0);
    if (sink == 42) std::puts("");  // keep the loop from being optimized away
    return rate;
}

Task<void> lock_process(Simulator& sim, RwLock& lock, Site site, RandomStream rng, std::int64_t& budget) {
    while (budget-- > 0) {
        if (rng.bernoulli(0.1)) {
            auto g = co_await lock.write(site);
            co_await sim.delay(Time::ns(200));
        } else {
            auto g = co_await lock.read(site);
            co_await sim.delay(Time::ns(100));
        }
        co_await sim.delay(Time::ps(static_cast<std::int64_t>(rng.exponential(5e5))));
    }
}

double rwlock_contention(std::size_t processes, std::int64_t iterations) {
    Simulator sim(1);
    RwLock lock(sim, "mmu_lock");
    const Site site = sim.site("bench");
    std::int64_t budget = iterations;
    for (std::size_t i = 0; i < processes; ++i)
        sim.spawn("p" + std::to_string(i), lock_process(sim, lock, site, sim.stream("bench", i), budget));
    const auto t0 = Clock::now();
    sim.run();
    return static_cast<double>(sim.events_processed()) / seconds_since(t0);
}

int usage() {
    std::cerr << "usage: kvmsim-bench engine [--json] [--events N]\n"
                 "       kvmsim-bench tdp [--json] [--sizes 5G,10G,20G] [--vcpus 40]\n"
                 "       kvmsim-bench arm64 [--json] [--scenario FILE] [--jobs N]\n";
    return 2;
}

// A child running this program with `args`; its stdout is read by finish().
struct Child {
    pid_t pid = -1;
    int fd = -1;
};

Child start_child(char** argv, const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return {};
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        std::vector<char*> av = {argv[0]};
        for (const auto& a : args) av.push_back(const_cast<char*>(a.c_str()));
        av.push_back(nullptr);
        execv("/proc/self/exe", av.data());
        _exit(127);
    }
    close(fds[1]);
    return Child{pid, fds[0]};
}

// The child's JSON line with its peak RSS (MiB) and CPU time (s); null if it failed.
nlohmann::json finish_child(const Child& c) {
    if (c.pid < 0) return nullptr;
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(c.fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    close(c.fd);
    int status = 0;
    struct rusage ru {};
    wait4(c.pid, &status, 0, &ru);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) return nullptr;
    nlohmann::json j = nlohmann::json::parse(text);
    j["peak_rss_mib"] = static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
    j["cpu_s"] = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return j;
}

kvmsim::runner::Result run_scenario_file(const std::string& file, const std::string& variant) {
    kvmsim::scenario::LoadOptions o;
    o.models = &kvmsim::models::builtin_models();
    o.host_dirs = {std::string(KVMSIM_SOURCE_DIR) + "/scenarios/hosts"};
    if (!variant.empty()) o.variant = variant;
    return kvmsim::runner::run(kvmsim::scenario::load_scenario(file, o));
}

// One kvm_page_table_test run in this process; prints a JSON line for the parent.
int tdp_child(const std::string& size, unsigned vcpus) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("kvmsim-bench-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path file = dir / "ptt.json";
    std::ofstream(file) << R"({"name": "bench-ptt", "host": {"profile": "x86-server"}, "mmu": {"model": "x86_tdp"},
      "workload": {"preset": "kvm_page_table_test", "args": "-s anonymous -b )" << size << " -v " << vcpus << R"("}})";
    const auto r = run_scenario_file(file.string(), "");
    fs::remove_all(dir);
    nlohmann::json j = {{"size", size},
                        {"vcpus", vcpus},
                        {"wall_s", r.wall_time_s},
                        {"guest_accesses", r.guest_accesses},
                        {"guest_exits", r.guest_exits},
                        {"events", r.events},
                        {"events_inline", r.events_inline},
                        {"fingerprint", r.fingerprint}};
    for (const auto& p : r.phases)
        if (p.selftest_metric) j["stages_s"][p.name] = p.sim_time_ns / 1e9;
    std::cout << j.dump() << std::endl;
    return 0;
}

int tdp(int argc, char** argv) {
    bool json = false;
    std::vector<std::string> sizes = {"5G", "10G", "20G"};
    unsigned vcpus = 40;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json") {
            json = true;
        } else if (a == "--sizes" && i + 1 < argc) {
            sizes.clear();
            std::string list = argv[++i];
            for (std::size_t pos = 0; pos <= list.size();) {
                const std::size_t end = std::min(list.find(',', pos), list.size());
                if (end > pos) sizes.push_back(list.substr(pos, end - pos));
                pos = end + 1;
            }
        } else if (a == "--vcpus" && i + 1 < argc) {
            vcpus = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
            if (vcpus == 0) return usage();
        } else if (a == "--child" && i + 1 < argc) {
            return tdp_child(argv[i + 1], vcpus);
        } else {
            return usage();
        }
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto& size : sizes) {
        nlohmann::json j =
            finish_child(start_child(argv, {"tdp", "--vcpus", std::to_string(vcpus), "--child", size}));
        if (j.is_null()) {
            std::cerr << "kvmsim-bench: the " << size << " run failed\n";
            return 1;
        }
        const double exits = j["guest_exits"].get<double>();
        j["cpu_ns_per_exit"] = exits > 0 ? j["cpu_s"].get<double>() * 1e9 / exits : 0.0;
        j["events_per_exit"] = exits > 0 ? j["events"].get<double>() / exits : 0.0;
        out.push_back(j);
        if (!json)
            std::printf("kvm_page_table_test -s anonymous -b %-4s -v %u: wall %6.2f s, cpu %6.2f s, peak %7.1f MiB, %.0f M accesses, %.2f M exits, %.1f M events, %.0f ns cpu per exit, %.2f events per exit (%.2f queued)\n",
                        size.c_str(), vcpus, j["wall_s"].get<double>(), j["cpu_s"].get<double>(),
                        j["peak_rss_mib"].get<double>(), j["guest_accesses"].get<double>() / 1e6, exits / 1e6,
                        j["events"].get<double>() / 1e6, j["cpu_ns_per_exit"].get<double>(),
                        j["events_per_exit"].get<double>(),
                        (j["events"].get<double>() - j["events_inline"].get<double>()) / exits);
    }
    if (json) std::cout << nlohmann::json{{"tdp_kvm_page_table_test", out}}.dump(2) << "\n";
    return 0;
}

// One variant of the arm64 scenario in this process: a JSON line for the parent.
int arm64_child(const std::string& file, const std::string& variant) {
    const auto r = run_scenario_file(file, variant);
    if (r.status != "completed") return 1;
    auto stat = [&r](const char* k) {
        auto it = r.stats.find(k);
        return it == r.stats.end() ? std::uint64_t{0} : it->second;
    };
    nlohmann::json j = {{"variant", variant},
                        {"wall_s", r.wall_time_s},
                        {"guest_accesses", r.guest_accesses},
                        {"guest_exits", r.guest_exits},
                        {"events", r.events},
                        {"events_inline", r.events_inline},
                        {"dcache_clean_poc_bytes", stat("dcache_clean_poc_bytes")},
                        {"fingerprint", r.fingerprint},
                        {"stages", nlohmann::json::array()}};
    for (const auto& p : r.phases)
        if (p.selftest_metric) j["stages"].push_back({{"name", p.name}, {"s", p.sim_time_ns / 1e9}});
    std::cout << j.dump() << std::endl;
    return 0;
}

int arm64(int argc, char** argv) {
    bool json = false;
    std::string file = std::string(KVMSIM_SOURCE_DIR) + "/scenarios/seeds/004-arm64-cmo-thp-2m.json";
    unsigned jobs = 1;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json") {
            json = true;
        } else if (a == "--scenario" && i + 1 < argc) {
            file = argv[++i];
        } else if (a == "--jobs" && i + 1 < argc) {
            jobs = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
            if (jobs == 0) return usage();
        } else if (a == "--child" && i + 1 < argc) {
            return arm64_child(file, argv[i + 1]);
        } else {
            return usage();
        }
    }
    const std::vector<std::string> variants = kvmsim::scenario::scenario_variants(file);
    if (variants.empty()) {
        std::cerr << "kvmsim-bench: " << file << " has no variants\n";
        return 1;
    }
    nlohmann::json out = nlohmann::json::array();
    const auto t0 = Clock::now();
    for (std::size_t first = 0; first < variants.size(); first += jobs) {
        std::vector<Child> running;
        for (std::size_t v = first; v < std::min(variants.size(), first + jobs); ++v)
            running.push_back(start_child(argv, {"arm64", "--scenario", file, "--child", variants[v]}));
        for (std::size_t k = 0; k < running.size(); ++k) {
            nlohmann::json j = finish_child(running[k]);
            if (j.is_null()) {
                std::cerr << "kvmsim-bench: variant " << variants[first + k] << " failed\n";
                return 1;
            }
            const double exits = j["guest_exits"].get<double>();
            j["cpu_ns_per_exit"] = exits > 0 ? j["cpu_s"].get<double>() * 1e9 / exits : 0.0;
            j["events_per_exit"] = exits > 0 ? j["events"].get<double>() / exits : 0.0;
            out.push_back(j);
        }
    }
    const double total = seconds_since(t0);
    if (json) {
        std::cout << nlohmann::json{{"arm64_seed004", out}, {"jobs", jobs}, {"total_wall_s", total}}.dump(2) << "\n";
        return 0;
    }
    std::printf("%s\n", file.c_str());
    for (const auto& j : out) {
        std::printf("  %-8s wall %6.2f s, cpu %6.2f s, peak %6.1f MiB, %.1f M exits, %.1f M events, %.0f ns wall per exit, %.0f ns cpu per exit, %.2f events per exit (%.2f queued)\n",
                    j["variant"].get<std::string>().c_str(), j["wall_s"].get<double>(), j["cpu_s"].get<double>(),
                    j["peak_rss_mib"].get<double>(), j["guest_exits"].get<double>() / 1e6,
                    j["events"].get<double>() / 1e6, j["wall_s"].get<double>() * 1e9 / j["guest_exits"].get<double>(),
                    j["cpu_ns_per_exit"].get<double>(), j["events_per_exit"].get<double>(),
                    (j["events"].get<double>() - j["events_inline"].get<double>()) / j["guest_exits"].get<double>());
        for (const auto& st : j["stages"])
            std::printf("           %s: %.6f s\n", st["name"].get<std::string>().c_str(), st["s"].get<double>());
    }
    std::printf("  all variants, %u at a time: wall %.2f s\n", jobs, total);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && std::string(argv[1]) == "tdp") return tdp(argc, argv);
    if (argc >= 2 && std::string(argv[1]) == "arm64") return arm64(argc, argv);
    if (argc < 2 || std::string(argv[1]) != "engine") return usage();
    bool json = false;
    std::int64_t events = 4'000'000;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json") {
            json = true;
        } else if (a == "--events" && i + 1 < argc) {
            char* end = nullptr;
            events = std::strtoll(argv[++i], &end, 10);
            if (!end || *end || events <= 0) return usage();
        } else {
            return usage();
        }
    }
    nlohmann::json out;
    out["hold"] = nlohmann::json::array();
    for (std::size_t pending : {16UL, 4096UL, 100000UL}) {
        // Best of three: the figures are throughput ceilings, not averages of noise.
        double x = 0, y = 0;
        for (int rep = 0; rep < 3; ++rep) {
            x = std::max(x, hold_engine(pending, events));
            y = std::max(y, hold_ceiling(pending, events));
        }
        out["hold"].push_back({{"pending", pending}, {"events_per_s", x}, {"ceiling_events_per_s", y}, {"ratio", x / y}});
    }
    double z = 0;
    for (int rep = 0; rep < 3; ++rep) z = std::max(z, rwlock_contention(16, events / 8));
    out["rwlock_contention"] = {{"processes", 16}, {"events_per_s", z}};
    if (json) {
        std::cout << out.dump(2) << "\n";
    } else {
        for (const auto& h : out["hold"])
            std::printf("hold pending=%-7zu %8.2f M events/s  (ceiling %8.2f M/s, ratio %.2f)\n",
                        h["pending"].get<std::size_t>(), h["events_per_s"].get<double>() / 1e6,
                        h["ceiling_events_per_s"].get<double>() / 1e6, h["ratio"].get<double>());
        std::printf("rwlock contention, 16 processes: %.2f M events/s\n", z / 1e6);
    }
    return 0;
}
