// The loader's limits and name tables, shared with the schema generator (schema.hpp) so the
// schema says what the loader says.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/engine/time.hpp"
#include "sim/vm/mmu_model.hpp"
#include "sim/vm/types.hpp"

namespace kvmsim::scenario {

// A cost is at most kMaxCost: a time of 1 s (in ps), a plain number of the same size. Far beyond
// any one kernel operation, and small enough that the models' sums and products of costs over a
// run stay inside the clock (2^63 ps, about 107 days).
inline constexpr double kMaxCost = 1e12;

// A latency of the host's caches and topology: at most 1 s (as a cost). A memory bandwidth is
// unlimited ("0B/s") or at least 1 MB/s, so no transfer outlasts the clock.
inline constexpr engine::Time kMaxLatency = engine::Time::ps(1'000'000'000'000);
inline constexpr std::uint64_t kMinBandwidth = 1'000'000;

// A storm's runs, and a stream's accesses per vCPU: at most 10^8 each (a storm's last run must
// also start within 1000000 s; a stream's accesses take at most that long at its guest_time).
inline constexpr std::uint64_t kMaxCount = 100'000'000;

// A memslot holds at most KVM_MEM_MAX_NR_PAGES pages ((1 << 31) - 1, include/linux/kvm_host.h:
// __kvm_set_memory_region refuses more), i.e. 8 TiB less 4 KiB; the guest's memory in all is at
// most 64 TiB (the models keep per-page state such as dirty bitmaps) and lies below 2^52 (4 PiB,
// MAXPHYADDR).
inline constexpr std::uint64_t kMaxMemslotPages = (std::uint64_t{1} << 31) - 1;
inline constexpr std::uint64_t kMaxMemslotBytes = kMaxMemslotPages * vm::kPageSize;
inline constexpr std::uint64_t kMaxGuestBytes = std::uint64_t{64} << 40;

// What the cache model can hold: a level of at most 4 GiB (larger than any shipped cache), and
// at most 2^26 lines of tag state in all, private levels once per CPU (1 GiB of the model's memory).
inline constexpr std::uint64_t kMaxCacheLevelBytes = std::uint64_t{4} << 30;
inline constexpr std::uint64_t kMaxCacheStateLines = std::uint64_t{1} << 26;

// Host operations by scenario name ("zap_gfn_range").
const std::vector<std::pair<std::string_view, vm::Operation>>& operation_names();
// Memslot backings by scenario name ("anonymous_thp").
const std::vector<std::pair<std::string_view, vm::Backing>>& backing_names();

}  // namespace kvmsim::scenario
