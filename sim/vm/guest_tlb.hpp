// The guest's TLB of guest-physical translations, one per vCPU (the CPU it runs on caches the
// combined stage-1 + stage-2 translations of its VMID/EPTP; kvmsim does not model the guest's own
// stage 1, so an entry is keyed by the guest frame and sized by the stage-2 (EPT) leaf mapping
// it). Three arrays per vCPU, one per page size (4K, 2M, 1G), each set-associative with exact LRU
// in a set; capacities and associativity come from the host profile (tlb_entries_4k, _2m, _1g,
// tlb_ways). Filled by the guest's accesses that miss it (the model's refill walk); emptied by the
// invalidations the models issue, which reach every vCPU as a broadcast TLBI (TLBI ...IS on
// arm64) or kvm_flush_remote_tlbs's request does: by IPA (a leaf's range), by range, by VMID (all).
//
// Exactness: a vCPU's entries change only through its own accesses (in its time order) and
// through invalidations, which models issue at engine events; the guest scheduler's batches end
// before the next engine event, so running hits ahead of engine time sees the TLB as it is then.
// An entry holds no permissions: an access reaches the TLB only when the model's hits() says the
// tables allow it (a stale read-only entry refetched on a write is not modelled).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "sim/vm/types.hpp"

namespace kvmsim::vm {

class GuestTlb {
public:
    static constexpr int kSizes = 3;  // 4K, 2M, 1G
    static constexpr std::array<unsigned, kSizes> kShift = {0, 9, 18};  // in 4K pages

    struct Geometry {
        std::array<std::uint32_t, kSizes> entries{};  // 0: no entries of that size (never cached)
        std::uint32_t ways = 4;
    };

    GuestTlb(std::uint32_t vcpus, const Geometry& g) : vcpus_(vcpus) {
        for (int s = 0; s < kSizes; ++s) {
            Array& a = arr_[s];
            const std::uint32_t n = g.entries[static_cast<std::size_t>(s)];
            if (n == 0) continue;
            a.ways = g.ways == 0 || g.ways > n ? n : g.ways;
            a.sets = n / a.ways;
            a.mask = (a.sets & (a.sets - 1)) == 0 ? a.sets - 1 : 0;
            const std::size_t per_vcpu = std::size_t{a.sets} * a.ways;
            a.tag.assign(per_vcpu * vcpus, kEmpty);
            a.stamp.assign(per_vcpu * vcpus, 0);
        }
        clock_.assign(vcpus, 0);
        live_.assign(vcpus, 0);
    }

    // A translation for gfn cached on the vCPU, at any size: refreshes its LRU position.
    bool lookup(std::uint32_t vcpu, vm::Gfn gfn) {
        if (live_[vcpu] == 0) return false;
        for (int s = 0; s < kSizes; ++s) {
            Array& a = arr_[s];
            if (a.sets == 0) continue;
            const std::uint64_t tag = gfn >> kShift[static_cast<std::size_t>(s)];
            const std::size_t base = slot(a, vcpu, tag);
            for (std::uint32_t w = 0; w < a.ways; ++w)
                if (a.tag[base + w] == tag) {
                    a.stamp[base + w] = ++clock_[vcpu];
                    return true;
                }
        }
        return false;
    }

    // Caches gfn's translation at `size` (0 4K, 1 2M, 2 1G), evicting its set's least recently
    // used entry when the set is full. Returns false if that size has no entries.
    bool fill(std::uint32_t vcpu, vm::Gfn gfn, int size) {
        Array& a = arr_[static_cast<std::size_t>(size)];
        if (a.sets == 0) return false;
        const std::uint64_t tag = gfn >> kShift[static_cast<std::size_t>(size)];
        const std::size_t base = slot(a, vcpu, tag);
        std::uint32_t victim = 0;
        for (std::uint32_t w = 0; w < a.ways; ++w) {
            if (a.tag[base + w] == tag) {  // already there (a concurrent refill)
                a.stamp[base + w] = ++clock_[vcpu];
                return true;
            }
            if (a.tag[base + w] == kEmpty) {
                victim = w;
                a.stamp[base + w] = 0;
                break;
            }
            if (a.stamp[base + w] < a.stamp[base + victim]) victim = w;
        }
        if (a.tag[base + victim] == kEmpty)
            ++live_[vcpu];
        else
            ++evictions_;
        a.tag[base + victim] = tag;
        a.stamp[base + victim] = ++clock_[vcpu];
        return true;
    }

    // Every vCPU's entries that translate any frame of [start, end) (a TLBI by IPA of a leaf, or a
    // range TLBI).
    void invalidate_range(vm::Gfn start, vm::Gfn end) {
        if (start >= end) return;
        for (int s = 0; s < kSizes; ++s) {
            Array& a = arr_[s];
            if (a.sets == 0) continue;
            const unsigned sh = kShift[static_cast<std::size_t>(s)];
            const std::uint64_t t0 = start >> sh, t1 = ((end - 1) >> sh) + 1;
            const std::size_t per_vcpu = std::size_t{a.sets} * a.ways;
            for (std::uint32_t v = 0; v < vcpus_; ++v) {
                if (live_[v] == 0) continue;
                auto drop = [&](std::size_t i) {
                    if (a.tag[i] >= t0 && a.tag[i] < t1) {
                        a.tag[i] = kEmpty;
                        --live_[v];
                    }
                };
                if (t1 - t0 < a.sets) {
                    for (std::uint64_t t = t0; t < t1; ++t) {
                        const std::size_t base = slot(a, v, t);
                        for (std::uint32_t w = 0; w < a.ways; ++w) drop(base + w);
                    }
                } else {
                    for (std::size_t i = per_vcpu * v; i < per_vcpu * (v + 1); ++i) drop(i);
                }
            }
        }
    }

    // Every vCPU's entries (a TLBI by VMID, INVEPT single-context or all-context).
    void invalidate_all() {
        for (Array& a : arr_) std::fill(a.tag.begin(), a.tag.end(), kEmpty);
        std::fill(live_.begin(), live_.end(), 0);
    }

    // For tests and statistics.
    std::uint64_t live(std::uint32_t vcpu) const { return live_[vcpu]; }
    std::uint64_t evictions() const { return evictions_; }
    bool holds(std::uint32_t vcpu, vm::Gfn gfn, int size) const {
        const Array& a = arr_[static_cast<std::size_t>(size)];
        if (a.sets == 0) return false;
        const std::uint64_t tag = gfn >> kShift[static_cast<std::size_t>(size)];
        const std::size_t base = slot(a, vcpu, tag);
        for (std::uint32_t w = 0; w < a.ways; ++w)
            if (a.tag[base + w] == tag) return true;
        return false;
    }
    std::uint32_t vcpus() const { return vcpus_; }

private:
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
    struct Array {
        std::uint32_t sets = 0, ways = 0;
        std::uint64_t mask = 0;  // sets - 1 when sets is a power of two (else 0: modulo)
        std::vector<std::uint64_t> tag;
        std::vector<std::uint64_t> stamp;
    };
    // The first way of tag's set on the vCPU: sets are indexed by the tag's low bits, as a
    // hardware TLB indexes by the low bits of the page number.
    static std::size_t slot(const Array& a, std::uint32_t vcpu, std::uint64_t tag) {
        const std::uint64_t set = a.mask ? (tag & a.mask) : a.sets == 1 ? 0 : tag % a.sets;
        return (std::size_t{vcpu} * a.sets + set) * a.ways;
    }

    std::uint32_t vcpus_;
    std::array<Array, kSizes> arr_{};
    std::vector<std::uint64_t> clock_;  // per vCPU: its LRU stamps
    std::vector<std::uint64_t> live_;   // per vCPU: valid entries
    std::uint64_t evictions_ = 0;
};

}  // namespace kvmsim::vm
